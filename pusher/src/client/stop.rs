//! [`Stop`]: the worker's stop signal as the waits between attempts see
//! it. A pusher told to stop should not sit out a backoff of many seconds
//! before it hands its job back: a wait ends early, and the request is not
//! tried again by this worker (its last failure stands, as when its
//! attempts run out), so the job goes back to the queue at once.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// A stop signal shared by its clones: once [`Stop::set`], every
/// [`Stop::pause`] under way or to come ends at once.
#[derive(Clone, Debug)]
pub struct Stop {
    tx: Arc<watch::Sender<bool>>,
    rx: watch::Receiver<bool>,
}

impl Default for Stop {
    fn default() -> Self {
        Self::new()
    }
}

impl Stop {
    /// A signal not set.
    pub fn new() -> Stop {
        let (tx, rx) = watch::channel(false);
        Stop {
            tx: Arc::new(tx),
            rx,
        }
    }

    /// Sets the signal (for good).
    pub fn set(&self) {
        self.tx.send_replace(true);
    }

    /// Whether the signal is set.
    pub fn is_set(&self) -> bool {
        *self.rx.borrow()
    }

    /// Sleeps `delay`, or less once the signal is set; true when the whole
    /// delay was slept.
    pub async fn pause(&self, delay: Duration) -> bool {
        let mut rx = self.rx.clone();
        tokio::select! {
            // A set signal wins over a wait that is also over (a zero delay).
            biased;
            // The sender lives as long as any clone: this ends only when set.
            _ = rx.wait_for(|stopped| *stopped) => false,
            () = tokio::time::sleep(delay) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    #[tokio::test(start_paused = true)]
    async fn a_pause_sleeps_its_delay_until_the_signal_is_set() {
        let stop = Stop::new();
        let t = Instant::now();
        assert!(stop.pause(Duration::from_secs(3)).await);
        assert_eq!(t.elapsed(), Duration::from_secs(3));
        let other = stop.clone();
        let t = Instant::now();
        let (slept, ()) = tokio::join!(stop.pause(Duration::from_secs(60)), async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            other.set();
        });
        assert!(!slept, "a set signal ends the pause");
        assert_eq!(t.elapsed(), Duration::from_secs(1));
        assert!(stop.is_set());
        // Set for good: later pauses end at once, a zero one too.
        let t = Instant::now();
        assert!(!stop.pause(Duration::from_secs(60)).await);
        assert_eq!(t.elapsed(), Duration::ZERO);
        for _ in 0..32 {
            assert!(!stop.pause(Duration::ZERO).await);
        }
    }
}
