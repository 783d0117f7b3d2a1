//! "Signed in clear": anychain lets any value of a signed document be
//! replaced by its hash (`{"__hash": …}`) without changing the fold or the
//! signature, and lets a sealed box (`{"__box": …}`) stand anywhere. The
//! reference reads such a leaf with JavaScript truthiness, so a declined
//! consent cell `false` replaced by `{"__hash": fold(false)}` reads as
//! granted. alias-bank refuses every hash or box leaf in the documents it
//! accepts (grants, contracts with their client declarations, bind
//! authorizations): every value there is one the bank interprets or shows.
//! Consent, legitimate and `revoked` cells must be JSON booleans, and a
//! client declaration's `crypto.sign`, when given, must be its signer.

use super::validators::GRANT;
use crate::anychain::{Value, SIGNATURE_TYPE};

/// Longest rendering of one path segment in an error (keys are untrusted).
const MAX_SEGMENT: usize = 64;

/// Why a document is not signed in clear.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClearError {
    /// A value replaced by its hash.
    #[error("{path} is a hash ({{\"__hash\":…}}), not the clear value: the data bank accepts only clear values")]
    Hashed {
        /// Where, e.g. `grant.body.base.consent.0.1`.
        path: String,
    },
    /// A sealed box where a clear value belongs.
    #[error("{path} is a sealed box ({{\"__box\":…}}), not the clear value: the data bank accepts only clear values")]
    Boxed {
        /// Where.
        path: String,
    },
    /// A consent, legitimate or `revoked` cell that is not `true` or `false`.
    #[error("{path} must be a JSON boolean ({found})")]
    NotBoolean {
        /// Where.
        path: String,
        /// What was found instead.
        found: &'static str,
    },
    /// A client declaration signed by another key than its `crypto.sign`.
    #[error("{path} names another key than the one that signed the client declaration")]
    ClientKeyMismatch {
        /// Where (the `crypto.sign` field).
        path: String,
    },
}

impl ClearError {
    /// The stable machine-readable code: `hashed_value`, `boxed_value`,
    /// `not_boolean` or `client_key_mismatch`.
    pub fn code(&self) -> &'static str {
        match self {
            ClearError::Hashed { .. } => "hashed_value",
            ClearError::Boxed { .. } => "boxed_value",
            ClearError::NotBoolean { .. } => "not_boolean",
            ClearError::ClientKeyMismatch { .. } => "client_key_mismatch",
        }
    }

    /// The path the error names.
    pub fn path(&self) -> &str {
        match self {
            ClearError::Hashed { path }
            | ClearError::Boxed { path }
            | ClearError::NotBoolean { path, .. }
            | ClearError::ClientKeyMismatch { path } => path,
        }
    }
}

fn segment(key: &str) -> String {
    if key.chars().count() <= MAX_SEGMENT {
        return key.to_owned();
    }
    let mut s: String = key.chars().take(MAX_SEGMENT).collect();
    s.push('…');
    s
}

fn join(path: &str, key: &str) -> String {
    format!("{path}.{}", segment(key))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::List(_) => "a list",
        Value::Dict(_) => "an object",
        Value::Bytes(_) => "bytes",
        Value::Hash(_) => "a hash",
        Value::Box(_) => "a sealed box",
    }
}

/// Refuses any hash or box leaf anywhere under `value`, naming its path
/// from `root` (e.g. `grant`). Also checks, for every signed client
/// declaration met, that its `crypto.sign` (when given) is its signer.
pub fn check_clear(root: &str, value: &Value) -> Result<(), ClearError> {
    walk(root, &mut Vec::new(), value)
}

/// One step of the path from the root: a dict key or a list index.
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// The path text of `steps` below `root` (only written for an error).
fn render(root: &str, steps: &[Step<'_>]) -> String {
    let mut path = root.to_owned();
    for step in steps {
        path = match step {
            Step::Key(k) => join(&path, k),
            Step::Index(i) => join(&path, &i.to_string()),
        };
    }
    path
}

fn walk<'a>(root: &str, steps: &mut Vec<Step<'a>>, value: &'a Value) -> Result<(), ClearError> {
    match value {
        Value::Hash(_) => Err(ClearError::Hashed {
            path: render(root, steps),
        }),
        Value::Box(_) => Err(ClearError::Boxed {
            path: render(root, steps),
        }),
        Value::List(items) => items.iter().enumerate().try_for_each(|(i, v)| {
            steps.push(Step::Index(i));
            let r = walk(root, steps, v);
            steps.pop();
            r
        }),
        Value::Dict(d) => {
            d.iter().try_for_each(|(k, v)| {
                steps.push(Step::Key(k));
                let r = walk(root, steps, v);
                steps.pop();
                r
            })?;
            if client_key_matches(value) {
                Ok(())
            } else {
                Err(ClearError::ClientKeyMismatch {
                    path: format!("{}.body.crypto.sign", render(root, steps)),
                })
            }
        }
        _ => Ok(()),
    }
}

/// A signed `alias.client.decl` whose body names a signing key
/// (`crypto.sign`) must be signed by that key.
fn client_key_matches(value: &Value) -> bool {
    if value.type_name() != Some(SIGNATURE_TYPE) {
        return true;
    }
    let Some(body) = value.get("body") else {
        return true;
    };
    if body.type_name() != Some(super::validators::CLIENT_DECL) {
        return true;
    }
    let named = match body.get("crypto") {
        Some(Value::Dict(c)) => c.get("sign"),
        _ => None,
    };
    match named {
        None | Some(Value::Null) => true,
        Some(Value::Bytes(k))
            if Some(k.as_slice()) == value.get("signer").and_then(Value::as_bytes) =>
        {
            true
        }
        Some(_) => false,
    }
}

fn boolean(path: String, v: Option<&Value>) -> Result<(), ClearError> {
    match v {
        Some(Value::Bool(_)) => Ok(()),
        other => Err(ClearError::NotBoolean {
            path,
            found: other.map_or("missing", kind),
        }),
    }
}

/// A consent or legitimate matrix: a list of lists of booleans.
fn matrix(path: String, v: Option<&Value>) -> Result<(), ClearError> {
    let Some(rows) = v else { return Ok(()) };
    let Value::List(rows) = rows else {
        return Err(ClearError::NotBoolean {
            path,
            found: "not a list of lists of booleans",
        });
    };
    for (g, row) in rows.iter().enumerate() {
        let row_path = join(&path, &g.to_string());
        let Value::List(cells) = row else {
            return Err(ClearError::NotBoolean {
                path: row_path,
                found: "not a list of booleans",
            });
        };
        for (s, cell) in cells.iter().enumerate() {
            boolean(join(&row_path, &s.to_string()), Some(cell))?;
        }
    }
    Ok(())
}

/// A signed grant (the signature object) in clear: [`check_clear`] from
/// `grant`, `revoked` a boolean, and when consented the `consent` and
/// `legitimate` matrices lists of lists of booleans.
pub fn check_grant_clear(grant: &Value) -> Result<(), ClearError> {
    check_clear("grant", grant)?;
    let Some(body) = grant.get("body").filter(|b| b.type_name() == Some(GRANT)) else {
        return Ok(());
    };
    boolean("grant.body.revoked".to_owned(), body.get("revoked"))?;
    if body.get("revoked") == Some(&Value::Bool(true)) {
        return Ok(());
    }
    let base = body.get("base");
    matrix(
        "grant.body.base.consent".to_owned(),
        base.and_then(|b| b.get("consent")),
    )?;
    matrix(
        "grant.body.base.legitimate".to_owned(),
        base.and_then(|b| b.get("legitimate")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alias::build::{group, scope, ContractDoc};
    use crate::alias::grant_body;
    use crate::anychain::{fold, sign, signing_key_from_seed, Dict};

    fn decl(sign_key: Option<Value>) -> Value {
        let mut crypto = Dict::new();
        if let Some(k) = sign_key {
            crypto.insert("sign", k);
        }
        let body = Dict::new()
            .with("type", "alias.client.decl")
            .with("name", "C")
            .with("domain", "client.example")
            .with("crypto", crypto);
        sign(&signing_key_from_seed(&[1; 32]), Value::Dict(body), 1.0).unwrap()
    }

    fn contract(client: Value) -> Value {
        ContractDoc::new(client)
            .consent(group([scope("google", "photos")], &[]))
            .build()
    }

    fn own_key() -> Value {
        Value::Bytes(
            signing_key_from_seed(&[1; 32])
                .verifying_key()
                .as_bytes()
                .to_vec(),
        )
    }

    #[test]
    fn hash_and_box_leaves_are_refused_with_their_path() {
        let mut body = Dict::new()
            .with("type", "x")
            .with("a", Value::List(vec![Value::Null]));
        assert!(check_clear("doc", &Value::Dict(body.clone())).is_ok());
        body.insert(
            "a",
            Value::List(vec![Value::Null, Value::Hash(vec![1; 64])]),
        );
        let err = check_clear("doc", &Value::Dict(body.clone())).unwrap_err();
        assert_eq!(err.code(), "hashed_value");
        assert_eq!(err.path(), "doc.a.1");
        body.insert("b", Value::Box(vec![2; 80]));
        body.insert("a", Value::Null);
        let err = check_clear("doc", &Value::Dict(body)).unwrap_err();
        assert_eq!(err.code(), "boxed_value");
        assert_eq!(err.path(), "doc.b");
    }

    #[test]
    fn long_keys_are_cut_in_paths() {
        let key = "k".repeat(1000);
        let v = Value::Dict(Dict::new().with(key, Value::Hash(vec![])));
        let err = check_clear("d", &v).unwrap_err();
        assert!(err.path().chars().count() < 80, "{}", err.path());
    }

    #[test]
    fn hashed_false_consent_cell_is_refused() {
        let c = contract(decl(Some(own_key())));
        let Value::Dict(mut b) = grant_body(&c, vec![vec![false]], vec![]).unwrap() else {
            unreachable!()
        };
        let user = signing_key_from_seed(&[2; 32]);
        let clear = sign(&user, Value::Dict(b.clone()), 5.0).unwrap();
        assert!(check_grant_clear(&clear).is_ok());
        let Some(Value::Dict(mut base)) = b.get("base").cloned() else {
            unreachable!()
        };
        let hashed = fold(&Value::Bool(false)).unwrap().into_value();
        base.insert("consent", Value::List(vec![Value::List(vec![hashed])]));
        b.insert("base", Value::Dict(base.clone()));
        let forged = sign(&user, Value::Dict(b.clone()), 5.0).unwrap();
        // Same fold: the user's signature over the clear grant still holds.
        assert_eq!(fold(&forged).unwrap(), fold(&clear).unwrap());
        let err = check_grant_clear(&forged).unwrap_err();
        assert_eq!(err.code(), "hashed_value");
        assert_eq!(err.path(), "grant.body.base.consent.0.0");

        for (bad, found) in [
            (Value::Number(1.0), "a number"),
            (Value::from("true"), "a string"),
            (Value::Null, "null"),
        ] {
            base.insert("consent", Value::List(vec![Value::List(vec![bad])]));
            b.insert("base", Value::Dict(base.clone()));
            let g = sign(&user, Value::Dict(b.clone()), 5.0).unwrap();
            let err = check_grant_clear(&g).unwrap_err();
            assert_eq!(
                err,
                ClearError::NotBoolean {
                    path: "grant.body.base.consent.0.0".into(),
                    found
                }
            );
        }
        base.insert("legitimate", Value::Dict(Dict::new()));
        base.insert(
            "consent",
            Value::List(vec![Value::List(vec![Value::Bool(true)])]),
        );
        b.insert("base", Value::Dict(base));
        let g = sign(&user, Value::Dict(b.clone()), 5.0).unwrap();
        assert_eq!(
            check_grant_clear(&g).unwrap_err().path(),
            "grant.body.base.legitimate"
        );
        b.insert("revoked", Value::Number(0.0));
        let g = sign(&user, Value::Dict(b), 5.0).unwrap();
        assert_eq!(
            check_grant_clear(&g).unwrap_err().path(),
            "grant.body.revoked"
        );
    }

    #[test]
    fn declaration_must_be_signed_by_the_key_it_names() {
        assert!(check_clear("contract", &contract(decl(None))).is_ok());
        assert!(check_clear("contract", &contract(decl(Some(own_key())))).is_ok());
        let other = Value::Bytes(
            signing_key_from_seed(&[9; 32])
                .verifying_key()
                .as_bytes()
                .to_vec(),
        );
        for named in [other, Value::from("AQID"), Value::Bytes(vec![])] {
            let err = check_clear("contract", &contract(decl(Some(named)))).unwrap_err();
            assert_eq!(err.code(), "client_key_mismatch");
            assert_eq!(err.path(), "contract.client.body.crypto.sign");
        }
    }
}
