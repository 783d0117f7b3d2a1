//! Protocol core of alias-bank.
//!
//! * [`anychain`] — the anychain value model, its JSON form and tokens, the
//!   fold (BLAKE2b-512 merkle hash, reference quirks included), ed25519
//!   signatures and the validator registry.
//! * [`alias`] — the Alias documents (client declaration, contract, grant,
//!   bindAuthz, revocation), their validators, hashes, scopes and push URLs.
//! * [`scope`] — scopes: the object form, the string grammar, predicates and
//!   field projection of JSON records.
//! * [`config`] — configuration of every binary (`ALIAS_*` variables).
//! * [`state`] — the coordination state in Redis.
//! * [`mq`] — the RabbitMQ topology, publishing and consuming.
//! * [`storage`] — resource storage (local directory or S3-compatible).
//! * [`jobs`] — the messages that travel on RabbitMQ (ids, never data).
//! * [`telemetry`] — logging set-up.
//! * [`worker`] — the supervised queue consumer both worker kinds run.
//! * [`js`] — the few JavaScript semantics the reference relies on
//!   (truthiness, loose equality, relational comparison, number formatting).

pub mod alias;
pub mod anychain;
pub mod archives;
pub mod config;
pub mod jobs;
pub mod js;
pub mod mq;
pub mod ops;
pub mod scope;
pub mod state;
pub mod storage;
pub mod telemetry;
pub mod worker;
