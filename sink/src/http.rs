//! The protocol routes under the base path (start, chunk, `HEAD`, file
//! finish, transfer finish), with fault injection and the request log.

use std::any::Any;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Extensions;
use actix_web::http::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes, BytesMut};
use actix_web::{HttpRequest, HttpResponse};
use common::alias::{AliasError, Grant, GRANT};
use common::anychain::Limits;
use common::storage::is_safe_segment;
use futures_util::StreamExt;
use serde::Deserialize;

use crate::faults::Faults;
use crate::range::{parse_content_range, parse_range, parse_range_loose};
use crate::store::{
    bump, hash_file, persist, FileState, GrantSummary, RequestRecord, Shared, Slot,
};

/// The resume extension's header: bytes of a file the sink holds.
pub const UPLOAD_OFFSET: &str = "Upload-Offset";

/// Largest start body, as the reference client (Express's `100kb`).
pub(crate) const START_LIMIT: usize = 100 * 1024;

/// Largest finish body (a transfer finish lists every file).
pub(crate) const FINISH_LIMIT: usize = 1 << 20;

/// Bytes gathered before one write to disk.
const WRITE_BATCH: usize = 1 << 20;

/// The only chunk content type the protocol accepts.
const OCTET_STREAM: &str = "application/octet-stream";

/// A refusal: the reference's `{"status":"error","reason":…}` plus a stable
/// machine-readable `code`.
#[derive(Debug)]
pub(crate) struct Reject {
    status: StatusCode,
    code: &'static str,
    reason: String,
    offset: Option<u64>,
}

impl Reject {
    fn new(status: StatusCode, code: &'static str, reason: impl Into<String>) -> Self {
        Self {
            status,
            code,
            reason: reason.into(),
            offset: None,
        }
    }

    fn bad(code: &'static str, reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, reason)
    }

    fn conflict(code: &'static str, reason: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, reason)
    }

    /// What the reference answers when it throws.
    fn internal(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", reason)
    }

    fn io(err: io::Error) -> Self {
        tracing::error!(error = %err, "sink storage failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "storage",
            format!("storage failed: {err}"),
        )
    }

    fn with_offset(mut self, offset: u64) -> Self {
        self.offset = Some(offset);
        self
    }

    pub(crate) fn response(&self) -> HttpResponse {
        let mut builder = HttpResponse::build(self.status);
        if let Some(offset) = self.offset {
            builder.insert_header((UPLOAD_OFFSET, offset.to_string()));
        }
        builder.json(serde_json::json!({
            "status": "error",
            "reason": self.reason,
            "code": self.code,
        }))
    }
}

/// One protocol request in progress: its log record and the faults in force
/// when it arrived.
struct Call {
    record: RequestRecord,
    faults: Faults,
}

fn header<'a>(req: &'a HttpRequest, name: actix_web::http::header::HeaderName) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Counts the request, and answers it with a fault when one applies.
fn begin(shared: &Shared, req: &HttpRequest) -> (Call, Option<HttpResponse>) {
    bump(&shared.counters.requests);
    let faults = shared.faults();
    let owned = |name| header(req, name).map(str::to_owned);
    let record = RequestRecord {
        method: req.method().to_string(),
        path: req.path().to_owned(),
        content_type: owned(CONTENT_TYPE),
        range: owned(RANGE),
        content_range: owned(CONTENT_RANGE),
        body_len: 0,
        status: 0,
    };
    let fault = if faults.dead {
        Some(
            Reject::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "fault_dead",
                "dead client (fault injection)",
            )
            .response(),
        )
    } else if shared.next_fails(faults.fail_every) {
        let mut response = Reject::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "fault_unavailable",
            "unavailable (fault injection)",
        )
        .response();
        if let Some(secs) = faults.retry_after {
            if let Ok(value) = secs.to_string().parse() {
                response
                    .headers_mut()
                    .insert(actix_web::http::header::RETRY_AFTER, value);
            }
        }
        Some(response)
    } else {
        None
    };
    if fault.is_some() {
        bump(&shared.counters.injected_failures);
    }
    (Call { record, faults }, fault)
}

/// Applies the delay fault and logs the request.
async fn end(
    shared: &Shared,
    call: Call,
    body_len: u64,
    response: HttpResponse,
    dropped: bool,
) -> HttpResponse {
    if call.faults.delay_ms > 0 {
        actix_web::rt::time::sleep(Duration::from_millis(call.faults.delay_ms)).await;
    }
    if response.status().is_client_error() {
        bump(&shared.counters.rejected);
    }
    let mut record = call.record;
    record.body_len = body_len;
    record.status = if dropped {
        0
    } else {
        response.status().as_u16()
    };
    shared.record(record);
    response
}

async fn blocking<T, F>(f: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    web::block(f).await.map_err(io::Error::other)?
}

fn check_names(id: &str, file: Option<&str>) -> Result<(), Reject> {
    if !is_safe_segment(id) {
        return Err(Reject::bad("bad_id", "bad transfer id"));
    }
    if file.is_some_and(|f| !is_safe_segment(f)) {
        return Err(Reject::bad(
            "bad_file_name",
            "bad file name: one path segment of [A-Za-z0-9._-] expected",
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------- start

/// `PUT {base}{id}`: verify the grant, store it, wipe the transfer's data.
pub(crate) async fn start(
    req: HttpRequest,
    id: web::Path<String>,
    body: Bytes,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let (call, fault) = begin(&shared, &req);
    bump(&shared.counters.starts);
    let response = match fault {
        Some(r) => r,
        None => match do_start(&req, &id, &body, &shared, call.faults.reference_mode).await {
            Ok(()) => HttpResponse::Ok().finish(),
            Err(r) => r.response(),
        },
    };
    end(&shared, call, body.len() as u64, response, false).await
}

/// The `grant` parameter: a JSON body's `grant` key, otherwise the form
/// field.
fn grant_param(req: &HttpRequest, body: &[u8]) -> Option<String> {
    let is_json = header(req, CONTENT_TYPE).is_some_and(|ct| {
        ct.trim_start()
            .to_ascii_lowercase()
            .starts_with("application/json")
    });
    if is_json {
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        return value.get("grant")?.as_str().map(str::to_owned);
    }
    url::form_urlencoded::parse(body)
        .find(|(k, _)| k == "grant")
        .map(|(_, v)| v.into_owned())
}

async fn do_start(
    req: &HttpRequest,
    id: &str,
    body: &[u8],
    shared: &Shared,
    reference: bool,
) -> Result<(), Reject> {
    check_names(id, None)?;
    let Some(token) = grant_param(req, body) else {
        return Err(if reference {
            Reject::internal("missing grant")
        } else {
            Reject::bad("missing_grant", "missing grant")
        });
    };
    let grant = match Grant::from_token(&token, &Limits::default()) {
        Ok(g) => g,
        Err(AliasError::WrongType(t)) if t == GRANT => {
            return Err(Reject::bad("not_a_grant", "not a grant"))
        }
        Err(e) if reference => return Err(Reject::internal(e.to_string())),
        Err(e) => return Err(Reject::bad("invalid_grant", format!("invalid grant: {e}"))),
    };
    let expected = grant
        .transfer_id(shared.settings.push_id)
        .map_err(|e| Reject::bad("invalid_grant", format!("invalid grant: {e}")))?
        .to_b64();
    if expected != id {
        return Err(Reject::bad("bad_grant_hash", "bad grant hash"));
    }

    let (slot, created) = shared.slot_or_insert(id, &grant);
    let _io = slot.io.lock().await;
    let (state, token_to_store) = {
        let mut st = slot.state();
        // As the reference: the grant is stored only when newer, the data is
        // wiped on every start.
        let newer = created || grant.is_newer_than(Some(&st.grant));
        if newer {
            st.transfer.grant = GrantSummary::of(&grant);
            st.grant = grant;
        }
        st.transfer.revoked = st.grant.is_revoked();
        st.transfer.starts += 1;
        st.transfer.finished = false;
        st.transfer.finish_verified = false;
        st.transfer.files.clear();
        (st.transfer.clone(), newer.then_some(token))
    };
    let data = shared.data_dir(id);
    let dir = shared.transfer_dir(id);
    let revoked = state.revoked;
    blocking(move || {
        match fs::remove_dir_all(&data) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        fs::create_dir_all(&data)?;
        persist(&dir, &state, token_to_store.as_deref())
    })
    .await
    .map_err(Reject::io)?;
    tracing::info!(id, revoked, "transfer started");
    Ok(())
}

// ---------------------------------------------------------------- chunks

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
    let entry = st
        .transfer
        .files
        .entry(file.to_owned())
        .or_insert_with(FileState::default);
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

// ---------------------------------------------------------------- HEAD

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

// ---------------------------------------------------------------- finishes

#[derive(Debug, Deserialize)]
struct FileFinish {
    action: Option<String>,
    size: Option<u64>,
    blake2b: Option<String>,
}

/// `POST {base}{id}/{file}`: the file is complete; check size and hash.
pub(crate) async fn finish_file(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: Bytes,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let (id, file) = path.into_inner();
    let (call, fault) = begin(&shared, &req);
    bump(&shared.counters.file_finishes);
    let response = match fault {
        Some(r) => r,
        // The reference client answers 200 and does nothing.
        None if call.faults.reference_mode => HttpResponse::Ok().finish(),
        None => match do_finish_file(&id, &file, &body, &shared).await {
            Ok(()) => HttpResponse::Ok().finish(),
            Err(r) => r.response(),
        },
    };
    end(&shared, call, body.len() as u64, response, false).await
}

async fn do_finish_file(id: &str, file: &str, body: &[u8], shared: &Shared) -> Result<(), Reject> {
    check_names(id, Some(file))?;
    let msg: FileFinish = serde_json::from_slice(body).map_err(|_| {
        Reject::bad(
            "bad_body",
            r#"expected a JSON body {"action":"finish","size":N,"blake2b":"…"}"#,
        )
    })?;
    if msg.action.as_deref() != Some("finish") {
        return Err(Reject::bad(
            "unknown_action",
            "unknown action: expected \"finish\"",
        ));
    }
    let slot = shared.slot(id).ok_or_else(|| {
        Reject::conflict(
            "no_transfer",
            "no transfer started: send the start request first",
        )
    })?;
    let _io = slot.io.lock().await;
    let (revoked, total) = {
        let st = slot.state();
        (
            st.transfer.revoked,
            st.transfer.files.get(file).and_then(|f| f.total),
        )
    };
    if revoked {
        return Err(Reject::conflict(
            "revoked",
            "the grant of this transfer is revoked",
        ));
    }
    let path = shared.data_dir(id).join(file);
    let hashed = path.clone();
    let (size, hash) = blocking(move || hash_file(&hashed))
        .await
        .map_err(Reject::io)?;
    if let Some(want) = msg.size {
        if want != size {
            return Err(Reject::bad(
                "size_mismatch",
                format!("size mismatch: {want} bytes announced, {size} received"),
            )
            .with_offset(size));
        }
    } else if let Some(total) = total.filter(|t| *t != size) {
        return Err(Reject::bad(
            "size_mismatch",
            format!("size mismatch: {total} bytes announced by Content-Range, {size} received"),
        )
        .with_offset(size));
    }
    if let Some(want) = &msg.blake2b {
        if *want != hash {
            return Err(Reject::bad(
                "blake2b_mismatch",
                format!("blake2b mismatch: the {size} bytes received hash to {hash}"),
            ));
        }
    }
    if size == 0 {
        // An empty file has no chunk: make it exist.
        blocking(move || {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map(drop)
        })
        .await
        .map_err(Reject::io)?;
    }
    let state = {
        let mut st = slot.state();
        let entry = st.transfer.files.entry(file.to_owned()).or_default();
        entry.size = size;
        entry.complete = true;
        entry.blake2b = Some(hash);
        st.transfer.clone()
    };
    save(shared, id, state).await
}

async fn save(shared: &Shared, id: &str, state: crate::store::TransferState) -> Result<(), Reject> {
    let dir = shared.transfer_dir(id);
    blocking(move || persist(&dir, &state, None))
        .await
        .map_err(Reject::io)
}

#[derive(Debug, Deserialize)]
struct TransferFinish {
    finished: Option<bool>,
    files: Option<Vec<FinishedFile>>,
}

#[derive(Debug, Deserialize)]
struct FinishedFile {
    name: String,
    size: u64,
    blake2b: String,
}

/// `POST {base}{id}`: the transfer is complete; check every listed file.
pub(crate) async fn finish_transfer(
    req: HttpRequest,
    id: web::Path<String>,
    body: Bytes,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let (call, fault) = begin(&shared, &req);
    bump(&shared.counters.transfer_finishes);
    let response = match fault {
        Some(r) => r,
        None => match do_finish_transfer(&id, &body, &shared, call.faults.reference_mode).await {
            Ok(()) => HttpResponse::Ok().finish(),
            Err(r) => r.response(),
        },
    };
    end(&shared, call, body.len() as u64, response, false).await
}

async fn do_finish_transfer(
    id: &str,
    body: &[u8],
    shared: &Shared,
    reference: bool,
) -> Result<(), Reject> {
    check_names(id, None)?;
    // The reference sends `String({finished: true})`.
    let files = if body.trim_ascii() == b"[object Object]" || reference {
        None
    } else {
        let msg: TransferFinish = serde_json::from_slice(body).map_err(|_| {
            Reject::bad(
                "bad_body",
                r#"expected a JSON body {"finished":true,"files":[…]}"#,
            )
        })?;
        if msg.finished != Some(true) {
            return Err(Reject::bad("not_finished", "expected \"finished\": true"));
        }
        msg.files
    };
    let Some(slot) = shared.slot(id) else {
        return if reference {
            Ok(())
        } else {
            Err(Reject::conflict(
                "no_transfer",
                "no transfer started: send the start request first",
            ))
        };
    };
    let _io = slot.io.lock().await;
    let state = {
        let mut st = slot.state();
        if let Some(listed) = &files {
            check_listed(&st.transfer, listed)?;
        }
        st.transfer.finished = true;
        st.transfer.finish_verified = files.is_some();
        st.transfer.clone()
    };
    save(shared, id, state).await?;
    tracing::info!(id, verified = files.is_some(), "transfer finished");
    Ok(())
}

fn check_listed(
    transfer: &crate::store::TransferState,
    listed: &[FinishedFile],
) -> Result<(), Reject> {
    let mut seen = std::collections::BTreeSet::new();
    for f in listed {
        if !seen.insert(f.name.as_str()) {
            return Err(Reject::bad(
                "duplicate_file",
                format!("file {:?} listed twice", f.name),
            ));
        }
        let Some(held) = transfer.files.get(&f.name) else {
            return Err(Reject::bad(
                "missing_file",
                format!("file {:?} was not received", f.name),
            ));
        };
        if !held.complete {
            return Err(Reject::bad(
                "incomplete_file",
                format!("file {:?} is not finished", f.name),
            ));
        }
        if held.size != f.size {
            return Err(Reject::bad(
                "size_mismatch",
                format!(
                    "file {:?}: {} bytes listed, {} received",
                    f.name, f.size, held.size
                ),
            ));
        }
        if held.blake2b.as_deref() != Some(f.blake2b.as_str()) {
            return Err(Reject::bad(
                "blake2b_mismatch",
                format!("file {:?}: blake2b differs from the bytes received", f.name),
            ));
        }
    }
    if let Some(extra) = transfer.files.keys().find(|k| !seen.contains(k.as_str())) {
        return Err(Reject::bad(
            "unlisted_file",
            format!("file {extra:?} was received but is not listed"),
        ));
    }
    Ok(())
}

/// The path of the data directory of a transfer, for the handle.
pub(crate) fn data_file(shared: &Shared, id: &str, file: &str) -> Option<PathBuf> {
    shared.file_path(id, file).filter(|p| Path::exists(p))
}
