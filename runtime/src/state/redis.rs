//! The Redis implementation of [`StateStore`]: atomic transitions in Lua,
//! pub/sub events dispatched by one [`EventHub`] per process.

use super::{
    now_ms, Begin, Channels, DumpRecord, FileRecord, NewTransfer, Quotas, StateError, StateStore,
    Subscription, Transfer, TransferEvent, TransferState,
};
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Lua shared by the transition scripts: moves transfer `id` between the
/// per-state index sets (`{ns}:index:{state}`, sorted sets) that
/// [`StateStore::count_by_state`] reads instead of scanning the keyspace.
/// Running states score `+inf`; finished ones their expiry (ms), and entries
/// past it are pruned whenever a transfer finishes and at every read.
macro_rules! reindex_lua {
    () => {
        r"
local function reindex(prefix, id, from, to, now_ms, ttl_s)
  if from then redis.call('ZREM', prefix .. from, id) end
  if to == 'done' or to == 'failed' or to == 'cancelled' then
    redis.call('ZREMRANGEBYSCORE', prefix .. to, '-inf', now_ms)
    redis.call('ZADD', prefix .. to, now_ms + ttl_s * 1000, id)
  else
    redis.call('ZADD', prefix .. to, '+inf', id)
  end
end
"
    };
}

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

const BEGIN_LUA: &str = concat!(
    reindex_lua!(),
    r"
local t = KEYS[1]
local state = redis.call('HGET', t, 'state')
local gen = tonumber(redis.call('HGET', t, 'generation') or '0')
local owner = redis.call('HGET', t, 'user')
if owner and owner ~= '' and owner ~= ARGV[2] then
  return {gen, 2, 0}
end
local superseded = 0
if state == 'accepted' or state == 'processing' or state == 'pushing' then
  if redis.call('HGET', t, 'grant_hash') == ARGV[1] then
    return {gen, 1, 0}
  end
  superseded = gen
end
reindex(ARGV[8], ARGV[9], state, 'accepted', tonumber(ARGV[6]), 0)
local ttl = tonumber(ARGV[7])
if gen > 0 then
  redis.call('EXPIRE', t .. ':files:' .. gen, ttl)
  redis.call('EXPIRE', t .. ':offsets:' .. gen, ttl)
end
gen = gen + 1
redis.call('DEL', t)
redis.call('HSET', t, 'state', 'accepted', 'generation', gen, 'grant_hash', ARGV[1],
  'user', ARGV[2], 'grant', ARGV[3], 'push_url', ARGV[4], 'revoked', ARGV[5],
  'created_ms', ARGV[6], 'updated_ms', ARGV[6], 'files_total', 0, 'files_done', 0,
  'bytes_total', 0, 'bytes_done', 0, 'error', '', 'notes', '[]')
return {gen, 0, superseded}
"
);

const TRANSITION_LUA: &str = concat!(
    reindex_lua!(),
    r"
local t = KEYS[1]
if tonumber(redis.call('HGET', t, 'generation') or '-1') ~= tonumber(ARGV[1]) then return 0 end
local s = redis.call('HGET', t, 'state')
local allowed = false
for i = 8, #ARGV do if ARGV[i] == s then allowed = true end end
if not allowed then return 0 end
reindex(ARGV[6], ARGV[7], s, ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[5]))
redis.call('HSET', t, 'state', ARGV[2], 'updated_ms', ARGV[3])
if ARGV[4] ~= '' then redis.call('HSET', t, 'error', ARGV[4]) end
if ARGV[2] == 'done' or ARGV[2] == 'failed' or ARGV[2] == 'cancelled' then
  local ttl = tonumber(ARGV[5])
  redis.call('EXPIRE', t, ttl)
  redis.call('EXPIRE', KEYS[2], ttl)
  redis.call('EXPIRE', KEYS[3], ttl)
elseif s == 'failed' then
  -- A failed generation taken up again (a replayed dead letter): running
  -- work is persistent and has no error.
  redis.call('PERSIST', t)
  redis.call('PERSIST', KEYS[2])
  redis.call('PERSIST', KEYS[3])
  redis.call('HDEL', t, 'error')
end
return 1
"
);

const OFFSET_LUA: &str = r"
if tonumber(redis.call('HGET', KEYS[1], 'generation') or '-1') ~= tonumber(ARGV[1]) then return -1 end
local old = tonumber(redis.call('HGET', KEYS[2], ARGV[2]) or '0')
local new = tonumber(ARGV[3])
if new > old then
  redis.call('HSET', KEYS[2], ARGV[2], new)
  redis.call('HINCRBY', KEYS[1], 'bytes_done', new - old)
  redis.call('HSET', KEYS[1], 'updated_ms', ARGV[4])
  return new
end
return old
";

// ARGV: contract, date, token, max contracts, max history, max bytes, guest TTL (ms).
const GRANT_LUA: &str = concat!(
    user_lua!(),
    r"
local old = redis.call('HGET', KEYS[3], ARGV[1])
if old and tonumber(old) >= tonumber(ARGV[2]) then
  return {0, redis.call('HGET', KEYS[1], ARGV[1]) or ''}
end
local max_bytes = tonumber(ARGV[6])
local replaced = redis.call('HSTRLEN', KEYS[1], ARGV[1])
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0
  and redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[4]) then
  return {-1, 'contracts'}
end
local bytes = 0
for _, c in ipairs(redis.call('HKEYS', KEYS[1])) do
  bytes = bytes + redis.call('HSTRLEN', KEYS[1], c)
end
if bytes - replaced + #ARGV[3] > max_bytes then return {-1, 'grant_bytes'} end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
local hb = tonumber(redis.call('HGET', KEYS[4], 'history_bytes') or '-1')
if hb < 0 then
  hb = 0
  for _, g in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do hb = hb + #g end
end
redis.call('LPUSH', KEYS[2], ARGV[3])
hb = hb + #ARGV[3]
local n = redis.call('LLEN', KEYS[2])
while n > 1 and (n > tonumber(ARGV[5]) or hb > max_bytes) do
  hb = hb - #redis.call('RPOP', KEYS[2])
  n = n - 1
end
redis.call('HSET', KEYS[4], 'history_bytes', hb)
touch_user(tonumber(ARGV[7]))
return {1, ARGV[3]}
"
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

const RESTART_LUA: &str = concat!(
    reindex_lua!(),
    r"
local t = KEYS[1]
local gen = tonumber(redis.call('HGET', t, 'generation') or '-1')
if gen ~= tonumber(ARGV[1]) then return 0 end
local s = redis.call('HGET', t, 'state')
if s ~= 'accepted' and s ~= 'processing' and s ~= 'pushing' then return 0 end
reindex(ARGV[5], ARGV[6], s, 'accepted', tonumber(ARGV[2]), 0)
local ttl = tonumber(ARGV[3])
redis.call('EXPIRE', t .. ':files:' .. gen, ttl)
redis.call('EXPIRE', t .. ':offsets:' .. gen, ttl)
gen = gen + 1
redis.call('HSET', t, 'state', 'accepted', 'generation', gen, 'updated_ms', ARGV[2],
  'files_total', 0, 'files_done', 0, 'bytes_total', 0, 'bytes_done', 0, 'error', '')
local notes = cjson.decode(redis.call('HGET', t, 'notes') or '[]')
table.insert(notes, ARGV[4])
redis.call('HSET', t, 'notes', cjson.encode(notes))
return gen
"
);

const CLAIM_CONTRACT_LUA: &str = r"
local owner = redis.call('GET', KEYS[1])
if owner then return owner end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
";

/// The server's clock in ms (one clock for every pusher's fence entries).
const NOW_MS_LUA: &str = r"
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

const FINISH_FILE_LUA: &str = r"
-- A late finish of a superseded generation must not count in the new one.
if tonumber(redis.call('HGET', KEYS[1], 'generation') or '-1') ~= tonumber(ARGV[3]) then return 0 end
local added = redis.call('SADD', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[2])
if added == 1 then redis.call('HINCRBY', KEYS[1], 'files_done', 1) end
return added
";

const RELEASE_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

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

    async fn stored_grant(
        &self,
        user: &str,
        contract_hash: &str,
    ) -> Result<Option<String>, StateError> {
        let mut conn = self.conn.clone();
        Ok(conn
            .hget(self.key(&format!("user:{user}:contracts")), contract_hash)
            .await?)
    }

    async fn update_grant(
        &self,
        user: &str,
        contract_hash: &str,
        date_ms: f64,
        token: &str,
    ) -> Result<(String, bool), StateError> {
        let q = self.quotas;
        let (stored, effective) = self
            .user_script(
                GRANT_LUA,
                user,
                &[
                    &contract_hash,
                    &date_ms,
                    &token,
                    &q.contracts,
                    &q.history,
                    &q.grant_bytes,
                    &self.guest_ttl_ms(),
                ],
            )
            .await?;
        Ok((effective, stored == 1))
    }

    async fn grant_history(&self, user: &str) -> Result<Vec<String>, StateError> {
        let mut conn = self.conn.clone();
        Ok(conn
            .lrange(self.key(&format!("user:{user}:history")), 0, -1)
            .await?)
    }

    async fn contracts_of(&self, user: &str) -> Result<Vec<String>, StateError> {
        let mut conn = self.conn.clone();
        Ok(conn
            .hkeys(self.key(&format!("user:{user}:contracts")))
            .await?)
    }

    async fn set_binding(&self, user: &str, token: &str) -> Result<(), StateError> {
        self.user_script(BIND_LUA, user, &[&token, &self.guest_ttl_ms()])
            .await?;
        Ok(())
    }

    async fn keep_user(&self, user: &str) -> Result<(), StateError> {
        self.user_script(KEEP_USER_LUA, user, &[]).await?;
        Ok(())
    }

    async fn binding(&self, user: &str) -> Result<Option<String>, StateError> {
        let mut conn = self.conn.clone();
        Ok(conn.get(self.key(&format!("user:{user}:bind"))).await?)
    }

    async fn is_known_user(&self, user: &str) -> Result<bool, StateError> {
        let mut conn = self.conn.clone();
        let (bound, dumps): (bool, u64) = redis::pipe()
            .exists(self.key(&format!("user:{user}:bind")))
            .hlen(self.key(&format!("user:{user}:dumps")))
            .query_async(&mut conn)
            .await?;
        Ok(bound || dumps > 0)
    }

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
        let key = self.key(&format!("user:{user}:dumps"));
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
            .hdel(
                self.key(&format!("user:{user}:dumps")),
                format!("{provider}/{name}"),
            )
            .await?;
        Ok(n > 0)
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

    async fn claim_once(&self, id: &str, ttl: Duration) -> Result<bool, StateError> {
        self.set_nx(&self.key(&format!("once:{id}")), "1", ttl)
            .await
    }

    async fn begin_transfer(&self, id: &str, new: &NewTransfer<'_>) -> Result<Begin, StateError> {
        let mut conn = self.conn.clone();
        let (generation, joined, superseded): (u64, u8, u64) = Script::new(BEGIN_LUA)
            .key(self.transfer_key(id))
            .arg(new.grant_hash)
            .arg(new.user)
            .arg(new.grant_token)
            .arg(new.push_url)
            .arg(u8::from(new.revoked))
            .arg(now_ms())
            .arg(self.ttl_secs())
            .arg(self.index_prefix())
            .arg(id)
            .invoke_async(&mut conn)
            .await?;
        let begin = Begin {
            generation,
            joined: joined == 1,
            superseded: (superseded > 0).then_some(superseded),
            foreign: joined == 2,
        };
        if !begin.joined && !begin.foreign {
            self.emit(id, "accepted").await?;
        }
        Ok(begin)
    }

    async fn transfer(&self, id: &str) -> Result<Option<Transfer>, StateError> {
        let mut conn = self.conn.clone();
        let key = self.transfer_key(id);
        let map: HashMap<String, String> = conn.hgetall(&key).await?;
        if map.is_empty() {
            return Ok(None);
        }
        let state = map
            .get("state")
            .and_then(|s| TransferState::parse(s))
            .ok_or_else(|| StateError::Corrupt {
                key: key.clone(),
                reason: "no state".into(),
            })?;
        Ok(Some(Transfer {
            id: id.to_owned(),
            generation: parse_num(&map, "generation"),
            state,
            user: map.get("user").cloned().unwrap_or_default(),
            grant_hash: map.get("grant_hash").cloned().unwrap_or_default(),
            revoked: map.get("revoked").is_some_and(|v| v == "1"),
            push_url: map.get("push_url").cloned().unwrap_or_default(),
            created_ms: parse_num(&map, "created_ms"),
            updated_ms: parse_num(&map, "updated_ms"),
            files_total: parse_num(&map, "files_total"),
            files_done: parse_num(&map, "files_done"),
            bytes_total: parse_num(&map, "bytes_total"),
            bytes_done: parse_num(&map, "bytes_done"),
            error: map.get("error").filter(|e| !e.is_empty()).cloned(),
            notes: map
                .get("notes")
                .and_then(|n| serde_json::from_str(n).ok())
                .unwrap_or_default(),
            dump_bytes_read: parse_num(&map, "dump_bytes_read"),
            dump_bytes_total: parse_num(&map, "dump_bytes_total"),
        }))
    }

    async fn transfer_grant(&self, id: &str) -> Result<Option<String>, StateError> {
        let mut conn = self.conn.clone();
        Ok(conn.hget(self.transfer_key(id), "grant").await?)
    }

    async fn transition(
        &self,
        id: &str,
        generation: u64,
        from: &[TransferState],
        to: TransferState,
        error: Option<&str>,
    ) -> Result<bool, StateError> {
        let mut conn = self.conn.clone();
        let lua = Script::new(TRANSITION_LUA);
        let mut script = lua.prepare_invoke();
        script
            .key(self.transfer_key(id))
            .key(self.files_key(id, generation))
            .key(self.offsets_key(id, generation))
            .arg(generation)
            .arg(to.as_str())
            .arg(now_ms())
            .arg(error.unwrap_or(""))
            .arg(self.ttl_secs())
            .arg(self.index_prefix())
            .arg(id);
        for state in from {
            script.arg(state.as_str());
        }
        let moved: i64 = script.invoke_async(&mut conn).await?;
        if moved == 1 {
            self.emit(id, to.as_str()).await?;
        }
        Ok(moved == 1)
    }

    async fn processing_progress(
        &self,
        id: &str,
        generation: u64,
        read: u64,
        total: u64,
    ) -> Result<(), StateError> {
        let mut conn = self.conn.clone();
        let key = self.transfer_key(id);
        let current: Option<u64> = conn.hget(&key, "generation").await?;
        if current != Some(generation) {
            return Ok(());
        }
        let () = conn
            .hset_multiple(
                &key,
                &[("dump_bytes_read", read), ("dump_bytes_total", total)],
            )
            .await?;
        self.emit(id, "processing-progress").await
    }

    async fn add_note(&self, id: &str, generation: u64, note: &str) -> Result<(), StateError> {
        if let Some(mut t) = self.transfer(id).await? {
            if t.generation == generation {
                t.notes.push(note.to_owned());
                let mut conn = self.conn.clone();
                let () = conn
                    .hset(
                        self.transfer_key(id),
                        "notes",
                        serde_json::to_string(&t.notes).unwrap_or_default(),
                    )
                    .await?;
            }
        }
        Ok(())
    }

    async fn set_files(
        &self,
        id: &str,
        generation: u64,
        files: &[FileRecord],
    ) -> Result<(), StateError> {
        let mut conn = self.conn.clone();
        let files_key = self.files_key(id, generation);
        let mut pipe = redis::pipe();
        pipe.atomic().del(&files_key);
        for f in files {
            pipe.hset(
                &files_key,
                &f.name,
                serde_json::to_string(f).unwrap_or_default(),
            );
        }
        let total: u64 = files.iter().map(|f| f.size).sum();
        pipe.hset_multiple(
            self.transfer_key(id),
            &[("files_total", files.len() as u64), ("bytes_total", total)],
        );
        let () = pipe.query_async(&mut conn).await?;
        self.emit(id, "files").await
    }

    async fn files(&self, id: &str, generation: u64) -> Result<Vec<FileRecord>, StateError> {
        let mut conn = self.conn.clone();
        let files_key = self.files_key(id, generation);
        let (raw, offsets): (HashMap<String, String>, HashMap<String, u64>) = redis::pipe()
            .hgetall(&files_key)
            .hgetall(self.offsets_key(id, generation))
            .query_async(&mut conn)
            .await?;
        let mut out = raw
            .into_values()
            .map(|v| {
                serde_json::from_str::<FileRecord>(&v).map_err(|e| StateError::Corrupt {
                    key: files_key.clone(),
                    reason: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        for f in &mut out {
            f.offset = offsets.get(&f.name).copied().unwrap_or(0);
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn commit_offset(
        &self,
        id: &str,
        generation: u64,
        file: &str,
        offset: u64,
    ) -> Result<Option<u64>, StateError> {
        let mut conn = self.conn.clone();
        let committed: i64 = Script::new(OFFSET_LUA)
            .key(self.transfer_key(id))
            .key(self.offsets_key(id, generation))
            .arg(generation)
            .arg(file)
            .arg(offset)
            .arg(now_ms())
            .invoke_async(&mut conn)
            .await?;
        if committed < 0 {
            return Ok(None);
        }
        self.emit(id, "progress").await?;
        Ok(u64::try_from(committed).ok())
    }

    async fn finish_file(&self, id: &str, generation: u64, file: &str) -> Result<bool, StateError> {
        let mut conn = self.conn.clone();
        let done_key = format!("{}:done", self.files_key(id, generation));
        // One script, so that a file is never marked without being counted.
        let added: u64 = Script::new(FINISH_FILE_LUA)
            .key(self.transfer_key(id))
            .key(&done_key)
            .arg(file)
            .arg(self.ttl_secs())
            .arg(generation)
            .invoke_async(&mut conn)
            .await?;
        if added == 1 {
            self.emit(id, "file").await?;
        }
        Ok(added == 1)
    }

    async fn restart_generation(
        &self,
        id: &str,
        generation: u64,
        note: &str,
    ) -> Result<Option<u64>, StateError> {
        let mut conn = self.conn.clone();
        let new: u64 = Script::new(RESTART_LUA)
            .key(self.transfer_key(id))
            .arg(generation)
            .arg(now_ms())
            .arg(self.ttl_secs())
            .arg(note)
            .arg(self.index_prefix())
            .arg(id)
            .invoke_async(&mut conn)
            .await?;
        if new == 0 {
            return Ok(None);
        }
        self.emit(id, "restarted").await?;
        Ok(Some(new))
    }

    async fn flag(&self, name: &str) -> Result<bool, StateError> {
        let mut conn = self.conn.clone();
        Ok(conn.exists(self.key(&format!("flag:{name}"))).await?)
    }

    async fn set_flag(&self, name: &str, ttl: Duration) -> Result<bool, StateError> {
        self.set_nx(&self.key(&format!("flag:{name}")), "1", ttl)
            .await
    }

    async fn first_seen(&self, name: &str, ttl: Duration) -> Result<u64, StateError> {
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

    async fn forget_first_seen(&self, name: &str) -> Result<(), StateError> {
        let mut conn = self.conn.clone();
        let _: u64 = conn.del(self.key(&format!("seen:{name}"))).await?;
        Ok(())
    }

    async fn clear_flag(&self, name: &str) -> Result<(), StateError> {
        let mut conn = self.conn.clone();
        let _: u64 = conn.del(self.key(&format!("flag:{name}"))).await?;
        Ok(())
    }

    async fn count(&self, name: &str, window: Duration) -> Result<u64, StateError> {
        let mut conn = self.conn.clone();
        let key = self.key(&format!("count:{name}"));
        let (n, _): (u64, ()) = redis::pipe()
            .incr(&key, 1)
            .pexpire(&key, i64::try_from(window.as_millis()).unwrap_or(i64::MAX))
            .query_async(&mut conn)
            .await?;
        Ok(n)
    }

    async fn counted(&self, name: &str) -> Result<u64, StateError> {
        let mut conn = self.conn.clone();
        let n: Option<u64> = conn.get(self.key(&format!("count:{name}"))).await?;
        Ok(n.unwrap_or(0))
    }

    async fn reset_count(&self, name: &str) -> Result<(), StateError> {
        let mut conn = self.conn.clone();
        let _: u64 = conn.del(self.key(&format!("count:{name}"))).await?;
        Ok(())
    }

    async fn client_success(&self, domain: &str) -> Result<(), StateError> {
        let mut conn = self.conn.clone();
        let _: u64 = conn
            .del(self.key(&format!("count:client:{domain}:failures")))
            .await?;
        Ok(())
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

    async fn fence_clear(&self, id: &str, generation: u64) -> Result<bool, StateError> {
        let mut conn = self.conn.clone();
        let clear: i64 = Script::new(&format!("{NOW_MS_LUA}{FENCE_CLEAR_LUA}"))
            .key(self.fence_key(id))
            .arg(generation)
            .invoke_async(&mut conn)
            .await?;
        Ok(clear == 1)
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StateError> {
        self.set_nx(&self.key(&format!("lease:{name}")), holder, ttl)
            .await
    }

    async fn renew_lease(
        &self,
        name: &str,
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

    async fn release_lease(&self, name: &str, holder: &str) -> Result<bool, StateError> {
        let mut conn = self.conn.clone();
        let released: i64 = Script::new(RELEASE_LUA)
            .key(self.key(&format!("lease:{name}")))
            .arg(holder)
            .invoke_async(&mut conn)
            .await?;
        Ok(released == 1)
    }

    async fn emit(&self, id: &str, kind: &str) -> Result<(), StateError> {
        let Some(transfer) = self.transfer(id).await? else {
            return Ok(());
        };
        let event = TransferEvent {
            transfer,
            kind: kind.to_owned(),
        };
        let mut conn = self.conn.clone();
        let _: i64 = conn
            .publish(
                self.key(&format!("events:{id}")),
                serde_json::to_string(&event).unwrap_or_default(),
            )
            .await?;
        Ok(())
    }

    fn subscribe(&self, id: &str) -> Subscription {
        self.hub.channels.subscribe(id)
    }

    fn live_channels(&self) -> usize {
        self.hub.channels.live()
    }

    async fn count_by_state(&self) -> Result<HashMap<TransferState, u64>, StateError> {
        let prefix = self.index_prefix();
        let now = now_ms();
        let mut pipe = redis::pipe();
        for state in TransferState::ALL {
            let key = format!("{prefix}{}", state.as_str());
            if state.is_terminal() {
                pipe.cmd("ZREMRANGEBYSCORE")
                    .arg(&key)
                    .arg("-inf")
                    .arg(now)
                    .ignore();
            }
            pipe.zcard(key);
        }
        let mut conn = self.conn.clone();
        let sizes: Vec<u64> = pipe.query_async(&mut conn).await?;
        Ok(TransferState::ALL
            .into_iter()
            .zip(sizes)
            .filter(|(_, n)| *n > 0)
            .collect())
    }

    async fn purge_namespace(&self) -> Result<(), StateError> {
        let keys = self.scan_keys(&self.key("*")).await?;
        let mut conn = self.conn.clone();
        for chunk in keys.chunks(500) {
            let _: u64 = conn.del(chunk).await?;
        }
        Ok(())
    }

    async fn kv_get(&self, key: &str) -> Result<Option<String>, StateError> {
        let mut conn = self.conn.clone();
        Ok(conn.get(self.key(&format!("kv:{key}"))).await?)
    }

    async fn kv_set(
        &self,
        key: &str,
        value: &str,
        ttl: Option<Duration>,
    ) -> Result<(), StateError> {
        let mut conn = self.conn.clone();
        let key = self.key(&format!("kv:{key}"));
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
        key: &str,
        value: &str,
        ttl: Option<Duration>,
    ) -> Result<bool, StateError> {
        let key = self.key(&format!("kv:{key}"));
        match ttl {
            Some(ttl) => self.set_nx(&key, value, ttl).await,
            None => {
                let mut conn = self.conn.clone();
                Ok(conn.set_nx(&key, value).await?)
            }
        }
    }

    async fn kv_take(&self, key: &str) -> Result<Option<String>, StateError> {
        let mut conn = self.conn.clone();
        Ok(redis::cmd("GETDEL")
            .arg(self.key(&format!("kv:{key}")))
            .query_async(&mut conn)
            .await?)
    }

    async fn kv_delete(&self, key: &str) -> Result<bool, StateError> {
        let mut conn = self.conn.clone();
        let n: u64 = conn.del(self.key(&format!("kv:{key}"))).await?;
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

    async fn list_push(&self, key: &str, value: &str, keep: usize) -> Result<(), StateError> {
        let mut conn = self.conn.clone();
        let key = self.key(&format!("list:{key}"));
        let last = isize::try_from(keep).unwrap_or(isize::MAX).max(1) - 1;
        let () = redis::pipe()
            .atomic()
            .lpush(&key, value)
            .ignore()
            .ltrim(&key, 0, last)
            .ignore()
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn list_range(&self, key: &str, limit: usize) -> Result<Vec<String>, StateError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let last = isize::try_from(limit).unwrap_or(isize::MAX) - 1;
        Ok(conn
            .lrange(self.key(&format!("list:{key}")), 0, last)
            .await?)
    }
}

/// Dispatches the namespace's transfer events (one `PSUBSCRIBE` connection,
/// reconnecting) to in-process subscribers by transfer id.
#[derive(Clone)]
pub struct EventHub {
    channels: Channels,
}

impl EventHub {
    fn start(client: redis::Client, ns: Arc<str>) -> EventHub {
        let hub = EventHub {
            channels: Channels::new(),
        };
        let weak = hub.channels.downgrade();
        tokio::spawn(async move {
            use futures_util::StreamExt;
            let pattern = format!("{ns}:events:*");
            let prefix = format!("{ns}:events:");
            let mut backoff = Duration::from_millis(100);
            loop {
                if weak.is_gone() {
                    return;
                }
                let mut pubsub = match client.get_async_pubsub().await {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!(error = %e, "event hub: redis unreachable, retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                };
                if let Err(e) = pubsub.psubscribe(&pattern).await {
                    tracing::warn!(error = %e, "event hub: psubscribe failed");
                    tokio::time::sleep(backoff).await;
                    continue;
                }
                backoff = Duration::from_millis(100);
                let mut messages = pubsub.on_message();
                while let Some(msg) = messages.next().await {
                    let Some(channels) = weak.upgrade() else {
                        return;
                    };
                    let channel = msg.get_channel_name().to_owned();
                    let Some(id) = channel.strip_prefix(&prefix) else {
                        continue;
                    };
                    let Ok(payload) = msg.get_payload::<String>() else {
                        continue;
                    };
                    let Ok(event) = serde_json::from_str::<TransferEvent>(&payload) else {
                        continue;
                    };
                    channels.send(id, event);
                }
                tracing::warn!("event hub: subscription ended, reconnecting");
            }
        });
        hub
    }
}
