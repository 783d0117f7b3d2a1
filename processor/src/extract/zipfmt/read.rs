//! Reading a zip: the end record, the central directory one record at a
//! time, and one entry's data.

use std::io::{self, BufReader, Read, Seek, SeekFrom};

use super::{
    bad, u16_at, u32_at, u64_at, CENTRAL_LEN, CENTRAL_SIG, DEFLATED, END_SIG, LOCAL_LEN, LOCAL_SIG,
    STORED, ZIP64_END_SIG, ZIP64_LOCATOR_SIG,
};

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
