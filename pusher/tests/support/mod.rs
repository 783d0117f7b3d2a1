//! Shared fixtures of the pusher's fault tests: a data bank on its own
//! namespace (gateway in this process, workers in this process or as child
//! processes), clients (an `alias-sink` each, with its signed contract),
//! users with generated dumps, grants, waiting on transfers, and checks of
//! what the clients received.
//!
//! Child processes re-run this test binary with [`child_role`] selected and
//! `ALIAS_TEST_ROLE` set, so a test can SIGKILL or SIGTERM a real worker
//! process of any role whatever crate the test lives in.

#![allow(dead_code)]

use protocol::alias::{grant_body, revoked_grant_body, Contract};
use protocol::anychain::{
    b64u_encode, sign, signing_key_from_seed, to_token, Dict, SigningKey, Value,
};
use runtime::config::Config;
use runtime::state::{now_ms, DumpRecord, Transfer};
use runtime::worker::WorkerHandle;
use sink::{Faults, Sink, SinkConfig, SinkHandle};
use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

pub const ORIGIN: &str = "http://bank.test";

/// A worker role run in a child process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Gateway,
    Processor,
    Pusher,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Gateway => "gateway",
            Role::Processor => "processor",
            Role::Pusher => "pusher",
        }
    }
}

/// The body of a child process: runs the role named by `ALIAS_TEST_ROLE`
/// with the `ALIAS_*` configuration of its environment until SIGTERM.
/// Without `ALIAS_TEST_ROLE` (a plain `--ignored` run) it does nothing.
#[test]
#[ignore = "the body of the fault tests' child processes, not a test"]
fn child_role() {
    let Ok(role) = std::env::var("ALIAS_TEST_ROLE") else {
        return;
    };
    runtime::telemetry::init();
    let config = Config::from_env().unwrap();
    let system = actix::System::new();
    system
        .block_on(async move {
            match role.as_str() {
                "gateway" => gateway::run(config).await,
                "processor" => processor::run(config).await,
                "pusher" => pusher::run(config).await,
                other => panic!("unknown role {other}"),
            }
        })
        .unwrap();
}

/// A data bank on its own namespace, storage and scratch directories.
pub struct Bank {
    pub ns: String,
    pub env: Vec<(String, String)>,
    pub config: Config,
    pub app: Arc<gateway::AppState>,
    /// The gateway's base URL (`http://127.0.0.1:port`).
    pub base: String,
    pub workers: Vec<WorkerHandle>,
    pub children: Vec<Child>,
    pub dir: tempfile::TempDir,
}

impl Bank {
    /// Connects to Redis and RabbitMQ for a new namespace and serves the
    /// gateway in this process; `extra` overrides or adds `ALIAS_*` pairs.
    /// No worker runs yet.
    pub async fn new(prefix: &str, extra: &[(&str, &str)]) -> Bank {
        Self::build(prefix, extra, true).await
    }

    /// As [`Bank::new`], but the gateway is left to a child process
    /// ([`Bank::spawn`] with [`Role::Gateway`]): `base` is its address.
    pub async fn without_gateway(prefix: &str, extra: &[(&str, &str)]) -> Bank {
        Self::build(prefix, extra, false).await
    }

    async fn build(prefix: &str, extra: &[(&str, &str)], serve: bool) -> Bank {
        let dir = tempfile::tempdir().unwrap();
        let ns = format!("{prefix}{}", uuid::Uuid::new_v4().simple());
        let storage = dir.path().join("storage");
        let work = dir.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        let listen = if serve {
            "127.0.0.1:0".to_owned()
        } else {
            // A free port for the child gateway.
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().to_string()
        };
        let mut env: BTreeMap<String, String> = [
            ("ALIAS_NAMESPACE", ns.as_str()),
            ("ALIAS_STORAGE_URL", storage.to_str().unwrap()),
            ("ALIAS_WORK_DIR", work.to_str().unwrap()),
            ("ALIAS_LISTEN", listen.as_str()),
            ("ALIAS_PUBLIC_ORIGIN", ORIGIN),
            ("ALIAS_PUSH_ALLOW", "127.0.0.0/8"),
            ("ALIAS_PUSH_CHUNK", "65536"),
            ("ALIAS_RATE_PER_SEC", "100000"),
            ("ALIAS_PROCESS_WAIT_SECS", "120"),
            ("ALIAS_LEASE_SECS", "2"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        for (k, v) in extra {
            env.insert((*k).to_owned(), (*v).to_owned());
        }
        let env: Vec<(String, String)> = env.into_iter().collect();
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let config = Config::from_pairs(&pairs).unwrap();
        let app = gateway::AppState::connect(config.clone()).await.unwrap();
        let base = if serve {
            let (server, addr) = gateway::server(app.clone(), config.listen).unwrap();
            actix_web::rt::spawn(server);
            format!("http://{addr}")
        } else {
            format!("http://{listen}")
        };
        Bank {
            ns,
            env,
            config,
            app,
            base,
            workers: Vec::new(),
            children: Vec::new(),
            dir,
        }
    }

    /// Starts a processor worker in this process.
    pub async fn start_processor(&mut self) {
        let (w, _) = processor::start(&self.config).await.unwrap();
        self.workers.push(w);
    }

    /// Starts a pusher worker in this process.
    pub async fn start_pusher(&mut self) {
        let (w, _) = pusher::start(&self.config).await.unwrap();
        self.workers.push(w);
    }

    /// Starts a worker process of `role` on this bank's configuration.
    pub fn spawn(&self, role: Role) -> Child {
        self.spawn_with(role, &[])
    }

    /// As [`Bank::spawn`], with some variables changed.
    pub fn spawn_with(&self, role: Role, extra: &[(&str, &str)]) -> Child {
        Command::new(std::env::current_exe().unwrap())
            .args([
                "support::child_role",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .envs(self.env.iter().cloned())
            .envs(extra.iter().map(|(k, v)| (*k, *v)))
            .env("ALIAS_TEST_ROLE", role.as_str())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    }

    /// Waits until the child gateway answers.
    pub async fn wait_gateway(&self) {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = http.get(format!("{}/readyz", self.base)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "the gateway never got ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the workers and child processes, deletes the namespace's
    /// queues and keys.
    pub async fn cleanup(mut self) {
        for mut c in self.children.drain(..) {
            let _ = c.start_kill();
            let _ = c.wait().await;
        }
        for w in self.workers.drain(..) {
            w.shutdown().await;
        }
        self.app.broker.delete_topology().await;
        let _ = self.app.state.purge_namespace().await;
    }
}

/// A user's signing key.
pub fn user(seed: u8) -> SigningKey {
    signing_key_from_seed(&[seed; 32])
}

pub fn user_pk(user: &SigningKey) -> String {
    b64u_encode(user.verifying_key().as_bytes())
}

/// Stores a generated Google Takeout of `user` (about `bytes`, seeded),
/// as an upload would.
pub async fn give_dump(bank: &Bank, user: &SigningKey, bytes: u64, seed: u64) {
    let options = dumpgen::Options {
        provider: dumpgen::Provider::Google,
        target_bytes: bytes,
        seed,
        ..dumpgen::Options::default()
    };
    store_export(bank, user, dumpgen::generate(&options).unwrap()).await;
}

/// Stores the parts of a Google export of `user` and records them, as an
/// upload would.
pub async fn store_export(bank: &Bank, user: &SigningKey, parts: Vec<(String, Vec<u8>)>) {
    let pk = user_pk(user);
    for (name, data) in parts {
        let key = format!("dumps/{pk}/google/{name}");
        let info = bank.app.storage.put_bytes(&key, data.into()).await.unwrap();
        let record = DumpRecord {
            provider: "google".into(),
            name,
            key,
            size: info.size,
            blake2b: info.blake2b_b64(),
            uploaded_ms: now_ms(),
        };
        bank.app.state.record_dump(&pk, &record).await.unwrap();
    }
}

/// A revocation of `contract` by `user`, dated `date_ms`.
pub fn revocation_at(user: &SigningKey, contract: &Value, date_ms: f64) -> String {
    to_token(&sign(user, revoked_grant_body(contract).unwrap(), date_ms).unwrap())
}

/// `POST /alias/grants` with `grant`: the status and the JSON answer.
pub async fn store_grant(base: &str, grant: &str) -> (u16, serde_json::Value) {
    let resp = reqwest::Client::new()
        .post(format!("{base}/alias/grants"))
        .form(&[("grant", grant)])
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

/// A client: an `alias-sink` and the contract that points at it.
pub struct Client {
    pub sink: SinkHandle,
    pub contract: Value,
    /// The transfer id (contract hash).
    pub id: String,
    _dir: tempfile::TempDir,
}

/// The scopes the test contracts ask for (three archives).
pub const SCOPES: [&str; 3] = ["my_activity.search", "youtube.watch_history", "photos"];

impl Client {
    /// A sink with `faults` and a contract named `name`, signed by the
    /// client key of `seed`.
    pub fn new(name: &str, seed: u8, faults: Faults) -> Client {
        let dir = tempfile::tempdir().unwrap();
        let client_key = signing_key_from_seed(&[seed; 32]);
        let mut config =
            SinkConfig::new(dir.path()).with_client_key(client_key.verifying_key().as_bytes());
        config.faults = faults;
        let (_, sink) = Sink::start(config).unwrap();
        let contract = contract(name, seed, &sink.addr().to_string(), &SCOPES);
        let id = Contract::new(&contract).unwrap().hash().unwrap().to_b64();
        Client {
            sink,
            contract,
            id,
            _dir: dir,
        }
    }

    /// A grant of every scope by `user`, signed now.
    pub fn grant(&self, user: &SigningKey) -> String {
        grant_at(user, &self.contract, now_ms() as f64)
    }
}

/// A contract of `domain` (plain http) asking for google `scopes`.
pub fn contract(name: &str, client_seed: u8, domain: &str, scopes: &[&str]) -> Value {
    let client_key = signing_key_from_seed(&[client_seed; 32]);
    let decl = Dict::new()
        .with("type", "alias.client.decl")
        .with("name", name)
        .with("domain", domain)
        .with("crypto", Dict::new());
    let client = sign(&client_key, Value::Dict(decl), 1_574_158_519_000.0).unwrap();
    let scopes: Vec<Value> = scopes
        .iter()
        .map(|p| Value::Dict(Dict::new().with("provider", "google").with("path", *p)))
        .collect();
    Value::Dict(
        Dict::new()
            .with("type", "alias.contract")
            .with("client", client)
            .with("legal", Dict::new().with("usage", "tests"))
            .with(
                "base",
                Dict::new().with(
                    "contractual",
                    Dict::new()
                        .with("scopes", Value::List(scopes))
                        .with("usages", Value::List(vec![])),
                ),
            )
            .with("network", Dict::new().with("scheme", "http")),
    )
}

/// A grant of the contractual scopes of `contract`.
pub fn grant_at(user: &SigningKey, contract: &Value, date_ms: f64) -> String {
    to_token(&sign(user, grant_body(contract, vec![], vec![]).unwrap(), date_ms).unwrap())
}

/// `POST /alias/process` answered at once (202): returns status and body.
pub async fn process_async(base: &str, grant: &str) -> (u16, serde_json::Value) {
    let resp = reqwest::Client::new()
        .post(format!("{base}/alias/process"))
        .header("Prefer", "respond-async")
        .form(&[("grant", grant)])
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

/// `POST /alias/process`, waiting for the transfer's end.
pub async fn process_sync(base: &str, grant: &str) -> (u16, serde_json::Value) {
    let resp = reqwest::Client::new()
        .post(format!("{base}/alias/process"))
        .form(&[("grant", grant)])
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_default())
}

/// Waits (events, with a re-read at least every second) until `pred`
/// holds for the transfer, or panics after `limit`.
pub async fn wait_until(
    bank: &Bank,
    id: &str,
    limit: Duration,
    mut pred: impl FnMut(&Transfer) -> bool,
) -> Transfer {
    let mut events = bank.app.state.subscribe(id);
    let deadline = Instant::now() + limit;
    loop {
        if let Some(t) = bank.app.state.transfer(id).await.unwrap() {
            if pred(&t) {
                return t;
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "transfer {id} did not get there in {limit:?}: {:?}",
            bank.app.state.transfer(id).await.unwrap()
        );
        let _ = tokio::time::timeout(left.min(Duration::from_secs(1)), events.recv()).await;
    }
}

/// Waits until the transfer's current generation ended.
pub async fn wait_terminal(bank: &Bank, id: &str, limit: Duration) -> Transfer {
    wait_until(bank, id, limit, |t| t.state.is_terminal()).await
}

/// What the client holds of a transfer: file name → bytes.
pub fn received(client: &Client) -> BTreeMap<String, Vec<u8>> {
    let state = client.sink.transfer(&client.id).unwrap();
    state
        .files
        .keys()
        .map(|name| {
            (
                name.clone(),
                client.sink.read_file(&client.id, name).unwrap(),
            )
        })
        .collect()
}

/// Checks a completed transfer at the client: every archive of the
/// generation arrived byte for byte as stored, each file finish was sent
/// once, and the transfer finish was sent once, last, after every file
/// finish (never "finished" early). Returns the files received.
pub async fn assert_delivered(bank: &Bank, client: &Client) -> BTreeMap<String, Vec<u8>> {
    let t = bank.app.state.transfer(&client.id).await.unwrap().unwrap();
    assert_eq!(t.state, runtime::state::TransferState::Done, "{t:?}");
    let files = bank
        .app
        .state
        .files(&client.id, t.generation)
        .await
        .unwrap();
    assert!(!files.is_empty());
    let got = received(client);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        files.iter().map(|f| &f.name).collect::<Vec<_>>()
    );
    for f in &files {
        let stored = bank.app.storage.get_bytes(&f.storage_key).await.unwrap();
        assert!(got[&f.name] == stored.as_ref(), "{} differs", f.name);
    }
    let sink_state = client.sink.transfer(&client.id).unwrap();
    assert!(
        sink_state.finished && sink_state.finish_verified,
        "{sink_state:?}"
    );
    let counters = client.sink.counters();
    assert_eq!(counters.transfer_finishes, 1, "{counters:?}");
    assert_eq!(
        counters.file_finishes,
        files.len() as u64,
        "each file finished once: {counters:?}"
    );
    let requests = client.sink.requests();
    let transfer_path = format!("/alias/push/{}", client.id);
    let last = requests.last().unwrap();
    assert!(
        last.method == "POST" && last.path == transfer_path,
        "the transfer finish comes last: {last:?}"
    );
    got
}

// ---- the user's web side (added for the isolation attacks) -----------------

/// A browser: one session cookie and its CSRF token, no redirects followed.
pub struct WebAgent {
    pub http: reqwest::Client,
    pub base: String,
    pub cookie: Option<String>,
    pub csrf: String,
}

/// The text of an HTML attribute after `marker` (up to the next `"`).
pub fn html_attr(html: &str, marker: &str) -> Option<String> {
    let rest = &html[html.find(marker)? + marker.len()..];
    Some(rest[..rest.find('"')?].to_owned())
}

impl WebAgent {
    pub fn new(bank: &Bank) -> WebAgent {
        WebAgent {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: bank.base.clone(),
            cookie: None,
            csrf: String::new(),
        }
    }

    fn keep(&mut self, resp: &reqwest::Response) {
        for v in resp.headers().get_all(reqwest::header::SET_COOKIE) {
            if let Some(rest) = v.to_str().unwrap().strip_prefix("alias_session=") {
                self.cookie = Some(rest.split(';').next().unwrap().to_owned());
            }
        }
    }

    fn cookie(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.cookie {
            Some(c) => req.header(reqwest::header::COOKIE, format!("alias_session={c}")),
            None => req,
        }
    }

    /// `GET path`: status, body and `Location`.
    pub async fn get(&mut self, path: &str) -> (u16, String, Option<String>) {
        let resp = self
            .cookie(self.http.get(format!("{}{path}", self.base)))
            .send()
            .await
            .unwrap();
        self.keep(&resp);
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .map(|l| l.to_str().unwrap().to_owned());
        let body = resp.text().await.unwrap();
        if let Some(csrf) = html_attr(&body, "name=\"csrf-token\" content=\"") {
            self.csrf = csrf;
        }
        (status, body, location)
    }

    /// `GET path` answered with JSON.
    pub async fn get_json(&mut self, path: &str) -> (u16, serde_json::Value) {
        let resp = self
            .cookie(self.http.get(format!("{}{path}", self.base)))
            .send()
            .await
            .unwrap();
        self.keep(&resp);
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or_default())
    }

    /// `POST path` with a JSON body and the CSRF header.
    pub async fn post_json(
        &mut self,
        path: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let resp = self
            .cookie(self.http.post(format!("{}{path}", self.base)))
            .header("x-csrf-token", &self.csrf)
            .json(&body)
            .send()
            .await
            .unwrap();
        self.keep(&resp);
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or_default())
    }
}

/// The user's `alias.bindAuthz` for this bank's origin.
pub fn bind_token(user: &SigningKey) -> String {
    let body = Dict::new()
        .with("type", "alias.bindAuthz")
        .with("origin", ORIGIN);
    to_token(&sign(user, Value::Dict(body), now_ms() as f64).unwrap())
}

/// Signs `username` up with `key` (the browser's derived values stood in
/// for by fixed bytes) and leaves `agent` logged in.
pub async fn web_signup(agent: &mut WebAgent, username: &str, key: &SigningKey, n: u8) {
    let (status, _, _) = agent.get("/signup").await;
    assert_eq!(status, 200);
    let (status, begun) = agent
        .post_json(
            "/web/signup/begin",
            serde_json::json!({"username": username}),
        )
        .await;
    assert_eq!(status, 200, "{begun}");
    let challenge = protocol::anychain::b64u_decode(begun["challenge"].as_str().unwrap()).unwrap();
    let login = to_token(
        &sign(
            key,
            protocol::alias::login_body(&challenge, ORIGIN),
            now_ms() as f64,
        )
        .unwrap(),
    );
    let record = serde_json::json!({
        "username": username,
        "salt": b64u_encode(&[n; 16]),
        "pwhash": {"alg": "argon2id13", "opslimit": 2, "memlimit": 67108864},
        "box": format!("{{\"__box\":\"{}\"}}", b64u_encode(&[7u8; 120])),
        "publicPwdHash": b64u_encode(&[n.wrapping_add(100); 32]),
        "publicKey": user_pk(key),
    });
    let (status, body) = agent
        .post_json(
            "/web/signup",
            serde_json::json!({"record": record, "bind": bind_token(key), "login": login}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    agent.csrf = body["csrf"].as_str().unwrap().to_owned();
}
