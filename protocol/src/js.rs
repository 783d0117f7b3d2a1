//! JavaScript semantics that the reference implementation relies on, over
//! anychain values: number-to-text, truthiness, loose equality with `true`,
//! strict equality, relational comparison and `Array.prototype.join` text.
//!
//! Only what the fold, the validators and the scope predicates need is here.

use crate::anychain::Value;
use std::cmp::Ordering;

/// ECMAScript `Number::toString` (the text `JSON.stringify` writes for finite
/// numbers): `1e+21`, `1.5e-7`, `100000000000000000000`, `-0` → `0`.
/// Non-finite numbers give `null`, as `JSON.stringify` does.
pub fn number_to_string(n: f64) -> String {
    if !n.is_finite() {
        return "null".to_owned();
    }
    if n == 0.0 {
        return "0".to_owned();
    }
    ryu_js::Buffer::new().format(n).to_owned()
}

/// `Number::toString` as used by `String(n)` and `Array.prototype.join`:
/// like [`number_to_string`] but `NaN` and `Infinity` spelled out.
fn number_to_display(n: f64) -> String {
    if n.is_nan() {
        "NaN".to_owned()
    } else if n.is_infinite() {
        if n > 0.0 { "Infinity" } else { "-Infinity" }.to_owned()
    } else {
        number_to_string(n)
    }
}

/// JavaScript truthiness of a value (`None` is `undefined`).
pub fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => *n != 0.0 && !n.is_nan(),
        Some(Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    }
}

/// A value that cannot be turned into a primitive: a dict with an own
/// `toString` key (not a function, as nothing from JSON can be one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("TypeError: Cannot convert object to primitive value")]
pub struct ToPrimitiveError;

/// `ToString(ToPrimitive(v))` for the values JSON can hold, as
/// `Array.prototype.join` and `String()` compute it. `null` inside a join
/// gives the empty string; at top level `String(null)` is `"null"`, which
/// callers that need it handle themselves.
pub fn join_text(v: &Value) -> Result<String, ToPrimitiveError> {
    let mut out = String::new();
    push_join_text(v, &mut out)?;
    Ok(out)
}

/// Whether [`join_text`] of `v` succeeds, without writing the text.
pub fn check_text(v: &Value) -> Result<(), ToPrimitiveError> {
    match v {
        Value::List(items) => items.iter().try_for_each(check_text),
        Value::Dict(d) if d.contains_key("toString") => Err(ToPrimitiveError),
        _ => Ok(()),
    }
}

fn push_join_text(v: &Value, out: &mut String) -> Result<(), ToPrimitiveError> {
    match v {
        Value::Null => {}
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&number_to_display(*n)),
        Value::String(s) => out.push_str(s),
        Value::List(items) => {
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_join_text(item, out)?;
            }
        }
        Value::Bytes(bytes) => {
            for (i, b) in bytes.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                // Decimal digits of the byte, without an allocation.
                if *b >= 100 {
                    out.push(char::from(b'0' + b / 100));
                }
                if *b >= 10 {
                    out.push(char::from(b'0' + (b / 10) % 10));
                }
                out.push(char::from(b'0' + b % 10));
            }
        }
        Value::Dict(d) => {
            if d.contains_key("toString") {
                return Err(ToPrimitiveError);
            }
            out.push_str("[object Object]");
        }
        Value::Hash(_) | Value::Box(_) => out.push_str("[object Object]"),
    }
    Ok(())
}

/// Compares two strings as JavaScript does: by UTF-16 code units.
pub fn cmp_utf16(a: &str, b: &str) -> Ordering {
    a.encode_utf16().cmp(b.encode_utf16())
}

/// A primitive after `ToPrimitive`.
enum Prim<'a> {
    Undefined,
    Null,
    Bool(bool),
    Number(f64),
    Str(std::borrow::Cow<'a, str>),
}

fn to_primitive(v: Option<&Value>) -> Result<Prim<'_>, ToPrimitiveError> {
    Ok(match v {
        None => Prim::Undefined,
        Some(Value::Null) => Prim::Null,
        Some(Value::Bool(b)) => Prim::Bool(*b),
        Some(Value::Number(n)) => Prim::Number(*n),
        Some(Value::String(s)) => Prim::Str(std::borrow::Cow::Borrowed(s)),
        Some(other) => Prim::Str(std::borrow::Cow::Owned(join_text(other)?)),
    })
}

fn prim_to_number(p: &Prim<'_>) -> f64 {
    match p {
        Prim::Undefined => f64::NAN,
        Prim::Null => 0.0,
        Prim::Bool(b) => f64::from(u8::from(*b)),
        Prim::Number(n) => *n,
        Prim::Str(s) => string_to_number(s),
    }
}

/// ECMAScript `StringToNumber`: whitespace-trimmed decimal literal, `0x`/`0o`/`0b`
/// integers, `Infinity`; the empty string is 0; anything else is `NaN`.
pub fn string_to_number(s: &str) -> f64 {
    let t = s.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
    if t.is_empty() {
        return 0.0;
    }
    for (prefix, radix) in [
        ("0x", 16),
        ("0X", 16),
        ("0o", 8),
        ("0O", 8),
        ("0b", 2),
        ("0B", 2),
    ] {
        if let Some(digits) = t.strip_prefix(prefix) {
            if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
                return f64::NAN;
            }
            return digits
                .chars()
                .filter_map(|c| c.to_digit(radix))
                .fold(0.0, |acc, d| acc * f64::from(radix) + f64::from(d));
        }
    }
    let (sign, unsigned) = match t.as_bytes().first() {
        Some(b'-') => (-1.0, &t[1..]),
        Some(b'+') => (1.0, &t[1..]),
        _ => (1.0, t),
    };
    if unsigned == "Infinity" {
        return sign * f64::INFINITY;
    }
    // A StrDecimalLiteral: digits, one dot, optional exponent; Rust's parser
    // also takes "inf"/"nan", which JavaScript does not.
    let valid = !unsigned.is_empty()
        && unsigned
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
        && unsigned
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_digit() || b == b'.');
    if !valid {
        return f64::NAN;
    }
    unsigned.parse::<f64>().map_or(f64::NAN, |n| sign * n)
}

/// JavaScript `x == true`.
pub fn loose_eq_true(v: Option<&Value>) -> Result<bool, ToPrimitiveError> {
    Ok(match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        other => prim_to_number(&to_primitive(other)?) == 1.0,
    })
}

/// JavaScript strict equality `a === b` (`None` is `undefined`). Objects
/// (dicts, lists, bytes, hashes, boxes) are never equal to anything here,
/// since they are compared by identity and JSON values are always distinct.
pub fn strict_eq(a: Option<&Value>, b: Option<&Value>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(Value::Null), Some(Value::Null)) => true,
        (Some(Value::Bool(x)), Some(Value::Bool(y))) => x == y,
        (Some(Value::Number(x)), Some(Value::Number(y))) => x == y,
        (Some(Value::String(x)), Some(Value::String(y))) => x == y,
        _ => false,
    }
}

/// JavaScript `a < b` (the Abstract Relational Comparison): two strings
/// compare by UTF-16 code units, anything else as numbers (`NaN` → false).
pub fn less_than(a: Option<&Value>, b: Option<&Value>) -> Result<bool, ToPrimitiveError> {
    let pa = to_primitive(a)?;
    let pb = to_primitive(b)?;
    if let (Prim::Str(x), Prim::Str(y)) = (&pa, &pb) {
        return Ok(cmp_utf16(x, y) == Ordering::Less);
    }
    Ok(prim_to_number(&pa) < prim_to_number(&pb))
}

/// JavaScript `a <= b`: `!(b < a)` unless either side is `NaN` as a number.
pub fn less_equal(a: Option<&Value>, b: Option<&Value>) -> Result<bool, ToPrimitiveError> {
    let pa = to_primitive(a)?;
    let pb = to_primitive(b)?;
    if let (Prim::Str(x), Prim::Str(y)) = (&pa, &pb) {
        return Ok(cmp_utf16(x, y) != Ordering::Greater);
    }
    Ok(prim_to_number(&pa) <= prim_to_number(&pb))
}

/// The text JavaScript shows for a value in messages such as
/// `Cannot use 'in' operator to search for 'x' in <text>`.
pub fn display(v: Option<&Value>) -> String {
    match v {
        None => "undefined".to_owned(),
        Some(Value::Null) => "null".to_owned(),
        Some(other) => join_text(other).unwrap_or_else(|_| "[object Object]".to_owned()),
    }
}

/// JavaScript loose equality `a == b` (`None` is `undefined`). Objects are
/// equal to nothing but primitives they convert to.
pub fn loose_eq(a: Option<&Value>, b: Option<&Value>) -> Result<bool, ToPrimitiveError> {
    let is_object = |v: Option<&Value>| {
        matches!(
            v,
            Some(
                Value::List(_) | Value::Dict(_) | Value::Bytes(_) | Value::Hash(_) | Value::Box(_)
            )
        )
    };
    if is_object(a) && is_object(b) {
        return Ok(false);
    }
    let pa = to_primitive(a)?;
    let pb = to_primitive(b)?;
    Ok(match (&pa, &pb) {
        (Prim::Undefined | Prim::Null, Prim::Undefined | Prim::Null) => true,
        (Prim::Undefined | Prim::Null, _) | (_, Prim::Undefined | Prim::Null) => false,
        (Prim::Str(x), Prim::Str(y)) => x == y,
        _ => prim_to_number(&pa) == prim_to_number(&pb),
    })
}

/// A JavaScript `TypeError` message, as the reference reports it.
pub type JsTypeError = String;

/// Property read `obj[key]`: `Ok(None)` is `undefined`; reading from
/// `undefined` or `null` is the reference's `TypeError`.
pub fn prop<'a>(obj: Option<&'a Value>, key: &str) -> Result<Option<&'a Value>, JsTypeError> {
    match obj {
        None => Err(format!(
            "TypeError: Cannot read properties of undefined (reading '{key}')"
        )),
        Some(Value::Null) => Err(format!(
            "TypeError: Cannot read properties of null (reading '{key}')"
        )),
        Some(Value::Dict(d)) => Ok(d.get(key)),
        Some(Value::List(items)) => Ok(key
            .parse::<usize>()
            .ok()
            .filter(|i| i.to_string() == key)
            .and_then(|i| items.get(i))),
        Some(_) => Ok(None),
    }
}

/// `obj.length`: a number for lists, strings (UTF-16 units) and bytes, the
/// `length` entry of a dict, `undefined` otherwise.
pub fn length(obj: Option<&Value>) -> Result<Option<Value>, JsTypeError> {
    #[allow(clippy::cast_precision_loss)]
    let n = |len: usize| Some(Value::Number(len as f64));
    Ok(match obj {
        Some(Value::List(items)) => n(items.len()),
        Some(Value::String(s)) => n(s.encode_utf16().count()),
        Some(Value::Bytes(b)) => n(b.len()),
        other => prop(other, "length")?.cloned(),
    })
}

/// The `in` operator, `key in obj`; on a primitive it is the reference's `TypeError`.
pub fn has_prop(obj: Option<&Value>, key: &str) -> Result<bool, JsTypeError> {
    match obj {
        Some(Value::Dict(d)) => Ok(d.contains_key(key)),
        Some(Value::List(items)) => Ok(key == "length"
            || key
                .parse::<usize>()
                .is_ok_and(|i| i.to_string() == key && i < items.len())),
        Some(Value::Bytes(b)) => Ok(key == "length"
            || key
                .parse::<usize>()
                .is_ok_and(|i| i.to_string() == key && i < b.len())),
        Some(Value::Hash(_) | Value::Box(_)) => Ok(false),
        other => Err(format!(
            "TypeError: Cannot use 'in' operator to search for '{key}' in {}",
            display(other)
        )),
    }
}

/// The keys a `for … in` loop visits.
pub fn for_in_keys(obj: Option<&Value>) -> Vec<String> {
    let indices = |n: usize| (0..n).map(|i| i.to_string()).collect();
    match obj {
        Some(Value::Dict(d)) => d.keys().map(str::to_owned).collect(),
        Some(Value::List(items)) => indices(items.len()),
        Some(Value::String(s)) => indices(s.encode_utf16().count()),
        Some(Value::Bytes(b)) => indices(b.len()),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_texts_and_the_text_check() {
        let bytes = Value::Bytes(vec![0, 9, 10, 99, 100, 255]);
        assert_eq!(join_text(&bytes).unwrap(), "0,9,10,99,100,255");
        let bad = Value::List(vec![
            Value::Null,
            Value::Dict(crate::anychain::Dict::new().with("toString", "x")),
        ]);
        assert!(join_text(&bad).is_err());
        assert!(check_text(&bad).is_err());
        assert!(check_text(&bytes).is_ok());
    }
    use crate::anychain::Dict;

    #[test]
    fn numbers_format_like_ecmascript() {
        let cases = [
            (0.0, "0"),
            (-0.0, "0"),
            (1.0, "1"),
            (-1.5, "-1.5"),
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (1.5e-7, "1.5e-7"),
            (1e-6, "0.000001"),
            (0.1, "0.1"),
            (2.5e25, "2.5e+25"),
            (1573000000000.0, "1573000000000"),
            (9007199254740993.0, "9007199254740992"),
            (123e-20, "1.23e-18"),
            (f64::NAN, "null"),
        ];
        for (n, text) in cases {
            assert_eq!(number_to_string(n), text, "{n:e}");
        }
    }

    #[test]
    fn property_access_and_in() {
        let list = Value::List(vec![Value::from("a")]);
        assert_eq!(prop(Some(&list), "0").unwrap(), Some(&Value::from("a")));
        assert_eq!(prop(Some(&list), "00").unwrap(), None);
        assert_eq!(
            prop(None, "x").unwrap_err(),
            "TypeError: Cannot read properties of undefined (reading 'x')"
        );
        assert_eq!(
            length(Some(&Value::from("\u{1F600}"))).unwrap(),
            Some(Value::Number(2.0))
        );
        assert_eq!(length(Some(&Value::Number(1.0))).unwrap(), None);
        assert!(has_prop(Some(&list), "0").unwrap());
        assert!(!has_prop(Some(&list), "1").unwrap());
        assert_eq!(
            has_prop(Some(&Value::from("abc")), "k").unwrap_err(),
            "TypeError: Cannot use 'in' operator to search for 'k' in abc"
        );
        assert_eq!(for_in_keys(Some(&list)), ["0"]);
    }

    #[test]
    fn loose_equality() {
        let n = |x: f64| Value::Number(x);
        assert!(loose_eq(None, Some(&Value::Null)).unwrap());
        assert!(loose_eq(Some(&n(2.0)), Some(&Value::from("2"))).unwrap());
        assert!(!loose_eq(None, Some(&n(0.0))).unwrap());
        assert!(loose_eq(Some(&Value::List(vec![n(3.0)])), Some(&n(3.0))).unwrap());
        assert!(!loose_eq(Some(&Value::List(vec![])), Some(&Value::List(vec![]))).unwrap());
        assert!(loose_eq(Some(&Value::Bool(true)), Some(&n(1.0))).unwrap());
    }

    #[test]
    fn truthiness() {
        assert!(!truthy(None));
        assert!(!truthy(Some(&Value::Number(0.0))));
        assert!(!truthy(Some(&Value::String(String::new()))));
        assert!(truthy(Some(&Value::List(vec![]))));
        assert!(truthy(Some(&Value::Dict(Dict::new()))));
    }

    #[test]
    fn loose_equality_with_true() {
        let yes = [
            Value::Bool(true),
            Value::Number(1.0),
            Value::from("1"),
            Value::from(" 1.0 "),
            Value::List(vec![Value::Number(1.0)]),
        ];
        for v in yes {
            assert!(loose_eq_true(Some(&v)).unwrap(), "{v:?}");
        }
        let no = [
            Value::Bool(false),
            Value::Null,
            Value::Number(2.0),
            Value::from("true"),
            Value::Dict(Dict::new()),
        ];
        for v in no {
            assert!(!loose_eq_true(Some(&v)).unwrap(), "{v:?}");
        }
        assert!(!loose_eq_true(None).unwrap());
        let bad = Value::Dict(Dict::new().with("toString", "x"));
        assert!(loose_eq_true(Some(&bad)).is_err());
    }

    #[test]
    fn relational_comparison() {
        let s = |x: &str| Value::from(x);
        let n = Value::Number;
        assert!(less_than(Some(&s("10")), Some(&s("9"))).unwrap());
        assert!(!less_than(Some(&n(10.0)), Some(&s("9"))).unwrap());
        assert!(!less_than(None, Some(&n(1.0))).unwrap());
        assert!(less_than(Some(&Value::Null), Some(&n(1.0))).unwrap());
        assert!(less_than(Some(&s("\u{1F600}")), Some(&s("\u{FF61}"))).unwrap());
        assert!(less_equal(Some(&n(1.0)), Some(&s("1"))).unwrap());
        assert!(!less_equal(Some(&n(f64::NAN)), Some(&n(1.0))).unwrap());
    }

    #[test]
    fn string_to_number_follows_ecmascript() {
        assert_eq!(string_to_number(""), 0.0);
        assert_eq!(string_to_number(" 12 "), 12.0);
        assert_eq!(string_to_number("0x1F"), 31.0);
        assert_eq!(string_to_number("-Infinity"), f64::NEG_INFINITY);
        assert_eq!(string_to_number(".5"), 0.5);
        assert!(string_to_number("inf").is_nan());
        assert!(string_to_number("1_0").is_nan());
        assert!(string_to_number("abc").is_nan());
    }

    #[test]
    fn join_text_of_nested_values() {
        let v = Value::List(vec![
            Value::Number(1.0),
            Value::List(vec![Value::Number(2.0), Value::Null]),
        ]);
        assert_eq!(join_text(&v).unwrap(), "1,2,");
        assert_eq!(join_text(&Value::Bytes(vec![9, 10])).unwrap(), "9,10");
        assert_eq!(join_text(&Value::Hash(vec![1])).unwrap(), "[object Object]");
    }
}
