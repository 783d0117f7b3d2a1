//! Base64 as libsodium's default variant: URL-safe alphabet, no padding,
//! strict decoding (no padding, no `+`/`/`, no whitespace, no stray bits).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// A string that is not strict URL-safe unpadded base64.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid base64 (expected URL-safe alphabet without padding): {0}")]
pub struct B64Error(String);

/// Encodes bytes as URL-safe base64 without padding.
pub fn b64u_encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes URL-safe base64 without padding, rejecting anything libsodium rejects.
pub fn b64u_decode(text: &str) -> Result<Vec<u8>, B64Error> {
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|e| B64Error(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_libsodium_strictness() {
        assert_eq!(b64u_encode(&[0xfb, 0xff]), "-_8");
        assert_eq!(b64u_decode("-_8").unwrap(), vec![0xfb, 0xff]);
        assert_eq!(b64u_decode("AA").unwrap(), vec![0]);
        assert_eq!(b64u_decode("").unwrap(), Vec::<u8>::new());
        for bad in ["+/8", "AA==", "AB", "A", " AA", "AA\n"] {
            assert!(b64u_decode(bad).is_err(), "{bad:?} must be rejected");
        }
    }
}
