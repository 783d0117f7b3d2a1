//! Logging for every binary: `tracing` with an `EnvFilter` from `RUST_LOG`
//! (default `info`), human-readable, or JSON lines when `ALIAS_LOG_JSON=1`.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; a second call is a no-op.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("ALIAS_LOG_JSON").is_ok_and(|v| v == "1" || v == "true");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true);
    // A subscriber already installed (tests, an embedding program) wins.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
