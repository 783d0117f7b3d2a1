//! Keys, signatures, folds, verification, tokens and scopes: the commands
//! that work on documents alone.

use super::{date_or_now, read_input, read_key, Env};
use crate::TokenCommand;
use anyhow::{Context, Result};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use protocol::alias::{decode_verified, AcceptancePolicy, Grant};
use protocol::anychain::{
    fold as fold_value, from_json_str, generate_signing_key, public_key_b64, sign as sign_value,
    to_json_pretty, to_token, SigningKey,
};
use protocol::scope::Scope;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

/// `keygen`: a new key in `path`, its public key printed.
pub(crate) fn keygen(path: &Path, force: bool, out: &mut impl Write) -> Result<()> {
    let key = generate_signing_key()?;
    write_key(path, &key, force)?;
    writeln!(out, "{}", public_key_b64(&key))?;
    Ok(())
}

/// `pubkey`: the public key of a key file.
pub(crate) fn pubkey(key: &Path, out: &mut impl Write) -> Result<()> {
    writeln!(out, "{}", public_key_b64(&read_key(key)?))?;
    Ok(())
}

/// `sign`: the signed document, as a token or pretty JSON.
pub(crate) fn sign(
    env: &Env,
    key: &Path,
    date: Option<u64>,
    pretty: bool,
    file: &str,
    out: &mut impl Write,
) -> Result<()> {
    let key = read_key(key)?;
    let signed = sign_value(&key, env.decode(file)?, date_or_now(date))?;
    let text = if pretty {
        to_json_pretty(&signed)
    } else {
        to_token(&signed)
    };
    writeln!(out, "{text}")?;
    Ok(())
}

/// `fold`: the fold of a document.
pub(crate) fn fold(env: &Env, file: &str, out: &mut impl Write) -> Result<()> {
    writeln!(out, "{}", fold_value(&env.decode(file)?)?.to_b64())?;
    Ok(())
}

/// `verify`: `ok`, or the reason and a failure exit status.
pub(crate) fn verify(
    env: &Env,
    policy: bool,
    now: Option<u64>,
    file: &str,
    out: &mut impl Write,
) -> Result<ExitCode> {
    let limits = env.limits;
    let text = read_input(file)?;
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
    Ok(ExitCode::SUCCESS)
}

/// `token encode` / `token decode`.
pub(crate) fn token(env: &Env, command: TokenCommand, out: &mut impl Write) -> Result<()> {
    match command {
        TokenCommand::Encode { url, file } => {
            let token = to_token(&env.decode(&file)?);
            if url {
                writeln!(out, "{}", utf8_percent_encode(&token, URI_COMPONENT))?;
            } else {
                writeln!(out, "{token}")?;
            }
        }
        TokenCommand::Decode { token } => {
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
            let value = from_json_str(&text, &env.limits).context("decoding token")?;
            writeln!(out, "{}", to_json_pretty(&value))?;
        }
    }
    Ok(())
}

/// `scope`: a scope in the string grammar and as a token.
pub(crate) fn scope(env: &Env, scope: &str, out: &mut impl Write) -> Result<()> {
    let parsed = if scope.trim_start().starts_with('{') {
        Scope::from_value(&from_json_str(scope, &env.limits)?)?
    } else {
        Scope::parse(scope)?
    };
    writeln!(out, "{}", parsed.display())?;
    writeln!(out, "{}", to_token(&parsed.to_value()))?;
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_component_matches_javascript() {
        let s = utf8_percent_encode("{\"a\":\"b c/é\"}-_.!~*'()", URI_COMPONENT).to_string();
        assert_eq!(s, "%7B%22a%22%3A%22b%20c%2F%C3%A9%22%7D-_.!~*'()");
    }
}
