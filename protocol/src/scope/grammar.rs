//! The string grammar of scopes: the parser (see the module documentation
//! of [`crate::scope`]); the display form is in `display.rs`.

use super::object::{check_provider, is_path_char, is_scalar};
use super::{Fields, Op, Predicate, Scope, ScopeError};
use crate::anychain::Value;
use serde_json::Value as Json;

impl Scope {
    /// Reads the string grammar (see the module documentation).
    pub fn parse(text: &str) -> Result<Scope, ScopeError> {
        Parser { src: text, pos: 0 }.scope()
    }
}

/// Characters of a bare field name.
pub(super) fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '$' | '@')
}

/// Characters that make up an operator token.
fn is_op_char(c: char) -> bool {
    matches!(c, '<' | '>' | '=' | '!' | '~')
}

/// The JSON scalar a bare value text stands for, if it is one (number,
/// `true`, `false`, `null`).
pub(super) fn json_scalar(text: &str) -> Option<Value> {
    match serde_json::from_str::<Json>(text) {
        Ok(j @ (Json::Number(_) | Json::Bool(_) | Json::Null)) => {
            let v = Value::from_plain_json(&j);
            // serde_json never yields a non-finite number, but stay safe.
            is_scalar(&v).then_some(v)
        }
        _ => None,
    }
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        self.src.get(self.pos..).unwrap_or("")
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn take_while(&mut self, f: impl Fn(char) -> bool) -> &'a str {
        let rest = self.rest();
        let len = rest.find(|c: char| !f(c)).unwrap_or(rest.len());
        self.pos += len;
        rest.get(..len).unwrap_or("")
    }

    fn skip_ws(&mut self) {
        self.take_while(char::is_whitespace);
    }

    fn error_at(pos: usize, message: impl Into<String>) -> ScopeError {
        ScopeError::Syntax {
            pos,
            message: message.into(),
        }
    }

    fn error(&self, message: impl Into<String>) -> ScopeError {
        Self::error_at(self.pos, message)
    }

    fn scope(mut self) -> Result<Scope, ScopeError> {
        let provider = self.take_while(|c| !matches!(c, '.' | '[' | '{'));
        check_provider(provider)?;
        let mut segments: Vec<&str> = Vec::new();
        let mut predicates = Vec::new();
        let fields = loop {
            match self.peek() {
                None => break Fields::All,
                Some('[') => {
                    predicates = self.filters()?;
                    if !self.eat('.') {
                        return Err(self.error("expected `.*` or `.{fields}` after the filters"));
                    }
                    break self.field_spec()?;
                }
                Some('.') => {
                    self.bump();
                    if matches!(self.peek(), Some('*' | '{')) {
                        break self.field_spec()?;
                    }
                    let segment = self.take_while(is_path_char);
                    if segment.is_empty() {
                        return Err(self.error("expected a path segment, `*` or `{` after `.`"));
                    }
                    segments.push(segment);
                }
                Some(c) => return Err(self.error(format!("unexpected character {c:?}"))),
            }
        };
        if let Some(c) = self.peek() {
            return Err(self.error(format!(
                "unexpected {c:?} after the field list (it must end the scope)"
            )));
        }
        Ok(Scope {
            provider: provider.to_owned(),
            path: segments.join("."),
            predicates,
            fields,
        })
    }

    fn field_spec(&mut self) -> Result<Fields, ScopeError> {
        if self.eat('*') {
            return Ok(Fields::All);
        }
        let open = self.pos;
        if !self.eat('{') {
            return Err(self.error("expected `*` or `{`"));
        }
        let mut names = Vec::new();
        self.skip_ws();
        if self.eat('}') {
            return Ok(Fields::Only(names));
        }
        loop {
            self.skip_ws();
            names.push(self.name()?.0);
            self.skip_ws();
            let at = self.pos;
            match self.bump() {
                Some(',') => {}
                Some('}') => return Ok(Fields::Only(names)),
                None => return Err(Self::error_at(open, "unclosed `{`")),
                Some(c) => {
                    return Err(Self::error_at(
                        at,
                        format!("expected `,` or `}}` in the field list, found {c:?}"),
                    ))
                }
            }
        }
    }

    fn filters(&mut self) -> Result<Vec<Predicate>, ScopeError> {
        let open = self.pos;
        self.bump(); // '['
        let mut out = Vec::new();
        self.skip_ws();
        if self.eat(']') {
            return Ok(out);
        }
        loop {
            out.push(self.filter()?);
            self.skip_ws();
            let at = self.pos;
            match self.bump() {
                Some(',') => {}
                Some(']') => return Ok(out),
                None => return Err(Self::error_at(open, "unclosed `[`")),
                Some(c) => {
                    return Err(Self::error_at(
                        at,
                        format!("expected `,` or `]` after a filter, found {c:?}"),
                    ))
                }
            }
        }
    }

    fn filter(&mut self) -> Result<Predicate, ScopeError> {
        self.skip_ws();
        let (name, quoted) = self.name()?;
        self.skip_ws();
        if !quoted && name == "has" && !self.peek().is_some_and(is_op_char) {
            let (field, _) = self.name()?;
            return Ok(Predicate::has(field));
        }
        let at = self.pos;
        let op_text = self.take_while(is_op_char);
        if op_text.is_empty() {
            return Err(Self::error_at(
                at,
                "expected an operator (=, !=, <, <=, >, >=) after the field name",
            ));
        }
        let op = Op::parse(op_text)?;
        self.skip_ws();
        let value = self.value()?;
        Ok(Predicate {
            op,
            field: name,
            value: Some(value),
        })
    }

    /// A field name, bare or JSON-quoted; the flag tells whether it was quoted.
    fn name(&mut self) -> Result<(String, bool), ScopeError> {
        if self.peek() == Some('"') {
            return Ok((self.json_string()?, true));
        }
        let name = self.take_while(is_name_char);
        if name.is_empty() {
            return Err(self.error("expected a field name"));
        }
        Ok((name.to_owned(), false))
    }

    fn value(&mut self) -> Result<Value, ScopeError> {
        if self.peek() == Some('"') {
            return Ok(Value::String(self.json_string()?));
        }
        let start = self.pos;
        let text = self.take_while(|c| c != ',' && c != ']').trim_end();
        if text.is_empty() {
            return Err(Self::error_at(start, "expected a value"));
        }
        if let Some(off) = text.find(|c: char| {
            matches!(c, '"' | '[' | '{' | '}') || c.is_control() || c.is_whitespace()
        }) {
            return Err(Self::error_at(
                start + off,
                "a bare value may not contain quotes, brackets, braces, whitespace or control characters (quote it as a JSON string)",
            ));
        }
        Ok(json_scalar(text).unwrap_or_else(|| Value::String(text.to_owned())))
    }

    /// A JSON string literal starting at the current `"`.
    fn json_string(&mut self) -> Result<String, ScopeError> {
        let start = self.pos;
        self.bump(); // opening quote
        loop {
            match self.bump() {
                None => return Err(Self::error_at(start, "unterminated string")),
                Some('\\') => {
                    if self.bump().is_none() {
                        return Err(Self::error_at(start, "unterminated string"));
                    }
                }
                Some('"') => break,
                Some(_) => {}
            }
        }
        let literal = self.src.get(start..self.pos).unwrap_or("");
        serde_json::from_str::<String>(literal)
            .map_err(|e| Self::error_at(start, format!("bad string literal: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::super::*;
    use crate::anychain::Value;
    use serde_json::json;

    #[test]
    fn grammar_full_form() {
        let s = Scope::parse("google.my_activity.search[title=x, has audioFiles].{title,time}")
            .unwrap();
        let o = scope_json(json!({"provider":"google","path":"my_activity.search","predicates":[["=","title","x"],["has","audioFiles"]],"fields":["title","time"]})).unwrap();
        assert_eq!(s, o);
    }

    #[test]
    fn grammar_short_forms() {
        let s = Scope::parse("google.photos.*").unwrap();
        assert_eq!((s.provider.as_str(), s.path.as_str()), ("google", "photos"));
        assert_eq!(s.fields, Fields::All);
        assert_eq!(Scope::parse("google.photos").unwrap(), s);
        let all = Scope::parse("google.*").unwrap();
        assert_eq!(all.path, "");
        assert_eq!(Scope::parse("google").unwrap(), all);
        let deep = Scope::parse("google.my_activity.search").unwrap();
        assert_eq!(deep.path, "my_activity.search");
        assert_eq!(deep.fields, Fields::All);
        let f = Scope::parse("google.photos.{long, lat}").unwrap();
        assert_eq!(f.fields, Fields::Only(vec!["long".into(), "lat".into()]));
        let nf = Scope::parse("google[has x].*").unwrap();
        assert_eq!(nf.path, "");
        assert_eq!(nf.predicates, vec![Predicate::has("x")]);
        let quoted = Scope::parse(r#"google.chrome.{"Browser History",time_usec}"#).unwrap();
        assert_eq!(
            quoted.fields,
            Fields::Only(vec!["Browser History".into(), "time_usec".into()])
        );
    }

    #[test]
    fn grammar_every_operator() {
        let s = Scope::parse("p.a[a=1,b!=2,c<3,d<=4,e>5,f>=6,has g].*").unwrap();
        let ops: Vec<_> = s.predicates.iter().map(|p| p.op).collect();
        assert_eq!(ops, Op::ALL);
        let fields: Vec<_> = s.predicates.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["a", "b", "c", "d", "e", "f", "g"]);
        assert_eq!(s.predicates[3].value, Some(Value::Number(4.0)));
    }

    #[test]
    fn grammar_typed_values() {
        let s = Scope::parse(
            r#"google.photos[date>2018,title=x,d>"2018",b=true,n=null,f=-1.5e3,t=2019-01-01T00:00:00Z,q="a,b]c",z= spaced ,w="spaced out",e="",lead=01].*"#,
        )
        .unwrap();
        let values: Vec<_> = s.predicates.iter().map(|p| p.value.clone()).collect();
        assert_eq!(
            values,
            vec![
                Some(Value::Number(2018.0)),
                Some(Value::from("x")),
                Some(Value::from("2018")),
                Some(Value::Bool(true)),
                Some(Value::Null),
                Some(Value::Number(-1500.0)),
                Some(Value::from("2019-01-01T00:00:00Z")),
                Some(Value::from("a,b]c")),
                Some(Value::from("spaced")),
                Some(Value::from("spaced out")),
                Some(Value::from("")),
                Some(Value::from("01")),
            ]
        );
    }

    #[test]
    fn grammar_field_named_has() {
        let s = Scope::parse("p.a[has=1,has has].*").unwrap();
        assert_eq!(
            s.predicates,
            vec![Predicate::new(Op::Eq, "has", 1.0), Predicate::has("has")]
        );
    }

    fn syntax_pos(text: &str) -> usize {
        match Scope::parse(text) {
            Err(ScopeError::Syntax { pos, .. }) => pos,
            other => panic!("{text}: expected a syntax error, got {other:?}"),
        }
    }

    #[test]
    fn grammar_syntax_errors() {
        assert_eq!(syntax_pos("google.photos[date>2018"), 13);
        assert_eq!(syntax_pos("google.photos[date>2018].{a"), 25);
        assert_eq!(syntax_pos("google.photos]"), 13);
        assert_eq!(syntax_pos("google.photos[a=1]"), 18);
        assert_eq!(syntax_pos("google.photos[a=1]x"), 18);
        assert_eq!(syntax_pos("google.photos.*.x"), 15);
        assert_eq!(syntax_pos("google.photos.{a}.*"), 17);
        assert_eq!(syntax_pos("google."), 7);
        assert_eq!(syntax_pos("google..x"), 7);
        assert_eq!(syntax_pos("google.a-b"), 8);
        assert_eq!(syntax_pos("google.photos[a=1,]"), 18);
        assert_eq!(syntax_pos("google.photos[a].*"), 15);
        assert_eq!(syntax_pos("google.photos[a=].*"), 16);
        assert_eq!(syntax_pos("google.photos[has].*"), 17);
        assert_eq!(syntax_pos(r#"google.photos[a="x].*"#), 16);
        assert_eq!(syntax_pos(r#"google.photos[a=x"y].*"#), 17);
        assert_eq!(syntax_pos("google.photos[a=[1]].*"), 16);
        assert_eq!(syntax_pos("google.photos[a=1 b=2].*"), 17);
        assert_eq!(syntax_pos("google.photos[a=x\ty].*"), 17);
        assert_eq!(syntax_pos(r#"google.photos.{"a\q"}"#), 15);
        assert_eq!(syntax_pos("google{a}"), 6);
    }

    #[test]
    fn grammar_errors_are_typed() {
        assert_eq!(
            Scope::parse("google.photos[a==1].*"),
            Err(ScopeError::UnknownOperator("==".into()))
        );
        assert_eq!(
            Scope::parse("google.photos[a~x].*"),
            Err(ScopeError::UnknownOperator("~".into()))
        );
        assert_eq!(
            Scope::parse("google.photos[a=>x].*"),
            Err(ScopeError::UnknownOperator("=>".into()))
        );
        assert_eq!(
            Scope::parse("../x.*"),
            Err(ScopeError::BadProvider(String::new()))
        );
        assert_eq!(
            Scope::parse("x/../y.*"),
            Err(ScopeError::BadProvider("x/".into()))
        );
        assert_eq!(
            Scope::parse(""),
            Err(ScopeError::BadProvider(String::new()))
        );
        assert_eq!(
            Scope::parse("Google.photos"),
            Err(ScopeError::BadProvider("Google".into()))
        );
    }

    #[test]
    fn grammar_never_panics_on_odd_input() {
        for text in [
            "é",
            "p.é",
            "p[",
            "p[\"",
            "p[\"\\",
            "p[a=\"\\u12\"].*",
            "p.{",
            "p.{\"",
            "p[a=1].",
            "p[a=1].{",
            "p.a[😀=1].*",
            "p.a[a=😀].*",
            "p.a[a=\u{0}].*",
            "[",
            ".",
            "{",
            "]]]",
        ] {
            let _ = Scope::parse(text);
        }
        assert_eq!(
            Scope::parse("p.a[a=😀].*").unwrap().predicates[0].value,
            Some(Value::from("😀"))
        );
    }
}
