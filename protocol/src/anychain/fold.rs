//! The fold: the BLAKE2b-512 merkle hash of a value, exactly as the
//! reference library computes it, including its dict quirks (entries sorted
//! as the text `key,value` by UTF-16 code units; a keys accumulator that only
//! counts entries; each entry hashed as the list `[key, value]`).

use super::b64::b64u_encode;
use super::value::{Dict, Value};
use crate::js::{join_text, number_to_string, ToPrimitiveError};
use blake2b_simd::State;
use std::fmt;
use std::sync::OnceLock;

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
    Ok(Fold(folded(value)?.as_ref().to_vec()))
}

type Digest64 = [u8; 64];

/// A fold without allocation: a digest, or the raw bytes of a `Hash` leaf.
enum Folded<'a> {
    Digest(Digest64),
    Raw(&'a [u8]),
}

impl AsRef<[u8]> for Folded<'_> {
    fn as_ref(&self) -> &[u8] {
        match self {
            Folded::Digest(d) => d,
            Folded::Raw(r) => r,
        }
    }
}

/// Unkeyed BLAKE2b with a 64-byte digest (the state's default).
fn finish(state: &State) -> Digest64 {
    let mut out = [0u8; 64];
    out.copy_from_slice(state.finalize().as_bytes());
    out
}

fn h(parts: &[&[u8]]) -> Digest64 {
    let mut state = State::new();
    for p in parts {
        state.update(p);
    }
    finish(&state)
}

/// `H("null:null")`: the fold of null, and of the reference's never-set key.
fn null_digest() -> &'static Digest64 {
    static NULL: OnceLock<Digest64> = OnceLock::new();
    NULL.get_or_init(|| h(&[b"null:null"]))
}

fn folded(value: &Value) -> Result<Folded<'_>, FoldError> {
    Ok(Folded::Digest(match value {
        Value::Hash(raw) => return Ok(Folded::Raw(raw)),
        Value::Null => *null_digest(),
        Value::Bool(true) => h(&[b"boolean:true"]),
        Value::Bool(false) => h(&[b"boolean:false"]),
        Value::Number(n) => h(&[b"number:", number_to_string(*n).as_bytes()]),
        Value::String(s) => h(&[b"string:", s.as_bytes()]),
        Value::Bytes(b) => h(&[b"bytes:", b]),
        Value::Box(b) => h(&[b"box:", b]),
        Value::List(items) => {
            let mut state = State::new();
            state.update(b"list:");
            for item in items {
                state.update(folded(item)?.as_ref());
            }
            finish(&state)
        }
        Value::Dict(d) => fold_dict(d)?,
    }))
}

fn fold_dict(d: &Dict) -> Result<Digest64, FoldError> {
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

    let mut keys = State::new();
    keys.update(b"keys:");
    let mut values = State::new();
    values.update(b"values:");
    for (k, v) in entries {
        keys.update(null_digest());
        let mut pair = State::new();
        pair.update(b"list:");
        pair.update(&h(&[b"string:", k.as_bytes()]));
        pair.update(folded(v)?.as_ref());
        values.update(&finish(&pair));
    }
    Ok(h(&[b"dict:", &finish(&keys), &finish(&values)]))
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
