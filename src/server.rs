//! The async glue: hyper 1 on tokio. The only place that touches sockets.
//!
//! For each request it builds a [`Head`], asks the protocol core what to do (under a short
//! lock, never held across `.await`), performs the I/O the core asked for — streaming a
//! fragment body into the session's temp file, committing or discarding a file — and writes
//! the Ack. Requests for one session are serialized by a per-session async lock, so two
//! concurrent requests for the same session never interleave their writes.

use crate::config::Config;
use crate::conn::{Control, FaultIo};
use crate::fault::plan::{broken_bytes, lie};
use crate::fault::rule::SessionLoss;
use crate::fault::{Action, ConnAuth, Facts, Faults, Firing, Outcome, Plan};
use crate::journal::Journal;
use crate::proto::session::reply_path;
use crate::proto::{
    Ack, BitsError, Close, CloseOutcome, Env, Existing, Head, Packet, Rendered, SessionId, Step,
    Table, Write, packet,
};
use crate::reply::{self, Served};
use crate::store::Store;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};
use tokio::net::TcpListener;

/// How long in-flight requests get to finish after shutdown is requested.
const DRAIN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);
/// Body bytes read and thrown away so a rejected request can keep its connection alive.
const DRAIN_LIMIT: u64 = 1 << 20;
/// The same for a fragment that was answered without streaming its body (413, 416, already
/// stored, ...). Clients write the whole body (up to 13 MB) before reading the Ack; closing
/// with unread bytes resets the connection and the Ack is lost with it.
const FRAGMENT_DRAIN_LIMIT: u64 = 64 << 20;
/// Fragment bytes gathered before each file write. Body frames are at most the read buffer
/// (`max_head_bytes`, 64 KiB by default) and every file write is a blocking-pool round trip;
/// writing per frame cost a third of the throughput (benches/upload.rs). The frames are kept
/// as they came (no copy into one buffer) and written by one blocking task with a std file:
/// tokio's `File` would copy them once more into its own buffer (benches/client.rs).
const WRITE_CHUNK: usize = 1 << 20;

/// A request that ends without an answer: the connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum Dropped {
    #[error("the request body ended early or stalled: {0}")]
    Body(String),
    #[error("a fault closed the connection: {0}")]
    Fault(String),
}

/// One accepted connection, as its requests see it.
struct Conn {
    peer: SocketAddr,
    local: SocketAddr,
    control: Arc<Control>,
    auth: Mutex<ConnAuth>,
}

/// A fault's instruction to stop reading a fragment body part-way and reset.
#[derive(Debug, Clone, Copy)]
struct Cut {
    /// Body bytes to read before the reset.
    after: u64,
    /// Whether the bytes stored before the reset count as received.
    keep: bool,
}

type Answer = Result<Response<Full<Bytes>>, Dropped>;

/// One session's files and reply, locked for the duration of a request on that session.
#[derive(Default)]
struct Entry {
    file: Option<std::fs::File>,
    reply: Option<Reply>,
}

#[derive(Clone)]
struct Reply {
    body: Bytes,
    last_modified: String,
}

/// A running server's state, shared by all connections.
pub struct Server {
    config: Config,
    store: Store,
    table: Mutex<Table>,
    entries: Mutex<HashMap<SessionId, Arc<tokio::sync::Mutex<Entry>>>>,
    ids: Mutex<StdRng>,
    faults: Mutex<Faults>,
    /// No rules at all: skip the fault layer entirely.
    faultless: bool,
    journal: Mutex<Journal>,
    started: tokio::time::Instant,
}

impl Server {
    /// Opens the upload root and prepares an empty session table.
    pub fn new(config: Config) -> io::Result<Arc<Server>> {
        let store = Store::open(&config.root)?;
        // Session ids come from their own stream, so they do not depend on fault decisions.
        let ids = StdRng::seed_from_u64(config.seed ^ 0x5E55_1011_D5EE_D000);
        let faults = Faults::new(
            config.rules.clone(),
            config.seed,
            config.time_scale,
            config.vdir.error_header,
        );
        Ok(Arc::new(Server {
            faultless: config.rules.is_empty(),
            faults: Mutex::new(faults),
            journal: Mutex::new(Journal::default()),
            started: tokio::time::Instant::now(),
            config,
            store,
            table: Mutex::new(Table::new()),
            entries: Mutex::new(HashMap::new()),
            ids: Mutex::new(ids),
        }))
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Number of live sessions.
    pub fn session_count(&self) -> usize {
        lock(&self.table).len()
    }

    /// Every fault that fired, oldest first (the most recent 100,000).
    pub fn firings(&self) -> Vec<Firing> {
        lock(&self.journal).firings()
    }

    /// Each rule's name and how often it fired, in profile order.
    pub fn fire_counts(&self) -> Vec<(String, u64)> {
        let faults = lock(&self.faults);
        faults
            .rules()
            .iter()
            .zip(faults.fire_counts())
            .map(|(rule, n)| (rule.name.clone(), *n))
            .collect()
    }

    /// Accepts connections until `shutdown` resolves, then lets in-flight requests finish
    /// (for a few seconds at most).
    pub async fn run(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let sweeper = tokio::spawn(Arc::clone(&self).sweep());
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(pair) => pair,
                        Err(e) => {
                            // Running out of file descriptors must not end the server.
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    if !self.faultless {
                        let refused = lock(&self.faults).refuse(self.started.elapsed());
                        if let Some(firing) = refused {
                            self.record(&firing);
                            drop(stream);
                            continue;
                        }
                    }
                    let _ = stream.set_nodelay(true);
                    let local = stream.local_addr().unwrap_or(peer);
                    let control = Arc::new(Control::default());
                    let conn = Arc::new(Conn {
                        peer,
                        local,
                        control: Arc::clone(&control),
                        auth: Mutex::default(),
                    });
                    let stream = FaultIo::new(stream, control);
                    let server = Arc::clone(&self);
                    let service = service_fn(move |req| {
                        let server = Arc::clone(&server);
                        let conn = Arc::clone(&conn);
                        async move { server.handle(req, conn).await }
                    });
                    let conn = http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(self.config.header_read_timeout)
                        .max_buf_size(self.config.max_head_bytes.max(8192))
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service);
                    let conn = graceful.watch(conn);
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(%peer, error = %e, "connection ended");
                        }
                    });
                }
                () = &mut shutdown => break,
            }
        }
        drop(listener);
        sweeper.abort();
        if tokio::time::timeout(DRAIN_GRACE, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("shutdown grace period over; dropping open connections");
        }
        Ok(())
    }

    /// Serves one already-open connection over any byte stream — an in-memory duplex in the
    /// `connection` fuzz target — with the same HTTP settings and request handler as
    /// [`Server::run`]. Refusals, resets, broken responses and write throttling act on the
    /// socket that `run` wraps, so here they do nothing; every other fault applies.
    pub async fn serve_io<I>(self: &Arc<Self>, io: I) -> Result<(), hyper::Error>
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let nowhere = SocketAddr::from(([127, 0, 0, 1], 0));
        let conn = Arc::new(Conn {
            peer: nowhere,
            local: nowhere,
            control: Arc::new(Control::default()),
            auth: Mutex::default(),
        });
        let server = Arc::clone(self);
        let service = service_fn(move |req| {
            let server = Arc::clone(&server);
            let conn = Arc::clone(&conn);
            async move { server.handle(req, conn).await }
        });
        http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.config.header_read_timeout)
            .max_buf_size(self.config.max_head_bytes.max(8192))
            .keep_alive(true)
            .serve_connection(TokioIo::new(io), service)
            .await
    }

    /// Removes idle sessions and their files, so expiry happens even if no client asks.
    async fn sweep(self: Arc<Self>) {
        let timeout = self.config.vdir.session_timeout;
        let period = (timeout / 4).clamp(
            std::time::Duration::from_millis(20),
            std::time::Duration::from_secs(30),
        );
        loop {
            tokio::time::sleep(period).await;
            let gone = lock(&self.table).expire(now(), timeout);
            for id in gone {
                tracing::info!(session = %id, "session expired");
                self.discard(&id).await;
            }
        }
    }

    async fn handle(self: Arc<Self>, req: Request<Incoming>, conn: Arc<Conn>) -> Answer {
        if req.method() == Method::GET || req.method() == Method::HEAD {
            return Ok(self.serve_reply(&req).await);
        }
        let (parts, mut body) = req.into_parts();
        let target = parts.uri.to_string();
        let head = Head {
            method: parts.method.as_str().as_bytes(),
            target: target.as_bytes(),
            headers: parts
                .headers
                .iter()
                .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()))
                .collect(),
        };
        let origin = origin(&parts.headers, conn.local);
        let packet = match packet::parse(&head) {
            Ok(packet) => packet,
            Err(ack) => {
                drain(&mut body, DRAIN_LIMIT).await;
                let label = head
                    .text("BITS-Packet-Type")
                    .unwrap_or("-")
                    .chars()
                    .take(32)
                    .collect::<String>();
                log(conn.peer, &label, head.echo_session_id(), None, ack.status);
                return Ok(self.respond(&ack));
            }
        };
        let plan = self.plan(&packet, parts.uri.path(), &head, &conn);
        conn.control.throttle_writes(plan.write_rate);
        if !plan.stall.is_zero() {
            tokio::time::sleep(plan.stall).await;
        }
        let range = match &packet {
            Packet::Fragment { range, .. } => Some(*range),
            _ => None,
        };
        let answer = match plan.action {
            Action::Instead(outcome) => {
                if matches!(outcome, Outcome::Respond(_)) {
                    drain(&mut body, self.drain_limit(&packet)).await;
                }
                self.finish(outcome, None, &conn).await
            }
            action => {
                let cut = match action {
                    Action::ResetMidBody { after, keep } => Some(Cut { after, keep }),
                    _ => None,
                };
                match self
                    .process(&packet, &mut body, &origin, cut, plan.read_rate)
                    .await
                {
                    Err(dropped) => Err(dropped),
                    Ok(ack) => {
                        log(
                            conn.peer,
                            packet.packet_type().as_str(),
                            ack.session_id.as_deref(),
                            range.map(|r| r.to_string()),
                            ack.status,
                        );
                        match action {
                            Action::After(outcome) => self.finish(outcome, Some(&ack), &conn).await,
                            Action::Lie { lie: how, other } => {
                                let mut rendered = ack.render(self.config.vdir.error_header);
                                lie(&mut rendered, how, range.map(|r| r.total()), other);
                                Ok(to_response(&rendered))
                            }
                            Action::LoseSession(loss) => {
                                let id = packet.session().or_else(|| {
                                    ack.session_id.as_deref().and_then(SessionId::parse)
                                });
                                self.lose_session(id, loss).await;
                                Ok(self.respond(&ack))
                            }
                            _ => Ok(self.respond(&ack)),
                        }
                    }
                }
            }
        };
        if let Err(Dropped::Fault(why)) = &answer
            && why == "reset"
        {
            conn.control.reset();
        }
        if !plan.delay.is_zero() {
            tokio::time::sleep(plan.delay).await;
        }
        answer
    }

    /// Asks the fault layer what to do with this request, and logs what fired.
    fn plan(&self, packet: &Packet, path: &str, head: &Head, conn: &Conn) -> Plan {
        if self.faultless {
            return Plan::default();
        }
        let session = match packet {
            Packet::Ping => 0,
            Packet::CreateSession { .. } => lock(&self.table).created() + 1,
            other => other
                .session()
                .and_then(|id| lock(&self.table).get(&id).map(|s| s.ordinal))
                .unwrap_or(0),
        };
        let facts = Facts {
            packet: packet.packet_type(),
            session,
            range: match packet {
                Packet::Fragment { range, .. } => Some(*range),
                _ => None,
            },
            path,
            since_start: self.started.elapsed(),
            authorization: head.text("Authorization"),
        };
        let plan = {
            let mut auth = lock(&conn.auth);
            lock(&self.faults).plan(&facts, &mut auth)
        };
        for firing in &plan.firings {
            self.record(firing);
        }
        plan
    }

    fn record(&self, firing: &Firing) {
        tracing::info!(
            rule = firing.rule + 1,
            name = %firing.name,
            session = firing.session,
            packet = firing.packet.map_or("-", |p| p.as_str()),
            index = firing.index,
            range = firing.range.map(|r| r.to_string()).as_deref().unwrap_or("-"),
            effect = %firing.effect,
            "fault"
        );
        lock(&self.journal).record(firing.clone());
    }

    /// Carries out an outcome that replaces the real answer.
    async fn finish(&self, outcome: Outcome, ack: Option<&Ack>, conn: &Conn) -> Answer {
        match outcome {
            Outcome::Close => Err(Dropped::Fault("close".into())),
            Outcome::Reset => Err(Dropped::Fault("reset".into())),
            Outcome::Hang(d) => {
                tokio::time::sleep(d).await;
                Err(Dropped::Fault("hang".into()))
            }
            Outcome::Respond(rendered) => Ok(to_response(&rendered)),
            Outcome::Broken(broken, noise) => {
                let rendered = ack
                    .unwrap_or(&Ack::ok())
                    .render(self.config.vdir.error_header);
                conn.control
                    .replace_response(broken_bytes(broken, &rendered, noise));
                Ok(to_response(&rendered))
            }
        }
    }

    /// Forgets sessions after their packet was answered (fault `lose-session`).
    async fn lose_session(&self, id: Option<SessionId>, loss: SessionLoss) {
        match loss {
            SessionLoss::This { keep_file } => {
                let forgotten = id.filter(|id| lock(&self.table).forget(id));
                if let Some(id) = forgotten {
                    self.drop_entry(&id, keep_file).await;
                }
            }
            SessionLoss::All { keep_file } => {
                let gone = lock(&self.table).clear();
                for id in gone {
                    self.drop_entry(&id, keep_file).await;
                }
            }
            SessionLoss::Expire(idle) => {
                if let Some(id) = id {
                    lock(&self.table).set_idle_timeout(&id, idle);
                }
            }
        }
    }

    async fn drop_entry(&self, id: &SessionId, keep_file: bool) {
        if keep_file {
            lock(&self.entries).remove(id);
        } else {
            self.discard(id).await;
        }
    }

    /// How much of an unused body to read so the connection survives.
    fn drain_limit(&self, packet: &Packet) -> u64 {
        match packet {
            Packet::Fragment { .. } => FRAGMENT_DRAIN_LIMIT.max(self.config.vdir.max_fragment_size),
            _ => DRAIN_LIMIT,
        }
    }

    /// Runs one validated packet through the core and performs the I/O it asks for.
    async fn process(
        &self,
        packet: &Packet,
        body: &mut Incoming,
        origin: &str,
        cut: Option<Cut>,
        read_rate: Option<u64>,
    ) -> Result<Ack, Dropped> {
        let existing = match packet {
            Packet::CreateSession { destination, .. } => self.store.inspect(destination).await,
            _ => Existing::Nothing,
        };
        // Requests on one session run one at a time: hold its entry for the whole request.
        let entry = packet.session().and_then(|id| self.entry(&id));
        let mut guard = match &entry {
            Some(e) => Some(e.lock().await),
            None => None,
        };
        let env = Env {
            now: now(),
            fresh_id: self.fresh_id(),
            existing,
            origin,
        };
        let step = lock(&self.table).step(&self.config.vdir, packet, &env);
        let ack = match step {
            Step::Answer(ack) => {
                if let (Packet::CreateSession { .. }, true) = (packet, ack.is_success()) {
                    lock(&self.entries).insert(env.fresh_id, Arc::default());
                }
                ack
            }
            Step::Discard(ack, id) => {
                self.discard(&id).await;
                ack
            }
            Step::Write(write) => match guard.as_deref_mut() {
                Some(entry) => {
                    let io = BodyIo { cut, read_rate };
                    return self.write(entry, body, &write, origin, io).await;
                }
                None => Ack::error(BitsError::SessionNotFound),
            },
            Step::Close(close) => match guard.as_deref_mut() {
                Some(entry) => self.close(entry, &close).await,
                None => Ack::error(BitsError::SessionNotFound),
            },
        };
        // The body was not used: read what is left so the connection can carry on (or, for a
        // mid-body reset, just the prefix the fault lets through).
        if let Some(cut) = cut {
            drain(body, cut.after).await;
            return Err(Dropped::Fault("reset".into()));
        }
        drain(body, self.drain_limit(packet)).await;
        Ok(ack)
    }

    /// Streams a fragment body into the temp file and records what was stored.
    async fn write(
        &self,
        entry: &mut Entry,
        body: &mut Incoming,
        write: &Write,
        origin: &str,
        io: BodyIo,
    ) -> Result<Ack, Dropped> {
        let streamed = self.stream(entry, body, write, io).await;
        let stored = match &streamed {
            Ok(n) | Err(Failure::Body(n, _)) => *n,
            Err(Failure::Cut(n)) if io.cut.is_some_and(|c| c.keep) => *n,
            Err(Failure::Cut(_) | Failure::Disk(_)) => 0,
        };
        let env = Env {
            now: now(),
            fresh_id: write.session,
            existing: Existing::Nothing,
            origin,
        };
        let (ack, completed) = {
            let mut table = lock(&self.table);
            let ack = table.record_fragment(write, stored, &env);
            let completed = table
                .get(&write.session)
                .filter(|s| s.is_complete() && s.reply)
                .map(|s| (s.destination.clone(), s.total.unwrap_or(0)));
            (ack, completed)
        };
        if let (Some((destination, size)), None) = (completed, &entry.reply) {
            entry.reply = Some(self.build_reply(&write.session, &destination, size).await);
        }
        match streamed {
            Ok(_) => Ok(ack),
            Err(Failure::Body(_, why)) => Err(Dropped::Body(why)),
            Err(Failure::Cut(_)) => Err(Dropped::Fault("reset".into())),
            Err(Failure::Disk(e)) => {
                tracing::warn!(session = %write.session, error = %e, "fragment write failed");
                Ok(Ack::error(BitsError::DiskFull).with_session(ack.session_id.as_deref()))
            }
        }
    }

    async fn stream(
        &self,
        entry: &mut Entry,
        body: &mut Incoming,
        write: &Write,
        io: BodyIo,
    ) -> Result<u64, Failure> {
        if entry.file.is_none() {
            let file = self
                .store
                .open_temp(&write.session)
                .await
                .map_err(Failure::Disk)?;
            entry.file = Some(file.into_std().await);
        }
        // The file travels to the blocking pool and back; if this request is abandoned
        // meanwhile, the slot stays empty and the next fragment reopens the file.
        let mut writer = Writer {
            file: entry.file.take(),
            in_flight: None,
        };
        let started = tokio::time::Instant::now();
        let limit = io.cut.map_or(u64::MAX, |c| c.after);
        let mut consumed = 0u64;
        let mut skip = write.skip;
        let mut written = 0u64;
        let mut ended = None;
        let mut pending: Vec<Bytes> = Vec::new();
        let mut pending_len = 0usize;
        while written < write.len {
            if consumed >= limit {
                ended = Some(Ended::Cut);
                break;
            }
            let frame =
                match tokio::time::timeout(self.config.body_read_timeout, body.frame()).await {
                    Err(_) => {
                        ended = Some(Ended::Body("stalled".to_owned()));
                        break;
                    }
                    Ok(None) => {
                        ended = Some(Ended::Body("ended early".to_owned()));
                        break;
                    }
                    Ok(Some(Err(e))) => {
                        ended = Some(Ended::Body(e.to_string()));
                        break;
                    }
                    Ok(Some(Ok(frame))) => frame,
                };
            let Ok(mut data) = frame.into_data() else {
                continue;
            };
            data.truncate(
                data.len()
                    .min((limit - consumed).min(usize::MAX as u64) as usize),
            );
            consumed += data.len() as u64;
            if let Some(rate) = io.read_rate {
                // Hold the next read back until these bytes were due at `rate` bytes/s.
                let due =
                    started + std::time::Duration::from_secs_f64(consumed as f64 / rate as f64);
                tokio::time::sleep_until(due).await;
            }
            let dropped = skip.min(data.len() as u64);
            skip -= dropped;
            let _ = data.split_to(dropped as usize);
            let take = (write.len - written).min(data.len() as u64) as usize;
            if take == 0 {
                continue;
            }
            data.truncate(take);
            pending.push(data);
            pending_len += take;
            written += take as u64;
            if pending_len >= WRITE_CHUNK {
                let at = write.at + written - pending_len as u64;
                writer
                    .submit(at, std::mem::take(&mut pending))
                    .await
                    .map_err(Failure::Disk)?;
                pending_len = 0;
            }
        }
        if ended.is_none() && io.cut.is_some() {
            // The whole body fitted before the cut: the reset still happens, after it.
            ended = Some(Ended::Cut);
        }
        // Only bytes the file really holds may be acknowledged.
        let at = write.at + written - pending_len as u64;
        writer.submit(at, pending).await.map_err(Failure::Disk)?;
        writer.settle().await.map_err(Failure::Disk)?;
        entry.file = writer.file;
        match ended {
            None => Ok(written),
            Some(Ended::Cut) => Err(Failure::Cut(written)),
            Some(Ended::Body(why)) => Err(Failure::Body(written, why)),
        }
    }

    async fn close(&self, entry: &mut Entry, close: &Close) -> Ack {
        // The file must be closed before it is renamed or deleted.
        let had_data = entry.file.take().is_some()
            || tokio::fs::try_exists(self.store.temp_path(&close.session))
                .await
                .unwrap_or(false);
        let outcome = if close.commit {
            self.store
                .commit(
                    &close.session,
                    &close.destination,
                    self.config.vdir.allow_overwrites,
                    had_data,
                )
                .await
        } else {
            self.store.discard(&close.session).await;
            CloseOutcome::Done
        };
        let ack = lock(&self.table).finish_close(close, outcome);
        if matches!(outcome, CloseOutcome::Done | CloseOutcome::Vanished) {
            entry.reply = None;
            lock(&self.entries).remove(&close.session);
            self.store.discard(&close.session).await;
        }
        ack
    }

    /// The built-in server application: a JSON document about the upload.
    async fn build_reply(
        &self,
        id: &SessionId,
        destination: &crate::proto::Destination,
        size: u64,
    ) -> Reply {
        let path = self.store.temp_path(id);
        let digest = tokio::task::spawn_blocking(move || sha256_file(&path))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let name = destination.file_name().to_owned();
        Reply {
            body: reply::document(&name, size, &digest),
            last_modified: httpdate::fmt_http_date(SystemTime::now()),
        }
    }

    async fn serve_reply(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path();
        let id = path
            .strip_prefix("/BITS-Sessions/Replies/")
            .and_then(|rest| rest.strip_suffix("/responsefile.bin"))
            .and_then(SessionId::parse)
            .filter(|id| reply_path(id) == path);
        let entry = id.and_then(|id| self.entry(&id));
        let reply = match entry {
            Some(e) => e.lock().await.reply.clone(),
            None => None,
        };
        let Some(reply) = reply else {
            return plain(StatusCode::NOT_FOUND);
        };
        let len = reply.body.len() as u64;
        let range = req
            .headers()
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok());
        let (status, content, content_range) = match reply::select(range, len) {
            Served::Whole => (StatusCode::OK, reply.body.clone(), None),
            Served::Partial { first, last } => (
                StatusCode::PARTIAL_CONTENT,
                reply.body.slice(first as usize..=last as usize),
                Some(format!("bytes {first}-{last}/{len}")),
            ),
            Served::Unsatisfiable => (
                StatusCode::RANGE_NOT_SATISFIABLE,
                Bytes::new(),
                Some(format!("bytes */{len}")),
            ),
        };
        let content_length = content.len();
        let body = if req.method() == Method::HEAD {
            Bytes::new()
        } else {
            content
        };
        let mut response = Response::new(Full::new(body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(content_length));
        if let Ok(v) = HeaderValue::from_str(&reply.last_modified) {
            headers.insert(header::LAST_MODIFIED, v);
        }
        if let Some(v) = content_range.and_then(|r| HeaderValue::from_str(&r).ok()) {
            headers.insert(header::CONTENT_RANGE, v);
        }
        response
    }

    fn respond(&self, ack: &Ack) -> Response<Full<Bytes>> {
        to_response(&ack.render(self.config.vdir.error_header))
    }

    fn entry(&self, id: &SessionId) -> Option<Arc<tokio::sync::Mutex<Entry>>> {
        lock(&self.entries).get(id).cloned()
    }

    fn fresh_id(&self) -> SessionId {
        SessionId::from_bytes(lock(&self.ids).random())
    }

    async fn discard(&self, id: &SessionId) {
        lock(&self.entries).remove(id);
        self.store.discard(id).await;
    }
}

/// Writes a fragment's bytes to its temp file on the blocking pool, with one batch in flight
/// while the next is read from the socket (disk and network overlap, as with a buffered file).
struct Writer {
    file: Option<std::fs::File>,
    in_flight: Option<tokio::task::JoinHandle<(std::fs::File, io::Result<()>)>>,
}

impl Writer {
    /// Starts writing `chunks` at offset `at`, after the previous batch has landed.
    async fn submit(&mut self, at: u64, chunks: Vec<Bytes>) -> io::Result<()> {
        self.settle().await?;
        if chunks.is_empty() {
            return Ok(());
        }
        let mut file = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("temp file not open"))?;
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            use std::io::{Seek, Write};
            let result = file
                .seek(io::SeekFrom::Start(at))
                .and_then(|_| chunks.iter().try_for_each(|c| file.write_all(c)));
            (file, result)
        }));
        Ok(())
    }

    /// Waits for the batch in flight, if any; only then are its bytes in the file.
    async fn settle(&mut self) -> io::Result<()> {
        let Some(task) = self.in_flight.take() else {
            return Ok(());
        };
        let (file, result) = task.await.map_err(io::Error::other)?;
        self.file = Some(file);
        result
    }
}

enum Failure {
    /// The body ended or stalled after this many bytes were stored.
    Body(u64, String),
    /// A fault cut the body after this many bytes were stored.
    Cut(u64),
    Disk(io::Error),
}

enum Ended {
    Cut,
    Body(String),
}

/// How a fragment body is read.
#[derive(Debug, Clone, Copy)]
struct BodyIo {
    cut: Option<Cut>,
    read_rate: Option<u64>,
}

/// The core's clock. tokio's, so tests under paused time see expiry deterministically.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Writes a rendered Ack as an HTTP response with an empty body.
pub fn to_response(rendered: &Rendered) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() =
        StatusCode::from_u16(rendered.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    for (name, value) in &rendered.headers {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.append(*name, value);
        }
    }
    if rendered.status == 405 {
        headers.insert(
            header::ALLOW,
            HeaderValue::from_static("BITS_POST, GET, HEAD"),
        );
    }
    response
}

fn plain(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    response
}

/// `http://host[:port]` as the client addressed us, for absolute reply URLs. A Host header
/// that is not a plain host name or address is ignored in favour of the local address.
fn origin(headers: &http::HeaderMap, local: SocketAddr) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        });
    match host {
        Some(host) => format!("http://{host}"),
        None => format!("http://{local}"),
    }
}

/// Reads and discards up to `limit` bytes of a leftover body so the connection can be reused.
async fn drain(body: &mut Incoming, limit: u64) {
    let mut seen = 0u64;
    while seen <= limit {
        match tokio::time::timeout(std::time::Duration::from_secs(5), body.frame()).await {
            Ok(Some(Ok(frame))) => {
                seen += frame.data_ref().map_or(0, |d| d.len() as u64);
            }
            _ => return,
        }
    }
}

fn sha256_file(path: &std::path::Path) -> io::Result<Vec<u8>> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher)?;
    Ok(hasher.finalize().to_vec())
}

fn log(peer: SocketAddr, packet: &str, session: Option<&str>, range: Option<String>, status: u16) {
    tracing::info!(
        %peer,
        packet,
        session = session.unwrap_or("-"),
        range = range.as_deref().unwrap_or("-"),
        status,
        "request"
    );
}

/// Locks a std mutex, recovering from poisoning: a panicked request must not wedge the server.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
