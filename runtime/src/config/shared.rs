//! The shared settings: state, queue and storage, the namespace, the
//! bank's origin and listen address, token limits, quotas, leases, the
//! archives' scratch and retention, and the web pages' settings.

use super::raw::Raw;
use super::{invalid, positive, Config, ConfigError, GatewayConfig, ProcessorConfig, PusherConfig};
use crate::state::Quotas;
use crate::storage::S3Settings;
use protocol::anychain::Limits;
use std::path::PathBuf;
use std::time::Duration;

/// Redis when `ALIAS_REDIS_URL` is not set (the distributed services).
pub(super) const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// RabbitMQ when `ALIAS_AMQP_URL` is not set (the distributed services).
pub(super) const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Validates the shared variables and assembles the configuration with the
/// role sections.
pub(super) fn validate(
    raw: Raw,
    gateway: GatewayConfig,
    processor: ProcessorConfig,
    pusher: PusherConfig,
) -> Result<Config, ConfigError> {
    let redis_given = super::redis::given(&raw);
    let amqp_given = raw.amqp_url.is_some();
    let redis_url = raw
        .redis_url
        .clone()
        .unwrap_or_else(|| DEFAULT_REDIS_URL.into());
    let amqp_url = raw
        .amqp_url
        .clone()
        .unwrap_or_else(|| DEFAULT_AMQP_URL.into());
    namespace(&raw.namespace)?;
    let url = url::Url::parse(&redis_url)
        .map_err(|e| invalid("ALIAS_REDIS_URL", &redis_url, e.to_string()))?;
    if !matches!(url.scheme(), "redis" | "rediss") {
        return Err(invalid(
            "ALIAS_REDIS_URL",
            &redis_url,
            "scheme must be one of [\"redis\", \"rediss\"]",
        ));
    }
    let redis = super::redis::target(&raw, &redis_url)?;
    let redis_tls = super::redis::tls(&raw, &redis)?;
    // One URL, or the comma-separated URLs of a cluster's nodes.
    crate::mq::split_amqp_urls(&amqp_url).map_err(|e| {
        let shown: Vec<String> = amqp_url.split(',').map(crate::mq::shown_url).collect();
        invalid("ALIAS_AMQP_URL", &shown.join(","), e)
    })?;
    let metrics_listen = match raw.metrics_listen.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(v) => Some(v.parse().map_err(|_| {
            invalid(
                "ALIAS_METRICS_LISTEN",
                v,
                "expected host:port, e.g. 0.0.0.0:9100",
            )
        })?),
    };
    let listen = raw.listen.parse().map_err(|_| {
        invalid(
            "ALIAS_LISTEN",
            &raw.listen,
            "expected host:port, e.g. 0.0.0.0:8080",
        )
    })?;
    let push_id = raw
        .push_id
        .parse()
        .map_err(|e: String| invalid("ALIAS_PUSH_ID", &raw.push_id, e))?;
    let limits = limits(raw.max_token_bytes, raw.max_token_depth)?;
    let quotas = quotas(&raw)?;
    Ok(Config {
        storage_url: storage_url(&raw.storage_url)?,
        public_origin: origin(&raw.public_origin)?,
        redis_url,
        redis,
        redis_tls,
        redis_given,
        amqp_url,
        amqp_given,
        s3: S3Settings {
            endpoint: raw.s3_endpoint,
            region: raw.s3_region,
            access_key_id: raw.s3_access_key_id,
            secret_access_key: raw.s3_secret_access_key,
            allow_http: raw.s3_allow_http,
            virtual_hosted_style: false,
        },
        namespace: raw.namespace,
        listen,
        metrics_listen,
        push_id,
        limits,
        max_future_skew_ms: raw.max_future_skew_ms,
        quotas,
        finished_ttl: Duration::from_secs(positive(
            "ALIAS_FINISHED_TTL_SECS",
            raw.finished_ttl_secs,
        )?),
        worker_concurrency: usize::try_from(positive(
            "ALIAS_WORKER_CONCURRENCY",
            raw.worker_concurrency,
        )?)
        .unwrap_or(1),
        lease: Duration::from_secs(positive("ALIAS_LEASE_SECS", raw.lease_secs)?),
        work_dir: if raw.work_dir.is_empty() {
            std::env::temp_dir()
        } else {
            PathBuf::from(&raw.work_dir)
        },
        catalog_dir: (!raw.catalog_dir.is_empty()).then(|| PathBuf::from(&raw.catalog_dir)),
        archive_retention: Duration::from_secs(raw.archive_retention_secs),
        max_dump_bytes: positive("ALIAS_MAX_DUMP_BYTES", raw.max_dump_bytes)?,
        web_dir: PathBuf::from(&raw.web_dir),
        session_key: session_key(&raw.session_key)?,
        session_ttl: Duration::from_secs(positive("ALIAS_SESSION_SECS", raw.session_secs)?),
        gateway,
        processor,
        pusher,
    })
}

/// 1-48 of `[a-z0-9_-]`, starting with a letter.
fn namespace(value: &str) -> Result<(), ConfigError> {
    let ok = !value.is_empty()
        && value.len() <= 48
        && value.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "ALIAS_NAMESPACE",
            value,
            "1-48 of [a-z0-9_-], starting with a letter",
        ))
    }
}

/// The per-user quotas; one grant of the largest token size must fit.
fn quotas(raw: &Raw) -> Result<Quotas, ConfigError> {
    let quotas = Quotas {
        contracts: positive("ALIAS_QUOTA_CONTRACTS", raw.quota_contracts)?,
        history: positive("ALIAS_QUOTA_HISTORY", raw.quota_history)?,
        grant_bytes: positive("ALIAS_QUOTA_GRANT_BYTES", raw.quota_grant_bytes)?,
        dumps: positive("ALIAS_QUOTA_DUMPS", raw.quota_dumps)?,
        dump_bytes: positive("ALIAS_QUOTA_DUMP_BYTES", raw.quota_dump_bytes)?,
        guest_ttl: Duration::from_secs(positive(
            "ALIAS_QUOTA_GUEST_TTL_SECS",
            raw.quota_guest_ttl_secs,
        )?),
    };
    if quotas.grant_bytes < raw.max_token_bytes {
        return Err(invalid(
            "ALIAS_QUOTA_GRANT_BYTES",
            &quotas.grant_bytes.to_string(),
            "must be at least ALIAS_MAX_TOKEN_BYTES (one grant must fit)",
        ));
    }
    Ok(quotas)
}

/// The token limits: a positive size, a depth of 1 to 128.
fn limits(max_bytes: u64, max_depth: u64) -> Result<Limits, ConfigError> {
    let depth = positive("ALIAS_MAX_TOKEN_DEPTH", max_depth)?;
    if depth > 128 {
        return Err(invalid(
            "ALIAS_MAX_TOKEN_DEPTH",
            &depth.to_string(),
            "at most 128",
        ));
    }
    Ok(Limits {
        max_bytes: usize::try_from(positive("ALIAS_MAX_TOKEN_BYTES", max_bytes)?)
            .unwrap_or(usize::MAX),
        max_depth: usize::try_from(depth).unwrap_or(64),
    })
}

fn storage_url(value: &str) -> Result<String, ConfigError> {
    if value.starts_with("s3://") || value.starts_with("memory://") {
        return Ok(value.to_owned());
    }
    let path = match value.strip_prefix("file://") {
        Some(path) if path.starts_with('/') => PathBuf::from(path),
        Some(_) => {
            return Err(invalid(
                "ALIAS_STORAGE_URL",
                value,
                "file URLs need an absolute path (file:///dir)",
            ))
        }
        None if value.contains("://") => {
            return Err(invalid(
                "ALIAS_STORAGE_URL",
                value,
                "use a path, file:///dir, s3://bucket or memory://",
            ))
        }
        None => {
            let path = PathBuf::from(value);
            if path.is_absolute() {
                path
            } else {
                std::env::current_dir()
                    .map_err(|e| invalid("ALIAS_STORAGE_URL", value, e.to_string()))?
                    .join(path)
            }
        }
    };
    Ok(format!("file://{}", path.display()))
}

fn origin(value: &str) -> Result<String, ConfigError> {
    let url =
        url::Url::parse(value).map_err(|e| invalid("ALIAS_PUBLIC_ORIGIN", value, e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid(
            "ALIAS_PUBLIC_ORIGIN",
            value,
            "must be http(s)://host[:port]",
        ));
    }
    if url.path() != "/" || url.query().is_some() || !url.username().is_empty() {
        return Err(invalid(
            "ALIAS_PUBLIC_ORIGIN",
            value,
            "an origin has no path, query or user",
        ));
    }
    Ok(url.origin().ascii_serialization())
}

fn session_key(value: &str) -> Result<Option<Vec<u8>>, ConfigError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    let is_hex = value.len() % 2 == 0 && value.bytes().all(|b| b.is_ascii_hexdigit());
    let bytes = if is_hex {
        (0..value.len())
            .step_by(2)
            .filter_map(|i| u8::from_str_radix(value.get(i..i + 2)?, 16).ok())
            .collect()
    } else {
        protocol::anychain::b64u_decode(value.trim_end_matches('='))
            .map_err(|e| invalid("ALIAS_SESSION_KEY", "(hidden)", e.to_string()))?
    };
    if bytes.len() < 32 {
        return Err(invalid(
            "ALIAS_SESSION_KEY",
            "(hidden)",
            "must hold at least 32 bytes (64 hex digits)",
        ));
    }
    Ok(Some(bytes))
}
