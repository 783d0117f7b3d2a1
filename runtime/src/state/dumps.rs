//! The dumps a user holds (records; the bytes are in resource storage). In
//! Redis: `user:{pk}:dumps` (hash by provider and name), counted in
//! `user:{pk}:usage`.

use super::StateError;
use serde::{Deserialize, Serialize};

/// A dump held for a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpRecord {
    /// Provider (`google`, `facebook`, `amazon`, …).
    pub provider: String,
    /// File name.
    pub name: String,
    /// Resource storage key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// BLAKE2b-512, URL-safe base64.
    pub blake2b: String,
    /// Upload time (ms since the epoch).
    pub uploaded_ms: u64,
}

/// Users' dump records, implemented by each backend.
#[async_trait::async_trait]
pub trait DumpStore: Send + Sync {
    /// Records (or replaces) a dump, and makes the user's records durable.
    /// Refused with [`StateError::Quota`] (nothing changed) past
    /// [`Quotas::dumps`](super::Quotas::dumps) or
    /// [`Quotas::dump_bytes`](super::Quotas::dump_bytes).
    async fn record_dump(&self, user: &str, dump: &DumpRecord) -> Result<(), StateError>;

    /// The user's dumps, sorted by provider then name.
    async fn dumps(&self, user: &str) -> Result<Vec<DumpRecord>, StateError>;

    /// Forgets a dump record; returns whether it existed.
    async fn delete_dump(&self, user: &str, provider: &str, name: &str)
        -> Result<bool, StateError>;
}
