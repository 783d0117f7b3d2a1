//! `alias-sink`: run the reference push receiver from the command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use protocol::alias::PushId;
use sink::{Admin, Faults, Sink, SinkConfig, SinkLimits, DEFAULT_BASE_PATH, DEFAULT_MAX_CHUNK};

/// A reference receiver of Alias pushes, with the resume extension
/// (`HEAD` → `Upload-Offset`) and fault injection. It receives only for the
/// client keys given (`--client-key`). With `--admin`, faults can also be
/// changed at run time with `POST /sink/faults` (JSON) and `GET /` shows
/// what was received, to loopback peers only.
#[derive(Debug, Parser)]
#[command(name = "alias-sink", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// Directory where transfers are stored.
    #[arg(long, default_value = "sink-data")]
    dir: PathBuf,
    /// Base path of the push routes.
    #[arg(long, default_value = DEFAULT_BASE_PATH)]
    base: String,
    /// Which hash names a transfer: `contract` or `grant`.
    #[arg(long, default_value = "contract")]
    push_id: PushId,
    /// Largest chunk body, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_CHUNK)]
    max_chunk: u64,
    /// HTTP worker threads.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Answer every Nth protocol request with 503 (0: never).
    #[arg(long, default_value_t = 0)]
    fail_every: u64,
    /// Seconds sent in `Retry-After` with those 503 answers.
    #[arg(long)]
    retry_after: Option<u64>,
    /// Delay each protocol answer by this many milliseconds.
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Close the connection without answering every Nth chunk, after writing
    /// it (0: never).
    #[arg(long, default_value_t = 0)]
    drop_every: u64,
    /// Answer 500 to everything (a dead client).
    #[arg(long)]
    dead: bool,
    /// Behave exactly like the reference client: no HEAD, chunks appended.
    #[arg(long)]
    reference_mode: bool,
    /// Public key (URL-safe base64) of a client whose contracts this sink
    /// receives for; repeat for several. Starts of other contracts get 403.
    #[arg(long = "client-key")]
    client_keys: Vec<String>,
    /// Receive for contracts of any client key (local tests and demos only).
    #[arg(long)]
    any_client: bool,
    /// Serve the status page (`GET /`) and the fault switches
    /// (`/sink/faults`) to loopback peers.
    #[arg(long)]
    admin: bool,
    /// With `--admin`: a file holding a token the admin routes then require
    /// (`Authorization: Bearer <token>`).
    #[arg(long, requires = "admin")]
    admin_token_file: Option<PathBuf>,
    /// Seconds a request body may stall.
    #[arg(long, default_value_t = 30)]
    body_idle_secs: u64,
    /// Slowest accepted request body after the first 10 s, in bytes/s.
    #[arg(long, default_value_t = 4096)]
    body_min_rate: u64,
    /// Most transfers held.
    #[arg(long, default_value_t = SinkLimits::default().max_transfers)]
    max_transfers: usize,
    /// Most files in one transfer.
    #[arg(long, default_value_t = SinkLimits::default().max_files)]
    max_files: usize,
    /// Most bytes held by one transfer.
    #[arg(long, default_value_t = SinkLimits::default().max_transfer_bytes)]
    max_transfer_bytes: u64,
}

/// The configuration the arguments describe.
fn config(args: Args) -> Result<SinkConfig, String> {
    if args.client_keys.is_empty() && !args.any_client {
        return Err(
            "give the client key(s) to receive for (--client-key), or --any-client for a local test"
                .into(),
        );
    }
    let client_keys = args
        .client_keys
        .iter()
        .map(|k| {
            protocol::anychain::b64u_decode(k.trim())
                .ok()
                .filter(|b| b.len() == 32)
                .ok_or_else(|| format!("--client-key {k:?} is not a URL-safe base64 public key"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let token = match &args.admin_token_file {
        None => None,
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| format!("reading {}: {e}", path.display()))?
                .trim()
                .to_owned(),
        ),
    };
    Ok(SinkConfig {
        listen: args.listen,
        dir: args.dir,
        base_path: args.base,
        push_id: args.push_id,
        max_chunk: args.max_chunk,
        workers: args.workers,
        faults: Faults {
            fail_every: args.fail_every,
            retry_after: args.retry_after,
            delay_ms: args.delay_ms,
            drop_every: args.drop_every,
            dead: args.dead,
            reference_mode: args.reference_mode,
        },
        client_keys,
        any_client: args.any_client,
        admin: Admin {
            enabled: args.admin,
            token,
        },
        limits: SinkLimits {
            body_idle: Duration::from_secs(args.body_idle_secs.max(1)),
            body_min_rate: args.body_min_rate,
            max_transfers: args.max_transfers,
            max_files: args.max_files,
            max_transfer_bytes: args.max_transfer_bytes,
            ..SinkLimits::default()
        },
    })
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`); colours only on
/// a terminal.
fn init_logging() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn main() -> ExitCode {
    init_logging();
    let args = Args::parse();
    let config = match config(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("alias-sink: {e}");
            return ExitCode::FAILURE;
        }
    };
    if config.any_client {
        tracing::warn!("receiving for any client key (--any-client): do not expose this sink");
    }
    match actix_web::rt::System::new().block_on(Sink::serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("alias-sink: {err}");
            ExitCode::FAILURE
        }
    }
}
