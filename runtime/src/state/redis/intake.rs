//! [`GrantStore::take_grant`] in one Lua script: the user check, the
//! contract claim, `updateGrant`, the new generation and the capability,
//! assembled from the same Lua functions as the single-purpose scripts
//! (`users.rs`, `transfers.rs`), so both paths leave the same keys with the
//! same values. The event of a new generation is published afterwards from
//! the returned record (the same event `begin_transfer` publishes).
//!
//! On a Redis Cluster the user's keys and the transfer's lie in different
//! slots, so one script cannot touch both: `intake_steps.rs` takes the
//! grant in there in steps, each atomic in its slot.

use super::transfers::{parse_files, parse_transfer, BEGIN_FN_LUA};
use super::users::{CLAIM_FN_LUA, GRANT_FN_LUA, USER_LUA};
use super::RedisStore;
use crate::state::{
    Begin, GrantIntake, GrantStore, Intake, Settled, StateError, TransferIntake, TransferStore,
};
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
return begun_answer(t, b, ARGV[18], KEYS[9], ARGV[19], ARGV[20])
";

/// The answer of a begun transfer, shared by the one-script intake and the
/// cluster's begin step: with its access capability set (when `cap_on` is
/// `'1'`) and the new generation's record, files and offsets, unless the
/// transfer was already begun (`b[2] == 2`).
pub(super) const BEGUN_FN_LUA: &str = r"
local function begun_answer(t, b, cap_on, cap_key, cap_value, cap_ttl)
  if b[2] == 2 then return {'begun', b[1], b[2], b[3]} end
  if cap_on == '1' then
    redis.call('SET', cap_key, cap_value, 'PX', cap_ttl)
  end
  local gen = tonumber(redis.call('HGET', t, 'generation') or '0')
  return {'begun', b[1], b[2], b[3], redis.call('HGETALL', t),
    redis.call('HGETALL', t .. ':files:' .. gen), redis.call('HGETALL', t .. ':offsets:' .. gen)}
end
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
                BEGUN_FN_LUA,
                INTAKE_BODY_LUA,
            ]
            .concat(),
        )
    })
}

pub(super) fn corrupt(key: &str, reason: impl Into<String>) -> StateError {
    StateError::Corrupt {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

pub(super) fn item<T: FromRedisValue>(
    items: &[Value],
    i: usize,
    key: &str,
) -> Result<T, StateError> {
    let v = items
        .get(i)
        .ok_or_else(|| corrupt(key, "short intake reply"))?;
    Ok(T::from_redis_value(v)?)
}

/// How long an intake waits for a replica to confirm it (Sentinel form).
const REPLICA_WAIT_MS: u64 = 2000;

impl RedisStore {
    /// Runs the intake script (`call`, an `EVALSHA`), loading it first
    /// when the server lacks it. Under Sentinel the script and a `WAIT 1`
    /// go out as one pipeline on one connection, so that the `WAIT` covers
    /// the script's writes (a reconnection in between would make it cover
    /// nothing): a grant answered 2xx is on a replica and survives a
    /// failover; [`StateError::NotReplicated`] when a connected replica
    /// does not confirm in time. A primary with no replica connected takes
    /// the grant in alone (see `replicas.rs`).
    async fn run_intake(&self, call: &redis::Cmd) -> Result<Vec<Value>, StateError> {
        let mut conn = self.intake.clone();
        for attempt in 0..2 {
            let result = if conn.has_replicas() {
                redis::pipe()
                    .add_command(call.clone())
                    .cmd("WAIT")
                    .arg(1)
                    .arg(REPLICA_WAIT_MS)
                    .cmd("ROLE")
                    .query_async::<(Vec<Value>, u64, Value)>(&mut conn)
                    .await
                    .map(|(reply, acked, role)| {
                        let found = super::replicas::settled(acked, &role);
                        if found == Settled::Alone {
                            tracing::warn!("the Redis primary has no replica; a grant is taken in on its write alone");
                        }
                        (reply, found != Settled::Unconfirmed)
                    })
            } else {
                call.query_async::<Vec<Value>>(&mut conn)
                    .await
                    .map(|reply| (reply, true))
            };
            match result {
                Ok((reply, true)) => return Ok(reply),
                Ok((_, false)) => {
                    return Err(StateError::NotReplicated {
                        waited_ms: REPLICA_WAIT_MS,
                    })
                }
                Err(e) if e.kind() == redis::ErrorKind::NoScriptError && attempt == 0 => {
                    intake_script()
                        .prepare_invoke()
                        .load_async(&mut conn)
                        .await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(corrupt("intake", "the script could not be loaded"))
    }

    /// The outcome of a begun (or joined, or foreign) generation from a
    /// reply `{'begun', generation, joined, superseded, transfer, files,
    /// offsets}`; publishes the `accepted` event of a new generation.
    pub(super) async fn begun(
        &self,
        id: &str,
        transfer_key: &str,
        reply: &[Value],
    ) -> Result<Intake, StateError> {
        let generation: u64 = item(reply, 1, transfer_key)?;
        let joined: u8 = item(reply, 2, transfer_key)?;
        let superseded: u64 = item(reply, 3, transfer_key)?;
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
        let map: HashMap<String, String> = item(reply, 4, transfer_key)?;
        let transfer = parse_transfer(id, transfer_key, &map)?.map(Box::new);
        let files_key = self.files_key(id, transfer.as_ref().map_or(0, |t| t.generation));
        let raw: HashMap<String, String> = item(reply, 5, &files_key)?;
        let offsets: HashMap<String, u64> = item(reply, 6, &files_key)?;
        let files = parse_files(&files_key, raw, &offsets)?;
        if !begin.joined && transfer.is_some() {
            self.emit(id, "accepted").await?;
        }
        Ok(Intake::Begun {
            begin,
            transfer,
            files,
        })
    }
}

#[async_trait::async_trait]
impl GrantStore for RedisStore {
    async fn take_grant(&self, intake: &GrantIntake<'_>) -> Result<Intake, StateError> {
        if self.conn.is_cluster() {
            return self.take_grant_in_steps(intake).await;
        }
        let begin: Option<&TransferIntake<'_>> = intake.begin.as_ref();
        let id = begin.map_or("", |b| b.id);
        let capability = begin.and_then(|b| b.capability.as_ref());
        let transfer_key = self.transfer_key(id);
        let mut call = redis::cmd("EVALSHA");
        call.arg(intake_script().get_hash()).arg(9);
        for key in self.user_keys(intake.user) {
            call.arg(key);
        }
        call.arg(self.key(&format!("contract:{}:owner", intake.contract_hash)))
            .arg(&transfer_key)
            .arg(capability.map_or_else(|| self.key("kv:"), |c| self.kv_key(&c.key)))
            .arg(intake.user)
            .arg(self.grant_args(intake.contract_hash, intake.date_ms, intake.token))
            .arg(u8::from(intake.claim_contract))
            .arg(u8::from(begin.is_some()))
            .arg(begin.map_or("", |b| b.transfer.grant_hash))
            .arg(begin.map_or("", |b| b.transfer.push_url))
            .arg(u8::from(begin.is_some_and(|b| b.transfer.revoked)))
            .arg(self.begin_args(id, capability));
        let reply = self.run_intake(&call).await?;
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
            "begun" => self.begun(id, &transfer_key, &reply).await,
            other => Err(corrupt(&transfer_key, format!("intake reply {other:?}"))),
        }
    }
}
