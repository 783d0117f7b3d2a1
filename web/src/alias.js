// The Alias documents a browser builds and signs for alias-bank (PROTOCOL.md
// Part 2 §4, protocol/src/alias/{documents,request}.rs): grants, revoked grants,
// bindAuthz, signed requests (`alias.bank.request`, what the gateway checks
// on dump uploads) and login challenge responses (`alias.bank.login`); the
// alias validators; contract and grant hashes, scopes and the push URL; and
// the user's account keys: password → argon2id → Ed25519 and X25519 keys,
// the sealed identity box and the public verifier (PROTOCOL.md Part 2 §A).
//
// Needs `await init(sodium)` from anychain.js first, with
// libsodium-wrappers-sumo (crypto_pwhash is only in the sumo build).

import {
  Box,
  DecodeError,
  Registry,
  SIGNATURE_TYPE,
  b64uDecode,
  b64uEncode,
  decode,
  forInKeys,
  foldB64,
  getSodium,
  has,
  invalid,
  isSignatureOf,
  keyPairFromSeed,
  kindOf,
  prop,
  sign,
  toToken,
} from './anychain.js';

/** `alias.bindAuthz`: the user binds their key to a data bank's origin. */
export const BIND_AUTHZ = 'alias.bindAuthz';
/** `alias.client.decl`: a client describes itself. */
export const CLIENT_DECL = 'alias.client.decl';
/** `alias.contract`: what a client asks for, embedded in every grant. */
export const CONTRACT = 'alias.contract';
/** `alias.grant`: the user's consent to a contract, or its revocation. */
export const GRANT = 'alias.grant';
/** `alias.bank.request`: one HTTP request to the data bank, signed by the user. */
export const BANK_REQUEST = 'alias.bank.request';
/** `alias.bank.login`: the user's answer to a login challenge of the data bank. */
export const BANK_LOGIN = 'alias.bank.login';

// ---------------------------------------------------------------------------
// Validators (the reference's checks, order and messages; JavaScript's loose
// comparisons on purpose, as in chain/aliasChains.js)

function truthy(v) {
  return Boolean(v);
}

function assertHasFields(o, names) {
  for (const name of names) {
    if (!has(o, name)) throw invalid(`missing field: '${name}'`);
  }
}

function lengthOf(v) {
  if (typeof v === 'string' || Array.isArray(v) || v instanceof Uint8Array) return v.length;
  return prop(v, 'length');
}

/** `alias.bindAuthz` needs `origin`. */
export function validateBindAuthz(o) {
  assertHasFields(o, ['origin']);
}

/** `alias.client.decl` needs `crypto`, `name` and `domain`. */
export function validateClientDecl(o) {
  assertHasFields(o, ['crypto', 'name', 'domain']);
}

/** `alias.contract` needs `client`, `legal` and `base`; `client` must be a signed client declaration. */
export function validateContract(o) {
  assertHasFields(o, ['client', 'legal', 'base']);
  const client = prop(o, 'client');
  // eslint-disable-next-line eqeqeq
  if (prop(client, 'type') != SIGNATURE_TYPE) throw invalid("field 'client' is not a signature");
  // eslint-disable-next-line eqeqeq
  if (prop(prop(client, 'body'), 'type') != CLIENT_DECL) {
    throw invalid("field 'client' is not a signed client declaration");
  }
}

/**
 * `alias.grant`: the consent matrices against the contract. A revoked grant
 * is accepted once its contract is one. Like the reference, the lengths of
 * `legitimate` rows are never checked (signGrant checks them itself).
 */
export function validateGrant(o) {
  /* eslint-disable eqeqeq */
  assertHasFields(o, ['contract', 'revoked']);
  const contract = prop(o, 'contract');
  if (prop(contract, 'type') != CONTRACT) throw invalid("field 'contract' is not an alias.contract");
  if (truthy(prop(o, 'revoked'))) return;
  assertHasFields(o, ['base']);
  const base = prop(o, 'base');
  const contractBase = prop(contract, 'base');

  if (has(contractBase, 'contractual')) {
    assertHasFields(base, ['contractual']);
    if (prop(base, 'contractual') != true) throw invalid('contractual part of the contract must be consented');
  }
  if (has(contractBase, 'consent')) {
    assertHasFields(base, ['consent']);
    const wanted = prop(contractBase, 'consent');
    const given = prop(base, 'consent');
    if (lengthOf(wanted) != lengthOf(given)) throw invalid('bad length for consent consent');
    for (const idx of forInKeys(given)) {
      if (lengthOf(prop(prop(wanted, idx), 'scopes')) != lengthOf(prop(given, idx))) {
        throw invalid('bad length for scopes of one consent consent');
      }
    }
  }
  if (has(contractBase, 'legitimate')) {
    assertHasFields(base, ['legitimate']);
    const wanted = prop(prop(contractBase, 'legitimate'), 'groups');
    const given = prop(base, 'legitimate');
    if (lengthOf(wanted) != lengthOf(given)) throw invalid('bad length for legitimate consent');
    // The reference loops over `base.legitimate.groups`, which a matrix does not have.
    for (const idx of forInKeys(prop(given, 'groups'))) {
      if (lengthOf(prop(prop(wanted, idx), 'scopes')) != lengthOf(prop(given, idx))) {
        throw invalid('bad length for scoeps of one legitimate consent');
      }
    }
  }
  /* eslint-enable eqeqeq */
}

function requireStrings(o, names) {
  for (const name of names) {
    if (!has(o, name)) throw invalid(`missing field: '${name}'`);
    if (typeof prop(o, name) !== 'string') throw invalid(`field '${name}' must be a string`);
  }
}

/** `alias.bank.request`: `method`, `path`, `origin` strings; `size`, when present, a non-negative integer. */
export function validateBankRequest(o) {
  requireStrings(o, ['method', 'path', 'origin']);
  if (has(o, 'size')) {
    const size = prop(o, 'size');
    if (!(typeof size === 'number' && Number.isInteger(size) && size >= 0)) {
      throw invalid("field 'size' must be a non-negative integer");
    }
  }
}

/** `alias.bank.login`: `challenge` a non-empty byte string, `origin` a string. */
export function validateBankLogin(o) {
  if (!has(o, 'challenge')) throw invalid("missing field: 'challenge'");
  const challenge = prop(o, 'challenge');
  if (!(challenge instanceof Uint8Array) || challenge.length === 0) {
    throw invalid("field 'challenge' must be a non-empty byte string");
  }
  requireStrings(o, ['origin']);
}

/** The registry of the reference's provider and client: anychain built-ins plus the four Alias types. */
export function aliasRegistry() {
  return new Registry()
    .register(BIND_AUTHZ, validateBindAuthz)
    .register(CLIENT_DECL, validateClientDecl)
    .register(CONTRACT, validateContract)
    .register(GRANT, validateGrant);
}

/** alias-bank's registry: the Alias types plus `alias.bank.request` and `alias.bank.login`. */
export function bankRegistry() {
  return aliasRegistry().register(BANK_REQUEST, validateBankRequest).register(BANK_LOGIN, validateBankLogin);
}

// ---------------------------------------------------------------------------
// Contracts and grants

function requireContract(contract) {
  if (kindOf(contract) !== 'dict' || prop(contract, 'type') !== CONTRACT) {
    throw new TypeError(`expected an '${CONTRACT}'`);
  }
  return contract;
}

/** The contract of a signed grant, or the contract itself. */
export function contractOf(contractOrGrant) {
  if (isSignatureOf(contractOrGrant, GRANT)) return requireContract(contractOrGrant.body.contract);
  return requireContract(contractOrGrant);
}

/** The contract hash (fold of the contract; for a grant, of `body.contract`), base64. */
export function contractHash(contractOrGrant) {
  return foldB64(contractOf(contractOrGrant));
}

/** The grant hash: fold of the whole signed grant, base64. */
export function grantHash(grant) {
  if (!isSignatureOf(grant, GRANT)) throw new TypeError(`expected a signed '${GRANT}'`);
  return foldB64(grant);
}

/** The client id: fold of the contract's signed client declaration, base64. */
export function clientId(contractOrGrant) {
  return foldB64(prop(contractOf(contractOrGrant), 'client'));
}

// Every scope of a contract with its basis and the property names the
// grant's matrices are indexed with, in contract order.
function scopeEntries(contract) {
  const base = prop(contract, 'base');
  const out = [];
  const contractual = prop(base, 'contractual');
  if (truthy(contractual)) {
    const scopes = prop(contractual, 'scopes');
    if (!Array.isArray(scopes)) throw new TypeError('malformed alias.contract: base.contractual.scopes is not a list');
    scopes.forEach((scope) => out.push({ basis: 'contractual', scope }));
  }
  for (const [basis, nested] of [
    ['consent', false],
    ['legitimate', true],
  ]) {
    const holder = prop(base, basis);
    if (!truthy(holder)) continue;
    const groups = nested ? prop(holder, 'groups') : holder;
    for (const g of forInKeys(groups)) {
      const scopes = prop(prop(groups, g), 'scopes');
      for (const s of forInKeys(scopes)) {
        const scope = prop(scopes, s);
        if (scope !== undefined) out.push({ basis, group: g, index: s, scope });
      }
    }
  }
  return out;
}

// One scope per fold: first position, last object (the reference's scopeById).
function dedupScopes(scopes) {
  const byId = new Map();
  for (const scope of scopes) byId.set(foldB64(scope), scope);
  return [...byId.values()];
}

/** Every scope the contract mentions, once per fold (the reference's getContractScopes). */
export function contractScopes(contract) {
  return dedupScopes(scopeEntries(contractOf(contract)).map((e) => e.scope));
}

/**
 * The scopes a grant gives (the reference's getGrantScopes): contractual
 * scopes, then consented consent scopes, then agreed legitimate scopes, once
 * per fold; none for a revoked grant.
 */
export function grantScopes(grant) {
  if (!isSignatureOf(grant, GRANT)) throw new TypeError(`expected a signed '${GRANT}'`);
  const body = grant.body;
  if (truthy(prop(body, 'revoked'))) return [];
  const base = prop(body, 'base');
  const chosen = [];
  for (const e of scopeEntries(contractOf(grant))) {
    if (e.basis === 'contractual' || truthy(prop(prop(prop(base, e.basis), e.group), e.index))) {
      chosen.push(e.scope);
    }
  }
  return dedupScopes(chosen);
}

function validHost(host) {
  if (host.startsWith('[') && host.endsWith(']')) return /^[0-9a-fA-F:.]+$/.test(host.slice(1, -1)) && host.includes(':');
  return (
    host.length > 0 &&
    host.length <= 253 &&
    host.split('.').every((l) => l.length > 0 && l.length <= 63 && /^[A-Za-z0-9-]+$/.test(l) && !l.startsWith('-') && !l.endsWith('-'))
  );
}

/**
 * The push URL of a contract's transfers, `{scheme}://{domain}{pushEndpoint}{id}`
 * with `https` and `/alias/push/` as defaults and `id` the contract hash by
 * default. The parts are checked as the gateway checks them (http/https
 * only, a bare host with an optional port, a plain absolute path) rather
 * than concatenated blindly; a refused part throws a TypeError.
 * @param {object} contractOrGrant
 * @param {string} [id] the transfer id (default: the contract hash)
 */
export function pushUrl(contractOrGrant, id) {
  const contract = contractOf(contractOrGrant);
  const network = prop(contract, 'network');
  const text = (key) => {
    const v = network === undefined || network === null ? undefined : prop(network, key);
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'string') throw new TypeError(`push destination: ${key} must be a string`);
    return v;
  };
  const scheme = text('scheme') || 'https';
  if (scheme !== 'http' && scheme !== 'https') throw new TypeError(`push destination: scheme ${JSON.stringify(scheme)} is not http or https`);
  const endpoint = text('pushEndpoint') || '/alias/push/';
  if (
    !endpoint.startsWith('/') ||
    endpoint.startsWith('//') ||
    endpoint.split('/').some((seg) => seg === '.' || seg === '..') ||
    !/^[A-Za-z0-9/\-._~!$&'()*+,;=:%]*$/.test(endpoint)
  ) {
    throw new TypeError(`push destination: pushEndpoint ${JSON.stringify(endpoint)} is not a path starting with '/'`);
  }
  const domain = prop(prop(prop(contract, 'client'), 'body'), 'domain');
  if (typeof domain !== 'string') throw new TypeError('push destination: domain must be a string');
  let host = domain;
  let port = '';
  const colon = domain.lastIndexOf(':');
  if (colon >= 0 && (!domain.slice(0, colon).includes(':') || domain.slice(0, colon).endsWith(']'))) {
    host = domain.slice(0, colon);
    port = domain.slice(colon + 1);
    if (!/^[0-9]{1,5}$/.test(port) || Number(port) === 0 || Number(port) > 65535) {
      throw new TypeError(`push destination: domain ${JSON.stringify(domain)} is not a host name with an optional port`);
    }
    port = `:${Number(port)}`;
  }
  if (!validHost(host)) throw new TypeError(`push destination: domain ${JSON.stringify(domain)} is not a host name with an optional port`);
  return `${scheme}://${host.toLowerCase()}${port}${endpoint}${id ?? foldB64(contract)}`;
}

/** The reference's isGrantNewer(old, grant): no old grant, or old.date < grant.date (equal dates are not newer). */
export function isGrantNewer(old, grant) {
  return old === null || old === undefined || prop(old, 'date') < prop(grant, 'date');
}

// ---------------------------------------------------------------------------
// Signed in clear (protocol/src/alias/clear.rs): anychain lets any value be
// replaced by its hash without changing the fold or the signature, and
// JavaScript truthiness reads `{"__hash": fold(false)}` as true. Pages refuse
// to show or sign a document with a hash or box leaf, a consent, legitimate
// or `revoked` cell that is not a boolean, or a client declaration signed by
// another key than its `crypto.sign`; the gateway refuses them with the same
// codes and paths.

/** Why a document is not signed in clear: `code` and `path` as the gateway answers them. */
export class ClearError extends TypeError {
  constructor(code, path, message) {
    super(message);
    this.name = 'ClearError';
    this.code = code;
    this.path = path;
  }
}

const MAX_SEGMENT = 64;

function segment(key) {
  const chars = [...key];
  return chars.length <= MAX_SEGMENT ? key : `${chars.slice(0, MAX_SEGMENT).join('')}…`;
}

function sameBytes(a, b) {
  return a instanceof Uint8Array && b instanceof Uint8Array && a.length === b.length && a.every((x, i) => x === b[i]);
}

function checkClientKey(path, v) {
  if (prop(v, 'type') !== SIGNATURE_TYPE) return;
  const body = prop(v, 'body');
  if (body === undefined || body === null || kindOf(body) !== 'dict' || prop(body, 'type') !== CLIENT_DECL) return;
  const crypto = prop(body, 'crypto');
  const named = crypto !== undefined && kindOf(crypto) === 'dict' ? prop(crypto, 'sign') : undefined;
  if (named === undefined || named === null || sameBytes(named, prop(v, 'signer'))) return;
  const where = `${path}.body.crypto.sign`;
  throw new ClearError('client_key_mismatch', where, `${where} names another key than the one that signed the client declaration`);
}

/**
 * Refuses any hash or box leaf anywhere under `value` (a ClearError naming
 * its path from `root`, e.g. `contract.base.consent.0.scopes.0`), and any
 * client declaration signed by another key than the `crypto.sign` it names.
 */
export function checkClear(root, value) {
  const walk = (path, v) => {
    const kind = kindOf(v);
    if (kind === 'hash') {
      throw new ClearError('hashed_value', path, `${path} is a hash ({"__hash":…}), not the clear value: the data bank accepts only clear values`);
    }
    if (kind === 'box') {
      throw new ClearError('boxed_value', path, `${path} is a sealed box ({"__box":…}), not the clear value: the data bank accepts only clear values`);
    }
    if (kind === 'list') v.forEach((c, i) => walk(`${path}.${i}`, c));
    if (kind === 'dict') {
      for (const k of Object.keys(v)) walk(`${path}.${segment(k)}`, v[k]);
      checkClientKey(path, v);
    }
  };
  walk(root, value);
}

/** A contract (before it is shown or signed) in clear: {@link checkClear} from `contract`. */
export function checkContractClear(contract) {
  checkClear('contract', contract);
}

function notBoolean(path, found) {
  return new ClearError('not_boolean', path, `${path} must be a JSON boolean (${found})`);
}

function checkMatrix(path, rows) {
  if (rows === undefined) return;
  if (!Array.isArray(rows)) throw notBoolean(path, 'not a list of lists of booleans');
  rows.forEach((row, g) => {
    if (!Array.isArray(row)) throw notBoolean(`${path}.${g}`, 'not a list of booleans');
    row.forEach((cell, s) => {
      if (typeof cell !== 'boolean') throw notBoolean(`${path}.${g}.${s}`, kindOf(cell));
    });
  });
}

/**
 * A signed grant in clear: {@link checkClear} from `grant`, `revoked` a
 * boolean and, when consented, the `consent` and `legitimate` matrices
 * lists of lists of booleans.
 */
export function checkGrantClear(grant) {
  checkClear('grant', grant);
  if (!isSignatureOf(grant, GRANT)) return;
  const body = grant.body;
  const revoked = prop(body, 'revoked');
  if (typeof revoked !== 'boolean') throw notBoolean('grant.body.revoked', revoked === undefined ? 'missing' : kindOf(revoked));
  if (revoked) return;
  const base = prop(body, 'base');
  if (base === undefined || base === null || kindOf(base) !== 'dict') return;
  checkMatrix('grant.body.base.consent', prop(base, 'consent'));
  checkMatrix('grant.body.base.legitimate', prop(base, 'legitimate'));
}

// ---------------------------------------------------------------------------
// Building and signing grants

function groupSizes(groups) {
  if (groups === undefined || groups === null) return [];
  if (!Array.isArray(groups)) throw new TypeError('malformed alias.contract: scope groups are not a list');
  return groups.map((g) => {
    const scopes = prop(g, 'scopes');
    if (!Array.isArray(scopes)) throw new TypeError('malformed alias.contract: a group has no scopes list');
    return scopes.length;
  });
}

/**
 * The shape of a contract's matrices: the number of scopes of each consent
 * group and of each legitimate group.
 * @returns {{contractual: boolean, consent: number[], legitimate: number[]}}
 */
export function matrixShape(contract) {
  const base = prop(requireContract(contract), 'base');
  return {
    contractual: has(base, 'contractual'),
    consent: groupSizes(prop(base, 'consent')),
    legitimate: groupSizes(has(base, 'legitimate') ? prop(prop(base, 'legitimate'), 'groups') : undefined),
  };
}

/**
 * A matrix shaped like the contract's `consent` (or `legitimate`) groups,
 * each switch `pick(scope, group, index)` (a boolean, or a constant boolean).
 * @param {object} contract
 * @param {'consent'|'legitimate'} basis
 * @param {boolean|((scope: any, group: number, index: number) => boolean)} pick
 */
export function matrixFor(contract, basis, pick) {
  const base = prop(requireContract(contract), 'base');
  const holder = prop(base, basis);
  const groups = basis === 'legitimate' ? (holder === undefined || holder === null ? undefined : prop(holder, 'groups')) : holder;
  if (groups === undefined || groups === null) return [];
  groupSizes(groups);
  return groups.map((g, gi) =>
    prop(g, 'scopes').map((scope, si) => Boolean(typeof pick === 'function' ? pick(scope, gi, si) : pick)),
  );
}

function checkRows(rows, sizes, name) {
  if (!Array.isArray(rows) || rows.length !== sizes.length) {
    throw new TypeError(`${name} must have ${sizes.length} rows (one per group of the contract)`);
  }
  rows.forEach((row, g) => {
    if (!Array.isArray(row) || row.length !== sizes[g] || !row.every((b) => typeof b === 'boolean')) {
      throw new TypeError(`${name}[${g}] must be ${sizes[g]} booleans (one per scope of the group)`);
    }
  });
  return rows.map((row) => [...row]);
}

/**
 * The unsigned body of a consented `alias.grant`:
 * `{type, contract, revoked: false, base: {contractual: true (when the
 * contract has a contractual part), consent, legitimate}}`, as `aliasctl
 * grant new` builds it. Rows must match the contract exactly.
 * @param {object} contract an alias.contract
 * @param {{consent?: boolean[][], legitimate?: boolean[][]}} [choice]
 *   default: every consent switch off, every legitimate switch on
 */
export function grantBody(contract, { consent, legitimate } = {}) {
  const shape = matrixShape(contract);
  const base = {};
  if (shape.contractual) base.contractual = true;
  base.consent = checkRows(consent ?? matrixFor(contract, 'consent', false), shape.consent, 'consent');
  base.legitimate = checkRows(legitimate ?? matrixFor(contract, 'legitimate', true), shape.legitimate, 'legitimate');
  return { type: GRANT, contract, revoked: false, base };
}

/** The unsigned body of a revoked `alias.grant`: `{type, contract, revoked: true}` (no base). */
export function revokedGrantBody(contract) {
  requireContract(contract);
  return { type: GRANT, contract, revoked: true };
}

function signChecked(keyPair, body, date, registry) {
  const signed = sign(keyPair, body, date);
  registry.verify(signed);
  return signed;
}

/**
 * Signs a grant of `contract` (which must verify: its client declaration's
 * signature included, and be signed in clear: {@link checkContractClear}). Returns the signature object; `toToken` gives the
 * token to send.
 * @param {{publicKey: Uint8Array, privateKey: Uint8Array}} keyPair the user's key
 * @param {object} contract
 * @param {{consent?: boolean[][], legitimate?: boolean[][], date?: number|Date}} [options]
 */
export function signGrant(keyPair, contract, { consent, legitimate, date = Date.now() } = {}) {
  const registry = aliasRegistry();
  registry.verify(requireContract(contract));
  checkContractClear(contract);
  const grant = signChecked(keyPair, grantBody(contract, { consent, legitimate }), date, registry);
  checkGrantClear(grant);
  return grant;
}

/**
 * Signs a revoked grant of `contract`: the newer grant that withdraws
 * consent (its date must be after the grant it replaces).
 */
export function signRevokedGrant(keyPair, contract, { date = Date.now() } = {}) {
  const registry = aliasRegistry();
  registry.verify(requireContract(contract));
  checkContractClear(contract);
  return signChecked(keyPair, revokedGrantBody(contract), date, registry);
}

/** The body of an `alias.bindAuthz` for the data bank at `origin`. */
export function bindAuthzBody(origin) {
  if (typeof origin !== 'string') throw new TypeError('bindAuthz: origin must be a string');
  return { type: BIND_AUTHZ, origin };
}

/** Signs an `alias.bindAuthz`: the user binds their key to the data bank at `origin`. */
export function signBindAuthz(keyPair, origin, { date = Date.now() } = {}) {
  return signChecked(keyPair, bindAuthzBody(origin), date, aliasRegistry());
}

// ---------------------------------------------------------------------------
// Signed requests and logins

/** The body of an `alias.bank.request` (the gateway's request.rs), `size` only for uploads. */
export function requestBody(method, path, origin, size) {
  const body = { type: BANK_REQUEST, method, path, origin };
  if (size !== undefined && size !== null) body.size = size;
  validateBankRequest(body);
  return body;
}

/**
 * Signs one request to the data bank: `method` and `path` exactly as sent,
 * `origin` as the gateway's `GET /alias/` names it, `size` the body length
 * of an upload. The gateway accepts it once, within a few minutes.
 */
export function signRequest(keyPair, { method, path, origin, size, date = Date.now() }) {
  return signChecked(keyPair, requestBody(method, path, origin, size), date, bankRegistry());
}

/** The `Authorization` header value for a signed request: `Alias <percent-encoded token>`. */
export function authorizationHeader(signedRequest) {
  return `Alias ${encodeURIComponent(toToken(signedRequest))}`;
}

/** The body of an `alias.bank.login`: the challenge the data bank issued, and its origin. */
export function loginBody(challenge, origin) {
  const bytes = typeof challenge === 'string' ? b64uDecode(challenge) : challenge;
  const body = { type: BANK_LOGIN, challenge: bytes, origin };
  validateBankLogin(body);
  return body;
}

/**
 * Signs the answer to a login challenge: `challenge` the bytes the data bank
 * issued (a Uint8Array, or its base64 text), `origin` the data bank's
 * origin. The data bank checks the signature, that the signer is the
 * account's key, that it issued the challenge and that it is unused.
 */
export function signLogin(keyPair, { challenge, origin, date = Date.now() }) {
  return signChecked(keyPair, loginBody(challenge, origin), date, bankRegistry());
}

// ---------------------------------------------------------------------------
// Account keys: password → keys, sealed identity box, public verifier

/**
 * Password hashing parameters: argon2id (libsodium crypto_pwhash,
 * ALG_ARGON2ID13) with libsodium's INTERACTIVE limits — the parameters of
 * the reference's `seedOfPassword` — and a 16-byte salt.
 */
export const PWHASH_DEFAULTS = Object.freeze({ alg: 'argon2id13', opslimit: 2, memlimit: 67108864 });

/** Context of the key derivation (libsodium crypto_kdf, 8 bytes). */
export const KDF_CONTEXT = 'aliasbnk';
/** Subkey ids under the password key. */
export const KDF_IDS = Object.freeze({ sign: 1, box: 2, verifier: 3 });

function pwhashParams(params) {
  const sodium = getSodium();
  const p = { ...PWHASH_DEFAULTS, ...params };
  if (p.alg !== 'argon2id13') throw new TypeError(`pwhash: unsupported algorithm ${JSON.stringify(p.alg)}`);
  if (
    !Number.isInteger(p.opslimit) ||
    !Number.isInteger(p.memlimit) ||
    p.opslimit < sodium.crypto_pwhash_OPSLIMIT_MIN ||
    p.memlimit < sodium.crypto_pwhash_MEMLIMIT_MIN
  ) {
    throw new TypeError('pwhash: opslimit and memlimit must be integers at least libsodium minimums');
  }
  return { alg: p.alg, opslimit: p.opslimit, memlimit: p.memlimit };
}

/** A new random 16-byte salt (crypto_pwhash_SALTBYTES), stored with the account. */
export function newSalt() {
  const sodium = getSodium();
  return sodium.randombytes_buf(sodium.crypto_pwhash_SALTBYTES);
}

function passwordBytes(password) {
  if (typeof password === 'string') return new TextEncoder().encode(password.normalize('NFC'));
  if (password instanceof Uint8Array) return password;
  throw new TypeError('password must be a string or a Uint8Array');
}

/**
 * Derives the user's keys from the password and salt:
 * K = argon2id(password (UTF-8 of its NFC form), salt, 32 bytes, params);
 * then libsodium crypto_kdf subkeys of K in context "aliasbnk":
 * id 1 → the 32-byte Ed25519 seed, id 2 → the 32-byte X25519 seed of the
 * identity box, id 3 → the 32-byte public verifier. Deterministic.
 * @param {string|Uint8Array} password
 * @param {Uint8Array|string} salt 16 bytes (or their base64)
 * @param {{opslimit?: number, memlimit?: number}} [params] default PWHASH_DEFAULTS
 * @returns {Promise<{signSeed: Uint8Array, signKeyPair: object, boxKeyPair: object, verifier: Uint8Array, params: object}>}
 */
export async function deriveKeys(password, salt, params = {}) {
  const sodium = getSodium();
  if (typeof sodium.crypto_pwhash !== 'function') {
    throw new TypeError('deriveKeys needs libsodium-wrappers-sumo (crypto_pwhash)');
  }
  const saltBytes = typeof salt === 'string' ? b64uDecode(salt) : salt;
  if (!(saltBytes instanceof Uint8Array) || saltBytes.length !== sodium.crypto_pwhash_SALTBYTES) {
    throw new TypeError(`salt must be ${sodium.crypto_pwhash_SALTBYTES} bytes`);
  }
  const p = pwhashParams(params);
  const pw = passwordBytes(password);
  const master = sodium.crypto_pwhash(32, pw, saltBytes, p.opslimit, p.memlimit, sodium.crypto_pwhash_ALG_ARGON2ID13);
  try {
    const sub = (id) => sodium.crypto_kdf_derive_from_key(32, id, KDF_CONTEXT, master);
    const signSeed = sub(KDF_IDS.sign);
    const boxSeed = sub(KDF_IDS.box);
    const verifier = sub(KDF_IDS.verifier);
    const boxKeyPair = sodium.crypto_box_seed_keypair(boxSeed);
    sodium.memzero(boxSeed);
    return { signSeed, signKeyPair: keyPairFromSeed(signSeed), boxKeyPair, verifier, params: p };
  } finally {
    sodium.memzero(master);
    if (typeof password === 'string') sodium.memzero(pw);
  }
}

/**
 * The identity the box holds: `{username, origin, signSeed, seed, bind}`,
 * with `signSeed` the Ed25519 seed of the user's key (the one derived when
 * the account was made: it stays the user's key across password changes),
 * `seed` 64 random bytes for later derivations, `bind` the signed
 * `alias.bindAuthz` for `origin`.
 */
export function createIdentity({ username, origin, signSeed, date = Date.now() }) {
  if (typeof username !== 'string' || username === '' || username.includes(':')) {
    throw new TypeError('username must be a non-empty string without ":"');
  }
  const sodium = getSodium();
  return {
    username,
    origin,
    signSeed: new Uint8Array(signSeed),
    seed: sodium.randombytes_buf(64),
    bind: signBindAuthz(keyPairFromSeed(signSeed), origin, { date }),
  };
}

/** Seals an identity to the box key: a `Box` of crypto_box_seal(token of the identity). */
export function sealIdentity(identity, boxPublicKey) {
  const sodium = getSodium();
  return new Box(sodium.crypto_box_seal(new TextEncoder().encode(toToken(identity)), boxPublicKey));
}

/**
 * Opens a sealed identity (a `Box` or its token) with the box key pair, and
 * checks it: its bind signature verifies and is by the key of `signSeed`.
 * Throws `Error('wrong password or damaged identity box')` when it cannot be opened.
 */
export function openIdentity(box, boxKeyPair) {
  const sodium = getSodium();
  const sealed = typeof box === 'string' ? decode(box) : box;
  if (!(sealed instanceof Box)) throw new TypeError('openIdentity: expected a Box or its token');
  let plain;
  try {
    plain = sodium.crypto_box_seal_open(sealed.bytes, boxKeyPair.publicKey, boxKeyPair.privateKey);
  } catch {
    throw new Error('wrong password or damaged identity box');
  }
  const identity = decode(new TextDecoder('utf-8', { fatal: true }).decode(plain));
  const seed = prop(identity, 'signSeed');
  if (!(seed instanceof Uint8Array) || seed.length !== 32) throw new DecodeError('not_json', 'identity box: no 32-byte signSeed');
  aliasRegistry().verify(identity);
  const pk = keyPairFromSeed(seed).publicKey;
  if (!isSignatureOf(identity.bind, BIND_AUTHZ) || b64uEncode(identity.bind.signer) !== b64uEncode(pk)) {
    throw new DecodeError('not_json', 'identity box: bind is not signed by the identity key');
  }
  return identity;
}

/** `user@host`: the user's alias at the data bank of `origin`. */
export function aliasOf(username, origin) {
  return `${username}@${new URL(origin).host}`;
}

/**
 * What the data bank stores per user (PROTOCOL.md §9/§A `account`, extended):
 * `{username, salt, pwhash: {alg, opslimit, memlimit}, box, publicPwdHash, publicKey}`
 * — `salt` base64 of 16 bytes; `box` the token `{"__box": …}` of the sealed
 * identity; `publicPwdHash` base64 of the 32-byte verifier; `publicKey`
 * base64 of the user's Ed25519 public key.
 */
export function accountRecord({ username, salt, keys, box, publicKey }) {
  return {
    username,
    salt: b64uEncode(salt),
    pwhash: { ...keys.params },
    box: toToken(box),
    publicPwdHash: b64uEncode(keys.verifier),
    publicKey: b64uEncode(publicKey),
  };
}

/**
 * Makes a new account: a random salt, the derived keys, the identity (its
 * key is the derived signing key) sealed to the derived box key.
 * @returns {Promise<{record: object, identity: object, keyPair: object, keys: object}>}
 */
export async function createAccount(username, password, { origin, params, date = Date.now() } = {}) {
  const salt = newSalt();
  const keys = await deriveKeys(password, salt, params);
  const identity = createIdentity({ username, origin, signSeed: keys.signSeed, date });
  const box = sealIdentity(identity, keys.boxKeyPair.publicKey);
  const record = accountRecord({ username, salt, keys, box, publicKey: keys.signKeyPair.publicKey });
  return { record, identity, keyPair: keys.signKeyPair, keys };
}

/**
 * Opens an account with the password: derives the keys from the stored salt
 * and parameters, opens the identity box, and gives the user's key pair
 * (from the identity, checked against `record.publicKey`).
 * @param {string|Uint8Array} password
 * @param {{salt: string, pwhash?: object, box: string, publicKey?: string}} record
 */
export async function unlockAccount(password, record) {
  const keys = await deriveKeys(password, record.salt, record.pwhash);
  const identity = openIdentity(record.box, keys.boxKeyPair);
  const keyPair = keyPairFromSeed(identity.signSeed);
  if (record.publicKey !== undefined && b64uEncode(keyPair.publicKey) !== record.publicKey) {
    throw new Error('identity box does not hold the account key');
  }
  return { identity, keyPair, keys };
}

/**
 * New record fields after a password change: a new salt, verifier and box
 * holding the same identity (so the same signing key and public key).
 * @returns {Promise<object>} the full new record
 */
export async function changePassword(identity, newPassword, { params } = {}) {
  const salt = newSalt();
  const keys = await deriveKeys(newPassword, salt, params);
  const box = sealIdentity(identity, keys.boxKeyPair.publicKey);
  return accountRecord({ username: identity.username, salt, keys, box, publicKey: keyPairFromSeed(identity.signSeed).publicKey });
}

function stdBase64(bytes) {
  return b64uEncode(bytes).replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((3 - (bytes.length % 3)) % 3);
}

/** The reference's account authorization (§A): `Basic base64(username ":" b64u(verifier))`. */
export function basicAuthorization(username, verifier) {
  const v = typeof verifier === 'string' ? verifier : b64uEncode(verifier);
  return `Basic ${stdBase64(new TextEncoder().encode(`${username}:${v}`))}`;
}
