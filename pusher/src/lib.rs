//! alias-bank pusher (binary `alias-pusher`): streams per-scope archives to
//! clients' push endpoints, with retries, resume from committed offsets, an
//! SSRF guard, per-client fairness and a circuit breaker.
//!
//! Only the pusher talks to client endpoints.

pub mod client;
pub mod worker;

use client::{ChunkStreamer, ClientConfig, PushClient, RetryPolicy, SsrfGuard, Stop};
use runtime::config::Config;
use runtime::mq::{Broker, Route};
use runtime::state::State;
use runtime::storage::Storage;
use runtime::worker::{start_worker, Services, WorkerHandle, WorkerSettings};
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
    let guard = SsrfGuard::new(config.pusher.push_allow.clone());
    let client = PushClient::new(
        guard,
        ClientConfig {
            request_timeout: config.pusher.push_timeout,
            min_rate: config.pusher.push_min_rate,
            ..ClientConfig::default()
        },
    )?;
    let chunk = usize::try_from(config.pusher.push_chunk).unwrap_or(client::DEFAULT_CHUNK_SIZE);
    let policy = RetryPolicy {
        max_attempts: config.pusher.push_attempts,
        max_elapsed: config.pusher.push_budget.min(Duration::from_secs(300)),
        ..RetryPolicy::default()
    };
    let stop = Stop::new();
    Ok(Pusher {
        state,
        broker,
        streamer: ChunkStreamer::new(client, storage)
            .with_chunk_size(chunk)
            .with_policy(policy)
            .with_stop(stop.clone()),
        stop,
        settings: PushSettings {
            per_client: config.pusher.push_per_client,
            client_share: config.pusher.push_client_share,
            concurrency: config.pusher.push_concurrency,
            run_time: config.pusher.push_run_time,
            min_advance: config.pusher.push_min_advance,
            file_rewinds: config.pusher.push_file_rewinds,
            file_failures: config.pusher.push_file_failures,
            run_bytes: config.pusher.push_run_bytes,
            budget: config.pusher.push_budget,
            breaker_failures: config.pusher.breaker_failures,
            breaker_cooldown: config.pusher.breaker_cooldown,
            policy,
            lease: config.lease,
            client_restarts: config.pusher.push_client_restarts,
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
        services.state.clone(),
        broker.clone(),
        services.storage.clone(),
    )?);
    let handle = start_worker(
        broker,
        WorkerSettings {
            route: Route::Push,
            concurrency: config.pusher.push_concurrency,
            name: "pusher".into(),
            shutdown_grace: Duration::from_secs(60),
        },
        handler.clone(),
    );
    // Jobs in flight stop waiting between attempts once the worker stops.
    let mut stopping = handle.stopping();
    tokio::spawn(async move {
        // An error means the worker is gone: stopped all the same.
        let _ = stopping.wait_for(|stopped| *stopped).await;
        handler.stop.set();
    });
    tokio::spawn(sweep_archives(
        services.state,
        services.storage,
        config.archive_retention,
        handle.stopping(),
    ));
    Ok(handle)
}

/// The archive sweeper of a pusher: gives back the storage of cancelled,
/// failed and (after the retention) done transfers, until the worker stops.
async fn sweep_archives(
    state: State,
    storage: Storage,
    retention: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let every = runtime::archives::check_every(retention);
    loop {
        if *stop.borrow() {
            return;
        }
        if let Err(e) = runtime::archives::sweep(&state, &storage, retention).await {
            tracing::warn!(error = %e, "archive sweep failed; trying again later");
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            r = stop.changed() => if r.is_err() { return; },
        }
    }
}

/// Runs a pusher until SIGTERM/SIGINT, then shuts down gracefully.
pub async fn run(config: Config) -> anyhow::Result<()> {
    runtime::worker::run_worker(&config, start_with).await
}
