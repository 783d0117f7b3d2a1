//! The requests around the files: the start and finish of a generation,
//! and what a failing client costs (its retry budget, its breaker, its
//! restarts).

use super::client_id::ClientId;
use super::{record_acked, Pusher, DAY};
use crate::client::{retry_while, Backoff, PushError, PushTarget, RetryError};
use protocol::wire::FileSummary;
use runtime::retry::Decision;
use runtime::state::{now_ms, Lease, LeaseGuard, Mark, Request, Transfer, TransferState};
use std::time::Duration;

impl Pusher {
    /// The step after a request the client failed: final when it refused
    /// (`refused` words the reason), otherwise [`Pusher::client_trouble`].
    pub(super) async fn request_failed(
        &self,
        err: RetryError,
        t: &Transfer,
        client: &ClientId,
        request: Request<'_>,
        refused: &str,
    ) -> Decision {
        match err {
            RetryError::Permanent(e) => Decision::Fail(format!("{refused}: {e}")),
            RetryError::Exhausted {
                last, retry_after, ..
            } => {
                self.client_trouble(t, client, request, &last.to_string(), retry_after)
                    .await
            }
        }
    }

    /// A failure of the client: counts it for the breaker, and turns it into
    /// a later try, or a failure once the request's budget is spent.
    pub(super) async fn client_trouble(
        &self,
        t: &Transfer,
        client: &ClientId,
        request: Request<'_>,
        err: &str,
        after: Option<Duration>,
    ) -> Decision {
        self.count_failures(client, 1).await;
        let first = match self
            .state
            .retrying_since(&t.id, t.generation, request, DAY)
            .await
        {
            Ok(first) => first,
            Err(e) => {
                tracing::warn!(transfer = %t.id, error = %e, "could not read the retry budget; counting from now");
                now_ms()
            }
        };
        let spent = Duration::from_millis(now_ms().saturating_sub(first));
        if spent >= self.settings.budget {
            return Decision::Fail(format!(
                "the client kept failing for {}s: {err}",
                spent.as_secs()
            ));
        }
        let delay = after
            .unwrap_or(Duration::from_secs(5))
            .min(self.settings.budget);
        tracing::warn!(transfer = %t.id, ?request, client = %client.breaker(), error = %err, retry_in = ?delay, "the client failed; retrying later");
        // What the user's dashboard shows: the attempt and when it is due.
        let next_ms = now_ms().saturating_add(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
        if let Err(e) = self
            .state
            .note_retry(&t.id, t.generation, next_ms, DAY)
            .await
        {
            tracing::warn!(transfer = %t.id, error = %e, "could not note the retry for the dashboard");
        }
        Decision::Retry(delay)
    }

    /// Counts `n` failures of a client (failed, stalled or slow requests)
    /// and opens its breaker once they reach `ALIAS_BREAKER_FAILURES`.
    pub(super) async fn count_failures(&self, client: &ClientId, n: u64) {
        let name = client.breaker();
        let window = self.settings.breaker_cooldown.max(Duration::from_secs(60)) * 4;
        let mut count = 0;
        for _ in 0..n.min(u64::from(self.settings.breaker_failures)) {
            match self.state.client_failure(&name, window).await {
                Ok(c) => count = c,
                Err(e) => {
                    tracing::warn!(client = %name, error = %e, "could not count a client failure");
                    return;
                }
            }
        }
        if count >= u64::from(self.settings.breaker_failures) {
            if let Err(e) = self
                .state
                .open_breaker(&name, self.settings.breaker_cooldown)
                .await
            {
                tracing::warn!(client = %name, error = %e, "could not open the circuit breaker");
                return;
            }
            tracing::warn!(client = %name, failures = count, "circuit breaker open");
        }
    }

    /// Forgets the client's failures and the generation's noted retries
    /// after it answered (a failure to do so only leaves them to expire; the
    /// dashboard shows a note only until the transfer moves on).
    pub(super) async fn client_answered(&self, t: &Transfer, client: &ClientId) {
        let breaker = client.breaker();
        let (reset, cleared) = tokio::join!(
            self.state.client_success(&breaker),
            self.state.clear_retry(&t.id, t.generation),
        );
        if let Err(e) = reset {
            tracing::debug!(client = %breaker, error = %e, "could not reset the client's failures");
        }
        if let Err(e) = cleared {
            tracing::debug!(transfer = %t.id, error = %e, "could not clear the noted retries");
        }
    }

    /// Sends the start request once per generation.
    pub(super) async fn ensure_started(
        &self,
        t: &Transfer,
        target: &PushTarget,
        client: &ClientId,
    ) -> Result<(), Decision> {
        if self
            .state
            .marked(&t.id, t.generation, Mark::Started)
            .await?
        {
            return Ok(());
        }
        let lease = Lease::start(&t.id, t.generation);
        let Some(lease) =
            LeaseGuard::acquire(&self.state, lease, &self.worker_id, self.settings.lease)
                .await
                .map_err(|_| Decision::Retry(Duration::from_secs(2)))?
        else {
            return Err(Decision::Retry(Duration::from_secs(1)));
        };
        let result = async {
            if self
                .state
                .marked(&t.id, t.generation, Mark::Started)
                .await?
            {
                return Ok(());
            }
            if !self.fence_clear(t).await? {
                return Err(Decision::Retry(Duration::from_secs(1)));
            }
            let token = self
                .state
                .transfer_grant(&t.id)
                .await?
                .ok_or_else(|| Decision::Fail("the transfer has no grant".into()))?;
            match self
                .request(t, || self.client().start(target, &token))
                .await
            {
                // Revoked, cancelled or superseded while it failed.
                Ok(None) => Err(Decision::Done),
                Ok(Some(_)) => {
                    self.state
                        .mark(&t.id, t.generation, Mark::Started, DAY * 7)
                        .await?;
                    self.client_answered(t, client).await;
                    Ok(())
                }
                Err(e) => Err(self
                    .request_failed(e, t, client, Request::Start, "start request refused")
                    .await),
            }
        }
        .await;
        lease.release().await;
        result
    }

    /// Waits (at most one lease, the time a lost holder's registration takes
    /// to expire) until no request of an earlier generation of `t` can still
    /// be in flight to the client; false when some still may be.
    async fn fence_clear(&self, t: &Transfer) -> Result<bool, Decision> {
        let deadline = tokio::time::Instant::now() + self.settings.lease;
        let mut logged = false;
        loop {
            if self.state.fence_clear(&t.id, t.generation).await? {
                return Ok(true);
            }
            if !logged {
                tracing::warn!(transfer = %t.id, generation = t.generation, "the start waits for requests of an earlier generation to end");
                logged = true;
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends the transfer finish once every file is finished, and ends the
    /// generation `done`.
    pub(super) async fn maybe_finish(
        &self,
        t: &Transfer,
        target: &PushTarget,
        client: &ClientId,
    ) -> Result<(), Decision> {
        // Read together (one round trip); the files only count when the
        // generation is still pushing.
        let (now, files) = tokio::join!(
            self.state.transfer(&t.id),
            self.state.files(&t.id, t.generation),
        );
        let Some(now) = now? else {
            return Ok(());
        };
        if now.generation != t.generation || now.state != TransferState::Pushing {
            return Ok(());
        }
        let files = files?;
        // Archives are pushed while the processor builds the others: the
        // list is whole only once it is sealed.
        if !now.built || now.files_done < files.len() as u64 {
            return Ok(());
        }
        let lease = Lease::finish(&t.id, t.generation);
        let Some(lease) =
            LeaseGuard::acquire(&self.state, lease, &self.worker_id, self.settings.lease)
                .await
                .map_err(|_| Decision::Retry(Duration::from_secs(2)))?
        else {
            return Ok(()); // another pusher is finishing it
        };
        let summaries: Vec<FileSummary> = files
            .iter()
            .map(|f| FileSummary {
                name: f.name.clone(),
                size: f.size,
                blake2b: f.blake2b.clone(),
            })
            .collect();
        let finished = self
            .request(t, || self.client().finish_transfer(target, &summaries))
            .await;
        let result = match finished {
            Ok(None) => Err(Decision::Done),
            Ok(Some(_)) => {
                record_acked(|| {
                    self.state.transition(
                        &t.id,
                        t.generation,
                        &[TransferState::Pushing],
                        TransferState::Done,
                        None,
                    )
                })
                .await?;
                tracing::info!(transfer = %t.id, generation = t.generation, files = files.len(), "transfer done");
                Ok(())
            }
            Err(e) => Err(self
                .request_failed(e, t, client, Request::Finish, "finish request refused")
                .await),
        };
        lease.release().await;
        result
    }

    /// Sends a request of `t`'s generation (start, file finish, transfer
    /// finish), retried in place under the request policy while it is
    /// still wanted and the worker is not stopping ([`retry_while`]):
    /// `Ok(None)` once the generation is no longer the pushing one.
    pub(super) async fn request<T, F, Fut>(
        &self,
        t: &Transfer,
        op: F,
    ) -> Result<Option<T>, RetryError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, PushError>>,
    {
        let mut backoff = Backoff::new(self.request_policy());
        retry_while(&mut backoff, &self.stop, || self.still_wanted(t), op).await
    }

    /// Whether a request of `t`'s generation retried in place is still
    /// wanted: not once the generation is no longer the pushing one
    /// (revoked, cancelled, superseded), so the client hears nothing more
    /// of it. A failed read says yes (the request's own limits hold).
    async fn still_wanted(&self, t: &Transfer) -> bool {
        !matches!(super::still_pushing(&self.state, t).await, Ok(false))
    }

    /// Counts a restart against the client (its signing key, read from the
    /// transfer's grant, and the registrable domain of its push host): a
    /// client cannot force restarts without limit by spreading them over
    /// new contracts. `Some` (the transfer fails) past
    /// [`super::PushSettings::client_restarts`].
    pub(super) async fn client_restarts_over(
        &self,
        t: &Transfer,
        client: &ClientId,
    ) -> Option<Decision> {
        for name in client.names() {
            match self.state.client_restart(&name, DAY).await {
                Ok(n) if n > self.settings.client_restarts => {
                    tracing::warn!(transfer = %t.id, client = %name, restarts = n, "restart refused: the client's restarts are over the cap");
                    return Some(Decision::Fail(format!(
                        "the client forced {n} restarts in 24 hours (cap {}); giving up",
                        self.settings.client_restarts
                    )));
                }
                Ok(_) => {}
                Err(e) => return Some(e.into()),
            }
        }
        None
    }
}
