//! The fault catalogue: triggers (when a rule matches) and faults (what it does), as validated
//! values. docs/protocol.md §9.10 says what each fault exercises in a real client.

use crate::proto::PacketType;
use crate::proto::range::ContentRange;
use std::fmt;
use std::time::Duration;

/// One validated rule of a profile.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// A short name for logs; defaults to `rule N`.
    pub name: String,
    /// Where it was defined, e.g. `profiles/lost-acks.toml:12`.
    pub origin: String,
    pub trigger: Trigger,
    pub fault: Fault,
    /// Fire at most this many times.
    pub times: Option<u64>,
    /// Let the first `skip` matches pass without firing.
    pub skip: u64,
}

/// When a rule matches. Every condition given must hold.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Trigger {
    /// Packet types; `None` = any.
    pub packets: Option<Vec<PacketType>>,
    /// The Nth session created (1-based).
    pub session: Option<u64>,
    /// The Nth packet of its type within its session (1-based), e.g. its 3rd fragment.
    pub nth: Option<u64>,
    /// Every Nth match.
    pub every: Option<u64>,
    /// Chance of firing per match, drawn from the seeded stream.
    pub probability: Option<f64>,
    /// Byte position a fragment must cover.
    pub position: Option<Position>,
    /// URL path glob (`*` any run of characters, `?` one character).
    pub path: Option<String>,
    /// Time window since the server started.
    pub from: Option<Duration>,
    pub until: Option<Duration>,
}

/// Which fragment a position trigger picks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Position {
    /// The fragment covering this byte offset.
    Offset(u64),
    /// The fragment covering this fraction (0–1) of the file.
    Fraction(f64),
    /// The fragment starting at byte 0.
    First,
    /// The fragment carrying the last byte.
    Final,
}

impl Position {
    pub fn covers(&self, range: &ContentRange) -> bool {
        match *self {
            Position::Offset(x) => range.first() <= x && x <= range.last(),
            Position::Fraction(f) => {
                let x = ((range.total() as f64) * f).floor() as u64;
                let x = x.min(range.total() - 1);
                range.first() <= x && x <= range.last()
            }
            Position::First => range.first() == 0,
            Position::Final => range.is_final(),
        }
    }
}

/// A random (or fixed) duration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Dist {
    Fixed(Duration),
    Uniform { min: Duration, max: Duration },
    Normal { mean: Duration, stddev: Duration },
    LogNormal { median: Duration, p99: Duration },
    Exponential { mean: Duration },
}

/// How an answer (or a request) gets lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// Close the connection (FIN).
    Close,
    /// Abort the connection (RST).
    Reset,
    /// Say nothing for this long, then close.
    Hang(Duration),
    /// Answer with this 5xx status instead of the real Ack.
    Status(u16),
}

/// Where a mid-body reset happens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Portion {
    Bytes(u64),
    Fraction(f64),
}

impl Portion {
    /// Bytes of a `len`-byte body to read before the reset.
    pub fn of(&self, len: u64) -> u64 {
        match *self {
            Portion::Bytes(n) => n.min(len),
            Portion::Fraction(f) => (((len as f64) * f).floor() as u64).min(len),
        }
    }
}

/// What a session-loss fault forgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionLoss {
    /// Forget the session the packet belongs to.
    This { keep_file: bool },
    /// Forget every session (a simulated restart).
    All { keep_file: bool },
    /// Give the session a short idle timeout.
    Expire(Duration),
}

/// How a lying Ack lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lie {
    /// `BITS-Received-Content-Range` lower than the truth by N.
    Behind(u64),
    /// Higher than the truth by N (capped at the total).
    Ahead(u64),
    /// Beyond the file's total length.
    BeyondTotal,
    /// Not a number.
    Malformed,
    /// Header left out.
    Missing,
    /// Another `BITS-Session-Id`.
    OtherSession,
    /// 416 with this offset instead of the real answer.
    RangeNotSatisfiable(u64),
    /// Final upload-reply Ack without `BITS-Reply-URL`.
    NoReplyUrl,
}

/// A malformed response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broken {
    /// Part of the status line and headers, then close.
    TruncatedHeaders,
    /// The real headers with `Content-Length: 64` and no body, then close.
    WrongLength,
    /// Bytes that are not HTTP, then close.
    Garbage,
}

/// An authentication scheme to demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Basic,
    Negotiate,
    Ntlm,
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.token())
    }
}

impl Scheme {
    pub fn token(self) -> &'static str {
        match self {
            Scheme::Basic => "Basic",
            Scheme::Negotiate => "Negotiate",
            Scheme::Ntlm => "NTLM",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    pub scheme: Scheme,
    /// Basic only: credentials to check; any credentials pass when unset.
    pub credentials: Option<(String, String)>,
    /// Negotiate/NTLM: round trips before the connection is authenticated (≥ 1).
    pub legs: u32,
    /// Demand authentication again after this many fragments on the connection.
    pub again_after: Option<u64>,
}

/// What a rule does when it fires.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Wait before answering.
    Delay(Dist),
    /// Wait before reading the request body.
    Stall(Dist),
    /// Apply the packet, then lose its Ack.
    LoseAck(Loss),
    /// Lose the request: the packet is never applied.
    LoseRequest(Loss),
    /// Reset the connection part-way through a fragment body.
    ResetMidBody { after: Portion, keep: bool },
    /// Apply the packet, answer it, then forget sessions.
    LoseSession(SessionLoss),
    /// Answer with this status instead of applying the packet.
    Status {
        status: u16,
        code: Option<u32>,
        context: Option<u32>,
        retry_after: Option<u64>,
    },
    /// Apply the packet, then lie in its Ack.
    Lie(Lie),
    /// Apply the packet, then send a malformed response and close.
    Broken(Broken),
    /// Read the body and write the answer at this many bytes per second.
    Throttle {
        read: Option<u64>,
        write: Option<u64>,
    },
    /// Close new connections at once (use with a time window: an outage).
    Refuse,
    /// Demand authentication.
    Auth(Auth),
}

impl Fault {
    /// The fault's name as written in profiles.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Delay(_) => "delay",
            Fault::Stall(_) => "stall",
            Fault::LoseAck(_) => "lose-ack",
            Fault::LoseRequest(_) => "lose-request",
            Fault::ResetMidBody { .. } => "reset-mid-body",
            Fault::LoseSession(_) => "lose-session",
            Fault::Status { .. } => "status",
            Fault::Lie(_) => "lie",
            Fault::Broken(_) => "broken",
            Fault::Throttle { .. } => "throttle",
            Fault::Refuse => "refuse",
            Fault::Auth(_) => "auth",
        }
    }

    /// Modifiers shape how a request is handled and combine with each other; every other
    /// fault decides the request's fate, and only the first such rule to fire applies.
    pub fn is_modifier(&self) -> bool {
        matches!(
            self,
            Fault::Delay(_) | Fault::Stall(_) | Fault::Throttle { .. }
        )
    }

    /// Packet types this fault can act on, when it cannot act on every type.
    pub fn only_packets(&self) -> Option<&'static [PacketType]> {
        match self {
            Fault::ResetMidBody { .. }
            | Fault::Lie(
                Lie::Behind(_)
                | Lie::Ahead(_)
                | Lie::BeyondTotal
                | Lie::Malformed
                | Lie::Missing
                | Lie::RangeNotSatisfiable(_)
                | Lie::NoReplyUrl,
            ) => Some(&[PacketType::Fragment]),
            _ => None,
        }
    }
}

impl fmt::Display for SessionLoss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kept = |keep: bool| if keep { " (temp file kept)" } else { "" };
        match *self {
            SessionLoss::This { keep_file } => write!(f, "forgot the session{}", kept(keep_file)),
            SessionLoss::All { keep_file } => {
                write!(f, "forgot every session (restart){}", kept(keep_file))
            }
            SessionLoss::Expire(idle) => write!(
                f,
                "gave the session an idle timeout of {}",
                crate::units::show_duration(idle)
            ),
        }
    }
}

/// In the profile syntax (`lie = "behind"`, `by = 100`), so a log line can be pasted back.
impl fmt::Display for Lie {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Lie::Behind(n) => write!(f, "behind by={n}"),
            Lie::Ahead(n) => write!(f, "ahead by={n}"),
            Lie::BeyondTotal => f.write_str("beyond-total"),
            Lie::Malformed => f.write_str("malformed"),
            Lie::Missing => f.write_str("missing"),
            Lie::OtherSession => f.write_str("other-session"),
            Lie::RangeNotSatisfiable(at) => write!(f, "416 at={at}"),
            Lie::NoReplyUrl => f.write_str("no-reply-url"),
        }
    }
}

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Broken::TruncatedHeaders => "truncated-headers",
            Broken::WrongLength => "wrong-length",
            Broken::Garbage => "garbage",
        })
    }
}

/// Matches `*` (any run) and `?` (one character) against a path.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_runs_and_single_characters() {
        assert!(glob_matches("/drop/*", "/drop/a/b.bin"));
        assert!(glob_matches("*.bin", "/x/y.bin"));
        assert!(glob_matches("/a?c", "/abc"));
        assert!(!glob_matches("/a?c", "/abbc"));
        assert!(!glob_matches("/drop/*", "/other/x"));
        assert!(glob_matches("*", ""));
    }

    #[test]
    fn positions_pick_the_covering_fragment() {
        let r = ContentRange::new(100, 199, 400).unwrap();
        assert!(Position::Offset(150).covers(&r));
        assert!(!Position::Offset(200).covers(&r));
        assert!(Position::Fraction(0.25).covers(&r));
        assert!(!Position::Fraction(0.5).covers(&r));
        assert!(!Position::First.covers(&r));
        assert!(!Position::Final.covers(&r));
        assert!(Position::Final.covers(&ContentRange::new(300, 399, 400).unwrap()));
        assert!(Position::Fraction(1.0).covers(&ContentRange::new(300, 399, 400).unwrap()));
    }

    #[test]
    fn lies_and_broken_responses_show_in_the_profile_syntax() {
        assert_eq!(Lie::Behind(100).to_string(), "behind by=100");
        assert_eq!(Lie::RangeNotSatisfiable(7).to_string(), "416 at=7");
        assert_eq!(Lie::NoReplyUrl.to_string(), "no-reply-url");
        assert_eq!(Broken::TruncatedHeaders.to_string(), "truncated-headers");
        assert_eq!(Broken::WrongLength.to_string(), "wrong-length");
        assert_eq!(Broken::Garbage.to_string(), "garbage");
    }

    #[test]
    fn portions_never_exceed_the_body() {
        assert_eq!(Portion::Bytes(10).of(4), 4);
        assert_eq!(Portion::Fraction(0.5).of(101), 50);
        assert_eq!(Portion::Fraction(1.0).of(7), 7);
    }
}
