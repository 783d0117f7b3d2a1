//! The worker runtime shared by the processor and the pusher: an actix
//! actor that consumes one queue under a supervisor (restarted if its
//! consume loop dies, e.g. when the broker goes away for too long), hands
//! each delivery to a [`JobHandler`] with bounded concurrency, settles the
//! delivery only after the handler's effect is committed, and shuts down
//! gracefully: stop taking work, let jobs in flight finish (or leave them
//! unacked, so the broker redelivers them), then stop.

use crate::mq::{Broker, Consumer, Delivery, Route};
use crate::state::Settled;
use actix::prelude::*;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{watch, Semaphore};

/// What to do with a delivery once its job ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Done (or nothing to do): acknowledge.
    Ack,
    /// Try again after a delay: republish through the retry queues, then ack.
    Retry(Duration),
    /// Give up: publish to the dead-letter queue with the reason, then ack.
    Dead(String),
    /// Put it back at once for another worker (e.g. shutting down mid-job).
    Requeue,
}

/// The work done for one message.
#[async_trait::async_trait]
pub trait JobHandler: Send + Sync + 'static {
    /// Handles one message body; the returned disposition settles it.
    async fn handle(&self, body: &[u8], delivery_count: u64) -> Disposition;

    /// Called after [`JobHandler::handle`], before the delivery is settled:
    /// makes the job's effect durable (see [`durable_state`]). An error
    /// turns the disposition into a retry, so the job runs again rather
    /// than being acknowledged on the strength of writes that may be lost.
    async fn make_durable(&self) -> Result<(), String> {
        Ok(())
    }
}

/// [`JobHandler::make_durable`] for a handler whose effects are in `state`:
/// waits for a replica where there is one (Redis under Sentinel). When none
/// confirms in time the primary runs alone, and the job is settled anyway
/// (logged): there is no copy to wait for.
pub async fn durable_state(state: &crate::state::State) -> Result<(), String> {
    match state.settle_writes().await {
        Ok(Settled::Replicated) => Ok(()),
        Ok(Settled::Alone) => {
            tracing::warn!("the Redis primary has no replica; settling a job on its writes alone");
            Ok(())
        }
        Ok(Settled::Unconfirmed) => {
            tracing::warn!("no Redis replica confirmed a job's writes in time; settling it anyway (the primary runs without a replica in sync)");
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

/// How long a job waits before it runs again when its effect could not be
/// made durable (the state store unreachable).
const NOT_DURABLE_RETRY: Duration = Duration::from_secs(2);

/// Settings of a worker.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// The queue consumed.
    pub route: Route,
    /// Jobs in flight at once (also the prefetch).
    pub concurrency: usize,
    /// Consumer tag prefix shown in RabbitMQ.
    pub name: String,
    /// How long shutdown waits for jobs in flight.
    pub shutdown_grace: Duration,
}

/// Settles a delivery as the disposition says. Failures to settle are
/// logged: the broker redelivers an unsettled message.
pub async fn settle(broker: &Broker, route: Route, delivery: Delivery, disposition: Disposition) {
    let id = delivery.message_id().unwrap_or("").to_owned();
    let body = delivery.body().to_vec();
    let result = match disposition {
        Disposition::Ack => delivery.ack().await,
        Disposition::Requeue => delivery.nack_requeue().await,
        Disposition::Retry(delay) => match broker.publish_delayed(route, &body, &id, delay).await {
            Ok(()) => delivery.ack().await,
            Err(e) => {
                tracing::warn!(error = %e, "could not schedule the retry; requeueing");
                delivery.nack_requeue().await
            }
        },
        Disposition::Dead(reason) => match broker.dead_letter(route, &body, &id, &reason).await {
            Ok(()) => delivery.ack().await,
            Err(e) => {
                tracing::warn!(error = %e, "could not dead-letter; requeueing");
                delivery.nack_requeue().await
            }
        },
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, message = %id, "could not settle a delivery; the broker will redeliver it");
    }
}

/// The consumer actor. Start it with [`start_worker`].
pub struct ConsumerActor {
    broker: Broker,
    settings: WorkerSettings,
    handler: Arc<dyn JobHandler>,
    permits: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
}

impl Actor for ConsumerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let broker = self.broker.clone();
        let settings = self.settings.clone();
        let handler = self.handler.clone();
        let permits = self.permits.clone();
        let mut stop = self.stop.clone();
        let run = async move {
            let prefetch = u16::try_from(settings.concurrency)
                .unwrap_or(u16::MAX)
                .max(1);
            let tag = format!("{}-{}", settings.name, uuid::Uuid::new_v4().simple());
            let mut consumer: Consumer = match broker.consume(settings.route, prefetch, &tag).await
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(error = %e, "cannot consume; the supervisor restarts the consumer");
                    return;
                }
            };
            tracing::info!(queue = %settings.route, concurrency = settings.concurrency, "consuming");
            loop {
                if *stop.borrow() {
                    break;
                }
                let permit = tokio::select! {
                    p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                    _ = stop.changed() => break,
                };
                let next = tokio::select! {
                    n = consumer.next() => n,
                    _ = stop.changed() => break,
                };
                let delivery = match next {
                    Some(Ok(d)) => d,
                    Some(Err(e)) => {
                        tracing::error!(error = %e, "consumer failed; the supervisor restarts it");
                        break;
                    }
                    None => break,
                };
                let handler = handler.clone();
                let broker = broker.clone();
                let route = settings.route;
                tokio::spawn(async move {
                    let count = delivery.delivery_count();
                    let started = std::time::Instant::now();
                    let mut disposition = handler.handle(delivery.body(), count).await;
                    if disposition != Disposition::Requeue {
                        if let Err(e) = handler.make_durable().await {
                            tracing::warn!(error = %e, "could not make a job's effect durable; it runs again");
                            disposition = match disposition {
                                Disposition::Retry(delay) => {
                                    Disposition::Retry(delay.max(NOT_DURABLE_RETRY))
                                }
                                _ => Disposition::Retry(NOT_DURABLE_RETRY),
                            };
                        }
                    }
                    if let Some(m) = crate::ops::metrics() {
                        let outcome = match disposition {
                            Disposition::Ack => "ack",
                            Disposition::Retry(_) => "retry",
                            Disposition::Dead(_) => "dead",
                            Disposition::Requeue => "requeue",
                        };
                        m.jobs.with_label_values(&[route.as_str(), outcome]).inc();
                        m.job_seconds
                            .with_label_values(&[route.as_str()])
                            .observe(started.elapsed().as_secs_f64());
                    }
                    settle(&broker, route, delivery, disposition).await;
                    drop(permit);
                });
            }
            consumer.cancel().await;
        };
        ctx.spawn(run.into_actor(self).map(|(), actor, ctx| {
            if !*actor.stop.borrow() {
                ctx.stop();
            }
        }));
    }
}

impl Supervised for ConsumerActor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        tracing::warn!(queue = %self.settings.route, "restarting the consumer");
    }
}

/// A running worker: stop it with [`WorkerHandle::shutdown`]. One handle
/// may hold the consumers of several queues ([`WorkerHandle::with`]).
pub struct WorkerHandle {
    stop: watch::Sender<bool>,
    permits: Arc<Semaphore>,
    settings: WorkerSettings,
    _actor: Addr<ConsumerActor>,
    /// The tasks moving this queue's delayed jobs back when due.
    movers: Vec<tokio::task::JoinHandle<()>>,
    /// Consumers of other queues stopped with this one.
    others: Vec<WorkerHandle>,
}

/// Starts a supervised consumer in the current actix system.
pub fn start_worker(
    broker: Broker,
    settings: WorkerSettings,
    handler: Arc<dyn JobHandler>,
) -> WorkerHandle {
    let (stop_tx, stop_rx) = watch::channel(false);
    let movers = broker.start_movers(settings.route);
    let permits = Arc::new(Semaphore::new(settings.concurrency.max(1)));
    let actor_settings = settings.clone();
    let actor_permits = permits.clone();
    let actor = Supervisor::start(move |_| ConsumerActor {
        broker,
        settings: actor_settings,
        handler,
        permits: actor_permits,
        stop: stop_rx,
    });
    WorkerHandle {
        stop: stop_tx,
        permits,
        settings,
        _actor: actor,
        movers,
        others: Vec::new(),
    }
}

/// Waits (at most the grace period) until a consumer's jobs in flight are
/// settled.
async fn drain(permits: Arc<Semaphore>, settings: WorkerSettings) {
    let all = u32::try_from(settings.concurrency.max(1)).unwrap_or(u32::MAX);
    match tokio::time::timeout(settings.shutdown_grace, permits.acquire_many(all)).await {
        Ok(_) => {
            tracing::info!(queue = %settings.route, "worker stopped, nothing in flight")
        }
        Err(_) => {
            tracing::warn!(queue = %settings.route, "grace period over; unfinished jobs will be redelivered")
        }
    }
}

impl WorkerHandle {
    /// The same worker, also holding `other` (a consumer of another queue):
    /// both stop together.
    #[must_use]
    pub fn with(mut self, other: WorkerHandle) -> WorkerHandle {
        self.others.push(other);
        self
    }

    /// A receiver that turns `true` when the worker is told to stop (or is
    /// dropped), for tasks that live as long as the worker.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    /// Stops taking work and waits (at most the grace period) until the jobs
    /// in flight are settled. Jobs still running after that are abandoned
    /// unacked, so the broker gives them to another worker.
    pub async fn shutdown(self) {
        let mut todo = vec![self];
        let mut held = Vec::new();
        while let Some(mut h) = todo.pop() {
            todo.append(&mut h.others);
            // Fails only when every receiver is gone: nothing left to stop.
            let _ = h.stop.send(true);
            for mover in h.movers.drain(..) {
                mover.abort();
            }
            held.push(h);
        }
        // The handles (and their actors' addresses) live until every
        // consumer has drained.
        let drains = held
            .iter()
            .map(|h| drain(h.permits.clone(), h.settings.clone()));
        futures_util::future::join_all(drains).await;
        drop(held);
    }
}

/// The connected services a worker process needs.
#[derive(Clone, Debug)]
pub struct Services {
    /// The coordination state (Redis, or in memory in the embedded mode).
    pub state: crate::state::State,
    /// The message bus (RabbitMQ, or in-process in the embedded mode).
    pub broker: Broker,
    /// Resource storage.
    pub storage: crate::storage::Storage,
}

impl Services {
    /// Connects to Redis, RabbitMQ and storage as configured (the
    /// distributed services).
    pub async fn connect(config: &crate::config::Config) -> Result<Services, String> {
        Self::open(config, true, true).await
    }

    /// The services of the embedded mode: Redis and RabbitMQ when their
    /// URLs are configured, otherwise in-memory state and an in-process
    /// queue (one process then runs the whole data bank).
    pub async fn embedded(config: &crate::config::Config) -> Result<Services, String> {
        Self::open(config, config.redis_given, config.amqp_given).await
    }

    async fn open(
        config: &crate::config::Config,
        redis: bool,
        rabbitmq: bool,
    ) -> Result<Services, String> {
        let (ns, ttl) = (&config.namespace, config.finished_ttl);
        let state = if redis {
            crate::state::State::connect_secured(
                &config.redis,
                &config.redis_tls,
                ns,
                ttl,
                config.quotas,
            )
            .await
            .map_err(|e| format!("redis at {}: {e}", config.redis))?
        } else {
            crate::state::State::in_memory_with(ns, ttl, config.quotas)
        };
        let broker = if rabbitmq {
            Broker::connect(&config.amqp_url, ns)
                .await
                .map_err(|e| format!("rabbitmq: {e}"))?
        } else {
            Broker::in_memory(ns).map_err(|e| format!("queue: {e}"))?
        };
        let storage = crate::storage::Storage::from_url(&config.storage_url, &config.s3)
            .map_err(|e| format!("storage {}: {e}", config.storage_url))?;
        Ok(Services {
            state,
            broker,
            storage,
        })
    }
}

/// Waits for SIGTERM/SIGINT, then stops the worker gracefully and closes
/// the broker connection.
pub async fn serve_until_signal(handle: WorkerHandle, broker: Broker) {
    shutdown_signal().await;
    tracing::info!("shutting down");
    handle.shutdown().await;
    broker.close().await;
}

/// The whole life of a worker process: connects, serves the operations
/// endpoints on `ALIAS_METRICS_LISTEN` when set, starts the worker with
/// `start`, and on SIGTERM/SIGINT stops it gracefully.
pub async fn run_worker(
    config: &crate::config::Config,
    start: impl FnOnce(&crate::config::Config, Services) -> anyhow::Result<WorkerHandle>,
) -> anyhow::Result<()> {
    let services = Services::connect(config)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    let ops = match config.metrics_listen {
        Some(listen) => Some(
            crate::ops::serve(listen, services.clone())
                .map_err(|e| anyhow::anyhow!("ALIAS_METRICS_LISTEN {listen}: {e}"))?,
        ),
        None => None,
    };
    let broker = services.broker.clone();
    let handle = start(config, services)?;
    serve_until_signal(handle, broker).await;
    if let Some(ops) = ops {
        ops.stop().await;
    }
    Ok(())
}

/// Resolves when the process receives SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {},
                _ = tokio::signal::ctrl_c() => {},
            }
            return;
        }
    }
    if let Err(e) = tokio::signal::ctrl_c().await {
        tracing::error!(error = %e, "cannot wait for a signal; shutting down");
    }
}
