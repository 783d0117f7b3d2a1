//! `PUT {base}{id}/{file}`: one chunk, written at its offset (or appended,
//! in reference mode); `HEAD {base}{id}/{file}`: the bytes held; and the
//! drop fault, which closes a connection without an answer.

use std::any::Any;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use actix_web::dev::Extensions;
use actix_web::http::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use actix_web::http::StatusCode;
use actix_web::web;
use actix_web::{HttpRequest, HttpResponse};

use super::{begin, check_names, end, header, Reject, UPLOAD_OFFSET};
use crate::body::{BodyReader, Spool, Spooled};
use crate::faults::Faults;
use crate::store::{bump, Shared, Slot};
use protocol::wire::{parse_content_range, parse_range, parse_range_loose};

/// Bytes copied from a spool file at a time.
const COPY_BATCH: usize = 1 << 20;

/// The only chunk content type the protocol accepts.
const OCTET_STREAM: &str = "application/octet-stream";

/// `PUT {base}{id}/{file}`: write one chunk at its offset.
pub(crate) async fn chunk(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let (id, file) = path.into_inner();
    let (call, fault) = begin(&shared, &req);
    bump(&shared.counters.chunk_requests);
    let max = shared.settings.max_chunk;
    let mut body = BodyReader::new(payload, &shared.settings.limits);
    let (response, dropped) = match fault {
        Some(r) => {
            body.drain(max).await;
            (r, false)
        }
        None => {
            let outcome = receive_chunk(&req, &id, &file, &mut body, &shared, &call.faults).await;
            match outcome {
                Ok(held) => {
                    bump(&shared.counters.chunks);
                    shared
                        .counters
                        .chunk_bytes
                        .fetch_add(body.received, std::sync::atomic::Ordering::Relaxed);
                    let dropped = shared.next_drops(call.faults.drop_every)
                        && drop_connection(&req, &shared.counters.dropped);
                    if dropped {
                        tracing::info!(id, file, "dropped the connection (fault injection)");
                    }
                    let response = HttpResponse::Ok()
                        .insert_header((UPLOAD_OFFSET, held.to_string()))
                        .finish();
                    (response, dropped)
                }
                Err(reject) => {
                    body.drain(max).await;
                    (reject.response(), false)
                }
            }
        }
    };
    end(&shared, call, body.received, response, dropped).await
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

fn past_end() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "offset past the largest file")
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
                at: pos.saturating_add(first as u64),
            });
        }
    }
    if !new.is_empty() {
        let at = pos.checked_add(overlap as u64).ok_or_else(past_end)?;
        file.write_all_at(new, at)?;
    }
    Ok(())
}

/// Writes a spooled chunk into the file at `path`; returns the bytes
/// written (or compared) and how it ended.
fn commit(path: &PathBuf, placement: Placement, body: &Spooled) -> (u64, Result<(), WriteError>) {
    let mut written = 0u64;
    let result = (|| -> Result<(), WriteError> {
        let mut options = OpenOptions::new();
        options.create(true);
        match placement {
            Placement::Append => options.append(true),
            Placement::At { .. } => options.read(true).write(true),
        };
        let file = options.open(path)?;
        let put = |data: &[u8], written: &mut u64| -> Result<(), WriteError> {
            match placement {
                Placement::At { start, held } => {
                    let pos = start.checked_add(*written).ok_or_else(past_end)?;
                    write_at(&file, pos, held, data)?;
                }
                Placement::Append => (&file).write_all(data)?,
            }
            *written = written.saturating_add(data.len() as u64);
            Ok(())
        };
        if let Some(spooled) = &body.file {
            let mut reader = spooled.reader()?;
            let mut buf = vec![0u8; COPY_BATCH];
            loop {
                let n = reader.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                put(&buf[..n], &mut written)?;
            }
        }
        if !body.tail.is_empty() {
            put(&body.tail, &mut written)?;
        }
        Ok(())
    })();
    (written, result)
}

/// The state checks of a chunk, before its body arrives (with `len` the
/// announced length) and again under the I/O lock (with the length
/// received); returns the bytes held.
fn check_state(
    slot: &Slot,
    shared: &Shared,
    file: &str,
    start: u64,
    len: u64,
    reference: bool,
) -> Result<u64, Reject> {
    let st = slot.state();
    let transfer = &st.transfer;
    let f = transfer.files.get(file);
    let held = f.map_or(0, |f| f.size);
    if !reference {
        if transfer.revoked {
            return Err(Reject::conflict(
                "revoked",
                "the grant of this transfer is revoked",
            ));
        }
        if transfer.finished {
            return Err(Reject::conflict(
                "transfer_finished",
                "the transfer is finished: nothing can change until a new start",
            ));
        }
        if f.is_some_and(|f| f.complete) {
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
    let limits = &shared.settings.limits;
    if f.is_none() && transfer.files.len() >= limits.max_files {
        return Err(Reject::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_files",
            format!("a transfer holds at most {} files", limits.max_files),
        ));
    }
    let end = if reference { held } else { start }.checked_add(len);
    let others = transfer
        .files
        .iter()
        .filter(|(name, _)| name.as_str() != file)
        .fold(0u64, |sum, (_, f)| sum.saturating_add(f.size));
    let total = end
        .map(|end| end.max(held))
        .and_then(|n| n.checked_add(others));
    if total.is_none_or(|t| t > limits.max_transfer_bytes) {
        return Err(Reject::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "transfer_too_large",
            format!(
                "a transfer holds at most {} bytes",
                limits.max_transfer_bytes
            ),
        )
        .with_offset(held));
    }
    Ok(held)
}

/// Validates, receives the whole body (no lock held), then writes it under
/// the transfer's I/O lock; returns the bytes held after it.
async fn receive_chunk(
    req: &HttpRequest,
    id: &str,
    file: &str,
    body: &mut BodyReader,
    shared: &Shared,
    faults: &Faults,
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
            Some((start, end)) => match end.checked_add(1).and_then(|e| e.checked_sub(start)) {
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
    // Refuse early what would be refused anyway.
    let announced = expected.or(content_length).unwrap_or(0);
    check_state(&slot, shared, file, start, announced, reference)?;

    // The whole body, spooled, before any lock. Without a Content-Length a
    // length mismatch writes nothing; a body cut short after a
    // Content-Length keeps what arrived, as a real receiver would.
    let limit = expected.unwrap_or(max);
    let memory = shared.settings.limits.spool_memory;
    let mut spool = Spool::default();
    let cut = loop {
        match body.next().await {
            Ok(Some(piece)) => {
                if body.received > limit {
                    return Err(if expected.is_some() {
                        mismatch()
                    } else {
                        too_large()
                    });
                }
                spool
                    .push(shared, memory, piece)
                    .await
                    .map_err(Reject::io)?;
            }
            Ok(None) => break None,
            Err(e) => break Some(e),
        }
    };
    let received = body.received;
    match &cut {
        Some(e) if content_length.is_none() => return Err(e.reject()),
        None if expected.is_some_and(|len| len != received) => return Err(mismatch()),
        _ => {}
    }
    let spooled = spool.finish();

    let _io = slot.io.lock().await;
    let held = check_state(&slot, shared, file, start, received, reference)?;
    let placement = if reference {
        Placement::Append
    } else {
        Placement::At { start, held }
    };
    let path = shared.data_dir(id).join(file);
    let (written, result) = web::block(move || commit(&path, placement, &spooled))
        .await
        .map_err(|e| Reject::io(io::Error::other(e)))?;
    let held_after = match placement {
        Placement::At { start, held } => held.max(start.saturating_add(written)),
        Placement::Append => held.saturating_add(written),
    };
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
    if let Some(e) = cut {
        return Err(e.reject().with_offset(held_after));
    }
    Ok(held_after)
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
/// Closes the request's connection unanswered, counting it in `counter`
/// first: a client that sees the connection close and asks the counters
/// right away finds the drop counted.
fn drop_connection(req: &HttpRequest, counter: &std::sync::atomic::AtomicU64) -> bool {
    let Some(socket) = req.conn_data::<ConnSocket>() else {
        return false;
    };
    bump(counter);
    if socket.0.shutdown(std::net::Shutdown::Both).is_ok() {
        true
    } else {
        counter.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        false
    }
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
