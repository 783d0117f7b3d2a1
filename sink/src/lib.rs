//! `alias-sink`: a reference receiver of Alias pushes (the client side of
//! PROTOCOL.md Part 1, "The push sequence alias-bank sends"), with the
//! resume extension and fault injection.
//!
//! Routes, under a configurable base path (default `/alias/push/`):
//!
//! | request | effect |
//! |---|---|
//! | `PUT {base}{id}` form `grant=<token>` (or JSON `{"grant":…}`) | verify the grant, check `{id}`, store the grant (when newer), wipe the transfer's data |
//! | `PUT {base}{id}/{file}` with `Range: start-end` | write the chunk **at** its offset (a gap is refused with `409` and `Upload-Offset`) |
//! | `HEAD {base}{id}/{file}` | `Upload-Offset: <bytes held>` |
//! | `POST {base}{id}/{file}` `{"action":"finish","size":N,"blake2b":"…"}` | check size and BLAKE2b-512, mark the file complete |
//! | `POST {base}{id}` `{"finished":true,"files":[…]}` | check every file, mark the transfer finished |
//! | `GET /`, `GET /sink/` (`?format=json`) | what was received (admin) |
//! | `GET`/`POST /sink/faults` | the fault switches ([`Faults`]) (admin) |
//! | `GET /healthz` | `ok` (nothing else) |
//!
//! Safe to expose ([`SinkConfig`]): starts are accepted only for contracts
//! signed by a configured client key; a finished transfer is never changed
//! again (until a new start); request bodies have an idle timeout and a
//! minimum rate, are spooled (bounded memory, then a file) and only then
//! written under the transfer's I/O lock; transfers, files and bytes have
//! quotas. The admin routes (status page and fault switches) are off unless
//! [`Admin::enabled`], and then answer loopback peers only (and, with
//! [`Admin::token`], only `Authorization: Bearer <token>`).
//!
//! Refusals keep the reference's `{"status":"error","reason":…}` shape and
//! add a machine-readable `code`. Files are written under a data directory,
//! one directory per transfer; file names are one segment of
//! `[A-Za-z0-9._-]`, so no request can reach outside it.
//!
//! Tests embed the sink with [`Sink::start`], which runs it on its own thread
//! and returns a [`SinkHandle`] to read what it received and to change its
//! faults. The binary `alias-sink` runs the same server from the command line.
//!
//! The sink is Unix-only (positional writes, and the drop fault closes the
//! connection's socket).

mod body;
mod faults;
mod http;
mod page;
mod store;

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{web, App, HttpServer};
use protocol::alias::PushId;

pub use faults::Faults;
pub use http::UPLOAD_OFFSET;
pub use page::StatusView;
pub use store::{Counters, FileState, GrantSummary, RequestRecord, TransferState, REQUEST_LOG_LEN};

use store::{Settings, Shared};

/// The default base path of the protocol routes.
pub const DEFAULT_BASE_PATH: &str = "/alias/push/";

/// The default largest chunk body: 64 MiB, the reference client's limit.
pub const DEFAULT_MAX_CHUNK: u64 = 64 << 20;

/// The admin routes (`GET /`, `GET /sink/`, `GET`/`POST /sink/faults`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Admin {
    /// Serve them at all (default off: `404`). When on, only to loopback
    /// peers.
    pub enabled: bool,
    /// When set, they also require `Authorization: Bearer <token>`.
    pub token: Option<String>,
}

/// Deadlines and quotas of a sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkLimits {
    /// Longest wait for the next piece of a request body (`408` after).
    pub body_idle: Duration,
    /// Slowest accepted body, in bytes per second, measured once
    /// [`SinkLimits::body_grace`] has passed (`408` below).
    pub body_min_rate: u64,
    /// How long a body may be slower than the minimum rate at first.
    pub body_grace: Duration,
    /// Body bytes of one request held in memory; the rest is spooled to a
    /// file under the data directory until the body has fully arrived.
    pub spool_memory: usize,
    /// Most transfers held (`507` for a start of a new one above).
    pub max_transfers: usize,
    /// Most files in one transfer (`413` above).
    pub max_files: usize,
    /// Most bytes held by one transfer, all files together (`413` above).
    pub max_transfer_bytes: u64,
}

impl Default for SinkLimits {
    /// 30 s idle, 4 KiB/s after 10 s, 256 KiB in memory per request, 1000
    /// transfers of at most 10 000 files and 256 GiB each.
    fn default() -> Self {
        Self {
            body_idle: Duration::from_secs(30),
            body_min_rate: 4096,
            body_grace: Duration::from_secs(10),
            spool_memory: 256 << 10,
            max_transfers: 1000,
            max_files: 10_000,
            max_transfer_bytes: 256 << 30,
        }
    }
}

/// How to run a sink.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// Data directory (created when missing; transfers in it are loaded).
    pub dir: PathBuf,
    /// Base path of the protocol routes: starts and ends with `/`.
    pub base_path: String,
    /// Which hash `{id}` must be: the contract hash (default) or the grant
    /// hash.
    pub push_id: PushId,
    /// Largest chunk body accepted, in bytes (`413` above).
    pub max_chunk: u64,
    /// HTTP worker threads.
    pub workers: usize,
    /// Fault switches at start.
    pub faults: Faults,
    /// Public keys (raw Ed25519 bytes) of the clients whose contracts this
    /// sink receives for: a start whose contract is signed by another key is
    /// refused (`403`). Empty refuses every start unless
    /// [`SinkConfig::any_client`].
    pub client_keys: Vec<Vec<u8>>,
    /// Accept contracts of any client key (tests and local demos only).
    pub any_client: bool,
    /// The status page and the fault switches over HTTP.
    pub admin: Admin,
    /// Body deadlines and quotas.
    pub limits: SinkLimits,
}

impl SinkConfig {
    /// Defaults for an embedded sink storing under `dir`: loopback with a
    /// free port, base `/alias/push/`, contract-hash ids, 64 MiB chunks, two
    /// workers, no faults, no client key (every start refused until one is
    /// added), admin routes off, default limits.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir: dir.into(),
            base_path: DEFAULT_BASE_PATH.to_owned(),
            push_id: PushId::Contract,
            max_chunk: DEFAULT_MAX_CHUNK,
            workers: 2,
            faults: Faults::default(),
            client_keys: Vec::new(),
            any_client: false,
            admin: Admin::default(),
            limits: SinkLimits::default(),
        }
    }

    /// Adds a client's public key (raw bytes) to those received for.
    #[must_use]
    pub fn with_client_key(mut self, key: &[u8]) -> Self {
        self.client_keys.push(key.to_vec());
        self
    }

    /// Turns the admin routes on (loopback peers only), with an optional
    /// bearer token.
    #[must_use]
    pub fn with_admin(mut self, token: Option<String>) -> Self {
        self.admin = Admin {
            enabled: true,
            token,
        };
        self
    }
}

/// The client key (raw Ed25519 bytes) that signed the contract of a grant
/// token: what [`SinkConfig::with_client_key`] takes to receive that
/// contract's transfers.
pub fn client_key_of(grant_token: &str) -> Result<Vec<u8>, protocol::alias::AliasError> {
    let grant =
        protocol::alias::Grant::from_token(grant_token, &protocol::anychain::Limits::default())?;
    let client = grant.contract().client()?;
    Ok(client.signer().to_vec())
}

fn invalid(reason: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, reason)
}

fn check_base_path(base: &str) -> io::Result<()> {
    let ok = base.starts_with('/')
        && base.ends_with('/')
        && base
            .trim_matches('/')
            .split('/')
            .all(|seg| base == "/" || protocol::wire::is_safe_segment(seg));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "base path {base:?} must start and end with '/' and hold segments of [A-Za-z0-9._-]"
        )))
    }
}

/// The sink server.
#[derive(Debug)]
pub struct Sink;

impl Sink {
    /// Starts a sink on its own thread (with its own actix system) and
    /// returns the address it listens on and a handle to it. The sink stops
    /// when the handle is stopped or dropped.
    pub fn start(config: SinkConfig) -> io::Result<(SocketAddr, SinkHandle)> {
        let (shared, base) = open(&config)?;
        let (tx, rx) = std::sync::mpsc::channel();
        let server_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("alias-sink".into())
            .spawn(move || {
                actix_web::rt::System::new().block_on(async move {
                    match build(server_shared, &config, &base, false) {
                        Ok((server, addr)) => {
                            let _ = tx.send(Ok((addr, server.handle())));
                            if let Err(err) = server.await {
                                tracing::error!(error = %err, "alias-sink stopped with an error");
                            }
                        }
                        Err(err) => {
                            let _ = tx.send(Err(err));
                        }
                    }
                });
            })?;
        let (addr, server) = rx
            .recv()
            .map_err(|_| io::Error::other("the sink thread ended before listening"))??;
        let handle = SinkHandle {
            addr,
            base_path: shared.base_path.clone(),
            shared,
            server,
            thread: Some(thread),
        };
        Ok((addr, handle))
    }

    /// Runs a sink in the current actix system until it is stopped by a
    /// signal (the binary's entry point). Logs where it listens.
    pub async fn serve(config: SinkConfig) -> io::Result<()> {
        let (shared, base) = open(&config)?;
        let (server, addr) = build(shared, &config, &base, true)?;
        tracing::info!(
            "alias-sink listening on http://{addr}{base}, storing under {}",
            config.dir.display()
        );
        server.await
    }
}

/// The shared state and the base path.
#[derive(Debug, Clone)]
struct Opened {
    inner: web::Data<Shared>,
    base_path: String,
}

impl std::ops::Deref for Opened {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.inner
    }
}

fn open(config: &SinkConfig) -> io::Result<(Opened, String)> {
    check_base_path(&config.base_path)?;
    if config.max_chunk == 0 {
        return Err(invalid("max_chunk must be positive".into()));
    }
    if config.admin.token.as_deref().is_some_and(str::is_empty) {
        return Err(invalid("the admin token must not be empty".into()));
    }
    let settings = Settings {
        dir: config.dir.clone(),
        push_id: config.push_id,
        max_chunk: config.max_chunk,
        any_client: config.any_client,
        admin: config.admin.clone(),
        limits: config.limits.clone(),
    };
    let shared = web::Data::new(Shared::open(
        settings,
        config.faults.clone(),
        &config.client_keys,
    )?);
    Ok((
        Opened {
            inner: shared,
            base_path: config.base_path.clone(),
        },
        config.base_path.clone(),
    ))
}

fn build(
    shared: Opened,
    config: &SinkConfig,
    base: &str,
    signals: bool,
) -> io::Result<(Server, SocketAddr)> {
    let scope_path = base.trim_end_matches('/').to_owned();
    let data = shared.inner.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/healthz", web::get().to(page::healthz))
            .route("/sink/faults", web::get().to(page::get_faults))
            .route("/sink/faults", web::post().to(page::set_faults))
            .route("/sink/", web::get().to(page::status))
            .route("/sink", web::get().to(page::status))
            .route("/", web::get().to(page::status))
            .service(
                web::scope(&scope_path)
                    .service(
                        web::resource(["/{id}", "/{id}/"])
                            .route(web::put().to(http::start))
                            .route(web::post().to(http::finish_transfer)),
                    )
                    .service(
                        web::resource("/{id}/{file}")
                            .route(web::put().to(http::chunk))
                            .route(web::head().to(http::head))
                            .route(web::post().to(http::finish_file)),
                    ),
            )
    })
    .on_connect(http::remember_socket)
    .workers(config.workers.max(1))
    .shutdown_timeout(1);
    let server = if signals {
        server
    } else {
        server.disable_signals()
    };
    let server = server.bind(config.listen)?;
    let addr = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| io::Error::other("the sink bound no address"))?;
    Ok((server.run(), addr))
}

/// A running embedded sink: what it received, its counters, its faults.
#[derive(Debug)]
pub struct SinkHandle {
    addr: SocketAddr,
    base_path: String,
    shared: Opened,
    server: ServerHandle,
    thread: Option<JoinHandle<()>>,
}

impl SinkHandle {
    /// The address the sink listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The push base: `http://{addr}{base_path}` (ends with `/`).
    pub fn base_url(&self) -> String {
        format!("http://{}{}", self.addr, self.base_path)
    }

    /// A transfer's push URL: `{base_url}{id}`.
    pub fn transfer_url(&self, id: &str) -> String {
        format!("{}{id}", self.base_url())
    }

    /// A file's URL: `{base_url}{id}/{file}`.
    pub fn file_url(&self, id: &str, file: &str) -> String {
        format!("{}{id}/{file}", self.base_url())
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.shared.settings.dir
    }

    /// The fault switches in force.
    pub fn faults(&self) -> Faults {
        self.shared.faults()
    }

    /// Replaces the fault switches (and restarts their "every Nth" counts).
    pub fn set_faults(&self, faults: Faults) {
        self.shared.set_faults(faults);
    }

    /// Adds a client's public key (raw bytes) to those received for, at run
    /// time (a demo whose client key is made after its sink started).
    pub fn trust_client(&self, key: &[u8]) {
        self.shared.trust_client(key);
    }

    /// The request counters.
    pub fn counters(&self) -> Counters {
        self.shared.counters()
    }

    /// Every transfer held, by id.
    pub fn transfers(&self) -> Vec<TransferState> {
        self.shared.transfers()
    }

    /// One transfer's state.
    pub fn transfer(&self, id: &str) -> Option<TransferState> {
        self.shared.transfer(id)
    }

    /// The stored path of a received file, if it exists.
    pub fn file_path(&self, id: &str, file: &str) -> Option<PathBuf> {
        http::data_file(&self.shared, id, file)
    }

    /// The bytes of a received file (`NotFound` when there is none).
    pub fn read_file(&self, id: &str, file: &str) -> io::Result<Vec<u8>> {
        match self.file_path(id, file) {
            Some(path) => std::fs::read(path),
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no file {file:?} in transfer {id:?}"),
            )),
        }
    }

    /// The protocol requests seen, oldest first (the last
    /// [`REQUEST_LOG_LEN`]).
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.requests()
    }

    /// Forgets the requests seen so far.
    pub fn clear_requests(&self) {
        self.shared.clear_requests();
    }

    /// Stops the server and waits for its thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        // The stop command is sent at once; the returned future only waits.
        drop(self.server.stop(false));
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the sink thread panicked");
            }
        }
    }
}

impl Drop for SinkHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}
