//! What the workers have done for one transfer generation, kept beside the
//! transfer so that a redelivered or resumed job carries on where the last
//! one stopped: the processor's "built", the pusher's "started", "file
//! done", "chunk in flight" and "dead-lettered" marks, the start of each
//! request's retry budget, per-file failure and rewind counters, and the
//! transfer's restarts. The names are formed here only; the Redis layout
//! is unchanged (`flag:built:{id}:{gen}`, `flag:started:…`,
//! `flag:filedone:{id}:{gen}:{file}`, `flag:inflight:…`,
//! `flag:dead:{id}:{gen}:{file|-}`, `seen:job:{id}:{gen}:{start|finish|file}`,
//! `count:pushfail:{id}:{gen}:{file}`, `count:pushrewind:…`,
//! `count:restarts:{id}`; the retries the pusher scheduled,
//! `count:retries:{id}:{gen}` and `number:retries:{id}:{gen}`).

use super::keys::{Key, Primitives};
use super::StateError;
use std::time::Duration;

/// A retry of a generation's pushes the pusher scheduled after the client
/// failed: how many failures led to retries so far, and when the next try
/// is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryNote {
    /// Failures followed by a retry (the next try is attempt
    /// `failures + 1`).
    pub failures: u64,
    /// When the next try is due (ms since the epoch).
    pub next_ms: u64,
}

fn retries_key(id: &str, generation: u64) -> Key {
    Key::new(format!("retries:{id}:{generation}"))
}

/// A mark on a transfer generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark<'a> {
    /// The processor built (or reused) the generation's archives and
    /// recorded them.
    Built,
    /// The client accepted the generation's start request.
    Started,
    /// The client was told this file is complete.
    FileDone(&'a str),
    /// A push run of this file may have a chunk in flight: the next run
    /// asks the client's offset first.
    InFlight(&'a str),
    /// A job of this file (`None`: the start/finish job of a generation
    /// without archives) went to the dead-letter queue.
    DeadLetter(Option<&'a str>),
}

/// A request of a generation to the client, whose retries share one budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request<'a> {
    /// The start request.
    Start,
    /// The finish request.
    Finish,
    /// The pushes of one file.
    File(&'a str),
}

/// What a client did wrong while a file was pushed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileTrouble {
    /// Failed requests or requests without real progress.
    Failures,
    /// Offsets reported short of what the client had acknowledged.
    Rewinds,
}

fn mark_key(id: &str, generation: u64, mark: Mark<'_>) -> Key {
    Key::new(match mark {
        Mark::Built => format!("built:{id}:{generation}"),
        Mark::Started => format!("started:{id}:{generation}"),
        Mark::FileDone(file) => format!("filedone:{id}:{generation}:{file}"),
        Mark::InFlight(file) => format!("inflight:{id}:{generation}:{file}"),
        Mark::DeadLetter(file) => format!("dead:{id}:{generation}:{}", file.unwrap_or("-")),
    })
}

fn budget_key(id: &str, generation: u64, request: Request<'_>) -> Key {
    Key::new(match request {
        Request::Start => format!("job:{id}:{generation}:start"),
        Request::Finish => format!("job:{id}:{generation}:finish"),
        Request::File(file) => format!("job:{id}:{generation}:{file}"),
    })
}

fn trouble_key(id: &str, generation: u64, file: &str, trouble: FileTrouble) -> Key {
    Key::new(match trouble {
        FileTrouble::Failures => format!("pushfail:{id}:{generation}:{file}"),
        FileTrouble::Rewinds => format!("pushrewind:{id}:{generation}:{file}"),
    })
}

/// The marks, budgets and counters of transfer generations (see the module
/// documentation), written once over the store's primitives
/// (`Primitives`).
#[async_trait::async_trait]
pub trait GenerationMarks: Primitives {
    /// Whether `mark` is set on generation `generation` of transfer `id`.
    async fn marked(&self, id: &str, generation: u64, mark: Mark<'_>) -> Result<bool, StateError> {
        self.raw_flag(&mark_key(id, generation, mark)).await
    }

    /// Sets `mark` for `ttl`; true when it was not set before.
    async fn mark(
        &self,
        id: &str,
        generation: u64,
        mark: Mark<'_>,
        ttl: Duration,
    ) -> Result<bool, StateError> {
        self.raw_set_flag(&mark_key(id, generation, mark), ttl)
            .await
    }

    /// Clears `mark`.
    async fn unmark(&self, id: &str, generation: u64, mark: Mark<'_>) -> Result<(), StateError> {
        self.raw_clear_flag(&mark_key(id, generation, mark)).await
    }

    /// When the retries of `request` began (ms since the epoch): now on the
    /// first call, the first call's time on later ones; kept for `ttl`.
    async fn retrying_since(
        &self,
        id: &str,
        generation: u64,
        request: Request<'_>,
        ttl: Duration,
    ) -> Result<u64, StateError> {
        self.raw_first_seen(&budget_key(id, generation, request), ttl)
            .await
    }

    /// Gives `request` a fresh retry budget.
    async fn forget_retrying(
        &self,
        id: &str,
        generation: u64,
        request: Request<'_>,
    ) -> Result<(), StateError> {
        self.raw_forget_seen(&budget_key(id, generation, request))
            .await
    }

    /// How often the client showed `trouble` while `file` was pushed.
    async fn file_trouble(
        &self,
        id: &str,
        generation: u64,
        file: &str,
        trouble: FileTrouble,
    ) -> Result<u64, StateError> {
        self.raw_counted(&trouble_key(id, generation, file, trouble))
            .await
    }

    /// Counts one more `trouble` of `file` (kept `window`); returns the count.
    async fn add_file_trouble(
        &self,
        id: &str,
        generation: u64,
        file: &str,
        trouble: FileTrouble,
        window: Duration,
    ) -> Result<u64, StateError> {
        self.raw_count(&trouble_key(id, generation, file, trouble), window)
            .await
    }

    /// Notes that the client failed and the pusher retries generation
    /// `generation` of transfer `id` at `next_ms` (kept `ttl`); returns the
    /// note.
    async fn note_retry(
        &self,
        id: &str,
        generation: u64,
        next_ms: u64,
        ttl: Duration,
    ) -> Result<RetryNote, StateError> {
        let key = retries_key(id, generation);
        let failures = self.raw_count(&key, ttl).await?;
        self.raw_set_number(&key, next_ms, ttl).await?;
        Ok(RetryNote { failures, next_ms })
    }

    /// The retry noted for the generation, if the client is failing.
    async fn retry_note(&self, id: &str, generation: u64) -> Result<Option<RetryNote>, StateError> {
        let key = retries_key(id, generation);
        let failures = self.raw_counted(&key).await?;
        if failures == 0 {
            return Ok(None);
        }
        Ok(self
            .raw_number(&key)
            .await?
            .map(|next_ms| RetryNote { failures, next_ms }))
    }

    /// Forgets the generation's retries (the client answered).
    async fn clear_retry(&self, id: &str, generation: u64) -> Result<(), StateError> {
        let key = retries_key(id, generation);
        // Two keys of their own: both requests go out together.
        let (count, number) = tokio::join!(self.raw_reset_count(&key), self.raw_clear_number(&key));
        count.and(number)
    }

    /// Counts one more restart of transfer `id` (kept `window`); returns
    /// the count.
    async fn count_restart(&self, id: &str, window: Duration) -> Result<u64, StateError> {
        self.raw_count(&Key::new(format!("restarts:{id}")), window)
            .await
    }
}
