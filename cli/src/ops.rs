//! `aliasctl transfer …` and `aliasctl dead …`: what operators (and users)
//! need to follow transfers and handle dead letters.

use anyhow::{bail, Context, Result};
use common::config::Config;
use common::mq::Broker;
use indicatif::{ProgressBar, ProgressStyle};

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
    let url = format!("{}/alias/transfers/{id}", gateway.trim_end_matches('/'));
    let resp = with_token(reqwest::Client::new().get(&url), token)
        .send()
        .await
        .with_context(|| format!("reaching {url}"))?;
    let code = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    if !code.is_success() {
        bail!(
            "{code}: {}",
            body.get("reason").and_then(|r| r.as_str()).unwrap_or("")
        );
    }
    Ok(body)
}

/// Reads a transfer's Server-Sent Events until the stream ends (the
/// transfer ended), calling `on_event` with each status; returns the last.
/// `token` shows the transfer (see [`transfer_token`]).
pub async fn follow(
    http: &reqwest::Client,
    gateway: &str,
    id: &str,
    token: Option<&str>,
    mut on_event: impl FnMut(&serde_json::Value),
) -> Result<serde_json::Value> {
    let url = format!(
        "{}/alias/transfers/{id}/events",
        gateway.trim_end_matches('/')
    );
    let mut resp = with_token(http.get(&url), token)
        .send()
        .await
        .with_context(|| format!("reaching {url}"))?;
    if !resp.status().is_success() {
        bail!(
            "{}: no such transfer, or not shown without its capability or the operator token",
            resp.status()
        );
    }
    let mut buffer = String::new();
    let mut last = serde_json::Value::Null;
    while let Some(chunk) = resp.chunk().await? {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) else {
                continue;
            };
            let t: serde_json::Value = serde_json::from_str(data)?;
            on_event(&t);
            last = t;
        }
    }
    if last.is_null() {
        bail!("the events stream of {id} ended without news");
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
    let last = follow(&reqwest::Client::new(), gateway, id, token, |t| {
        let num = |k: &str| t.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
        bar.set_length(num("bytes_total"));
        bar.set_position(num("bytes_done"));
        let state = t.get("state").and_then(|s| s.as_str()).unwrap_or("?");
        bar.set_message(format!(
            "{state} {}/{} files",
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
