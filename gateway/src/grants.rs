//! `POST /alias/process`, `POST /alias/grants` and `POST /alias/bind`:
//! validating grants and bindings, the reference's newer-grant rule,
//! revocations, and creating or joining transfers.

use crate::body::Params;
use crate::error::ApiError;
use crate::intake::TakenIn;
use crate::transfers::transfer_json;
use crate::AppState;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use protocol::alias::{AliasError, BindAuthz, Grant, PolicyError, PushId};
use protocol::anychain::{from_json_str, DecodeError, Limits};
use runtime::state::{now_ms, Begin, NewTransfer, TransferState, WebKey};
use std::time::{Duration, Instant};

/// Maps a token error to its status and code.
pub(crate) fn token_error(e: AliasError, what: &str) -> ApiError {
    match &e {
        AliasError::Decode(DecodeError::TooLarge { .. }) => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.to_string())
        }
        AliasError::Decode(DecodeError::TooDeep { .. }) => {
            ApiError::bad_request("too_deep", e.to_string())
        }
        AliasError::Decode(_) => ApiError::bad_request("malformed_token", format!("{what}: {e}")),
        AliasError::Verify(_) => ApiError::bad_request("invalid_token", e.to_string()),
        AliasError::WrongType(_) => ApiError::bad_request("wrong_type", e.to_string()),
        AliasError::PushUrl(_) => ApiError::bad_request("bad_push_destination", e.to_string()),
        AliasError::Fold(_) | AliasError::Malformed { .. } => {
            ApiError::bad_request("malformed_token", format!("{what}: {e}"))
        }
    }
}

pub(crate) fn policy_error(e: PolicyError) -> ApiError {
    match e {
        PolicyError::Alias(inner) => token_error(inner, "grant"),
        PolicyError::Clear(clear) => ApiError::bad_request(clear.code(), clear.to_string())
            .with("path", serde_json::json!(clear.path())),
        PolicyError::Push(_) => ApiError::bad_request("bad_push_destination", e.to_string()),
        other => ApiError::bad_request("policy", other.to_string()),
    }
}

/// The refusal of a grant (or revocation) for a contract that another user
/// holds: `409 contract_bound`.
pub(crate) fn contract_bound() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "contract_bound",
        "this contract is bound to another user of this data bank: a contract serves one \
         user (its hash names the transfer at the client), so the client must issue a \
         contract per user",
    )
}

/// With contract-hash push ids, binds the contract to `user` if nobody
/// holds it, and refuses it when another user does.
pub(crate) async fn claim_contract(
    app: &AppState,
    contract_hash: &str,
    user: &str,
) -> Result<(), ApiError> {
    if app.config.push_id != PushId::Contract {
        return Ok(());
    }
    let owner = app.state.claim_contract(contract_hash, user).await?;
    if owner != user {
        tracing::warn!(contract = %contract_hash, %user, "refused a grant for a contract bound to another user");
        return Err(contract_bound());
    }
    Ok(())
}

/// The entry recording, with grant-hash push ids, which transfer id
/// carries a user's data for a contract (where a revocation is announced).
fn pushed_key<'a>(user: &'a str, contract_hash: &'a str) -> WebKey<'a> {
    WebKey::PushedTo {
        user,
        contract: contract_hash,
    }
}

/// The id of the transfer that carries `user`'s data for `contract_hash`:
/// the contract hash, or with grant-hash ids the id last pushed to (or, if
/// none, the id of `grant`). Callers still check the transfer's user.
pub(crate) async fn transfer_id_of(
    app: &AppState,
    user: &str,
    contract_hash: &str,
    grant: &Grant,
) -> Result<Option<String>, ApiError> {
    match app.config.push_id {
        PushId::Contract => Ok(Some(contract_hash.to_owned())),
        PushId::Grant => match app.state.kv_get(&pushed_key(user, contract_hash)).await? {
            Some(id) => Ok(Some(id)),
            None => Ok(grant.grant_hash().ok().map(|h| h.to_b64())),
        },
    }
}

#[allow(clippy::cast_precision_loss)]
fn now_f64() -> f64 {
    now_ms() as f64
}

/// A grant accepted by the newer-grant rule.
pub(crate) struct Effective {
    /// The grant that counts (the stored one when it is as new or newer).
    pub grant: Grant,
    /// Whether the submitted grant was stored (it is the effective one).
    pub stored: bool,
}

/// Decodes `token` and checks it as a grant: every signature, the
/// reference validators, then the acceptance policy (signed in clear first,
/// before any cell is read or scope computed). Every route that takes a
/// grant starts here.
pub(crate) fn checked_grant(app: &AppState, token: &str) -> Result<Grant, ApiError> {
    let grant =
        Grant::from_token(token, &app.config.limits).map_err(|e| token_error(e, "grant"))?;
    app.policy
        .check_grant(&grant, now_f64())
        .map_err(policy_error)?;
    Ok(grant)
}

pub(crate) fn unknown_user() -> ApiError {
    ApiError::forbidden(
        "unknown_user",
        "the grant's user is not bound to this data bank and holds no dumps here",
    )
}

/// Validates `token` ([`checked_grant`]) and the optional `bind` (stored).
pub(crate) async fn checked_grant_and_bind(
    app: &AppState,
    token: &str,
    bind: Option<&str>,
) -> Result<Grant, ApiError> {
    let grant = checked_grant(app, token)?;
    if let Some(bind) = bind.filter(|b| !b.trim().is_empty()) {
        accept_bind(app, bind, Some(&grant.signer_b64())).await?;
    }
    Ok(grant)
}

/// Validates `token` ([`checked_grant`]), the optional `bind`, that the
/// user is known here, then applies `updateGrant`.
pub(crate) async fn accept_grant(
    app: &AppState,
    token: &str,
    bind: Option<&str>,
) -> Result<Effective, ApiError> {
    let grant = checked_grant_and_bind(app, token, bind).await?;
    apply_update(app, grant).await
}

/// Checks that the user of a checked grant is known here, then applies
/// `updateGrant`.
async fn apply_update(app: &AppState, grant: Grant) -> Result<Effective, ApiError> {
    let user = grant.signer_b64();
    if !app.state.is_known_user(&user).await? {
        return Err(unknown_user());
    }
    let contract_hash = grant
        .contract_hash()
        .map_err(|e| token_error(e, "grant"))?
        .to_b64();
    claim_contract(app, &contract_hash, &user).await?;
    let date = grant
        .date()
        .and_then(protocol::anychain::Value::as_f64)
        .unwrap_or(0.0);
    let (effective_token, stored) = app
        .state
        .update_grant(&user, &contract_hash, date, &grant.to_token())
        .await?;
    if stored {
        return Ok(Effective { grant, stored });
    }
    Ok(Effective {
        grant: stored_grant(&effective_token)?,
        stored,
    })
}

/// A grant read back from the state: it was verified when it was stored
/// (the reference's `fromSafeToken`).
pub(crate) fn stored_grant(token: &str) -> Result<Grant, ApiError> {
    let limits = Limits {
        max_bytes: usize::MAX,
        max_depth: 128,
    };
    from_json_str(token, &limits)
        .map_err(AliasError::from)
        .and_then(Grant::from_verified)
        .map_err(|e| ApiError::unavailable("stored grant", e))
}

/// Validates a bind token (signed by `expected_user` when given) for this
/// data bank's origin and stores it; returns the user.
pub(crate) async fn accept_bind(
    app: &AppState,
    token: &str,
    expected_user: Option<&str>,
) -> Result<String, ApiError> {
    let bind =
        BindAuthz::from_token(token, &app.config.limits).map_err(|e| token_error(e, "bind"))?;
    app.policy
        .check_bind(bind.value(), now_f64())
        .map_err(policy_error)?;
    let user = protocol::anychain::b64u_encode(bind.signer());
    if expected_user.is_some_and(|u| u != user) {
        return Err(ApiError::forbidden(
            "bind_mismatch",
            "the bind token is signed by another user than the grant",
        ));
    }
    if bind.origin() != Some(app.config.public_origin.as_str()) {
        return Err(ApiError::forbidden(
            "wrong_origin",
            format!(
                "the bind token is for {:?}, this data bank is {}",
                bind.origin().unwrap_or(""),
                app.config.public_origin
            ),
        ));
    }
    app.state.set_binding(&user, token).await?;
    Ok(user)
}

/// Creates (or joins) the transfer of an effective grant and queues its
/// process job. Returns the transfer id and the generation to follow.
pub(crate) async fn start_transfer(
    app: &AppState,
    grant: &Grant,
) -> Result<(String, Begin), ApiError> {
    let rule = app.config.push_id;
    let user = grant.signer_b64();
    let contract_hash = grant
        .contract_hash()
        .map_err(|e| token_error(e, "grant"))?
        .to_b64();
    let grant_hash = grant
        .grant_hash()
        .map_err(|e| token_error(e, "grant"))?
        .to_b64();
    let (id, push_url) = match rule {
        PushId::Contract => {
            claim_contract(app, &contract_hash, &user).await?;
            let url = grant.push_url(rule).map_err(|e| token_error(e, "grant"))?;
            (contract_hash.clone(), url)
        }
        PushId::Grant => grant_mode_target(app, grant, &user, &contract_hash, &grant_hash).await?,
    };
    let token = grant.to_token();
    let begin = app
        .state
        .begin_transfer(
            &id,
            &NewTransfer {
                grant_token: &token,
                grant_hash: &grant_hash,
                user: &user,
                push_url: &push_url,
                revoked: grant.is_revoked(),
            },
        )
        .await?;
    if begin.foreign {
        tracing::warn!(transfer = %id, %user, "refused to touch another user's transfer");
        return Err(contract_bound());
    }
    if let Some(old) = begin.superseded {
        tracing::warn!(transfer = %id, old, new = begin.generation, "generation superseded by a newer grant");
    }
    if !begin.joined {
        crate::intake::queue_job(app, &id, begin.generation).await?;
    }
    Ok((id, begin))
}

/// With grant-hash push ids: where a grant's transfer runs. A consented
/// grant runs under its own hash, and the user's previous transfer for the
/// contract (another id) is cancelled; a revocation is announced at the id
/// the data was pushed to, superseding what runs there.
async fn grant_mode_target(
    app: &AppState,
    grant: &Grant,
    user: &str,
    contract_hash: &str,
    grant_hash: &str,
) -> Result<(String, String), ApiError> {
    let key = pushed_key(user, contract_hash);
    let previous = app.state.kv_get(&key).await?;
    let base = grant
        .contract()
        .push_base()
        .map_err(|e| token_error(e, "grant"))?;
    if grant.is_revoked() {
        let id = previous.unwrap_or_else(|| grant_hash.to_owned());
        let url = base.transfer_url(&id);
        return Ok((id, url));
    }
    if let Some(prev) = previous.filter(|p| p != grant_hash) {
        let owned = app
            .state
            .transfer(&prev)
            .await?
            .is_some_and(|t| t.user == user);
        if owned {
            if let Some(generation) = app
                .state
                .cancel(&prev, "replaced by a newer grant of the user")
                .await?
            {
                tracing::warn!(transfer = %prev, generation, "cancelled: the user signed a newer grant");
                // Its archives are never pushed again: give them back now
                // (the sweeper would, later).
                if let Err(e) = runtime::archives::drop_build(&app.state, &app.storage, &prev).await
                {
                    tracing::warn!(transfer = %prev, error = %e, "could not delete a cancelled transfer's archives; the sweeper will");
                }
            }
        }
    }
    app.state.kv_set(&key, grant_hash, None).await?;
    Ok((grant_hash.to_owned(), base.transfer_url(grant_hash)))
}

fn wants_async(req: &HttpRequest) -> bool {
    req.headers()
        .get_all(header::HeaderName::from_static("prefer"))
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("respond-async"))
}

fn grant_json(grant: &Grant) -> serde_json::Value {
    serde_json::from_str(&grant.to_token()).unwrap_or(serde_json::Value::Null)
}

/// `POST /alias/process`: the client hands in a grant (and optionally the
/// user's bind token); the data bank runs the transfer.
pub async fn process(
    app: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let outcome = process_inner(&app, &req, &body).await;
    let label = match &outcome {
        Ok((_, label)) => *label,
        Err(e) => e.code,
    };
    app.metrics.grants.with_label_values(&[label]).inc();
    outcome.map(|(resp, _)| resp)
}

async fn process_inner(
    app: &AppState,
    req: &HttpRequest,
    body: &[u8],
) -> Result<(HttpResponse, &'static str), ApiError> {
    let params = Params::parse(req, body)?;
    let token = params.require("grant")?;
    // A synchronous request holds a wait slot from before anything starts,
    // so that a refusal (429/503) leaves nothing behind.
    let slot = if wants_async(req) {
        None
    } else {
        Some(app.waits.acquire(crate::ops::client_addr(app, req))?)
    };
    let checked = checked_grant_and_bind(app, token, params.get("bind")).await?;
    let mut started = None;
    let (grant, stored) = if app.config.push_id == PushId::Contract && !checked.is_revoked() {
        match crate::intake::take_in(app, &checked).await? {
            TakenIn::Started {
                id,
                begin,
                status,
                access,
            } => {
                started = Some((id, begin, status, access));
                (checked, true)
            }
            TakenIn::Kept(effective) => (effective, false),
        }
    } else {
        let effective = apply_update(app, checked).await?;
        (effective.grant, effective.stored)
    };
    if grant.is_revoked() {
        if stored {
            // A new revocation met here: stop what runs and tell the client.
            start_transfer(app, &grant).await?;
        }
        return Err(
            ApiError::new(StatusCode::GONE, "revoked", "the user revoked this grant")
                .with("processor", serde_json::json!([]))
                .with("grant", grant_json(&grant)),
        );
    }
    let (id, begin, status, access) = match started {
        Some(started) => started,
        None => {
            let (id, begin) = start_transfer(app, &grant).await?;
            let access = crate::access::issue_capability(app, &id, &grant.signer_b64()).await?;
            (id, begin, serde_json::Value::Null, access)
        }
    };
    let label = if begin.joined { "joined" } else { "accepted" };
    let location = format!("/alias/transfers/{id}");
    if slot.is_none() {
        let status = if status.is_null() {
            transfer_json(app, &id).await?
        } else {
            status
        };
        let resp = HttpResponse::Accepted()
            .insert_header((header::LOCATION, location))
            .insert_header(("Preference-Applied", "respond-async"))
            .json(serde_json::json!({
                "status": "accepted", "transfer": status, "joined": begin.joined, "access": access,
            }));
        return Ok((resp, label));
    }
    let answer = wait_for(app, &id, begin.generation, &grant, &location, &access)
        .await
        .map(|r| (r, label));
    drop(slot);
    answer
}

/// Waits until generation `generation` of transfer `id` ends, and answers
/// as the protocol does; after `ALIAS_PROCESS_WAIT_SECS` answers 202.
async fn wait_for(
    app: &AppState,
    id: &str,
    mut generation: u64,
    grant: &Grant,
    location: &str,
    access: &str,
) -> Result<HttpResponse, ApiError> {
    let grant_hash = grant
        .grant_hash()
        .map_err(|e| token_error(e, "grant"))?
        .to_b64();
    let mut events = app.state.subscribe(id);
    let deadline = Instant::now() + app.config.gateway.process_wait;
    loop {
        let Some(t) = app.state.transfer(id).await? else {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "lost",
                "the transfer record disappeared",
            ));
        };
        if t.generation > generation && t.grant_hash == grant_hash {
            // Restarted with the same grant (push resume rule): follow it.
            generation = t.generation;
            continue;
        }
        if t.generation != generation {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "superseded",
                "a newer grant for this contract started a new transfer",
            )
            .with("location", serde_json::json!(location)));
        }
        if t.state.is_terminal() {
            let status = transfer_json(app, id).await?;
            return match t.state {
                TransferState::Done => {
                    let files = app.state.files(id, generation).await?;
                    let processor: Vec<_> = files
                        .iter()
                        .map(|f| serde_json::json!({ f.name.clone(): f.blake2b }))
                        .collect();
                    Ok(HttpResponse::Ok().json(serde_json::json!({
                        "status": "ok",
                        "processor": processor,
                        "grant": grant_json(grant),
                        "transfer": status,
                        "access": access,
                    })))
                }
                TransferState::Cancelled => Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "cancelled",
                    t.error.unwrap_or_else(|| "transfer cancelled".into()),
                )
                .with("transfer", status)),
                _ => Err(ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "failed",
                    t.error.unwrap_or_else(|| "transfer failed".into()),
                )
                .with("transfer", status)),
            };
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            let status = transfer_json(app, id).await?;
            return Ok(HttpResponse::Accepted()
                .insert_header((header::LOCATION, location.to_owned()))
                .json(
                    serde_json::json!({"status": "accepted", "transfer": status, "access": access}),
                ));
        }
        // Wake on the next event; re-read at least every few seconds in case
        // an event was lost while the subscription reconnected.
        let _ = tokio::time::timeout(left.min(Duration::from_secs(5)), events.recv()).await;
    }
}

/// `POST /alias/grants`: stores a grant signed by the user (the token as
/// the body, or `grant=` as JSON or form). A newer revoked grant cancels
/// the running transfer and queues the notice to the client.
pub async fn store_grant(
    app: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let params = Params::parse(&req, &body)?;
    let token = params.require_or_raw("grant")?;
    let effective = accept_grant(&app, token, params.get("bind")).await?;
    let mut transfer = serde_json::Value::Null;
    if effective.stored && effective.grant.is_revoked() {
        let (id, _) = start_transfer(&app, &effective.grant).await?;
        transfer = transfer_json(&app, &id).await?;
    }
    let contract_hash = effective
        .grant
        .contract_hash()
        .map_err(|e| token_error(e, "grant"))?
        .to_b64();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "status": "ok",
        "stored": effective.stored,
        "contract": contract_hash,
        "grant": grant_json(&effective.grant),
        "transfer": transfer,
    })))
}

/// `POST /alias/bind`: stores the user's `alias.bindAuthz` for this origin.
pub async fn bind(
    app: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let params = Params::parse(&req, &body)?;
    let token = params.require_or_raw("bind")?;
    let user = accept_bind(&app, token, None).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({"status": "ok", "user": user})))
}
