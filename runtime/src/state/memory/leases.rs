//! Leases and the restart fence in memory.

use super::{fence_key, MemoryStore, Timed};
use crate::state::{ClientName, Lease, LeaseStore, StateError, TransferState};
use std::time::{Duration, Instant};

#[async_trait::async_trait]
impl LeaseStore for MemoryStore {
    async fn acquire_lease(
        &self,
        name: &Lease,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StateError> {
        let now = Instant::now();
        Ok(self
            .data()
            .set_nx(&format!("lease:{name}"), holder.to_owned(), Some(ttl), now))
    }

    async fn renew_lease(
        &self,
        name: &Lease,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StateError> {
        let now = Instant::now();
        let mut data = self.data();
        match data.value(&format!("lease:{name}"), now) {
            Some(lease) if lease.value == holder => {
                lease.expires = Some(now + ttl);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn release_lease(&self, name: &Lease, holder: &str) -> Result<bool, StateError> {
        let now = Instant::now();
        let mut data = self.data();
        let key = format!("lease:{name}");
        if data.value(&key, now).is_some_and(|l| l.value == holder) {
            data.values.remove(&key);
            return Ok(true);
        }
        Ok(false)
    }

    async fn enter_fence(
        &self,
        id: &str,
        generation: u64,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StateError> {
        let now = Instant::now();
        let mut data = self.data();
        let current = data.transfer(id, now).is_some_and(|t| {
            t.transfer.generation == generation && t.transfer.state == TransferState::Pushing
        });
        if !current {
            return Ok(false);
        }
        data.values.insert(
            fence_key(id, generation, holder),
            Timed {
                value: String::new(),
                expires: Some(now + ttl),
            },
        );
        Ok(true)
    }

    async fn renew_fence(
        &self,
        id: &str,
        generation: u64,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StateError> {
        let now = Instant::now();
        let mut data = self.data();
        match data.value(&fence_key(id, generation, holder), now) {
            Some(entry) => {
                entry.expires = Some(now + ttl);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn leave_fence(&self, id: &str, generation: u64, holder: &str) -> Result<(), StateError> {
        self.data()
            .values
            .remove(&fence_key(id, generation, holder));
        Ok(())
    }

    async fn fence_clear(&self, id: &str, generation: u64) -> Result<bool, StateError> {
        let now = Instant::now();
        let prefix = format!("fence:{id}:");
        let data = self.data();
        let blocked = data.values.iter().any(|(key, entry)| {
            entry.live(now)
                && key
                    .strip_prefix(&prefix)
                    .and_then(|rest| rest.split(':').next())
                    .and_then(|g| g.parse::<u64>().ok())
                    .is_some_and(|g| g < generation)
        });
        Ok(!blocked)
    }

    async fn wait_for_slot(
        &self,
        client: &ClientName,
        member: &str,
        _ttl: Duration,
    ) -> Result<(), StateError> {
        let mut data = self.data();
        let list = data.lists.entry(format!("slotwait:{client}")).or_default();
        if !list.iter().any(|m| m == member) {
            list.push_back(member.to_owned());
        }
        Ok(())
    }

    async fn next_waiting(&self, client: &ClientName) -> Result<Option<String>, StateError> {
        let mut data = self.data();
        let key = format!("slotwait:{client}");
        let next = data.lists.get_mut(&key).and_then(|list| list.pop_front());
        if data.lists.get(&key).is_some_and(|list| list.is_empty()) {
            data.lists.remove(&key);
        }
        Ok(next)
    }
}
