//! `aliasctl`, the command-line tool of alias-bank: keys, signatures, folds,
//! verification, tokens and grant inspection, for operators, client
//! developers and tests.

pub mod dump;
pub mod net;
pub mod ops;
pub mod sse;

use anyhow::{anyhow, Context, Result};
use clap::{Args, Parser, Subcommand};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use protocol::alias::{
    decode_verified, grant_body, registry, revoked_grant_body, AcceptancePolicy, Grant, PushId,
};
use protocol::anychain::{
    fold, from_json_str, generate_signing_key, public_key_b64, sign, signing_key_from_text,
    to_json_pretty, to_token, Limits, SigningKey, Value,
};
use protocol::scope::Scope;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
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

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn read_input(file: &str) -> Result<String> {
    if file == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading stdin")?;
        Ok(text)
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {file}"))
    }
}

fn read_key(path: &Path) -> Result<SigningKey> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    signing_key_from_text(&text).with_context(|| format!("key file {}", path.display()))
}

fn write_key(path: &Path, key: &SigningKey, force: bool) -> Result<()> {
    use std::fs::OpenOptions;
    let mut options = OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {} (use --force to replace it)", path.display()))?;
    writeln!(file, "{}", protocol::anychain::b64u_encode(&key.to_bytes()))?;
    Ok(())
}

/// Date given in ms, or now, as the double the signature stores.
#[allow(clippy::cast_precision_loss)]
fn date_or_now(date: Option<u64>) -> f64 {
    date.unwrap_or_else(now_ms) as f64
}

/// What `encodeURIComponent` leaves alone: ASCII alphanumerics and `-_.!~*'()`.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

fn parse_rows(text: &str) -> Result<Vec<Vec<bool>>> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    text.split(';')
        .map(|row| {
            row.split(',')
                .filter(|cell| !cell.trim().is_empty())
                .map(|cell| match cell.trim() {
                    "1" | "true" | "y" => Ok(true),
                    "0" | "false" | "n" => Ok(false),
                    other => Err(anyhow!("consent switch {other:?} is not 1 or 0")),
                })
                .collect()
        })
        .collect()
}

fn all_on(contract: &Value) -> Vec<Vec<bool>> {
    contract
        .get("base")
        .and_then(|b| b.get("legitimate"))
        .and_then(|l| l.get("groups"))
        .and_then(Value::as_list)
        .unwrap_or_default()
        .iter()
        .map(|g| {
            let n = g
                .get("scopes")
                .and_then(Value::as_list)
                .map_or(0, <[Value]>::len);
            vec![true; n]
        })
        .collect()
}

/// Runs one parsed command, writing its output to `out`.
pub fn run(cli: Cli, out: &mut impl Write) -> Result<ExitCode> {
    let limits = Limits {
        max_bytes: cli.limits.max_bytes,
        max_depth: cli.limits.max_depth,
    };
    let http = net::HttpLimits {
        max_reply: cli.http.max_reply,
        max_event: cli.http.max_event,
        timeout: std::time::Duration::from_secs(cli.http.http_timeout.max(1)),
    };
    let decode = |file: &str| -> Result<Value> {
        let text = read_input(file)?;
        from_json_str(&text, &limits).with_context(|| format!("decoding {file}"))
    };
    let load_grant = |file: &str, verify: bool| -> Result<Grant> {
        let text = read_input(file)?;
        let value = if verify {
            decode_verified(&text, &limits)?
        } else {
            from_json_str(&text, &limits)?
        };
        Ok(Grant::from_verified(value)?)
    };
    match cli.command {
        Command::Keygen { out: path, force } => {
            let key = generate_signing_key()?;
            write_key(&path, &key, force)?;
            writeln!(out, "{}", public_key_b64(&key))?;
        }
        Command::Pubkey { key } => writeln!(out, "{}", public_key_b64(&read_key(&key)?))?,
        Command::Sign {
            key,
            date,
            pretty,
            file,
        } => {
            let key = read_key(&key)?;
            let signed = sign(&key, decode(&file)?, date_or_now(date))?;
            let text = if pretty {
                to_json_pretty(&signed)
            } else {
                to_token(&signed)
            };
            writeln!(out, "{text}")?;
        }
        Command::Fold { file } => writeln!(out, "{}", fold(&decode(&file)?)?.to_b64())?,
        Command::Verify { policy, now, file } => {
            let text = read_input(&file)?;
            let checked = decode_verified(&text, &limits).map_err(anyhow::Error::from);
            let checked = checked.and_then(|value| {
                if policy {
                    let now = date_or_now(now);
                    let policy = AcceptancePolicy {
                        limits,
                        ..AcceptancePolicy::default()
                    };
                    if protocol::alias::is_signature_of(&value, protocol::alias::GRANT) {
                        policy.check_grant(&Grant::from_verified(value)?, now)?;
                    } else {
                        policy.check_document(&value, now)?;
                    }
                }
                Ok(())
            });
            match checked {
                Ok(()) => writeln!(out, "ok")?,
                Err(reason) => {
                    writeln!(out, "{reason}")?;
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
        Command::Token(TokenCommand::Encode { url, file }) => {
            let token = to_token(&decode(&file)?);
            if url {
                writeln!(out, "{}", utf8_percent_encode(&token, URI_COMPONENT))?;
            } else {
                writeln!(out, "{token}")?;
            }
        }
        Command::Token(TokenCommand::Decode { token }) => {
            let text = if token == "-" {
                read_input("-")?
            } else {
                token
            };
            let text = text.trim();
            let text = if text.starts_with('{') || text.starts_with('[') {
                text.to_owned()
            } else {
                percent_decode_str(&text.replace('+', " "))
                    .decode_utf8()
                    .context("token is neither JSON nor percent-encoded UTF-8")?
                    .into_owned()
            };
            let value = from_json_str(&text, &limits).context("decoding token")?;
            writeln!(out, "{}", to_json_pretty(&value))?;
        }
        Command::Grant(GrantCommand::Scopes { no_verify, file }) => {
            let scopes = load_grant(&file, !no_verify)?.scopes()?;
            writeln!(out, "{}", to_json_pretty(&Value::List(scopes)))?;
        }
        Command::Grant(GrantCommand::Hash { file }) => {
            writeln!(out, "{}", load_grant(&file, false)?.grant_hash()?)?;
        }
        Command::Grant(GrantCommand::ContractHash { file }) => {
            writeln!(out, "{}", load_grant(&file, false)?.contract_hash()?)?;
        }
        Command::Grant(GrantCommand::PushUrl { id, file }) => {
            writeln!(out, "{}", load_grant(&file, true)?.push_url(id)?)?;
        }
        Command::Grant(GrantCommand::Inspect { file }) => {
            inspect(&load_grant(&file, true)?, out)?;
        }
        Command::Grant(GrantCommand::New {
            key,
            consent,
            legitimate,
            revoked,
            date,
            contract,
        }) => {
            let key = read_key(&key)?;
            let contract = decode(&contract)?;
            registry()
                .verify(&contract)
                .context("the contract does not verify")?;
            let body = if revoked {
                revoked_grant_body(&contract)?
            } else {
                let legitimate = match legitimate {
                    Some(rows) => parse_rows(&rows)?,
                    None => all_on(&contract),
                };
                grant_body(&contract, parse_rows(&consent)?, legitimate)?
            };
            let signed = sign(&key, body, date_or_now(date))?;
            registry().verify(&signed).context(
                "the signed grant does not verify (check --consent against the contract)",
            )?;
            writeln!(out, "{}", to_token(&signed))?;
        }
        Command::Transfer(command) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (result, ok) = runtime.block_on(async {
                match command {
                    TransferCommand::Status { gateway, token, id } => {
                        let token = ops::transfer_token(token);
                        ops::status_with(&gateway, &id, token.as_deref(), &http)
                            .await
                            .map(|v| (v, true))
                    }
                    TransferCommand::Watch {
                        gateway,
                        quiet,
                        token,
                        id,
                    } => {
                        let token = ops::transfer_token(token);
                        let last =
                            ops::watch_with(&gateway, &id, token.as_deref(), !quiet, &http).await?;
                        let done = last.get("state").and_then(|s| s.as_str()) == Some("done");
                        Ok::<_, anyhow::Error>((last, done))
                    }
                }
            })?;
            writeln!(out, "{}", net::to_safe_json(&result)?)?;
            if !ok {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Dead(command) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let result = runtime.block_on(async {
                match command {
                    DeadCommand::List { limit } => ops::dead(false, limit).await,
                    DeadCommand::Replay { limit } => ops::dead(true, limit).await,
                }
            })?;
            writeln!(out, "{}", net::to_safe_json(&result)?)?;
        }
        Command::Dump(command) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let result = runtime.block_on(async {
                match command {
                    DumpCommand::Upload {
                        key,
                        gateway,
                        provider,
                        name,
                        quiet,
                        file,
                    } => {
                        let key = read_key(&key)?;
                        dump::upload_with(
                            &key,
                            &gateway,
                            &provider,
                            name.as_deref(),
                            &file,
                            !quiet,
                            &http,
                        )
                        .await
                    }
                    DumpCommand::List { key, gateway } => {
                        dump::list_with(&read_key(&key)?, &gateway, &http).await
                    }
                    DumpCommand::Delete {
                        key,
                        gateway,
                        provider,
                        name,
                    } => {
                        dump::delete_with(&read_key(&key)?, &gateway, &provider, &name, &http).await
                    }
                }
            })?;
            writeln!(out, "{}", net::to_safe_json(&result)?)?;
        }
        Command::Scope { scope } => {
            let parsed = if scope.trim_start().starts_with('{') {
                Scope::from_value(&from_json_str(&scope, &limits)?)?
            } else {
                Scope::parse(&scope)?
            };
            writeln!(out, "{}", parsed.display())?;
            writeln!(out, "{}", to_token(&parsed.to_value()))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn inspect(grant: &Grant, out: &mut impl Write) -> Result<()> {
    let contract = grant.contract();
    let client = contract.client()?;
    writeln!(out, "user:          {}", grant.signer_b64())?;
    writeln!(
        out,
        "signed at:     {}",
        grant.date().map_or_else(|| "-".to_owned(), to_token)
    )?;
    writeln!(out, "revoked:       {}", grant.is_revoked())?;
    writeln!(
        out,
        "client:        {} ({})",
        client.name().unwrap_or("?"),
        client.domain().unwrap_or("?")
    )?;
    writeln!(
        out,
        "client key:    {}",
        protocol::anychain::b64u_encode(client.signer())
    )?;
    writeln!(out, "contract hash: {}", grant.contract_hash()?)?;
    writeln!(out, "grant hash:    {}", grant.grant_hash()?)?;
    match contract.push_url() {
        Ok(url) => writeln!(out, "push url:      {url}")?,
        Err(e) => writeln!(out, "push url:      refused: {e}")?,
    }
    writeln!(out, "scopes:")?;
    for scope in grant.scopes()? {
        match Scope::from_value(&scope) {
            Ok(parsed) => writeln!(out, "  {}", parsed.display())?,
            Err(e) => writeln!(out, "  {} (not understood: {e})", to_token(&scope))?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_parse() {
        assert_eq!(
            parse_rows("1,0;1").unwrap(),
            vec![vec![true, false], vec![true]]
        );
        assert!(parse_rows("").unwrap().is_empty());
        assert!(parse_rows("2").is_err());
    }

    #[test]
    fn uri_component_matches_javascript() {
        let s = utf8_percent_encode("{\"a\":\"b c/é\"}-_.!~*'()", URI_COMPONENT).to_string();
        assert_eq!(s, "%7B%22a%22%3A%22b%20c%2F%C3%A9%22%7D-_.!~*'()");
    }
}
