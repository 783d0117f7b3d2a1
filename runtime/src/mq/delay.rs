//! Moving delayed jobs back to their work queue when they are due, without
//! relying on the broker's message TTL.
//!
//! A delayed job waits in a retry queue of its route, whose message TTL
//! dead-letters it back to the work queue. On RabbitMQ 3.10 (Debian
//! bookworm's), a quorum retry queue of a cluster was seen to stop
//! expiring messages: eight push jobs sat in `alias.retry.push.1000` for
//! minutes with no consumer, while a fresh queue with the same arguments
//! expired on time (the upstream report: rabbitmq-server issue 10718). So
//! every worker also consumes the retry queues of its route up to
//! [`MOVED_BUCKETS`]: it holds each delivery until the time in its
//! `x-alias-due-ms` header, publishes it to the work queue (confirmed),
//! then acknowledges it. A held delivery cannot expire, so a job takes one
//! way back or the other, never both; a worker lost while holding returns
//! its deliveries to the retry queue. Longer buckets are left to the TTL
//! alone: a delivery held past the broker's consumer timeout (30 minutes
//! by default) would close its channel.

use super::consumer::{as_u64, RabbitDelivery};
use super::publish::unix_millis;
use super::{RabbitBroker, Route};
use std::time::Duration;
use tokio::task::JoinHandle;

/// The header of a delayed job that holds when it is due (Unix ms).
pub(crate) const DUE_HEADER: &str = "x-alias-due-ms";

/// The header of a job moved back by a worker: the bucket it waited in (ms).
pub(crate) const MOVED_HEADER: &str = "x-alias-moved-from";

/// The retry buckets whose queues the workers consume (the shorter ones).
pub const MOVED_BUCKETS: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(5),
    Duration::from_secs(30),
];

/// Deliveries one mover holds at once.
const HELD: u16 = 64;

/// How long a failed move waits before the delivery goes back to its
/// queue; the first pause before subscribing again.
const MOVE_RETRY: Duration = Duration::from_secs(1);

/// The longest pause before subscribing again.
const MAX_PAUSE: Duration = Duration::from_secs(30);

impl RabbitBroker {
    /// Starts a mover for each of [`MOVED_BUCKETS`] of `route`; abort the
    /// tasks to stop them (held deliveries return to their queue).
    pub(crate) fn start_movers(&self, route: Route) -> Vec<JoinHandle<()>> {
        MOVED_BUCKETS
            .iter()
            .map(|bucket| tokio::spawn(move_due(self.clone(), route, *bucket)))
            .collect()
    }
}

/// Consumes the retry queue of `route` for `bucket` (declaring it first:
/// retry queues are otherwise declared by their first publish), moving
/// each delivery to the work queue when it is due. Subscribes again, after
/// a growing pause, when the subscription fails or ends; stops when the
/// broker is closed.
async fn move_due(broker: RabbitBroker, route: Route, bucket: Duration) {
    let queue = broker.topology().retry_queue(route, bucket);
    let tag = format!("mover-{}", uuid::Uuid::new_v4().simple());
    let mut pause = MOVE_RETRY;
    while !broker.is_closed() {
        let subscribed = match broker.declare_retry_queue(route, bucket).await {
            Ok(()) => broker.consume_queue(route, queue.clone(), HELD, &tag).await,
            Err(e) => Err(e),
        };
        match subscribed {
            Ok(mut consumer) => {
                pause = MOVE_RETRY;
                while let Some(next) = consumer.next().await {
                    match next {
                        Ok(delivery) => {
                            tokio::spawn(move_one(broker.clone(), route, bucket, delivery));
                        }
                        Err(e) => {
                            tracing::warn!(%queue, error = %e, "retry queue consumer failed");
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(%queue, error = %e, retry_in = ?pause, "cannot consume a retry queue");
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// Holds `delivery` until it is due, then moves it.
async fn move_one(broker: RabbitBroker, route: Route, bucket: Duration, delivery: RabbitDelivery) {
    // Never longer than the bucket, whatever the header says; a job
    // without the header (published before it existed) waits the bucket.
    let wait = match delivery.header(DUE_HEADER).and_then(as_u64) {
        Some(due_ms) => {
            let now = u64::try_from(unix_millis()).unwrap_or(0);
            Duration::from_millis(due_ms.saturating_sub(now)).min(bucket)
        }
        None => bucket,
    };
    tokio::time::sleep(wait).await;
    let id = delivery.message_id().unwrap_or("").to_owned();
    match broker
        .publish_moved(route, delivery.body(), &id, bucket)
        .await
    {
        Ok(()) => {
            if let Err(e) = delivery.ack().await {
                // Redelivered and moved again: a duplicate job, which the
                // workers absorb.
                tracing::warn!(message = %id, error = %e, "could not ack a moved job");
            }
        }
        Err(e) => {
            tracing::warn!(message = %id, error = %e, "could not move a due job; it goes back to its retry queue");
            tokio::time::sleep(MOVE_RETRY).await;
            let _ = delivery.nack_requeue().await;
        }
    }
}
