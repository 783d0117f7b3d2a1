//! The web side's small records: key-value entries (accounts, sessions,
//! challenges, capabilities), capped lists, time-ordered schedules (also
//! the archive sweeper's) and attempt counters. Their names are chosen by
//! the web side within their own spaces: `{ns}:kv:{key}`, `{ns}:list:{key}`,
//! `{ns}:schedule:{name}` and `{ns}:count:{name}`. The web side starts
//! its counter names with `web:`, which keeps them apart from the counters
//! of the typed stores in the same `count:` space (kept for compatibility
//! of the Redis layout).

use super::keys::{Key, Primitives};
use super::StateError;
use std::time::Duration;

/// The web side's records (see the module documentation).
#[async_trait::async_trait]
pub trait WebStore: Primitives + Send + Sync {
    /// The value stored under `key` (in the namespace's `kv:` space).
    async fn kv_get(&self, key: &str) -> Result<Option<String>, StateError>;

    /// Stores `value` under `key`, for `ttl` or for good.
    async fn kv_set(&self, key: &str, value: &str, ttl: Option<Duration>)
        -> Result<(), StateError>;

    /// Stores `value` under `key` only if nothing is stored there; true when
    /// it was stored.
    async fn kv_set_nx(
        &self,
        key: &str,
        value: &str,
        ttl: Option<Duration>,
    ) -> Result<bool, StateError>;

    /// Removes and returns the value under `key`, atomically (single use).
    async fn kv_take(&self, key: &str) -> Result<Option<String>, StateError>;

    /// Removes `key`; true when it existed.
    async fn kv_delete(&self, key: &str) -> Result<bool, StateError>;

    /// Puts `member` in the schedule `name`, due at `due_ms` (ms since the
    /// epoch); an earlier entry of the same member is replaced.
    async fn schedule(&self, name: &str, member: &str, due_ms: u64) -> Result<(), StateError>;

    /// Up to `limit` members of the schedule `name` due at or before
    /// `now_ms`, earliest first (they stay scheduled until removed or
    /// rescheduled).
    async fn due(&self, name: &str, now_ms: u64, limit: usize) -> Result<Vec<String>, StateError>;

    /// Removes `member` from the schedule `name`.
    async fn unschedule(&self, name: &str, member: &str) -> Result<(), StateError>;

    /// Prepends `value` to the list `key`, keeping its newest `keep` items.
    async fn list_push(&self, key: &str, value: &str, keep: usize) -> Result<(), StateError>;

    /// Up to `limit` items of the list `key`, newest first.
    async fn list_range(&self, key: &str, limit: usize) -> Result<Vec<String>, StateError>;

    /// Adds one to the counter `name` (kept `window` after its last
    /// change); returns the new count.
    async fn count(&self, name: &str, window: Duration) -> Result<u64, StateError> {
        self.raw_count(&Key::new(name.to_owned()), window).await
    }

    /// The current value of the counter `name` (0 when unset or expired).
    async fn counted(&self, name: &str) -> Result<u64, StateError> {
        self.raw_counted(&Key::new(name.to_owned())).await
    }

    /// Forgets the counter `name`.
    async fn reset_count(&self, name: &str) -> Result<(), StateError> {
        self.raw_reset_count(&Key::new(name.to_owned())).await
    }
}
