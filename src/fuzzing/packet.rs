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
//! any bytes besides `\n`. Only the first [`MAX_HEADERS`] header lines count.
//!
//! Properties: `parse` never panics; a packet it accepts renders (`to_head`) into a head
//! that parses back to the same packet and could be sent by hyper; a rejection is an Ack
//! with a sensible status whose error headers match it. [`check_any_case`] adds that header
//! names match in any case.

use super::assert_error_headers;
use crate::proto::ContentLength;
use crate::proto::packet::{self, Head, METHOD, Packet, SessionId};

/// Statuses `parse` may answer with.
const REJECTIONS: [u16; 4] = [400, 405, 411, 500];

/// Headers hyper lets through: it answers a request with more with 431 before the server
/// parses it, so lines past these are ignored rather than paid for on every execution.
pub const MAX_HEADERS: usize = 100;

/// Decodes the fuzzer's bytes into a request head, borrowing every part. This runs once per
/// execution, so it copies nothing and looks at few bytes one by one (see `Cursor`).
pub fn head(data: &[u8]) -> Head<'_> {
    let mut input = Cursor(data);
    let (method, _) = input.field(b' ');
    let (target, _) = input.field(b' ');
    input.line();
    let mut headers = Vec::with_capacity(16);
    while headers.len() < MAX_HEADERS && !input.0.is_empty() {
        let (name, colon) = input.field(b':');
        let value = input.line();
        if !colon && name.is_empty() {
            break;
        }
        let start = value
            .iter()
            .position(|&b| b != b' ' && b != b'\t')
            .unwrap_or(value.len());
        headers.push((name, &value[start..]));
    }
    Head {
        method,
        target,
        headers,
    }
}

/// The undecoded rest of the input. Fields are cut out of it with `memchr`, searching the
/// whole rest rather than one short line: a long haystack takes the vectorized path, where a
/// short one (like a byte loop) calls the fuzzer's comparison hook for every byte.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    /// The bytes before the first `stop` in this line, consuming the `stop`; true if there
    /// was one. Without it, the rest of the line less a final `\r`, leaving its end
    /// unconsumed.
    fn field(&mut self, stop: u8) -> (&'a [u8], bool) {
        let at = memchr::memchr2(stop, b'\n', self.0).unwrap_or(self.0.len());
        let (field, rest) = self.0.split_at(at);
        match rest.split_first() {
            Some((&b, after)) if b == stop => {
                self.0 = after;
                (field, true)
            }
            _ => {
                self.0 = rest;
                (field.strip_suffix(b"\r").unwrap_or(field), false)
            }
        }
    }

    /// The rest of this line without its `\n` or `\r\n`, consuming them.
    fn line(&mut self) -> &'a [u8] {
        let at = memchr::memchr(b'\n', self.0).unwrap_or(self.0.len());
        let line = &self.0[..at];
        self.0 = self.0.get(at + 1..).unwrap_or_default();
        line.strip_suffix(b"\r").unwrap_or(line)
    }
}

/// The `packet` target.
pub fn check(data: &[u8]) {
    let head = head(data);
    let strict = packet::parse(&head, ContentLength::Required);
    match &strict {
        Ok(p) => accepted(&head, p),
        Err(ack) => rejected(&head, ack),
    }
    // Lenient framing only ever accepts more: a packet IIS framing takes is the same packet.
    let lenient = packet::parse(&head, ContentLength::Optional);
    match (&strict, &lenient) {
        (Ok(_), _) => assert_eq!(lenient, strict, "optional Content-Length changed {head:?}"),
        (Err(_), Ok(p)) => {
            assert!(head.header("Content-Length").is_none() && p.body_len() == 0);
        }
        (Err(_), Err(ack)) => rejected(&head, ack),
    }
}

/// Header names are case-insensitive: the server sees hyper's lower-case names, tests and
/// clients send any case, and both must parse alike. Not part of [`check`], since every
/// execution would pay for a copy and a second parse: `tests/fuzz_replay.rs` runs it over
/// every seed, every regression input and thousands of random heads.
pub fn check_any_case(data: &[u8]) {
    let head = head(data);
    let names: Vec<Vec<u8>> = head
        .headers
        .iter()
        .map(|(name, _)| name.to_ascii_lowercase())
        .collect();
    let lowered = Head {
        headers: head
            .headers
            .iter()
            .zip(&names)
            .map(|(&(_, value), name)| (name.as_slice(), value))
            .collect(),
        ..head.clone()
    };
    assert_eq!(
        packet::parse(&lowered, ContentLength::Optional),
        packet::parse(&head, ContentLength::Optional),
        "header-name case changed the result for {head:?}"
    );
}

fn rejected(head: &Head, ack: &crate::proto::Ack) {
    assert!(
        REJECTIONS.contains(&ack.status),
        "unexpected rejection status for {head:?}: {ack:?}"
    );
    assert_error_headers(ack, head);
    if ack.status == 405 {
        assert_ne!(
            head.method,
            METHOD.as_bytes(),
            "a BITS_POST was answered 405"
        );
        assert_eq!(ack.error, None);
    }
    // The echoed id is the one part of a rejection the request controls; status, code and
    // context come from fixed tables.
    if let Some(id) = &ack.session_id {
        assert!(id.len() <= 100, "echoed an overlong session id: {id:?}");
        assert!(
            id.bytes().all(is_field_byte),
            "echoed a session id hyper cannot send: {id:?}"
        );
        assert_eq!(
            Some(id.as_str()),
            head.echo_session_id(),
            "echoed something else than the request's session id"
        );
    }
}

fn accepted(head: &Head, p: &Packet) {
    assert_eq!(head.method, METHOD.as_bytes(), "accepted a non-BITS method");
    let rendered = p.to_head();
    assert_eq!(
        packet::parse(&rendered.head(), ContentLength::Required).as_ref(),
        Ok(p),
        "a parsed packet did not survive its rendering {rendered:?} (from {head:?})"
    );
    // Spec rules rather than hyper's parsers, which copy every value into a new buffer:
    // allocations are what ASan makes slow, and this runs for every accepted input.
    assert!(
        rendered.target.bytes().all(is_path_byte),
        "rendered target {:?} is not a plain URI path",
        rendered.target
    );
    for (name, value) in &rendered.headers {
        assert!(
            value.bytes().all(is_field_byte),
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
        .text("Content-Length")
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

/// A byte of an RFC 3986 absolute path: `/`, pchar (unreserved, sub-delims, `:`, `@`) or part
/// of a percent escape.
fn is_path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"/-._~!$&'()*+,;=:@%".contains(&b)
}

/// A byte hyper sends in a header value (`http::HeaderValue`: visible ASCII, space, tab).
fn is_field_byte(b: u8) -> bool {
    b == b'\t' || (0x20..0x7f).contains(&b)
}
