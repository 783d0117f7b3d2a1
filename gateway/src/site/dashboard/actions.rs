//! What the dashboard's scripts ask for: the transfers (polled), a signed
//! grant or revocation, the re-export switch, a retry; and the upload
//! form submitted before its script ran.

use super::page::clients_of;
use super::{client_name, parse_stored, record_event, reexport_key, remember_delivered};
use crate::error::ApiError;
use crate::grants::{accept_grant, checked_grant, start_transfer, token_error};
use crate::site::extract::{LoggedIn, UserJson};
use crate::site::session::Session;
use crate::AppState;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

/// `GET /web/transfers`: the transfers of the user's clients (polled by
/// the dashboard).
pub async fn transfers(
    LoggedIn { app, session, user }: LoggedIn,
) -> Result<HttpResponse, ApiError> {
    let clients = clients_of(&app, &user.pk).await?;
    let list: Vec<_> = clients
        .iter()
        .map(|c| serde_json::json!({"contract": c.contract, "revoked": c.revoked, "transfer": c.transfer}))
        .collect();
    Ok(crate::site::accounts::json_with_session(
        &app,
        &session,
        StatusCode::OK,
        serde_json::json!({"status": "ok", "clients": list}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostGrant {
    grant: String,
}

/// `POST /web/grants {grant}` (JSON, CSRF header): stores a grant the
/// logged-in user signed, typically the revocation of the dashboard's
/// revoke button. A newer revocation stops the transfer and tells the
/// client (the start request with the revoked grant, then the finish).
pub async fn post_grant(input: UserJson<PostGrant>) -> Result<HttpResponse, ApiError> {
    let UserJson {
        app,
        session,
        user,
        body: input,
    } = input;
    let grant = checked_grant(&app, &input.grant)?;
    if grant.signer_b64() != user.pk {
        return Err(ApiError::forbidden(
            "not_yours",
            "the grant is not signed by the logged-in user's key",
        ));
    }
    if grant.is_revoked() {
        if let Ok(hash) = grant.contract_hash() {
            remember_delivered(&app, &user.pk, &hash.to_b64()).await?;
        }
    }
    let effective = accept_grant(&app, &input.grant, None).await?;
    let contract = effective
        .grant
        .contract_hash()
        .map_err(|e| token_error(e, "grant"))?
        .to_b64();
    let mut transfer = None;
    if effective.stored && effective.grant.is_revoked() {
        let (id, begin) = start_transfer(&app, &effective.grant).await?;
        transfer = Some((id, begin.generation));
    }
    if effective.stored {
        let kind = if effective.grant.is_revoked() {
            "revoked"
        } else {
            "granted"
        };
        record_event(
            &app,
            &user.pk,
            kind,
            &contract,
            &client_name(&effective.grant),
            transfer.clone(),
        )
        .await;
    }
    Ok(crate::site::accounts::json_with_session(
        &app,
        &session,
        StatusCode::OK,
        serde_json::json!({
            "status": "ok",
            "stored": effective.stored,
            "revoked": effective.grant.is_revoked(),
            "contract": contract,
            "transfer": transfer.map(|(id, _)| id),
        }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reexport {
    contract: String,
    enabled: bool,
}

/// `POST /web/reexport {contract, enabled}` (JSON, CSRF header): whether a
/// newer dump of a provider the grant covers starts a fresh transfer.
pub async fn set_reexport(input: UserJson<Reexport>) -> Result<HttpResponse, ApiError> {
    let UserJson {
        app,
        session,
        user,
        body: input,
    } = input;
    if app
        .state
        .stored_grant(&user.pk, &input.contract)
        .await?
        .is_none()
    {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no grant of yours for this contract",
        ));
    }
    let key = reexport_key(&user.pk, &input.contract);
    if input.enabled {
        app.state.kv_set(&key, "1", None).await?;
    } else {
        let _ = app.state.kv_delete(&key).await?;
    }
    Ok(crate::site::accounts::json_with_session(
        &app,
        &session,
        StatusCode::OK,
        serde_json::json!({"status": "ok", "enabled": input.enabled}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    contract: String,
}

/// `POST /web/transfers/retry {contract}` (JSON, CSRF header): a new run of
/// a failed transfer with the user's stored (not withdrawn) grant.
pub async fn retry(input: UserJson<Retry>) -> Result<HttpResponse, ApiError> {
    let UserJson {
        app,
        session,
        user,
        body: input,
    } = input;
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no agreement of yours with this client",
        )
    };
    let grant = app
        .state
        .stored_grant(&user.pk, &input.contract)
        .await?
        .and_then(|t| parse_stored(&t))
        .ok_or_else(not_found)?;
    if grant.is_revoked() {
        return Err(ApiError::bad_request(
            "revoked",
            "you withdrew this agreement: there is nothing to send",
        ));
    }
    let current =
        match crate::grants::transfer_id_of(&app, &user.pk, &input.contract, &grant).await? {
            Some(id) => app.state.transfer(&id).await?.filter(|t| t.user == user.pk),
            None => None,
        };
    if current
        .as_ref()
        .is_some_and(|t| t.state.as_str() != "failed" && t.state.as_str() != "cancelled")
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_failed",
            "this transfer has not failed: there is nothing to retry",
        ));
    }
    let (id, begin) = start_transfer(&app, &grant).await?;
    record_event(
        &app,
        &user.pk,
        "retry",
        &input.contract,
        &client_name(&grant),
        Some((id, begin.generation)),
    )
    .await;
    Ok(crate::site::accounts::json_with_session(
        &app,
        &session,
        StatusCode::OK,
        serde_json::json!({"status": "ok", "generation": begin.generation}),
    ))
}

/// `POST /dashboard`: where the upload form leads when it is submitted
/// before its script runs (the file input has no name: nothing is sent).
pub async fn form_without_script(
    app: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let session = Session::load(&app, &req).await?;
    Ok(crate::site::pages::error_page(
        &app,
        &session,
        StatusCode::BAD_REQUEST,
        "Nothing was uploaded",
        "Uploading needs the dashboard's script, which signs the upload with your key in this browser, and it had not started yet. Go back to your dashboard and try again once the page is ready.",
    ))
}
