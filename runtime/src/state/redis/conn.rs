//! The connection to Redis in its three forms: one server and a primary
//! watched by Sentinel ([`Managed`]: a `ConnectionManager` replaced by a
//! fresh one when its connection breaks, stops answering, or, under
//! Sentinel, answers `READONLY`, which is what a primary demoted by a
//! failover does; the fresh one goes to the address the sentinels name
//! now), and a Redis Cluster (the crate's [`ClusterConnection`], which
//! follows `MOVED` and slot changes).
//!
//! Every command is bounded in time ([`COMMAND_DEADLINE`]): a connection
//! whose server vanished, or whose reconnection hangs (a proxy that
//! accepts connections for a dead server and closes them), answers with a
//! timeout error instead of holding its caller, and its job's leases,
//! for minutes.
//!
//! Also the pub/sub side: where [`super::EventHub`] subscribes in each form
//! ([`Subscriber`]), and the masters a cluster-wide `SCAN` visits.

use super::sentinel::Sentinels;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, PubSub};
use redis::cluster_async::ClusterConnection;
use redis::{
    ClientTlsConfig, Cmd, ConnectionAddr, ConnectionInfo, ErrorKind, IntoConnectionInfo, Pipeline,
    RedisError, RedisFuture, RedisResult, TlsCertificates, Value,
};
use std::sync::{Arc, RwLock};

/// How long any command waits for its answer. Without a bound, a command
/// sent to a server that vanished without closing the connection (a host
/// gone from the network, a primary lost in a failover) waits as long as
/// the kernel keeps the socket: many minutes, with its job and the job's
/// leases held all along. Above the longest `WAIT` sent (2 s).
pub(super) const RESPONSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long connecting to a server may take.
pub(super) const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The most a command may take from the caller's view, reconnection
/// included: the answer's own bound and a connection attempt.
pub(super) const COMMAND_DEADLINE: std::time::Duration = std::time::Duration::from_secs(12);

/// `fut`, or a timeout error (`is_timeout()`) after `limit`.
pub(super) async fn bounded<T>(
    limit: std::time::Duration,
    fut: impl std::future::Future<Output = RedisResult<T>>,
) -> RedisResult<T> {
    match tokio::time::timeout(limit, fut).await {
        Ok(result) => result,
        Err(_) => Err(RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer from Redis in {limit:?}"),
        ))),
    }
}

/// Where the state lives: one Redis server, a Redis Cluster, or a primary
/// and its replicas watched by Redis Sentinel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One server (`ALIAS_REDIS_URL`).
    Single(String),
    /// Seed nodes of a Redis Cluster (`ALIAS_REDIS_CLUSTER_URLS`); the
    /// client learns the other nodes from them.
    Cluster(Vec<String>),
    /// Sentinels (`ALIAS_REDIS_SENTINEL_URLS`) and the name of the primary
    /// they watch (`ALIAS_REDIS_SENTINEL_MASTER`).
    Sentinel {
        /// The sentinels' `redis://` URLs.
        sentinels: Vec<String>,
        /// The master name the sentinels monitor.
        master: String,
        /// How to log in to the primary they name (their URLs carry only
        /// their own passwords).
        login: PrimaryLogin,
    },
}

/// The login to the primary the sentinels name
/// (`ALIAS_REDIS_SENTINEL_USERNAME`, `ALIAS_REDIS_SENTINEL_PASSWORD`): a
/// Redis with `requirepass` or ACL users refuses every command without it.
/// The password is never shown by `Debug`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PrimaryLogin {
    /// The ACL user (`None`: the `default` user).
    pub username: Option<String>,
    /// Its password (`None`: no `AUTH`).
    pub password: Option<String>,
}

impl std::fmt::Debug for PrimaryLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrimaryLogin")
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "(hidden)"))
            .finish()
    }
}

/// TLS to Redis beyond what a `rediss://` URL says by itself: the
/// authorities trusted instead of the system's (`ALIAS_REDIS_CA_FILE`), and
/// the certificate the bank shows a server that asks for one
/// (`ALIAS_REDIS_CLIENT_CERT_FILE`, `ALIAS_REDIS_CLIENT_KEY_FILE`), all as
/// PEM. Without any, a `rediss://` server is checked against the system's
/// authorities (and `SSL_CERT_FILE`). Certificate checks cannot be turned
/// off. The key is never shown by `Debug`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RedisTls {
    /// The authorities (PEM) a server's certificate must chain to.
    pub ca_pem: Option<Vec<u8>>,
    /// The certificate chain (PEM) shown to servers that ask for one.
    pub client_cert_pem: Option<Vec<u8>>,
    /// Its private key (PEM).
    pub client_key_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let size = |pem: &Option<Vec<u8>>| pem.as_ref().map(|p| format!("{} bytes", p.len()));
        f.debug_struct("RedisTls")
            .field("ca_pem", &size(&self.ca_pem))
            .field("client_cert_pem", &size(&self.client_cert_pem))
            .field(
                "client_key_pem",
                &self.client_key_pem.as_ref().map(|_| "(hidden)"),
            )
            .finish()
    }
}

impl RedisTls {
    /// Whether anything beyond the system's authorities is set.
    pub fn is_set(&self) -> bool {
        self != &RedisTls::default()
    }

    /// What the client crate takes; `None` when nothing is set.
    fn certificates(&self) -> Option<TlsCertificates> {
        if !self.is_set() {
            return None;
        }
        let client_tls = match (&self.client_cert_pem, &self.client_key_pem) {
            (Some(cert), Some(key)) => Some(ClientTlsConfig {
                client_cert: cert.clone(),
                client_key: key.clone(),
            }),
            _ => None,
        };
        Some(TlsCertificates {
            client_tls,
            root_cert: self.ca_pem.clone(),
        })
    }

    /// A client of `url`: a `rediss://` one with these settings when any
    /// is set.
    pub(super) fn client(&self, url: &str) -> RedisResult<redis::Client> {
        self.client_of(url.into_connection_info()?)
    }

    /// A client of `info`: with these settings when it is a TLS address
    /// and any is set.
    pub(super) fn client_of(&self, info: ConnectionInfo) -> RedisResult<redis::Client> {
        match (self.certificates(), &info.addr) {
            (Some(certs), ConnectionAddr::TcpTls { .. }) => {
                redis::Client::build_with_tls(info, certs)
            }
            _ => redis::Client::open(info),
        }
    }

    /// Whether the PEM parses (certificates, and a key that is one):
    /// checked when the configuration is read, so that a bad file stops
    /// the binary at start rather than at its first connection.
    pub fn check(&self) -> Result<(), String> {
        self.client("rediss://127.0.0.1")
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

impl std::fmt::Display for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RedisTarget::Single(url) => write!(f, "{url}"),
            RedisTarget::Cluster(urls) => write!(f, "cluster {}", urls.join(",")),
            RedisTarget::Sentinel {
                sentinels, master, ..
            } => {
                write!(f, "sentinel {} master {master}", sentinels.join(","))
            }
        }
    }
}

/// The connections of a store: the shared one, and the ones that wait for
/// a replica under Sentinel (grant intakes; jobs about to be acknowledged):
/// a `WAIT` blocks its connection, so each has its own there.
pub(super) struct Opened {
    pub(super) conn: Conn,
    pub(super) intake: Conn,
    pub(super) subscriber: Subscriber,
    /// Under Sentinel: the connection that waits for a replica before a
    /// job is acknowledged (see `replicas.rs`).
    pub(super) settle: Option<Conn>,
}

/// The store's connection, cheap to clone (all forms multiplex).
#[derive(Clone)]
pub(super) enum Conn {
    Single(Managed),
    Cluster(ClusterConnection),
    Sentinel(Managed),
}

impl Conn {
    /// Connects in the form `target` names.
    pub(super) async fn open(target: &RedisTarget, tls: &RedisTls) -> RedisResult<Opened> {
        let shared = |conn: Conn, subscriber| Opened {
            intake: conn.clone(),
            conn,
            subscriber,
            settle: None,
        };
        match target {
            RedisTarget::Single(url) => {
                let client = tls.client(url)?;
                let conn = Managed::fixed(client.clone()).await?;
                Ok(shared(Conn::Single(conn), Subscriber::Single(client)))
            }
            RedisTarget::Cluster(urls) => {
                let seeds = urls
                    .iter()
                    .map(|u| tls.client(u))
                    .collect::<RedisResult<Vec<_>>>()?;
                let mut builder = redis::cluster::ClusterClient::builder(urls.clone())
                    .response_timeout(RESPONSE_TIMEOUT)
                    .connection_timeout(CONNECT_TIMEOUT);
                if let Some(certs) = tls.certificates() {
                    builder = builder.certs(certs);
                }
                let client = builder.build()?;
                let conn = client.get_async_connection().await?;
                Ok(shared(Conn::Cluster(conn), Subscriber::Cluster(seeds)))
            }
            RedisTarget::Sentinel {
                sentinels,
                master,
                login,
            } => {
                let conn = Managed::sentinel(sentinels, master, login, tls).await?;
                let intake = Managed::sentinel(sentinels, master, login, tls).await?;
                let settle = Managed::sentinel(sentinels, master, login, tls).await?;
                Ok(Opened {
                    conn: Conn::Sentinel(conn.clone()),
                    intake: Conn::Sentinel(intake),
                    subscriber: Subscriber::Sentinel(conn),
                    settle: Some(Conn::Sentinel(settle)),
                })
            }
        }
    }

    /// Whether this is a primary with replicas under Sentinel, where a
    /// write that must survive a failover waits for a replica.
    pub(super) fn has_replicas(&self) -> bool {
        matches!(self, Conn::Sentinel(_))
    }

    /// Whether this is a Redis Cluster (keys of one script must share a
    /// slot, and a `SCAN` visits one node).
    pub(super) fn is_cluster(&self) -> bool {
        matches!(self, Conn::Cluster(_))
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) | Conn::Sentinel(c) => Box::pin(c.command(cmd)),
            Conn::Cluster(c) => Box::pin(bounded(COMMAND_DEADLINE, c.req_packed_command(cmd))),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) | Conn::Sentinel(c) => Box::pin(c.commands(cmd, offset, count)),
            Conn::Cluster(c) => Box::pin(bounded(
                COMMAND_DEADLINE,
                c.req_packed_commands(cmd, offset, count),
            )),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) | Conn::Sentinel(c) => c.current().1.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Where a [`Managed`] connection goes: one fixed address, or the primary
/// the sentinels name at the time.
enum Source {
    Fixed(redis::Client),
    Sentinel(Box<Sentinels>),
}

/// A connection to one server (fixed, or the primary of a Sentinel-watched
/// set), replaced by a fresh `ConnectionManager` when it is lost.
#[derive(Clone)]
pub(super) struct Managed {
    shared: Arc<ManagedShared>,
}

struct ManagedShared {
    /// Where to connect (behind the lock that serializes replacements).
    source: tokio::sync::Mutex<Source>,
    /// The current connection and how many times it was replaced.
    current: RwLock<(u64, ConnectionManager)>,
}

/// Whether an error means the connection no longer reaches its server (or
/// no longer the primary): broken, refused, timed out, or answered by a
/// demoted primary (`READONLY`).
fn lost_server(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || matches!(e.kind(), ErrorKind::ReadOnly | ErrorKind::MasterDown)
}

/// Whether the command surely did nothing, so that sending it again to the
/// new primary cannot apply it twice: a replica refuses writes whole.
fn surely_not_applied(e: &RedisError) -> bool {
    e.kind() == ErrorKind::ReadOnly
}

/// A connection manager that gives up quickly: when the server is gone, a
/// fresh manager replaces it (under Sentinel, to the primary named then)
/// instead of retrying the old one (requests wait for a reconnection in
/// progress, within [`COMMAND_DEADLINE`]).
async fn manager(client: redis::Client) -> RedisResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_number_of_retries(1)
        .set_response_timeout(RESPONSE_TIMEOUT)
        .set_connection_timeout(CONNECT_TIMEOUT);
    bounded(
        CONNECT_TIMEOUT * 2,
        ConnectionManager::new_with_config(client, config),
    )
    .await
}

impl Source {
    /// The client to connect now.
    async fn client(&mut self) -> RedisResult<redis::Client> {
        match self {
            Source::Fixed(client) => Ok(client.clone()),
            Source::Sentinel(sentinels) => sentinels.primary().await,
        }
    }
}

impl Managed {
    async fn open(mut source: Source) -> RedisResult<Managed> {
        let conn = manager(source.client().await?).await?;
        Ok(Managed {
            shared: Arc::new(ManagedShared {
                source: tokio::sync::Mutex::new(source),
                current: RwLock::new((0, conn)),
            }),
        })
    }

    /// A connection to one server.
    async fn fixed(client: redis::Client) -> RedisResult<Managed> {
        Managed::open(Source::Fixed(client)).await
    }

    /// A connection to the primary the sentinels name, followed across
    /// failovers.
    async fn sentinel(
        sentinels: &[String],
        master: &str,
        login: &PrimaryLogin,
        tls: &RedisTls,
    ) -> RedisResult<Managed> {
        let sentinels = Sentinels::new(sentinels, master, login, tls)?;
        Managed::open(Source::Sentinel(Box::new(sentinels))).await
    }

    fn current(&self) -> (u64, ConnectionManager) {
        match self.shared.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// A client of the server (under Sentinel, the primary the sentinels
    /// name now, as they check its role), for a pub/sub connection.
    pub(super) async fn client(&self) -> RedisResult<redis::Client> {
        self.shared.source.lock().await.client().await
    }

    /// Replaces the connection, unless another caller did since `seen`
    /// was current.
    async fn replace(&self, seen: u64) -> RedisResult<()> {
        let mut source = self.shared.source.lock().await;
        if self.current().0 != seen {
            return Ok(());
        }
        let conn = manager(source.client().await?).await?;
        let mut current = match self.shared.current.write() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        *current = (seen + 1, conn);
        if let Source::Sentinel(sentinels) = &*source {
            tracing::info!(
                master = sentinels.master(),
                "redis sentinel: primary resolved again"
            );
        } else {
            tracing::info!("redis: connection replaced");
        }
        Ok(())
    }

    /// After an error that lost the server: replaces the connection (a
    /// failure to do so is logged; the caller gets the original error).
    /// Whether the command may be sent again on the new one.
    async fn recover(&self, seen: u64, e: &RedisError) -> bool {
        if !lost_server(e) {
            return false;
        }
        if let Err(re) = self.replace(seen).await {
            tracing::warn!(error = %re, cause = %e, "redis: no connection yet");
            return false;
        }
        surely_not_applied(e)
    }

    async fn command(&self, cmd: &Cmd) -> RedisResult<Value> {
        let (seen, mut conn) = self.current();
        match bounded(COMMAND_DEADLINE, conn.req_packed_command(cmd)).await {
            Err(e) if self.recover(seen, &e).await => {
                let mut conn = self.current().1;
                bounded(COMMAND_DEADLINE, conn.req_packed_command(cmd)).await
            }
            other => other,
        }
    }

    async fn commands(
        &self,
        cmd: &Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        let (seen, mut conn) = self.current();
        match bounded(
            COMMAND_DEADLINE,
            conn.req_packed_commands(cmd, offset, count),
        )
        .await
        {
            Err(e) if self.recover(seen, &e).await => {
                let mut conn = self.current().1;
                bounded(
                    COMMAND_DEADLINE,
                    conn.req_packed_commands(cmd, offset, count),
                )
                .await
            }
            other => other,
        }
    }
}

/// Where the event hub subscribes: the server; any node of a cluster (a
/// `PUBLISH` reaches every node of a Redis Cluster), trying the seeds in
/// turn; the primary the sentinels name.
#[derive(Clone)]
pub(super) enum Subscriber {
    Single(redis::Client),
    Cluster(Vec<redis::Client>),
    Sentinel(Managed),
}

impl Subscriber {
    /// A pub/sub connection; `attempt` picks the seed of a cluster.
    pub(super) async fn pubsub(&self, attempt: usize) -> RedisResult<PubSub> {
        match self {
            Subscriber::Single(client) => client.get_async_pubsub().await,
            Subscriber::Cluster(seeds) => match seeds.get(attempt % seeds.len().max(1)) {
                Some(client) => client.get_async_pubsub().await,
                None => Err(RedisError::from((
                    ErrorKind::ClientError,
                    "no cluster seed to subscribe on",
                ))),
            },
            Subscriber::Sentinel(conn) => conn.client().await?.get_async_pubsub().await,
        }
    }
}

/// The URLs of the masters of a cluster (from `CLUSTER SLOTS`, with the
/// scheme and credentials of `seed`), for a `SCAN` of each.
pub(super) async fn cluster_masters(conn: &mut Conn, seed: &str) -> RedisResult<Vec<String>> {
    let slots: Vec<Value> = redis::cmd("CLUSTER").arg("SLOTS").query_async(conn).await?;
    let base = url::Url::parse(seed).map_err(|e| {
        RedisError::from((ErrorKind::InvalidClientConfig, "seed URL", e.to_string()))
    })?;
    let mut masters = Vec::new();
    for range in slots {
        let Value::Array(parts) = range else { continue };
        let Some(Value::Array(node)) = parts.get(2) else {
            continue;
        };
        let (Some(host), Some(port)) = (node.first(), node.get(1)) else {
            continue;
        };
        let host: String = redis::from_redis_value(host)?;
        let port: u16 = redis::from_redis_value(port)?;
        let mut url = base.clone();
        if url.set_host(Some(&host)).is_err() || url.set_port(Some(port)).is_err() {
            continue;
        }
        let url = url.to_string();
        if !masters.contains(&url) {
            masters.push(url);
        }
    }
    Ok(masters)
}
