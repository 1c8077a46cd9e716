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
//! - [`server`]: hyper glue: accept (HTTP, HTTPS with rustls, farm members), the request
//!   pipeline, the one executor of wire answers.
//! - [`journal`]: the typed event stream (one record per request, one per session happening).
//! - [`journal_view`]: a journal file read back for people (`bitsmock journal`): tolerant
//!   NDJSON reading, filters, aligned rows. Pure.
//! - [`store`]: session temp files, atomic commit, confinement under the upload root, its lock.
//! - [`reply`]: the built-in server application for upload-reply jobs. Pure.
//! - [`notify`]: back-end notification of a real server application (`serve --notify`):
//!   its request, the meaning of its answer, its failures as Acks. Pure.
//! - [`echo`]: `bitsmock notify-echo`, a tiny server application for `serve --notify`.
//! - [`client`]: the reference BITS upload client (`bitsmock upload`), for tests and CLI.
//! - [`admin`]: the HTTP control API (docs/admin-api.md) over the journal and the rules, on
//!   a listener of its own.
//! - [`config`]: the validated configuration; [`units`]: size and duration parsing.
//! - [`log`]: the non-blocking writer the `tracing` log goes through.
//! - `fuzzing` (cargo feature `fuzzing`): the property checks behind the fuzz targets and
//!   their stable replay.
//!
//! Start a server inside a test with [`MockServer::builder`] (or [`spawn`] for a hand-made
//! [`Config`]), point a client at its URL, assert on its journal, and drop it. With
//! [`Config::admin`] set, [`spawn`] starts the control API too, at [`Running::admin_addr`];
//! with [`Config::tls`] it serves HTTPS ([`Running::tls_url`], the CA at
//! [`Server::ca_path`]), with [`Config::farm`] Host-Id farm members ([`Running::members`]).

pub mod admin;
pub mod client;
pub mod config;
pub mod echo;
pub mod exercise;
pub mod fault;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod journal;
pub mod journal_view;
pub mod log;
pub mod mock;
pub mod notify;
pub mod proto;
pub mod reply;
pub mod server;
pub mod store;
pub mod units;
pub mod verdict;

pub use config::Config;
pub use mock::MockServer;
pub use server::Server;

use std::net::SocketAddr;
use std::sync::Arc;

/// A server running in the background of the current tokio runtime.
pub struct Running {
    pub addr: SocketAddr,
    /// The `--tls-listen` HTTPS listener, when [`Config::tls_listen`] asked for one.
    pub tls_addr: Option<SocketAddr>,
    /// The farm members' listeners (member 1 first), when [`Config::farm`] asked for them.
    pub members: Vec<SocketAddr>,
    pub server: Arc<Server>,
    admin: Option<SocketAddr>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// `http://127.0.0.1:PORT` (`https://` under [`Config::listen_tls`]).
    pub fn url(&self) -> String {
        let scheme = if self.server.config().listen_tls {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// `https://127.0.0.1:PORT` of the HTTPS listener beside the main one, if any.
    pub fn tls_url(&self) -> Option<String> {
        self.tls_addr.map(|a| format!("https://{a}"))
    }

    /// Where the control API listens, when [`Config::admin`] asked for it.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// `http://127.0.0.1:PORT` of the control API, when it runs.
    pub fn admin_url(&self) -> Option<String> {
        self.admin.map(|a| format!("http://{a}"))
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

/// The upload listeners [`bind`] opened, and where they are.
pub struct Bound {
    pub listeners: Vec<server::Listener>,
    /// `listen`.
    pub addr: SocketAddr,
    /// `tls_listen`.
    pub tls_addr: Option<SocketAddr>,
    /// The farm members, member 1 first.
    pub members: Vec<SocketAddr>,
}

/// Binds `config.listen`, `config.tls_listen` and, for a farm, one listener per member on
/// `listen`'s address with a free port, speaking `listen`'s scheme; then records the
/// members' `BITS-Host-Id` values in `config.vdir.farm`. Errors name the address.
pub async fn bind(config: &mut Config) -> std::io::Result<Bound> {
    async fn open(
        at: SocketAddr,
        what: &str,
    ) -> std::io::Result<(tokio::net::TcpListener, SocketAddr)> {
        let listener = tokio::net::TcpListener::bind(at).await.map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot listen on {at}{what}: {e}"))
        })?;
        let bound = listener.local_addr()?;
        Ok((listener, bound))
    }
    let front = |tcp| match config.listen_tls {
        true => server::Listener::https(tcp),
        false => server::Listener::http(tcp),
    };
    let (listener, addr) = open(config.listen, "").await?;
    let mut listeners = vec![front(listener)];
    let tls_addr = match config.tls_listen {
        Some(at) => {
            let (tls, bound) = open(at, " (--tls-listen)").await?;
            listeners.push(server::Listener::https(tls));
            Some(bound)
        }
        None => None,
    };
    let mut members = Vec::new();
    if let Some(farm) = config.farm {
        for member in 1..=farm.members {
            let (tcp, bound) = open(SocketAddr::new(addr.ip(), 0), " (--farm)").await?;
            listeners.push(front(tcp).member(member));
            members.push(bound);
        }
        config.vdir.farm = Some(proto::Farm {
            members: members.iter().map(SocketAddr::to_string).collect(),
            shared: farm.shared,
        });
    }
    Ok(Bound {
        listeners,
        addr,
        tls_addr,
        members,
    })
}

/// Binds `config.listen` (use port 0 for a free port), and `config.admin` when set, and serves
/// in the background. The control API stops when the server does.
pub async fn spawn(mut config: Config) -> std::io::Result<Running> {
    let Bound {
        listeners,
        addr,
        tls_addr,
        members,
    } = bind(&mut config).await?;
    let admin_listener = match config.admin {
        Some(at) => Some(tokio::net::TcpListener::bind(at).await?),
        None => None,
    };
    let admin = admin_listener
        .as_ref()
        .map(tokio::net::TcpListener::local_addr)
        .transpose()?;
    let token = config.admin_token.as_ref().map(|t| t.as_str().to_owned());
    let server = Server::new(config)?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
    let admin_task = admin_listener.map(|listener| {
        tokio::spawn(admin::serve(Arc::clone(&server), listener, token, async {
            let _ = admin_stopped.await;
        }))
    });
    let running = Arc::clone(&server);
    let task = tokio::spawn(async move {
        let result = running
            .serve(listeners, async {
                let _ = stopped.await;
            })
            .await;
        let _ = admin_stop.send(());
        if let Some(task) = admin_task {
            let _ = task.await;
        }
        result
    });
    Ok(Running {
        addr,
        tls_addr,
        members,
        server,
        admin,
        stop,
        task,
    })
}
