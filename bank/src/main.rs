//! `alias-bank`: the data bank in one process (`all`), and the demo.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// alias-bank in one process.
#[derive(Debug, Parser)]
#[command(name = "alias-bank", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the gateway, a processor and a pusher in this process, configured
    /// by the `ALIAS_*` variables. Without `ALIAS_REDIS_URL` the state is kept
    /// in memory, without `ALIAS_AMQP_URL` the queue is in-process.
    All,
    /// Runs the whole Alias flow: keys, a synthetic Google Takeout, a client,
    /// a contract and a grant, then the transfer, and shows what the client
    /// received. Uses an embedded data bank unless `--gateway` is given.
    Demo {
        /// Working directory (keys, dump, storage, received archives).
        #[arg(long, default_value = "alias-demo")]
        dir: PathBuf,
        /// Size of the synthetic Takeout, in MiB.
        #[arg(long, default_value_t = 24)]
        dump_mib: u64,
        /// Seed of the synthetic Takeout.
        #[arg(long, default_value_t = 2026)]
        seed: u64,
        /// Run against this gateway instead of an embedded data bank.
        #[arg(long, requires_all = ["sink", "sink_dir"])]
        gateway: Option<String>,
        /// With `--gateway`: the client (an alias-sink) as the pushers reach it.
        #[arg(long)]
        sink: Option<String>,
        /// With `--gateway`: where that alias-sink stores what it receives.
        #[arg(long)]
        sink_dir: Option<PathBuf>,
        /// No progress bars.
        #[arg(long)]
        quiet: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::All => {
            runtime::telemetry::init();
            let config = match runtime::config::Config::from_env() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("alias-bank: {e}");
                    return ExitCode::from(2);
                }
            };
            let system = actix::System::new();
            match system.block_on(run_all(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("alias-bank: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Demo {
            dir,
            dump_mib,
            seed,
            gateway,
            sink,
            sink_dir,
            quiet,
        } => {
            let remote = match (gateway, sink, sink_dir) {
                (Some(gateway), Some(sink), Some(sink_dir)) => Some(bank::demo::Remote {
                    gateway,
                    sink,
                    sink_dir,
                }),
                _ => None,
            };
            let options = bank::demo::DemoOptions {
                dir,
                dump_bytes: dump_mib.max(1) << 20,
                seed,
                remote,
                progress: !quiet,
            };
            let system = actix::System::new();
            let mut out = std::io::stdout();
            match system.block_on(bank::demo::run(&options, &mut out)) {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("alias-bank demo: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn run_all(config: runtime::config::Config) -> anyhow::Result<()> {
    let bank = bank::Bank::start(config).await?;
    tracing::info!(
        addr = %bank.addr,
        state = if bank.embedded_state() { "memory" } else { "redis" },
        queue = if bank.embedded_queue() { "in-process" } else { "rabbitmq" },
        "alias-bank listening"
    );
    runtime::worker::shutdown_signal().await;
    tracing::info!("shutting down");
    bank.stop().await;
    Ok(())
}
