// "Signed in clear" in the browser code: a page never shows or signs a
// document where a value is replaced by its hash (`{"__hash": …}`, same
// fold, same signature) or a sealed box, where a consent, legitimate or
// `revoked` cell is not a boolean, or whose client declaration is signed by
// another key than the `crypto.sign` it names. Codes and paths are the
// gateway's (protocol/src/alias/clear.rs).
import test from 'node:test';
import assert from 'node:assert/strict';
import { loadVectors } from './helpers.js';
import { Box, decode, foldB64, foldHash, keyPairFromSeed, kindOf, sign, toToken } from '../src/anychain.js';
import {
  ClearError,
  checkClear,
  checkContractClear,
  checkGrantClear,
  grantBody,
  grantScopes,
  signGrant,
  signRevokedGrant,
} from '../src/alias.js';

const vectors = loadVectors('anychain.json');
const user = keyPairFromSeed(new Uint8Array(32).fill(2));
const clientKey = keyPairFromSeed(new Uint8Array(32).fill(5));
const richContract = () => decode(JSON.stringify(vectors.documents.find((d) => d.type === 'alias.contract').json));

const scope = (path) => ({ provider: 'google', path });
const group = (path) => ({ scopes: [scope(path)], usages: ['research'] });

/** A contract whose declaration names `named`'s key and is signed by `signer`. */
function contractOf(named = clientKey, signer = clientKey) {
  const decl = { type: 'alias.client.decl', name: 'Client', domain: 'client.example', crypto: { sign: named.publicKey } };
  return {
    type: 'alias.contract',
    client: sign(signer, decl, 1574158519000),
    legal: { usage: 'tests' },
    base: {
      contractual: group('my_activity.search'),
      consent: [group('youtube.watch_history')],
      legitimate: { reason: 'fraud prevention', groups: [group('photos')] },
    },
    network: { scheme: 'https', pushEndpoint: '/alias/push/' },
  };
}

/** A copy of `v` (decoded again from its token) with the node at `path` replaced by `f(node)`. */
function edited(v, path, f) {
  const copy = decode(toToken(v));
  if (path.length === 0) return f(copy);
  let holder = copy;
  for (const k of path.slice(0, -1)) holder = holder[k];
  const last = path[path.length - 1];
  holder[last] = f(holder[last]);
  return copy;
}

/** Every node below the root: [path keys, dotted path]. */
function nodes(root, v) {
  const out = [];
  const walk = (keys, node) => {
    const kind = kindOf(node);
    const children = kind === 'list' ? node.map((c, i) => [String(i), c]) : kind === 'dict' ? Object.entries(node) : [];
    for (const [k, c] of children) {
      const ks = [...keys, k];
      out.push([ks, [root, ...ks].join('.')]);
      walk(ks, c);
    }
  };
  walk([], v);
  return out;
}

const clearError = (code, path) => (e) => e instanceof ClearError && e.code === code && e.path === path;

test('a declined consent or legitimate cell replaced by the hash of false is refused', () => {
  const grant = signGrant(user, contractOf(), { consent: [[false]], legitimate: [[false]], date: 1700000000000 });
  checkGrantClear(grant);
  assert.equal(grantScopes(grant).length, 1, 'the contractual scope only');
  for (const [basis, path] of [
    ['consent', 'grant.body.base.consent.0.0'],
    ['legitimate', 'grant.body.base.legitimate.0.0'],
  ]) {
    const forged = edited(grant, ['body', 'base', basis, '0', '0'], foldHash);
    assert.equal(foldB64(forged), foldB64(grant), 'same fold: the signature holds');
    assert.equal(grantScopes(forged).length, 2, 'read with truthiness, the declined scope is granted');
    assert.throws(() => checkGrantClear(forged), clearError('hashed_value', path));
    const one = edited(grant, ['body', 'base', basis, '0', '0'], () => 1);
    assert.throws(() => checkGrantClear(one), clearError('not_boolean', path));
  }
  const revokedHashed = edited(grant, ['body', 'revoked'], foldHash);
  assert.throws(() => checkGrantClear(revokedHashed), clearError('hashed_value', 'grant.body.revoked'));
  const revokedNumber = edited(grant, ['body', 'revoked'], () => 0);
  assert.throws(() => checkGrantClear(revokedNumber), clearError('not_boolean', 'grant.body.revoked'));
});

test('every value of a grant replaced by its hash is refused, naming its path', () => {
  for (const contract of [contractOf(), richContract()]) {
    for (const grant of [signGrant(user, contract, { date: 1700000000000 }), signRevokedGrant(user, contract, { date: 1700000000001 })]) {
      checkGrantClear(grant);
      const all = nodes('grant', grant);
      assert.ok(all.length > 30);
      for (const [keys, path] of all) {
        const forged = edited(grant, keys, foldHash);
        assert.equal(foldB64(forged), foldB64(grant), path);
        assert.throws(() => checkGrantClear(forged), clearError('hashed_value', path), path);
      }
    }
  }
});

test('a page signs no contract with a hashed or boxed value', () => {
  const contract = contractOf();
  for (const [keys, path] of nodes('contract', contract)) {
    const forged = edited(contract, keys, foldHash);
    // Refused before signing (by the clear rule, or earlier when a
    // validator or the contract's type needed the value).
    assert.throws(() => signGrant(user, forged), Error, path);
    assert.throws(() => signRevokedGrant(user, forged), Error, path);
    assert.throws(() => checkContractClear(forged), clearError('hashed_value', path), path);
  }
  // A hashed scope (the page would show nothing for it) is named precisely.
  const hiddenScope = edited(contract, ['base', 'consent', '0', 'scopes', '0'], foldHash);
  assert.throws(() => signGrant(user, hiddenScope), clearError('hashed_value', 'contract.base.consent.0.scopes.0'));
  const hiddenEndpoint = edited(contract, ['network', 'pushEndpoint'], foldHash);
  assert.throws(() => signGrant(user, hiddenEndpoint), clearError('hashed_value', 'contract.network.pushEndpoint'));
  const boxedLegal = edited(contract, ['legal', 'usage'], () => new Box(new Uint8Array(80)));
  assert.throws(() => checkContractClear(boxedLegal), clearError('boxed_value', 'contract.legal.usage'));
  // Long keys are cut in paths.
  assert.throws(
    () => checkClear('d', { ['k'.repeat(500)]: foldHash(null) }),
    (e) => e instanceof ClearError && [...e.path].length < 80,
  );
});

test('a client declaration signed by another key than the one it names is refused', () => {
  const impostor = keyPairFromSeed(new Uint8Array(32).fill(6));
  checkContractClear(contractOf());
  const forged = contractOf(clientKey, impostor);
  assert.throws(() => checkContractClear(forged), clearError('client_key_mismatch', 'contract.client.body.crypto.sign'));
  assert.throws(() => signGrant(user, forged), clearError('client_key_mismatch', 'contract.client.body.crypto.sign'));
  // Inside a grant signed elsewhere: refused as the gateway refuses it.
  const grant = sign(user, grantBody(forged), 1700000000000);
  assert.throws(() => checkGrantClear(grant), clearError('client_key_mismatch', 'grant.body.contract.client.body.crypto.sign'));
  // A declaration naming no key is not refused for it.
  const unnamed = contractOf();
  delete unnamed.client.body.crypto.sign;
  const resigned = { ...unnamed, client: sign(clientKey, unnamed.client.body, 1574158519000) };
  checkContractClear(resigned);
});
