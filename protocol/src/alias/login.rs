//! Login challenges: how a user proves to the data bank's web pages that
//! the browser holds their key. The data bank issues a random challenge;
//! the browser signs an `alias.bank.login` document naming it and the data
//! bank's origin; the gateway checks the signature, the date window, the
//! origin, that the challenge is the one it issued (and takes it, so it is
//! used once) and that the signer is the account's key.

use super::documents::AliasError;
use super::request::{bank_registry, decode_user_signed, signed_within, signer_of};
use crate::anychain::{Dict, Registry, Value};
use crate::js::has_prop;
use std::sync::OnceLock;

/// The document type of a login answer.
pub const BANK_LOGIN: &str = "alias.bank.login";

/// The `alias.bank.login` validator: `challenge` a non-empty byte string,
/// `origin` a string (as web/src/alias.js `validateBankLogin`).
pub fn validate_bank_login(o: &Value) -> Result<(), String> {
    if !has_prop(Some(o), "challenge")? {
        return Err("missing field: 'challenge'".to_owned());
    }
    match o.get("challenge") {
        Some(Value::Bytes(b)) if !b.is_empty() => {}
        _ => return Err("field 'challenge' must be a non-empty byte string".to_owned()),
    }
    if !has_prop(Some(o), "origin")? {
        return Err("missing field: 'origin'".to_owned());
    }
    if o.get("origin").and_then(Value::as_str).is_none() {
        return Err("field 'origin' must be a string".to_owned());
    }
    Ok(())
}

/// The registry of the web side: the bank's types plus `alias.bank.login`.
pub fn login_registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut registry = bank_registry().clone();
        let _ = registry.register(BANK_LOGIN, validate_bank_login);
        registry
    })
}

/// Builds the body of a login answer.
pub fn login_body(challenge: &[u8], origin: &str) -> Value {
    Value::Dict(
        Dict::new()
            .with("type", BANK_LOGIN)
            .with("challenge", Value::Bytes(challenge.to_vec()))
            .with("origin", origin),
    )
}

/// Why a login answer is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LoginError {
    /// Not a valid signed `alias.bank.login`.
    #[error("{0}")]
    Invalid(#[from] AliasError),
    /// Signed too long ago or too far in the future.
    #[error("login answer is outside its validity window")]
    Expired,
    /// For another data bank or another challenge.
    #[error("login answer does not match: {0}")]
    Mismatch(&'static str),
}

/// A verified signed login answer.
#[derive(Debug, Clone)]
pub struct SignedLogin {
    value: Value,
}

impl SignedLogin {
    /// Decodes and verifies a login answer token.
    pub fn from_token(token: &str, limits: &crate::anychain::Limits) -> Result<Self, LoginError> {
        let value = decode_user_signed(login_registry(), token, limits, BANK_LOGIN)?;
        Ok(Self { value })
    }

    /// The signer's public key.
    pub fn signer(&self) -> &[u8] {
        signer_of(&self.value)
    }

    /// The challenge the answer names.
    pub fn challenge(&self) -> &[u8] {
        self.value
            .get("body")
            .and_then(|b| b.get("challenge"))
            .and_then(Value::as_bytes)
            .unwrap_or_default()
    }

    /// Checks the origin and the date window (`max_age_ms` in the past,
    /// `skew_ms` in the future). The challenge itself is checked by the
    /// caller, which must also take it from its store (single use).
    pub fn check(
        &self,
        origin: &str,
        now_ms: f64,
        max_age_ms: u64,
        skew_ms: u64,
    ) -> Result<(), LoginError> {
        signed_within(&self.value, now_ms, max_age_ms, skew_ms).map_err(|_| LoginError::Expired)?;
        let got = self
            .value
            .get("body")
            .and_then(|b| b.get("origin"))
            .and_then(Value::as_str);
        if got != Some(origin) {
            return Err(LoginError::Mismatch("origin"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alias::request_body;
    use crate::anychain::{sign, signing_key_from_seed, to_token, Limits};

    fn signed(body: Value, date: f64) -> String {
        to_token(&sign(&signing_key_from_seed(&[7; 32]), body, date).unwrap())
    }

    #[test]
    fn accepts_and_checks() {
        let token = signed(login_body(&[1, 2, 3], "https://bank.example"), 1_000.0);
        let login = SignedLogin::from_token(&token, &Limits::default()).unwrap();
        assert_eq!(login.challenge(), &[1, 2, 3]);
        assert_eq!(
            login.signer(),
            signing_key_from_seed(&[7; 32]).verifying_key().as_bytes()
        );
        assert!(login
            .check("https://bank.example", 1_500.0, 60_000, 60_000)
            .is_ok());
        assert_eq!(
            login.check("https://evil.example", 1_500.0, 60_000, 60_000),
            Err(LoginError::Mismatch("origin"))
        );
        assert_eq!(
            login.check("https://bank.example", 1_000_000.0, 60_000, 60_000),
            Err(LoginError::Expired)
        );
    }

    /// A login answer signed by web/src/alias.js `signLogin` (seed 32×7,
    /// challenge [1,2,3,4], date 1700000000000): the two implementations agree.
    const JS_TOKEN: &str = r#"{"type":"anychain.signature","date":1700000000000,"signer":{"__bytes":"6kpsY-KcUgq-9VB7Ey7F-ZVHdq6-vnuSQh7qaRRG0iw"},"body":{"type":"alias.bank.login","challenge":{"__bytes":"AQIDBA"},"origin":"https://bank.example"},"signature":{"__bytes":"3T92Qbn2RPgpRwls0XALGlQZ0fndwwGor1aKiykMw-JWLj8Nzcip2a1iL9KhNkHU79I4KgOTt9MEWaaDr6WaAQ"}}"#;

    #[test]
    fn agrees_with_the_javascript_module() {
        let login = SignedLogin::from_token(JS_TOKEN, &Limits::default()).unwrap();
        assert_eq!(login.challenge(), &[1, 2, 3, 4]);
        assert!(login
            .check("https://bank.example", 1_700_000_001_000.0, 60_000, 60_000)
            .is_ok());
        let ours = signed(
            login_body(&[1, 2, 3, 4], "https://bank.example"),
            1_700_000_000_000.0,
        );
        assert_eq!(ours, JS_TOKEN, "same token, byte for byte");
    }

    #[test]
    fn refuses_other_documents() {
        let empty = Value::Dict(
            Dict::new()
                .with("type", BANK_LOGIN)
                .with("challenge", Value::Bytes(vec![]))
                .with("origin", "o"),
        );
        assert!(SignedLogin::from_token(&signed(empty, 1.0), &Limits::default()).is_err());
        let text = Value::Dict(
            Dict::new()
                .with("type", BANK_LOGIN)
                .with("challenge", "AQID")
                .with("origin", "o"),
        );
        assert!(SignedLogin::from_token(&signed(text, 1.0), &Limits::default()).is_err());
        let request = signed(request_body("GET", "/", "o", None), 1.0);
        assert!(matches!(
            SignedLogin::from_token(&request, &Limits::default()),
            Err(LoginError::Invalid(AliasError::WrongType(_)))
        ));
        // A tampered signature fails.
        let token = signed(login_body(&[9; 32], "o"), 1.0).replace("\"date\":1", "\"date\":2");
        assert!(SignedLogin::from_token(&token, &Limits::default()).is_err());
    }
}
