//! The baselines measured with the ordinary tools: `cat` for reading once,
//! `curl -T` for uploading once.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, ensure, Result};

/// Whether a tool runs (`TOOL --version`).
pub fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Flushes dirty pages to disk (`sync`), so that a timed phase does not pay
/// for the write-back of the one before it.
pub fn sync() {
    let _ = Command::new("sync").status();
}

/// Seconds of `cat FILES > /dev/null`.
pub fn cat_once(paths: &[PathBuf]) -> Result<f64> {
    let mut total = 0.0;
    // A few hundred paths per command, to stay far below ARG_MAX.
    for group in paths.chunks(256) {
        let t = Instant::now();
        let status = Command::new("cat")
            .args(group)
            .stdout(Stdio::null())
            .status()?;
        total += t.elapsed().as_secs_f64();
        ensure!(status.success(), "cat failed");
    }
    Ok(total)
}

/// Seconds of one `curl` command putting each file to its URL in one
/// request (`Range: 0-{size-1}`, `Content-Type: application/octet-stream`,
/// as the protocol's chunk requests), connections reused between files.
/// Every answer must be 200. Empty files are skipped.
pub fn curl_put(files: &[(PathBuf, u64, String)]) -> Result<f64> {
    let mut total = 0.0;
    let files: Vec<_> = files.iter().filter(|(_, size, _)| *size > 0).collect();
    for group in files.chunks(200) {
        let mut cmd = Command::new("curl");
        for (n, (path, size, url)) in group.iter().enumerate() {
            if n > 0 {
                cmd.arg("--next");
            }
            cmd.args(["-sS", "-o", "/dev/null", "-w", "%{http_code}\\n", "-T"])
                .arg(path)
                .args(["-H", "Content-Type: application/octet-stream"])
                .args(["-H", &format!("Range: 0-{}", size - 1)])
                .args(["-H", "Expect:"])
                .arg(url);
        }
        let t = Instant::now();
        let out = cmd.output()?;
        total += t.elapsed().as_secs_f64();
        let codes = String::from_utf8_lossy(&out.stdout);
        let ok = codes.lines().filter(|c| *c == "200").count();
        if ok != group.len() {
            bail!(
                "curl -T: {ok} of {} answered 200 ({codes:?}): {}",
                group.len(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    Ok(total)
}
