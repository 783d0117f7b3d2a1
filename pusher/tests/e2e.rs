//! End to end against the local Redis and RabbitMQ: gateway → processor →
//! pusher → alias-sink, all in this process, each test in its own namespace.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use protocol::alias::grant_body;
use protocol::anychain::{
    b64u_encode, sign, signing_key_from_seed, to_token, Dict, SigningKey, Value,
};
use reqwest::StatusCode;
use runtime::config::Config;
use runtime::state::{now_ms, DumpRecord};
use serde_json::Value as Json;
use sink::{Faults, Sink, SinkConfig, SinkHandle};

const ORIGIN: &str = "http://bank.test";

struct Stack {
    base: String,
    app: std::sync::Arc<gateway::AppState>,
    sink: SinkHandle,
    workers: Vec<runtime::worker::WorkerHandle>,
    _dir: tempfile::TempDir,
}

async fn stack(faults: Faults, allow_loopback: bool, extra: &[(&str, &str)]) -> Stack {
    let dir = tempfile::tempdir().unwrap();
    let mut sink_config = SinkConfig::new(dir.path().join("sink"))
        .with_client_key(signing_key_from_seed(&[1; 32]).verifying_key().as_bytes());
    sink_config.faults = faults;
    let (_, sink) = Sink::start(sink_config).unwrap();
    let ns = format!("e{}", uuid::Uuid::new_v4().simple());
    let storage = dir.path().join("storage");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let mut pairs = vec![
        ("ALIAS_NAMESPACE", ns.as_str()),
        ("ALIAS_STORAGE_URL", storage.to_str().unwrap()),
        ("ALIAS_WORK_DIR", work.to_str().unwrap()),
        ("ALIAS_LISTEN", "127.0.0.1:0"),
        ("ALIAS_PUBLIC_ORIGIN", ORIGIN),
        ("ALIAS_PUSH_CHUNK", "65536"),
        ("ALIAS_RATE_PER_SEC", "100000"),
        ("ALIAS_PROCESS_WAIT_SECS", "120"),
    ];
    if allow_loopback {
        pairs.push(("ALIAS_PUSH_ALLOW", "127.0.0.0/8"));
    }
    pairs.extend_from_slice(extra);
    let config = Config::from_pairs(&pairs).unwrap();
    let app = gateway::AppState::connect(config.clone()).await.unwrap();
    let (server, addr) = gateway::server(app.clone(), config.listen).unwrap();
    actix_web::rt::spawn(server);
    let (processor, _) = processor::start(&config).await.unwrap();
    let (pusher, _) = pusher::start(&config).await.unwrap();
    Stack {
        base: format!("http://{addr}"),
        app,
        sink,
        workers: vec![processor, pusher],
        _dir: dir,
    }
}

impl Stack {
    async fn cleanup(self) {
        for w in self.workers {
            w.shutdown().await;
        }
        self.app.broker.delete_topology().await;
        let _ = self.app.state.purge_namespace().await;
        self.sink.stop();
    }
}

fn user() -> SigningKey {
    signing_key_from_seed(&[42; 32])
}

/// Stores a generated Google Takeout of the user, as an upload would.
async fn give_dump(stack: &Stack) {
    let options = dumpgen::Options {
        provider: dumpgen::Provider::Google,
        target_bytes: 3 << 20,
        seed: 7,
        ..dumpgen::Options::default()
    };
    let pk = b64u_encode(user().verifying_key().as_bytes());
    for (name, bytes) in dumpgen::generate(&options).unwrap() {
        let key = format!("dumps/{pk}/google/{name}");
        let info = stack
            .app
            .storage
            .put_bytes(&key, bytes.into())
            .await
            .unwrap();
        let record = DumpRecord {
            provider: "google".into(),
            name,
            key,
            size: info.size,
            blake2b: info.blake2b_b64(),
            uploaded_ms: now_ms(),
        };
        stack.app.state.record_dump(&pk, &record).await.unwrap();
    }
}

fn contract(domain: &str) -> Value {
    let client_key = signing_key_from_seed(&[1; 32]);
    let decl = Dict::new()
        .with("type", "alias.client.decl")
        .with("name", "Voice Commons")
        .with("domain", domain)
        .with("crypto", Dict::new());
    let client = sign(&client_key, Value::Dict(decl), 1_574_158_519_000.0).unwrap();
    let scope = |p: &str| Value::Dict(Dict::new().with("provider", "google").with("path", p));
    let group = |s: Vec<Value>| {
        Value::Dict(
            Dict::new()
                .with("scopes", Value::List(s))
                .with("usages", Value::List(vec![])),
        )
    };
    Value::Dict(
        Dict::new()
            .with("type", "alias.contract")
            .with("client", client)
            .with("legal", Dict::new().with("usage", "tests"))
            .with(
                "base",
                Dict::new()
                    .with("contractual", group(vec![scope("my_activity.search")]))
                    .with(
                        "consent",
                        Value::List(vec![group(vec![
                            scope("youtube.watch_history"),
                            scope("photos"),
                        ])]),
                    ),
            )
            .with("network", Dict::new().with("scheme", "http")),
    )
}

async fn process(stack: &Stack) -> (StatusCode, Json) {
    let domain = stack.sink.addr().to_string();
    let body = grant_body(&contract(&domain), vec![vec![true, true]], vec![]).unwrap();
    let grant = to_token(&sign(&user(), body, now_ms() as f64).unwrap());
    let resp = reqwest::Client::new()
        .post(format!("{}/alias/process", stack.base))
        .form(&[("grant", grant)])
        .send()
        .await
        .unwrap();
    (resp.status(), resp.json().await.unwrap())
}

/// Every archive the client holds is byte for byte the stored archive.
async fn assert_identical(stack: &Stack, body: &Json, verifying_client: bool) {
    let t = &body["transfer"];
    let id = t["id"].as_str().unwrap();
    let generation = t["generation"].as_u64().unwrap();
    let files = stack.app.state.files(id, generation).await.unwrap();
    assert!(!files.is_empty());
    for f in &files {
        let stored = stack.app.storage.get_bytes(&f.storage_key).await.unwrap();
        let received = stack.sink.read_file(id, &f.name).unwrap();
        assert_eq!(received.len(), stored.len(), "{}", f.name);
        assert!(received == stored.as_ref(), "{} differs", f.name);
    }
    let sink_state = stack.sink.transfer(id).unwrap();
    assert!(sink_state.finished, "{sink_state:?}");
    // A reference-mode client takes the finish without checking anything.
    assert_eq!(
        sink_state.finish_verified, verifying_client,
        "{sink_state:?}"
    );
    assert_eq!(sink_state.files.len(), files.len());
}

#[actix_web::test]
async fn archives_arrive_byte_identical() {
    let stack = stack(Faults::none(), true, &[]).await;
    give_dump(&stack).await;
    let (status, body) = process(&stack).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ok");
    let processor = body["processor"].as_array().unwrap();
    assert_eq!(processor.len(), 3, "{body}");
    assert_identical(&stack, &body, true).await;
    assert_eq!(stack.sink.counters().starts, 1);
    assert_eq!(stack.sink.counters().transfer_finishes, 1);
    stack.cleanup().await;
}

#[actix_web::test]
async fn a_client_failing_every_third_request_still_gets_identical_files() {
    let faults = Faults {
        fail_every: 3,
        ..Faults::none()
    };
    let stack = stack(faults, true, &[]).await;
    give_dump(&stack).await;
    let (status, body) = process(&stack).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_identical(&stack, &body, true).await;
    assert!(stack.sink.counters().injected_failures > 0);
    stack.cleanup().await;
}

#[actix_web::test]
async fn a_dead_client_ends_failed_with_the_reason_and_is_never_told_finished() {
    let faults = Faults {
        dead: true,
        ..Faults::none()
    };
    let extra = [
        ("ALIAS_PUSH_ATTEMPTS", "2"),
        ("ALIAS_PUSH_BUDGET_SECS", "1"),
    ];
    let stack = stack(faults, true, &extra).await;
    give_dump(&stack).await;
    let (status, body) = process(&stack).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["code"], "failed");
    assert!(body["reason"].as_str().unwrap().contains("500"), "{body}");
    assert_eq!(stack.sink.counters().transfer_finishes, 0);
    stack.cleanup().await;
}

#[actix_web::test]
async fn a_client_on_a_private_address_is_refused() {
    // Loopback is not allowed in this deployment.
    let stack = stack(Faults::none(), false, &[]).await;
    give_dump(&stack).await;
    let (status, body) = process(&stack).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(
        body["reason"].as_str().unwrap().contains("127.0.0.1"),
        "{body}"
    );
    assert_eq!(stack.sink.counters().requests, 0);
    stack.cleanup().await;
}

#[actix_web::test]
async fn a_reference_client_losing_chunk_answers_gets_a_restart_and_identical_files() {
    let faults = Faults {
        reference_mode: true,
        drop_every: 5,
        ..Faults::none()
    };
    let stack = stack(faults, true, &[]).await;
    give_dump(&stack).await;
    // Once a restart happened, the network heals: stop dropping answers.
    let domain = stack.sink.addr().to_string();
    let id = protocol::alias::Contract::new(&contract(&domain))
        .unwrap()
        .hash()
        .unwrap()
        .to_b64();
    let mut events = stack.app.state.subscribe(&id);
    let healer = async {
        while let Ok(event) = events.recv().await {
            if event.kind == "restarted" {
                stack.sink.set_faults(Faults::reference());
                return;
            }
        }
    };
    let ((status, body), ()) = tokio::join!(process(&stack), healer);
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["transfer"]["generation"].as_u64().unwrap() > 1,
        "{body}"
    );
    assert_identical(&stack, &body, false).await;
    assert!(stack.sink.counters().starts >= 2);
    stack.cleanup().await;
}

#[actix_web::test]
async fn a_revocation_stops_the_push_and_reaches_the_client() {
    let faults = Faults {
        delay_ms: 20,
        ..Faults::none()
    };
    let stack = stack(faults, true, &[]).await;
    give_dump(&stack).await;
    let domain = stack.sink.addr().to_string();
    let c = contract(&domain);
    let id = protocol::alias::Contract::new(&c)
        .unwrap()
        .hash()
        .unwrap()
        .to_b64();
    let signed_at = now_ms() as f64;
    let body = grant_body(&c, vec![vec![true, true]], vec![]).unwrap();
    let grant = to_token(&sign(&user(), body, signed_at).unwrap());
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{}/alias/process", stack.base))
        .header("Prefer", "respond-async")
        .form(&[("grant", grant)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);

    // While the archives are being pushed, the user revokes.
    let mut events = stack.app.state.subscribe(&id);
    while let Ok(event) = events.recv().await {
        if event.kind == "progress" && event.transfer.bytes_done > 0 {
            break;
        }
    }
    let revoked = to_token(
        &sign(
            &user(),
            protocol::alias::revoked_grant_body(&c).unwrap(),
            signed_at + 1000.0,
        )
        .unwrap(),
    );
    let resp = http
        .post(format!("{}/alias/grants", stack.base))
        .body(revoked)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    // The revocation generation ends done: start (revoked grant) + finish.
    loop {
        let t = stack.app.state.transfer(&id).await.unwrap().unwrap();
        if t.generation == 2 && t.state.is_terminal() {
            assert_eq!(t.state, runtime::state::TransferState::Done, "{t:?}");
            assert!(t.revoked);
            break;
        }
        let _ = events.recv().await;
    }
    let sink_state = stack.sink.transfer(&id).unwrap();
    assert!(sink_state.revoked, "{sink_state:?}");
    assert!(sink_state.grant.revoked);
    assert!(
        sink_state.files.is_empty(),
        "the client's data was dropped: {sink_state:?}"
    );
    assert_eq!(stack.sink.counters().starts, 2);
    stack.cleanup().await;
}
