//! Request packets: method, request-target and headers → [`Packet`] (docs/protocol.md §2, §3, §7.2).
//!
//! ```text
//! BITS_POST /drop/report.bin HTTP/1.1
//! BITS-Packet-Type: Fragment
//! BITS-Session-Id: {6B1D0C52-2F7A-4E0B-9C1E-5A3D2B7F9E01}
//! Content-Range: bytes 0-65535/150000
//! Content-Length: 65536
//! ```
//!
//! [`parse`] follows the validation order of §7.2: method, packet type, `Content-Length`,
//! header sizes, packet syntax, then the session id's shape. A request that fails any check
//! yields the Ack to send back (`Err(Ack)`), never a panic: malformed packets are ordinary
//! traffic for a mock server. [`Packet::to_head`] renders a packet back into a request head;
//! parsing that head gives back the same packet.

use super::ack::{Ack, PROTOCOL_GUID};
use super::destination::Destination;
use super::error::BitsError;
use super::range::ContentRange;
use super::vdir::ContentLength;
use std::borrow::Cow;
use std::fmt;

/// The only method BITS uses (case-sensitive, docs/protocol.md §2.1).
pub const METHOD: &str = "BITS_POST";
/// Longest header value accepted (docs/protocol.md §2.2, §10 item 7).
pub const MAX_HEADER_VALUE: usize = 4096;
/// Longest session id echoed back; longer or non-printable ids are not repeated.
const MAX_ECHO_LEN: usize = 100;

/// A request head as it arrived, borrowed from wherever it was read (hyper's request parts,
/// a fuzzer's bytes): the input of [`parse`]. Bytes, as on the wire; `parse` decides what has
/// to be text. Borrowing keeps parsing free of copies: the server parses every request, and
/// the `packet` fuzz target millions of them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Head<'a> {
    pub method: &'a [u8],
    pub target: &'a [u8],
    pub headers: Vec<(&'a [u8], &'a [u8])>,
}

impl<'a> Head<'a> {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|&(_, v)| v)
    }

    /// The first value of a header as trimmed text, if it is valid UTF-8.
    pub fn text(&self, name: &str) -> Option<&'a str> {
        self.header(name).and_then(text)
    }

    /// The session id to echo on an Ack: the request's own value when it is short, printable
    /// ASCII (anything else could not be sent back as a header).
    pub fn echo_session_id(&self) -> Option<&'a str> {
        echo(self.header("BITS-Session-Id"))
    }
}

/// Shows names, values and the target as text (with escapes), not as lists of numbers.
impl fmt::Debug for Head<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Head {{ {} {} [",
            self.method.escape_ascii(),
            self.target.escape_ascii()
        )?;
        for (name, value) in &self.headers {
            write!(
                f,
                " {}: {:?};",
                name.escape_ascii(),
                value.escape_ascii().to_string()
            )?;
        }
        f.write_str(" ] }")
    }
}

/// A request head rendered from a packet ([`Packet::to_head`]), owned; [`HeadBuf::head`]
/// borrows it as the [`Head`] a client would send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadBuf {
    pub target: String,
    pub headers: Vec<(&'static str, Cow<'static, str>)>,
}

impl HeadBuf {
    pub fn head(&self) -> Head<'_> {
        Head {
            method: METHOD.as_bytes(),
            target: self.target.as_bytes(),
            headers: self
                .headers
                .iter()
                .map(|(name, value)| (name.as_bytes(), value.as_bytes()))
                .collect(),
        }
    }
}

/// A header value as trimmed text, if it is valid UTF-8.
fn text(value: &[u8]) -> Option<&str> {
    std::str::from_utf8(value)
        .ok()
        .map(|v| v.trim_matches(|c| c == ' ' || c == '\t'))
}

/// The session id an Ack may echo: short, printable ASCII, or nothing.
fn echo(session_id: Option<&[u8]>) -> Option<&str> {
    session_id.and_then(text).filter(|id| {
        !id.is_empty()
            && id.len() <= MAX_ECHO_LEN
            && id.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
    })
}

/// The request headers [`parse`] reads, gathered in one pass over the head (the first of
/// each name wins, names match in any case).
#[derive(Default)]
struct Fields<'a> {
    packet_type: Option<&'a [u8]>,
    session_id: Option<&'a [u8]>,
    content_length: Option<&'a [u8]>,
    transfer_encoding: Option<&'a [u8]>,
    content_range: Option<&'a [u8]>,
    content_encoding: Option<&'a [u8]>,
    supported_protocols: Option<&'a [u8]>,
    /// Some header value is longer than [`MAX_HEADER_VALUE`].
    oversized: bool,
}

impl<'a> Fields<'a> {
    fn gather(headers: &[(&'a [u8], &'a [u8])]) -> Self {
        let mut fields = Fields::default();
        for &(name, value) in headers {
            fields.oversized |= value.len() > MAX_HEADER_VALUE;
            let slot = if name.eq_ignore_ascii_case(b"BITS-Packet-Type") {
                &mut fields.packet_type
            } else if name.eq_ignore_ascii_case(b"BITS-Session-Id") {
                &mut fields.session_id
            } else if name.eq_ignore_ascii_case(b"Content-Length") {
                &mut fields.content_length
            } else if name.eq_ignore_ascii_case(b"Transfer-Encoding") {
                &mut fields.transfer_encoding
            } else if name.eq_ignore_ascii_case(b"Content-Range") {
                &mut fields.content_range
            } else if name.eq_ignore_ascii_case(b"Content-Encoding") {
                &mut fields.content_encoding
            } else if name.eq_ignore_ascii_case(b"BITS-Supported-Protocols") {
                &mut fields.supported_protocols
            } else {
                continue;
            };
            slot.get_or_insert(value);
        }
        fields
    }
}

/// `BITS-Packet-Type` values of requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "fuzzing", derive(arbitrary::Arbitrary))]
pub enum PacketType {
    Ping,
    CreateSession,
    Fragment,
    CloseSession,
    CancelSession,
}

impl PacketType {
    pub const ALL: [PacketType; 5] = [
        PacketType::Ping,
        PacketType::CreateSession,
        PacketType::Fragment,
        PacketType::CloseSession,
        PacketType::CancelSession,
    ];

    /// The wire spelling Windows clients use.
    pub fn as_str(self) -> &'static str {
        match self {
            PacketType::Ping => "Ping",
            PacketType::CreateSession => "Create-Session",
            PacketType::Fragment => "Fragment",
            PacketType::CloseSession => "Close-Session",
            PacketType::CancelSession => "Cancel-Session",
        }
    }

    /// Case-insensitive match (clients send `Fragment`, `FRAGMENT`, `fragment`).
    pub fn parse(text: &str) -> Option<Self> {
        PacketType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(text))
    }
}

impl fmt::Display for PacketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A session id the server issued: a GUID, compared case-insensitively, sent braced and
/// upper-case like Windows does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(u128);

impl SessionId {
    /// A session id from 16 bytes (the server draws them from its seeded RNG).
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        SessionId(
            uuid::Builder::from_random_bytes(bytes)
                .into_uuid()
                .as_u128(),
        )
    }

    /// Accepts braced, hyphenated or bare GUIDs in any case.
    pub fn parse(text: &str) -> Option<Self> {
        let inner = text
            .strip_prefix('{')
            .and_then(|t| t.strip_suffix('}'))
            .unwrap_or(text);
        if inner.len() != 36 {
            return None;
        }
        uuid::Uuid::try_parse(inner)
            .ok()
            .map(|u| SessionId(u.as_u128()))
    }

    /// The plain hyphenated lower-case form, used for file and URL names.
    pub fn simple(&self) -> String {
        uuid::Uuid::from_u128(self.0).hyphenated().to_string()
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = uuid::Uuid::encode_buffer();
        let text = uuid::Uuid::from_u128(self.0)
            .braced()
            .encode_upper(&mut buf);
        f.write_str(text)
    }
}

/// A validated request packet. Each variant carries exactly what the server acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Ping,
    CreateSession {
        destination: Destination,
        /// The protocol chosen from `BITS-Supported-Protocols` (one the server knows).
        protocol: &'static str,
    },
    Fragment {
        destination: Destination,
        session: SessionId,
        range: ContentRange,
    },
    CloseSession {
        destination: Destination,
        session: SessionId,
    },
    CancelSession {
        destination: Destination,
        session: SessionId,
    },
}

impl Packet {
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Ping => PacketType::Ping,
            Packet::CreateSession { .. } => PacketType::CreateSession,
            Packet::Fragment { .. } => PacketType::Fragment,
            Packet::CloseSession { .. } => PacketType::CloseSession,
            Packet::CancelSession { .. } => PacketType::CancelSession,
        }
    }

    pub fn session(&self) -> Option<SessionId> {
        match self {
            Packet::Fragment { session, .. }
            | Packet::CloseSession { session, .. }
            | Packet::CancelSession { session, .. } => Some(*session),
            Packet::Ping | Packet::CreateSession { .. } => None,
        }
    }

    pub fn destination(&self) -> Option<&Destination> {
        match self {
            Packet::Ping => None,
            Packet::CreateSession { destination, .. }
            | Packet::Fragment { destination, .. }
            | Packet::CloseSession { destination, .. }
            | Packet::CancelSession { destination, .. } => Some(destination),
        }
    }

    /// Number of body bytes this packet carries.
    pub fn body_len(&self) -> u64 {
        match self {
            Packet::Fragment { range, .. } => range.len(),
            _ => 0,
        }
    }

    /// Renders the packet as a request head a client would send.
    pub fn to_head(&self) -> HeadBuf {
        let mut headers = Vec::with_capacity(4);
        headers.push(("BITS-Packet-Type", self.packet_type().as_str().into()));
        match self {
            Packet::Ping => {}
            Packet::CreateSession { protocol, .. } => {
                headers.push(("BITS-Supported-Protocols", (*protocol).into()));
            }
            Packet::Fragment { session, range, .. } => {
                headers.push(("BITS-Session-Id", session.to_string().into()));
                headers.push(("Content-Range", range.to_string().into()));
            }
            Packet::CloseSession { session, .. } | Packet::CancelSession { session, .. } => {
                headers.push(("BITS-Session-Id", session.to_string().into()));
            }
        }
        headers.push(("Content-Length", self.body_len().to_string().into()));
        HeadBuf {
            target: self
                .destination()
                .map_or_else(|| "/".to_owned(), Destination::to_string),
            headers,
        }
    }
}

/// Validates a request head; `lengths` says whether a bodyless packet may omit
/// `Content-Length`. `Err` holds the Ack to send back.
pub fn parse(head: &Head, lengths: ContentLength) -> Result<Packet, Ack> {
    if head.method != METHOD.as_bytes() {
        return Err(Ack::status(405));
    }
    let fields = Fields::gather(&head.headers);
    // The id to echo is worked out only when an Ack needs it, not for every packet.
    let fail = |error: BitsError, echoes: bool| {
        Ack::error(error).with_session(echo(fields.session_id.filter(|_| echoes)))
    };
    let packet_type = fields
        .packet_type
        .and_then(text)
        .and_then(PacketType::parse)
        .ok_or_else(|| fail(BitsError::InvalidArg, true))?;
    // Create-Session never resumes anything: a stray session id is ignored, not echoed.
    let echoes = packet_type != PacketType::CreateSession;
    let invalid = || fail(BitsError::InvalidArg, echoes);
    // Without Content-Length a body is empty only if it is not chunked either.
    let empty_without_length = lengths == ContentLength::Optional
        && packet_type != PacketType::Fragment
        && fields.transfer_encoding.is_none();
    let content_length = match fields.content_length {
        None if empty_without_length => 0,
        None => return Err(fail(BitsError::LengthRequired, echoes)),
        Some(v) => parse_decimal(v).ok_or_else(invalid)?,
    };
    if fields.oversized {
        return Err(invalid());
    }
    if packet_type != PacketType::Fragment && content_length != 0 {
        return Err(invalid());
    }
    if packet_type == PacketType::Ping {
        return Ok(Packet::Ping);
    }
    // A target that is not UTF-8 cannot name a file: like any forbidden character, it is 400.
    let destination = std::str::from_utf8(head.target)
        .ok()
        .and_then(|target| Destination::parse(target).ok())
        .ok_or_else(invalid)?;
    let session = || {
        fields
            .session_id
            .and_then(text)
            .and_then(SessionId::parse)
            .ok_or_else(|| fail(BitsError::SessionNotFound, echoes))
    };
    match packet_type {
        PacketType::Ping => Ok(Packet::Ping),
        PacketType::CreateSession => {
            let offered = fields
                .supported_protocols
                .and_then(text)
                .ok_or_else(invalid)?;
            let protocol = negotiate(offered).ok_or_else(invalid)?;
            Ok(Packet::CreateSession {
                destination,
                protocol,
            })
        }
        PacketType::Fragment => {
            let range = fields
                .content_range
                .and_then(text)
                .and_then(|v| ContentRange::parse(v).ok())
                .ok_or_else(invalid)?;
            if range.len() != content_length {
                return Err(invalid());
            }
            if let Some(encoding) = fields.content_encoding.and_then(text)
                && !encoding.eq_ignore_ascii_case("identity")
            {
                return Err(invalid());
            }
            Ok(Packet::Fragment {
                destination,
                session: session()?,
                range,
            })
        }
        PacketType::CloseSession => Ok(Packet::CloseSession {
            destination,
            session: session()?,
        }),
        PacketType::CancelSession => Ok(Packet::CancelSession {
            destination,
            session: session()?,
        }),
    }
}

/// Picks the first offered protocol the server supports. GUIDs may be separated by spaces,
/// tabs or commas and may use any letter case (docs/protocol.md §10 item 4).
pub fn negotiate(offered: &str) -> Option<&'static str> {
    let supported = &PROTOCOL_GUID[1..PROTOCOL_GUID.len() - 1];
    offered
        .split([' ', ',', '\t'])
        .filter(|t| !t.is_empty())
        .any(|token| {
            let bare = token
                .strip_prefix('{')
                .and_then(|t| t.strip_suffix('}'))
                .unwrap_or(token);
            bare.eq_ignore_ascii_case(supported)
        })
        .then_some(PROTOCOL_GUID)
}

fn parse_decimal(value: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(value).ok()?.trim();
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// In journals and JSON: `"Fragment"`, as on the wire.
impl serde::Serialize for PacketType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// In journals and JSON: the braced upper-case form the Acks carry.
impl serde::Serialize for SessionId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// IIS framing, as most tests want it.
    fn parse(head: &Head) -> Result<Packet, Ack> {
        super::parse(head, ContentLength::Required)
    }

    const SID: &str = "{6B1D0C52-2F7A-4E0B-9C1E-5A3D2B7F9E01}";

    fn head<'a>(target: &'a str, headers: &[(&'a str, &'a str)]) -> Head<'a> {
        Head {
            method: METHOD.as_bytes(),
            target: target.as_bytes(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
                .collect(),
        }
    }

    fn rejected(h: &Head) -> Ack {
        parse(h).expect_err("packet was accepted")
    }

    #[test]
    fn ping_needs_no_session_id_and_ignores_a_stale_one() {
        assert_eq!(
            parse(&head(
                "/a",
                &[("BITS-Packet-Type", "Ping"), ("Content-Length", "0")]
            )),
            Ok(Packet::Ping)
        );
        assert_eq!(
            parse(&head(
                "/",
                &[
                    ("bits-packet-type", "PING"),
                    ("BITS-Session-Id", "garbage"),
                    ("content-length", "0")
                ]
            )),
            Ok(Packet::Ping)
        );
    }

    #[test]
    fn packet_types_match_in_any_case() {
        for t in ["Fragment", "FRAGMENT", "fragment", "fRaGmEnT"] {
            assert_eq!(PacketType::parse(t), Some(PacketType::Fragment));
        }
        assert_eq!(PacketType::parse("Ack"), None);
        assert_eq!(PacketType::parse("Fragment2"), None);
    }

    #[test]
    fn unknown_or_missing_packet_types_are_400_invalid_arg() {
        for h in [
            head(
                "/a",
                &[("BITS-Packet-Type", "Upload"), ("Content-Length", "0")],
            ),
            head("/a", &[("Content-Length", "0")]),
        ] {
            let ack = rejected(&h);
            assert_eq!(ack.status, 400);
            assert_eq!(ack.error, Some(BitsError::InvalidArg.into()));
        }
    }

    #[test]
    fn other_methods_are_not_bits_packets() {
        let mut h = head(
            "/a",
            &[("BITS-Packet-Type", "Ping"), ("Content-Length", "0")],
        );
        h.method = b"bits_post";
        assert_eq!(rejected(&h).status, 405);
    }

    #[test]
    fn missing_content_length_is_411_and_a_body_on_control_packets_is_400() {
        let ack = rejected(&head("/a", &[("BITS-Packet-Type", "Ping")]));
        assert_eq!(ack.status, 411);
        assert_eq!(ack.error.unwrap().code, 0x8007_0057);
        for t in ["Ping", "Create-Session", "Close-Session", "Cancel-Session"] {
            let ack = rejected(&head(
                "/a",
                &[
                    ("BITS-Packet-Type", t),
                    ("BITS-Session-Id", SID),
                    ("BITS-Supported-Protocols", PROTOCOL_GUID),
                    ("Content-Length", "5"),
                ],
            ));
            assert_eq!(ack.status, 400, "{t}");
        }
    }

    #[test]
    fn optional_content_length_lets_bodyless_packets_omit_it_but_not_fragments() {
        let lenient = |h: &Head| super::parse(h, ContentLength::Optional);
        assert_eq!(
            lenient(&head("/a", &[("BITS-Packet-Type", "Ping")])),
            Ok(Packet::Ping)
        );
        let close = head(
            "/a",
            &[
                ("BITS-Packet-Type", "Close-Session"),
                ("BITS-Session-Id", SID),
            ],
        );
        assert!(matches!(lenient(&close), Ok(Packet::CloseSession { .. })));
        assert_eq!(rejected(&close).status, 411);
        let create = head(
            "/a",
            &[
                ("BITS-Packet-Type", "Create-Session"),
                ("BITS-Supported-Protocols", PROTOCOL_GUID),
            ],
        );
        assert!(matches!(lenient(&create), Ok(Packet::CreateSession { .. })));
        let fragment = head(
            "/a",
            &[
                ("BITS-Packet-Type", "Fragment"),
                ("BITS-Session-Id", SID),
                ("Content-Range", "bytes 0-0/1"),
            ],
        );
        assert_eq!(lenient(&fragment).unwrap_err().status, 411);
        // A chunked body is not an empty one.
        let chunked = head(
            "/a",
            &[
                ("BITS-Packet-Type", "Ping"),
                ("Transfer-Encoding", "chunked"),
            ],
        );
        assert_eq!(lenient(&chunked).unwrap_err().status, 411);
    }

    #[test]
    fn header_values_over_4kb_are_400() {
        let long = "x".repeat(MAX_HEADER_VALUE + 1);
        let ack = rejected(&head(
            "/a",
            &[
                ("BITS-Packet-Type", "Ping"),
                ("Content-Length", "0"),
                ("X-Junk", &long),
            ],
        ));
        assert_eq!(ack.status, 400);
    }

    #[test]
    fn create_session_negotiates_the_first_supported_guid() {
        let upper = PROTOCOL_GUID.to_ascii_uppercase();
        for offered in [
            PROTOCOL_GUID.to_owned(),
            format!("{{00000000-0000-0000-0000-000000000000}} {upper}"),
            format!("{{11111111-1111-1111-1111-111111111111}},{PROTOCOL_GUID}"),
            format!(" {upper} , {{22222222-2222-2222-2222-222222222222}}"),
        ] {
            let p = parse(&head(
                "/drop/a.bin",
                &[
                    ("BITS-Packet-Type", "Create-Session"),
                    ("BITS-Supported-Protocols", &offered),
                    ("BITS-Session-Id", SID),
                    ("Content-Length", "0"),
                ],
            ))
            .unwrap_or_else(|a| panic!("{offered}: {a:?}"));
            assert!(
                matches!(p, Packet::CreateSession { protocol, .. } if protocol == PROTOCOL_GUID)
            );
        }
    }

    #[test]
    fn create_session_without_a_common_protocol_is_400_without_a_session_id() {
        for offered in [
            None,
            Some("{00000000-0000-0000-0000-000000000000}"),
            Some(""),
        ] {
            let mut headers = vec![
                ("BITS-Packet-Type", "Create-Session"),
                ("Content-Length", "0"),
                ("BITS-Session-Id", SID),
            ];
            if let Some(o) = offered {
                headers.push(("BITS-Supported-Protocols", o));
            }
            let ack = rejected(&head("/a", &headers));
            assert_eq!(ack.status, 400);
            assert_eq!(ack.error.unwrap().code, 0x8007_0057);
            assert_eq!(ack.session_id, None);
        }
    }

    #[test]
    fn fragments_need_a_valid_range_matching_their_length() {
        let frag = |range: &'static str, len: &'static str| {
            head(
                "/a",
                &[
                    ("BITS-Packet-Type", "Fragment"),
                    ("BITS-Session-Id", SID),
                    ("Content-Range", range),
                    ("Content-Length", len),
                ],
            )
        };
        let p = parse(&frag("bytes 0-9/20", "10")).unwrap();
        assert_eq!(p.body_len(), 10);
        for (range, len) in [
            ("bytes 0-9/20", "9"),
            ("bytes 0-9/20", "11"),
            ("bytes 9-0/20", "10"),
            ("bytes 0-20/20", "21"),
            ("bytes 0-9/*", "10"),
            ("0-9/20", "10"),
            ("bytes 0-9/20", "-1"),
            ("bytes 0-9/20", "1e1"),
        ] {
            let ack = rejected(&frag(range, len));
            assert_eq!(ack.status, 400, "{range} {len}");
            assert_eq!(ack.session_id.as_deref(), Some(SID), "errors echo the id");
        }
    }

    #[test]
    fn fragments_with_a_non_identity_encoding_are_400() {
        let mut h = head(
            "/a",
            &[
                ("BITS-Packet-Type", "Fragment"),
                ("BITS-Session-Id", SID),
                ("Content-Range", "bytes 0-0/1"),
                ("Content-Length", "1"),
                ("Content-Encoding", "Identity"),
            ],
        );
        assert!(parse(&h).is_ok());
        h.headers[4].1 = b"gzip";
        assert_eq!(rejected(&h).status, 400);
    }

    #[test]
    fn missing_or_malformed_session_ids_are_session_not_found() {
        for id in [None, Some("nope"), Some("{6B1D0C52}")] {
            let mut headers = vec![
                ("BITS-Packet-Type", "Close-Session"),
                ("Content-Length", "0"),
            ];
            if let Some(id) = id {
                headers.push(("BITS-Session-Id", id));
            }
            let ack = rejected(&head("/a", &headers));
            assert_eq!(ack.status, 500);
            assert_eq!(ack.error.unwrap().code, 0x8020_001F);
            assert_eq!(ack.error.unwrap().context, 5);
            assert_eq!(ack.session_id.as_deref(), id);
        }
    }

    #[test]
    fn session_ids_compare_case_insensitively_and_render_braced_upper_case() {
        let a = SessionId::parse(SID).unwrap();
        let b = SessionId::parse(&SID.to_ascii_lowercase()).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), SID);
        assert_eq!(SessionId::parse(&a.simple()), Some(a));
    }

    #[test]
    fn traversal_targets_are_400() {
        let ack = rejected(&head(
            "/../x",
            &[
                ("BITS-Packet-Type", "Create-Session"),
                ("BITS-Supported-Protocols", PROTOCOL_GUID),
                ("Content-Length", "0"),
            ],
        ));
        assert_eq!(ack.status, 400);
        assert_eq!(ack.error.unwrap().code, 0x8007_0057);
    }

    #[test]
    fn every_packet_round_trips_through_its_rendering() {
        let destination = Destination::parse("/drop/my%20file.bin").unwrap();
        let session = SessionId::parse(SID).unwrap();
        for p in [
            Packet::Ping,
            Packet::CreateSession {
                destination: destination.clone(),
                protocol: PROTOCOL_GUID,
            },
            Packet::Fragment {
                destination: destination.clone(),
                session,
                range: ContentRange::new(5, 9, 10).unwrap(),
            },
            Packet::CloseSession {
                destination: destination.clone(),
                session,
            },
            Packet::CancelSession {
                destination,
                session,
            },
        ] {
            assert_eq!(parse(&p.to_head().head()), Ok(p));
        }
    }
}
