//! The per-scope output zip: built in a temporary file, deterministic
//! (fixed timestamps and permissions, entries sorted by name, the manifest
//! last), media stored and text deflated.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use zip::result::ZipResult;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipArchive, ZipWriter};

use super::records::Sink;

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

/// The fixed timestamp of every entry (the zip epoch).
fn fixed_time() -> DateTime {
    DateTime::default()
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

/// What a media entry waits for before it is kept (streamed dumps).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pending {
    /// Index of the catalog path in the scope's paths.
    pub path: usize,
    /// Index of the binary rule in that path.
    pub rule: usize,
}

/// One entry written to a scope archive.
#[derive(Debug, Clone)]
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
}

type Writer = ZipWriter<BufWriter<File>>;

/// A scope archive being built.
pub(crate) struct ScopeArchive {
    /// The archive's file name.
    pub file: String,
    temp: TempFile,
    zip: Option<Writer>,
    /// Entries written so far, in order.
    pub entries: Vec<OutEntry>,
    names: HashSet<String>,
    sorted: bool,
    level: i64,
    current: u64,
    dir: PathBuf,
}

fn closed() -> io::Error {
    io::Error::other("archive already finished")
}

impl ScopeArchive {
    /// A new archive in a temporary file of `dir`.
    pub(crate) fn new(dir: &Path, file: &str, level: u32) -> io::Result<ScopeArchive> {
        let (temp, f) = TempFile::create(dir, "staging")?;
        Ok(ScopeArchive {
            file: file.to_owned(),
            temp,
            zip: Some(ZipWriter::new(BufWriter::with_capacity(256 << 10, f))),
            entries: Vec::new(),
            names: HashSet::new(),
            sorted: true,
            level: i64::from(level.clamp(1, 9)),
            current: 0,
            dir: dir.to_owned(),
        })
    }

    /// Whether an entry of that name is already in the archive.
    pub(crate) fn has(&self, name: &str) -> bool {
        self.names.contains(name) || name == MANIFEST
    }

    fn note(&mut self, entry: OutEntry) {
        if let Some(last) = self.entries.last() {
            if last.name > entry.name {
                self.sorted = false;
            }
        }
        self.names.insert(entry.name.clone());
        self.entries.push(entry);
    }

    fn zip(&mut self) -> io::Result<&mut Writer> {
        self.zip.as_mut().ok_or_else(closed)
    }

    /// Copies a zip entry without inflating it.
    pub(crate) fn raw_copy<R: Read>(
        &mut self,
        file: zip::read::ZipFile<'_, R>,
        entry: OutEntry,
    ) -> ZipResult<()> {
        let zip = self.zip().map_err(zip::result::ZipError::Io)?;
        if file.name() == entry.name {
            zip.raw_copy_file_touch(file, fixed_time(), Some(0o644))?;
        } else {
            zip.raw_copy_file_rename(file, entry.name.as_str())?;
        }
        self.note(entry);
        Ok(())
    }

    fn options(&self, name: &str, large: bool) -> SimpleFileOptions {
        let base = SimpleFileOptions::default()
            .last_modified_time(fixed_time())
            .unix_permissions(0o644)
            .large_file(large);
        if is_compressed_format(name) {
            base.compression_method(CompressionMethod::Stored)
        } else {
            base.compression_method(CompressionMethod::Deflated)
                .compression_level(Some(self.level))
        }
    }

    /// Starts an entry written with [`ScopeArchive::write`].
    pub(crate) fn start(&mut self, entry: OutEntry, large: bool) -> io::Result<()> {
        let options = self.options(&entry.name, large);
        self.zip()?
            .start_file(entry.name.as_str(), options)
            .map_err(zip_io)?;
        self.current = 0;
        self.note(entry);
        Ok(())
    }

    /// Writes bytes of the current entry.
    pub(crate) fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.zip()?.write_all(bytes)?;
        self.current += bytes.len() as u64;
        Ok(())
    }

    /// Ends the current entry, recording its record count.
    pub(crate) fn end(&mut self, records: Option<u64>) {
        let size = self.current;
        if let Some(e) = self.entries.last_mut() {
            e.records = records;
            e.size = size;
        }
    }

    /// Removes the current (last) entry.
    pub(crate) fn abort(&mut self) -> io::Result<()> {
        self.zip()?.abort_file().map_err(zip_io)?;
        if let Some(e) = self.entries.pop() {
            self.names.remove(&e.name);
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
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.write(buf.get(..n).unwrap_or_default())?;
        }
        let size = self.current;
        self.end(None);
        Ok(size)
    }

    /// Finishes the archive: keeps the entries `keep` accepts, in name
    /// order, then the manifest made from them. Returns the temporary file
    /// and the kept entries.
    pub(crate) fn finish(
        mut self,
        keep: impl Fn(&OutEntry) -> bool,
        manifest: impl FnOnce(&[OutEntry]) -> Vec<u8>,
    ) -> io::Result<(TempFile, Vec<OutEntry>)> {
        let zip = self.zip.take().ok_or_else(closed)?;
        let all_kept = self.entries.iter().all(&keep);
        let manifest_opts = SimpleFileOptions::default()
            .last_modified_time(fixed_time())
            .unix_permissions(0o644)
            .compression_method(CompressionMethod::Deflated)
            .compression_level(Some(self.level));
        if all_kept && self.sorted {
            let mut zip = zip;
            let body = manifest(&self.entries);
            zip.start_file(MANIFEST, manifest_opts).map_err(zip_io)?;
            zip.write_all(&body)?;
            close(zip)?;
            return Ok((self.temp, self.entries));
        }
        close(zip)?;
        // Re-order (and drop) by raw copies into a new file.
        let staging = File::open(self.temp.path())?;
        let mut source =
            ZipArchive::new(io::BufReader::with_capacity(256 << 10, staging)).map_err(zip_io)?;
        let mut order: Vec<usize> = (0..self.entries.len())
            .filter(|i| self.entries.get(*i).is_some_and(&keep))
            .collect();
        order.sort_by(|a, b| {
            let name = |i: &usize| self.entries.get(*i).map(|e| e.name.as_str());
            name(a).cmp(&name(b))
        });
        let (temp, f) = TempFile::create(&self.dir, "final")?;
        let mut out = ZipWriter::new(BufWriter::with_capacity(256 << 10, f));
        let mut kept = Vec::with_capacity(order.len());
        for i in order {
            let file = source.by_index_raw(i).map_err(zip_io)?;
            out.raw_copy_file_touch(file, fixed_time(), Some(0o644))
                .map_err(zip_io)?;
            if let Some(e) = self.entries.get(i) {
                let mut e = e.clone();
                e.pending = None;
                kept.push(e);
            }
        }
        let body = manifest(&kept);
        out.start_file(MANIFEST, manifest_opts).map_err(zip_io)?;
        out.write_all(&body)?;
        close(out)?;
        Ok((temp, kept))
    }
}

/// Finishes a zip and cuts the file where the archive ends (an aborted last
/// entry may have left bytes after it).
fn close(zip: Writer) -> io::Result<()> {
    let mut w = zip.finish().map_err(zip_io)?;
    w.flush()?;
    let end = w.stream_position()?;
    let file = w.into_inner().map_err(|e| e.into_error())?;
    file.set_len(end)?;
    Ok(())
}

pub(crate) fn zip_io(e: zip::result::ZipError) -> io::Error {
    match e {
        zip::result::ZipError::Io(io) => io,
        other => io::Error::other(other),
    }
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
}

/// Archive file names for scopes: `provider.path.zip` (`provider.all.zip`
/// for every path) in `[A-Za-z0-9._-]`; names that several scopes would
/// share get a short hash of the scope's display form, then a counter.
pub fn archive_names(scopes: &[common::scope::Scope]) -> Vec<String> {
    let base: Vec<String> = scopes
        .iter()
        .map(|s| {
            let path = if s.path.is_empty() {
                "all"
            } else {
                s.path.as_str()
            };
            let raw = format!("{}.{}", s.provider, path);
            let safe: String = raw
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                        c
                    } else {
                        '_'
                    }
                })
                .take(200)
                .collect();
            safe
        })
        .collect();
    let mut used = HashSet::new();
    let mut out = Vec::with_capacity(scopes.len());
    for (i, (b, s)) in base.iter().zip(scopes).enumerate() {
        let shared = base
            .iter()
            .enumerate()
            .any(|(j, other)| j != i && other == b);
        let mut name = if shared {
            let h = blake2b_simd::Params::new()
                .hash_length(4)
                .hash(s.display().as_bytes());
            let hex: String = h.as_bytes().iter().map(|x| format!("{x:02x}")).collect();
            format!("{b}-{hex}.zip")
        } else {
            format!("{b}.zip")
        };
        let mut n = 2;
        while !used.insert(name.clone()) {
            name = format!("{}-{n}.zip", name.trim_end_matches(".zip"));
            n += 1;
        }
        out.push(name);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::scope::Scope;

    #[test]
    fn names_are_safe_and_unique() {
        let scopes: Vec<Scope> = [
            "google.my_activity.search",
            "google.*",
            "google.photos[photoTakenTime>2020].*",
            "google.photos.{title}",
            "google.photos.{title}",
        ]
        .iter()
        .map(|s| Scope::parse(s).unwrap())
        .collect();
        let names = archive_names(&scopes);
        assert_eq!(names[0], "google.my_activity.search.zip");
        assert_eq!(names[1], "google.all.zip");
        assert!(
            names[2].starts_with("google.photos-")
                && names[2].len() == "google.photos-12345678.zip".len()
        );
        assert_ne!(names[2], names[3]);
        assert_ne!(names[3], names[4]);
        let set: HashSet<_> = names.iter().collect();
        assert_eq!(set.len(), names.len());
        for n in &names {
            assert!(common::storage::is_safe_segment(n), "{n}");
        }
    }

    #[test]
    fn compressed_formats() {
        assert!(is_compressed_format("a/IMG_1.JPG"));
        assert!(is_compressed_format("x.mp3"));
        assert!(!is_compressed_format("x.json"));
        assert!(!is_compressed_format("x.mbox"));
        assert!(!is_compressed_format("noext"));
    }
}
