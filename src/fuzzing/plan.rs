//! Target `fault_plan`: rules + a request sequence → [`Faults::plan`] (and [`Faults::refuse`]).
//!
//! The input is text, a NUL byte, then bytes for [`Arbitrary`]:
//!
//! ```text
//! packet=fragment probability=0.15 fault=lose-ack how=close     <- one --fault rule per line
//! fault=delay distribution=normal mean=40ms stddev=20ms
//! \0<bytes: generated rules from key/value tables, seed, time scale, requests>
//! ```
//!
//! Rules come from the text lines and from generated `key=value` lines, both through
//! [`parse_rule_line`] (the same path as `--fault` and, key for key, profile files). Requests
//! are packets with ranges, paths, clock steps, `Authorization` values and new connections.
//!
//! Properties: nothing panics (durations scaled by any time scale, any range, any header); a
//! rejected rule names its own line; the same rules and seed give the same plans, twice over;
//! a plan holds at most one fate-deciding fault, bounded delays, resets only inside fragment
//! bodies, and answers hyper can send; fire counts add up and respect `times`.

use super::assert_sendable;
use crate::fault::plan::{broken_bytes, lie};
use crate::fault::profile::parse_rule_line;
use crate::fault::rule::Lie;
use crate::fault::{Action, ConnAuth, Facts, Faults, Outcome, Plan, Rule};
use crate::proto::{Ack, ContentRange, ErrorHeader, PacketType, SessionId};
use arbitrary::{Arbitrary, Unstructured};
use std::time::Duration;

/// Longest delay or stall a plan may hold (`plan::MAX_DELAY`).
const MAX_DELAY: Duration = Duration::from_secs(3600);

const FAULTS: [&str; 13] = [
    "delay",
    "stall",
    "lose-ack",
    "lose-request",
    "reset-mid-body",
    "lose-session",
    "status",
    "lie",
    "broken",
    "throttle",
    "refuse",
    "auth",
    "teleport",
];

/// Rule keys and values worth trying for them; values are written as `key=value` words.
const KEYS: &[(&str, &[&str])] = &[
    (
        "packet",
        &[
            "fragment",
            "ping",
            "create-session",
            "close-session",
            "cancel-session",
            "any",
            "[\"fragment\",\"ping\"]",
            "upload",
        ],
    ),
    ("session", &["1", "2", "3", "0"]),
    ("nth", &["1", "2", "3", "0"]),
    ("every", &["1", "2", "3", "0"]),
    ("probability", &["0.0", "0.3", "0.5", "1.0", "2.0", "nan"]),
    ("offset", &["0", "10", "50%", "100%", "1KiB", "150%", "-1"]),
    ("fragment", &["first", "final", "last", "middle"]),
    ("path", &["/drop/*", "*.bin", "/a?c", "*", "\"\""]),
    ("from", &["0s", "10ms", "1s", "18000000000000000000"]),
    ("until", &["1s", "2s", "1h", "18000000000000000000"]),
    ("times", &["1", "2", "0"]),
    ("skip", &["0", "1", "2"]),
    (
        "distribution",
        &[
            "fixed",
            "uniform",
            "normal",
            "lognormal",
            "exponential",
            "cauchy",
        ],
    ),
    (
        "delay",
        &["10ms", "1s", "0", "100d", "18000000000000000000"],
    ),
    ("min", &["1ms", "10ms", "1s"]),
    ("max", &["1ms", "10ms", "1s", "100d"]),
    (
        "mean",
        &["1ms", "40ms", "1s", "100d", "18000000000000000000"],
    ),
    ("stddev", &["0ms", "20ms", "1s", "100d"]),
    ("median", &["0ms", "100ms", "1s"]),
    ("p99", &["100ms", "2s", "100d", "18000000000000000000"]),
    ("how", &["close", "reset", "hang", "status", "explode"]),
    ("hang", &["10ms", "2s", "18000000000000000000"]),
    ("status", &["503", "500", "404", "200", "401", "999"]),
    ("after-bytes", &["0", "10", "1KiB", "18446744073709551615"]),
    ("after-fraction", &["0.0", "0.4", "1.0", "1.5"]),
    ("keep", &["true", "false"]),
    ("keep-file", &["true", "false"]),
    ("scope", &["this", "all", "expire", "everything"]),
    ("idle", &["50ms", "1s", "18000000000000000000"]),
    ("code", &["\"0x80070057\"", "5", "\"0x8020001F\"", "\"zz\""]),
    ("context", &["\"0x5\"", "\"0x7\"", "7"]),
    ("retry-after", &["3", "0"]),
    (
        "lie",
        &[
            "behind",
            "ahead",
            "beyond-total",
            "malformed",
            "missing",
            "other-session",
            "416",
            "no-reply-url",
        ],
    ),
    ("by", &["1", "100", "4KiB", "18446744073709551615"]),
    ("at", &["0", "10", "18446744073709551615"]),
    (
        "broken",
        &["truncated-headers", "wrong-length", "garbage", "subtle"],
    ),
    ("read-rate", &["1", "64KiB", "0"]),
    ("write-rate", &["1", "64KiB", "0"]),
    ("scheme", &["basic", "negotiate", "ntlm", "digest"]),
    ("user", &["bits"]),
    ("password", &["mock"]),
    ("legs", &["1", "2", "3", "0", "4294967296"]),
    ("again-after", &["1", "8", "0"]),
    ("name", &["x", "\"two words\""]),
];

const PATHS: [&str; 5] = ["/drop/a.bin", "/reply/x.bin", "/a", "", "/abc"];
/// `Authorization` values: none, Basic bits:mock, Basic junk, Negotiate and NTLM tokens.
const AUTHORIZATIONS: [Option<&str>; 7] = [
    None,
    Some("Basic Yml0czptb2Nr"),
    Some("Basic !!!"),
    Some("Basic Yml0cw=="),
    Some("Negotiate YWJj"),
    Some("NTLM TlRMTVNTUAAB"),
    Some("ntlm"),
];

/// The binary part of an input.
#[derive(Debug, Arbitrary)]
pub struct Input {
    pub rules: Vec<RuleSpec>,
    pub seed: u64,
    pub time_scale: Scale,
    pub error_header: u8,
    pub requests: Vec<Request>,
}

/// A generated rule: a fault and some `key=value` pairs.
#[derive(Debug, Arbitrary)]
pub struct RuleSpec {
    pub fault: u8,
    pub keys: Vec<(u8, Value)>,
}

#[derive(Debug, Arbitrary)]
pub enum Value {
    /// One of the key's interesting values.
    Pick(u8),
    Number(u64),
    Text(String),
}

#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Scale {
    One,
    Zero,
    /// n / 16.
    Sixteenths(u16),
    Any(f64),
}

#[derive(Debug, Clone, Arbitrary)]
pub enum Request {
    Packet {
        kind: u8,
        session: u8,
        range: RangeSpec,
        path: u8,
        authorization: u8,
    },
    /// The clock moves on (milliseconds).
    Wait(u32),
    /// A new connection: fresh authentication state, and the `refuse` decision.
    Connect,
    /// A header the profile did not foresee.
    OddAuthorization { kind: u8, value: String },
}

#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum RangeSpec {
    Small { first: u16, len: u16, total: u16 },
    Any { first: u64, last: u64, total: u64 },
}

impl RangeSpec {
    fn build(self) -> Option<ContentRange> {
        match self {
            RangeSpec::Small { first, len, total } => {
                let total = u64::from(total) + 1;
                let first = u64::from(first) % total;
                let last = first + u64::from(len) % (total - first);
                ContentRange::new(first, last, total).ok()
            }
            RangeSpec::Any { first, last, total } => ContentRange::new(first, last, total).ok(),
        }
    }
}

/// The `fault_plan` target.
pub fn check(data: &[u8]) {
    let (text, rest) = match data.iter().position(|&b| b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(rest)) else {
        return;
    };
    let mut rules = Vec::new();
    for (i, line) in String::from_utf8_lossy(text).lines().enumerate() {
        if !line.trim().is_empty() {
            rules.extend(rule(line, "fuzz", i + 1));
        }
    }
    for (i, spec) in input.rules.iter().enumerate() {
        rules.extend(rule(&spec.line(), "generated", i + 1));
    }
    run(rules, &input);
}

/// Parses one rule line, checking that a rejection names the line it was given.
fn rule(line: &str, origin: &str, number: usize) -> Option<Rule> {
    match parse_rule_line(line, origin, number) {
        Ok(rule) => Some(rule),
        Err(e) => {
            assert_eq!(e.line, number, "{line:?}: {e}");
            assert_eq!(e.origin, origin, "{line:?}: {e}");
            assert!(!e.message.is_empty(), "{line:?}: empty message");
            None
        }
    }
}

impl RuleSpec {
    /// The `--fault` line this spec stands for.
    pub fn line(&self) -> String {
        let mut line = format!("fault={}", FAULTS[usize::from(self.fault) % FAULTS.len()]);
        for (key, value) in &self.keys {
            let (key, values) = KEYS[usize::from(*key) % KEYS.len()];
            let value = match value {
                Value::Pick(i) => values[usize::from(*i) % values.len()].to_owned(),
                Value::Number(n) => n.to_string(),
                Value::Text(t) => t.clone(),
            };
            line.push_str(&format!(" {key}={value}"));
        }
        line
    }
}

impl Scale {
    fn value(self) -> f64 {
        match self {
            Scale::One => 1.0,
            Scale::Zero => 0.0,
            Scale::Sixteenths(n) => f64::from(n) / 16.0,
            Scale::Any(x) => x,
        }
    }
}

/// Plans every request twice, with two independent fault states, and checks each plan.
pub fn run(rules: Vec<Rule>, input: &Input) {
    let header = match input.error_header % 3 {
        0 => ErrorHeader::Code,
        1 => ErrorHeader::Spec,
        _ => ErrorHeader::Both,
    };
    let scale = input.time_scale.value();
    let first = decide(&rules, input, scale, header);
    let second = decide(&rules, input, scale, header);
    assert!(
        first == second,
        "the same seed gave different plans:\n{first:?}\n{second:?}"
    );
}

/// What one pass decided: plans, refusals and final fire counts.
#[derive(Debug, PartialEq)]
struct Decisions {
    plans: Vec<Option<Plan>>,
    refused: Vec<bool>,
    fire_counts: Vec<u64>,
}

fn decide(rules: &[Rule], input: &Input, scale: f64, header: ErrorHeader) -> Decisions {
    let mut faults = Faults::new(rules.to_vec(), input.seed, scale, header);
    let mut conn = ConnAuth::default();
    let mut clock = Duration::ZERO;
    let mut connections = 0u64;
    let mut fired = vec![0u64; rules.len()];
    let mut out = Decisions {
        plans: Vec::new(),
        refused: Vec::new(),
        fire_counts: Vec::new(),
    };
    for request in &input.requests {
        let (kind, session, range, path, authorization) = match request {
            Request::Wait(ms) => {
                clock = clock.saturating_add(Duration::from_millis(u64::from(*ms)));
                continue;
            }
            Request::Connect => {
                conn = ConnAuth::default();
                connections += 1;
                let refusal = faults.refuse(connections, clock);
                // An HTTPS connection would also ask the TLS rules; they decide values only.
                if let Some((firing, _)) = faults.tls(connections, clock) {
                    assert!(firing.rule < rules.len());
                    fired[firing.rule] += 1;
                }
                if let Some(firing) = &refusal {
                    assert!(firing.rule < rules.len());
                    fired[firing.rule] += 1;
                }
                out.refused.push(refusal.is_some());
                continue;
            }
            Request::Packet {
                kind,
                session,
                range,
                path,
                authorization,
            } => (
                *kind,
                *session,
                *range,
                PATHS[usize::from(*path) % PATHS.len()],
                AUTHORIZATIONS[usize::from(*authorization) % AUTHORIZATIONS.len()],
            ),
            Request::OddAuthorization { kind, value } => {
                let range = ContentRange::new(0, 9, 10).ok();
                let facts = facts(*kind, 1, range, PATHS[0], Some(value), clock);
                let plan = faults.plan(&facts, &mut conn);
                check_plan(rules, &facts, &plan, &mut fired);
                out.plans.push(Some(plan));
                continue;
            }
        };
        let facts = facts(kind, session, range.build(), path, authorization, clock);
        if facts.packet == PacketType::Fragment && facts.range.is_none() {
            // The server only plans fragments whose range parsed.
            out.plans.push(None);
            continue;
        }
        let plan = faults.plan(&facts, &mut conn);
        check_plan(rules, &facts, &plan, &mut fired);
        out.plans.push(Some(plan));
    }
    out.fire_counts = faults.fire_counts().to_vec();
    assert_eq!(out.fire_counts, fired, "fire counts do not add up");
    for (rule, n) in rules.iter().zip(&out.fire_counts) {
        assert!(
            rule.times.is_none_or(|t| *n <= t),
            "rule {} fired {n} times, more than `times`",
            rule.name
        );
    }
    out
}

fn facts<'a>(
    kind: u8,
    session: u8,
    range: Option<ContentRange>,
    path: &'a str,
    authorization: Option<&'a str>,
    since_start: Duration,
) -> Facts<'a> {
    let packet = PacketType::ALL[usize::from(kind) % PacketType::ALL.len()];
    Facts {
        packet,
        session: match packet {
            PacketType::Ping => 0,
            _ => u64::from(session % 5),
        },
        range: if packet == PacketType::Fragment {
            range
        } else {
            None
        },
        path,
        since_start,
        authorization,
    }
}

/// The properties of one plan, and of carrying out its pure parts.
fn check_plan(rules: &[Rule], facts: &Facts<'_>, plan: &Plan, fired: &mut [u64]) {
    assert!(
        plan.delay <= MAX_DELAY && plan.stall <= MAX_DELAY,
        "{plan:?}"
    );
    let mut deciding = 0;
    for firing in &plan.firings {
        assert!(firing.rule < rules.len(), "{firing:?}");
        assert_eq!(firing.packet, Some(facts.packet));
        assert_eq!(firing.session, facts.session);
        assert_eq!(firing.range, facts.range);
        fired[firing.rule] += 1;
        if !rules[firing.rule].fault.is_modifier() {
            deciding += 1;
        }
    }
    assert_eq!(
        deciding,
        usize::from(plan.action != Action::Apply),
        "a plan must hold exactly one fate per fate-deciding firing: {plan:?}"
    );
    for rate in [plan.read_rate, plan.write_rate].into_iter().flatten() {
        assert!(rate > 0, "a throttle of 0 bytes/s would never finish");
    }
    // The real answer this request would get, for faults that rewrite it.
    let mut real = Ack::ok().with_session(Some("{6B1D0C52-2F7A-4E0B-9C1E-5A3D2B7F9E01}"));
    if let Some(r) = facts.range {
        real = real.with_received(r.end());
    }
    let real = real.render(ErrorHeader::Code);
    match &plan.action {
        Action::Apply | Action::LoseSession(_) => {}
        Action::Instead(outcome) | Action::After(outcome) => match outcome {
            Outcome::Close | Outcome::Reset | Outcome::Hang(_) => {}
            Outcome::Respond(rendered) => assert_sendable(rendered, plan),
            Outcome::Broken(broken, noise) => {
                let bytes = broken_bytes(*broken, &real, *noise);
                assert!(!bytes.is_empty(), "an empty broken response: {plan:?}");
            }
        },
        Action::ResetMidBody { after, .. } => {
            let Some(range) = facts.range else {
                panic!("a mid-body reset for a packet without a body: {plan:?}");
            };
            assert!(
                *after <= range.len(),
                "reset after more bytes than the body has"
            );
        }
        Action::Lie { lie: how, other } => {
            let mut rendered = real.clone();
            let total = facts.range.map(|r| r.total());
            lie(&mut rendered, *how, total, *other);
            assert_sendable(&rendered, plan);
            check_lie(*how, &real, &rendered, total, other);
        }
        Action::Mutate {
            seed,
            families,
            count,
            other,
        } => {
            let plain = crate::fault::mutate::unmutated(&real).len();
            let out =
                crate::fault::mutate::mutate(&real, *seed, families, *count, &other.to_string());
            assert!(
                out.bytes.len() <= plain + crate::fault::mutate::MAX_GROWTH,
                "an unbounded mutation: {plan:?}"
            );
            assert!(out.mutations.len() <= *count as usize);
            assert!(
                out.mutations
                    .iter()
                    .all(|m| families.is_empty() || families.contains(&m.family)),
                "a mutation of a family the rule did not allow: {plan:?}"
            );
        }
    }
}

fn check_lie(
    how: Lie,
    real: &crate::proto::Rendered,
    lied: &crate::proto::Rendered,
    total: Option<u64>,
    other: &SessionId,
) {
    const RECEIVED: &str = "BITS-Received-Content-Range";
    let number =
        |r: &crate::proto::Rendered| r.header(RECEIVED).and_then(|v| v.parse::<u64>().ok());
    match how {
        Lie::Behind(_) => assert!(number(lied) <= number(real)),
        Lie::Ahead(_) => {
            assert!(number(lied) >= number(real));
            if let (Some(t), Some(n)) = (total, number(lied)) {
                assert!(n <= t, "lie ahead past the total: {n} > {t}");
            }
        }
        Lie::BeyondTotal => {
            if let (Some(t), Some(n)) = (total, number(lied)) {
                assert!(n > t || t == u64::MAX, "not beyond the total: {n} <= {t}");
            }
        }
        Lie::Missing => assert_eq!(lied.header(RECEIVED), None),
        Lie::OtherSession => {
            assert_eq!(
                lied.header("BITS-Session-Id"),
                Some(other.to_string().as_str())
            )
        }
        Lie::RangeNotSatisfiable(at) => {
            assert_eq!(lied.status, 416);
            assert_eq!(number(lied), Some(at));
        }
        Lie::Malformed | Lie::NoReplyUrl => {}
    }
    assert_eq!(
        lied.headers.last().map(|(n, _)| *n),
        Some("Content-Length"),
        "a lie moved Content-Length from the end"
    );
}
