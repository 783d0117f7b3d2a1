//! The account record the data bank keeps (never the key) and its checks.

use crate::error::ApiError;
use crate::AppState;
use protocol::anychain::b64u_decode;
use runtime::state::WebKey;
use serde::{Deserialize, Serialize};

/// The argon2id parameters of an account (libsodium `crypto_pwhash`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PwHash {
    /// Always `argon2id13`.
    pub alg: String,
    /// Passes.
    pub opslimit: u64,
    /// Memory in bytes.
    pub memlimit: u64,
}

impl PwHash {
    pub(super) fn defaults() -> PwHash {
        PwHash {
            alg: "argon2id13".into(),
            opslimit: 2,
            memlimit: 64 << 20,
        }
    }
}

/// What the data bank stores per account (never the key).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AccountRecord {
    /// The account name.
    pub username: String,
    /// 16-byte salt, URL-safe base64.
    pub salt: String,
    /// argon2id parameters.
    pub pwhash: PwHash,
    /// Token of the sealed identity (`{"__box":"…"}`).
    #[serde(rename = "box")]
    pub sealed: String,
    /// The 32-byte public verifier, URL-safe base64.
    pub public_pwd_hash: String,
    /// The user's Ed25519 public key, URL-safe base64.
    pub public_key: String,
}

fn bad(code: &'static str, reason: impl Into<String>) -> ApiError {
    ApiError::bad_request(code, reason)
}

fn bytes_of(field: &str, text: &str, len: usize) -> Result<Vec<u8>, ApiError> {
    match b64u_decode(text) {
        Ok(b) if b.len() == len => Ok(b),
        _ => Err(bad(
            "bad_account",
            format!("{field} must be {len} bytes in URL-safe base64"),
        )),
    }
}

/// Usernames: 1-32 of `[a-z0-9._-]`, starting with a letter or digit.
pub fn check_username(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(bad(
            "bad_username",
            "a username is 1-32 of a-z, 0-9, '.', '_' and '-', starting with a letter or digit",
        ))
    }
}

impl AccountRecord {
    pub(super) fn check(&self) -> Result<(), ApiError> {
        check_username(&self.username)?;
        bytes_of("salt", &self.salt, 16)?;
        bytes_of("publicPwdHash", &self.public_pwd_hash, 32)?;
        bytes_of("publicKey", &self.public_key, 32)?;
        let p = &self.pwhash;
        if p.alg != "argon2id13" || p.opslimit < 2 || p.memlimit < (16 << 20) || p.opslimit > 16 {
            return Err(bad(
                "bad_account",
                "pwhash must be argon2id13 with opslimit 2-16 and memlimit of at least 16 MiB",
            ));
        }
        let sealed: serde_json::Value = serde_json::from_str(&self.sealed)
            .map_err(|_| bad("bad_account", "box must be the token of a sealed box"))?;
        let is_box = sealed.as_object().is_some_and(|o| {
            o.len() == 1
                && o.get("__box")
                    .and_then(serde_json::Value::as_str)
                    .and_then(|b| b64u_decode(b).ok())
                    .is_some_and(|b| b.len() > 48 && b.len() < 16 * 1024)
        });
        if !is_box {
            return Err(bad("bad_account", "box must be the token of a sealed box"));
        }
        Ok(())
    }
}

pub(super) fn account_key(username: &str) -> WebKey<'_> {
    WebKey::Account(username)
}

/// The account record of `username`, if any.
pub async fn account(app: &AppState, username: &str) -> Result<Option<AccountRecord>, ApiError> {
    match app.state.kv_get(&account_key(username)).await? {
        Some(json) => serde_json::from_str(&json)
            .map(Some)
            .map_err(|e| ApiError::unavailable("account record", e)),
        None => Ok(None),
    }
}
