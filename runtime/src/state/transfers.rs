//! Transfers: the state machine of their generations (created, joined,
//! superseded, restarted, finished), their archives with committed offsets,
//! and their events. In Redis: `transfer:{id}` (hash),
//! `transfer:{id}:files:{gen}`, `transfer:{id}:offsets:{gen}`,
//! `index:{state}`, pub/sub `events:{id}`.

use super::{StateError, Subscription};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

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

/// What [`TransferStore::file_watch`] saw of a generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileWatch {
    /// Every file recorded so far is pushed and counted.
    pub all_counted: bool,
    /// A push job of the generation holds a live fence registration.
    pub pushing: bool,
}

/// How long a generation's queued flag ([`TransferStore::add_files`])
/// stays up at most: a job still queued past it only means that a later
/// archive queues another (a redundant job ends at once).
pub(crate) const QUEUED_TTL: std::time::Duration = std::time::Duration::from_secs(600);

/// What [`TransferStore::add_files`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// The generation moved on or ended: nothing was recorded.
    Stale,
    /// Recorded. `queue`: no push job of the generation was queued and not
    /// yet started, so the caller must queue one (the flag now says there
    /// is); otherwise the queued one pushes these archives too.
    Recorded {
        /// Whether the caller must queue a push job.
        queue: bool,
    },
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
    /// Whether every archive of the generation is recorded. Archives are
    /// pushed as soon as each is stored, while the processor builds the
    /// others: the transfer finish waits for this as well as for the files.
    #[serde(default)]
    pub built: bool,
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

/// The outcome of [`TransferStore::begin_transfer`].
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

/// An event of a transfer, as published on its channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferEvent {
    /// The transfer, as it is after the change.
    pub transfer: Transfer,
    /// What happened (`accepted`, `state`, `progress`, `file`, …).
    pub kind: String,
}

/// Transfers and their generations, implemented by each backend.
#[async_trait::async_trait]
pub trait TransferStore: Send + Sync {
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

    /// Adds archives to a generation that is being built (accepted,
    /// processing or pushing) and updates its totals; with `complete`, the
    /// generation's list of archives is whole ([`Transfer::built`]). An
    /// archive already recorded under the same name is replaced. In the
    /// same step it raises the generation's *queued* flag, which says that
    /// a push job is queued and not started yet
    /// ([`TransferStore::file_watch`] lowers it): the answer says whether
    /// it was down, i.e. whether the caller must queue one.
    async fn add_files(
        &self,
        id: &str,
        generation: u64,
        files: &[FileRecord],
        complete: bool,
    ) -> Result<Added, StateError>;

    /// Records the whole list of archives of a generation (replacing
    /// earlier records), their totals, and that the list is complete.
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

    /// Whether [`TransferStore::finish_file`] counted every recorded file
    /// of `generation`, and whether a push job of
    /// `generation` is in the transfer's restart fence (pushing it) right
    /// now; one round trip. A push job calls it as it starts, and it lowers
    /// the generation's queued flag in the same step (see
    /// [`TransferStore::add_files`]): archives recorded from then on get a
    /// push job of their own.
    async fn file_watch(&self, id: &str, generation: u64) -> Result<FileWatch, StateError>;

    /// Starts generation `generation + 1` of a pushing transfer with the
    /// same grant and the same archives (the push "Resume" rule: a chunk of
    /// unknown outcome at a client without offset queries restarts the
    /// transfer). The archives are deterministic and already stored, so the
    /// new generation's file records are the old ones with no offset
    /// committed, and it starts in `pushing`: nothing is built again.
    /// Returns the new generation, or `None` when `generation` is no longer
    /// the pushing one.
    async fn restart_generation(
        &self,
        id: &str,
        generation: u64,
        note: &str,
    ) -> Result<Option<u64>, StateError>;

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
}
