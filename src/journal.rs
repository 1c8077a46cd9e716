//! What happened: the one typed event stream the server emits, and where it goes.
//!
//! The request pipeline emits one [`Request`] record per request, whatever happened to it
//! (answered, faulted, rejected, cut off), and one event per server-side happening (session
//! created, committed, discarded, cancelled, expired, lost, reply served, connection refused).
//! Every event gets a sequence number and its time since the server started. The [`Journal`]
//! keeps the most recent ones in a bounded ring; `tracing` is one sink of the same events, so
//! the log and the journal cannot tell different stories. Field names are part of the
//! interface (serde, kebab-case tags): tests, the JSON sinks and later tools read them.

use crate::fault::Firing;
use crate::proto::{ContentRange, Gone, PacketType, SessionId};
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

/// Events kept in memory by default (`--journal-keep`); older ones are dropped so a long run
/// cannot grow without bound. An event takes about 0.85 KiB, so this is about 85 MiB.
pub const KEPT: usize = 100_000;

/// The version of the event format; bumped when a field changes meaning or disappears.
pub const SCHEMA: u32 = 1;

/// One thing that happened, numbered.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// 1 for the first event of a server, then 2, 3, … (never reused, even when the ring
    /// drops old events).
    pub seq: u64,
    /// Milliseconds since the server started.
    pub at_ms: f64,
    #[serde(flatten)]
    pub what: What,
}

impl Event {
    /// The request record, if this event is one.
    pub fn request(&self) -> Option<&Request> {
        match &self.what {
            What::Request(r) => Some(r),
            _ => None,
        }
    }
}

/// A session as events name it: its id and, when the server knows it, its ordinal (1 for the
/// first session created, …). A stale or made-up id has no ordinal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SessionRef {
    pub id: SessionId,
    pub ordinal: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum What {
    /// The first event of a server: everything needed to replay the run.
    Started {
        schema: u32,
        version: String,
        seed: u64,
        profile: Option<String>,
        time_scale: f64,
        /// The rules in order, each with its id.
        rules: Vec<RuleState>,
        /// Every setting (`Config::summary`).
        settings: serde_json::Value,
    },
    /// The rules were replaced, armed, removed or reset while running.
    RulesChanged { rules: Vec<RuleState> },
    /// The control API reset the server (sessions dropped, rules back to the start's).
    Reset { uploads_cleared: bool },
    /// The last event of a server: each rule's fire count.
    Stopped { rules: Vec<RuleState> },
    /// Boxed: the record is by far the largest event.
    Request(Box<Request>),
    SessionCreated {
        session: SessionRef,
        destination: String,
        reply: bool,
    },
    /// Close-Session placed the file at its destination.
    Committed {
        session: SessionRef,
        /// Relative to the upload root, `/`-separated.
        path: String,
        size: u64,
        /// Lower-case hex; kept when the server hashes uploads (`--sha256`) and for
        /// upload-reply sessions.
        sha256: Option<String>,
    },
    /// The session ended without a committed file (premature close, cancel, expiry, a fault,
    /// a temp file that vanished); `why` says which.
    SessionGone {
        session: SessionRef,
        why: Gone,
        /// The temp file was left in place (a fault's `keep-file`).
        kept_file: bool,
    },
    /// The built-in reply application served a reply (GET/HEAD).
    ReplyServed {
        session: SessionRef,
        status: u16,
        bytes: u64,
    },
    /// A fault refused a connection at accept.
    Refused {
        conn: u64,
        peer: SocketAddr,
        fault: Firing,
    },
    /// A `tls` fault chose how an HTTPS connection's TLS misbehaves (decided at accept).
    TlsFault {
        conn: u64,
        peer: SocketAddr,
        fault: Firing,
    },
    /// The server application was notified of a finished upload-reply job (one event per
    /// POST sent, or meant to be sent when a fault broke the leg).
    Notification {
        session: SessionRef,
        /// The application URL the notification went to (with the destination's query).
        url: String,
        /// `reference` or `value`.
        mode: &'static str,
        /// The request headers sent, in order (`Host` and `Content-Length` included).
        headers: Vec<(String, String)>,
        /// The application's HTTP status; `None` when none came (unreachable, timeout,
        /// garbage, or a fault stood in for the application).
        status: Option<u16>,
        duration_ms: f64,
        /// The stored reply's size after a 200 (0 for a static URL).
        reply_bytes: Option<u64>,
        /// `BITS-Reply-URL` after a 200.
        reply_url: Option<String>,
        /// Why the notification failed, if it did (a non-200 is not an error here).
        error: Option<String>,
        /// The status the final Fragment Ack relayed (200 on success); `None` for the
        /// duplicate of a `notify` fault's `twice`, whose answer is dropped.
        relayed: Option<u16>,
        /// The `notify` fault that shaped this notification, if any.
        fault: Option<Firing>,
    },
}

/// A rule as events and the control API show it.
#[derive(Debug, Clone, Serialize)]
pub struct RuleState {
    pub id: u64,
    pub name: String,
    /// Where it was defined (`profiles/lost-acks.toml:12`, `--fault:1`, `admin`).
    pub origin: String,
    /// The fault's name (`lose-ack`, …).
    pub fault: String,
    /// The rule in the `--fault` one-line syntax: parsing it gives the rule back.
    pub line: String,
    pub fired: u64,
}

/// One request, whatever happened to it.
#[derive(Debug, Clone, Serialize)]
pub struct Request {
    /// The connection's number (1, 2, … in accept order).
    pub conn: u64,
    pub peer: SocketAddr,
    pub method: String,
    /// The URL path (no query).
    pub path: String,
    /// The packet type, when it parsed as a known one.
    pub packet: Option<PacketType>,
    /// `BITS-Packet-Type` as sent, when it did not parse (at most 32 characters).
    pub packet_label: Option<String>,
    pub session: Option<SessionRef>,
    /// The request's position among its session's packets of its type (0: none).
    pub index: u64,
    pub range: Option<ContentRange>,
    /// Body bytes read from the socket.
    pub received: u64,
    /// Body bytes written to the session's file.
    pub stored: u64,
    /// The status the core answered (before any fault); `None` when it was not asked.
    pub status: Option<u16>,
    /// Why a 4xx/5xx was answered (the core's or a fault's), e.g. `BG_E_SESSION_NOT_FOUND`.
    pub reason: Option<String>,
    /// The faults that shaped this request.
    pub faults: Vec<Firing>,
    /// What really went on the wire.
    pub sent: Sent,
    /// From the request head's arrival to the end of the answer's handling.
    pub latency_ms: f64,
    /// The request had neither `Content-Length` nor `Transfer-Encoding` (IIS answers 411).
    pub content_length_missing: bool,
    /// Create-Session only: whether `BITS-Supported-Protocols` offered the BITS 1.5 GUID.
    pub offers_bits15: Option<bool>,
    /// `Content-Name` as sent (at most 256 characters).
    pub content_name: Option<String>,
    /// The BITS headers of the answer as it went on the wire, after any fault; `None` when
    /// no response was sent.
    pub ack: Option<AckSeen>,
}

/// What an answer told the client, exactly as sent (each value at most 64 characters), so a
/// reader can judge the client by what it was told rather than by what the server knew.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct AckSeen {
    /// `BITS-Received-Content-Range`.
    pub received: Option<String>,
    /// `BITS-Session-Id`.
    pub session_id: Option<String>,
    /// `BITS-Error-Code`.
    pub error_code: Option<String>,
    /// `Retry-After`.
    pub retry_after: Option<String>,
    /// Whether `BITS-Reply-URL` was present.
    pub reply_url: bool,
}

impl AckSeen {
    /// The BITS headers of a rendered answer.
    pub fn of(rendered: &crate::proto::Rendered) -> AckSeen {
        let value = |name: &str| {
            rendered
                .header(name)
                .map(|v| v.chars().take(64).collect::<String>())
        };
        AckSeen {
            received: value("BITS-Received-Content-Range"),
            session_id: value("BITS-Session-Id"),
            error_code: value("BITS-Error-Code"),
            retry_after: value("Retry-After"),
            reply_url: rendered.header("BITS-Reply-URL").is_some(),
        }
    }
}

/// What the server put on the wire for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "sent", rename_all = "kebab-case")]
pub enum Sent {
    /// A response with this status.
    Status { status: u16 },
    /// Bytes that are not a well-formed response, then close.
    Broken,
    /// The connection was closed without an answer.
    Closed,
    /// The connection was reset (RST).
    Reset,
    /// Nothing for a while, then close.
    Hung,
    /// The answer with this status, mutated (a `mutate` fault), then close.
    Mutated { status: u16 },
}

impl Sent {
    /// As the log line and the metrics name it: the status, or the kind. A status is
    /// written into `number`, so naming one allocates nothing.
    pub fn label<'a>(&self, number: &'a mut itoa::Buffer) -> &'a str {
        match self {
            Sent::Status { status } => number.format(*status),
            Sent::Broken => "broken",
            Sent::Closed => "closed",
            Sent::Reset => "reset",
            Sent::Hung => "hung",
            Sent::Mutated { .. } => "mutated",
        }
    }
}

impl std::fmt::Display for Sent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label(&mut itoa::Buffer::new()))
    }
}

/// Running totals over the events, for metrics. Derived from the events as they are kept, so
/// they can never disagree with the journal.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Requests by packet type (or `GET`, `HEAD`, or the unparsed `BITS-Packet-Type`), then
    /// by what was sent (a status, `closed`, `reset`, `hung`, `broken`). Two levels, so a
    /// request is counted by looking its names up, with nothing allocated once both exist.
    pub requests: BTreeMap<String, BTreeMap<String, u64>>,
    pub bytes_received: u64,
    pub bytes_stored: u64,
    pub sessions_created: u64,
    pub committed: u64,
    pub bytes_committed: u64,
    /// Sessions gone without a commit, by why.
    pub gone: BTreeMap<String, u64>,
    pub refused: u64,
}

impl Tally {
    /// Requests of `packet` (a packet type, method or label) answered with `sent` (a
    /// status such as `"200"`, or a kind such as `"reset"`).
    pub fn requests_of(&self, packet: &str, sent: &str) -> u64 {
        self.requests
            .get(packet)
            .and_then(|by_sent| by_sent.get(sent))
            .copied()
            .unwrap_or(0)
    }

    fn count(&mut self, what: &What) {
        match what {
            What::Request(r) => {
                let packet = match (r.packet, &r.packet_label) {
                    (Some(p), _) => p.as_str(),
                    (None, Some(label)) => label,
                    (None, None) => &r.method,
                };
                let mut number = itoa::Buffer::new();
                let sent = r.sent.label(&mut number);
                let by_sent = match self.requests.get_mut(packet) {
                    Some(by_sent) => by_sent,
                    None => self.requests.entry(packet.to_owned()).or_default(),
                };
                match by_sent.get_mut(sent) {
                    Some(n) => *n += 1,
                    None => {
                        by_sent.insert(sent.to_owned(), 1);
                    }
                }
                self.bytes_received += r.received;
                self.bytes_stored += r.stored;
            }
            What::SessionCreated { .. } => self.sessions_created += 1,
            What::Committed { size, .. } => {
                self.committed += 1;
                self.bytes_committed += size;
            }
            What::SessionGone { why, .. } => *self.gone.entry(why.to_string()).or_default() += 1,
            What::Refused { .. } => self.refused += 1,
            _ => {}
        }
    }
}

/// Where events go besides the memory ring: an NDJSON file (`--journal`).
pub trait Sink: Send + Sync {
    /// Called for every event, in order, under the journal's lock: keep it short.
    fn record(&self, event: &Arc<Event>);
}

/// The most recent events, in order.
pub struct Journal {
    /// How many events are kept.
    keep: usize,
    /// Shared, so a reader (the log line, a sink) holds an event without copying it or
    /// the lock.
    events: VecDeque<Arc<Event>>,
    last_seq: u64,
    tally: Tally,
    sinks: Vec<Box<dyn Sink>>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("events", &self.events.len())
            .field("last_seq", &self.last_seq)
            .field("sinks", &self.sinks.len())
            .finish()
    }
}

impl Default for Journal {
    fn default() -> Journal {
        Journal::keeping(KEPT)
    }
}

impl Journal {
    /// A journal that keeps the last `keep` events (at least one).
    pub fn keeping(keep: usize) -> Journal {
        Journal {
            keep: keep.max(1),
            events: VecDeque::new(),
            last_seq: 0,
            tally: Tally::default(),
            sinks: Vec::new(),
        }
    }

    /// Numbers an event, keeps it, hands it to the sinks, and returns the kept copy.
    pub fn push(&mut self, at_ms: f64, what: What) -> Arc<Event> {
        while self.events.len() >= self.keep {
            self.events.pop_front();
        }
        self.last_seq += 1;
        self.tally.count(&what);
        let event = Event {
            seq: self.last_seq,
            at_ms,
            what,
        };
        let event = Arc::new(event);
        for sink in &self.sinks {
            sink.record(&event);
        }
        self.events.push_back(Arc::clone(&event));
        event
    }

    pub fn add_sink(&mut self, sink: Box<dyn Sink>) {
        self.sinks.push(sink);
    }

    /// Drops the kept events and the totals; sequence numbers go on (a waiting reader's
    /// `since` stays meaningful).
    pub fn clear(&mut self) {
        self.events.clear();
        self.tally = Tally::default();
    }

    pub fn tally(&self) -> &Tally {
        &self.tally
    }

    /// Events with a sequence number above `seq`, oldest first.
    pub fn since(&self, seq: u64) -> Vec<Event> {
        // Sequence numbers are contiguous, so the first wanted event's position is known.
        let first = self.events.front().map_or(0, |e| e.seq);
        let skip = seq.saturating_add(1).saturating_sub(first) as usize;
        self.events
            .iter()
            .skip(skip)
            .map(|e| Event::clone(e))
            .collect()
    }

    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

/// The NDJSON file sink: one JSON object per line. Events travel to a thread of its own,
/// which serializes and writes them, so neither JSON nor a slow disk holds up a request. The
/// writer flushes as soon as it has written what has arrived: a line never sits in a buffer
/// while the writer waits for more (lines that arrive together are flushed together).
pub struct FileSink {
    events: std::sync::Mutex<Option<std::sync::mpsc::Sender<Arc<Event>>>>,
    writer: std::sync::Mutex<Option<std::thread::JoinHandle<io::Result<()>>>>,
}

impl FileSink {
    /// Creates (truncates) the file.
    pub fn create(path: &Path) -> io::Result<FileSink> {
        let file = std::fs::File::create(path)?;
        let (send, receive) = std::sync::mpsc::channel::<Arc<Event>>();
        let shown = path.display().to_string();
        let writer = std::thread::Builder::new()
            .name("bitsmock-journal".into())
            .spawn(move || {
                let written = write_lines(&receive, io::BufWriter::with_capacity(1 << 16, file));
                if let Err(e) = &written {
                    tracing::error!(journal = %shown, error = %e, "cannot write the journal");
                }
                written
            })?;
        Ok(FileSink {
            events: std::sync::Mutex::new(Some(send)),
            writer: std::sync::Mutex::new(Some(writer)),
        })
    }

    /// Waits until every event recorded so far is in the file, and closes it.
    pub fn finish(&self) -> io::Result<()> {
        drop(lock(&self.events).take());
        match lock(&self.writer).take() {
            Some(writer) => writer
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("journal writer panicked"))),
            None => Ok(()),
        }
    }
}

/// The writer thread: every event that has arrived, each as a line, then one flush; then a
/// pause of [`COALESCE`] before looking again. Waking the thread for every event cost a third
/// of the Ping rate on two cores (a context switch per request); with the pause, a burst
/// shares one wake-up, and a line still reaches the file within about a millisecond.
fn write_lines(
    events: &std::sync::mpsc::Receiver<Arc<Event>>,
    mut out: impl Write,
) -> io::Result<()> {
    while let Ok(first) = events.recv() {
        let mut next = Some(first);
        while let Some(event) = next {
            serde_json::to_writer(&mut out, &*event)?;
            out.write_all(b"\n")?;
            next = events.try_recv().ok();
        }
        out.flush()?;
        std::thread::sleep(COALESCE);
    }
    out.flush()
}

/// How long the journal writer lets events gather after a flush.
const COALESCE: std::time::Duration = std::time::Duration::from_millis(1);

impl Sink for FileSink {
    fn record(&self, event: &Arc<Event>) {
        if let Some(events) = lock(&self.events).as_ref() {
            let _ = events.send(Arc::clone(event));
        }
    }
}

impl Sink for std::sync::Arc<FileSink> {
    fn record(&self, event: &Arc<Event>) {
        FileSink::record(self, event);
    }
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A non-negative number with one decimal, as `{:.1}` writes it but without the float
/// formatter's exact-precision work (this is on every request line).
struct Tenths(f64);

impl std::fmt::Display for Tenths {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.split() {
            Some((whole, tenth)) => write!(f, "{whole}.{tenth}"),
            None => write!(f, "{:.1}", self.0),
        }
    }
}

impl Tenths {
    /// The whole part and the tenths digit, for values the float formatter is not needed for.
    fn split(&self) -> Option<(u64, u64)> {
        if !(self.0.is_finite() && (0.0..1e15).contains(&self.0)) {
            return None;
        }
        let tenths = (self.0 * 10.0).round() as u64;
        Some((tenths / 10, tenths % 10))
    }
}

/// `rule 2 (lost ack): …; rule 5 (slow): …`, or `-`.
struct Faults<'a>(&'a [Firing]);

impl std::fmt::Display for Faults<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("-");
        }
        for (i, firing) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(
                f,
                "rule {} ({}): {}",
                firing.rule + 1,
                firing.name,
                firing.effect
            )?;
        }
        Ok(())
    }
}

thread_local! {
    /// Where [`trace`] builds a request line: one buffer per thread, reused.
    static REQUEST_LINE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Appends `request seq=… conn=… … faults=…`: the request's log line, without the log's
/// own prefix. Each value as its `Display` writes it; absent ones as `-`.
fn request_line(seq: u64, r: &Request, line: &mut String) {
    use std::fmt::Write as _;
    let mut numbers = itoa::Buffer::new();
    let mut number = |line: &mut String, n: u64| line.push_str(numbers.format(n));
    line.push_str("request seq=");
    number(line, seq);
    line.push_str(" conn=");
    number(line, r.conn);
    line.push_str(" peer=");
    match r.peer {
        SocketAddr::V4(v4) => {
            for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    line.push('.');
                }
                number(line, octet.into());
            }
            line.push(':');
            number(line, v4.port().into());
        }
        v6 => {
            let _ = write!(line, "{v6}");
        }
    }
    line.push_str(" method=");
    line.push_str(&r.method);
    line.push_str(" path=");
    line.push_str(&r.path);
    line.push_str(" packet=");
    let packet = r.packet.map(PacketType::as_str);
    line.push_str(packet.or(r.packet_label.as_deref()).unwrap_or("-"));
    line.push_str(" session=");
    match r.session {
        Some(session) => {
            let _ = write!(line, "{}", session.id);
        }
        None => line.push('-'),
    }
    line.push_str(" ordinal=");
    match r.session.and_then(|s| s.ordinal) {
        Some(ordinal) => number(line, ordinal),
        None => line.push('-'),
    }
    line.push_str(" index=");
    number(line, r.index);
    line.push_str(" range=");
    match r.range {
        Some(range) => {
            number(line, range.first());
            line.push('-');
            number(line, range.last());
            line.push('/');
            number(line, range.total());
        }
        None => line.push('-'),
    }
    line.push_str(" received=");
    number(line, r.received);
    line.push_str(" stored=");
    number(line, r.stored);
    line.push_str(" status=");
    match r.status {
        Some(status) => number(line, status.into()),
        None => line.push('-'),
    }
    line.push_str(" reason=");
    line.push_str(r.reason.as_deref().unwrap_or("-"));
    line.push_str(" sent=");
    line.push_str(r.sent.label(&mut itoa::Buffer::new()));
    line.push_str(" latency_ms=");
    match Tenths(r.latency_ms).split() {
        Some((whole, tenth)) => {
            number(line, whole);
            line.push('.');
            number(line, tenth);
        }
        None => {
            let _ = write!(line, "{}", Tenths(r.latency_ms));
        }
    }
    line.push_str(" faults=");
    if r.faults.is_empty() {
        line.push('-');
    } else {
        let _ = write!(line, "{}", Faults(&r.faults));
    }
}

/// The `tracing` sink: one line per event, `key=value` fields a person can grep.
pub fn trace(event: &Event) {
    let seq = event.seq;
    match &event.what {
        What::Request(r) => {
            // This line is written for every request at the default level, so it is built
            // by hand into one reused buffer and handed to tracing as a single value:
            // integers through `itoa`, text copied whole, the formatter only for the rare
            // parts (benches/ping.rs). It reads exactly as `key=value` fields would.
            if !tracing::enabled!(tracing::Level::INFO) {
                return;
            }
            REQUEST_LINE.with_borrow_mut(|line| {
                line.clear();
                request_line(seq, r, line);
                tracing::info!(message = line.as_str());
            });
        }
        What::SessionCreated {
            session,
            destination,
            reply,
        } => {
            tracing::info!(seq, session = %session.id, ordinal = session.ordinal, %destination, reply, "session created")
        }
        What::Committed {
            session,
            path,
            size,
            sha256,
        } => {
            tracing::info!(seq, session = %session.id, ordinal = session.ordinal, %path, size, sha256 = %sha256.as_deref().unwrap_or("-"), "committed")
        }
        What::SessionGone {
            session,
            why,
            kept_file,
        } => {
            tracing::info!(seq, session = %session.id, ordinal = session.ordinal, %why, kept_file, "session gone")
        }
        What::ReplyServed {
            session,
            status,
            bytes,
        } => {
            tracing::info!(seq, session = %session.id, ordinal = session.ordinal, status, bytes, "reply served")
        }
        What::Started {
            seed,
            profile,
            rules,
            ..
        } => tracing::info!(
            seq,
            seed,
            profile = profile.as_deref().unwrap_or("none"),
            rules = rules.len(),
            "started"
        ),
        What::RulesChanged { rules } => {
            let names: Vec<_> = rules
                .iter()
                .map(|r| format!("{}: {}", r.id, r.name))
                .collect();
            tracing::info!(seq, rules = %names.join(", "), "rules changed")
        }
        What::Reset { uploads_cleared } => tracing::info!(seq, uploads_cleared, "reset"),
        What::Stopped { .. } => tracing::debug!(seq, "stopped"),
        What::Refused { conn, peer, fault } => {
            tracing::info!(seq, conn, %peer, rule = fault.rule + 1, name = %fault.name, "connection refused by fault")
        }
        What::TlsFault { conn, peer, fault } => {
            tracing::info!(seq, conn, %peer, rule = fault.rule + 1, name = %fault.name, effect = %fault.effect, "TLS fault")
        }
        What::Notification {
            session,
            url,
            status,
            duration_ms,
            error,
            relayed,
            ..
        } => {
            tracing::info!(seq, session = %session.id, ordinal = session.ordinal, %url, status, duration_ms = %Tenths(*duration_ms), error = error.as_deref().unwrap_or("-"), relayed, "application notified")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(n: u64) -> What {
        What::Refused {
            conn: n,
            peer: SocketAddr::from(([127, 0, 0, 1], 1)),
            fault: Firing {
                rule: 0,
                name: "r".into(),
                packet: None,
                session: 0,
                index: 0,
                range: None,
                effect: crate::fault::Effect::Refused,
            },
        }
    }

    #[test]
    fn what_was_sent_shows_as_the_status_or_how_the_connection_ended() {
        let shown: Vec<String> = [
            Sent::Status { status: 416 },
            Sent::Broken,
            Sent::Closed,
            Sent::Reset,
            Sent::Hung,
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(shown, ["416", "broken", "closed", "reset", "hung"]);
    }

    /// A Ping from 127.0.0.1:2 on connection 1, answered 200 in 0.1 ms.
    fn ping_record() -> Request {
        Request {
            conn: 1,
            peer: SocketAddr::from(([127, 0, 0, 1], 2)),
            method: "BITS_POST".into(),
            path: "/a".into(),
            packet: Some(PacketType::Ping),
            packet_label: None,
            session: None,
            index: 0,
            range: None,
            received: 0,
            stored: 0,
            status: Some(200),
            reason: None,
            faults: Vec::new(),
            sent: Sent::Status { status: 200 },
            latency_ms: 0.1,
            content_length_missing: false,
            offers_bits15: None,
            content_name: None,
            ack: None,
        }
    }

    /// The request line as the formatter writes it, each value through `Display` and absent
    /// ones as `-`: what `request_line` must write, byte for byte.
    fn request_line_by_formatter(seq: u64, r: &Request) -> String {
        fn dash<T: std::fmt::Display>(value: Option<T>) -> String {
            value.map_or("-".into(), |v| v.to_string())
        }
        let packet = r
            .packet
            .map(PacketType::as_str)
            .or(r.packet_label.as_deref());
        let range = r
            .range
            .map(|c| format!("{}-{}/{}", c.first(), c.last(), c.total()));
        format!(
            "request seq={seq} conn={} peer={} method={} path={} packet={} session={} \
             ordinal={} index={} range={} received={} stored={} status={} reason={} \
             sent={} latency_ms={} faults={}",
            r.conn,
            r.peer,
            r.method,
            r.path,
            dash(packet),
            dash(r.session.map(|s| s.id)),
            dash(r.session.and_then(|s| s.ordinal)),
            r.index,
            dash(range),
            r.received,
            r.stored,
            dash(r.status),
            dash(r.reason.as_deref()),
            r.sent,
            Tenths(r.latency_ms),
            Faults(&r.faults),
        )
    }

    #[test]
    fn the_request_line_is_written_as_the_formatter_would() {
        let ping = Request {
            peer: SocketAddr::from(([127, 0, 0, 1], 50123)),
            latency_ms: 0.04,
            ..ping_record()
        };
        let firing = |rule: usize, name: &str| Firing {
            rule,
            name: name.into(),
            packet: Some(PacketType::Fragment),
            session: 3,
            index: 2,
            range: None,
            effect: crate::fault::Effect::Delayed {
                by: std::time::Duration::from_millis(250),
            },
        };
        let fragment = Request {
            conn: u64::MAX,
            peer: "[2001:db8::1%7]:8443".parse().unwrap(),
            method: "BITS_POST".into(),
            path: "/up/file name.bin?x=1".into(),
            packet: Some(PacketType::Fragment),
            session: Some(SessionRef {
                id: SessionId::from_bytes([0xAB; 16]),
                ordinal: Some(3),
            }),
            index: 2,
            range: Some(ContentRange::new(0, 65535, 1 << 40).unwrap()),
            received: 65536,
            stored: 65535,
            status: Some(416),
            reason: Some("fragment does not start at the received offset".into()),
            faults: vec![firing(0, "lost ack"), firing(4, "slow")],
            sent: Sent::Mutated { status: 200 },
            latency_ms: 12345.678,
            ..ping.clone()
        };
        let mut cases = vec![ping.clone(), fragment.clone()];
        cases.push(Request {
            packet: None,
            packet_label: Some("bogus".into()),
            session: Some(SessionRef {
                id: SessionId::from_bytes([1; 16]),
                ordinal: None,
            }),
            peer: SocketAddr::from(([10, 0, 255, 9], 0)),
            status: None,
            sent: Sent::Reset,
            latency_ms: 0.05,
            ..ping.clone()
        });
        cases.push(Request {
            packet: None,
            sent: Sent::Hung,
            latency_ms: 9.96,
            ..ping.clone()
        });
        for latency_ms in [0.0, 0.25, 0.95, 1e15, -1.0, f64::NAN, f64::INFINITY] {
            cases.push(Request {
                latency_ms,
                ..ping.clone()
            });
        }
        for (i, r) in cases.iter().enumerate() {
            let mut line = String::from("kept: ");
            request_line(i as u64 * 1000, r, &mut line);
            assert_eq!(
                line.strip_prefix("kept: "),
                Some(request_line_by_formatter(i as u64 * 1000, r).as_str()),
                "case {i}"
            );
        }
    }

    #[test]
    fn what_was_sent_is_named_by_its_status_or_its_kind() {
        let named = |sent: Sent| {
            (
                sent.to_string(),
                sent.label(&mut itoa::Buffer::new()).to_owned(),
            )
        };
        for (sent, name) in [
            (Sent::Status { status: 200 }, "200"),
            (Sent::Status { status: 503 }, "503"),
            (Sent::Broken, "broken"),
            (Sent::Closed, "closed"),
            (Sent::Reset, "reset"),
            (Sent::Hung, "hung"),
            (Sent::Mutated { status: 200 }, "mutated"),
        ] {
            assert_eq!(named(sent), (name.to_owned(), name.to_owned()));
        }
    }

    #[test]
    fn only_request_events_have_a_request_record() {
        let mut j = Journal::default();
        let first = j.push(0.0, refused(1)).clone();
        assert!(first.request().is_none());
        let record = ping_record();
        let event = j.push(1.0, What::Request(Box::new(record))).clone();
        assert_eq!(event.request().map(|r| r.path.as_str()), Some("/a"));
        assert_eq!(j.tally().requests_of("Ping", "200"), 1);
        assert_eq!(j.tally().requests_of("Ping", "500"), 0);
        assert_eq!(j.tally().requests_of("Fragment", "200"), 0);
        j.push(2.0, What::Request(Box::new(ping_record())));
        assert_eq!(j.tally().requests_of("Ping", "200"), 2);
        assert_eq!(j.tally().refused, 1);
        assert!(!j.is_empty());
        j.clear();
        assert!(j.is_empty());
        assert_eq!(j.tally().refused, 0);
        assert_eq!(
            j.push(2.0, refused(2)).seq,
            4,
            "numbers go on after a clear"
        );
    }

    #[test]
    fn events_are_numbered_from_one_and_read_back_after_a_sequence_number() {
        let mut j = Journal::default();
        for n in 1..=5 {
            assert_eq!(j.push(n as f64, refused(n)).seq, n);
        }
        let seqs = |events: Vec<Event>| events.iter().map(|e| e.seq).collect::<Vec<_>>();
        assert_eq!(seqs(j.since(0)), vec![1, 2, 3, 4, 5]);
        assert_eq!(seqs(j.since(3)), vec![4, 5]);
        assert!(j.since(5).is_empty());
        assert!(j.since(u64::MAX).is_empty());
        assert_eq!(j.last_seq(), 5);
    }

    #[test]
    fn the_ring_keeps_the_newest_events_and_their_numbers() {
        let mut j = Journal::default();
        for n in 0..(KEPT as u64 + 10) {
            j.push(0.0, refused(n));
        }
        assert_eq!(j.len(), KEPT);
        let all = j.since(0);
        assert_eq!(all.first().map(|e| e.seq), Some(11));
        assert_eq!(j.since(KEPT as u64 + 8).len(), 2);
    }

    #[test]
    fn events_serialize_with_a_tag_and_stable_field_names() {
        let mut j = Journal::default();
        let event = j.push(1.5, refused(3)).clone();
        let json = serde_json::to_value(&*event).unwrap();
        assert_eq!(json["seq"], 1);
        assert_eq!(json["at_ms"], 1.5);
        assert_eq!(json["event"], "refused");
        assert_eq!(json["conn"], 3);
        assert_eq!(json["fault"]["effect"]["kind"], "refused");
        let gone = What::SessionGone {
            session: SessionRef {
                id: SessionId::from_bytes([0xAB; 16]),
                ordinal: Some(2),
            },
            why: Gone::Cancelled,
            kept_file: false,
        };
        let json = serde_json::to_value(&*j.push(2.0, gone)).unwrap();
        assert_eq!(json["event"], "session-gone");
        assert_eq!(json["why"], "cancelled");
        assert_eq!(Gone::Cancelled.to_string(), "cancelled");
        assert_eq!(json["session"]["ordinal"], 2);
        assert_eq!(
            json["session"]["id"],
            "{ABABABAB-ABAB-4BAB-ABAB-ABABABABABAB}"
        );
    }
}
