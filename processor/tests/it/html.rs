//! Google's HTML My Activity and YouTube history through the real
//! extraction, beside the JSON form of the same generated activity;
//! localised Takeouts; Facebook's HTML export told, never silently empty.

use std::io::{Cursor, Write};

use dumpgen::{ActivityForm, Era, Format, Language, Options, Provider};
use serde_json::{json, Map, Value as Json};

use super::extract::{file_env, json, names, text, Env, Zip};

/// The fields HTML carries, time cut to the second: what both forms must
/// agree on.
fn comparable(rec: &Json) -> Json {
    let mut out = Map::new();
    for key in [
        "header",
        "title",
        "titleUrl",
        "subtitles",
        "time",
        "products",
        "details",
        "locationInfos",
    ] {
        if let Some(v) = rec.get(key) {
            let v = match (key, v.as_str()) {
                ("time", Some(t)) => Json::String(format!("{}Z", t.get(..19).unwrap_or(t))),
                _ => v.clone(),
            };
            out.insert(key.into(), v);
        }
    }
    Json::Object(out)
}

fn opts(seed: u64, language: Language, activity: ActivityForm) -> Options {
    Options {
        provider: Provider::Google,
        format: Format::Zip,
        seed,
        target_bytes: 300_000,
        media_ratio: 0.2,
        parts: 1,
        era: Era::Current,
        language,
        activity,
    }
}

/// The records of the one data file of an archive, and its manifest entry.
fn records(z: &mut Zip) -> (Vec<Json>, Json) {
    let data: Vec<String> = names(z)
        .into_iter()
        .filter(|n| n != "manifest.json" && n.ends_with(".json"))
        .collect();
    assert_eq!(data.len(), 1, "{data:?}");
    let manifest = json(z, "manifest.json");
    let entry = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == data[0].as_str())
        .unwrap()
        .clone();
    let recs = json(z, &data[0]).as_array().unwrap().clone();
    (recs, entry)
}

async fn build_one(env: &Env, o: &Options, scope: &str) -> (Vec<Json>, Json) {
    let dumps = env.dumps(o).await;
    let built = env.build(&dumps, &[scope]).await;
    let mut z = env.open(&built[0]).await;
    records(&mut z)
}

#[tokio::test]
async fn html_and_json_forms_give_the_same_records() {
    let env = file_env();
    let mut forms = std::collections::BTreeSet::new();
    // dumpgen picks the date form by seed % 3: none, UTC, a zone.
    for (seed, lang) in [
        (3, Language::En),
        (4, Language::De),
        (5, Language::Nl),
        (8, Language::En),
    ] {
        let html = opts(seed, lang, ActivityForm::Html);
        // Which of the three date forms this seed wrote.
        let page = dumpgen::generate(&html).unwrap();
        let mut zip = zip::ZipArchive::new(Cursor::new(page[0].1.clone())).unwrap();
        let search = dumpgen::listing(&html)
            .into_iter()
            .find(|p| p.contains("/Search/") || p.contains("/Suche/"))
            .unwrap();
        assert!(search.ends_with(".html"), "{search}");
        let page = String::from_utf8(text(&mut zip, &search)).unwrap();
        let form = if page.contains(" UTC</div>") {
            "utc"
        } else if page.contains("M</div>") || page.contains(":00</div>") {
            "bare"
        } else {
            "zone"
        };
        forms.insert(form);
        let scopes: &[&str] = if seed == 3 {
            &[
                "google.my_activity.search",
                "google.my_activity.assistant",
                "google.my_activity.youtube",
                "google.youtube.watch_history",
                "google.youtube.search_history",
            ]
        } else {
            &["google.my_activity.search", "google.youtube.watch_history"]
        };
        for scope in scopes.iter().copied() {
            let (from_json, je) =
                build_one(&env, &opts(seed, lang, ActivityForm::Json), scope).await;
            let (from_html, he) = build_one(&env, &html, scope).await;
            assert!(from_json.len() >= 3, "{scope}");
            let a: Vec<Json> = from_json.iter().map(comparable).collect();
            let b: Vec<Json> = from_html.iter().map(comparable).collect();
            assert_eq!(a, b, "seed {seed} {lang:?} {scope} ({form})");
            // The archive holds JSON named as the HTML, and says so.
            assert_eq!(je.get("source_format"), None);
            assert_eq!(he["source_format"], "activity_html");
            let path = he["path"].as_str().unwrap();
            assert!(path.ends_with(".json"), "{path}");
            assert_eq!(
                he["source_entry"].as_str().unwrap(),
                format!("{}.html", path.trim_end_matches(".json"))
            );
        }
    }
    assert_eq!(
        forms.len(),
        3,
        "the seeds cover the three date forms: {forms:?}"
    );
}

#[tokio::test]
async fn html_records_are_filtered_and_projected_never_leaked() {
    let env = file_env();
    let o = opts(9, Language::En, ActivityForm::Html);
    let (recs, _) = build_one(
        &env,
        &o,
        "google.youtube.watch_history[time>=2020-01-01].{title,time}",
    )
    .await;
    assert!(!recs.is_empty());
    for r in &recs {
        let keys: Vec<&String> = r.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["title", "time"], "{r}");
        assert!(r["time"].as_str().unwrap() >= "2020-01-01");
    }
    let (all, _) = build_one(&env, &o, "google.youtube.watch_history").await;
    assert!(all.len() > recs.len());
}

/// A Facebook export downloaded in HTML (`your_posts_1.html`).
fn facebook_html_zip() -> Vec<u8> {
    let mut zw = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let o = zip::write::SimpleFileOptions::default();
    for name in [
        "your_facebook_activity/posts/your_posts__check_ins__photos_and_videos_1.html",
        "your_facebook_activity/messages/inbox/sam_123/message_1.html",
        "index.html",
    ] {
        zw.start_file(name, o).unwrap();
        zw.write_all(b"<html><body><div>Jo Example updated their status.</div></body></html>")
            .unwrap();
    }
    zw.finish().unwrap().into_inner()
}

#[tokio::test]
async fn a_facebook_html_export_is_told_not_silently_empty() {
    let env = file_env();
    let dumps = env
        .store(
            "facebook",
            vec![(
                "facebook-jo-06_12_2026-AbCdEfGh.zip".into(),
                facebook_html_zip(),
            )],
        )
        .await;
    let built = env
        .build(
            &dumps,
            &["facebook.posts", "facebook.messages", "facebook.friends"],
        )
        .await;
    let posts = &built[0];
    assert_eq!(posts.files, 0);
    assert_eq!(posts.unreadable.len(), 1);
    let u = &posts.unreadable[0];
    assert_eq!(u.catalog_path, "posts");
    assert_eq!(u.files, 1);
    let note = u.note("facebook");
    assert!(
        note.starts_with("facebook.posts: 1 file could not be read"),
        "{note}"
    );
    assert!(note.contains("request it again in JSON"), "{note}");
    let mut z = env.open(posts).await;
    let manifest = json(&mut z, "manifest.json");
    assert_eq!(manifest["unreadable"][0]["catalog_path"], "posts");
    assert_eq!(
        manifest["unreadable"][0]["example"],
        json!("your_facebook_activity/posts/your_posts__check_ins__photos_and_videos_1.html")
    );
    assert_eq!(built[1].unreadable[0].catalog_path, "messages");
    // Friends: no file at all, nothing to tell.
    assert!(built[2].unreadable.is_empty());
}

#[tokio::test]
async fn an_html_file_that_cannot_be_read_is_told() {
    let env = file_env();
    let page = "<div class=\"outer-cell\"><div class=\"content-cell mdl-typography--body-1\">Searched for x<br>23. Juni 2015 um 14:43:45</div></div>";
    let mut zw = zip::ZipWriter::new(Cursor::new(Vec::new()));
    zw.start_file(
        "Takeout/My Activity/Search/MyActivity.html",
        zip::write::SimpleFileOptions::default(),
    )
    .unwrap();
    zw.write_all(page.as_bytes()).unwrap();
    let bytes = zw.finish().unwrap().into_inner();
    let dumps = env
        .store(
            "google",
            vec![("takeout-20260101T000000Z-001.zip".into(), bytes)],
        )
        .await;
    let built = env.build(&dumps, &["google.my_activity.search"]).await;
    assert_eq!(built[0].files, 0);
    let u = &built[0].unreadable[0];
    assert!(u.reason.contains("cannot read"), "{}", u.reason);
    assert_eq!(u.example, "Takeout/My Activity/Search/MyActivity.html");
}

/// A 300 MB `MyActivity.html` through the extraction: throughput and the
/// peak memory of the process (VmHWM). Run with
/// `cargo test --release -p alias-processor --test it -- --ignored html_300mb`.
#[tokio::test]
#[ignore = "a measurement: 300 MB of HTML"]
async fn html_300mb_within_the_memory_bound() {
    let dir = tempfile::tempdir().unwrap();
    let zip_path = dir.path().join("takeout-20260101T000000Z-001.zip");
    let cell = |i: u64| {
        format!(
            "<div class=\"outer-cell mdl-cell mdl-cell--12-col mdl-shadow--2dp\"><div class=\"mdl-grid\"><div class=\"header-cell mdl-cell mdl-cell--12-col\"><p class=\"mdl-typography--title\">Search<br></p></div><div class=\"content-cell mdl-cell mdl-cell--6-col mdl-typography--body-1\">Searched for&nbsp;<a href=\"https://www.google.com/search?q=caf%C3%A9+{i}\">caf\u{e9} &amp; tea {i}</a><br>Jun {}, 20{}, 2:43:45\u{202f}PM PDT</div><div class=\"content-cell mdl-cell mdl-cell--12-col mdl-typography--caption\"><b>Products:</b><br>&emsp;Search<br><b>Why is this here?</b><br>&emsp;This activity was saved to your Google Account because the following settings were on:&nbsp;Web &amp; App Activity.</div></div></div>",
            i % 28 + 1,
            15 + i % 10
        )
    };
    let target: u64 = 300 << 20;
    let mut html_bytes = 0u64;
    {
        let f = std::fs::File::create(&zip_path).unwrap();
        let mut zw = zip::ZipWriter::new(std::io::BufWriter::new(f));
        let o = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .compression_level(Some(1))
            .large_file(true);
        zw.start_file("Takeout/My Activity/Search/MyActivity.html", o)
            .unwrap();
        zw.write_all(b"<!DOCTYPE html><html><body><div class=\"mdl-grid\">")
            .unwrap();
        let mut i = 0u64;
        while html_bytes < target {
            let c = cell(i);
            zw.write_all(c.as_bytes()).unwrap();
            html_bytes += c.len() as u64;
            i += 1;
        }
        zw.write_all(b"</div></body></html>").unwrap();
        zw.finish().unwrap();
    }
    let env = super::extract::file_env();
    let bytes = std::fs::read(&zip_path).unwrap();
    let dumps = env
        .store(
            "google",
            vec![("takeout-20260101T000000Z-001.zip".into(), bytes)],
        )
        .await;
    let rss = |key: &str| -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let before = rss("VmRSS:");
    let t = std::time::Instant::now();
    let built = env
        .build(
            &dumps,
            &["google.my_activity.search[time>=2020-01-01].{title,time}"],
        )
        .await;
    let secs = t.elapsed().as_secs_f64();
    let mib = html_bytes as f64 / (1 << 20) as f64;
    println!(
        "HTML {mib:.0} MiB in {secs:.1} s = {:.1} MiB/s; {} records kept; RSS before {} MiB, peak (VmHWM) {} MiB",
        mib / secs,
        built[0].records,
        before / 1024,
        rss("VmHWM:") / 1024
    );
    assert!(built[0].records > 0);
}
