//! `pusher::client` against a real `alias-sink` on loopback: the happy
//! path, 503s, `Retry-After`, a dead client, dropped connections resumed
//! with `HEAD`, the reference client's append mode (restart rule),
//! cancellation, and the SSRF guard and redirects.
//!
//! The sink environment and helpers are here; `delivery.rs` pushes files
//! through faults, `refusals.rs` checks how failures are classified and
//! which destinations are refused.

use protocol::wire::FileSummary;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use pusher::client::{
    retry, AddrClass, Backoff, ChunkStreamer, ClientConfig, Delivery, Outcome, PermanentReason,
    PushClient, PushError, PushTarget, RestartReason, RetryError, RetryPolicy, SsrfGuard, Stop,
    StreamError, Streamed, TransportKind, Upload,
};
use rand::{RngCore, SeedableRng};
use runtime::storage::{S3Settings, Storage};
use sink::{Faults, Sink, SinkConfig, SinkHandle};

mod delivery;
mod refusals;

use crate::example;

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut data = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut data);
    data
}

fn fast_policy() -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_millis(5),
        cap: Duration::from_millis(50),
        max_attempts: 8,
        max_elapsed: Duration::from_secs(30),
    }
}

fn client_allowing(allow: &[&str]) -> PushClient {
    let guard = SsrfGuard::new(allow.iter().map(|n| n.parse().unwrap()).collect());
    PushClient::new(
        guard,
        ClientConfig {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            ..ClientConfig::default()
        },
    )
    .unwrap()
}

/// A sink, a storage directory and a client allowed to reach loopback.
struct Env {
    sink: SinkHandle,
    storage: Storage,
    client: PushClient,
    target: PushTarget,
    id: String,
    grant: String,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl Env {
    fn new(faults: Faults) -> Env {
        let sink_dir = tempfile::tempdir().unwrap();
        let store_dir = tempfile::tempdir().unwrap();
        let mut config = SinkConfig::new(sink_dir.path())
            .with_client_key(&sink::client_key_of(&example("grant_token")).unwrap());
        config.faults = faults;
        let (_, sink) = Sink::start(config).unwrap();
        let storage = Storage::from_url(
            &format!("file://{}", store_dir.path().display()),
            &S3Settings::default(),
        )
        .unwrap();
        let id = example("grant_contract_hash");
        let target = PushTarget::new(&sink.base_url(), &id).unwrap();
        Env {
            sink,
            storage,
            client: client_allowing(&["127.0.0.0/8"]),
            target,
            id,
            grant: example("grant_token"),
            _dirs: (sink_dir, store_dir),
        }
    }

    fn streamer(&self, chunk_size: usize) -> ChunkStreamer {
        ChunkStreamer::new(self.client.clone(), self.storage.clone())
            .with_chunk_size(chunk_size)
            .with_policy(fast_policy())
            .with_seed(11)
    }

    /// Stores an archive and describes its upload from offset 0.
    async fn archive(&self, name: &str, data: &[u8]) -> (Upload, FileSummary) {
        let key = format!("transfers/t/1/{name}");
        let info = self
            .storage
            .put_bytes(&key, Bytes::copy_from_slice(data))
            .await
            .unwrap();
        let upload = Upload {
            key,
            file_url: self.target.file_url(name).unwrap(),
            size: info.size,
            offset: 0,
            verify_offset: false,
        };
        let summary = FileSummary {
            name: name.to_owned(),
            size: info.size,
            blake2b: info.blake2b_b64(),
        };
        (upload, summary)
    }

    async fn start(&self) {
        let mut backoff = Backoff::with_seed(fast_policy(), 1);
        retry(&mut backoff, || {
            self.client.start(&self.target, &self.grant)
        })
        .await
        .unwrap();
    }

    async fn finish(&self, files: &[(Upload, FileSummary)]) {
        let mut backoff = Backoff::with_seed(fast_policy(), 2);
        for (upload, summary) in files {
            retry(&mut backoff, || {
                self.client
                    .finish_file(&upload.file_url, summary.size, &summary.blake2b)
            })
            .await
            .unwrap();
        }
        let summaries: Vec<FileSummary> = files.iter().map(|(_, s)| s.clone()).collect();
        retry(&mut backoff, || {
            self.client.finish_transfer(&self.target, &summaries)
        })
        .await
        .unwrap();
    }

    fn received(&self, name: &str) -> Vec<u8> {
        self.sink.read_file(&self.id, name).unwrap()
    }
}

/// Offsets committed, in order.
type Commits = Arc<Mutex<Vec<u64>>>;

/// Commit callback recording the offsets.
fn recorder() -> (
    Commits,
    impl FnMut(u64) -> std::future::Ready<Result<(), std::io::Error>>,
) {
    let commits = Arc::new(Mutex::new(Vec::new()));
    let sink = commits.clone();
    (commits, move |offset| {
        sink.lock().unwrap().push(offset);
        std::future::ready(Ok(()))
    })
}

async fn always() -> bool {
    true
}

async fn push(
    env: &Env,
    chunk_size: usize,
    upload: &Upload,
) -> (Result<Streamed, StreamError>, Vec<u64>) {
    let (commits, commit) = recorder();
    let result = env
        .streamer(chunk_size)
        .push_file(upload, commit, always)
        .await;
    let commits = commits.lock().unwrap().clone();
    (result, commits)
}
