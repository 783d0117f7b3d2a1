//! Times a preview (the dry run of the build) beside the build itself on a
//! Google export in a directory, e.g. one written by `dumpgen`:
//!
//! ```text
//! dumpgen --size 1G --parts 2 --out /tmp/takeout
//! cargo run --release -p alias-processor --example preview_time -- /tmp/takeout [scope…]
//! ```
//!
//! Without scopes, the scopes of the benchmark (`bench/src/micro.rs`).

use std::time::Instant;

use processor::extract::{build_archives, preview_archives, BuildOptions, Catalog, DumpSource};
use protocol::scope::Scope;
use runtime::storage::{S3Settings, Storage};

const SCOPES: [&str; 7] = [
    "google.photos",
    "google.location_history[timestamp>=2022-06-01].*",
    "google.my_activity.search[time>=2022-01-01].*",
    "google.youtube.watch_history.{title,time}",
    "google.chrome.history",
    "google.contacts",
    "google.mail",
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .ok_or_else(|| anyhow::anyhow!("usage: preview_time DIR [SCOPE…]"))?;
    let given: Vec<String> = args.collect();
    let texts: Vec<String> = if given.is_empty() {
        SCOPES.iter().map(|s| (*s).to_owned()).collect()
    } else {
        given
    };
    let scopes = texts
        .iter()
        .map(|s| Scope::parse(s).map_err(|e| anyhow::anyhow!("{s}: {e}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let storage = Storage::from_url(&format!("file://{dir}"), &S3Settings::default())?;
    let mut dumps = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(&dir)?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".zip") || n.ends_with(".tgz") || n.ends_with(".tar.gz"))
        .collect();
    names.sort();
    for name in names {
        let size = std::fs::metadata(std::path::Path::new(&dir).join(&name))?.len();
        dumps.push(DumpSource {
            provider: "google".into(),
            key: name.clone(),
            name,
            size,
            blake2b: [0; 64],
        });
    }
    let total: u64 = dumps.iter().map(|d| d.size).sum();
    let catalog = Catalog::embedded()?;
    let options = BuildOptions {
        temp_dir: Some(std::env::temp_dir()),
        ..BuildOptions::default()
    };
    let t = Instant::now();
    let previews = preview_archives(&storage, &catalog, &dumps, &scopes, &options).await?;
    let preview_s = t.elapsed().as_secs_f64();
    for p in &previews {
        println!(
            "{:<55} {:>7} files {:>9} records {:>12} bytes",
            p.scope_display, p.files, p.records, p.bytes
        );
    }
    let t = Instant::now();
    let built = build_archives(
        &storage,
        &catalog,
        &dumps,
        &scopes,
        "preview-time-build",
        &options,
    )
    .await?;
    let build_s = t.elapsed().as_secs_f64();
    for (p, b) in previews.iter().zip(&built) {
        anyhow::ensure!(
            (p.files, p.records) == (b.files, b.records),
            "{}: the preview and the build differ",
            p.scope_display
        );
    }
    storage.delete_prefix("preview-time-build").await?;
    println!(
        "export {:.2} GiB in {} parts: preview {preview_s:.1} s, build {build_s:.1} s (files and records equal)",
        total as f64 / f64::from(1u32 << 30),
        dumps.len()
    );
    Ok(())
}
