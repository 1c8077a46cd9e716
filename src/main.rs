//! `bitsmock`: argv → validated [`Config`] → the library. Nothing else lives here.

use bitsmock::Config;
use bitsmock::client::progress::Ticker;
use bitsmock::client::{Credentials, FailedUpload, Meter, Options, Trust, UploadError, Uploader};
use bitsmock::config::{
    self, AdminToken, FarmSize, Names, ServerHeader, Settings, TlsSource, check,
};
use bitsmock::fault::lint;
use bitsmock::fault::profile::{self, parse_rule_line_at};
use bitsmock::fault::shipped;
use bitsmock::journal_view::{self, Filter, Layout, Lines, SessionMatch, packet_named};
use bitsmock::proto::{ContentLength, ErrorHeader, Overlap, PacketType};
use bitsmock::units::{parse_duration, parse_size};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "bitsmock",
    version,
    about = "A mock and fault-injecting BITS upload server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a BITS upload server (BITS_POST Ping, Create-Session, Fragment, Close-Session,
    /// Cancel-Session) that stores uploads under --dir, optionally injecting faults.
    Serve(Box<ServeArgs>),
    /// Work with fault profiles.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Upload FILE to URL with the reference BITS client (docs/client.md): Create-Session,
    /// Fragments, Close-Session, retrying transient failures and resuming from the server's
    /// offset. Exit status: 0 uploaded, 1 failed, 2 bad arguments.
    Upload(Box<UploadArgs>),
    /// Show a journal file (`serve --journal FILE`, docs/journal.md) for people: one aligned
    /// row per event. Exit status: 0 shown, 1 unreadable file, 2 bad arguments.
    Journal(JournalArgs),
    /// Judge the client by a journal file (`serve --journal FILE`): every check of
    /// docs/verdicts.md, with the events that prove each failure. Exit status: 0 no check of
    /// severity error failed, 1 one did, 2 bad arguments or an unreadable file.
    Verdict(VerdictArgs),
    /// Run a client through profiles × seeds, one fresh server each, and judge every run
    /// (docs/verdicts.md). The command after `--` gets `{url}` and `{file}` replaced (also
    /// BITSMOCK_URL and BITSMOCK_FILE in its environment); without one, the reference client
    /// runs. Exit status: 0 every cell passed, 1 one did not, 2 bad arguments.
    Exercise(ExerciseArgs),
    /// A tiny server application for `serve --notify` (both --notify-type modes): it
    /// answers every notification with a JSON receipt of the upload's size and SHA-256. By
    /// reference it reads and writes the paths it is sent (never replacing a file): keep it
    /// on loopback.
    NotifyEcho(NotifyEchoArgs),
}

#[derive(Args)]
struct NotifyEchoArgs {
    /// Address to listen on (same forms as `serve --listen`; port 0 picks a free one,
    /// printed at start).
    #[arg(long, value_name = "ADDR", value_parser = config::parse_listen, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
}

#[derive(Args)]
struct VerdictArgs {
    /// The NDJSON journal file.
    #[arg(value_name = "JOURNAL")]
    file: PathBuf,
    #[arg(long, default_value = "text", value_parser = ["text", "json", "junit", "html"])]
    format: String,
    /// The file the client uploaded: `upload-intact` compares the committed file with it.
    #[arg(long, value_name = "FILE")]
    source: Option<PathBuf>,
    /// The server's upload root: committed files are read back from it (otherwise only the
    /// digests the journal carries, with `serve --sha256`, are compared).
    #[arg(long, value_name = "DIR", requires = "source")]
    dir: Option<PathBuf>,
    /// The shortest wait after a transient failure that counts as backing off.
    #[arg(long, value_name = "DURATION", default_value = "250ms", value_parser = parse_duration)]
    backoff_floor: Duration,
}

#[derive(Args)]
struct ExerciseArgs {
    /// Profiles to run through, by name or file, comma-separated [default: every shipped one].
    #[arg(
        long,
        value_name = "A,B,…",
        value_delimiter = ',',
        conflicts_with = "all"
    )]
    profiles: Vec<String>,
    /// Every shipped profile (the default).
    #[arg(long)]
    all: bool,
    /// Seeds: `1..5` (inclusive), `3`, or `1,4,9`.
    #[arg(long, default_value = "1", value_parser = bitsmock::exercise::parse_seeds)]
    seeds: std::vec::Vec<u64>,
    /// Run just this seed again (as `--seeds SEED`), printing its findings in full.
    #[arg(long, value_name = "SEED", conflicts_with = "seeds")]
    replay: Option<u64>,
    /// With --replay: re-run the finding without its mutations one at a time and report the
    /// few it still needs.
    #[arg(long, requires = "replay")]
    minimise: bool,
    /// Runs at once (each has its own server and client).
    #[arg(long, default_value = "1", value_parser = clap::value_parser!(u64).range(1..=64))]
    jobs: u64,
    /// Stop starting runs after this many findings.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    max_findings: Option<u64>,
    /// Exit codes that mean the client crashed, comma-separated (a Rust panic exits 101, an
    /// abort 134; a .NET unhandled exception 134 on Linux, 0xE0434352 on Windows).
    #[arg(long, value_name = "CODES", value_delimiter = ',')]
    crash_exit_codes: Vec<i32>,
    /// Size of the file each run uploads.
    #[arg(long, default_value = "1MiB", value_parser = parse_size)]
    size: u64,
    /// The reference client's fragment size (a command picks its own).
    #[arg(long, default_value = "256KiB", value_parser = parse_size)]
    fragment_size: u64,
    /// Longest a client may run before it counts as hung and is killed.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    timeout: Duration,
    /// Where journals, client output, verdict.json, junit.xml and report.html go
    /// [default: a new temp directory].
    #[arg(long, value_name = "DIR")]
    report_dir: Option<PathBuf>,
    /// The shortest wait after a transient failure that counts as backing off.
    #[arg(long, value_name = "DURATION", default_value = "250ms", value_parser = parse_duration)]
    backoff_floor: Duration,
    /// The client command and its arguments, after `--`.
    #[arg(last = true, value_name = "CLIENT-COMMAND")]
    command: Vec<String>,
}

#[derive(Args)]
struct JournalArgs {
    /// The NDJSON journal file.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Only events of this session: its ordinal (1, 2, …) or its id (any case, braces
    /// optional).
    #[arg(long, value_name = "N|ID")]
    session: Option<SessionMatch>,
    /// Only requests a fault shaped, and refused connections.
    #[arg(long)]
    faults: bool,
    /// Only requests of this packet type.
    #[arg(long, value_name = "TYPE", value_parser = packet_named)]
    packet: Option<PacketType>,
    /// Keep reading as the file grows, until the server's `stopped` event (or Ctrl-C).
    #[arg(long)]
    follow: bool,
}

#[derive(Args)]
struct UploadArgs {
    /// The file to upload (streamed from disk).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// The destination, an absolute http:// or https:// URL, e.g.
    /// http://127.0.0.1:8080/drop/a.bin.
    #[arg(value_name = "URL")]
    url: String,
    /// For https:// URLs, trust only the CAs in this PEM file (e.g. the ca.pem that
    /// `bitsmock serve --tls` writes) instead of the system's.
    #[arg(long, value_name = "FILE", conflicts_with = "insecure")]
    ca_cert: Option<PathBuf>,
    /// For https:// URLs, accept any server certificate (expired, self-signed, for another
    /// host): to try a server whose certificate is known to be bad.
    #[arg(long)]
    insecure: bool,
    /// Bytes per fragment; halved on 413, never below 5KiB.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "1MiB")]
    fragment_size: u64,
    /// Ping before Create-Session (a Ping always precedes resuming after a failure and the
    /// first request to a BITS-Host-Id host).
    #[arg(long)]
    ping: bool,
    /// User name for 401 Basic challenges.
    #[arg(long, value_name = "NAME", requires = "password")]
    user: Option<String>,
    /// Password for 401 Basic challenges.
    #[arg(long, value_name = "PASSWORD", requires = "user")]
    password: Option<String>,
    /// Save the reply of an upload-reply job here (implies --expect-reply).
    #[arg(long, value_name = "FILE")]
    reply_out: Option<PathBuf>,
    /// The job is upload-reply: a final Ack without BITS-Reply-URL is a protocol error.
    #[arg(long)]
    expect_reply: bool,
    /// First retry delay after a transient failure; doubles per failure up to --retry-cap.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1s")]
    retry_base: Duration,
    /// Longest retry delay.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "60s")]
    retry_cap: Duration,
    /// Consecutive transient failures (protocol errors included) before giving up.
    #[arg(long, value_name = "N", default_value_t = 12)]
    max_retries: u32,
    /// Session re-creations after 0x8020001F before giving up.
    #[arg(long, value_name = "N", default_value_t = 10)]
    max_restarts: u32,
    /// Longest wait for one request, sending it and reading its answer.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "5m")]
    timeout: Duration,
    /// Longest wait for a TCP connection.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "30s")]
    connect_timeout: Duration,
    /// Uploads in flight at once (with --count; alone it also sets --count).
    #[arg(long, value_name = "N")]
    concurrency: Option<usize>,
    /// Upload FILE this many times, to URL.1, URL.2, … (before any query string), and report
    /// aggregate throughput and latency percentiles per packet type.
    #[arg(long, value_name = "M")]
    count: Option<usize>,
    /// No progress line and no summary (errors are still printed).
    #[arg(long)]
    quiet: bool,
    /// Print one JSON object on stdout in every case: the summary with "ok": true, or on
    /// failure "ok": false with the error, the last HTTP status, the HRESULT and the counts
    /// so far.
    #[arg(long)]
    json: bool,
}

impl UploadArgs {
    fn options(&self) -> Result<Options, String> {
        if self.fragment_size == 0 {
            return Err("--fragment-size must be at least 1 byte".into());
        }
        if self.retry_base.is_zero() || self.retry_cap < self.retry_base {
            return Err("--retry-base must be above zero and at most --retry-cap".into());
        }
        if self.timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err("--timeout and --connect-timeout must be above zero".into());
        }
        if self.concurrency == Some(0) || self.count == Some(0) {
            return Err("--concurrency and --count must be at least 1".into());
        }
        Ok(Options {
            fragment_size: self.fragment_size,
            ping: self.ping,
            credentials: match (&self.user, &self.password) {
                (Some(user), Some(password)) => Some(Credentials {
                    user: user.clone(),
                    password: password.clone(),
                }),
                _ => None,
            },
            connect_timeout: self.connect_timeout,
            request_timeout: self.timeout,
            backoff_base: self.retry_base,
            backoff_cap: self.retry_cap,
            max_retries: self.max_retries,
            max_restarts: self.max_restarts,
            expect_reply: self.expect_reply || self.reply_out.is_some(),
            reply_out: self.reply_out.clone(),
            trust: match (&self.ca_cert, self.insecure) {
                (_, true) => Trust::Insecure,
                (Some(file), false) => Trust::Ca(file.clone()),
                (None, false) => Trust::System,
            },
            ..Options::default()
        })
    }
}

#[derive(Subcommand)]
enum ProfileCommand {
    /// Validate profile files; errors read FILE:LINE: what is wrong (exit 1). Rules that
    /// can never fire, rules shadowed by an earlier rule and endless `refuse` rules are
    /// warnings, FILE:LINE: warning: … (exit 0 unless --deny-warnings).
    Check {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Exit 1 when any file has a warning.
        #[arg(long)]
        deny_warnings: bool,
    },
    /// List the shipped profiles with their descriptions.
    List,
    /// Print a profile's TOML text as --profile would load it: a shipped profile exactly as
    /// shipped, so `bitsmock profile show flaky-wifi > mine.toml` starts your own.
    Show {
        #[arg(value_name = "NAME|FILE")]
        profile: String,
    },
}

/// Flags left unset fall back to the profile's `[server]` table, then to the default shown.
#[derive(Args)]
struct ServeArgs {
    /// Address to listen on: PORT or :PORT (on 127.0.0.1), localhost:PORT, IPV4:PORT or
    /// [IPV6]:PORT; port 0 picks a free one, printed at start [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR", value_parser = config::parse_listen)]
    listen: Option<SocketAddr>,
    /// Serve HTTPS on --listen. Without --tls-cert/--tls-key, a local CA and a certificate
    /// for localhost, 127.0.0.1 and ::1 are generated at start; the CA is written to
    /// DIR/BITS-Sessions/tls/ca.pem (printed, and `ca` in --ready-file/--json).
    #[arg(long)]
    tls: bool,
    /// Also serve HTTPS on this address, beside the HTTP --listen (same forms as --listen).
    #[arg(long, value_name = "ADDR", value_parser = config::parse_listen)]
    tls_listen: Option<SocketAddr>,
    /// The server certificate chain (PEM, leaf first) for --tls/--tls-listen, instead of a
    /// generated one.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Start N farm members beside --listen (free ports, same scheme): Create-Session on the
    /// front answers BITS-Host-Id naming one, round-robin, with
    /// BITS-Host-Id-Fallback-Timeout; a member knows only its own sessions (1-16).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=16))]
    farm: Option<u32>,
    /// The farm members and the front share one session store (IIS on a shared folder).
    #[arg(long, requires = "farm")]
    farm_shared: bool,
    /// Upload root: committed files land at DIR + URL path; created if missing [default: ./uploads].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Fault profile: a shipped name (see `bitsmock profile list`) or a TOML file.
    #[arg(long, value_name = "NAME|FILE")]
    profile: Option<String>,
    /// Add a fault rule, in the one-line syntax (the keys of a [[rule]] table as key=value
    /// pairs), e.g. --fault 'packet=fragment nth=3 fault=lose-ack how=reset'. Repeatable;
    /// rules run after the profile's, and an unnamed one is named after its place in the
    /// whole list (`rule 4` after a 3-rule profile).
    #[arg(long = "fault", value_name = "RULE")]
    faults: Vec<String>,
    /// Seed for every fault decision (session ids come from the OS, never from it); overrides the profile's
    /// seed [default: the profile's seed, else random; printed at start for replaying].
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
    /// Multiply every fault duration (delays, hangs, time windows, idle timeouts) by this
    /// factor, e.g. 0.01 to run a slow profile quickly in a test [default: 1].
    #[arg(long, value_name = "FACTOR", value_parser = time_scale)]
    time_scale: Option<f64>,
    /// Largest whole file accepted, e.g. 100MiB; bigger uploads get 500 + 0x80200020
    /// (BG_E_TOO_LARGE) at their first fragment [default: no limit].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_upload_size: Option<u64>,
    /// Largest fragment body accepted; bigger fragments get 413 and the client shrinks them
    /// [default: 32MiB].
    #[arg(long, value_name = "SIZE", value_parser = max_fragment_size)]
    max_fragment_size: Option<u64>,
    /// Live sessions at most; a Create-Session beyond it gets 500 + 0x8007000E
    /// (E_OUTOFMEMORY), which clients retry later [default: 10000].
    #[arg(long, value_name = "N", value_parser = max_sessions)]
    max_sessions: Option<usize>,
    /// Idle time after which a session and its temp file are deleted (e.g. 30s, 10m, 14d);
    /// later packets for it get 500 + 0x8020001F [default: 14d].
    #[arg(long, value_name = "DURATION", value_parser = session_timeout)]
    session_timeout: Option<Duration>,
    /// Let Close-Session replace an existing destination file (otherwise Create-Session
    /// answers 409 when the destination exists).
    #[arg(long)]
    allow_overwrites: bool,
    /// Hash every upload as it arrives, so the `committed` event carries its SHA-256 (costs
    /// throughput on small machines; upload-reply sessions are hashed anyway).
    #[arg(long)]
    sha256: bool,
    /// URL prefix whose destinations are upload-reply jobs: their final fragment Ack carries
    /// BITS-Reply-URL, serving a JSON reply (name, size, sha256). Empty string: none
    /// [default: /reply/].
    #[arg(long, value_name = "PREFIX")]
    reply_path: Option<String>,
    /// Notify this server application (a plain http:// URL) when an upload-reply job's last
    /// byte arrives, before the final Fragment Ack, as IIS's BITS extension does; its answer
    /// becomes the reply (docs/protocol.md §8). Without it the built-in JSON application answers.
    #[arg(long, value_name = "URL", value_parser = notify_url)]
    notify: Option<bitsmock::notify::AppUrl>,
    /// How the application gets the upload: `reference` (file paths in headers; it writes
    /// its reply to the response path) or `value` (the upload as the body; the reply is the
    /// response body) [default: value].
    #[arg(long, value_name = "TYPE", value_parser = named(&config::NOTIFY_TYPE))]
    notify_type: Option<bitsmock::notify::Mode>,
    /// Longest a notification may take before the final fragment gets 408 + context 0x7
    /// [default: 5m].
    #[arg(long, value_name = "DURATION", value_parser = timeout)]
    notify_timeout: Option<Duration>,
    /// Largest reply accepted from the application [default: 64MiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    notify_max_reply: Option<u64>,
    /// BITS-Reply-URL of stored replies: `absolute` or IIS's `relative`
    /// (BITS-Sessions\Replies\{ID}\responsefile.bin) [default: absolute].
    #[arg(long, value_name = "FORM", value_parser = named(&config::NOTIFY_REPLY_URL))]
    notify_reply_url: Option<bitsmock::notify::ReplyUrl>,
    /// Send this BITS-Host-Id in every Create-Session Ack (web-farm redirection).
    #[arg(long, value_name = "HOST", value_parser = host_id)]
    host_id: Option<String>,
    /// BITS-Host-Id-Fallback-Timeout in seconds, sent with the host id [default: 86400].
    #[arg(long, value_name = "SECONDS")]
    host_id_fallback_timeout: Option<u64>,
    /// Fragments overlapping stored bytes: `tail` writes only the new tail and answers 200
    /// (Windows behaviour); `strict` answers 416 with the expected offset ([MC-BUP])
    /// [default: tail].
    #[arg(long, value_name = "POLICY", value_parser = named(&config::OVERLAP))]
    overlap: Option<Overlap>,
    /// Name of the error-code header: `code` (BITS-Error-Code, what clients read), `spec`
    /// (BITS-Error, the [MC-BUP] name) or `both` [default: code].
    #[arg(long, value_name = "NAME", value_parser = named(&config::ERROR_HEADER))]
    error_header: Option<ErrorHeader>,
    /// Longest wait for a request's headers, idle keep-alive included [default: 30s].
    #[arg(long, value_name = "DURATION", value_parser = timeout)]
    header_timeout: Option<Duration>,
    /// Longest stall while reading a fragment body before the connection is dropped
    /// [default: 60s].
    #[arg(long, value_name = "DURATION", value_parser = timeout)]
    body_timeout: Option<Duration>,
    /// Bodyless packets (Ping, Create-, Close-, Cancel-Session) without Content-Length:
    /// `required` answers 411 + 0x80070057 as IIS does; `optional` reads them as empty, as
    /// HTTP/1.1 allows (Python's bits.py omits it). Fragments always need it [default: required].
    #[arg(long, value_name = "POLICY", value_parser = named(&config::CONTENT_LENGTH))]
    content_length: Option<ContentLength>,
    /// Remember closed sessions this long, so a repeated Close-Session (its Ack was lost)
    /// answers 200 instead of 500 + 0x8020001F, e.g. 10m [default: off, as IIS].
    #[arg(long, value_name = "DURATION", value_parser = timeout)]
    remember_closed: Option<Duration>,
    /// The Server header on answers: `iis` (Server: Microsoft-IIS/10.0 and Pragma: no-cache,
    /// as IIS), `bitsmock` (Server: bitsmock/VERSION) or `none` [default: iis].
    #[arg(long, value_name = "KIND", value_parser = named(&config::SERVER_HEADER))]
    server_header: Option<ServerHeader>,
    /// Add an `X-Bitsmock-Fault` header to every answer a fault shaped (changes the wire).
    #[arg(long)]
    mark_faults: bool,
    /// Write every event to FILE as NDJSON, one object per line (docs/journal.md).
    #[arg(long, value_name = "FILE")]
    journal: Option<PathBuf>,
    /// Events kept in memory for the control API and --verdict (about 0.85 KiB each; the
    /// --journal file keeps them all).
    #[arg(long, value_name = "N", default_value = "100000", value_parser = clap::value_parser!(u64).range(1..))]
    journal_keep: u64,
    #[command(flatten)]
    harness: Harness,
}

/// How a test harness in any language drives `serve`: the control API and the start-up
/// handshake. Not settings of the server itself, so they stay out of the profile merge.
#[derive(Args)]
struct Harness {
    /// Serve the HTTP control API (docs/admin-api.md) on this address, in the same forms as
    /// --listen; port 0 picks a free one, reported in the banner, --ready-file and --json
    /// [default: off].
    #[arg(long, value_name = "ADDR", value_parser = config::parse_listen)]
    admin: Option<SocketAddr>,
    /// Require `Authorization: Bearer TOKEN` on every control API request (then peers
    /// beyond loopback are served too).
    #[arg(long, value_name = "TOKEN", requires = "admin")]
    admin_token: Option<String>,
    /// Once listening, write {"url", "admin_url", "seed", "pid"} as JSON to FILE (whole:
    /// written beside it, then renamed into place).
    #[arg(long, value_name = "FILE")]
    ready_file: Option<PathBuf>,
    /// Print that same JSON object as the first line on stdout instead of the banner (which
    /// goes to stderr, with the fire counts at exit).
    #[arg(long)]
    json: bool,
    /// Shut down gracefully when stdin reaches end of file (when the harness that started
    /// the server exits or closes the pipe).
    #[arg(long)]
    exit_on_stdin_close: bool,
    /// At shutdown, print the verdict on the clients' behaviour (docs/verdicts.md) and exit
    /// with status 1 if any check of severity error failed.
    #[arg(long)]
    verdict: bool,
}

// Flag value parsers: the unit parsers, then the same checks a profile's `[server]` table and
// the merge apply, so a bad value is a usage error that names its flag.

fn max_fragment_size(text: &str) -> Result<u64, String> {
    parse_size(text).and_then(check::max_fragment_size)
}

fn max_sessions(text: &str) -> Result<usize, String> {
    let n = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number"))?;
    check::max_sessions(n)
}

fn session_timeout(text: &str) -> Result<Duration, String> {
    parse_duration(text).and_then(check::session_timeout)
}

fn timeout(text: &str) -> Result<Duration, String> {
    parse_duration(text).and_then(check::timeout)
}

fn notify_url(text: &str) -> Result<bitsmock::notify::AppUrl, String> {
    bitsmock::notify::AppUrl::parse(text)
}

fn host_id(text: &str) -> Result<String, String> {
    check::host_id(text.to_owned())
}

fn time_scale(text: &str) -> Result<f64, String> {
    let factor = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    check::time_scale(factor)
}

/// A flag whose values are the names in `names` (listed by `--help` and in errors).
fn named<T: Copy + PartialEq + Send + Sync + 'static>(
    names: &'static Names<T>,
) -> impl TypedValueParser<Value = T> {
    PossibleValuesParser::new(names.names()).try_map(move |name: String| names.parse(&name))
}

impl ServeArgs {
    /// The flags as one layer of the merge. `--fault` rules are numbered after the profile's
    /// `profile_rules`, so their default names continue the profile's instead of repeating them.
    fn settings(self, profile_rules: usize) -> Result<Settings, String> {
        let rules = self
            .faults
            .iter()
            .enumerate()
            .map(|(i, line)| parse_rule_line_at(line, "--fault", i + 1, profile_rules + i + 1))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        Ok(Settings {
            listen: self.listen,
            root: self.dir,
            seed: self.seed,
            time_scale: self.time_scale,
            max_upload_size: self.max_upload_size,
            max_fragment_size: self.max_fragment_size,
            max_sessions: self.max_sessions,
            session_timeout: self.session_timeout,
            // A switch can only turn the setting on; absent leaves it to the profile.
            allow_overwrites: self.allow_overwrites.then_some(true),
            sha256: self.sha256.then_some(true),
            reply_path: self.reply_path,
            host_id: self.host_id,
            host_id_fallback_timeout: self.host_id_fallback_timeout,
            overlap: self.overlap,
            error_header: self.error_header,
            header_read_timeout: self.header_timeout,
            body_read_timeout: self.body_timeout,
            content_length: self.content_length,
            remember_closed: self.remember_closed,
            server_header: self.server_header,
            notify: self.notify.map(|url| {
                vec![config::NotifyRoute {
                    path: None,
                    url,
                    mode: None,
                }]
            }),
            notify_type: self.notify_type,
            notify_timeout: self.notify_timeout,
            notify_max_reply: self.notify_max_reply,
            notify_reply_url: self.notify_reply_url,
            rules,
        })
    }

    /// The profile, then the flags over it, through the one merge; then what only flags
    /// set (a profile cannot open a control port or write files elsewhere). Also returns
    /// the harness flags `serve` itself acts on.
    fn into_config(mut self) -> Result<(Config, Harness), String> {
        let profile = self
            .profile
            .as_deref()
            .map(config::load_profile)
            .transpose()?;
        let mark_faults = self.mark_faults;
        let journal = self.journal.take();
        let journal_keep = usize::try_from(self.journal_keep).unwrap_or(usize::MAX);
        let tls_source = match (self.tls_cert.take(), self.tls_key.take()) {
            (Some(cert), Some(key)) => TlsSource::Files { cert, key },
            _ => TlsSource::Generated,
        };
        let (listen_tls, tls_listen) = (self.tls, self.tls_listen);
        let farm = self.farm.map(|members| FarmSize {
            members,
            shared: self.farm_shared,
        });
        if !listen_tls && tls_listen.is_none() && tls_source != TlsSource::Generated {
            return Err("--tls-cert and --tls-key need --tls or --tls-listen".into());
        }
        let harness = Harness {
            admin: self.harness.admin,
            admin_token: self.harness.admin_token.take(),
            ready_file: self.harness.ready_file.take(),
            json: self.harness.json,
            exit_on_stdin_close: self.harness.exit_on_stdin_close,
            verdict: self.harness.verdict,
        };
        if harness.admin_token.as_deref().is_some_and(str::is_empty) {
            return Err("--admin-token must not be empty".into());
        }
        let flags = self.settings(profile.as_ref().map_or(0, |p| p.rules.len()))?;
        let mut config = Config::from_parts(profile.as_ref(), flags).map_err(|e| e.to_string())?;
        config.mark_faults = mark_faults;
        config.journal = journal;
        config.journal_keep = journal_keep;
        config.tls = (listen_tls || tls_listen.is_some()).then_some(tls_source);
        config.farm = farm;
        config.listen_tls = listen_tls;
        config.tls_listen = tls_listen;
        config.admin = harness.admin;
        config.admin_token = harness.admin_token.clone().map(AdminToken::from);
        Ok((config, harness))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // An exercise runs a server per cell: their per-request lines would bury its progress.
    let default_level = match cli.command {
        Command::Exercise(_) => "warn",
        _ => "info",
    };
    // Flushes the log when main returns.
    let (log, _flush_log) = bitsmock::log::non_blocking(std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(log)
        .fmt_fields(bitsmock::log::Fields)
        .with_ansi(colour())
        .event_format(bitsmock::log::Format::default())
        .init();
    match cli.command {
        Command::Upload(args) => upload(*args),
        Command::Journal(args) => journal(args),
        Command::Verdict(args) => verdict(&args),
        Command::Exercise(args) => exercise(args),
        Command::NotifyEcho(args) => notify_echo(&args),
        Command::Serve(args) => match args.into_config() {
            Ok((config, harness)) => serve(config, harness),
            Err(message) => {
                eprintln!("error: {message}");
                ExitCode::from(2)
            }
        },
        Command::Profile(ProfileCommand::List) => {
            for (name, _) in shipped::SHIPPED {
                match shipped::shipped(name) {
                    Some(Ok(p)) => println!("{name:<16} {}", p.description),
                    Some(Err(e)) => println!("{name:<16} (invalid: {e})"),
                    None => {}
                }
            }
            ExitCode::SUCCESS
        }
        // Exit 1 on an unknown name, as `profile check` does on an unreadable file.
        Command::Profile(ProfileCommand::Show { profile }) => {
            match config::read_profile(&profile) {
                Ok((_, text)) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Profile(ProfileCommand::Check {
            files,
            deny_warnings,
        }) => check_profiles(&files, deny_warnings),
    }
}

/// `profile check`: errors and warnings on stderr, one `FILE: ok` line per usable file.
fn check_profiles(files: &[PathBuf], deny_warnings: bool) -> ExitCode {
    let mut failed = false;
    for file in files {
        let shown = file.display().to_string();
        let result = std::fs::read_to_string(file)
            .map_err(|e| format!("{shown}: cannot read: {e}"))
            .and_then(|text| profile::parse(&text, &shown).map_err(|e| e.to_string()));
        let p = match result {
            Ok(p) => p,
            Err(e) => {
                eprintln!("{e}");
                failed = true;
                continue;
            }
        };
        let warnings = lint::lint(&p);
        for w in &warnings {
            eprintln!("{shown}:{}: warning: {}", w.line, w.message);
        }
        if deny_warnings && !warnings.is_empty() {
            failed = true;
            continue;
        }
        let rules = p.rules.len();
        match warnings.len() {
            0 => println!("{shown}: ok ({}, {rules} rules)", p.name),
            n => println!(
                "{shown}: ok ({}, {rules} rules, {n} warning{})",
                p.name,
                if n == 1 { "" } else { "s" }
            ),
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Colour in logs only for a person at a terminal, and never against NO_COLOR
/// (<https://no-color.org>: set and not empty).
fn colour() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn serve(config: Config, harness: Harness) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        // Before the banner: whoever reads it may signal at once.
        let mut signals = match Signals::register() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: cannot watch for signals: {e}");
                return ExitCode::FAILURE;
            }
        };
        let mut config = config;
        let bitsmock::Bound {
            listeners,
            addr,
            tls_addr,
            members,
        } = match bitsmock::bind(&mut config).await {
            Ok(bound) => bound,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        let admin_listener = match config.admin {
            Some(at) => match tokio::net::TcpListener::bind(at).await {
                Ok(l) => Some(l),
                Err(e) => {
                    eprintln!("error: cannot listen on {at} (--admin): {e}");
                    return ExitCode::FAILURE;
                }
            },
            None => None,
        };
        let admin_addr = admin_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok().or(config.admin));
        if let Some(at) = admin_addr
            && harness.admin_token.is_none()
            && !at.ip().is_loopback()
        {
            eprintln!(
                "warning: the control API on {at} has no --admin-token, so it serves loopback peers only"
            );
        }
        let server = match bitsmock::Server::new(config) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        let scheme = if server.config().listen_tls {
            "https"
        } else {
            "http"
        };
        let urls = Urls {
            main: format!("{scheme}://{addr}"),
            tls: tls_addr.map(|a| format!("https://{a}")),
            admin: admin_addr.map(|a| format!("http://{a}")),
            farm: members.iter().map(|a| format!("{scheme}://{a}")).collect(),
        };
        let ready = ready(&urls, &server);
        if let Some(path) = &harness.ready_file
            && let Err(e) = write_whole(path, &format!("{ready}\n"))
        {
            eprintln!("error: cannot write --ready-file {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        // With --json, stdout carries JSON only; everything for people goes to stderr.
        let say = |line: &str| {
            if harness.json {
                eprintln!("{line}");
            } else {
                println!("{line}");
            }
        };
        if harness.json {
            println!("{ready}");
        }
        say(&banner(&urls, &server));
        let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
        let admin_task = admin_listener.map(|listener| {
            tokio::spawn(bitsmock::admin::serve(
                Arc::clone(&server),
                listener,
                harness.admin_token.clone(),
                async {
                    let _ = admin_stopped.await;
                },
            ))
        });
        let stdin_closed = stdin_closed(harness.exit_on_stdin_close);
        let shutdown = async move {
            tokio::select! {
                () = signals.next() => {
                    eprintln!("shutting down (Ctrl-C again to exit at once)");
                }
                () = stdin_closed => eprintln!("stdin closed; shutting down"),
            }
            tokio::spawn(async move {
                signals.next().await;
                eprintln!("exiting without finishing open requests");
                std::process::exit(130);
            });
        };
        let result = Arc::clone(&server).serve(listeners, shutdown).await;
        let _ = admin_stop.send(());
        if let Some(task) = admin_task {
            let _ = task.await;
        }
        for (i, (name, fired)) in server.fire_counts().iter().enumerate() {
            say(&format!("rule {}: {name}: fired {fired} time(s)", i + 1));
        }
        let judged = harness
            .verdict
            .then(|| server.verdict(&bitsmock::verdict::Options::default()));
        if let Some(v) = &judged {
            say(bitsmock::verdict::report::text(v).trim_end());
        }
        match result {
            Ok(()) if judged.as_ref().is_some_and(|v| !v.passed()) => ExitCode::FAILURE,
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Where the server listens, as URLs.
struct Urls {
    /// `--listen`: `http://…`, or `https://…` under `--tls`.
    main: String,
    /// `--tls-listen`.
    tls: Option<String>,
    admin: Option<String>,
    /// `--farm`: the members, member 1 first.
    farm: Vec<String>,
}

/// What a harness needs to start talking to the server: `--ready-file` and `--json`.
fn ready(urls: &Urls, server: &bitsmock::Server) -> serde_json::Value {
    serde_json::json!({
        "url": urls.main,
        "tls_url": urls.tls,
        "admin_url": urls.admin,
        "ca": server.ca_path().map(|p| p.display().to_string()),
        "farm": urls.farm,
        "seed": server.config().seed,
        "pid": std::process::id(),
    })
}

/// Writes FILE.tmp, then renames it to FILE, so a reader polling for FILE sees all of it or
/// nothing.
fn write_whole(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// Resolves when stdin reaches end of file, if `watch`; otherwise never. Read on a thread of
/// its own, not tokio's blocking pool: the runtime would wait for a blocked read at exit.
fn stdin_closed(watch: bool) -> impl std::future::Future<Output = ()> {
    let (closed, on_close) = tokio::sync::oneshot::channel::<()>();
    if watch {
        let spawned = std::thread::Builder::new()
            .name("bitsmock-stdin".into())
            .spawn(move || {
                let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
                let _ = closed.send(());
            });
        if let Err(e) = spawned {
            eprintln!("warning: cannot watch stdin: {e}");
        }
    }
    async move {
        if on_close.await.is_err() {
            // No watcher (or it could not start): never resolve.
            std::future::pending::<()>().await;
        }
    }
}

/// The first line on stdout. Scripts and tests read the address from its start, so that part
/// stays `bitsmock listening on http://ADDR/`; the seed is there to replay a run with --seed.
fn banner(urls: &Urls, server: &bitsmock::Server) -> String {
    let config = server.config();
    let rules = config.rules.len();
    let admin = urls
        .admin
        .as_ref()
        .map_or(String::new(), |a| format!("; control API on {a}/"));
    let tls = urls
        .tls
        .as_ref()
        .map_or(String::new(), |t| format!(" and {t}/"));
    let ca = server
        .ca_path()
        .map_or(String::new(), |p| format!("; TLS CA in {}", p.display()));
    let farm = match urls.farm.as_slice() {
        [] => String::new(),
        members => format!(
            "; farm members {}{}",
            members.join(", "),
            if config.vdir.farm.as_ref().is_some_and(|f| f.shared) {
                " (shared store)"
            } else {
                ""
            }
        ),
    };
    format!(
        "bitsmock listening on {}/{tls} (uploads go to {}; profile {}, {rules} rule{}, seed {}, time scale {}{admin}{ca}{farm})",
        urls.main,
        server.store().root().display(),
        config.profile_name.as_deref().unwrap_or("none"),
        if rules == 1 { "" } else { "s" },
        config.seed,
        config.time_scale,
    )
}

/// Ctrl-C and SIGTERM both ask for a graceful shutdown. Registered up front rather than on
/// first poll, so that a signal arriving before the server loop starts is not fatal.
struct Signals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    #[cfg(unix)]
    fn register() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    #[cfg(not(unix))]
    fn register() -> std::io::Result<Self> {
        Ok(Signals {})
    }

    /// The next Ctrl-C or SIGTERM.
    #[cfg(unix)]
    async fn next(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }

    #[cfg(not(unix))]
    async fn next(&mut self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn notify_echo(args: &NotifyEchoArgs) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let listener = match tokio::net::TcpListener::bind(args.listen).await {
            Ok(listener) => listener,
            Err(e) => {
                eprintln!("error: cannot listen on {}: {e}", args.listen);
                return ExitCode::FAILURE;
            }
        };
        match listener.local_addr() {
            Ok(addr) => println!("bitsmock notify-echo listening on http://{addr}/"),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
        tokio::select! {
            served = bitsmock::echo::run(listener) => match served {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            },
            _ = tokio::signal::ctrl_c() => ExitCode::SUCCESS,
        }
    })
}

fn upload(args: UploadArgs) -> ExitCode {
    let options = match args.options() {
        Ok(o) => o,
        Err(message) => {
            let error = UploadError::Usage(message);
            if args.json {
                let failed = FailedUpload::before_start(args.file, args.url, error);
                println!("{}", failed.json());
                eprintln!("error: {}", failed.error);
            } else {
                eprintln!("error: {error}");
            }
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let count = args.count.or(args.concurrency).unwrap_or(1);
    let concurrency = args.concurrency.unwrap_or(1).min(count);
    runtime.block_on(async move {
        let meter = Arc::new(Meter::default());
        let ticker = (!args.quiet && !args.json && std::io::stderr().is_terminal())
            .then(|| Ticker::start(Arc::clone(&meter), Duration::from_millis(200)));
        let uploader = Uploader::new(Options {
            meter: Some(meter),
            ..options
        });
        let bulk = count > 1 || args.count.is_some();
        // (succeeded, text summary, JSON report) or the failure that ended it all.
        let outcome = if bulk {
            uploader
                .upload_many(&args.file, &args.url, concurrency, count)
                .await
                .map(|s| (s.failed == 0, s.to_string(), s.json()))
                .map_err(|error| {
                    Box::new(FailedUpload::before_start(
                        args.file.clone(),
                        args.url.clone(),
                        error,
                    ))
                })
        } else {
            uploader
                .upload_reporting(&args.file, &args.url)
                .await
                .map(|s| (true, s.to_string(), s.json()))
        };
        if let Some(t) = ticker {
            t.finish().await;
        }
        let (ok, text, json) = match outcome {
            Ok(done) => done,
            Err(failed) => {
                if args.json {
                    println!("{}", failed.json());
                }
                eprintln!("error: {}", failed.error);
                return match failed.error {
                    UploadError::Usage(_) => ExitCode::from(2),
                    _ => ExitCode::FAILURE,
                };
            }
        };
        if args.json {
            println!("{json}");
        } else if !args.quiet || !ok {
            println!("{}", text.trim_end());
        }
        if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    })
}

/// `bitsmock journal`: the whole file with columns fitted to it, or, with `--follow`, rows
/// as lines arrive (fixed columns, since later rows are not known yet).
fn journal(args: JournalArgs) -> ExitCode {
    let shown = args.file.display().to_string();
    let filter = Filter {
        session: args.session,
        faults: args.faults,
        packet: args.packet,
    };
    let result = if args.follow {
        follow(&args.file, &filter)
    } else {
        std::fs::read(&args.file).and_then(|bytes| {
            let mut out = std::io::stdout().lock();
            for line in journal_view::view(&journal_view::read(&bytes), &filter) {
                writeln!(out, "{line}")?;
            }
            out.flush()
        })
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // `bitsmock journal FILE | head` closing the pipe early is not a failure.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {shown}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// How long `--follow` sleeps when it has read everything: short enough to feel live,
/// long enough to cost nothing.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// Like `tail -f`: reads what is there, then polls for more until a `stopped` event.
fn follow(path: &std::path::Path, filter: &Filter) -> std::io::Result<()> {
    use std::io::{Read, Seek};
    let mut file = std::fs::File::open(path)?;
    let layout = Layout::streaming();
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", layout.heading())?;
    out.flush()?;
    let mut lines = Lines::default();
    let mut read_so_far = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            // A new server on the same path truncates the file: start over, as `tail -F` does.
            if file.metadata()?.len() < read_so_far {
                file.seek(std::io::SeekFrom::Start(0))?;
                read_so_far = 0;
                lines = Lines::default();
                writeln!(
                    out,
                    "-- {} was truncated; reading it from the start",
                    path.display()
                )?;
                out.flush()?;
                continue;
            }
            std::thread::sleep(FOLLOW_POLL);
            continue;
        }
        read_so_far += n as u64;
        for entry in lines.push(&buf[..n]) {
            if filter.keeps(&entry) {
                writeln!(out, "{}", layout.show(&journal_view::row(&entry)))?;
            }
            if entry.is_stopped() {
                return out.flush();
            }
        }
        out.flush()?;
    }
}

/// `verdict`: reads a journal file, judges it, prints the report.
fn verdict(args: &VerdictArgs) -> ExitCode {
    use bitsmock::verdict::{self, Options, Source, report};
    let bytes = match std::fs::read(&args.file) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", args.file.display());
            return ExitCode::from(2);
        }
    };
    let mut values = Vec::new();
    for entry in journal_view::read(&bytes) {
        match entry.event {
            Ok(map) => values.push(serde_json::Value::Object(map)),
            Err(why) => eprintln!(
                "warning: {}:{}: skipped: {why}",
                args.file.display(),
                entry.line
            ),
        }
    }
    let mut options = Options {
        backoff_floor: args.backoff_floor,
        ..Options::default()
    };
    if let Some(path) = &args.source {
        let source = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("error: cannot read --source {}: {e}", path.display());
                return ExitCode::from(2);
            }
        };
        options.source = Some(Source {
            size: source.len() as u64,
            sha256: bitsmock::exercise::sha256_hex(&source),
        });
    }
    let events = verdict::input::read(&values);
    if let Some(dir) = &args.dir {
        for e in &events {
            if let verdict::input::Seen::Committed { path, .. } = e
                && let Ok(bytes) = std::fs::read(dir.join(path))
            {
                options
                    .stored
                    .insert(path.clone(), bitsmock::exercise::sha256_hex(&bytes));
            }
        }
    }
    let v = verdict::judge(&events, &options);
    if args.source.is_some() && v.outcome("upload-intact").is_some_and(|o| o.judged == 0) {
        eprintln!(
            "note: upload-intact could not compare: the journal carries no digest of the committed \
             file (serve --sha256) and no --dir ROOT was given to read it back"
        );
    }
    let name = args.file.display().to_string();
    let passed = v.passed();
    let run = || report::Run {
        name: name.clone(),
        verdict: v.clone(),
        problems: Vec::new(),
        events: events.clone(),
    };
    match args.format.as_str() {
        "json" => println!("{:#}", report::json(&v)),
        "junit" => print!("{}", report::junit(&[run()])),
        "html" => print!(
            "{}",
            report::html(&format!("bitsmock verdict: {name}"), &[run()])
        ),
        _ => print!("{}", report::text(&v)),
    }
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `exercise`: every profile × seed, a matrix at the end, reports in the report directory.
fn exercise(args: ExerciseArgs) -> ExitCode {
    let profiles = if args.profiles.is_empty() {
        shipped::SHIPPED
            .iter()
            .map(|(n, _)| (*n).to_owned())
            .collect()
    } else {
        args.profiles
    };
    let plan = bitsmock::exercise::Plan {
        profiles,
        seeds: args.replay.map_or(args.seeds, |seed| vec![seed]),
        jobs: args.jobs as usize,
        max_findings: args.max_findings.map(|n| n as usize),
        crash_exit_codes: args.crash_exit_codes,
        suppress: Vec::new(),
        size: args.size,
        client: Options {
            fragment_size: args.fragment_size,
            ..Options::default()
        },
        timeout: args.timeout,
        report_dir: args.report_dir,
        command: args.command,
        options: bitsmock::verdict::Options {
            backoff_floor: args.backoff_floor,
            ..bitsmock::verdict::Options::default()
        },
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let minimise = args.minimise;
    let result = runtime.block_on(async {
        let outcome = bitsmock::exercise::run(&plan, |line| eprintln!("{line}")).await?;
        let mut minimised = Vec::new();
        if minimise {
            for cell in outcome.findings() {
                eprintln!(
                    "minimising {} seed {} ({}, {} mutations) …",
                    cell.profile,
                    cell.seed,
                    cell.class.name(),
                    cell.mutations.len()
                );
                let m = bitsmock::exercise::minimise(&plan, cell, |l| eprintln!("  {l}")).await?;
                minimised.push((cell.profile.clone(), cell.seed, m));
            }
        }
        Ok::<_, String>((outcome, minimised))
    });
    let (outcome, minimised) = match result {
        Ok(done) => done,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    print!("{}", outcome.matrix());
    for cell in outcome.findings() {
        println!(
            "\nfinding: {} seed {}: {} (client: {})",
            cell.profile,
            cell.seed,
            cell.class.name(),
            cell.exit
        );
        for p in &cell.run.problems {
            println!("  - {p}");
        }
        for o in cell.run.verdict.failed(bitsmock::verdict::Severity::Error) {
            for f in o.findings.iter().take(3) {
                let who = f
                    .session
                    .as_deref()
                    .map(|s| format!("{s}: "))
                    .unwrap_or_default();
                println!("  - {}: {who}{}", o.check, f.message);
            }
        }
        match cell.mutations.last() {
            Some(m) => println!(
                "  last mutation ({} in all): {} [event {}]",
                cell.mutations.len(),
                m.description,
                m.seq
            ),
            None => println!("  no mutation in this run"),
        }
        println!(
            "  replay: {}",
            plan.replay_command(&cell.profile, cell.seed)
        );
    }
    for (profile, seed, m) in &minimised {
        println!(
            "\nminimised {profile} seed {seed} ({}): {} of {} mutations still needed ({} runs):",
            m.class.name(),
            m.kept.len(),
            m.of,
            m.runs
        );
        for k in &m.kept {
            println!("  - {} [event {}]", k.description, k.seq);
        }
    }
    println!(
        "\nreports: {}/{{verdict.json,junit.xml,report.html}} (journals in runs/)",
        outcome.report_dir.display()
    );
    if outcome.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
