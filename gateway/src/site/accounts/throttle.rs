//! The login throttle (see the module documentation of `accounts`):
//! budgets per address, per (address or known device, username) and per
//! username, and the known devices.

use crate::error::ApiError;
use crate::AppState;
use actix_web::http::StatusCode;
use actix_web::HttpRequest;
use std::time::Duration;

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
pub(super) const DEVICE_COOKIE: &str = "alias_device";
/// How long a device stays known after its last successful login.
pub(super) const DEVICE_TTL: Duration = Duration::from_secs(90 * 24 * 3600);

fn client_ip(app: &AppState, req: &HttpRequest) -> String {
    crate::ops::client_addr(app, req).map_or_else(|| "unknown".to_owned(), |a| a.to_string())
}

fn throttled(code: &'static str, reason: &str) -> ApiError {
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, reason)
        .with("retry_after", serde_json::json!(ATTEMPT_WINDOW.as_secs()))
}

/// Counts an attempt against the address's budget.
pub(super) async fn address_budget(app: &AppState, req: &HttpRequest) -> Result<(), ApiError> {
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

pub(super) fn device_key(username: &str, device: &str) -> String {
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
pub(super) struct Gate {
    /// The failure counter of this (address or known device, username).
    pub(super) pair: String,
    /// The username's failure counter.
    pub(super) user: String,
    /// The known device, if the request came from one.
    pub(super) device: Option<String>,
}

/// The login throttle (see the module documentation): refuses with 429
/// when this address, or this (address or device, username), is over its
/// budget.
pub(super) async fn login_gate(
    app: &AppState,
    req: &HttpRequest,
    username: &str,
) -> Result<Gate, ApiError> {
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
    pub(super) async fn failed(&self, app: &AppState) -> Result<(), ApiError> {
        app.state.count(&self.pair, ATTEMPT_WINDOW).await?;
        app.state.count(&self.user, ATTEMPT_WINDOW).await?;
        Ok(())
    }
}
