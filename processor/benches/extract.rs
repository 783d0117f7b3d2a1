//! Extraction throughput on generated Takeouts (a bench binary printing a
//! markdown table).
//!
//! ```text
//! cargo bench -p alias-processor --bench extract -- --size 1G
//! EXTRACT_BENCH_SIZE=64M cargo bench -p alias-processor --bench extract
//! ```
//!
//! Two dumps: media-heavy (90 % media) and JSON-heavy (10 % media). For
//! each scenario: the time of `build_archives` (`file://` storage), the
//! time of reading the same dump once from disk in the same run (warm page
//! cache, so the ratio is an upper bound on the overhead), the shell route
//! `unzip` + filter (`jq`) + `zip` when those tools are installed, and the
//! peak RSS of the build (VmHWM, reset before each run).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use processor::extract::{build_archives, BuildOptions, Catalog, DumpSource};
use protocol::scope::Scope;
use runtime::storage::{S3Settings, Storage};

fn size_arg() -> u64 {
    let args: Vec<String> = std::env::args().collect();
    let from_args = args
        .windows(2)
        .find(|w| w[0] == "--size")
        .map(|w| w[1].clone());
    let text = from_args
        .or_else(|| std::env::var("EXTRACT_BENCH_SIZE").ok())
        .unwrap_or_else(|| "1G".into());
    dumpgen::parse_size(&text).expect("size")
}

fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn read_once(paths: &[PathBuf]) -> f64 {
    let t = Instant::now();
    let mut buf = vec![0u8; 1 << 20];
    for p in paths {
        let mut f = std::fs::File::open(p).unwrap();
        while f.read(&mut buf).unwrap() > 0 {}
    }
    t.elapsed().as_secs_f64()
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool} >/dev/null")])
        .status()
        .is_ok_and(|s| s.success())
}

/// `unzip` the selected files, optionally filter one JSON file with `jq`,
/// `zip` the result; returns the seconds.
fn shell_route(dumps: &[PathBuf], glob: &str, jq: Option<(&str, &str)>, work: &Path) -> f64 {
    let dir = work.join("shell");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let t = Instant::now();
    for d in dumps {
        let _ = Command::new("unzip")
            .args(["-q", "-o"])
            .arg(d)
            .arg(glob)
            .arg("-d")
            .arg(&dir)
            .status();
    }
    if let Some((file, filter)) = jq {
        let path = dir.join(file);
        let out = Command::new("jq")
            .args(["-c", filter])
            .arg(&path)
            .output()
            .unwrap();
        std::fs::write(&path, out.stdout).unwrap();
    }
    let _ = Command::new("sh")
        .current_dir(&dir)
        .args(["-c", "zip -q -r ../shell.zip ."])
        .status();
    let secs = t.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(work.join("shell.zip"));
    let _ = std::fs::remove_dir_all(&dir);
    secs
}

/// (scenario, scopes, jq filter of one file, unzip glob).
type Scenario<'a> = (&'a str, Vec<&'a str>, Option<(&'a str, &'a str)>, &'a str);

struct Row {
    dump: String,
    scenario: String,
    dump_mib: f64,
    out_mib: f64,
    build_s: f64,
    read_s: f64,
    shell: Option<f64>,
    rss: Option<f64>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let size = size_arg();
    let work = std::env::var_os("EXTRACT_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("alias-extract-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let storage_dir = work.join("storage");
    let storage = Storage::from_url(
        &format!("file://{}", storage_dir.display()),
        &S3Settings::default(),
    )
    .unwrap();
    let catalog = Catalog::embedded().unwrap();
    let tools = have("unzip") && have("zip");
    let jq = have("jq");
    let mut rows = Vec::new();

    let datasets: [(&str, f64, Vec<Scenario<'_>>); 2] = [
        (
            "media-heavy",
            0.9,
            vec![
                ("photos, whole (raw copy)", vec!["google.photos.*"], None, "Takeout/Google Photos/*"),
                (
                    "photos, date filter via sidecars",
                    vec!["google.photos[photoTakenTime>=2024-06-01].*"],
                    None,
                    "Takeout/Google Photos/*",
                ),
                ("everything (google.*)", vec!["google.*"], None, "Takeout/*"),
            ],
        ),
        (
            "json-heavy",
            0.1,
            vec![
                (
                    "location, date filter",
                    vec!["google.location_history[timestamp>=2022-06-01].*"],
                    Some((
                        "Takeout/Location History (Timeline)/Records.json",
                        "{locations: [.locations[] | select((.timestamp // \"\") >= \"2022-06-01\")]}",
                    )),
                    "Takeout/Location History (Timeline)/Records.json",
                ),
                (
                    "3 JSON scopes, date filters",
                    vec![
                        "google.my_activity[time>=2022-01-01].*",
                        "google.chrome.history[time_usec>=2022-01-01].*",
                        "google.youtube[time>=2022-01-01].{title,time}",
                    ],
                    None,
                    "Takeout/My Activity/*",
                ),
                ("everything (google.*)", vec!["google.*"], None, "Takeout/*"),
            ],
        ),
    ];

    for (label, media, scenarios) in datasets {
        let dir = work.join(label);
        let opts = dumpgen::Options {
            provider: dumpgen::Provider::Google,
            format: dumpgen::Format::Zip,
            seed: 5,
            target_bytes: size,
            media_ratio: media,
            parts: if size >= 512 << 20 { 2 } else { 1 },
            era: dumpgen::Era::Current,
            ..dumpgen::Options::default()
        };
        let t = Instant::now();
        let key_dir = storage_dir.join("dumps/u/google").join(label);
        std::fs::create_dir_all(&key_dir).unwrap();
        let written = dumpgen::write_to_dir(&opts, &key_dir).unwrap();
        eprintln!(
            "generated {label}: {} parts, {:.0} MiB in {:.1}s",
            written.len(),
            written.iter().map(|w| w.size).sum::<u64>() as f64 / 1048576.0,
            t.elapsed().as_secs_f64()
        );
        let _ = dir;
        let dumps: Vec<DumpSource> = written
            .iter()
            .map(|w| DumpSource {
                provider: "google".into(),
                key: format!("dumps/u/google/{label}/{}", w.name),
                name: w.name.clone(),
                size: w.size,
                blake2b: [0; 64],
            })
            .collect();
        let paths: Vec<PathBuf> = written.iter().map(|w| w.path.clone()).collect();
        let dump_bytes: u64 = written.iter().map(|w| w.size).sum();
        for (n, (scenario, scopes, jq_filter, glob)) in scenarios.into_iter().enumerate() {
            let levels: &[u32] = if label == "json-heavy" && n == 1 {
                &[6, 1]
            } else {
                &[6]
            };
            for &level in levels {
                let read_s = read_once(&paths);
                let scopes: Vec<Scope> = scopes.iter().map(|s| Scope::parse(s).unwrap()).collect();
                let options = BuildOptions {
                    deflate_level: level,
                    temp_dir: Some(work.clone()),
                    ..BuildOptions::default()
                };
                reset_peak();
                let t = Instant::now();
                let built = build_archives(
                    &storage,
                    &catalog,
                    &dumps,
                    &scopes,
                    &format!("transfers/{label}/{n}"),
                    &options,
                )
                .await
                .unwrap();
                let build_s = t.elapsed().as_secs_f64();
                let rss = peak_mib();
                let out: u64 = built.iter().map(|b| b.size).sum();
                storage
                    .delete_prefix(&format!("transfers/{label}/{n}"))
                    .await
                    .unwrap();
                let shell = (tools && level == 6 && (jq_filter.is_none() || jq))
                    .then(|| shell_route(&paths, glob, jq_filter, &work));
                rows.push(Row {
                    dump: label.into(),
                    scenario: if levels.len() > 1 {
                        format!("{scenario} (deflate {level})")
                    } else {
                        scenario.into()
                    },
                    dump_mib: dump_bytes as f64 / 1048576.0,
                    out_mib: out as f64 / 1048576.0,
                    build_s,
                    read_s,
                    shell,
                    rss,
                });
            }
        }
    }
    let _ = std::fs::remove_dir_all(&work);

    println!("\n| dump | scenario | dump MiB | out MiB | build s | MiB/s | read-once s | build / read | shell s (unzip+filter+zip) | peak RSS MiB |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        let shell = match r.shell {
            Some(s) => format!("{s:.2}"),
            None if !tools => "skipped: unzip/zip not installed".into(),
            None => "skipped".into(),
        };
        println!(
            "| {} | {} | {:.0} | {:.1} | {:.2} | {:.0} | {:.2} | {:.1}× | {} | {} |",
            r.dump,
            r.scenario,
            r.dump_mib,
            r.out_mib,
            r.build_s,
            r.dump_mib / r.build_s,
            r.read_s,
            r.build_s / r.read_s.max(1e-9),
            shell,
            r.rss.map_or("n/a".into(), |m| format!("{m:.0}")),
        );
    }
    if !jq {
        println!("\n(jq not installed: the shell route of JSON filters is skipped)");
    }
}
