//! [`ChunkStreamer`]: pushes one archive from resource storage as chunks,
//! at most two chunks in memory (the one sent, the next read ahead),
//! committing the offset after each
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
//! deadline. Per-step logs are at debug level, warnings rate-limited.//!
//! `progress.rs` holds what a push is and what it did, and the limits of
//! one run; `error.rs` how a push stops.

mod error;
mod progress;

use std::error::Error as StdError;
use std::future::Future;
use std::ops::Range;
use std::time::Duration;

use bytes::Bytes;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use runtime::storage::{Storage, StorageError};
use url::Url;

use super::backoff::{Backoff, RetryPolicy};
use super::error::{Outcome, PushError};
use super::http::PushClient;
use super::Stop;

pub use error::{RestartReason, StreamError};
use progress::{count_request, WarnLimiter};
pub use progress::{Abuse, RunLimits, Streamed, Upload};

/// The default chunk size: 2 MiB, the reference's.
pub const DEFAULT_CHUNK_SIZE: usize = 2 << 20;

/// The transfer id of a file URL (`…/{id}/{file}`), for logs.
fn transfer_segment(url: &Url) -> &str {
    url.path_segments()
        .and_then(|mut segments| segments.nth_back(1))
        .unwrap_or("")
}

/// What the client said after a failed chunk.
enum Step {
    /// Send the same chunk again, after a backoff.
    Again(PushError),
    /// Continue from this offset (the chunk is re-read).
    MoveTo(u64, PushError),
}

/// A read of a chunk running on a task of its own.
type ChunkRead = JoinHandle<Result<Bytes, StorageError>>;

/// The next chunk of an archive, read from storage on a task of its own
/// while the current chunk is sent. Dropping it abandons the read.
struct ReadAhead<'a> {
    storage: &'a Storage,
    key: &'a str,
    next: Option<(Range<u64>, ChunkRead)>,
}

impl<'a> ReadAhead<'a> {
    fn new(storage: &'a Storage, key: &'a str) -> Self {
        Self {
            storage,
            key,
            next: None,
        }
    }

    /// Starts reading `range` (abandoning a read of another range).
    fn start(&mut self, range: Range<u64>) {
        let (storage, key) = (self.storage.clone(), self.key.to_owned());
        let read = range.clone();
        let task = tokio::spawn(async move { storage.get_range(&key, read).await });
        if let Some((_, old)) = self.next.replace((range, task)) {
            old.abort();
        }
    }

    /// The bytes of `range`: the read started for it, or a new one.
    async fn read(&mut self, range: Range<u64>) -> Result<Bytes, StorageError> {
        if let Some((started, task)) = self.next.take() {
            if started == range {
                match task.await {
                    Ok(read) => return read,
                    // A read that panicked: read again here.
                    Err(e) => {
                        tracing::warn!(error = %e, "a chunk read ahead failed; reading it again")
                    }
                }
            } else {
                task.abort();
            }
        }
        self.storage.get_range(self.key, range).await
    }
}

impl Drop for ReadAhead<'_> {
    fn drop(&mut self) {
        if let Some((_, task)) = self.next.take() {
            task.abort();
        }
    }
}

/// Pushes archives from storage in chunks.
#[derive(Debug, Clone)]
pub struct ChunkStreamer {
    client: PushClient,
    storage: Storage,
    chunk_size: usize,
    policy: RetryPolicy,
    seed: Option<u64>,
    stop: Stop,
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
            stop: Stop::new(),
        }
    }

    /// Ends the waits between a chunk's attempts once `stop` is set (the
    /// worker stopping): the run stops as when its deadline passes
    /// ([`StreamError::Cancelled`], the offsets committed so far kept).
    pub fn with_stop(mut self, stop: Stop) -> Self {
        self.stop = stop;
        self
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
        let mut ahead = ReadAhead::new(&self.storage, key);
        // The commit of the last acknowledged chunk, awaited together with
        // the next `should_continue` (two Redis round trips at once).
        let mut committing = None;
        'chunks: while offset < size {
            if past_deadline() {
                if let Some(c) = committing.take() {
                    c.await?;
                }
                return Err(StreamError::Cancelled { offset: committed });
            }
            let go_on = match committing.take() {
                Some(c) => {
                    let (done, go_on) = futures_util::future::join(c, should_continue()).await;
                    done?;
                    go_on
                }
                None => should_continue().await,
            };
            if !go_on {
                return Err(StreamError::Cancelled { offset: committed });
            }
            let end = offset.saturating_add(chunk).min(size);
            let bytes = ahead.read(offset..end).await.map_err(storage_err)?;
            if end < size {
                // Read while this chunk is sent: at most two in memory.
                ahead.start(end..end.saturating_add(chunk).min(size));
            }
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
                        committing = Some(do_commit(end, &mut committed));
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
                let slept = self.stop.pause(delay).await;
                if !slept || past_deadline() || !should_continue().await {
                    return Err(StreamError::Cancelled { offset: committed });
                }
                if offset != failed_at {
                    continue 'chunks;
                }
            }
        }
        if let Some(c) = committing.take() {
            c.await?;
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
                    // A stopping worker asks no more (its last failure stands).
                    Some(delay) if self.stop.pause(delay).await => {}
                    _ => {
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
