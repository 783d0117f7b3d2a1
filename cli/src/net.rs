//! Talking to a server the user does not control: every reply bounded in
//! size and time, and everything from it escaped before it reaches a
//! terminal.

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use reqwest::{RequestBuilder, Response};

/// Bounds on what a server may send back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// Largest reply body read, in bytes (larger is an error).
    pub max_reply: usize,
    /// Largest event of an event stream, in bytes.
    pub max_event: usize,
    /// Connect timeout; whole-reply deadline of a one-shot request; longest
    /// silence of an event stream (the gateway sends a keep-alive every 15 s).
    pub timeout: Duration,
}

/// The default largest reply: 16 MiB.
pub const DEFAULT_MAX_REPLY: usize = 16 << 20;

/// The default timeout: 30 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for HttpLimits {
    /// 16 MiB replies, 1 MiB events, 30 s.
    fn default() -> Self {
        Self {
            max_reply: DEFAULT_MAX_REPLY,
            max_event: crate::sse::DEFAULT_MAX_EVENT,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl HttpLimits {
    /// An HTTP client with the connect timeout.
    pub fn client(&self) -> Result<reqwest::Client> {
        Ok(reqwest::Client::builder()
            .connect_timeout(self.timeout)
            .build()?)
    }
}

/// Sends a request; the answer's head must come within the timeout.
pub async fn send(req: RequestBuilder, limits: &HttpLimits, what: &str) -> Result<Response> {
    tokio::time::timeout(limits.timeout, req.send())
        .await
        .map_err(|_| anyhow!("{what}: no answer within {:?}", limits.timeout))?
        .with_context(|| format!("reaching {what}"))
}

/// The next piece of a reply body; an error after `idle` without one.
pub async fn next_chunk(
    resp: &mut Response,
    idle: Duration,
) -> Result<Option<tokio_util::bytes::Bytes>> {
    tokio::time::timeout(idle, resp.chunk())
        .await
        .map_err(|_| anyhow!("the server sent nothing for {idle:?}"))?
        .context("reading the reply")
}

/// A reply body, at most `limits.max_reply` bytes, read within the timeout.
pub async fn read_limited(resp: &mut Response, limits: &HttpLimits) -> Result<Vec<u8>> {
    let max = limits.max_reply;
    if let Some(len) = resp.content_length().filter(|&n| n > max as u64) {
        bail!("the reply of {len} bytes is larger than {max} bytes (--max-reply)");
    }
    let read = async {
        let mut body = Vec::new();
        while let Some(piece) = next_chunk(resp, limits.timeout).await? {
            if body.len() + piece.len() > max {
                bail!("the reply is larger than {max} bytes (--max-reply)");
            }
            body.extend_from_slice(&piece);
        }
        Ok(body)
    };
    tokio::time::timeout(limits.timeout, read)
        .await
        .map_err(|_| anyhow!("the reply took longer than {:?}", limits.timeout))?
}

/// A JSON reply: the body when the status is a success, otherwise an error
/// with the status and the server's `reason` (escaped).
pub async fn json_reply(mut resp: Response, limits: &HttpLimits) -> Result<serde_json::Value> {
    let status = resp.status();
    let body = read_limited(&mut resp, limits).await?;
    let value: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
    if !status.is_success() {
        let reason = match value.as_ref().and_then(|b| b.get("reason")) {
            Some(r) => r.as_str().map_or_else(|| r.to_string(), str::to_owned),
            None => String::from_utf8_lossy(&body).chars().take(200).collect(),
        };
        bail!("{status}: {}", escape_control(&reason));
    }
    value.context("the reply is not JSON")
}

/// Whether a character can drive a terminal: C0 and C1 controls, DEL, and
/// the bidirectional overrides and isolates (text that reads otherwise than
/// it is).
fn is_dangerous(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// `text` with every control character (terminal escapes, carriage
/// returns, bidirectional overrides) written as `\u{…}`; newlines and tabs
/// too, so one value stays one line.
pub fn escape_control(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if is_dangerous(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// Pretty JSON safe for a terminal: `serde_json` escapes C0 controls in
/// strings but not DEL, C1 controls or bidirectional overrides; those are
/// written as `\uXXXX` (still valid JSON: they only occur inside strings).
pub fn to_safe_json(value: &serde_json::Value) -> Result<String> {
    let text = serde_json::to_string_pretty(value)?;
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if is_dangerous(c) && !matches!(c, '\n' | ' ') {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped() {
        assert_eq!(
            escape_control("ok\x1b]52;c;ZXZpbA==\x07\r\ndone \u{9b}2J\u{202e}x"),
            "ok\\u{1b}]52;c;ZXZpbA==\\u{7}\\u{d}\\u{a}done \\u{9b}2J\\u{202e}x"
        );
        assert_eq!(escape_control("plain é ✓"), "plain é ✓");
    }

    #[test]
    fn json_output_stays_json_and_inert() {
        let v = serde_json::json!({"reason": "a\u{1b}[2J\u{9b}31m\u{7f}\u{202e}b", "n": 1});
        let text = to_safe_json(&v).unwrap();
        assert!(
            !text.chars().any(|c| is_dangerous(c) && c != '\n'),
            "{text}"
        );
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, v);
    }
}
