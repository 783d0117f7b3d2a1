//! Fault test: a pusher process killed with SIGKILL in the middle of a file;
//! another pusher process resumes from the committed offset, and the client
//! ends with byte-identical files, each finished once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use protocol::alias::grant_body;
use protocol::anychain::{b64u_encode, sign, signing_key_from_seed, to_token, Dict, Value};
use runtime::config::Config;
use runtime::state::{now_ms, DumpRecord};
use sink::{Faults, Sink, SinkConfig};
use std::process::Stdio;
use tokio::process::{Child, Command};

fn pusher_process(env: &[(String, String)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_alias-pusher"))
        .envs(env.iter().cloned())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("alias-pusher starts")
}

#[actix_web::test]
async fn a_pusher_killed_mid_file_is_resumed_by_another() {
    let dir = tempfile::tempdir().unwrap();
    let mut sink_config = SinkConfig::new(dir.path().join("sink"))
        .with_client_key(signing_key_from_seed(&[1; 32]).verifying_key().as_bytes());
    // Slow enough that the kill lands in the middle of the big file.
    sink_config.faults = Faults {
        delay_ms: 20,
        ..Faults::none()
    };
    let (_, sink) = Sink::start(sink_config).unwrap();
    let ns = format!("k{}", uuid::Uuid::new_v4().simple());
    let storage = dir.path().join("storage");
    let env: Vec<(String, String)> = [
        ("ALIAS_NAMESPACE", ns.as_str()),
        ("ALIAS_STORAGE_URL", storage.to_str().unwrap()),
        ("ALIAS_LISTEN", "127.0.0.1:0"),
        ("ALIAS_PUBLIC_ORIGIN", "http://bank.test"),
        ("ALIAS_PUSH_ALLOW", "127.0.0.0/8"),
        ("ALIAS_PUSH_CHUNK", "65536"),
        ("ALIAS_LEASE_SECS", "2"),
        ("ALIAS_WORKER_CONCURRENCY", "4"),
        ("ALIAS_PROCESS_WAIT_SECS", "120"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let config = Config::from_pairs(&pairs).unwrap();
    let app = gateway::AppState::connect(config.clone()).await.unwrap();
    let (server, addr) = gateway::server(app.clone(), config.listen).unwrap();
    actix_web::rt::spawn(server);
    let (processor, _) = processor::start(&config).await.unwrap();

    // A user with a Takeout whose photos make one big archive.
    let user = signing_key_from_seed(&[43; 32]);
    let pk = b64u_encode(user.verifying_key().as_bytes());
    let options = dumpgen::Options {
        target_bytes: 4 << 20,
        media_ratio: 0.9,
        seed: 11,
        ..dumpgen::Options::default()
    };
    for (name, bytes) in dumpgen::generate(&options).unwrap() {
        let key = format!("dumps/{pk}/google/{name}");
        let info = app.storage.put_bytes(&key, bytes.into()).await.unwrap();
        let record = DumpRecord {
            provider: "google".into(),
            name,
            key,
            size: info.size,
            blake2b: info.blake2b_b64(),
            uploaded_ms: now_ms(),
        };
        app.state.record_dump(&pk, &record).await.unwrap();
    }
    let client_key = signing_key_from_seed(&[1; 32]);
    let decl = Dict::new()
        .with("type", "alias.client.decl")
        .with("name", "Photo Lab")
        .with("domain", sink.addr().to_string())
        .with("crypto", Dict::new());
    let scope = |p: &str| Value::Dict(Dict::new().with("provider", "google").with("path", p));
    let contract = Value::Dict(
        Dict::new()
            .with("type", "alias.contract")
            .with("client", sign(&client_key, Value::Dict(decl), 1.0).unwrap())
            .with("legal", Dict::new())
            .with(
                "base",
                Dict::new().with(
                    "contractual",
                    Dict::new()
                        .with(
                            "scopes",
                            Value::List(vec![scope("photos"), scope("my_activity.search")]),
                        )
                        .with("usages", Value::List(vec![])),
                ),
            )
            .with("network", Dict::new().with("scheme", "http")),
    );
    let id = protocol::alias::Contract::new(&contract)
        .unwrap()
        .hash()
        .unwrap()
        .to_b64();
    let grant = to_token(
        &sign(
            &user,
            grant_body(&contract, vec![], vec![]).unwrap(),
            now_ms() as f64,
        )
        .unwrap(),
    );

    let mut events = app.state.subscribe(&id);
    let mut first = pusher_process(&env);
    let request = reqwest::Client::new()
        .post(format!("http://{addr}/alias/process"))
        .form(&[("grant", grant)])
        .send();
    let killer = async {
        // Kill once some bytes of the transfer are committed, mid-file.
        while let Ok(event) = events.recv().await {
            let t = event.transfer;
            if event.kind == "progress"
                && t.bytes_done > 256 * 1024
                && t.bytes_done < t.bytes_total / 2
            {
                first.start_kill().unwrap();
                first.wait().await.unwrap();
                return pusher_process(&env);
            }
        }
        panic!("the event stream ended before the kill");
    };
    let (response, mut second) = tokio::join!(request, killer);
    let response = response.unwrap();
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{body}");

    let generation = body["transfer"]["generation"].as_u64().unwrap();
    assert_eq!(generation, 1, "resumed in place, no restart: {body}");
    let files = app.state.files(&id, generation).await.unwrap();
    for f in &files {
        let stored = app.storage.get_bytes(&f.storage_key).await.unwrap();
        assert!(
            sink.read_file(&id, &f.name).unwrap() == stored.as_ref(),
            "{} differs",
            f.name
        );
    }
    let counters = sink.counters();
    assert_eq!(counters.starts, 1, "{counters:?}");
    assert_eq!(
        counters.file_finishes,
        files.len() as u64,
        "each file finished once: {counters:?}"
    );
    assert_eq!(counters.transfer_finishes, 1);
    assert!(
        counters.heads >= 1,
        "the second pusher asked the client's offset: {counters:?}"
    );

    second.start_kill().unwrap();
    processor.shutdown().await;
    app.broker.delete_topology().await;
    app.state.purge_namespace().await.unwrap();
    sink.stop();
}
