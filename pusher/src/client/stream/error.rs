//! How a push stops: [`StreamError`], and why a client needs a restart.

use std::error::Error as StdError;
use std::time::Duration;

use runtime::storage::StorageError;

use super::progress::Abuse;
use crate::client::error::PushError;

/// Why a client cannot be resumed in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartReason {
    /// It does not report its offset (no `HEAD` extension, or it does not
    /// know the transfer any more).
    NoOffsetQuery,
    /// It reports more bytes than were sent.
    ClientAhead {
        /// The offset it reported.
        reported: u64,
    },
}

/// How a push stopped.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// `should_continue` said no (revocation, cancellation).
    #[error("cancelled at offset {offset}")]
    Cancelled {
        /// Bytes committed.
        offset: u64,
    },
    /// The client must be given a new transfer generation (start again from
    /// the start request).
    #[error("the transfer must restart (at offset {offset}: {reason:?})")]
    NeedsRestart {
        /// The offset reached.
        offset: u64,
        /// Why.
        reason: RestartReason,
        /// The failure that led here.
        cause: Option<Box<PushError>>,
    },
    /// A chunk failed in a way retrying cannot help.
    #[error("chunk at offset {offset}: {error}")]
    Permanent {
        /// The chunk's offset.
        offset: u64,
        /// The failure.
        error: PushError,
    },
    /// A chunk kept failing until the retry policy was spent.
    #[error("chunk at offset {offset}: gave up after {attempts} attempts: {last}")]
    Exhausted {
        /// The chunk's offset.
        offset: u64,
        /// Attempts made for it.
        attempts: u32,
        /// The last failure.
        last: PushError,
        /// The client's last `Retry-After`, to schedule the next try.
        retry_after: Option<Duration>,
    },
    /// Reading the archive failed.
    #[error("reading {key}: {source}")]
    Storage {
        /// The storage key.
        key: String,
        /// The failure.
        #[source]
        source: StorageError,
    },
    /// The stored archive is not the size recorded.
    #[error("{key} holds {actual} bytes, {expected} expected")]
    SizeMismatch {
        /// The storage key.
        key: String,
        /// The size recorded.
        expected: u64,
        /// The size found.
        actual: u64,
    },
    /// The client broke a limit of the run ([`RunLimits`](super::RunLimits)).
    #[error("at offset {offset}: {abuse}")]
    Abusive {
        /// The offset reached.
        offset: u64,
        /// The limit broken.
        abuse: Abuse,
    },
    /// The `commit` callback failed.
    #[error("committing offset {offset}: {source}")]
    Commit {
        /// The offset being committed.
        offset: u64,
        /// The callback's error.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
}
