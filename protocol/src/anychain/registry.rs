//! The validator registry: verifying a value walks the whole tree, children
//! before parents, and runs the validator of every typed dict (a dict with a
//! string `type`); a typed dict without a validator fails the whole value.

use super::fold::{fold_pass, DictFolds, Digest64, Fold, FoldError};
use super::memo::{dicts_in_pass_order, DocumentMemo};
use super::sigcache::SignatureCache;
use super::sign::{
    verify_revoke_value, verify_signature_folded, REVOKE_TYPE, SIGNATURE_TYPE, SIGNED_KEYS,
};
use super::value::Value;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

/// What [`Registry::verify_folded`] tells about each dict (typed ones
/// once they passed): the dict and its fold (or why it cannot be folded).
pub type Seen<'s> = dyn FnMut(&Value, Result<&[u8], &FoldError>) + 's;

/// A validator: checks one typed dict (passed as the [`Value::Dict`] that
/// holds it), failing with the reference's message.
pub type Validator = fn(&Value) -> Result<(), String>;

fn revoke_validator(v: &Value) -> Result<(), String> {
    v.as_dict().map_or(Ok(()), verify_revoke_value)
}

/// What checks a typed dict.
#[derive(Debug, Clone, Copy)]
enum Check {
    /// The built-in `anychain.signature` validator, fed by the pass's folds.
    Signature,
    /// Any other validator.
    Plain(Validator),
}

/// Why a value does not verify. The texts are the reference's, exactly.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A typed dict whose type has no validator.
    #[error("potentially invalid chain: no defined validator for type '{0}'")]
    UnknownType(String),
    /// A validator failed with this message.
    #[error("invalid chain: {0}")]
    Invalid(String),
}

/// Registering a type twice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("model '{0}' already registered")]
pub struct RegistryError(pub String);

/// A set of validators by type name, and optionally a cache of the
/// signatures of some document types that verified (see
/// [`Registry::cache_signatures_of`]).
#[derive(Debug, Clone)]
pub struct Registry {
    validators: HashMap<String, Check>,
    cache: Option<(Arc<SignatureCache>, Vec<String>)>,
    memo: Option<(Arc<DocumentMemo>, Vec<String>)>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::anychain()
    }
}

impl Registry {
    /// The library's built-in validators: `anychain.signature` and `anychain.revoke`.
    pub fn anychain() -> Self {
        let mut validators: HashMap<String, Check> = HashMap::new();
        validators.insert(SIGNATURE_TYPE.to_owned(), Check::Signature);
        validators.insert(REVOKE_TYPE.to_owned(), Check::Plain(revoke_validator));
        Self {
            validators,
            cache: None,
            memo: None,
        }
    }

    /// Adds a validator; a type can be registered once.
    pub fn register(&mut self, type_name: &str, validator: Validator) -> Result<(), RegistryError> {
        if self.validators.contains_key(type_name) {
            return Err(RegistryError(type_name.to_owned()));
        }
        self.validators
            .insert(type_name.to_owned(), Check::Plain(validator));
        Ok(())
    }

    /// Verifies the signatures whose body is of one of `body_types`
    /// through `cache`: documents signed once and embedded in many others
    /// (a client declaration in every contract of the client) are then
    /// verified once while they stay in the cache. The cache only ever
    /// skips the arithmetic of an exact (key, message, signature) triple
    /// that verified; every other check runs on every document.
    #[must_use]
    pub fn cache_signatures_of(mut self, cache: Arc<SignatureCache>, body_types: &[&str]) -> Self {
        self.cache = Some((cache, body_types.iter().map(|t| (*t).to_owned()).collect()));
        self
    }

    /// Remembers the sub-documents of one of `types` that verified, with
    /// the folds of their dicts, in `memo`: the same document met again
    /// (a contract in the grant of every user who accepts it) is then
    /// neither folded nor verified again while it stays there. Share a
    /// memo only between registries whose validators accept the same
    /// documents.
    #[must_use]
    pub fn memoize_documents(mut self, memo: Arc<DocumentMemo>, types: &[&str]) -> Self {
        self.memo = Some((memo, types.iter().map(|t| (*t).to_owned()).collect()));
        self
    }

    /// The document memo, if any.
    pub fn document_memo(&self) -> Option<&DocumentMemo> {
        self.memo.as_ref().map(|(m, _)| &**m)
    }

    /// The signature cache, if any.
    pub fn signature_cache(&self) -> Option<&SignatureCache> {
        self.cache.as_ref().map(|(c, _)| &**c)
    }

    /// Whether a type has a validator.
    pub fn knows(&self, type_name: &str) -> bool {
        self.validators.contains_key(type_name)
    }

    /// Verifies every typed dict of the tree, innermost first; the first
    /// failure stops the walk.
    pub fn verify(&self, value: &Value) -> Result<(), VerifyError> {
        self.verify_folded(value, &mut |_, _| {}).map(|_| ())
    }

    /// [`Registry::verify`], folding the tree in the same pass: each
    /// subtree is folded once, and a signature's signed part is derived
    /// from the folds of its entries (nothing is copied or folded again).
    /// Calls `seen` with every dict (a typed one once it passed its
    /// validator) and its fold, and returns the fold of the whole value (an error when it
    /// cannot be folded; the reference only folds on demand, so that is
    /// not a verification failure).
    pub fn verify_folded(
        &self,
        value: &Value,
        seen: &mut Seen<'_>,
    ) -> Result<Result<Fold, FoldError>, VerifyError> {
        let memo = self
            .memo
            .as_ref()
            .map(|(m, types)| (&**m, types.as_slice()));
        let memo_of = |node: &Value| {
            let (m, types) = memo?;
            let t = node.type_name()?;
            types.iter().any(|x| x == t).then_some(m)
        };
        // What both hooks of the pass reach: `seen`, and (with a memo) the
        // folds of every dict met so far, in pass order.
        let state: RefCell<(&mut Seen<'_>, Vec<Option<Digest64>>)> =
            RefCell::new((seen, Vec::new()));
        let folded = fold_pass(
            value,
            &mut |node, folds| {
                let Some(t) = node.type_name() else {
                    let mut st = state.borrow_mut();
                    (st.0)(node, folds.own());
                    if memo.is_some() {
                        st.1.push(folds.own().ok().and_then(|f| f.try_into().ok()));
                    }
                    return Ok(());
                };
                let check = self
                    .validators
                    .get(t)
                    .ok_or_else(|| VerifyError::UnknownType(t.to_owned()))?;
                match check {
                    Check::Plain(validator) => validator(node),
                    Check::Signature => self.check_signature(node, folds),
                }
                .map_err(VerifyError::Invalid)?;
                let mut st = state.borrow_mut();
                (st.0)(node, folds.own());
                if memo.is_some() {
                    st.1.push(folds.own().ok().and_then(|f| f.try_into().ok()));
                }
                if let Some(m) = memo_of(node) {
                    // Every dict below passed too: remember them all.
                    let mut dicts = Vec::new();
                    dicts_in_pass_order(node, &mut dicts);
                    let trail = &st.1;
                    let below = trail.get(trail.len().saturating_sub(dicts.len())..);
                    if let Some(below) = below.filter(|b| b.len() == dicts.len()) {
                        let all: Option<Vec<Digest64>> = below.iter().copied().collect();
                        if let Some(all) = all {
                            m.remember(node, &all);
                        }
                    }
                }
                Ok(())
            },
            &mut |node| {
                let folds = memo_of(node)?.lookup(node)?;
                let mut dicts = Vec::new();
                dicts_in_pass_order(node, &mut dicts);
                if dicts.len() != folds.len() {
                    return None;
                }
                let mut st = state.borrow_mut();
                for (dict, f) in dicts.into_iter().zip(folds.iter()) {
                    (st.0)(dict, Ok(f));
                    st.1.push(Some(*f));
                }
                folds.last().copied()
            },
        )?;
        Ok(folded.map(|f| f.to_fold()))
    }

    fn check_signature(&self, node: &Value, folds: &DictFolds<'_, '_>) -> Result<(), String> {
        let Some(sig) = node.as_dict() else {
            return Ok(());
        };
        let cache = self.cache.as_ref().and_then(|(cache, types)| {
            let body_type = node.get("body").and_then(Value::type_name)?;
            types.iter().any(|t| t == body_type).then_some(&**cache)
        });
        let message = folds.subset(&SIGNED_KEYS);
        verify_signature_folded(sig, message.as_ref().map(|m| &m[..]), cache)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anychain::{fold, sign, signing_key_from_seed, Dict, DocumentMemo};
    use std::num::NonZeroUsize;

    fn decl(name: &str, seed: u8) -> Value {
        let body = Value::Dict(Dict::new().with("type", "decl").with("name", name));
        sign(&signing_key_from_seed(&[seed; 32]), body, 1.0).unwrap()
    }

    /// A document embedding a signed declaration, as a contract does.
    fn holder(decl: Value) -> Value {
        Value::Dict(Dict::new().with("client", decl).with("x", 1.0))
    }

    fn cached(capacity: usize) -> Registry {
        let mut r = Registry::anychain();
        r.register("decl", |_| Ok(())).unwrap();
        let cache = SignatureCache::new(NonZeroUsize::new(capacity).unwrap());
        r.cache_signatures_of(Arc::new(cache), &["decl"])
    }

    fn with(v: &Value, key: &str, new: Value) -> Value {
        let mut d = v.as_dict().unwrap().clone();
        d.insert(key, new);
        Value::Dict(d)
    }

    #[test]
    fn forged_declarations_fail_after_the_genuine_one_was_cached() {
        let r = cached(8);
        let uncached = {
            let mut r = Registry::anychain();
            r.register("decl", |_| Ok(())).unwrap();
            r
        };
        let genuine = decl("Client", 1);
        assert_eq!(r.verify(&holder(genuine.clone())), Ok(()));
        assert_eq!(r.signature_cache().unwrap().len(), 1);
        assert_eq!(
            r.verify(&holder(genuine.clone())),
            Ok(()),
            "served by the cache"
        );

        let forged = VerifyError::Invalid("bad signature or forged document".into());
        let Some(Value::Bytes(sig)) = genuine.get("signature") else {
            unreachable!()
        };
        // Same payload, wrong signature.
        let mut wrong = sig.clone();
        wrong[5] ^= 1;
        let bad_sig = with(&genuine, "signature", Value::Bytes(wrong));
        assert_eq!(r.verify(&holder(bad_sig)), Err(forged.clone()));
        // Same payload, the genuine signature of another declaration.
        let other = decl("Other", 1);
        let swapped = with(
            &genuine,
            "signature",
            other.get("signature").unwrap().clone(),
        );
        assert_eq!(r.verify(&holder(swapped)), Err(forged.clone()));
        // Another payload under the genuine signature.
        let body = with(genuine.get("body").unwrap(), "name", Value::from("Evil"));
        assert_eq!(
            r.verify(&holder(with(&genuine, "body", body))),
            Err(forged.clone())
        );
        // The genuine payload and signature under another signer.
        let signer = other_signer();
        assert_eq!(
            r.verify(&holder(with(&genuine, "signer", signer))),
            Err(forged.clone())
        );
        // The signature swapped for its hash (same fold as the genuine
        // declaration): refused as without the cache.
        let hashed = fold(genuine.get("signature").unwrap())
            .unwrap()
            .into_value();
        let hashed_sig = holder(with(&genuine, "signature", hashed));
        assert_eq!(
            r.verify(&hashed_sig),
            Err(VerifyError::Invalid(
                "TypeError: unsupported input type for signature".into()
            ))
        );
        assert_eq!(r.verify(&hashed_sig), uncached.verify(&hashed_sig));
        // The body swapped for its hash: the signed fold is the genuine
        // one, so the verdict is the uncached one whatever the signature.
        let body_hash = fold(genuine.get("body").unwrap()).unwrap().into_value();
        let hashed_body = with(&genuine, "body", body_hash);
        let doc = holder(hashed_body.clone());
        assert_eq!(r.verify(&doc), uncached.verify(&doc));
        let mut wrong = sig.clone();
        wrong[0] ^= 1;
        let doc = holder(with(&hashed_body, "signature", Value::Bytes(wrong)));
        assert_eq!(r.verify(&doc), Err(forged));
        assert_eq!(uncached.verify(&doc), r.verify(&doc));
        // Only the genuine declaration was remembered (a body given as its
        // hash has no type, so it is not a cached kind).
        assert_eq!(r.signature_cache().unwrap().len(), 1);
    }

    fn other_signer() -> Value {
        Value::Bytes(
            signing_key_from_seed(&[2; 32])
                .verifying_key()
                .as_bytes()
                .to_vec(),
        )
    }

    #[test]
    fn the_cache_is_bounded_and_only_for_the_chosen_types() {
        let r = cached(2);
        for i in 0..5 {
            assert_eq!(r.verify(&holder(decl(&format!("c{i}"), 1))), Ok(()));
        }
        assert_eq!(r.signature_cache().unwrap().len(), 2);
        let other_type = sign(
            &signing_key_from_seed(&[1; 32]),
            Value::Dict(Dict::new().with("name", "untyped body")),
            1.0,
        )
        .unwrap();
        let before = r.signature_cache().unwrap().len();
        let fresh = cached(2);
        assert_eq!(fresh.verify(&other_type), Ok(()));
        assert!(fresh.signature_cache().unwrap().is_empty());
        assert_eq!(r.signature_cache().unwrap().len(), before);
    }

    #[test]
    fn the_pass_folds_as_fold_does() {
        let r = cached(2);
        let doc = holder(decl("Client", 3));
        let mut typed = Vec::new();
        let root = r
            .verify_folded(&doc, &mut |node, f| {
                typed.push((node.clone(), f.map(<[u8]>::to_vec).ok()));
            })
            .unwrap()
            .unwrap();
        assert_eq!(root, fold(&doc).unwrap());
        assert_eq!(typed.len(), 3, "the holder, the declaration, its signature");
        for (node, f) in typed {
            assert_eq!(f.unwrap(), fold(&node).unwrap().as_bytes());
        }
    }

    static HOLDER_CHECKS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    #[test]
    fn memoized_documents_are_folded_and_checked_once() {
        use std::sync::atomic::Ordering::SeqCst;
        let mut r = Registry::anychain();
        r.register("decl", |_| Ok(())).unwrap();
        r.register("holder", |v| {
            HOLDER_CHECKS.fetch_add(1, SeqCst);
            match v.get("x") {
                Some(Value::Number(n)) if *n >= 0.0 => Ok(()),
                _ => Err("x is negative".to_owned()),
            }
        })
        .unwrap();
        let memo = Arc::new(DocumentMemo::new(NonZeroUsize::new(4).unwrap()));
        let r = r.memoize_documents(memo.clone(), &["holder"]);
        let typed = |x: f64| {
            let Value::Dict(h) = holder(decl("Client", 3)) else {
                unreachable!()
            };
            let h = h.with("type", "holder").with("x", x);
            Value::List(vec![Value::Dict(h), Value::from("tail")])
        };
        let run = |doc: &Value| {
            let mut seen = Vec::new();
            let root = r.verify_folded(doc, &mut |node, f| {
                seen.push((node.clone(), f.map(<[u8]>::to_vec).ok()));
            });
            (root, seen)
        };
        let doc = typed(1.0);
        let before = HOLDER_CHECKS.load(SeqCst);
        let (first_root, first_seen) = run(&doc);
        assert_eq!(HOLDER_CHECKS.load(SeqCst), before + 1);
        assert_eq!(memo.len(), 1);
        let (second_root, second_seen) = run(&doc.clone());
        assert_eq!(
            HOLDER_CHECKS.load(SeqCst),
            before + 1,
            "answered from the memo"
        );
        assert_eq!(first_root.unwrap().unwrap(), fold(&doc).unwrap());
        assert_eq!(second_root.unwrap().unwrap(), fold(&doc).unwrap());
        assert_eq!(first_seen, second_seen);
        for (node, f) in &second_seen {
            assert_eq!(f.as_deref().unwrap(), fold(node).unwrap().as_bytes());
        }
        // Another value is checked (and fails) whatever the memo holds.
        assert_eq!(
            run(&typed(-1.0)).0.unwrap_err(),
            VerifyError::Invalid("x is negative".into())
        );
        assert_eq!(memo.len(), 1);
    }

    #[test]
    fn nested_unknown_type_fails() {
        let r = Registry::anychain();
        let v = Value::List(vec![Value::Dict(Dict::new().with("type", "foo"))]);
        assert_eq!(
            r.verify(&v).unwrap_err().to_string(),
            "potentially invalid chain: no defined validator for type 'foo'"
        );
        let untyped = Value::Dict(Dict::new().with("type", 5.0));
        assert!(r.verify(&untyped).is_ok());
    }

    #[test]
    fn register_twice_fails() {
        let mut r = Registry::anychain();
        let err = r.register(SIGNATURE_TYPE, |_| Ok(())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "model 'anychain.signature' already registered"
        );
    }

    #[test]
    fn children_are_checked_before_parent() {
        let mut r = Registry::anychain();
        r.register("outer", |_| Err("outer fails".to_owned()))
            .unwrap();
        r.register("inner", |_| Err("inner fails".to_owned()))
            .unwrap();
        let key = signing_key_from_seed(&[3; 32]);
        let body = Value::Dict(
            Dict::new()
                .with("type", "outer")
                .with("x", Value::Dict(Dict::new().with("type", "inner"))),
        );
        let v = sign(&key, body, 0.0).unwrap();
        assert_eq!(
            r.verify(&v).unwrap_err(),
            VerifyError::Invalid("inner fails".into())
        );
    }
}
