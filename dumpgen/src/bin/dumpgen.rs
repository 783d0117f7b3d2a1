//! `dumpgen`: writes a seeded synthetic export to a directory.
//!
//! ```text
//! dumpgen --provider google --size 100M --seed 1 --format zip --out DIR
//! dumpgen --photo-entries 300000 --parts 2 --out DIR   # many small files
//! ```

use std::path::PathBuf;

use clap::Parser;
use dumpgen::{Era, Format, Options, Provider};

/// Writes a reproducible synthetic Google, Facebook or Amazon export.
#[derive(Parser, Debug)]
#[command(name = "dumpgen", version)]
struct Args {
    /// google, facebook or amazon.
    #[arg(long, default_value = "google")]
    provider: Provider,
    /// Approximate total size of the files inside the export (K, M, G).
    #[arg(long, default_value = "10M", value_parser = dumpgen::parse_size)]
    size: u64,
    /// Seed; the same arguments give byte-identical files.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// zip or tgz.
    #[arg(long, default_value = "zip")]
    format: Format,
    /// Share of the size that is media, 0.0–1.0.
    #[arg(long, default_value_t = 0.5)]
    media_ratio: f64,
    /// Number of parts (`-001`, `-002`…).
    #[arg(long, default_value_t = 1)]
    parts: u32,
    /// current or legacy layout.
    #[arg(long, default_value = "current")]
    era: Era,
    /// Instead of a sized export: a Google Photos library of this many
    /// small entries (photos and sidecars), zip only.
    #[arg(long)]
    photo_entries: Option<u64>,
    /// Google: account language of folder and file names (en, de, nl).
    #[arg(long, default_value = "en")]
    language: dumpgen::Language,
    /// Google: form of My Activity and YouTube history (json, html).
    #[arg(long, default_value = "json")]
    activity: dumpgen::ActivityForm,
    /// Output directory (created when missing).
    #[arg(long)]
    out: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(entries) = args.photo_entries {
        for w in dumpgen::write_photo_library(&args.out, entries, args.parts, args.seed)? {
            println!("{}\t{}", w.size, w.path.display());
        }
        return Ok(());
    }
    let opts = Options {
        provider: args.provider,
        format: args.format,
        seed: args.seed,
        target_bytes: args.size,
        media_ratio: args.media_ratio,
        parts: args.parts,
        era: args.era,
        language: args.language,
        activity: args.activity,
    };
    for w in dumpgen::write_to_dir(&opts, &args.out)? {
        println!("{}\t{}", w.size, w.path.display());
    }
    Ok(())
}
