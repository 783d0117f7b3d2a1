//! The authorization request (PROTOCOL.md Part 2 §A, "Consent UI flow"):
//! `GET /request?contract=<token>|client_id=<id>&username=&state=&redirect=`.
//!
//! The request is validated in full before anything else: the contract and
//! its client declaration verify (every signature, the reference validators
//! and the acceptance policy), its push destination is acceptable, and the
//! callback is the client's declared `redirectEndpoint` or a `redirect`
//! within the client's declared domain (same scheme, host and port). A
//! request that fails shows an error page and never redirects.
//!
//! `client_id=` finds only a contract that was shown to the same logged-in
//! user before (never one another user was shown or holds): with
//! contract-hash push ids a contract serves one user, so a contract bound to
//! another user is refused here as it is at agreement (`contract_bound`).
//!
//! A valid request is kept server-side under a random id for 30 minutes;
//! the page shows the client, the legal terms and the scopes (contractual,
//! consent switches off by default, legitimate), each described from the
//! provider catalogs. Agreeing: the browser signs the grant and posts it to
//! `/request/{id}/agree`, which stores it like `POST /alias/grants` and
//! answers the callback URL with `code`, `bind` and `state`. Denying: a
//! form post to `/request/{id}/deny` that redirects with
//! `error=access_denied` and `state`.

mod check;
mod decide;
mod page;
mod preview;
mod summary;
mod terms;

pub(crate) use check::context_for_login;
pub use decide::{agree, deny};
pub use page::request_page;
pub use preview::{get_preview, start_preview};
pub use terms::script_json;

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long a shown request may be answered.
const PENDING_TTL: Duration = Duration::from_secs(30 * 60);
/// How long a client's latest contract shown to a user is remembered for
/// that user's `client_id=`.
const CLIENT_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
const MAX_STATE: usize = 1024;
/// What a person reads when a request cannot be shown (the reason, for the
/// client's developers, is folded away below it).
const UNREADABLE: &str =
    "The link that brought you here is damaged, expired or not meant for this \
     data bank, so there is nothing to decide. Go back to the service that sent you and try again; \
     if it happens again, tell them.";

/// The query of an authorization request.
#[derive(Debug, Deserialize)]
pub struct RequestQuery {
    contract: Option<String>,
    client_id: Option<String>,
    username: Option<String>,
    state: Option<String>,
    redirect: Option<String>,
}

/// A validated request waiting for the user's answer.
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    contract: String,
    callback: String,
    state: Option<String>,
    pk: String,
}

/// Why a request is refused (shown on the error page).
#[derive(Debug)]
pub struct Refusal(pub String);

fn refuse(reason: impl Into<String>) -> Refusal {
    Refusal(reason.into())
}
