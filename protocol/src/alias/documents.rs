//! Typed views of the Alias documents: the signed client declaration, the
//! contract, the grant (consented or revoked), the bindAuthz and the
//! library's revocation object; their hashes, scopes and push destination.

use super::push::{PushBase, PushId, PushUrlError};
use super::validators::{alias_registry, CLIENT_DECL, CONTRACT, GRANT};
use crate::anychain::{
    b64u_encode, fold, from_json_str, to_token, DecodeError, Dict, Fold, FoldError, Limits,
    Registry, Value, VerifyError, SIGNATURE_TYPE,
};
use crate::js::{for_in_keys, less_than, prop, truthy};
use std::sync::OnceLock;

/// Why a token or value is not the Alias document expected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AliasError {
    /// The token is not acceptable anychain JSON.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A signature or validator failed (the reference's message).
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// The value cannot be folded.
    #[error(transparent)]
    Fold(#[from] FoldError),
    /// A valid document, but not of the expected kind.
    #[error("expected a '{0}' token")]
    WrongType(&'static str),
    /// A field has a shape the data bank cannot use.
    #[error("malformed {document}: {reason}")]
    Malformed {
        /// The document type.
        document: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The push destination is refused.
    #[error(transparent)]
    PushUrl(#[from] PushUrlError),
}

pub(super) fn malformed(document: &'static str, reason: impl Into<String>) -> AliasError {
    AliasError::Malformed {
        document,
        reason: reason.into(),
    }
}

/// The registry with the Alias validators, built once.
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(alias_registry)
}

/// Decodes a token and verifies it fully (every nested signature and
/// validator), as the reference's `fromToken` does.
pub fn decode_verified(token: &str, limits: &Limits) -> Result<Value, AliasError> {
    decode_verified_with(registry(), token, limits)
}

/// [`decode_verified`] with another registry.
pub fn decode_verified_with(
    registry: &Registry,
    token: &str,
    limits: &Limits,
) -> Result<Value, AliasError> {
    let value = from_json_str(token, limits)?;
    registry.verify(&value)?;
    Ok(value)
}

/// The reference's `isSignature(o, t)`: a signature whose body is of type `t`.
pub fn is_signature_of(value: &Value, body_type: &str) -> bool {
    value.type_name() == Some(SIGNATURE_TYPE)
        && value.get("body").and_then(Value::type_name) == Some(body_type)
}

/// A signature object whose body is of a given type, with its signer checked
/// to be a 32-byte key.
pub(super) fn check_signed(value: &Value, body_type: &'static str) -> Result<(), AliasError> {
    if !is_signature_of(value, body_type) {
        return Err(AliasError::WrongType(body_type));
    }
    match value.get("signer") {
        Some(Value::Bytes(b)) if b.len() == 32 => Ok(()),
        _ => Err(malformed(body_type, "signer is not a 32-byte public key")),
    }
}

pub(super) fn signer_of(value: &Value) -> &[u8] {
    value
        .get("signer")
        .and_then(Value::as_bytes)
        .unwrap_or_default()
}

pub(super) fn body_of(value: &Value) -> &Value {
    static NULL: Value = Value::Null;
    value.get("body").unwrap_or(&NULL)
}

/// A verified signed `alias.client.decl`, borrowed from its container.
#[derive(Debug, Clone, Copy)]
pub struct ClientDecl<'a>(&'a Value);

impl<'a> ClientDecl<'a> {
    /// Views a signature object whose body is a client declaration.
    pub fn new(value: &'a Value) -> Result<Self, AliasError> {
        check_signed(value, CLIENT_DECL)?;
        Ok(Self(value))
    }

    /// The whole signature object.
    pub fn value(&self) -> &'a Value {
        self.0
    }

    /// The declaration (the signed body).
    pub fn body(&self) -> &'a Value {
        body_of(self.0)
    }

    /// The client's signing key (the signer of the declaration).
    pub fn signer(&self) -> &'a [u8] {
        signer_of(self.0)
    }

    /// The client's display name, when it is a string.
    pub fn name(&self) -> Option<&'a str> {
        self.body().get("name").and_then(Value::as_str)
    }

    /// The client's description, when present.
    pub fn description(&self) -> Option<&'a str> {
        self.body().get("desc").and_then(Value::as_str)
    }

    /// The client's domain (host and optional port), when it is a string.
    pub fn domain(&self) -> Option<&'a str> {
        self.body().get("domain").and_then(Value::as_str)
    }

    /// The client id: the fold of the signed declaration.
    pub fn id(&self) -> Result<Fold, AliasError> {
        Ok(fold(self.0)?)
    }
}

/// The three legal bases of a contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// Needed for the contract; always part of a grant.
    Contractual,
    /// Optional, one switch per scope.
    Consent,
    /// The client's legitimate interest.
    Legitimate,
}

/// One scope of a contract with where it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct ContractScope<'a> {
    /// Its legal basis.
    pub basis: Basis,
    /// Group index (0 for contractual).
    pub group: usize,
    /// Index in the group.
    pub index: usize,
    /// The scope value as written in the contract.
    pub scope: &'a Value,
    /// The property names the reference indexes the grant's matrix with.
    keys: (String, String),
}

/// A verified `alias.contract`, borrowed from its container.
#[derive(Debug, Clone, Copy)]
pub struct Contract<'a>(&'a Value);

impl<'a> Contract<'a> {
    /// Views a contract.
    pub fn new(value: &'a Value) -> Result<Self, AliasError> {
        if value.type_name() != Some(CONTRACT) {
            return Err(AliasError::WrongType(CONTRACT));
        }
        Ok(Self(value))
    }

    /// The contract value.
    pub fn value(&self) -> &'a Value {
        self.0
    }

    /// The contract hash: its fold, the id grants are stored under.
    pub fn hash(&self) -> Result<Fold, AliasError> {
        Ok(fold(self.0)?)
    }

    /// The signed client declaration.
    pub fn client(&self) -> Result<ClientDecl<'a>, AliasError> {
        ClientDecl::new(self.0.get("client").unwrap_or(&Value::Null))
    }

    /// The free-form legal terms.
    pub fn legal(&self) -> Option<&'a Value> {
        self.0.get("legal")
    }

    /// The `base` object (contractual, consent, legitimate).
    pub fn base(&self) -> Option<&'a Value> {
        self.0.get("base")
    }

    /// Every scope of the contract with its basis and position, in contract
    /// order (contractual, consent groups, legitimate groups).
    pub fn scope_entries(&self) -> Result<Vec<ContractScope<'a>>, AliasError> {
        let mut out = Vec::new();
        let base = self.base();
        let js = |e: String| malformed(CONTRACT, e);
        if truthy(prop(base, "contractual").map_err(js)?) {
            let scopes = prop(prop(base, "contractual").map_err(js)?, "scopes").map_err(js)?;
            let Some(list) = scopes.and_then(Value::as_list) else {
                return Err(malformed(CONTRACT, "base.contractual.scopes is not a list"));
            };
            out.extend(list.iter().enumerate().map(|(index, scope)| ContractScope {
                basis: Basis::Contractual,
                group: 0,
                index,
                scope,
                keys: (String::new(), index.to_string()),
            }));
        }
        let groups = [
            (Basis::Consent, prop(base, "consent").map_err(js)?, false),
            (
                Basis::Legitimate,
                prop(base, "legitimate").map_err(js)?,
                true,
            ),
        ];
        for (basis, holder, nested) in groups {
            if !truthy(holder) {
                continue;
            }
            let groups = if nested {
                prop(holder, "groups").map_err(js)?
            } else {
                holder
            };
            for (group, g) in for_in_keys(groups).iter().enumerate() {
                let scopes = prop(prop(groups, g).map_err(js)?, "scopes").map_err(js)?;
                for (index, s) in for_in_keys(scopes).iter().enumerate() {
                    if let Some(scope) = prop(scopes, s).map_err(js)? {
                        out.push(ContractScope {
                            basis,
                            group,
                            index,
                            scope,
                            keys: (g.clone(), s.clone()),
                        });
                    }
                }
            }
        }
        Ok(out)
    }

    /// Every scope the contract mentions, de-duplicated by fold like the
    /// reference's `getContractScopes`.
    pub fn scopes(&self) -> Result<Vec<Value>, AliasError> {
        dedup_scopes(self.scope_entries()?.into_iter().map(|e| e.scope))
    }

    /// The checked push base of the contract's client.
    pub fn push_base(&self) -> Result<PushBase, AliasError> {
        let network = self.0.get("network");
        let text = |key: &'static str| -> Result<Option<&'a str>, AliasError> {
            match network.and_then(|n| n.get(key)) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.as_str())),
                Some(_) => Err(PushUrlError::NotAString(key).into()),
            }
        };
        let domain = self
            .client()?
            .domain()
            .ok_or(PushUrlError::NotAString("domain"))?;
        Ok(PushBase::new(
            text("scheme")?,
            domain,
            text("pushEndpoint")?,
        )?)
    }

    /// The push URL named by the contract hash (the reference's Variant A).
    pub fn push_url(&self) -> Result<String, AliasError> {
        Ok(self.push_base()?.transfer_url(&self.hash()?.to_b64()))
    }
}

/// Keeps one scope per fold: first position, last object (the reference's
/// `scopeById` object).
fn dedup_scopes<'a>(scopes: impl Iterator<Item = &'a Value>) -> Result<Vec<Value>, AliasError> {
    dedup_scopes_by(scopes, &|scope| Ok(fold(scope)?))
}

/// [`dedup_scopes`] with `id` giving the fold of a scope.
fn dedup_scopes_by<'a>(
    scopes: impl Iterator<Item = &'a Value>,
    id: &dyn Fn(&Value) -> Result<Fold, AliasError>,
) -> Result<Vec<Value>, AliasError> {
    let mut ids: Vec<Fold> = Vec::new();
    let mut out: Vec<Value> = Vec::new();
    for scope in scopes {
        let id = id(scope)?;
        match ids.iter().position(|known| *known == id) {
            Some(pos) => {
                if let Some(slot) = out.get_mut(pos) {
                    *slot = scope.clone();
                }
            }
            None => {
                ids.push(id);
                out.push(scope.clone());
            }
        }
    }
    Ok(out)
}

/// A verified, signed `alias.grant` (consented or revoked).
#[derive(Debug, Clone)]
pub struct Grant {
    value: Value,
    /// The grant hash and the contract hash, when the verification pass
    /// computed them (a grant read from a token); otherwise folded on demand.
    hashes: Option<(Fold, Fold)>,
    /// The scopes, once computed (the value never changes).
    scopes: OnceLock<Vec<Value>>,
}

impl PartialEq for Grant {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl Grant {
    /// Decodes and fully verifies a grant token, folding it once: the
    /// verification pass gives the grant hash and the contract hash too.
    pub fn from_token(token: &str, limits: &Limits) -> Result<Self, AliasError> {
        let value = from_json_str(token, limits)?;
        let contract_value = body_of(&value).get("contract").unwrap_or(&Value::Null);
        let contract: *const Value = contract_value;
        // The scope objects of the contract: their folds (the scope ids)
        // come out of the same pass.
        let scope_nodes: Vec<*const Value> = Contract(contract_value)
            .scope_entries()
            .map(|entries| entries.iter().map(|e| e.scope as *const Value).collect())
            .unwrap_or_default();
        let mut contract_hash = None;
        let mut scope_folds: Vec<(*const Value, Fold)> = Vec::new();
        let grant_hash = registry().verify_folded(&value, &mut |node, folded| {
            let node: *const Value = node;
            if node == contract {
                contract_hash = folded.ok().map(Fold::from_bytes);
            } else if scope_nodes.contains(&node) {
                if let Ok(f) = folded {
                    scope_folds.push((node, Fold::from_bytes(f)));
                }
            }
        })?;
        let mut grant = Self::from_verified(value)?;
        if let (Ok(g), Some(c)) = (grant_hash, contract_hash) {
            grant.hashes = Some((g, c));
        }
        // The tree was moved, not copied: its inner nodes kept their place,
        // so the scopes are found again by address (a miss folds anew).
        if let Ok(scopes) = grant.compute_scopes(&|scope| {
            let node: *const Value = scope;
            match scope_folds.iter().find(|(n, _)| *n == node) {
                Some((_, f)) => Ok(f.clone()),
                None => Ok(fold(scope)?),
            }
        }) {
            let _ = grant.scopes.set(scopes);
        }
        Ok(grant)
    }

    /// Wraps a value that has already passed [`registry`] verification.
    pub fn from_verified(value: Value) -> Result<Self, AliasError> {
        check_signed(&value, GRANT)?;
        Contract::new(body_of(&value).get("contract").unwrap_or(&Value::Null))?;
        Ok(Self {
            value,
            hashes: None,
            scopes: OnceLock::new(),
        })
    }

    /// The signature object.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// Gives the signature object back.
    pub fn into_value(self) -> Value {
        self.value
    }

    /// The token (compact JSON, as the reference writes it).
    pub fn to_token(&self) -> String {
        to_token(&self.value)
    }

    /// The grant body.
    pub fn body(&self) -> &Value {
        body_of(&self.value)
    }

    /// The user's public key (the signer).
    pub fn signer(&self) -> &[u8] {
        signer_of(&self.value)
    }

    /// The user's public key as URL-safe base64.
    pub fn signer_b64(&self) -> String {
        b64u_encode(self.signer())
    }

    /// The signature date as stored (milliseconds since the epoch in v1.1).
    pub fn date(&self) -> Option<&Value> {
        self.value.get("date")
    }

    /// Whether the grant revokes the contract.
    pub fn is_revoked(&self) -> bool {
        truthy(self.body().get("revoked"))
    }

    /// The embedded contract.
    pub fn contract(&self) -> Contract<'_> {
        static NULL: Value = Value::Null;
        Contract(self.body().get("contract").unwrap_or(&NULL))
    }

    /// The contract hash.
    pub fn contract_hash(&self) -> Result<Fold, AliasError> {
        match &self.hashes {
            Some((_, contract)) => Ok(contract.clone()),
            None => self.contract().hash(),
        }
    }

    /// The grant hash: the fold of the whole signature object.
    pub fn grant_hash(&self) -> Result<Fold, AliasError> {
        match &self.hashes {
            Some((grant, _)) => Ok(grant.clone()),
            None => Ok(fold(&self.value)?),
        }
    }

    /// The id of the transfer this grant feeds, by the configured rule.
    pub fn transfer_id(&self, rule: PushId) -> Result<Fold, AliasError> {
        match rule {
            PushId::Contract => self.contract_hash(),
            PushId::Grant => self.grant_hash(),
        }
    }

    /// The push URL of the transfer named by `rule`.
    pub fn push_url(&self, rule: PushId) -> Result<String, AliasError> {
        Ok(self
            .contract()
            .push_base()?
            .transfer_url(&self.transfer_id(rule)?.to_b64()))
    }

    /// The scopes the grant gives, in the reference's order: contractual,
    /// then consented consent scopes, then agreed legitimate scopes; one per
    /// fold; none when revoked.
    pub fn scopes(&self) -> Result<Vec<Value>, AliasError> {
        if let Some(scopes) = self.scopes.get() {
            return Ok(scopes.clone());
        }
        let scopes = self.compute_scopes(&|scope| Ok(fold(scope)?))?;
        Ok(self.scopes.get_or_init(|| scopes).clone())
    }

    /// The scopes, with `id` giving the fold of a scope.
    fn compute_scopes(
        &self,
        id: &dyn Fn(&Value) -> Result<Fold, AliasError>,
    ) -> Result<Vec<Value>, AliasError> {
        if self.is_revoked() {
            return Ok(Vec::new());
        }
        let base = self.body().get("base");
        let js = |e: String| malformed(GRANT, e);
        let mut chosen = Vec::new();
        for entry in self.contract().scope_entries()? {
            let row_holder = match entry.basis {
                Basis::Contractual => {
                    chosen.push(entry.scope);
                    continue;
                }
                Basis::Consent => prop(base, "consent").map_err(js)?,
                Basis::Legitimate => prop(base, "legitimate").map_err(js)?,
            };
            let row = prop(row_holder, &entry.keys.0).map_err(js)?;
            if truthy(prop(row, &entry.keys.1).map_err(js)?) {
                chosen.push(entry.scope);
            }
        }
        dedup_scopes_by(chosen.into_iter(), id)
    }

    /// The reference's `isGrantNewer(old, self)`: true when there is no old
    /// grant or its date is before this one's (equal dates are not newer).
    pub fn is_newer_than(&self, old: Option<&Grant>) -> bool {
        match old {
            None => true,
            Some(old) => less_than(old.date(), self.date()).unwrap_or(false),
        }
    }
}

/// Builds the unsigned body of an `alias.grant` for `contract`, with the
/// given consent and legitimate matrices (the contractual part is consented).
pub fn grant_body(
    contract: &Value,
    consent: Vec<Vec<bool>>,
    legitimate: Vec<Vec<bool>>,
) -> Result<Value, AliasError> {
    Contract::new(contract)?;
    let matrix = |rows: Vec<Vec<bool>>| {
        Value::List(
            rows.into_iter()
                .map(|r| Value::List(r.into_iter().map(Value::Bool).collect()))
                .collect(),
        )
    };
    let mut base = Dict::new();
    if contract
        .get("base")
        .is_some_and(|b| b.get("contractual").is_some())
    {
        base.insert("contractual", Value::Bool(true));
    }
    base.insert("consent", matrix(consent));
    base.insert("legitimate", matrix(legitimate));
    Ok(Value::Dict(
        Dict::new()
            .with("type", GRANT)
            .with("contract", contract.clone())
            .with("revoked", false)
            .with("base", base),
    ))
}

/// Builds the unsigned body of a revoked `alias.grant` for `contract`.
pub fn revoked_grant_body(contract: &Value) -> Result<Value, AliasError> {
    Contract::new(contract)?;
    Ok(Value::Dict(
        Dict::new()
            .with("type", GRANT)
            .with("contract", contract.clone())
            .with("revoked", true),
    ))
}
