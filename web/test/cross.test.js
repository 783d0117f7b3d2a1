// Cross-implementation checks against the Rust CLI: documents signed here
// verify with `aliasctl` and hash the same, and `aliasctl` signs the same
// bytes from the same key, body and date. Uses target/debug/aliasctl (or
// the binary named by ALIASCTL); skipped when it is not built — this test
// never builds it.
import test from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { loadVectors, repoRoot, sodium } from './helpers.js';
import { b64uEncode, decode, foldB64, keyPairFromSeed, sign, toToken } from '../src/anychain.js';
import {
  contractHash,
  grantHash,
  grantScopes,
  loginBody,
  matrixFor,
  pushUrl,
  requestBody,
  signGrant,
  signRevokedGrant,
} from '../src/alias.js';

const bin = process.env.ALIASCTL || join(repoRoot, 'target', 'debug', 'aliasctl');
const skip = existsSync(bin)
  ? false
  : `${relative(process.cwd(), bin)} is not built (cargo build -p cli); cross-implementation checks skipped`;

const vectors = loadVectors('anychain.json');
const contractJson = JSON.stringify(vectors.documents.find((d) => d.type === 'alias.contract').json);

// A fresh temporary directory per test, removed after it; `file` writes into it.
function workdir(t) {
  const dir = mkdtempSync(join(tmpdir(), 'alias-web-cross-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return (name, text) => {
    const path = join(dir, name);
    writeFileSync(path, text);
    return path;
  };
}

function aliasctl(args) {
  const r = spawnSync(bin, args, { encoding: 'utf8', timeout: 60000 });
  if (r.error) throw r.error;
  return { code: r.status, out: r.stdout.trim(), err: r.stderr.trim() };
}

function ok(args) {
  const r = aliasctl(args);
  assert.equal(r.code, 0, `aliasctl ${args.join(' ')} failed: ${r.out} ${r.err}`);
  return r.out;
}

const rows = (matrix) => matrix.map((row) => row.map((b) => (b ? '1' : '0')).join(',')).join(';');

test('aliasctl verifies and hashes a grant signed in JavaScript', { skip }, (t) => {
  const file = workdir(t);
  const key = keyPairFromSeed(sodium.randombytes_buf(32));
  const contract = decode(contractJson);
  const consent = matrixFor(contract, 'consent', (scope, g, i) => (g + i) % 2 === 0);
  const now = Date.now();
  const grant = signGrant(key, contract, { consent, date: now });
  const grantFile = file('grant.json', toToken(grant));

  assert.equal(ok(['verify', grantFile]), 'ok');
  assert.equal(ok(['verify', '--policy', '--now', String(now), grantFile]), 'ok');
  assert.equal(ok(['fold', grantFile]), foldB64(grant));
  assert.equal(ok(['grant', 'hash', grantFile]), grantHash(grant));
  assert.equal(ok(['grant', 'contract-hash', grantFile]), contractHash(grant));
  assert.equal(ok(['grant', 'push-url', grantFile]), pushUrl(grant));
  assert.equal(ok(['grant', 'push-url', '--id', 'grant', grantFile]), pushUrl(grant, grantHash(grant)));
  assert.equal(JSON.stringify(JSON.parse(ok(['grant', 'scopes', grantFile]))), toToken(grantScopes(grant)));
  const inspect = ok(['grant', 'inspect', grantFile]);
  assert.match(inspect, new RegExp(`^user: +${b64uEncode(key.publicKey)}$`, 'm'));
  assert.match(inspect, /^revoked: +false$/m);
  assert.match(inspect, new RegExp(`^contract hash: ${contractHash(grant)}$`, 'm'));
  assert.match(inspect, new RegExp(`^grant hash: +${grantHash(grant)}$`, 'm'));

  const revoked = signRevokedGrant(key, contract, { date: now + 1 });
  const revokedFile = file('revoked.json', toToken(revoked));
  assert.equal(ok(['verify', '--policy', '--now', String(now), revokedFile]), 'ok');
  assert.equal(ok(['grant', 'contract-hash', revokedFile]), contractHash(grant));
  assert.deepEqual(JSON.parse(ok(['grant', 'scopes', revokedFile])), []);

  const tampered = decode(toToken(grant));
  tampered.body.base.consent = matrixFor(contract, 'consent', true);
  const bad = aliasctl(['verify', file('tampered.json', toToken(tampered))]);
  assert.equal(bad.code, 1);
  assert.equal(bad.out, 'invalid chain: bad signature or forged document');
});

test('aliasctl signs the same bytes as JavaScript', { skip }, (t) => {
  const file = workdir(t);
  const seed = sodium.randombytes_buf(32);
  const key = keyPairFromSeed(seed);
  const keyFile = file('user.key', `${b64uEncode(seed)}\n`);
  assert.equal(ok(['pubkey', '--key', keyFile]), b64uEncode(key.publicKey));
  const contract = decode(contractJson);
  const contractFile = file('contract.json', contractJson);
  const date = 1700000000123;

  const consent = matrixFor(contract, 'consent', (scope, g, i) => i === 1);
  const legitimate = matrixFor(contract, 'legitimate', false);
  const fromRust = ok(['grant', 'new', '--key', keyFile, '--consent', rows(consent), '--legitimate', rows(legitimate), '--date', String(date), contractFile]);
  assert.equal(fromRust, toToken(signGrant(key, contract, { consent, legitimate, date })));
  const defaults = ok(['grant', 'new', '--key', keyFile, '--consent', rows(matrixFor(contract, 'consent', false)), '--date', String(date), contractFile]);
  assert.equal(defaults, toToken(signGrant(key, contract, { date })));
  const revoked = ok(['grant', 'new', '--key', keyFile, '--revoked', '--date', String(date), contractFile]);
  assert.equal(revoked, toToken(signRevokedGrant(key, contract, { date })));

  for (const body of [
    requestBody('PUT', '/alias/dumps/google/takeout.zip', 'https://bank.example', 123456),
    loginBody(sodium.randombytes_buf(32), 'https://bank.example'),
  ]) {
    const bodyFile = file('body.json', toToken(body));
    assert.equal(ok(['sign', '--key', keyFile, '--date', String(date), bodyFile]), toToken(sign(key, body, date)));
  }
});

test('aliasctl folds and encodes tricky values as JavaScript does', { skip }, (t) => {
  const file = workdir(t);
  const values = [
    '{"a+b":1,"a":2,"a,b":"c","a-b":[1,null,"x"],"10":true,"9":false}',
    '{"\\uff61":1,"\\ud83d\\ude00":2,"é":"\\u2028\\u0007"}',
    '[0,-0.0,1.0,1e21,1e20,1.5e-7,1e-6,0.1,9007199254740993,12345678901234567890,-5e-324]',
    '{"b":{"__bytes":"CQo"},"b,9":1,"h":{"__hash":"AQID"},"x":{"__box":"AAEC"},"d":{},"l":[[],[{}]]}',
    '{"k":null,"k,":1,"k!":2,"x":{"b":1},"x,[":0}',
  ];
  for (const text of values) {
    const f = file('value.json', text);
    const v = decode(text);
    assert.equal(ok(['fold', f]), foldB64(v), text);
    assert.equal(ok(['token', 'encode', f]), toToken(v), text);
  }
});
