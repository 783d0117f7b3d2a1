//! Dumps, authenticated by the user's key alone: every request carries
//! `Authorization: Alias <token>`, a short-lived `alias.bank.request` signed
//! by the user for exactly this method, path and origin (and body size for
//! uploads), usable once. Uploads stream into resource storage, hashed on
//! the way; an upload that fails or does not match its declared size leaves
//! nothing behind and an older dump of the same name untouched.

use crate::error::ApiError;
use crate::grants::token_error;
use crate::AppState;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use protocol::alias::{RequestAuthError, SignedRequest};
use protocol::wire::is_safe_segment;
use runtime::state::{now_ms, DumpRecord};
use runtime::storage::StorageError;

/// The user a signed request authenticates, with the request.
struct Authed {
    user: String,
    request: SignedRequest,
}

async fn authenticate(app: &AppState, req: &HttpRequest) -> Result<Authed, ApiError> {
    let unauthorized =
        |reason: String| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", reason);
    let value = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| unauthorized("missing 'Authorization: Alias <signed request>'".into()))?;
    let token = value
        .strip_prefix("Alias ")
        .ok_or_else(|| unauthorized("authorization scheme must be 'Alias'".into()))?;
    let token = crate::access::decoded(token)
        .ok_or_else(|| unauthorized("signed request is not UTF-8".into()))?;
    let request = SignedRequest::from_token(&token, &app.config.limits).map_err(|e| match e {
        RequestAuthError::Invalid(inner) => {
            let mut err = token_error(inner, "signed request");
            err.status = StatusCode::UNAUTHORIZED;
            err
        }
        other => unauthorized(other.to_string()),
    })?;
    crate::access::signed_for(app, req, &request).map_err(|e| unauthorized(e.to_string()))?;
    let id = request
        .id()
        .map_err(|e| token_error(e, "signed request"))?
        .to_b64();
    if !crate::access::claim_request(app, &id).await? {
        return Err(unauthorized("this signed request was already used".into()));
    }
    Ok(Authed {
        user: protocol::anychain::b64u_encode(request.signer()),
        request,
    })
}

const EXTENSIONS: [&str; 4] = [".zip", ".tgz", ".tar.gz", ".tar"];

fn check_names(provider: &str, name: &str) -> Result<(), ApiError> {
    let provider_ok = !provider.is_empty()
        && provider.len() <= 32
        && provider
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !provider_ok {
        return Err(ApiError::bad_request(
            "bad_provider",
            "provider must be 1-32 of [a-z0-9_]",
        ));
    }
    if !is_safe_segment(name) || !EXTENSIONS.iter().any(|ext| name.ends_with(ext)) {
        return Err(ApiError::bad_request(
            "bad_name",
            "dump name must be one segment of [A-Za-z0-9._-] ending in .zip, .tgz, .tar.gz or .tar",
        ));
    }
    Ok(())
}

/// `PUT /alias/dumps/{provider}/{name}`: stores a dump of the signing user.
pub async fn upload(
    app: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (provider, name) = path.into_inner();
    check_names(&provider, &name)?;
    // Caps on uploads in progress (held until this handler returns): the
    // address before the signature costs anything, the key after it.
    let _addr_slot = app
        .uploads
        .for_addr(&app, crate::ops::client_addr(&app, &req))?;
    let authed = authenticate(&app, &req).await?;
    let _key_slot = app.uploads.for_key(&app, &authed.user)?;
    let size = authed.request.size().ok_or_else(|| {
        ApiError::bad_request(
            "missing_size",
            "the signed request must declare the body size",
        )
    })?;
    if size > app.config.max_dump_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("dumps are limited to {} bytes", app.config.max_dump_bytes),
        ));
    }
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len != size {
            return Err(ApiError::bad_request(
                "size_mismatch",
                format!("Content-Length {len} differs from the signed size {size}"),
            ));
        }
    }
    check_quota(&app, &authed.user, &provider, &name, size).await?;
    let key = format!("dumps/{}/{provider}/{name}", authed.user);
    // The actix payload is not `Send`: feed the storage task through a
    // small bounded channel; the storage spools parts to disk, so memory
    // stays bounded whatever the size and however slow the client.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<web::Bytes, std::io::Error>>(8);
    let storage = app.storage.clone();
    let put_key = key.clone();
    let spool_dir = app.config.work_dir.clone();
    let put = tokio::spawn(async move {
        storage
            .put_stream_spooled(&put_key, exactly(rx, size), Some(size), &spool_dir)
            .await
    });
    let mut payload = payload;
    let mut seen = 0u64;
    let mut failure = None;
    while let Some(chunk) = payload.next().await {
        match chunk {
            Ok(bytes) => {
                seen += bytes.len() as u64;
                if seen > size {
                    failure = Some(format!("body is larger than the signed size {size}"));
                    break;
                }
                if tx.send(Ok(bytes)).await.is_err() {
                    break;
                }
            }
            Err(e) => {
                failure = Some(format!("upload interrupted: {e}"));
                break;
            }
        }
    }
    if failure.is_none() && seen != size {
        failure = Some(format!("body has {seen} bytes, the signed size is {size}"));
    }
    if let Some(reason) = &failure {
        // Makes the storage task abort the upload: nothing partial is kept.
        let _ = tx.send(Err(std::io::Error::other(reason.clone()))).await;
    }
    drop(tx);
    let stored = put
        .await
        .map_err(|e| ApiError::unavailable("storage task", e))?;
    if let Some(reason) = failure {
        return Err(ApiError::bad_request("size_mismatch", reason));
    }
    let info = stored.map_err(|e| match e {
        StorageError::TooLarge { .. } => ApiError::bad_request(
            "size_mismatch",
            format!("body is larger than the signed size {size}"),
        ),
        other => ApiError::unavailable("storage", other),
    })?;
    let record = DumpRecord {
        provider,
        name,
        key,
        size: info.size,
        blake2b: info.blake2b_b64(),
        uploaded_ms: now_ms(),
    };
    if let Err(e) = app.state.record_dump(&authed.user, &record).await {
        // Another upload of the user's took the room meanwhile: nothing of
        // this one is kept (nor a record of the name whose bytes it replaced).
        if matches!(e, runtime::state::StateError::Quota { .. }) {
            let _ = app
                .state
                .delete_dump(&authed.user, &record.provider, &record.name)
                .await;
            if let Err(err) = app.storage.delete(&record.key).await {
                tracing::warn!(error = %err, key = %record.key, "refused dump not deleted");
            }
        }
        return Err(e.into());
    }
    tracing::info!(user = %authed.user, key = %record.key, size = record.size, "dump stored");
    let reexports = crate::site::reexport::after_upload(&app, &authed.user, &record.provider).await;
    Ok(HttpResponse::Created()
        .json(serde_json::json!({"status": "ok", "dump": record, "reexports": reexports})))
}

/// Refuses (before any byte is stored) an upload that would take the user
/// past the dump quotas; replacing a dump of the same name frees its room.
async fn check_quota(
    app: &AppState,
    user: &str,
    provider: &str,
    name: &str,
    size: u64,
) -> Result<(), ApiError> {
    let q = app.config.quotas;
    let dumps = app.state.dumps(user).await?;
    let replaces = dumps
        .iter()
        .any(|d| d.provider == provider && d.name == name);
    if !replaces && dumps.len() as u64 >= q.dumps {
        return Err(crate::error::quota_exceeded("dumps", q.dumps));
    }
    let others: u64 = dumps
        .iter()
        .filter(|d| !(d.provider == provider && d.name == name))
        .map(|d| d.size)
        .sum();
    if others.saturating_add(size) > q.dump_bytes {
        return Err(crate::error::quota_exceeded("dump_bytes", q.dump_bytes));
    }
    Ok(())
}

/// The bytes of `rx`, failing unless they end after exactly `size` bytes:
/// when the handler stops early (the connection dropped), the storage write
/// is aborted instead of keeping a truncated object.
fn exactly(
    rx: tokio::sync::mpsc::Receiver<Result<web::Bytes, std::io::Error>>,
    size: u64,
) -> futures_util::stream::BoxStream<'static, Result<web::Bytes, std::io::Error>> {
    futures_util::stream::unfold((rx, 0u64, false), move |(mut rx, got, done)| async move {
        if done {
            return None;
        }
        match rx.recv().await {
            Some(Ok(bytes)) => {
                let got = got.saturating_add(bytes.len() as u64);
                Some((Ok(bytes), (rx, got, false)))
            }
            Some(Err(e)) => Some((Err(e), (rx, got, true))),
            None if got == size => None,
            None => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("the upload ended after {got} of {size} bytes"),
                )),
                (rx, got, true),
            )),
        }
    })
    .boxed()
}

/// `GET /alias/dumps`: the signing user's dumps.
pub async fn list(app: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let authed = authenticate(&app, &req).await?;
    let dumps = app.state.dumps(&authed.user).await?;
    Ok(HttpResponse::Ok()
        .json(serde_json::json!({"status": "ok", "user": authed.user, "dumps": dumps})))
}

/// `DELETE /alias/dumps/{provider}/{name}`: removes one of the user's dumps.
pub async fn delete(
    app: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (provider, name) = path.into_inner();
    check_names(&provider, &name)?;
    let authed = authenticate(&app, &req).await?;
    if !app
        .state
        .delete_dump(&authed.user, &provider, &name)
        .await?
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such dump",
        ));
    }
    let key = format!("dumps/{}/{provider}/{name}", authed.user);
    app.storage
        .delete(&key)
        .await
        .map_err(|e| ApiError::unavailable("storage", e))?;
    // What was built from it and not yet delivered goes with it.
    let cancelled = runtime::archives::dump_deleted(&app.state, &app.storage, &authed.user, &key)
        .await
        .map_err(|e| ApiError::unavailable("storage", e))?;
    if !cancelled.is_empty() {
        tracing::info!(user = %authed.user, %key, transfers = ?cancelled, "dump deleted: transfers built from it cancelled, their archives deleted");
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({"status": "ok", "cancelled": cancelled})))
}
