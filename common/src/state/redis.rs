//! The Redis implementation of [`StateStore`]: atomic transitions in Lua,
//! pub/sub events dispatched by one [`EventHub`] per process.

use super::{
    now_ms, Begin, Channels, DumpRecord, FileRecord, NewTransfer, StateError, StateStore,
    Subscription, Transfer, TransferEvent, TransferState,
};
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
const BEGIN_LUA: &str = r"
local t = KEYS[1]
local state = redis.call('HGET', t, 'state')
local gen = tonumber(redis.call('HGET', t, 'generation') or '0')
local superseded = 0
if state == 'accepted' or state == 'processing' or state == 'pushing' then
  if redis.call('HGET', t, 'grant_hash') == ARGV[1] then
    return {gen, 1, 0}
  end
  superseded = gen
end
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
";

const TRANSITION_LUA: &str = r"
local t = KEYS[1]
if tonumber(redis.call('HGET', t, 'generation') or '-1') ~= tonumber(ARGV[1]) then return 0 end
local s = redis.call('HGET', t, 'state')
local allowed = false
for i = 6, #ARGV do if ARGV[i] == s then allowed = true end end
if not allowed then return 0 end
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
";

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

const GRANT_LUA: &str = r"
local old = redis.call('HGET', KEYS[3], ARGV[1])
if old and tonumber(old) >= tonumber(ARGV[2]) then
  return {0, redis.call('HGET', KEYS[1], ARGV[1])}
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
redis.call('LPUSH', KEYS[2], ARGV[3])
redis.call('LTRIM', KEYS[2], 0, 999)
return {1, ARGV[3]}
";

const RESTART_LUA: &str = r"
local t = KEYS[1]
local gen = tonumber(redis.call('HGET', t, 'generation') or '-1')
if gen ~= tonumber(ARGV[1]) then return 0 end
local s = redis.call('HGET', t, 'state')
if s ~= 'accepted' and s ~= 'processing' and s ~= 'pushing' then return 0 end
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
";

const RENEW_LUA: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

const FINISH_FILE_LUA: &str = r"
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
    hub: EventHub,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("ns", &self.ns).finish()
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
        })
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
        let mut conn = self.conn.clone();
        let (stored, effective): (i64, String) = Script::new(GRANT_LUA)
            .key(self.key(&format!("user:{user}:contracts")))
            .key(self.key(&format!("user:{user}:history")))
            .key(self.key(&format!("user:{user}:contract_dates")))
            .arg(contract_hash)
            .arg(date_ms)
            .arg(token)
            .invoke_async(&mut conn)
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
        let mut conn = self.conn.clone();
        let () = conn
            .set(self.key(&format!("user:{user}:bind")), token)
            .await?;
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
        let mut conn = self.conn.clone();
        let json = serde_json::to_string(dump).unwrap_or_default();
        let () = conn
            .hset(
                self.key(&format!("user:{user}:dumps")),
                format!("{}/{}", dump.provider, dump.name),
                json,
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
            .invoke_async(&mut conn)
            .await?;
        let begin = Begin {
            generation,
            joined: joined == 1,
            superseded: (superseded > 0).then_some(superseded),
        };
        if !begin.joined {
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
            .arg(self.ttl_secs());
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

    async fn client_success(&self, domain: &str) -> Result<(), StateError> {
        let mut conn = self.conn.clone();
        let _: u64 = conn
            .del(self.key(&format!("count:client:{domain}:failures")))
            .await?;
        Ok(())
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
        let keys: Vec<String> = self
            .scan_keys(&self.key("transfer:*"))
            .await?
            .into_iter()
            .filter(|k| !k.contains(":files:") && !k.contains(":offsets:"))
            .collect();
        let mut conn = self.conn.clone();
        let mut counts = HashMap::new();
        for key in keys {
            let state: Option<String> = conn.hget(&key, "state").await?;
            if let Some(s) = state.as_deref().and_then(TransferState::parse) {
                *counts.entry(s).or_insert(0) += 1;
            }
        }
        Ok(counts)
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
