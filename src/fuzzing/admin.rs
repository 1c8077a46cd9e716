//! Target `admin`: a control API request → [`crate::admin::authorize`] and [`crate::admin::route`].
//!
//! The input reads like the request it stands for:
//!
//! ```text
//! PUT /rules?x=1
//! application/json
//! Bearer t0ken
//! {"rules": ["packet=fragment fault=lose-ack"]}
//! ```
//!
//! Line 1 is the method, a space, and the request-target (path, then an optional `?query`);
//! line 2 the `Content-Type` (empty: none); line 3 the `Authorization` value (empty: none);
//! everything after the third `\n` is the body, bytes as they are. Bytes that are not UTF-8
//! in the first three lines are replaced, as hyper hands the router strings there.
//!
//! Properties: neither function panics; a refusal becomes a 4xx [`Reply`] whose body is a
//! JSON object with an `error` string, whose headers hyper can send, with `Allow` on a 405
//! and `WWW-Authenticate` on a 401; the token check lets a request through only when it
//! carries the token; an accepted journal query has a limit of at least 1 and a wait within
//! [`MAX_WAIT`], and judging events with it does not panic.

use crate::admin::routes::{MAX_RULES, MAX_WAIT};
use crate::admin::{AdminError, Command, Raw, Reply, authorize, route};
use crate::journal::{Event, Request, Sent, SessionRef, What};
use crate::proto::{Gone, PacketType, SessionId};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The token the check configures when the input carries an `Authorization` line.
const TOKEN: &str = "t0ken";

/// The `admin` target.
pub fn check(data: &[u8]) {
    let mut rest = data;
    let mut line = || {
        let at = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
        let (head, tail) = rest.split_at(at);
        rest = tail.get(1..).unwrap_or_default();
        String::from_utf8_lossy(head.strip_suffix(b"\r").unwrap_or(head)).into_owned()
    };
    let request_line = line();
    let content_type = line();
    let authorization = line();
    let body = rest;
    let (method, target) = request_line
        .split_once(' ')
        .unwrap_or((request_line.as_str(), ""));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));

    check_access(&authorization);
    let raw = Raw {
        method,
        path,
        query,
        content_type: (!content_type.is_empty()).then_some(content_type.as_str()),
        body,
    };
    match route(&raw) {
        Ok(command) => accepted(&command),
        Err(e) => refused(&e, &raw),
    }
}

fn check_access(authorization: &str) {
    let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let far = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9));
    let given = (!authorization.is_empty()).then_some(authorization.as_bytes());
    assert_eq!(authorize(loopback, None, given, false), Ok(()));
    assert!(authorize(far, None, given, false).is_err());
    for peer in [loopback, far] {
        match authorize(peer, Some(TOKEN), given, true) {
            Ok(()) => assert!(
                authorization.contains(TOKEN),
                "{authorization:?} let through without the token"
            ),
            Err(e) => assert_eq!(e, AdminError::Unauthorized),
        }
    }
}

fn refused(e: &AdminError, raw: &Raw<'_>) {
    let reply = Reply::error(e);
    assert!(
        (400..=499).contains(&reply.status),
        "{raw:?}: a refusal with status {}",
        reply.status
    );
    sendable(&reply, raw);
    let body: serde_json::Value = serde_json::from_slice(&reply.body)
        .unwrap_or_else(|err| panic!("{raw:?}: error body is not JSON: {err}"));
    assert!(
        body["error"].as_str().is_some_and(|m| !m.is_empty()),
        "{raw:?}: {body}"
    );
    let has = |name: &str| reply.headers.iter().any(|(n, _)| *n == name);
    assert_eq!(reply.status == 405, has("Allow"), "{raw:?}: {reply:?}");
    assert_eq!(reply.status == 401, has("WWW-Authenticate"), "{raw:?}");
}

fn sendable(reply: &Reply, raw: &Raw<'_>) {
    assert!(http::StatusCode::from_u16(reply.status).is_ok(), "{raw:?}");
    assert!(http::HeaderValue::from_str(reply.content_type).is_ok());
    for (name, value) in &reply.headers {
        assert!(
            http::HeaderValue::from_str(value).is_ok(),
            "{raw:?}: header {name} cannot be sent: {value:?}"
        );
    }
}

fn accepted(command: &Command) {
    match command {
        Command::Journal(query) => {
            assert!(query.limit.is_none_or(|n| n >= 1), "{query:?}");
            assert!(query.wait.is_none_or(|w| w <= MAX_WAIT), "{query:?}");
            for event in events() {
                let _ = query.matches(&event);
            }
        }
        Command::SetRules(rules) => assert!(rules.len() <= MAX_RULES),
        _ => {}
    }
}

/// One event of each kind that names a session, and one that does not.
fn events() -> Vec<Event> {
    let session = SessionRef {
        id: SessionId::from_bytes([7; 16]),
        ordinal: Some(1),
    };
    let peer = SocketAddr::from(([127, 0, 0, 1], 1));
    let request = Request {
        conn: 1,
        peer,
        method: "BITS_POST".into(),
        path: "/a".into(),
        packet: Some(PacketType::Fragment),
        packet_label: None,
        session: Some(session),
        index: 1,
        range: None,
        received: 0,
        stored: 0,
        status: Some(200),
        reason: None,
        faults: Vec::new(),
        sent: Sent::Status { status: 200 },
        latency_ms: 0.0,
        content_length_missing: false,
    };
    [
        What::Request(request),
        What::SessionGone {
            session,
            why: Gone::Cancelled,
            kept_file: false,
        },
        What::Reset {
            uploads_cleared: false,
        },
    ]
    .into_iter()
    .enumerate()
    .map(|(i, what)| Event {
        seq: i as u64 + 1,
        at_ms: 0.0,
        what,
    })
    .collect()
}
