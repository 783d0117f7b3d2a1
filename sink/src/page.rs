//! What the sink received, for people (`GET /`, `GET /sink/`: HTML) and
//! programs (`?format=json`), and the runtime fault switches
//! (`GET`/`POST /sink/faults`): the admin routes, `404` unless enabled, and
//! then only for loopback peers (with the bearer token when one is set).
//! `GET /healthz` answers `ok` to anyone.

use protocol::wire::ErrorEnvelope;
use std::fmt::Write as _;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use crate::body::BodyReader;
use crate::faults::Faults;
use crate::store::{Counters, Shared, TransferState};

/// The status page's JSON form.
#[derive(Debug, Clone, Serialize)]
pub struct StatusView {
    /// Request counters.
    pub counters: Counters,
    /// Fault switches in force.
    pub faults: Faults,
    /// Every transfer held.
    pub transfers: Vec<TransferState>,
}

fn wants_json(req: &HttpRequest) -> bool {
    url::form_urlencoded::parse(req.query_string().as_bytes())
        .any(|(k, v)| k == "format" && v == "json")
}

/// Largest fault switches body.
const FAULTS_LIMIT: usize = 4096;

/// Whether `req` may use the admin routes.
fn admin_allowed(req: &HttpRequest, shared: &Shared) -> bool {
    let admin = &shared.settings.admin;
    if !admin.enabled {
        return false;
    }
    if !req.peer_addr().is_some_and(|a| a.ip().is_loopback()) {
        return false;
    }
    match &admin.token {
        None => true,
        Some(token) => req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|given| constant_time_eq(given.as_bytes(), token.as_bytes())),
    }
}

/// Compares without stopping at the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The answer to an admin request that is not allowed: as if the route did
/// not exist.
fn not_found() -> HttpResponse {
    HttpResponse::NotFound().json(ErrorEnvelope::new("not_found", "not found"))
}

/// `GET /healthz`: `ok`.
pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

/// `GET /`, `GET /sink/`.
pub(crate) async fn status(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    if !admin_allowed(&req, &shared) {
        return not_found();
    }
    let view = StatusView {
        counters: shared.counters(),
        faults: shared.faults(),
        transfers: shared.transfers(),
    };
    if wants_json(&req) {
        HttpResponse::Ok().json(view)
    } else {
        HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .body(html(&view))
    }
}

/// `GET /sink/faults`.
pub(crate) async fn get_faults(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    if !admin_allowed(&req, &shared) {
        return not_found();
    }
    HttpResponse::Ok().json(shared.faults())
}

/// `POST /sink/faults` with a JSON [`Faults`]: replaces the switches.
pub(crate) async fn set_faults(
    req: HttpRequest,
    payload: web::Payload,
    shared: web::Data<Shared>,
) -> HttpResponse {
    // Checked before the body is read: strangers learn nothing.
    if !admin_allowed(&req, &shared) {
        return not_found();
    }
    let body = match BodyReader::new(payload, &shared.settings.limits)
        .read_all(FAULTS_LIMIT)
        .await
    {
        Ok(b) => b,
        Err(r) => return r.response(),
    };
    let faults: Faults = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => {
            return HttpResponse::BadRequest().json(ErrorEnvelope::new(
                "bad_faults",
                format!("bad fault switches: {e}"),
            ))
        }
    };
    tracing::info!(?faults, "fault switches changed");
    shared.set_faults(faults.clone());
    HttpResponse::Ok().json(faults)
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn short(hash: &str) -> String {
    hash.chars().take(12).collect::<String>() + "…"
}

fn html(view: &StatusView) -> String {
    let mut out = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>alias-sink</title>\
         <style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}\
         td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left}\
         code{font-size:90%}</style></head><body><h1>alias-sink</h1>",
    );
    let c = &view.counters;
    let _ = write!(
        out,
        "<p>{} requests: {} starts, {} chunks ({} bytes) of {} chunk requests, {} HEAD, \
         {} file finishes, {} transfer finishes; {} injected failures, {} dropped, {} refused. \
         <a href=\"?format=json\">JSON</a></p>",
        c.requests,
        c.starts,
        c.chunks,
        c.chunk_bytes,
        c.chunk_requests,
        c.heads,
        c.file_finishes,
        c.transfer_finishes,
        c.injected_failures,
        c.dropped,
        c.rejected
    );
    let faults = serde_json::to_string(&view.faults).unwrap_or_default();
    let _ = write!(out, "<p>Faults: <code>{}</code></p>", escape(&faults));
    if view.transfers.is_empty() {
        out.push_str("<p>No transfer received yet.</p>");
    }
    for t in &view.transfers {
        let g = &t.grant;
        let state = if t.revoked {
            "revoked"
        } else if t.finished && t.finish_verified {
            "finished (verified)"
        } else if t.finished {
            "finished (unverified)"
        } else {
            "receiving"
        };
        let _ = write!(
            out,
            "<h2><code>{}</code></h2><p>{}; client {} ({}); user <code>{}</code>; \
             {} scopes; {} starts.</p>",
            escape(&t.id),
            state,
            escape(g.client_name.as_deref().unwrap_or("?")),
            escape(g.client_domain.as_deref().unwrap_or("?")),
            escape(&g.user),
            g.scopes,
            t.starts
        );
        if t.files.is_empty() {
            continue;
        }
        out.push_str("<table><tr><th>file</th><th>bytes</th><th>chunks</th><th>state</th><th>blake2b</th></tr>");
        for (name, f) in &t.files {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code title=\"{}\">{}</code></td></tr>",
                escape(name),
                f.size,
                f.chunks,
                if f.complete { "complete" } else { "partial" },
                escape(f.blake2b.as_deref().unwrap_or("")),
                escape(&f.blake2b.as_deref().map(short).unwrap_or_default()),
            );
        }
        out.push_str("</table>");
    }
    out.push_str("</body></html>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }

    #[test]
    fn escapes_html() {
        assert_eq!(
            escape("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }
}
