//! Users and their grants: the reference's grant layout (newer-grant rule)
//! with quotas, bindings, the contracts users hold, and single-use request
//! ids. In Redis: `user:{pk}:contracts` / `:history` / `:contract_dates` /
//! `:usage` / `:bind`, `contract:{hash}:owner`, `once:{id}`.

use super::StateError;
use std::time::Duration;

/// Users, grants and bindings, implemented by each backend.
#[async_trait::async_trait]
pub trait UserStore: Send + Sync {
    /// The stored grant token of a user for a contract hash.
    async fn stored_grant(
        &self,
        user: &str,
        contract_hash: &str,
    ) -> Result<Option<String>, StateError>;

    /// The reference's `updateGrant`: stores `token` (dated `date_ms`) unless
    /// a grant of the same user and contract with an equal or later date is
    /// stored. Returns `(effective token, stored)`. Refused with
    /// [`StateError::Quota`] (nothing changed) when a new contract would pass
    /// [`Quotas::contracts`](super::Quotas::contracts) or the user's current grants
    /// [`Quotas::grant_bytes`](super::Quotas::grant_bytes); the history keeps the newest
    /// [`Quotas::history`](super::Quotas::history) grants within [`Quotas::grant_bytes`](super::Quotas::grant_bytes). A guest's
    /// records get (or renew) their TTL.
    async fn update_grant(
        &self,
        user: &str,
        contract_hash: &str,
        date_ms: f64,
        token: &str,
    ) -> Result<(String, bool), StateError>;

    /// A user's grants, newest first.
    async fn grant_history(&self, user: &str) -> Result<Vec<String>, StateError>;

    /// The contract hashes a user has grants for.
    async fn contracts_of(&self, user: &str) -> Result<Vec<String>, StateError>;

    /// Stores the user's `alias.bindAuthz` token (with the guest TTL unless
    /// the user's records are durable).
    async fn set_binding(&self, user: &str, token: &str) -> Result<(), StateError>;

    /// The user's `alias.bindAuthz` token, if bound.
    async fn binding(&self, user: &str) -> Result<Option<String>, StateError>;

    /// Whether the user is bound to this data bank or holds dumps here.
    async fn is_known_user(&self, user: &str) -> Result<bool, StateError>;

    /// Makes the user's records durable (they have a web account): their
    /// binding, grants and history no longer expire.
    async fn keep_user(&self, user: &str) -> Result<(), StateError>;

    /// Binds `contract_hash` to `user` when no user holds it yet, atomically,
    /// and returns the user who holds it afterwards (`user` itself, or the
    /// first user who claimed it). With contract-hash push ids a contract
    /// serves one user: another user's grant for it must be refused.
    async fn claim_contract(&self, contract_hash: &str, user: &str) -> Result<String, StateError>;

    /// The user a contract is bound to, if any.
    async fn contract_owner(&self, contract_hash: &str) -> Result<Option<String>, StateError>;

    /// Claims a single-use id (e.g. the fold of a signed request) for `ttl`;
    /// false when it was already claimed.
    async fn claim_once(&self, id: &str, ttl: Duration) -> Result<bool, StateError>;

    /// Forgets a user who deleted their account: grants, history, grant
    /// dates, binding, dump records and quota usage. The contracts they
    /// claimed stay bound to them (a contract-hash transfer id never passes
    /// to another user), and their transfers keep their own records until
    /// they expire. The caller deletes the dumps' objects first.
    async fn forget_user(&self, user: &str) -> Result<(), StateError>;
}
