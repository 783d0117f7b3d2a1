//! The push protocol client: what the pusher sends to a client's push
//! endpoint, and how it recovers.
//!
//! * [`PushClient`] — the requests of PROTOCOL.md Part 1 (start, chunk, file
//!   finish, transfer finish) and the `HEAD` offset query of the resume
//!   extension, with typed errors ([`PushError`]);
//! * [`Outcome`] — the retry decision, by status code and error kind;
//!   [`Delivery`] tells a chunk that may have been received from one that
//!   was not sent;
//! * [`Backoff`], [`RetryPolicy`], [`retry`] — exponential backoff with full
//!   jitter, bounded by attempts and total time, honouring `Retry-After`;
//!   [`Stop`] ends its waits when the worker stops;
//! * [`ChunkStreamer`] — one archive from resource storage, chunk by chunk,
//!   committing offsets and applying the Resume rule;
//! * [`SsrfGuard`] — the resolver that keeps pushes off private,
//!   loopback, link-local and other special addresses.
//!
//! A worker pushes a transfer with [`PushClient::start`], then
//! [`ChunkStreamer::push_file`] and [`PushClient::finish_file`] per archive,
//! then [`PushClient::finish_transfer`]; a [`StreamError::NeedsRestart`]
//! means a new generation, beginning with a new start request.

mod backoff;
mod error;
mod http;
mod retry_after;
mod ssrf;
mod stop;
mod stream;

pub use backoff::{retry, retry_while, Backoff, RetryError, RetryPolicy};
pub use error::{Delivery, Outcome, PermanentReason, PushError, RetryReason, TransportKind};
pub use http::{Ack, ClientConfig, PushClient, PushTarget, CHUNK_GRACE};
pub use retry_after::{parse_http_date, parse_retry_after};
pub use ssrf::{classify, AddrClass, Refused, SsrfGuard};
pub use stop::Stop;
pub use stream::{
    Abuse, ChunkStreamer, RestartReason, RunLimits, StreamError, Streamed, Upload,
    DEFAULT_CHUNK_SIZE,
};
