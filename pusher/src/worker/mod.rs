//! The push job: one archive of one transfer generation (or, for a
//! generation without archives, only the start and finish requests),
//! pushed from its committed offset. A delivery pushes at most
//! `ALIAS_PUSH_RUN_BYTES` and then re-queues itself with its progress in
//! Redis, so no delivery is held for a long push (RabbitMQ's consumer
//! timeout); it also stops at `ALIAS_PUSH_RUN_SECS` of wall-clock time and
//! re-queues itself the same way, so a slow client cannot hold a worker.
//! Leases keep one pusher per file; slot leases cap concurrent pushes per
//! client, counted both by its signing key (the contract's client
//! declaration key) and by its registrable domain (so many subdomains, or
//! many self-signed declarations on one domain, share one budget); a share
//! of this pusher's workers is the most one client may hold; a breaker
//! holds a client that keeps failing, stalling or faking progress. A job
//! holding a client's slot pushes the generation's other files too, then
//! the transfers of that client waiting for the slot (a job that finds the
//! slot taken joins the client's waiting list and tries again in 5 s).
//! Neither goes past half `ALIAS_PUSH_RUN_SECS` from the job's start.
//!
//! The modules: `client_id` (who a client is, this pusher's share per
//! client), `fence` (the restart fence registration), `requests` (start,
//! finish, failures, breaker, restart caps), `file` (one file's push run
//! and its outcome), `revive` (a replayed dead letter).

mod client_id;
mod fence;
mod file;
mod requests;
mod revive;

pub use self::client_id::{registrable_domain, LocalShare};

use self::client_id::{client_key, ClientId};
use self::fence::Fenced;
use crate::client::{ChunkStreamer, PushClient, PushError, PushTarget, RetryPolicy, Stop};
use runtime::jobs::{self, PushJob};
use runtime::mq::Broker;
use runtime::retry::{retry_write, Decision, RetryPolicy as WritePolicy};
use runtime::state::{
    ClientName, Lease, LeaseGuard, Mark, State, StateError, Transfer, TransferState,
};
use runtime::worker::{Disposition, JobHandler};
use std::sync::Arc;
use std::time::Duration;

/// Push settings (from the configuration).
#[derive(Debug, Clone)]
pub struct PushSettings {
    /// Concurrent pushes per client across all pushers (counted by signing
    /// key and by registrable domain).
    pub per_client: u32,
    /// Percent of this pusher's workers one client may hold (at least one).
    pub client_share: u32,
    /// This pusher's workers (`ALIAS_PUSH_CONCURRENCY`).
    pub concurrency: usize,
    /// Wall-clock limit of one delivery.
    pub run_time: Duration,
    /// Least advance a reported offset short of a chunk's end must show.
    pub min_advance: u64,
    /// Rewinds per file before the transfer fails.
    pub file_rewinds: u32,
    /// Failed requests per file before the transfer fails.
    pub file_failures: u32,
    /// Bytes pushed per delivery before re-queueing.
    pub run_bytes: u64,
    /// Total retry time of a job before the transfer fails.
    pub budget: Duration,
    /// Consecutive failures that open a client's breaker.
    pub breaker_failures: u32,
    /// How long an open breaker holds a client.
    pub breaker_cooldown: Duration,
    /// Retries per request.
    pub policy: RetryPolicy,
    /// Lease on a file, start or finish (renewed at a quarter of it).
    pub lease: Duration,
    /// Restarts per client (signing key, push host) in 24 hours before the
    /// transfer being restarted fails instead.
    pub client_restarts: u64,
}

/// Everything the push job needs.
pub struct Pusher {
    /// Redis state.
    pub state: State,
    /// RabbitMQ.
    pub broker: Broker,
    /// The chunk streamer (client + storage).
    pub streamer: ChunkStreamer,
    /// Settings.
    pub settings: PushSettings,
    /// Identifies this worker in leases.
    pub worker_id: String,
    /// Workers of this pusher busy per client identity (signing key,
    /// registrable domain).
    pub local: LocalShare,
    /// Set when the worker stops: waits between a request's attempts end,
    /// so a job facing a failing client is handed back at once rather than
    /// holding the shutdown through its backoff (the streamer shares it).
    pub stop: Stop,
}

const DAY: Duration = Duration::from_secs(24 * 3600);

/// How long a job that found its client's slot taken waits before it tries
/// again by itself; the job holding the slot usually pushes its transfer
/// before that ([`Pusher::serve_waiting`]).
const SLOT_WAIT: Duration = Duration::from_secs(5);

/// How long a job waits for another job of its generation, pushing, to
/// drain its file ([`Pusher::drained_elsewhere`]); then it takes the
/// usual path.
const DRAINED_WAIT: Duration = Duration::from_millis(640);

/// How long a client's waiting list outlives its last entry.
const SLOT_WAIT_LIST_TTL: Duration = Duration::from_secs(600);

fn target_of(t: &Transfer) -> Result<PushTarget, PushError> {
    let base = t.push_url.strip_suffix(&t.id).unwrap_or(&t.push_url);
    PushTarget::new(base, &t.id)
}

/// Whether `t`'s generation is still the transfer's pushing one. A failed
/// read is an error, never a "no": a job must not be dropped because Redis
/// could not answer (a primary's failover, a cut connection).
async fn still_pushing(state: &State, t: &Transfer) -> Result<bool, StateError> {
    Ok(
        matches!(state.transfer(&t.id).await?, Some(ref now) if now.generation == t.generation && now.state == TransferState::Pushing),
    )
}

impl Pusher {
    fn client(&self) -> &PushClient {
        self.streamer.client()
    }

    async fn fail(&self, t: &Transfer, reason: &str) {
        let from = [
            TransferState::Pushing,
            TransferState::Processing,
            TransferState::Accepted,
        ];
        let failed = record_acked(|| {
            self.state.transition(
                &t.id,
                t.generation,
                &from,
                TransferState::Failed,
                Some(reason),
            )
        })
        .await;
        if let Err(e) = failed {
            tracing::error!(error = %e, "could not record the failure");
        }
    }

    /// The retry policy of one request within a delivery: never past the
    /// delivery's wall-clock limit.
    fn request_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_elapsed: self.settings.policy.max_elapsed.min(self.settings.run_time),
            ..self.settings.policy
        }
    }

    async fn run(&self, job: &PushJob) -> Decision {
        let started = tokio::time::Instant::now();
        let mut t = match self.state.transfer(&job.transfer).await {
            Ok(Some(t)) => t,
            Ok(None) => return Decision::Done,
            Err(e) => return e.into(),
        };
        if t.generation == job.generation && t.state == TransferState::Failed {
            match self.revive(job, &t).await {
                Ok(Some(now)) => t = now,
                Ok(None) => return Decision::Done,
                Err(step) => return step,
            }
        }
        if t.generation != job.generation || t.state.is_terminal() {
            return Decision::Done;
        }
        if t.state != TransferState::Pushing {
            return Decision::Retry(Duration::from_secs(2));
        }
        if self.drained_elsewhere(job, &t).await {
            return Decision::Done;
        }
        let (target, client) = match self.reach(&t).await {
            Ok(reached) => reached,
            Err(step) => return step,
        };
        let names = client.names();
        let share = (self.settings.concurrency * self.settings.client_share as usize / 100).max(1);
        let Some(local) = self.local.take(&names, share) else {
            tracing::debug!(transfer = %t.id, client = %client.breaker(), "the client holds its share of this pusher's workers");
            return self.wait_for_slot(&names, &t).await;
        };
        let Some(slots) = self.take_slots(&names).await else {
            drop(local);
            return self.wait_for_slot(&names, &t).await;
        };
        let step = self.run_with_slot(job, &t, &target, &client).await;
        if step == Decision::Done {
            self.serve_waiting(&names, started).await;
        }
        release_all(slots).await;
        drop(local);
        step
    }

    /// Whether every file of the generation recorded so far was pushed, and
    /// counted, by other jobs while the transfer still has files to come:
    /// the job then has nothing left to do, and ends without reading the
    /// grant or taking a client slot (archives recorded later queue a job of
    /// their own: the first [`TransferStore::file_watch`] lowered the
    /// generation's queued flag). While another job of the generation is
    /// pushing (it holds a fence registration), it waits for that job to
    /// drain the files a little (`DRAINED_WAIT`, polls spaced out): a job
    /// that took the slot path instead would find the slot or the start
    /// taken and go round the retry queue. Otherwise, and once the list is
    /// sealed and wholly counted (the transfer finish may be left to this
    /// job), it goes on; a failed read goes on too (the full path checks
    /// again).
    ///
    /// [`TransferStore::file_watch`]: runtime::state::TransferStore::file_watch
    async fn drained_elsewhere(&self, job: &PushJob, t: &Transfer) -> bool {
        if job.file.is_none() {
            return false;
        }
        let deadline = tokio::time::Instant::now() + DRAINED_WAIT;
        let mut pause = Duration::from_millis(10);
        loop {
            let Ok(seen) = self.state.file_watch(&t.id, t.generation).await else {
                return false;
            };
            if seen.all_counted {
                break;
            }
            if !seen.pushing || tokio::time::Instant::now() + pause > deadline {
                return false;
            }
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
        // All counted. Whether the list is sealed is read again: the last
        // archives may have come after `t` was read, and their finish may
        // be this job's to send.
        let now = match self.state.transfer(&t.id).await {
            Ok(Some(now)) => now,
            Ok(None) => return true,
            Err(_) => return false,
        };
        if now.generation != t.generation || now.state.is_terminal() {
            return true;
        }
        !(now.built && now.files_done >= now.files_total)
    }

    /// The push destination and the client of `t`, unless the destination
    /// is refused (the transfer fails) or the client's breaker is open.
    async fn reach(&self, t: &Transfer) -> Result<(PushTarget, ClientId), Decision> {
        let target = target_of(t).map_err(|e| Decision::Fail(format!("push destination: {e}")))?;
        let client = self.client_id(t, &target).await?;
        if self.state.breaker_open(&client.breaker()).await? {
            return Err(Decision::Retry(self.settings.breaker_cooldown));
        }
        Ok((target, client))
    }

    /// A slot of each of `names`, or none at all (those taken are let go)
    /// when one is busy or cannot be read.
    async fn take_slots(&self, names: &[ClientName]) -> Option<Vec<LeaseGuard>> {
        let mut slots = Vec::with_capacity(names.len());
        for name in names {
            match self.take_slot(name).await {
                Ok(Some(held)) => slots.push(held),
                Ok(None) | Err(_) => {
                    release_all(slots).await;
                    return None;
                }
            }
        }
        Some(slots)
    }

    /// Registers this job in `t`'s restart fence (see [`Fenced::enter`]).
    async fn enter_fence(&self, t: &Transfer) -> Result<Option<Fenced>, StateError> {
        let holder = format!("{}:{}", self.worker_id, uuid::Uuid::new_v4().simple());
        Fenced::enter(&self.state, t, holder, self.settings.lease).await
    }

    /// Puts the generation in the waiting lists of the client's names, so
    /// that the job holding the client's slot pushes it next
    /// ([`Pusher::serve_waiting`]), and retries the job later in case none
    /// does. Without a list entry (Redis trouble), the retry comes sooner.
    async fn wait_for_slot(&self, names: &[ClientName], t: &Transfer) -> Decision {
        let member = format!("{}:{}", t.id, t.generation);
        for name in names {
            if let Err(e) = self
                .state
                .wait_for_slot(name, &member, SLOT_WAIT_LIST_TTL)
                .await
            {
                tracing::debug!(transfer = %t.id, error = %e, "could not join the client's waiting list");
                return Decision::Retry(Duration::from_secs(1));
            }
        }
        Decision::Retry(SLOT_WAIT)
    }

    /// With the client's slots still held, pushes the transfers waiting
    /// for them, longest waiting first, until half the run time since
    /// `started` is spent: a transfer of the same client does not wait in
    /// the retry queue for the slot this job is about to let go. Each is
    /// pushed as its own job would (its fence, start request, every file,
    /// finish request); one that needs a slot of another name this job
    /// cannot take, or whose push stops short, is left to its own jobs.
    async fn serve_waiting(&self, held: &[ClientName], started: tokio::time::Instant) {
        let budget = self.settings.run_time / 2;
        for name in held {
            while started.elapsed() < budget {
                let member = match self.state.next_waiting(name).await {
                    Ok(Some(member)) => member,
                    Ok(None) | Err(_) => break,
                };
                let Some((id, generation)) = member
                    .rsplit_once(':')
                    .and_then(|(id, g)| Some((id, g.parse::<u64>().ok()?)))
                else {
                    continue;
                };
                self.serve_one(held, id, generation, started).await;
            }
        }
    }

    /// Pushes generation `generation` of transfer `id` for
    /// [`Pusher::serve_waiting`].
    async fn serve_one(
        &self,
        held: &[ClientName],
        id: &str,
        generation: u64,
        started: tokio::time::Instant,
    ) {
        let t = match self.state.transfer(id).await {
            Ok(Some(t)) if t.generation == generation && t.state == TransferState::Pushing => t,
            _ => return, // gone, moved on, or not pushing
        };
        let Ok((target, client)) = self.reach(&t).await else {
            return;
        };
        // Another signing key on the same push domain needs its own slot.
        let missing: Vec<ClientName> = client
            .names()
            .into_iter()
            .filter(|name| !held.contains(name))
            .collect();
        let Some(extra) = self.take_slots(&missing).await else {
            return;
        };
        if let Ok(Some(fence)) = self.enter_fence(&t).await {
            if self.ensure_started(&t, &target, &client).await.is_ok()
                && self
                    .drain(&t, &target, &client, &fence, started, None)
                    .await
                    == Decision::Done
            {
                // Every file pushed (or none to push): the finish request.
                if let Err(step) = self.maybe_finish(&t, &target, &client).await {
                    tracing::debug!(transfer = %t.id, ?step, "a served transfer's finish is left to its own jobs");
                }
            }
            fence.leave().await;
        }
        release_all(extra).await;
    }

    /// One of the `per_client` slots of `name`, if one is free.
    async fn take_slot(
        &self,
        name: &runtime::state::ClientName,
    ) -> Result<Option<LeaseGuard>, StateError> {
        for k in 0..self.settings.per_client.max(1) {
            let lease = Lease::client_slot(name, k);
            if let Some(held) =
                LeaseGuard::acquire(&self.state, lease, &self.worker_id, self.settings.lease)
                    .await?
            {
                return Ok(Some(held));
            }
        }
        Ok(None)
    }

    /// The client of a transfer: the signing key of the client declaration
    /// in its grant, and the registrable domain of its push URL.
    async fn client_id(&self, t: &Transfer, target: &PushTarget) -> Result<ClientId, StateError> {
        let host = target.transfer_url().host_str().unwrap_or("");
        let key = self
            .state
            .transfer_grant(&t.id)
            .await?
            .and_then(|token| client_key(&token));
        Ok(ClientId {
            key,
            domain: registrable_domain(host),
        })
    }

    async fn run_with_slot(
        &self,
        job: &PushJob,
        t: &Transfer,
        target: &PushTarget,
        client: &ClientId,
    ) -> Decision {
        let fence = match self.enter_fence(t).await {
            Ok(Some(fence)) => fence,
            Ok(None) => return Decision::Done, // superseded, cancelled or finished
            Err(e) => return e.into(),
        };
        let step = self.run_fenced(job, t, target, client, &fence).await;
        fence.leave().await;
        step
    }

    async fn run_fenced(
        &self,
        job: &PushJob,
        t: &Transfer,
        target: &PushTarget,
        client: &ClientId,
        fence: &Fenced,
    ) -> Decision {
        let started = tokio::time::Instant::now();
        if let Err(step) = self.ensure_started(t, target, client).await {
            return step;
        }
        let Some(file) = &job.file else {
            return match self.maybe_finish(t, target, client).await {
                Ok(()) => Decision::Done,
                Err(step) => step,
            };
        };
        let lease = Lease::push(&t.id, t.generation, file);
        let lease =
            match LeaseGuard::acquire(&self.state, lease, &self.worker_id, self.settings.lease)
                .await
            {
                Ok(Some(l)) => l,
                // Another worker pushes it: this job pushes the others
                // beside it (and comes back for it unless it is counted).
                Ok(None) => return self.drain(t, target, client, fence, started, None).await,
                Err(_) => return Decision::Retry(Duration::from_secs(2)),
            };
        let step = self.push_file(job, t, target, client, file, fence).await;
        match step {
            Decision::Done => {
                self.drain(t, target, client, fence, started, Some(lease))
                    .await
            }
            step => {
                lease.release().await;
                step
            }
        }
    }

    /// Pushes the generation's other unfinished files while this job holds
    /// the client's slot, until half the run time is spent. A push job is
    /// answerable for every file recorded when it started (one job is
    /// queued per announcement of archives, not per archive; see
    /// [`TransferStore::add_files`]), so it ends (`Done`) only when it saw
    /// each of them counted, or its generation end: a file another worker
    /// is pushing, a drained file whose push stops short, the run time
    /// spent or a failed read make it come back later (`Retry`) rather
    /// than leave a file to a job that may not exist. `last` is the lease
    /// of a file just pushed: it is let go, as each drained file's is,
    /// while the next list is read (one round trip less per file).
    ///
    /// [`TransferStore::add_files`]: runtime::state::TransferStore::add_files
    async fn drain(
        &self,
        t: &Transfer,
        target: &PushTarget,
        client: &ClientId,
        fence: &Fenced,
        started: tokio::time::Instant,
        mut last: Option<LeaseGuard>,
    ) -> Decision {
        let budget = self.settings.run_time / 2;
        let mut tried = std::collections::HashSet::new();
        // Files another worker held the lease of when this job came to them.
        let mut elsewhere = false;
        let step = loop {
            if !fence.holds() {
                // Superseded, cancelled or finished: nothing is left to push.
                break Decision::Done;
            }
            if started.elapsed() >= budget {
                // The rest in a later delivery.
                break Decision::Retry(Duration::from_millis(100));
            }
            let (files, ()) = tokio::join!(self.state.files(&t.id, t.generation), async {
                if let Some(lease) = last.take() {
                    lease.release().await;
                }
            });
            let files = match files {
                Ok(files) => files,
                Err(e) => break e.into(),
            };
            let Some(next) = files.into_iter().find(|f| !tried.contains(&f.name)) else {
                break if elsewhere {
                    // Their pushers may stop short: look again later.
                    Decision::Retry(Duration::from_secs(2))
                } else {
                    Decision::Done
                };
            };
            tried.insert(next.name.clone());
            if next.offset >= next.size {
                // All bytes acknowledged: finished, unless the client was
                // not told yet. A run that stopped right after telling it
                // may not have counted the file: counting is idempotent.
                match self
                    .state
                    .marked(&t.id, t.generation, Mark::FileDone(&next.name))
                    .await
                {
                    Ok(false) => {}
                    Ok(true) => match self
                        .state
                        .finish_file(&t.id, t.generation, &next.name)
                        .await
                    {
                        Ok(_) => continue,
                        Err(e) => break e.into(),
                    },
                    Err(e) => break e.into(),
                }
            }
            let lease = Lease::push(&t.id, t.generation, &next.name);
            let lease =
                match LeaseGuard::acquire(&self.state, lease, &self.worker_id, self.settings.lease)
                    .await
                {
                    Ok(Some(lease)) => lease,
                    Ok(None) => {
                        elsewhere = true;
                        continue;
                    }
                    Err(e) => break e.into(),
                };
            let job = PushJob {
                transfer: t.id.clone(),
                generation: t.generation,
                file: Some(next.name.clone()),
            };
            let step = self
                .push_file(&job, t, target, client, &next.name, fence)
                .await;
            if step == Decision::Done {
                last = Some(lease);
            } else {
                // A run stopped short: this job comes back for the file
                // (or the transfer fails, as the file's own job would).
                lease.release().await;
                tracing::debug!(transfer = %t.id, file = %next.name, ?step, "a drained file stopped short");
                break step;
            }
        };
        if let Some(lease) = last {
            lease.release().await;
        }
        step
    }
}

/// Lets go of client slots.
async fn release_all(slots: Vec<LeaseGuard>) {
    for held in slots {
        held.release().await;
    }
}

/// Records what a client has already acknowledged (a finished file, a
/// finished transfer). A dropped Redis connection reconnects within
/// moments; retrying the write in place then keeps the client from being
/// told the same thing twice. Only a longer outage gives up, and the job's
/// retry repeats the (idempotent) request.
async fn record_acked<T, F, Fut>(write: F) -> Result<T, StateError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StateError>>,
{
    let policy = WritePolicy {
        base: Duration::from_millis(50),
        cap: Duration::from_secs(2),
        max_attempts: 8,
        max_elapsed: Duration::from_secs(10),
    };
    retry_write(policy, write).await
}

#[async_trait::async_trait]
impl JobHandler for Pusher {
    async fn handle(&self, body: &[u8], _delivery_count: u64) -> Disposition {
        let job: PushJob = match jobs::decode(body) {
            Ok(j) => j,
            Err(e) => return Disposition::Dead(format!("malformed push job: {e}")),
        };
        match self.run(&job).await {
            Decision::Done => Disposition::Ack,
            Decision::Retry(delay) => Disposition::Retry(delay),
            Decision::Fail(reason) => {
                tracing::warn!(transfer = %job.transfer, %reason, "transfer failed");
                // Read through a short Redis outage: a transfer whose failure
                // is not recorded would stay `pushing` with its job dead.
                let now = match record_acked(|| self.state.transfer(&job.transfer)).await {
                    Ok(now) => now,
                    Err(e) => {
                        tracing::warn!(transfer = %job.transfer, error = %e, "could not read the failing transfer; retrying the job");
                        return Disposition::Retry(Duration::from_secs(2));
                    }
                };
                if let Some(t) = now {
                    if t.generation == job.generation {
                        self.fail(&t, &reason).await;
                        // Replaying this dead letter takes the generation up
                        // again (see `revive`).
                        let dead = Mark::DeadLetter(job.file.as_deref());
                        if let Err(e) = self.state.mark(&t.id, t.generation, dead, DAY * 7).await {
                            tracing::warn!(transfer = %t.id, error = %e, "could not mark the dead letter; a replay will not revive the generation");
                        }
                    }
                }
                Disposition::Dead(reason)
            }
        }
    }

    async fn make_durable(&self) -> Result<(), String> {
        runtime::worker::durable_state(&self.state).await
    }
}

/// Shared handle type for the worker.
pub type SharedPusher = Arc<Pusher>;
