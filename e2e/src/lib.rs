//! The kit of alias-bank's whole-bank tests (this crate's `tests/`): Alias
//! documents ([`docs`]), a data bank on its own namespace against the local
//! Redis and RabbitMQ, with real roles in this process or in child
//! processes and `alias-sink` clients ([`stack`]), and the user's web
//! session ([`web`]).
//!
//! A test kit: a setup that cannot be made fails the test that asked for
//! it, so the kit unwraps and asserts like the tests do.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod docs;
pub mod relay;
pub mod stack;
pub mod web;

pub use docs::*;
pub use relay::{Cut, Relay};
pub use stack::*;
pub use web::*;

/// The public origin of every test bank.
pub const ORIGIN: &str = "http://bank.test";
