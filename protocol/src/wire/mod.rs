//! The push protocol on the wire, as the bank sends it and a client (the
//! sink) reads it: header names, the chunk ranges, the finish bodies and
//! the error envelope. One definition for both ends (PROTOCOL.md, the push
//! protocol).

mod range;

pub use range::{parse_content_range, parse_range, parse_range_loose, ChunkRange, ContentRange};

use crate::anychain::b64u_encode;
use serde::{Deserialize, Serialize};
use std::io::{self, Read};
use std::path::Path;

/// The resume extension's header: bytes of a file the client holds.
pub const UPLOAD_OFFSET: &str = "Upload-Offset";

/// The start request's form parameter (or JSON key) holding the grant token.
pub const GRANT_PARAM: &str = "grant";

/// The `action` of a file finish.
pub const FINISH_ACTION: &str = "finish";

/// Longest name segment (transfer id, file name, storage key segment), in
/// bytes.
pub const MAX_SEGMENT_LEN: usize = 255;

/// Whether `segment` may be one segment of a key: 1 to 255 bytes of
/// `[A-Za-z0-9._-]`, and neither `.` nor `..`.
pub fn is_safe_segment(segment: &str) -> bool {
    !segment.is_empty()
        && segment.len() <= MAX_SEGMENT_LEN
        && segment != "."
        && segment != ".."
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Size and BLAKE2b-512 (URL-safe base64, no padding) of what `reader`
/// yields, read 1 MiB at a time: the `size` and `blake2b` of a finish.
pub fn blake2b_reader(mut reader: impl Read) -> io::Result<(u64, String)> {
    let mut state = blake2b_simd::State::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        state.update(buf.get(..n).unwrap_or_default());
        size += n as u64;
    }
    Ok((size, b64u_encode(state.finalize().as_bytes())))
}

/// [`blake2b_reader`] of a local file: how clients, the demo and the
/// benchmarks check what they received against a finish.
pub fn blake2b_file(path: &Path) -> io::Result<(u64, String)> {
    blake2b_reader(std::fs::File::open(path)?)
}

/// `POST {transfer}/{file}`: the file is complete,
/// `{"action":"finish","size":N,"blake2b":"…"}`. A client may meet senders
/// that leave out `size` and `blake2b`, so reading keeps them optional.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileFinish {
    /// Always [`FINISH_ACTION`] from the bank.
    pub action: Option<String>,
    /// The file's size in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// BLAKE2b-512 of its bytes, URL-safe base64 without padding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blake2b: Option<String>,
}

impl FileFinish {
    /// The finish of a file of `size` bytes with this hash.
    pub fn new(size: u64, blake2b: &str) -> FileFinish {
        FileFinish {
            action: Some(FINISH_ACTION.to_owned()),
            size: Some(size),
            blake2b: Some(blake2b.to_owned()),
        }
    }
}

/// One file of the transfer finish: `{"name","size","blake2b"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSummary {
    /// The file name.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// BLAKE2b-512 of its bytes, URL-safe base64 without padding.
    pub blake2b: String,
}

/// `POST {transfer}`: the transfer is complete,
/// `{"finished":true,"files":[…]}`; `files` is empty for a revoked grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferFinish {
    /// Always `true` from the bank.
    pub finished: Option<bool>,
    /// Every file of the transfer.
    pub files: Option<Vec<FileSummary>>,
}

impl TransferFinish {
    /// The finish listing these files.
    pub fn new(files: Vec<FileSummary>) -> TransferFinish {
        TransferFinish {
            finished: Some(true),
            files: Some(files),
        }
    }
}

/// The error answer of the bank's HTTP services and of the sink:
/// `{"status":"error","reason":…,"code":…}`. `reason` is for people,
/// `code` is stable and for programs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorEnvelope {
    /// Always `"error"`.
    pub status: String,
    /// What went wrong, in words.
    pub reason: String,
    /// The stable machine-readable code.
    #[serde(default)]
    pub code: String,
}

impl ErrorEnvelope {
    /// An error answer with this code and reason.
    pub fn new(code: &str, reason: impl Into<String>) -> ErrorEnvelope {
        ErrorEnvelope {
            status: "error".to_owned(),
            reason: reason.into(),
            code: code.to_owned(),
        }
    }

    /// The envelope as a JSON object, for answers that add fields to it.
    pub fn to_json(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut map = serde_json::Map::new();
        map.insert("status".into(), self.status.clone().into());
        map.insert("reason".into(), self.reason.clone().into());
        map.insert("code".into(), self.code.clone().into());
        map
    }

    /// The `reason` of an answer body, when it is a JSON object with a
    /// string `reason` (any peer's error answer, not only this envelope).
    pub fn reason_of(body: &[u8]) -> Option<String> {
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        value.get("reason")?.as_str().map(str::to_owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bodies keep the byte form the reference client reads.
    #[test]
    fn bodies_on_the_wire() {
        let f = serde_json::to_string(&FileFinish::new(5, "abc")).unwrap();
        assert_eq!(f, r#"{"action":"finish","size":5,"blake2b":"abc"}"#);
        let t = TransferFinish::new(vec![FileSummary {
            name: "a.zip".into(),
            size: 5,
            blake2b: "abc".into(),
        }]);
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#"{"finished":true,"files":[{"name":"a.zip","size":5,"blake2b":"abc"}]}"#
        );
        let e = serde_json::to_string(&ErrorEnvelope::new("bad_range", "bad Range")).unwrap();
        assert_eq!(
            e,
            r#"{"status":"error","reason":"bad Range","code":"bad_range"}"#
        );
        assert_eq!(
            ErrorEnvelope::reason_of(e.as_bytes()).as_deref(),
            Some("bad Range")
        );
        assert_eq!(ErrorEnvelope::reason_of(b"not json"), None);
    }

    #[test]
    fn digest_of_a_reader() {
        let (size, hash) = blake2b_reader(&b"abc"[..]).unwrap();
        assert_eq!(size, 3);
        assert_eq!(hash.len(), 86);
        assert!(is_safe_segment("Your-Orders_1.zip"));
        for bad in ["", ".", "..", "a/b", "a b", "é"] {
            assert!(!is_safe_segment(bad), "{bad:?}");
        }
    }

    /// A sender that leaves out optional fields is still read.
    #[test]
    fn lenient_reading() {
        let f: FileFinish = serde_json::from_str(r#"{"action":"finish"}"#).unwrap();
        assert_eq!(f.size, None);
        let t: TransferFinish = serde_json::from_str(r#"{"finished":true}"#).unwrap();
        assert_eq!(t.files, None);
    }
}
