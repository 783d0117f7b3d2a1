//! A dead-lettered job of a failed generation that an operator replayed.

use super::{target_of, Pusher};
use runtime::jobs::{self, ProcessJob, PushJob};
use runtime::mq::Route;
use runtime::retry::Decision;
use runtime::state::{Mark, Request, Transfer, TransferState};
use std::time::Duration;

impl Pusher {
    /// A dead-lettered job of a failed generation came back (an operator
    /// replayed it, once the client recovered): the generation runs again
    /// with fresh retry budgets, a closed breaker and the jobs of its other
    /// files re-queued. Returns the transfer as it is now, or `None` when
    /// the job is not such a replay (a late copy of a failed generation's
    /// job is dropped, as before).
    pub(super) async fn revive(
        &self,
        job: &PushJob,
        t: &Transfer,
    ) -> Result<Option<Transfer>, Decision> {
        let dead = Mark::DeadLetter(job.file.as_deref());
        if !self.state.marked(&t.id, t.generation, dead).await? {
            return Ok(None);
        }
        let files = self.state.files(&t.id, t.generation).await?;
        let mut requests: Vec<Request<'_>> = files.iter().map(|f| Request::File(&f.name)).collect();
        requests.extend([Request::Start, Request::Finish]);
        for request in requests {
            self.state
                .forget_retrying(&t.id, t.generation, request)
                .await?;
        }
        if let Ok(target) = target_of(t) {
            let client = self.client_id(t, &target).await?.breaker();
            self.state.close_breaker(&client).await?;
            self.state.client_success(&client).await?;
        }
        if !t.built {
            return self.rebuild(t, dead).await;
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
            self.state.unmark(&t.id, t.generation, dead).await?;
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
            let body = jobs::encode(other).map_err(|e| Decision::Fail(e.to_string()))?;
            self.broker
                .publish(Route::Push, &body, &other.message_id())
                .await
                .map_err(|_| Decision::Retry(Duration::from_secs(1)))?;
        }
        self.state.unmark(&t.id, t.generation, dead).await?;
        Ok(self.state.transfer(&t.id).await?)
    }

    /// A replayed generation that failed before all its archives were
    /// built goes back to the processor: it builds the same archives again
    /// and queues every push, this job's file among them.
    async fn rebuild(&self, t: &Transfer, dead: Mark<'_>) -> Result<Option<Transfer>, Decision> {
        if self
            .state
            .transition(
                &t.id,
                t.generation,
                &[TransferState::Failed],
                TransferState::Processing,
                None,
            )
            .await?
        {
            tracing::info!(transfer = %t.id, generation = t.generation, "a replayed job sends the failed generation back to its build");
            let job = ProcessJob {
                transfer: t.id.clone(),
                generation: t.generation,
            };
            let body = jobs::encode(&job).map_err(|e| Decision::Fail(e.to_string()))?;
            self.broker
                .publish(Route::Process, &body, &job.message_id())
                .await
                .map_err(|_| Decision::Retry(Duration::from_secs(1)))?;
        }
        self.state.unmark(&t.id, t.generation, dead).await?;
        Ok(None)
    }
}
