//! Writing the planned files into archive parts: spread over the parts by
//! size, then written as zip or tar.gz with fixed times, so the same
//! options give the same bytes.

use std::io::{self, Seek, Write};

use flate2::write::GzEncoder;
use flate2::Compression;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

use crate::gen::{self, Planned};
use crate::options::Format;

/// Spreads files over `parts` by their approximate size, in order.
pub(crate) fn split(files: Vec<Planned>, parts: u32) -> Vec<Vec<Planned>> {
    let parts = parts.max(1) as usize;
    let total: u64 = files.iter().map(|f| f.content.approx_size()).sum();
    let share = (total / parts as u64).max(1);
    let mut out: Vec<Vec<Planned>> = (0..parts).map(|_| Vec::new()).collect();
    let mut used = 0u64;
    let mut p = 0usize;
    let n = files.len();
    for (i, f) in files.into_iter().enumerate() {
        let size = f.content.approx_size();
        let remaining_files = n - i;
        let remaining_parts = parts - p - 1;
        let full = used + size / 2 > share * (p as u64 + 1);
        let current_empty = out.get(p).is_none_or(Vec::is_empty);
        if remaining_parts > 0 && !current_empty && (full || remaining_files <= remaining_parts) {
            p += 1;
        }
        used += size;
        if let Some(part) = out.get_mut(p) {
            part.push(f);
        }
    }
    out
}

fn fixed_time() -> DateTime {
    DateTime::from_date_and_time(2025, 3, 15, 10, 11, 12).unwrap_or_default()
}

fn write_zip<W: Write + Seek>(w: W, files: &[Planned]) -> io::Result<W> {
    let mut z = ZipWriter::new(w);
    for f in files {
        let media = f.content.is_media();
        let opts = SimpleFileOptions::default()
            .compression_method(if media {
                CompressionMethod::Stored
            } else {
                CompressionMethod::Deflated
            })
            .compression_level(if media { None } else { Some(6) })
            .last_modified_time(fixed_time())
            .unix_permissions(0o644)
            .large_file(f.content.approx_size() > (3 << 30));
        z.start_file(f.path.as_str(), opts)?;
        io::copy(&mut f.content.reader(), &mut z)?;
    }
    Ok(z.finish()?)
}

fn write_tgz<W: Write>(w: W, files: &[Planned]) -> io::Result<W> {
    let gz = GzEncoder::new(w, Compression::new(6));
    let mut tar = tar::Builder::new(gz);
    tar.mode(tar::HeaderMode::Deterministic);
    for f in files {
        let size = match f.content.known_size() {
            Some(s) => s,
            None => gen::measure(f.content.reader())?,
        };
        let mut header = tar::Header::new_gnu();
        header.set_size(size);
        header.set_mode(0o644);
        header.set_mtime(1_742_033_472);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, f.path.as_str(), f.content.reader())?;
    }
    tar.into_inner()?.finish()
}

pub(crate) fn write_part<W: Write + Seek>(
    w: W,
    format: Format,
    files: &[Planned],
) -> io::Result<W> {
    match format {
        Format::Zip => write_zip(w, files),
        Format::TarGz => write_tgz(w, files),
    }
}
