//! Target `session_machine`: a derived [`Arbitrary`] list of operations applied to the pure
//! state machine [`Table`], with a model of the server's storage beside it.
//!
//! ```text
//!  Op::Create / Fragment / Close / Cancel / Ping / Advance / Expire / Restart / Forget / Idle
//!        │
//!        ▼
//!  Table::step ──▶ Step::Write ──▶ model file += stored extent ──▶ Table::record_fragment
//!              ──▶ Step::Close ──▶ CloseOutcome (arbitrary)    ──▶ Table::finish_close
//! ```
//!
//! The model stores each session's temp file as extents, which upload bytes sit at which
//! file offsets, exactly as the server would write them, including short stores (the body
//! ended early): byte-exact, without holding the bytes. After every operation:
//!
//! - the table and the model hold the same sessions, each with `received == stored bytes`,
//!   `received <= total`, and no bytes before the first fragment fixed the total;
//! - `received` never moves backwards; a session only disappears through a documented path
//!   (Cancel, a finished Close, idle expiry, `expire`, `clear`, `forget`);
//! - every Ack's `BITS-Received-Content-Range` equals the model's contiguous length;
//! - a closed, cancelled, expired or forgotten session is unknown afterwards (500 +
//!   `0x8020001F`, context 0x5, id echoed);
//! - every error Ack (>= 400 but for 401/404/405/409/413/416) carries a code and a context;
//! - nothing panics or overflows.

use super::assert_error_headers;
use crate::proto::ack::{Ack, AckError, ErrorHeader, PROTOCOL_GUID};
use crate::proto::error::BitsError;
use crate::proto::session::{Close, CloseOutcome, Env, Existing, Step, Table, Write, reply_url};
use crate::proto::{ContentRange, Destination, Overlap, Packet, Place, SessionId, Vdir};
use arbitrary::{Arbitrary, Unstructured};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const ORIGIN: &str = "http://bits.test:8080";
/// Session ids come from a small pool so that operations hit live, dead and reused ids.
const POOL: u8 = 8;
const DESTINATIONS: [&str; 4] = ["/drop/a.bin", "/drop/b.bin", "/reply/c.bin", "/c.bin"];

/// One fuzz input: a server configuration and the operations to run.
#[derive(Debug, Arbitrary)]
pub struct Input {
    pub vdir: VdirChoice,
    pub ops: Vec<Op>,
}

/// The knobs of [`Vdir`] that change the state machine's answers.
#[derive(Debug, Arbitrary)]
pub struct VdirChoice {
    pub strict: bool,
    /// `None`: the default limit (32 MiB).
    pub max_fragment: Option<u16>,
    pub max_upload: Option<u32>,
    /// 0: the default (14 days); otherwise seconds.
    pub timeout_secs: u16,
    pub allow_overwrites: bool,
    pub reply_jobs: bool,
    pub host_id: bool,
}

/// A session id from the pool (`slot % 8`) or, for 8 and up, one never issued.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub struct Slot(pub u8);

/// Where a fragment starts, relative to what the session holds.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Start {
    Expected,
    Behind(u16),
    Ahead(u16),
    At(u64),
}

#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Len {
    Small(u8),
    Medium(u16),
    /// Up to the end of the file.
    Rest,
    Any(u64),
}

#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Total {
    /// The session's total, or a small one before the first fragment.
    Same,
    Small(u8),
    Medium(u16),
    Any(u64),
}

/// How much of a planned write the server managed to store.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Stored {
    All,
    /// The body ended early: this many bytes (clamped by the core to the write's length).
    Short(u16),
    Nothing,
    /// More than planned (a buggy caller): the core must clamp it.
    Over(u16),
}

/// Something that happens between the core planning I/O and hearing how it went.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Meanwhile {
    Nothing,
    /// A fault forgot the session.
    Forget,
    /// A fault restarted the server.
    Clear,
    /// The outcome is reported twice (a confused caller): no double counting.
    ReportTwice,
}

/// One operation on the table.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Op {
    Create {
        id: Slot,
        destination: u8,
        existing: Existing,
    },
    Fragment {
        session: Slot,
        start: Start,
        len: Len,
        total: Total,
        stored: Stored,
        meanwhile: Meanwhile,
    },
    Close {
        session: Slot,
        outcome: CloseOutcome,
        meanwhile: Meanwhile,
    },
    Cancel {
        session: Slot,
    },
    Ping,
    /// Moves the clock; nothing sweeps.
    Advance {
        secs: u16,
    },
    /// Moves the clock, then sweeps idle sessions like the server's sweeper.
    Expire {
        secs: u16,
    },
    /// `clear()`: a server restart.
    Restart,
    Forget {
        session: Slot,
    },
    IdleTimeout {
        session: Slot,
        secs: u16,
    },
}

/// The `session_machine` target.
pub fn check(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    run(&input);
}

/// Runs every operation and checks the invariants after each one.
pub fn run(input: &Input) {
    let mut m = Machine::new(input.vdir.build());
    for (n, op) in input.ops.iter().enumerate() {
        m.apply(op);
        m.invariants(n, op);
    }
}

impl VdirChoice {
    pub fn build(&self) -> Vdir {
        Vdir {
            max_upload_size: self.max_upload.map(u64::from),
            max_fragment_size: self
                .max_fragment
                .map_or(Vdir::default().max_fragment_size, |n| u64::from(n).max(1)),
            session_timeout: match self.timeout_secs {
                0 => Vdir::default().session_timeout,
                s => Duration::from_secs(u64::from(s)),
            },
            allow_overwrites: self.allow_overwrites,
            reply_prefix: if self.reply_jobs {
                vec!["reply".to_owned()]
            } else {
                Vec::new()
            },
            // Notification needs an application on the network: not modelled here.
            notify_prefixes: Vec::new(),
            host_id: self.host_id.then(|| "node1.farm.test".to_owned()),
            host_id_fallback_timeout: self.host_id.then_some(600),
            max_sessions: Vdir::default().max_sessions,
            overlap: if self.strict {
                Overlap::Strict
            } else {
                Overlap::Tail
            },
            error_header: ErrorHeader::Code,
            // IIS framing and no memory of closed sessions: the machine checks the default core.
            content_length: Default::default(),
            remember_closed: None,
            farm: None,
        }
    }
}

fn id(slot: Slot) -> SessionId {
    SessionId::from_bytes([slot.0 % (POOL + 1) + 1; 16])
}

/// What the server's storage holds for one live session.
#[derive(Debug, Clone)]
struct File {
    ordinal: u64,
    destination: Destination,
    /// The temp file: `(upload offset, length)` runs of upload bytes, one after another from
    /// file offset 0, adjacent runs merged.
    extents: Vec<(u64, u64)>,
}

impl File {
    /// The temp file's length.
    fn len(&self) -> u64 {
        self.extents.iter().map(|&(_, n)| n).sum()
    }

    /// Appends `n` upload bytes starting at upload offset `from`.
    fn append(&mut self, from: u64, n: u64) {
        match self.extents.last_mut() {
            Some((start, len)) if *start + *len == from => *len += n,
            _ if n == 0 => {}
            _ => self.extents.push((from, n)),
        }
    }

    /// Whether file byte `i` is upload byte `i` for every byte: what a commit must place.
    fn is_the_upload(&self) -> bool {
        let mut at = 0;
        self.extents.iter().all(|&(from, n)| {
            let here = from == at;
            at += n;
            here
        })
    }
}

struct Machine {
    vdir: Vdir,
    table: Table,
    files: BTreeMap<SessionId, File>,
    now: Instant,
    /// `(id, ordinal, received)` of every session before the operation, for the
    /// monotonicity check.
    before: Vec<(SessionId, u64, u64)>,
    /// Sessions the operation may remove.
    may_remove: Vec<SessionId>,
    destinations: &'static [Destination],
}

impl Machine {
    fn new(vdir: Vdir) -> Self {
        Machine {
            vdir,
            table: Table::new(),
            files: BTreeMap::new(),
            now: Instant::now(),
            before: Vec::new(),
            may_remove: Vec::new(),
            destinations: destinations(),
        }
    }

    fn env(&self, fresh_id: SessionId, existing: Existing) -> Env<'static> {
        Env {
            now: self.now,
            fresh_id: Some(fresh_id),
            existing,
            origin: ORIGIN,
            place: Place::Front,
        }
    }

    /// Whether a live session is past its idle timeout now.
    fn expired(&self, id: &SessionId) -> bool {
        self.table.get(id).is_some_and(|s| {
            self.now.saturating_duration_since(s.last_activity)
                >= s.idle_timeout.unwrap_or(self.vdir.session_timeout)
        })
    }

    fn advance(&mut self, secs: u16) {
        if let Some(later) = self.now.checked_add(Duration::from_secs(u64::from(secs))) {
            self.now = later;
        }
    }

    fn apply(&mut self, op: &Op) {
        self.before.clear();
        for s in self.table.sessions() {
            self.before.push((s.id, s.ordinal, s.received));
        }
        self.may_remove.clear();
        match *op {
            Op::Create {
                id: slot,
                destination,
                existing,
            } => self.create(id(slot), destination, existing),
            Op::Fragment {
                session,
                start,
                len,
                total,
                stored,
                meanwhile,
            } => self.fragment(id(session), start, len, total, stored, meanwhile),
            Op::Close {
                session,
                outcome,
                meanwhile,
            } => self.close(id(session), outcome, meanwhile),
            Op::Cancel { session } => self.cancel(id(session)),
            Op::Ping => {
                let step = self.step(&Packet::Ping);
                assert_eq!(step, Step::Answer(Ack::ok()), "Ping");
            }
            Op::Advance { secs } => self.advance(secs),
            Op::Expire { secs } => {
                self.advance(secs);
                let due: BTreeSet<SessionId> = self
                    .table
                    .sessions()
                    .map(|s| s.id)
                    .filter(|id| self.expired(id))
                    .collect();
                let gone: BTreeSet<SessionId> = self
                    .table
                    .expire(self.now, self.vdir.session_timeout)
                    .into_iter()
                    .collect();
                assert_eq!(
                    gone, due,
                    "expire removed other sessions than the idle ones"
                );
                self.may_remove.extend(&gone);
                for id in gone {
                    self.removed(id);
                }
            }
            Op::Restart => {
                let all: BTreeSet<SessionId> = self.table.ids().copied().collect();
                let gone: BTreeSet<SessionId> = self.table.clear().into_iter().collect();
                assert_eq!(gone, all, "clear did not report every session");
                self.may_remove.extend(&gone);
                for id in gone {
                    self.removed(id);
                }
            }
            Op::Forget { session } => {
                let id = id(session);
                let live = self.files.contains_key(&id);
                assert_eq!(self.table.forget(&id), live, "forget({id})");
                self.may_remove.push(id);
                self.removed(id);
            }
            Op::IdleTimeout { session, secs } => {
                let id = id(session);
                let live = self.files.contains_key(&id);
                let set = self
                    .table
                    .set_idle_timeout(&id, Duration::from_secs(u64::from(secs)));
                assert_eq!(set, live, "set_idle_timeout({id})");
            }
        }
    }

    fn step(&mut self, packet: &Packet) -> Step {
        let env = self.env(SessionId::from_bytes([0xEE; 16]), Existing::Nothing);
        self.table.step(&self.vdir, packet, &env)
    }

    fn create(&mut self, fresh: SessionId, destination: u8, existing: Existing) {
        let destination =
            self.destinations[usize::from(destination) % self.destinations.len()].clone();
        // docs/protocol.md §7.4 / §7.10: what a Create-Session must answer here.
        let timeout = self.vdir.session_timeout;
        let busy = !self.vdir.allow_overwrites
            && self.table.sessions().any(|s| {
                s.destination == destination
                    && self.now.saturating_duration_since(s.last_activity)
                        < s.idle_timeout.unwrap_or(timeout)
            });
        let expected = match existing {
            Existing::Directory => Some((400, Some(BitsError::InvalidArg))),
            Existing::File if !self.vdir.allow_overwrites => Some((409, None)),
            _ if busy => Some((409, None)),
            _ if self.files.contains_key(&fresh) => Some((500, Some(BitsError::Internal))),
            _ => None,
        };
        let packet = Packet::CreateSession {
            destination: destination.clone(),
            protocol: PROTOCOL_GUID,
        };
        let created = self.table.created();
        let env = self.env(fresh, existing);
        let step = self.table.step(&self.vdir, &packet, &env);
        let Step::Answer(ack) = step else {
            panic!("Create-Session asked for I/O: {step:?}");
        };
        assert_error_headers(&ack, &packet);
        match expected {
            Some((status, error)) => {
                assert_eq!(
                    ack.status, status,
                    "Create-Session over {existing:?}: {ack:?}"
                );
                assert_eq!(ack.error, error.map(AckError::from), "{ack:?}");
                assert_eq!(
                    ack.session_id, None,
                    "a failed create issued an id: {ack:?}"
                );
                assert_eq!(self.table.created(), created);
            }
            None => {
                assert_eq!(ack.status, 200, "Create-Session: {ack:?}");
                assert_echoes(&ack, fresh, "Create-Session");
                assert_eq!(ack.protocol.as_deref(), Some(PROTOCOL_GUID));
                assert!(ack.accept_encoding);
                assert_eq!(ack.host_id, self.vdir.host_id);
                assert_eq!(self.table.created(), created + 1);
                let Some(s) = self.table.get(&fresh) else {
                    panic!("created session {fresh} is not in the table");
                };
                assert_eq!((s.total, s.received, s.ordinal), (None, 0, created + 1));
                assert_eq!(s.destination, destination);
                self.files.insert(
                    fresh,
                    File {
                        ordinal: created + 1,
                        destination,
                        extents: Vec::new(),
                    },
                );
            }
        }
    }

    fn fragment(
        &mut self,
        id: SessionId,
        start: Start,
        len: Len,
        total: Total,
        stored: Stored,
        meanwhile: Meanwhile,
    ) {
        let held = self.held(&id);
        let known_total = self.table.get(&id).and_then(|s| s.total);
        let total = match total {
            Total::Same => known_total.unwrap_or(64),
            Total::Small(n) => u64::from(n) + 1,
            Total::Medium(n) => u64::from(n) + 1,
            Total::Any(n) => n,
        };
        let first = match start {
            Start::Expected => held,
            Start::Behind(n) => held.saturating_sub(u64::from(n)),
            Start::Ahead(n) => held.saturating_add(u64::from(n)),
            Start::At(n) => n,
        };
        let last = match len {
            Len::Small(n) => first.checked_add(u64::from(n)),
            Len::Medium(n) => first.checked_add(u64::from(n)),
            Len::Rest => total.checked_sub(1),
            Len::Any(n) => first.checked_add(n),
        };
        // A range the packet parser would reject never reaches the table.
        let Some(range) = last.and_then(|last| ContentRange::new(first, last, total).ok()) else {
            return;
        };
        let packet = Packet::Fragment {
            destination: self
                .files
                .get(&id)
                .map_or_else(|| self.destinations[0].clone(), |f| f.destination.clone()),
            session: id,
            range,
        };
        let expired = self.expired(&id);
        if expired {
            self.may_remove.push(id);
        }
        let step = self.step(&packet);
        let ack = match step {
            Step::Answer(ack) if !self.files.contains_key(&id) => {
                assert_unknown(&ack, id, "Fragment on an unknown session");
                return;
            }
            Step::Discard(ack, gone) => {
                assert!(expired, "Fragment discarded a live session: {ack:?}");
                assert_eq!(gone, id);
                assert_unknown(&ack, id, "Fragment on an expired session");
                self.removed(id);
                return;
            }
            Step::Answer(ack) => {
                assert!(!expired, "an expired session answered a fragment: {ack:?}");
                self.answered(id, &range, &ack);
                ack
            }
            Step::Write(write) => {
                assert!(!expired, "an expired session accepted a fragment");
                self.write(id, &range, &write, stored, meanwhile)
            }
            Step::Close(_) => panic!("a fragment asked for a close: {step:?}"),
            // The model configures no notified application.
            Step::Notify(_) => panic!("a fragment asked for a notification: {step:?}"),
        };
        assert_error_headers(&ack, &packet);
    }

    /// A live session answered a fragment without asking for I/O (docs/protocol.md §7.5).
    fn answered(&self, id: SessionId, range: &ContentRange, ack: &Ack) {
        let held = self.held(&id);
        let Some(s) = self.table.get(&id) else {
            panic!("session {id} vanished while answering a fragment: {ack:?}");
        };
        assert_echoes(ack, id, "a fragment's answer");
        let before_total = self.before_total(&id);
        match ack.status {
            200 => {
                assert_eq!(ack.received, Some(held), "200 for a fragment: {ack:?}");
                assert!(
                    s.is_complete() || range.end() <= held,
                    "200 without writing, but {range} has new bytes past {held}"
                );
            }
            416 => {
                assert_eq!(ack.received, Some(held), "416 for a fragment: {ack:?}");
                assert!(
                    range.first() > held
                        || (range.first() < held && self.vdir.overlap == Overlap::Strict),
                    "416 for {range} while holding {held}"
                );
            }
            400 => {
                assert_eq!(ack.error, Some(BitsError::InvalidArg.into()), "{ack:?}");
                assert!(
                    before_total.is_some_and(|t| t != range.total()),
                    "400 for {range} although its total is consistent"
                );
            }
            500 => {
                assert_eq!(ack.error, Some(BitsError::TooLarge.into()), "{ack:?}");
                assert!(
                    self.vdir
                        .max_upload_size
                        .is_some_and(|max| range.total() > max)
                );
            }
            413 => assert!(range.len() > self.vdir.max_fragment_size),
            other => panic!("unexpected status {other} for a fragment: {ack:?}"),
        }
        if ack.status != 200 && ack.status != 416 {
            assert_eq!(ack.received, None, "{ack:?}");
        }
    }

    fn write(
        &mut self,
        id: SessionId,
        range: &ContentRange,
        write: &Write,
        stored: Stored,
        meanwhile: Meanwhile,
    ) -> Ack {
        let held = self.held(&id);
        assert_eq!(write.session, id);
        assert_eq!(write.range, *range);
        assert_eq!(
            write.at, held,
            "the core asked to write somewhere else than the end"
        );
        assert!(range.first() <= held && held < range.end(), "{write:?}");
        assert_eq!(write.skip, held - range.first(), "{write:?}");
        assert_eq!(write.len, range.end() - held, "{write:?}");
        assert!(write.len <= self.vdir.max_fragment_size, "{write:?}");
        if self.vdir.overlap == Overlap::Strict {
            assert_eq!(write.skip, 0, "strict overlap wrote a partly old fragment");
        }
        // What the server stores: body bytes [skip, skip + n) at file offset `at`.
        let wanted = match stored {
            Stored::All => write.len,
            Stored::Short(n) => u64::from(n).min(write.len),
            Stored::Nothing => 0,
            Stored::Over(n) => write.len.saturating_add(u64::from(n)),
        };
        let n = wanted.min(write.len);
        // The server writes whatever it read, but only acknowledges `n`: report `n`, or the
        // over-long claim to test the clamp.
        let reported = if matches!(stored, Stored::Over(_)) && n == write.len {
            wanted
        } else {
            n
        };
        if !self.meanwhile(id, meanwhile) {
            let Some(file) = self.files.get_mut(&id) else {
                panic!("writing to a session the model does not hold");
            };
            // Body byte `skip + i` of the fragment is upload byte `first + skip + i`; the
            // server writes it at file offset `at + i`. A committed file is checked whole.
            file.append(range.first() + write.skip, n);
        }
        let env = self.env(id, Existing::Nothing);
        let ack = self.table.record_fragment(write, reported, &env);
        if !self.files.contains_key(&id) {
            assert_unknown(&ack, id, "a fragment recorded after its session was lost");
            return ack;
        }
        self.recorded(id, &ack);
        if let Meanwhile::ReportTwice = meanwhile {
            let again = self.table.record_fragment(write, reported, &env);
            self.recorded(id, &again);
        }
        ack
    }

    fn recorded(&self, id: SessionId, ack: &Ack) {
        let held = self.held(&id);
        assert_eq!(ack.status, 200, "recording a write: {ack:?}");
        assert_echoes(ack, id, "recording a write");
        assert_eq!(
            ack.received,
            Some(held),
            "the Ack acknowledges other bytes than the ones stored: {ack:?}"
        );
        let Some(s) = self.table.get(&id) else {
            panic!("session {id} vanished while recording a write");
        };
        if s.is_complete() && s.reply {
            assert_eq!(ack.reply_url, Some(reply_url(ORIGIN, &id)), "{ack:?}");
        } else {
            assert_eq!(ack.reply_url, None, "{ack:?}");
        }
    }

    fn close(&mut self, id: SessionId, outcome: CloseOutcome, meanwhile: Meanwhile) {
        let packet = Packet::CloseSession {
            destination: self
                .files
                .get(&id)
                .map_or_else(|| self.destinations[0].clone(), |f| f.destination.clone()),
            session: id,
        };
        let expired = self.expired(&id);
        if expired {
            self.may_remove.push(id);
        }
        let step = self.step(&packet);
        let close: Close = match step {
            Step::Answer(ack) => {
                assert!(
                    !self.files.contains_key(&id),
                    "Close on a live session: {ack:?}"
                );
                assert_unknown(&ack, id, "Close on an unknown session");
                return;
            }
            Step::Discard(ack, gone) => {
                assert!(expired && gone == id, "Close discarded a live session");
                assert_unknown(&ack, id, "Close on an expired session");
                self.removed(id);
                return;
            }
            Step::Close(close) => close,
            Step::Write(_) | Step::Notify(_) => panic!("Close asked for a write: {step:?}"),
        };
        assert!(!expired, "an expired session was closed");
        let Some(s) = self.table.get(&id) else {
            panic!("closing session {id} is not in the table");
        };
        let file = &self.files[&id];
        assert_eq!(close.session, id);
        assert_eq!(close.destination, file.destination);
        let untouched = s.total.is_none() && file.extents.is_empty();
        let complete = s.total == Some(file.len());
        assert_eq!(
            close.commit,
            complete || untouched,
            "a partial upload must never be committed (docs/protocol.md §3.4)"
        );
        if close.commit {
            // What the server would place at the destination: exactly the uploaded bytes.
            assert!(
                file.is_the_upload(),
                "session {id} would commit a file that differs from the upload: {file:?}"
            );
        }
        self.meanwhile(id, meanwhile);
        let ack = self.table.finish_close(&close, outcome);
        assert_error_headers(&ack, &close);
        if !self.files.contains_key(&id) {
            assert_unknown(&ack, id, "a close finished after its session was lost");
            return;
        }
        assert_echoes(&ack, id, "finishing a close");
        let (status, error) = match outcome {
            CloseOutcome::Done => (200, None),
            CloseOutcome::Vanished => (500, Some(BitsError::SessionNotFound)),
            CloseOutcome::Conflict => (409, None),
            CloseOutcome::Directory => (400, Some(BitsError::InvalidArg)),
            CloseOutcome::Denied => (403, Some(BitsError::AccessDenied)),
            CloseOutcome::DiskFull => (500, Some(BitsError::DiskFull)),
            CloseOutcome::Failed => (500, Some(BitsError::Internal)),
        };
        assert_eq!(ack.status, status, "{outcome:?}: {ack:?}");
        assert_eq!(ack.error, error.map(AckError::from), "{outcome:?}: {ack:?}");
        if matches!(outcome, CloseOutcome::Done | CloseOutcome::Vanished) {
            self.may_remove.push(id);
            self.removed(id);
            if let Meanwhile::ReportTwice = meanwhile {
                let again = self.table.finish_close(&close, outcome);
                assert_unknown(&again, id, "a close reported twice");
            }
        }
    }

    /// Whatever happens between the core planning I/O for session `id` and hearing how it
    /// went; true if that lost the session (a forget or a restart).
    fn meanwhile(&mut self, id: SessionId, meanwhile: Meanwhile) -> bool {
        let gone = match meanwhile {
            Meanwhile::Forget => {
                self.table.forget(&id);
                vec![id]
            }
            Meanwhile::Clear => self.table.clear(),
            Meanwhile::Nothing | Meanwhile::ReportTwice => return false,
        };
        for gone in gone {
            self.may_remove.push(gone);
            self.removed(gone);
        }
        true
    }

    fn cancel(&mut self, id: SessionId) {
        let packet = Packet::CancelSession {
            destination: self.destinations[0].clone(),
            session: id,
        };
        let live = self.files.contains_key(&id);
        let expired = self.expired(&id);
        self.may_remove.push(id);
        match self.step(&packet) {
            Step::Answer(ack) => {
                assert!(!live, "Cancel on a live session asked for nothing: {ack:?}");
                assert_unknown(&ack, id, "Cancel on an unknown session");
            }
            Step::Discard(ack, gone) => {
                assert!(live, "Cancel discarded an unknown session");
                assert_eq!(gone, id);
                if expired {
                    assert_unknown(&ack, id, "Cancel on an expired session");
                } else {
                    assert_eq!(ack, Ack::ok().for_session(&id));
                }
                self.removed(id);
            }
            other => panic!("Cancel asked for I/O: {other:?}"),
        }
    }

    /// A session left the table: drop its file from the model and check it is unknown now.
    fn removed(&mut self, id: SessionId) {
        self.files.remove(&id);
        assert!(
            self.table.get(&id).is_none(),
            "removed session {id} is still live"
        );
        let sessions = self.table.len();
        // One probe stands for all three session packets: they share the lookup (§7.2 step 7).
        let probe = Packet::Fragment {
            destination: self.destinations[0].clone(),
            session: id,
            range: ContentRange::new(0, 0, 1).unwrap_or_else(|e| panic!("{e}")),
        };
        match self.step(&probe) {
            Step::Answer(ack) => assert_unknown(&ack, id, "a packet for a removed session"),
            other => panic!("a removed session {id} is still known: {other:?}"),
        }
        assert_eq!(
            self.table.len(),
            sessions,
            "probing an unknown id changed the table"
        );
    }

    fn held(&self, id: &SessionId) -> u64 {
        self.files.get(id).map_or(0, File::len)
    }

    fn before_total(&self, id: &SessionId) -> Option<u64> {
        self.table.get(id).and_then(|s| s.total)
    }

    /// The invariants that hold between any two operations.
    fn invariants(&self, n: usize, op: &Op) {
        assert_eq!(
            self.table.len(),
            self.files.len(),
            "after op {n} {op:?}: table and model hold different sessions"
        );
        for (id, _, _) in &self.before {
            assert!(
                self.files.contains_key(id) || self.may_remove.contains(id),
                "after op {n} {op:?}: session {id} vanished without a documented cause"
            );
        }
        for s in self.table.sessions() {
            let id = s.id;
            let Some(file) = self.files.get(&id) else {
                panic!("after op {n} {op:?}: session {id} is live but not in the model");
            };
            assert_eq!(s.ordinal, file.ordinal, "{id}");
            if let Some((_, ordinal, received)) = self.before.iter().find(|(b, _, _)| *b == id)
                && s.ordinal == *ordinal
            {
                assert!(
                    s.received >= *received,
                    "after op {n} {op:?}: session {id} went back from {received} to {}",
                    s.received
                );
            }
            assert_eq!(
                s.received,
                file.len(),
                "after op {n} {op:?}: session {id} claims {} bytes, storage holds {}",
                s.received,
                file.len()
            );
            match s.total {
                None => assert_eq!(s.received, 0, "bytes before the total was known"),
                Some(t) => assert!(s.received <= t, "received {} > total {t}", s.received),
            }
            if !s.is_complete() {
                assert_eq!(s.reply_url, None, "a reply URL before the upload completed");
            }
        }
    }
}

fn fixture(target: &str) -> Destination {
    Destination::parse(target).unwrap_or_else(|e| panic!("fixture {target}: {e}"))
}

/// The fixture destinations, parsed once per process.
fn destinations() -> &'static [Destination] {
    static PARSED: std::sync::OnceLock<Vec<Destination>> = std::sync::OnceLock::new();
    PARSED.get_or_init(|| DESTINATIONS.iter().map(|t| fixture(t)).collect())
}

/// The Ack names this session (compared as an id: its spelling is the unit tests' concern).
fn assert_echoes(ack: &Ack, id: SessionId, what: &str) {
    assert_eq!(
        ack.session_id.as_deref().and_then(SessionId::parse),
        Some(id),
        "{what}: {ack:?}"
    );
}

/// 500 + `BG_E_SESSION_NOT_FOUND`, context 0x5, echoing the id (docs/protocol.md §7.2 step 7).
fn assert_unknown(ack: &Ack, id: SessionId, what: &str) {
    assert_eq!(ack.status, 500, "{what}: {ack:?}");
    assert_eq!(
        ack.error,
        Some(AckError {
            code: 0x8020_001F,
            context: 0x5
        }),
        "{what}: {ack:?}"
    );
    assert_echoes(ack, id, what);
    assert_eq!(ack.received, None, "{what}: {ack:?}");
}
