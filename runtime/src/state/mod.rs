//! The coordination state in Redis: transfers and their state machine
//! (atomic transitions in Lua), per-file records and committed offsets,
//! leases, users' grants (the reference's layout), bindings and dumps,
//! single-use request ids, and the pub/sub events of transfers.
//!
//! Every key starts with the namespace (`{ns}:…`). Finished transfers get a
//! TTL; running ones are persistent.

//!
//! The services see the state through one trait, [`StateStore`], with two
//! implementations: Redis ([`RedisStore`], for a horizontally scaled
//! deployment) and in-process ([`MemoryStore`], for the embedded mode). The
//! shared contract suite (`runtime/tests/it/contract.rs`) runs against both.

mod channels;
mod memory;
mod redis;

pub use self::channels::{Channels, Subscription};
pub use self::memory::MemoryStore;
pub use self::redis::{EventHub, RedisStore};

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
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

/// Where a transfer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransferState {
    /// Validated and queued for processing.
    Accepted,
    /// Archives are being built.
    Processing,
    /// Archives are being pushed to the client.
    Pushing,
    /// Every archive reached the client and the client was told.
    Done,
    /// Gave up, with a reason.
    Failed,
    /// Stopped (revoked, or superseded by a newer grant).
    Cancelled,
}

impl TransferState {
    /// All states.
    pub const ALL: [TransferState; 6] = [
        TransferState::Accepted,
        TransferState::Processing,
        TransferState::Pushing,
        TransferState::Done,
        TransferState::Failed,
        TransferState::Cancelled,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            TransferState::Accepted => "accepted",
            TransferState::Processing => "processing",
            TransferState::Pushing => "pushing",
            TransferState::Done => "done",
            TransferState::Failed => "failed",
            TransferState::Cancelled => "cancelled",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether no more work happens in this state.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TransferState::Done | TransferState::Failed | TransferState::Cancelled
        )
    }
}

/// One archive of a transfer generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// File name (one safe path segment).
    pub name: String,
    /// The scope it holds (display form).
    pub scope: String,
    /// Where the archive is in resource storage.
    pub storage_key: String,
    /// Size in bytes.
    pub size: u64,
    /// BLAKE2b-512 of the archive, URL-safe base64.
    pub blake2b: String,
    /// Bytes acknowledged by the client (committed offset).
    #[serde(default)]
    pub offset: u64,
    /// Whether the client was told the file is complete.
    #[serde(default)]
    pub finished: bool,
}

/// A transfer as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transfer {
    /// The transfer id.
    pub id: String,
    /// Current generation (each new run increments it).
    pub generation: u64,
    /// State of the current generation.
    pub state: TransferState,
    /// The user's public key (URL-safe base64).
    pub user: String,
    /// Hash of the effective grant.
    pub grant_hash: String,
    /// Whether the effective grant is a revocation.
    pub revoked: bool,
    /// The client's push URL for this transfer.
    pub push_url: String,
    /// When the generation was created (ms since the epoch).
    pub created_ms: u64,
    /// Last change (ms since the epoch).
    pub updated_ms: u64,
    /// Number of archives.
    pub files_total: u64,
    /// Archives completely pushed.
    pub files_done: u64,
    /// Total bytes of the archives.
    pub bytes_total: u64,
    /// Bytes acknowledged by the client.
    pub bytes_done: u64,
    /// Why it failed or was cancelled.
    pub error: Option<String>,
    /// Notes for the user or operator (e.g. a provider without a dump).
    #[serde(default)]
    pub notes: Vec<String>,
    /// Dump bytes the processor has read so far.
    #[serde(default)]
    pub dump_bytes_read: u64,
    /// Dump bytes to read.
    #[serde(default)]
    pub dump_bytes_total: u64,
}

/// What a new transfer generation starts from.
#[derive(Debug, Clone)]
pub struct NewTransfer<'a> {
    /// The effective grant token.
    pub grant_token: &'a str,
    /// Its hash.
    pub grant_hash: &'a str,
    /// The user (URL-safe base64 public key).
    pub user: &'a str,
    /// The push URL.
    pub push_url: &'a str,
    /// Whether the grant is a revocation.
    pub revoked: bool,
}

/// The outcome of [`State::begin_transfer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Begin {
    /// The generation to follow.
    pub generation: u64,
    /// True when a running generation with the same grant was joined (no new job).
    pub joined: bool,
    /// A running generation that the new one superseded, if any.
    pub superseded: Option<u64>,
    /// True when the transfer belongs to another user: nothing was changed
    /// (a transfer belongs to one user and one contract).
    pub foreign: bool,
}

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

/// An event of a transfer, as published on its channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferEvent {
    /// The transfer, as it is after the change.
    pub transfer: Transfer,
    /// What happened (`accepted`, `state`, `progress`, `file`, …).
    pub kind: String,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

const ACTIVE: [&str; 3] = ["accepted", "processing", "pushing"];

/// What the services need of the coordination state. Implemented by
/// [`RedisStore`] and [`MemoryStore`]; every operation that the services
/// rely on being atomic is atomic in both.
#[async_trait::async_trait]
pub trait StateStore: Send + Sync + 'static {
    /// The namespace.
    fn namespace(&self) -> &str;

    /// A key in the namespace.
    fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.namespace())
    }

    /// Whether the store answers.
    async fn ping(&self) -> bool;

    // ---- users, grants, bindings, dumps --------------------------------

    /// The stored grant token of a user for a contract hash.
    async fn stored_grant(
        &self,
        user: &str,
        contract_hash: &str,
    ) -> Result<Option<String>, StateError>;

    /// The reference's `updateGrant`: stores `token` (dated `date_ms`) unless
    /// a grant of the same user and contract with an equal or later date is
    /// stored. Returns `(effective token, stored)`. Refused with
    /// [`StateError::Quota`] (nothing changed) when a new contract would pass
    /// [`Quotas::contracts`] or the user's current grants
    /// [`Quotas::grant_bytes`]; the history keeps the newest
    /// [`Quotas::history`] grants within [`Quotas::grant_bytes`]. A guest's
    /// records get (or renew) their TTL.
    async fn update_grant(
        &self,
        user: &str,
        contract_hash: &str,
        date_ms: f64,
        token: &str,
    ) -> Result<(String, bool), StateError>;

    /// A user's grants, newest first.
    async fn grant_history(&self, user: &str) -> Result<Vec<String>, StateError>;

    /// The contract hashes a user has grants for.
    async fn contracts_of(&self, user: &str) -> Result<Vec<String>, StateError>;

    /// Stores the user's `alias.bindAuthz` token (with the guest TTL unless
    /// the user's records are durable).
    async fn set_binding(&self, user: &str, token: &str) -> Result<(), StateError>;

    /// The user's `alias.bindAuthz` token, if bound.
    async fn binding(&self, user: &str) -> Result<Option<String>, StateError>;

    /// Whether the user is bound to this data bank or holds dumps here.
    async fn is_known_user(&self, user: &str) -> Result<bool, StateError>;

    /// Makes the user's records durable (they have a web account): their
    /// binding, grants and history no longer expire.
    async fn keep_user(&self, user: &str) -> Result<(), StateError>;

    /// Records (or replaces) a dump, and makes the user's records durable.
    /// Refused with [`StateError::Quota`] (nothing changed) past
    /// [`Quotas::dumps`] or [`Quotas::dump_bytes`].
    async fn record_dump(&self, user: &str, dump: &DumpRecord) -> Result<(), StateError>;

    /// The user's dumps, sorted by provider then name.
    async fn dumps(&self, user: &str) -> Result<Vec<DumpRecord>, StateError>;

    /// Forgets a dump record; returns whether it existed.
    async fn delete_dump(&self, user: &str, provider: &str, name: &str)
        -> Result<bool, StateError>;

    /// Binds `contract_hash` to `user` when no user holds it yet, atomically,
    /// and returns the user who holds it afterwards (`user` itself, or the
    /// first user who claimed it). With contract-hash push ids a contract
    /// serves one user: another user's grant for it must be refused.
    async fn claim_contract(&self, contract_hash: &str, user: &str) -> Result<String, StateError>;

    /// The user a contract is bound to, if any.
    async fn contract_owner(&self, contract_hash: &str) -> Result<Option<String>, StateError>;

    /// Claims a single-use id (e.g. the fold of a signed request) for `ttl`;
    /// false when it was already claimed.
    async fn claim_once(&self, id: &str, ttl: Duration) -> Result<bool, StateError>;

    // ---- transfers -------------------------------------------------------

    /// Creates a new generation of a transfer, or joins the running one when
    /// it runs for the same grant. A running generation for another grant is
    /// superseded (its workers see the generation change and stop). A
    /// transfer of another user is left alone ([`Begin::foreign`]).
    async fn begin_transfer(&self, id: &str, new: &NewTransfer<'_>) -> Result<Begin, StateError>;

    /// The transfer, if known.
    async fn transfer(&self, id: &str) -> Result<Option<Transfer>, StateError>;

    /// The effective grant token of the transfer's current generation.
    async fn transfer_grant(&self, id: &str) -> Result<Option<String>, StateError>;

    /// Moves generation `generation` from one of `from` to `to` (with an
    /// error text for failures); false when the generation or state moved on.
    async fn transition(
        &self,
        id: &str,
        generation: u64,
        from: &[TransferState],
        to: TransferState,
        error: Option<&str>,
    ) -> Result<bool, StateError>;

    /// Cancels the running generation, if any, with a reason.
    async fn cancel(&self, id: &str, reason: &str) -> Result<Option<u64>, StateError> {
        let Some(t) = self.transfer(id).await? else {
            return Ok(None);
        };
        if t.state.is_terminal() {
            return Ok(None);
        }
        let active = [
            TransferState::Accepted,
            TransferState::Processing,
            TransferState::Pushing,
        ];
        let moved = self
            .transition(
                id,
                t.generation,
                &active,
                TransferState::Cancelled,
                Some(reason),
            )
            .await?;
        Ok(moved.then_some(t.generation))
    }

    /// Records how far the processor has read the dumps of the current
    /// generation, and tells the subscribers.
    async fn processing_progress(
        &self,
        id: &str,
        generation: u64,
        read: u64,
        total: u64,
    ) -> Result<(), StateError>;

    /// Adds a note to the current generation (e.g. a provider without dump).
    async fn add_note(&self, id: &str, generation: u64, note: &str) -> Result<(), StateError>;

    /// Records the archives of a generation (replacing earlier records) and
    /// their totals.
    async fn set_files(
        &self,
        id: &str,
        generation: u64,
        files: &[FileRecord],
    ) -> Result<(), StateError>;

    /// The archives of a generation with their committed offsets.
    async fn files(&self, id: &str, generation: u64) -> Result<Vec<FileRecord>, StateError>;

    /// Commits the client-acknowledged offset of a file (monotonic); returns
    /// the committed offset, or `None` when the generation moved on.
    async fn commit_offset(
        &self,
        id: &str,
        generation: u64,
        file: &str,
        offset: u64,
    ) -> Result<Option<u64>, StateError>;

    /// Marks a file finished (the client was told) and counts it.
    async fn finish_file(&self, id: &str, generation: u64, file: &str) -> Result<bool, StateError>;

    /// Starts generation `generation + 1` of a running transfer with the same
    /// grant (the push "Resume" rule: a chunk of unknown outcome at a client
    /// without offset queries restarts the transfer). Returns the new
    /// generation, or `None` when `generation` is no longer the running one.
    async fn restart_generation(
        &self,
        id: &str,
        generation: u64,
        note: &str,
    ) -> Result<Option<u64>, StateError>;

    /// Whether the flag `name` is set.
    async fn flag(&self, name: &str) -> Result<bool, StateError>;

    /// Sets the flag `name` for `ttl`; false when it was already set.
    async fn set_flag(&self, name: &str, ttl: Duration) -> Result<bool, StateError>;

    /// The first time `name` was seen (ms since the epoch): set to now on the
    /// first call, read on later ones; kept for `ttl`.
    async fn first_seen(&self, name: &str, ttl: Duration) -> Result<u64, StateError>;

    /// Clears a flag.
    async fn clear_flag(&self, name: &str) -> Result<(), StateError>;

    /// Forgets the first sighting recorded by [`StateStore::first_seen`].
    async fn forget_first_seen(&self, name: &str) -> Result<(), StateError>;

    /// Adds one to the counter `name` (kept `window` after its last
    /// change); returns the new count.
    async fn count(&self, name: &str, window: Duration) -> Result<u64, StateError>;

    /// Counts one more consecutive failure of a client (kept `window`);
    /// returns the count.
    async fn client_failure(&self, domain: &str, window: Duration) -> Result<u64, StateError> {
        self.count(&format!("client:{domain}:failures"), window)
            .await
    }

    /// The current value of the counter `name` (0 when unset or expired).
    async fn counted(&self, name: &str) -> Result<u64, StateError>;

    /// Forgets the counter `name`.
    async fn reset_count(&self, name: &str) -> Result<(), StateError>;

    /// Forgets a client's failures (it answered).
    async fn client_success(&self, domain: &str) -> Result<(), StateError>;

    // ---- the restart fence ----------------------------------------------

    /// Registers `holder` as sending requests of generation `generation` to
    /// the client, for `ttl` (renewed with [`StateStore::renew_fence`]);
    /// atomically refused (false) unless that generation is the transfer's
    /// current one and is pushing. The start request of a later generation
    /// waits until no holder of an earlier one remains
    /// ([`StateStore::fence_clear`]), so no request of a superseded
    /// generation is in flight when the client is told to start again.
    async fn enter_fence(
        &self,
        id: &str,
        generation: u64,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StateError>;

    /// Extends `holder`'s registration for `generation`; false when it
    /// expired or was left.
    async fn renew_fence(
        &self,
        id: &str,
        generation: u64,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StateError>;

    /// Removes `holder`'s registration for `generation`.
    async fn leave_fence(&self, id: &str, generation: u64, holder: &str) -> Result<(), StateError>;

    /// True when no live registration of a generation before `generation`
    /// remains (expired ones are dropped).
    async fn fence_clear(&self, id: &str, generation: u64) -> Result<bool, StateError>;

    // ---- leases ----------------------------------------------------------

    /// Takes the lease `name` for `holder` for `ttl`, if free.
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StateError>;

    /// Extends a lease still held by `holder`; false when it was lost.
    async fn renew_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StateError>;

    /// Releases a lease held by `holder`.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<bool, StateError>;

    // ---- events ----------------------------------------------------------

    /// Publishes the transfer's current status on its channel.
    async fn emit(&self, id: &str, kind: &str) -> Result<(), StateError>;

    /// Subscribes to a transfer's events. Subscribe first, then read the
    /// current status, so no change in between is missed.
    fn subscribe(&self, id: &str) -> Subscription;

    /// How many transfer ids have a live event channel in this process
    /// (each has at least one [`Subscription`]).
    fn live_channels(&self) -> usize;

    /// Counts of transfers by state, for metrics: read from per-state
    /// indexes that the transitions maintain (no keyspace scan).
    async fn count_by_state(&self) -> Result<HashMap<TransferState, u64>, StateError>;

    /// Deletes every key of the namespace (tests).
    async fn purge_namespace(&self) -> Result<(), StateError>;

    // ---- small records of the web side (accounts, sessions, challenges) --

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

    // ---- schedules (time-ordered indexes, e.g. the archive sweeper's) ----

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
        let store = RedisStore::connect(redis_url, namespace, finished_ttl)
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
