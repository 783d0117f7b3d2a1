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

use protocol::wire::{is_safe_segment, MAX_SEGMENT_LEN};
use std::fmt;
use std::io;
use std::ops::Range;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::stream::{self, BoxStream};
use futures_util::{Stream, StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::WriteMultipart;
use object_store::{
    GetOptions, GetRange, GetResultPayload, ObjectMeta, ObjectStore, PutPayload, PutPayloadMut,
};
use serde::Deserialize;
use tokio::io::{AsyncRead, ReadBuf};

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

/// Checks a key: segments that pass [`is_safe_segment`] joined by single
/// `/`, no leading or trailing `/`, at most [`MAX_KEY_LEN`] bytes.
pub fn validate_key(key: &str) -> Result<(), StorageError> {
    let fail = |reason| Err(invalid_key(key, reason));
    if key.is_empty() {
        return fail("empty");
    }
    if key.len() > MAX_KEY_LEN {
        return fail("longer than 1024 bytes");
    }
    if key.starts_with('/') || key.ends_with('/') {
        return fail("leading or trailing '/'");
    }
    for segment in key.split('/') {
        if segment.is_empty() {
            return fail("empty segment");
        }
        if segment == "." || segment == ".." {
            return fail("'.' or '..' segment");
        }
        if segment.len() > MAX_SEGMENT_LEN {
            return fail("segment longer than 255 bytes");
        }
        if !is_safe_segment(segment) {
            return fail("segment outside [A-Za-z0-9._-]");
        }
    }
    Ok(())
}

fn invalid_key(key: &str, reason: &'static str) -> StorageError {
    StorageError::InvalidKey {
        key: key.chars().take(SHOWN_KEY_CHARS).collect(),
        reason,
    }
}

/// The object-store path of a checked key.
fn key_path(key: &str) -> Result<Path, StorageError> {
    validate_key(key)?;
    Path::parse(key).map_err(|e| StorageError::InvalidKey {
        key: key.chars().take(SHOWN_KEY_CHARS).collect(),
        reason: if matches!(e, object_store::path::Error::EmptySegment { .. }) {
            "empty segment"
        } else {
            "rejected by the object store"
        },
    })
}

/// The path of a listing prefix: empty for everything, otherwise a key, with
/// one trailing `/` tolerated.
fn prefix_path(prefix: &str) -> Result<Option<Path>, StorageError> {
    let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
    if prefix.is_empty() {
        return Ok(None);
    }
    key_path(trimmed).map(Some)
}

/// Maps a backend error, turning `NotFound` into [`StorageError::NotFound`].
fn backend(op: &str, key: &str, err: object_store::Error) -> StorageError {
    match err {
        object_store::Error::NotFound { .. } => StorageError::NotFound(key.to_owned()),
        other => StorageError::Backend(format!("{op} {key}: {other}")),
    }
}

fn upload_error(key: &str, err: object_store::Error) -> StorageError {
    StorageError::Upload(format!("{key}: {err}"))
}

fn unsupported(url: &str, reason: impl Into<String>) -> StorageError {
    StorageError::UnsupportedUrl {
        url: url.to_owned(),
        reason: reason.into(),
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

impl Storage {
    /// Opens the storage a URL names: `file:///abs/dir` (the directory is
    /// created when missing), `s3://bucket[/prefix]` with `s3`, or
    /// `memory://` (a new, empty in-memory store).
    pub fn from_url(url: &str, s3: &S3Settings) -> Result<Storage, StorageError> {
        let parsed = url::Url::parse(url).map_err(|e| unsupported(url, e.to_string()))?;
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(unsupported(url, "query and fragment are not allowed"));
        }
        match parsed.scheme() {
            "file" => Self::local(url, &parsed),
            "s3" => Self::s3(url, &parsed, s3),
            "memory" => {
                let path = parsed.path();
                if parsed.host_str().is_some_and(|h| !h.is_empty())
                    || !(path.is_empty() || path == "/")
                {
                    return Err(unsupported(url, "memory:// takes no host or path"));
                }
                Ok(Self::from_store(Arc::new(InMemory::new()), "memory://"))
            }
            other => Err(unsupported(url, format!("unknown scheme {other:?}"))),
        }
    }

    fn local(url: &str, parsed: &url::Url) -> Result<Storage, StorageError> {
        let dir = parsed
            .to_file_path()
            .map_err(|()| unsupported(url, "not a local absolute path"))?;
        std::fs::create_dir_all(&dir)?;
        let store = LocalFileSystem::new_with_prefix(&dir)
            .map_err(|e| unsupported(url, e.to_string()))?
            .with_automatic_cleanup(true);
        let location = format!("file://{}", dir.display());
        let root = std::fs::canonicalize(&dir)?;
        Ok(Self::build(Arc::new(store), location, Some(root)))
    }

    fn s3(url: &str, parsed: &url::Url, s3: &S3Settings) -> Result<Storage, StorageError> {
        let bucket = parsed.host_str().unwrap_or_default();
        if !is_bucket_name(bucket) {
            return Err(unsupported(url, "missing or invalid bucket name"));
        }
        // The prefix comes from the raw text: the URL parser would quietly
        // resolve `.` and `..` segments.
        let raw_path = url
            .split_once("://")
            .and_then(|(_, rest)| rest.split_once('/'))
            .map_or("", |(_, path)| path);
        let prefix = raw_path.strip_suffix('/').unwrap_or(raw_path);
        if !prefix.is_empty() {
            validate_key(prefix).map_err(|e| unsupported(url, format!("prefix: {e}")))?;
        }
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_allow_http(s3.allow_http)
            .with_virtual_hosted_style_request(s3.virtual_hosted_style);
        if let Some(endpoint) = &s3.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(region) = &s3.region {
            builder = builder.with_region(region);
        }
        if let Some(id) = &s3.access_key_id {
            builder = builder.with_access_key_id(id);
        }
        if let Some(secret) = &s3.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        let store = builder
            .build()
            .map_err(|e| unsupported(url, e.to_string()))?;
        let mut location = format!("s3://{bucket}");
        if !prefix.is_empty() {
            location.push('/');
            location.push_str(prefix);
        }
        if let Some(endpoint) = &s3.endpoint {
            location.push_str(&format!(" at {endpoint}"));
        }
        let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
            Arc::new(store)
        } else {
            Arc::new(PrefixStore::new(store, prefix))
        };
        Ok(Self::from_store(store, location))
    }

    /// Wraps any object store (a test double, a throttled store…);
    /// `location` is how logs name it.
    pub fn from_store(store: Arc<dyn ObjectStore>, location: impl Into<String>) -> Storage {
        Self::build(store, location.into(), None)
    }

    fn build(store: Arc<dyn ObjectStore>, location: String, local_root: Option<PathBuf>) -> Self {
        Storage {
            inner: Arc::new(Inner {
                store,
                location,
                local_root,
                spooled_parts: Arc::new(tokio::sync::Semaphore::new(SPOOLED_PARTS_IN_FLIGHT)),
            }),
        }
    }

    /// Where the objects live, for logs (never holds credentials).
    pub fn location(&self) -> &str {
        &self.inner.location
    }

    fn store(&self) -> &dyn ObjectStore {
        self.inner.store.as_ref()
    }

    /// Stores a stream under `key`, atomically, hashing and counting as it
    /// goes. Up to [`PART_SIZE`] bytes are written with one request; larger
    /// objects with a multipart upload of at most [`MAX_PARTS_IN_FLIGHT`]
    /// concurrent parts, so memory stays bounded.
    ///
    /// When the stream fails ([`StorageError::Io`]) or goes past `max_size`
    /// ([`StorageError::TooLarge`]) the upload is aborted: nothing is stored
    /// and an object already under `key` is untouched. If the future is
    /// dropped midway, a local upload removes its temporary file; an S3
    /// multipart upload stays incomplete (invisible, and removed by the
    /// bucket's lifecycle rule for incomplete uploads).
    pub async fn put_stream<S>(
        &self,
        key: &str,
        mut stream: S,
        max_size: Option<u64>,
    ) -> Result<PutInfo, StorageError>
    where
        S: Stream<Item = Result<Bytes, io::Error>> + Send + Unpin,
    {
        let path = key_path(key)?;
        let mut tally = Tally::new(max_size);
        let mut first = PutPayloadMut::new();
        while first.content_length() < PART_SIZE {
            let Some(chunk) = stream.next().await else {
                if let Err(err) = self.store().put(&path, first.freeze()).await {
                    self.remove_empty_dirs(key).await;
                    return Err(upload_error(key, err));
                }
                return Ok(tally.finish(key));
            };
            let chunk = tally.accept(chunk)?;
            if chunk.len() < COPY_BELOW {
                first.extend_from_slice(&chunk);
            } else {
                first.push(chunk);
            }
        }

        let upload = self
            .store()
            .put_multipart(&path)
            .await
            .map_err(|e| upload_error(key, e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        for chunk in first.freeze() {
            writer.put(chunk);
        }
        let fed = match feed(&mut writer, &mut stream, &mut tally, key).await {
            Ok(()) => writer.finish().await.map_err(|e| upload_error(key, e)),
            Err(err) => {
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(key, error = %abort, "aborting a failed upload failed");
                }
                Err(err)
            }
        };
        match fed {
            Ok(_) => Ok(tally.finish(key)),
            Err(err) => {
                self.remove_empty_dirs(key).await;
                Err(err)
            }
        }
    }

    /// [`Storage::put_stream`] for slow or untrusted sources (uploads from
    /// the network): the bytes wait in an unnamed temporary file in
    /// `spool_dir` until a whole [`PART_SIZE`] part has arrived, so a source
    /// that stalls holds at most [`SPOOL_BUFFER`] bytes of memory, not a
    /// part. A part is read back into memory only while it is being written
    /// to the backend, and at most [`SPOOLED_PARTS_IN_FLIGHT`] parts of all
    /// the spooled uploads of this storage are (the others wait). The same atomicity as [`Storage::put_stream`]: a failing or
    /// oversized stream aborts the upload (a multipart upload included) and
    /// stores nothing; the spool file disappears with the call.
    pub async fn put_stream_spooled<S>(
        &self,
        key: &str,
        mut stream: S,
        max_size: Option<u64>,
        spool_dir: &std::path::Path,
    ) -> Result<PutInfo, StorageError>
    where
        S: Stream<Item = Result<Bytes, io::Error>> + Send + Unpin,
    {
        let path = key_path(key)?;
        let mut tally = Tally::new(max_size);
        let mut spool = Spool::new(spool_dir).await?;
        let mut parts: Option<Parts> = None;
        let fed = async {
            while let Some(chunk) = stream.next().await {
                let mut chunk = tally.accept(chunk)?;
                while !chunk.is_empty() {
                    let room = PART_SIZE.saturating_sub(spool.len);
                    let piece = chunk.split_to(room.min(chunk.len()));
                    spool.write(&piece).await?;
                    if spool.len < PART_SIZE {
                        continue;
                    }
                    let permit = self.part_permit().await?;
                    let sending = match parts.as_mut() {
                        Some(sending) => sending,
                        None => {
                            let upload = self
                                .store()
                                .put_multipart(&path)
                                .await
                                .map_err(|e| upload_error(key, e))?;
                            parts.insert(Parts::new(upload))
                        }
                    };
                    sending.wait_for_room(key).await?;
                    let part = spool.take().await?;
                    sending.send(part, permit);
                }
            }
            Ok::<_, StorageError>(())
        }
        .await;
        let stored = match (fed, parts) {
            (Ok(()), None) => match self.part_permit().await {
                Ok(_permit) => match spool.take().await {
                    Ok(rest) => self
                        .store()
                        .put(&path, PutPayload::from(rest))
                        .await
                        .map(|_| ())
                        .map_err(|e| upload_error(key, e)),
                    Err(err) => Err(err),
                },
                Err(err) => Err(err),
            },
            (Ok(()), Some(mut sending)) => {
                let last = match self.part_permit().await {
                    Ok(permit) => match spool.take().await {
                        Ok(rest) if rest.is_empty() => Ok(()),
                        Ok(rest) => sending
                            .wait_for_room(key)
                            .await
                            .map(|()| sending.send(rest, permit)),
                        Err(err) => Err(err),
                    },
                    Err(err) => Err(err),
                };
                match last {
                    Ok(()) => sending.finish(key).await,
                    Err(err) => {
                        sending.abort(key).await;
                        Err(err)
                    }
                }
            }
            (Err(err), Some(sending)) => {
                sending.abort(key).await;
                Err(err)
            }
            (Err(err), None) => Err(err),
        };
        match stored {
            Ok(()) => Ok(tally.finish(key)),
            Err(err) => {
                self.remove_empty_dirs(key).await;
                Err(err)
            }
        }
    }

    /// A place among the [`SPOOLED_PARTS_IN_FLIGHT`] parts of spooled
    /// uploads that may be in memory at once.
    async fn part_permit(&self) -> Result<tokio::sync::OwnedSemaphorePermit, StorageError> {
        self.inner
            .spooled_parts
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| StorageError::Io(io::Error::other(e)))
    }

    /// In a local store, removes the directories of `key` that an aborted
    /// upload left empty (as a delete does), up to the root.
    async fn remove_empty_dirs(&self, key: &str) {
        let Some(root) = self.inner.local_root.clone() else {
            return;
        };
        let file = root.join(key);
        let tidy = tokio::task::spawn_blocking(move || {
            let mut dir = file.parent();
            while let Some(d) = dir {
                if d == root || !d.starts_with(&root) || std::fs::remove_dir(d).is_err() {
                    break;
                }
                dir = d.parent();
            }
        });
        if let Err(err) = tidy.await {
            tracing::debug!(key, error = %err, "removing empty directories failed");
        }
    }

    /// Stores a small object (a manifest) with one request, atomically.
    pub async fn put_bytes(&self, key: &str, bytes: Bytes) -> Result<PutInfo, StorageError> {
        let path = key_path(key)?;
        let info = PutInfo {
            size: bytes.len() as u64,
            blake2b: *blake2b_simd::blake2b(&bytes).as_array(),
        };
        self.store()
            .put(&path, PutPayload::from(bytes))
            .await
            .map_err(|e| upload_error(key, e))?;
        Ok(info)
    }

    /// Streams an object; [`StorageError::NotFound`] when it is missing.
    pub async fn get_stream(
        &self,
        key: &str,
    ) -> Result<BoxStream<'static, Result<Bytes, StorageError>>, StorageError> {
        let path = key_path(key)?;
        let result = self
            .store()
            .get(&path)
            .await
            .map_err(|e| backend("get", key, e))?;
        let range = result.range.clone();
        let owned_key = key.to_owned();
        Ok(match result.payload {
            GetResultPayload::File(file, _) => file_stream(file, range, owned_key),
            GetResultPayload::Stream(s) => {
                s.map_err(move |e| backend("read", &owned_key, e)).boxed()
            }
        })
    }

    /// Reads the bytes of `range` of an object. The end is clamped to the
    /// object's size, so the answer may be shorter than asked (or empty when
    /// `range.start` equals the size); a start past the end is
    /// [`StorageError::InvalidRange`].
    pub async fn get_range(&self, key: &str, range: Range<u64>) -> Result<Bytes, StorageError> {
        let path = key_path(key)?;
        let checked = |size: u64| {
            if range.start > size || range.start > range.end {
                Err(StorageError::InvalidRange {
                    start: range.start,
                    end: range.end,
                    size,
                })
            } else {
                Ok(Bytes::new())
            }
        };
        if range.start >= range.end {
            let info = self.head(key).await?;
            let info = info.ok_or_else(|| StorageError::NotFound(key.to_owned()))?;
            return checked(info.size);
        }
        let usize_range = usize::try_from(range.start)
            .and_then(|start| usize::try_from(range.end).map(|end| start..end))
            .map_err(|_| StorageError::Backend(format!("get range of {key}: offsets too large")))?;
        let options = GetOptions {
            range: Some(GetRange::Bounded(usize_range)),
            ..GetOptions::default()
        };
        let read = async { self.store().get_opts(&path, options).await?.bytes().await };
        match read.await {
            Ok(bytes) => Ok(bytes),
            Err(object_store::Error::NotFound { .. }) => {
                Err(StorageError::NotFound(key.to_owned()))
            }
            Err(err) => match self.head(key).await {
                // The backends disagree on how to report a start at or past
                // the end; decide from the size instead.
                Ok(Some(info)) if range.start >= info.size => checked(info.size),
                Ok(None) => Err(StorageError::NotFound(key.to_owned())),
                _ => Err(backend("get range of", key, err)),
            },
        }
    }

    /// Reads a whole (small) object into memory.
    pub async fn get_bytes(&self, key: &str) -> Result<Bytes, StorageError> {
        let path = key_path(key)?;
        let result = self
            .store()
            .get(&path)
            .await
            .map_err(|e| backend("get", key, e))?;
        result.bytes().await.map_err(|e| backend("read", key, e))
    }

    /// An [`AsyncRead`] over an object, for readers that want `tokio::io`.
    pub async fn reader(&self, key: &str) -> Result<ObjectReader, StorageError> {
        Ok(ObjectReader {
            stream: self.get_stream(key).await?,
            chunk: Bytes::new(),
            done: false,
        })
    }

    /// Metadata of an object, `None` when it is missing.
    pub async fn head(&self, key: &str) -> Result<Option<ObjectInfo>, StorageError> {
        let path = key_path(key)?;
        match self.store().head(&path).await {
            Ok(meta) => Ok(Some(meta.into())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(backend("head", key, err)),
        }
    }

    /// Every object under `prefix` (whole segments: `a/b` holds `a/b/c` but
    /// not `a/bc`), recursively, sorted by key. An empty prefix lists
    /// everything; one trailing `/` is tolerated.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        let path = prefix_path(prefix)?;
        let mut objects: Vec<ObjectInfo> = self
            .store()
            .list(path.as_ref())
            .map_ok(ObjectInfo::from)
            .try_collect()
            .await
            .map_err(|e| match e {
                object_store::Error::NotFound { .. } => StorageError::Backend(format!(
                    "list {prefix}: a directory vanished during the listing"
                )),
                other => backend("list", prefix, other),
            })?;
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }

    /// Deletes an object; a missing object is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = key_path(key)?;
        match self.store().delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(backend("delete", key, err)),
        }
    }

    /// Deletes every object under `prefix` (as [`Storage::list`] sees them)
    /// and returns how many there were. An empty prefix is refused.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<usize, StorageError> {
        if prefix.is_empty() || prefix == "/" {
            return Err(invalid_key(
                prefix,
                "empty prefix (would delete everything)",
            ));
        }
        let objects = self.list(prefix).await?;
        let count = objects.len();
        let locations = stream::iter(objects)
            .map(|o| Path::parse(&o.key).map_err(object_store::Error::from))
            .boxed();
        let mut deleted = self.store().delete_stream(locations);
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(err) => return Err(backend("delete under", prefix, err)),
            }
        }
        Ok(count)
    }
}

fn is_bucket_name(bucket: &str) -> bool {
    (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-'))
}

/// Size, limit and hash of the bytes seen so far by a write.
struct Tally {
    size: u64,
    limit: Option<u64>,
    hasher: blake2b_simd::State,
}

impl Tally {
    fn new(limit: Option<u64>) -> Self {
        Tally {
            size: 0,
            limit,
            hasher: blake2b_simd::State::new(),
        }
    }

    /// Counts and hashes one chunk of the input, or says why to stop.
    fn accept(&mut self, chunk: Result<Bytes, io::Error>) -> Result<Bytes, StorageError> {
        let chunk = chunk?;
        self.size = self.size.saturating_add(chunk.len() as u64);
        if let Some(limit) = self.limit {
            if self.size > limit {
                return Err(StorageError::TooLarge { limit });
            }
        }
        self.hasher.update(&chunk);
        Ok(chunk)
    }

    fn finish(&self, key: &str) -> PutInfo {
        let info = PutInfo {
            size: self.size,
            blake2b: *self.hasher.finalize().as_array(),
        };
        tracing::debug!(key, size = info.size, "stored object");
        info
    }
}

/// Memory a spooled upload keeps for bytes on their way to its spool file
/// (see [`Storage::put_stream_spooled`]).
pub const SPOOL_BUFFER: usize = 64 << 10;

/// How many parts of spooled uploads one [`Storage`] (and its clones) holds
/// in memory at once, all uploads together: with [`PART_SIZE`], 32 MiB.
pub const SPOOLED_PARTS_IN_FLIGHT: usize = 4;

/// The parts of one spooled multipart upload on their way to the backend:
/// at most [`MAX_PARTS_IN_FLIGHT`] of them, each holding its place among
/// [`SPOOLED_PARTS_IN_FLIGHT`] until written.
struct Parts {
    upload: Box<dyn object_store::MultipartUpload>,
    sending: tokio::task::JoinSet<Result<(), object_store::Error>>,
}

impl Parts {
    fn new(upload: Box<dyn object_store::MultipartUpload>) -> Parts {
        Parts {
            upload,
            sending: tokio::task::JoinSet::new(),
        }
    }

    /// Waits until fewer than [`MAX_PARTS_IN_FLIGHT`] parts are on their
    /// way; a part that failed fails the upload.
    async fn wait_for_room(&mut self, key: &str) -> Result<(), StorageError> {
        while self.sending.len() >= MAX_PARTS_IN_FLIGHT {
            self.join_one(key).await?;
        }
        Ok(())
    }

    async fn join_one(&mut self, key: &str) -> Result<(), StorageError> {
        match self.sending.join_next().await {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(e))) => Err(upload_error(key, e)),
            Some(Err(e)) => Err(StorageError::Upload(format!("{key}: {e}"))),
        }
    }

    fn send(&mut self, part: Bytes, permit: tokio::sync::OwnedSemaphorePermit) {
        let put = self.upload.put_part(PutPayload::from(part));
        self.sending.spawn(async move {
            let sent = put.await;
            drop(permit);
            sent
        });
    }

    /// Waits for every part, then completes the upload.
    async fn finish(mut self, key: &str) -> Result<(), StorageError> {
        while !self.sending.is_empty() {
            if let Err(err) = self.join_one(key).await {
                self.abort(key).await;
                return Err(err);
            }
        }
        self.upload
            .complete()
            .await
            .map(|_| ())
            .map_err(|e| upload_error(key, e))
    }

    /// Stops the parts on their way and aborts the upload.
    async fn abort(mut self, key: &str) {
        self.sending.abort_all();
        while self.sending.join_next().await.is_some() {}
        if let Err(abort) = self.upload.abort().await {
            tracing::warn!(key, error = %abort, "aborting a failed upload failed");
        }
    }
}

/// The bytes of a spooled upload that do not yet make a whole part: an
/// unnamed temporary file (removed by the system when closed) behind a
/// [`SPOOL_BUFFER`]-byte write buffer. The file is used from blocking
/// threads with buffers of our own (`tokio::fs::File` would keep a read
/// buffer of up to 2 MiB per spool).
struct Spool {
    file: Option<std::fs::File>,
    buffer: Vec<u8>,
    len: usize,
}

impl Spool {
    async fn new(dir: &std::path::Path) -> Result<Spool, StorageError> {
        let dir = dir.to_owned();
        let file = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)?;
            tempfile::tempfile_in(&dir)
        })
        .await
        .map_err(|e| StorageError::Io(io::Error::other(e)))??;
        Ok(Spool {
            file: Some(file),
            buffer: Vec::new(),
            len: 0,
        })
    }

    /// Runs `op` on the file in a blocking thread, with the buffered bytes
    /// written first.
    async fn with_file<T: Send + 'static>(
        &mut self,
        op: impl FnOnce(&mut std::fs::File) -> io::Result<T> + Send + 'static,
    ) -> Result<T, StorageError> {
        use std::io::Write;
        let mut file = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("spool file lost after a failure"))?;
        let pending = std::mem::take(&mut self.buffer);
        let (file, result) = tokio::task::spawn_blocking(move || {
            let result = file.write_all(&pending).and_then(|()| op(&mut file));
            (file, result)
        })
        .await
        .map_err(|e| StorageError::Io(io::Error::other(e)))?;
        self.file = Some(file);
        Ok(result?)
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.buffer.extend_from_slice(bytes);
        self.len += bytes.len();
        if self.buffer.len() >= SPOOL_BUFFER {
            self.with_file(|_| Ok(())).await?;
        }
        Ok(())
    }

    /// Everything spooled so far, read back into memory; the spool is
    /// emptied.
    async fn take(&mut self) -> Result<Bytes, StorageError> {
        use std::io::{Read, Seek};
        // Allocated here rather than in the blocking thread: glibc gives
        // every thread its own arena, and freed parts would stay cached in
        // the arenas of dozens of blocking threads.
        let mut bytes = vec![0u8; self.len];
        let bytes = self
            .with_file(move |file| {
                file.rewind()?;
                file.read_exact(&mut bytes)?;
                file.rewind()?;
                file.set_len(0)?;
                Ok(bytes)
            })
            .await?;
        self.len = 0;
        Ok(Bytes::from(bytes))
    }
}

/// Feeds the rest of the input to a multipart upload, waiting for room
/// before each chunk.
async fn feed<S>(
    writer: &mut WriteMultipart,
    stream: &mut S,
    tally: &mut Tally,
    key: &str,
) -> Result<(), StorageError>
where
    S: Stream<Item = Result<Bytes, io::Error>> + Send + Unpin,
{
    while let Some(chunk) = stream.next().await {
        let chunk = tally.accept(chunk)?;
        writer
            .wait_for_capacity(MAX_PARTS_IN_FLIGHT)
            .await
            .map_err(|e| upload_error(key, e))?;
        if chunk.len() < COPY_BELOW {
            writer.write(&chunk);
        } else {
            writer.put(chunk);
        }
    }
    Ok(())
}

/// Streams `range` of a local file in [`FILE_READ_CHUNK`] pieces (the
/// object store's own file stream reads 8 KiB at a time).
fn file_stream(
    file: std::fs::File,
    range: Range<usize>,
    key: String,
) -> BoxStream<'static, Result<Bytes, StorageError>> {
    let state = (file, range.start as u64, range.end as u64);
    stream::try_unfold(state, move |(mut file, pos, end)| {
        let key = key.clone();
        async move {
            if pos >= end {
                return Ok(None);
            }
            let want =
                usize::try_from(end - pos).map_or(FILE_READ_CHUNK, |n| n.min(FILE_READ_CHUNK));
            let read = tokio::task::spawn_blocking(move || {
                use std::io::{Read, Seek, SeekFrom};
                file.seek(SeekFrom::Start(pos))?;
                let mut buf = Vec::with_capacity(want);
                (&mut file).take(want as u64).read_to_end(&mut buf)?;
                Ok::<_, io::Error>((file, buf))
            })
            .await
            .map_err(|e| StorageError::Backend(format!("read {key}: {e}")))?;
            let (file, buf) = read?;
            if buf.is_empty() {
                return Err(StorageError::Backend(format!(
                    "read {key}: the file ended early (changed while read)"
                )));
            }
            let next = pos + buf.len() as u64;
            Ok(Some((Bytes::from(buf), (file, next, end))))
        }
    })
    .boxed()
}

/// An [`AsyncRead`] over a stored object (see [`Storage::reader`]).
pub struct ObjectReader {
    stream: BoxStream<'static, Result<Bytes, StorageError>>,
    chunk: Bytes,
    done: bool,
}

impl fmt::Debug for ObjectReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectReader")
            .field("buffered", &self.chunk.len())
            .field("done", &self.done)
            .finish()
    }
}

impl AsyncRead for ObjectReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            if !self.chunk.is_empty() {
                let n = self.chunk.len().min(buf.remaining());
                let piece = self.chunk.split_to(n);
                buf.put_slice(&piece);
                return Poll::Ready(Ok(()));
            }
            if self.done || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            match self.stream.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => self.chunk = chunk,
                Poll::Ready(Some(Err(err))) => {
                    self.done = true;
                    return Poll::Ready(Err(err.into()));
                }
                Poll::Ready(None) => self.done = true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_keys() {
        for key in [
            "dumps/AbC-_9/google/takeout-2024.zip",
            "transfers/x/1/scope.tar.gz",
            "a",
            "...",
            "a/.hidden/b",
            "a-b_c.d",
        ] {
            assert!(validate_key(key).is_ok(), "{key}");
        }
        assert!(validate_key(&"x".repeat(255)).is_ok());
    }

    #[test]
    fn rejects_hostile_keys() {
        let long_segment = format!("a/{}", "x".repeat(256));
        let long_key = vec!["abcdefghi"; 103].join("/");
        assert!(long_key.len() > MAX_KEY_LEN);
        for key in [
            "",
            "/",
            "/abs",
            "a/",
            "a//b",
            "../x",
            "a/../b",
            "a/./b",
            ".",
            "..",
            "a\\b",
            "a b",
            "ä",
            "a/b\u{0}",
            "a/b#1",
            "a/b%2F",
            "a/b?c",
            "C:x",
            "a\nb",
            long_segment.as_str(),
            long_key.as_str(),
        ] {
            assert!(
                matches!(validate_key(key), Err(StorageError::InvalidKey { .. })),
                "{key:?} accepted"
            );
        }
    }

    #[test]
    fn safe_segments() {
        assert!(is_safe_segment("Takeout-001.zip"));
        assert!(is_safe_segment(&"a".repeat(255)));
        assert!(!is_safe_segment(&"a".repeat(256)));
        assert!(!is_safe_segment(""));
        assert!(!is_safe_segment("."));
        assert!(!is_safe_segment(".."));
        assert!(!is_safe_segment("a/b"));
        assert!(!is_safe_segment("é"));
    }

    #[test]
    fn error_repeats_a_short_key() {
        let err = validate_key(&"é".repeat(10_000))
            .err()
            .map(|e| e.to_string());
        let text = err.unwrap_or_default();
        assert!(text.len() < 400, "{text}");
    }

    #[test]
    fn prefixes() {
        assert!(matches!(prefix_path(""), Ok(None)));
        assert!(matches!(prefix_path("a/b/"), Ok(Some(p)) if p.as_ref() == "a/b"));
        assert!(prefix_path("a//").is_err());
        assert!(prefix_path("/").is_err());
    }

    #[test]
    fn urls() {
        let s3 = S3Settings::default();
        for bad in [
            "ftp://x/y",
            "file://relative",
            "s3://",
            "s3://UPPER",
            "s3://bucket/../x",
            "s3://bucket/a//b",
            "memory://host",
            "memory:///x",
            "file:///tmp/x?y=1",
            "/tmp/x",
        ] {
            assert!(
                matches!(
                    Storage::from_url(bad, &s3),
                    Err(StorageError::UnsupportedUrl { .. })
                ),
                "{bad} accepted"
            );
        }
        assert!(Storage::from_url("memory://", &s3).is_ok());
        let s = Storage::from_url("s3://bucket/pre/fix/", &s3);
        assert_eq!(
            s.map(|s| s.location().to_owned()).ok().as_deref(),
            Some("s3://bucket/pre/fix")
        );
    }

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
