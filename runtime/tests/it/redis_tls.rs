//! The state over TLS (`rediss://`), against real `redis-server`s that
//! speak TLS only, with an authority made for each test: a server is
//! reached with its authority and refused without it or with another's;
//! a server that asks for a client certificate gets the bank's and refuses
//! the bank without it; a Redis Cluster whose nodes speak TLS to clients
//! and to each other is used whole (scripts, events, a scan of every
//! master); a primary and replicas under sentinels, all speaking TLS, are
//! followed across a failover.

use crate::redis_ha::{grant, probe_arrives};
use rcgen::{BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair};
use runtime::config::Config;
use runtime::state::testing::{until, SentinelSet, SetTls};
use runtime::state::{Intake, Quotas, RedisTarget, RedisTls, Settled, State, WebKey};
use runtime::worker::Services;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const TTL: Duration = Duration::from_secs(60);

/// An authority and the certificates it signed, as PEM.
struct Authority {
    ca: Certificate,
    key: KeyPair,
}

/// A certificate and its key, as PEM.
struct Issued {
    cert: String,
    key: String,
}

impl Authority {
    fn new() -> Authority {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // A subject of its own: a certificate whose issuer and subject
        // read the same is taken for self-signed.
        params.distinguished_name.push(
            DnType::CommonName,
            format!("test authority {}", uuid::Uuid::new_v4()),
        );
        let ca = params.self_signed(&key).unwrap();
        Authority { ca, key }
    }

    fn pem(&self) -> Vec<u8> {
        self.ca.pem().into_bytes()
    }

    /// A certificate for `names` (host names or IP addresses).
    fn issue(&self, names: &[&str]) -> Issued {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names.clone()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, names.join(" "));
        let cert = params.signed_by(&key, &self.ca, &self.key).unwrap();
        Issued {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// `redis-server`s started for one test, stopped (and their files
/// removed) on drop.
struct Servers {
    dir: tempfile::TempDir,
    children: Vec<Child>,
}

impl Drop for Servers {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Servers {
    /// Writes the server's certificate and the authority beside it.
    fn new(authority: &Authority) -> Servers {
        let dir = tempfile::tempdir().unwrap();
        let server = authority.issue(&["127.0.0.1", "localhost"]);
        std::fs::write(dir.path().join("ca.pem"), authority.pem()).unwrap();
        std::fs::write(dir.path().join("server.pem"), server.cert).unwrap();
        std::fs::write(dir.path().join("server.key"), server.key).unwrap();
        Servers {
            dir,
            children: Vec::new(),
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A server on `port` speaking TLS only (no plain port), asking
    /// clients for a certificate when `mutual`.
    fn start(&mut self, port: u16, mutual: bool, extra: &[&str]) {
        let dir = self.dir.path().join(port.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        let path = |p: PathBuf| p.to_str().unwrap().to_owned();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", "0", "--save", ""])
            .args(["--appendonly", "no", "--tls-port", &port.to_string()])
            .args(["--tls-cert-file", &path(self.file("server.pem"))])
            .args(["--tls-key-file", &path(self.file("server.key"))])
            .args(["--tls-ca-cert-file", &path(self.file("ca.pem"))])
            .args(["--tls-auth-clients", if mutual { "yes" } else { "no" }])
            .arg("--dir")
            .arg(&dir)
            .args(extra)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server installed");
        self.children.push(child);
    }
}

/// The bank's TLS settings: the authority, and a client certificate.
fn settings(authority: Option<&Authority>, client: Option<&Issued>) -> RedisTls {
    RedisTls {
        ca_pem: authority.map(Authority::pem),
        client_cert_pem: client.map(|c| c.cert.clone().into_bytes()),
        client_key_pem: client.map(|c| c.key.clone().into_bytes()),
    }
}

fn single(port: u16) -> RedisTarget {
    RedisTarget::Single(format!("rediss://127.0.0.1:{port}"))
}

/// Waits until the server on `port` answers a `PING` over TLS.
async fn until_up(port: u16, tls: &RedisTls) {
    until("the TLS server", || async {
        let Ok(client) = tls_client(port, tls) else {
            return false;
        };
        match client.get_multiplexed_async_connection().await {
            Ok(mut conn) => redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .is_ok(),
            Err(_) => false,
        }
    })
    .await;
}

fn tls_client(port: u16, tls: &RedisTls) -> redis::RedisResult<redis::Client> {
    redis::Client::build_with_tls(
        format!("rediss://127.0.0.1:{port}"),
        redis::TlsCertificates {
            client_tls: tls
                .client_cert_pem
                .clone()
                .zip(tls.client_key_pem.clone())
                .map(|(client_cert, client_key)| redis::ClientTlsConfig {
                    client_cert,
                    client_key,
                }),
            root_cert: tls.ca_pem.clone(),
        },
    )
}

/// The error connecting with `tls` ends in, whether at the connection or
/// at its first command.
async fn refusal(target: &RedisTarget, tls: &RedisTls, ns: &str) -> String {
    match State::connect_secured(target, tls, ns, TTL, Quotas::DEFAULT).await {
        Err(e) => e.to_string(),
        Ok(s) => s.set_binding("u", "bind").await.unwrap_err().to_string(),
    }
}

/// What a store does for a user, and its event subscription, over the
/// connection under test.
async fn works(s: &State, user: &str) {
    s.set_binding(user, "bind-token").await.unwrap();
    assert_eq!(
        s.binding(user).await.unwrap().as_deref(),
        Some("bind-token")
    );
    let key = WebKey::Challenge("over-tls");
    assert!(s.kv_set_nx(&key, user, Some(TTL)).await.unwrap());
    assert_eq!(s.kv_get(&key).await.unwrap().as_deref(), Some(user));
    // A grant taken (the intake script), and its transfer's events.
    let taken = s
        .take_grant(&grant(user, "t-tls", 1.0, "g1"))
        .await
        .unwrap();
    assert!(matches!(taken, Intake::Begun { .. }), "{taken:?}");
    let mut events = s.subscribe("t-tls");
    assert!(
        probe_arrives(s, "t-tls", &mut events).await,
        "no event through the TLS subscription"
    );
}

fn namespace() -> String {
    format!("tls-{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_behind_tls_is_reached_with_its_authority_only() {
    let authority = Authority::new();
    let mut servers = Servers::new(&authority);
    let port = 7501;
    servers.start(port, false, &[]);
    let trusted = settings(Some(&authority), None);
    until_up(port, &trusted).await;
    let ns = namespace();

    let s = State::connect_secured(&single(port), &trusted, &ns, TTL, Quotas::DEFAULT)
        .await
        .unwrap();
    works(&s, "u").await;

    // What a binary does with its variables: the file read at start, every
    // connection made with it.
    let url = format!("rediss://127.0.0.1:{port}");
    let ca_file = servers.file("ca.pem");
    let config = Config::from_pairs(&[
        ("ALIAS_REDIS_URL", &url),
        ("ALIAS_REDIS_CA_FILE", ca_file.to_str().unwrap()),
        ("ALIAS_STORAGE_URL", "memory://"),
        ("ALIAS_NAMESPACE", &format!("{ns}-binary")),
    ])
    .unwrap();
    let services = Services::embedded(&config).await.unwrap();
    works(&services.state, "binary-user").await;
    services.state.purge_namespace().await.unwrap();

    // The port speaks TLS only: a plain client gets nowhere.
    let plain = RedisTarget::Single(format!("redis://127.0.0.1:{port}"));
    let e = refusal(&plain, &RedisTls::default(), &ns).await;
    assert!(!e.is_empty());
    // The system's authorities do not know this one, nor does another.
    let e = refusal(&single(port), &RedisTls::default(), &ns).await;
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    let other = Authority::new();
    let e = refusal(&single(port), &settings(Some(&other), None), &ns).await;
    assert!(e.to_lowercase().contains("certificate"), "{e}");
    // A certificate for another name, from the right authority, is refused
    // too: the server is checked by name, not by authority alone.
    let mut renamed = Servers::new(&authority);
    let wrong = authority.issue(&["cache.elsewhere.example"]);
    std::fs::write(renamed.file("server.pem"), wrong.cert).unwrap();
    std::fs::write(renamed.file("server.key"), wrong.key).unwrap();
    renamed.start(port + 1, false, &[]);
    until("the renamed server's port", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port + 1))
            .await
            .is_ok()
    })
    .await;
    let e = refusal(&single(port + 1), &trusted, &ns).await;
    assert!(e.to_lowercase().contains("certificate"), "{e}");

    s.purge_namespace().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_asks_for_a_client_certificate_gets_the_banks() {
    let authority = Authority::new();
    let mut servers = Servers::new(&authority);
    let port = 7503;
    servers.start(port, true, &[]);
    let bank = authority.issue(&["alias-bank"]);
    let with_cert = settings(Some(&authority), Some(&bank));
    until_up(port, &with_cert).await;
    let ns = namespace();

    let s = State::connect_secured(&single(port), &with_cert, &ns, TTL, Quotas::DEFAULT)
        .await
        .unwrap();
    works(&s, "u").await;

    // Without a certificate, or with one another authority signed.
    let e = refusal(&single(port), &settings(Some(&authority), None), &ns).await;
    assert!(!e.is_empty());
    let stranger = Authority::new().issue(&["alias-bank"]);
    let e = refusal(
        &single(port),
        &settings(Some(&authority), Some(&stranger)),
        &ns,
    )
    .await;
    assert!(!e.is_empty());
    // Neither left anything behind: the bank's own connection still works.
    assert_eq!(s.binding("u").await.unwrap().as_deref(), Some("bind-token"));
    s.purge_namespace().await.unwrap();
}

/// `redis-cli` over TLS to the node on `port`, with `args`.
fn cli(dir: &Path, port: u16, args: &[&str]) -> std::process::Output {
    Command::new("redis-cli")
        .args(["--tls", "--cacert"])
        .arg(dir.join("ca.pem"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("redis-cli installed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_behind_tls_is_used_whole() {
    let authority = Authority::new();
    let mut servers = Servers::new(&authority);
    let ports = [7511_u16, 7512, 7513];
    let trusted = settings(Some(&authority), None);
    for port in ports {
        servers.start(
            port,
            false,
            &[
                "--cluster-enabled",
                "yes",
                "--tls-cluster",
                "yes",
                "--cluster-node-timeout",
                "2000",
            ],
        );
    }
    for port in ports {
        until_up(port, &trusted).await;
    }
    let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let mut create = vec!["--cluster", "create"];
    create.extend(nodes.iter().map(String::as_str));
    create.push("--cluster-yes");
    let created = cli(servers.dir.path(), ports[0], &create);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stdout)
    );
    for port in ports {
        until("the TLS cluster's state ok", || async {
            let out = cli(servers.dir.path(), port, &["cluster", "info"]);
            String::from_utf8_lossy(&out.stdout).contains("cluster_state:ok")
        })
        .await;
    }
    let target = RedisTarget::Cluster(
        ports
            .iter()
            .map(|p| format!("rediss://127.0.0.1:{p}"))
            .collect(),
    );
    let ns = namespace();
    let s = State::connect_secured(&target, &trusted, &ns, TTL, Quotas::DEFAULT)
        .await
        .unwrap();
    // Users whose keys land on different masters.
    for user in ["u1", "u2", "u3", "u4", "u5", "u6"] {
        s.set_binding(user, "bind-token").await.unwrap();
    }
    works(&s, "u").await;
    // A scan visits every master, over TLS too: the purge leaves nothing.
    s.purge_namespace().await.unwrap();
    for port in ports {
        let out = cli(
            servers.dir.path(),
            port,
            &["--scan", "--pattern", &format!("{ns}:*")],
        );
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "",
            "keys left on {port}"
        );
    }
    // And the cluster refuses a bank without its authority.
    let e = refusal(&target, &RedisTls::default(), &ns).await;
    assert!(!e.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sentinel_set_behind_tls_is_followed_across_a_failover() {
    let authority = Authority::new();
    let servers = Servers::new(&authority);
    let files = SetTls {
        ca: servers.file("ca.pem"),
        cert: servers.file("server.pem"),
        key: servers.file("server.key"),
    };
    let mut set = SentinelSet::start_with_tls(7521, files).await;
    let target = set.target();
    let trusted = settings(Some(&authority), None);
    let ns = namespace();
    let s = State::connect_secured(&target, &trusted, &ns, TTL, Quotas::DEFAULT)
        .await
        .unwrap();
    works(&s, "u").await;
    // Writes settled on a replica: the settling connection is TLS too.
    assert_eq!(s.settle_writes().await.unwrap(), Settled::Replicated);

    // The sentinels and the primary they name refuse a bank without the
    // authority.
    let e = refusal(&target, &RedisTls::default(), &ns).await;
    assert!(e.to_lowercase().contains("certificate"), "{e}");

    // The primary killed: the store finds the one the sentinels name next,
    // over TLS with the same settings.
    set.primary.kill().unwrap();
    set.primary.wait().unwrap();
    until("the store on the new primary", || async {
        s.set_binding("after", "failover").await.is_ok()
    })
    .await;
    assert!(set.a_replica_took_over().await, "a replica took over");
    assert_eq!(
        s.binding("u").await.unwrap().as_deref(),
        Some("bind-token"),
        "what was settled before the failover is kept"
    );
    let mut events = s.subscribe("t-tls");
    assert!(
        probe_arrives(&s, "t-tls", &mut events).await,
        "no event from the new primary"
    );
    s.purge_namespace().await.unwrap();
}
