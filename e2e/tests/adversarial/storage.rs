//! Attacks on storage (issue 17, item 3): a client forcing restarts to
//! make the bank rebuild every archive again and again, on one contract or
//! spread over new ones, and archives that were never given back
//! (superseded, revoked, cancelled, done, built from a deleted dump). Each
//! goes through the real gateway, processor and pusher (in this process)
//! against the local Redis and RabbitMQ, with an `alias-sink` as the
//! client.

use e2e::*;
use runtime::archives;
use runtime::state::{now_ms, TransferState};
use sink::Faults;
use std::future::Future;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(120);

/// Objects and bytes stored under `transfers/{id}/`.
async fn stored(bank: &Bank, id: &str) -> (usize, u64) {
    let objects = bank
        .app
        .storage
        .list(&format!("transfers/{id}"))
        .await
        .unwrap_or_default();
    (objects.len(), objects.iter().map(|o| o.size).sum())
}

/// Waits (re-reading the state) until `check` holds, or panics after `limit`.
async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A client that behaves like the reference client (no `HEAD`: it cannot
/// report its offset) and drops the connection of every 5th chunk after
/// keeping its bytes: each drop forces a new generation.
fn restarting() -> Faults {
    Faults {
        reference_mode: true,
        drop_every: 5,
        ..Faults::none()
    }
}

fn dead() -> Faults {
    Faults {
        dead: true,
        ..Faults::none()
    }
}

async fn bank(prefix: &str, extra: &[(&str, &str)]) -> Bank {
    let mut bank = Bank::new(prefix, extra).await;
    bank.start_processor().await;
    bank.start_pusher().await;
    bank
}

/// Waits until the transfer's archives are built and recorded (all of
/// them: the first ones are pushed while the others are built), and
/// returns the stored objects and bytes.
async fn built(bank: &Bank, id: &str) -> (usize, u64) {
    let t = wait_until(bank, id, LIMIT, |t| {
        t.state == TransferState::Pushing && t.built
    })
    .await;
    let files = bank.app.state.files(id, t.generation).await.unwrap();
    assert!(!files.is_empty(), "{t:?}");
    let s = stored(bank, id).await;
    assert_eq!(s.0, files.len(), "one object per archive: {files:?}");
    s
}

/// Restarts forced by a client that loses chunk answers and cannot report
/// its offset: every generation pushes the archives the first one built
/// (no rebuild), so storage holds one generation's bytes whatever the
/// number of restarts, and the files arrive intact once the client heals.
#[actix_web::test]
async fn forced_restarts_reuse_the_archives_of_the_first_generation() {
    let bank = bank("str", &[("ALIAS_PUSH_CLIENT_RESTARTS", "100")]).await;
    let u = user(171);
    give_dump(&bank, &u, 1 << 20, 171).await;
    let client = Client::new("Restarts", 171, restarting());
    let (status, body) = process_async(&bank.base, &client.grant(&u)).await;
    assert_eq!(status, 202, "{body}");
    let (objects, one_generation) = built(&bank, &client.id).await;
    let t = wait_until(&bank, &client.id, LIMIT, |t| t.generation >= 5).await;
    // Storage while restarting: still the first generation's archives.
    let during = stored(&bank, &client.id).await;
    client.sink.set_faults(Faults::reference());
    let t_end = wait_terminal(&bank, &client.id, LIMIT).await;
    assert_eq!(t_end.state, TransferState::Done, "{t_end:?}");
    let end = stored(&bank, &client.id).await;
    eprintln!(
        "FIGURE forced restarts: {} generations; storage {} bytes in {} objects at generation {}, {} bytes in {} objects at the end (one generation: {} bytes)",
        t_end.generation, during.1, during.0, t.generation, end.1, end.0, one_generation
    );
    let build = archives::build_of(&bank.app.state, &client.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        build.generation, 1,
        "generation {} was built again instead of reusing the first one's archives",
        build.generation
    );
    let files = bank
        .app
        .state
        .files(&client.id, t_end.generation)
        .await
        .unwrap();
    assert!(files.iter().all(|f| f
        .storage_key
        .starts_with(&format!("transfers/{}/1/", client.id))));
    assert_eq!(during, (objects, one_generation));
    assert_eq!(stored(&bank, &client.id).await, (objects, one_generation));
    // The files arrived as stored (the reference client does not verify).
    let got = received(&client);
    assert_eq!(got.len(), files.len());
    for f in &files {
        let stored = bank.app.storage.get_bytes(&f.storage_key).await.unwrap();
        assert!(got[&f.name] == stored.as_ref(), "{} differs", f.name);
    }
    bank.cleanup().await;
}

/// Restarts are counted per client (its signing key and push host), not per
/// transfer: new contracts of the same client do not restart without limit.
/// Past the cap the transfer fails with the reason, and its archives are
/// given back.
#[actix_web::test]
async fn restarts_past_the_per_client_cap_fail_the_transfer_even_on_new_contracts() {
    let bank = bank(
        "stc",
        &[
            ("ALIAS_PUSH_CLIENT_RESTARTS", "3"),
            ("ALIAS_ARCHIVE_RETENTION_SECS", "1"),
        ],
    )
    .await;
    let u = user(172);
    give_dump(&bank, &u, 1 << 20, 172).await;
    let first = Client::new("Restarts A", 172, restarting());
    let (status, body) = process_async(&bank.base, &first.grant(&u)).await;
    assert_eq!(status, 202, "{body}");
    let t = wait_terminal(&bank, &first.id, LIMIT).await;
    assert_eq!(t.state, TransferState::Failed, "{t:?}");
    let reason = t.error.clone().unwrap_or_default();
    assert!(reason.contains("restarts in 24 hours (cap 3)"), "{t:?}");
    assert_eq!(t.generation, 4, "three restarts, the fourth refused: {t:?}");

    // A new contract of the same client (same signing key): its first
    // forced restart is already past the cap.
    let second = Client::new("Restarts B", 172, restarting());
    assert_ne!(second.id, first.id);
    let (status, body) = process_async(&bank.base, &second.grant(&u)).await;
    assert_eq!(status, 202, "{body}");
    let t2 = wait_terminal(&bank, &second.id, LIMIT).await;
    assert_eq!(t2.state, TransferState::Failed, "{t2:?}");
    assert_eq!(
        t2.generation, 1,
        "no restart for this client any more: {t2:?}"
    );
    assert!(
        t2.error
            .clone()
            .unwrap_or_default()
            .contains("restarts in 24 hours"),
        "{t2:?}"
    );
    // Failed transfers' archives are given back.
    for id in [&first.id, &second.id] {
        eventually("failed transfers' archives deleted", LIMIT, || async {
            stored(&bank, id).await.0 == 0
                && archives::build_of(&bank.app.state, id)
                    .await
                    .unwrap()
                    .is_none()
        })
        .await;
    }
    bank.cleanup().await;
}

/// A superseding grant deletes the superseded generation's archives when it
/// builds its own; a revocation deletes them all.
#[actix_web::test]
async fn superseded_and_revoked_generations_archives_are_deleted() {
    let bank = bank("sts", &[]).await;
    let u = user(173);
    give_dump(&bank, &u, 1 << 20, 173).await;
    let client = Client::new("Superseded", 173, dead());
    let (status, body) = process_async(&bank.base, &client.grant(&u)).await;
    assert_eq!(status, 202, "{body}");
    let (objects, _) = built(&bank, &client.id).await;
    assert!(objects > 0);
    let first_prefix = format!("transfers/{}/1", client.id);
    assert_eq!(
        bank.app.storage.list(&first_prefix).await.unwrap().len(),
        objects
    );

    // A newer grant of the same user for the same contract supersedes it.
    let newer = grant_at(&u, &client.contract, now_ms() as f64 + 1000.0);
    let (status, body) = process_async(&bank.base, &newer).await;
    assert_eq!(status, 202, "{body}");
    wait_until(&bank, &client.id, LIMIT, |t| {
        t.generation == 2 && t.state == TransferState::Pushing && t.built
    })
    .await;
    assert!(
        bank.app
            .storage
            .list(&first_prefix)
            .await
            .unwrap_or_default()
            .is_empty(),
        "the superseded generation's archives are still stored"
    );
    assert_eq!(stored(&bank, &client.id).await.0, objects);

    // The user revokes: nothing is left to push, nothing stays stored.
    let (status, body) = e2e::store_grant(
        &bank.base,
        &e2e::revocation_at(&u, &client.contract, now_ms() as f64 + 2000.0),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    wait_until(&bank, &client.id, LIMIT, |t| t.revoked && t.generation == 3).await;
    eventually("revoked transfer's archives deleted", LIMIT, || async {
        stored(&bank, &client.id).await.0 == 0
    })
    .await;
    assert!(archives::build_of(&bank.app.state, &client.id)
        .await
        .unwrap()
        .is_none());
    assert!(client
        .sink
        .transfer(&client.id)
        .is_none_or(|s| s.files.is_empty()));
    bank.cleanup().await;
}

/// With grant-hash push ids a newer grant cancels the running transfer:
/// the cancelled transfer's archives are deleted with it.
#[actix_web::test]
async fn cancelled_transfers_archives_are_deleted() {
    let bank = bank("stx", &[("ALIAS_PUSH_ID", "grant")]).await;
    let u = user(174);
    give_dump(&bank, &u, 1 << 20, 174).await;
    let client = Client::new("Cancelled", 174, dead());
    let grant = client.grant(&u);
    let first_id = protocol::alias::Grant::from_token(&grant, &Default::default())
        .unwrap()
        .grant_hash()
        .unwrap()
        .to_b64();
    let (status, body) = process_async(&bank.base, &grant).await;
    assert_eq!(status, 202, "{body}");
    built(&bank, &first_id).await;
    let newer = grant_at(&u, &client.contract, now_ms() as f64 + 1000.0);
    let (status, body) = process_async(&bank.base, &newer).await;
    assert_eq!(status, 202, "{body}");
    let t = bank.app.state.transfer(&first_id).await.unwrap().unwrap();
    assert_eq!(t.state, TransferState::Cancelled, "{t:?}");
    // Given back when it was cancelled, not at a later sweep.
    assert_eq!(stored(&bank, &first_id).await, (0, 0));
    assert!(archives::build_of(&bank.app.state, &first_id)
        .await
        .unwrap()
        .is_none());
    bank.cleanup().await;
}

/// A done transfer's archives stay for the retention period, then the
/// sweeper deletes them (and only then).
#[actix_web::test]
async fn done_transfers_archives_are_deleted_after_the_retention() {
    let bank = bank("str", &[("ALIAS_ARCHIVE_RETENTION_SECS", "3")]).await;
    let u = user(175);
    give_dump(&bank, &u, 1 << 20, 175).await;
    let client = Client::new("Retention", 175, Faults::none());
    let (status, body) = process_sync(&bank.base, &client.grant(&u)).await;
    assert_eq!(status, 200, "{body}");
    let t = wait_terminal(&bank, &client.id, LIMIT).await;
    assert_eq!(t.state, TransferState::Done, "{t:?}");
    let before = stored(&bank, &client.id).await;
    assert!(before.0 > 0 && before.1 > 0, "{before:?}");
    assert_delivered(&bank, &client).await;
    // The sweeper deletes the objects, then the build's record.
    eventually("done transfer's archives deleted", LIMIT, || async {
        stored(&bank, &client.id).await.0 == 0
            && archives::build_of(&bank.app.state, &client.id)
                .await
                .unwrap()
                .is_none()
    })
    .await;
    let gone_at = now_ms();
    assert!(
        gone_at >= t.updated_ms + 3000,
        "deleted {} ms after done, before the retention",
        gone_at - t.updated_ms
    );
    let after = stored(&bank, &client.id).await;
    eprintln!(
        "FIGURE retention: done transfer's storage {} bytes in {} objects before, {} bytes after ({} ms after done)",
        before.1,
        before.0,
        after.1,
        gone_at - t.updated_ms
    );
    bank.cleanup().await;
}

/// Deletes every dump of `u` through the gateway; returns the transfers
/// the deletions cancelled.
async fn delete_dumps(bank: &Bank, u: &protocol::anychain::SigningKey) -> Vec<String> {
    let http = reqwest::Client::new();
    let mut cancelled = Vec::new();
    for d in bank.app.state.dumps(&user_pk(u)).await.unwrap() {
        let path = format!("/alias/dumps/{}/{}", d.provider, d.name);
        let resp = signed_request(&http, reqwest::Method::DELETE, &bank.base, &path, u, None)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let answer: serde_json::Value = resp.json().await.unwrap();
        let ids = answer["cancelled"].as_array().cloned().unwrap_or_default();
        cancelled.extend(ids.iter().filter_map(|v| v.as_str().map(str::to_owned)));
    }
    cancelled
}

/// Deleting a dump cancels the transfers built from it that are not yet
/// delivered and deletes their archives at once; the client gets nothing
/// more.
#[actix_web::test]
async fn deleting_a_dump_deletes_its_undelivered_archives() {
    let bank = bank("std", &[]).await;
    let u = user(176);
    give_dump(&bank, &u, 1 << 20, 176).await;
    let client = Client::new("Dump deleted", 176, dead());
    let (status, body) = process_async(&bank.base, &client.grant(&u)).await;
    assert_eq!(status, 202, "{body}");
    built(&bank, &client.id).await;
    assert_eq!(
        delete_dumps(&bank, &u).await,
        std::slice::from_ref(&client.id)
    );
    // At once, not by a later sweep.
    assert_eq!(stored(&bank, &client.id).await, (0, 0));
    let t = bank.app.state.transfer(&client.id).await.unwrap().unwrap();
    assert_eq!(t.state, TransferState::Cancelled, "{t:?}");
    assert!(
        t.error.clone().unwrap_or_default().contains("dump"),
        "{t:?}"
    );
    assert!(archives::build_of(&bank.app.state, &client.id)
        .await
        .unwrap()
        .is_none());
    bank.cleanup().await;
}

/// A processor job handler that reports each job's end.
struct Reported {
    inner: processor::worker::Processor,
    ended: tokio::sync::mpsc::UnboundedSender<()>,
}

#[async_trait::async_trait]
impl runtime::worker::JobHandler for Reported {
    async fn handle(&self, body: &[u8], delivery_count: u64) -> runtime::worker::Disposition {
        let d = runtime::worker::JobHandler::handle(&self.inner, body, delivery_count).await;
        let _ = self.ended.send(());
        d
    }

    async fn make_durable(&self) -> Result<(), String> {
        runtime::worker::JobHandler::make_durable(&self.inner).await
    }
}

/// A dump deleted while its transfer is being built: the transfer is
/// cancelled at once, the build stops at its next announcement, what it
/// stored is deleted with its record, and the client is told nothing —
/// not one byte read from the deleted dump leaves the bank. The build is
/// held, deterministically, at its first progress report (a unit has read
/// its entries, no archive is stored yet) until the dump is deleted.
#[actix_web::test]
async fn a_dump_deleted_mid_build_stops_the_build() {
    let mut bank = Bank::new("midbuild", &[]).await;
    bank.start_pusher().await;
    let (inner, mut steps) = stepping_processor(&bank);
    let (ended_tx, mut ended) = tokio::sync::mpsc::unbounded_channel();
    start_processing(
        &mut bank,
        std::sync::Arc::new(Reported {
            inner,
            ended: ended_tx,
        }),
    );

    let u = user(177);
    give_dump(&bank, &u, 1 << 20, 177).await;
    let client = Client::new("Dump deleted mid-build", 177, Faults::none());
    let (status, body) = process_async(&bank.base, &client.grant(&u)).await;
    assert_eq!(status, 202, "{body}");
    tokio::time::timeout(LIMIT, steps.reached.recv())
        .await
        .expect("the build never reported progress")
        .unwrap();
    let t = bank.app.state.transfer(&client.id).await.unwrap().unwrap();
    assert!(!t.built, "held mid-build: {t:?}");

    assert_eq!(
        delete_dumps(&bank, &u).await,
        std::slice::from_ref(&client.id),
        "the transfer being built is cancelled"
    );
    let t = bank.app.state.transfer(&client.id).await.unwrap().unwrap();
    assert_eq!(t.state, TransferState::Cancelled, "{t:?}");

    // The build goes on from where it was held, freely, and ends.
    drop(steps.go);
    tokio::time::timeout(LIMIT, ended.recv())
        .await
        .expect("the process job never ended")
        .unwrap();
    let t = bank.app.state.transfer(&client.id).await.unwrap().unwrap();
    assert_eq!(t.state, TransferState::Cancelled, "{t:?}");
    assert_eq!(t.files_total, 0, "nothing announced: {t:?}");
    assert_eq!(
        stored(&bank, &client.id).await,
        (0, 0),
        "its archives are deleted"
    );
    assert!(archives::build_of(&bank.app.state, &client.id)
        .await
        .unwrap()
        .is_none());
    assert!(
        client.sink.requests().is_empty(),
        "the client was told something: {:?}",
        client.sink.requests()
    );
    bank.cleanup().await;
}

/// A build's progress reports, each held until the test lets it go: the
/// build advances one report at a time. Dropping `go` lets it run free.
struct Steps {
    reached: tokio::sync::mpsc::UnboundedReceiver<()>,
    go: std::sync::mpsc::Sender<()>,
}

/// Takes `bank`'s process jobs, one at a time, with `handler`.
fn start_processing(bank: &mut Bank, handler: std::sync::Arc<dyn runtime::worker::JobHandler>) {
    bank.workers.push(runtime::worker::start_worker(
        bank.app.broker.clone(),
        runtime::worker::WorkerSettings {
            route: runtime::mq::Route::Process,
            concurrency: 1,
            name: "processor".into(),
            shutdown_grace: Duration::from_secs(5),
        },
        handler,
    ));
}

/// A processor of `bank` whose builds stop at every progress report
/// (one build thread), and its steps.
fn stepping_processor(bank: &Bank) -> (processor::worker::Processor, Steps) {
    let (reached_tx, reached) = tokio::sync::mpsc::unbounded_channel();
    let (go, held) = std::sync::mpsc::channel::<()>();
    let held = std::sync::Mutex::new(held);
    let mut p = processor::processor(
        &bank.config,
        bank.app.state.clone(),
        bank.app.broker.clone(),
        bank.app.storage.clone(),
    )
    .unwrap();
    p.options.threads = 1;
    p.options.progress = Some(std::sync::Arc::new(move |_| {
        let _ = reached_tx.send(());
        let _ = held.lock().map(|rx| rx.recv());
    }));
    (p, Steps { reached, go })
}

/// A delivery of a process job cut short mid-build (its worker gone, its
/// lease lapsed) after it announced archives that may be being pushed:
/// the next delivery builds the same archives again in place, and does
/// not delete the announced ones first (their pushes would find them
/// gone and fail the transfer). Both builds are stepped, so the check
/// falls after the second build began and before it stored anything.
#[actix_web::test]
async fn a_build_delivered_again_keeps_the_archives_it_announced() {
    let mut bank = Bank::new("again", &[]).await;
    let (first, mut steps) = stepping_processor(&bank);
    let first_id = first.worker_id.clone();
    start_processing(&mut bank, std::sync::Arc::new(first));
    let u = user(178);
    // A zip export large enough to be built one unit per scope (past
    // `SPLIT_MIN_BYTES`, mostly media so that it stays that large), so
    // that archives are stored, and announced, one after another.
    let options = dumpgen::Options {
        provider: dumpgen::Provider::Google,
        format: dumpgen::Format::Zip,
        target_bytes: processor::extract::SPLIT_MIN_BYTES * 3 / 2,
        media_ratio: 0.9,
        seed: 178,
        ..dumpgen::Options::default()
    };
    give_dump_of(&bank, &u, &options).await;
    let client = Client::new("Delivered again", 178, dead());
    let (status, body) = process_async(&bank.base, &client.grant(&u)).await;
    assert_eq!(status, 202, "{body}");
    // Step the first build until two archives are stored: the first of
    // them is then announced (the last one stored is held back).
    loop {
        tokio::time::timeout(LIMIT, steps.reached.recv())
            .await
            .expect("the first build ended before storing two archives")
            .unwrap();
        if stored(&bank, &client.id).await.0 >= 2 {
            break;
        }
        steps.go.send(()).unwrap();
    }
    let t = wait_until(&bank, &client.id, LIMIT, |t| t.files_total >= 1).await;
    let announced = bank
        .app
        .state
        .files(&client.id, t.generation)
        .await
        .unwrap();
    let key = announced[0].storage_key.clone();
    assert!(bank.app.storage.head(&key).await.unwrap().is_some());

    // The first delivery is cut short: its lease lapses, and the job is
    // delivered again, to another processor.
    let lease = runtime::state::Lease::process(&client.id, t.generation);
    assert!(bank
        .app
        .state
        .release_lease(&lease, &first_id)
        .await
        .unwrap());
    let (second, mut again) = stepping_processor(&bank);
    let job = runtime::jobs::ProcessJob {
        transfer: client.id.clone(),
        generation: t.generation,
    };
    let run = tokio::spawn(async move { second.process(&job).await });
    tokio::time::timeout(LIMIT, again.reached.recv())
        .await
        .expect("the second build never began")
        .unwrap();
    assert!(
        bank.app.storage.head(&key).await.unwrap().is_some(),
        "the second delivery deleted an archive already announced"
    );
    // Both run free to their ends.
    drop(again.go);
    drop(steps.go);
    run.await.unwrap().unwrap();
    let t = wait_until(&bank, &client.id, LIMIT, |t| t.built).await;
    for f in bank
        .app
        .state
        .files(&client.id, t.generation)
        .await
        .unwrap()
    {
        assert!(bank
            .app
            .storage
            .head(&f.storage_key)
            .await
            .unwrap()
            .is_some());
    }
    bank.cleanup().await;
}
