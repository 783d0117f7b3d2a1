//! The Alias validators, as the reference (`chain/aliasChains.js`) runs
//! them: same checks, same order, same messages, same JavaScript coercions
//! (including its bug of never checking `legitimate` row lengths). The
//! stricter rules alias-bank applies on top live in [`super::policy`].

use crate::anychain::{DocumentMemo, Registry, SignatureCache, Value};
use crate::js::{
    for_in_keys, has_prop, length, loose_eq, loose_eq_true, prop, truthy, JsTypeError,
};
use std::num::NonZeroUsize;
use std::sync::Arc;

/// `alias.bindAuthz`: the user binds their key to a data bank's origin.
pub const BIND_AUTHZ: &str = "alias.bindAuthz";
/// `alias.client.decl`: a client describes itself.
pub const CLIENT_DECL: &str = "alias.client.decl";
/// `alias.contract`: what a client asks for, embedded in every grant.
pub const CONTRACT: &str = "alias.contract";
/// `alias.grant`: the user's consent to a contract (or its revocation).
pub const GRANT: &str = "alias.grant";

/// How many signatures of client declarations and bind authorizations
/// [`alias_registry`] remembers as verified (about 160 bytes each).
pub const SIGNATURE_CACHE_CAPACITY: usize = 4096;

/// How many verified contracts [`alias_registry`] remembers with their
/// folds (each at most [`crate::anychain::MAX_ENTRY_BYTES`], so at most
/// 16 MiB in all).
pub const CONTRACT_MEMO_CAPACITY: usize = 256;

/// The registry the reference's provider and client use: the anychain
/// built-ins plus the four Alias types. Signatures of client declarations
/// (one per client, inside every contract of the client) and of bind
/// authorizations (one per user) go through a bounded cache of
/// [`SIGNATURE_CACHE_CAPACITY`] verifications, shared by the registry's
/// clones: a declaration is verified once per process while it stays in it.
/// Contracts that verified are remembered with their folds
/// ([`CONTRACT_MEMO_CAPACITY`] of them): the contract of many users' grants
/// is folded and checked once while it stays remembered.
pub fn alias_registry() -> Registry {
    let mut registry = Registry::anychain();
    let validators: [(&str, crate::anychain::Validator); 4] = [
        (BIND_AUTHZ, validate_bind_authz),
        (CLIENT_DECL, validate_client_decl),
        (CONTRACT, validate_contract),
        (GRANT, validate_grant),
    ];
    for (name, validator) in validators {
        // The anychain registry holds none of these names.
        let _ = registry.register(name, validator);
    }
    let capacity = NonZeroUsize::new(SIGNATURE_CACHE_CAPACITY).unwrap_or(NonZeroUsize::MIN);
    let contracts = NonZeroUsize::new(CONTRACT_MEMO_CAPACITY).unwrap_or(NonZeroUsize::MIN);
    registry
        .cache_signatures_of(
            Arc::new(SignatureCache::new(capacity)),
            &[CLIENT_DECL, BIND_AUTHZ],
        )
        .memoize_documents(Arc::new(DocumentMemo::new(contracts)), &[CONTRACT])
}

fn assert_has_fields(o: Option<&Value>, names: &[&str]) -> Result<(), JsTypeError> {
    for name in names {
        if !has_prop(o, name)? {
            return Err(format!("missing field: '{name}'"));
        }
    }
    Ok(())
}

fn ne_str(v: Option<&Value>, s: &str) -> Result<bool, JsTypeError> {
    loose_eq(v, Some(&Value::from(s)))
        .map(|eq| !eq)
        .map_err(|e| e.to_string())
}

fn ne(a: Option<&Value>, b: Option<&Value>) -> Result<bool, JsTypeError> {
    loose_eq(a, b).map(|eq| !eq).map_err(|e| e.to_string())
}

/// `alias.bindAuthz` needs `origin`.
pub fn validate_bind_authz(o: &Value) -> Result<(), String> {
    assert_has_fields(Some(o), &["origin"])
}

/// `alias.client.decl` needs `crypto`, `name` and `domain`.
pub fn validate_client_decl(o: &Value) -> Result<(), String> {
    assert_has_fields(Some(o), &["crypto", "name", "domain"])
}

/// `alias.contract` needs `client`, `legal` and `base`; `client` must be a
/// signed `alias.client.decl`.
pub fn validate_contract(o: &Value) -> Result<(), String> {
    let o = Some(o);
    assert_has_fields(o, &["client", "legal", "base"])?;
    let client = prop(o, "client")?;
    if ne_str(prop(client, "type")?, crate::anychain::SIGNATURE_TYPE)? {
        return Err("field 'client' is not a signature".to_owned());
    }
    if ne_str(prop(prop(client, "body")?, "type")?, CLIENT_DECL)? {
        return Err("field 'client' is not a signed client declaration".to_owned());
    }
    Ok(())
}

/// `alias.grant`: the reference's checks of the consent matrices against
/// the contract. A revoked grant is accepted as soon as its contract is one.
pub fn validate_grant(o: &Value) -> Result<(), String> {
    let o = Some(o);
    assert_has_fields(o, &["contract", "revoked"])?;
    let contract = prop(o, "contract")?;
    if ne_str(prop(contract, "type")?, CONTRACT)? {
        return Err("field 'contract' is not an alias.contract".to_owned());
    }
    if truthy(prop(o, "revoked")?) {
        return Ok(());
    }
    assert_has_fields(o, &["base"])?;
    let base = prop(o, "base")?;
    let contract_base = prop(contract, "base")?;

    if has_prop(contract_base, "contractual")? {
        assert_has_fields(base, &["contractual"])?;
        if !loose_eq_true(prop(base, "contractual")?).map_err(|e| e.to_string())? {
            return Err("contractual part of the contract must be consented".to_owned());
        }
    }

    if has_prop(contract_base, "consent")? {
        assert_has_fields(base, &["consent"])?;
        let wanted = prop(contract_base, "consent")?;
        let given = prop(base, "consent")?;
        if ne(length(wanted)?.as_ref(), length(given)?.as_ref())? {
            return Err("bad length for consent consent".to_owned());
        }
        for idx in for_in_keys(given) {
            let scopes = prop(prop(wanted, &idx)?, "scopes")?;
            if ne(
                length(scopes)?.as_ref(),
                length(prop(given, &idx)?)?.as_ref(),
            )? {
                return Err("bad length for scopes of one consent consent".to_owned());
            }
        }
    }

    if has_prop(contract_base, "legitimate")? {
        assert_has_fields(base, &["legitimate"])?;
        let wanted = prop(prop(contract_base, "legitimate")?, "groups")?;
        let given = prop(base, "legitimate")?;
        if ne(length(wanted)?.as_ref(), length(given)?.as_ref())? {
            return Err("bad length for legitimate consent".to_owned());
        }
        // The reference loops over `base.legitimate.groups`, which a row
        // matrix does not have: row lengths go unchecked (kept on purpose).
        for idx in for_in_keys(prop(given, "groups")?) {
            let scopes = prop(prop(wanted, &idx)?, "scopes")?;
            if ne(
                length(scopes)?.as_ref(),
                length(prop(given, &idx)?)?.as_ref(),
            )? {
                return Err("bad length for scoeps of one legitimate consent".to_owned());
            }
        }
    }
    Ok(())
}
