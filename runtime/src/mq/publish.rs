//! Publishing with publisher confirms, retried across reconnections.

use super::broker::{close_quietly, with_timeout, Budget, Link, RabbitBroker};
use super::error::{timed_out, MqError};
use super::topology::{self, retry_bucket, Route, DEAD_KEY};
use lapin::options::BasicPublishOptions;
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;
use std::sync::PoisonError;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing::debug;

/// Longest `x-alias-reason` header kept (headers must fit in one frame).
const MAX_REASON: usize = 4096;

/// Longest message id (an AMQP short string).
const MAX_MESSAGE_ID: usize = 255;

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Now, in Unix milliseconds.
pub(crate) fn unix_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

impl RabbitBroker {
    /// Publishes a job to the work queue of `route` and waits for the
    /// broker's confirm: persistent, `application/json`, with `message_id`.
    ///
    /// A broken connection is re-established and the publish retried until
    /// [`super::BrokerConfig::publish_timeout`]; when this returns `Ok` the broker
    /// has stored the message. A retry may store it twice (consumers are
    /// idempotent). A negative confirm is retried the same way, on a new
    /// channel (a quorum queue may refuse publishes while its members change
    /// after a node's loss); [`MqError::Nack`] when the broker still refuses
    /// at the end of the budget.
    pub async fn publish(
        &self,
        route: Route,
        body: &[u8],
        message_id: &str,
    ) -> Result<(), MqError> {
        let properties = self.properties(message_id, None)?;
        self.publish_to_work_queue("publish", route, body, properties)
            .await
    }

    /// Publishes to the work queue of `route` through the exchange.
    async fn publish_to_work_queue(
        &self,
        op: &'static str,
        route: Route,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), MqError> {
        self.publish_with(
            op,
            self.inner.topo.exchange(),
            route.as_str(),
            None,
            body,
            properties,
        )
        .await
    }

    /// Publishes a job that reaches the work queue of `route` after `delay`,
    /// rounded up to a retry bucket (see [`super::RETRY_BUCKETS`]; delays
    /// over one hour wait one hour). A zero delay publishes at once.
    /// Confirmed and retried like [`RabbitBroker::publish`].
    pub async fn publish_delayed(
        &self,
        route: Route,
        body: &[u8],
        message_id: &str,
        delay: Duration,
    ) -> Result<(), MqError> {
        if delay.is_zero() {
            return self.publish(route, body, message_id).await;
        }
        let bucket = retry_bucket(delay);
        let mut headers = FieldTable::default();
        let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        headers.insert("x-alias-delay-ms".into(), AMQPValue::LongLongInt(delay_ms));
        let bucket_ms = i64::try_from(bucket.as_millis()).unwrap_or(i64::MAX);
        headers.insert(
            super::delay::DUE_HEADER.into(),
            AMQPValue::LongLongInt(unix_millis().saturating_add(bucket_ms)),
        );
        let properties = self.properties(message_id, Some(headers))?;
        let queue = self.inner.topo.retry_queue(route, bucket);
        self.publish_with(
            "delayed publish",
            "",
            &queue,
            Some((route, bucket)),
            body,
            properties,
        )
        .await
    }

    /// Publishes a delayed job, now due, to the work queue of `route` with
    /// the header `x-alias-moved-from` (the retry bucket it waited in, ms).
    /// Confirmed and retried like [`RabbitBroker::publish`].
    pub(crate) async fn publish_moved(
        &self,
        route: Route,
        body: &[u8],
        message_id: &str,
        bucket: Duration,
    ) -> Result<(), MqError> {
        let mut headers = FieldTable::default();
        let bucket_ms = i64::try_from(bucket.as_millis()).unwrap_or(i64::MAX);
        headers.insert(
            super::delay::MOVED_HEADER.into(),
            AMQPValue::LongLongInt(bucket_ms),
        );
        let properties = self.properties(message_id, Some(headers))?;
        self.publish_to_work_queue("publish of a due job", route, body, properties)
            .await
    }

    /// Publishes a job to the dead-letter queue with the headers
    /// `x-alias-route` (its route) and `x-alias-reason` (why it failed,
    /// truncated to 4 KiB). Confirmed and retried like [`RabbitBroker::publish`];
    /// ack the original delivery only after this returns `Ok`.
    pub async fn dead_letter(
        &self,
        route: Route,
        body: &[u8],
        message_id: &str,
        reason: &str,
    ) -> Result<(), MqError> {
        let mut headers = FieldTable::default();
        headers.insert("x-alias-route".into(), long_string(route.as_str()));
        headers.insert(
            "x-alias-reason".into(),
            long_string(truncate(reason, MAX_REASON)),
        );
        let properties = self.properties(message_id, Some(headers))?;
        self.publish_with(
            "dead-letter publish",
            self.inner.topo.exchange(),
            DEAD_KEY,
            None,
            body,
            properties,
        )
        .await
    }

    fn properties(
        &self,
        message_id: &str,
        headers: Option<FieldTable>,
    ) -> Result<BasicProperties, MqError> {
        if message_id.len() > MAX_MESSAGE_ID {
            return Err(MqError::InvalidInput(format!(
                "message id longer than {MAX_MESSAGE_ID} bytes"
            )));
        }
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type(ShortString::from("application/json"))
            .with_message_id(ShortString::from(message_id))
            .with_timestamp(unix_seconds());
        Ok(match headers {
            Some(headers) => properties.with_headers(headers),
            None => properties,
        })
    }

    pub(crate) async fn publish_with(
        &self,
        op: &'static str,
        exchange: &str,
        routing_key: &str,
        retry_queue: Option<(Route, Duration)>,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), MqError> {
        let budget = Budget::new(op, self.inner.config.publish_timeout);
        let mut backoff = self.backoff();
        loop {
            // Whether this attempt's failure is the broker's refusal.
            let mut nacked = false;
            let link = self.link(&budget).await?;
            let prepared = match retry_queue {
                Some((route, bucket)) => self.ensure_retry_queue(&link, route, bucket).await,
                None => Ok(()),
            };
            let failure = match prepared {
                Err(e) if e.is_permanent() => return Err(e),
                Err(e) => e.to_string(),
                Ok(()) => {
                    let limit = self.inner.config.op_timeout.min(budget.remaining());
                    let attempt = async {
                        link.publisher
                            .basic_publish(
                                exchange,
                                routing_key,
                                BasicPublishOptions {
                                    mandatory: true,
                                    ..BasicPublishOptions::default()
                                },
                                body,
                                properties.clone(),
                            )
                            .await?
                            .await
                    };
                    match with_timeout(limit, "publisher confirm", attempt).await {
                        Ok(Confirmation::Ack(None)) => return Ok(()),
                        Ok(Confirmation::Nack(_)) => {
                            nacked = true;
                            "negative confirm (nack)".to_owned()
                        }
                        Ok(Confirmation::Ack(Some(returned))) => format!(
                            "message returned as unroutable ({} {}) for key {routing_key:?}",
                            returned.reply_code, returned.reply_text
                        ),
                        Ok(Confirmation::NotRequested) => {
                            "publisher confirms are off on the channel".to_owned()
                        }
                        Err(e) => e.to_string(),
                    }
                }
            };
            link.mark_stale();
            let delay = backoff.next_wait();
            if budget.remaining() <= delay {
                if nacked {
                    return Err(MqError::Nack {
                        target: format!("exchange {exchange:?} key {routing_key:?}"),
                        message_id: properties
                            .message_id()
                            .as_ref()
                            .map(|id| id.to_string())
                            .unwrap_or_default(),
                    });
                }
                return Err(budget.timeout(failure));
            }
            debug!(op, error = %failure, retry_in = ?delay, "RabbitMQ publish failed, retrying");
            tokio::time::sleep(delay).await;
        }
    }

    /// Declares the retry queue of `route` for `bucket` (once per
    /// connection), for a consumer of it (see `delay.rs`).
    pub(crate) async fn declare_retry_queue(
        &self,
        route: Route,
        bucket: Duration,
    ) -> Result<(), MqError> {
        let budget = Budget::new("retry queue declaration", self.inner.config.publish_timeout);
        let link = self.link(&budget).await?;
        self.ensure_retry_queue(&link, route, bucket).await
    }

    async fn ensure_retry_queue(
        &self,
        link: &Link,
        route: Route,
        bucket: Duration,
    ) -> Result<(), MqError> {
        let known = link
            .retry_declared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&(route, bucket));
        if known {
            return Ok(());
        }
        let limit = self.inner.config.op_timeout;
        let channel = self.open_channel(link).await?;
        let declared = tokio::time::timeout(
            limit,
            topology::declare_retry(&channel, &self.inner.topo, route, bucket),
        )
        .await
        .unwrap_or_else(|_| {
            Err(MqError::Channel {
                op: "retry queue declaration",
                source: timed_out("retry queue declaration"),
            })
        });
        close_quietly(&channel, limit).await;
        declared?;
        link.retry_declared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((route, bucket));
        Ok(())
    }
}
