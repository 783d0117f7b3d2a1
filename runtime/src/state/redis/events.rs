//! The pub/sub events of transfers: one `PSUBSCRIBE` connection per
//! process, fanned out to in-process subscribers. On a Redis Cluster a
//! `PUBLISH` reaches every node, so the hub subscribes on one seed (the
//! next one when it is lost); under Sentinel on the current primary.
//!
//! An event says only what happened (`PUBLISH {ns}:events:{id} {kind}`,
//! a few bytes): the hub reads the transfer's record when, and only when,
//! someone in its process watches that transfer, so an unwatched change
//! costs one `PUBLISH` and no read, and records (with their grants) are not
//! broadcast to every process. A payload that is a whole JSON event comes
//! from a publisher of an earlier version and is passed on as it is.
//!
//! Pub/sub keeps nothing: what is published while the hub reconnects (a
//! dropped connection, a failover) is lost. After each reconnection the
//! hub therefore reads the record of every transfer with subscribers and
//! sends it as a `status` event, so that watchers catch up.

use super::conn::{Conn, Subscriber};
use super::transfer_key_in;
use super::transfers::parse_transfer;
use crate::state::{Channels, TransferEvent};
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesOrdered;
use futures_util::FutureExt;
use redis::AsyncCommands;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Dispatches the namespace's transfer events (one `PSUBSCRIBE` connection,
/// reconnecting) to in-process subscribers by transfer id.
#[derive(Clone)]
pub struct EventHub {
    pub(super) channels: Channels,
}

impl EventHub {
    /// Starts the hub's subscription task; the receiver is told when the
    /// first subscription is in place (events published before it are not
    /// seen). `reader` reads the records sent after a reconnection.
    pub(super) fn start(
        subscriber: Subscriber,
        reader: Conn,
        ns: Arc<str>,
    ) -> (EventHub, tokio::sync::oneshot::Receiver<()>) {
        let hub = EventHub {
            channels: Channels::new(),
        };
        let (ready_tx, ready) = tokio::sync::oneshot::channel();
        let mut ready_tx = Some(ready_tx);
        let weak = hub.channels.downgrade();
        tokio::spawn(async move {
            use futures_util::StreamExt;
            let pattern = format!("{ns}:events:*");
            let prefix = format!("{ns}:events:");
            let mut backoff = Duration::from_millis(100);
            let mut attempt = 0_usize;
            loop {
                if weak.is_gone() {
                    return;
                }
                let pubsub = subscriber.pubsub(attempt).await;
                attempt = attempt.wrapping_add(1);
                let mut pubsub = match pubsub {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!(error = %e, "event hub: redis unreachable, retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                };
                if let Err(e) = pubsub.psubscribe(&pattern).await {
                    tracing::warn!(error = %e, "event hub: psubscribe failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
                backoff = Duration::from_millis(100);
                match ready_tx.take() {
                    Some(tx) => {
                        let _ = tx.send(());
                    }
                    None => {
                        let Some(channels) = weak.upgrade() else {
                            return;
                        };
                        resync(&channels, &reader, &ns).await;
                    }
                }
                let mut messages = pubsub.on_message();
                // The events being made, in the order of their messages:
                // the records' reads are in flight together on the
                // multiplexed connection, so a burst of events of watched
                // transfers does not wait on one read after another.
                let mut pending: FuturesOrdered<Making> = FuturesOrdered::new();
                loop {
                    tokio::select! {
                        Some((id, event)) = pending.next(), if !pending.is_empty() => {
                            let Some(channels) = weak.upgrade() else {
                                return;
                            };
                            if let Some(event) = event {
                                channels.send(&id, event);
                            }
                        }
                        msg = messages.next(), if pending.len() < MAX_PENDING => {
                            let Some(msg) = msg else {
                                break;
                            };
                            let Some(channels) = weak.upgrade() else {
                                return;
                            };
                            let channel = msg.get_channel_name();
                            let Some(id) = channel.strip_prefix(&prefix) else {
                                continue;
                            };
                            let Ok(payload) = msg.get_payload::<String>() else {
                                continue;
                            };
                            if let Some(making) = event_of(&channels, &reader, &ns, id, payload) {
                                pending.push_back(making);
                            }
                        }
                    }
                }
                tracing::warn!("event hub: subscription ended, reconnecting");
            }
        });
        (hub, ready)
    }
}

/// Events of watched transfers being made at most at once by a hub (their
/// records read); past it the hub reads no message until one is done.
const MAX_PENDING: usize = 256;

/// The making of an event for the watchers of one transfer: its id, and
/// the event (`None`: its record could not be read; the next event will
/// carry it).
type Making = BoxFuture<'static, (String, Option<TransferEvent>)>;

/// What a message of `id` makes for its watchers in this process: its
/// kind with the record read then; nothing when nobody here watches `id`.
fn event_of(
    channels: &Channels,
    reader: &Conn,
    ns: &str,
    id: &str,
    payload: String,
) -> Option<Making> {
    let id = id.to_owned();
    if payload.starts_with('{') {
        let event = serde_json::from_str::<TransferEvent>(&payload).ok()?;
        return Some(std::future::ready((id, Some(event))).boxed());
    }
    if !channels.watched(&id) {
        return None;
    }
    let (reader, key) = (reader.clone(), transfer_key_in(ns, &id));
    Some(
        async move {
            let event = read_record(&reader, &key).await.and_then(|map| {
                let transfer = parse_transfer(&id, &key, &map).ok()??;
                Some(TransferEvent {
                    transfer,
                    kind: payload,
                })
            });
            (id, event)
        }
        .boxed(),
    )
}

/// Sends the record of every transfer with subscribers to them, as a
/// `status` event (after a reconnection, in place of what was missed). A
/// transfer that cannot be read is left to its next event.
async fn resync(channels: &Channels, reader: &Conn, ns: &str) {
    let ids = channels.ids();
    if !ids.is_empty() {
        tracing::info!(
            transfers = ids.len(),
            "event hub: resubscribed, sending the current status to watchers"
        );
    }
    for id in ids {
        let key = transfer_key_in(ns, &id);
        let Some(map) = read_record(reader, &key).await else {
            tracing::debug!(transfer = %id, "event hub: status not read after resubscribing");
            continue;
        };
        if let Ok(Some(transfer)) = parse_transfer(&id, &key, &map) {
            let kind = "status".to_owned();
            channels.send(&id, TransferEvent { transfer, kind });
        }
    }
}

/// A transfer record; the store's connection may have been cut with the
/// subscription and answers its first command with the error, so a failed
/// read is tried again (three times in all, 50 and 100 ms apart).
async fn read_record(reader: &Conn, key: &str) -> Option<HashMap<String, String>> {
    let mut pause = Duration::from_millis(50);
    for attempt in 0..3 {
        if attempt > 0 {
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
        let mut conn = reader.clone();
        if let Ok(map) = conn.hgetall(key).await {
            return Some(map);
        }
    }
    None
}
