//! A small reader and writer of the zip format (PKWARE APPNOTE 6.3), in
//! bounded memory whatever the number of entries.
//!
//! * [`read_end`] reads the end-of-central-directory record (and its zip64
//!   form) alone, so the entry count is known, and refused over a limit,
//!   before any entry is parsed.
//! * [`CentralDirectory`] streams the central directory one record at a
//!   time; a pass over an archive of a million entries holds one record.
//! * [`open_data`] reads one entry's local header and gives its data
//!   (raw, or inflated with its CRC-32 checked).
//! * [`ZipOut`] writes an archive: local headers patched in place once an
//!   entry's sizes are known, central directory records spilled to a
//!   temporary file as entries end, zip64 records when needed.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use flate2::{Compress, Compression, FlushCompress, Status};

use super::archive::TempFile;

const LOCAL_SIG: u32 = 0x0403_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const END_SIG: u32 = 0x0605_4b50;
const ZIP64_END_SIG: u32 = 0x0606_4b50;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
/// Fixed part of a central directory record.
const CENTRAL_LEN: u64 = 46;
/// Fixed part of a local header.
const LOCAL_LEN: u64 = 30;
/// Stored (no compression).
pub(crate) const STORED: u16 = 0;
/// Deflate.
pub(crate) const DEFLATED: u16 = 8;
/// Flag: names and comments are UTF-8.
const FLAG_UTF8: u16 = 1 << 11;
/// The zip epoch, 1980-01-01 00:00, as MS-DOS date (time is 0).
const DOS_DATE_EPOCH: u16 = (1 << 5) | 1;
/// "made by" Unix, version 3.0 (permissions in the external attributes).
const MADE_BY_UNIX: u16 = (3 << 8) | 30;
/// `-rw-r--r--` regular file, in the high half of the external attributes.
const EXTERNAL_FILE_644: u32 = 0o100_644 << 16;

fn bad(reason: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, reason.into())
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    let mut x = [0u8; 2];
    if let Some(s) = b.get(at..at + 2) {
        x.copy_from_slice(s);
    }
    u16::from_le_bytes(x)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        x.copy_from_slice(s);
    }
    u32::from_le_bytes(x)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        x.copy_from_slice(s);
    }
    u64::from_le_bytes(x)
}

/// What the end record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EndRecord {
    /// Entries in the central directory.
    pub entries: u64,
    /// Where the central directory starts.
    pub cd_offset: u64,
    /// Its size in bytes.
    pub cd_size: u64,
}

/// Reads the end-of-central-directory record of an archive of `size`
/// bytes (zip64 when the record says so), and checks that the central
/// directory it announces fits before it and can hold that many entries.
/// Nothing else is read, so the entry count can be refused before any
/// entry is parsed.
pub(crate) fn read_end<R: Read + Seek>(r: &mut R, size: u64) -> io::Result<EndRecord> {
    if size < 22 {
        return Err(bad("too short for a zip"));
    }
    let tail_len = size.min(22 + 65_535);
    let tail_start = size - tail_len;
    let mut tail = vec![0u8; usize::try_from(tail_len).unwrap_or(0)];
    r.seek(SeekFrom::Start(tail_start))?;
    r.read_exact(&mut tail)?;
    // The last signature whose comment length reaches the end of the file.
    let at = (0..=tail.len().saturating_sub(22))
        .rev()
        .find(|&i| {
            u32_at(&tail, i) == END_SIG && i + 22 + usize::from(u16_at(&tail, i + 20)) == tail.len()
        })
        .ok_or_else(|| bad("no end-of-central-directory record"))?;
    let end_pos = tail_start + at as u64;
    let rec = tail.get(at..at + 22).unwrap_or_default();
    let (disk, cd_disk) = (u16_at(rec, 4), u16_at(rec, 6));
    let (on_disk, total) = (u16_at(rec, 8), u16_at(rec, 10));
    let (cd_size, cd_offset) = (u32_at(rec, 12), u32_at(rec, 16));
    let zip64 = total == 0xffff || cd_size == 0xffff_ffff || cd_offset == 0xffff_ffff;
    let (record, limit) = if zip64 {
        if end_pos < 20 {
            return Err(bad("zip64 locator missing"));
        }
        let mut loc = [0u8; 20];
        r.seek(SeekFrom::Start(end_pos - 20))?;
        r.read_exact(&mut loc)?;
        if u32_at(&loc, 0) != ZIP64_LOCATOR_SIG {
            return Err(bad("zip64 locator missing"));
        }
        if u32_at(&loc, 4) != 0 || u32_at(&loc, 16) > 1 {
            return Err(bad("multi-disk archives are not supported"));
        }
        let z_at = u64_at(&loc, 8);
        if z_at.checked_add(56).is_none_or(|e| e > end_pos - 20) {
            return Err(bad("zip64 end record out of place"));
        }
        let mut z = [0u8; 56];
        r.seek(SeekFrom::Start(z_at))?;
        r.read_exact(&mut z)?;
        if u32_at(&z, 0) != ZIP64_END_SIG {
            return Err(bad("bad zip64 end record"));
        }
        if u32_at(&z, 16) != 0 || u32_at(&z, 20) != 0 || u64_at(&z, 24) != u64_at(&z, 32) {
            return Err(bad("multi-disk archives are not supported"));
        }
        (
            EndRecord {
                entries: u64_at(&z, 32),
                cd_size: u64_at(&z, 40),
                cd_offset: u64_at(&z, 48),
            },
            z_at,
        )
    } else {
        if disk != 0 || cd_disk != 0 || on_disk != total {
            return Err(bad("multi-disk archives are not supported"));
        }
        (
            EndRecord {
                entries: u64::from(total),
                cd_size: u64::from(cd_size),
                cd_offset: u64::from(cd_offset),
            },
            end_pos,
        )
    };
    if record
        .cd_offset
        .checked_add(record.cd_size)
        .is_none_or(|e| e > limit)
    {
        return Err(bad(
            "the central directory does not fit before its end record",
        ));
    }
    if record.entries.saturating_mul(CENTRAL_LEN) > record.cd_size {
        return Err(bad(format!(
            "{} entries announced in a central directory of {} bytes",
            record.entries, record.cd_size
        )));
    }
    Ok(record)
}

/// One central directory record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CdEntry {
    /// The name as stored (UTF-8 checked).
    pub name: String,
    /// General purpose flags.
    pub flags: u16,
    /// Compression method.
    pub method: u16,
    /// CRC-32 of the uncompressed data.
    pub crc: u32,
    /// Compressed size.
    pub csize: u64,
    /// Uncompressed size.
    pub size: u64,
    /// Offset of the local header.
    pub offset: u64,
    /// "Version made by" (high byte: host system).
    pub made_by: u16,
    /// External attributes (Unix mode in the high half).
    pub external: u32,
}

impl CdEntry {
    /// Whether the entry is encrypted.
    pub(crate) fn encrypted(&self) -> bool {
        self.flags & 1 != 0
    }

    /// Whether the entry is a symbolic link (Unix mode).
    pub(crate) fn is_symlink(&self) -> bool {
        self.made_by >> 8 == 3 && (self.external >> 16) & 0o170_000 == 0o120_000
    }

    /// The smallest span its local header and data can take: the local
    /// header is at least as long as its fixed part and name.
    pub(crate) fn min_span(&self) -> (u64, u64) {
        let end = self
            .offset
            .saturating_add(LOCAL_LEN + self.name.len() as u64)
            .saturating_add(self.csize);
        (self.offset, end)
    }
}

/// A streaming pass over a central directory.
pub(crate) struct CentralDirectory<R> {
    reader: BufReader<R>,
    left: u64,
    end: EndRecord,
    read: u64,
}

impl<R: Read + Seek> CentralDirectory<R> {
    /// Starts a pass over the directory `end` announces.
    pub(crate) fn new(mut reader: R, end: EndRecord) -> io::Result<Self> {
        reader.seek(SeekFrom::Start(end.cd_offset))?;
        Ok(CentralDirectory {
            reader: BufReader::with_capacity(64 << 10, reader),
            left: end.entries,
            end,
            read: 0,
        })
    }

    /// The next record, or `None` after the last one.
    pub(crate) fn next_entry(&mut self) -> io::Result<Option<CdEntry>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        let mut h = [0u8; 46];
        self.reader.read_exact(&mut h)?;
        if u32_at(&h, 0) != CENTRAL_SIG {
            return Err(bad("bad central directory record signature"));
        }
        let name_len = usize::from(u16_at(&h, 28));
        let extra_len = usize::from(u16_at(&h, 30));
        let comment_len = usize::from(u16_at(&h, 32));
        self.read += CENTRAL_LEN + (name_len + extra_len + comment_len) as u64;
        if self.read > self.end.cd_size {
            return Err(bad("central directory records run past its size"));
        }
        let mut var = vec![0u8; name_len + extra_len + comment_len];
        self.reader.read_exact(&mut var)?;
        let raw_name = var.get(..name_len).unwrap_or_default();
        let name = std::str::from_utf8(raw_name)
            .map_err(|_| bad("entry name is not UTF-8"))?
            .to_owned();
        let mut e = CdEntry {
            name,
            flags: u16_at(&h, 8),
            method: u16_at(&h, 10),
            crc: u32_at(&h, 16),
            csize: u64::from(u32_at(&h, 20)),
            size: u64::from(u32_at(&h, 24)),
            offset: u64::from(u32_at(&h, 42)),
            made_by: u16_at(&h, 4),
            external: u32_at(&h, 38),
        };
        let disk = u16_at(&h, 34);
        let extra = var.get(name_len..name_len + extra_len).unwrap_or_default();
        if e.size == 0xffff_ffff || e.csize == 0xffff_ffff || e.offset == 0xffff_ffff {
            let z = find_extra(extra, 0x0001).ok_or_else(|| bad("zip64 extra field missing"))?;
            let mut at = 0;
            for field in [&mut e.size, &mut e.csize, &mut e.offset] {
                if *field == 0xffff_ffff {
                    if z.len() < at + 8 {
                        return Err(bad("zip64 extra field too short"));
                    }
                    *field = u64_at(z, at);
                    at += 8;
                }
            }
        }
        if disk != 0 && disk != 0xffff {
            return Err(bad("multi-disk archives are not supported"));
        }
        Ok(Some(e))
    }
}

/// The data of the extra field block `id`.
fn find_extra(mut extra: &[u8], id: u16) -> Option<&[u8]> {
    while extra.len() >= 4 {
        let (kind, len) = (u16_at(extra, 0), usize::from(u16_at(extra, 2)));
        let data = extra.get(4..4 + len)?;
        if kind == id {
            return Some(data);
        }
        extra = extra.get(4 + len..)?;
    }
    None
}

/// Seeks `r` to the data of `e` (after its local header), checking that
/// the data ends before `limit` (the central directory).
pub(crate) fn seek_data<R: Read + Seek>(r: &mut R, e: &CdEntry, limit: u64) -> io::Result<()> {
    let mut h = [0u8; 30];
    r.seek(SeekFrom::Start(e.offset))?;
    r.read_exact(&mut h)?;
    if u32_at(&h, 0) != LOCAL_SIG {
        return Err(bad("bad local header signature"));
    }
    let var = u64::from(u16_at(&h, 26)) + u64::from(u16_at(&h, 28));
    let start = e.offset + LOCAL_LEN + var;
    if start.checked_add(e.csize).is_none_or(|end| end > limit) {
        return Err(bad("entry data runs into the central directory"));
    }
    r.seek(SeekFrom::Start(start))?;
    Ok(())
}

/// The uncompressed data of an entry, its CRC-32 checked at the end.
pub(crate) fn open_data<'a, R: Read + Seek + 'a>(
    mut r: R,
    e: &CdEntry,
    limit: u64,
) -> io::Result<Box<dyn Read + 'a>> {
    if e.encrypted() {
        return Err(bad("encrypted entry"));
    }
    seek_data(&mut r, e, limit)?;
    let raw = r.take(e.csize);
    let inner: Box<dyn Read + 'a> = match e.method {
        STORED if e.csize == e.size => Box::new(raw),
        STORED => return Err(bad("stored entry whose sizes differ")),
        DEFLATED => Box::new(flate2::read::DeflateDecoder::new_with_buf(
            raw,
            vec![0; 64 << 10],
        )),
        m => {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("unsupported compression method {m}"),
            ))
        }
    };
    Ok(Box::new(CrcCheck {
        inner,
        hasher: crc32fast::Hasher::new(),
        expected: e.crc,
        done: false,
    }))
}

struct CrcCheck<R> {
    inner: R,
    hasher: crc32fast::Hasher,
    expected: u32,
    done: bool,
}

impl<R: Read> Read for CrcCheck<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() && !self.done {
            self.done = true;
            if self.hasher.clone().finalize() != self.expected {
                return Err(bad("invalid checksum"));
            }
        }
        self.hasher.update(buf.get(..n).unwrap_or_default());
        Ok(n)
    }
}

/// An entry being written.
struct Current {
    name: String,
    header_at: u64,
    method: u16,
    large: bool,
    crc: crc32fast::Hasher,
    size: u64,
    data_start: u64,
    deflate: Option<Compress>,
}

/// What the central directory needs of a finished entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Written {
    /// Offset of the local header.
    pub header_at: u64,
    /// Compression method.
    pub method: u16,
    /// CRC-32.
    pub crc: u32,
    /// Compressed size.
    pub csize: u64,
    /// Uncompressed size.
    pub size: u64,
}

/// A zip written to a seekable file, with the central directory spilled
/// to a temporary file until [`ZipOut::finish`].
pub(crate) struct ZipOut {
    out: BufWriter<File>,
    pos: u64,
    cd: BufWriter<File>,
    _cd_temp: TempFile,
    entries: u64,
    current: Option<Current>,
    level: u32,
    buf: Vec<u8>,
}

impl ZipOut {
    /// Writes into `file` (empty) with deflate `level`; the directory spill
    /// goes to a temporary file of `dir`.
    pub(crate) fn new(file: File, dir: &Path, level: u32) -> io::Result<ZipOut> {
        let (cd_temp, cd) = TempFile::create(dir, "cd")?;
        Ok(ZipOut {
            out: BufWriter::with_capacity(256 << 10, file),
            pos: 0,
            cd: BufWriter::with_capacity(64 << 10, cd),
            _cd_temp: cd_temp,
            entries: 0,
            current: None,
            level: level.clamp(1, 9),
            buf: Vec::new(),
        })
    }

    /// Flushes what was written to the file.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    fn local_header(
        &mut self,
        name: &str,
        method: u16,
        large: bool,
        crc: u32,
        csize: u64,
        size: u64,
    ) -> io::Result<()> {
        let name_len = u16::try_from(name.len()).map_err(|_| bad("entry name too long"))?;
        let mut h = Vec::with_capacity(30 + name.len() + 20);
        h.extend_from_slice(&LOCAL_SIG.to_le_bytes());
        h.extend_from_slice(&(if large { 45u16 } else { 20u16 }).to_le_bytes());
        h.extend_from_slice(&FLAG_UTF8.to_le_bytes());
        h.extend_from_slice(&method.to_le_bytes());
        h.extend_from_slice(&0u16.to_le_bytes());
        h.extend_from_slice(&DOS_DATE_EPOCH.to_le_bytes());
        h.extend_from_slice(&crc.to_le_bytes());
        if large {
            h.extend_from_slice(&u32::MAX.to_le_bytes());
            h.extend_from_slice(&u32::MAX.to_le_bytes());
        } else {
            h.extend_from_slice(&small(csize)?.to_le_bytes());
            h.extend_from_slice(&small(size)?.to_le_bytes());
        }
        h.extend_from_slice(&name_len.to_le_bytes());
        h.extend_from_slice(&(if large { 20u16 } else { 0 }).to_le_bytes());
        h.extend_from_slice(name.as_bytes());
        if large {
            h.extend_from_slice(&1u16.to_le_bytes());
            h.extend_from_slice(&16u16.to_le_bytes());
            h.extend_from_slice(&size.to_le_bytes());
            h.extend_from_slice(&csize.to_le_bytes());
        }
        self.put(&h)
    }

    /// Starts an entry whose bytes follow with [`ZipOut::write`]: deflated,
    /// or stored when `stored`; `large` reserves zip64 sizes (needed past
    /// 4 GiB).
    pub(crate) fn start(&mut self, name: &str, stored: bool, large: bool) -> io::Result<()> {
        if self.current.is_some() {
            return Err(bad("an entry is already open"));
        }
        let method = if stored { STORED } else { DEFLATED };
        let header_at = self.pos;
        self.local_header(name, method, large, 0, 0, 0)?;
        self.current = Some(Current {
            name: name.to_owned(),
            header_at,
            method,
            large,
            crc: crc32fast::Hasher::new(),
            size: 0,
            data_start: self.pos,
            deflate: (!stored).then(|| Compress::new(Compression::new(self.level), false)),
        });
        Ok(())
    }

    /// Writes bytes of the open entry.
    pub(crate) fn write(&mut self, data: &[u8]) -> io::Result<()> {
        let mut cur = self.current.take().ok_or_else(|| bad("no entry is open"))?;
        cur.crc.update(data);
        cur.size += data.len() as u64;
        let r = match cur.deflate.as_mut() {
            None => self.put(data),
            Some(c) => self.deflate(c, data, FlushCompress::None),
        };
        self.current = Some(cur);
        r
    }

    fn deflate(
        &mut self,
        c: &mut Compress,
        mut input: &[u8],
        flush: FlushCompress,
    ) -> io::Result<()> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.resize(64 << 10, 0);
        let result = loop {
            let (in0, out0) = (c.total_in(), c.total_out());
            let status = match c.compress(input, &mut buf, flush) {
                Ok(s) => s,
                Err(e) => break Err(io::Error::other(e)),
            };
            let used = usize::try_from(c.total_in() - in0).unwrap_or(0);
            let made = usize::try_from(c.total_out() - out0).unwrap_or(0);
            input = input.get(used..).unwrap_or_default();
            if let Err(e) = self.put(buf.get(..made).unwrap_or_default()) {
                break Err(e);
            }
            let done = match flush {
                FlushCompress::Finish => status == Status::StreamEnd,
                _ => input.is_empty() && made < buf.len(),
            };
            if done {
                break Ok(());
            }
        };
        self.buf = buf;
        result
    }

    /// Ends the open entry: patches its local header, spills its central
    /// record. Returns what was written.
    pub(crate) fn end(&mut self) -> io::Result<Written> {
        let mut cur = self.current.take().ok_or_else(|| bad("no entry is open"))?;
        if let Some(mut c) = cur.deflate.take() {
            self.deflate(&mut c, &[], FlushCompress::Finish)?;
        }
        let csize = self.pos - cur.data_start;
        let crc = cur.crc.clone().finalize();
        if !cur.large && (csize >= 0xffff_ffff || cur.size >= 0xffff_ffff) {
            return Err(bad("entry larger than 4 GiB without zip64"));
        }
        // Patch CRC and sizes in place.
        let mut patch = Vec::with_capacity(12);
        patch.extend_from_slice(&crc.to_le_bytes());
        self.out.seek(SeekFrom::Start(cur.header_at + 14))?;
        if cur.large {
            self.out.write_all(&patch)?;
            let at = cur.header_at + LOCAL_LEN + cur.name.len() as u64 + 4;
            self.out.seek(SeekFrom::Start(at))?;
            self.out.write_all(&cur.size.to_le_bytes())?;
            self.out.write_all(&csize.to_le_bytes())?;
        } else {
            patch.extend_from_slice(&small(csize)?.to_le_bytes());
            patch.extend_from_slice(&small(cur.size)?.to_le_bytes());
            self.out.write_all(&patch)?;
        }
        self.out.seek(SeekFrom::Start(self.pos))?;
        let w = Written {
            header_at: cur.header_at,
            method: cur.method,
            crc,
            csize,
            size: cur.size,
        };
        self.central(&cur.name, &w)?;
        Ok(w)
    }

    /// Drops the open entry (its bytes are overwritten by the next one).
    pub(crate) fn abort(&mut self) -> io::Result<()> {
        let cur = self.current.take().ok_or_else(|| bad("no entry is open"))?;
        self.out.seek(SeekFrom::Start(cur.header_at))?;
        self.pos = cur.header_at;
        Ok(())
    }

    /// Copies an entry's compressed bytes as they are (`data` gives exactly
    /// `csize` bytes).
    pub(crate) fn raw_copy(
        &mut self,
        name: &str,
        method: u16,
        crc: u32,
        csize: u64,
        size: u64,
        data: &mut dyn Read,
    ) -> io::Result<Written> {
        if self.current.is_some() {
            return Err(bad("an entry is already open"));
        }
        let large = csize >= 0xffff_ffff || size >= 0xffff_ffff;
        let header_at = self.pos;
        self.local_header(name, method, large, crc, csize, size)?;
        let copied = io::copy(&mut data.take(csize), &mut self.out)?;
        self.pos += copied;
        if copied != csize {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "entry data shorter than its compressed size",
            ));
        }
        let w = Written {
            header_at,
            method,
            crc,
            csize,
            size,
        };
        self.central(name, &w)?;
        Ok(w)
    }

    fn central(&mut self, name: &str, w: &Written) -> io::Result<()> {
        let name_len = u16::try_from(name.len()).map_err(|_| bad("entry name too long"))?;
        let mut z64 = Vec::new();
        let mut field = |v: u64| -> u32 {
            if v >= 0xffff_ffff {
                z64.extend_from_slice(&v.to_le_bytes());
                u32::MAX
            } else {
                u32::try_from(v).unwrap_or(u32::MAX)
            }
        };
        let (size, csize, offset) = (field(w.size), field(w.csize), field(w.header_at));
        let mut h = Vec::with_capacity(46 + name.len() + 28);
        h.extend_from_slice(&CENTRAL_SIG.to_le_bytes());
        h.extend_from_slice(&MADE_BY_UNIX.to_le_bytes());
        h.extend_from_slice(&(if z64.is_empty() { 20u16 } else { 45 }).to_le_bytes());
        h.extend_from_slice(&FLAG_UTF8.to_le_bytes());
        h.extend_from_slice(&w.method.to_le_bytes());
        h.extend_from_slice(&0u16.to_le_bytes());
        h.extend_from_slice(&DOS_DATE_EPOCH.to_le_bytes());
        h.extend_from_slice(&w.crc.to_le_bytes());
        h.extend_from_slice(&csize.to_le_bytes());
        h.extend_from_slice(&size.to_le_bytes());
        h.extend_from_slice(&name_len.to_le_bytes());
        let extra_len = if z64.is_empty() { 0 } else { 4 + z64.len() };
        h.extend_from_slice(&u16::try_from(extra_len).unwrap_or(0).to_le_bytes());
        h.extend_from_slice(&[0; 6]); // comment length, disk, internal attributes
        h.extend_from_slice(&EXTERNAL_FILE_644.to_le_bytes());
        h.extend_from_slice(&offset.to_le_bytes());
        h.extend_from_slice(name.as_bytes());
        if !z64.is_empty() {
            h.extend_from_slice(&1u16.to_le_bytes());
            h.extend_from_slice(&u16::try_from(z64.len()).unwrap_or(0).to_le_bytes());
            h.extend_from_slice(&z64);
        }
        self.cd.write_all(&h)?;
        self.entries += 1;
        Ok(())
    }

    /// Writes the central directory and the end records; cuts the file
    /// where the archive ends.
    pub(crate) fn finish(mut self) -> io::Result<()> {
        if self.current.is_some() {
            return Err(bad("an entry is still open"));
        }
        let cd_offset = self.pos;
        let spill = self.cd.into_inner().map_err(|e| e.into_error())?;
        let mut spill = BufReader::new(spill);
        spill.seek(SeekFrom::Start(0))?;
        let cd_size = io::copy(&mut spill, &mut self.out)?;
        self.pos += cd_size;
        let zip64 = self.entries >= 0xffff || cd_offset >= 0xffff_ffff || cd_size >= 0xffff_ffff;
        let mut t = Vec::with_capacity(98);
        if zip64 {
            let z_at = self.pos;
            t.extend_from_slice(&ZIP64_END_SIG.to_le_bytes());
            t.extend_from_slice(&44u64.to_le_bytes());
            t.extend_from_slice(&MADE_BY_UNIX.to_le_bytes());
            t.extend_from_slice(&45u16.to_le_bytes());
            t.extend_from_slice(&[0; 8]); // disk numbers
            t.extend_from_slice(&self.entries.to_le_bytes());
            t.extend_from_slice(&self.entries.to_le_bytes());
            t.extend_from_slice(&cd_size.to_le_bytes());
            t.extend_from_slice(&cd_offset.to_le_bytes());
            t.extend_from_slice(&ZIP64_LOCATOR_SIG.to_le_bytes());
            t.extend_from_slice(&0u32.to_le_bytes());
            t.extend_from_slice(&z_at.to_le_bytes());
            t.extend_from_slice(&1u32.to_le_bytes());
        }
        let count = u16::try_from(self.entries)
            .ok()
            .filter(|_| !zip64)
            .unwrap_or(0xffff);
        let clip = |v: u64| u32::try_from(v).ok().filter(|_| !zip64).unwrap_or(u32::MAX);
        t.extend_from_slice(&END_SIG.to_le_bytes());
        t.extend_from_slice(&[0; 4]);
        t.extend_from_slice(&count.to_le_bytes());
        t.extend_from_slice(&count.to_le_bytes());
        t.extend_from_slice(&clip(cd_size).to_le_bytes());
        t.extend_from_slice(&clip(cd_offset).to_le_bytes());
        t.extend_from_slice(&0u16.to_le_bytes());
        self.out.write_all(&t)?;
        self.pos += t.len() as u64;
        self.out.flush()?;
        let file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.set_len(self.pos)?;
        Ok(())
    }
}

fn small(v: u64) -> io::Result<u32> {
    u32::try_from(v)
        .ok()
        .filter(|v| *v != u32::MAX)
        .ok_or_else(|| bad("entry larger than 4 GiB without zip64"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn roundtrip(entries: &[(&str, &[u8], bool)]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.zip");
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        let mut z = ZipOut::new(file, dir.path(), 6).unwrap();
        for (name, body, stored) in entries {
            z.start(name, *stored, false).unwrap();
            for chunk in body.chunks(1000) {
                z.write(chunk).unwrap();
            }
            z.end().unwrap();
        }
        z.finish().unwrap();
        std::fs::read(&path).unwrap()
    }

    #[test]
    fn written_archives_read_back_with_the_zip_crate_and_ours() {
        let big: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let bytes = roundtrip(&[
            ("a.json", b"[1,2,3]", false),
            ("b/c.jpg", &big, true),
            ("d", &big, false),
            ("e", b"", false),
        ]);
        let mut theirs = zip::ZipArchive::new(Cursor::new(bytes.clone())).unwrap();
        assert_eq!(theirs.len(), 4);
        let mut body = Vec::new();
        theirs.by_name("d").unwrap().read_to_end(&mut body).unwrap();
        assert_eq!(body, big);
        let mut r = Cursor::new(bytes);
        let size = r.get_ref().len() as u64;
        let end = read_end(&mut r, size).unwrap();
        assert_eq!(end.entries, 4);
        let mut cd = CentralDirectory::new(Cursor::new(r.get_ref().clone()), end).unwrap();
        let mut names = Vec::new();
        while let Some(e) = cd.next_entry().unwrap() {
            let mut body = Vec::new();
            open_data(&mut r, &e, end.cd_offset)
                .unwrap()
                .read_to_end(&mut body)
                .unwrap();
            assert_eq!(body.len() as u64, e.size);
            names.push(e.name);
        }
        assert_eq!(names, ["a.json", "b/c.jpg", "d", "e"]);
    }

    #[test]
    fn many_entries_use_zip64_end_records() {
        let names: Vec<String> = (0..70_000).map(|i| format!("f{i}")).collect();
        let entries: Vec<(&str, &[u8], bool)> = names
            .iter()
            .map(|n| (n.as_str(), &b"x"[..], true))
            .collect();
        let bytes = roundtrip(&entries);
        let size = bytes.len() as u64;
        let end = read_end(&mut Cursor::new(&bytes), size).unwrap();
        assert_eq!(end.entries, 70_000);
        assert_eq!(
            zip::ZipArchive::new(Cursor::new(bytes)).unwrap().len(),
            70_000
        );
    }

    #[test]
    fn aborted_entries_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.zip");
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        let mut z = ZipOut::new(file, dir.path(), 6).unwrap();
        z.start("gone", false, false).unwrap();
        z.write(&[7; 100_000]).unwrap();
        z.abort().unwrap();
        z.start("kept", false, false).unwrap();
        z.write(b"hello").unwrap();
        z.end().unwrap();
        z.finish().unwrap();
        let mut a = zip::ZipArchive::new(File::open(&path).unwrap()).unwrap();
        assert_eq!(a.len(), 1);
        let mut s = String::new();
        a.by_name("kept").unwrap().read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello");
    }

    #[test]
    fn bad_end_records_are_refused() {
        let bytes = roundtrip(&[("a", b"x", true)]);
        let size = bytes.len() as u64;
        // Announce 60000 entries in a directory of one record.
        let mut lie = bytes.clone();
        let at = lie.len() - 22;
        lie[at + 8..at + 12].copy_from_slice(&[0x60, 0xea, 0x60, 0xea]);
        assert!(read_end(&mut Cursor::new(&lie), size).is_err());
        assert!(read_end(&mut Cursor::new(&bytes[..10]), 10).is_err());
        let mut cut = bytes.clone();
        cut.truncate(size as usize - 5);
        assert!(read_end(&mut Cursor::new(&cut), size - 5).is_err());
    }
}
