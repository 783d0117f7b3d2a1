//! Attacks on bounded state (issue 12, item 4 and attack 5): a self-made
//! key filling Redis with grants, oversized tokens, and `/metrics`
//! scanning the keyspace (the login and address attacks of the same item
//! are in `logins.rs`). Each goes through the real gateway (in this
//! process) against the local Redis and RabbitMQ.

use e2e::*;
use runtime::mq::{Queue, Route};
use serde_json::Value as Json;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const REDIS: &str = "redis://127.0.0.1:6379";

/// A contract of client `name` whose free-form `legal` text is `legal`.
fn contract_with_legal(name: &str, legal: &str) -> Value {
    contract_doc(client_decl(name, "127.0.0.1:9", &key(77)))
        .usage(legal)
        .contractual(group(&["my_activity.search"], &[]))
        .build()
}

async fn post_form(base: &str, path: &str, form: &[(&str, &str)]) -> (u16, Json) {
    let resp = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Json::Null))
}

async fn redis() -> redis::aio::MultiplexedConnection {
    redis::Client::open(REDIS)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// The Redis keys of a user's records (hash-tagged by the user).
fn user_keys(bank: &Bank, pk: &str) -> Vec<String> {
    [
        "contracts",
        "history",
        "contract_dates",
        "usage",
        "bind",
        "dumps",
    ]
    .iter()
    .map(|k| format!("{}:user:{{{pk}}}:{k}", bank.ns))
    .collect()
}

/// Bytes Redis uses for the user's records (`MEMORY USAGE`, all samples).
async fn memory_of(bank: &Bank, pk: &str) -> u64 {
    let mut conn = redis().await;
    let mut total = 0;
    for key in user_keys(bank, pk) {
        let used: Option<u64> = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(&key)
            .arg("SAMPLES")
            .arg(0)
            .query_async(&mut conn)
            .await
            .unwrap();
        total += used.unwrap_or(0);
    }
    total
}

async fn nothing_queued(bank: &Bank) {
    assert_eq!(
        bank.app
            .broker
            .queue_depth(Queue::Work(Route::Process))
            .await
            .unwrap(),
        0,
        "no job was queued"
    );
    assert!(
        bank.app.state.count_by_state().await.unwrap().is_empty(),
        "no transfer was created"
    );
}

#[actix_web::test]
async fn a_self_made_key_cannot_fill_redis_with_grants() {
    let bank = Bank::new("aq", &[]).await;
    let attacker = user(201);
    let pk = user_pk(&attacker);
    // Anyone can bind a key of their own making.
    let bind = bind_token(&attacker);
    let (status, body) = post_form(&bank.base, "/alias/bind", &[("bind", &bind)]).await;
    assert_eq!(status, 200, "{body}");

    // Grants for ever new contracts, each with ~60 KB of legal text (under
    // the 64 KiB token limit).
    let mut accepted = 0;
    let mut refused = 0;
    for n in 0..40 {
        let legal = format!("{n:04}{}", "x".repeat(60_000));
        let contract = contract_with_legal(&format!("Filler {n}"), &legal);
        let grant = grant_at(&attacker, &contract, now());
        let (status, body) = post_form(&bank.base, "/alias/grants", &[("grant", &grant)]).await;
        if status == 200 {
            assert_eq!(refused, 0, "accepted after a refusal");
            accepted += 1;
        } else {
            assert_eq!(status, 413, "{}", body["code"]);
            assert_eq!(body["code"], "quota_exceeded");
            assert_eq!(body["quota"], "grant_bytes");
            refused += 1;
        }
    }
    assert!(accepted > 0, "real grants fit");
    assert!(refused > 0, "the grant quota stopped the attacker");
    // Newer grants of a contract it holds: each replaces the last, and the
    // history keeps only what fits its budget.
    let contract = contract_with_legal("Filler 0", &format!("0000{}", "x".repeat(60_000)));
    for i in 0..40 {
        let grant = grant_at(&attacker, &contract, now() + f64::from(i));
        let (status, body) = post_form(&bank.base, "/alias/grants", &[("grant", &grant)]).await;
        assert_eq!(status, 200, "{}", body["code"]);
    }
    let history = bank.app.state.grant_history(&pk).await.unwrap();
    let history_bytes: usize = history.iter().map(String::len).sum();
    assert!(history_bytes <= 1 << 20, "history of {history_bytes} bytes");

    // 40 contracts and 40 more grants of ~60 KB each would be ~4.8 MB of
    // Redis; the quotas keep it to about twice the 1 MiB grant budget.
    let used = memory_of(&bank, &pk).await;
    eprintln!("the attacker's records use {used} bytes of Redis ({accepted} grants accepted, {refused} refused)");
    assert!(
        used < 3 << 20,
        "the attacker's keys use {used} bytes of Redis"
    );
    // A guest (no account, no dump): everything it left expires.
    let mut conn = redis().await;
    for key in user_keys(&bank, &pk) {
        let exists: bool = redis::cmd("EXISTS")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        if exists {
            let ttl: i64 = redis::cmd("PTTL")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .unwrap();
            assert!(ttl > 0, "{key} has no TTL ({ttl})");
        }
    }
    nothing_queued(&bank).await;
    bank.cleanup().await;
}

#[actix_web::test]
async fn many_small_contracts_stop_at_the_contract_quota() {
    let bank = Bank::new("aq", &[("ALIAS_QUOTA_CONTRACTS", "5")]).await;
    let attacker = user(202);
    let pk = user_pk(&attacker);
    let bind = bind_token(&attacker);
    let (status, _) = post_form(&bank.base, "/alias/bind", &[("bind", &bind)]).await;
    assert_eq!(status, 200);
    for n in 0..8 {
        let contract = contract_with_legal(&format!("Small {n}"), "tiny");
        let grant = grant_at(&attacker, &contract, now());
        let (status, body) = post_form(&bank.base, "/alias/grants", &[("grant", &grant)]).await;
        if n < 5 {
            assert_eq!(status, 200, "{}", body["code"]);
        } else {
            assert_eq!(status, 409, "{}", body["code"]);
            assert_eq!(body["code"], "quota_exceeded");
            assert_eq!(body["quota"], "contracts");
            assert_eq!(body["limit"], 5);
        }
    }
    assert_eq!(bank.app.state.contracts_of(&pk).await.unwrap().len(), 5);
    assert_eq!(bank.app.state.grant_history(&pk).await.unwrap().len(), 5);
    nothing_queued(&bank).await;
    bank.cleanup().await;
}

#[actix_web::test]
async fn oversized_tokens_are_refused_with_413() {
    let bank = Bank::new("aq", &[]).await;
    let attacker = user(203);
    let pk = user_pk(&attacker);
    let bind = bind_token(&attacker);
    let (status, _) = post_form(&bank.base, "/alias/bind", &[("bind", &bind)]).await;
    assert_eq!(status, 200);
    // 100 KB of legal text: over the default 64 KiB token limit (and the
    // reference client's 100 KB start body).
    let contract = contract_with_legal("Big", &"y".repeat(100_000));
    let grant = grant_at(&attacker, &contract, now());
    for path in ["/alias/grants", "/alias/process"] {
        let (status, body) = post_form(&bank.base, path, &[("grant", &grant)]).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (413, Some("too_large")),
            "{path}: {}",
            body["reason"]
        );
    }
    // A body far over the limit is cut off before it is read.
    let resp = reqwest::Client::new()
        .post(format!("{}/alias/grants", bank.base))
        .body("z".repeat(4 << 20))
        .send()
        .await;
    if let Ok(resp) = resp {
        assert_eq!(resp.status().as_u16(), 413);
    }
    assert!(bank.app.state.grant_history(&pk).await.unwrap().is_empty());
    assert!(bank.app.state.contracts_of(&pk).await.unwrap().is_empty());
    nothing_queued(&bank).await;
    bank.cleanup().await;
}

// ---- metrics ----------------------------------------------------------------

/// Watches Redis `MONITOR` for the commands that mention `needle`.
struct Monitor {
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    conn: redis::aio::MultiplexedConnection,
    needle: String,
}

impl Monitor {
    async fn start(needle: &str) -> Monitor {
        let stream = tokio::net::TcpStream::connect("127.0.0.1:6379")
            .await
            .unwrap();
        let (read, mut write) = stream.into_split();
        write.write_all(b"MONITOR\r\n").await.unwrap();
        let mut reader = BufReader::new(read).lines();
        assert_eq!(reader.next_line().await.unwrap().as_deref(), Some("+OK"));
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        let filter = needle.to_owned();
        tokio::spawn(async move {
            let _keep = write;
            while let Ok(Some(line)) = reader.next_line().await {
                if line.contains(&filter) && tx.send(line).is_err() {
                    return;
                }
            }
        });
        Monitor {
            lines,
            conn: redis().await,
            needle: needle.to_owned(),
        }
    }

    /// The commands seen until now (a marker command ends the batch).
    async fn seen(&mut self) -> Vec<String> {
        let marker = format!("{}:marker:{}", self.needle, uuid::Uuid::new_v4().simple());
        let _: Option<String> = redis::cmd("GET")
            .arg(&marker)
            .query_async(&mut self.conn)
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut out = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = tokio::time::timeout(left, self.lines.recv())
                .await
                .expect("the marker in time")
                .unwrap();
            if line.contains(&marker) {
                return out;
            }
            out.push(line);
        }
    }
}

fn scans(lines: &[String]) -> Vec<&String> {
    lines
        .iter()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("\"scan\"") || l.contains("\"keys\"")
        })
        .collect()
}

#[actix_web::test]
async fn metrics_never_scan_the_keyspace() {
    let bank = Bank::new("aq", &[]).await;
    // A few users with dumps and running transfers (no processor runs:
    // they stay accepted).
    for seed in 0..3u8 {
        let u = user(210 + seed);
        give_dump(&bank, &u, 20_000, u64::from(seed)).await;
        let contract = contract_with_legal(&format!("Metrics {seed}"), "m");
        let (status, body) = process_async(&bank.base, &grant_at(&u, &contract, now())).await;
        assert_eq!(status, 202, "{body}");
    }
    let mut monitor = Monitor::start(&bank.ns).await;
    // The detector sees a scan of this namespace.
    let mut conn = redis().await;
    let _: (u64, Vec<String>) = redis::cmd("SCAN")
        .arg(0)
        .arg("MATCH")
        .arg(format!("{}:transfer:*", bank.ns))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(scans(&monitor.seen().await).len(), 1, "the detector works");

    let text = reqwest::get(format!("{}/metrics", bank.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("alias_transfers{state=\"accepted\"} 3"),
        "the gauges are right:\n{text}"
    );
    let seen = monitor.seen().await;
    assert!(
        scans(&seen).is_empty(),
        "/metrics scanned: {:?}",
        scans(&seen)
    );
    assert!(!seen.is_empty(), "/metrics read the state indexes");
    bank.cleanup().await;
}
