//! A data bank on its own namespace (its Redis keys, RabbitMQ queues,
//! storage and scratch directories), served by real roles: the gateway in
//! this process or as a child process, processors and pushers in this
//! process or as child processes (the `alias-e2e-role` binary, which a test
//! can SIGKILL or SIGTERM); clients (an `alias-sink` each, with its signed
//! contract); users' dumps; requests; waiting on transfers; and checks of
//! what the clients received.

use protocol::anychain::{SigningKey, Value};
use runtime::config::Config;
use runtime::state::{now_ms, DumpRecord, Transfer};
use runtime::worker::WorkerHandle;
use sink::{Faults, Sink, SinkConfig, SinkHandle};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

use crate::docs::{contract, contract_id, grant, key, user_pk};
use crate::ORIGIN;

/// A role of the data bank, run in a child process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The HTTP gateway.
    Gateway,
    /// A processor worker.
    Processor,
    /// A pusher worker.
    Pusher,
}

impl Role {
    /// The role's name, as `alias-e2e-role` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Gateway => "gateway",
            Role::Processor => "processor",
            Role::Pusher => "pusher",
        }
    }

    /// The role named `name`.
    pub fn from_name(name: &str) -> Option<Role> {
        [Role::Gateway, Role::Processor, Role::Pusher]
            .into_iter()
            .find(|r| r.as_str() == name)
    }
}

/// The `alias-e2e-role` binary. Cargo builds a package's binaries for its
/// integration tests and puts them beside the `deps/` directory the tests
/// run from; nextest also names it in `NEXTEST_BIN_EXE_alias-e2e-role`.
fn role_exe() -> PathBuf {
    const NAME: &str = "alias-e2e-role";
    for var in [
        format!("NEXTEST_BIN_EXE_{NAME}"),
        format!("CARGO_BIN_EXE_{NAME}"),
    ] {
        if let Some(path) = std::env::var_os(var) {
            return path.into();
        }
    }
    let exe = std::env::current_exe().unwrap();
    let mut dir = exe.parent().unwrap();
    if dir.ends_with("deps") {
        dir = dir.parent().unwrap();
    }
    let path = dir.join(format!("{NAME}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is missing: the whole-bank tests run as tests of the alias-e2e package",
        path.display()
    );
    path
}

/// A data bank on its own namespace, storage and scratch directories.
pub struct Bank {
    /// The namespace of its Redis keys and RabbitMQ queues.
    pub ns: String,
    /// Its `ALIAS_*` variables (a child process's environment).
    pub env: Vec<(String, String)>,
    /// Its configuration.
    pub config: Config,
    /// The gateway's state: the bank's Redis, RabbitMQ and storage.
    pub app: Arc<gateway::AppState>,
    /// The gateway's base URL (`http://127.0.0.1:port`).
    pub base: String,
    /// Workers running in this process.
    pub workers: Vec<WorkerHandle>,
    /// Child processes, killed at [`Bank::cleanup`].
    pub children: Vec<Child>,
    /// Storage and work directories.
    pub dir: tempfile::TempDir,
}

impl Bank {
    /// Connects to Redis and RabbitMQ for a new namespace and serves the
    /// gateway in this process; `extra` overrides or adds `ALIAS_*` pairs.
    /// No worker runs yet.
    pub async fn new(prefix: &str, extra: &[(&str, &str)]) -> Bank {
        Bank::setup(prefix).envs(extra).start().await
    }

    /// As [`Bank::new`], but the gateway is left to a child process
    /// ([`Bank::spawn`] with [`Role::Gateway`]): `base` is its address.
    pub async fn without_gateway(prefix: &str, extra: &[(&str, &str)]) -> Bank {
        Bank::setup(prefix)
            .envs(extra)
            .child_gateway()
            .start()
            .await
    }

    /// The setup of a bank on a new namespace `{prefix}{uuid}`: storage and
    /// work directories of its own, the test origin, pushes allowed to
    /// loopback, 64 KiB chunks, no rate limit, 2 s leases.
    pub fn setup(prefix: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let ns = format!("{prefix}{}", uuid::Uuid::new_v4().simple());
        let storage = dir.path().join("storage");
        let work = dir.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        let env: BTreeMap<String, String> = [
            ("ALIAS_NAMESPACE", ns.as_str()),
            ("ALIAS_STORAGE_URL", storage.to_str().unwrap()),
            ("ALIAS_WORK_DIR", work.to_str().unwrap()),
            ("ALIAS_LISTEN", "127.0.0.1:0"),
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
        Setup {
            ns,
            env,
            serve: true,
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

    /// Starts a process of `role` (`alias-e2e-role`) on this bank's
    /// configuration.
    pub fn spawn(&self, role: Role) -> Child {
        self.spawn_with(role, &[])
    }

    /// As [`Bank::spawn`], with some variables changed.
    pub fn spawn_with(&self, role: Role, extra: &[(&str, &str)]) -> Child {
        Command::new(role_exe())
            .arg(role.as_str())
            .env("RUST_LOG", "warn")
            .envs(self.env.iter().cloned())
            .envs(extra.iter().map(|(k, v)| (*k, *v)))
            .stdout(Stdio::inherit())
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

/// How a [`Bank`] is set up: its `ALIAS_*` variables and whether this
/// process serves its gateway.
pub struct Setup {
    ns: String,
    env: BTreeMap<String, String>,
    serve: bool,
    dir: tempfile::TempDir,
}

impl Setup {
    /// Sets (or overrides) the variable `key`.
    pub fn env(mut self, key: &str, value: &str) -> Setup {
        self.env.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Sets (or overrides) each pair of `pairs`.
    pub fn envs(mut self, pairs: &[(&str, &str)]) -> Setup {
        for (k, v) in pairs {
            self = self.env(k, v);
        }
        self
    }

    /// Leaves the variable `key` unset (its default applies).
    pub fn unset(mut self, key: &str) -> Setup {
        self.env.remove(key);
        self
    }

    /// Leaves the gateway to a child process ([`Bank::spawn`] with
    /// [`Role::Gateway`]) on a free port: [`Bank::base`] is its address.
    pub fn child_gateway(mut self) -> Setup {
        self.serve = false;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let listen = l.local_addr().unwrap().to_string();
        self.env("ALIAS_LISTEN", &listen)
    }

    /// Connects to Redis and RabbitMQ and, unless the gateway is a child's,
    /// serves the gateway in this process. No worker runs yet.
    pub async fn start(self) -> Bank {
        let Setup {
            ns,
            env,
            serve,
            dir,
        } = self;
        let env: Vec<(String, String)> = env.into_iter().collect();
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let config = Config::from_pairs(&pairs).unwrap();
        let (app, base) = if serve {
            let (app, addr) = gateway::spawn(config.clone()).await.unwrap();
            (app, format!("http://{addr}"))
        } else {
            let app = gateway::AppState::connect(config.clone()).await.unwrap();
            (app, format!("http://{}", config.listen))
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
    give_dump_of(bank, user, &options).await;
}

/// Stores the Google export `options` generate for `user`, as an upload
/// would.
pub async fn give_dump_of(bank: &Bank, user: &SigningKey, options: &dumpgen::Options) {
    store_export(bank, user, dumpgen::generate(options).unwrap()).await;
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
    /// The client's push endpoint.
    pub sink: SinkHandle,
    /// Its signed contract.
    pub contract: Value,
    /// The transfer id (contract hash).
    pub id: String,
    _dir: tempfile::TempDir,
}

/// The scopes the test contracts ask for (three archives).
pub const SCOPES: [&str; 3] = ["my_activity.search", "youtube.watch_history", "photos"];

impl Client {
    /// A sink with `faults` and a contract named `name` asking for
    /// [`SCOPES`], signed by the client key of `seed`.
    pub fn new(name: &str, seed: u8, faults: Faults) -> Client {
        Client::with_contract(seed, faults, |domain| contract(name, seed, domain, &SCOPES))
    }

    /// A sink with `faults` taking the pushes of the client key of `seed`,
    /// and the contract `write` makes for the sink's address.
    pub fn with_contract(seed: u8, faults: Faults, write: impl FnOnce(&str) -> Value) -> Client {
        let dir = tempfile::tempdir().unwrap();
        let mut config =
            SinkConfig::new(dir.path()).with_client_key(key(seed).verifying_key().as_bytes());
        config.faults = faults;
        let (_, sink) = Sink::start(config).unwrap();
        let contract = write(&sink.addr().to_string());
        let id = contract_id(&contract);
        Client {
            sink,
            contract,
            id,
            _dir: dir,
        }
    }

    /// A grant of the contractual scopes by `user`, signed now.
    pub fn grant(&self, user: &SigningKey) -> String {
        grant(user, &self.contract)
    }
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
