//! `alias-bench`: the benchmark command of issue 7. Runs every measurement
//! with its baseline in the same run and prints one markdown table, then the
//! peak memory of each service. `scripts/bench` builds the release binaries
//! and runs it; see `BENCHMARKS.md`.

mod baseline;
mod client;
mod micro;
mod report;
mod runs;
mod services;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;

/// Benchmarks alias-bank: every figure beside its baseline, one table.
#[derive(Debug, Parser)]
#[command(name = "alias-bench")]
struct Args {
    /// Small sizes (64 MiB dumps and pushes, 20 transfers): a couple of minutes.
    #[arg(long)]
    quick: bool,
    /// Size of the end-to-end dump (media-heavy Takeout) [default: 1G, quick 64M].
    #[arg(long, value_parser = dumpgen::parse_size)]
    size: Option<u64>,
    /// Size of the JSON-heavy Takeout of the processing figure [default: 256M, quick 32M].
    #[arg(long, value_parser = dumpgen::parse_size)]
    json_size: Option<u64>,
    /// Size of the push figure's archive [default: 1G, quick 64M].
    #[arg(long, value_parser = dumpgen::parse_size)]
    push_size: Option<u64>,
    /// Concurrent transfers of the many-transfers run [default: 200, quick 20].
    #[arg(long)]
    transfers: Option<usize>,
    /// Dump size of each of those users.
    #[arg(long, value_parser = dumpgen::parse_size, default_value = "2M")]
    transfer_dump: u64,
    /// Processor processes of the whole-system runs.
    #[arg(long, default_value_t = 2)]
    processors: usize,
    /// Pusher processes of the whole-system runs.
    #[arg(long, default_value_t = 2)]
    pushers: usize,
    /// Which parts to run, comma-separated: grant, processing, push, e2e, many.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "grant,processing,push,e2e,many"
    )]
    only: Vec<String>,
    /// Scratch directory (removed at the end) [default: the system's temp].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Directory of the release binaries [default: this binary's].
    #[arg(long)]
    bin_dir: Option<PathBuf>,
}

fn var_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

async fn run(args: Args) -> Result<()> {
    let q = args.quick;
    let size = args.size.unwrap_or(if q { 64 << 20 } else { 1 << 30 });
    let json_size = args
        .json_size
        .unwrap_or(if q { 32 << 20 } else { 256 << 20 });
    let push_size = args.push_size.unwrap_or(if q { 64 << 20 } else { 1 << 30 });
    let transfers = args.transfers.unwrap_or(if q { 20 } else { 200 });
    let rounds = if q { 2 } else { 3 };
    let part = |p: &str| args.only.iter().any(|o| o == p);
    let bin_dir = match args.bin_dir {
        Some(d) => d,
        None => std::env::current_exe()?
            .parent()
            .context("the binary's directory")?
            .to_path_buf(),
    };
    let env = services::Env {
        bin_dir,
        redis_url: var_or("ALIAS_REDIS_URL", "redis://127.0.0.1:6379"),
        amqp_url: var_or("ALIAS_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
    };
    let root = args
        .dir
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("alias-bench-{}", std::process::id()));
    std::fs::create_dir_all(&root)?;
    let mut report = report::Report::start(&root);
    let result = measure(
        &env,
        &root,
        &mut report,
        MeasureArgs {
            size,
            json_size,
            push_size,
            transfers,
            transfer_dump: args.transfer_dump,
            processors: args.processors,
            pushers: args.pushers,
            rounds,
            grant: part("grant"),
            processing: part("processing"),
            push: part("push"),
            e2e: part("e2e"),
            many: part("many"),
        },
    )
    .await;
    let _ = std::fs::remove_dir_all(&root);
    report.finish();
    print!("{}", report.render());
    result
}

struct MeasureArgs {
    size: u64,
    json_size: u64,
    push_size: u64,
    transfers: usize,
    transfer_dump: u64,
    processors: usize,
    pushers: usize,
    rounds: usize,
    grant: bool,
    processing: bool,
    push: bool,
    e2e: bool,
    many: bool,
}

async fn measure(
    env: &services::Env,
    root: &std::path::Path,
    report: &mut report::Report,
    a: MeasureArgs,
) -> Result<()> {
    if a.grant {
        eprintln!("grant validation…");
        let r = micro::grant_validation(Duration::from_secs(1), a.rounds)?;
        eprintln!(
            "  {:.0} grants/s (declaration cached), {:.0} grants/s (never seen), bare verify_strict {:.0}/s: {:.2}x and {:.2}x the time of one verification",
            r.grants,
            r.grants_cold,
            r.ed25519,
            r.ed25519 / r.grants,
            r.ed25519 / r.grants_cold
        );
        report.grant(r);
    }
    let local = root.join("local");
    if a.processing || a.e2e {
        eprintln!("generating a media-heavy Takeout of {} MiB…", a.size >> 20);
        let dump =
            micro::generate_dump(&local, "media", a.size, 0.9, 5, dumpgen::ActivityForm::Json)?;
        eprintln!(
            "  {:.0} MiB in {:.1} s",
            dump.bytes as f64 / 1048576.0,
            dump.generate_s
        );
        if a.processing {
            eprintln!("processing it…");
            let p = micro::processing(&dump, &root.join("work"), a.rounds).await?;
            report.processing("media-heavy Takeout", &p);
        }
        if a.e2e {
            eprintln!("end to end through separate processes…");
            let run =
                runs::end_to_end(env, &root.join("e2e"), &dump.paths, a.processors, a.pushers)
                    .await?;
            report.end_to_end(&run);
        }
        std::fs::remove_dir_all(&local)?;
    }
    if a.processing {
        eprintln!(
            "generating a JSON-heavy Takeout of {} MiB…",
            a.json_size >> 20
        );
        let dump = micro::generate_dump(
            &local,
            "json",
            a.json_size,
            0.1,
            6,
            dumpgen::ActivityForm::Json,
        )?;
        eprintln!(
            "  {:.0} MiB in {:.1} s",
            dump.bytes as f64 / 1048576.0,
            dump.generate_s
        );
        eprintln!("processing it…");
        let p = micro::processing(&dump, &root.join("work"), a.rounds).await?;
        report.processing("JSON-heavy Takeout", &p);
        std::fs::remove_dir_all(&local)?;
        // The same Takeout as Google writes it by default: My Activity and
        // YouTube history in HTML, read into records.
        eprintln!("generating it with HTML My Activity (Takeout's default)…");
        let dump = micro::generate_dump(
            &local,
            "html",
            a.json_size,
            0.1,
            6,
            dumpgen::ActivityForm::Html,
        )?;
        eprintln!("processing it…");
        let p = micro::processing(&dump, &root.join("work"), a.rounds).await?;
        report.processing("JSON-heavy Takeout, HTML My Activity", &p);
        std::fs::remove_dir_all(&local)?;
    }
    if a.push {
        eprintln!("push vs curl -T…");
        let p = micro::push(env, &root.join("push"), a.push_size, 2 << 20, a.rounds).await?;
        report.push(&p);
    }
    if a.many {
        eprintln!(
            "{} concurrent transfers through separate processes…",
            a.transfers
        );
        let (run, _) = runs::many(
            env,
            &root.join("many"),
            a.transfers,
            a.transfer_dump,
            a.processors,
            a.pushers,
        )
        .await?;
        report.many(&run, a.transfer_dump, a.processors, a.pushers);
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("alias-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
