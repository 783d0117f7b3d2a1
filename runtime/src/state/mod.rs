//! The coordination state: transfers and their state machine (atomic
//! transitions in Lua), per-file records and committed offsets, leases and
//! the restart fence, users' grants (the reference's layout), bindings and
//! dumps, single-use request ids, the workers' marks on generations, client
//! health, the web side's records, previews, and the pub/sub events of
//! transfers.
//!
//! Every Redis key starts with the namespace (`{ns}:…`). Finished transfers
//! get a TTL; running ones are persistent.
//!
//! The state is a set of typed stores, each a trait that owns its key names
//! (the roles pass typed ids, never a key): [`TransferStore`],
//! [`UserStore`], [`GrantStore`] (a grant taken in at once), [`DumpStore`],
//! [`LeaseStore`], [`GenerationMarks`], [`ClientHealth`], [`WebStore`] and
//! [`PreviewStore`]. [`StateStore`] is all of them; it has
//! two implementations: Redis ([`RedisStore`], for a horizontally scaled
//! deployment) and in-process ([`MemoryStore`], for the embedded mode),
//! each split by store (`redis/`, `memory/`). The shared contract suite
//! (`runtime/tests/it/contract.rs`) runs against both.

mod channels;
mod dumps;
mod health;
mod intake;
mod keys;
mod leases;
mod marks;
mod memory;
mod previews;
mod redis;
pub mod testing;
mod transfers;
mod users;
mod web;

pub use self::channels::{Channels, Subscription};
pub use self::dumps::{DumpRecord, DumpStore};
pub use self::health::{ClientHealth, ClientName};
pub use self::intake::{GrantIntake, GrantStore, Intake, KvEntry, TransferIntake};
pub use self::leases::{Heartbeat, Lease, LeaseGuard, LeaseStore};
pub use self::marks::{FileTrouble, GenerationMarks, Mark, Request, RetryNote};
pub use self::memory::MemoryStore;
pub use self::previews::{
    Preview, PreviewKey, PreviewLimits, PreviewStart, PreviewState, PreviewStore, ScopeSummary,
};
pub use self::redis::{
    EventHub, PrimaryLogin, RedisStore, RedisTarget, RedisTls, TRANSFER_BUCKETS,
};
pub use self::transfers::{
    Added, Begin, FileRecord, FileWatch, NewTransfer, Transfer, TransferEvent, TransferState,
    TransferStore,
};
pub use self::users::UserStore;
pub use self::web::{WebCounter, WebKey, WebList, WebStore};

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

/// A Redis failure.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Redis could not be reached or refused a command.
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// A per-user quota would be exceeded; nothing was changed.
    #[error("quota {quota} exceeded: the limit is {limit}")]
    Quota {
        /// Which quota ([`Quotas`] field name: `contracts`, `grant_bytes`,
        /// `dumps`, `dump_bytes`).
        quota: &'static str,
        /// Its configured limit.
        limit: u64,
    },
    /// A write that must survive the loss of the primary (a grant taken
    /// in) was not confirmed by a replica in time: it may still replicate,
    /// but it was not promised. Asking again is safe.
    #[error("no replica confirmed the write within {waited_ms} ms")]
    NotReplicated {
        /// How long the store waited.
        waited_ms: u64,
    },
    /// A stored record could not be read.
    #[error("corrupt record {key}: {reason}")]
    Corrupt {
        /// The key.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

/// Per-user bounds on what the state keeps (`ALIAS_QUOTA_*`), and the
/// lifetime of the records of a "guest": a user with no web account and no
/// dump (a self-made key that bound itself), whose binding, grants and
/// history expire `guest_ttl` after their last change. A dump or an account
/// makes a user's records durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    /// Distinct contracts a user may hold grants for.
    pub contracts: u64,
    /// Grants kept in a user's history (the oldest are dropped).
    pub history: u64,
    /// Bytes of a user's current grants (one per contract); the history is
    /// trimmed (oldest first) to the same number of bytes.
    pub grant_bytes: u64,
    /// Dumps a user may hold.
    pub dumps: u64,
    /// Bytes of all of a user's dumps.
    pub dump_bytes: u64,
    /// Lifetime of a guest's records after their last change.
    pub guest_ttl: Duration,
}

impl Quotas {
    /// The defaults of the configuration.
    pub const DEFAULT: Quotas = Quotas {
        contracts: 100,
        history: 100,
        grant_bytes: 1 << 20,
        dumps: 32,
        dump_bytes: 256 << 30,
        guest_ttl: Duration::from_secs(30 * 24 * 3600),
    };
}

impl Default for Quotas {
    fn default() -> Self {
        Quotas::DEFAULT
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

const ACTIVE: [&str; 3] = ["accepted", "processing", "pushing"];

/// What the services need of the coordination state: every typed store.
/// Implemented by [`RedisStore`] and [`MemoryStore`]; every operation that
/// the services rely on being atomic is atomic in both.
#[async_trait::async_trait]
pub trait StateStore:
    TransferStore
    + UserStore
    + GrantStore
    + DumpStore
    + LeaseStore
    + GenerationMarks
    + ClientHealth
    + WebStore
    + PreviewStore
    + Send
    + Sync
    + 'static
{
    /// The namespace.
    fn namespace(&self) -> &str;

    /// Whether the store answers.
    async fn ping(&self) -> bool;

    /// Waits until every write this process made so far would survive the
    /// loss of the server: on a replica, where the store has replicas
    /// (Redis under Sentinel). See [`Settled`] for what it may find; an
    /// error when the server could not be reached (the writes' fate is
    /// unknown). Workers call it before a job is acknowledged and the
    /// gateway before it answers a write, so a failover never loses what
    /// was acknowledged.
    async fn settle_writes(&self) -> Result<Settled, StateError> {
        Ok(Settled::Replicated)
    }

    /// Deletes every key of the namespace (tests).
    async fn purge_namespace(&self) -> Result<(), StateError>;
}

/// What [`StateStore::settle_writes`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// The writes are on a replica (or the store has no replicas to wait
    /// for: one server, a cluster, memory).
    Replicated,
    /// The primary has no replica connected (e.g. after a failover, until
    /// the old primary comes back as a replica): there is no copy to wait
    /// for, and no replica that could be promoted without the writes.
    Alone,
    /// A replica is connected but did not confirm in time: promoted now,
    /// it could lack the writes.
    Unconfirmed,
}

/// The handle on the state that services hold: cheap to clone, and every
/// [`StateStore`] method is callable on it.
#[derive(Clone)]
pub struct State {
    store: Arc<dyn StateStore>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("ns", &self.store.namespace())
            .finish()
    }
}

impl Deref for State {
    type Target = dyn StateStore;

    fn deref(&self) -> &Self::Target {
        &*self.store
    }
}

impl State {
    /// Connects to Redis (the connection reconnects by itself when Redis
    /// comes back).
    pub async fn connect(
        redis_url: &str,
        namespace: &str,
        finished_ttl: Duration,
    ) -> Result<State, StateError> {
        Self::connect_with(redis_url, namespace, finished_ttl, Quotas::DEFAULT).await
    }

    /// [`State::connect`] with the given per-user quotas.
    pub async fn connect_with(
        redis_url: &str,
        namespace: &str,
        finished_ttl: Duration,
        quotas: Quotas,
    ) -> Result<State, StateError> {
        let target = RedisTarget::Single(redis_url.to_owned());
        Self::connect_to(&target, namespace, finished_ttl, quotas).await
    }

    /// Connects to Redis in the form `target` names (one server, a Redis
    /// Cluster, or the primary Sentinel names), with per-user quotas.
    pub async fn connect_to(
        target: &RedisTarget,
        namespace: &str,
        finished_ttl: Duration,
        quotas: Quotas,
    ) -> Result<State, StateError> {
        Self::connect_secured(
            target,
            &RedisTls::default(),
            namespace,
            finished_ttl,
            quotas,
        )
        .await
    }

    /// [`State::connect_to`] with TLS settings for `rediss://` servers.
    pub async fn connect_secured(
        target: &RedisTarget,
        tls: &RedisTls,
        namespace: &str,
        finished_ttl: Duration,
        quotas: Quotas,
    ) -> Result<State, StateError> {
        let store = RedisStore::connect_secured(target, tls, namespace, finished_ttl)
            .await?
            .with_quotas(quotas);
        Ok(State::from_store(Arc::new(store)))
    }

    /// An in-process state for `namespace` (the embedded mode and tests).
    pub fn in_memory(namespace: &str, finished_ttl: Duration) -> State {
        Self::in_memory_with(namespace, finished_ttl, Quotas::DEFAULT)
    }

    /// [`State::in_memory`] with the given per-user quotas.
    pub fn in_memory_with(namespace: &str, finished_ttl: Duration, quotas: Quotas) -> State {
        State::from_store(Arc::new(
            MemoryStore::new(namespace, finished_ttl).with_quotas(quotas),
        ))
    }

    /// Wraps any implementation.
    pub fn from_store(store: Arc<dyn StateStore>) -> State {
        State { store }
    }

    /// The names of the active states (for scripts and queries).
    pub fn active_states() -> &'static [&'static str] {
        &ACTIVE
    }
}
