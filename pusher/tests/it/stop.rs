//! A request retried in place stops once its transfer is no longer wanted
//! (revoked, cancelled, superseded): the client hears nothing more of it.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use runtime::jobs::{self, PushJob};
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
