//! The two small signed documents: the user's `alias.bindAuthz` (their key
//! bound to a data bank) and the library's `anychain.revoke` (a signature
//! withdrawn).

use super::documents::{body_of, check_signed, decode_verified, malformed, signer_of, AliasError};
use super::validators::BIND_AUTHZ;
use crate::anychain::{fold, Fold, Limits, Value, REVOKE_TYPE};

/// A verified signed `alias.bindAuthz`: the user binds their key to a data bank.
#[derive(Debug, Clone, PartialEq)]
pub struct BindAuthz {
    value: Value,
}

impl BindAuthz {
    /// Decodes and fully verifies a bind token.
    pub fn from_token(token: &str, limits: &Limits) -> Result<Self, AliasError> {
        Self::from_verified(decode_verified(token, limits)?)
    }

    /// Wraps a verified value.
    pub fn from_verified(value: Value) -> Result<Self, AliasError> {
        check_signed(&value, BIND_AUTHZ)?;
        Ok(Self { value })
    }

    /// The signature object.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The user's public key.
    pub fn signer(&self) -> &[u8] {
        signer_of(&self.value)
    }

    /// The data bank origin the user bound to, when it is a string.
    pub fn origin(&self) -> Option<&str> {
        body_of(&self.value).get("origin").and_then(Value::as_str)
    }
}

/// A verified `anychain.revoke`: the signer withdraws one of its signatures.
#[derive(Debug, Clone, PartialEq)]
pub struct Revocation {
    value: Value,
}

impl Revocation {
    /// Decodes and fully verifies a revocation token.
    pub fn from_token(token: &str, limits: &Limits) -> Result<Self, AliasError> {
        Self::from_verified(decode_verified(token, limits)?)
    }

    /// Wraps a verified value.
    pub fn from_verified(value: Value) -> Result<Self, AliasError> {
        if value.type_name() != Some(REVOKE_TYPE) {
            return Err(AliasError::WrongType(REVOKE_TYPE));
        }
        match value.get("signature").and_then(|s| s.get("signer")) {
            Some(Value::Bytes(b)) if b.len() == 32 => Ok(Self { value }),
            _ => Err(malformed(
                REVOKE_TYPE,
                "signature.signer is not a 32-byte public key",
            )),
        }
    }

    /// The revocation object.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The key that revoked (the signer of the revoked signature).
    pub fn signer(&self) -> &[u8] {
        self.value
            .get("signature")
            .and_then(|s| s.get("signer"))
            .and_then(Value::as_bytes)
            .unwrap_or_default()
    }

    /// The hash of the revoked signature object: equal to the grant hash of
    /// the grant it revokes (its date and body stand in as hashes).
    pub fn revoked_hash(&self) -> Result<Fold, AliasError> {
        Ok(fold(self.value.get("signature").unwrap_or(&Value::Null))?)
    }
}
