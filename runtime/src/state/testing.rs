//! For tests and drills: a Redis primary with two replicas under three
//! sentinels (master name `alias`), started for one test on ports of its
//! own and stopped when dropped: what a failover test kills, pauses and
//! watches. Needs `redis-server` on the `PATH`. A set that cannot be
//! started fails the test that asked for it, so this kit panics. Also
//! [`write_without_event`], a change to a transfer record that no watcher
//! is told of (what a change published during a resubscription looks
//! like).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::RedisTarget;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::time::Instant;

/// The processes of one set, stopped (and their directory removed) on drop.
pub struct SentinelSet {
    dir: PathBuf,
    /// The primary (port `base`).
    pub primary: Child,
    /// The replicas (ports `base + 1`, `base + 2`).
    pub replicas: Vec<Child>,
    sentinels: Vec<Child>,
    base: u16,
    password: Option<String>,
    tls: Option<SetTls>,
}

/// The files of a set whose servers and sentinels speak TLS only: the
/// authority, and the certificate (for 127.0.0.1) and key each of them
/// shows.
#[derive(Debug, Clone)]
pub struct SetTls {
    /// The authority, PEM.
    pub ca: PathBuf,
    /// The servers' certificate, PEM.
    pub cert: PathBuf,
    /// Its key, PEM.
    pub key: PathBuf,
}

impl SetTls {
    /// The `redis-server` settings of a TLS-only server on `port`
    /// (replication over TLS too; clients show no certificate).
    fn settings(&self, port: u16) -> Vec<(String, String)> {
        let path = |p: &PathBuf| p.display().to_string();
        [
            ("port", "0".to_owned()),
            ("tls-port", port.to_string()),
            ("tls-cert-file", path(&self.cert)),
            ("tls-key-file", path(&self.key)),
            ("tls-ca-cert-file", path(&self.ca)),
            ("tls-auth-clients", "no".to_owned()),
            ("tls-replication", "yes".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

fn server(dir: &Path, port: u16, extra: &[&str]) -> Child {
    let dir = dir.join(port.to_string());
    std::fs::create_dir_all(&dir).unwrap();
    let port = port.to_string();
    Command::new("redis-server")
        .args(["--bind", "127.0.0.1", "--port", &port, "--save", ""])
        .args(["--appendonly", "no", "--dir"])
        .arg(&dir)
        .args(extra)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server installed")
}

/// `cmd` sent to the server on `port`.
pub async fn query<T: redis::FromRedisValue>(port: u16, cmd: &redis::Cmd) -> redis::RedisResult<T> {
    query_as(port, None, cmd).await
}

/// `cmd` sent to the server on `port`, logged in with `password` if any.
pub async fn query_as<T: redis::FromRedisValue>(
    port: u16,
    password: Option<&str>,
    cmd: &redis::Cmd,
) -> redis::RedisResult<T> {
    let login = password.map_or(String::new(), |p| format!(":{p}@"));
    let client = redis::Client::open(format!("redis://{login}127.0.0.1:{port}"))?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    cmd.query_async(&mut conn).await
}

/// Polls `check` until it holds (every 50 ms, at most 30 s).
pub async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    eprintln!("waiting for {what}");
    while !tokio::time::timeout(Duration::from_secs(5), check())
        .await
        .unwrap_or(false)
    {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl SentinelSet {
    /// Starts the set: the primary on `base`, replicas on `base + 1` and
    /// `base + 2`, sentinels on `base + 11` to `base + 13`; returns once
    /// the replicas are in sync and the sentinels know each other. Each
    /// test using a set picks a `base` of its own.
    pub async fn start(base: u16) -> SentinelSet {
        SentinelSet::start_with(base, None, None).await
    }

    /// As [`SentinelSet::start`], every server and sentinel speaking TLS
    /// only, with the files of `tls`; [`SentinelSet::target`] names the
    /// sentinels `rediss://`.
    pub async fn start_with_tls(base: u16, tls: SetTls) -> SentinelSet {
        SentinelSet::start_with(base, None, Some(tls)).await
    }

    /// As [`SentinelSet::start`], with `requirepass` (and `masterauth`)
    /// `password` on the primary and the replicas; the sentinels ask none
    /// and log in to them with it. [`SentinelSet::target`] carries it.
    pub async fn start_with_password(base: u16, password: &str) -> SentinelSet {
        SentinelSet::start_with(base, Some(password.to_owned()), None).await
    }

    async fn start_with(base: u16, password: Option<String>, tls: Option<SetTls>) -> SentinelSet {
        let dir = std::env::temp_dir().join(format!("alias-sentinel-{}", uuid::Uuid::new_v4()));
        let args = |port: u16, replica: bool| {
            let mut args: Vec<String> = Vec::new();
            if replica {
                args.extend(["--replicaof", "127.0.0.1"].map(str::to_owned));
                args.push(base.to_string());
            }
            if let Some(p) = &password {
                args.extend(["--requirepass", p, "--masterauth", p].map(str::to_owned));
            }
            for (key, value) in tls.iter().flat_map(|t| t.settings(port)) {
                args.push(format!("--{key}"));
                args.push(value);
            }
            args
        };
        let start = |port: u16, replica: bool| {
            let args = args(port, replica);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            server(&dir, port, &args)
        };
        let primary = start(base, false);
        let replicas = (1..=2).map(|i| start(base + i, true)).collect();
        let mut set = SentinelSet {
            dir,
            primary,
            replicas,
            sentinels: Vec::new(),
            base,
            password,
            tls,
        };
        for port in set.replica_ports() {
            until("the replicas in sync", || async {
                set.ask::<String>(
                    port,
                    set.password.as_deref(),
                    redis::cmd("INFO").arg("replication"),
                )
                .await
                .is_ok_and(|info| info.contains("master_link_status:up"))
            })
            .await;
        }
        let auth_pass = set
            .password
            .as_ref()
            .map_or(String::new(), |p| format!("sentinel auth-pass alias {p}\n"));
        for port in set.sentinel_ports() {
            let conf = set.dir.join(format!("sentinel-{port}.conf"));
            let listen = match &set.tls {
                Some(tls) => tls
                    .settings(port)
                    .iter()
                    .map(|(key, value)| format!("{key} {value}\n"))
                    .collect(),
                None => format!("port {port}\n"),
            };
            std::fs::write(
                &conf,
                format!(
                    "{listen}bind 127.0.0.1\ndir {}\n\
                     sentinel monitor alias 127.0.0.1 {base} 2\n\
                     sentinel down-after-milliseconds alias 1000\n\
                     sentinel failover-timeout alias 5000\n{auth_pass}",
                    set.dir.display()
                ),
            )
            .unwrap();
            let child = Command::new("redis-server")
                .arg(&conf)
                .arg("--sentinel")
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server installed");
            set.sentinels.push(child);
        }
        for port in set.sentinel_ports() {
            until(
                "the sentinels to know each other and the replica",
                || async {
                    let master: redis::RedisResult<Vec<String>> = set
                        .ask(
                            port,
                            None,
                            redis::cmd("SENTINEL").arg("MASTER").arg("alias"),
                        )
                        .await;
                    master.is_ok_and(|m| {
                        let field = |name: &str| {
                            m.iter()
                                .position(|f| f == name)
                                .and_then(|i| m.get(i + 1))
                                .cloned()
                        };
                        field("num-slaves").as_deref() == Some("2")
                            && field("num-other-sentinels").as_deref() == Some("2")
                    })
                },
            )
            .await;
        }
        set
    }

    /// The replicas' ports.
    pub fn replica_ports(&self) -> [u16; 2] {
        [self.base + 1, self.base + 2]
    }

    /// The sentinels' ports.
    pub fn sentinel_ports(&self) -> [u16; 3] {
        [self.base + 11, self.base + 12, self.base + 13]
    }

    /// The state's target: the sentinels, master `alias`.
    pub fn target(&self) -> RedisTarget {
        RedisTarget::Sentinel {
            sentinels: self.sentinel_urls(),
            master: "alias".into(),
            login: super::PrimaryLogin {
                username: None,
                password: self.password.clone(),
            },
        }
    }

    /// The sentinels' URLs (`rediss://` for a TLS set).
    pub fn sentinel_urls(&self) -> Vec<String> {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        self.sentinel_ports()
            .iter()
            .map(|p| format!("{scheme}://127.0.0.1:{p}"))
            .collect()
    }

    /// Whether the primary the first sentinel names now is one of the
    /// replicas the set started with (a failover happened).
    pub async fn a_replica_took_over(&self) -> bool {
        let named: Vec<String> = self
            .ask(
                self.sentinel_ports()[0],
                None,
                redis::cmd("SENTINEL")
                    .arg("GET-MASTER-ADDR-BY-NAME")
                    .arg("alias"),
            )
            .await
            .unwrap();
        self.replica_ports()
            .iter()
            .any(|p| named.get(1) == Some(&p.to_string()))
    }

    /// `cmd` sent to the server or sentinel on `port` (over TLS for a TLS
    /// set), logged in with `password` if any.
    pub async fn ask<T: redis::FromRedisValue>(
        &self,
        port: u16,
        password: Option<&str>,
        cmd: &redis::Cmd,
    ) -> redis::RedisResult<T> {
        let Some(tls) = &self.tls else {
            return query_as(port, password, cmd).await;
        };
        let login = password.map_or(String::new(), |p| format!(":{p}@"));
        let client = redis::Client::build_with_tls(
            format!("rediss://{login}127.0.0.1:{port}"),
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(std::fs::read(&tls.ca)?),
            },
        )?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        cmd.query_async(&mut conn).await
    }

    /// Sends `signal` (`STOP`, `CONT`, …) to a process of the set.
    pub fn signal(child: &Child, signal: &str) {
        assert!(send(child, signal), "kill -{signal} {}", child.id());
    }

    /// Stops the replicas (`SIGSTOP`) until the guard is dropped
    /// (`SIGCONT`): writes reach the primary only, no replica confirms.
    pub fn pause_replicas(&self) -> PausedReplicas<'_> {
        for replica in &self.replicas {
            SentinelSet::signal(replica, "STOP");
        }
        PausedReplicas { set: self }
    }
}

/// Replicas stopped by [`SentinelSet::pause_replicas`]; dropping it lets
/// them go on.
pub struct PausedReplicas<'a> {
    set: &'a SentinelSet,
}

impl Drop for PausedReplicas<'_> {
    fn drop(&mut self) {
        for replica in &self.set.replicas {
            send(replica, "CONT");
        }
    }
}

/// Sends `signal` to `child`; whether `kill` succeeded.
fn send(child: &Child, signal: &str) -> bool {
    Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .is_ok_and(|s| s.success())
}

impl Drop for SentinelSet {
    fn drop(&mut self) {
        for child in std::iter::once(&mut self.primary)
            .chain(self.replicas.iter_mut())
            .chain(self.sentinels.iter_mut())
        {
            send(child, "CONT");
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Writes `field` of transfer `id`'s record (namespace `ns`, on the Redis
/// server of `redis_url`) straight into Redis, publishing nothing: how a
/// change published while a watcher's subscription was being renewed
/// looks to that watcher.
pub async fn write_without_event(redis_url: &str, ns: &str, id: &str, field: &str, value: &str) {
    let client = ::redis::Client::open(redis_url).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let () = ::redis::cmd("HSET")
        .arg(super::redis::transfer_key_in(ns, id))
        .arg(field)
        .arg(value)
        .query_async(&mut conn)
        .await
        .unwrap();
}
