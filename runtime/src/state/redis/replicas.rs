//! Waiting for a replica before a job is acknowledged (Sentinel form).
//!
//! Redis replicates asynchronously: a primary lost in a failover takes its
//! last writes with it. A worker that acknowledged a job on the strength of
//! such a write (a file counted finished, an offset committed, the next
//! job's state) would leave the transfer with no job to finish it. So
//! before a job is settled, [`ReplicaBarrier::wait`] makes sure every write
//! the process made so far is on a replica.
//!
//! Replication is one ordered stream: once a replica has acknowledged a
//! write made after ours, it holds ours too. The barrier writes one small
//! key on its own connection and `WAIT`s for a replica there (a `WAIT`
//! blocks its connection, so the shared one is never held). Callers that
//! arrive while a wait is under way share the next one: under load, one
//! `WAIT` covers many jobs.

use super::conn::Conn;
use crate::state::StateError;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::Mutex;

/// How long one wait gives a replica to confirm (ms).
pub(super) const SETTLE_WAIT_MS: u64 = 1000;

/// The barrier of one store (clones share it).
pub(super) struct ReplicaBarrier {
    conn: Conn,
    key: String,
    /// Waits started so far (only ever changed with `last` held).
    started: AtomicU64,
    /// The number of the last finished wait and what it found.
    last: Mutex<(u64, bool)>,
}

impl ReplicaBarrier {
    /// A barrier writing `key` on `conn`.
    pub(super) fn new(conn: Conn, key: String) -> ReplicaBarrier {
        ReplicaBarrier {
            conn,
            key,
            started: AtomicU64::new(0),
            last: Mutex::new((0, true)),
        }
    }

    /// Waits until the writes this process made before the call are on a
    /// replica: `Ok(true)` when one confirmed, `Ok(false)` when none did in
    /// [`SETTLE_WAIT_MS`] (the primary runs without a replica in sync).
    pub(super) async fn wait(&self) -> Result<bool, StateError> {
        let arrived = self.started.load(Ordering::SeqCst);
        let mut last = self.last.lock().await;
        if last.0 > arrived {
            // A wait that started after this call's writes has finished.
            return Ok(last.1);
        }
        let number = self.started.fetch_add(1, Ordering::SeqCst) + 1;
        let mut conn = self.conn.clone();
        let (acked,): (u64,) = redis::pipe()
            .cmd("SET")
            .arg(&self.key)
            .arg(number)
            .arg("PX")
            .arg(60_000)
            .ignore()
            .cmd("WAIT")
            .arg(1)
            .arg(SETTLE_WAIT_MS)
            .query_async(&mut conn)
            .await?;
        *last = (number, acked > 0);
        Ok(acked > 0)
    }
}
