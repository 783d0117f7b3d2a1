//! The `grant` commands: scopes, hashes, push URL, inspection, and signing
//! a grant (or a revocation) of a contract.

use super::{date_or_now, read_key, Env};
use crate::GrantCommand;
use anyhow::{anyhow, Context, Result};
use protocol::alias::{grant_body, registry, revoked_grant_body, Grant};
use protocol::anychain::{sign, to_json_pretty, to_token, Value};
use protocol::scope::Scope;
use std::io::Write;
use std::path::Path;

/// Runs one `grant` command.
pub(crate) fn run(env: &Env, command: GrantCommand, out: &mut impl Write) -> Result<()> {
    match command {
        GrantCommand::Scopes { no_verify, file } => {
            let scopes = env.load_grant(&file, !no_verify)?.scopes()?;
            writeln!(out, "{}", to_json_pretty(&Value::List(scopes)))?;
        }
        GrantCommand::Hash { file } => {
            writeln!(out, "{}", env.load_grant(&file, false)?.grant_hash()?)?;
        }
        GrantCommand::ContractHash { file } => {
            writeln!(out, "{}", env.load_grant(&file, false)?.contract_hash()?)?;
        }
        GrantCommand::PushUrl { id, file } => {
            writeln!(out, "{}", env.load_grant(&file, true)?.push_url(id)?)?;
        }
        GrantCommand::Inspect { file } => inspect(&env.load_grant(&file, true)?, out)?,
        GrantCommand::New {
            key,
            consent,
            legitimate,
            revoked,
            date,
            contract,
        } => {
            let token = new_grant(
                env,
                &key,
                &consent,
                legitimate.as_deref(),
                revoked,
                date,
                &contract,
            )?;
            writeln!(out, "{token}")?;
        }
    }
    Ok(())
}

/// `grant new`: the token of a grant (or a revocation) of a contract.
fn new_grant(
    env: &Env,
    key: &Path,
    consent: &str,
    legitimate: Option<&str>,
    revoked: bool,
    date: Option<u64>,
    contract: &str,
) -> Result<String> {
    let key = read_key(key)?;
    let contract = env.decode(contract)?;
    registry()
        .verify(&contract)
        .context("the contract does not verify")?;
    let body = if revoked {
        revoked_grant_body(&contract)?
    } else {
        let legitimate = match legitimate {
            Some(rows) => parse_rows(rows)?,
            None => all_on(&contract),
        };
        grant_body(&contract, parse_rows(consent)?, legitimate)?
    };
    let signed = sign(&key, body, date_or_now(date))?;
    registry()
        .verify(&signed)
        .context("the signed grant does not verify (check --consent against the contract)")?;
    Ok(to_token(&signed))
}

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
}
