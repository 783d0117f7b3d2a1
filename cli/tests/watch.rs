//! `aliasctl transfer watch` through a gateway that is unavailable for a
//! while (as during a Redis restart): a tiny local server plays the
//! gateway's events endpoint from a script of answers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use aliasctl::net::HttpLimits;
use aliasctl::ops::watch_retrying;
use runtime::retry::RetryPolicy;
use tokio::process::Command;

/// One answer of the scripted gateway.
#[derive(Clone, Copy)]
enum Reply {
    /// `503` with the error envelope, as the gateway answers without Redis.
    Unavailable,
    /// `404`, as for a transfer the caller may not see.
    NotFound,
    /// An events stream of these states, then its end.
    Stream(&'static [&'static str]),
}

struct Script {
    replies: Vec<Reply>,
    hits: AtomicUsize,
}

async fn events(script: web::Data<Script>) -> HttpResponse {
    let n = script.hits.fetch_add(1, Ordering::SeqCst);
    let reply = script
        .replies
        .get(n)
        .or(script.replies.last())
        .copied()
        .unwrap();
    match reply {
        Reply::Unavailable => HttpResponse::ServiceUnavailable().json(
            serde_json::json!({"status": "error", "reason": "state store unavailable", "code": "unavailable"}),
        ),
        Reply::NotFound => HttpResponse::NotFound().finish(),
        Reply::Stream(states) => {
            let body: String = states
                .iter()
                .map(|s| {
                    let status = serde_json::json!({"state": s, "bytes_done": 1, "bytes_total": 2});
                    format!("event: status\ndata: {status}\n\n")
                })
                .collect();
            HttpResponse::Ok()
                .content_type("text/event-stream")
                .body(body)
        }
    }
}

/// Serves `replies` in order (the last one again once they are spent).
fn gateway(replies: Vec<Reply>) -> (SocketAddr, Arc<Script>) {
    let script = web::Data::new(Script {
        replies,
        hits: AtomicUsize::new(0),
    });
    let shared = script.clone().into_inner();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(script.clone())
            .route("/alias/transfers/{id}/events", web::get().to(events))
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let addr = server.addrs()[0];
    actix_web::rt::spawn(server.run());
    (addr, shared)
}

/// Watches transfer `T1` at `addr` in-process, quietly, under a quick
/// policy of `max_attempts` tries.
async fn watch_quick(addr: SocketAddr, max_attempts: u32) -> anyhow::Result<serde_json::Value> {
    let policy = RetryPolicy {
        base: Duration::from_millis(5),
        cap: Duration::from_millis(40),
        max_attempts,
        max_elapsed: Duration::from_secs(30),
    };
    let gateway = format!("http://{addr}");
    watch_retrying(&gateway, "T1", None, false, &HttpLimits::default(), policy).await
}

#[actix_web::test]
async fn watch_keeps_following_through_503s_and_says_so() {
    let (addr, script) = gateway(vec![
        Reply::Unavailable,
        Reply::Unavailable,
        Reply::Unavailable,
        Reply::Stream(&["pushing", "done"]),
    ]);
    let out = Command::new(env!("CARGO_BIN_EXE_aliasctl"))
        .args([
            "transfer",
            "watch",
            "--quiet",
            "--gateway",
            &format!("http://{addr}"),
            "T1",
        ])
        .env_remove("ALIAS_OPERATOR_TOKEN")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let last: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(last["state"], "done");
    assert_eq!(script.hits.load(Ordering::SeqCst), 4);
    let said: Vec<&str> = stderr.lines().filter(|l| l.contains("503")).collect();
    assert_eq!(said.len(), 3, "one line per retry: {stderr}");
    assert!(said[0].contains("following T1 again in"), "{stderr}");
}

#[actix_web::test]
async fn a_refusal_or_a_stream_that_ends_is_not_retried() {
    let (addr, script) = gateway(vec![Reply::NotFound]);
    let err = watch_quick(addr, 8).await.unwrap_err();
    assert!(err.to_string().starts_with("404"), "{err:#}");
    assert_eq!(script.hits.load(Ordering::SeqCst), 1);

    // A stream that ends before the transfer did gives its last status, as
    // a one-shot `follow` does.
    let (addr, script) = gateway(vec![Reply::Stream(&["processing", "pushing"])]);
    let last = watch_quick(addr, 8).await.unwrap();
    assert_eq!(last["state"], "pushing");
    assert_eq!(script.hits.load(Ordering::SeqCst), 1);
}

#[actix_web::test]
async fn an_outage_longer_than_the_policy_ends_the_watch() {
    let (addr, script) = gateway(vec![Reply::Unavailable]);
    let err = watch_quick(addr, 3).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("gave up following T1 after 3 tries"),
        "{err:#}"
    );
    assert_eq!(script.hits.load(Ordering::SeqCst), 3);
}
