//! The checks over hand-built event sequences: each rule's edges, both ways.

use super::input::{AckSeen, Req, Seen, Sent, SessionSeen, Span};
use super::*;
use crate::proto::PacketType;

/// Builds a journal: each call appends events, a millisecond apart unless `wait` says more.
#[derive(Default)]
struct Story {
    events: Vec<Seen>,
    seq: u64,
    now: f64,
    ordinal: u64,
}

fn sid(id: &str) -> SessionSeen {
    SessionSeen {
        id: id.into(),
        ordinal: None,
    }
}

impl Story {
    fn next(&mut self) -> (u64, f64) {
        self.seq += 1;
        self.now += 1.0;
        (self.seq, self.now)
    }

    fn wait(&mut self, ms: f64) -> &mut Self {
        self.now += ms;
        self
    }

    fn request(&mut self, packet: PacketType, session: Option<&str>, sent: Sent) -> Req {
        let (seq, at) = self.next();
        Req {
            seq,
            start_ms: at - 0.5,
            end_ms: at,
            conn: 1,
            method: "BITS_POST".into(),
            path: "/a".into(),
            packet: Some(packet),
            label: None,
            session: session.map(sid),
            range: None,
            received: 0,
            stored: 0,
            reason: None,
            sent,
            ack: sent.delivered().map(|_| AckSeen {
                session_id: session.map(str::to_owned),
                ..AckSeen::default()
            }),
            faults: Vec::new(),
            content_length_missing: false,
            offers_bits15: None,
            content_name: None,
        }
    }

    fn push(&mut self, r: Req) -> &mut Self {
        self.events.push(Seen::Request(Box::new(r)));
        self
    }

    fn create(&mut self, id: &str) -> &mut Self {
        self.create_at(id, "/a", Sent::Status(200))
    }

    fn create_at(&mut self, id: &str, path: &str, sent: Sent) -> &mut Self {
        let (seq, at) = self.next();
        self.ordinal += 1;
        self.events.push(Seen::Created {
            seq,
            at_ms: at,
            session: SessionSeen {
                id: id.into(),
                ordinal: Some(self.ordinal),
            },
            destination: path.into(),
            reply: false,
        });
        let mut r = self.request(PacketType::CreateSession, Some(id), sent);
        r.path = path.into();
        r.offers_bits15 = Some(true);
        self.push(r)
    }

    /// A fragment `first..=last` of `total`, answered `sent` with `BITS-Received-Content-Range: told`.
    fn frag(
        &mut self,
        id: &str,
        first: u64,
        last: u64,
        total: u64,
        sent: Sent,
        told: Option<&str>,
    ) -> &mut Self {
        let mut r = self.request(PacketType::Fragment, Some(id), sent);
        r.range = Some(Span { first, last, total });
        if let Some(ack) = &mut r.ack {
            ack.received = told.map(str::to_owned);
        }
        self.push(r)
    }

    /// A fragment answered 200 with the truth.
    fn ok(&mut self, id: &str, first: u64, last: u64, total: u64) -> &mut Self {
        let told = (last + 1).to_string();
        self.frag(id, first, last, total, Sent::Status(200), Some(&told))
    }

    fn close(&mut self, id: &str) -> &mut Self {
        let r = self.request(PacketType::CloseSession, Some(id), Sent::Status(200));
        self.push(r)
    }

    fn lost(&mut self, id: &str, packet: PacketType) -> &mut Self {
        let mut r = self.request(packet, Some(id), Sent::Status(500));
        if let Some(ack) = &mut r.ack {
            ack.error_code = Some("0x8020001F".into());
        }
        self.push(r)
    }

    fn ended(&mut self, id: &str, why: &str) -> &mut Self {
        let (seq, at) = self.next();
        self.events.push(if why == "committed" {
            Seen::Committed {
                seq,
                at_ms: at,
                session: sid(id),
                path: "a".into(),
                size: 0,
                sha256: Some("ab".into()),
            }
        } else {
            Seen::Gone {
                seq,
                at_ms: at,
                session: sid(id),
                why: why.into(),
            }
        });
        self
    }

    fn judge(&self) -> Verdict {
        judge(&self.events, &Options::default())
    }
}

fn messages(v: &Verdict, check: &str) -> Vec<String> {
    v.outcome(check)
        .expect("check")
        .findings
        .iter()
        .map(|f| f.message.clone())
        .collect()
}

fn judged(v: &Verdict, check: &str) -> usize {
    v.outcome(check).expect("check").judged
}

#[test]
fn a_clean_upload_passes_everything_it_exercises() {
    let mut s = Story::default();
    s.create("A")
        .ok("A", 0, 9, 20)
        .ok("A", 10, 19, 20)
        .ended("A", "committed")
        .close("A");
    let v = s.judge();
    assert!(v.passed(), "{}", report::text(&v));
    assert_eq!((v.errors(), v.warnings()), (0, 0));
    assert_eq!(v.summary(), "pass");
    assert_eq!(
        judged(&v, "resumes-from-ack"),
        1,
        "the last Ack says 20 of 20: nothing to resume"
    );
    assert_eq!(judged(&v, "closes-complete-uploads"), 1);
    assert_eq!(judged(&v, "no-premature-close"), 1);
    assert_eq!(judged(&v, "backs-off"), 0);
    assert_eq!(
        v.outcome("backs-off").map(Outcome::status),
        Some("not exercised")
    );
    assert_eq!(v.outcome("framing").map(Outcome::status), Some("pass"));
    assert_eq!((v.requests, v.sessions), (4, 1));
    assert!(!v.complete);
}

#[test]
fn resuming_before_after_or_at_the_ack() {
    let mut s = Story::default();
    s.create("A").ok("A", 0, 9, 30).ok("A", 5, 14, 30);
    let v = s.judge();
    assert_eq!(
        messages(&v, "resumes-from-ack")[0],
        "re-sent 5 bytes the server had acknowledged: the Ack said 10, the next fragment started at 5"
    );
    assert_eq!(
        v.outcome("resumes-from-ack")
            .map(|o| o.findings[0].evidence.clone()),
        Some(vec![3, 4])
    );
    assert_eq!(v.summary(), "fail: resumes-from-ack");

    let mut s = Story::default();
    s.create("A")
        .ok("A", 0, 9, 30)
        .frag("A", 12, 20, 30, Sent::Status(416), Some("10"));
    assert!(messages(&s.judge(), "resumes-from-ack")[0].starts_with("left a gap of 2 bytes"));

    // A 416 names the offset to go on from; the client does.
    let mut s = Story::default();
    s.create("A")
        .frag("A", 0, 9, 30, Sent::Status(416), Some("0"))
        .ok("A", 0, 9, 30);
    let v = s.judge();
    assert!(messages(&v, "resumes-from-ack").is_empty());
    assert_eq!(judged(&v, "resumes-from-ack"), 1);

    // A lost Ack leaves the client free to resend; an answer it could not have read yet too.
    let mut s = Story::default();
    s.create("A")
        .frag("A", 0, 9, 30, Sent::Reset, None)
        .ok("A", 0, 9, 30)
        .ok("A", 10, 19, 30);
    let v = s.judge();
    assert_eq!(judged(&v, "resumes-from-ack"), 1);
    assert!(messages(&v, "resumes-from-ack").is_empty());
    let mut s = Story::default();
    s.create("A").ok("A", 0, 9, 30);
    let mut early = s.request(PacketType::Fragment, Some("A"), Sent::Status(200));
    early.start_ms -= 5.0;
    early.range = Some(Span {
        first: 0,
        last: 9,
        total: 30,
    });
    s.push(early);
    assert_eq!(judged(&s.judge(), "resumes-from-ack"), 0);
}

#[test]
fn a_lost_session_must_be_recreated_from_zero() {
    let mut s = Story::default();
    s.create("A")
        .ok("A", 0, 9, 20)
        .lost("A", PacketType::Fragment)
        .ok("A", 10, 19, 20);
    let v = s.judge();
    let found = messages(&v, "recreates-after-session-loss");
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found[0].starts_with("kept using the lost session's id 1 time(s) after Fragment"),
        "{found:?}"
    );
    assert!(
        found[1].starts_with("did not create a new session"),
        "{found:?}"
    );

    let mut s = Story::default();
    s.create("A")
        .ok("A", 0, 9, 20)
        .lost("A", PacketType::Fragment)
        .create("B")
        .ok("B", 10, 19, 20);
    assert_eq!(
        messages(&s.judge(), "recreates-after-session-loss"),
        ["the new session #2 started at byte 10 instead of 0"]
    );

    // Done right: a new session from byte 0; a Cancel of the dead id is fine.
    let mut s = Story::default();
    s.create("A")
        .ok("A", 0, 9, 20)
        .lost("A", PacketType::CloseSession);
    let cancel = s.request(PacketType::CancelSession, Some("A"), Sent::Status(200));
    s.push(cancel).create("B").ok("B", 0, 19, 20).close("B");
    let v = s.judge();
    assert!(messages(&v, "recreates-after-session-loss").is_empty());
    assert_eq!(judged(&v, "recreates-after-session-loss"), 1);

    // A Close resent after its lost Ack finds the file committed: nothing to re-create.
    let mut s = Story::default();
    s.create("A")
        .ok("A", 0, 9, 10)
        .ended("A", "committed")
        .lost("A", PacketType::CloseSession);
    assert_eq!(judged(&s.judge(), "recreates-after-session-loss"), 0);

    // Session-not-found on a Ping or Create is not a loss of this session.
    let mut s = Story::default();
    s.create("A").lost("A", PacketType::Ping);
    assert_eq!(judged(&s.judge(), "recreates-after-session-loss"), 0);
}

#[test]
fn complete_uploads_are_closed_and_only_those() {
    let mut s = Story::default();
    s.create("A").ok("A", 0, 9, 10);
    let v = s.judge();
    assert!(messages(&v, "closes-complete-uploads")[0].contains("never sent Close-Session"));
    // Not abandoned-and-complete twice: the warning is for sessions never finished either.
    assert_eq!(messages(&v, "no-abandoned-sessions").len(), 1);

    // Cancelled, or lost after completion: not a failure to close.
    for end in [PacketType::CancelSession, PacketType::CloseSession] {
        let mut s = Story::default();
        s.create("A").ok("A", 0, 9, 10);
        let r = s.request(end, Some("A"), Sent::Status(200));
        s.push(r);
        assert!(messages(&s.judge(), "closes-complete-uploads").is_empty());
    }
    let mut s = Story::default();
    s.create("A")
        .ok("A", 0, 9, 10)
        .lost("A", PacketType::CloseSession);
    assert!(messages(&s.judge(), "closes-complete-uploads").is_empty());

    // An Ack of the whole file that lies (ahead of what was sent) is not completion.
    let mut s = Story::default();
    s.create("A")
        .frag("A", 0, 4, 10, Sent::Status(200), Some("10"));
    assert_eq!(judged(&s.judge(), "closes-complete-uploads"), 0);
}

#[test]
fn closing_early_is_premature_unless_a_lie_made_it_so() {
    let mut s = Story::default();
    s.create("A").ok("A", 0, 4, 10).close("A");
    assert_eq!(
        messages(&s.judge(), "no-premature-close"),
        [
            "sent Close-Session when the server had acknowledged 5 of 10 bytes: the upload is discarded"
        ]
    );
    let mut s = Story::default();
    s.create("A")
        .frag("A", 0, 4, 10, Sent::Reset, None)
        .close("A");
    assert!(
        messages(&s.judge(), "no-premature-close")[0]
            .starts_with("sent Close-Session before any fragment")
    );
    let mut s = Story::default();
    s.create("A").close("A").ended("A", "discarded");
    assert_eq!(
        messages(&s.judge(), "no-premature-close"),
        ["closed before sending any fragment: the upload was discarded"]
    );
    // An empty file: Create then Close commits it.
    let mut s = Story::default();
    s.create("A").close("A").ended("A", "committed");
    assert!(s.judge().passed());
    // After a lie, distrusts-lies speaks instead.
    let mut s = Story::default();
    s.create("A")
        .frag("A", 0, 4, 10, Sent::Status(200), Some("10"))
        .close("A");
    let v = s.judge();
    assert!(messages(&v, "no-premature-close").is_empty());
    assert_eq!(messages(&v, "distrusts-lies").len(), 1);
}

#[test]
fn abandoned_sessions_are_warned_about_unless_the_client_never_knew_them() {
    let mut s = Story::default();
    s.create("A").ok("A", 0, 4, 10);
    let v = s.judge();
    assert_eq!(
        v.outcome("no-abandoned-sessions").map(Outcome::status),
        Some("warn")
    );
    assert!(v.passed());
    assert_eq!(v.warnings(), 1);
    let mut s = Story::default();
    s.create_at("A", "/a", Sent::Closed);
    assert_eq!(judged(&s.judge(), "no-abandoned-sessions"), 0);
    let mut s = Story::default();
    s.create("A").ok("A", 0, 4, 10).ended("A", "expired");
    assert!(messages(&s.judge(), "no-abandoned-sessions").is_empty());
    let mut s = Story::default();
    s.create("A").lost("A", PacketType::Fragment);
    assert!(messages(&s.judge(), "no-abandoned-sessions").is_empty());
}

fn failing(s: &mut Story, sent: Sent, retry_after: Option<&str>) {
    let mut r = s.request(PacketType::Fragment, Some("A"), sent);
    r.range = Some(Span {
        first: 0,
        last: 9,
        total: 10,
    });
    if let Some(ack) = &mut r.ack {
        ack.retry_after = retry_after.map(str::to_owned);
    }
    s.push(r);
}

#[test]
fn backing_off_needs_the_floor_growth_and_retry_after() {
    // Immediately after a 503.
    let mut s = Story::default();
    s.create("A");
    failing(&mut s, Sent::Status(503), None);
    s.ok("A", 0, 9, 10);
    let v = s.judge();
    assert_eq!(judged(&v, "backs-off"), 1);
    assert!(
        messages(&v, "backs-off")[0].contains(
            "was answered 503; the client tried again after 0 ms, under the 250 ms floor"
        ),
        "{:?}",
        messages(&v, "backs-off")
    );

    // Waits growing 300, 600, 1200 ms: fine. Flat 300 ms: not.
    for (waits, ok) in [
        ([300.0, 600.0, 1200.0], true),
        ([300.0, 310.0, 320.0], false),
    ] {
        let mut s = Story::default();
        s.create("A");
        for w in waits {
            failing(&mut s, Sent::Reset, None);
            s.wait(w);
        }
        s.ok("A", 0, 9, 10);
        let found = messages(&s.judge(), "backs-off");
        assert_eq!(found.is_empty(), ok, "{waits:?}: {found:?}");
        if !ok {
            assert!(
                found[0].starts_with("3 transient failures in a row, and the wait did not grow")
            );
        }
    }
    // A long fixed delay is backing off.
    let mut s = Story::default();
    s.create("A");
    for _ in 0..3 {
        failing(&mut s, Sent::Closed, None);
        s.wait(20_000.0);
    }
    s.ok("A", 0, 9, 10);
    assert!(messages(&s.judge(), "backs-off").is_empty());

    // Retry-After 2 honoured for 1 s only; then for 2 s.
    for (wait, ok) in [(1000.0, false), (2000.0, true)] {
        let mut s = Story::default();
        s.create("A");
        failing(&mut s, Sent::Status(503), Some("2"));
        s.wait(wait);
        s.ok("A", 0, 9, 10);
        let found = messages(&s.judge(), "backs-off");
        assert_eq!(found.is_empty(), ok, "{found:?}");
    }
    // A hang counts from the request's arrival: the client noticed at its own timeout.
    let mut s = Story::default();
    s.create("A");
    let mut hung = s.request(PacketType::Fragment, Some("A"), Sent::Hung);
    hung.start_ms -= 5000.0;
    s.push(hung);
    s.ok("A", 0, 9, 10);
    assert!(messages(&s.judge(), "backs-off").is_empty());
    // Not transient: session loss, 501, a 4xx.
    for status in [500, 501, 400, 413] {
        let mut s = Story::default();
        s.create("A");
        if status == 500 {
            s.lost("A", PacketType::Fragment);
        } else {
            failing(&mut s, Sent::Status(status), None);
        }
        s.ok("A", 0, 9, 10);
        assert_eq!(judged(&s.judge(), "backs-off"), 0, "{status}");
    }
    for status in [408, 429, 502] {
        let mut s = Story::default();
        s.create("A");
        failing(&mut s, Sent::Status(status), None);
        s.ok("A", 0, 9, 10);
        assert_eq!(messages(&s.judge(), "backs-off").len(), 1, "{status}");
    }
}

#[test]
fn fatal_answers_end_the_attempt() {
    for (status, code) in [
        (400, None),
        (403, None),
        (404, None),
        (501, None),
        (500, Some("0x80200020")),
        (400, Some("0x80070057")),
    ] {
        let mut s = Story::default();
        s.create("A");
        for _ in 0..2 {
            let mut r = s.request(PacketType::Fragment, Some("A"), Sent::Status(status));
            if let Some(ack) = &mut r.ack {
                ack.error_code = code.map(str::to_owned);
            }
            s.push(r);
        }
        let found = messages(&s.judge(), "stops-on-fatal");
        assert_eq!(found.len(), 1, "{status} {code:?}");
        assert!(found[0].contains("sent it again 1 time(s)"), "{found:?}");
    }
    // 404 to a Cancel-Session is not fatal; a different packet afterwards is no retry.
    let mut s = Story::default();
    s.create("A");
    let r = s.request(PacketType::CancelSession, Some("A"), Sent::Status(404));
    s.push(r);
    let r = s.request(PacketType::CancelSession, Some("A"), Sent::Status(404));
    s.push(r);
    assert_eq!(judged(&s.judge(), "stops-on-fatal"), 0);
    let mut s = Story::default();
    s.create("A");
    failing(&mut s, Sent::Status(400), None);
    let r = s.request(PacketType::CancelSession, Some("A"), Sent::Status(200));
    s.push(r);
    assert!(messages(&s.judge(), "stops-on-fatal").is_empty());

    // 409 five times in a row on Create-Session is a loop; four is patience.
    for (n, looped) in [(4, false), (5, true)] {
        let mut s = Story::default();
        for _ in 0..n {
            let r = s.request(PacketType::CreateSession, None, Sent::Status(409));
            s.push(r);
        }
        assert_eq!(
            !messages(&s.judge(), "stops-on-fatal").is_empty(),
            looped,
            "{n}"
        );
    }
}

#[test]
fn fragments_shrink_after_413() {
    let frag = |s: &mut Story, len: u64, sent: Sent| {
        let mut r = s.request(PacketType::Fragment, Some("A"), sent);
        r.range = Some(Span {
            first: 0,
            last: len - 1,
            total: 100_000,
        });
        s.push(r);
    };
    let mut s = Story::default();
    s.create("A");
    frag(&mut s, 20_000, Sent::Status(413));
    frag(&mut s, 20_000, Sent::Status(413));
    let v = s.judge();
    assert_eq!(
        messages(&v, "adapts-fragment-size"),
        ["a 20000-byte fragment was answered 413 (too large), and the next one was 20000 bytes"]
    );
    let mut s = Story::default();
    s.create("A");
    frag(&mut s, 20_000, Sent::Status(413));
    frag(&mut s, 10_000, Sent::Status(200));
    assert!(messages(&s.judge(), "adapts-fragment-size").is_empty());
    // At 5 KiB there is nothing smaller to try.
    let mut s = Story::default();
    s.create("A");
    frag(&mut s, 5 * 1024, Sent::Status(413));
    frag(&mut s, 5 * 1024, Sent::Status(413));
    assert_eq!(judged(&s.judge(), "adapts-fragment-size"), 0);
}

#[test]
fn a_session_keeps_its_total_name_and_url() {
    let mut s = Story::default();
    s.create("A").ok("A", 0, 9, 20);
    let mut r = s.request(PacketType::Fragment, Some("A"), Sent::Status(400));
    r.range = Some(Span {
        first: 10,
        last: 19,
        total: 30,
    });
    r.path = "/b".into();
    r.content_name = Some("x".into());
    s.push(r);
    let mut r = s.request(PacketType::Fragment, Some("A"), Sent::Status(400));
    r.content_name = Some("y".into());
    s.push(r);
    let found = messages(&s.judge(), "consistent-session");
    assert_eq!(
        found,
        [
            "Fragment 10-19/30 went to /b though the session was created at /a",
            "the total length changed within the session: 20 bytes, then 30",
            "Content-Name changed within the session: `x`, then `y`",
        ]
    );
}

#[test]
fn framing_reads_the_request_head() {
    let mut s = Story::default();
    s.create("A");
    for _ in 0..2 {
        let mut r = s.request(PacketType::CloseSession, Some("A"), Sent::Status(411));
        r.content_length_missing = true;
        s.push(r);
    }
    let mut r = s.request(PacketType::CreateSession, None, Sent::Status(400));
    r.offers_bits15 = Some(false);
    s.push(r);
    let mut r = s.request(PacketType::Ping, None, Sent::Status(400));
    r.packet = None;
    r.label = Some("Pong".into());
    s.push(r);
    // A GET is not a BITS packet.
    let mut r = s.request(PacketType::Ping, None, Sent::Status(200));
    r.method = "GET".into();
    r.packet = None;
    s.push(r);
    let v = s.judge();
    assert_eq!(judged(&v, "framing"), 5);
    let found = messages(&v, "framing");
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(found[0].starts_with("Close-Session was sent without Content-Length 2 time(s)"));
    assert!(found[1].contains("did not offer the BITS 1.5 protocol"));
    assert_eq!(
        found[2],
        "1 BITS_POST request(s) had no known BITS-Packet-Type (first: \"Pong\")"
    );
}

#[test]
fn an_upload_reply_job_fetches_before_closing() {
    let reply_story = |fetched: bool| {
        let mut s = Story::default();
        s.create("A");
        if let Some(Seen::Created { reply, .. }) = s.events.first_mut() {
            *reply = true;
        }
        let mut r = s.request(PacketType::Fragment, Some("A"), Sent::Status(200));
        r.range = Some(Span {
            first: 0,
            last: 9,
            total: 10,
        });
        if let Some(ack) = &mut r.ack {
            ack.received = Some("10".into());
            ack.reply_url = true;
        }
        s.push(r);
        if fetched {
            let (seq, at) = s.next();
            s.events.push(Seen::ReplyServed {
                seq,
                at_ms: at,
                session: sid("A"),
                status: 206,
            });
        }
        s.close("A");
        s.judge()
    };
    assert_eq!(
        messages(&reply_story(false), "fetches-reply-before-close").len(),
        1
    );
    let v = reply_story(true);
    assert!(messages(&v, "fetches-reply-before-close").is_empty());
    assert_eq!(judged(&v, "fetches-reply-before-close"), 1);
}

#[test]
fn lies_are_recognised_from_what_the_ack_said() {
    for (told, echoed, lie) in [
        (Some("x"), None, "is not a number"),
        (None, None, "had no BITS-Received-Content-Range"),
        (Some("99"), None, "beyond the file's 20 bytes"),
        (Some("15"), None, "ahead of the 10 bytes sent"),
        (Some("10"), Some("{OTHER}"), "named another session"),
    ] {
        let mut s = Story::default();
        s.create("A");
        let mut r = s.request(PacketType::Fragment, Some("A"), Sent::Status(200));
        r.range = Some(Span {
            first: 0,
            last: 9,
            total: 20,
        });
        if let Some(ack) = &mut r.ack {
            ack.received = told.map(str::to_owned);
            if let Some(e) = echoed {
                ack.session_id = Some(e.into());
            }
        }
        s.push(r).close("A");
        let found = messages(&s.judge(), "distrusts-lies");
        assert_eq!(found.len(), 1, "{lie}");
        assert!(found[0].contains(lie), "{found:?}");
        assert!(found[0].starts_with("closed the session right after a lying Ack"));
    }
    // Resending the fragment after a lie, then closing on a true Ack: correct.
    let mut s = Story::default();
    s.create("A")
        .frag("A", 0, 9, 10, Sent::Status(200), Some("x"))
        .ok("A", 0, 9, 10)
        .close("A");
    let v = s.judge();
    assert!(v.passed(), "{}", report::text(&v));
    assert_eq!(judged(&v, "distrusts-lies"), 1);
    // Skipping to a lied offset.
    let mut s = Story::default();
    s.create("A")
        .frag("A", 0, 9, 40, Sent::Status(200), Some("20"))
        .ok("A", 20, 29, 40);
    assert!(messages(&s.judge(), "distrusts-lies")[0].contains("skipped ahead to byte 20"));
    // An Ack of the session id in another letter case is the same session.
    let mut s = Story::default();
    s.create("{ab}");
    let mut r = s.request(PacketType::Fragment, Some("{ab}"), Sent::Status(200));
    r.range = Some(Span {
        first: 0,
        last: 9,
        total: 10,
    });
    if let Some(ack) = &mut r.ack {
        ack.received = Some("10".into());
        ack.session_id = Some("{AB}".into());
    }
    s.push(r).close("{ab}");
    assert_eq!(judged(&s.judge(), "distrusts-lies"), 0);
}

#[test]
fn the_committed_file_is_compared_with_the_source_when_known() {
    let mut s = Story::default();
    s.create("A")
        .ok("A", 0, 9, 10)
        .ended("A", "committed")
        .close("A");
    assert_eq!(judged(&s.judge(), "upload-intact"), 0, "no source given");
    let with = |sha: &str, stored: Option<&str>| {
        let mut options = Options {
            source: Some(Source {
                size: 10,
                sha256: sha.into(),
            }),
            ..Options::default()
        };
        if let Some(d) = stored {
            options.stored.insert("a".into(), d.into());
        }
        judge(&s.events, &options)
    };
    assert!(
        messages(&with("AB", None), "upload-intact").is_empty(),
        "digests compare in any case"
    );
    assert_eq!(judged(&with("ab", None), "upload-intact"), 1);
    assert_eq!(
        messages(&with("cd", None), "upload-intact"),
        ["the committed file a differs from the source (SHA-256 ab instead of cd)"]
    );
    // What was read back from disk wins over the journal's digest.
    assert_eq!(messages(&with("cd", Some("cd")), "upload-intact").len(), 0);
}

#[test]
fn reports_render_every_format() {
    let mut s = Story::default();
    s.create("A").ok("A", 0, 4, 10).close("A");
    let v = s.judge();
    let text = report::text(&v);
    assert!(text.starts_with("verdict: FAIL: 1 error(s)"), "{text}");
    assert!(text.contains("FAIL  no-premature-close  (1 judged)"));
    assert!(text.contains("rule (§7.6)"));
    assert!(text.contains("[events 3, 4]"));
    assert!(text.contains(" n/a  backs-off  (not exercised)"));
    let json = report::json(&v);
    assert_eq!(json["passed"], false);
    assert_eq!(json["errors"], 1);
    let run = report::Run {
        name: "p seed <1>".into(),
        verdict: v,
        problems: vec!["client \"x\" failed".into()],
        events: s.events.clone(),
    };
    assert_eq!(run.cell(), "FAIL no-premature-close, client \"x\" failed");
    let junit = report::junit(std::slice::from_ref(&run));
    assert!(
        junit.contains("<testsuite name=\"p seed &lt;1&gt;\""),
        "{junit}"
    );
    assert!(
        junit.contains("<failure message=\"client &quot;x&quot; failed\"/>"),
        "{junit}"
    );
    assert!(junit.contains("<skipped message=\"not exercised\"/>"));
    assert!(junit.contains("failures=\"2\""));
    let html = report::html("t", std::slice::from_ref(&run));
    assert!(html.contains("0 of 1 run(s) passed"));
    assert!(html.contains("class=\"hl\""), "evidence is highlighted");
    assert!(
        !html.contains("class=\"end\""),
        "no session ended in this story"
    );
    assert!(!html.contains("<script"));
    assert_eq!(
        report::xml("a<&>\"'\u{1}"),
        "a&lt;&amp;&gt;&quot;&#39;\u{FFFD}"
    );
}
