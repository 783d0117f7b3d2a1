//! Builders of Alias documents, for clients, tools, demos and tests: the
//! signed client declaration, the contract, scope groups, signed grants and
//! revocations, and the `alias.bindAuthz` body.
//!
//! A builder writes a document's entries in the order the reference
//! writes them (`type` first), so a document built here from the same
//! parts, keys and dates is the same token byte for byte (the unit tests
//! rebuild the conformance vectors' grant and revocation). No I/O, no
//! clock: every date is given.

use ed25519_dalek::VerifyingKey;

use super::documents::{grant_body, revoked_grant_body, AliasError};
use super::validators::{BIND_AUTHZ, CLIENT_DECL, CONTRACT};
use crate::anychain::{sign, Dict, SigningKey, Value};

/// The scope `path` of `provider` (`{provider, path}`); add `predicates`
/// or `fields` with [`Dict::with`].
pub fn scope(provider: &str, path: &str) -> Dict {
    Dict::new().with("provider", provider).with("path", path)
}

/// A scope group: its `scopes` and the `usages` they are asked for.
pub fn group<S: Into<Value>>(scopes: impl IntoIterator<Item = S>, usages: &[&str]) -> Value {
    Value::Dict(
        Dict::new()
            .with(
                "scopes",
                Value::List(scopes.into_iter().map(Into::into).collect()),
            )
            .with(
                "usages",
                Value::List(usages.iter().map(|u| Value::from(*u)).collect()),
            ),
    )
}

/// An `alias.client.decl` being written: the client's name and domain, an
/// optional description and company, and the keys it names in `crypto`
/// (none unless set).
#[derive(Debug, Clone)]
pub struct ClientDeclDoc {
    name: String,
    domain: String,
    description: Option<String>,
    company: Option<String>,
    sign_key: Option<Vec<u8>>,
    box_key: Option<Vec<u8>>,
}

impl ClientDeclDoc {
    /// The declaration of the client `name` at `domain`.
    pub fn new(name: impl Into<String>, domain: impl Into<String>) -> ClientDeclDoc {
        ClientDeclDoc {
            name: name.into(),
            domain: domain.into(),
            description: None,
            company: None,
            sign_key: None,
            box_key: None,
        }
    }

    /// The free-form `desc` text.
    pub fn description(mut self, text: &str) -> ClientDeclDoc {
        self.description = Some(text.to_owned());
        self
    }

    /// The `company` behind the client.
    pub fn company(mut self, name: &str) -> ClientDeclDoc {
        self.company = Some(name.to_owned());
        self
    }

    /// Names `key` as the client's signing key (`crypto.sign`).
    pub fn naming(mut self, key: &VerifyingKey) -> ClientDeclDoc {
        self.sign_key = Some(key.as_bytes().to_vec());
        self
    }

    /// Names `key` as the client's box key (`crypto.box`).
    pub fn box_key(mut self, key: Vec<u8>) -> ClientDeclDoc {
        self.box_key = Some(key);
        self
    }

    /// The unsigned declaration.
    pub fn body(self) -> Value {
        let mut crypto = Dict::new();
        if let Some(key) = self.sign_key {
            crypto.insert("sign", Value::Bytes(key));
        }
        if let Some(key) = self.box_key {
            crypto.insert("box", Value::Bytes(key));
        }
        let mut decl = Dict::new()
            .with("type", CLIENT_DECL)
            .with("name", self.name);
        if let Some(text) = self.description {
            decl.insert("desc", Value::from(text));
        }
        decl.insert("domain", Value::from(self.domain));
        decl.insert("crypto", Value::Dict(crypto));
        if let Some(company) = self.company {
            decl.insert("company", Value::from(company));
        }
        Value::Dict(decl)
    }

    /// The declaration signed by `key` at `date_ms`.
    pub fn sign(self, key: &SigningKey, date_ms: f64) -> Result<Value, AliasError> {
        Ok(sign(key, self.body(), date_ms)?)
    }
}

/// An `alias.contract` being written: the client's signed declaration,
/// the `legal` entries, the scope groups of `base`, the `network` entries
/// and any further entries, each written only when set.
#[derive(Debug, Clone)]
pub struct ContractDoc {
    client: Value,
    legal: Dict,
    contractual: Option<Value>,
    consent: Option<Vec<Value>>,
    legitimate: Option<(Option<String>, Vec<Value>)>,
    network: Option<Dict>,
    extra: Dict,
}

impl ContractDoc {
    /// A contract of `client` (a signed declaration) asking for nothing
    /// yet, with an empty `legal` and no `network`.
    pub fn new(client: Value) -> ContractDoc {
        ContractDoc {
            client,
            legal: Dict::new(),
            contractual: None,
            consent: None,
            legitimate: None,
            network: None,
            extra: Dict::new(),
        }
    }

    /// The free-form `legal.usage` text.
    pub fn usage(self, text: &str) -> ContractDoc {
        self.legal("usage", text)
    }

    /// One more `legal` entry (`storage_duration`, `destination`, …).
    pub fn legal(mut self, key: &str, value: impl Into<Value>) -> ContractDoc {
        self.legal.insert(key, value.into());
        self
    }

    /// The contractual group (granted by every grant).
    pub fn contractual(mut self, group: Value) -> ContractDoc {
        self.contractual = Some(group);
        self
    }

    /// One more consent group (the user chooses each scope).
    pub fn consent(mut self, group: Value) -> ContractDoc {
        self.consent.get_or_insert_with(Vec::new).push(group);
        self
    }

    /// The consent groups, written even when there are none (`[]`).
    pub fn consent_groups(mut self, groups: Vec<Value>) -> ContractDoc {
        self.consent = Some(groups);
        self
    }

    /// The legitimate-interest groups, with their `reason` if any.
    pub fn legitimate(mut self, reason: Option<&str>, groups: Vec<Value>) -> ContractDoc {
        self.legitimate = Some((reason.map(str::to_owned), groups));
        self
    }

    /// The `network` entry, empty until [`ContractDoc::scheme`] or
    /// [`ContractDoc::push_endpoint`] fill it.
    pub fn network(mut self) -> ContractDoc {
        self.network.get_or_insert_with(Dict::new);
        self
    }

    /// `network.scheme` (`https` when absent; `http` for loopback tests).
    pub fn scheme(mut self, scheme: &str) -> ContractDoc {
        self.network
            .get_or_insert_with(Dict::new)
            .insert("scheme", Value::from(scheme));
        self
    }

    /// An explicit `network.pushEndpoint` path.
    pub fn push_endpoint(mut self, path: &str) -> ContractDoc {
        self.network
            .get_or_insert_with(Dict::new)
            .insert("pushEndpoint", Value::from(path));
        self
    }

    /// One more top-level entry, written after the others.
    pub fn entry(mut self, key: &str, value: impl Into<Value>) -> ContractDoc {
        self.extra.insert(key, value.into());
        self
    }

    /// The contract document (contracts are not signed themselves).
    pub fn build(self) -> Value {
        let mut base = Dict::new();
        if let Some(group) = self.contractual {
            base.insert("contractual", group);
        }
        if let Some(groups) = self.consent {
            base.insert("consent", Value::List(groups));
        }
        if let Some((reason, groups)) = self.legitimate {
            let mut legitimate = Dict::new();
            if let Some(reason) = reason {
                legitimate.insert("reason", Value::from(reason));
            }
            legitimate.insert("groups", Value::List(groups));
            base.insert("legitimate", Value::Dict(legitimate));
        }
        let mut contract = Dict::new()
            .with("type", CONTRACT)
            .with("client", self.client)
            .with("legal", self.legal)
            .with("base", base);
        if let Some(network) = self.network {
            contract.insert("network", Value::Dict(network));
        }
        for (key, value) in self.extra.iter() {
            contract.insert(key, value.clone());
        }
        Value::Dict(contract)
    }
}

/// The grant of `contract` signed by `user` at `date_ms`, with one row of
/// answers per consent group and per legitimate group (the contractual
/// part is granted).
pub fn signed_grant(
    user: &SigningKey,
    contract: &Value,
    consent: Vec<Vec<bool>>,
    legitimate: Vec<Vec<bool>>,
    date_ms: f64,
) -> Result<Value, AliasError> {
    Ok(sign(
        user,
        grant_body(contract, consent, legitimate)?,
        date_ms,
    )?)
}

/// The revoked grant of `contract` signed by `user` at `date_ms` (how a
/// user withdraws a grant).
pub fn signed_revocation(
    user: &SigningKey,
    contract: &Value,
    date_ms: f64,
) -> Result<Value, AliasError> {
    Ok(sign(user, revoked_grant_body(contract)?, date_ms)?)
}

/// The unsigned `alias.bindAuthz` of a user for the bank at `origin`.
pub fn bind_authz_body(origin: &str) -> Value {
    Value::Dict(Dict::new().with("type", BIND_AUTHZ).with("origin", origin))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::alias::{Contract, Grant};
    use crate::anychain::{from_json_str, signing_key_from_seed, to_token, Limits};

    const EXAMPLES: &str = include_str!("../../tests/data/protocol-examples.json");

    fn example(field: &str) -> String {
        let all: serde_json::Value = serde_json::from_str(EXAMPLES).unwrap();
        all[field].as_str().unwrap().to_owned()
    }

    /// The contract of the conformance vectors' grant, built.
    fn vector_contract() -> Value {
        let client = signing_key_from_seed(&[1; 32]);
        let decl = ClientDeclDoc::new("Demo", "client.example")
            .naming(&client.verifying_key())
            .sign(&client, 1_574_158_519_000.0)
            .unwrap();
        let search = scope("google", "my_activity.search")
            .with(
                "predicates",
                Value::List(vec![Value::List(vec![
                    Value::from("="),
                    Value::from("title"),
                    Value::from("x"),
                ])]),
            )
            .with(
                "fields",
                Value::List(vec![Value::from("title"), Value::from("time")]),
            );
        ContractDoc::new(decl)
            .contractual(group([scope("google", "my_activity.assistant")], &["u"]))
            .consent(group([search], &["v"]))
            .legitimate(None, vec![])
            .build()
    }

    #[test]
    fn the_vectors_grant_is_rebuilt_byte_for_byte() {
        let user = signing_key_from_seed(&[2; 32]);
        let contract = vector_contract();
        assert_eq!(
            Contract::new(&contract).unwrap().hash().unwrap().to_b64(),
            example("grant_contract_hash")
        );
        let grant = signed_grant(
            &user,
            &contract,
            vec![vec![true]],
            vec![],
            1_574_158_520_000.0,
        )
        .unwrap();
        assert_eq!(to_token(&grant), example("grant_token"));
        let checked = Grant::from_token(&to_token(&grant), &Limits::default()).unwrap();
        assert_eq!(
            checked.grant_hash().unwrap().to_b64(),
            example("grant_hash")
        );
    }

    #[test]
    fn the_vectors_revocation_is_rebuilt_byte_for_byte() {
        let user = signing_key_from_seed(&[2; 32]);
        let revoked = signed_revocation(&user, &vector_contract(), 1_574_158_530_000.0).unwrap();
        assert_eq!(to_token(&revoked), example("revoked_token"));
    }

    #[test]
    fn optional_entries_are_written_only_when_set_in_the_reference_order() {
        let key = signing_key_from_seed(&[3; 32]);
        let decl = ClientDeclDoc::new("C", "c.example")
            .description("d")
            .company("Co")
            .box_key(vec![7; 32])
            .body();
        let keys: Vec<&str> = match &decl {
            Value::Dict(d) => d.iter().map(|(k, _)| k).collect(),
            _ => panic!("not a dict"),
        };
        assert_eq!(
            keys,
            ["type", "name", "desc", "domain", "crypto", "company"]
        );
        let bare = ContractDoc::new(
            ClientDeclDoc::new("C", "c.example")
                .sign(&key, 1.0)
                .unwrap(),
        )
        .build();
        let text = to_token(&bare);
        assert!(!text.contains("network") && text.contains(r#""legal":{},"base":{}"#));
        let full = ContractDoc::new(Value::Null)
            .usage("tests")
            .consent_groups(vec![])
            .scheme("http")
            .push_endpoint("/p/")
            .entry("date", Dict::new())
            .build();
        assert!(to_token(&full).ends_with(
            r#""legal":{"usage":"tests"},"base":{"consent":[]},"network":{"scheme":"http","pushEndpoint":"/p/"},"date":{}}"#
        ));
    }

    #[test]
    fn a_grant_of_something_that_is_not_a_contract_is_a_typed_error() {
        let user = signing_key_from_seed(&[2; 32]);
        let not_contract = from_json_str(r#"{"type":"x"}"#, &Limits::default()).unwrap();
        assert!(signed_grant(&user, &not_contract, vec![], vec![], 1.0).is_err());
        assert!(signed_revocation(&user, &Value::Null, 1.0).is_err());
    }

    #[test]
    fn bind_authz_names_its_origin() {
        assert_eq!(
            to_token(&bind_authz_body("https://bank.example")),
            r#"{"type":"alias.bindAuthz","origin":"https://bank.example"}"#
        );
    }
}
