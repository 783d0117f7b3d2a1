//! Integration tests of the processor crate (one test binary).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bombs;
mod extract;
mod html;
mod preview;
