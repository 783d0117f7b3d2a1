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
//! holds a client that keeps failing, stalling or faking progress.

use crate::client::{
    retry, Backoff, ChunkStreamer, PushClient, PushError, PushTarget, RetryError, RetryPolicy,
    RunLimits, StreamError, Streamed, Upload,
};
use protocol::wire::FileSummary;
use runtime::jobs::{self, ProcessJob, PushJob};
use runtime::mq::{Broker, Route};
use runtime::state::{now_ms, State, Transfer, TransferState};
use runtime::worker::{Disposition, JobHandler};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Push settings (from the configuration).
#[derive(Debug, Clone)]
pub struct PushSettings {
    /// Concurrent pushes per client across all pushers (counted by signing
    /// key and by registrable domain).
    pub per_client: u32,
    /// Percent of this pusher's workers one client may hold (at least one).
    pub client_share: u32,
    /// This pusher's workers (`ALIAS_WORKER_CONCURRENCY`).
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
}

/// Counts this pusher's workers busy with each client identity, to hold
/// one client to its share of the workers.
#[derive(Debug, Default)]
pub struct LocalShare {
    busy: Mutex<HashMap<String, usize>>,
}

/// A place in [`LocalShare`], given back when dropped.
struct ShareGuard<'a> {
    share: &'a LocalShare,
    names: Vec<String>,
}

impl LocalShare {
    /// Takes one worker for every name in `names` unless one of them already
    /// holds `cap` workers.
    fn take(&self, names: &[String], cap: usize) -> Option<ShareGuard<'_>> {
        let mut busy = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        if names
            .iter()
            .any(|n| busy.get(n).copied().unwrap_or(0) >= cap)
        {
            return None;
        }
        for n in names {
            *busy.entry(n.clone()).or_insert(0) += 1;
        }
        Some(ShareGuard {
            share: self,
            names: names.to_vec(),
        })
    }
}

impl Drop for ShareGuard<'_> {
    fn drop(&mut self) {
        let mut busy = self.share.busy.lock().unwrap_or_else(|e| e.into_inner());
        for n in &self.names {
            if let Some(count) = busy.get_mut(n) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    busy.remove(n);
                }
            }
        }
    }
}

/// The registrable domain of a host ("eTLD+1"), so that every subdomain of
/// one registration shares one slot budget: IP literals and single labels
/// stay as they are; otherwise the last two labels, or three when the
/// second-level label is one of the common public second levels under a
/// two-letter country code (`co.uk`, `com.au`, …). Without the full public
/// suffix list this groups too much rather than too little (all of
/// `*.github.io` is one client), which only slows those clients down.
pub fn registrable_domain(host: &str) -> String {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    if host.parse::<std::net::IpAddr>().is_ok() {
        return host;
    }
    let labels: Vec<&str> = host.split('.').collect();
    if labels.len() <= 2 {
        return host;
    }
    const SECOND_LEVELS: &[&str] = &[
        "ac", "co", "com", "edu", "gob", "gov", "govt", "ltd", "mil", "ne", "net", "nic", "nom",
        "or", "org", "plc", "sch",
    ];
    let n = labels.len();
    let take = if labels[n - 1].len() == 2 && SECOND_LEVELS.contains(&labels[n - 2]) {
        3
    } else {
        2
    };
    labels[n - take.min(n)..].join(".")
}

/// Who a transfer's client is, for fairness and the breaker.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ClientId {
    /// The client declaration's signing key (URL-safe base64), when the
    /// grant could be read.
    key: Option<String>,
    /// The registrable domain of the push URL.
    domain: String,
}

impl ClientId {
    /// The names whose slots and shares the client takes.
    fn names(&self) -> Vec<String> {
        let mut names = vec![format!("dom:{}", self.domain)];
        if let Some(key) = &self.key {
            names.push(format!("key:{key}"));
        }
        names
    }

    /// The name its breaker and failures are kept under.
    fn breaker(&self) -> String {
        match &self.key {
            Some(key) => format!("key:{key}"),
            None => format!("dom:{}", self.domain),
        }
    }
}

const DAY: Duration = Duration::from_secs(24 * 3600);
/// Restarts of one transfer (new generations after chunks of unknown
/// outcome) before it fails.
const MAX_RESTARTS: u64 = 20;

/// A held lease renewed in the background until dropped.
struct Held {
    state: State,
    name: String,
    holder: String,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl Held {
    async fn take(
        state: &State,
        name: String,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<Held>, String> {
        if !state
            .acquire_lease(&name, holder, lease)
            .await
            .map_err(|e| e.to_string())?
        {
            return Ok(None);
        }
        let heartbeat = {
            let (state, name, holder) = (state.clone(), name.clone(), holder.to_owned());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(lease / 4).await;
                    if !matches!(state.renew_lease(&name, &holder, lease).await, Ok(true)) {
                        tracing::warn!(lease = %name, "lost a lease");
                        return;
                    }
                }
            })
        };
        Ok(Some(Held {
            state: state.clone(),
            name,
            holder: holder.to_owned(),
            heartbeat,
        }))
    }

    async fn release(self) {
        self.heartbeat.abort();
        let _ = self.state.release_lease(&self.name, &self.holder).await;
    }
}

/// A registration in the transfer's restart fence (see
/// [`runtime::state::StateStore::enter_fence`]), held while a job of one
/// generation may send requests to the client, and renewed in the
/// background. The start request of a later generation waits until every
/// such registration of an earlier generation is gone (or expired), so a
/// client that appends blindly (the reference client) never receives a
/// chunk of generation N after the start of generation N+1.
struct Fenced {
    state: State,
    id: String,
    generation: u64,
    holder: String,
    held: Arc<std::sync::atomic::AtomicBool>,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl Fenced {
    /// Registers, unless the generation is no longer the pushing one.
    async fn enter(
        state: &State,
        t: &Transfer,
        holder: String,
        ttl: Duration,
    ) -> Result<Option<Fenced>, runtime::state::StateError> {
        if !state.enter_fence(&t.id, t.generation, &holder, ttl).await? {
            return Ok(None);
        }
        let held = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let heartbeat = {
            let (state, id, holder, held) =
                (state.clone(), t.id.clone(), holder.clone(), held.clone());
            let generation = t.generation;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(ttl / 4).await;
                    if !matches!(
                        state.renew_fence(&id, generation, &holder, ttl).await,
                        Ok(true)
                    ) {
                        held.store(false, Ordering::SeqCst);
                        tracing::warn!(transfer = %id, generation, "lost the restart fence; sending stops");
                        return;
                    }
                }
            })
        };
        Ok(Some(Fenced {
            state: state.clone(),
            id: t.id.clone(),
            generation: t.generation,
            holder,
            held,
            heartbeat,
        }))
    }

    /// Whether the registration is still held (requests may be sent).
    fn holds(&self) -> bool {
        self.held.load(Ordering::SeqCst)
    }

    async fn leave(self) {
        self.heartbeat.abort();
        if let Err(e) = self
            .state
            .leave_fence(&self.id, self.generation, &self.holder)
            .await
        {
            tracing::warn!(transfer = %self.id, error = %e, "could not leave the restart fence (it expires)");
        }
    }
}

/// How a job ended, before it becomes a disposition.
enum Step {
    Done,
    Later(Duration),
    Fail(String),
}

impl From<runtime::state::StateError> for Step {
    fn from(e: runtime::state::StateError) -> Self {
        tracing::warn!(error = %e, "redis trouble; retrying later");
        Step::Later(Duration::from_secs(2))
    }
}

/// The client's signing key (URL-safe base64) of a stored grant.
fn client_key(token: &str) -> Option<String> {
    let limits = protocol::anychain::Limits {
        max_bytes: usize::MAX,
        max_depth: 128,
    };
    let value = protocol::anychain::from_json_str(token, &limits).ok()?;
    let grant = protocol::alias::Grant::from_verified(value).ok()?;
    let client = grant.contract().client().ok()?;
    Some(protocol::anychain::b64u_encode(client.signer()))
}

fn target_of(t: &Transfer) -> Result<PushTarget, PushError> {
    let base = t.push_url.strip_suffix(&t.id).unwrap_or(&t.push_url);
    PushTarget::new(base, &t.id)
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
        if let Err(e) = self
            .state
            .transition(
                &t.id,
                t.generation,
                &from,
                TransferState::Failed,
                Some(reason),
            )
            .await
        {
            tracing::error!(error = %e, "could not record the failure");
        }
    }

    /// The step after a request the client failed: final when it refused
    /// (`refused` words the reason), otherwise [`Pusher::client_trouble`].
    async fn request_failed(
        &self,
        err: RetryError,
        transfer: &str,
        domain: &str,
        job_key: &str,
        refused: &str,
    ) -> Step {
        match err {
            RetryError::Permanent(e) => Step::Fail(format!("{refused}: {e}")),
            RetryError::Exhausted {
                last, retry_after, ..
            } => {
                self.client_trouble(transfer, domain, job_key, &last.to_string(), retry_after)
                    .await
            }
        }
    }

    /// A failure of the client: counts it for the breaker, and turns it into
    /// a later try, or a failure once the job's budget is spent.
    async fn client_trouble(
        &self,
        transfer: &str,
        domain: &str,
        job_key: &str,
        err: &str,
        after: Option<Duration>,
    ) -> Step {
        self.count_failures(domain, 1).await;
        let first = self
            .state
            .first_seen(job_key, DAY)
            .await
            .unwrap_or_else(|_| now_ms());
        let spent = Duration::from_millis(now_ms().saturating_sub(first));
        if spent >= self.settings.budget {
            return Step::Fail(format!(
                "the client kept failing for {}s: {err}",
                spent.as_secs()
            ));
        }
        let delay = after
            .unwrap_or(Duration::from_secs(5))
            .min(self.settings.budget);
        tracing::warn!(%transfer, job = %job_key, %domain, error = %err, retry_in = ?delay, "the client failed; retrying later");
        Step::Later(delay)
    }

    /// Counts `n` failures of a client (failed, stalled or slow requests)
    /// and opens its breaker once they reach `ALIAS_BREAKER_FAILURES`.
    async fn count_failures(&self, domain: &str, n: u64) {
        let window = self.settings.breaker_cooldown.max(Duration::from_secs(60)) * 4;
        let mut count = 0;
        for _ in 0..n.min(u64::from(self.settings.breaker_failures)) {
            match self.state.client_failure(domain, window).await {
                Ok(c) => count = c,
                Err(_) => return,
            }
        }
        if count >= u64::from(self.settings.breaker_failures) {
            let _ = self
                .state
                .set_flag(&format!("breaker:{domain}"), self.settings.breaker_cooldown)
                .await;
            tracing::warn!(client = %domain, failures = count, "circuit breaker open");
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

    /// Why a file's push failed for good after its client failed, stalled
    /// or faked its offset too often.
    fn faked_reason(&self, file: &str, failed: u64, rewound: u64) -> String {
        if rewound >= u64::from(self.settings.file_rewinds) {
            format!("pushing {file}: the client reported holding less than it acknowledged {rewound} times (limit ALIAS_PUSH_FILE_REWINDS); its offsets cannot be trusted")
        } else {
            format!("pushing {file}: {failed} requests failed or claimed no real progress (limit ALIAS_PUSH_FILE_FAILURES); the client fakes its offset or keeps failing")
        }
    }

    /// Sends the start request once per generation.
    async fn ensure_started(
        &self,
        t: &Transfer,
        target: &PushTarget,
        domain: &str,
    ) -> Result<(), Step> {
        let flag = format!("started:{}:{}", t.id, t.generation);
        if self.state.flag(&flag).await? {
            return Ok(());
        }
        let Some(lease) = Held::take(
            &self.state,
            format!("start:{}:{}", t.id, t.generation),
            &self.worker_id,
            self.settings.lease,
        )
        .await
        .map_err(|_| Step::Later(Duration::from_secs(2)))?
        else {
            return Err(Step::Later(Duration::from_secs(1)));
        };
        let result = async {
            if self.state.flag(&flag).await? {
                return Ok(());
            }
            if !self.fence_clear(t).await? {
                return Err(Step::Later(Duration::from_secs(1)));
            }
            let token = self
                .state
                .transfer_grant(&t.id)
                .await?
                .ok_or_else(|| Step::Fail("the transfer has no grant".into()))?;
            let mut backoff = Backoff::new(self.request_policy());
            match retry(&mut backoff, || self.client().start(target, &token)).await {
                Ok(_) => {
                    self.state.set_flag(&flag, DAY * 7).await?;
                    let _ = self.state.client_success(domain).await;
                    Ok(())
                }
                Err(e) => Err(self
                    .request_failed(
                        e,
                        &t.id,
                        domain,
                        &format!("job:{}:{}:start", t.id, t.generation),
                        "start request refused",
                    )
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
    async fn fence_clear(&self, t: &Transfer) -> Result<bool, Step> {
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
    async fn maybe_finish(
        &self,
        t: &Transfer,
        target: &PushTarget,
        domain: &str,
    ) -> Result<(), Step> {
        let Some(now) = self.state.transfer(&t.id).await? else {
            return Ok(());
        };
        if now.generation != t.generation || now.state != TransferState::Pushing {
            return Ok(());
        }
        let files = self.state.files(&t.id, t.generation).await?;
        if now.files_done < files.len() as u64 {
            return Ok(());
        }
        let Some(lease) = Held::take(
            &self.state,
            format!("finish:{}:{}", t.id, t.generation),
            &self.worker_id,
            self.settings.lease,
        )
        .await
        .map_err(|_| Step::Later(Duration::from_secs(2)))?
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
        let mut backoff = Backoff::new(self.request_policy());
        let result = match retry(&mut backoff, || {
            self.client().finish_transfer(target, &summaries)
        })
        .await
        {
            Ok(_) => {
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
                .request_failed(
                    e,
                    &t.id,
                    domain,
                    &format!("job:{}:{}:finish", t.id, t.generation),
                    "finish request refused",
                )
                .await),
        };
        lease.release().await;
        result
    }

    /// The flag of a job sent to the dead-letter queue for its generation.
    /// Counts a restart against the client (its signing key, read from the
    /// transfer's grant, and its push host): a client cannot force
    /// restarts without limit by spreading them over new contracts.
    /// `Some` (the transfer fails) past [`PushSettings::client_restarts`].
    async fn client_restarts_over(&self, t: &Transfer, domain: &str) -> Option<Step> {
        let mut names = vec![format!("restarts:host:{domain}")];
        if let Ok(Some(token)) = self.state.transfer_grant(&t.id).await {
            if let Some(key) = client_key(&token) {
                names.push(format!("restarts:client:{key}"));
            }
        }
        for name in names {
            match self.state.count(&name, DAY).await {
                Ok(n) if n > self.settings.client_restarts => {
                    tracing::warn!(transfer = %t.id, counter = %name, restarts = n, "restart refused: the client's restarts are over the cap");
                    return Some(Step::Fail(format!(
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

    fn dead_flag(job: &PushJob) -> String {
        format!(
            "dead:{}:{}:{}",
            job.transfer,
            job.generation,
            job.file.as_deref().unwrap_or("-")
        )
    }

    /// The budget keys of a generation's requests (see `client_trouble`).
    fn budget_keys(t: &Transfer, files: &[runtime::state::FileRecord]) -> Vec<String> {
        let mut keys: Vec<String> = files
            .iter()
            .map(|f| format!("job:{}:{}:{}", t.id, t.generation, f.name))
            .collect();
        keys.push(format!("job:{}:{}:start", t.id, t.generation));
        keys.push(format!("job:{}:{}:finish", t.id, t.generation));
        keys
    }

    /// A dead-lettered job of a failed generation came back (an operator
    /// replayed it, once the client recovered): the generation runs again
    /// with fresh retry budgets, a closed breaker and the jobs of its other
    /// files re-queued. Returns the transfer as it is now, or `None` when
    /// the job is not such a replay (a late copy of a failed generation's
    /// job is dropped, as before).
    async fn revive(&self, job: &PushJob, t: &Transfer) -> Result<Option<Transfer>, Step> {
        let flag = Self::dead_flag(job);
        if !self.state.flag(&flag).await? {
            return Ok(None);
        }
        let files = self.state.files(&t.id, t.generation).await?;
        for key in Self::budget_keys(t, &files) {
            self.state.forget_first_seen(&key).await?;
        }
        if let Ok(target) = target_of(t) {
            let domain = self.client_id(t, &target).await?.breaker();
            self.state.clear_flag(&format!("breaker:{domain}")).await?;
            self.state.client_success(&domain).await?;
        }
        if !self
            .state
            .transition(
                &t.id,
                t.generation,
                &[TransferState::Failed],
                TransferState::Pushing,
                None,
            )
            .await?
        {
            // Another replayed job revived it first, or it moved on.
            self.state.clear_flag(&flag).await?;
            return Ok(self.state.transfer(&t.id).await?);
        }
        tracing::info!(transfer = %t.id, generation = t.generation, "a replayed job takes up the failed generation again");
        let mut others: Vec<PushJob> = files
            .iter()
            .map(|f| PushJob {
                transfer: t.id.clone(),
                generation: t.generation,
                file: Some(f.name.clone()),
            })
            .collect();
        if others.is_empty() {
            others.push(PushJob {
                transfer: t.id.clone(),
                generation: t.generation,
                file: None,
            });
        }
        for other in others.iter().filter(|o| o.file != job.file) {
            self.broker
                .publish(Route::Push, &jobs::encode(other), &other.message_id())
                .await
                .map_err(|_| Step::Later(Duration::from_secs(1)))?;
        }
        self.state.clear_flag(&flag).await?;
        Ok(self.state.transfer(&t.id).await?)
    }

    async fn run(&self, job: &PushJob) -> Step {
        let mut t = match self.state.transfer(&job.transfer).await {
            Ok(Some(t)) => t,
            Ok(None) => return Step::Done,
            Err(e) => return e.into(),
        };
        if t.generation == job.generation && t.state == TransferState::Failed {
            match self.revive(job, &t).await {
                Ok(Some(now)) => t = now,
                Ok(None) => return Step::Done,
                Err(step) => return step,
            }
        }
        if t.generation != job.generation || t.state.is_terminal() {
            return Step::Done;
        }
        if t.state != TransferState::Pushing {
            return Step::Later(Duration::from_secs(2));
        }
        let target = match target_of(&t) {
            Ok(target) => target,
            Err(e) => return Step::Fail(format!("push destination: {e}")),
        };
        let client = match self.client_id(&t, &target).await {
            Ok(client) => client,
            Err(e) => return e.into(),
        };
        let domain = client.breaker();
        match self.state.flag(&format!("breaker:{domain}")).await {
            Ok(true) => return Step::Later(self.settings.breaker_cooldown),
            Ok(false) => {}
            Err(e) => return e.into(),
        }
        let names = client.names();
        let share = (self.settings.concurrency * self.settings.client_share as usize / 100).max(1);
        let Some(local) = self.local.take(&names, share) else {
            tracing::debug!(transfer = %t.id, client = %domain, "the client holds its share of this pusher's workers");
            return Step::Later(Duration::from_secs(1));
        };
        let mut slots = Vec::new();
        for name in &names {
            match self.take_slot(name).await {
                Ok(Some(held)) => slots.push(held),
                Ok(None) | Err(()) => {
                    for held in slots {
                        held.release().await;
                    }
                    drop(local);
                    return Step::Later(Duration::from_secs(1));
                }
            }
        }
        let step = self.run_with_slot(job, &t, &target, &domain).await;
        for held in slots {
            held.release().await;
        }
        drop(local);
        step
    }

    /// One of the `per_client` slots of `name`, if one is free.
    async fn take_slot(&self, name: &str) -> Result<Option<Held>, ()> {
        for k in 0..self.settings.per_client.max(1) {
            match Held::take(
                &self.state,
                format!("client:{name}:slot:{k}"),
                &self.worker_id,
                self.settings.lease,
            )
            .await
            {
                Ok(Some(held)) => return Ok(Some(held)),
                Ok(None) => {}
                Err(_) => return Err(()),
            }
        }
        Ok(None)
    }

    /// The client of a transfer: the signing key of the client declaration
    /// in its grant, and the registrable domain of its push URL.
    async fn client_id(
        &self,
        t: &Transfer,
        target: &PushTarget,
    ) -> Result<ClientId, runtime::state::StateError> {
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
        domain: &str,
    ) -> Step {
        let holder = format!("{}:{}", self.worker_id, uuid::Uuid::new_v4().simple());
        let fence = match Fenced::enter(&self.state, t, holder, self.settings.lease).await {
            Ok(Some(fence)) => fence,
            Ok(None) => return Step::Done, // superseded, cancelled or finished
            Err(e) => return e.into(),
        };
        let step = self.run_fenced(job, t, target, domain, &fence).await;
        fence.leave().await;
        step
    }

    async fn run_fenced(
        &self,
        job: &PushJob,
        t: &Transfer,
        target: &PushTarget,
        domain: &str,
        fence: &Fenced,
    ) -> Step {
        if let Err(step) = self.ensure_started(t, target, domain).await {
            return step;
        }
        let Some(file) = &job.file else {
            return match self.maybe_finish(t, target, domain).await {
                Ok(()) => Step::Done,
                Err(step) => step,
            };
        };
        let lease = match Held::take(
            &self.state,
            format!("push:{}:{}:{file}", t.id, t.generation),
            &self.worker_id,
            self.settings.lease,
        )
        .await
        {
            Ok(Some(l)) => l,
            Ok(None) => return Step::Later(Duration::from_secs(5)),
            Err(_) => return Step::Later(Duration::from_secs(2)),
        };
        let step = self.push_file(job, t, target, domain, file, fence).await;
        lease.release().await;
        step
    }

    async fn push_file(
        &self,
        job: &PushJob,
        t: &Transfer,
        target: &PushTarget,
        domain: &str,
        file: &str,
        fence: &Fenced,
    ) -> Step {
        let files = match self.state.files(&t.id, t.generation).await {
            Ok(f) => f,
            Err(e) => return e.into(),
        };
        let Some(record) = files.into_iter().find(|f| f.name == file) else {
            return Step::Done;
        };
        let done_flag = format!("filedone:{}:{}:{file}", t.id, t.generation);
        match self.state.flag(&done_flag).await {
            Ok(true) => {
                // The client was told; a run that stopped right after (crash,
                // Redis trouble) may not have counted the file: counting is
                // idempotent.
                if let Err(e) = self.state.finish_file(&t.id, t.generation, file).await {
                    return e.into();
                }
                return match self.maybe_finish(t, target, domain).await {
                    Ok(()) => Step::Done,
                    Err(step) => step,
                };
            }
            Ok(false) => {}
            Err(e) => return e.into(),
        }
        let file_url = match target.file_url(file) {
            Ok(u) => u,
            Err(e) => return Step::Fail(e.to_string()),
        };
        if record.offset < record.size {
            // A run that died with a chunk in flight leaves this flag set: ask
            // the client what it holds before sending anything.
            let inflight = format!("inflight:{}:{}:{file}", t.id, t.generation);
            let verify = match self.state.set_flag(&inflight, DAY).await {
                Ok(fresh) => !fresh,
                Err(e) => return e.into(),
            };
            let upload = Upload {
                key: record.storage_key.clone(),
                file_url: file_url.clone(),
                size: record.size,
                offset: record.offset,
                verify_offset: verify,
            };
            let fail_key = format!("pushfail:{}:{}:{file}", t.id, t.generation);
            let rewind_key = format!("pushrewind:{}:{}:{file}", t.id, t.generation);
            let (failed_before, rewound_before) = match (
                self.state.counted(&fail_key).await,
                self.state.counted(&rewind_key).await,
            ) {
                (Ok(f), Ok(r)) => (f, r),
                (Err(e), _) | (_, Err(e)) => return e.into(),
            };
            let max_failures = u64::from(self.settings.file_failures);
            let max_rewinds = u64::from(self.settings.file_rewinds);
            if failed_before >= max_failures || rewound_before >= max_rewinds {
                let _ = self.state.clear_flag(&inflight).await;
                return Step::Fail(self.faked_reason(file, failed_before, rewound_before));
            }
            let chunk = self.streamer.chunk_size().max(1) as u64;
            let attempts = u64::from(self.settings.policy.max_attempts);
            let limits = RunLimits {
                min_advance: self.settings.min_advance,
                // Every chunk of the run twice (once answered by an offset),
                // and the retries of a few of them.
                max_requests: (self.settings.run_bytes.div_ceil(chunk))
                    .saturating_mul(2)
                    .saturating_add(attempts.saturating_mul(4))
                    .saturating_add(16),
                max_failures: max_failures - failed_before,
                max_rewinds: (max_rewinds - rewound_before).min(3),
                deadline: Some(tokio::time::Instant::now() + self.settings.run_time),
            };
            let mut stats = Streamed::default();
            let pushed = AtomicU64::new(0);
            let start_offset = record.offset;
            let state = &self.state;
            let (id, generation) = (t.id.clone(), t.generation);
            let run_bytes = self.settings.run_bytes;
            let result = self
                .streamer
                .push_file_limited(
                    &upload,
                    &limits,
                    &mut stats,
                    |offset| {
                        let sent = offset.saturating_sub(start_offset);
                        let before = pushed.swap(sent, Ordering::Relaxed);
                        runtime::ops::count_bytes("pushed", sent.saturating_sub(before));
                        let (state, id, file) = (state.clone(), id.clone(), file.to_owned());
                        async move {
                            match state.commit_offset(&id, generation, &file, offset).await {
                                Ok(Some(_)) => Ok(()),
                                Ok(None) => Err("the transfer generation moved on".to_owned()),
                                Err(e) => Err(e.to_string()),
                            }
                        }
                    },
                    || {
                        let (state, id) = (state.clone(), id.clone());
                        let over = pushed.load(Ordering::Relaxed) >= run_bytes;
                        let fenced = fence.holds();
                        async move {
                            if over || !fenced {
                                return false;
                            }
                            matches!(state.transfer(&id).await, Ok(Some(t)) if t.generation == generation && t.state == TransferState::Pushing)
                        }
                    },
                )
                .await;
            // Count what the run cost the client, per file and for the
            // breaker, before deciding anything.
            for _ in 0..stats.failures {
                if let Err(e) = self.state.count(&fail_key, DAY).await {
                    return e.into();
                }
            }
            for _ in 0..stats.rewinds {
                if let Err(e) = self.state.count(&rewind_key, DAY).await {
                    return e.into();
                }
            }
            if stats.stalled > 0 {
                self.count_failures(domain, stats.stalled).await;
            }
            let (failed, rewound) = (
                failed_before + stats.failures,
                rewound_before + stats.rewinds,
            );
            if result.is_err() && (failed >= max_failures || rewound >= max_rewinds) {
                let _ = self.state.clear_flag(&inflight).await;
                return Step::Fail(self.faked_reason(file, failed, rewound));
            }
            if stats.failures > 0 || stats.rewinds > 0 {
                tracing::debug!(transfer = %t.id, %file, requests = stats.requests, failures = stats.failures, rewinds = stats.rewinds, stalled = stats.stalled, "push run of a failing client");
            }
            match result {
                Ok(()) => {
                    let _ = self.state.clear_flag(&inflight).await;
                }
                Err(StreamError::Abusive { abuse, .. }) => {
                    let _ = self.state.clear_flag(&inflight).await;
                    return self
                        .client_trouble(
                            &t.id,
                            domain,
                            &format!("job:{}:{}:{file}", t.id, t.generation),
                            &format!("pushing {file}: {abuse}"),
                            None,
                        )
                        .await;
                }
                Err(StreamError::Cancelled { .. }) => {
                    let _ = self.state.clear_flag(&inflight).await;
                    let still = matches!(self.state.transfer(&t.id).await, Ok(Some(ref now)) if now.generation == t.generation && now.state == TransferState::Pushing);
                    if !still {
                        return Step::Done; // revoked, cancelled or superseded
                    }
                    // Run budget spent: continue in a new delivery.
                    return match self
                        .broker
                        .publish(Route::Push, &jobs::encode(job), &job.message_id())
                        .await
                    {
                        Ok(()) => Step::Done,
                        Err(_) => Step::Later(Duration::from_secs(1)),
                    };
                }
                Err(StreamError::NeedsRestart { reason, .. }) => {
                    match self.state.count(&format!("restarts:{}", t.id), DAY).await {
                        Ok(n) if n > MAX_RESTARTS => {
                            return Step::Fail(format!(
                                "the client lost chunk answers {n} times and cannot report its offset; giving up"
                            ))
                        }
                        Ok(_) => {}
                        Err(e) => return e.into(),
                    }
                    if let Some(step) = self.client_restarts_over(t, domain).await {
                        return step;
                    }
                    let note = format!("restarted: a chunk's outcome was unknown and the client cannot report its offset ({reason:?})");
                    return match self
                        .state
                        .restart_generation(&t.id, t.generation, &note)
                        .await
                    {
                        Ok(Some(new)) => {
                            tracing::warn!(transfer = %t.id, old = t.generation, new, %file, ?reason, "transfer restarted: the client must start again");
                            let job = ProcessJob {
                                transfer: t.id.clone(),
                                generation: new,
                            };
                            match self
                                .broker
                                .publish(Route::Process, &jobs::encode(&job), &job.message_id())
                                .await
                            {
                                Ok(()) => Step::Done,
                                Err(e) => Step::Fail(format!("could not queue the restart: {e}")),
                            }
                        }
                        Ok(None) => Step::Done,
                        Err(e) => e.into(),
                    };
                }
                Err(StreamError::Exhausted {
                    last, retry_after, ..
                }) => {
                    let _ = self.state.clear_flag(&inflight).await;
                    return self
                        .client_trouble(
                            &t.id,
                            domain,
                            &format!("job:{}:{}:{file}", t.id, t.generation),
                            &last.to_string(),
                            retry_after,
                        )
                        .await;
                }
                Err(StreamError::Permanent { error, .. }) => {
                    return Step::Fail(format!("pushing {file}: {error}"));
                }
                Err(StreamError::Commit { source, .. }) => {
                    // The generation moved on (nothing left to do), or Redis
                    // failed: then the chunk's outcome is known to the
                    // client only, and the in-flight flag stays set so the
                    // next run asks the client's offset first.
                    let still = matches!(self.state.transfer(&t.id).await, Ok(Some(ref now)) if now.generation == t.generation && now.state == TransferState::Pushing);
                    if still {
                        tracing::warn!(transfer = %t.id, %file, error = %source, "could not commit an offset; retrying later");
                        return Step::Later(Duration::from_secs(1));
                    }
                    return Step::Done;
                }
                Err(e @ (StreamError::Storage { .. } | StreamError::SizeMismatch { .. })) => {
                    return Step::Fail(format!("archive unreadable: {e}"));
                }
            }
        }
        let mut backoff = Backoff::new(self.request_policy());
        match retry(&mut backoff, || {
            self.client()
                .finish_file(&file_url, record.size, &record.blake2b)
        })
        .await
        {
            Ok(_) => {}
            Err(e) => {
                return self
                    .request_failed(
                        e,
                        &t.id,
                        domain,
                        &format!("job:{}:{}:{file}", t.id, t.generation),
                        &format!("the client refused {file}"),
                    )
                    .await
            }
        }
        let _ = self.state.client_success(domain).await;
        if let Err(e) = record_acked(|| self.state.set_flag(&done_flag, DAY * 7)).await {
            return e.into();
        }
        if let Err(e) = record_acked(|| self.state.finish_file(&t.id, t.generation, file)).await {
            return e.into();
        }
        match self.maybe_finish(t, target, domain).await {
            Ok(()) => Step::Done,
            Err(step) => step,
        }
    }
}

/// Records what a client has already acknowledged (a finished file, a
/// finished transfer). A dropped Redis connection reconnects within
/// moments; retrying the write in place then keeps the client from being
/// told the same thing twice. Only a longer outage gives up, and the job's
/// retry repeats the (idempotent) request.
async fn record_acked<T, F, Fut>(mut write: F) -> Result<T, runtime::state::StateError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, runtime::state::StateError>>,
{
    let mut delay = Duration::from_millis(50);
    for _ in 0..6 {
        match write().await {
            Ok(v) => return Ok(v),
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?delay, "could not record an acknowledged step; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
    write().await
}

#[async_trait::async_trait]
impl JobHandler for Pusher {
    async fn handle(&self, body: &[u8], _delivery_count: u64) -> Disposition {
        let job: PushJob = match jobs::decode(body) {
            Ok(j) => j,
            Err(e) => return Disposition::Dead(format!("malformed push job: {e}")),
        };
        match self.run(&job).await {
            Step::Done => Disposition::Ack,
            Step::Later(delay) => Disposition::Retry(delay),
            Step::Fail(reason) => {
                tracing::warn!(transfer = %job.transfer, %reason, "transfer failed");
                if let Ok(Some(t)) = self.state.transfer(&job.transfer).await {
                    if t.generation == job.generation {
                        self.fail(&t, &reason).await;
                        // Replaying this dead letter takes the generation up
                        // again (see `revive`).
                        let _ = self.state.set_flag(&Self::dead_flag(&job), DAY * 7).await;
                    }
                }
                Disposition::Dead(reason)
            }
        }
    }
}

/// Shared handle type for the worker.
pub type SharedPusher = Arc<Pusher>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrable_domains() {
        for (host, want) in [
            ("a.evil.example", "evil.example"),
            ("x.y.z.evil.example", "evil.example"),
            ("evil.example", "evil.example"),
            ("EVIL.Example.", "evil.example"),
            ("shop.evil.co.uk", "evil.co.uk"),
            ("evil.co.uk", "evil.co.uk"),
            ("a.b.com.au", "b.com.au"),
            ("localhost", "localhost"),
            ("127.0.0.1", "127.0.0.1"),
            ("[::1]", "::1"),
            ("a.b.io", "b.io"),
        ] {
            assert_eq!(registrable_domain(host), want, "{host}");
        }
    }

    #[test]
    fn a_client_holds_at_most_its_share() {
        let share = LocalShare::default();
        let one = ClientId {
            key: Some("K".into()),
            domain: "evil.example".into(),
        };
        let other_key_same_domain = ClientId {
            key: Some("L".into()),
            domain: "evil.example".into(),
        };
        let healthy = ClientId {
            key: Some("H".into()),
            domain: "good.example".into(),
        };
        let first = share.take(&one.names(), 1).unwrap();
        assert!(share.take(&one.names(), 1).is_none());
        assert!(share.take(&other_key_same_domain.names(), 1).is_none());
        let h = share.take(&healthy.names(), 1).unwrap();
        drop(first);
        assert!(share.take(&other_key_same_domain.names(), 1).is_some());
        drop(h);
        assert_eq!(one.breaker(), "key:K");
        let keyless = ClientId {
            key: None,
            domain: "evil.example".into(),
        };
        assert_eq!(keyless.breaker(), "dom:evil.example");
    }
}
