//! Integration tests of the runtime against the real RabbitMQ, Redis and
//! storage (one test binary, several modules).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod contract;
mod events;
mod intake;
mod mq;
mod mq_ha;
mod redis_ha;
mod redis_tls;
mod storage;
