//! The in-process message bus of the embedded mode: the same contract as
//! RabbitMQ (manual settling, redelivery of what was not settled, delivery
//! limit, delayed retries, dead letters with reasons, replay), held in
//! memory. Messages do not survive the process, which is what a single
//! process installation with in-memory state expects.

use super::bus::{Consumer, Delivery, DeliverySource, MessageBus, Settle};
use super::{DeadLetter, MqError, Queue, Route, Topology, DELIVERY_LIMIT};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// One stored message.
#[derive(Clone)]
struct Message {
    body: Vec<u8>,
    id: String,
    /// Earlier deliveries returned to the queue.
    returned: u64,
}

#[derive(Default)]
struct Queues {
    ready: HashMap<Route, VecDeque<Message>>,
    delayed: HashMap<Route, u32>,
    dead: VecDeque<DeadLetter>,
}

struct Shared {
    topo: Topology,
    queues: Mutex<Queues>,
    notify: HashMap<Route, Notify>,
    closed: AtomicBool,
    /// Bumped by `delete_topology`, so delayed messages of before are dropped.
    epoch: std::sync::atomic::AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wake(&self, route: Route) {
        if let Some(n) = self.notify.get(&route) {
            n.notify_waiters();
        }
    }

    fn check_open(&self) -> Result<(), MqError> {
        if self.closed.load(Ordering::SeqCst) {
            Err(MqError::Shutdown)
        } else {
            Ok(())
        }
    }

    fn push(&self, route: Route, message: Message) {
        self.lock()
            .ready
            .entry(route)
            .or_default()
            .push_back(message);
        self.wake(route);
    }

    fn bury(&self, route: Route, message: Message, reason: String) {
        self.lock().dead.push_back(DeadLetter {
            message_id: Some(message.id),
            route: Some(route),
            reason,
            dead_at: Some(crate::state::now_ms() / 1000),
            body: message.body,
        });
    }

    /// A message that was delivered comes back: requeued, or dead-lettered
    /// past the delivery limit (as the quorum queue does).
    fn give_back(&self, route: Route, mut message: Message) {
        message.returned += 1;
        if i64::try_from(message.returned).unwrap_or(i64::MAX) > DELIVERY_LIMIT {
            let queue = self.topo.work_queue(route);
            self.bury(
                route,
                message,
                format!("dead-lettered (delivery_limit) from {queue}"),
            );
        } else {
            self.push(route, message);
        }
    }
}

/// The in-process [`MessageBus`]: cheap to clone.
#[derive(Clone)]
pub struct MemoryBus {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MemoryBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBus")
            .field("namespace", &self.shared.topo.namespace())
            .finish()
    }
}

impl MemoryBus {
    /// An empty bus for `namespace` (same naming rules as RabbitMQ's).
    pub fn new(namespace: &str) -> Result<MemoryBus, MqError> {
        let topo = Topology::new(namespace)?;
        let notify = Route::ALL.into_iter().map(|r| (r, Notify::new())).collect();
        Ok(MemoryBus {
            shared: Arc::new(Shared {
                topo,
                queues: Mutex::new(Queues::default()),
                notify,
                closed: AtomicBool::new(false),
                epoch: std::sync::atomic::AtomicU64::new(0),
            }),
        })
    }
}

#[async_trait::async_trait]
impl MessageBus for MemoryBus {
    fn namespace(&self) -> &str {
        self.shared.topo.namespace()
    }

    async fn publish(&self, route: Route, body: &[u8], message_id: &str) -> Result<(), MqError> {
        self.shared.check_open()?;
        self.shared.push(
            route,
            Message {
                body: body.to_vec(),
                id: message_id.to_owned(),
                returned: 0,
            },
        );
        Ok(())
    }

    async fn publish_delayed(
        &self,
        route: Route,
        body: &[u8],
        message_id: &str,
        delay: Duration,
    ) -> Result<(), MqError> {
        self.shared.check_open()?;
        let message = Message {
            body: body.to_vec(),
            id: message_id.to_owned(),
            returned: 0,
        };
        *self.shared.lock().delayed.entry(route).or_default() += 1;
        let shared = Arc::downgrade(&self.shared);
        let epoch = self.shared.epoch.load(Ordering::SeqCst);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let Some(shared) = shared.upgrade() else {
                return;
            };
            {
                let mut queues = shared.lock();
                if let Some(n) = queues.delayed.get_mut(&route) {
                    *n = n.saturating_sub(1);
                }
            }
            if shared.epoch.load(Ordering::SeqCst) == epoch && !shared.closed.load(Ordering::SeqCst)
            {
                shared.push(route, message);
            }
        });
        Ok(())
    }

    async fn dead_letter(
        &self,
        route: Route,
        body: &[u8],
        message_id: &str,
        reason: &str,
    ) -> Result<(), MqError> {
        self.shared.check_open()?;
        self.shared.bury(
            route,
            Message {
                body: body.to_vec(),
                id: message_id.to_owned(),
                returned: 0,
            },
            reason.to_owned(),
        );
        Ok(())
    }

    async fn consume(
        &self,
        route: Route,
        prefetch: u16,
        _consumer_tag: &str,
    ) -> Result<Consumer, MqError> {
        self.shared.check_open()?;
        let permits = if prefetch == 0 {
            Semaphore::MAX_PERMITS
        } else {
            usize::from(prefetch)
        };
        Ok(Consumer::new(Box::new(MemoryConsumer {
            shared: self.shared.clone(),
            route,
            permits: Arc::new(Semaphore::new(permits)),
        })))
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, MqError> {
        self.shared.check_open()?;
        Ok(self
            .shared
            .lock()
            .dead
            .iter()
            .take(limit)
            .cloned()
            .collect())
    }

    async fn replay_dead(&self, limit: usize) -> Result<usize, MqError> {
        self.shared.check_open()?;
        let mut moved = Vec::new();
        {
            let mut queues = self.shared.lock();
            let mut kept = VecDeque::new();
            while let Some(letter) = queues.dead.pop_front() {
                match letter.route {
                    Some(route) if moved.len() < limit => moved.push((route, letter)),
                    _ => kept.push_back(letter),
                }
            }
            queues.dead = kept;
        }
        let count = moved.len();
        for (route, letter) in moved {
            self.shared.push(
                route,
                Message {
                    body: letter.body,
                    id: letter.message_id.unwrap_or_default(),
                    returned: 0,
                },
            );
        }
        Ok(count)
    }

    async fn queue_depth(&self, queue: Queue) -> Result<u32, MqError> {
        self.shared.check_open()?;
        let queues = self.shared.lock();
        let n = match queue {
            Queue::Work(route) => queues.ready.get(&route).map_or(0, VecDeque::len),
            Queue::Delayed(route) => queues.delayed.get(&route).copied().unwrap_or(0) as usize,
            Queue::Dead => queues.dead.len(),
        };
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    async fn is_healthy(&self) -> bool {
        !self.shared.closed.load(Ordering::SeqCst)
    }

    fn reconnects(&self) -> u64 {
        0
    }

    async fn close(&self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        for n in self.shared.notify.values() {
            n.notify_waiters();
        }
    }

    async fn delete_topology(&self) {
        self.shared.epoch.fetch_add(1, Ordering::SeqCst);
        *self.shared.lock() = Queues::default();
    }
}

struct MemoryConsumer {
    shared: Arc<Shared>,
    route: Route,
    permits: Arc<Semaphore>,
}

#[async_trait::async_trait]
impl DeliverySource for MemoryConsumer {
    fn route(&self) -> Route {
        self.route
    }

    fn resubscriptions(&self) -> u64 {
        0
    }

    async fn next(&mut self) -> Option<Result<Delivery, MqError>> {
        // The permit is taken before the message, so a cancelled call loses
        // nothing: the message is only removed once the permit is held.
        let permit = self.permits.clone().acquire_owned().await.ok()?;
        let notify = self.shared.notify.get(&self.route)?;
        loop {
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.shared.closed.load(Ordering::SeqCst) {
                return None;
            }
            let popped = self
                .shared
                .lock()
                .ready
                .get_mut(&self.route)
                .and_then(VecDeque::pop_front);
            if let Some(message) = popped {
                return Some(Ok(Delivery::new(
                    message.body.clone(),
                    Some(message.id.clone()),
                    message.returned > 0,
                    message.returned,
                    Box::new(MemorySettle {
                        shared: self.shared.clone(),
                        route: self.route,
                        message: Some(message),
                        _permit: permit,
                    }),
                )));
            }
            notified.await;
        }
    }

    async fn cancel(self: Box<Self>) {}
}

struct MemorySettle {
    shared: Arc<Shared>,
    route: Route,
    message: Option<Message>,
    _permit: OwnedSemaphorePermit,
}

#[async_trait::async_trait]
impl Settle for MemorySettle {
    async fn ack(mut self: Box<Self>) -> Result<(), MqError> {
        self.message = None;
        Ok(())
    }

    async fn nack_requeue(mut self: Box<Self>) -> Result<(), MqError> {
        if let Some(message) = self.message.take() {
            self.shared.give_back(self.route, message);
        }
        Ok(())
    }

    async fn reject(mut self: Box<Self>) -> Result<(), MqError> {
        if let Some(message) = self.message.take() {
            let queue = self.shared.topo.work_queue(self.route);
            self.shared.bury(
                self.route,
                message,
                format!("dead-lettered (rejected) from {queue}"),
            );
        }
        Ok(())
    }
}

impl Drop for MemorySettle {
    fn drop(&mut self) {
        if let Some(message) = self.message.take() {
            self.shared.give_back(self.route, message);
        }
    }
}
