//! The adversarial suite: each attack listed in SECURITY.md, performed
//! through the real services (gateway, processor and pusher libraries, an
//! `alias-sink` as the client) against the local Redis and RabbitMQ, and
//! shown refused: nothing pushed, nothing changed for the victim, memory
//! flat. Each test runs on its own namespace, so they run in parallel.
//!
//! The fixtures are the kit's (`e2e`): a bank on its own namespace,
//! clients, users with dumps, documents.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod consent;
mod dumps;
mod hostile_clients;
mod isolation;
mod logins;
mod quotas;
mod storage;
mod visibility;
