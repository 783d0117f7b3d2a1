//! The logged-in user's account: its record (`/web/me`) and the password
//! change.

use super::json_with_session;
use super::login::{authenticate, check_answer, new_challenge};
use super::record::{account, account_key, AccountRecord};
use crate::error::ApiError;
use crate::site::extract::{LoggedIn, UserJson};
use crate::site::session::ct_eq;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use protocol::anychain::b64u_decode;
use serde::Deserialize;

/// `GET /web/me`: the logged-in user's account record (to unlock the key
/// in a new tab) and alias.
pub async fn me(LoggedIn { app, session, user }: LoggedIn) -> Result<HttpResponse, ApiError> {
    let record = account(&app, &user.username)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such account"))?;
    Ok(json_with_session(
        &app,
        &session,
        StatusCode::OK,
        serde_json::json!({
            "status": "ok",
            "username": user.username,
            "alias": crate::site::pages::alias_of(&app, &user.username),
            "record": record,
            "origin": app.config.public_origin,
        }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordBegin {
    verifier: String,
}

/// `POST /web/account/password/begin {verifier}` (logged in, CSRF header):
/// the current password's verifier (throttled like a login) gives a
/// single-use challenge for the password change.
pub async fn password_begin(
    req: HttpRequest,
    input: UserJson<PasswordBegin>,
) -> Result<HttpResponse, ApiError> {
    let UserJson {
        app,
        session,
        user,
        body: input,
    } = input;
    let (username, _, _) = authenticate(&app, &req, &user.username, &input.verifier).await?;
    let challenge = new_challenge(&app, &format!("password:{username}")).await?;
    Ok(json_with_session(
        &app,
        &session,
        StatusCode::OK,
        serde_json::json!({"status": "ok", "challenge": challenge, "origin": app.config.public_origin}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    verifier: String,
    record: AccountRecord,
    login: String,
}

/// `POST /web/account/password {verifier, record, login}` (logged in, CSRF
/// header): replaces the account record with one made from the new
/// password (new salt, verifier and sealed box) that keeps the same key:
/// the current verifier must match, the record must name the same user and
/// public key, and `login` must answer the password challenge with that
/// key. Nothing else changes (grants, dumps and the alias stay).
pub async fn password_change(
    req: HttpRequest,
    input: UserJson<PasswordChange>,
) -> Result<HttpResponse, ApiError> {
    let UserJson {
        app,
        session,
        user,
        body: input,
    } = input;
    let (username, current, gate) =
        authenticate(&app, &req, &user.username, &input.verifier).await?;
    let record = input.record;
    record.check()?;
    if record.username != username
        || !ct_eq(record.public_key.as_bytes(), current.public_key.as_bytes())
    {
        return Err(ApiError::forbidden(
            "not_yours",
            "the new record must keep this account's name and key",
        ));
    }
    let pk = b64u_decode(&current.public_key).map_err(|e| ApiError::unavailable("account", e))?;
    check_answer(&app, &input.login, &pk, &format!("password:{username}")).await?;
    app.state.reset_count(&gate.pair()).await?;
    let json = serde_json::to_string(&record).map_err(|e| ApiError::unavailable("account", e))?;
    app.state
        .kv_set(&account_key(&username), &json, None)
        .await?;
    tracing::info!(user = %current.public_key, "web password changed");
    Ok(json_with_session(
        &app,
        &session,
        StatusCode::OK,
        serde_json::json!({"status": "ok"}),
    ))
}
