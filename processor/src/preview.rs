//! The preview job: what a contract would give its client from the user's
//! dumps, computed by a dry run of the build ([`extract::preview_archives`])
//! over the same sources the build would read ([`crate::worker::sources`])
//! and stored in the user's preview record. Only the pending run the job
//! names stores its outcome; a job for another run (expired, replaced) does
//! nothing. The job names the user: only that user's dumps are read.

use crate::extract::{self, BuildOptions, Catalog, ExtractError, ScopePreview};
use crate::worker::{sources, Sources};
use protocol::scope::Scope;
use runtime::jobs::{self, PreviewJob};
use runtime::retry::{Decision, RetryPolicy};
use runtime::state::{PreviewKey, PreviewLimits, PreviewState, ScopeSummary, State};
use runtime::storage::Storage;
use runtime::worker::{Disposition, JobHandler};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest a preview runs; under [`PreviewLimits::pending_ttl`], so a
/// pending record outlives its run.
pub const PREVIEW_TIME_LIMIT: Duration = Duration::from_secs(300);

/// Everything the preview job needs.
pub struct Previewer {
    /// The state (preview records, dumps).
    pub state: State,
    /// Resource storage (the dumps).
    pub storage: Storage,
    /// The provider catalogs.
    pub catalog: Arc<Catalog>,
    /// The build's options; the time limit is at most
    /// [`PREVIEW_TIME_LIMIT`].
    pub options: BuildOptions,
    /// How long a result is kept.
    pub result_ttl: Duration,
    /// Deliveries after which a transient failure is stored as the outcome.
    pub max_deliveries: u64,
}

/// Why a preview job did not store an outcome.
#[derive(Debug)]
enum Trouble {
    /// Worth another try (state or storage trouble).
    Transient(String),
}

impl From<runtime::state::StateError> for Trouble {
    fn from(e: runtime::state::StateError) -> Self {
        Trouble::Transient(e.to_string())
    }
}

/// A preview of one scope as stored.
fn summary(p: ScopePreview) -> ScopeSummary {
    let provider = p
        .scope_display
        .split('.')
        .next()
        .unwrap_or_default()
        .to_owned();
    ScopeSummary {
        notes: p.unreadable.iter().map(|u| u.note(&provider)).collect(),
        scope: p.scope_display,
        file: p.file,
        files: p.files,
        records: p.records,
        bytes: p.bytes,
        first_files: p.first_files,
        samples: p.samples,
        skipped: p.skipped,
    }
}

impl Previewer {
    /// A previewer with the build options of the configuration.
    pub fn new(
        state: State,
        storage: Storage,
        catalog: Arc<Catalog>,
        options: BuildOptions,
    ) -> Self {
        let mut options = options;
        options.progress = None;
        let limit = options
            .limits
            .max_duration
            .map_or(PREVIEW_TIME_LIMIT, |d| d.min(PREVIEW_TIME_LIMIT));
        options.limits.max_duration = Some(limit);
        Previewer {
            state,
            storage,
            catalog,
            options,
            result_ttl: PreviewLimits::DEFAULT.result_ttl,
            max_deliveries: 3,
        }
    }

    /// Runs one preview job; `Ok(None)` when there was nothing to do.
    async fn run(&self, job: &PreviewJob) -> Result<Option<PreviewState>, Trouble> {
        let Some(key) = PreviewKey::new(&job.user, &job.contract) else {
            return Ok(None);
        };
        let Some(record) = self.state.preview(&key).await? else {
            tracing::info!(preview = %job.id, "expired or forgotten preview; dropping the job");
            return Ok(None);
        };
        if !record.is_pending() || record.id != job.id {
            tracing::info!(preview = %job.id, "stale preview job");
            return Ok(None);
        }
        let mut by_provider: BTreeMap<String, Vec<Scope>> = BTreeMap::new();
        for text in &record.requested {
            match Scope::parse(text) {
                Ok(scope) => by_provider
                    .entry(scope.provider.clone())
                    .or_default()
                    .push(scope),
                Err(e) => {
                    return Ok(Some(PreviewState::Failed {
                        reason: format!("scope {text:?} not understood: {e}"),
                    }))
                }
            }
        }
        let dumps = self.state.dumps(key.user()).await?;
        let Sources {
            dumps,
            scopes,
            missing,
        } = sources(&dumps, by_provider);
        let missing: Vec<String> = missing
            .iter()
            .flat_map(|(_, scopes)| scopes.iter().map(Scope::display))
            .collect();
        let started = Instant::now();
        let result = if scopes.is_empty() {
            Ok(Vec::new())
        } else {
            extract::preview_archives(&self.storage, &self.catalog, &dumps, &scopes, &self.options)
                .await
        };
        let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match result {
            Ok(previews) => {
                tracing::info!(preview = %job.id, elapsed_ms, scopes = previews.len(), "preview computed");
                Ok(Some(PreviewState::Ready {
                    scopes: previews.into_iter().map(summary).collect(),
                    missing,
                    elapsed_ms,
                }))
            }
            Err(e) if e.is_transient() && !matches!(e, ExtractError::TimeLimit { .. }) => {
                Err(Trouble::Transient(e.to_string()))
            }
            Err(e) => Ok(Some(PreviewState::Failed {
                reason: e.to_string(),
            })),
        }
    }

    async fn store(&self, job: &PreviewJob, state: &PreviewState) -> Result<(), Trouble> {
        let Some(key) = PreviewKey::new(&job.user, &job.contract) else {
            return Ok(());
        };
        if !self
            .state
            .finish_preview(&key, &job.id, state, self.result_ttl)
            .await?
        {
            tracing::info!(preview = %job.id, "the preview was replaced or expired meanwhile");
        }
        Ok(())
    }

    /// Up to `max_deliveries` attempts, 1 s to 10 s apart.
    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(10),
            max_attempts: u32::try_from(self.max_deliveries).unwrap_or(u32::MAX),
            max_elapsed: Duration::MAX,
        }
    }
}

#[async_trait::async_trait]
impl JobHandler for Previewer {
    async fn handle(&self, body: &[u8], delivery_count: u64) -> Disposition {
        let job: PreviewJob = match jobs::decode(body) {
            Ok(j) => j,
            Err(e) => return Disposition::Dead(format!("malformed preview job: {e}")),
        };
        let outcome = match self.run(&job).await {
            Ok(None) => return Disposition::Ack,
            Ok(Some(state)) => state,
            Err(Trouble::Transient(reason)) => {
                let failures = u32::try_from(delivery_count).unwrap_or(u32::MAX);
                match self.retry_policy().after_failure(failures, &reason) {
                    Decision::Retry(delay) => {
                        tracing::info!(preview = %job.id, %reason, retry_in = ?delay, "will retry");
                        return Disposition::Retry(delay);
                    }
                    Decision::Fail(reason) => PreviewState::Failed { reason },
                    Decision::Done => return Disposition::Ack,
                }
            }
        };
        match self.store(&job, &outcome).await {
            Ok(()) => Disposition::Ack,
            Err(Trouble::Transient(reason)) => {
                tracing::warn!(preview = %job.id, %reason, "could not store the preview; retrying");
                Disposition::Retry(Duration::from_secs(1))
            }
        }
    }

    async fn make_durable(&self) -> Result<(), String> {
        runtime::worker::durable_state(&self.state).await
    }
}
