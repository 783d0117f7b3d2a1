//! Keys and documents for the tests: a client, its contract, users' grants
//! and bindings, signed requests.

use protocol::alias::{grant_body, request_body, revoked_grant_body};
use protocol::anychain::{sign, signing_key_from_seed, to_token, Dict, SigningKey, Value};
use runtime::state::now_ms;

pub fn client_key() -> SigningKey {
    signing_key_from_seed(&[1; 32])
}

pub fn user_key(n: u8) -> SigningKey {
    signing_key_from_seed(&[n; 32])
}

#[allow(clippy::cast_precision_loss)]
pub fn now() -> f64 {
    now_ms() as f64
}

fn scope(provider: &str, path: &str) -> Value {
    Value::Dict(Dict::new().with("provider", provider).with("path", path))
}

/// A contract of client `name` at `domain` (plain http, for loopback tests).
pub fn contract(name: &str, domain: &str) -> Value {
    let decl = Dict::new()
        .with("type", "alias.client.decl")
        .with("name", name)
        .with("domain", domain)
        .with(
            "crypto",
            Dict::new().with(
                "sign",
                Value::Bytes(client_key().verifying_key().as_bytes().to_vec()),
            ),
        );
    let client = sign(&client_key(), Value::Dict(decl), 1_574_158_519_000.0).unwrap();
    let group = |scopes: Vec<Value>| {
        Value::Dict(
            Dict::new()
                .with("scopes", Value::List(scopes))
                .with("usages", Value::List(vec![Value::from("research")])),
        )
    };
    let base = Dict::new()
        .with(
            "contractual",
            group(vec![scope("google", "my_activity.search")]),
        )
        .with(
            "consent",
            Value::List(vec![group(vec![scope("google", "youtube.watch_history")])]),
        )
        .with(
            "legitimate",
            Dict::new().with("groups", Value::List(vec![])),
        );
    Value::Dict(
        Dict::new()
            .with("type", "alias.contract")
            .with("client", client)
            .with("legal", Dict::new().with("usage", "tests"))
            .with("base", base)
            .with("network", Dict::new().with("scheme", "http")),
    )
}

pub fn grant(user: &SigningKey, contract: &Value, date: f64) -> String {
    let body = grant_body(contract, vec![vec![true]], vec![]).unwrap();
    to_token(&sign(user, body, date).unwrap())
}

pub fn revoked(user: &SigningKey, contract: &Value, date: f64) -> String {
    to_token(&sign(user, revoked_grant_body(contract).unwrap(), date).unwrap())
}

pub fn bind(user: &SigningKey, origin: &str) -> String {
    let body = Dict::new()
        .with("type", "alias.bindAuthz")
        .with("origin", origin);
    to_token(&sign(user, Value::Dict(body), now()).unwrap())
}

pub fn signed_request(
    user: &SigningKey,
    method: &str,
    path: &str,
    size: Option<u64>,
    date: f64,
) -> String {
    to_token(&sign(user, request_body(method, path, super::ORIGIN, size), date).unwrap())
}
