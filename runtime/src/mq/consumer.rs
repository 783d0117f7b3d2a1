//! Consumers that re-subscribe after a lost connection, and their deliveries.

use super::broker::{with_timeout, Budget, RabbitBroker};
use super::error::MqError;
use super::topology::{is_not_found, Route};
use crate::retry::Backoff;
use futures_util::{Stream, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    BasicRejectOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::Channel;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// A subscription to a work queue with manual acks and a bounded prefetch,
/// made by [`RabbitBroker::consume`].
///
/// When the connection or the channel is lost, [`RabbitConsumer::next`]
/// re-subscribes by itself with backoff and goes on; the deliveries that were
/// not acked come back from the broker with [`RabbitDelivery::redelivered`] set.
/// Dropping the consumer closes its channel once its outstanding deliveries
/// are dropped too; unacked messages then return to the queue.
pub struct RabbitConsumer {
    broker: RabbitBroker,
    route: Route,
    queue: String,
    prefetch: u16,
    tag: String,
    active: Option<Active>,
    backoff: Backoff,
    failing_since: Option<Instant>,
    resubscriptions: u64,
}

struct Active {
    channel: Channel,
    stream: lapin::Consumer,
}

impl RabbitBroker {
    /// Subscribes to the work queue of `route` on a channel of its own, with
    /// `basic.qos(prefetch)` (at most `prefetch` unacked deliveries; 0 means
    /// unlimited, avoid it) and manual acks. `consumer_tag` names the
    /// consumer in RabbitMQ (empty: the broker picks one).
    ///
    /// Fails if the first subscription does not succeed within
    /// [`super::BrokerConfig::publish_timeout`]; later losses are recovered
    /// by the consumer.
    pub async fn consume(
        &self,
        route: Route,
        prefetch: u16,
        consumer_tag: &str,
    ) -> Result<RabbitConsumer, MqError> {
        let queue = self.inner.topo.work_queue(route);
        self.consume_queue(route, queue, prefetch, consumer_tag)
            .await
    }

    /// As [`RabbitBroker::consume`], on another queue of `route` (one of its
    /// retry queues: see `delay.rs`).
    pub(crate) async fn consume_queue(
        &self,
        route: Route,
        queue: String,
        prefetch: u16,
        consumer_tag: &str,
    ) -> Result<RabbitConsumer, MqError> {
        let mut consumer = RabbitConsumer {
            broker: self.clone(),
            route,
            queue,
            prefetch,
            tag: consumer_tag.to_owned(),
            active: None,
            backoff: self.backoff(),
            failing_since: None,
            resubscriptions: 0,
        };
        consumer.active = Some(consumer.subscribe().await?);
        Ok(consumer)
    }
}

impl RabbitConsumer {
    /// The route consumed.
    pub fn route(&self) -> Route {
        self.route
    }

    /// How many times the consumer re-subscribed after losing its channel.
    pub fn resubscriptions(&self) -> u64 {
        self.resubscriptions
    }

    async fn subscribe(&self) -> Result<Active, MqError> {
        let config = self.broker.config();
        let limit = config.op_timeout;
        let budget = Budget::new("subscription", config.publish_timeout);
        let link = self.broker.link(&budget).await?;
        let channel = self.broker.open_channel(&link).await?;
        let channel_err = |op: &'static str| move |source| MqError::Channel { op, source };
        with_timeout(
            limit,
            "basic.qos",
            channel.basic_qos(self.prefetch, BasicQosOptions::default()),
        )
        .await
        .map_err(channel_err("basic.qos"))?;
        let stream = with_timeout(
            limit,
            "basic.consume",
            channel.basic_consume(
                &self.queue,
                &self.tag,
                BasicConsumeOptions::default(),
                FieldTable::default(),
            ),
        )
        .await
        .map_err(|source| {
            if is_not_found(&source) {
                // The queue vanished: the next link re-declares the topology.
                link.mark_stale();
                MqError::MissingQueue(self.queue.clone())
            } else {
                MqError::Channel {
                    op: "basic.consume",
                    source,
                }
            }
        })?;
        Ok(Active { channel, stream })
    }

    /// The next delivery. Re-subscribes transparently (with backoff) after a
    /// lost connection or channel. An `Err` item reports that re-subscribing
    /// has kept failing for [`super::BrokerConfig::publish_timeout`] (it is
    /// reported again after each such period); calling `next` again keeps
    /// trying. `None` only after [`RabbitBroker::close`].
    ///
    /// Cancel-safe: a `next` future dropped before completion loses no
    /// delivery.
    pub async fn next(&mut self) -> Option<Result<RabbitDelivery, MqError>> {
        loop {
            if self.broker.is_closed() {
                self.active = None;
                return None;
            }
            let Some(active) = self.active.as_mut() else {
                match self.subscribe().await {
                    Ok(active) => {
                        self.active = Some(active);
                        self.backoff.reset();
                        self.failing_since = None;
                        self.resubscriptions += 1;
                        info!(queue = %self.queue, "RabbitMQ consumer resumed");
                    }
                    Err(e) => {
                        if self.broker.is_closed() {
                            return None;
                        }
                        let since = *self.failing_since.get_or_insert_with(Instant::now);
                        let delay = self.backoff.next_wait();
                        warn!(
                            queue = %self.queue,
                            error = %e,
                            retry_in = ?delay,
                            "RabbitMQ consumer cannot re-subscribe"
                        );
                        if since.elapsed() >= self.broker.config().publish_timeout {
                            self.failing_since = Some(Instant::now());
                            return Some(Err(e));
                        }
                        tokio::time::sleep(delay).await;
                    }
                }
                continue;
            };
            match active.stream.next().await {
                Some(Ok(delivery)) => {
                    return Some(Ok(RabbitDelivery {
                        channel: active.channel.clone(),
                        inner: delivery,
                        op_timeout: self.broker.config().op_timeout,
                        settled: false,
                    }))
                }
                Some(Err(e)) => {
                    warn!(queue = %self.queue, error = %e, "RabbitMQ consumer lost its channel");
                    self.active = None;
                }
                None => {
                    warn!(queue = %self.queue, "RabbitMQ consumer cancelled, re-subscribing");
                    self.active = None;
                }
            }
        }
    }

    /// Turns the consumer into a [`Stream`] of deliveries (same items as
    /// [`RabbitConsumer::next`]).
    pub fn into_stream(self) -> impl Stream<Item = Result<RabbitDelivery, MqError>> + Send {
        futures_util::stream::unfold(self, |mut consumer| async move {
            consumer.next().await.map(|item| (item, consumer))
        })
    }

    /// Stops the subscription (`basic.cancel`): no more deliveries; those
    /// already received can still be settled until they are dropped.
    pub async fn cancel(mut self) {
        if let Some(active) = self.active.take() {
            let tag = active.stream.tag();
            // A cancel that fails leaves a dead channel: no deliveries come.
            let _ = with_timeout(
                self.broker.config().op_timeout,
                "basic.cancel",
                active
                    .channel
                    .basic_cancel(tag.as_str(), BasicCancelOptions::default()),
            )
            .await;
        }
    }
}

/// One message received by a [`RabbitConsumer`]; settle it with [`RabbitDelivery::ack`],
/// [`RabbitDelivery::nack_requeue`] or [`RabbitDelivery::reject`] once its effect is
/// committed. A delivery dropped unsettled is requeued (best effort, as with
/// `nack_requeue`).
pub struct RabbitDelivery {
    channel: Channel,
    inner: lapin::message::Delivery,
    op_timeout: Duration,
    settled: bool,
}

impl std::fmt::Debug for RabbitDelivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitDelivery")
            .field("message_id", &self.message_id())
            .field("routing_key", &self.inner.routing_key.as_str())
            .field("redelivered", &self.inner.redelivered)
            .field("len", &self.inner.data.len())
            .finish()
    }
}

impl RabbitDelivery {
    /// The message body (a JSON job).
    pub fn body(&self) -> &[u8] {
        &self.inner.data
    }

    /// The message id given at publish.
    pub fn message_id(&self) -> Option<&str> {
        self.inner
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.as_str())
    }

    /// Whether the broker delivered this message before (to this or another
    /// consumer) without it being acked.
    pub fn redelivered(&self) -> bool {
        self.inner.redelivered
    }

    /// How many earlier deliveries of this message were returned to the
    /// queue, from the quorum queue header `x-delivery-count` (0 when absent,
    /// i.e. on the first delivery). After [`super::DELIVERY_LIMIT`] the
    /// broker dead-letters the message.
    pub fn delivery_count(&self) -> u64 {
        self.header("x-delivery-count")
            .and_then(as_u64)
            .unwrap_or(0)
    }

    /// A header of the message.
    pub fn header(&self, name: &str) -> Option<&AMQPValue> {
        self.inner
            .properties
            .headers()
            .as_ref()
            .and_then(|headers| headers.inner().get(name))
    }

    /// Acknowledges the message: the broker forgets it. Fails with
    /// [`MqError::Closed`] if the channel is gone (the message will be
    /// redelivered).
    pub async fn ack(mut self) -> Result<(), MqError> {
        self.settled = true;
        let tag = self.inner.delivery_tag;
        let channel = self.channel.clone();
        self.settle(
            "basic.ack",
            channel.basic_ack(tag, BasicAckOptions::default()),
        )
        .await
    }

    /// Returns the message to its queue for another delivery (counted by
    /// `x-delivery-count`). For a retry after a delay prefer
    /// [`RabbitBroker::publish_delayed`] then [`RabbitDelivery::ack`].
    pub async fn nack_requeue(mut self) -> Result<(), MqError> {
        self.settled = true;
        let tag = self.inner.delivery_tag;
        let channel = self.channel.clone();
        let options = BasicNackOptions {
            multiple: false,
            requeue: true,
        };
        self.settle("basic.nack", channel.basic_nack(tag, options))
            .await
    }

    /// Refuses the message without requeueing it: it leaves the work queue
    /// and the broker dead-letters it to `{ns}.dead` (reason `rejected` in
    /// its `x-death` header). To record a reason, use
    /// [`RabbitBroker::dead_letter`] then [`RabbitDelivery::ack`] instead.
    pub async fn reject(mut self) -> Result<(), MqError> {
        self.settled = true;
        let tag = self.inner.delivery_tag;
        let channel = self.channel.clone();
        let options = BasicRejectOptions { requeue: false };
        self.settle("basic.reject", channel.basic_reject(tag, options))
            .await
    }

    async fn settle(
        &self,
        op: &'static str,
        fut: impl std::future::Future<Output = lapin::Result<()>>,
    ) -> Result<(), MqError> {
        if !self.channel.status().connected() {
            return Err(MqError::Closed);
        }
        match with_timeout(self.op_timeout, op, fut).await {
            Ok(()) => Ok(()),
            Err(_) if !self.channel.status().connected() => Err(MqError::Closed),
            Err(source) => Err(MqError::Channel { op, source }),
        }
    }
}

impl Drop for RabbitDelivery {
    fn drop(&mut self) {
        if self.settled || !self.channel.status().connected() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let channel = self.channel.clone();
        let tag = self.inner.delivery_tag;
        let limit = self.op_timeout;
        runtime.spawn(async move {
            let options = BasicNackOptions {
                multiple: false,
                requeue: true,
            };
            if let Err(e) =
                with_timeout(limit, "basic.nack", channel.basic_nack(tag, options)).await
            {
                // The channel is gone: the broker redelivers the message.
                tracing::debug!(error = %e, "could not requeue a dropped delivery");
            }
        });
    }
}

/// An integer header value as `u64`.
pub(crate) fn as_u64(value: &AMQPValue) -> Option<u64> {
    match value {
        AMQPValue::ShortShortInt(v) => u64::try_from(*v).ok(),
        AMQPValue::ShortShortUInt(v) => Some(u64::from(*v)),
        AMQPValue::ShortInt(v) => u64::try_from(*v).ok(),
        AMQPValue::ShortUInt(v) => Some(u64::from(*v)),
        AMQPValue::LongInt(v) => u64::try_from(*v).ok(),
        AMQPValue::LongUInt(v) => Some(u64::from(*v)),
        AMQPValue::LongLongInt(v) => u64::try_from(*v).ok(),
        AMQPValue::Timestamp(v) => Some(*v),
        _ => None,
    }
}
