//! Request bodies with deadlines, and spooled so that no lock is held and
//! little memory is used while they arrive.
//!
//! Every body is read through a [`BodyReader`]: the next piece must come
//! within [`SinkLimits::body_idle`], and once [`SinkLimits::body_grace`] has
//! passed the body must average at least [`SinkLimits::body_min_rate`] bytes
//! per second (the wait for a piece ends when the rate would drop below).
//! Chunk bodies go to a [`Spool`]: up to [`SinkLimits::spool_memory`] bytes
//! in memory, the rest in a file under `{dir}/spool~/`, removed when the
//! spool is dropped.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes, BytesMut};
use futures_util::StreamExt;

use crate::http::Reject;
use crate::store::Shared;
use crate::SinkLimits;

/// Why a body could not be read to its end.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// No byte for [`SinkLimits::body_idle`].
    Idle,
    /// Slower than [`SinkLimits::body_min_rate`] after the grace period.
    Slow,
    /// The connection failed or the body was malformed.
    Cut(String),
}

impl BodyError {
    /// The refusal sent for it.
    pub(crate) fn reject(&self) -> Reject {
        match self {
            BodyError::Idle => Reject::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                "the request body stalled",
            ),
            BodyError::Slow => Reject::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_too_slow",
                "the request body is slower than the minimum rate",
            ),
            BodyError::Cut(e) => Reject::bad("bad_body", format!("body: {e}")),
        }
    }
}

/// Reads a request body piece by piece under the body deadlines.
pub(crate) struct BodyReader {
    payload: web::Payload,
    limits: SinkLimits,
    started: Instant,
    /// Body bytes received so far.
    pub(crate) received: u64,
    /// The body ended or failed: nothing more to read.
    over: bool,
}

impl BodyReader {
    pub(crate) fn new(payload: web::Payload, limits: &SinkLimits) -> Self {
        Self {
            payload,
            limits: limits.clone(),
            started: Instant::now(),
            received: 0,
            over: false,
        }
    }

    /// How long the next piece may take: the idle timeout, or less when the
    /// average rate would fall below the minimum before it.
    fn wait(&self) -> (Duration, bool) {
        let idle = self.limits.body_idle;
        if self.limits.body_min_rate == 0 {
            return (idle, false);
        }
        // The bytes received so far carry the rate until this instant.
        let covered =
            Duration::from_secs_f64(self.received as f64 / self.limits.body_min_rate as f64);
        let until = self.started + covered.max(self.limits.body_grace);
        let left = until.saturating_duration_since(Instant::now());
        if left < idle {
            (left, true)
        } else {
            (idle, false)
        }
    }

    /// The next piece; `None` at the end of the body.
    pub(crate) async fn next(&mut self) -> Result<Option<Bytes>, BodyError> {
        if self.over {
            return Ok(None);
        }
        let (wait, by_rate) = self.wait();
        let piece = match actix_web::rt::time::timeout(wait, self.payload.next()).await {
            Err(_) => {
                self.over = true;
                return Err(if by_rate {
                    BodyError::Slow
                } else {
                    BodyError::Idle
                });
            }
            Ok(None) => {
                self.over = true;
                return Ok(None);
            }
            Ok(Some(Err(e))) => {
                self.over = true;
                return Err(BodyError::Cut(e.to_string()));
            }
            Ok(Some(Ok(piece))) => piece,
        };
        self.received = self.received.saturating_add(piece.len() as u64);
        Ok(Some(piece))
    }

    /// Reads and discards the rest of the body (at most `limit` bytes in
    /// all), so the sender gets to read the answer; stops at any deadline.
    pub(crate) async fn drain(&mut self, limit: u64) {
        while self.received <= limit {
            match self.next().await {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return,
            }
        }
        self.over = true;
    }

    /// The whole body in memory, at most `limit` bytes (`413` above).
    pub(crate) async fn read_all(&mut self, limit: usize) -> Result<Bytes, Reject> {
        let mut body = BytesMut::new();
        while let Some(piece) = self.next().await.map_err(|e| e.reject())? {
            if body.len().saturating_add(piece.len()) > limit {
                self.over = true;
                return Err(Reject::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    format!("the body carries at most {limit} bytes"),
                ));
            }
            body.extend_from_slice(&piece);
        }
        Ok(body.freeze())
    }
}

/// A spool file, removed when dropped.
#[derive(Debug)]
pub(crate) struct SpoolFile {
    path: PathBuf,
    file: File,
}

impl SpoolFile {
    /// The file, to read it from its start.
    pub(crate) fn reader(&self) -> io::Result<File> {
        File::open(&self.path)
    }
}

impl Drop for SpoolFile {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove a spool file");
        }
    }
}

/// A body being received: memory first, then a file.
#[derive(Debug, Default)]
pub(crate) struct Spool {
    file: Option<SpoolFile>,
    /// Bytes not yet in the file (all of them while there is no file).
    tail: BytesMut,
}

/// A spooled body: the file's bytes (if any), then `tail`.
#[derive(Debug)]
pub(crate) struct Spooled {
    pub(crate) file: Option<SpoolFile>,
    pub(crate) tail: Bytes,
}

impl Spool {
    /// Adds a piece; spills to a file past `memory` bytes.
    pub(crate) async fn push(
        &mut self,
        shared: &Shared,
        memory: usize,
        piece: Bytes,
    ) -> io::Result<()> {
        self.tail.extend_from_slice(&piece);
        if self.tail.len() <= memory {
            return Ok(());
        }
        let batch = self.tail.split().freeze();
        let file = self.file.take();
        let path = shared.spool_path();
        let file = web::block(move || -> io::Result<SpoolFile> {
            let mut file = match file {
                Some(f) => f,
                None => SpoolFile {
                    file: File::options().create_new(true).write(true).open(&path)?,
                    path,
                },
            };
            file.file.write_all(&batch)?;
            Ok(file)
        })
        .await
        .map_err(io::Error::other)??;
        self.file = Some(file);
        Ok(())
    }

    /// The body received.
    pub(crate) fn finish(self) -> Spooled {
        Spooled {
            file: self.file,
            tail: self.tail.freeze(),
        }
    }
}
