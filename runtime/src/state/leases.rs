//! Leases (one holder at a time, with a TTL) and the restart fence, and
//! [`LeaseGuard`], the one way the workers hold a lease: taken, renewed in
//! the background at a quarter of its TTL, and released.
//!
//! Lease names are formed here only ([`Lease`]); in Redis a lease is
//! `{ns}:lease:{name}` with the names `process:{id}:{gen}`,
//! `start:{id}:{gen}`, `finish:{id}:{gen}`, `push:{id}:{gen}:{file}` and
//! `client:{client}:slot:{k}`; the transfers waiting for a client's slot
//! are the sorted set `{ns}:slotwait:{client}`.

use super::{ClientName, State, StateError};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What a lease guards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease(String);

impl Lease {
    /// The processing of one transfer generation.
    pub fn process(id: &str, generation: u64) -> Lease {
        Lease(format!("process:{id}:{generation}"))
    }

    /// The start request of a generation.
    pub fn start(id: &str, generation: u64) -> Lease {
        Lease(format!("start:{id}:{generation}"))
    }

    /// The finish request of a generation.
    pub fn finish(id: &str, generation: u64) -> Lease {
        Lease(format!("finish:{id}:{generation}"))
    }

    /// The push of one file of a generation.
    pub fn push(id: &str, generation: u64, file: &str) -> Lease {
        Lease(format!("push:{id}:{generation}:{file}"))
    }

    /// Slot `slot` of the concurrent pushes allowed to a client.
    pub fn client_slot(client: &ClientName, slot: u32) -> Lease {
        Lease(format!("client:{client}:slot:{slot}"))
    }
}

impl std::fmt::Display for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Leases and fence registrations, implemented by each backend.
#[async_trait::async_trait]
pub trait LeaseStore: Send + Sync {
    /// Takes the lease `name` for `holder` for `ttl`, if free.
    async fn acquire_lease(
        &self,
        name: &Lease,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StateError>;

    /// Extends a lease still held by `holder`; false when it was lost.
    async fn renew_lease(
        &self,
        name: &Lease,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StateError>;

    /// Releases a lease held by `holder`.
    async fn release_lease(&self, name: &Lease, holder: &str) -> Result<bool, StateError>;

    /// Registers `holder` as sending requests of generation `generation` to
    /// the client, for `ttl` (renewed with [`LeaseStore::renew_fence`]);
    /// atomically refused (false) unless that generation is the transfer's
    /// current one and is pushing. The start request of a later generation
    /// waits until no holder of an earlier one remains
    /// ([`LeaseStore::fence_clear`]), so no request of a superseded
    /// generation is in flight when the client is told to start again.
    async fn enter_fence(
        &self,
        id: &str,
        generation: u64,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StateError>;

    /// Extends `holder`'s registration for `generation`; false when it
    /// expired or was left.
    async fn renew_fence(
        &self,
        id: &str,
        generation: u64,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StateError>;

    /// Removes `holder`'s registration for `generation`.
    async fn leave_fence(&self, id: &str, generation: u64, holder: &str) -> Result<(), StateError>;

    /// True when no live registration of a generation before `generation`
    /// remains (expired ones are dropped).
    async fn fence_clear(&self, id: &str, generation: u64) -> Result<bool, StateError>;

    /// Notes that `member` (a transfer generation, `{id}:{generation}`)
    /// waits for a push slot of `client`; a pusher holding one takes it
    /// next ([`LeaseStore::next_waiting`]). A member keeps its place when
    /// noted again; the list disappears `ttl` after its last addition.
    async fn wait_for_slot(
        &self,
        client: &ClientName,
        member: &str,
        ttl: Duration,
    ) -> Result<(), StateError>;

    /// Removes and returns the member of `client`'s list that waited
    /// longest, if any.
    async fn next_waiting(&self, client: &ClientName) -> Result<Option<String>, StateError>;
}

/// A background task that runs `renew` every `period` until it answers
/// false (or fails), then marks itself lost; stopped when dropped.
#[derive(Debug)]
pub struct Heartbeat {
    alive: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Heartbeat {
    /// Starts renewing.
    pub fn start<F, Fut>(period: Duration, mut renew: F) -> Heartbeat
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<bool, StateError>> + Send,
    {
        let alive = Arc::new(AtomicBool::new(true));
        let task = {
            let alive = alive.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(period).await;
                    match renew().await {
                        Ok(true) => {}
                        Ok(false) => break,
                        Err(e) => {
                            tracing::warn!(error = %e, "could not renew; treating it as lost");
                            break;
                        }
                    }
                }
                alive.store(false, Ordering::SeqCst);
            })
        };
        Heartbeat { alive, task }
    }

    /// Whether every renewal so far succeeded.
    pub fn alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A held lease, renewed in the background at a quarter of its TTL until
/// [`LeaseGuard::release`] (or dropped: then it expires by itself).
#[derive(Debug)]
pub struct LeaseGuard {
    state: State,
    lease: Lease,
    holder: String,
    heartbeat: Heartbeat,
}

impl LeaseGuard {
    /// Takes `lease` for `holder` if it is free.
    pub async fn acquire(
        state: &State,
        lease: Lease,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<LeaseGuard>, StateError> {
        if !state.acquire_lease(&lease, holder, ttl).await? {
            return Ok(None);
        }
        let heartbeat = {
            let (state, lease, holder) = (state.clone(), lease.clone(), holder.to_owned());
            Heartbeat::start(ttl / 4, move || {
                let (state, lease, holder) = (state.clone(), lease.clone(), holder.clone());
                async move {
                    let renewed = state.renew_lease(&lease, &holder, ttl).await;
                    if !matches!(renewed, Ok(true)) {
                        tracing::warn!(%lease, "lost a lease");
                    }
                    renewed
                }
            })
        };
        Ok(Some(LeaseGuard {
            state: state.clone(),
            lease,
            holder: holder.to_owned(),
            heartbeat,
        }))
    }

    /// Whether the lease is still held (every renewal succeeded).
    pub fn holds(&self) -> bool {
        self.heartbeat.alive()
    }

    /// Stops renewing and gives the lease back (a failure is logged: the
    /// lease then expires by itself).
    pub async fn release(self) {
        drop(self.heartbeat);
        if let Err(e) = self.state.release_lease(&self.lease, &self.holder).await {
            tracing::warn!(lease = %self.lease, error = %e, "could not release a lease (it expires)");
        }
    }
}
