//! The Redis implementation of the typed stores, one file per store:
//! `transfers.rs` (the transfer state machine in Lua), `users.rs` (grants,
//! bindings, dumps, with quotas in Lua), `leases.rs` (leases and the
//! restart fence), `web.rs` (key-value entries, lists, schedules, and the
//! flags and counters the marks and client health are made of),
//! `previews.rs` (preview records, start and finish in Lua), and
//! `events.rs` (pub/sub events dispatched by one [`EventHub`] per process).

mod events;
mod intake;
mod leases;
mod previews;
mod transfers;
mod users;
mod web;

pub use self::events::EventHub;

use super::{ClientHealth, GenerationMarks, Quotas, StateError, StateStore};
use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use redis::Script;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The Redis state of one namespace (cheap to clone).
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    client: redis::Client,
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

/// A TTL in milliseconds for Redis, at least 1.
fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn parse_num(map: &HashMap<String, String>, field: &str) -> u64 {
    map.get(field).and_then(|v| v.parse().ok()).unwrap_or(0)
}

impl RedisStore {
    /// Connects (the connection reconnects by itself when Redis comes back).
    pub async fn connect(
        redis_url: &str,
        namespace: &str,
        finished_ttl: Duration,
    ) -> Result<RedisStore, StateError> {
        let client = redis::Client::open(redis_url)?;
        let conn = ConnectionManager::new(client.clone()).await?;
        let ns: Arc<str> = Arc::from(namespace);
        Ok(RedisStore {
            conn,
            hub: EventHub::start(client.clone(), ns.clone()),
            client,
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

    /// The prefix of the per-state index sets.
    fn index_prefix(&self) -> String {
        self.key("index:")
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
        .map(|k| self.key(&format!("user:{user}:{k}")))
    }

    fn guest_ttl_ms(&self) -> u64 {
        millis(self.quotas.guest_ttl)
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
        self.key(&format!("transfer:{id}"))
    }

    fn files_key(&self, id: &str, generation: u64) -> String {
        format!("{}:files:{generation}", self.transfer_key(id))
    }

    fn offsets_key(&self, id: &str, generation: u64) -> String {
        format!("{}:offsets:{generation}", self.transfer_key(id))
    }

    fn fence_key(&self, id: &str) -> String {
        self.key(&format!("fence:{id}"))
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

    /// Every key matching `pattern` (SCAN, never KEYS).
    async fn scan_keys(&self, pattern: &str) -> Result<Vec<String>, StateError> {
        let mut conn = self.conn.clone();
        let mut iter: redis::AsyncIter<String> = conn.scan_match(pattern).await?;
        let mut keys = Vec::new();
        while let Some(k) = iter.next_item().await {
            keys.push(k);
        }
        Ok(keys)
    }

    /// A new client for callers that need their own connection.
    pub fn client(&self) -> &redis::Client {
        &self.client
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

    async fn purge_namespace(&self) -> Result<(), StateError> {
        let keys = self.scan_keys(&self.key("*")).await?;
        let mut conn = self.conn.clone();
        for chunk in keys.chunks(500) {
            let _: u64 = conn.del(chunk).await?;
        }
        Ok(())
    }
}

impl GenerationMarks for RedisStore {}

impl ClientHealth for RedisStore {}
