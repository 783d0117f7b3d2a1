//! The restart rule through the push worker itself: a client without
//! offset queries (the reference client) that loses a chunk's answer gets
//! a new generation, pushed from the archives already stored. The
//! processor is not asked to build anything again: no process job is
//! queued, and the new generation's records are the old ones.

use std::time::Duration;

use bytes::Bytes;
use runtime::config::Config;
use runtime::jobs::{self, PushJob};
use runtime::mq::{Broker, Route};
use runtime::state::{FileRecord, NewTransfer, State, TransferState};
use runtime::storage::{S3Settings, Storage};
use runtime::worker::{Disposition, JobHandler};
use sink::{Faults, Sink, SinkConfig};

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../protocol/tests/data/protocol-examples.json"
);

fn example(key: &str) -> String {
    let text = std::fs::read_to_string(VECTORS).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json[key].as_str().unwrap().to_owned()
}

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
    let storage = Storage::from_url(
        &format!("file://{}", dirs.1.path().display()),
        &S3Settings::default(),
    )
    .unwrap();
    let ns = format!("restart-{}", uuid::Uuid::new_v4().simple());
    let state = State::in_memory(&ns, Duration::from_secs(60));
    let broker = Broker::in_memory(&ns).unwrap();
    let config = Config::from_pairs(&[
        ("ALIAS_NAMESPACE", ns.as_str()),
        ("ALIAS_PUSH_ALLOW", "127.0.0.0/8"),
        ("ALIAS_PUSH_CHUNK", "65536"),
        ("ALIAS_LEASE_SECS", "2"),
    ])
    .unwrap();
    let pusher = pusher::pusher(&config, state.clone(), broker.clone(), storage.clone()).unwrap();

    // A transfer whose generation 1 is pushing one stored archive.
    let id = example("grant_contract_hash");
    let grant = example("grant_token");
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
    let new = NewTransfer {
        grant_token: &grant,
        grant_hash: "h",
        user: "u",
        push_url: &push_url,
        revoked: false,
    };
    assert_eq!(state.begin_transfer(&id, &new).await.unwrap().generation, 1);
    assert!(state
        .transition(
            &id,
            1,
            &[TransferState::Accepted],
            TransferState::Pushing,
            None
        )
        .await
        .unwrap());
    state
        .set_files(&id, 1, std::slice::from_ref(&record))
        .await
        .unwrap();

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
