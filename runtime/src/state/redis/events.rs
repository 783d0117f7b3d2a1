//! The pub/sub events of transfers: one `PSUBSCRIBE` connection per
//! process, fanned out to in-process subscribers. On a Redis Cluster a
//! `PUBLISH` reaches every node, so the hub subscribes on one seed (the
//! next one when it is lost); under Sentinel on the current primary.

use super::conn::Subscriber;
use crate::state::{Channels, TransferEvent};
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
    /// seen).
    pub(super) fn start(
        subscriber: Subscriber,
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
                if let Some(tx) = ready_tx.take() {
                    let _ = tx.send(());
                }
                let mut messages = pubsub.on_message();
                while let Some(msg) = messages.next().await {
                    let Some(channels) = weak.upgrade() else {
                        return;
                    };
                    let channel = msg.get_channel_name().to_owned();
                    let Some(id) = channel.strip_prefix(&prefix) else {
                        continue;
                    };
                    let Ok(payload) = msg.get_payload::<String>() else {
                        continue;
                    };
                    let Ok(event) = serde_json::from_str::<TransferEvent>(&payload) else {
                        continue;
                    };
                    channels.send(id, event);
                }
                tracing::warn!("event hub: subscription ended, reconnecting");
            }
        });
        (hub, ready)
    }
}
