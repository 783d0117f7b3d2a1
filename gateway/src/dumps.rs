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
use percent_encoding::percent_decode_str;
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

const EXTENSIONS: [&str; 4] = [".tar.gz", ".tgz", ".zip", ".tar"];
/// The longest dump name accepted, in bytes of UTF-8.
const MAX_NAME_BYTES: usize = 255;
/// The longest stem of a derived storage name.
const MAX_KEY_STEM: usize = 80;

fn bad_name(reason: &str) -> ApiError {
    ApiError::bad_request(
        "bad_name",
        format!("this file name cannot be used: {reason}"),
    )
}

/// The provider and the dump name of a dump route, decoded from the raw
/// request path (`/alias/dumps/{provider}/{name}`, the name percent-encoded
/// as any path segment): exactly two segments, each strict UTF-8. The
/// signature covers the raw path, so the name is decoded here once, the
/// same way for every request.
fn names_of(req: &HttpRequest) -> Result<(String, String), ApiError> {
    let rest = req
        .path()
        .strip_prefix("/alias/dumps/")
        .ok_or_else(|| bad_name("not a dump path"))?;
    let mut parts = rest.split('/');
    let (Some(provider), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad_name("a dump path is /alias/dumps/{provider}/{name}"));
    };
    let decode = |seg: &str| {
        percent_decode_str(seg)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| bad_name("the name is not UTF-8"))
    };
    let (provider, name) = (decode(provider)?, decode(name)?);
    check_names(&provider, &name)?;
    Ok((provider, name))
}

/// The accepted extension of a dump name (compared without case), as the
/// storage name writes it (lower case).
fn extension_of(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    EXTENSIONS.iter().find(|ext| lower.ends_with(*ext)).copied()
}

/// Characters a dump name may not hold: controls (C0, DEL, C1), the
/// invisible direction overrides that make a name read as another
/// (`U+202A`–`U+202E`, `U+2066`–`U+2069`, `U+200E`, `U+200F`), and path
/// separators.
fn forbidden_in_name(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}')
        || c == '/'
        || c == '\\'
}

/// Checks a provider id and a dump name. The name is what the user's file
/// is called (`Your Orders.zip`): any UTF-8 of at most 255 bytes ending in
/// .zip, .tgz, .tar.gz or .tar (any case), without controls, direction
/// overrides or path separators, and not `.` or `..`. It is only shown and
/// compared; the storage key is [`storage_name`]'s.
pub fn check_names(provider: &str, name: &str) -> Result<(), ApiError> {
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
    if name.is_empty() || name.trim().is_empty() {
        return Err(bad_name("it is empty"));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(bad_name("it is longer than 255 bytes"));
    }
    if name.chars().any(forbidden_in_name) {
        return Err(bad_name(
            "it holds a control character, a text-direction override or a path separator",
        ));
    }
    if name == "." || name == ".." {
        return Err(bad_name("it is not a file name"));
    }
    if extension_of(name).is_none() {
        return Err(bad_name("a dump is a .zip, .tgz, .tar.gz or .tar file"));
    }
    Ok(())
}

/// The storage name (last key segment) of a dump named `name` (checked by
/// [`check_names`]): the name itself when it is already a plain segment
/// with a lower-case extension (so earlier dumps keep their keys), else the
/// name's letters and digits with everything else as `_`, a `-` and 16 hex
/// digits of the name's BLAKE2b (two names never share a key by accident),
/// and the extension in lower case: `Your Orders.zip` is stored as
/// `Your_Orders-<hash>.zip`.
pub fn storage_name(name: &str) -> String {
    let ext = extension_of(name).unwrap_or(".zip");
    if is_safe_segment(name) && name.ends_with(ext) && !name.starts_with('.') {
        return name.to_owned();
    }
    let stem_len = name.len().saturating_sub(ext.len());
    let stem = name.get(..stem_len).unwrap_or(name);
    let mut safe = String::new();
    for c in stem.chars() {
        let c = if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
            c
        } else {
            '_'
        };
        if !(c == '_' && safe.ends_with('_')) {
            safe.push(c);
        }
        if safe.len() >= MAX_KEY_STEM {
            break;
        }
    }
    let safe = safe.trim_start_matches(['.', '_', '-']);
    let safe = if safe.is_empty() { "dump" } else { safe };
    let digest = blake2b_simd::Params::new()
        .hash_length(8)
        .hash(name.as_bytes());
    let hex: String = digest
        .as_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{safe}-{hex}{ext}")
}

/// `PUT /alias/dumps/{provider}/{name}`: stores a dump of the signing user.
pub async fn upload(
    app: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (provider, name) = names_of(&req)?;
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
    let key = format!("dumps/{}/{provider}/{}", authed.user, storage_name(&name));
    check_quota(&app, &authed.user, &provider, &name, &key, size).await?;
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
/// A name whose storage key another of the user's dumps holds is refused.
async fn check_quota(
    app: &AppState,
    user: &str,
    provider: &str,
    name: &str,
    key: &str,
    size: u64,
) -> Result<(), ApiError> {
    let q = app.config.quotas;
    let dumps = app.state.dumps(user).await?;
    if dumps
        .iter()
        .any(|d| d.key == key && !(d.provider == provider && d.name == name))
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "name_conflict",
            "another of your dumps is stored under the name this file would take: rename the file",
        ));
    }
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

/// `DELETE /alias/dumps/{provider}/{name}`: removes one of the user's dumps
/// (the record names its storage key).
pub async fn delete(app: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let (provider, name) = names_of(&req)?;
    let authed = authenticate(&app, &req).await?;
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such dump");
    let key = app
        .state
        .dumps(&authed.user)
        .await?
        .into_iter()
        .find(|d| d.provider == provider && d.name == name)
        .map(|d| d.key)
        .ok_or_else(not_found)?;
    if !app
        .state
        .delete_dump(&authed.user, &provider, &name)
        .await?
    {
        return Err(not_found());
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_people_have_are_accepted_and_stored_safely() {
        for ok in [
            "Your Orders.zip",
            "takeout-20250101T000000Z-001.zip",
            "Données personnelles (2).TAR.GZ",
            "facebook-jdoe 2025.tgz",
            "..hidden.zip",
            "a\u{00e9}.tar",
        ] {
            assert!(check_names("amazon", ok).is_ok(), "{ok}");
            let stored = storage_name(ok);
            assert!(is_safe_segment(&stored), "{ok} -> {stored}");
            assert!(!stored.starts_with('.'), "{ok} -> {stored}");
        }
        assert_eq!(
            storage_name("takeout-20250101T000000Z-001.zip"),
            "takeout-20250101T000000Z-001.zip"
        );
        let stored = storage_name("Your Orders.zip");
        assert!(
            stored.starts_with("Your_Orders-") && stored.ends_with(".zip"),
            "{stored}"
        );
        assert_eq!(stored, storage_name("Your Orders.zip"), "deterministic");
        assert_ne!(stored, storage_name("Your_Orders.zip"));
        assert_ne!(stored, storage_name("Your  Orders.zip"));
        assert!(storage_name("Données personnelles (2).TAR.GZ").ends_with(".tar.gz"));
        assert!(storage_name(&"é".repeat(120)).len() <= 255);
    }

    #[test]
    fn traversal_controls_and_other_files_are_refused() {
        for bad in [
            "",
            " ",
            ".",
            "..",
            "../x.zip",
            "a/b.zip",
            "a\\b.zip",
            "a\nb.zip",
            "a\u{0}.zip",
            "a\u{7f}.zip",
            "a\u{85}.zip",
            "evil\u{202E}piz.exe.zip",
            "notes.txt",
            "archive.zip.exe",
        ] {
            assert!(check_names("amazon", bad).is_err(), "{bad:?}");
        }
        assert!(check_names("amazon", &format!("{}.zip", "a".repeat(252))).is_err());
        assert!(check_names("Amazon", "x.zip").is_err());
        assert!(check_names("am/azon", "x.zip").is_err());
    }
}
