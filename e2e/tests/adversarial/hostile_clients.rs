//! Attacks: hostile clients against the pusher (issue 17, items 1 and 2).
//!
//! The pusher connects to endpoints that clients choose. A client server
//! of the suite's own plays the attacker: it holds every request without
//! answering (a client that answers `200` after minutes), or answers every
//! chunk `409` with a fake `Upload-Offset` (one byte further, or
//! alternately the chunk's end and 0). A healthy client's transfer must
//! complete while the hostile ones still hold their connections, and a
//! faking client must get a bounded number of requests and end `failed`
//! with a clear reason.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use e2e::{
    assert_delivered, contract, contract_id, give_dump, grant, process_async, user, wait_terminal,
    wait_until, Bank, Client,
};
use runtime::state::TransferState;
use sink::Faults;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How the hostile client answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Every request is held until released (at most 300 s), then `200`.
    Slow,
    /// Start and finishes `200`; each chunk `409` with `Upload-Offset`
    /// one byte past the chunk's start; `HEAD` says 0.
    FakeStep,
    /// Each chunk `409`: at offset 0 the chunk's end, elsewhere 0.
    Alternate,
}

/// The hostile client server and what it saw.
struct Hostile {
    addr: std::net::SocketAddr,
    /// Requests received.
    requests: Arc<AtomicU64>,
    /// Requests being held now (mode `Slow`).
    held: Arc<AtomicU64>,
    release: tokio::sync::watch::Sender<bool>,
    server: actix_web::dev::ServerHandle,
}

struct Shared {
    mode: Mode,
    requests: Arc<AtomicU64>,
    held: Arc<AtomicU64>,
    released: tokio::sync::watch::Receiver<bool>,
}

/// `bytes s-e/t` → (s, e).
fn content_range(req: &HttpRequest) -> Option<(u64, u64)> {
    let v = req.headers().get("content-range")?.to_str().ok()?;
    let (range, _) = v.strip_prefix("bytes ")?.split_once('/')?;
    let (s, e) = range.split_once('-')?;
    Some((s.parse().ok()?, e.parse().ok()?))
}

async fn answer(req: HttpRequest, _body: web::Bytes, shared: web::Data<Shared>) -> HttpResponse {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    match shared.mode {
        Mode::Slow => {
            shared.held.fetch_add(1, Ordering::SeqCst);
            let mut released = shared.released.clone();
            let _ = tokio::time::timeout(Duration::from_secs(300), released.wait_for(|r| *r)).await;
            shared.held.fetch_sub(1, Ordering::SeqCst);
            HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
        }
        Mode::FakeStep | Mode::Alternate => {
            if req.method() == actix_web::http::Method::HEAD {
                return HttpResponse::Ok()
                    .insert_header(("Upload-Offset", "0"))
                    .finish();
            }
            let Some((start, end)) = content_range(&req) else {
                // Start, file finish, transfer finish.
                return HttpResponse::Ok().json(serde_json::json!({"status": "ok"}));
            };
            let offset = match shared.mode {
                Mode::FakeStep => start + 1,
                _ if start == 0 => end + 1,
                _ => 0,
            };
            HttpResponse::Conflict()
                .insert_header(("Upload-Offset", offset.to_string()))
                .json(serde_json::json!({"status": "error", "reason": "offset mismatch"}))
        }
    }
}

impl Hostile {
    /// A hostile server on `127.0.0.1`, `127.0.0.2` and `127.0.0.3` (one
    /// port): an attacker's several host names, none shared with the
    /// healthy clients (which are on `127.0.0.1` only when `mode` is not
    /// `Slow`).
    fn start(mode: Mode) -> Hostile {
        let requests = Arc::new(AtomicU64::new(0));
        let held = Arc::new(AtomicU64::new(0));
        let (release, released) = tokio::sync::watch::channel(false);
        let shared = web::Data::new(Shared {
            mode,
            requests: requests.clone(),
            held: held.clone(),
            released,
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(shared.clone())
                .app_data(web::PayloadConfig::new(128 << 20))
                .default_service(web::to(answer))
        })
        .workers(1)
        .max_connections(10_000)
        .bind("127.0.0.2:0")
        .unwrap();
        let addr = server.addrs()[0];
        let server = server
            .bind(("127.0.0.3", addr.port()))
            .unwrap()
            .bind(("127.0.0.1", addr.port()))
            .unwrap();
        let server = server.run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Hostile {
            addr,
            requests,
            held,
            release,
            server: handle,
        }
    }

    fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    fn held(&self) -> u64 {
        self.held.load(Ordering::SeqCst)
    }

    async fn stop(self) {
        let _ = self.release.send(true);
        self.server.stop(false).await;
    }
}

/// A contract signed by the client key of `seed`, pushing to `domain`; its
/// transfer id.
fn hostile_contract(name: &str, seed: u8, domain: &str) -> (protocol::anychain::Value, String) {
    let c = contract(name, seed, domain, &e2e::SCOPES);
    let id = contract_id(&c);
    (c, id)
}

/// Grants `contract` by a new user with a dump; waits until it is pushing.
async fn grant_pushing(
    bank: &Bank,
    user_seed: u8,
    c: &protocol::anychain::Value,
    id: &str,
    dump: u64,
) {
    let u = user(user_seed);
    give_dump(bank, &u, dump, u64::from(user_seed)).await;
    let (status, body) = process_async(&bank.base, &grant(&u, c)).await;
    assert_eq!(status, 202, "{body}");
    wait_until(bank, id, Duration::from_secs(120), |t| {
        t.state == TransferState::Pushing || t.state.is_terminal()
    })
    .await;
}

/// A healthy client's transfer from grant to `done`; its duration.
async fn healthy_transfer(
    bank: &Bank,
    name: &str,
    seed: u8,
    user_seed: u8,
    limit: Duration,
) -> Duration {
    let client = Client::new(name, seed, Faults::default());
    let u = user(user_seed);
    give_dump(bank, &u, 400_000, u64::from(user_seed)).await;
    let began = Instant::now();
    let (status, body) = process_async(&bank.base, &client.grant(&u)).await;
    assert_eq!(status, 202, "{body}");
    let t = wait_terminal(bank, &client.id, limit).await;
    let took = began.elapsed();
    assert_eq!(t.state, TransferState::Done, "{t:?}");
    assert_delivered(bank, &client).await;
    took
}

/// One attacker (one signing key) declared on two host names of one
/// server (127.0.0.2 and 127.0.0.3; the healthy sink is on 127.0.0.1) holds every request it gets. Slots are counted by the client's
/// signing key, so it holds one of the two workers whatever the number of
/// its host names, and a healthy client's transfer completes on the other
/// while the attacker's requests are still held. (Keyed by exact host, as
/// before, the attacker took both workers and the healthy transfer waited
/// for the attack to end.) The request timeout is long here so that only
/// the slot keying is tested.
#[actix_web::test]
async fn one_client_on_many_host_names_takes_one_slot() {
    let mut bank = Bank::new(
        "advh-slot-",
        &[
            ("ALIAS_PUSH_TIMEOUT_SECS", "300"),
            ("ALIAS_PUSH_MIN_RATE", "0"),
            ("ALIAS_PUSH_CLIENT_SHARE", "100"),
            ("ALIAS_PUSH_PER_CLIENT", "1"),
            ("ALIAS_PUSH_CONCURRENCY", "2"),
        ],
    )
    .await;
    bank.start_processor().await;
    bank.start_pusher().await;
    let baseline = healthy_transfer(&bank, "healthy-before", 60, 61, Duration::from_secs(60)).await;

    let hostile = Hostile::start(Mode::Slow);
    let port = hostile.addr.port();
    let (c1, id1) = hostile_contract("attacker-a", 70, &format!("127.0.0.2:{port}"));
    let (c2, id2) = hostile_contract("attacker-b", 70, &format!("127.0.0.3:{port}"));
    grant_pushing(&bank, 71, &c1, &id1, 400_000).await;
    grant_pushing(&bank, 72, &c2, &id2, 400_000).await;
    // The attacker holds a request (the first start).
    let deadline = Instant::now() + Duration::from_secs(30);
    while hostile.held() == 0 {
        assert!(
            Instant::now() < deadline,
            "the attacker never got a request"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let attacked = healthy_transfer(&bank, "healthy-during", 62, 63, Duration::from_secs(60)).await;
    let held = hostile.held();
    assert!(
        held >= 1,
        "the attack was released before the healthy transfer ended"
    );
    assert_eq!(held, 1, "one signing key held {held} workers at once");
    for id in [&id1, &id2] {
        let t = bank.app.state.transfer(id).await.unwrap().unwrap();
        assert!(!t.state.is_terminal(), "{t:?}");
    }
    println!(
        "FIGURE slot keying: healthy transfer {baseline:?} without the attack, {attacked:?} while one key on two host names held {held} request(s) ({} received)",
        hostile.requests()
    );
    hostile.stop().await;
    bank.cleanup().await;
}

/// Two attackers with their own signing keys and host names (sybils) each
/// hold every request: together they could take both workers. Each request
/// must move `ALIAS_PUSH_MIN_RATE` bytes per second (after a grace of 5 s)
/// or it is abandoned as stalled, and a delivery stops after
/// `ALIAS_PUSH_RUN_SECS`, so the workers come back and the healthy
/// transfer completes while the attackers still hold connections. (With
/// the old 120 s per request and no wall-clock limit, the healthy transfer
/// waited for the attack to end.)
#[actix_web::test]
async fn slow_clients_cannot_hold_the_workers() {
    let mut bank = Bank::new(
        "advh-slow-",
        &[
            ("ALIAS_PUSH_TIMEOUT_SECS", "300"),
            ("ALIAS_PUSH_MIN_RATE", "262144"),
            ("ALIAS_PUSH_RUN_SECS", "5"),
            ("ALIAS_PUSH_CONCURRENCY", "2"),
        ],
    )
    .await;
    bank.start_processor().await;
    bank.start_pusher().await;
    let baseline = healthy_transfer(&bank, "healthy-before", 80, 81, Duration::from_secs(60)).await;

    let hostile = Hostile::start(Mode::Slow);
    let port = hostile.addr.port();
    let (c1, id1) = hostile_contract("sybil-a", 82, &format!("127.0.0.2:{port}"));
    let (c2, id2) = hostile_contract("sybil-b", 83, &format!("127.0.0.3:{port}"));
    grant_pushing(&bank, 84, &c1, &id1, 400_000).await;
    grant_pushing(&bank, 85, &c2, &id2, 400_000).await;
    // Both workers held by the attackers.
    let deadline = Instant::now() + Duration::from_secs(30);
    while hostile.held() < 2 {
        assert!(
            Instant::now() < deadline,
            "the attackers never held both workers"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let before = hostile.requests();
    let attacked = healthy_transfer(&bank, "healthy-during", 86, 87, Duration::from_secs(90)).await;
    let held = hostile.held();
    // Nothing was ever answered to the attackers: their transfers cannot
    // have moved, and they kept sending (held) requests meanwhile.
    for id in [&id1, &id2] {
        let t = bank.app.state.transfer(id).await.unwrap().unwrap();
        assert_ne!(t.state, TransferState::Done, "{t:?}");
    }
    println!(
        "FIGURE slow clients: healthy transfer {baseline:?} without the attack, {attacked:?} while two slow clients held connections ({} requests received during it, {held} held at the end)",
        hostile.requests() - before
    );
    hostile.stop().await;
    bank.cleanup().await;
}

/// Runs a faking client until its transfer ends; returns (requests, time).
async fn faking_client(mode: Mode, extra: &[(&str, &str)], expect: &str) -> (u64, Duration) {
    let mut env = vec![
        ("ALIAS_PUSH_ATTEMPTS", "3"),
        ("ALIAS_PUSH_CONCURRENCY", "2"),
    ];
    env.extend_from_slice(extra);
    let mut bank = Bank::new("advh-fake-", &env).await;
    bank.start_processor().await;
    bank.start_pusher().await;
    let hostile = Hostile::start(mode);
    let (c, id) = hostile_contract("faker", 90, &hostile.addr.to_string());
    let began = Instant::now();
    grant_pushing(&bank, 91, &c, &id, 1_500_000).await;
    let t = wait_terminal(&bank, &id, Duration::from_secs(240)).await;
    let took = began.elapsed();
    let requests = hostile.requests();
    assert_eq!(t.state, TransferState::Failed, "{t:?}");
    let reason = t.error.clone().unwrap_or_default();
    assert!(reason.contains(expect), "unclear reason: {reason}");
    hostile.stop().await;
    bank.cleanup().await;
    (requests, took)
}

/// A client answering each chunk `409` with `Upload-Offset: start+1`: no
/// such claim is accepted (less than `ALIAS_PUSH_MIN_ADVANCE`), each counts
/// as a failed request that does not reset the retry budget, and after
/// `ALIAS_PUSH_FILE_FAILURES` the transfer fails with a clear reason. The
/// client gets a bounded number of requests (on main: 42,135 in 65 s).
#[actix_web::test]
async fn a_client_faking_one_byte_steps_gets_few_requests_and_fails() {
    let (requests, took) = faking_client(
        Mode::FakeStep,
        &[("ALIAS_PUSH_FILE_FAILURES", "6")],
        "claimed no real progress",
    )
    .await;
    let per_minute = requests as f64 * 60.0 / took.as_secs_f64().max(1.0);
    println!("FIGURE fake +1 offsets: {requests} requests in {took:?} ({per_minute:.0}/min) until failed");
    // Start, and one chunk at a time: 3 attempts per run (no reset without
    // a 2xx), 6 failures per file, 3 files.
    assert!(requests <= 40, "{requests} requests");
}

/// A client answering chunks `409` alternately at the chunk's end and at 0
/// (a rewind): rewinds are capped per run and per file, each counts as a
/// failure, and the transfer fails with a clear reason.
#[actix_web::test]
async fn a_client_alternating_offsets_gets_few_requests_and_fails() {
    let (requests, took) = faking_client(
        Mode::Alternate,
        &[("ALIAS_PUSH_FILE_REWINDS", "4")],
        "reported holding less than it acknowledged",
    )
    .await;
    let per_minute = requests as f64 * 60.0 / took.as_secs_f64().max(1.0);
    println!("FIGURE alternating offsets: {requests} requests in {took:?} ({per_minute:.0}/min) until failed");
    assert!(requests <= 60, "{requests} requests");
}
