//! bitsmock: a mock and fault-injecting server for the Microsoft BITS upload protocol.
//!
//! ```text
//!  bytes on a socket ─▶ server (async glue, the only I/O) ─▶ fault layer (pure, seeded) ─▶ protocol core (pure)
//!                                 ▲                                │                                │
//!                                 └──── Wire answer (what to do) ◀─┴──────── Ack (what to say) ◀────┘
//!                                 │
//!                                 └──▶ events ─▶ journal (memory ring, tracing)
//! ```
//!
//! - [`proto`]: packets, ranges, Acks, errors and the session state machine. Pure.
//! - [`fault`]: profiles, the seeded plan for each request, and plan + Ack → wire answer. Pure.
//! - [`server`]: hyper glue: accept, the request pipeline, the one executor of wire answers.
//! - [`journal`]: the typed event stream (one record per request, one per session happening).
//! - [`journal_view`]: a journal file read back for people (`bitsmock journal`): tolerant
//!   NDJSON reading, filters, aligned rows. Pure.
//! - [`store`]: session temp files, atomic commit, confinement under the upload root, its lock.
//! - [`reply`]: the built-in server application for upload-reply jobs. Pure.
//! - [`client`]: the reference BITS upload client (`bitsmock upload`), for tests and CLI.
//! - [`config`]: the validated configuration; [`units`]: size and duration parsing.
//! - `fuzzing` (cargo feature `fuzzing`): the property checks behind the fuzz targets and
//!   their stable replay.
//!
//! Start a server inside a test with [`MockServer::builder`] (or [`spawn`] for a hand-made
//! [`Config`]), point a client at its URL, assert on its journal, and drop it.

pub mod client;
pub mod config;
pub mod fault;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod journal;
pub mod journal_view;
pub mod mock;
pub mod proto;
pub mod reply;
pub mod server;
pub mod store;
pub mod units;

pub use config::Config;
pub use mock::MockServer;
pub use server::Server;

use std::net::SocketAddr;
use std::sync::Arc;

/// A server running in the background of the current tokio runtime.
pub struct Running {
    pub addr: SocketAddr,
    pub server: Arc<Server>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits until the server stops by itself (`Server::shutdown`, `POST /shutdown`).
    pub async fn stopped(self) -> std::io::Result<()> {
        self.task.await.map_err(std::io::Error::other)?
    }

    /// Shuts the server down gracefully and waits for it.
    pub async fn stop(self) -> std::io::Result<()> {
        let _ = self.stop.send(());
        self.task.await.map_err(std::io::Error::other)?
    }
}

/// Binds `config.listen` (use port 0 for a free port) and serves in the background.
pub async fn spawn(config: Config) -> std::io::Result<Running> {
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let server = Server::new(config)?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(Arc::clone(&server).run(listener, async {
        let _ = stopped.await;
    }));
    Ok(Running {
        addr,
        server,
        stop,
        task,
    })
}
