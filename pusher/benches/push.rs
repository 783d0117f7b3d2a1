//! Push throughput: one archive (1 GiB of random bytes by default) from a
//! `file://` resource storage to an in-process `alias-sink` on loopback,
//! through `ChunkStreamer` (the worker's path), beside `curl -T` of the same
//! file to the same sink in one PUT. Prints a markdown table, and the
//! process's peak RSS (VmHWM; the embedded sink included).
//!
//! ```text
//! cargo bench -p alias-pusher --bench push [-- SIZE]
//! PUSH_BENCH_BYTES=256M PUSH_BENCH_CHUNKS=2M,8M cargo bench -p alias-pusher --bench push
//! ```
//!
//! The curl baseline sends the whole file as one chunk (`Range: 0-{size-1}`,
//! `Content-Type: application/octet-stream`): the sink is started with a
//! chunk limit above the file size for this, and streams bodies to disk, so
//! the baseline costs it no memory.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use common::anychain::b64u_encode;
use common::storage::{S3Settings, Storage};
use pusher::client::{
    ChunkStreamer, ClientConfig, PushClient, PushTarget, RetryPolicy, SsrfGuard, Upload,
};
use rand::{RngCore, SeedableRng};
use sink::{Sink, SinkConfig};

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../common/tests/data/protocol-examples.json"
);
const KEY: &str = "transfers/bench/1/archive.zip";
const FILE: &str = "archive.zip";

/// `1073741824`, `1G`, `256M`, `64K` (binary units).
fn parse_size(text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, ""),
    };
    let n: u64 = digits.parse().with_context(|| format!("size {text:?}"))?;
    let shift = match unit
        .trim_end_matches(['i', 'B'])
        .to_ascii_uppercase()
        .as_str()
    {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        other => bail!("unknown size unit {other:?}"),
    };
    Ok(n << shift)
}

fn vm_hwm_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn mib_s(bytes: u64, time: Duration) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / time.as_secs_f64()
}

/// Writes `size` random bytes to `path`, 8 MiB at a time; returns their
/// BLAKE2b-512 (b64u).
fn generate(path: &Path, size: u64) -> anyhow::Result<String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut hasher = blake2b_simd::State::new();
    let mut block = vec![0u8; 8 << 20];
    let mut left = size;
    while left > 0 {
        let n = usize::try_from(left.min(block.len() as u64))?;
        let piece = &mut block[..n];
        rng.fill_bytes(piece);
        hasher.update(piece);
        file.write_all(piece)?;
        left -= n as u64;
    }
    file.into_inner()?.sync_all()?;
    Ok(b64u_encode(hasher.finalize().as_bytes()))
}

struct Row {
    what: String,
    time: Duration,
    bytes: u64,
    requests: u64,
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; the first other argument is the size.
    let arg = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let size = match arg.or_else(|| std::env::var("PUSH_BENCH_BYTES").ok()) {
        Some(text) => parse_size(&text)?,
        None => 1 << 30,
    };
    if size == 0 {
        bail!("the size must be positive");
    }
    let chunks: Vec<u64> = std::env::var("PUSH_BENCH_CHUNKS")
        .unwrap_or_else(|_| "2M,8M".into())
        .split(',')
        .map(parse_size)
        .collect::<anyhow::Result<_>>()?;

    let dir = tempfile::Builder::new().prefix("push-bench").tempdir()?;
    let store_dir = dir.path().join("storage");
    let source = store_dir.join(KEY);
    let started = Instant::now();
    let hash = generate(&source, size)?;
    eprintln!(
        "generated {size} bytes in {:.1} s under {}",
        started.elapsed().as_secs_f64(),
        dir.path().display()
    );

    let vectors: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(VECTORS)?)?;
    let grant = vectors["grant_token"]
        .as_str()
        .context("grant_token")?
        .to_owned();
    let id = vectors["grant_contract_hash"]
        .as_str()
        .context("grant_contract_hash")?
        .to_owned();

    let mut config = SinkConfig::new(dir.path().join("sink"));
    config.max_chunk = size + 1;
    let (addr, sink) = Sink::start(config)?;
    let storage = Storage::from_url(
        &format!("file://{}", store_dir.display()),
        &S3Settings::default(),
    )?;
    let client = PushClient::new(
        SsrfGuard::new(vec!["127.0.0.0/8".parse()?]),
        ClientConfig {
            request_timeout: Duration::from_secs(600),
            ..ClientConfig::default()
        },
    )?;
    let target = PushTarget::new(&sink.base_url(), &id)?;
    let file_url = target.file_url(FILE)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;

    let mut rows = Vec::new();
    let hwm_before = vm_hwm_kib();
    for chunk in &chunks {
        let chunk_size = usize::try_from(*chunk)?;
        let streamer = ChunkStreamer::new(client.clone(), storage.clone())
            .with_chunk_size(chunk_size)
            .with_policy(RetryPolicy::default());
        let before = sink.counters();
        let (time, finish_time) = runtime.block_on(async {
            client.start(&target, &grant).await?;
            let upload = Upload {
                key: KEY.into(),
                file_url: file_url.clone(),
                size,
                offset: 0,
                verify_offset: false,
            };
            let t0 = Instant::now();
            let stats = streamer
                .push_file(
                    &upload,
                    |_| async { Ok::<_, std::io::Error>(()) },
                    || async { true },
                )
                .await?;
            let time = t0.elapsed();
            anyhow::ensure!(stats.retries == 0, "retries: {stats:?}");
            let t1 = Instant::now();
            client.finish_file(&file_url, size, &hash).await?;
            Ok::<_, anyhow::Error>((time, t1.elapsed()))
        })?;
        let requests = sink.counters().chunks - before.chunks;
        rows.push(Row {
            what: format!("pusher `ChunkStreamer`, {} KiB chunks", chunk / 1024),
            time,
            bytes: size,
            requests,
        });
        rows.push(Row {
            what: "  then file finish (sink re-reads and hashes the file)".into(),
            time: finish_time,
            bytes: size,
            requests: 1,
        });
    }
    let hwm_pusher = vm_hwm_kib();

    let curl_ok = Command::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let mut curl_note = None;
    if curl_ok {
        runtime.block_on(client.start(&target, &grant))?;
        let t0 = Instant::now();
        let out = Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "-T"])
            .arg(&source)
            .args(["-H", "Content-Type: application/octet-stream"])
            .args(["-H", &format!("Range: 0-{}", size - 1)])
            .args(["-H", "Expect:"])
            .arg(file_url.as_str())
            .output()?;
        let time = t0.elapsed();
        let code = String::from_utf8_lossy(&out.stdout).to_string();
        if code != "200" {
            bail!("curl: HTTP {code} {}", String::from_utf8_lossy(&out.stderr));
        }
        // Same bytes: the sink checks size and hash.
        runtime.block_on(client.finish_file(&file_url, size, &hash))?;
        rows.push(Row {
            what: "`curl -T`, one PUT of the whole file".into(),
            time,
            bytes: size,
            requests: 1,
        });
    } else {
        curl_note = Some("curl not found: no baseline");
    }
    let hwm_end = vm_hwm_kib();

    let curl_rate = rows
        .iter()
        .find(|r| r.what.starts_with("`curl"))
        .map(|r| mib_s(r.bytes, r.time));
    println!(
        "\nPush of {size} bytes ({:.0} MiB) to alias-sink on {addr} (loopback, in-process)\n",
        size as f64 / 1048576.0
    );
    println!("| run | PUT requests | time (s) | MiB/s | vs curl |");
    println!("|---|---:|---:|---:|---:|");
    for r in &rows {
        let rate = mib_s(r.bytes, r.time);
        let ratio = curl_rate.map_or("–".to_owned(), |c| format!("{:.2}×", rate / c));
        println!(
            "| {} | {} | {:.3} | {:.0} | {} |",
            r.what,
            r.requests,
            r.time.as_secs_f64(),
            rate,
            ratio
        );
    }
    let kib =
        |v: Option<u64>| v.map_or("?".to_owned(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
    println!(
        "\nPeak RSS (VmHWM, whole process incl. the embedded sink): {} after generating, \
         {} after the pusher runs, {} at the end.",
        kib(hwm_before),
        kib(hwm_pusher),
        kib(hwm_end)
    );
    if let Some(note) = curl_note {
        println!("\nNote: {note}.");
    }
    sink.stop();
    Ok(())
}
