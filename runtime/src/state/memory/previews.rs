//! Preview records in memory, under the store's one lock, with the same
//! rules and expiries as in Redis.

use super::{MemoryStore, Timed};
use crate::state::previews::{new_id, Preview, PreviewKey, PreviewLimits, PreviewStart};
use crate::state::{now_ms, PreviewState, PreviewStore, StateError};
use std::time::{Duration, Instant};

#[async_trait::async_trait]
impl PreviewStore for MemoryStore {
    async fn start_preview(
        &self,
        key: &PreviewKey,
        scopes: &[String],
        limits: &PreviewLimits,
    ) -> Result<PreviewStart, StateError> {
        let now = Instant::now();
        let mut data = self.data();
        let (record, count) = (key.record_name(), key.count_name());
        if let Some(cur) = data.value(&record, now) {
            let cur = Preview::from_json(key, &cur.value)?;
            if cur.is_pending() {
                return Ok(PreviewStart::Busy(cur));
            }
        }
        let (n, expires) = match data.value(&count, now) {
            Some(t) => (t.value.parse::<u64>().unwrap_or(0), t.expires),
            None => (0, None),
        };
        if n >= limits.per_hour {
            let left = expires.map_or(Duration::ZERO, |at| at.saturating_duration_since(now));
            return Ok(PreviewStart::Limited {
                retry_after: left.max(Duration::from_millis(1)),
            });
        }
        let preview = Preview {
            id: new_id(),
            requested: scopes.to_vec(),
            created_ms: now_ms(),
            state: PreviewState::Pending,
        };
        let text = preview.to_json()?;
        data.values.insert(
            count,
            Timed {
                value: (n + 1).to_string(),
                expires: expires.or(Some(now + PreviewLimits::WINDOW)),
            },
        );
        data.values.insert(
            record,
            Timed {
                value: text,
                expires: Some(now + limits.pending_ttl),
            },
        );
        Ok(PreviewStart::Started(preview))
    }

    async fn preview(&self, key: &PreviewKey) -> Result<Option<Preview>, StateError> {
        let now = Instant::now();
        let mut data = self.data();
        data.value(&key.record_name(), now)
            .map(|t| Preview::from_json(key, &t.value))
            .transpose()
    }

    async fn finish_preview(
        &self,
        key: &PreviewKey,
        id: &str,
        state: &PreviewState,
        ttl: Duration,
    ) -> Result<bool, StateError> {
        let now = Instant::now();
        let mut data = self.data();
        let Some(cur) = data.value(&key.record_name(), now) else {
            return Ok(false);
        };
        let cur = Preview::from_json(key, &cur.value)?;
        if !cur.is_pending() || cur.id != id {
            return Ok(false);
        }
        let done = Preview {
            state: state.clone(),
            ..cur
        };
        data.values.insert(
            key.record_name(),
            Timed {
                value: done.to_json()?,
                expires: Some(now + ttl),
            },
        );
        Ok(true)
    }

    async fn forget_preview(&self, key: &PreviewKey) -> Result<bool, StateError> {
        let now = Instant::now();
        let mut data = self.data();
        let live = data.value(&key.record_name(), now).is_some();
        data.values.remove(&key.record_name());
        Ok(live)
    }
}
