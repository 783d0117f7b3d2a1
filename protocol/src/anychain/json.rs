//! The JSON form of anychain values and tokens.
//!
//! Decoding reads JSON text straight into [`Value`]s, enforcing size and
//! depth limits, refusing duplicate keys and `__proto__`, and turning the
//! one-key tag objects `{"__bytes"|"__hash"|"__box": "<b64u>"}` into leaves.
//! Encoding writes what `JSON.stringify(toJSON(v))` writes, so a token made
//! here is byte for byte the reference's.

use super::b64::{b64u_decode, b64u_encode, B64Error};
use super::value::{Dict, Value};
use crate::js::number_to_string;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;

/// Limits applied when decoding untrusted JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted input, in bytes (default 1 MiB).
    pub max_bytes: usize,
    /// Deepest accepted nesting of lists and objects (default 64, at most 128).
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 1 << 20,
            max_depth: 64,
        }
    }
}

/// Why a JSON text is not an acceptable anychain value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// The input is larger than [`Limits::max_bytes`].
    #[error("input is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// Size of the input.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Lists and objects nest deeper than [`Limits::max_depth`].
    #[error("input nests deeper than {limit} levels")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// The text is not JSON.
    #[error("malformed JSON: {0}")]
    Syntax(String),
    /// A number does not fit a finite double.
    #[error("number out of range (not a finite double)")]
    NonFinite,
    /// An object repeats a key.
    #[error("duplicate key {0:?} in an object")]
    DuplicateKey(String),
    /// A key that JavaScript treats specially and the reference mishandles.
    #[error("forbidden key {0:?}: the reference implementation mishandles it")]
    ForbiddenKey(String),
    /// The payload of a `__bytes`, `__hash` or `__box` tag is not strict base64.
    #[error("bad {tag} payload: {source}")]
    BadTag {
        /// The tag (`__bytes`, `__hash` or `__box`).
        tag: &'static str,
        /// The base64 error.
        source: B64Error,
    },
}

/// Decodes the JSON form (which is also the token form) into a value,
/// without verifying signatures.
pub fn from_json_str(text: &str, limits: &Limits) -> Result<Value, DecodeError> {
    if text.len() > limits.max_bytes {
        return Err(DecodeError::TooLarge {
            size: text.len(),
            limit: limits.max_bytes,
        });
    }
    let failure = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_str(text);
    let seed = Node {
        depth: 0,
        limits,
        failure: &failure,
    };
    let result = seed.deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    match result {
        Ok(v) => Ok(v),
        Err(e) => Err(failure
            .into_inner()
            .unwrap_or_else(|| DecodeError::Syntax(e.to_string()))),
    }
}

const TAGS: [&str; 3] = ["__bytes", "__hash", "__box"];

/// A key whose JavaScript meaning differs from a plain property.
fn forbidden_key(key: &str) -> bool {
    key == "__proto__"
}

#[derive(Clone, Copy)]
struct Node<'a> {
    depth: usize,
    limits: &'a Limits,
    failure: &'a RefCell<Option<DecodeError>>,
}

impl Node<'_> {
    fn fail<E: de::Error>(&self, err: DecodeError) -> E {
        let msg = err.to_string();
        *self.failure.borrow_mut() = Some(err);
        E::custom(msg)
    }

    fn child<E: de::Error>(&self) -> Result<Self, E> {
        if self.depth >= self.limits.max_depth {
            return Err(self.fail(DecodeError::TooDeep {
                limit: self.limits.max_depth,
            }));
        }
        Ok(Node {
            depth: self.depth + 1,
            ..*self
        })
    }
}

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    // Integers are converted to the nearest double, as JSON.parse does.
    #[allow(clippy::cast_precision_loss)]
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v as f64))
    }

    #[allow(clippy::cast_precision_loss)]
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v as f64))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        if v.is_finite() {
            Ok(Value::Number(v))
        } else {
            Err(self.fail(DecodeError::NonFinite))
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let child = self.child()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(child)? {
            items.push(item);
        }
        Ok(Value::List(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let child = self.child()?;
        let mut entries: Vec<(String, Value)> = Vec::new();
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if forbidden_key(&key) {
                return Err(self.fail(DecodeError::ForbiddenKey(key)));
            }
            if !seen.insert(key.clone()) {
                return Err(self.fail(DecodeError::DuplicateKey(key)));
            }
            let value = map.next_value_seed(child)?;
            entries.push((key, value));
        }
        if let [(key, Value::String(payload))] = entries.as_slice() {
            if let Some(tag) = TAGS.iter().find(|t| **t == key.as_str()) {
                let bytes = b64u_decode(payload)
                    .map_err(|source| self.fail(DecodeError::BadTag { tag, source }))?;
                return Ok(match *tag {
                    "__bytes" => Value::Bytes(bytes),
                    "__hash" => Value::Hash(bytes),
                    _ => Value::Box(bytes),
                });
            }
        }
        let mut dict = Dict::new();
        for (k, v) in entries {
            dict.insert(k, v);
        }
        Ok(Value::Dict(dict))
    }
}

/// The token of a value: compact JSON exactly as `JSON.stringify(toJSON(v))`.
pub fn to_token(value: &Value) -> String {
    let mut out = String::new();
    write_json(value, None, 0, &mut out);
    out
}

/// The JSON form, indented by two spaces (for people; same tree as the token).
pub fn to_json_pretty(value: &Value) -> String {
    let mut out = String::new();
    write_json(value, Some(2), 0, &mut out);
    out
}

fn newline(indent: Option<usize>, level: usize, out: &mut String) {
    if let Some(step) = indent {
        out.push('\n');
        out.extend(std::iter::repeat_n(' ', step * level));
    }
}

fn write_tag(tag: &str, bytes: &[u8], indent: Option<usize>, level: usize, out: &mut String) {
    let mut d = Dict::new();
    d.insert(tag, Value::String(b64u_encode(bytes)));
    write_dict(&d, indent, level, out);
}

fn write_dict(d: &Dict, indent: Option<usize>, level: usize, out: &mut String) {
    out.push('{');
    for (i, (k, v)) in d.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        newline(indent, level + 1, out);
        write_string(k, out);
        out.push(':');
        if indent.is_some() {
            out.push(' ');
        }
        write_json(v, indent, level + 1, out);
    }
    if !d.is_empty() {
        newline(indent, level, out);
    }
    out.push('}');
}

fn write_json(value: &Value, indent: Option<usize>, level: usize, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&number_to_string(*n)),
        Value::String(s) => write_string(s, out),
        Value::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                newline(indent, level + 1, out);
                write_json(item, indent, level + 1, out);
            }
            if !items.is_empty() {
                newline(indent, level, out);
            }
            out.push(']');
        }
        Value::Dict(d) => write_dict(d, indent, level, out),
        Value::Bytes(b) => write_tag("__bytes", b, indent, level, out),
        Value::Hash(b) => write_tag("__hash", b, indent, level, out),
        Value::Box(b) => write_tag("__box", b, indent, level, out),
    }
}

/// Writes a string literal as `JSON.stringify` does: `"` and `\` escaped,
/// the short escapes for control characters, `\u00xx` (lower-case) for the
/// others, everything else raw.
fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(text: &str) -> Result<Value, DecodeError> {
        from_json_str(text, &Limits::default())
    }

    #[test]
    fn tags_only_with_one_string_key() {
        assert_eq!(
            decode(r#"{"__bytes":"AQID"}"#).unwrap(),
            Value::Bytes(vec![1, 2, 3])
        );
        assert_eq!(
            decode(r#"{"__hash":"AQID"}"#).unwrap(),
            Value::Hash(vec![1, 2, 3])
        );
        assert_eq!(decode(r#"{"__box":""}"#).unwrap(), Value::Box(vec![]));
        let d = decode(r#"{"__bytes":5}"#).unwrap();
        assert_eq!(d.get("__bytes"), Some(&Value::Number(5.0)));
        let d = decode(r#"{"__bytes":"AAEC","x":1}"#).unwrap();
        assert_eq!(d.get("__bytes"), Some(&Value::from("AAEC")));
    }

    #[test]
    fn rejects_bad_input_with_typed_errors() {
        assert!(matches!(
            decode(r#"{"__bytes":"AA=="}"#),
            Err(DecodeError::BadTag { tag: "__bytes", .. })
        ));
        assert!(matches!(
            decode(r#"{"__hash":"+/8"}"#),
            Err(DecodeError::BadTag { .. })
        ));
        assert!(
            matches!(decode(r#"{"a":1,"a":2}"#), Err(DecodeError::DuplicateKey(k)) if k == "a")
        );
        assert!(matches!(
            decode(r#"{"__proto__":{}}"#),
            Err(DecodeError::ForbiddenKey(_))
        ));
        assert!(matches!(
            decode("1e400"),
            Err(DecodeError::NonFinite) | Err(DecodeError::Syntax(_))
        ));
        assert!(matches!(decode("[1,"), Err(DecodeError::Syntax(_))));
        assert!(matches!(decode("[1] x"), Err(DecodeError::Syntax(_))));
        assert!(matches!(decode(r#""\ud800""#), Err(DecodeError::Syntax(_))));
        let deep = "[".repeat(65) + &"]".repeat(65);
        assert!(matches!(
            decode(&deep),
            Err(DecodeError::TooDeep { limit: 64 })
        ));
        let ok = "[".repeat(64) + &"]".repeat(64);
        assert!(decode(&ok).is_ok());
        let limits = Limits {
            max_bytes: 4,
            max_depth: 64,
        };
        assert!(matches!(
            from_json_str("[1,2]", &limits),
            Err(DecodeError::TooLarge { size: 5, limit: 4 })
        ));
    }

    #[test]
    fn numbers_become_doubles() {
        assert_eq!(
            decode("9007199254740993").unwrap(),
            Value::Number(9007199254740992.0)
        );
        assert_eq!(decode("-0.0").unwrap(), Value::Number(-0.0));
        assert_eq!(to_token(&decode("-0.0").unwrap()), "0");
        assert_eq!(to_token(&decode("1.0").unwrap()), "1");
        assert_eq!(to_token(&decode("1e21").unwrap()), "1e+21");
        assert_eq!(
            to_token(&decode("12345678901234567890").unwrap()),
            "12345678901234567000"
        );
    }

    #[test]
    fn object_order_is_javascript_order() {
        let v = decode(r#"{"b":1,"10":2,"a":3,"9":4}"#).unwrap();
        assert_eq!(to_token(&v), r#"{"9":4,"10":2,"b":1,"a":3}"#);
    }

    #[test]
    fn strings_escape_like_json_stringify() {
        let v = Value::from("q\"\\\n\t\u{1}\u{7f}é\u{2028}");
        assert_eq!(to_token(&v), "\"q\\\"\\\\\\n\\t\\u0001\u{7f}é\u{2028}\"");
    }

    #[test]
    fn pretty_form_reads_back() {
        let v = decode(r#"{"a":[1,{"__bytes":"AQ"}],"b":{},"c":[]}"#).unwrap();
        let pretty = to_json_pretty(&v);
        assert!(pretty.contains('\n'));
        assert_eq!(decode(&pretty).unwrap(), v);
    }
}
