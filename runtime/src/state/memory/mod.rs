//! The in-process implementation of the typed stores for the embedded
//! mode: the same records and rules as the Redis one, each operation atomic
//! under one lock, with the same expiries. Nothing survives the process.
//! One file per store, as for Redis.

mod leases;
mod previews;
mod transfers;
mod users;
mod web;

use super::{
    Channels, ClientHealth, DumpRecord, FileRecord, GenerationMarks, Quotas, StateError,
    StateStore, Transfer, TransferState,
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
    /// Until when the queued flag is up (`TransferStore::add_files`).
    queued_until: Option<Instant>,
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
impl super::GrantStore for MemoryStore {}

#[async_trait::async_trait]
impl StateStore for MemoryStore {
    fn namespace(&self) -> &str {
        &self.ns
    }

    async fn ping(&self) -> bool {
        true
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
}

impl GenerationMarks for MemoryStore {}

impl ClientHealth for MemoryStore {}
