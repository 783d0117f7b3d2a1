//! Logging for every binary: `tracing` with an `EnvFilter` from `RUST_LOG`
//! (default [`DEFAULT_FILTER`]), human-readable, or JSON lines when
//! `ALIAS_LOG_JSON=1`. Colours only when stdout is a terminal and `NO_COLOR`
//! is unset (so container and CI logs carry no escape codes).

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// The filter without `RUST_LOG`: `info`, but `object_store` at `warn` (at
/// `info` it logs the response body of every S3 multipart completion).
pub const DEFAULT_FILTER: &str = "info,object_store=warn";

/// Whether human-readable logs get ANSI colours: only on a terminal, and
/// never with `NO_COLOR` set to anything non-empty (<https://no-color.org>).
fn colours(stdout_is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    stdout_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Installs the global subscriber; a second call is a no-op.
pub fn init() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let json = std::env::var("ALIAS_LOG_JSON").is_ok_and(|v| v == "1" || v == "true");
    let ansi = colours(
        std::io::stdout().is_terminal(),
        std::env::var_os("NO_COLOR"),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_target(true);
    // A subscriber already installed (tests, an embedding program) wins.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        assert!(colours(true, None));
        assert!(colours(true, Some("".into())));
        assert!(!colours(true, Some("1".into())));
        assert!(!colours(false, None));
        assert!(!colours(false, Some("1".into())));
    }

    #[test]
    fn default_filter_parses_and_quiets_object_store() {
        assert!(EnvFilter::try_new(DEFAULT_FILTER).is_ok());
        assert!(DEFAULT_FILTER.contains("object_store=warn"));
    }
}
