//! `processor::extract` on generated dumps, and on hostile ones: the
//! environment and readers the tests share are here; `scopes.rs` checks
//! filtering, projection, media and determinism on Google dumps,
//! `providers.rs` the Facebook and Amazon paths and the manifest,
//! `hostile.rs` bombs, unsafe names and corrupt dumps.

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

mod hostile;
mod providers;
mod scopes;

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

/// A zip of `entries` (name, bytes), deflated.
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
