//! The embedded mode end to end: the demo against an in-process data bank
//! (memory state, in-process queue), `alias-bank all` as a process, and
//! the previewer the embedded bank runs beside its processor.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bank::demo::{DemoOptions, Remote};

#[actix_web::test]
async fn the_demo_delivers_verified_archives_with_nothing_installed() {
    let dir = tempfile::tempdir().unwrap();
    let options = DemoOptions {
        dir: dir.path().to_owned(),
        dump_bytes: 3 << 20,
        seed: 11,
        remote: None,
        progress: false,
    };
    let mut out = Vec::new();
    let report = bank::demo::run(&options, &mut out).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(report.state, "done", "{text}");
    let scopes: Vec<_> = report.files.iter().map(|f| f.scope.as_str()).collect();
    assert_eq!(
        scopes,
        [
            "google.my_activity.search.*",
            "google.photos.*",
            "google.youtube.watch_history.*"
        ],
        "{text}"
    );
    for f in &report.files {
        assert!(f
            .path
            .starts_with(dir.path().canonicalize().unwrap().join("client")));
        assert!(f.entries >= 2, "{f:?}");
        assert!(text.contains(&f.name));
    }
    assert!(text.contains("state in memory, queue in-process"), "{text}");
    assert!(dir.path().join("keys/user.key").exists());
    assert!(dir.path().join("grant.token").exists());
}

/// `alias-bank all` with no Redis or RabbitMQ configured serves a working
/// data bank; the demo runs against it as against a deployment.
#[actix_web::test]
async fn alias_bank_all_is_a_whole_data_bank_in_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let bank_dir = dir.path().join("bank");
    std::fs::create_dir_all(&bank_dir).unwrap();
    // The client the pushes go to.
    let sink_dir = dir.path().join("client");
    // The demo makes its client key once the sink runs: any client.
    let mut sink_config = sink::SinkConfig::new(&sink_dir);
    sink_config.any_client = true;
    let (sink_addr, sink) = sink::Sink::start(sink_config).unwrap();
    // A free port for the gateway.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_alias-bank"))
        .arg("all")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("ALIAS_LISTEN", &listen)
        .env("ALIAS_STORAGE_URL", bank_dir.to_str().unwrap())
        .env("ALIAS_PUSH_ALLOW", "127.0.0.0/8")
        .env("ALIAS_NAMESPACE", "allinone")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let gateway = format!("http://{listen}");
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(format!("{gateway}/readyz")).send().await {
            if r.status().is_success() {
                break;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "alias-bank all never got ready"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let options = DemoOptions {
        dir: dir.path().join("demo"),
        dump_bytes: 2 << 20,
        seed: 5,
        remote: Some(Remote {
            gateway: gateway.clone(),
            sink: format!("http://{sink_addr}"),
            sink_dir: sink_dir.clone(),
        }),
        progress: false,
    };
    let mut out = Vec::new();
    let report = bank::demo::run(&options, &mut out).await.unwrap();
    assert_eq!(report.state, "done", "{}", String::from_utf8_lossy(&out));
    assert_eq!(report.files.len(), 3);
    assert_eq!(sink.counters().transfer_finishes, 1);
    // The workers' metrics are served by the gateway of the one process.
    let metrics = http
        .get(format!("{gateway}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"alias_jobs_total{outcome="ack",queue="process"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"alias_worker_bytes_total{kind="pushed"}"#),
        "{metrics}"
    );

    // SIGTERM: a graceful stop.
    let pid = child.id().unwrap();
    std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let status = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait())
        .await
        .expect("alias-bank all stops on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
    sink.stop();
}

/// The embedded data bank takes preview jobs (the consent page's "Show
/// what they would receive" needs a previewer beside the processor): a
/// preview queued as the gateway queues it is answered, here for a user
/// with no export (every scope missing).
#[actix_web::test]
async fn the_embedded_bank_answers_previews() {
    use runtime::jobs::{self, PreviewJob};
    use runtime::mq::Route;
    use runtime::state::{PreviewKey, PreviewLimits, PreviewStart, PreviewState};

    let dir = tempfile::tempdir().unwrap();
    let config = bank::demo::embedded_config(dir.path()).unwrap();
    let bank = bank::Bank::start(config).await.unwrap();
    let key = PreviewKey::new("user-without-dumps", "contract-hash").unwrap();
    let scopes = ["google.my_activity.search.*".to_owned()];
    let PreviewStart::Started(pending) = bank
        .app
        .state
        .start_preview(&key, &scopes, &PreviewLimits::DEFAULT)
        .await
        .unwrap()
    else {
        panic!("the preview did not start");
    };
    let job = PreviewJob {
        user: key.user().to_owned(),
        contract: key.contract().to_owned(),
        id: pending.id.clone(),
    };
    bank.app
        .broker
        .publish(
            Route::Preview,
            &jobs::encode(&job).unwrap(),
            &job.message_id(),
        )
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let done = loop {
        let p = bank.app.state.preview(&key).await.unwrap().unwrap();
        if !p.is_pending() {
            break p;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no previewer answered"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(done.id, pending.id);
    let PreviewState::Ready {
        scopes, missing, ..
    } = done.state
    else {
        panic!("not ready: {done:?}");
    };
    assert!(scopes.is_empty(), "{scopes:?}");
    assert_eq!(missing, ["google.my_activity.search.*"]);
    bank.stop().await;
}
