//! Previews of what a client would receive: asked for on the consent page
//! (the gateway starts one), computed by a processor (a dry run of the
//! build over the user's dumps), read back by the page. One record per user
//! and contract, `{ns}:preview:{user}:{contract}` (JSON), and one counter
//! of the previews a user started in the current hour,
//! `{ns}:preview_count:{user}`. A pending record expires after
//! [`PreviewLimits::pending_ttl`] (a processor that died leaves nothing
//! behind for long), a finished one after [`PreviewLimits::result_ttl`].

use super::StateError;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Longest user or contract id accepted in a preview key.
const MAX_ID: usize = 200;

/// Whose preview of which contract: a user's public key and a contract
/// hash, both URL-safe base64.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PreviewKey {
    user: String,
    contract: String,
}

impl PreviewKey {
    /// The key of `user`'s preview of `contract`; `None` unless both are
    /// 1 to 200 characters of `[A-Za-z0-9_-]`.
    pub fn new(user: &str, contract: &str) -> Option<PreviewKey> {
        let ok = |s: &str| {
            !s.is_empty()
                && s.len() <= MAX_ID
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        (ok(user) && ok(contract)).then(|| PreviewKey {
            user: user.to_owned(),
            contract: contract.to_owned(),
        })
    }

    /// The user.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The contract hash.
    pub fn contract(&self) -> &str {
        &self.contract
    }

    /// The record's name (after the namespace).
    pub(crate) fn record_name(&self) -> String {
        format!("preview:{{{}}}:{}", self.user, self.contract)
    }

    /// The name of the user's hourly counter (after the namespace).
    pub(crate) fn count_name(&self) -> String {
        format!("preview_count:{{{}}}", self.user)
    }
}

/// What the archive of one scope would hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeSummary {
    /// The scope in display form.
    pub scope: String,
    /// The archive's file name.
    pub file: String,
    /// Data files.
    pub files: u64,
    /// Records of the filtered files.
    pub records: u64,
    /// Bytes of the data files, uncompressed.
    pub bytes: u64,
    /// The first file names, in the archive's order (cut).
    pub first_files: Vec<String>,
    /// Up to 3 sample records as the client would receive them (cut; raw
    /// text, to be escaped by whoever shows it).
    pub samples: Vec<String>,
    /// Files selected but left out.
    pub skipped: u64,
    /// What could not be read, in words.
    pub notes: Vec<String>,
}

/// Where a preview is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum PreviewState {
    /// Queued or running.
    Pending,
    /// Computed.
    Ready {
        /// One per scope of a provider the user has a dump of, in the
        /// contract's order.
        scopes: Vec<ScopeSummary>,
        /// Scopes left out because the user has no dump of their provider.
        missing: Vec<String>,
        /// How long the dry run took.
        elapsed_ms: u64,
    },
    /// The dry run failed (the real transfer would fail the same way).
    Failed {
        /// Why, in words.
        reason: String,
    },
}

/// A preview record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preview {
    /// Names this run; a result is stored only for the run it names.
    pub id: String,
    /// The contract's scopes, in display form.
    pub requested: Vec<String>,
    /// When it was asked for (ms since the epoch).
    pub created_ms: u64,
    /// Where it is.
    #[serde(flatten)]
    pub state: PreviewState,
}

impl Preview {
    /// Whether it is still pending.
    pub fn is_pending(&self) -> bool {
        self.state == PreviewState::Pending
    }

    pub(crate) fn to_json(&self) -> Result<String, StateError> {
        serde_json::to_string(self).map_err(|e| StateError::Corrupt {
            key: format!("preview {}", self.id),
            reason: e.to_string(),
        })
    }

    pub(crate) fn from_json(key: &PreviewKey, text: &str) -> Result<Preview, StateError> {
        serde_json::from_str(text).map_err(|e| StateError::Corrupt {
            key: key.record_name(),
            reason: e.to_string(),
        })
    }
}

/// The bounds on previews.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreviewLimits {
    /// Previews a user may start per hour (the hour starts at the first).
    pub per_hour: u64,
    /// Lifetime of a pending record.
    pub pending_ttl: Duration,
    /// Lifetime of a finished record.
    pub result_ttl: Duration,
}

impl PreviewLimits {
    /// 20 an hour; pending 10 minutes; results kept 1 hour.
    pub const DEFAULT: PreviewLimits = PreviewLimits {
        per_hour: 20,
        pending_ttl: Duration::from_secs(600),
        result_ttl: Duration::from_secs(3600),
    };

    /// The window of [`PreviewLimits::per_hour`].
    pub const WINDOW: Duration = Duration::from_secs(3600);
}

impl Default for PreviewLimits {
    fn default() -> Self {
        PreviewLimits::DEFAULT
    }
}

/// What [`PreviewStore::start_preview`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreviewStart {
    /// A new pending preview was stored (queue its job).
    Started(Preview),
    /// One is already pending for this user and contract (nothing changed).
    Busy(Preview),
    /// The user started [`PreviewLimits::per_hour`] previews this hour
    /// (nothing changed).
    Limited {
        /// When the next may start.
        retry_after: Duration,
    },
}

/// Preview records, implemented by each backend.
#[async_trait::async_trait]
pub trait PreviewStore: Send + Sync {
    /// Starts a preview of `scopes` for `key`, atomically: refused while
    /// one is pending for the same key, or past the user's hourly limit;
    /// otherwise a pending record (a fresh id) replaces any earlier result
    /// and the user's count goes up.
    async fn start_preview(
        &self,
        key: &PreviewKey,
        scopes: &[String],
        limits: &PreviewLimits,
    ) -> Result<PreviewStart, StateError>;

    /// The preview of `key`, if one is stored and not expired.
    async fn preview(&self, key: &PreviewKey) -> Result<Option<Preview>, StateError>;

    /// Stores the outcome of run `id`, kept `ttl`: only while that run is
    /// the pending one (false otherwise, and nothing changes).
    async fn finish_preview(
        &self,
        key: &PreviewKey,
        id: &str,
        state: &PreviewState,
        ttl: Duration,
    ) -> Result<bool, StateError>;

    /// Forgets the preview of `key`; true when one was stored.
    async fn forget_preview(&self, key: &PreviewKey) -> Result<bool, StateError>;
}

/// A fresh run id.
pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_take_only_url_safe_ids() {
        let k = PreviewKey::new("user_A-1", "c0ntract").unwrap();
        assert_eq!(k.record_name(), "preview:{user_A-1}:c0ntract");
        assert_eq!(k.count_name(), "preview_count:{user_A-1}");
        for (u, c) in [
            ("", "c"),
            ("u", ""),
            ("u:x", "c"),
            ("u", "c*"),
            ("u", "c/../d"),
        ] {
            assert!(PreviewKey::new(u, c).is_none(), "{u:?} {c:?}");
        }
        assert!(PreviewKey::new(&"a".repeat(201), "c").is_none());
    }

    #[test]
    fn records_are_json_with_a_state_tag() {
        let p = Preview {
            id: "i".into(),
            requested: vec!["google.*".into()],
            created_ms: 5,
            state: PreviewState::Failed { reason: "r".into() },
        };
        let k = PreviewKey::new("u", "c").unwrap();
        let text = p.to_json().unwrap();
        assert!(text.contains(r#""state":"failed""#), "{text}");
        assert_eq!(Preview::from_json(&k, &text).unwrap(), p);
        // The fields of a state never collide with the record's own.
        let ready = Preview {
            state: PreviewState::Ready {
                scopes: vec![ScopeSummary {
                    scope: "google.*".into(),
                    file: "google.all.zip".into(),
                    files: 1,
                    records: 2,
                    bytes: 3,
                    first_files: vec!["a".into()],
                    samples: vec!["{}".into()],
                    skipped: 0,
                    notes: Vec::new(),
                }],
                missing: Vec::new(),
                elapsed_ms: 1,
            },
            ..p
        };
        assert_eq!(
            Preview::from_json(&k, &ready.to_json().unwrap()).unwrap(),
            ready
        );
        assert!(matches!(
            Preview::from_json(&k, "{}"),
            Err(StateError::Corrupt { .. })
        ));
    }
}
