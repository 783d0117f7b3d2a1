//! `aliasctl` against a hostile gateway (a small actix server of this
//! test): endless and huge replies, an endless event, terminal escapes in
//! reasons and values, stalled replies. Each ends in a bounded time with an
//! error, or with inert output.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix_web::web::{self, Bytes};
use actix_web::{App, HttpResponse, HttpServer};
use futures_util::stream;
use tokio::process::Command;

/// Bytes the hostile gateway sent in bodies.
#[derive(Default)]
struct Sent(AtomicU64);

/// An endless body of `piece`s, counted.
fn endless(sent: web::Data<Sent>, first: &'static [u8], piece: Bytes) -> HttpResponse {
    let head = stream::once(async move { Ok::<_, actix_web::Error>(Bytes::from_static(first)) });
    let tail = stream::unfold((sent, piece), |(sent, piece)| async move {
        sent.0.fetch_add(piece.len() as u64, Ordering::Relaxed);
        Some((Ok::<_, actix_web::Error>(piece.clone()), (sent, piece)))
    });
    HttpResponse::Ok()
        .content_type("application/json")
        .streaming(futures_util::StreamExt::chain(head, tail))
}

const EVIL: &str = "\u{1b}]52;c;ZXZpbA==\u{7}\r\u{1b}[2Kdone, verified \u{9b}31m\u{202e}";

async fn hostile(sent: web::Data<Sent>, path: web::Path<String>) -> HttpResponse {
    let mib = Bytes::from(vec![b' '; 1 << 20]);
    match path.as_str() {
        // A JSON reply that never ends.
        "huge" => endless(sent, b"{\"state\":\"", mib),
        // One that announces 3 GB.
        "announced" => HttpResponse::Ok()
            .content_type("application/json")
            .no_chunking(3_000_000_000)
            .streaming(stream::pending::<Result<Bytes, actix_web::Error>>()),
        // An event stream whose first event never ends.
        "endless/events" => {
            let x = Bytes::from(vec![b'x'; 64 << 10]);
            HttpResponse::Ok()
                .content_type("text/event-stream")
                .streaming(futures_util::StreamExt::chain(
                    stream::once(async {
                        Ok::<_, actix_web::Error>(Bytes::from_static(b"data: "))
                    }),
                    stream::unfold((sent, x), |(sent, x)| async move {
                        sent.0.fetch_add(x.len() as u64, Ordering::Relaxed);
                        Some((Ok::<_, actix_web::Error>(x.clone()), (sent, x)))
                    }),
                ))
        }
        // Escapes in a refusal's reason, and in the values of a status.
        "evil" => HttpResponse::BadRequest().json(serde_json::json!({
            "status": "error", "code": "x", "reason": EVIL,
        })),
        "evil-status" => HttpResponse::Ok().json(serde_json::json!({
            "state": EVIL, "notes": [EVIL], "files": [{"name": EVIL}],
        })),
        "evil/events" => {
            let event = format!(
                "event: status\ndata: {}\n\n",
                serde_json::json!({"state": EVIL, "reason": EVIL})
            );
            HttpResponse::Ok()
                .content_type("text/event-stream")
                .body(event)
        }
        // Headers, then nothing.
        "stall" | "stall/events" => HttpResponse::Ok()
            .content_type("application/json")
            .streaming(stream::pending::<Result<Bytes, actix_web::Error>>()),
        // No answer at all.
        "silent" => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            HttpResponse::Ok().finish()
        }
        _ => HttpResponse::NotFound().finish(),
    }
}

/// The hostile gateway: its base URL and its byte counter.
fn gateway() -> (String, web::Data<Sent>) {
    let sent = web::Data::new(Sent::default());
    let data = sent.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route(
                "/alias/",
                web::get().to(|| async {
                    HttpResponse::Ok().json(serde_json::json!({"origin": "http://hostile"}))
                }),
            )
            .route(
                "/alias/dumps",
                web::get().to(|sent: web::Data<Sent>| async move {
                    endless(sent, b"[", Bytes::from(vec![b' '; 1 << 20]))
                }),
            )
            .route("/alias/transfers/{tail:.*}", web::get().to(hostile))
    })
    .workers(1)
    .disable_signals()
    .bind("127.0.0.1:0")
    .unwrap();
    let addr = server.addrs()[0];
    actix_web::rt::spawn(server.run());
    (format!("http://{addr}"), sent)
}

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
    took: Duration,
}

async fn aliasctl(args: &[&str]) -> Run {
    let t0 = Instant::now();
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new(env!("CARGO_BIN_EXE_aliasctl"))
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("aliasctl did not end in 60 s")
    .unwrap();
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: t0.elapsed(),
    }
}

/// Whether text could drive a terminal.
fn raw_controls(text: &str) -> bool {
    text.chars()
        .any(|c| (c.is_control() && c != '\n') || ('\u{202a}'..='\u{202e}').contains(&c))
}

#[actix_web::test]
async fn huge_replies_are_refused_at_the_limit() {
    let (gw, sent) = gateway();
    let r = aliasctl(&[
        "transfer",
        "status",
        "--gateway",
        &gw,
        "--max-reply",
        "4000000",
        "huge",
    ])
    .await;
    assert!(!r.ok);
    assert!(
        r.stderr.contains("larger than 4000000 bytes"),
        "{}",
        r.stderr
    );
    // It stopped reading near the limit (the server may run ahead by what
    // the socket buffers hold).
    assert!(
        sent.0.load(Ordering::Relaxed) < 64 << 20,
        "{} bytes read",
        sent.0.load(Ordering::Relaxed)
    );

    let r = aliasctl(&["transfer", "status", "--gateway", &gw, "announced"]).await;
    assert!(!r.ok);
    assert!(
        r.stderr.contains("3000000000 bytes is larger"),
        "{}",
        r.stderr
    );

    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("user.key");
    let key = key.to_str().unwrap();
    assert!(aliasctl(&["keygen", "--out", key]).await.ok);
    let before = sent.0.load(Ordering::Relaxed);
    let r = aliasctl(&[
        "dump",
        "list",
        "--key",
        key,
        "--gateway",
        &gw,
        "--max-reply",
        "2000000",
    ])
    .await;
    assert!(!r.ok);
    assert!(
        r.stderr.contains("larger than 2000000 bytes"),
        "{}",
        r.stderr
    );
    assert!(sent.0.load(Ordering::Relaxed) - before < 64 << 20);
}

#[actix_web::test]
async fn an_endless_event_is_refused_at_the_limit() {
    let (gw, sent) = gateway();
    let r = aliasctl(&[
        "transfer",
        "watch",
        "--quiet",
        "--gateway",
        &gw,
        "--max-event",
        "8000000",
        "endless",
    ])
    .await;
    assert!(!r.ok);
    assert!(
        r.stderr.contains("larger than 8000000 bytes"),
        "{}",
        r.stderr
    );
    assert!(sent.0.load(Ordering::Relaxed) < 64 << 20);
}

#[actix_web::test]
async fn escapes_from_the_server_never_reach_the_terminal() {
    let (gw, _) = gateway();
    let r = aliasctl(&["transfer", "status", "--gateway", &gw, "evil"]).await;
    assert!(!r.ok);
    assert!(!raw_controls(&r.stderr), "{:?}", r.stderr);
    assert!(r.stderr.contains("\\u{1b}]52;c;ZXZpbA=="), "{}", r.stderr);

    for args in [
        vec!["transfer", "status", "--gateway", &gw, "evil-status"],
        vec!["transfer", "watch", "--quiet", "--gateway", &gw, "evil"],
    ] {
        let r = aliasctl(&args).await;
        assert!(!raw_controls(&r.stdout), "{args:?}: {:?}", r.stdout);
        assert!(!raw_controls(&r.stderr), "{args:?}: {:?}", r.stderr);
        // Still JSON, with the values intact.
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(v["state"], EVIL, "{args:?}");
    }
}

#[actix_web::test]
async fn stalled_replies_time_out() {
    let (gw, _) = gateway();
    for args in [
        vec![
            "transfer",
            "status",
            "--gateway",
            &gw,
            "--http-timeout",
            "2",
            "stall",
        ],
        vec![
            "transfer",
            "status",
            "--gateway",
            &gw,
            "--http-timeout",
            "2",
            "silent",
        ],
        vec![
            "transfer",
            "watch",
            "--quiet",
            "--gateway",
            &gw,
            "--http-timeout",
            "2",
            "stall",
        ],
    ] {
        let r = aliasctl(&args).await;
        assert!(!r.ok, "{args:?}");
        assert!(
            r.took < Duration::from_secs(20),
            "{args:?} took {:?}",
            r.took
        );
        assert!(
            r.stderr.contains("no answer within")
                || r.stderr.contains("sent nothing for")
                || r.stderr.contains("took longer than"),
            "{args:?}: {}",
            r.stderr
        );
    }
}
