//! Exports as people download them, through the whole bank (gateway,
//! processor, pusher, an `alias-sink` client; local Redis and RabbitMQ):
//! Google's default HTML My Activity in a German Takeout reaches the client
//! as JSON records, and a file the bank cannot read is told on the
//! transfer.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Cursor, Read, Write};
use std::time::Duration;

use e2e::*;

const LIMIT: Duration = Duration::from_secs(60);

fn entry(zip_bytes: &[u8], name: &str) -> Vec<u8> {
    let mut z = zip::ZipArchive::new(Cursor::new(zip_bytes)).unwrap();
    let mut v = Vec::new();
    z.by_name(name).unwrap().read_to_end(&mut v).unwrap();
    v
}

#[actix_web::test]
async fn a_default_html_german_takeout_reaches_the_client_as_json() {
    let mut bank = Bank::new("hx1", &[]).await;
    bank.start_processor().await;
    bank.start_pusher().await;
    let u = user(91);
    let options = dumpgen::Options {
        target_bytes: 256 << 10,
        seed: 3,
        activity: dumpgen::ActivityForm::Html,
        language: dumpgen::Language::De,
        ..dumpgen::Options::default()
    };
    let listing = dumpgen::listing(&options);
    assert!(listing
        .iter()
        .any(|p| p == "Takeout/Meine Aktivitäten/Suche/MeineAktivitäten.html"));
    store_export(&bank, &u, dumpgen::generate(&options).unwrap()).await;
    let client = Client::new("htmlclient", 41, Default::default());
    let (status, body) = process_sync(&bank.base, &client.grant(&u)).await;
    assert_eq!(status, 200, "{body}");
    wait_terminal(&bank, &client.id, LIMIT).await;
    let got = assert_delivered(&bank, &client).await;
    let (_, search) = got
        .iter()
        .find(|(name, _)| name.contains("my_activity.search"))
        .unwrap();
    let records: serde_json::Value = serde_json::from_slice(&entry(
        search,
        "Takeout/Meine Aktivitäten/Suche/MeineAktivitäten.json",
    ))
    .unwrap();
    let records = records.as_array().unwrap();
    assert!(records.len() >= 3);
    for r in records {
        assert_eq!(r["header"], "Search", "{r}");
        assert!(
            r["title"].as_str().unwrap().starts_with("Searched for")
                || r["title"].as_str().unwrap().starts_with("Visited")
        );
        assert!(r["time"].as_str().unwrap().ends_with('Z'));
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&entry(search, "manifest.json")).unwrap();
    assert_eq!(manifest["files"][0]["source_format"], "activity_html");
    assert_eq!(
        manifest["files"][0]["source_entry"],
        "Takeout/Meine Aktivitäten/Suche/MeineAktivitäten.html"
    );
    // Nothing of the HTML itself reached the client.
    for bytes in got.values() {
        let mut z = zip::ZipArchive::new(Cursor::new(bytes.as_slice())).unwrap();
        for i in 0..z.len() {
            assert!(!z.by_index(i).unwrap().name().ends_with(".html"));
        }
    }
    bank.cleanup().await;
}

#[actix_web::test]
async fn an_html_file_the_bank_cannot_read_is_told_on_the_transfer() {
    let mut bank = Bank::new("hx2", &[]).await;
    bank.start_processor().await;
    bank.start_pusher().await;
    let u = user(92);
    let mut zw = zip::ZipWriter::new(Cursor::new(Vec::new()));
    zw.start_file(
        "Takeout/My Activity/Search/MyActivity.html",
        zip::write::SimpleFileOptions::default(),
    )
    .unwrap();
    zw.write_all(b"<div class=\"outer-cell\"><div class=\"content-cell mdl-typography--body-1\">Searched for x<br>23. Juni 2015 um 14:43:45</div></div>")
        .unwrap();
    let bytes = zw.finish().unwrap().into_inner();
    store_export(
        &bank,
        &u,
        vec![("takeout-20260101T000000Z-001.zip".into(), bytes)],
    )
    .await;
    let client = Client::new("htmlclient2", 42, Default::default());
    let (status, body) = process_sync(&bank.base, &client.grant(&u)).await;
    assert_eq!(status, 200, "{body}");
    let t = wait_terminal(&bank, &client.id, LIMIT).await;
    assert!(
        t.notes.iter().any(|n| n
            .starts_with("google.my_activity.search: 1 file could not be read")
            && n.contains("cannot read")),
        "{:?}",
        t.notes
    );
    bank.cleanup().await;
}
