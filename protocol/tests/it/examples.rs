//! The conformance cases of PROTOCOL.md Part 2 §B over
//! `tests/data/protocol-examples.json`, plus the hardening cases.

use crate::{load_vectors, s};
use protocol::alias::build::{
    group, scope, signed_grant, signed_revocation, ClientDeclDoc, ContractDoc,
};
use protocol::alias::{decode_verified, AcceptancePolicy, AliasError, Grant, PolicyError, PushId};
use protocol::anychain::{
    fold, from_json_str, sign, signing_key_from_seed, to_token, DecodeError, Limits, Value,
    VerifyError,
};

fn examples() -> Value {
    load_vectors("protocol-examples.json")
}

fn grant_t() -> Grant {
    let ex = examples();
    Grant::from_token(s(&ex, "grant_token"), &Limits::default()).expect("token T verifies")
}

/// T with one edit applied to its decoded tree (signature left as it was).
fn edited_t(edit: impl FnOnce(&mut protocol::anychain::Dict)) -> String {
    let Value::Dict(mut d) = grant_t().into_value() else {
        unreachable!()
    };
    edit(&mut d);
    to_token(&Value::Dict(d))
}

#[test]
fn fold_examples() {
    let ex = examples();
    let folds = ex.get("fold").and_then(Value::as_dict).expect("fold map");
    for (json, expected) in folds.iter() {
        let v = from_json_str(json, &Limits::default()).unwrap();
        assert_eq!(
            fold(&v).unwrap().to_b64(),
            expected.as_str().unwrap(),
            "fold({json})"
        );
    }
}

#[test]
fn token_t_hashes_scopes_and_url() {
    let ex = examples();
    let t = grant_t();
    assert_eq!(
        t.contract_hash().unwrap().to_b64(),
        s(&ex, "grant_contract_hash")
    );
    assert_eq!(t.grant_hash().unwrap().to_b64(), s(&ex, "grant_hash"));
    assert_eq!(
        t.contract().client().unwrap().id().unwrap().to_b64(),
        s(&ex, "client_id")
    );
    assert_eq!(t.push_url(PushId::Contract).unwrap(), s(&ex, "push_url"));
    assert_eq!(
        t.push_url(PushId::Grant).unwrap(),
        format!("https://client.example/alias/push/{}", s(&ex, "grant_hash"))
    );
    let scopes = t.scopes().unwrap();
    assert_eq!(
        &Value::List(scopes.clone()),
        ex.get("grant_scopes").unwrap()
    );
    let ids: Vec<_> = scopes.iter().map(|sc| fold(sc).unwrap().to_b64()).collect();
    let want: Vec<_> = ex
        .get("scope_ids")
        .unwrap()
        .as_list()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, want);
    assert_eq!(t.to_token(), s(&ex, "grant_token"));
    assert_eq!(
        t.signer_b64(),
        ex.get("keys")
            .unwrap()
            .get("user_pk")
            .unwrap()
            .as_str()
            .unwrap()
    );
}

#[test]
fn tampering_is_rejected_with_reference_messages() {
    let err = |token: String| {
        Grant::from_token(&token, &Limits::default())
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        err(edited_t(|d| {
            d.insert("date", Value::Number(1_574_158_520_001.0));
        })),
        "invalid chain: bad signature or forged document"
    );
    // Children are validated first: the matrix error wins over the signature.
    let bad_consent = edited_t(|d| {
        let Some(Value::Dict(body)) = d.get("body").cloned() else {
            unreachable!()
        };
        let mut body = body;
        let Some(Value::Dict(mut base)) = body.get("base").cloned() else {
            unreachable!()
        };
        base.insert(
            "consent",
            Value::List(vec![Value::List(vec![
                Value::Bool(true),
                Value::Bool(true),
            ])]),
        );
        body.insert("base", Value::Dict(base));
        d.insert("body", Value::Dict(body));
    });
    assert_eq!(
        err(bad_consent),
        "invalid chain: bad length for scopes of one consent consent"
    );
}

fn user_key() -> protocol::anychain::SigningKey {
    signing_key_from_seed(&[2; 32])
}

/// T's body with `edit` applied, signed again by the user.
fn resigned_t(edit: impl FnOnce(&mut protocol::anychain::Dict)) -> Value {
    let t = grant_t();
    let Value::Dict(mut body) = t.body().clone() else {
        unreachable!()
    };
    edit(&mut body);
    sign(&user_key(), Value::Dict(body), 1_574_158_520_000.0).unwrap()
}

#[test]
fn validator_rules() {
    let verify = |v: &Value| {
        protocol::alias::registry()
            .verify(v)
            .map_err(|e| e.to_string())
    };
    let not_contractual = resigned_t(|b| {
        let mut base = b.get("base").unwrap().as_dict().unwrap().clone();
        base.insert("contractual", Value::Bool(false));
        b.insert("base", Value::Dict(base));
    });
    assert_eq!(
        verify(&not_contractual).unwrap_err(),
        "invalid chain: contractual part of the contract must be consented"
    );
    let hashed_contract = resigned_t(|b| {
        let h = fold(b.get("contract").unwrap()).unwrap();
        b.insert("contract", h.into_value());
    });
    assert_eq!(
        verify(&hashed_contract).unwrap_err(),
        "invalid chain: field 'contract' is not an alias.contract"
    );
    for ty in ["alias.revokeGrant", "foo"] {
        let nested = resigned_t(|b| {
            b.insert(
                "extra",
                Value::Dict(protocol::anychain::Dict::new().with("type", ty)),
            );
        });
        assert_eq!(
            verify(&nested).unwrap_err(),
            format!("potentially invalid chain: no defined validator for type '{ty}'")
        );
    }
}

#[test]
fn consent_filtering_and_revocation() {
    let declined = resigned_t(|b| {
        let mut base = b.get("base").unwrap().as_dict().unwrap().clone();
        base.insert(
            "consent",
            Value::List(vec![Value::List(vec![Value::Bool(false)])]),
        );
        b.insert("base", Value::Dict(base));
    });
    protocol::alias::registry().verify(&declined).unwrap();
    let grant = Grant::from_verified(declined).unwrap();
    let scopes = grant.scopes().unwrap();
    assert_eq!(scopes.len(), 1);
    assert_eq!(
        scopes[0].get("path").unwrap().as_str(),
        Some("my_activity.assistant")
    );

    let ex = examples();
    let revoked = Grant::from_token(s(&ex, "revoked_token"), &Limits::default()).unwrap();
    assert!(revoked.is_revoked());
    assert!(revoked.scopes().unwrap().is_empty());
    assert_eq!(
        revoked.grant_hash().unwrap().to_b64(),
        s(&ex, "revoked_hash")
    );
    assert_eq!(
        revoked.contract_hash().unwrap(),
        grant_t().contract_hash().unwrap()
    );
    // isGrantNewer: the revoked grant (later date) wins over T, not the reverse.
    assert!(revoked.is_newer_than(Some(&grant_t())));
    assert!(!grant_t().is_newer_than(Some(&revoked)));
    assert!(!grant_t().is_newer_than(Some(&grant_t())));
    assert!(grant_t().is_newer_than(None));
}

#[test]
fn base64_strictness_in_tokens() {
    let limits = Limits::default();
    let decode =
        |payload: &str| from_json_str(&format!(r#"{{"x":{{"__bytes":"{payload}"}}}}"#), &limits);
    assert_eq!(
        decode("-_8").unwrap().get("x"),
        Some(&Value::Bytes(vec![0xfb, 0xff]))
    );
    assert_eq!(decode("AA").unwrap().get("x"), Some(&Value::Bytes(vec![0])));
    for bad in ["+/8", "AA==", "AB", "A"] {
        assert!(
            matches!(decode(bad), Err(DecodeError::BadTag { .. })),
            "{bad}"
        );
    }
}

#[test]
fn hardening() {
    let limits = Limits::default();
    let proto = r#"{"a":1,"__proto__":{"network":{"scheme":"http"}}}"#;
    assert!(matches!(
        from_json_str(proto, &limits),
        Err(DecodeError::ForbiddenKey(_))
    ));
    let to_string = from_json_str(r#"{"a":{"toString":"x"},"b":1}"#, &limits).unwrap();
    assert!(fold(&to_string).is_err());

    // A non-grant signature given where a grant is expected.
    let bind = sign(
        &user_key(),
        protocol::alias::build::bind_authz_body("https://bank.example"),
        1.0,
    )
    .unwrap();
    let err = Grant::from_token(&to_token(&bind), &limits).unwrap_err();
    assert_eq!(err.to_string(), "expected a 'alias.grant' token");
    assert!(matches!(err, AliasError::WrongType(_)));
    assert!(protocol::alias::BindAuthz::from_token(&to_token(&bind), &limits).is_ok());

    // Oversize and deep tokens.
    let big = format!("\"{}\"", "a".repeat(2 << 20));
    assert!(matches!(
        decode_verified(&big, &limits),
        Err(AliasError::Decode(DecodeError::TooLarge { .. }))
    ));
    let deep = "[".repeat(100) + &"]".repeat(100);
    assert!(matches!(
        decode_verified(&deep, &limits),
        Err(AliasError::Decode(DecodeError::TooDeep { .. }))
    ));
    let unknown = r#"{"type":"foo"}"#;
    assert!(matches!(
        decode_verified(unknown, &limits),
        Err(AliasError::Verify(VerifyError::UnknownType(_)))
    ));
}

#[test]
fn acceptance_policy() {
    let policy = AcceptancePolicy::default();
    let now = 1_574_158_520_000.0;
    policy.check_grant(&grant_t(), now).unwrap();
    // Signed 10 minutes ahead of the clock.
    assert!(matches!(
        policy.check_grant(&grant_t(), now - 600_000.0),
        Err(PolicyError::FutureDate { .. })
    ));

    let loose = resigned_t(|b| {
        let mut base = b.get("base").unwrap().as_dict().unwrap().clone();
        base.insert("contractual", Value::Number(1.0));
        b.insert("base", Value::Dict(base));
    });
    protocol::alias::registry()
        .verify(&loose)
        .expect("the reference accepts 1 == true");
    let loose = Grant::from_verified(loose).unwrap();
    assert!(matches!(
        policy.check_grant(&loose, now),
        Err(PolicyError::ContractualNotTrue)
    ));

    let hostile = |field: &str, value: &str| {
        resigned_t(|b| {
            let mut contract = b.get("contract").unwrap().as_dict().unwrap().clone();
            contract.insert(
                "network",
                Value::Dict(protocol::anychain::Dict::new().with(field, value)),
            );
            b.insert("contract", Value::Dict(contract));
        })
    };
    let evil = Grant::from_verified(hostile("pushEndpoint", "@evil.example/")).unwrap();
    assert!(matches!(
        policy.check_grant(&evil, now),
        Err(PolicyError::Push(_))
    ));
    let evil = Grant::from_verified(hostile("scheme", "gopher")).unwrap();
    assert!(matches!(
        policy.check_grant(&evil, now),
        Err(PolicyError::Push(_))
    ));

    let ctor = resigned_t(|b| {
        b.insert("constructor", Value::from("x"));
    });
    let ctor = Grant::from_verified(ctor).unwrap();
    assert!(
        matches!(policy.check_grant(&ctor, now), Err(PolicyError::ForbiddenKey(k)) if k == "constructor")
    );
}

/// A contract of `domain` whose client declaration is signed by the client
/// key of `seed`.
fn small_contract(domain: &str, seed: u8) -> Value {
    let client = ClientDeclDoc::new("Client", domain)
        .sign(&signing_key_from_seed(&[seed; 32]), 1_574_158_519_000.0)
        .unwrap();
    ContractDoc::new(client)
        .contractual(group([scope("google", "my_activity.search")], &[]))
        .build()
}

fn dict_of(v: Value) -> protocol::anychain::Dict {
    let Value::Dict(d) = v else { unreachable!() };
    d
}

#[test]
fn forged_signers_declarations_and_tags_are_refused() {
    let limits = Limits::default();
    let contract = small_contract("client.example", 3);
    let body = protocol::alias::grant_body(&contract, vec![], vec![]).unwrap();
    let genuine = sign(&user_key(), body.clone(), 1_600_000_000_000.0).unwrap();
    assert!(Grant::from_token(&to_token(&genuine), &limits).is_ok());

    // Signed by an attacker's key, naming the user as signer.
    let attacker = signing_key_from_seed(&[66; 32]);
    let mut forged = dict_of(sign(&attacker, body, 1_600_000_000_000.0).unwrap());
    forged.insert(
        "signer",
        dict_of(genuine.clone()).get("signer").unwrap().clone(),
    );
    let err = Grant::from_token(&to_token(&Value::Dict(forged)), &limits).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid chain: bad signature or forged document"
    );

    // The user signs a grant whose contract carries a client declaration
    // edited after the client signed it (another domain): the nested
    // signature fails the whole grant, so no push can be steered there.
    let mut c = dict_of(contract.clone());
    let mut client = dict_of(c.get("client").unwrap().clone());
    let mut decl = dict_of(client.get("body").unwrap().clone());
    decl.insert("domain", Value::from("attacker.example"));
    client.insert("body", Value::Dict(decl));
    c.insert("client", Value::Dict(client));
    let edited = signed_grant(
        &user_key(),
        &Value::Dict(c),
        vec![],
        vec![],
        1_600_000_000_000.0,
    );
    let token = to_token(&edited.unwrap());
    let err = Grant::from_token(&token, &limits).unwrap_err();
    assert!(err.to_string().contains("bad signature"), "{err}");

    // A declaration signed by another key than the one it names
    // (`crypto.sign`): every signature verifies, the acceptance policy
    // refuses it. Signed by the key it names, it passes.
    let named = signing_key_from_seed(&[3; 32]);
    let impostor = signing_key_from_seed(&[4; 32]);
    let naming = |signer: &protocol::anychain::SigningKey| {
        let client = ClientDeclDoc::new("Client", "client.example")
            .naming(&named.verifying_key())
            .sign(signer, 1_574_158_519_000.0)
            .unwrap();
        let contract = ContractDoc::new(client)
            .contractual(group([scope("google", "my_activity.search")], &[]))
            .build();
        let grant = signed_grant(&user_key(), &contract, vec![], vec![], 1_600_000_000_000.0);
        Grant::from_token(&to_token(&grant.unwrap()), &limits).unwrap()
    };
    let policy = AcceptancePolicy::default();
    assert!(policy
        .check_grant(&naming(&named), 1_600_000_000_000.0)
        .is_ok());
    match policy.check_grant(&naming(&impostor), 1_600_000_000_000.0) {
        Err(PolicyError::Clear(e)) => {
            assert_eq!(e.code(), "client_key_mismatch");
            assert_eq!(e.path(), "grant.body.contract.client.body.crypto.sign");
        }
        other => panic!("a declaration signed by another key passed: {other:?}"),
    }

    // A revocation reads as a revocation, never as a grant of data.
    let revoked = signed_revocation(&user_key(), &contract, 1_600_000_000_001.0).unwrap();
    let r = Grant::from_token(&to_token(&revoked), &limits).unwrap();
    assert!(r.is_revoked());

    // Malformed tags: every tag's payload must be strict URL-safe base64.
    for tag in ["__bytes", "__hash", "__box"] {
        for payload in ["+/8", "A", "AA==", "AB", "!!", "A A"] {
            let text = format!(r#"{{"x":{{"{tag}":"{payload}"}}}}"#);
            assert!(
                matches!(
                    from_json_str(&text, &limits),
                    Err(DecodeError::BadTag { .. })
                ),
                "{text}"
            );
        }
    }
    // Duplicate keys and non-JSON never decode.
    for text in [r#"{"a":1,"a":2}"#, "{", "[1,]", "\u{0}", "nul"] {
        assert!(from_json_str(text, &limits).is_err(), "{text:?}");
    }
}
