//! Transfers in memory.

use super::{MemoryStore, StoredTransfer, Timed};
use crate::state::{
    now_ms, transfers::QUEUED_TTL, Added, Begin, FileRecord, FileWatch, NewTransfer, StateError,
    Subscription, Transfer, TransferEvent, TransferState, TransferStore,
};
use std::collections::HashMap;
use std::time::Instant;

#[async_trait::async_trait]
impl TransferStore for MemoryStore {
    async fn begin_transfer(&self, id: &str, new: &NewTransfer<'_>) -> Result<Begin, StateError> {
        let begin = {
            let now = Instant::now();
            let mut data = self.data();
            let mut superseded = None;
            let mut generation = 0;
            if let Some(t) = data.transfer(id, now) {
                let t = &t.transfer;
                generation = t.generation;
                if !t.user.is_empty() && t.user != new.user {
                    return Ok(Begin {
                        generation,
                        joined: false,
                        superseded: None,
                        foreign: true,
                    });
                }
                if !t.state.is_terminal() {
                    if t.grant_hash == new.grant_hash {
                        return Ok(Begin {
                            generation,
                            joined: true,
                            superseded: None,
                            foreign: false,
                        });
                    }
                    superseded = Some(generation);
                }
            }
            if generation > 0 {
                data.expire_generation(id, generation, now + self.finished_ttl);
            }
            let generation = generation + 1;
            let ms = now_ms();
            let old = data
                .transfers
                .get(id)
                .map(|t| (t.value.transfer.state, t.expires));
            data.index.reindex(id, old, (TransferState::Accepted, None));
            data.transfers.insert(
                id.to_owned(),
                Timed {
                    value: StoredTransfer {
                        transfer: Transfer {
                            id: id.to_owned(),
                            generation,
                            state: TransferState::Accepted,
                            user: new.user.to_owned(),
                            grant_hash: new.grant_hash.to_owned(),
                            revoked: new.revoked,
                            push_url: new.push_url.to_owned(),
                            created_ms: ms,
                            updated_ms: ms,
                            files_total: 0,
                            files_done: 0,
                            bytes_total: 0,
                            bytes_done: 0,
                            error: None,
                            notes: Vec::new(),
                            dump_bytes_read: 0,
                            dump_bytes_total: 0,
                            built: false,
                        },
                        grant: new.grant_token.to_owned(),
                    },
                    expires: None,
                },
            );
            Begin {
                generation,
                joined: false,
                superseded,
                foreign: false,
            }
        };
        self.emit(id, "accepted").await?;
        Ok(begin)
    }

    async fn transfer(&self, id: &str) -> Result<Option<Transfer>, StateError> {
        let now = Instant::now();
        Ok(self.data().transfer(id, now).map(|t| t.transfer.clone()))
    }

    async fn transfer_grant(&self, id: &str) -> Result<Option<String>, StateError> {
        let now = Instant::now();
        Ok(self.data().transfer(id, now).map(|t| t.grant.clone()))
    }

    async fn transition(
        &self,
        id: &str,
        generation: u64,
        from: &[TransferState],
        to: TransferState,
        error: Option<&str>,
    ) -> Result<bool, StateError> {
        let moved = {
            let now = Instant::now();
            let mut data = self.data();
            let Some(stored) = data.transfers.get_mut(id).filter(|t| t.live(now)) else {
                return Ok(false);
            };
            let t = &mut stored.value.transfer;
            if t.generation != generation || !from.contains(&t.state) {
                return Ok(false);
            }
            let was_failed = t.state == TransferState::Failed;
            let from_entry = (t.state, stored.expires);
            t.state = to;
            t.updated_ms = now_ms();
            if let Some(e) = error.filter(|e| !e.is_empty()) {
                t.error = Some(e.to_owned());
            }
            if was_failed && !to.is_terminal() {
                // A failed generation taken up again (a replayed dead
                // letter): running work is persistent and has no error.
                t.error = None;
            }
            if to.is_terminal() {
                let at = now + self.finished_ttl;
                stored.expires = Some(at);
                data.expire_generation(id, generation, at);
            } else if was_failed {
                stored.expires = None;
                if let Some(g) = data.generations.get_mut(&(id.to_owned(), generation)) {
                    g.expires = None;
                }
            }
            let to_entry = (to, to.is_terminal().then(|| now + self.finished_ttl));
            data.index.reindex(id, Some(from_entry), to_entry);
            true
        };
        if moved {
            self.emit(id, to.as_str()).await?;
        }
        Ok(moved)
    }

    async fn processing_progress(
        &self,
        id: &str,
        generation: u64,
        read: u64,
        total: u64,
    ) -> Result<(), StateError> {
        {
            let now = Instant::now();
            let mut data = self.data();
            match data.transfer(id, now) {
                Some(t) if t.transfer.generation == generation => {
                    t.transfer.dump_bytes_read = read;
                    t.transfer.dump_bytes_total = total;
                }
                _ => return Ok(()),
            }
        }
        self.emit(id, "processing-progress").await
    }

    async fn add_note(&self, id: &str, generation: u64, note: &str) -> Result<(), StateError> {
        let now = Instant::now();
        if let Some(t) = self.data().transfer(id, now) {
            if t.transfer.generation == generation {
                t.transfer.notes.push(note.to_owned());
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
        {
            let now = Instant::now();
            let mut data = self.data();
            data.generation(id, generation, now).files =
                files.iter().map(|f| (f.name.clone(), f.clone())).collect();
            if let Some(t) = data.transfer(id, now) {
                t.transfer.files_total = files.len() as u64;
                t.transfer.bytes_total = files.iter().map(|f| f.size).sum();
                t.transfer.built = true;
            }
        }
        self.emit(id, "files").await
    }

    async fn add_files(
        &self,
        id: &str,
        generation: u64,
        files: &[FileRecord],
        complete: bool,
    ) -> Result<Added, StateError> {
        let queue = {
            let now = Instant::now();
            let mut data = self.data();
            // Accepted, processing or pushing: the generation still runs.
            match data.transfer(id, now) {
                Some(t)
                    if t.transfer.generation == generation && !t.transfer.state.is_terminal() => {}
                _ => return Ok(Added::Stale),
            }
            let g = data.generation(id, generation, now);
            for f in files {
                g.files.insert(f.name.clone(), f.clone());
            }
            let queue = g.queued_until.is_none_or(|until| until <= now);
            if queue {
                g.queued_until = Some(now + QUEUED_TTL);
            }
            let (count, bytes) = (g.files.len() as u64, g.files.values().map(|f| f.size).sum());
            if let Some(t) = data.transfer(id, now) {
                t.transfer.files_total = count;
                t.transfer.bytes_total = bytes;
                t.transfer.built |= complete;
                t.transfer.updated_ms = now_ms();
            }
            queue
        };
        self.emit(id, "files").await?;
        Ok(Added::Recorded { queue })
    }

    async fn files(&self, id: &str, generation: u64) -> Result<Vec<FileRecord>, StateError> {
        let now = Instant::now();
        let mut data = self.data();
        let g = data.generation(id, generation, now);
        Ok(g.files
            .values()
            .map(|f| FileRecord {
                offset: g.offsets.get(&f.name).copied().unwrap_or(0),
                ..f.clone()
            })
            .collect())
    }

    async fn commit_offset(
        &self,
        id: &str,
        generation: u64,
        file: &str,
        offset: u64,
    ) -> Result<Option<u64>, StateError> {
        let committed = {
            let now = Instant::now();
            let mut data = self.data();
            if data
                .transfer(id, now)
                .is_none_or(|t| t.transfer.generation != generation)
            {
                return Ok(None);
            }
            let g = data.generation(id, generation, now);
            let old = g.offsets.get(file).copied().unwrap_or(0);
            if offset > old {
                g.offsets.insert(file.to_owned(), offset);
                if let Some(t) = data.transfer(id, now) {
                    t.transfer.bytes_done += offset - old;
                    t.transfer.updated_ms = now_ms();
                }
                offset
            } else {
                old
            }
        };
        self.emit(id, "progress").await?;
        Ok(Some(committed))
    }

    async fn file_watch(&self, id: &str, generation: u64) -> Result<FileWatch, StateError> {
        let now = Instant::now();
        let mut data = self.data();
        let all_counted = match data.generations.get_mut(&(id.to_owned(), generation)) {
            Some(g) if g.live(now) => {
                g.value.queued_until = None;
                let g = &g.value;
                g.files.keys().all(|name| g.done.contains(name))
            }
            _ => true,
        };
        let fence = super::fence_key(id, generation, "");
        let pushing = data
            .values
            .iter()
            .any(|(key, entry)| entry.live(now) && key.starts_with(&fence));
        Ok(FileWatch {
            all_counted,
            pushing,
        })
    }

    async fn finish_file(&self, id: &str, generation: u64, file: &str) -> Result<bool, StateError> {
        let added = {
            let now = Instant::now();
            let mut data = self.data();
            // A late finish of a superseded generation must not count in
            // the new one.
            if data
                .transfer(id, now)
                .is_none_or(|t| t.transfer.generation != generation)
            {
                return Ok(false);
            }
            let added = data
                .generation(id, generation, now)
                .done
                .insert(file.to_owned());
            if added {
                if let Some(t) = data.transfer(id, now) {
                    t.transfer.files_done += 1;
                }
            }
            added
        };
        if added {
            self.emit(id, "file").await?;
        }
        Ok(added)
    }

    async fn restart_generation(
        &self,
        id: &str,
        generation: u64,
        note: &str,
    ) -> Result<Option<u64>, StateError> {
        let new = {
            let now = Instant::now();
            let mut data = self.data();
            let Some(stored) = data.transfer(id, now) else {
                return Ok(None);
            };
            let t = &mut stored.transfer;
            if t.generation != generation || t.state != TransferState::Pushing || !t.built {
                return Ok(None);
            }
            t.generation += 1;
            t.updated_ms = now_ms();
            t.files_done = 0;
            t.bytes_done = 0;
            t.error = None;
            t.notes.push(note.to_owned());
            let new = t.generation;
            let files = data.generation(id, generation, now).files.clone();
            if let Some(stored) = data.transfer(id, now) {
                stored.transfer.files_total = files.len() as u64;
                stored.transfer.bytes_total = files.values().map(|f| f.size).sum();
            }
            let next = data.generation(id, new, now);
            next.files = files;
            next.offsets.clear();
            next.done.clear();
            data.expire_generation(id, generation, now + self.finished_ttl);
            new
        };
        self.emit(id, "restarted").await?;
        Ok(Some(new))
    }

    async fn emit(&self, id: &str, kind: &str) -> Result<(), StateError> {
        let Some(transfer) = self.transfer(id).await? else {
            return Ok(());
        };
        self.events.send(
            id,
            TransferEvent {
                transfer,
                kind: kind.to_owned(),
            },
        );
        Ok(())
    }

    fn subscribe(&self, id: &str) -> Subscription {
        self.events.subscribe(id)
    }

    fn live_channels(&self) -> usize {
        self.events.live()
    }

    async fn count_by_state(&self) -> Result<HashMap<TransferState, u64>, StateError> {
        let now = Instant::now();
        Ok(self.data().index.counts(now))
    }
}
