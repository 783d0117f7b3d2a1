//! Attacks on bounded state (issue 12, item 4 and attack 5): a self-made
//! key filling Redis with grants, oversized tokens, a stranger locking a
//! user out by failing logins, forged `X-Forwarded-For`, and `/metrics`
//! scanning the keyspace. Each goes through the real gateway (in this
//! process) against the local Redis and RabbitMQ.

use e2e::*;
use protocol::alias::login_body;
use protocol::anychain::{b64u_decode, b64u_encode, sign, to_token, SigningKey};
use runtime::mq::{Queue, Route};
use serde_json::{json, Value as Json};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const REDIS: &str = "redis://127.0.0.1:6379";

/// A contract of client `name` whose free-form `legal` text is `legal`.
fn contract_with_legal(name: &str, legal: &str) -> Value {
    ContractDoc::new(client_decl(name, "127.0.0.1:9", &key(77)))
        .legal(legal)
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

/// The Redis keys of a user's records.
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
    .map(|k| format!("{}:user:{pk}:{k}", bank.ns))
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

// ---- login throttling ---------------------------------------------------

/// A browser: its session and device cookies, and the address its proxy
/// reports (`X-Forwarded-For`, believed from the trusted loopback).
struct Browser {
    http: reqwest::Client,
    base: String,
    addr: String,
    session: Option<String>,
    device: Option<String>,
    csrf: String,
}

impl Browser {
    fn new(bank: &Bank, addr: &str) -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: bank.base.clone(),
            addr: addr.to_owned(),
            session: None,
            device: None,
            csrf: String::new(),
        }
    }

    fn request(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let mut cookies = Vec::new();
        if let Some(s) = &self.session {
            cookies.push(format!("alias_session={s}"));
        }
        if let Some(d) = &self.device {
            cookies.push(format!("alias_device={d}"));
        }
        let req = req.header("x-forwarded-for", &self.addr);
        if cookies.is_empty() {
            req
        } else {
            req.header("cookie", cookies.join("; "))
        }
    }

    fn keep(&mut self, resp: &reqwest::Response) {
        for v in resp.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let value = || {
                v.split(';')
                    .next()
                    .unwrap()
                    .split_once('=')
                    .unwrap()
                    .1
                    .to_owned()
            };
            if v.starts_with("alias_session=") {
                self.session = Some(value());
            } else if v.starts_with("alias_device=") {
                self.device = Some(value());
            }
        }
    }

    async fn open(&mut self, path: &str) {
        let resp = self
            .request(self.http.get(format!("{}{path}", self.base)))
            .send()
            .await
            .unwrap();
        self.keep(&resp);
        let html = resp.text().await.unwrap();
        let marker = "name=\"csrf-token\" content=\"";
        // A logged-in browser is sent on from the login page: it keeps the
        // CSRF token of its session.
        if let Some(at) = html.find(marker).map(|at| at + marker.len()) {
            self.csrf = html[at..at + html[at..].find('"').unwrap()].to_owned();
        }
    }

    async fn post(&mut self, path: &str, body: Json) -> (u16, Json) {
        let resp = self
            .request(self.http.post(format!("{}{path}", self.base)))
            .header("x-csrf-token", &self.csrf)
            .json(&body)
            .send()
            .await
            .unwrap();
        self.keep(&resp);
        let status = resp.status().as_u16();
        let body: Json = resp.json().await.unwrap_or(Json::Null);
        if let Some(csrf) = body["csrf"].as_str() {
            self.csrf = csrf.to_owned();
        }
        (status, body)
    }
}

/// What a browser derives from a password, stood in for by fixed bytes.
struct Account {
    username: String,
    key: SigningKey,
    verifier: Vec<u8>,
}

impl Account {
    fn answer(&self, challenge: &Json) -> String {
        let challenge = b64u_decode(challenge.as_str().unwrap()).unwrap();
        to_token(&sign(&self.key, login_body(&challenge, ORIGIN), now()).unwrap())
    }

    async fn signup(&self, browser: &mut Browser) {
        browser.open("/signup").await;
        let (status, begun) = browser
            .post("/web/signup/begin", json!({"username": self.username}))
            .await;
        assert_eq!(status, 200, "{begun}");
        let record = json!({
            "username": self.username,
            "salt": b64u_encode(&[5; 16]),
            "pwhash": {"alg": "argon2id13", "opslimit": 2, "memlimit": 67_108_864},
            "box": format!("{{\"__box\":\"{}\"}}", b64u_encode(&[7u8; 120])),
            "publicPwdHash": b64u_encode(&self.verifier),
            "publicKey": b64u_encode(self.key.verifying_key().as_bytes()),
        });
        let (status, body) = browser
            .post(
                "/web/signup",
                json!({"record": record, "bind": bind_token(&self.key), "login": self.answer(&begun["challenge"])}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }

    /// Logs in with `verifier` (the right one or a guess); the status of
    /// the step that ended it.
    async fn login(&self, browser: &mut Browser, verifier: &[u8]) -> (u16, Json) {
        browser.open("/login").await;
        let v = b64u_encode(verifier);
        let (status, begun) = browser
            .post(
                "/web/login/begin",
                json!({"username": self.username, "verifier": v}),
            )
            .await;
        if status != 200 {
            return (status, begun);
        }
        browser
            .post(
                "/web/login/finish",
                json!({"username": self.username, "verifier": v, "login": self.answer(&begun["challenge"])}),
            )
            .await
    }
}

#[actix_web::test]
async fn a_strangers_failed_logins_do_not_lock_out_the_user() {
    // Behind an ingress on loopback: X-Forwarded-For names the addresses.
    let bank = Bank::new("aq", &[("ALIAS_TRUSTED_PROXIES", "127.0.0.0/8")]).await;
    let owner = Account {
        username: "victim".into(),
        key: user(204),
        verifier: vec![42; 32],
    };
    let mut laptop = Browser::new(&bank, "203.0.113.10");
    owner.signup(&mut laptop).await;
    let (status, body) = owner.login(&mut laptop, &owner.verifier).await;
    assert_eq!(status, 200, "{body}");
    assert!(laptop.device.is_some(), "a device cookie after a login");

    // A stranger guesses from one address until throttled…
    let mut stranger = Browser::new(&bank, "198.51.100.66");
    let mut throttled = false;
    for guess in 0..20u8 {
        let (status, body) = owner.login(&mut stranger, &[guess; 32]).await;
        if status == 429 {
            assert_eq!(body["code"], "login_throttled", "{body}");
            throttled = true;
            break;
        }
        assert_eq!(status, 401, "{body}");
    }
    assert!(throttled, "the stranger's address is throttled");
    // …and from a dozen more addresses, a few guesses each.
    for a in 0..12u8 {
        let mut bot = Browser::new(&bank, &format!("192.0.2.{a}"));
        for guess in 0..4u8 {
            let (status, _) = owner.login(&mut bot, &[guess.wrapping_add(100); 32]).await;
            assert!(matches!(status, 401 | 429), "{status}");
        }
    }

    // The owner still logs in from the laptop (a known device)…
    let (status, body) = owner.login(&mut laptop, &owner.verifier).await;
    assert_eq!(status, 200, "the owner is locked out: {body}");
    // …and from a new phone on a new address (slowed, not blocked).
    let mut phone = Browser::new(&bank, "203.0.113.77");
    let (status, body) = owner.login(&mut phone, &owner.verifier).await;
    assert_eq!(
        status, 200,
        "the owner is locked out of a new device: {body}"
    );
    // The stranger stays throttled.
    let (status, _) = owner.login(&mut stranger, &owner.verifier).await;
    assert_eq!(status, 429);
    bank.cleanup().await;
}

// ---- client addresses -----------------------------------------------------

async fn discovery_from(bank: &Bank, forwarded: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{}/alias/", bank.base))
        .header("x-forwarded-for", forwarded)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[actix_web::test]
async fn forged_forwarded_for_from_an_untrusted_peer_is_ignored() {
    // No trusted proxy: the peer (loopback) is the client whatever it claims.
    let bank = Bank::new("aq", &[("ALIAS_RATE_PER_SEC", "1")]).await;
    let mut limited = 0;
    for i in 0..8 {
        if discovery_from(&bank, &format!("198.51.100.{i}")).await == 429 {
            limited += 1;
        }
    }
    assert!(
        limited >= 4,
        "forged addresses evaded the rate limit ({limited} limited)"
    );
    bank.cleanup().await;

    // Behind a trusted proxy the forwarded address is the client: each
    // address has its own budget, and one address is limited alone.
    let bank = Bank::new(
        "aq",
        &[
            ("ALIAS_RATE_PER_SEC", "1"),
            ("ALIAS_TRUSTED_PROXIES", "127.0.0.1/32"),
        ],
    )
    .await;
    for i in 0..8 {
        // What the client put first is not believed: the proxy's hop is.
        let forwarded = format!("6.6.6.6, 198.51.100.{i}");
        assert_eq!(discovery_from(&bank, &forwarded).await, 200, "{forwarded}");
    }
    let mut limited = 0;
    for _ in 0..8 {
        if discovery_from(&bank, "7.7.7.7, 198.51.100.200").await == 429 {
            limited += 1;
        }
    }
    assert!(limited >= 4, "one client behind the proxy is limited");
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
