//! The documented list of configuration variables.

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
        "ALIAS_REDIS_CLUSTER_URLS",
        "(none)",
        "comma-separated `redis://` seed nodes of a Redis Cluster holding the state instead (excludes `ALIAS_REDIS_URL` and Sentinel)",
    ),
    (
        "ALIAS_REDIS_SENTINEL_URLS",
        "(none)",
        "comma-separated `redis://` (or `rediss://`) URLs of the Sentinels watching the primary that holds the state instead (with `ALIAS_REDIS_SENTINEL_MASTER`)",
    ),
    (
        "ALIAS_REDIS_SENTINEL_MASTER",
        "(none)",
        "the master name the Sentinels monitor",
    ),
    (
        "ALIAS_REDIS_SENTINEL_USERNAME",
        "(none)",
        "the ACL user the primary the Sentinels name is logged in to (the `default` user when unset); the Sentinels' own login goes in their URLs",
    ),
    (
        "ALIAS_REDIS_SENTINEL_PASSWORD",
        "(none)",
        "the password of that primary (`requirepass`, or the ACL user's); never logged",
    ),
    (
        "ALIAS_REDIS_CA_FILE",
        "(system's)",
        "PEM file of the authorities a `rediss://` server's certificate must chain to, instead of the system's",
    ),
    (
        "ALIAS_REDIS_CLIENT_CERT_FILE",
        "(none)",
        "PEM certificate chain shown to `rediss://` servers that ask for one (`tls-auth-clients`), with `ALIAS_REDIS_CLIENT_KEY_FILE`",
    ),
    (
        "ALIAS_REDIS_CLIENT_KEY_FILE",
        "(none)",
        "PEM private key of that certificate",
    ),
    (
        "ALIAS_AMQP_URL",
        "amqp://guest:guest@127.0.0.1:5672/%2f",
        "RabbitMQ carrying the jobs: one URL, or the comma-separated URLs of a cluster's nodes, \
         tried in turn (`alias-bank all` without it: an in-process queue)",
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
        "jobs a processor works on at once (a pusher's are ALIAS_PUSH_CONCURRENCY)",
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
        "ALIAS_BUILD_THREADS",
        "0",
        "units of one build run at once, each on a thread (a unit is one scope of an all-zip export, or all the scopes of an export with tar parts); 0 for the number of cores",
    ),
    (
        "ALIAS_BUILD_NICE",
        "10",
        "niceness added to the build threads (0 to 19), so that on a shared host the latency-bound work (pushes, HTTP, the processor's own state updates) runs before the archives' deflating; 0 keeps their priority",
    ),
    (
        "ALIAS_PUSH_CONCURRENCY",
        "16",
        "push jobs one pusher works on at once (1 to 1024); a push mostly waits on the network, so it takes more than a processor's build",
    ),
    (
        "ALIAS_PUSH_CHUNK",
        "2097152",
        "largest chunk the pusher sends, in bytes (at most 67108864, the reference client's limit)",
    ),
    (
        "ALIAS_PUSH_PER_CLIENT",
        "8",
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
