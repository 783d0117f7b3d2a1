//! The message bus seen by the services: one trait, [`MessageBus`], with two
//! implementations (RabbitMQ in [`RabbitBroker`], in-process in
//! [`MemoryBus`]), and the handles the services hold: [`Broker`],
//! [`Consumer`] and [`Delivery`].
//!
//! Both implementations keep the same contract (the shared suite in
//! `runtime/tests/it/contract.rs` runs against both): confirmed publishes,
//! manual settling, redelivery of what was not settled, delayed retries,
//! dead letters with a reason, listing and replay.

use super::consumer::{RabbitConsumer, RabbitDelivery};
use super::memory::MemoryBus;
use super::{BrokerConfig, DeadLetter, MqError, Queue, RabbitBroker, Route};
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

/// What a message bus offers the services. Implemented by RabbitMQ
/// ([`RabbitBroker`]) and by the in-process [`MemoryBus`].
#[async_trait::async_trait]
pub trait MessageBus: Send + Sync + 'static {
    /// The namespace every queue name starts with.
    fn namespace(&self) -> &str;

    /// Publishes a persistent message to the work queue of `route`;
    /// returns once the bus has it.
    async fn publish(&self, route: Route, body: &[u8], message_id: &str) -> Result<(), MqError>;

    /// Publishes a message that reaches the work queue of `route` after
    /// `delay` (at least; RabbitMQ rounds up to a retry bucket).
    async fn publish_delayed(
        &self,
        route: Route,
        body: &[u8],
        message_id: &str,
        delay: Duration,
    ) -> Result<(), MqError>;

    /// Stores a message in the dead-letter queue with its route and reason.
    async fn dead_letter(
        &self,
        route: Route,
        body: &[u8],
        message_id: &str,
        reason: &str,
    ) -> Result<(), MqError>;

    /// Subscribes to the work queue of `route` with at most `prefetch`
    /// unsettled deliveries.
    async fn consume(
        &self,
        route: Route,
        prefetch: u16,
        consumer_tag: &str,
    ) -> Result<Consumer, MqError>;

    /// Up to `limit` dead letters, oldest first, left in place.
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, MqError>;

    /// Moves up to `limit` dead letters back to their work queues; returns
    /// how many moved.
    async fn replay_dead(&self, limit: usize) -> Result<usize, MqError>;

    /// Ready messages in `queue` (deliveries in flight are not counted).
    async fn queue_depth(&self, queue: Queue) -> Result<u32, MqError>;

    /// Whether the bus can take messages (readiness).
    async fn is_healthy(&self) -> bool;

    /// How many times the connection was re-established.
    fn reconnects(&self) -> u64;

    /// Closes the bus: consumers end, later operations fail.
    async fn close(&self);

    /// Deletes the namespace's queues and messages (tests and teardown).
    async fn delete_topology(&self);

    /// Starts the tasks that move the delayed jobs of `route` back to its
    /// work queue when due (RabbitMQ: see `delay.rs`); a worker of `route`
    /// runs them and aborts them when it stops. None where delays need no
    /// help (the in-process bus).
    fn start_movers(&self, _route: Route) -> Vec<tokio::task::JoinHandle<()>> {
        Vec::new()
    }
}

/// The handle on the message bus that services hold: cheap to clone, and
/// every [`MessageBus`] method is callable on it.
#[derive(Clone)]
pub struct Broker {
    bus: Arc<dyn MessageBus>,
}

impl fmt::Debug for Broker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Broker")
            .field("namespace", &self.bus.namespace())
            .finish()
    }
}

impl Deref for Broker {
    type Target = dyn MessageBus;

    fn deref(&self) -> &Self::Target {
        &*self.bus
    }
}

impl Broker {
    /// Connects to RabbitMQ at `amqp_url` with the default [`BrokerConfig`]
    /// and declares the topology of `namespace`.
    pub async fn connect(amqp_url: &str, namespace: &str) -> Result<Broker, MqError> {
        Self::connect_with(amqp_url, namespace, BrokerConfig::default()).await
    }

    /// Connects to RabbitMQ with `config` (see [`RabbitBroker::connect_with`]).
    pub async fn connect_with(
        amqp_url: &str,
        namespace: &str,
        config: BrokerConfig,
    ) -> Result<Broker, MqError> {
        let rabbit = RabbitBroker::connect_with(amqp_url, namespace, config).await?;
        Ok(Broker::from_bus(Arc::new(rabbit)))
    }

    /// An in-process bus for `namespace` (the embedded mode and tests).
    pub fn in_memory(namespace: &str) -> Result<Broker, MqError> {
        Ok(Broker::from_bus(Arc::new(MemoryBus::new(namespace)?)))
    }

    /// Ready messages in `queue` (a [`Route`] means its work queue).
    pub async fn queue_depth(&self, queue: impl Into<Queue>) -> Result<u32, MqError> {
        self.bus.queue_depth(queue.into()).await
    }

    /// Wraps any implementation.
    pub fn from_bus(bus: Arc<dyn MessageBus>) -> Broker {
        Broker { bus }
    }
}

/// The source of a [`Consumer`]'s deliveries (one per implementation).
#[async_trait::async_trait]
pub trait DeliverySource: Send {
    /// The route consumed.
    fn route(&self) -> Route;
    /// How many times the subscription was re-established.
    fn resubscriptions(&self) -> u64;
    /// The next delivery; `None` once the bus is closed. Cancel-safe.
    async fn next(&mut self) -> Option<Result<Delivery, MqError>>;
    /// Stops the subscription.
    async fn cancel(self: Box<Self>);
}

/// A subscription to a work queue with manual settling, made by
/// [`MessageBus::consume`].
pub struct Consumer {
    source: Box<dyn DeliverySource>,
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("route", &self.source.route())
            .finish()
    }
}

impl Consumer {
    /// Wraps a source.
    pub fn new(source: Box<dyn DeliverySource>) -> Consumer {
        Consumer { source }
    }

    /// The route consumed.
    pub fn route(&self) -> Route {
        self.source.route()
    }

    /// How many times the consumer re-subscribed after losing its channel.
    pub fn resubscriptions(&self) -> u64 {
        self.source.resubscriptions()
    }

    /// The next delivery (see [`DeliverySource::next`]).
    pub async fn next(&mut self) -> Option<Result<Delivery, MqError>> {
        self.source.next().await
    }

    /// Turns the consumer into a stream of deliveries.
    pub fn into_stream(self) -> impl futures_util::Stream<Item = Result<Delivery, MqError>> + Send {
        futures_util::stream::unfold(self, |mut consumer| async move {
            consumer.next().await.map(|item| (item, consumer))
        })
    }

    /// Stops the subscription; deliveries already received can still be
    /// settled.
    pub async fn cancel(self) {
        self.source.cancel().await;
    }
}

/// How a delivery is settled (one per implementation). Dropping it
/// unsettled must return the message to its queue.
#[async_trait::async_trait]
pub trait Settle: Send {
    /// The bus forgets the message.
    async fn ack(self: Box<Self>) -> Result<(), MqError>;
    /// The message goes back to its queue (counted as a delivery).
    async fn nack_requeue(self: Box<Self>) -> Result<(), MqError>;
    /// The message goes to the dead-letter queue.
    async fn reject(self: Box<Self>) -> Result<(), MqError>;
}

/// One message received by a [`Consumer`]; settle it once its effect is
/// committed. A delivery dropped unsettled is requeued.
pub struct Delivery {
    body: Vec<u8>,
    message_id: Option<String>,
    redelivered: bool,
    delivery_count: u64,
    settle: Box<dyn Settle>,
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("message_id", &self.message_id)
            .field("redelivered", &self.redelivered)
            .field("delivery_count", &self.delivery_count)
            .field("len", &self.body.len())
            .finish()
    }
}

impl Delivery {
    /// A delivery of `body`, settled through `settle`.
    pub fn new(
        body: Vec<u8>,
        message_id: Option<String>,
        redelivered: bool,
        delivery_count: u64,
        settle: Box<dyn Settle>,
    ) -> Delivery {
        Delivery {
            body,
            message_id,
            redelivered,
            delivery_count,
            settle,
        }
    }

    /// The message body (a JSON job).
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The message id given at publish.
    pub fn message_id(&self) -> Option<&str> {
        self.message_id.as_deref()
    }

    /// Whether the message was delivered before without being acked.
    pub fn redelivered(&self) -> bool {
        self.redelivered
    }

    /// How many earlier deliveries were returned to the queue (0 on the
    /// first). After [`super::DELIVERY_LIMIT`] the message is dead-lettered.
    pub fn delivery_count(&self) -> u64 {
        self.delivery_count
    }

    /// Acknowledges the message. Fails with [`MqError::Closed`] if the
    /// channel is gone (the message will be redelivered).
    pub async fn ack(self) -> Result<(), MqError> {
        self.settle.ack().await
    }

    /// Returns the message to its queue for another delivery.
    pub async fn nack_requeue(self) -> Result<(), MqError> {
        self.settle.nack_requeue().await
    }

    /// Refuses the message: it goes to the dead-letter queue.
    pub async fn reject(self) -> Result<(), MqError> {
        self.settle.reject().await
    }
}

// ---- RabbitMQ ---------------------------------------------------------------

#[async_trait::async_trait]
impl MessageBus for RabbitBroker {
    fn namespace(&self) -> &str {
        self.topology().namespace()
    }

    async fn publish(&self, route: Route, body: &[u8], message_id: &str) -> Result<(), MqError> {
        RabbitBroker::publish(self, route, body, message_id).await
    }

    async fn publish_delayed(
        &self,
        route: Route,
        body: &[u8],
        message_id: &str,
        delay: Duration,
    ) -> Result<(), MqError> {
        RabbitBroker::publish_delayed(self, route, body, message_id, delay).await
    }

    async fn dead_letter(
        &self,
        route: Route,
        body: &[u8],
        message_id: &str,
        reason: &str,
    ) -> Result<(), MqError> {
        RabbitBroker::dead_letter(self, route, body, message_id, reason).await
    }

    async fn consume(
        &self,
        route: Route,
        prefetch: u16,
        consumer_tag: &str,
    ) -> Result<Consumer, MqError> {
        let consumer = RabbitBroker::consume(self, route, prefetch, consumer_tag).await?;
        Ok(Consumer::new(Box::new(consumer)))
    }

    fn start_movers(&self, route: Route) -> Vec<tokio::task::JoinHandle<()>> {
        RabbitBroker::start_movers(self, route)
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, MqError> {
        RabbitBroker::dead_letters(self, limit).await
    }

    async fn replay_dead(&self, limit: usize) -> Result<usize, MqError> {
        RabbitBroker::replay_dead(self, limit).await
    }

    async fn queue_depth(&self, queue: Queue) -> Result<u32, MqError> {
        RabbitBroker::queue_depth(self, queue).await
    }

    async fn is_healthy(&self) -> bool {
        RabbitBroker::is_healthy(self).await
    }

    fn reconnects(&self) -> u64 {
        RabbitBroker::reconnects(self)
    }

    async fn close(&self) {
        RabbitBroker::close(self).await;
    }

    async fn delete_topology(&self) {
        RabbitBroker::delete_topology(self).await;
    }
}

#[async_trait::async_trait]
impl DeliverySource for RabbitConsumer {
    fn route(&self) -> Route {
        RabbitConsumer::route(self)
    }

    fn resubscriptions(&self) -> u64 {
        RabbitConsumer::resubscriptions(self)
    }

    async fn next(&mut self) -> Option<Result<Delivery, MqError>> {
        let delivery = RabbitConsumer::next(self).await?;
        Some(delivery.map(|d| {
            Delivery::new(
                d.body().to_vec(),
                d.message_id().map(str::to_owned),
                d.redelivered(),
                d.delivery_count(),
                Box::new(d),
            )
        }))
    }

    async fn cancel(self: Box<Self>) {
        RabbitConsumer::cancel(*self).await;
    }
}

#[async_trait::async_trait]
impl Settle for RabbitDelivery {
    async fn ack(self: Box<Self>) -> Result<(), MqError> {
        RabbitDelivery::ack(*self).await
    }

    async fn nack_requeue(self: Box<Self>) -> Result<(), MqError> {
        RabbitDelivery::nack_requeue(*self).await
    }

    async fn reject(self: Box<Self>) -> Result<(), MqError> {
        RabbitDelivery::reject(*self).await
    }
}
