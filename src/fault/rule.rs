//! The fault catalogue: triggers (when a rule matches) and faults (what it does), as validated
//! values. docs/protocol.md §9.10 says what each fault exercises in a real client.

use crate::proto::PacketType;
use crate::proto::range::ContentRange;
use crate::units::show_duration;
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
    /// The Nth connection the server accepted (1-based); connection faults only.
    pub connection: Option<u64>,
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
    pub const ALL: [Scheme; 3] = [Scheme::Basic, Scheme::Negotiate, Scheme::Ntlm];

    /// The spelling of `scheme =` in profiles.
    pub fn name(self) -> &'static str {
        match self {
            Scheme::Basic => "basic",
            Scheme::Negotiate => "negotiate",
            Scheme::Ntlm => "ntlm",
        }
    }

    /// The token of the `WWW-Authenticate` challenge.
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
    /// Apply the packet, then send its answer mutated (`fault::mutate`) and close.
    Mutate(Mutate),
    /// Misbehave in TLS, on HTTPS connections.
    Tls(TlsFault),
    /// A farm member (1-based) is down: its connections and requests are refused or
    /// swallowed (use with a time window).
    MemberDown { member: u32, how: Down },
    /// Break the leg to the notified server application (docs/protocol.md §8).
    Notify(NotifyFault),
}

/// How a `notify` fault breaks the notification of the server application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotifyFault {
    /// The application is slow: its answer comes this much later (counted against the
    /// notification timeout).
    Delay(Duration),
    /// The application is down: the connection is refused, nothing is sent.
    Refuse,
    /// The application answers this status (it is not contacted).
    Status(u16),
    /// The application answers bytes that are not HTTP (it is not contacted).
    Garbage,
    /// The notification is sent twice, as after a server crash; the second answer counts.
    Twice,
}

impl NotifyFault {
    /// The spelling of `how =` in profiles.
    pub fn name(self) -> &'static str {
        match self {
            NotifyFault::Delay(_) => "delay",
            NotifyFault::Refuse => "refuse",
            NotifyFault::Status(_) => "status",
            NotifyFault::Garbage => "garbage",
            NotifyFault::Twice => "twice",
        }
    }
}

impl fmt::Display for NotifyFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotifyFault::Delay(d) => write!(f, "how=delay delay={}", show_duration(*d)),
            NotifyFault::Status(status) => write!(f, "how=status status={status}"),
            other => write!(f, "how={}", other.name()),
        }
    }
}

/// How a farm member is down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Down {
    /// Connections are closed at once; requests on open connections too.
    Refuse,
    /// Connections are accepted and never answered (until the header timeout).
    Blackhole,
}

impl Down {
    pub fn name(self) -> &'static str {
        match self {
            Down::Refuse => "refuse",
            Down::Blackhole => "blackhole",
        }
    }
}

/// What a `tls` fault does to an HTTPS connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFault {
    /// Present a certificate the client must refuse.
    Cert(BadCert),
    /// Accept the TCP connection, then say nothing for this long and close.
    HandshakeStall(Duration),
    /// Reset the connection when the ClientHello arrives.
    HandshakeReset,
    /// Close the connection in the middle of the first fragment body, without TLS's
    /// `close_notify`: a truncation the client must not take for the end of the stream.
    CloseNoNotify,
}

/// A certificate a correct client refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadCert {
    /// Its validity ended in the past.
    Expired,
    /// Its validity starts in the future.
    NotYetValid,
    /// Valid, but for another host name.
    WrongHost,
    /// Not issued by the server's CA: signed by itself.
    SelfSigned,
    /// Its extended key usage allows client authentication only.
    BadUsage,
}

impl BadCert {
    pub const ALL: [BadCert; 5] = [
        BadCert::Expired,
        BadCert::NotYetValid,
        BadCert::WrongHost,
        BadCert::SelfSigned,
        BadCert::BadUsage,
    ];

    /// The spelling of `cert =` in profiles.
    pub fn name(self) -> &'static str {
        match self {
            BadCert::Expired => "expired",
            BadCert::NotYetValid => "not-yet-valid",
            BadCert::WrongHost => "wrong-host",
            BadCert::SelfSigned => "self-signed",
            BadCert::BadUsage => "bad-usage",
        }
    }
}

impl fmt::Display for TlsFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsFault::Cert(cert) => write!(f, "cert={}", cert.name()),
            TlsFault::HandshakeStall(d) => write!(f, "handshake=stall hang={}", show_duration(*d)),
            TlsFault::HandshakeReset => f.write_str("handshake=reset"),
            TlsFault::CloseNoNotify => f.write_str("close=no-notify"),
        }
    }
}

/// The settings of a `mutate` fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mutate {
    /// Families to draw from (all when empty).
    pub families: Vec<super::mutate::Family>,
    /// Mutations per answer (1–8).
    pub count: u32,
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
            Fault::Mutate(_) => "mutate",
            Fault::Tls(_) => "tls",
            Fault::MemberDown { .. } => "member-down",
            Fault::Notify(_) => "notify",
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

    /// Faults decided once per connection, when it is accepted, rather than per request.
    pub fn is_connection_fault(&self) -> bool {
        matches!(
            self,
            Fault::Refuse | Fault::Tls(_) | Fault::MemberDown { .. }
        )
    }

    /// Faults planned per BITS request; the others act on connections (decided at accept)
    /// or on the notification of the server application.
    pub fn acts_on_requests(&self) -> bool {
        !self.is_connection_fault() && !matches!(self, Fault::Notify(_))
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

/// The rule in the `--fault` one-line syntax, which
/// [`parse_rule_line`](super::profile::parse_rule_line) reads back to an equal rule (all but
/// `origin`): `name="ack lost" packet=fragment probability=0.2 fault=lose-ack how=reset`.
/// Every parameter is written out, defaults included; durations and sizes are written so they
/// parse back exactly (`250ms`, `1.5s`, bytes as integers), floats with Rust's shortest
/// round-tripping digits. A rule the parser would reject (say `nth = 0`, which no profile can
/// produce) renders to a line the parser rejects too.
impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "name={}", quoted(&self.name))?;
        write_trigger(f, &self.trigger)?;
        if let Some(n) = self.times {
            write!(f, " times={n}")?;
        }
        if self.skip != 0 {
            write!(f, " skip={}", self.skip)?;
        }
        write!(f, " fault={}{}", self.fault.kind(), Params(&self.fault))
    }
}

/// The trigger's keys, each with a leading space; nothing for a trigger that always holds.
fn write_trigger(f: &mut fmt::Formatter<'_>, t: &Trigger) -> fmt::Result {
    if let Some(packets) = &t.packets {
        let names: Vec<String> = packets
            .iter()
            .map(|p| p.as_str().to_ascii_lowercase())
            .collect();
        match names.as_slice() {
            [] => f.write_str(" packet=[]")?,
            [one] => write!(f, " packet={one}")?,
            // No spaces: a one-liner splits its words at whitespace.
            many => write!(f, " packet=[\"{}\"]", many.join("\",\""))?,
        }
    }
    for (key, value) in [("session", t.session), ("nth", t.nth), ("every", t.every)] {
        if let Some(n) = value {
            write!(f, " {key}={n}")?;
        }
    }
    if let Some(p) = t.probability {
        write!(f, " probability={p}")?;
    }
    match t.position {
        None => {}
        Some(Position::Offset(n)) => write!(f, " offset={n}")?,
        Some(Position::Fraction(x)) => write!(f, " offset=\"{}%\"", percent(x))?,
        Some(Position::First) => f.write_str(" fragment=first")?,
        Some(Position::Final) => f.write_str(" fragment=final")?,
    }
    if let Some(path) = &t.path {
        write!(f, " path={}", quoted(path))?;
    }
    if let Some(from) = t.from {
        write!(f, " from={}", show_duration(from))?;
    }
    if let Some(until) = t.until {
        write!(f, " until={}", show_duration(until))?;
    }
    if let Some(n) = t.connection {
        write!(f, " connection={n}")?;
    }
    Ok(())
}

/// A fault's parameters in the one-line syntax, each with a leading space.
struct Params<'a>(&'a Fault);

impl fmt::Display for Params<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Fault::Delay(dist) | Fault::Stall(dist) => write_dist(f, dist),
            Fault::LoseAck(loss) | Fault::LoseRequest(loss) => match *loss {
                Loss::Close => f.write_str(" how=close"),
                Loss::Reset => f.write_str(" how=reset"),
                Loss::Hang(d) => write!(f, " how=hang hang={}", show_duration(d)),
                Loss::Status(s) => write!(f, " how=status status={s}"),
            },
            Fault::ResetMidBody { after, keep } => {
                match *after {
                    Portion::Bytes(n) => write!(f, " after-bytes={n}")?,
                    Portion::Fraction(x) => write!(f, " after-fraction={x}")?,
                }
                write!(f, " keep={keep}")
            }
            Fault::LoseSession(loss) => match *loss {
                SessionLoss::This { keep_file } => write!(f, " scope=this keep-file={keep_file}"),
                SessionLoss::All { keep_file } => write!(f, " scope=all keep-file={keep_file}"),
                SessionLoss::Expire(idle) => {
                    write!(f, " scope=expire idle={}", show_duration(idle))
                }
            },
            Fault::Status {
                status,
                code,
                context,
                retry_after,
            } => {
                write!(f, " status={status}")?;
                if let Some(code) = code {
                    write!(f, " code=0x{code:08X}")?;
                }
                if let Some(context) = context {
                    write!(f, " context=0x{context:X}")?;
                }
                if let Some(seconds) = retry_after {
                    write!(f, " retry-after={seconds}")?;
                }
                Ok(())
            }
            Fault::Lie(lie) => write!(f, " lie={lie}"),
            Fault::Broken(broken) => write!(f, " broken={broken}"),
            Fault::Throttle { read, write } => {
                if let Some(rate) = read {
                    write!(f, " read-rate={rate}")?;
                }
                if let Some(rate) = write {
                    write!(f, " write-rate={rate}")?;
                }
                Ok(())
            }
            Fault::Refuse => Ok(()),
            Fault::Mutate(mu) => {
                if !mu.families.is_empty() {
                    let names: Vec<&str> = mu.families.iter().map(|f| f.name()).collect();
                    write!(f, " families={}", quoted(&names.join(",")))?;
                }
                write!(f, " count={}", mu.count)
            }
            Fault::Tls(tls) => write!(f, " {tls}"),
            Fault::MemberDown { member, how } => {
                write!(f, " member={member} how={}", how.name())
            }
            Fault::Notify(notify) => write!(f, " {notify}"),
            Fault::Auth(auth) => {
                write!(f, " scheme={}", auth.scheme.name())?;
                if let Some((user, password)) = &auth.credentials {
                    write!(f, " user={} password={}", quoted(user), quoted(password))?;
                }
                write!(f, " legs={}", auth.legs)?;
                if let Some(n) = auth.again_after {
                    write!(f, " again-after={n}")?;
                }
                Ok(())
            }
        }
    }
}

fn write_dist(f: &mut fmt::Formatter<'_>, dist: &Dist) -> fmt::Result {
    let d = |d: Duration| show_duration(d);
    match *dist {
        Dist::Fixed(delay) => write!(f, " delay={}", d(delay)),
        Dist::Uniform { min, max } => {
            write!(f, " distribution=uniform min={} max={}", d(min), d(max))
        }
        Dist::Normal { mean, stddev } => write!(
            f,
            " distribution=normal mean={} stddev={}",
            d(mean),
            d(stddev)
        ),
        Dist::LogNormal { median, p99 } => write!(
            f,
            " distribution=lognormal median={} p99={}",
            d(median),
            d(p99)
        ),
        Dist::Exponential { mean } => write!(f, " distribution=exponential mean={}", d(mean)),
    }
}

/// A TOML basic string: quotes always, so a name such as `503` or `true` stays a string.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A fraction as the percentage `offset = "N%"` takes, by moving the decimal point of its
/// shortest round-tripping form two places (`0.125` → `12.5`), so no float arithmetic can
/// move it off by one unit in the last place. The parser moves it back the same way.
fn percent(fraction: f64) -> String {
    let text = format!("{fraction}");
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text.as_str()),
    };
    let (whole, decimals) = digits.split_once('.').unwrap_or((digits, ""));
    let decimals = format!("{decimals:0<2}");
    let (moved, rest) = decimals.split_at(2);
    let whole = format!("{whole}{moved}");
    let whole = match whole.trim_start_matches('0') {
        "" => "0",
        w => w,
    };
    match rest.trim_end_matches('0') {
        "" => format!("{sign}{whole}"),
        rest => format!("{sign}{whole}.{rest}"),
    }
}

/// A rule for the control API: `{"name", "origin", "line", "fault"}`, where `line` is the
/// [one-line syntax](Rule#impl-Display-for-Rule) that `POST /rules` accepts back.
impl serde::Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut rule = serializer.serialize_struct("Rule", 4)?;
        rule.serialize_field("name", &self.name)?;
        rule.serialize_field("origin", &self.origin)?;
        rule.serialize_field("line", &self.to_string())?;
        rule.serialize_field("fault", self.fault.kind())?;
        rule.end()
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
                show_duration(idle)
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

impl Broken {
    pub const ALL: [Broken; 3] = [
        Broken::TruncatedHeaders,
        Broken::WrongLength,
        Broken::Garbage,
    ];
}

/// In the profile syntax (`broken = "garbage"`).
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

    fn rule(trigger: Trigger, fault: Fault) -> Rule {
        Rule {
            name: "ack lost".into(),
            origin: "p.toml:3".into(),
            trigger,
            fault,
            times: None,
            skip: 0,
        }
    }

    #[test]
    fn rules_show_in_the_one_line_syntax_with_every_parameter() {
        let lost = rule(
            Trigger {
                packets: Some(vec![PacketType::Fragment]),
                probability: Some(0.2),
                ..Trigger::default()
            },
            Fault::LoseAck(Loss::Reset),
        );
        assert_eq!(
            lost.to_string(),
            "name=\"ack lost\" packet=fragment probability=0.2 fault=lose-ack how=reset"
        );
        let outage = Rule {
            name: "outage".into(),
            times: Some(1),
            skip: 2,
            ..rule(
                Trigger {
                    from: Some(Duration::from_millis(1500)),
                    until: Some(Duration::from_secs(180)),
                    ..Trigger::default()
                },
                Fault::Refuse,
            )
        };
        assert_eq!(
            outage.to_string(),
            "name=\"outage\" from=1.5s until=3m times=1 skip=2 fault=refuse"
        );
        let auth = rule(
            Trigger {
                packets: Some(vec![PacketType::CreateSession, PacketType::Fragment]),
                position: Some(Position::Fraction(0.125)),
                path: Some("/drop/*.bin".into()),
                ..Trigger::default()
            },
            Fault::Auth(Auth {
                scheme: Scheme::Basic,
                credentials: Some(("bits".into(), "two \"words\"".into())),
                legs: 1,
                again_after: Some(8),
            }),
        );
        assert_eq!(
            auth.to_string(),
            "name=\"ack lost\" packet=[\"create-session\",\"fragment\"] offset=\"12.5%\" \
             path=\"/drop/*.bin\" fault=auth scheme=basic user=\"bits\" \
             password=\"two \\\"words\\\"\" legs=1 again-after=8"
        );
    }

    #[test]
    fn fractions_show_as_percentages_by_moving_the_decimal_point() {
        for (x, text) in [
            (0.25, "25"),
            (0.125, "12.5"),
            (1.0, "100"),
            (0.0, "0"),
            (0.07, "7"),
            (0.001, "0.1"),
            (0.1 + 0.2, "30.000000000000004"),
        ] {
            assert_eq!(percent(x), text, "{x}");
        }
    }

    #[test]
    fn names_are_quoted_as_toml_basic_strings() {
        assert_eq!(quoted("503"), "\"503\"");
        assert_eq!(quoted("a \"b\" \\ c"), "\"a \\\"b\\\" \\\\ c\"");
        assert_eq!(quoted("line\nbreak\u{1}"), "\"line\\nbreak\\u0001\"");
    }

    #[test]
    fn rules_serialise_as_name_origin_line_and_fault() {
        let r = rule(Trigger::default(), Fault::Broken(Broken::Garbage));
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({
                "name": "ack lost",
                "origin": "p.toml:3",
                "line": "name=\"ack lost\" fault=broken broken=garbage",
                "fault": "broken",
            })
        );
    }
}
