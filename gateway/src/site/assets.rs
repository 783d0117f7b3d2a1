//! `GET /static/{path}`: the scripts and styles of the pages, from
//! `ALIAS_WEB_DIR` (the repository's `web/`): `src/` (anychain and Alias in
//! JavaScript), `app/` (the pages' scripts and styles) and the ES module
//! builds of libsodium-wrappers-sumo installed by `npm ci`. Nothing else
//! of the directory is served.

use crate::error::ApiError;
use crate::AppState;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse};

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

/// Serves one file.
pub async fn serve(
    app: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let path = path.into_inner();
    if !allowed(&path) {
        return Err(not_found());
    }
    let ctype = content_type(&path).ok_or_else(not_found)?;
    let file = app.config.web_dir.join(&path);
    let bytes = match tokio::fs::read(&file).await {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_found()),
        Err(e) => return Err(ApiError::unavailable("static files", e)),
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, ctype))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(bytes))
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
}
