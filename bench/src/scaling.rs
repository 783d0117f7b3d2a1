//! The scaling table (issue 16): processing time and peak memory for dumps
//! of growing size. Each build runs in a child process (this binary again,
//! with `--scaling-child`), so that its `VmHWM` is the build's alone and not
//! the benchmark's other phases'.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use processor::extract::{build_archives, BuildOptions, Catalog, DumpSource};
use protocol::scope::Scope;
use runtime::storage::{S3Settings, Storage};

use crate::baseline;
use crate::micro::{self, SCOPES};

/// One build of the scaling table.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    /// Dump bytes read.
    pub dump_bytes: u64,
    /// Archive bytes written.
    pub out_bytes: u64,
    /// Seconds of `build_archives` in the child.
    pub build_s: f64,
    /// Peak RSS of the child (`VmHWM`, KiB), read just before it exits.
    pub peak_kib: u64,
}

fn vm_hwm_kib() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse().ok())
        .context("VmHWM in /proc/self/status")
}

/// The child's side: builds the benchmark scopes' archives from the dump
/// parts under `root/dumps/bench/google/{label}` into `root` (a `file://`
/// storage), removes them, and prints one line: dump bytes, archive bytes,
/// seconds, peak KiB.
pub async fn child(root: &Path, label: &str) -> Result<()> {
    let prefix = format!("dumps/bench/google/{label}");
    let mut parts: Vec<(String, u64)> = std::fs::read_dir(root.join(&prefix))
        .with_context(|| format!("{}", root.join(&prefix).display()))?
        .map(|e| {
            let e = e?;
            Ok((
                e.file_name().to_string_lossy().into_owned(),
                e.metadata()?.len(),
            ))
        })
        .collect::<Result<_>>()?;
    parts.sort();
    let sources: Vec<DumpSource> = parts
        .iter()
        .map(|(name, size)| DumpSource {
            provider: "google".into(),
            key: format!("{prefix}/{name}"),
            name: name.clone(),
            size: *size,
            blake2b: [0; 64],
        })
        .collect();
    let storage = Storage::from_url(
        &format!("file://{}", root.display()),
        &S3Settings::default(),
    )?;
    let catalog = Catalog::embedded()?;
    let scopes = SCOPES
        .iter()
        .map(|s| Scope::parse(s).map_err(|e| anyhow::anyhow!("{s}: {e}")))
        .collect::<Result<Vec<_>>>()?;
    let work = root.join("work");
    std::fs::create_dir_all(&work)?;
    let options = BuildOptions {
        temp_dir: Some(work),
        ..BuildOptions::default()
    };
    let out = "transfers/bench/scaling";
    let t = Instant::now();
    let built = build_archives(&storage, &catalog, &sources, &scopes, out, &options).await?;
    let secs = t.elapsed().as_secs_f64();
    let peak = vm_hwm_kib()?;
    storage.delete_prefix(out).await?;
    println!(
        "{} {} {secs} {peak}",
        parts.iter().map(|(_, s)| s).sum::<u64>(),
        built.iter().map(|b| b.size).sum::<u64>()
    );
    Ok(())
}

fn parse_child(line: &str) -> Option<Scale> {
    let mut f = line.split_whitespace();
    Some(Scale {
        dump_bytes: f.next()?.parse().ok()?,
        out_bytes: f.next()?.parse().ok()?,
        build_s: f.next()?.parse().ok()?,
        peak_kib: f.next()?.parse().ok()?,
    })
}

/// For each size: generates a media-heavy Takeout of that size under
/// `dir`, builds it in a child process (`exe --scaling-child`) after
/// `sync`, removes it and hands the figures to `done` (so that the sizes
/// measured before a failure, such as a full disk, are still reported).
pub fn builds(exe: &Path, dir: &Path, sizes: &[u64], mut done: impl FnMut(Scale)) -> Result<()> {
    for (k, &size) in sizes.iter().enumerate() {
        let label = format!("scale{k}");
        eprintln!("  generating {} MiB…", size >> 20);
        let dump = micro::generate_dump(dir, &label, size, 0.9, 5, dumpgen::ActivityForm::Json)?;
        baseline::sync();
        let run = Command::new(exe)
            .arg("--scaling-child")
            .arg(dir)
            .arg("--scaling-label")
            .arg(&label)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("starting {}", exe.display()))?;
        let stdout = String::from_utf8_lossy(&run.stdout);
        if !run.status.success() {
            bail!("the scaling build of {} MiB: {}", size >> 20, run.status);
        }
        let scale = parse_child(stdout.trim())
            .with_context(|| format!("the scaling child printed {stdout:?}"))?;
        eprintln!(
            "  {:.0} MiB in {:.2} s, peak {:.0} MiB",
            scale.dump_bytes as f64 / 1048576.0,
            scale.build_s,
            scale.peak_kib as f64 / 1024.0
        );
        done(scale);
        remove_paths(&dump.paths)?;
    }
    std::fs::remove_dir_all(dir)?;
    Ok(())
}

fn remove_paths(paths: &[PathBuf]) -> Result<()> {
    for p in paths {
        std::fs::remove_file(p)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_child_line_parses_or_is_refused() {
        let s = parse_child("1048576 524288 0.25 40960\n").expect("a full line");
        assert_eq!(s.dump_bytes, 1048576);
        assert_eq!(s.out_bytes, 524288);
        assert!((s.build_s - 0.25).abs() < 1e-9);
        assert_eq!(s.peak_kib, 40960);
        assert!(parse_child("1048576 524288 0.25").is_none());
        assert!(parse_child("a b c d").is_none());
        assert!(parse_child("").is_none());
    }
}
