//! IIS's spelling of header names on the wire.
//!
//! hyper 1 writes header names in lower case, or title case with `title_case_headers`
//! (`Bits-Packet-Type`), and offers no way to send a name as given: its `HeaderCaseMap` is
//! private. IIS sends `BITS-Packet-Type`, `BITS-Reply-URL`, `WWW-Authenticate`, and a client
//! that matches names case-sensitively works against IIS: if bitsmock spelled them otherwise,
//! that client would fail only against the mock. So the connection is served with title
//! case and [`Casing`] re-spells the names below in the heads hyper writes, on their way to
//! the socket ([`super::socket::FaultIo`]).
//!
//! Only heads are touched: a body (a reply an application wrote, say) passes through as it
//! is, however much it looks like a header. The handler says how long each response's body
//! is; a head ends at its blank line, and an interim `1xx` head has no body.
//!
//! Only the letters' case changes, so every byte keeps its place and a partial write maps
//! one to one. A name is re-spelled where it starts a line and is followed by `:`.

/// The names whose IIS spelling differs from title case.
pub const IIS_NAMES: &[&str] = &[
    "BITS-Packet-Type",
    "BITS-Protocol",
    "BITS-Session-Id",
    "BITS-Received-Content-Range",
    "BITS-Reply-URL",
    "BITS-Error-Code",
    "BITS-Error-Context",
    "BITS-Error",
    "BITS-Host-Id",
    "BITS-Host-Id-Fallback-Timeout",
    "WWW-Authenticate",
];

/// Where the writes are in the stream of responses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Casing {
    /// Bytes of the current body still to pass through; 0 while in a head.
    body_left: u64,
    head: Head,
    /// The rest of a re-spelled name whose start was already written.
    pending: &'static [u8],
    /// Where the last head offered left the walk, worked out as it was re-spelled: what
    /// [`Casing::advance`] moves to when the socket takes the whole offer, as it nearly
    /// always does, so a head is walked once rather than twice.
    offered: Option<Walked>,
}

/// Where a walk over a head's bytes left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Walked {
    /// Bytes walked.
    len: usize,
    head: Head,
    ended: bool,
    /// The last re-spelling that starts in them: where, and the bytes to put there.
    last_name: Option<(usize, &'static [u8])>,
}

/// How far into a head the writes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    /// Bytes of this head already passed.
    at: u64,
    /// Bytes of the current line before its `\n`.
    line: u64,
    /// The status is `1xx`: an interim answer (`100 Continue`), with no body.
    interim: bool,
}

impl Head {
    const START: Head = Head {
        at: 0,
        line: 0,
        interim: false,
    };
}

/// What the next write may offer of the bytes it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// The first `n` bytes are head: re-spelled, they are in the `out` given to [`Casing::offer`].
    Head(usize),
    /// The first `n` bytes are body: send them as they are.
    Body(usize),
}

impl Default for Casing {
    fn default() -> Self {
        Casing {
            body_left: 0,
            head: Head::START,
            pending: &[],
            offered: None,
        }
    }
}

impl Casing {
    /// How much of `buf` the next write may offer, and whether it is head or body. A head
    /// is offered up to its end, so a head and the body after it never share a write, and
    /// what is offered of it is put in `out` as IIS would spell it.
    pub fn offer(&mut self, buf: &[u8], out: &mut Vec<u8>) -> Offer {
        if self.body_left > 0 {
            return Offer::Body(
                usize::try_from(self.body_left).map_or(buf.len(), |left| left.min(buf.len())),
            );
        }
        // Built as it is walked, so only the head is copied, never a body after it. The
        // re-spellings come in order and each lies within its line, after the rest of a
        // name left pending at the start.
        out.clear();
        out.extend_from_slice(&self.pending[..self.pending.len().min(buf.len())]);
        let walked = walk(self.head, buf, buf.len(), |at, name| {
            out.extend_from_slice(buf.get(out.len()..at).unwrap_or_default());
            out.extend_from_slice(&name[..name.len().min(buf.len().saturating_sub(at))]);
        });
        out.extend_from_slice(buf.get(out.len()..walked.len).unwrap_or_default());
        self.offered = Some(walked);
        Offer::Head(walked.len)
    }

    /// Moves past the first `written` bytes of `buf` (what the socket took of the offer).
    /// `next_body` is asked for the length of a body when the head before it has ended.
    pub fn advance(&mut self, buf: &[u8], written: usize, next_body: impl FnOnce() -> u64) {
        let offered = self.offered.take();
        if written == 0 {
            return;
        }
        if self.body_left > 0 {
            self.body_left = self.body_left.saturating_sub(written as u64);
            return;
        }
        let walked = match offered {
            Some(walked) if walked.len == written => walked,
            _ => walk(self.head, buf, written, |_, _| {}),
        };
        let pending = self.pending;
        self.pending = pending.get(written..).unwrap_or(&[]);
        if let Some((at, name)) = walked.last_name
            && written < at + name.len()
        {
            self.pending = &name[written - at..];
        }
        self.head = walked.head;
        if walked.ended {
            self.head = Head::START;
            if !walked.head.interim {
                self.body_left = next_body();
            }
        }
    }
}

/// Walks the first `limit` head bytes of `buf` from `head`, calling `name` for each
/// re-spelling that starts there (where, the bytes to put there; a name may run past
/// `limit`), until the head's blank line.
fn walk(
    mut head: Head,
    buf: &[u8],
    limit: usize,
    mut name: impl FnMut(usize, &'static [u8]),
) -> Walked {
    let limit = limit.min(buf.len());
    let mut last_name = None;
    let mut i = 0;
    while i < limit {
        if head.line == 0
            && head.at > 0
            && let Some(found) = iis_name(&buf[i..])
        {
            name(i, found);
            last_name = Some((i, found));
        }
        let line_end = memchr::memchr(b'\n', &buf[i..limit]);
        let segment = line_end.map_or(limit - i, |at| at + 1);
        // `HTTP/1.1 1xx`: the status's first digit is the head's tenth byte.
        if let Some(digit) = 9u64.checked_sub(head.at).map(|d| d as usize)
            && digit < segment
            && buf[i + digit] == b'1'
        {
            head.interim = true;
        }
        head.at += segment as u64;
        i += segment;
        match line_end {
            // A line of nothing (or a lone `\r`) ends the head.
            Some(at) if head.line + at as u64 <= 1 => {
                return Walked {
                    len: i,
                    head,
                    ended: true,
                    last_name,
                };
            }
            Some(_) => head.line = 0,
            None => head.line += segment as u64,
        }
    }
    Walked {
        len: limit,
        head,
        ended: false,
        last_name,
    }
}

/// The IIS spelling of the header name `line` starts with, if it is one of [`IIS_NAMES`].
fn iis_name(line: &[u8]) -> Option<&'static [u8]> {
    // Every name starts with B or W: most lines are passed over at their first byte.
    if !matches!(line.first(), Some(b'B' | b'b' | b'W' | b'w')) {
        return None;
    }
    IIS_NAMES.iter().map(|name| name.as_bytes()).find(|name| {
        line.len() > name.len()
            && line[name.len()] == b':'
            && line[..name.len()].eq_ignore_ascii_case(name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TITLE: &[u8] =
        b"HTTP/1.1 200 OK\r\nBits-Packet-Type: Ack\r\nBits-Reply-Url: http://h/r\r\n\
        Content-Length: 0\r\nWww-Authenticate: Negotiate\r\n\r\n";
    const IIS: &[u8] =
        b"HTTP/1.1 200 OK\r\nBITS-Packet-Type: Ack\r\nBITS-Reply-URL: http://h/r\r\n\
        Content-Length: 0\r\nWWW-Authenticate: Negotiate\r\n\r\n";

    /// Everything the socket is sent for `stream`, offered in writes of which the socket
    /// takes at most `step` bytes each; `bodies` are the handler's body lengths in order.
    fn send(stream: &[u8], step: usize, bodies: &[u64]) -> Vec<u8> {
        let mut casing = Casing::default();
        let mut bodies = bodies.iter().copied();
        let mut sent = Vec::new();
        let mut scratch = Vec::new();
        let mut rest = stream;
        while !rest.is_empty() {
            let offered: &[u8] = match casing.offer(rest, &mut scratch) {
                Offer::Head(n) => {
                    assert_eq!(scratch.len(), n);
                    &scratch
                }
                Offer::Body(n) => &rest[..n],
            };
            assert!(!offered.is_empty());
            let n = step.min(offered.len());
            sent.extend_from_slice(&offered[..n]);
            casing.advance(rest, n, || bodies.next().unwrap_or(0));
            rest = &rest[n..];
        }
        sent
    }

    #[test]
    fn names_get_iis_spelling_and_nothing_else_changes() {
        assert_eq!(send(TITLE, usize::MAX, &[]), IIS);
        let value = b"HTTP/1.1 200 OK\r\nX-Note: bits-packet-type: x\r\n\r\n";
        assert_eq!(send(value, usize::MAX, &[]), value);
        let prefix = b"HTTP/1.1 200 OK\r\nBits-Errors: 1\r\nBits-Error: 2\r\n\r\n";
        assert_eq!(
            send(prefix, usize::MAX, &[]),
            b"HTTP/1.1 200 OK\r\nBits-Errors: 1\r\nBITS-Error: 2\r\n\r\n"
        );
        // A name must be followed by its colon, even at the end of the bytes given.
        let cut = b"HTTP/1.1 200 OK\r\nBits-Error";
        assert_eq!(send(cut, usize::MAX, &[]), cut);
        // A head's first line is its status line, never a header.
        let first = b"Bits-Error: 1\r\n\r\n";
        assert_eq!(send(first, usize::MAX, &[]), first);
    }

    #[test]
    fn writes_cut_anywhere_give_the_same_bytes_as_one_write() {
        let body = b"Bits-Packet-Type: not a header\r\n\r\n";
        let stream = [TITLE, body.as_slice(), TITLE].concat();
        let want = [IIS, body.as_slice(), IIS].concat();
        for step in 1..=7 {
            assert_eq!(
                send(&stream, step, &[body.len() as u64, 0]),
                want,
                "writes of {step} bytes"
            );
        }
    }

    #[test]
    fn a_body_passes_as_it_is_and_the_next_head_is_respelled() {
        // A reply whose text reads like header lines is not a head.
        let body = b"\nBits-Packet-Type: x\r\nWww-Authenticate: y\r\n";
        let stream = [TITLE, body.as_slice(), TITLE].concat();
        let want = [IIS, body.as_slice(), IIS].concat();
        assert_eq!(send(&stream, usize::MAX, &[body.len() as u64, 0]), want);
        // The body goes in writes of its own, never beyond its length.
        let mut casing = Casing::default();
        let mut out = Vec::new();
        assert_eq!(casing.offer(&stream, &mut out), Offer::Head(TITLE.len()));
        assert_eq!(out, IIS);
        casing.advance(&stream, TITLE.len(), || body.len() as u64);
        assert_eq!(
            casing.offer(&stream[TITLE.len()..], &mut out),
            Offer::Body(body.len())
        );
        casing.advance(&stream[TITLE.len()..], 3, || unreachable!());
        assert_eq!(
            casing.offer(&stream[TITLE.len() + 3..], &mut out),
            Offer::Body(body.len() - 3)
        );
    }

    #[test]
    fn an_interim_head_takes_no_body_length() {
        let interim = b"HTTP/1.1 100 Continue\r\n\r\n";
        let body = b"Bits-Error: 1\r\n";
        let stream = [interim.as_slice(), TITLE, body.as_slice()].concat();
        let want = [interim.as_slice(), IIS, body.as_slice()].concat();
        assert_eq!(send(&stream, usize::MAX, &[body.len() as u64]), want);
        assert_eq!(send(&stream, 2, &[body.len() as u64]), want);
        // A 2xx whose reason starts with 1 is not interim; a bare \n ends a head too.
        let odd = b"HTTP/1.1 201 1\n\nBits-Error: 1\r\n";
        assert_eq!(send(odd, usize::MAX, &[15]), odd);
    }

    #[test]
    fn a_head_handed_over_in_pieces_is_read_as_one() {
        // A head handed over in several writes, one of them ending right before the
        // status (a name cut between two writes of one buffer is the test above).
        let interim = b"HTTP/1.1 100 Continue\r\n\r\n";
        let mut casing = Casing::default();
        let mut out = Vec::new();
        let mut sent = Vec::new();
        let pieces: [&[u8]; 4] = [b"HTTP/1.1 ", &interim[9..], &TITLE[..17], &TITLE[17..]];
        for piece in pieces {
            assert_eq!(casing.offer(piece, &mut out), Offer::Head(piece.len()));
            sent.extend_from_slice(&out);
            casing.advance(piece, piece.len(), || 0);
        }
        assert_eq!(sent, [interim.as_slice(), IIS].concat());
        assert_eq!(casing, Casing::default());
    }

    #[test]
    fn a_second_response_on_the_connection_is_respelled_too() {
        let twice = [TITLE, TITLE].concat();
        assert_eq!(send(&twice, usize::MAX, &[0, 0]), [IIS, IIS].concat());
        let mut casing = Casing::default();
        casing.advance(TITLE, TITLE.len(), || 0);
        assert_eq!(casing, Casing::default());
    }
}
