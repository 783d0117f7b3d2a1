//! The fault switches, set at start and at run time.

use crate::*;
use std::time::{Duration, Instant};

#[tokio::test]
async fn every_nth_request_fails_with_retry_after() {
    let f = Fixture::start(Faults {
        fail_every: 3,
        retry_after: Some(7),
        ..Faults::none()
    });
    let id = f.started().await;
    assert_eq!(f.chunk(&id, "a.zip", "0-2", b"abc").await.status(), 200);
    let r = f.chunk(&id, "a.zip", "3-5", b"def").await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "7");
    // Nothing was written by the failed request.
    assert_eq!(f.head(&id, "a.zip").await, (200, Some(3)));
    assert_eq!(f.chunk(&id, "a.zip", "3-5", b"def").await.status(), 200);
    assert_eq!(f.head(&id, "a.zip").await.0, 503);
    let c = f.sink.counters();
    assert_eq!((c.requests, c.injected_failures, c.chunks), (6, 2, 2));
    assert_eq!(f.sink.read_file(&id, "a.zip").unwrap(), b"abcdef");
}

#[tokio::test]
async fn dead_client_and_runtime_switches() {
    let f = Fixture::start(Faults {
        dead: true,
        ..Faults::none()
    });
    let id = contract_hash();
    let r = f.start_transfer(&id, &grant_token()).await;
    assert_eq!(r.status(), 500);
    assert!(f.sink.transfers().is_empty());

    // Switch the faults off over HTTP, as a test in another process would.
    let r = f
        .http
        .post(f.url("/sink/faults"))
        .json(&serde_json::json!({"delay_ms": 300}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let now: Faults = f
        .http
        .get(f.url("/sink/faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        now,
        Faults {
            delay_ms: 300,
            ..Faults::none()
        }
    );
    let started = Instant::now();
    f.started().await;
    assert!(started.elapsed() >= Duration::from_millis(300));

    // Unknown switches are refused.
    let r = f
        .http
        .post(f.url("/sink/faults"))
        .json(&serde_json::json!({"explode": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn dropped_connections_keep_the_bytes() {
    let f = Fixture::start(Faults::none());
    let id = f.started().await;
    f.sink.set_faults(Faults {
        drop_every: 2,
        ..Faults::none()
    });
    assert_eq!(f.chunk(&id, "a.zip", "0-2", b"abc").await.status(), 200);
    // The second chunk is written, then the connection is closed unanswered.
    let err = f
        .http
        .put(f.sink.file_url(&id, "a.zip"))
        .header("Content-Type", "application/octet-stream")
        .header("Range", "3-5")
        .body(&b"def"[..])
        .send()
        .await
        .expect_err("no answer");
    assert!(!err.is_connect(), "{err:?}");
    assert_eq!(f.head(&id, "a.zip").await, (200, Some(6)));
    assert_eq!(f.sink.counters().dropped, 1);
    assert_eq!(
        f.sink.requests().iter().filter(|r| r.status == 0).count(),
        1
    );
    // Sending it again is harmless: the same bytes at the same offset.
    assert_eq!(f.chunk(&id, "a.zip", "3-5", b"def").await.status(), 200);
    assert_eq!(f.sink.read_file(&id, "a.zip").unwrap(), b"abcdef");
}
