// Every case of the reference vectors (anychain.json), with the checks
// shared/vectors/README.md lists — the same as protocol/tests/it/vectors.rs.
import test from 'node:test';
import assert from 'node:assert/strict';
import { loadVectors, fromHex, sodium } from './helpers.js';
import {
  Registry,
  b64uDecode,
  b64uEncode,
  decode,
  fold,
  foldB64,
  fromJSON,
  keyPairFromSeed,
  sign,
  toToken,
} from '../src/anychain.js';
import { aliasRegistry, contractScopes, grantScopes, pushUrl } from '../src/alias.js';

const file = loadVectors('anychain.json');
const LIMITS = { maxBytes: 64 << 20, maxDepth: 128 };
const value = (json) => fromJSON(json, LIMITS);

function errorOf(registry, v) {
  try {
    registry.verify(v);
    return null;
  } catch (e) {
    return e.message;
  }
}

test('hash examples', (t) => {
  const examples = file.hash.examples;
  assert.ok(examples.length > 0);
  for (const ex of examples) {
    if (ex.bytes_hex !== undefined) {
      const bytes = fromHex(ex.bytes_hex);
      assert.equal(b64uEncode(bytes), ex.base64);
      assert.deepEqual(b64uDecode(ex.base64), bytes);
    } else {
      const digest = sodium.crypto_generichash(64, new TextEncoder().encode(ex.utf8), null);
      assert.equal(b64uEncode(digest), ex.blake2b_64_b64);
    }
  }
  t.diagnostic(`hash: ${examples.length} examples checked`);
});

test('fold cases', (t) => {
  const cases = file.fold;
  assert.ok(cases.length > 0);
  for (const c of cases) {
    const v = value(c.json);
    assert.equal(foldB64(v), c.fold_b64, `fold case ${c.name}`);
    // The token form decodes back to a value with the same fold.
    assert.equal(foldB64(decode(toToken(v))), c.fold_b64, `fold case ${c.name}: token round trip`);
  }
  t.diagnostic(`fold: ${cases.length} cases checked`);
});

function signedPart(signed) {
  const part = {};
  for (const k of ['type', 'body', 'date', 'signer']) part[k] = k in signed ? signed[k] : null;
  return part;
}

test('signature cases', (t) => {
  const registry = new Registry();
  const cases = file.signatures;
  assert.ok(cases.length > 0);
  let resigned = 0;
  for (const c of cases) {
    const key = keyPairFromSeed(b64uDecode(c.seed_b64));
    assert.equal(b64uEncode(key.publicKey), c.public_key_b64, `${c.name}: public key`);
    const signed = value(c.signed_json);
    assert.equal(foldB64(signedPart(signed)), c.message_b64, `${c.name}: message`);
    assert.equal(foldB64(signed), c.fold_b64, `${c.name}: fold`);
    const error = errorOf(registry, signed);
    assert.equal(error === null, c.valid, `${c.name}: ${error}`);
    if (c.error !== undefined) assert.equal(error, c.error, c.name);
    if (c.why === undefined) {
      const again = sign(key, value(c.body_json), c.date);
      assert.equal(toToken(again), toToken(signed), `${c.name}: re-signing`);
      assert.equal(toToken(again), JSON.stringify(c.signed_json), `${c.name}: re-signed token is the vector's JSON`);
      resigned++;
    }
  }
  assert.ok(resigned > 0);
  t.diagnostic(`signatures: ${cases.length} cases checked, ${resigned} re-signed identically`);
});

test('document cases', (t) => {
  const registry = aliasRegistry();
  const cases = file.documents;
  assert.ok(cases.length > 0);
  const seen = { fold: 0, valid: 0, error: 0, token: 0, grant_hash: 0, contract_hash: 0, push_url: 0, grant_scopes: 0, contract_scopes: 0, signer: 0 };
  for (const c of cases) {
    const json = value(c.json);
    const error = errorOf(registry, json);
    assert.equal(error === null, c.valid, `${c.name}: ${error}`);
    seen.valid++;
    if (c.error !== undefined) {
      assert.equal(error, c.error, c.name);
      seen.error++;
    }
    assert.equal(foldB64(json), c.fold_b64, `${c.name}: fold`);
    seen.fold++;
    if (c.signer_seed_b64 !== undefined) {
      const pk = keyPairFromSeed(b64uDecode(c.signer_seed_b64)).publicKey;
      assert.equal(b64uEncode(pk), c.signer_public_key_b64, `${c.name}: signer key`);
      seen.signer++;
    }
    if (c.token !== undefined) {
      assert.equal(toToken(json), c.token, `${c.name}: token`);
      const back = decode(c.token);
      assert.equal(toToken(back), c.token, `${c.name}: token round trip`);
      assert.equal(foldB64(back), c.fold_b64, `${c.name}: token round trip fold`);
      assert.deepEqual(back, json, `${c.name}: token round trip tree`);
      seen.token++;
    }
    if (c.grant_hash_b64 !== undefined) {
      assert.equal(foldB64(json), c.grant_hash_b64, `${c.name}: grant hash`);
      seen.grant_hash++;
    }
    const contract = json.type === 'alias.contract' ? json : json.body?.contract;
    if (c.contract_hash_b64 !== undefined) {
      assert.equal(foldB64(contract), c.contract_hash_b64, `${c.name}: contract hash`);
      seen.contract_hash++;
    }
    if (!c.valid) continue;
    if (c.push_url !== undefined) {
      assert.equal(pushUrl(contract), c.push_url, `${c.name}: push url`);
      seen.push_url++;
    }
    if (c.contract_scopes !== undefined) {
      assert.equal(toToken(contractScopes(json)), JSON.stringify(c.contract_scopes), `${c.name}: contract scopes`);
      seen.contract_scopes++;
    }
    if (c.grant_scopes !== undefined) {
      assert.equal(toToken(grantScopes(json)), JSON.stringify(c.grant_scopes), `${c.name}: grant scopes`);
      assert.equal(pushUrl(json), c.push_url, `${c.name}: grant push url`);
      seen.grant_scopes++;
    }
  }
  const detail = Object.entries(seen).map(([k, n]) => `${k} ${n}`).join(', ');
  t.diagnostic(`documents: ${cases.length} cases checked (${detail})`);
});

test('signature objects fold as the library folds them', () => {
  // fold() returns a copy: a Hash leaf's bytes are not aliased.
  const h = value({ __hash: 'AQID' });
  const f = fold(h);
  f[0] = 9;
  assert.equal(foldB64(h), 'AQID');
});
