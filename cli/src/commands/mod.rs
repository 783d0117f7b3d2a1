//! The commands of `aliasctl`, one module per group: `documents` (keys,
//! signatures, folds, verification, tokens, scopes), `grants` (reading and
//! signing grants) and `remote` (transfers, dead letters and dumps, which
//! talk to a gateway or the broker).

pub(crate) mod documents;
pub(crate) mod grants;
pub(crate) mod remote;

use crate::net::HttpLimits;
use anyhow::{Context, Result};
use protocol::alias::{decode_verified, Grant};
use protocol::anychain::{from_json_str, signing_key_from_text, Limits, SigningKey, Value};
use std::io::Read;
use std::path::Path;

/// The bounds every command reads documents and replies under.
pub(crate) struct Env {
    /// Size and depth limits of the documents read.
    pub(crate) limits: Limits,
    /// Bounds on the replies of servers.
    pub(crate) http: HttpLimits,
}

impl Env {
    /// Reads and decodes a JSON document (`-`: standard input).
    pub(crate) fn decode(&self, file: &str) -> Result<Value> {
        let text = read_input(file)?;
        from_json_str(&text, &self.limits).with_context(|| format!("decoding {file}"))
    }

    /// Reads a grant, with its signatures verified when `verify` is set.
    pub(crate) fn load_grant(&self, file: &str, verify: bool) -> Result<Grant> {
        let text = read_input(file)?;
        let value = if verify {
            decode_verified(&text, &self.limits)?
        } else {
            from_json_str(&text, &self.limits)?
        };
        Ok(Grant::from_verified(value)?)
    }
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(crate) fn read_input(file: &str) -> Result<String> {
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

pub(crate) fn read_key(path: &Path) -> Result<SigningKey> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    signing_key_from_text(&text).with_context(|| format!("key file {}", path.display()))
}

/// Date given in ms, or now, as the double the signature stores.
#[allow(clippy::cast_precision_loss)]
pub(crate) fn date_or_now(date: Option<u64>) -> f64 {
    date.unwrap_or_else(now_ms) as f64
}
