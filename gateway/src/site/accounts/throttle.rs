//! The login throttle (see the module documentation of `accounts`):
//! budgets per address, per (address or known device, username) and per
//! username, and the known devices.

use crate::error::ApiError;
use crate::AppState;
use actix_web::http::StatusCode;
use actix_web::HttpRequest;
use runtime::state::{WebCounter, WebKey, WebList};
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
/// The known devices of an account the index keeps.
pub(super) const DEVICES_KEPT: usize = 100;

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
        .count(&WebCounter::Attempts(&client_ip(app, req)), ATTEMPT_WINDOW)
        .await?;
    if by_ip > MAX_ATTEMPTS_PER_IP {
        return Err(throttled(
            "rate_limited",
            "too many attempts from this address: wait a few minutes",
        ));
    }
    Ok(())
}

pub(super) fn device_key<'a>(username: &'a str, device: &'a str) -> WebKey<'a> {
    WebKey::Device { username, device }
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

/// Forgets every known device of `username` (the account is deleted).
pub(super) async fn forget_devices(app: &AppState, username: &str) -> Result<(), ApiError> {
    let list = WebList::Devices(username);
    for device in app.state.list_range(&list, DEVICES_KEPT).await? {
        let _existed = app.state.kv_delete(&device_key(username, &device)).await?;
    }
    let _existed = app.state.list_delete(&list).await?;
    Ok(())
}

/// Where a login attempt stands in the throttle.
pub(super) struct Gate {
    /// The account name.
    username: String,
    /// The client's address.
    address: String,
    /// The known device, if the request came from one.
    pub(super) device: Option<String>,
}

impl Gate {
    /// The failure counter of this (address or known device, username).
    pub(super) fn pair(&self) -> WebCounter<'_> {
        match &self.device {
            Some(device) => WebCounter::DeviceFailures {
                device,
                username: &self.username,
            },
            None => WebCounter::AddressFailures {
                address: &self.address,
                username: &self.username,
            },
        }
    }

    /// The username's failure counter.
    fn user(&self) -> WebCounter<'_> {
        WebCounter::UserFailures(&self.username)
    }
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
    let gate = Gate {
        device: known_device(app, req, username).await?,
        username: username.to_owned(),
        address: client_ip(app, req),
    };
    let limit = match &gate.device {
        Some(_) => MAX_FAILURES_PER_PAIR,
        None => {
            let slowed = app.state.counted(&gate.user()).await? >= USER_FAILURES_SLOWING;
            if slowed {
                SLOWED_FAILURES_PER_PAIR
            } else {
                MAX_FAILURES_PER_PAIR
            }
        }
    };
    if app.state.counted(&gate.pair()).await? >= limit {
        return Err(throttled(
            "login_throttled",
            "too many failed logins for this name from here: wait a few minutes",
        ));
    }
    Ok(gate)
}

impl Gate {
    pub(super) async fn failed(&self, app: &AppState) -> Result<(), ApiError> {
        app.state.count(&self.pair(), ATTEMPT_WINDOW).await?;
        app.state.count(&self.user(), ATTEMPT_WINDOW).await?;
        Ok(())
    }
}
