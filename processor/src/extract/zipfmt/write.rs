//! Writing a zip: local headers patched in place, the central directory
//! spilled (to a temporary file past a bound), zip64 records when needed.

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use flate2::{Compress, Compression, FlushCompress, Status};

use super::{
    bad, CENTRAL_SIG, DEFLATED, DOS_DATE_EPOCH, END_SIG, EXTERNAL_FILE_644, FLAG_UTF8, LOCAL_LEN,
    LOCAL_SIG, MADE_BY_UNIX, STORED, ZIP64_END_SIG, ZIP64_LOCATOR_SIG,
};
use crate::extract::archive::Spill;

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

/// A zip written to a seekable file, with the central directory in a [`Spill`]
/// until [`ZipOut::finish`].
pub(crate) struct ZipOut {
    out: BufWriter<File>,
    pos: u64,
    cd: Spill,
    entries: u64,
    current: Option<Current>,
    level: u32,
    buf: Vec<u8>,
    /// The compressor of the last deflated entry, reset for the next one:
    /// its state (window, hash chains; about 300 KiB) is allocated once per
    /// archive rather than once per entry. A reset compressor writes the
    /// same bytes as a new one.
    spare: Option<Compress>,
}

impl ZipOut {
    /// Writes into `file` (empty) with deflate `level`; the directory spill
    /// goes to a temporary file of `dir`.
    pub(crate) fn new(file: File, dir: &Path, level: u32) -> io::Result<ZipOut> {
        Ok(ZipOut {
            out: BufWriter::with_capacity(256 << 10, file),
            pos: 0,
            cd: Spill::new(dir, "cd"),
            entries: 0,
            current: None,
            level: level.clamp(1, 9),
            buf: Vec::new(),
            spare: None,
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
            deflate: (!stored).then(|| self.compressor()),
        });
        Ok(())
    }

    /// A compressor at this archive's level: the spare one, reset, or a new
    /// one.
    fn compressor(&mut self) -> Compress {
        match self.spare.take() {
            Some(mut c) => {
                c.reset();
                c
            }
            None => Compress::new(Compression::new(self.level), false),
        }
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
            self.spare = Some(c);
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
        let cd_size = io::copy(&mut self.cd.reader()?, &mut self.out)?;
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
