//! A request retried in place stops once its transfer is no longer wanted
//! (revoked, cancelled, superseded): the client hears nothing more of it.
//! A pusher told to stop does not sit out a failing client's backoff: it
//! hands the job back at once.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use runtime::jobs::{self, PushJob};
use runtime::mq::{Queue, Route};
use runtime::state::{State, TransferState};
use runtime::worker::{Disposition, JobHandler};

use crate::example;

/// A client whose start requests all fail (503, retryable), and which has
/// the transfer cancelled while it answers the first one, as a user
/// revoking at that moment would. Returns its address and its count of
/// start requests.
fn cancelling_client(state: State, id: String) -> (std::net::SocketAddr, Arc<AtomicU32>) {
    let starts = Arc::new(AtomicU32::new(0));
    let counted = starts.clone();
    let addr = crate::serve(move |cfg| {
        let (state, id, counted) = (state.clone(), id.clone(), counted.clone());
        cfg.route(
            "/alias/push/{id}",
            actix_web::web::put().to(move || {
                let (state, id, counted) = (state.clone(), id.clone(), counted.clone());
                async move {
                    if counted.fetch_add(1, Ordering::SeqCst) == 0 {
                        state.cancel(&id, "revoked by the user").await.unwrap();
                    }
                    actix_web::HttpResponse::ServiceUnavailable().finish()
                }
            }),
        );
    });
    (addr, starts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_start_request_stops_when_the_transfer_is_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let (state, _, storage, pusher) = crate::push_worker(dir.path(), "stop", &[]);
    let id = example("grant_contract_hash");
    let (addr, starts) = cancelling_client(state.clone(), id.clone());
    let file = crate::stored_archive(&storage, &id, "a.zip", 1, 3).await;
    let push_url = format!("http://{addr}/alias/push/{id}");
    crate::pushing_transfer(&state, &id, &example("grant_token"), &push_url, &[file]).await;
    let job = PushJob {
        transfer: id.clone(),
        generation: 1,
        file: Some("a.zip".into()),
    };
    let step = pusher.handle(&jobs::encode(&job).unwrap(), 1).await;
    assert_eq!(step, Disposition::Ack);
    // The first attempt was answered after the cancellation; no other was
    // made (the request's limits allow several).
    assert_eq!(starts.load(Ordering::SeqCst), 1);
    let t = state.transfer(&id).await.unwrap().unwrap();
    assert_eq!(t.state, TransferState::Cancelled, "{t:?}");
}

/// A client whose start requests all fail with 503 and `Retry-After: 50`
/// (a wait far longer than a shutdown should take); each request is told
/// on `arrived`. Returns its address and its count of start requests.
fn unavailable_client(
    arrived: tokio::sync::mpsc::UnboundedSender<()>,
) -> (std::net::SocketAddr, Arc<AtomicU32>) {
    let starts = Arc::new(AtomicU32::new(0));
    let counted = starts.clone();
    let addr = crate::serve(move |cfg| {
        let (arrived, counted) = (arrived.clone(), counted.clone());
        cfg.route(
            "/alias/push/{id}",
            actix_web::web::put().to(move || {
                let (arrived, counted) = (arrived.clone(), counted.clone());
                async move {
                    counted.fetch_add(1, Ordering::SeqCst);
                    let _ = arrived.send(());
                    actix_web::HttpResponse::ServiceUnavailable()
                        .insert_header(("Retry-After", "50"))
                        .finish()
                }
            }),
        );
    });
    (addr, starts)
}

#[actix_web::test]
async fn a_stopping_pusher_hands_back_a_job_waiting_on_a_failing_client() {
    let dir = tempfile::tempdir().unwrap();
    let (config, services) = crate::push_services(dir.path(), "stopping", &[]);
    let (state, broker) = (services.state.clone(), services.broker.clone());
    let id = example("grant_contract_hash");
    let (tx, mut arrived) = tokio::sync::mpsc::unbounded_channel();
    let (addr, starts) = unavailable_client(tx);
    let file = crate::stored_archive(&services.storage, &id, "a.zip", 1, 3).await;
    let push_url = format!("http://{addr}/alias/push/{id}");
    crate::pushing_transfer(&state, &id, &example("grant_token"), &push_url, &[file]).await;
    let worker = pusher::start_with(&config, services).unwrap();
    let job = PushJob {
        transfer: id.clone(),
        generation: 1,
        file: Some("a.zip".into()),
    };
    broker
        .publish(Route::Push, &jobs::encode(&job).unwrap(), &job.message_id())
        .await
        .unwrap();
    // The first start request failed: the job now waits 50 s before the
    // next one. The worker is told to stop.
    arrived.recv().await.unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(120), worker.shutdown())
        .await
        .expect("the shutdown never ended");
    assert_eq!(
        starts.load(Ordering::SeqCst),
        1,
        "the stopping pusher sat out the client's backoff and asked again"
    );
    // Handed back, not dropped: the job waits in the retry queue, and the
    // transfer is still to be pushed.
    assert_eq!(
        broker
            .queue_depth(Queue::Delayed(Route::Push))
            .await
            .unwrap(),
        1
    );
    let t = state.transfer(&id).await.unwrap().unwrap();
    assert_eq!(t.state, TransferState::Pushing, "{t:?}");
}
