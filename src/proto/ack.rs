//! The Ack: the only answer a BITS server gives (docs/protocol.md §2.4, §4).
//!
//! ```text
//! HTTP/1.1 200 OK
//! BITS-Packet-Type: Ack
//! BITS-Session-Id: {6B1D0C52-2F7A-4E0B-9C1E-5A3D2B7F9E01}
//! BITS-Received-Content-Range: 65536
//! Content-Length: 0
//! ```
//!
//! An [`Ack`] is a value; [`Ack::render`] turns it into a status and an ordered header list.
//! The fault layer rewrites that list when it wants a lying Ack; the server writes it out.

use super::error::{BitsError, Context, format_code, format_context};

/// The one protocol version that exists ("BITS 1.5 Upload Protocol").
pub const PROTOCOL_GUID: &str = "{7df0354d-249b-430f-820d-3d2a9bef4931}";

/// Which name the error-code header goes out under (docs/protocol.md §5.1, §11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ErrorHeader {
    /// `BITS-Error-Code`, as Windows documents it and clients expect (the default).
    #[default]
    Code,
    /// `BITS-Error`, the [MC-BUP] spelling.
    Spec,
    /// Both names, same value.
    Both,
}

/// An error carried by an Ack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AckError {
    pub code: u32,
    pub context: u32,
}

impl From<BitsError> for AckError {
    fn from(error: BitsError) -> Self {
        AckError {
            code: error.code(),
            context: error.context().value(),
        }
    }
}

impl AckError {
    /// An error relayed from the server application (context `0x7`).
    pub fn application(code: u32) -> Self {
        AckError {
            code,
            context: Context::Application.value(),
        }
    }
}

/// Everything an Ack can say. Fields left `None` are not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub status: u16,
    pub session_id: Option<String>,
    pub protocol: Option<String>,
    pub accept_encoding: bool,
    pub host_id: Option<String>,
    pub host_id_fallback_timeout: Option<u64>,
    pub received: Option<u64>,
    pub reply_url: Option<String>,
    pub error: Option<AckError>,
}

/// An Ack as status + headers, in the order they go on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
}

impl Rendered {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Replaces (or adds) a header, keeping its position when it exists.
    pub fn set(&mut self, name: &'static str, value: String) {
        match self
            .headers
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(slot) => slot.1 = value,
            None => {
                // Content-Length stays last, so insert before it.
                let at = self.headers.len().saturating_sub(1);
                self.headers.insert(at, (name, value));
            }
        }
    }

    /// Removes every header of that name.
    pub fn remove(&mut self, name: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }
}

impl Ack {
    /// A bare Ack with a status and nothing else.
    pub fn status(status: u16) -> Self {
        Ack {
            status,
            session_id: None,
            protocol: None,
            accept_encoding: false,
            host_id: None,
            host_id_fallback_timeout: None,
            received: None,
            reply_url: None,
            error: None,
        }
    }

    /// `200 OK`.
    pub fn ok() -> Self {
        Ack::status(200)
    }

    /// A failure Ack for one of the server's own errors (status, code and context from the table).
    pub fn error(error: BitsError) -> Self {
        Ack {
            error: Some(error.into()),
            ..Ack::status(error.status())
        }
    }

    /// Echoes the request's session id.
    pub fn with_session(mut self, session_id: Option<&str>) -> Self {
        self.session_id = session_id.map(str::to_owned);
        self
    }

    /// Carries the id of a session the server knows, in its canonical (braced, upper-case)
    /// form.
    pub fn for_session(mut self, id: &super::SessionId) -> Self {
        self.session_id = Some(id.to_string());
        self
    }

    /// Adds `BITS-Received-Content-Range`.
    pub fn with_received(mut self, received: u64) -> Self {
        self.received = Some(received);
        self
    }

    /// Whether this Ack reports success (2xx).
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Status and headers in wire order. Error headers appear only when `error` is set.
    pub fn render(&self, style: ErrorHeader) -> Rendered {
        let mut headers: Vec<(&'static str, String)> = Vec::with_capacity(8);
        headers.push(("BITS-Packet-Type", "Ack".to_owned()));
        if let Some(protocol) = &self.protocol {
            headers.push(("BITS-Protocol", protocol.clone()));
        }
        if let Some(id) = &self.session_id {
            headers.push(("BITS-Session-Id", id.clone()));
        }
        if let Some(host) = &self.host_id {
            headers.push(("BITS-Host-Id", host.clone()));
        }
        if let Some(timeout) = self.host_id_fallback_timeout {
            headers.push(("BITS-Host-Id-Fallback-Timeout", timeout.to_string()));
        }
        if self.accept_encoding {
            headers.push(("Accept-Encoding", "identity".to_owned()));
        }
        if let Some(received) = self.received {
            headers.push(("BITS-Received-Content-Range", received.to_string()));
        }
        if let Some(url) = &self.reply_url {
            headers.push(("BITS-Reply-URL", url.clone()));
        }
        if let Some(error) = self.error {
            let code = format_code(error.code);
            if matches!(style, ErrorHeader::Code | ErrorHeader::Both) {
                headers.push(("BITS-Error-Code", code.clone()));
            }
            if matches!(style, ErrorHeader::Spec | ErrorHeader::Both) {
                headers.push(("BITS-Error", code));
            }
            headers.push(("BITS-Error-Context", format_context(error.context)));
        }
        headers.push(("Content-Length", "0".to_owned()));
        Rendered {
            status: self.status,
            headers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_ack_carries_only_the_packet_type_and_a_zero_length() {
        let r = Ack::ok().render(ErrorHeader::Code);
        assert_eq!(r.status, 200);
        assert_eq!(
            r.headers,
            vec![
                ("BITS-Packet-Type", "Ack".to_owned()),
                ("Content-Length", "0".to_owned())
            ]
        );
    }

    #[test]
    fn an_error_ack_carries_code_and_context_under_the_chosen_name() {
        let ack = Ack::error(BitsError::SessionNotFound).with_session(Some("{X}"));
        let code = ack.render(ErrorHeader::Code);
        assert_eq!(code.status, 500);
        assert_eq!(code.header("bits-error-code"), Some("0x8020001F"));
        assert_eq!(code.header("BITS-Error"), None);
        assert_eq!(code.header("BITS-Error-Context"), Some("0x5"));
        assert_eq!(code.header("BITS-Session-Id"), Some("{X}"));
        let spec = ack.render(ErrorHeader::Spec);
        assert_eq!(spec.header("BITS-Error"), Some("0x8020001F"));
        assert_eq!(spec.header("BITS-Error-Code"), None);
        let both = ack.render(ErrorHeader::Both);
        assert_eq!(both.header("BITS-Error"), Some("0x8020001F"));
        assert_eq!(both.header("BITS-Error-Code"), Some("0x8020001F"));
    }

    #[test]
    fn success_acks_never_carry_error_headers() {
        let r = Ack::ok().with_received(10).render(ErrorHeader::Both);
        assert!(r.header("BITS-Error-Code").is_none());
        assert!(r.header("BITS-Error-Context").is_none());
        assert_eq!(r.header("BITS-Received-Content-Range"), Some("10"));
    }

    #[test]
    fn rewriting_keeps_content_length_last() {
        let mut r = Ack::ok().render(ErrorHeader::Code);
        r.set("BITS-Received-Content-Range", "5".into());
        assert_eq!(r.headers.last().unwrap().0, "Content-Length");
        r.set("BITS-Received-Content-Range", "6".into());
        assert_eq!(r.header("BITS-Received-Content-Range"), Some("6"));
        r.remove("bits-received-content-range");
        assert_eq!(r.header("BITS-Received-Content-Range"), None);
    }
}
