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
mod archive;
mod facebook;
mod gen;
mod google;
mod google_html;
mod options;
mod photos;
mod util;

use std::fs::File;
use std::io::{BufWriter, Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context as _};

use archive::{split, write_part};
use gen::{ItemFn, Planned, StreamSpec};
pub use options::{ActivityForm, Era, Format, Language, Options, Provider};
pub use photos::{photo_library, write_photo_library};
use util::{alnum, sub_seed, tm};

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
