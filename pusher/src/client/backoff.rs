//! [`retry`], which runs one push request under the runtime's one retry
//! policy ([`runtime::retry`]: exponential backoff with full jitter,
//! bounded by attempts and by total time).

use std::future::Future;
use std::time::Duration;

pub use runtime::retry::{Backoff, RetryPolicy};

use super::error::{Outcome, PushError};
use super::Stop;

/// How a retried request finally failed.
#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    /// A failure that retrying cannot help.
    #[error("{0}")]
    Permanent(PushError),
    /// Attempts or time spent; the last failure, and its `Retry-After` so a
    /// worker can schedule the next try.
    #[error("gave up after {attempts} attempts: {last}")]
    Exhausted {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: PushError,
        /// The last `Retry-After` from the client.
        retry_after: Option<Duration>,
    },
}

impl RetryError {
    /// The last failure.
    pub fn last(&self) -> &PushError {
        match self {
            RetryError::Permanent(e) | RetryError::Exhausted { last: e, .. } => e,
        }
    }
}

/// Runs `op` until it succeeds, fails permanently or the backoff is spent,
/// sleeping between attempts. Every retryable failure is retried, the
/// `Unknown` outcome included: use it for idempotent requests (start,
/// finishes, `HEAD`), not for chunks (see `ChunkStreamer`).
pub async fn retry<T, F, Fut>(backoff: &mut Backoff, op: F) -> Result<T, RetryError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, PushError>>,
{
    match retry_while(backoff, &Stop::new(), || std::future::ready(true), op).await? {
        Some(value) => Ok(value),
        // `go_on` above always answers yes.
        None => Err(RetryError::Permanent(PushError::InvalidRequest(
            "a request stopped unasked",
        ))),
    }
}

/// As [`retry`], but before each retry `go_on` says whether the request is
/// still wanted (the transfer may have been revoked or cancelled while the
/// request failed): `Ok(None)` once it is not, and no attempt more is
/// made. Once `stop` is set (the worker stopping) the wait before a retry
/// ends and no attempt more is made either: the last failure is returned
/// as [`RetryError::Exhausted`], so the job is tried again later, by
/// another worker.
pub async fn retry_while<T, F, Fut, G, GFut>(
    backoff: &mut Backoff,
    stop: &Stop,
    mut go_on: G,
    mut op: F,
) -> Result<Option<T>, RetryError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, PushError>>,
    G: FnMut() -> GFut,
    GFut: Future<Output = bool>,
{
    let mut again = false;
    loop {
        if again && !go_on().await {
            return Ok(None);
        }
        again = true;
        let err = match op().await {
            Ok(value) => return Ok(Some(value)),
            Err(err) => err,
        };
        match err.outcome() {
            Outcome::Success => {
                // Not reachable for an error; treated as permanent.
                return Err(RetryError::Permanent(err));
            }
            Outcome::Permanent(_) => return Err(RetryError::Permanent(err)),
            Outcome::Retry { after, .. } => match backoff.next_delay(after) {
                Some(delay) if stop.pause(delay).await => {
                    tracing::debug!(error = %err, ?delay, "retrying");
                }
                _ => {
                    return Err(RetryError::Exhausted {
                        attempts: backoff.failures(),
                        retry_after: err.retry_after(),
                        last: err,
                    })
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use tokio::time::Instant;

    fn unavailable(after: Option<Duration>) -> PushError {
        PushError::Status {
            method: "PUT",
            url: "http://x/".into(),
            status: 503,
            retry_after: after,
            upload_offset: None,
            reason: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retry_sleeps_the_drawn_delays_then_succeeds() {
        let calls = AtomicU32::new(0);
        let mut expected = Backoff::with_seed(RetryPolicy::short(), 42);
        let planned: Duration = (0..3).map(|_| expected.next_delay(None).unwrap()).sum();

        let start = Instant::now();
        let mut b = Backoff::with_seed(RetryPolicy::short(), 42);
        let value = retry(&mut b, || async {
            if calls.fetch_add(1, Ordering::SeqCst) < 3 {
                Err(unavailable(None))
            } else {
                Ok(7)
            }
        })
        .await
        .unwrap();
        assert_eq!(value, 7);
        assert_eq!(calls.load(Ordering::SeqCst), 4);
        // tokio's timer has millisecond ticks: each sleep ends on the next.
        let slept = start.elapsed();
        assert!(
            slept >= planned && slept <= planned + Duration::from_millis(3),
            "{slept:?} vs {planned:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn retry_honours_retry_after_and_gives_up() {
        let start = Instant::now();
        let mut b = Backoff::with_seed(
            RetryPolicy {
                max_attempts: 3,
                ..RetryPolicy::short()
            },
            5,
        );
        let err = retry(&mut b, || async {
            Err::<(), _>(unavailable(Some(Duration::from_secs(4))))
        })
        .await
        .unwrap_err();
        assert_eq!(start.elapsed(), Duration::from_secs(8), "two waits of 4 s");
        match err {
            RetryError::Exhausted {
                attempts,
                retry_after,
                ..
            } => {
                assert_eq!(attempts, 3);
                assert_eq!(retry_after, Some(Duration::from_secs(4)));
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stopping_worker_ends_the_wait_and_makes_no_attempt_more() {
        let calls = AtomicU32::new(0);
        let stop = Stop::new();
        let mut b = Backoff::with_seed(
            RetryPolicy {
                max_attempts: 8,
                ..RetryPolicy::short()
            },
            5,
        );
        let start = Instant::now();
        let (err, ()) = tokio::join!(
            retry_while(
                &mut b,
                &stop,
                || std::future::ready(true),
                || async {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Err::<(), _>(unavailable(Some(Duration::from_secs(30))))
                }
            ),
            async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                stop.set();
            }
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1, "no attempt after the stop");
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(2),
            "the 30 s wait ended"
        );
        match err {
            Err(RetryError::Exhausted {
                attempts,
                retry_after,
                ..
            }) => {
                assert_eq!(attempts, 1);
                assert_eq!(retry_after, Some(Duration::from_secs(30)));
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn permanent_failures_are_not_retried() {
        let calls = AtomicU32::new(0);
        let mut b = Backoff::with_seed(RetryPolicy::short(), 5);
        let err = retry(&mut b, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<(), _>(PushError::Status {
                method: "PUT",
                url: "http://x/".into(),
                status: 400,
                retry_after: None,
                upload_offset: None,
                reason: None,
            })
        })
        .await
        .unwrap_err();
        assert!(matches!(err, RetryError::Permanent(_)));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
