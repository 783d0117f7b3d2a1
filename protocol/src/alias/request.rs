//! Signed requests: how a user authenticates to this data bank with their
//! key alone (no passwords). The user signs a short-lived
//! `alias.bank.request` document naming the method, path and origin of the
//! one HTTP request it authorises (and the body size for uploads); the
//! gateway checks the signature, the date window, that it matches the
//! request, and that it is used once.

use super::documents::{decode_verified_with, AliasError};
use super::validators::alias_registry;
use crate::anychain::{fold, Dict, Fold, Limits, Registry, Value};
use crate::js::has_prop;
use std::sync::OnceLock;

/// The document type of a signed request.
pub const BANK_REQUEST: &str = "alias.bank.request";

/// The `alias.bank.request` validator: `method`, `path` and `origin` are
/// required strings; `size`, when present, a non-negative integer.
pub fn validate_bank_request(o: &Value) -> Result<(), String> {
    for field in ["method", "path", "origin"] {
        if !has_prop(Some(o), field)? {
            return Err(format!("missing field: '{field}'"));
        }
        if o.get(field).and_then(Value::as_str).is_none() {
            return Err(format!("field '{field}' must be a string"));
        }
    }
    match o.get("size") {
        None => Ok(()),
        Some(Value::Number(n)) if n.is_finite() && *n >= 0.0 && n.fract() == 0.0 => Ok(()),
        Some(_) => Err("field 'size' must be a non-negative integer".to_owned()),
    }
}

/// The registry of this data bank: the Alias types plus `alias.bank.request`.
pub fn bank_registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut registry = alias_registry();
        let _ = registry.register(BANK_REQUEST, validate_bank_request);
        registry
    })
}

/// Builds the body of a signed request.
pub fn request_body(method: &str, path: &str, origin: &str, size: Option<u64>) -> Value {
    let mut d = Dict::new()
        .with("type", BANK_REQUEST)
        .with("method", method)
        .with("path", path)
        .with("origin", origin);
    if let Some(size) = size {
        #[allow(clippy::cast_precision_loss)]
        d.insert("size", Value::Number(size as f64));
    }
    Value::Dict(d)
}

/// Decodes and verifies a token that a user signed with their key: an
/// `anychain.signature` of `doc_type` whose signer is a 32-byte public key.
pub(crate) fn decode_user_signed(
    registry: &Registry,
    token: &str,
    limits: &Limits,
    doc_type: &'static str,
) -> Result<Value, AliasError> {
    let value = decode_verified_with(registry, token, limits)?;
    if !super::is_signature_of(&value, doc_type) {
        return Err(AliasError::WrongType(doc_type));
    }
    match value.get("signer") {
        Some(Value::Bytes(b)) if b.len() == 32 => Ok(value),
        _ => Err(AliasError::Malformed {
            document: doc_type,
            reason: "signer is not a 32-byte public key".into(),
        }),
    }
}

/// The signer's public key of a verified signature.
pub(crate) fn signer_of(value: &Value) -> &[u8] {
    value
        .get("signer")
        .and_then(Value::as_bytes)
        .unwrap_or_default()
}

/// Whether the signature date lies within `max_age_ms` before `now_ms` and
/// `skew_ms` after it; the date (NaN when absent) otherwise.
pub(crate) fn signed_within(
    value: &Value,
    now_ms: f64,
    max_age_ms: u64,
    skew_ms: u64,
) -> Result<(), f64> {
    let date = value
        .get("date")
        .and_then(Value::as_f64)
        .unwrap_or(f64::NAN);
    #[allow(clippy::cast_precision_loss)]
    let (max_age, skew) = (max_age_ms as f64, skew_ms as f64);
    if date >= now_ms - max_age && date <= now_ms + skew {
        Ok(())
    } else {
        Err(date)
    }
}

/// A verified signed request.
#[derive(Debug, Clone)]
pub struct SignedRequest {
    value: Value,
}

/// Why a signed request is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestAuthError {
    /// Not a valid signed `alias.bank.request`.
    #[error("{0}")]
    Invalid(#[from] AliasError),
    /// Signed too long ago or too far in the future.
    #[error("signed request is outside its validity window (signed at {date}, now {now})")]
    Expired {
        /// The signature date.
        date: f64,
        /// The clock.
        now: f64,
    },
    /// Signed for another request.
    #[error("signed request does not match this request: {0}")]
    Mismatch(String),
}

impl SignedRequest {
    /// Decodes and verifies a signed request token.
    pub fn from_token(token: &str, limits: &Limits) -> Result<Self, RequestAuthError> {
        let value = decode_user_signed(bank_registry(), token, limits, BANK_REQUEST)?;
        Ok(Self { value })
    }

    fn field(&self, name: &str) -> Option<&Value> {
        self.value.get("body").and_then(|b| b.get(name))
    }

    /// The user's public key.
    pub fn signer(&self) -> &[u8] {
        signer_of(&self.value)
    }

    /// The declared body size, if any.
    pub fn size(&self) -> Option<u64> {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        self.field("size").and_then(Value::as_f64).map(|n| n as u64)
    }

    /// The id that makes the request single-use: the fold of the signature.
    pub fn id(&self) -> Result<Fold, AliasError> {
        Ok(fold(&self.value)?)
    }

    /// Checks that the request was signed for `method path` at `origin`,
    /// within `max_age_ms` in the past and `skew_ms` in the future.
    pub fn check(
        &self,
        method: &str,
        path: &str,
        origin: &str,
        now_ms: f64,
        max_age_ms: u64,
        skew_ms: u64,
    ) -> Result<(), RequestAuthError> {
        signed_within(&self.value, now_ms, max_age_ms, skew_ms)
            .map_err(|date| RequestAuthError::Expired { date, now: now_ms })?;
        for (name, want) in [("method", method), ("path", path), ("origin", origin)] {
            let got = self.field(name).and_then(Value::as_str).unwrap_or_default();
            let same = if name == "method" {
                got.eq_ignore_ascii_case(want)
            } else {
                got == want
            };
            if !same {
                return Err(RequestAuthError::Mismatch(format!(
                    "{name} is {got:?}, expected {want:?}"
                )));
            }
        }
        Ok(())
    }

    /// The signature object.
    pub fn value(&self) -> &Value {
        &self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anychain::{sign, signing_key_from_seed, to_token};

    fn signed(body: Value, date: f64) -> String {
        to_token(&sign(&signing_key_from_seed(&[5; 32]), body, date).unwrap())
    }

    #[test]
    fn checks_window_and_match() {
        let body = request_body(
            "PUT",
            "/alias/dumps/google/t.zip",
            "https://bank.example",
            Some(10),
        );
        let token = signed(body, 1_000_000.0);
        let req = SignedRequest::from_token(&token, &Limits::default()).unwrap();
        assert_eq!(req.size(), Some(10));
        let ok = req.check(
            "put",
            "/alias/dumps/google/t.zip",
            "https://bank.example",
            1_000_500.0,
            300_000,
            300_000,
        );
        assert!(ok.is_ok());
        assert!(matches!(
            req.check(
                "PUT",
                "/alias/dumps/google/t.zip",
                "https://bank.example",
                2_000_000.0,
                300_000,
                300_000
            ),
            Err(RequestAuthError::Expired { .. })
        ));
        assert!(matches!(
            req.check(
                "PUT",
                "/alias/dumps/google/other.zip",
                "https://bank.example",
                1_000_000.0,
                300_000,
                300_000
            ),
            Err(RequestAuthError::Mismatch(_))
        ));
        assert!(matches!(
            req.check(
                "PUT",
                "/alias/dumps/google/t.zip",
                "https://evil.example",
                1_000_000.0,
                300_000,
                300_000
            ),
            Err(RequestAuthError::Mismatch(_))
        ));
    }

    #[test]
    fn validator_requires_fields() {
        let bad = Value::Dict(Dict::new().with("type", BANK_REQUEST).with("method", "GET"));
        let token = signed(bad, 1.0);
        assert!(SignedRequest::from_token(&token, &Limits::default()).is_err());
        let neg = Value::Dict(
            Dict::new()
                .with("type", BANK_REQUEST)
                .with("method", "GET")
                .with("path", "/")
                .with("origin", "o")
                .with("size", -1.0),
        );
        assert!(SignedRequest::from_token(&signed(neg, 1.0), &Limits::default()).is_err());
        // A grant token is not a signed request.
        assert!(!bank_registry().knows("alias.bank.nope"));
    }
}
