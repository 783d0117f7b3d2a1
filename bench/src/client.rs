//! What the users and the client do over HTTP: sign contracts and grants,
//! upload dumps, ask for transfers, follow them to their end and check every
//! delivered file against the data bank's record.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use futures_util::StreamExt;
use protocol::alias::build::{group, scope, signed_grant, ClientDeclDoc, ContractDoc};
use protocol::alias::Contract;
use protocol::anychain::{b64u_encode, signing_key_from_seed, to_token, SigningKey, Value};

/// A user's key, derived from a number.
pub fn user_key(i: u64) -> SigningKey {
    let mut seed = [0x5a; 32];
    seed[..8].copy_from_slice(&i.to_le_bytes());
    signing_key_from_seed(&seed)
}

/// The scopes every benchmark contract asks for: the photos whole, the
/// location history and three activity files with date filters or field
/// projections, contacts and mail — nearly all of a Takeout.
fn scopes() -> Vec<Value> {
    let google = |path: &str| scope("google", path);
    let since = |field: &str, date: &str| {
        Value::List(vec![Value::List(vec![
            Value::from(">="),
            Value::from(field),
            Value::from(date),
        ])])
    };
    vec![
        Value::Dict(google("photos")),
        Value::Dict(
            google("location_history").with("predicates", since("timestamp", "2022-06-01")),
        ),
        Value::Dict(google("my_activity.search").with("predicates", since("time", "2022-01-01"))),
        Value::Dict(google("youtube.watch_history").with(
            "fields",
            Value::List(vec![Value::from("title"), Value::from("time")]),
        )),
        Value::Dict(google("chrome.history")),
        Value::Dict(google("contacts")),
        Value::Dict(google("mail")),
    ]
}

/// The benchmark client's signing key (every contract of [`contract`]).
pub fn client_key() -> SigningKey {
    signing_key_from_seed(&[0x17; 32])
}

/// A contract of client `name` pushing to `domain` over plain http; every
/// scope is contractual, so a grant needs no consent matrix.
pub fn contract(name: &str, domain: &str) -> Result<Value> {
    let client = ClientDeclDoc::new(name, domain).sign(&client_key(), 1_700_000_000_000.0)?;
    Ok(ContractDoc::new(client)
        .usage("benchmark")
        .contractual(group(scopes(), &[]))
        .scheme("http")
        .build())
}

/// The transfer id of a contract (its hash).
pub fn contract_id(contract: &Value) -> Result<String> {
    Ok(Contract::new(contract)?.hash()?.to_b64())
}

/// A grant of `contract` signed now by `user`, as a token.
#[allow(clippy::cast_precision_loss)]
pub fn grant(user: &SigningKey, contract: &Value) -> Result<String> {
    let now = runtime::state::now_ms() as f64;
    Ok(to_token(&signed_grant(
        user,
        contract,
        vec![],
        vec![],
        now,
    )?))
}

/// The user's public key as the data bank names it.
pub fn public_key(user: &SigningKey) -> String {
    b64u_encode(user.verifying_key().as_bytes())
}

/// Uploads one dump file of `user` through the gateway (a signed request,
/// streamed, as `aliasctl dump upload` does).
pub async fn upload(user: &SigningKey, gateway: &str, file: &Path) -> Result<()> {
    aliasctl::dump::upload(user, gateway, "google", None, file, false)
        .await
        .with_context(|| format!("uploading {}", file.display()))?;
    Ok(())
}

/// A transfer started by [`post_grant`].
#[derive(Debug, Clone)]
pub struct Started {
    /// The transfer id.
    pub id: String,
    /// The capability that shows it (`Authorization: Bearer`).
    pub access: String,
}

/// `POST /alias/process` with `Prefer: respond-async`; returns the transfer
/// id and its capability.
pub async fn post_grant(http: &reqwest::Client, gateway: &str, grant: &str) -> Result<Started> {
    let resp = http
        .post(format!("{gateway}/alias/process"))
        .header("Prefer", "respond-async")
        .form(&[("grant", grant)])
        .send()
        .await?;
    let status = resp.status();
    let location = resp
        .headers()
        .get("Location")
        .and_then(|l| l.to_str().ok())
        .map(str::to_owned);
    if status != reqwest::StatusCode::ACCEPTED {
        bail!(
            "POST /alias/process: {status} {}",
            resp.text().await.unwrap_or_default()
        );
    }
    let location = location.context("202 without Location")?;
    let body: serde_json::Value = resp.json().await?;
    let access = body["access"]
        .as_str()
        .context("202 without a transfer capability")?
        .to_owned();
    Ok(Started {
        id: location.rsplit('/').next().unwrap_or(&location).to_owned(),
        access,
    })
}

/// How a transfer ended, as followed on its event stream.
#[derive(Debug, Clone)]
pub struct Followed {
    /// The final state (`done`, `failed`, `cancelled`).
    pub state: String,
    /// When the state `pushing` was first seen (the first archive queued
    /// for pushing; with a bank that pushes only once all are built, the
    /// end of processing).
    pub pushing_at: Option<Instant>,
    /// When every archive was built (`built` first seen true; the first
    /// `pushing` for a bank whose status has no `built`).
    pub built_at: Option<Instant>,
    /// When the final state was seen.
    pub ended_at: Instant,
    /// The error, when it failed.
    pub error: Option<String>,
}

fn terminal(state: &str) -> bool {
    matches!(state, "done" | "failed" | "cancelled")
}

/// Follows a transfer on `GET /alias/transfers/{id}/events` until it ends;
/// if the stream breaks, polls the status until it ends or `deadline`.
pub async fn follow(
    http: &reqwest::Client,
    gateway: &str,
    started: &Started,
    deadline: Instant,
) -> Result<Followed> {
    let (id, access) = (started.id.as_str(), started.access.as_str());
    let mut pushing_at = None;
    let mut built_at = None;
    let left = deadline.saturating_duration_since(Instant::now());
    let streamed = tokio::time::timeout(left, async {
        let resp = http
            .get(format!("{gateway}/alias/transfers/{id}/events"))
            .bearer_auth(access)
            .send()
            .await?
            .error_for_status()?;
        let mut body = resp.bytes_stream();
        let mut buf: Vec<u8> = Vec::new();
        while let Some(piece) = body.next().await {
            buf.extend_from_slice(&piece?);
            while let Some(end) = find(&buf, b"\n\n") {
                let event: Vec<u8> = buf.drain(..end + 2).collect();
                let text = String::from_utf8_lossy(&event);
                for line in text.lines() {
                    let Some(data) = line.strip_prefix("data:") else {
                        continue;
                    };
                    let v: serde_json::Value = serde_json::from_str(data.trim())?;
                    let state = v["state"].as_str().unwrap_or_default().to_owned();
                    if state == "pushing" && pushing_at.is_none() {
                        pushing_at = Some(Instant::now());
                    }
                    let built = match v["built"].as_bool() {
                        Some(built) => built,
                        None => state == "pushing",
                    };
                    if built && built_at.is_none() {
                        built_at = Some(Instant::now());
                    }
                    if terminal(&state) {
                        return Ok::<_, anyhow::Error>(Some(Followed {
                            state,
                            pushing_at,
                            built_at: built_at.or(pushing_at),
                            ended_at: Instant::now(),
                            error: v["error"].as_str().map(str::to_owned),
                        }));
                    }
                }
            }
        }
        Ok(None)
    })
    .await;
    if let Ok(Ok(Some(f))) = streamed {
        return Ok(f);
    }
    // The stream broke (or timed out): poll with the same deadline.
    loop {
        let v: serde_json::Value = http
            .get(format!("{gateway}/alias/transfers/{id}"))
            .bearer_auth(access)
            .send()
            .await?
            .json()
            .await?;
        let state = v["state"].as_str().unwrap_or_default().to_owned();
        if terminal(&state) {
            return Ok(Followed {
                state,
                pushing_at,
                built_at: built_at.or(pushing_at),
                ended_at: Instant::now(),
                error: v["error"].as_str().map(str::to_owned),
            });
        }
        if Instant::now() > deadline {
            bail!("transfer {id} still {state} at the deadline");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One delivered file, checked.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// The file name at the client.
    pub name: String,
    /// Its size.
    pub size: u64,
}

/// BLAKE2b-512 of a file, URL-safe base64.
pub fn blake2b_file(path: &Path) -> Result<(u64, String)> {
    protocol::wire::blake2b_file(path).with_context(|| format!("{}", path.display()))
}

/// Checks that transfer `id` is `done` at the data bank and that every file
/// of its record is at the client (`sink_dir/{id}/data/{name}`) with the
/// recorded size and BLAKE2b, and that the client was told it finished.
pub async fn verify(
    http: &reqwest::Client,
    gateway: &str,
    sink_dir: &Path,
    started: &Started,
) -> Result<Vec<Delivered>> {
    let id = started.id.as_str();
    let status: serde_json::Value = http
        .get(format!("{gateway}/alias/transfers/{id}"))
        .bearer_auth(&started.access)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    ensure!(status["state"] == "done", "transfer {id}: {status}");
    let files = status["files"].as_array().context("files")?;
    ensure!(!files.is_empty(), "transfer {id} has no files");
    let mut delivered = Vec::new();
    for f in files {
        let name = f["name"].as_str().context("file name")?;
        let size = f["size"].as_u64().context("file size")?;
        let hash = f["blake2b"].as_str().context("file hash")?;
        let path = sink_dir.join(id).join("data").join(name);
        let (got_size, got_hash) = blake2b_file(&path)?;
        ensure!(
            got_size == size && got_hash == hash,
            "{id}/{name}: the client holds {got_size} bytes {got_hash}, the record says {size} bytes {hash}"
        );
        delivered.push(Delivered {
            name: name.to_owned(),
            size,
        });
    }
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(sink_dir.join(id).join("state.json"))?)?;
    ensure!(
        state["finished"] == true,
        "the client of {id} was not told finished: {state}"
    );
    Ok(delivered)
}

/// The start request of the push protocol (`PUT {base}{id}`, `grant=`),
/// which makes the sink accept chunks for `id`.
pub async fn sink_start(
    http: &reqwest::Client,
    push_base: &str,
    id: &str,
    grant: &str,
) -> Result<()> {
    http.put(format!("{push_base}{id}"))
        .form(&[("grant", grant)])
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}
