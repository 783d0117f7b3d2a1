//! What the sink received, for people (`GET /`, `GET /sink/`: HTML) and
//! programs (`?format=json`), and the runtime fault switches
//! (`GET`/`POST /sink/faults`).

use std::fmt::Write as _;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

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

/// `GET /`, `GET /sink/`.
pub(crate) async fn status(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
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
pub(crate) async fn get_faults(shared: web::Data<Shared>) -> HttpResponse {
    HttpResponse::Ok().json(shared.faults())
}

/// `POST /sink/faults` with a JSON [`Faults`]: replaces the switches.
pub(crate) async fn set_faults(
    faults: web::Json<Faults>,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let faults = faults.into_inner();
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
    fn escapes_html() {
        assert_eq!(
            escape("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }
}
