//! Configuration of every alias-bank binary.
//!
//! Layered: built-in defaults, then an optional TOML file named by
//! `ALIAS_CONFIG`, then `ALIAS_*` environment variables. Keys of the file
//! are the lower-case variable names without the prefix (`redis_url`, …);
//! unknown keys are refused. Invalid values stop the binary at start with a
//! message naming the variable.
//!
//! The validated [`Config`] holds the settings every role shares at its top
//! level and one section per role: [`Config::gateway`],
//! [`Config::processor`], [`Config::pusher`]. Each section validates its
//! own variables (`gateway.rs`, `processor.rs`, `pusher.rs`; the shared
//! ones in `shared.rs`); `raw.rs` is the flat layered form the file and the
//! environment fill, `variables.rs` the documented list of variables.

mod gateway;
mod processor;
mod pusher;
mod raw;
mod redis;
mod shared;
#[cfg(test)]
mod tests;
mod variables;

pub use gateway::GatewayConfig;
pub use processor::ProcessorConfig;
pub use pusher::{PusherConfig, MAX_PUSH_CHUNK};
pub use variables::VARIABLES;

use crate::state::Quotas;
use crate::storage::S3Settings;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use ipnet::IpNet;
use protocol::alias::PushId;
use protocol::anychain::Limits;
use raw::{Raw, KEYS};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The validated configuration: the shared settings, then one section per
/// role.
#[derive(Debug, Clone)]
pub struct Config {
    /// Redis URL (the single-server form; `redis` says which form is used).
    pub redis_url: String,
    /// The form of Redis that holds the state: one server, a Redis Cluster
    /// or a Sentinel-watched primary.
    pub redis: crate::state::RedisTarget,
    /// TLS settings for `rediss://` servers (an authority of their own, a
    /// client certificate); empty without them.
    pub redis_tls: crate::state::RedisTls,
    /// Whether any Redis variable was given; without one the embedded mode
    /// (`alias-bank all`) keeps its state in memory.
    pub redis_given: bool,
    /// RabbitMQ URL.
    pub amqp_url: String,
    /// Whether `ALIAS_AMQP_URL` was given; without it the embedded mode
    /// uses an in-process queue.
    pub amqp_given: bool,
    /// Storage URL (`file:///abs`, `s3://…`, `memory://`).
    pub storage_url: String,
    /// S3 settings.
    pub s3: S3Settings,
    /// Key, exchange and queue prefix.
    pub namespace: String,
    /// Gateway listen address.
    pub listen: SocketAddr,
    /// Where a worker serves its operations endpoints, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// This data bank's origin (`scheme://host[:port]`).
    pub public_origin: String,
    /// Which hash names transfers.
    pub push_id: PushId,
    /// Token limits.
    pub limits: Limits,
    /// Future skew tolerated on signature dates.
    pub max_future_skew_ms: u64,
    /// Per-user bounds on the state (grants, contracts, dumps) and the
    /// lifetime of the records of users without account or dump.
    pub quotas: Quotas,
    /// TTL of finished transfers.
    pub finished_ttl: Duration,
    /// Jobs in flight per worker.
    pub worker_concurrency: usize,
    /// Lease of a worker on a job (renewed at a quarter of it).
    pub lease: Duration,
    /// Scratch directory for archives being built.
    pub work_dir: PathBuf,
    /// Directory of catalog overrides.
    pub catalog_dir: Option<PathBuf>,
    /// How long a done transfer's archives are kept.
    pub archive_retention: Duration,
    // The web pages' settings (gateway/src/site reads them here).
    /// Largest dump upload.
    pub max_dump_bytes: u64,
    /// Directory of the web pages' scripts, served at `/static/`.
    pub web_dir: PathBuf,
    /// Secret of the session cookies (`None`: random per process).
    pub session_key: Option<Vec<u8>>,
    /// Lifetime of a web session.
    pub session_ttl: Duration,
    /// The gateway's own settings.
    pub gateway: GatewayConfig,
    /// The processor's own settings.
    pub processor: ProcessorConfig,
    /// The pusher's own settings.
    pub pusher: PusherConfig,
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The layers could not be read or have the wrong types.
    #[error("configuration: {0}")]
    Load(String),
    /// Two variables that exclude each other are both set.
    #[error("configuration: {first} and {second} exclude each other; set one")]
    Exclusive {
        /// The first variable.
        first: &'static str,
        /// The second variable.
        second: &'static str,
    },
    /// A variable is set without the one it needs.
    #[error("configuration: {var} needs {needs}")]
    Needs {
        /// The variable given.
        var: &'static str,
        /// The variable it needs.
        needs: &'static str,
    },
    /// A value is invalid.
    #[error("configuration: {var}={value:?}: {reason}")]
    Invalid {
        /// The environment variable.
        var: &'static str,
        /// The value given.
        value: String,
        /// Why it is refused.
        reason: String,
    },
}

fn invalid(var: &'static str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        var,
        value: value.to_owned(),
        reason: reason.into(),
    }
}

impl Config {
    /// Loads the configuration from the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Raw::default()));
        if let Some(path) = std::env::var_os("ALIAS_CONFIG") {
            let path = PathBuf::from(path);
            if !path.is_file() {
                return Err(invalid(
                    "ALIAS_CONFIG",
                    &path.to_string_lossy(),
                    "no such file",
                ));
            }
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(Env::prefixed("ALIAS_").only(KEYS));
        Self::from_figment(figment)
    }

    /// Loads the configuration from explicit `(KEY, value)` pairs over the
    /// defaults (keys as the environment variables, e.g. `ALIAS_NAMESPACE`);
    /// for tests and embedding.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Raw::default()));
        for (key, value) in pairs {
            let Some(name) = key.strip_prefix("ALIAS_").map(str::to_ascii_lowercase) else {
                return Err(ConfigError::Load(format!(
                    "{key} is not an ALIAS_ variable"
                )));
            };
            if !KEYS.contains(&name.as_str()) {
                return Err(ConfigError::Load(format!("unknown variable {key}")));
            }
            let value: figment::value::Value = value.parse().unwrap_or_else(|_| (*value).into());
            figment = figment.merge((name, value));
        }
        Self::from_figment(figment)
    }

    fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
        let raw: Raw = figment
            .extract()
            .map_err(|e| ConfigError::Load(e.to_string()))?;
        let gateway = GatewayConfig::validate(&raw)?;
        let processor = ProcessorConfig::validate(&raw)?;
        let pusher = PusherConfig::validate(&raw)?;
        shared::validate(raw, gateway, processor, pusher)
    }

    /// A Redis key in this deployment's namespace.
    pub fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.namespace)
    }
}

/// A value that must not be 0.
fn positive(var: &'static str, v: u64) -> Result<u64, ConfigError> {
    if v == 0 {
        Err(invalid(var, "0", "must be positive"))
    } else {
        Ok(v)
    }
}

/// A positive value as a `u32` (larger ones saturate).
fn positive_u32(var: &'static str, v: u64) -> Result<u32, ConfigError> {
    Ok(u32::try_from(positive(var, v)?).unwrap_or(u32::MAX))
}

fn count(var: &'static str, value: u64) -> Result<usize, ConfigError> {
    if value == 0 {
        return Err(invalid(var, "0", "must be positive"));
    }
    Ok(usize::try_from(value).unwrap_or(usize::MAX))
}

/// A comma-separated list of CIDRs (a bare address is a /32 or /128).
fn cidrs(var: &'static str, value: &str) -> Result<Vec<IpNet>, ConfigError> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| invalid(var, s, "not a CIDR such as 127.0.0.0/8"))
        })
        .collect()
}
