//! Every case of the reference vectors (`tests/data/anychain.json`).

use crate::{load_vectors, s};
use protocol::alias::{decode_verified, registry, Contract, Grant};
use protocol::anychain::{
    b64u_decode, b64u_encode, fold, sign, signing_key_from_seed, to_token, Dict, Registry, Value,
};

fn cases<'a>(file: &'a Value, group: &str) -> &'a [Value] {
    file.get(group)
        .and_then(Value::as_list)
        .expect("case group")
}

fn b64(v: &Value) -> String {
    fold(v).expect("folds").to_b64()
}

#[test]
fn fold_cases() {
    let file = load_vectors("anychain.json");
    let cases = cases(&file, "fold");
    assert!(!cases.is_empty());
    for case in cases {
        let json = case.get("json").expect("json");
        assert_eq!(
            b64(json),
            s(case, "fold_b64"),
            "fold case {:?}",
            s(case, "name")
        );
    }
}

#[test]
fn hash_examples() {
    let file = load_vectors("anychain.json");
    let examples = file
        .get("hash")
        .and_then(|h| h.get("examples"))
        .and_then(Value::as_list);
    for ex in examples.expect("hash examples") {
        if let Some(hex) = ex.get("bytes_hex").and_then(Value::as_str) {
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            assert_eq!(b64u_encode(&bytes), s(ex, "base64"));
            assert_eq!(b64u_decode(s(ex, "base64")).unwrap(), bytes);
        } else {
            let digest = blake2b_simd::blake2b(s(ex, "utf8").as_bytes());
            assert_eq!(b64u_encode(digest.as_bytes()), s(ex, "blake2b_64_b64"));
        }
    }
}

fn signed_part(signed: &Value) -> Value {
    let mut part = Dict::new();
    for key in ["type", "body", "date", "signer"] {
        part.insert(key, signed.get(key).cloned().unwrap_or(Value::Null));
    }
    Value::Dict(part)
}

#[test]
fn signature_cases() {
    let file = load_vectors("anychain.json");
    let registry = Registry::anychain();
    let cases = cases(&file, "signatures");
    assert!(!cases.is_empty());
    for case in cases {
        let name = s(case, "name");
        let seed: [u8; 32] = b64u_decode(s(case, "seed_b64"))
            .unwrap()
            .try_into()
            .unwrap();
        let key = signing_key_from_seed(&seed);
        assert_eq!(
            b64u_encode(key.verifying_key().as_bytes()),
            s(case, "public_key_b64"),
            "{name}"
        );
        let signed = case.get("signed_json").expect("signed_json");
        assert_eq!(
            b64(&signed_part(signed)),
            s(case, "message_b64"),
            "{name}: message"
        );
        assert_eq!(b64(signed), s(case, "fold_b64"), "{name}: fold");
        let valid = case.get("valid").and_then(Value::as_bool).expect("valid");
        let result = registry.verify(signed);
        assert_eq!(result.is_ok(), valid, "{name}: {result:?}");
        if let Some(error) = case.get("error").and_then(Value::as_str) {
            assert_eq!(result.unwrap_err().to_string(), error, "{name}");
        }
        if case.get("why").is_none() {
            let body = case.get("body_json").cloned().expect("body_json");
            let date = case.get("date").and_then(Value::as_f64).expect("date");
            let resigned = sign(&key, body, date).unwrap();
            assert_eq!(to_token(&resigned), to_token(signed), "{name}: re-signing");
        }
    }
}

#[test]
fn document_cases() {
    let file = load_vectors("anychain.json");
    let cases = cases(&file, "documents");
    assert!(!cases.is_empty());
    for case in cases {
        let name = s(case, "name");
        let json = case.get("json").expect("json");
        let valid = case.get("valid").and_then(Value::as_bool).expect("valid");
        let result = registry().verify(json);
        assert_eq!(result.is_ok(), valid, "{name}: {result:?}");
        if let Some(error) = case.get("error").and_then(Value::as_str) {
            assert_eq!(result.as_ref().unwrap_err().to_string(), error, "{name}");
        }
        assert_eq!(b64(json), s(case, "fold_b64"), "{name}: fold");
        if let Some(token) = case.get("token").and_then(Value::as_str) {
            assert_eq!(to_token(json), token, "{name}: token");
            // The token decodes (and, when valid, verifies) back to the same tree.
            let limits = Default::default();
            match decode_verified(token, &limits) {
                Ok(back) => assert_eq!(&back, json, "{name}: token round trip"),
                Err(e) => assert!(!valid, "{name}: valid token refused: {e}"),
            }
        }
        if let Some(hash) = case.get("grant_hash_b64").and_then(Value::as_str) {
            assert_eq!(b64(json), hash, "{name}: grant hash");
        }
        let contract_value = if json.type_name() == Some("alias.contract") {
            Some(json)
        } else {
            json.get("body").and_then(|b| b.get("contract"))
        };
        if let Some(hash) = case.get("contract_hash_b64").and_then(Value::as_str) {
            assert_eq!(
                b64(contract_value.expect("contract")),
                hash,
                "{name}: contract hash"
            );
        }
        if !valid {
            continue;
        }
        if let Some(url) = case.get("push_url").and_then(Value::as_str) {
            let contract = Contract::new(contract_value.expect("contract")).unwrap();
            assert_eq!(contract.push_url().unwrap(), url, "{name}: push url");
        }
        if let Some(scopes) = case.get("contract_scopes") {
            let contract = Contract::new(json).unwrap();
            assert_eq!(
                &Value::List(contract.scopes().unwrap()),
                scopes,
                "{name}: contract scopes"
            );
        }
        if let Some(scopes) = case.get("grant_scopes") {
            let grant = Grant::from_verified(json.clone()).unwrap();
            assert_eq!(
                &Value::List(grant.scopes().unwrap()),
                scopes,
                "{name}: grant scopes"
            );
            assert_eq!(
                grant.push_url(Default::default()).unwrap(),
                s(case, "push_url"),
                "{name}: grant push url"
            );
        }
    }
}
