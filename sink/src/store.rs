//! What the sink holds: transfers on disk with their state, the counters and
//! a bounded log of the requests seen.
//!
//! Layout under the data directory, one directory per transfer id:
//!
//! ```text
//! {dir}/{id}/grant        the stored grant token (the newest one received)
//! {dir}/{id}/state.json   TransferState (file sizes are re-read from disk)
//! {dir}/{id}/data/{file}  the received bytes of each file
//! {dir}/spool~/{n}        request bodies being received (wiped at start;
//!                         `~` is never in a transfer id)
//! ```

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use protocol::alias::{Grant, PushId};
use protocol::anychain::{b64u_encode, Limits, Value};
use protocol::wire::is_safe_segment;
use serde::{Deserialize, Serialize};

use crate::faults::Faults;
use crate::{Admin, SinkLimits};

/// The directory of bodies being received, under the data directory.
pub(crate) const SPOOL_DIR: &str = "spool~";

/// How many requests the log keeps (the oldest are dropped).
pub const REQUEST_LOG_LEN: usize = 10_000;

/// Locks a mutex, going on with the data of a panicked holder (the state is
/// always left consistent between statements).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Who consented to what, as shown on the status page.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GrantSummary {
    /// The user's public key (URL-safe base64): the grant's signer.
    pub user: String,
    /// The client's name from its signed declaration.
    pub client_name: Option<String>,
    /// The client's domain from its signed declaration.
    pub client_domain: Option<String>,
    /// The signature date, in milliseconds since the epoch.
    pub date_ms: Option<f64>,
    /// Whether the grant revokes the contract.
    pub revoked: bool,
    /// How many scopes the grant gives.
    pub scopes: usize,
    /// The contract hash.
    pub contract_hash: String,
    /// The grant hash.
    pub grant_hash: String,
}

impl GrantSummary {
    /// Summarises a verified grant.
    pub fn of(grant: &Grant) -> Self {
        let client = grant.contract().client().ok();
        let fold_b64 =
            |f: Result<protocol::anychain::Fold, _>| f.map(|f| f.to_b64()).unwrap_or_default();
        Self {
            user: grant.signer_b64(),
            client_name: client.and_then(|c| c.name()).map(str::to_owned),
            client_domain: client.and_then(|c| c.domain()).map(str::to_owned),
            date_ms: grant.date().and_then(Value::as_f64),
            revoked: grant.is_revoked(),
            scopes: grant.scopes().map(|s| s.len()).unwrap_or(0),
            contract_hash: fold_b64(grant.contract_hash()),
            grant_hash: fold_b64(grant.grant_hash()),
        }
    }
}

/// One file of a transfer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileState {
    /// Bytes held (the `Upload-Offset` a `HEAD` reports).
    pub size: u64,
    /// Whether a file finish was accepted (size and hash checked).
    pub complete: bool,
    /// BLAKE2b-512 of the file (URL-safe base64, no padding), once complete.
    pub blake2b: Option<String>,
    /// The total announced by `Content-Range`, when a chunk carried one.
    pub total: Option<u64>,
    /// Chunks accepted for this file.
    pub chunks: u64,
}

/// One transfer: the stored grant and what was received.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TransferState {
    /// The transfer id (the contract hash, or the grant hash with
    /// `--push-id grant`).
    pub id: String,
    /// The stored grant.
    pub grant: GrantSummary,
    /// Whether the stored grant is revoked (its data was wiped and chunks
    /// are refused).
    pub revoked: bool,
    /// Start requests received (each one wiped the data).
    pub starts: u64,
    /// Whether a transfer finish was accepted since the last start.
    pub finished: bool,
    /// Whether that finish listed the files and they were all checked
    /// (false for the reference's `[object Object]` or `{"finished":true}`).
    pub finish_verified: bool,
    /// The files received since the last start, by name.
    pub files: BTreeMap<String, FileState>,
}

/// Request counters (protocol requests only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Every protocol request.
    pub requests: u64,
    /// Start requests (`PUT {base}{id}`), whatever their answer.
    pub starts: u64,
    /// Chunk requests (`PUT {base}{id}/{file}`), whatever their answer.
    pub chunk_requests: u64,
    /// Chunks whose bytes were written.
    pub chunks: u64,
    /// Bytes of those chunks.
    pub chunk_bytes: u64,
    /// `HEAD` requests.
    pub heads: u64,
    /// File finish requests (`POST {base}{id}/{file}`).
    pub file_finishes: u64,
    /// Transfer finish requests (`POST {base}{id}`).
    pub transfer_finishes: u64,
    /// Answers made by a fault switch (`503` or dead `500`).
    pub injected_failures: u64,
    /// Connections closed without an answer by the drop fault.
    pub dropped: u64,
    /// `4xx` answers.
    pub rejected: u64,
}

#[derive(Debug, Default)]
pub(crate) struct AtomicCounters {
    pub(crate) requests: AtomicU64,
    pub(crate) starts: AtomicU64,
    pub(crate) chunk_requests: AtomicU64,
    pub(crate) chunks: AtomicU64,
    pub(crate) chunk_bytes: AtomicU64,
    pub(crate) heads: AtomicU64,
    pub(crate) file_finishes: AtomicU64,
    pub(crate) transfer_finishes: AtomicU64,
    pub(crate) injected_failures: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) rejected: AtomicU64,
}

/// Adds one to a counter.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl AtomicCounters {
    fn snapshot(&self) -> Counters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counters {
            requests: get(&self.requests),
            starts: get(&self.starts),
            chunk_requests: get(&self.chunk_requests),
            chunks: get(&self.chunks),
            chunk_bytes: get(&self.chunk_bytes),
            heads: get(&self.heads),
            file_finishes: get(&self.file_finishes),
            transfer_finishes: get(&self.transfer_finishes),
            injected_failures: get(&self.injected_failures),
            dropped: get(&self.dropped),
            rejected: get(&self.rejected),
        }
    }
}

/// One protocol request as the sink saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// `PUT`, `POST` or `HEAD`.
    pub method: String,
    /// The request path.
    pub path: String,
    /// The `Content-Type` header.
    pub content_type: Option<String>,
    /// The `Range` header.
    pub range: Option<String>,
    /// The `Content-Range` header.
    pub content_range: Option<String>,
    /// Body bytes received.
    pub body_len: u64,
    /// The answer's status; `0` when the connection was dropped instead.
    pub status: u16,
}

/// Settings fixed at start.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) dir: PathBuf,
    pub(crate) push_id: PushId,
    pub(crate) max_chunk: u64,
    pub(crate) any_client: bool,
    pub(crate) admin: Admin,
    pub(crate) limits: SinkLimits,
}

/// A transfer's lock and state.
#[derive(Debug)]
pub(crate) struct Slot {
    /// Held while the transfer's files are written, read or wiped.
    pub(crate) io: tokio::sync::Mutex<()>,
    state: Mutex<SlotState>,
}

#[derive(Debug)]
pub(crate) struct SlotState {
    pub(crate) grant: Grant,
    pub(crate) transfer: TransferState,
}

impl Slot {
    pub(crate) fn state(&self) -> MutexGuard<'_, SlotState> {
        lock(&self.state)
    }
}

/// Everything the handlers and the handle share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) settings: Settings,
    faults: Mutex<Faults>,
    pub(crate) counters: AtomicCounters,
    fault_seq: AtomicU64,
    drop_seq: AtomicU64,
    transfers: Mutex<BTreeMap<String, Arc<Slot>>>,
    log: Mutex<VecDeque<RequestRecord>>,
    client_keys: Mutex<BTreeSet<Vec<u8>>>,
    spool_seq: AtomicU64,
}

impl Shared {
    /// Opens (creating) the data directory and loads the transfers in it.
    pub(crate) fn open(
        settings: Settings,
        faults: Faults,
        client_keys: &[Vec<u8>],
    ) -> io::Result<Self> {
        fs::create_dir_all(&settings.dir)?;
        let spool = settings.dir.join(SPOOL_DIR);
        match fs::remove_dir_all(&spool) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        fs::create_dir_all(&spool)?;
        let mut transfers = BTreeMap::new();
        for entry in fs::read_dir(&settings.dir)? {
            let entry = entry?;
            let Some(id) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !is_safe_segment(&id) || !entry.file_type()?.is_dir() {
                continue;
            }
            match load_transfer(&settings.dir, &id) {
                Ok(Some(slot)) => {
                    transfers.insert(id, Arc::new(slot));
                }
                Ok(None) => {}
                Err(err) => tracing::warn!(id, error = %err, "ignoring an unreadable transfer"),
            }
        }
        Ok(Self {
            settings,
            faults: Mutex::new(faults),
            counters: AtomicCounters::default(),
            fault_seq: AtomicU64::new(0),
            drop_seq: AtomicU64::new(0),
            transfers: Mutex::new(transfers),
            log: Mutex::new(VecDeque::new()),
            client_keys: Mutex::new(client_keys.iter().cloned().collect()),
            spool_seq: AtomicU64::new(0),
        })
    }

    /// Adds a client key to those received for.
    pub(crate) fn trust_client(&self, key: &[u8]) {
        lock(&self.client_keys).insert(key.to_vec());
    }

    /// Whether contracts signed by `key` are received for.
    pub(crate) fn knows_client(&self, key: &[u8]) -> bool {
        self.settings.any_client || lock(&self.client_keys).contains(key)
    }

    /// A fresh path for a spooled body.
    pub(crate) fn spool_path(&self) -> PathBuf {
        let n = self.spool_seq.fetch_add(1, Ordering::Relaxed);
        self.settings.dir.join(SPOOL_DIR).join(n.to_string())
    }

    pub(crate) fn faults(&self) -> Faults {
        lock(&self.faults).clone()
    }

    pub(crate) fn set_faults(&self, faults: Faults) {
        let mut current = lock(&self.faults);
        *current = faults;
        self.fault_seq.store(0, Ordering::Relaxed);
        self.drop_seq.store(0, Ordering::Relaxed);
    }

    /// Whether this protocol request is the Nth one to fail.
    pub(crate) fn next_fails(&self, every: u64) -> bool {
        every > 0 && (self.fault_seq.fetch_add(1, Ordering::Relaxed) + 1) % every == 0
    }

    /// Whether this accepted chunk is the Nth one to drop.
    pub(crate) fn next_drops(&self, every: u64) -> bool {
        every > 0 && (self.drop_seq.fetch_add(1, Ordering::Relaxed) + 1) % every == 0
    }

    pub(crate) fn counters(&self) -> Counters {
        self.counters.snapshot()
    }

    pub(crate) fn slot(&self, id: &str) -> Option<Arc<Slot>> {
        lock(&self.transfers).get(id).cloned()
    }

    /// The slot of `id`, created with `grant` when missing; the boolean says
    /// whether it was created. `None` when it is missing and the sink holds
    /// its quota of transfers already.
    pub(crate) fn slot_or_insert(&self, id: &str, grant: &Grant) -> Option<(Arc<Slot>, bool)> {
        let mut transfers = lock(&self.transfers);
        if let Some(slot) = transfers.get(id) {
            return Some((slot.clone(), false));
        }
        if transfers.len() >= self.settings.limits.max_transfers {
            return None;
        }
        let slot = Arc::new(Slot {
            io: tokio::sync::Mutex::new(()),
            state: Mutex::new(SlotState {
                grant: grant.clone(),
                transfer: TransferState {
                    id: id.to_owned(),
                    grant: GrantSummary::of(grant),
                    revoked: grant.is_revoked(),
                    ..TransferState::default()
                },
            }),
        });
        transfers.insert(id.to_owned(), slot.clone());
        Some((slot, true))
    }

    pub(crate) fn transfers(&self) -> Vec<TransferState> {
        let slots: Vec<Arc<Slot>> = lock(&self.transfers).values().cloned().collect();
        slots.iter().map(|s| s.state().transfer.clone()).collect()
    }

    pub(crate) fn transfer(&self, id: &str) -> Option<TransferState> {
        self.slot(id).map(|s| s.state().transfer.clone())
    }

    pub(crate) fn record(&self, record: RequestRecord) {
        let mut log = lock(&self.log);
        if log.len() >= REQUEST_LOG_LEN {
            log.pop_front();
        }
        log.push_back(record);
    }

    pub(crate) fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.log).iter().cloned().collect()
    }

    pub(crate) fn clear_requests(&self) {
        lock(&self.log).clear();
    }

    pub(crate) fn transfer_dir(&self, id: &str) -> PathBuf {
        self.settings.dir.join(id)
    }

    pub(crate) fn data_dir(&self, id: &str) -> PathBuf {
        self.transfer_dir(id).join("data")
    }

    /// Path of a received file; `None` for names that are not one safe
    /// segment.
    pub(crate) fn file_path(&self, id: &str, file: &str) -> Option<PathBuf> {
        (is_safe_segment(id) && is_safe_segment(file)).then(|| self.data_dir(id).join(file))
    }
}

fn load_transfer(dir: &Path, id: &str) -> io::Result<Option<Slot>> {
    let tdir = dir.join(id);
    let token = match fs::read_to_string(tdir.join("grant")) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let grant = Grant::from_token(&token, &Limits::default())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let mut transfer: TransferState = match fs::read(tdir.join("state.json")) {
        Ok(bytes) => serde_json::from_slice(&bytes)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => TransferState::default(),
        Err(e) => return Err(e),
    };
    transfer.id = id.to_owned();
    transfer.grant = GrantSummary::of(&grant);
    transfer.revoked = grant.is_revoked();
    // The bytes on disk are the truth: sizes are re-read, and a file whose
    // size changed since it was finished is no longer complete.
    let mut files = BTreeMap::new();
    if let Ok(entries) = fs::read_dir(tdir.join("data")) {
        for entry in entries {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !is_safe_segment(&name) || !entry.file_type()?.is_file() {
                continue;
            }
            let size = entry.metadata()?.len();
            let mut file = transfer.files.remove(&name).unwrap_or_default();
            if file.size != size {
                file.complete = false;
                file.blake2b = None;
            }
            file.size = size;
            files.insert(name, file);
        }
    }
    transfer.files = files;
    Ok(Some(Slot {
        io: tokio::sync::Mutex::new(()),
        state: Mutex::new(SlotState { grant, transfer }),
    }))
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)
}

/// Saves a transfer's state (and, when given, its grant token).
pub(crate) fn persist(dir: &Path, state: &TransferState, token: Option<&str>) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    if let Some(token) = token {
        write_atomic(&dir.join("grant"), token.as_bytes())?;
    }
    let json = serde_json::to_vec_pretty(state)?;
    write_atomic(&dir.join("state.json"), &json)
}

/// Size and BLAKE2b-512 (URL-safe base64) of a file; `(0, hash of nothing)`
/// when it does not exist.
pub(crate) fn hash_file(path: &Path) -> io::Result<(u64, String)> {
    match protocol::wire::blake2b_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok((
            0,
            b64u_encode(blake2b_simd::State::new().finalize().as_bytes()),
        )),
        other => other,
    }
}
