//! `aliasctl transfer …` and `aliasctl dead …`: what operators (and users)
//! need to follow transfers and handle dead letters.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use runtime::config::Config;
use runtime::mq::Broker;
use runtime::retry::{Backoff, RetryPolicy};

use crate::net::{self, escape_control, HttpLimits};
use crate::sse::SseParser;

/// The token that shows a transfer: `given`, else `ALIAS_OPERATOR_TOKEN`
/// from the environment. A capability (the `access` of the client's
/// `/alias/process` answer) or the operators' token; sent as `Bearer`.
pub fn transfer_token(given: Option<String>) -> Option<String> {
    given
        .or_else(|| std::env::var("ALIAS_OPERATOR_TOKEN").ok())
        .filter(|t| !t.trim().is_empty())
}

fn with_token(req: reqwest::RequestBuilder, token: Option<&str>) -> reqwest::RequestBuilder {
    match token {
        Some(t) => req.bearer_auth(t.trim()),
        None => req,
    }
}

/// `GET /alias/transfers/{id}` of a gateway, showing `token` (see
/// [`transfer_token`]).
pub async fn status(gateway: &str, id: &str, token: Option<&str>) -> Result<serde_json::Value> {
    status_with(gateway, id, token, &HttpLimits::default()).await
}

/// [`status`] with explicit reply limits.
pub async fn status_with(
    gateway: &str,
    id: &str,
    token: Option<&str>,
    limits: &HttpLimits,
) -> Result<serde_json::Value> {
    let url = format!("{}/alias/transfers/{id}", gateway.trim_end_matches('/'));
    let resp = net::send(with_token(limits.client()?.get(&url), token), limits, &url).await?;
    net::json_reply(resp, limits).await
}

/// Reads a transfer's Server-Sent Events until the stream ends (the
/// transfer ended), calling `on_event` with each status; returns the last.
/// `token` shows the transfer (see [`transfer_token`]). Default limits: one
/// event at most 1 MiB, 30 s of silence at most.
pub async fn follow(
    http: &reqwest::Client,
    gateway: &str,
    id: &str,
    token: Option<&str>,
    on_event: impl FnMut(&serde_json::Value),
) -> Result<serde_json::Value> {
    follow_with(http, gateway, id, token, &HttpLimits::default(), on_event).await
}

/// [`follow`] with explicit limits: the answer's head within
/// `limits.timeout`, then no silence longer than that, and no event larger
/// than `limits.max_event`. The stream is parsed incrementally. One
/// attempt: a refusal, a broken stream or a stream that ends without news
/// is an error (see [`watch_retrying`] for following through outages).
pub async fn follow_with(
    http: &reqwest::Client,
    gateway: &str,
    id: &str,
    token: Option<&str>,
    limits: &HttpLimits,
    on_event: impl FnMut(&serde_json::Value),
) -> Result<serde_json::Value> {
    let followed = follow_once(http, gateway, id, token, limits, on_event).await?;
    settle(followed, id)
}

/// What one attempt means when it is not retried: its last status, or the
/// error that ended it.
fn settle(followed: Followed, id: &str) -> Result<serde_json::Value> {
    match followed {
        Followed::Ended(last) if last.is_null() => bail!(
            "the events stream of {} ended without news",
            escape_control(id)
        ),
        Followed::Ended(last) => Ok(last),
        Followed::Refused { status, .. } => bail!(
            "{status}: no such transfer, or not shown without its capability or the operator token"
        ),
        Followed::Unreachable(error) | Followed::Broken(error) => Err(error),
    }
}

/// How one attempt to follow a transfer's events ended.
enum Followed {
    /// The stream ended (the gateway ends it with the transfer); the last
    /// status, `Null` when none came.
    Ended(serde_json::Value),
    /// The gateway answered with a status other than 2xx.
    Refused {
        /// The status.
        status: reqwest::StatusCode,
        /// Its `Retry-After`, in seconds, if any.
        retry_after: Option<Duration>,
    },
    /// No answer came (connection refused, reset, timed out).
    Unreachable(anyhow::Error),
    /// The stream broke (cut, or silent too long).
    Broken(anyhow::Error),
}

async fn follow_once(
    http: &reqwest::Client,
    gateway: &str,
    id: &str,
    token: Option<&str>,
    limits: &HttpLimits,
    mut on_event: impl FnMut(&serde_json::Value),
) -> Result<Followed> {
    let url = format!(
        "{}/alias/transfers/{id}/events",
        gateway.trim_end_matches('/')
    );
    let mut resp = match net::send(with_token(http.get(&url), token), limits, &url).await {
        Ok(resp) => resp,
        Err(error) => return Ok(Followed::Unreachable(error)),
    };
    if !resp.status().is_success() {
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        return Ok(Followed::Refused {
            status: resp.status(),
            retry_after,
        });
    }
    let mut parser = SseParser::new(limits.max_event);
    let mut last = serde_json::Value::Null;
    let mut events = Vec::new();
    loop {
        let chunk = match net::next_chunk(&mut resp, limits.timeout).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => return Ok(Followed::Ended(last)),
            Err(error) => return Ok(Followed::Broken(error)),
        };
        parser.feed(&chunk, |data| events.push(data))?;
        for data in events.drain(..) {
            let t: serde_json::Value =
                serde_json::from_str(&data).context("an event of the stream is not JSON")?;
            on_event(&t);
            last = t;
        }
    }
}

/// How [`watch`] keeps asking a gateway that answers it is unavailable for
/// a while (`503` while Redis or the broker restarts): 250 ms doubling up
/// to 5 s, jittered, at most 40 tries and 2 minutes.
pub const WATCH_RETRY: RetryPolicy = RetryPolicy {
    base: Duration::from_millis(250),
    cap: Duration::from_secs(5),
    max_attempts: 40,
    max_elapsed: Duration::from_secs(120),
};

/// Follows a transfer's events with a progress bar until it ends; returns
/// its final status.
pub async fn watch(
    gateway: &str,
    id: &str,
    token: Option<&str>,
    progress: bool,
) -> Result<serde_json::Value> {
    watch_with(gateway, id, token, progress, &HttpLimits::default()).await
}

/// [`watch`] with explicit limits.
pub async fn watch_with(
    gateway: &str,
    id: &str,
    token: Option<&str>,
    progress: bool,
    limits: &HttpLimits,
) -> Result<serde_json::Value> {
    watch_retrying(gateway, id, token, progress, limits, WATCH_RETRY).await
}

/// Whether a gateway's answer says it is unavailable for a while (`502`,
/// `503`, `504`: its Redis or broker restarting), so asking again later
/// may succeed.
pub fn gateway_unavailable(status: reqwest::StatusCode) -> bool {
    matches!(status.as_u16(), 502..=504)
}

/// Follows a transfer's events through outages of the gateway: a `502`,
/// `503` or `504` answer is asked again after a backoff under `policy`
/// (`on_retry` is told each time), until the stream comes or the policy
/// is spent; everything else ends as [`follow_with`] does. Used by
/// [`watch_retrying`] and by the demo.
#[allow(clippy::too_many_arguments)]
pub async fn follow_retrying(
    http: &reqwest::Client,
    gateway: &str,
    id: &str,
    token: Option<&str>,
    limits: &HttpLimits,
    policy: RetryPolicy,
    mut on_event: impl FnMut(&serde_json::Value),
    mut on_retry: impl FnMut(reqwest::StatusCode, Duration),
) -> Result<serde_json::Value> {
    let mut backoff = Backoff::new(policy);
    loop {
        let attempt = follow_once(http, gateway, id, token, limits, &mut on_event).await;
        let (status, retry_after) = match attempt {
            Ok(Followed::Refused {
                status,
                retry_after,
            }) if gateway_unavailable(status) => (status, retry_after),
            Ok(followed) => return settle(followed, id),
            Err(e) => return Err(e),
        };
        let Some(delay) = backoff.next_delay(retry_after) else {
            bail!(
                "the gateway answered {status}; gave up following {} after {} tries",
                escape_control(id),
                backoff.failures()
            );
        };
        on_retry(status, delay);
        tokio::time::sleep(delay).await;
    }
}

/// [`watch_with`] under `policy`: a `502`, `503` or `504` answer (the
/// gateway without its state store or broker for a while) is asked again
/// after a backoff, each retry said on stderr, until the stream comes or
/// the policy is spent. Everything else ends the watch as [`follow_with`]
/// does: a refusal (`404`: not shown), an unreachable gateway, a broken
/// stream, or a stream that ended (its last status).
pub async fn watch_retrying(
    gateway: &str,
    id: &str,
    token: Option<&str>,
    progress: bool,
    limits: &HttpLimits,
    policy: RetryPolicy,
) -> Result<serde_json::Value> {
    let bar = if progress {
        ProgressBar::new(0)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{msg:24} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let http = limits.client()?;
    let on_event = |t: &serde_json::Value| {
        let num = |k: &str| t.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
        bar.set_length(num("bytes_total"));
        bar.set_position(num("bytes_done"));
        let state = t.get("state").and_then(|s| s.as_str()).unwrap_or("?");
        bar.set_message(format!(
            "{} {}/{} files",
            escape_control(state),
            num("files_done"),
            num("files_total")
        ));
    };
    let on_retry = |status: reqwest::StatusCode, delay: Duration| {
        bar.suspend(|| {
            eprintln!(
                "aliasctl: the gateway answered {status}; following {} again in {:.1} s",
                escape_control(id),
                delay.as_secs_f64()
            );
        });
    };
    let result = follow_retrying(
        &http, gateway, id, token, limits, policy, on_event, on_retry,
    )
    .await;
    bar.finish();
    result
}

/// Lists (`replay == false`) or replays dead letters of the configured
/// namespace (`ALIAS_AMQP_URL`, `ALIAS_NAMESPACE`).
pub async fn dead(replay: bool, limit: usize) -> Result<serde_json::Value> {
    let config = Config::from_env()?;
    let broker = Broker::connect(&config.amqp_url, &config.namespace).await?;
    let out = if replay {
        let n = broker.replay_dead(limit).await?;
        serde_json::json!({ "replayed": n })
    } else {
        let letters = broker.dead_letters(limit).await?;
        serde_json::Value::Array(
            letters
                .into_iter()
                .map(|d| {
                    serde_json::json!({
                        "message_id": d.message_id,
                        "route": d.route.map(|r| r.to_string()),
                        "reason": d.reason,
                        "dead_at": d.dead_at,
                        "body": String::from_utf8_lossy(&d.body),
                    })
                })
                .collect(),
        )
    };
    broker.close().await;
    Ok(out)
}
