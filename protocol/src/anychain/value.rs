//! The anychain value model: JSON values plus byte strings, hashes and
//! sealed boxes, with dicts kept in JavaScript property order.

/// One anychain value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// JSON `null` (also what JavaScript `undefined` folds as).
    Null,
    /// A boolean.
    Bool(bool),
    /// A number: always an IEEE-754 double, as in JavaScript.
    Number(f64),
    /// A string.
    String(String),
    /// A list.
    List(Vec<Value>),
    /// A dict, in JavaScript property order.
    Dict(Dict),
    /// Raw bytes (`{"__bytes": …}`): keys, signatures, seeds.
    Bytes(Vec<u8>),
    /// A precomputed fold standing in for a subtree (`{"__hash": …}`).
    Hash(Vec<u8>),
    /// A sealed box (`{"__box": …}`).
    Box(Vec<u8>),
}

impl Value {
    /// The dict inside, if this is a dict.
    pub fn as_dict(&self) -> Option<&Dict> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// The string inside, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The items, if this is a list.
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// The bytes, if this is a byte string.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The number, if this is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// The boolean, if this is a boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// Reads `self[key]` when `self` is a dict.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_dict().and_then(|d| d.get(key))
    }

    /// The `type` field of a dict when it is a string (what makes it "typed").
    pub fn type_name(&self) -> Option<&str> {
        self.get("type").and_then(Value::as_str)
    }

    /// Nesting depth: 0 for leaves, 1 + the deepest child for lists and dicts.
    pub fn depth(&self) -> usize {
        match self {
            Value::List(items) => 1 + items.iter().map(Value::depth).max().unwrap_or(0),
            Value::Dict(d) => 1 + d.iter().map(|(_, v)| v.depth()).max().unwrap_or(0),
            _ => 0,
        }
    }
}

impl Value {
    /// Converts plain JSON data (dump records, not anychain JSON) into a
    /// value: tag-like objects stay dicts, numbers become doubles.
    pub fn from_plain_json(json: &serde_json::Value) -> Value {
        match json {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => Value::Number(n.as_f64().unwrap_or(f64::NAN)),
            serde_json::Value::String(s) => Value::String(s.clone()),
            serde_json::Value::Array(items) => {
                Value::List(items.iter().map(Value::from_plain_json).collect())
            }
            serde_json::Value::Object(map) => {
                let mut d = Dict::new();
                for (k, v) in map {
                    d.insert(k.clone(), Value::from_plain_json(v));
                }
                Value::Dict(d)
            }
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

impl From<f64> for Value {
    fn from(n: f64) -> Self {
        Value::Number(n)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<Dict> for Value {
    fn from(d: Dict) -> Self {
        Value::Dict(d)
    }
}

impl From<Vec<Value>> for Value {
    fn from(l: Vec<Value>) -> Self {
        Value::List(l)
    }
}

/// A dict whose entries are kept in JavaScript property order: keys that are
/// array indices (`"0"`, `"10"`, not `"01"`) first in ascending numeric
/// order, then every other key in insertion order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dict {
    entries: Vec<(String, Value)>,
}

/// The array index a key stands for in JavaScript, if it is one.
pub(crate) fn array_index(key: &str) -> Option<u32> {
    let bytes = key.as_bytes();
    if bytes.is_empty() || bytes.len() > 10 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if bytes.len() > 1 && bytes.first() == Some(&b'0') {
        return None;
    }
    let n: u64 = key.parse().ok()?;
    // Array indices stop at 2^32 - 2.
    if n <= 4_294_967_294 {
        u32::try_from(n).ok()
    } else {
        None
    }
}

impl Dict {
    /// An empty dict.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the dict has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _)| k == key)
    }

    /// Entries in JavaScript property order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Keys in JavaScript property order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_str())
    }

    /// Sets `key` to `value`, as JavaScript assignment does: an existing key
    /// keeps its position, a new one goes where JavaScript would put it.
    /// Returns the previous value.
    pub fn insert(&mut self, key: impl Into<String>, value: Value) -> Option<Value> {
        let key = key.into();
        if let Some(slot) = self.entries.iter_mut().find(|(k, _)| *k == key) {
            return Some(std::mem::replace(&mut slot.1, value));
        }
        let pos = match array_index(&key) {
            Some(idx) => self
                .entries
                .iter()
                .position(|(k, _)| array_index(k).is_none_or(|other| other > idx))
                .unwrap_or(self.entries.len()),
            None => self.entries.len(),
        };
        self.entries.insert(pos, (key, value));
        None
    }

    /// Builder form of [`Dict::insert`].
    pub fn with(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.insert(key, value.into());
        self
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let pos = self.entries.iter().position(|(k, _)| k == key)?;
        Some(self.entries.remove(pos).1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn javascript_property_order() {
        let d = Dict::new()
            .with("b", 1.0)
            .with("10", 2.0)
            .with("a", 3.0)
            .with("9", 4.0)
            .with("01", 5.0)
            .with("4294967295", 6.0);
        let keys: Vec<_> = d.keys().collect();
        assert_eq!(keys, ["9", "10", "b", "a", "01", "4294967295"]);
    }

    #[test]
    fn insert_keeps_position_of_existing_key() {
        let mut d = Dict::new().with("x", 1.0).with("y", 2.0);
        assert_eq!(d.insert("x", Value::Null), Some(Value::Number(1.0)));
        assert_eq!(d.keys().collect::<Vec<_>>(), ["x", "y"]);
    }

    #[test]
    fn depth_counts_containers() {
        assert_eq!(Value::Null.depth(), 0);
        let v = Value::List(vec![Value::Dict(
            Dict::new().with("a", Value::List(vec![])),
        )]);
        assert_eq!(v.depth(), 3);
    }
}
