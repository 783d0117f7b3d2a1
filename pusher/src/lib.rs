//! alias-bank pusher (binary `alias-pusher`): streams per-scope archives to
//! clients' push endpoints, with retries, resume from committed offsets, an
//! SSRF guard, per-client fairness and a circuit breaker.
//!
//! Only the pusher talks to client endpoints.

pub mod client;
pub mod worker;

use client::{ChunkStreamer, ClientConfig, PushClient, RetryPolicy, SsrfGuard};
use common::config::Config;
use common::mq::{Broker, Route};
use common::state::State;
use common::storage::Storage;
use common::worker::{start_worker, Services, WorkerHandle, WorkerSettings};
use std::sync::Arc;
use std::time::Duration;
use worker::{PushSettings, Pusher};

/// Builds the push job handler from the configuration and connected parts.
pub fn pusher(
    config: &Config,
    state: State,
    broker: Broker,
    storage: Storage,
) -> anyhow::Result<Pusher> {
    let guard = SsrfGuard::new(config.push_allow.clone());
    let client = PushClient::new(
        guard,
        ClientConfig {
            request_timeout: config.push_timeout,
            min_rate: config.push_min_rate,
            ..ClientConfig::default()
        },
    )?;
    let chunk = usize::try_from(config.push_chunk).unwrap_or(client::DEFAULT_CHUNK_SIZE);
    let policy = RetryPolicy {
        max_attempts: config.push_attempts,
        max_elapsed: config.push_budget.min(Duration::from_secs(300)),
        ..RetryPolicy::default()
    };
    Ok(Pusher {
        state,
        broker,
        streamer: ChunkStreamer::new(client, storage)
            .with_chunk_size(chunk)
            .with_policy(policy),
        settings: PushSettings {
            per_client: config.push_per_client,
            client_share: config.push_client_share,
            concurrency: config.worker_concurrency,
            run_time: config.push_run_time,
            min_advance: config.push_min_advance,
            file_rewinds: config.push_file_rewinds,
            file_failures: config.push_file_failures,
            run_bytes: config.push_run_bytes,
            budget: config.push_budget,
            breaker_failures: config.breaker_failures,
            breaker_cooldown: config.breaker_cooldown,
            policy,
            lease: config.lease,
        },
        worker_id: format!("pusher-{}", uuid::Uuid::new_v4().simple()),
        local: worker::LocalShare::default(),
    })
}

/// Connects and starts a pusher worker in the current actix system.
pub async fn start(config: &Config) -> anyhow::Result<(WorkerHandle, Broker)> {
    let services = Services::connect(config)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    let broker = services.broker.clone();
    Ok((start_with(config, services)?, broker))
}

/// Starts a pusher worker on services already connected (the embedded mode
/// shares them with the gateway).
pub fn start_with(config: &Config, services: Services) -> anyhow::Result<WorkerHandle> {
    let broker = services.broker.clone();
    let handler = Arc::new(pusher(
        config,
        services.state,
        broker.clone(),
        services.storage,
    )?);
    Ok(start_worker(
        broker,
        WorkerSettings {
            route: Route::Push,
            concurrency: config.worker_concurrency,
            name: "pusher".into(),
            shutdown_grace: Duration::from_secs(60),
        },
        handler,
    ))
}

/// Runs a pusher until SIGTERM/SIGINT, then shuts down gracefully.
pub async fn run(config: Config) -> anyhow::Result<()> {
    common::worker::run_worker(&config, start_with).await
}
