// Over 600 lines on purpose: the pages' one self-contained anychain module
// (no imports), kept whole so it reads beside PROTOCOL.md Part 2 and the
// Rust `protocol::anychain` it mirrors.
//
// The anychain format, as the reference library computes it (PROTOCOL.md
// Part 2 §1–§3, shared/vectors/README.md): the value model, the strict JSON
// form and tokens, the fold (a BLAKE2b-512 merkle hash, quirks included),
// Ed25519 signatures and the validator registry.
//
// Plain ES module, no imports: the libsodium instance is handed in once with
// `await init(sodium)` (libsodium-wrappers-sumo, or libsodium-wrappers when
// no password hashing is needed), so the same file runs in Node and in a
// browser.
//
// Value model:
//   null, boolean, number (a double), string   as in JavaScript
//   list                                       an Array
//   dict                                       a plain object (its own keys, in JavaScript property order)
//   byte string  {"__bytes": b64u}             a Uint8Array
//   hash         {"__hash": b64u}              a `Hash` (a fold standing in for a subtree)
//   sealed box   {"__box": b64u}               a `Box` (libsodium crypto_box_seal output)
// Anything else (undefined, functions, Dates, Maps, other typed arrays,
// non-finite numbers in tokens) is refused rather than silently converted.

/** Type of a signature object. */
export const SIGNATURE_TYPE = 'anychain.signature';
/** Type of the library's revocation object. */
export const REVOKE_TYPE = 'anychain.revoke';

const TAG_BYTES = '__bytes';
const TAG_HASH = '__hash';
const TAG_BOX = '__box';

// ---------------------------------------------------------------------------
// libsodium

let sodium = null;

/**
 * Sets the libsodium instance used for hashing and signatures, after waiting
 * for it to be ready. Returns the instance.
 * @param {object} instance the libsodium-wrappers(-sumo) module object
 */
export async function init(instance) {
  if (!instance || typeof instance !== 'object' || !('ready' in instance)) {
    throw new TypeError('init(sodium): pass the libsodium-wrappers(-sumo) module object');
  }
  await instance.ready;
  if (typeof instance.crypto_generichash !== 'function') {
    throw new TypeError('init(sodium): the object is not a ready libsodium-wrappers instance');
  }
  sodium = instance;
  nullDigest = null;
  return instance;
}

/** The libsodium instance given to `init`. */
export function getSodium() {
  if (sodium === null) {
    throw new Error('anychain: call `await init(sodium)` first');
  }
  return sodium;
}

// ---------------------------------------------------------------------------
// Leaves

function checkedBytes(bytes, what) {
  if (!(bytes instanceof Uint8Array)) {
    throw new TypeError(`${what} needs a Uint8Array`);
  }
  return bytes;
}

/** A precomputed fold standing in for a subtree (`{"__hash": …}`). */
export class Hash {
  /** @param {Uint8Array} bytes the fold (any length: it is used raw) */
  constructor(bytes) {
    this.bytes = checkedBytes(bytes, 'Hash');
  }

  /** URL-safe unpadded base64 of the bytes. */
  toB64() {
    return b64uEncode(this.bytes);
  }
}

/** A sealed box (`{"__box": …}`), the output of libsodium crypto_box_seal. */
export class Box {
  /** @param {Uint8Array} bytes */
  constructor(bytes) {
    this.bytes = checkedBytes(bytes, 'Box');
  }

  /** URL-safe unpadded base64 of the bytes. */
  toB64() {
    return b64uEncode(this.bytes);
  }
}

/**
 * What a value is: 'null', 'boolean', 'number', 'string', 'list', 'dict',
 * 'bytes', 'hash' or 'box'. Throws a TypeError for anything else.
 */
export function kindOf(v) {
  if (v === null) return 'null';
  switch (typeof v) {
    case 'boolean':
      return 'boolean';
    case 'number':
      return 'number';
    case 'string':
      return 'string';
    case 'object':
      break;
    case 'undefined':
      throw new TypeError('anychain: undefined is not a value (use null)');
    default:
      throw new TypeError(`anychain: unhashable value of type ${typeof v}`);
  }
  if (Array.isArray(v)) return 'list';
  if (v instanceof Uint8Array) return 'bytes';
  if (v instanceof Hash) return 'hash';
  if (v instanceof Box) return 'box';
  const proto = Object.getPrototypeOf(v);
  if (proto === Object.prototype || proto === null) return 'dict';
  throw new TypeError(`anychain: unsupported value ${Object.prototype.toString.call(v)}`);
}

// ---------------------------------------------------------------------------
// Base64: URL-safe alphabet, no padding, strict (libsodium's default variant)

const B64_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const B64_INDEX = new Int8Array(128).fill(-1);
for (let i = 0; i < B64_ALPHABET.length; i++) B64_INDEX[B64_ALPHABET.charCodeAt(i)] = i;

/** Text that is not strict URL-safe unpadded base64. */
export class B64Error extends Error {
  constructor(message) {
    super(message);
    this.name = 'B64Error';
  }
}

/** URL-safe base64 without padding (`[0xfb, 0xff]` → `-_8`). */
export function b64uEncode(bytes) {
  checkedBytes(bytes, 'b64uEncode');
  let out = '';
  let i = 0;
  for (; i + 3 <= bytes.length; i += 3) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    out += B64_ALPHABET[n >> 18] + B64_ALPHABET[(n >> 12) & 63] + B64_ALPHABET[(n >> 6) & 63] + B64_ALPHABET[n & 63];
  }
  const rest = bytes.length - i;
  if (rest === 1) {
    const n = bytes[i] << 16;
    out += B64_ALPHABET[n >> 18] + B64_ALPHABET[(n >> 12) & 63];
  } else if (rest === 2) {
    const n = (bytes[i] << 16) | (bytes[i + 1] << 8);
    out += B64_ALPHABET[n >> 18] + B64_ALPHABET[(n >> 12) & 63] + B64_ALPHABET[(n >> 6) & 63];
  }
  return out;
}

/**
 * Decodes URL-safe unpadded base64, refusing what libsodium refuses:
 * padding, `+` and `/`, whitespace, a dangling character, non-zero
 * trailing bits. `""` gives empty bytes.
 */
export function b64uDecode(text) {
  if (typeof text !== 'string') throw new B64Error('base64: expected a string');
  if (text.length % 4 === 1) throw new B64Error('base64: incomplete input');
  const out = new Uint8Array(Math.floor((text.length * 3) / 4));
  let acc = 0;
  let bits = 0;
  let o = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    const d = c < 128 ? B64_INDEX[c] : -1;
    if (d < 0) throw new B64Error(`base64: invalid character at offset ${i}`);
    acc = ((acc << 6) | d) & 0xffffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (acc >> bits) & 0xff;
    }
  }
  if ((acc & ((1 << bits) - 1)) !== 0) throw new B64Error('base64: invalid input (non-zero trailing bits)');
  return out;
}

// ---------------------------------------------------------------------------
// JSON form and tokens

/** Default limits for untrusted text: 1 MiB, 64 levels of nesting (the gateway's). */
export const DEFAULT_LIMITS = Object.freeze({ maxBytes: 1 << 20, maxDepth: 64 });

/** Why a text or JSON tree is not an acceptable anychain value. `code` says which rule. */
export class DecodeError extends Error {
  /**
   * @param {'too_large'|'too_deep'|'syntax'|'non_finite'|'duplicate_key'|'forbidden_key'|'bad_tag'|'bad_string'|'not_json'} code
   * @param {string} message
   */
  constructor(code, message) {
    super(message);
    this.name = 'DecodeError';
    this.code = code;
  }
}

// `__proto__` cannot be an own key of a plain object built by assignment; the
// reference turns it into the prototype (PROTOCOL.md §1.2, §10 S3).
const FORBIDDEN_DECODE_KEYS = new Set(['__proto__']);

function utf8Length(s) {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

function isWellFormed(s) {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      if (i + 1 >= s.length || (s.charCodeAt(i + 1) & 0xfc00) !== 0xdc00) return false;
      i++;
    } else if (c >= 0xdc00 && c <= 0xdfff) {
      return false;
    }
  }
  return true;
}

function tagLeaf(key, payload) {
  let bytes;
  try {
    bytes = b64uDecode(payload);
  } catch (e) {
    throw new DecodeError('bad_tag', `bad ${key} payload: ${e.message}`);
  }
  if (key === TAG_BYTES) return bytes;
  if (key === TAG_HASH) return new Hash(bytes);
  return new Box(bytes);
}

// A one-key object whose key is a tag and whose value is a string is a leaf.
function fromEntries(entries) {
  if (entries.length === 1) {
    const [k, v] = entries[0];
    if ((k === TAG_BYTES || k === TAG_HASH || k === TAG_BOX) && typeof v === 'string') {
      return tagLeaf(k, v);
    }
  }
  const d = {};
  for (const [k, v] of entries) d[k] = v;
  return d;
}

class Parser {
  constructor(text, maxDepth) {
    this.s = text;
    this.i = 0;
    this.maxDepth = maxDepth;
  }

  fail(message) {
    return new DecodeError('syntax', `malformed JSON at offset ${this.i}: ${message}`);
  }

  ws() {
    const s = this.s;
    while (this.i < s.length) {
      const c = s.charCodeAt(this.i);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) this.i++;
      else break;
    }
  }

  value(depth) {
    this.ws();
    const c = this.s[this.i];
    if (c === '{') return this.object(depth);
    if (c === '[') return this.array(depth);
    if (c === '"') return this.string();
    if (c === '-' || (c >= '0' && c <= '9')) return this.number();
    if (this.s.startsWith('true', this.i)) {
      this.i += 4;
      return true;
    }
    if (this.s.startsWith('false', this.i)) {
      this.i += 5;
      return false;
    }
    if (this.s.startsWith('null', this.i)) {
      this.i += 4;
      return null;
    }
    throw this.fail(c === undefined ? 'unexpected end of input' : `unexpected character ${JSON.stringify(c)}`);
  }

  enter(depth) {
    if (depth >= this.maxDepth) {
      throw new DecodeError('too_deep', `input nests deeper than ${this.maxDepth} levels`);
    }
  }

  array(depth) {
    this.enter(depth);
    this.i++;
    const items = [];
    this.ws();
    if (this.s[this.i] === ']') {
      this.i++;
      return items;
    }
    for (;;) {
      items.push(this.value(depth + 1));
      this.ws();
      const c = this.s[this.i++];
      if (c === ']') return items;
      if (c !== ',') {
        this.i--;
        throw this.fail("expected ',' or ']'");
      }
    }
  }

  object(depth) {
    this.enter(depth);
    this.i++;
    const entries = [];
    const seen = new Set();
    this.ws();
    if (this.s[this.i] === '}') {
      this.i++;
      return fromEntries(entries);
    }
    for (;;) {
      this.ws();
      if (this.s[this.i] !== '"') throw this.fail('expected a string key');
      const key = this.string();
      if (FORBIDDEN_DECODE_KEYS.has(key)) {
        throw new DecodeError('forbidden_key', `forbidden key ${JSON.stringify(key)}: the reference implementation mishandles it`);
      }
      if (seen.has(key)) throw new DecodeError('duplicate_key', `duplicate key ${JSON.stringify(key)} in an object`);
      seen.add(key);
      this.ws();
      if (this.s[this.i] !== ':') throw this.fail("expected ':'");
      this.i++;
      entries.push([key, this.value(depth + 1)]);
      this.ws();
      const c = this.s[this.i++];
      if (c === '}') return fromEntries(entries);
      if (c !== ',') {
        this.i--;
        throw this.fail("expected ',' or '}'");
      }
    }
  }

  string() {
    const s = this.s;
    this.i++;
    let out = '';
    let start = this.i;
    for (;;) {
      if (this.i >= s.length) throw this.fail('unterminated string');
      const c = s.charCodeAt(this.i);
      if (c === 0x22) {
        out += s.slice(start, this.i);
        this.i++;
        break;
      }
      if (c < 0x20) throw this.fail('control character in a string');
      if (c !== 0x5c) {
        this.i++;
        continue;
      }
      out += s.slice(start, this.i);
      const e = s[this.i + 1];
      this.i += 2;
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          const hex = s.slice(this.i, this.i + 4);
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) throw this.fail('bad \\u escape');
          out += String.fromCharCode(parseInt(hex, 16));
          this.i += 4;
          break;
        }
        default:
          this.i -= 2;
          throw this.fail('bad escape');
      }
      start = this.i;
    }
    if (!isWellFormed(out)) {
      throw new DecodeError('bad_string', 'string holds a lone UTF-16 surrogate');
    }
    return out;
  }

  number() {
    const m = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
    m.lastIndex = this.i;
    const found = m.exec(this.s);
    if (!found) throw this.fail('bad number');
    this.i = m.lastIndex;
    const n = Number(found[0]);
    if (!Number.isFinite(n)) throw new DecodeError('non_finite', 'number out of range (not a finite double)');
    return n;
  }
}

/**
 * Decodes anychain JSON text (which is also the token form) into a value,
 * without verifying signatures (the reference's `fromSafeToken`). Strict:
 * JSON syntax as RFC 8259, numbers become doubles and must be finite,
 * no duplicate keys, no `__proto__` key, no lone surrogates, tag payloads
 * strict base64, and the size and depth limits.
 * @param {string} text
 * @param {{maxBytes?: number, maxDepth?: number}} [limits]
 */
export function decode(text, limits = DEFAULT_LIMITS) {
  if (typeof text !== 'string') throw new DecodeError('not_json', 'expected JSON text');
  const maxBytes = limits.maxBytes ?? DEFAULT_LIMITS.maxBytes;
  const maxDepth = limits.maxDepth ?? DEFAULT_LIMITS.maxDepth;
  if (text.length > maxBytes || utf8Length(text) > maxBytes) {
    throw new DecodeError('too_large', `input is ${utf8Length(text)} bytes, over the limit of ${maxBytes} bytes`);
  }
  const p = new Parser(text, maxDepth);
  const v = p.value(0);
  p.ws();
  if (p.i !== text.length) throw p.fail('trailing characters');
  return v;
}

/**
 * Turns an already parsed JSON tree (from JSON.parse or `response.json()`)
 * into a value, with the same rules as `decode` (duplicate keys cannot be
 * seen any more at this point).
 * @param {unknown} json
 * @param {{maxDepth?: number}} [limits]
 */
export function fromJSON(json, limits = DEFAULT_LIMITS) {
  const maxDepth = limits.maxDepth ?? DEFAULT_LIMITS.maxDepth;
  const walk = (j, depth) => {
    if (j === null || typeof j === 'boolean') return j;
    if (typeof j === 'number') {
      if (!Number.isFinite(j)) throw new DecodeError('non_finite', 'number out of range (not a finite double)');
      return j;
    }
    if (typeof j === 'string') {
      if (!isWellFormed(j)) throw new DecodeError('bad_string', 'string holds a lone UTF-16 surrogate');
      return j;
    }
    if (typeof j !== 'object') throw new DecodeError('not_json', `not a JSON value: ${typeof j}`);
    if (depth >= maxDepth) throw new DecodeError('too_deep', `input nests deeper than ${maxDepth} levels`);
    if (Array.isArray(j)) {
      const out = new Array(j.length);
      for (let i = 0; i < j.length; i++) out[i] = walk(j[i], depth + 1);
      return out;
    }
    const proto = Object.getPrototypeOf(j);
    if (proto !== Object.prototype && proto !== null) throw new DecodeError('not_json', 'not a JSON value: a non-plain object');
    const entries = [];
    for (const k of Object.keys(j)) {
      if (FORBIDDEN_DECODE_KEYS.has(k)) {
        throw new DecodeError('forbidden_key', `forbidden key ${JSON.stringify(k)}: the reference implementation mishandles it`);
      }
      if (!isWellFormed(k)) throw new DecodeError('bad_string', 'key holds a lone UTF-16 surrogate');
      entries.push([k, walk(j[k], depth + 1)]);
    }
    return fromEntries(entries);
  };
  return walk(json, 0);
}

/**
 * The JSON form of a value: byte strings, hashes and boxes become their
 * one-key tag objects; dicts keep their key order.
 */
export function toJSON(v) {
  switch (kindOf(v)) {
    case 'null':
    case 'boolean':
    case 'string':
      return v;
    case 'number':
      if (!Number.isFinite(v)) throw new TypeError('anychain: a token cannot hold NaN or Infinity');
      return v;
    case 'bytes':
      return { [TAG_BYTES]: b64uEncode(v) };
    case 'hash':
      return { [TAG_HASH]: b64uEncode(v.bytes) };
    case 'box':
      return { [TAG_BOX]: b64uEncode(v.bytes) };
    case 'list': {
      const out = new Array(v.length);
      for (let i = 0; i < v.length; i++) out[i] = toJSON(v[i]);
      return out;
    }
    default: {
      const out = {};
      for (const k of Object.keys(v)) {
        if (FORBIDDEN_DECODE_KEYS.has(k)) throw new TypeError(`anychain: key ${JSON.stringify(k)} is not allowed`);
        out[k] = toJSON(v[k]);
      }
      return out;
    }
  }
}

/**
 * The token of a value: compact JSON text, exactly the reference's
 * `JSON.stringify(toJSON(v))` (keys in object order, raw UTF-8, numbers as
 * JavaScript writes them).
 */
export function toToken(v) {
  return JSON.stringify(toJSON(v));
}

// ---------------------------------------------------------------------------
// The fold

const utf8 = new TextEncoder();
const PREFIX = {
  bytes: utf8.encode('bytes:'),
  box: utf8.encode('box:'),
  list: utf8.encode('list:'),
  keys: utf8.encode('keys:'),
  values: utf8.encode('values:'),
  dict: utf8.encode('dict:'),
};

function concat(parts) {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Unkeyed BLAKE2b with a 64-byte digest of the concatenated parts. */
function h(...parts) {
  return getSodium().crypto_generichash(64, parts.length === 1 ? parts[0] : concat(parts), null);
}

/** Hashes a text as UTF-8 (lone surrogates become U+FFFD, as TextEncoder does). */
function hText(text) {
  return h(utf8.encode(text));
}

let nullDigest = null;
function hNull() {
  if (nullDigest === null) nullDigest = hText('null:null');
  return nullDigest;
}

function primitiveError() {
  return new TypeError('Cannot convert object to primitive value');
}

/**
 * The text `Array.prototype.join` gives a value inside an array, which is
 * what the reference's comparator-less sort compares: null → "", numbers as
 * `String(n)`, lists joined with ",", bytes as their decimal values joined
 * with ",", dicts, hashes and boxes "[object Object]" (a dict with an own
 * `toString` key cannot be converted: TypeError, as in JavaScript).
 */
export function joinText(v) {
  switch (kindOf(v)) {
    case 'null':
      return '';
    case 'boolean':
    case 'number':
    case 'string':
      return String(v);
    case 'list':
      return v.map(joinText).join(',');
    case 'bytes':
      return Array.prototype.join.call(v, ',');
    case 'dict':
      if (Object.prototype.hasOwnProperty.call(v, 'toString')) throw primitiveError();
      return '[object Object]';
    default:
      return '[object Object]';
  }
}

function foldDict(d) {
  let entries = Object.keys(d).map((k) => [k, d[k]]);
  if (entries.length >= 2) {
    // `Object.entries(o).sort()`: each [key, value] pair compared as the text
    // `key,value`, by UTF-16 code units; a stable sort, so ties keep dict order.
    const keyed = entries.map((e) => ({ e, text: `${e[0]},${joinText(e[1])}` }));
    keyed.sort((a, b) => (a.text < b.text ? -1 : a.text > b.text ? 1 : 0));
    entries = keyed.map((x) => x.e);
  }
  // The reference never fills in its key variable: the keys accumulator only
  // counts entries, and each entry is hashed as the two-item list [key, value].
  const nulls = new Array(entries.length).fill(hNull());
  const keys = h(PREFIX.keys, ...nulls);
  const pairs = entries.map(([k, v]) => h(PREFIX.list, hText(`string:${k}`), foldValue(v)));
  const values = h(PREFIX.values, ...pairs);
  return h(PREFIX.dict, keys, values);
}

function foldValue(v) {
  switch (kindOf(v)) {
    case 'null':
      return hNull();
    case 'boolean':
      return hText(v ? 'boolean:true' : 'boolean:false');
    case 'number':
      // JSON.stringify: shortest round-trip digits, -0 → "0", NaN/±Infinity → "null".
      return hText(`number:${JSON.stringify(v)}`);
    case 'string':
      return hText(`string:${v}`);
    case 'bytes':
      return h(PREFIX.bytes, v);
    case 'box':
      return h(PREFIX.box, v.bytes);
    case 'hash':
      return v.bytes; // used raw, whatever its length
    case 'list':
      return h(PREFIX.list, ...v.map(foldValue));
    default:
      return foldDict(v);
  }
}

/**
 * The fold of a value: 64 bytes (or, for a bare `Hash`, its raw bytes).
 * @returns {Uint8Array}
 */
export function fold(v) {
  return new Uint8Array(foldValue(v));
}

/** The fold as URL-safe unpadded base64 (86 characters for 64 bytes). */
export function foldB64(v) {
  return b64uEncode(foldValue(v));
}

/** The fold as a `Hash` value that can stand in for the subtree. */
export function foldHash(v) {
  return new Hash(fold(v));
}

// ---------------------------------------------------------------------------
// Keys and signatures

/**
 * The Ed25519 key pair of a 32-byte seed (libsodium crypto_sign_seed_keypair):
 * `{publicKey: 32 bytes, privateKey: 64 bytes (seed ‖ public key), keyType}`.
 */
export function keyPairFromSeed(seed) {
  checkedBytes(seed, 'keyPairFromSeed');
  if (seed.length !== 32) throw new TypeError('keyPairFromSeed: the seed must be 32 bytes');
  return getSodium().crypto_sign_seed_keypair(seed);
}

function checkKeyPair(keyPair) {
  const pk = keyPair && keyPair.publicKey;
  const sk = keyPair && keyPair.privateKey;
  if (!(pk instanceof Uint8Array) || pk.length !== 32 || !(sk instanceof Uint8Array) || sk.length !== 64) {
    throw new TypeError('sign: expected a key pair {publicKey: 32 bytes, privateKey: 64 bytes}');
  }
  for (let i = 0; i < 32; i++) {
    if (sk[32 + i] !== pk[i]) throw new TypeError('sign: the public key does not belong to the private key');
  }
  return keyPair;
}

/** A signature date as the number the library stores: milliseconds since the epoch. */
function dateMs(date) {
  const n = date instanceof Date ? date.getTime() : date;
  if (typeof n !== 'number' || !Number.isFinite(n)) {
    throw new TypeError('sign: date must be a Date or a finite number of milliseconds since the epoch');
  }
  return n;
}

/**
 * Signs `body`: the signature object `{type: "anychain.signature", date,
 * signer, body, signature}` (the reference's key order), where `signature`
 * is the detached Ed25519 signature of fold({type, date, signer, body}).
 * Deterministic for a given key, body and date.
 * @param {{publicKey: Uint8Array, privateKey: Uint8Array}} keyPair
 * @param {*} body any anychain value
 * @param {number|Date} [date] milliseconds since the epoch (default: now)
 */
export function sign(keyPair, body, date = Date.now()) {
  checkKeyPair(keyPair);
  const sig = {
    type: SIGNATURE_TYPE,
    date: dateMs(date),
    signer: new Uint8Array(keyPair.publicKey),
    body,
  };
  sig.signature = getSodium().crypto_sign_detached(fold(sig), keyPair.privateKey);
  return sig;
}

/** The fold a signature object signs: fold({type, body, date, signer}) (missing fields count as null). */
export function signedMessage(sig) {
  const field = (k) => (Object.prototype.hasOwnProperty.call(sig, k) ? sig[k] : null);
  return fold({ type: field('type'), body: field('body'), date: field('date'), signer: field('signer') });
}

// A validator failure carrying the reference's message.
class Invalid extends Error {
  toString() {
    return this.message;
  }
}

/** Fails a validator with `message` (the registry reports `invalid chain: <message>`). */
export function invalid(message) {
  return new Invalid(message);
}

// What libsodium-wrappers accepts as bytes, with its TypeError texts. A
// string is refused here (libsodium-wrappers would use its UTF-8 bytes as a
// key; alias-bank never does).
function sodiumBytes(v, name, len) {
  if (v === null || v === undefined) throw new TypeError(`${name} cannot be null or undefined`);
  if (typeof v === 'string') {
    if (utf8Length(v) !== len) throw new TypeError(`invalid ${name} length`);
    return null;
  }
  if (!(v instanceof Uint8Array)) throw new TypeError(`unsupported input type for ${name}`);
  if (v.length !== len) throw new TypeError(`invalid ${name} length`);
  return v;
}

function verifyDetached(signature, message, publicKey, failure) {
  const sig = sodiumBytes(signature, 'signature', 64);
  const pk = sodiumBytes(publicKey, 'publicKey', 32);
  if (sig === null || pk === null) throw invalid(failure);
  let ok = false;
  try {
    ok = getSodium().crypto_sign_verify_detached(sig, message, pk);
  } catch {
    ok = false;
  }
  if (!ok) throw invalid(failure);
}

// ---------------------------------------------------------------------------
// JavaScript property semantics over values (what the validators rely on)

// How JavaScript shows a primitive in a TypeError message.
function display(v) {
  return v === undefined ? 'undefined' : String(v);
}

/**
 * JavaScript `key in obj` over values, own properties only: dicts by key,
 * lists and bytes by index (and `length`); hashes and boxes have none; on a
 * primitive it is the JavaScript TypeError.
 */
export function has(obj, key) {
  if (obj !== null && typeof obj === 'object') {
    if (obj instanceof Hash || obj instanceof Box) return false;
    if (Array.isArray(obj) || obj instanceof Uint8Array) {
      if (key === 'length') return true;
      return /^(0|[1-9][0-9]*)$/.test(key) && Number(key) < obj.length;
    }
    return Object.prototype.hasOwnProperty.call(obj, key);
  }
  throw new TypeError(`Cannot use 'in' operator to search for '${key}' in ${display(obj)}`);
}

/**
 * JavaScript `obj[key]` over values, own properties only (`undefined` when
 * absent); reading from null or undefined is the JavaScript TypeError.
 */
export function prop(obj, key) {
  if (obj === null || obj === undefined) {
    throw new TypeError(`Cannot read properties of ${obj === null ? 'null' : 'undefined'} (reading '${key}')`);
  }
  if (typeof obj === 'string') {
    if (key === 'length') return obj.length;
    return /^(0|[1-9][0-9]*)$/.test(key) && Number(key) < obj.length ? obj[Number(key)] : undefined;
  }
  if (typeof obj !== 'object') return undefined;
  return has(obj, key) ? obj[key] : undefined;
}

/** The keys a `for … in` loop visits on a value. */
export function forInKeys(obj) {
  if (obj === null || obj === undefined) return [];
  if (typeof obj === 'string' || Array.isArray(obj) || obj instanceof Uint8Array) {
    return Array.from({ length: obj.length }, (_, i) => String(i));
  }
  if (typeof obj !== 'object' || obj instanceof Hash || obj instanceof Box) return [];
  return Object.keys(obj);
}

// ---------------------------------------------------------------------------
// Validation

/** Why a value does not verify; `message` is the reference's text exactly. */
export class VerifyError extends Error {
  constructor(message) {
    super(message);
    this.name = 'VerifyError';
  }
}

/** The `anychain.signature` validator. */
export function validateSignature(o) {
  if (!(has(o, 'signature') && has(o, 'signer') && has(o, 'date') && has(o, 'body'))) {
    throw invalid('missing fields');
  }
  const message = fold({ type: o.type, body: o.body, date: o.date, signer: o.signer });
  verifyDetached(o.signature, message, o.signer, 'bad signature or forged document');
}

/** The `anychain.revoke` validator: `revocation` signs fold({type, signature}) with `signature.signer`. */
export function validateRevoke(o) {
  if (!(has(o, 'revocation') && has(o, 'signature'))) throw invalid('missing fields');
  const message = fold({ type: o.type, signature: o.signature });
  verifyDetached(o.revocation, message, prop(o.signature, 'signer'), "bad revocation's signature");
}

/**
 * Validators by type. Verifying walks the whole value depth first (list
 * items in order, dict values in dict order, children before their parent)
 * and runs the validator of every dict with a string `type`; a type without
 * a validator fails the value.
 */
export class Registry {
  /** The library's built-in validators: `anychain.signature` and `anychain.revoke`. */
  constructor() {
    this.validators = new Map([
      [SIGNATURE_TYPE, validateSignature],
      [REVOKE_TYPE, validateRevoke],
    ]);
  }

  /** Adds a validator `(o) => void` that throws `invalid(message)`; a type can be registered once. */
  register(type, validator) {
    if (this.validators.has(type)) throw new Error(`model '${type}' already registered`);
    if (typeof validator !== 'function') throw new TypeError('register: the validator must be a function');
    this.validators.set(type, validator);
    return this;
  }

  /** Whether `type` has a validator. */
  knows(type) {
    return this.validators.has(type);
  }

  /** A copy, to register more types without changing this one. */
  clone() {
    const r = new Registry();
    r.validators = new Map(this.validators);
    return r;
  }

  /** Verifies every typed dict of `value`; throws a `VerifyError` at the first failure. */
  verify(value) {
    switch (kindOf(value)) {
      case 'list':
        for (const item of value) this.verify(item);
        return;
      case 'dict':
        break;
      default:
        return;
    }
    for (const k of Object.keys(value)) this.verify(value[k]);
    const type = value.type;
    if (!Object.prototype.hasOwnProperty.call(value, 'type') || typeof type !== 'string') return;
    const validator = this.validators.get(type);
    if (validator === undefined) {
      throw new VerifyError(`potentially invalid chain: no defined validator for type '${type}'`);
    }
    try {
      validator(value);
    } catch (e) {
      throw new VerifyError(`invalid chain: ${String(e)}`);
    }
  }

  /** `verify` as a boolean. */
  isValid(value) {
    try {
      this.verify(value);
      return true;
    } catch (e) {
      if (e instanceof VerifyError) return false;
      throw e;
    }
  }
}

/**
 * Decodes and fully verifies a token (the reference's `fromToken`).
 * @param {string} text
 * @param {{registry?: Registry, limits?: object}} [options] default: the built-in registry
 */
export function fromToken(text, { registry = new Registry(), limits = DEFAULT_LIMITS } = {}) {
  const value = decode(text, limits);
  registry.verify(value);
  return value;
}

function isDict(v) {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** Whether `value` is a signature object whose body has type `bodyType` (the reference's `isSignature`, without its TypeErrors). */
export function isSignatureOf(value, bodyType) {
  if (!isDict(value) || prop(value, 'type') !== SIGNATURE_TYPE) return false;
  const body = prop(value, 'body');
  return isDict(body) && prop(body, 'type') === bodyType;
}
