//! Google Photos libraries of many small entries, for limit and memory
//! measurements.

use std::fs::File;
use std::io::{BufWriter, Cursor, Seek, Write};
use std::path::Path;

use anyhow::Context as _;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

use crate::util::sub_seed;
use crate::Written;

/// A Google Photos library of `entries` small files as a Takeout export
/// (for limits and memory measurements: the count of entries, not their
/// size, is what matters): `Takeout/Google Photos/Photos from YYYY/` with
/// `IMG_nnnnnnn.jpg` (a few dozen seeded bytes, stored) and its
/// `.supplemental-metadata.json` sidecar (deflated), alternately, spread
/// over `parts` zip parts named `takeout-20250101T000000Z-00N.zip`.
/// Writes the parts into `dir` and returns them.
pub fn write_photo_library(
    dir: &Path,
    entries: u64,
    parts: u32,
    seed: u64,
) -> anyhow::Result<Vec<Written>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let parts = parts.max(1);
    let per_part = entries.div_ceil(u64::from(parts));
    let mut out = Vec::new();
    let mut next = 0u64;
    for p in 1..=parts {
        let name = format!("takeout-20250101T000000Z-{p:03}.zip");
        let path = dir.join(&name);
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let end = (next + per_part).min(entries);
        let w = photo_library_part(BufWriter::with_capacity(1 << 20, file), next, end, seed)?;
        w.into_inner()
            .map_err(|e| anyhow::anyhow!("{}", e.error()))?;
        next = end;
        let size = std::fs::metadata(&path)?.len();
        out.push(Written { name, path, size });
    }
    Ok(out)
}

/// As [`write_photo_library`], in memory: `(name, bytes)` per part.
pub fn photo_library(
    entries: u64,
    parts: u32,
    seed: u64,
) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let parts = parts.max(1);
    let per_part = entries.div_ceil(u64::from(parts));
    let mut out = Vec::new();
    let mut next = 0u64;
    for p in 1..=parts {
        let end = (next + per_part).min(entries);
        let cursor = photo_library_part(Cursor::new(Vec::new()), next, end, seed)?;
        out.push((
            format!("takeout-20250101T000000Z-{p:03}.zip"),
            cursor.into_inner(),
        ));
        next = end;
    }
    Ok(out)
}

/// Entries `from..to` of a photo library (entry `2k` is photo `k`, entry
/// `2k + 1` its sidecar).
pub(crate) fn photo_library_part<W: Write + Seek>(
    w: W,
    from: u64,
    to: u64,
    seed: u64,
) -> anyhow::Result<W> {
    let mut zip = ZipWriter::new(w);
    let stored = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Stored)
        .last_modified_time(DateTime::default());
    let deflated = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .compression_level(Some(6))
        .last_modified_time(DateTime::default());
    for i in from..to {
        let k = i / 2;
        // 2010-01-01 plus k hours: a few years of photos.
        let taken = 1_262_304_000 + k * 3600;
        let year = 1970 + taken / 31_556_952;
        let folder = format!("Takeout/Google Photos/Photos from {year}");
        let photo = format!("IMG_{k:07}.jpg");
        if i % 2 == 0 {
            zip.start_file(format!("{folder}/{photo}"), stored)?;
            let mut body = vec![0xff, 0xd8, 0xff, 0xe0];
            let mut x = sub_seed(seed, &photo);
            for _ in 0..6 {
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                body.extend_from_slice(&x.to_le_bytes());
            }
            body.extend_from_slice(&[0xff, 0xd9]);
            zip.write_all(&body)?;
        } else {
            zip.start_file(
                format!("{folder}/{photo}.supplemental-metadata.json"),
                deflated,
            )?;
            let sidecar = serde_json::json!({
                "title": photo,
                "description": "",
                "photoTakenTime": {"timestamp": taken.to_string()},
                "creationTime": {"timestamp": (taken + 60).to_string()},
            });
            zip.write_all(serde_json::to_string_pretty(&sidecar)?.as_bytes())?;
        }
    }
    Ok(zip.finish()?)
}
