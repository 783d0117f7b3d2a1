//! The display form of scopes in the string grammar, which the parser reads
//! back to an equal scope.

use super::grammar::{is_name_char, json_scalar};
use super::{Fields, Op, Predicate, Scope, ScopeError};
use crate::anychain::Value;
use crate::js;
use serde_json::Value as Json;
use std::fmt;

impl Scope {
    /// The string-grammar form, which [`Scope::parse`] reads back to an
    /// equal scope.
    pub fn display(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Predicate {
    /// The string-grammar form: `field op value` or `has field`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.op == Op::Has {
            f.write_str("has ")?;
            return write_name(f, &self.field);
        }
        write_name(f, &self.field)?;
        f.write_str(self.op.as_str())?;
        write_value(f, self.value.as_ref())
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.provider)?;
        if !self.path.is_empty() {
            write!(f, ".{}", self.path)?;
        }
        if !self.predicates.is_empty() {
            f.write_str("[")?;
            for (i, p) in self.predicates.iter().enumerate() {
                if i > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{p}")?;
            }
            f.write_str("]")?;
        }
        match &self.fields {
            Fields::All => f.write_str(".*"),
            Fields::Only(names) => {
                f.write_str(".{")?;
                for (i, name) in names.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write_name(f, name)?;
                }
                f.write_str("}")
            }
        }
    }
}

impl std::str::FromStr for Scope {
    type Err = ScopeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::parse(s)
    }
}

/// Characters `display` writes bare in a string value.
fn is_bare_value_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '+' | '/' | '@')
}

fn write_quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    write!(f, "{}", Json::String(s.to_owned()))
}

fn write_name(f: &mut fmt::Formatter<'_>, name: &str) -> fmt::Result {
    if !name.is_empty() && name.chars().all(is_name_char) {
        f.write_str(name)
    } else {
        write_quoted(f, name)
    }
}

fn write_value(f: &mut fmt::Formatter<'_>, value: Option<&Value>) -> fmt::Result {
    match value {
        Some(Value::String(s)) => {
            if !s.is_empty() && s.chars().all(is_bare_value_char) && json_scalar(s).is_none() {
                f.write_str(s)
            } else {
                write_quoted(f, s)
            }
        }
        Some(Value::Number(n)) => f.write_str(&js::number_to_string(*n)),
        Some(Value::Bool(b)) => f.write_str(if *b { "true" } else { "false" }),
        // Null, undefined, and values the grammar cannot carry.
        _ => f.write_str("null"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::*;
    use serde_json::json;

    #[test]
    fn display_forms() {
        let s = scope_json(json!({"provider":"google","path":"my_activity.search","predicates":[["=","title","x"],["has","audioFiles"]],"fields":["title","time"]})).unwrap();
        assert_eq!(
            s.display(),
            "google.my_activity.search[title=x,has audioFiles].{title,time}"
        );
        let s = scope_json(json!({"provider":"google","path":""})).unwrap();
        assert_eq!(s.display(), "google.*");
        let s = scope_json(json!({"provider":"google","path":"photos","predicates":[[">","date","2018"],["<","date",2019],["=","a b","x,y"],["!=","n",null]]})).unwrap();
        assert_eq!(
            s.display(),
            r#"google.photos[date>"2018",date<2019,"a b"="x,y",n!=null].*"#
        );
    }

    #[test]
    fn display_parse_round_trip() {
        let cases = [
            json!({"provider":"google","path":"my_activity.search","predicates":[["=","title","x"],["has","audioFiles"]],"fields":["title","time"]}),
            json!({"provider":"google","path":"*"}),
            json!({"provider":"g_1","path":"a.b.c","fields":[]}),
            json!({"provider":"p","path":"a","predicates":[["=","t",""],["=","t","true"],["=","t",true],["=","t","01"],["=","t","-1"],["=","t",-1],["=","t",1e21],["=","t",0.1],["=","t"," x "],["=","t","a\"b"],["=","t","\u{1F600}"],["=","t","line\nbreak"]]}),
            json!({"provider":"p","path":"","predicates":[["has","has"],["<=","has",1],[">=","","x"],["!=","a.b",null]],"fields":["", "a b", "\"", "ok"]}),
            json!({"provider":"p","path":"a","predicates":[[">","time","2019-07-10T13:53:48.123Z"],["<","x","-x"],["=","u","a:b/c@d+e"]]}),
        ];
        for input in cases {
            let s = scope_json(input.clone()).unwrap();
            let text = s.display();
            assert_eq!(Scope::parse(&text).as_ref(), Ok(&s), "{input} → {text}");
            assert_eq!(Scope::from_value(&s.to_value()).as_ref(), Ok(&s));
        }
    }

    mod prop {
        use crate::anychain::Value;
        use crate::scope::*;
        use proptest::prelude::*;

        fn value() -> impl Strategy<Value = crate::anychain::Value> {
            prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<f64>()
                    .prop_filter("finite", |n| n.is_finite())
                    .prop_map(Value::Number),
                any::<i64>().prop_map(|n| Value::Number(n as f64)),
                any::<String>().prop_map(Value::String),
                "[a-z0-9:.+-]{0,6}".prop_map(Value::String),
            ]
        }

        fn name() -> impl Strategy<Value = String> {
            prop_oneof!["[a-zA-Z_$@-]{1,6}", Just("has".to_owned()), any::<String>()]
        }

        fn predicate() -> impl Strategy<Value = Predicate> {
            (0usize..7, name(), value()).prop_map(|(i, field, v)| {
                let op = Op::ALL.get(i).copied().unwrap_or(Op::Has);
                Predicate::new(op, field, v)
            })
        }

        fn scope() -> impl Strategy<Value = Scope> {
            (
                "[a-z0-9_]{1,6}",
                prop::collection::vec("[A-Za-z0-9_]{1,5}", 0..4),
                prop::collection::vec(predicate(), 0..4),
                prop::option::of(prop::collection::vec(name(), 0..4)),
            )
                .prop_map(|(provider, segs, predicates, fields)| Scope {
                    provider,
                    path: segs.join("."),
                    predicates,
                    fields: fields.map_or(Fields::All, Fields::Only),
                })
        }

        proptest! {
            #[test]
            fn display_then_parse_is_identity(s in scope()) {
                let text = s.display();
                prop_assert_eq!(Scope::parse(&text), Ok(s), "{}", text);
            }

            #[test]
            fn parse_never_panics(text in any::<String>()) {
                let _ = Scope::parse(&text);
            }

            #[test]
            fn parse_never_panics_on_grammar_like_text(text in "[a-z.\\[\\]{}=<>!,\" *\\\\0-9]{0,24}") {
                let _ = Scope::parse(&text);
            }

            #[test]
            fn instant_never_panics(text in "[0-9T:.Z+-]{0,30}", n in any::<f64>()) {
                let _ = instant(&Value::String(text));
                let _ = instant(&Value::Number(n));
            }
        }
    }
}
