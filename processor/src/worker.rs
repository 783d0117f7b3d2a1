//! The process job: from a transfer generation's grant to its per-scope
//! archives in storage, their records in Redis, and one push job per
//! archive. Idempotent: a redelivered job for a generation whose archives
//! are built only re-queues the push jobs; a job for an older generation is
//! dropped; a lease keeps two workers off the same generation.

use crate::extract::{self, BuildOptions, BuiltArchive, Catalog, DumpSource, ExtractError};
use protocol::alias::Grant;
use protocol::anychain::{from_json_str, Limits};
use protocol::scope::Scope;
use runtime::archives;
use runtime::jobs::{self, ProcessJob, PushJob};
use runtime::mq::{Broker, Route};
use runtime::retry::{Decision, RetryPolicy};
use runtime::state::{
    Added, DumpRecord, FileRecord, Lease, LeaseGuard, Mark, State, TransferState,
};
use runtime::storage::Storage;
use runtime::worker::{Disposition, JobHandler};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

fn classify(e: ExtractError) -> JobError {
    if e.is_transient() {
        JobError::Transient(e.to_string())
    } else {
        JobError::Permanent(e.to_string())
    }
}

/// Why a job did not complete.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Worth another try later (Redis, broker or storage trouble, lease held).
    #[error("{0}")]
    Transient(String),
    /// The transfer cannot succeed (bad dump, bad grant): it fails.
    #[error("{0}")]
    Permanent(String),
}

impl From<runtime::state::StateError> for JobError {
    fn from(e: runtime::state::StateError) -> Self {
        JobError::Transient(e.to_string())
    }
}

/// What [`Processor::build`] leaves to do.
enum Built {
    /// Archives to record and queue (reused from an earlier generation,
    /// or none at all).
    Ready(Vec<FileRecord>),
    /// Archives built, each recorded and queued as soon as it was stored
    /// (the last one with the generation's list sealed).
    Announced(Vec<FileRecord>),
    /// The generation moved on or ended during the build.
    Stale,
}

/// Keeps an archive the build handed out (with its scope's index) and
/// returns its record.
fn keep_built(
    built: &mut Vec<(usize, BuiltArchive)>,
    next: Result<(usize, BuiltArchive), extract::ExtractError>,
) -> Result<FileRecord, JobError> {
    let (index, archive) = next.map_err(classify)?;
    let record = file_record(&archive);
    built.push((index, archive));
    Ok(record)
}

/// The record of a stored archive.
fn file_record(a: &BuiltArchive) -> FileRecord {
    FileRecord {
        blake2b: a.blake2b_b64(),
        name: a.file.clone(),
        scope: a.scope_display.clone(),
        storage_key: a.storage_key.clone(),
        size: a.size,
        offset: 0,
        finished: false,
    }
}

/// Everything the process job needs.
pub struct Processor {
    /// Redis state.
    pub state: State,
    /// RabbitMQ.
    pub broker: Broker,
    /// Resource storage.
    pub storage: Storage,
    /// The provider catalogs.
    pub catalog: Arc<Catalog>,
    /// Limits against hostile dumps, scratch directory, compression; a
    /// progress callback set here observes every build (on its build
    /// threads), beside the progress recorded on the transfer.
    pub options: BuildOptions,
    /// Identifies this worker in leases.
    pub worker_id: String,
    /// Deliveries after which a transient failure becomes final.
    pub max_deliveries: u64,
    /// Lease on a generation (renewed at a quarter of it).
    pub lease: Duration,
    /// How long a done transfer's archives are kept (the sweeper's period).
    pub retention: Duration,
    /// Whether a generation reuses the archives of an earlier one built
    /// from the same grant and dumps (always, but for measurements).
    pub reuse: bool,
}

/// Removes the `-001`-style part number and the extension of an export
/// file name, so that the parts of one export share a stem.
pub fn export_stem(name: &str) -> &str {
    let base = [".tar.gz", ".tgz", ".zip", ".tar"]
        .iter()
        .find_map(|ext| name.strip_suffix(ext))
        .unwrap_or(name);
    match base.rsplit_once('-') {
        Some((stem, part)) if part.len() == 3 && part.bytes().all(|b| b.is_ascii_digit()) => stem,
        _ => base,
    }
}

/// The newest export of each provider with all its parts, in name order.
pub fn newest_exports(dumps: &[DumpRecord]) -> BTreeMap<String, Vec<DumpRecord>> {
    let mut by_export: BTreeMap<(String, String), Vec<DumpRecord>> = BTreeMap::new();
    for d in dumps {
        by_export
            .entry((d.provider.clone(), export_stem(&d.name).to_owned()))
            .or_default()
            .push(d.clone());
    }
    let mut newest: BTreeMap<String, (u64, Vec<DumpRecord>)> = BTreeMap::new();
    for ((provider, _), mut parts) in by_export {
        parts.sort_by(|a, b| a.name.cmp(&b.name));
        let at = parts.iter().map(|p| p.uploaded_ms).max().unwrap_or(0);
        match newest.get(&provider) {
            Some((seen, _)) if *seen >= at => {}
            _ => {
                newest.insert(provider, (at, parts));
            }
        }
    }
    newest
        .into_iter()
        .map(|(p, (_, parts))| (p, parts))
        .collect()
}

/// What a build reads: the parts of the newest export of each provider
/// the scopes name, and the scopes that can be built from them.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// The dump parts, by provider then name.
    pub dumps: Vec<DumpSource>,
    /// The scopes of providers with a dump, by provider.
    pub scopes: Vec<Scope>,
    /// Providers without a dump, with their scopes (left out).
    pub missing: Vec<(String, Vec<Scope>)>,
}

/// The sources of a build of `scopes_by_provider` from a user's `dumps`
/// (the newest export of each provider): the one choice the build and
/// its preview share.
pub fn sources(dumps: &[DumpRecord], scopes_by_provider: BTreeMap<String, Vec<Scope>>) -> Sources {
    let exports = newest_exports(dumps);
    let mut out = Sources::default();
    for (provider, provider_scopes) in scopes_by_provider {
        match exports.get(&provider) {
            Some(parts) => {
                for d in parts {
                    let hash = protocol::anychain::b64u_decode(&d.blake2b)
                        .ok()
                        .and_then(|h| <[u8; 64]>::try_from(h).ok())
                        .unwrap_or([0; 64]);
                    out.dumps.push(DumpSource {
                        provider: d.provider.clone(),
                        key: d.key.clone(),
                        name: d.name.clone(),
                        size: d.size,
                        blake2b: hash,
                    });
                }
                out.scopes.extend(provider_scopes);
            }
            None => out.missing.push((provider, provider_scopes)),
        }
    }
    out
}

impl Processor {
    /// Runs one process job.
    pub async fn process(&self, job: &ProcessJob) -> Result<(), JobError> {
        let (id, generation) = (job.transfer.as_str(), job.generation);
        let Some(t) = self.state.transfer(id).await? else {
            tracing::info!(transfer = %id, "unknown or expired transfer; dropping the job");
            return Ok(());
        };
        if t.generation != generation || t.state.is_terminal() {
            tracing::info!(transfer = %id, generation, current = t.generation, state = ?t.state, "stale job");
            return Ok(());
        }
        let Some(lease) = LeaseGuard::acquire(
            &self.state,
            Lease::process(id, generation),
            &self.worker_id,
            self.lease,
        )
        .await?
        else {
            return Err(JobError::Transient(
                "another worker is processing this generation".into(),
            ));
        };
        let result = self.process_leased(id, generation).await;
        lease.release().await;
        result
    }

    async fn process_leased(&self, id: &str, generation: u64) -> Result<(), JobError> {
        let active = [TransferState::Accepted, TransferState::Processing];
        if !self
            .state
            .transition(id, generation, &active, TransferState::Processing, None)
            .await?
        {
            // Already pushing (archives built earlier): only re-queue below.
            let t = self.state.transfer(id).await?;
            if !matches!(t, Some(ref t) if t.generation == generation && t.state == TransferState::Pushing)
            {
                return Ok(());
            }
        }
        let files = if self.state.marked(id, generation, Mark::Built).await? {
            self.state.files(id, generation).await?
        } else {
            let files = match self.build(id, generation).await? {
                Built::Stale => return Ok(()),
                // Recorded and queued one by one as they were stored.
                Built::Announced(files) => {
                    runtime::ops::count_bytes("archived", files.iter().map(|f| f.size).sum());
                    return self.mark_built(id, generation).await;
                }
                Built::Ready(files) => files,
            };
            runtime::ops::count_bytes("archived", files.iter().map(|f| f.size).sum());
            self.state.set_files(id, generation, &files).await?;
            self.mark_built(id, generation).await?;
            files
        };
        self.to_pushing(id, generation).await?;
        self.publish_pushes(id, generation, &files).await
    }

    /// Moves the generation from processing to pushing (nothing when it is
    /// there already).
    async fn to_pushing(&self, id: &str, generation: u64) -> Result<(), JobError> {
        self.state
            .transition(
                id,
                generation,
                &[TransferState::Processing],
                TransferState::Pushing,
                None,
            )
            .await?;
        Ok(())
    }

    /// Marks the generation's archives built: a redelivered job only
    /// queues their pushes again.
    async fn mark_built(&self, id: &str, generation: u64) -> Result<(), JobError> {
        self.state
            .mark(
                id,
                generation,
                Mark::Built,
                Duration::from_secs(7 * 24 * 3600),
            )
            .await?;
        Ok(())
    }

    /// Records archives of a generation being built, moves it to pushing
    /// (the first time) and queues a push job, unless one is queued and not
    /// started yet: a push job pushes every file of its generation that is
    /// recorded when it starts ([`runtime::state::TransferStore::add_files`]).
    /// The last archives (`complete`, the list sealed) always queue one,
    /// so that a job lost to a failed publish is made good by the end of
    /// the build (or by its retry). False when the generation moved on or
    /// ended (the build stops).
    async fn announce(
        &self,
        id: &str,
        generation: u64,
        files: &[FileRecord],
        complete: bool,
    ) -> Result<bool, JobError> {
        let queue = match self
            .state
            .add_files(id, generation, files, complete)
            .await?
        {
            Added::Stale => return Ok(false),
            Added::Recorded { queue } => queue || complete,
        };
        self.to_pushing(id, generation).await?;
        if queue {
            self.publish_pushes(id, generation, &files[..files.len().min(1)])
                .await?;
        }
        Ok(true)
    }

    /// Queues one push job per file, confirmed.
    async fn publish_pushes(
        &self,
        id: &str,
        generation: u64,
        files: &[FileRecord],
    ) -> Result<(), JobError> {
        let jobs = PushJob::for_files(id, generation, files.iter().map(|f| f.name.as_str()));
        let mut bodies = Vec::with_capacity(jobs.len());
        for job in &jobs {
            let body = jobs::encode(job).map_err(|e| JobError::Permanent(e.to_string()))?;
            bodies.push((body, job.message_id()));
        }
        // Published together: their confirms come back in one round trip
        // rather than one each.
        futures_util::future::try_join_all(
            bodies
                .iter()
                .map(|(body, message_id)| self.broker.publish(Route::Push, body, message_id)),
        )
        .await
        .map_err(|e| JobError::Transient(format!("queueing push jobs: {e}")))?;
        Ok(())
    }

    /// Builds the archives of one generation (none for a revocation),
    /// announcing each as soon as it is stored but the last, which is
    /// announced with the list sealed once every other is.
    async fn build(&self, id: &str, generation: u64) -> Result<Built, JobError> {
        let token = self
            .state
            .transfer_grant(id)
            .await?
            .ok_or_else(|| JobError::Permanent("the transfer has no grant".into()))?;
        let limits = Limits {
            max_bytes: usize::MAX,
            max_depth: 128,
        };
        // Stored grants were verified when the gateway accepted them.
        let grant = from_json_str(&token, &limits)
            .map_err(protocol::alias::AliasError::from)
            .and_then(Grant::from_verified)
            .map_err(|e| JobError::Permanent(format!("stored grant unreadable: {e}")))?;
        // Defence in depth: the gateway refuses grants not signed in clear;
        // a stored one (older code, a hand-edited store) never gives scopes.
        protocol::alias::check_grant_clear(grant.value())
            .map_err(|e| JobError::Permanent(format!("stored grant refused: {e}")))?;
        if grant.is_revoked() {
            // Nothing to push: the archives of earlier generations go.
            self.drop_build(id, None).await?;
            return Ok(Built::Ready(Vec::new()));
        }
        let mut scopes_by_provider: BTreeMap<String, Vec<Scope>> = BTreeMap::new();
        for value in grant
            .scopes()
            .map_err(|e| JobError::Permanent(e.to_string()))?
        {
            let scope = Scope::from_value(&value)
                .map_err(|e| JobError::Permanent(format!("scope not understood: {e}")))?;
            scopes_by_provider
                .entry(scope.provider.clone())
                .or_default()
                .push(scope);
        }
        let user = grant.signer_b64();
        let Sources {
            dumps,
            scopes,
            missing,
        } = sources(&self.state.dumps(&user).await?, scopes_by_provider);
        for (provider, _) in missing {
            let note = format!("no {provider} dump: its scopes were skipped");
            tracing::info!(transfer = %id, "{note}");
            self.state.add_note(id, generation, &note).await?;
        }
        if scopes.is_empty() {
            self.drop_build(id, None).await?;
            return Ok(Built::Ready(Vec::new()));
        }
        // The same grant and dumps give the same archives: a restart (a new
        // generation of the same grant) pushes the stored ones again.
        let parts: Vec<(&str, u64, String)> = dumps
            .iter()
            .map(|d| {
                (
                    d.key.as_str(),
                    d.size,
                    protocol::anychain::b64u_encode(&d.blake2b),
                )
            })
            .collect();
        let parts: Vec<(&str, u64, &str)> =
            parts.iter().map(|(k, s, h)| (*k, *s, h.as_str())).collect();
        let key = archives::build_key(&token, &parts);
        if self.reuse {
            if let Some(files) = archives::reusable(&self.state, &self.storage, id, &key)
                .await
                .map_err(|e| JobError::Transient(e.to_string()))?
            {
                tracing::info!(transfer = %id, generation, archives = files.len(), "reusing the archives of an earlier generation");
                return Ok(Built::Ready(files));
            }
        }
        let prefix = format!("transfers/{id}/{generation}");
        // Built from something else (a superseding grant, other dumps): the
        // earlier generation's archives are never pushed again. This
        // generation's own build under way (a delivery of this job cut
        // short) is built again in place, the same bytes: the archives it
        // announced may be being pushed.
        self.drop_build(id, Some(&prefix)).await?;
        let dump_keys: Vec<String> = dumps.iter().map(|d| d.key.clone()).collect();
        // Recorded before any dump is read: a dump deleted from now on
        // cancels the transfer, which stops this build at its next
        // announcement, and its archives go. A dump deleted before is gone
        // from storage by then, and reading it fails.
        let under_way =
            archives::Build::under_way(generation, prefix.clone(), user.clone(), dump_keys.clone());
        archives::record_build(&self.state, id, &under_way, self.retention)
            .await
            .map_err(|e| JobError::Transient(e.to_string()))?;
        // Progress from the blocking build, forwarded to Redis and the
        // transfer's subscribers (the latest value wins).
        let (tx, mut rx) = tokio::sync::watch::channel(extract::Progress::default());
        let mut options = self.options.clone();
        // An observer given in the options hears it first.
        let observer = self.options.progress.clone();
        options.progress = Some(Arc::new(move |p| {
            if let Some(observer) = &observer {
                observer(p);
            }
            // Fails only once the forwarder is gone (the build ends).
            let _ = tx.send(p);
        }));
        let forward = {
            let (state, id) = (self.state.clone(), id.to_owned());
            tokio::spawn(async move {
                while rx.changed().await.is_ok() {
                    let p = *rx.borrow_and_update();
                    if let Err(e) = state
                        .processing_progress(&id, generation, p.bytes_read, p.bytes_total)
                        .await
                    {
                        // Progress is informative; the next value retries.
                        tracing::debug!(transfer = %id, error = %e, "could not record the progress");
                    }
                }
            })
        };
        let mut built: Vec<(usize, BuiltArchive)> = Vec::with_capacity(scopes.len());
        let mut held: Vec<FileRecord> = Vec::new();
        let mut announced = false;
        let result = async {
            let mut build = extract::start_build(
                &self.storage,
                &self.catalog,
                &dumps,
                &scopes,
                &prefix,
                &options,
            )
            .await
            .map_err(classify)?;
            // Archives are announced as they are stored, those finished
            // together in one step. The last one seals the list and is
            // only known at the end: one is held back until the next is
            // stored, and all that are left when the build ends are
            // announced together, sealed, below.
            while let Some(next) = build.next().await {
                held.push(keep_built(&mut built, next)?);
                while let Some(more) = build.next_ready().await {
                    held.push(keep_built(&mut built, more)?);
                }
                if build.is_finished() {
                    break;
                }
                let last = held.pop();
                if !held.is_empty() {
                    if !self.announce(id, generation, &held, false).await? {
                        return Ok(false);
                    }
                    announced = true;
                }
                held = last.into_iter().collect();
            }
            Ok::<bool, JobError>(true)
        }
        .await;
        // The sender lives in `options`: dropping it ends the forwarder
        // after the last value.
        drop(options);
        if let Err(e) = forward.await {
            tracing::warn!(transfer = %id, error = %e, "the progress forwarder failed");
        }
        match result {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(transfer = %id, generation, "the generation moved on or ended during its build");
                self.discard_build(id, &prefix, "a stale build").await;
                return Ok(Built::Stale);
            }
            Err(e) => {
                // Archives of a failed build are never announced: drop
                // them. Announced ones stay while the job may run again
                // (it stores the same bytes), and go with a failure.
                if !announced || matches!(e, JobError::Permanent(_)) {
                    self.discard_build(id, &prefix, "a failed build").await;
                }
                return Err(e);
            }
        }
        built.sort_by_key(|(index, _)| *index);
        // What could not be read is told on the transfer (and so on the
        // user's dashboard), not only in the manifests.
        let mut told = std::collections::HashSet::new();
        for (_, a) in &built {
            let provider = a.scope_display.split('.').next().unwrap_or_default();
            for u in &a.unreadable {
                let note = u.note(provider);
                if !told.insert(note.clone()) {
                    continue;
                }
                tracing::info!(transfer = %id, "{note}");
                self.state.add_note(id, generation, &note).await?;
            }
        }
        let files: Vec<FileRecord> = built.iter().map(|(_, a)| file_record(a)).collect();
        let record = archives::Build {
            key,
            generation,
            prefix,
            user,
            dumps: dump_keys,
            files: files.clone(),
        };
        if !archives::complete_build(&self.state, id, &record, self.retention)
            .await
            .map_err(|e| JobError::Transient(e.to_string()))?
        {
            tracing::info!(transfer = %id, generation, "the build's record was dropped or replaced during the build");
            self.discard_build(id, &record.prefix, "a stale build")
                .await;
            return Ok(Built::Stale);
        }
        if held.is_empty() {
            return Ok(Built::Ready(files));
        }
        if !self.announce(id, generation, &held, true).await? {
            self.discard_build(id, &record.prefix, "a stale build")
                .await;
            return Ok(Built::Stale);
        }
        Ok(Built::Announced(files))
    }

    /// Deletes the archives of a failed build, or of one whose generation
    /// moved on or ended before its list was sealed (no later generation
    /// can push them: a restart needs a sealed list), and its record unless
    /// a newer generation's replaced it.
    async fn discard_build(&self, id: &str, prefix: &str, what: &str) {
        if let Err(e) = archives::drop_build_at(&self.state, &self.storage, id, prefix).await {
            tracing::warn!(error = %e, %prefix, "could not remove the archives of {what}");
        }
    }

    /// Deletes the transfer's earlier build, if any, but a build under way
    /// under `keep` ([`archives::drop_build_except`]).
    async fn drop_build(&self, id: &str, keep: Option<&str>) -> Result<(), JobError> {
        archives::drop_build_except(&self.state, &self.storage, id, keep)
            .await
            .map(|_| ())
            .map_err(|e| JobError::Transient(format!("deleting earlier archives: {e}")))
    }

    /// The retries of a process job: up to `max_deliveries` attempts,
    /// delays with full jitter under a ceiling doubling from 2 s to 64 s.
    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_secs(2),
            cap: Duration::from_secs(64),
            max_attempts: u32::try_from(self.max_deliveries).unwrap_or(u32::MAX),
            max_elapsed: Duration::MAX,
        }
    }

    /// Records the transfer's failure; `false` when Redis could not be
    /// told (the job then runs again rather than leaving the transfer
    /// active with no job).
    async fn fail(&self, job: &ProcessJob, reason: &str) -> bool {
        // Pushing too: the first archives are pushed while the others are
        // built.
        let active = [
            TransferState::Accepted,
            TransferState::Processing,
            TransferState::Pushing,
        ];
        if let Err(e) = self
            .state
            .transition(
                &job.transfer,
                job.generation,
                &active,
                TransferState::Failed,
                Some(reason),
            )
            .await
        {
            tracing::error!(error = %e, "could not record the failure; the job runs again");
            return false;
        }
        true
    }
}

/// How long a failed job whose failure could not be recorded waits.
const UNRECORDED_RETRY: Duration = Duration::from_secs(2);

#[async_trait::async_trait]
impl JobHandler for Processor {
    async fn handle(&self, body: &[u8], delivery_count: u64) -> Disposition {
        let job: ProcessJob = match jobs::decode(body) {
            Ok(j) => j,
            Err(e) => return Disposition::Dead(format!("malformed process job: {e}")),
        };
        match self.process(&job).await {
            Ok(()) => Disposition::Ack,
            Err(JobError::Permanent(reason)) => {
                tracing::warn!(transfer = %job.transfer, %reason, "transfer failed");
                if !self.fail(&job, &reason).await {
                    return Disposition::Retry(UNRECORDED_RETRY);
                }
                Disposition::Ack
            }
            Err(JobError::Transient(reason)) => {
                let failures = u32::try_from(delivery_count).unwrap_or(u32::MAX);
                match self.retry_policy().after_failure(failures, &reason) {
                    Decision::Retry(delay) => {
                        tracing::info!(transfer = %job.transfer, %reason, retry_in = ?delay, "will retry");
                        Disposition::Retry(delay)
                    }
                    Decision::Fail(reason) => {
                        if !self.fail(&job, &reason).await {
                            return Disposition::Retry(UNRECORDED_RETRY);
                        }
                        Disposition::Dead(reason)
                    }
                    Decision::Done => Disposition::Ack,
                }
            }
        }
    }

    async fn make_durable(&self) -> Result<(), String> {
        runtime::worker::durable_state(&self.state).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dump(provider: &str, name: &str, at: u64) -> DumpRecord {
        DumpRecord {
            provider: provider.into(),
            name: name.into(),
            key: format!("dumps/u/{provider}/{name}"),
            size: 1,
            blake2b: String::new(),
            uploaded_ms: at,
        }
    }

    #[test]
    fn stems_and_newest_exports() {
        assert_eq!(
            export_stem("takeout-20190710T135348Z-001.zip"),
            "takeout-20190710T135348Z"
        );
        assert_eq!(
            export_stem("takeout-20190710T135348Z-002.tgz"),
            "takeout-20190710T135348Z"
        );
        assert_eq!(export_stem("facebook-user.zip"), "facebook-user");
        let dumps = [
            dump("google", "takeout-2019-001.zip", 1),
            dump("google", "takeout-2019-002.zip", 2),
            dump("google", "takeout-2020-001.zip", 5),
            dump("google", "takeout-2020-002.zip", 6),
            dump("amazon", "amazon.zip", 3),
        ];
        let newest = newest_exports(&dumps);
        let names: Vec<_> = newest["google"].iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["takeout-2020-001.zip", "takeout-2020-002.zip"]);
        assert_eq!(newest["amazon"].len(), 1);
    }
}
