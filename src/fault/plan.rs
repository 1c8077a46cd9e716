//! The decision function: request facts + rules + seed → a [`Plan`].
//!
//! A decision depends only on (seed, rule, session ordinal, packet index within the session,
//! number of matches of the rule so far) — never on thread scheduling or wall time. The one
//! exception is the explicit time window (`from`/`until`), which compares against the time
//! since start that the caller passes in. Each decision draws from its own RNG seeded from
//! that tuple, so adding a rule or a session elsewhere does not shift other decisions.
//!
//! Faults are of two sorts. Modifiers (delay, stall, throttle) combine; every other fault
//! decides the request's fate, and the first such rule to fire wins for that request.

use super::profile::Profile;
use super::rule::{
    Auth, Broken, Dist, Down, Fault, Lie, Loss, NotifyFault, Rule, Scheme, SessionLoss, TlsFault,
};

use crate::proto::range::ContentRange;
use crate::proto::{Ack, AckError, ErrorHeader, PacketType, Rendered, SessionId};
use base64::Engine;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// Longest single delay a distribution may produce, whatever its tail.
const MAX_DELAY: Duration = Duration::from_secs(3600);
/// Sessions whose packet counters are kept; older ones are dropped to bound memory.
const TRACKED_SESSIONS: usize = 65_536;

/// What the server knows about a request when it asks for a plan.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub packet: PacketType,
    /// Ordinal of the request's session (for Create-Session: the one it would create);
    /// 0 when there is none or it is unknown.
    pub session: u64,
    pub range: Option<ContentRange>,
    pub path: &'a str,
    pub since_start: Duration,
    /// The `Authorization` header, if any.
    pub authorization: Option<&'a str>,
}

/// A fault that fired, for the log and the journal.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Firing {
    /// The rule's id: its 0-based position in the rule set the server started with (or was
    /// last given), counting on for rules armed later.
    pub rule: usize,
    pub name: String,
    pub packet: Option<PacketType>,
    /// Ordinal of the request's session (0: none).
    pub session: u64,
    /// The request's position among its session's packets of its type (0: no session).
    pub index: u64,
    pub range: Option<ContentRange>,
    pub effect: Effect,
}

/// Names one firing across replays of a run: which rule, on which session's which packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct FiringKey {
    /// The rule's id.
    pub rule: u64,
    /// The session's ordinal (0: none).
    pub session: u64,
    pub packet: PacketType,
    /// The packet's position among its session's packets of its type.
    pub index: u64,
}

impl Firing {
    /// This firing's key, when it was on a packet.
    pub fn key(&self) -> Option<FiringKey> {
        Some(FiringKey {
            rule: self.rule as u64,
            session: self.session,
            packet: self.packet?,
            index: self.index,
        })
    }
}

/// What a fired rule did, as data; its `Display` is the sentence the log shows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Effect {
    Delayed {
        #[serde(serialize_with = "millis")]
        by: Duration,
    },
    Stalled {
        #[serde(serialize_with = "millis")]
        by: Duration,
    },
    Throttled {
        read: Option<u64>,
        write: Option<u64>,
    },
    /// The packet was applied, then its Ack was lost this way.
    LostAck {
        how: Lost,
    },
    /// The packet was never applied.
    LostRequest {
        how: Lost,
    },
    ResetMidBody {
        after: u64,
        of: u64,
        keep: bool,
    },
    LostSession {
        #[serde(serialize_with = "shown")]
        loss: SessionLoss,
    },
    /// Answered this status instead of applying the packet.
    Status {
        status: u16,
    },
    Lied {
        #[serde(serialize_with = "shown")]
        lie: Lie,
    },
    Broken {
        #[serde(serialize_with = "shown")]
        broken: Broken,
    },
    Challenged {
        #[serde(serialize_with = "shown")]
        scheme: Scheme,
    },
    Refused,
    /// The answer was mutated; each mutation says what it changed, from what to what.
    Mutated {
        mutations: Vec<super::mutate::Mutation>,
    },
    /// A farm member was down for a connection or a request.
    MemberDown {
        member: u32,
        #[serde(serialize_with = "shown_down")]
        how: Down,
    },
    /// An HTTPS connection's TLS misbehaved this way.
    Tls {
        #[serde(serialize_with = "shown")]
        fault: TlsFault,
    },
    /// The notification of the server application was broken this way.
    Notify {
        #[serde(serialize_with = "shown")]
        fault: NotifyFault,
    },
}

/// How a lost answer was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "how", rename_all = "kebab-case")]
pub enum Lost {
    Closed,
    Reset,
    Hung {
        #[serde(serialize_with = "millis")]
        for_: Duration,
    },
    Status {
        status: u16,
    },
}

impl Lost {
    fn of(outcome: &Outcome) -> Lost {
        match outcome {
            Outcome::Close | Outcome::Broken(..) => Lost::Closed,
            Outcome::Reset => Lost::Reset,
            Outcome::Hang(d) => Lost::Hung { for_: *d },
            Outcome::Respond(r) => Lost::Status { status: r.status },
        }
    }
}

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lost::Closed => f.write_str("connection closed"),
            Lost::Reset => f.write_str("connection reset"),
            Lost::Hung { for_ } => write!(f, "hung for {}", crate::units::show_duration(*for_)),
            Lost::Status { status } => write!(f, "answered {status}"),
        }
    }
}

impl std::fmt::Display for Effect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::units::show_duration as d;
        let rate = |r: &Option<u64>| r.map_or("full speed".to_owned(), |r| format!("{r} B/s"));
        match self {
            Effect::Delayed { by } => write!(f, "delayed the answer by {}", d(*by)),
            Effect::Stalled { by } => write!(f, "stalled before reading the body for {}", d(*by)),
            Effect::Throttled { read, write } => {
                write!(
                    f,
                    "throttled reads to {}, writes to {}",
                    rate(read),
                    rate(write)
                )
            }
            Effect::LostAck { how } => write!(f, "applied the packet, then lost its Ack ({how})"),
            Effect::LostRequest { how } => write!(f, "lost the request unapplied ({how})"),
            Effect::ResetMidBody { after, of, keep } => write!(
                f,
                "reset after {after} of {of} body bytes, {} them",
                if *keep { "keeping" } else { "discarding" }
            ),
            Effect::LostSession { loss } => write!(f, "{loss} after answering"),
            Effect::Status { status } => write!(f, "answered {status} without applying the packet"),
            Effect::Lied { lie } => write!(f, "applied the packet, then lied: {lie}"),
            Effect::Broken { broken } => {
                write!(
                    f,
                    "applied the packet, then sent a broken response: {broken}"
                )
            }
            Effect::Challenged { scheme } => {
                write!(f, "demanded {} authentication", scheme.token())
            }
            Effect::Refused => f.write_str("refused the connection"),
            Effect::Mutated { mutations } if mutations.is_empty() => {
                f.write_str("applied the packet, then had its answer mutated")
            }
            Effect::Mutated { mutations } => {
                f.write_str("applied the packet, then mutated its answer: ")?;
                for (i, m) in mutations.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{m}")?;
                }
                Ok(())
            }
            Effect::MemberDown { member, how } => match how {
                Down::Refuse => write!(f, "farm member {member} is down: refused"),
                Down::Blackhole => write!(f, "farm member {member} is down: no answer"),
            },
            Effect::Tls { fault } => match fault {
                TlsFault::Cert(cert) => {
                    write!(f, "presented a bad TLS certificate ({})", cert.name())
                }
                TlsFault::HandshakeStall(hang) => {
                    write!(f, "stalled the TLS handshake for {}", d(*hang))
                }
                TlsFault::HandshakeReset => f.write_str("reset the TLS handshake"),
                TlsFault::CloseNoNotify => f.write_str("closed mid-body without TLS close_notify"),
            },
            Effect::Notify { fault } => match fault {
                NotifyFault::Delay(by) => {
                    write!(f, "delayed the application's answer by {}", d(*by))
                }
                NotifyFault::Refuse => f.write_str("refused the connection to the application"),
                NotifyFault::Status(status) => write!(f, "had the application answer {status}"),
                NotifyFault::Garbage => f.write_str("had the application answer garbage"),
                NotifyFault::Twice => f.write_str("sent the notification twice"),
            },
        }
    }
}

fn shown_down<S: serde::Serializer>(how: &Down, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(how.name())
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

fn shown<T: std::fmt::Display, S: serde::Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

/// How a connection ends or what replaces the real answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Close the connection without an answer.
    Close,
    /// Reset the connection (RST).
    Reset,
    /// Say nothing for this long, then close.
    Hang(Duration),
    /// Send this instead of the real Ack.
    Respond(Rendered),
    /// Send a malformed response built from the real Ack, then close.
    Broken(Broken, u64),
}

/// What happens to the request itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Action {
    /// Handle it normally.
    #[default]
    Apply,
    /// Do not apply the packet; do this instead.
    Instead(Outcome),
    /// Apply the packet, then do this instead of sending its Ack.
    After(Outcome),
    /// Read this many body bytes, keep (or drop) what was stored, then reset.
    ResetMidBody { after: u64, keep: bool },
    /// Apply the packet, then rewrite its Ack.
    Lie { lie: Lie, other: SessionId },
    /// Apply the packet, answer it, then forget sessions.
    LoseSession(SessionLoss),
    /// Apply the packet, then send its answer mutated (drawn from `seed`) and close.
    Mutate {
        seed: u64,
        families: Vec<super::mutate::Family>,
        count: u32,
        other: SessionId,
    },
}

/// Everything the server must do differently for one request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// The request's position among its session's packets of its type (0: no session).
    pub index: u64,
    pub firings: Vec<Firing>,
    /// Wait before reading the request body.
    pub stall: Duration,
    /// Wait before answering.
    pub delay: Duration,
    pub read_rate: Option<u64>,
    pub write_rate: Option<u64>,
    pub action: Action,
}

/// Authentication progress of one connection, per auth rule.
#[derive(Debug, Clone, Default)]
pub struct ConnAuth {
    rules: HashMap<u64, AuthProgress>,
}

#[derive(Debug, Clone, Default)]
struct AuthProgress {
    legs_done: u32,
    fragments: u64,
    demand_again: bool,
}

/// A profile's rules with their counters: the fault layer's whole state.
#[derive(Debug, Clone)]
pub struct Faults {
    rules: Vec<Rule>,
    /// Each rule's id: its position in the rule set it came with (0, 1, …), then counting
    /// on for rules armed later. Decisions are keyed by id, so removing one rule does not
    /// shift the others' decisions.
    ids: Vec<u64>,
    next_id: u64,
    seed: u64,
    time_scale: f64,
    error_header: ErrorHeader,
    matches: Vec<u64>,
    fires: Vec<u64>,
    packets: HashMap<u64, [u64; 5]>,
    suppressed: HashSet<FiringKey>,
}

impl Faults {
    /// `time_scale` multiplies every duration in the rules (delays, hangs, windows, idle
    /// timeouts); test suites use it to run delay-heavy profiles quickly.
    pub fn new(rules: Vec<Rule>, seed: u64, time_scale: f64, error_header: ErrorHeader) -> Self {
        let n = rules.len();
        Faults {
            rules,
            ids: (0..n as u64).collect(),
            next_id: n as u64,
            seed,
            time_scale: if time_scale.is_finite() && time_scale >= 0.0 {
                time_scale
            } else {
                1.0
            },
            error_header,
            matches: vec![0; n],
            fires: vec![0; n],
            packets: HashMap::new(),
            suppressed: HashSet::new(),
        }
    }

    /// Leaves these firings out: their rule matches and draws as always (so every other
    /// decision stays the same), but does not fire.
    pub fn suppress(&mut self, keys: impl IntoIterator<Item = FiringKey>) {
        self.suppressed.extend(keys);
    }

    pub fn from_profile(profile: &Profile, seed: u64, time_scale: f64, style: ErrorHeader) -> Self {
        Faults::new(profile.rules.clone(), seed, time_scale, style)
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// How often each rule fired so far, in rule order.
    pub fn fire_counts(&self) -> &[u64] {
        &self.fires
    }

    /// Each rule's id, in rule order.
    pub fn ids(&self) -> &[u64] {
        &self.ids
    }

    /// Replaces every rule, as if the server had started with these: ids from 0, no
    /// matches or fires counted, packet counters of sessions kept.
    pub fn replace(&mut self, rules: Vec<Rule>) {
        let n = rules.len();
        self.rules = rules;
        self.ids = (0..n as u64).collect();
        self.next_id = n as u64;
        self.matches = vec![0; n];
        self.fires = vec![0; n];
    }

    /// Adds a rule after the others; returns its id.
    pub fn push(&mut self, rule: Rule) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.rules.push(rule);
        self.ids.push(id);
        self.matches.push(0);
        self.fires.push(0);
        id
    }

    /// Removes the rule with this id; false if there is none.
    pub fn remove(&mut self, id: u64) -> bool {
        let Some(i) = self.ids.iter().position(|&x| x == id) else {
            return false;
        };
        self.rules.remove(i);
        self.ids.remove(i);
        self.matches.remove(i);
        self.fires.remove(i);
        true
    }

    /// Forgets every session's packet counters (the sessions are gone and ordinals restart).
    pub fn forget_sessions(&mut self) {
        self.packets.clear();
    }

    /// Decides whether new connection number `conn` is refused (fault `refuse`).
    pub fn refuse(&mut self, conn: u64, since_start: Duration) -> Option<Firing> {
        for i in 0..self.rules.len() {
            if !matches!(self.rules[i].fault, Fault::Refuse)
                || !self.connection_matches(i, conn, since_start)
            {
                continue;
            }
            if let Some(mut rng) = self.gate(i, 0, 0) {
                let _ = rng.random::<u64>();
                return Some(self.fire_on_connection(i, Effect::Refused));
            }
        }
        None
    }

    /// Decides how the TLS handshake of HTTPS connection number `conn` misbehaves (fault
    /// `tls`), if at all: the first `tls` rule to fire decides.
    pub fn tls(&mut self, conn: u64, since_start: Duration) -> Option<(Firing, TlsFault)> {
        for i in 0..self.rules.len() {
            let Fault::Tls(fault) = self.rules[i].fault else {
                continue;
            };
            if !self.connection_matches(i, conn, since_start) {
                continue;
            }
            if self.gate(i, 0, conn).is_some() {
                let fault = match fault {
                    TlsFault::HandshakeStall(d) => TlsFault::HandshakeStall(self.scale(d)),
                    other => other,
                };
                return Some((self.fire_on_connection(i, Effect::Tls { fault }), fault));
            }
        }
        None
    }

    /// Decides whether farm member `member` is down for connection `conn` (at accept, and
    /// for each request on a connection already open).
    pub fn member_down(
        &mut self,
        member: u32,
        conn: u64,
        since_start: Duration,
    ) -> Option<(Firing, Down)> {
        for i in 0..self.rules.len() {
            let Fault::MemberDown { member: down, how } = self.rules[i].fault else {
                continue;
            };
            if down != member || !self.connection_matches(i, conn, since_start) {
                continue;
            }
            if self.gate(i, 0, conn).is_some() {
                let effect = Effect::MemberDown { member, how };
                return Some((self.fire_on_connection(i, effect), how));
            }
        }
        None
    }

    /// Decides how the `nth` notification (1-based) of session `session` (its ordinal) to
    /// the server application for destination `path` misbehaves (fault `notify`), if at all:
    /// the first `notify` rule to fire decides.
    pub fn notify(
        &mut self,
        session: u64,
        nth: u64,
        path: &str,
        since_start: Duration,
    ) -> Option<(Firing, NotifyFault)> {
        for i in 0..self.rules.len() {
            let Fault::Notify(fault) = self.rules[i].fault else {
                continue;
            };
            let t = &self.rules[i].trigger;
            let matches = t.session.is_none_or(|s| s == session)
                && t.nth.is_none_or(|n| n == nth)
                && t.path
                    .as_deref()
                    .is_none_or(|g| super::rule::glob_matches(g, path))
                && self.in_window(&self.rules[i], since_start);
            if !matches || self.gate(i, session, nth).is_none() {
                continue;
            }
            let key = FiringKey {
                rule: self.ids[i],
                session,
                packet: PacketType::Fragment,
                index: nth,
            };
            if self.suppressed.contains(&key) {
                continue;
            }
            let fault = match fault {
                NotifyFault::Delay(d) => NotifyFault::Delay(self.scale(d)),
                other => other,
            };
            self.fires[i] += 1;
            let firing = Firing {
                rule: self.ids[i] as usize,
                name: self.rules[i].name.clone(),
                packet: Some(PacketType::Fragment),
                session,
                index: nth,
                range: None,
                effect: Effect::Notify { fault },
            };
            return Some((firing, fault));
        }
        None
    }

    fn connection_matches(&self, i: usize, conn: u64, since_start: Duration) -> bool {
        let rule = &self.rules[i];
        rule.trigger.connection.is_none_or(|n| n == conn) && self.in_window(rule, since_start)
    }

    fn fire_on_connection(&mut self, i: usize, effect: Effect) -> Firing {
        self.fires[i] += 1;
        Firing {
            rule: self.ids[i] as usize,
            name: self.rules[i].name.clone(),
            packet: None,
            session: 0,
            index: 0,
            range: None,
            effect,
        }
    }

    /// Decides what happens to one request.
    pub fn plan(&mut self, facts: &Facts<'_>, conn: &mut ConnAuth) -> Plan {
        let index = self.count(facts);
        let mut plan = Plan {
            index,
            ..Plan::default()
        };
        for i in 0..self.rules.len() {
            if !self.rules[i].fault.acts_on_requests() || !self.matches(i, facts, index) {
                continue;
            }
            let Some(mut rng) = self.gate(i, facts.session, index) else {
                continue;
            };
            let key = FiringKey {
                rule: self.ids[i],
                session: facts.session,
                packet: facts.packet,
                index,
            };
            if self.suppressed.contains(&key) {
                continue;
            }
            let fault = self.rules[i].fault.clone();
            if !fault.is_modifier() && plan.action != Action::Apply {
                continue;
            }
            let effect = match &fault {
                Fault::Delay(d) => {
                    let by = self.sample(d, &mut rng);
                    plan.delay += by;
                    Some(Effect::Delayed { by })
                }
                Fault::Stall(d) => {
                    let by = self.sample(d, &mut rng);
                    plan.stall += by;
                    Some(Effect::Stalled { by })
                }
                Fault::Throttle { read, write } => {
                    plan.read_rate = min_rate(plan.read_rate, *read);
                    plan.write_rate = min_rate(plan.write_rate, *write);
                    Some(Effect::Throttled {
                        read: *read,
                        write: *write,
                    })
                }
                Fault::LoseAck(loss) => {
                    let outcome = self.loss(loss);
                    let how = Lost::of(&outcome);
                    plan.action = Action::After(outcome);
                    Some(Effect::LostAck { how })
                }
                Fault::LoseRequest(loss) => {
                    let outcome = self.loss(loss);
                    let how = Lost::of(&outcome);
                    plan.action = Action::Instead(outcome);
                    Some(Effect::LostRequest { how })
                }
                Fault::ResetMidBody { after, keep } => {
                    let of = facts.range.map_or(0, |r| r.len());
                    let after = after.of(of);
                    plan.action = Action::ResetMidBody { after, keep: *keep };
                    Some(Effect::ResetMidBody {
                        after,
                        of,
                        keep: *keep,
                    })
                }
                Fault::LoseSession(loss) => {
                    let loss = match loss {
                        SessionLoss::Expire(idle) => SessionLoss::Expire(self.scale(*idle)),
                        other => *other,
                    };
                    plan.action = Action::LoseSession(loss);
                    Some(Effect::LostSession { loss })
                }
                Fault::Status {
                    status,
                    code,
                    context,
                    retry_after,
                } => {
                    let mut ack = Ack::status(*status);
                    ack.error = code.map(|code| AckError {
                        code,
                        context: context.unwrap_or(0x5),
                    });
                    let mut rendered = ack.render(self.error_header);
                    if let Some(seconds) = retry_after {
                        rendered.set("Retry-After", seconds.to_string());
                    }
                    plan.action = Action::Instead(Outcome::Respond(rendered));
                    Some(Effect::Status { status: *status })
                }
                Fault::Lie(lie) => {
                    plan.action = Action::Lie {
                        lie: *lie,
                        other: SessionId::from_bytes(rng.random()),
                    };
                    Some(Effect::Lied { lie: *lie })
                }
                Fault::Broken(broken) => {
                    plan.action = Action::After(Outcome::Broken(*broken, rng.random()));
                    Some(Effect::Broken { broken: *broken })
                }
                Fault::Mutate(mu) => {
                    plan.action = Action::Mutate {
                        seed: rng.random(),
                        families: mu.families.clone(),
                        count: mu.count,
                        other: SessionId::from_bytes(rng.random()),
                    };
                    // The mutations are known once the answer is: `fault::answer` fills them in.
                    Some(Effect::Mutated {
                        mutations: Vec::new(),
                    })
                }
                Fault::Auth(auth) => match challenge(auth, self.ids[i], facts, conn) {
                    Some(rendered) => {
                        plan.action = Action::Instead(Outcome::Respond(rendered));
                        Some(Effect::Challenged {
                            scheme: auth.scheme,
                        })
                    }
                    None => None,
                },
                Fault::Refuse | Fault::Tls(_) | Fault::MemberDown { .. } | Fault::Notify(_) => None,
            };
            if let Some(effect) = effect {
                self.fires[i] += 1;
                plan.firings.push(Firing {
                    rule: self.ids[i] as usize,
                    name: self.rules[i].name.clone(),
                    packet: Some(facts.packet),
                    session: facts.session,
                    index,
                    range: facts.range,
                    effect,
                });
            }
        }
        plan.stall = plan.stall.min(MAX_DELAY);
        plan.delay = plan.delay.min(MAX_DELAY);
        plan
    }

    /// Counts the packet within its session and returns its index (1-based, per type).
    fn count(&mut self, facts: &Facts<'_>) -> u64 {
        if facts.session == 0 {
            return 0;
        }
        if self.packets.len() >= TRACKED_SESSIONS && !self.packets.contains_key(&facts.session) {
            let newest = self.packets.keys().copied().max().unwrap_or(0);
            let keep_from = newest.saturating_sub(TRACKED_SESSIONS as u64 / 2);
            self.packets.retain(|&ordinal, _| ordinal >= keep_from);
        }
        let counts = self.packets.entry(facts.session).or_default();
        let slot = &mut counts[type_index(facts.packet)];
        *slot += 1;
        *slot
    }

    fn matches(&self, i: usize, facts: &Facts<'_>, index: u64) -> bool {
        let rule = &self.rules[i];
        let t = &rule.trigger;
        if let Some(only) = rule.fault.only_packets()
            && !only.contains(&facts.packet)
        {
            return false;
        }
        t.packets.as_ref().is_none_or(|p| p.contains(&facts.packet))
            && t.session.is_none_or(|s| s == facts.session)
            && t.nth.is_none_or(|n| n == index)
            && t.position
                .is_none_or(|p| facts.range.is_some_and(|r| p.covers(&r)))
            && t.path
                .as_deref()
                .is_none_or(|g| super::rule::glob_matches(g, facts.path))
            && self.in_window(rule, facts.since_start)
    }

    fn in_window(&self, rule: &Rule, since_start: Duration) -> bool {
        rule.trigger
            .from
            .is_none_or(|f| since_start >= self.scale(f))
            && rule
                .trigger
                .until
                .is_none_or(|u| since_start < self.scale(u))
    }

    /// Counts a match and applies skip, every, times and probability. Returns the decision's
    /// RNG when the rule may fire.
    fn gate(&mut self, i: usize, session: u64, index: u64) -> Option<StdRng> {
        let rule = &self.rules[i];
        self.matches[i] += 1;
        let m = self.matches[i];
        if m <= rule.skip {
            return None;
        }
        if rule
            .trigger
            .every
            .is_some_and(|e| !(m - rule.skip).is_multiple_of(e))
        {
            return None;
        }
        if rule.times.is_some_and(|t| self.fires[i] >= t) {
            return None;
        }
        let mut rng = decision_rng(self.seed, self.ids[i], session, index, m);
        if let Some(p) = rule.trigger.probability
            && rng.random::<f64>() >= p
        {
            return None;
        }
        Some(rng)
    }

    fn scale(&self, d: Duration) -> Duration {
        // `mul_f64` panics when the product overflows a Duration (a long hang or window under
        // a large `--time-scale`); anything that long saturates at MAX_DELAY anyway.
        Duration::try_from_secs_f64(d.as_secs_f64() * self.time_scale)
            .map_or(MAX_DELAY, |d| d.min(MAX_DELAY))
    }

    fn sample(&self, dist: &Dist, rng: &mut StdRng) -> Duration {
        let secs = match *dist {
            Dist::Fixed(d) => d.as_secs_f64(),
            Dist::Uniform { min, max } => {
                min.as_secs_f64() + (max.as_secs_f64() - min.as_secs_f64()) * rng.random::<f64>()
            }
            Dist::Normal { mean, stddev } => {
                mean.as_secs_f64() + stddev.as_secs_f64() * standard_normal(rng)
            }
            Dist::LogNormal { median, p99 } => {
                // p99 = median · e^(2.326·σ), the 99th percentile of a log-normal.
                let sigma = (p99.as_secs_f64() / median.as_secs_f64()).ln() / 2.326_347_874;
                (median.as_secs_f64().ln() + sigma * standard_normal(rng)).exp()
            }
            Dist::Exponential { mean } => -mean.as_secs_f64() * (1.0 - rng.random::<f64>()).ln(),
        };
        let secs = if secs.is_finite() { secs.max(0.0) } else { 0.0 };
        self.scale(Duration::from_secs_f64(secs.min(MAX_DELAY.as_secs_f64())))
    }

    fn loss(&self, loss: &Loss) -> Outcome {
        match *loss {
            Loss::Close => Outcome::Close,
            Loss::Reset => Outcome::Reset,
            Loss::Hang(d) => Outcome::Hang(self.scale(d)),
            Loss::Status(status) => Outcome::Respond(Ack::status(status).render(self.error_header)),
        }
    }
}

/// Decides whether an auth rule challenges this request; `None` lets it through.
fn challenge(auth: &Auth, rule: u64, facts: &Facts<'_>, conn: &mut ConnAuth) -> Option<Rendered> {
    let progress = conn.rules.entry(rule).or_default();
    let offered = facts.authorization.and_then(|a| {
        let (scheme, token) = a.trim().split_once(' ').unwrap_or((a.trim(), ""));
        scheme
            .eq_ignore_ascii_case(auth.scheme.token())
            .then(|| token.trim())
    });
    let mut header = auth.scheme.token().to_owned();
    let passed = match auth.scheme {
        Scheme::Basic => {
            header.push_str(" realm=\"bitsmock\"");
            let valid = offered.is_some_and(|token| basic_ok(token, auth.credentials.as_ref()));
            valid && !std::mem::take(&mut progress.demand_again)
        }
        Scheme::Negotiate | Scheme::Ntlm => {
            if progress.legs_done >= auth.legs {
                true
            } else {
                match offered {
                    Some(token) if !token.is_empty() => {
                        progress.legs_done += 1;
                        if progress.legs_done < auth.legs {
                            // A server token for the next leg, as a multi-leg exchange sends.
                            let challenge = format!("bitsmock-leg-{}", progress.legs_done);
                            header.push(' ');
                            header.push_str(
                                &base64::engine::general_purpose::STANDARD.encode(challenge),
                            );
                        }
                        progress.legs_done >= auth.legs
                    }
                    _ => {
                        progress.legs_done = 0;
                        false
                    }
                }
            }
        }
    };
    if passed {
        if facts.packet == PacketType::Fragment {
            progress.fragments += 1;
            if auth.again_after.is_some_and(|n| progress.fragments >= n) {
                progress.fragments = 0;
                progress.legs_done = 0;
                progress.demand_again = true;
            }
        }
        return None;
    }
    let mut rendered = Ack::status(401).render(ErrorHeader::Code);
    rendered.set("WWW-Authenticate", header);
    Some(rendered)
}

fn basic_ok(token: &str, expected: Option<&(String, String)>) -> bool {
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(token) else {
        return false;
    };
    let Ok(text) = String::from_utf8(decoded) else {
        return false;
    };
    let Some((user, password)) = text.split_once(':') else {
        return false;
    };
    expected.is_none_or(|(u, p)| u == user && p == password)
}

/// Rewrites a real Ack into a lying one (pure; the server sends the result).
pub fn lie(rendered: &mut Rendered, lie: Lie, total: Option<u64>, other: SessionId) {
    const RECEIVED: &str = "BITS-Received-Content-Range";
    let received = rendered
        .header(RECEIVED)
        .and_then(|v| v.parse::<u64>().ok());
    match lie {
        Lie::Behind(n) => {
            if let Some(r) = received {
                rendered.set(RECEIVED, r.saturating_sub(n).to_string());
            }
        }
        Lie::Ahead(n) => {
            if let Some(r) = received {
                let ahead = r.saturating_add(n);
                rendered.set(RECEIVED, total.map_or(ahead, |t| ahead.min(t)).to_string());
            }
        }
        Lie::BeyondTotal => {
            let beyond = total.or(received).unwrap_or(0).saturating_add(1);
            rendered.set(RECEIVED, beyond.to_string());
        }
        Lie::Malformed => rendered.set(RECEIVED, "bytes=oops".into()),
        Lie::Missing => rendered.remove(RECEIVED),
        Lie::OtherSession => rendered.set("BITS-Session-Id", other.to_string()),
        Lie::RangeNotSatisfiable(at) => {
            rendered.status = 416;
            rendered.remove("BITS-Error-Code");
            rendered.remove("BITS-Error");
            rendered.remove("BITS-Error-Context");
            rendered.remove("BITS-Reply-URL");
            rendered.set(RECEIVED, at.to_string());
        }
        Lie::NoReplyUrl => rendered.remove("BITS-Reply-URL"),
    }
}

/// The bytes of a broken response built from the real Ack (pure).
pub fn broken_bytes(broken: Broken, rendered: &Rendered, noise: u64) -> Vec<u8> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\n",
        rendered.status,
        reason(rendered.status)
    );
    for (name, value) in &rendered.headers {
        let value = if name.eq_ignore_ascii_case("Content-Length") && broken == Broken::WrongLength
        {
            "64"
        } else {
            value.as_str()
        };
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    match broken {
        Broken::TruncatedHeaders => {
            let cut = (head.len() / 2).max(1);
            head.as_bytes()[..cut].to_vec()
        }
        Broken::WrongLength => head.into_bytes(),
        Broken::Garbage => {
            let mut rng = StdRng::seed_from_u64(noise);
            (0..64).map(|_| rng.random::<u8>()).collect()
        }
    }
}

fn reason(status: u16) -> &'static str {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Unknown")
}

fn min_rate(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

fn type_index(t: PacketType) -> usize {
    match t {
        PacketType::Ping => 0,
        PacketType::CreateSession => 1,
        PacketType::Fragment => 2,
        PacketType::CloseSession => 3,
        PacketType::CancelSession => 4,
    }
}

/// One RNG per decision, from the tuple that identifies it.
fn decision_rng(seed: u64, rule: u64, session: u64, index: u64, matches: u64) -> StdRng {
    let mut h = splitmix(seed);
    for x in [rule, session, index, matches] {
        h = splitmix(h ^ x);
    }
    StdRng::seed_from_u64(h)
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A standard normal draw (Box–Muller).
fn standard_normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::profile::parse_rule_line;

    fn faults(rules: &[&str], seed: u64) -> Faults {
        let rules = rules
            .iter()
            .enumerate()
            .map(|(i, r)| parse_rule_line(r, "--fault", i + 1).unwrap())
            .collect();
        Faults::new(rules, seed, 1.0, ErrorHeader::Code)
    }

    fn fragment(session: u64, first: u64, last: u64, total: u64) -> Facts<'static> {
        Facts {
            packet: PacketType::Fragment,
            session,
            range: Some(ContentRange::new(first, last, total).unwrap()),
            path: "/drop/a.bin",
            since_start: Duration::ZERO,
            authorization: None,
        }
    }

    #[test]
    fn notify_rules_act_on_notifications_only_by_session_nth_path_and_window() {
        let mut f = faults(
            &[
                "fault=notify how=status status=503 session=2 nth=1",
                "fault=notify how=delay delay=2s path=/reply/slow/* times=1",
                "fault=notify how=refuse from=10s",
            ],
            1,
        );
        // Never planned for a BITS request, whatever matches.
        let plan = f.plan(&fragment(2, 0, 9, 10), &mut ConnAuth::default());
        assert_eq!(
            plan,
            Plan {
                index: 1,
                ..Plan::default()
            }
        );
        let decide = |f: &mut Faults, session, nth, path: &str, at| {
            f.notify(session, nth, path, Duration::from_secs(at))
                .map(|(firing, fault)| (firing.rule, firing.index, fault))
        };
        assert_eq!(decide(&mut f, 1, 1, "/reply/a", 0), None);
        assert_eq!(
            decide(&mut f, 2, 1, "/reply/a", 0),
            Some((0, 1, NotifyFault::Status(503)))
        );
        assert_eq!(decide(&mut f, 2, 2, "/reply/a", 0), None);
        assert_eq!(
            decide(&mut f, 3, 1, "/reply/slow/x", 0),
            Some((1, 1, NotifyFault::Delay(Duration::from_secs(2))))
        );
        assert_eq!(decide(&mut f, 3, 2, "/reply/slow/x", 0), None, "times=1");
        assert_eq!(
            decide(&mut f, 4, 1, "/reply/a", 11),
            Some((2, 1, NotifyFault::Refuse))
        );
        assert_eq!(f.fire_counts(), &[1, 1, 1]);
        // Durations follow the time scale.
        let rules = vec![parse_rule_line("fault=notify how=delay delay=2s", "r", 1).unwrap()];
        let mut scaled = Faults::new(rules, 0, 0.01, ErrorHeader::Code);
        let (_, fault) = scaled.notify(1, 1, "/reply/a", Duration::ZERO).unwrap();
        assert_eq!(fault, NotifyFault::Delay(Duration::from_millis(20)));
    }

    #[test]
    fn notify_decisions_follow_the_seed_and_can_be_suppressed() {
        let draw = |seed| {
            let mut f = faults(&["fault=notify how=twice probability=0.5"], seed);
            (1..=40)
                .map(|s| f.notify(s, 1, "/reply/a", Duration::ZERO).is_some())
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(5), draw(5));
        assert_ne!(draw(5), draw(6));
        let mut f = faults(&["fault=notify how=twice"], 0);
        f.suppress([FiringKey {
            rule: 0,
            session: 1,
            packet: PacketType::Fragment,
            index: 1,
        }]);
        assert!(f.notify(1, 1, "/reply/a", Duration::ZERO).is_none());
        assert!(f.notify(1, 2, "/reply/a", Duration::ZERO).is_some());
    }

    fn packet(packet: PacketType, session: u64) -> Facts<'static> {
        Facts {
            packet,
            session,
            range: None,
            path: "/drop/a.bin",
            since_start: Duration::ZERO,
            authorization: None,
        }
    }

    /// Runs 3 sessions × (create, 10 fragments, close) and returns which (session, index)
    /// pairs fired.
    fn run(f: &mut Faults) -> Vec<(u64, PacketType, u64, Effect)> {
        let mut conn = ConnAuth::default();
        let mut fired = Vec::new();
        for s in 1..=3 {
            let mut all = vec![packet(PacketType::CreateSession, s)];
            all.extend((0..10).map(|i| fragment(s, i * 10, i * 10 + 9, 100)));
            all.push(packet(PacketType::CloseSession, s));
            for facts in all {
                for firing in f.plan(&facts, &mut conn).firings {
                    fired.push((
                        firing.session,
                        firing.packet.unwrap(),
                        firing.index,
                        firing.effect,
                    ));
                }
            }
        }
        fired
    }

    #[test]
    fn a_plan_carries_the_packet_index_and_forgetting_sessions_restarts_it() {
        let mut f = faults(&[], 0);
        let mut conn = ConnAuth::default();
        let index =
            |f: &mut Faults, conn: &mut ConnAuth| f.plan(&fragment(1, 0, 9, 10), conn).index;
        assert_eq!(index(&mut f, &mut conn), 1);
        assert_eq!(index(&mut f, &mut conn), 2);
        assert_eq!(f.plan(&packet(PacketType::Ping, 0), &mut conn).index, 0);
        f.forget_sessions();
        assert_eq!(index(&mut f, &mut conn), 1, "counted from 1 again");
    }

    #[test]
    fn every_effect_reads_as_a_sentence_in_the_profile_vocabulary() {
        let ms = Duration::from_millis;
        let cases = [
            (
                Effect::Delayed { by: ms(250) },
                "delayed the answer by 250ms",
            ),
            (
                Effect::Stalled { by: ms(1500) },
                "stalled before reading the body for 1.5s",
            ),
            (
                Effect::Throttled {
                    read: Some(1000),
                    write: None,
                },
                "throttled reads to 1000 B/s, writes to full speed",
            ),
            (
                Effect::LostAck { how: Lost::Reset },
                "applied the packet, then lost its Ack (connection reset)",
            ),
            (
                Effect::LostAck {
                    how: Lost::Hung { for_: ms(2000) },
                },
                "applied the packet, then lost its Ack (hung for 2s)",
            ),
            (
                Effect::LostRequest { how: Lost::Closed },
                "lost the request unapplied (connection closed)",
            ),
            (
                Effect::LostAck {
                    how: Lost::Status { status: 503 },
                },
                "applied the packet, then lost its Ack (answered 503)",
            ),
            (
                Effect::ResetMidBody {
                    after: 10,
                    of: 40,
                    keep: false,
                },
                "reset after 10 of 40 body bytes, discarding them",
            ),
            (
                Effect::LostSession {
                    loss: SessionLoss::All { keep_file: true },
                },
                "forgot every session (restart) (temp file kept) after answering",
            ),
            (
                Effect::Status { status: 500 },
                "answered 500 without applying the packet",
            ),
            (
                Effect::Lied {
                    lie: Lie::Behind(100),
                },
                "applied the packet, then lied: behind by=100",
            ),
            (
                Effect::Broken {
                    broken: Broken::Garbage,
                },
                "applied the packet, then sent a broken response: garbage",
            ),
            (
                Effect::Challenged {
                    scheme: Scheme::Ntlm,
                },
                "demanded NTLM authentication",
            ),
            (Effect::Refused, "refused the connection"),
            (
                Effect::Tls {
                    fault: TlsFault::Cert(crate::fault::BadCert::WrongHost),
                },
                "presented a bad TLS certificate (wrong-host)",
            ),
            (
                Effect::Tls {
                    fault: TlsFault::HandshakeStall(Duration::from_millis(1500)),
                },
                "stalled the TLS handshake for 1.5s",
            ),
            (
                Effect::Tls {
                    fault: TlsFault::HandshakeReset,
                },
                "reset the TLS handshake",
            ),
            (
                Effect::MemberDown {
                    member: 2,
                    how: Down::Refuse,
                },
                "farm member 2 is down: refused",
            ),
            (
                Effect::MemberDown {
                    member: 1,
                    how: Down::Blackhole,
                },
                "farm member 1 is down: no answer",
            ),
            (
                Effect::Tls {
                    fault: TlsFault::CloseNoNotify,
                },
                "closed mid-body without TLS close_notify",
            ),
        ];
        for (effect, sentence) in cases {
            assert_eq!(effect.to_string(), sentence);
        }
    }

    #[test]
    fn removing_a_rule_leaves_the_other_rules_decisions_alone() {
        let lines = [
            "packet=fragment probability=0.5 fault=lose-ack how=close",
            "packet=fragment probability=0.5 fault=delay delay=1ms",
        ];
        let mut both = faults(&lines, 3);
        let mut second = faults(&lines, 3);
        assert!(second.remove(0));
        assert!(!second.remove(0), "ids are not reused");
        assert_eq!(second.ids(), &[1]);
        let delays = |f: &mut Faults| {
            run(f)
                .into_iter()
                .filter(|(_, _, _, e)| matches!(e, Effect::Delayed { .. }))
                .map(|(s, _, i, _)| (s, i))
                .collect::<Vec<_>>()
        };
        // Rule 1 may be pre-empted by rule 0 only for fate faults; a delay always combines.
        assert_eq!(delays(&mut both), delays(&mut second));
        assert!(!delays(&mut second).is_empty());
    }

    #[test]
    fn armed_rules_get_fresh_ids_and_a_replaced_set_starts_over() {
        let mut f = faults(&["packet=ping fault=status status=503"], 0);
        let id = f.push(parse_rule_line("packet=ping fault=delay delay=1ms", "t", 2).unwrap());
        assert_eq!((id, f.ids()), (1, &[0u64, 1][..]));
        f.plan(&packet(PacketType::Ping, 0), &mut ConnAuth::default());
        assert_eq!(f.fire_counts(), &[1, 1]);
        let rule = parse_rule_line("packet=ping fault=status status=500", "t", 1).unwrap();
        f.replace(vec![rule]);
        assert_eq!((f.ids(), f.fire_counts()), (&[0u64][..], &[0u64][..]));
        assert_eq!(
            f.push(parse_rule_line("fault=delay delay=1ms", "t", 2).unwrap()),
            1
        );
        assert_eq!(
            f.push(parse_rule_line("fault=delay delay=2ms", "t", 3).unwrap()),
            2
        );
        assert!(f.remove(2));
        let plan = f.plan(&packet(PacketType::Ping, 0), &mut ConnAuth::default());
        assert_eq!(plan.firings.len(), 2);
        assert_eq!(plan.firings[0].effect, Effect::Status { status: 500 });
    }

    #[test]
    fn huge_durations_under_a_large_time_scale_saturate_instead_of_panicking() {
        // fuzz/regressions/fault_plan/time-scale-overflows-a-normal-delay
        let rule = parse_rule_line("fault=lose-ack how=hang hang=100000000000000000", "t", 1);
        let mut f = Faults::new(vec![rule.unwrap()], 0, 1e300, ErrorHeader::Code);
        let plan = f.plan(&packet(PacketType::Ping, 0), &mut ConnAuth::default());
        assert_eq!(plan.action, Action::After(Outcome::Hang(MAX_DELAY)));
    }

    #[test]
    fn nth_and_session_pick_exactly_one_packet() {
        let mut f = faults(
            &["packet=fragment session=2 nth=3 fault=lose-ack how=reset"],
            0,
        );
        let fired = run(&mut f);
        assert_eq!(fired.len(), 1);
        assert_eq!(
            (fired[0].0, fired[0].1, fired[0].2),
            (2, PacketType::Fragment, 3)
        );
        assert_eq!(f.fire_counts(), &[1]);
    }

    #[test]
    fn every_skip_and_times_shape_the_firing_pattern() {
        let mut f = faults(
            &["packet=fragment every=4 skip=2 times=3 fault=lose-ack"],
            0,
        );
        let fired = run(&mut f);
        // Matches 1-2 skipped; then every 4th of the rest: matches 6, 10, 14 → capped at 3.
        let positions: Vec<_> = fired.iter().map(|f| (f.0, f.2)).collect();
        assert_eq!(positions, vec![(1, 6), (1, 10), (2, 4)]);
    }

    #[test]
    fn the_same_seed_gives_the_same_faults_and_another_seed_others() {
        let rules = ["packet=fragment probability=0.3 fault=lose-ack how=close"];
        let a = run(&mut faults(&rules, 42));
        let b = run(&mut faults(&rules, 42));
        let c = run(&mut faults(&rules, 43));
        assert!(!a.is_empty());
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn a_decision_does_not_depend_on_other_rules() {
        let alone = run(&mut faults(
            &["packet=fragment probability=0.3 fault=delay delay=1ms"],
            9,
        ));
        let mut f = faults(
            &[
                "packet=fragment probability=0.3 fault=delay delay=1ms",
                "packet=close-session probability=0.5 fault=lose-ack",
            ],
            9,
        );
        let with_other: Vec<_> = run(&mut f)
            .into_iter()
            .filter(|x| x.1 == PacketType::Fragment)
            .collect();
        assert_eq!(alone, with_other);
    }

    #[test]
    fn modifiers_combine_and_the_first_action_wins() {
        let mut f = faults(
            &[
                "fault=delay delay=10ms",
                "fault=delay delay=5ms",
                "packet=fragment fault=lose-ack how=reset",
                "packet=fragment fault=status status=503",
                "fault=throttle read-rate=100 write-rate=50",
            ],
            0,
        );
        let plan = f.plan(&fragment(1, 0, 9, 10), &mut ConnAuth::default());
        assert_eq!(plan.delay, Duration::from_millis(15));
        assert_eq!(plan.action, Action::After(Outcome::Reset));
        assert_eq!((plan.read_rate, plan.write_rate), (Some(100), Some(50)));
        assert_eq!(f.fire_counts(), &[1, 1, 1, 0, 1]);
    }

    #[test]
    fn delay_distributions_stay_in_their_bounds_and_scale() {
        let mut f = faults(&["fault=delay distribution=uniform min=10ms max=20ms"], 1);
        for i in 0..200 {
            let d = f
                .plan(&packet(PacketType::Ping, 0), &mut ConnAuth::default())
                .delay;
            assert!(
                d >= Duration::from_millis(10) && d <= Duration::from_millis(20),
                "{i}: {d:?}"
            );
        }
        let rules = vec![parse_rule_line("fault=delay delay=10s", "x", 1).unwrap()];
        let mut scaled = Faults::new(rules, 0, 0.01, ErrorHeader::Code);
        let d = scaled
            .plan(&packet(PacketType::Ping, 0), &mut ConnAuth::default())
            .delay;
        assert_eq!(d, Duration::from_millis(100));
        let mut ln = faults(
            &["fault=delay distribution=lognormal median=100ms p99=1s"],
            3,
        );
        let mut samples: Vec<_> = (0..2001)
            .map(|_| {
                ln.plan(&packet(PacketType::Ping, 0), &mut ConnAuth::default())
                    .delay
            })
            .collect();
        samples.sort();
        let median = samples[1000].as_secs_f64();
        assert!((0.08..0.125).contains(&median), "median {median}");
    }

    #[test]
    fn positions_paths_and_windows_restrict_matches() {
        let mut f = faults(
            &[
                "offset=50% fault=lose-ack",
                "path=/other/* fault=status status=500",
                "from=10s until=20s fault=status status=503",
            ],
            0,
        );
        let mut conn = ConnAuth::default();
        assert_eq!(
            f.plan(&fragment(1, 0, 9, 100), &mut conn).action,
            Action::Apply
        );
        assert_eq!(
            f.plan(&fragment(1, 50, 59, 100), &mut conn).action,
            Action::After(Outcome::Close)
        );
        let mut late = packet(PacketType::Ping, 0);
        late.since_start = Duration::from_secs(15);
        assert!(
            matches!(f.plan(&late, &mut conn).action, Action::Instead(Outcome::Respond(ref r)) if r.status == 503)
        );
        late.since_start = Duration::from_secs(20);
        assert_eq!(f.plan(&late, &mut conn).action, Action::Apply);
    }

    #[test]
    fn status_injection_carries_code_context_and_retry_after() {
        let mut f = faults(
            &["fault=status status=500 code=0x80070112 retry-after=7"],
            0,
        );
        let plan = f.plan(&packet(PacketType::Ping, 0), &mut ConnAuth::default());
        let Action::Instead(Outcome::Respond(r)) = plan.action else {
            panic!("{plan:?}");
        };
        assert_eq!(r.status, 500);
        assert_eq!(r.header("BITS-Error-Code"), Some("0x80070112"));
        assert_eq!(r.header("BITS-Error-Context"), Some("0x5"));
        assert_eq!(r.header("Retry-After"), Some("7"));
        assert_eq!(r.header("BITS-Packet-Type"), Some("Ack"));
    }

    #[test]
    fn refuse_fires_only_inside_its_window() {
        let mut f = faults(&["from=1s until=2s fault=refuse"], 0);
        assert!(f.refuse(1, Duration::from_millis(500)).is_none());
        assert!(f.refuse(2, Duration::from_millis(1500)).is_some());
        assert!(f.refuse(3, Duration::from_millis(2500)).is_none());
        // Refuse rules never act on requests.
        let mut g = faults(&["fault=refuse"], 0);
        assert_eq!(
            g.plan(&packet(PacketType::Ping, 0), &mut ConnAuth::default())
                .action,
            Action::Apply
        );
    }

    #[test]
    fn tls_rules_pick_connections_by_number_window_and_chance_and_scale_stalls() {
        let mut f = faults(
            &[
                "connection=2 fault=tls cert=expired",
                "from=1s until=2s fault=tls handshake=stall hang=10s",
                "connection=1 fault=refuse",
            ],
            0,
        );
        assert!(
            f.tls(1, Duration::ZERO).is_none(),
            "refuse rules are not tls rules"
        );
        let (firing, fault) = f.tls(2, Duration::ZERO).unwrap();
        assert_eq!(fault, TlsFault::Cert(crate::fault::BadCert::Expired));
        assert_eq!((firing.rule, firing.packet), (0, None));
        assert!(f.tls(3, Duration::ZERO).is_none());
        assert!(f.tls(4, Duration::from_millis(1500)).is_some());
        assert_eq!(f.fire_counts(), [1, 1, 0]);
        assert!(f.refuse(2, Duration::ZERO).is_none());
        assert!(f.refuse(1, Duration::ZERO).is_some());
        // Tls rules never act on requests.
        assert_eq!(
            f.plan(&packet(PacketType::Ping, 0), &mut ConnAuth::default())
                .action,
            Action::Apply
        );
        // Durations follow --time-scale, like every other fault's.
        let mut scaled = faults(&["fault=tls handshake=stall hang=10s"], 0);
        scaled.time_scale = 0.1;
        let (_, fault) = scaled.tls(1, Duration::ZERO).unwrap();
        assert_eq!(fault, TlsFault::HandshakeStall(Duration::from_secs(1)));
        // With a probability the draws come from the seed: the same picks on every run.
        let picks = |seed| {
            let mut f = faults(&["probability=0.5 fault=tls handshake=reset"], seed);
            (1..=32)
                .map(|conn| f.tls(conn, Duration::ZERO).is_some())
                .collect::<Vec<_>>()
        };
        assert_eq!(picks(7), picks(7));
        assert!(picks(7).contains(&true) && picks(7).contains(&false));
    }

    #[test]
    fn basic_auth_checks_credentials_and_can_demand_them_again() {
        let mut f = faults(
            &["fault=auth scheme=basic user=u password=p again-after=2"],
            0,
        );
        let mut conn = ConnAuth::default();
        let good = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("u:p")
        );
        let bad = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("u:x")
        );
        let with = |auth: &'static str| Facts {
            authorization: Some(auth),
            ..fragment(1, 0, 0, 10)
        };
        let plan = f.plan(&packet(PacketType::Ping, 0), &mut conn);
        let Action::Instead(Outcome::Respond(r)) = &plan.action else {
            panic!("{plan:?}");
        };
        assert_eq!(r.status, 401);
        assert_eq!(
            r.header("WWW-Authenticate"),
            Some("Basic realm=\"bitsmock\"")
        );
        let good: &'static str = Box::leak(good.into_boxed_str());
        let bad: &'static str = Box::leak(bad.into_boxed_str());
        assert_ne!(f.plan(&with(bad), &mut conn).action, Action::Apply);
        assert_eq!(f.plan(&with(good), &mut conn).action, Action::Apply);
        assert_eq!(f.plan(&with(good), &mut conn).action, Action::Apply);
        // After 2 fragments the server demands credentials once more.
        assert_ne!(f.plan(&with(good), &mut conn).action, Action::Apply);
        assert_eq!(f.plan(&with(good), &mut conn).action, Action::Apply);
    }

    #[test]
    fn negotiate_takes_its_legs_per_connection() {
        let mut f = faults(&["fault=auth scheme=negotiate legs=2"], 0);
        let mut conn = ConnAuth::default();
        let ping = |auth| Facts {
            authorization: auth,
            ..packet(PacketType::Ping, 0)
        };
        let status = |plan: Plan| match plan.action {
            Action::Instead(Outcome::Respond(r)) => {
                (r.status, r.header("WWW-Authenticate").map(str::to_owned))
            }
            other => (200, Some(format!("{other:?}"))),
        };
        assert_eq!(
            status(f.plan(&ping(None), &mut conn)),
            (401, Some("Negotiate".into()))
        );
        let (s, challenge) = status(f.plan(&ping(Some("Negotiate dG9rMQ==")), &mut conn));
        assert_eq!(s, 401);
        assert!(challenge.unwrap().starts_with("Negotiate "));
        assert_eq!(
            status(f.plan(&ping(Some("Negotiate dG9rMg==")), &mut conn)).0,
            200
        );
        assert_eq!(
            status(f.plan(&ping(None), &mut conn)).0,
            200,
            "connection stays authenticated"
        );
        let mut other_conn = ConnAuth::default();
        assert_eq!(status(f.plan(&ping(None), &mut other_conn)).0, 401);
    }

    #[test]
    fn lies_rewrite_only_what_they_name() {
        let other = SessionId::from_bytes([7; 16]);
        let base = Ack::ok()
            .with_session(Some("{S}"))
            .with_received(1000)
            .render(ErrorHeader::Code);
        let rewrite = |l: Lie| {
            let mut r = base.clone();
            lie(&mut r, l, Some(5000), other);
            r
        };
        assert_eq!(
            rewrite(Lie::Behind(100)).header("BITS-Received-Content-Range"),
            Some("900")
        );
        assert_eq!(
            rewrite(Lie::Behind(5000)).header("BITS-Received-Content-Range"),
            Some("0")
        );
        assert_eq!(
            rewrite(Lie::Ahead(100)).header("BITS-Received-Content-Range"),
            Some("1100")
        );
        assert_eq!(
            rewrite(Lie::Ahead(9000)).header("BITS-Received-Content-Range"),
            Some("5000")
        );
        assert_eq!(
            rewrite(Lie::BeyondTotal).header("BITS-Received-Content-Range"),
            Some("5001")
        );
        assert!(
            rewrite(Lie::Malformed)
                .header("BITS-Received-Content-Range")
                .unwrap()
                .parse::<u64>()
                .is_err()
        );
        assert_eq!(
            rewrite(Lie::Missing).header("BITS-Received-Content-Range"),
            None
        );
        assert_eq!(
            rewrite(Lie::OtherSession).header("BITS-Session-Id"),
            Some(other.to_string().as_str())
        );
        let r = rewrite(Lie::RangeNotSatisfiable(0));
        assert_eq!(
            (r.status, r.header("BITS-Received-Content-Range")),
            (416, Some("0"))
        );
        let mut with_url = base.clone();
        with_url.set("BITS-Reply-URL", "http://x/r".into());
        lie(&mut with_url, Lie::NoReplyUrl, Some(5000), other);
        assert_eq!(with_url.header("BITS-Reply-URL"), None);
        assert_eq!(with_url.header("BITS-Received-Content-Range"), Some("1000"));
    }

    #[test]
    fn broken_responses_are_not_valid_http() {
        let ack = Ack::ok().with_received(10).render(ErrorHeader::Code);
        let truncated = broken_bytes(Broken::TruncatedHeaders, &ack, 0);
        assert!(truncated.starts_with(b"HTTP/1.1 200"));
        assert!(!truncated.windows(4).any(|w| w == b"\r\n\r\n"));
        let wrong = String::from_utf8(broken_bytes(Broken::WrongLength, &ack, 0)).unwrap();
        assert!(wrong.contains("Content-Length: 64\r\n") && wrong.ends_with("\r\n\r\n"));
        assert_eq!(
            broken_bytes(Broken::Garbage, &ack, 5),
            broken_bytes(Broken::Garbage, &ack, 5)
        );
        assert_ne!(
            broken_bytes(Broken::Garbage, &ack, 5),
            broken_bytes(Broken::Garbage, &ack, 6)
        );
    }

    #[test]
    fn reset_mid_body_resolves_its_portion_against_the_fragment() {
        let mut f = faults(&["fault=reset-mid-body after-fraction=0.25 keep=false"], 0);
        let plan = f.plan(&fragment(1, 0, 99, 100), &mut ConnAuth::default());
        assert_eq!(
            plan.action,
            Action::ResetMidBody {
                after: 25,
                keep: false
            }
        );
        // Not a fragment: the rule does not even match.
        let plan = f.plan(&packet(PacketType::Ping, 0), &mut ConnAuth::default());
        assert_eq!(plan.action, Action::Apply);
    }
}
