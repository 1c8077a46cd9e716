//! Journal events as the checks read them.
//!
//! Read from JSON (`serde_json::Value`), not from the typed [`crate::journal::Event`]: a
//! journal file written by another bitsmock version must still be judged, and the control API
//! and [`crate::MockServer`] go through the same JSON, so there is one reading of an event.
//! Unknown kinds and fields are ignored; a field that is missing reads as "not known".

use crate::proto::PacketType;
use serde::Deserialize;
use serde_json::Value;

/// A session as events name it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SessionSeen {
    pub id: String,
    #[serde(default)]
    pub ordinal: Option<u64>,
}

impl SessionSeen {
    /// `#3` for the third session, or its id when the server did not number it.
    pub fn label(&self) -> String {
        match self.ordinal {
            Some(n) => format!("session #{n}"),
            None => format!("session {}", self.id),
        }
    }
}

/// The range a fragment carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub first: u64,
    pub last: u64,
    pub total: u64,
}

impl Span {
    /// Bytes in the range (never 0: a range holds at least its first byte).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u64 {
        self.end() - self.first
    }

    /// One past the last byte (saturating: a journal file may say anything).
    pub fn end(&self) -> u64 {
        self.last.saturating_add(1)
    }

    fn parse(text: &str) -> Option<Span> {
        let (range, total) = text.split_once('/')?;
        let (first, last) = range.split_once('-')?;
        let span = Span {
            first: first.parse().ok()?,
            last: last.parse().ok()?,
            total: total.parse().ok()?,
        };
        (span.first <= span.last).then_some(span)
    }
}

/// How a request ended on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    Status(u16),
    Closed,
    Reset,
    Hung,
    Broken,
    /// A `mutate` fault's answer: delivered, but a careful client may well reject it, so the
    /// checks treat it as no answer.
    Mutated(u16),
}

impl Sent {
    /// Whether the client got an answer it could read.
    pub fn delivered(self) -> Option<u16> {
        match self {
            Sent::Status(s) => Some(s),
            _ => None,
        }
    }
}

impl std::fmt::Display for Sent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sent::Status(s) => write!(f, "{s}"),
            Sent::Closed => f.write_str("connection closed"),
            Sent::Reset => f.write_str("connection reset"),
            Sent::Hung => f.write_str("no answer"),
            Sent::Broken => f.write_str("a broken answer"),
            Sent::Mutated(s) => write!(f, "a mutated {s}"),
        }
    }
}

pub use crate::journal::AckSeen;

/// How the checks read what an answer said (the journal keeps it as text, exactly as sent).
impl AckSeen {
    /// `BITS-Error-Code` as a number (`0x8020001F`, or bare hex as some servers send it).
    pub fn code(&self) -> Option<u32> {
        let text = self.error_code.as_deref()?.trim();
        let hex = text
            .strip_prefix("0x")
            .or_else(|| text.strip_prefix("0X"))
            .unwrap_or(text);
        u32::from_str_radix(hex, 16).ok()
    }

    /// `BITS-Received-Content-Range` when it is one decimal number.
    pub fn offset(&self) -> Option<u64> {
        let text = self.received.as_deref()?.trim();
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        text.parse().ok()
    }

    /// `Retry-After` in seconds (delta-seconds only).
    pub fn retry_after_s(&self) -> Option<u64> {
        self.retry_after.as_deref()?.trim().parse().ok()
    }
}

/// A fault that shaped a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultSeen {
    /// The rule's 0-based id.
    pub rule: u64,
    pub name: String,
    /// The effect's kind (`lost-ack`, `lied`, …).
    pub kind: String,
}

/// One request record.
#[derive(Debug, Clone, PartialEq)]
pub struct Req {
    pub seq: u64,
    /// When the request head arrived (ms since the server started).
    pub start_ms: f64,
    /// When its handling ended: the answer went out, or the connection was dropped.
    pub end_ms: f64,
    pub conn: u64,
    pub method: String,
    pub path: String,
    pub packet: Option<PacketType>,
    /// `BITS-Packet-Type` as sent when it was not a known one.
    pub label: Option<String>,
    pub session: Option<SessionSeen>,
    pub range: Option<Span>,
    pub received: u64,
    pub stored: u64,
    pub reason: Option<String>,
    pub sent: Sent,
    pub ack: Option<AckSeen>,
    pub faults: Vec<FaultSeen>,
    pub content_length_missing: bool,
    pub offers_bits15: Option<bool>,
    pub content_name: Option<String>,
}

impl Req {
    pub fn is_bits_post(&self) -> bool {
        self.method.eq_ignore_ascii_case("BITS_POST")
    }

    pub fn is(&self, packet: PacketType) -> bool {
        self.packet == Some(packet)
    }

    /// The packet type the client meant: the parsed one, or a known name the server rejected
    /// (a Create-Session without a usable protocol is still a Create-Session).
    pub fn kind(&self) -> Option<PacketType> {
        self.packet
            .or_else(|| self.label.as_deref().and_then(PacketType::parse))
    }

    pub fn session_id(&self) -> Option<&str> {
        self.session.as_ref().map(|s| s.id.as_str())
    }

    /// The error code the client was told, if an answer was delivered.
    pub fn code(&self) -> Option<u32> {
        self.sent.delivered()?;
        self.ack.as_ref()?.code()
    }

    /// `Fragment 0-5119/20000`, `Create-Session`, … for messages.
    pub fn describe(&self) -> String {
        let name = match (&self.kind(), &self.label) {
            (Some(p), _) => p.as_str().to_owned(),
            (None, Some(label)) => format!("\"{label}\""),
            (None, None) => self.method.clone(),
        };
        match self.range {
            Some(r) => format!("{name} {}-{}/{}", r.first, r.last, r.total),
            None => name,
        }
    }
}

/// One event, as the checks need it.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    Started {
        seed: Option<u64>,
        profile: Option<String>,
    },
    /// Boxed: the record is by far the largest event.
    Request(Box<Req>),
    Created {
        seq: u64,
        at_ms: f64,
        session: SessionSeen,
        destination: String,
        reply: bool,
    },
    Committed {
        seq: u64,
        at_ms: f64,
        session: SessionSeen,
        path: String,
        size: u64,
        sha256: Option<String>,
    },
    Gone {
        seq: u64,
        at_ms: f64,
        session: SessionSeen,
        why: String,
    },
    ReplyServed {
        seq: u64,
        at_ms: f64,
        session: SessionSeen,
        status: u16,
    },
    /// The server application was notified (`serve --notify`).
    Notification {
        seq: u64,
        at_ms: f64,
        session: SessionSeen,
        /// The application's status; `None` when none came.
        status: Option<u16>,
        /// What the final Fragment Ack relayed; `None` for a duplicate whose answer was dropped.
        relayed: Option<u16>,
    },
    Stopped,
    /// Anything else (rules changed, reset, refused connections, newer kinds).
    Other,
}

/// The events of a journal, in order. Lines that are not events are skipped (the journal
/// viewer shows them); what matters here is what the client did.
pub fn read(values: &[Value]) -> Vec<Seen> {
    values.iter().map(seen).collect()
}

/// One event as JSON → [`Seen`].
pub fn seen(value: &Value) -> Seen {
    let get = |name: &str| value.get(name).unwrap_or(&Value::Null);
    let seq = get("seq").as_u64().unwrap_or(0);
    let at_ms = get("at_ms").as_f64().unwrap_or(0.0);
    let session = || serde_json::from_value::<SessionSeen>(get("session").clone()).ok();
    let text = |name: &str| get(name).as_str().map(str::to_owned);
    match get("event").as_str().unwrap_or("") {
        "started" => Seen::Started {
            seed: get("seed").as_u64(),
            profile: text("profile"),
        },
        "request" => Seen::Request(Box::new(request(value, seq, at_ms))),
        "session-created" => match session() {
            Some(session) => Seen::Created {
                seq,
                at_ms,
                session,
                destination: text("destination").unwrap_or_default(),
                reply: get("reply").as_bool().unwrap_or(false),
            },
            None => Seen::Other,
        },
        "committed" => match session() {
            Some(session) => Seen::Committed {
                seq,
                at_ms,
                session,
                path: text("path").unwrap_or_default(),
                size: get("size").as_u64().unwrap_or(0),
                sha256: text("sha256"),
            },
            None => Seen::Other,
        },
        "session-gone" => match session() {
            Some(session) => Seen::Gone {
                seq,
                at_ms,
                session,
                why: text("why").unwrap_or_default(),
            },
            None => Seen::Other,
        },
        "reply-served" => match session() {
            Some(session) => Seen::ReplyServed {
                seq,
                at_ms,
                session,
                status: get("status").as_u64().unwrap_or(0) as u16,
            },
            None => Seen::Other,
        },
        "notification" => match session() {
            Some(session) => Seen::Notification {
                seq,
                at_ms,
                session,
                status: get("status").as_u64().map(|s| s as u16),
                relayed: get("relayed").as_u64().map(|s| s as u16),
            },
            None => Seen::Other,
        },
        "stopped" => Seen::Stopped,
        _ => Seen::Other,
    }
}

fn request(value: &Value, seq: u64, at_ms: f64) -> Req {
    let get = |name: &str| value.get(name).unwrap_or(&Value::Null);
    let text = |name: &str| get(name).as_str().map(str::to_owned);
    let sent = match get("sent").get("sent").and_then(Value::as_str) {
        Some("status") => Sent::Status(
            get("sent")
                .get("status")
                .and_then(Value::as_u64)
                .unwrap_or(0) as u16,
        ),
        Some("reset") => Sent::Reset,
        Some("hung") => Sent::Hung,
        Some("broken") => Sent::Broken,
        Some("mutated") => Sent::Mutated(
            get("sent")
                .get("status")
                .and_then(Value::as_u64)
                .unwrap_or(0) as u16,
        ),
        _ => Sent::Closed,
    };
    let faults = get("faults")
        .as_array()
        .map(|all| {
            all.iter()
                .map(|f| FaultSeen {
                    rule: f.get("rule").and_then(Value::as_u64).unwrap_or(0),
                    name: f
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    kind: f
                        .get("effect")
                        .and_then(|e| e.get("kind"))
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                })
                .collect()
        })
        .unwrap_or_default();
    let latency = get("latency_ms").as_f64().unwrap_or(0.0);
    Req {
        seq,
        start_ms: at_ms - latency,
        end_ms: at_ms,
        conn: get("conn").as_u64().unwrap_or(0),
        method: text("method").unwrap_or_default(),
        path: text("path").unwrap_or_default(),
        packet: get("packet").as_str().and_then(PacketType::parse),
        label: text("packet_label"),
        session: serde_json::from_value(get("session").clone()).ok(),
        range: get("range").as_str().and_then(Span::parse),
        received: get("received").as_u64().unwrap_or(0),
        stored: get("stored").as_u64().unwrap_or(0),
        reason: text("reason"),
        sent,
        ack: serde_json::from_value(get("ack").clone()).ok(),
        faults,
        content_length_missing: get("content_length_missing").as_bool().unwrap_or(false),
        offers_bits15: get("offers_bits15").as_bool(),
        content_name: text("content_name"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_request_line_reads_back_with_its_answer_and_faults() {
        let line = json!({"seq":5,"at_ms":10.5,"event":"request","conn":1,"method":"BITS_POST",
            "path":"/up/x","packet":"Fragment","session":{"id":"{A}","ordinal":1},
            "range":"5120-10239/20000","received":5120,"stored":5120,"status":200,
            "faults":[{"rule":0,"name":"rule 1","effect":{"kind":"lost-ack"}}],
            "sent":{"sent":"status","status":200},"latency_ms":0.5,
            "content_length_missing":true,"offers_bits15":null,"content_name":"src",
            "ack":{"received":"10240","error_code":"0x8020001F","retry_after":"3","reply_url":true}});
        let Seen::Request(r) = seen(&line) else {
            panic!("not a request")
        };
        assert_eq!((r.seq, r.start_ms, r.end_ms, r.conn), (5, 10.0, 10.5, 1));
        assert_eq!(r.packet, Some(PacketType::Fragment));
        assert_eq!(
            r.range,
            Some(Span {
                first: 5120,
                last: 10239,
                total: 20000
            })
        );
        assert_eq!(r.range.map(|s| (s.len(), s.end())), Some((5120, 10240)));
        assert_eq!(r.sent, Sent::Status(200));
        let ack = r.ack.clone().expect("ack");
        assert_eq!(ack.offset(), Some(10240));
        assert_eq!(ack.code(), Some(0x8020_001F));
        assert_eq!(ack.retry_after_s(), Some(3));
        assert!(ack.reply_url);
        assert_eq!(r.code(), Some(0x8020_001F));
        assert_eq!(r.faults[0].kind, "lost-ack");
        assert!(r.content_length_missing);
        assert_eq!(r.describe(), "Fragment 5120-10239/20000");
        assert_eq!(r.session.map(|s| s.label()), Some("session #1".into()));
    }

    #[test]
    fn every_event_kind_the_checks_use_reads_back() {
        let session = json!({"id": "{A}", "ordinal": 2});
        let lines = [
            json!({"seq": 1, "event": "started", "seed": 7, "profile": "p"}),
            json!({"seq": 2, "at_ms": 1.0, "event": "session-created", "session": session, "destination": "/a", "reply": true}),
            json!({"seq": 3, "at_ms": 2.0, "event": "committed", "session": session, "path": "a", "size": 5, "sha256": "ab"}),
            json!({"seq": 4, "at_ms": 3.0, "event": "session-gone", "session": session, "why": "expired"}),
            json!({"seq": 5, "at_ms": 4.0, "event": "reply-served", "session": session, "status": 206}),
            json!({"seq": 6, "event": "request", "sent": {"sent": "mutated", "status": 999}}),
        ];
        let seen = read(&lines);
        let sid = SessionSeen {
            id: "{A}".into(),
            ordinal: Some(2),
        };
        assert_eq!(
            seen[0],
            Seen::Started {
                seed: Some(7),
                profile: Some("p".into())
            }
        );
        assert_eq!(
            seen[1],
            Seen::Created {
                seq: 2,
                at_ms: 1.0,
                session: sid.clone(),
                destination: "/a".into(),
                reply: true
            }
        );
        assert_eq!(
            seen[2],
            Seen::Committed {
                seq: 3,
                at_ms: 2.0,
                session: sid.clone(),
                path: "a".into(),
                size: 5,
                sha256: Some("ab".into())
            }
        );
        assert_eq!(
            seen[3],
            Seen::Gone {
                seq: 4,
                at_ms: 3.0,
                session: sid.clone(),
                why: "expired".into()
            }
        );
        assert_eq!(
            seen[4],
            Seen::ReplyServed {
                seq: 5,
                at_ms: 4.0,
                session: sid,
                status: 206
            }
        );
        let Seen::Request(r) = &seen[5] else {
            panic!("a request")
        };
        assert_eq!(r.sent, Sent::Mutated(999));
        assert_eq!(r.sent.delivered(), None, "a mutated answer counts as none");
        for (sent, text) in [
            (Sent::Status(200), "200"),
            (Sent::Closed, "connection closed"),
            (Sent::Reset, "connection reset"),
            (Sent::Hung, "no answer"),
            (Sent::Broken, "a broken answer"),
            (Sent::Mutated(201), "a mutated 201"),
        ] {
            assert_eq!(sent.to_string(), text);
        }
        // A number with a sign or spaces inside is not an offset.
        for raw in ["-5", "+5", "5 0", "0x10", ""] {
            let ack = AckSeen {
                received: Some(raw.into()),
                ..AckSeen::default()
            };
            assert_eq!(ack.offset(), None, "{raw:?}");
        }
    }

    #[test]
    fn odd_values_read_as_unknown_rather_than_failing() {
        let ack = AckSeen {
            received: Some("12x".into()),
            error_code: Some("8020001f".into()),
            retry_after: Some("soon".into()),
            ..AckSeen::default()
        };
        assert_eq!(ack.offset(), None);
        assert_eq!(ack.code(), Some(0x8020_001F));
        assert_eq!(ack.retry_after_s(), None);
        assert_eq!(Span::parse("9-3/10"), None);
        let huge = Span::parse("0-18446744073709551615/18446744073709551615").expect("a span");
        assert_eq!((huge.end(), huge.len()), (u64::MAX, u64::MAX));
        assert_eq!(Span::parse("garbage"), None);
        for (sent, want) in [
            ("reset", Sent::Reset),
            ("hung", Sent::Hung),
            ("broken", Sent::Broken),
            ("closed", Sent::Closed),
        ] {
            let r = request(&json!({"sent":{"sent":sent}}), 1, 0.0);
            assert_eq!(r.sent, want);
            assert_eq!(r.code(), None);
        }
        assert_eq!(seen(&json!({"event":"rules-changed"})), Seen::Other);
        assert_eq!(seen(&json!({"event":"committed"})), Seen::Other);
        assert_eq!(seen(&json!({"event":"stopped"})), Seen::Stopped);
        assert_eq!(seen(&json!({"event":"notification"})), Seen::Other);
        let sid = json!({"id": "{00000000-0000-0000-0000-000000000001}", "ordinal": 1});
        let Seen::Notification {
            seq,
            status,
            relayed,
            ..
        } = seen(
            &json!({"event":"notification","seq":9,"session":sid,"status":503,"relayed":503,"headers":[["Host","a"]]}),
        )
        else {
            panic!("a notification")
        };
        assert_eq!((seq, status, relayed), (9, Some(503), Some(503)));
        let Seen::Notification {
            status, relayed, ..
        } = seen(&json!({"event":"notification","session":sid,"status":null,"relayed":null}))
        else {
            panic!("a notification")
        };
        assert_eq!((status, relayed), (None, None));
        let r = request(
            &json!({"packet_label":"Bogus","method":"BITS_POST","sent":{"sent":"status","status":400}}),
            1,
            0.0,
        );
        assert_eq!(r.describe(), "\"Bogus\"");
        assert_eq!(r.sent.delivered(), Some(400));
    }
}
