//! IIS's spelling of header names on the wire.
//!
//! hyper 1 writes header names in lower case, or title case with `title_case_headers`
//! (`Bits-Packet-Type`), and offers no way to send a name as given: its `HeaderCaseMap` is
//! private. IIS sends `BITS-Packet-Type`, `BITS-Reply-URL`, `WWW-Authenticate`, and a client
//! that matches names case-sensitively works against IIS: if bitsmock spelled them otherwise,
//! that client would fail only against the mock. So the connection is served with title
//! case and [`Casing`] re-spells the names below in the bytes hyper writes, on their way to
//! the socket ([`super::socket::FaultIo`]).
//!
//! Only the letters' case changes, so every byte keeps its place and a partial write maps
//! one to one. A name is re-spelled where it starts a line and is followed by `:`; the
//! bodies bitsmock sends (empty Acks, one-line JSON replies) never contain such a line.

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

/// Where the last write left off. The bytes a write is given are always the rest of hyper's
/// buffer, so a name that starts in them ends in them too; only the part of a re-spelled
/// name that a partial write did not take carries over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Casing {
    /// The last byte written ended a line (or nothing was written yet).
    line_start: bool,
    /// The rest of a re-spelled name whose start was already written.
    pending: &'static [u8],
}

impl Default for Casing {
    fn default() -> Self {
        Casing {
            line_start: true,
            pending: &[],
        }
    }
}

impl Casing {
    /// `buf` as IIS would spell it, given what was written before. Same length as `buf`.
    pub fn respell(&self, buf: &[u8]) -> Vec<u8> {
        let mut out = buf.to_vec();
        for (at, name) in self.names(buf) {
            let end = (at + name.len()).min(out.len());
            out[at..end].copy_from_slice(&name[..end - at]);
        }
        out
    }

    /// Moves past the first `written` bytes of `buf` (what the socket took of it).
    pub fn advance(&mut self, buf: &[u8], written: usize) {
        if written == 0 {
            return;
        }
        let straddling = self
            .names(buf)
            .find(|(at, name)| *at < written && written < at + name.len());
        self.pending = match straddling {
            Some((at, name)) => &name[written - at..],
            None => &[],
        };
        self.line_start = buf[written - 1] == b'\n';
    }

    /// Each re-spelling in `buf`: where it starts and the bytes to put there.
    fn names<'a>(&self, buf: &'a [u8]) -> impl Iterator<Item = (usize, &'static [u8])> + 'a {
        let pending = (!self.pending.is_empty()).then_some((0, self.pending));
        let line_start = self.line_start;
        let skip = self.pending.len();
        let starts = (skip..buf.len()).filter(move |&i| {
            if i == 0 {
                line_start
            } else {
                buf[i - 1] == b'\n'
            }
        });
        pending.into_iter().chain(starts.filter_map(move |at| {
            let rest = &buf[at..];
            IIS_NAMES
                .iter()
                .map(|name| name.as_bytes())
                .find(|name| {
                    rest.len() > name.len()
                        && rest[name.len()] == b':'
                        && rest[..name.len()].eq_ignore_ascii_case(name)
                })
                .map(|name| (at, name))
        }))
    }
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

    #[test]
    fn names_get_iis_spelling_and_nothing_else_changes() {
        assert_eq!(Casing::default().respell(TITLE), IIS);
        let value = b"HTTP/1.1 200 OK\r\nX-Note: bits-packet-type: x\r\n\r\n";
        assert_eq!(Casing::default().respell(value), value);
        let prefix = b"HTTP/1.1 200 OK\r\nBits-Errors: 1\r\nBits-Error: 2\r\n\r\n";
        assert_eq!(
            Casing::default().respell(prefix),
            b"HTTP/1.1 200 OK\r\nBits-Errors: 1\r\nBITS-Error: 2\r\n\r\n"
        );
    }

    #[test]
    fn writes_cut_anywhere_give_the_same_bytes_as_one_write() {
        for step in 1..=7 {
            let mut casing = Casing::default();
            let mut sent = Vec::new();
            let mut rest = TITLE;
            while !rest.is_empty() {
                // The socket takes `step` bytes of whatever it is offered.
                let offered = casing.respell(rest);
                let n = step.min(rest.len());
                sent.extend_from_slice(&offered[..n]);
                casing.advance(rest, n);
                rest = &rest[n..];
            }
            assert_eq!(sent, IIS, "writes of {step} bytes");
        }
    }

    #[test]
    fn a_second_response_on_the_connection_is_respelled_too() {
        let mut casing = Casing::default();
        casing.advance(TITLE, TITLE.len());
        assert_eq!(casing.respell(TITLE), IIS);
    }
}
