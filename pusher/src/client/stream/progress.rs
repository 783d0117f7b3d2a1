//! One archive to push and what a push did ([`Upload`], [`Streamed`]), and
//! the limits of one run so a client cannot fake progress ([`RunLimits`],
//! [`Abuse`]).

use std::time::Duration;

use tokio::time::Instant;
use url::Url;

use super::error::StreamError;

/// One archive to push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// Its storage key (`transfers/{id}/{generation}/{file}`).
    pub key: String,
    /// Its push URL (`PushTarget::file_url`).
    pub file_url: Url,
    /// Its size, as recorded when it was written (checked against storage).
    pub size: u64,
    /// The committed offset to continue from (0 for a new file).
    pub offset: u64,
    /// Ask the client's offset (`HEAD`) before sending anything: set it when
    /// an earlier attempt may have died with a chunk in flight (a
    /// redelivered job), since the committed offset may then be behind what
    /// the client holds. A client without the `HEAD` extension then needs a
    /// restart.
    pub verify_offset: bool,
}

/// What a successful push did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Streamed {
    /// The file's size.
    pub size: u64,
    /// Chunks acknowledged.
    pub chunks: u64,
    /// Bytes of the acknowledged chunks.
    pub bytes_acked: u64,
    /// Chunk sends that failed and were retried.
    pub retries: u64,
    /// Times the client's offset was asked (`HEAD`).
    pub offset_queries: u64,
    /// Requests sent (chunks and `HEAD`).
    pub requests: u64,
    /// Requests not answered `2xx` (or answered with an unaccepted offset).
    pub failures: u64,
    /// Times the client reported holding less than it acknowledged.
    pub rewinds: u64,
    /// Requests abandoned at their deadline (slow or stalled client).
    pub stalled: u64,
}

/// Limits of one run of [`ChunkStreamer::push_file_limited`](super::ChunkStreamer::push_file_limited) (one delivery
/// of one file), so a client cannot hold a worker with fake progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunLimits {
    /// Least advance a reported `Upload-Offset` short of the chunk's end
    /// must show to be accepted; a smaller one is a failed request.
    pub min_advance: u64,
    /// Requests (chunks and `HEAD`) in the run.
    pub max_requests: u64,
    /// Failed requests in the run (see [`Streamed::failures`]).
    pub max_failures: u64,
    /// Rewinds in the run.
    pub max_rewinds: u64,
    /// When the run stops ([`StreamError::Cancelled`]); backoff waits end
    /// there too.
    pub deadline: Option<Instant>,
}

impl Default for RunLimits {
    /// 256 KiB of least advance, at most 100 failures and 10 rewinds, no
    /// request cap, no deadline.
    fn default() -> Self {
        Self {
            min_advance: 256 * 1024,
            max_requests: u64::MAX,
            max_failures: 100,
            max_rewinds: 10,
            deadline: None,
        }
    }
}

/// Which limit of a run a client broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abuse {
    /// Too many requests in one run.
    Requests(u64),
    /// Too many failed requests in one run.
    Failures(u64),
    /// Too many rewinds in one run.
    Rewinds(u64),
}

impl std::fmt::Display for Abuse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Abuse::Requests(n) => write!(f, "{n} requests in one run without finishing the file"),
            Abuse::Failures(n) => write!(
                f,
                "{n} requests failed or claimed no real progress (fake Upload-Offset?)"
            ),
            Abuse::Rewinds(n) => write!(
                f,
                "the client reported holding less than it acknowledged {n} times"
            ),
        }
    }
}

/// At most one warning per period; the rest go to debug, counted.
#[derive(Debug)]
pub(super) struct WarnLimiter {
    period: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl WarnLimiter {
    pub(super) fn new(period: Duration) -> Self {
        Self {
            period,
            last: None,
            suppressed: 0,
        }
    }

    /// Whether to warn now; `Some(suppressed since the last warning)`.
    pub(super) fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        match self.last {
            Some(last) if now.duration_since(last) < self.period => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// Counts one request of the run, refused past the run's cap.
#[allow(clippy::result_large_err)] // the streamer's own error type, as its other functions
pub(super) fn count_request(
    limits: &RunLimits,
    stats: &mut Streamed,
    offset: u64,
) -> Result<(), StreamError> {
    if stats.requests >= limits.max_requests {
        return Err(StreamError::Abusive {
            offset,
            abuse: Abuse::Requests(stats.requests),
        });
    }
    stats.requests += 1;
    Ok(())
}
