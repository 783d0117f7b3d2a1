//! [`ChunkStreamer`]: pushes one archive from resource storage as chunks,
//! one chunk in memory at a time, committing the offset after each
//! acknowledged chunk and applying the Resume rule of PROTOCOL.md Part 1:
//!
//! * a chunk that failed with a status, or before anything was sent, is sent
//!   again after a backoff;
//! * after a chunk whose outcome is unknown (timeout or broken connection
//!   after sending), the client is asked `HEAD` for its `Upload-Offset`; a
//!   client that answers is resumed from there, any other client needs the
//!   transfer restarted ([`StreamError::NeedsRestart`]): a new generation,
//!   whose start request makes it drop its partial data;
//! * a `409`/`416` answer to a chunk (the client holds something else than
//!   expected) is resolved the same way, from its `Upload-Offset` header or
//!   `HEAD`.
//!
//! Progress cannot be faked ([`RunLimits`]): the retry budget resets only on
//! a `2xx` chunk; a reported offset is accepted only at the chunk's end or
//! after a real advance of at least `min_advance` bytes (anything less is a
//! failed request); requests, failures and rewinds (the client reporting
//! less than it acknowledged) are capped per run, and the run stops at its
//! deadline. Per-step logs are at debug level, warnings rate-limited.

use std::error::Error as StdError;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use runtime::storage::{Storage, StorageError};
use url::Url;

use super::backoff::{Backoff, RetryPolicy};
use super::error::{Outcome, PushError};
use super::http::PushClient;

/// The default chunk size: 2 MiB, the reference's.
pub const DEFAULT_CHUNK_SIZE: usize = 2 << 20;

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

/// Limits of one run of [`ChunkStreamer::push_file_limited`] (one delivery
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
struct WarnLimiter {
    period: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl WarnLimiter {
    fn new(period: Duration) -> Self {
        Self {
            period,
            last: None,
            suppressed: 0,
        }
    }

    /// Whether to warn now; `Some(suppressed since the last warning)`.
    fn allow(&mut self) -> Option<u64> {
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
    /// The client broke a limit of the run ([`RunLimits`]).
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

/// The transfer id of a file URL (`…/{id}/{file}`), for logs.
fn transfer_segment(url: &Url) -> &str {
    url.path_segments()
        .and_then(|mut segments| segments.nth_back(1))
        .unwrap_or("")
}

/// Counts one request of the run, refused past the run's cap.
#[allow(clippy::result_large_err)] // the streamer's own error type, as its other functions
fn count_request(limits: &RunLimits, stats: &mut Streamed, offset: u64) -> Result<(), StreamError> {
    if stats.requests >= limits.max_requests {
        return Err(StreamError::Abusive {
            offset,
            abuse: Abuse::Requests(stats.requests),
        });
    }
    stats.requests += 1;
    Ok(())
}

/// What the client said after a failed chunk.
enum Step {
    /// Send the same chunk again, after a backoff.
    Again(PushError),
    /// Continue from this offset (the chunk is re-read).
    MoveTo(u64, PushError),
}

/// Pushes archives from storage in chunks.
#[derive(Debug, Clone)]
pub struct ChunkStreamer {
    client: PushClient,
    storage: Storage,
    chunk_size: usize,
    policy: RetryPolicy,
    seed: Option<u64>,
}

impl ChunkStreamer {
    /// A streamer with [`DEFAULT_CHUNK_SIZE`] chunks and the default
    /// [`RetryPolicy`].
    pub fn new(client: PushClient, storage: Storage) -> Self {
        Self {
            client,
            storage,
            chunk_size: DEFAULT_CHUNK_SIZE,
            policy: RetryPolicy::default(),
            seed: None,
        }
    }

    /// Sets the chunk size (`ALIAS_PUSH_CHUNK`; at least 1 byte).
    pub fn with_chunk_size(mut self, chunk_size: usize) -> Self {
        self.chunk_size = chunk_size.max(1);
        self
    }

    /// Sets the retry policy, applied to each chunk.
    pub fn with_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Makes the backoff jitter deterministic (tests).
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The client.
    pub fn client(&self) -> &PushClient {
        &self.client
    }

    /// The chunk size.
    pub fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    fn backoff(&self) -> Backoff {
        match self.seed {
            Some(seed) => Backoff::with_seed(self.policy, seed),
            None => Backoff::new(self.policy),
        }
    }

    /// Pushes `upload` from its offset to its end.
    ///
    /// `commit(offset)` is awaited after each acknowledged chunk (and when
    /// the client reports holding more than committed), with offsets that
    /// only grow; its error stops the push. `should_continue()` is awaited
    /// before each chunk and each retry; `false` stops with
    /// [`StreamError::Cancelled`].
    pub async fn push_file<C, CF, CE, K, KF>(
        &self,
        upload: &Upload,
        commit: C,
        should_continue: K,
    ) -> Result<Streamed, StreamError>
    where
        C: FnMut(u64) -> CF,
        CF: Future<Output = Result<(), CE>>,
        CE: Into<Box<dyn StdError + Send + Sync>>,
        K: FnMut() -> KF,
        KF: Future<Output = bool>,
    {
        let mut stats = Streamed::default();
        self.push_file_limited(
            upload,
            &RunLimits::default(),
            &mut stats,
            commit,
            should_continue,
        )
        .await
        .map(|()| stats)
    }

    /// As [`ChunkStreamer::push_file`], under `limits`; `stats` holds what
    /// the run did, whether it succeeded or not (the caller counts failures
    /// and rewinds per file across runs).
    pub async fn push_file_limited<C, CF, CE, K, KF>(
        &self,
        upload: &Upload,
        limits: &RunLimits,
        stats: &mut Streamed,
        mut commit: C,
        mut should_continue: K,
    ) -> Result<(), StreamError>
    where
        C: FnMut(u64) -> CF,
        CF: Future<Output = Result<(), CE>>,
        CE: Into<Box<dyn StdError + Send + Sync>>,
        K: FnMut() -> KF,
        KF: Future<Output = bool>,
    {
        let key = upload.key.as_str();
        let url = &upload.file_url;
        let size = upload.size;
        let storage_err = |source| StreamError::Storage {
            key: key.to_owned(),
            source,
        };
        let actual = self
            .storage
            .head(key)
            .await
            .map_err(storage_err)?
            .ok_or_else(|| storage_err(StorageError::NotFound(key.to_owned())))?
            .size;
        if actual != size {
            return Err(StreamError::SizeMismatch {
                key: key.to_owned(),
                expected: size,
                actual,
            });
        }
        if upload.offset > size {
            return Err(StreamError::Permanent {
                offset: upload.offset,
                error: PushError::InvalidRequest("the committed offset is past the end"),
            });
        }

        stats.size = size;
        let mut warn = WarnLimiter::new(Duration::from_secs(30));
        let past_deadline = || limits.deadline.is_some_and(|d| Instant::now() >= d);
        let mut backoff = self.backoff();
        let mut offset = upload.offset;
        let mut committed = upload.offset;
        let mut do_commit = |to: u64, committed: &mut u64| {
            let run = (to > *committed).then(|| commit(to));
            if run.is_some() {
                *committed = to;
            }
            async move {
                match run {
                    Some(fut) => fut.await.map_err(|e| StreamError::Commit {
                        offset: to,
                        source: e.into(),
                    }),
                    None => Ok(()),
                }
            }
        };

        if upload.verify_offset {
            stats.offset_queries += 1;
            match self
                .client_offset(url, &mut backoff, offset, limits, stats)
                .await?
            {
                Some(reported) if reported <= size => {
                    do_commit(reported, &mut committed).await?;
                    offset = reported;
                }
                Some(reported) => {
                    return Err(StreamError::NeedsRestart {
                        offset,
                        reason: RestartReason::ClientAhead { reported },
                        cause: None,
                    })
                }
                None => {
                    return Err(StreamError::NeedsRestart {
                        offset,
                        reason: RestartReason::NoOffsetQuery,
                        cause: None,
                    })
                }
            }
        }

        let chunk = self.chunk_size as u64;
        'chunks: while offset < size {
            if past_deadline() || !should_continue().await {
                return Err(StreamError::Cancelled { offset: committed });
            }
            let end = offset.saturating_add(chunk).min(size);
            let bytes = self
                .storage
                .get_range(key, offset..end)
                .await
                .map_err(storage_err)?;
            if bytes.len() as u64 != end - offset {
                return Err(StreamError::SizeMismatch {
                    key: key.to_owned(),
                    expected: size,
                    actual: offset + bytes.len() as u64,
                });
            }
            loop {
                count_request(limits, stats, offset)?;
                let err = match self
                    .client
                    .put_chunk(url, offset, bytes.clone(), size)
                    .await
                {
                    Ok(_) => {
                        stats.chunks += 1;
                        stats.bytes_acked += end - offset;
                        do_commit(end, &mut committed).await?;
                        offset = end;
                        backoff.reset();
                        continue 'chunks;
                    }
                    Err(err) => err,
                };
                if err.is_stalled() {
                    stats.stalled += 1;
                }
                let failed_at = offset;
                let retry_after = err.retry_after();
                let last = match self
                    .after_failure(err, url, &mut backoff, offset, end, limits, stats)
                    .await?
                {
                    Step::MoveTo(to, err)
                        if to == end || (to > offset && to - offset >= limits.min_advance) =>
                    {
                        // The client kept the chunk, or a real part of it: go
                        // on from there. Not a 2xx: the retry budget is kept.
                        tracing::debug!(url = %url, from = offset, to, error = %err, "resuming from the client's offset");
                        do_commit(to, &mut committed).await?;
                        offset = to;
                        continue 'chunks;
                    }
                    Step::MoveTo(to, err) if to > offset => {
                        // A claimed advance too small to be real progress:
                        // a failed request, and the same chunk again.
                        tracing::debug!(url = %url, from = offset, to, min = limits.min_advance, error = %err, "the client's offset advance is too small to accept");
                        err
                    }
                    Step::MoveTo(to, err) => {
                        // The client lost bytes it had acknowledged: send
                        // them again, counting a failure and a rewind.
                        stats.rewinds += 1;
                        if stats.rewinds > limits.max_rewinds {
                            return Err(StreamError::Abusive {
                                offset: committed,
                                abuse: Abuse::Rewinds(stats.rewinds),
                            });
                        }
                        if let Some(suppressed) = warn.allow() {
                            tracing::warn!(url = %url, from = offset, to, error = %err, suppressed, "the client holds less than acknowledged");
                        }
                        offset = to;
                        err
                    }
                    Step::Again(err) => err,
                };
                stats.failures += 1;
                if stats.failures > limits.max_failures {
                    return Err(StreamError::Abusive {
                        offset: committed,
                        abuse: Abuse::Failures(stats.failures),
                    });
                }
                stats.retries += 1;
                let Some(delay) = backoff.next_delay(retry_after) else {
                    return Err(StreamError::Exhausted {
                        offset: failed_at,
                        attempts: backoff.failures(),
                        last,
                        retry_after,
                    });
                };
                match warn.allow() {
                    Some(suppressed) => {
                        tracing::warn!(transfer = transfer_segment(url), url = %url, offset = failed_at, error = %last, ?delay, suppressed, "chunk failed; retrying");
                    }
                    None => {
                        tracing::debug!(transfer = transfer_segment(url), url = %url, offset = failed_at, error = %last, ?delay, "chunk failed; retrying");
                    }
                }
                let delay = match limits.deadline {
                    Some(d) => delay.min(d.saturating_duration_since(Instant::now())),
                    None => delay,
                };
                tokio::time::sleep(delay).await;
                if past_deadline() || !should_continue().await {
                    return Err(StreamError::Cancelled { offset: committed });
                }
                if offset != failed_at {
                    continue 'chunks;
                }
            }
        }
        Ok(())
    }

    /// Decides what to do after a failed chunk `[offset, end)`.
    #[allow(clippy::too_many_arguments)]
    async fn after_failure(
        &self,
        err: PushError,
        url: &Url,
        backoff: &mut Backoff,
        offset: u64,
        end: u64,
        limits: &RunLimits,
        stats: &mut Streamed,
    ) -> Result<Step, StreamError> {
        let outcome = err.outcome();
        let conflict = matches!(err.status(), Some(409 | 416));
        if !outcome.is_unknown() && !conflict {
            return match outcome {
                Outcome::Retry { .. } => Ok(Step::Again(err)),
                _ => Err(StreamError::Permanent { offset, error: err }),
            };
        }
        let reported = match &err {
            PushError::Status {
                upload_offset: Some(o),
                ..
            } => Some(*o),
            _ => {
                stats.offset_queries += 1;
                self.client_offset(url, backoff, offset, limits, stats)
                    .await?
            }
        };
        match reported {
            None => Err(StreamError::NeedsRestart {
                offset,
                reason: RestartReason::NoOffsetQuery,
                cause: Some(Box::new(err)),
            }),
            Some(reported) if reported > end => Err(StreamError::NeedsRestart {
                offset,
                reason: RestartReason::ClientAhead { reported },
                cause: Some(Box::new(err)),
            }),
            Some(reported) if reported == offset => Ok(Step::Again(err)),
            Some(reported) => Ok(Step::MoveTo(reported, err)),
        }
    }

    /// Asks the client's offset, retrying transient failures.
    async fn client_offset(
        &self,
        url: &Url,
        backoff: &mut Backoff,
        offset: u64,
        limits: &RunLimits,
        stats: &mut Streamed,
    ) -> Result<Option<u64>, StreamError> {
        loop {
            count_request(limits, stats, offset)?;
            let err = match self.client.head_offset(url).await {
                Ok(reported) => return Ok(reported),
                Err(err) => err,
            };
            if err.is_stalled() {
                stats.stalled += 1;
            }
            match err.outcome() {
                Outcome::Retry { after, .. } => match backoff.next_delay(after) {
                    Some(delay) => tokio::time::sleep(delay).await,
                    None => {
                        return Err(StreamError::Exhausted {
                            offset,
                            attempts: backoff.failures(),
                            retry_after: err.retry_after(),
                            last: err,
                        })
                    }
                },
                _ => return Err(StreamError::Permanent { offset, error: err }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn warnings_are_rate_limited() {
        let mut warn = WarnLimiter::new(Duration::from_secs(30));
        assert_eq!(warn.allow(), Some(0));
        for _ in 0..1000 {
            assert_eq!(warn.allow(), None);
            tokio::time::advance(Duration::from_millis(10)).await;
        }
        tokio::time::advance(Duration::from_secs(20)).await;
        assert_eq!(
            warn.allow(),
            Some(1000),
            "the next warning counts the suppressed ones"
        );
        assert_eq!(warn.allow(), None);
    }

    #[test]
    fn requests_are_capped_per_run() {
        let limits = RunLimits {
            max_requests: 3,
            ..RunLimits::default()
        };
        let mut stats = Streamed::default();
        for _ in 0..3 {
            count_request(&limits, &mut stats, 7).unwrap();
        }
        match count_request(&limits, &mut stats, 7) {
            Err(StreamError::Abusive {
                offset: 7,
                abuse: Abuse::Requests(3),
            }) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(stats.requests, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_reset_the_retry_budget_runs_out() {
        // What a faking client gets: failures that never reset the budget
        // (only a 2xx chunk does) end after `max_attempts`, whatever it
        // claims in between, and the waits grow.
        let policy = RetryPolicy {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(60),
            max_attempts: 8,
            max_elapsed: Duration::from_secs(120),
        };
        let mut backoff = Backoff::with_seed(policy, 7);
        let mut slept = Duration::ZERO;
        let mut tries = 1;
        while let Some(delay) = backoff.next_delay(None) {
            tokio::time::sleep(delay).await;
            slept += delay;
            tries += 1;
        }
        assert_eq!(tries, 8);
        assert!(slept <= Duration::from_secs(120));
        // A reset after a 2xx chunk gives the full budget back.
        backoff.reset();
        assert!(backoff.next_delay(None).is_some());
    }
}
