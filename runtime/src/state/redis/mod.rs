//! The Redis implementation of the typed stores, one file per store:
//! `transfers.rs` (the transfer state machine in Lua), `users.rs` (grants,
//! bindings, dumps, with quotas in Lua), `leases.rs` (leases and the
//! restart fence), `web.rs` (key-value entries, lists, schedules, and the
//! flags and counters the marks and client health are made of),
//! `previews.rs` (preview records, start and finish in Lua), and
//! `events.rs` (pub/sub events dispatched by one [`EventHub`] per process),
//! `conn.rs` (the connection in its three forms: one server, Redis Cluster,
//! Sentinel) and `scan.rs` (cluster-wide scans and the per-bucket counts).
//!
//! Keys and Redis Cluster: every key a script or a transaction touches
//! together carries the same hash tag, so that they share a slot. A user's
//! keys are tagged by the user (`user:{pk}:…`, `preview:{pk}:…`); a
//! transfer's keys (its hash, files, offsets, done set, restart fence,
//! access capabilities) and the per-state index sets they move between are
//! tagged by the transfer's bucket (`{tN}`, N = a hash of the id modulo
//! [`TRANSFER_BUCKETS`]), so the index stays atomic with the transitions
//! and counts are [`TRANSFER_BUCKETS`] small reads. The grant intake, which
//! spans a user and a transfer, runs as one script on one server and in
//! steps on a cluster (`intake.rs`).

mod conn;
mod events;
mod intake;
mod intake_steps;
mod leases;
mod previews;
mod replicas;
mod scan;
mod sentinel;
mod transfers;
mod users;
mod web;

pub use self::conn::{PrimaryLogin, RedisTarget, RedisTls};
pub use self::events::EventHub;

use self::conn::Conn;
use self::replicas::ReplicaBarrier;
use super::{
    now_ms, ClientHealth, GenerationMarks, KvEntry, Quotas, Settled, StateError, StateStore, WebKey,
};
use redis::Script;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The Redis state of one namespace (cheap to clone).
#[derive(Clone)]
pub struct RedisStore {
    conn: Conn,
    /// The grant intakes' connection (its own under Sentinel).
    intake: Conn,
    /// Under Sentinel: waits for a replica before jobs are acknowledged.
    settle: Option<Arc<ReplicaBarrier>>,
    target: Arc<RedisTarget>,
    /// The TLS settings every connection uses (a cluster scan's too).
    tls: Arc<RedisTls>,
    ns: Arc<str>,
    finished_ttl: Duration,
    quotas: Quotas,
    hub: EventHub,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("ns", &self.ns).finish()
    }
}

/// An argument of a script invocation (strings and numbers alike).
trait ToArg: Sync {
    fn add_to(&self, invocation: &mut redis::ScriptInvocation<'_>);
}

impl<T: redis::ToRedisArgs + Sync> ToArg for T {
    fn add_to(&self, invocation: &mut redis::ScriptInvocation<'_>) {
        invocation.arg(self);
    }
}

/// The arguments of Lua `update_grant` ([`RedisStore::grant_args`]).
type GrantArgs<'a> = (&'a str, f64, &'a str, u64, u64, u64, u64);

/// The arguments of a generation's start that follow the transfer's own
/// ([`RedisStore::begin_args`]).
type BeginArgs<'a> = (u64, u64, String, &'a str, u8, &'a str, u64);

/// A TTL in milliseconds for Redis, at least 1.
fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// How long connecting waits for the event hub's first subscription.
const HUB_READY: Duration = Duration::from_secs(5);

/// How many buckets the transfers are spread over (their keys' hash tags
/// `{t0}` … `{t127}`). Fixed: changing it would orphan every transfer key.
pub const TRANSFER_BUCKETS: u32 = 128;

/// The bucket of transfer `id` (FNV-1a of the id).
fn transfer_bucket(id: &str) -> u32 {
    let hash = id.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    hash % TRANSFER_BUCKETS
}

/// The key of transfer `id`'s record in namespace `ns`.
pub(crate) fn transfer_key_in(ns: &str, id: &str) -> String {
    format!("{ns}:transfer:{}:{id}", transfer_tag(id))
}

/// The hash tag of transfer `id`'s keys, braces included.
fn transfer_tag(id: &str) -> String {
    format!("{{t{}}}", transfer_bucket(id))
}

fn parse_num(map: &HashMap<String, String>, field: &str) -> u64 {
    map.get(field).and_then(|v| v.parse().ok()).unwrap_or(0)
}

impl RedisStore {
    /// Connects to one server (the connection reconnects by itself when
    /// Redis comes back).
    pub async fn connect(
        redis_url: &str,
        namespace: &str,
        finished_ttl: Duration,
    ) -> Result<RedisStore, StateError> {
        let target = RedisTarget::Single(redis_url.to_owned());
        Self::connect_to(&target, namespace, finished_ttl).await
    }

    /// Connects to Redis in the form `target` names: one server, a Redis
    /// Cluster, or the primary that Sentinel names (followed across
    /// failovers).
    pub async fn connect_to(
        target: &RedisTarget,
        namespace: &str,
        finished_ttl: Duration,
    ) -> Result<RedisStore, StateError> {
        Self::connect_secured(target, &RedisTls::default(), namespace, finished_ttl).await
    }

    /// [`RedisStore::connect_to`] with TLS settings for `rediss://`
    /// servers (an authority of their own, a client certificate).
    pub async fn connect_secured(
        target: &RedisTarget,
        tls: &RedisTls,
        namespace: &str,
        finished_ttl: Duration,
    ) -> Result<RedisStore, StateError> {
        let opened = Conn::open(target, tls).await?;
        let ns: Arc<str> = Arc::from(namespace);
        let (hub, subscribed) = EventHub::start(opened.subscriber, opened.conn.clone(), ns.clone());
        // A store that is about to publish should not miss its own events;
        // when the subscription takes longer, the hub keeps trying.
        let _ = tokio::time::timeout(HUB_READY, subscribed).await;
        let settle = opened
            .settle
            .map(|conn| Arc::new(ReplicaBarrier::new(conn, format!("{ns}:replica-settle"))));
        Ok(RedisStore {
            conn: opened.conn,
            intake: opened.intake,
            settle,
            hub,
            target: Arc::new(target.clone()),
            tls: Arc::new(tls.clone()),
            ns,
            finished_ttl,
            quotas: Quotas::DEFAULT,
        })
    }

    /// The same store with these per-user quotas.
    #[must_use]
    pub fn with_quotas(mut self, quotas: Quotas) -> RedisStore {
        self.quotas = quotas;
        self
    }

    /// A key in the namespace.
    fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.ns)
    }

    /// The prefix of the per-state index sets of the bucket of transfer
    /// `id` (the sets share the transfer keys' hash tag).
    fn index_prefix(&self, id: &str) -> String {
        self.bucket_index_prefix(transfer_bucket(id))
    }

    /// The prefix of the per-state index sets of `bucket`.
    fn bucket_index_prefix(&self, bucket: u32) -> String {
        self.key(&format!("index:{{t{bucket}}}:"))
    }

    /// The key of a web entry: a transfer's access capability carries the
    /// transfer's hash tag (the intake sets it with the transfer), the
    /// others their own name.
    fn kv_key(&self, key: &WebKey<'_>) -> String {
        match key {
            WebKey::TransferAccess { id, .. } => {
                self.key(&format!("kv:{}:{}", transfer_tag(id), key.name()))
            }
            _ => self.key(&format!("kv:{}", key.name())),
        }
    }

    /// The six keys of a user's records, in the order the user scripts use.
    fn user_keys(&self, user: &str) -> [String; 6] {
        [
            "contracts",
            "history",
            "contract_dates",
            "usage",
            "bind",
            "dumps",
        ]
        .map(|k| self.user_key(user, k))
    }

    /// One key of a user's records (hash-tagged by the user).
    fn user_key(&self, user: &str, rest: &str) -> String {
        self.key(&format!("user:{{{user}}}:{rest}"))
    }

    fn guest_ttl_ms(&self) -> u64 {
        millis(self.quotas.guest_ttl)
    }

    /// The arguments Lua `update_grant` reads, in its order: contract hash,
    /// date (ms), token, the three grant quotas and the guest TTL (ms).
    /// Every script that stores a grant passes them as one run.
    fn grant_args<'a>(
        &self,
        contract_hash: &'a str,
        date_ms: f64,
        token: &'a str,
    ) -> GrantArgs<'a> {
        let q = self.quotas;
        (
            contract_hash,
            date_ms,
            token,
            q.contracts,
            q.history,
            q.grant_bytes,
            self.guest_ttl_ms(),
        )
    }

    /// The arguments a grant intake's generation start reads after the
    /// transfer's own, in its order: now (ms), the finished TTL (s), the
    /// bucket's index prefix, the id, and the access capability (whether
    /// there is one, its value, its TTL in ms). The one-script intake and
    /// the cluster's begin step pass them as one run.
    fn begin_args<'a>(&self, id: &'a str, capability: Option<&KvEntry<'a>>) -> BeginArgs<'a> {
        (
            now_ms(),
            self.ttl_secs(),
            self.index_prefix(id),
            id,
            u8::from(capability.is_some()),
            capability.map_or("", |c| c.value),
            capability.map_or(1, |c| millis(c.ttl)),
        )
    }

    /// Runs a user script (KEYS = [`RedisStore::user_keys`]) answering
    /// `{code, text}`: code -1 is a refused quota named by the text.
    async fn user_script(
        &self,
        lua: &str,
        user: &str,
        args: &[&dyn ToArg],
    ) -> Result<(i64, String), StateError> {
        let mut conn = self.conn.clone();
        let script = Script::new(lua);
        let mut invocation = script.prepare_invoke();
        for key in self.user_keys(user) {
            invocation.key(key);
        }
        for arg in args {
            arg.add_to(&mut invocation);
        }
        let (code, text): (i64, String) = invocation.invoke_async(&mut conn).await?;
        if code < 0 {
            return Err(self.quota_error(&text));
        }
        Ok((code, text))
    }

    fn quota_error(&self, which: &str) -> StateError {
        let q = &self.quotas;
        let (quota, limit) = match which {
            "contracts" => ("contracts", q.contracts),
            "grant_bytes" => ("grant_bytes", q.grant_bytes),
            "dumps" => ("dumps", q.dumps),
            _ => ("dump_bytes", q.dump_bytes),
        };
        StateError::Quota { quota, limit }
    }

    fn transfer_key(&self, id: &str) -> String {
        transfer_key_in(&self.ns, id)
    }

    fn files_key(&self, id: &str, generation: u64) -> String {
        format!("{}:files:{generation}", self.transfer_key(id))
    }

    /// The generation's queued flag: a push job is queued and not started
    /// ([`TransferStore::add_files`]).
    fn queued_key(&self, id: &str, generation: u64) -> String {
        format!("{}:queued:{generation}", self.transfer_key(id))
    }

    fn offsets_key(&self, id: &str, generation: u64) -> String {
        format!("{}:offsets:{generation}", self.transfer_key(id))
    }

    fn fence_key(&self, id: &str) -> String {
        self.key(&format!("fence:{}:{id}", transfer_tag(id)))
    }

    fn ttl_secs(&self) -> u64 {
        self.finished_ttl.as_secs().max(1)
    }

    /// `SET key value NX PX ttl`: true when the key was free and is now set.
    async fn set_nx(
        &self,
        key: &str,
        value: impl redis::ToRedisArgs,
        ttl: Duration,
    ) -> Result<bool, StateError> {
        let mut conn = self.conn.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl))
            .query_async(&mut conn)
            .await?;
        Ok(set.is_some())
    }
}

#[async_trait::async_trait]
impl StateStore for RedisStore {
    fn namespace(&self) -> &str {
        &self.ns
    }

    async fn ping(&self) -> bool {
        let mut conn = self.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .is_ok()
    }

    async fn settle_writes(&self) -> Result<Settled, StateError> {
        match &self.settle {
            Some(barrier) => barrier.wait().await,
            None => Ok(Settled::Replicated),
        }
    }

    async fn purge_namespace(&self) -> Result<(), StateError> {
        let keys = self.scan_keys(&self.key("*")).await?;
        self.delete_each(keys).await
    }
}

impl GenerationMarks for RedisStore {}

impl ClientHealth for RedisStore {}
