//! Push throughput: one archive (1 GiB of random bytes by default) from a
//! `file://` resource storage to an in-process `alias-sink` on loopback,
//! through `ChunkStreamer` (the worker's path), beside `curl -T` of the same
//! file to the same sink in one PUT. Prints a markdown table, and the
//! process's peak RSS (VmHWM; the embedded sink included).
//!
//! ```text
//! cargo bench -p alias-pusher --bench push [-- SIZE]
//! PUSH_BENCH_BYTES=256M PUSH_BENCH_CHUNKS=2M,8M PUSH_BENCH_REPEAT=3 \
//!     PUSH_BENCH_DIR=/tmp cargo bench -p alias-pusher --bench push
//! ```
//!
//! Each run is repeated (`PUSH_BENCH_REPEAT`, default 3), pusher runs and
//! curl interleaved, and the median and best are reported. The files live
//! under `PUSH_BENCH_DIR`, by default `/dev/shm` when it exists, so that the
//! figures are those of the push path rather than of the disk's write-back.
//!
//! The curl baseline sends the whole file as one chunk (`Range: 0-{size-1}`,
//! `Content-Type: application/octet-stream`): the sink is started with a
//! chunk limit above the file size for this, and it streams bodies to disk,
//! so the baseline costs it no memory. After every run the sink checks the
//! file's size and BLAKE2b (the file finish request), so each run delivered
//! identical bytes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use protocol::anychain::b64u_encode;
use pusher::client::{
    ChunkStreamer, ClientConfig, PushClient, PushTarget, RetryPolicy, SsrfGuard, Upload,
};
use rand::{RngCore, SeedableRng};
use runtime::storage::{S3Settings, Storage};
use sink::{Sink, SinkConfig};

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../protocol/tests/data/protocol-examples.json"
);
const KEY: &str = "transfers/bench/1/archive.zip";
const FILE: &str = "archive.zip";

/// `1073741824`, `1G`, `256M`, `64K` (binary units; `MiB` and `MB` alike).
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

/// The times of one kind of run.
struct Series {
    what: String,
    requests: u64,
    times: Vec<Duration>,
    finish: Vec<Duration>,
}

impl Series {
    fn new(what: String) -> Self {
        Self {
            what,
            requests: 0,
            times: Vec::new(),
            finish: Vec::new(),
        }
    }
}

fn median(times: &[Duration]) -> Option<Duration> {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied()
}

fn best(times: &[Duration]) -> Option<Duration> {
    times.iter().min().copied()
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    match std::env::var(name) {
        Ok(v) => v.parse().with_context(|| format!("{name}={v:?}")),
        Err(_) => Ok(default),
    }
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
    let repeat: usize = env_or("PUSH_BENCH_REPEAT", 3usize)?.max(1);
    let root = match std::env::var_os("PUSH_BENCH_DIR") {
        Some(dir) => PathBuf::from(dir),
        None if Path::new("/dev/shm").is_dir() => PathBuf::from("/dev/shm"),
        None => std::env::temp_dir(),
    };

    let dir = tempfile::Builder::new()
        .prefix("push-bench")
        .tempdir_in(&root)?;
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

    let mut config =
        SinkConfig::new(dir.path().join("sink")).with_client_key(&sink::client_key_of(&grant)?);
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
    let curl_ok = Command::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());

    let mut pushes: Vec<Series> = chunks
        .iter()
        .map(|c| Series::new(format!("pusher `ChunkStreamer`, {} KiB chunks", c / 1024)))
        .collect();
    let mut curl = Series::new("`curl -T`, one PUT of the whole file".into());
    curl.requests = 1;
    let hwm_before = vm_hwm_kib();
    let mut hwm_pusher = None;

    for round in 0..repeat {
        for (series, chunk) in pushes.iter_mut().zip(&chunks) {
            let streamer = ChunkStreamer::new(client.clone(), storage.clone())
                .with_chunk_size(usize::try_from(*chunk)?)
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
            series.requests = sink.counters().chunks - before.chunks;
            series.times.push(time);
            series.finish.push(finish_time);
            eprintln!("round {round}: {} {:.3} s", series.what, time.as_secs_f64());
        }
        hwm_pusher = vm_hwm_kib();
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
            runtime.block_on(client.finish_file(&file_url, size, &hash))?;
            curl.times.push(time);
            eprintln!("round {round}: curl {:.3} s", time.as_secs_f64());
        }
    }
    let hwm_end = vm_hwm_kib();

    let curl_rate = median(&curl.times).map(|t| mib_s(size, t));
    println!(
        "\nPush of {size} bytes ({:.0} MiB) under {} to alias-sink on {addr} \
         (loopback, in-process; {repeat} runs each, interleaved)\n",
        size as f64 / 1_048_576.0,
        root.display()
    );
    println!("| run | PUT requests | median (s) | median MiB/s | best MiB/s | median vs curl |");
    println!("|---|---:|---:|---:|---:|---:|");
    let row = |what: &str, requests: u64, times: &[Duration]| {
        let (Some(med), Some(top)) = (median(times), best(times)) else {
            return;
        };
        let rate = mib_s(size, med);
        let ratio = curl_rate.map_or("–".to_owned(), |c| format!("{:.2}×", rate / c));
        println!(
            "| {what} | {requests} | {:.3} | {:.0} | {:.0} | {ratio} |",
            med.as_secs_f64(),
            rate,
            mib_s(size, top),
        );
    };
    for series in &pushes {
        row(&series.what, series.requests, &series.times);
    }
    row(&curl.what, curl.requests, &curl.times);
    for series in &pushes {
        row(
            &format!(
                "file finish after the {} run (the sink re-reads and hashes)",
                series.what
            ),
            1,
            &series.finish,
        );
    }
    let mib =
        |v: Option<u64>| v.map_or("?".to_owned(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
    println!(
        "\nPeak RSS (VmHWM, whole process incl. the embedded sink): {} after generating, \
         {} after the pusher runs, {} at the end.",
        mib(hwm_before),
        mib(hwm_pusher),
        mib(hwm_end)
    );
    if !curl_ok {
        println!("\nNote: curl not found: no baseline.");
    }
    sink.stop();
    Ok(())
}
