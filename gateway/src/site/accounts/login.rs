//! Login in three requests (`params`, `login/begin`, `login/finish`), the
//! single-use challenges and the checks shared with signup and password
//! change; and logout.

use super::json_with_session;
use super::record::{account, check_username, AccountRecord, PwHash};
use super::throttle::{device_key, login_gate, Gate, DEVICES_KEPT, DEVICE_COOKIE, DEVICE_TTL};
use crate::error::ApiError;
use crate::site::extract::PageJson;
use crate::site::session::{ct_eq, new_id, random_bytes, Session, User};
use crate::AppState;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use protocol::alias::{LoginError, SignedLogin};
use protocol::anychain::{b64u_decode, b64u_encode};
use runtime::state::{now_ms, WebKey, WebList};
use serde::Deserialize;
use std::time::Duration;

/// How long a login challenge may be answered.
const CHALLENGE_TTL: Duration = Duration::from_secs(120);

#[derive(Deserialize)]
pub struct ParamsQuery {
    username: String,
}

/// `GET /web/account/params?username=`: the salt and argon2id parameters
/// (a deterministic fake for unknown names).
pub async fn params(
    app: web::Data<AppState>,
    query: web::Query<ParamsQuery>,
) -> Result<HttpResponse, ApiError> {
    let username = query.username.trim().to_ascii_lowercase();
    check_username(&username)?;
    let (salt, pwhash) = match account(&app, &username).await? {
        Some(record) => (record.salt, record.pwhash),
        None => (
            b64u_encode(&app.web.mac("salt", &username, 16)),
            PwHash::defaults(),
        ),
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({"status": "ok", "salt": salt, "pwhash": pwhash})))
}

pub(super) async fn new_challenge(app: &AppState, purpose: &str) -> Result<String, ApiError> {
    let challenge =
        b64u_encode(&random_bytes(32).map_err(|e| ApiError::unavailable("randomness", e))?);
    app.state
        .kv_set(&WebKey::Challenge(&challenge), purpose, Some(CHALLENGE_TTL))
        .await?;
    Ok(challenge)
}

/// Checks a login answer: valid signature by `pk`, for this origin, fresh,
/// naming a challenge issued for `purpose` and not used before (it is taken).
pub(super) async fn check_answer(
    app: &AppState,
    token: &str,
    pk: &[u8],
    purpose: &str,
) -> Result<(), ApiError> {
    let unauthorized =
        |reason: String| ApiError::new(StatusCode::UNAUTHORIZED, "login_refused", reason);
    let login = SignedLogin::from_token(token, &app.config.limits).map_err(|e| match e {
        LoginError::Invalid(inner) => {
            let mut err = crate::grants::token_error(inner, "login answer");
            err.status = StatusCode::UNAUTHORIZED;
            err
        }
        other => unauthorized(other.to_string()),
    })?;
    #[allow(clippy::cast_precision_loss)]
    let now = now_ms() as f64;
    let max_age = u64::try_from(CHALLENGE_TTL.as_millis()).unwrap_or(u64::MAX);
    login
        .check(
            &app.config.public_origin,
            now,
            max_age,
            app.config.max_future_skew_ms,
        )
        .map_err(|e| unauthorized(e.to_string()))?;
    let challenge = b64u_encode(login.challenge());
    let issued = app.state.kv_take(&WebKey::Challenge(&challenge)).await?;
    if !issued.is_some_and(|p| ct_eq(p.as_bytes(), purpose.as_bytes())) {
        return Err(unauthorized(
            "unknown, expired or already used login challenge".into(),
        ));
    }
    if !ct_eq(login.signer(), pk) {
        return Err(unauthorized(
            "the login answer is not signed by this account's key".into(),
        ));
    }
    Ok(())
}

fn wrong_password() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "wrong_password",
        "wrong username or password",
    )
}

/// The account of `username` when `verifier` matches its public verifier
/// (constant time; an unknown name costs the same comparison).
async fn check_verifier(
    app: &AppState,
    username: &str,
    verifier: &str,
) -> Result<AccountRecord, ApiError> {
    let record = account(app, username).await?;
    let want = record.as_ref().map_or_else(
        || app.web.mac("verifier", username, 32),
        |r| b64u_decode(&r.public_pwd_hash).unwrap_or_default(),
    );
    let sent = b64u_decode(verifier).unwrap_or_default();
    let matches = ct_eq(&sent, &want);
    match record {
        Some(r) if matches => Ok(r),
        _ => Err(wrong_password()),
    }
}

/// The first step of both login requests: the normalized username, past
/// the login throttle, and its account when `verifier` matches (a failure
/// is counted).
pub(super) async fn authenticate(
    app: &AppState,
    req: &HttpRequest,
    username: &str,
    verifier: &str,
) -> Result<(String, AccountRecord, Gate), ApiError> {
    let username = username.trim().to_ascii_lowercase();
    check_username(&username)?;
    let gate = login_gate(app, req, &username).await?;
    match check_verifier(app, &username, verifier).await {
        Ok(record) => Ok((username, record, gate)),
        Err(e) => {
            gate.failed(app).await?;
            Err(e)
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBegin {
    username: String,
    verifier: String,
}

/// `POST /web/login/begin {username, verifier}`.
pub async fn login_begin(
    req: HttpRequest,
    input: PageJson<LoginBegin>,
) -> Result<HttpResponse, ApiError> {
    let PageJson {
        app,
        session,
        body: input,
    } = input;
    let (username, record, _) = authenticate(&app, &req, &input.username, &input.verifier).await?;
    let challenge = new_challenge(&app, &format!("login:{username}")).await?;
    Ok(json_with_session(
        &app,
        &session,
        StatusCode::OK,
        serde_json::json!({
            "status": "ok",
            "challenge": challenge,
            "box": record.sealed,
            "publicKey": record.public_key,
            "origin": app.config.public_origin,
        }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginFinish {
    username: String,
    verifier: String,
    login: String,
}

/// `POST /web/login/finish {username, verifier, login}`: starts the
/// session under a new id.
pub async fn login_finish(
    req: HttpRequest,
    input: PageJson<LoginFinish>,
) -> Result<HttpResponse, ApiError> {
    let PageJson {
        app,
        session,
        body: input,
    } = input;
    let (username, record, gate) =
        authenticate(&app, &req, &input.username, &input.verifier).await?;
    let pk = b64u_decode(&record.public_key).map_err(|e| ApiError::unavailable("account", e))?;
    check_answer(&app, &input.login, &pk, &format!("login:{username}")).await?;
    app.state.reset_count(&gate.pair()).await?;
    // An account holder's records are durable (also those bound before
    // quotas existed).
    app.state.keep_user(&record.public_key).await?;
    // This browser is now a known device of the user.
    let device = match gate.device {
        Some(d) => d,
        None => {
            let d = new_id()?;
            // Indexed per account, so that deleting it forgets them all.
            app.state
                .list_push(&WebList::Devices(&username), &d, DEVICES_KEPT)
                .await?;
            d
        }
    };
    app.state
        .kv_set(&device_key(&username, &device), "1", Some(DEVICE_TTL))
        .await?;
    let user = User {
        username,
        pk: record.public_key,
        since_ms: now_ms(),
    };
    tracing::info!(user = %user.pk, "web login");
    let session = Session::login(&app, &session, user).await?;
    let mut resp = HttpResponse::Ok();
    session.apply(&app, &mut resp);
    let ttl = i64::try_from(DEVICE_TTL.as_secs()).unwrap_or(i64::MAX);
    resp.cookie(
        actix_web::cookie::Cookie::build(DEVICE_COOKIE, device)
            .path("/web/login")
            .http_only(true)
            .secure(app.config.public_origin.starts_with("https:"))
            .same_site(actix_web::cookie::SameSite::Strict)
            .max_age(actix_web::cookie::time::Duration::seconds(ttl))
            .finish(),
    );
    Ok(resp
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({"status": "ok", "csrf": session.csrf(&app)})))
}

#[derive(Deserialize)]
pub struct CsrfForm {
    csrf: Option<String>,
}

/// `POST /logout` (form with `csrf`): ends the session.
pub async fn logout(
    app: web::Data<AppState>,
    req: HttpRequest,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, ApiError> {
    let session = Session::load(&app, &req).await?;
    session.check_csrf(&app, form.csrf.as_deref())?;
    let session = Session::logout(&app, &session).await?;
    let mut resp = HttpResponse::SeeOther();
    session.apply(&app, &mut resp);
    Ok(resp
        .insert_header((header::LOCATION, "/login?logged_out=1"))
        .finish())
}
