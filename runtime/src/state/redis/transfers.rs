//! Transfers in Redis: the state machine of generations in Lua.

use super::{millis, parse_num, RedisStore};
use crate::state::{
    now_ms, transfers::QUEUED_TTL, Added, Begin, FileRecord, FileWatch, NewTransfer, StateError,
    Subscription, Transfer, TransferState, TransferStore,
};
use redis::{AsyncCommands, Script};
use std::collections::HashMap;

/// Lua shared by the transition scripts: moves transfer `id` between the
/// per-state index sets (`{ns}:index:{tN}:{state}`, sorted sets, in the
/// transfer's bucket) that
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

/// A new transfer generation (or the running one joined), as a Lua
/// function of the transfer key (needs [`reindex_lua!`]); returns
/// `{generation, 0 new | 1 joined | 2 foreign, superseded generation}`.
macro_rules! begin_lua {
    () => {
        r"
local function begin_transfer(t, grant_hash, user, token, push_url, revoked, now_ms, ttl_s, prefix, id)
  local state = redis.call('HGET', t, 'state')
  local gen = tonumber(redis.call('HGET', t, 'generation') or '0')
  local owner = redis.call('HGET', t, 'user')
  if owner and owner ~= '' and owner ~= user then
    return {gen, 2, 0}
  end
  local superseded = 0
  if state == 'accepted' or state == 'processing' or state == 'pushing' then
    if redis.call('HGET', t, 'grant_hash') == grant_hash then
      return {gen, 1, 0}
    end
    superseded = gen
  end
  reindex(prefix, id, state, 'accepted', tonumber(now_ms), 0)
  local ttl = tonumber(ttl_s)
  if gen > 0 then
    redis.call('EXPIRE', t .. ':files:' .. gen, ttl)
    redis.call('EXPIRE', t .. ':offsets:' .. gen, ttl)
  end
  gen = gen + 1
  redis.call('DEL', t)
  redis.call('HSET', t, 'state', 'accepted', 'generation', gen, 'grant_hash', grant_hash,
    'user', user, 'grant', token, 'push_url', push_url, 'revoked', revoked,
    'created_ms', now_ms, 'updated_ms', now_ms, 'files_total', 0, 'files_done', 0,
    'bytes_total', 0, 'bytes_done', 0, 'error', '', 'notes', '[]')
  return {gen, 0, superseded}
end
"
    };
}

/// [`reindex_lua!`] and [`begin_lua!`] as a constant, for scripts
/// assembled elsewhere.
pub(super) const BEGIN_FN_LUA: &str = concat!(reindex_lua!(), begin_lua!());

const BEGIN_LUA: &str = concat!(
    reindex_lua!(),
    begin_lua!(),
    "return begin_transfer(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9])\n"
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

const RESTART_LUA: &str = concat!(
    reindex_lua!(),
    r"
local t = KEYS[1]
local gen = tonumber(redis.call('HGET', t, 'generation') or '-1')
if gen ~= tonumber(ARGV[1]) then return 0 end
if redis.call('HGET', t, 'state') ~= 'pushing' then return 0 end
if redis.call('HGET', t, 'built') ~= '1' then return 0 end
reindex(ARGV[5], ARGV[6], 'pushing', 'pushing', tonumber(ARGV[2]), 0)
local ttl = tonumber(ARGV[3])
local old = redis.call('HGETALL', t .. ':files:' .. gen)
redis.call('EXPIRE', t .. ':files:' .. gen, ttl)
redis.call('EXPIRE', t .. ':offsets:' .. gen, ttl)
gen = gen + 1
local files, bytes = 0, 0
redis.call('DEL', t .. ':files:' .. gen, t .. ':offsets:' .. gen)
for i = 1, #old, 2 do
  redis.call('HSET', t .. ':files:' .. gen, old[i], old[i + 1])
  files = files + 1
  bytes = bytes + (tonumber(cjson.decode(old[i + 1]).size) or 0)
end
redis.call('HSET', t, 'state', 'pushing', 'generation', gen, 'updated_ms', ARGV[2],
  'files_total', files, 'files_done', 0, 'bytes_total', bytes, 'bytes_done', 0, 'error', '')
local notes = cjson.decode(redis.call('HGET', t, 'notes') or '[]')
table.insert(notes, ARGV[4])
redis.call('HSET', t, 'notes', cjson.encode(notes))
return gen
"
);

/// Adds archive records to a generation being built and recounts its
/// totals; `ARGV[2]` = '1' seals the list. Raises the queued flag
/// (`KEYS[3]`, `ARGV[4]` ms): 2 when it was down (a push job must be
/// queued), 1 when it was up, 0 when the generation moved on or ended.
const ADD_FILES_LUA: &str = r"
local t = KEYS[1]
if tonumber(redis.call('HGET', t, 'generation') or '-1') ~= tonumber(ARGV[1]) then return 0 end
local s = redis.call('HGET', t, 'state')
if s ~= 'accepted' and s ~= 'processing' and s ~= 'pushing' then return 0 end
for i = 5, #ARGV, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
local all = redis.call('HVALS', KEYS[2])
local bytes = 0
for _, v in ipairs(all) do
  bytes = bytes + (tonumber(cjson.decode(v).size) or 0)
end
redis.call('HSET', t, 'files_total', #all, 'bytes_total', bytes, 'updated_ms', ARGV[3])
if ARGV[2] == '1' then redis.call('HSET', t, 'built', '1') end
if redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[4]) then return 2 end
return 1
";

const FINISH_FILE_LUA: &str = r"
-- A late finish of a superseded generation must not count in the new one.
if tonumber(redis.call('HGET', KEYS[1], 'generation') or '-1') ~= tonumber(ARGV[3]) then return 0 end
local added = redis.call('SADD', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[2])
if added == 1 then redis.call('HINCRBY', KEYS[1], 'files_done', 1) end
return added
";

/// Lowers the queued flag (`KEYS[4]`); whether every file of the list
/// (`KEYS[3]`) is counted (`KEYS[1]`), and whether the fence (`KEYS[2]`,
/// members `generation:holder` scored by their expiry) has a live member
/// of generation `ARGV[1]`.
const FILE_WATCH_LUA: &str = r"
redis.call('DEL', KEYS[4])
local all = 0
if redis.call('SCARD', KEYS[1]) >= redis.call('HLEN', KEYS[3]) then all = 1 end
local prefix = ARGV[1] .. ':'
local pushing = 0
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], now_ms(), '+inf')) do
  if string.sub(m, 1, #prefix) == prefix then
    pushing = 1
    break
  end
end
return {all, pushing}
";

/// A transfer from its hash (`None` when the hash is empty).
pub(super) fn parse_transfer(
    id: &str,
    key: &str,
    map: &HashMap<String, String>,
) -> Result<Option<Transfer>, StateError> {
    if map.is_empty() {
        return Ok(None);
    }
    let state = map
        .get("state")
        .and_then(|s| TransferState::parse(s))
        .ok_or_else(|| StateError::Corrupt {
            key: key.to_owned(),
            reason: "no state".into(),
        })?;
    Ok(Some(Transfer {
        id: id.to_owned(),
        generation: parse_num(map, "generation"),
        state,
        user: map.get("user").cloned().unwrap_or_default(),
        grant_hash: map.get("grant_hash").cloned().unwrap_or_default(),
        revoked: map.get("revoked").is_some_and(|v| v == "1"),
        push_url: map.get("push_url").cloned().unwrap_or_default(),
        created_ms: parse_num(map, "created_ms"),
        updated_ms: parse_num(map, "updated_ms"),
        files_total: parse_num(map, "files_total"),
        files_done: parse_num(map, "files_done"),
        bytes_total: parse_num(map, "bytes_total"),
        bytes_done: parse_num(map, "bytes_done"),
        error: map.get("error").filter(|e| !e.is_empty()).cloned(),
        notes: map
            .get("notes")
            .and_then(|n| serde_json::from_str(n).ok())
            .unwrap_or_default(),
        dump_bytes_read: parse_num(map, "dump_bytes_read"),
        dump_bytes_total: parse_num(map, "dump_bytes_total"),
        built: map.get("built").is_some_and(|v| v == "1"),
    }))
}

/// The files of a generation from their records and committed offsets.
pub(super) fn parse_files(
    files_key: &str,
    raw: HashMap<String, String>,
    offsets: &HashMap<String, u64>,
) -> Result<Vec<FileRecord>, StateError> {
    let mut out = raw
        .into_values()
        .map(|v| {
            serde_json::from_str::<FileRecord>(&v).map_err(|e| StateError::Corrupt {
                key: files_key.to_owned(),
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

#[async_trait::async_trait]
impl TransferStore for RedisStore {
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
            .arg(self.index_prefix(id))
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
        parse_transfer(id, &key, &map)
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
            .arg(self.index_prefix(id))
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
            &[
                ("files_total", files.len() as u64),
                ("bytes_total", total),
                ("built", 1),
            ],
        );
        let () = pipe.query_async(&mut conn).await?;
        self.emit(id, "files").await
    }

    async fn add_files(
        &self,
        id: &str,
        generation: u64,
        files: &[FileRecord],
        complete: bool,
    ) -> Result<Added, StateError> {
        let mut conn = self.conn.clone();
        let script = Script::new(ADD_FILES_LUA);
        let mut invocation = script.key(self.transfer_key(id));
        invocation
            .key(self.files_key(id, generation))
            .key(self.queued_key(id, generation))
            .arg(generation)
            .arg(if complete { "1" } else { "0" })
            .arg(now_ms())
            .arg(millis(QUEUED_TTL));
        for f in files {
            invocation
                .arg(&f.name)
                .arg(serde_json::to_string(f).unwrap_or_default());
        }
        let added: u64 = invocation.invoke_async(&mut conn).await?;
        if added == 0 {
            return Ok(Added::Stale);
        }
        self.emit(id, "files").await?;
        Ok(Added::Recorded { queue: added == 2 })
    }

    async fn files(&self, id: &str, generation: u64) -> Result<Vec<FileRecord>, StateError> {
        let mut conn = self.conn.clone();
        let files_key = self.files_key(id, generation);
        let (raw, offsets): (HashMap<String, String>, HashMap<String, u64>) = redis::pipe()
            .hgetall(&files_key)
            .hgetall(self.offsets_key(id, generation))
            .query_async(&mut conn)
            .await?;
        parse_files(&files_key, raw, &offsets)
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

    async fn file_watch(&self, id: &str, generation: u64) -> Result<FileWatch, StateError> {
        let mut conn = self.conn.clone();
        let done_key = format!("{}:done", self.files_key(id, generation));
        let (all_counted, pushing): (i64, i64) =
            Script::new(&format!("{}{FILE_WATCH_LUA}", super::leases::NOW_MS_LUA))
                .key(&done_key)
                .key(self.fence_key(id))
                .key(self.files_key(id, generation))
                .key(self.queued_key(id, generation))
                .arg(generation)
                .invoke_async(&mut conn)
                .await?;
        Ok(FileWatch {
            all_counted: all_counted == 1,
            pushing: pushing == 1,
        })
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
            .arg(self.index_prefix(id))
            .arg(id)
            .invoke_async(&mut conn)
            .await?;
        if new == 0 {
            return Ok(None);
        }
        self.emit(id, "restarted").await?;
        Ok(Some(new))
    }

    async fn emit(&self, id: &str, kind: &str) -> Result<(), StateError> {
        // The kind alone: the hubs of processes that watch `id` read the
        // record (`events.rs`).
        let mut conn = self.conn.clone();
        let _: i64 = conn
            .publish(self.key(&format!("events:{id}")), kind)
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
        self.counts().await
    }
}
