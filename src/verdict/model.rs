//! The events regrouped the way the checks ask about them: requests in order, sessions with
//! their requests, what each Fragment Ack told the client and whether it could be believed.

use super::input::{Req, Seen};
use crate::proto::PacketType;
use std::collections::BTreeMap;

/// `BG_E_SESSION_NOT_FOUND`.
pub const SESSION_NOT_FOUND: u32 = 0x8020_001F;
/// `BG_E_TOO_LARGE`.
pub const TOO_LARGE: u32 = 0x8020_0020;

/// One session the server created.
#[derive(Debug, Clone, Default)]
pub struct Session {
    pub id: String,
    pub ordinal: Option<u64>,
    pub created_seq: u64,
    /// The URL path of its Create-Session.
    pub path: String,
    pub reply: bool,
    /// Whether the Create-Session Ack reached the client (if not, the client never knew it).
    pub known_to_client: bool,
    /// Indices into [`Model::requests`] of the requests naming it, in order.
    pub requests: Vec<usize>,
    /// How it ended on the server: `committed`, `discarded`, `cancelled`, … and when.
    pub ended: Option<(u64, String)>,
    /// Committed path and digest.
    pub committed: Option<(String, Option<String>)>,
    /// Sequence numbers of successful reply downloads.
    pub replies: Vec<u64>,
    /// Notifications of the server application: sequence number and the status the final
    /// Fragment Ack relayed (`None` for a dropped duplicate).
    pub notifications: Vec<(u64, Option<u16>)>,
}

impl Session {
    pub fn label(&self) -> String {
        match self.ordinal {
            Some(n) => format!("session #{n}"),
            None => format!("session {}", self.id),
        }
    }
}

/// What a delivered Fragment Ack (200 or 416) told the client about its offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Told {
    /// An offset the client must believe.
    Offset(u64),
    /// An answer a correct client must distrust, and why.
    Lie(String),
}

#[derive(Debug, Default)]
pub struct Model {
    /// Every request record, in order.
    pub requests: Vec<Req>,
    /// By upper-case id.
    pub sessions: BTreeMap<String, Session>,
    /// Whether the journal reached the server's `stopped` event.
    pub stopped: bool,
}

impl Model {
    pub fn new(events: &[Seen]) -> Model {
        let mut model = Model::default();
        for event in events {
            match event {
                Seen::Request(r) => {
                    let at = model.requests.len();
                    if let Some(id) = r.session_id() {
                        let key = id.to_ascii_uppercase();
                        if r.is(PacketType::CreateSession)
                            && let Some(s) = model.sessions.get_mut(&key)
                        {
                            s.path.clone_from(&r.path);
                            s.known_to_client = r.sent.delivered().is_some_and(|st| st < 300);
                        }
                        if let Some(s) = model.sessions.get_mut(&key) {
                            s.requests.push(at);
                        }
                    }
                    model.requests.push(Req::clone(r));
                }
                Seen::Created {
                    seq,
                    session,
                    destination,
                    reply,
                    ..
                } => {
                    let key = session.id.to_ascii_uppercase();
                    model.sessions.insert(
                        key.clone(),
                        Session {
                            id: key,
                            ordinal: session.ordinal,
                            created_seq: *seq,
                            path: destination.clone(),
                            reply: *reply,
                            ..Session::default()
                        },
                    );
                }
                Seen::Committed {
                    seq,
                    session,
                    path,
                    sha256,
                    ..
                } => {
                    if let Some(s) = model.session_mut(&session.id) {
                        s.ended = Some((*seq, "committed".into()));
                        s.committed = Some((path.clone(), sha256.clone()));
                    }
                }
                Seen::Gone {
                    seq, session, why, ..
                } => {
                    if let Some(s) = model.session_mut(&session.id)
                        && s.ended.is_none()
                    {
                        s.ended = Some((*seq, why.clone()));
                    }
                }
                Seen::ReplyServed {
                    seq,
                    session,
                    status,
                    ..
                } => {
                    if let Some(s) = model.session_mut(&session.id)
                        && (200..300).contains(status)
                    {
                        s.replies.push(*seq);
                    }
                }
                Seen::Notification {
                    seq,
                    session,
                    relayed,
                    ..
                } => {
                    if let Some(s) = model.session_mut(&session.id) {
                        s.notifications.push((*seq, *relayed));
                    }
                }
                Seen::Stopped => model.stopped = true,
                Seen::Started { .. } | Seen::Other => {}
            }
        }
        model
    }

    fn session_mut(&mut self, id: &str) -> Option<&mut Session> {
        self.sessions.get_mut(&id.to_ascii_uppercase())
    }

    pub fn session_of(&self, r: &Req) -> Option<&Session> {
        self.sessions.get(&r.session_id()?.to_ascii_uppercase())
    }

    /// A session's requests of one packet type, with their indices.
    pub fn of_type<'a>(
        &'a self,
        s: &'a Session,
        packet: PacketType,
    ) -> impl Iterator<Item = (usize, &'a Req)> + 'a {
        s.requests
            .iter()
            .map(|&i| (i, &self.requests[i]))
            .filter(move |(_, r)| r.is(packet))
    }

    /// Every delivered Fragment Ack (200 or 416) of a session and what it told the client,
    /// judged as a careful client would: an offset that is not a number, beyond the total,
    /// ahead of every byte the client sent in the session, or an Ack naming another session,
    /// cannot be true.
    pub fn told(&self, s: &Session) -> Vec<(usize, Told)> {
        let mut sent_high = 0u64;
        let mut out = Vec::new();
        for (i, r) in self.of_type(s, PacketType::Fragment) {
            let Some(range) = r.range else { continue };
            sent_high = sent_high.max(range.end());
            let (Some(status), Some(ack)) = (r.sent.delivered(), &r.ack) else {
                continue;
            };
            if status != 200 && status != 416 {
                continue;
            }
            let told = match ack.offset() {
                None => Told::Lie(match &ack.received {
                    None => "the Ack had no BITS-Received-Content-Range".into(),
                    Some(raw) => format!("BITS-Received-Content-Range `{raw}` is not a number"),
                }),
                Some(n) if n > range.total => Told::Lie(format!(
                    "BITS-Received-Content-Range {n} is beyond the file's {} bytes",
                    range.total
                )),
                Some(n) if n > sent_high => Told::Lie(format!(
                    "BITS-Received-Content-Range {n} is ahead of the {sent_high} bytes sent"
                )),
                Some(n) => match &ack.session_id {
                    Some(other) if !other.trim().eq_ignore_ascii_case(&s.id) => {
                        Told::Lie(format!("the Ack named another session, {other}"))
                    }
                    _ => Told::Offset(n),
                },
            };
            out.push((i, told));
        }
        out
    }

    /// Whether a client could have read request `i`'s answer before sending request `j`.
    pub fn answered_before(&self, i: usize, j: usize) -> bool {
        self.requests[j].start_ms >= self.requests[i].end_ms
    }
}
