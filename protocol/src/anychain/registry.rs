//! The validator registry: verifying a value walks the whole tree, children
//! before parents, and runs the validator of every typed dict (a dict with a
//! string `type`); a typed dict without a validator fails the whole value.

use super::sign::{verify_revoke_value, verify_signature_value, REVOKE_TYPE, SIGNATURE_TYPE};
use super::value::Value;
use std::collections::HashMap;

/// A validator: checks one typed dict (passed as the [`Value::Dict`] that
/// holds it), failing with the reference's message.
pub type Validator = fn(&Value) -> Result<(), String>;

fn signature_validator(v: &Value) -> Result<(), String> {
    v.as_dict().map_or(Ok(()), verify_signature_value)
}

fn revoke_validator(v: &Value) -> Result<(), String> {
    v.as_dict().map_or(Ok(()), verify_revoke_value)
}

/// Why a value does not verify. The texts are the reference's, exactly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A typed dict whose type has no validator.
    #[error("potentially invalid chain: no defined validator for type '{0}'")]
    UnknownType(String),
    /// A validator failed with this message.
    #[error("invalid chain: {0}")]
    Invalid(String),
}

/// Registering a type twice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("model '{0}' already registered")]
pub struct RegistryError(pub String);

/// A set of validators by type name.
#[derive(Debug, Clone)]
pub struct Registry {
    validators: HashMap<String, Validator>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::anychain()
    }
}

impl Registry {
    /// The library's built-in validators: `anychain.signature` and `anychain.revoke`.
    pub fn anychain() -> Self {
        let mut validators: HashMap<String, Validator> = HashMap::new();
        validators.insert(SIGNATURE_TYPE.to_owned(), signature_validator);
        validators.insert(REVOKE_TYPE.to_owned(), revoke_validator);
        Self { validators }
    }

    /// Adds a validator; a type can be registered once.
    pub fn register(&mut self, type_name: &str, validator: Validator) -> Result<(), RegistryError> {
        if self.validators.contains_key(type_name) {
            return Err(RegistryError(type_name.to_owned()));
        }
        self.validators.insert(type_name.to_owned(), validator);
        Ok(())
    }

    /// Whether a type has a validator.
    pub fn knows(&self, type_name: &str) -> bool {
        self.validators.contains_key(type_name)
    }

    /// Verifies every typed dict of the tree, innermost first; the first
    /// failure stops the walk.
    pub fn verify(&self, value: &Value) -> Result<(), VerifyError> {
        match value {
            Value::List(items) => items.iter().try_for_each(|v| self.verify(v)),
            Value::Dict(d) => {
                d.iter().try_for_each(|(_, v)| self.verify(v))?;
                match d.get("type") {
                    Some(Value::String(t)) => {
                        let validator = self
                            .validators
                            .get(t)
                            .ok_or_else(|| VerifyError::UnknownType(t.clone()))?;
                        validator(value).map_err(VerifyError::Invalid)
                    }
                    _ => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anychain::{sign, signing_key_from_seed, Dict};

    #[test]
    fn nested_unknown_type_fails() {
        let r = Registry::anychain();
        let v = Value::List(vec![Value::Dict(Dict::new().with("type", "foo"))]);
        assert_eq!(
            r.verify(&v).unwrap_err().to_string(),
            "potentially invalid chain: no defined validator for type 'foo'"
        );
        let untyped = Value::Dict(Dict::new().with("type", 5.0));
        assert!(r.verify(&untyped).is_ok());
    }

    #[test]
    fn register_twice_fails() {
        let mut r = Registry::anychain();
        let err = r.register(SIGNATURE_TYPE, |_| Ok(())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "model 'anychain.signature' already registered"
        );
    }

    #[test]
    fn children_are_checked_before_parent() {
        let mut r = Registry::anychain();
        r.register("outer", |_| Err("outer fails".to_owned()))
            .unwrap();
        r.register("inner", |_| Err("inner fails".to_owned()))
            .unwrap();
        let key = signing_key_from_seed(&[3; 32]);
        let body = Value::Dict(
            Dict::new()
                .with("type", "outer")
                .with("x", Value::Dict(Dict::new().with("type", "inner"))),
        );
        let v = sign(&key, body, 0.0).unwrap();
        assert_eq!(
            r.verify(&v).unwrap_err(),
            VerifyError::Invalid("inner fails".into())
        );
    }
}
