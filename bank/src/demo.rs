//! The demo: the whole Alias flow on one machine, as its three parties see
//! it.
//!
//! 1. The **user** gets a key pair and a synthetic Google Takeout
//!    (`dumpgen`), and uploads it to the data bank with signed requests.
//! 2. The **client** (an `alias-sink`, the reference receiver) gets a key
//!    pair, a signed client declaration and a contract asking for some
//!    scopes; the user signs a grant consenting to them.
//! 3. The **data bank** validates the grant, extracts the scopes, builds one
//!    archive per scope and pushes them to the client in chunks.
//!
//! The demo follows the transfer with progress bars, then checks every
//! delivered archive against the data bank's record (size and BLAKE2b) and
//! lists what each holds. It runs against the embedded data bank (in-memory
//! state and queue, nothing to install) or, with [`Remote`], against a
//! deployment such as `docker compose up`.

use anyhow::{bail, Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use protocol::alias::build::{group, scope, signed_grant, ClientDeclDoc, ContractDoc};
use protocol::alias::Contract;
use protocol::anychain::{b64u_encode, signing_key_from_seed, to_token, SigningKey, Value};
use runtime::config::Config;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A deployment to run the demo against instead of the embedded data bank.
#[derive(Debug, Clone)]
pub struct Remote {
    /// The gateway's base URL, e.g. `http://gateway:8080`.
    pub gateway: String,
    /// The client's base URL as the pushers reach it, e.g. `http://sink:8090`.
    pub sink: String,
    /// The directory where that `alias-sink` stores what it receives.
    pub sink_dir: PathBuf,
}

/// What the demo does.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Working directory: keys, the dump, the data bank's storage and the
    /// client's received files go below it.
    pub dir: PathBuf,
    /// Approximate size of the synthetic Takeout, in bytes.
    pub dump_bytes: u64,
    /// Seed of the synthetic Takeout (same seed, same bytes).
    pub seed: u64,
    /// Run against a deployment instead of the embedded data bank.
    pub remote: Option<Remote>,
    /// Show progress bars.
    pub progress: bool,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            dir: PathBuf::from("alias-demo"),
            dump_bytes: 24 << 20,
            seed: 2026,
            remote: None,
            progress: true,
        }
    }
}

/// One archive the client received.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// File name.
    pub name: String,
    /// The scope it holds.
    pub scope: String,
    /// Size in bytes.
    pub size: u64,
    /// Where the client stored it.
    pub path: PathBuf,
    /// Number of zip entries.
    pub entries: usize,
    /// The first entry names.
    pub sample: Vec<String>,
}

/// What the demo ends with.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// The transfer id (the contract hash).
    pub transfer: String,
    /// Its final state (`done` on success).
    pub state: String,
    /// The archives, all verified against the data bank's record.
    pub files: Vec<Delivered>,
    /// Notes of the transfer (e.g. providers without a dump).
    pub notes: Vec<String>,
}

/// The scopes the demo client asks for: search activity as contractual,
/// photos and YouTube history as consent.
fn contract(client_key: &SigningKey, domain: &str, scheme: &str) -> Result<Value> {
    let client = ClientDeclDoc::new("alias-bank demo client", domain).sign(client_key, now_ms())?;
    let google = |path: &str| scope("google", path);
    Ok(ContractDoc::new(client)
        .usage("showing what alias-bank delivers")
        .contractual(group([google("my_activity.search")], &["search history"]))
        .consent(group(
            [google("photos"), google("youtube.watch_history")],
            &["photo album and watch history"],
        ))
        .scheme(scheme)
        .build())
}

#[allow(clippy::cast_precision_loss)]
fn now_ms() -> f64 {
    runtime::state::now_ms() as f64
}

fn random_key() -> Result<SigningKey> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(signing_key_from_seed(&seed))
}

fn write_key(path: &Path, key: &SigningKey) -> Result<()> {
    std::fs::write(path, b64u_encode(key.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))
}

/// The configuration of the embedded data bank of the demo.
pub fn embedded_config(dir: &Path) -> Result<Config> {
    let storage = dir.join("bank");
    let work = dir.join("work");
    std::fs::create_dir_all(&storage)?;
    std::fs::create_dir_all(&work)?;
    let storage = storage.canonicalize()?;
    let work = work.canonicalize()?;
    let text = |p: &Path| p.to_str().map(str::to_owned).context("a non-UTF-8 path");
    let (storage, work) = (text(&storage)?, text(&work)?);
    Ok(Config::from_pairs(&[
        ("ALIAS_NAMESPACE", "demo"),
        ("ALIAS_STORAGE_URL", &storage),
        ("ALIAS_WORK_DIR", &work),
        ("ALIAS_LISTEN", "127.0.0.1:0"),
        ("ALIAS_PUBLIC_ORIGIN", "http://alias-bank.localhost"),
        // The demo client listens on loopback.
        ("ALIAS_PUSH_ALLOW", "127.0.0.0/8"),
        ("ALIAS_PUSH_CHUNK", "1048576"),
        ("ALIAS_RATE_PER_SEC", "1000"),
    ])?)
}

fn bar(multi: &MultiProgress, progress: bool, message: &str) -> ProgressBar {
    if !progress {
        return ProgressBar::hidden();
    }
    let bar = multi.add(ProgressBar::new(0));
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:22} [{bar:36}] {bytes:>10}/{total_bytes:10} {bytes_per_sec}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(message.to_owned());
    bar
}

/// Runs the demo; writes its story to `out`.
pub async fn run(options: &DemoOptions, out: &mut (impl Write + Send)) -> Result<DemoReport> {
    let dir = &options.dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    writeln!(out, "alias-bank demo in {}", dir.display())?;

    // The client: a reference receiver, embedded or the deployment's.
    let (sink_handle, sink_url, sink_dir) = match &options.remote {
        Some(remote) => (None, remote.sink.clone(), remote.sink_dir.clone()),
        None => {
            let sink_dir = dir.join("client");
            // The demo's client key is made later (in `flow`): this
            // loopback sink receives for any client while the demo runs.
            let mut config = sink::SinkConfig::new(&sink_dir);
            config.any_client = true;
            let (addr, handle) =
                sink::Sink::start(config).context("starting the demo client (alias-sink)")?;
            (Some(handle), format!("http://{addr}"), sink_dir)
        }
    };
    let sink_origin = url::Url::parse(&sink_url).context("the client URL")?;
    let domain = match (sink_origin.host_str(), sink_origin.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => bail!("the client URL {sink_url} has no host"),
    };

    // The data bank: embedded, or the deployment's gateway.
    let bank = match &options.remote {
        Some(_) => None,
        None => Some(crate::Bank::start(embedded_config(&dir)?).await?),
    };
    let gateway = match (&options.remote, &bank) {
        (Some(remote), _) => remote.gateway.trim_end_matches('/').to_owned(),
        (None, Some(bank)) => bank.base_url(),
        (None, None) => bail!("no data bank"),
    };
    match &bank {
        Some(b) => writeln!(
            out,
            "data bank: embedded at {gateway} (state {}, queue {}); client: alias-sink at {sink_url}",
            if b.embedded_state() { "in memory" } else { "Redis" },
            if b.embedded_queue() { "in-process" } else { "RabbitMQ" },
        )?,
        None => writeln!(out, "data bank: {gateway}; client: {sink_url}")?,
    }

    let result = flow(
        options,
        &dir,
        &gateway,
        &domain,
        &sink_origin,
        &sink_dir,
        out,
    )
    .await;
    if let Some(bank) = bank {
        bank.stop().await;
    }
    if let Some(sink) = sink_handle {
        sink.stop();
    }
    result
}

async fn flow(
    options: &DemoOptions,
    dir: &Path,
    gateway: &str,
    domain: &str,
    sink_origin: &url::Url,
    sink_dir: &Path,
    out: &mut (impl Write + Send),
) -> Result<DemoReport> {
    // 1. The user's key and dump.
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys)?;
    let user = random_key()?;
    let client_key = random_key()?;
    write_key(&keys.join("user.key"), &user)?;
    write_key(&keys.join("client.key"), &client_key)?;
    writeln!(
        out,
        "\n1. The user: key {} (keys/user.key)",
        b64u_encode(user.verifying_key().as_bytes())
    )?;
    let dump_options = dumpgen::Options {
        provider: dumpgen::Provider::Google,
        target_bytes: options.dump_bytes,
        seed: options.seed,
        ..dumpgen::Options::default()
    };
    let dump_dir = dir.join("dumps");
    let written = {
        let dump_dir = dump_dir.clone();
        tokio::task::spawn_blocking(move || dumpgen::write_to_dir(&dump_options, &dump_dir))
            .await??
    };
    for part in &written {
        writeln!(
            out,
            "   generated a Google Takeout: dumps/{} ({:.1} MiB)",
            part.name,
            mib(part.size)
        )?;
        aliasctl::dump::upload(
            &user,
            gateway,
            "google",
            Some(&part.name),
            &part.path,
            options.progress,
        )
        .await
        .with_context(|| format!("uploading {}", part.name))?;
    }
    writeln!(out, "   uploaded with requests signed by the user's key")?;

    // 2. The client's contract, and the user's grant.
    let contract = contract(&client_key, domain, sink_origin.scheme())?;
    let id = Contract::new(&contract)?.hash()?.to_b64();
    let grant = signed_grant(&user, &contract, vec![vec![true, true]], vec![], now_ms())?;
    let grant = to_token(&grant);
    std::fs::write(dir.join("grant.token"), &grant)?;
    writeln!(
        out,
        "\n2. The client {domain} asks for google my_activity.search (contractual), \
         photos and youtube.watch_history (consent);\n   the user consents and signs the grant (grant.token)"
    )?;

    // 3. The data bank takes the grant and pushes.
    let http = reqwest::Client::new();
    let resp = http
        .post(format!("{gateway}/alias/process"))
        .header("Prefer", "respond-async")
        .form(&[("grant", &grant)])
        .send()
        .await
        .with_context(|| format!("reaching {gateway}"))?;
    let status = resp.status();
    let answer: serde_json::Value = resp.json().await.unwrap_or_default();
    if !status.is_success() {
        bail!("the data bank refused the grant: {status} {answer}");
    }
    // The capability that shows the transfer to its client (and only it).
    let access = answer["access"]
        .as_str()
        .context("the data bank's answer has no transfer capability")?
        .to_owned();
    writeln!(
        out,
        "\n3. The data bank accepted the grant: transfer {id}\n   (aliasctl transfer watch --gateway {gateway} --token <its capability> {id})"
    )?;
    let last = watch(&http, gateway, &id, &access, options.progress).await?;
    let state = last["state"].as_str().unwrap_or("?").to_owned();
    if state != "done" {
        bail!(
            "the transfer ended {state}: {}",
            last["error"].as_str().unwrap_or("no reason given")
        );
    }

    // 4. What the client holds.
    // Asked again while the gateway answers 502-504 (a restart of its
    // Redis or broker), as the events stream above is.
    let mut backoff = runtime::retry::Backoff::new(aliasctl::ops::WATCH_RETRY);
    let status: serde_json::Value = loop {
        let resp = http
            .get(format!("{gateway}/alias/transfers/{id}"))
            .bearer_auth(&access)
            .send()
            .await?;
        if aliasctl::ops::gateway_unavailable(resp.status()) {
            if let Some(delay) = backoff.next_delay(None) {
                eprintln!(
                    "alias-bank demo: the gateway answered {}; asking again in {:.1} s",
                    resp.status(),
                    delay.as_secs_f64()
                );
                tokio::time::sleep(delay).await;
                continue;
            }
        }
        break resp.error_for_status()?.json().await?;
    };
    let notes = status["notes"]
        .as_array()
        .map(|n| {
            n.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let mut files = Vec::new();
    for f in status["files"].as_array().into_iter().flatten() {
        let name = f["name"].as_str().context("a file without a name")?;
        let path = sink_dir.join(&id).join("data").join(name);
        files.push(check_file(f, name, &path)?);
    }
    writeln!(
        out,
        "\n4. The client received {} archives in {},\n   each verified (size and BLAKE2b-512) against the data bank's record:",
        files.len(),
        sink_dir.join(&id).join("data").display()
    )?;
    for f in &files {
        writeln!(
            out,
            "   {:<36} {:>8.2} MiB {:>5} entries  scope {}",
            f.name,
            mib(f.size),
            f.entries,
            f.scope
        )?;
        for name in &f.sample {
            writeln!(out, "       {name}")?;
        }
    }
    for note in &notes {
        writeln!(out, "   note: {note}")?;
    }
    writeln!(
        out,
        "\nDone. Inspect the grant with: aliasctl grant inspect {}",
        dir.join("grant.token").display()
    )?;
    Ok(DemoReport {
        transfer: id,
        state,
        files,
        notes,
    })
}

#[allow(clippy::cast_precision_loss)]
fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1u32 << 20)
}

/// Checks a received archive against the data bank's record and lists it.
fn check_file(record: &serde_json::Value, name: &str, path: &Path) -> Result<Delivered> {
    let size = record["size"].as_u64().unwrap_or(0);
    let (held, hash) = protocol::wire::blake2b_file(path)
        .with_context(|| format!("the client does not hold {}", path.display()))?;
    if held != size {
        bail!("{name}: the client holds {held} bytes, the data bank sent {size}");
    }
    if record["blake2b"].as_str() != Some(hash.as_str()) {
        bail!("{name}: the client's copy differs from the data bank's archive");
    }
    let archive = zip::ZipArchive::new(std::fs::File::open(path)?)
        .with_context(|| format!("{name} is not a zip archive"))?;
    let sample = archive.file_names().take(4).map(str::to_owned).collect();
    Ok(Delivered {
        name: name.to_owned(),
        scope: record["scope"].as_str().unwrap_or("").to_owned(),
        size,
        path: path.to_owned(),
        entries: archive.len(),
        sample,
    })
}

/// Follows the transfer's events with two bars (dumps read, bytes pushed)
/// until it ends; returns its last status.
async fn watch(
    http: &reqwest::Client,
    gateway: &str,
    id: &str,
    access: &str,
    progress: bool,
) -> Result<serde_json::Value> {
    let multi = MultiProgress::new();
    let reading = bar(&multi, progress, "reading the dumps");
    let pushing = bar(&multi, progress, "pushing archives");
    // Rides through a gateway that answers 502-504 for a while (its Redis
    // or broker restarting), as `aliasctl transfer watch` does.
    let on_retry = |status: reqwest::StatusCode, delay: std::time::Duration| {
        multi.suspend(|| {
            eprintln!(
                "alias-bank demo: the gateway answered {status}; following again in {:.1} s",
                delay.as_secs_f64()
            );
        });
    };
    let limits = aliasctl::net::HttpLimits::default();
    let policy = aliasctl::ops::WATCH_RETRY;
    let last = aliasctl::ops::follow_retrying(
        http,
        gateway,
        id,
        Some(access),
        &limits,
        policy,
        |t| {
            let num = |k: &str| t[k].as_u64().unwrap_or(0);
            reading.set_length(num("dump_bytes_total"));
            reading.set_position(num("dump_bytes_read"));
            pushing.set_length(num("bytes_total"));
            pushing.set_position(num("bytes_done"));
            pushing.set_message(format!(
                "pushing {}/{} archives",
                num("files_done"),
                num("files_total")
            ));
        },
        on_retry,
    )
    .await;
    reading.finish();
    pushing.finish();
    last
}
