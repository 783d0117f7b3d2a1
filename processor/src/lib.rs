//! alias-bank processor (binary `alias-processor`): reads users' GDPR dumps
//! from resource storage, extracts exactly the consented scopes and builds
//! one archive per scope, then queues one push job per archive. It also
//! computes previews (dry runs of the build) for the consent page.

pub mod extract;
pub mod preview;
pub mod worker;

use extract::{BuildOptions, Catalog};
use preview::Previewer;
use runtime::config::Config;
use runtime::mq::{Broker, Route};
use runtime::state::State;
use runtime::storage::Storage;
use runtime::worker::{start_worker, Services, WorkerHandle, WorkerSettings};
use std::sync::Arc;
use std::time::Duration;
use worker::Processor;

/// The extraction settings of the configuration: scratch directory and the
/// limits against hostile dumps (`ALIAS_MAX_ENTRIES`,
/// `ALIAS_MAX_UNCOMPRESSED`, `ALIAS_MAX_RATIO`, `ALIAS_JOB_TIMEOUT_SECS`)
/// and the threads of one build (`ALIAS_BUILD_THREADS`, `ALIAS_BUILD_NICE`).
pub fn build_options(config: &Config) -> BuildOptions {
    let defaults = extract::Limits::default();
    BuildOptions {
        threads: config
            .processor
            .build_threads
            .unwrap_or_else(extract::default_build_threads),
        nice: config.processor.build_nice,
        temp_dir: Some(config.work_dir.clone()),
        limits: extract::Limits {
            max_entries: config.processor.max_entries,
            max_total_uncompressed: config.processor.max_uncompressed,
            max_ratio: config.processor.max_ratio,
            max_duration: Some(config.processor.job_timeout),
            ..defaults
        },
        ..BuildOptions::default()
    }
}

/// Builds the process job handler from the configuration and connected parts.
pub fn processor(
    config: &Config,
    state: State,
    broker: Broker,
    storage: Storage,
) -> anyhow::Result<Processor> {
    let catalog = Catalog::load(config.catalog_dir.as_deref())
        .map_err(|e| anyhow::anyhow!("provider catalogs: {e}"))?;
    Ok(Processor {
        state,
        broker,
        storage,
        catalog: Arc::new(catalog),
        options: build_options(config),
        worker_id: format!("processor-{}", uuid::Uuid::new_v4().simple()),
        max_deliveries: 8,
        lease: config.lease,
        retention: config.archive_retention,
        reuse: true,
    })
}

/// Connects and starts a processor worker in the current actix system.
pub async fn start(config: &Config) -> anyhow::Result<(WorkerHandle, Broker)> {
    let services = Services::connect(config)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    let broker = services.broker.clone();
    Ok((start_with(config, services)?, broker))
}

/// Builds the preview job handler from the configuration and connected
/// parts.
pub fn previewer(config: &Config, state: State, storage: Storage) -> anyhow::Result<Previewer> {
    let catalog = Catalog::load(config.catalog_dir.as_deref())
        .map_err(|e| anyhow::anyhow!("provider catalogs: {e}"))?;
    Ok(Previewer::new(
        state,
        storage,
        Arc::new(catalog),
        build_options(config),
    ))
}

/// Starts a processor worker on services already connected (the embedded mode
/// shares them with the gateway): process jobs, and preview jobs beside
/// them (one at a time per processor, so that previews never starve
/// transfers).
pub fn start_with(config: &Config, services: Services) -> anyhow::Result<WorkerHandle> {
    let broker = services.broker.clone();
    let handler = Arc::new(processor(
        config,
        services.state.clone(),
        broker.clone(),
        services.storage.clone(),
    )?);
    let previews = Arc::new(previewer(config, services.state, services.storage)?);
    let process = start_worker(
        broker.clone(),
        WorkerSettings {
            route: Route::Process,
            concurrency: config.worker_concurrency,
            name: "processor".into(),
            shutdown_grace: Duration::from_secs(120),
        },
        handler,
    );
    let preview = start_worker(
        broker,
        WorkerSettings {
            route: Route::Preview,
            concurrency: 1,
            name: "previewer".into(),
            shutdown_grace: Duration::from_secs(30),
        },
        previews,
    );
    Ok(process.with(preview))
}

/// Runs a processor until SIGTERM/SIGINT, then shuts down gracefully.
pub async fn run(config: Config) -> anyhow::Result<()> {
    runtime::worker::run_worker(&config, start_with).await
}
