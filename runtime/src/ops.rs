//! Operations endpoints of the worker processes: Prometheus metrics of the
//! jobs they run and the bytes they move, and liveness/readiness for
//! orchestrators, served on `ALIAS_METRICS_LISTEN` when it is set.
//!
//! The metrics are process-wide ([`metrics`]): the worker runtime counts
//! every settled job, the pusher counts the bytes the clients acknowledged,
//! the processor the archive bytes it built.

use crate::worker::Services;
use actix_web::{web, App, HttpResponse, HttpServer};
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use std::net::SocketAddr;
use std::sync::OnceLock;

/// The metrics of a worker process.
pub struct WorkerMetrics {
    registry: Registry,
    /// Settled jobs by queue and outcome (`ack`, `retry`, `dead`, `requeue`).
    pub jobs: IntCounterVec,
    /// Time spent per job, by queue.
    pub job_seconds: HistogramVec,
    /// Bytes moved, by kind (`pushed`: acknowledged by clients;
    /// `archived`: archives built).
    pub bytes: IntCounterVec,
}

impl WorkerMetrics {
    fn new() -> Result<WorkerMetrics, prometheus::Error> {
        let registry = Registry::new_custom(Some("alias".into()), None)?;
        let jobs = IntCounterVec::new(
            Opts::new("jobs_total", "Settled jobs by queue and outcome"),
            &["queue", "outcome"],
        )?;
        let job_seconds = HistogramVec::new(
            HistogramOpts::new("job_duration_seconds", "Time spent per job")
                .buckets(vec![0.01, 0.05, 0.25, 1.0, 5.0, 15.0, 60.0, 300.0, 1200.0]),
            &["queue"],
        )?;
        let bytes = IntCounterVec::new(
            Opts::new("worker_bytes_total", "Bytes pushed to clients and archived"),
            &["kind"],
        )?;
        registry.register(Box::new(jobs.clone()))?;
        registry.register(Box::new(job_seconds.clone()))?;
        registry.register(Box::new(bytes.clone()))?;
        Ok(WorkerMetrics {
            registry,
            jobs,
            job_seconds,
            bytes,
        })
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = prometheus::TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "metrics encoding failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The process-wide worker metrics (`None` only if the registry refused
/// them, which constant names make impossible in practice; the worker then
/// runs without metrics rather than stopping).
pub fn metrics() -> Option<&'static WorkerMetrics> {
    static METRICS: OnceLock<Option<WorkerMetrics>> = OnceLock::new();
    METRICS
        .get_or_init(|| {
            WorkerMetrics::new()
                .map_err(|e| tracing::error!(error = %e, "worker metrics unavailable"))
                .ok()
        })
        .as_ref()
}

/// Counts `n` bytes of `kind` (`pushed`, `archived`).
pub fn count_bytes(kind: &str, n: u64) {
    if let Some(m) = metrics() {
        m.bytes.with_label_values(&[kind]).inc_by(n);
    }
}

/// A running operations server.
pub struct OpsServer {
    /// Where it listens.
    pub addr: SocketAddr,
    handle: actix_web::dev::ServerHandle,
}

impl OpsServer {
    /// Stops it.
    pub async fn stop(self) {
        self.handle.stop(true).await;
    }
}

/// Serves `/healthz`, `/readyz` (the state store and the bus answer) and
/// `/metrics` on `listen`, in the current actix system.
pub fn serve(listen: SocketAddr, services: Services) -> std::io::Result<OpsServer> {
    let data = web::Data::new(services);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/metrics", web::get().to(render))
    })
    .workers(1)
    .shutdown_timeout(5)
    .bind(listen)?;
    let addr = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| std::io::Error::other("no address bound"))?;
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    tracing::info!(%addr, "operations endpoints listening");
    Ok(OpsServer { addr, handle })
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

async fn readyz(services: web::Data<Services>) -> HttpResponse {
    readiness(&services.state, &services.broker).await
}

/// The readiness answer of any alias-bank process: 200 when the state
/// store and the message bus answer, else 503, with which one failed.
pub async fn readiness(state: &crate::state::State, broker: &crate::mq::Broker) -> HttpResponse {
    let redis = state.ping().await;
    let rabbitmq = broker.is_healthy().await;
    let body = serde_json::json!({
        "status": if redis && rabbitmq { "ok" } else { "unavailable" },
        "redis": redis,
        "rabbitmq": rabbitmq,
    });
    if redis && rabbitmq {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn render() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(metrics().map(WorkerMetrics::render).unwrap_or_default())
}
