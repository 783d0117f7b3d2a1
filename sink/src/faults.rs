//! Fault injection: switches that make the sink misbehave the ways real
//! receivers do, so senders can be tested against them.

use serde::{Deserialize, Serialize};

/// The fault switches of a running sink.
///
/// They apply to protocol requests only (everything under the base path),
/// never to the status page or to `/sink/faults`. Setting new faults (at
/// start, with [`crate::SinkHandle::set_faults`] or `POST /sink/faults`)
/// restarts the "every Nth" counts. The JSON form uses the field names and
/// accepts a subset (missing fields are off); unknown fields are refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Answer every Nth protocol request (start, chunk, `HEAD`, finish) with
    /// `503`, before doing anything; `0` never.
    pub fail_every: u64,
    /// Seconds sent in a `Retry-After` header with those `503` answers.
    pub retry_after: Option<u64>,
    /// Wait this many milliseconds before each protocol answer.
    pub delay_ms: u64,
    /// Close the connection without any answer on every Nth accepted chunk,
    /// after its bytes are written (the sender cannot know they were kept);
    /// `0` never.
    pub drop_every: u64,
    /// Answer `500` to every protocol request (a dead client).
    pub dead: bool,
    /// Behave like the reference client (alias-js `aliasClient.js`): no
    /// `HEAD` (404), every chunk appended whatever its offset, `500` for a
    /// missing `Range`, a tampered grant or a chunk before any start, and
    /// finish requests accepted without any check.
    pub reference_mode: bool,
}

impl Faults {
    /// No fault at all: a well-behaved receiver.
    pub fn none() -> Self {
        Self::default()
    }

    /// The reference client's behaviour, without other faults.
    pub fn reference() -> Self {
        Self {
            reference_mode: true,
            ..Self::default()
        }
    }
}
