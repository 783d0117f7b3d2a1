//! [`crate::state::GrantStore::take_grant`] on a Redis Cluster, where a user's keys
//! (tag `{pk}`) and a transfer's (tag `{tN}`) lie in different slots: the
//! same checks and writes as the one-script intake, in steps that are each
//! one script in one slot, in the same order:
//!
//! 1. the user check (user slot, read only);
//! 2. the contract claim (the contract's owner key), kept when a later
//!    step refuses, as in the one-script form;
//! 3. the user check again and `updateGrant`; a stored grant that begins a
//!    transfer also leaves a *begin marker* (`user:{pk}:begin:{id}` = the
//!    grant hash) in the user's slot;
//! 4. the new generation and the capability (transfer slot);
//! 5. the marker removed.
//!
//! A failure between 3 and 5 (a node lost, the process killed) leaves the
//! grant stored and maybe no generation. The same grant sent again is then
//! `kept` (not newer than itself): when the marker names it, step 4 runs
//! again in *recovery*, which begins the generation unless the transfer
//! already carries this grant (step 4 had run: the answer is `Kept`, as it
//! would be without the failure). So a retried request finishes an intake
//! cut short instead of finding a stored grant without its transfer.

use super::intake::{corrupt, item, BEGUN_FN_LUA};
use super::transfers::BEGIN_FN_LUA;
use super::users::{CLAIM_CONTRACT_LUA, GRANT_FN_LUA, USER_LUA};
use super::{millis, RedisStore};
use crate::state::{GrantIntake, Intake, StateError};
use redis::{Script, Value};
use std::sync::OnceLock;

// KEYS: the six user keys.
const KNOWN_LUA: &str = r"
if redis.call('EXISTS', KEYS[5]) == 0 and redis.call('HLEN', KEYS[6]) == 0 then return 0 end
return 1
";

// KEYS: the six user keys, the begin marker. ARGV: 1 contract, 2 date,
// 3 token, 4 max contracts, 5 max history, 6 max grant bytes, 7 guest TTL
// (ms), 8 begin (0/1), 9 grant hash, 10 marker TTL (ms).
const GRANT_BODY_LUA: &str = r"
if redis.call('EXISTS', KEYS[5]) == 0 and redis.call('HLEN', KEYS[6]) == 0 then
  return {'unknown'}
end
local r = update_grant(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7])
if r[1] < 0 then return {'quota', r[2]} end
if r[1] == 0 then
  local pending = 0
  if ARGV[8] == '1' and r[2] == ARGV[3] and redis.call('GET', KEYS[7]) == ARGV[9] then
    pending = 1
  end
  return {'kept', r[2], pending}
end
if ARGV[8] == '1' then redis.call('SET', KEYS[7], ARGV[9], 'PX', ARGV[10]) end
return {'stored'}
";

// KEYS: the transfer key, the capability key (same slot). ARGV: 1 grant
// hash, 2 user, 3 token, 4 push URL, 5 revoked (0/1), 6 now (ms),
// 7 finished TTL (s), 8 index prefix, 9 transfer id, 10 capability (0/1),
// 11 capability value, 12 capability TTL (ms), 13 recovery (0/1).
const BEGIN_BODY_LUA: &str = r"
local t = KEYS[1]
if ARGV[13] == '1' and redis.call('HGET', t, 'grant_hash') == ARGV[1] then
  return {'already'}
end
local b = begin_transfer(t, ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6],
  ARGV[7], ARGV[8], ARGV[9])
return begun_answer(t, b, ARGV[10], KEYS[2], ARGV[11], ARGV[12])
";

fn script(cell: &'static OnceLock<Script>, parts: &[&str]) -> &'static Script {
    cell.get_or_init(|| Script::new(&parts.concat()))
}

fn grant_script() -> &'static Script {
    static SCRIPT: OnceLock<Script> = OnceLock::new();
    script(&SCRIPT, &[USER_LUA, GRANT_FN_LUA, GRANT_BODY_LUA])
}

fn begin_script() -> &'static Script {
    static SCRIPT: OnceLock<Script> = OnceLock::new();
    script(&SCRIPT, &[BEGIN_FN_LUA, BEGUN_FN_LUA, BEGIN_BODY_LUA])
}

impl RedisStore {
    /// The begin marker of transfer `id` in `user`'s slot.
    fn begin_marker(&self, user: &str, id: &str) -> String {
        self.user_key(user, &format!("begin:{id}"))
    }

    /// [`crate::state::GrantStore::take_grant`] in steps (see the module documentation).
    pub(super) async fn take_grant_in_steps(
        &self,
        intake: &GrantIntake<'_>,
    ) -> Result<Intake, StateError> {
        let mut conn = self.conn.clone();
        let user = intake.user;
        let begin = intake.begin.as_ref();
        let id = begin.map_or("", |b| b.id);
        let marker = self.begin_marker(user, id);
        let user_key = self.user_key(user, "bind");
        // 1. The user check.
        let known_script = Script::new(KNOWN_LUA);
        let mut known = known_script.prepare_invoke();
        for key in self.user_keys(user) {
            known.key(key);
        }
        if known.invoke_async::<i64>(&mut conn).await? == 0 {
            return Ok(Intake::UnknownUser);
        }
        // 2. The contract claim.
        if intake.claim_contract {
            let owner: String = Script::new(CLAIM_CONTRACT_LUA)
                .key(self.key(&format!("contract:{}:owner", intake.contract_hash)))
                .arg(user)
                .invoke_async(&mut conn)
                .await?;
            if owner != user {
                return Ok(Intake::ContractBound { owner });
            }
        }
        // 3. The grant, and the begin marker.
        let mut grant = grant_script().prepare_invoke();
        for key in self.user_keys(user) {
            grant.key(key);
        }
        grant
            .key(&marker)
            .arg(self.grant_args(intake.contract_hash, intake.date_ms, intake.token))
            .arg(u8::from(begin.is_some()))
            .arg(begin.map_or("", |b| b.transfer.grant_hash))
            .arg(millis(self.finished_ttl));
        let reply: Vec<Value> = grant.invoke_async(&mut conn).await?;
        let kind: String = item(&reply, 0, &user_key)?;
        let recovery = match kind.as_str() {
            "unknown" => return Ok(Intake::UnknownUser),
            "quota" => return Err(self.quota_error(&item::<String>(&reply, 1, &user_key)?)),
            "kept" => {
                let effective: String = item(&reply, 1, &user_key)?;
                if item::<u8>(&reply, 2, &user_key)? == 0 {
                    return Ok(Intake::Kept { effective });
                }
                true
            }
            "stored" => false,
            other => return Err(corrupt(&user_key, format!("intake reply {other:?}"))),
        };
        let Some(b) = begin else {
            return Ok(Intake::Stored);
        };
        // 4. The generation and the capability.
        let transfer_key = self.transfer_key(id);
        let capability = b.capability.as_ref();
        let mut step = begin_script().prepare_invoke();
        step.key(&transfer_key)
            .key(capability.map_or_else(|| transfer_key.clone(), |c| self.kv_key(&c.key)))
            .arg(b.transfer.grant_hash)
            .arg(b.transfer.user)
            .arg(b.transfer.grant_token)
            .arg(b.transfer.push_url)
            .arg(u8::from(b.transfer.revoked))
            .arg(self.begin_args(id, capability))
            .arg(u8::from(recovery));
        let reply: Vec<Value> = step.invoke_async(&mut conn).await?;
        // 5. The marker removed.
        let _: u64 = redis::cmd("DEL")
            .arg(&marker)
            .query_async(&mut conn)
            .await?;
        let kind: String = item(&reply, 0, &transfer_key)?;
        match kind.as_str() {
            "already" => Ok(Intake::Kept {
                effective: intake.token.to_owned(),
            }),
            "begun" => self.begun(id, &transfer_key, &reply).await,
            other => Err(corrupt(&transfer_key, format!("intake reply {other:?}"))),
        }
    }
}
