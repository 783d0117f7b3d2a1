//! Predicates: operators and how one predicate holds for a record.

use super::{instant, Record, ScopeError};
use crate::anychain::Value;
use crate::js;
use std::fmt;

/// A predicate operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `=`: JavaScript `===`.
    Eq,
    /// `!=`: JavaScript `!==`.
    Ne,
    /// `<`: JavaScript relational comparison.
    Lt,
    /// `<=`: JavaScript relational comparison.
    Le,
    /// `>`: JavaScript relational comparison.
    Gt,
    /// `>=`: JavaScript relational comparison.
    Ge,
    /// `has`: the record has the key (JavaScript `field in record`).
    Has,
}

impl Op {
    /// Every operator, in the order of the protocol text.
    pub const ALL: [Op; 7] = [Op::Eq, Op::Ne, Op::Lt, Op::Le, Op::Gt, Op::Ge, Op::Has];

    /// Reads an operator as written in a predicate.
    pub fn parse(text: &str) -> Result<Op, ScopeError> {
        Ok(match text {
            "=" => Op::Eq,
            "!=" => Op::Ne,
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "has" => Op::Has,
            other => return Err(ScopeError::UnknownOperator(other.to_owned())),
        })
    }

    /// The operator as written in a predicate.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Has => "has",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One predicate on a top-level field of a record.
#[derive(Debug, Clone, PartialEq)]
pub struct Predicate {
    /// The operator.
    pub op: Op,
    /// The top-level field it tests (no nested paths).
    pub field: String,
    /// The value compared with: a JSON scalar for comparisons, `None` for
    /// `has`. A comparison with `None` compares with `undefined`, which the
    /// object form cannot carry (it is written as a 2-element predicate, and
    /// as `null` in the string grammar).
    pub value: Option<Value>,
}

impl Predicate {
    /// A comparison predicate `field op value`. With [`Op::Has`] the value
    /// is dropped.
    pub fn new(op: Op, field: impl Into<String>, value: impl Into<Value>) -> Self {
        let value = if op == Op::Has {
            None
        } else {
            Some(value.into())
        };
        Predicate {
            op,
            field: field.into(),
            value,
        }
    }

    /// The predicate `has field`.
    pub fn has(field: impl Into<String>) -> Self {
        Predicate {
            op: Op::Has,
            field: field.into(),
            value: None,
        }
    }

    /// Whether the predicate holds for `record`. When `time_field` names
    /// this predicate's field and both sides are instants (see [`instant`]),
    /// they are compared as instants; otherwise JavaScript semantics apply.
    pub fn holds(&self, record: &Record, time_field: Option<&str>) -> Result<bool, ScopeError> {
        if self.op == Op::Has {
            return Ok(record.contains_key(&self.field));
        }
        let left = record.get(&self.field).map(Value::from_plain_json);
        let left = left.as_ref();
        let right = self.value.as_ref();
        if time_field == Some(self.field.as_str()) {
            if let (Some(a), Some(b)) = (left.and_then(instant), right.and_then(instant)) {
                return Ok(match self.op {
                    Op::Eq => a == b,
                    Op::Ne => a != b,
                    Op::Lt => a < b,
                    Op::Le => a <= b,
                    Op::Gt => a > b,
                    Op::Ge => a >= b,
                    Op::Has => record.contains_key(&self.field),
                });
            }
        }
        Ok(match self.op {
            Op::Eq => js::strict_eq(left, right),
            Op::Ne => !js::strict_eq(left, right),
            Op::Lt => js::less_than(left, right)?,
            Op::Le => js::less_equal(left, right)?,
            Op::Gt => js::less_than(right, left)?,
            Op::Ge => js::less_equal(right, left)?,
            Op::Has => record.contains_key(&self.field),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::*;
    use crate::js::ToPrimitiveError;
    use serde_json::json;

    #[test]
    fn every_operator_on_numbers() {
        let r = record(json!({"n": 5}));
        let check = |op: &str, v: f64| one(op, "n", json!(v)).matches(&r, None).unwrap();
        assert!(check("=", 5.0) && !check("=", 4.0));
        assert!(check("!=", 4.0) && !check("!=", 5.0));
        assert!(check("<", 6.0) && !check("<", 5.0));
        assert!(check("<=", 5.0) && !check("<=", 4.0));
        assert!(check(">", 4.0) && !check(">", 5.0));
        assert!(check(">=", 5.0) && !check(">=", 6.0));
    }

    #[test]
    fn has_is_key_presence() {
        let s = Scope::parse("p.a[has audioFiles].*").unwrap();
        assert!(s
            .matches(&record(json!({"audioFiles": null})), None)
            .unwrap());
        assert!(s.matches(&record(json!({"audioFiles": []})), None).unwrap());
        assert!(!s.matches(&record(json!({"title": "x"})), None).unwrap());
    }

    #[test]
    fn strict_equality_semantics() {
        // No coercion between types.
        assert!(!one("=", "n", json!("5"))
            .matches(&record(json!({"n": 5})), None)
            .unwrap());
        assert!(one("!=", "n", json!("5"))
            .matches(&record(json!({"n": 5})), None)
            .unwrap());
        // Objects and arrays never compare equal.
        let s = Scope::parse("p.a[o=null].*").unwrap();
        assert!(!s.matches(&record(json!({"o": {}})), None).unwrap());
        assert!(!s.matches(&record(json!({"o": []})), None).unwrap());
        assert!(s.matches(&record(json!({"o": null})), None).unwrap());
        // A missing field is undefined: never === null, always !== a value.
        assert!(!s.matches(&record(json!({})), None).unwrap());
        assert!(one("!=", "t", json!("x"))
            .matches(&record(json!({})), None)
            .unwrap());
    }

    #[test]
    fn relational_semantics_follow_javascript() {
        // Two strings: UTF-16 order, so "10" < "9".
        assert!(one("<", "s", json!("9"))
            .matches(&record(json!({"s": "10"})), None)
            .unwrap());
        // String vs number: numeric.
        assert!(!one("<", "s", json!(9))
            .matches(&record(json!({"s": "10"})), None)
            .unwrap());
        assert!(one(">", "s", json!(9))
            .matches(&record(json!({"s": "10"})), None)
            .unwrap());
        // A non-numeric string against a number: NaN, false either way.
        for op in ["<", "<=", ">", ">="] {
            assert!(!one(op, "s", json!(1))
                .matches(&record(json!({"s": "abc"})), None)
                .unwrap());
            // Missing field: undefined → NaN → false.
            assert!(!one(op, "s", json!(1))
                .matches(&record(json!({})), None)
                .unwrap());
        }
        // null is 0, arrays join.
        assert!(one("<", "v", json!(1))
            .matches(&record(json!({"v": null})), None)
            .unwrap());
        assert!(one("=", "v", json!(1))
            .matches(&record(json!({"v": 1})), None)
            .unwrap());
        assert!(one(">=", "v", json!(2))
            .matches(&record(json!({"v": [2]})), None)
            .unwrap());
        // UTF-16 order, not code point order.
        assert!(one("<", "s", json!("\u{FF61}"))
            .matches(&record(json!({"s": "\u{1F600}"})), None)
            .unwrap());
    }

    #[test]
    fn unconvertible_record_value_is_a_typed_error() {
        let r = record(json!({"v": {"toString": "x"}}));
        assert_eq!(
            one("<", "v", json!(1)).matches(&r, None),
            Err(ScopeError::Comparison(ToPrimitiveError))
        );
        assert_eq!(one("=", "v", json!(1)).matches(&r, None), Ok(false));
    }

    #[test]
    fn predicates_are_anded() {
        let s = Scope::parse("p.a[n>1,n<10,has t].*").unwrap();
        assert!(s.matches(&record(json!({"n": 5, "t": 1})), None).unwrap());
        assert!(!s.matches(&record(json!({"n": 5})), None).unwrap());
        assert!(!s.matches(&record(json!({"n": 11, "t": 1})), None).unwrap());
        let none = Scope::parse("p.a.*").unwrap();
        assert!(none.matches(&record(json!({})), None).unwrap());
    }
}
