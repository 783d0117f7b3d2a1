//! Flags, counters and leases, generation marks, the lease guard, the
//! lists of transfers waiting for a client's push slot, and the web side's
//! key-value entries, lists and schedules, and the retry notes of the
//! dashboard.

use super::*;

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
    // Compare and set, compare and delete: only over the exact value read.
    let cas = WebKey::Archives("cas");
    assert!(
        !s.kv_replace(&cas, "", "x", None).await.unwrap(),
        "nothing stored"
    );
    assert_eq!(s.kv_get(&cas).await.unwrap(), None);
    s.kv_set(&cas, "read", None).await.unwrap();
    // Another writer came between the read and the write.
    s.kv_set(&cas, "newer", None).await.unwrap();
    assert!(!s.kv_replace(&cas, "read", "mine", None).await.unwrap());
    assert!(!s.kv_delete_if(&cas, "read").await.unwrap());
    assert!(
        !s.kv_delete_if(&cas, "newe").await.unwrap(),
        "a prefix is not the value"
    );
    assert_eq!(s.kv_get(&cas).await.unwrap().as_deref(), Some("newer"));
    assert!(s
        .kv_replace(&cas, "newer", "mine", Some(Duration::from_secs(60)))
        .await
        .unwrap());
    assert_eq!(s.kv_get(&cas).await.unwrap().as_deref(), Some("mine"));
    assert!(s.kv_delete_if(&cas, "mine").await.unwrap());
    assert_eq!(s.kv_get(&cas).await.unwrap(), None);
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
    // A value pushed again as unique moves to the front: one place each.
    let u = WebList::ArchivesOf("u");
    for v in ["a", "b", "a", "c", "a"] {
        s.list_push_unique(&u, v, 3).await.unwrap();
    }
    assert_eq!(s.list_range(&u, 10).await.unwrap(), vec!["a", "c", "b"]);
    s.list_push_unique(&u, "d", 3).await.unwrap();
    assert_eq!(s.list_range(&u, 10).await.unwrap(), vec!["d", "a", "c"]);
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

/// The transfers waiting for a client's push slot: taken in the order they
/// joined, each once, per client name.
pub async fn state_slot_waiting_lists(backend: Backend) {
    let env = Env::new(backend).await;
    let s = &env.state;
    let ttl = Duration::from_secs(60);
    let domain = ClientName::Domain("example.org".into());
    let key = ClientName::Key("k".into());
    assert_eq!(s.next_waiting(&domain).await.unwrap(), None);
    // Members joined in name order, so that a tie of the joining time
    // (ordered by name) gives the same order.
    for member in ["a:1", "b:1", "c:2"] {
        s.wait_for_slot(&domain, member, ttl).await.unwrap();
    }
    // Joining again neither duplicates nor reorders.
    s.wait_for_slot(&domain, "a:1", ttl).await.unwrap();
    s.wait_for_slot(&key, "z:1", ttl).await.unwrap();
    let mut taken = Vec::new();
    while let Some(member) = s.next_waiting(&domain).await.unwrap() {
        taken.push(member);
    }
    assert_eq!(taken, ["a:1", "b:1", "c:2"]);
    assert_eq!(s.next_waiting(&key).await.unwrap().as_deref(), Some("z:1"));
    assert_eq!(s.next_waiting(&key).await.unwrap(), None);
    env.finish().await;
}
