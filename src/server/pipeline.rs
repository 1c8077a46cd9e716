//! One request, top to bottom: parse → plan → step → answer.
//!
//! [`Server::handle`] is the whole story of a BITS_POST request; the helpers below it do the
//! I/O a step asks for (stream a fragment body, commit or discard a file). Whatever happens —
//! an Ack, a fault, a rejected packet, a body that never arrived — the request ends in
//! [`Server::execute`], which puts the answer on the wire and records it.

use super::accept::Conn;
use super::body::{self, DRAIN_LIMIT, End, FRAGMENT_DRAIN_LIMIT, Hash, Reading, Span};
use super::execute::{self, Answer};
use super::reply_http::origin;
use super::sessions::{Entry, Follow};
use super::{Server, lock};
use crate::fault::answer::answer;
use crate::fault::{Action, Applied, Down, Outcome, Plan, Wire};
use crate::journal::{Request as Record, Sent, SessionRef};
use crate::proto::{
    Ack, AckError, BitsError, Close, CloseOutcome, Env, Existing, Head, Packet, Place, SessionId,
    Step, Write, packet,
};
use crate::store::error_for;
use http::{Method, Request};
use hyper::body::Incoming;
use std::sync::Arc;

impl Server {
    pub(super) async fn handle(self: Arc<Self>, req: Request<Incoming>, conn: Arc<Conn>) -> Answer {
        let arrived = tokio::time::Instant::now();
        let mut record = new_record(&conn, req.method(), req.uri().path());
        if let Place::Member(member) = conn.place {
            let down =
                lock(&self.state)
                    .faults
                    .member_down(member, conn.id, self.started.elapsed());
            if let Some((fault, how)) = down {
                // Down while a connection to it was open: it stops answering there too.
                record.faults.push(fault);
                let wire = match how {
                    Down::Refuse => Wire::Close,
                    Down::Blackhole => Wire::Hang(self.config.header_read_timeout),
                };
                return self
                    .execute(wire, &Plan::default(), record, &conn, arrived)
                    .await;
            }
        }
        if req.method() == Method::GET || req.method() == Method::HEAD {
            return Ok(self.serve_reply(&req, record, arrived).await);
        }
        let (parts, mut body) = req.into_parts();
        let target = parts.uri.to_string();
        let head = Head {
            method: parts.method.as_str().as_bytes(),
            target: target.as_bytes(),
            headers: parts
                .headers
                .iter()
                .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()))
                .collect(),
        };

        // Parse: a malformed packet is answered by the core's Ack, nothing else happens.
        let record = Record {
            content_length_missing: head.header("Content-Length").is_none()
                && head.header("Transfer-Encoding").is_none(),
            content_name: head
                .text("Content-Name")
                .map(|n| n.chars().take(256).collect()),
            ..record
        };
        let packet = match packet::parse(&head, self.config.vdir.content_length) {
            Ok(packet) => packet,
            Err(ack) => {
                body::drain(&mut body, DRAIN_LIMIT).await;
                let record = self.rejected(record, &head, &ack);
                let wire = Wire::Send(ack.render(self.config.vdir.error_header));
                return self
                    .execute(wire, &Plan::default(), record, &conn, arrived)
                    .await;
            }
        };
        let mut record = Record {
            packet: Some(packet.packet_type()),
            range: fragment_range(&packet),
            offers_bits15: match &packet {
                Packet::CreateSession { .. } => Some(true),
                _ => None,
            },
            ..record
        };
        if let Some(range) = record.range
            && conn.control.take_close_without_notify()
        {
            return self
                .close_mid_body(range.len(), body, record, &conn, arrived)
                .await;
        }

        // Plan and step, under one lock; then follow what the table changed.
        let existing = match &packet {
            Packet::CreateSession { destination, .. } => self.store.inspect(destination).await,
            _ => Existing::Nothing,
        };
        let origin = origin(&parts.headers, &conn);
        // Requests on one session run one at a time: hold its entry for the whole request.
        let entry = packet.session().and_then(|id| self.entry(&id));
        let mut guard = match &entry {
            Some(e) => Some(e.lock().await),
            None => None,
        };
        let decision = self.decide(&packet, &head, parts.uri.path(), &conn, existing, &origin);
        let plan = decision.plan;
        record.session = decision.session;
        record.index = plan.index;
        record.faults.clone_from(&plan.firings);
        self.follow(decision.changes, Follow::default()).await;

        // Carry out the step: the I/O it asks for, then the core's Ack.
        execute::stall(&plan, &conn).await;
        let applied = match decision.step {
            None => {
                // A replacement answer keeps the connection: read the body it ignores.
                if matches!(plan.action, Action::Instead(Outcome::Respond(_))) {
                    self.drain_unused(&mut body, &packet).await;
                }
                Applied::Skipped
            }
            Some(step) => {
                let entry = guard.as_deref_mut();
                let at = At {
                    origin: &origin,
                    uri: &parts.uri,
                };
                self.apply(&packet, step, entry, &mut body, &plan, &at, &mut record)
                    .await
            }
        };
        if let (Action::LoseSession(loss), Applied::Answered(_)) = (&plan.action, &applied) {
            let id = record.session.map(|s| s.id);
            self.lose(id, *loss).await;
        }

        // Answer: the fault layer turns plan + Ack into what goes on the wire.
        if let Applied::Answered(ack) = &applied {
            record.status = Some(ack.status);
            record.reason = reason(ack);
        }
        let total = record.range.map(|r| r.total());
        let wire = answer(&plan.action, &applied, total, self.config.vdir.error_header);
        if let Wire::Send(rendered) = &wire
            && rendered.status >= 400
            && record.reason.is_none()
        {
            record.reason = Some(format!("fault: answered {}", rendered.status));
        }
        self.execute(wire, &plan, record, &conn, arrived).await
    }

    /// A `tls` fault's `close=no-notify`: half the fragment body is read, then the TCP stream
    /// ends under TLS (FIN, no `close_notify`). The rest of the body is read and dropped,
    /// so the client sees a truncated TLS stream rather than a reset. Nothing is stored.
    async fn close_mid_body(
        &self,
        len: u64,
        mut body: Incoming,
        mut record: Record,
        conn: &Arc<Conn>,
        arrived: tokio::time::Instant,
    ) -> Answer {
        body::drain(&mut body, len / 2).await;
        conn.control.fin_below_tls();
        body::drain(&mut body, self.fragment_drain_limit()).await;
        record.reason = Some("fault: closed mid-body without TLS close_notify".into());
        self.execute(Wire::Close, &Plan::default(), record, conn, arrived)
            .await
    }

    /// Does the I/O a step asks for and returns how the core's part ended.
    #[allow(clippy::too_many_arguments)]
    async fn apply(
        &self,
        packet: &Packet,
        step: Step,
        entry: Option<&mut Entry>,
        body: &mut Incoming,
        plan: &Plan,
        at: &At<'_>,
        record: &mut Record,
    ) -> Applied {
        let cut = match plan.action {
            Action::ResetMidBody { after, keep } => Some((after, keep)),
            _ => None,
        };
        let ack = match (step, entry) {
            (Step::Write(write), Some(entry)) => {
                return self.write(entry, body, &write, at, cut, plan, record).await;
            }
            (Step::Notify(_), Some(_)) if cut.is_some() => {
                // Reset before the request's end: the server never gets to notify.
                record.reason = Some("fault: reset mid-body before the notification".into());
                body::drain(body, cut.map_or(0, |(after, _)| after)).await;
                return Applied::Cut;
            }
            (Step::Notify(id), Some(entry)) => {
                // A retried final fragment after a failed notification: its bytes are all
                // stored, so read them first rather than hold the client while notifying.
                self.drain_unused(body, packet).await;
                return Applied::Answered(self.notify(entry, at.job(id)).await);
            }
            (Step::Notify(id), _) => {
                Ack::error(BitsError::SessionNotFound).with_session(Some(&id.to_string()))
            }
            (Step::Close(close), Some(entry)) => self.close(entry, &close).await,
            (Step::Answer(ack) | Step::Discard(ack, _), _) => ack,
            // The session's entry went away between lookup and step (a concurrent loss).
            (Step::Write(Write { session, .. }) | Step::Close(Close { session, .. }), None) => {
                Ack::error(BitsError::SessionNotFound).with_session(Some(&session.to_string()))
            }
        };
        // The body was not used: read what is left so the connection can carry on (or, for a
        // mid-body reset, just the prefix the fault lets through).
        match cut {
            Some((after, _)) => {
                // The core's answer is never sent, but the record says what it was.
                record.status = Some(ack.status);
                record.reason = reason(&ack);
                body::drain(body, after).await;
                Applied::Cut
            }
            None => {
                self.drain_unused(body, packet).await;
                Applied::Answered(ack)
            }
        }
    }

    /// Streams a fragment body into the temp file and records what was stored.
    #[allow(clippy::too_many_arguments)]
    async fn write(
        &self,
        entry: &mut Entry,
        body: &mut Incoming,
        write: &Write,
        at: &At<'_>,
        cut: Option<(u64, bool)>,
        plan: &Plan,
        record: &mut Record,
    ) -> Applied {
        let session_id = write.session;
        // The built-in reply names the upload's digest; a notified application's does not.
        let builtin_reply = lock(&self.state)
            .table
            .get(&session_id)
            .is_some_and(|s| s.reply && !s.notified);
        let temp = body::Temp {
            store: self.store.clone(),
            session: session_id,
            hash: self.config.sha256 || builtin_reply,
        };
        let reading = Reading {
            cut_after: cut.map(|(after, _)| after),
            read_rate: plan.read_rate,
            stall_timeout: self.config.body_read_timeout,
        };
        let span = Span {
            at: write.at,
            skip: write.skip,
            len: write.len,
        };
        let streamed = body::stream(&mut entry.hash, temp, body, span, reading).await;
        record.received = streamed.received;
        // Bytes stored before a mid-body reset count only when the fault keeps them; bytes
        // written into a deleted file never count.
        let stored = match (&streamed.end, cut) {
            (End::Cut, Some((_, false))) | (End::Vanished, _) => 0,
            _ => streamed.stored,
        };
        record.stored = stored;
        let env = Env {
            now: super::now(),
            fresh_id: None,
            existing: Existing::Nothing,
            origin: at.origin,
            place: Place::Front,
        };
        let (ack, completed, notify) = {
            let mut state = lock(&self.state);
            let ack = state.table.record_fragment(write, stored, &env);
            let session = state.table.get(&session_id);
            let completed = session
                .filter(|s| s.is_complete() && s.reply && !s.notified)
                .map(|s| (s.destination.clone(), s.total.unwrap_or(0)));
            let notify = session.is_some_and(|s| s.awaits_notification());
            (ack, completed, notify)
        };
        // The last byte of a notified session: the application answers before the Ack.
        let ack = if notify && matches!(streamed.end, End::Whole) {
            self.notify(entry, at.job(session_id)).await
        } else {
            ack
        };
        if let (Some((destination, size)), None) = (completed, &entry.reply) {
            let digest = Hash::of(entry.hash.as_ref(), size);
            let reply = self
                .build_reply(&session_id, &destination, size, digest)
                .await;
            entry.reply = Some(reply);
        }
        match streamed.end {
            End::Whole => Applied::Answered(ack),
            End::Cut => Applied::Cut,
            End::Body(why) => {
                record.reason = Some(why);
                Applied::BodyFailed
            }
            End::Disk(e) => {
                tracing::warn!(session = %session_id, error = %e, "fragment write failed");
                record.reason = Some(format!("fragment write failed: {e}"));
                // The client sends the whole body before it reads the answer: read the rest,
                // or the error Ack is lost in a reset.
                body::drain(body, self.fragment_drain_limit()).await;
                Applied::Answered(Ack::error(error_for(&e)).with_session(ack.session_id.as_deref()))
            }
            End::Vanished => self.vanished(session_id, body).await,
        }
    }

    /// The session's temp file was deleted behind the server's back: its bytes are gone, so
    /// the session is too (the client starts over), and nothing is acknowledged.
    async fn vanished(&self, id: SessionId, body: &mut Incoming) -> Applied {
        tracing::warn!(session = %id, "the session's temp file was deleted; forgetting the session");
        self.with_table(Follow::default(), |t| t.lose_file(&id))
            .await;
        body::drain(body, self.fragment_drain_limit()).await;
        Applied::Answered(
            Ack::error(BitsError::SessionNotFound).with_session(Some(&id.to_string())),
        )
    }

    /// Commits or discards a session's file and answers the Close-Session.
    async fn close(&self, entry: &mut Entry, close: &Close) -> Ack {
        let size = lock(&self.state)
            .table
            .get(&close.session)
            .map_or(0, |s| s.received);
        let outcome = if close.commit {
            self.store
                .commit(
                    &close.session,
                    &close.destination,
                    self.config.vdir.allow_overwrites,
                    close.empty,
                )
                .await
        } else {
            CloseOutcome::Done
        };
        let mut follow = Follow::default();
        if close.commit && outcome == CloseOutcome::Done {
            // Only a digest already at hand is reported: hashing the file here would hold
            // up the Ack.
            let digest = match Hash::of(entry.hash.as_ref(), size) {
                Some(digest) => Some(digest),
                None if close.empty => Some(super::sessions::hex(
                    &<sha2::Sha256 as sha2::Digest>::digest([]),
                )),
                None => entry.reply.as_ref().and_then(|r| r.sha256.clone()),
            };
            let path = close.destination.to_string();
            follow.committed = Some((path.trim_start_matches('/').to_owned(), size, digest));
        }
        let ack = self
            .with_table(follow, |t| t.finish_close(close, outcome))
            .await;
        if matches!(outcome, CloseOutcome::Done | CloseOutcome::Vanished) {
            entry.reply = None;
        }
        ack
    }

    /// The record of a request the parser rejected.
    fn rejected(&self, mut record: Record, head: &Head<'_>, ack: &Ack) -> Record {
        record.packet_label = Some(
            head.text("BITS-Packet-Type")
                .unwrap_or("-")
                .chars()
                .take(32)
                .collect(),
        );
        record.session = head
            .echo_session_id()
            .and_then(SessionId::parse)
            .map(|id| SessionRef {
                id,
                ordinal: self.ordinal(&id),
            });
        record.status = Some(ack.status);
        record.reason = reason(ack);
        if head
            .text("BITS-Packet-Type")
            .is_some_and(|t| t.eq_ignore_ascii_case("Create-Session"))
        {
            record.offers_bits15 = Some(
                head.text("BITS-Supported-Protocols")
                    .and_then(packet::negotiate)
                    .is_some(),
            );
        }
        record
    }
}

impl Server {
    /// Reads what is left of a body nobody needs, so the connection survives: a whole
    /// fragment (clients send it before reading the Ack), a little of anything else.
    async fn drain_unused(&self, body: &mut Incoming, packet: &Packet) {
        let limit = match packet {
            Packet::Fragment { .. } => self.fragment_drain_limit(),
            _ => DRAIN_LIMIT,
        };
        body::drain(body, limit).await;
    }

    fn fragment_drain_limit(&self) -> u64 {
        FRAGMENT_DRAIN_LIMIT.max(self.config.vdir.max_fragment_size)
    }
}

/// Where a request was addressed: for reply URLs and the notification's
/// `BITS-Original-Request-URL`.
struct At<'a> {
    /// `scheme://host[:port]` as the client addressed us.
    origin: &'a str,
    uri: &'a http::Uri,
}

impl At<'_> {
    fn job(&self, id: SessionId) -> super::notify::Job<'_> {
        let path = self.uri.path_and_query().map_or("/", |p| p.as_str());
        super::notify::Job {
            id,
            original_url: format!("{}{path}", self.origin),
            query: self.uri.query(),
            origin: self.origin,
        }
    }
}

fn fragment_range(packet: &Packet) -> Option<crate::proto::ContentRange> {
    match packet {
        Packet::Fragment { range, .. } => Some(*range),
        _ => None,
    }
}

/// A request's record before anything happened to it.
fn new_record(conn: &Conn, method: &Method, path: &str) -> Record {
    Record {
        conn: conn.id,
        peer: conn.peer,
        method: method.as_str().chars().take(32).collect(),
        path: path.to_owned(),
        packet: None,
        packet_label: None,
        session: None,
        index: 0,
        range: None,
        received: 0,
        stored: 0,
        status: None,
        reason: None,
        faults: Vec::new(),
        sent: Sent::Closed,
        latency_ms: 0.0,
        content_length_missing: false,
        offers_bits15: None,
        content_name: None,
        ack: None,
    }
}

/// Why an Ack is an error, for the record: the BITS error's name and code, or the status.
fn reason(ack: &Ack) -> Option<String> {
    if ack.status < 400 {
        return None;
    }
    Some(match &ack.error {
        Some(AckError { code, .. }) => match BitsError::ALL
            .iter()
            .find(|e| e.code() == *code && e.status() == ack.status)
        {
            Some(e) => format!("{} (0x{code:08X})", e.name()),
            None => format!("0x{code:08X}"),
        },
        None => match ack.status {
            409 => "the destination exists or another session is uploading to it".into(),
            413 => "fragment larger than the maximum fragment size".into(),
            416 => "fragment does not start at the received offset".into(),
            status => format!("status {status}"),
        },
    })
}
