//! Target `packet`: a request head → [`packet::parse`].
//!
//! The input is the head as text, so seeds and the dictionary read like the wire:
//!
//! ```text
//! BITS_POST /drop/report.bin HTTP/1.1
//! BITS-Packet-Type: Fragment
//! Content-Range: bytes 0-65535/150000
//! ```
//!
//! The first line gives the method and the request-target (its first two space-separated
//! words); every further line up to an empty one is a header, split at its first `:`, the
//! value keeping every byte but leading blanks and a trailing `\r`. Names and values may hold
//! any bytes besides `\n`.
//!
//! Properties: `parse` never panics; it ignores the letter case of header names; a packet it
//! accepts renders (`to_head`) into a head that parses back to the same packet and could be
//! sent by hyper; a rejection is an Ack with a sensible status whose error headers match it.

use super::{assert_error_headers, assert_sendable};
use crate::proto::ErrorHeader;
use crate::proto::packet::{self, Head, METHOD, Packet, SessionId};

/// Statuses `parse` may answer with.
const REJECTIONS: [u16; 4] = [400, 405, 411, 500];

/// Decodes the fuzzer's bytes into a request head.
pub fn head(data: &[u8]) -> Head {
    let mut lines = data
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let first = lines.next().unwrap_or_default();
    let mut words = first.splitn(3, |&b| b == b' ');
    let method = String::from_utf8_lossy(words.next().unwrap_or_default()).into_owned();
    let target = String::from_utf8_lossy(words.next().unwrap_or_default()).into_owned();
    let headers = lines
        .take_while(|l| !l.is_empty())
        .map(|line| {
            let (name, value) = match line.iter().position(|&b| b == b':') {
                Some(at) => (&line[..at], &line[at + 1..]),
                None => (line, &[][..]),
            };
            let start = value
                .iter()
                .position(|&b| b != b' ' && b != b'\t')
                .unwrap_or(value.len());
            (
                String::from_utf8_lossy(name).into_owned(),
                value[start..].to_vec(),
            )
        })
        .collect();
    Head {
        method,
        target,
        headers,
    }
}

/// The `packet` target.
pub fn check(data: &[u8]) {
    check_head(head(data));
}

/// Every property of [`packet::parse`] for one head.
pub fn check_head(mut head: Head) {
    let parsed = packet::parse(&head);
    match &parsed {
        Ok(p) => accepted(&head, p),
        Err(ack) => {
            assert!(
                REJECTIONS.contains(&ack.status),
                "unexpected rejection status for {head:?}: {ack:?}"
            );
            assert_error_headers(ack, &head);
            assert_sendable(&ack.render(ErrorHeader::Both), &head);
            if ack.status == 405 {
                assert_ne!(head.method, METHOD, "a BITS_POST was answered 405");
                assert_eq!(ack.error, None);
            }
            if let Some(id) = &ack.session_id {
                assert!(id.len() <= 100, "echoed an overlong session id: {id:?}");
                assert_eq!(
                    Some(id.as_str()),
                    head.echo_session_id(),
                    "echoed something else than the request's session id"
                );
            }
        }
    }
    // Header names are case-insensitive: the fuzzer's own inputs come in every case, so one
    // recased variant per input is enough (each extra parse costs throughput under ASAN).
    for (name, _) in &mut head.headers {
        name.make_ascii_uppercase();
    }
    assert_eq!(
        packet::parse(&head),
        parsed,
        "header-name case changed the result for {head:?}"
    );
}

fn accepted(head: &Head, p: &Packet) {
    assert_eq!(head.method, METHOD, "accepted a non-BITS method");
    let rendered = p.to_head();
    assert_eq!(
        packet::parse(&rendered).as_ref(),
        Ok(p),
        "a parsed packet did not survive its rendering {rendered:?} (from {head:?})"
    );
    assert!(
        http::Uri::try_from(rendered.target.as_str()).is_ok_and(|u| u.path() == rendered.target),
        "rendered target {:?} is not a plain URI path",
        rendered.target
    );
    for (name, value) in &rendered.headers {
        assert!(
            http::HeaderName::try_from(name.as_str()).is_ok()
                && http::HeaderValue::from_bytes(value).is_ok(),
            "rendered header {name}: {value:?} cannot be sent"
        );
    }
    if let Some(session) = p.session() {
        assert_eq!(
            head.text("BITS-Session-Id").and_then(SessionId::parse),
            Some(session),
            "the packet's session is not the request's BITS-Session-Id"
        );
    }
    let declared = head
        .header("Content-Length")
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert_eq!(
        declared,
        Some(p.body_len()),
        "the packet's body length differs from its Content-Length"
    );
    if let Packet::Fragment { range, .. } = p {
        assert!(range.first() <= range.last() && range.last() < range.total());
    }
}
