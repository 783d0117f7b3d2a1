//! Gateway throughput against the real local Redis and RabbitMQ: accepted
//! `POST /alias/process` per second (async mode; every request a new grant,
//! so each one validates two signatures, applies the policy, stores the
//! grant, creates a transfer and publishes a confirmed persistent job),
//! beside `GET /alias/` on the same server in the same run.
//!
//! `cargo bench -p alias-gateway --bench process [-- REQUESTS CONCURRENCY]`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use futures_util::stream::{self, StreamExt};
use protocol::alias::build::{
    bind_authz_body, group, scope, signed_grant, ClientDeclDoc, ContractDoc,
};
use protocol::anychain::{sign, signing_key_from_seed, to_token, Value};
use runtime::config::Config;
use std::time::Instant;

fn contract(i: usize) -> Value {
    let client_key = signing_key_from_seed(&[1; 32]);
    let client = ClientDeclDoc::new(format!("Client {i}"), "client.example")
        .sign(&client_key, 1_574_158_519_000.0)
        .unwrap();
    ContractDoc::new(client)
        .usage("benchmark")
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

        let user = signing_key_from_seed(&[2; 32]);
        let bind = to_token(
            &sign(
                &user,
                bind_authz_body("http://bank.test"),
                runtime::state::now_ms() as f64,
            )
            .unwrap(),
        );
        let r = http
            .post(format!("{base}/alias/bind"))
            .json(&serde_json::json!({"bind": bind}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        eprintln!("signing {n} grants…");
        let now = runtime::state::now_ms() as f64;
        let grants: Vec<String> = (0..n)
            .map(|i| {
                let grant = signed_grant(&user, &contract(i), vec![vec![true, false]], vec![], now);
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
        println!();
        println!("| measure (concurrency {concurrency}) | requests/s |");
        println!("|---|---|");
        println!("| baseline: GET /alias/ | {discovery:.0} |");
        println!("| POST /alias/process accepted (async, new grant each) | {process:.0} |");
        println!("| ratio process / discovery | {:.3} |", process / discovery);
        println!("| jobs queued | {queued} (of {n}) |");
        app.broker.delete_topology().await;
        app.state.purge_namespace().await.unwrap();
    });
}
