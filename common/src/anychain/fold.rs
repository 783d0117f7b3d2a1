//! The fold: the BLAKE2b-512 merkle hash of a value, exactly as the
//! reference library computes it, including its dict quirks (entries sorted
//! as the text `key,value` by UTF-16 code units; a keys accumulator that only
//! counts entries; each entry hashed as the list `[key, value]`).

use super::b64::b64u_encode;
use super::value::{Dict, Value};
use crate::js::{join_text, number_to_string, ToPrimitiveError};
use blake2::{Blake2b512, Digest};
use std::fmt;

/// The result of a fold: 64 bytes, except for a bare `Hash` leaf, whose raw
/// bytes are the fold whatever their length.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Fold(Vec<u8>);

impl Fold {
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// URL-safe unpadded base64, the form used in ids and URLs (86 characters
    /// for a 64-byte fold).
    pub fn to_b64(&self) -> String {
        b64u_encode(&self.0)
    }

    /// The fold as a `Hash` value that can stand in for the folded subtree.
    pub fn into_value(self) -> Value {
        Value::Hash(self.0)
    }
}

impl fmt::Debug for Fold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fold({})", self.to_b64())
    }
}

impl fmt::Display for Fold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_b64())
    }
}

/// A value the reference cannot fold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FoldError {
    /// A dict entry's value holds a dict with an own `toString` key: the
    /// reference's sort throws on it (`Cannot convert object to primitive value`).
    #[error("unfoldable value under key {key:?}: {source}")]
    Unconvertible {
        /// The key of the entry whose value cannot be turned into text.
        key: String,
        /// The JavaScript error.
        source: ToPrimitiveError,
    },
}

/// Folds a value.
pub fn fold(value: &Value) -> Result<Fold, FoldError> {
    Ok(Fold(fold_raw(value)?))
}

fn h(parts: &[&[u8]]) -> Vec<u8> {
    let mut hasher = Blake2b512::new();
    for p in parts {
        hasher.update(p);
    }
    hasher.finalize().to_vec()
}

pub(crate) fn fold_raw(value: &Value) -> Result<Vec<u8>, FoldError> {
    Ok(match value {
        Value::Null => h(&[b"null:null"]),
        Value::Bool(true) => h(&[b"boolean:true"]),
        Value::Bool(false) => h(&[b"boolean:false"]),
        Value::Number(n) => h(&[b"number:", number_to_string(*n).as_bytes()]),
        Value::String(s) => h(&[b"string:", s.as_bytes()]),
        Value::Bytes(b) => h(&[b"bytes:", b]),
        Value::Box(b) => h(&[b"box:", b]),
        Value::Hash(b) => b.clone(),
        Value::List(items) => {
            let mut hasher = Blake2b512::new();
            hasher.update(b"list:");
            for item in items {
                hasher.update(fold_raw(item)?);
            }
            hasher.finalize().to_vec()
        }
        Value::Dict(d) => fold_dict(d)?,
    })
}

fn fold_dict(d: &Dict) -> Result<Vec<u8>, FoldError> {
    let mut entries: Vec<(&str, &Value)> = d.iter().collect();
    // `Array.prototype.sort()` converts each `[key, value]` pair to the text
    // `key,value` and compares by UTF-16 code units; with fewer than two
    // entries it compares (and converts) nothing.
    if entries.len() >= 2 {
        let mut keyed = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            let text = join_text(v).map_err(|source| FoldError::Unconvertible {
                key: k.to_owned(),
                source,
            })?;
            let mut sort_key: Vec<u16> = k.encode_utf16().collect();
            sort_key.push(u16::from(b','));
            sort_key.extend(text.encode_utf16());
            keyed.push((sort_key, k, v));
        }
        // Stable, so tied entries keep their dict order.
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        entries = keyed.into_iter().map(|(_, k, v)| (k, v)).collect();
    }

    let null = h(&[b"null:null"]);
    let mut keys = Blake2b512::new();
    keys.update(b"keys:");
    let mut values = Blake2b512::new();
    values.update(b"values:");
    for (k, v) in entries {
        keys.update(&null);
        let pair = h(&[b"list:", &h(&[b"string:", k.as_bytes()]), &fold_raw(v)?]);
        values.update(pair);
    }
    Ok(h(&[b"dict:", &keys.finalize(), &values.finalize()]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anychain::{from_json_str, Limits};

    fn fold_json(text: &str) -> String {
        let v = from_json_str(text, &Limits::default()).unwrap();
        fold(&v).unwrap().to_b64()
    }

    #[test]
    fn protocol_examples() {
        assert_eq!(fold_json("null"), "9VmrwfS8d5AeIZrVzKBbc5PLuNE3jjQovsvlLuagU0Y55VFL1tas2EwlwdyTzMrHM6PKeNFPqDxLHYqQTr2slg");
        assert_eq!(fold_json("{}"), "KDZsCnFKaaVPD-bxUns9yXCWlMA-mjA7FRZ_KRJGESMwjEyt4nrJnBqbNFLrlErQES2s3miUF4v7TDsGhZxOaQ");
        assert_eq!(fold_json(r#"{"a":1}"#), "roqppc-4XVwPNb5zH3dRD68RB4JprXyB8v2kPbxVWLJGwgzEu3MESXiw__6zDasGFK0gCtN1wQMwT5v3DuQoig");
        assert_eq!(fold_json("1.0"), fold_json("1"));
        assert_eq!(
            fold_json(r#"{"b":1.5,"a":[1,null]}"#),
            fold_json(r#"{"a":[1,null],"b":1.5}"#)
        );
        assert_eq!(fold_json(r#"{"k":{"__hash":"AQID"}}"#), "5x9jQva7-NSZ1KV93I4TulDYUpTLCtcVSyly7AoQasJ4tOvKClgA1wYaZwTdgrKXwSDN6lKh4JUzrUeBlV489g");
    }

    #[test]
    fn hash_leaf_is_raw_and_substitutes_its_subtree() {
        assert_eq!(
            fold(&Value::Hash(vec![1, 2, 3])).unwrap().as_bytes(),
            [1, 2, 3]
        );
        let v = from_json_str(r#"["x",{"a":1}]"#, &Limits::default()).unwrap();
        let sub = fold(&from_json_str(r#"{"a":1}"#, &Limits::default()).unwrap()).unwrap();
        let replaced = Value::List(vec![Value::from("x"), sub.into_value()]);
        assert_eq!(fold(&v).unwrap(), fold(&replaced).unwrap());
    }

    #[test]
    fn to_string_key_fails_only_when_sorted() {
        let v = from_json_str(r#"{"a":{"toString":"x"},"b":1}"#, &Limits::default()).unwrap();
        assert!(matches!(fold(&v), Err(FoldError::Unconvertible { key, .. }) if key == "a"));
        let single = from_json_str(r#"{"a":{"toString":"x"}}"#, &Limits::default()).unwrap();
        assert!(fold(&single).is_ok());
    }
}
