//! Users, grants, bindings and dumps in memory.

use super::MemoryStore;
use crate::state::{DumpRecord, DumpStore, StateError, UserStore};
use std::time::{Duration, Instant};

#[async_trait::async_trait]
impl UserStore for MemoryStore {
    async fn stored_grant(
        &self,
        user: &str,
        contract_hash: &str,
    ) -> Result<Option<String>, StateError> {
        Ok(self.with_user(user, |u| u.contracts.get(contract_hash).cloned()))
    }

    async fn update_grant(
        &self,
        user: &str,
        contract_hash: &str,
        date_ms: f64,
        token: &str,
    ) -> Result<(String, bool), StateError> {
        let now = Instant::now();
        let q = self.quotas;
        let mut data = self.data();
        let u = data.user_mut(user, now);
        if u.dates
            .get(contract_hash)
            .is_some_and(|old| *old >= date_ms)
        {
            let effective = u.contracts.get(contract_hash).cloned().unwrap_or_default();
            return Ok((effective, false));
        }
        let replaced = u.contracts.get(contract_hash).map_or(0, String::len);
        if replaced == 0
            && !u.contracts.contains_key(contract_hash)
            && u.contracts.len() as u64 >= q.contracts
        {
            return Err(StateError::Quota {
                quota: "contracts",
                limit: q.contracts,
            });
        }
        let bytes: usize = u.contracts.values().map(String::len).sum();
        if (bytes - replaced + token.len()) as u64 > q.grant_bytes {
            return Err(StateError::Quota {
                quota: "grant_bytes",
                limit: q.grant_bytes,
            });
        }
        u.contracts
            .insert(contract_hash.to_owned(), token.to_owned());
        u.dates.insert(contract_hash.to_owned(), date_ms);
        u.history.push_front(token.to_owned());
        let mut history_bytes: usize = u.history.iter().map(String::len).sum();
        while u.history.len() > 1
            && (u.history.len() as u64 > q.history || history_bytes as u64 > q.grant_bytes)
        {
            history_bytes -= u.history.pop_back().map_or(0, |g| g.len());
        }
        u.touch(now, q.guest_ttl);
        Ok((token.to_owned(), true))
    }

    async fn grant_history(&self, user: &str) -> Result<Vec<String>, StateError> {
        Ok(self.with_user(user, |u| u.history.iter().cloned().collect()))
    }

    async fn contracts_of(&self, user: &str) -> Result<Vec<String>, StateError> {
        Ok(self.with_user(user, |u| u.contracts.keys().cloned().collect()))
    }

    async fn set_binding(&self, user: &str, token: &str) -> Result<(), StateError> {
        let now = Instant::now();
        let mut data = self.data();
        let u = data.user_mut(user, now);
        u.bind = Some(token.to_owned());
        u.touch(now, self.quotas.guest_ttl);
        Ok(())
    }

    async fn binding(&self, user: &str) -> Result<Option<String>, StateError> {
        Ok(self.with_user(user, |u| u.bind.clone()))
    }

    async fn is_known_user(&self, user: &str) -> Result<bool, StateError> {
        Ok(self.with_user(user, |u| u.bind.is_some() || !u.dumps.is_empty()))
    }

    async fn keep_user(&self, user: &str) -> Result<(), StateError> {
        let now = Instant::now();
        let mut data = self.data();
        let u = data.user_mut(user, now);
        u.durable = true;
        u.expires = None;
        Ok(())
    }

    async fn claim_contract(&self, contract_hash: &str, user: &str) -> Result<String, StateError> {
        let now = Instant::now();
        let mut data = self.data();
        let key = format!("contract:{contract_hash}:owner");
        data.set_nx(&key, user.to_owned(), None, now);
        Ok(data
            .value(&key, now)
            .map_or_else(|| user.to_owned(), |v| v.value.clone()))
    }

    async fn contract_owner(&self, contract_hash: &str) -> Result<Option<String>, StateError> {
        let now = Instant::now();
        Ok(self
            .data()
            .value(&format!("contract:{contract_hash}:owner"), now)
            .map(|v| v.value.clone()))
    }

    async fn claim_once(&self, id: &str, ttl: Duration) -> Result<bool, StateError> {
        let now = Instant::now();
        Ok(self
            .data()
            .set_nx(&format!("once:{id}"), "1".into(), Some(ttl), now))
    }

    async fn forget_user(&self, user: &str) -> Result<(), StateError> {
        self.data().users.remove(user);
        Ok(())
    }
}

#[async_trait::async_trait]
impl DumpStore for MemoryStore {
    async fn record_dump(&self, user: &str, dump: &DumpRecord) -> Result<(), StateError> {
        let now = Instant::now();
        let q = self.quotas;
        let mut data = self.data();
        let u = data.user_mut(user, now);
        let field = format!("{}/{}", dump.provider, dump.name);
        if !u.dumps.contains_key(&field) && u.dumps.len() as u64 >= q.dumps {
            return Err(StateError::Quota {
                quota: "dumps",
                limit: q.dumps,
            });
        }
        let others: u64 = u
            .dumps
            .iter()
            .filter(|(k, _)| **k != field)
            .map(|(_, d)| d.size)
            .sum();
        if others.saturating_add(dump.size) > q.dump_bytes {
            return Err(StateError::Quota {
                quota: "dump_bytes",
                limit: q.dump_bytes,
            });
        }
        u.dumps.insert(field, dump.clone());
        u.durable = true;
        u.expires = None;
        Ok(())
    }

    async fn dumps(&self, user: &str) -> Result<Vec<DumpRecord>, StateError> {
        let mut out: Vec<DumpRecord> =
            self.with_user(user, |u| u.dumps.values().cloned().collect());
        out.sort_by(|a, b| (&a.provider, &a.name).cmp(&(&b.provider, &b.name)));
        Ok(out)
    }

    async fn delete_dump(
        &self,
        user: &str,
        provider: &str,
        name: &str,
    ) -> Result<bool, StateError> {
        let mut data = self.data();
        Ok(data
            .users
            .get_mut(user)
            .and_then(|u| u.dumps.remove(&format!("{provider}/{name}")))
            .is_some())
    }
}
