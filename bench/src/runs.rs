//! The whole-system runs, against real separate processes: one big transfer
//! end to end, and many small transfers at once.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use futures_util::stream::{self, StreamExt};

use crate::baseline;
use crate::client;
use crate::services::{Env, Stack};

/// The outcome of a run, with its floor.
#[derive(Debug, Clone, Default)]
pub struct Run {
    /// Transfers asked.
    pub transfers: usize,
    /// Transfers ended `done` with every file verified at the client.
    pub verified: usize,
    /// Files delivered and verified.
    pub files: usize,
    /// Dump bytes of every user.
    pub dump_bytes: u64,
    /// Archive bytes delivered.
    pub archive_bytes: u64,
    /// Seconds uploading the dumps through the gateway (untimed part).
    pub upload_s: f64,
    /// Seconds from the first `POST /alias/process` to the last transfer end.
    pub secs: f64,
    /// Seconds from the (first) POST to every archive built: of the one
    /// transfer, or of the last of many to get there.
    pub processing_s: Option<f64>,
    /// Seconds from the POST to the state `pushing` (the first archive
    /// queued) of the one transfer.
    pub first_push_s: Option<f64>,
    /// Seconds of `cat` of every stored dump once.
    pub read_s: f64,
    /// Seconds of `curl -T` of every delivered archive once to the sink.
    pub curl_s: f64,
    /// Peak RSS of each service at the end of the run (KiB).
    pub peaks: Vec<(String, Option<u64>)>,
    /// Failures, if any (the first few).
    pub failures: Vec<String>,
}

impl Run {
    /// The floor: reading the dumps once plus uploading the archives once.
    pub fn floor_s(&self) -> f64 {
        self.read_s + self.curl_s
    }
}

fn stored_dumps(stack: &Stack, pk: &str) -> Result<Vec<PathBuf>> {
    let dir = stack.storage.join("dumps").join(pk).join("google");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("{}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    paths.sort();
    Ok(paths)
}

/// One user with the dump `parts` (already generated), one grant covering
/// nearly all of it, through `processors` processors and `pushers` pushers.
pub async fn end_to_end(
    env: &Env,
    dir: &Path,
    parts: &[PathBuf],
    processors: usize,
    pushers: usize,
) -> Result<Run> {
    let mut stack = Stack::start(env, dir, "e2e", processors, pushers, &[]).await?;
    let http = reqwest::Client::new();
    let user = client::user_key(1_000_000);
    let pk = client::public_key(&user);
    let t = Instant::now();
    for p in parts {
        client::upload(&user, &stack.gateway, p).await?;
    }
    let upload_s = t.elapsed().as_secs_f64();
    let domain = stack.sink.url.replace("http://", "");
    let contract = client::contract("Bench e2e", &domain)?;
    let grant = client::grant(&user, &contract)?;

    baseline::sync();
    let t0 = Instant::now();
    let started = client::post_grant(&http, &stack.gateway, &grant).await?;
    let id = started.id.clone();
    let followed = client::follow(
        &http,
        &stack.gateway,
        &started,
        t0 + Duration::from_secs(3600),
    )
    .await?;
    let secs = (followed.ended_at - t0).as_secs_f64();
    stack.check_alive()?;
    ensure!(
        followed.state == "done",
        "transfer {id} ended {}: {:?}",
        followed.state,
        followed.error
    );
    let peaks = stack.peaks();
    eprintln!("  CPU of the services: {}", stack.cpu_line());
    let delivered = client::verify(&http, &stack.gateway, &stack.sink.dir, &started).await?;

    // The floor, after the run: the stored dump read once, the delivered
    // archives (verified identical) uploaded once to a fresh transfer.
    baseline::sync();
    let read_s = baseline::cat_once(&stored_dumps(&stack, &pk)?)?;
    let base_contract = client::contract("Bench e2e baseline", &domain)?;
    let base_id = client::contract_id(&base_contract)?;
    let push_base = stack.sink.push_base();
    client::sink_start(
        &http,
        &push_base,
        &base_id,
        &client::grant(&user, &base_contract)?,
    )
    .await?;
    let files: Vec<_> = delivered
        .iter()
        .map(|d| {
            (
                stack.sink.file_path(&id, &d.name),
                d.size,
                format!("{push_base}{base_id}/{}", d.name),
            )
        })
        .collect();
    baseline::sync();
    let curl_s = baseline::curl_put(&files)?;
    let run = Run {
        transfers: 1,
        verified: 1,
        files: delivered.len(),
        dump_bytes: parts
            .iter()
            .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
            .sum(),
        archive_bytes: delivered.iter().map(|d| d.size).sum(),
        upload_s,
        secs,
        processing_s: followed.built_at.map(|p| (p - t0).as_secs_f64()),
        first_push_s: followed.pushing_at.map(|p| (p - t0).as_secs_f64()),
        read_s,
        curl_s,
        peaks,
        failures: Vec::new(),
    };
    stack.stop().await?;
    std::fs::remove_dir_all(dir)?;
    Ok(run)
}

/// `n` users, each with a small generated Takeout of `dump_size` bytes and
/// a contract of their own, grants posted all at once.
pub async fn many(
    env: &Env,
    dir: &Path,
    n: usize,
    dump_size: u64,
    processors: usize,
    pushers: usize,
) -> Result<(Run, f64)> {
    let gen_dir = dir.join("dumps");
    let t = Instant::now();
    let mut parts: Vec<Vec<PathBuf>> = Vec::new();
    for i in 0..n {
        let opts = dumpgen::Options {
            provider: dumpgen::Provider::Google,
            format: dumpgen::Format::Zip,
            seed: 1000 + i as u64,
            target_bytes: dump_size,
            media_ratio: 0.5,
            parts: 1,
            era: dumpgen::Era::Current,
            ..dumpgen::Options::default()
        };
        let d = gen_dir.join(i.to_string());
        std::fs::create_dir_all(&d)?;
        parts.push(
            dumpgen::write_to_dir(&opts, &d)?
                .into_iter()
                .map(|w| w.path)
                .collect(),
        );
    }
    let generate_s = t.elapsed().as_secs_f64();
    eprintln!("  generated {n} dumps in {generate_s:.1} s");

    let mut stack = Stack::start(env, dir, "many", processors, pushers, &[]).await?;
    let http = reqwest::Client::new();
    let domain = stack.sink.url.replace("http://", "");
    let users: Vec<_> = (0..n).map(|i| client::user_key(i as u64)).collect();
    let t = Instant::now();
    let gateway = stack.gateway.clone();
    let uploads: Vec<Result<()>> = stream::iter(users.iter().zip(&parts))
        .map(|(user, files)| {
            let gateway = gateway.clone();
            async move {
                for f in files {
                    client::upload(user, &gateway, f).await?;
                }
                Ok(())
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    uploads.into_iter().collect::<Result<Vec<()>>>()?;
    let upload_s = t.elapsed().as_secs_f64();
    // The generated dumps stay until the end of the run (removed with
    // `dir`): on an ext4 without a journal, a file created within seconds
    // of deletions scans past the inodes just freed, so the bench's own
    // deletions would slow the services' file creations in the timed part.
    eprintln!("  uploaded in {upload_s:.1} s");
    let grants: Vec<String> = users
        .iter()
        .enumerate()
        .map(|(i, u)| client::grant(u, &client::contract(&format!("Bench client {i}"), &domain)?))
        .collect::<Result<_>>()?;

    baseline::sync();
    eprintln!(
        "  CPU of the services before the POSTs: {}",
        stack.cpu_line()
    );
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(3600);
    let gw = Arc::new(stack.gateway.clone());
    let outcomes = futures_util::future::join_all(grants.iter().map(|g| {
        let http = http.clone();
        let gw = gw.clone();
        async move {
            let started = client::post_grant(&http, &gw, g).await?;
            let f = client::follow(&http, &gw, &started, deadline).await?;
            Ok::<_, anyhow::Error>((started, f))
        }
    }))
    .await;
    let end = outcomes
        .iter()
        .filter_map(|o| o.as_ref().ok().map(|(_, f)| f.ended_at))
        .max()
        .unwrap_or_else(Instant::now);
    let secs = (end - t0).as_secs_f64();
    // When the last transfer's processing was over (all its archives built).
    let processed = outcomes
        .iter()
        .filter_map(|o| o.as_ref().ok().and_then(|(_, f)| f.built_at))
        .max()
        .map(|p| (p - t0).as_secs_f64());
    stack.check_alive()?;
    let peaks = stack.peaks();
    eprintln!("  CPU of the services: {}", stack.cpu_line());
    let followed: Vec<_> = outcomes
        .iter()
        .filter_map(|o| o.as_ref().ok().map(|(_, f)| f))
        .collect();
    eprintln!("  {}", push_waits(&followed));

    let mut run = Run {
        transfers: n,
        upload_s,
        secs,
        processing_s: processed,
        peaks,
        ..Run::default()
    };
    let mut archives = Vec::new();
    for o in &outcomes {
        let (started, f) = match o {
            Ok(x) => x,
            Err(e) => {
                run.failures.push(format!("{e:#}"));
                continue;
            }
        };
        let id = &started.id;
        if f.state != "done" {
            run.failures
                .push(format!("{id}: {} {:?}", f.state, f.error));
            continue;
        }
        match client::verify(&http, &stack.gateway, &stack.sink.dir, started).await {
            Ok(files) => {
                run.verified += 1;
                run.files += files.len();
                for d in files {
                    run.archive_bytes += d.size;
                    archives.push((id.clone(), d));
                }
            }
            Err(e) => run.failures.push(format!("{e:#}")),
        }
    }
    run.failures.truncate(5);

    let mut dumps = Vec::new();
    for u in &users {
        dumps.extend(stored_dumps(&stack, &client::public_key(u))?);
    }
    run.dump_bytes = dumps
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    baseline::sync();
    run.read_s = baseline::cat_once(&dumps)?;
    let base_contract = client::contract("Bench many baseline", &domain)?;
    let base_id = client::contract_id(&base_contract)?;
    let push_base = stack.sink.push_base();
    client::sink_start(
        &http,
        &push_base,
        &base_id,
        &client::grant(&users[0], &base_contract)?,
    )
    .await?;
    let files: Vec<_> = archives
        .iter()
        .enumerate()
        .map(|(k, (id, d))| {
            (
                stack.sink.file_path(id, &d.name),
                d.size,
                format!("{push_base}{base_id}/{k}-{}", d.name),
            )
        })
        .collect();
    baseline::sync();
    run.curl_s = baseline::curl_put(&files)?;
    stack.stop().await?;
    std::fs::remove_dir_all(dir)?;
    Ok((run, generate_s))
}

/// How long the transfers of a run waited between every archive built and
/// their end (the push after the build), as quantiles: what the pushers
/// added once processing was over.
fn push_waits(followed: &[&client::Followed]) -> String {
    let mut waits: Vec<f64> = followed
        .iter()
        .filter_map(|f| f.built_at.map(|b| (f.ended_at - b).as_secs_f64()))
        .collect();
    if waits.is_empty() {
        return "built → end: no transfer reported `built`".into();
    }
    waits.sort_by(f64::total_cmp);
    let at = |q: f64| waits[((waits.len() - 1) as f64 * q).round() as usize];
    format!(
        "built → end of each transfer: median {:.2} s, 90 % {:.2} s, max {:.2} s ({} transfers)",
        at(0.5),
        at(0.9),
        at(1.0),
        waits.len()
    )
}
