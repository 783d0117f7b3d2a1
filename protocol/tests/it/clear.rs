//! "Signed in clear" as a property: for valid client declarations,
//! contracts and grants (generated, plus the vector token T), replacing any
//! value by its hash (`{"__hash": fold(value)}`) keeps the fold, so every
//! signature still verifies, yet the acceptance path refuses the document,
//! naming the path of the replaced value.

use crate::{load_vectors, s};
use proptest::prelude::*;
use protocol::alias::build::{self, signed_grant, signed_revocation, ClientDeclDoc, ContractDoc};
use protocol::alias::{decode_verified, AcceptancePolicy, Grant, PolicyError};
use protocol::anychain::{fold, sign, signing_key_from_seed, to_token, Dict, Limits, Value};

const DATE: f64 = 1_600_000_000_000.0;

/// Every node below the root, with its path (`root.key.0…`), in walk order.
fn nodes(root: &str, v: &Value) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    fn go(path: &str, keys: &mut Vec<String>, v: &Value, out: &mut Vec<(String, Vec<String>)>) {
        let children: Vec<(String, &Value)> = match v {
            Value::List(items) => items
                .iter()
                .enumerate()
                .map(|(i, c)| (i.to_string(), c))
                .collect(),
            Value::Dict(d) => d.iter().map(|(k, c)| (k.to_owned(), c)).collect(),
            _ => Vec::new(),
        };
        for (k, c) in children {
            let p = format!("{path}.{k}");
            keys.push(k);
            out.push((p.clone(), keys.clone()));
            go(&p, keys, c, out);
            keys.pop();
        }
    }
    go(root, &mut Vec::new(), v, &mut out);
    out
}

/// `v` with the node at `keys` replaced by `f(node)`.
fn replaced(v: &Value, keys: &[String], f: &dyn Fn(&Value) -> Value) -> Value {
    let Some((first, rest)) = keys.split_first() else {
        return f(v);
    };
    match v {
        Value::List(items) => Value::List(
            items
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    if i.to_string() == *first {
                        replaced(c, rest, f)
                    } else {
                        c.clone()
                    }
                })
                .collect(),
        ),
        Value::Dict(d) => {
            let mut out = Dict::new();
            for (k, c) in d.iter() {
                let c = if k == first {
                    replaced(c, rest, f)
                } else {
                    c.clone()
                };
                out.insert(k, c);
            }
            Value::Dict(out)
        }
        other => other.clone(),
    }
}

fn hashed(v: &Value) -> Value {
    fold(v).unwrap().into_value()
}

/// What the bank does with an accepted grant: everything it derives.
#[derive(Debug, PartialEq)]
struct Outcome {
    scopes: Vec<Value>,
    revoked: bool,
    push_contract: String,
    push_grant: String,
    contract_hash: String,
    grant_hash: String,
    client_id: String,
    user: String,
}

/// The gateway's acceptance path for a grant token (`checked_grant`):
/// decode, verify every signature and validator, then the policy.
fn accept_grant(token: &str) -> Result<Outcome, String> {
    let policy = AcceptancePolicy::default();
    let grant = Grant::from_token(token, &Limits::default()).map_err(|e| format!("token: {e}"))?;
    policy
        .check_grant(&grant, DATE + 1.0)
        .map_err(|e| match e {
            PolicyError::Clear(c) => format!("clear {} {}", c.code(), c.path()),
            other => format!("policy: {other}"),
        })?;
    Ok(Outcome {
        scopes: grant.scopes().unwrap(),
        revoked: grant.is_revoked(),
        push_contract: grant.push_url(protocol::alias::PushId::Contract).unwrap(),
        push_grant: grant.push_url(protocol::alias::PushId::Grant).unwrap(),
        contract_hash: grant.contract_hash().unwrap().to_b64(),
        grant_hash: grant.grant_hash().unwrap().to_b64(),
        client_id: grant.contract().client().unwrap().id().unwrap().to_b64(),
        user: grant.signer_b64(),
    })
}

/// The request page's acceptance path for a contract token.
fn accept_contract(token: &str) -> Result<(), String> {
    let value = decode_verified(token, &Limits::default()).map_err(|e| format!("token: {e}"))?;
    AcceptancePolicy::default()
        .check_contract(&value, DATE + 1.0)
        .map_err(|e| match e {
            PolicyError::Clear(c) => format!("clear {} {}", c.code(), c.path()),
            other => format!("policy: {other}"),
        })?;
    protocol::alias::Contract::new(&value)
        .and_then(|c| c.push_base().map(|_| ()))
        .map_err(|e| format!("contract: {e}"))
}

/// Replaces every node of `doc` by its hash in turn and checks the result:
/// the fold is unchanged, and `accept` refuses it, naming the path when the
/// refusal is the signed-in-clear rule (other refusals come earlier: the
/// signature or a validator that needed the value).
fn every_node_hashed_is_refused(
    root: &str,
    doc: &Value,
    accept: &dyn Fn(&str) -> Result<(), String>,
) -> usize {
    let whole = fold(doc).unwrap();
    assert_eq!(accept(&to_token(doc)), Ok(()), "the clear document passes");
    let mut clear_refusals = 0;
    for (path, keys) in nodes(root, doc) {
        let forged = replaced(doc, &keys, &hashed);
        assert_eq!(fold(&forged).unwrap(), whole, "{path}: same fold");
        match accept(&to_token(&forged)) {
            Ok(()) => panic!("{path} hashed was accepted"),
            Err(e) if e.starts_with("clear ") => {
                assert_eq!(e, format!("clear hashed_value {path}"));
                clear_refusals += 1;
            }
            // Earlier refusals: a signature no longer verifies, or a
            // reference validator needed the value (a type, a length, the
            // embedded contract or declaration).
            Err(e) => assert!(e.starts_with("token: "), "{path}: {e}"),
        }
    }
    clear_refusals
}

fn scope(path: &str, extra: u8) -> Value {
    let mut d = build::scope("google", path);
    if extra & 1 == 1 {
        d.insert(
            "predicates",
            Value::List(vec![Value::List(vec![
                Value::from(">"),
                Value::from("date"),
                Value::from("2018"),
            ])]),
        );
    }
    if extra & 2 == 2 {
        d.insert("fields", Value::List(vec![Value::from("title")]));
    }
    Value::Dict(d)
}

const PATHS: [&str; 4] = [
    "my_activity.search",
    "youtube.watch_history",
    "photos",
    "my_activity.youtube",
];

fn group(scopes: &[(usize, u8)]) -> Value {
    build::group(
        scopes.iter().map(|(p, e)| scope(PATHS[*p], *e)),
        &["research"],
    )
}

/// A client declaration naming its own signing key, and a contract of it.
#[derive(Debug, Clone)]
struct Shape {
    contractual: Option<Vec<(usize, u8)>>,
    consent: Vec<Vec<(usize, u8)>>,
    legitimate: Option<Vec<Vec<(usize, u8)>>>,
    network: u8,
    client_seed: u8,
    company: bool,
}

fn arb_group() -> impl Strategy<Value = Vec<(usize, u8)>> {
    proptest::collection::vec((0..PATHS.len(), 0u8..4), 1..3)
}

fn arb_shape() -> impl Strategy<Value = Shape> {
    (
        proptest::option::of(arb_group()),
        proptest::collection::vec(arb_group(), 0..3),
        proptest::option::of(proptest::collection::vec(arb_group(), 0..3)),
        0u8..4,
        1u8..250,
        any::<bool>(),
    )
        .prop_map(
            |(contractual, consent, legitimate, network, client_seed, company)| Shape {
                contractual,
                consent,
                legitimate,
                network,
                client_seed,
                company,
            },
        )
}

fn decl_of(shape: &Shape) -> Value {
    let key = signing_key_from_seed(&[shape.client_seed; 32]);
    let mut decl = ClientDeclDoc::new("Client", "client.example")
        .description("A client")
        .naming(&key.verifying_key())
        .box_key(vec![7; 32]);
    if shape.company {
        decl = decl.company("Client SA");
    }
    decl.sign(&key, DATE - 10.0).unwrap()
}

fn contract_of(shape: &Shape) -> Value {
    let mut contract = ContractDoc::new(decl_of(shape))
        .usage("research")
        .legal("storage_duration", "1 year")
        .legal("destination", Value::List(vec![Value::from("EU")]));
    if let Some(c) = &shape.contractual {
        contract = contract.contractual(group(c));
    }
    contract = contract.consent_groups(shape.consent.iter().map(|g| group(g)).collect());
    if let Some(l) = &shape.legitimate {
        contract = contract.legitimate(
            Some("fraud prevention"),
            l.iter().map(|g| group(g)).collect(),
        );
    }
    contract = contract.network();
    if shape.network & 1 == 1 {
        contract = contract.scheme("https");
    }
    if shape.network & 2 == 2 {
        contract = contract.push_endpoint("/alias/push/");
    }
    contract.entry("date", Dict::new()).build()
}

fn cells(groups: &[Vec<(usize, u8)>], bits: u64) -> Vec<Vec<bool>> {
    let mut n = 0;
    groups
        .iter()
        .map(|g| {
            g.iter()
                .map(|_| {
                    n += 1;
                    (bits >> (n % 64)) & 1 == 1
                })
                .collect()
        })
        .collect()
}

fn grant_of(shape: &Shape, bits: u64, revoked: bool) -> Value {
    let contract = contract_of(shape);
    let user = signing_key_from_seed(&[200; 32]);
    if revoked {
        signed_revocation(&user, &contract, DATE).unwrap()
    } else {
        let consent = cells(&shape.consent, bits);
        let legitimate = cells(shape.legitimate.as_deref().unwrap_or_default(), bits >> 7);
        signed_grant(&user, &contract, consent, legitimate, DATE).unwrap()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10))]

    /// Every node of a grant (its contract and the client declaration
    /// inside) replaced by its hash: same fold, refused.
    #[test]
    fn any_value_of_a_grant_replaced_by_its_hash_is_refused(
        shape in arb_shape(), bits in any::<u64>(), revoked in proptest::bool::weighted(0.2)
    ) {
        let grant = grant_of(&shape, bits, revoked);
        let n = every_node_hashed_is_refused("grant", &grant, &|t| accept_grant(t).map(|_| ()));
        prop_assert!(n > 10, "most refusals are the clear rule's ({n})");
    }

    /// Every node of a contract (the request page's path) replaced by its
    /// hash: same fold, refused.
    #[test]
    fn any_value_of_a_contract_replaced_by_its_hash_is_refused(shape in arb_shape()) {
        let contract = contract_of(&shape);
        every_node_hashed_is_refused("contract", &contract, &accept_contract);
    }
}

/// A declined consent cell (and a declined legitimate cell) replaced by the
/// hash of `false`: the user's signature holds, the reference would read it
/// as granted; the acceptance path refuses it and the clear grant gives
/// only the contractual scope.
#[test]
fn hashed_false_cells_never_grant_a_scope() {
    let shape = Shape {
        contractual: Some(vec![(0, 0)]),
        consent: vec![vec![(1, 0)]],
        legitimate: Some(vec![vec![(2, 0)]]),
        network: 0,
        client_seed: 3,
        company: false,
    };
    let clear = grant_of(&shape, 0, false);
    let outcome = accept_grant(&to_token(&clear)).unwrap();
    assert_eq!(outcome.scopes, vec![scope(PATHS[0], 0)]);
    for (cell, path) in [
        (
            ["body", "base", "consent", "0", "0"],
            "grant.body.base.consent.0.0",
        ),
        (
            ["body", "base", "legitimate", "0", "0"],
            "grant.body.base.legitimate.0.0",
        ),
    ] {
        let keys: Vec<String> = cell.iter().map(|k| (*k).to_owned()).collect();
        let forged = replaced(&clear, &keys, &hashed);
        assert_eq!(fold(&forged).unwrap(), fold(&clear).unwrap());
        // Without the rule the forged grant would give the declined scope.
        let g = Grant::from_token(&to_token(&forged), &Limits::default()).unwrap();
        assert_eq!(
            g.scopes().unwrap().len(),
            2,
            "the attack works on reading alone"
        );
        assert_eq!(
            accept_grant(&to_token(&forged)),
            Err(format!("clear hashed_value {path}"))
        );
        // Not a boolean at all: refused with its own code.
        let one = replaced(&clear, &keys, &|_| Value::Number(1.0));
        let one = sign(
            &signing_key_from_seed(&[200; 32]),
            one.get("body").unwrap().clone(),
            DATE,
        )
        .unwrap();
        assert_eq!(
            accept_grant(&to_token(&one)),
            Err(format!("clear not_boolean {path}"))
        );
    }
}

/// The vector token T: each of its values replaced by its hash is refused.
#[test]
fn token_t_any_value_hashed_is_refused() {
    let ex = load_vectors("protocol-examples.json");
    let t = decode_verified(s(&ex, "grant_token"), &Limits::default()).unwrap();
    let policy = AcceptancePolicy {
        max_future_skew_ms: u64::MAX / 4,
        ..AcceptancePolicy::default()
    };
    let accept = |token: &str| -> Result<(), String> {
        let grant =
            Grant::from_token(token, &Limits::default()).map_err(|e| format!("token: {e}"))?;
        #[allow(clippy::cast_precision_loss)]
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as f64;
        policy.check_grant(&grant, now).map_err(|e| match e {
            PolicyError::Clear(c) => format!("clear {} {}", c.code(), c.path()),
            other => format!("policy: {other}"),
        })
    };
    let n = every_node_hashed_is_refused("grant", &t, &accept);
    assert!(n > 10, "{n}");
}

/// A client declaration signed by another key than the `crypto.sign` it
/// names is refused, in a contract and in a grant.
#[test]
fn declaration_signed_by_another_key_than_it_names_is_refused() {
    let shape = Shape {
        contractual: Some(vec![(0, 0)]),
        consent: vec![],
        legitimate: None,
        network: 0,
        client_seed: 3,
        company: false,
    };
    let genuine = contract_of(&shape);
    assert_eq!(accept_contract(&to_token(&genuine)), Ok(()));
    // The same declaration (naming client 3's key) signed by key 4.
    let decl = genuine.get("client").unwrap().get("body").unwrap().clone();
    let impostor = sign(&signing_key_from_seed(&[4; 32]), decl, DATE - 10.0).unwrap();
    let forged = replaced(&genuine, &["client".to_owned()], &|_| impostor.clone());
    assert_eq!(
        accept_contract(&to_token(&forged)),
        Err("clear client_key_mismatch contract.client.body.crypto.sign".to_owned())
    );
    let grant = signed_grant(
        &signing_key_from_seed(&[200; 32]),
        &forged,
        vec![],
        vec![],
        DATE,
    )
    .unwrap();
    assert_eq!(
        accept_grant(&to_token(&grant)),
        Err("clear client_key_mismatch grant.body.contract.client.body.crypto.sign".to_owned())
    );
}
