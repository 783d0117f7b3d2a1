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

use super::session::{ct_eq, json_body, new_id, random_bytes, Session, User};
use crate::error::ApiError;
use crate::AppState;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use protocol::alias::{BindAuthz, LoginError, SignedLogin};
use protocol::anychain::{b64u_decode, b64u_encode};
use runtime::state::now_ms;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long a login challenge may be answered.
const CHALLENGE_TTL: Duration = Duration::from_secs(120);
/// Login and signup attempts per address in [`ATTEMPT_WINDOW`].
const MAX_ATTEMPTS_PER_IP: u64 = 30;
/// Failures per (address or known device, username) in [`ATTEMPT_WINDOW`].
const MAX_FAILURES_PER_PAIR: u64 = 10;
/// Failures of a username (from anywhere) past which addresses without a
/// known device are slowed to [`SLOWED_FAILURES_PER_PAIR`].
const USER_FAILURES_SLOWING: u64 = 10;
/// The per-(address, username) budget of unknown devices while the
/// username is being guessed.
const SLOWED_FAILURES_PER_PAIR: u64 = 3;
const ATTEMPT_WINDOW: Duration = Duration::from_secs(300);
/// The cookie naming a browser that logged in before.
const DEVICE_COOKIE: &str = "alias_device";
/// How long a device stays known after its last successful login.
const DEVICE_TTL: Duration = Duration::from_secs(90 * 24 * 3600);

/// The argon2id parameters of an account (libsodium `crypto_pwhash`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PwHash {
    /// Always `argon2id13`.
    pub alg: String,
    /// Passes.
    pub opslimit: u64,
    /// Memory in bytes.
    pub memlimit: u64,
}

impl PwHash {
    fn defaults() -> PwHash {
        PwHash {
            alg: "argon2id13".into(),
            opslimit: 2,
            memlimit: 64 << 20,
        }
    }
}

/// What the data bank stores per account (never the key).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AccountRecord {
    /// The account name.
    pub username: String,
    /// 16-byte salt, URL-safe base64.
    pub salt: String,
    /// argon2id parameters.
    pub pwhash: PwHash,
    /// Token of the sealed identity (`{"__box":"…"}`).
    #[serde(rename = "box")]
    pub sealed: String,
    /// The 32-byte public verifier, URL-safe base64.
    pub public_pwd_hash: String,
    /// The user's Ed25519 public key, URL-safe base64.
    pub public_key: String,
}

fn bad(code: &'static str, reason: impl Into<String>) -> ApiError {
    ApiError::bad_request(code, reason)
}

fn bytes_of(field: &str, text: &str, len: usize) -> Result<Vec<u8>, ApiError> {
    match b64u_decode(text) {
        Ok(b) if b.len() == len => Ok(b),
        _ => Err(bad(
            "bad_account",
            format!("{field} must be {len} bytes in URL-safe base64"),
        )),
    }
}

/// Usernames: 1-32 of `[a-z0-9._-]`, starting with a letter or digit.
pub fn check_username(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(bad(
            "bad_username",
            "a username is 1-32 of a-z, 0-9, '.', '_' and '-', starting with a letter or digit",
        ))
    }
}

impl AccountRecord {
    fn check(&self) -> Result<(), ApiError> {
        check_username(&self.username)?;
        bytes_of("salt", &self.salt, 16)?;
        bytes_of("publicPwdHash", &self.public_pwd_hash, 32)?;
        bytes_of("publicKey", &self.public_key, 32)?;
        let p = &self.pwhash;
        if p.alg != "argon2id13" || p.opslimit < 2 || p.memlimit < (16 << 20) || p.opslimit > 16 {
            return Err(bad(
                "bad_account",
                "pwhash must be argon2id13 with opslimit 2-16 and memlimit of at least 16 MiB",
            ));
        }
        let sealed: serde_json::Value = serde_json::from_str(&self.sealed)
            .map_err(|_| bad("bad_account", "box must be the token of a sealed box"))?;
        let is_box = sealed.as_object().is_some_and(|o| {
            o.len() == 1
                && o.get("__box")
                    .and_then(serde_json::Value::as_str)
                    .and_then(|b| b64u_decode(b).ok())
                    .is_some_and(|b| b.len() > 48 && b.len() < 16 * 1024)
        });
        if !is_box {
            return Err(bad("bad_account", "box must be the token of a sealed box"));
        }
        Ok(())
    }
}

fn account_key(username: &str) -> String {
    format!("web:account:{username}")
}

/// The account record of `username`, if any.
pub async fn account(app: &AppState, username: &str) -> Result<Option<AccountRecord>, ApiError> {
    match app.state.kv_get(&account_key(username)).await? {
        Some(json) => serde_json::from_str(&json)
            .map(Some)
            .map_err(|e| ApiError::unavailable("account record", e)),
        None => Ok(None),
    }
}

fn client_ip(app: &AppState, req: &HttpRequest) -> String {
    crate::ops::client_addr(app, req).map_or_else(|| "unknown".to_owned(), |a| a.to_string())
}

fn throttled(code: &'static str, reason: &str) -> ApiError {
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, reason)
        .with("retry_after", serde_json::json!(ATTEMPT_WINDOW.as_secs()))
}

/// Counts an attempt against the address's budget.
async fn address_budget(app: &AppState, req: &HttpRequest) -> Result<(), ApiError> {
    let by_ip = app
        .state
        .count(
            &format!("web:attempts:ip:{}", client_ip(app, req)),
            ATTEMPT_WINDOW,
        )
        .await?;
    if by_ip > MAX_ATTEMPTS_PER_IP {
        return Err(throttled(
            "rate_limited",
            "too many attempts from this address: wait a few minutes",
        ));
    }
    Ok(())
}

fn device_key(username: &str, device: &str) -> String {
    format!("web:device:{username}:{device}")
}

/// The device id of the request's device cookie, when it is registered for
/// `username` (the browser logged in as that user before).
async fn known_device(
    app: &AppState,
    req: &HttpRequest,
    username: &str,
) -> Result<Option<String>, ApiError> {
    let Some(device) = req
        .cookie(DEVICE_COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|d| {
            d.len() == 43
                && d.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
    else {
        return Ok(None);
    };
    Ok(app
        .state
        .kv_get(&device_key(username, &device))
        .await?
        .map(|_| device))
}

/// Where a login attempt stands in the throttle.
struct Gate {
    /// The failure counter of this (address or known device, username).
    pair: String,
    /// The username's failure counter.
    user: String,
    /// The known device, if the request came from one.
    device: Option<String>,
}

/// The login throttle (see the module documentation): refuses with 429
/// when this address, or this (address or device, username), is over its
/// budget.
async fn login_gate(app: &AppState, req: &HttpRequest, username: &str) -> Result<Gate, ApiError> {
    address_budget(app, req).await?;
    let device = known_device(app, req, username).await?;
    let user = format!("web:fail:user:{username}");
    let (pair, limit) = match &device {
        Some(d) => (
            format!("web:fail:device:{d}:{username}"),
            MAX_FAILURES_PER_PAIR,
        ),
        None => {
            let pair = format!("web:fail:addr:{}:{username}", client_ip(app, req));
            let slowed = app.state.counted(&user).await? >= USER_FAILURES_SLOWING;
            let limit = if slowed {
                SLOWED_FAILURES_PER_PAIR
            } else {
                MAX_FAILURES_PER_PAIR
            };
            (pair, limit)
        }
    };
    if app.state.counted(&pair).await? >= limit {
        return Err(throttled(
            "login_throttled",
            "too many failed logins for this name from here: wait a few minutes",
        ));
    }
    Ok(Gate { pair, user, device })
}

impl Gate {
    async fn failed(&self, app: &AppState) -> Result<(), ApiError> {
        app.state.count(&self.pair, ATTEMPT_WINDOW).await?;
        app.state.count(&self.user, ATTEMPT_WINDOW).await?;
        Ok(())
    }
}

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

async fn new_challenge(app: &AppState, purpose: &str) -> Result<String, ApiError> {
    let challenge =
        b64u_encode(&random_bytes(32).map_err(|e| ApiError::unavailable("randomness", e))?);
    app.state
        .kv_set(
            &format!("web:challenge:{challenge}"),
            purpose,
            Some(CHALLENGE_TTL),
        )
        .await?;
    Ok(challenge)
}

/// Checks a login answer: valid signature by `pk`, for this origin, fresh,
/// naming a challenge issued for `purpose` and not used before (it is taken).
async fn check_answer(
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
    let issued = app
        .state
        .kv_take(&format!("web:challenge:{challenge}"))
        .await?;
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
async fn authenticate(
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
    app: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let session = Session::load_checked(&app, &req).await?;
    let input: LoginBegin = json_body(&body)?;
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
    app: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let session = Session::load_checked(&app, &req).await?;
    let input: LoginFinish = json_body(&body)?;
    let (username, record, gate) =
        authenticate(&app, &req, &input.username, &input.verifier).await?;
    let pk = b64u_decode(&record.public_key).map_err(|e| ApiError::unavailable("account", e))?;
    check_answer(&app, &input.login, &pk, &format!("login:{username}")).await?;
    app.state.reset_count(&gate.pair).await?;
    // An account holder's records are durable (also those bound before
    // quotas existed).
    app.state.keep_user(&record.public_key).await?;
    // This browser is now a known device of the user.
    let device = match gate.device {
        Some(d) => d,
        None => new_id()?,
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
#[serde(deny_unknown_fields)]
pub struct SignupBegin {
    username: String,
}

/// `POST /web/signup/begin {username}`: a challenge for the new key to sign.
pub async fn signup_begin(
    app: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let session = Session::load_checked(&app, &req).await?;
    let input: SignupBegin = json_body(&body)?;
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
pub async fn signup(
    app: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let session = Session::load_checked(&app, &req).await?;
    let input: Signup = json_body(&body)?;
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
    let user_key = format!("web:user:{}", record.public_key);
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

/// `GET /web/me`: the logged-in user's account record (to unlock the key
/// in a new tab) and alias.
pub async fn me(app: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let session = Session::load(&app, &req).await?;
    let user = session.require_user()?;
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
            "alias": super::pages::alias_of(&app, &user.username),
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
    app: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let session = Session::load_checked(&app, &req).await?;
    let user = session.require_user()?;
    let input: PasswordBegin = json_body(&body)?;
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
    app: web::Data<AppState>,
    req: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let session = Session::load_checked(&app, &req).await?;
    let user = session.require_user()?;
    let input: PasswordChange = json_body(&body)?;
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
    app.state.reset_count(&gate.pair).await?;
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

/// A fresh random id for other modules.
pub fn random_id() -> Result<String, ApiError> {
    new_id()
}
