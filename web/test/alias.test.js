// Tests of alias.js: grants, revocations, bindAuthz, signed requests and
// logins made in JavaScript verify with the JavaScript verifier and equal
// the reference's tokens; password-derived keys and the account record.
import test from 'node:test';
import assert from 'node:assert/strict';
import { loadVectors, sodium, FAST_PWHASH } from './helpers.js';
import { VerifyError, b64uDecode, b64uEncode, decode, fromToken, keyPairFromSeed, toToken, foldB64 } from '../src/anychain.js';
import {
  PWHASH_DEFAULTS,
  aliasOf,
  aliasRegistry,
  authorizationHeader,
  bankRegistry,
  basicAuthorization,
  changePassword,
  contractHash,
  createAccount,
  deriveKeys,
  grantBody,
  grantHash,
  grantScopes,
  isGrantNewer,
  matrixFor,
  matrixShape,
  newSalt,
  openIdentity,
  pushUrl,
  sealIdentity,
  signBindAuthz,
  signGrant,
  signLogin,
  signRequest,
  signRevokedGrant,
  unlockAccount,
} from '../src/alias.js';

const ex = loadVectors('protocol-examples.json');
const vectors = loadVectors('anychain.json');
const user = keyPairFromSeed(new Uint8Array(32).fill(2));
const contractT = () => decode(ex.grant_token).body.contract;
// The vectors' contract with contractual, consent and legitimate bases and network.
const richContract = () => decode(JSON.stringify(vectors.documents.find((d) => d.type === 'alias.contract').json));

test('signGrant reproduces the reference grant T byte for byte', () => {
  const grant = signGrant(user, contractT(), { consent: [[true]], date: 1574158520000 });
  assert.equal(toToken(grant), ex.grant_token);
  assert.equal(grantHash(grant), ex.grant_hash);
  assert.equal(contractHash(grant), ex.grant_contract_hash);
});

test('signRevokedGrant reproduces the reference revoked grant byte for byte', () => {
  const revoked = signRevokedGrant(user, contractT(), { date: 1574158530000 });
  assert.equal(toToken(revoked), ex.revoked_token);
  assert.equal(grantHash(revoked), ex.revoked_hash);
  assert.deepEqual(grantScopes(revoked), []);
  assert.ok(isGrantNewer(decode(ex.grant_token), revoked));
  assert.equal(contractHash(revoked), ex.grant_contract_hash, 'a revocation names the same transfer');
});

test('a grant signed in JS verifies with the JS verifier, and tampering is caught', () => {
  const contract = richContract();
  const shape = matrixShape(contract);
  assert.ok(shape.contractual);
  assert.ok(shape.consent.length > 0);
  const consent = matrixFor(contract, 'consent', (scope, g, i) => i === 0);
  const grant = signGrant(user, contract, { consent, date: 1700000000000 });
  const token = toToken(grant);
  const back = fromToken(token, { registry: aliasRegistry() });
  assert.equal(foldB64(back), foldB64(grant));
  assert.deepEqual(back.body.base.consent, consent);
  assert.equal(back.body.base.contractual, true);
  assert.deepEqual(back.body.base.legitimate, matrixFor(contract, 'legitimate', true));
  assert.ok(pushUrl(back).endsWith(`/${contractHash(back)}`));
  // Scopes: contractual ones, then the first scope of each consent group, then the legitimate ones.
  const scopes = grantScopes(back).map(foldB64);
  assert.ok(scopes.length > 0);
  const tampered = decode(token);
  tampered.body.base.consent = matrixFor(contract, 'consent', true);
  assert.throws(() => aliasRegistry().verify(tampered), (e) => e instanceof VerifyError && e.message === 'invalid chain: bad signature or forged document');
});

test('grant matrices must match the contract exactly', () => {
  const contract = richContract();
  assert.throws(() => grantBody(contract, { consent: [] }), /consent must have/);
  assert.throws(() => grantBody(contract, { consent: matrixFor(contract, 'consent', 1).map((r) => r.map(() => 1)) }), /booleans/);
  const legit = matrixFor(contract, 'legitimate', true);
  if (legit.length > 0) {
    assert.throws(() => grantBody(contract, { legitimate: legit.map((r) => r.slice(1)) }), /legitimate\[0\]/);
  }
  // Defaults: consent all off, legitimate all on.
  const body = grantBody(contract);
  assert.ok(body.base.consent.flat().every((b) => b === false));
  assert.ok(body.base.legitimate.flat().every((b) => b === true));
  assert.deepEqual(Object.keys(body), ['type', 'contract', 'revoked', 'base']);
  // The contract itself must verify.
  const broken = richContract();
  broken.client.body.name = 'Other';
  assert.throws(() => signGrant(user, broken), VerifyError);
  assert.throws(() => signGrant(user, { type: 'alias.grant' }), TypeError);
});

test('bindAuthz, signed requests and logins', () => {
  const bind = signBindAuthz(user, 'https://bank.example', { date: 1 });
  aliasRegistry().verify(bind);
  assert.equal(bind.body.origin, 'https://bank.example');

  const req = signRequest(user, { method: 'PUT', path: '/alias/dumps/google/t.zip', origin: 'https://bank.example', size: 10, date: 1000 });
  assert.deepEqual(Object.keys(req.body), ['type', 'method', 'path', 'origin', 'size']);
  const header = authorizationHeader(req);
  assert.ok(header.startsWith('Alias %7B'));
  // What the gateway does: strip the scheme, percent-decode, decode and verify.
  const back = fromToken(decodeURIComponent(header.slice('Alias '.length)), { registry: bankRegistry() });
  assert.equal(toToken(back), toToken(req));
  assert.throws(() => signRequest(user, { method: 'GET', path: '/x', origin: 'o', size: -1 }), /non-negative integer/);
  assert.throws(() => signRequest(user, { method: 'GET', path: 5, origin: 'o' }), /'path' must be a string/);
  const get = signRequest(user, { method: 'GET', path: '/alias/dumps', origin: 'https://bank.example' });
  assert.ok(!('size' in get.body));
  assert.ok(Math.abs(get.date - Date.now()) < 60000);

  const challenge = sodium.randombytes_buf(32);
  const login = signLogin(user, { challenge, origin: 'https://bank.example', date: 5 });
  assert.deepEqual(Object.keys(login.body), ['type', 'challenge', 'origin']);
  const loginBack = fromToken(toToken(login), { registry: bankRegistry() });
  assert.deepEqual(loginBack.body.challenge, challenge);
  assert.equal(b64uEncode(loginBack.signer), b64uEncode(user.publicKey));
  assert.equal(toToken(signLogin(user, { challenge: b64uEncode(challenge), origin: 'https://bank.example', date: 5 })), toToken(login));
  assert.throws(() => signLogin(user, { challenge: new Uint8Array(0), origin: 'o' }), /non-empty byte string/);
  // The reference registry does not know the bank's types.
  assert.throws(() => aliasRegistry().verify(login), /no defined validator for type 'alias.bank.login'/);
});

test('deriveKeys: deterministic for the same password and salt, different otherwise', async () => {
  const salt = b64uDecode('AAECAwQFBgcICQoLDA0ODw');
  const a = await deriveKeys('correct horse battery staple', salt, FAST_PWHASH);
  const b = await deriveKeys('correct horse battery staple', b64uEncode(salt), FAST_PWHASH);
  assert.deepEqual(a.signSeed, b.signSeed);
  assert.deepEqual(a.signKeyPair.publicKey, b.signKeyPair.publicKey);
  assert.deepEqual(a.boxKeyPair.publicKey, b.boxKeyPair.publicKey);
  assert.deepEqual(a.verifier, b.verifier);
  assert.equal(a.signSeed.length, 32);
  assert.equal(a.verifier.length, 32);
  // Every derived key is different from the others.
  const parts = [a.signSeed, a.boxKeyPair.privateKey, a.verifier].map(b64uEncode);
  assert.equal(new Set(parts).size, 3);
  // The Ed25519 key pair is the one of the seed.
  assert.deepEqual(keyPairFromSeed(a.signSeed).publicKey, a.signKeyPair.publicKey);

  const otherPassword = await deriveKeys('correct horse battery stapler', salt, FAST_PWHASH);
  const otherSalt = await deriveKeys('correct horse battery staple', newSalt(), FAST_PWHASH);
  const otherParams = await deriveKeys('correct horse battery staple', salt, { opslimit: 2, memlimit: 8192 });
  for (const other of [otherPassword, otherSalt, otherParams]) {
    assert.notDeepEqual(other.signSeed, a.signSeed);
    assert.notDeepEqual(other.verifier, a.verifier);
    assert.notDeepEqual(other.boxKeyPair.publicKey, a.boxKeyPair.publicKey);
  }
  // Unicode passwords are taken in NFC form.
  const nfc = await deriveKeys('caf\u00e9', salt, FAST_PWHASH);
  const nfd = await deriveKeys('cafe\u0301', salt, FAST_PWHASH);
  assert.deepEqual(nfc.signSeed, nfd.signSeed);
  await assert.rejects(deriveKeys('x', new Uint8Array(8), FAST_PWHASH), /salt must be 16 bytes/);
  await assert.rejects(deriveKeys('x', salt, { opslimit: 0 }), /opslimit/);
});

test('deriveKeys with the default (INTERACTIVE) parameters is deterministic', async () => {
  assert.deepEqual(PWHASH_DEFAULTS, { alg: 'argon2id13', opslimit: sodium.crypto_pwhash_OPSLIMIT_INTERACTIVE, memlimit: sodium.crypto_pwhash_MEMLIMIT_INTERACTIVE });
  assert.equal(sodium.crypto_pwhash_ALG_ARGON2ID13, sodium.crypto_pwhash_ALG_DEFAULT);
  const salt = new Uint8Array(16).fill(7);
  const a = await deriveKeys('hunter2', salt);
  const b = await deriveKeys('hunter2', salt);
  assert.deepEqual(a.params, PWHASH_DEFAULTS);
  assert.deepEqual(a.signKeyPair.publicKey, b.signKeyPair.publicKey);
  // The derivation is exactly argon2id → crypto_kdf subkeys 1, 2, 3 of context "aliasbnk".
  const master = sodium.crypto_pwhash(32, 'hunter2', salt, 2, 67108864, sodium.crypto_pwhash_ALG_ARGON2ID13);
  assert.deepEqual(a.signSeed, sodium.crypto_kdf_derive_from_key(32, 1, 'aliasbnk', master));
  assert.deepEqual(a.boxKeyPair.publicKey, sodium.crypto_box_seed_keypair(sodium.crypto_kdf_derive_from_key(32, 2, 'aliasbnk', master)).publicKey);
  assert.deepEqual(a.verifier, sodium.crypto_kdf_derive_from_key(32, 3, 'aliasbnk', master));
});

test('account: create, unlock, wrong password, password change', async () => {
  const origin = 'https://bank.example';
  const { record, identity, keyPair, keys } = await createAccount('alice', 'pw-1', { origin, params: FAST_PWHASH, date: 10 });
  assert.deepEqual(Object.keys(record), ['username', 'salt', 'pwhash', 'box', 'publicPwdHash', 'publicKey']);
  assert.equal(b64uDecode(record.salt).length, 16);
  assert.deepEqual(record.pwhash, { alg: 'argon2id13', ...FAST_PWHASH });
  assert.match(record.box, /^\{"__box":"[A-Za-z0-9_-]+"\}$/);
  assert.equal(b64uDecode(record.publicPwdHash).length, 32);
  assert.equal(record.publicKey, b64uEncode(keyPair.publicKey));
  assert.deepEqual(keyPair.publicKey, keys.signKeyPair.publicKey, 'the account key is the password-derived key');
  assert.equal(identity.bind.body.origin, origin);
  assert.equal(aliasOf('alice', origin), 'alice@bank.example');
  // Nothing in the record reveals the keys: the box is opaque, the verifier is a separate subkey.
  assert.ok(!record.box.includes(b64uEncode(keys.signSeed)));

  const unlocked = await unlockAccount('pw-1', JSON.parse(JSON.stringify(record)));
  assert.deepEqual(unlocked.keyPair.publicKey, keyPair.publicKey);
  assert.equal(toToken(unlocked.identity), toToken(identity));
  assert.deepEqual(unlocked.keys.verifier, keys.verifier);
  await assert.rejects(unlockAccount('pw-2', record), /wrong password/);

  const changed = await changePassword(unlocked.identity, 'pw-2', { params: FAST_PWHASH });
  assert.equal(changed.publicKey, record.publicKey, 'a password change keeps the key');
  assert.notEqual(changed.salt, record.salt);
  assert.notEqual(changed.publicPwdHash, record.publicPwdHash);
  const again = await unlockAccount('pw-2', changed);
  assert.deepEqual(again.keyPair.publicKey, keyPair.publicKey);
  await assert.rejects(unlockAccount('pw-1', changed), /wrong password/);

  // A box sealed to someone else's key, or holding a bind by another key, is refused.
  const stranger = await deriveKeys('x', newSalt(), FAST_PWHASH);
  const forged = { ...identity, signSeed: stranger.signSeed };
  const box = sealIdentity(forged, keys.boxKeyPair.publicKey);
  assert.throws(() => openIdentity(box, keys.boxKeyPair), /bind is not signed by the identity key/);
  assert.throws(() => openIdentity(box, stranger.boxKeyPair), /wrong password/);

  assert.equal(basicAuthorization('alice', keys.verifier), `Basic ${Buffer.from(`alice:${b64uEncode(keys.verifier)}`).toString('base64')}`);
  assert.equal(basicAuthorization('zoë', 'AA'), `Basic ${Buffer.from('zoë:AA').toString('base64')}`);
});
