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
//!
//! When no replica confirms, the primary's `ROLE` (sent in the same
//! pipeline) tells whether any replica is connected at all: a primary
//! alone (after a failover, until the old primary returns as a replica)
//! has no copy to wait for and no replica to be replaced by, so its
//! writes stand ([`Settled::Alone`]); a connected replica that did not
//! confirm could be promoted without them ([`Settled::Unconfirmed`]).

use super::conn::Conn;
use crate::state::{Settled, StateError};
use redis::Value;
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
    last: Mutex<(u64, Settled)>,
}

impl ReplicaBarrier {
    /// A barrier writing `key` on `conn`.
    pub(super) fn new(conn: Conn, key: String) -> ReplicaBarrier {
        ReplicaBarrier {
            conn,
            key,
            started: AtomicU64::new(0),
            last: Mutex::new((0, Settled::Replicated)),
        }
    }

    /// Waits until the writes this process made before the call are on a
    /// replica: [`Settled::Replicated`] when one confirmed in
    /// [`SETTLE_WAIT_MS`], otherwise whether the primary is alone.
    pub(super) async fn wait(&self) -> Result<Settled, StateError> {
        let arrived = self.started.load(Ordering::SeqCst);
        let mut last = self.last.lock().await;
        if last.0 > arrived {
            // A wait that started after this call's writes has finished.
            return Ok(last.1);
        }
        let number = self.started.fetch_add(1, Ordering::SeqCst) + 1;
        let mut conn = self.conn.clone();
        let (acked, role): (u64, Value) = redis::pipe()
            .cmd("SET")
            .arg(&self.key)
            .arg(number)
            .arg("PX")
            .arg(60_000)
            .ignore()
            .cmd("WAIT")
            .arg(1)
            .arg(SETTLE_WAIT_MS)
            .cmd("ROLE")
            .query_async(&mut conn)
            .await?;
        let found = settled(acked, &role);
        *last = (number, found);
        Ok(found)
    }
}

/// What a `WAIT 1` answered `acked` and the `ROLE` sent after it mean.
pub(super) fn settled(acked: u64, role: &Value) -> Settled {
    if acked > 0 {
        Settled::Replicated
    } else if connected_replicas(role) == Some(0) {
        Settled::Alone
    } else {
        Settled::Unconfirmed
    }
}

/// The replicas a primary's `ROLE` answer lists (`["master", offset,
/// [[ip, port, offset], …]]`); `None` for any other answer.
fn connected_replicas(role: &Value) -> Option<usize> {
    let Value::Array(parts) = role else {
        return None;
    };
    match (parts.first(), parts.get(2)) {
        (Some(Value::BulkString(kind)), Some(Value::Array(replicas))) if kind == b"master" => {
            Some(replicas.len())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(kind: &str, replicas: usize) -> Value {
        let replica = Value::Array(vec![
            Value::BulkString(b"10.0.0.2".to_vec()),
            Value::BulkString(b"6379".to_vec()),
            Value::BulkString(b"42".to_vec()),
        ]);
        Value::Array(vec![
            Value::BulkString(kind.as_bytes().to_vec()),
            Value::Int(42),
            Value::Array(vec![replica; replicas]),
        ])
    }

    #[test]
    fn a_primary_without_replicas_is_alone() {
        assert_eq!(settled(1, &role("master", 1)), Settled::Replicated);
        assert_eq!(settled(0, &role("master", 0)), Settled::Alone);
        assert_eq!(settled(0, &role("master", 2)), Settled::Unconfirmed);
        // Anything but a primary's answer is never taken for "alone".
        assert_eq!(settled(0, &role("slave", 0)), Settled::Unconfirmed);
        assert_eq!(settled(0, &Value::Nil), Settled::Unconfirmed);
    }
}
