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
//!
//! The reading side is in `read.rs`, the writing side in `write.rs`; the
//! record signatures, field constants and little-endian helpers both
//! share are here.

use std::io;

mod read;
mod write;

pub(crate) use read::{open_data, read_end, seek_data, CdEntry, CentralDirectory, EndRecord};
pub(crate) use write::{Written, ZipOut};

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::io::{Cursor, Read};

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

    /// The compressed bytes of each entry of an archive, by name.
    fn raw_entries(bytes: Vec<u8>) -> Vec<(String, Vec<u8>)> {
        let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
        (0..zip.len())
            .map(|i| {
                let mut e = zip.by_index_raw(i).unwrap();
                let mut raw = Vec::new();
                e.read_to_end(&mut raw).unwrap();
                (e.name().to_owned(), raw)
            })
            .collect()
    }

    /// Archives are deterministic: an entry deflated by the compressor the
    /// entries before it used (reset) is the same bytes as one deflated by
    /// a new compressor, alone in its archive.
    #[test]
    fn a_reused_compressor_deflates_as_a_new_one() {
        let text: Vec<u8> = (0..40_000u32)
            .flat_map(|i| format!("{{\"t\":{},\"x\":\"{}\"}},", i, i % 97).into_bytes())
            .collect();
        let other: Vec<u8> = text.iter().rev().copied().collect();
        let together = raw_entries(roundtrip(&[
            ("a.json", &text, false),
            ("b.json", &other, false),
            ("c.json", &text, false),
        ]));
        let alone: Vec<(String, Vec<u8>)> = [("a.json", &text), ("b.json", &other)]
            .into_iter()
            .flat_map(|(name, body)| raw_entries(roundtrip(&[(name, body, false)])))
            .collect();
        assert_eq!(together.len(), 3);
        assert_eq!(together[0], alone[0]);
        assert_eq!(together[1], alone[1]);
        assert_eq!(together[2].1, alone[0].1);
        assert!(together[0].1.len() < text.len() / 4);
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
