//! The broker handle: one connection (to one node of a list), a publisher
//! channel with confirms, reconnection with backoff, moving to the next node.

use super::error::{timed_out, MqError};
use super::nodes::Nodes;
use super::topology::{self, Route, Topology};
use crate::retry::{Backoff, RetryPolicy};
use lapin::options::ConfirmSelectOptions;
use lapin::types::LongString;
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties};
use std::collections::HashSet;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tracing::{debug, info, warn};

/// How often the background supervisor checks the connection when nothing
/// reported an error.
const SUPERVISE_EVERY: Duration = Duration::from_secs(1);

/// AMQP reply code of a normal close.
const REPLY_SUCCESS: u16 = 200;

/// Tuning of a [`RabbitBroker`]; [`Default`] gives the documented values.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// How long a publish keeps reconnecting and retrying before it fails
    /// with [`MqError::Timeout`] (default 30 s). Consumers use it as the
    /// budget of one re-subscription attempt.
    pub publish_timeout: Duration,
    /// How long [`RabbitBroker::connect_with`] keeps trying to reach the broker at
    /// start (default 30 s), so that services may start before RabbitMQ.
    pub connect_timeout: Duration,
    /// How long one broker round trip (opening a connection or channel, a
    /// declaration, a publisher confirm, an ack) may take before the
    /// connection is considered broken (default 10 s).
    pub op_timeout: Duration,
    /// First reconnection delay (default 100 ms); doubles at every failure.
    pub backoff_min: Duration,
    /// Largest reconnection delay (default 5 s).
    pub backoff_max: Duration,
    /// The connection name shown by RabbitMQ (`connection_name` client
    /// property); default `alias-bank {namespace}`.
    pub connection_name: Option<String>,
    /// The AMQP heartbeat asked for when the URL gives none (`?heartbeat=`;
    /// default 10 s): a connection to a node cut off the network is known
    /// dead after two missed heartbeats, and the handle moves to another
    /// node. RabbitMQ's own default (60 s) left a partitioned node's clients
    /// waiting over two minutes.
    pub heartbeat: Duration,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            publish_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(30),
            op_timeout: Duration::from_secs(10),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            connection_name: None,
            heartbeat: Duration::from_secs(10),
        }
    }
}

/// A handle on RabbitMQ for one namespace: cheap to clone, shared by
/// publishers and consumers of a process.
///
/// It holds one connection and a publisher channel in confirm mode, and
/// re-establishes both (re-declaring the topology) with backoff whenever they
/// break, both on demand and from a background task, so that
/// [`RabbitBroker::is_healthy`] recovers even when idle.
///
/// Given the comma-separated URLs of a cluster's nodes, it connects to one of
/// them (the first attempt starts at a random node, so that clients spread)
/// and, when that connection breaks, tries the following nodes in turn: the
/// consumers and the publisher move to a live node.
#[derive(Clone)]
pub struct RabbitBroker {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    nodes: Nodes,
    pub(crate) topo: Topology,
    pub(crate) config: BrokerConfig,
    link: RwLock<Option<Arc<Link>>>,
    rebuild: tokio::sync::Mutex<()>,
    generation: AtomicU64,
    reconnects: AtomicU64,
    closed: Arc<AtomicBool>,
    wake: Arc<Notify>,
}

/// One established connection with its publisher channel.
pub(crate) struct Link {
    conn: Arc<Connection>,
    pub(crate) publisher: Channel,
    stale: AtomicBool,
    pub(crate) retry_declared: Mutex<HashSet<(Route, Duration)>>,
}

impl Link {
    fn usable(&self) -> bool {
        !self.stale.load(Ordering::SeqCst)
            && self.conn.status().connected()
            && self.publisher.status().connected()
    }

    /// Forces the next [`RabbitBroker::link`] to rebuild the publisher channel (and
    /// the connection if it is broken) and re-declare the topology.
    pub(crate) fn mark_stale(&self) {
        self.stale.store(true, Ordering::SeqCst);
    }
}

/// The time budget of one operation.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Budget {
    op: &'static str,
    started: Instant,
    deadline: Instant,
}

impl Budget {
    pub(crate) fn new(op: &'static str, total: Duration) -> Self {
        let started = Instant::now();
        Self {
            op,
            started,
            deadline: started + total,
        }
    }

    pub(crate) fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    pub(crate) fn timeout(&self, last: impl fmt::Display) -> MqError {
        MqError::Timeout {
            op: self.op,
            after: self.started.elapsed(),
            last: last.to_string(),
        }
    }
}

/// Runs a lapin future with a time limit, turning expiry into an I/O error.
pub(crate) async fn with_timeout<T>(
    limit: Duration,
    what: &str,
    fut: impl Future<Output = lapin::Result<T>>,
) -> lapin::Result<T> {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| Err(timed_out(what)))
}

/// Closes a channel, ignoring failures (it may be dead already).
pub(crate) async fn close_quietly(channel: &Channel, limit: Duration) {
    if channel.status().connected() {
        // Closing a dying channel may fail; there is nothing left to do.
        let _ = with_timeout(limit, "channel close", channel.close(REPLY_SUCCESS, "done")).await;
    }
}

impl fmt::Debug for RabbitBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitBroker")
            .field("nodes", &self.inner.nodes.shown_all())
            .field("node", &self.inner.nodes.current())
            .field("namespace", &self.inner.topo.namespace())
            .field("healthy", &self.current_usable().is_some())
            .finish()
    }
}

impl RabbitBroker {
    /// Connects to `amqp_url` (one URL or the comma-separated URLs of a
    /// cluster's nodes) with the default [`BrokerConfig`] and declares the
    /// topology of `namespace`.
    pub async fn connect(amqp_url: &str, namespace: &str) -> Result<RabbitBroker, MqError> {
        Self::connect_with(amqp_url, namespace, BrokerConfig::default()).await
    }

    /// Connects to `amqp_url` (one URL or the comma-separated URLs of a
    /// cluster's nodes, see [`super::split_amqp_urls`]) and declares the
    /// topology of `namespace`, trying the nodes in turn and retrying with
    /// backoff for [`BrokerConfig::connect_timeout`] while none is reachable
    /// (refused credentials and conflicting declarations fail at once). Must
    /// run inside a Tokio runtime.
    pub async fn connect_with(
        amqp_url: &str,
        namespace: &str,
        config: BrokerConfig,
    ) -> Result<RabbitBroker, MqError> {
        let topo = Topology::new(namespace)?;
        let nodes = Nodes::parse(amqp_url)?;
        let budget = Budget::new("connection", config.connect_timeout);
        let broker = RabbitBroker {
            inner: Arc::new(Inner {
                nodes,
                topo,
                config,
                link: RwLock::new(None),
                rebuild: tokio::sync::Mutex::new(()),
                generation: AtomicU64::new(0),
                reconnects: AtomicU64::new(0),
                closed: Arc::new(AtomicBool::new(false)),
                wake: Arc::new(Notify::new()),
            }),
        };
        broker.link(&budget).await?;
        spawn_supervisor(Arc::downgrade(&broker.inner), broker.inner.wake.clone());
        info!(
            node = broker.inner.nodes.current().unwrap_or_default(),
            namespace = broker.inner.topo.namespace(),
            "connected to RabbitMQ"
        );
        Ok(broker)
    }

    /// The names of this broker's exchange and queues.
    pub fn topology(&self) -> &Topology {
        &self.inner.topo
    }

    /// The configuration in use.
    pub fn config(&self) -> &BrokerConfig {
        &self.inner.config
    }

    /// The node of the current connection: its URL, password hidden (`None`
    /// before the first connection).
    pub fn node(&self) -> Option<String> {
        self.inner.nodes.current().map(str::to_owned)
    }

    /// How many times the connection or the publisher channel was
    /// re-established since [`RabbitBroker::connect`].
    pub fn reconnects(&self) -> u64 {
        self.inner.reconnects.load(Ordering::SeqCst)
    }

    /// Whether the connection and the publisher channel are up (readiness).
    pub async fn is_healthy(&self) -> bool {
        self.current_usable().is_some()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.inner.closed.load(Ordering::SeqCst)
    }

    pub(crate) fn backoff(&self) -> Backoff {
        Backoff::new(RetryPolicy::unbounded(
            self.inner.config.backoff_min,
            self.inner.config.backoff_max,
        ))
    }

    fn current(&self) -> Option<Arc<Link>> {
        self.inner
            .link
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn current_usable(&self) -> Option<Arc<Link>> {
        self.current().filter(|link| link.usable())
    }

    /// A usable link, re-established (with backoff, within `budget`) if the
    /// current one is broken or stale.
    pub(crate) async fn link(&self, budget: &Budget) -> Result<Arc<Link>, MqError> {
        if self.is_closed() {
            return Err(MqError::Shutdown);
        }
        if let Some(link) = self.current_usable() {
            return Ok(link);
        }
        let deadline = tokio::time::Instant::from_std(budget.deadline);
        let _guard = tokio::time::timeout_at(deadline, self.inner.rebuild.lock())
            .await
            .map_err(|_| budget.timeout("waiting for the reconnection in progress"))?;
        if let Some(link) = self.current_usable() {
            return Ok(link);
        }
        self.rebuild(budget).await
    }

    async fn rebuild(&self, budget: &Budget) -> Result<Arc<Link>, MqError> {
        let old = self.current();
        let mut backoff = self.backoff();
        loop {
            if self.is_closed() {
                return Err(MqError::Shutdown);
            }
            match self.build_link(old.as_deref()).await {
                Ok(link) => {
                    let link = Arc::new(link);
                    *self
                        .inner
                        .link
                        .write()
                        .unwrap_or_else(PoisonError::into_inner) = Some(link.clone());
                    if self.inner.generation.fetch_add(1, Ordering::SeqCst) > 0 {
                        self.inner.reconnects.fetch_add(1, Ordering::SeqCst);
                        info!(
                            namespace = self.inner.topo.namespace(),
                            "RabbitMQ link re-established"
                        );
                    }
                    return Ok(link);
                }
                Err(e) if e.is_permanent() => return Err(e),
                Err(e) => {
                    let delay = backoff.next_wait();
                    if budget.remaining() <= delay {
                        return Err(budget.timeout(e));
                    }
                    warn!(
                        namespace = self.inner.topo.namespace(),
                        error = %e,
                        retry_in = ?delay,
                        "RabbitMQ unavailable, retrying"
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    async fn build_link(&self, old: Option<&Link>) -> Result<Link, MqError> {
        let limit = self.inner.config.op_timeout;
        let conn = match old {
            Some(old) if old.conn.status().connected() => {
                close_quietly(&old.publisher, limit).await;
                old.conn.clone()
            }
            _ => Arc::new(self.open_connection().await?),
        };
        let publisher = with_timeout(limit, "channel open", conn.create_channel())
            .await
            .map_err(|source| MqError::Channel {
                op: "channel open",
                source,
            })?;
        tokio::time::timeout(limit, topology::declare(&publisher, &self.inner.topo))
            .await
            .unwrap_or_else(|_| {
                Err(MqError::Channel {
                    op: "topology declaration",
                    source: timed_out("topology declaration"),
                })
            })?;
        with_timeout(
            limit,
            "confirm.select",
            publisher.confirm_select(ConfirmSelectOptions::default()),
        )
        .await
        .map_err(|source| MqError::Channel {
            op: "confirm.select",
            source,
        })?;
        let wake = self.inner.wake.clone();
        publisher.on_error(move |err| {
            debug!(error = %err, "RabbitMQ publisher channel error");
            wake.notify_one();
        });
        Ok(Link {
            conn,
            publisher,
            stale: AtomicBool::new(false),
            retry_declared: Mutex::new(HashSet::new()),
        })
    }

    /// A connection to the first node that accepts one, in the order of
    /// [`Nodes::order`]; the last failure when none does.
    async fn open_connection(&self) -> Result<Connection, MqError> {
        let nodes = &self.inner.nodes;
        let mut last = None;
        for i in nodes.order() {
            match self.open_connection_to(i).await {
                Ok(conn) => {
                    nodes.connected(i);
                    info!(
                        node = nodes.shown(i),
                        namespace = self.inner.topo.namespace(),
                        "RabbitMQ connection opened"
                    );
                    return Ok(conn);
                }
                Err(e) if e.is_permanent() => return Err(e),
                Err(e) => {
                    debug!(node = nodes.shown(i), error = %e, "RabbitMQ node unreachable");
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| MqError::InvalidInput("no RabbitMQ node".to_owned())))
    }

    async fn open_connection_to(&self, node: usize) -> Result<Connection, MqError> {
        let config = &self.inner.config;
        let name = config
            .connection_name
            .clone()
            .unwrap_or_else(|| format!("alias-bank {}", self.inner.topo.namespace()));
        let properties = ConnectionProperties::default()
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio)
            .with_connection_name(LongString::from(name));
        let shown = || self.inner.nodes.shown(node).to_owned();
        // Checked when the list was parsed (`Nodes::parse`).
        let mut uri: AMQPUri = self
            .inner
            .nodes
            .url(node)
            .parse()
            .map_err(|e: String| MqError::InvalidInput(format!("AMQP URL {}: {e}", shown())))?;
        if uri.query.heartbeat.is_none() {
            uri.query.heartbeat =
                Some(u16::try_from(config.heartbeat.as_secs()).unwrap_or(u16::MAX));
        }
        let conn = with_timeout(
            config.op_timeout,
            "connection",
            Connection::connect_uri(uri, properties),
        )
        .await
        .map_err(|source| MqError::Connect {
            url: shown(),
            source,
        })?;
        let wake = self.inner.wake.clone();
        let closed = self.inner.closed.clone();
        let namespace = self.inner.topo.namespace().to_owned();
        let shown = self.inner.nodes.shown(node).to_owned();
        conn.on_error(move |err| {
            if closed.load(Ordering::SeqCst) {
                debug!(%namespace, node = %shown, error = %err, "RabbitMQ connection ended after close");
            } else {
                warn!(%namespace, node = %shown, error = %err, "RabbitMQ connection lost");
            }
            wake.notify_one();
        });
        Ok(conn)
    }

    /// A new channel on the current connection.
    pub(crate) async fn open_channel(&self, link: &Link) -> Result<Channel, MqError> {
        with_timeout(
            self.inner.config.op_timeout,
            "channel open",
            link.conn.create_channel(),
        )
        .await
        .map_err(|source| {
            link.mark_stale();
            MqError::Channel {
                op: "channel open",
                source,
            }
        })
    }

    /// Closes the connection: consumers end, later operations fail with
    /// [`MqError::Shutdown`]. Unacked deliveries go back to their queues.
    pub async fn close(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        self.inner.wake.notify_one();
        let link = self
            .inner
            .link
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(link) = link {
            let limit = self.inner.config.op_timeout;
            close_quietly(&link.publisher, limit).await;
            if link.conn.status().connected() {
                // Closing: a failure leaves a connection the broker drops.
                let _ = with_timeout(
                    limit,
                    "connection close",
                    link.conn.close(REPLY_SUCCESS, "bye"),
                )
                .await;
            }
        }
    }
}

/// Re-establishes a broken link in the background, woken by connection and
/// channel errors and every [`SUPERVISE_EVERY`]; ends with the last
/// [`RabbitBroker`] clone or on [`RabbitBroker::close`].
fn spawn_supervisor(inner: Weak<Inner>, wake: Arc<Notify>) {
    tokio::spawn(async move {
        loop {
            // Woken or timed out: either way, look at the link.
            let _ = tokio::time::timeout(SUPERVISE_EVERY, wake.notified()).await;
            let Some(inner) = inner.upgrade() else { break };
            let broker = RabbitBroker { inner };
            if broker.is_closed() {
                break;
            }
            let broken = broker.current().is_some_and(|link| {
                !(link.conn.status().connected() && link.publisher.status().connected())
            });
            if broken {
                let budget = Budget::new("reconnection", broker.inner.config.connect_timeout);
                if let Err(e) = broker.link(&budget).await {
                    warn!(error = %e, "RabbitMQ reconnection failed, will retry");
                    tokio::time::sleep(broker.inner.config.backoff_max).await;
                }
            }
        }
    });
}
