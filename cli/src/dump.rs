//! `aliasctl dump …`: uploads, lists and deletes a user's dumps on a data
//! bank, each request signed with the user's key (`alias.bank.request`).

use anyhow::{Context, Result};

use crate::net::{self, HttpLimits};
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use protocol::alias::request_body;
use protocol::anychain::{sign, to_token, SigningKey};
use std::path::Path;

/// What a path segment keeps unencoded: the unreserved characters of RFC
/// 3986 (so `.` stays a dot, never a `%2E` that URL parsers read as a dot
/// segment).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The path of dump `name` of `provider`, each segment percent-encoded:
/// `Your Orders.zip` is `/alias/dumps/amazon/Your%20Orders.zip`. The name is
/// the file's own (the gateway keeps it for display and derives a safe
/// storage name); names that cannot be one path segment are refused here.
pub fn dump_path(provider: &str, name: &str) -> Result<String> {
    if name.is_empty() || name == "." || name == ".." {
        anyhow::bail!("{name:?} is not a file name");
    }
    if name
        .chars()
        .any(|c| c.is_control() || c == '/' || c == '\\')
    {
        anyhow::bail!(
            "the dump name {:?} holds a control character or a path separator: pass --name",
            name
        );
    }
    Ok(format!(
        "/alias/dumps/{}/{}",
        utf8_percent_encode(provider, SEGMENT),
        utf8_percent_encode(name, SEGMENT)
    ))
}

/// The gateway's origin as users bind to it (`GET /alias/` tells it).
async fn origin(http: &reqwest::Client, gateway: &str, limits: &HttpLimits) -> Result<String> {
    let resp = net::send(http.get(format!("{gateway}/alias/")), limits, gateway).await?;
    let d = net::json_reply(resp, limits).await?;
    d.get("origin")
        .and_then(|o| o.as_str())
        .map(str::to_owned)
        .context("the gateway did not say its origin")
}

#[allow(clippy::cast_precision_loss)]
fn authorization(
    key: &SigningKey,
    method: &str,
    path: &str,
    origin: &str,
    size: Option<u64>,
) -> Result<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as f64;
    let signed = sign(key, request_body(method, path, origin, size), now)?;
    Ok(format!(
        "Alias {}",
        utf8_percent_encode(&to_token(&signed), NON_ALPHANUMERIC)
    ))
}

/// Uploads `file` as dump `name` (default: the file name) of `provider`.
pub async fn upload(
    key: &SigningKey,
    gateway: &str,
    provider: &str,
    name: Option<&str>,
    file: &Path,
    progress: bool,
) -> Result<serde_json::Value> {
    upload_with(
        key,
        gateway,
        provider,
        name,
        file,
        progress,
        &HttpLimits::default(),
    )
    .await
}

/// [`upload`] with explicit reply limits (the upload itself has no
/// deadline; the reply is bounded).
#[allow(clippy::too_many_arguments)]
pub async fn upload_with(
    key: &SigningKey,
    gateway: &str,
    provider: &str,
    name: Option<&str>,
    file: &Path,
    progress: bool,
    limits: &HttpLimits,
) -> Result<serde_json::Value> {
    let gateway = gateway.trim_end_matches('/');
    let name = match name {
        Some(n) => n.to_owned(),
        None => file
            .file_name()
            .and_then(|n| n.to_str())
            .context("the file has no usable name; pass --name")?
            .to_owned(),
    };
    let size = tokio::fs::metadata(file)
        .await
        .with_context(|| format!("reading {}", file.display()))?
        .len();
    let http = limits.client()?;
    let origin = origin(&http, gateway, limits).await?;
    let path = dump_path(provider, &name)?;
    let auth = authorization(key, "PUT", &path, &origin, Some(size))?;
    let bar = if progress {
        let bar = ProgressBar::new(size);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message(name.clone());
        bar
    } else {
        ProgressBar::hidden()
    };
    let reader = tokio::fs::File::open(file).await?;
    let counter = bar.clone();
    let stream =
        tokio_util::io::ReaderStream::with_capacity(reader, 1 << 20).inspect(move |chunk| {
            if let Ok(bytes) = chunk {
                counter.inc(bytes.len() as u64);
            }
        });
    let resp = http
        .put(format!("{gateway}{path}"))
        .header("Authorization", auth)
        .header("Content-Length", size)
        .header("Content-Type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .with_context(|| format!("uploading to {gateway}"))?;
    bar.finish();
    net::json_reply(resp, limits).await
}

/// Lists the user's dumps.
pub async fn list(key: &SigningKey, gateway: &str) -> Result<serde_json::Value> {
    list_with(key, gateway, &HttpLimits::default()).await
}

/// [`list`] with explicit reply limits.
pub async fn list_with(
    key: &SigningKey,
    gateway: &str,
    limits: &HttpLimits,
) -> Result<serde_json::Value> {
    let gateway = gateway.trim_end_matches('/');
    let http = limits.client()?;
    let origin = origin(&http, gateway, limits).await?;
    let auth = authorization(key, "GET", "/alias/dumps", &origin, None)?;
    let req = http
        .get(format!("{gateway}/alias/dumps"))
        .header("Authorization", auth);
    net::json_reply(net::send(req, limits, gateway).await?, limits).await
}

/// Deletes one of the user's dumps.
pub async fn delete(
    key: &SigningKey,
    gateway: &str,
    provider: &str,
    name: &str,
) -> Result<serde_json::Value> {
    delete_with(key, gateway, provider, name, &HttpLimits::default()).await
}

/// [`delete`] with explicit reply limits.
pub async fn delete_with(
    key: &SigningKey,
    gateway: &str,
    provider: &str,
    name: &str,
    limits: &HttpLimits,
) -> Result<serde_json::Value> {
    let gateway = gateway.trim_end_matches('/');
    let http = limits.client()?;
    let origin = origin(&http, gateway, limits).await?;
    let path = dump_path(provider, name)?;
    let auth = authorization(key, "DELETE", &path, &origin, None)?;
    let req = http
        .delete(format!("{gateway}{path}"))
        .header("Authorization", auth);
    net::json_reply(net::send(req, limits, gateway).await?, limits).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_paths_encode_the_name_people_have() {
        assert_eq!(
            dump_path("amazon", "Your Orders.zip").unwrap(),
            "/alias/dumps/amazon/Your%20Orders.zip"
        );
        assert_eq!(
            dump_path("google", "takeout-20250101-001.zip").unwrap(),
            "/alias/dumps/google/takeout-20250101-001.zip"
        );
        assert_eq!(
            dump_path("amazon", "a%2F..#?.zip").unwrap(),
            "/alias/dumps/amazon/a%252F..%23%3F.zip"
        );
        for bad in ["", ".", "..", "a/b.zip", "a\\b.zip", "a\nb.zip"] {
            assert!(dump_path("amazon", bad).is_err(), "{bad:?}");
        }
    }
}
