//! The shell route beside `build_archives` (issue 16): what a person with
//! `cp`, `unzip` and `zip` would do with the same dump — copy it, or unpack
//! it and pack it again (media stored, or everything deflated) — with no
//! filtering at all. Timed once each, after `sync`, in a scratch directory
//! removed afterwards.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{ensure, Context, Result};

use crate::baseline;

/// The suffixes `zip -n` stores instead of deflating (the media of a Takeout).
pub const STORED_SUFFIXES: &str = ".jpg:.jpeg:.png:.gif:.heic:.mp4:.mov";

/// One step of the shell route.
#[derive(Debug, Clone)]
pub struct Step {
    /// What was run, for the table.
    pub what: String,
    /// Seconds, or why the step was skipped.
    pub secs: Result<f64, String>,
    /// Bytes the step wrote (the copy or the new zip), when it ran.
    pub out_bytes: u64,
}

/// Whether `tool` is on the `PATH` (`which TOOL`).
pub fn on_path(tool: &str) -> bool {
    Command::new("which")
        .arg(tool)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| format!("{cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?}: {} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// `unzip` every part into one tree, then `zip -r` that tree into one
/// archive with `zip_args`; seconds of both together (after `sync`) and the
/// size of the new archive.
fn repack(parts: &[PathBuf], scratch: &Path, zip_args: &[&str]) -> Result<(f64, u64)> {
    let tree = scratch.join("tree");
    let out = scratch.join("repacked.zip");
    std::fs::create_dir_all(&tree)?;
    baseline::sync();
    let t = Instant::now();
    for part in parts {
        run(Command::new("unzip")
            .args(["-q", "-o"])
            .arg(part)
            .arg("-d")
            .arg(&tree))?;
    }
    run(Command::new("zip")
        .args(["-q", "-r"])
        .args(zip_args)
        .arg(&out)
        .arg(".")
        .current_dir(&tree))?;
    let secs = t.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(&out)?.len();
    std::fs::remove_dir_all(&tree)?;
    std::fs::remove_file(&out)?;
    Ok((secs, bytes))
}

/// The three steps on the dump `parts`: `cp` of the parts, `unzip` + `zip
/// -n` (media stored) and `unzip` + `zip` (default deflate). A step whose
/// tool is missing is skipped with the reason; `scratch` is removed at the
/// end.
pub fn shell_route(parts: &[PathBuf], scratch: &Path) -> Result<Vec<Step>> {
    std::fs::create_dir_all(scratch)?;
    let mut steps = Vec::new();
    let copy = scratch.join("cp");
    std::fs::create_dir_all(&copy)?;
    baseline::sync();
    let t = Instant::now();
    run(Command::new("cp").args(parts).arg(&copy))?;
    let secs = t.elapsed().as_secs_f64();
    steps.push(Step {
        what: "`cp` of the dump".into(),
        secs: Ok(secs),
        out_bytes: dir_bytes(&copy),
    });
    std::fs::remove_dir_all(&copy)?;

    let missing: Vec<&str> = ["unzip", "zip"]
        .into_iter()
        .filter(|t| !on_path(t))
        .collect();
    let stored = format!("-n {STORED_SUFFIXES}");
    for (what, args) in [
        (
            format!("`unzip` + `zip -r {stored}` (media stored)"),
            vec!["-n", STORED_SUFFIXES],
        ),
        ("`unzip` + `zip -r` (default deflate)".to_owned(), vec![]),
    ] {
        if !missing.is_empty() {
            steps.push(Step {
                what,
                secs: Err(format!("skipped: {} not installed", missing.join(", "))),
                out_bytes: 0,
            });
            continue;
        }
        let (secs, out_bytes) = repack(parts, scratch, &args)?;
        steps.push(Step {
            what,
            secs: Ok(secs),
            out_bytes,
        });
    }
    std::fs::remove_dir_all(scratch)?;
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_missing_tool_is_not_on_the_path() {
        assert!(on_path("sh"));
        assert!(!on_path("no-such-tool-alias-bench"));
    }

    #[test]
    fn the_route_times_each_step_and_removes_its_scratch() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let part = dir.path().join("part.zip");
        {
            let mut z = zip::ZipWriter::new(std::fs::File::create(&part)?);
            z.start_file("Takeout/a.json", zip::write::SimpleFileOptions::default())?;
            z.write_all(b"{\"a\": 1}")?;
            z.start_file("Takeout/b.jpg", zip::write::SimpleFileOptions::default())?;
            z.write_all(&[7u8; 4096])?;
            z.finish()?;
        }
        let scratch = dir.path().join("scratch");
        let steps = shell_route(std::slice::from_ref(&part), &scratch)?;
        assert_eq!(steps.len(), 3);
        assert!(steps[0].secs.is_ok());
        assert_eq!(steps[0].out_bytes, std::fs::metadata(&part)?.len());
        for s in &steps[1..] {
            match &s.secs {
                Ok(_) => assert!(s.out_bytes > 0, "{s:?}"),
                Err(why) => assert!(why.contains("not installed"), "{why}"),
            }
        }
        assert!(!scratch.exists());
        Ok(())
    }
}
