//! Queue depths and topology deletion.

use super::broker::{close_quietly, with_timeout, Budget, Link, RabbitBroker};
use super::error::MqError;
use super::topology::{is_not_found, Queue};
use lapin::options::{ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::Channel;
use std::sync::PoisonError;
use tracing::{debug, warn};

impl RabbitBroker {
    /// The number of ready messages in `queue` (messages delivered to a
    /// consumer and not yet acked are not counted): a work queue (pass a
    /// [`Route`](super::Route)), the delayed messages of a route, or the dead letters.
    /// For metrics, autoscaling and readiness.
    pub async fn queue_depth(&self, queue: impl Into<Queue>) -> Result<u32, MqError> {
        let budget = Budget::new("queue depth", self.inner.config.op_timeout);
        let link = self.link(&budget).await?;
        let topo = &self.inner.topo;
        match queue.into() {
            Queue::Work(route) => {
                let name = topo.work_queue(route);
                self.depth_of(&link, &name)
                    .await?
                    .ok_or(MqError::MissingQueue(name))
            }
            Queue::Dead => {
                let name = topo.dead_queue();
                self.depth_of(&link, &name)
                    .await?
                    .ok_or(MqError::MissingQueue(name))
            }
            Queue::Delayed(route) => {
                let mut total = 0u32;
                for bucket in super::RETRY_BUCKETS {
                    let name = topo.retry_queue(route, bucket);
                    let depth = self.depth_of(&link, &name).await?.unwrap_or(0);
                    total = total.saturating_add(depth);
                }
                Ok(total)
            }
        }
    }

    /// The ready count of queue `name` through a passive declaration on a
    /// channel of its own; `None` when the queue does not exist.
    async fn depth_of(&self, link: &Link, name: &str) -> Result<Option<u32>, MqError> {
        let limit = self.inner.config.op_timeout;
        let channel = self.open_channel(link).await?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let declared = with_timeout(
            limit,
            "queue.declare",
            channel.queue_declare(name, passive, FieldTable::default()),
        )
        .await;
        close_quietly(&channel, limit).await;
        match declared {
            Ok(queue) => Ok(Some(queue.message_count())),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(source) => Err(MqError::Channel {
                op: "passive queue.declare",
                source,
            }),
        }
    }

    /// Deletes every queue (work, dead-letter, retry) and the exchange of the
    /// namespace, with their messages; best effort, failures are logged.
    /// For tests and decommissioning: stop consumers first, as a live
    /// consumer re-declares the topology when it re-subscribes.
    pub async fn delete_topology(&self) {
        let limit = self.inner.config.op_timeout;
        let budget = Budget::new("topology deletion", limit);
        let link = match self.link(&budget).await {
            Ok(link) => link,
            Err(e) => {
                warn!(error = %e, "cannot delete the RabbitMQ topology");
                return;
            }
        };
        let mut channel: Option<Channel> = None;
        let topo = &self.inner.topo;
        let mut steps: Vec<(String, bool)> =
            topo.all_queues().into_iter().map(|q| (q, true)).collect();
        steps.push((topo.exchange().to_owned(), false));
        for (name, is_queue) in steps {
            let ch = match channel.take() {
                Some(ch) if ch.status().connected() => ch,
                _ => match self.open_channel(&link).await {
                    Ok(ch) => ch,
                    Err(e) => {
                        warn!(error = %e, "cannot delete the RabbitMQ topology");
                        return;
                    }
                },
            };
            let deleted = if is_queue {
                with_timeout(
                    limit,
                    "queue.delete",
                    ch.queue_delete(&name, QueueDeleteOptions::default()),
                )
                .await
                .map(drop)
            } else {
                with_timeout(
                    limit,
                    "exchange.delete",
                    ch.exchange_delete(&name, ExchangeDeleteOptions::default()),
                )
                .await
            };
            if let Err(e) = deleted {
                debug!(%name, error = %e, "RabbitMQ deletion failed");
            }
            channel = Some(ch);
        }
        if let Some(ch) = channel {
            close_quietly(&ch, limit).await;
        }
        link.retry_declared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}
