//! Resource storage: dumps and per-scope archives behind one interface.
//!
//! [`Storage`] wraps an [`object_store::ObjectStore`] chosen by URL:
//!
//! * `file:///abs/dir` — a local directory (the default, embedded backend);
//! * `s3://bucket` or `s3://bucket/prefix` — an S3-compatible object store,
//!   configured by [`S3Settings`];
//! * `memory://` — in memory, for unit tests and the single-process mode.
//!
//! Keys look like `dumps/{user}/{provider}/{name}` or
//! `transfers/{id}/{generation}/{file}`; every key is checked by
//! [`validate_key`] before it reaches a backend, since parts of it come from
//! users. Objects are written atomically: a write that fails, is aborted or
//! exceeds its size limit leaves no partial object and does not disturb an
//! object already stored under the same key. Bytes are streamed both ways with
//! bounded memory.
//!
//! The module is split by what it holds: `keys` (the key grammar), `open`
//! (choosing and opening a backend), `objects` (the operations on objects),
//! `upload` (hashing, size limits and spooling of writes) and `read`
//! (streaming reads).

mod keys;
mod local_file;
mod objects;
mod open;
mod read;
mod upload;

pub use keys::validate_key;
pub use read::ObjectReader;
pub use upload::{SPOOLED_PARTS_IN_FLIGHT, SPOOL_BUFFER};

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use object_store::{ObjectMeta, ObjectStore};
use serde::Deserialize;

use protocol::anychain::b64u_encode;

/// Size of one multipart part, and of the largest object written with a
/// single request. S3 wants parts of at least 5 MiB (except the last).
pub const PART_SIZE: usize = 8 << 20;

/// How many parts may be uploading at once; with [`PART_SIZE`] this bounds
/// the memory of one [`Storage::put_stream`] to about 24 MiB.
pub const MAX_PARTS_IN_FLIGHT: usize = 2;

/// Longest accepted key, in bytes (S3's limit, prefix excluded).
pub const MAX_KEY_LEN: usize = 1024;

/// Size of the chunks read from a local file by [`Storage::get_stream`].
const FILE_READ_CHUNK: usize = 256 << 10;

/// Input chunks smaller than this are copied into larger blocks while they
/// wait to be uploaded; larger ones are kept as they are.
const COPY_BELOW: usize = 64 << 10;

/// How much of a hostile key an error message repeats.
const SHOWN_KEY_CHARS: usize = 120;

/// Errors of resource storage.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The key (or prefix) breaks the key grammar; see [`validate_key`].
    #[error("invalid storage key {key:?}: {reason}")]
    InvalidKey {
        /// The offending key, cut to a readable length.
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The storage URL is not one of the accepted forms.
    #[error(
        "unsupported storage URL {url:?}: {reason} \
         (accepted: file:///absolute/dir, s3://bucket[/prefix], memory://)"
    )]
    UnsupportedUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No object is stored under the key.
    #[error("no stored object {0:?}")]
    NotFound(String),
    /// The stream passed to [`Storage::put_stream`] went past its size limit;
    /// nothing was stored.
    #[error("object larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// The requested range starts after the end of the object.
    #[error("range {start}..{end} is outside the object ({size} bytes)")]
    InvalidRange {
        /// First requested byte.
        start: u64,
        /// End of the requested range (exclusive).
        end: u64,
        /// Size of the object.
        size: u64,
    },
    /// Writing the object failed in the backend (part upload or completion);
    /// nothing was stored.
    #[error("storage upload failed: {0}")]
    Upload(String),
    /// Any other failure of the backend.
    #[error("storage backend failed: {0}")]
    Backend(String),
    /// A local I/O failure: the input stream of [`Storage::put_stream`]
    /// failed, or the local directory could not be prepared.
    #[error("storage I/O: {0}")]
    Io(#[from] io::Error),
}

impl From<StorageError> for io::Error {
    fn from(err: StorageError) -> Self {
        match err {
            StorageError::Io(e) => e,
            StorageError::NotFound(_) => io::Error::new(io::ErrorKind::NotFound, err),
            StorageError::InvalidKey { .. } | StorageError::InvalidRange { .. } => {
                io::Error::new(io::ErrorKind::InvalidInput, err)
            }
            other => io::Error::other(other),
        }
    }
}

/// Settings of the S3 backend. Unset values fall back to the standard `AWS_*`
/// environment variables (and then to instance or web-identity credentials).
///
/// `Debug` never shows the secret key.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct S3Settings {
    /// Endpoint of an S3-compatible service, e.g. `http://127.0.0.1:9000`;
    /// AWS itself when unset.
    pub endpoint: Option<String>,
    /// Region, e.g. `us-east-1`.
    pub region: Option<String>,
    /// Access key id.
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<String>,
    /// Allow a plain `http://` endpoint.
    pub allow_http: bool,
    /// Address buckets as `bucket.endpoint` instead of `endpoint/bucket`.
    pub virtual_hosted_style: bool,
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("allow_http", &self.allow_http)
            .field("virtual_hosted_style", &self.virtual_hosted_style)
            .finish()
    }
}

/// What a write stored: the size and BLAKE2b-512 hash of the object.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PutInfo {
    /// Size in bytes.
    pub size: u64,
    /// BLAKE2b-512 of the bytes.
    pub blake2b: [u8; 64],
}

impl PutInfo {
    /// The hash in URL-safe base64 without padding.
    pub fn blake2b_b64(&self) -> String {
        b64u_encode(&self.blake2b)
    }
}

impl fmt::Debug for PutInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PutInfo")
            .field("size", &self.size)
            .field("blake2b", &self.blake2b_b64())
            .finish()
    }
}

/// Metadata of a stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Its key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// When it was last written.
    pub modified: SystemTime,
}

impl From<ObjectMeta> for ObjectInfo {
    fn from(meta: ObjectMeta) -> Self {
        ObjectInfo {
            key: meta.location.to_string(),
            size: meta.size as u64,
            modified: meta.last_modified.into(),
        }
    }
}

/// Resource storage: one object store and the operations alias-bank needs.
///
/// Cloning is cheap and clones share the backend (an `InMemory` store
/// included).
#[derive(Clone, Debug)]
pub struct Storage {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn ObjectStore>,
    location: String,
    /// The directory of a local store, to remove the empty directories an
    /// aborted upload leaves.
    local_root: Option<PathBuf>,
    /// Places of the parts of spooled uploads in memory.
    spooled_parts: Arc<tokio::sync::Semaphore>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_debug_hides_the_secret() {
        let settings = S3Settings {
            access_key_id: Some("AKID".into()),
            secret_access_key: Some("very-secret".into()),
            ..S3Settings::default()
        };
        let text = format!("{settings:?}");
        assert!(
            text.contains("AKID") && !text.contains("very-secret"),
            "{text}"
        );
    }

    #[test]
    fn put_info_b64() {
        let info = PutInfo {
            size: 0,
            blake2b: *blake2b_simd::blake2b(b"").as_array(),
        };
        assert_eq!(info.blake2b_b64().len(), 86);
    }
}
