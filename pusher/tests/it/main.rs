//! Pusher integration tests: the push client against a real in-process
//! `alias-sink` with fault switches.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod client;
mod drain;
mod restart;
mod ssrf;
