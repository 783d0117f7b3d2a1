//! Transfers: their lifecycle, supersede, restart and cancel, contracts
//! bound to their first user, the restart fence and events.

use super::*;

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

/// Archives recorded one by one while the processor builds the others:
/// only into the current, running generation; the list is sealed by the
/// last one, and a restart waits for it.
pub async fn state_files_arrive_while_building(backend: Backend) {
    use TransferState::*;
    let env = Env::new(backend).await;
    let s = &env.state;
    s.begin_transfer("t3", &new_transfer("g")).await.unwrap();
    s.transition("t3", 1, &[Accepted], Processing, None)
        .await
        .unwrap();
    // Another generation's archives are refused.
    assert_eq!(
        s.add_files("t3", 2, &[file("a.zip", 1)], false)
            .await
            .unwrap(),
        Added::Stale
    );
    // The first archives raise the queued flag: a push job is to be
    // queued for them.
    assert_eq!(
        s.add_files("t3", 1, &[file("a.zip", 10)], false)
            .await
            .unwrap(),
        Added::Recorded { queue: true }
    );
    s.transition("t3", 1, &[Processing], Pushing, None)
        .await
        .unwrap();
    let t = s.transfer("t3").await.unwrap().unwrap();
    assert_eq!((t.files_total, t.bytes_total, t.built), (1, 10, false));
    // Not sealed: no restart (the new generation would miss archives).
    assert_eq!(s.restart_generation("t3", 1, "early").await.unwrap(), None);
    // The same archive again (a job run again) replaces its record. The
    // job queued for the first archives has not started: it pushes these
    // too, so none is queued for them.
    assert_eq!(
        s.add_files("t3", 1, &[file("a.zip", 10), file("b.zip", 5)], false)
            .await
            .unwrap(),
        Added::Recorded { queue: false }
    );
    // A push job starts (its first step lowers the flag): nothing counted.
    let seen = s.file_watch("t3", 1).await.unwrap();
    assert!(!seen.all_counted, "{seen:?}");
    assert!(s.finish_file("t3", 1, "a.zip").await.unwrap());
    let seen = s.file_watch("t3", 1).await.unwrap();
    assert!(!seen.all_counted, "{seen:?}");
    assert!(s.finish_file("t3", 1, "b.zip").await.unwrap());
    let seen = s.file_watch("t3", 1).await.unwrap();
    assert!(seen.all_counted, "{seen:?}");
    // Archives recorded after a job started queue a job of their own.
    assert_eq!(
        s.add_files("t3", 1, &[file("c.zip", 2)], true)
            .await
            .unwrap(),
        Added::Recorded { queue: true }
    );
    let seen = s.file_watch("t3", 1).await.unwrap();
    assert!(!seen.all_counted, "{seen:?}");
    let t = s.transfer("t3").await.unwrap().unwrap();
    assert_eq!((t.files_total, t.bytes_total, t.built), (3, 17, true));
    let names: Vec<_> = s
        .files("t3", 1)
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(names, ["a.zip", "b.zip", "c.zip"]);
    assert_eq!(s.restart_generation("t3", 1, "now").await.unwrap(), Some(2));
    assert!(s.transfer("t3").await.unwrap().unwrap().built);
    // An ended generation takes no more archives; a new one starts
    // unsealed.
    s.transition("t3", 2, &[Pushing], Failed, Some("gone"))
        .await
        .unwrap();
    assert_eq!(
        s.add_files("t3", 2, &[file("d.zip", 1)], true)
            .await
            .unwrap(),
        Added::Stale
    );
    s.begin_transfer("t3", &new_transfer("g2")).await.unwrap();
    let t = s.transfer("t3").await.unwrap().unwrap();
    assert_eq!((t.generation, t.built, t.files_total), (3, false, 0));
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
    assert_eq!(
        (t.generation, t.state, t.built),
        (3, TransferState::Pushing, true)
    );
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
    s.set_files("f", 1, &[]).await.unwrap();
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
