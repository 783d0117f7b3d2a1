//! Dumps built to exhaust the processor: many small entries, entry counts
//! announced past the limit, highly compressible small entries, and
//! multi-part exports whose parts pass a limit only together. Each is
//! refused with a typed `LimitExceeded` (or built, within the default
//! limits, when it is an honest export).

use std::io::{Cursor, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use processor::extract::{
    build_archives, BuildOptions, BuiltArchive, Catalog, DumpSource, ExtractError, Limits,
};
use protocol::scope::Scope;
use runtime::storage::{S3Settings, Storage};

struct Env {
    storage: Storage,
    _dir: tempfile::TempDir,
    catalog: Catalog,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    Env {
        storage: Storage::from_url(&url, &S3Settings::default()).unwrap(),
        _dir: dir,
        catalog: Catalog::embedded().unwrap(),
    }
}

impl Env {
    async fn store(&self, parts: Vec<(String, Vec<u8>)>) -> Vec<DumpSource> {
        let mut out = Vec::new();
        for (name, bytes) in parts {
            let key = format!("dumps/u1/google/{name}");
            let info = self
                .storage
                .put_bytes(&key, Bytes::from(bytes))
                .await
                .unwrap();
            out.push(DumpSource {
                provider: "google".into(),
                key,
                name,
                size: info.size,
                blake2b: info.blake2b,
            });
        }
        out
    }

    async fn build(
        &self,
        dumps: &[DumpSource],
        scope: &str,
        limits: Limits,
    ) -> Result<Vec<BuiltArchive>, ExtractError> {
        let options = BuildOptions {
            limits,
            ..BuildOptions::default()
        };
        static BUILDS: AtomicU64 = AtomicU64::new(0);
        let prefix = format!("transfers/t{}/1", BUILDS.fetch_add(1, Ordering::Relaxed));
        let r = build_archives(
            &self.storage,
            &self.catalog,
            dumps,
            &[Scope::parse(scope).unwrap()],
            &prefix,
            &options,
        )
        .await;
        if r.is_err() {
            assert!(
                self.storage.list(&prefix).await.unwrap().is_empty(),
                "nothing of a refused build is stored"
            );
        }
        r
    }
}

fn limit_reason(r: &Result<Vec<BuiltArchive>, ExtractError>) -> String {
    match r {
        Err(e @ ExtractError::LimitExceeded { .. }) => {
            assert_eq!(e.code(), "limit_exceeded");
            assert!(!e.is_transient(), "a limit is final: {e}");
            e.to_string()
        }
        other => panic!("expected a limit refusal, got {other:?}"),
    }
}

/// A zip of `n` entries of `body` each, deflated.
fn zip_of_many(prefix: &str, n: usize, body: &[u8]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let o = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(9));
    for i in 0..n {
        w.start_file(format!("{prefix}/{i}.mbox"), o).unwrap();
        w.write_all(body).unwrap();
    }
    w.finish().unwrap().into_inner()
}

#[tokio::test]
async fn many_small_entries_are_built_within_the_default_limits() {
    let env = env();
    // 70 000 entries: past the 65 535 of a plain end record, so both the
    // dump and the archive need zip64 end records.
    let parts = dumpgen::photo_library(70_000, 1, 7).unwrap();
    let dumps = env.store(parts).await;
    let built = env
        .build(&dumps, "google.photos", Limits::default())
        .await
        .unwrap();
    assert_eq!(built.len(), 1);
    assert_eq!(built[0].files, 70_000);
    let bytes = env.storage.get_bytes(&built[0].storage_key).await.unwrap();
    let mut z = zip::ZipArchive::new(Cursor::new(bytes.to_vec())).unwrap();
    assert_eq!(z.len(), 70_001);
    let mut manifest = String::new();
    z.by_name("manifest.json")
        .unwrap()
        .read_to_string(&mut manifest)
        .unwrap();
    let m: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    assert_eq!(m["files"].as_array().unwrap().len(), 70_000);
    // Predicates on the sidecars: the media follow them.
    let built = env
        .build(
            &dumps,
            "google.photos[photoTakenTime<2011-01-01].*",
            Limits::default(),
        )
        .await
        .unwrap();
    // One photo an hour from 2010-01-01: 8760 photos and their sidecars.
    assert_eq!(built[0].files, 2 * 8760);
}

/// An end record announcing `entries` over a "directory" of garbage big
/// enough to hold them: only the end record can refuse it.
fn announced(entries: u16) -> Vec<u8> {
    let cd_size = u32::from(entries) * 46;
    let mut bytes = b"PK\x03\x04".to_vec();
    bytes.resize(cd_size as usize, 0xee);
    bytes.extend_from_slice(b"PK\x05\x06\0\0\0\0");
    bytes.extend_from_slice(&entries.to_le_bytes());
    bytes.extend_from_slice(&entries.to_le_bytes());
    bytes.extend_from_slice(&cd_size.to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
    bytes.extend_from_slice(&0u16.to_le_bytes());
    bytes
}

/// The same with a zip64 end record and locator.
fn announced64(entries: u64) -> Vec<u8> {
    let cd_size = entries * 46;
    let mut bytes = b"PK\x03\x04".to_vec();
    bytes.resize(cd_size as usize, 0xee);
    let z_at = bytes.len() as u64;
    bytes.extend_from_slice(b"PK\x06\x06");
    bytes.extend_from_slice(&44u64.to_le_bytes());
    bytes.extend_from_slice(&[45, 3, 45, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    bytes.extend_from_slice(&entries.to_le_bytes());
    bytes.extend_from_slice(&entries.to_le_bytes());
    bytes.extend_from_slice(&cd_size.to_le_bytes());
    bytes.extend_from_slice(&0u64.to_le_bytes());
    bytes.extend_from_slice(b"PK\x06\x07\0\0\0\0");
    bytes.extend_from_slice(&z_at.to_le_bytes());
    bytes.extend_from_slice(&1u32.to_le_bytes());
    bytes.extend_from_slice(
        b"PK\x05\x06\0\0\0\0\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\0\0",
    );
    bytes
}

#[tokio::test]
async fn entry_counts_are_refused_from_the_end_record_before_parsing() {
    let env = env();
    let limits = Limits {
        max_entries: 1000,
        ..Limits::default()
    };
    for (name, dump) in [
        ("count.zip", announced(1001)),
        ("count64.zip", announced64(100_000)),
    ] {
        let dumps = env.store(vec![(name.into(), dump)]).await;
        let r = env.build(&dumps, "google.photos", limits.clone()).await;
        let reason = limit_reason(&r);
        assert!(reason.contains("ALIAS_MAX_ENTRIES"), "{reason}");
    }
    // Within the limit, the same garbage is a corrupt directory.
    let dumps = env.store(vec![("ok.zip".into(), announced(999))]).await;
    let r = env.build(&dumps, "google.photos", limits).await;
    assert!(matches!(r, Err(ExtractError::CorruptDump { .. })), "{r:?}");
}

#[tokio::test]
async fn highly_compressible_small_entries_are_refused() {
    let env = env();
    // 2000 entries of 48 KiB of zeros: each under the size where one
    // entry's ratio is judged, together far past the ratio limit.
    let dump = zip_of_many("Takeout/Mail", 2000, &[0u8; 48 << 10]);
    let dumps = env.store(vec![("small-bomb.zip".into(), dump)]).await;
    let r = env.build(&dumps, "google.mail", Limits::default()).await;
    let reason = limit_reason(&r);
    assert!(
        reason.contains("ratio") && reason.contains("ALIAS_MAX_RATIO"),
        "{reason}"
    );
    // One such entry of 1 MiB (the old threshold) is refused on its own.
    let dump = zip_of_many("Takeout/Mail", 1, &[0u8; 1 << 20]);
    let dumps = env.store(vec![("one.zip".into(), dump)]).await;
    let r = env.build(&dumps, "google.mail", Limits::default()).await;
    assert!(limit_reason(&r).contains("ratio"));
    // The same entries with incompressible bytes are an honest export.
    let noise: Vec<u8> = (0..48u32 << 10)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let dump = zip_of_many("Takeout/Mail", 200, &noise);
    let dumps = env.store(vec![("honest.zip".into(), dump)]).await;
    let built = env
        .build(&dumps, "google.mail", Limits::default())
        .await
        .unwrap();
    assert_eq!(built[0].files, 200);
}

#[tokio::test]
async fn limits_count_all_parts_of_an_export_together() {
    let env = env();
    let part = |p: u32| {
        (
            format!("takeout-20250101T000000Z-00{p}.zip"),
            zip_of_many(&format!("Takeout/Mail/p{p}"), 600, b"From x\n"),
        )
    };
    let one = env.store(vec![part(1)]).await;
    let both = env.store(vec![part(1), part(2)]).await;
    let limits = Limits {
        max_entries: 1000,
        ..Limits::default()
    };
    env.build(&one, "google.mail", limits.clone())
        .await
        .unwrap();
    let reason = limit_reason(&env.build(&both, "google.mail", limits).await);
    assert!(reason.contains("1200 entries"), "{reason}");
    // Declared uncompressed bytes: 600 × 7 per part.
    let limits = Limits {
        max_total_uncompressed: 6000,
        ..Limits::default()
    };
    env.build(&one, "google.mail", limits.clone())
        .await
        .unwrap();
    let reason = limit_reason(&env.build(&both, "google.mail", limits).await);
    assert!(reason.contains("ALIAS_MAX_UNCOMPRESSED"), "{reason}");
}

#[tokio::test]
async fn a_build_past_its_time_limit_fails() {
    let env = env();
    let dumps = env
        .store(dumpgen::photo_library(20_000, 1, 3).unwrap())
        .await;
    let limits = Limits {
        max_duration: Some(Duration::from_millis(1)),
        ..Limits::default()
    };
    let r = env.build(&dumps, "google.photos", limits).await;
    match r {
        Err(e @ ExtractError::TimeLimit { .. }) => {
            assert_eq!(e.code(), "time_limit");
            assert!(!e.is_transient());
            assert!(e.to_string().contains("ALIAS_JOB_TIMEOUT_SECS"));
        }
        other => panic!("expected the time limit, got {other:?}"),
    }
}
