//! Users, grants, bindings and dumps in Redis (quotas and guest expiry in
//! Lua).

use super::RedisStore;
use crate::state::{DumpRecord, DumpStore, StateError, UserStore};
use redis::{AsyncCommands, Script};
use std::collections::HashMap;
use std::time::Duration;

/// Lua shared by the scripts that change a user's records. Their keys are
/// always KEYS[1..6] = contracts, history, contract dates, usage, bind,
/// dumps. A guest's records (no dump, no account: `usage.durable` unset)
/// expire `ttl_ms` after their last change; a durable user's never do.
macro_rules! user_lua {
    () => {
        r"
local function touch_user(ttl_ms)
  if redis.call('HGET', KEYS[4], 'durable') == '1' then return end
  if redis.call('HLEN', KEYS[6]) > 0 then
    redis.call('HSET', KEYS[4], 'durable', '1')
    for i = 1, 6 do redis.call('PERSIST', KEYS[i]) end
    return
  end
  for i = 1, 6 do redis.call('PEXPIRE', KEYS[i], ttl_ms) end
end
local function keep_user()
  redis.call('HSET', KEYS[4], 'durable', '1')
  for i = 1, 6 do redis.call('PERSIST', KEYS[i]) end
end
"
    };
}

/// The reference's `updateGrant` with quotas, as a Lua function over the
/// user keys KEYS[1..6] (needs [`USER_LUA`]); returns `{1, token}` when
/// stored, `{0, effective}` when a stored grant is as new, `{-1, quota}`.
macro_rules! grant_lua {
    () => {
        r"
local function update_grant(contract, date, token, max_contracts, max_history, max_bytes, ttl_ms)
  local old = redis.call('HGET', KEYS[3], contract)
  if old and tonumber(old) >= tonumber(date) then
    return {0, redis.call('HGET', KEYS[1], contract) or ''}
  end
  local max_bytes = tonumber(max_bytes)
  local replaced = redis.call('HSTRLEN', KEYS[1], contract)
  if redis.call('HEXISTS', KEYS[1], contract) == 0
    and redis.call('HLEN', KEYS[1]) >= tonumber(max_contracts) then
    return {-1, 'contracts'}
  end
  local bytes = 0
  for _, c in ipairs(redis.call('HKEYS', KEYS[1])) do
    bytes = bytes + redis.call('HSTRLEN', KEYS[1], c)
  end
  if bytes - replaced + #token > max_bytes then return {-1, 'grant_bytes'} end
  redis.call('HSET', KEYS[1], contract, token)
  redis.call('HSET', KEYS[3], contract, date)
  local hb = tonumber(redis.call('HGET', KEYS[4], 'history_bytes') or '-1')
  if hb < 0 then
    hb = 0
    for _, g in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do hb = hb + #g end
  end
  redis.call('LPUSH', KEYS[2], token)
  hb = hb + #token
  local n = redis.call('LLEN', KEYS[2])
  while n > 1 and (n > tonumber(max_history) or hb > max_bytes) do
    hb = hb - #redis.call('RPOP', KEYS[2])
    n = n - 1
  end
  redis.call('HSET', KEYS[4], 'history_bytes', hb)
  touch_user(tonumber(ttl_ms))
  return {1, token}
end
"
    };
}

/// [`user_lua!`] as a constant, for scripts assembled elsewhere.
pub(super) const USER_LUA: &str = user_lua!();
/// [`grant_lua!`] as a constant, for scripts assembled elsewhere.
pub(super) const GRANT_FN_LUA: &str = grant_lua!();

// ARGV: contract, date, token, max contracts, max history, max bytes, guest TTL (ms).
const GRANT_LUA: &str = concat!(
    user_lua!(),
    grant_lua!(),
    "return update_grant(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7])\n"
);

// ARGV: token, guest TTL (ms).
const BIND_LUA: &str = concat!(
    user_lua!(),
    r"
redis.call('SET', KEYS[5], ARGV[1])
touch_user(tonumber(ARGV[2]))
return {1, ''}
"
);

const KEEP_USER_LUA: &str = concat!(
    user_lua!(),
    r"
keep_user()
return {1, ''}
"
);

// ARGV: field, record JSON, size, max dumps, max bytes.
const DUMP_LUA: &str = concat!(
    user_lua!(),
    r"
local exists = redis.call('HEXISTS', KEYS[6], ARGV[1]) == 1
if not exists and redis.call('HLEN', KEYS[6]) >= tonumber(ARGV[4]) then
  return {-1, 'dumps'}
end
local total = tonumber(ARGV[3])
local all = redis.call('HGETALL', KEYS[6])
for i = 1, #all, 2 do
  if all[i] ~= ARGV[1] then
    local ok, rec = pcall(cjson.decode, all[i + 1])
    if ok and type(rec) == 'table' and tonumber(rec.size) then
      total = total + tonumber(rec.size)
    end
  end
end
if total > tonumber(ARGV[5]) then return {-1, 'dump_bytes'} end
redis.call('HSET', KEYS[6], ARGV[1], ARGV[2])
keep_user()
return {1, ''}
"
);

/// The contract claim, as a Lua function of the owner key and the user.
pub(super) const CLAIM_FN_LUA: &str = r"
local function claim_contract(key, user)
  local owner = redis.call('GET', key)
  if owner then return owner end
  redis.call('SET', key, user)
  return user
end
";

/// The contract claim as a script (KEYS[1] the owner key, ARGV[1] the user).
pub(super) const CLAIM_CONTRACT_LUA: &str = r"
local owner = redis.call('GET', KEYS[1])
if owner then return owner end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
";

#[async_trait::async_trait]
impl UserStore for RedisStore {
    async fn stored_grant(
        &self,
        user: &str,
        contract_hash: &str,
    ) -> Result<Option<String>, StateError> {
        let mut conn = self.conn.clone();
        Ok(conn
            .hget(self.user_key(user, "contracts"), contract_hash)
            .await?)
    }

    async fn update_grant(
        &self,
        user: &str,
        contract_hash: &str,
        date_ms: f64,
        token: &str,
    ) -> Result<(String, bool), StateError> {
        let (stored, effective) = self
            .user_script(
                GRANT_LUA,
                user,
                &[&self.grant_args(contract_hash, date_ms, token)],
            )
            .await?;
        Ok((effective, stored == 1))
    }

    async fn grant_history(&self, user: &str) -> Result<Vec<String>, StateError> {
        let mut conn = self.conn.clone();
        Ok(conn.lrange(self.user_key(user, "history"), 0, -1).await?)
    }

    async fn contracts_of(&self, user: &str) -> Result<Vec<String>, StateError> {
        let mut conn = self.conn.clone();
        Ok(conn.hkeys(self.user_key(user, "contracts")).await?)
    }

    async fn set_binding(&self, user: &str, token: &str) -> Result<(), StateError> {
        self.user_script(BIND_LUA, user, &[&token, &self.guest_ttl_ms()])
            .await?;
        Ok(())
    }

    async fn binding(&self, user: &str) -> Result<Option<String>, StateError> {
        let mut conn = self.conn.clone();
        Ok(conn.get(self.user_key(user, "bind")).await?)
    }

    async fn is_known_user(&self, user: &str) -> Result<bool, StateError> {
        let mut conn = self.conn.clone();
        let (bound, dumps): (bool, u64) = redis::pipe()
            .exists(self.user_key(user, "bind"))
            .hlen(self.user_key(user, "dumps"))
            .query_async(&mut conn)
            .await?;
        Ok(bound || dumps > 0)
    }

    async fn keep_user(&self, user: &str) -> Result<(), StateError> {
        self.user_script(KEEP_USER_LUA, user, &[]).await?;
        Ok(())
    }

    async fn claim_contract(&self, contract_hash: &str, user: &str) -> Result<String, StateError> {
        let mut conn = self.conn.clone();
        Ok(Script::new(CLAIM_CONTRACT_LUA)
            .key(self.key(&format!("contract:{contract_hash}:owner")))
            .arg(user)
            .invoke_async(&mut conn)
            .await?)
    }

    async fn contract_owner(&self, contract_hash: &str) -> Result<Option<String>, StateError> {
        let mut conn = self.conn.clone();
        Ok(conn
            .get(self.key(&format!("contract:{contract_hash}:owner")))
            .await?)
    }

    async fn forget_user(&self, user: &str) -> Result<(), StateError> {
        let mut conn = self.conn.clone();
        let _: u64 = conn.del(self.user_keys(user).to_vec()).await?;
        Ok(())
    }

    async fn claim_once(&self, id: &str, ttl: Duration) -> Result<bool, StateError> {
        self.set_nx(&self.key(&format!("once:{id}")), "1", ttl)
            .await
    }
}

#[async_trait::async_trait]
impl DumpStore for RedisStore {
    async fn record_dump(&self, user: &str, dump: &DumpRecord) -> Result<(), StateError> {
        let json = serde_json::to_string(dump).unwrap_or_default();
        let q = self.quotas;
        self.user_script(
            DUMP_LUA,
            user,
            &[
                &format!("{}/{}", dump.provider, dump.name),
                &json,
                &dump.size,
                &q.dumps,
                &q.dump_bytes,
            ],
        )
        .await?;
        Ok(())
    }

    async fn dumps(&self, user: &str) -> Result<Vec<DumpRecord>, StateError> {
        let mut conn = self.conn.clone();
        let key = self.user_key(user, "dumps");
        let raw: HashMap<String, String> = conn.hgetall(&key).await?;
        let mut out = raw
            .into_values()
            .map(|v| {
                serde_json::from_str(&v).map_err(|e| StateError::Corrupt {
                    key: key.clone(),
                    reason: e.to_string(),
                })
            })
            .collect::<Result<Vec<DumpRecord>, _>>()?;
        out.sort_by(|a, b| (&a.provider, &a.name).cmp(&(&b.provider, &b.name)));
        Ok(out)
    }

    async fn delete_dump(
        &self,
        user: &str,
        provider: &str,
        name: &str,
    ) -> Result<bool, StateError> {
        let mut conn = self.conn.clone();
        let n: u64 = conn
            .hdel(self.user_key(user, "dumps"), format!("{provider}/{name}"))
            .await?;
        Ok(n > 0)
    }
}
