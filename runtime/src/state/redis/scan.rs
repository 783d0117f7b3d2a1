//! What reads more than one slot: `SCAN` over every master of a cluster
//! (one server otherwise), deleting keys one by one (a multi-key `DEL`
//! would cross slots), and the transfer counts read bucket by bucket.

use super::conn::{cluster_masters, Conn, RedisTarget};
use super::{RedisStore, TRANSFER_BUCKETS};
use crate::state::{now_ms, StateError, TransferState};
use futures_util::{StreamExt, TryStreamExt};
use redis::{AsyncCommands, Script};
use std::collections::HashMap;
use std::sync::OnceLock;

/// How many commands of a fan-out are in flight at once.
const FAN_OUT: usize = 32;

/// Prunes the finished entries past their expiry and counts each state of
/// some buckets. KEYS: each bucket's index sets in [`TransferState::ALL`]
/// order; ARGV: now (ms), then 1 for each key that is a finished state.
const COUNT_LUA: &str = r"
local out = {}
for i, key in ipairs(KEYS) do
  if ARGV[i + 1] == '1' then redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[1]) end
  out[i] = redis.call('ZCARD', key)
end
return out
";

fn count_script() -> &'static Script {
    static SCRIPT: OnceLock<Script> = OnceLock::new();
    SCRIPT.get_or_init(|| Script::new(COUNT_LUA))
}

/// Every key matching `pattern` on the server behind `conn`.
async fn scan_one<C: redis::aio::ConnectionLike + Send>(
    conn: &mut C,
    pattern: &str,
) -> Result<Vec<String>, StateError> {
    let mut iter: redis::AsyncIter<String> = conn.scan_match(pattern).await?;
    let mut keys = Vec::new();
    while let Some(k) = iter.next_item().await {
        keys.push(k);
    }
    Ok(keys)
}

impl RedisStore {
    /// Every key matching `pattern` (SCAN, never KEYS), on every master of
    /// a cluster.
    pub(super) async fn scan_keys(&self, pattern: &str) -> Result<Vec<String>, StateError> {
        let mut conn = self.conn.clone();
        let RedisTarget::Cluster(seeds) = &*self.target else {
            return scan_one(&mut conn, pattern).await;
        };
        let seed = seeds.first().map_or("redis://127.0.0.1", String::as_str);
        let mut keys = Vec::new();
        for master in cluster_masters(&mut conn, seed).await? {
            let client = self.tls.client(&master)?;
            let mut node = client.get_multiplexed_async_connection().await?;
            keys.extend(scan_one(&mut node, pattern).await?);
        }
        Ok(keys)
    }

    /// Deletes `keys`, one command each (they may lie in any slot).
    pub(super) async fn delete_each(&self, keys: Vec<String>) -> Result<(), StateError> {
        let conn = self.conn.clone();
        futures_util::stream::iter(keys)
            .map(|key| {
                let mut conn: Conn = conn.clone();
                async move { conn.del::<_, u64>(key).await }
            })
            .buffer_unordered(FAN_OUT)
            .try_collect::<Vec<u64>>()
            .await?;
        Ok(())
    }

    /// Transfers per state, summed over the buckets' index sets: one
    /// script over all of them on one server, one per bucket (slot) on a
    /// cluster.
    pub(super) async fn counts(&self) -> Result<HashMap<TransferState, u64>, StateError> {
        let now = now_ms();
        let conn = self.conn.clone();
        let groups: Vec<Vec<u32>> = if conn.is_cluster() {
            (0..TRANSFER_BUCKETS).map(|b| vec![b]).collect()
        } else {
            vec![(0..TRANSFER_BUCKETS).collect()]
        };
        let per_group: Vec<Vec<u64>> = futures_util::stream::iter(groups)
            .map(|buckets| {
                let mut conn: Conn = conn.clone();
                let prefixes: Vec<String> = buckets
                    .iter()
                    .map(|b| self.bucket_index_prefix(*b))
                    .collect();
                async move {
                    let mut invocation = count_script().prepare_invoke();
                    invocation.arg(now);
                    for prefix in &prefixes {
                        for state in TransferState::ALL {
                            invocation
                                .key(format!("{prefix}{}", state.as_str()))
                                .arg(u8::from(state.is_terminal()));
                        }
                    }
                    invocation.invoke_async::<Vec<u64>>(&mut conn).await
                }
            })
            .buffer_unordered(FAN_OUT)
            .try_collect()
            .await?;
        let mut counts = HashMap::new();
        for sizes in per_group
            .iter()
            .flat_map(|g| g.chunks(TransferState::ALL.len()))
        {
            for (state, n) in TransferState::ALL.into_iter().zip(sizes.iter().copied()) {
                if n > 0 {
                    *counts.entry(state).or_insert(0) += n;
                }
            }
        }
        Ok(counts)
    }
}
