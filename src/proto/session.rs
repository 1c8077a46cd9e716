//! Sessions and the server state machine of docs/protocol.md §7.3–§7.5, as pure functions.
//!
//! ```text
//!  (none) --Create-Session--> RECEIVE_FRAGMENTS --last byte--> WAIT_FOR_CLOSE
//!                                  |   ^ Fragment                  | Fragment: 200 + total
//!                                  |   +---(append / 416 / 400)    |
//!                     Close: discard partial               Close: commit
//!                     Cancel: delete                       Cancel: delete
//!                                  v                               v
//!                               (none)                          (none)
//! ```
//!
//! A [`Table`] holds every live [`Session`]. [`Table::step`] takes a validated packet and the
//! facts the server gathered (time, a fresh id, whether the destination exists) and returns a
//! [`Step`]: either the Ack to send, or the I/O the server must do first (stream a fragment
//! body, commit or discard a file) followed by a second call that yields the Ack. Nothing here
//! touches a file, a clock or a random number generator.

use super::ack::Ack;
use super::destination::Destination;
use super::error::BitsError;
use super::packet::{Packet, SessionId};
use super::range::ContentRange;
use super::vdir::{Overlap, Place, Vdir};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What the server found at the destination path before a Create-Session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
pub enum Existing {
    Nothing,
    File,
    Directory,
}

/// The facts a step needs from the outside world.
#[derive(Debug, Clone)]
pub struct Env<'a> {
    pub now: Instant,
    /// The id a Create-Session issues, drawn by the server from the operating system's
    /// randomness, never from the fault seed. `None` when no id could be drawn (the
    /// Create-Session then fails with 500 rather than reuse one).
    pub fresh_id: Option<SessionId>,
    /// What exists at a Create-Session's destination.
    pub existing: Existing,
    /// `scheme://host[:port]` the client reached us at, for reply URLs.
    pub origin: &'a str,
    /// The front URL or the farm member the request arrived at.
    pub place: Place,
}

/// One live session (docs/protocol.md §7.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: SessionId,
    pub destination: Destination,
    /// Upload-reply job (destination under the reply prefix).
    pub reply: bool,
    /// 1 for the first session this server created, 2 for the second, …
    pub ordinal: u64,
    /// Fixed by the first accepted fragment.
    pub total: Option<u64>,
    /// Bytes stored contiguously from 0: the next byte wanted.
    pub received: u64,
    /// Set when the final fragment completes an upload-reply session (and, with a notified
    /// application, once it answered 200); re-sent on retries.
    pub reply_url: Option<String>,
    /// The reply comes from a notified server application (`Vdir::notify_prefixes`): the
    /// last byte puts the session in `NOTIFY` until [`Table::finish_notify`] succeeds.
    pub notified: bool,
    /// Close-Session commits the complete upload to its destination. Always for the
    /// built-in application; for a notified one only when it answered with
    /// `BITS-Copy-File-To-Destination` (docs/protocol.md §8.3).
    pub copy_to_destination: bool,
    pub last_activity: Instant,
    /// A shorter idle timeout for this session alone (a fault asked for it).
    pub idle_timeout: Option<Duration>,
    /// Where the session lives in a farm: the member a front Create-Session named, or where
    /// it was created. Elsewhere it is unknown, unless the farm's store is shared.
    pub home: Place,
}

impl Session {
    /// All bytes present (`WAIT_FOR_CLOSE`, or `NOTIFY` while the application has not
    /// answered 200 yet).
    pub fn is_complete(&self) -> bool {
        self.total == Some(self.received)
    }

    /// `NOTIFY`: complete, and the server application must be notified (again, after a
    /// failure) before the final Fragment Ack can carry a reply URL.
    pub fn awaits_notification(&self) -> bool {
        self.notified && self.is_complete() && self.reply_url.is_none()
    }

    fn expired(&self, now: Instant, timeout: Duration) -> bool {
        now.saturating_duration_since(self.last_activity) >= self.idle_timeout.unwrap_or(timeout)
    }

    fn ack(&self) -> Ack {
        Ack::ok().for_session(&self.id)
    }
}

/// Stream a fragment's body: skip the first `skip` bytes (already stored), write the next
/// `len` bytes at offset `at`. Then report with [`Table::record_fragment`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Write {
    pub session: SessionId,
    pub range: ContentRange,
    pub at: u64,
    pub skip: u64,
    pub len: u64,
}

/// End a session: commit its file to `destination`, or discard it. Then report with
/// [`Table::finish_close`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    pub session: SessionId,
    pub destination: Destination,
    /// False when the upload is incomplete: the partial file is discarded, never committed.
    pub commit: bool,
    /// No fragment ever arrived: the committed file is the empty file (docs/protocol.md
    /// §10.16), so a missing temp file is expected rather than a sign of lost data.
    pub empty: bool,
    /// When the Close-Session came and how long to remember the id once it is done
    /// (`Vdir::remember_closed`); `None` = forget it at once.
    pub remember: Option<(Instant, Duration)>,
}

/// A change to the set of live sessions. The table is the only source of these; the server
/// drains them after every step ([`Table::take_changes`]) and follows them (files, events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Created {
        id: SessionId,
        ordinal: u64,
        destination: Destination,
        reply: bool,
    },
    Gone {
        id: SessionId,
        ordinal: u64,
        why: Gone,
    },
}

/// Why a session left the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    /// Close-Session committed its file.
    Committed,
    /// Close-Session before the last byte: the partial file is discarded.
    Discarded,
    /// Its temp file was deleted behind the server's back: the Fragment or Close-Session
    /// that finds out answers `BG_E_SESSION_NOT_FOUND`, so the client starts over.
    Vanished,
    Cancelled,
    /// Idle longer than its timeout.
    Expired,
    /// Forgotten on purpose: a fault or a simulated restart.
    Forgotten,
}

impl Gone {
    /// The name logs and journals use (the serde name).
    pub fn as_str(self) -> &'static str {
        match self {
            Gone::Committed => "committed",
            Gone::Discarded => "discarded",
            Gone::Vanished => "vanished",
            Gone::Cancelled => "cancelled",
            Gone::Expired => "expired",
            Gone::Forgotten => "forgotten",
        }
    }
}

/// As [`Gone::as_str`], so logs and journals use one name table.
impl serde::Serialize for Gone {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl std::fmt::Display for Gone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the server must do for a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send this Ack; nothing else to do.
    Answer(Ack),
    /// Delete this session's files, then send the Ack (Cancel-Session, lazy expiry).
    Discard(Ack, SessionId),
    /// Stream the fragment body as described, then call `record_fragment`.
    Write(Write),
    /// Commit or discard, then call `finish_close`.
    Close(Close),
    /// A fragment for a complete session whose notification has not succeeded (a retried
    /// final fragment): notify the server application, then call `finish_notify`.
    Notify(SessionId),
}

/// What the server application's notification came to (docs/protocol.md §8.3–§8.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notified {
    /// 200: the reply is at `reply_url`; `copy` = commit the upload at Close-Session too.
    Reply { reply_url: String, copy: bool },
    /// Anything else: this Ack (the application's status, or the server's own error).
    Failed(Ack),
}

/// Reply URLs longer than this are an error (docs/protocol.md §7.7).
pub const MAX_REPLY_URL: usize = 2200;

/// How the server's commit at Close-Session went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
pub enum CloseOutcome {
    /// File placed at the destination (or discarded as planned).
    Done,
    /// The destination appeared meanwhile and overwrites are off: 409, session kept.
    Conflict,
    /// The destination is a directory: 400, session kept.
    Directory,
    /// The temp file vanished behind the server's back: 500 + `0x8020001F` (the client
    /// starts over; a 404 would be fatal to it), session removed.
    Vanished,
    /// The parent path cannot be created (a file is in the way): 403, session kept.
    Denied,
    /// The disk is full: 500 + `0x80070112`, session kept.
    DiskFull,
    /// Another storage failure (the log has the cause): 500 + `0x80004005`, session kept.
    Failed,
}

/// All live sessions.
#[derive(Debug, Default, Clone)]
pub struct Table {
    sessions: BTreeMap<SessionId, Session>,
    created: u64,
    changes: Vec<Change>,
    /// Sessions a Close-Session ended, and when (kept only under `Vdir::remember_closed`).
    closed: BTreeMap<SessionId, Instant>,
}

impl Table {
    pub fn new() -> Self {
        Table::default()
    }

    pub fn get(&self, id: &SessionId) -> Option<&Session> {
        self.sessions.get(id)
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// How many sessions were ever created; the next one gets ordinal `created() + 1`.
    pub fn created(&self) -> u64 {
        self.created
    }

    pub fn ids(&self) -> impl Iterator<Item = &SessionId> {
        self.sessions.keys()
    }

    /// Every live session, in id order (the same on every run).
    pub fn sessions(&self) -> impl Iterator<Item = &Session> {
        self.sessions.values()
    }

    /// The changes since the last call, oldest first.
    pub fn take_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.changes)
    }

    /// Removes a session and records why; the one way a session leaves the table.
    fn remove(&mut self, id: &SessionId, why: Gone) -> Option<Session> {
        let session = self.sessions.remove(id)?;
        self.changes.push(Change::Gone {
            id: *id,
            ordinal: session.ordinal,
            why,
        });
        Some(session)
    }

    /// Handles one packet (docs/protocol.md §7.4).
    pub fn step(&mut self, vdir: &Vdir, packet: &Packet, env: &Env<'_>) -> Step {
        match packet {
            Packet::Ping => Step::Answer(Ack::ok()),
            Packet::CreateSession {
                destination,
                protocol,
            } => Step::Answer(self.create(vdir, destination, protocol, env)),
            Packet::Fragment { session, range, .. } => {
                match self.live(vdir, session, env.now, env.place) {
                    Ok(s) => s.fragment(vdir, *range, env.now),
                    Err(step) => step,
                }
            }
            Packet::CloseSession { session, .. }
                if self.recently_closed(vdir, session, env.now) =>
            {
                // Its first Ack was lost: the client must not upload the file again.
                Step::Answer(Ack::ok().for_session(session))
            }
            Packet::CloseSession { session, .. } => {
                match self.live(vdir, session, env.now, env.place) {
                    Ok(s) => {
                        // A file no fragment ever touched is the empty file (docs/protocol.md §10.16).
                        let empty = s.total.is_none() && s.received == 0;
                        Step::Close(Close {
                            session: s.id,
                            destination: s.destination.clone(),
                            commit: (s.is_complete() && s.copy_to_destination) || empty,
                            empty,
                            remember: vdir.remember_closed.map(|keep| (env.now, keep)),
                        })
                    }
                    Err(step) => step,
                }
            }
            Packet::CancelSession { session, .. } => {
                match self.live(vdir, session, env.now, env.place) {
                    Ok(s) => {
                        let ack = s.ack();
                        self.remove(session, Gone::Cancelled);
                        Step::Discard(ack, *session)
                    }
                    Err(step) => step,
                }
            }
        }
    }

    /// Records the bytes a [`Write`] really stored and answers the fragment. `stored` may be
    /// short of `write.len` (the body ended early); only stored bytes are acknowledged.
    pub fn record_fragment(&mut self, write: &Write, stored: u64, env: &Env<'_>) -> Ack {
        let Some(s) = self.sessions.get_mut(&write.session) else {
            return Ack::error(BitsError::SessionNotFound).for_session(&write.session);
        };
        if s.received == write.at {
            s.received = write.at + stored.min(write.len);
            s.last_activity = env.now;
        }
        if s.is_complete() && s.reply && !s.notified && s.reply_url.is_none() {
            s.reply_url = Some(reply_url(env.origin, &s.id));
        }
        s.fragment_ack()
    }

    /// Finishes a notification (`NOTIFY`): on success the session waits for Close-Session
    /// and every later fragment gets the same reply URL; on failure it keeps its complete
    /// file, and the next fragment notifies again.
    pub fn finish_notify(&mut self, id: &SessionId, notified: Notified, now: Instant) -> Ack {
        let Some(s) = self.sessions.get_mut(id) else {
            return Ack::error(BitsError::SessionNotFound).for_session(id);
        };
        if !s.awaits_notification() {
            // Already answered (or never asked): the first outcome stands.
            return s.fragment_ack();
        }
        s.last_activity = now;
        match notified {
            Notified::Reply { reply_url, .. } if reply_url.len() > MAX_REPLY_URL => {
                Ack::error(BitsError::InvalidArg).for_session(id)
            }
            Notified::Reply { reply_url, copy } => {
                s.reply_url = Some(reply_url);
                s.copy_to_destination = copy;
                s.fragment_ack()
            }
            Notified::Failed(ack) => ack.for_session(id),
        }
    }

    /// Finishes a Close-Session after the server committed or discarded the file.
    pub fn finish_close(&mut self, close: &Close, outcome: CloseOutcome) -> Ack {
        if !self.sessions.contains_key(&close.session) {
            return Ack::error(BitsError::SessionNotFound).for_session(&close.session);
        }
        let ack = match outcome {
            CloseOutcome::Done => Ack::ok(),
            CloseOutcome::Vanished => Ack::error(BitsError::SessionNotFound),
            CloseOutcome::Conflict => Ack::status(409),
            CloseOutcome::Directory => Ack::error(BitsError::InvalidArg),
            CloseOutcome::Denied => Ack::error(BitsError::AccessDenied),
            CloseOutcome::DiskFull => Ack::error(BitsError::DiskFull),
            CloseOutcome::Failed => Ack::error(BitsError::Internal),
        };
        if let (CloseOutcome::Done, Some((now, keep))) = (outcome, close.remember) {
            // Pruned here, so the memory holds only the last `keep`'s worth of closes.
            self.closed
                .retain(|_, at| now.saturating_duration_since(*at) < keep);
            self.closed.insert(close.session, now);
        }
        match outcome {
            CloseOutcome::Done if close.commit => self.remove(&close.session, Gone::Committed),
            CloseOutcome::Done => self.remove(&close.session, Gone::Discarded),
            CloseOutcome::Vanished => self.remove(&close.session, Gone::Vanished),
            _ => None,
        };
        ack.for_session(&close.session)
    }

    /// Removes every session idle for `timeout` or longer; returns their ids.
    pub fn expire(&mut self, now: Instant, timeout: Duration) -> Vec<SessionId> {
        let gone: Vec<SessionId> = self
            .sessions
            .values()
            .filter(|s| s.expired(now, timeout))
            .map(|s| s.id)
            .collect();
        for id in &gone {
            self.remove(id, Gone::Expired);
        }
        gone
    }

    /// Gives one session its own (shorter) idle timeout; true if it exists.
    pub fn set_idle_timeout(&mut self, id: &SessionId, timeout: Duration) -> bool {
        match self.sessions.get_mut(id) {
            Some(s) => {
                s.idle_timeout = Some(timeout);
                true
            }
            None => false,
        }
    }

    /// Forgets one session (a fault, or resource pressure); true if it existed.
    pub fn forget(&mut self, id: &SessionId) -> bool {
        self.remove(id, Gone::Forgotten).is_some()
    }

    /// Forgets a session whose temp file was deleted behind the server's back (its bytes
    /// are gone); true if it existed.
    pub fn lose_file(&mut self, id: &SessionId) -> bool {
        self.remove(id, Gone::Vanished).is_some()
    }

    /// Forgets every session and numbers the next one 1 again (a reset between tests).
    pub fn reset(&mut self) {
        self.clear();
        self.created = 0;
    }

    /// Forgets every session, like a server restart; returns their ids.
    pub fn clear(&mut self) -> Vec<SessionId> {
        self.closed.clear();
        let ids: Vec<SessionId> = self.sessions.keys().copied().collect();
        for id in &ids {
            self.remove(id, Gone::Forgotten);
        }
        ids
    }

    fn create(
        &mut self,
        vdir: &Vdir,
        destination: &Destination,
        protocol: &str,
        env: &Env<'_>,
    ) -> Ack {
        match env.existing {
            Existing::Directory => return Ack::error(BitsError::InvalidArg),
            Existing::File if !vdir.allow_overwrites => return Ack::status(409),
            _ => {}
        }
        // Two live sessions racing for one destination fail like an existing file would. An
        // idle-expired session no longer counts, whether or not a sweep has removed it yet.
        // In a farm without a shared store, only sessions on the same member count.
        let home = self.home_for(vdir, env.place);
        if !vdir.allow_overwrites
            && self.sessions.values().any(|s| {
                &s.destination == destination
                    && !s.expired(env.now, vdir.session_timeout)
                    && reachable(vdir, s.home, home)
            })
        {
            return Ack::status(409);
        }
        if self.sessions.len() >= vdir.max_sessions {
            return Ack::error(BitsError::OutOfResources);
        }
        let Some(id) = env.fresh_id.filter(|id| !self.sessions.contains_key(id)) else {
            // No id could be drawn, or the id source repeated itself: never hand out a live
            // id twice.
            return Ack::error(BitsError::Internal);
        };
        self.created += 1;
        // An empty prefix means no reply jobs; `starts_with(&[])` would match everything.
        let reply = !vdir.reply_prefix.is_empty() && destination.starts_with(&vdir.reply_prefix);
        let notified = reply
            && vdir
                .notify_prefixes
                .iter()
                .any(|p| destination.starts_with(p));
        let session = Session {
            id,
            destination: destination.clone(),
            reply,
            ordinal: self.created,
            total: None,
            received: 0,
            reply_url: None,
            notified,
            copy_to_destination: !notified,
            last_activity: env.now,
            idle_timeout: None,
            home,
        };
        self.changes.push(Change::Created {
            id,
            ordinal: session.ordinal,
            destination: session.destination.clone(),
            reply: session.reply,
        });
        let mut ack = Ack::ok().for_session(&id);
        ack.protocol = Some(protocol.to_owned());
        ack.accept_encoding = true;
        let member = match (&vdir.farm, home) {
            (Some(farm), Place::Member(n)) if env.place == Place::Front => {
                farm.members.get(n as usize - 1)
            }
            _ => None,
        };
        if let Some(host) = member {
            ack.host_id = Some(host.clone());
            ack.host_id_fallback_timeout = vdir.host_id_fallback_timeout;
        } else if let Some(host) = &vdir.host_id {
            ack.host_id = Some(host.clone());
            ack.host_id_fallback_timeout = vdir.host_id_fallback_timeout;
        }
        self.sessions.insert(id, session);
        ack
    }

    /// Where a session created at `place` lives: at the front of a farm, the next member
    /// round-robin (by the session's ordinal); elsewhere, where it was created.
    fn home_for(&self, vdir: &Vdir, place: Place) -> Place {
        match (&vdir.farm, place) {
            (Some(farm), Place::Front) if !farm.members.is_empty() => {
                let at = self.created % farm.members.len() as u64;
                Place::Member(at as u32 + 1)
            }
            _ => place,
        }
    }

    /// Whether a Close-Session for `id` repeats one that ended the session less than
    /// `Vdir::remember_closed` ago (docs/protocol.md §10.23).
    fn recently_closed(&self, vdir: &Vdir, id: &SessionId, now: Instant) -> bool {
        match (vdir.remember_closed, self.closed.get(id)) {
            (Some(keep), Some(at)) => {
                !self.sessions.contains_key(id) && now.saturating_duration_since(*at) < keep
            }
            _ => false,
        }
    }

    /// The live session for an id, or the step answering that it is unknown. A session past
    /// its idle timeout is removed here, so expiry never depends on when a sweep ran.
    fn live(
        &mut self,
        vdir: &Vdir,
        id: &SessionId,
        now: Instant,
        place: Place,
    ) -> Result<&mut Session, Step> {
        let not_found = || Ack::error(BitsError::SessionNotFound).for_session(id);
        match self.sessions.get(id) {
            None => Err(Step::Answer(not_found())),
            // Another farm member's session: this one has never heard of it (§10.28).
            Some(s) if !reachable(vdir, s.home, place) => Err(Step::Answer(not_found())),
            Some(s) if s.expired(now, vdir.session_timeout) => {
                self.remove(id, Gone::Expired);
                Err(Step::Discard(not_found(), *id))
            }
            Some(_) => self
                .sessions
                .get_mut(id)
                .ok_or_else(|| Step::Answer(not_found())),
        }
    }
}

impl Session {
    /// docs/protocol.md §7.5 steps 3–8 for one fragment.
    fn fragment(&mut self, vdir: &Vdir, range: ContentRange, now: Instant) -> Step {
        let reject = |error: BitsError| Step::Answer(Ack::error(error).for_session(&self.id));
        if self.total.is_some_and(|t| t != range.total()) {
            return reject(BitsError::InvalidArg);
        }
        if vdir.max_upload_size.is_some_and(|max| range.total() > max) {
            return reject(BitsError::TooLarge);
        }
        if range.len() > vdir.max_fragment_size {
            return Step::Answer(Ack::status(413).for_session(&self.id));
        }
        self.total = Some(range.total());
        let expected = self.received;
        if self.awaits_notification() {
            // NOTIFY after a failed notification: a retried final fragment notifies again.
            self.last_activity = now;
            return Step::Notify(self.id);
        }
        if self.is_complete() {
            // WAIT_FOR_CLOSE: a retried fragment (lost Ack) gets the same final answer.
            self.last_activity = now;
            return Step::Answer(self.fragment_ack());
        }
        if range.first() > expected {
            return Step::Answer(self.fragment_ack().into_status(416));
        }
        if range.first() < expected && vdir.overlap == Overlap::Strict {
            return Step::Answer(self.fragment_ack().into_status(416));
        }
        if range.end() <= expected {
            // Entirely old data: nothing to write (policy A).
            self.last_activity = now;
            return Step::Answer(self.fragment_ack());
        }
        Step::Write(Write {
            session: self.id,
            range,
            at: expected,
            skip: expected - range.first(),
            len: range.end() - expected,
        })
    }

    fn fragment_ack(&self) -> Ack {
        let mut ack = self.ack().with_received(self.received);
        if self.is_complete() {
            ack.reply_url = self.reply_url.clone();
        }
        ack
    }
}

impl Ack {
    fn into_status(mut self, status: u16) -> Ack {
        self.status = status;
        self
    }
}

/// Whether a session living at `home` can be reached at `place`.
fn reachable(vdir: &Vdir, home: Place, place: Place) -> bool {
    match &vdir.farm {
        None => true,
        Some(farm) => farm.shared || home == place,
    }
}

/// Where the built-in server application's reply for a session is served.
pub fn reply_url(origin: &str, id: &SessionId) -> String {
    format!("{origin}{}", reply_path(id))
}

/// The path part of [`reply_url`]; the server answers GET/HEAD here.
pub fn reply_path(id: &SessionId) -> String {
    format!(
        "/{}/Replies/{}/responsefile.bin",
        super::destination::RESERVED_SEGMENT,
        id.simple()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ack::{AckError, ErrorHeader, PROTOCOL_GUID};

    const ORIGIN: &str = "http://bits.test:8080";
    const PLAIN: &str = "/drop/file.bin";
    const REPLY: &str = "/reply/file.bin";
    const MINUTE: Duration = Duration::from_secs(60);

    fn sid(n: u8) -> SessionId {
        SessionId::from_bytes([n; 16])
    }

    fn dest(path: &str) -> Destination {
        Destination::parse(path).unwrap()
    }

    fn range(first: u64, last: u64, total: u64) -> ContentRange {
        ContentRange::new(first, last, total).unwrap()
    }

    fn fragment(session: SessionId, first: u64, last: u64, total: u64) -> Packet {
        Packet::Fragment {
            destination: dest(PLAIN),
            session,
            range: range(first, last, total),
        }
    }

    fn close(session: SessionId) -> Packet {
        Packet::CloseSession {
            destination: dest(PLAIN),
            session,
        }
    }

    fn cancel(session: SessionId) -> Packet {
        Packet::CancelSession {
            destination: dest(PLAIN),
            session,
        }
    }

    fn answer(step: Step) -> Ack {
        match step {
            Step::Answer(ack) => ack,
            other => panic!("expected an answer, got {other:?}"),
        }
    }

    fn planned_write(step: Step) -> Write {
        match step {
            Step::Write(write) => write,
            other => panic!("expected a write, got {other:?}"),
        }
    }

    fn planned_close(step: Step) -> Close {
        match step {
            Step::Close(close) => close,
            other => panic!("expected a close, got {other:?}"),
        }
    }

    /// Status, HRESULT and context of an error Ack, and that it echoes `session`.
    fn assert_error(ack: &Ack, status: u16, code: u32, session: Option<SessionId>) {
        assert_eq!(ack.status, status, "{ack:?}");
        assert_eq!(ack.error, Some(AckError { code, context: 0x5 }), "{ack:?}");
        assert_eq!(ack.session_id, session.map(|s| s.to_string()), "{ack:?}");
    }

    fn assert_session_not_found(ack: &Ack, session: SessionId) {
        assert_error(ack, 500, 0x8020_001F, Some(session));
    }

    /// A table, its vdir and a clock the test moves by hand.
    struct Fixture {
        table: Table,
        vdir: Vdir,
        now: Instant,
    }

    impl Fixture {
        fn new() -> Self {
            Fixture::with(Vdir::default())
        }

        fn with(vdir: Vdir) -> Self {
            Fixture {
                table: Table::new(),
                vdir,
                now: Instant::now(),
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

        fn later(&mut self, by: Duration) {
            self.now += by;
        }

        fn step(&mut self, packet: &Packet) -> Step {
            let env = self.env(sid(0xEE), Existing::Nothing);
            self.table.step(&self.vdir, packet, &env)
        }

        fn create_over(&mut self, path: &str, id: SessionId, existing: Existing) -> Ack {
            let packet = Packet::CreateSession {
                destination: dest(path),
                protocol: PROTOCOL_GUID,
            };
            let env = self.env(id, existing);
            answer(self.table.step(&self.vdir, &packet, &env))
        }

        fn create(&mut self, path: &str, id: SessionId) -> Ack {
            self.create_over(path, id, Existing::Nothing)
        }

        fn record(&mut self, write: &Write, stored: u64) -> Ack {
            let env = self.env(write.session, Existing::Nothing);
            self.table.record_fragment(write, stored, &env)
        }

        /// Sends a fragment and, when the core asks for a write, stores all of it.
        fn send(&mut self, id: SessionId, first: u64, last: u64, total: u64) -> Ack {
            match self.step(&fragment(id, first, last, total)) {
                Step::Answer(ack) => ack,
                Step::Write(write) => self.record(&write, write.len),
                other => panic!("unexpected step for a fragment: {other:?}"),
            }
        }

        fn session(&self, id: SessionId) -> &Session {
            self.table.get(&id).expect("session is live")
        }
    }

    // ---- Ping ----

    #[test]
    fn a_ping_is_answered_200_in_every_state_and_changes_nothing() {
        let mut f = Fixture::new();
        assert_eq!(answer(f.step(&Packet::Ping)), Ack::ok());
        f.create(PLAIN, sid(1));
        f.create("/drop/done.bin", sid(2));
        f.send(sid(2), 0, 9, 10);
        f.create("/drop/stale.bin", sid(3));
        f.later(f.vdir.session_timeout);
        let before = f.table.clone();
        assert_eq!(answer(f.step(&Packet::Ping)), Ack::ok());
        assert_eq!(f.table.sessions, before.sessions);
        assert_eq!(f.table.created(), 3);
    }

    // ---- Create-Session ----

    #[test]
    fn creating_a_session_answers_200_with_protocol_session_id_and_accept_encoding() {
        let mut f = Fixture::new();
        let ack = f.create(PLAIN, sid(1));
        assert_eq!(ack.status, 200);
        assert_eq!(ack.protocol.as_deref(), Some(PROTOCOL_GUID));
        assert_eq!(ack.session_id, Some(sid(1).to_string()));
        assert!(ack.accept_encoding);
        assert_eq!(ack.host_id, None);
        assert_eq!(ack.host_id_fallback_timeout, None);
        assert_eq!(ack.received, None);
        assert_eq!(ack.error, None);
        let s = f.session(sid(1));
        assert_eq!(s.destination, dest(PLAIN));
        assert_eq!((s.total, s.received, s.ordinal), (None, 0, 1));
        assert!(!s.reply);
        assert_eq!(s.reply_url, None);
        assert_eq!(s.last_activity, f.now);
    }

    #[test]
    fn a_configured_host_id_is_sent_with_its_fallback_timeout() {
        let mut f = Fixture::with(Vdir {
            host_id: Some("node2.farm.test".into()),
            host_id_fallback_timeout: Some(86_400),
            ..Vdir::default()
        });
        let ack = f.create(PLAIN, sid(1));
        assert_eq!(ack.host_id.as_deref(), Some("node2.farm.test"));
        assert_eq!(ack.host_id_fallback_timeout, Some(86_400));
        let rendered = ack.render(ErrorHeader::Code);
        assert_eq!(rendered.header("BITS-Host-Id"), Some("node2.farm.test"));
        assert_eq!(
            rendered.header("BITS-Host-Id-Fallback-Timeout"),
            Some("86400")
        );
    }

    #[test]
    fn a_fallback_timeout_without_a_host_id_is_not_sent() {
        let mut f = Fixture::with(Vdir {
            host_id_fallback_timeout: Some(60),
            ..Vdir::default()
        });
        let ack = f.create(PLAIN, sid(1));
        assert_eq!(ack.host_id, None);
        assert_eq!(ack.host_id_fallback_timeout, None);
    }

    #[test]
    fn creating_over_an_existing_file_is_a_conflict_unless_overwrites_are_allowed() {
        let mut f = Fixture::new();
        let ack = f.create_over(PLAIN, sid(1), Existing::File);
        assert_eq!(ack.status, 409);
        assert_eq!(ack.session_id, None);
        assert!(f.table.is_empty());
        assert_eq!(f.table.created(), 0);

        f.vdir.allow_overwrites = true;
        assert_eq!(f.create_over(PLAIN, sid(1), Existing::File).status, 200);
        assert_eq!(f.session(sid(1)).ordinal, 1);
    }

    #[test]
    fn creating_over_a_directory_is_invalid_even_with_overwrites_allowed() {
        for allow_overwrites in [false, true] {
            let mut f = Fixture::with(Vdir {
                allow_overwrites,
                ..Vdir::default()
            });
            let ack = f.create_over(PLAIN, sid(1), Existing::Directory);
            assert_error(&ack, 400, 0x8007_0057, None);
            assert!(f.table.is_empty());
        }
    }

    #[test]
    fn a_second_live_session_for_the_same_destination_is_a_conflict_unless_overwrites_are_allowed()
    {
        let mut f = Fixture::new();
        f.create(PLAIN, sid(1));
        assert_eq!(f.create(PLAIN, sid(2)).status, 409);
        assert!(f.table.get(&sid(2)).is_none());
        assert_eq!(f.create("/drop/other.bin", sid(3)).status, 200);

        f.vdir.allow_overwrites = true;
        assert_eq!(f.create(PLAIN, sid(2)).status, 200);
        assert_eq!(f.table.len(), 3);
    }

    #[test]
    fn a_destination_is_free_again_once_its_session_is_gone() {
        let mut f = Fixture::new();
        f.create(PLAIN, sid(1));
        f.step(&cancel(sid(1)));
        assert_eq!(f.create(PLAIN, sid(2)).status, 200);
    }

    #[test]
    fn an_expired_session_does_not_block_a_new_one_for_its_destination() {
        let mut f = Fixture::new();
        f.create(PLAIN, sid(1));
        f.later(f.vdir.session_timeout);
        // No sweep has run yet: expiry must not depend on one.
        assert_eq!(f.create(PLAIN, sid(2)).status, 200);
        assert_eq!(f.session(sid(2)).destination, dest(PLAIN));
    }

    #[test]
    fn a_create_beyond_the_session_limit_answers_out_of_resources_until_one_is_gone() {
        let mut f = Fixture::with(Vdir {
            max_sessions: 2,
            ..Vdir::default()
        });
        assert_eq!(f.create("/a.bin", sid(1)).status, 200);
        assert_eq!(f.create("/b.bin", sid(2)).status, 200);
        f.table.take_changes();
        let refused = f.create("/c.bin", sid(3));
        assert_error(&refused, 500, 0x8007_000E, None);
        assert_eq!(f.table.len(), 2);
        assert!(f.table.take_changes().is_empty(), "nothing was created");
        f.table.forget(&sid(1));
        assert_eq!(f.create("/c.bin", sid(3)).status, 200);
    }

    #[test]
    fn a_create_without_a_fresh_id_fails_and_creates_nothing() {
        let mut f = Fixture::new();
        let env = Env {
            fresh_id: None,
            ..f.env(sid(1), Existing::Nothing)
        };
        let step = f.table.step(
            &Vdir::default(),
            &Packet::CreateSession {
                destination: dest(PLAIN),
                protocol: PROTOCOL_GUID,
            },
            &env,
        );
        assert_error(&answer(step), 500, 0x8000_4005, None);
        assert_eq!(f.table.created(), 0);
        assert!(f.table.take_changes().is_empty());
    }

    #[test]
    fn every_session_that_comes_or_goes_is_reported_once_as_a_change() {
        let mut f = Fixture::new();
        f.create(PLAIN, sid(1));
        f.create("/drop/b.bin", sid(2));
        f.create("/drop/c.bin", sid(3));
        f.create("/drop/d.bin", sid(4));
        let created: Vec<_> = f.table.take_changes();
        assert_eq!(created.len(), 4);
        assert_eq!(
            created[1],
            Change::Created {
                id: sid(2),
                ordinal: 2,
                destination: dest("/drop/b.bin"),
                reply: false
            }
        );
        assert!(f.table.take_changes().is_empty(), "changes are drained");
        // Commit (complete), discard (premature close), cancel, forget.
        f.send(sid(1), 0, 4, 5);
        let closing = planned_close(f.step(&close(sid(1))));
        f.table.finish_close(&closing, CloseOutcome::Done);
        f.send(sid(2), 0, 1, 5);
        let closing = planned_close(f.step(&close(sid(2))));
        f.table.finish_close(&closing, CloseOutcome::Done);
        f.step(&cancel(sid(3)));
        f.table.forget(&sid(4));
        let whys: Vec<_> = f
            .table
            .take_changes()
            .into_iter()
            .map(|c| match c {
                Change::Gone { id, ordinal, why } => (id, ordinal, why),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            whys,
            vec![
                (sid(1), 1, Gone::Committed),
                (sid(2), 2, Gone::Discarded),
                (sid(3), 3, Gone::Cancelled),
                (sid(4), 4, Gone::Forgotten),
            ]
        );
    }

    #[test]
    fn expiry_and_a_restart_are_reported_as_changes() {
        let mut f = Fixture::new();
        f.create(PLAIN, sid(1));
        f.create("/drop/b.bin", sid(2));
        f.table.take_changes();
        f.table.set_idle_timeout(&sid(1), MINUTE);
        f.later(MINUTE);
        let expired = f.table.expire(f.now, Duration::from_secs(3600));
        assert_eq!(expired, vec![sid(1)]);
        assert_eq!(f.table.clear(), vec![sid(2)]);
        assert_eq!(
            f.table.take_changes(),
            vec![
                Change::Gone {
                    id: sid(1),
                    ordinal: 1,
                    why: Gone::Expired
                },
                Change::Gone {
                    id: sid(2),
                    ordinal: 2,
                    why: Gone::Forgotten
                },
            ]
        );
    }

    #[test]
    fn a_session_whose_file_was_lost_is_gone_as_vanished() {
        let mut f = Fixture::new();
        f.create(PLAIN, sid(1));
        f.table.take_changes();
        assert!(f.table.lose_file(&sid(1)));
        assert!(!f.table.lose_file(&sid(1)));
        assert_eq!(
            f.table.take_changes(),
            vec![Change::Gone {
                id: sid(1),
                ordinal: 1,
                why: Gone::Vanished
            }]
        );
        f.create("/drop/b.bin", sid(2));
        f.table.reset();
        assert_eq!(
            f.table.created(),
            0,
            "a reset numbers sessions from 1 again"
        );
        assert!(f.table.is_empty());
    }

    #[test]
    fn closing_a_session_no_fragment_touched_is_an_empty_commit() {
        let mut f = Fixture::new();
        f.create(PLAIN, sid(1));
        let closing = planned_close(f.step(&close(sid(1))));
        assert!(closing.commit && closing.empty);
        f.create("/drop/b.bin", sid(2));
        f.send(sid(2), 0, 4, 5);
        let closing = planned_close(f.step(&close(sid(2))));
        assert!(closing.commit && !closing.empty);
    }

    #[test]
    fn a_repeated_fresh_id_never_replaces_a_live_session() {
        let mut f = Fixture::new();
        f.create(PLAIN, sid(1));
        f.send(sid(1), 0, 4, 10);
        let ack = f.create("/drop/other.bin", sid(1));
        assert_error(&ack, 500, 0x8000_4005, None);
        assert_eq!(f.session(sid(1)).destination, dest(PLAIN));
        assert_eq!(f.session(sid(1)).received, 5);
        assert_eq!(f.table.created(), 1);
    }

    #[test]
    fn ordinals_count_every_created_session_and_are_never_reused() {
        let mut f = Fixture::new();
        f.create("/drop/a", sid(1));
        f.create("/drop/b", sid(2));
        f.step(&cancel(sid(1)));
        assert_eq!(f.create("/drop/b", sid(3)).status, 409);
        f.create("/drop/c", sid(4));
        assert_eq!(f.session(sid(2)).ordinal, 2);
        assert_eq!(f.session(sid(4)).ordinal, 3);
        assert_eq!(f.table.created(), 3);
        f.table.clear();
        f.create("/drop/d", sid(5));
        assert_eq!(f.session(sid(5)).ordinal, 4);
    }

    #[test]
    fn a_destination_under_the_reply_prefix_makes_a_reply_session() {
        let mut f = Fixture::new();
        f.create(REPLY, sid(1));
        f.create("/reply/deeper/file.bin", sid(2));
        f.create(PLAIN, sid(3));
        f.create("/replyx/file.bin", sid(4));
        assert!(f.session(sid(1)).reply);
        assert!(f.session(sid(2)).reply);
        assert!(!f.session(sid(3)).reply);
        assert!(!f.session(sid(4)).reply);
    }

    #[test]
    fn an_empty_reply_prefix_makes_no_session_a_reply_session() {
        let mut f = Fixture::with(Vdir {
            reply_prefix: Vec::new(),
            ..Vdir::default()
        });
        f.create(REPLY, sid(1));
        assert!(!f.session(sid(1)).reply);
        let ack = f.send(sid(1), 0, 9, 10);
        assert_eq!(ack.reply_url, None);
    }

    // ---- Unknown sessions ----

    #[test]
    fn fragment_close_and_cancel_for_an_unknown_session_answer_session_not_found() {
        let mut f = Fixture::new();
        f.create(PLAIN, sid(1));
        let unknown = sid(9);
        for packet in [fragment(unknown, 0, 9, 10), close(unknown), cancel(unknown)] {
            let ack = answer(f.step(&packet));
            assert_session_not_found(&ack, unknown);
            let rendered = ack.render(ErrorHeader::Code);
            assert_eq!(rendered.header("BITS-Error-Code"), Some("0x8020001F"));
            assert_eq!(rendered.header("BITS-Error-Context"), Some("0x5"));
            assert_eq!(
                rendered.header("BITS-Session-Id"),
                Some(unknown.to_string().as_str())
            );
        }
        assert_eq!(f.table.len(), 1);
        assert_eq!(f.session(sid(1)).received, 0);
    }

    #[test]
    fn recording_a_write_for_a_session_that_is_gone_answers_session_not_found() {
        let mut f = Fixture::new();
        f.create(PLAIN, sid(1));
        let write = planned_write(f.step(&fragment(sid(1), 0, 9, 10)));
        assert!(f.table.forget(&sid(1)));
        let ack = f.record(&write, write.len);
        assert_session_not_found(&ack, sid(1));
        assert!(f.table.is_empty());
    }

    // ---- Fragments: contiguous appends ----

    #[test]
    fn a_fragment_at_the_expected_offset_is_written_whole_and_then_acknowledged() {
        let mut f = Fixture::new();
        f.create(PLAIN, sid(1));
        let write = planned_write(f.step(&fragment(sid(1), 0, 9, 100)));
        assert_eq!(
            write,
            Write {
                session: sid(1),
                range: range(0, 9, 100),
                at: 0,
                skip: 0,
                len: 10,
            }
        );
        // Nothing is acknowledged before the bytes are stored.
        assert_eq!(f.session(sid(1)).received, 0);
        assert_eq!(f.session(sid(1)).total, Some(100));
        f.later(MINUTE);
        let ack = f.record(&write, 10);
        assert_eq!(ack, Ack::ok().for_session(&sid(1)).with_received(10));
        assert_eq!(
            ack.render(ErrorHeader::Code)
                .header("BITS-Received-Content-Range"),
            Some("10")
        );
        let s = f.session(sid(1));
        assert_eq!(s.received, 10);
        assert!(!s.is_complete());
        assert_eq!(s.last_activity, f.now);
    }

    #[test]
    fn contiguous_fragments_advance_the_received_offset() {
        let mut f = Fixture::new();
        f.create(PLAIN, sid(1));
        assert_eq!(f.send(sid(1), 0, 9, 30).received, Some(10));
        let write = planned_write(f.step(&fragment(sid(1), 10, 19, 30)));
        assert_eq!((write.at, write.skip, write.len), (10, 0, 10));
        assert_eq!(f.record(&write, 10).received, Some(20));
        assert_eq!(f.send(sid(1), 20, 29, 30).received, Some(30));
        assert!(f.session(sid(1)).is_complete());
    }

    #[test]
    fn a_short_write_acknowledges_only_the_bytes_stored() {
        let mut f = Fixture::new();
        f.create(PLAIN, sid(1));
        let write = planned_write(f.step(&fragment(sid(1), 0, 9, 20)));
        let ack = f.record(&write, 4);
        assert_eq!(ack.status, 200);
        assert_eq!(ack.received, Some(4));
        assert_eq!(f.session(sid(1)).received, 4);
        // The client resends from the acknowledged offset; the stored bytes are skipped.
        let write = planned_write(f.step(&fragment(sid(1), 0, 9, 20)));
        assert_eq!((write.at, write.skip, write.len), (4, 4, 6));
        assert_eq!(f.record(&write, 6).received, Some(10));
    }

    #[test]
    fn a_write_never_acknowledges_more_than_it_planned() {
        let mut f = Fixture::new();
        f.create(PLAIN, sid(1));
        let write = planned_write(f.step(&fragment(sid(1), 0, 9, 20)));
        assert_eq!(f.record(&write, 50).received, Some(10));
        assert_eq!(f.session(sid(1)).received, 10);
    }

    #[test]
    fn a_write_recorded_after_the_offset_moved_on_changes_nothing() {
        let mut f = Fixture::new();
        f.create(PLAIN, sid(1));
        let first = planned_write(f.step(&fragment(sid(1), 0, 9, 20)));
        let duplicate = planned_write(f.step(&fragment(sid(1), 0, 14, 20)));
        assert_eq!(f.record(&first, 10).received, Some(10));
        assert_eq!(f.record(&duplicate, 15).received, Some(10));
        assert_eq!(f.session(sid(1)).received, 10);
    }

    // ---- Fragments: gaps and overlaps ----

    #[test]
    fn a_gap_is_refused_with_416_and_the_expected_offset() {
        let mut f = Fixture::new();
        f.create(PLAIN, sid(1));
        f.send(sid(1), 0, 9, 100);
        let ack = answer(f.step(&fragment(sid(1), 20, 29, 100)));
        assert_eq!(ack.status, 416);
        assert_eq!(ack.received, Some(10));
        assert_eq!(ack.session_id, Some(sid(1).to_string()));
        assert_eq!(ack.error, None);
        let rendered = ack.render(ErrorHeader::Both);
        assert_eq!(rendered.header("BITS-Received-Content-Range"), Some("10"));
        assert_eq!(rendered.header("BITS-Error-Code"), None);
        assert_eq!(f.session(sid(1)).received, 10);
    }

    #[test]
    fn a_gap_in_the_first_fragment_asks_for_byte_zero() {
        let mut f = Fixture::new();
        f.create(PLAIN, sid(1));
        let ack = answer(f.step(&fragment(sid(1), 5, 9, 10)));
        assert_eq!((ack.status, ack.received), (416, Some(0)));
    }

    #[test]
    fn a_gap_does_not_restart_the_idle_timer() {
        let mut f = Fixture::new();
        f.create(PLAIN, sid(1));
        let created = f.now;
        f.later(MINUTE);
        answer(f.step(&fragment(sid(1), 5, 9, 10)));
        assert_eq!(f.session(sid(1)).last_activity, created);
    }

    #[test]
    fn an_overlapping_fragment_writes_only_the_new_tail_by_default() {
        let mut f = Fixture::new();
        f.create(PLAIN, sid(1));
        f.send(sid(1), 0, 9, 100);
        let write = planned_write(f.step(&fragment(sid(1), 5, 19, 100)));
        assert_eq!(
            write,
            Write {
                session: sid(1),
                range: range(5, 19, 100),
                at: 10,
                skip: 5,
                len: 10,
            }
        );
        assert_eq!(f.record(&write, write.len).received, Some(20));
    }

    #[test]
    fn an_overlapping_fragment_is_refused_with_416_under_the_strict_policy() {
        let mut f = Fixture::with(Vdir {
            overlap: Overlap::Strict,
            ..Vdir::default()
        });
        f.create(PLAIN, sid(1));
        f.send(sid(1), 0, 9, 100);
        let ack = answer(f.step(&fragment(sid(1), 5, 19, 100)));
        assert_eq!((ack.status, ack.received, ack.error), (416, Some(10), None));
        assert_eq!(f.session(sid(1)).received, 10);
        // The fragment the client sends next, from the offset it was given, is accepted.
        assert_eq!(f.send(sid(1), 10, 19, 100).received, Some(20));
    }

    #[test]
    fn a_fragment_of_only_old_bytes_is_acknowledged_without_a_write_by_default() {
        let mut f = Fixture::new();
        f.create(PLAIN, sid(1));
        f.send(sid(1), 0, 19, 100);
        f.later(MINUTE);
        for (first, last) in [(0, 9), (10, 19), (0, 19)] {
            let ack = answer(f.step(&fragment(sid(1), first, last, 100)));
            assert_eq!(ack, Ack::ok().for_session(&sid(1)).with_received(20));
        }
        assert_eq!(f.session(sid(1)).received, 20);
        assert_eq!(f.session(sid(1)).last_activity, f.now);
    }

    #[test]
    fn a_fragment_of_only_old_bytes_is_refused_with_416_under_the_strict_policy() {
        let mut f = Fixture::with(Vdir {
            overlap: Overlap::Strict,
            ..Vdir::default()
        });
        f.create(PLAIN, sid(1));
        f.send(sid(1), 0, 19, 100);
        let ack = answer(f.step(&fragment(sid(1), 0, 9, 100)));
        assert_eq!((ack.status, ack.received, ack.error), (416, Some(20), None));
    }

    // ---- Fragments: totals and sizes ----

    #[test]
    fn a_changed_total_is_invalid_and_leaves_the_session_alone() {
        let mut f = Fixture::new();
        f.create(PLAIN, sid(1));
        f.send(sid(1), 0, 9, 100);
        let ack = answer(f.step(&fragment(sid(1), 10, 19, 200)));
        assert_error(&ack, 400, 0x8007_0057, Some(sid(1)));
        let s = f.session(sid(1));
        assert_eq!((s.total, s.received), (Some(100), 10));
        assert_eq!(f.send(sid(1), 10, 19, 100).received, Some(20));
    }

    #[test]
    fn a_total_over_the_maximum_upload_size_is_too_large() {
        let mut f = Fixture::with(Vdir {
            max_upload_size: Some(100),
            ..Vdir::default()
        });
        f.create(PLAIN, sid(1));
        let ack = answer(f.step(&fragment(sid(1), 0, 9, 101)));
        assert_error(&ack, 500, 0x8020_0020, Some(sid(1)));
        assert_eq!(f.session(sid(1)).total, None);
        assert_eq!(f.session(sid(1)).received, 0);
        // Exactly the limit is allowed.
        assert_eq!(f.send(sid(1), 0, 9, 100).received, Some(10));
    }

    #[test]
    fn a_fragment_over_the_fragment_limit_gets_413_and_a_smaller_one_is_accepted() {
        let mut f = Fixture::with(Vdir {
            max_fragment_size: 10,
            ..Vdir::default()
        });
        f.create(PLAIN, sid(1));
        let ack = answer(f.step(&fragment(sid(1), 0, 10, 100)));
        assert_eq!(ack.status, 413);
        assert_eq!(ack.error, None);
        assert_eq!(ack.session_id, Some(sid(1).to_string()));
        assert_eq!(f.session(sid(1)).received, 0);
        assert_eq!(f.send(sid(1), 0, 9, 100).received, Some(10));
    }

    // ---- Completion and WAIT_FOR_CLOSE ----

    #[test]
    fn the_last_byte_completes_the_session_and_any_retried_fragment_gets_the_total() {
        let mut f = Fixture::new();
        f.create(PLAIN, sid(1));
        f.send(sid(1), 0, 9, 20);
        let last = f.send(sid(1), 10, 19, 20);
        assert_eq!((last.status, last.received), (200, Some(20)));
        assert!(f.session(sid(1)).is_complete());
        f.later(MINUTE);
        for (first, end) in [(10, 19), (0, 9), (0, 19), (5, 14)] {
            let ack = answer(f.step(&fragment(sid(1), first, end, 20)));
            assert_eq!(ack, last, "retry {first}-{end}");
        }
        assert_eq!(f.session(sid(1)).last_activity, f.now);
    }

    #[test]
    fn a_complete_session_answers_retries_with_the_total_even_under_the_strict_policy() {
        let mut f = Fixture::with(Vdir {
            overlap: Overlap::Strict,
            ..Vdir::default()
        });
        f.create(PLAIN, sid(1));
        f.send(sid(1), 0, 19, 20);
        let ack = answer(f.step(&fragment(sid(1), 10, 19, 20)));
        assert_eq!((ack.status, ack.received), (200, Some(20)));
    }

    #[test]
    fn a_complete_session_still_refuses_a_changed_total() {
        let mut f = Fixture::new();
        f.create(PLAIN, sid(1));
        f.send(sid(1), 0, 19, 20);
        let ack = answer(f.step(&fragment(sid(1), 10, 19, 30)));
        assert_error(&ack, 400, 0x8007_0057, Some(sid(1)));
        assert!(f.session(sid(1)).is_complete());
    }

    // ---- Upload-reply ----

    #[test]
    fn a_reply_session_carries_the_reply_url_on_the_final_ack_only() {
        let mut f = Fixture::new();
        f.create(REPLY, sid(1));
        let first = f.send(sid(1), 0, 9, 20);
        assert_eq!(first.reply_url, None);
        assert_eq!(f.session(sid(1)).reply_url, None);
        // A short final write is not completion either.
        let write = planned_write(f.step(&fragment(sid(1), 10, 19, 20)));
        assert_eq!(f.record(&write, 5).reply_url, None);
        let last = f.send(sid(1), 15, 19, 20);
        let expected = format!(
            "{ORIGIN}/BITS-Sessions/Replies/{}/responsefile.bin",
            sid(1).simple()
        );
        assert_eq!(last.received, Some(20));
        assert_eq!(last.reply_url.as_deref(), Some(expected.as_str()));
        assert_eq!(reply_url(ORIGIN, &sid(1)), expected);
        assert_eq!(
            last.render(ErrorHeader::Code).header("BITS-Reply-URL"),
            Some(expected.as_str())
        );
        assert_eq!(
            f.session(sid(1)).reply_url.as_deref(),
            Some(expected.as_str())
        );
    }

    #[test]
    fn a_retried_final_fragment_gets_the_same_reply_url() {
        let mut f = Fixture::new();
        f.create(REPLY, sid(1));
        let last = f.send(sid(1), 0, 19, 20);
        assert!(last.reply_url.is_some());
        for (first, end) in [(0, 19), (10, 19)] {
            let retry = answer(f.step(&fragment(sid(1), first, end, 20)));
            assert_eq!(retry, last);
        }
        // Even a stale write recorded through another origin keeps the first URL.
        let env = Env {
            origin: "http://elsewhere.test",
            ..f.env(sid(1), Existing::Nothing)
        };
        let stale = Write {
            session: sid(1),
            range: range(0, 19, 20),
            at: 0,
            skip: 0,
            len: 20,
        };
        assert_eq!(f.table.record_fragment(&stale, 20, &env), last);
    }

    fn notified() -> Fixture {
        Fixture::with(Vdir {
            notify_prefixes: vec![vec!["reply".to_owned()]],
            ..Vdir::default()
        })
    }

    #[test]
    fn a_notified_session_waits_for_the_application_before_its_final_ack_carries_a_url() {
        let mut f = notified();
        f.create(REPLY, sid(1));
        assert!(f.session(sid(1)).notified);
        let last = f.send(sid(1), 0, 19, 20);
        assert_eq!((last.received, last.reply_url), (Some(20), None));
        assert!(f.session(sid(1)).awaits_notification());
        // A retried final fragment (any range) asks for the notification again.
        assert_eq!(f.step(&fragment(sid(1), 10, 19, 20)), Step::Notify(sid(1)));
        // The application failed: its status is relayed, the session keeps waiting.
        let relayed = Ack {
            error: Some(AckError::application(0x8019_01F7)),
            ..Ack::status(503)
        };
        let ack = f
            .table
            .finish_notify(&sid(1), Notified::Failed(relayed.clone()), f.now);
        assert_eq!(ack, relayed.for_session(&sid(1)));
        assert_eq!(
            ack.render(ErrorHeader::Code).header("BITS-Error-Context"),
            Some("0x7")
        );
        assert!(f.session(sid(1)).awaits_notification());
        assert_eq!(f.step(&fragment(sid(1), 0, 19, 20)), Step::Notify(sid(1)));
        // Then it answered 200.
        let url = "http://cdn.test/r.bin".to_owned();
        let ok = f.table.finish_notify(
            &sid(1),
            Notified::Reply {
                reply_url: url.clone(),
                copy: false,
            },
            f.now,
        );
        assert_eq!(ok.status, 200);
        assert_eq!(
            (ok.received, ok.reply_url.as_deref()),
            (Some(20), Some(url.as_str()))
        );
        assert!(!f.session(sid(1)).awaits_notification());
        // Retries get the same answer; the first outcome stands.
        assert_eq!(answer(f.step(&fragment(sid(1), 0, 19, 20))), ok);
        let late = f
            .table
            .finish_notify(&sid(1), Notified::Failed(Ack::status(500)), f.now);
        assert_eq!(late, ok);
    }

    #[test]
    fn a_notified_upload_is_committed_at_close_only_when_the_application_asked() {
        for copy in [false, true] {
            let mut f = notified();
            f.create(REPLY, sid(1));
            f.send(sid(1), 0, 9, 10);
            let reply = Notified::Reply {
                reply_url: "u".into(),
                copy,
            };
            f.table.finish_notify(&sid(1), reply, f.now);
            let close = planned_close(f.step(&close(sid(1))));
            assert_eq!(close.commit, copy);
            let ack = f.table.finish_close(&close, CloseOutcome::Done);
            assert_eq!(ack.status, 200);
            let why = if copy {
                Gone::Committed
            } else {
                Gone::Discarded
            };
            assert!(
                f.table.take_changes().contains(&Change::Gone {
                    id: sid(1),
                    ordinal: 1,
                    why
                }),
                "{copy}"
            );
        }
        // The built-in application: always committed, as before.
        let mut f = Fixture::new();
        f.create(REPLY, sid(1));
        f.send(sid(1), 0, 9, 10);
        assert!(planned_close(f.step(&close(sid(1)))).commit);
    }

    #[test]
    fn a_reply_url_over_2200_characters_is_invalid_and_the_session_waits_on() {
        let mut f = notified();
        f.create(REPLY, sid(1));
        f.send(sid(1), 0, 9, 10);
        let long = Notified::Reply {
            reply_url: "x".repeat(MAX_REPLY_URL + 1),
            copy: false,
        };
        let ack = f.table.finish_notify(&sid(1), long, f.now);
        assert_eq!(ack, Ack::error(BitsError::InvalidArg).for_session(&sid(1)));
        assert!(f.session(sid(1)).awaits_notification());
        let fits = Notified::Reply {
            reply_url: "x".repeat(MAX_REPLY_URL),
            copy: false,
        };
        assert_eq!(f.table.finish_notify(&sid(1), fits, f.now).status, 200);
    }

    #[test]
    fn only_reply_sessions_under_a_notify_prefix_are_notified() {
        let mut f = Fixture::with(Vdir {
            notify_prefixes: vec![vec!["reply".to_owned(), "app".to_owned()]],
            ..Vdir::default()
        });
        f.create("/reply/app/a.bin", sid(1));
        f.create("/reply/other/a.bin", sid(2));
        f.create("/drop/app/a.bin", sid(3));
        assert!(f.session(sid(1)).notified);
        assert!(!f.session(sid(2)).notified);
        assert!(!f.session(sid(3)).notified);
        // The built-in application still answers the others at once.
        assert!(f.send(sid(2), 0, 9, 10).reply_url.is_some());
        assert_eq!(
            f.table
                .finish_notify(&sid(9), Notified::Failed(Ack::status(500)), f.now),
            Ack::error(BitsError::SessionNotFound).for_session(&sid(9))
        );
    }

    #[test]
    fn a_plain_session_never_carries_a_reply_url() {
        let mut f = Fixture::new();
        f.create(PLAIN, sid(1));
        assert_eq!(f.send(sid(1), 0, 9, 20).reply_url, None);
        let last = f.send(sid(1), 10, 19, 20);
        assert_eq!(last.reply_url, None);
        assert_eq!(
            last.render(ErrorHeader::Code).header("BITS-Reply-URL"),
            None
        );
        assert_eq!(
            answer(f.step(&fragment(sid(1), 10, 19, 20))).reply_url,
            None
        );
        assert_eq!(f.session(sid(1)).reply_url, None);
    }

    // ---- Close-Session ----

    #[test]
    fn closing_a_complete_session_commits_it_to_its_destination() {
        let mut f = Fixture::new();
        f.create("/drop/report.bin", sid(1));
        f.send(sid(1), 0, 9, 10);
        let plan = planned_close(f.step(&close(sid(1))));
        assert_eq!(
            plan,
            Close {
                session: sid(1),
                destination: dest("/drop/report.bin"),
                commit: true,
                empty: false,
                remember: None,
            }
        );
        // The session lives until the server reports how the commit went.
        assert!(f.table.get(&sid(1)).is_some());
    }

    #[test]
    fn a_repeated_close_answers_200_only_while_the_closed_session_is_remembered() {
        let mut f = Fixture::with(Vdir {
            remember_closed: Some(Duration::from_secs(60)),
            ..Vdir::default()
        });
        f.create(PLAIN, sid(1));
        f.send(sid(1), 0, 9, 10);
        let closing = planned_close(f.step(&close(sid(1))));
        assert_eq!(closing.remember, Some((f.now, Duration::from_secs(60))));
        assert_eq!(
            f.table.finish_close(&closing, CloseOutcome::Done).status,
            200
        );
        f.later(Duration::from_secs(59));
        let again = answer(f.step(&close(sid(1))));
        assert_eq!(again.status, 200);
        assert_eq!(again.session_id, Some(sid(1).to_string()));
        // Only Close-Session is forgiven; a fragment for the closed session is still unknown.
        assert_session_not_found(&answer(f.step(&fragment(sid(1), 0, 9, 10))), sid(1));
        f.later(Duration::from_secs(1));
        assert_session_not_found(&answer(f.step(&close(sid(1)))), sid(1));
    }

    #[test]
    fn a_farm_front_names_members_round_robin_and_members_keep_their_sessions() {
        let farm = |shared| Vdir {
            farm: Some(crate::proto::Farm {
                members: vec!["m1:81".into(), "m2:82".into()],
                shared,
            }),
            host_id_fallback_timeout: Some(60),
            ..Vdir::default()
        };
        let mut f = Fixture::with(farm(false));
        let a = f.create("/farm/a.bin", sid(1));
        assert_eq!(a.host_id.as_deref(), Some("m1:81"));
        assert_eq!(a.host_id_fallback_timeout, Some(60));
        assert_eq!(f.session(sid(1)).home, Place::Member(1));
        // Member 2 does not know member 1's session, nor its claim on the destination.
        assert_eq!(
            f.create("/farm/a.bin", sid(2)).host_id.as_deref(),
            Some("m2:82")
        );
        let at = |f: &mut Fixture, place, packet: &Packet| {
            let env = Env {
                place,
                ..f.env(sid(0xEE), Existing::Nothing)
            };
            f.table.step(&f.vdir, packet, &env)
        };
        let write = at(&mut f, Place::Member(1), &fragment(sid(1), 0, 9, 10));
        assert!(matches!(write, Step::Write(_)), "{write:?}");
        for place in [Place::Front, Place::Member(2)] {
            let lost = answer(at(&mut f, place, &fragment(sid(1), 0, 9, 10)));
            assert_session_not_found(&lost, sid(1));
        }
        // With a shared store every place knows every session.
        let mut f = Fixture::with(farm(true));
        f.create("/farm/a.bin", sid(1));
        for place in [Place::Front, Place::Member(1), Place::Member(2)] {
            let write = at(&mut f, place, &fragment(sid(1), 0, 9, 10));
            assert!(matches!(write, Step::Write(_)), "{place:?}: {write:?}");
        }
    }

    #[test]
    fn without_remember_closed_a_repeated_close_is_session_not_found() {
        let mut f = Fixture::new();
        f.create(PLAIN, sid(1));
        f.send(sid(1), 0, 9, 10);
        let closing = planned_close(f.step(&close(sid(1))));
        assert_eq!(closing.remember, None);
        f.table.finish_close(&closing, CloseOutcome::Done);
        assert_session_not_found(&answer(f.step(&close(sid(1)))), sid(1));
        // A close that failed (the destination appeared) is not remembered either.
        let mut f = Fixture::with(Vdir {
            remember_closed: Some(Duration::from_secs(60)),
            ..Vdir::default()
        });
        f.create(PLAIN, sid(2));
        let closing = planned_close(f.step(&close(sid(2))));
        f.table.finish_close(&closing, CloseOutcome::Conflict);
        f.table.forget(&sid(2));
        assert_session_not_found(&answer(f.step(&close(sid(2)))), sid(2));
    }

    #[test]
    fn closing_an_incomplete_session_discards_the_partial_file() {
        let mut f = Fixture::new();
        f.create(PLAIN, sid(1));
        f.send(sid(1), 0, 9, 20);
        assert!(!planned_close(f.step(&close(sid(1)))).commit);
    }

    #[test]
    fn closing_a_session_whose_fragments_stored_nothing_discards_it() {
        let mut f = Fixture::new();
        f.create(PLAIN, sid(1));
        let write = planned_write(f.step(&fragment(sid(1), 0, 9, 20)));
        f.record(&write, 0);
        assert!(!planned_close(f.step(&close(sid(1)))).commit);
    }

    #[test]
    fn closing_a_session_that_never_received_a_fragment_commits_an_empty_file() {
        let mut f = Fixture::new();
        f.create(PLAIN, sid(1));
        let plan = planned_close(f.step(&close(sid(1))));
        assert!(plan.commit);
        assert_eq!(plan.destination, dest(PLAIN));
    }

    #[test]
    fn a_finished_close_answers_200_and_removes_the_session() {
        let mut f = Fixture::new();
        f.create(PLAIN, sid(1));
        f.send(sid(1), 0, 9, 10);
        let plan = planned_close(f.step(&close(sid(1))));
        let ack = f.table.finish_close(&plan, CloseOutcome::Done);
        assert_eq!(ack, Ack::ok().for_session(&sid(1)));
        assert!(f.table.is_empty());
        // A repeated Close (lost Ack) finds nothing.
        assert_session_not_found(&answer(f.step(&close(sid(1)))), sid(1));
        assert_session_not_found(&f.table.finish_close(&plan, CloseOutcome::Done), sid(1));
    }

    #[test]
    fn a_vanished_temp_file_answers_session_not_found_and_removes_the_session() {
        let mut f = Fixture::new();
        f.create(PLAIN, sid(1));
        f.send(sid(1), 0, 9, 10);
        let plan = planned_close(f.step(&close(sid(1))));
        let ack = f.table.finish_close(&plan, CloseOutcome::Vanished);
        assert_session_not_found(&ack, sid(1));
        assert!(f.table.is_empty());
    }

    #[test]
    fn a_failed_commit_answers_its_error_and_keeps_the_session_for_a_retry() {
        let cases = [
            (CloseOutcome::Conflict, 409, None),
            (CloseOutcome::Directory, 400, Some(0x8007_0057)),
            (CloseOutcome::Denied, 403, Some(0x8007_0005)),
            (CloseOutcome::DiskFull, 500, Some(0x8007_0112)),
            (CloseOutcome::Failed, 500, Some(0x8000_4005)),
        ];
        for (outcome, status, code) in cases {
            let mut f = Fixture::new();
            f.create(PLAIN, sid(1));
            f.send(sid(1), 0, 9, 10);
            let plan = planned_close(f.step(&close(sid(1))));
            let ack = f.table.finish_close(&plan, outcome);
            match code {
                Some(code) => assert_error(&ack, status, code, Some(sid(1))),
                None => {
                    assert_eq!(ack, Ack::status(status).for_session(&sid(1)))
                }
            }
            assert!(f.session(sid(1)).is_complete(), "{outcome:?}");
            assert_eq!(planned_close(f.step(&close(sid(1)))), plan, "{outcome:?}");
        }
    }

    // ---- Cancel-Session ----

    #[test]
    fn cancelling_discards_the_session_and_forgets_it() {
        let mut f = Fixture::new();
        f.create(PLAIN, sid(1));
        f.send(sid(1), 0, 9, 20);
        match f.step(&cancel(sid(1))) {
            Step::Discard(ack, id) => {
                assert_eq!(ack, Ack::ok().for_session(&sid(1)));
                assert_eq!(id, sid(1));
            }
            other => panic!("expected a discard, got {other:?}"),
        }
        assert!(f.table.is_empty());
        for packet in [fragment(sid(1), 10, 19, 20), close(sid(1)), cancel(sid(1))] {
            assert_session_not_found(&answer(f.step(&packet)), sid(1));
        }
    }

    #[test]
    fn cancelling_a_complete_or_untouched_session_discards_it_too() {
        let mut f = Fixture::new();
        f.create("/drop/a", sid(1));
        f.send(sid(1), 0, 9, 10);
        f.create("/drop/b", sid(2));
        for id in [sid(1), sid(2)] {
            assert!(
                matches!(f.step(&cancel(id)), Step::Discard(ack, gone) if ack.status == 200 && gone == id)
            );
        }
        assert!(f.table.is_empty());
    }

    // ---- Expiry ----

    #[test]
    fn expire_removes_only_sessions_idle_for_the_timeout() {
        let mut f = Fixture::new();
        let timeout = f.vdir.session_timeout;
        let start = f.now;
        f.create("/drop/a", sid(1));
        f.create("/drop/b", sid(2));
        f.later(MINUTE);
        f.send(sid(2), 0, 9, 20);
        assert_eq!(
            f.table
                .expire(start + timeout - Duration::from_nanos(1), timeout),
            vec![]
        );
        assert_eq!(f.table.expire(start + timeout, timeout), vec![sid(1)]);
        assert_eq!(f.table.len(), 1);
        assert_eq!(
            f.table.expire(start + timeout + MINUTE, timeout),
            vec![sid(2)]
        );
        assert!(f.table.is_empty());
    }

    #[test]
    fn an_expired_session_is_discarded_lazily_on_lookup() {
        for packet in [fragment(sid(1), 0, 9, 20), close(sid(1)), cancel(sid(1))] {
            let mut f = Fixture::new();
            f.create(PLAIN, sid(1));
            f.later(f.vdir.session_timeout - Duration::from_nanos(1));
            assert!(!matches!(f.step(&Packet::Ping), Step::Discard(..)));
            f.later(Duration::from_nanos(1));
            match f.step(&packet) {
                Step::Discard(ack, id) => {
                    assert_session_not_found(&ack, sid(1));
                    assert_eq!(id, sid(1));
                }
                other => panic!("expected a discard for {packet:?}, got {other:?}"),
            }
            assert!(f.table.is_empty());
            // Once discarded the id is simply unknown: no second discard.
            assert_session_not_found(&answer(f.step(&packet)), sid(1));
        }
    }

    #[test]
    fn progress_restarts_the_idle_timer() {
        let mut f = Fixture::new();
        let timeout = f.vdir.session_timeout;
        f.create(PLAIN, sid(1));
        f.later(timeout / 2);
        f.send(sid(1), 0, 9, 20);
        f.later(timeout / 2);
        assert!(f.table.expire(f.now, timeout).is_empty());
        assert!(matches!(
            f.step(&fragment(sid(1), 10, 19, 20)),
            Step::Write(_)
        ));
    }

    #[test]
    fn forget_removes_one_session_and_clear_removes_all() {
        let mut f = Fixture::new();
        f.create("/drop/a", sid(1));
        f.create("/drop/b", sid(2));
        f.create("/drop/c", sid(3));
        assert!(f.table.forget(&sid(2)));
        assert!(!f.table.forget(&sid(2)));
        assert_session_not_found(&answer(f.step(&fragment(sid(2), 0, 9, 20))), sid(2));
        let mut gone = f.table.clear();
        gone.sort();
        assert_eq!(gone, vec![sid(1), sid(3)]);
        assert!(f.table.is_empty());
        assert_eq!(f.table.ids().count(), 0);
        assert!(f.table.clear().is_empty());
        // A restart forgets sessions, not the ordinal counter.
        assert_eq!(f.table.created(), 3);
    }
}
