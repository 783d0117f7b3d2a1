//! [`PushClient`]: the four requests of the push protocol (PROTOCOL.md
//! Part 1, "The push sequence alias-bank sends") and the `HEAD` offset query
//! of the resume extension, over one reqwest client with the SSRF guard as
//! its resolver.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use protocol::alias::PushBase;
use protocol::wire::is_safe_segment;
use protocol::wire::{
    ChunkRange, ErrorEnvelope, FileFinish, FileSummary, TransferFinish, UPLOAD_OFFSET,
};
use reqwest::header::{HeaderMap, CONTENT_RANGE, CONTENT_TYPE, RANGE, RETRY_AFTER};
use reqwest::{Method, Response};
use url::Url;

use super::error::{transport, PushError};
use super::retry_after::parse_retry_after;
use super::ssrf::SsrfGuard;

/// Settings of the HTTP client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Limit on establishing a connection.
    pub connect_timeout: Duration,
    /// Limit on one whole request, body and answer included.
    pub request_timeout: Duration,
    /// Bytes per second a request must move, answer included (0: no
    /// minimum): a request gets [`CHUNK_GRACE`] plus its body's size at this
    /// rate (at most `request_timeout`), after which it is abandoned as
    /// stalled. A client that answers `200` after 100 s is thus a failure,
    /// not a success.
    pub min_rate: u64,
    /// How long an idle pooled connection is kept.
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per host.
    pub pool_max_idle_per_host: usize,
    /// TCP keep-alive interval.
    pub tcp_keepalive: Duration,
    /// The `User-Agent` header.
    pub user_agent: String,
    /// How much of an error answer's body is read (for its `reason`).
    pub max_error_body: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            min_rate: 256 * 1024,
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 8,
            tcp_keepalive: Duration::from_secs(60),
            user_agent: concat!("alias-bank-pusher/", env!("CARGO_PKG_VERSION")).to_owned(),
            max_error_body: 4096,
        }
    }
}

/// Time a chunk request gets on top of its size at the minimum rate.
pub const CHUNK_GRACE: Duration = Duration::from_secs(5);

impl ClientConfig {
    /// How long a chunk of `bytes` may take, answer included: the request
    /// timeout, or less when a minimum rate is set.
    pub fn chunk_deadline(&self, bytes: u64) -> Duration {
        if self.min_rate == 0 {
            return self.request_timeout;
        }
        let at_rate = Duration::from_secs_f64(bytes as f64 / self.min_rate as f64);
        CHUNK_GRACE
            .saturating_add(at_rate)
            .min(self.request_timeout)
    }
}

/// A transfer's push URL, `{base}{id}`, parsed and checked; file URLs are
/// derived from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushTarget {
    transfer: Url,
}

fn invalid(url: &str, reason: &'static str) -> PushError {
    PushError::InvalidUrl {
        url: url.chars().take(200).collect(),
        reason,
    }
}

impl PushTarget {
    /// The target `{base}{id}`: `base` is the push base as the contract
    /// gives it (`{scheme}://{domain}{pushEndpoint}`, concatenated as the
    /// reference does), `id` one segment of `[A-Za-z0-9._-]` (the contract
    /// or grant hash). Only `http` and `https`, no userinfo, no query or
    /// fragment.
    pub fn new(base: &str, id: &str) -> Result<Self, PushError> {
        if !is_safe_segment(id) {
            return Err(invalid(
                id,
                "the transfer id is not one segment of [A-Za-z0-9._-]",
            ));
        }
        let text = format!("{base}{id}");
        let url = Url::parse(&text).map_err(|_| invalid(&text, "not a URL"))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(invalid(&text, "the scheme is not http or https"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(&text, "userinfo is not allowed"));
        }
        if url.host().is_none() {
            return Err(invalid(&text, "no host"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid(&text, "query and fragment are not allowed"));
        }
        if !url.path().ends_with(id) {
            return Err(invalid(&text, "the path does not end with the transfer id"));
        }
        Ok(Self { transfer: url })
    }

    /// The target of a checked contract destination.
    pub fn from_push_base(base: &PushBase, id: &str) -> Result<Self, PushError> {
        Self::new(&base.transfer_url(""), id)
    }

    /// The transfer URL (start and transfer finish).
    pub fn transfer_url(&self) -> &Url {
        &self.transfer
    }

    /// The URL of one file: `{transfer}/{file}`, `file` one segment of
    /// `[A-Za-z0-9._-]`.
    pub fn file_url(&self, file: &str) -> Result<Url, PushError> {
        if !is_safe_segment(file) {
            return Err(invalid(
                file,
                "the file name is not one segment of [A-Za-z0-9._-]",
            ));
        }
        let text = format!("{}/{file}", self.transfer);
        Url::parse(&text).map_err(|_| invalid(&text, "not a URL"))
    }
}

/// An acknowledged request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// The `2xx` status.
    pub status: u16,
    /// The client's `Upload-Offset`, when it sent one.
    pub upload_offset: Option<u64>,
}

/// The push protocol client. Cloning is cheap; clones share the connection
/// pool.
#[derive(Debug, Clone)]
pub struct PushClient {
    http: reqwest::Client,
    guard: SsrfGuard,
    config: Arc<ClientConfig>,
}

fn upload_offset(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(UPLOAD_OFFSET)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

impl PushClient {
    /// A client whose connections go through `guard`: redirects are never
    /// followed, proxies are not used, TLS certificates are verified,
    /// connections are pooled and kept alive.
    pub fn new(guard: SsrfGuard, config: ClientConfig) -> Result<Self, PushError> {
        let http = reqwest::Client::builder()
            .dns_resolver(Arc::new(guard.clone()))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(config.connect_timeout)
            .timeout(config.request_timeout)
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            .tcp_keepalive(config.tcp_keepalive)
            .tcp_nodelay(true)
            .user_agent(config.user_agent.clone())
            .build()
            .map_err(PushError::Setup)?;
        Ok(Self {
            http,
            guard,
            config: Arc::new(config),
        })
    }

    /// The SSRF guard.
    pub fn guard(&self) -> &SsrfGuard {
        &self.guard
    }

    /// The settings.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    async fn send(
        &self,
        method: Method,
        name: &'static str,
        url: &Url,
        build: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<Response, PushError> {
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(invalid(
                url.as_str(),
                "not an http or https URL with a host",
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid(url.as_str(), "userinfo is not allowed"));
        }
        // reqwest does not resolve IP literals: check them here.
        self.guard.check_url(url)?;
        let request = build(self.http.request(method, url.clone()));
        request
            .send()
            .await
            .map_err(|e| transport(name, url.as_str(), e))
    }

    /// Acknowledges a `2xx` answer (reading its body, so the connection
    /// goes back to the pool), or turns any other status into
    /// [`PushError::Status`].
    async fn answer(
        &self,
        name: &'static str,
        url: &Url,
        mut response: Response,
    ) -> Result<Ack, PushError> {
        let status = response.status().as_u16();
        let offset = upload_offset(response.headers());
        if response.status().is_success() {
            // The status is what counts; a broken body does not undo it.
            let mut seen = 0usize;
            while let Ok(Some(piece)) = response.chunk().await {
                seen += piece.len();
                if seen > self.config.max_error_body {
                    break;
                }
            }
            return Ok(Ack {
                status,
                upload_offset: offset,
            });
        }
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let mut body = Vec::new();
        while let Ok(Some(piece)) = response.chunk().await {
            body.extend_from_slice(&piece);
            if body.len() > self.config.max_error_body {
                break;
            }
        }
        let reason = ErrorEnvelope::reason_of(&body).map(|r| r.chars().take(300).collect());
        Err(PushError::Status {
            method: name,
            url: url.to_string(),
            status,
            retry_after,
            upload_offset: offset,
            reason,
        })
    }

    /// Start: `PUT {transfer}` with the form body `grant=<token>`. The client
    /// drops the transfer's earlier data. A revoked grant is pushed the same
    /// way, followed by [`PushClient::finish_transfer`] with no files.
    pub async fn start(&self, target: &PushTarget, grant_token: &str) -> Result<Ack, PushError> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant", grant_token)
            .finish();
        let url = target.transfer_url();
        let deadline = self.config.chunk_deadline(body.len() as u64);
        let response = self
            .send(Method::PUT, "PUT", url, |r| {
                r.timeout(deadline)
                    .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(body)
            })
            .await?;
        self.answer("PUT", url, response).await
    }

    /// One chunk: `PUT {file}` with `Content-Type: application/octet-stream`,
    /// `Range: {start}-{end}` (inclusive, no unit) and `Content-Range: bytes
    /// {start}-{end}/{total}`. The chunk must not be empty nor go past
    /// `total`.
    pub async fn put_chunk(
        &self,
        file_url: &Url,
        start: u64,
        bytes: Bytes,
        total: u64,
    ) -> Result<Ack, PushError> {
        if bytes.is_empty() {
            return Err(PushError::InvalidRequest("empty chunk"));
        }
        let range = ChunkRange::of(start, bytes.len() as u64, total)
            .ok_or(PushError::InvalidRequest("chunk past the end of the file"))?;
        let deadline = self.config.chunk_deadline(bytes.len() as u64);
        let response = self
            .send(Method::PUT, "PUT", file_url, |r| {
                r.timeout(deadline)
                    .header(CONTENT_TYPE, "application/octet-stream")
                    .header(RANGE, range.range_header())
                    .header(CONTENT_RANGE, range.content_range_header(total))
                    .body(bytes)
            })
            .await?;
        self.answer("PUT", file_url, response).await
    }

    /// The resume extension: `HEAD {file}`. `Some(offset)` when the client
    /// answers `2xx` with an `Upload-Offset`; `None` when it does not
    /// support the query (any `4xx` but `408`/`425`/`429`, a `3xx`, or no
    /// header). Transient failures are errors, to be retried.
    pub async fn head_offset(&self, file_url: &Url) -> Result<Option<u64>, PushError> {
        let deadline = self.config.chunk_deadline(0);
        let response = self
            .send(Method::HEAD, "HEAD", file_url, |r| r.timeout(deadline))
            .await?;
        match self.answer("HEAD", file_url, response).await {
            Ok(ack) => Ok(ack.upload_offset),
            Err(PushError::Status { status, .. })
                if (300..500).contains(&status) && !matches!(status, 408 | 425 | 429) =>
            {
                Ok(None)
            }
            Err(err) => Err(err),
        }
    }

    /// File finished: `POST {file}` with
    /// `{"action":"finish","size":N,"blake2b":"<b64u>"}`.
    pub async fn finish_file(
        &self,
        file_url: &Url,
        size: u64,
        blake2b_b64: &str,
    ) -> Result<Ack, PushError> {
        let body = FileFinish::new(size, blake2b_b64);
        let deadline = self.config.chunk_deadline(0);
        let response = self
            .send(Method::POST, "POST", file_url, |r| {
                r.timeout(deadline).json(&body)
            })
            .await?;
        self.answer("POST", file_url, response).await
    }

    /// Transfer finished: `POST {transfer}` with
    /// `{"finished":true,"files":[{"name","size","blake2b"}…]}`.
    pub async fn finish_transfer(
        &self,
        target: &PushTarget,
        files: &[FileSummary],
    ) -> Result<Ack, PushError> {
        let body = TransferFinish::new(files.to_vec());
        let url = target.transfer_url();
        let deadline = self
            .config
            .chunk_deadline(256u64.saturating_mul(files.len() as u64));
        let response = self
            .send(Method::POST, "POST", url, |r| {
                r.timeout(deadline).json(&body)
            })
            .await?;
        self.answer("POST", url, response).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let t = PushTarget::new("https://client.example/alias/push/", "AbC-_9").unwrap();
        assert_eq!(
            t.transfer_url().as_str(),
            "https://client.example/alias/push/AbC-_9"
        );
        assert_eq!(
            t.file_url("a.zip").unwrap().as_str(),
            "https://client.example/alias/push/AbC-_9/a.zip"
        );
        let base = PushBase::new(Some("http"), "127.0.0.1:8080", Some("/p/")).unwrap();
        let t = PushTarget::from_push_base(&base, "x").unwrap();
        assert_eq!(t.transfer_url().as_str(), "http://127.0.0.1:8080/p/x");

        for (base, id) in [
            ("https://client.example/alias/push/", "../x"),
            ("https://client.example/alias/push/", "a/b"),
            ("https://client.example/alias/push/", ""),
            ("ftp://client.example/", "x"),
            ("https://user@client.example/", "x"),
            ("https://client.example/?q=", "x"),
            ("https://client.example/#", "x"),
            ("not a url/", "x"),
        ] {
            assert!(
                matches!(PushTarget::new(base, id), Err(PushError::InvalidUrl { .. })),
                "{base}{id}"
            );
        }
        let t = PushTarget::new("https://client.example/alias/push/", "x").unwrap();
        for file in ["..", "a/b", "a b", "", "é"] {
            assert!(t.file_url(file).is_err(), "{file:?}");
        }
    }

    #[test]
    fn deadlines_follow_the_minimum_rate() {
        let config = ClientConfig {
            request_timeout: Duration::from_secs(30),
            min_rate: 256 * 1024,
            ..ClientConfig::default()
        };
        assert_eq!(config.chunk_deadline(0), CHUNK_GRACE);
        assert_eq!(
            config.chunk_deadline(2 << 20),
            CHUNK_GRACE + Duration::from_secs(8)
        );
        assert_eq!(config.chunk_deadline(64 << 20), Duration::from_secs(30));
        let off = ClientConfig {
            min_rate: 0,
            ..config
        };
        assert_eq!(off.chunk_deadline(0), Duration::from_secs(30));
        assert_eq!(
            ClientConfig::default().request_timeout,
            Duration::from_secs(30)
        );
    }

    #[tokio::test]
    async fn only_http_urls_are_sent() {
        let client = PushClient::new(SsrfGuard::default(), ClientConfig::default()).unwrap();
        for url in [
            "file:///etc/passwd",
            "ftp://client.example/x",
            "https://u:p@client.example/x",
        ] {
            let err = client
                .head_offset(&Url::parse(url).unwrap())
                .await
                .unwrap_err();
            assert!(
                matches!(err, PushError::InvalidUrl { .. }),
                "{url}: {err:?}"
            );
        }
    }
}
