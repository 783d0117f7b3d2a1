//! The web side's small records: key-value entries (accounts, sessions,
//! challenges, capabilities), capped lists, time-ordered schedules (also
//! the archive sweeper's) and attempt counters, each named by what it
//! holds — [`WebKey`], [`WebList`], [`WebCounter`] — so no caller formats
//! a key. In Redis they live at `{ns}:kv:{name}`, `{ns}:list:{name}`,
//! `{ns}:schedule:{name}` and `{ns}:count:{name}`; the names below are the
//! layout (unchanged from when the gateway wrote them out, so stored
//! records stay readable). The counters start with `web:`, which keeps
//! them apart from the counters of the typed stores in the same `count:`
//! space.

use super::keys::{Key, Primitives};
use super::StateError;
use std::time::Duration;

/// A key-value entry of the web side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebKey<'a> {
    /// `web:account:{username}`: the account record of a username.
    Account(&'a str),
    /// `web:user:{pk}`: the username of a public key.
    UserOfKey(&'a str),
    /// `web:session:{id}`: who is logged in with a session id.
    Session(&'a str),
    /// `web:challenge:{challenge}`: a login challenge and its purpose.
    Challenge(&'a str),
    /// `web:authreq:{id}`: a shown authorization request awaiting an answer.
    AuthRequest(&'a str),
    /// `web:client:{pk}:{client}`: the contract a client last showed a user.
    ClientContract {
        /// The user's public key.
        pk: &'a str,
        /// The client's id.
        client: &'a str,
    },
    /// `web:reexport:{pk}:{contract}`: the re-export switch of a grant.
    Reexport {
        /// The user's public key.
        pk: &'a str,
        /// The contract hash.
        contract: &'a str,
    },
    /// `web:delivered:{pk}:{contract}`: what a client had received when
    /// the user withdrew.
    Delivered {
        /// The user's public key.
        pk: &'a str,
        /// The contract hash.
        contract: &'a str,
    },
    /// `web:device:{username}:{device}`: a browser that logged in before.
    Device {
        /// The account name.
        username: &'a str,
        /// The device id of its cookie.
        device: &'a str,
    },
    /// `transfer-of:{user}:{contract}`: with grant-hash ids, the id a
    /// user's data for a contract was pushed to.
    PushedTo {
        /// The user's public key.
        user: &'a str,
        /// The contract hash.
        contract: &'a str,
    },
    /// `transfer-access:{id}:{hash}`: a capability to read a transfer.
    TransferAccess {
        /// The transfer id.
        id: &'a str,
        /// The capability's hash.
        hash: &'a str,
    },
    /// `archives:{id}`: the archive build record of a transfer.
    Archives(&'a str),
}

impl WebKey<'_> {
    /// The entry's name under `kv:` (only backends read it).
    pub(crate) fn name(&self) -> String {
        match self {
            WebKey::Account(u) => format!("web:account:{u}"),
            WebKey::UserOfKey(pk) => format!("web:user:{pk}"),
            WebKey::Session(id) => format!("web:session:{id}"),
            WebKey::Challenge(c) => format!("web:challenge:{c}"),
            WebKey::AuthRequest(id) => format!("web:authreq:{id}"),
            WebKey::ClientContract { pk, client } => format!("web:client:{pk}:{client}"),
            WebKey::Reexport { pk, contract } => format!("web:reexport:{pk}:{contract}"),
            WebKey::Delivered { pk, contract } => format!("web:delivered:{pk}:{contract}"),
            WebKey::Device { username, device } => format!("web:device:{username}:{device}"),
            WebKey::PushedTo { user, contract } => format!("transfer-of:{user}:{contract}"),
            WebKey::TransferAccess { id, hash } => format!("transfer-access:{id}:{hash}"),
            WebKey::Archives(id) => format!("archives:{id}"),
        }
    }
}

/// A capped list of the web side, newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebList<'a> {
    /// `web:history:{pk}`: the user's history of grants and transfers.
    History(&'a str),
    /// `web:sessions:{pk}`: the session ids a user logged in with (to end
    /// them all).
    Sessions(&'a str),
    /// `web:devices:{username}`: the known devices of an account.
    Devices(&'a str),
    /// `archives-of:{user}`: the archive builds of a user.
    ArchivesOf(&'a str),
}

impl WebList<'_> {
    /// The list's name under `list:` (only backends read it).
    pub(crate) fn name(&self) -> String {
        match self {
            WebList::History(pk) => format!("web:history:{pk}"),
            WebList::Sessions(pk) => format!("web:sessions:{pk}"),
            WebList::Devices(u) => format!("web:devices:{u}"),
            WebList::ArchivesOf(user) => format!("archives-of:{user}"),
        }
    }
}

/// An attempt counter of the login throttle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebCounter<'a> {
    /// `web:attempts:ip:{address}`: login and signup attempts of an address.
    Attempts(&'a str),
    /// `web:fail:user:{username}`: failed logins of a username.
    UserFailures(&'a str),
    /// `web:fail:addr:{address}:{username}`: failed logins of a username
    /// from an address.
    AddressFailures {
        /// The client address.
        address: &'a str,
        /// The account name.
        username: &'a str,
    },
    /// `web:fail:device:{device}:{username}`: failed logins of a username
    /// from a known device.
    DeviceFailures {
        /// The device id.
        device: &'a str,
        /// The account name.
        username: &'a str,
    },
}

impl WebCounter<'_> {
    fn key(&self) -> Key {
        Key::new(match self {
            WebCounter::Attempts(a) => format!("web:attempts:ip:{a}"),
            WebCounter::UserFailures(u) => format!("web:fail:user:{u}"),
            WebCounter::AddressFailures { address, username } => {
                format!("web:fail:addr:{address}:{username}")
            }
            WebCounter::DeviceFailures { device, username } => {
                format!("web:fail:device:{device}:{username}")
            }
        })
    }
}

/// The web side's records (see the module documentation).
#[async_trait::async_trait]
pub trait WebStore: Primitives + Send + Sync {
    /// The value stored under `key`.
    async fn kv_get(&self, key: &WebKey<'_>) -> Result<Option<String>, StateError>;

    /// Stores `value` under `key`, for `ttl` or for good.
    async fn kv_set(
        &self,
        key: &WebKey<'_>,
        value: &str,
        ttl: Option<Duration>,
    ) -> Result<(), StateError>;

    /// Stores `value` under `key` only if nothing is stored there; true when
    /// it was stored.
    async fn kv_set_nx(
        &self,
        key: &WebKey<'_>,
        value: &str,
        ttl: Option<Duration>,
    ) -> Result<bool, StateError>;

    /// Stores `value` under `key` only if `key` holds exactly `expected`
    /// now; true when it was stored. One atomic step: a writer between the
    /// caller's read of `expected` and this call makes it answer false.
    async fn kv_replace(
        &self,
        key: &WebKey<'_>,
        expected: &str,
        value: &str,
        ttl: Option<Duration>,
    ) -> Result<bool, StateError>;

    /// Removes `key` only if it holds exactly `expected`, atomically; true
    /// when it was removed.
    async fn kv_delete_if(&self, key: &WebKey<'_>, expected: &str) -> Result<bool, StateError>;

    /// Removes and returns the value under `key`, atomically (single use).
    async fn kv_take(&self, key: &WebKey<'_>) -> Result<Option<String>, StateError>;

    /// Removes `key`; true when it existed.
    async fn kv_delete(&self, key: &WebKey<'_>) -> Result<bool, StateError>;

    /// Puts `member` in the schedule `name`, due at `due_ms` (ms since the
    /// epoch); an earlier entry of the same member is replaced.
    async fn schedule(&self, name: &str, member: &str, due_ms: u64) -> Result<(), StateError>;

    /// Up to `limit` members of the schedule `name` due at or before
    /// `now_ms`, earliest first (they stay scheduled until removed or
    /// rescheduled).
    async fn due(&self, name: &str, now_ms: u64, limit: usize) -> Result<Vec<String>, StateError>;

    /// Removes `member` from the schedule `name`.
    async fn unschedule(&self, name: &str, member: &str) -> Result<(), StateError>;

    /// Prepends `value` to `list`, keeping its newest `keep` items.
    async fn list_push(
        &self,
        list: &WebList<'_>,
        value: &str,
        keep: usize,
    ) -> Result<(), StateError>;

    /// As [`WebStore::list_push`], but `value` is first removed from
    /// `list` wherever it is (one atomic step): a value pushed again moves
    /// to the front instead of taking a second place, so `keep` bounds
    /// distinct values.
    async fn list_push_unique(
        &self,
        list: &WebList<'_>,
        value: &str,
        keep: usize,
    ) -> Result<(), StateError>;

    /// Up to `limit` items of `list`, newest first.
    async fn list_range(&self, list: &WebList<'_>, limit: usize)
        -> Result<Vec<String>, StateError>;

    /// Removes `list` with all its items; true when it existed.
    async fn list_delete(&self, list: &WebList<'_>) -> Result<bool, StateError>;

    /// Adds one to `counter` (kept `window` after its last change); returns
    /// the new count.
    async fn count(&self, counter: &WebCounter<'_>, window: Duration) -> Result<u64, StateError> {
        self.raw_count(&counter.key(), window).await
    }

    /// The current value of `counter` (0 when unset or expired).
    async fn counted(&self, counter: &WebCounter<'_>) -> Result<u64, StateError> {
        self.raw_counted(&counter.key()).await
    }

    /// Forgets `counter`.
    async fn reset_count(&self, counter: &WebCounter<'_>) -> Result<(), StateError> {
        self.raw_reset_count(&counter.key()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names are the layout of stored records: they must not change.
    #[test]
    fn names_keep_the_stored_layout() {
        assert_eq!(WebKey::Account("ann").name(), "web:account:ann");
        assert_eq!(WebKey::UserOfKey("pk").name(), "web:user:pk");
        assert_eq!(WebKey::Session("s").name(), "web:session:s");
        assert_eq!(WebKey::Challenge("c").name(), "web:challenge:c");
        assert_eq!(WebKey::AuthRequest("r").name(), "web:authreq:r");
        assert_eq!(
            WebKey::ClientContract {
                pk: "p",
                client: "c"
            }
            .name(),
            "web:client:p:c"
        );
        assert_eq!(
            WebKey::Reexport {
                pk: "p",
                contract: "h"
            }
            .name(),
            "web:reexport:p:h"
        );
        assert_eq!(
            WebKey::Delivered {
                pk: "p",
                contract: "h"
            }
            .name(),
            "web:delivered:p:h"
        );
        assert_eq!(
            WebKey::Device {
                username: "u",
                device: "d"
            }
            .name(),
            "web:device:u:d"
        );
        assert_eq!(
            WebKey::PushedTo {
                user: "p",
                contract: "h"
            }
            .name(),
            "transfer-of:p:h"
        );
        assert_eq!(
            WebKey::TransferAccess { id: "i", hash: "h" }.name(),
            "transfer-access:i:h"
        );
        assert_eq!(WebKey::Archives("i").name(), "archives:i");
        assert_eq!(WebList::History("p").name(), "web:history:p");
        assert_eq!(WebList::ArchivesOf("p").name(), "archives-of:p");
        assert_eq!(
            WebCounter::Attempts("1.2.3.4").key().to_string(),
            "web:attempts:ip:1.2.3.4"
        );
        assert_eq!(
            WebCounter::UserFailures("u").key().to_string(),
            "web:fail:user:u"
        );
        assert_eq!(
            WebCounter::AddressFailures {
                address: "a",
                username: "u"
            }
            .key()
            .to_string(),
            "web:fail:addr:a:u"
        );
        assert_eq!(
            WebCounter::DeviceFailures {
                device: "d",
                username: "u"
            }
            .key()
            .to_string(),
            "web:fail:device:d:u"
        );
    }
}
