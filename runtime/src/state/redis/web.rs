//! The web side's records in Redis, and the flags, first sightings and
//! counters the marks and client health are made of.

use super::{millis, RedisStore};
use crate::state::keys::{Key, Primitives};
use crate::state::{now_ms, StateError, WebKey, WebList, WebStore};
use redis::{AsyncCommands, Script};
use std::time::Duration;

/// `kv_replace`: KEYS[1] the entry; ARGV: the value expected, the new
/// value, its time to live in ms (0: for good). 1 when replaced.
const REPLACE_LUA: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if tonumber(ARGV[3]) > 0 then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[2])
end
return 1
";

/// `kv_delete_if`: KEYS[1] the entry; ARGV[1] the value expected. 1 when
/// deleted.
const DELETE_IF_LUA: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
";

impl RedisStore {
    /// Prepends `value` to `list` (removed first where it was, when
    /// `unique`) and keeps the newest `keep` items, in one transaction.
    async fn push_to_list(
        &self,
        list: &WebList<'_>,
        value: &str,
        keep: usize,
        unique: bool,
    ) -> Result<(), StateError> {
        let mut conn = self.conn.clone();
        let key = self.key(&format!("list:{}", list.name()));
        let last = isize::try_from(keep).unwrap_or(isize::MAX).max(1) - 1;
        let mut pipe = redis::pipe();
        pipe.atomic();
        if unique {
            pipe.lrem(&key, 0, value).ignore();
        }
        let () = pipe
            .lpush(&key, value)
            .ignore()
            .ltrim(&key, 0, last)
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl WebStore for RedisStore {
    async fn kv_get(&self, key: &WebKey<'_>) -> Result<Option<String>, StateError> {
        let mut conn = self.conn.clone();
        Ok(conn.get(self.kv_key(key)).await?)
    }

    async fn kv_set(
        &self,
        key: &WebKey<'_>,
        value: &str,
        ttl: Option<Duration>,
    ) -> Result<(), StateError> {
        let mut conn = self.conn.clone();
        let key = self.kv_key(key);
        let mut cmd = redis::cmd("SET");
        cmd.arg(&key).arg(value);
        if let Some(ttl) = ttl {
            cmd.arg("PX").arg(millis(ttl));
        }
        let () = cmd.query_async(&mut conn).await?;
        Ok(())
    }

    async fn kv_set_nx(
        &self,
        key: &WebKey<'_>,
        value: &str,
        ttl: Option<Duration>,
    ) -> Result<bool, StateError> {
        let key = self.kv_key(key);
        match ttl {
            Some(ttl) => self.set_nx(&key, value, ttl).await,
            None => {
                let mut conn = self.conn.clone();
                Ok(conn.set_nx(&key, value).await?)
            }
        }
    }

    async fn kv_replace(
        &self,
        key: &WebKey<'_>,
        expected: &str,
        value: &str,
        ttl: Option<Duration>,
    ) -> Result<bool, StateError> {
        let mut conn = self.conn.clone();
        let replaced: i64 = Script::new(REPLACE_LUA)
            .key(self.kv_key(key))
            .arg(expected)
            .arg(value)
            .arg(ttl.map_or(0, millis))
            .invoke_async(&mut conn)
            .await?;
        Ok(replaced == 1)
    }

    async fn kv_delete_if(&self, key: &WebKey<'_>, expected: &str) -> Result<bool, StateError> {
        let mut conn = self.conn.clone();
        let deleted: i64 = Script::new(DELETE_IF_LUA)
            .key(self.kv_key(key))
            .arg(expected)
            .invoke_async(&mut conn)
            .await?;
        Ok(deleted == 1)
    }

    async fn kv_take(&self, key: &WebKey<'_>) -> Result<Option<String>, StateError> {
        let mut conn = self.conn.clone();
        Ok(redis::cmd("GETDEL")
            .arg(self.kv_key(key))
            .query_async(&mut conn)
            .await?)
    }

    async fn kv_delete(&self, key: &WebKey<'_>) -> Result<bool, StateError> {
        let mut conn = self.conn.clone();
        let n: u64 = conn.del(self.kv_key(key)).await?;
        Ok(n > 0)
    }

    async fn schedule(&self, name: &str, member: &str, due_ms: u64) -> Result<(), StateError> {
        let mut conn = self.conn.clone();
        let _: u64 = conn
            .zadd(self.key(&format!("schedule:{name}")), member, due_ms)
            .await?;
        Ok(())
    }

    async fn due(&self, name: &str, now_ms: u64, limit: usize) -> Result<Vec<String>, StateError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        Ok(conn
            .zrangebyscore_limit(
                self.key(&format!("schedule:{name}")),
                0u64,
                now_ms,
                0,
                isize::try_from(limit).unwrap_or(isize::MAX),
            )
            .await?)
    }

    async fn unschedule(&self, name: &str, member: &str) -> Result<(), StateError> {
        let mut conn = self.conn.clone();
        let _: u64 = conn
            .zrem(self.key(&format!("schedule:{name}")), member)
            .await?;
        Ok(())
    }

    async fn list_push(
        &self,
        list: &WebList<'_>,
        value: &str,
        keep: usize,
    ) -> Result<(), StateError> {
        self.push_to_list(list, value, keep, false).await
    }

    async fn list_push_unique(
        &self,
        list: &WebList<'_>,
        value: &str,
        keep: usize,
    ) -> Result<(), StateError> {
        self.push_to_list(list, value, keep, true).await
    }

    async fn list_range(
        &self,
        list: &WebList<'_>,
        limit: usize,
    ) -> Result<Vec<String>, StateError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let last = isize::try_from(limit).unwrap_or(isize::MAX) - 1;
        Ok(conn
            .lrange(self.key(&format!("list:{}", list.name())), 0, last)
            .await?)
    }

    async fn list_delete(&self, list: &WebList<'_>) -> Result<bool, StateError> {
        let mut conn = self.conn.clone();
        let n: u64 = conn.del(self.key(&format!("list:{}", list.name()))).await?;
        Ok(n > 0)
    }
}

#[async_trait::async_trait]
impl Primitives for RedisStore {
    async fn raw_flag(&self, name: &Key) -> Result<bool, StateError> {
        let mut conn = self.conn.clone();
        Ok(conn.exists(self.key(&format!("flag:{name}"))).await?)
    }

    async fn raw_set_flag(&self, name: &Key, ttl: Duration) -> Result<bool, StateError> {
        self.set_nx(&self.key(&format!("flag:{name}")), "1", ttl)
            .await
    }

    async fn raw_first_seen(&self, name: &Key, ttl: Duration) -> Result<u64, StateError> {
        let mut conn = self.conn.clone();
        let key = self.key(&format!("seen:{name}"));
        let (_, at): (Option<String>, Option<u64>) = redis::pipe()
            .cmd("SET")
            .arg(&key)
            .arg(now_ms())
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl))
            .get(&key)
            .query_async(&mut conn)
            .await?;
        Ok(at.unwrap_or_else(now_ms))
    }

    async fn raw_clear_flag(&self, name: &Key) -> Result<(), StateError> {
        let mut conn = self.conn.clone();
        let _: u64 = conn.del(self.key(&format!("flag:{name}"))).await?;
        Ok(())
    }

    async fn raw_forget_seen(&self, name: &Key) -> Result<(), StateError> {
        let mut conn = self.conn.clone();
        let _: u64 = conn.del(self.key(&format!("seen:{name}"))).await?;
        Ok(())
    }

    async fn raw_count(&self, name: &Key, window: Duration) -> Result<u64, StateError> {
        let mut conn = self.conn.clone();
        let key = self.key(&format!("count:{name}"));
        let (n, _): (u64, ()) = redis::pipe()
            .incr(&key, 1)
            .pexpire(&key, i64::try_from(window.as_millis()).unwrap_or(i64::MAX))
            .query_async(&mut conn)
            .await?;
        Ok(n)
    }

    async fn raw_counted(&self, name: &Key) -> Result<u64, StateError> {
        let mut conn = self.conn.clone();
        let n: Option<u64> = conn.get(self.key(&format!("count:{name}"))).await?;
        Ok(n.unwrap_or(0))
    }

    async fn raw_reset_count(&self, name: &Key) -> Result<(), StateError> {
        let mut conn = self.conn.clone();
        let _: u64 = conn.del(self.key(&format!("count:{name}"))).await?;
        Ok(())
    }

    async fn raw_set_number(
        &self,
        name: &Key,
        value: u64,
        ttl: Duration,
    ) -> Result<(), StateError> {
        let mut conn = self.conn.clone();
        let () = redis::cmd("SET")
            .arg(self.key(&format!("number:{name}")))
            .arg(value)
            .arg("PX")
            .arg(millis(ttl))
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn raw_number(&self, name: &Key) -> Result<Option<u64>, StateError> {
        let mut conn = self.conn.clone();
        Ok(conn.get(self.key(&format!("number:{name}"))).await?)
    }

    async fn raw_clear_number(&self, name: &Key) -> Result<(), StateError> {
        let mut conn = self.conn.clone();
        let _: u64 = conn.del(self.key(&format!("number:{name}"))).await?;
        Ok(())
    }
}
