//! Exponential backoff with jitter for reconnections and retried publishes.

use std::time::Duration;

/// Delays that double from `min` up to `max`; each delay is drawn uniformly
/// from the upper half of the current step ("equal jitter"), so that many
/// workers losing the broker at once do not come back in lockstep while the
/// spacing still grows.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    step: Duration,
}

impl Backoff {
    /// A backoff starting at `min` and capped at `max`.
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        let min = min.max(Duration::from_millis(1));
        let max = max.max(min);
        Self {
            min,
            max,
            step: min,
        }
    }

    /// Starts again from the smallest delay.
    pub(crate) fn reset(&mut self) {
        self.step = self.min;
    }

    /// The next delay to wait.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let step = self.step;
        self.step = step.saturating_mul(2).min(self.max);
        let half = step / 2;
        let spread = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(random_u64() % spread.saturating_add(1))
    }
}

fn random_u64() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_with_jitter_up_to_max() {
        let min = Duration::from_millis(100);
        let max = Duration::from_secs(5);
        let mut b = Backoff::new(min, max);
        let mut step = min;
        for _ in 0..12 {
            let d = b.next_delay();
            assert!(d >= step / 2 && d <= step, "{d:?} outside {step:?}");
            step = (step * 2).min(max);
        }
        assert_eq!(step, max);
        b.reset();
        assert!(b.next_delay() <= min);
    }
}
