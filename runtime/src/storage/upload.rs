//! Writes: counting, limiting and hashing the input; spooling the parts of
//! slow uploads; feeding multipart uploads.

use std::io;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use object_store::PutPayload;
use object_store::WriteMultipart;

use super::{PutInfo, StorageError, COPY_BELOW, MAX_PARTS_IN_FLIGHT};

use super::objects::upload_error;

/// Size, limit and hash of the bytes seen so far by a write.
pub(super) struct Tally {
    size: u64,
    limit: Option<u64>,
    hasher: blake2b_simd::State,
}

impl Tally {
    pub(super) fn new(limit: Option<u64>) -> Self {
        Tally {
            size: 0,
            limit,
            hasher: blake2b_simd::State::new(),
        }
    }

    /// Counts and hashes one chunk of the input, or says why to stop.
    pub(super) fn accept(
        &mut self,
        chunk: Result<Bytes, io::Error>,
    ) -> Result<Bytes, StorageError> {
        let chunk = chunk?;
        self.accept_slice(&chunk)?;
        Ok(chunk)
    }

    /// Counts and hashes bytes of the input, or says why to stop.
    pub(super) fn accept_slice(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.size = self.size.saturating_add(bytes.len() as u64);
        if let Some(limit) = self.limit {
            if self.size > limit {
                return Err(StorageError::TooLarge { limit });
            }
        }
        self.hasher.update(bytes);
        Ok(())
    }

    pub(super) fn finish(&self, key: &str) -> PutInfo {
        let info = PutInfo {
            size: self.size,
            blake2b: *self.hasher.finalize().as_array(),
        };
        tracing::debug!(key, size = info.size, "stored object");
        info
    }
}

/// Memory a spooled upload keeps for bytes on their way to its spool file
/// (see [`Storage::put_stream_spooled`](super::Storage::put_stream_spooled)).
pub const SPOOL_BUFFER: usize = 64 << 10;

/// How many parts of spooled uploads one [`Storage`](super::Storage) (and its clones) holds
/// in memory at once, all uploads together: with [`PART_SIZE`](super::PART_SIZE), 32 MiB.
pub const SPOOLED_PARTS_IN_FLIGHT: usize = 4;

/// The parts of one spooled multipart upload on their way to the backend:
/// at most [`MAX_PARTS_IN_FLIGHT`] of them, each holding its place among
/// [`SPOOLED_PARTS_IN_FLIGHT`] until written.
pub(super) struct Parts {
    upload: Box<dyn object_store::MultipartUpload>,
    sending: tokio::task::JoinSet<Result<(), object_store::Error>>,
}

impl Parts {
    pub(super) fn new(upload: Box<dyn object_store::MultipartUpload>) -> Parts {
        Parts {
            upload,
            sending: tokio::task::JoinSet::new(),
        }
    }

    /// Waits until fewer than [`MAX_PARTS_IN_FLIGHT`] parts are on their
    /// way; a part that failed fails the upload.
    pub(super) async fn wait_for_room(&mut self, key: &str) -> Result<(), StorageError> {
        while self.sending.len() >= MAX_PARTS_IN_FLIGHT {
            self.join_one(key).await?;
        }
        Ok(())
    }

    pub(super) async fn join_one(&mut self, key: &str) -> Result<(), StorageError> {
        match self.sending.join_next().await {
            None | Some(Ok(Ok(()))) => Ok(()),
            Some(Ok(Err(e))) => Err(upload_error(key, e)),
            Some(Err(e)) => Err(StorageError::Upload(format!("{key}: {e}"))),
        }
    }

    pub(super) fn send(&mut self, part: Bytes, permit: tokio::sync::OwnedSemaphorePermit) {
        let put = self.upload.put_part(PutPayload::from(part));
        self.sending.spawn(async move {
            let sent = put.await;
            drop(permit);
            sent
        });
    }

    /// Waits for every part, then completes the upload.
    pub(super) async fn finish(mut self, key: &str) -> Result<(), StorageError> {
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
    pub(super) async fn abort(mut self, key: &str) {
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
pub(super) struct Spool {
    file: Option<std::fs::File>,
    buffer: Vec<u8>,
    /// Bytes of the next part in the spool so far.
    pub(super) len: usize,
}

impl Spool {
    pub(super) async fn new(dir: &std::path::Path) -> Result<Spool, StorageError> {
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
    pub(super) async fn with_file<T: Send + 'static>(
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

    pub(super) async fn write(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        self.buffer.extend_from_slice(bytes);
        self.len += bytes.len();
        if self.buffer.len() >= SPOOL_BUFFER {
            self.with_file(|_| Ok(())).await?;
        }
        Ok(())
    }

    /// Everything spooled so far, read back into memory; the spool is
    /// emptied.
    pub(super) async fn take(&mut self) -> Result<Bytes, StorageError> {
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
pub(super) async fn feed<S>(
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
