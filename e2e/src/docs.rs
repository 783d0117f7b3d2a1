//! Alias documents for the tests: keys, signed client declarations,
//! contracts, grants, revocations and the user's bind token.
//!
//! Every contract asks for Google scopes and is pushed over plain `http`
//! (the test clients are `alias-sink`s on loopback).

pub use protocol::alias::build::ContractDoc;
use protocol::alias::build::{
    self, bind_authz_body, signed_grant, signed_revocation, ClientDeclDoc,
};
use protocol::alias::{request_body, Contract};
pub use protocol::anychain::Value;
use protocol::anychain::{b64u_encode, sign, signing_key_from_seed, to_token, SigningKey};
use runtime::state::now_ms;

use crate::ORIGIN;

/// The date the test clients sign their declarations at.
pub const DECL_DATE_MS: f64 = 1_574_158_519_000.0;

/// The signing key of `seed` (a user's or a client's).
pub fn key(seed: u8) -> SigningKey {
    signing_key_from_seed(&[seed; 32])
}

/// A user's signing key.
pub fn user(seed: u8) -> SigningKey {
    key(seed)
}

/// The public key of `key`, base64url: a user's id at the bank.
pub fn user_pk(key: &SigningKey) -> String {
    b64u_encode(key.verifying_key().as_bytes())
}

/// Now, in milliseconds, as documents date themselves.
#[allow(clippy::cast_precision_loss)]
pub fn now() -> f64 {
    now_ms() as f64
}

/// The Google scope `path`.
pub fn scope(path: &str) -> Value {
    Value::Dict(build::scope("google", path))
}

/// A group of Google scopes with its usages.
pub fn group(paths: &[&str], usages: &[&str]) -> Value {
    build::group(paths.iter().map(|p| build::scope("google", p)), usages)
}

/// The client `name` at `domain` declares itself (no `crypto` keys),
/// signed with `key`.
pub fn client_decl(name: &str, domain: &str, key: &SigningKey) -> Value {
    ClientDeclDoc::new(name, domain)
        .sign(key, DECL_DATE_MS)
        .unwrap()
}

/// A client declaration of `name` at `domain` naming `named`'s key in
/// `crypto.sign`, signed by `signer` (the same key for an honest client).
pub fn client_decl_naming(
    name: &str,
    domain: &str,
    named: &SigningKey,
    signer: &SigningKey,
) -> Value {
    ClientDeclDoc::new(name, domain)
        .naming(&named.verifying_key())
        .sign(signer, DECL_DATE_MS)
        .unwrap()
}

/// A contract of `client` (a signed declaration) as the tests write them:
/// `legal.usage` "tests" (change it with [`ContractDoc::usage`]) and
/// pushed over plain `http`; the scope groups are the test's.
pub fn contract_doc(client: Value) -> ContractDoc {
    ContractDoc::new(client).usage("tests").scheme("http")
}

/// A contract of the client `name` (key of `client_seed`) at `domain`
/// asking for the Google `scopes` as contractual.
pub fn contract(name: &str, client_seed: u8, domain: &str, scopes: &[&str]) -> Value {
    contract_doc(client_decl(name, domain, &key(client_seed)))
        .contractual(group(scopes, &[]))
        .build()
}

/// The transfer id of `contract` (its hash).
pub fn contract_id(contract: &Value) -> String {
    Contract::new(contract).unwrap().hash().unwrap().to_b64()
}

/// The signed grant of `contract` by `user` choosing `consent` and
/// `legitimate` (one row of answers per group), dated `date_ms`.
pub fn grant_signed(
    user: &SigningKey,
    contract: &Value,
    consent: Vec<Vec<bool>>,
    legitimate: Vec<Vec<bool>>,
    date_ms: f64,
) -> Value {
    signed_grant(user, contract, consent, legitimate, date_ms).unwrap()
}

/// A grant of the contractual scopes of `contract`, dated `date_ms`.
pub fn grant_at(user: &SigningKey, contract: &Value, date_ms: f64) -> String {
    to_token(&grant_signed(user, contract, vec![], vec![], date_ms))
}

/// A grant of the contractual scopes of `contract`, signed now.
pub fn grant(user: &SigningKey, contract: &Value) -> String {
    grant_at(user, contract, now())
}

/// A revocation of `contract` by `user`, dated `date_ms`.
pub fn revocation_at(user: &SigningKey, contract: &Value, date_ms: f64) -> String {
    to_token(&signed_revocation(user, contract, date_ms).unwrap())
}

/// A revocation of `contract` by `user`, signed now.
pub fn revocation(user: &SigningKey, contract: &Value) -> String {
    revocation_at(user, contract, now())
}

/// The user's `alias.bindAuthz` for the test banks' origin, signed now.
pub fn bind_token(user: &SigningKey) -> String {
    to_token(&sign(user, bind_authz_body(ORIGIN), now()).unwrap())
}

/// The user's signed request `method path` to the test banks (the value of
/// `Authorization: Alias …`), for a body of `size` bytes if any, signed
/// now.
pub fn request_token(user: &SigningKey, method: &str, path: &str, size: Option<u64>) -> String {
    to_token(&sign(user, request_body(method, path, ORIGIN, size), now()).unwrap())
}

/// The request `method path` to the bank at `base`, signed by `user` (the
/// `Authorization: Alias …` header of [`request_token`]); `size` is the
/// body size it declares, if any.
pub fn signed_request(
    http: &reqwest::Client,
    method: reqwest::Method,
    base: &str,
    path: &str,
    user: &SigningKey,
    size: Option<u64>,
) -> reqwest::RequestBuilder {
    let auth = request_token(user, method.as_str(), path, size);
    http.request(method, format!("{base}{path}"))
        .header("Authorization", format!("Alias {auth}"))
}
