//! Configuration of every alias-bank binary.
//!
//! Layered: built-in defaults, then an optional TOML file named by
//! `ALIAS_CONFIG`, then `ALIAS_*` environment variables. Keys of the file
//! are the lower-case variable names without the prefix (`redis_url`, …);
//! unknown keys are refused. Invalid values stop the binary at start with a
//! message naming the variable.

use crate::state::Quotas;
use crate::storage::S3Settings;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use ipnet::IpNet;
use protocol::alias::PushId;
use protocol::anychain::Limits;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Every configuration key, as the environment variable that sets it, with
/// its default and meaning (the README's table is checked against this).
pub const VARIABLES: &[(&str, &str, &str)] = &[
    (
        "ALIAS_CONFIG",
        "(none)",
        "optional TOML file with any of the keys below, lower-case without the prefix",
    ),
    (
        "ALIAS_REDIS_URL",
        "redis://127.0.0.1:6379",
        "Redis holding the coordination state (`alias-bank all` without it: in memory)",
    ),
    (
        "ALIAS_AMQP_URL",
        "amqp://guest:guest@127.0.0.1:5672/%2f",
        "RabbitMQ carrying the jobs (`alias-bank all` without it: an in-process queue)",
    ),
    (
        "ALIAS_STORAGE_URL",
        "data",
        "resource storage: a directory path or file:///dir, s3://bucket[/prefix], memory://",
    ),
    (
        "ALIAS_S3_ENDPOINT",
        "(AWS)",
        "S3-compatible endpoint URL, e.g. http://minio:9000",
    ),
    ("ALIAS_S3_REGION", "us-east-1", "S3 region"),
    ("ALIAS_S3_ACCESS_KEY_ID", "(none)", "S3 access key id"),
    (
        "ALIAS_S3_SECRET_ACCESS_KEY",
        "(none)",
        "S3 secret access key",
    ),
    (
        "ALIAS_S3_ALLOW_HTTP",
        "false",
        "allow a plain-http S3 endpoint",
    ),
    (
        "ALIAS_NAMESPACE",
        "alias",
        "prefix of every Redis key, exchange and queue",
    ),
    (
        "ALIAS_LISTEN",
        "127.0.0.1:8080",
        "address the gateway listens on",
    ),
    (
        "ALIAS_METRICS_LISTEN",
        "(none)",
        "address where a processor or pusher serves /healthz, /readyz and /metrics (none: not served)",
    ),
    (
        "ALIAS_PUBLIC_ORIGIN",
        "http://127.0.0.1:8080",
        "this data bank's origin, as users bind to it",
    ),
    (
        "ALIAS_PUSH_ALLOW",
        "(empty)",
        "CIDRs the pusher may reach although private, comma-separated (e.g. 127.0.0.0/8)",
    ),
    (
        "ALIAS_PUSH_ID",
        "contract",
        "which hash names a transfer and its push URL: contract or grant",
    ),
    (
        "ALIAS_MAX_TOKEN_BYTES",
        "65536",
        "largest accepted token (413 too_large past it)",
    ),
    (
        "ALIAS_MAX_TOKEN_DEPTH",
        "64",
        "deepest accepted token nesting",
    ),
    (
        "ALIAS_MAX_FUTURE_SKEW_MS",
        "300000",
        "how far in the future a signature date may be",
    ),
    (
        "ALIAS_REQUEST_MAX_AGE_MS",
        "300000",
        "how old a signed dump-upload request may be",
    ),
    (
        "ALIAS_MAX_DUMP_BYTES",
        "68719476736",
        "largest accepted dump upload",
    ),
    (
        "ALIAS_BODY_IDLE_TIMEOUT_MS",
        "30000",
        "longest pause inside any request body before the gateway answers 408 and closes",
    ),
    (
        "ALIAS_BODY_MIN_RATE",
        "8192",
        "bytes per second a dump upload must bring in every ALIAS_BODY_RATE_WINDOW_MS of waiting (0: no minimum)",
    ),
    (
        "ALIAS_BODY_RATE_WINDOW_MS",
        "30000",
        "window over which ALIAS_BODY_MIN_RATE is measured",
    ),
    (
        "ALIAS_UPLOADS_PER_KEY",
        "2",
        "concurrent dump uploads per signing user key on one gateway (429 past it)",
    ),
    (
        "ALIAS_UPLOADS_PER_ADDR",
        "8",
        "concurrent dump uploads per client address on one gateway (429 past it)",
    ),
    (
        "ALIAS_PROCESS_WAIT_SECS",
        "3600",
        "how long POST /alias/process waits for the transfer before answering 202",
    ),
    (
        "ALIAS_RATE_PER_SEC",
        "20",
        "requests per second allowed per client address (burst: 2x)",
    ),
    (
        "ALIAS_TRUSTED_PROXIES",
        "(empty)",
        "CIDRs of reverse proxies whose X-Forwarded-For is believed, comma-separated",
    ),
    (
        "ALIAS_QUOTA_CONTRACTS",
        "100",
        "contracts a user may hold grants for (409 quota_exceeded past it)",
    ),
    (
        "ALIAS_QUOTA_HISTORY",
        "100",
        "grants kept in a user's history (the oldest are dropped)",
    ),
    (
        "ALIAS_QUOTA_GRANT_BYTES",
        "1048576",
        "bytes of a user's current grants (413 quota_exceeded past it); the history is trimmed to it",
    ),
    (
        "ALIAS_QUOTA_DUMPS",
        "32",
        "dumps a user may hold (409 quota_exceeded past it)",
    ),
    (
        "ALIAS_QUOTA_DUMP_BYTES",
        "274877906944",
        "bytes of all dumps of a user (413 quota_exceeded past it)",
    ),
    (
        "ALIAS_QUOTA_GUEST_TTL_SECS",
        "2592000",
        "how long the records of a user without account or dump live after their last change",
    ),
    (
        "ALIAS_OPERATOR_TOKEN",
        "(unset: no operator access)",
        "secret that operators present (Authorization: Bearer) to read any transfer's status and events; at least 32 characters",
    ),
    (
        "ALIAS_MAX_STREAMS",
        "1024",
        "concurrent transfer event streams per gateway (past it: 503)",
    ),
    (
        "ALIAS_MAX_STREAMS_PER_ADDR",
        "16",
        "concurrent transfer event streams per client address (past it: 429)",
    ),
    (
        "ALIAS_MAX_WAITS",
        "1024",
        "concurrent synchronous POST /alias/process waits per gateway (past it: 503)",
    ),
    (
        "ALIAS_MAX_WAITS_PER_ADDR",
        "64",
        "concurrent synchronous POST /alias/process waits per client address (past it: 429)",
    ),
    (
        "ALIAS_FINISHED_TTL_SECS",
        "604800",
        "how long finished transfers stay in Redis",
    ),
    (
        "ALIAS_WORKER_CONCURRENCY",
        "2",
        "jobs a processor or pusher works on at once",
    ),
    (
        "ALIAS_WORK_DIR",
        "(system temp)",
        "scratch directory of the processor for archives being built, and of the gateway for uploads' spooled parts",
    ),
    (
        "ALIAS_CATALOG_DIR",
        "(embedded)",
        "directory whose provider catalogs (google.toml, …) replace the embedded ones",
    ),
    (
        "ALIAS_MAX_ENTRIES",
        "1000000",
        "most entries in all parts of a user's export, read from the zip end records before any entry is parsed",
    ),
    (
        "ALIAS_MAX_UNCOMPRESSED",
        "274877906944",
        "most bytes an export may declare or inflate, all parts together",
    ),
    (
        "ALIAS_MAX_RATIO",
        "200",
        "largest compression ratio of a zip entry, of all entries together, or of a gzip stream",
    ),
    (
        "ALIAS_JOB_TIMEOUT_SECS",
        "1500",
        "wall-clock time a processor may spend building one transfer's archives before it fails (under RabbitMQ's 30-minute consumer timeout)",
    ),
    (
        "ALIAS_PUSH_CHUNK",
        "2097152",
        "largest chunk the pusher sends, in bytes (at most 67108864, the reference client's limit)",
    ),
    (
        "ALIAS_PUSH_PER_CLIENT",
        "1",
        "concurrent pushes per client (its signing key, and its registrable domain) across all pushers",
    ),
    (
        "ALIAS_PUSH_CLIENT_SHARE",
        "50",
        "percent of one pusher's workers that one client may hold at once (at least one worker)",
    ),
    (
        "ALIAS_PUSH_TIMEOUT_SECS",
        "30",
        "limit on one push request (start, chunk, finish, offset query), answer included",
    ),
    (
        "ALIAS_PUSH_MIN_RATE",
        "262144",
        "bytes per second a chunk request must move (5 s of grace); slower counts as a failed, stalled request (0: off)",
    ),
    (
        "ALIAS_PUSH_RUN_SECS",
        "120",
        "wall-clock limit of one push delivery, then it is re-queued with its progress",
    ),
    (
        "ALIAS_PUSH_MIN_ADVANCE",
        "262144",
        "least progress a client's reported offset (409) must show, unless it is the chunk's end",
    ),
    (
        "ALIAS_PUSH_FILE_REWINDS",
        "10",
        "times a client may report holding less than acknowledged, per file, before the transfer fails",
    ),
    (
        "ALIAS_PUSH_FILE_FAILURES",
        "100",
        "failed or unacknowledged push requests per file before the transfer fails",
    ),
    (
        "ALIAS_PUSH_ATTEMPTS",
        "8",
        "attempts per push request before the job waits in the retry queue",
    ),
    (
        "ALIAS_PUSH_BUDGET_SECS",
        "3600",
        "total time a push job may spend retrying before the transfer fails",
    ),
    (
        "ALIAS_PUSH_RUN_BYTES",
        "268435456",
        "bytes pushed per delivery before the job is re-queued with its progress",
    ),
    (
        "ALIAS_PUSH_CLIENT_RESTARTS",
        "20",
        "restarts (new generations after chunks of unknown outcome) per client signing key and per push host in 24 hours; past it the transfer fails",
    ),
    (
        "ALIAS_ARCHIVE_RETENTION_SECS",
        "604800",
        "how long the archives of a done transfer are kept before the sweeper deletes them (those of cancelled, failed and superseded generations go at once)",
    ),
    (
        "ALIAS_BREAKER_FAILURES",
        "5",
        "consecutive failures that open a client's circuit breaker",
    ),
    (
        "ALIAS_BREAKER_COOLDOWN_SECS",
        "60",
        "how long an open breaker holds a client's pushes",
    ),
    (
        "ALIAS_LEASE_SECS",
        "60",
        "lease of a worker on a job; a dead worker's job moves on after it expires",
    ),
    (
        "ALIAS_WEB_DIR",
        "web",
        "directory of the web pages' scripts (web/src, web/app, web/node_modules), served at /static/",
    ),
    (
        "ALIAS_SESSION_KEY",
        "(random per process)",
        "secret signing the web session cookies, at least 32 bytes as hex or URL-safe base64; set the same on every gateway",
    ),
    (
        "ALIAS_SESSION_SECS",
        "3600",
        "how long a web session lasts after login",
    ),
    ("ALIAS_LOG_JSON", "false", "write logs as JSON lines"),
    (
        "RUST_LOG",
        "info,object_store=warn",
        "log filter (tracing-subscriber EnvFilter syntax); `object_store=info` adds S3 retries and multipart completion bodies",
    ),
];

/// Redis when `ALIAS_REDIS_URL` is not set (the distributed services).
const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// RabbitMQ when `ALIAS_AMQP_URL` is not set (the distributed services).
const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The raw layered values, before validation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    redis_url: Option<String>,
    amqp_url: Option<String>,
    storage_url: String,
    s3_endpoint: Option<String>,
    s3_region: Option<String>,
    s3_access_key_id: Option<String>,
    s3_secret_access_key: Option<String>,
    s3_allow_http: bool,
    namespace: String,
    listen: String,
    metrics_listen: Option<String>,
    public_origin: String,
    push_allow: String,
    push_id: String,
    max_token_bytes: u64,
    max_token_depth: u64,
    max_future_skew_ms: u64,
    request_max_age_ms: u64,
    max_dump_bytes: u64,
    body_idle_timeout_ms: u64,
    body_min_rate: u64,
    body_rate_window_ms: u64,
    uploads_per_key: u64,
    uploads_per_addr: u64,
    process_wait_secs: u64,
    rate_per_sec: u64,
    trusted_proxies: String,
    quota_contracts: u64,
    quota_history: u64,
    quota_grant_bytes: u64,
    quota_dumps: u64,
    quota_dump_bytes: u64,
    quota_guest_ttl_secs: u64,
    operator_token: String,
    max_streams: u64,
    max_streams_per_addr: u64,
    max_waits: u64,
    max_waits_per_addr: u64,
    finished_ttl_secs: u64,
    worker_concurrency: u64,
    work_dir: String,
    catalog_dir: String,
    max_entries: u64,
    max_uncompressed: u64,
    max_ratio: u64,
    job_timeout_secs: u64,
    push_chunk: u64,
    push_per_client: u64,
    push_client_share: u64,
    push_timeout_secs: u64,
    push_min_rate: u64,
    push_run_secs: u64,
    push_min_advance: u64,
    push_file_rewinds: u64,
    push_file_failures: u64,
    push_attempts: u64,
    push_budget_secs: u64,
    push_run_bytes: u64,
    push_client_restarts: u64,
    archive_retention_secs: u64,
    breaker_failures: u64,
    breaker_cooldown_secs: u64,
    lease_secs: u64,
    web_dir: String,
    session_key: String,
    session_secs: u64,
}

impl Default for Raw {
    fn default() -> Self {
        Self {
            redis_url: None,
            amqp_url: None,
            storage_url: "data".into(),
            s3_endpoint: None,
            s3_region: None,
            s3_access_key_id: None,
            s3_secret_access_key: None,
            s3_allow_http: false,
            namespace: "alias".into(),
            listen: "127.0.0.1:8080".into(),
            metrics_listen: None,
            public_origin: "http://127.0.0.1:8080".into(),
            push_allow: String::new(),
            push_id: "contract".into(),
            max_token_bytes: 64 << 10,
            max_token_depth: 64,
            max_future_skew_ms: 300_000,
            request_max_age_ms: 300_000,
            max_dump_bytes: 64 << 30,
            body_idle_timeout_ms: 30_000,
            body_min_rate: 8192,
            body_rate_window_ms: 30_000,
            uploads_per_key: 2,
            uploads_per_addr: 8,
            process_wait_secs: 3600,
            rate_per_sec: 20,
            trusted_proxies: String::new(),
            quota_contracts: Quotas::DEFAULT.contracts,
            quota_history: Quotas::DEFAULT.history,
            quota_grant_bytes: Quotas::DEFAULT.grant_bytes,
            quota_dumps: Quotas::DEFAULT.dumps,
            quota_dump_bytes: Quotas::DEFAULT.dump_bytes,
            quota_guest_ttl_secs: Quotas::DEFAULT.guest_ttl.as_secs(),
            operator_token: String::new(),
            max_streams: 1024,
            max_streams_per_addr: 16,
            max_waits: 1024,
            max_waits_per_addr: 64,
            finished_ttl_secs: 7 * 24 * 3600,
            worker_concurrency: 2,
            work_dir: String::new(),
            catalog_dir: String::new(),
            max_entries: 1_000_000,
            max_uncompressed: 256 << 30,
            max_ratio: 200,
            job_timeout_secs: 1500,
            push_chunk: 2 * 1024 * 1024,
            push_per_client: 1,
            push_client_share: 50,
            push_timeout_secs: 30,
            push_min_rate: 256 * 1024,
            push_run_secs: 120,
            push_min_advance: 256 * 1024,
            push_file_rewinds: 10,
            push_file_failures: 100,
            push_attempts: 8,
            push_budget_secs: 3600,
            push_run_bytes: 256 * 1024 * 1024,
            push_client_restarts: 20,
            archive_retention_secs: 7 * 24 * 3600,
            breaker_failures: 5,
            breaker_cooldown_secs: 60,
            lease_secs: 60,
            web_dir: "web".into(),
            session_key: String::new(),
            session_secs: 3600,
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Redis URL.
    pub redis_url: String,
    /// Whether `ALIAS_REDIS_URL` was given; without it the embedded mode
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
    /// Private networks the pusher may reach.
    pub push_allow: Vec<IpNet>,
    /// Which hash names transfers.
    pub push_id: PushId,
    /// Token limits.
    pub limits: Limits,
    /// Future skew tolerated on signature dates.
    pub max_future_skew_ms: u64,
    /// Maximum age of a signed request.
    pub request_max_age_ms: u64,
    /// Largest dump upload.
    pub max_dump_bytes: u64,
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
    /// Per-user bounds on the state (grants, contracts, dumps) and the
    /// lifetime of the records of users without account or dump.
    pub quotas: Quotas,
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
    /// TTL of finished transfers.
    pub finished_ttl: Duration,
    /// Jobs in flight per worker.
    pub worker_concurrency: usize,
    /// Scratch directory for archives being built.
    pub work_dir: PathBuf,
    /// Directory of catalog overrides.
    pub catalog_dir: Option<PathBuf>,
    /// Most entries in all parts of an export.
    pub max_entries: u64,
    /// Most bytes an export may declare or inflate.
    pub max_uncompressed: u64,
    /// Largest compression ratio of dump entries.
    pub max_ratio: u64,
    /// Wall-clock limit of one processing job.
    pub job_timeout: Duration,
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
    /// How long a done transfer's archives are kept.
    pub archive_retention: Duration,
    /// Failures that open a client's breaker.
    pub breaker_failures: u32,
    /// How long a breaker stays open.
    pub breaker_cooldown: Duration,
    /// Lease of a worker on a job (renewed at a quarter of it).
    pub lease: Duration,
    /// Directory of the web pages' scripts, served at `/static/`.
    pub web_dir: PathBuf,
    /// Secret of the session cookies (`None`: random per process).
    pub session_key: Option<Vec<u8>>,
    /// Lifetime of a web session.
    pub session_ttl: Duration,
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The layers could not be read or have the wrong types.
    #[error("configuration: {0}")]
    Load(String),
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

const KEYS: &[&str] = &[
    "redis_url",
    "amqp_url",
    "storage_url",
    "s3_endpoint",
    "s3_region",
    "s3_access_key_id",
    "s3_secret_access_key",
    "s3_allow_http",
    "namespace",
    "listen",
    "metrics_listen",
    "public_origin",
    "push_allow",
    "push_id",
    "max_token_bytes",
    "max_token_depth",
    "max_future_skew_ms",
    "request_max_age_ms",
    "max_dump_bytes",
    "body_idle_timeout_ms",
    "body_min_rate",
    "body_rate_window_ms",
    "uploads_per_key",
    "uploads_per_addr",
    "process_wait_secs",
    "rate_per_sec",
    "trusted_proxies",
    "quota_contracts",
    "quota_history",
    "quota_grant_bytes",
    "quota_dumps",
    "quota_dump_bytes",
    "quota_guest_ttl_secs",
    "operator_token",
    "max_streams",
    "max_streams_per_addr",
    "max_waits",
    "max_waits_per_addr",
    "finished_ttl_secs",
    "worker_concurrency",
    "work_dir",
    "catalog_dir",
    "max_entries",
    "max_uncompressed",
    "max_ratio",
    "job_timeout_secs",
    "push_chunk",
    "push_per_client",
    "push_client_share",
    "push_timeout_secs",
    "push_min_rate",
    "push_run_secs",
    "push_min_advance",
    "push_file_rewinds",
    "push_file_failures",
    "push_attempts",
    "push_budget_secs",
    "push_run_bytes",
    "push_client_restarts",
    "archive_retention_secs",
    "breaker_failures",
    "breaker_cooldown_secs",
    "lease_secs",
    "web_dir",
    "session_key",
    "session_secs",
];

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
        raw.validate()
    }

    /// A Redis key in this deployment's namespace.
    pub fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.namespace)
    }
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

fn count(var: &'static str, value: u64) -> Result<usize, ConfigError> {
    if value == 0 {
        return Err(invalid(var, "0", "must be positive"));
    }
    Ok(usize::try_from(value).unwrap_or(usize::MAX))
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

impl Raw {
    fn validate(self) -> Result<Config, ConfigError> {
        let redis_given = self.redis_url.is_some();
        let amqp_given = self.amqp_url.is_some();
        let redis_url = self
            .redis_url
            .clone()
            .unwrap_or_else(|| DEFAULT_REDIS_URL.into());
        let amqp_url = self
            .amqp_url
            .clone()
            .unwrap_or_else(|| DEFAULT_AMQP_URL.into());
        let ns_ok = !self.namespace.is_empty()
            && self.namespace.len() <= 48
            && self
                .namespace
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase())
            && self
                .namespace
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !ns_ok {
            return Err(invalid(
                "ALIAS_NAMESPACE",
                &self.namespace,
                "1-48 of [a-z0-9_-], starting with a letter",
            ));
        }
        for (var, value, schemes) in [
            ("ALIAS_REDIS_URL", &redis_url, &["redis", "rediss"][..]),
            ("ALIAS_AMQP_URL", &amqp_url, &["amqp", "amqps"][..]),
        ] {
            let url = url::Url::parse(value).map_err(|e| invalid(var, value, e.to_string()))?;
            if !schemes.contains(&url.scheme()) {
                return Err(invalid(
                    var,
                    value,
                    format!("scheme must be one of {schemes:?}"),
                ));
            }
        }
        let metrics_listen = match self.metrics_listen.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(v) => Some(v.parse().map_err(|_| {
                invalid(
                    "ALIAS_METRICS_LISTEN",
                    v,
                    "expected host:port, e.g. 0.0.0.0:9100",
                )
            })?),
        };
        let listen = self.listen.parse().map_err(|_| {
            invalid(
                "ALIAS_LISTEN",
                &self.listen,
                "expected host:port, e.g. 0.0.0.0:8080",
            )
        })?;
        let push_allow = cidrs("ALIAS_PUSH_ALLOW", &self.push_allow)?;
        let trusted_proxies = cidrs("ALIAS_TRUSTED_PROXIES", &self.trusted_proxies)?;
        let push_id = self
            .push_id
            .parse()
            .map_err(|e: String| invalid("ALIAS_PUSH_ID", &self.push_id, e))?;
        let positive = |var: &'static str, v: u64| {
            if v == 0 {
                Err(invalid(var, "0", "must be positive"))
            } else {
                Ok(v)
            }
        };
        let depth = positive("ALIAS_MAX_TOKEN_DEPTH", self.max_token_depth)?;
        let quotas = Quotas {
            contracts: positive("ALIAS_QUOTA_CONTRACTS", self.quota_contracts)?,
            history: positive("ALIAS_QUOTA_HISTORY", self.quota_history)?,
            grant_bytes: positive("ALIAS_QUOTA_GRANT_BYTES", self.quota_grant_bytes)?,
            dumps: positive("ALIAS_QUOTA_DUMPS", self.quota_dumps)?,
            dump_bytes: positive("ALIAS_QUOTA_DUMP_BYTES", self.quota_dump_bytes)?,
            guest_ttl: Duration::from_secs(positive(
                "ALIAS_QUOTA_GUEST_TTL_SECS",
                self.quota_guest_ttl_secs,
            )?),
        };
        if quotas.grant_bytes < self.max_token_bytes {
            return Err(invalid(
                "ALIAS_QUOTA_GRANT_BYTES",
                &quotas.grant_bytes.to_string(),
                "must be at least ALIAS_MAX_TOKEN_BYTES (one grant must fit)",
            ));
        }
        if depth > 128 {
            return Err(invalid(
                "ALIAS_MAX_TOKEN_DEPTH",
                &depth.to_string(),
                "at most 128",
            ));
        }
        Ok(Config {
            storage_url: storage_url(&self.storage_url)?,
            public_origin: origin(&self.public_origin)?,
            redis_url,
            redis_given,
            amqp_url,
            amqp_given,
            s3: S3Settings {
                endpoint: self.s3_endpoint,
                region: self.s3_region,
                access_key_id: self.s3_access_key_id,
                secret_access_key: self.s3_secret_access_key,
                allow_http: self.s3_allow_http,
                virtual_hosted_style: false,
            },
            namespace: self.namespace,
            listen,
            metrics_listen,
            push_allow,
            push_id,
            limits: Limits {
                max_bytes: usize::try_from(positive(
                    "ALIAS_MAX_TOKEN_BYTES",
                    self.max_token_bytes,
                )?)
                .unwrap_or(usize::MAX),
                max_depth: usize::try_from(depth).unwrap_or(64),
            },
            max_future_skew_ms: self.max_future_skew_ms,
            request_max_age_ms: positive("ALIAS_REQUEST_MAX_AGE_MS", self.request_max_age_ms)?,
            max_dump_bytes: positive("ALIAS_MAX_DUMP_BYTES", self.max_dump_bytes)?,
            body_idle_timeout: Duration::from_millis(positive(
                "ALIAS_BODY_IDLE_TIMEOUT_MS",
                self.body_idle_timeout_ms,
            )?),
            body_min_rate: self.body_min_rate,
            body_rate_window: Duration::from_millis(positive(
                "ALIAS_BODY_RATE_WINDOW_MS",
                self.body_rate_window_ms,
            )?),
            uploads_per_key: usize::try_from(positive(
                "ALIAS_UPLOADS_PER_KEY",
                self.uploads_per_key,
            )?)
            .unwrap_or(usize::MAX),
            uploads_per_addr: usize::try_from(positive(
                "ALIAS_UPLOADS_PER_ADDR",
                self.uploads_per_addr,
            )?)
            .unwrap_or(usize::MAX),
            process_wait: Duration::from_secs(self.process_wait_secs),
            rate_per_sec: u32::try_from(positive("ALIAS_RATE_PER_SEC", self.rate_per_sec)?)
                .unwrap_or(u32::MAX),
            trusted_proxies,
            quotas,
            operator_token: operator_token(&self.operator_token)?,
            max_streams: count("ALIAS_MAX_STREAMS", self.max_streams)?,
            max_streams_per_addr: count("ALIAS_MAX_STREAMS_PER_ADDR", self.max_streams_per_addr)?,
            max_waits: count("ALIAS_MAX_WAITS", self.max_waits)?,
            max_waits_per_addr: count("ALIAS_MAX_WAITS_PER_ADDR", self.max_waits_per_addr)?,
            finished_ttl: Duration::from_secs(positive(
                "ALIAS_FINISHED_TTL_SECS",
                self.finished_ttl_secs,
            )?),
            worker_concurrency: usize::try_from(positive(
                "ALIAS_WORKER_CONCURRENCY",
                self.worker_concurrency,
            )?)
            .unwrap_or(1),
            work_dir: if self.work_dir.is_empty() {
                std::env::temp_dir()
            } else {
                PathBuf::from(&self.work_dir)
            },
            catalog_dir: (!self.catalog_dir.is_empty()).then(|| PathBuf::from(&self.catalog_dir)),
            max_entries: positive("ALIAS_MAX_ENTRIES", self.max_entries)?,
            max_uncompressed: positive("ALIAS_MAX_UNCOMPRESSED", self.max_uncompressed)?,
            max_ratio: positive("ALIAS_MAX_RATIO", self.max_ratio)?,
            job_timeout: Duration::from_secs(positive(
                "ALIAS_JOB_TIMEOUT_SECS",
                self.job_timeout_secs,
            )?),
            push_chunk: max_chunk(positive("ALIAS_PUSH_CHUNK", self.push_chunk)?)?,
            push_per_client: u32::try_from(positive(
                "ALIAS_PUSH_PER_CLIENT",
                self.push_per_client,
            )?)
            .unwrap_or(u32::MAX),
            push_client_share: {
                let share = positive("ALIAS_PUSH_CLIENT_SHARE", self.push_client_share)?;
                if share > 100 {
                    return Err(invalid(
                        "ALIAS_PUSH_CLIENT_SHARE",
                        &share.to_string(),
                        "a percentage, 1 to 100",
                    ));
                }
                u32::try_from(share).unwrap_or(100)
            },
            push_timeout: Duration::from_secs(positive(
                "ALIAS_PUSH_TIMEOUT_SECS",
                self.push_timeout_secs,
            )?),
            push_min_rate: self.push_min_rate,
            push_run_time: Duration::from_secs(positive(
                "ALIAS_PUSH_RUN_SECS",
                self.push_run_secs,
            )?),
            push_min_advance: positive("ALIAS_PUSH_MIN_ADVANCE", self.push_min_advance)?,
            push_file_rewinds: u32::try_from(positive(
                "ALIAS_PUSH_FILE_REWINDS",
                self.push_file_rewinds,
            )?)
            .unwrap_or(u32::MAX),
            push_file_failures: u32::try_from(positive(
                "ALIAS_PUSH_FILE_FAILURES",
                self.push_file_failures,
            )?)
            .unwrap_or(u32::MAX),
            push_attempts: u32::try_from(positive("ALIAS_PUSH_ATTEMPTS", self.push_attempts)?)
                .unwrap_or(u32::MAX),
            push_budget: Duration::from_secs(positive(
                "ALIAS_PUSH_BUDGET_SECS",
                self.push_budget_secs,
            )?),
            push_run_bytes: positive("ALIAS_PUSH_RUN_BYTES", self.push_run_bytes)?,
            push_client_restarts: positive(
                "ALIAS_PUSH_CLIENT_RESTARTS",
                self.push_client_restarts,
            )?,
            archive_retention: Duration::from_secs(self.archive_retention_secs),
            breaker_failures: u32::try_from(positive(
                "ALIAS_BREAKER_FAILURES",
                self.breaker_failures,
            )?)
            .unwrap_or(u32::MAX),
            breaker_cooldown: Duration::from_secs(self.breaker_cooldown_secs),
            lease: Duration::from_secs(positive("ALIAS_LEASE_SECS", self.lease_secs)?),
            web_dir: PathBuf::from(&self.web_dir),
            session_key: session_key(&self.session_key)?,
            session_ttl: Duration::from_secs(positive("ALIAS_SESSION_SECS", self.session_secs)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = Config::from_pairs(&[]).unwrap();
        assert_eq!(c.namespace, "alias");
        assert_eq!(c.push_id, PushId::Contract);
        assert_eq!(
            c.limits.max_bytes,
            64 << 10,
            "fits real grants, under the reference's 100 KB"
        );
        assert!(c.trusted_proxies.is_empty());
        assert_eq!(c.quotas, Quotas::DEFAULT);
        assert!(c.storage_url.starts_with("file:///"));
        assert_eq!(c.key("transfer:x"), "alias:transfer:x");
    }

    #[test]
    fn upload_body_settings() {
        let c = Config::from_pairs(&[]).unwrap();
        assert_eq!(c.body_idle_timeout, Duration::from_secs(30));
        assert_eq!(
            (c.body_min_rate, c.body_rate_window),
            (8192, Duration::from_secs(30))
        );
        assert_eq!((c.uploads_per_key, c.uploads_per_addr), (2, 8));
        let c = Config::from_pairs(&[("ALIAS_BODY_MIN_RATE", "0")]).unwrap();
        assert_eq!(c.body_min_rate, 0);
        for var in [
            "ALIAS_BODY_IDLE_TIMEOUT_MS",
            "ALIAS_BODY_RATE_WINDOW_MS",
            "ALIAS_UPLOADS_PER_KEY",
            "ALIAS_UPLOADS_PER_ADDR",
        ] {
            let err = Config::from_pairs(&[(var, "0")]).unwrap_err();
            assert!(err.to_string().contains(var), "{err}");
        }
    }

    #[test]
    fn session_settings() {
        let c = Config::from_pairs(&[]).unwrap();
        assert!(c.session_key.is_none());
        assert_eq!(c.web_dir, PathBuf::from("web"));
        assert_eq!(c.session_ttl, Duration::from_secs(3600));
        let hex = "ab".repeat(32);
        let c = Config::from_pairs(&[("ALIAS_SESSION_KEY", hex.as_str())]).unwrap();
        assert_eq!(c.session_key, Some(vec![0xab; 32]));
        let b64 = "A".repeat(43);
        let c = Config::from_pairs(&[("ALIAS_SESSION_KEY", b64.as_str())]).unwrap();
        assert_eq!(c.session_key.map(|k| k.len()), Some(32));
        let err = Config::from_pairs(&[("ALIAS_SESSION_KEY", "abcd")]).unwrap_err();
        assert!(err.to_string().contains("ALIAS_SESSION_KEY"));
        assert!(
            !err.to_string().contains("abcd"),
            "the secret is not echoed"
        );
    }

    #[test]
    fn values_are_checked_with_their_variable() {
        let err = |k: &str, v: &str| Config::from_pairs(&[(k, v)]).unwrap_err().to_string();
        assert!(err("ALIAS_NAMESPACE", "Bad NS").contains("ALIAS_NAMESPACE"));
        assert!(err("ALIAS_PUSH_ALLOW", "10.0.0.0/33").contains("ALIAS_PUSH_ALLOW"));
        assert!(err("ALIAS_PUSH_ID", "both").contains("ALIAS_PUSH_ID"));
        assert!(err("ALIAS_LISTEN", "nowhere").contains("ALIAS_LISTEN"));
        assert!(
            err("ALIAS_PUBLIC_ORIGIN", "https://bank.example/path").contains("ALIAS_PUBLIC_ORIGIN")
        );
        assert!(err("ALIAS_REDIS_URL", "http://x").contains("ALIAS_REDIS_URL"));
        assert!(err("ALIAS_STORAGE_URL", "ftp://x").contains("ALIAS_STORAGE_URL"));
        assert!(err("ALIAS_MAX_TOKEN_BYTES", "0").contains("ALIAS_MAX_TOKEN_BYTES"));
        assert!(err("ALIAS_TRUSTED_PROXIES", "10.0.0.0/33").contains("ALIAS_TRUSTED_PROXIES"));
        assert!(err("ALIAS_QUOTA_CONTRACTS", "0").contains("ALIAS_QUOTA_CONTRACTS"));
        assert!(err("ALIAS_QUOTA_GRANT_BYTES", "1000").contains("ALIAS_QUOTA_GRANT_BYTES"));
        assert!(err("ALIAS_PUSH_CHUNK", "67108865").contains("ALIAS_PUSH_CHUNK"));
        let c = Config::from_pairs(&[("ALIAS_PUSH_CHUNK", "67108864")]).unwrap();
        assert_eq!(c.push_chunk, MAX_PUSH_CHUNK);
        assert!(Config::from_pairs(&[("ALIAS_NOPE", "1")]).is_err());
    }

    #[test]
    fn values_are_parsed() {
        let c = Config::from_pairs(&[
            ("ALIAS_PUSH_ALLOW", "127.0.0.0/8, ::1"),
            ("ALIAS_PUSH_ID", "grant"),
            ("ALIAS_PUBLIC_ORIGIN", "https://Bank.Example:8443/"),
            ("ALIAS_STORAGE_URL", "/tmp/x"),
            ("ALIAS_NAMESPACE", "t-1"),
            ("ALIAS_TRUSTED_PROXIES", "10.0.0.0/8,192.168.1.7"),
            ("ALIAS_QUOTA_CONTRACTS", "3"),
            ("ALIAS_QUOTA_GUEST_TTL_SECS", "60"),
        ])
        .unwrap();
        assert_eq!(c.trusted_proxies.len(), 2);
        assert_eq!(c.quotas.contracts, 3);
        assert_eq!(c.quotas.guest_ttl, Duration::from_secs(60));
        assert_eq!(c.push_allow.len(), 2);
        assert_eq!(c.push_id, PushId::Grant);
        assert_eq!(c.public_origin, "https://bank.example:8443");
        assert_eq!(c.storage_url, "file:///tmp/x");
    }

    #[test]
    fn dump_limits() {
        let c = Config::from_pairs(&[]).unwrap();
        assert_eq!(
            (c.max_entries, c.max_uncompressed, c.max_ratio),
            (1_000_000, 256 << 30, 200)
        );
        assert_eq!(c.job_timeout, Duration::from_secs(1500));
        let c = Config::from_pairs(&[
            ("ALIAS_MAX_ENTRIES", "10"),
            ("ALIAS_MAX_UNCOMPRESSED", "1000"),
            ("ALIAS_MAX_RATIO", "50"),
            ("ALIAS_JOB_TIMEOUT_SECS", "3"),
        ])
        .unwrap();
        assert_eq!(
            (c.max_entries, c.max_uncompressed, c.max_ratio),
            (10, 1000, 50)
        );
        assert_eq!(c.job_timeout, Duration::from_secs(3));
        let err = Config::from_pairs(&[("ALIAS_MAX_ENTRIES", "0")]).unwrap_err();
        assert!(err.to_string().contains("ALIAS_MAX_ENTRIES"));
    }

    #[test]
    fn redis_and_rabbitmq_are_given_or_defaulted() {
        let c = Config::from_pairs(&[]).unwrap();
        assert!(!c.redis_given && !c.amqp_given);
        assert_eq!(c.redis_url, DEFAULT_REDIS_URL);
        let c = Config::from_pairs(&[("ALIAS_REDIS_URL", "redis://10.0.0.1:6379")]).unwrap();
        assert!(c.redis_given && !c.amqp_given);
        assert!(Config::from_pairs(&[("ALIAS_AMQP_URL", "http://x")]).is_err());
    }

    #[test]
    fn readme_lists_every_variable() {
        let readme = include_str!("../../README.md");
        for (var, default, _) in VARIABLES {
            let row = format!("| `{var}` | `{default}` |");
            assert!(
                readme.contains(&row),
                "README configuration table lacks {row}"
            );
        }
    }

    #[test]
    fn every_documented_variable_is_read() {
        for (var, _, _) in VARIABLES {
            if matches!(*var, "ALIAS_CONFIG" | "ALIAS_LOG_JSON" | "RUST_LOG") {
                continue;
            }
            let key = var.trim_start_matches("ALIAS_").to_ascii_lowercase();
            assert!(
                KEYS.contains(&key.as_str()),
                "{var} is documented but not read"
            );
        }
    }

    #[test]
    fn every_key_is_documented() {
        for key in KEYS {
            let var = format!("ALIAS_{}", key.to_ascii_uppercase());
            assert!(
                VARIABLES.iter().any(|(v, _, _)| *v == var),
                "{var} missing from VARIABLES"
            );
        }
    }
}
