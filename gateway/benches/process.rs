//! Gateway throughput against the real local Redis and RabbitMQ: accepted
//! `POST /alias/process` per second (async mode; every request a new grant
//! of a new contract, so each one verifies the user's signature and the
//! client's declaration (one declaration for all the contracts, signed once
//! as a client does: the gateway verifies it once), applies the policy,
//! stores the grant, creates a transfer and publishes a confirmed
//! persistent job), beside `GET /alias/` on the same server and a bare
//! RabbitMQ publish-with-confirm loop (the same publisher, the same number
//! of publishes in flight, and one at a time), in the same run.
//!
//! Each request is a different user's (bound beforehand, untimed): a user
//! holds one contract, as a contract serves one user.
//!
//! `cargo bench -p alias-gateway --bench process [-- REQUESTS CONCURRENCY [DISTINCT]]`
//! (`DISTINCT` = 1: a new client declaration in every contract, so the
//! gateway verifies two signatures per request).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use futures_util::stream::{self, StreamExt};
use protocol::alias::build::{
    bind_authz_body, group, scope, signed_grant, ClientDeclDoc, ContractDoc,
};
use protocol::anychain::{sign, signing_key_from_seed, to_token, Value};
use runtime::config::Config;
use std::time::Instant;

/// A client's signed declaration (a client signs it once and puts it in
/// every contract).
fn client_decl(name: &str) -> Value {
    let client_key = signing_key_from_seed(&[1; 32]);
    ClientDeclDoc::new(name, "client.example")
        .sign(&client_key, 1_574_158_519_000.0)
        .unwrap()
}

fn contract(i: usize, client: &Value) -> Value {
    ContractDoc::new(client.clone())
        .usage(&format!("benchmark {i}"))
        .legal("storage_duration", "1 year")
        .contractual(group([scope("google", "my_activity.search")], &[]))
        .consent(group(
            [
                scope("google", "youtube.watch_history"),
                scope("google", "chrome.history"),
            ],
            &[],
        ))
        .build()
}

async fn rate(
    http: &reqwest::Client,
    n: usize,
    concurrency: usize,
    make: impl Fn(usize) -> reqwest::RequestBuilder,
    want: reqwest::StatusCode,
) -> f64 {
    let requests: Vec<_> = (0..n).map(&make).collect();
    let _ = http;
    let started = Instant::now();
    let ok = stream::iter(requests)
        .map(|r| async move { r.send().await.map(|resp| resp.status()) })
        .buffer_unordered(concurrency)
        .filter(|s| std::future::ready(matches!(s, Ok(s) if *s == want)))
        .count()
        .await;
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(ok, n, "only {ok} of {n} requests answered {want}");
    n as f64 / secs
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = args.first().copied().unwrap_or(2000);
    let concurrency = args.get(1).copied().unwrap_or(32);
    let distinct = args.get(2).copied().unwrap_or(0) == 1;
    actix_web::rt::System::new().block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let ns = format!("bench{}", uuid::Uuid::new_v4().simple());
        let config = Config::from_pairs(&[
            ("ALIAS_NAMESPACE", ns.as_str()),
            ("ALIAS_STORAGE_URL", dir.path().to_str().unwrap()),
            ("ALIAS_LISTEN", "127.0.0.1:0"),
            ("ALIAS_PUBLIC_ORIGIN", "http://bank.test"),
            ("ALIAS_RATE_PER_SEC", "100000000"),
        ])
        .unwrap();
        let (app, addr) = gateway::spawn(config).await.unwrap();
        let base = format!("http://{addr}");
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(concurrency)
            .build()
            .unwrap();

        let user_key = |i: usize| {
            let mut seed = [2u8; 32];
            seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
            signing_key_from_seed(&seed)
        };
        eprintln!("binding {n} users…");
        let now = runtime::state::now_ms() as f64;
        let bound = stream::iter(0..n)
            .map(|i| {
                let bind = to_token(
                    &sign(&user_key(i), bind_authz_body("http://bank.test"), now).unwrap(),
                );
                http.post(format!("{base}/alias/bind"))
                    .json(&serde_json::json!({"bind": bind}))
                    .send()
            })
            .buffer_unordered(concurrency)
            .filter(|r| std::future::ready(r.as_ref().is_ok_and(|r| r.status().is_success())))
            .count()
            .await;
        assert_eq!(bound, n, "every user bound");
        eprintln!("signing {n} grants…");
        let shared = client_decl("Bench client");
        let grants: Vec<String> = (0..n)
            .map(|i| {
                let client = if distinct {
                    client_decl(&format!("Bench client {i}"))
                } else {
                    shared.clone()
                };
                let consent = vec![vec![true, false]];
                let grant = signed_grant(&user_key(i), &contract(i, &client), consent, vec![], now);
                to_token(&grant.unwrap())
            })
            .collect();

        // Warm-up (connections, JIT of nothing, Redis scripts loaded).
        rate(
            &http,
            200,
            concurrency,
            |_| http.get(format!("{base}/alias/")),
            reqwest::StatusCode::OK,
        )
        .await;
        let discovery = rate(
            &http,
            n * 5,
            concurrency,
            |_| http.get(format!("{base}/alias/")),
            reqwest::StatusCode::OK,
        )
        .await;
        let process = rate(
            &http,
            n,
            concurrency,
            |i| {
                http.post(format!("{base}/alias/process"))
                    .header("Prefer", "respond-async")
                    .json(&serde_json::json!({"grant": grants[i]}))
            },
            reqwest::StatusCode::ACCEPTED,
        )
        .await;
        let queued = app
            .broker
            .queue_depth(runtime::mq::Queue::Work(runtime::mq::Route::Process))
            .await
            .unwrap();
        // RabbitMQ alone: the same persistent, confirmed publishes of a job
        // of the same size, through the same publisher, as many in flight as
        // requests above, then one at a time.
        let body = serde_json::to_vec(&serde_json::json!({
            "transfer": "x".repeat(86), "generation": 1,
        }))
        .unwrap();
        let confirmed = |in_flight: usize| {
            let broker = app.broker.clone();
            let body = body.clone();
            async move {
                let started = Instant::now();
                stream::iter(0..n)
                    .map(|i| {
                        let broker = broker.clone();
                        let body = body.clone();
                        async move {
                            broker
                                .publish(
                                    runtime::mq::Route::Process,
                                    &body,
                                    &format!("bare-{in_flight}-{i}"),
                                )
                                .await
                                .unwrap();
                        }
                    })
                    .buffer_unordered(in_flight)
                    .count()
                    .await;
                n as f64 / started.elapsed().as_secs_f64()
            }
        };
        let bare = confirmed(concurrency).await;
        let serial = confirmed(1).await;
        println!();
        let decls = if distinct {
            "a new client declaration each"
        } else {
            "one client declaration"
        };
        println!("| measure (concurrency {concurrency}, {decls}) | requests/s |");
        println!("|---|---|");
        println!("| baseline: GET /alias/ | {discovery:.0} |");
        println!("| POST /alias/process accepted (async, new grant each) | {process:.0} |");
        println!("| ratio process / discovery | {:.3} |", process / discovery);
        println!(
            "| baseline: RabbitMQ publish with confirm, {concurrency} in flight | {bare:.0} |"
        );
        println!(
            "| ratio process / RabbitMQ ({concurrency} in flight) | {:.3} |",
            process / bare
        );
        println!("| RabbitMQ publish with confirm, one at a time | {serial:.0} |");
        println!("| jobs queued | {queued} (of {n}) |");
        app.broker.delete_topology().await;
        app.state.purge_namespace().await.unwrap();
    });
}
