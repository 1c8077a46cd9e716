//! Sessions and the server state machine of PROTOCOL.md §7.3–§7.5, as pure functions.
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
use super::vdir::{Overlap, Vdir};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// What the server found at the destination path before a Create-Session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    Nothing,
    File,
    Directory,
}

/// The facts a step needs from the outside world.
#[derive(Debug, Clone)]
pub struct Env<'a> {
    pub now: Instant,
    /// The id a Create-Session would issue (drawn by the server from its seeded RNG).
    pub fresh_id: SessionId,
    /// What exists at a Create-Session's destination.
    pub existing: Existing,
    /// `scheme://host[:port]` the client reached us at, for reply URLs.
    pub origin: &'a str,
}

/// One live session (PROTOCOL.md §7.1).
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
    /// Set when the final fragment completes an upload-reply session; re-sent on retries.
    pub reply_url: Option<String>,
    pub last_activity: Instant,
}

impl Session {
    /// All bytes present (`WAIT_FOR_CLOSE`).
    pub fn is_complete(&self) -> bool {
        self.total == Some(self.received)
    }

    fn expired(&self, now: Instant, timeout: Duration) -> bool {
        now.saturating_duration_since(self.last_activity) >= timeout
    }

    fn ack(&self) -> Ack {
        Ack::ok().with_session(Some(&self.id.to_string()))
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
}

/// How the server's commit at Close-Session went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseOutcome {
    /// File placed at the destination (or discarded as planned).
    Done,
    /// The destination appeared meanwhile and overwrites are off: 409, session kept.
    Conflict,
    /// The destination is a directory: 400, session kept.
    Directory,
    /// The temp file vanished behind the server's back: 404, session removed.
    Vanished,
    /// The parent path cannot be created (a file is in the way): 403, session kept.
    Denied,
    /// The disk failed or is full: 500 + `0x80070112`, session kept.
    DiskFull,
}

/// All live sessions.
#[derive(Debug, Default, Clone)]
pub struct Table {
    sessions: HashMap<SessionId, Session>,
    created: u64,
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

    /// Handles one packet (PROTOCOL.md §7.4).
    pub fn step(&mut self, vdir: &Vdir, packet: &Packet, env: &Env<'_>) -> Step {
        match packet {
            Packet::Ping => Step::Answer(Ack::ok()),
            Packet::CreateSession {
                destination,
                protocol,
            } => Step::Answer(self.create(vdir, destination, protocol, env)),
            Packet::Fragment { session, range, .. } => match self.live(vdir, session, env.now) {
                Ok(s) => s.fragment(vdir, *range, env.now),
                Err(step) => step,
            },
            Packet::CloseSession { session, .. } => match self.live(vdir, session, env.now) {
                Ok(s) => Step::Close(Close {
                    session: s.id,
                    destination: s.destination.clone(),
                    // A file no fragment ever touched is the empty file (PROTOCOL.md §10.16).
                    commit: s.is_complete() || (s.total.is_none() && s.received == 0),
                }),
                Err(step) => step,
            },
            Packet::CancelSession { session, .. } => match self.live(vdir, session, env.now) {
                Ok(s) => {
                    let ack = s.ack();
                    self.sessions.remove(session);
                    Step::Discard(ack, *session)
                }
                Err(step) => step,
            },
        }
    }

    /// Records the bytes a [`Write`] really stored and answers the fragment. `stored` may be
    /// short of `write.len` (the body ended early); only stored bytes are acknowledged.
    pub fn record_fragment(&mut self, write: &Write, stored: u64, env: &Env<'_>) -> Ack {
        let Some(s) = self.sessions.get_mut(&write.session) else {
            return Ack::error(BitsError::SessionNotFound)
                .with_session(Some(&write.session.to_string()));
        };
        if s.received == write.at {
            s.received = write.at + stored.min(write.len);
            s.last_activity = env.now;
        }
        if s.is_complete() && s.reply && s.reply_url.is_none() {
            s.reply_url = Some(reply_url(env.origin, &s.id));
        }
        s.fragment_ack()
    }

    /// Finishes a Close-Session after the server committed or discarded the file.
    pub fn finish_close(&mut self, close: &Close, outcome: CloseOutcome) -> Ack {
        let echo = close.session.to_string();
        if !self.sessions.contains_key(&close.session) {
            return Ack::error(BitsError::SessionNotFound).with_session(Some(&echo));
        }
        let ack = match outcome {
            CloseOutcome::Done => Ack::ok(),
            CloseOutcome::Vanished => Ack::status(404),
            CloseOutcome::Conflict => Ack::status(409),
            CloseOutcome::Directory => Ack::error(BitsError::InvalidArg),
            CloseOutcome::Denied => Ack::error(BitsError::AccessDenied),
            CloseOutcome::DiskFull => Ack::error(BitsError::DiskFull),
        };
        if matches!(outcome, CloseOutcome::Done | CloseOutcome::Vanished) {
            self.sessions.remove(&close.session);
        }
        ack.with_session(Some(&echo))
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
            self.sessions.remove(id);
        }
        gone
    }

    /// Forgets one session (a fault, or resource pressure); true if it existed.
    pub fn forget(&mut self, id: &SessionId) -> bool {
        self.sessions.remove(id).is_some()
    }

    /// Forgets every session, like a server restart; returns their ids.
    pub fn clear(&mut self) -> Vec<SessionId> {
        self.sessions.drain().map(|(id, _)| id).collect()
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
        // Two live sessions racing for one destination fail like an existing file would.
        if !vdir.allow_overwrites
            && self
                .sessions
                .values()
                .any(|s| &s.destination == destination)
        {
            return Ack::status(409);
        }
        if self.sessions.contains_key(&env.fresh_id) {
            // The server's id source repeated itself; never hand out a live id twice.
            return Ack::error(BitsError::DiskFull);
        }
        self.created += 1;
        let session = Session {
            id: env.fresh_id,
            destination: destination.clone(),
            reply: destination.starts_with(&vdir.reply_prefix),
            ordinal: self.created,
            total: None,
            received: 0,
            reply_url: None,
            last_activity: env.now,
        };
        self.sessions.insert(env.fresh_id, session);
        let mut ack = Ack::ok().with_session(Some(&env.fresh_id.to_string()));
        ack.protocol = Some(protocol.to_owned());
        ack.accept_encoding = true;
        if let Some(host) = &vdir.host_id {
            ack.host_id = Some(host.clone());
            ack.host_id_fallback_timeout = vdir.host_id_fallback_timeout;
        }
        ack
    }

    /// The live session for an id, or the step answering that it is unknown. A session past
    /// its idle timeout is removed here, so expiry never depends on when a sweep ran.
    fn live(&mut self, vdir: &Vdir, id: &SessionId, now: Instant) -> Result<&mut Session, Step> {
        let not_found = Ack::error(BitsError::SessionNotFound).with_session(Some(&id.to_string()));
        match self.sessions.get(id) {
            None => Err(Step::Answer(not_found)),
            Some(s) if s.expired(now, vdir.session_timeout) => {
                self.sessions.remove(id);
                Err(Step::Discard(not_found, *id))
            }
            Some(_) => self.sessions.get_mut(id).ok_or(Step::Answer(not_found)),
        }
    }
}

impl Session {
    /// PROTOCOL.md §7.5 steps 3–8 for one fragment.
    fn fragment(&mut self, vdir: &Vdir, range: ContentRange, now: Instant) -> Step {
        let reject = |error: BitsError| {
            Step::Answer(Ack::error(error).with_session(Some(&self.id.to_string())))
        };
        if self.total.is_some_and(|t| t != range.total()) {
            return reject(BitsError::InvalidArg);
        }
        if vdir.max_upload_size.is_some_and(|max| range.total() > max) {
            return reject(BitsError::TooLarge);
        }
        if range.len() > vdir.max_fragment_size {
            return Step::Answer(Ack::status(413).with_session(Some(&self.id.to_string())));
        }
        self.total = Some(range.total());
        let expected = self.received;
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
