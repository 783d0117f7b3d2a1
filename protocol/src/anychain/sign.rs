//! Ed25519 signatures in the anychain format: `{type: "anychain.signature",
//! date, signer, body, signature}`, where `signature` signs the 64-byte fold
//! of `{type, body, date, signer}`; and the reference's revocation object.

use super::b64::{b64u_decode, b64u_encode};
use super::fold::{fold, FoldError};
use super::sigcache::SignatureCache;
use super::value::{Dict, Value};
use ed25519_dalek::{Signature, Signer, VerifyingKey};

pub use ed25519_dalek::SigningKey;

/// The type of a signature object.
pub const SIGNATURE_TYPE: &str = "anychain.signature";
/// The type of the library's revocation object.
pub const REVOKE_TYPE: &str = "anychain.revoke";

/// A key file or key text that is not a usable Ed25519 secret key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not base64 or hex of 32 or 64 bytes.
    #[error("not a secret key: expected URL-safe base64 (or hex) of a 32-byte seed or a 64-byte seed+public key")]
    Format,
    /// A 64-byte secret key whose second half is not the seed's public key.
    #[error("secret key and public key halves do not match")]
    Mismatch,
    /// The system random source failed.
    #[error("no randomness available: {0}")]
    Random(String),
}

/// The key pair of a 32-byte seed (libsodium `crypto_sign_seed_keypair`).
pub fn signing_key_from_seed(seed: &[u8; 32]) -> SigningKey {
    SigningKey::from_bytes(seed)
}

/// A new random key pair from the operating system's random source.
pub fn generate_signing_key() -> Result<SigningKey, KeyError> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
    Ok(signing_key_from_seed(&seed))
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|p| u8::from_str_radix(p, 16).ok())
        })
        .collect()
}

/// Reads a secret key written as text: URL-safe base64 (or hex) of the
/// 32-byte seed, or of libsodium's 64-byte secret key (seed then public key).
pub fn signing_key_from_text(text: &str) -> Result<SigningKey, KeyError> {
    let text = text.trim();
    let bytes = if text.len() == 64 || text.len() == 128 {
        decode_hex(text).or_else(|| b64u_decode(text).ok())
    } else {
        b64u_decode(text).ok()
    }
    .ok_or(KeyError::Format)?;
    let seed: [u8; 32] = bytes
        .get(..32)
        .and_then(|s| s.try_into().ok())
        .ok_or(KeyError::Format)?;
    let key = signing_key_from_seed(&seed);
    match bytes.len() {
        32 => Ok(key),
        64 if bytes.get(32..) == Some(key.verifying_key().as_bytes().as_slice()) => Ok(key),
        64 => Err(KeyError::Mismatch),
        _ => Err(KeyError::Format),
    }
}

/// The public key of a signing key, as URL-safe unpadded base64.
pub fn public_key_b64(key: &SigningKey) -> String {
    b64u_encode(key.verifying_key().as_bytes())
}

/// The keys of the dict whose fold a signature signs, in its order.
pub(crate) const SIGNED_KEYS: [&str; 4] = ["type", "date", "signer", "body"];

/// The dict whose fold a signature signs: `{type, date, signer, body}`.
fn signed_part(sig: &Dict) -> Dict {
    let mut part = Dict::new();
    for key in SIGNED_KEYS {
        part.insert(key, sig.get(key).cloned().unwrap_or(Value::Null));
    }
    part
}

/// Signs `body` at `date_ms` (milliseconds since the Unix epoch), giving the
/// signature object in the reference's key order.
pub fn sign(key: &SigningKey, body: Value, date_ms: f64) -> Result<Value, FoldError> {
    let mut sig = Dict::new()
        .with("type", SIGNATURE_TYPE)
        .with("date", date_ms)
        .with(
            "signer",
            Value::Bytes(key.verifying_key().as_bytes().to_vec()),
        )
        .with("body", body);
    let message = fold(&Value::Dict(signed_part(&sig)))?;
    let signature = key.sign(message.as_bytes());
    sig.insert("signature", Value::Bytes(signature.to_bytes().to_vec()));
    Ok(Value::Dict(sig))
}

/// What libsodium-wrappers makes of an argument it wants as bytes; the
/// error texts are its `TypeError`s.
fn sodium_bytes<'a>(v: Option<&'a Value>, name: &str, len: usize) -> Result<&'a [u8], String> {
    let bytes = match v {
        None | Some(Value::Null) => {
            return Err(format!("TypeError: {name} cannot be null or undefined"))
        }
        Some(Value::Bytes(b)) => b.as_slice(),
        // libsodium-wrappers would use the string's UTF-8 bytes as the key;
        // alias-bank never does (the length check keeps the reference message).
        Some(Value::String(s)) => {
            if s.len() != len {
                return Err(format!("TypeError: invalid {name} length"));
            }
            return Err("bad signature or forged document".to_owned());
        }
        Some(_) => return Err(format!("TypeError: unsupported input type for {name}")),
    };
    if bytes.len() != len {
        return Err(format!("TypeError: invalid {name} length"));
    }
    Ok(bytes)
}

/// Verifies a detached Ed25519 signature over `message` the strict way
/// (canonical S, no small-order keys), as libsodium does; through `cache`
/// when given (which only skips the arithmetic of a triple that verified).
fn verify_detached(
    signature: Option<&Value>,
    message: &[u8],
    public_key: Option<&Value>,
    failure: &str,
    cache: Option<&SignatureCache>,
) -> Result<(), String> {
    let sig = sodium_bytes(signature, "signature", 64)?;
    let pk = sodium_bytes(public_key, "publicKey", 32)?;
    let pk: [u8; 32] = pk.try_into().map_err(|_| failure.to_owned())?;
    let sig = Signature::from_slice(sig).map_err(|_| failure.to_owned())?;
    let key = VerifyingKey::from_bytes(&pk).map_err(|_| failure.to_owned())?;
    match cache {
        Some(cache) => cache.verify_strict(&key, message, &sig),
        None => key.verify_strict(message, &sig),
    }
    .map_err(|_| failure.to_owned())
}

fn fold_message(part: Dict) -> Result<Vec<u8>, String> {
    fold(&Value::Dict(part))
        .map(|f| f.as_bytes().to_vec())
        .map_err(|_| UNCONVERTIBLE.to_owned())
}

/// The `anychain.signature` validator: the reference's checks and messages.
pub fn verify_signature_value(sig: &Dict) -> Result<(), String> {
    let message = fold(&Value::Dict(signed_part(sig)));
    verify_signature_folded(sig, message.as_ref().map(|m| m.as_bytes()), None)
}

const SIGNATURE_FAILURE: &str = "bad signature or forged document";
const UNCONVERTIBLE: &str = "TypeError: Cannot convert object to primitive value";

/// The `anychain.signature` validator given the fold of the signed part
/// (`message`, computed by the caller's single pass over the document),
/// verifying through `cache` when given. Same checks and messages as
/// [`verify_signature_value`].
pub(crate) fn verify_signature_folded(
    sig: &Dict,
    message: Result<&[u8], &FoldError>,
    cache: Option<&SignatureCache>,
) -> Result<(), String> {
    if !["signature", "signer", "date", "body"]
        .iter()
        .all(|k| sig.contains_key(k))
    {
        return Err("missing fields".to_owned());
    }
    let message = message.map_err(|_| UNCONVERTIBLE.to_owned())?;
    verify_detached(
        sig.get("signature"),
        message,
        sig.get("signer"),
        SIGNATURE_FAILURE,
        cache,
    )
}

/// The `anychain.revoke` validator: `revocation` must be the signature by
/// `signature.signer` of the fold of `{type, signature}`.
pub fn verify_revoke_value(rev: &Dict) -> Result<(), String> {
    if !rev.contains_key("revocation") || !rev.contains_key("signature") {
        return Err("missing fields".to_owned());
    }
    let part = Dict::new()
        .with("type", rev.get("type").cloned().unwrap_or(Value::Null))
        .with(
            "signature",
            rev.get("signature").cloned().unwrap_or(Value::Null),
        );
    let message = fold_message(part)?;
    let signer = match rev.get("signature") {
        Some(Value::Null) => {
            return Err("TypeError: Cannot read properties of null (reading 'signer')".to_owned())
        }
        Some(v) => v.get("signer"),
        None => None,
    };
    verify_detached(
        rev.get("revocation"),
        &message,
        signer,
        "bad revocation's signature",
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_then_verify_and_tamper() {
        let key = signing_key_from_seed(&[1; 32]);
        assert_eq!(
            public_key_b64(&key),
            "iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w"
        );
        let signed = sign(&key, Value::from("hello"), 1_574_158_519_000.0).unwrap();
        let Value::Dict(mut d) = signed else {
            unreachable!()
        };
        assert_eq!(
            d.keys().collect::<Vec<_>>(),
            ["type", "date", "signer", "body", "signature"]
        );
        assert_eq!(verify_signature_value(&d), Ok(()));
        d.insert("date", Value::Number(1_574_158_519_001.0));
        assert_eq!(
            verify_signature_value(&d).unwrap_err(),
            "bad signature or forged document"
        );
        d.remove("body");
        assert_eq!(verify_signature_value(&d).unwrap_err(), "missing fields");
    }

    #[test]
    fn wrong_lengths_give_libsodium_messages() {
        let key = signing_key_from_seed(&[2; 32]);
        let Value::Dict(mut d) = sign(&key, Value::Null, 1.0).unwrap() else {
            unreachable!()
        };
        d.insert("signer", Value::Bytes(vec![0; 31]));
        assert_eq!(
            verify_signature_value(&d).unwrap_err(),
            "TypeError: invalid publicKey length"
        );
        d.insert("signature", Value::Number(5.0));
        assert_eq!(
            verify_signature_value(&d).unwrap_err(),
            "TypeError: unsupported input type for signature"
        );
        d.insert("signature", Value::Null);
        assert_eq!(
            verify_signature_value(&d).unwrap_err(),
            "TypeError: signature cannot be null or undefined"
        );
    }

    #[test]
    fn key_text_forms() {
        let key = signing_key_from_seed(&[7; 32]);
        let seed_b64 = b64u_encode(&[7; 32]);
        assert_eq!(
            signing_key_from_text(&seed_b64).unwrap().to_bytes(),
            key.to_bytes()
        );
        let full = b64u_encode(&key.to_keypair_bytes());
        assert_eq!(
            signing_key_from_text(&full).unwrap().to_bytes(),
            key.to_bytes()
        );
        let hex: String = [7u8; 32].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            signing_key_from_text(&hex).unwrap().to_bytes(),
            key.to_bytes()
        );
        let mut bad = key.to_keypair_bytes();
        bad[40] ^= 1;
        assert_eq!(
            signing_key_from_text(&b64u_encode(&bad)),
            Err(KeyError::Mismatch)
        );
        assert_eq!(signing_key_from_text("nope!"), Err(KeyError::Format));
        assert!(generate_signing_key().is_ok());
    }
}
