//! Signup: a challenge for the new key, then the account record, the bind
//! and the signed answer.

use super::json_with_session;
use super::login::{check_answer, new_challenge};
use super::record::{account_key, check_username, AccountRecord};
use super::throttle::address_budget;
use crate::error::ApiError;
use crate::site::extract::PageJson;
use crate::site::session::{ct_eq, Session, User};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use protocol::alias::BindAuthz;
use protocol::anychain::b64u_decode;
use runtime::state::{now_ms, WebKey};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignupBegin {
    username: String,
}

/// `POST /web/signup/begin {username}`: a challenge for the new key to sign.
pub async fn signup_begin(
    req: HttpRequest,
    input: PageJson<SignupBegin>,
) -> Result<HttpResponse, ApiError> {
    let PageJson {
        app,
        session,
        body: input,
    } = input;
    let username = input.username.trim().to_ascii_lowercase();
    check_username(&username)?;
    address_budget(&app, &req).await?;
    let challenge = new_challenge(&app, &format!("signup:{username}")).await?;
    Ok(json_with_session(
        &app,
        &session,
        StatusCode::OK,
        serde_json::json!({"status": "ok", "challenge": challenge, "origin": app.config.public_origin}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signup {
    record: AccountRecord,
    bind: String,
    login: String,
}

/// `POST /web/signup {record, bind, login}`: creates the account (the name
/// and the key must both be new here), binds the key to this data bank and
/// logs in. `login` answers the signup challenge with the new key, which
/// proves the browser holds it.
pub async fn signup(input: PageJson<Signup>) -> Result<HttpResponse, ApiError> {
    let PageJson {
        app,
        session,
        body: input,
    } = input;
    let record = input.record;
    record.check()?;
    let pk = b64u_decode(&record.public_key).unwrap_or_default();
    check_answer(
        &app,
        &input.login,
        &pk,
        &format!("signup:{}", record.username),
    )
    .await?;
    let bind = BindAuthz::from_token(&input.bind, &app.config.limits)
        .map_err(|e| crate::grants::token_error(e, "bind"))?;
    if !ct_eq(bind.signer(), &pk) || bind.origin() != Some(app.config.public_origin.as_str()) {
        return Err(ApiError::forbidden(
            "bind_mismatch",
            "the bind token must be signed by the account key for this data bank's origin",
        ));
    }
    // Bound first (the policy checks included): an account exists only for
    // a key this data bank knows.
    crate::grants::accept_bind(&app, &input.bind, Some(&record.public_key)).await?;
    let json = serde_json::to_string(&record).map_err(|e| ApiError::unavailable("account", e))?;
    let user_key = WebKey::UserOfKey(&record.public_key);
    if !app
        .state
        .kv_set_nx(&user_key, &record.username, None)
        .await?
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "key_taken",
            "this key already has an account here",
        ));
    }
    if !app
        .state
        .kv_set_nx(&account_key(&record.username), &json, None)
        .await?
    {
        let _ = app.state.kv_delete(&user_key).await;
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "username_taken",
            "this username is taken",
        ));
    }
    app.state.keep_user(&record.public_key).await?;
    let user = User {
        username: record.username.clone(),
        pk: record.public_key.clone(),
        since_ms: now_ms(),
    };
    tracing::info!(user = %user.pk, "web account created");
    let session = Session::login(&app, &session, user).await?;
    Ok(json_with_session(
        &app,
        &session,
        StatusCode::CREATED,
        serde_json::json!({"status": "ok", "csrf": session.csrf(&app)}),
    ))
}
