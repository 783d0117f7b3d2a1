//! `GET /alias/transfers/{id}` and its Server-Sent Events, for the
//! transfer's user, its client and operators only (see [`crate::access`]).

use crate::access;
use crate::error::ApiError;
use crate::AppState;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::stream::{self, StreamExt};
use runtime::state::{FileRecord, Transfer, TransferEvent};
use std::time::Duration;

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The status document of a transfer: its record and its files.
pub(crate) async fn transfer_json(app: &AppState, id: &str) -> Result<serde_json::Value, ApiError> {
    let Some(t) = app.state.transfer(id).await? else {
        return Ok(serde_json::Value::Null);
    };
    let files = app.state.files(id, t.generation).await?;
    Ok(status_json(&t, &files))
}

/// The status document of a transfer read with its files.
pub(crate) fn status_json(t: &Transfer, files: &[FileRecord]) -> serde_json::Value {
    let mut value = serde_json::to_value(t).unwrap_or_default();
    if let Some(obj) = value.as_object_mut() {
        obj.insert(
            "files".into(),
            serde_json::to_value(
                files
                    .iter()
                    .map(|f| {
                        serde_json::json!({
                            "name": f.name, "scope": f.scope, "size": f.size,
                            "blake2b": f.blake2b, "offset": f.offset,
                        })
                    })
                    .collect::<Vec<_>>(),
            )
            .unwrap_or_default(),
        );
    }
    value
}

/// `GET /alias/transfers/{id}`.
pub async fn status(
    app: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    if !valid_id(&id) {
        return Err(ApiError::bad_request("bad_id", "not a transfer id"));
    }
    access::authorize(&app, &req, &id).await?;
    match transfer_json(&app, &id).await? {
        serde_json::Value::Null => Err(access::hidden()),
        value => Ok(HttpResponse::Ok().json(value)),
    }
}

/// `GET /alias/transfers/{id}/events`: the current status, then every
/// change, as Server-Sent Events; the stream ends with the transfer.
/// Subscribes only once the caller may see the transfer and holds a
/// stream slot (both given back when the stream ends or the caller goes).
pub async fn events(
    app: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    if !valid_id(&id) {
        return Err(ApiError::bad_request("bad_id", "not a transfer id"));
    }
    access::authorize(&app, &req, &id).await?;
    let slot = app.streams.acquire(crate::ops::client_addr(&app, &req))?;
    let rx = app.state.subscribe(&id);
    let first = transfer_json(&app, &id).await?;
    if first.is_null() {
        return Err(access::hidden());
    }
    let terminal = |v: &serde_json::Value| {
        matches!(
            v.get("state").and_then(|s| s.as_str()),
            Some("done" | "failed" | "cancelled")
        )
    };
    let done_at_start = terminal(&first);
    let head = stream::once(async move { sse("status", &first) });
    // The state carries the app and the id, so that a quiet stream can read
    // the status again without cloning them for every event.
    let tail = stream::unfold(
        (rx, done_at_start, slot, app, id),
        move |(mut rx, done, slot, app, id)| async move {
            if done {
                return None;
            }
            loop {
                match tokio::time::timeout(QUIET, rx.recv()).await {
                    // Events travel by Redis pub/sub, which drops those
                    // published while a gateway resubscribes (a Redis
                    // failover): a quiet stream reads the status again, so
                    // that it still ends with its transfer.
                    Err(_) => {
                        let now = transfer_json(&app, &id).await;
                        let (event, end) = match &now {
                            Ok(now) if terminal(now) => (sse("status", now), true),
                            _ => (keepalive(), false),
                        };
                        return Some((event, (rx, end, slot, app, id)));
                    }
                    Ok(Ok(TransferEvent { transfer, kind })) => {
                        let value = serde_json::to_value(&transfer).unwrap_or_default();
                        let end = transfer.state.is_terminal();
                        return Some((sse(&kind, &value), (rx, end, slot, app, id)));
                    }
                    Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => continue,
                    Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => return None,
                }
            }
        },
    );
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(head.chain(tail)))
}

/// How long an events stream may stay quiet before the status is read
/// again (and a keep-alive sent when the transfer is still running).
const QUIET: Duration = Duration::from_secs(15);

fn sse(kind: &str, value: &serde_json::Value) -> Result<web::Bytes, actix_web::Error> {
    Ok(web::Bytes::from(format!(
        "event: {kind}\ndata: {value}\n\n"
    )))
}

fn keepalive() -> Result<web::Bytes, actix_web::Error> {
    Ok(web::Bytes::from_static(b": keep-alive\n\n"))
}
