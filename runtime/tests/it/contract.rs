//! The contract of the message bus and of the state store, run against both
//! implementations: in-process (`memory::…`) and real RabbitMQ + Redis
//! (`real::…`). The embedded mode is only as good as this agreement.

use runtime::mq::{Broker, BrokerConfig, Consumer, Delivery, Queue, Route};
use runtime::state::{
    ClientName, DumpRecord, FileRecord, FileTrouble, Lease, LeaseGuard, Mark, NewTransfer,
    PreviewKey, PreviewLimits, PreviewStart, PreviewState, Quotas, Request, RetryNote,
    ScopeSummary, State, StateError, TransferState, WebCounter, WebKey, WebList,
};
use std::time::Duration;

#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Memory,
    Real,
}

const WAIT: Duration = Duration::from_secs(15);

/// A bus and a state on a fresh namespace; the real ones are cleaned up.
struct Env {
    broker: Broker,
    state: State,
    real: bool,
}

impl Env {
    async fn new(backend: Backend) -> Env {
        Self::with(backend, Duration::from_secs(60), Quotas::DEFAULT).await
    }

    async fn with(backend: Backend, ttl: Duration, quotas: Quotas) -> Env {
        let ns = format!("c-{}", uuid::Uuid::new_v4().simple());
        match backend {
            Backend::Memory => Env {
                broker: Broker::in_memory(&ns).unwrap(),
                state: State::in_memory_with(&ns, ttl, quotas),
                real: false,
            },
            Backend::Real => {
                let amqp = std::env::var("ALIAS_AMQP_URL")
                    .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
                let redis = std::env::var("ALIAS_REDIS_URL")
                    .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
                let config = BrokerConfig {
                    publish_timeout: Duration::from_secs(20),
                    ..BrokerConfig::default()
                };
                Env {
                    broker: Broker::connect_with(&amqp, &ns, config)
                        .await
                        .expect("RabbitMQ reachable (scripts/services starts it)"),
                    state: State::connect_with(&redis, &ns, ttl, quotas)
                        .await
                        .expect("Redis reachable (scripts/services starts it)"),
                    real: true,
                }
            }
        }
    }

    async fn finish(self) {
        if self.real {
            self.broker.delete_topology().await;
            self.broker.close().await;
            self.state.purge_namespace().await.unwrap();
        }
    }
}

async fn next(consumer: &mut Consumer) -> Delivery {
    tokio::time::timeout(WAIT, consumer.next())
        .await
        .expect("a delivery in time")
        .expect("consumer open")
        .expect("delivery")
}

async fn none_within(consumer: &mut Consumer, wait: Duration) {
    if let Ok(Some(d)) = tokio::time::timeout(wait, consumer.next()).await {
        panic!("unexpected delivery {d:?}");
    }
}

async fn depth_becomes(broker: &Broker, queue: Queue, want: u32) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = broker.queue_depth(queue).await.unwrap();
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{queue:?}: depth {got}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---- bus --------------------------------------------------------------------

pub async fn bus_publish_consume_ack(backend: Backend) {
    let env = Env::new(backend).await;
    let b = &env.broker;
    for i in 0..3 {
        b.publish(
            Route::Process,
            format!("job {i}").as_bytes(),
            &format!("m{i}"),
        )
        .await
        .unwrap();
    }
    depth_becomes(b, Queue::Work(Route::Process), 3).await;
    assert_eq!(b.queue_depth(Route::Push).await.unwrap(), 0);
    let mut c = b.consume(Route::Process, 10, "contract").await.unwrap();
    assert_eq!(c.route(), Route::Process);
    for i in 0..3 {
        let d = next(&mut c).await;
        assert_eq!(d.body(), format!("job {i}").as_bytes());
        assert_eq!(d.message_id(), Some(format!("m{i}").as_str()));
        assert!(!d.redelivered());
        assert_eq!(d.delivery_count(), 0);
        d.ack().await.unwrap();
    }
    none_within(&mut c, Duration::from_millis(300)).await;
    assert_eq!(b.queue_depth(Route::Process).await.unwrap(), 0);
    assert!(b.is_healthy().await);
    c.cancel().await;
    env.finish().await;
}

pub async fn bus_unsettled_is_redelivered(backend: Backend) {
    let env = Env::new(backend).await;
    let b = &env.broker;
    b.publish(Route::Push, b"once", "m1").await.unwrap();
    let mut c = b.consume(Route::Push, 1, "contract").await.unwrap();
    let first = next(&mut c).await;
    first.nack_requeue().await.unwrap();
    let second = next(&mut c).await;
    assert_eq!(second.body(), b"once");
    assert!(second.redelivered());
    assert_eq!(second.delivery_count(), 1);
    drop(second); // unsettled: back to the queue
    let third = next(&mut c).await;
    assert!(third.redelivered());
    assert_eq!(third.delivery_count(), 2);
    third.ack().await.unwrap();
    none_within(&mut c, Duration::from_millis(300)).await;
    env.finish().await;
}

pub async fn bus_prefetch_bounds_unsettled(backend: Backend) {
    let env = Env::new(backend).await;
    let b = &env.broker;
    for i in 0..3 {
        b.publish(Route::Process, b"x", &format!("m{i}"))
            .await
            .unwrap();
    }
    let mut c = b.consume(Route::Process, 2, "contract").await.unwrap();
    let d1 = next(&mut c).await;
    let d2 = next(&mut c).await;
    none_within(&mut c, Duration::from_millis(300)).await;
    d1.ack().await.unwrap();
    let d3 = next(&mut c).await;
    assert_eq!(d3.message_id(), Some("m2"));
    d2.ack().await.unwrap();
    d3.ack().await.unwrap();
    env.finish().await;
}

pub async fn bus_dead_letters_listed_and_replayed(backend: Backend) {
    let env = Env::new(backend).await;
    let b = &env.broker;
    b.publish(Route::Process, b"rejected", "r1").await.unwrap();
    let mut c = b.consume(Route::Process, 5, "contract").await.unwrap();
    next(&mut c).await.reject().await.unwrap();
    b.dead_letter(Route::Push, b"given up", "g1", "client gone")
        .await
        .unwrap();
    depth_becomes(b, Queue::Dead, 2).await;
    let letters = b.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 2);
    let rejected = letters
        .iter()
        .find(|l| l.message_id.as_deref() == Some("r1"))
        .unwrap();
    assert_eq!(rejected.route, Some(Route::Process));
    assert!(rejected.reason.contains("rejected"), "{}", rejected.reason);
    let given_up = letters
        .iter()
        .find(|l| l.message_id.as_deref() == Some("g1"))
        .unwrap();
    assert_eq!(given_up.route, Some(Route::Push));
    assert_eq!(given_up.reason, "client gone");
    assert_eq!(given_up.body, b"given up");
    // Listing leaves them in place.
    assert_eq!(b.dead_letters(10).await.unwrap().len(), 2);
    assert_eq!(b.replay_dead(10).await.unwrap(), 2);
    depth_becomes(b, Queue::Dead, 0).await;
    let again = next(&mut c).await;
    assert_eq!(again.body(), b"rejected");
    again.ack().await.unwrap();
    let mut p = b.consume(Route::Push, 5, "contract").await.unwrap();
    let pushed = next(&mut p).await;
    assert_eq!(pushed.body(), b"given up");
    pushed.ack().await.unwrap();
    env.finish().await;
}

pub async fn bus_delayed_publish_arrives_later(backend: Backend) {
    let env = Env::new(backend).await;
    let b = &env.broker;
    let mut c = b.consume(Route::Push, 5, "contract").await.unwrap();
    b.publish_delayed(Route::Push, b"later", "d1", Duration::from_millis(900))
        .await
        .unwrap();
    depth_becomes(b, Queue::Delayed(Route::Push), 1).await;
    none_within(&mut c, Duration::from_millis(300)).await;
    let d = next(&mut c).await;
    assert_eq!(d.body(), b"later");
    d.ack().await.unwrap();
    depth_becomes(b, Queue::Delayed(Route::Push), 0).await;
    env.finish().await;
}

pub async fn bus_close_ends_consumers(backend: Backend) {
    let env = Env::new(backend).await;
    let b = env.broker.clone();
    let mut c = b.consume(Route::Process, 5, "contract").await.unwrap();
    let waiting = tokio::spawn(async move { c.next().await.is_none() });
    b.delete_topology().await;
    b.close().await;
    assert!(tokio::time::timeout(WAIT, waiting).await.unwrap().unwrap());
    assert!(!b.is_healthy().await);
    assert!(b.publish(Route::Process, b"x", "late").await.is_err());
    if env.real {
        env.state.purge_namespace().await.unwrap();
    }
}

// ---- state ------------------------------------------------------------------

fn new_transfer<'a>(grant_hash: &'a str) -> NewTransfer<'a> {
    NewTransfer {
        grant_token: "token",
        grant_hash,
        user: "user-key",
        push_url: "https://client.example/alias/push/h",
        revoked: false,
    }
}

fn file(name: &str, size: u64) -> FileRecord {
    FileRecord {
        name: name.into(),
        scope: "google.photos".into(),
        storage_key: format!("archives/{name}"),
        size,
        blake2b: "h".into(),
        offset: 0,
        finished: false,
    }
}

pub async fn state_transfer_lifecycle(backend: Backend) {
    let env = Env::new(backend).await;
    let s = &env.state;
    assert_eq!(s.transfer("t1").await.unwrap(), None);
    let begin = s.begin_transfer("t1", &new_transfer("g1")).await.unwrap();
    assert_eq!(
        (begin.generation, begin.joined, begin.superseded),
        (1, false, None)
    );
    let joined = s.begin_transfer("t1", &new_transfer("g1")).await.unwrap();
    assert_eq!((joined.generation, joined.joined), (1, true));
    assert_eq!(
        s.transfer_grant("t1").await.unwrap().as_deref(),
        Some("token")
    );
    let t = s.transfer("t1").await.unwrap().unwrap();
    assert_eq!(
        (t.state, t.generation, t.user.as_str()),
        (TransferState::Accepted, 1, "user-key")
    );

    use TransferState::*;
    assert!(!s
        .transition("t1", 2, &[Accepted], Processing, None)
        .await
        .unwrap());
    assert!(!s
        .transition("t1", 1, &[Pushing], Processing, None)
        .await
        .unwrap());
    assert!(s
        .transition("t1", 1, &[Accepted], Processing, None)
        .await
        .unwrap());
    s.processing_progress("t1", 1, 10, 40).await.unwrap();
    s.add_note("t1", 1, "no amazon dump").await.unwrap();
    s.add_note("t1", 7, "ignored").await.unwrap();
    s.set_files("t1", 1, &[file("b.zip", 10), file("a.zip", 5)])
        .await
        .unwrap();
    assert!(s
        .transition("t1", 1, &[Processing], Pushing, None)
        .await
        .unwrap());
    let t = s.transfer("t1").await.unwrap().unwrap();
    assert_eq!((t.files_total, t.bytes_total), (2, 15));
    assert_eq!((t.dump_bytes_read, t.dump_bytes_total), (10, 40));
    assert_eq!(t.notes, vec!["no amazon dump".to_owned()]);

    assert_eq!(s.commit_offset("t1", 1, "a.zip", 3).await.unwrap(), Some(3));
    assert_eq!(s.commit_offset("t1", 1, "a.zip", 2).await.unwrap(), Some(3));
    assert_eq!(s.commit_offset("t1", 1, "a.zip", 5).await.unwrap(), Some(5));
    assert_eq!(s.commit_offset("t1", 2, "a.zip", 5).await.unwrap(), None);
    let files = s.files("t1", 1).await.unwrap();
    let names: Vec<_> = files.iter().map(|f| (f.name.as_str(), f.offset)).collect();
    assert_eq!(names, vec![("a.zip", 5), ("b.zip", 0)]);
    assert!(s.finish_file("t1", 1, "a.zip").await.unwrap());
    assert!(!s.finish_file("t1", 1, "a.zip").await.unwrap());
    let t = s.transfer("t1").await.unwrap().unwrap();
    assert_eq!((t.bytes_done, t.files_done), (5, 1));

    assert!(s
        .transition("t1", 1, &[Pushing], Failed, Some("client gone"))
        .await
        .unwrap());
    let t = s.transfer("t1").await.unwrap().unwrap();
    assert_eq!((t.state, t.error.as_deref()), (Failed, Some("client gone")));
    assert!(!s.transition("t1", 1, &[Pushing], Done, None).await.unwrap());
    // A failed generation taken up again (a replayed dead letter) runs
    // without its error, then fails again.
    assert!(s
        .transition("t1", 1, &[Failed], Pushing, None)
        .await
        .unwrap());
    let t = s.transfer("t1").await.unwrap().unwrap();
    assert_eq!((t.state, t.error), (Pushing, None));
    assert!(s
        .transition("t1", 1, &[Pushing], Failed, Some("still gone"))
        .await
        .unwrap());
    assert_eq!(s.cancel("t1", "late").await.unwrap(), None);

    // A finished transfer starts again with a new generation, nothing superseded.
    let again = s.begin_transfer("t1", &new_transfer("g1")).await.unwrap();
    assert_eq!(
        (again.generation, again.joined, again.superseded),
        (2, false, None)
    );
    let t = s.transfer("t1").await.unwrap().unwrap();
    assert_eq!((t.state, t.files_total, t.error), (Accepted, 0, None));
    assert!(s.files("t1", 2).await.unwrap().is_empty());
    let counts = s.count_by_state().await.unwrap();
    assert_eq!(counts.get(&Accepted), Some(&1));
    env.finish().await;
}

pub async fn state_supersede_restart_cancel(backend: Backend) {
    let env = Env::new(backend).await;
    let s = &env.state;
    s.begin_transfer("t2", &new_transfer("old")).await.unwrap();
    let newer = s.begin_transfer("t2", &new_transfer("new")).await.unwrap();
    assert_eq!(
        (newer.generation, newer.joined, newer.superseded),
        (2, false, Some(1))
    );
    assert_eq!(s.restart_generation("t2", 1, "stale").await.unwrap(), None);
    // Only a pushing generation restarts (it has its archives).
    assert_eq!(s.restart_generation("t2", 2, "early").await.unwrap(), None);
    s.transition(
        "t2",
        2,
        &[TransferState::Accepted],
        TransferState::Pushing,
        None,
    )
    .await
    .unwrap();
    s.set_files("t2", 2, &[file("a.zip", 10), file("b.zip", 5)])
        .await
        .unwrap();
    assert_eq!(s.commit_offset("t2", 2, "a.zip", 4).await.unwrap(), Some(4));
    assert!(s.finish_file("t2", 2, "b.zip").await.unwrap());
    assert_eq!(
        s.restart_generation("t2", 2, "unknown outcome")
            .await
            .unwrap(),
        Some(3)
    );
    // The restart pushes the same archives again from the start: the
    // records are carried over with no offset and nothing finished, and the
    // new generation is pushing at once (nothing is built again).
    let t = s.transfer("t2").await.unwrap().unwrap();
    assert_eq!((t.generation, t.state), (3, TransferState::Pushing));
    assert_eq!(
        (t.files_total, t.files_done, t.bytes_total, t.bytes_done),
        (2, 0, 15, 0)
    );
    let files = s.files("t2", 3).await.unwrap();
    assert_eq!(files, vec![file("a.zip", 10), file("b.zip", 5)]);
    // A late file finish of a superseded generation counts nowhere.
    assert!(!s.finish_file("t2", 2, "a.zip").await.unwrap());
    assert_eq!(s.transfer("t2").await.unwrap().unwrap().files_done, 0);
    assert_eq!(t.notes, vec!["unknown outcome".to_owned()]);
    assert_eq!(s.cancel("t2", "revoked").await.unwrap(), Some(3));
    let t = s.transfer("t2").await.unwrap().unwrap();
    assert_eq!(
        (t.state, t.error.as_deref()),
        (TransferState::Cancelled, Some("revoked"))
    );
    assert_eq!(s.restart_generation("t2", 3, "late").await.unwrap(), None);
    env.finish().await;
}

pub async fn state_contracts_bind_to_their_first_user(backend: Backend) {
    let env = Env::new(backend).await;
    let s = &env.state;
    assert_eq!(s.contract_owner("c").await.unwrap(), None);
    assert_eq!(s.claim_contract("c", "alice").await.unwrap(), "alice");
    assert_eq!(s.claim_contract("c", "alice").await.unwrap(), "alice");
    assert_eq!(s.claim_contract("c", "bob").await.unwrap(), "alice");
    assert_eq!(
        s.contract_owner("c").await.unwrap().as_deref(),
        Some("alice")
    );
    assert_eq!(s.claim_contract("d", "bob").await.unwrap(), "bob");
    // Concurrent first claims: exactly one user wins, and every caller sees it.
    let claims: Vec<String> = futures_like_join(s, "e").await;
    assert!(claims.iter().all(|o| o == &claims[0]), "{claims:?}");

    // A transfer belongs to one user: another user's begin changes nothing,
    // running or finished.
    let mine = NewTransfer {
        user: "alice",
        ..new_transfer("ga")
    };
    let theirs = NewTransfer {
        user: "bob",
        ..new_transfer("gb")
    };
    let first = s.begin_transfer("c", &mine).await.unwrap();
    assert!(!first.foreign);
    let refused = s.begin_transfer("c", &theirs).await.unwrap();
    assert!(refused.foreign && !refused.joined && refused.superseded.is_none());
    let t = s.transfer("c").await.unwrap().unwrap();
    assert_eq!(
        (
            t.user.as_str(),
            t.grant_hash.as_str(),
            t.generation,
            t.state
        ),
        ("alice", "ga", 1, TransferState::Accepted)
    );
    assert_eq!(s.cancel("c", "done here").await.unwrap(), Some(1));
    assert!(s.begin_transfer("c", &theirs).await.unwrap().foreign);
    let t = s.transfer("c").await.unwrap().unwrap();
    assert_eq!((t.user.as_str(), t.generation), ("alice", 1));
    let again = s.begin_transfer("c", &mine).await.unwrap();
    assert_eq!((again.generation, again.foreign), (2, false));
    env.finish().await;
}

/// Claims of one contract by four users at once.
async fn futures_like_join(s: &State, contract: &str) -> Vec<String> {
    let mut tasks = Vec::new();
    for user in ["u1", "u2", "u3", "u4"] {
        let (s, contract) = (s.clone(), contract.to_owned());
        tasks.push(tokio::spawn(async move {
            s.claim_contract(&contract, user).await.unwrap()
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

pub async fn state_restart_fence(backend: Backend) {
    use TransferState::*;
    let env = Env::new(backend).await;
    let s = &env.state;
    let long = Duration::from_secs(60);
    s.begin_transfer("f", &new_transfer("g")).await.unwrap();
    // Only the current generation, while pushing, may enter.
    assert!(!s.enter_fence("f", 1, "early", long).await.unwrap());
    s.transition("f", 1, &[Accepted], Processing, None)
        .await
        .unwrap();
    s.transition("f", 1, &[Processing], Pushing, None)
        .await
        .unwrap();
    assert!(s.enter_fence("f", 1, "a", long).await.unwrap());
    assert!(!s.enter_fence("f", 2, "x", long).await.unwrap());
    // A generation never waits for itself, a later one waits for it.
    assert!(s.fence_clear("f", 1).await.unwrap());
    assert!(!s.fence_clear("f", 2).await.unwrap());
    assert!(s.fence_clear("other", 2).await.unwrap());
    assert_eq!(
        s.restart_generation("f", 1, "restart").await.unwrap(),
        Some(2)
    );
    // The superseded generation cannot enter any more...
    assert!(!s.enter_fence("f", 1, "late", long).await.unwrap());
    // ...but its holder still blocks generation 2 until it leaves.
    assert!(!s.fence_clear("f", 2).await.unwrap());
    assert!(s.renew_fence("f", 1, "a", long).await.unwrap());
    s.leave_fence("f", 1, "a").await.unwrap();
    assert!(!s.renew_fence("f", 1, "a", long).await.unwrap());
    assert!(s.fence_clear("f", 2).await.unwrap());
    // A holder that disappears without leaving expires.
    s.transition("f", 2, &[Accepted], Pushing, None)
        .await
        .unwrap();
    assert!(s
        .enter_fence("f", 2, "lost", Duration::from_millis(100))
        .await
        .unwrap());
    assert!(s.enter_fence("f", 2, "b", long).await.unwrap());
    assert!(!s.fence_clear("f", 3).await.unwrap());
    s.leave_fence("f", 2, "b").await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !s.fence_clear("f", 3).await.unwrap() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "fence entry never expired"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!s.renew_fence("f", 2, "lost", long).await.unwrap());
    // A cancelled generation cannot enter.
    s.cancel("f", "revoked").await.unwrap();
    assert!(!s.enter_fence("f", 2, "c", long).await.unwrap());
    env.finish().await;
}

pub async fn state_events_follow_changes(backend: Backend) {
    let env = Env::new(backend).await;
    let s = &env.state;
    let mut events = s.subscribe("t3");
    // Redis delivers through a pattern subscription that starts in the
    // background: emit until the first event arrives.
    s.begin_transfer("t3", &new_transfer("g")).await.unwrap();
    let first = tokio::time::timeout(WAIT, async {
        loop {
            match tokio::time::timeout(Duration::from_millis(200), events.recv()).await {
                Ok(event) => return event.unwrap(),
                Err(_) => s.emit("t3", "accepted").await.unwrap(),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(first.kind, "accepted");
    assert_eq!(first.transfer.state, TransferState::Accepted);
    s.transition(
        "t3",
        1,
        &[TransferState::Accepted],
        TransferState::Processing,
        None,
    )
    .await
    .unwrap();
    let next = tokio::time::timeout(WAIT, async {
        loop {
            let e = events.recv().await.unwrap();
            if e.kind != "accepted" {
                return e;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(next.kind, "processing");
    assert_eq!(next.transfer.state, TransferState::Processing);
    env.finish().await;
}

pub async fn state_grants_follow_the_newer_rule(backend: Backend) {
    let env = Env::new(backend).await;
    let s = &env.state;
    assert_eq!(s.stored_grant("u", "c").await.unwrap(), None);
    assert_eq!(
        s.update_grant("u", "c", 2.0, "t2").await.unwrap(),
        ("t2".into(), true)
    );
    assert_eq!(
        s.update_grant("u", "c", 1.0, "t1").await.unwrap(),
        ("t2".into(), false)
    );
    assert_eq!(
        s.update_grant("u", "c", 2.0, "t2b").await.unwrap(),
        ("t2".into(), false)
    );
    assert_eq!(
        s.update_grant("u", "c", 3.0, "t3").await.unwrap(),
        ("t3".into(), true)
    );
    s.update_grant("u", "d", 1.0, "d1").await.unwrap();
    assert_eq!(
        s.stored_grant("u", "c").await.unwrap().as_deref(),
        Some("t3")
    );
    assert_eq!(s.grant_history("u").await.unwrap(), vec!["d1", "t3", "t2"]);
    let mut contracts = s.contracts_of("u").await.unwrap();
    contracts.sort();
    assert_eq!(contracts, vec!["c", "d"]);
    env.finish().await;
}

pub async fn state_users_dumps_and_bindings(backend: Backend) {
    let env = Env::new(backend).await;
    let s = &env.state;
    assert!(!s.is_known_user("u").await.unwrap());
    let dump = |provider: &str, name: &str| DumpRecord {
        provider: provider.into(),
        name: name.into(),
        key: format!("dumps/u/{provider}/{name}"),
        size: 3,
        blake2b: "h".into(),
        uploaded_ms: 1,
    };
    s.record_dump("u", &dump("google", "b.zip")).await.unwrap();
    s.record_dump("u", &dump("amazon", "a.zip")).await.unwrap();
    s.record_dump("u", &dump("google", "a.zip")).await.unwrap();
    assert!(s.is_known_user("u").await.unwrap());
    let names: Vec<_> = s
        .dumps("u")
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.key)
        .collect();
    assert_eq!(
        names,
        vec![
            "dumps/u/amazon/a.zip",
            "dumps/u/google/a.zip",
            "dumps/u/google/b.zip"
        ]
    );
    assert!(s.delete_dump("u", "google", "a.zip").await.unwrap());
    assert!(!s.delete_dump("u", "google", "a.zip").await.unwrap());
    assert_eq!(s.binding("v").await.unwrap(), None);
    s.set_binding("v", "bind-token").await.unwrap();
    assert_eq!(s.binding("v").await.unwrap().as_deref(), Some("bind-token"));
    assert!(s.is_known_user("v").await.unwrap());
    env.finish().await;
}

pub async fn state_flags_counters_and_leases(backend: Backend) {
    let env = Env::new(backend).await;
    let s = &env.state;
    let long = Duration::from_secs(60);
    assert!(s.claim_once("req", long).await.unwrap());
    assert!(!s.claim_once("req", long).await.unwrap());
    // Counters of the web side, by what they count: the same words in
    // two kinds of counter are two counters.
    let n = WebCounter::UserFailures("n");
    assert_eq!(s.count(&n, long).await.unwrap(), 1);
    assert_eq!(s.count(&n, long).await.unwrap(), 2);
    assert_eq!(s.counted(&n).await.unwrap(), 2);
    assert_eq!(
        s.counted(&WebCounter::UserFailures("none")).await.unwrap(),
        0
    );
    assert_eq!(s.counted(&WebCounter::Attempts("n")).await.unwrap(), 0);
    let by_addr = WebCounter::AddressFailures {
        address: "a",
        username: "n",
    };
    let by_device = WebCounter::DeviceFailures {
        device: "a",
        username: "n",
    };
    assert_eq!(s.count(&by_addr, long).await.unwrap(), 1);
    assert_eq!(s.counted(&by_device).await.unwrap(), 0);
    s.reset_count(&n).await.unwrap();
    assert_eq!(s.counted(&n).await.unwrap(), 0);
    assert_eq!(s.counted(&by_addr).await.unwrap(), 1, "only n was reset");
    assert_eq!(s.count(&n, long).await.unwrap(), 1);
    // Client health: failures, breaker, restarts, by key and by domain.
    let dom = ClientName::Domain("c.example".into());
    let key = ClientName::Key("K".into());
    assert_eq!(s.client_failure(&dom, long).await.unwrap(), 1);
    assert_eq!(s.client_failure(&dom, long).await.unwrap(), 2);
    assert_eq!(s.client_failure(&key, long).await.unwrap(), 1);
    s.client_success(&dom).await.unwrap();
    assert_eq!(s.client_failure(&dom, long).await.unwrap(), 1);
    assert_eq!(s.client_failure(&key, long).await.unwrap(), 2);
    assert!(!s.breaker_open(&key).await.unwrap());
    assert!(s.open_breaker(&key, long).await.unwrap());
    assert!(!s.open_breaker(&key, long).await.unwrap());
    assert!(s.breaker_open(&key).await.unwrap());
    assert!(!s.breaker_open(&dom).await.unwrap());
    s.close_breaker(&key).await.unwrap();
    assert!(!s.breaker_open(&key).await.unwrap());
    assert!(s
        .open_breaker(&dom, Duration::from_millis(100))
        .await
        .unwrap());
    assert_eq!(s.client_restart(&key, long).await.unwrap(), 1);
    assert_eq!(s.client_restart(&key, long).await.unwrap(), 2);
    assert_eq!(s.client_restart(&dom, long).await.unwrap(), 1);
    // A breaker opened for a cooldown closes by itself.
    let deadline = tokio::time::Instant::now() + WAIT;
    while s.breaker_open(&dom).await.unwrap() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "breaker never closed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let l = Lease::push("t", 1, "a.zip");
    assert!(s.acquire_lease(&l, "a", long).await.unwrap());
    assert!(!s.acquire_lease(&l, "b", long).await.unwrap());
    assert!(!s.renew_lease(&l, "b", long).await.unwrap());
    assert!(s.renew_lease(&l, "a", long).await.unwrap());
    assert!(!s.release_lease(&l, "b").await.unwrap());
    assert!(s.release_lease(&l, "a").await.unwrap());
    // Leases of other things, generations and files are other leases.
    for other in [
        Lease::push("t", 1, "b.zip"),
        Lease::push("t", 2, "a.zip"),
        Lease::process("t", 1),
        Lease::start("t", 1),
        Lease::finish("t", 1),
        Lease::client_slot(&ClientName::Key("K".into()), 0),
        Lease::client_slot(&ClientName::Domain("K".into()), 0),
    ] {
        assert!(s.acquire_lease(&other, "x", long).await.unwrap(), "{other}");
    }
    assert!(s
        .acquire_lease(&l, "b", Duration::from_millis(100))
        .await
        .unwrap());
    // An abandoned lease frees itself after its TTL.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !s.acquire_lease(&l, "c", long).await.unwrap() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "lease never expired"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!s.renew_lease(&l, "b", long).await.unwrap());
    env.finish().await;
}

pub async fn state_generation_marks(backend: Backend) {
    let env = Env::new(backend).await;
    let s = &env.state;
    let long = Duration::from_secs(60);
    let marks = [
        Mark::Built,
        Mark::Started,
        Mark::FileDone("a.zip"),
        Mark::FileDone("b.zip"),
        Mark::InFlight("a.zip"),
        Mark::DeadLetter(Some("a.zip")),
        Mark::DeadLetter(None),
    ];
    // Each mark is its own, per transfer and generation.
    for (i, mark) in marks.iter().enumerate() {
        assert!(!s.marked("t", 1, *mark).await.unwrap(), "{mark:?}");
        assert!(s.mark("t", 1, *mark, long).await.unwrap(), "{mark:?}");
        assert!(!s.mark("t", 1, *mark, long).await.unwrap(), "{mark:?}");
        for later in &marks[i + 1..] {
            assert!(!s.marked("t", 1, *later).await.unwrap(), "{later:?}");
        }
        assert!(!s.marked("t", 2, *mark).await.unwrap(), "{mark:?}");
        assert!(!s.marked("u", 1, *mark).await.unwrap(), "{mark:?}");
    }
    s.unmark("t", 1, Mark::InFlight("a.zip")).await.unwrap();
    assert!(!s.marked("t", 1, Mark::InFlight("a.zip")).await.unwrap());
    assert!(s.marked("t", 1, Mark::FileDone("a.zip")).await.unwrap());
    // A mark with a short life goes by itself.
    assert!(s
        .mark("t", 3, Mark::Started, Duration::from_millis(100))
        .await
        .unwrap());
    let deadline = tokio::time::Instant::now() + WAIT;
    while s.marked("t", 3, Mark::Started).await.unwrap() {
        assert!(tokio::time::Instant::now() < deadline, "mark never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Retry budgets start at the first failure and are kept per request.
    let start = s
        .retrying_since("t", 1, Request::Start, long)
        .await
        .unwrap();
    let file = s
        .retrying_since("t", 1, Request::File("a.zip"), long)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert_eq!(
        s.retrying_since("t", 1, Request::Start, long)
            .await
            .unwrap(),
        start
    );
    s.forget_retrying("t", 1, Request::Start).await.unwrap();
    assert!(
        s.retrying_since("t", 1, Request::Start, long)
            .await
            .unwrap()
            > start
    );
    assert_eq!(
        s.retrying_since("t", 1, Request::File("a.zip"), long)
            .await
            .unwrap(),
        file
    );

    // Per-file trouble counters and the transfer's restarts.
    use FileTrouble::*;
    assert_eq!(s.file_trouble("t", 1, "a.zip", Failures).await.unwrap(), 0);
    assert_eq!(
        s.add_file_trouble("t", 1, "a.zip", Failures, long)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        s.add_file_trouble("t", 1, "a.zip", Failures, long)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        s.add_file_trouble("t", 1, "a.zip", Rewinds, long)
            .await
            .unwrap(),
        1
    );
    assert_eq!(s.file_trouble("t", 1, "a.zip", Failures).await.unwrap(), 2);
    assert_eq!(s.file_trouble("t", 1, "b.zip", Failures).await.unwrap(), 0);
    assert_eq!(s.file_trouble("t", 2, "a.zip", Rewinds).await.unwrap(), 0);
    assert_eq!(s.count_restart("t", long).await.unwrap(), 1);
    assert_eq!(s.count_restart("t", long).await.unwrap(), 2);
    assert_eq!(s.count_restart("u", long).await.unwrap(), 1);
    env.finish().await;
}

pub async fn state_lease_guard_renews_and_releases(backend: Backend) {
    let env = Env::new(backend).await;
    let s = &env.state;
    let ttl = Duration::from_millis(200);
    let guard = LeaseGuard::acquire(s, Lease::process("t", 1), "a", ttl)
        .await
        .unwrap()
        .expect("a free lease");
    assert!(LeaseGuard::acquire(s, Lease::process("t", 1), "b", ttl)
        .await
        .unwrap()
        .is_none());
    // Held past several TTLs by its heartbeat.
    tokio::time::sleep(ttl * 4).await;
    assert!(guard.holds());
    assert!(!s
        .acquire_lease(&Lease::process("t", 1), "b", ttl)
        .await
        .unwrap());
    guard.release().await;
    let again = LeaseGuard::acquire(s, Lease::process("t", 1), "b", ttl)
        .await
        .unwrap()
        .expect("released");
    // A lease taken over by someone else is noticed as lost.
    assert!(s.release_lease(&Lease::process("t", 1), "b").await.unwrap());
    assert!(s
        .acquire_lease(&Lease::process("t", 1), "c", Duration::from_secs(60))
        .await
        .unwrap());
    let deadline = tokio::time::Instant::now() + WAIT;
    while again.holds() {
        assert!(tokio::time::Instant::now() < deadline, "loss never noticed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    again.release().await;
    // Releasing a lost lease leaves the new holder's alone.
    assert!(!s
        .acquire_lease(&Lease::process("t", 1), "d", Duration::from_secs(60))
        .await
        .unwrap());
    env.finish().await;
}

pub async fn state_kv_and_lists(backend: Backend) {
    let env = Env::new(backend).await;
    let s = &env.state;
    let k = WebKey::Account("k");
    let other = WebKey::Session("other");
    assert_eq!(s.kv_get(&k).await.unwrap(), None);
    s.kv_set(&k, "v1", None).await.unwrap();
    assert_eq!(s.kv_get(&k).await.unwrap().as_deref(), Some("v1"));
    assert!(!s.kv_set_nx(&k, "v2", None).await.unwrap());
    assert!(s
        .kv_set_nx(&other, "o", Some(Duration::from_secs(60)))
        .await
        .unwrap());
    // Entries are named by what they hold: the same words under another
    // kind are another entry.
    assert_eq!(s.kv_get(&WebKey::UserOfKey("k")).await.unwrap(), None);
    let reexport = WebKey::Reexport {
        pk: "p",
        contract: "c",
    };
    let delivered = WebKey::Delivered {
        pk: "p",
        contract: "c",
    };
    s.kv_set(&reexport, "1", None).await.unwrap();
    assert_eq!(s.kv_get(&delivered).await.unwrap(), None);
    assert!(s.kv_delete(&reexport).await.unwrap());
    assert_eq!(s.kv_take(&k).await.unwrap().as_deref(), Some("v1"));
    assert_eq!(s.kv_take(&k).await.unwrap(), None);
    assert!(s.kv_delete(&other).await.unwrap());
    assert!(!s.kv_delete(&other).await.unwrap());
    let short = WebKey::Challenge("short");
    s.kv_set(&short, "s", Some(Duration::from_millis(50)))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while s.kv_get(&short).await.unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "value never expired"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let l = WebList::History("l");
    for i in 0..5 {
        s.list_push(&l, &format!("i{i}"), 3).await.unwrap();
    }
    assert_eq!(s.list_range(&l, 10).await.unwrap(), vec!["i4", "i3", "i2"]);
    assert_eq!(s.list_range(&l, 2).await.unwrap(), vec!["i4", "i3"]);
    assert!(s
        .list_range(&WebList::Sessions("l"), 10)
        .await
        .unwrap()
        .is_empty());
    assert!(s
        .list_range(&WebList::History("none"), 10)
        .await
        .unwrap()
        .is_empty());
    // A list is deleted with all its items, and only that list.
    s.list_push(&WebList::Devices("l"), "d", 3).await.unwrap();
    assert!(s.list_delete(&l).await.unwrap());
    assert!(!s.list_delete(&l).await.unwrap());
    assert!(s.list_range(&l, 10).await.unwrap().is_empty());
    assert_eq!(
        s.list_range(&WebList::Devices("l"), 10).await.unwrap(),
        vec!["d"]
    );
    env.finish().await;
}

pub async fn state_schedules(backend: Backend) {
    let env = Env::new(backend).await;
    let s = &env.state;
    assert!(s.due("sw", u64::MAX, 10).await.unwrap().is_empty());
    s.schedule("sw", "b", 20).await.unwrap();
    s.schedule("sw", "a", 10).await.unwrap();
    s.schedule("sw", "c", 30).await.unwrap();
    s.schedule("other", "x", 1).await.unwrap();
    assert_eq!(s.due("sw", 5, 10).await.unwrap(), Vec::<String>::new());
    assert_eq!(s.due("sw", 20, 10).await.unwrap(), vec!["a", "b"]);
    assert_eq!(s.due("sw", 100, 2).await.unwrap(), vec!["a", "b"]);
    assert!(s.due("sw", 100, 0).await.unwrap().is_empty());
    // Rescheduling replaces the entry; unscheduling removes it.
    s.schedule("sw", "a", 40).await.unwrap();
    s.unschedule("sw", "b").await.unwrap();
    assert_eq!(s.due("sw", 35, 10).await.unwrap(), vec!["c"]);
    assert_eq!(s.due("sw", 100, 10).await.unwrap(), vec!["c", "a"]);
    assert_eq!(s.due("other", 100, 10).await.unwrap(), vec!["x"]);
    env.finish().await;
}

fn quota_of(e: StateError) -> (&'static str, u64) {
    match e {
        StateError::Quota { quota, limit } => (quota, limit),
        other => panic!("expected a quota error, got {other}"),
    }
}

fn dump_of(name: &str, size: u64) -> DumpRecord {
    DumpRecord {
        provider: "google".into(),
        name: name.into(),
        key: format!("dumps/u/google/{name}"),
        size,
        blake2b: "h".into(),
        uploaded_ms: 1,
    }
}

pub async fn state_user_quotas(backend: Backend) {
    let quotas = Quotas {
        contracts: 2,
        history: 3,
        grant_bytes: 100,
        dumps: 2,
        dump_bytes: 10,
        guest_ttl: Duration::from_secs(600),
    };
    let env = Env::with(backend, Duration::from_secs(60), quotas).await;
    let s = &env.state;
    let tok = |c: char, n: usize| c.to_string().repeat(n);
    assert!(
        s.update_grant("u", "c1", 1.0, &tok('a', 30))
            .await
            .unwrap()
            .1
    );
    assert!(
        s.update_grant("u", "c2", 1.0, &tok('b', 30))
            .await
            .unwrap()
            .1
    );
    // A third contract is refused, nothing changes.
    let e = s.update_grant("u", "c3", 1.0, "c").await.unwrap_err();
    assert_eq!(quota_of(e), ("contracts", 2));
    assert_eq!(s.contracts_of("u").await.unwrap().len(), 2);
    assert_eq!(s.grant_history("u").await.unwrap().len(), 2);
    // A newer grant of a held contract replaces its bytes.
    assert!(
        s.update_grant("u", "c1", 2.0, &tok('d', 60))
            .await
            .unwrap()
            .1
    );
    let e = s
        .update_grant("u", "c1", 3.0, &tok('e', 80))
        .await
        .unwrap_err();
    assert_eq!(quota_of(e), ("grant_bytes", 100));
    assert_eq!(
        s.stored_grant("u", "c1").await.unwrap(),
        Some(tok('d', 60)),
        "a refused grant changes nothing"
    );
    // The history keeps the newest grants within the count and the bytes.
    for i in 0..5 {
        let t = tok(char::from(b'f' + i), 10);
        s.update_grant("u", "c2", 10.0 + f64::from(i), &t)
            .await
            .unwrap();
    }
    let history = s.grant_history("u").await.unwrap();
    assert_eq!(history, vec![tok('j', 10), tok('i', 10), tok('h', 10)]);
    s.update_grant("u", "c2", 20.0, &tok('k', 40))
        .await
        .unwrap();
    let history = s.grant_history("u").await.unwrap();
    assert!(history.len() <= 3);
    assert!(history.iter().map(String::len).sum::<usize>() <= 100);
    assert_eq!(history.first(), Some(&tok('k', 40)));

    // Dumps: a count and a byte budget; replacing a dump frees its room.
    s.record_dump("u", &dump_of("a.zip", 4)).await.unwrap();
    s.record_dump("u", &dump_of("b.zip", 4)).await.unwrap();
    let e = s.record_dump("u", &dump_of("c.zip", 1)).await.unwrap_err();
    assert_eq!(quota_of(e), ("dumps", 2));
    s.record_dump("u", &dump_of("b.zip", 6)).await.unwrap();
    let e = s.record_dump("u", &dump_of("b.zip", 7)).await.unwrap_err();
    assert_eq!(quota_of(e), ("dump_bytes", 10));
    let sizes: Vec<u64> = s.dumps("u").await.unwrap().iter().map(|d| d.size).collect();
    assert_eq!(sizes, vec![4, 6]);
    env.finish().await;
}

pub async fn state_guest_records_expire(backend: Backend) {
    let quotas = Quotas {
        guest_ttl: Duration::from_millis(400),
        ..Quotas::DEFAULT
    };
    let env = Env::with(backend, Duration::from_secs(60), quotas).await;
    let s = &env.state;
    // A guest (bound, granting, nothing else), an account holder, and a
    // user who uploads a dump after granting.
    for u in ["guest", "account", "dumper"] {
        s.set_binding(u, "bind").await.unwrap();
        s.update_grant(u, "c", 1.0, "grant").await.unwrap();
    }
    s.keep_user("account").await.unwrap();
    s.record_dump("dumper", &dump_of("a.zip", 1)).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while s.is_known_user("guest").await.unwrap() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a guest's records never expired"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(s.binding("guest").await.unwrap(), None);
    assert!(s.grant_history("guest").await.unwrap().is_empty());
    assert!(s.contracts_of("guest").await.unwrap().is_empty());
    // The same TTL would have passed for the others: they are durable.
    for u in ["account", "dumper"] {
        assert_eq!(s.binding(u).await.unwrap().as_deref(), Some("bind"), "{u}");
        assert_eq!(s.grant_history(u).await.unwrap(), vec!["grant"], "{u}");
        // A later change keeps them durable.
        s.update_grant(u, "c", 2.0, "grant2").await.unwrap();
    }
    // The guest starts afresh (the old date is forgotten too).
    assert!(s.update_grant("guest", "c", 0.5, "again").await.unwrap().1);
    env.finish().await;
}

pub async fn state_counts_by_state_from_indexes(backend: Backend) {
    use TransferState::*;
    let env = Env::with(backend, Duration::from_secs(1), Quotas::DEFAULT).await;
    let s = &env.state;
    assert!(s.count_by_state().await.unwrap().is_empty());
    for id in ["a", "b", "c", "d"] {
        s.begin_transfer(id, &new_transfer("g")).await.unwrap();
    }
    s.transition("b", 1, &[Accepted], Processing, None)
        .await
        .unwrap();
    s.transition("c", 1, &[Accepted], Failed, Some("x"))
        .await
        .unwrap();
    s.transition("d", 1, &[Accepted], Done, None).await.unwrap();
    let counts = s.count_by_state().await.unwrap();
    let want = |pairs: &[(TransferState, u64)]| pairs.iter().copied().collect();
    assert_eq!(
        counts,
        want(&[(Accepted, 1), (Processing, 1), (Failed, 1), (Done, 1)])
    );
    // Superseding, restarting and beginning again move between the states.
    s.begin_transfer("a", &new_transfer("other")).await.unwrap();
    s.transition("b", 1, &[Processing], Pushing, None)
        .await
        .unwrap();
    assert_eq!(s.restart_generation("b", 1, "r").await.unwrap(), Some(2));
    s.begin_transfer("c", &new_transfer("g")).await.unwrap();
    let counts = s.count_by_state().await.unwrap();
    assert_eq!(counts, want(&[(Accepted, 2), (Pushing, 1), (Done, 1)]));
    // A failed generation taken up again counts as running.
    s.transition("a", 2, &[Accepted], Failed, None)
        .await
        .unwrap();
    s.transition("a", 2, &[Failed], Pushing, None)
        .await
        .unwrap();
    let counts = s.count_by_state().await.unwrap();
    assert_eq!(counts, want(&[(Accepted, 1), (Pushing, 2), (Done, 1)]));
    // Finished transfers leave the counts when they expire.
    let deadline = tokio::time::Instant::now() + WAIT;
    while s.count_by_state().await.unwrap().contains_key(&Done) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a finished transfer is counted after its expiry"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The count follows the expiry time it was given; the record itself
    // goes when Redis expires the key, a few milliseconds apart.
    while s.transfer("d").await.unwrap().is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a finished transfer outlives its expiry"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    env.finish().await;
}

fn preview_key(user: &str, contract: &str) -> PreviewKey {
    PreviewKey::new(user, contract).unwrap()
}

fn ready(records: u64) -> PreviewState {
    PreviewState::Ready {
        scopes: vec![ScopeSummary {
            scope: "google.*".into(),
            file: "google.all.zip".into(),
            files: 2,
            records,
            bytes: 10,
            first_files: vec!["a.json".into()],
            samples: vec!["<script>{\"x\":1}".into()],
            skipped: 0,
            notes: Vec::new(),
        }],
        missing: vec!["amazon.*".into()],
        elapsed_ms: 3,
    }
}

pub async fn state_previews_one_at_a_time_and_limited(backend: Backend) {
    let env = Env::new(backend).await;
    let s = &env.state;
    let limits = PreviewLimits {
        per_hour: 3,
        ..PreviewLimits::DEFAULT
    };
    let (a, scopes) = (preview_key("u", "c1"), vec!["google.*".to_owned()]);
    assert_eq!(s.preview(&a).await.unwrap(), None);
    let PreviewStart::Started(first) = s.start_preview(&a, &scopes, &limits).await.unwrap() else {
        panic!("not started");
    };
    assert!(first.is_pending());
    assert_eq!(first.requested, scopes);
    // One at a time per user and contract.
    assert_eq!(
        s.start_preview(&a, &scopes, &limits).await.unwrap(),
        PreviewStart::Busy(first.clone())
    );
    assert_eq!(s.preview(&a).await.unwrap(), Some(first.clone()));
    // Only the pending run stores its outcome, once.
    let ttl = Duration::from_secs(60);
    assert!(!s.finish_preview(&a, "other", &ready(1), ttl).await.unwrap());
    assert!(s
        .finish_preview(&a, &first.id, &ready(1), ttl)
        .await
        .unwrap());
    assert!(!s
        .finish_preview(&a, &first.id, &ready(2), ttl)
        .await
        .unwrap());
    let done = s.preview(&a).await.unwrap().unwrap();
    assert_eq!(done.state, ready(1));
    assert_eq!(
        (done.id.as_str(), done.created_ms),
        (first.id.as_str(), first.created_ms)
    );
    // Nobody else's key sees it; a finish for a key never started stores nothing.
    let other = preview_key("v", "c1");
    assert_eq!(s.preview(&other).await.unwrap(), None);
    assert!(!s
        .finish_preview(&other, &first.id, &ready(1), ttl)
        .await
        .unwrap());
    assert_eq!(s.preview(&other).await.unwrap(), None);
    // A finished one may be asked again (a fresh run), within the limit.
    let PreviewStart::Started(second) = s.start_preview(&a, &scopes, &limits).await.unwrap() else {
        panic!("not restarted");
    };
    assert_ne!(second.id, first.id);
    let failed = PreviewState::Failed {
        reason: "corrupt dump".into(),
    };
    assert!(s
        .finish_preview(&a, &second.id, &failed, ttl)
        .await
        .unwrap());
    let c2 = preview_key("u", "c2");
    assert!(matches!(
        s.start_preview(&c2, &scopes, &limits).await.unwrap(),
        PreviewStart::Started(_)
    ));
    // The fourth of the hour is refused, whatever the contract; nothing
    // is stored for it.
    let c3 = preview_key("u", "c3");
    match s.start_preview(&c3, &scopes, &limits).await.unwrap() {
        PreviewStart::Limited { retry_after } => {
            assert!(retry_after <= PreviewLimits::WINDOW && !retry_after.is_zero())
        }
        other => panic!("not limited: {other:?}"),
    }
    assert_eq!(s.preview(&c3).await.unwrap(), None);
    assert_eq!(s.preview(&a).await.unwrap().unwrap().state, failed);
    // Another user has an hour of their own.
    assert!(matches!(
        s.start_preview(&other, &scopes, &limits).await.unwrap(),
        PreviewStart::Started(_)
    ));
    assert!(s.forget_preview(&a).await.unwrap());
    assert!(!s.forget_preview(&a).await.unwrap());
    assert_eq!(s.preview(&a).await.unwrap(), None);
    env.finish().await;
}

pub async fn state_previews_expire(backend: Backend) {
    let env = Env::new(backend).await;
    let s = &env.state;
    let limits = PreviewLimits {
        pending_ttl: Duration::from_millis(300),
        ..PreviewLimits::DEFAULT
    };
    let (k, scopes) = (preview_key("u", "c"), vec!["google.*".to_owned()]);
    let k = &k;
    let gone = |what: &'static str| async move {
        let deadline = tokio::time::Instant::now() + WAIT;
        while s.preview(k).await.unwrap().is_some() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{what} never expired"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let PreviewStart::Started(p) = s.start_preview(k, &scopes, &limits).await.unwrap() else {
        panic!("not started");
    };
    // A pending preview whose processor never answers goes away …
    gone("a pending preview").await;
    // … its late result is not stored, and a new one can start.
    assert!(!s
        .finish_preview(k, &p.id, &ready(1), Duration::from_secs(60))
        .await
        .unwrap());
    let PreviewStart::Started(p) = s.start_preview(k, &scopes, &limits).await.unwrap() else {
        panic!("not started again");
    };
    assert!(s
        .finish_preview(k, &p.id, &ready(1), Duration::from_millis(300))
        .await
        .unwrap());
    assert!(s.preview(k).await.unwrap().is_some());
    gone("a result").await;
    env.finish().await;
}

/// A user who deleted their account is forgotten (grants, history,
/// binding, dumps, usage); another user's records stay, and the contracts
/// the forgotten user claimed stay bound to them.
pub async fn state_forget_user(backend: Backend) {
    let env = Env::new(backend).await;
    let s = &env.state;
    for user in ["f", "g"] {
        s.set_binding(user, "bind").await.unwrap();
        s.keep_user(user).await.unwrap();
        assert_eq!(
            s.claim_contract(&format!("c-{user}"), user).await.unwrap(),
            user
        );
        s.update_grant(user, &format!("c-{user}"), 2.0, "t")
            .await
            .unwrap();
        s.record_dump(user, &dump_of("a.zip", 3)).await.unwrap();
    }
    s.forget_user("f").await.unwrap();
    assert_eq!(s.binding("f").await.unwrap(), None);
    assert!(!s.is_known_user("f").await.unwrap());
    assert!(s.contracts_of("f").await.unwrap().is_empty());
    assert!(s.grant_history("f").await.unwrap().is_empty());
    assert_eq!(s.stored_grant("f", "c-f").await.unwrap(), None);
    assert!(s.dumps("f").await.unwrap().is_empty());
    assert_eq!(s.contract_owner("c-f").await.unwrap().as_deref(), Some("f"));
    // An older grant is a new grant now: nothing of the dates is left.
    assert_eq!(
        s.update_grant("f", "c-f", 1.0, "old").await.unwrap(),
        ("old".to_owned(), true)
    );
    // The other user is untouched.
    assert_eq!(s.binding("g").await.unwrap().as_deref(), Some("bind"));
    assert_eq!(s.contracts_of("g").await.unwrap(), vec!["c-g".to_owned()]);
    assert_eq!(s.grant_history("g").await.unwrap(), vec!["t".to_owned()]);
    assert_eq!(s.dumps("g").await.unwrap().len(), 1);
    // Forgetting an unknown user is no error.
    s.forget_user("nobody").await.unwrap();
    env.finish().await;
}

/// The retries the pusher notes for the dashboard: counted per generation,
/// with the time of the next try, cleared when the client answers.
pub async fn state_retry_notes(backend: Backend) {
    let env = Env::new(backend).await;
    let s = &env.state;
    let long = Duration::from_secs(60);
    assert_eq!(s.retry_note("t", 1).await.unwrap(), None);
    let first = s.note_retry("t", 1, 1_000, long).await.unwrap();
    assert_eq!(
        first,
        RetryNote {
            failures: 1,
            next_ms: 1_000
        }
    );
    let second = s.note_retry("t", 1, 2_000, long).await.unwrap();
    assert_eq!(
        second,
        RetryNote {
            failures: 2,
            next_ms: 2_000
        }
    );
    assert_eq!(s.retry_note("t", 1).await.unwrap(), Some(second));
    // Per generation and per transfer.
    assert_eq!(s.retry_note("t", 2).await.unwrap(), None);
    assert_eq!(s.retry_note("u", 1).await.unwrap(), None);
    s.clear_retry("t", 1).await.unwrap();
    assert_eq!(s.retry_note("t", 1).await.unwrap(), None);
    // Counting starts again after a clear.
    assert_eq!(s.note_retry("t", 1, 3_000, long).await.unwrap().failures, 1);
    env.finish().await;
}

macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Memory).await;
                }
            )*
        }
        mod real {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Real).await;
                }
            )*
        }
    };
}

contract!(
    bus_publish_consume_ack,
    bus_unsettled_is_redelivered,
    bus_prefetch_bounds_unsettled,
    bus_dead_letters_listed_and_replayed,
    bus_delayed_publish_arrives_later,
    bus_close_ends_consumers,
    state_transfer_lifecycle,
    state_supersede_restart_cancel,
    state_contracts_bind_to_their_first_user,
    state_restart_fence,
    state_events_follow_changes,
    state_grants_follow_the_newer_rule,
    state_users_dumps_and_bindings,
    state_flags_counters_and_leases,
    state_generation_marks,
    state_lease_guard_renews_and_releases,
    state_kv_and_lists,
    state_schedules,
    state_user_quotas,
    state_guest_records_expire,
    state_counts_by_state_from_indexes,
    state_previews_one_at_a_time_and_limited,
    state_previews_expire,
    state_forget_user,
    state_retry_notes,
);
