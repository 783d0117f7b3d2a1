//! Seeded, reproducible synthetic data exports ("dumps") laid out as the real
//! ones (`/work/shared/EXPORTS.md`): Google Takeout, Facebook "Download your
//! information" (JSON) and Amazon "Request My Data".
//!
//! The same [`Options`] always give byte-identical files: every file has its
//! own seed derived from the options' seed and its path, archive timestamps
//! are fixed, and gzip headers carry no time. Record files are generated
//! record by record and media in chunks, so [`write_to_dir`] writes
//! multi-GiB dumps with bounded memory.
//!
//! ```no_run
//! let opts = dumpgen::Options { target_bytes: 2 << 20, ..dumpgen::Options::default() };
//! for (name, bytes) in dumpgen::generate(&opts)? {
//!     println!("{name}: {} bytes", bytes.len());
//! }
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! What each provider holds (paths as EXPORTS.md):
//! * **Google** — `Takeout/My Activity/{Search,Assistant,YouTube}/MyActivity.json`
//!   (Assistant with MP3 recordings named in `audioFiles`),
//!   `YouTube and YouTube Music/history/{watch,search}-history.json`
//!   (legacy: `Takeout/YouTube/…` with a few `{"snippet"}` items),
//!   `Chrome/History.json` (legacy `BrowserHistory.json`), `Location History
//!   (Timeline)/Records.json` + `Semantic Location History/YYYY/YYYY_MONTH.json`
//!   (legacy `Location History/`, `timestampMs`), `Google Photos/Photos from
//!   YYYY/` and an album folder with JPEG/MP4 media and sidecars
//!   (`.supplemental-metadata.json`, cut names, `(1)` duplicates, `-edited`
//!   copies; legacy `.json`), `Contacts/*/…vcf` + a contact photo, `Mail/All
//!   mail Including Spam and Trash.mbox`. With `activity: Html` (`--activity
//!   html`) My Activity and the YouTube histories are Takeout's default HTML
//!   (`MyActivity.html`, `watch-history.html`) holding the same records as
//!   the JSON form of the same seed, dates in one of the three forms of
//!   EXPORTS.md §1.1 (seed % 3); `language: De | Nl` (`--language de`)
//!   writes the German or Dutch folder and file names.
//! * **Facebook** — posts (with photos), an album, comments, likes and
//!   reactions, friends, two message threads (one with photos), profile;
//!   current layout `your_facebook_activity/…` or the ~2019–20 one (legacy).
//!   Strings are mojibake-escaped as Facebook writes them.
//! * **Amazon** — `Retail.OrderHistory.{1,2}/…csv` (BOM, all quoted,
//!   multi-line addresses, `Not Available`, ` and `-joined dates; legacy
//!   `MM/DD/YYYY HH:MM:SS UTC`), `Digital-Ordering.1/{Digital Items,Digital
//!   Orders}.csv`, `Audible.Library/…csv` (`DD-MON-YYYY`),
//!   `Audible.Listening/…csv`, and `Alexa.VoiceHistory/` (CSV + MP3; this
//!   layout is invented, EXPORTS.md §3.3 has none).

mod amazon;
mod facebook;
mod gen;
mod google;
mod google_html;
mod util;

use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Cursor, Seek, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use flate2::write::GzEncoder;
use flate2::Compression;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

use gen::{ItemFn, Planned, StreamSpec};
use util::{alnum, sub_seed, tm};

/// Which provider's export to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Provider {
    /// Google Takeout.
    Google,
    /// Facebook "Download your information" (JSON).
    Facebook,
    /// Amazon "Request My Data".
    Amazon,
}

impl Provider {
    /// The provider name as scopes write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Google => "google",
            Provider::Facebook => "facebook",
            Provider::Amazon => "amazon",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Provider {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Provider> {
        Ok(match s {
            "google" => Provider::Google,
            "facebook" => Provider::Facebook,
            "amazon" => Provider::Amazon,
            other => bail!("unknown provider {other:?} (google, facebook, amazon)"),
        })
    }
}

/// The container of each part.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// `.zip`: text deflated (level 6), media stored.
    Zip,
    /// `.tgz`: a gzip-compressed tar (GNU headers).
    TarGz,
}

impl Format {
    fn extension(self) -> &'static str {
        match self {
            Format::Zip => "zip",
            Format::TarGz => "tgz",
        }
    }
}

impl FromStr for Format {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Format> {
        Ok(match s {
            "zip" => Format::Zip,
            "tgz" | "tar.gz" | "targz" => Format::TarGz,
            other => bail!("unknown format {other:?} (zip, tgz)"),
        })
    }
}

/// Which generation of the provider's layout (EXPORTS.md "eras").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Era {
    /// The layout of 2024–26 exports.
    #[default]
    Current,
    /// An older layout: Google ~2021 (`BrowserHistory.json`, `Location
    /// History/`, `timestampMs`, `.json` sidecars, `Takeout/YouTube/`),
    /// Facebook ~2019–20, Amazon ~2021–22 (`Title`, `YYYY-MM-DD`, US dates).
    Legacy,
}

impl FromStr for Era {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Era> {
        Ok(match s {
            "current" => Era::Current,
            "legacy" => Era::Legacy,
            other => bail!("unknown era {other:?} (current, legacy)"),
        })
    }
}

/// The account language of a Google Takeout: its folder and file names
/// (EXPORTS.md §0 "Localisation") and the dates of its HTML files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Language {
    /// English names (`My Activity/Search/MyActivity.json`).
    #[default]
    En,
    /// German (`Meine Aktivitäten/Suche/MeineAktivitäten.json`,
    /// `YouTube und YouTube Music/Verlauf/Wiedergabeverlauf.json`).
    De,
    /// Dutch (`YouTube en YouTube Music/geschiedenis/kijkgeschiedenis.json`;
    /// HTML dates `15 jun 2026, 20:30:41 CEST`).
    Nl,
}

impl FromStr for Language {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Language> {
        Ok(match s {
            "en" => Language::En,
            "de" => Language::De,
            "nl" => Language::Nl,
            other => bail!("unknown language {other:?} (en, de, nl)"),
        })
    }
}

/// The form of Google's My Activity and YouTube history files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ActivityForm {
    /// `MyActivity.json`, `watch-history.json` (chosen by the user).
    #[default]
    Json,
    /// `MyActivity.html`, `watch-history.html` (Takeout's default): the
    /// same records, with the date form chosen by the seed.
    Html,
}

impl FromStr for ActivityForm {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<ActivityForm> {
        Ok(match s {
            "json" => ActivityForm::Json,
            "html" => ActivityForm::Html,
            other => bail!("unknown activity form {other:?} (json, html)"),
        })
    }
}

/// What to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// The provider.
    pub provider: Provider,
    /// Zip or tar.gz parts.
    pub format: Format,
    /// Seed: the same options give the same bytes.
    pub seed: u64,
    /// Approximate total size of the files inside the parts, in bytes
    /// (small values still give every file a few records).
    pub target_bytes: u64,
    /// Share of `target_bytes` that is media (0.0–1.0).
    pub media_ratio: f64,
    /// Number of parts (at least 1); files are spread in order, so a record
    /// file and its media may land in different parts.
    pub parts: u32,
    /// Layout generation.
    pub era: Era,
    /// Google: the account language (folder and file names).
    pub language: Language,
    /// Google: the form of My Activity and YouTube history.
    pub activity: ActivityForm,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            provider: Provider::Google,
            format: Format::Zip,
            seed: 1,
            target_bytes: 1 << 20,
            media_ratio: 0.5,
            parts: 1,
            era: Era::Current,
            language: Language::En,
            activity: ActivityForm::Json,
        }
    }
}

/// A part written by [`write_to_dir`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// File name, e.g. `takeout-20250315T101112Z-001.zip`.
    pub name: String,
    /// Where it was written.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
}

/// Generation context shared by the provider planners.
pub(crate) struct Ctx {
    pub seed: u64,
    pub era: Era,
    pub text_budget: u64,
    pub media_budget: u64,
    /// The moment of the export (epoch ms).
    pub export_ms: i64,
    pub language: Language,
    pub activity: ActivityForm,
}

/// Records begin 2015-01-01.
const HISTORY_START_MS: i64 = 1_420_070_400_000;

impl Ctx {
    /// A record stream of `budget` bytes whose items are about `est_item`
    /// bytes and spread from the export back to 2015.
    #[allow(clippy::too_many_arguments)]
    pub fn spec(
        &self,
        label: &str,
        budget: u64,
        prefix: Vec<u8>,
        separator: Vec<u8>,
        suffix: Vec<u8>,
        presets: Vec<Vec<u8>>,
        item: ItemFn,
        est_item: u64,
    ) -> StreamSpec {
        let count = (budget / est_item.max(1)).max(1);
        let span = (self.export_ms - HISTORY_START_MS).max(1);
        StreamSpec {
            prefix,
            separator,
            suffix,
            presets: Arc::new(presets),
            item,
            budget,
            min_items: 3,
            seed: sub_seed(self.seed, label),
            t_end: self.export_ms - 3_600_000,
            t_step: (span / i64::try_from(count).unwrap_or(i64::MAX)).max(1000),
            t_span: span,
            twin: None,
        }
    }
}

fn context(opts: &Options) -> Ctx {
    let ratio = if opts.media_ratio.is_finite() {
        opts.media_ratio.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let media = (opts.target_bytes as f64 * ratio) as u64;
    let base = match opts.era {
        Era::Current => 1_742_033_472_000, // 2025-03-15T10:11:12Z
        Era::Legacy => 1_634_972_758_000,  // 2021-10-23T07:05:58Z
    };
    let offset = (sub_seed(opts.seed, "export-time") % (30 * 86_400)) as i64 * 1000;
    Ctx {
        seed: opts.seed,
        era: opts.era,
        text_budget: opts.target_bytes.saturating_sub(media),
        media_budget: media,
        export_ms: base + offset,
        language: opts.language,
        activity: opts.activity,
    }
}

fn plan(opts: &Options) -> (Ctx, Vec<Planned>) {
    let ctx = context(opts);
    let files = match opts.provider {
        Provider::Google => google::plan(&ctx),
        Provider::Facebook => facebook::plan(&ctx),
        Provider::Amazon => amazon::plan(&ctx),
    };
    (ctx, files)
}

/// The paths inside the export, in the order they are written (all parts).
pub fn listing(opts: &Options) -> Vec<String> {
    plan(opts).1.into_iter().map(|p| p.path).collect()
}

/// The file names of the parts, in order.
pub fn part_names(opts: &Options) -> Vec<String> {
    let ctx = context(opts);
    let parts = opts.parts.max(1);
    let t = tm(ctx.export_ms);
    let ext = opts.format.extension();
    let mut rng_tag = alnum(
        &mut rand::SeedableRng::seed_from_u64(sub_seed(opts.seed, "fb-tag")),
        8,
    );
    if rng_tag.is_empty() {
        rng_tag.push('x');
    }
    (1..=parts)
        .map(|n| match opts.provider {
            Provider::Google => format!(
                "takeout-{:04}{:02}{:02}T{:02}{:02}{:02}Z-{n:03}.{ext}",
                t.year, t.month, t.day, t.hour, t.minute, t.second
            ),
            Provider::Facebook => {
                let part = if parts > 1 {
                    format!("-{n}")
                } else {
                    String::new()
                };
                format!(
                    "facebook-joexample-{:02}_{:02}_{:04}-{rng_tag}{part}.{ext}",
                    t.day, t.month, t.year
                )
            }
            Provider::Amazon => {
                let part = if parts > 1 {
                    format!("-{n}")
                } else {
                    String::new()
                };
                format!(
                    "amazon-your-orders-{:04}{:02}{:02}{part}.{ext}",
                    t.year, t.month, t.day
                )
            }
        })
        .collect()
}

/// Spreads files over `parts` by their approximate size, in order.
fn split(files: Vec<Planned>, parts: u32) -> Vec<Vec<Planned>> {
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

fn write_part<W: Write + Seek>(w: W, format: Format, files: &[Planned]) -> io::Result<W> {
    match format {
        Format::Zip => write_zip(w, files),
        Format::TarGz => write_tgz(w, files),
    }
}

/// Generates the export in memory: `(file name, bytes)` per part. Meant for
/// small dumps (tests); use [`write_to_dir`] for large ones.
pub fn generate(opts: &Options) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let (_, files) = plan(opts);
    let names = part_names(opts);
    split(files, opts.parts)
        .into_iter()
        .zip(names)
        .map(|(files, name)| {
            let bytes = write_part(Cursor::new(Vec::new()), opts.format, &files)
                .with_context(|| format!("generating {name}"))?
                .into_inner();
            Ok((name, bytes))
        })
        .collect()
}

/// Generates the export into `dir` (created when missing), streaming: memory
/// stays bounded whatever the size.
pub fn write_to_dir(opts: &Options, dir: &Path) -> anyhow::Result<Vec<Written>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let (_, files) = plan(opts);
    let names = part_names(opts);
    let mut written = Vec::new();
    for (files, name) in split(files, opts.parts).into_iter().zip(names) {
        let path = dir.join(&name);
        let file = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut out = write_part(BufWriter::with_capacity(1 << 20, file), opts.format, &files)
            .with_context(|| format!("writing {}", path.display()))?;
        out.flush()?;
        let size = std::fs::metadata(&path)?.len();
        written.push(Written { name, path, size });
    }
    Ok(written)
}

/// Reads a size such as `100M`, `1.5G`, `512K`, `1000` (binary units).
pub fn parse_size(text: &str) -> anyhow::Result<u64> {
    let t = text.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                'B' => 1,
                _ => bail!("bad size unit in {text:?}"),
            };
            (t.get(..i).unwrap_or(""), m)
        }
        _ => (t, 1),
    };
    let n: f64 = num
        .trim()
        .parse()
        .with_context(|| format!("bad size {text:?}"))?;
    if !n.is_finite() || n < 0.0 {
        bail!("bad size {text:?}");
    }
    Ok((n * mult as f64) as u64)
}

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
fn photo_library_part<W: Write + Seek>(w: W, from: u64, to: u64, seed: u64) -> anyhow::Result<W> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn small(provider: Provider, format: Format) -> Options {
        Options {
            provider,
            format,
            seed: 7,
            target_bytes: 300_000,
            media_ratio: 0.5,
            parts: 1,
            era: Era::Current,
            language: Language::En,
            activity: ActivityForm::Json,
        }
    }

    #[test]
    fn same_options_same_bytes() {
        for p in [Provider::Google, Provider::Facebook, Provider::Amazon] {
            for f in [Format::Zip, Format::TarGz] {
                let o = small(p, f);
                assert_eq!(generate(&o).unwrap(), generate(&o).unwrap(), "{p} {f:?}");
            }
        }
    }

    #[test]
    fn other_seed_other_bytes() {
        let a = small(Provider::Google, Format::Zip);
        let b = Options {
            seed: 8,
            ..a.clone()
        };
        assert_ne!(generate(&a).unwrap(), generate(&b).unwrap());
    }

    #[test]
    fn write_to_dir_equals_generate() {
        let dir = tempfile::tempdir().unwrap();
        let o = Options {
            parts: 3,
            ..small(Provider::Google, Format::Zip)
        };
        let written = write_to_dir(&o, dir.path()).unwrap();
        let mem = generate(&o).unwrap();
        assert_eq!(written.len(), 3);
        for (w, (name, bytes)) in written.iter().zip(&mem) {
            assert_eq!(&w.name, name);
            assert_eq!(&std::fs::read(&w.path).unwrap(), bytes);
        }
        assert!(mem[0].0.ends_with("-001.zip") && mem[2].0.ends_with("-003.zip"));
    }

    #[test]
    fn size_is_roughly_the_target() {
        let o = Options {
            target_bytes: 4 << 20,
            ..small(Provider::Google, Format::Zip)
        };
        let parts = generate(&o).unwrap();
        let mut zip = zip::ZipArchive::new(Cursor::new(parts[0].1.clone())).unwrap();
        let mut total = 0u64;
        for i in 0..zip.len() {
            total += zip.by_index(i).unwrap().size();
        }
        assert!(total > 3 << 20 && total < 6 << 20, "{total}");
    }

    #[test]
    fn google_layout_and_json() {
        let o = small(Provider::Google, Format::Zip);
        let parts = generate(&o).unwrap();
        let mut zip = zip::ZipArchive::new(Cursor::new(parts[0].1.clone())).unwrap();
        let names: Vec<String> = zip.file_names().map(str::to_owned).collect();
        for want in [
            "Takeout/My Activity/Search/MyActivity.json",
            "Takeout/My Activity/Assistant/MyActivity.json",
            "Takeout/Chrome/History.json",
            "Takeout/YouTube and YouTube Music/history/watch-history.json",
            "Takeout/Location History (Timeline)/Records.json",
            "Takeout/Mail/All mail Including Spam and Trash.mbox",
            "Takeout/Contacts/All Contacts/All Contacts.vcf",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} missing");
        }
        assert!(names
            .iter()
            .any(|n| n.ends_with(".supplemental-metadata.json")));
        for name in names.iter().filter(|n| n.ends_with(".json")) {
            let mut s = String::new();
            zip.by_name(name).unwrap().read_to_string(&mut s).unwrap();
            let v: serde_json::Value =
                serde_json::from_str(&s).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(v.is_array() || v.is_object());
        }
        // Google's escapes are there.
        let mut s = String::new();
        zip.by_name("Takeout/My Activity/Search/MyActivity.json")
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert!(s.contains("\\u003d"));
        // Every audio file named in a record exists.
        let mut a = String::new();
        zip.by_name("Takeout/My Activity/Assistant/MyActivity.json")
            .unwrap()
            .read_to_string(&mut a)
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&a).unwrap();
        let mut n = 0;
        for r in v.as_array().unwrap() {
            for f in r
                .get("audioFiles")
                .and_then(|x| x.as_array())
                .into_iter()
                .flatten()
            {
                let p = format!("Takeout/My Activity/Assistant/{}", f.as_str().unwrap());
                assert!(names.contains(&p), "{p}");
                n += 1;
            }
        }
        assert!(n >= 2);
    }

    #[test]
    fn facebook_is_mojibake() {
        let o = small(Provider::Facebook, Format::Zip);
        let parts = generate(&o).unwrap();
        let mut zip = zip::ZipArchive::new(Cursor::new(parts[0].1.clone())).unwrap();
        let mut s = String::new();
        zip.by_name("personal_information/profile_information/profile_information.json")
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert!(s.contains("Ex\\u00c3\\u00a4mple"), "{s}");
        assert!(s.is_ascii());
    }

    #[test]
    fn tgz_holds_the_same_files() {
        let z = generate(&small(Provider::Amazon, Format::Zip)).unwrap();
        let t = generate(&small(Provider::Amazon, Format::TarGz)).unwrap();
        assert!(t[0].0.ends_with(".tgz"));
        let mut zip = zip::ZipArchive::new(Cursor::new(z[0].1.clone())).unwrap();
        let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(&t[0].1[..]));
        let mut n = 0;
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let mut a = Vec::new();
            e.read_to_end(&mut a).unwrap();
            let mut b = Vec::new();
            zip.by_name(&path).unwrap().read_to_end(&mut b).unwrap();
            assert_eq!(a, b, "{path}");
            n += 1;
        }
        assert_eq!(n, zip.len());
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("100M").unwrap(), 100 << 20);
        assert_eq!(parse_size("1.5G").unwrap(), 3 << 29);
        assert_eq!(parse_size("512k").unwrap(), 512 << 10);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert!(parse_size("x").is_err());
        assert!(parse_size("-1M").is_err());
    }
}
