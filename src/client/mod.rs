//! The reference BITS upload client: the client side of docs/protocol.md §9, as a library type
//! tests can drive and as `bitsmock upload FILE URL`.
//!
//! ```text
//! [Ping] ─▶ Create-Session ─▶ [Ping Host-Id] ─▶ Fragment … Fragment ─▶ [GET reply] ─▶ Close-Session
//!              ▲                                    │ 0x8020001F (Fragment or Close)
//!              └────────── new session, byte 0 ◀────┘
//! ```
//!
//! What it does with each answer is [`verdict`] (pure): 200/416 Fragment Acks move the
//! offset to `BITS-Received-Content-Range`; 413 halves the fragment (never below 5 KiB);
//! `0x8020001F` re-creates the session and restarts from byte 0; connection loss, timeouts,
//! 408, 409 and most 5xx are retried after a capped exponential backoff, resuming with a Ping
//! and the last acknowledged offset; 400, 403, 404, 501, `0x80200020`, no common protocol and
//! an unanswerable 401 stop the upload with an [`UploadError`] naming status and code.
//!
//! The client distrusts the server: a Fragment Ack whose received range is missing,
//! malformed, beyond the file or ahead of every byte sent in the session, or an Ack naming
//! another session id, is a *protocol error*. Protocol errors are treated as transient (the
//! connection is dropped and the request resent after the backoff), so they count against
//! [`Options::max_retries`] like any other failure; a server that keeps lying ends the upload
//! with [`UploadError::GaveUp`] quoting the lie.
//!
//! [`bulk`] runs many uploads at once and reports latency percentiles per packet type;
//! [`progress`] draws a progress line from a shared [`Meter`].

pub mod bulk;
mod error;
pub mod progress;
mod reply;
mod summary;
pub mod verdict;
pub mod wire;

pub use bulk::{BulkFailure, BulkSummary};
pub use error::{Refusal, UploadError};
pub use summary::{Counts, FailedUpload, Latencies, Meter, Percentiles, ReplySummary, Summary};

use self::verdict::{Verdict, judge};
use self::wire::{Answer, Conn, Endpoint, Failure, ReqBody, Target, bits_post};
pub use self::wire::{CertProblem, Trust};
use crate::proto::{PROTOCOL_GUID, PacketType};
use base64::Engine;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// Windows clients never send fragments below 5 KB (docs/protocol.md §9.5); neither does this one.
pub const MIN_FRAGMENT_SIZE: u64 = 5 * 1024;
/// Retries of a Create-Session answered 409 (destination exists) before giving up.
pub const CONFLICT_RETRIES: u32 = 3;
/// The default fragment size.
pub const DEFAULT_FRAGMENT_SIZE: u64 = 1024 * 1024;

/// Basic-authentication credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"…")
            .finish()
    }
}

impl Credentials {
    fn header(&self) -> String {
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.user, self.password));
        format!("Basic {token}")
    }
}

/// How the client behaves. `Options::default()` suits a real server; tests shrink the
/// timeouts and the backoff.
#[derive(Debug, Clone)]
pub struct Options {
    /// Bytes per fragment; halved on 413, never below [`MIN_FRAGMENT_SIZE`].
    pub fragment_size: u64,
    /// Ping before Create-Session (the client always Pings a new `BITS-Host-Id` host and
    /// before resuming after a failure).
    pub ping: bool,
    /// Answer 401 Basic challenges with these.
    pub credentials: Option<Credentials>,
    /// Longest wait for a TCP connection.
    pub connect_timeout: Duration,
    /// Longest wait for one request: sending it and receiving the whole answer.
    pub request_timeout: Duration,
    /// First retry delay; doubled per consecutive failure up to `backoff_cap`.
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    /// Consecutive transient failures (protocol errors included) before giving up.
    pub max_retries: u32,
    /// Session re-creations (after `0x8020001F`) before giving up.
    pub max_restarts: u32,
    /// Fragment answers in a row that do not raise the server's acknowledged offset before
    /// giving up (a server sending the client back forever).
    pub max_stalled: u32,
    /// Treat a final Fragment Ack without `BITS-Reply-URL` as a protocol error (the job is
    /// known to be upload-reply). Implied by `reply_out`.
    pub expect_reply: bool,
    /// Where to save the reply of an upload-reply job. Without it a reply of up to 1 MiB is
    /// kept in [`ReplySummary::body`]; larger ones are downloaded and discarded.
    pub reply_out: Option<PathBuf>,
    /// Bytes per ranged GET of the reply.
    pub reply_chunk: u64,
    /// Shared progress counters, for a progress line or a dashboard.
    pub meter: Option<Arc<Meter>>,
    pub user_agent: String,
    /// Whom to trust for `https://` URLs.
    pub trust: Trust,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            fragment_size: DEFAULT_FRAGMENT_SIZE,
            ping: false,
            credentials: None,
            connect_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(300),
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(60),
            max_retries: 12,
            max_restarts: 10,
            max_stalled: 64,
            expect_reply: false,
            reply_out: None,
            reply_chunk: 1024 * 1024,
            meter: None,
            user_agent: format!("bitsmock-client/{}", env!("CARGO_PKG_VERSION")),
            trust: Trust::System,
        }
    }
}

/// The reference client. Cheap to clone; every upload is independent.
#[derive(Debug, Clone, Default)]
pub struct Uploader {
    options: Options,
}

impl Uploader {
    pub fn new(options: Options) -> Uploader {
        Uploader { options }
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Uploads `path` to `url` (an absolute `http://` URL), streaming it from disk.
    pub async fn upload(&self, path: impl AsRef<Path>, url: &str) -> Result<Summary, UploadError> {
        self.upload_reporting(path, url).await.map_err(|f| f.error)
    }

    /// [`Uploader::upload`], but a failure comes with what the upload did until it gave up:
    /// the last HTTP status, the HRESULT and the same counts a [`Summary`] carries.
    pub async fn upload_reporting(
        &self,
        path: impl AsRef<Path>,
        url: &str,
    ) -> Result<Summary, Box<FailedUpload>> {
        let path = path.as_ref().to_path_buf();
        let early = |error| Box::new(FailedUpload::before_start(path.clone(), url.into(), error));
        let target = wire::parse_url(url).map_err(|e| early(UploadError::Usage(e)))?;
        let meta = tokio::fs::metadata(&path).await.map_err(|error| {
            early(UploadError::Local {
                path: path.clone(),
                error,
            })
        })?;
        if !meta.is_file() {
            return Err(early(UploadError::Usage(format!(
                "{} is not a regular file",
                path.display()
            ))));
        }
        if self.options.fragment_size == 0 {
            return Err(early(UploadError::Usage(
                "the fragment size must be at least 1 byte".into(),
            )));
        }
        // Built once per upload: loading the system's CAs is not free.
        let tls = match target.endpoint.tls {
            true => Some(
                wire::tls_config(&self.options.trust).map_err(|e| early(UploadError::Usage(e)))?,
            ),
            false => None,
        };
        let mut run = Run::new(
            &self.options,
            path,
            meta.len(),
            meta.modified().ok(),
            target,
        );
        run.tls = tls;
        if let Some(meter) = &self.options.meter {
            meter.total.fetch_add(run.file_len, Ordering::Relaxed);
        }
        let result = run.upload().await;
        if let Some(meter) = &self.options.meter {
            let counter = if result.is_ok() {
                &meter.finished
            } else {
                &meter.failed
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        match result {
            Ok(()) => Ok(run.summary()),
            Err(error) => {
                // The status that ended the upload, not the Cancel-Session's.
                let status = run.last_status;
                run.cancel().await;
                Err(Box::new(run.failure(error, status)))
            }
        }
    }
}

/// Where the rest of the upload goes after the fragments.
enum Flow {
    /// All bytes acknowledged; the final Ack's `BITS-Reply-URL`, if any.
    Done(Option<String>),
    /// The session is gone: start over. The answer that said so, for the log.
    Restart { step: Step, why: String },
}

/// The request a failure happened to, as the log and [`UploadError::GaveUp`] name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Packet(PacketType),
    Fragment { first: u64, last: u64 },
    Reply,
}

impl Step {
    /// The packet type (or `reply download`), without the range.
    fn name(self) -> &'static str {
        match self {
            Step::Packet(p) => p.as_str(),
            Step::Fragment { .. } => PacketType::Fragment.as_str(),
            Step::Reply => "reply download",
        }
    }
}

/// `Fragment 4194304-5242879`, `Close-Session`, `reply download`.
impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Fragment { first, last } => write!(f, "Fragment {first}-{last}"),
            other => f.write_str(other.name()),
        }
    }
}

/// The alternate host a Create-Session Ack named (docs/protocol.md §7.9).
struct HostId {
    name: String,
    endpoint: Endpoint,
    /// `BITS-Host-Id-Fallback-Timeout`; `None` = never fall back.
    fallback: Option<Duration>,
    /// When the first failure without progress since the last success happened.
    failing_since: Option<Instant>,
}

/// One upload in progress.
struct Run<'a> {
    opts: &'a Options,
    path: PathBuf,
    file_len: u64,
    modified: Option<SystemTime>,
    content_name: Option<String>,
    origin: Target,
    host: Option<HostId>,
    conn: Option<Conn>,
    /// Send `Authorization` on every request (after the first Basic challenge).
    auth: bool,
    /// Why the last 401 could not be answered.
    auth_problem: Option<String>,
    /// The status of the last answer received, for a failure report.
    last_status: Option<u16>,
    timeout: Duration,
    /// Consecutive transient failures.
    failures: u32,
    /// Consecutive Create-Sessions answered 409.
    conflicts: u32,
    /// The client-side HRESULT of the answer behind the current transient failure, if any.
    failure_code: Option<u32>,
    fragment_size: u64,
    /// The live session, for Cancel-Session if the upload fails.
    session: Option<String>,
    closed_session: Option<String>,
    /// A Close-Session of unknown fate was answered 0x8020001F when resent.
    close_uncertain: bool,
    counts: Counts,
    latencies: Latencies,
    reply: Option<ReplySummary>,
    /// What the meter was last told about this upload's acknowledged bytes.
    acked: u64,
    started: Instant,
    rng: StdRng,
    /// The TLS client configuration, for an `https://` upload.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// A failure no retry can mend (a bad certificate), to end the upload with.
    fatal: Option<UploadError>,
}

impl<'a> Run<'a> {
    fn new(
        opts: &'a Options,
        path: PathBuf,
        file_len: u64,
        modified: Option<SystemTime>,
        origin: Target,
    ) -> Run<'a> {
        let content_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| {
                !n.is_empty()
                    && n.len() <= 260
                    && n.bytes().all(|b| (0x20..0x7f).contains(&b))
                    && !n.contains(['\\', '/', ':', '*', '?', '"', '<', '>', '|'])
            })
            .map(str::to_owned);
        let seed = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ file_len.rotate_left(17);
        Run {
            opts,
            path,
            file_len,
            modified,
            content_name,
            origin,
            host: None,
            conn: None,
            auth: false,
            auth_problem: None,
            last_status: None,
            timeout: opts.request_timeout,
            failures: 0,
            conflicts: 0,
            failure_code: None,
            fragment_size: opts.fragment_size,
            session: None,
            closed_session: None,
            close_uncertain: false,
            counts: Counts::default(),
            latencies: Latencies::default(),
            reply: None,
            acked: 0,
            started: Instant::now(),
            rng: StdRng::seed_from_u64(seed),
            tls: None,
            fatal: None,
        }
    }

    fn summary(&self) -> Summary {
        let seconds = self.started.elapsed().as_secs_f64();
        Summary {
            file: self.path.clone(),
            url: self.origin.url(),
            bytes: self.file_len,
            seconds,
            mib_per_s: if seconds > 0.0 {
                self.file_len as f64 / (1024.0 * 1024.0) / seconds
            } else {
                0.0
            },
            counts: self.counts.clone(),
            fragment_size: self.fragment_size,
            session_id: self.closed_session.clone(),
            host_id: self.host.as_ref().map(|h| h.name.clone()),
            reply: self.reply.clone(),
            latency: self.latencies.percentiles(),
            latencies: self.latencies.clone(),
        }
    }

    fn failure(&self, error: UploadError, status: Option<u16>) -> FailedUpload {
        FailedUpload {
            file: self.path.clone(),
            url: self.origin.url(),
            hresult: error.hresult(),
            error,
            status,
            bytes: self.file_len,
            bytes_acked: self.acked,
            seconds: self.started.elapsed().as_secs_f64(),
            counts: self.counts.clone(),
            fragment_size: self.fragment_size,
            latency: self.latencies.percentiles(),
            latencies: self.latencies.clone(),
        }
    }

    async fn upload(&mut self) -> Result<(), UploadError> {
        if self.opts.ping {
            self.ping().await?;
        }
        loop {
            let session = self.create().await?;
            if self.host.is_some() {
                // Windows Pings the alternate host right after it sees BITS-Host-Id.
                self.ping().await?;
            }
            let flow = if self.file_len == 0 {
                // No range can describe an empty file: Create-Session, then Close-Session.
                Flow::Done(None)
            } else {
                self.fragments(&session).await?
            };
            let reply = match flow {
                Flow::Restart { step, why } => {
                    self.restart(step, &why)?;
                    continue;
                }
                Flow::Done(reply) => reply,
            };
            if let Some(url) = reply {
                self.fetch_reply(&url).await?;
            }
            match self.close(&session).await? {
                Flow::Restart { step, why } => self.restart(step, &why)?,
                Flow::Done(_) => return Ok(()),
            }
        }
    }

    /// Forgets the lost session and everything tied to it (docs/protocol.md §9.1 INIT).
    /// `why` is the answer to `step` that said the session is gone.
    fn restart(&mut self, step: Step, why: &str) -> Result<(), UploadError> {
        self.counts.session_restarts += 1;
        if let Some(meter) = &self.opts.meter {
            meter.restarts.fetch_add(1, Ordering::Relaxed);
        }
        self.session = None;
        self.host = None;
        self.reply = None;
        self.move_meter(0);
        let restarts = self.counts.session_restarts as u32;
        if restarts > self.opts.max_restarts {
            return Err(UploadError::TooManyRestarts { restarts });
        }
        tracing::info!(
            restarts,
            "retrying {step} now: {why}: session not found, creating a new session"
        );
        Ok(())
    }

    async fn ping(&mut self) -> Result<(), UploadError> {
        loop {
            let answer = match self.exchange(PacketType::Ping, &[], None).await {
                Ok(a) => a,
                Err(f) => {
                    self.transient(Step::Packet(PacketType::Ping), f.to_string(), None)
                        .await?;
                    continue;
                }
            };
            match judge(PacketType::Ping, answer.status, answer.code()) {
                Verdict::Success => {
                    if let Err(why) = ack_type(&answer) {
                        self.protocol_error(Step::Packet(PacketType::Ping), why)
                            .await?;
                        continue;
                    }
                    // A Ping proves the host answers, not that the failing request will now
                    // succeed: the failure streak (and the fallback timer) carry on.
                    return Ok(());
                }
                Verdict::Challenge | Verdict::Fatal => {
                    return Err(self.refusal(PacketType::Ping, &answer));
                }
                _ => {
                    self.transient_answer(Step::Packet(PacketType::Ping), &answer)
                        .await?
                }
            }
        }
    }

    async fn create(&mut self) -> Result<String, UploadError> {
        let packet = PacketType::CreateSession;
        loop {
            let extra = [("BITS-Supported-Protocols", PROTOCOL_GUID.to_owned())];
            let answer = match self.exchange(packet, &extra, None).await {
                Ok(a) => a,
                Err(f) => {
                    self.transient(Step::Packet(packet), f.to_string(), None)
                        .await?;
                    continue;
                }
            };
            match judge(packet, answer.status, answer.code()) {
                Verdict::Success => self.conflicts = 0,
                Verdict::Transient => {
                    if answer.status == 409 && self.close_uncertain {
                        return Err(UploadError::CloseUnconfirmed);
                    }
                    if answer.status == 409 {
                        // The destination may be freed by a session finishing, so 409 is
                        // worth a few tries; more would be a retry loop against a file that
                        // is not going away (an orphan session holds it until it expires).
                        self.conflicts += 1;
                        if self.conflicts > CONFLICT_RETRIES {
                            return Err(self.refusal(packet, &answer));
                        }
                    }
                    self.transient_answer(Step::Packet(packet), &answer).await?;
                    continue;
                }
                Verdict::SessionLost => {
                    self.transient_answer(Step::Packet(packet), &answer).await?;
                    continue;
                }
                _ => return Err(self.refusal(packet, &answer)),
            }
            if let Err(why) = ack_type(&answer) {
                self.protocol_error(Step::Packet(packet), why).await?;
                continue;
            }
            let id = answer
                .header("BITS-Session-Id")
                .map(str::trim)
                .filter(|id| !id.is_empty() && id.len() <= 100)
                .map(str::to_owned);
            let offered = answer.header("BITS-Protocol").map(str::trim);
            if !offered.is_some_and(|p| p.eq_ignore_ascii_case(PROTOCOL_GUID)) {
                // Whatever the server created is cancelled on the way out.
                self.session = id;
                return Err(UploadError::ProtocolMismatch {
                    offered: offered.map(str::to_owned),
                });
            }
            let Some(id) = id else {
                self.protocol_error(
                    Step::Packet(packet),
                    "the Create-Session Ack has no BITS-Session-Id".into(),
                )
                .await?;
                continue;
            };
            self.answered();
            self.host = answer.header("BITS-Host-Id").and_then(|name| {
                let fallback = answer
                    .header("BITS-Host-Id-Fallback-Timeout")
                    .and_then(|t| t.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                host_endpoint(name, self.origin.endpoint.port, self.origin.endpoint.tls).map(
                    |endpoint| HostId {
                        name: name.trim().to_owned(),
                        endpoint,
                        fallback,
                        failing_since: None,
                    },
                )
            });
            self.session = Some(id.clone());
            return Ok(id);
        }
    }

    async fn fragments(&mut self, session: &str) -> Result<Flow, UploadError> {
        let packet = PacketType::Fragment;
        let total = self.file_len;
        // Where the server wants the next byte (as far as we believe it).
        let mut offset = 0u64;
        // One past the highest byte sent in this session: the server cannot hold more.
        let mut sent = 0u64;
        // The highest offset the server has acknowledged in this session.
        let mut high = 0u64;
        let mut stalled = 0u32;
        let mut resume = false;
        loop {
            if resume {
                self.ping().await?;
                self.counts.resumes += 1;
                resume = false;
            }
            self.check_local().await?;
            // A completed upload still needs a 200 for its final fragment (it carries the
            // reply URL), so when the server holds everything, the last fragment is resent.
            let first = if offset >= total {
                total - self.fragment_size.min(total)
            } else {
                offset
            };
            let len = self.fragment_size.min(total - first);
            let last = first + len - 1;
            let step = Step::Fragment { first, last };
            sent = sent.max(first + len);
            self.counts.bytes_sent += len;
            let mut extra = vec![
                ("BITS-Session-Id", session.to_owned()),
                ("Content-Range", format!("bytes {first}-{last}/{total}")),
            ];
            if let Some(name) = &self.content_name {
                extra.push(("Content-Name", name.clone()));
            }
            let answer = match self.exchange(packet, &extra, Some((first, len))).await {
                Ok(a) => a,
                Err(f) => {
                    self.transient(step, f.to_string(), None).await?;
                    resume = true;
                    continue;
                }
            };
            match judge(packet, answer.status, answer.code()) {
                verdict @ (Verdict::Success | Verdict::Reposition) => {
                    let checked = check_fragment_ack(&answer, session, sent, total);
                    let new = match checked {
                        Ok(new) => new,
                        Err(why) => {
                            self.protocol_error(step, why).await?;
                            resume = true;
                            continue;
                        }
                    };
                    self.answered();
                    if verdict == Verdict::Reposition || new != first + len {
                        self.counts.offset_corrections += 1;
                    }
                    self.move_meter(new);
                    if new > high {
                        high = new;
                        stalled = 0;
                    } else {
                        stalled += 1;
                        if stalled > self.opts.max_stalled {
                            return Err(UploadError::NoProgress {
                                answers: stalled,
                                high,
                            });
                        }
                    }
                    offset = new;
                    if verdict == Verdict::Success && new == total && last + 1 == total {
                        let reply = answer
                            .header("BITS-Reply-URL")
                            .map(str::trim)
                            .filter(|u| !u.is_empty())
                            .map(str::to_owned);
                        if reply.is_none()
                            && (self.opts.expect_reply || self.opts.reply_out.is_some())
                        {
                            self.protocol_error(
                                step,
                                "the final Fragment Ack of an upload-reply job has no \
                                 BITS-Reply-URL"
                                    .into(),
                            )
                            .await?;
                            resume = true;
                            continue;
                        }
                        return Ok(Flow::Done(reply));
                    }
                }
                Verdict::Shrink => {
                    if len <= MIN_FRAGMENT_SIZE {
                        return Err(UploadError::FragmentTooLarge { size: len });
                    }
                    self.fragment_size = (len / 2).max(MIN_FRAGMENT_SIZE);
                    self.counts.fragment_shrinks += 1;
                    tracing::info!(
                        "retrying {step} in fragments of {} bytes: {}",
                        self.fragment_size,
                        verdict::describe_status(answer.status)
                    );
                }
                Verdict::SessionLost => {
                    return Ok(Flow::Restart {
                        step,
                        why: describe_answer(&answer),
                    });
                }
                Verdict::Transient => {
                    self.transient_answer(step, &answer).await?;
                    resume = true;
                }
                Verdict::Challenge | Verdict::Fatal => {
                    return Err(self.refusal(packet, &answer));
                }
            }
        }
    }

    async fn close(&mut self, session: &str) -> Result<Flow, UploadError> {
        let packet = PacketType::CloseSession;
        // Whether an earlier attempt may have been applied without us hearing the answer.
        let mut uncertain = false;
        loop {
            let mut extra = vec![("BITS-Session-Id", session.to_owned())];
            if let Some(name) = &self.content_name {
                extra.push(("Content-Name", name.clone()));
            }
            let answer = match self.exchange(packet, &extra, None).await {
                Ok(a) => a,
                Err(f) => {
                    uncertain = true;
                    self.transient(Step::Packet(packet), f.to_string(), None)
                        .await?;
                    continue;
                }
            };
            match judge(packet, answer.status, answer.code()) {
                Verdict::Success => {
                    let checked = ack_type(&answer).and_then(|()| {
                        verdict::same_session(answer.header("BITS-Session-Id"), session)
                    });
                    if let Err(why) = checked {
                        uncertain = true;
                        self.protocol_error(Step::Packet(packet), why).await?;
                        continue;
                    }
                    self.answered();
                    self.closed_session = self.session.take();
                    return Ok(Flow::Done(None));
                }
                Verdict::SessionLost => {
                    // Per §9.3 even a lost Close-Session restarts; if our first Close may
                    // have committed the file, a 409 on the next Create-Session says so.
                    self.close_uncertain |= uncertain;
                    return Ok(Flow::Restart {
                        step: Step::Packet(packet),
                        why: describe_answer(&answer),
                    });
                }
                Verdict::Transient => self.transient_answer(Step::Packet(packet), &answer).await?,
                _ => return Err(self.refusal(packet, &answer)),
            }
        }
    }

    /// Keeps a failure that retrying cannot mend, for [`Run::transient`] to end the upload.
    fn remember_fatal(&mut self, failure: &Failure) {
        if let Failure::Certificate { host, problem } = failure {
            self.fatal = Some(UploadError::Certificate {
                host: host.clone(),
                problem: *problem,
            });
        }
    }

    /// Best-effort Cancel-Session for a session left behind by a failed upload, so the
    /// server can delete its temp file. Bounded: three tries, short timeouts.
    async fn cancel(&mut self) {
        let Some(session) = self.session.take() else {
            return;
        };
        self.timeout = self.opts.request_timeout.min(Duration::from_secs(10));
        for attempt in 1..=3u32 {
            let extra = [("BITS-Session-Id", session.clone())];
            match self.exchange(PacketType::CancelSession, &extra, None).await {
                Ok(a)
                    if judge(PacketType::CancelSession, a.status, a.code())
                        != Verdict::Transient =>
                {
                    return;
                }
                _ => {
                    let delay = verdict::backoff(
                        self.opts.backoff_base,
                        self.opts.backoff_cap.min(Duration::from_secs(2)),
                        attempt,
                        self.rng.random::<f64>(),
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Sends one request (answering 401 Basic challenges on the way) and reads its Ack.
    async fn exchange(
        &mut self,
        packet: PacketType,
        extra: &[(&'static str, String)],
        body: Option<(u64, u64)>,
    ) -> Result<Answer, Failure> {
        let mut rejected = 0u32;
        loop {
            let carried = self.auth && self.opts.credentials.is_some();
            let answer = match self.send(packet, extra, body, carried).await {
                Ok(a) => a,
                Err(f) => {
                    self.conn = None;
                    return Err(f);
                }
            };
            if answer.status != 401 {
                return Ok(answer);
            }
            let Some(credentials) = &self.opts.credentials else {
                self.auth_problem = Some(
                    "the server demands authentication and no credentials were given \
                     (--user, --password)"
                        .into(),
                );
                return Ok(answer);
            };
            let schemes: Vec<&str> = answer
                .headers
                .get_all(http::header::WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            if !schemes.iter().any(|s| {
                s.split_whitespace()
                    .next()
                    .is_some_and(|scheme| scheme.eq_ignore_ascii_case("Basic"))
            }) {
                self.auth_problem = Some(format!(
                    "the server demands {}, and the client answers Basic challenges only",
                    if schemes.is_empty() {
                        "authentication without a WWW-Authenticate challenge".to_owned()
                    } else {
                        schemes.join(", ")
                    }
                ));
                return Ok(answer);
            }
            if carried {
                // A server may demand credentials again on a connection (IIS re-challenges);
                // answer once more, but a second refusal in a row means they are wrong.
                rejected += 1;
                if rejected >= 2 {
                    self.auth_problem = Some(format!(
                        "the server rejected the credentials of user `{}`",
                        credentials.user
                    ));
                    return Ok(answer);
                }
            }
            self.auth = true;
            self.counts.auth_challenges += 1;
        }
    }

    async fn send(
        &mut self,
        packet: PacketType,
        extra: &[(&'static str, String)],
        body: Option<(u64, u64)>,
        carried: bool,
    ) -> Result<Answer, Failure> {
        let endpoint = self.endpoint().clone();
        let reuse = self
            .conn
            .as_ref()
            .is_some_and(|c| c.endpoint == endpoint && c.usable());
        if !reuse {
            self.conn = None;
            let opened = Conn::open(&endpoint, self.opts.connect_timeout, self.tls.as_ref()).await;
            self.conn = Some(opened.inspect_err(|f| self.remember_fatal(f))?);
        }
        let len = body.map_or(0, |(_, len)| len);
        let mut request = http::Request::builder()
            .method(bits_post())
            .uri(self.origin.path.as_str())
            .header(http::header::HOST, endpoint.authority())
            .header(http::header::USER_AGENT, self.opts.user_agent.as_str())
            .header("BITS-Packet-Type", packet.as_str())
            .header(http::header::CONTENT_LENGTH, len);
        if carried && let Some(credentials) = &self.opts.credentials {
            request = request.header(http::header::AUTHORIZATION, credentials.header());
        }
        for (name, value) in extra {
            request = request.header(*name, value.as_str());
        }
        let body = match body {
            Some((at, len)) => ReqBody::file(self.path.clone(), at, len),
            None => ReqBody::Empty,
        };
        let request = request
            .body(body)
            .map_err(|e| Failure::Transport(format!("cannot build the request: {e}")))?;
        let Some(conn) = self.conn.as_mut() else {
            return Err(Failure::Transport("no connection".into()));
        };
        self.counts.requests += 1;
        let started = Instant::now();
        let deadline = started + self.timeout;
        let response = conn.send(request, deadline, self.timeout).await?;
        let (status, headers) = wire::finish_ack(response, deadline, self.timeout).await?;
        self.last_status = Some(status);
        let latency = started.elapsed();
        self.latencies.record(packet.as_str(), latency);
        Ok(Answer {
            status,
            headers,
            latency,
        })
    }

    /// Where requests go now: the `BITS-Host-Id` host, or the origin.
    fn endpoint(&self) -> &Endpoint {
        self.host
            .as_ref()
            .map_or(&self.origin.endpoint, |h| &h.endpoint)
    }

    /// A request got a good answer: the failure streak and the fallback timer end.
    fn answered(&mut self) {
        self.failures = 0;
        if let Some(host) = &mut self.host {
            host.failing_since = None;
        }
    }

    /// An answer that cannot be trusted: drop the connection, count it, retry.
    async fn protocol_error(&mut self, step: Step, why: String) -> Result<(), UploadError> {
        self.counts.protocol_errors += 1;
        self.conn = None;
        self.transient(step, format!("protocol error: {why}"), None)
            .await
    }

    async fn transient_answer(&mut self, step: Step, answer: &Answer) -> Result<(), UploadError> {
        let mut why = describe_answer(answer);
        if answer.status == 409 {
            why.push_str(
                " (the destination exists, or another session is uploading to it, and the \
                 server may not overwrite it)",
            );
        }
        let retry_after = verdict::retry_after(answer.header("Retry-After"));
        self.failure_code = Some(answer.code().unwrap_or(verdict::http_error(answer.status)));
        self.transient(step, why, retry_after).await
    }

    /// Counts a transient failure, falls back from a `BITS-Host-Id` host when its timeout
    /// is up, gives up after too many failures in a row, and otherwise waits the backoff.
    async fn transient(
        &mut self,
        step: Step,
        why: String,
        retry_after: Option<Duration>,
    ) -> Result<(), UploadError> {
        // At the origin a bad certificate stays bad; at a BITS-Host-Id host, falling back to
        // the origin (below) is the way out.
        let fatal = self.fatal.take();
        if self.host.is_none()
            && let Some(error) = fatal
        {
            return Err(error);
        }
        self.failures += 1;
        self.counts.retries += 1;
        if let Some(meter) = &self.opts.meter {
            meter.retries.fetch_add(1, Ordering::Relaxed);
        }

        if let Some(host) = &mut self.host {
            let since = *host.failing_since.get_or_insert_with(Instant::now);
            let due = host.fallback.is_some_and(|t| since.elapsed() >= t);
            // With a finite fallback timeout, going back to the origin beats giving up.
            let exhausted = host.fallback.is_some() && self.failures > self.opts.max_retries;
            if due || exhausted {
                tracing::info!(
                    host = host.name,
                    "retrying {step} at the origin host: {why}: falling back from the BITS-Host-Id host"
                );
                self.host = None;
                self.conn = None;
                self.failures = 0;
                self.counts.host_fallbacks += 1;
                return Ok(());
            }
        }
        let hresult = self.failure_code.take();
        if self.failures > self.opts.max_retries {
            return Err(UploadError::GaveUp {
                step: step.name(),
                attempts: self.failures,
                last: why,
                hresult,
            });
        }
        let mut delay = verdict::backoff(
            self.opts.backoff_base,
            self.opts.backoff_cap,
            self.failures,
            self.rng.random::<f64>(),
        );
        if let Some(asked) = retry_after {
            delay = delay.max(asked.min(self.opts.backoff_cap));
        }
        // Whole milliseconds: the jitter's nanoseconds say nothing to a reader.
        let shown = crate::units::show_duration(Duration::from_millis(delay.as_millis() as u64));
        tracing::info!(
            failures = self.failures,
            "retrying {step} in {shown}: {why}"
        );
        tokio::time::sleep(delay).await;
        Ok(())
    }

    fn refusal(&self, packet: PacketType, answer: &Answer) -> UploadError {
        let code = answer.code();
        let meaning = match (answer.status, code) {
            (401, _) => self
                .auth_problem
                .clone()
                .unwrap_or_else(|| "authentication failed".into()),
            (407, _) => "proxy authentication is not supported by the reference client".into(),
            (_, Some(verdict::TOO_LARGE)) => {
                "the file is larger than the server's maximum upload size".into()
            }
            (_, Some(verdict::INVALID_ARG)) => "the server considers the request invalid".into(),
            (501, _) => "BITS uploads are not enabled for this URL".into(),
            (_, Some(verdict::ACCESS_DENIED)) | (403, _) => {
                "access denied: the client may not upload to this URL".into()
            }
            (404, _) if packet == PacketType::CloseSession => {
                "the server lost the uploaded file before committing it".into()
            }
            (404, _) => {
                "no such URL (on IIS 7 also: uploads disabled or over the size limit)".into()
            }
            (409, _) => "the destination exists and the server may not overwrite it".into(),
            (400, _) => "the server considers the request invalid".into(),
            _ => "not retried (a fatal status)".into(),
        };
        UploadError::Refused(Refusal {
            packet,
            status: answer.status,
            code,
            context: answer.context(),
            meaning,
        })
    }

    /// The source must not change under the upload (BG_E_LOCAL_FILE_CHANGED).
    async fn check_local(&self) -> Result<(), UploadError> {
        let meta = tokio::fs::metadata(&self.path)
            .await
            .map_err(|error| UploadError::Local {
                path: self.path.clone(),
                error,
            })?;
        if meta.len() != self.file_len || meta.modified().ok() != self.modified {
            return Err(UploadError::LocalFileChanged {
                path: self.path.clone(),
            });
        }
        Ok(())
    }

    fn move_meter(&mut self, acked: u64) {
        if let Some(meter) = &self.opts.meter {
            if acked >= self.acked {
                meter.acked.fetch_add(acked - self.acked, Ordering::Relaxed);
            } else {
                meter.acked.fetch_sub(self.acked - acked, Ordering::Relaxed);
            }
        }
        self.acked = acked;
    }
}

/// `503 Service Unavailable`, `500 Internal Server Error with BITS-Error-Code 0x8020001F
/// (BG_E_SESSION_NOT_FOUND)`.
fn describe_answer(answer: &Answer) -> String {
    let mut why = verdict::describe_status(answer.status);
    if let Some(code) = answer.code() {
        why.push_str(&format!(
            " with BITS-Error-Code {}",
            verdict::describe_code(code)
        ));
    }
    why
}

/// Every 200 must say `BITS-Packet-Type: Ack`.
fn ack_type(answer: &Answer) -> Result<(), String> {
    if verdict::is_ack(answer.header("BITS-Packet-Type")) {
        Ok(())
    } else {
        Err(format!(
            "a {} answer without BITS-Packet-Type: Ack",
            answer.status
        ))
    }
}

/// Validates a 200 or 416 Fragment Ack and returns the offset it names.
fn check_fragment_ack(
    answer: &Answer,
    session: &str,
    sent: u64,
    total: u64,
) -> Result<u64, String> {
    if answer.status == 200 {
        ack_type(answer)?;
    }
    verdict::same_session(answer.header("BITS-Session-Id"), session)?;
    let offset = verdict::received_offset(answer.raw("BITS-Received-Content-Range"))?;
    verdict::plausible_offset(offset, sent, total)
}

/// `BITS-Host-Id` → where to connect. A bare name or address keeps the destination's port;
/// `name:port` or `[v6]:port` names its own. Anything unusable is ignored (`None`).
fn host_endpoint(value: &str, port: u16, tls: bool) -> Option<Endpoint> {
    let value = value.trim();
    if value.is_empty()
        || value.len() > 300
        || !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_:[]%".contains(&b))
    {
        return None;
    }
    if let Some(rest) = value.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after {
            "" => port,
            p => p.strip_prefix(':')?.parse().ok()?,
        };
        return Some(Endpoint {
            host: host.to_owned(),
            port,
            tls,
        });
    }
    match value.matches(':').count() {
        0 => Some(Endpoint {
            host: value.to_owned(),
            port,
            tls,
        }),
        1 => {
            let (host, p) = value.split_once(':')?;
            Some(Endpoint {
                host: host.to_owned(),
                port: p.parse().ok()?,
                tls,
            })
        }
        // A bare IPv6 literal.
        _ => Some(Endpoint {
            host: value.to_owned(),
            port,
            tls,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ids_keep_the_port_unless_they_name_one() {
        let e = host_endpoint("node3.farm.test", 8080, false).unwrap();
        assert_eq!((e.host.as_str(), e.port), ("node3.farm.test", 8080));
        let e = host_endpoint("node3:9000", 8080, false).unwrap();
        assert_eq!((e.host.as_str(), e.port), ("node3", 9000));
        let e = host_endpoint("[::1]", 8080, false).unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 8080));
        let e = host_endpoint("fe80::1", 81, false).unwrap();
        assert_eq!((e.host.as_str(), e.port), ("fe80::1", 81));
        assert!(host_endpoint("", 80, false).is_none());
        assert!(host_endpoint("a b", 80, false).is_none());
        assert!(host_endpoint("h:notaport", 80, false).is_none());
    }
}
