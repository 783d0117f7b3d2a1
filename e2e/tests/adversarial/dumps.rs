//! Attacks: dumps built to exhaust the processor (issue 12, item 5).
//!
//! A user stores an export crafted against the processor (too many
//! entries, entries that inflate far past their size, parts that pass a
//! limit only together) and grants it to a client. Through the real
//! gateway, processor and pusher: the transfer ends `failed` with the
//! limit's reason, once (a final failure, never a retried one), the client
//! receives nothing, and the processor goes on serving another user, whose
//! transfer completes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Cursor, Write};
use std::time::Duration;

use runtime::mq::{Queue, Route};
use runtime::state::TransferState;
use sink::Faults;

use e2e::{
    assert_delivered, give_dump, process_async, process_sync, store_export, user, wait_terminal,
    Bank, Client,
};

const LIMIT: Duration = Duration::from_secs(120);

/// A zip of `n` entries of `body` each, deflated.
fn mail_zip(n: usize, body: &[u8]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let o = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(9));
    for i in 0..n {
        w.start_file(format!("Takeout/Mail/{i}.mbox"), o).unwrap();
        w.write_all(body).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// The attacker's export is granted; the transfer must fail with a reason
/// containing `expected`, once, with nothing pushed; then a victim's
/// transfer on the same processor completes.
async fn refused_then_others_served(
    prefix: &str,
    extra: &[(&str, &str)],
    export: Vec<(String, Vec<u8>)>,
    expected: &[&str],
) {
    let mut bank = Bank::new(prefix, extra).await;
    bank.start_processor().await;
    bank.start_pusher().await;
    let attacker = user(201);
    store_export(&bank, &attacker, export).await;
    let target = Client::new("Bombed", 61, Faults::none());
    let (status, body) = process_async(&bank.base, &target.grant(&attacker)).await;
    assert_eq!(status, 202, "{body}");
    let t = wait_terminal(&bank, &target.id, LIMIT).await;
    assert_eq!(t.state, TransferState::Failed, "{t:?}");
    let error = t.error.clone().unwrap_or_default();
    for word in expected {
        assert!(error.contains(word), "reason {error:?} lacks {word:?}");
    }
    // A final failure, not one reached after retries, and no job left to
    // run it again.
    assert!(!error.contains("gave up"), "{error}");
    assert_eq!(t.generation, 1);
    for queue in [Queue::Delayed(Route::Process), Queue::Dead] {
        assert_eq!(
            bank.app.broker.queue_depth(queue).await.unwrap(),
            0,
            "{queue:?}"
        );
    }
    let files = bank
        .app
        .state
        .files(&target.id, t.generation)
        .await
        .unwrap();
    assert!(files.is_empty(), "{files:?}");
    assert_eq!(target.sink.counters().requests, 0, "nothing was pushed");
    // The processor serves the next user.
    let victim = user(202);
    give_dump(&bank, &victim, 300_000, 9).await;
    let client = Client::new("Victim", 62, Faults::none());
    let (status, body) = process_sync(&bank.base, &client.grant(&victim)).await;
    assert_eq!(status, 200, "{body}");
    assert_delivered(&bank, &client).await;
    // The failed transfer stayed as it was.
    let again = bank.app.state.transfer(&target.id).await.unwrap().unwrap();
    assert_eq!(
        (again.state, again.generation, again.error),
        (TransferState::Failed, 1, t.error)
    );
    assert_eq!(target.sink.counters().requests, 0);
    bank.cleanup().await;
}

/// A Google Photos export of more entries than `ALIAS_MAX_ENTRIES`: refused
/// from the zip's end record, before its central directory is parsed.
#[actix_web::test]
async fn an_export_of_too_many_entries_fails_the_transfer_once() {
    refused_then_others_served(
        "adv-dumps-count",
        &[("ALIAS_MAX_ENTRIES", "1000")],
        dumpgen::photo_library(1500, 1, 4).unwrap(),
        &["ALIAS_MAX_ENTRIES", "1500 entries"],
    )
    .await;
}

/// Small entries that each inflate ~800-fold (each under the size where
/// one entry's ratio is judged): refused on the ratio of all entries
/// together, with the default limits.
#[actix_web::test]
async fn a_ratio_bomb_of_small_entries_fails_the_transfer_once() {
    refused_then_others_served(
        "adv-dumps-ratio",
        &[],
        vec![(
            "takeout-20250101T000000Z-001.zip".into(),
            mail_zip(600, &[0u8; 48 << 10]),
        )],
        &["ratio", "ALIAS_MAX_RATIO"],
    )
    .await;
}

/// Two parts of one export, each under `ALIAS_MAX_ENTRIES`, together past
/// it: the parts are counted together.
#[actix_web::test]
async fn export_parts_are_counted_together() {
    refused_then_others_served(
        "adv-dumps-parts",
        &[("ALIAS_MAX_ENTRIES", "1000")],
        dumpgen::photo_library(1400, 2, 5).unwrap(),
        &["ALIAS_MAX_ENTRIES", "1400 entries"],
    )
    .await;
}
