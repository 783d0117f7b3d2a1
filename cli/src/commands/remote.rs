//! The commands that talk to a gateway or the broker: transfer status and
//! events, dead letters, dump upload, listing and deletion. Each runs on a
//! current-thread Tokio runtime of its own.

use super::read_key;
use crate::net::{self, HttpLimits};
use crate::{dump, ops, DeadCommand, DumpCommand, TransferCommand};
use anyhow::Result;
use std::io::Write;
use std::process::ExitCode;

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// `transfer status` / `transfer watch`: the reply, and a failure exit
/// status when a watched transfer did not end `done`.
pub(crate) fn transfer(
    http: &HttpLimits,
    command: TransferCommand,
    out: &mut impl Write,
) -> Result<ExitCode> {
    let (result, ok) = runtime()?.block_on(async {
        match command {
            TransferCommand::Status { gateway, token, id } => {
                let token = ops::transfer_token(token);
                ops::status_with(&gateway, &id, token.as_deref(), http)
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
                let last = ops::watch_with(&gateway, &id, token.as_deref(), !quiet, http).await?;
                let done = last.get("state").and_then(|s| s.as_str()) == Some("done");
                Ok::<_, anyhow::Error>((last, done))
            }
        }
    })?;
    writeln!(out, "{}", net::to_safe_json(&result)?)?;
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `dead list` / `dead replay`.
pub(crate) fn dead(command: DeadCommand, out: &mut impl Write) -> Result<()> {
    let result = runtime()?.block_on(async {
        match command {
            DeadCommand::List { limit } => ops::dead(false, limit).await,
            DeadCommand::Replay { limit } => ops::dead(true, limit).await,
        }
    })?;
    writeln!(out, "{}", net::to_safe_json(&result)?)?;
    Ok(())
}

/// `dump upload` / `dump list` / `dump delete`.
pub(crate) fn dump(http: &HttpLimits, command: DumpCommand, out: &mut impl Write) -> Result<()> {
    let result = runtime()?.block_on(async {
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
                    http,
                )
                .await
            }
            DumpCommand::List { key, gateway } => {
                dump::list_with(&read_key(&key)?, &gateway, http).await
            }
            DumpCommand::Delete {
                key,
                gateway,
                provider,
                name,
            } => dump::delete_with(&read_key(&key)?, &gateway, &provider, &name, http).await,
        }
    })?;
    writeln!(out, "{}", net::to_safe_json(&result)?)?;
    Ok(())
}
