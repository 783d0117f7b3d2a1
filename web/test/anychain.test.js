// Unit tests of anychain.js beyond the vectors: base64 strictness (checked
// against libsodium itself), strict decoding, tokens, the fold's quirks, the
// conformance cases of PROTOCOL.md Part 2 §B (protocol-examples.json).
import test from 'node:test';
import assert from 'node:assert/strict';
import { loadVectors, sodium } from './helpers.js';
import {
  B64Error,
  Box,
  DecodeError,
  Hash,
  Registry,
  VerifyError,
  b64uDecode,
  b64uEncode,
  decode,
  fold,
  foldB64,
  foldHash,
  fromJSON,
  fromToken,
  joinText,
  keyPairFromSeed,
  sign,
  signedMessage,
  toJSON,
  toToken,
} from '../src/anychain.js';
import { aliasRegistry, clientId, contractHash, grantHash, grantScopes, pushUrl, isGrantNewer } from '../src/alias.js';

const ex = loadVectors('protocol-examples.json');

function sodiumDecode(text) {
  try {
    return sodium.from_base64(text, sodium.base64_variants.URLSAFE_NO_PADDING);
  } catch {
    return null;
  }
}

function ourDecode(text) {
  try {
    return b64uDecode(text);
  } catch (e) {
    assert.ok(e instanceof B64Error);
    return null;
  }
}

test('base64 is libsodium URLSAFE_NO_PADDING, strict', () => {
  assert.equal(b64uEncode(Uint8Array.of(0xfb, 0xff)), '-_8');
  assert.deepEqual(b64uDecode('-_8'), Uint8Array.of(0xfb, 0xff));
  assert.deepEqual(b64uDecode('AA'), Uint8Array.of(0));
  assert.deepEqual(b64uDecode(''), new Uint8Array(0));
  for (const bad of ['+/8', 'AA==', 'AB', 'A', ' AA', 'AA\n', 'AAA=', 'é']) {
    assert.throws(() => b64uDecode(bad), B64Error, JSON.stringify(bad));
  }
});

test('base64 agrees with libsodium on random and hostile inputs', () => {
  for (let len = 0; len < 70; len++) {
    const bytes = sodium.randombytes_buf(len);
    const ours = b64uEncode(bytes);
    assert.equal(ours, sodium.to_base64(bytes, sodium.base64_variants.URLSAFE_NO_PADDING));
    assert.deepEqual(b64uDecode(ours), bytes);
  }
  const alphabet = 'AB_-+/=8 z';
  let checked = 0;
  // Every text of length 0..4 over a small alphabet with the tricky characters.
  const walk = (prefix) => {
    const a = ourDecode(prefix);
    const b = sodiumDecode(prefix);
    assert.deepEqual(a, b, `decoding ${JSON.stringify(prefix)}`);
    checked++;
    if (prefix.length < 4) for (const c of alphabet) walk(prefix + c);
  };
  walk('');
  assert.ok(checked > 10000);
});

test('decode: tags only for one string-valued key', () => {
  assert.deepEqual(decode('{"__bytes":"AQID"}'), Uint8Array.of(1, 2, 3));
  assert.ok(decode('{"__hash":"AQID"}') instanceof Hash);
  assert.ok(decode('{"__box":""}') instanceof Box);
  assert.deepEqual(decode('{"__bytes":5}'), { __bytes: 5 });
  assert.deepEqual(decode('{"__bytes":"AAEC","x":1}'), { __bytes: 'AAEC', x: 1 });
  assert.deepEqual(decode('{"__nope":"AAEC"}'), { __nope: 'AAEC' });
});

test('decode is strict', () => {
  const code = (text, limits) => {
    try {
      decode(text, limits);
      return 'ok';
    } catch (e) {
      assert.ok(e instanceof DecodeError, `${text}: ${e}`);
      return e.code;
    }
  };
  assert.equal(code('{"__bytes":"AA=="}'), 'bad_tag');
  assert.equal(code('{"__hash":"+/8"}'), 'bad_tag');
  assert.equal(code('{"a":1,"a":2}'), 'duplicate_key');
  assert.equal(code('{"__proto__":{}}'), 'forbidden_key');
  assert.equal(code('{"a":{"__proto__":null}}'), 'forbidden_key');
  assert.equal(code('1e400'), 'non_finite');
  assert.equal(code('"\\ud800"'), 'bad_string');
  assert.equal(code('"\\udc00\\ud800"'), 'bad_string');
  assert.equal(code('"\\ud83d\\ude00"'), 'ok');
  for (const bad of ['[1,', '[1] x', '01', '1.', '.5', '+1', '[1,]', '{"a":1,}', "{'a':1}", 'tru', 'nul', 'NaN', 'Infinity', '"a\nb"', '"\\x"', '', ' ', '[]]', '{"a"}', '\u00a0[]']) {
    assert.equal(code(bad), 'syntax', JSON.stringify(bad));
  }
  assert.equal(code('[' .repeat(65) + ']'.repeat(65)), 'too_deep');
  assert.equal(code('['.repeat(64) + ']'.repeat(64)), 'ok');
  assert.equal(code('[1,2]', { maxBytes: 4 }), 'too_large');
  assert.equal(code('"é"', { maxBytes: 3 }), 'too_large');
  assert.equal(code('"é"', { maxBytes: 4 }), 'ok');
  assert.equal(code(' \t\r\n[ 1 , {"a" : null} ]\n'), 'ok');
});

test('decode gives what JSON.parse gives for valid JSON', () => {
  const texts = [
    '{"b":1,"10":2,"a":3,"9":4,"01":5,"4294967295":6,"4294967294":7}',
    '[0,-0,-0.0,1.0,1e0,1E+2,1e-7,9007199254740993,12345678901234567890,5e-324,1.7976931348623157e308]',
    '"\\"\\\\\\/\\b\\f\\n\\r\\t\\u0000\\u00e9\\u2028 é 😀"',
    '{"constructor":1,"toString":2,"hasOwnProperty":3,"valueOf":{}}',
    '[true,false,null,[],{},[[{}]]]',
  ];
  for (const text of texts) {
    const ours = decode(text);
    const theirs = JSON.parse(text);
    assert.equal(JSON.stringify(ours), JSON.stringify(theirs), text);
    assert.deepEqual(Object.is(decode('-0'), -0), true);
  }
  assert.deepEqual(Object.keys(decode(texts[0])), ['9', '10', '4294967294', 'b', 'a', '01', '4294967295']);
});

test('fromJSON applies the same rules to parsed trees', () => {
  assert.deepEqual(fromJSON(JSON.parse('{"x":{"__bytes":"AQID"}}')), { x: Uint8Array.of(1, 2, 3) });
  assert.throws(() => fromJSON(JSON.parse('{"__proto__":{"a":1}}')), (e) => e.code === 'forbidden_key');
  assert.throws(() => fromJSON({ d: new Date(0) }), (e) => e.code === 'not_json');
  assert.throws(() => fromJSON([undefined]), (e) => e.code === 'not_json');
  assert.throws(() => fromJSON(NaN), (e) => e.code === 'non_finite');
  assert.throws(() => fromJSON({ __bytes: 'A' }), (e) => e.code === 'bad_tag');
});

test('tokens are JSON.stringify of the tagged form', () => {
  const v = { b: 1, 10: 2, a: [1.0, -0, 1e21, 1.5e-7, 1e20], bytes: Uint8Array.of(0xfb, 0xff), h: new Hash(Uint8Array.of(1)), x: new Box(new Uint8Array(0)) };
  assert.equal(
    toToken(v),
    '{"10":2,"b":1,"a":[1,0,1e+21,1.5e-7,100000000000000000000],"bytes":{"__bytes":"-_8"},"h":{"__hash":"AQ"},"x":{"__box":""}}',
  );
  assert.equal(toToken('q"\\\n\t\u0001\u007fé\u2028'), '"q\\"\\\\\\n\\t\\u0001\u007fé\u2028"');
  assert.equal(toToken(decode('12345678901234567890')), '12345678901234567000');
  assert.deepEqual(toJSON({ a: [Uint8Array.of(1)] }), { a: [{ __bytes: 'AQ' }] });
  for (const bad of [undefined, [undefined], { a: undefined }, NaN, Infinity, new Date(), new Map(), new Uint16Array(1), () => 1, 1n, Symbol('s')]) {
    assert.throws(() => toToken(bad), TypeError);
  }
  const sneaky = JSON.parse('{"__proto__":1}');
  assert.throws(() => toToken(sneaky), TypeError);
});

test('fold: protocol examples (PROTOCOL.md §B 1–5)', () => {
  let n = 0;
  for (const [json, expected] of Object.entries(ex.fold)) {
    assert.equal(foldB64(decode(json)), expected, `fold(${json})`);
    n++;
  }
  assert.ok(n >= 18);
  assert.notEqual(foldB64({ a: 1 }), 'Yrooa0V76a4nvrw4oPnn_o_fmmSd6aaKhMKzCD9i3Hv8mpi3tTmmVf0weZo5lpWgKs-nfUFk2edQ8bpEJ5RVFA');
  assert.equal(foldB64(decode('1.0')), foldB64(1));
  assert.equal(foldB64({ b: 1.5, a: [1, null] }), foldB64({ a: [1, null], b: 1.5 }));
});

test('fold: sort texts and JavaScript conversions', () => {
  assert.equal(joinText([1, [2, null]]), '1,2,');
  assert.equal(joinText(Uint8Array.of(9, 10)), '9,10');
  assert.equal(joinText(new Hash(Uint8Array.of(1))), '[object Object]');
  assert.equal(joinText({}), '[object Object]');
  assert.equal(joinText(-0), '0');
  // A dict value with an own `toString` key cannot be sorted (the reference throws).
  assert.throws(() => fold({ a: { toString: 'x' }, b: 1 }), /Cannot convert object to primitive value/);
  assert.doesNotThrow(() => fold({ a: { toString: 'x' } }));
  // The same entries in another order fold the same, except for exact ties.
  assert.equal(foldB64({ zeta: 1, alpha: 2 }), foldB64({ alpha: 2, zeta: 1 }));
  assert.notEqual(foldB64(decode('{"a":"b,c","a,b":"c"}')), foldB64(decode('{"a,b":"c","a":"b,c"}')));
  // A subtree replaced by its Hash keeps every enclosing fold.
  const inner = { a: 1, b: [Uint8Array.of(1)] };
  assert.equal(foldB64(['x', inner]), foldB64(['x', foldHash(inner)]));
  // Strings are hashed as UTF-8 with lone surrogates as U+FFFD, like TextEncoder.
  assert.equal(foldB64('\ud800'), foldB64('\ufffd'));
  assert.throws(() => fold(undefined), TypeError);
  assert.throws(() => fold({ a: undefined }), TypeError);
});

test('token T: verification, hashes, scopes, URL (PROTOCOL.md §B 7)', () => {
  const registry = aliasRegistry();
  const t = fromToken(ex.grant_token, { registry });
  assert.equal(toToken(t), ex.grant_token);
  assert.equal(contractHash(t), ex.grant_contract_hash);
  assert.equal(grantHash(t), ex.grant_hash);
  assert.equal(b64uEncode(signedMessage(t)), ex.grant_signed_message_fold);
  assert.equal(clientId(t), ex.client_id);
  assert.equal(pushUrl(t), ex.push_url);
  assert.equal(pushUrl(t, grantHash(t)), `https://client.example/alias/push/${ex.grant_hash}`);
  assert.equal(toToken(grantScopes(t)), JSON.stringify(ex.grant_scopes));
  assert.deepEqual(grantScopes(t).map(foldB64), ex.scope_ids);
  const revoked = fromToken(ex.revoked_token, { registry });
  assert.equal(grantHash(revoked), ex.revoked_hash);
  assert.deepEqual(grantScopes(revoked), []);
  assert.ok(isGrantNewer(t, revoked));
  assert.ok(!isGrantNewer(revoked, t));
  assert.ok(!isGrantNewer(t, t));
  assert.ok(isGrantNewer(null, t));
});

test('tampering and validator rules (PROTOCOL.md §B 8–10)', () => {
  const registry = aliasRegistry();
  const edited = (edit) => {
    const t = decode(ex.grant_token);
    edit(t);
    return () => registry.verify(t);
  };
  const fails = (fn, message) => assert.throws(fn, (e) => e instanceof VerifyError && e.message === message);
  fails(edited((t) => { t.date = 1574158520001; }), 'invalid chain: bad signature or forged document');
  fails(edited((t) => { t.body.base.consent = [[true, true]]; }), 'invalid chain: bad length for scopes of one consent consent');
  fails(edited((t) => { t.signer = 'x'.repeat(32); }), 'invalid chain: bad signature or forged document');
  fails(edited((t) => { t.signer = Uint8Array.of(1); }), 'invalid chain: TypeError: invalid publicKey length');
  fails(edited((t) => { t.signature = null; }), 'invalid chain: TypeError: signature cannot be null or undefined');
  fails(edited((t) => { t.signature = 5; }), 'invalid chain: TypeError: unsupported input type for signature');
  fails(edited((t) => { delete t.body; }), 'invalid chain: missing fields');
  fails(edited((t) => { t.body.contract.client.body = { type: 'x' }; }), "potentially invalid chain: no defined validator for type 'x'");
  fails(edited((t) => { t.body.contract.legal = { schema: { type: 'foo' } }; }), "potentially invalid chain: no defined validator for type 'foo'");
  fails(edited((t) => { t.body.contract = foldHash(t.body.contract); }), "invalid chain: field 'contract' is not an alias.contract");
  fails(edited((t) => { t.body.base = { consent: [[true]], legitimate: [] }; }), "invalid chain: missing field: 'contractual'");
  // A validly signed grant with contractual: false.
  const user = keyPairFromSeed(new Uint8Array(32).fill(2));
  const t = decode(ex.grant_token);
  const body = { ...t.body, base: { contractual: false, consent: [[true]], legitimate: [] } };
  fails(() => registry.verify(sign(user, body, 1)), 'invalid chain: contractual part of the contract must be consented');
  // Loose equality, as the reference: 1 == true passes.
  assert.doesNotThrow(() => registry.verify(sign(user, { ...body, base: { ...body.base, contractual: 1 } }, 1)));
  // Unknown body types are refused by the anychain registry too.
  fails(() => new Registry().verify(sign(user, { type: 'alias.revokeGrant', grant: foldHash(t) }, 1)), "potentially invalid chain: no defined validator for type 'alias.revokeGrant'");
  // Extra top-level fields are not signed: still valid, different hash.
  const extra = decode(ex.grant_token);
  extra.note = 'x';
  assert.doesNotThrow(() => registry.verify(extra));
  assert.notEqual(foldB64(extra), ex.grant_hash);
});

test('consent filtering (PROTOCOL.md §B 10)', () => {
  const user = keyPairFromSeed(new Uint8Array(32).fill(2));
  const t = decode(ex.grant_token);
  const off = sign(user, { ...t.body, base: { contractual: true, consent: [[false]], legitimate: [] } }, 1574158520000);
  aliasRegistry().verify(off);
  assert.equal(toToken(grantScopes(off)), JSON.stringify([ex.grant_scopes[0]]));
});

test('registry: register once, children first', () => {
  const r = new Registry();
  assert.throws(() => r.register('anychain.signature', () => {}), /model 'anychain.signature' already registered/);
  const calls = [];
  r.register('outer', () => calls.push('outer')).register('inner', () => calls.push('inner'));
  r.verify({ type: 'outer', x: [{ type: 'inner' }], y: { type: 5 } });
  assert.deepEqual(calls, ['inner', 'outer']);
  assert.ok(!r.isValid({ type: 'nope' }));
  assert.ok(r.clone().knows('outer'));
});

test('sign: key order, determinism, refusals', () => {
  const key = keyPairFromSeed(new Uint8Array(32).fill(1));
  assert.equal(b64uEncode(key.publicKey), ex.keys.client_pk);
  const s1 = sign(key, 'hello', 1574158519000);
  assert.deepEqual(Object.keys(s1), ['type', 'date', 'signer', 'body', 'signature']);
  assert.equal(toToken(sign(key, 'hello', new Date(1574158519000))), toToken(s1));
  new Registry().verify(s1);
  const other = keyPairFromSeed(new Uint8Array(32).fill(3));
  assert.throws(() => sign({ publicKey: other.publicKey, privateKey: key.privateKey }, 1, 1), TypeError);
  assert.throws(() => sign(key, 1, '2019'), TypeError);
  assert.throws(() => sign(key, 1, NaN), TypeError);
  assert.throws(() => sign(key, undefined, 1), TypeError);
});
