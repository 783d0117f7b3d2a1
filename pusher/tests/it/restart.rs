//! The restart rule through the push worker itself: a client without
//! offset queries (the reference client) that loses a chunk's answer gets
//! a new generation, pushed from the archives already stored. The
//! processor is not asked to build anything again: no process job is
//! queued, and the new generation's records are the old ones.

use std::time::Duration;

use bytes::Bytes;
use runtime::jobs::{self, PushJob};
use runtime::mq::Route;
use runtime::state::{FileRecord, TransferState};
use runtime::worker::{Disposition, JobHandler};
use sink::{Faults, Sink, SinkConfig};

use crate::example;

/// Runs one delivery of `job` through the pusher.
async fn deliver(pusher: &pusher::worker::Pusher, job: &PushJob) -> Disposition {
    pusher.handle(&jobs::encode(job).unwrap(), 1).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_pushes_the_stored_archives_without_the_processor() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut sink_config = SinkConfig::new(dirs.0.path())
        .with_client_key(&sink::client_key_of(&example("grant_token")).unwrap());
    // The reference client: no offset queries; the second chunk's answer
    // is lost.
    sink_config.faults = Faults {
        reference_mode: true,
        drop_every: 2,
        ..Faults::none()
    };
    let (_, sink) = Sink::start(sink_config).unwrap();
    let (state, broker, storage, pusher) = crate::push_worker(
        dirs.1.path(),
        "restart",
        &[("ALIAS_PUSH_CHUNK", "65536"), ("ALIAS_LEASE_SECS", "2")],
    );

    // A transfer whose generation 1 is pushing one stored archive.
    let id = example("grant_contract_hash");
    let push_url = format!("{}{id}", sink.base_url());
    let data: Vec<u8> = (0..300 * 1024u32).map(|i| (i % 251) as u8).collect();
    let info = storage
        .put_bytes("transfers/t/1/root.zip", Bytes::from(data.clone()))
        .await
        .unwrap();
    let record = FileRecord {
        name: "root.zip".into(),
        scope: "google.photos".into(),
        storage_key: "transfers/t/1/root.zip".into(),
        size: info.size,
        blake2b: info.blake2b_b64(),
        offset: 0,
        finished: false,
    };
    crate::pushing_transfer(
        &state,
        &id,
        &example("grant_token"),
        &push_url,
        std::slice::from_ref(&record),
    )
    .await;

    // The first delivery loses a chunk's answer and restarts the transfer.
    let job = PushJob {
        transfer: id.clone(),
        generation: 1,
        file: Some("root.zip".into()),
    };
    assert_eq!(deliver(&pusher, &job).await, Disposition::Ack);
    let t = state.transfer(&id).await.unwrap().unwrap();
    assert_eq!(
        (t.generation, t.state),
        (2, TransferState::Pushing),
        "{t:?}"
    );
    assert_eq!(state.files(&id, 2).await.unwrap(), vec![record]);
    // Nothing for the processor; the new generation's push job is queued.
    assert_eq!(broker.queue_depth(Route::Process).await.unwrap(), 0);
    assert_eq!(broker.queue_depth(Route::Push).await.unwrap(), 1);
    let mut consumer = broker.consume(Route::Push, 1, "test").await.unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let next: PushJob = jobs::decode(delivery.body()).unwrap();
    assert_eq!(
        next,
        PushJob {
            generation: 2,
            ..job.clone()
        }
    );
    delivery.ack().await.unwrap();

    // The network heals: generation 2 starts again at the client and
    // delivers the same bytes.
    sink.set_faults(Faults::reference());
    assert_eq!(deliver(&pusher, &next).await, Disposition::Ack);
    let t = state.transfer(&id).await.unwrap().unwrap();
    assert_eq!((t.generation, t.state), (2, TransferState::Done), "{t:?}");
    assert!(sink.counters().starts >= 2);
    assert_eq!(broker.queue_depth(Route::Process).await.unwrap(), 0);
}
