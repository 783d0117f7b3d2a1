//! `pusher::client` against a real `alias-sink` on loopback: the happy
//! path, 503s, `Retry-After`, a dead client, dropped connections resumed
//! with `HEAD`, the reference client's append mode (restart rule),
//! cancellation, and the SSRF guard and redirects.

use protocol::wire::FileSummary;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use pusher::client::{
    retry, AddrClass, Backoff, ChunkStreamer, ClientConfig, Delivery, Outcome, PermanentReason,
    PushClient, PushError, PushTarget, RestartReason, RetryError, RetryPolicy, SsrfGuard,
    StreamError, Streamed, TransportKind, Upload,
};
use rand::{RngCore, SeedableRng};
use runtime::storage::{S3Settings, Storage};
use sink::{Faults, Sink, SinkConfig, SinkHandle};

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../protocol/tests/data/protocol-examples.json"
);

fn example(key: &str) -> String {
    let text = std::fs::read_to_string(VECTORS).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json[key].as_str().unwrap().to_owned()
}

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

#[tokio::test]
async fn happy_path_is_byte_identical() {
    let env = Env::new(Faults::none());
    let a = random_bytes(5 * 1024 * 1024 + 123, 1);
    let b = random_bytes(1000, 2);
    let fa = env.archive("google.my_activity.search.zip", &a).await;
    let fb = env.archive("google.my_activity.assistant.zip", &b).await;

    env.start().await;
    let (result, commits) = push(&env, 1 << 20, &fa.0).await;
    let stats = result.unwrap();
    assert_eq!(
        (stats.chunks, stats.retries, stats.offset_queries),
        (6, 0, 0)
    );
    assert_eq!(
        commits,
        vec![1 << 20, 2 << 20, 3 << 20, 4 << 20, 5 << 20, a.len() as u64]
    );
    let (result, _) = push(&env, 1 << 20, &fb.0).await;
    assert_eq!(result.unwrap().chunks, 1);
    env.finish(&[fa, fb]).await;

    assert_eq!(env.received("google.my_activity.search.zip"), a);
    assert_eq!(env.received("google.my_activity.assistant.zip"), b);
    let t = env.sink.transfer(&env.id).unwrap();
    assert!(t.finished && t.finish_verified, "{t:?}");

    // The wire format, request by request.
    let log = env.sink.requests();
    assert_eq!(log.len(), 1 + 6 + 1 + 2 + 1);
    assert_eq!(
        (log[0].method.as_str(), log[0].content_type.as_deref()),
        ("PUT", Some("application/x-www-form-urlencoded"))
    );
    assert!(log[0].path.ends_with(&env.id));
    for (i, r) in log[1..7].iter().enumerate() {
        let start = (i as u64) << 20;
        let end = (start + (1 << 20)).min(a.len() as u64) - 1;
        assert_eq!(r.method, "PUT");
        assert_eq!(r.content_type.as_deref(), Some("application/octet-stream"));
        assert_eq!(r.range, Some(format!("{start}-{end}")));
        assert_eq!(
            r.content_range,
            Some(format!("bytes {start}-{end}/{}", a.len()))
        );
        assert_eq!(r.body_len, end - start + 1);
    }
    assert_eq!(log[8].method, "POST");
    assert_eq!(log[8].content_type.as_deref(), Some("application/json"));
    assert_eq!(log[10].path, format!("/alias/push/{}", env.id));
}

#[tokio::test]
async fn every_third_request_failing_still_gives_identical_bytes() {
    let env = Env::new(Faults {
        fail_every: 3,
        ..Faults::none()
    });
    let data = random_bytes(1_000_000, 3);
    let file = env.archive("a.zip", &data).await;
    env.start().await;
    let (result, commits) = push(&env, 64 * 1024, &file.0).await;
    let stats = result.unwrap();
    assert_eq!(stats.chunks, 16);
    assert!(stats.retries >= 5, "{stats:?}");
    assert_eq!(commits.len(), 16, "one commit per acknowledged chunk");
    env.finish(&[file]).await;
    assert_eq!(env.received("a.zip"), data);
    assert!(env.sink.counters().injected_failures >= 6);
    assert!(env.sink.transfer(&env.id).unwrap().finish_verified);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let env = Env::new(Faults::none());
    let data = random_bytes(3000, 4);
    let file = env.archive("a.zip", &data).await;
    env.start().await;
    env.sink.set_faults(Faults {
        fail_every: 2,
        retry_after: Some(1),
        ..Faults::none()
    });
    // Chunks 1 and 3 pass, 2 gets a 503 with `Retry-After: 1`; the jitter
    // alone would wait at most 50 ms.
    let started = Instant::now();
    let (result, _) = push(&env, 1000, &file.0).await;
    let stats = result.unwrap();
    assert!(stats.retries >= 1);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(env.received("a.zip"), data);
}

#[tokio::test]
async fn a_dead_client_fails_after_the_budget() {
    let env = Env::new(Faults {
        dead: true,
        ..Faults::none()
    });
    let file = env.archive("a.zip", &random_bytes(10, 5)).await;

    let mut backoff = Backoff::with_seed(fast_policy(), 1);
    let err = retry(&mut backoff, || env.client.start(&env.target, &env.grant))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RetryError::Exhausted { attempts: 8, .. }),
        "{err}"
    );
    assert_eq!(err.last().status(), Some(500));

    let (result, commits) = push(&env, 1000, &file.0).await;
    match result.unwrap_err() {
        StreamError::Exhausted {
            offset: 0,
            attempts: 8,
            last,
            ..
        } => assert_eq!(last.status(), Some(500)),
        other => panic!("{other}"),
    }
    assert!(commits.is_empty());
    assert_eq!(env.sink.counters().requests, 16);
}

#[tokio::test]
async fn dropped_connections_are_resumed_with_head() {
    let env = Env::new(Faults::none());
    let data = random_bytes(600 * 1024 + 7, 6);
    let file = env.archive("a.zip", &data).await;
    env.start().await;
    // Every 3rd accepted chunk is written, then left unanswered.
    env.sink.set_faults(Faults {
        drop_every: 3,
        ..Faults::none()
    });
    let (result, commits) = push(&env, 64 * 1024, &file.0).await;
    let stats = result.unwrap();
    let dropped = env.sink.counters().dropped;
    assert!(dropped >= 3, "{dropped}");
    assert_eq!(stats.offset_queries, dropped, "one HEAD per dropped chunk");
    // The client kept each dropped chunk, so no chunk was sent twice.
    assert_eq!(env.sink.counters().chunks, 10);
    assert!(commits.windows(2).all(|w| w[0] < w[1]), "{commits:?}");
    assert_eq!(commits.last().copied(), Some(data.len() as u64));
    env.finish(&[file]).await;
    assert_eq!(env.received("a.zip"), data);
}

#[tokio::test]
async fn the_reference_client_needs_a_restart() {
    // Like the reference client: no HEAD, chunks appended.
    let env = Env::new(Faults {
        reference_mode: true,
        drop_every: 2,
        ..Faults::none()
    });
    let data = random_bytes(300 * 1024, 7);
    let file = env.archive("root.zip", &data).await;
    env.start().await;
    let (result, commits) = push(&env, 64 * 1024, &file.0).await;
    match result.unwrap_err() {
        StreamError::NeedsRestart {
            offset,
            reason: RestartReason::NoOffsetQuery,
            cause: Some(cause),
        } => {
            assert_eq!(offset, 64 * 1024, "the second chunk was dropped");
            assert!(cause.outcome().is_unknown(), "{cause}");
            assert_eq!(cause.delivery(), Some(Delivery::Unknown));
        }
        other => panic!("{other}"),
    }
    assert_eq!(commits, vec![64 * 1024]);
    // Sending on would have corrupted the file: it already holds 2 chunks.
    assert_eq!(env.received("root.zip").len(), 128 * 1024);

    // The worker's rule: a new generation, starting with the start request
    // (which makes the client drop its data), then every chunk once, in
    // order.
    env.sink.set_faults(Faults::reference());
    env.start().await;
    let (result, _) = push(&env, 64 * 1024, &file.0).await;
    assert_eq!(result.unwrap().chunks, 5);
    env.finish(&[file]).await;
    assert_eq!(env.received("root.zip"), data);
}

#[tokio::test]
async fn a_redelivered_job_checks_the_offset_first() {
    let env = Env::new(Faults::none());
    let data = random_bytes(100_000, 8);
    let (mut upload, summary) = env.archive("a.zip", &data).await;
    env.start().await;

    // First attempt: cancelled after two chunks (a revocation, a shutdown).
    let calls = Arc::new(Mutex::new(0));
    let counter = calls.clone();
    let (commits, commit) = recorder();
    let err = env
        .streamer(10_000)
        .push_file(&upload, commit, move || {
            let counter = counter.clone();
            async move {
                let mut n = counter.lock().unwrap();
                *n += 1;
                *n <= 2
            }
        })
        .await
        .unwrap_err();
    assert!(
        matches!(err, StreamError::Cancelled { offset: 20_000 }),
        "{err}"
    );
    assert_eq!(*commits.lock().unwrap(), vec![10_000, 20_000]);

    // Pretend the committed offset lagged behind the client (a crash between
    // send and commit): start from 10 000 but ask first.
    upload.offset = 10_000;
    upload.verify_offset = true;
    let (result, commits) = push(&env, 10_000, &upload).await;
    let stats = result.unwrap();
    assert_eq!((stats.offset_queries, stats.chunks), (1, 8));
    assert_eq!(commits.first().copied(), Some(20_000));
    env.finish(&[(upload.clone(), summary)]).await;
    assert_eq!(env.received("a.zip"), data);

    // The same against the reference client: it cannot say, so restart.
    env.sink.set_faults(Faults::reference());
    let (result, _) = push(&env, 10_000, &upload).await;
    assert!(
        matches!(
            result,
            Err(StreamError::NeedsRestart {
                reason: RestartReason::NoOffsetQuery,
                ..
            })
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn failures_are_classified_by_kind() {
    // Connection refused: nothing was sent.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let client = client_allowing(&["127.0.0.0/8"]);
    let closed = PushTarget::new(&format!("http://127.0.0.1:{port}/alias/push/"), "x").unwrap();
    let err = client.start(&closed, "t").await.unwrap_err();
    assert!(
        matches!(
            err,
            PushError::Transport {
                kind: TransportKind::Connect,
                delivery: Delivery::NotSent,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!err.outcome().is_unknown());

    // An answer slower than the request timeout: outcome unknown.
    let env = Env::new(Faults::none());
    env.start().await;
    env.sink.set_faults(Faults {
        delay_ms: 1500,
        ..Faults::none()
    });
    let impatient = PushClient::new(
        SsrfGuard::new(vec!["127.0.0.0/8".parse().unwrap()]),
        ClientConfig {
            request_timeout: Duration::from_millis(300),
            ..ClientConfig::default()
        },
    )
    .unwrap();
    let url = env.target.file_url("a.zip").unwrap();
    let err = impatient
        .put_chunk(&url, 0, Bytes::from_static(b"abc"), 3)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            PushError::Transport {
                kind: TransportKind::Timeout,
                delivery: Delivery::Unknown,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(Outcome::of(&Err::<(), _>(err)).is_unknown());

    // Statuses: a 409 carries the client's offset; a 400 is permanent.
    env.sink.set_faults(Faults::none());
    let err = env
        .client
        .put_chunk(&url, 5, Bytes::from_static(b"abc"), 8)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            PushError::Status {
                status: 409,
                upload_offset: Some(3),
                ..
            }
        ),
        "{err:?}"
    );
    let bad = env.target.file_url("b.zip").unwrap();
    let err = env.client.finish_file(&bad, 1, "x").await.unwrap_err();
    assert_eq!(
        err.outcome(),
        Outcome::Permanent(PermanentReason::Status(400))
    );
    assert!(err.to_string().contains("size mismatch"), "{err}");
    assert_eq!(env.client.head_offset(&url).await.unwrap(), Some(3));
    assert!(matches!(
        env.client
            .put_chunk(&url, 0, Bytes::new(), 3)
            .await
            .unwrap_err(),
        PushError::InvalidRequest(_)
    ));
}

#[tokio::test]
async fn ssrf_guard_refuses_private_destinations() {
    let env = Env::new(Faults::none());
    let port = env.sink.addr().port();
    let strict = client_allowing(&[]);
    let id = env.id.clone();

    for (host, class) in [
        ("127.0.0.1", AddrClass::Loopback),
        ("localhost", AddrClass::Loopback),
        ("[::ffff:127.0.0.1]", AddrClass::Loopback),
        ("[::1]", AddrClass::Loopback),
        ("169.254.169.254", AddrClass::LinkLocal),
        ("[fd00::1]", AddrClass::UniqueLocal),
        ("0.0.0.0", AddrClass::Unspecified),
        ("10.1.2.3", AddrClass::Private),
        ("2130706433", AddrClass::Loopback),
    ] {
        let target = PushTarget::new(&format!("http://{host}:{port}/alias/push/"), &id).unwrap();
        let err = strict.start(&target, &env.grant).await.unwrap_err();
        assert_eq!(
            err.outcome(),
            Outcome::Permanent(PermanentReason::Refused(class)),
            "{host}: {err:?}"
        );
    }
    let target = PushTarget::new(&format!("http://localhost:{port}/alias/push/"), &id).unwrap();
    match strict.start(&target, &env.grant).await.unwrap_err() {
        PushError::Refused(r) => {
            assert_eq!(r.host, "localhost");
            assert_eq!(r.reason, AddrClass::Loopback);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(env.sink.counters().requests, 0, "nothing reached the sink");

    // Allowed explicitly, loopback works, by address and by name.
    let allowed = client_allowing(&["127.0.0.0/8"]);
    for host in ["127.0.0.1", "localhost"] {
        let target = PushTarget::new(&format!("http://{host}:{port}/alias/push/"), &id).unwrap();
        allowed.start(&target, &env.grant).await.unwrap();
    }
    assert_eq!(env.sink.counters().starts, 2);
    // Other private ranges stay closed.
    let target = PushTarget::new(&format!("http://[::1]:{port}/alias/push/"), &id).unwrap();
    assert!(matches!(
        allowed.start(&target, &env.grant).await,
        Err(PushError::Refused(_))
    ));
}

/// A server that answers every request with a redirect to `location`.
fn redirector(location: String) -> std::net::SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = actix_web::HttpServer::new(move || {
                let location = location.clone();
                actix_web::App::new().default_service(actix_web::web::to(move || {
                    let location = location.clone();
                    async move {
                        actix_web::HttpResponse::Found()
                            .insert_header(("Location", location))
                            .finish()
                    }
                }))
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

#[tokio::test]
async fn redirects_are_not_followed() {
    let env = Env::new(Faults::none());
    let addr = redirector(env.sink.transfer_url(&env.id));
    let target = PushTarget::new(&format!("http://{addr}/alias/push/"), &env.id).unwrap();
    let err = env.client.start(&target, &env.grant).await.unwrap_err();
    assert_eq!(
        err.outcome(),
        Outcome::Permanent(PermanentReason::Status(302))
    );
    assert_eq!(
        env.sink.counters().requests,
        0,
        "the redirect was not followed"
    );
}
