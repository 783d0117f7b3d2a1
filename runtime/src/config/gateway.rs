//! The gateway's section: signed requests, dump uploads, rate limits,
//! event streams and synchronous waits, the operators' token.

use super::raw::Raw;
use super::{cidrs, count, invalid, positive, positive_u32, ConfigError};
use ipnet::IpNet;
use std::time::Duration;

/// Settings only the gateway reads.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Maximum age of a signed request.
    pub request_max_age_ms: u64,
    /// Longest pause inside a request body.
    pub body_idle_timeout: Duration,
    /// Bytes per second a dump upload must bring in (0: no minimum).
    pub body_min_rate: u64,
    /// Window of waiting over which `body_min_rate` is measured.
    pub body_rate_window: Duration,
    /// Concurrent dump uploads per signing key on one gateway.
    pub uploads_per_key: usize,
    /// Concurrent dump uploads per client address on one gateway.
    pub uploads_per_addr: usize,
    /// How long a synchronous `/alias/process` waits.
    pub process_wait: Duration,
    /// Requests per second per client address.
    pub rate_per_sec: u32,
    /// Reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<IpNet>,
    /// The operators' token for transfer status and events (`None`: no
    /// operator access).
    pub operator_token: Option<String>,
    /// Concurrent event streams per gateway.
    pub max_streams: usize,
    /// Concurrent event streams per client address.
    pub max_streams_per_addr: usize,
    /// Concurrent synchronous `/alias/process` waits per gateway.
    pub max_waits: usize,
    /// Concurrent synchronous `/alias/process` waits per client address.
    pub max_waits_per_addr: usize,
}

impl GatewayConfig {
    /// Validates the gateway's variables.
    pub(super) fn validate(raw: &Raw) -> Result<GatewayConfig, ConfigError> {
        Ok(GatewayConfig {
            request_max_age_ms: positive("ALIAS_REQUEST_MAX_AGE_MS", raw.request_max_age_ms)?,
            body_idle_timeout: Duration::from_millis(positive(
                "ALIAS_BODY_IDLE_TIMEOUT_MS",
                raw.body_idle_timeout_ms,
            )?),
            body_min_rate: raw.body_min_rate,
            body_rate_window: Duration::from_millis(positive(
                "ALIAS_BODY_RATE_WINDOW_MS",
                raw.body_rate_window_ms,
            )?),
            uploads_per_key: count("ALIAS_UPLOADS_PER_KEY", raw.uploads_per_key)?,
            uploads_per_addr: count("ALIAS_UPLOADS_PER_ADDR", raw.uploads_per_addr)?,
            process_wait: Duration::from_secs(raw.process_wait_secs),
            rate_per_sec: positive_u32("ALIAS_RATE_PER_SEC", raw.rate_per_sec)?,
            trusted_proxies: cidrs("ALIAS_TRUSTED_PROXIES", &raw.trusted_proxies)?,
            operator_token: operator_token(&raw.operator_token)?,
            max_streams: count("ALIAS_MAX_STREAMS", raw.max_streams)?,
            max_streams_per_addr: count("ALIAS_MAX_STREAMS_PER_ADDR", raw.max_streams_per_addr)?,
            max_waits: count("ALIAS_MAX_WAITS", raw.max_waits)?,
            max_waits_per_addr: count("ALIAS_MAX_WAITS_PER_ADDR", raw.max_waits_per_addr)?,
        })
    }
}

fn operator_token(value: &str) -> Result<Option<String>, ConfigError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    if value.len() < 32 || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(
            "ALIAS_OPERATOR_TOKEN",
            "(hidden)",
            "must be at least 32 printable characters without spaces",
        ));
    }
    Ok(Some(value.to_owned()))
}
