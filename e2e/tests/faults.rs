//! Reliability under faults, against the local Redis and RabbitMQ, each test
//! on its own namespace: worker processes killed or stopped mid-run,
//! broker and Redis connections dropped, duplicate deliveries and
//! concurrent requests, a dead client among healthy ones.
//!
//! No sleep synchronizes anything: the tests wait on transfer events (with
//! time limits) and act when the transfer reaches a given point.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use e2e::{
    assert_delivered, give_dump, process_async, process_sync, user, wait_terminal, wait_until,
    Bank, Client, Cut, Relay, Role,
};
use rand::{Rng, SeedableRng};
use runtime::state::TransferState;
use sink::Faults;
use std::collections::BTreeMap;
use std::time::Duration;

const LIMIT: Duration = Duration::from_secs(120);
const DUMP_BYTES: u64 = 2 << 20;

/// Runs one transfer on a bank with in-process workers: the archives a
/// clean run delivers, and how long the processor took (from the
/// `processing` state to `pushing`).
async fn clean_run(user_seed: u8, dump_seed: u64) -> (BTreeMap<String, Vec<u8>>, Duration) {
    let mut bank = Bank::new("fc", &[]).await;
    bank.start_processor().await;
    bank.start_pusher().await;
    let u = user(user_seed);
    give_dump(&bank, &u, DUMP_BYTES, dump_seed).await;
    let client = Client::new("Clean", 1, Faults::none());
    let mut events = bank.app.state.subscribe(&client.id);
    let (status, body) = process_async(&bank.base, &client.grant(&u)).await;
    assert_eq!(status, 202, "{body}");
    let mut started = None;
    let took = loop {
        let event = tokio::time::timeout(LIMIT, events.recv())
            .await
            .unwrap()
            .unwrap();
        match event.transfer.state {
            TransferState::Processing => {
                started.get_or_insert_with(std::time::Instant::now);
            }
            // The whole build: the first archives are pushed earlier.
            TransferState::Pushing if event.transfer.built => break started.unwrap().elapsed(),
            _ => {}
        }
    };
    wait_terminal(&bank, &client.id, LIMIT).await;
    let files = assert_delivered(&bank, &client).await;
    bank.cleanup().await;
    (files, took)
}

/// SIGKILL of the processor process at a seeded point of its reading of
/// the dump; a second process takes the redelivered job over.
#[actix_web::test]
async fn processors_killed_at_random_points_deliver_the_clean_run_files() {
    let (clean, took) = clean_run(50, 5).await;
    assert_eq!(clean.len(), 3);
    for seed in [1u64, 2, 3] {
        let mut bank = Bank::new("fk", &[("ALIAS_WORKER_CONCURRENCY", "1")]).await;
        bank.start_pusher().await;
        let u = user(50);
        give_dump(&bank, &u, DUMP_BYTES, 5).await;
        let client = Client::new("Clean", 1, Faults::none());
        let fraction: f64 = rand::rngs::StdRng::seed_from_u64(seed).gen_range(0.1..0.9);
        let mut events = bank.app.state.subscribe(&client.id);
        let mut first = bank.spawn(Role::Processor);
        let (status, body) = process_async(&bank.base, &client.grant(&u)).await;
        assert_eq!(status, 202, "{body}");
        // Kill at `fraction` of a clean run's processing time after the
        // processor took the job.
        loop {
            let event = tokio::time::timeout(LIMIT, events.recv())
                .await
                .unwrap()
                .unwrap();
            if event.transfer.state == TransferState::Processing {
                break;
            }
        }
        tokio::time::sleep(took.mul_f64(fraction)).await;
        first.start_kill().unwrap();
        first.wait().await.unwrap();
        let landed = bank.app.state.transfer(&client.id).await.unwrap().unwrap();
        eprintln!(
            "seed {seed}: killed after {:?} of {took:?}, {} of {} dump bytes read, state {:?}",
            took.mul_f64(fraction),
            landed.dump_bytes_read,
            landed.dump_bytes_total,
            landed.state
        );
        bank.children.push(bank.spawn(Role::Processor));
        let t = wait_terminal(&bank, &client.id, LIMIT).await;
        assert_eq!(t.state, TransferState::Done, "seed {seed}: {t:?}");
        assert_eq!(t.generation, 1, "no restart was needed: {t:?}");
        let got = assert_delivered(&bank, &client).await;
        assert!(
            got == clean,
            "seed {seed}: the files differ from a clean run"
        );
        assert_eq!(client.sink.counters().starts, 1);
        bank.cleanup().await;
    }
}

/// SIGKILL of the pusher process at a seeded point of the push (a share of
/// the transfer's bytes acknowledged by the client); a second process
/// resumes from the committed offsets.
#[actix_web::test]
async fn pushers_killed_at_random_points_deliver_the_clean_run_files() {
    let (clean, _) = clean_run(51, 6).await;
    for seed in [4u64, 5, 6] {
        let mut bank = Bank::new("fp", &[("ALIAS_PUSH_PER_CLIENT", "1")]).await;
        bank.start_processor().await;
        let u = user(51);
        give_dump(&bank, &u, DUMP_BYTES, 6).await;
        // A slow client, so that the push spans many chunks.
        let client = Client::new(
            "Clean",
            1,
            Faults {
                delay_ms: 15,
                ..Faults::none()
            },
        );
        let fraction: f64 = rand::rngs::StdRng::seed_from_u64(seed).gen_range(0.2..0.8);
        let mut events = bank.app.state.subscribe(&client.id);
        let mut first = bank.spawn(Role::Pusher);
        let (status, body) = process_async(&bank.base, &client.grant(&u)).await;
        assert_eq!(status, 202, "{body}");
        let landed = loop {
            let event = tokio::time::timeout(LIMIT, events.recv())
                .await
                .unwrap()
                .unwrap();
            let t = event.transfer;
            #[allow(clippy::cast_precision_loss)]
            let reached =
                t.bytes_total > 0 && t.bytes_done as f64 >= fraction * t.bytes_total as f64;
            if t.state == TransferState::Pushing && reached {
                break t;
            }
            assert!(
                !t.state.is_terminal(),
                "seed {seed}: ended before the kill: {t:?}"
            );
        };
        first.start_kill().unwrap();
        first.wait().await.unwrap();
        eprintln!(
            "seed {seed}: pusher killed at {} of {} bytes",
            landed.bytes_done, landed.bytes_total
        );
        bank.children.push(bank.spawn(Role::Pusher));
        let t = wait_terminal(&bank, &client.id, LIMIT).await;
        assert_eq!(t.state, TransferState::Done, "seed {seed}: {t:?}");
        let got = assert_delivered(&bank, &client).await;
        assert!(
            got == clean,
            "seed {seed}: the files differ from a clean run"
        );
        assert_eq!(client.sink.counters().starts, 1, "seed {seed}");
        bank.cleanup().await;
    }
}

/// The local ports of `pid`'s TCP connections to Redis (port 6379), read
/// from `/proc`: the connections of this test's child processes only.
fn redis_ports_of(pid: u32) -> Vec<u16> {
    let mut inodes = std::collections::HashSet::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        if let Ok(link) = std::fs::read_link(fd.path()) {
            let link = link.to_string_lossy().into_owned();
            if let Some(inode) = link
                .strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
            {
                inodes.insert(inode.to_owned());
            }
        }
    }
    let mut ports = Vec::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (local, remote, inode) = (cols[1], cols[2], cols[9]);
            let port = |a: &str| u16::from_str_radix(a.rsplit(':').next().unwrap(), 16).unwrap();
            if port(remote) == 6379 && inodes.contains(inode) {
                ports.push(port(local));
            }
        }
    }
    ports
}

/// `CLIENT KILL` of every Redis connection of the given processes; returns
/// how many were killed.
async fn kill_redis_connections(bank: &Bank, pids: &[u32]) -> usize {
    let client = redis::Client::open(bank.config.redis_url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut killed = 0;
    for pid in pids {
        for port in redis_ports_of(*pid) {
            let n: redis::RedisResult<u64> = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("ADDR")
                .arg(format!("127.0.0.1:{port}"))
                .arg("SKIPME")
                .arg("yes")
                .query_async(&mut conn)
                .await;
            killed += n.unwrap_or(0) as usize;
        }
    }
    killed
}

/// Users, clients and grants of the multi-transfer tests: one user, one
/// client per name, every transfer accepted.
async fn start_transfers(bank: &Bank, clients: &[&Client], user_seed: u8) {
    let u = user(user_seed);
    for c in clients {
        let (status, body) = process_async(&bank.base, &c.grant(&u)).await;
        assert_eq!(status, 202, "{body}");
    }
}

#[actix_web::test]
async fn rabbitmq_connections_closed_mid_run_lose_no_transfer() {
    let mut bank = Bank::new("fr", &[]).await;
    bank.start_processor().await;
    bank.start_pusher().await;
    give_dump(&bank, &user(51), DUMP_BYTES, 6).await;
    let slow = Faults {
        delay_ms: 5,
        ..Faults::none()
    };
    let a = Client::new("Alpha", 2, slow.clone());
    let b = Client::new("Beta", 3, slow.clone());
    let c = Client::new("Gamma", 4, slow);
    let mut events = bank.app.state.subscribe(&a.id);
    start_transfers(&bank, &[&a, &b], 51).await;
    // Cut the namespace's connections while A is pushing.
    let mut cuts = 0;
    while cuts < 2 {
        let event = tokio::time::timeout(LIMIT, events.recv())
            .await
            .unwrap()
            .unwrap();
        let t = &event.transfer;
        let due = match cuts {
            0 => t.state == TransferState::Pushing && t.bytes_done > 0,
            _ => t.bytes_done > t.bytes_total / 2,
        };
        if due {
            // rabbitmqctl takes seconds: off the runtime, so the bank's
            // lease heartbeats keep running meanwhile.
            let ns = bank.ns.clone();
            let closed =
                tokio::task::spawn_blocking(move || runtime::mq::testing::close_connections(&ns))
                    .await
                    .unwrap()
                    .unwrap();
            assert!(closed >= 1, "no connection of {} found", bank.ns);
            if cuts == 0 {
                // A request right after the cut: the gateway reconnects and
                // its job is durable.
                start_transfers(&bank, &[&c], 51).await;
            }
            cuts += 1;
        }
    }
    for client in [&a, &b, &c] {
        let t = wait_terminal(&bank, &client.id, LIMIT).await;
        assert_eq!(t.state, TransferState::Done, "{t:?}");
        assert_delivered(&bank, client).await;
    }
    assert!(bank.app.broker.reconnects() >= 1);
    bank.cleanup().await;
}

#[actix_web::test]
async fn redis_connections_killed_mid_run_lose_no_transfer() {
    let mut bank = Bank::without_gateway("fd", &[]).await;
    give_dump(&bank, &user(52), DUMP_BYTES, 7).await;
    let slow = Faults {
        delay_ms: 5,
        ..Faults::none()
    };
    let a = Client::new("Alpha", 2, slow.clone());
    let b = Client::new("Beta", 3, slow);
    for role in [Role::Gateway, Role::Processor, Role::Pusher] {
        let child = bank.spawn(role);
        bank.children.push(child);
    }
    let pids: Vec<u32> = bank.children.iter().map(|c| c.id().unwrap()).collect();
    bank.wait_gateway().await;
    let mut events = bank.app.state.subscribe(&a.id);
    start_transfers(&bank, &[&a, &b], 52).await;
    // Kill the children's Redis connections while A is processed, then
    // while it is pushed.
    let mut kills = 0;
    while kills < 2 {
        let event = tokio::time::timeout(LIMIT, events.recv())
            .await
            .unwrap()
            .unwrap();
        let t = &event.transfer;
        let due = match kills {
            0 => t.state == TransferState::Processing,
            _ => t.state == TransferState::Pushing && t.bytes_done > 0,
        };
        if due {
            let killed = kill_redis_connections(&bank, &pids).await;
            assert!(killed >= 3, "only {killed} connections killed");
            kills += 1;
        }
    }
    for client in [&a, &b] {
        let t = wait_terminal(&bank, &client.id, LIMIT).await;
        assert_eq!(t.state, TransferState::Done, "{t:?}");
        assert_delivered(&bank, client).await;
    }
    // The gateway is still served after the kills.
    let c = Client::new("Gamma", 4, Faults::none());
    // Its first Redis command after the kill may meet the dead connection
    // and answer 503 "retry later"; the retry is served.
    let grant = c.grant(&user(52));
    let (mut status, mut body) = process_sync(&bank.base, &grant).await;
    if status == 503 {
        (status, body) = process_sync(&bank.base, &grant).await;
    }
    assert_eq!(status, 200, "{body}");
    assert_delivered(&bank, &c).await;
    bank.cleanup().await;
}

/// The address of the bank's Redis (for a [`Relay`] in front of it).
fn redis_addr(bank: &Bank) -> std::net::SocketAddr {
    use std::net::ToSocketAddrs;
    let url = url::Url::parse(&bank.config.redis_url).unwrap();
    let host = url.host_str().unwrap();
    (host, url.port().unwrap_or(6379))
        .to_socket_addrs()
        .unwrap()
        .next()
        .unwrap()
}

/// Polls `check` every few milliseconds until it holds (at most `LIMIT`):
/// for conditions no event announces (a client's request counters).
async fn poll_until(what: &str, mut check: impl FnMut() -> bool) {
    tokio::time::timeout(LIMIT, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

/// The shortest Redis outage of [`redis_outage_mid_push`].
const OUTAGE: Duration = Duration::from_secs(5);

/// Redis out of the pusher's reach (what a primary's failover looks like
/// from a worker) while a chunk is in flight, until the pusher's lease on
/// the file expired: its offset commit, the fence and lease renewals and
/// the state reads that follow fail. A push job must never be dropped
/// because Redis could not answer, nor hang on a connection that cannot
/// come back: every transfer still ends `done` with the clean files.
async fn redis_outage_mid_push(how: Cut, seed: u8) {
    let mut bank = Bank::new("fo", &[]).await;
    bank.start_processor().await;
    let relay = Relay::start(redis_addr(&bank)).await;
    let through_relay = format!("redis://{}", relay.addr());
    give_dump(&bank, &user(seed), DUMP_BYTES, u64::from(seed)).await;
    // Each answer of A's client takes 300 ms: a chunk is in flight long
    // enough to cut Redis under it.
    let slow = Faults {
        delay_ms: 300,
        ..Faults::none()
    };
    let a = Client::new("Alpha", 2, slow);
    let b = Client::new("Beta", 3, Faults::none());
    let pusher = bank.spawn_with(Role::Pusher, &[("ALIAS_REDIS_URL", &through_relay)]);
    bank.children.push(pusher);
    start_transfers(&bank, &[&a, &b], seed).await;
    wait_until(&bank, &a.id, LIMIT, |t| {
        t.state == TransferState::Pushing && t.bytes_done > 0
    })
    .await;
    // A chunk arrives at A's client; Redis is cut before it is answered.
    let chunks = a.sink.counters().chunk_requests;
    poll_until("a chunk at A's client", || {
        a.sink.counters().chunk_requests > chunks
    })
    .await;
    let answered = a.sink.requests().len();
    relay.cut(how);
    let cut_at = tokio::time::Instant::now();
    let t = bank.app.state.transfer(&a.id).await.unwrap().unwrap();
    assert_eq!(t.state, TransferState::Pushing, "{t:?}");
    // The chunk answered, Redis stays out of reach until the pusher's
    // lease on A's file expired in Redis (it could not renew it).
    poll_until("the chunk's answer", || a.sink.requests().len() > answered).await;
    let redis = redis::Client::open(bank.config.redis_url.as_str()).unwrap();
    let mut direct = redis.get_multiplexed_async_connection().await.unwrap();
    let leases = format!("{}:lease:push:{}:*", bank.ns, a.id);
    tokio::time::timeout(LIMIT, async {
        loop {
            let held: Vec<String> = redis::cmd("KEYS")
                .arg(&leases)
                .query_async(&mut direct)
                .await
                .unwrap();
            if held.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    // The outage lasts at least as long as a failover (the sentinels take
    // 3-4 s): the fault's length, not a synchronization.
    tokio::time::sleep_until(cut_at + OUTAGE).await;
    relay.restore();
    for client in [&a, &b] {
        let t = wait_terminal(&bank, &client.id, LIMIT).await;
        assert_eq!(t.state, TransferState::Done, "{t:?}");
        assert_delivered(&bank, client).await;
    }
    bank.cleanup().await;
}

/// [`redis_outage_mid_push`] with the server's host gone (connections
/// refused).
#[actix_web::test]
async fn a_redis_outage_mid_push_drops_no_push_job() {
    redis_outage_mid_push(Cut::Refuse, 53).await;
}

/// [`redis_outage_mid_push`] behind a proxy that accepts connections for
/// the dead server and closes them (the client's reconnection could hang).
#[actix_web::test]
async fn a_redis_outage_behind_a_proxy_hangs_no_push_job() {
    redis_outage_mid_push(Cut::AcceptClose, 54).await;
}

#[actix_web::test]
async fn duplicate_jobs_and_concurrent_requests_make_one_transfer() {
    let mut bank = Bank::new("fu", &[]).await;
    let u = user(53);
    give_dump(&bank, &u, DUMP_BYTES, 8).await;
    let client = Client::new("Dup", 5, Faults::none());
    let grant = client.grant(&u);
    // Eight requests at once for the same grant, before any worker runs.
    let answers =
        futures_util::future::join_all((0..8).map(|_| process_async(&bank.base, &grant))).await;
    for (status, body) in &answers {
        assert_eq!(*status, 202, "{body}");
        assert_eq!(body["transfer"]["id"], client.id.as_str());
        assert_eq!(body["transfer"]["generation"], 1, "{body}");
    }
    assert_eq!(
        bank.app
            .broker
            .queue_depth(runtime::mq::Queue::Work(runtime::mq::Route::Process))
            .await
            .unwrap(),
        1,
        "one process job"
    );
    // The same process job delivered twice more.
    let job = runtime::jobs::ProcessJob {
        transfer: client.id.clone(),
        generation: 1,
    };
    for _ in 0..2 {
        bank.app
            .broker
            .publish(
                runtime::mq::Route::Process,
                &runtime::jobs::encode(&job).unwrap(),
                &job.message_id(),
            )
            .await
            .unwrap();
    }
    let mut events = bank.app.state.subscribe(&client.id);
    bank.start_processor().await;
    bank.start_processor().await;
    // Once the archives are recorded, every push job is published twice more.
    loop {
        let event = tokio::time::timeout(LIMIT, events.recv())
            .await
            .unwrap()
            .unwrap();
        if event.transfer.state == TransferState::Pushing && event.transfer.built {
            break;
        }
    }
    let files = bank.app.state.files(&client.id, 1).await.unwrap();
    for f in &files {
        let job = runtime::jobs::PushJob {
            transfer: client.id.clone(),
            generation: 1,
            file: Some(f.name.clone()),
        };
        for _ in 0..2 {
            bank.app
                .broker
                .publish(
                    runtime::mq::Route::Push,
                    &runtime::jobs::encode(&job).unwrap(),
                    &job.message_id(),
                )
                .await
                .unwrap();
        }
    }
    bank.start_pusher().await;
    bank.start_pusher().await;
    let t = wait_terminal(&bank, &client.id, LIMIT).await;
    assert_eq!((t.state, t.generation), (TransferState::Done, 1), "{t:?}");
    assert_delivered(&bank, &client).await;
    assert_eq!(client.sink.counters().starts, 1);
    // One set of archives in storage.
    let stored = bank
        .app
        .storage
        .list(&format!("transfers/{}", client.id))
        .await
        .unwrap();
    assert_eq!(stored.len(), files.len(), "{stored:?}");
    bank.cleanup().await;
}

#[actix_web::test]
async fn a_dead_client_fails_alone_and_completes_when_replayed() {
    let mut bank = Bank::new(
        "fx",
        &[
            ("ALIAS_PUSH_ATTEMPTS", "2"),
            ("ALIAS_PUSH_BUDGET_SECS", "2"),
            ("ALIAS_PUSH_PER_CLIENT", "1"),
            ("ALIAS_BREAKER_FAILURES", "2"),
            ("ALIAS_BREAKER_COOLDOWN_SECS", "1"),
            ("ALIAS_WORKER_CONCURRENCY", "4"),
            ("ALIAS_PUSH_CONCURRENCY", "4"),
        ],
    )
    .await;
    bank.start_processor().await;
    bank.start_pusher().await;
    give_dump(&bank, &user(54), DUMP_BYTES, 9).await;
    let healthy = Client::new("Healthy", 2, Faults::none());
    let slow = Client::new(
        "Slow",
        3,
        Faults {
            delay_ms: 10,
            ..Faults::none()
        },
    );
    let flaky = Client::new(
        "Flaky",
        4,
        Faults {
            fail_every: 4,
            ..Faults::none()
        },
    );
    let dead = Client::new(
        "Dead",
        5,
        Faults {
            dead: true,
            ..Faults::none()
        },
    );
    start_transfers(&bank, &[&dead, &healthy, &slow, &flaky], 54).await;
    for client in [&healthy, &slow] {
        let t = wait_terminal(&bank, &client.id, LIMIT).await;
        assert_eq!(t.state, TransferState::Done, "{t:?}");
        assert_delivered(&bank, client).await;
    }
    let t = wait_terminal(&bank, &flaky.id, LIMIT).await;
    assert_eq!(t.state, TransferState::Done, "{t:?}");
    let files = bank.app.state.files(&flaky.id, t.generation).await.unwrap();
    for f in &files {
        let stored = bank.app.storage.get_bytes(&f.storage_key).await.unwrap();
        assert!(flaky.sink.read_file(&flaky.id, &f.name).unwrap() == stored.as_ref());
    }
    assert!(flaky.sink.transfer(&flaky.id).unwrap().finish_verified);
    assert!(flaky.sink.counters().injected_failures > 0);

    let t = wait_terminal(&bank, &dead.id, LIMIT).await;
    assert_eq!(t.state, TransferState::Failed, "{t:?}");
    let reason = t.error.clone().unwrap();
    assert!(reason.contains("500"), "{reason}");
    assert_eq!(dead.sink.counters().transfer_finishes, 0);
    // Its job waits in the dead-letter queue with the reason. The failure
    // is recorded before the job is dead-lettered (the worker settles the
    // delivery after its handler returns), so the letter may trail the
    // state by a moment.
    let is_mine = |l: &&runtime::mq::DeadLetter| {
        runtime::jobs::decode::<runtime::jobs::PushJob>(&l.body)
            .is_ok_and(|j| j.transfer == dead.id)
    };
    let letters = tokio::time::timeout(LIMIT, async {
        loop {
            let letters = bank.app.broker.dead_letters(100).await.unwrap();
            if letters.iter().any(|l| is_mine(&l)) {
                return letters;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the dead client's job reaches the dead-letter queue");
    let mine: Vec<_> = letters.iter().filter(is_mine).collect();
    assert!(mine.iter().all(|l| l.reason.contains("500")), "{mine:?}");

    // The client recovers; the operator replays the dead letters.
    dead.sink.set_faults(Faults::none());
    let moved = bank.app.broker.replay_dead(100).await.unwrap();
    assert_eq!(moved, letters.len());
    // The replayed job takes the failed generation up again (it leaves
    // `failed`), then it ends.
    let failed_at = t.updated_ms;
    wait_until(&bank, &dead.id, LIMIT, |t| {
        t.state != TransferState::Failed || t.updated_ms != failed_at
    })
    .await;
    let t = wait_terminal(&bank, &dead.id, LIMIT).await;
    assert_eq!(t.state, TransferState::Done, "{t:?}");
    assert_eq!(t.error, None, "{t:?}");
    let files = bank.app.state.files(&dead.id, t.generation).await.unwrap();
    for f in &files {
        let stored = bank.app.storage.get_bytes(&f.storage_key).await.unwrap();
        assert!(dead.sink.read_file(&dead.id, &f.name).unwrap() == stored.as_ref());
    }
    let state = dead.sink.transfer(&dead.id).unwrap();
    assert!(state.finished && state.finish_verified, "{state:?}");
    assert_eq!(dead.sink.counters().transfer_finishes, 1);
    bank.cleanup().await;
}

#[actix_web::test]
async fn sigterm_with_pushes_in_flight_loses_nothing() {
    let mut bank = Bank::new(
        "ft",
        &[
            ("ALIAS_WORKER_CONCURRENCY", "4"),
            ("ALIAS_PUSH_CONCURRENCY", "4"),
            ("ALIAS_PUSH_RUN_BYTES", "262144"),
        ],
    )
    .await;
    bank.start_processor().await;
    give_dump(&bank, &user(55), DUMP_BYTES, 10).await;
    let slow = Faults {
        delay_ms: 5,
        ..Faults::none()
    };
    let a = Client::new("Alpha", 2, slow.clone());
    let b = Client::new("Beta", 3, slow);
    let mut first = bank.spawn(Role::Pusher);
    let mut events = bank.app.state.subscribe(&a.id);
    start_transfers(&bank, &[&a, &b], 55).await;
    loop {
        let event = tokio::time::timeout(LIMIT, events.recv())
            .await
            .unwrap()
            .unwrap();
        if event.transfer.state == TransferState::Pushing && event.transfer.bytes_done > 0 {
            break;
        }
    }
    let pid = first.id().unwrap().to_string();
    let status = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(90), first.wait())
        .await
        .expect("the pusher stops within its grace period")
        .unwrap();
    assert!(exit.success(), "graceful exit: {exit:?}");
    let a_then = bank.app.state.transfer(&a.id).await.unwrap().unwrap();
    bank.children.push(bank.spawn(Role::Pusher));
    for client in [&a, &b] {
        let t = wait_terminal(&bank, &client.id, LIMIT).await;
        assert_eq!(t.state, TransferState::Done, "{t:?}");
        assert_eq!(t.generation, 1, "{t:?}");
        assert_delivered(&bank, client).await;
    }
    eprintln!(
        "at the stop, A had {} of {} bytes",
        a_then.bytes_done, a_then.bytes_total
    );
    bank.cleanup().await;
}

/// Pub/sub keeps nothing: a change published while a process's event hub
/// reconnects is lost to its watchers. The hub, once subscribed again,
/// sends every watched transfer's current record as a `status` event.
/// Here the change is written straight into the record (no event at all),
/// then this process's Redis connections are killed.
#[actix_web::test]
async fn watchers_get_the_current_status_after_the_event_hub_reconnects() {
    let bank = Bank::new("fh", &[]).await;
    let id = "hub-resync-transfer";
    let new = runtime::state::NewTransfer {
        grant_token: "{}",
        grant_hash: "h",
        user: "u",
        push_url: "http://127.0.0.1:9/alias/push/x",
        revoked: false,
    };
    bank.app.state.begin_transfer(id, &new).await.unwrap();
    let mut events = bank.app.state.subscribe(id);

    let config = &bank.config;
    runtime::state::testing::write_without_event(
        &config.redis_url,
        &config.namespace,
        id,
        "bytes_done",
        "4242",
    )
    .await;
    assert!(events.try_recv().is_err(), "no event was published");

    let killed = kill_redis_connections(&bank, &[std::process::id()]).await;
    assert!(killed >= 2, "only {killed} connections killed");
    // The hub reconnects within moments (its backoff starts at 100 ms).
    let event = tokio::time::timeout(Duration::from_secs(30), events.recv())
        .await
        .expect("an event after the reconnection")
        .unwrap();
    assert_eq!(event.kind, "status");
    assert_eq!(event.transfer.id, id);
    assert_eq!(event.transfer.bytes_done, 4242);
    bank.cleanup().await;
}
