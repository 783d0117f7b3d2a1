//! Extraction: from the dumps of a user to one zip archive per scope.
//!
//! [`build_archives`] is the entry point. For each scope it selects the
//! catalog paths ([`Catalog::paths_for`]), finds the dump entries of those
//! paths, keeps the records the scope's predicates match (projected on its
//! fields) and writes them, with the media that follow them, into a zip
//! named after the scope, stored at `{out_prefix}/{file}`.
//!
//! * **Dumps.** Zip parts are read at random through their central
//!   directory; tar and tar.gz parts in one streaming pass. Reads go through
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
//!   stored, text deflated; timestamps are fixed and entries sorted, then
//!   `manifest.json` (scope, sources, files with record counts, skipped
//!   files with reasons, path descriptions) — the same input gives the same
//!   bytes. Archives are built in temporary files and uploaded only when
//!   complete.
//! * **Hostile dumps.** Unsafe entry names, links, zip bombs and corrupt
//!   archives end the build with a typed [`ExtractError`]; a file that is not
//!   what the catalog expects is skipped and listed in the manifest.

pub mod catalog;

mod archive;
mod error;
mod records;
mod sidecar;
mod source;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::anychain::{b64u_encode, Value};
use common::scope::{Fields, Scope};
use common::storage::{validate_key, Storage};
use flate2::read::MultiGzDecoder;
use serde_json::{json, Value as Json};
use tokio::io::AsyncReadExt;
use tokio::runtime::Handle;
use zip::ZipArchive;

pub use archive::{archive_names, MANIFEST};
pub use catalog::{
    Catalog, CatalogError, CatalogPath, FileRule, ProviderCatalog, RecordFormat, TextEncoding,
    TimeField, TimeFormat,
};
pub use error::{ExtractError, Skipped};

use archive::{zip_io, EntrySink, OutEntry, Pending, ScopeArchive, TempFile};
use records::{Emitter, Matcher, RecError};
use sidecar::SidecarIndex;
use source::{check_name, limit_hit, CountingReader, RangeReader, Tally};

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

/// Bounds on what a dump may make the extraction do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Entries in all parts of one export (tar: entries seen).
    pub max_entries: u64,
    /// Sum of the declared uncompressed sizes of an export's zip entries,
    /// and bytes actually inflated in the whole build.
    pub max_total_uncompressed: u64,
    /// Largest compression ratio (uncompressed / compressed) of one zip
    /// entry, or of a gzip stream so far, …
    pub max_ratio: u64,
    /// … checked once the uncompressed size passes this many bytes.
    pub ratio_min_size: u64,
    /// Largest JSON record (or NDJSON line) read into memory; a file with a
    /// larger one is skipped.
    pub max_record_bytes: usize,
    /// Largest archive uploaded; `None` for no limit.
    pub max_archive_bytes: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entries: 1_000_000,
            max_total_uncompressed: 1 << 40,
            max_ratio: 200,
            ratio_min_size: 1 << 20,
            max_record_bytes: 64 << 20,
            max_archive_bytes: None,
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
pub async fn build_archives(
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
            .ok_or_else(|| common::storage::StorageError::NotFound(d.key.clone()))?;
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
        });
    }
    Ok(out)
}

async fn upload(
    storage: &Storage,
    key: &str,
    path: &std::path::Path,
    max: Option<u64>,
) -> Result<common::storage::PutInfo, ExtractError> {
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
    whole: bool,
    archive: Option<ScopeArchive>,
    skipped: Vec<Skipped>,
    /// Record files read, and whether they kept a record.
    matched: HashMap<String, bool>,
    refs_exact: HashSet<String>,
    refs_root: HashSet<String>,
    /// Sidecar candidates, per path index.
    sidecars: Vec<SidecarIndex>,
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

    /// Notes a record entry as a possible sidecar of its path.
    fn note_candidate(&mut self, pi: usize, ri: usize, name: &str) {
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
                Some(s) => self.matched.get(s).copied().unwrap_or(false),
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

    fn skip(&mut self, dump: &str, entry: &str, pi: usize, reason: impl Into<String>) {
        let catalog_path = self.paths.get(pi).map(|p| p.id.clone()).unwrap_or_default();
        self.skipped.push(Skipped {
            dump: dump.to_owned(),
            entry: entry.to_owned(),
            catalog_path,
            reason: reason.into(),
        });
    }
}

/// Shared counters and settings of a run.
struct Env<'a> {
    work: &'a Work,
    fetched: Arc<AtomicU64>,
    inflated: Arc<AtomicU64>,
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

struct ZipEntryData<'a, R: Read + Seek> {
    zip: &'a mut ZipArchive<R>,
    index: usize,
    size: u64,
    limit: Arc<AtomicU64>,
    total_limit: u64,
}

impl<R: Read + Seek> EntryData for ZipEntryData<'_, R> {
    fn open(&mut self) -> io::Result<Box<dyn Read + '_>> {
        let file = self.zip.by_index(self.index).map_err(zip_io)?;
        Ok(Box::new(CountingReader::new(
            file,
            self.size,
            "entry larger than its declared size",
            self.limit.clone(),
            self.total_limit,
        )))
    }

    fn raw_copy(&mut self, archive: &mut ScopeArchive, entry: &OutEntry) -> io::Result<bool> {
        let file = self.zip.by_index_raw(self.index).map_err(zip_io)?;
        archive.raw_copy(file, entry.clone()).map_err(|e| match e {
            zip::result::ZipError::Io(io) => io,
            other => io::Error::other(other),
        })?;
        Ok(true)
    }
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
                whole: scope.predicates.is_empty() && scope.fields == Fields::All,
                archive: Some(ScopeArchive::new(
                    &temp_dir,
                    name,
                    self.options.deflate_level,
                )?),
                skipped: Vec::new(),
                matched: HashMap::new(),
                refs_exact: HashSet::new(),
                refs_root: HashSet::new(),
                sidecars: paths.iter().map(|_| SidecarIndex::default()).collect(),
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

    /// Opens a zip part and checks every entry.
    fn open_zip(
        &self,
        env: &Env<'_>,
        d: &DumpSource,
        entries_seen: &mut u64,
        declared: &mut u64,
    ) -> Result<(ZipArchive<RangeReader>, Vec<ZipEntry>), ExtractError> {
        let corrupt = |reason: String| ExtractError::CorruptDump {
            dump: d.name.clone(),
            reason,
        };
        let limits = env.limits();
        let mut zip = ZipArchive::new(self.reader(env, d)?).map_err(|e| corrupt(e.to_string()))?;
        *entries_seen += zip.len() as u64;
        if *entries_seen > limits.max_entries {
            return Err(ExtractError::LimitExceeded {
                dump: d.name.clone(),
                reason: format!(
                    "more than {} entries (limit max_entries)",
                    limits.max_entries
                ),
            });
        }
        let mut entries = Vec::with_capacity(zip.len());
        let mut spans = Vec::with_capacity(zip.len());
        for i in 0..zip.len() {
            env.check_cancel()?;
            let f = zip.by_index_raw(i).map_err(|e| corrupt(e.to_string()))?;
            let unsafe_entry = |reason: &'static str| ExtractError::UnsafeEntry {
                dump: d.name.clone(),
                entry: error::shown(f.name()),
                reason,
            };
            let (name, is_dir) = check_name(f.name()).map_err(unsafe_entry)?;
            if f.is_symlink() {
                return Err(unsafe_entry("symbolic link"));
            }
            if is_dir || f.is_dir() {
                continue;
            }
            let (size, csize) = (f.size(), f.compressed_size());
            *declared = declared.saturating_add(size);
            if size > limits.ratio_min_size && size / csize.max(1) > limits.max_ratio {
                return Err(ExtractError::LimitExceeded {
                    dump: d.name.clone(),
                    reason: format!(
                        "entry {:?} expands {size} / {csize} bytes, past the ratio limit {} (zip bomb?)",
                        error::shown(&name),
                        limits.max_ratio
                    ),
                });
            }
            spans.push((f.header_start(), f.data_start() + csize));
            entries.push(ZipEntry {
                index: i,
                name,
                size,
                header: f.header_start(),
                encrypted: f.encrypted(),
            });
        }
        if *declared > limits.max_total_uncompressed {
            return Err(ExtractError::LimitExceeded {
                dump: d.name.clone(),
                reason: format!(
                    "declared uncompressed size {} exceeds {} (limit max_total_uncompressed)",
                    declared, limits.max_total_uncompressed
                ),
            });
        }
        spans.sort_unstable();
        if spans.windows(2).any(|w| matches!(w, [a, b] if b.0 < a.1)) {
            return Err(ExtractError::LimitExceeded {
                dump: d.name.clone(),
                reason: "entries overlap (a zip bomb's trick)".into(),
            });
        }
        entries.sort_by_key(|e| e.header);
        Ok((zip, entries))
    }

    /// An export whose parts are all zips: media decisions first, then one
    /// pass in the physical order of each part.
    fn zip_export(
        &self,
        env: &mut Env<'_>,
        parts: &[&DumpSource],
        jobs: &mut [&mut Job<'_>],
    ) -> Result<(), ExtractError> {
        let mut seen_entries = 0u64;
        let mut declared = 0u64;
        let mut opened = Vec::with_capacity(parts.len());
        for d in parts {
            opened.push(self.open_zip(env, d, &mut seen_entries, &mut declared)?);
        }
        // First occurrence of each name wins.
        let mut first: HashSet<String> = HashSet::new();
        let mut dups: HashSet<(usize, usize)> = HashSet::new();
        for (p, (_, entries)) in opened.iter().enumerate() {
            for e in entries {
                if !first.insert(e.name.clone()) {
                    dups.insert((p, e.index));
                }
            }
        }
        // Sidecar candidates and decisions.
        for job in jobs.iter_mut() {
            for (_, entries) in &opened {
                for e in entries {
                    if let Some((pi, ri)) = job.classify(&e.name) {
                        job.note_candidate(pi, ri, &e.name);
                    }
                }
            }
        }
        for (p, ((zip, entries), d)) in opened.iter_mut().zip(parts).enumerate() {
            for e in entries.iter() {
                if dups.contains(&(p, e.index)) || e.encrypted {
                    continue;
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
                    env.check_cancel()?;
                    let mut data = ZipEntryData {
                        zip,
                        index: e.index,
                        size: e.size,
                        limit: env.inflated.clone(),
                        total_limit: env.limits().max_total_uncompressed,
                    };
                    self.filter_entry(env, job, d, &e.name, e.size, pi, ri, &mut data, false)?;
                }
            }
        }
        // Output, in physical order.
        for (p, ((zip, entries), d)) in opened.iter_mut().zip(parts).enumerate() {
            for e in entries.iter() {
                env.check_cancel()?;
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
                    if e.encrypted {
                        job.skip(&d.name, &e.name, pi, "encrypted entry");
                        continue;
                    }
                    let mut data = ZipEntryData {
                        zip,
                        index: e.index,
                        size: e.size,
                        limit: env.inflated.clone(),
                        total_limit: env.limits().max_total_uncompressed,
                    };
                    self.handle_entry(env, job, d, &e.name, e.size, pi, ri, &mut data, true)?;
                }
                env.tick(false);
            }
        }
        Ok(())
    }

    /// A zip part in an export that also has tar parts: read in physical
    /// order, media decided at the end.
    fn zip_streamed(
        &self,
        env: &mut Env<'_>,
        d: &DumpSource,
        jobs: &mut [&mut Job<'_>],
    ) -> Result<(), ExtractError> {
        let (mut seen, mut declared) = (0u64, 0u64);
        let (mut zip, entries) = self.open_zip(env, d, &mut seen, &mut declared)?;
        for e in &entries {
            env.check_cancel()?;
            for job in jobs.iter_mut() {
                let Some((pi, ri)) = job.classify(&e.name) else {
                    continue;
                };
                job.note_candidate(pi, ri, &e.name);
                if e.encrypted {
                    job.skip(&d.name, &e.name, pi, "encrypted entry");
                    continue;
                }
                let mut data = ZipEntryData {
                    zip: &mut zip,
                    index: e.index,
                    size: e.size,
                    limit: env.inflated.clone(),
                    total_limit: env.limits().max_total_uncompressed,
                };
                self.handle_entry(env, job, d, &e.name, e.size, pi, ri, &mut data, false)?;
            }
            env.tick(false);
        }
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
        let linked = rule.sidecar.is_some() || rule.referenced;
        let catalog_path = job.paths.get(pi).map(|p| p.id.clone()).unwrap_or_default();
        if job.archive.as_ref().is_some_and(|a| a.has(name)) {
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
        };
        let whole = if job.whole {
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
        if decided && job.matched.get(name) == Some(&false) {
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
        );
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
                        name: name.to_owned(),
                        catalog_path,
                        dump: d.name.clone(),
                        records: None,
                        size: 0,
                        pending: None,
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
                        a.end(Some(records));
                    }
                }
                job.matched.insert(name.to_owned(), records > 0);
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
                job.matched.insert(name.to_owned(), false);
                if write {
                    job.skip(
                        &d.name,
                        name,
                        pi,
                        format!(
                            "not the {} the catalog expects: {reason}",
                            rule.format.as_str()
                        ),
                    );
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
            limits: limits.clone(),
        };
        let mut ar = tar::Archive::new(guarded);
        let corrupt = |e: io::Error| read_error(&d.name, e);
        let entries = ar.entries().map_err(corrupt)?.raw(true);
        let mut long_name: Option<Vec<u8>> = None;
        let mut pax_path: Option<Vec<u8>> = None;
        let mut pax_size: Option<u64> = None;
        let mut count = 0u64;
        let mut names_seen: HashSet<String> = HashSet::new();
        for entry in entries {
            env.check_cancel()?;
            let mut entry = entry.map_err(corrupt)?;
            count += 1;
            if count > limits.max_entries {
                return Err(ExtractError::LimitExceeded {
                    dump: d.name.clone(),
                    reason: format!(
                        "more than {} entries (limit max_entries)",
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
            let duplicate = !names_seen.insert(name.clone());
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
        let manifest = |kept: &[OutEntry]| self.manifest(job_ref, kept);
        let (temp, kept) = archive
            .finish(keep, manifest)
            .map_err(|e| ExtractError::Archive {
                file: file.clone(),
                reason: e.to_string(),
            })?;
        Ok(Finished {
            file,
            scope_display: job.scope.display(),
            temp,
            records: kept.iter().filter_map(|e| e.records).sum(),
            files: kept.len() as u64,
            skipped: job.skipped.clone(),
        })
    }

    fn manifest(&self, job: &Job<'_>, kept: &[OutEntry]) -> Vec<u8> {
        let sources: Vec<Json> = self
            .dumps
            .iter()
            .filter(|d| d.provider == job.scope.provider)
            .map(|d| json!({"name": d.name, "size": d.size, "blake2b": b64u_encode(&d.blake2b)}))
            .collect();
        let files: Vec<Json> = kept
            .iter()
            .map(|e| {
                json!({"path": e.name, "catalog_path": e.catalog_path, "dump": e.dump,
                    "records": e.records, "whole": e.records.is_none(), "size": e.size})
            })
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
        let m = json!({
            "format": "alias-bank.scope-archive/1",
            "scope": scope_json(job.scope),
            "scope_display": job.scope.display(),
            "provider": job.scope.provider,
            "paths": paths,
            "sources": sources,
            "records": kept.iter().filter_map(|e| e.records).sum::<u64>(),
            "files": files,
            "skipped": job.skipped,
            "notes": notes,
        });
        let mut out = serde_json::to_vec_pretty(&m).unwrap_or_default();
        out.push(b'\n');
        out
    }
}

/// An entry of a zip part.
struct ZipEntry {
    index: usize,
    name: String,
    size: u64,
    header: u64,
    encrypted: bool,
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
/// whose size passes the total limit.
struct RatioGuard<R> {
    inner: R,
    compressed: Arc<AtomicU64>,
    inflated: u64,
    limits: Limits,
}

impl<R: Read> Read for RatioGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.inflated += n as u64;
        let c = self.compressed.load(Ordering::Relaxed).max(1);
        if self.inflated > self.limits.ratio_min_size && self.inflated / c > self.limits.max_ratio {
            return Err(io::Error::other(source::LimitHit(format!(
                "the compressed stream expands past the ratio limit {} ({} bytes from {}; a gzip bomb?)",
                self.limits.max_ratio, self.inflated, c
            ))));
        }
        if self.inflated > self.limits.max_total_uncompressed {
            return Err(io::Error::other(source::LimitHit(format!(
                "more than {} bytes uncompressed (limit max_total_uncompressed)",
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
