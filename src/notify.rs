//! Back-end notification (docs/protocol.md §8): bitsmock in front of a real server
//! application, as the IIS BITS Server Extension is. Pure: what the notification request
//! says, what the application's answer means, and the Ack each failure becomes. The server
//! (`server::notify`) does the HTTP.
//!
//! ```text
//! POST /handle?from=dest HTTP/1.1                (when the last byte of the upload arrived)
//! Host: 127.0.0.1:9000
//! User-Agent: BITSExts 1.5
//! BITS-Original-Request-URL: http://127.0.0.1:8080/reply/in.xml?from=dest
//! BITS-Request-DataFile-Name: /srv/up/BITS-Sessions/Requests/<id>.bin     (by reference)
//! BITS-Response-DataFile-Name: /srv/up/BITS-Sessions/Replies/<id>.bin     (by reference)
//! Content-Length: 0                         (by value: the upload's size, and the upload)
//!
//! HTTP/1.1 200 OK                          → the final Fragment Ack carries BITS-Reply-URL
//! HTTP/1.1 503 Service Unavailable         → relayed: 503 + BITS-Error-Context: 0x7
//! ```

use crate::proto::{Ack, AckError, BitsError, Destination, SessionId, destination};
use std::time::Duration;

/// The `User-Agent` IIS's BITS extension sends (docs/protocol.md §8.1).
pub const USER_AGENT: &str = "BITSExts 1.5";
/// [MC-BUP]'s send, receive and header timers (five minutes each), as one default for the
/// whole exchange (docs/protocol.md §8.5).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);
/// The largest reply kept from an application by value, unless configured. A client API
/// reads replies of up to 1 MB into memory; bigger ones go to a file, so allow far more.
pub const DEFAULT_MAX_REPLY: u64 = 64 * 1024 * 1024;

/// How the application receives the upload (docs/protocol.md §8.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Type 1: file paths in headers; the application reads the upload and writes its reply
    /// to the response path.
    Reference,
    /// Type 2: the upload as the request body; the reply is the response body.
    Value,
}

/// Which form `BITS-Reply-URL` takes for replies the server stores (docs/protocol.md §8.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplyUrl {
    /// `http://host:port/BITS-Sessions/Replies/<id>/responsefile.bin` (the default: no
    /// question which host a relative URL resolves against).
    #[default]
    Absolute,
    /// IIS's relative form, `BITS-Sessions\Replies\{<ID>}\responsefile.bin`, which a client
    /// resolves against the destination's directory.
    Relative,
}

/// A plain `http://` application URL, split for an HTTP/1.1 client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppUrl {
    /// `host[:port]` as given, for the `Host` header.
    pub authority: String,
    /// What to connect to: the host (brackets removed from an IPv6 literal) and the port.
    pub host: String,
    pub port: u16,
    /// `/path[?query]`, at least `/`.
    pub path_and_query: String,
}

impl AppUrl {
    /// Parses `http://host[:port][/path][?query]`; what is wrong as a phrase otherwise.
    pub fn parse(text: &str) -> Result<AppUrl, String> {
        let lower = text.get(..8).map(str::to_ascii_lowercase);
        if lower.as_deref() == Some("https://") {
            return Err(
                "must be a plain http:// URL (https to the application is not supported)".into(),
            );
        }
        let rest = match text.get(..7) {
            Some(scheme) if scheme.eq_ignore_ascii_case("http://") => &text[7..],
            _ => return Err(format!("must be an http:// URL, not {text:?}")),
        };
        if text.len() > 2048 || !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("must be at most 2048 printable ASCII characters, no spaces".into());
        }
        let (authority, path_and_query) = match rest.find(['/', '?']) {
            Some(at) if rest.as_bytes()[at] == b'?' => (&rest[..at], format!("/{}", &rest[at..])),
            Some(at) => (&rest[..at], rest[at..].to_owned()),
            None => (rest, "/".to_owned()),
        };
        if path_and_query.contains('#') || authority.contains('@') {
            return Err("must not have a fragment or user information".into());
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("has an unclosed IPv6 address: {authority:?}"))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(format!("has no host: {text:?}"));
        }
        let port = match port {
            None => 80,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("has a bad port: {authority:?}"))?,
        };
        Ok(AppUrl {
            authority: authority.to_owned(),
            host: host.to_owned(),
            port,
            path_and_query,
        })
    }

    /// The request-target: the application URL's path and query, with the destination URL's
    /// query string appended (docs/protocol.md §8.1).
    pub fn target(&self, destination_query: Option<&str>) -> String {
        match destination_query.filter(|q| !q.is_empty()) {
            None => self.path_and_query.clone(),
            Some(q) if self.path_and_query.contains('?') => {
                format!("{}&{q}", self.path_and_query)
            }
            Some(q) => format!("{}?{q}", self.path_and_query),
        }
    }
}

impl std::fmt::Display for AppUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "http://{}{}", self.authority, self.path_and_query)
    }
}

/// One server application and the upload-reply destinations it answers for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Application {
    /// URL prefix (as segments) of the destinations it answers.
    pub prefix: Vec<String>,
    pub url: AppUrl,
    pub mode: Mode,
}

/// Every notification setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notifications {
    /// The applications; a destination goes to the one with the longest matching prefix.
    pub applications: Vec<Application>,
    /// Longest a notification may take, connect to last reply byte; then 408 + `0x7`.
    pub timeout: Duration,
    /// Largest reply accepted (a by-value body, or a by-reference reply file).
    pub max_reply: u64,
    pub reply_url: ReplyUrl,
}

impl Default for Notifications {
    fn default() -> Self {
        Notifications {
            applications: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
            max_reply: DEFAULT_MAX_REPLY,
            reply_url: ReplyUrl::Absolute,
        }
    }
}

impl Notifications {
    /// The application that answers for an upload-reply destination, if any.
    pub fn for_destination(&self, destination: &Destination) -> Option<&Application> {
        self.applications
            .iter()
            .filter(|a| destination.starts_with(&a.prefix))
            .max_by_key(|a| a.prefix.len())
    }

    /// The prefixes the protocol core needs (`Vdir::notify_prefixes`).
    pub fn prefixes(&self) -> Vec<Vec<String>> {
        self.applications.iter().map(|a| a.prefix.clone()).collect()
    }
}

/// The notification request's headers (docs/protocol.md §8.2), `Host` and `Content-Length`
/// aside. By reference the two paths tell the application where the upload is and where
/// its reply goes.
pub fn request_headers(
    mode: Mode,
    original_url: &str,
    request_file: &std::path::Path,
    response_file: &std::path::Path,
) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        ("User-Agent", USER_AGENT.to_owned()),
        ("BITS-Original-Request-URL", original_url.to_owned()),
    ];
    if mode == Mode::Reference {
        headers.push((
            "BITS-Request-DataFile-Name",
            request_file.display().to_string(),
        ));
        headers.push((
            "BITS-Response-DataFile-Name",
            response_file.display().to_string(),
        ));
    }
    headers
}

/// What the application's answer means (docs/protocol.md §8.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 200: the reply is the body or file, or `static_url` when given.
    Success {
        static_url: Option<String>,
        copy: bool,
    },
    /// Anything else, relayed on the final Fragment Ack.
    Failed(Ack),
}

/// Reads the application's status and headers (name, value; any case).
pub fn interpret<'a>(status: u16, headers: impl IntoIterator<Item = (&'a str, &'a str)>) -> Answer {
    let mut static_url = None;
    let mut copy = false;
    let mut code = None;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("BITS-Static-Response-URL") {
            static_url = Some(value.trim().to_owned());
        } else if name.eq_ignore_ascii_case("BITS-Copy-File-To-Destination") {
            copy = true;
        } else if name.eq_ignore_ascii_case("BITS-Error-Code") {
            code = parse_code(value);
        }
    }
    if status == 200 {
        return Answer::Success { static_url, copy };
    }
    // The application's own HRESULT when it sent one, else what a client makes of the
    // bare status (docs/protocol.md §5.4).
    let code = code.unwrap_or_else(|| http_error(status));
    Answer::Failed(Ack {
        error: Some(AckError::application(code)),
        ..Ack::status(status)
    })
}

/// `0x80070057`, `80070057`, either case.
fn parse_code(value: &str) -> Option<u32> {
    let v = value.trim();
    let hex = v
        .strip_prefix("0x")
        .or_else(|| v.strip_prefix("0X"))
        .unwrap_or(v);
    (hex.len() <= 8 && !hex.is_empty())
        .then(|| u32::from_str_radix(hex, 16).ok())
        .flatten()
}

/// `BG_E_HTTP_ERROR_<status>`.
pub fn http_error(status: u16) -> u32 {
    0x8019_0000 + u32::from(status)
}

/// Why a notification produced no answer to relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The application could not be reached (refused, unresolvable, reset before a status).
    Unreachable(String),
    /// No complete answer within the timeout.
    TimedOut,
    /// What came back was not HTTP.
    Garbage(String),
    /// The reply was larger than `Notifications::max_reply`.
    ReplyTooLarge(u64),
    /// The server could not read the upload or store the reply.
    Storage(String),
}

impl Failure {
    /// The Ack the client gets. Only 403 stops a Windows client from posting the file
    /// again (docs/protocol.md §8.5), so none of these is final: each is a status clients
    /// retry, and the retried final fragment notifies again.
    pub fn ack(&self) -> Ack {
        let application = |status: u16| Ack {
            error: Some(AckError::application(http_error(status))),
            ..Ack::status(status)
        };
        match self {
            // [MC-BUP] pairs 408 with context 0x7; the code is BG_E_HTTP_ERROR_408 rather
            // than the spec's 0x80070112 (disk full), which reads as an editorial slip.
            Failure::TimedOut => application(408),
            Failure::Unreachable(_) => application(503),
            Failure::Garbage(_) => application(502),
            Failure::ReplyTooLarge(_) => Ack {
                error: Some(AckError::application(BitsError::TooLarge.code())),
                ..Ack::status(500)
            },
            Failure::Storage(_) => Ack::error(BitsError::Internal),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Unreachable(why) => write!(f, "the application is unreachable: {why}"),
            Failure::TimedOut => f.write_str("the application did not answer in time"),
            Failure::Garbage(why) => write!(f, "the application's answer is not HTTP: {why}"),
            Failure::ReplyTooLarge(max) => {
                write!(f, "the application's reply is larger than {max} bytes")
            }
            Failure::Storage(why) => write!(f, "the server could not store the reply: {why}"),
        }
    }
}

/// `BITS-Reply-URL` for a reply the server stores and serves itself.
pub fn stored_reply_url(style: ReplyUrl, origin: &str, id: &SessionId) -> String {
    match style {
        ReplyUrl::Absolute => crate::proto::session::reply_url(origin, id),
        ReplyUrl::Relative => format!(
            "{}\\Replies\\{id}\\responsefile.bin",
            destination::RESERVED_SEGMENT
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_urls_are_plain_http_with_host_port_path_and_query() {
        let u = AppUrl::parse("http://127.0.0.1:9000/handle?x=1").unwrap();
        assert_eq!(
            (u.authority.as_str(), u.host.as_str(), u.port),
            ("127.0.0.1:9000", "127.0.0.1", 9000)
        );
        assert_eq!(u.path_and_query, "/handle?x=1");
        assert_eq!(u.to_string(), "http://127.0.0.1:9000/handle?x=1");
        let u = AppUrl::parse("HTTP://app.test").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path_and_query.as_str()),
            ("app.test", 80, "/")
        );
        let u = AppUrl::parse("http://[::1]:81?q").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path_and_query.as_str()),
            ("::1", 81, "/?q")
        );
        for bad in [
            "https://app.test/",
            "ftp://app.test/",
            "app.test/x",
            "http://",
            "http://:80/",
            "http://h:0/",
            "http://h:99999/",
            "http://h/a b",
            "http://u@h/",
            "http://[::1/",
        ] {
            assert!(AppUrl::parse(bad).is_err(), "{bad}");
        }
        assert!(
            AppUrl::parse("https://x/")
                .unwrap_err()
                .contains("plain http://")
        );
    }

    #[test]
    fn the_destination_query_is_appended_to_the_application_url() {
        let u = AppUrl::parse("http://a/h").unwrap();
        assert_eq!(u.target(Some("id=7")), "/h?id=7");
        assert_eq!(u.target(Some("")), "/h");
        assert_eq!(u.target(None), "/h");
        let u = AppUrl::parse("http://a/h?k=v").unwrap();
        assert_eq!(u.target(Some("id=7")), "/h?k=v&id=7");
    }

    #[test]
    fn by_reference_sends_both_paths_by_value_neither() {
        let req = std::path::Path::new("/up/req.bin");
        let resp = std::path::Path::new("/up/resp.bin");
        let h = request_headers(Mode::Reference, "http://s/r/a", req, resp);
        assert_eq!(
            h,
            vec![
                ("User-Agent", "BITSExts 1.5".to_owned()),
                ("BITS-Original-Request-URL", "http://s/r/a".to_owned()),
                ("BITS-Request-DataFile-Name", "/up/req.bin".to_owned()),
                ("BITS-Response-DataFile-Name", "/up/resp.bin".to_owned()),
            ]
        );
        let h = request_headers(Mode::Value, "http://s/r/a", req, resp);
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn a_200_succeeds_with_its_static_url_and_copy_request() {
        assert_eq!(
            interpret(200, []),
            Answer::Success {
                static_url: None,
                copy: false
            }
        );
        assert_eq!(
            interpret(
                200,
                [
                    ("bits-static-response-url", " http://cdn/r.bin "),
                    ("BITS-Copy-File-To-Destination", ""),
                ]
            ),
            Answer::Success {
                static_url: Some("http://cdn/r.bin".into()),
                copy: true
            }
        );
    }

    #[test]
    fn any_other_status_is_relayed_with_context_7() {
        let Answer::Failed(ack) = interpret(503, []) else {
            panic!()
        };
        assert_eq!(ack.status, 503);
        assert_eq!(
            ack.error,
            Some(AckError {
                code: 0x801901F7,
                context: 7
            })
        );
        let Answer::Failed(ack) = interpret(403, [("BITS-Error-Code", "0x80070005")]) else {
            panic!()
        };
        assert_eq!((ack.status, ack.error.unwrap().code), (403, 0x80070005));
        let Answer::Failed(ack) = interpret(201, [("BITS-Error-Code", "garbage")]) else {
            panic!()
        };
        assert_eq!(ack.error.unwrap().code, 0x801900C9);
    }

    #[test]
    fn failures_become_retryable_application_errors() {
        let status = |f: Failure| {
            let ack = f.ack();
            (ack.status, ack.error.map(|e| (e.code, e.context)))
        };
        assert_eq!(status(Failure::TimedOut), (408, Some((0x80190198, 7))));
        assert_eq!(
            status(Failure::Unreachable("refused".into())),
            (503, Some((0x801901F7, 7)))
        );
        assert_eq!(
            status(Failure::Garbage("x".into())),
            (502, Some((0x801901F6, 7)))
        );
        assert_eq!(
            status(Failure::ReplyTooLarge(1)),
            (500, Some((0x80200020, 7)))
        );
        assert_eq!(
            status(Failure::Storage("x".into())),
            (500, Some((0x80004005, 5)))
        );
    }

    #[test]
    fn the_longest_matching_prefix_picks_the_application() {
        let app = |prefix: &str, port: u16| Application {
            prefix: destination::prefix_segments(prefix),
            url: AppUrl::parse(&format!("http://127.0.0.1:{port}/")).unwrap(),
            mode: Mode::Value,
        };
        let n = Notifications {
            applications: vec![app("/reply/", 1), app("/reply/orders/", 2)],
            ..Notifications::default()
        };
        let port = |path: &str| {
            n.for_destination(&Destination::parse(path).unwrap())
                .map(|a| a.url.port)
        };
        assert_eq!(port("/reply/orders/a.xml"), Some(2));
        assert_eq!(port("/reply/other/a.xml"), Some(1));
        assert_eq!(port("/drop/a.xml"), None);
        // The core is told the same prefixes, in the same order.
        assert_eq!(
            n.prefixes(),
            [
                destination::prefix_segments("/reply/"),
                destination::prefix_segments("/reply/orders/"),
            ]
        );
        assert!(Notifications::default().prefixes().is_empty());
    }

    #[test]
    fn by_default_a_reply_may_be_64_mib_and_a_notification_take_five_minutes() {
        let n = Notifications::default();
        assert_eq!(n.max_reply, 64 << 20);
        assert_eq!(n.timeout, Duration::from_secs(300));
        assert_eq!(n.reply_url, ReplyUrl::Absolute);
    }

    #[test]
    fn an_application_url_may_be_2048_characters_long_and_no_longer() {
        let url = |len: usize| format!("http://a.test/{}", "x".repeat(len - 14));
        assert_eq!(url(2048).len(), 2048);
        assert!(AppUrl::parse(&url(2048)).is_ok());
        let err = AppUrl::parse(&url(2049)).unwrap_err();
        assert!(err.contains("at most 2048"), "{err}");
    }

    #[test]
    fn error_codes_are_at_most_eight_hex_digits() {
        assert_eq!(parse_code("0x80070057"), Some(0x80070057));
        assert_eq!(parse_code(" 80070057 "), Some(0x80070057));
        assert_eq!(parse_code("0X1"), Some(1));
        for bad in ["", "0x", "0x000000001", "800700570", "0xZZ", "-1"] {
            assert_eq!(parse_code(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn each_failure_says_what_went_wrong() {
        let shown = [
            Failure::Unreachable("refused".into()),
            Failure::TimedOut,
            Failure::Garbage("no status line".into()),
            Failure::ReplyTooLarge(1024),
            Failure::Storage("disk full".into()),
        ]
        .map(|f| f.to_string());
        assert_eq!(
            shown,
            [
                "the application is unreachable: refused",
                "the application did not answer in time",
                "the application's answer is not HTTP: no status line",
                "the application's reply is larger than 1024 bytes",
                "the server could not store the reply: disk full",
            ]
        );
    }

    #[test]
    fn stored_reply_urls_are_absolute_or_iis_relative() {
        let id = SessionId::from_bytes([0xAB; 16]);
        assert_eq!(
            stored_reply_url(ReplyUrl::Absolute, "http://h:1", &id),
            format!(
                "http://h:1/BITS-Sessions/Replies/{}/responsefile.bin",
                id.simple()
            )
        );
        assert_eq!(
            stored_reply_url(ReplyUrl::Relative, "http://h:1", &id),
            format!("BITS-Sessions\\Replies\\{id}\\responsefile.bin")
        );
    }
}
