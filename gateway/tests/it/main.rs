//! Gateway integration tests: the real HTTP server against the local Redis
//! and RabbitMQ, each test in its own namespace.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod dumps;
mod fixtures;
mod openapi;
mod process;
mod quotas;
mod uploads;
mod visibility;
mod web;

use gateway::AppState;
use runtime::config::Config;
use runtime::mq::{Queue, Route};
use std::net::SocketAddr;
use std::sync::Arc;

/// One running gateway in its own namespace and storage directory.
pub struct Bank {
    pub addr: SocketAddr,
    pub app: Arc<AppState>,
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
}

pub const ORIGIN: &str = "http://bank.test";

impl Bank {
    pub async fn start() -> Bank {
        Self::start_with(&[]).await
    }

    pub async fn start_with(extra: &[(&str, &str)]) -> Bank {
        let dir = tempfile::tempdir().unwrap();
        let ns = format!("t{}", uuid::Uuid::new_v4().simple());
        let storage = dir.path().to_str().unwrap().to_owned();
        let mut pairs = vec![
            ("ALIAS_NAMESPACE", ns.as_str()),
            ("ALIAS_STORAGE_URL", storage.as_str()),
            ("ALIAS_LISTEN", "127.0.0.1:0"),
            ("ALIAS_PUBLIC_ORIGIN", ORIGIN),
            ("ALIAS_RATE_PER_SEC", "100000"),
            ("ALIAS_FINISHED_TTL_SECS", "600"),
        ];
        pairs.extend_from_slice(extra);
        let config = Config::from_pairs(&pairs).unwrap();
        let (app, addr) = gateway::spawn(config).await.unwrap();
        Bank {
            addr,
            app,
            http: reqwest::Client::new(),
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn depth(&self, route: Route) -> u32 {
        self.app
            .broker
            .queue_depth(Queue::Work(route))
            .await
            .unwrap()
    }

    /// Deletes the namespace's queues and keys.
    pub async fn cleanup(self) {
        self.app.broker.delete_topology().await;
        let _ = self.app.state.purge_namespace().await;
    }
}
