//! The Alias documents on top of anychain: client declarations, contracts,
//! grants (consented and revoked), bindAuthz and revocations; the reference
//! validators, the stricter acceptance policy, hashes, scopes and the push
//! destination; [`build`] writes them.

mod bind;
pub mod build;
mod clear;
mod documents;
mod login;
mod policy;
mod push;
mod request;
mod validators;

pub use bind::{BindAuthz, Revocation};
pub use clear::{check_clear, check_grant_clear, ClearError};
pub use documents::{
    decode_verified, decode_verified_with, grant_body, is_signature_of, registry,
    revoked_grant_body, AliasError, Basis, ClientDecl, Contract, ContractScope, Grant,
};
pub use login::{
    login_body, login_registry, validate_bank_login, LoginError, SignedLogin, BANK_LOGIN,
};
pub use policy::{AcceptancePolicy, PolicyError};
pub use push::{PushBase, PushId, PushUrlError};
pub use request::{
    bank_registry, request_body, validate_bank_request, RequestAuthError, SignedRequest,
    BANK_REQUEST,
};
pub use validators::{
    alias_registry, validate_bind_authz, validate_client_decl, validate_contract, validate_grant,
    BIND_AUTHZ, CLIENT_DECL, CONTRACT, CONTRACT_MEMO_CAPACITY, GRANT, SIGNATURE_CACHE_CAPACITY,
};
