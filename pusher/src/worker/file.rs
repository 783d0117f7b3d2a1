//! One file of a generation: a push run from its committed offset (at most
//! `ALIAS_PUSH_RUN_BYTES` or `ALIAS_PUSH_RUN_SECS`), what the run's outcome
//! means for the job, the restart a client without offset queries needs,
//! and the file's finish request.

use super::client_id::ClientId;
use super::fence::Fenced;
use super::{record_acked, still_pushing, Pusher, DAY};
use crate::client::{PushTarget, RunLimits, StreamError, Streamed, Upload};
use runtime::jobs::{self, PushJob};
use runtime::mq::Route;
use runtime::retry::Decision;
use runtime::state::{FileTrouble, Mark, Request, Transfer, TransferState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Restarts of one transfer (new generations after chunks of unknown
/// outcome) before it fails.
const MAX_RESTARTS: u64 = 20;

/// What the client cost a file so far: failed requests and rewinds.
#[derive(Debug, Clone, Copy)]
struct Trouble {
    failed: u64,
    rewound: u64,
}

impl Pusher {
    /// Pushes `file` of generation `t` from its committed offset, then tells
    /// the client it is complete.
    pub(super) async fn push_file(
        &self,
        job: &PushJob,
        t: &Transfer,
        target: &PushTarget,
        client: &ClientId,
        file: &str,
        fence: &Fenced,
    ) -> Decision {
        // Both reads go out together (one round trip on the multiplexed
        // connection).
        let (files, told) = tokio::join!(
            self.state.files(&t.id, t.generation),
            self.state.marked(&t.id, t.generation, Mark::FileDone(file)),
        );
        let files = match files {
            Ok(f) => f,
            Err(e) => return e.into(),
        };
        let Some(record) = files.into_iter().find(|f| f.name == file) else {
            return Decision::Done;
        };
        match told {
            Ok(true) => {
                // The client was told; a run that stopped right after (crash,
                // Redis trouble) may not have counted the file: counting is
                // idempotent.
                if let Err(e) = self.state.finish_file(&t.id, t.generation, file).await {
                    return e.into();
                }
                return match self.maybe_finish(t, target, client).await {
                    Ok(()) => Decision::Done,
                    Err(step) => step,
                };
            }
            Ok(false) => {}
            Err(e) => return e.into(),
        }
        let file_url = match target.file_url(file) {
            Ok(u) => u,
            Err(e) => return Decision::Fail(e.to_string()),
        };
        let pushed = record.offset < record.size;
        if pushed {
            let upload = Upload {
                key: record.storage_key.clone(),
                file_url: file_url.clone(),
                size: record.size,
                offset: record.offset,
                verify_offset: false,
            };
            if let Some(step) = self.push_run(job, t, client, file, upload, fence).await {
                return step;
            }
        }
        // Every chunk's outcome is known: the in-flight mark goes while the
        // client is told (one round trip less on a file's path).
        let (finished, ()) = tokio::join!(
            self.request(t, || {
                self.client()
                    .finish_file(&file_url, record.size, &record.blake2b)
            }),
            async {
                if pushed {
                    self.clear_inflight(t, file).await;
                }
            },
        );
        match finished {
            Ok(Some(_)) => {}
            // Revoked, cancelled or superseded while it failed.
            Ok(None) => return Decision::Done,
            Err(e) => {
                let refused = format!("the client refused {file}");
                return self
                    .request_failed(e, t, client, Request::File(file), &refused)
                    .await;
            }
        }
        let done = Mark::FileDone(file);
        let ((), told) = tokio::join!(
            self.client_answered(t, client),
            record_acked(|| self.state.mark(&t.id, t.generation, done, DAY * 7)),
        );
        if let Err(e) = told {
            return e.into();
        }
        if let Err(e) = record_acked(|| self.state.finish_file(&t.id, t.generation, file)).await {
            return e.into();
        }
        match self.maybe_finish(t, target, client).await {
            Ok(()) => Decision::Done,
            Err(step) => step,
        }
    }

    /// One push run of a file: `None` when the file is completely pushed
    /// (its in-flight mark left for the caller to clear), otherwise how the
    /// job ends.
    async fn push_run(
        &self,
        job: &PushJob,
        t: &Transfer,
        client: &ClientId,
        file: &str,
        mut upload: Upload,
        fence: &Fenced,
    ) -> Option<Decision> {
        // A run that died with a chunk in flight leaves this mark set: ask
        // the client what it holds before sending anything.
        let inflight = Mark::InFlight(file);
        let (fresh, before) = tokio::join!(
            self.state.mark(&t.id, t.generation, inflight, DAY),
            self.trouble(t, file),
        );
        upload.verify_offset = match fresh {
            Ok(fresh) => !fresh,
            Err(e) => return Some(e.into()),
        };
        let before = match before {
            Ok(before) => before,
            Err(e) => return Some(e.into()),
        };
        let max_failures = u64::from(self.settings.file_failures);
        let max_rewinds = u64::from(self.settings.file_rewinds);
        if before.failed >= max_failures || before.rewound >= max_rewinds {
            self.clear_inflight(t, file).await;
            return Some(Decision::Fail(self.faked_reason(file, before)));
        }
        let chunk = self.streamer.chunk_size().max(1) as u64;
        let attempts = u64::from(self.settings.policy.max_attempts);
        let limits = RunLimits {
            min_advance: self.settings.min_advance,
            // Every chunk of the run twice (once answered by an offset), and
            // the retries of a few of them.
            max_requests: (self.settings.run_bytes.div_ceil(chunk))
                .saturating_mul(2)
                .saturating_add(attempts.saturating_mul(4))
                .saturating_add(16),
            max_failures: max_failures - before.failed,
            max_rewinds: (max_rewinds - before.rewound).min(3),
            deadline: Some(tokio::time::Instant::now() + self.settings.run_time),
        };
        let mut stats = Streamed::default();
        let result = self
            .stream(t, file, &upload, &limits, &mut stats, fence)
            .await;
        // Count what the run cost the client, per file and for the breaker,
        // before deciding anything.
        if let Err(e) = self.count_trouble(t, file, &stats).await {
            return Some(e.into());
        }
        if stats.stalled > 0 {
            self.count_failures(client, stats.stalled).await;
            // An abandoned chunk may still reach the client's disk: the
            // generation stays fenced for one more chunk deadline.
            let deadline = self.client().config().chunk_deadline(chunk);
            fence.linger(tokio::time::Instant::now() + deadline);
        }
        let after = Trouble {
            failed: before.failed + stats.failures,
            rewound: before.rewound + stats.rewinds,
        };
        if result.is_err() && (after.failed >= max_failures || after.rewound >= max_rewinds) {
            self.clear_inflight(t, file).await;
            return Some(Decision::Fail(self.faked_reason(file, after)));
        }
        if stats.failures > 0 || stats.rewinds > 0 {
            tracing::debug!(transfer = %t.id, %file, requests = stats.requests, failures = stats.failures, rewinds = stats.rewinds, stalled = stats.stalled, "push run of a failing client");
        }
        match result {
            Ok(()) => None,
            Err(e) => Some(self.run_stopped(job, t, client, file, e).await),
        }
    }

    /// Streams the chunks of one run, committing each acknowledged offset.
    async fn stream(
        &self,
        t: &Transfer,
        file: &str,
        upload: &Upload,
        limits: &RunLimits,
        stats: &mut Streamed,
        fence: &Fenced,
    ) -> Result<(), StreamError> {
        let pushed = AtomicU64::new(0);
        let start_offset = upload.offset;
        let state = &self.state;
        let (id, generation) = (t.id.clone(), t.generation);
        let run_bytes = self.settings.run_bytes;
        self.streamer
            .push_file_limited(
                upload,
                limits,
                stats,
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
            .await
    }

    /// What a run that stopped short of the file's end means for the job.
    async fn run_stopped(
        &self,
        job: &PushJob,
        t: &Transfer,
        client: &ClientId,
        file: &str,
        error: StreamError,
    ) -> Decision {
        match error {
            StreamError::Abusive { abuse, .. } => {
                self.clear_inflight(t, file).await;
                let err = format!("pushing {file}: {abuse}");
                self.client_trouble(t, client, Request::File(file), &err, None)
                    .await
            }
            StreamError::Cancelled { .. } => {
                self.clear_inflight(t, file).await;
                match still_pushing(&self.state, t).await {
                    Ok(true) => {}
                    Ok(false) => return Decision::Done, // revoked, cancelled or superseded
                    Err(e) => return e.into(),
                }
                // Run budget spent: continue in a new delivery.
                let body = match jobs::encode(job) {
                    Ok(body) => body,
                    Err(e) => return Decision::Fail(e.to_string()),
                };
                match self
                    .broker
                    .publish(Route::Push, &body, &job.message_id())
                    .await
                {
                    Ok(()) => Decision::Done,
                    Err(e) => {
                        tracing::warn!(transfer = %t.id, %file, error = %e, "could not re-queue the rest of the file; retrying the delivery");
                        Decision::Retry(Duration::from_secs(1))
                    }
                }
            }
            StreamError::NeedsRestart { reason, .. } => {
                let note = format!("restarted: a chunk's outcome was unknown and the client cannot report its offset ({reason:?})");
                self.restart(t, client, file, &note).await
            }
            StreamError::Exhausted {
                last, retry_after, ..
            } => {
                self.clear_inflight(t, file).await;
                self.client_trouble(
                    t,
                    client,
                    Request::File(file),
                    &last.to_string(),
                    retry_after,
                )
                .await
            }
            StreamError::Permanent { error, .. } => {
                Decision::Fail(format!("pushing {file}: {error}"))
            }
            StreamError::Commit { source, .. } => {
                // The generation moved on (nothing left to do), or Redis
                // failed: then the chunk's outcome is known to the client
                // only, and the in-flight mark stays set so the next run
                // asks the client's offset first.
                match still_pushing(&self.state, t).await {
                    Ok(false) => Decision::Done,
                    Ok(true) | Err(_) => {
                        tracing::warn!(transfer = %t.id, %file, error = %source, "could not commit an offset; retrying later");
                        Decision::Retry(Duration::from_secs(1))
                    }
                }
            }
            e @ (StreamError::Storage { .. } | StreamError::SizeMismatch { .. }) => {
                Decision::Fail(format!("archive unreadable: {e}"))
            }
        }
    }

    /// Starts the next generation of `t` from the same archives (the client
    /// lost a chunk's answer and cannot report its offset) and queues its
    /// push jobs; the processor is not involved: the archives of the same
    /// grant and dumps are the same bytes, already stored.
    async fn restart(&self, t: &Transfer, client: &ClientId, file: &str, note: &str) -> Decision {
        // Read again: the job's copy may predate the end of the build.
        match self.state.transfer(&t.id).await {
            Ok(Some(now)) if now.generation == t.generation && now.built => {}
            // The processor is still adding archives to this generation:
            // the next one starts from the whole list.
            Ok(Some(now)) if now.generation == t.generation => {
                return Decision::Retry(Duration::from_secs(5));
            }
            Ok(_) => return Decision::Done, // the generation moved on
            Err(e) => return e.into(),
        }
        match self.state.count_restart(&t.id, DAY).await {
            Ok(n) if n > MAX_RESTARTS => {
                return Decision::Fail(format!(
                "the client lost chunk answers {n} times and cannot report its offset; giving up"
            ))
            }
            Ok(_) => {}
            Err(e) => return e.into(),
        }
        if let Some(step) = self.client_restarts_over(t, client).await {
            return step;
        }
        let new = match self
            .state
            .restart_generation(&t.id, t.generation, note)
            .await
        {
            Ok(Some(new)) => new,
            Ok(None) => return Decision::Done, // the generation moved on
            Err(e) => return e.into(),
        };
        tracing::warn!(transfer = %t.id, old = t.generation, new, %file, "transfer restarted from the same archives: the client must start again");
        let files = match self.state.files(&t.id, new).await {
            Ok(files) => files,
            Err(e) => return e.into(),
        };
        let jobs = PushJob::for_files(&t.id, new, files.iter().map(|f| f.name.as_str()));
        for job in jobs {
            let published = match jobs::encode(&job) {
                Ok(body) => self
                    .broker
                    .publish(Route::Push, &body, &job.message_id())
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = published {
                // No job carries the new generation: it fails rather than
                // waits for ever.
                let reason = format!("could not queue the restart: {e}");
                let restarted = Transfer {
                    generation: new,
                    ..t.clone()
                };
                self.fail(&restarted, &reason).await;
                return Decision::Done;
            }
        }
        Decision::Done
    }

    /// The file's failures and rewinds counted so far.
    async fn trouble(
        &self,
        t: &Transfer,
        file: &str,
    ) -> Result<Trouble, runtime::state::StateError> {
        let (id, generation) = (t.id.as_str(), t.generation);
        let (failed, rewound) = tokio::try_join!(
            self.state
                .file_trouble(id, generation, file, FileTrouble::Failures),
            self.state
                .file_trouble(id, generation, file, FileTrouble::Rewinds),
        )?;
        Ok(Trouble { failed, rewound })
    }

    /// Counts the failures and rewinds of a run.
    async fn count_trouble(
        &self,
        t: &Transfer,
        file: &str,
        stats: &Streamed,
    ) -> Result<(), runtime::state::StateError> {
        let (id, generation) = (t.id.as_str(), t.generation);
        for (kind, n) in [
            (FileTrouble::Failures, stats.failures),
            (FileTrouble::Rewinds, stats.rewinds),
        ] {
            for _ in 0..n {
                self.state
                    .add_file_trouble(id, generation, file, kind, DAY)
                    .await?;
            }
        }
        Ok(())
    }

    /// Clears the in-flight mark after a run whose chunks' outcomes are all
    /// known. Left set (Redis trouble), the next run only asks the client's
    /// offset first.
    async fn clear_inflight(&self, t: &Transfer, file: &str) {
        if let Err(e) = self
            .state
            .unmark(&t.id, t.generation, Mark::InFlight(file))
            .await
        {
            tracing::debug!(transfer = %t.id, %file, error = %e, "could not clear the in-flight mark; the next run asks the offset first");
        }
    }

    /// Why a file's push failed for good after its client failed, stalled
    /// or faked its offset too often.
    fn faked_reason(&self, file: &str, trouble: Trouble) -> String {
        let Trouble { failed, rewound } = trouble;
        if rewound >= u64::from(self.settings.file_rewinds) {
            format!("pushing {file}: the client reported holding less than it acknowledged {rewound} times (limit ALIAS_PUSH_FILE_REWINDS); its offsets cannot be trusted")
        } else {
            format!("pushing {file}: {failed} requests failed or claimed no real progress (limit ALIAS_PUSH_FILE_FAILURES); the client fakes its offset or keeps failing")
        }
    }
}
