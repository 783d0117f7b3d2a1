//! The anychain format: values, JSON form, tokens, fold, signatures and
//! validation, exactly as the reference JavaScript library computes them.

mod b64;
mod fold;
mod json;
mod memo;
mod registry;
mod sigcache;
mod sign;
mod value;

pub use b64::{b64u_decode, b64u_encode, B64Error};
pub use fold::{fold, Fold, FoldError};
pub use json::{from_json_str, to_json_pretty, to_token, DecodeError, Limits};
pub use memo::{DocumentMemo, MAX_ENTRY_BYTES};
pub use registry::{Registry, RegistryError, Seen, Validator, VerifyError};
pub use sigcache::SignatureCache;
pub use sign::{
    generate_signing_key, public_key_b64, sign, signing_key_from_seed, signing_key_from_text,
    verify_revoke_value, verify_signature_value, KeyError, SigningKey, REVOKE_TYPE, SIGNATURE_TYPE,
};
pub use value::{Dict, Value};
