//! Users: grants under the newer rule, dumps and bindings, quotas, guest
//! records that expire, the counts by state, and a user forgotten.

use super::*;

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
    s.set_files("b", 1, &[]).await.unwrap();
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
