//! Reading dumps: a buffered `Read + Seek` over a stored object (local file
//! or ranged GETs), entry-name checks, and byte counters for limits and
//! progress.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use runtime::storage::{validate_key, Storage};
use tokio::runtime::Handle;

/// The local file behind a key of a `file://` storage, when there is one.
pub(crate) fn local_path(storage: &Storage, key: &str) -> Option<PathBuf> {
    let root = storage.location().strip_prefix("file://")?;
    validate_key(key).ok()?;
    let path = PathBuf::from(root).join(key);
    path.is_file().then_some(path)
}

enum Backend {
    Local(File),
    Remote {
        storage: Storage,
        key: String,
        handle: Handle,
    },
}

/// A `Read + Seek` over a stored object, reading ahead in blocks of
/// `block` bytes: sequential reads of small zip entries coalesce into a few
/// range requests. Must be used from a blocking thread (it calls
/// [`Handle::block_on`] for remote objects).
pub(crate) struct RangeReader {
    backend: Backend,
    size: u64,
    pos: u64,
    /// The bytes at `buf_start`; reused between fetches.
    buf: Vec<u8>,
    buf_start: u64,
    /// Size of the next fetch: small after a seek, doubling while reads
    /// stay sequential, up to `max_block`.
    block: usize,
    min_block: usize,
    max_block: usize,
    /// Distinct bytes of the dump read so far, shared with the progress
    /// reporter (a region read twice, e.g. a zip's central directory, counts
    /// once, so progress never passes the dump's size).
    fetched: Arc<AtomicU64>,
    covered: Covered,
}

/// The union of the byte ranges read: sorted, disjoint, merged when they
/// touch. Reads are mostly sequential, so it stays a handful of ranges.
#[derive(Debug, Default)]
struct Covered(Vec<(u64, u64)>);

impl Covered {
    /// Adds `start..end`; returns how many of its bytes were not covered.
    fn add(&mut self, start: u64, end: u64) -> u64 {
        if start >= end {
            return 0;
        }
        let (mut lo, mut hi) = (start, end);
        let mut overlap = 0;
        let mut kept = Vec::with_capacity(self.0.len() + 1);
        for &(a, b) in &self.0 {
            if b < lo || a > hi {
                kept.push((a, b));
            } else {
                overlap += b.min(end).saturating_sub(a.max(start));
                lo = lo.min(a);
                hi = hi.max(b);
            }
        }
        kept.push((lo, hi));
        kept.sort_unstable();
        self.0 = kept;
        (end - start) - overlap
    }
}

impl RangeReader {
    /// Opens `key`: the local file when the storage is `file://`, ranged
    /// reads otherwise.
    pub(crate) fn open(
        storage: &Storage,
        key: &str,
        size: u64,
        handle: Handle,
        fetched: Arc<AtomicU64>,
    ) -> io::Result<RangeReader> {
        let (backend, min_block, max_block) = match local_path(storage, key) {
            Some(path) => (Backend::Local(File::open(path)?), 16 << 10, 1 << 20),
            None => (
                Backend::Remote {
                    storage: storage.clone(),
                    key: key.to_owned(),
                    handle,
                },
                64 << 10,
                8 << 20,
            ),
        };
        Ok(RangeReader {
            backend,
            size,
            pos: 0,
            buf: Vec::new(),
            buf_start: 0,
            block: min_block,
            min_block,
            max_block,
            fetched,
            covered: Covered::default(),
        })
    }

    fn fill(&mut self) -> io::Result<()> {
        let start = self.pos;
        let sequential = !self.buf.is_empty() && start == self.buf_start + self.buf.len() as u64;
        self.block = if sequential {
            (self.block * 2).min(self.max_block)
        } else {
            self.min_block
        };
        let end = (start + self.block as u64).min(self.size);
        let len = usize::try_from(end - start).unwrap_or(self.block);
        self.buf.clear();
        match &mut self.backend {
            Backend::Local(file) => {
                self.buf.resize(len, 0);
                read_at(file, &mut self.buf, start)?;
            }
            Backend::Remote {
                storage,
                key,
                handle,
            } => {
                let bytes: Bytes = handle
                    .block_on(storage.get_range(key, start..end))
                    .map_err(io::Error::from)?;
                self.buf.extend_from_slice(&bytes);
            }
        }
        if self.buf.len() < len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the stored dump is shorter than announced",
            ));
        }
        let new = self.covered.add(start, start + len as u64);
        self.fetched.fetch_add(new, Ordering::Relaxed);
        self.buf_start = start;
        Ok(())
    }
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    file.read_exact_at(buf, offset)
}

#[cfg(not(unix))]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    let mut f = file;
    f.seek(SeekFrom::Start(offset))?;
    f.read_exact(buf)
}

impl Read for RangeReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.size || out.is_empty() {
            return Ok(0);
        }
        let in_buf =
            self.pos >= self.buf_start && self.pos < self.buf_start + self.buf.len() as u64;
        if !in_buf {
            // A large read straight from a local file skips the buffer.
            if out.len() >= self.max_block {
                if let Backend::Local(file) = &self.backend {
                    let n = usize::try_from(self.size - self.pos)
                        .unwrap_or(usize::MAX)
                        .min(out.len());
                    let dst = out.get_mut(..n).unwrap_or_default();
                    read_at(file, dst, self.pos)?;
                    let new = self.covered.add(self.pos, self.pos + n as u64);
                    self.fetched.fetch_add(new, Ordering::Relaxed);
                    self.pos += n as u64;
                    return Ok(n);
                }
            }
            self.fill()?;
        }
        let off = (self.pos - self.buf_start) as usize;
        let avail = self.buf.get(off..).unwrap_or_default();
        let n = avail.len().min(out.len());
        if let (Some(dst), Some(src)) = (out.get_mut(..n), avail.get(..n)) {
            dst.copy_from_slice(src);
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for RangeReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let target = target
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        self.pos = target;
        Ok(target)
    }
}

/// Counts the bytes that pass, and fails past a limit: the inflated size of
/// one entry (a zip entry may not grow past its declared size) and, through
/// a shared counter, of the whole transfer.
pub(crate) struct CountingReader<R> {
    inner: R,
    read: u64,
    limit: u64,
    limit_reason: &'static str,
    total: Arc<AtomicU64>,
    total_limit: u64,
}

impl<R> CountingReader<R> {
    pub(crate) fn new(
        inner: R,
        limit: u64,
        limit_reason: &'static str,
        total: Arc<AtomicU64>,
        total_limit: u64,
    ) -> Self {
        CountingReader {
            inner,
            read: 0,
            limit,
            limit_reason,
            total,
            total_limit,
        }
    }
}

/// The error a [`CountingReader`] returns past its limits.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct LimitHit(pub String);

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(io::Error::other(LimitHit(format!(
                "{} ({} bytes)",
                self.limit_reason, self.limit
            ))));
        }
        let total = self.total.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        if total > self.total_limit {
            return Err(io::Error::other(LimitHit(format!(
                "more than {} bytes uncompressed in the dumps (limit max_total_uncompressed)",
                self.total_limit
            ))));
        }
        Ok(n)
    }
}

/// Whether an I/O error came from a [`CountingReader`] limit.
pub(crate) fn limit_hit(err: &io::Error) -> Option<String> {
    err.get_ref()
        .and_then(|e| e.downcast_ref::<LimitHit>())
        .map(|l| l.0.clone())
}

/// Counts bytes read from a compressed stream (tar.gz): for the stream's
/// compression ratio and for progress.
pub(crate) struct Tally<R> {
    pub(crate) inner: R,
    pub(crate) count: Arc<AtomicU64>,
}

impl<R: Read> Read for Tally<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Checks and normalises an entry name: `/`-separated, relative, no `..`,
/// no drive letter (`C:`), no backslash, no control characters; `.` segments and
/// one trailing `/` (directories) are dropped. Returns the name and whether
/// it named a directory.
pub(crate) fn check_name(raw: &str) -> Result<(String, bool), &'static str> {
    if raw.is_empty() {
        return Err("empty name");
    }
    if raw.contains('\\') {
        return Err("backslash in the name");
    }
    if raw.chars().any(char::is_control) {
        return Err("control character in the name");
    }
    if raw.starts_with('/') {
        return Err("absolute path");
    }
    let b = raw.as_bytes();
    if b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':' {
        return Err("drive letter");
    }
    let is_dir = raw.ends_with('/');
    let mut segments = Vec::new();
    for seg in raw.trim_end_matches('/').split('/') {
        match seg {
            "" => return Err("empty path segment"),
            "." => {}
            ".." => return Err("'..' segment"),
            s => segments.push(s),
        }
    }
    if segments.is_empty() {
        return if is_dir {
            Ok((String::new(), true))
        } else {
            Err("empty name")
        };
    }
    Ok((segments.join("/"), is_dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_twice_count_once() {
        let mut c = Covered::default();
        assert_eq!(c.add(0, 10), 10);
        assert_eq!(c.add(10, 20), 10);
        assert_eq!(c.add(5, 15), 0);
        assert_eq!(c.add(90, 100), 10);
        assert_eq!(c.add(15, 95), 70);
        assert_eq!(c.0, vec![(0, 100)]);
        assert_eq!(c.add(100, 100), 0);
        assert_eq!(c.add(200, 210), 10);
        assert_eq!(c.add(0, 300), 190);
        assert_eq!(c.0, vec![(0, 300)]);
    }

    #[test]
    fn names() {
        assert_eq!(
            check_name("Takeout/a b/c.json"),
            Ok(("Takeout/a b/c.json".into(), false))
        );
        assert_eq!(check_name("./Takeout/x"), Ok(("Takeout/x".into(), false)));
        assert_eq!(check_name("Takeout/"), Ok(("Takeout".into(), true)));
        assert_eq!(check_name("./"), Ok((String::new(), true)));
        assert_eq!(check_name("a/10:30.jpg"), Ok(("a/10:30.jpg".into(), false)));
        for bad in [
            "/etc/passwd",
            "../evil",
            "a/../../evil",
            "C:\\x",
            "C:/x",
            "a\\b",
            "a//b",
            "",
            "a\u{0}b",
            "a\nb",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
