//! In-process channels of transfer events, one per transfer id that has a
//! live subscriber and only while it has one: the last [`Subscription`] of
//! an id to go removes its channel, so subscribing costs nothing once the
//! subscriber is gone (whatever the id, known or not).

use super::TransferEvent;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use tokio::sync::broadcast;

/// Events a slow subscriber may fall behind by before it skips some (each
/// event carries the whole transfer, so skipping loses nothing but steps).
const CAPACITY: usize = 32;

type Senders = Mutex<HashMap<String, broadcast::Sender<TransferEvent>>>;

/// The live channels of a process, by transfer id (cheap to clone).
#[derive(Clone, Default)]
pub struct Channels {
    senders: Arc<Senders>,
}

impl std::fmt::Debug for Channels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channels")
            .field("live", &self.live())
            .finish()
    }
}

impl Channels {
    /// No channels.
    pub fn new() -> Channels {
        Channels::default()
    }

    /// A receiver of `id`'s events from now on; the channel lives as long
    /// as some subscription of `id` does.
    pub fn subscribe(&self, id: &str) -> Subscription {
        let mut map = self.senders.lock().unwrap_or_else(PoisonError::into_inner);
        let rx = map
            .entry(id.to_owned())
            .or_insert_with(|| broadcast::channel(CAPACITY).0)
            .subscribe();
        Subscription {
            rx: Some(rx),
            id: id.to_owned(),
            senders: Arc::downgrade(&self.senders),
        }
    }

    /// The transfer ids that have subscribers now.
    pub fn ids(&self) -> Vec<String> {
        let map = self.senders.lock().unwrap_or_else(PoisonError::into_inner);
        map.keys().cloned().collect()
    }

    /// Whether `id` has subscribers now.
    pub fn watched(&self, id: &str) -> bool {
        let map = self.senders.lock().unwrap_or_else(PoisonError::into_inner);
        map.contains_key(id)
    }

    /// Delivers `event` to `id`'s subscribers, if it has any.
    pub fn send(&self, id: &str, event: TransferEvent) {
        let mut map = self.senders.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tx) = map.get(id) {
            if tx.send(event).is_err() {
                map.remove(id);
            }
        }
    }

    /// How many ids have a live channel.
    pub fn live(&self) -> usize {
        self.senders
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// A weak handle for a background task (which must not keep the
    /// channels alive).
    pub(crate) fn downgrade(&self) -> WeakChannels {
        WeakChannels(Arc::downgrade(&self.senders))
    }
}

/// A [`Channels`] that does not keep the channels alive.
pub(crate) struct WeakChannels(Weak<Senders>);

impl WeakChannels {
    /// The channels, while someone else holds them.
    pub(crate) fn upgrade(&self) -> Option<Channels> {
        self.0.upgrade().map(|senders| Channels { senders })
    }

    /// Whether the channels are gone.
    pub(crate) fn is_gone(&self) -> bool {
        self.0.strong_count() == 0
    }
}

/// A subscription to one transfer's events; dropping the last one of an id
/// removes the id's channel.
#[derive(Debug)]
pub struct Subscription {
    rx: Option<broadcast::Receiver<TransferEvent>>,
    id: String,
    senders: Weak<Senders>,
}

impl Subscription {
    /// The next event (as [`broadcast::Receiver::recv`]).
    pub async fn recv(&mut self) -> Result<TransferEvent, broadcast::error::RecvError> {
        match self.rx.as_mut() {
            Some(rx) => rx.recv().await,
            None => Err(broadcast::error::RecvError::Closed),
        }
    }

    /// The next event if one is waiting (as [`broadcast::Receiver::try_recv`]).
    pub fn try_recv(&mut self) -> Result<TransferEvent, broadcast::error::TryRecvError> {
        match self.rx.as_mut() {
            Some(rx) => rx.try_recv(),
            None => Err(broadcast::error::TryRecvError::Closed),
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let Some(senders) = self.senders.upgrade() else {
            return;
        };
        let mut map = senders.lock().unwrap_or_else(PoisonError::into_inner);
        // Drop the receiver under the lock, so that two subscriptions going
        // at once cannot both see the other still there.
        drop(self.rx.take());
        if map.get(&self.id).is_some_and(|tx| tx.receiver_count() == 0) {
            map.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str) -> TransferEvent {
        let transfer = serde_json::from_value(serde_json::json!({
            "id": id, "generation": 1, "state": "accepted", "user": "", "grant_hash": "",
            "revoked": false, "push_url": "", "created_ms": 0, "updated_ms": 0,
            "files_total": 0, "files_done": 0, "bytes_total": 0, "bytes_done": 0,
            "error": null,
        }))
        .unwrap();
        TransferEvent {
            transfer,
            kind: "state".into(),
        }
    }

    #[tokio::test]
    async fn the_last_subscription_removes_its_channel() {
        let channels = Channels::new();
        for i in 0..1000 {
            drop(channels.subscribe(&format!("unknown-{i}")));
        }
        assert_eq!(channels.live(), 0);
        let mut a = channels.subscribe("t");
        let b = channels.subscribe("t");
        assert_eq!(channels.live(), 1);
        drop(b);
        assert_eq!(channels.live(), 1, "a still listens");
        channels.send("t", event("t"));
        assert_eq!(a.recv().await.map(|e| e.transfer.id).ok(), Some("t".into()));
        drop(a);
        assert_eq!(channels.live(), 0);
        // Sending to an id without subscribers creates nothing.
        channels.send("t", event("t"));
        assert_eq!(channels.live(), 0);
    }

    #[tokio::test]
    async fn concurrent_drops_leave_nothing() {
        let channels = Channels::new();
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let subs: Vec<_> = (0..4).map(|_| channels.subscribe("same")).collect();
            for s in subs {
                tasks.push(tokio::spawn(async move { drop(s) }));
            }
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(channels.live(), 0);
    }
}
