//! The runtime every role of alias-bank stands on: everything that touches
//! the world outside the process. The protocol itself lives in the
//! `protocol` crate and never depends on this one.
//!
//! * [`config`] — configuration of every binary (`ALIAS_*` variables).
//! * [`state`] — the coordination state in Redis.
//! * [`mq`] — the RabbitMQ topology, publishing and consuming.
//! * [`storage`] — resource storage (local directory or S3-compatible).
//! * [`archives`] — stored archives: reuse, retention and the sweeper.
//! * [`jobs`] — the messages that travel on RabbitMQ (ids, never data).
//! * [`telemetry`] — logging set-up.
//! * [`worker`] — the supervised queue consumer both worker kinds run.
//! * [`ops`] — the workers' operations server (health, metrics).

pub mod archives;
pub mod config;
pub mod jobs;
pub mod mq;
pub mod ops;
pub mod retry;
pub mod state;
pub mod storage;
pub mod telemetry;
pub mod worker;
