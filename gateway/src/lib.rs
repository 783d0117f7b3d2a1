//! The alias-bank gateway (binary `alias-gateway`): validates grants,
//! records transfers in Redis and queues their jobs on RabbitMQ; serves the
//! transfer status and events, grants, bindings, signed dump uploads,
//! health and metrics.
//!
//! The gateway never touches archive bytes and never talks to clients'
//! push endpoints: those are the processor's and the pusher's.

pub mod access;
mod body;
mod dumps;
mod durable;
mod error;
mod grants;
mod intake;
mod ops;
mod site;
mod transfers;
mod uploads;

pub use error::ApiError;
pub use uploads::UploadSlots;

use actix_web::{web, App, HttpServer};
use protocol::alias::AcceptancePolicy;
use protocol::catalog::Catalog;
use runtime::config::Config;
use runtime::mq::Broker;
use runtime::state::State;
use runtime::storage::Storage;
use std::net::SocketAddr;
use std::sync::Arc;

/// Everything a request handler needs.
pub struct AppState {
    /// The configuration.
    pub config: Config,
    /// Redis state.
    pub state: State,
    /// RabbitMQ.
    pub broker: Broker,
    /// Resource storage.
    pub storage: Storage,
    /// The acceptance policy derived from the configuration.
    pub policy: AcceptancePolicy,
    /// Prometheus metrics.
    pub metrics: ops::Metrics,
    /// Per-address rate limiter.
    pub limiter: ops::Limiter,
    /// Secrets of the web pages' sessions.
    pub web: site::WebKeys,
    /// Concurrent transfer event streams.
    pub streams: access::Slots,
    /// Concurrent synchronous `/alias/process` waits.
    pub waits: access::Slots,
    /// Dump uploads in progress, per key and per address.
    pub uploads: uploads::UploadSlots,
    /// The provider catalogs the pages describe scopes with: the embedded
    /// ones with `ALIAS_CATALOG_DIR` over them, as the processor loads them.
    pub catalog: Arc<Catalog>,
}

impl AppState {
    /// Connects to Redis, RabbitMQ (declaring the topology) and storage.
    pub async fn connect(config: Config) -> anyhow::Result<Arc<AppState>> {
        let services = runtime::worker::Services::connect(&config)
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        Ok(Arc::new(Self::new(
            config,
            services.state,
            services.broker,
            services.storage,
        )?))
    }

    /// Assembles the state from connected parts.
    pub fn new(
        config: Config,
        state: State,
        broker: Broker,
        storage: Storage,
    ) -> anyhow::Result<AppState> {
        // The pages describe scopes with the catalogs the processor uses;
        // a bad catalog fails the start.
        let catalog = Arc::new(Catalog::load(config.catalog_dir.as_deref())?);
        if config.push_id == protocol::alias::PushId::Grant {
            tracing::warn!(
                "ALIAS_PUSH_ID=grant: transfers are pushed to grant-hash ids, which reference \
                 clients refuse (their start answers 400 \"bad grant hash\"); only clients that \
                 accept grant-hash ids can receive data"
            );
        }
        let policy = AcceptancePolicy {
            max_future_skew_ms: config.max_future_skew_ms,
            limits: config.limits,
        };
        Ok(AppState {
            limiter: ops::Limiter::new(config.gateway.rate_per_sec),
            metrics: ops::Metrics::new()?,
            web: site::WebKeys::new(&config)?,
            streams: access::Slots::new(
                "event streams",
                "too_many_streams",
                config.gateway.max_streams,
                config.gateway.max_streams_per_addr,
            ),
            waits: access::Slots::new(
                "waiting requests",
                "too_many_waits",
                config.gateway.max_waits,
                config.gateway.max_waits_per_addr,
            ),
            uploads: uploads::UploadSlots::default(),
            catalog,
            config,
            state,
            broker,
            storage,
            policy,
        })
    }
}

/// Registers every route of the gateway.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/alias/").route(web::get().to(ops::discovery)))
        .service(web::resource("/alias").route(web::get().to(ops::discovery)))
        .service(web::resource("/alias/process").route(web::post().to(grants::process)))
        .service(web::resource("/alias/grants").route(web::post().to(grants::store_grant)))
        .service(web::resource("/alias/bind").route(web::post().to(grants::bind)))
        .service(web::resource("/alias/transfers/{id}").route(web::get().to(transfers::status)))
        .service(
            web::resource("/alias/transfers/{id}/events").route(web::get().to(transfers::events)),
        )
        .service(web::resource("/alias/dumps").route(web::get().to(dumps::list)))
        .service(
            web::resource("/alias/dumps/{provider}/{name}")
                .route(web::put().to(dumps::upload))
                .route(web::delete().to(dumps::delete)),
        )
        .service(web::resource("/healthz").route(web::get().to(ops::healthz)))
        .service(web::resource("/readyz").route(web::get().to(ops::readyz)))
        .service(web::resource("/metrics").route(web::get().to(ops::metrics)))
        .service(web::resource("/openapi.json").route(web::get().to(ops::openapi)))
        .configure(site::routes);
}

/// Builds the HTTP server on `listen` (port 0 picks a free port) and returns
/// it with the address it is bound to; the caller awaits or spawns it.
pub fn server(
    app: Arc<AppState>,
    listen: SocketAddr,
) -> anyhow::Result<(actix_web::dev::Server, SocketAddr)> {
    let data = web::Data::from(app);
    let body_limit = data
        .config
        .limits
        .max_bytes
        .saturating_mul(4)
        .saturating_add(16 * 1024);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::PayloadConfig::new(body_limit))
            .app_data(
                web::PathConfig::default()
                    .error_handler(|e, _| error::json_error_handler(e.into())),
            )
            .wrap(actix_web::middleware::from_fn(durable::durable_writes))
            .wrap(actix_web::middleware::from_fn(uploads::body_deadlines))
            .wrap(actix_web::middleware::from_fn(ops::observe))
            .configure(routes)
            .default_service(web::to(ops::not_found))
    })
    .client_request_timeout(std::time::Duration::from_secs(30))
    .keep_alive(std::time::Duration::from_secs(75))
    .shutdown_timeout(30)
    .bind(listen)?;
    let addr = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| anyhow::anyhow!("no address bound"))?;
    Ok((server.run(), addr))
}

/// Runs the gateway until SIGINT/SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let listen = config.listen;
    let app = AppState::connect(config).await?;
    let (server, addr) = server(app, listen)?;
    tracing::info!(%addr, "gateway listening");
    server.await?;
    Ok(())
}

/// Connects to the configured state, queue and storage and serves the
/// gateway on `config.listen` as a task of the current actix system (tests,
/// benchmarks and tools that embed a gateway); returns its state and the
/// address it is bound to.
pub async fn spawn(config: Config) -> anyhow::Result<(Arc<AppState>, SocketAddr)> {
    let listen = config.listen;
    let app = AppState::connect(config).await?;
    let (server, addr) = server(app.clone(), listen)?;
    actix_web::rt::spawn(server);
    Ok((app, addr))
}
