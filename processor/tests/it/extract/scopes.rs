//! Google dumps: paths filtered by date across formats, equality and
//! projection, media that follow their records or sidecars, raw copies,
//! multipart and tar.gz dumps, deterministic builds.

use super::*;

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
