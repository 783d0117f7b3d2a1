//! Preview records in Redis: the start (one pending per user and contract,
//! an hourly count per user) and the finish (only by the pending run) are
//! Lua scripts.

use super::{millis, RedisStore};
use crate::state::previews::{new_id, Preview, PreviewKey, PreviewLimits, PreviewStart};
use crate::state::{now_ms, PreviewState, PreviewStore, StateError};
use redis::{AsyncCommands, Script};
use std::time::Duration;

// KEYS: record, count. ARGV: new record, pending TTL (ms), per hour, window (ms).
// Returns {0, ''} started, {1, record} busy, {2, ms until the count resets}.
const START_LUA: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur then
  local ok, d = pcall(cjson.decode, cur)
  if ok and type(d) == 'table' and d.state == 'pending' then return {1, cur} end
end
local n = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
if n >= tonumber(ARGV[3]) then
  return {2, tostring(redis.call('PTTL', KEYS[2]))}
end
if redis.call('INCR', KEYS[2]) == 1 then redis.call('PEXPIRE', KEYS[2], ARGV[4]) end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return {0, ''}
";

// KEYS: record. ARGV: run id, new record, TTL (ms). Returns 1 when stored.
const FINISH_LUA: &str = r"
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
local ok, d = pcall(cjson.decode, cur)
if not ok or type(d) ~= 'table' or d.state ~= 'pending' or d.id ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
";

#[async_trait::async_trait]
impl PreviewStore for RedisStore {
    async fn start_preview(
        &self,
        key: &PreviewKey,
        scopes: &[String],
        limits: &PreviewLimits,
    ) -> Result<PreviewStart, StateError> {
        let preview = Preview {
            id: new_id(),
            requested: scopes.to_vec(),
            created_ms: now_ms(),
            state: PreviewState::Pending,
        };
        let mut conn = self.conn.clone();
        let (code, text): (i64, String) = Script::new(START_LUA)
            .key(self.key(&key.record_name()))
            .key(self.key(&key.count_name()))
            .arg(preview.to_json()?)
            .arg(millis(limits.pending_ttl))
            .arg(limits.per_hour)
            .arg(millis(PreviewLimits::WINDOW))
            .invoke_async(&mut conn)
            .await?;
        Ok(match code {
            0 => PreviewStart::Started(preview),
            1 => PreviewStart::Busy(Preview::from_json(key, &text)?),
            _ => PreviewStart::Limited {
                retry_after: Duration::from_millis(text.parse::<u64>().unwrap_or(1).max(1)),
            },
        })
    }

    async fn preview(&self, key: &PreviewKey) -> Result<Option<Preview>, StateError> {
        let mut conn = self.conn.clone();
        let text: Option<String> = conn.get(self.key(&key.record_name())).await?;
        text.map(|t| Preview::from_json(key, &t)).transpose()
    }

    async fn finish_preview(
        &self,
        key: &PreviewKey,
        id: &str,
        state: &PreviewState,
        ttl: Duration,
    ) -> Result<bool, StateError> {
        let Some(current) = self.preview(key).await? else {
            return Ok(false);
        };
        let done = Preview {
            state: state.clone(),
            ..current
        };
        let mut conn = self.conn.clone();
        let stored: i64 = Script::new(FINISH_LUA)
            .key(self.key(&key.record_name()))
            .arg(id)
            .arg(done.to_json()?)
            .arg(millis(ttl))
            .invoke_async(&mut conn)
            .await?;
        Ok(stored == 1)
    }

    async fn forget_preview(&self, key: &PreviewKey) -> Result<bool, StateError> {
        let mut conn = self.conn.clone();
        let n: u64 = conn.del(self.key(&key.record_name())).await?;
        Ok(n > 0)
    }
}
