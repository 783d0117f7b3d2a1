//! The user's answer to a shown request: `POST /request/{id}/agree` and
//! `POST /request/{id}/deny`.

use super::Pending;
use crate::error::ApiError;
use crate::grants::{accept_grant, checked_grant, token_error};
use crate::site::pages::{error_page, see_other};
use crate::site::session::{json_body, Session};
use crate::AppState;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use protocol::alias::decode_verified;
use protocol::anychain::fold;
use runtime::state::WebKey;
use serde::Deserialize;

/// The request shown to this session's user under `rid`.
pub(super) async fn pending(
    app: &AppState,
    rid: &str,
    session: &Session,
) -> Result<Pending, ApiError> {
    let user = session.require_user()?;
    let json = app
        .state
        .kv_get(&WebKey::AuthRequest(rid))
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_request",
                "this request expired or was answered: go back to the client and start again",
            )
        })?;
    let p: Pending =
        serde_json::from_str(&json).map_err(|e| ApiError::unavailable("pending request", e))?;
    if p.pk != user.pk {
        return Err(ApiError::forbidden(
            "not_yours",
            "this request was shown to another user",
        ));
    }
    Ok(p)
}

fn with_params(callback: &str, pairs: &[(&str, &str)]) -> Result<String, ApiError> {
    let mut url =
        url::Url::parse(callback).map_err(|e| ApiError::unavailable("stored callback", e))?;
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
    }
    Ok(url.to_string())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agree {
    grant: String,
    bind: String,
}

/// `POST /request/{id}/agree {grant, bind}` (JSON, CSRF header): stores
/// the grant the browser signed and answers where to send the user.
pub async fn agree(
    app: web::Data<AppState>,
    req: HttpRequest,
    rid: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    if !is_json(&req) {
        // The form, submitted before its script ran: nothing is signed
        // without the script, so nothing is stored; the request stays open.
        let session = Session::load(&app, &req).await?;
        return Ok(error_page(
            &app,
            &session,
            StatusCode::BAD_REQUEST,
            "Nothing was shared yet",
            "Agreeing needs this page's script, which signs your answer in this browser, and it had not started yet. Go back to the request and press Agree again once the page is ready.",
        ));
    }
    let session = Session::load_checked(&app, &req).await?;
    let p = pending(&app, &rid, &session).await?;
    let input: Agree = json_body(&body)?;
    let grant = checked_grant(&app, &input.grant)?;
    if grant.signer_b64() != p.pk {
        return Err(ApiError::forbidden(
            "not_yours",
            "the grant is not signed by the logged-in user's key",
        ));
    }
    if grant.is_revoked() {
        return Err(ApiError::bad_request(
            "revoked",
            "agreeing needs a consented grant, not a revocation",
        ));
    }
    let shown_hash = same_contract_as_shown(&app, &p.contract, &grant, "the grant")?;
    let effective = accept_grant(&app, &input.grant, Some(&input.bind)).await?;
    let _ = app.state.kv_delete(&WebKey::AuthRequest(&rid)).await?;
    let code = effective.grant.to_token();
    crate::site::dashboard::record_event(
        &app,
        &p.pk,
        "granted",
        &shown_hash,
        &crate::site::dashboard::client_name(&effective.grant),
        None,
    )
    .await;
    let mut pairs = vec![("code", code.as_str()), ("bind", input.bind.as_str())];
    if let Some(s) = &p.state {
        pairs.push(("state", s));
    }
    let redirect = with_params(&p.callback, &pairs)?;
    Ok(crate::site::accounts::json_with_session(
        &app,
        &session,
        StatusCode::OK,
        serde_json::json!({"status": "ok", "redirect": redirect, "stored": effective.stored}),
    ))
}

/// Whether a request's body is JSON (the pages' scripts) rather than a form.
fn is_json(req: &HttpRequest) -> bool {
    req.headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        })
}

#[derive(Deserialize)]
pub struct DenyForm {
    csrf: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenyJson {
    /// The revocation of an earlier grant of the shown contract, signed in
    /// the browser (absent when there is nothing to withdraw).
    revocation: Option<String>,
}

/// Stores the user's revocation of the shown contract: signed by the user,
/// revoked, of exactly the contract of the pending request. The client is
/// told (a transfer generation with the revoked grant).
async fn withdraw(app: &AppState, p: &Pending, token: &str) -> Result<(), ApiError> {
    let grant = checked_grant(app, token)?;
    if grant.signer_b64() != p.pk {
        return Err(ApiError::forbidden(
            "not_yours",
            "the revocation is not signed by the logged-in user's key",
        ));
    }
    if !grant.is_revoked() {
        return Err(ApiError::bad_request(
            "not_revoked",
            "denying withdraws with a revocation, not a grant",
        ));
    }
    let shown_hash = same_contract_as_shown(app, &p.contract, &grant, "the revocation")?;
    crate::site::dashboard::remember_delivered(app, &p.pk, &shown_hash).await?;
    let effective = accept_grant(app, token, None).await?;
    if effective.stored && effective.grant.is_revoked() {
        let (id, begin) = crate::grants::start_transfer(app, &effective.grant).await?;
        crate::site::dashboard::record_event(
            app,
            &p.pk,
            "revoked",
            &shown_hash,
            &crate::site::dashboard::client_name(&effective.grant),
            Some((id, begin.generation)),
        )
        .await;
    }
    Ok(())
}

/// Whether the user holds an agreement (not revoked) of the contract shown.
async fn holds_grant(app: &AppState, p: &Pending) -> Result<bool, ApiError> {
    let shown =
        decode_verified(&p.contract, &app.config.limits).map_err(|e| token_error(e, "contract"))?;
    let hash = fold(&shown)
        .map_err(|e| token_error(e.into(), "contract"))?
        .to_b64();
    Ok(app
        .state
        .stored_grant(&p.pk, &hash)
        .await?
        .and_then(|t| crate::site::dashboard::parse_stored(&t))
        .is_some_and(|g| !g.is_revoked()))
}

/// `POST /request/{id}/deny`: back to the client with `error=access_denied`.
/// As a form (field `csrf`, no script needed) when the user holds no
/// agreement of this contract; as JSON from the page's script
/// (`{revocation}`, CSRF header), which withdraws an earlier agreement with
/// the revocation signed in the browser and answers `{redirect}`. A form
/// post while an agreement is held changes nothing and says why: the
/// withdrawal must be signed, and Deny never leaves an earlier Agree
/// standing silently.
pub async fn deny(
    app: web::Data<AppState>,
    req: HttpRequest,
    rid: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    if is_json(&req) {
        let session = Session::load_checked(&app, &req).await?;
        let p = pending(&app, &rid, &session).await?;
        let input: DenyJson = json_body(&body)?;
        match input.revocation.as_deref() {
            Some(token) => withdraw(&app, &p, token).await?,
            None if holds_grant(&app, &p).await? => {
                return Err(ApiError::bad_request(
                    "revocation_needed",
                    "you agreed to this client before: denying must withdraw that agreement",
                ))
            }
            None => {}
        }
        let _ = app.state.kv_delete(&WebKey::AuthRequest(&rid)).await?;
        let redirect = denied_url(&p)?;
        return Ok(crate::site::accounts::json_with_session(
            &app,
            &session,
            StatusCode::OK,
            serde_json::json!({"status": "ok", "redirect": redirect}),
        ));
    }
    let session = Session::load(&app, &req).await?;
    let form: DenyForm = deny_form(&body);
    session.check_csrf(&app, form.csrf.as_deref())?;
    let p = pending(&app, &rid, &session).await?;
    if holds_grant(&app, &p).await? {
        return Ok(error_page(
            &app,
            &session,
            StatusCode::CONFLICT,
            "Your earlier agreement still stands",
            "You agreed to this client before. Withdrawing that agreement must be signed by this page's script, which had not started yet. Go back to the request and press Deny again once the page is ready, or withdraw it from your dashboard.",
        ));
    }
    let _ = app.state.kv_delete(&WebKey::AuthRequest(&rid)).await?;
    let redirect = denied_url(&p)?;
    Ok(see_other(&app, &session, &redirect))
}

/// The form fields of a deny post (only `csrf` is read).
fn deny_form(body: &[u8]) -> DenyForm {
    let csrf = url::form_urlencoded::parse(body)
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.into_owned());
    DenyForm { csrf }
}

/// The callback with `error=access_denied` (and the request's `state`).
fn denied_url(p: &Pending) -> Result<String, ApiError> {
    let mut pairs = vec![("error", "access_denied")];
    if let Some(s) = &p.state {
        pairs.push(("state", s));
    }
    with_params(&p.callback, &pairs)
}

/// Refuses a grant (or revocation, `what`) signed for another contract than
/// the one the page showed: 400 `contract_mismatch`. Gives the shown
/// contract's hash.
fn same_contract_as_shown(
    app: &AppState,
    contract: &str,
    grant: &protocol::alias::Grant,
    what: &str,
) -> Result<String, ApiError> {
    let shown =
        decode_verified(contract, &app.config.limits).map_err(|e| token_error(e, "contract"))?;
    let shown_hash = fold(&shown)
        .map_err(|e| token_error(e.into(), "contract"))?
        .to_b64();
    let signed_hash = grant
        .contract_hash()
        .map_err(|e| token_error(e, "grant"))?
        .to_b64();
    if shown_hash != signed_hash {
        return Err(ApiError::bad_request(
            "contract_mismatch",
            format!("{what} is for another contract than the one shown"),
        ));
    }
    Ok(shown_hash)
}
