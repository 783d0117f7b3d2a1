//! The connection to Redis in its three forms: one server
//! ([`ConnectionManager`], reconnecting to the same address), a Redis
//! Cluster (the crate's [`ClusterConnection`], which follows `MOVED` and
//! slot changes), and a primary watched by Sentinel ([`SentinelConn`]: a
//! `ConnectionManager` to the primary the sentinels name, resolved again
//! when the connection breaks or the server answers `READONLY`, which is
//! what a primary demoted by a failover does).
//!
//! Also the pub/sub side: where [`super::EventHub`] subscribes in each form
//! ([`Subscriber`]), and the masters a cluster-wide `SCAN` visits.

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, PubSub};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::Sentinel;
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, Value};
use std::sync::{Arc, RwLock};

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
    },
}

impl std::fmt::Display for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RedisTarget::Single(url) => write!(f, "{url}"),
            RedisTarget::Cluster(urls) => write!(f, "cluster {}", urls.join(",")),
            RedisTarget::Sentinel { sentinels, master } => {
                write!(f, "sentinel {} master {master}", sentinels.join(","))
            }
        }
    }
}

/// The connections of a store: the shared one, and the one grant intakes
/// use, which waits for a replica under Sentinel (a `WAIT` blocks its
/// connection, so it has its own there).
pub(super) struct Opened {
    pub(super) conn: Conn,
    pub(super) intake: Conn,
    pub(super) subscriber: Subscriber,
}

/// The store's connection, cheap to clone (all forms multiplex).
#[derive(Clone)]
pub(super) enum Conn {
    Single(Box<ConnectionManager>),
    Cluster(ClusterConnection),
    Sentinel(SentinelConn),
}

impl Conn {
    /// Connects in the form `target` names.
    pub(super) async fn open(target: &RedisTarget) -> RedisResult<Opened> {
        let shared = |conn: Conn, subscriber| Opened {
            intake: conn.clone(),
            conn,
            subscriber,
        };
        match target {
            RedisTarget::Single(url) => {
                let client = redis::Client::open(url.as_str())?;
                let conn = ConnectionManager::new(client.clone()).await?;
                Ok(shared(
                    Conn::Single(Box::new(conn)),
                    Subscriber::Single(client),
                ))
            }
            RedisTarget::Cluster(urls) => {
                let seeds = urls
                    .iter()
                    .map(|u| redis::Client::open(u.as_str()))
                    .collect::<RedisResult<Vec<_>>>()?;
                let client = redis::cluster::ClusterClient::new(urls.clone())?;
                let conn = client.get_async_connection().await?;
                Ok(shared(Conn::Cluster(conn), Subscriber::Cluster(seeds)))
            }
            RedisTarget::Sentinel { sentinels, master } => {
                let conn = SentinelConn::connect(sentinels, master).await?;
                let intake = SentinelConn::connect(sentinels, master).await?;
                Ok(Opened {
                    conn: Conn::Sentinel(conn.clone()),
                    intake: Conn::Sentinel(intake),
                    subscriber: Subscriber::Sentinel(conn),
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
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
            Conn::Sentinel(c) => Box::pin(c.command(cmd)),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Sentinel(c) => Box::pin(c.commands(cmd, offset, count)),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
            Conn::Sentinel(_) => 0,
        }
    }
}

/// The connection to the primary of a Sentinel-watched set.
#[derive(Clone)]
pub(super) struct SentinelConn {
    shared: Arc<SentinelShared>,
}

struct SentinelShared {
    sentinel: tokio::sync::Mutex<Sentinel>,
    master: String,
    /// The primary's connection and how many times it was resolved.
    current: RwLock<(u64, ConnectionManager)>,
}

/// Whether an error means the connection no longer reaches the primary:
/// broken, refused, or answered by a demoted primary (`READONLY`).
fn lost_primary(e: &RedisError) -> bool {
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

/// A connection to a primary that gives up quickly: when the primary is
/// gone, the sentinels are asked for the next one instead of retrying the
/// old address (requests wait for a reconnection in progress).
async fn primary_manager(client: redis::Client) -> RedisResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_number_of_retries(1)
        .set_connection_timeout(std::time::Duration::from_secs(2));
    ConnectionManager::new_with_config(client, config).await
}

impl SentinelConn {
    async fn connect(sentinels: &[String], master: &str) -> RedisResult<SentinelConn> {
        let mut sentinel = Sentinel::build(sentinels.to_vec())?;
        let client = sentinel.async_master_for(master, None).await?;
        let conn = primary_manager(client).await?;
        Ok(SentinelConn {
            shared: Arc::new(SentinelShared {
                sentinel: tokio::sync::Mutex::new(sentinel),
                master: master.to_owned(),
                current: RwLock::new((0, conn)),
            }),
        })
    }

    fn current(&self) -> (u64, ConnectionManager) {
        match self.shared.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// A client of the primary the sentinels name now (they check its
    /// role), for a pub/sub connection.
    pub(super) async fn primary(&self) -> RedisResult<redis::Client> {
        let mut sentinel = self.shared.sentinel.lock().await;
        sentinel.async_master_for(&self.shared.master, None).await
    }

    /// Asks the sentinels for the primary again, unless another caller did
    /// since `seen` was current.
    async fn resolve(&self, seen: u64) -> RedisResult<()> {
        let mut sentinel = self.shared.sentinel.lock().await;
        if self.current().0 != seen {
            return Ok(());
        }
        let client = sentinel.async_master_for(&self.shared.master, None).await?;
        let conn = primary_manager(client).await?;
        let mut current = match self.shared.current.write() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        *current = (seen + 1, conn);
        tracing::info!(master = %self.shared.master, "redis sentinel: primary resolved again");
        Ok(())
    }

    /// After an error that lost the primary: resolves it again (a failure
    /// to do so is logged; the caller gets the original error).
    async fn recover(&self, seen: u64, e: &RedisError) -> bool {
        if !lost_primary(e) {
            return false;
        }
        if let Err(re) = self.resolve(seen).await {
            tracing::warn!(error = %re, cause = %e, "redis sentinel: no primary yet");
            return false;
        }
        surely_not_applied(e)
    }

    async fn command(&self, cmd: &Cmd) -> RedisResult<Value> {
        let (seen, mut conn) = self.current();
        match conn.req_packed_command(cmd).await {
            Err(e) if self.recover(seen, &e).await => {
                self.current().1.req_packed_command(cmd).await
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
        match conn.req_packed_commands(cmd, offset, count).await {
            Err(e) if self.recover(seen, &e).await => {
                self.current()
                    .1
                    .req_packed_commands(cmd, offset, count)
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
    Sentinel(SentinelConn),
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
            Subscriber::Sentinel(conn) => conn.primary().await?.get_async_pubsub().await,
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
