//! The health of the clients the pusher talks to: consecutive failures, the
//! circuit breaker, and restarts forced per client. A client is named by its
//! signing key or by the registrable domain of its push URL
//! ([`ClientName`]). In Redis: `count:client:{name}:failures`,
//! `flag:breaker:{name}`, `count:restarts:client:{key}` and
//! `count:restarts:host:{domain}` (`{name}` is `key:{key}` or
//! `dom:{domain}`).

use super::keys::{Key, Primitives};
use super::StateError;
use std::time::Duration;

/// Who a client is, for its slots, its breaker and its counters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClientName {
    /// The client declaration's signing key (URL-safe base64).
    Key(String),
    /// The registrable domain of the push URL.
    Domain(String),
}

impl std::fmt::Display for ClientName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientName::Key(key) => write!(f, "key:{key}"),
            ClientName::Domain(domain) => write!(f, "dom:{domain}"),
        }
    }
}

fn failures(client: &ClientName) -> Key {
    Key::new(format!("client:{client}:failures"))
}

fn breaker(client: &ClientName) -> Key {
    Key::new(format!("breaker:{client}"))
}

/// Client failures, breakers and restarts, written once over the store's
/// primitives (`Primitives`).
#[async_trait::async_trait]
pub trait ClientHealth: Primitives {
    /// Counts one more consecutive failure of a client (kept `window`);
    /// returns the count.
    async fn client_failure(
        &self,
        client: &ClientName,
        window: Duration,
    ) -> Result<u64, StateError> {
        self.raw_count(&failures(client), window).await
    }

    /// Forgets a client's failures (it answered).
    async fn client_success(&self, client: &ClientName) -> Result<(), StateError> {
        self.raw_reset_count(&failures(client)).await
    }

    /// Whether the client's breaker is open (it is held back).
    async fn breaker_open(&self, client: &ClientName) -> Result<bool, StateError> {
        self.raw_flag(&breaker(client)).await
    }

    /// Opens the client's breaker for `cooldown`; false when it was open.
    async fn open_breaker(
        &self,
        client: &ClientName,
        cooldown: Duration,
    ) -> Result<bool, StateError> {
        self.raw_set_flag(&breaker(client), cooldown).await
    }

    /// Closes the client's breaker.
    async fn close_breaker(&self, client: &ClientName) -> Result<(), StateError> {
        self.raw_clear_flag(&breaker(client)).await
    }

    /// Counts one more restart forced by the client (kept `window`);
    /// returns the count.
    async fn client_restart(
        &self,
        client: &ClientName,
        window: Duration,
    ) -> Result<u64, StateError> {
        let key = match client {
            ClientName::Key(key) => format!("restarts:client:{key}"),
            ClientName::Domain(domain) => format!("restarts:host:{domain}"),
        };
        self.raw_count(&Key::new(key), window).await
    }
}
