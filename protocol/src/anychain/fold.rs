//! The fold: the BLAKE2b-512 merkle hash of a value, exactly as the
//! reference library computes it, including its dict quirks (entries sorted
//! as the text `key,value` by UTF-16 code units; a keys accumulator that only
//! counts entries; each entry hashed as the list `[key, value]`).

use super::b64::b64u_encode;
use super::value::Value;
use crate::js::{check_text, join_text, number_to_string, ToPrimitiveError};
use blake2b_simd::State;
use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

/// The result of a fold: 64 bytes, except for a bare `Hash` leaf, whose raw
/// bytes are the fold whatever their length.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Fold(Vec<u8>);

impl Fold {
    /// A fold given as its raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Fold(bytes.to_vec())
    }

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
    let pass = fold_pass::<std::convert::Infallible>(value, &mut |_, _| Ok(()), &mut |_| None);
    match pass {
        Ok(folded) => Ok(Fold(folded?.as_ref().to_vec())),
        Err(never) => match never {},
    }
}

/// A 64-byte BLAKE2b digest.
pub(crate) type Digest64 = [u8; 64];

/// A fold without allocation: a digest, or the raw bytes of a `Hash` leaf.
pub(crate) enum Folded<'a> {
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

impl Folded<'_> {
    /// The owned fold.
    pub(crate) fn to_fold(&self) -> Fold {
        Fold(self.as_ref().to_vec())
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

/// The fold of a leaf (anything but a list or a dict).
fn leaf(value: &Value) -> Folded<'_> {
    Folded::Digest(match value {
        Value::Hash(raw) => return Folded::Raw(raw),
        Value::Bool(true) => h(&[b"boolean:true"]),
        Value::Bool(false) => h(&[b"boolean:false"]),
        Value::Number(n) => h(&[b"number:", number_to_string(*n).as_bytes()]),
        Value::String(s) => h(&[b"string:", s.as_bytes()]),
        Value::Bytes(b) => h(&[b"bytes:", b]),
        Value::Box(b) => h(&[b"box:", b]),
        Value::Null | Value::List(_) | Value::Dict(_) => *null_digest(),
    })
}

/// One entry of a dict during a pass: its key, its value's fold, the
/// digest of the pair `[key, value]` (when the value folds), and the text
/// the reference's sort compares (for dicts of two entries or more; empty
/// when no key of the dict has a comma, as it cannot change the order).
struct Entry<'a> {
    key: &'a str,
    value: &'a Value,
    fold: Result<Folded<'a>, FoldError>,
    pair: Option<Digest64>,
    text: Option<Result<String, ToPrimitiveError>>,
}

/// A dict met by [`fold_pass`]: the folds of its entries, already computed,
/// from which its own fold and the fold of any sub-dict of its entries
/// (a signature's signed part) are derived without folding anything again.
pub(crate) struct DictFolds<'p, 'a> {
    entries: &'p [Entry<'a>],
    own: &'p Result<Folded<'a>, FoldError>,
}

impl DictFolds<'_, '_> {
    /// The dict's own fold.
    pub(crate) fn own(&self) -> Result<&[u8], &FoldError> {
        self.own.as_ref().map(AsRef::as_ref)
    }

    /// The fold of the dict made of `keys` (in this insertion order; none
    /// may be an array index) with this dict's values, a missing key
    /// standing for null: what the reference folds when it builds
    /// `{type, date, signer, body}` from a signature.
    pub(crate) fn subset(&self, keys: &[&str]) -> Result<Digest64, FoldError> {
        let picked: Vec<(&str, Option<&Entry<'_>>)> = keys
            .iter()
            .map(|k| (*k, self.entries.iter().find(|e| e.key == *k)))
            .collect();
        let mut order: Vec<usize> = (0..picked.len()).collect();
        if picked.len() >= 2 {
            let mut texts = Vec::with_capacity(picked.len());
            for (key, entry) in &picked {
                let text = match entry {
                    // A missing key is null, whose text is empty.
                    None => Ok(String::new()),
                    Some(e) => match &e.text {
                        Some(t) => t.clone(),
                        None => join_text(e.value),
                    },
                };
                texts.push(text.map_err(|source| FoldError::Unconvertible {
                    key: (*key).to_owned(),
                    source,
                })?);
            }
            order.sort_by(|a, b| {
                let text = |i: usize| texts.get(i).map_or("", String::as_str);
                let key = |i: usize| picked.get(i).map_or("", |p| p.0);
                cmp_sort_text(key(*a), text(*a), key(*b), text(*b))
            });
        }
        let mut pairs = Vec::with_capacity(order.len());
        for i in order {
            let Some((key, entry)) = picked.get(i) else {
                continue;
            };
            pairs.push(match entry {
                None => pair_digest(key, null_digest()),
                Some(e) => match (&e.pair, &e.fold) {
                    (Some(p), _) => *p,
                    (None, Err(err)) => return Err(err.clone()),
                    (None, Ok(f)) => pair_digest(key, f.as_ref()),
                },
            });
        }
        Ok(dict_digest(&pairs))
    }
}

/// Compares the texts `key,value` of two entries as the reference's sort
/// does: by UTF-16 code units.
fn cmp_sort_text(k1: &str, t1: &str, k2: &str, t2: &str) -> std::cmp::Ordering {
    let comma = std::iter::once(u16::from(b','));
    k1.encode_utf16()
        .chain(comma.clone())
        .chain(t1.encode_utf16())
        .cmp(k2.encode_utf16().chain(comma).chain(t2.encode_utf16()))
}

/// `F([key, value])`: each entry is hashed as a two-element list.
fn pair_digest(key: &str, value_fold: &[u8]) -> Digest64 {
    pair_of(&h(&[b"string:", key.as_bytes()]), value_fold)
}

/// `F([key, value])` given the fold of the key.
fn pair_of(key_fold: &Digest64, value_fold: &[u8]) -> Digest64 {
    let mut pair = State::new();
    pair.update(b"list:");
    pair.update(key_fold);
    pair.update(value_fold);
    finish(&pair)
}

/// A dict's fold from its pair digests in sorted order; the keys
/// accumulator only counts entries.
fn dict_digest(pairs: &[Digest64]) -> Digest64 {
    let mut values = State::new();
    values.update(b"values:");
    for pair in pairs {
        values.update(pair);
    }
    h(&[b"dict:", &keys_digest(pairs.len()), &finish(&values)])
}

/// Dicts up to this many entries take their keys accumulator from a table.
const KEYS_TABLE: usize = 64;

/// The keys accumulator of a dict of `n` entries, `H("keys:" ‖ H("null:null")^n)`:
/// it only depends on `n`, so small counts come from a table built once.
fn keys_digest(n: usize) -> Digest64 {
    static TABLE: OnceLock<Vec<Digest64>> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut state = State::new();
        state.update(b"keys:");
        let mut out = Vec::with_capacity(KEYS_TABLE + 1);
        out.push(finish(&state));
        for _ in 0..KEYS_TABLE {
            state.update(null_digest());
            out.push(finish(&state));
        }
        out
    });
    if let Some(d) = table.get(n) {
        return *d;
    }
    let mut keys = State::new();
    keys.update(b"keys:");
    for _ in 0..n {
        keys.update(null_digest());
    }
    finish(&keys)
}

/// A dict's own fold, with the reference's errors in its order: a value
/// that cannot be turned into text (first in dict order, when there is a
/// sort), then a value that cannot be folded (first in sorted order).
fn own_fold<'a>(entries: &[Entry<'a>]) -> Result<Folded<'a>, FoldError> {
    let mut order: Vec<usize> = (0..entries.len()).collect();
    // `Array.prototype.sort()` converts each `[key, value]` pair to the text
    // `key,value` and compares by UTF-16 code units; with fewer than two
    // entries it compares (and converts) nothing.
    if entries.len() >= 2 {
        for e in entries {
            if let Some(Err(source)) = &e.text {
                return Err(FoldError::Unconvertible {
                    key: e.key.to_owned(),
                    source: source.clone(),
                });
            }
        }
        fn text<'e>(e: &'e Entry<'_>) -> &'e str {
            match &e.text {
                Some(Ok(t)) => t.as_str(),
                _ => "",
            }
        }
        // Stable, so tied entries keep their dict order.
        order.sort_by(|a, b| match (entries.get(*a), entries.get(*b)) {
            (Some(x), Some(y)) => cmp_sort_text(x.key, text(x), y.key, text(y)),
            _ => std::cmp::Ordering::Equal,
        });
    }
    let mut pairs = Vec::with_capacity(entries.len());
    for i in order {
        let Some(e) = entries.get(i) else { continue };
        match (&e.pair, &e.fold) {
            (Some(p), _) => pairs.push(*p),
            (None, Err(err)) => return Err(err.clone()),
            (None, Ok(f)) => pairs.push(pair_digest(e.key, f.as_ref())),
        }
    }
    Ok(Folded::Digest(dict_digest(&pairs)))
}

/// Folds `value` in one bottom-up pass, calling `visit` on every dict
/// (children first, in dict and list order) with the folds of its entries.
/// A subtree that cannot be folded does not stop the pass (the reference
/// only folds on demand): its error is in the returned fold, and in the
/// folds of the dicts above it. An error of `visit` stops the pass.
/// A dict for which `known` gives a fold is neither entered nor visited:
/// that fold stands for it.
pub(crate) fn fold_pass<'a, E>(
    value: &'a Value,
    visit: &mut dyn FnMut(&'a Value, &DictFolds<'_, 'a>) -> Result<(), E>,
    known: &mut dyn FnMut(&'a Value) -> Option<Digest64>,
) -> Result<Result<Folded<'a>, FoldError>, E> {
    pass(value, visit, known, &mut Strings::default())
}

/// Strings up to this length have their fold remembered during a pass
/// (keys and short values repeat: `type`, `scopes`, `provider`, …).
const REMEMBERED_STRING: usize = 64;

/// `H("string:" ‖ s)` of the short strings met in one pass: the fold of a
/// string value and the first half of every pair `[key, value]`.
#[derive(Default)]
struct Strings<'a>(HashMap<&'a str, Digest64>);

impl<'a> Strings<'a> {
    fn fold(&mut self, s: &'a str) -> Digest64 {
        if s.len() > REMEMBERED_STRING {
            return h(&[b"string:", s.as_bytes()]);
        }
        *self
            .0
            .entry(s)
            .or_insert_with(|| h(&[b"string:", s.as_bytes()]))
    }
}

fn pass<'a, E>(
    value: &'a Value,
    visit: &mut dyn FnMut(&'a Value, &DictFolds<'_, 'a>) -> Result<(), E>,
    known: &mut dyn FnMut(&'a Value) -> Option<Digest64>,
    strings: &mut Strings<'a>,
) -> Result<Result<Folded<'a>, FoldError>, E> {
    match value {
        Value::List(items) => {
            let mut state = State::new();
            state.update(b"list:");
            let mut failed = None;
            for item in items {
                match pass(item, visit, known, strings)? {
                    Ok(f) if failed.is_none() => {
                        state.update(f.as_ref());
                    }
                    Ok(_) => {}
                    Err(e) => {
                        failed.get_or_insert(e);
                    }
                }
            }
            Ok(match failed {
                Some(e) => Err(e),
                None => Ok(Folded::Digest(finish(&state))),
            })
        }
        Value::Dict(d) => {
            if let Some(digest) = known(value) {
                return Ok(Ok(Folded::Digest(digest)));
            }
            let sorted = d.len() >= 2;
            // Without a comma in any key, `key,` alone orders the entries
            // (distinct keys, none a prefix of another followed by a
            // comma): the values' texts cannot matter, only whether the
            // reference could build them.
            let commas = sorted && d.keys().any(|k| k.contains(','));
            let mut entries = Vec::with_capacity(d.len());
            for (key, v) in d.iter() {
                let fold = pass(v, visit, known, strings)?;
                let pair = fold
                    .as_ref()
                    .ok()
                    .map(|f| pair_of(&strings.fold(key), f.as_ref()));
                let text = match (sorted, commas) {
                    (false, _) => None,
                    (true, true) => Some(join_text(v)),
                    (true, false) => Some(check_text(v).map(|()| String::new())),
                };
                entries.push(Entry {
                    key,
                    value: v,
                    fold,
                    pair,
                    text,
                });
            }
            let own = own_fold(&entries);
            visit(
                value,
                &DictFolds {
                    entries: &entries,
                    own: &own,
                },
            )?;
            Ok(own)
        }
        Value::String(text) => Ok(Ok(Folded::Digest(strings.fold(text)))),
        other => Ok(Ok(leaf(other))),
    }
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
    fn keys_accumulator_table_matches_the_definition() {
        for n in [0, 1, 2, 7, KEYS_TABLE, KEYS_TABLE + 1, KEYS_TABLE + 9] {
            let mut keys = State::new();
            keys.update(b"keys:");
            for _ in 0..n {
                keys.update(null_digest());
            }
            assert_eq!(keys_digest(n), finish(&keys), "{n} entries");
        }
    }

    #[test]
    fn to_string_key_fails_only_when_sorted() {
        let v = from_json_str(r#"{"a":{"toString":"x"},"b":1}"#, &Limits::default()).unwrap();
        assert!(matches!(fold(&v), Err(FoldError::Unconvertible { key, .. }) if key == "a"));
        let single = from_json_str(r#"{"a":{"toString":"x"}}"#, &Limits::default()).unwrap();
        assert!(fold(&single).is_ok());
    }
}
