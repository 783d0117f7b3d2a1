//! Runs the extraction of one scope on a dump file, as a processor job
//! does, and prints the process's peak resident memory (VmHWM).
//!
//! ```text
//! cargo run -p alias-processor --example peak_rss -- DUMP.zip [SCOPE] [WORK_DIR]
//! ```
//!
//! The dump is read from a `file://` storage (a symbolic link to it) and
//! the archives are written under WORK_DIR (the system's temporary
//! directory by default). Exit status 0 when the build succeeded, 1 when it
//! was refused (the error is printed), 2 on bad arguments.

use std::path::PathBuf;
use std::time::Instant;

use processor::extract::{build_archives, BuildOptions, Catalog, DumpSource};
use protocol::scope::Scope;
use runtime::storage::{S3Settings, Storage};

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dump) = args.first().map(PathBuf::from) else {
        eprintln!("usage: peak_rss DUMP.zip [SCOPE] [WORK_DIR]");
        return std::process::ExitCode::from(2);
    };
    let scope = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "google.photos".into());
    let work = args
        .get(2)
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("runtime: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async move {
        let dump = std::fs::canonicalize(&dump)?;
        let root = tempdir_in(&work)?;
        let name = dump
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| anyhow::anyhow!("bad dump name"))?
            .to_owned();
        let key = format!("dumps/u/google/{name}");
        let link = root.join(&key);
        if let Some(parent) = link.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::os::unix::fs::symlink(&dump, &link)?;
        let storage = Storage::from_url(
            &format!("file://{}", root.display()),
            &S3Settings::default(),
        )?;
        let size = std::fs::metadata(&dump)?.len();
        let source = DumpSource {
            provider: "google".into(),
            key,
            name,
            size,
            blake2b: [0; 64],
        };
        let scopes = vec![Scope::parse(&scope)?];
        let catalog = Catalog::load(None)?;
        let options = BuildOptions {
            temp_dir: Some(work.clone()),
            ..BuildOptions::default()
        };
        let before = vm_hwm_kib();
        let started = Instant::now();
        let built = build_archives(
            &storage,
            &catalog,
            &[source],
            &scopes,
            "transfers/t/1",
            &options,
        )
        .await;
        let elapsed = started.elapsed();
        let _ = std::fs::remove_dir_all(&root);
        Ok::<_, anyhow::Error>((built, before, elapsed))
    });
    let (built, before, elapsed) = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("setup: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    let peak = vm_hwm_kib();
    match built {
        Ok(archives) => {
            for a in &archives {
                println!("archive {} {} bytes, {} files", a.file, a.size, a.files);
            }
            println!(
                "ok in {:.1} s; VmHWM before build {} KiB, peak {} KiB ({:.1} MiB)",
                elapsed.as_secs_f64(),
                before,
                peak,
                peak as f64 / 1024.0
            );
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            println!(
                "refused in {:.1} s: {e}; VmHWM before build {} KiB, peak {} KiB ({:.1} MiB)",
                elapsed.as_secs_f64(),
                before,
                peak,
                peak as f64 / 1024.0
            );
            std::process::ExitCode::from(1)
        }
    }
}

fn tempdir_in(dir: &std::path::Path) -> std::io::Result<PathBuf> {
    let path = dir.join(format!("peak-rss-{}", std::process::id()));
    std::fs::create_dir_all(&path)?;
    Ok(path)
}
