//! The pusher's registration in a transfer's restart fence.

use runtime::state::{Heartbeat, State, Transfer};
use std::time::Duration;

/// A registration in the transfer's restart fence (see
/// [`runtime::state::StateStore::enter_fence`]), held while a job of one
/// generation may send requests to the client, and renewed in the
/// background. The start request of a later generation waits until every
/// such registration of an earlier generation is gone (or expired), so a
/// client that appends blindly (the reference client) never receives a
/// chunk of generation N after the start of generation N+1.
pub(super) struct Fenced {
    state: State,
    id: String,
    generation: u64,
    holder: String,
    heartbeat: Heartbeat,
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
        }))
    }

    /// Whether the registration is still held (requests may be sent).
    pub(super) fn holds(&self) -> bool {
        self.heartbeat.alive()
    }

    pub(super) async fn leave(self) {
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
