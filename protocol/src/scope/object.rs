//! The object form of scopes (PROTOCOL §5.1): reading scope values and
//! writing them back.

use super::{Fields, Op, Predicate, Scope, ScopeError};
use crate::anychain::{Dict, Value};
use serde_json::Value as Json;

impl Scope {
    /// Reads a scope from its object form, or from a string in the string
    /// grammar.
    pub fn from_value(value: &Value) -> Result<Scope, ScopeError> {
        let dict = match value {
            Value::Dict(d) => d,
            Value::String(s) => return Scope::parse(s),
            _ => return Err(ScopeError::NotAScope),
        };
        let provider = dict
            .get("provider")
            .and_then(Value::as_str)
            .ok_or(ScopeError::ProviderType)?;
        check_provider(provider)?;
        let path = dict
            .get("path")
            .and_then(Value::as_str)
            .ok_or(ScopeError::PathType)?;
        let path = normalize_path(path)?;
        let predicates = match dict.get("predicates") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::List(items)) => items
                .iter()
                .enumerate()
                .map(|(index, item)| predicate_from_value(index, item))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(ScopeError::PredicatesType),
        };
        let fields = match dict.get("fields") {
            None | Some(Value::Null) => Fields::All,
            Some(Value::String(s)) if s == "*" => Fields::All,
            Some(Value::String(_)) => {
                return Err(ScopeError::BadFields(
                    "a string other than \"*\" (use a list)",
                ))
            }
            Some(Value::List(items)) => Fields::Only(
                items
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_owned)
                            .ok_or(ScopeError::BadFields("field names must be strings"))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Some(_) => {
                return Err(ScopeError::BadFields(
                    "expected null, \"*\" or a list of strings",
                ))
            }
        };
        Ok(Scope {
            provider: provider.to_owned(),
            path,
            predicates,
            fields,
        })
    }

    /// Reads a scope from a plain JSON value (see [`Scope::from_value`]).
    pub fn from_json(json: &Json) -> Result<Scope, ScopeError> {
        Scope::from_value(&Value::from_plain_json(json))
    }

    /// The object form: `provider`, `path`, then `predicates` when there are
    /// any and `fields` when they are restricted. A path meaning every path
    /// is written `""`.
    pub fn to_value(&self) -> Value {
        let mut d = Dict::new()
            .with("provider", self.provider.as_str())
            .with("path", self.path.as_str());
        if !self.predicates.is_empty() {
            d.insert(
                "predicates",
                Value::List(self.predicates.iter().map(Predicate::to_value).collect()),
            );
        }
        if let Fields::Only(names) = &self.fields {
            d.insert(
                "fields",
                Value::List(names.iter().map(|n| Value::from(n.as_str())).collect()),
            );
        }
        Value::Dict(d)
    }
}

impl Predicate {
    /// The object form: `[op, field, value]` or `["has", field]`.
    pub fn to_value(&self) -> Value {
        let mut items = vec![
            Value::from(self.op.as_str()),
            Value::from(self.field.as_str()),
        ];
        if self.op != Op::Has {
            if let Some(v) = &self.value {
                items.push(v.clone());
            }
        }
        Value::List(items)
    }
}

/// Checks a provider name: non-empty `[a-z0-9_]+`.
pub(super) fn check_provider(provider: &str) -> Result<(), ScopeError> {
    let ok = !provider.is_empty()
        && provider
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(ScopeError::BadProvider(provider.to_owned()))
    }
}

pub(super) fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Validates a path and maps the every-path spellings (`""`, `*`, `.*`) to `""`.
fn normalize_path(path: &str) -> Result<String, ScopeError> {
    if matches!(path, "" | "*" | ".*") {
        return Ok(String::new());
    }
    let ok = path
        .split('.')
        .all(|seg| !seg.is_empty() && seg.chars().all(is_path_char));
    if ok {
        Ok(path.to_owned())
    } else {
        Err(ScopeError::BadPath(path.to_owned()))
    }
}

/// Whether a predicate value is a JSON scalar the grammar can carry.
pub(super) fn is_scalar(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(_) | Value::String(_) => true,
        Value::Number(n) => n.is_finite(),
        _ => false,
    }
}

fn predicate_from_value(index: usize, item: &Value) -> Result<Predicate, ScopeError> {
    let bad = |reason| ScopeError::BadPredicate { index, reason };
    let items = item
        .as_list()
        .ok_or_else(|| bad("expected a list [op, field, value] or [\"has\", field]"))?;
    let op = items
        .first()
        .ok_or_else(|| bad("empty predicate"))?
        .as_str()
        .ok_or_else(|| bad("the operator must be a string"))?;
    let op = Op::parse(op)?;
    let field = items
        .get(1)
        .ok_or_else(|| bad("missing field name"))?
        .as_str()
        .ok_or_else(|| bad("the field name must be a string"))?
        .to_owned();
    match (op, items.len()) {
        (Op::Has, 2) => Ok(Predicate::has(field)),
        (Op::Has, _) => Err(bad("expected [\"has\", field]")),
        (_, 3) => {
            let value = items.get(2).ok_or_else(|| bad("missing value"))?;
            if !is_scalar(value) {
                return Err(ScopeError::BadPredicateValue { index });
            }
            Ok(Predicate {
                op,
                field,
                value: Some(value.clone()),
            })
        }
        _ => Err(bad("expected [op, field, value]")),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::*;
    use crate::anychain::{Dict, Value};
    use serde_json::{json, Value as Json};

    // ---- object form -------------------------------------------------

    #[test]
    fn object_form_from_the_vectors() {
        let s = scope_json(json!({"provider":"google","path":"my_activity.search","predicates":[["=","title","x"]],"fields":["title","time"]})).unwrap();
        assert_eq!(s.provider, "google");
        assert_eq!(s.path, "my_activity.search");
        assert_eq!(s.predicates, vec![Predicate::new(Op::Eq, "title", "x")]);
        assert_eq!(
            s.fields,
            Fields::Only(vec!["title".to_owned(), "time".to_owned()])
        );
        let minimal =
            scope_json(json!({"provider":"google","path":"my_activity.assistant"})).unwrap();
        assert!(minimal.predicates.is_empty());
        assert_eq!(minimal.fields, Fields::All);
    }

    #[test]
    fn object_form_has_and_extra_keys() {
        let s = scope_json(json!({"provider":"google","path":"a","predicates":[["has","audioFiles"]],"consent":true})).unwrap();
        assert_eq!(s.predicates, vec![Predicate::has("audioFiles")]);
    }

    #[test]
    fn object_form_fields_star_null_and_absent_mean_all() {
        for fields in [json!("*"), Json::Null] {
            let s = scope_json(json!({"provider":"p","path":"a","fields":fields})).unwrap();
            assert_eq!(s.fields, Fields::All);
        }
        let s = scope_json(json!({"provider":"p","path":"a","fields":[]})).unwrap();
        assert_eq!(s.fields, Fields::Only(vec![]));
    }

    #[test]
    fn object_form_every_path_spellings() {
        for path in ["", "*", ".*"] {
            let s = scope_json(json!({"provider":"p","path":path})).unwrap();
            assert_eq!(s.path, "");
            assert!(s.all_paths());
        }
    }

    #[test]
    fn object_form_errors() {
        let cases = [
            (json!(5), ScopeError::NotAScope),
            (json!([]), ScopeError::NotAScope),
            (json!({"path":"a"}), ScopeError::ProviderType),
            (json!({"provider":1,"path":"a"}), ScopeError::ProviderType),
            (
                json!({"provider":"","path":"a"}),
                ScopeError::BadProvider(String::new()),
            ),
            (
                json!({"provider":"../x","path":"a"}),
                ScopeError::BadProvider("../x".into()),
            ),
            (
                json!({"provider":"Google","path":"a"}),
                ScopeError::BadProvider("Google".into()),
            ),
            (
                json!({"provider":"x/../../y","path":"a"}),
                ScopeError::BadProvider("x/../../y".into()),
            ),
            (json!({"provider":"p"}), ScopeError::PathType),
            (json!({"provider":"p","path":null}), ScopeError::PathType),
            (
                json!({"provider":"p","path":"a.(b|c)"}),
                ScopeError::BadPath("a.(b|c)".into()),
            ),
            (
                json!({"provider":"p","path":"a..b"}),
                ScopeError::BadPath("a..b".into()),
            ),
            (
                json!({"provider":"p","path":"a."}),
                ScopeError::BadPath("a.".into()),
            ),
            (
                json!({"provider":"p","path":"a","predicates":{}}),
                ScopeError::PredicatesType,
            ),
            (
                json!({"provider":"p","path":"a","predicates":[["~","t","x"]]}),
                ScopeError::UnknownOperator("~".into()),
            ),
            (
                json!({"provider":"p","path":"a","predicates":[["=","t",[1]]]}),
                ScopeError::BadPredicateValue { index: 0 },
            ),
            (
                json!({"provider":"p","path":"a","predicates":[["has","t"],["=","t",{"a":1}]]}),
                ScopeError::BadPredicateValue { index: 1 },
            ),
            (
                json!({"provider":"p","path":"a","fields":"title"}),
                ScopeError::BadFields("a string other than \"*\" (use a list)"),
            ),
            (
                json!({"provider":"p","path":"a","fields":["a",1]}),
                ScopeError::BadFields("field names must be strings"),
            ),
            (
                json!({"provider":"p","path":"a","fields":{}}),
                ScopeError::BadFields("expected null, \"*\" or a list of strings"),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(scope_json(input.clone()), Err(expected), "{input}");
        }
    }

    #[test]
    fn object_form_bad_predicate_shapes() {
        for p in [
            json!("=,t,x"),
            json!([]),
            json!([1, "t", "x"]),
            json!(["=", 1, "x"]),
            json!(["=", "t"]),
            json!(["=", "t", "x", "y"]),
            json!(["has"]),
            json!(["has", "t", true]),
        ] {
            let r = scope_json(json!({"provider":"p","path":"a","predicates":[p]}));
            assert!(
                matches!(r, Err(ScopeError::BadPredicate { index: 0, .. })),
                "{p}: {r:?}"
            );
        }
    }

    #[test]
    fn unknown_operator_message_matches_the_reference() {
        let e = scope_json(json!({"provider":"p","path":"a","predicates":[["like","t","x"]]}))
            .unwrap_err();
        assert_eq!(e.to_string(), "unknown predicate operator: like");
    }

    #[test]
    fn object_form_string_value_is_parsed() {
        let s = Scope::from_value(&Value::from("google.photos.*")).unwrap();
        assert_eq!(s.provider, "google");
        assert_eq!(s.path, "photos");
    }

    #[test]
    fn to_value_writes_only_non_defaults() {
        let s = scope_json(json!({"provider":"google","path":"my_activity.search","predicates":[["=","title","x"],["has","a"]],"fields":["title"]})).unwrap();
        let v = s.to_value();
        let keys: Vec<_> = v.as_dict().unwrap().keys().collect();
        assert_eq!(keys, ["provider", "path", "predicates", "fields"]);
        assert_eq!(Scope::from_value(&v).unwrap(), s);
        let plain = scope_json(json!({"provider":"google","path":".*","fields":"*"})).unwrap();
        let v = plain.to_value();
        assert_eq!(
            v,
            Value::Dict(Dict::new().with("provider", "google").with("path", ""))
        );
    }

    #[test]
    fn op_parse_and_as_str() {
        for op in Op::ALL {
            assert_eq!(Op::parse(op.as_str()), Ok(op));
        }
        assert_eq!(
            Op::parse("=="),
            Err(ScopeError::UnknownOperator("==".into()))
        );
    }
}
