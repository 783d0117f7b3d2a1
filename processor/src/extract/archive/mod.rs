//! The per-scope output zip: built in a temporary file, deterministic
//! (fixed timestamps and permissions, entries sorted by name up to
//! [`SORT_MAX`] entries and in the dumps' order past it, the manifest last),
//! media stored and text deflated. Past [`SPILL_MEMORY`] bytes, nothing per
//! entry stays in memory but an 8-byte digest of its name: the central
//! directory is spilled by [`ZipOut`], and each entry's manifest line
//! logged, both to temporary files ([`Spill`]).

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use super::dry::{DryOut, FirstNames, Out};
use super::records::Sink;
use super::zipfmt::{self, CdEntry, Written, ZipOut};

/// Name of the manifest entry.
pub const MANIFEST: &str = "manifest.json";

/// Extensions of already-compressed formats, stored as they are.
const STORED: &[&str] = &[
    "jpg", "jpeg", "png", "gif", "webp", "heic", "heif", "avif", "jxl", "mp4", "m4v", "mov", "3gp",
    "mkv", "webm", "avi", "mp3", "m4a", "aac", "ogg", "oga", "opus", "flac", "amr", "wma", "zip",
    "gz", "tgz", "bz2", "xz", "zst", "7z", "rar", "pdf", "docx", "xlsx", "pptx", "odt", "epub",
    "woff", "woff2",
];

/// Whether an entry name is an already-compressed format.
pub(crate) fn is_compressed_format(name: &str) -> bool {
    name.rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .is_some_and(|ext| STORED.contains(&ext.as_str()))
}

/// A temporary file removed on drop.
#[derive(Debug)]
pub(crate) struct TempFile {
    path: PathBuf,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl TempFile {
    /// Creates a new, empty file in `dir`.
    pub(crate) fn create(dir: &Path, tag: &str) -> io::Result<(TempFile, File)> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        for _ in 0..16 {
            let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!(
                ".alias-extract-{}-{n}-{nanos:x}-{tag}.tmp",
                std::process::id()
            ));
            match std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(file) => return Ok((TempFile { path }, file)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "could not create a temporary file",
        ))
    }

    /// Its path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Bytes kept in memory by a [`Spill`] before they move to a file.
pub(crate) const SPILL_MEMORY: usize = 256 << 10;

/// Bytes written once, then read back from the start (maybe several
/// times): kept in memory up to [`SPILL_MEMORY`] bytes, then moved to a
/// temporary file of the work directory, so that memory stays bounded
/// whatever the number of entries.
///
/// Most archives are small, and then create no temporary file at all. On
/// a file system that checks recently freed inodes at each creation (ext4
/// without a journal), creating and removing two files per archive cost
/// the processors of many small transfers more CPU than the archives.
pub(crate) struct Spill {
    dir: PathBuf,
    tag: &'static str,
    memory: Vec<u8>,
    file: Option<(TempFile, BufWriter<File>)>,
}

impl Spill {
    /// An empty spill whose file, if needed, goes to `dir`.
    pub(crate) fn new(dir: &Path, tag: &'static str) -> Spill {
        Spill {
            dir: dir.to_owned(),
            tag,
            memory: Vec::new(),
            file: None,
        }
    }

    /// Whether the bytes moved to a file (for tests).
    #[cfg(test)]
    pub(crate) fn on_disk(&self) -> bool {
        self.file.is_some()
    }

    /// A reader of everything written so far, from the start.
    pub(crate) fn reader(&mut self) -> io::Result<Box<dyn Read + '_>> {
        match &mut self.file {
            None => Ok(Box::new(self.memory.as_slice())),
            Some((temp, w)) => {
                w.flush()?;
                Ok(Box::new(File::open(temp.path())?))
            }
        }
    }
}

impl Write for Spill {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.file.is_none() && self.memory.len() + bytes.len() > SPILL_MEMORY {
            let (temp, f) = TempFile::create(&self.dir, self.tag)?;
            let mut w = BufWriter::with_capacity(64 << 10, f);
            w.write_all(&std::mem::take(&mut self.memory))?;
            self.file = Some((temp, w));
        }
        match &mut self.file {
            Some((_, w)) => w.write(bytes),
            None => {
                self.memory.extend_from_slice(bytes);
                Ok(bytes.len())
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some((_, w)) => w.flush(),
            None => Ok(()),
        }
    }
}
/// What a media entry waits for before it is kept (streamed dumps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Pending {
    /// Index of the catalog path in the scope's paths.
    pub path: usize,
    /// Index of the binary rule in that path.
    pub rule: usize,
}

/// One entry written to a scope archive.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct OutEntry {
    /// Its path in the archive (the dump's path).
    pub name: String,
    /// The catalog path it belongs to.
    pub catalog_path: String,
    /// The dump part it came from.
    pub dump: String,
    /// Records written, or `None` for a file taken whole.
    pub records: Option<u64>,
    /// Uncompressed size.
    pub size: u64,
    /// Set for media whose inclusion is decided at the end.
    pub pending: Option<Pending>,
    /// For records converted from another form: the dump entry they were
    /// read from and its format (`activity_html`).
    #[serde(default)]
    pub source_format: Option<(String, String)>,
}

/// An entry as logged on disk: what the manifest and a re-ordering copy
/// need, so that nothing per entry stays in memory.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Logged {
    entry: OutEntry,
    header_at: u64,
    method: u16,
    crc: u32,
    csize: u64,
}

/// Archives of at most this many entries are sorted by name (in memory);
/// larger ones keep the dumps' order, which is as deterministic.
pub(crate) const SORT_MAX: u64 = 65_536;

/// A 64-bit digest of a name, for duplicate checks in bounded memory (9
/// bytes a name in a hash set; a collision, which only the dump's owner
/// could craft, makes a file count as a duplicate).
pub(crate) fn name_digest(name: &str) -> u64 {
    let h = blake2b_simd::Params::new()
        .hash_length(8)
        .hash(name.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(h.as_bytes());
    u64::from_le_bytes(b)
}

/// What a finished archive holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    /// Records of the filtered files.
    pub records: u64,
    /// Data files (the manifest excluded).
    pub files: u64,
    /// Bytes of the data files, uncompressed.
    pub bytes: u64,
}

/// What finishing an archive gave.
pub(crate) enum Output {
    /// The archive, in a temporary file.
    Archive(TempFile),
    /// A dry run: the first file names and sample records.
    Dry {
        /// The first names, in the archive's order.
        first_files: Vec<String>,
        /// Sample records (cut).
        samples: Vec<String>,
    },
}

/// A scope archive being built.
pub(crate) struct ScopeArchive {
    /// The archive's file name.
    pub file: String,
    /// The staging file (none in a dry run).
    temp: Option<TempFile>,
    out: Option<Out>,
    log: Spill,
    /// The entry started and not ended.
    current: Option<OutEntry>,
    count: u64,
    names: HashSet<u64>,
    last_name: Option<String>,
    sorted: bool,
    pending_any: bool,
    level: u32,
    dir: PathBuf,
}

fn closed() -> io::Error {
    io::Error::other("archive already finished")
}

impl ScopeArchive {
    /// A new archive in a temporary file of `dir`.
    pub(crate) fn new(dir: &Path, file: &str, level: u32) -> io::Result<ScopeArchive> {
        let (temp, f) = TempFile::create(dir, "staging")?;
        let out = Out::Zip(Box::new(ZipOut::new(f, dir, level)?));
        Self::with_output(dir, file, level, Some(temp), out)
    }

    /// An archive of a dry run: entries are counted, logged and decided as
    /// in a build, their bytes discarded (nothing but the entry log is
    /// written to `dir`).
    pub(crate) fn dry(dir: &Path, file: &str) -> io::Result<ScopeArchive> {
        Self::with_output(dir, file, 1, None, Out::Dry(DryOut::default()))
    }

    fn with_output(
        dir: &Path,
        file: &str,
        level: u32,
        temp: Option<TempFile>,
        out: Out,
    ) -> io::Result<ScopeArchive> {
        Ok(ScopeArchive {
            file: file.to_owned(),
            temp,
            out: Some(out),
            log: Spill::new(dir, "log"),
            current: None,
            count: 0,
            names: HashSet::new(),
            last_name: None,
            sorted: true,
            pending_any: false,
            level: level.clamp(1, 9),
            dir: dir.to_owned(),
        })
    }

    /// Whether an entry of that name is already in the archive.
    pub(crate) fn has(&self, name: &str) -> bool {
        name == MANIFEST || self.names.contains(&name_digest(name))
    }

    fn zip(&mut self) -> io::Result<&mut Out> {
        self.out.as_mut().ok_or_else(closed)
    }

    /// Notes a record written to the current entry (a dry run keeps the
    /// first ones as samples).
    pub(crate) fn record(&mut self, body: &[u8]) {
        if let Some(out) = self.out.as_mut() {
            out.record(body);
        }
    }

    fn note(&mut self, entry: &OutEntry) {
        if self
            .last_name
            .as_ref()
            .is_some_and(|last| *last > entry.name)
        {
            self.sorted = false;
        }
        self.last_name = Some(entry.name.clone());
        self.names.insert(name_digest(&entry.name));
        self.pending_any |= entry.pending.is_some();
    }

    fn log_entry(&mut self, entry: OutEntry, w: Written) -> io::Result<()> {
        let logged = Logged {
            entry,
            header_at: w.header_at,
            method: w.method,
            crc: w.crc,
            csize: w.csize,
        };
        serde_json::to_writer(&mut self.log, &logged).map_err(io::Error::other)?;
        self.log.write_all(b"\n")?;
        self.count += 1;
        Ok(())
    }

    /// Copies a zip entry without inflating it: `data` is positioned at
    /// the entry's compressed bytes.
    pub(crate) fn raw_copy(
        &mut self,
        data: &mut dyn Read,
        source: &CdEntry,
        entry: OutEntry,
    ) -> io::Result<()> {
        let w = self.zip()?.raw_copy(&entry.name, source, data)?;
        self.note(&entry);
        self.log_entry(entry, w)
    }

    /// Starts an entry written with [`ScopeArchive::write`].
    pub(crate) fn start(&mut self, entry: OutEntry, large: bool) -> io::Result<()> {
        let stored = is_compressed_format(&entry.name);
        self.zip()?.start(&entry.name, stored, large)?;
        self.note(&entry);
        self.current = Some(entry);
        Ok(())
    }

    /// Writes bytes of the current entry.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.zip()?.write(bytes)
    }

    /// Ends the current entry, recording its record count.
    pub(crate) fn end(&mut self, records: Option<u64>) -> io::Result<()> {
        let w = self.zip()?.end()?;
        let Some(mut entry) = self.current.take() else {
            return Err(io::Error::other("no entry is open"));
        };
        entry.records = records;
        entry.size = w.size;
        self.log_entry(entry, w)
    }

    /// Removes the current entry.
    pub(crate) fn abort(&mut self) -> io::Result<()> {
        self.zip()?.abort()?;
        if let Some(e) = self.current.take() {
            self.names.remove(&name_digest(&e.name));
        }
        Ok(())
    }

    /// Copies a whole file from a reader (tar dumps, spooled entries).
    pub(crate) fn copy_whole(
        &mut self,
        r: &mut dyn Read,
        entry: OutEntry,
        large: bool,
    ) -> io::Result<u64> {
        self.start(entry, large)?;
        let mut buf = vec![0u8; 256 << 10];
        let mut size = 0u64;
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.write(buf.get(..n).unwrap_or_default())?;
            size += n as u64;
        }
        self.end(None)?;
        Ok(size)
    }

    /// Reads the log back, one entry at a time.
    fn read_log(&mut self, mut each: impl FnMut(Logged) -> io::Result<()>) -> io::Result<()> {
        let mut r = BufReader::with_capacity(64 << 10, self.log.reader()?);
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let logged: Logged = serde_json::from_str(&line).map_err(io::Error::other)?;
            each(logged)?;
        }
    }

    /// Finishes the archive: keeps the entries `keep` accepts (in name
    /// order when there are at most [`SORT_MAX`], else in the order they
    /// were written), then `manifest.json`: the fields of `head`, then
    /// `files` (the kept entries) and `records`. Returns the temporary file
    /// and the totals.
    pub(crate) fn finish(
        mut self,
        keep: impl Fn(&OutEntry) -> bool,
        head: &Map<String, Json>,
    ) -> io::Result<(Output, Totals)> {
        let mut zip = match self.out.take().ok_or_else(closed)? {
            Out::Zip(zip) => *zip,
            Out::Dry(dry) => return self.finish_dry(dry, keep),
        };
        let staging_file = self.temp.take().ok_or_else(closed)?;
        self.log.flush()?;
        let rewrite = self.pending_any || (!self.sorted && self.count <= SORT_MAX);
        if !rewrite {
            let totals = write_manifest(&mut zip, head, |f| self.read_log(|l| f(&l.entry)))?;
            zip.finish()?;
            return Ok((Output::Archive(staging_file), totals));
        }
        zip.flush()?;
        drop(zip);
        // Re-order (and drop) by raw copies into a new file.
        let mut staging = BufReader::with_capacity(256 << 10, File::open(staging_file.path())?);
        let (temp, f) = TempFile::create(&self.dir, "final")?;
        let mut out = ZipOut::new(f, &self.dir, self.level)?;
        let mut copy = |out: &mut ZipOut, l: &Logged| -> io::Result<()> {
            let e = CdEntry {
                name: l.entry.name.clone(),
                flags: 0,
                method: l.method,
                crc: l.crc,
                csize: l.csize,
                size: l.entry.size,
                offset: l.header_at,
                made_by: 0,
                external: 0,
            };
            zipfmt::seek_data(&mut staging, &e, u64::MAX)?;
            out.raw_copy(&e.name, e.method, e.crc, e.csize, e.size, &mut staging)?;
            Ok(())
        };
        let totals = if self.count <= SORT_MAX {
            let mut kept = Vec::new();
            self.read_log(|l| {
                if keep(&l.entry) {
                    kept.push(l);
                }
                Ok(())
            })?;
            kept.sort_by(|a, b| a.entry.name.cmp(&b.entry.name));
            for l in &kept {
                copy(&mut out, l)?;
            }
            write_manifest(&mut out, head, |f| {
                kept.iter().try_for_each(|l| {
                    let mut e = l.entry.clone();
                    e.pending = None;
                    f(&e)
                })
            })?
        } else {
            self.read_log(|l| {
                if keep(&l.entry) {
                    copy(&mut out, &l)?;
                }
                Ok(())
            })?;
            write_manifest(&mut out, head, |f| {
                self.read_log(|l| if keep(&l.entry) { f(&l.entry) } else { Ok(()) })
            })?
        };
        out.finish()?;
        Ok((Output::Archive(temp), totals))
    }

    /// Finishes a dry run as [`ScopeArchive::finish`] would the archive:
    /// the same entries kept, counted, and the first names in the same
    /// order; no manifest.
    fn finish_dry(
        mut self,
        dry: DryOut,
        keep: impl Fn(&OutEntry) -> bool,
    ) -> io::Result<(Output, Totals)> {
        self.log.flush()?;
        let mut totals = Totals::default();
        let mut first = FirstNames::new(self.sorted || self.count <= SORT_MAX);
        self.read_log(|l| {
            if keep(&l.entry) {
                totals.files += 1;
                totals.records += l.entry.records.unwrap_or(0);
                totals.bytes += l.entry.size;
                first.offer(&l.entry.name);
            }
            Ok(())
        })?;
        let output = Output::Dry {
            first_files: first.into_names(),
            samples: dry.into_samples(),
        };
        Ok((output, totals))
    }
}

/// Writes `manifest.json`, deflated, streaming the file list that `files`
/// gives.
fn write_manifest(
    zip: &mut ZipOut,
    head: &Map<String, Json>,
    files: impl FnOnce(&mut dyn FnMut(&OutEntry) -> io::Result<()>) -> io::Result<()>,
) -> io::Result<Totals> {
    zip.start(MANIFEST, false, false)?;
    let mut text = Vec::with_capacity(64 << 10);
    text.push(b'{');
    for (k, v) in head {
        serde_json::to_writer(&mut text, k).map_err(io::Error::other)?;
        text.push(b':');
        serde_json::to_writer(&mut text, v).map_err(io::Error::other)?;
        text.extend_from_slice(b",\n");
    }
    text.extend_from_slice(b"\"files\":[");
    let mut totals = Totals::default();
    let mut failed: Option<io::Error> = None;
    files(&mut |e: &OutEntry| {
        if totals.files > 0 {
            text.push(b',');
        }
        text.push(b'\n');
        let mut file = serde_json::json!({"path": e.name, "catalog_path": e.catalog_path,
            "dump": e.dump, "records": e.records, "whole": e.records.is_none(), "size": e.size});
        if let (Some((entry, format)), Some(obj)) = (&e.source_format, file.as_object_mut()) {
            obj.insert("source_entry".into(), entry.as_str().into());
            obj.insert("source_format".into(), format.as_str().into());
        }
        serde_json::to_writer(&mut text, &file).map_err(io::Error::other)?;
        totals.files += 1;
        totals.records += e.records.unwrap_or(0);
        totals.bytes += e.size;
        if text.len() >= 60 << 10 {
            if let Err(err) = zip.write(&text) {
                failed = Some(io::Error::new(err.kind(), err.to_string()));
                return Err(err);
            }
            text.clear();
        }
        Ok(())
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    text.extend_from_slice(b"\n],\n\"records\":");
    text.extend_from_slice(totals.records.to_string().as_bytes());
    text.extend_from_slice(b"}\n");
    zip.write(&text)?;
    zip.end()?;
    Ok(totals)
}

/// Streams a filtered file into a scope archive, starting the entry only
/// when the first record is kept.
pub(crate) struct EntrySink<'a> {
    pub(crate) archive: &'a mut ScopeArchive,
    pub(crate) entry: Option<OutEntry>,
    pub(crate) large: bool,
}

impl Sink for EntrySink<'_> {
    fn begin(&mut self) -> io::Result<()> {
        match self.entry.take() {
            Some(e) => self.archive.start(e, self.large),
            None => Err(io::Error::other("entry started twice")),
        }
    }

    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.archive.write(bytes)
    }

    fn record(&mut self, prefix: &[u8], body: &[u8]) -> io::Result<()> {
        self.archive.write(prefix)?;
        self.archive.write(body)?;
        self.archive.record(body);
        Ok(())
    }
}

mod names;
pub use names::archive_names;

#[cfg(test)]
mod tests;
