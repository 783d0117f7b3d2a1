//! The pusher's registration in a transfer's restart fence.

use runtime::state::{Heartbeat, State, Transfer};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

/// A registration in the transfer's restart fence (see
/// [`runtime::state::StateStore::enter_fence`]), held while a job of one
/// generation may send requests to the client, and renewed in the
/// background. The start request of a later generation waits until every
/// such registration of an earlier generation is gone (or expired), so a
/// client that appends blindly (the reference client) never receives a
/// chunk of generation N after the start of generation N+1.
///
/// A request abandoned at its deadline is no longer awaited, but its bytes
/// may still be in the client's hands: [`Fenced::linger`] keeps the
/// registration (renewed) for one more chunk deadline after the job
/// leaves, so that a slow client is done with that chunk before the next
/// generation's start reaches it.
pub(super) struct Fenced {
    state: State,
    id: String,
    generation: u64,
    holder: String,
    heartbeat: Heartbeat,
    linger: Mutex<Option<Instant>>,
}

impl Fenced {
    /// Registers, unless the generation is no longer the pushing one.
    pub(super) async fn enter(
        state: &State,
        t: &Transfer,
        holder: String,
        ttl: Duration,
    ) -> Result<Option<Fenced>, runtime::state::StateError> {
        if !state.enter_fence(&t.id, t.generation, &holder, ttl).await? {
            return Ok(None);
        }
        let heartbeat = {
            let (state, id, holder) = (state.clone(), t.id.clone(), holder.clone());
            let generation = t.generation;
            Heartbeat::start(ttl / 4, move || {
                let (state, id, holder) = (state.clone(), id.clone(), holder.clone());
                async move {
                    let renewed = state.renew_fence(&id, generation, &holder, ttl).await;
                    if !matches!(renewed, Ok(true)) {
                        tracing::warn!(transfer = %id, generation, "lost the restart fence; sending stops");
                    }
                    renewed
                }
            })
        };
        Ok(Some(Fenced {
            state: state.clone(),
            id: t.id.clone(),
            generation: t.generation,
            holder,
            heartbeat,
            linger: Mutex::new(None),
        }))
    }

    /// Keeps the registration until at least `until`, even past
    /// [`Fenced::leave`]: a request was abandoned whose chunk the client
    /// may still be holding.
    pub(super) fn linger(&self, until: Instant) {
        let mut linger = self.linger.lock().unwrap_or_else(PoisonError::into_inner);
        *linger = Some(linger.map_or(until, |l| l.max(until)));
    }

    /// Whether the registration is still held (requests may be sent).
    pub(super) fn holds(&self) -> bool {
        self.heartbeat.alive()
    }

    /// Leaves the fence: now, or in the background once a lingering
    /// abandoned request's time is over (the job does not wait for it).
    pub(super) async fn leave(self) {
        let linger = *self.linger.lock().unwrap_or_else(PoisonError::into_inner);
        match linger {
            Some(until) if until > Instant::now() => {
                tokio::spawn(async move {
                    tokio::time::sleep_until(until).await;
                    self.leave_now().await;
                });
            }
            _ => self.leave_now().await,
        }
    }

    async fn leave_now(self) {
        drop(self.heartbeat);
        if let Err(e) = self
            .state
            .leave_fence(&self.id, self.generation, &self.holder)
            .await
        {
            tracing::warn!(transfer = %self.id, error = %e, "could not leave the restart fence (it expires)");
        }
    }
}
