//! `PUT {base}{id}/{file}`: one chunk, written at its offset (or appended,
//! in reference mode); `HEAD {base}{id}/{file}`: the bytes held; and the
//! drop fault, which closes a connection without an answer.

use std::any::Any;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use actix_web::dev::Extensions;
use actix_web::http::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes, BytesMut};
use actix_web::{HttpRequest, HttpResponse};
use futures_util::StreamExt;

use super::{begin, blocking, check_names, end, header, Reject, UPLOAD_OFFSET};
use crate::faults::Faults;
use crate::range::{parse_content_range, parse_range, parse_range_loose};
use crate::store::{bump, Shared, Slot};

/// Bytes gathered before one write to disk.
const WRITE_BATCH: usize = 1 << 20;

/// The only chunk content type the protocol accepts.
const OCTET_STREAM: &str = "application/octet-stream";

/// `PUT {base}{id}/{file}`: write one chunk at its offset.
pub(crate) async fn chunk(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    mut payload: web::Payload,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let (id, file) = path.into_inner();
    let (call, fault) = begin(&shared, &req);
    bump(&shared.counters.chunk_requests);
    let max = shared.settings.max_chunk;
    let mut received = 0u64;
    let (response, dropped) = match fault {
        Some(r) => {
            received = drain(&mut payload, max).await;
            (r, false)
        }
        None => {
            let outcome = receive_chunk(
                &req,
                &id,
                &file,
                &mut payload,
                &shared,
                &call.faults,
                &mut received,
            )
            .await;
            match outcome {
                Ok(held) => {
                    bump(&shared.counters.chunks);
                    shared
                        .counters
                        .chunk_bytes
                        .fetch_add(received, std::sync::atomic::Ordering::Relaxed);
                    let dropped =
                        shared.next_drops(call.faults.drop_every) && drop_connection(&req);
                    if dropped {
                        bump(&shared.counters.dropped);
                        tracing::info!(id, file, "dropping the connection (fault injection)");
                    }
                    let response = HttpResponse::Ok()
                        .insert_header((UPLOAD_OFFSET, held.to_string()))
                        .finish();
                    (response, dropped)
                }
                Err(reject) => {
                    received += drain(&mut payload, max).await;
                    (reject.response(), false)
                }
            }
        }
    };
    end(&shared, call, received, response, dropped).await
}

/// Reads and discards the rest of a body (at most `limit` bytes), so the
/// sender gets to read the answer.
async fn drain(payload: &mut web::Payload, limit: u64) -> u64 {
    let mut n = 0u64;
    while let Some(Ok(piece)) = payload.next().await {
        n += piece.len() as u64;
        if n > limit {
            break;
        }
    }
    n
}

/// Where the bytes of a chunk go.
#[derive(Debug, Clone, Copy)]
enum Placement {
    /// At the chunk's offset; `held` bytes are already there and the
    /// overlapping part must be identical.
    At { start: u64, held: u64 },
    /// Appended whatever the offset, as the reference client does.
    Append,
}

#[derive(Debug)]
enum WriteError {
    Io(io::Error),
    /// Overlapping bytes differ from those held.
    Differs {
        at: u64,
    },
}

impl From<io::Error> for WriteError {
    fn from(e: io::Error) -> Self {
        WriteError::Io(e)
    }
}

/// Writes `data` at `pos`, comparing instead of writing the part below
/// `held`.
fn write_at(file: &fs::File, pos: u64, held: u64, data: &[u8]) -> Result<(), WriteError> {
    let overlap = usize::try_from(held.saturating_sub(pos))
        .unwrap_or(usize::MAX)
        .min(data.len());
    let (same, new) = data.split_at(overlap);
    if !same.is_empty() {
        let mut existing = vec![0u8; same.len()];
        file.read_exact_at(&mut existing, pos)?;
        if existing != same {
            let first = existing
                .iter()
                .zip(same)
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            return Err(WriteError::Differs {
                at: pos + first as u64,
            });
        }
    }
    if !new.is_empty() {
        file.write_all_at(new, pos + overlap as u64)?;
    }
    Ok(())
}

/// Writes the pieces of one chunk as they arrive.
struct ChunkWriter {
    file: Arc<fs::File>,
    placement: Placement,
    written: u64,
}

impl ChunkWriter {
    async fn open(path: PathBuf, placement: Placement) -> io::Result<Self> {
        let append = matches!(placement, Placement::Append);
        let file = blocking(move || {
            let mut options = OpenOptions::new();
            options.create(true);
            if append {
                options.append(true);
            } else {
                options.read(true).write(true);
            }
            options.open(&path)
        })
        .await?;
        Ok(Self {
            file: Arc::new(file),
            placement,
            written: 0,
        })
    }

    async fn write(&mut self, data: Bytes) -> Result<(), WriteError> {
        if data.is_empty() {
            return Ok(());
        }
        let file = self.file.clone();
        let placement = self.placement;
        let offset = self.written;
        let len = data.len() as u64;
        web::block(move || match placement {
            Placement::At { start, held } => write_at(&file, start + offset, held, &data),
            Placement::Append => (&*file).write_all(&data).map_err(WriteError::Io),
        })
        .await
        .map_err(|e| WriteError::Io(io::Error::other(e)))??;
        self.written += len;
        Ok(())
    }

    /// Bytes held after the writes so far.
    fn held(&self, before: u64) -> u64 {
        match self.placement {
            Placement::At { start, held } => held.max(start + self.written),
            Placement::Append => before + self.written,
        }
    }
}

/// Validates, then writes one chunk; returns the bytes held after it.
async fn receive_chunk(
    req: &HttpRequest,
    id: &str,
    file: &str,
    payload: &mut web::Payload,
    shared: &Shared,
    faults: &Faults,
    received: &mut u64,
) -> Result<u64, Reject> {
    let reference = faults.reference_mode;
    let max = shared.settings.max_chunk;
    check_names(id, Some(file))?;
    if header(req, CONTENT_TYPE) != Some(OCTET_STREAM) {
        return Err(Reject::bad("bad_content_type", "bad content type"));
    }
    let mismatch = || Reject::bad("range_size_mismatch", "range size mismatch with body size");
    let too_large = || {
        Reject::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "chunk_too_large",
            format!("a chunk carries at most {max} bytes"),
        )
    };

    // (offset, expected length, announced total)
    let (start, expected, total) = if reference {
        let Some(value) = header(req, RANGE) else {
            return Err(Reject::internal(
                "Cannot read properties of undefined (reading 'match')",
            ));
        };
        match parse_range_loose(value) {
            Some((start, end)) => match (end + 1).checked_sub(start) {
                Some(len) => (start, Some(len), None),
                None => return Err(mismatch()),
            },
            None => (0, None, None),
        }
    } else {
        let Some(value) = header(req, RANGE) else {
            return Err(Reject::bad("missing_range", "missing Range header"));
        };
        let range = parse_range(value)
            .ok_or_else(|| Reject::bad("bad_range", "bad Range header: expected start-end"))?;
        let total = match header(req, CONTENT_RANGE) {
            None => None,
            Some(value) => {
                let cr = parse_content_range(value).ok_or_else(|| {
                    Reject::bad(
                        "bad_content_range",
                        "bad Content-Range header: expected bytes start-end/total",
                    )
                })?;
                if cr.range != range {
                    return Err(Reject::bad(
                        "content_range_mismatch",
                        "Content-Range does not match Range",
                    ));
                }
                cr.total
            }
        };
        (range.start, Some(range.len()), total)
    };
    if expected.is_some_and(|len| len > max) {
        return Err(too_large());
    }
    let content_length = match header(req, CONTENT_LENGTH) {
        None => None,
        Some(v) => Some(
            v.trim()
                .parse::<u64>()
                .map_err(|_| Reject::bad("bad_content_length", "bad Content-Length"))?,
        ),
    };
    if content_length.is_some_and(|cl| cl > max) {
        return Err(too_large());
    }
    if let (Some(len), Some(cl)) = (expected, content_length) {
        if len != cl {
            return Err(mismatch());
        }
    }

    let Some(slot) = shared.slot(id) else {
        return Err(if reference {
            Reject::internal("ENOENT: no such file or directory")
        } else {
            Reject::conflict(
                "no_transfer",
                "no transfer started: send the start request first",
            )
        });
    };
    let _io = slot.io.lock().await;
    let (held, revoked, complete) = {
        let st = slot.state();
        let f = st.transfer.files.get(file);
        (
            f.map_or(0, |f| f.size),
            st.transfer.revoked,
            f.is_some_and(|f| f.complete),
        )
    };
    if !reference {
        if revoked {
            return Err(Reject::conflict(
                "revoked",
                "the grant of this transfer is revoked",
            ));
        }
        if complete {
            return Err(
                Reject::conflict("file_finished", "the file is already finished").with_offset(held),
            );
        }
        if start > held {
            return Err(Reject::conflict(
                "offset_mismatch",
                format!("the chunk starts at {start} but {held} bytes are held"),
            )
            .with_offset(held));
        }
    }

    // Without a Content-Length the body is gathered first, so that a length
    // mismatch writes nothing.
    let mut pieces: Vec<Bytes> = Vec::new();
    if content_length.is_none() {
        let limit = expected.unwrap_or(max);
        let mut body = BytesMut::new();
        while let Some(piece) = payload.next().await {
            let piece = piece.map_err(|e| Reject::bad("bad_body", format!("body: {e}")))?;
            *received += piece.len() as u64;
            if *received > limit {
                return Err(if expected.is_some() {
                    mismatch()
                } else {
                    too_large()
                });
            }
            body.extend_from_slice(&piece);
        }
        if expected.is_some_and(|len| len != *received) {
            return Err(mismatch());
        }
        pieces.push(body.freeze());
    }

    let placement = if reference {
        Placement::Append
    } else {
        Placement::At { start, held }
    };
    let path = shared.data_dir(id).join(file);
    let mut writer = ChunkWriter::open(path, placement)
        .await
        .map_err(Reject::io)?;
    let result = if content_length.is_none() {
        let mut result = Ok(());
        for piece in pieces {
            result = writer.write(piece).await;
        }
        result
    } else {
        stream_to(&mut writer, payload, received).await
    };
    let held_after = writer.held(held);
    update_file(&slot, file, held_after, total);
    match result {
        Ok(()) => {}
        Err(WriteError::Io(e)) => return Err(Reject::io(e)),
        Err(WriteError::Differs { at }) => {
            return Err(Reject::conflict(
                "bytes_differ",
                format!("the chunk rewrites held bytes with different ones (offset {at})"),
            )
            .with_offset(held_after))
        }
    }
    if expected.is_some_and(|len| len != *received) {
        // Only when the body was cut: the connection is gone anyway.
        return Err(mismatch().with_offset(held_after));
    }
    Ok(held_after)
}

/// Copies a body to the writer in batches of [`WRITE_BATCH`] bytes.
async fn stream_to(
    writer: &mut ChunkWriter,
    payload: &mut web::Payload,
    received: &mut u64,
) -> Result<(), WriteError> {
    let mut batch = BytesMut::new();
    while let Some(piece) = payload.next().await {
        let piece = match piece {
            Ok(p) => p,
            Err(e) => {
                // The sender went away: keep what arrived, as a real
                // receiver would, and report it through HEAD.
                writer.write(batch.split().freeze()).await?;
                return Err(WriteError::Io(io::Error::other(e.to_string())));
            }
        };
        *received += piece.len() as u64;
        batch.extend_from_slice(&piece);
        if batch.len() >= WRITE_BATCH {
            writer.write(batch.split().freeze()).await?;
        }
    }
    writer.write(batch.freeze()).await
}

fn update_file(slot: &Slot, file: &str, held: u64, total: Option<u64>) {
    let mut st = slot.state();
    let entry = st.transfer.files.entry(file.to_owned()).or_default();
    entry.size = held;
    entry.chunks += 1;
    if total.is_some() {
        entry.total = total;
    }
}

/// A duplicate of an accepted connection's socket, to close it from a
/// handler (the drop fault).
#[derive(Debug)]
struct ConnSocket(std::net::TcpStream);

/// `HttpServer::on_connect` hook: remembers each plain TCP connection's
/// socket.
pub(crate) fn remember_socket(conn: &dyn Any, ext: &mut Extensions) {
    use std::os::fd::AsFd;
    if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
        match tcp.as_fd().try_clone_to_owned() {
            Ok(fd) => {
                ext.insert(ConnSocket(std::net::TcpStream::from(fd)));
            }
            Err(err) => tracing::debug!(error = %err, "cannot keep the connection's socket"),
        }
    }
}

/// Shuts the request's connection down (both ways) without an answer.
fn drop_connection(req: &HttpRequest) -> bool {
    req.conn_data::<ConnSocket>()
        .is_some_and(|s| s.0.shutdown(std::net::Shutdown::Both).is_ok())
}

/// `HEAD {base}{id}/{file}`: how many bytes of the file the sink holds.
pub(crate) async fn head(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let (id, file) = path.into_inner();
    let (call, fault) = begin(&shared, &req);
    bump(&shared.counters.heads);
    let response = match fault {
        Some(r) => r,
        None => do_head(&id, &file, &shared, call.faults.reference_mode).await,
    };
    end(&shared, call, 0, response, false).await
}

async fn do_head(id: &str, file: &str, shared: &Shared, reference: bool) -> HttpResponse {
    if reference {
        return HttpResponse::NotFound().finish();
    }
    if check_names(id, Some(file)).is_err() {
        return HttpResponse::BadRequest().finish();
    }
    let Some(slot) = shared.slot(id) else {
        return HttpResponse::NotFound().finish();
    };
    // Wait for writes in progress, so the answer is settled.
    let _io = slot.io.lock().await;
    let held = {
        let st = slot.state();
        if st.transfer.revoked {
            // Nothing to resume: the sender must start again.
            return HttpResponse::NotFound().finish();
        }
        st.transfer.files.get(file).map_or(0, |f| f.size)
    };
    HttpResponse::Ok()
        .insert_header((UPLOAD_OFFSET, held.to_string()))
        .insert_header(("Cache-Control", "no-store"))
        .finish()
}
