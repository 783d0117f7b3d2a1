//! `aliasctl`, the command-line tool of alias-bank: keys, signatures, folds,
//! verification, tokens and grant inspection, for operators, client
//! developers and tests.

pub mod dump;
pub mod net;
pub mod ops;
pub mod sse;

mod commands;

use clap::{Args, Parser, Subcommand};
use commands::{documents, grants, remote, Env};
use protocol::alias::PushId;
use protocol::anychain::Limits;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "aliasctl",
    version,
    about = "Alias protocol tool of alias-bank"
)]
pub struct Cli {
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    http: HttpArgs,
    #[command(subcommand)]
    command: Command,
}

/// Size and depth limits for the documents read.
#[derive(Debug, Args)]
struct LimitArgs {
    /// Largest accepted document, in bytes.
    #[arg(long, global = true, default_value_t = 1 << 20)]
    max_bytes: usize,
    /// Deepest accepted nesting of lists and objects.
    #[arg(long, global = true, default_value_t = 64)]
    max_depth: usize,
}

/// Bounds on the replies of servers (gateways) the tool talks to.
#[derive(Debug, Args)]
struct HttpArgs {
    /// Largest reply read from a server, in bytes.
    #[arg(long, global = true, default_value_t = net::DEFAULT_MAX_REPLY)]
    max_reply: usize,
    /// Largest event of an event stream (`transfer watch`), in bytes.
    #[arg(long, global = true, default_value_t = sse::DEFAULT_MAX_EVENT)]
    max_event: usize,
    /// Seconds to connect, to get a whole reply, or of silence in an event
    /// stream.
    #[arg(long, global = true, default_value_t = net::DEFAULT_TIMEOUT.as_secs())]
    http_timeout: u64,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a new secret key (URL-safe base64 seed) and print its public key.
    Keygen {
        /// Where to write the key (created with mode 0600).
        #[arg(long)]
        out: PathBuf,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Print the public key of a key file.
    Pubkey {
        /// The secret key file.
        #[arg(long)]
        key: PathBuf,
    },
    /// Sign the anychain JSON body in FILE; print the signature object.
    Sign {
        /// The secret key file.
        #[arg(long)]
        key: PathBuf,
        /// Signature date, milliseconds since the Unix epoch (default: now).
        #[arg(long)]
        date: Option<u64>,
        /// Indent the output.
        #[arg(long)]
        pretty: bool,
        /// The body, as anychain JSON (`-` for stdin).
        file: String,
    },
    /// Print the fold of the anychain JSON in FILE (URL-safe base64).
    Fold {
        /// The document (`-` for stdin).
        file: String,
    },
    /// Verify every signature and validator of the document in FILE.
    Verify {
        /// Also apply alias-bank's acceptance policy to grants.
        #[arg(long)]
        policy: bool,
        /// Clock for the policy's date check, in ms (default: now).
        #[arg(long)]
        now: Option<u64>,
        /// The document (`-` for stdin).
        file: String,
    },
    /// Token forms.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Grant helpers.
    #[command(subcommand)]
    Grant(GrantCommand),
    /// A user's dumps on a data bank (requests signed with the user's key).
    #[command(subcommand)]
    Dump(DumpCommand),
    /// Follow transfers on a gateway.
    #[command(subcommand)]
    Transfer(TransferCommand),
    /// Dead letters of the deployment (`ALIAS_AMQP_URL`, `ALIAS_NAMESPACE`).
    #[command(subcommand)]
    Dead(DeadCommand),
    /// Parse a scope (object JSON or the string grammar) and print both forms.
    Scope {
        /// `provider.path[filter,…].{field,…}` or a JSON scope object.
        scope: String,
    },
}

#[derive(Debug, Subcommand)]
enum TransferCommand {
    /// Print a transfer's status.
    Status {
        /// The gateway's base URL.
        #[arg(long)]
        gateway: String,
        /// The transfer's capability (`access` of the client's
        /// /alias/process answer) or the operators' token; default
        /// $ALIAS_OPERATOR_TOKEN.
        #[arg(long)]
        token: Option<String>,
        /// The transfer id.
        id: String,
    },
    /// Follow a transfer with a progress bar until it ends (exit 0 when done).
    Watch {
        /// The gateway's base URL.
        #[arg(long)]
        gateway: String,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        /// The transfer's capability or the operators' token (as for
        /// `status`); default $ALIAS_OPERATOR_TOKEN.
        #[arg(long)]
        token: Option<String>,
        /// The transfer id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum DeadCommand {
    /// List dead letters (they stay in the queue).
    List {
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Put dead letters back on their queue.
    Replay {
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

#[derive(Debug, Subcommand)]
enum DumpCommand {
    /// Upload a dump (zip or tar.gz export), with a progress bar.
    Upload {
        /// The user's secret key file.
        #[arg(long)]
        key: PathBuf,
        /// The gateway's base URL, e.g. http://127.0.0.1:8080.
        #[arg(long)]
        gateway: String,
        /// The provider of the export (google, facebook, amazon, …).
        #[arg(long)]
        provider: String,
        /// Name to store it under (default: the file name).
        #[arg(long)]
        name: Option<String>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
        /// The export file.
        file: PathBuf,
    },
    /// List the user's dumps.
    List {
        /// The user's secret key file.
        #[arg(long)]
        key: PathBuf,
        /// The gateway's base URL.
        #[arg(long)]
        gateway: String,
    },
    /// Delete one of the user's dumps.
    Delete {
        /// The user's secret key file.
        #[arg(long)]
        key: PathBuf,
        /// The gateway's base URL.
        #[arg(long)]
        gateway: String,
        /// The provider.
        #[arg(long)]
        provider: String,
        /// The dump's name.
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Print the token (compact JSON, as the reference writes it) of FILE.
    Encode {
        /// Percent-encode it for a URL query or form body.
        #[arg(long)]
        url: bool,
        /// The anychain JSON (`-` for stdin).
        file: String,
    },
    /// Print the indented JSON form of a token (raw or percent-encoded).
    Decode {
        /// The token (`-` for stdin).
        token: String,
    },
}

#[derive(Debug, Subcommand)]
enum GrantCommand {
    /// Print the scopes the grant gives, as a JSON list.
    Scopes {
        /// Skip signature verification.
        #[arg(long)]
        no_verify: bool,
        /// The grant (`-` for stdin).
        file: String,
    },
    /// Print the grant hash (fold of the whole signed grant).
    Hash {
        /// The grant (`-` for stdin).
        file: String,
    },
    /// Print the contract hash (fold of the grant's contract).
    ContractHash {
        /// The grant (`-` for stdin).
        file: String,
    },
    /// Print the push URL of the grant's transfer.
    PushUrl {
        /// Which hash names the transfer: `contract` or `grant`.
        #[arg(long, default_value = "contract")]
        id: PushId,
        /// The grant (`-` for stdin).
        file: String,
    },
    /// Print what a grant says: user, client, dates, hashes, scopes, URL.
    Inspect {
        /// The grant (`-` for stdin).
        file: String,
    },
    /// Sign a grant of CONTRACT with the user's key.
    New {
        /// The user's secret key file.
        #[arg(long)]
        key: PathBuf,
        /// Consent rows, groups separated by `;`, switches by `,` (e.g. `1,0;1`).
        #[arg(long, default_value = "")]
        consent: String,
        /// Legitimate rows, in the same form (default: every switch on).
        #[arg(long)]
        legitimate: Option<String>,
        /// Sign a revocation (a revoked grant) instead.
        #[arg(long)]
        revoked: bool,
        /// Signature date in ms (default: now).
        #[arg(long)]
        date: Option<u64>,
        /// The contract, as anychain JSON (`-` for stdin).
        contract: String,
    },
}

/// Runs `aliasctl` with the process arguments.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut out = std::io::stdout().lock();
    match run(cli, &mut out) {
        Ok(code) => code,
        Err(e) => {
            let _ = out.flush();
            // Errors carry text from servers: never raw to the terminal.
            eprintln!("error: {}", net::escape_control(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

/// Runs one parsed command, writing its output to `out`; each command group
/// runs in its module of `commands`.
pub fn run(cli: Cli, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let env = Env {
        limits: Limits {
            max_bytes: cli.limits.max_bytes,
            max_depth: cli.limits.max_depth,
        },
        http: net::HttpLimits {
            max_reply: cli.http.max_reply,
            max_event: cli.http.max_event,
            timeout: std::time::Duration::from_secs(cli.http.http_timeout.max(1)),
        },
    };
    match cli.command {
        Command::Keygen { out: path, force } => documents::keygen(&path, force, out)?,
        Command::Pubkey { key } => documents::pubkey(&key, out)?,
        Command::Sign {
            key,
            date,
            pretty,
            file,
        } => documents::sign(&env, &key, date, pretty, &file, out)?,
        Command::Fold { file } => documents::fold(&env, &file, out)?,
        Command::Verify { policy, now, file } => {
            return documents::verify(&env, policy, now, &file, out)
        }
        Command::Token(command) => documents::token(&env, command, out)?,
        Command::Scope { scope } => documents::scope(&env, &scope, out)?,
        Command::Grant(command) => grants::run(&env, command, out)?,
        Command::Transfer(command) => return remote::transfer(&env.http, command, out),
        Command::Dead(command) => remote::dead(command, out)?,
        Command::Dump(command) => remote::dump(&env.http, command, out)?,
    }
    Ok(ExitCode::SUCCESS)
}
