//! The stage figures, measured in this process through the libraries the
//! services run: grant validation, processing (`build_archives`) and pushing
//! (`ChunkStreamer`, to an `alias-sink` process).

use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use ed25519_dalek::Signer;
use processor::extract::{build_archives, BuildOptions, Catalog, DumpSource};
use protocol::alias::{AcceptancePolicy, Grant};
use protocol::anychain::{
    b64u_encode, from_json_str, sign, signing_key_from_seed, to_token, Limits, Value,
};
use protocol::scope::Scope;
use pusher::client::{
    ChunkStreamer, ClientConfig, PushClient, PushTarget, RetryPolicy, SsrfGuard, Upload,
};
use rand::{RngCore, SeedableRng};
use runtime::storage::{S3Settings, Storage};

use crate::baseline;
use crate::client;
use crate::services::{Env, SinkProcess};

/// The scopes of the benchmark contract, in the string grammar.
pub const SCOPES: [&str; 7] = [
    "google.photos",
    "google.location_history[timestamp>=2022-06-01].*",
    "google.my_activity.search[time>=2022-01-01].*",
    "google.youtube.watch_history.{title,time}",
    "google.chrome.history",
    "google.contacts",
    "google.mail",
];

/// Grants validated per second and bare Ed25519 verifications per second
/// (best round of each, rounds interleaved, one thread).
#[derive(Debug, Clone, Copy)]
pub struct GrantRates {
    /// Full validations per second, the client's declaration already
    /// verified once (a client signs one declaration for all its contracts).
    pub grants: f64,
    /// Full validations per second of grants whose declarations were never
    /// seen (more distinct declarations than the cache holds): both
    /// signatures verified.
    pub grants_cold: f64,
    /// `verify_strict` per second.
    pub ed25519: f64,
}

/// The signed grant of the reference vectors ("grant (signed alias.grant)"):
/// client declaration, contract with legal terms, grant; two signatures.
fn realistic_token() -> Result<String> {
    let text = include_str!("../../protocol/tests/data/anychain.json");
    let limits = Limits {
        max_bytes: 64 << 20,
        max_depth: 128,
    };
    let file = from_json_str(text, &limits)?;
    file.get("documents")
        .and_then(|d| d.as_list())
        .and_then(|cases| {
            cases.iter().find(|c| {
                c.get("name").and_then(|n| n.as_str()) == Some("grant (signed alias.grant)")
            })
        })
        .and_then(|c| c.get("token"))
        .and_then(|t| t.as_str())
        .map(str::to_owned)
        .context("grant token in the vectors")
}

/// The realistic grant re-signed for `n` distinct client declarations (the
/// declaration's name numbered, signed by a bench client key that it names,
/// the grant by a bench user key): same shape and size, all verifiable.
fn distinct_declarations(token: &str, n: usize) -> Result<Vec<String>> {
    let limits = Limits::default();
    let grant = from_json_str(token, &limits)?;
    let client_key = signing_key_from_seed(&[11; 32]);
    let user_key = signing_key_from_seed(&[12; 32]);
    let body = grant.get("body").context("grant body")?;
    let contract = body.get("contract").context("contract")?;
    let decl = contract
        .get("client")
        .and_then(|c| c.get("body"))
        .context("declaration")?;
    let date = |v: &Value| v.get("date").and_then(Value::as_f64).unwrap_or(0.0);
    let client_date = date(contract.get("client").context("client")?);
    let pk = Value::Bytes(client_key.verifying_key().as_bytes().to_vec());
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let mut d = decl.as_dict().context("declaration dict")?.clone();
        let name = d.get("name").and_then(Value::as_str).unwrap_or("Client");
        d.insert("name", Value::from(format!("{name} {i}")));
        let mut crypto = d
            .get("crypto")
            .and_then(Value::as_dict)
            .cloned()
            .unwrap_or_default();
        crypto.insert("sign", pk.clone());
        d.insert("crypto", Value::Dict(crypto));
        let client = sign(&client_key, Value::Dict(d), client_date)?;
        let mut c = contract.as_dict().context("contract dict")?.clone();
        c.insert("client", client);
        let mut b = body.as_dict().context("body dict")?.clone();
        b.insert("contract", Value::Dict(c));
        out.push(to_token(&sign(&user_key, Value::Dict(b), date(&grant))?));
    }
    Ok(out)
}

fn rate(round: Duration, mut op: impl FnMut() -> Result<()>) -> Result<f64> {
    let t = Instant::now();
    let mut n = 0u64;
    loop {
        for _ in 0..32 {
            op()?;
        }
        n += 32;
        let e = t.elapsed();
        if e >= round {
            return Ok(n as f64 / e.as_secs_f64());
        }
    }
}

/// Decoding and fully verifying a realistic grant token, then the gateway's
/// acceptance policy, its scopes and its contract hash — what the gateway
/// does before touching Redis — beside one bare `verify_strict`; the same
/// for grants whose client declarations were never seen.
pub fn grant_validation(round: Duration, rounds: usize) -> Result<GrantRates> {
    let token = realistic_token()?;
    let cold = distinct_declarations(&token, protocol::alias::SIGNATURE_CACHE_CAPACITY + 1024)?;
    let mut next_cold = cold.iter().cycle();
    let limits = Limits::default();
    let policy = AcceptancePolicy::default();
    let key = signing_key_from_seed(&[9; 32]);
    let message = [7u8; 64];
    let signature = key.sign(&message);
    let public = key.verifying_key();
    let mut best = GrantRates {
        grants: 0.0,
        grants_cold: 0.0,
        ed25519: 0.0,
    };
    let validate = |token: &str| -> Result<()> {
        let grant = Grant::from_token(black_box(token), &limits)?;
        policy
            .check_grant(&grant, 1_600_000_000_000.0)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        black_box((grant.scopes()?, grant.contract_hash()?));
        Ok(())
    };
    for _ in 0..rounds {
        let ed = rate(round, || {
            public.verify_strict(black_box(&message), black_box(&signature))?;
            Ok(())
        })?;
        let grants = rate(round, || validate(&token))?;
        let grants_cold = rate(round, || {
            validate(next_cold.next().map_or(token.as_str(), String::as_str))
        })?;
        best.ed25519 = best.ed25519.max(ed);
        best.grants = best.grants.max(grants);
        best.grants_cold = best.grants_cold.max(grants_cold);
    }
    Ok(best)
}

/// A generated dump in a `file://` storage.
#[derive(Debug, Clone)]
pub struct LocalDump {
    /// The storage.
    pub storage: Storage,
    /// Its parts, as the processor sees them.
    pub sources: Vec<DumpSource>,
    /// The files of its parts.
    pub paths: Vec<PathBuf>,
    /// Total size.
    pub bytes: u64,
    /// Seconds dumpgen took.
    pub generate_s: f64,
}

/// Generates a Google Takeout of `size` bytes (`media` of it media) under
/// `root/dumps/bench/google/{label}` and opens `root` as storage; My
/// Activity and YouTube history in `activity` form.
pub fn generate_dump(
    root: &Path,
    label: &str,
    size: u64,
    media: f64,
    seed: u64,
    activity: dumpgen::ActivityForm,
) -> Result<LocalDump> {
    let opts = dumpgen::Options {
        provider: dumpgen::Provider::Google,
        format: dumpgen::Format::Zip,
        seed,
        target_bytes: size,
        media_ratio: media,
        parts: if size >= 512 << 20 { 2 } else { 1 },
        era: dumpgen::Era::Current,
        activity,
        ..dumpgen::Options::default()
    };
    let prefix = format!("dumps/bench/google/{label}");
    let dir = root.join(&prefix);
    std::fs::create_dir_all(&dir)?;
    let t = Instant::now();
    let written = dumpgen::write_to_dir(&opts, &dir)?;
    let generate_s = t.elapsed().as_secs_f64();
    let storage = Storage::from_url(
        &format!("file://{}", root.display()),
        &S3Settings::default(),
    )?;
    Ok(LocalDump {
        storage,
        sources: written
            .iter()
            .map(|w| DumpSource {
                provider: "google".into(),
                key: format!("{prefix}/{}", w.name),
                name: w.name.clone(),
                size: w.size,
                blake2b: [0; 64],
            })
            .collect(),
        paths: written.iter().map(|w| w.path.clone()).collect(),
        bytes: written.iter().map(|w| w.size).sum(),
        generate_s,
    })
}

/// One processing measurement.
#[derive(Debug, Clone)]
pub struct Processing {
    /// Dump bytes read.
    pub dump_bytes: u64,
    /// Archive bytes written.
    pub out_bytes: u64,
    /// Archives written.
    pub archives: usize,
    /// Seconds of `build_archives` (best of the rounds).
    pub build_s: f64,
    /// Seconds of `cat` of the dump (best of the rounds, warm cache).
    pub read_s: f64,
}

/// `build_archives` of the benchmark scopes on `dump`, beside `cat` of the
/// same files, interleaved, `rounds` times each; the best of each.
pub async fn processing(dump: &LocalDump, work: &Path, rounds: usize) -> Result<Processing> {
    let catalog = Catalog::embedded()?;
    let scopes = SCOPES
        .iter()
        .map(|s| Scope::parse(s).map_err(|e| anyhow::anyhow!("{s}: {e}")))
        .collect::<Result<Vec<_>>>()?;
    std::fs::create_dir_all(work)?;
    let options = BuildOptions {
        temp_dir: Some(work.to_path_buf()),
        ..BuildOptions::default()
    };
    let mut best = Processing {
        dump_bytes: dump.bytes,
        out_bytes: 0,
        archives: 0,
        build_s: f64::MAX,
        read_s: f64::MAX,
    };
    for round in 0..rounds {
        baseline::sync();
        best.read_s = best.read_s.min(baseline::cat_once(&dump.paths)?);
        let prefix = format!("transfers/bench/{round}");
        baseline::sync();
        let t = Instant::now();
        let built = build_archives(
            &dump.storage,
            &catalog,
            &dump.sources,
            &scopes,
            &prefix,
            &options,
        )
        .await?;
        best.build_s = best.build_s.min(t.elapsed().as_secs_f64());
        best.out_bytes = built.iter().map(|b| b.size).sum();
        best.archives = built.len();
        dump.storage.delete_prefix(&prefix).await?;
    }
    Ok(best)
}

/// Push runs beside `curl -T` runs.
#[derive(Debug, Clone)]
pub struct PushRates {
    /// Bytes of the archive.
    pub bytes: u64,
    /// Chunk size of the pusher.
    pub chunk: u64,
    /// Seconds of each pusher run.
    pub push_s: Vec<f64>,
    /// Seconds of each curl run.
    pub curl_s: Vec<f64>,
    /// Peak RSS of the sink (KiB).
    pub sink_peak_kib: Option<u64>,
}

/// The median of some seconds.
pub fn median(times: &[f64]) -> f64 {
    let mut t = times.to_vec();
    t.sort_by(f64::total_cmp);
    t.get(t.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Pushes one archive of `size` random bytes from a `file://` storage
/// through `ChunkStreamer` (the pusher's path: chunks read from storage,
/// offsets committed) to an `alias-sink` process, beside `curl -T` of the
/// same file to the same sink in one request; interleaved, `rounds` each.
/// After each run the sink checks size and BLAKE2b (file finish, untimed).
pub async fn push(
    env: &Env,
    dir: &Path,
    size: u64,
    chunk: u64,
    rounds: usize,
) -> Result<PushRates> {
    let store = dir.join("storage");
    let key = "transfers/bench/1/archive.zip";
    let source = store.join(key);
    std::fs::create_dir_all(source.parent().context("parent")?)?;
    let hash = {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&source)?);
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
        file.flush()?;
        b64u_encode(hasher.finalize().as_bytes())
    };
    let sink = SinkProcess::start(env, &dir.join("sink"), "sink (push run)", size + 1).await?;
    let storage = Storage::from_url(
        &format!("file://{}", store.display()),
        &S3Settings::default(),
    )?;
    let client = PushClient::new(
        SsrfGuard::new(vec!["127.0.0.0/8".parse()?]),
        ClientConfig {
            request_timeout: Duration::from_secs(600),
            ..ClientConfig::default()
        },
    )?;
    let contract = client::contract("Bench push", &sink.url.replace("http://", ""))?;
    let id = client::contract_id(&contract)?;
    let grant = client::grant(&client::user_key(7), &contract)?;
    let target = PushTarget::new(&sink.push_base(), &id)?;
    let file_url = target.file_url("archive.zip")?;
    let mut out = PushRates {
        bytes: size,
        chunk,
        push_s: Vec::new(),
        curl_s: Vec::new(),
        sink_peak_kib: None,
    };
    let curl = baseline::have("curl");
    for _ in 0..rounds {
        client.start(&target, &grant).await?;
        let streamer = ChunkStreamer::new(client.clone(), storage.clone())
            .with_chunk_size(usize::try_from(chunk)?)
            .with_policy(RetryPolicy::default());
        let upload = Upload {
            key: key.into(),
            file_url: file_url.clone(),
            size,
            offset: 0,
            verify_offset: false,
        };
        baseline::sync();
        let t = Instant::now();
        let stats = streamer
            .push_file(
                &upload,
                |_| async { Ok::<_, std::io::Error>(()) },
                || async { true },
            )
            .await?;
        out.push_s.push(t.elapsed().as_secs_f64());
        ensure!(stats.retries == 0, "the push retried: {stats:?}");
        client.finish_file(&file_url, size, &hash).await?;
        if curl {
            client.start(&target, &grant).await?;
            baseline::sync();
            let s = baseline::curl_put(&[(source.clone(), size, file_url.to_string())])?;
            out.curl_s.push(s);
            client.finish_file(&file_url, size, &hash).await?;
        }
    }
    out.sink_peak_kib = sink.service.peak_kib();
    drop(sink);
    std::fs::remove_dir_all(dir)?;
    Ok(out)
}
