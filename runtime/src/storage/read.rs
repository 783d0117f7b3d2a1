//! Reads: local files in large chunks; an `AsyncRead` over an object.

use std::fmt;
use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::stream::{self, BoxStream};
use futures_util::StreamExt;
use tokio::io::{AsyncRead, ReadBuf};

use super::{StorageError, FILE_READ_CHUNK};

/// Streams `range` of a local file in [`FILE_READ_CHUNK`] pieces (the
/// object store's own file stream reads 8 KiB at a time).
pub(super) fn file_stream(
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

/// An [`AsyncRead`] over a stored object (see [`Storage::reader`](super::Storage::reader)).
pub struct ObjectReader {
    pub(super) stream: BoxStream<'static, Result<Bytes, StorageError>>,
    pub(super) chunk: Bytes,
    pub(super) done: bool,
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
