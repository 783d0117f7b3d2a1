//! Transfers and sizes in words people read: states, sizes, times, and
//! what a client had received before a withdrawal.

use runtime::state::{RetryNote, Transfer, TransferState};
use serde::{Deserialize, Serialize};

/// A transfer as the pages show it.
#[derive(Debug, Clone, Serialize)]
pub struct TransferView {
    /// The id.
    pub id: String,
    /// The state.
    pub state: String,
    /// Generation.
    pub generation: u64,
    /// Bytes pushed.
    pub bytes_done: u64,
    /// Bytes to push.
    pub bytes_total: u64,
    /// Archives pushed.
    pub files_done: u64,
    /// Archives.
    pub files_total: u64,
    /// Last change, as UTC text (the page shows it in local time).
    pub updated: String,
    /// Last change, ms since the epoch.
    pub updated_ms: u64,
    /// The state in words.
    pub words: String,
    /// What happened, in words for people.
    pub detail: String,
    /// The error or notes as recorded (no URLs), for the technically minded.
    pub technical: String,
    /// Whether a Retry is offered (the run failed).
    pub retry: bool,
    /// Sizes and files in words (`1.2 MB of 3.4 MB, 1 of 2 files`).
    pub sizes: String,
    /// While the client fails and the pusher will retry: the number of the
    /// next attempt (0 otherwise).
    pub retry_attempt: u64,
    /// When the next attempt is due (ms since the epoch; 0 when none).
    pub retry_next_ms: u64,
    /// "Retrying (attempt N), next try at HH:MM UTC" (the page shows the
    /// time in local time); empty when not retrying.
    pub retrying: String,
}

/// A size in bytes as people read it (`1.4 MB`).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "kB", "MB", "GB", "TB"];
    #[allow(clippy::cast_precision_loss)]
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    match unit {
        0 => format!("{n} {}", if n == 1 { "byte" } else { "bytes" }),
        _ if v < 10.0 => format!("{v:.1} {}", UNITS[unit]),
        _ => format!("{v:.0} {}", UNITS[unit]),
    }
}

/// A transfer state in words.
pub fn state_words(state: &str, revoked: bool) -> &'static str {
    match (state, revoked) {
        ("accepted", false) => "Waiting to start",
        ("processing", false) => "Preparing your data",
        ("pushing", false) => "Sending",
        ("done", false) => "Delivered",
        ("failed", _) => "Failed",
        ("cancelled", _) => "Stopped",
        ("done", true) => "Client told of the withdrawal",
        (_, true) => "Telling the client of the withdrawal",
        _ => "Unknown",
    }
}

/// An error or note without URLs (the push address with its long id says
/// nothing to a person): each `http(s)://…` becomes "the client".
pub fn without_urls(text: &str) -> String {
    text.split(' ')
        .map(|w| {
            if w.starts_with("http://") || w.starts_with("https://") {
                "the client"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Milliseconds since the epoch as UTC text.
pub fn when(ms: u64) -> String {
    let secs = i64::try_from(ms / 1000).unwrap_or(0);
    actix_web::cookie::time::OffsetDateTime::from_unix_timestamp(secs).map_or_else(
        |_| ms.to_string(),
        |t| {
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        },
    )
}

/// Milliseconds since the epoch as `HH:MM UTC`.
pub fn clock(ms: u64) -> String {
    let secs = i64::try_from(ms / 1000).unwrap_or(0);
    actix_web::cookie::time::OffsetDateTime::from_unix_timestamp(secs).map_or_else(
        |_| ms.to_string(),
        |t| format!("{:02}:{:02} UTC", t.hour(), t.minute()),
    )
}

/// What was sent of the archives, in words; while the first archives are
/// pushed and the others still built, their totals are not final.
fn sizes(t: &Transfer) -> String {
    if t.bytes_total == 0 {
        return String::new();
    }
    let sent = format!(
        "{} of {}, {} of {} files",
        human_bytes(t.bytes_done),
        human_bytes(t.bytes_total),
        t.files_done,
        t.files_total
    );
    if t.state == TransferState::Pushing && !t.built {
        format!("{sent} so far; more are being prepared")
    } else {
        sent
    }
}

impl TransferView {
    /// Adds the pusher's noted retry, unless the transfer moved on since
    /// the retry was due (a later change means the client answered).
    pub(super) fn with_retry(mut self, note: Option<RetryNote>, updated_ms: u64) -> TransferView {
        if let Some(n) = note.filter(|n| n.next_ms >= updated_ms) {
            self.retry_attempt = n.failures.saturating_add(1);
            self.retry_next_ms = n.next_ms;
            self.retrying = format!(
                "Retrying (attempt {}), next try at {}",
                self.retry_attempt,
                clock(n.next_ms)
            );
        }
        self
    }

    pub(super) fn of(t: &Transfer) -> TransferView {
        let mut detail = t.error.clone().unwrap_or_default();
        if !t.notes.is_empty() {
            if !detail.is_empty() {
                detail.push_str("; ");
            }
            detail.push_str(&t.notes.join("; "));
        }
        let state = t.state.as_str();
        TransferView {
            id: t.id.clone(),
            words: state_words(state, t.revoked).to_owned(),
            retry: state == "failed" && !t.revoked,
            updated_ms: t.updated_ms,
            state: state.to_owned(),
            generation: t.generation,
            bytes_done: t.bytes_done,
            bytes_total: t.bytes_total,
            files_done: t.files_done,
            files_total: t.files_total,
            updated: when(t.updated_ms),
            retry_attempt: 0,
            retry_next_ms: 0,
            retrying: String::new(),
            sizes: sizes(t),
            detail: match (state, t.revoked) {
                ("failed", false) => "The service did not accept the data, and the data bank stopped trying. You can retry once the service works again.".to_owned(),
                ("failed", true) => "The service could not be told of the withdrawal.".to_owned(),
                ("cancelled", _) => "This transfer was stopped before it finished.".to_owned(),
                _ => String::new(),
            },
            technical: without_urls(&detail),
        }
    }
}

/// What a client had received when the user withdrew (kept after the
/// revocation, whose own run delivers nothing).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delivered {
    /// Bytes delivered.
    pub bytes: u64,
    /// Archives delivered.
    pub files: u64,
    /// When the delivery finished (ms since the epoch).
    pub at_ms: u64,
}

impl Delivered {
    /// What was delivered, in words (`2 files (11 kB)`).
    pub fn words(&self) -> String {
        format!(
            "{} file{} ({})",
            self.files,
            if self.files == 1 { "" } else { "s" },
            human_bytes(self.bytes)
        )
    }

    /// When, as UTC text (the page shows it in local time).
    pub fn when(&self) -> String {
        when(self.at_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_say_when_more_archives_are_coming() {
        let mut t = Transfer {
            id: "t".into(),
            generation: 1,
            state: TransferState::Pushing,
            user: String::new(),
            grant_hash: String::new(),
            revoked: false,
            push_url: String::new(),
            created_ms: 0,
            updated_ms: 0,
            files_total: 2,
            files_done: 1,
            bytes_total: 2000,
            bytes_done: 1000,
            error: None,
            notes: Vec::new(),
            dump_bytes_read: 0,
            dump_bytes_total: 0,
            built: false,
        };
        assert!(sizes(&t).ends_with("so far; more are being prepared"));
        t.built = true;
        assert!(sizes(&t).ends_with("1 of 2 files"), "{}", sizes(&t));
        t.bytes_total = 0;
        assert_eq!(sizes(&t), "");
    }
}
