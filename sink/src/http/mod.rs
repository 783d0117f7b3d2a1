//! The protocol routes under the base path (start, chunk, `HEAD`, file
//! finish, transfer finish): what they share — refusals in the reference's
//! shape, fault injection and the request log.

mod chunk;
mod finish;
mod start;

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use actix_web::http::header::{HeaderName, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use actix_web::http::StatusCode;
use actix_web::web;
use actix_web::{HttpRequest, HttpResponse};
use protocol::wire::is_safe_segment;

use crate::faults::Faults;
use crate::store::{bump, RequestRecord, Shared};
use protocol::wire::ErrorEnvelope;

pub(crate) use chunk::{chunk, head, remember_socket};
pub(crate) use finish::{finish_file, finish_transfer};
pub(crate) use start::start;

pub use protocol::wire::UPLOAD_OFFSET;

/// Largest start body, as the reference client (Express's `100kb`).
pub(crate) const START_LIMIT: usize = 100 * 1024;

/// Largest finish body (a transfer finish lists every file).
pub(crate) const FINISH_LIMIT: usize = 1 << 20;

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
    pub(crate) fn new(status: StatusCode, code: &'static str, reason: impl Into<String>) -> Self {
        Self {
            status,
            code,
            reason: reason.into(),
            offset: None,
        }
    }

    pub(crate) fn bad(code: &'static str, reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, reason)
    }

    pub(crate) fn conflict(code: &'static str, reason: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, reason)
    }

    /// What the reference answers when it throws.
    pub(crate) fn internal(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", reason)
    }

    pub(crate) fn io(err: io::Error) -> Self {
        tracing::error!(error = %err, "sink storage failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "storage",
            format!("storage failed: {err}"),
        )
    }

    pub(crate) fn with_offset(mut self, offset: u64) -> Self {
        self.offset = Some(offset);
        self
    }

    pub(crate) fn response(&self) -> HttpResponse {
        let mut builder = HttpResponse::build(self.status);
        if let Some(offset) = self.offset {
            builder.insert_header((UPLOAD_OFFSET, offset.to_string()));
        }
        builder.json(ErrorEnvelope::new(self.code, self.reason.clone()))
    }
}

/// One protocol request in progress: its log record and the faults in force
/// when it arrived.
pub(crate) struct Call {
    record: RequestRecord,
    pub(crate) faults: Faults,
}

pub(crate) fn header(req: &HttpRequest, name: HeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// Counts the request, and answers it with a fault when one applies.
pub(crate) fn begin(shared: &Shared, req: &HttpRequest) -> (Call, Option<HttpResponse>) {
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
pub(crate) async fn end(
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

pub(crate) async fn blocking<T, F>(f: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    web::block(f).await.map_err(io::Error::other)?
}

pub(crate) fn check_names(id: &str, file: Option<&str>) -> Result<(), Reject> {
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

/// The path of the data directory of a transfer, for the handle.
pub(crate) fn data_file(shared: &Shared, id: &str, file: &str) -> Option<PathBuf> {
    shared.file_path(id, file).filter(|p| Path::exists(p))
}
