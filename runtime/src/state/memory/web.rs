//! The web side's records in memory, and the flags, first sightings and
//! counters the marks and client health are made of.

use super::{MemoryStore, Timed};
use crate::state::keys::{Key, Primitives};
use crate::state::{now_ms, StateError, WebKey, WebList, WebStore};
use std::time::{Duration, Instant};

impl MemoryStore {
    /// Prepends `value` to `list` (removed first where it was, when
    /// `unique`) and keeps the newest `keep` items.
    fn push_to_list(&self, list: &WebList<'_>, value: &str, keep: usize, unique: bool) {
        let mut data = self.data();
        let items = data.lists.entry(list.name()).or_default();
        if unique {
            items.retain(|v| v != value);
        }
        items.push_front(value.to_owned());
        items.truncate(keep.max(1));
    }
}

#[async_trait::async_trait]
impl WebStore for MemoryStore {
    async fn kv_get(&self, key: &WebKey<'_>) -> Result<Option<String>, StateError> {
        let now = Instant::now();
        Ok(self
            .data()
            .value(&format!("kv:{}", key.name()), now)
            .map(|v| v.value.clone()))
    }

    async fn kv_set(
        &self,
        key: &WebKey<'_>,
        value: &str,
        ttl: Option<Duration>,
    ) -> Result<(), StateError> {
        let now = Instant::now();
        self.data().values.insert(
            format!("kv:{}", key.name()),
            Timed {
                value: value.to_owned(),
                expires: ttl.map(|t| now + t),
            },
        );
        Ok(())
    }

    async fn kv_set_nx(
        &self,
        key: &WebKey<'_>,
        value: &str,
        ttl: Option<Duration>,
    ) -> Result<bool, StateError> {
        let now = Instant::now();
        Ok(self
            .data()
            .set_nx(&format!("kv:{}", key.name()), value.to_owned(), ttl, now))
    }

    async fn kv_replace(
        &self,
        key: &WebKey<'_>,
        expected: &str,
        value: &str,
        ttl: Option<Duration>,
    ) -> Result<bool, StateError> {
        let now = Instant::now();
        let mut data = self.data();
        let key = format!("kv:{}", key.name());
        if data.value(&key, now).is_none_or(|v| v.value != expected) {
            return Ok(false);
        }
        data.values.insert(
            key,
            Timed {
                value: value.to_owned(),
                expires: ttl.map(|t| now + t),
            },
        );
        Ok(true)
    }

    async fn kv_delete_if(&self, key: &WebKey<'_>, expected: &str) -> Result<bool, StateError> {
        let now = Instant::now();
        let mut data = self.data();
        let key = format!("kv:{}", key.name());
        if data.value(&key, now).is_none_or(|v| v.value != expected) {
            return Ok(false);
        }
        data.values.remove(&key);
        Ok(true)
    }

    async fn kv_take(&self, key: &WebKey<'_>) -> Result<Option<String>, StateError> {
        let now = Instant::now();
        let mut data = self.data();
        let key = format!("kv:{}", key.name());
        let live = data.value(&key, now).is_some();
        Ok(if live {
            data.values.remove(&key).map(|v| v.value)
        } else {
            None
        })
    }

    async fn kv_delete(&self, key: &WebKey<'_>) -> Result<bool, StateError> {
        let now = Instant::now();
        let mut data = self.data();
        let key = format!("kv:{}", key.name());
        let live = data.value(&key, now).is_some();
        data.values.remove(&key);
        Ok(live)
    }

    async fn schedule(&self, name: &str, member: &str, due_ms: u64) -> Result<(), StateError> {
        self.data()
            .schedules
            .entry(name.to_owned())
            .or_default()
            .insert(member.to_owned(), due_ms);
        Ok(())
    }

    async fn due(&self, name: &str, now_ms: u64, limit: usize) -> Result<Vec<String>, StateError> {
        let data = self.data();
        let mut due: Vec<(u64, String)> = data
            .schedules
            .get(name)
            .map(|s| {
                s.iter()
                    .filter(|(_, at)| **at <= now_ms)
                    .map(|(m, at)| (*at, m.clone()))
                    .collect()
            })
            .unwrap_or_default();
        due.sort();
        Ok(due.into_iter().take(limit).map(|(_, m)| m).collect())
    }

    async fn unschedule(&self, name: &str, member: &str) -> Result<(), StateError> {
        if let Some(s) = self.data().schedules.get_mut(name) {
            s.remove(member);
        }
        Ok(())
    }

    async fn list_push(
        &self,
        list: &WebList<'_>,
        value: &str,
        keep: usize,
    ) -> Result<(), StateError> {
        self.push_to_list(list, value, keep, false);
        Ok(())
    }

    async fn list_push_unique(
        &self,
        list: &WebList<'_>,
        value: &str,
        keep: usize,
    ) -> Result<(), StateError> {
        self.push_to_list(list, value, keep, true);
        Ok(())
    }

    async fn list_range(
        &self,
        list: &WebList<'_>,
        limit: usize,
    ) -> Result<Vec<String>, StateError> {
        Ok(self
            .data()
            .lists
            .get(&list.name())
            .map(|l| l.iter().take(limit).cloned().collect())
            .unwrap_or_default())
    }

    async fn list_delete(&self, list: &WebList<'_>) -> Result<bool, StateError> {
        Ok(self.data().lists.remove(&list.name()).is_some())
    }
}

#[async_trait::async_trait]
impl Primitives for MemoryStore {
    async fn raw_flag(&self, name: &Key) -> Result<bool, StateError> {
        let now = Instant::now();
        Ok(self.data().value(&format!("flag:{name}"), now).is_some())
    }

    async fn raw_set_flag(&self, name: &Key, ttl: Duration) -> Result<bool, StateError> {
        let now = Instant::now();
        Ok(self
            .data()
            .set_nx(&format!("flag:{name}"), "1".into(), Some(ttl), now))
    }

    async fn raw_first_seen(&self, name: &Key, ttl: Duration) -> Result<u64, StateError> {
        let now = Instant::now();
        let mut data = self.data();
        let key = format!("seen:{name}");
        data.set_nx(&key, now_ms().to_string(), Some(ttl), now);
        Ok(data
            .value(&key, now)
            .and_then(|v| v.value.parse().ok())
            .unwrap_or_else(now_ms))
    }

    async fn raw_clear_flag(&self, name: &Key) -> Result<(), StateError> {
        self.data().values.remove(&format!("flag:{name}"));
        Ok(())
    }

    async fn raw_forget_seen(&self, name: &Key) -> Result<(), StateError> {
        self.data().values.remove(&format!("seen:{name}"));
        Ok(())
    }

    async fn raw_count(&self, name: &Key, window: Duration) -> Result<u64, StateError> {
        let now = Instant::now();
        let mut data = self.data();
        let key = format!("count:{name}");
        let n = data
            .value(&key, now)
            .and_then(|v| v.value.parse::<u64>().ok())
            .unwrap_or(0)
            + 1;
        data.values.insert(
            key,
            Timed {
                value: n.to_string(),
                expires: Some(now + window),
            },
        );
        Ok(n)
    }

    async fn raw_counted(&self, name: &Key) -> Result<u64, StateError> {
        let now = Instant::now();
        Ok(self
            .data()
            .value(&format!("count:{name}"), now)
            .and_then(|v| v.value.parse().ok())
            .unwrap_or(0))
    }

    async fn raw_reset_count(&self, name: &Key) -> Result<(), StateError> {
        self.data().values.remove(&format!("count:{name}"));
        Ok(())
    }

    async fn raw_set_number(
        &self,
        name: &Key,
        value: u64,
        ttl: Duration,
    ) -> Result<(), StateError> {
        let now = Instant::now();
        self.data().values.insert(
            format!("number:{name}"),
            Timed {
                value: value.to_string(),
                expires: Some(now + ttl),
            },
        );
        Ok(())
    }

    async fn raw_number(&self, name: &Key) -> Result<Option<u64>, StateError> {
        let now = Instant::now();
        Ok(self
            .data()
            .value(&format!("number:{name}"), now)
            .and_then(|v| v.value.parse().ok()))
    }

    async fn raw_clear_number(&self, name: &Key) -> Result<(), StateError> {
        self.data().values.remove(&format!("number:{name}"));
        Ok(())
    }
}
