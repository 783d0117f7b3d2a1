//! Keys and documents for the tests: a client, its contract, users' grants
//! and bindings, signed requests.

use protocol::alias::build::{
    bind_authz_body, group, scope, signed_grant, signed_revocation, ClientDeclDoc, ContractDoc,
};
use protocol::alias::request_body;
use protocol::anychain::{sign, signing_key_from_seed, to_token, SigningKey, Value};
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

/// A contract of client `name` at `domain` (plain http, for loopback tests).
pub fn contract(name: &str, domain: &str) -> Value {
    let client = ClientDeclDoc::new(name, domain)
        .naming(&client_key().verifying_key())
        .sign(&client_key(), 1_574_158_519_000.0)
        .unwrap();
    ContractDoc::new(client)
        .usage("tests")
        .contractual(group(
            [scope("google", "my_activity.search")],
            &["research"],
        ))
        .consent(group(
            [scope("google", "youtube.watch_history")],
            &["research"],
        ))
        .legitimate(None, vec![])
        .scheme("http")
        .build()
}

pub fn grant(user: &SigningKey, contract: &Value, date: f64) -> String {
    to_token(&signed_grant(user, contract, vec![vec![true]], vec![], date).unwrap())
}

pub fn revoked(user: &SigningKey, contract: &Value, date: f64) -> String {
    to_token(&signed_revocation(user, contract, date).unwrap())
}

pub fn bind(user: &SigningKey, origin: &str) -> String {
    to_token(&sign(user, bind_authz_body(origin), now()).unwrap())
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
