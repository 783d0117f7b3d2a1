//! `aliasctl transfer …` and `aliasctl dead …`: what operators (and users)
//! need to follow transfers and handle dead letters.

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use runtime::config::Config;
use runtime::mq::Broker;

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
/// than `limits.max_event`. The stream is parsed incrementally.
pub async fn follow_with(
    http: &reqwest::Client,
    gateway: &str,
    id: &str,
    token: Option<&str>,
    limits: &HttpLimits,
    mut on_event: impl FnMut(&serde_json::Value),
) -> Result<serde_json::Value> {
    let url = format!(
        "{}/alias/transfers/{id}/events",
        gateway.trim_end_matches('/')
    );
    let mut resp = net::send(with_token(http.get(&url), token), limits, &url).await?;
    if !resp.status().is_success() {
        bail!(
            "{}: no such transfer, or not shown without its capability or the operator token",
            resp.status()
        );
    }
    let mut parser = SseParser::new(limits.max_event);
    let mut last = serde_json::Value::Null;
    let mut events = Vec::new();
    while let Some(chunk) = net::next_chunk(&mut resp, limits.timeout).await? {
        parser.feed(&chunk, |data| events.push(data))?;
        for data in events.drain(..) {
            let t: serde_json::Value =
                serde_json::from_str(&data).context("an event of the stream is not JSON")?;
            on_event(&t);
            last = t;
        }
    }
    if last.is_null() {
        bail!(
            "the events stream of {} ended without news",
            escape_control(id)
        );
    }
    Ok(last)
}

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
    let last = follow_with(&limits.client()?, gateway, id, token, limits, |t| {
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
    })
    .await;
    bar.finish();
    last
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
