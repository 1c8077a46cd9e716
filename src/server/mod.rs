//! The async glue: hyper 1 on tokio, the only layer that touches sockets and files.
//!
//! - `accept`: one accept loop (TCP in [`Server::run`], any byte stream in
//!   [`Server::serve_io`]) and per-connection HTTP settings.
//! - `pipeline`: one request, top to bottom: parse → plan → step → answer.
//! - `execute`: the single executor of wire answers — the only place that sleeps for a
//!   fault, throttles, resets, hangs or sends raw bytes — and [`socket`], the stream it steers.
//! - `sessions`: the one lock over the session table and the fault state, the per-session
//!   entries (temp file, reply), and following the table's changes (files, events).
//! - `body`: streaming a fragment body into the temp file; draining unused bodies.
//! - `reply_http`: the built-in reply application over HTTP, and Ack → HTTP response.
//! - `notify`: the HTTP/1.1 client leg to a notified server application (`--notify`).
//! - `casing`: IIS's spelling of header names in the bytes hyper writes.
//!
//! Locks are std mutexes held for a few lines and never across `.await`, except the
//! per-session async lock that serializes requests of one session.

mod accept;
mod body;
mod casing;
mod control;
mod execute;
mod notify;
mod pipeline;
mod reply_http;
mod sessions;
pub mod socket;
pub mod tls;
mod uploads;

use crate::config::Config;
use crate::fault::{Faults, Firing};
use crate::journal::{self, Event, Journal, What};
use crate::proto::{Session, SessionId, Table};
use crate::store::Store;
use sessions::{Entry, State};
use std::collections::HashMap;
use std::io;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub(crate) use accept::accept;
pub use accept::{Listener, Scheme};
pub use control::{Gauges, Upload};
pub use reply_http::to_response;

/// A running server's state, shared by all connections.
pub struct Server {
    config: Config,
    store: Store,
    /// The session table and the fault layer's counters, under one lock: a Create-Session's
    /// ordinal and its fault decision are made together.
    state: Mutex<State>,
    entries: Mutex<HashMap<SessionId, Arc<tokio::sync::Mutex<Entry>>>>,
    journal: Mutex<Journal>,
    /// Woken whenever an event is recorded.
    recorded: tokio::sync::Notify,
    started: tokio::time::Instant,
    /// Connections accepted so far, and those open now.
    connections: AtomicU64,
    open_connections: AtomicU64,
    /// Committed files, oldest first.
    uploads: Mutex<uploads::Uploads>,
    /// Notified by [`Server::shutdown`].
    stopping: tokio::sync::Notify,
    /// The `--journal` file, finished when the server stops.
    journal_file: Option<Arc<journal::FileSink>>,
    /// The certificate HTTPS listeners present, when [`Config::tls`] asks for one.
    tls: Option<tls::Identity>,
    /// Where the generated CA was written.
    ca: Option<std::path::PathBuf>,
}

impl Server {
    /// Opens (and locks) the upload root and prepares an empty session table. Fails when
    /// another server holds the root, naming it and the other process.
    pub fn new(config: Config) -> io::Result<Arc<Server>> {
        let store = Store::open(&config.root)?;
        let tls = match &config.tls {
            Some(source) => Some(
                tls::Identity::load(source)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?,
            ),
            None => None,
        };
        let ca = match tls.as_ref().and_then(|t| t.ca_pem.as_deref()) {
            Some(pem) => Some(write_ca(&store, pem)?),
            None => None,
        };
        let mut faults = Faults::new(
            config.rules.clone(),
            config.seed,
            config.time_scale,
            config.vdir.error_header,
        );
        faults.suppress(config.suppress.iter().copied());
        let mut events = Journal::keeping(config.journal_keep);
        let journal_file = match &config.journal {
            Some(path) => {
                let sink = Arc::new(journal::FileSink::create(path).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("cannot write the journal {}: {e}", path.display()),
                    )
                })?);
                events.add_sink(Box::new(Arc::clone(&sink)));
                Some(sink)
            }
            None => None,
        };
        let server = Arc::new(Server {
            state: Mutex::new(State {
                table: Table::new(),
                faults,
            }),
            journal: Mutex::new(events),
            recorded: tokio::sync::Notify::new(),
            started: tokio::time::Instant::now(),
            connections: AtomicU64::new(0),
            open_connections: AtomicU64::new(0),
            uploads: Mutex::new(uploads::Uploads::default()),
            stopping: tokio::sync::Notify::new(),
            journal_file,
            tls,
            ca,
            config,
            store,
            entries: Mutex::new(HashMap::new()),
        });
        server.emit(What::Started {
            schema: journal::SCHEMA,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            seed: server.config.seed,
            profile: server.config.profile_name.clone(),
            time_scale: server.config.time_scale,
            rules: server.rules(),
            settings: server.config.summary(),
        });
        Ok(server)
    }

    /// Records the last event (each rule's fire count) and closes the journal file.
    pub(super) fn stopped(&self) {
        let rules = self.rules();
        self.emit(What::Stopped { rules });
        if let Some(file) = &self.journal_file
            && let Err(e) = file.finish()
        {
            tracing::error!(error = %e, "the journal file is incomplete");
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The generated CA's certificate (PEM), for clients to trust: `None` without TLS or
    /// with the user's own certificate.
    pub fn ca_path(&self) -> Option<&std::path::Path> {
        self.ca.as_deref()
    }

    /// Number of live sessions.
    pub fn session_count(&self) -> usize {
        lock(&self.state).table.len()
    }

    /// A snapshot of the live sessions, in id order.
    pub fn sessions(&self) -> Vec<Session> {
        lock(&self.state).table.sessions().cloned().collect()
    }

    /// The kept events, oldest first.
    pub fn events(&self) -> Vec<Event> {
        lock(&self.journal).since(0)
    }

    /// Kept events numbered above `seq`, oldest first.
    pub fn events_since(&self, seq: u64) -> Vec<Event> {
        lock(&self.journal).since(seq)
    }

    /// Waits up to `timeout` for events numbered above `seq`; empty if none came.
    pub async fn wait_for_events(&self, seq: u64, timeout: Duration) -> Vec<Event> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Registered before looking, so an event recorded in between still wakes us.
            let notified = self.recorded.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let events = self.events_since(seq);
            if !events.is_empty() {
                return events;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Vec::new();
            }
        }
    }

    /// Every fault that fired, oldest first, from the kept events.
    pub fn firings(&self) -> Vec<Firing> {
        let journal = lock(&self.journal);
        journal
            .since(0)
            .into_iter()
            .flat_map(|e| match e.what {
                What::Request(r) => r.faults,
                What::Refused { fault, .. } | What::TlsFault { fault, .. } => vec![fault],
                _ => Vec::new(),
            })
            .collect()
    }

    /// Each rule's name and how often it fired, in rule order.
    pub fn fire_counts(&self) -> Vec<(String, u64)> {
        let state = lock(&self.state);
        state
            .faults
            .rules()
            .iter()
            .zip(state.faults.fire_counts())
            .map(|(rule, n)| (rule.name.clone(), *n))
            .collect()
    }

    /// Numbers and keeps an event, logs it, and wakes waiters.
    fn emit(&self, what: What) {
        let at_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let event = lock(&self.journal).push(at_ms, what);
        // Logged after the lock is let go: formatting a line under it made concurrent
        // requests queue for it. Lines of requests answered at the same moment may come out
        // of `seq` order; each carries its `seq`.
        journal::trace(&event);
        self.recorded.notify_waiters();
    }
}

/// Writes the generated CA to `BITS-Sessions/tls/ca.pem`, replacing an older run's.
fn write_ca(store: &Store, pem: &str) -> io::Result<std::path::PathBuf> {
    let dir = store.tls_dir();
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("ca.pem");
    std::fs::write(&path, pem)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot write {}: {e}", path.display())))?;
    Ok(path)
}

/// Locks a std mutex, recovering from poisoning: a panicked request must not wedge the server.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The core's clock. tokio's, so tests under paused time see expiry deterministically.
fn now() -> std::time::Instant {
    tokio::time::Instant::now().into_std()
}
