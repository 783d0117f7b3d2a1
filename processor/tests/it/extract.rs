//! `processor::extract` on generated dumps, and on hostile ones.

use std::collections::{BTreeMap, HashSet};
use std::io::{Cursor, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use dumpgen::{Era, Format, Options, Provider};
use processor::extract::{
    build_archives, BuildOptions, BuiltArchive, Catalog, DumpSource, ExtractError, Limits,
};
use protocol::scope::Scope;
use runtime::storage::{S3Settings, Storage};
use serde_json::Value as Json;
use zip::ZipArchive;

pub(crate) type Zip = ZipArchive<Cursor<Vec<u8>>>;

fn opts(provider: Provider, format: Format, parts: u32, era: Era) -> Options {
    Options {
        provider,
        format,
        seed: 11,
        target_bytes: 250_000,
        media_ratio: 0.5,
        parts,
        era,
        ..Options::default()
    }
}

pub(crate) struct Env {
    storage: Storage,
    _dir: Option<tempfile::TempDir>,
    catalog: Catalog,
}

pub(crate) fn file_env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    Env {
        storage: Storage::from_url(&url, &S3Settings::default()).unwrap(),
        _dir: Some(dir),
        catalog: Catalog::embedded().unwrap(),
    }
}

fn mem_env() -> Env {
    Env {
        storage: Storage::from_url("memory://", &S3Settings::default()).unwrap(),
        _dir: None,
        catalog: Catalog::embedded().unwrap(),
    }
}

impl Env {
    /// The storage of the dumps and archives.
    pub(crate) fn storage(&self) -> &Storage {
        &self.storage
    }

    /// The embedded catalogs.
    pub(crate) fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub(crate) async fn store(
        &self,
        provider: &str,
        parts: Vec<(String, Vec<u8>)>,
    ) -> Vec<DumpSource> {
        let mut out = Vec::new();
        for (name, bytes) in parts {
            let key = format!("dumps/u1/{provider}/{name}");
            let info = self
                .storage
                .put_bytes(&key, Bytes::from(bytes))
                .await
                .unwrap();
            out.push(DumpSource {
                provider: provider.into(),
                key,
                name,
                size: info.size,
                blake2b: info.blake2b,
            });
        }
        out
    }

    pub(crate) async fn dumps(&self, o: &Options) -> Vec<DumpSource> {
        self.store(o.provider.as_str(), dumpgen::generate(o).unwrap())
            .await
    }

    async fn try_build(
        &self,
        dumps: &[DumpSource],
        scopes: &[&str],
        options: &BuildOptions,
    ) -> Result<Vec<BuiltArchive>, ExtractError> {
        let scopes: Vec<Scope> = scopes.iter().map(|s| Scope::parse(s).unwrap()).collect();
        build_archives(
            &self.storage,
            &self.catalog,
            dumps,
            &scopes,
            "transfers/t1/1",
            options,
        )
        .await
    }

    pub(crate) async fn build(&self, dumps: &[DumpSource], scopes: &[&str]) -> Vec<BuiltArchive> {
        self.try_build(dumps, scopes, &BuildOptions::default())
            .await
            .unwrap()
    }

    pub(crate) async fn open(&self, a: &BuiltArchive) -> Zip {
        let bytes = self.storage.get_bytes(&a.storage_key).await.unwrap();
        assert_eq!(bytes.len() as u64, a.size);
        assert_eq!(blake2b_simd::blake2b(&bytes).as_bytes(), &a.blake2b[..]);
        ZipArchive::new(Cursor::new(bytes.to_vec())).unwrap()
    }
}

pub(crate) fn names(z: &Zip) -> Vec<String> {
    z.file_names().map(str::to_owned).collect()
}

pub(crate) fn text(z: &mut Zip, name: &str) -> Vec<u8> {
    let mut v = Vec::new();
    z.by_name(name).unwrap().read_to_end(&mut v).unwrap();
    v
}

pub(crate) fn json(z: &mut Zip, name: &str) -> Json {
    serde_json::from_slice(&text(z, name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// All entries but the manifest, name → bytes.
fn contents(z: &mut Zip) -> BTreeMap<String, Vec<u8>> {
    names(z)
        .into_iter()
        .filter(|n| n != "manifest.json")
        .map(|n| {
            let b = text(z, &n);
            (n, b)
        })
        .collect()
}

/// The records of a dump file (from the dumpgen bytes), as JSON.
fn source_json(parts: &[(String, Vec<u8>)], name: &str) -> Json {
    for (_, bytes) in parts {
        let mut z = ZipArchive::new(Cursor::new(bytes.clone())).unwrap();
        if z.index_for_name(name).is_some() {
            return json(&mut z, name);
        }
    }
    panic!("{name} not in the dump");
}

fn records<'a>(v: &'a Json, key: Option<&str>) -> &'a Vec<Json> {
    match key {
        Some(k) => v[k].as_array().unwrap(),
        None => v.as_array().unwrap(),
    }
}

/// Epoch seconds of a record time, for the test's own checks.
fn secs(v: &Json) -> i64 {
    match v {
        Json::String(s) if s.len() >= 19 && s.as_bytes()[4] == b'-' => {
            let d = &s[..19];
            let (y, mo, da): (i64, i64, i64) = (
                d[0..4].parse().unwrap(),
                d[5..7].parse().unwrap(),
                d[8..10].parse().unwrap(),
            );
            let (h, mi, se): (i64, i64, i64) = (
                d[11..13].parse().unwrap(),
                d[14..16].parse().unwrap(),
                d[17..19].parse().unwrap(),
            );
            // days from civil
            let y2 = if mo <= 2 { y - 1 } else { y };
            let era = y2.div_euclid(400);
            let yoe = y2.rem_euclid(400);
            let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + da - 1;
            let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
            days * 86_400 + h * 3600 + mi * 60 + se
        }
        Json::String(s) => s.parse::<i64>().unwrap() / 1000,
        Json::Number(n) => {
            let n = n.as_i64().unwrap();
            if n > 100_000_000_000_000 {
                n / 1_000_000
            } else if n > 100_000_000_000 {
                n / 1000
            } else {
                n
            }
        }
        other => panic!("not a time: {other}"),
    }
}

const CUT: i64 = 1_577_836_800; // 2020-01-01

#[tokio::test]
async fn google_paths_filter_by_date_across_formats() {
    let env = file_env();
    let o = opts(Provider::Google, Format::Zip, 1, Era::Current);
    let parts = dumpgen::generate(&o).unwrap();
    let dumps = env.store("google", parts.clone()).await;
    // (scope, file, wrapper key, time fields)
    let cases: &[(&str, &str, Option<&str>, &[&str])] = &[
        (
            "google.my_activity.search[time>=2020-01-01].*",
            "Takeout/My Activity/Search/MyActivity.json",
            None,
            &["time"],
        ),
        (
            "google.my_activity.youtube[time>=2020-01-01].*",
            "Takeout/My Activity/YouTube/MyActivity.json",
            None,
            &["time"],
        ),
        (
            "google.youtube.watch_history[time>=2020-01-01].*",
            "Takeout/YouTube and YouTube Music/history/watch-history.json",
            None,
            &["time"],
        ),
        (
            "google.youtube.search_history[time>=2020-01-01].*",
            "Takeout/YouTube and YouTube Music/history/search-history.json",
            None,
            &["time"],
        ),
        (
            "google.chrome.history[time_usec>=2020-01-01].*",
            "Takeout/Chrome/History.json",
            Some("Browser History"),
            &["time_usec"],
        ),
        (
            "google.location_history[timestamp>=2020-01-01,timestampMs>=2020-01-01].*",
            "Takeout/Location History (Timeline)/Records.json",
            Some("locations"),
            &[],
        ),
        (
            "google.location_history[timestampMs<2020-01-01].*",
            "Takeout/Location History (Timeline)/Records.json",
            Some("locations"),
            &["timestampMs"],
        ),
        (
            "google.location_history[timestamp>=2022-06-01].*",
            "Takeout/Location History (Timeline)/Records.json",
            Some("locations"),
            &["timestamp"],
        ),
    ];
    let scopes: Vec<&str> = cases.iter().map(|c| c.0).collect();
    let built = env.build(&dumps, &scopes).await;
    for ((scope, file, key, fields), a) in cases.iter().zip(&built) {
        let mut z = env.open(a).await;
        let src = source_json(&parts, file);
        let pred = |r: &Json| -> bool {
            let s = Scope::parse(scope).unwrap();
            s.predicates.iter().all(|p| {
                let Some(v) = r.get(&p.field) else {
                    return false;
                };
                let bound = match p.value.as_ref().and_then(|v| v.as_str()) {
                    Some("2022-06-01") => 1_654_041_600,
                    _ => CUT,
                };
                match p.op {
                    protocol::scope::Op::Ge => secs(v) >= bound,
                    protocol::scope::Op::Lt => secs(v) < bound,
                    _ => unreachable!(),
                }
            })
        };
        let want: Vec<&Json> = records(&src, *key).iter().filter(|r| pred(r)).collect();
        assert!(
            !want.is_empty() || fields.is_empty(),
            "{scope}: test data has no match"
        );
        if want.is_empty() {
            assert!(!names(&z).contains(&file.to_string()), "{scope}");
            continue;
        }
        let got = json(&mut z, file);
        let got = records(&got, *key);
        assert_eq!(got.len(), want.len(), "{scope}");
        assert!(
            got.len() < records(&src, *key).len(),
            "{scope}: nothing filtered"
        );
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g, *w, "{scope}");
        }
        assert_eq!(a.records, want.len() as u64);
        let m = json(&mut z, "manifest.json");
        assert_eq!(m["files"][0]["records"], want.len());
    }
}

#[tokio::test]
async fn equality_has_and_projection() {
    let env = mem_env();
    let o = opts(Provider::Google, Format::Zip, 1, Era::Current);
    let parts = dumpgen::generate(&o).unwrap();
    let dumps = env.store("google", parts.clone()).await;
    let file = "Takeout/My Activity/Search/MyActivity.json";
    let built = env
        .build(
            &dumps,
            &[
                "google.my_activity.search[header=Search,has locationInfos].{title,time}",
                "google.my_activity.search[header=Nope].*",
            ],
        )
        .await;
    let src = source_json(&parts, file);
    let want: Vec<&Json> = src
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r.get("locationInfos").is_some())
        .collect();
    assert!(!want.is_empty());
    let mut z = env.open(&built[0]).await;
    let got = json(&mut z, file);
    let got = got.as_array().unwrap();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        let keys: Vec<&String> = g.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["title", "time"]);
        assert_eq!(g["title"], w["title"]);
    }
    // Google's \u003d escapes decode; `=` in the projected output is plain.
    let mut z = env.open(&built[1]).await;
    assert_eq!(names(&z), ["manifest.json"]);
    assert_eq!(json(&mut z, "manifest.json")["records"], 0);
}

#[tokio::test]
async fn assistant_audio_follows_kept_records() {
    let env = file_env();
    let o = opts(Provider::Google, Format::Zip, 1, Era::Current);
    let parts = dumpgen::generate(&o).unwrap();
    let dumps = env.store("google", parts.clone()).await;
    let file = "Takeout/My Activity/Assistant/MyActivity.json";
    let src = source_json(&parts, file);
    let with_audio: Vec<&Json> = src
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r.get("audioFiles").is_some())
        .collect();
    assert!(with_audio.len() >= 2);
    // Keep the newest recording only.
    let newest = with_audio
        .iter()
        .map(|r| r["time"].as_str().unwrap())
        .max()
        .unwrap();
    let s1 = format!("google.my_activity.assistant[time>={newest:?}].*");
    let built = env
        .build(
            &dumps,
            &[
                &s1,
                "google.my_activity.assistant[has audioFiles].{title}",
                "google.my_activity.assistant[has audioFiles].*",
            ],
        )
        .await;
    let mp3s = |z: &Zip| {
        names(z)
            .into_iter()
            .filter(|n| n.ends_with(".mp3"))
            .collect::<Vec<_>>()
    };
    let z = env.open(&built[0]).await;
    assert_eq!(mp3s(&z).len(), 1, "{:?}", names(&z));
    let z = env.open(&built[1]).await;
    assert!(
        mp3s(&z).is_empty(),
        "projection without audioFiles copies no audio"
    );
    let mut z = env.open(&built[2]).await;
    assert_eq!(mp3s(&z).len(), with_audio.len());
    for r in json(&mut z, file).as_array().unwrap() {
        assert!(r.get("audioFiles").is_some());
    }
}

#[tokio::test]
async fn photos_follow_their_sidecars() {
    for era in [Era::Current, Era::Legacy] {
        let env = file_env();
        let o = Options {
            target_bytes: 1_500_000,
            ..opts(Provider::Google, Format::Zip, 1, era)
        };
        let dumps = env.dumps(&o).await;
        let (cut, cut_ms) = match era {
            Era::Current => ("2024-09-01", 1_725_148_800_000i64),
            Era::Legacy => ("2021-01-01", 1_609_459_200_000),
        };
        let filtered = format!("google.photos[photoTakenTime>={cut}].*");
        let built = env.build(&dumps, &[&filtered, "google.photos.*"]).await;
        let mut z = env.open(&built[0]).await;
        let all = env.open(&built[1]).await;
        let media = |n: &String| n.starts_with("Takeout/Google Photos/") && !n.ends_with(".json");
        let kept: Vec<String> = names(&z).into_iter().filter(media).collect();
        let total = names(&all).into_iter().filter(media).count();
        assert!(
            !kept.is_empty() && kept.len() < total,
            "{era:?}: {} of {total}",
            kept.len()
        );
        let sidecars: Vec<String> = names(&z)
            .into_iter()
            .filter(|n| n.ends_with(".json") && n.starts_with("Takeout/"))
            .collect();
        for s in &sidecars {
            let v = json(&mut z, s);
            if let Some(t) = v.get("photoTakenTime") {
                let taken: i64 = t["timestamp"].as_str().unwrap().parse().unwrap();
                assert!(taken * 1000 >= cut_ms, "{s}");
            }
        }
        // Every kept media file has a kept sidecar for it (or its original).
        for m in &kept {
            let stem = m
                .rsplit_once('/')
                .unwrap()
                .1
                .split('.')
                .next()
                .unwrap()
                .replace("-edited", "")
                .replace("(1)", "");
            assert!(
                sidecars.iter().any(|s| s.contains(&stem)),
                "{era:?}: {m} kept without its sidecar"
            );
        }
        // Edited copies and "(1)" duplicates are found too.
        assert!(names(&all).iter().any(|n| n.contains("-edited")));
        assert!(names(&all).iter().any(|n| n.contains("(1).jpg")));
    }
}

#[tokio::test]
async fn whole_scope_copies_zip_entries_raw() {
    let env = file_env();
    let o = opts(Provider::Google, Format::Zip, 1, Era::Current);
    let parts = dumpgen::generate(&o).unwrap();
    let dumps = env.store("google", parts.clone()).await;
    let built = env.build(&dumps, &["google.*"]).await;
    let mut out = env.open(&built[0]).await;
    let mut src = ZipArchive::new(Cursor::new(parts[0].1.clone())).unwrap();
    let out_names = names(&out);
    // Everything but the HTML overview is selected by some path.
    let expected: Vec<String> = names(&src)
        .into_iter()
        .filter(|n| !n.ends_with(".html"))
        .collect();
    assert_eq!(out_names.len(), expected.len() + 1);
    let mut sorted = out_names.clone();
    sorted.pop();
    let mut s2 = sorted.clone();
    s2.sort();
    assert_eq!(sorted, s2, "entries sorted by name");
    assert_eq!(out_names.last().unwrap(), "manifest.json");
    for n in &expected {
        let mut a = Vec::new();
        let mut b = Vec::new();
        let fa = src.by_name_seek(n).ok().map(|_| ());
        let _ = fa;
        let ia = src.index_for_name(n).unwrap();
        let ib = out.index_for_name(n).unwrap();
        let sa = src.by_index_raw(ia).unwrap();
        let method = sa.compression();
        drop(sa);
        src.by_index_raw(ia).unwrap().read_to_end(&mut a).unwrap();
        let sb = out.by_index_raw(ib).unwrap();
        assert_eq!(sb.compression(), method, "{n}");
        assert_eq!(sb.last_modified().unwrap().year(), 1980, "{n}: fixed time");
        drop(sb);
        out.by_index_raw(ib).unwrap().read_to_end(&mut b).unwrap();
        assert_eq!(a, b, "{n}: raw bytes differ");
    }
    let m = json(&mut out, "manifest.json");
    assert!(m["files"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["whole"] == true && f["records"].is_null()));
    assert_eq!(built[0].files as usize, expected.len());
}

#[tokio::test]
async fn multipart_and_tar_gz_give_the_same_files() {
    let env = file_env();
    let scopes = [
        "google.photos[photoTakenTime>=2023-01-01].*",
        "google.my_activity.assistant[time>=2023-01-01].*",
        "google.chrome.history[time_usec<2020-01-01].{url}",
        "google.location_history",
    ];
    let mut results = Vec::new();
    for (format, parts) in [
        (Format::Zip, 1),
        (Format::Zip, 3),
        (Format::TarGz, 1),
        (Format::TarGz, 2),
    ] {
        let o = Options {
            target_bytes: 800_000,
            ..opts(Provider::Google, format, parts, Era::Current)
        };
        let dumps = env.store("google", dumpgen::generate(&o).unwrap()).await;
        assert_eq!(dumps.len(), parts as usize);
        let built = env.build(&dumps, &scopes).await;
        let mut all = Vec::new();
        for a in &built {
            let mut z = env.open(a).await;
            let m = json(&mut z, "manifest.json");
            assert_eq!(m["sources"].as_array().unwrap().len(), parts as usize);
            all.push(contents(&mut z));
        }
        results.push(((format, parts), all));
    }
    let (first, base) = &results[0];
    for (k, other) in &results[1..] {
        for (i, (a, b)) in base.iter().zip(other).enumerate() {
            assert_eq!(
                a.keys().collect::<Vec<_>>(),
                b.keys().collect::<Vec<_>>(),
                "{first:?} vs {k:?} scope {i}"
            );
            assert!(a == b, "{first:?} vs {k:?} scope {i}: contents differ");
        }
    }
    assert!(base[0].keys().any(|n| n.ends_with(".jpg")));
    assert!(base[1].keys().any(|n| n.ends_with(".mp3")));
}

#[tokio::test]
async fn builds_are_deterministic() {
    for env in [file_env(), mem_env()] {
        for format in [Format::Zip, Format::TarGz] {
            let o = opts(Provider::Facebook, format, 1, Era::Current);
            let dumps = env.dumps(&o).await;
            let scopes = [
                "facebook.*",
                "facebook.messages[timestamp_ms>=2022-01-01].*",
                "facebook.posts.{timestamp}",
            ];
            let a = env.build(&dumps, &scopes).await;
            let b = env.build(&dumps, &scopes).await;
            assert_eq!(a.len(), 3);
            for (x, y) in a.iter().zip(&b) {
                assert_eq!(x.blake2b, y.blake2b, "{} {format:?}", x.file);
                assert_eq!(x.storage_key, format!("transfers/t1/1/{}", x.file));
            }
            assert_eq!(a[0].file, "facebook.all.zip");
        }
    }
}

#[tokio::test]
async fn facebook_paths() {
    for era in [Era::Current, Era::Legacy] {
        let env = mem_env();
        let o = opts(Provider::Facebook, Format::Zip, 1, era);
        let dumps = env.dumps(&o).await;
        let (cut, cut_s) = match era {
            Era::Current => ("2024-06-01", 1_717_200_000i64),
            Era::Legacy => ("2021-01-01", 1_609_459_200),
        };
        let paths = [
            "posts",
            "comments",
            "likes_and_reactions",
            "friends",
            "messages",
            "photos_and_videos",
            "profile_information",
        ];
        let mut scopes: Vec<String> = paths.iter().map(|p| format!("facebook.{p}")).collect();
        scopes.push(format!("facebook.posts[timestamp>={cut}].*"));
        scopes.push(format!("facebook.messages[timestamp_ms>={cut}].*"));
        scopes.push("facebook.profile_information[username=\"jo.example\"].{name}".into());
        scopes.push(format!(
            "facebook.photos_and_videos[creation_timestamp>={cut}].*"
        ));
        let refs: Vec<&str> = scopes.iter().map(String::as_str).collect();
        let built = env.build(&dumps, &refs).await;
        for (p, a) in paths.iter().zip(&built) {
            let z = env.open(a).await;
            assert!(names(&z).len() >= 2, "{era:?} {p}: {:?}", names(&z));
            assert!(a.skipped.is_empty(), "{p}: {:?}", a.skipped);
        }
        // Filtered posts keep only recent posts and the photos they name.
        let mut whole = env.open(&built[0]).await;
        let mut z = env.open(&built[7]).await;
        let post_file = names(&z)
            .into_iter()
            .find(|n| n.contains("your_posts"))
            .unwrap();
        let posts = json(&mut z, &post_file);
        let all_posts = json(&mut whole, &post_file);
        assert!(posts.as_array().unwrap().len() < all_posts.as_array().unwrap().len());
        let uris: HashSet<String> = posts
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|p| p["attachments"].as_array().cloned().unwrap_or_default())
            .flat_map(|a| a["data"].as_array().cloned().unwrap_or_default())
            .filter_map(|d| d["media"]["uri"].as_str().map(str::to_owned))
            .collect();
        let jpgs: HashSet<String> = names(&z)
            .into_iter()
            .filter(|n| n.ends_with(".jpg"))
            .collect();
        assert_eq!(uris, jpgs, "{era:?}");
        for p in posts.as_array().unwrap() {
            assert!(p["timestamp"].as_i64().unwrap() >= cut_s);
        }
        // Messages: context kept, media follow.
        let mut z = env.open(&built[8]).await;
        for n in names(&z)
            .into_iter()
            .filter(|n| n.ends_with("message_1.json"))
        {
            let v = json(&mut z, &n);
            assert!(v["participants"].is_array() && v["title"].is_string());
            for m in v["messages"].as_array().unwrap() {
                assert!(m["timestamp_ms"].as_i64().unwrap() >= cut_s * 1000);
            }
        }
        // Profile: mojibake kept in the output, matched on repaired text.
        let mut z = env.open(&built[9]).await;
        let n = names(&z)
            .into_iter()
            .find(|n| n.ends_with("profile_information.json"))
            .unwrap();
        let raw = String::from_utf8(text(&mut z, &n)).unwrap();
        // Projected values are re-encoded: the same JSON strings (mojibake
        // decoded by JSON, not repaired), not the same escapes.
        assert!(raw.contains("Ex\u{c3}\u{a4}mple"), "{raw}");
        let m = json(&mut z, "manifest.json");
        assert!(m["notes"][0].as_str().unwrap().contains("latin-1"));
        // Albums: photos filtered by upload time, media follow.
        let z = env.open(&built[10]).await;
        let whole_albums = env.open(&built[5]).await;
        let count = |z: &Zip| names(z).iter().filter(|n| n.ends_with(".jpg")).count();
        assert!(count(&z) < count(&whole_albums), "{era:?}");
    }
}

#[tokio::test]
async fn amazon_paths() {
    for era in [Era::Current, Era::Legacy] {
        let env = file_env();
        let o = opts(Provider::Amazon, Format::Zip, 1, era);
        let dumps = env.dumps(&o).await;
        let (cut, cut_year) = match era {
            Era::Current => ("2022-01-01", 2022),
            Era::Legacy => ("2019-01-01", 2019),
        };
        let scopes = [
            format!("amazon.retail.order_history[\"Order Date\">={cut}].*"),
            format!("amazon.digital.orders[OrderDate>={cut}].{{OrderDate,ASIN}}"),
            format!("amazon.audible.library[DateAdded>={cut}].*"),
            format!("amazon.alexa.voice_history[Timestamp>={cut}].*"),
            "amazon.*".to_owned(),
        ];
        let refs: Vec<&str> = scopes.iter().map(String::as_str).collect();
        let built = env.build(&dumps, &refs).await;
        let mut z = env.open(&built[0]).await;
        let f = "Retail.OrderHistory.1/Retail.OrderHistory.1.csv";
        let body = text(&mut z, f);
        assert!(body.starts_with(b"\xEF\xBB\xBF\"Website\""));
        let mut rdr = csv::ReaderBuilder::new().from_reader(&body[3..]);
        let h = rdr.headers().unwrap().clone();
        let i = h.iter().position(|c| c == "Order Date").unwrap();
        let mut n = 0;
        for r in rdr.records() {
            let d = r.unwrap()[i].to_owned();
            let year: i32 = if d.contains('/') {
                d[6..10].parse().unwrap()
            } else {
                d[..4].parse().unwrap()
            };
            assert!(year >= cut_year, "{era:?} {d}");
            n += 1;
        }
        assert!(n > 0, "{era:?}");
        let mut z = env.open(&built[1]).await;
        let items = text(&mut z, "Digital-Ordering.1/Digital Items.csv");
        assert!(
            items.starts_with(b"\xEF\xBB\xBFOrderDate,ASIN\r\n"),
            "{}",
            String::from_utf8_lossy(&items[..40])
        );
        let mut z = env.open(&built[2]).await;
        let lib = String::from_utf8(text(&mut z, "Audible.Library/Audible.Library.csv")).unwrap();
        for line in lib.lines().skip(1) {
            let y: i32 = line[8..12].parse().unwrap();
            assert!(y >= cut_year, "{line}");
        }
        // Alexa recordings follow the kept rows that name them.
        let mp3 = |z: &Zip| names(z).iter().filter(|n| n.ends_with(".mp3")).count();
        for (i, a) in [(3usize, &built[3]), (4, &built[4])] {
            let mut z = env.open(a).await;
            let csv_name = "Alexa.VoiceHistory/Alexa.VoiceHistory.csv";
            let body = text(&mut z, csv_name);
            let mut rdr = csv::ReaderBuilder::new().from_reader(&body[3..]);
            let col = rdr
                .headers()
                .unwrap()
                .iter()
                .position(|c| c == "AudioFile")
                .unwrap();
            let named = rdr
                .records()
                .filter(|r| !r.as_ref().unwrap()[col].is_empty())
                .count();
            assert!(named >= 1, "{era:?} {i}");
            assert_eq!(mp3(&z), named, "{era:?} {i}");
        }
    }
}

#[tokio::test]
async fn manifest_describes_the_archive() {
    let env = mem_env();
    let o = opts(Provider::Google, Format::Zip, 2, Era::Current);
    let dumps = env.dumps(&o).await;
    let calls = Arc::new(AtomicU64::new(0));
    let c = calls.clone();
    let options = BuildOptions {
        progress: Some(Arc::new(move |p| {
            assert!(p.bytes_read <= p.bytes_total, "{p:?}");
            c.fetch_add(1, Ordering::Relaxed);
        })),
        ..BuildOptions::default()
    };
    let built = env
        .try_build(
            &dumps,
            &["google.my_activity[time>=2021-01-01].{title,time,audioFiles}"],
            &options,
        )
        .await
        .unwrap();
    assert!(calls.load(Ordering::Relaxed) >= 1);
    let a = &built[0];
    assert_eq!(a.file, "google.my_activity.zip");
    let scope = "google.my_activity[time>=2021-01-01].{title,time,audioFiles}";
    assert_eq!(a.scope_display, Scope::parse(scope).unwrap().display());
    let mut z = env.open(a).await;
    let m = json(&mut z, "manifest.json");
    assert_eq!(m["scope"]["provider"], "google");
    assert_eq!(m["scope"]["path"], "my_activity");
    assert_eq!(m["scope_display"], a.scope_display);
    let sources = m["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 2);
    assert_eq!(sources[0]["name"], dumps[0].name);
    assert_eq!(
        sources[0]["blake2b"],
        protocol::anychain::b64u_encode(&dumps[0].blake2b)
    );
    let paths: Vec<&str> = m["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "my_activity.search",
            "my_activity.assistant",
            "my_activity.youtube"
        ]
    );
    assert!(m["paths"][0]["description"].as_str().unwrap().len() > 10);
    let files = m["files"].as_array().unwrap();
    assert_eq!(files.len() as u64, a.files);
    let total: u64 = files.iter().filter_map(|f| f["records"].as_u64()).sum();
    assert_eq!(total, a.records);
    assert_eq!(m["records"], a.records);
    for f in files {
        let name = f["path"].as_str().unwrap();
        assert_eq!(
            text(&mut z, name).len() as u64,
            f["size"].as_u64().unwrap(),
            "{name}"
        );
        if name.ends_with(".json") {
            assert_eq!(
                json(&mut z, name).as_array().unwrap().len() as u64,
                f["records"].as_u64().unwrap()
            );
        }
    }
    assert!(m["skipped"].as_array().unwrap().is_empty());
}

// ---- hostile dumps --------------------------------------------------------

pub(crate) fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, body) in entries {
        let o = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .compression_level(Some(6));
        w.start_file(*name, o).unwrap();
        w.write_all(body).unwrap();
    }
    w.finish().unwrap().into_inner()
}

async fn hostile(
    env: &Env,
    name: &str,
    bytes: Vec<u8>,
    limits: Limits,
) -> Result<Vec<BuiltArchive>, ExtractError> {
    let dumps = env.store("google", vec![(name.to_owned(), bytes)]).await;
    let options = BuildOptions {
        limits,
        ..BuildOptions::default()
    };
    let r = env
        .try_build(
            &dumps,
            &["google.*", "google.my_activity.search[has title].*"],
            &options,
        )
        .await;
    if r.is_err() {
        // Nothing half-written was stored.
        assert!(env.storage.list("transfers").await.unwrap().is_empty());
    }
    r
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

fn patch_u32(bytes: &mut [u8], at: usize, v: u32) {
    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

#[tokio::test]
async fn zip_bombs_are_refused() {
    let env = mem_env();
    // A zip entry that declares 64 MiB from a few hundred bytes.
    let mut bomb = zip_of(&[("Takeout/Mail/x.mbox", &[0u8; 65_536])]);
    let local = bomb.windows(4).position(|w| w == b"PK\x03\x04").unwrap();
    let central = bomb.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
    patch_u32(&mut bomb, local + 22, 64 << 20);
    patch_u32(&mut bomb, central + 24, 64 << 20);
    let r = hostile(&env, "bomb.zip", bomb, Limits::default()).await;
    assert!(
        r.as_ref()
            .err()
            .is_some_and(|e| e.to_string().contains("ratio")),
        "{r:?}"
    );
    // An entry that inflates past the size it declares.
    let body = format!("[{}{{}}]", "{\"title\":\"x\"},".repeat(5000));
    let mut liar = zip_of(&[(
        "Takeout/My Activity/Search/MyActivity.json",
        body.as_bytes(),
    )]);
    let local = liar.windows(4).position(|w| w == b"PK\x03\x04").unwrap();
    let central = liar.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
    patch_u32(&mut liar, local + 22, 1000);
    patch_u32(&mut liar, central + 24, 1000);
    let r = hostile(&env, "liar.zip", liar, Limits::default()).await;
    assert!(
        r.as_ref()
            .err()
            .is_some_and(|e| e.to_string().contains("declared")),
        "{r:?}"
    );
    let many: Vec<(String, Vec<u8>)> = (0..30)
        .map(|i| (format!("Takeout/x/{i}"), vec![1u8]))
        .collect();
    let refs: Vec<(&str, &[u8])> = many
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    let limits = Limits {
        max_entries: 20,
        ..Limits::default()
    };
    let r = hostile(&env, "many.zip", zip_of(&refs), limits).await;
    assert!(
        matches!(r, Err(ExtractError::LimitExceeded { .. })),
        "{r:?}"
    );
    let limits = Limits {
        max_total_uncompressed: 1000,
        ..Limits::default()
    };
    let r = hostile(
        &env,
        "total.zip",
        zip_of(&[("Takeout/Mail/a.mbox", &[7u8; 2000])]),
        limits,
    )
    .await;
    assert!(
        matches!(r, Err(ExtractError::LimitExceeded { .. })),
        "{r:?}"
    );
    // A gzip bomb in a tar.gz: a tar of 64 MiB of zeros, as gzip members.
    let mut h = tar::Header::new_gnu();
    h.set_path("Takeout/Mail/x.mbox").unwrap();
    h.set_size(64 << 20);
    h.set_mode(0o644);
    h.set_cksum();
    let mut tgz = gz(h.as_bytes());
    let zeros = gz(&[0u8; 1 << 20]);
    for _ in 0..65 {
        tgz.extend_from_slice(&zeros);
    }
    let r = hostile(&env, "bomb.tgz", tgz, Limits::default()).await;
    assert!(
        r.as_ref()
            .err()
            .is_some_and(|e| e.to_string().contains("ratio")),
        "{r:?}"
    );
}

#[tokio::test]
async fn unsafe_names_are_refused() {
    let env = mem_env();
    for name in [
        "../evil",
        "Takeout/../../evil",
        "/abs/x",
        "C:\\x",
        "C:/x",
        "Takeout\\x.json",
    ] {
        let r = hostile(
            &env,
            "evil.zip",
            zip_of(&[("Takeout/ok.json", b"[]"), (name, b"x")]),
            Limits::default(),
        )
        .await;
        assert!(
            matches!(r, Err(ExtractError::UnsafeEntry { .. })),
            "{name}: {r:?}"
        );
        assert_eq!(r.unwrap_err().code(), "unsafe_entry");
    }
    // A symlink in a tar.
    for (kind, target) in [
        (tar::EntryType::Symlink, "/etc/passwd"),
        (tar::EntryType::Link, "Takeout/a"),
    ] {
        let mut t = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(0);
        t.append_link(&mut h, "Takeout/My Activity/Search/MyActivity.json", target)
            .unwrap();
        let r = hostile(&env, "link.tar", t.into_inner().unwrap(), Limits::default()).await;
        assert!(matches!(r, Err(ExtractError::UnsafeEntry { .. })), "{r:?}");
    }
    // A symlink in a zip.
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    w.add_symlink(
        "Takeout/Mail/x.mbox",
        "/etc/passwd",
        zip::write::SimpleFileOptions::default(),
    )
    .unwrap();
    let r = hostile(
        &env,
        "link.zip",
        w.finish().unwrap().into_inner(),
        Limits::default(),
    )
    .await;
    assert!(matches!(r, Err(ExtractError::UnsafeEntry { .. })), "{r:?}");
}

#[tokio::test]
async fn corrupt_dumps_fail_the_build() {
    let env = mem_env();
    let o = opts(Provider::Google, Format::Zip, 1, Era::Current);
    let (_, zip) = dumpgen::generate(&o).unwrap().remove(0);
    let r = hostile(
        &env,
        "cut.zip",
        zip[..zip.len() / 2].to_vec(),
        Limits::default(),
    )
    .await;
    assert!(matches!(r, Err(ExtractError::CorruptDump { .. })), "{r:?}");
    // Bytes flipped inside deflated data: CRC or inflate error.
    let mut bad = zip.clone();
    let src = ZipArchive::new(Cursor::new(zip.clone())).unwrap();
    let _ = src;
    let mut z = ZipArchive::new(Cursor::new(zip.clone())).unwrap();
    let f = z
        .by_name("Takeout/My Activity/Search/MyActivity.json")
        .unwrap();
    let at = (f.data_start() + f.compressed_size() / 2) as usize;
    drop(f);
    for b in &mut bad[at..at + 64] {
        *b ^= 0x5a;
    }
    let r = hostile(&env, "flipped.zip", bad, Limits::default()).await;
    assert!(matches!(r, Err(ExtractError::CorruptDump { .. })), "{r:?}");
    let o = opts(Provider::Google, Format::TarGz, 1, Era::Current);
    let (_, tgz) = dumpgen::generate(&o).unwrap().remove(0);
    let mut bad = tgz.clone();
    let mid = bad.len() / 2;
    for b in &mut bad[mid..mid + 256] {
        *b ^= 0xa5;
    }
    let r = hostile(&env, "bad.tgz", bad, Limits::default()).await;
    assert!(matches!(r, Err(ExtractError::CorruptDump { .. })), "{r:?}");
    let r = hostile(
        &env,
        "cut.tgz",
        tgz[..tgz.len() / 3].to_vec(),
        Limits::default(),
    )
    .await;
    assert!(matches!(r, Err(ExtractError::CorruptDump { .. })), "{r:?}");
    let r = hostile(&env, "noise.bin", vec![7u8; 4096], Limits::default()).await;
    assert!(
        matches!(r, Err(ExtractError::UnsupportedDump { .. })),
        "{r:?}"
    );
}

#[tokio::test]
async fn unexpected_json_is_skipped_and_stated() {
    let env = mem_env();
    let file = "Takeout/My Activity/Search/MyActivity.json";
    for body in [
        &b"{\"not\":\"an array\"}"[..],
        b"[{\"title\":1},",
        b"[1,2,3]",
        b"<html></html>",
    ] {
        let zip = zip_of(&[(file, body), ("Takeout/Mail/a.mbox", b"From x\n")]);
        let built = hostile(&env, "odd.zip", zip, Limits::default())
            .await
            .unwrap();
        // The whole scope takes the file as it is; the filtered one skips it.
        let whole = env.open(&built[0]).await;
        assert!(names(&whole).contains(&file.to_owned()));
        let a = &built[1];
        assert_eq!(a.skipped.len(), 1, "{:?}", a.skipped);
        assert_eq!(a.skipped[0].entry, file);
        assert_eq!(a.skipped[0].catalog_path, "my_activity.search");
        let mut z = env.open(a).await;
        assert_eq!(names(&z), ["manifest.json"]);
        let m = json(&mut z, "manifest.json");
        assert!(
            m["skipped"][0]["reason"]
                .as_str()
                .unwrap()
                .contains("json_array"),
            "{m}"
        );
    }
}

#[tokio::test]
async fn bad_requests_are_typed_errors() {
    let env = mem_env();
    let dumps = env
        .dumps(&opts(Provider::Amazon, Format::Zip, 1, Era::Current))
        .await;
    let r = env
        .try_build(&dumps, &["google.*"], &BuildOptions::default())
        .await;
    assert!(matches!(r, Err(ExtractError::NoDump { .. })), "{r:?}");
    let r = env
        .try_build(&dumps, &["twitter.*"], &BuildOptions::default())
        .await;
    assert!(
        matches!(r, Err(ExtractError::UnknownProvider { .. })),
        "{r:?}"
    );
    let r = env
        .try_build(&dumps, &["amazon.nope"], &BuildOptions::default())
        .await;
    assert!(matches!(r, Err(ExtractError::UnknownPath { .. })), "{r:?}");
    let mut wrong = dumps.clone();
    wrong[0].size += 1;
    let r = env
        .try_build(&wrong, &["amazon.*"], &BuildOptions::default())
        .await;
    assert!(matches!(r, Err(ExtractError::DumpChanged { .. })), "{r:?}");
}

/// A tar.gz of one entry named `name` (written raw, so hostile names
/// survive), of `kind`.
fn tgz_entry(name: &str, kind: tar::EntryType, body: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_old();
    {
        let raw = h.as_old_mut();
        raw.name[..name.len()].copy_from_slice(name.as_bytes());
    }
    h.set_entry_type(kind);
    h.set_size(body.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    let mut t = tar::Builder::new(Vec::new());
    t.append(&h, body).unwrap();
    gz(&t.into_inner().unwrap())
}

#[tokio::test]
async fn hostile_tar_entries_and_wrong_formats_are_refused() {
    let env = mem_env();
    for name in [
        "../evil.json",
        "Takeout/../../evil.json",
        "/etc/passwd",
        "Takeout/./../x",
    ] {
        let r = hostile(
            &env,
            "evil.tgz",
            tgz_entry(name, tar::EntryType::Regular, b"[]"),
            Limits::default(),
        )
        .await;
        assert!(
            matches!(r, Err(ExtractError::UnsafeEntry { .. })),
            "{name}: {r:?}"
        );
    }
    // Devices and pipes are not files of an export.
    for kind in [
        tar::EntryType::Char,
        tar::EntryType::Block,
        tar::EntryType::Fifo,
    ] {
        let r = hostile(
            &env,
            "dev.tgz",
            tgz_entry("Takeout/Mail/x.mbox", kind, b""),
            Limits::default(),
        )
        .await;
        assert!(
            matches!(r, Err(ExtractError::UnsafeEntry { .. })),
            "{kind:?}: {r:?}"
        );
    }
    // The format is read from the bytes, not the name: a tar.gz named
    // .zip and a zip named .tgz are read as what they are.
    let o = opts(Provider::Google, Format::TarGz, 1, Era::Current);
    let (_, tgz) = dumpgen::generate(&o).unwrap().remove(0);
    let zip = zip_of(&[("Takeout/Mail/a.mbox", b"From x\n")]);
    for (name, bytes) in [("takeout.zip", tgz), ("takeout.tgz", zip)] {
        let r = hostile(&env, name, bytes, Limits::default()).await;
        assert!(r.is_ok(), "{name}: {r:?}");
        env.storage.delete_prefix("transfers").await.unwrap();
    }
    // An empty file, a gzip of noise, a gzip of a gzip: refused.
    for (name, bytes) in [
        ("empty.zip", Vec::new()),
        ("noise.tar.gz", gz(&[9u8; 5000])),
        ("twice.tar.gz", gz(&gz(b"not a tar"))),
    ] {
        let r = hostile(&env, name, bytes, Limits::default()).await;
        assert!(
            matches!(
                r,
                Err(ExtractError::CorruptDump { .. } | ExtractError::UnsupportedDump { .. })
            ),
            "{name}: {r:?}"
        );
    }
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    /// Builds from `bytes` named `name`: an archive set or a typed error,
    /// never a panic (which `build_archives` would report as `internal`).
    fn build(name: &str, bytes: Vec<u8>) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let env = mem_env();
            let r = hostile(&env, name, bytes, Limits::default()).await;
            if let Err(e) = r {
                assert_ne!(e.code(), "internal", "{e}");
            }
        });
    }

    fn small_zip() -> Vec<u8> {
        zip_of(&[
            (
                "Takeout/My Activity/Search/MyActivity.json",
                br#"[{"title":"Searched for x","time":"2020-01-01T00:00:00Z"}]"#,
            ),
            ("Takeout/Mail/a.mbox", b"From x\nhello\n"),
        ])
    }

    fn small_tgz() -> Vec<u8> {
        let mut t = tar::Builder::new(Vec::new());
        for (name, body) in [
            (
                "Takeout/My Activity/Search/MyActivity.json",
                &br#"[{"title":"Searched for x"}]"#[..],
            ),
            ("Takeout/Mail/a.mbox", b"From x\n"),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            t.append_data(&mut h, name, body).unwrap();
        }
        gz(&t.into_inner().unwrap())
    }

    /// `base` with `flips` (position, xor mask) applied, then cut at `cut`.
    fn mutate(mut base: Vec<u8>, flips: &[(usize, u8)], cut: usize) -> Vec<u8> {
        let len = base.len();
        for (at, mask) in flips {
            base[at % len] ^= mask;
        }
        base.truncate(cut.max(1).min(len));
        base
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            build("x.zip", bytes.clone());
            build("x.tar.gz", bytes);
        }

        #[test]
        fn mutated_zips(
            flips in proptest::collection::vec((any::<usize>(), 1u8..), 1..8),
            cut in any::<usize>(),
        ) {
            build("m.zip", mutate(small_zip(), &flips, cut));
        }

        #[test]
        fn mutated_tar_gz(
            flips in proptest::collection::vec((any::<usize>(), 1u8..), 1..8),
            cut in any::<usize>(),
        ) {
            build("m.tgz", mutate(small_tgz(), &flips, cut));
        }
    }
}
