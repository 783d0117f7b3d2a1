//! Helpers shared by the scope tests.

use super::{Record, Scope, ScopeError};
use serde_json::{json, Map, Value as Json};

pub(super) fn record(j: Json) -> Record {
    match j {
        Json::Object(m) => m,
        _ => Map::new(),
    }
}

pub(super) fn scope_json(j: Json) -> Result<Scope, ScopeError> {
    Scope::from_json(&j)
}

pub(super) fn one(op: &str, field: &str, value: Json) -> Scope {
    scope_json(json!({"provider":"p","path":"a","predicates":[[op, field, value]]})).unwrap()
}
