//! Accounts without handing over the key (PROTOCOL.md §A, web/README.md).
//!
//! The browser derives everything from the password (argon2id with the
//! account's salt, then KDF subkeys): the Ed25519 key, the box key of the
//! sealed identity and a public verifier. The data bank stores only the
//! record `{username, salt, pwhash, box, publicPwdHash, publicKey}`.
//!
//! Login, in three requests:
//! 1. `GET /web/account/params?username=` → the salt and parameters
//!    (for an unknown name a fake salt derived from the server secret, the
//!    same every time, so names cannot be enumerated);
//! 2. `POST /web/login/begin {username, verifier}` → when the verifier
//!    matches (constant time): the sealed box, the public key and a fresh
//!    single-use challenge;
//! 3. `POST /web/login/finish {username, verifier, login}` with `login` the
//!    `alias.bank.login` answer signed by the account's key → the session
//!    (a new id).
//!
//! Both POSTs need the page's CSRF token and pass the login throttle,
//! which a stranger cannot turn into a lock-out of the account's owner:
//! - every address has a budget of attempts (any username);
//! - failures are counted per (address, username): a stranger guessing
//!   from their address exhausts only their own budget for that name;
//! - failures are also counted per username; past a threshold (a guessing
//!   campaign from many addresses) addresses *without a known device* get a
//!   smaller per-(address, username) budget: slowed, not blocked;
//! - a browser that logged in before holds a device cookie (a random id
//!   registered for that username at the successful login); its failures
//!   are counted per (device, username) instead, and the per-username count
//!   never touches it.

mod delete;
mod login;
mod profile;
mod record;
mod signup;
mod throttle;

pub use delete::delete_account;
pub use login::{login_begin, login_finish, logout, params};
pub use profile::{me, password_begin, password_change};
pub use signup::{signup, signup_begin};

use super::session::{new_id, Session};
use crate::error::ApiError;
use crate::AppState;
use actix_web::http::{header, StatusCode};
use actix_web::HttpResponse;

/// Answers JSON, sending the session cookie when needed.
pub fn json_with_session(
    app: &AppState,
    session: &Session,
    status: StatusCode,
    body: serde_json::Value,
) -> HttpResponse {
    let mut resp = HttpResponse::build(status);
    session.apply(app, &mut resp);
    resp.insert_header((header::CACHE_CONTROL, "no-store"))
        .json(body)
}

/// A fresh random id for other modules.
pub fn random_id() -> Result<String, ApiError> {
    new_id()
}
