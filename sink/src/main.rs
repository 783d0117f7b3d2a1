//! `alias-sink`: run the reference push receiver from the command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use common::alias::PushId;
use sink::{Faults, Sink, SinkConfig, DEFAULT_BASE_PATH, DEFAULT_MAX_CHUNK};

/// A reference receiver of Alias pushes, with the resume extension
/// (`HEAD` → `Upload-Offset`) and fault injection. Faults can also be changed
/// at run time with `POST /sink/faults` (JSON); `GET /` shows what was
/// received.
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
}

fn main() -> ExitCode {
    common::telemetry::init();
    let args = Args::parse();
    let config = SinkConfig {
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
    };
    match actix_web::rt::System::new().block_on(Sink::serve(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("alias-sink: {err}");
            ExitCode::FAILURE
        }
    }
}
