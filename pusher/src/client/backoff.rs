//! Exponential backoff with full jitter, bounded by attempts and by total
//! time; and [`retry`], which runs one request under it.

use std::future::Future;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use super::error::{Outcome, PushError};

/// Bounds of the retries of one request (or one chunk).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first delay's upper bound; it doubles with each failure.
    pub base: Duration,
    /// The largest upper bound of a delay (a `Retry-After` may ask more).
    pub cap: Duration,
    /// Attempts in all, the first one included (at least 1).
    pub max_attempts: u32,
    /// Total time budget from the first attempt; no retry is scheduled past
    /// it.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    /// 0.5 s doubling up to 60 s, 10 attempts, 15 minutes.
    fn default() -> Self {
        Self {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(60),
            max_attempts: 10,
            max_elapsed: Duration::from_secs(15 * 60),
        }
    }
}

/// The state of retries: failures so far and when the first attempt was
/// made. Delays are drawn uniformly in `[0, min(cap, base·2^(n-1))]` ("full
/// jitter"); a `Retry-After` raises the delay to at least what it asks.
///
/// Time is tokio's, so tests can run it under `tokio::time::pause()`.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: RetryPolicy,
    rng: StdRng,
    failures: u32,
    started: Instant,
}

impl Backoff {
    /// A backoff seeded from the operating system.
    pub fn new(policy: RetryPolicy) -> Self {
        Self::with_rng(policy, StdRng::from_entropy())
    }

    /// A deterministic backoff (tests, reproducible runs).
    pub fn with_seed(policy: RetryPolicy, seed: u64) -> Self {
        Self::with_rng(policy, StdRng::seed_from_u64(seed))
    }

    fn with_rng(policy: RetryPolicy, rng: StdRng) -> Self {
        Self {
            policy,
            rng,
            failures: 0,
            started: Instant::now(),
        }
    }

    /// The policy.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// Failures recorded since the last reset.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Time since the first attempt (or the last reset).
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Starts over (after progress): no failures, a new time budget. The
    /// random sequence goes on.
    pub fn reset(&mut self) {
        self.failures = 0;
        self.started = Instant::now();
    }

    /// Records a failure and returns how long to wait before the next
    /// attempt, or `None` when the attempts or the time budget are spent
    /// (including when the wait would end past the budget).
    pub fn next_delay(&mut self, retry_after: Option<Duration>) -> Option<Duration> {
        self.failures = self.failures.saturating_add(1);
        if self.failures >= self.policy.max_attempts.max(1) {
            return None;
        }
        let exp = self.failures.saturating_sub(1).min(63);
        let ceiling = self
            .policy
            .base
            .saturating_mul(1u32.checked_shl(exp).unwrap_or(u32::MAX))
            .min(self.policy.cap);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        let jittered = Duration::from_nanos(self.rng.gen_range(0..=nanos));
        let delay = retry_after.map_or(jittered, |after| after.max(jittered));
        let elapsed = self.started.elapsed();
        if elapsed.saturating_add(delay) > self.policy.max_elapsed {
            return None;
        }
        Some(delay)
    }
}

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
pub async fn retry<T, F, Fut>(backoff: &mut Backoff, mut op: F) -> Result<T, RetryError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, PushError>>,
{
    loop {
        let err = match op().await {
            Ok(value) => return Ok(value),
            Err(err) => err,
        };
        match err.outcome() {
            Outcome::Success => {
                // Not reachable for an error; treated as permanent.
                return Err(RetryError::Permanent(err));
            }
            Outcome::Permanent(_) => return Err(RetryError::Permanent(err)),
            Outcome::Retry { after, .. } => match backoff.next_delay(after) {
                Some(delay) => {
                    tracing::debug!(error = %err, ?delay, "retrying");
                    tokio::time::sleep(delay).await;
                }
                None => {
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

    fn policy() -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(2),
            max_attempts: 8,
            max_elapsed: Duration::from_secs(60),
        }
    }

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
    async fn delays_are_full_jitter_under_a_doubling_cap() {
        let mut b = Backoff::with_seed(policy(), 7);
        let mut delays = Vec::new();
        while let Some(d) = b.next_delay(None) {
            delays.push(d);
        }
        assert_eq!(delays.len(), 7, "8 attempts, 7 waits");
        for (i, d) in delays.iter().enumerate() {
            let ceiling = (Duration::from_millis(100) * (1 << i)).min(Duration::from_secs(2));
            assert!(*d <= ceiling, "delay {i} = {d:?} above {ceiling:?}");
        }
        // The same seed gives the same delays; another seed others.
        let mut again = Backoff::with_seed(policy(), 7);
        let replay: Vec<_> = std::iter::from_fn(|| again.next_delay(None)).collect();
        assert_eq!(replay, delays);
        let mut other = Backoff::with_seed(policy(), 8);
        let different: Vec<_> = std::iter::from_fn(|| other.next_delay(None)).collect();
        assert_ne!(different, delays);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_a_floor() {
        let mut b = Backoff::with_seed(policy(), 1);
        let d = b.next_delay(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(
            d,
            Duration::from_secs(5),
            "above the jitter ceiling of 100 ms"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_time_budget_ends_retries() {
        let mut b = Backoff::with_seed(
            RetryPolicy {
                max_elapsed: Duration::from_secs(10),
                max_attempts: 1000,
                ..policy()
            },
            3,
        );
        assert!(b.next_delay(Some(Duration::from_secs(11))).is_none());
        b.reset();
        let mut waited = Duration::ZERO;
        while let Some(d) = b.next_delay(None) {
            tokio::time::sleep(d).await;
            waited += d;
        }
        assert!(waited <= Duration::from_secs(10));
        assert!(b.elapsed() <= Duration::from_secs(10));
        assert!(b.failures() > 5);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_sleeps_the_drawn_delays_then_succeeds() {
        let calls = AtomicU32::new(0);
        let mut expected = Backoff::with_seed(policy(), 42);
        let planned: Duration = (0..3).map(|_| expected.next_delay(None).unwrap()).sum();

        let start = Instant::now();
        let mut b = Backoff::with_seed(policy(), 42);
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
                ..policy()
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
    async fn permanent_failures_are_not_retried() {
        let calls = AtomicU32::new(0);
        let mut b = Backoff::with_seed(policy(), 5);
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
