//! Scopes: which records of which provider a grant gives, and which of
//! their fields.
//!
//! # Object form (canonical)
//!
//! Contracts carry scopes as objects (PROTOCOL §5.1):
//!
//! ```json
//! {"provider":"google","path":"my_activity.search",
//!  "predicates":[["=","title","x"],["has","audioFiles"]],"fields":["title","time"]}
//! ```
//!
//! * `provider`: a non-empty `[a-z0-9_]+` name (anchored, unlike the
//!   reference, so that `../x` is refused);
//! * `path`: dot-separated `[A-Za-z0-9_]+` segments; `""`, `"*"` and `".*"`
//!   mean every path of the provider and are all stored as `""`. The path is
//!   **not** a regular expression (Part 1): see [`Scope::selects_path`];
//! * `predicates` (optional, `null` = none): `[op, field, value]` or
//!   `["has", field]`, values JSON scalars;
//! * `fields` (optional): absent, `null` or `"*"` mean all fields, a list of
//!   strings keeps exactly those top-level keys.
//!
//! Extra keys are ignored here, as the reference does; they still belong to
//! the scope id, which is the fold of the original value and is computed
//! from that value, never from [`Scope::to_value`].
//!
//! # String grammar
//!
//! The string form of the protocol text is parsed into the same [`Scope`]:
//!
//! ```text
//! scope     = provider *( "." segment ) [ filters "." fieldspec / "." fieldspec ]
//! provider  = 1*( a-z / 0-9 / "_" )
//! segment   = 1*( A-Z / a-z / 0-9 / "_" )
//! filters   = "[" [ filter *( "," filter ) ] "]"
//! filter    = name op value  /  "has" 1*ws name
//! op        = "<=" / ">=" / "!=" / "<" / ">" / "="
//! fieldspec = "*"  /  "{" [ name *( "," name ) ] "}"
//! name      = 1*( letter / digit / "_" / "-" / "$" / "@" )  /  json-string
//! value     = json-string  /  bare
//! ```
//!
//! Examples: `google.my_activity.search[title=x,has audioFiles].{title,time}`,
//! `google.photos[date>"2018"].*`, `google.*` (every path, every field).
//!
//! * Whitespace is allowed around the parts of a filter and inside `{…}`,
//!   nowhere else.
//! * A run of operator characters (`<>=!~`) must be one of the six
//!   operators: `a==1` or `a=>1` fail with
//!   [`ScopeError::UnknownOperator`].
//! * A bare value runs up to the next `,` or `]` (surrounding whitespace
//!   dropped) and may not contain `"`, `[`, `{`, `}`, whitespace or control
//!   characters.
//!   It is typed: when it is a JSON number, `true`, `false` or `null` it is
//!   that value, otherwise a string. So `date>2018` compares with the number
//!   2018, `title=x` with the string `"x"`, and `date>"2018"` with the
//!   string `"2018"`. A quoted value is a JSON string literal and may hold
//!   commas and brackets.
//! * Without filters, the trailing `.*` / `.{…}` may be left out:
//!   `google.my_activity.search` is provider `google`, path
//!   `my_activity.search`, all fields. (The older Python grammar read the
//!   last segment as a field name; this one never does.) With filters the
//!   trailing part is required: `google.photos[date>2018]` is an error.
//! * Errors carry the byte offset into the text.
//!
//! [`Scope::display`] renders a scope in this grammar, always with the
//! trailing `.*` or `.{…}`, quoting names and values where a bare form
//! would read back differently, so that [`Scope::parse`] returns an equal
//! scope.
//!
//! # Matching
//!
//! [`Scope::matches`] applies the predicates to the top-level fields of a
//! JSON record with the reference's JavaScript semantics (strict equality,
//! relational comparison with UTF-16 string order, missing field =
//! `undefined`), except on the record's time field, where date strings and
//! epoch numbers compare as instants (see [`instant`]).

use crate::anychain::{Dict, Value};
use crate::js::{self, ToPrimitiveError};
use serde_json::{Map, Value as Json};
use std::fmt;

/// A JSON record (one element of a dump's JSON array).
pub type Record = Map<String, Json>;

/// Why a scope could not be read, or a record could not be matched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// The scope value is neither an object nor a string.
    #[error("a scope must be an object or a string")]
    NotAScope,
    /// The `provider` key is missing or not a string.
    #[error("scope provider must be a string")]
    ProviderType,
    /// The provider name is not a non-empty `[a-z0-9_]+` name.
    #[error("bad scope provider {0:?}: expected a non-empty [a-z0-9_]+ name")]
    BadProvider(String),
    /// The `path` key is missing or not a string.
    #[error("scope path must be a string")]
    PathType,
    /// The path is not dot-separated `[A-Za-z0-9_]+` segments, `""`, `*` or `.*`.
    #[error("bad scope path {0:?}: expected dot-separated [A-Za-z0-9_]+ segments, \"\", \"*\" or \".*\"")]
    BadPath(String),
    /// `predicates` is present but neither null nor a list.
    #[error("scope predicates must be a list")]
    PredicatesType,
    /// A predicate is not `[op, field, value]` or `["has", field]`.
    #[error("bad scope predicate #{index}: {reason}")]
    BadPredicate {
        /// Position of the predicate in the list.
        index: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A predicate operator other than `= != < <= > >= has`.
    #[error("unknown predicate operator: {0}")]
    UnknownOperator(String),
    /// A predicate value that is not a string, finite number, boolean or null.
    #[error("bad value in scope predicate #{index}: expected a string, number, boolean or null")]
    BadPredicateValue {
        /// Position of the predicate in the list.
        index: usize,
    },
    /// `fields` is neither null, `"*"` nor a list of strings.
    #[error("bad scope fields: {0}")]
    BadFields(&'static str),
    /// The string grammar could not be read.
    #[error("scope syntax error at byte {pos}: {message}")]
    Syntax {
        /// Byte offset into the scope text.
        pos: usize,
        /// What was expected or found.
        message: String,
    },
    /// A relational comparison hit a value JavaScript cannot convert to a
    /// primitive (a record field holding `{"toString": …}`).
    #[error(transparent)]
    Comparison(#[from] ToPrimitiveError),
}

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

/// Which top-level fields of a record a scope keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fields {
    /// Every field (`fields` absent, `null` or `"*"`).
    All,
    /// Exactly these fields, when present.
    Only(Vec<String>),
}

/// A scope: a provider, a path of its catalog, predicates and a field list.
#[derive(Debug, Clone, PartialEq)]
pub struct Scope {
    /// The provider name, `[a-z0-9_]+`.
    pub provider: String,
    /// The catalog path, dot-separated `[A-Za-z0-9_]+` segments, or `""`
    /// for every path.
    pub path: String,
    /// Predicates that must all hold (AND).
    pub predicates: Vec<Predicate>,
    /// The fields kept.
    pub fields: Fields,
}

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

    /// Reads the string grammar (see the module documentation).
    pub fn parse(text: &str) -> Result<Scope, ScopeError> {
        Parser { src: text, pos: 0 }.scope()
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

    /// The string-grammar form, which [`Scope::parse`] reads back to an
    /// equal scope.
    pub fn display(&self) -> String {
        self.to_string()
    }

    /// Whether the scope selects every path of its provider.
    pub fn all_paths(&self) -> bool {
        self.path.is_empty()
    }

    /// Whether the scope selects `catalog_path`: the paths equal to the
    /// scope's path or below it, segment by segment (`my_activity` selects
    /// `my_activity.search` but not `my_activity_x.search`). An empty path
    /// (also written `*` or `.*`) selects every path.
    pub fn selects_path(&self, catalog_path: &str) -> bool {
        let path = self.path.as_str();
        if matches!(path, "" | "*" | ".*") {
            return true;
        }
        match catalog_path.strip_prefix(path) {
            Some(rest) => rest.is_empty() || rest.starts_with('.'),
            None => false,
        }
    }

    /// Whether every predicate holds for `record` (see
    /// [`Predicate::holds`]). `time_field` is the field the catalog declares
    /// as the record's time, if any.
    pub fn matches(&self, record: &Record, time_field: Option<&str>) -> Result<bool, ScopeError> {
        for p in &self.predicates {
            if !p.holds(record, time_field)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Keeps the scope's fields of `record`: all of them, or exactly the
    /// listed keys that are present (missing keys are left out, as
    /// `undefined` disappears from JSON). Keys are inserted in list order;
    /// the resulting order is the map's own (sorted unless serde_json's
    /// `preserve_order` feature is on).
    pub fn project(&self, record: Record) -> Record {
        match &self.fields {
            Fields::All => record,
            Fields::Only(names) => {
                let mut record = record;
                let mut out = Map::new();
                for name in names {
                    if let Some(v) = record.remove(name) {
                        out.insert(name.clone(), v);
                    }
                }
                out
            }
        }
    }

    /// [`Scope::matches`] then [`Scope::project`]: the projected record when
    /// it matches, `None` otherwise.
    pub fn apply(
        &self,
        record: Record,
        time_field: Option<&str>,
    ) -> Result<Option<Record>, ScopeError> {
        if self.matches(&record, time_field)? {
            Ok(Some(self.project(record)))
        } else {
            Ok(None)
        }
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

/// Checks a provider name: non-empty `[a-z0-9_]+`.
fn check_provider(provider: &str) -> Result<(), ScopeError> {
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

fn is_path_char(c: char) -> bool {
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
fn is_scalar(v: &Value) -> bool {
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

// ---------------------------------------------------------------------------
// String grammar

/// Characters of a bare field name.
fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '$' | '@')
}

/// Characters that make up an operator token.
fn is_op_char(c: char) -> bool {
    matches!(c, '<' | '>' | '=' | '!' | '~')
}

/// Characters `display` writes bare in a string value.
fn is_bare_value_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '+' | '/' | '@')
}

/// The JSON scalar a bare value text stands for, if it is one (number,
/// `true`, `false`, `null`).
fn json_scalar(text: &str) -> Option<Value> {
    match serde_json::from_str::<Json>(text) {
        Ok(j @ (Json::Number(_) | Json::Bool(_) | Json::Null)) => {
            let v = Value::from_plain_json(&j);
            // serde_json never yields a non-finite number, but stay safe.
            is_scalar(&v).then_some(v)
        }
        _ => None,
    }
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

// ---------------------------------------------------------------------------
// Instants

const NANOS_PER_SEC: i128 = 1_000_000_000;

/// The instant a time-field value stands for, in nanoseconds since
/// 1970-01-01T00:00:00Z, or `None` when it is not a recognizable instant.
///
/// * Strings in ISO 8601 / RFC 3339 form: `YYYY`, `YYYY-MM`, `YYYY-MM-DD`
///   (midnight UTC), or a date, `T` (also `t` or a space), `HH:MM`,
///   optional `:SS`, optional fraction (`.` or `,`, digits past the ninth
///   ignored), then `Z`, `z`, `±HH`, `±HH:MM` or `±HHMM`; without an offset
///   the time is read as UTC. Years 0000–9999; fields are range-checked
///   (second 60 is accepted as a leap second).
/// * Numbers, and strings holding a plain decimal number (`"1562766828"`,
///   as some exports write them), are epoch times whose unit follows from
///   the magnitude: below 1e11 seconds, below 1e14 milliseconds, below 1e17
///   microseconds, below 1e20 nanoseconds; larger ones are no instant.
///   A bare 4-digit string is a year, not seconds. Note that a predicate
///   *number* such as 2018 therefore means 2018 seconds after the epoch:
///   write `"2018"` or `2018-01-01` for the year.
pub fn instant(value: &Value) -> Option<i128> {
    match value {
        Value::Number(n) => epoch_number(*n),
        Value::String(s) => instant_str(s),
        _ => None,
    }
}

/// [`instant`] of a string value, without building the [`Value`].
pub fn instant_str(s: &str) -> Option<i128> {
    parse_iso(s).or_else(|| numeric_string(s).and_then(epoch_number))
}

/// An epoch number in seconds, milliseconds, microseconds or nanoseconds,
/// by magnitude, as nanoseconds.
fn epoch_number(n: f64) -> Option<i128> {
    if !n.is_finite() {
        return None;
    }
    let a = n.abs();
    let factor: i128 = if a < 1e11 {
        NANOS_PER_SEC
    } else if a < 1e14 {
        1_000_000
    } else if a < 1e17 {
        1_000
    } else if a < 1e20 {
        1
    } else {
        return None;
    };
    // |n| < 1e20: the integer part converts exactly and in range.
    let whole = n.trunc() as i128;
    let frac = (n.fract() * factor as f64).round() as i128;
    Some(whole * factor + frac)
}

/// A string holding a plain decimal number: `-?[0-9]+(\.[0-9]+)?`.
fn numeric_string(s: &str) -> Option<f64> {
    let unsigned = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = match unsigned.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (unsigned, None),
    };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || !frac.is_none_or(digits) {
        return None;
    }
    s.parse().ok()
}

/// Reads exactly `n` ASCII digits at `*i`.
fn fixed_digits(b: &[u8], i: &mut usize, n: usize) -> Option<i64> {
    let slice = b.get(*i..*i + n)?;
    if !slice.iter().all(u8::is_ascii_digit) {
        return None;
    }
    *i += n;
    Some(
        slice
            .iter()
            .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0')),
    )
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days from 1970-01-01 to the given proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses the ISO 8601 / RFC 3339 forms described at [`instant`].
fn parse_iso(s: &str) -> Option<i128> {
    let b = s.as_bytes();
    let mut i = 0;
    let at = |i: usize| b.get(i).copied();
    let year = fixed_digits(b, &mut i, 4)?;
    let (mut month, mut day) = (1, 1);
    let (mut hour, mut minute, mut second, mut nanos) = (0, 0, 0, 0i64);
    let mut offset_minutes = 0i64;
    'parse: {
        if i == b.len() {
            break 'parse;
        }
        if at(i) != Some(b'-') {
            return None;
        }
        i += 1;
        month = fixed_digits(b, &mut i, 2)?;
        if i == b.len() {
            break 'parse;
        }
        if at(i) != Some(b'-') {
            return None;
        }
        i += 1;
        day = fixed_digits(b, &mut i, 2)?;
        if i == b.len() {
            break 'parse;
        }
        if !matches!(at(i), Some(b'T' | b't' | b' ')) {
            return None;
        }
        i += 1;
        hour = fixed_digits(b, &mut i, 2)?;
        if at(i) != Some(b':') {
            return None;
        }
        i += 1;
        minute = fixed_digits(b, &mut i, 2)?;
        if at(i) == Some(b':') {
            i += 1;
            second = fixed_digits(b, &mut i, 2)?;
            if matches!(at(i), Some(b'.' | b',')) {
                i += 1;
                let start = i;
                let mut scale = 100_000_000i64;
                while let Some(d) = at(i).filter(u8::is_ascii_digit) {
                    nanos += i64::from(d - b'0') * scale;
                    scale /= 10;
                    i += 1;
                }
                if i == start {
                    return None;
                }
            }
        }
        match at(i) {
            None => {}
            Some(b'Z' | b'z') => i += 1,
            Some(sign @ (b'+' | b'-')) => {
                i += 1;
                let oh = fixed_digits(b, &mut i, 2)?;
                let om = if i == b.len() {
                    0
                } else {
                    if at(i) == Some(b':') {
                        i += 1;
                    }
                    fixed_digits(b, &mut i, 2)?
                };
                if oh > 23 || om > 59 {
                    return None;
                }
                let total = oh * 60 + om;
                offset_minutes = if sign == b'-' { -total } else { total };
            }
            Some(_) => return None,
        }
        if i != b.len() {
            return None;
        }
    }
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    Some(i128::from(secs) * NANOS_PER_SEC + i128::from(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(j: Json) -> Record {
        match j {
            Json::Object(m) => m,
            _ => Map::new(),
        }
    }

    fn scope_json(j: Json) -> Result<Scope, ScopeError> {
        Scope::from_json(&j)
    }

    fn one(op: &str, field: &str, value: Json) -> Scope {
        scope_json(json!({"provider":"p","path":"a","predicates":[[op, field, value]]})).unwrap()
    }

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

    // ---- paths -------------------------------------------------------

    #[test]
    fn selects_path_segment_by_segment() {
        let s = |path: &str| Scope::parse(&format!("google.{path}.*")).unwrap();
        let my = s("my_activity");
        assert!(my.selects_path("my_activity"));
        assert!(my.selects_path("my_activity.search"));
        assert!(my.selects_path("my_activity.assistant"));
        assert!(!my.selects_path("my_activity_x.search"));
        assert!(!my.selects_path("my"));
        assert!(!my.selects_path("other.my_activity"));
        let search = s("my_activity.search");
        assert!(search.selects_path("my_activity.search"));
        assert!(!search.selects_path("my_activity.assistant"));
        assert!(!search.selects_path("my_activityXsearch"));
        let all = Scope::parse("google.*").unwrap();
        assert!(all.selects_path("anything.at.all"));
        assert!(all.selects_path(""));
    }

    // ---- grammar -----------------------------------------------------

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

    // ---- display round trip -------------------------------------------

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
        use super::super::*;
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

    // ---- matching ----------------------------------------------------

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

    // ---- time field ----------------------------------------------------

    #[test]
    fn instants_from_strings() {
        let ns = |s: &str| instant(&Value::from(s));
        let jan1 = Some(1_546_300_800 * NANOS_PER_SEC);
        assert_eq!(ns("2019-01-01"), jan1);
        assert_eq!(ns("2019-01-01T00:00:00Z"), jan1);
        assert_eq!(ns("2019-01-01T00:00Z"), jan1);
        assert_eq!(ns("2019-01-01t00:00:00z"), jan1);
        assert_eq!(ns("2019-01-01 00:00:00"), jan1);
        assert_eq!(ns("2019-01-01T01:00:00+01:00"), jan1);
        assert_eq!(ns("2019-01-01T01:00:00+0100"), jan1);
        assert_eq!(ns("2019-01-01T01:00:00+01"), jan1);
        assert_eq!(ns("2018-12-31T23:00:00-01:00"), jan1);
        assert_eq!(ns("2019-01"), jan1);
        assert_eq!(ns("2019"), jan1);
        assert_eq!(ns("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            ns("2019-07-10T13:53:48.123Z"),
            Some(1_562_766_828_123 * 1_000_000)
        );
        assert_eq!(
            ns("2019-07-10T13:53:48.123456789123Z"),
            Some(1_562_766_828_123_456_789)
        );
        assert_eq!(ns("2020-02-29"), Some(1_582_934_400 * NANOS_PER_SEC));
        assert_eq!(ns("1969-12-31T23:59:59Z"), Some(-NANOS_PER_SEC));
        assert_eq!(ns("0000-01-01"), Some(-62_167_219_200 * NANOS_PER_SEC));
        for bad in [
            "2019-02-29",
            "2019-13-01",
            "2019-00-10",
            "2019-01-32",
            "2019-01-01T24:00:00Z",
            "2019-01-01T00:60:00Z",
            "2019-01-01T00:00:00.Z",
            "2019-01-01T00:00:00+24:00",
            "2019-01-01T00:00:00Zx",
            "2019-01-01T00",
            "2019-1-1",
            "19-01-01",
            "yesterday",
            "",
            "-",
            "1.",
        ] {
            assert_eq!(ns(bad), None, "{bad}");
        }
    }

    #[test]
    fn instants_from_epoch_numbers() {
        let n = |x: f64| instant(&Value::Number(x));
        let t = 1_562_766_828_i128;
        assert_eq!(n(1_562_766_828.0), Some(t * NANOS_PER_SEC));
        assert_eq!(
            n(1_562_766_828_123.0),
            Some(t * NANOS_PER_SEC + 123_000_000)
        );
        assert_eq!(
            n(1_562_766_828_123_456.0),
            Some(t * NANOS_PER_SEC + 123_456_000)
        );
        assert_eq!(n(1_562_766_828.5), Some(t * NANOS_PER_SEC + 500_000_000));
        assert_eq!(n(-86_400.0), Some(-86_400 * NANOS_PER_SEC));
        assert_eq!(n(f64::NAN), None);
        assert_eq!(n(f64::INFINITY), None);
        assert_eq!(n(1e25), None);
        // Numeric strings count as epoch numbers, 4-digit ones as years.
        assert_eq!(
            instant(&Value::from("1562766828123")),
            Some(t * NANOS_PER_SEC + 123_000_000)
        );
        assert_eq!(
            instant(&Value::from("2018")),
            instant(&Value::from("2018-01-01"))
        );
        assert_eq!(instant(&Value::Bool(true)), None);
        assert_eq!(instant(&Value::Null), None);
    }

    #[test]
    fn time_field_compares_instants() {
        let s =
            Scope::parse("google.my_activity.search[time>=2019-07-10,time<2019-07-11].*").unwrap();
        let at = |v: Json| {
            s.matches(&record(json!({ "time": v })), Some("time"))
                .unwrap()
        };
        assert!(at(json!("2019-07-10T13:53:48.123Z")));
        assert!(!at(json!("2019-07-10T23:30:00-01:00")));
        assert!(at(json!(1_562_766_828_123_u64))); // epoch ms
        assert!(at(json!(1_562_766_828))); // epoch s
        assert!(at(json!("1562766828"))); // epoch s as a string
        assert!(!at(json!("2019-07-09T23:59:59.999Z")));
        assert!(!at(json!(1_562_716_799_999_u64)));
        // Without the time field declared, plain JS comparison applies:
        // string order ("2019-07-10T…" >= "2019-07-10" is true, number vs
        // date string is NaN → false).
        assert!(s
            .matches(&record(json!({"time": "2019-07-10T13:53:48.123Z"})), None)
            .unwrap());
        assert!(!s
            .matches(&record(json!({"time": 1_562_766_828_123_u64})), None)
            .unwrap());
    }

    #[test]
    fn time_field_equality_and_fallback() {
        let eq = one("=", "time", json!("2019-07-10T13:53:48.123Z"));
        let r = record(json!({"time": 1_562_766_828_123_u64}));
        assert!(eq.matches(&r, Some("time")).unwrap());
        assert!(!eq.matches(&r, None).unwrap());
        let ne = one("!=", "time", json!("2019-07-10T15:53:48.123+02:00"));
        assert!(!ne.matches(&r, Some("time")).unwrap());
        // Not an instant on one side: plain JS comparison.
        let word = one("=", "time", json!("soon"));
        assert!(word
            .matches(&record(json!({"time": "soon"})), Some("time"))
            .unwrap());
        let lt = one("<", "time", json!("b"));
        assert!(lt
            .matches(&record(json!({"time": "a"})), Some("time"))
            .unwrap());
        // Other fields are unaffected by the time field.
        let other = one("<", "n", json!("2019"));
        assert!(other
            .matches(&record(json!({"n": 5})), Some("time"))
            .unwrap());
        // A missing time field stays undefined.
        assert!(!one("<", "time", json!(1e12))
            .matches(&record(json!({})), Some("time"))
            .unwrap());
    }

    // ---- projection ----------------------------------------------------

    #[test]
    fn projection_keeps_listed_fields() {
        let r = record(json!({"title": "x", "time": "t", "secret": 1}));
        let s = Scope::parse("p.a.{title,missing,time}").unwrap();
        let out = s.project(r.clone());
        assert_eq!(Json::Object(out), json!({"title": "x", "time": "t"}));
        let all = Scope::parse("p.a.*").unwrap();
        assert_eq!(all.project(r.clone()), r);
        let none = Scope::parse("p.a.{}").unwrap();
        assert!(none.project(r.clone()).is_empty());
        let dup = Scope::parse("p.a.{title,title}").unwrap();
        assert_eq!(Json::Object(dup.project(r)), json!({"title": "x"}));
    }

    #[test]
    fn apply_filters_then_projects() {
        let s = Scope::parse("p.a[n>1].{n}").unwrap();
        assert_eq!(
            s.apply(record(json!({"n": 2, "x": 1})), None).unwrap(),
            Some(record(json!({"n": 2})))
        );
        assert_eq!(s.apply(record(json!({"n": 0})), None).unwrap(), None);
    }
}
