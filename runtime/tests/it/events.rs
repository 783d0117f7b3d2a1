//! Transfer events on Redis: what goes over pub/sub is the event's kind
//! alone (no record, so no grant and no push URL broadcast to every
//! process), and a watcher gets the record its process's hub reads; an
//! event in an earlier version's form (the whole record as JSON) still
//! reaches the watcher during a rolling upgrade.

use crate::redis_ha::grant;
use futures_util::StreamExt;
use runtime::state::{Intake, State, TransferEvent, TransferState};
use std::time::Duration;

const TTL: Duration = Duration::from_secs(60);

fn redis_url() -> String {
    std::env::var("ALIAS_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_carries_its_kind_only_and_a_watcher_gets_the_record() {
    let ns = format!("events-{}", uuid::Uuid::new_v4().simple());
    let s = State::connect(&redis_url(), &ns, TTL).await.unwrap();
    let client = redis::Client::open(redis_url()).unwrap();
    let mut raw = client.get_async_pubsub().await.unwrap();
    raw.psubscribe(format!("{ns}:events:*")).await.unwrap();
    let mut published = raw.into_on_message();

    s.set_binding("u", "bind").await.unwrap();
    let taken = s
        .take_grant(&grant("u", "c1", 1.0, "grant-token-of-u"))
        .await
        .unwrap();
    assert!(matches!(taken, Intake::Begun { .. }), "{taken:?}");
    let mut watcher = s.subscribe("c1");
    assert!(s
        .transition(
            "c1",
            1,
            &[TransferState::Accepted],
            TransferState::Processing,
            None
        )
        .await
        .unwrap());

    // On the wire: `accepted` (the intake), then `processing`, each its
    // kind alone.
    let mut kinds = Vec::new();
    while kinds.len() < 2 {
        let msg = tokio::time::timeout(Duration::from_secs(10), published.next())
            .await
            .expect("an event published")
            .unwrap();
        assert_eq!(msg.get_channel_name(), format!("{ns}:events:c1"));
        kinds.push(msg.get_payload::<String>().unwrap());
    }
    assert_eq!(kinds, ["accepted", "processing"]);

    // The watcher: the kind, with the record as it is now (`accepted`
    // may come first: the hub may take it after the subscription).
    let event = loop {
        let event = tokio::time::timeout(Duration::from_secs(10), watcher.recv())
            .await
            .expect("the watcher told")
            .unwrap();
        if event.kind != "accepted" {
            break event;
        }
    };
    assert_eq!(event.kind, "processing");
    assert_eq!(event.transfer.id, "c1");
    assert_eq!(event.transfer.state, TransferState::Processing);
    assert_eq!(event.transfer.generation, 1);

    // An earlier version's publisher sends the whole event: passed on.
    let mut legacy = event.clone();
    legacy.kind = "from-an-older-worker".into();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: i64 = redis::cmd("PUBLISH")
        .arg(format!("{ns}:events:c1"))
        .arg(serde_json::to_string(&legacy).unwrap())
        .query_async(&mut conn)
        .await
        .unwrap();
    let passed: TransferEvent = tokio::time::timeout(Duration::from_secs(10), watcher.recv())
        .await
        .expect("the older event passed on")
        .unwrap();
    assert_eq!(passed.kind, "from-an-older-worker");
    assert_eq!(passed.transfer.state, TransferState::Processing);
    s.purge_namespace().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_events_reaches_a_watcher_in_order() {
    let ns = format!("events-{}", uuid::Uuid::new_v4().simple());
    let s = State::connect(&redis_url(), &ns, TTL).await.unwrap();
    s.set_binding("u", "bind").await.unwrap();
    s.take_grant(&grant("u", "c1", 1.0, "g1")).await.unwrap();
    let mut watcher = s.subscribe("c1");
    // Twenty events published back to back, each read by the hub.
    let sent: Vec<String> = (0..20).map(|i| format!("step-{i}")).collect();
    for kind in &sent {
        s.emit("c1", kind).await.unwrap();
    }
    let mut got = Vec::new();
    while got.len() < sent.len() {
        let event = tokio::time::timeout(Duration::from_secs(10), watcher.recv())
            .await
            .expect("every event delivered")
            .unwrap();
        if event.kind != "accepted" {
            assert_eq!(event.transfer.id, "c1");
            got.push(event.kind);
        }
    }
    assert_eq!(got, sent);
    s.purge_namespace().await.unwrap();
}
