//! The pusher's section: where it may push, chunks, time and progress
//! limits of a delivery, retries, per-client fairness and breakers.

use super::raw::Raw;
use super::{cidrs, invalid, positive, positive_u32, ConfigError};
use ipnet::IpNet;
use std::time::Duration;

/// Settings only the pusher reads.
#[derive(Debug, Clone)]
pub struct PusherConfig {
    /// Private networks the pusher may reach.
    pub push_allow: Vec<IpNet>,
    /// Push jobs one pusher works on at once.
    pub push_concurrency: usize,
    /// Largest push chunk.
    pub push_chunk: u64,
    /// Concurrent pushes per client (signing key, registrable domain).
    pub push_per_client: u32,
    /// Percent of one pusher's workers one client may hold (1..=100).
    pub push_client_share: u32,
    /// Limit on one push request.
    pub push_timeout: Duration,
    /// Bytes per second a chunk request must move (0: no minimum).
    pub push_min_rate: u64,
    /// Wall-clock limit of one push delivery.
    pub push_run_time: Duration,
    /// Least progress a reported offset short of the chunk's end must show.
    pub push_min_advance: u64,
    /// Rewinds per file before the transfer fails.
    pub push_file_rewinds: u32,
    /// Failed requests per file before the transfer fails.
    pub push_file_failures: u32,
    /// Attempts per push request.
    pub push_attempts: u32,
    /// Retry budget of a push job.
    pub push_budget: Duration,
    /// Bytes pushed per delivery.
    pub push_run_bytes: u64,
    /// Restarts per client (signing key, push host) in 24 hours.
    pub push_client_restarts: u64,
    /// Failures that open a client's breaker.
    pub breaker_failures: u32,
    /// How long a breaker stays open.
    pub breaker_cooldown: Duration,
}

impl PusherConfig {
    /// Validates the pusher's variables.
    pub(super) fn validate(raw: &Raw) -> Result<PusherConfig, ConfigError> {
        Ok(PusherConfig {
            push_allow: cidrs("ALIAS_PUSH_ALLOW", &raw.push_allow)?,
            push_concurrency: push_concurrency(raw.push_concurrency)?,
            push_chunk: max_chunk(positive("ALIAS_PUSH_CHUNK", raw.push_chunk)?)?,
            push_per_client: positive_u32("ALIAS_PUSH_PER_CLIENT", raw.push_per_client)?,
            push_client_share: client_share(raw.push_client_share)?,
            push_timeout: Duration::from_secs(positive(
                "ALIAS_PUSH_TIMEOUT_SECS",
                raw.push_timeout_secs,
            )?),
            push_min_rate: raw.push_min_rate,
            push_run_time: Duration::from_secs(positive("ALIAS_PUSH_RUN_SECS", raw.push_run_secs)?),
            push_min_advance: positive("ALIAS_PUSH_MIN_ADVANCE", raw.push_min_advance)?,
            push_file_rewinds: positive_u32("ALIAS_PUSH_FILE_REWINDS", raw.push_file_rewinds)?,
            push_file_failures: positive_u32("ALIAS_PUSH_FILE_FAILURES", raw.push_file_failures)?,
            push_attempts: positive_u32("ALIAS_PUSH_ATTEMPTS", raw.push_attempts)?,
            push_budget: Duration::from_secs(positive(
                "ALIAS_PUSH_BUDGET_SECS",
                raw.push_budget_secs,
            )?),
            push_run_bytes: positive("ALIAS_PUSH_RUN_BYTES", raw.push_run_bytes)?,
            push_client_restarts: positive("ALIAS_PUSH_CLIENT_RESTARTS", raw.push_client_restarts)?,
            breaker_failures: positive_u32("ALIAS_BREAKER_FAILURES", raw.breaker_failures)?,
            breaker_cooldown: Duration::from_secs(raw.breaker_cooldown_secs),
        })
    }
}

/// The percent of one pusher's workers one client may hold, 1 to 100.
fn client_share(share: u64) -> Result<u32, ConfigError> {
    let share = positive("ALIAS_PUSH_CLIENT_SHARE", share)?;
    if share > 100 {
        return Err(invalid(
            "ALIAS_PUSH_CLIENT_SHARE",
            &share.to_string(),
            "a percentage, 1 to 100",
        ));
    }
    Ok(u32::try_from(share).unwrap_or(100))
}

/// The most push jobs one pusher takes at once: each holds a connection
/// and a chunk's buffers.
pub const MAX_PUSH_CONCURRENCY: u64 = 1024;

fn push_concurrency(jobs: u64) -> Result<usize, ConfigError> {
    let jobs = positive("ALIAS_PUSH_CONCURRENCY", jobs)?;
    if jobs > MAX_PUSH_CONCURRENCY {
        return Err(invalid(
            "ALIAS_PUSH_CONCURRENCY",
            &jobs.to_string(),
            format!("at most {MAX_PUSH_CONCURRENCY} jobs"),
        ));
    }
    Ok(usize::try_from(jobs).unwrap_or(1))
}

/// The largest chunk a client must accept: the reference client refuses
/// bodies over 64 MiB (413).
pub const MAX_PUSH_CHUNK: u64 = 64 << 20;

fn max_chunk(bytes: u64) -> Result<u64, ConfigError> {
    if bytes > MAX_PUSH_CHUNK {
        return Err(invalid(
            "ALIAS_PUSH_CHUNK",
            &bytes.to_string(),
            format!("at most {MAX_PUSH_CHUNK} bytes (64 MiB, the reference client's chunk limit)"),
        ));
    }
    Ok(bytes)
}
