//! Discovery, health, readiness, Prometheus metrics, request observation
//! and per-address rate limiting.

use crate::error::ApiError;
use crate::AppState;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest, HttpResponse};
use governor::clock::DefaultClock;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
};
use runtime::mq::{Queue, Route};
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Instant;

/// `GET /alias/`: what this server is and where its endpoints are.
pub async fn discovery(app: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Access-Control-Allow-Origin", "*"))
        .json(serde_json::json!({
            "what": "alias authz server",
            "reqPath": "/request",
            "processPath": "/alias/process",
            "transfersPath": "/alias/transfers/",
            "origin": app.config.public_origin,
            "software": concat!("alias-bank ", env!("CARGO_PKG_VERSION")),
        }))
}

/// The OpenAPI document of this API (`gateway/api/openapi.json`).
pub const OPENAPI: &str = include_str!("../api/openapi.json");

/// `GET /openapi.json`: the OpenAPI 3.1 document of the HTTP API.
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(("Access-Control-Allow-Origin", "*"))
        .body(OPENAPI)
}

/// `GET /healthz`: the process is up.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// `GET /readyz`: Redis and RabbitMQ are reachable.
pub async fn readyz(app: web::Data<AppState>) -> HttpResponse {
    runtime::ops::readiness(&app.state, &app.broker).await
}

/// Fallback for unknown routes.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint",
    ))
}

/// The gateway's Prometheus metrics.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    /// Outcomes of grant submissions (`accepted`, `joined`, refusal codes).
    pub grants: IntCounterVec,
    transfers: IntGaugeVec,
    queues: IntGaugeVec,
}

impl Metrics {
    /// Registers the metrics.
    pub fn new() -> anyhow::Result<Metrics> {
        let registry = Registry::new_custom(Some("alias".into()), None)?;
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 300.0,
            ]),
            &["route"],
        )?;
        let grants = IntCounterVec::new(
            Opts::new("grant_submissions_total", "grant submissions by outcome"),
            &["outcome"],
        )?;
        let transfers = IntGaugeVec::new(
            Opts::new("transfers", "transfers in Redis by state"),
            &["state"],
        )?;
        let queues = IntGaugeVec::new(
            Opts::new("queue_messages", "messages waiting in RabbitMQ by queue"),
            &["queue"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(grants.clone()))?;
        registry.register(Box::new(transfers.clone()))?;
        registry.register(Box::new(queues.clone()))?;
        Ok(Metrics {
            registry,
            requests,
            latency,
            grants,
            transfers,
            queues,
        })
    }
}

/// `GET /metrics`: Prometheus text format; transfer and queue gauges are
/// read at scrape time.
pub async fn metrics(app: web::Data<AppState>) -> HttpResponse {
    if let Ok(counts) = app.state.count_by_state().await {
        for state in runtime::state::TransferState::ALL {
            let n = counts.get(&state).copied().unwrap_or(0);
            app.metrics
                .transfers
                .with_label_values(&[state.as_str()])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
    for (label, queue) in [
        ("process", Queue::Work(Route::Process)),
        ("push", Queue::Work(Route::Push)),
        ("dead", Queue::Dead),
    ] {
        if let Ok(depth) = app.broker.queue_depth(queue).await {
            app.metrics
                .queues
                .with_label_values(&[label])
                .set(i64::from(depth));
        }
    }
    let mut out = Vec::new();
    if let Err(e) = prometheus::TextEncoder::new().encode(&app.metrics.registry.gather(), &mut out)
    {
        return HttpResponse::InternalServerError().body(e.to_string());
    }
    // In the embedded mode the workers run in this process: their metrics
    // (jobs, bytes) are served here too.
    if let Some(worker) = runtime::ops::metrics() {
        out.extend_from_slice(worker.render().as_bytes());
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(out)
}

/// The address of the client behind `req`: the direct peer, unless the
/// peer is a trusted reverse proxy (`ALIAS_TRUSTED_PROXIES`); then the
/// right-most `X-Forwarded-For` address that is not itself trusted (each
/// trusted proxy appends the address it received from, so everything left
/// of the first untrusted hop may be forged). When every forwarded hop is
/// trusted, the left-most one; when a hop cannot be read, the last trusted
/// hop before it. An untrusted peer's `X-Forwarded-For` is ignored.
pub(crate) fn client_addr(app: &AppState, req: &HttpRequest) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    let trusted = |ip: IpAddr| {
        let ip = canonical(ip);
        app.config
            .gateway
            .trusted_proxies
            .iter()
            .any(|net| net.contains(&ip))
    };
    Some(resolve_client(peer, req.headers(), &trusted))
}

/// [`client_addr`] for a peer, the request headers and a trust predicate.
fn resolve_client(
    peer: IpAddr,
    headers: &actix_web::http::header::HeaderMap,
    trusted: &dyn Fn(IpAddr) -> bool,
) -> IpAddr {
    let peer = canonical(peer);
    if !trusted(peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Some(ip) = parse_hop(hop) else {
            break;
        };
        client = ip;
        if !trusted(ip) {
            break;
        }
    }
    client
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    }
}

/// One `X-Forwarded-For` entry: an address, possibly with a port.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        .map(canonical)
}

/// Checks between two prunings of the per-address states.
const PRUNE_EVERY: u64 = 4096;

/// Requests per second per client address, with a burst of twice that.
///
/// The per-address states are pruned every [`PRUNE_EVERY`] checks: an
/// address whose state is back to a fresh one is forgotten, so that a
/// stream of new addresses (rotating IPv6, say) does not grow the gateway.
pub struct Limiter {
    limiter: RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, DefaultClock>,
    checks: std::sync::atomic::AtomicU64,
}

impl Limiter {
    /// A limiter allowing `per_sec` requests per second per address.
    pub fn new(per_sec: u32) -> Limiter {
        let rate = NonZeroU32::new(per_sec).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(per_sec.saturating_mul(2)).unwrap_or(rate);
        Limiter {
            limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            checks: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Addresses whose state is remembered.
    pub fn tracked(&self) -> usize {
        self.limiter.len()
    }

    /// Forgets the addresses whose state is back to a fresh one.
    fn prune(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    fn check(&self, ip: IpAddr) -> Result<(), u64> {
        let n = self
            .checks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if n % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.prune();
        }
        self.limiter.check_key(&ip).map_err(|not_until| {
            let wait =
                not_until.wait_time_from(governor::clock::Clock::now(&DefaultClock::default()));
            wait.as_secs().max(1)
        })
    }
}

/// A body refused by actix for its size (413 in plain text) answered as
/// every other error: the JSON envelope with code `too_large`.
fn json_payload_errors<B: MessageBody + 'static>(
    res: ServiceResponse<B>,
) -> ServiceResponse<actix_web::body::BoxBody> {
    let is_json = res
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if res.status() != StatusCode::PAYLOAD_TOO_LARGE || is_json {
        return res.map_into_boxed_body();
    }
    let err = ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        "the request body is larger than this endpoint accepts",
    );
    let (req, _) = res.into_parts();
    ServiceResponse::new(req, actix_web::ResponseError::error_response(&err))
}

/// Middleware: rate limiting (not for health and metrics), request
/// metrics by route pattern, and a log line per request.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().to_string();
    let app = req.app_data::<web::Data<AppState>>().cloned();
    let exempt = matches!(route.as_str(), "/healthz" | "/readyz" | "/metrics");
    if let (Some(app), false) = (&app, exempt) {
        if let Some(ip) = client_addr(app, req.request()) {
            if let Err(retry) = app.limiter.check(ip) {
                app.metrics
                    .requests
                    .with_label_values(&[&route, &method, "429"])
                    .inc();
                let err = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "too many requests from this address",
                );
                let mut resp = actix_web::ResponseError::error_response(&err);
                if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&retry.to_string()) {
                    resp.headers_mut()
                        .insert(actix_web::http::header::RETRY_AFTER, v);
                }
                return Err(actix_web::error::InternalError::from_response(err, resp).into());
            }
        }
    }
    let res = json_payload_errors(next.call(req).await?);
    let status = res.status().as_u16().to_string();
    if let Some(app) = app {
        app.metrics
            .requests
            .with_label_values(&[&route, &method, &status])
            .inc();
        app.metrics
            .latency
            .with_label_values(&[&route])
            .observe(started.elapsed().as_secs_f64());
    }
    tracing::debug!(%route, %method, %status, ms = started.elapsed().as_millis() as u64, "request");
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A stream of new addresses does not grow the limiter: addresses whose
    /// state is fresh again are forgotten every `PRUNE_EVERY` checks.
    #[test]
    fn new_addresses_are_forgotten_once_fresh() {
        // A cell every microsecond: an address is fresh again long before
        // the next pruning.
        let limiter = Limiter::new(1_000_000);
        for i in 0..3 * PRUNE_EVERY {
            let addr = IpAddr::V6(std::net::Ipv6Addr::from(
                0x2001_0db8_u128 << 96 | u128::from(i),
            ));
            assert!(limiter.check(addr).is_ok());
        }
        assert!(
            limiter.tracked() <= PRUNE_EVERY as usize,
            "{} addresses remembered",
            limiter.tracked()
        );
    }

    /// Pruning never forgets an address that is being limited.
    #[test]
    fn a_limited_address_stays_limited_after_pruning() {
        let limiter = Limiter::new(1);
        let a = ip("192.0.2.7");
        assert!(limiter.check(a).is_ok());
        assert!(limiter.check(a).is_ok());
        assert!(limiter.check(a).is_err());
        limiter.prune();
        assert_eq!(limiter.tracked(), 1);
        assert!(limiter.check(a).is_err());
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                HeaderName::from_static("x-forwarded-for"),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    /// Trusts 10.0.0.0/8 (the ingress) only.
    fn ingress(ip: IpAddr) -> bool {
        matches!(ip, IpAddr::V4(v4) if v4.octets()[0] == 10)
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let h = xff(&["1.2.3.4"]);
        assert_eq!(
            resolve_client(ip("203.0.113.9"), &h, &ingress),
            ip("203.0.113.9")
        );
        assert_eq!(
            resolve_client(ip("203.0.113.9"), &h, &|_| false),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn behind_a_trusted_proxy_the_rightmost_untrusted_hop_is_the_client() {
        // The client forged "6.6.6.6"; the ingress appended the real address.
        let h = xff(&["6.6.6.6, 198.51.100.7"]);
        assert_eq!(
            resolve_client(ip("10.1.2.3"), &h, &ingress),
            ip("198.51.100.7")
        );
        // Two trusted hops, several headers.
        let h = xff(&["6.6.6.6", "198.51.100.7, 10.9.9.9"]);
        assert_eq!(
            resolve_client(ip("10.1.2.3"), &h, &ingress),
            ip("198.51.100.7")
        );
        // Ports and IPv4-mapped peers.
        let h = xff(&["198.51.100.7:5555"]);
        assert_eq!(
            resolve_client(ip("::ffff:10.0.0.1"), &h, &ingress),
            ip("198.51.100.7")
        );
    }

    #[test]
    fn trusted_peers_without_a_usable_header_stay_the_client() {
        assert_eq!(
            resolve_client(ip("10.1.2.3"), &xff(&[]), &ingress),
            ip("10.1.2.3")
        );
        // Every hop trusted: the left-most.
        let h = xff(&["10.7.7.7, 10.8.8.8"]);
        assert_eq!(resolve_client(ip("10.1.2.3"), &h, &ingress), ip("10.7.7.7"));
        // An unreadable hop ends the walk at the last trusted one.
        let h = xff(&["198.51.100.7, garbage, 10.8.8.8"]);
        assert_eq!(resolve_client(ip("10.1.2.3"), &h, &ingress), ip("10.8.8.8"));
    }
}
