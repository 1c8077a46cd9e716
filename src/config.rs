//! The validated server configuration and the one merge that builds it.
//!
//! Three sources give [`Settings`]: the defaults ([`Config::default`]), a profile's `[server]`
//! table (plus its `seed` and rules), and `bitsmock serve` flags. [`Config::from_parts`]
//! layers them — defaults < profile < flags — and checks the result, so after it nothing needs
//! re-checking. Every source runs the same checks ([`check`]) and parses enum names through
//! the same tables ([`OVERLAP`], [`ERROR_HEADER`]); a source checks at its own boundary too,
//! so that its errors can say where the bad value was (a flag, or `FILE:LINE`).

use crate::fault::{Profile, Rule, profile, shipped};
use crate::notify::{AppUrl, Application, Mode, Notifications, ReplyUrl};
use crate::proto::{ContentLength, ErrorHeader, Overlap, Vdir, destination};
use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Everything a running server needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where `bitsmock serve` binds (the library entry point takes a bound listener instead).
    pub listen: SocketAddr,
    /// Upload root: committed files land here, temp files under `BITS-Sessions/`.
    pub root: PathBuf,
    /// Seed for every fault decision. Session ids never come from it: they are drawn from the OS.
    pub seed: u64,
    /// Protocol settings.
    pub vdir: Vdir,
    /// Longest wait for a request's headers, including an idle keep-alive connection.
    pub header_read_timeout: Duration,
    /// Longest stall while reading a fragment body before the connection is dropped.
    pub body_read_timeout: Duration,
    /// Read buffer size, which bounds the size of a request head.
    pub max_head_bytes: usize,
    /// Hash every upload as it streams in, so each `committed` event carries its SHA-256.
    /// Off by default: on a small machine SHA-256 runs about as fast as the whole upload
    /// path and would cost a third of the throughput (benches/README.md). Upload-reply
    /// sessions are hashed either way (their reply names the digest).
    pub sha256: bool,
    /// Fault rules, in order (from a profile and/or `--fault`); empty = a correct server.
    pub rules: Vec<Rule>,
    /// Firings to leave out although their rule matches (`exercise --minimise` replays a run
    /// without some of its mutations); empty in normal use.
    pub suppress: Vec<crate::fault::FiringKey>,
    /// Multiplies every duration in the rules (delays, hangs, windows, idle timeouts).
    pub time_scale: f64,
    /// The profile the rules came from, for the start banner and logs.
    pub profile_name: Option<String>,
    /// Write every event to this file as NDJSON (docs/journal.md).
    pub journal: Option<PathBuf>,
    /// Events kept in memory for the control API, `MockServer` and verdicts.
    pub journal_keep: usize,
    /// Add `X-Bitsmock-Fault` to answers a fault shaped (it changes the wire, so off by
    /// default).
    pub mark_faults: bool,
    /// Where the control API (docs/admin-api.md) listens; `None` = no control API.
    /// [`crate::spawn`] binds it; port 0 picks a free one.
    pub admin: Option<SocketAddr>,
    /// The bearer token every control API request must carry. Without one, only loopback
    /// peers are served.
    pub admin_token: Option<AdminToken>,
    /// The `Server` (and `Pragma`) headers on every answer.
    pub server_header: ServerHeader,
    /// Serve HTTPS with this certificate; `None` = plain HTTP only.
    pub tls: Option<TlsSource>,
    /// `--tls`: the `listen` address speaks HTTPS (needs `tls`).
    pub listen_tls: bool,
    /// `--tls-listen`: an HTTPS listener beside `listen` (needs `tls`). [`crate::spawn`]
    /// binds it; port 0 picks a free one.
    pub tls_listen: Option<SocketAddr>,
    /// `--farm N`: [`crate::spawn`] binds N member listeners on the `listen` address's IP
    /// (free ports) and fills in [`Vdir::farm`].
    pub farm: Option<FarmSize>,
    /// Server applications notified of finished upload-reply jobs (`--notify`); their
    /// prefixes are mirrored in [`Vdir::notify_prefixes`].
    pub notify: Notifications,
}

/// One `--notify` application as a source gives it, before the merge resolves its prefix
/// and mode.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifyRoute {
    /// URL prefix of the destinations it answers; `None` = the whole reply path.
    pub path: Option<String>,
    pub url: AppUrl,
    /// `None` = the `notify-type` setting.
    pub mode: Option<Mode>,
}

/// How many members a farm has, and whether they share one store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FarmSize {
    pub members: u32,
    pub shared: bool,
}

/// Where the server's TLS certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TlsSource {
    /// A fresh local CA and a certificate for `localhost`, `127.0.0.1` and `::1` signed by
    /// it, made at start; the CA goes to `DIR/BITS-Sessions/tls/ca.pem`.
    #[default]
    Generated,
    /// `--tls-cert FILE --tls-key FILE`: a PEM chain (leaf first) and its private key.
    Files { cert: PathBuf, key: PathBuf },
}

/// Which `Server` header answers carry (`--server-header`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServerHeader {
    /// `Server: Microsoft-IIS/10.0` and `Pragma: no-cache`, as IIS sends them.
    #[default]
    Iis,
    /// `Server: bitsmock/VERSION`.
    Bitsmock,
    /// Neither header.
    Omitted,
}

/// The control API's bearer token. Its own type so that `Debug` (of a [`Config`], in a log or
/// a panic message) never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl AdminToken {
    pub fn new(token: impl Into<String>) -> AdminToken {
        AdminToken(token.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

impl From<&str> for AdminToken {
    fn from(token: &str) -> AdminToken {
        AdminToken::new(token)
    }
}

impl From<String> for AdminToken {
    fn from(token: String) -> AdminToken {
        AdminToken::new(token)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            root: PathBuf::from("uploads"),
            // Fixed, unlike the merge's random default: library users and tests stay
            // reproducible without asking.
            seed: 0,
            vdir: Vdir::default(),
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(60),
            max_head_bytes: 64 * 1024,
            sha256: false,
            rules: Vec::new(),
            suppress: Vec::new(),
            time_scale: 1.0,
            profile_name: None,
            journal: None,
            journal_keep: crate::journal::KEPT,
            mark_faults: false,
            admin: None,
            admin_token: None,
            server_header: ServerHeader::Iis,
            tls: None,
            listen_tls: false,
            tls_listen: None,
            farm: None,
            notify: Notifications::default(),
        }
    }
}

impl Config {
    /// The settings as JSON, for the journal's first line and the control API's `/config`.
    pub fn summary(&self) -> serde_json::Value {
        let ms = |d: Duration| d.as_millis() as u64;
        let reply_path = if self.vdir.reply_prefix.is_empty() {
            String::new()
        } else {
            format!("/{}/", self.vdir.reply_prefix.join("/"))
        };
        serde_json::json!({
            "listen": self.listen.to_string(),
            "root": self.root.display().to_string(),
            "seed": self.seed,
            "time_scale": self.time_scale,
            "profile": self.profile_name,
            "max_upload_size": self.vdir.max_upload_size,
            "max_fragment_size": self.vdir.max_fragment_size,
            "max_sessions": self.vdir.max_sessions,
            "session_timeout_ms": ms(self.vdir.session_timeout),
            "allow_overwrites": self.vdir.allow_overwrites,
            "reply_path": reply_path,
            "host_id": self.vdir.host_id,
            "host_id_fallback_timeout": self.vdir.host_id_fallback_timeout,
            "overlap": OVERLAP.name(self.vdir.overlap),
            "error_header": ERROR_HEADER.name(self.vdir.error_header),
            "header_timeout_ms": ms(self.header_read_timeout),
            "body_timeout_ms": ms(self.body_read_timeout),
            "max_head_bytes": self.max_head_bytes,
            "sha256": self.sha256,
            "mark_faults": self.mark_faults,
            "journal_keep": self.journal_keep,
            "content_length": CONTENT_LENGTH.name(self.vdir.content_length),
            "remember_closed_ms": self.vdir.remember_closed.map(ms),
            "server_header": SERVER_HEADER.name(self.server_header),
            "tls": match &self.tls {
                None => serde_json::Value::Null,
                Some(TlsSource::Generated) => "generated".into(),
                Some(TlsSource::Files { cert, .. }) => cert.display().to_string().into(),
            },
            "listen_tls": self.listen_tls,
            "tls_listen": self.tls_listen.map(|a| a.to_string()),
            "farm": self.vdir.farm.as_ref().map(|f| serde_json::json!({
                "members": f.members,
                "shared": f.shared,
            })),
            "notify": self.notify.applications.iter().map(|a| serde_json::json!({
                "path": format!("/{}/", a.prefix.join("/")),
                "url": a.url.to_string(),
                "type": NOTIFY_TYPE.name(a.mode),
            })).collect::<Vec<_>>(),
            "notify_timeout_ms": ms(self.notify.timeout),
            "notify_max_reply": self.notify.max_reply,
            "notify_reply_url": NOTIFY_REPLY_URL.name(self.notify.reply_url),
        })
    }
}

/// What one source (flags, a profile) says about the configuration; `None` = "not given".
///
/// A profile's `[server]` table sets only the server knobs (never `listen`, `root`, `seed`
/// or `time_scale`, and its rules live in [`Profile::rules`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    pub listen: Option<SocketAddr>,
    pub root: Option<PathBuf>,
    pub seed: Option<u64>,
    pub time_scale: Option<f64>,
    pub max_upload_size: Option<u64>,
    pub max_fragment_size: Option<u64>,
    pub max_sessions: Option<usize>,
    pub session_timeout: Option<Duration>,
    pub allow_overwrites: Option<bool>,
    /// Keep the SHA-256 of every upload (for the `committed` event).
    pub sha256: Option<bool>,
    /// URL prefix of upload-reply destinations; `""` = none.
    pub reply_path: Option<String>,
    pub host_id: Option<String>,
    pub host_id_fallback_timeout: Option<u64>,
    pub overlap: Option<Overlap>,
    pub error_header: Option<ErrorHeader>,
    pub header_read_timeout: Option<Duration>,
    pub body_read_timeout: Option<Duration>,
    pub content_length: Option<ContentLength>,
    pub remember_closed: Option<Duration>,
    pub server_header: Option<ServerHeader>,
    /// `--notify` / `notify =`: the server applications; `None` = not given.
    pub notify: Option<Vec<NotifyRoute>>,
    pub notify_type: Option<Mode>,
    pub notify_timeout: Option<Duration>,
    pub notify_max_reply: Option<u64>,
    pub notify_reply_url: Option<ReplyUrl>,
    /// Rules; unlike the other fields they add up: [`Settings::over`] puts these after the
    /// lower layer's.
    pub rules: Vec<Rule>,
}

impl Settings {
    /// `self` layered over `lower`: each setting `self` gives wins; rules are `lower`'s, then
    /// `self`'s.
    pub fn over(self, lower: Settings) -> Settings {
        let mut rules = lower.rules;
        rules.extend(self.rules);
        Settings {
            listen: self.listen.or(lower.listen),
            root: self.root.or(lower.root),
            seed: self.seed.or(lower.seed),
            time_scale: self.time_scale.or(lower.time_scale),
            max_upload_size: self.max_upload_size.or(lower.max_upload_size),
            max_fragment_size: self.max_fragment_size.or(lower.max_fragment_size),
            max_sessions: self.max_sessions.or(lower.max_sessions),
            session_timeout: self.session_timeout.or(lower.session_timeout),
            allow_overwrites: self.allow_overwrites.or(lower.allow_overwrites),
            sha256: self.sha256.or(lower.sha256),
            reply_path: self.reply_path.or(lower.reply_path),
            host_id: self.host_id.or(lower.host_id),
            host_id_fallback_timeout: self
                .host_id_fallback_timeout
                .or(lower.host_id_fallback_timeout),
            overlap: self.overlap.or(lower.overlap),
            error_header: self.error_header.or(lower.error_header),
            header_read_timeout: self.header_read_timeout.or(lower.header_read_timeout),
            body_read_timeout: self.body_read_timeout.or(lower.body_read_timeout),
            content_length: self.content_length.or(lower.content_length),
            remember_closed: self.remember_closed.or(lower.remember_closed),
            server_header: self.server_header.or(lower.server_header),
            notify: self.notify.or(lower.notify),
            notify_type: self.notify_type.or(lower.notify_type),
            notify_timeout: self.notify_timeout.or(lower.notify_timeout),
            notify_max_reply: self.notify_max_reply.or(lower.notify_max_reply),
            notify_reply_url: self.notify_reply_url.or(lower.notify_reply_url),
            rules,
        }
    }

    /// What a profile contributes: its `[server]` table, its seed and its rules.
    pub fn from_profile(profile: &Profile) -> Settings {
        Settings {
            seed: profile.seed,
            rules: profile.rules.clone(),
            ..profile.server.clone()
        }
    }

    /// Runs [`check`] over every setting given, so hand-built settings cannot slip past.
    pub fn check(&self) -> Result<(), ConfigError> {
        fn given<T: Clone>(
            key: &'static str,
            value: &Option<T>,
            check: fn(T) -> Result<T, String>,
        ) -> Result<(), ConfigError> {
            match value.clone().map(check) {
                Some(Err(message)) => Err(ConfigError::Invalid { key, message }),
                _ => Ok(()),
            }
        }
        given(
            "max-fragment-size",
            &self.max_fragment_size,
            check::max_fragment_size,
        )?;
        given("max-sessions", &self.max_sessions, check::max_sessions)?;
        given(
            "session-timeout",
            &self.session_timeout,
            check::session_timeout,
        )?;
        given("host-id", &self.host_id, check::host_id)?;
        given("time-scale", &self.time_scale, check::time_scale)?;
        given("header-timeout", &self.header_read_timeout, check::timeout)?;
        given("body-timeout", &self.body_read_timeout, check::timeout)?;
        given("remember-closed", &self.remember_closed, check::timeout)?;
        given("notify-timeout", &self.notify_timeout, check::timeout)?;
        Ok(())
    }
}

/// A merged configuration that does not hold together.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// `key` is the setting's profile spelling (the flag without `--`).
    #[error("`{key}` {message}")]
    Invalid { key: &'static str, message: String },
}

/// `BITS-Host-Id-Fallback-Timeout` sent with a host id when no source gives one (one day).
const DEFAULT_HOST_ID_FALLBACK: u64 = 86_400;

impl Config {
    /// The one merge: the defaults, under the profile (its `[server]` table, seed and rules),
    /// under `flags`. A seed that no layer gives is drawn from the OS, and printed by the CLI
    /// so the run can be replayed with `--seed`.
    pub fn from_parts(profile: Option<&Profile>, flags: Settings) -> Result<Config, ConfigError> {
        let lower = profile.map(Settings::from_profile).unwrap_or_default();
        let s = flags.over(lower);
        s.check()?;
        let defaults = Config::default();
        let vdir = Vdir::default();
        // Given alone it waits for a farm (`--farm`), whose Create Acks carry it too.
        let host_id_fallback_timeout = s
            .host_id_fallback_timeout
            .or(s.host_id.as_ref().map(|_| DEFAULT_HOST_ID_FALLBACK));
        let reply_prefix = s
            .reply_path
            .as_deref()
            .map_or(vdir.reply_prefix, destination::prefix_segments);
        let notify = notifications(&s, &reply_prefix)?;
        Ok(Config {
            listen: s.listen.unwrap_or(defaults.listen),
            root: s.root.unwrap_or(defaults.root),
            seed: s.seed.unwrap_or_else(rand::random),
            vdir: Vdir {
                max_upload_size: s.max_upload_size.or(vdir.max_upload_size),
                max_fragment_size: s.max_fragment_size.unwrap_or(vdir.max_fragment_size),
                session_timeout: s.session_timeout.unwrap_or(vdir.session_timeout),
                allow_overwrites: s.allow_overwrites.unwrap_or(vdir.allow_overwrites),
                notify_prefixes: notify.prefixes(),
                reply_prefix,
                host_id: s.host_id,
                host_id_fallback_timeout,
                overlap: s.overlap.unwrap_or(vdir.overlap),
                error_header: s.error_header.unwrap_or(vdir.error_header),
                max_sessions: s.max_sessions.unwrap_or(vdir.max_sessions),
                content_length: s.content_length.unwrap_or(vdir.content_length),
                remember_closed: s.remember_closed.or(vdir.remember_closed),
                // Member addresses exist once their listeners are bound ([`crate::spawn`]).
                farm: None,
            },
            header_read_timeout: s
                .header_read_timeout
                .unwrap_or(defaults.header_read_timeout),
            body_read_timeout: s.body_read_timeout.unwrap_or(defaults.body_read_timeout),
            max_head_bytes: defaults.max_head_bytes,
            sha256: s.sha256.unwrap_or(defaults.sha256),
            rules: s.rules,
            suppress: Vec::new(),
            time_scale: s.time_scale.unwrap_or(defaults.time_scale),
            profile_name: profile.map(|p| p.name.clone()),
            journal: None,
            journal_keep: crate::journal::KEPT,
            mark_faults: false,
            admin: None,
            admin_token: None,
            server_header: s.server_header.unwrap_or(defaults.server_header),
            tls: None,
            listen_tls: false,
            tls_listen: None,
            farm: None,
            notify,
        })
    }
}

/// The applications of the merged settings: each route's prefix (the reply path when it
/// names none) must lie inside the reply path, since only upload-reply jobs are notified.
fn notifications(s: &Settings, reply_prefix: &[String]) -> Result<Notifications, ConfigError> {
    let defaults = Notifications::default();
    let mut applications = Vec::new();
    for route in s.notify.iter().flatten() {
        let prefix = route
            .path
            .as_deref()
            .map_or_else(|| reply_prefix.to_vec(), destination::prefix_segments);
        if reply_prefix.is_empty() || !prefix.starts_with(reply_prefix) {
            return Err(ConfigError::Invalid {
                key: "notify",
                message: format!(
                    "path /{}/ is outside the reply path (`reply-path`): only upload-reply jobs are notified",
                    prefix.join("/")
                ),
            });
        }
        applications.push(Application {
            prefix,
            url: route.url.clone(),
            mode: route.mode.or(s.notify_type).unwrap_or(Mode::Value),
        });
    }
    Ok(Notifications {
        applications,
        timeout: s.notify_timeout.unwrap_or(defaults.timeout),
        max_reply: s.notify_max_reply.unwrap_or(defaults.max_reply),
        reply_url: s.notify_reply_url.unwrap_or(defaults.reply_url),
    })
}

/// The checks of single settings. Each returns the value it accepts, or what is wrong with it
/// as a phrase to put after the setting's name ("must be at least 1 byte").
pub mod check {
    use std::time::Duration;

    pub fn max_fragment_size(bytes: u64) -> Result<u64, String> {
        if bytes == 0 {
            return Err("must be at least 1 byte".into());
        }
        Ok(bytes)
    }

    /// Zero would refuse every upload.
    pub fn max_sessions(sessions: usize) -> Result<usize, String> {
        if sessions == 0 {
            return Err("must be at least 1".into());
        }
        Ok(sessions)
    }

    pub fn session_timeout(idle: Duration) -> Result<Duration, String> {
        timeout(idle)
    }

    /// Header and body read timeouts: zero would drop every connection at once.
    pub fn timeout(limit: Duration) -> Result<Duration, String> {
        if limit.is_zero() {
            return Err("must be longer than zero".into());
        }
        Ok(limit)
    }

    /// Sent verbatim as a header value, so it must be one.
    pub fn host_id(host: String) -> Result<String, String> {
        if host.is_empty() || host.len() > 300 || !host.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("must be a host name or address of at most 300 characters".into());
        }
        Ok(host)
    }

    pub fn time_scale(factor: f64) -> Result<f64, String> {
        if !factor.is_finite() || factor < 0.0 {
            return Err("must be a number of at least 0".into());
        }
        Ok(factor)
    }
}

/// One name table per enum: it parses flags and profile values, words their errors, and
/// lists the choices in `--help`, so the three cannot drift apart.
#[derive(Debug)]
pub struct Names<T: 'static>(&'static [(&'static str, T)]);

impl<T: Copy + PartialEq> Names<T> {
    /// The value named `text` (exact spelling), or what is wrong as a phrase to put after the
    /// setting's name.
    pub fn parse(&self, text: &str) -> Result<T, String> {
        self.0
            .iter()
            .find(|(name, _)| *name == text)
            .map(|(_, value)| *value)
            .ok_or_else(|| format!("must be {}, not {text:?}", self.choices()))
    }

    pub fn name(&self, value: T) -> &'static str {
        self.0
            .iter()
            .find(|(_, v)| *v == value)
            .map_or("?", |(name, _)| name)
    }

    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.0.iter().map(|(name, _)| *name)
    }

    /// `"tail" or "strict"`, `"code", "spec" or "both"`.
    pub fn choices(&self) -> String {
        let quoted: Vec<String> = self.names().map(|n| format!("{n:?}")).collect();
        match quoted.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        }
    }
}

/// `--overlap` / `overlap =`.
pub const OVERLAP: Names<Overlap> = Names(&[("tail", Overlap::Tail), ("strict", Overlap::Strict)]);

/// `--notify-type` / `notify-type =`.
pub const NOTIFY_TYPE: Names<crate::notify::Mode> = Names(&[
    ("reference", crate::notify::Mode::Reference),
    ("value", crate::notify::Mode::Value),
]);

/// `--notify-reply-url` / `notify-reply-url =`.
pub const NOTIFY_REPLY_URL: Names<crate::notify::ReplyUrl> = Names(&[
    ("absolute", crate::notify::ReplyUrl::Absolute),
    ("relative", crate::notify::ReplyUrl::Relative),
]);

/// `--error-header` / `error-header =`.
pub const ERROR_HEADER: Names<ErrorHeader> = Names(&[
    ("code", ErrorHeader::Code),
    ("spec", ErrorHeader::Spec),
    ("both", ErrorHeader::Both),
]);

/// `--content-length` / `content-length =`.
pub const CONTENT_LENGTH: Names<ContentLength> = Names(&[
    ("required", ContentLength::Required),
    ("optional", ContentLength::Optional),
]);

/// `--server-header` / `server-header =`.
pub const SERVER_HEADER: Names<ServerHeader> = Names(&[
    ("iis", ServerHeader::Iis),
    ("bitsmock", ServerHeader::Bitsmock),
    ("none", ServerHeader::Omitted),
]);

/// What `--listen` accepts, for its error message.
pub const LISTEN_FORMS: &str =
    "PORT, :PORT, localhost:PORT, IPV4:PORT or [IPV6]:PORT (e.g. :0 for a free port)";

/// Parses `--listen`: a full socket address, or a port alone (`8080`, `:8080`) or with
/// `localhost`, both meaning 127.0.0.1 — loopback, because a mock server should not be
/// reachable from the network unless asked. No name lookup happens.
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let port = |p: &str| p.parse::<u16>().ok();
    let t = text.trim();
    let parsed = if let Some(p) = port(t) {
        Some(SocketAddr::new(loopback, p))
    } else if let Some(p) = t.strip_prefix(':').and_then(port) {
        Some(SocketAddr::new(loopback, p))
    } else if let Some((host, p)) = t.rsplit_once(':')
        && host.eq_ignore_ascii_case("localhost")
    {
        port(p).map(|p| SocketAddr::new(loopback, p))
    } else {
        t.parse().ok()
    };
    parsed.ok_or_else(|| format!("{text:?} is not an address; use {LISTEN_FORMS}"))
}

/// Loads `--profile NAME|FILE`: an existing file wins, otherwise a shipped name.
pub fn load_profile(name_or_path: &str) -> Result<Profile, String> {
    let (origin, text) = read_profile(name_or_path)?;
    profile::parse(&text, &origin).map_err(|e| e.to_string())
}

/// The text `--profile NAME|FILE` would load and the origin its errors name, unparsed, for
/// `bitsmock profile show`: a shipped profile comes back byte for byte as shipped, so it can
/// be saved to a file, edited and loaded again.
pub fn read_profile(name_or_path: &str) -> Result<(String, Cow<'static, str>), String> {
    let path = std::path::Path::new(name_or_path);
    if path.is_file() {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{name_or_path}: cannot read: {e}"))?;
        return Ok((name_or_path.to_owned(), Cow::Owned(text)));
    }
    match shipped::text(name_or_path) {
        Some((origin, text)) => Ok((origin, Cow::Borrowed(text))),
        None => Err(shipped::unknown(name_or_path)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_file_wins_over_a_shipped_name_and_unknown_names_list_the_shipped_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lost-acks");
        std::fs::write(&path, "name = \"mine\"\ndescription = \"d\"\n").unwrap();
        let shown = path.display().to_string();
        assert_eq!(load_profile(&shown).unwrap().name, "mine");
        let (origin, text) = read_profile("lost-acks").unwrap();
        assert_eq!(origin, "profiles/lost-acks.toml");
        assert!(text.starts_with("# lost-acks"));
        let e = read_profile("no-such-profile").unwrap_err();
        assert!(e.contains("flaky-wifi"), "{e}");
        let e = load_profile(&dir.path().join("none.toml").display().to_string()).unwrap_err();
        assert!(e.contains("not a shipped profile"), "{e}");
    }
    use crate::fault::profile;

    fn profile(server: &str) -> Profile {
        profile::parse(
            &format!("name = \"p\"\ndescription = \"d\"\nseed = 5\n[server]\n{server}\n[[rule]]\nfault = \"refuse\"\n"),
            "p.toml",
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn flags_win_over_the_profile_which_wins_over_the_defaults() {
        let p = profile(
            "max-fragment-size = \"1MiB\"\nsession-timeout = \"10m\"\noverlap = \"strict\"",
        );
        let flags = Settings {
            session_timeout: Some(Duration::from_secs(5)),
            seed: Some(9),
            ..Settings::default()
        };
        let c = Config::from_parts(Some(&p), flags).unwrap();
        assert_eq!(c.vdir.max_fragment_size, 1 << 20);
        assert_eq!(c.vdir.session_timeout, Duration::from_secs(5));
        assert_eq!(c.vdir.overlap, Overlap::Strict);
        assert_eq!(c.vdir.error_header, ErrorHeader::Code);
        assert_eq!(c.seed, 9);
        assert_eq!(c.header_read_timeout, Config::default().header_read_timeout);
        assert_eq!(c.profile_name.as_deref(), Some("p"));
    }

    #[test]
    fn notify_applications_come_per_prefix_from_the_profile_or_one_from_the_flag() {
        let p = profile(
            "reply-path = \"/r/\"\nnotify-type = \"reference\"\nnotify-timeout = \"30s\"\nnotify-max-reply = \"1MiB\"\nnotify-reply-url = \"relative\"\nnotify = { \"/r/orders/\" = \"http://127.0.0.1:9001/o\", \"/r/big/\" = { url = \"http://127.0.0.1:9002/\", type = \"value\" } }",
        );
        let c = Config::from_parts(Some(&p), Settings::default()).unwrap();
        let apps: Vec<(String, u16, Mode)> = c
            .notify
            .applications
            .iter()
            .map(|a| (a.prefix.join("/"), a.url.port, a.mode))
            .collect();
        assert_eq!(
            apps,
            vec![
                ("r/big".into(), 9002, Mode::Value),
                ("r/orders".into(), 9001, Mode::Reference),
            ]
        );
        assert_eq!(c.vdir.notify_prefixes, c.notify.prefixes());
        assert_eq!(c.notify.timeout, Duration::from_secs(30));
        assert_eq!(c.notify.max_reply, 1 << 20);
        assert_eq!(c.notify.reply_url, ReplyUrl::Relative);
        // A flag's application replaces the profile's, for the whole reply path.
        let flags = Settings {
            notify: Some(vec![NotifyRoute {
                path: None,
                url: AppUrl::parse("http://127.0.0.1:9/").unwrap(),
                mode: None,
            }]),
            ..Settings::default()
        };
        let c = Config::from_parts(Some(&p), flags).unwrap();
        assert_eq!(c.notify.applications.len(), 1);
        assert_eq!(c.notify.applications[0].prefix, vec!["r".to_owned()]);
        assert_eq!(c.notify.applications[0].mode, Mode::Reference);
        // No type anywhere: by value. No notify at all: none, and the core notifies nothing.
        let c = Config::from_parts(
            None,
            Settings {
                notify: Some(vec![NotifyRoute {
                    path: None,
                    url: AppUrl::parse("http://a/").unwrap(),
                    mode: None,
                }]),
                ..Settings::default()
            },
        )
        .unwrap();
        assert_eq!(c.notify.applications[0].mode, Mode::Value);
        let c = Config::from_parts(None, Settings::default()).unwrap();
        assert!(c.notify.applications.is_empty() && c.vdir.notify_prefixes.is_empty());
    }

    #[test]
    fn a_notify_prefix_outside_the_reply_path_is_refused() {
        let p = profile("notify = { \"/drop/\" = \"http://a/\" }");
        let e = Config::from_parts(Some(&p), Settings::default()).unwrap_err();
        assert!(e.to_string().contains("outside the reply path"), "{e}");
        let p = profile("reply-path = \"\"\nnotify = \"http://a/\"");
        assert!(Config::from_parts(Some(&p), Settings::default()).is_err());
    }

    #[test]
    fn flag_rules_run_after_the_profile_rules() {
        let p = profile("");
        let extra = profile::parse_rule_line("fault=delay delay=1ms", "--fault", 1).unwrap();
        let flags = Settings {
            rules: vec![extra.clone()],
            ..Settings::default()
        };
        let c = Config::from_parts(Some(&p), flags).unwrap();
        assert_eq!(c.rules.len(), 2);
        assert_eq!(c.rules[1], extra);
    }

    #[test]
    fn the_profile_seed_is_kept_and_a_missing_one_is_drawn() {
        let c = Config::from_parts(Some(&profile("")), Settings::default()).unwrap();
        assert_eq!(c.seed, 5);
        // Two draws of 64 bits agreeing would be a broken generator, not bad luck.
        let a = Config::from_parts(None, Settings::default()).unwrap().seed;
        let b = Config::from_parts(None, Settings::default()).unwrap().seed;
        assert_ne!(a, b);
        assert_eq!(Config::default().seed, 0);
    }

    #[test]
    fn hand_built_settings_are_checked_too() {
        let bad = Settings {
            max_fragment_size: Some(0),
            ..Settings::default()
        };
        let e = Config::from_parts(None, bad).unwrap_err();
        assert_eq!(e.to_string(), "`max-fragment-size` must be at least 1 byte");
        let bad = Settings {
            time_scale: Some(f64::NAN),
            ..Settings::default()
        };
        assert!(Config::from_parts(None, bad).is_err());
    }

    #[test]
    fn the_admin_token_never_shows_in_debug_output() {
        let config = Config {
            admin_token: Some(AdminToken::from("s3cret")),
            ..Config::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("AdminToken(<redacted>)"), "{shown}");
        assert_eq!(
            config.admin_token.map(|t| t.as_str().to_owned()),
            Some("s3cret".into())
        );
    }

    #[test]
    fn a_host_id_brings_its_fallback_timeout() {
        let flags = Settings {
            host_id: Some("node1".into()),
            ..Settings::default()
        };
        let c = Config::from_parts(None, flags).unwrap();
        assert_eq!(c.vdir.host_id_fallback_timeout, Some(86_400));
        let c = Config::from_parts(None, Settings::default()).unwrap();
        assert_eq!(c.vdir.host_id_fallback_timeout, None);
        // Given alone, it is kept for a farm's Create Acks.
        let flags = Settings {
            host_id_fallback_timeout: Some(5),
            ..Settings::default()
        };
        let c = Config::from_parts(None, flags).unwrap();
        assert_eq!(c.vdir.host_id_fallback_timeout, Some(5));
    }

    #[test]
    fn name_tables_parse_name_and_list_their_values() {
        assert_eq!(OVERLAP.parse("strict"), Ok(Overlap::Strict));
        assert_eq!(ERROR_HEADER.name(ErrorHeader::Both), "both");
        assert_eq!(
            ERROR_HEADER.parse("all").unwrap_err(),
            "must be \"code\", \"spec\" or \"both\", not \"all\""
        );
        assert_eq!(OVERLAP.choices(), "\"tail\" or \"strict\"");
    }

    #[test]
    fn listen_accepts_ports_alone_and_loopback_names() {
        let lo = |p| SocketAddr::from(([127, 0, 0, 1], p));
        assert_eq!(parse_listen(":0"), Ok(lo(0)));
        assert_eq!(parse_listen(":8080"), Ok(lo(8080)));
        assert_eq!(parse_listen("8080"), Ok(lo(8080)));
        assert_eq!(parse_listen("localhost:0"), Ok(lo(0)));
        assert_eq!(parse_listen("127.0.0.1:0"), Ok(lo(0)));
        assert_eq!(
            parse_listen("[::1]:0"),
            "[::1]:0".parse().map_err(|_| String::new())
        );
        for bad in [
            "",
            ":",
            "localhost",
            "example.com:80",
            ":99999",
            "1.2.3.4",
            "::1:0",
        ] {
            assert!(parse_listen(bad).is_err(), "{bad:?}");
        }
    }
}
