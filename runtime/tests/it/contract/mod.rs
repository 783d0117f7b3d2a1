//! The contract of the message bus and of the state store, run against both
//! implementations: in-process (`memory::…`) and real RabbitMQ + Redis
//! (`real::…`). The embedded mode is only as good as this agreement. The
//! state's part also runs against the two other forms of Redis:
//! `cluster::…` (a three-master Redis Cluster, seeds in
//! `ALIAS_TEST_REDIS_CLUSTER_URLS`) and `sentinel::…` (a primary, a replica
//! and three sentinels, in `ALIAS_TEST_REDIS_SENTINEL_URLS`, master
//! `alias`), which `scripts/services` starts.
//!
//! The checks are split by store: `bus.rs` the message bus,
//! `transfers.rs` transfers, contracts, the restart fence and events,
//! `users.rs` grants, users, dumps, quotas and expiry, `stores.rs` flags,
//! counters, leases, generation marks and the web side's entries,
//! `previews.rs` the preview store.

use runtime::mq::{Broker, BrokerConfig, Consumer, Delivery, Queue, Route};
use runtime::state::{
    Added, ClientName, DumpRecord, FileRecord, FileTrouble, Lease, LeaseGuard, Mark, NewTransfer,
    PreviewKey, PreviewLimits, PreviewStart, PreviewState, Quotas, RedisTarget, Request, RetryNote,
    ScopeSummary, State, StateError, TransferState, WebCounter, WebKey, WebList,
};
use std::time::Duration;

mod bus;
mod previews;
mod stores;
mod transfers;
mod users;

#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Memory,
    Real,
    /// The state on a Redis Cluster (the bus in process).
    Cluster,
    /// The state on a Sentinel-watched primary (the bus in process).
    Sentinel,
}

/// The Redis Cluster of the tests.
pub fn cluster_target() -> RedisTarget {
    let urls = std::env::var("ALIAS_TEST_REDIS_CLUSTER_URLS").unwrap_or_else(|_| {
        "redis://127.0.0.1:7101,redis://127.0.0.1:7102,redis://127.0.0.1:7103".to_owned()
    });
    RedisTarget::Cluster(urls.split(',').map(str::to_owned).collect())
}

/// The Sentinel set of the tests.
pub fn sentinel_target() -> RedisTarget {
    let urls = std::env::var("ALIAS_TEST_REDIS_SENTINEL_URLS").unwrap_or_else(|_| {
        "redis://127.0.0.1:7211,redis://127.0.0.1:7212,redis://127.0.0.1:7213".to_owned()
    });
    RedisTarget::Sentinel {
        sentinels: urls.split(',').map(str::to_owned).collect(),
        master: "alias".to_owned(),
        login: Default::default(),
    }
}

const WAIT: Duration = Duration::from_secs(15);

/// A bus and a state on a fresh namespace; the real ones are cleaned up.
struct Env {
    broker: Broker,
    state: State,
    real: bool,
}

impl Env {
    async fn new(backend: Backend) -> Env {
        Self::with(backend, Duration::from_secs(60), Quotas::DEFAULT).await
    }

    async fn with(backend: Backend, ttl: Duration, quotas: Quotas) -> Env {
        let ns = format!("c-{}", uuid::Uuid::new_v4().simple());
        match backend {
            Backend::Memory => Env {
                broker: Broker::in_memory(&ns).unwrap(),
                state: State::in_memory_with(&ns, ttl, quotas),
                real: false,
            },
            Backend::Real => {
                let amqp = std::env::var("ALIAS_AMQP_URL")
                    .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
                let redis = std::env::var("ALIAS_REDIS_URL")
                    .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
                let config = BrokerConfig {
                    publish_timeout: Duration::from_secs(20),
                    ..BrokerConfig::default()
                };
                Env {
                    broker: Broker::connect_with(&amqp, &ns, config)
                        .await
                        .expect("RabbitMQ reachable (scripts/services starts it)"),
                    state: State::connect_with(&redis, &ns, ttl, quotas)
                        .await
                        .expect("Redis reachable (scripts/services starts it)"),
                    real: true,
                }
            }
            Backend::Cluster | Backend::Sentinel => {
                let target = if matches!(backend, Backend::Cluster) {
                    cluster_target()
                } else {
                    sentinel_target()
                };
                Env {
                    broker: Broker::in_memory(&ns).unwrap(),
                    state: State::connect_to(&target, &ns, ttl, quotas).await.expect(
                        "Redis Cluster / Sentinel reachable (scripts/services starts them)",
                    ),
                    real: true,
                }
            }
        }
    }

    async fn finish(self) {
        if self.real {
            self.broker.delete_topology().await;
            self.broker.close().await;
            self.state.purge_namespace().await.unwrap();
        }
    }
}

// ---- bus --------------------------------------------------------------------

// ---- state ------------------------------------------------------------------

async fn next(consumer: &mut Consumer) -> Delivery {
    tokio::time::timeout(WAIT, consumer.next())
        .await
        .expect("a delivery in time")
        .expect("consumer open")
        .expect("delivery")
}

async fn none_within(consumer: &mut Consumer, wait: Duration) {
    if let Ok(Some(d)) = tokio::time::timeout(wait, consumer.next()).await {
        panic!("unexpected delivery {d:?}");
    }
}

async fn depth_becomes(broker: &Broker, queue: Queue, want: u32) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = broker.queue_depth(queue).await.unwrap();
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{queue:?}: depth {got}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn new_transfer<'a>(grant_hash: &'a str) -> NewTransfer<'a> {
    NewTransfer {
        grant_token: "token",
        grant_hash,
        user: "user-key",
        push_url: "https://client.example/alias/push/h",
        revoked: false,
    }
}

fn file(name: &str, size: u64) -> FileRecord {
    FileRecord {
        name: name.into(),
        scope: "google.photos".into(),
        storage_key: format!("archives/{name}"),
        size,
        blake2b: "h".into(),
        offset: 0,
        finished: false,
    }
}

macro_rules! backends {
    ($backend:ident; $($module:ident :: $name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$module::$name(super::Backend::$backend).await;
            }
        )*
    };
}

/// The bus's checks run in process and on RabbitMQ; the state's in
/// process and on each form of Redis.
macro_rules! contract {
    (bus: $($bm:ident :: $bn:ident),* $(,)?; state: $($sm:ident :: $sn:ident),* $(,)?) => {
        mod memory {
            backends!(Memory; $($bm::$bn,)* $($sm::$sn,)*);
        }
        mod real {
            backends!(Real; $($bm::$bn,)* $($sm::$sn,)*);
        }
        mod cluster {
            backends!(Cluster; $($sm::$sn,)*);
        }
        mod sentinel {
            backends!(Sentinel; $($sm::$sn,)*);
        }
    };
}

contract!(
    bus:
    bus::bus_publish_consume_ack,
    bus::bus_unsettled_is_redelivered,
    bus::bus_prefetch_bounds_unsettled,
    bus::bus_dead_letters_listed_and_replayed,
    bus::bus_delayed_publish_arrives_later,
    bus::bus_close_ends_consumers;
    state:
    transfers::state_transfer_lifecycle,
    transfers::state_supersede_restart_cancel,
    transfers::state_files_arrive_while_building,
    transfers::state_contracts_bind_to_their_first_user,
    transfers::state_restart_fence,
    transfers::state_events_follow_changes,
    users::state_grants_follow_the_newer_rule,
    users::state_users_dumps_and_bindings,
    stores::state_flags_counters_and_leases,
    stores::state_generation_marks,
    stores::state_lease_guard_renews_and_releases,
    stores::state_kv_and_lists,
    stores::state_schedules,
    stores::state_slot_waiting_lists,
    users::state_user_quotas,
    users::state_guest_records_expire,
    users::state_counts_by_state_from_indexes,
    previews::state_previews_one_at_a_time_and_limited,
    previews::state_previews_expire,
    users::state_forget_user,
    stores::state_retry_notes,
);
