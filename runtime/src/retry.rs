//! The one retry policy of every role: exponential backoff with full
//! jitter, bounded by attempts and by total time ([`RetryPolicy`],
//! [`Backoff`]), and the one typed decision a job ends with
//! ([`Decision`]). Used by the broker's reconnections and publishes, the
//! processor's and the pusher's jobs, the pusher's requests and its writes
//! of acknowledged steps.

use std::future::Future;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

/// How a job ends: the worker acks it, retries it later, or fails it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing more to do (done, or nothing left for this job).
    Done,
    /// Try again after this delay.
    Retry(Duration),
    /// The transfer cannot succeed: it fails with this reason.
    Fail(String),
}

impl From<crate::state::StateError> for Decision {
    /// The state store failed (Redis unreachable or refusing): try again
    /// shortly; the connection reconnects by itself.
    fn from(e: crate::state::StateError) -> Self {
        tracing::warn!(error = %e, "state store trouble; retrying later");
        Decision::Retry(Duration::from_secs(2))
    }
}

/// Bounds of retries: of one request, one chunk, one job, one reconnection.
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

impl RetryPolicy {
    /// A policy without attempt or time limit (reconnections): only the
    /// delays grow, from `base` up to `cap`.
    pub fn unbounded(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            max_attempts: u32::MAX,
            max_elapsed: Duration::MAX,
        }
    }

    /// A short policy: 100 ms doubling up to 2 s, 8 attempts, 60 s in
    /// all. The retry tests of every crate draw their delays from it, so
    /// their expected figures are one set.
    pub const fn short() -> Self {
        Self {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(2),
            max_attempts: 8,
            max_elapsed: Duration::from_secs(60),
        }
    }

    /// The upper bound of the delay after `failures` failures (the first
    /// failure: `base`), doubling up to `cap`.
    pub fn ceiling(&self, failures: u32) -> Duration {
        let exp = failures.saturating_sub(1).min(31);
        self.base
            .saturating_mul(1u32.checked_shl(exp).unwrap_or(u32::MAX))
            .min(self.cap)
    }

    /// A delay drawn uniformly in `[0, ceiling(failures)]` ("full jitter").
    pub fn jittered(&self, failures: u32) -> Duration {
        full_jitter(self.ceiling(failures), &mut rand::thread_rng())
    }

    /// What a job does after its `failures`-th failure (`failures` counts
    /// the attempts made): another try after a jittered delay while
    /// attempts remain, otherwise give up with `reason`.
    pub fn after_failure(&self, failures: u32, reason: &str) -> Decision {
        if failures >= self.max_attempts.max(1) {
            Decision::Fail(format!("gave up after {failures} attempts: {reason}"))
        } else {
            Decision::Retry(self.jittered(failures))
        }
    }
}

fn full_jitter(ceiling: Duration, rng: &mut impl Rng) -> Duration {
    let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(rng.gen_range(0..=nanos))
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
    /// attempt, at most the policy's cap, whatever the attempts and time
    /// spent (reconnections, which never give up).
    pub fn next_wait(&mut self) -> Duration {
        self.next_delay(None).unwrap_or(self.policy.cap)
    }

    /// Records a failure and returns how long to wait before the next
    /// attempt, or `None` when the attempts or the time budget are spent
    /// (including when the wait would end past the budget).
    pub fn next_delay(&mut self, retry_after: Option<Duration>) -> Option<Duration> {
        self.failures = self.failures.saturating_add(1);
        if self.failures >= self.policy.max_attempts.max(1) {
            return None;
        }
        let jittered = full_jitter(self.policy.ceiling(self.failures), &mut self.rng);
        let delay = retry_after.map_or(jittered, |after| after.max(jittered));
        let elapsed = self.started.elapsed();
        if elapsed.saturating_add(delay) > self.policy.max_elapsed {
            return None;
        }
        Some(delay)
    }
}

/// Retries `write` under `policy` while it fails (a store write that must
/// not be lost to a short outage); the last error when the policy is spent.
pub async fn retry_write<T, E, F, Fut>(policy: RetryPolicy, mut write: F) -> Result<T, E>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut backoff = Backoff::new(policy);
    loop {
        match write().await {
            Ok(v) => return Ok(v),
            Err(e) => match backoff.next_delay(None) {
                Some(delay) => {
                    tracing::warn!(error = %e, retry_in = ?delay, "a write failed; retrying");
                    tokio::time::sleep(delay).await;
                }
                None => return Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn delays_are_full_jitter_under_a_doubling_cap() {
        let mut b = Backoff::with_seed(RetryPolicy::short(), 7);
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
        let mut again = Backoff::with_seed(RetryPolicy::short(), 7);
        let replay: Vec<_> = std::iter::from_fn(|| again.next_delay(None)).collect();
        assert_eq!(replay, delays);
        let mut other = Backoff::with_seed(RetryPolicy::short(), 8);
        let different: Vec<_> = std::iter::from_fn(|| other.next_delay(None)).collect();
        assert_ne!(different, delays);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_is_a_floor() {
        let mut b = Backoff::with_seed(RetryPolicy::short(), 1);
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
                ..RetryPolicy::short()
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

    #[test]
    fn decisions_follow_the_attempts() {
        let p = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::short()
        };
        for failures in 1..3 {
            match p.after_failure(failures, "x") {
                Decision::Retry(d) => assert!(d <= p.ceiling(failures), "{d:?}"),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            p.after_failure(3, "broken"),
            Decision::Fail("gave up after 3 attempts: broken".into())
        );
        assert_eq!(p.ceiling(1), Duration::from_millis(100));
        assert_eq!(p.ceiling(3), Duration::from_millis(400));
        assert_eq!(p.ceiling(40), Duration::from_secs(2));
        let unbounded = RetryPolicy::unbounded(Duration::from_millis(1), Duration::from_secs(1));
        assert!(matches!(
            unbounded.after_failure(1_000_000, "x"),
            Decision::Retry(_)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn writes_are_retried_until_the_policy_is_spent() {
        let calls = AtomicU32::new(0);
        let p = RetryPolicy {
            max_attempts: 4,
            ..RetryPolicy::short()
        };
        let ok: Result<u32, String> = retry_write(p, || async {
            match calls.fetch_add(1, Ordering::SeqCst) {
                0 | 1 => Err("down".to_owned()),
                n => Ok(n),
            }
        })
        .await;
        assert_eq!(ok, Ok(2));
        calls.store(0, Ordering::SeqCst);
        let err: Result<(), String> = retry_write(p, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err("down".to_owned())
        })
        .await;
        assert_eq!(err, Err("down".to_owned()));
        assert_eq!(calls.load(Ordering::SeqCst), 4, "four attempts in all");
    }
}
