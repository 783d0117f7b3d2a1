//! A bounded memory of sub-documents that verified, with the folds of
//! every dict in them, so that a document embedded unchanged in many
//! others (a contract in the grant of every user who accepts it) is folded
//! and verified once per process rather than once per request.
//!
//! An entry is the exact subtree (compared value for value, numbers by
//! their bits, never by a hash alone) and the folds of its dicts in the
//! order the verification pass meets them. A subtree can only hit an entry
//! when it is that very value, whose validators (pure functions of the
//! value) and folds would give the same results anyway. Only subtrees that
//! passed every validator and folded are stored; the least recently used
//! entry goes first, and a subtree larger than [`MAX_ENTRY_BYTES`] is not
//! stored, so the memory held is bounded by the capacity.

use std::hash::{Hash, Hasher};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, PoisonError};

use lru::LruCache;

use super::fold::Digest64;
use super::value::Value;

/// The largest subtree remembered: strings and bytes plus 64 bytes per
/// node and per fold.
pub const MAX_ENTRY_BYTES: usize = 64 << 10;

struct Entry {
    value: Value,
    folds: Arc<[Digest64]>,
}

/// Sub-documents that verified, at most `capacity` of them.
pub struct DocumentMemo {
    entries: Mutex<LruCache<u64, Entry>>,
}

impl std::fmt::Debug for DocumentMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocumentMemo")
            .field("len", &self.len())
            .finish()
    }
}

fn hash_into(v: &Value, h: &mut impl Hasher) {
    match v {
        Value::Null => h.write_u8(0),
        Value::Bool(b) => {
            h.write_u8(1);
            h.write_u8(u8::from(*b));
        }
        Value::Number(n) => {
            h.write_u8(2);
            h.write_u64(n.to_bits());
        }
        Value::String(s) => {
            h.write_u8(3);
            s.hash(h);
        }
        Value::List(items) => {
            h.write_u8(4);
            h.write_usize(items.len());
            items.iter().for_each(|i| hash_into(i, h));
        }
        Value::Dict(d) => {
            h.write_u8(5);
            h.write_usize(d.len());
            for (k, v) in d.iter() {
                k.hash(h);
                hash_into(v, h);
            }
        }
        Value::Bytes(b) | Value::Hash(b) | Value::Box(b) => {
            h.write_u8(match v {
                Value::Bytes(_) => 6,
                Value::Hash(_) => 7,
                _ => 8,
            });
            b.hash(h);
        }
    }
}

/// The same value, numbers compared by their bits (`-0` is not `0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.to_bits() == y.to_bits(),
        (Value::List(x), Value::List(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (Value::Dict(x), Value::Dict(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y.iter())
                    .all(|((kx, vx), (ky, vy))| kx == ky && same(vx, vy))
        }
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Bytes(x), Value::Bytes(y))
        | (Value::Hash(x), Value::Hash(y))
        | (Value::Box(x), Value::Box(y)) => x == y,
        _ => false,
    }
}

/// The bytes a subtree holds, as [`MAX_ENTRY_BYTES`] counts them, stopping
/// past `limit`.
fn weight(v: &Value, limit: usize) -> usize {
    let mut total = 64;
    match v {
        Value::String(s) => total += s.len(),
        Value::Bytes(b) | Value::Hash(b) | Value::Box(b) => total += b.len(),
        Value::List(items) => {
            for item in items {
                total += weight(item, limit);
                if total > limit {
                    break;
                }
            }
        }
        Value::Dict(d) => {
            for (k, item) in d.iter() {
                total += 64 + k.len() + weight(item, limit);
                if total > limit {
                    break;
                }
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
    total
}

fn key_of(v: &Value) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    hash_into(v, &mut h);
    h.finish()
}

impl DocumentMemo {
    /// An empty memo holding at most `capacity` sub-documents.
    pub fn new(capacity: NonZeroUsize) -> Self {
        Self {
            entries: Mutex::new(LruCache::new(capacity)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<u64, Entry>> {
        // The map stays consistent whatever a panicking holder did.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sub-documents held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The folds of the dicts of `value` in pass order (its own last), when
    /// this exact value verified before.
    pub(crate) fn lookup(&self, value: &Value) -> Option<Arc<[Digest64]>> {
        let key = key_of(value);
        let mut entries = self.lock();
        let entry = entries.get(&key)?;
        same(&entry.value, value).then(|| entry.folds.clone())
    }

    /// Remembers that `value` verified, with the folds of its dicts in pass
    /// order; a value over [`MAX_ENTRY_BYTES`] is not remembered.
    pub(crate) fn remember(&self, value: &Value, folds: &[Digest64]) {
        if weight(value, MAX_ENTRY_BYTES) + folds.len() * 64 > MAX_ENTRY_BYTES {
            return;
        }
        let entry = Entry {
            value: value.clone(),
            folds: folds.into(),
        };
        self.lock().put(key_of(value), entry);
    }
}

/// The dicts of `value` in the order the verification pass meets them:
/// children first, in dict and list order.
pub(crate) fn dicts_in_pass_order<'a>(value: &'a Value, out: &mut Vec<&'a Value>) {
    match value {
        Value::List(items) => items.iter().for_each(|i| dicts_in_pass_order(i, out)),
        Value::Dict(d) => {
            d.iter().for_each(|(_, v)| dicts_in_pass_order(v, out));
            out.push(value);
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anychain::{from_json_str, Limits};

    fn v(text: &str) -> Value {
        from_json_str(text, &Limits::default()).unwrap()
    }

    #[test]
    fn exact_values_only() {
        let memo = DocumentMemo::new(NonZeroUsize::new(2).unwrap());
        let doc = v(r#"{"a":[1,{"b":"x"}],"c":0}"#);
        memo.remember(&doc, &[[1; 64], [2; 64]]);
        assert_eq!(memo.lookup(&doc).unwrap().len(), 2);
        for other in [
            r#"{"a":[1,{"b":"y"}],"c":0}"#,
            r#"{"a":[1,{"b":"x"}],"c":-0}"#,
            r#"{"c":0,"a":[1,{"b":"x"}]}"#,
            r#"{"a":[1,{"b":"x"}],"c":0,"d":null}"#,
        ] {
            assert!(memo.lookup(&v(other)).is_none(), "{other}");
        }
    }

    #[test]
    fn bounded_in_entries_and_size() {
        let memo = DocumentMemo::new(NonZeroUsize::new(3).unwrap());
        for i in 0..10 {
            memo.remember(&v(&format!(r#"{{"n":{i}}}"#)), &[[0; 64]]);
            assert!(memo.len() <= 3);
        }
        let big = Value::String("x".repeat(MAX_ENTRY_BYTES));
        memo.remember(&big, &[]);
        assert!(memo.lookup(&big).is_none());
    }

    #[test]
    fn pass_order_is_children_first() {
        let doc = v(r#"{"a":{"b":{}},"c":[{"d":1},{}]}"#);
        let mut out = Vec::new();
        dicts_in_pass_order(&doc, &mut out);
        let texts: Vec<String> = out.iter().map(|d| crate::anychain::to_token(d)).collect();
        assert_eq!(
            texts,
            [
                "{}",
                r#"{"b":{}}"#,
                r#"{"d":1}"#,
                "{}",
                r#"{"a":{"b":{}},"c":[{"d":1},{}]}"#
            ]
        );
    }
}
