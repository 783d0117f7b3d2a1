//! The building blocks the typed stores are made of: flags, first
//! sightings and counters under names that only the typed stores of this
//! crate can form ([`Key`] has no public constructor), so no role invents a
//! key. Each backend implements [`Primitives`]; the typed stores
//! ([`super::GenerationMarks`], [`super::ClientHealth`], the counters of
//! [`super::WebStore`]) are written once on top of them.
//!
//! In Redis a flag is `{ns}:flag:{name}`, a first sighting `{ns}:seen:{name}`,
//! a counter `{ns}:count:{name}` and a number `{ns}:number:{name}`. Each is
//! read and written alone (one command, or a pipeline on the one key), so
//! they need no hash tag on a Redis Cluster: they spread over its slots.
//! The keys that scripts touch together are tagged by their owner (user or
//! transfer bucket); `state/redis/mod.rs` and ARCHITECTURE.md list them.

use super::StateError;
use std::time::Duration;

/// The name of a flag, sighting or counter, formed by a typed store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key(String);

impl Key {
    /// A name (only the typed stores of this crate make them).
    pub(crate) fn new(name: String) -> Key {
        Key(name)
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Flags, first sightings and counters by [`Key`], implemented by each
/// backend.
#[async_trait::async_trait]
pub trait Primitives: Send + Sync {
    /// Whether the flag `name` is set.
    async fn raw_flag(&self, name: &Key) -> Result<bool, StateError>;

    /// Sets the flag `name` for `ttl`; false when it was already set.
    async fn raw_set_flag(&self, name: &Key, ttl: Duration) -> Result<bool, StateError>;

    /// The first time `name` was seen (ms since the epoch): set to now on the
    /// first call, read on later ones; kept for `ttl`.
    async fn raw_first_seen(&self, name: &Key, ttl: Duration) -> Result<u64, StateError>;

    /// Clears a flag.
    async fn raw_clear_flag(&self, name: &Key) -> Result<(), StateError>;

    /// Forgets the first sighting recorded by [`StateStore::first_seen`].
    async fn raw_forget_seen(&self, name: &Key) -> Result<(), StateError>;

    /// Adds one to the counter `name` (kept `window` after its last
    /// change); returns the new count.
    async fn raw_count(&self, name: &Key, window: Duration) -> Result<u64, StateError>;

    /// The current value of the counter `name` (0 when unset or expired).
    async fn raw_counted(&self, name: &Key) -> Result<u64, StateError>;

    /// Forgets the counter `name`.
    async fn raw_reset_count(&self, name: &Key) -> Result<(), StateError>;

    /// Sets the number `name` to `value` for `ttl`.
    async fn raw_set_number(&self, name: &Key, value: u64, ttl: Duration)
        -> Result<(), StateError>;

    /// The number `name`, if set and not expired.
    async fn raw_number(&self, name: &Key) -> Result<Option<u64>, StateError>;

    /// Forgets the number `name`.
    async fn raw_clear_number(&self, name: &Key) -> Result<(), StateError>;
}
