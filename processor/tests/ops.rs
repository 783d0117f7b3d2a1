//! The processor as operators run it: the binary against the local Redis
//! and RabbitMQ, its operations endpoints, and a clean stop on SIGTERM.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::{Duration, Instant};

#[tokio::test]
async fn the_worker_serves_health_readiness_and_metrics_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ns = format!("ops{}", uuid::Uuid::new_v4().simple());
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_alias-processor"))
        .env("ALIAS_NAMESPACE", &ns)
        .env("ALIAS_STORAGE_URL", dir.path().to_str().unwrap())
        .env("ALIAS_METRICS_LISTEN", format!("127.0.0.1:{port}"))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http.get(format!("{base}/readyz")).send().await {
            if r.status() == 200 {
                let body: serde_json::Value = r.json().await.unwrap();
                assert_eq!(body["redis"], true);
                assert_eq!(body["rabbitmq"], true);
                break;
            }
        }
        assert!(Instant::now() < deadline, "the processor never got ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let health = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let metrics = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(metrics
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("text/plain"));

    let pid = child.id().unwrap();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("stops on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");

    // Leave nothing behind in the shared broker.
    let broker = runtime::mq::Broker::connect("amqp://guest:guest@127.0.0.1:5672/%2f", &ns)
        .await
        .unwrap();
    broker.delete_topology().await;
    broker.close().await;
}
