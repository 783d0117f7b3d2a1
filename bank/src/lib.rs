//! alias-bank in one process (binary `alias-bank`).
//!
//! [`Bank::start`] runs the gateway, a processor worker and a pusher worker
//! together on shared services: Redis and RabbitMQ when `ALIAS_REDIS_URL` /
//! `ALIAS_AMQP_URL` are set, otherwise in-memory state and an in-process
//! queue (the same traits; `runtime/tests/it/contract.rs` proves they
//! agree). That is the embedded mode, for trying the project and for small
//! installations. [`demo`] runs the whole Alias flow against it.

pub mod demo;

use runtime::config::Config;
use runtime::worker::{Services, WorkerHandle};
use std::net::SocketAddr;
use std::sync::Arc;

/// A running embedded data bank.
pub struct Bank {
    /// Where the gateway listens.
    pub addr: SocketAddr,
    /// The shared application state of the gateway.
    pub app: Arc<gateway::AppState>,
    server: actix_web::dev::ServerHandle,
    workers: Vec<WorkerHandle>,
    embedded_state: bool,
    embedded_queue: bool,
}

impl Bank {
    /// Starts the gateway and both workers in the current actix system.
    pub async fn start(config: Config) -> anyhow::Result<Bank> {
        let services = Services::embedded(&config)
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        let processor = processor::start_with(&config, services.clone())?;
        let pusher = pusher::start_with(&config, services.clone())?;
        let embedded_state = !config.redis_given;
        let embedded_queue = !config.amqp_given;
        let listen = config.listen;
        let app = Arc::new(gateway::AppState::new(
            config,
            services.state,
            services.broker,
            services.storage,
        )?);
        let (server, addr) = gateway::server(app.clone(), listen)?;
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Ok(Bank {
            addr,
            app,
            server: handle,
            workers: vec![processor, pusher],
            embedded_state,
            embedded_queue,
        })
    }

    /// The gateway's base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Whether the state is held in memory (no `ALIAS_REDIS_URL`).
    pub fn embedded_state(&self) -> bool {
        self.embedded_state
    }

    /// Whether the queue is in-process (no `ALIAS_AMQP_URL`).
    pub fn embedded_queue(&self) -> bool {
        self.embedded_queue
    }

    /// Stops taking requests, lets the workers finish what they hold, then
    /// closes the bus.
    pub async fn stop(self) {
        self.server.stop(true).await;
        for worker in self.workers {
            worker.shutdown().await;
        }
        self.app.broker.close().await;
    }
}
