//! The build engine: the state of a build and its scopes, the passes
//! over the parts of the dumps, and the entries written into archives.

mod entry;
mod manifest;
mod tar_part;
mod zip_part;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::scope::{Fields, Scope};
use runtime::storage::Storage;
use tokio::runtime::Handle;

use crate::extract::catalog::{
    ActivityHtmlWords, CatalogPath, FileRule, ProviderCatalog, RecordFormat, TextEncoding,
};
use crate::extract::{ExtractError, Skipped, Unreadable};

use crate::extract::archive::{EntrySink, OutEntry, Output, ScopeArchive, TempFile};
use crate::extract::sidecar::SidecarIndex;
use crate::extract::source::{limit_hit, RangeReader};

use super::{BuildOptions, DumpSource, Limits, Progress, MAX_LISTED_SKIPS};
use crate::extract::records;

/// An archive finished on local disk (or counted, in a dry run).
pub(super) struct Finished {
    pub(super) file: String,
    pub(super) scope_display: String,
    pub(super) output: Output,
    pub(super) records: u64,
    pub(super) files: u64,
    /// Bytes of the data files, uncompressed.
    pub(super) bytes: u64,
    /// Files left out past the listed ones.
    pub(super) skipped_more: u64,
    pub(super) skipped: Vec<Skipped>,
    pub(super) unreadable: Vec<Unreadable>,
}

/// What the units of one build share: the cancel flag, the counters that
/// the limits and the progress read (over all units together).
#[derive(Default)]
pub(super) struct Shared {
    /// Set when the build is dropped or a unit failed: every unit stops.
    pub(super) cancel: AtomicBool,
    /// Dump bytes read from storage.
    pub(super) fetched: Arc<AtomicU64>,
    /// Bytes inflated (limit `max_total_uncompressed`).
    pub(super) inflated: Arc<AtomicU64>,
    /// Dump entries handled.
    pub(super) entries_done: AtomicU64,
    /// Size of all the dumps of the build.
    pub(super) bytes_total: u64,
}

/// One unit of a build: some scopes of one provider, built in one run over
/// that provider's parts on one blocking thread.
pub(super) struct Work {
    pub(super) storage: Storage,
    pub(super) handle: Handle,
    pub(super) dumps: Vec<DumpSource>,
    pub(super) scopes: Vec<Scope>,
    pub(super) plans: Vec<(ProviderCatalog, Vec<CatalogPath>)>,
    pub(super) names: Vec<String>,
    /// The index of each of this unit's scopes among the build's scopes.
    pub(super) indices: Vec<usize>,
    pub(super) options: BuildOptions,
    pub(super) shared: Arc<Shared>,
    /// A dry run: every pass and decision of a build, no archive written.
    pub(super) dry: bool,
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
    last_report: Instant,
    temp_dir: PathBuf,
}

impl Env<'_> {
    fn limits(&self) -> &Limits {
        &self.work.options.limits
    }

    fn check_cancel(&self) -> Result<(), ExtractError> {
        if self.work.shared.cancel.load(Ordering::Relaxed) {
            Err(ExtractError::Cancelled)
        } else {
            Ok(())
        }
    }

    fn tick(&mut self, force: bool) {
        let shared = &self.work.shared;
        let entries_done = shared.entries_done.fetch_add(1, Ordering::Relaxed) + 1;
        let Some(cb) = &self.work.options.progress else {
            return;
        };
        if force || self.last_report.elapsed() >= Duration::from_millis(200) {
            self.last_report = Instant::now();
            // Units that share an entry each read it: never past the total.
            cb(Progress {
                bytes_read: self.fetched.load(Ordering::Relaxed).min(shared.bytes_total),
                bytes_total: shared.bytes_total,
                entries_done,
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
    fn record(&mut self, prefix: &[u8], body: &[u8]) -> io::Result<()> {
        self.0.record(prefix, body).map_err(write_failed)
    }
}

/// The kinds of dump containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Zip,
    TarGz,
    Tar,
}

impl Kind {
    /// The kind of a part from its first 512 bytes.
    pub(super) fn of(head: &[u8]) -> Option<Kind> {
        if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
            Some(Kind::Zip)
        } else if head.starts_with(&[0x1f, 0x8b]) {
            Some(Kind::TarGz)
        } else if head.get(257..262) == Some(b"ustar".as_slice()) {
            Some(Kind::Tar)
        } else {
            None
        }
    }
}

/// What a part's entry offers to the code that handles it.
trait EntryData {
    /// A reader of the uncompressed bytes.
    fn open(&mut self) -> io::Result<Box<dyn Read + '_>>;
    /// Copies the entry into an archive as it is; false when it cannot
    /// (not a zip), and the caller copies from [`EntryData::open`].
    fn raw_copy(&mut self, archive: &mut ScopeArchive, entry: &OutEntry) -> io::Result<bool>;
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
    pub(super) fn run(self) -> Result<Vec<Finished>, ExtractError> {
        let temp_dir = self
            .options
            .temp_dir
            .clone()
            .unwrap_or_else(std::env::temp_dir);
        let mut env = Env {
            work: &self,
            fetched: self.shared.fetched.clone(),
            inflated: self.shared.inflated.clone(),
            entries_seen: 0,
            declared: 0,
            compressed: 0,
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
                archive: Some(if self.dry {
                    ScopeArchive::dry(&temp_dir, name)?
                } else {
                    ScopeArchive::new(&temp_dir, name, self.options.deflate_level)?
                }),
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
        Kind::of(&head).ok_or_else(|| ExtractError::UnsupportedDump {
            dump: d.name.clone(),
            reason: "neither a zip nor a (gzip-compressed) tar".into(),
        })
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
