//! Who may see a transfer, and how many may wait on one.
//!
//! A transfer's status and events answer only its user (their web session,
//! or a signed `alias.bank.request` for `GET` and the path), its client (the
//! capability token of its `/alias/process` answer, or a grant of the
//! transfer's user for it) or an operator (`ALIAS_OPERATOR_TOKEN`). Anyone
//! else gets the answer an unknown id gets; neither costs more than a read.
//!
//! Concurrent event streams and synchronous `/alias/process` waits are
//! counted per client address and in total ([`Slots`]); past a bound the
//! request is refused with 429 (address) or 503 (total) and `Retry-After`.

use crate::error::ApiError;
use crate::site::session::{ct_eq, random_bytes, Session, COOKIE};
use crate::AppState;
use actix_web::http::{header, StatusCode};
use actix_web::HttpRequest;
use percent_encoding::percent_decode_str;
use protocol::alias::{Grant, RequestAuthError, SignedRequest};
use protocol::anychain::b64u_encode;
use runtime::state::{now_ms, Transfer, WebKey};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// The one answer for an unknown transfer and for one the caller may not
/// see.
pub fn hidden() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such transfer")
}

/// What a request presents in its `Authorization` header.
enum Credential {
    /// Nothing usable.
    None,
    /// `Bearer <token>`: a capability or the operators' token.
    Bearer(String),
    /// `Alias <signed request>`: the user, for this request.
    Signed(Box<SignedRequest>),
    /// `Grant <grant token>`: the client holding the user's grant.
    Grant(Box<Grant>),
}

/// The token of an `Authorization` value: raw anychain JSON, or
/// percent-encoded; `None` when it does not decode to UTF-8.
pub(crate) fn decoded(token: &str) -> Option<String> {
    let token = token.trim();
    if token.starts_with('{') {
        return Some(token.to_owned());
    }
    percent_decode_str(token)
        .decode_utf8()
        .ok()
        .map(|t| t.into_owned())
}

/// Reads (and verifies, without touching the state) the credential of
/// `req`; anything malformed counts as none.
fn credential(app: &AppState, req: &HttpRequest) -> Credential {
    let Some(value) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Credential::None;
    };
    let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("bearer") {
        let token = rest.trim();
        if token.is_empty() || token.len() > 256 {
            return Credential::None;
        }
        return Credential::Bearer(token.to_owned());
    }
    if scheme.eq_ignore_ascii_case("alias") {
        let Some(token) = decoded(rest) else {
            return Credential::None;
        };
        let Ok(request) = SignedRequest::from_token(&token, &app.config.limits) else {
            return Credential::None;
        };
        return match signed_for(app, req, &request) {
            Ok(()) => Credential::Signed(Box::new(request)),
            Err(_) => Credential::None,
        };
    }
    if scheme.eq_ignore_ascii_case("grant") {
        let Some(token) = decoded(rest) else {
            return Credential::None;
        };
        return match Grant::from_token(&token, &app.config.limits) {
            Ok(grant) => Credential::Grant(Box::new(grant)),
            Err(_) => Credential::None,
        };
    }
    Credential::None
}

/// Whether `token` is the operators' token (constant time; never when
/// `ALIAS_OPERATOR_TOKEN` is unset).
fn is_operator(app: &AppState, token: &str) -> bool {
    app.config
        .gateway
        .operator_token
        .as_deref()
        .is_some_and(|want| ct_eq(token.as_bytes(), want.as_bytes()))
}

fn capability_hash(token: &str) -> String {
    let hash = blake2b_simd::Params::new()
        .hash_length(32)
        .personal(b"alias-bank-cap")
        .hash(token.as_bytes());
    b64u_encode(hash.as_bytes())
}

/// The state key of the capability of transfer `id` whose token hashes to `hash`.
pub(crate) fn capability_key<'a>(id: &'a str, hash: &'a str) -> WebKey<'a> {
    WebKey::TransferAccess { id, hash }
}

/// A new capability: the random token handed out and its hash, the only
/// part kept (under [`capability_key`]).
pub(crate) fn new_capability() -> Result<(String, String), ApiError> {
    let token = random_bytes(32)
        .map(|b| b64u_encode(&b))
        .map_err(|e| ApiError::unavailable("randomness", e))?;
    let hash = capability_hash(&token);
    Ok((token, hash))
}

/// Issues a capability for transfer `id` of `user`: a random token whose
/// hash (only) is kept, as long as finished transfers are.
pub async fn issue_capability(app: &AppState, id: &str, user: &str) -> Result<String, ApiError> {
    let (token, hash) = new_capability()?;
    app.state
        .kv_set(
            &capability_key(id, &hash),
            user,
            Some(app.config.finished_ttl),
        )
        .await?;
    Ok(token)
}

/// The transfer `id` if `req` may see it; otherwise the same error as for
/// an unknown id. Reads the state at most twice, writes only for the
/// transfer's own user (the single use of a signed request).
pub async fn authorize(app: &AppState, req: &HttpRequest, id: &str) -> Result<Transfer, ApiError> {
    let credential = credential(app, req);
    let has_cookie = req.cookie(COOKIE).is_some();
    if matches!(credential, Credential::None) && !has_cookie {
        return Err(hidden());
    }
    let Some(transfer) = app.state.transfer(id).await? else {
        return Err(hidden());
    };
    let allowed = match &credential {
        Credential::None => false,
        Credential::Bearer(token) => {
            is_operator(app, token)
                || app
                    .state
                    .kv_get(&capability_key(id, &capability_hash(token)))
                    .await?
                    .is_some_and(|user| user == transfer.user)
        }
        Credential::Grant(grant) => {
            grant.signer_b64() == transfer.user
                && grant
                    .transfer_id(app.config.push_id)
                    .is_ok_and(|t| t.to_b64() == id)
        }
        Credential::Signed(request) => {
            b64u_encode(request.signer()) == transfer.user && claim(app, request).await?
        }
    };
    if allowed {
        return Ok(transfer);
    }
    if has_cookie {
        let session = Session::load(app, req).await?;
        if session.user.is_some_and(|u| u.pk == transfer.user) {
            return Ok(transfer);
        }
    }
    Err(hidden())
}

/// Whether `request` was signed for `req`: its method and path, this
/// bank's origin, and a date within the configured window.
pub(crate) fn signed_for(
    app: &AppState,
    req: &HttpRequest,
    request: &SignedRequest,
) -> Result<(), RequestAuthError> {
    #[allow(clippy::cast_precision_loss)]
    let now = now_ms() as f64;
    request.check(
        req.method().as_str(),
        req.path(),
        &app.config.public_origin,
        now,
        app.config.gateway.request_max_age_ms,
        app.config.max_future_skew_ms,
    )
}

/// Marks the signed request with id `id` used; `false` when it was used
/// before. Kept as long as the request could still be accepted.
pub(crate) async fn claim_request(app: &AppState, id: &str) -> Result<bool, ApiError> {
    let ttl = Duration::from_millis(
        app.config.gateway.request_max_age_ms + app.config.max_future_skew_ms,
    );
    Ok(app.state.claim_once(id, ttl).await?)
}

/// Uses a signed request once.
async fn claim(app: &AppState, request: &SignedRequest) -> Result<bool, ApiError> {
    let Ok(id) = request.id() else {
        return Ok(false);
    };
    claim_request(app, &id.to_b64()).await
}

#[derive(Default)]
struct Counts {
    total: usize,
    by_addr: HashMap<Option<IpAddr>, usize>,
}

/// Bounds on concurrent long requests (event streams, waits), per client
/// address and in total.
pub struct Slots {
    what: &'static str,
    code: &'static str,
    total: usize,
    per_addr: usize,
    counts: Arc<Mutex<Counts>>,
}

/// A held slot, given back when dropped.
pub struct Slot {
    addr: Option<IpAddr>,
    counts: Arc<Mutex<Counts>>,
}

impl Slots {
    /// At most `total` at once, `per_addr` per address; `what` names them
    /// in errors, `code` is the error code past a bound.
    pub fn new(what: &'static str, code: &'static str, total: usize, per_addr: usize) -> Slots {
        Slots {
            what,
            code,
            total,
            per_addr,
            counts: Arc::default(),
        }
    }

    /// Takes a slot for `addr`: 429 past the per-address bound, 503 past
    /// the total, both with `Retry-After`.
    pub fn acquire(&self, addr: Option<IpAddr>) -> Result<Slot, ApiError> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let mine = counts.by_addr.get(&addr).copied().unwrap_or(0);
        if mine >= self.per_addr {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                self.code,
                format!("too many concurrent {} from this address", self.what),
            )
            .retry_after(5));
        }
        if counts.total >= self.total {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                self.code,
                format!("too many concurrent {}, retry later", self.what),
            )
            .retry_after(5));
        }
        counts.total += 1;
        *counts.by_addr.entry(addr).or_insert(0) += 1;
        Ok(Slot {
            addr,
            counts: self.counts.clone(),
        })
    }

    /// Slots held now (total, and addresses holding any).
    pub fn held(&self) -> (usize, usize) {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        (counts.total, counts.by_addr.len())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.by_addr.get_mut(&self.addr) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.by_addr.remove(&self.addr);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_bound_per_address_and_in_total() {
        let slots = Slots::new("streams", "too_many_streams", 3, 2);
        let a: Option<IpAddr> = "10.0.0.1".parse().ok();
        let b: Option<IpAddr> = "10.0.0.2".parse().ok();
        let a1 = slots.acquire(a).unwrap();
        let _a2 = slots.acquire(a).unwrap();
        let err = slots.acquire(a).err().unwrap();
        assert_eq!(err.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(err.retry_after, Some(5));
        let _b1 = slots.acquire(b).unwrap();
        let err = slots.acquire(b).err().unwrap();
        assert_eq!(err.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(err.code, "too_many_streams");
        drop(a1);
        assert_eq!(slots.held(), (2, 2));
        let _b2 = slots.acquire(b).unwrap();
        drop(slots.acquire(None).err());
        assert_eq!(slots.held(), (3, 2));
    }

    #[test]
    fn slots_forget_addresses_they_no_longer_hold() {
        let slots = Slots::new("waits", "too_many_waits", 100, 100);
        for i in 0..50u8 {
            let s = slots.acquire(Some(IpAddr::from([10, 0, 0, i]))).unwrap();
            drop(s);
        }
        assert_eq!(slots.held(), (0, 0));
    }

    #[test]
    fn capabilities_hash_apart() {
        assert_ne!(capability_hash("a"), capability_hash("b"));
        assert_eq!(capability_hash("a"), capability_hash("a"));
        assert_eq!(capability_hash("a").len(), 43);
    }
}
