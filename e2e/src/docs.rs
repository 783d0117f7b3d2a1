//! Alias documents for the tests: keys, signed client declarations,
//! contracts, grants, revocations and the user's bind token.
//!
//! Every contract asks for Google scopes and is pushed over plain `http`
//! (the test clients are `alias-sink`s on loopback).

use protocol::alias::{grant_body, request_body, revoked_grant_body, Contract};
pub use protocol::anychain::Value;
use protocol::anychain::{b64u_encode, sign, signing_key_from_seed, to_token, Dict, SigningKey};
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
    Value::Dict(Dict::new().with("provider", "google").with("path", path))
}

/// A group of Google scopes with its usages.
pub fn group(paths: &[&str], usages: &[&str]) -> Value {
    Value::Dict(
        Dict::new()
            .with(
                "scopes",
                Value::List(paths.iter().map(|p| scope(p)).collect()),
            )
            .with(
                "usages",
                Value::List(usages.iter().map(|u| Value::from(*u)).collect()),
            ),
    )
}

/// The client `name` at `domain` declares itself (no `crypto` keys),
/// signed with `key`.
pub fn client_decl(name: &str, domain: &str, key: &SigningKey) -> Value {
    let body = Dict::new()
        .with("type", "alias.client.decl")
        .with("name", name)
        .with("domain", domain)
        .with("crypto", Dict::new());
    sign(key, Value::Dict(body), DECL_DATE_MS).unwrap()
}

/// A client declaration of `name` at `domain` naming `named`'s key in
/// `crypto.sign`, signed by `signer` (the same key for an honest client).
pub fn client_decl_naming(
    name: &str,
    domain: &str,
    named: &SigningKey,
    signer: &SigningKey,
) -> Value {
    let body = Dict::new()
        .with("type", "alias.client.decl")
        .with("name", name)
        .with("domain", domain)
        .with(
            "crypto",
            Dict::new().with(
                "sign",
                Value::Bytes(named.verifying_key().as_bytes().to_vec()),
            ),
        );
    sign(signer, Value::Dict(body), DECL_DATE_MS).unwrap()
}

/// A contract being written: the client's signed declaration, the legal
/// usage (`tests` unless set) and the scope groups.
pub struct ContractDoc {
    client: Value,
    legal: String,
    contractual: Option<Value>,
    consent: Vec<Value>,
    legitimate: Option<(String, Vec<Value>)>,
    push_endpoint: Option<String>,
}

impl ContractDoc {
    /// A contract of `client` (a signed declaration) asking for nothing yet.
    pub fn new(client: Value) -> ContractDoc {
        ContractDoc {
            client,
            legal: "tests".to_owned(),
            contractual: None,
            consent: Vec::new(),
            legitimate: None,
            push_endpoint: None,
        }
    }

    /// The contractual group (granted by every grant).
    pub fn contractual(mut self, group: Value) -> ContractDoc {
        self.contractual = Some(group);
        self
    }

    /// One more consent group (the user chooses each scope).
    pub fn consent(mut self, group: Value) -> ContractDoc {
        self.consent.push(group);
        self
    }

    /// The legitimate-interest groups and their reason.
    pub fn legitimate(mut self, reason: &str, groups: Vec<Value>) -> ContractDoc {
        self.legitimate = Some((reason.to_owned(), groups));
        self
    }

    /// The free-form `legal.usage` text.
    pub fn legal(mut self, usage: &str) -> ContractDoc {
        self.legal = usage.to_owned();
        self
    }

    /// An explicit `network.pushEndpoint` (the default one, unless set).
    pub fn push_endpoint(mut self, path: &str) -> ContractDoc {
        self.push_endpoint = Some(path.to_owned());
        self
    }

    /// The contract document.
    pub fn build(self) -> Value {
        let mut base = Dict::new();
        if let Some(contractual) = self.contractual {
            base = base.with("contractual", contractual);
        }
        if !self.consent.is_empty() {
            base = base.with("consent", Value::List(self.consent));
        }
        if let Some((reason, groups)) = self.legitimate {
            base = base.with(
                "legitimate",
                Dict::new()
                    .with("reason", reason)
                    .with("groups", Value::List(groups)),
            );
        }
        let mut network = Dict::new().with("scheme", "http");
        if let Some(path) = self.push_endpoint {
            network = network.with("pushEndpoint", path);
        }
        Value::Dict(
            Dict::new()
                .with("type", "alias.contract")
                .with("client", self.client)
                .with("legal", Dict::new().with("usage", self.legal))
                .with("base", base)
                .with("network", network),
        )
    }
}

/// A contract of the client `name` (key of `client_seed`) at `domain`
/// asking for the Google `scopes` as contractual.
pub fn contract(name: &str, client_seed: u8, domain: &str, scopes: &[&str]) -> Value {
    ContractDoc::new(client_decl(name, domain, &key(client_seed)))
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
    sign(
        user,
        grant_body(contract, consent, legitimate).unwrap(),
        date_ms,
    )
    .unwrap()
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
    to_token(&sign(user, revoked_grant_body(contract).unwrap(), date_ms).unwrap())
}

/// A revocation of `contract` by `user`, signed now.
pub fn revocation(user: &SigningKey, contract: &Value) -> String {
    revocation_at(user, contract, now())
}

/// The user's `alias.bindAuthz` for the test banks' origin, signed now.
pub fn bind_token(user: &SigningKey) -> String {
    let body = Dict::new()
        .with("type", "alias.bindAuthz")
        .with("origin", ORIGIN);
    to_token(&sign(user, Value::Dict(body), now()).unwrap())
}

/// The user's signed request `method path` to the test banks (the value of
/// `Authorization: Alias …`), for a body of `size` bytes if any, signed
/// now.
pub fn request_token(user: &SigningKey, method: &str, path: &str, size: Option<u64>) -> String {
    to_token(&sign(user, request_body(method, path, ORIGIN, size), now()).unwrap())
}
