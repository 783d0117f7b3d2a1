//! The operations on objects: writes, reads, listings and deletes.

use std::io;
use std::ops::Range;

use bytes::Bytes;
use futures_util::stream::{self, BoxStream};
use futures_util::{Stream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::WriteMultipart;
use object_store::{GetOptions, GetRange, GetResultPayload, PutPayload, PutPayloadMut};

use super::{ObjectInfo, ObjectReader, PutInfo, Storage, StorageError, COPY_BELOW, PART_SIZE};

use super::keys::{invalid_key, key_path, prefix_path};
use super::read::file_stream;
use super::upload::{feed, Parts, Spool, Tally};

/// Maps a backend error, turning `NotFound` into [`StorageError::NotFound`].
pub(super) fn backend(op: &str, key: &str, err: object_store::Error) -> StorageError {
    match err {
        object_store::Error::NotFound { .. } => StorageError::NotFound(key.to_owned()),
        other => StorageError::Backend(format!("{op} {key}: {other}")),
    }
}

pub(super) fn upload_error(key: &str, err: object_store::Error) -> StorageError {
    StorageError::Upload(format!("{key}: {err}"))
}

impl Storage {
    /// Stores a stream under `key`, atomically, hashing and counting as it
    /// goes. Up to [`PART_SIZE`] bytes are written with one request; larger
    /// objects with a multipart upload of at most [`MAX_PARTS_IN_FLIGHT`](super::MAX_PARTS_IN_FLIGHT)
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
    /// that stalls holds at most [`SPOOL_BUFFER`](super::SPOOL_BUFFER) bytes of memory, not a
    /// part. A part is read back into memory only while it is being written
    /// to the backend, and at most [`SPOOLED_PARTS_IN_FLIGHT`](super::SPOOLED_PARTS_IN_FLIGHT) parts of all
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

    /// A place among the [`SPOOLED_PARTS_IN_FLIGHT`](super::SPOOLED_PARTS_IN_FLIGHT) parts of spooled
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
    pub(super) async fn remove_empty_dirs(&self, key: &str) {
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

    /// An [`tokio::io::AsyncRead`] over an object, for readers that want `tokio::io`.
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
