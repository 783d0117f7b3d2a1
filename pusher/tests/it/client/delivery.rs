//! Files pushed through faults: byte-identical results, failing requests,
//! `Retry-After`, a dead client, dropped connections resumed with `HEAD`,
//! the reference client's append mode, a redelivered job.

use super::*;

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

/// A worker told to stop does not sit out a chunk's backoff: the run ends
/// as when its deadline passes, with what was committed, and the chunk is
/// not sent again.
#[tokio::test]
async fn a_stopping_worker_ends_a_chunks_backoff() {
    let env = Env::new(Faults::none());
    let file = env.archive("a.zip", &random_bytes(3000, 9)).await;
    env.start().await;
    // Chunk 2 gets a 503.
    env.sink.set_faults(Faults {
        fail_every: 2,
        ..Faults::none()
    });
    let stop = Stop::new();
    stop.set();
    let (commits, commit) = recorder();
    let err = env
        .streamer(1000)
        .with_stop(stop)
        .push_file(&file.0, commit, always)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StreamError::Cancelled { offset: 1000 }),
        "{err}"
    );
    assert_eq!(*commits.lock().unwrap(), vec![1000]);
    assert_eq!(env.sink.counters().injected_failures, 1);
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
