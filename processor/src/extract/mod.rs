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
//! * **Units.** A build runs in units on blocking threads
//!   ([`BuildOptions::threads`] at once): one per scope when its
//!   provider's parts are all zips, one per provider otherwise.
//!   [`start_build`] hands out each archive as soon as it is stored.
//! * **Hostile dumps.** Unsafe entry names, links, zip bombs and corrupt
//!   archives end the build with a typed [`ExtractError`]; a file that is not
//!   what the catalog expects is skipped and listed in the manifest.

pub use protocol::catalog;

mod archive;
mod dry;
mod engine;
mod error;
mod html;
mod preview;
mod records;
mod sidecar;
mod source;
mod zipfmt;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use protocol::anychain::b64u_encode;
use protocol::scope::Scope;
use runtime::storage::{validate_key, Storage};
use tokio::runtime::Handle;

pub use archive::{archive_names, MANIFEST};
pub use catalog::{
    ActivityHtmlWords, Catalog, CatalogError, CatalogPath, FileRule, ProviderCatalog, RecordFormat,
    TextEncoding, TimeField, TimeFormat,
};
pub use error::{ExtractError, Skipped, Unreadable};
pub use preview::{preview_archives, ScopePreview};

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
/// all the parts of an export together, never per part; the bytes actually
/// inflated count over the whole build (every unit together).
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
    /// Units of a build run at once, each on a blocking thread (at least
    /// one). `ALIAS_BUILD_THREADS`.
    pub threads: usize,
    /// Niceness added to the build threads, so that a shared host runs
    /// latency-bound work first (0: none). `ALIAS_BUILD_NICE`.
    pub nice: i32,
}

/// Default of [`BuildOptions::threads`]: the cores the process may use.
pub fn default_build_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            limits: Limits::default(),
            temp_dir: None,
            deflate_level: DEFAULT_DEFLATE_LEVEL,
            progress: None,
            threads: default_build_threads(),
            nice: 0,
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
            .field("threads", &self.threads)
            .field("nice", &self.nice)
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
struct CancelOnDrop(Arc<engine::Shared>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel.store(true, Ordering::Relaxed);
    }
}

/// Builds one archive per scope from `dumps` (all parts of the newest export
/// of each provider the scopes name) and stores them under `out_prefix`.
/// Returns the archives in scope order; on failure none is left stored.
/// This is [`start_build`] waited to its end.
pub async fn build_archives(
    storage: &Storage,
    catalog: &Catalog,
    dumps: &[DumpSource],
    scopes: &[Scope],
    out_prefix: &str,
    options: &BuildOptions,
) -> Result<Vec<BuiltArchive>, ExtractError> {
    let mut build = start_build(storage, catalog, dumps, scopes, out_prefix, options).await?;
    let mut out: Vec<(usize, BuiltArchive)> = Vec::with_capacity(scopes.len());
    while let Some(next) = build.next().await {
        match next {
            Ok(archive) => out.push(archive),
            Err(e) => {
                // All or nothing: the archives stored before the failure go.
                drop(build);
                for (_, a) in &out {
                    if let Err(d) = storage.delete(&a.storage_key).await {
                        tracing::warn!(key = %a.storage_key, error = %d, "could not remove an archive of a failed build");
                    }
                }
                return Err(e);
            }
        }
    }
    out.sort_by_key(|(index, _)| *index);
    Ok(out.into_iter().map(|(_, a)| a).collect())
}

/// A build under way: its archives come out of [`ArchiveBuild::next`] as
/// soon as each is stored, while the others are still being built, so that
/// pushing can begin before the build ends.
///
/// The scopes of a provider whose parts are all zips are built one per
/// unit (each reads only the entries of its scope, through the central
/// directories); the scopes of a provider with tar parts share one unit,
/// so that its streams are read once. Up to [`BuildOptions::threads`]
/// units run at once, each on a blocking thread. Dropping the build, or a
/// unit failing, stops every unit at its next entry; past
/// [`Limits::max_duration`] (counted from [`start_build`]) `next` answers
/// [`ExtractError::TimeLimit`].
pub struct ArchiveBuild {
    running: Running,
    storage: Storage,
    out_prefix: String,
    max_archive_bytes: Option<u64>,
    time_limit: Option<(tokio::time::Instant, Duration)>,
}

impl ArchiveBuild {
    /// The next archive stored, with the index of its scope, in the order
    /// the archives finish; `None` once every scope has its archive. After
    /// an error the build is over (drop it).
    pub async fn next(&mut self) -> Option<Result<(usize, BuiltArchive), ExtractError>> {
        // Past the time limit, dropping the build sets its cancel flag: the
        // blocking work stops at its next entry and removes its temporary
        // files.
        let next = match within(self.time_limit, async { Ok(self.running.next().await) }).await {
            Ok(next) => next?,
            Err(e) => Err(e),
        };
        Some(self.stored(next).await)
    }

    /// The next archive already finished, stored, without waiting for one
    /// to finish; `None` when none is ready (or all were handed out).
    pub async fn next_ready(&mut self) -> Option<Result<(usize, BuiltArchive), ExtractError>> {
        let next = self.running.try_next()?;
        Some(self.stored(next).await)
    }

    /// What a unit sent, its archive stored.
    async fn stored(&self, got: Unit) -> Result<(usize, BuiltArchive), ExtractError> {
        let (index, finished) = got?;
        Ok((index, self.store(finished).await?))
    }

    /// Whether every archive was handed out.
    pub fn is_finished(&self) -> bool {
        self.running.left == 0
    }

    /// Uploads a finished archive: a local store on the scratch directory's
    /// file system takes the archive itself (a rename), any other a copy.
    async fn store(&self, b: engine::Finished) -> Result<BuiltArchive, ExtractError> {
        let key = format!("{}/{}", self.out_prefix, b.file);
        let archive::Output::Archive(temp) = &b.output else {
            return Err(ExtractError::Internal("a build gave no archive".into()));
        };
        let put = async {
            Ok(self
                .storage
                .put_file(&key, temp.path(), self.max_archive_bytes)
                .await?)
        };
        let info = within(self.time_limit, put).await?;
        Ok(BuiltArchive {
            file: b.file,
            scope_display: b.scope_display,
            storage_key: key,
            size: info.size,
            blake2b: info.blake2b,
            records: b.records,
            files: b.files,
            skipped: b.skipped,
            unreadable: b.unreadable,
        })
    }
}

/// Starts building one archive per scope (see [`ArchiveBuild`]); the dumps
/// are checked against storage and the scopes against the catalog first.
pub async fn start_build(
    storage: &Storage,
    catalog: &Catalog,
    dumps: &[DumpSource],
    scopes: &[Scope],
    out_prefix: &str,
    options: &BuildOptions,
) -> Result<ArchiveBuild, ExtractError> {
    validate_key(out_prefix)?;
    let time_limit = options
        .limits
        .max_duration
        .map(|limit| (tokio::time::Instant::now() + limit, limit));
    let running = within(
        time_limit,
        run_work(storage, catalog, dumps, scopes, options, false),
    )
    .await?;
    Ok(ArchiveBuild {
        running,
        storage: storage.clone(),
        out_prefix: out_prefix.to_owned(),
        max_archive_bytes: options.limits.max_archive_bytes,
        time_limit,
    })
}

/// Runs `fut` until the deadline of a build's time limit, if any.
async fn within<T>(
    time_limit: Option<(tokio::time::Instant, Duration)>,
    fut: impl std::future::Future<Output = Result<T, ExtractError>>,
) -> Result<T, ExtractError> {
    match time_limit {
        None => fut.await,
        Some((deadline, limit)) => {
            tokio::time::timeout_at(deadline, fut)
                .await
                .map_err(|_| ExtractError::TimeLimit {
                    secs: limit.as_secs(),
                })?
        }
    }
}

/// Runs `fut` under [`Limits::max_duration`], counted from now.
async fn time_limited<T>(
    options: &BuildOptions,
    fut: impl std::future::Future<Output = Result<T, ExtractError>>,
) -> Result<T, ExtractError> {
    let limit = options.limits.max_duration;
    within(limit.map(|l| (tokio::time::Instant::now() + l, l)), fut).await
}

/// What a unit sends: an archive finished with its scope's index, or the
/// failure that ends the build.
type Unit = Result<(usize, engine::Finished), ExtractError>;

/// The units of a build running on blocking threads, and what they
/// finished so far.
struct Running {
    rx: tokio::sync::mpsc::Receiver<Unit>,
    /// Archives not yet received.
    left: usize,
    /// Held until the build ends or is dropped.
    _cancel: CancelOnDrop,
}

impl Running {
    /// The next archive finished (with its scope's index), in the order
    /// they finish; `None` when all have been received.
    async fn next(&mut self) -> Option<Unit> {
        if self.left == 0 {
            return None;
        }
        let got = self.rx.recv().await;
        Some(self.count(got))
    }

    /// The next archive finished, if one is waiting.
    fn try_next(&mut self) -> Option<Unit> {
        if self.left == 0 {
            return None;
        }
        match self.rx.try_recv() {
            Ok(got) => Some(self.count(Some(got))),
            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => None,
            Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => Some(self.count(None)),
        }
    }

    /// Counts what the units sent: an archive, or the end of the build (a
    /// failure, or every unit gone with archives missing: one panicked).
    fn count(&mut self, got: Option<Unit>) -> Unit {
        match got {
            Some(Ok(finished)) => {
                self.left -= 1;
                Ok(finished)
            }
            Some(Err(e)) => {
                self.left = 0;
                Err(e)
            }
            None => {
                self.left = 0;
                Err(ExtractError::Internal(
                    "an extraction unit ended without its archives".into(),
                ))
            }
        }
    }

    /// Every archive, in scope order.
    async fn collect(mut self) -> Result<Vec<engine::Finished>, ExtractError> {
        let mut out = Vec::with_capacity(self.left);
        while let Some(next) = self.next().await {
            out.push(next?);
        }
        out.sort_by_key(|(index, _)| *index);
        Ok(out.into_iter().map(|(_, f)| f).collect())
    }
}

/// Checks the dumps against storage and the scopes against the catalog,
/// splits the build (or dry run) into units and starts them on blocking
/// threads.
async fn run_work(
    storage: &Storage,
    catalog: &Catalog,
    dumps: &[DumpSource],
    scopes: &[Scope],
    options: &BuildOptions,
    dry: bool,
) -> Result<Running, ExtractError> {
    let mut kinds = Vec::with_capacity(dumps.len());
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
        kinds.push(engine::Kind::of(&storage.get_range(&d.key, 0..512).await?));
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
    let shared = Arc::new(engine::Shared {
        bytes_total: dumps.iter().map(|d| d.size).sum(),
        ..engine::Shared::default()
    });
    let units: Vec<engine::Work> = units(dumps, &kinds, scopes)
        .into_iter()
        .map(|(provider, indices)| engine::Work {
            storage: storage.clone(),
            handle: Handle::current(),
            dumps: dumps
                .iter()
                .filter(|d| d.provider == provider)
                .cloned()
                .collect(),
            scopes: indices.iter().map(|&i| scopes[i].clone()).collect(),
            plans: indices.iter().map(|&i| plans[i].clone()).collect(),
            names: indices.iter().map(|&i| names[i].clone()).collect(),
            indices,
            options: options.clone(),
            shared: shared.clone(),
            dry,
        })
        .collect();
    // Room for every archive: a unit never waits on the receiver.
    let (tx, rx) = tokio::sync::mpsc::channel(scopes.len().max(1));
    let threads = options.threads.clamp(1, units.len().max(1));
    let queue = Arc::new(std::sync::Mutex::new(
        units.into_iter().collect::<std::collections::VecDeque<_>>(),
    ));
    for started in 0..threads {
        let (queue, tx, unit_shared) = (queue.clone(), tx.clone(), shared.clone());
        let nice = options.nice;
        // Threads of the build's own (not the runtime's blocking pool), so
        // that their lowered priority ends with them.
        let spawned = std::thread::Builder::new()
            .name("alias-build".into())
            .spawn(move || {
                lower_priority(nice);
                run_units(&queue, &tx, &unit_shared);
            });
        if let Err(e) = spawned {
            if started == 0 {
                return Err(ExtractError::Io(e));
            }
            // The threads already running take every unit of the queue.
            tracing::warn!(error = %e, threads = started, "could not start another build thread");
            break;
        }
    }
    Ok(Running {
        rx,
        left: scopes.len(),
        _cancel: CancelOnDrop(shared),
    })
}

/// Adds `nice` to the calling thread's niceness (Linux gives each thread
/// its own); a failure only leaves the priority as it was.
fn lower_priority(nice: i32) {
    if nice <= 0 {
        return;
    }
    let lowered = rustix::process::getpriority_process(None).and_then(|now| {
        rustix::process::setpriority_process(None, now.saturating_add(nice).min(19))
    });
    if let Err(e) = lowered {
        tracing::debug!(error = %e, "could not lower the build thread's priority");
    }
}

/// Runs units from `queue` until it is empty, the build is dropped or a
/// unit fails.
fn run_units(
    queue: &std::sync::Mutex<std::collections::VecDeque<engine::Work>>,
    tx: &tokio::sync::mpsc::Sender<Unit>,
    shared: &engine::Shared,
) {
    loop {
        let unit = match queue.lock() {
            Ok(mut q) => q.pop_front(),
            Err(_) => None,
        };
        let Some(unit) = unit else { break };
        let indices = unit.indices.clone();
        match unit.run() {
            Ok(finished) => {
                for item in indices.into_iter().zip(finished) {
                    if tx.blocking_send(Ok(item)).is_err() {
                        return; // the build was dropped
                    }
                }
            }
            Err(e) => {
                // The first failure ends the build: the other units
                // stop at their next entry.
                shared.cancel.store(true, Ordering::Relaxed);
                let _ = tx.blocking_send(Err(e));
                return;
            }
        }
    }
}

/// Exports smaller than this are built in one unit whatever their kind:
/// a unit per scope costs a pass over the central directories each, more
/// than it gains on a build of a few milliseconds.
pub const SPLIT_MIN_BYTES: u64 = 32 << 20;

/// The units of a build, each a provider and the indices of its scopes:
/// one unit per scope for a provider whose parts are all zips (each reads
/// its own entries) of [`SPLIT_MIN_BYTES`] or more together, one for all
/// the provider's scopes otherwise (a tar stream is read once). Units come
/// in scope order.
fn units(
    dumps: &[DumpSource],
    kinds: &[Option<engine::Kind>],
    scopes: &[Scope],
) -> Vec<(String, Vec<usize>)> {
    let mut out: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, scope) in scopes.iter().enumerate() {
        let parts = || {
            dumps
                .iter()
                .zip(kinds)
                .filter(|(d, _)| d.provider == scope.provider)
        };
        let all_zip = parts().all(|(_, k)| *k == Some(engine::Kind::Zip));
        let size: u64 = parts().map(|(d, _)| d.size).sum();
        let shared_unit = if all_zip && size >= SPLIT_MIN_BYTES {
            None
        } else {
            out.iter_mut().find(|(p, _)| *p == scope.provider)
        };
        match shared_unit {
            Some((_, indices)) => indices.push(i),
            None => out.push((scope.provider.clone(), vec![i])),
        }
    }
    out
}

/// Skipped files listed one by one in a manifest; more are only counted
/// (`skipped_more`), so that a dump of a million skipped files costs no
/// memory.
pub const MAX_LISTED_SKIPS: usize = 1000;

#[cfg(test)]
mod tests {
    use super::*;
    use engine::Kind;

    #[test]
    fn a_build_thread_lowers_only_its_own_priority() {
        let own = rustix::process::getpriority_process(None).unwrap();
        let lowered = std::thread::spawn(move || {
            lower_priority(5);
            rustix::process::getpriority_process(None).unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(lowered, (own + 5).min(19));
        assert_eq!(rustix::process::getpriority_process(None).unwrap(), own);
        // Nothing to add leaves it as it is.
        let kept = std::thread::spawn(|| {
            lower_priority(0);
            rustix::process::getpriority_process(None).unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(kept, own);
    }

    fn dump(provider: &str, name: &str) -> DumpSource {
        DumpSource {
            provider: provider.into(),
            key: format!("dumps/u/{provider}/{name}"),
            name: name.into(),
            size: SPLIT_MIN_BYTES / 2,
            blake2b: [0; 64],
        }
    }

    #[test]
    fn a_zip_export_gives_a_unit_per_scope_and_a_tar_one_a_unit_in_all() {
        let dumps = [
            dump("google", "takeout-001.zip"),
            dump("google", "takeout-002.zip"),
            dump("facebook", "facebook.tgz"),
        ];
        let kinds = [Some(Kind::Zip), Some(Kind::Zip), Some(Kind::TarGz)];
        let scopes: Vec<Scope> = [
            "google.photos",
            "facebook.posts",
            "google.my_activity.search",
            "facebook.comments",
        ]
        .iter()
        .map(|s| Scope::parse(s).unwrap())
        .collect();
        let units = units(&dumps, &kinds, &scopes);
        assert_eq!(
            units,
            [
                ("google".to_owned(), vec![0]),
                ("facebook".to_owned(), vec![1, 3]),
                ("google".to_owned(), vec![2]),
            ]
        );
        // A part that is no zip (or unknown) makes the export one unit.
        let kinds = [Some(Kind::Zip), None, Some(Kind::TarGz)];
        let units = super::units(&dumps, &kinds, &scopes);
        assert_eq!(units[0], ("google".to_owned(), vec![0, 2]));
        // A small export is one unit too.
        let kinds = [Some(Kind::Zip), Some(Kind::Zip), Some(Kind::TarGz)];
        let small = [dumps[0].clone(), dump("facebook", "facebook.tgz")];
        let units = super::units(&small, &kinds[1..], &scopes);
        assert_eq!(units[0], ("google".to_owned(), vec![0, 2]));
    }
}
