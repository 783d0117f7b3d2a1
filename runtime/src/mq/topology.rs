//! Names and declarations of the namespaced exchange and queues.

use super::error::{lapin_kind, MqError};
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// The delays a delayed message can wait, smallest first; a requested delay
/// is rounded up to the next one (see [`retry_bucket`]).
pub const RETRY_BUCKETS: [Duration; 6] = [
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(120),
    Duration::from_secs(600),
    Duration::from_secs(3600),
];

/// How many times a work queue delivers a message before the broker
/// dead-letters it to `{ns}.dead` (the quorum queue `x-delivery-limit`); it
/// ends poison messages that crash their worker. Retries decided by a worker
/// go through [`Broker::publish_delayed`](super::MessageBus::publish_delayed) and do not count.
pub const DELIVERY_LIMIT: i64 = 20;

/// The delivery limit of the dead-letter queue: practically none, because
/// [`super::Broker::dead_letters`] returns what it lists to the queue, which
/// counts as a delivery (RabbitMQ 4 sets a limit of 20 on quorum queues by
/// default, and `-1` drops messages on RabbitMQ 3).
const DEAD_DELIVERY_LIMIT: i64 = 1_000_000_000;

/// Routing key of the dead-letter queue.
pub(crate) const DEAD_KEY: &str = "dead";

/// Longest accepted namespace (queue names are limited to 255 bytes).
const MAX_NAMESPACE: usize = 100;

/// The retry bucket used for `delay`: the smallest of [`RETRY_BUCKETS`] not
/// shorter than `delay`, or the largest bucket for longer delays.
pub fn retry_bucket(delay: Duration) -> Duration {
    let largest = RETRY_BUCKETS[RETRY_BUCKETS.len() - 1];
    RETRY_BUCKETS
        .iter()
        .copied()
        .find(|bucket| *bucket >= delay)
        .unwrap_or(largest)
}

/// A work queue, and the routing key that leads to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    /// Process jobs (`{ns}.process`, routing key `process`).
    Process,
    /// Push jobs (`{ns}.push`, routing key `push`).
    Push,
    /// Preview jobs (`{ns}.preview`, routing key `preview`): dry runs of
    /// the build for the consent page, taken by the processors.
    Preview,
}

impl Route {
    /// Every route.
    pub const ALL: [Route; 3] = [Route::Process, Route::Push, Route::Preview];

    /// The routing key, also the last part of the work queue's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Process => "process",
            Route::Push => "push",
            Route::Preview => "preview",
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Route {
    type Err = MqError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Route::ALL
            .into_iter()
            .find(|route| route.as_str() == s)
            .ok_or_else(|| MqError::InvalidInput(format!("unknown route {s:?}")))
    }
}

/// A queue whose depth [`super::Broker::queue_depth`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Queue {
    /// The work queue of a route.
    Work(Route),
    /// The messages of a route waiting in the retry queues (all buckets).
    Delayed(Route),
    /// The dead-letter queue.
    Dead,
}

impl From<Route> for Queue {
    fn from(route: Route) -> Self {
        Queue::Work(route)
    }
}

/// The names of one namespace's exchange and queues.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    ns: String,
}

impl Topology {
    /// The topology of `namespace`: 1 to 100 characters of `[A-Za-z0-9_.-]`.
    pub fn new(namespace: &str) -> Result<Self, MqError> {
        let ok = !namespace.is_empty()
            && namespace.len() <= MAX_NAMESPACE
            && namespace
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if ok {
            Ok(Self {
                ns: namespace.to_owned(),
            })
        } else {
            Err(MqError::InvalidInput(format!(
                "namespace {namespace:?}: use 1-{MAX_NAMESPACE} characters of [A-Za-z0-9_.-]"
            )))
        }
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.ns
    }

    /// The direct exchange (named as the namespace).
    pub fn exchange(&self) -> &str {
        &self.ns
    }

    /// The work queue of `route`: `{ns}.{route}`.
    pub fn work_queue(&self, route: Route) -> String {
        format!("{}.{route}", self.ns)
    }

    /// The dead-letter queue: `{ns}.dead`.
    pub fn dead_queue(&self) -> String {
        format!("{}.dead", self.ns)
    }

    /// The retry queue of `route` for the bucket of `delay`:
    /// `{ns}.retry.{route}.{bucket_ms}`.
    pub fn retry_queue(&self, route: Route, delay: Duration) -> String {
        format!(
            "{}.retry.{route}.{}",
            self.ns,
            retry_bucket(delay).as_millis()
        )
    }

    /// Every queue name of the namespace, retry queues included.
    pub fn all_queues(&self) -> Vec<String> {
        let mut names: Vec<String> = Route::ALL.iter().map(|r| self.work_queue(*r)).collect();
        names.push(self.dead_queue());
        for route in Route::ALL {
            names.extend(RETRY_BUCKETS.iter().map(|b| self.retry_queue(route, *b)));
        }
        names
    }

    /// The route whose work queue is `queue`, if any.
    pub fn route_of_queue(&self, queue: &str) -> Option<Route> {
        Route::ALL
            .into_iter()
            .find(|route| self.work_queue(*route) == queue)
    }

    fn work_queue_args(&self) -> FieldTable {
        let mut args = quorum_args();
        insert_str(&mut args, "x-dead-letter-exchange", &self.ns);
        insert_str(&mut args, "x-dead-letter-routing-key", DEAD_KEY);
        insert_str(&mut args, "x-dead-letter-strategy", "at-least-once");
        insert_str(&mut args, "x-overflow", "reject-publish");
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(DELIVERY_LIMIT),
        );
        args
    }

    fn retry_queue_args(&self, route: Route, bucket: Duration) -> FieldTable {
        let mut args = quorum_args();
        let ttl = i64::try_from(bucket.as_millis()).unwrap_or(i64::MAX);
        args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl));
        insert_str(&mut args, "x-dead-letter-exchange", &self.ns);
        insert_str(&mut args, "x-dead-letter-routing-key", route.as_str());
        insert_str(&mut args, "x-dead-letter-strategy", "at-least-once");
        insert_str(&mut args, "x-overflow", "reject-publish");
        args
    }
}

fn quorum_args() -> FieldTable {
    let mut args = FieldTable::default();
    insert_str(&mut args, "x-queue-type", "quorum");
    args
}

fn insert_str(table: &mut FieldTable, key: &str, value: &str) {
    table.insert(
        ShortString::from(key),
        AMQPValue::LongString(LongString::from(value)),
    );
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

/// Declares the exchange, the work queues and the dead-letter queue with
/// their bindings on `channel` (the channel is closed by the broker if a
/// declaration conflicts with an existing one).
pub(crate) async fn declare(channel: &Channel, topo: &Topology) -> Result<(), MqError> {
    let declare_err = |what: &str| {
        let what = what.to_owned();
        move |source| MqError::Declare { what, source }
    };
    let exchange_options = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(
            topo.exchange(),
            ExchangeKind::Direct,
            exchange_options,
            FieldTable::default(),
        )
        .await
        .map_err(declare_err(&format!("exchange {}", topo.exchange())))?;
    for route in Route::ALL {
        let queue = topo.work_queue(route);
        channel
            .queue_declare(&queue, durable(), topo.work_queue_args())
            .await
            .map_err(declare_err(&format!("queue {queue}")))?;
        channel
            .queue_bind(
                &queue,
                topo.exchange(),
                route.as_str(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(declare_err(&format!("binding of {queue}")))?;
    }
    let dead = topo.dead_queue();
    let mut dead_args = quorum_args();
    dead_args.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongLongInt(DEAD_DELIVERY_LIMIT),
    );
    channel
        .queue_declare(&dead, durable(), dead_args)
        .await
        .map_err(declare_err(&format!("queue {dead}")))?;
    channel
        .queue_bind(
            &dead,
            topo.exchange(),
            DEAD_KEY,
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(declare_err(&format!("binding of {dead}")))?;
    Ok(())
}

/// Declares the retry queue of `route` for `bucket` on `channel`.
pub(crate) async fn declare_retry(
    channel: &Channel,
    topo: &Topology,
    route: Route,
    bucket: Duration,
) -> Result<(), MqError> {
    let queue = topo.retry_queue(route, bucket);
    channel
        .queue_declare(&queue, durable(), topo.retry_queue_args(route, bucket))
        .await
        .map_err(|source| MqError::Declare {
            what: format!("queue {queue}"),
            source,
        })?;
    Ok(())
}

/// Whether `err` says that a queue or exchange does not exist.
pub(crate) fn is_not_found(err: &lapin::Error) -> bool {
    matches!(
        lapin_kind(err),
        Some(AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_round_up_and_clamp() {
        assert_eq!(retry_bucket(Duration::ZERO), Duration::from_secs(1));
        assert_eq!(
            retry_bucket(Duration::from_millis(1)),
            Duration::from_secs(1)
        );
        assert_eq!(retry_bucket(Duration::from_secs(1)), Duration::from_secs(1));
        assert_eq!(
            retry_bucket(Duration::from_millis(1001)),
            Duration::from_secs(5)
        );
        assert_eq!(
            retry_bucket(Duration::from_secs(31)),
            Duration::from_secs(120)
        );
        assert_eq!(
            retry_bucket(Duration::from_secs(7200)),
            Duration::from_secs(3600)
        );
    }

    #[test]
    fn names_are_namespaced() {
        let t = Topology::new("t1").unwrap();
        assert_eq!(t.exchange(), "t1");
        assert_eq!(t.work_queue(Route::Process), "t1.process");
        assert_eq!(t.work_queue(Route::Push), "t1.push");
        assert_eq!(t.dead_queue(), "t1.dead");
        assert_eq!(
            t.retry_queue(Route::Push, Duration::from_secs(3)),
            "t1.retry.push.5000"
        );
        assert_eq!(t.route_of_queue("t1.push"), Some(Route::Push));
        assert_eq!(t.route_of_queue("t1.dead"), None);
        assert_eq!(t.all_queues().len(), 4 + 18);
        assert!(Topology::new("").is_err());
        assert!(Topology::new("a b").is_err());
        assert_eq!("push".parse::<Route>().unwrap(), Route::Push);
        assert!("dead".parse::<Route>().is_err());
    }
}
