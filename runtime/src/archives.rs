//! The archives a transfer's generations are pushed from, and when their
//! storage is given back.
//!
//! A transfer holds at most one build (`archives:{id}` in the state): the
//! archives of one generation, under `transfers/{id}/{generation}/` in
//! resource storage, with the key of what they were built from (the grant
//! token and the dump set). A later generation with the same key (a
//! restart) reuses them; one with another key (a superseding grant, a
//! revocation) deletes them before building its own. The sweeper gives the
//! storage back when the transfer is cancelled or failed at once, and
//! `ALIAS_ARCHIVE_RETENTION_SECS` after it is done; it is driven by a
//! schedule in the state (no storage or keyspace scan). A build is recorded
//! before it reads any dump ([`Build::under_way`]) and again once finished.
//! Deleting a dump cancels the undelivered transfers built, or being built,
//! from it and deletes their archives.

use crate::state::{now_ms, FileRecord, State, StateError, TransferState, WebKey, WebList};
use crate::storage::{Storage, StorageError};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The schedule the sweeper reads: transfer ids holding a build.
pub const SCHEDULE: &str = "archives";
/// How long a build record is kept at most (a backstop behind the sweeper).
const RECORD_TTL: Duration = Duration::from_secs(60 * 24 * 3600);
/// Transfers with builds remembered per user (for dump deletions).
const PER_USER: usize = 1000;
/// Transfers handled per sweep.
const BATCH: usize = 100;

/// Why archives could not be recorded or given back.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The state failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// Resource storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The transfer's build record changed between each read and write
    /// tried (other writers kept racing this one); nothing was written.
    #[error("the build record of {0} kept changing under its writes")]
    Contended(String),
}

/// A transfer's build: where its archives are and what they came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Build {
    /// [`build_key`] of the grant and dumps.
    pub key: String,
    /// The generation that built them.
    pub generation: u64,
    /// Their storage prefix (`transfers/{id}/{generation}`).
    pub prefix: String,
    /// The user whose dumps they came from.
    pub user: String,
    /// Storage keys of the dumps read.
    pub dumps: Vec<String>,
    /// The archives (offsets zero).
    pub files: Vec<FileRecord>,
}

/// What a build is made of: the same key gives the same archives.
/// `dumps` are `(storage key, size, BLAKE2b)` of every dump read.
pub fn build_key(grant_token: &str, dumps: &[(&str, u64, &str)]) -> String {
    let mut h = blake2b_simd::Params::new().hash_length(32).to_state();
    h.update(b"alias-build-v1\0");
    h.update(&(grant_token.len() as u64).to_le_bytes());
    h.update(grant_token.as_bytes());
    let mut sorted = dumps.to_vec();
    sorted.sort();
    for (key, size, hash) in sorted {
        for part in [key.as_bytes(), &size.to_le_bytes(), hash.as_bytes()] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part);
        }
    }
    h.finalize().to_hex().to_string()
}

fn record_key(id: &str) -> WebKey<'_> {
    WebKey::Archives(id)
}

fn user_list(user: &str) -> WebList<'_> {
    WebList::ArchivesOf(user)
}

/// The transfer's build, if any.
pub async fn build_of(state: &State, id: &str) -> Result<Option<Build>, StateError> {
    Ok(state
        .kv_get(&record_key(id))
        .await?
        .and_then(|v| serde_json::from_str(&v).ok()))
}

/// The archives of the transfer's build when it was made from `key` and
/// every object is still stored at its size (offsets zero): a restart
/// pushes them again instead of building them again.
pub async fn reusable(
    state: &State,
    storage: &Storage,
    id: &str,
    key: &str,
) -> Result<Option<Vec<FileRecord>>, ArchiveError> {
    let Some(build) = build_of(state, id).await? else {
        return Ok(None);
    };
    if build.is_under_way() || build.key != key {
        return Ok(None);
    }
    for f in &build.files {
        match storage.head(&f.storage_key).await? {
            Some(info) if info.size == f.size => {}
            _ => return Ok(None),
        }
    }
    Ok(Some(
        build
            .files
            .into_iter()
            .map(|f| FileRecord {
                offset: 0,
                finished: false,
                ..f
            })
            .collect(),
    ))
}

impl Build {
    /// The record of a build under way, written before any dump is read:
    /// deleting one of `dumps` meanwhile finds it and cancels the transfer
    /// ([`dump_deleted`]), so that nothing built from a deleted dump is
    /// pushed. Its key is empty (no generation reuses an unfinished build)
    /// and it has no archives yet.
    pub fn under_way(generation: u64, prefix: String, user: String, dumps: Vec<String>) -> Build {
        Build {
            key: String::new(),
            generation,
            prefix,
            user,
            dumps,
            files: Vec::new(),
        }
    }

    /// Whether this is the record of a build still under way.
    pub fn is_under_way(&self) -> bool {
        self.key.is_empty()
    }
}

/// Records a new build of the transfer (replacing the record of an earlier
/// one, whose archives the caller deleted), remembers it among its user's
/// builds and schedules its first check.
pub async fn record_build(
    state: &State,
    id: &str,
    build: &Build,
    retention: Duration,
) -> Result<(), ArchiveError> {
    write_record(state, id, build, retention).await?;
    // Once per transfer, however often it is built (deliveries, restarts,
    // generations): the bound counts transfers, and a transfer built often
    // never pushes an older one out of reach of a dump or account deletion.
    state
        .list_push_unique(&user_list(&build.user), id, PER_USER)
        .await?;
    Ok(())
}

/// Replaces the record of a build under way ([`Build::under_way`], made by
/// [`record_build`]) with the finished one; false, writing nothing, when
/// that record is gone or another generation's (a deleted dump cancelled
/// the transfer, a newer generation began): the build is stale. A record
/// of the same generation already finished (another delivery of the same
/// job built the same archives) is written again.
///
/// The record is replaced only if it is still the one read (one atomic
/// compare and set): a newer generation recording its build between the
/// read and the write is never overwritten.
pub async fn complete_build(
    state: &State,
    id: &str,
    build: &Build,
    retention: Duration,
) -> Result<bool, ArchiveError> {
    let json = record_json(id, build)?;
    for _ in 0..RECORD_RACES {
        let Some(now) = ours(state, id, &build.prefix).await? else {
            return Ok(false);
        };
        if state
            .kv_replace(&record_key(id), &now, &json, Some(RECORD_TTL))
            .await?
        {
            schedule_check(state, id, retention).await?;
            return Ok(true);
        }
    }
    Err(record_kept_changing(id))
}

/// How many times a compare and set of a build record is tried when the
/// record changes between its read and its write.
const RECORD_RACES: usize = 8;

/// The text of the transfer's build record when it is the build under
/// `prefix`'s (under way or finished); `None` when there is none, or it is
/// another generation's.
async fn ours(state: &State, id: &str, prefix: &str) -> Result<Option<String>, StateError> {
    Ok(state
        .kv_get(&record_key(id))
        .await?
        .filter(|now| serde_json::from_str::<Build>(now).is_ok_and(|b| b.prefix == prefix)))
}

fn record_kept_changing(id: &str) -> ArchiveError {
    ArchiveError::Contended(id.to_owned())
}

fn record_json(id: &str, build: &Build) -> Result<String, StateError> {
    serde_json::to_string(build).map_err(|e| StateError::Corrupt {
        key: record_key(id).name(),
        reason: e.to_string(),
    })
}

async fn write_record(
    state: &State,
    id: &str,
    build: &Build,
    retention: Duration,
) -> Result<(), ArchiveError> {
    let json = record_json(id, build)?;
    state
        .kv_set(&record_key(id), &json, Some(RECORD_TTL))
        .await?;
    schedule_check(state, id, retention).await
}

async fn schedule_check(state: &State, id: &str, retention: Duration) -> Result<(), ArchiveError> {
    state
        .schedule(
            SCHEDULE,
            id,
            now_ms().saturating_add(millis(check_every(retention))),
        )
        .await?;
    Ok(())
}

/// Deletes the transfer's build (objects, then the record, unless a newer
/// build replaced it meanwhile); returns the objects deleted.
pub async fn drop_build(state: &State, storage: &Storage, id: &str) -> Result<usize, ArchiveError> {
    drop_build_except(state, storage, id, None).await
}

/// As [`drop_build`], but a build under way under `keep` (a generation's
/// own, whose earlier delivery was cut short: what it announced may be
/// being pushed) is left as it is.
pub async fn drop_build_except(
    state: &State,
    storage: &Storage,
    id: &str,
    keep: Option<&str>,
) -> Result<usize, ArchiveError> {
    match build_of(state, id).await? {
        Some(b) if b.is_under_way() && Some(b.prefix.as_str()) == keep => Ok(0),
        Some(b) => drop_build_at(state, storage, id, &b.prefix).await,
        None => Ok(0),
    }
}

/// Deletes the archives under `prefix` (one generation's build), and the
/// transfer's build record if it is theirs (a newer generation's is left
/// alone); returns the objects deleted.
pub async fn drop_build_at(
    state: &State,
    storage: &Storage,
    id: &str,
    prefix: &str,
) -> Result<usize, ArchiveError> {
    let n = storage.delete_prefix(prefix).await?;
    // Compare and delete: a newer build recorded between the read and the
    // deletion stays.
    let mut settled = false;
    for _ in 0..RECORD_RACES {
        settled = match ours(state, id, prefix).await? {
            Some(now) => state.kv_delete_if(&record_key(id), &now).await?,
            None => true,
        };
        if settled {
            break;
        }
    }
    if !settled {
        return Err(record_kept_changing(id));
    }
    if n > 0 {
        tracing::info!(transfer = %id, %prefix, objects = n, "archives deleted");
    }
    Ok(n)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// How often the sweeper looks at a transfer that is still running.
pub fn check_every(retention: Duration) -> Duration {
    retention.clamp(Duration::from_millis(100), Duration::from_secs(60))
}

/// One pass of the sweeper over the transfers due: archives of cancelled,
/// failed or forgotten transfers are deleted, those of done transfers once
/// `retention` has passed since they finished; running transfers are looked
/// at again later. Returns the objects deleted.
pub async fn sweep(
    state: &State,
    storage: &Storage,
    retention: Duration,
) -> Result<usize, ArchiveError> {
    let now = now_ms();
    let retention_ms = millis(retention);
    let mut deleted = 0;
    for id in state.due(SCHEDULE, now, BATCH).await? {
        if build_of(state, &id).await?.is_none() {
            state.unschedule(SCHEDULE, &id).await?;
            continue;
        }
        let gone = match state.transfer(&id).await? {
            None => true,
            Some(t) => match t.state {
                TransferState::Cancelled | TransferState::Failed => true,
                TransferState::Done => {
                    let due = t.updated_ms.saturating_add(retention_ms);
                    if due > now {
                        state.schedule(SCHEDULE, &id, due).await?;
                        continue;
                    }
                    true
                }
                _ => false,
            },
        };
        if gone {
            deleted += drop_build(state, storage, &id).await?;
            state.unschedule(SCHEDULE, &id).await?;
        } else {
            let next = now.saturating_add(millis(check_every(retention)));
            state.schedule(SCHEDULE, &id, next).await?;
        }
    }
    Ok(deleted)
}

/// After a user deleted the dump stored at `dump_key`: the transfers whose
/// build read it, or is reading it, and that are not done are cancelled and their archives
/// deleted (done ones were delivered; their archives go with the
/// retention). Returns the transfers concerned.
pub async fn dump_deleted(
    state: &State,
    storage: &Storage,
    user: &str,
    dump_key: &str,
) -> Result<Vec<String>, ArchiveError> {
    let mut ids = state.list_range(&user_list(user), PER_USER).await?;
    ids.sort();
    ids.dedup();
    let mut concerned = Vec::new();
    for id in ids {
        let Some(build) = build_of(state, &id).await? else {
            continue;
        };
        if build.user != user || !build.dumps.iter().any(|d| d == dump_key) {
            continue;
        }
        let done = matches!(state.transfer(&id).await?, Some(t) if t.state == TransferState::Done);
        if done {
            continue;
        }
        state
            .cancel(&id, "a dump it was built from was deleted")
            .await?;
        drop_build(state, storage, &id).await?;
        concerned.push(id);
    }
    Ok(concerned)
}

/// After a user deleted their account: every build of theirs is deleted
/// (objects and records) and their list of builds is forgotten. Returns the
/// objects deleted.
pub async fn user_deleted(
    state: &State,
    storage: &Storage,
    user: &str,
) -> Result<usize, ArchiveError> {
    let mut ids = state.list_range(&user_list(user), PER_USER).await?;
    ids.sort();
    ids.dedup();
    let mut deleted = 0;
    for id in ids {
        if build_of(state, &id).await?.is_some_and(|b| b.user == user) {
            deleted += drop_build(state, storage, &id).await?;
        }
    }
    let _existed = state.list_delete(&user_list(user)).await?;
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_keys_depend_on_grant_and_dumps_not_on_order() {
        let a = build_key("g", &[("dumps/u/a", 1, "h1"), ("dumps/u/b", 2, "h2")]);
        let b = build_key("g", &[("dumps/u/b", 2, "h2"), ("dumps/u/a", 1, "h1")]);
        assert_eq!(a, b);
        assert_ne!(
            a,
            build_key("g2", &[("dumps/u/a", 1, "h1"), ("dumps/u/b", 2, "h2")])
        );
        assert_ne!(
            a,
            build_key("g", &[("dumps/u/a", 1, "h3"), ("dumps/u/b", 2, "h2")])
        );
        assert_ne!(a, build_key("g", &[("dumps/u/a", 1, "h1")]));
    }

    async fn stored_build(state: &State, storage: &Storage, id: &str) -> String {
        let key = format!("transfers/{id}/1/a.zip");
        storage
            .put_bytes(&key, bytes::Bytes::from_static(b"abc"))
            .await
            .unwrap();
        let build = Build {
            key: "k".into(),
            generation: 1,
            prefix: format!("transfers/{id}/1"),
            user: "u".into(),
            dumps: vec!["dumps/u/google/x.zip".into()],
            files: Vec::new(),
        };
        record_build(state, id, &build, Duration::ZERO)
            .await
            .unwrap();
        key
    }

    #[tokio::test]
    async fn the_sweeper_keeps_running_and_recent_builds_and_deletes_the_rest() {
        let state = State::in_memory("sweep", Duration::from_secs(3600));
        let storage =
            Storage::from_url("memory://", &crate::storage::S3Settings::default()).unwrap();
        let hour = Duration::from_secs(3600);
        // A forgotten transfer: deleted at its first check.
        let orphan = stored_build(&state, &storage, "t1").await;
        state.schedule(SCHEDULE, "t1", 0).await.unwrap();
        assert_eq!(sweep(&state, &storage, hour).await.unwrap(), 1);
        assert!(storage.head(&orphan).await.unwrap().is_none());
        assert!(build_of(&state, "t1").await.unwrap().is_none());

        // A running transfer: kept, looked at again later.
        let new = crate::state::NewTransfer {
            grant_token: "g",
            grant_hash: "h",
            user: "u",
            push_url: "http://127.0.0.1:9/alias/push/t2",
            revoked: false,
        };
        let begun = state.begin_transfer("t2", &new).await.unwrap();
        let kept = stored_build(&state, &storage, "t2").await;
        state.schedule(SCHEDULE, "t2", 0).await.unwrap();
        assert_eq!(sweep(&state, &storage, hour).await.unwrap(), 0);
        assert!(storage.head(&kept).await.unwrap().is_some());
        assert!(state.due(SCHEDULE, now_ms(), 10).await.unwrap().is_empty());

        // Done: kept within the retention, deleted after it.
        assert!(state
            .transition(
                "t2",
                begun.generation,
                &[TransferState::Accepted],
                TransferState::Done,
                None
            )
            .await
            .unwrap());
        state.schedule(SCHEDULE, "t2", 0).await.unwrap();
        assert_eq!(sweep(&state, &storage, hour).await.unwrap(), 0);
        assert!(storage.head(&kept).await.unwrap().is_some());
        state.schedule(SCHEDULE, "t2", 0).await.unwrap();
        assert_eq!(sweep(&state, &storage, Duration::ZERO).await.unwrap(), 1);
        assert!(storage.head(&kept).await.unwrap().is_none());
        assert!(state.due(SCHEDULE, u64::MAX, 10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_build_under_way_is_found_by_a_dump_deletion_and_never_reused() {
        let state = State::in_memory("underway", Duration::from_secs(3600));
        let storage =
            Storage::from_url("memory://", &crate::storage::S3Settings::default()).unwrap();
        let new = crate::state::NewTransfer {
            grant_token: "g",
            grant_hash: "h",
            user: "u",
            push_url: "http://127.0.0.1:9/alias/push/t1",
            revoked: false,
        };
        let begun = state.begin_transfer("t1", &new).await.unwrap();
        let prefix = format!("transfers/t1/{}", begun.generation);
        let dump = "dumps/u/google/x.zip".to_owned();
        let under_way = Build::under_way(
            begun.generation,
            prefix.clone(),
            "u".into(),
            vec![dump.clone()],
        );
        record_build(&state, "t1", &under_way, Duration::ZERO)
            .await
            .unwrap();
        assert!(build_of(&state, "t1")
            .await
            .unwrap()
            .unwrap()
            .is_under_way());
        // No key matches a build under way.
        assert!(reusable(&state, &storage, "t1", "")
            .await
            .unwrap()
            .is_none());
        let finished = Build {
            key: "k".into(),
            ..under_way.clone()
        };
        assert!(complete_build(&state, "t1", &finished, Duration::ZERO)
            .await
            .unwrap());
        assert_eq!(
            build_of(&state, "t1").await.unwrap(),
            Some(finished.clone())
        );
        // Another delivery of the same generation finishing the same build.
        assert!(complete_build(&state, "t1", &finished, Duration::ZERO)
            .await
            .unwrap());
        // Another build's record (a newer generation's) is not replaced.
        let newer = Build::under_way(9, "transfers/t1/9".into(), "u".into(), vec![]);
        record_build(&state, "t1", &newer, Duration::ZERO)
            .await
            .unwrap();
        assert!(!complete_build(&state, "t1", &finished, Duration::ZERO)
            .await
            .unwrap());
        assert_eq!(build_of(&state, "t1").await.unwrap(), Some(newer));
        record_build(&state, "t1", &under_way, Duration::ZERO)
            .await
            .unwrap();

        // The dump deleted mid-build: the transfer is cancelled, what was
        // stored so far goes, and so does the record.
        let stored = format!("{prefix}/a.zip");
        storage
            .put_bytes(&stored, bytes::Bytes::from_static(b"abc"))
            .await
            .unwrap();
        assert_eq!(
            dump_deleted(&state, &storage, "u", &dump).await.unwrap(),
            ["t1"]
        );
        let t = state.transfer("t1").await.unwrap().unwrap();
        assert_eq!(t.state, TransferState::Cancelled);
        assert!(storage.head(&stored).await.unwrap().is_none());
        assert!(build_of(&state, "t1").await.unwrap().is_none());
        // The build's end finds its record gone: stale, nothing recorded.
        assert!(!complete_build(&state, "t1", &finished, Duration::ZERO)
            .await
            .unwrap());
        assert!(build_of(&state, "t1").await.unwrap().is_none());
    }

    /// A user's list of builds names each transfer once: one transfer built
    /// again and again (redeliveries, restarts, new generations) does not
    /// push an older transfer's build out of reach of a dump deletion.
    #[tokio::test]
    async fn a_transfer_built_again_and_again_leaves_older_builds_in_reach() {
        let state = State::in_memory("rebuilt", Duration::from_secs(3600));
        let storage =
            Storage::from_url("memory://", &crate::storage::S3Settings::default()).unwrap();
        let dump = "dumps/u/google/old.zip".to_owned();
        for id in ["t0", "t1"] {
            let new = crate::state::NewTransfer {
                grant_token: "g",
                grant_hash: "h",
                user: "u",
                push_url: "http://127.0.0.1:9/alias/push/t",
                revoked: false,
            };
            state.begin_transfer(id, &new).await.unwrap();
        }
        let old = Build::under_way(1, "transfers/t0/1".into(), "u".into(), vec![dump.clone()]);
        record_build(&state, "t0", &old, Duration::ZERO)
            .await
            .unwrap();
        for generation in 1..=(PER_USER as u64 + 1) {
            let again = Build::under_way(
                generation,
                format!("transfers/t1/{generation}"),
                "u".into(),
                vec!["dumps/u/google/new.zip".into()],
            );
            record_build(&state, "t1", &again, Duration::ZERO)
                .await
                .unwrap();
        }
        assert_eq!(
            dump_deleted(&state, &storage, "u", &dump).await.unwrap(),
            ["t0"],
            "the older transfer built from the deleted dump was out of reach"
        );
        let t = state.transfer("t0").await.unwrap().unwrap();
        assert_eq!(t.state, TransferState::Cancelled);
    }
}
