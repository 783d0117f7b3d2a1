//! Extraction: from the dumps of a user to one zip archive per scope.
//!
//! [`build_archives`] is the entry point. For each scope it selects the
//! catalog paths ([`Catalog::paths_for`]), finds the dump entries of those
//! paths, keeps the records the scope's predicates match (projected on its
//! fields) and writes them, with the media that follow them, into a zip
//! named after the scope, stored at `{out_prefix}/{file}`.
//!
//! * **Dumps.** Zip parts are read through their central directory,
//!   streamed record by record (a few passes, never held in memory) after
//!   the end record's entry count was checked; tar and tar.gz parts in one
//!   streaming pass. Every limit counts all parts together. Reads go through
//!   [`Storage`]: the local file for `file://`, ranged GETs otherwise. All
//!   parts of an export are read together (a JSON file and its media may be
//!   in different parts).
//! * **Whole files.** A scope without predicates and with all fields takes
//!   its files whole; from a zip dump they are copied raw (no inflate, no
//!   deflate).
//! * **Media** follow their records: Google Photos media their sidecar
//!   (included when the sidecar record matches; a media file without
//!   sidecar is judged as the empty record), Assistant recordings and
//!   Facebook media the kept records that name them (when the projection
//!   keeps the naming field). Other binary files (vCard, mbox) are judged as
//!   the empty record.
//! * **Output.** Entries keep the dump's path; already-compressed formats are
//!   stored, text deflated; timestamps are fixed and entries sorted (up to
//!   65 536 entries; larger archives keep the dumps' order), then
//!   `manifest.json` (scope, sources, files with record counts, skipped
//!   files with reasons, path descriptions) — the same input gives the same
//!   bytes. Archives are built in temporary files and uploaded only when
//!   complete.
//! * **Hostile dumps.** Unsafe entry names, links, zip bombs and corrupt
//!   archives end the build with a typed [`ExtractError`]; a file that is not
//!   what the catalog expects is skipped and listed in the manifest.

pub use protocol::catalog;

mod archive;
mod error;
mod html;
mod records;
mod sidecar;
mod source;
mod zipfmt;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use flate2::read::MultiGzDecoder;
use protocol::anychain::{b64u_encode, Value};
use protocol::scope::{Fields, Scope};
use runtime::storage::{validate_key, Storage};
use serde_json::{json, Value as Json};
use tokio::io::AsyncReadExt;
use tokio::runtime::Handle;

pub use archive::{archive_names, MANIFEST};
pub use catalog::{
    ActivityHtmlWords, Catalog, CatalogError, CatalogPath, FileRule, ProviderCatalog, RecordFormat,
    TextEncoding, TimeField, TimeFormat,
};
pub use error::{ExtractError, Skipped, Unreadable};

use archive::{name_digest, EntrySink, OutEntry, Pending, ScopeArchive, TempFile};
use records::{Emitter, Matcher, RecError};
use sidecar::SidecarIndex;
use source::{check_name, limit_hit, CountingReader, RangeReader, Tally};
use zipfmt::{CdEntry, CentralDirectory, EndRecord};

/// One part of a provider's newest export, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpSource {
    /// The provider (`google`, `facebook`, `amazon`).
    pub provider: String,
    /// Its storage key.
    pub key: String,
    /// Its file name, e.g. `takeout-20250315T101112Z-001.zip`.
    pub name: String,
    /// Its size in bytes (checked against storage).
    pub size: u64,
    /// Its BLAKE2b-512 (written to manifests; not re-checked).
    pub blake2b: [u8; 64],
}

/// Bounds on what a dump may make the extraction do. Every count is over
/// all the parts of the dumps of a build together, never per part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Entries in all parts (zip: announced by the end records, checked
    /// before any entry is parsed; tar: entries seen). `ALIAS_MAX_ENTRIES`.
    pub max_entries: u64,
    /// Sum of the declared uncompressed sizes of the zip entries, and
    /// bytes actually inflated in the whole build. `ALIAS_MAX_UNCOMPRESSED`.
    pub max_total_uncompressed: u64,
    /// Largest compression ratio (uncompressed / compressed) of one zip
    /// entry, of all zip entries together (so that many small entries
    /// count), or of a gzip stream so far, … `ALIAS_MAX_RATIO`.
    pub max_ratio: u64,
    /// … checked once the uncompressed size passes this many bytes.
    pub ratio_min_size: u64,
    /// Largest JSON record (or NDJSON line) read into memory; a file with a
    /// larger one is skipped.
    pub max_record_bytes: usize,
    /// Largest archive uploaded; `None` for no limit.
    pub max_archive_bytes: Option<u64>,
    /// Wall-clock time a build may take; `None` for no limit.
    /// `ALIAS_JOB_TIMEOUT_SECS`.
    pub max_duration: Option<Duration>,
}

/// Default of [`Limits::max_entries`].
pub const DEFAULT_MAX_ENTRIES: u64 = 1_000_000;
/// Default of [`Limits::max_total_uncompressed`]: 256 GiB.
pub const DEFAULT_MAX_UNCOMPRESSED: u64 = 256 << 30;
/// Default of [`Limits::max_ratio`].
pub const DEFAULT_MAX_RATIO: u64 = 200;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entries: DEFAULT_MAX_ENTRIES,
            max_total_uncompressed: DEFAULT_MAX_UNCOMPRESSED,
            max_ratio: DEFAULT_MAX_RATIO,
            ratio_min_size: 64 << 10,
            max_record_bytes: 64 << 20,
            max_archive_bytes: None,
            // Under RabbitMQ's 30-minute consumer timeout: a build that
            // long fails instead of being redelivered.
            max_duration: Some(Duration::from_secs(1500)),
        }
    }
}

/// Where a build is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Dump bytes read from storage so far.
    pub bytes_read: u64,
    /// Total size of the dumps.
    pub bytes_total: u64,
    /// Dump entries handled so far.
    pub entries_done: u64,
}

/// A progress callback; called from a blocking thread, about every 200 ms.
pub type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

/// How to build.
#[derive(Clone)]
pub struct BuildOptions {
    /// Bounds on the dumps.
    pub limits: Limits,
    /// Directory of the temporary archives; the system's when `None`.
    pub temp_dir: Option<PathBuf>,
    /// Deflate level of text entries, 1–9.
    pub deflate_level: u32,
    /// Called with progress.
    pub progress: Option<ProgressFn>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            limits: Limits::default(),
            temp_dir: None,
            deflate_level: DEFAULT_DEFLATE_LEVEL,
            progress: None,
        }
    }
}

impl std::fmt::Debug for BuildOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuildOptions")
            .field("limits", &self.limits)
            .field("temp_dir", &self.temp_dir)
            .field("deflate_level", &self.deflate_level)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// Default deflate level of text entries (see the bench: level 6 costs
/// about twice the time of level 1 for a few percent of size).
pub const DEFAULT_DEFLATE_LEVEL: u32 = 6;

/// An archive built and stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltArchive {
    /// File name, `[A-Za-z0-9._-]`, unique in the build.
    pub file: String,
    /// The scope in display form.
    pub scope_display: String,
    /// Where it is stored: `{out_prefix}/{file}`.
    pub storage_key: String,
    /// Size in bytes.
    pub size: u64,
    /// BLAKE2b-512 of the archive.
    pub blake2b: [u8; 64],
    /// Records written (files taken whole are not counted).
    pub records: u64,
    /// Data files in the archive (the manifest excluded).
    pub files: u64,
    /// Files selected but left out, with the reason.
    pub skipped: Vec<Skipped>,
    /// Files the bank could not read, per catalog path: what the user is
    /// told on the transfer.
    pub unreadable: Vec<Unreadable>,
}

impl BuiltArchive {
    /// The hash in URL-safe base64 without padding.
    pub fn blake2b_b64(&self) -> String {
        b64u_encode(&self.blake2b)
    }
}

/// Sets the flag when dropped: a dropped build future stops its blocking
/// work.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Builds one archive per scope from `dumps` (all parts of the newest export
/// of each provider the scopes name) and stores them under `out_prefix`.
/// Returns the archives in scope order. The CPU and disk work runs in one
/// `spawn_blocking` task; dropping the future cancels it.
/// Past [`Limits::max_duration`] the build stops with
/// [`ExtractError::TimeLimit`].
pub async fn build_archives(
    storage: &Storage,
    catalog: &Catalog,
    dumps: &[DumpSource],
    scopes: &[Scope],
    out_prefix: &str,
    options: &BuildOptions,
) -> Result<Vec<BuiltArchive>, ExtractError> {
    let build = build_unbounded(storage, catalog, dumps, scopes, out_prefix, options);
    match options.limits.max_duration {
        None => build.await,
        Some(limit) => match tokio::time::timeout(limit, build).await {
            Ok(r) => r,
            // Dropping the build set its cancel flag: the blocking work
            // stops at its next entry and removes its temporary files.
            Err(_) => Err(ExtractError::TimeLimit {
                secs: limit.as_secs(),
            }),
        },
    }
}

async fn build_unbounded(
    storage: &Storage,
    catalog: &Catalog,
    dumps: &[DumpSource],
    scopes: &[Scope],
    out_prefix: &str,
    options: &BuildOptions,
) -> Result<Vec<BuiltArchive>, ExtractError> {
    validate_key(out_prefix)?;
    for d in dumps {
        validate_key(&d.key)?;
        let stored = storage
            .head(&d.key)
            .await?
            .ok_or_else(|| runtime::storage::StorageError::NotFound(d.key.clone()))?;
        if stored.size != d.size {
            return Err(ExtractError::DumpChanged {
                dump: d.name.clone(),
                expected: d.size,
                actual: stored.size,
            });
        }
    }
    let mut plans = Vec::with_capacity(scopes.len());
    for scope in scopes {
        let provider =
            catalog
                .provider(&scope.provider)
                .ok_or_else(|| ExtractError::UnknownProvider {
                    provider: scope.provider.clone(),
                })?;
        let paths = catalog.paths_for(scope);
        if paths.is_empty() {
            return Err(ExtractError::UnknownPath {
                scope: scope.display(),
                provider: scope.provider.clone(),
            });
        }
        if !dumps.iter().any(|d| d.provider == scope.provider) {
            return Err(ExtractError::NoDump {
                provider: scope.provider.clone(),
            });
        }
        plans.push((
            provider.clone(),
            paths.into_iter().cloned().collect::<Vec<_>>(),
        ));
    }
    let names = archive_names(scopes);
    let cancel = Arc::new(AtomicBool::new(false));
    let _guard = CancelOnDrop(cancel.clone());
    let work = Work {
        storage: storage.clone(),
        handle: Handle::current(),
        dumps: dumps.to_vec(),
        scopes: scopes.to_vec(),
        plans,
        names,
        options: options.clone(),
        cancel,
    };
    let built = tokio::task::spawn_blocking(move || work.run())
        .await
        .map_err(|e| ExtractError::Internal(format!("extraction task: {e}")))??;
    let mut out = Vec::with_capacity(built.len());
    for b in built {
        let key = format!("{out_prefix}/{}", b.file);
        let info = upload(
            storage,
            &key,
            b.temp.path(),
            options.limits.max_archive_bytes,
        )
        .await?;
        out.push(BuiltArchive {
            file: b.file,
            scope_display: b.scope_display,
            storage_key: key,
            size: info.size,
            blake2b: info.blake2b,
            records: b.records,
            files: b.files,
            skipped: b.skipped,
            unreadable: b.unreadable,
        });
    }
    Ok(out)
}

async fn upload(
    storage: &Storage,
    key: &str,
    path: &std::path::Path,
    max: Option<u64>,
) -> Result<runtime::storage::PutInfo, ExtractError> {
    let file = tokio::fs::File::open(path).await?;
    // Chunks read into fresh, uninitialised buffers (a zeroed 1 MiB
    // vector per chunk cost a memset of every byte uploaded).
    let stream = futures_util::stream::try_unfold(file, |mut f| async move {
        let mut buf = BytesMut::with_capacity(1 << 20);
        while buf.len() < buf.capacity() {
            if f.read_buf(&mut buf).await? == 0 {
                break;
            }
        }
        if buf.is_empty() {
            return Ok::<_, io::Error>(None);
        }
        Ok(Some((buf.freeze(), f)))
    });
    Ok(storage.put_stream(key, Box::pin(stream), max).await?)
}

/// An archive finished on local disk.
struct Finished {
    file: String,
    scope_display: String,
    temp: TempFile,
    records: u64,
    files: u64,
    skipped: Vec<Skipped>,
    unreadable: Vec<Unreadable>,
}

struct Work {
    storage: Storage,
    handle: Handle,
    dumps: Vec<DumpSource>,
    scopes: Vec<Scope>,
    plans: Vec<(ProviderCatalog, Vec<CatalogPath>)>,
    names: Vec<String>,
    options: BuildOptions,
    cancel: Arc<AtomicBool>,
}

/// The state of one scope during a build.
struct Job<'a> {
    scope: &'a Scope,
    paths: &'a [CatalogPath],
    encoding: TextEncoding,
    words: &'a ActivityHtmlWords,
    whole: bool,
    archive: Option<ScopeArchive>,
    skipped: Vec<Skipped>,
    /// Skips past [`MAX_LISTED_SKIPS`], counted only.
    skipped_more: u64,
    /// Record files read (name digests), and whether they kept a record.
    matched: HashMap<u64, bool>,
    refs_exact: HashSet<String>,
    refs_root: HashSet<String>,
    /// Sidecar candidates, per path index.
    sidecars: Vec<SidecarIndex>,
    /// What could not be read, per (path index, rule reason or format).
    unreadable: Vec<(usize, Unreadable)>,
}

impl Job<'_> {
    /// The (path, rule) an entry belongs to.
    fn classify(&self, name: &str) -> Option<(usize, usize)> {
        self.paths
            .iter()
            .enumerate()
            .find_map(|(pi, p)| p.rule_for(name).map(|(ri, _)| (pi, ri)))
    }

    fn rule(&self, pi: usize, ri: usize) -> Option<&FileRule> {
        self.paths.get(pi)?.files.get(ri)
    }

    /// Whether a record file is a sidecar candidate or names media, so that
    /// media decisions need it.
    fn is_decision_source(&self, pi: usize, ri: usize) -> bool {
        let Some(path) = self.paths.get(pi) else {
            return false;
        };
        let Some(rule) = path.files.get(ri) else {
            return false;
        };
        rule.format.has_records()
            && (!rule.references.is_empty() || path.files.iter().any(|r| r.sidecar.is_some()))
    }

    /// Notes a record entry as a possible sidecar of its path (a scope
    /// taken whole needs none).
    fn note_candidate(&mut self, pi: usize, ri: usize, name: &str) {
        if self.whole {
            return;
        }
        let is_sidecar_path = self
            .paths
            .get(pi)
            .is_some_and(|p| p.files.iter().any(|r| r.sidecar.is_some()));
        let records = self.rule(pi, ri).is_some_and(|r| r.format.has_records());
        if is_sidecar_path && records {
            if let Some(ix) = self.sidecars.get_mut(pi) {
                ix.add(name);
            }
        }
    }

    /// Whether a media entry of a binary rule is kept (all decisions known).
    fn keep_media(&self, pi: usize, ri: usize, name: &str) -> bool {
        let Some(rule) = self.rule(pi, ri) else {
            return false;
        };
        if let Some(sc) = &rule.sidecar {
            let found = self
                .sidecars
                .get(pi)
                .and_then(|ix| ix.find(name, &sc.edited_suffixes));
            return match found {
                Some(s) => self.matched.get(&s).copied().unwrap_or(false),
                None => records::empty_record_matches(self.scope),
            };
        }
        if rule.referenced {
            let lower = name.to_lowercase();
            if self.refs_exact.contains(&lower) || self.refs_root.contains(&lower) {
                return true;
            }
            return lower.match_indices('/').any(|(i, _)| {
                lower
                    .get(i + 1..)
                    .is_some_and(|s| self.refs_root.contains(s))
            });
        }
        records::empty_record_matches(self.scope)
    }

    /// Notes a file of path `pi` that could not be read; files of one path
    /// and reason are counted together.
    fn note_unreadable(&mut self, pi: usize, entry: &str, reason: &str) {
        if let Some((_, u)) = self
            .unreadable
            .iter_mut()
            .find(|(p, u)| *p == pi && u.reason == reason)
        {
            u.files += 1;
            return;
        }
        let catalog_path = self.paths.get(pi).map(|p| p.id.clone()).unwrap_or_default();
        self.unreadable.push((
            pi,
            Unreadable {
                catalog_path,
                files: 1,
                example: entry.to_owned(),
                reason: reason.to_owned(),
            },
        ));
    }

    fn skip(&mut self, dump: &str, entry: &str, pi: usize, reason: impl Into<String>) {
        if self.skipped.len() >= MAX_LISTED_SKIPS {
            self.skipped_more += 1;
            return;
        }
        let catalog_path = self.paths.get(pi).map(|p| p.id.clone()).unwrap_or_default();
        self.skipped.push(Skipped {
            dump: dump.to_owned(),
            entry: entry.to_owned(),
            catalog_path,
            reason: reason.into(),
        });
    }
}

/// Skipped files listed one by one in a manifest; more are only counted
/// (`skipped_more`), so that a dump of a million skipped files costs no
/// memory.
pub const MAX_LISTED_SKIPS: usize = 1000;

/// Shared counters and settings of a run.
struct Env<'a> {
    work: &'a Work,
    fetched: Arc<AtomicU64>,
    inflated: Arc<AtomicU64>,
    /// Entries of all parts so far (limit `max_entries`).
    entries_seen: u64,
    /// Declared uncompressed and compressed sizes of all zip entries.
    declared: u64,
    compressed: u64,
    bytes_total: u64,
    entries_done: u64,
    last_report: Instant,
    temp_dir: PathBuf,
}

impl Env<'_> {
    fn limits(&self) -> &Limits {
        &self.work.options.limits
    }

    fn check_cancel(&self) -> Result<(), ExtractError> {
        if self.work.cancel.load(Ordering::Relaxed) {
            Err(ExtractError::Cancelled)
        } else {
            Ok(())
        }
    }

    fn tick(&mut self, force: bool) {
        self.entries_done += 1;
        let Some(cb) = &self.work.options.progress else {
            return;
        };
        if force || self.last_report.elapsed() >= Duration::from_millis(200) {
            self.last_report = Instant::now();
            cb(Progress {
                bytes_read: self.fetched.load(Ordering::Relaxed),
                bytes_total: self.bytes_total,
                entries_done: self.entries_done,
            });
        }
    }
}

/// A write to a temporary archive failed (as opposed to reading a dump).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct WriteFailed(io::Error);

fn write_failed(e: io::Error) -> io::Error {
    io::Error::other(WriteFailed(e))
}

/// Maps an I/O error met while reading a dump entry.
fn read_error(dump: &str, e: io::Error) -> ExtractError {
    if let Some(reason) = limit_hit(&e) {
        return ExtractError::LimitExceeded {
            dump: dump.to_owned(),
            reason,
        };
    }
    if e.get_ref().is_some_and(|x| x.is::<WriteFailed>()) {
        let inner = e
            .into_inner()
            .and_then(|b| b.downcast::<WriteFailed>().ok())
            .map(|w| w.0)
            .unwrap_or_else(|| io::Error::other("write failed"));
        return ExtractError::Io(inner);
    }
    ExtractError::CorruptDump {
        dump: dump.to_owned(),
        reason: e.to_string(),
    }
}

/// A sink that marks its write errors as local ones.
struct MarkedSink<'a>(EntrySink<'a>);

impl records::Sink for MarkedSink<'_> {
    fn begin(&mut self) -> io::Result<()> {
        self.0.begin().map_err(write_failed)
    }
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.0.write(bytes).map_err(write_failed)
    }
}

/// The kinds of dump containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Zip,
    TarGz,
    Tar,
}

/// What a part's entry offers to the code that handles it.
trait EntryData {
    /// A reader of the uncompressed bytes.
    fn open(&mut self) -> io::Result<Box<dyn Read + '_>>;
    /// Copies the entry into an archive as it is; false when it cannot
    /// (not a zip), and the caller copies from [`EntryData::open`].
    fn raw_copy(&mut self, archive: &mut ScopeArchive, entry: &OutEntry) -> io::Result<bool>;
}

struct ZipEntryData<'a> {
    reader: &'a mut RangeReader,
    entry: &'a CdEntry,
    /// Where the part's central directory starts (entry data ends before).
    cd_offset: u64,
    limit: Arc<AtomicU64>,
    total_limit: u64,
}

impl<'a> ZipEntryData<'a> {
    /// Entry `entry` of a part read through `reader`, counted against the
    /// export's inflated bytes and limit.
    fn new(reader: &'a mut RangeReader, entry: &'a CdEntry, cd_offset: u64, env: &Env) -> Self {
        ZipEntryData {
            reader,
            entry,
            cd_offset,
            limit: env.inflated.clone(),
            total_limit: env.limits().max_total_uncompressed,
        }
    }
}

impl EntryData for ZipEntryData<'_> {
    fn open(&mut self) -> io::Result<Box<dyn Read + '_>> {
        let data = zipfmt::open_data(&mut *self.reader, self.entry, self.cd_offset)?;
        Ok(Box::new(CountingReader::new(
            data,
            self.entry.size,
            "entry larger than its declared size",
            self.limit.clone(),
            self.total_limit,
        )))
    }

    fn raw_copy(&mut self, archive: &mut ScopeArchive, entry: &OutEntry) -> io::Result<bool> {
        zipfmt::seek_data(&mut *self.reader, self.entry, self.cd_offset)?;
        archive.raw_copy(&mut *self.reader, self.entry, entry.clone())?;
        Ok(true)
    }
}

/// A zip part whose end record and central directory were checked.
struct ZipPart<'d> {
    d: &'d DumpSource,
    end: EndRecord,
}

/// One entry of a pass over a zip part's central directory.
struct PassEntry {
    /// Position in the central directory.
    index: u64,
    /// The normalised name.
    name: String,
    cd: CdEntry,
}

/// A streamed entry: read once, or spooled for several scopes.
enum Spool<'a> {
    Stream(Option<&'a mut dyn Read>),
    Memory(Arc<Vec<u8>>),
    File(TempFile),
}

impl EntryData for Spool<'_> {
    fn open(&mut self) -> io::Result<Box<dyn Read + '_>> {
        match self {
            Spool::Stream(r) => r
                .take()
                .map(|r| Box::new(r) as Box<dyn Read + '_>)
                .ok_or_else(|| io::Error::other("entry already read")),
            Spool::Memory(v) => Ok(Box::new(io::Cursor::new(v.as_slice()))),
            Spool::File(t) => Ok(Box::new(BufReader::new(File::open(t.path())?))),
        }
    }

    fn raw_copy(&mut self, _: &mut ScopeArchive, _: &OutEntry) -> io::Result<bool> {
        Ok(false)
    }
}

impl Work {
    fn run(self) -> Result<Vec<Finished>, ExtractError> {
        let temp_dir = self
            .options
            .temp_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir);
        let mut env = Env {
            work: &self,
            fetched: Arc::new(AtomicU64::new(0)),
            inflated: Arc::new(AtomicU64::new(0)),
            entries_seen: 0,
            declared: 0,
            compressed: 0,
            bytes_total: self.dumps.iter().map(|d| d.size).sum(),
            entries_done: 0,
            last_report: Instant::now(),
            temp_dir: temp_dir.clone(),
        };
        let mut jobs = Vec::with_capacity(self.scopes.len());
        for ((scope, (provider, paths)), name) in
            self.scopes.iter().zip(&self.plans).zip(&self.names)
        {
            jobs.push(Job {
                scope,
                paths: paths.as_slice(),
                encoding: provider.text_encoding,
                words: &provider.activity_html,
                whole: scope.predicates.is_empty() && scope.fields == Fields::All,
                archive: Some(ScopeArchive::new(
                    &temp_dir,
                    name,
                    self.options.deflate_level,
                )?),
                skipped: Vec::new(),
                skipped_more: 0,
                matched: HashMap::new(),
                refs_exact: HashSet::new(),
                refs_root: HashSet::new(),
                sidecars: paths.iter().map(|_| SidecarIndex::default()).collect(),
                unreadable: Vec::new(),
            });
        }
        // Providers in name order, parts in name order.
        let mut by_provider: BTreeMap<&str, Vec<&DumpSource>> = BTreeMap::new();
        for d in &self.dumps {
            by_provider.entry(d.provider.as_str()).or_default().push(d);
        }
        for (provider, mut parts) in by_provider {
            parts.sort_by(|a, b| a.name.cmp(&b.name));
            let mut group: Vec<&mut Job<'_>> = jobs
                .iter_mut()
                .filter(|j| j.scope.provider == provider)
                .collect();
            if group.is_empty() {
                continue;
            }
            let kinds = parts
                .iter()
                .map(|p| self.sniff(p))
                .collect::<Result<Vec<_>, _>>()?;
            if kinds.iter().all(|k| *k == Kind::Zip) {
                self.zip_export(&mut env, &parts, &mut group)?;
            } else {
                for (part, kind) in parts.iter().zip(&kinds) {
                    match kind {
                        Kind::Zip => self.zip_streamed(&mut env, part, &mut group)?,
                        Kind::TarGz | Kind::Tar => {
                            self.tar_part(&mut env, part, *kind, &mut group)?
                        }
                    }
                }
            }
        }
        env.tick(true);
        let mut out = Vec::with_capacity(jobs.len());
        for mut job in jobs {
            out.push(self.finish(&mut job)?);
        }
        Ok(out)
    }

    fn reader(&self, env: &Env<'_>, d: &DumpSource) -> Result<RangeReader, ExtractError> {
        RangeReader::open(
            &self.storage,
            &d.key,
            d.size,
            self.handle.clone(),
            env.fetched.clone(),
        )
        .map_err(ExtractError::Io)
    }

    fn sniff(&self, d: &DumpSource) -> Result<Kind, ExtractError> {
        let head = self
            .handle
            .block_on(self.storage.get_range(&d.key, 0..512))?;
        if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
            Ok(Kind::Zip)
        } else if head.starts_with(&[0x1f, 0x8b]) {
            Ok(Kind::TarGz)
        } else if head.get(257..262) == Some(b"ustar".as_slice()) {
            Ok(Kind::Tar)
        } else {
            Err(ExtractError::UnsupportedDump {
                dump: d.name.clone(),
                reason: "neither a zip nor a (gzip-compressed) tar".into(),
            })
        }
    }

    /// Opens a zip part: reads its end record, refuses it when the entries
    /// it announces pass `max_entries` (with those of the parts before it)
    /// before any entry is parsed, then checks every entry in one streaming
    /// pass: names, links, ratios, declared sizes (all parts together),
    /// overlaps; duplicate names (across parts) go to `dups`.
    fn open_zip<'d>(
        &self,
        env: &mut Env<'_>,
        d: &'d DumpSource,
        part: usize,
        first: &mut HashSet<u64>,
        dups: &mut HashSet<(usize, u64)>,
    ) -> Result<ZipPart<'d>, ExtractError> {
        let corrupt = |reason: String| ExtractError::CorruptDump {
            dump: d.name.clone(),
            reason,
        };
        let limit_hit = |reason: String| ExtractError::LimitExceeded {
            dump: d.name.clone(),
            reason,
        };
        let limits = env.limits().clone();
        let mut data = self.reader(env, d)?;
        let end = zipfmt::read_end(&mut data, d.size).map_err(|e| read_error(&d.name, e))?;
        env.entries_seen = env.entries_seen.saturating_add(end.entries);
        if env.entries_seen > limits.max_entries {
            return Err(limit_hit(format!(
                "{} entries in the export, more than the limit of {} (ALIAS_MAX_ENTRIES)",
                env.entries_seen, limits.max_entries
            )));
        }
        let zp = ZipPart { d, end };
        // Spans in directory order; sorted only when that order is not
        // the physical one.
        let mut last_span = (0u64, 0u64);
        let mut unordered: Option<Vec<(u64, u64)>> = None;
        self.each_entry(env, &zp, |env, e| {
            let unsafe_entry = |reason: &'static str| ExtractError::UnsafeEntry {
                dump: d.name.clone(),
                entry: error::shown(&e.cd.name),
                reason,
            };
            if e.cd.is_symlink() {
                return Err(unsafe_entry("symbolic link"));
            }
            let (size, csize) = (e.cd.size, e.cd.csize);
            env.declared = env.declared.saturating_add(size);
            env.compressed = env.compressed.saturating_add(csize);
            if size > limits.ratio_min_size && size / csize.max(1) > limits.max_ratio {
                return Err(limit_hit(format!(
                    "entry {:?} expands {size} / {csize} bytes, past the ratio limit {} (ALIAS_MAX_RATIO; a zip bomb?)",
                    error::shown(&e.name),
                    limits.max_ratio
                )));
            }
            let span = e.cd.min_span();
            if span.1 > end.cd_offset {
                return Err(corrupt(format!(
                    "entry {:?} runs into the central directory",
                    error::shown(&e.name)
                )));
            }
            match unordered.as_mut() {
                Some(spans) => spans.push(span),
                None if span.0 >= last_span.1 => last_span = span,
                None if span.0 < last_span.0 => {
                    // Not in physical order: collect and sort at the end
                    // (the directory is read again for that).
                    unordered = Some(Vec::new());
                }
                None => {
                    return Err(limit_hit("entries overlap (a zip bomb's trick)".into()));
                }
            }
            if !first.insert(name_digest(&e.name)) {
                dups.insert((part, e.index));
            }
            Ok(())
        })?;
        if unordered.is_some() {
            let mut spans = Vec::new();
            self.each_entry(env, &zp, |_, e| {
                spans.push(e.cd.min_span());
                Ok(())
            })?;
            spans.sort_unstable();
            if spans.windows(2).any(|w| matches!(w, [a, b] if b.0 < a.1)) {
                return Err(limit_hit("entries overlap (a zip bomb's trick)".into()));
            }
        }
        if env.declared > limits.max_total_uncompressed {
            return Err(limit_hit(format!(
                "declared uncompressed size {} exceeds {} (ALIAS_MAX_UNCOMPRESSED)",
                env.declared, limits.max_total_uncompressed
            )));
        }
        if env.declared > limits.ratio_min_size
            && env.declared / env.compressed.max(1) > limits.max_ratio
        {
            return Err(limit_hit(format!(
                "the entries together expand {} / {} bytes, past the ratio limit {} (ALIAS_MAX_RATIO; many small compressed entries?)",
                env.declared, env.compressed, limits.max_ratio
            )));
        }
        Ok(zp)
    }

    /// One streaming pass over a zip part's central directory: calls `f`
    /// with each file entry (directories left out), its name checked.
    fn each_entry(
        &self,
        env: &mut Env<'_>,
        zp: &ZipPart<'_>,
        mut f: impl FnMut(&mut Env<'_>, PassEntry) -> Result<(), ExtractError>,
    ) -> Result<(), ExtractError> {
        let d = zp.d;
        // Directory reads are not counted as progress (they are read
        // once per pass).
        let reader = RangeReader::open(
            &self.storage,
            &d.key,
            d.size,
            self.handle.clone(),
            Arc::new(AtomicU64::new(0)),
        )
        .map_err(ExtractError::Io)?;
        let mut cd = CentralDirectory::new(reader, zp.end).map_err(|e| read_error(&d.name, e))?;
        let mut index = 0u64;
        while let Some(entry) = cd.next_entry().map_err(|e| read_error(&d.name, e))? {
            env.check_cancel()?;
            index += 1;
            let (name, is_dir) =
                check_name(&entry.name).map_err(|reason| ExtractError::UnsafeEntry {
                    dump: d.name.clone(),
                    entry: error::shown(&entry.name),
                    reason,
                })?;
            if is_dir {
                continue;
            }
            f(
                env,
                PassEntry {
                    index: index - 1,
                    name,
                    cd: entry,
                },
            )?;
        }
        Ok(())
    }

    /// An export whose parts are all zips: media decisions first, then one
    /// pass in the order of each part's central directory. Nothing per
    /// entry is kept in memory but the digests of the names (duplicates),
    /// and what filtered scopes need to decide on media.
    fn zip_export(
        &self,
        env: &mut Env<'_>,
        parts: &[&DumpSource],
        jobs: &mut [&mut Job<'_>],
    ) -> Result<(), ExtractError> {
        let mut opened = Vec::with_capacity(parts.len());
        let mut dups: HashSet<(usize, u64)> = HashSet::new();
        {
            // First occurrence of each name wins.
            let mut first: HashSet<u64> = HashSet::new();
            for (p, d) in parts.iter().enumerate() {
                opened.push(self.open_zip(env, d, p, &mut first, &mut dups)?);
            }
        }
        let filtered = jobs.iter().any(|j| !j.whole);
        if filtered {
            // Sidecar candidates and decisions.
            for zp in &opened {
                self.each_entry(env, zp, |_, e| {
                    for job in jobs.iter_mut() {
                        if let Some((pi, ri)) = job.classify(&e.name) {
                            job.note_candidate(pi, ri, &e.name);
                        }
                    }
                    Ok(())
                })?;
            }
            for (p, zp) in opened.iter().enumerate() {
                let (d, cd_offset) = (zp.d, zp.end.cd_offset);
                let mut data = self.reader(env, d)?;
                self.each_entry(env, zp, |env, e| {
                    if dups.contains(&(p, e.index)) || e.cd.encrypted() {
                        return Ok(());
                    }
                    for job in jobs.iter_mut() {
                        if job.whole {
                            continue;
                        }
                        let Some((pi, ri)) = job.classify(&e.name) else {
                            continue;
                        };
                        if !job.is_decision_source(pi, ri) {
                            continue;
                        }
                        let mut entry = ZipEntryData::new(&mut data, &e.cd, cd_offset, env);
                        self.filter_entry(
                            env, job, d, &e.name, e.cd.size, pi, ri, &mut entry, false,
                        )?;
                    }
                    Ok(())
                })?;
            }
        }
        // Output.
        for (p, zp) in opened.iter().enumerate() {
            let (d, cd_offset) = (zp.d, zp.end.cd_offset);
            let mut data = self.reader(env, d)?;
            self.each_entry(env, zp, |env, e| {
                for job in jobs.iter_mut() {
                    let Some((pi, ri)) = job.classify(&e.name) else {
                        continue;
                    };
                    if dups.contains(&(p, e.index)) {
                        job.skip(
                            &d.name,
                            &e.name,
                            pi,
                            "duplicate of an entry of the same name",
                        );
                        continue;
                    }
                    if e.cd.encrypted() {
                        job.skip(&d.name, &e.name, pi, "encrypted entry");
                        continue;
                    }
                    let mut entry = ZipEntryData::new(&mut data, &e.cd, cd_offset, env);
                    self.handle_entry(env, job, d, &e.name, e.cd.size, pi, ri, &mut entry, true)?;
                }
                env.tick(false);
                Ok(())
            })?;
        }
        Ok(())
    }

    /// A zip part in an export that also has tar parts: read in directory
    /// order, media decided at the end.
    fn zip_streamed(
        &self,
        env: &mut Env<'_>,
        d: &DumpSource,
        jobs: &mut [&mut Job<'_>],
    ) -> Result<(), ExtractError> {
        let mut dups = HashSet::new();
        let zp = {
            let mut first = HashSet::new();
            self.open_zip(env, d, 0, &mut first, &mut dups)?
        };
        let cd_offset = zp.end.cd_offset;
        let mut data = self.reader(env, d)?;
        self.each_entry(env, &zp, |env, e| {
            for job in jobs.iter_mut() {
                let Some((pi, ri)) = job.classify(&e.name) else {
                    continue;
                };
                job.note_candidate(pi, ri, &e.name);
                if e.cd.encrypted() {
                    job.skip(&d.name, &e.name, pi, "encrypted entry");
                    continue;
                }
                let mut entry = ZipEntryData::new(&mut data, &e.cd, cd_offset, env);
                self.handle_entry(env, job, d, &e.name, e.cd.size, pi, ri, &mut entry, false)?;
            }
            env.tick(false);
            Ok(())
        })?;
        Ok(())
    }

    /// Writes one selected entry into one scope's archive.
    #[allow(clippy::too_many_arguments)]
    fn handle_entry(
        &self,
        env: &mut Env<'_>,
        job: &mut Job<'_>,
        d: &DumpSource,
        name: &str,
        size: u64,
        pi: usize,
        ri: usize,
        data: &mut dyn EntryData,
        decided: bool,
    ) -> Result<(), ExtractError> {
        let Some(rule) = job.rule(pi, ri) else {
            return Ok(());
        };
        let format = rule.format;
        if format == RecordFormat::Unreadable {
            let reason = rule.reason.clone().unwrap_or_default();
            job.note_unreadable(pi, name, &reason);
            job.skip(&d.name, name, pi, reason);
            return Ok(());
        }
        let linked = rule.sidecar.is_some() || rule.referenced;
        let catalog_path = job.paths.get(pi).map(|p| p.id.clone()).unwrap_or_default();
        if job
            .archive
            .as_ref()
            .is_some_and(|a| a.has(&out_name(name, format)))
        {
            job.skip(&d.name, name, pi, "duplicate of an entry of the same name");
            return Ok(());
        }
        let entry = OutEntry {
            name: name.to_owned(),
            catalog_path,
            dump: d.name.clone(),
            records: None,
            size,
            pending: None,
            source_format: None,
        };
        let whole = if job.whole && !format.converted() {
            true
        } else if format.has_records() {
            false
        } else if linked && !decided {
            // Kept for now; decided when every record has been read.
            let entry = OutEntry {
                pending: Some(Pending { path: pi, rule: ri }),
                ..entry
            };
            return self.copy_whole(job, d, data, entry, size);
        } else if job.keep_media(pi, ri, name) {
            true
        } else {
            if !linked {
                job.skip(
                    &d.name,
                    name,
                    pi,
                    "not a record file: the scope's predicates exclude it",
                );
            }
            return Ok(());
        };
        if whole {
            return self.copy_whole(job, d, data, entry, size);
        }
        if decided && job.matched.get(&name_digest(name)) == Some(&false) {
            return Ok(());
        }
        self.filter_entry(env, job, d, name, size, pi, ri, data, true)
    }

    fn copy_whole(
        &self,
        job: &mut Job<'_>,
        d: &DumpSource,
        data: &mut dyn EntryData,
        entry: OutEntry,
        size: u64,
    ) -> Result<(), ExtractError> {
        let Some(archive) = job.archive.as_mut() else {
            return Ok(());
        };
        if data
            .raw_copy(archive, &entry)
            .map_err(|e| read_error(&d.name, e))?
        {
            return Ok(());
        }
        let mut r = data.open().map_err(|e| read_error(&d.name, e))?;
        let mut marked = ReadMarked(&mut r);
        archive
            .copy_whole(&mut marked, entry, size > (3 << 30))
            .map_err(|e| {
                if e.get_ref().is_some_and(|x| x.is::<ReadFailed>()) {
                    let inner = e
                        .into_inner()
                        .and_then(|b| b.downcast::<ReadFailed>().ok())
                        .map(|r| r.0)
                        .unwrap_or_else(|| io::Error::other("read failed"));
                    read_error(&d.name, inner)
                } else {
                    ExtractError::Io(e)
                }
            })?;
        Ok(())
    }

    /// Reads a record file for one scope: writes the kept records when
    /// `write`, else only notes the decisions (matched, references).
    #[allow(clippy::too_many_arguments)]
    fn filter_entry(
        &self,
        env: &mut Env<'_>,
        job: &mut Job<'_>,
        d: &DumpSource,
        name: &str,
        size: u64,
        pi: usize,
        ri: usize,
        data: &mut dyn EntryData,
        write: bool,
    ) -> Result<(), ExtractError> {
        let paths = job.paths;
        let Some(rule) = paths.get(pi).and_then(|p| p.files.get(ri)) else {
            return Ok(());
        };
        let catalog_path = paths.get(pi).map(|p| p.id.clone()).unwrap_or_default();
        let mut matcher = Matcher::new(
            job.scope,
            rule,
            job.encoding,
            name,
            env.limits().max_record_bytes,
        )
        .with_words(job.words);
        let converted = rule.format.converted().then(|| rule.format.as_str());
        let reader = data.open().map_err(|e| read_error(&d.name, e))?;
        let reader = BufReader::with_capacity(256 << 10, reader);
        let mut archive = job.archive.take();
        let result;
        let (records, started);
        {
            let mut sink = archive.as_mut().filter(|_| write).map(|a| {
                MarkedSink(EntrySink {
                    archive: a,
                    entry: Some(OutEntry {
                        name: out_name(name, rule.format),
                        catalog_path,
                        dump: d.name.clone(),
                        records: None,
                        size: 0,
                        pending: None,
                        source_format: converted.map(|f| (name.to_owned(), f.to_owned())),
                    }),
                    large: size > (3 << 30),
                })
            });
            let mut em = Emitter::new(sink.as_mut().map(|s| s as &mut dyn records::Sink));
            result = records::filter(rule.format, reader, &mut matcher, &mut em);
            records = em.records;
            started = em.started();
        }
        let outcome = match result {
            Ok(()) => {
                if started && write {
                    if let Some(a) = archive.as_mut() {
                        a.end(Some(records)).map_err(ExtractError::Io)?;
                    }
                }
                job.matched.insert(name_digest(name), records > 0);
                job.refs_exact.extend(matcher.refs_exact);
                job.refs_root.extend(matcher.refs_root);
                Ok(())
            }
            Err(RecError::Format(reason)) => {
                if started && write {
                    if let Some(a) = archive.as_mut() {
                        a.abort()?;
                    }
                }
                job.matched.insert(name_digest(name), false);
                if write {
                    let reason = format!(
                        "not the {} the catalog expects: {reason}",
                        rule.format.as_str()
                    );
                    if rule.format.converted() {
                        // Nothing of the file reaches the client: told.
                        job.note_unreadable(pi, name, &reason);
                    }
                    job.skip(&d.name, name, pi, reason);
                }
                Ok(())
            }
            Err(RecError::Io(e)) => Err(read_error(&d.name, e)),
        };
        job.archive = archive;
        let _ = env;
        outcome
    }

    /// A tar or tar.gz part, in one pass.
    fn tar_part(
        &self,
        env: &mut Env<'_>,
        d: &DumpSource,
        kind: Kind,
        jobs: &mut [&mut Job<'_>],
    ) -> Result<(), ExtractError> {
        let limits = env.limits().clone();
        let compressed = Arc::new(AtomicU64::new(0));
        let tally = Tally {
            inner: BufReader::with_capacity(1 << 20, self.reader(env, d)?),
            count: compressed.clone(),
        };
        let stream: Box<dyn Read> = match kind {
            Kind::TarGz => Box::new(MultiGzDecoder::new(tally)),
            _ => Box::new(tally),
        };
        let guarded = RatioGuard {
            inner: stream,
            compressed,
            inflated: 0,
            total: env.inflated.clone(),
            limits: limits.clone(),
        };
        let mut ar = tar::Archive::new(guarded);
        let corrupt = |e: io::Error| read_error(&d.name, e);
        let entries = ar.entries().map_err(corrupt)?.raw(true);
        let mut long_name: Option<Vec<u8>> = None;
        let mut pax_path: Option<Vec<u8>> = None;
        let mut pax_size: Option<u64> = None;
        let mut names_seen: HashSet<u64> = HashSet::new();
        for entry in entries {
            env.check_cancel()?;
            let mut entry = entry.map_err(corrupt)?;
            env.entries_seen += 1;
            if env.entries_seen > limits.max_entries {
                return Err(ExtractError::LimitExceeded {
                    dump: d.name.clone(),
                    reason: format!(
                        "more than {} entries in the export (ALIAS_MAX_ENTRIES)",
                        limits.max_entries
                    ),
                });
            }
            let header = entry.header().clone();
            let kind_byte = header.entry_type();
            let unsafe_entry = |name: &str, reason: &'static str| ExtractError::UnsafeEntry {
                dump: d.name.clone(),
                entry: error::shown(name),
                reason,
            };
            if kind_byte.is_gnu_longname() || kind_byte.is_pax_local_extensions() {
                let mut buf = Vec::new();
                (&mut entry)
                    .take(1 << 20)
                    .read_to_end(&mut buf)
                    .map_err(corrupt)?;
                if entry.header().entry_size().unwrap_or(0) > 1 << 20 {
                    return Err(unsafe_entry("", "tar extension header larger than 1 MiB"));
                }
                if kind_byte.is_gnu_longname() {
                    while buf.last() == Some(&0) {
                        buf.pop();
                    }
                    long_name = Some(buf);
                } else {
                    for (k, v) in pax_records(&buf) {
                        match k.as_slice() {
                            b"path" => pax_path = Some(v),
                            b"size" => {
                                pax_size = std::str::from_utf8(&v).ok().and_then(|s| s.parse().ok())
                            }
                            _ => {}
                        }
                    }
                }
                continue;
            }
            if kind_byte.is_gnu_longlink() || kind_byte.is_pax_global_extensions() {
                io::copy(&mut (&mut entry).take(1 << 20), &mut io::sink()).map_err(corrupt)?;
                continue;
            }
            let raw_name = pax_path
                .take()
                .or_else(|| long_name.take())
                .unwrap_or_else(|| header.path_bytes().into_owned());
            let declared_pax = pax_size.take();
            let raw_name = String::from_utf8(raw_name)
                .map_err(|_| unsafe_entry("<not UTF-8>", "entry name is not UTF-8"))?;
            if kind_byte.is_symlink() {
                return Err(unsafe_entry(&raw_name, "symbolic link"));
            }
            if kind_byte.is_hard_link() {
                return Err(unsafe_entry(&raw_name, "hard link"));
            }
            let (name, is_dir) = check_name(&raw_name).map_err(|r| unsafe_entry(&raw_name, r))?;
            if kind_byte.is_dir() || is_dir {
                continue;
            }
            if !(kind_byte.is_file() || kind_byte.is_contiguous()) {
                return Err(unsafe_entry(
                    &raw_name,
                    "special file (device, fifo or sparse)",
                ));
            }
            let size = header.entry_size().map_err(corrupt)?;
            if declared_pax.is_some_and(|s| s != size) {
                return Err(ExtractError::UnsupportedDump {
                    dump: d.name.clone(),
                    reason: format!("entry {:?} has a pax size override", error::shown(&name)),
                });
            }
            let duplicate = !names_seen.insert(name_digest(&name));
            let mut consumers: Vec<(usize, usize, usize)> = Vec::new();
            for (j, job) in jobs.iter_mut().enumerate() {
                if let Some((pi, ri)) = job.classify(&name) {
                    if duplicate {
                        job.skip(&d.name, &name, pi, "duplicate of an entry of the same name");
                        continue;
                    }
                    job.note_candidate(pi, ri, &name);
                    consumers.push((j, pi, ri));
                }
            }
            if consumers.len() == 1 {
                let mut reader: &mut dyn Read = &mut entry;
                let mut data = Spool::Stream(Some(&mut reader));
                for (j, pi, ri) in consumers {
                    if let Some(job) = jobs.get_mut(j) {
                        self.handle_entry(env, job, d, &name, size, pi, ri, &mut data, false)?;
                    }
                }
            } else if !consumers.is_empty() {
                let mut data = if size <= 16 << 20 {
                    let mut v = Vec::with_capacity(size as usize);
                    entry.read_to_end(&mut v).map_err(corrupt)?;
                    Spool::Memory(Arc::new(v))
                } else {
                    let (t, mut f) = TempFile::create(&env.temp_dir, "spool")?;
                    io::copy(&mut entry, &mut ReadMarkedWrite(&mut f)).map_err(|e| {
                        if e.get_ref().is_some_and(|x| x.is::<WriteFailed>()) {
                            read_error(&d.name, e)
                        } else {
                            corrupt(e)
                        }
                    })?;
                    f.flush()?;
                    Spool::File(t)
                };
                for (j, pi, ri) in consumers {
                    if let Some(job) = jobs.get_mut(j) {
                        self.handle_entry(env, job, d, &name, size, pi, ri, &mut data, false)?;
                    }
                }
            }
            env.tick(false);
        }
        Ok(())
    }

    /// Finishes a scope archive: pending media decided, manifest written.
    fn finish(&self, job: &mut Job<'_>) -> Result<Finished, ExtractError> {
        let Some(archive) = job.archive.take() else {
            return Err(ExtractError::Internal("archive finished twice".into()));
        };
        let file = archive.file.clone();
        let job_ref: &Job<'_> = job;
        let keep = |e: &OutEntry| match e.pending {
            Some(p) => job_ref.keep_media(p.path, p.rule, &e.name),
            None => true,
        };
        let head = self.manifest_head(job_ref);
        let (temp, totals) = archive
            .finish(keep, &head)
            .map_err(|e| ExtractError::Archive {
                file: file.clone(),
                reason: e.to_string(),
            })?;
        Ok(Finished {
            file,
            scope_display: job.scope.display(),
            temp,
            records: totals.records,
            files: totals.files,
            skipped: job.skipped.clone(),
            unreadable: job.unreadable.iter().map(|(_, u)| u.clone()).collect(),
        })
    }

    /// The manifest's fields but `files` and `records` (the archive
    /// streams those from its log).
    fn manifest_head(&self, job: &Job<'_>) -> serde_json::Map<String, Json> {
        let sources: Vec<Json> = self
            .dumps
            .iter()
            .filter(|d| d.provider == job.scope.provider)
            .map(|d| json!({"name": d.name, "size": d.size, "blake2b": b64u_encode(&d.blake2b)}))
            .collect();
        let paths: Vec<Json> = job
            .paths
            .iter()
            .map(|p| json!({"path": p.id, "description": p.description}))
            .collect();
        let mut notes = Vec::new();
        if job.encoding == TextEncoding::FacebookMojibake {
            notes.push("Strings are as Facebook writes them: every UTF-8 byte escaped as \\u00XX (decode each string as latin-1 bytes, then UTF-8). Predicates were matched on the repaired text.");
        }
        if !job.whole {
            notes.push("Filtered files hold the kept records, byte for byte unless projected; files with no kept record are left out.");
        }
        if job
            .paths
            .iter()
            .any(|p| p.files.iter().any(|r| r.format.converted()))
        {
            notes.push("Records read from Google's HTML My Activity are written as a JSON array of records in Google's JSON shape, in a file named as the HTML one with .json (source_entry and source_format in files say so); description, activityControls and media are not in the HTML.");
        }
        let m = json!({
            "format": "alias-bank.scope-archive/1",
            "scope": scope_json(job.scope),
            "scope_display": job.scope.display(),
            "provider": job.scope.provider,
            "paths": paths,
            "sources": sources,
            "skipped": job.skipped,
            "skipped_more": job.skipped_more,
            "unreadable": job.unreadable.iter().map(|(_, u)| u).collect::<Vec<_>>(),
            "notes": notes,
        });
        match m {
            Json::Object(map) => map,
            _ => serde_json::Map::new(),
        }
    }
}

/// The archive path of a dump entry: records converted from another form
/// (HTML) are JSON, named with `.json` instead of `.html`.
fn out_name(name: &str, format: RecordFormat) -> String {
    if !format.converted() {
        return name.to_owned();
    }
    let lower = name.to_ascii_lowercase();
    let stem = [".html", ".htm"]
        .iter()
        .find(|x| lower.ends_with(*x))
        .and_then(|x| name.get(..name.len() - x.len()))
        .unwrap_or(name);
    format!("{stem}.json")
}

/// The object form of a scope as plain JSON.
fn scope_json(scope: &Scope) -> Json {
    fn plain(v: &Value) -> Json {
        match v {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Number(n) => serde_json::Number::from_f64(*n).map_or(Json::Null, Json::Number),
            Value::String(s) => Json::String(s.clone()),
            Value::List(items) => Json::Array(items.iter().map(plain).collect()),
            Value::Dict(d) => {
                Json::Object(d.iter().map(|(k, v)| (k.to_owned(), plain(v))).collect())
            }
            _ => Json::Null,
        }
    }
    plain(&scope.to_value())
}

/// `len key=value\n` records of a pax extended header.
fn pax_records(buf: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    let mut rest = buf;
    while !rest.is_empty() {
        let Some(sp) = rest.iter().position(|b| *b == b' ') else {
            break;
        };
        let Some(len) = std::str::from_utf8(rest.get(..sp).unwrap_or_default())
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
        else {
            break;
        };
        let Some(record) = rest.get(sp + 1..len) else {
            break;
        };
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(eq) = record.iter().position(|b| *b == b'=') {
            out.push((
                record.get(..eq).unwrap_or_default().to_vec(),
                record.get(eq + 1..).unwrap_or_default().to_vec(),
            ));
        }
        rest = rest.get(len..).unwrap_or_default();
    }
    out
}

/// Fails a decompressed stream whose overall ratio passes the limit, or
/// when the bytes inflated in the whole build pass the total limit.
struct RatioGuard<R> {
    inner: R,
    compressed: Arc<AtomicU64>,
    inflated: u64,
    /// Bytes inflated in the whole build (all parts).
    total: Arc<AtomicU64>,
    limits: Limits,
}

impl<R: Read> Read for RatioGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.inflated += n as u64;
        let c = self.compressed.load(Ordering::Relaxed).max(1);
        if self.inflated > self.limits.ratio_min_size && self.inflated / c > self.limits.max_ratio {
            return Err(io::Error::other(source::LimitHit(format!(
                "the compressed stream expands past the ratio limit {} ({} bytes from {}; ALIAS_MAX_RATIO; a gzip bomb?)",
                self.limits.max_ratio, self.inflated, c
            ))));
        }
        let total = self.total.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        if total > self.limits.max_total_uncompressed {
            return Err(io::Error::other(source::LimitHit(format!(
                "more than {} bytes uncompressed in the dumps (ALIAS_MAX_UNCOMPRESSED)",
                self.limits.max_total_uncompressed
            ))));
        }
        Ok(n)
    }
}

/// A read failure seen through a copy into an archive.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ReadFailed(io::Error);

struct ReadMarked<'a, R: Read + ?Sized>(&'a mut R);

impl<R: Read + ?Sized> Read for ReadMarked<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0
            .read(buf)
            .map_err(|e| io::Error::other(ReadFailed(e)))
    }
}

struct ReadMarkedWrite<'a>(&'a mut File);

impl Write for ReadMarkedWrite<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).map_err(write_failed)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().map_err(write_failed)
    }
}
