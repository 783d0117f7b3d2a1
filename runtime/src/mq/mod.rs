//! RabbitMQ: the namespaced topology, confirmed publishing, consuming with
//! manual acks, delayed retries and the dead-letter queue.
//!
//! Messages carry ids, never data (see `DESIGN.md`); bodies are small JSON
//! documents from [`crate::jobs`].
//!
//! # Topology
//!
//! Every name starts with the namespace (`ALIAS_NAMESPACE`, e.g. `alias`):
//!
//! | name | kind | arguments | bound with |
//! |---|---|---|---|
//! | `{ns}` | durable direct exchange | | |
//! | `{ns}.process`, `{ns}.push`, `{ns}.preview` | quorum queues (work) | dead-letter to `{ns}`/`dead` at least once, delivery limit [`DELIVERY_LIMIT`] | `process`, `push`, `preview` |
//! | `{ns}.dead` | quorum queue | no practical delivery limit | `dead` |
//! | `{ns}.retry.{route}.{ms}` | quorum queues, declared on demand | message TTL `ms`, dead-letter to `{ns}`/`{route}` at least once | (default exchange) |
//!
//! Everything is declared idempotently with the same arguments every time,
//! at start and after every reconnection. Changing an argument of an existing
//! queue makes the declaration fail (`PRECONDITION_FAILED`): such a change
//! needs a new namespace or a manual migration.
//!
//! **Delayed retries** ([`Broker::publish_delayed`](MessageBus::publish_delayed)) park the message in a
//! retry queue whose message TTL sends it back to its work queue. Delays are
//! rounded *up* to one of the fixed [`RETRY_BUCKETS`] (1 s, 5 s, 30 s, 2 min,
//! 10 min, 1 h; longer delays use the 1 h bucket), so there are at most
//! 3 × 6 retry queues per namespace and every queue holds messages of a
//! single TTL (expiry happens at the head of a queue, so one TTL per queue
//! keeps the order right).
//!
//! **Dead letters** land in `{ns}.dead`: explicitly through
//! [`Broker::dead_letter`](MessageBus::dead_letter) (headers `x-alias-route` and `x-alias-reason`), or
//! by the broker for a message [rejected](Delivery::reject) by a worker or
//! delivered more than [`DELIVERY_LIMIT`] times (RabbitMQ's `x-death` header
//! then tells the queue and the reason). [`Broker::dead_letters`](MessageBus::dead_letters) lists them,
//! [`Broker::replay_dead`](MessageBus::replay_dead) moves them back to their work queue.
//!
//! # Guarantees
//!
//! * [`Broker::publish`](MessageBus::publish) returns `Ok` only once the broker confirmed the
//!   message (persistent, routed to its queue); broken connections are
//!   reconnected and the publish retried within
//!   [`BrokerConfig::publish_timeout`], as are negative confirms (on a new
//!   channel). A retried publish may store the message twice: consumers are
//!   idempotent (at-least-once delivery).
//! * Given the comma-separated URLs of a cluster's nodes
//!   ([`split_amqp_urls`]), a handle connects to one of them (starting at a
//!   random node) and, when it loses its node, reconnects to the next one
//!   that answers: publishers and consumers move with it.
//! * A [`Consumer`] survives broker restarts and dropped connections: it
//!   re-subscribes with backoff; deliveries that were not acked are
//!   redelivered by the broker ([`Delivery::redelivered`]).
//! * Settling a delivery whose channel died is an error
//!   ([`MqError::Closed`]), never a panic; the broker redelivers the message.
//!
//! Reconnection uses exponential backoff (100 ms doubling to 5 s by default)
//! with jitter; one [`Broker`] holds one connection, a publisher channel with
//! confirms and one channel per consumer.

mod admin;
mod broker;
mod bus;
mod consumer;
mod dead;
mod delay;
mod error;
mod memory;
mod nodes;
mod publish;
pub mod testing;
mod topology;

pub use broker::{BrokerConfig, RabbitBroker};
pub use bus::{Broker, Consumer, Delivery, DeliverySource, MessageBus, Settle};
pub use consumer::{RabbitConsumer, RabbitDelivery};
pub use dead::DeadLetter;
pub use delay::MOVED_BUCKETS;
pub use error::MqError;
pub use memory::MemoryBus;
pub(crate) use nodes::shown_url;
pub use nodes::split_amqp_urls;
pub use topology::{retry_bucket, Queue, Route, Topology, DELIVERY_LIMIT, RETRY_BUCKETS};
