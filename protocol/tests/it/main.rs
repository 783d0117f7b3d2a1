//! Integration tests of the protocol (one test binary, several modules).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod clear;
mod examples;
mod roundtrip;
mod vectors;

use protocol::anychain::{from_json_str, Limits, Value};
use std::path::PathBuf;

/// Reads a vector file (from `ALIAS_VECTORS_DIR` when set) as anychain values,
/// keeping key order and turning every number into a double.
pub fn load_vectors(name: &str) -> Value {
    let dir = std::env::var_os("ALIAS_VECTORS_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data"),
        PathBuf::from,
    );
    let text = std::fs::read_to_string(dir.join(name)).expect("vector file");
    let limits = Limits {
        max_bytes: 64 << 20,
        max_depth: 128,
    };
    from_json_str(&text, &limits).expect("vector file decodes")
}

/// A string field of a case.
pub fn s<'a>(case: &'a Value, key: &str) -> &'a str {
    case.get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("case field {key} is not a string"))
}

/// The crate rule: the protocol depends on no I/O crate (no async runtime,
/// no network, no broker or store client), so clients of the protocol need
/// nothing of the bank's runtime.
#[test]
fn protocol_depends_on_no_io_crate() {
    const ALLOWED: &[&str] = &[
        "base64",
        "blake2b_simd",
        "ed25519-dalek",
        "getrandom",
        "globset",
        // An in-memory bounded map (the signature cache): no I/O.
        "lru",
        "ryu-js",
        "serde",
        "serde_json",
        "thiserror",
        "toml",
    ];
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .expect("manifest");
    let manifest: toml::Table = toml::from_str(&manifest).expect("manifest parses");
    let deps = manifest
        .get("dependencies")
        .and_then(toml::Value::as_table)
        .expect("[dependencies]");
    for name in deps.keys() {
        assert!(
            ALLOWED.contains(&name.as_str()),
            "alias-protocol must not depend on {name}: it holds no I/O (see ARCHITECTURE.md, crate rules)"
        );
    }
}
