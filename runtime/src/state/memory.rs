//! The in-process implementation of [`StateStore`] for the embedded mode:
//! the same records and rules as the Redis one, each operation atomic under
//! one lock, with the same expiries. Nothing survives the process.

use super::{
    now_ms, Begin, Channels, DumpRecord, FileRecord, NewTransfer, Quotas, StateError, StateStore,
    Subscription, Transfer, TransferEvent, TransferState,
};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How often expired records are swept (they are also ignored on read).
const SWEEP_EVERY: Duration = Duration::from_secs(30);

struct Timed<T> {
    value: T,
    expires: Option<Instant>,
}

impl<T> Timed<T> {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|at| at > now)
    }
}

struct StoredTransfer {
    transfer: Transfer,
    grant: String,
}

#[derive(Default)]
struct Generation {
    files: BTreeMap<String, FileRecord>,
    offsets: HashMap<String, u64>,
    done: HashSet<String>,
}

#[derive(Default)]
struct User {
    contracts: HashMap<String, String>,
    dates: HashMap<String, f64>,
    history: VecDeque<String>,
    bind: Option<String>,
    dumps: BTreeMap<String, DumpRecord>,
    /// Has an account or a dump: the records never expire.
    durable: bool,
    /// When a guest's records expire.
    expires: Option<Instant>,
}

impl User {
    fn live(&self, now: Instant) -> bool {
        self.expires.is_none_or(|at| at > now)
    }

    /// After a change: a guest's records live `ttl` more; a user holding a
    /// dump becomes durable.
    fn touch(&mut self, now: Instant, ttl: Duration) {
        if !self.dumps.is_empty() {
            self.durable = true;
        }
        self.expires = (!self.durable).then(|| now + ttl);
    }
}

/// Transfers by state, as the Redis indexes keep them: running ones in a
/// set, finished ones ordered by expiry (pruned when counted).
#[derive(Default)]
struct StateIndex {
    running: HashMap<TransferState, HashSet<String>>,
    finished: HashMap<TransferState, BTreeSet<(Instant, String)>>,
}

/// A transfer's place in the index: its state and, when finished, expiry.
type Entry = (TransferState, Option<Instant>);

impl StateIndex {
    fn reindex(&mut self, id: &str, from: Option<Entry>, to: Entry) {
        match from {
            Some((state, Some(at))) => {
                if let Some(set) = self.finished.get_mut(&state) {
                    set.remove(&(at, id.to_owned()));
                }
            }
            Some((state, None)) => {
                if let Some(set) = self.running.get_mut(&state) {
                    set.remove(id);
                }
            }
            None => {}
        }
        match to {
            (state, Some(at)) => {
                self.finished
                    .entry(state)
                    .or_default()
                    .insert((at, id.to_owned()));
            }
            (state, None) => {
                self.running.entry(state).or_default().insert(id.to_owned());
            }
        }
    }

    fn counts(&mut self, now: Instant) -> HashMap<TransferState, u64> {
        let mut out = HashMap::new();
        for (state, set) in &self.running {
            if !set.is_empty() {
                out.insert(*state, set.len() as u64);
            }
        }
        for (state, set) in &mut self.finished {
            while set.first().is_some_and(|(at, _)| *at <= now) {
                set.pop_first();
            }
            if !set.is_empty() {
                out.insert(*state, set.len() as u64);
            }
        }
        out
    }
}

struct Data {
    index: StateIndex,
    transfers: HashMap<String, Timed<StoredTransfer>>,
    generations: HashMap<(String, u64), Timed<Generation>>,
    users: HashMap<String, User>,
    /// Flags, single-use ids, counters, leases and `kv:` values, by key.
    values: HashMap<String, Timed<String>>,
    lists: HashMap<String, VecDeque<String>>,
    /// Schedules: name → member → due (ms since the epoch).
    schedules: HashMap<String, HashMap<String, u64>>,
    swept: Instant,
}

impl Data {
    fn sweep(&mut self, now: Instant) {
        if now.duration_since(self.swept) < SWEEP_EVERY {
            return;
        }
        self.swept = now;
        self.transfers.retain(|_, t| t.live(now));
        self.generations.retain(|_, g| g.live(now));
        self.values.retain(|_, v| v.live(now));
        self.users.retain(|_, u| u.live(now));
    }

    /// The user's records for a change (a guest's expired records are gone).
    fn user_mut(&mut self, user: &str, now: Instant) -> &mut User {
        if self.users.get(user).is_some_and(|u| !u.live(now)) {
            self.users.remove(user);
        }
        self.users.entry(user.to_owned()).or_default()
    }

    fn transfer(&mut self, id: &str, now: Instant) -> Option<&mut StoredTransfer> {
        if self.transfers.get(id).is_some_and(|t| !t.live(now)) {
            self.transfers.remove(id);
        }
        self.transfers.get_mut(id).map(|t| &mut t.value)
    }

    fn generation(&mut self, id: &str, generation: u64, now: Instant) -> &mut Generation {
        let key = (id.to_owned(), generation);
        if self.generations.get(&key).is_some_and(|g| !g.live(now)) {
            self.generations.remove(&key);
        }
        &mut self
            .generations
            .entry(key)
            .or_insert_with(|| Timed {
                value: Generation::default(),
                expires: None,
            })
            .value
    }

    fn expire_generation(&mut self, id: &str, generation: u64, at: Instant) {
        if let Some(g) = self.generations.get_mut(&(id.to_owned(), generation)) {
            g.expires = Some(at);
        }
    }

    fn value(&mut self, key: &str, now: Instant) -> Option<&mut Timed<String>> {
        if self.values.get(key).is_some_and(|v| !v.live(now)) {
            self.values.remove(key);
        }
        self.values.get_mut(key)
    }

    fn set_nx(&mut self, key: &str, value: String, ttl: Option<Duration>, now: Instant) -> bool {
        if self.value(key, now).is_some() {
            return false;
        }
        self.values.insert(
            key.to_owned(),
            Timed {
                value,
                expires: ttl.map(|t| now + t),
            },
        );
        true
    }
}

/// The key of a fence registration (see [`StateStore::enter_fence`]).
fn fence_key(id: &str, generation: u64, holder: &str) -> String {
    format!("fence:{id}:{generation}:{holder}")
}

/// The in-process state of one namespace (cheap to clone).
#[derive(Clone)]
pub struct MemoryStore {
    ns: Arc<str>,
    finished_ttl: Duration,
    quotas: Quotas,
    data: Arc<Mutex<Data>>,
    events: Channels,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").field("ns", &self.ns).finish()
    }
}

impl MemoryStore {
    /// An empty state; finished transfers are kept `finished_ttl`.
    pub fn new(namespace: &str, finished_ttl: Duration) -> MemoryStore {
        MemoryStore {
            ns: Arc::from(namespace),
            finished_ttl: finished_ttl.max(Duration::from_secs(1)),
            quotas: Quotas::DEFAULT,
            data: Arc::new(Mutex::new(Data {
                transfers: HashMap::new(),
                generations: HashMap::new(),
                users: HashMap::new(),
                values: HashMap::new(),
                lists: HashMap::new(),
                schedules: HashMap::new(),
                index: StateIndex::default(),
                swept: Instant::now(),
            })),
            events: Channels::new(),
        }
    }

    /// The same store with these per-user quotas.
    #[must_use]
    pub fn with_quotas(mut self, quotas: Quotas) -> MemoryStore {
        self.quotas = quotas;
        self
    }

    /// Locks the data (a poisoned lock is still consistent: every change is
    /// made before anything that could panic).
    fn data(&self) -> MutexGuard<'_, Data> {
        let mut data = self.data.lock().unwrap_or_else(PoisonError::into_inner);
        data.sweep(Instant::now());
        data
    }

    fn with_user<T>(&self, user: &str, f: impl FnOnce(&User) -> T) -> T {
        let data = self.data();
        match data.users.get(user).filter(|u| u.live(Instant::now())) {
            Some(u) => f(u),
            None => f(&User::default()),
        }
    }
}

#[async_trait::async_trait]
impl StateStore for MemoryStore {
    fn namespace(&self) -> &str {
        &self.ns
    }

    async fn ping(&self) -> bool {
        true
    }

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

    async fn keep_user(&self, user: &str) -> Result<(), StateError> {
        let now = Instant::now();
        let mut data = self.data();
        let u = data.user_mut(user, now);
        u.durable = true;
        u.expires = None;
        Ok(())
    }

    async fn binding(&self, user: &str) -> Result<Option<String>, StateError> {
        Ok(self.with_user(user, |u| u.bind.clone()))
    }

    async fn is_known_user(&self, user: &str) -> Result<bool, StateError> {
        Ok(self.with_user(user, |u| u.bind.is_some() || !u.dumps.is_empty()))
    }

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
            }
        }
        self.emit(id, "files").await
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
            if t.generation != generation || t.state.is_terminal() {
                return Ok(None);
            }
            let from_entry = (t.state, None);
            t.generation += 1;
            t.state = TransferState::Accepted;
            t.updated_ms = now_ms();
            t.files_total = 0;
            t.files_done = 0;
            t.bytes_total = 0;
            t.bytes_done = 0;
            t.error = None;
            t.notes.push(note.to_owned());
            let new = t.generation;
            data.index
                .reindex(id, Some(from_entry), (TransferState::Accepted, None));
            data.expire_generation(id, generation, now + self.finished_ttl);
            new
        };
        self.emit(id, "restarted").await?;
        Ok(Some(new))
    }

    async fn flag(&self, name: &str) -> Result<bool, StateError> {
        let now = Instant::now();
        Ok(self.data().value(&format!("flag:{name}"), now).is_some())
    }

    async fn set_flag(&self, name: &str, ttl: Duration) -> Result<bool, StateError> {
        let now = Instant::now();
        Ok(self
            .data()
            .set_nx(&format!("flag:{name}"), "1".into(), Some(ttl), now))
    }

    async fn first_seen(&self, name: &str, ttl: Duration) -> Result<u64, StateError> {
        let now = Instant::now();
        let mut data = self.data();
        let key = format!("seen:{name}");
        data.set_nx(&key, now_ms().to_string(), Some(ttl), now);
        Ok(data
            .value(&key, now)
            .and_then(|v| v.value.parse().ok())
            .unwrap_or_else(now_ms))
    }

    async fn forget_first_seen(&self, name: &str) -> Result<(), StateError> {
        self.data().values.remove(&format!("seen:{name}"));
        Ok(())
    }

    async fn clear_flag(&self, name: &str) -> Result<(), StateError> {
        self.data().values.remove(&format!("flag:{name}"));
        Ok(())
    }

    async fn count(&self, name: &str, window: Duration) -> Result<u64, StateError> {
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

    async fn counted(&self, name: &str) -> Result<u64, StateError> {
        let now = Instant::now();
        Ok(self
            .data()
            .value(&format!("count:{name}"), now)
            .and_then(|v| v.value.parse().ok())
            .unwrap_or(0))
    }

    async fn reset_count(&self, name: &str) -> Result<(), StateError> {
        self.data().values.remove(&format!("count:{name}"));
        Ok(())
    }

    async fn client_success(&self, domain: &str) -> Result<(), StateError> {
        self.data()
            .values
            .remove(&format!("count:client:{domain}:failures"));
        Ok(())
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

    async fn acquire_lease(
        &self,
        name: &str,
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
        name: &str,
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

    async fn release_lease(&self, name: &str, holder: &str) -> Result<bool, StateError> {
        let now = Instant::now();
        let mut data = self.data();
        let key = format!("lease:{name}");
        if data.value(&key, now).is_some_and(|l| l.value == holder) {
            data.values.remove(&key);
            return Ok(true);
        }
        Ok(false)
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

    async fn purge_namespace(&self) -> Result<(), StateError> {
        let mut data = self.data();
        data.transfers.clear();
        data.index = StateIndex::default();
        data.generations.clear();
        data.users.clear();
        data.values.clear();
        data.lists.clear();
        data.schedules.clear();
        Ok(())
    }

    async fn kv_get(&self, key: &str) -> Result<Option<String>, StateError> {
        let now = Instant::now();
        Ok(self
            .data()
            .value(&format!("kv:{key}"), now)
            .map(|v| v.value.clone()))
    }

    async fn kv_set(
        &self,
        key: &str,
        value: &str,
        ttl: Option<Duration>,
    ) -> Result<(), StateError> {
        let now = Instant::now();
        self.data().values.insert(
            format!("kv:{key}"),
            Timed {
                value: value.to_owned(),
                expires: ttl.map(|t| now + t),
            },
        );
        Ok(())
    }

    async fn kv_set_nx(
        &self,
        key: &str,
        value: &str,
        ttl: Option<Duration>,
    ) -> Result<bool, StateError> {
        let now = Instant::now();
        Ok(self
            .data()
            .set_nx(&format!("kv:{key}"), value.to_owned(), ttl, now))
    }

    async fn kv_take(&self, key: &str) -> Result<Option<String>, StateError> {
        let now = Instant::now();
        let mut data = self.data();
        let key = format!("kv:{key}");
        let live = data.value(&key, now).is_some();
        Ok(if live {
            data.values.remove(&key).map(|v| v.value)
        } else {
            None
        })
    }

    async fn kv_delete(&self, key: &str) -> Result<bool, StateError> {
        let now = Instant::now();
        let mut data = self.data();
        let key = format!("kv:{key}");
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

    async fn list_push(&self, key: &str, value: &str, keep: usize) -> Result<(), StateError> {
        let mut data = self.data();
        let list = data.lists.entry(key.to_owned()).or_default();
        list.push_front(value.to_owned());
        list.truncate(keep.max(1));
        Ok(())
    }

    async fn list_range(&self, key: &str, limit: usize) -> Result<Vec<String>, StateError> {
        Ok(self
            .data()
            .lists
            .get(key)
            .map(|l| l.iter().take(limit).cloned().collect())
            .unwrap_or_default())
    }
}
