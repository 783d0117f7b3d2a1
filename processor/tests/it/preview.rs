//! Previews: a dry run of the build counts what the build writes, and
//! writes no archive.

use std::collections::BTreeSet;

use dumpgen::{ActivityForm, Era, Format, Options, Provider};
use processor::extract::{preview_archives, BuildOptions, ScopePreview};
use protocol::scope::Scope;

use crate::extract::{file_env, json, names, text, Env};

fn opts(provider: Provider, format: Format, parts: u32) -> Options {
    Options {
        provider,
        format,
        seed: 23,
        target_bytes: 600_000,
        media_ratio: 0.5,
        parts,
        era: Era::Current,
        ..Options::default()
    }
}

/// Every key in storage.
async fn keys(env: &Env) -> BTreeSet<String> {
    env.storage()
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect()
}

async fn preview(
    env: &Env,
    dumps: &[processor::extract::DumpSource],
    scopes: &[&str],
) -> Vec<ScopePreview> {
    let scopes: Vec<Scope> = scopes.iter().map(|s| Scope::parse(s).unwrap()).collect();
    preview_archives(
        env.storage(),
        env.catalog(),
        dumps,
        &scopes,
        &BuildOptions::default(),
    )
    .await
    .unwrap()
}

/// Checks each preview against the archive the build made of the same
/// dumps and scopes.
async fn same_as_build(env: &Env, o: &Options, scopes: &[&str]) {
    let dumps = env.dumps(o).await;
    let before = keys(env).await;
    let previews = preview(env, &dumps, scopes).await;
    assert_eq!(keys(env).await, before, "a preview stored something");
    let built = env.build(&dumps, scopes).await;
    assert_eq!(previews.len(), built.len());
    for (p, a) in previews.iter().zip(&built) {
        let what = format!("{:?} {}", o.provider, a.scope_display);
        assert_eq!(p.file, a.file, "{what}");
        assert_eq!(p.scope_display, a.scope_display, "{what}");
        assert_eq!(p.files, a.files, "{what}: files");
        assert_eq!(p.records, a.records, "{what}: records");
        assert_eq!(p.skipped, a.skipped.len() as u64, "{what}: skipped");
        assert_eq!(p.unreadable, a.unreadable, "{what}: unreadable");
        let mut z = env.open(a).await;
        let m = json(&mut z, "manifest.json");
        let files = m["files"].as_array().unwrap();
        let bytes: u64 = files.iter().map(|f| f["size"].as_u64().unwrap()).sum();
        assert_eq!(p.bytes, bytes, "{what}: bytes");
        let entries: Vec<String> = names(&z)
            .into_iter()
            .filter(|n| n != "manifest.json")
            .collect();
        let first: Vec<String> = entries.iter().take(5).cloned().collect();
        assert_eq!(p.first_files, first, "{what}: first files");
        if a.records > 0 {
            assert!(!p.samples.is_empty(), "{what}: no sample");
        }
        assert!(p.samples.len() <= 3);
        // Each sample (not cut) is a record of the archive, as written.
        let all: Vec<u8> = entries.iter().flat_map(|n| text(&mut z, n)).collect();
        let all = String::from_utf8_lossy(&all);
        for s in p.samples.iter().filter(|s| !s.ends_with('…')) {
            assert!(
                all.contains(s.as_str()),
                "{what}: sample {s} not in the archive"
            );
        }
    }
    // The build stored its archives; the preview before it stored none.
    assert!(keys(env).await.len() > before.len());
}

#[tokio::test]
async fn a_preview_counts_what_the_build_writes() {
    let google = [
        "google.my_activity.search[time>=2020-01-01].*",
        "google.photos[photoTakenTime>=2023-01-01].*",
        "google.my_activity.assistant[time>=2023-01-01].*",
        "google.chrome.history[time_usec<2020-01-01].{url}",
        "google.location_history",
        "google.youtube.*",
    ];
    for (format, parts) in [(Format::Zip, 1), (Format::Zip, 3), (Format::TarGz, 2)] {
        let env = file_env();
        same_as_build(&env, &opts(Provider::Google, format, parts), &google).await;
    }
    let env = file_env();
    let html = Options {
        activity: ActivityForm::Html,
        ..opts(Provider::Google, Format::Zip, 1)
    };
    same_as_build(
        &env,
        &html,
        &[
            "google.my_activity.search[time>=2020-01-01].{title,time}",
            "google.*",
        ],
    )
    .await;
    let env = file_env();
    same_as_build(
        &env,
        &opts(Provider::Facebook, Format::Zip, 1),
        &[
            "facebook.*",
            "facebook.messages[timestamp_ms>=2022-01-01].*",
            "facebook.posts.{timestamp}",
        ],
    )
    .await;
    let env = file_env();
    same_as_build(
        &env,
        &opts(Provider::Amazon, Format::TarGz, 1),
        &["amazon.*"],
    )
    .await;
}

#[tokio::test]
async fn a_preview_fails_as_the_build_would() {
    let env = file_env();
    let dumps = env.dumps(&opts(Provider::Google, Format::Zip, 1)).await;
    let scopes = vec![Scope::parse("facebook.*").unwrap()];
    let err = preview_archives(
        env.storage(),
        env.catalog(),
        &dumps,
        &scopes,
        &BuildOptions::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), "no_dump", "{err}");
}

mod job {
    use super::*;
    use processor::preview::Previewer;
    use runtime::jobs::{encode, PreviewJob};
    use runtime::state::{
        DumpRecord, PreviewKey, PreviewLimits, PreviewStart, PreviewState, State,
    };
    use runtime::worker::{Disposition, JobHandler};
    use std::sync::Arc;
    use std::time::Duration;

    async fn record_dumps(state: &State, user: &str, dumps: &[processor::extract::DumpSource]) {
        for (i, d) in dumps.iter().enumerate() {
            let rec = DumpRecord {
                provider: d.provider.clone(),
                name: d.name.clone(),
                key: d.key.clone(),
                size: d.size,
                blake2b: protocol::anychain::b64u_encode(&d.blake2b),
                uploaded_ms: 1000 + i as u64,
            };
            state.record_dump(user, &rec).await.unwrap();
        }
    }

    async fn start(state: &State, key: &PreviewKey, scopes: &[&str]) -> PreviewJob {
        let scopes: Vec<String> = scopes.iter().map(|s| (*s).to_owned()).collect();
        match state
            .start_preview(key, &scopes, &PreviewLimits::DEFAULT)
            .await
            .unwrap()
        {
            PreviewStart::Started(p) => PreviewJob {
                user: key.user().into(),
                contract: key.contract().into(),
                id: p.id,
            },
            other => panic!("not started: {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_job_stores_what_the_build_would_give_from_the_users_own_dumps() {
        let env = file_env();
        let state = State::in_memory("preview-job", Duration::from_secs(60));
        let dumps = env.dumps(&opts(Provider::Google, Format::Zip, 2)).await;
        record_dumps(&state, "userA", &dumps).await;
        let previewer = Previewer::new(
            state.clone(),
            env.storage().clone(),
            Arc::new(env.catalog().clone()),
            BuildOptions::default(),
        );
        let scopes = [
            "google.my_activity.search[time>=2020-01-01].*",
            "amazon.*",
            "google.photos",
        ];
        let before = keys(&env).await;
        let a = PreviewKey::new("userA", "contract1").unwrap();
        let job = start(&state, &a, &scopes).await;
        let body = encode(&job).unwrap();
        assert_eq!(previewer.handle(&body, 1).await, Disposition::Ack);
        assert_eq!(keys(&env).await, before, "a preview job stored something");
        let PreviewState::Ready {
            scopes: got,
            missing,
            ..
        } = state.preview(&a).await.unwrap().unwrap().state
        else {
            panic!("not ready");
        };
        assert_eq!(missing, ["amazon.*"]);
        let built = env.build(&dumps, &[scopes[0], scopes[2]]).await;
        assert_eq!(got.len(), built.len());
        for (g, b) in got.iter().zip(&built) {
            assert_eq!(
                (g.scope.as_str(), g.files, g.records),
                (b.scope_display.as_str(), b.files, b.records)
            );
        }
        assert!(got[0].records > 0 && !got[0].samples.is_empty());
        // A job for a run that is not the pending one does nothing.
        let stale = PreviewJob {
            id: "other".into(),
            ..job.clone()
        };
        let stored = state.preview(&a).await.unwrap();
        assert_eq!(
            previewer.handle(&encode(&stale).unwrap(), 1).await,
            Disposition::Ack
        );
        assert_eq!(state.preview(&a).await.unwrap(), stored);
        // User B's preview of the same contract reads B's dumps only:
        // none, so nothing of A's shows.
        let b = PreviewKey::new("userB", "contract1").unwrap();
        let job_b = start(&state, &b, &scopes).await;
        assert_eq!(
            previewer.handle(&encode(&job_b).unwrap(), 1).await,
            Disposition::Ack
        );
        let PreviewState::Ready {
            scopes: got_b,
            missing,
            ..
        } = state.preview(&b).await.unwrap().unwrap().state
        else {
            panic!("not ready");
        };
        assert!(got_b.is_empty());
        assert_eq!(missing.len(), 3);
        // A malformed job is dead-lettered, not retried.
        assert!(matches!(
            previewer.handle(b"{\"user\":1}", 1).await,
            Disposition::Dead(_)
        ));
    }

    #[tokio::test]
    async fn a_dump_the_build_would_refuse_fails_the_preview_in_words() {
        let env = file_env();
        let state = State::in_memory("preview-fail", Duration::from_secs(60));
        let dumps = env
            .store(
                "google",
                vec![("takeout.zip".into(), b"not a zip at all".to_vec())],
            )
            .await;
        record_dumps(&state, "userA", &dumps).await;
        let previewer = Previewer::new(
            state.clone(),
            env.storage().clone(),
            Arc::new(env.catalog().clone()),
            BuildOptions::default(),
        );
        let a = PreviewKey::new("userA", "c").unwrap();
        let job = start(&state, &a, &["google.*"]).await;
        assert_eq!(
            previewer.handle(&encode(&job).unwrap(), 1).await,
            Disposition::Ack
        );
        match state.preview(&a).await.unwrap().unwrap().state {
            PreviewState::Failed { reason } => assert!(reason.contains("takeout.zip"), "{reason}"),
            other => panic!("not failed: {other:?}"),
        }
    }
}

/// Entries copied raw from a deflated zip count their uncompressed bytes,
/// as the manifest does.
#[tokio::test]
async fn raw_copies_count_uncompressed_bytes() {
    let env = file_env();
    let search = format!(
        "[{}]",
        vec![
            r#"{"header":"Search","title":"Searched for rust","time":"2021-05-01T10:00:00Z"}"#;
            500
        ]
        .join(",")
    );
    let zip = crate::extract::zip_of(&[
        (
            "Takeout/My Activity/Search/MyActivity.json",
            search.as_bytes(),
        ),
        ("Takeout/Chrome/History.json", br#"{"Browser History":[]}"#),
    ]);
    let dumps = env
        .store("google", vec![("takeout.zip".into(), zip.clone())])
        .await;
    let scopes = ["google.my_activity.search"];
    let previews = preview(&env, &dumps, &scopes).await;
    assert!(previews[0].bytes >= search.len() as u64, "{previews:?}");
    assert!(
        (zip.len() as u64) < search.len() as u64 / 4,
        "the dump is deflated"
    );
    let built = env.build(&dumps, &scopes).await;
    let mut z = env.open(&built[0]).await;
    let m = json(&mut z, "manifest.json");
    let bytes: u64 = m["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["size"].as_u64().unwrap())
        .sum();
    assert_eq!(previews[0].bytes, bytes);
    assert_eq!(previews[0].files, 1);
}
