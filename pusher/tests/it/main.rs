//! Pusher integration tests: the push client against a real in-process
//! `alias-sink` with fault switches.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod client;
mod drain;
mod restart;
mod ssrf;
mod stop;

use std::path::Path;
use std::time::Duration;

use runtime::config::Config;
use runtime::mq::Broker;
use runtime::state::{FileRecord, NewTransfer, State, TransferState};
use runtime::storage::{S3Settings, Storage};
use runtime::worker::Services;

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../protocol/tests/data/protocol-examples.json"
);

/// A value of the reference vectors (`protocol-examples.json`).
fn example(key: &str) -> String {
    let text = std::fs::read_to_string(VECTORS).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json[key].as_str().unwrap().to_owned()
}

/// A push worker over in-memory state and broker on a namespace of its
/// own (`{label}-…`), archives in a directory store at `dir`, allowed to
/// push to loopback, with the settings `extra`.
fn push_worker(
    dir: &Path,
    label: &str,
    extra: &[(&str, &str)],
) -> (State, Broker, Storage, pusher::worker::Pusher) {
    let (config, s) = push_services(dir, label, extra);
    let pusher = pusher::pusher(
        &config,
        s.state.clone(),
        s.broker.clone(),
        s.storage.clone(),
    )
    .unwrap();
    (s.state, s.broker, s.storage, pusher)
}

/// What [`push_worker`] builds its pusher of: the configuration and the
/// services (in-memory state and broker, a directory store at `dir`), for
/// a test that starts a whole worker.
fn push_services(dir: &Path, label: &str, extra: &[(&str, &str)]) -> (Config, Services) {
    let storage =
        Storage::from_url(&format!("file://{}", dir.display()), &S3Settings::default()).unwrap();
    let ns = format!("{label}-{}", uuid::Uuid::new_v4().simple());
    let state = State::in_memory(&ns, Duration::from_secs(60));
    let broker = Broker::in_memory(&ns).unwrap();
    let mut pairs = vec![
        ("ALIAS_NAMESPACE", ns.as_str()),
        ("ALIAS_PUSH_ALLOW", "127.0.0.0/8"),
    ];
    pairs.extend_from_slice(extra);
    let config = Config::from_pairs(&pairs).unwrap();
    (
        config,
        Services {
            state,
            broker,
            storage,
        },
    )
}

/// Starts generation 1 of transfer `id` (of `grant`, pushed to
/// `push_url`) and takes it to `pushing` with the stored archives `files`,
/// as the processor leaves it.
async fn pushing_transfer(
    state: &State,
    id: &str,
    grant: &str,
    push_url: &str,
    files: &[FileRecord],
) {
    begin_pushing(state, id, grant, push_url).await;
    state.set_files(id, 1, files).await.unwrap();
}

/// Starts generation 1 of transfer `id` (of `grant`, pushed to
/// `push_url`) and takes it to `pushing` with no archive recorded yet, as
/// a processor that has not stored its first archive leaves it.
async fn begin_pushing(state: &State, id: &str, grant: &str, push_url: &str) {
    let new = NewTransfer {
        grant_token: grant,
        grant_hash: "h",
        user: "u",
        push_url,
        revoked: false,
    };
    assert_eq!(state.begin_transfer(id, &new).await.unwrap().generation, 1);
    let to_pushing = state
        .transition(
            id,
            1,
            &[TransferState::Accepted],
            TransferState::Pushing,
            None,
        )
        .await
        .unwrap();
    assert!(to_pushing);
}

/// Serves the routes `configure` sets on a free loopback port, on a thread
/// of its own (one worker); returns the address.
fn serve<F>(configure: F) -> std::net::SocketAddr
where
    F: Fn(&mut actix_web::web::ServiceConfig) + Clone + Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = actix_web::HttpServer::new(move || {
                actix_web::App::new().configure(configure.clone())
            })
            .workers(1)
            .disable_signals()
            .bind("127.0.0.1:0")
            .unwrap();
            tx.send(server.addrs()[0]).unwrap();
            server.run().await.unwrap();
        });
    });
    rx.recv().unwrap()
}

/// Stores an archive of `kib` KiB (bytes from `seed`) as `name` of
/// generation 1 of transfer `id`, and returns its record.
async fn stored_archive(
    storage: &Storage,
    id: &str,
    name: &str,
    kib: usize,
    seed: usize,
) -> FileRecord {
    let data: Vec<u8> = (0..kib * 1024).map(|b| ((b * seed) % 251) as u8).collect();
    let key = format!("transfers/{id}/1/{name}");
    let info = storage
        .put_bytes(&key, bytes::Bytes::from(data))
        .await
        .unwrap();
    FileRecord {
        name: name.into(),
        scope: "google.photos".into(),
        storage_key: key,
        size: info.size,
        blake2b: info.blake2b_b64(),
        offset: 0,
        finished: false,
    }
}
