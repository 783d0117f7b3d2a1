//! [`GrantStore::take_grant`] in one Lua script: the user check, the
//! contract claim, `updateGrant`, the new generation and the capability,
//! assembled from the same Lua functions as the single-purpose scripts
//! (`users.rs`, `transfers.rs`), so both paths leave the same keys with the
//! same values. The event of a new generation is published afterwards from
//! the returned record (the same event `begin_transfer` publishes).

use super::transfers::{parse_files, parse_transfer, BEGIN_FN_LUA};
use super::users::{CLAIM_FN_LUA, GRANT_FN_LUA, USER_LUA};
use super::{millis, RedisStore};
use crate::state::{now_ms, Begin, GrantIntake, GrantStore, Intake, StateError, TransferIntake};
use redis::{FromRedisValue, Script, Value};
use std::collections::HashMap;
use std::sync::OnceLock;

// KEYS: the six user keys, the contract's owner key, the transfer key, the
// capability key. ARGV: 1 user, 2 contract, 3 date, 4 token, 5 max
// contracts, 6 max history, 7 max grant bytes, 8 guest TTL (ms), 9 claim
// (0/1), 10 begin (0/1), 11 grant hash, 12 push URL, 13 revoked (0/1),
// 14 now (ms), 15 finished TTL (s), 16 index prefix, 17 transfer id,
// 18 capability (0/1), 19 capability value, 20 capability TTL (ms).
const INTAKE_BODY_LUA: &str = r"
if redis.call('EXISTS', KEYS[5]) == 0 and redis.call('HLEN', KEYS[6]) == 0 then
  return {'unknown'}
end
if ARGV[9] == '1' then
  local owner = claim_contract(KEYS[7], ARGV[1])
  if owner ~= ARGV[1] then return {'bound', owner} end
end
local r = update_grant(ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8])
if r[1] < 0 then return {'quota', r[2]} end
if r[1] == 0 then return {'kept', r[2]} end
if ARGV[10] ~= '1' then return {'stored'} end
local t = KEYS[8]
local b = begin_transfer(t, ARGV[11], ARGV[1], ARGV[4], ARGV[12], ARGV[13], ARGV[14],
  ARGV[15], ARGV[16], ARGV[17])
if b[2] == 2 then return {'begun', b[1], b[2], b[3]} end
if ARGV[18] == '1' then
  redis.call('SET', KEYS[9], ARGV[19], 'PX', ARGV[20])
end
local gen = tonumber(redis.call('HGET', t, 'generation') or '0')
return {'begun', b[1], b[2], b[3], redis.call('HGETALL', t),
  redis.call('HGETALL', t .. ':files:' .. gen), redis.call('HGETALL', t .. ':offsets:' .. gen)}
";

fn intake_script() -> &'static Script {
    static SCRIPT: OnceLock<Script> = OnceLock::new();
    SCRIPT.get_or_init(|| {
        Script::new(
            &[
                USER_LUA,
                GRANT_FN_LUA,
                CLAIM_FN_LUA,
                BEGIN_FN_LUA,
                INTAKE_BODY_LUA,
            ]
            .concat(),
        )
    })
}

fn corrupt(key: &str, reason: impl Into<String>) -> StateError {
    StateError::Corrupt {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

fn item<T: FromRedisValue>(items: &[Value], i: usize, key: &str) -> Result<T, StateError> {
    let v = items
        .get(i)
        .ok_or_else(|| corrupt(key, "short intake reply"))?;
    Ok(T::from_redis_value(v)?)
}

#[async_trait::async_trait]
impl GrantStore for RedisStore {
    async fn take_grant(&self, intake: &GrantIntake<'_>) -> Result<Intake, StateError> {
        let q = self.quotas;
        let begin: Option<&TransferIntake<'_>> = intake.begin.as_ref();
        let id = begin.map_or("", |b| b.id);
        let capability = begin.and_then(|b| b.capability.as_ref());
        let transfer_key = self.transfer_key(id);
        let mut invocation = intake_script().prepare_invoke();
        for key in self.user_keys(intake.user) {
            invocation.key(key);
        }
        invocation
            .key(self.key(&format!("contract:{}:owner", intake.contract_hash)))
            .key(&transfer_key)
            .key(self.key(&format!(
                "kv:{}",
                capability.map_or_else(String::new, |c| c.key.name())
            )))
            .arg(intake.user)
            .arg(intake.contract_hash)
            .arg(intake.date_ms)
            .arg(intake.token)
            .arg(q.contracts)
            .arg(q.history)
            .arg(q.grant_bytes)
            .arg(self.guest_ttl_ms())
            .arg(u8::from(intake.claim_contract))
            .arg(u8::from(begin.is_some()))
            .arg(begin.map_or("", |b| b.transfer.grant_hash))
            .arg(begin.map_or("", |b| b.transfer.push_url))
            .arg(u8::from(begin.is_some_and(|b| b.transfer.revoked)))
            .arg(now_ms())
            .arg(self.ttl_secs())
            .arg(self.index_prefix())
            .arg(id)
            .arg(u8::from(capability.is_some()))
            .arg(capability.map_or("", |c| c.value))
            .arg(capability.map_or(1, |c| millis(c.ttl)));
        let mut conn = self.conn.clone();
        let reply: Vec<Value> = invocation.invoke_async(&mut conn).await?;
        let kind: String = item(&reply, 0, &transfer_key)?;
        match kind.as_str() {
            "unknown" => Ok(Intake::UnknownUser),
            "bound" => Ok(Intake::ContractBound {
                owner: item(&reply, 1, &transfer_key)?,
            }),
            "quota" => Err(self.quota_error(&item::<String>(&reply, 1, &transfer_key)?)),
            "kept" => Ok(Intake::Kept {
                effective: item(&reply, 1, &transfer_key)?,
            }),
            "stored" => Ok(Intake::Stored),
            "begun" => {
                let generation: u64 = item(&reply, 1, &transfer_key)?;
                let joined: u8 = item(&reply, 2, &transfer_key)?;
                let superseded: u64 = item(&reply, 3, &transfer_key)?;
                let begin = Begin {
                    generation,
                    joined: joined == 1,
                    superseded: (superseded > 0).then_some(superseded),
                    foreign: joined == 2,
                };
                if begin.foreign {
                    return Ok(Intake::Begun {
                        begin,
                        transfer: None,
                        files: Vec::new(),
                    });
                }
                let map: HashMap<String, String> = item(&reply, 4, &transfer_key)?;
                let transfer = parse_transfer(id, &transfer_key, &map)?.map(Box::new);
                let files_key = self.files_key(id, transfer.as_ref().map_or(0, |t| t.generation));
                let raw: HashMap<String, String> = item(&reply, 5, &files_key)?;
                let offsets: HashMap<String, u64> = item(&reply, 6, &files_key)?;
                let files = parse_files(&files_key, raw, &offsets)?;
                if !begin.joined {
                    if let Some(t) = &transfer {
                        self.publish_event((**t).clone(), "accepted").await?;
                    }
                }
                Ok(Intake::Begun {
                    begin,
                    transfer,
                    files,
                })
            }
            other => Err(corrupt(&transfer_key, format!("intake reply {other:?}"))),
        }
    }
}
