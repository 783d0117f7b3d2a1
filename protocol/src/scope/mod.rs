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
//!
//! # Where things are
//!
//! * the object form: `object.rs` (reading and writing scope values);
//! * the string grammar: `grammar.rs` (the parser) and `display.rs`
//!   ([`Scope::display`]);
//! * predicates and their matching: `predicate.rs`;
//! * instants of the time field: `instant.rs` (on top of [`crate::date`]);
//! * path selection and field projection: here.

mod display;
mod grammar;
mod instant;
mod object;
mod predicate;
#[cfg(test)]
mod testkit;

pub use instant::{instant, instant_str};
pub use predicate::{Op, Predicate};

use crate::js::ToPrimitiveError;
use serde_json::{Map, Value as Json};

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

#[cfg(test)]
mod tests {
    use super::testkit::*;
    use super::*;
    use serde_json::json;

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
