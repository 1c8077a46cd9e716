//! The per-virtual-directory configuration the protocol core obeys (docs/protocol.md §6).
//!
//! Mirrors [MC-BUP]'s `BITSDirectoryConfig` plus the mock-only knobs of §6 and §11. It is a
//! plain value: the CLI and profiles build it, the core reads it.

use super::ack::ErrorHeader;
use std::time::Duration;

/// What to do with a fragment that overlaps bytes already stored (docs/protocol.md §7.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overlap {
    /// Policy A (Windows docs): keep the stored bytes, write only the new tail, answer 200.
    #[default]
    Tail,
    /// Policy B (strict [MC-BUP]): answer 416 with the expected offset.
    Strict,
}

/// Whether a bodyless packet must carry `Content-Length` (docs/protocol.md §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContentLength {
    /// IIS: a packet without `Content-Length` gets 411 + `0x80070057`.
    #[default]
    Required,
    /// HTTP/1.1: a Ping, Create-Session, Close-Session or Cancel-Session without
    /// `Content-Length` (and without `Transfer-Encoding`) has an empty body. Fragments still
    /// need it: their length is checked against `Content-Range`.
    Optional,
}

/// Server settings that change what the protocol core answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vdir {
    /// Whole-file limit (`BITSMaximumUploadSize`); `None` means no limit.
    pub max_upload_size: Option<u64>,
    /// Largest fragment body accepted before answering 413.
    pub max_fragment_size: u64,
    /// Idle time after which a session is discarded (`BITSSessionTimeout`).
    pub session_timeout: Duration,
    /// Whether an existing destination may be replaced (`BITSAllowOverwrites`).
    pub allow_overwrites: bool,
    /// URL prefix (as segments) whose destinations are upload-reply jobs; empty = none.
    pub reply_prefix: Vec<String>,
    /// `BITS-Host-Id` to send in the Create-Session Ack (`BITSHostId`).
    pub host_id: Option<String>,
    /// `BITS-Host-Id-Fallback-Timeout` in seconds, sent only with a host id.
    pub host_id_fallback_timeout: Option<u64>,
    pub overlap: Overlap,
    pub error_header: ErrorHeader,
    /// Live sessions at most; a Create-Session beyond it gets 500 + `E_OUTOFMEMORY`, which
    /// clients retry later. Bounds the memory a client can make the server hold.
    pub max_sessions: usize,
    pub content_length: ContentLength,
    /// How long a closed session's id is remembered, so that a repeated Close-Session (its
    /// first Ack was lost) answers 200 instead of `0x8020001F` (docs/protocol.md §10.23);
    /// `None` = not at all, as IIS.
    pub remember_closed: Option<Duration>,
    /// A Host-Id web farm behind this server's front URL; `None` = one server.
    pub farm: Option<Farm>,
    /// URL prefixes (as segments, each inside `reply_prefix`) whose upload-reply sessions
    /// are answered by a notified server application (docs/protocol.md §8) rather than the
    /// built-in one; empty = none.
    pub notify_prefixes: Vec<Vec<String>>,
}

/// A Host-Id web farm (docs/protocol.md §7.9): a Create-Session at the front names a member
/// in `BITS-Host-Id`, round-robin; a member keeps its sessions to itself unless the store is
/// shared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Farm {
    /// Each member's `BITS-Host-Id` value (`host:port`), member 1 first.
    pub members: Vec<String>,
    /// One store for all (IIS on a shared folder): every session is known everywhere.
    pub shared: bool,
}

/// Where a request arrived: the front URL or a farm member (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
pub enum Place {
    #[default]
    Front,
    Member(u32),
}

/// Windows clients send fragments of up to 13 MB (docs/protocol.md §9.5); leave generous room.
pub const DEFAULT_MAX_FRAGMENT_SIZE: u64 = 32 * 1024 * 1024;
/// Live sessions at most, unless configured: far above what a test run keeps open, far below
/// what would strain memory (a live session costs well under a kilobyte).
pub const DEFAULT_MAX_SESSIONS: usize = 10_000;
/// IIS's `BITSSessionTimeout` default: 14 days.
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(1_209_600);

impl Default for Vdir {
    fn default() -> Self {
        Vdir {
            max_upload_size: None,
            max_fragment_size: DEFAULT_MAX_FRAGMENT_SIZE,
            session_timeout: DEFAULT_SESSION_TIMEOUT,
            allow_overwrites: false,
            reply_prefix: vec!["reply".to_owned()],
            host_id: None,
            host_id_fallback_timeout: None,
            overlap: Overlap::Tail,
            error_header: ErrorHeader::Code,
            max_sessions: DEFAULT_MAX_SESSIONS,
            content_length: ContentLength::Required,
            remember_closed: None,
            farm: None,
            notify_prefixes: Vec::new(),
        }
    }
}
