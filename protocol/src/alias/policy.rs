//! alias-bank's acceptance policy: stricter than the reference validators,
//! applied on top of them (PROTOCOL.md Part 1). Its errors say that the
//! data bank's policy, not the protocol, refused the document.

use super::clear::{check_clear, check_grant_clear, ClearError};
use super::documents::{AliasError, Grant};
use super::push::PushUrlError;
use crate::anychain::{Limits, Value, SIGNATURE_TYPE};

/// Dict keys refused anywhere in a document: JavaScript gives them special
/// meanings that the reference mishandles (`__proto__` is already refused
/// when decoding).
pub const FORBIDDEN_KEYS: [&str; 4] = ["__proto__", "constructor", "prototype", "toString"];

/// Why the policy refuses a grant that the reference validators accept.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PolicyError {
    /// A forbidden dict key.
    #[error("refused by policy: key {0:?} is not allowed")]
    ForbiddenKey(String),
    /// A signature date that is not milliseconds since the epoch.
    #[error("refused by policy: signature date must be a number of milliseconds since the epoch")]
    DateNotNumber,
    /// A signature dated too far in the future.
    #[error("refused by policy: signature date {date} is more than {skew_ms} ms in the future (now {now})")]
    FutureDate {
        /// The signature's date.
        date: f64,
        /// The clock now.
        now: f64,
        /// The tolerated skew.
        skew_ms: u64,
    },
    /// `base.contractual` is not exactly `true`.
    #[error("refused by policy: base.contractual must be exactly true")]
    ContractualNotTrue,
    /// A `legitimate` row whose length is not the group's number of scopes.
    #[error("refused by policy: base.legitimate[{group}] must have {expected} entries")]
    LegitimateRow {
        /// The group index.
        group: usize,
        /// The number of scopes of the group.
        expected: usize,
    },
    /// The client's push destination is refused.
    #[error("refused by policy: {0}")]
    Push(#[from] PushUrlError),
    /// A scope of the grant is not one the data bank understands.
    #[error("refused by policy: scope {index} of the grant: {reason}")]
    Scope {
        /// Position in the grant's scope list.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// The document is not signed in clear (a hash or box leaf, a
    /// non-boolean consent cell, a declaration signed by another key).
    #[error("refused by policy: {0}")]
    Clear(#[from] ClearError),
    /// The document itself is malformed.
    #[error(transparent)]
    Alias(#[from] AliasError),
}

/// The policy settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptancePolicy {
    /// How far in the future a signature date may be (default 5 minutes).
    pub max_future_skew_ms: u64,
    /// Size and depth limits for tokens.
    pub limits: Limits,
}

impl Default for AcceptancePolicy {
    fn default() -> Self {
        Self {
            max_future_skew_ms: 5 * 60 * 1000,
            limits: Limits::default(),
        }
    }
}

fn walk(
    value: &Value,
    visit: &mut dyn FnMut(&Value) -> Result<(), PolicyError>,
) -> Result<(), PolicyError> {
    visit(value)?;
    match value {
        Value::List(items) => items.iter().try_for_each(|v| walk(v, visit)),
        Value::Dict(d) => d.iter().try_for_each(|(_, v)| walk(v, visit)),
        _ => Ok(()),
    }
}

impl AcceptancePolicy {
    /// Checks the keys and signature dates of any verified document.
    pub fn check_document(&self, value: &Value, now_ms: f64) -> Result<(), PolicyError> {
        walk(value, &mut |v| {
            let Value::Dict(d) = v else { return Ok(()) };
            if let Some(key) = d.keys().find(|k| FORBIDDEN_KEYS.contains(k)) {
                return Err(PolicyError::ForbiddenKey(key.to_owned()));
            }
            if v.type_name() == Some(SIGNATURE_TYPE) {
                // A date replaced by its hash (as in revocations) is not checked.
                match d.get("date") {
                    Some(Value::Number(date)) if date.is_finite() => {
                        #[allow(clippy::cast_precision_loss)]
                        let skew = self.max_future_skew_ms as f64;
                        if *date > now_ms + skew {
                            return Err(PolicyError::FutureDate {
                                date: *date,
                                now: now_ms,
                                skew_ms: self.max_future_skew_ms,
                            });
                        }
                    }
                    Some(Value::Hash(_)) => {}
                    _ => return Err(PolicyError::DateNotNumber),
                }
            }
            Ok(())
        })
    }

    /// Checks a verified contract (shown to a user before they sign a
    /// grant of it): signed in clear, then [`Self::check_document`].
    pub fn check_contract(&self, value: &Value, now_ms: f64) -> Result<(), PolicyError> {
        check_clear("contract", value)?;
        self.check_document(value, now_ms)
    }

    /// Checks a verified bind authorization: signed in clear, then
    /// [`Self::check_document`].
    pub fn check_bind(&self, value: &Value, now_ms: f64) -> Result<(), PolicyError> {
        check_clear("bind", value)?;
        self.check_document(value, now_ms)
    }

    /// Checks a verified grant: signed in clear (before anything reads a
    /// cell or computes a scope), [`Self::check_document`], then the consent
    /// matrices exactly, the push destination and every granted scope.
    pub fn check_grant(&self, grant: &Grant, now_ms: f64) -> Result<(), PolicyError> {
        check_grant_clear(grant.value())?;
        self.check_document(grant.value(), now_ms)?;
        let contract = grant.contract();
        contract.push_base().map_err(|e| match e {
            AliasError::PushUrl(p) => PolicyError::Push(p),
            other => other.into(),
        })?;
        if grant.is_revoked() {
            return Ok(());
        }
        let contract_base = contract.base();
        let base = grant.body().get("base");
        let has = |b: Option<&Value>, k: &str| b.and_then(|b| b.get(k)).is_some();
        if has(contract_base, "contractual")
            && base.and_then(|b| b.get("contractual")) != Some(&Value::Bool(true))
        {
            return Err(PolicyError::ContractualNotTrue);
        }
        if has(contract_base, "legitimate") {
            let groups = contract_base
                .and_then(|b| b.get("legitimate"))
                .and_then(|l| l.get("groups"))
                .and_then(Value::as_list)
                .unwrap_or_default();
            let rows = base
                .and_then(|b| b.get("legitimate"))
                .and_then(Value::as_list)
                .unwrap_or_default();
            for (group, g) in groups.iter().enumerate() {
                let expected = g
                    .get("scopes")
                    .and_then(Value::as_list)
                    .map_or(0, <[Value]>::len);
                let got = rows.get(group).and_then(Value::as_list).map(<[Value]>::len);
                if got != Some(expected) {
                    return Err(PolicyError::LegitimateRow { group, expected });
                }
            }
        }
        for (index, scope) in grant.scopes()?.iter().enumerate() {
            crate::scope::Scope::from_value(scope).map_err(|e| PolicyError::Scope {
                index,
                reason: e.to_string(),
            })?;
        }
        Ok(())
    }
}
