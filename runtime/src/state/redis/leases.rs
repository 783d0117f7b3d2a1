//! Leases and the restart fence in Redis.

use super::{millis, RedisStore};
use crate::state::{ClientName, Lease, LeaseStore, StateError};
use redis::{AsyncCommands, Script};
use std::time::Duration;

/// The server's clock in ms (one clock for every pusher's fence entries).
pub(super) const NOW_MS_LUA: &str = r"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function keep_key(key, ttl)
  local left = redis.call('PTTL', key)
  if left < ttl then redis.call('PEXPIRE', key, ttl) end
end
";

const ENTER_FENCE_LUA: &str = r"
local t = KEYS[1]
if tonumber(redis.call('HGET', t, 'generation') or '-1') ~= tonumber(ARGV[1]) then return 0 end
if redis.call('HGET', t, 'state') ~= 'pushing' then return 0 end
local ttl = tonumber(ARGV[3])
redis.call('ZADD', KEYS[2], now_ms() + ttl, ARGV[1] .. ':' .. ARGV[2])
keep_key(KEYS[2], ttl)
return 1
";

const RENEW_FENCE_LUA: &str = r"
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then return 0 end
local now = now_ms()
if tonumber(score) <= now then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 0
end
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
keep_key(KEYS[1], ttl)
return 1
";

const FENCE_CLEAR_LUA: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms())
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local g = tonumber(string.match(m, '^(%d+):'))
  if g and g < tonumber(ARGV[1]) then return 0 end
end
return 1
";

const RENEW_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

const RELEASE_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

#[async_trait::async_trait]
impl LeaseStore for RedisStore {
    async fn acquire_lease(
        &self,
        name: &Lease,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StateError> {
        self.set_nx(&self.key(&format!("lease:{name}")), holder, ttl)
            .await
    }

    async fn renew_lease(
        &self,
        name: &Lease,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StateError> {
        let mut conn = self.conn.clone();
        let renewed: i64 = Script::new(RENEW_LUA)
            .key(self.key(&format!("lease:{name}")))
            .arg(holder)
            .arg(millis(ttl))
            .invoke_async(&mut conn)
            .await?;
        Ok(renewed == 1)
    }

    async fn release_lease(&self, name: &Lease, holder: &str) -> Result<bool, StateError> {
        let mut conn = self.conn.clone();
        let released: i64 = Script::new(RELEASE_LUA)
            .key(self.key(&format!("lease:{name}")))
            .arg(holder)
            .invoke_async(&mut conn)
            .await?;
        Ok(released == 1)
    }

    async fn enter_fence(
        &self,
        id: &str,
        generation: u64,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StateError> {
        let mut conn = self.conn.clone();
        let entered: i64 = Script::new(&format!("{NOW_MS_LUA}{ENTER_FENCE_LUA}"))
            .key(self.transfer_key(id))
            .key(self.fence_key(id))
            .arg(generation)
            .arg(holder)
            .arg(millis(ttl))
            .invoke_async(&mut conn)
            .await?;
        Ok(entered == 1)
    }

    async fn renew_fence(
        &self,
        id: &str,
        generation: u64,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StateError> {
        let mut conn = self.conn.clone();
        let renewed: i64 = Script::new(&format!("{NOW_MS_LUA}{RENEW_FENCE_LUA}"))
            .key(self.fence_key(id))
            .arg(format!("{generation}:{holder}"))
            .arg(millis(ttl))
            .invoke_async(&mut conn)
            .await?;
        Ok(renewed == 1)
    }

    async fn leave_fence(&self, id: &str, generation: u64, holder: &str) -> Result<(), StateError> {
        let mut conn = self.conn.clone();
        let _: u64 = conn
            .zrem(self.fence_key(id), format!("{generation}:{holder}"))
            .await?;
        Ok(())
    }

    async fn wait_for_slot(
        &self,
        client: &ClientName,
        member: &str,
        ttl: Duration,
    ) -> Result<(), StateError> {
        let mut conn = self.conn.clone();
        let key = self.key(&format!("slotwait:{client}"));
        let () = redis::pipe()
            .atomic()
            .cmd("ZADD")
            .arg(&key)
            .arg("NX")
            .arg(crate::state::now_ms())
            .arg(member)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(millis(ttl))
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn next_waiting(&self, client: &ClientName) -> Result<Option<String>, StateError> {
        let mut conn = self.conn.clone();
        let popped: Vec<(String, f64)> = redis::cmd("ZPOPMIN")
            .arg(self.key(&format!("slotwait:{client}")))
            .query_async(&mut conn)
            .await?;
        Ok(popped.into_iter().next().map(|(member, _)| member))
    }

    async fn fence_clear(&self, id: &str, generation: u64) -> Result<bool, StateError> {
        let mut conn = self.conn.clone();
        let clear: i64 = Script::new(&format!("{NOW_MS_LUA}{FENCE_CLEAR_LUA}"))
            .key(self.fence_key(id))
            .arg(generation)
            .invoke_async(&mut conn)
            .await?;
        Ok(clear == 1)
    }
}
