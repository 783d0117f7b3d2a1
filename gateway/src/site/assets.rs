//! `GET /static/{path}`: the scripts and styles of the pages, from
//! `ALIAS_WEB_DIR` (the repository's `web/`): `src/` (anychain and Alias in
//! JavaScript), `app/` (the pages' scripts and styles) and the ES module
//! builds of libsodium-wrappers-sumo installed by `npm ci`. Nothing else
//! of the directory is served.
//!
//! Every file carries a validator (`ETag`, a BLAKE2b of its bytes) and
//! `Cache-Control: no-cache`: a browser asks again on each page and gets
//! `304 Not Modified` (no body) while the file is unchanged, so the ≈600 KB
//! of scripts cross the network once. Text files are sent gzip-compressed
//! to browsers that accept it (libsodium's 530 KB become ≈200 KB). Files
//! are read, hashed and compressed once, and again only when their size or
//! modification time changes.

use crate::error::ApiError;
use crate::AppState;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

const ROOTS: [&str; 4] = [
    "src/",
    "app/",
    "node_modules/libsodium-wrappers-sumo/dist/modules-sumo-esm/",
    "node_modules/libsodium-sumo/dist/modules-sumo-esm/",
];

/// The content type of a served file, by extension.
pub fn content_type(path: &str) -> Option<&'static str> {
    let ext = path.rsplit_once('.').map(|(_, e)| e)?;
    Some(match ext {
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "wasm" => "application/wasm",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        _ => return None,
    })
}

/// Whether `path` is one of the served files' paths: under a served root,
/// each segment plain (no `..`, no hidden files).
pub fn allowed(path: &str) -> bool {
    ROOTS.iter().any(|root| path.starts_with(root))
        && path.split('/').all(|seg| {
            !seg.is_empty()
                && !seg.starts_with('.')
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        })
        && content_type(path).is_some()
}

fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such file")
}

/// One served file as kept in memory.
struct Cached {
    modified: Option<SystemTime>,
    len: u64,
    etag: String,
    plain: web::Bytes,
    gzip: Option<web::Bytes>,
}

fn cache() -> &'static Mutex<HashMap<String, Arc<Cached>>> {
    static CELL: OnceLock<Mutex<HashMap<String, Arc<Cached>>>> = OnceLock::new();
    CELL.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Whether a content type is worth compressing.
fn compressible(ctype: &str) -> bool {
    ctype.starts_with("text/") || ctype.starts_with("application/json") || ctype == "image/svg+xml"
}

fn gzip(bytes: &[u8]) -> Option<web::Bytes> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(bytes).ok()?;
    let out = enc.finish().ok()?;
    (out.len() < bytes.len()).then(|| web::Bytes::from(out))
}

/// Whether the request's `Accept-Encoding` allows gzip.
fn accepts_gzip(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(header::ACCEPT_ENCODING)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|part| {
            let mut bits = part.split(';');
            let name = bits.next().unwrap_or("").trim();
            let refused = bits.any(|q| {
                let q = q.trim().replace(' ', "");
                q == "q=0" || q == "q=0.0" || q == "q=0.00" || q == "q=0.000"
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

/// Whether `If-None-Match` names `etag` (or `*`), weak or strong.
fn not_modified(req: &HttpRequest, etag: &str) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == etag)
}

async fn load(app: &AppState, path: &str, ctype: &str) -> Result<Arc<Cached>, ApiError> {
    let file = app.config.web_dir.join(path);
    let meta = match tokio::fs::metadata(&file).await {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if path.starts_with("node_modules/") {
                tracing::error!(
                    dir = %app.config.web_dir.display(),
                    "libsodium is not installed for the pages: run `npm ci` in web/"
                );
            }
            return Err(not_found());
        }
        Err(e) => return Err(ApiError::unavailable("static files", e)),
    };
    let modified = meta.modified().ok();
    if let Ok(map) = cache().lock() {
        if let Some(c) = map.get(path) {
            if c.len == meta.len() && c.modified == modified {
                return Ok(c.clone());
            }
        }
    }
    let bytes = tokio::fs::read(&file)
        .await
        .map_err(|e| ApiError::unavailable("static files", e))?;
    let compress = compressible(ctype);
    let cached = tokio::task::spawn_blocking(move || {
        let digest = blake2b_simd::Params::new().hash_length(16).hash(&bytes);
        let etag: String = digest
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let gz = if compress { gzip(&bytes) } else { None };
        Cached {
            modified,
            len: bytes.len() as u64,
            etag: format!("\"{etag}\""),
            plain: web::Bytes::from(bytes),
            gzip: gz,
        }
    })
    .await
    .map_err(|e| ApiError::unavailable("static files", e))?;
    let cached = Arc::new(cached);
    if let Ok(mut map) = cache().lock() {
        map.insert(path.to_owned(), cached.clone());
    }
    Ok(cached)
}

/// Serves one file, with its validator and, when accepted, compressed.
pub async fn serve(
    app: web::Data<AppState>,
    req: HttpRequest,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let path = path.into_inner();
    if !allowed(&path) {
        return Err(not_found());
    }
    let ctype = content_type(&path).ok_or_else(not_found)?;
    let file = load(&app, &path, ctype).await?;
    let mut resp = if not_modified(&req, &file.etag) {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    resp.insert_header((header::ETAG, file.etag.clone()))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::VARY, "Accept-Encoding"))
        .insert_header(("X-Content-Type-Options", "nosniff"));
    if not_modified(&req, &file.etag) {
        return Ok(resp.finish());
    }
    resp.insert_header((header::CONTENT_TYPE, ctype));
    match &file.gzip {
        Some(gz) if accepts_gzip(&req) => Ok(resp
            .insert_header((header::CONTENT_ENCODING, "gzip"))
            .body(gz.clone())),
        _ => Ok(resp.body(file.plain.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_served_files() {
        assert!(allowed("src/anychain.js"));
        assert!(allowed("app/style.css"));
        assert!(allowed(
            "node_modules/libsodium-sumo/dist/modules-sumo-esm/libsodium-sumo.mjs"
        ));
        assert!(!allowed("package.json"));
        assert!(!allowed("src/../package.json"));
        assert!(!allowed("src/.secret.js"));
        assert!(!allowed("node_modules/other/index.js"));
        assert!(!allowed("src//x.js"));
        assert!(!allowed("src/readme"));
        assert_eq!(
            content_type("a.mjs"),
            Some("text/javascript; charset=utf-8")
        );
    }

    #[test]
    fn gzip_only_when_it_helps() {
        let text = "abc ".repeat(1000);
        let gz = gzip(text.as_bytes()).unwrap();
        assert!(gz.len() < 200);
        let mut plain = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut plain)
            .unwrap();
        assert_eq!(plain, text);
        assert!(gzip(&[7]).is_none());
        assert!(compressible("text/javascript; charset=utf-8"));
        assert!(!compressible("image/png"));
    }
}
