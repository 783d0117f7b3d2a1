//! Listing and replaying the dead-letter queue (operators' tools).

use super::broker::{close_quietly, with_timeout, Budget, RabbitBroker};
use super::consumer::as_u64;
use super::error::MqError;
use super::topology::{is_not_found, Route, Topology};
use lapin::message::Delivery as LapinDelivery;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicNackOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::Channel;
use tracing::warn;

/// A message of the dead-letter queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// The message id given at publish.
    pub message_id: Option<String>,
    /// The route it came from: the `x-alias-route` header, or for messages
    /// dead-lettered by the broker the work queue in `x-death`. `None` when
    /// unknown (such a message cannot be replayed).
    pub route: Option<Route>,
    /// Why it is here: the `x-alias-reason` header, or the broker's reason
    /// (`rejected`, `delivery_limit`, …) with the queue it left.
    pub reason: String,
    /// When it was dead-lettered (Unix seconds), when known.
    pub dead_at: Option<u64>,
    /// The message body.
    pub body: Vec<u8>,
}

impl DeadLetter {
    fn from_delivery(topo: &Topology, delivery: &LapinDelivery) -> Self {
        let headers = delivery
            .properties
            .headers()
            .as_ref()
            .map(FieldTable::inner);
        let header = |name: &str| headers.and_then(|h| h.get(name));
        // `x-death` lists the dead-letterings, the most recent first.
        let death = header("x-death")
            .and_then(AMQPValue::as_array)
            .and_then(|deaths| deaths.as_slice().first())
            .and_then(AMQPValue::as_field_table)
            .map(FieldTable::inner);
        let death_field = |name: &str| death.and_then(|d| d.get(name));
        let death_queue = death_field("queue").and_then(as_text);
        let route = header("x-alias-route")
            .and_then(as_text)
            .and_then(|r| r.parse().ok())
            .or_else(|| death_queue.as_deref().and_then(|q| topo.route_of_queue(q)));
        let reason = header("x-alias-reason").and_then(as_text).or_else(|| {
            death_field("reason").and_then(as_text).map(|why| {
                format!(
                    "dead-lettered by RabbitMQ ({why}) from {}",
                    death_queue.as_deref().unwrap_or("an unknown queue")
                )
            })
        });
        let dead_at = match header("x-alias-reason") {
            Some(_) => *delivery.properties.timestamp(),
            None => death_field("time").and_then(as_u64),
        };
        Self {
            message_id: delivery
                .properties
                .message_id()
                .as_ref()
                .map(|id| id.to_string()),
            route,
            reason: reason.unwrap_or_else(|| "unknown".to_owned()),
            dead_at,
            body: delivery.data.clone(),
        }
    }
}

fn as_text(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.to_string()),
        _ => None,
    }
}

impl RabbitBroker {
    /// Up to `limit` messages of the dead-letter queue, oldest first, left in
    /// the queue (fetched with `basic.get`, then requeued).
    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, MqError> {
        let (channel, queue) = self.dead_channel("dead-letter listing").await?;
        let mut letters = Vec::new();
        let mut last_tag = None;
        let fetched = async {
            while letters.len() < limit {
                match self.get_one(&channel, &queue).await? {
                    Some(delivery) => {
                        last_tag = Some(delivery.delivery_tag);
                        letters.push(DeadLetter::from_delivery(&self.inner.topo, &delivery));
                    }
                    None => break,
                }
            }
            Ok::<(), MqError>(())
        }
        .await;
        let limit_time = self.inner.config.op_timeout;
        if let Some(tag) = last_tag {
            let requeue_all = BasicNackOptions {
                multiple: true,
                requeue: true,
            };
            if let Err(e) = with_timeout(
                limit_time,
                "basic.nack",
                channel.basic_nack(tag, requeue_all),
            )
            .await
            {
                // Closing the channel below requeues them all the same.
                tracing::debug!(error = %e, "could not requeue the dead letters read");
            }
        }
        close_quietly(&channel, limit_time).await;
        fetched.map(|()| letters)
    }

    /// Moves up to `limit` dead letters back to the work queue of their
    /// route, each acked in the dead-letter queue only after its publish was
    /// confirmed; returns how many were moved. Letters without a known route
    /// stay. If the connection drops midway, a letter may be replayed twice
    /// (jobs are idempotent).
    pub async fn replay_dead(&self, limit: usize) -> Result<usize, MqError> {
        let (channel, queue) = self.dead_channel("dead-letter replay").await?;
        let limit_time = self.inner.config.op_timeout;
        let mut moved = 0;
        let mut kept = Vec::new();
        let replayed = async {
            for _ in 0..limit {
                let Some(delivery) = self.get_one(&channel, &queue).await? else {
                    break;
                };
                let letter = DeadLetter::from_delivery(&self.inner.topo, &delivery);
                let Some(route) = letter.route else {
                    warn!(message_id = ?letter.message_id, "dead letter without a route, kept");
                    kept.push(delivery.delivery_tag);
                    continue;
                };
                let id = letter
                    .message_id
                    .clone()
                    .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
                self.publish(route, &letter.body, &id).await?;
                with_timeout(
                    limit_time,
                    "basic.ack",
                    channel.basic_ack(delivery.delivery_tag, BasicAckOptions::default()),
                )
                .await
                .map_err(|source| MqError::Channel {
                    op: "basic.ack",
                    source,
                })?;
                moved += 1;
            }
            Ok::<(), MqError>(())
        }
        .await;
        let requeue = BasicNackOptions {
            multiple: false,
            requeue: true,
        };
        for tag in kept {
            if let Err(e) =
                with_timeout(limit_time, "basic.nack", channel.basic_nack(tag, requeue)).await
            {
                // Closing the channel below requeues it the same.
                tracing::debug!(error = %e, "could not requeue a dead letter kept");
            }
        }
        close_quietly(&channel, limit_time).await;
        replayed.map(|()| moved)
    }

    async fn dead_channel(&self, op: &'static str) -> Result<(Channel, String), MqError> {
        let budget = Budget::new(op, self.inner.config.publish_timeout);
        let link = self.link(&budget).await?;
        let channel = self.open_channel(&link).await?;
        Ok((channel, self.inner.topo.dead_queue()))
    }

    async fn get_one(
        &self,
        channel: &Channel,
        queue: &str,
    ) -> Result<Option<LapinDelivery>, MqError> {
        let got = with_timeout(
            self.inner.config.op_timeout,
            "basic.get",
            channel.basic_get(queue, BasicGetOptions { no_ack: false }),
        )
        .await;
        match got {
            Ok(message) => Ok(message.map(|m| m.delivery)),
            Err(e) if is_not_found(&e) => Err(MqError::MissingQueue(queue.to_owned())),
            Err(source) => Err(MqError::Channel {
                op: "basic.get",
                source,
            }),
        }
    }
}
