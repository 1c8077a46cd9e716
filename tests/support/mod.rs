//! Shared helpers for the integration tests: an in-process server fixture on `127.0.0.1:0`
//! (optionally with `--fault` rules), the real binary as a child process ([`serve`]), a
//! tiny raw HTTP/1.1 client over a kept-alive tokio `TcpStream` (so tests can send bytes no
//! well-behaved client library would), BITS packet builders, and a full-upload helper.
//!
//! The client deliberately knows nothing about the server's types: it speaks the wire format
//! of docs/protocol.md and reads the result back from the filesystem.

#![allow(dead_code)]

pub mod admin;
pub mod serve;

use bitsmock::fault::Rule;
use bitsmock::fault::profile::parse_rule_line;
use bitsmock::{Config, Running};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The one BITS upload protocol GUID.
pub const PROTOCOL: &str = "{7df0354d-249b-430f-820d-3d2a9bef4931}";
pub const SESSION_NOT_FOUND: &str = "0x8020001F";
pub const INVALID_ARG: &str = "0x80070057";
pub const TOO_LARGE: &str = "0x80200020";

/// Longest any single read in a test may wait before the test fails instead of hanging.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------
// Server fixture
// ---------------------------------------------------------------------------------------

/// A running server with its own upload root. The root lives one level below a private
/// temp directory, so tests can check that nothing appeared beside it.
pub struct Fixture {
    pub running: Running,
    /// The private temp directory; `root` is its only intended child.
    pub dir: TempDir,
    pub root: PathBuf,
}

/// Starts a server with default settings.
pub async fn start() -> Fixture {
    start_with(|_| {}).await
}

/// Starts a server after letting the test adjust the config.
pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Fixture {
    start_from(|root| {
        let mut config = config_at(root);
        adjust(&mut config);
        config
    })
    .await
}

/// Starts a server with these `--fault` rules.
pub async fn start_rules(lines: &[&str]) -> Fixture {
    start_rules_with(lines, |_| {}).await
}

/// Starts a server with these `--fault` rules, then lets the test adjust the config.
pub async fn start_rules_with(lines: &[&str], adjust: impl FnOnce(&mut Config)) -> Fixture {
    let rules = rules(lines);
    start_with(move |c| {
        c.rules = rules;
        adjust(c);
    })
    .await
}

/// Starts a server on the config `build` makes for the fixture's upload root.
pub async fn start_from(build: impl FnOnce(&Path) -> Config) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("root");
    let running = bitsmock::spawn(build(&root)).await.expect("server starts");
    Fixture { running, dir, root }
}

/// The test config: loopback on an ephemeral port, `root`, and read timeouts generous enough
/// for a loaded machine.
pub fn config_at(root: &Path) -> Config {
    Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        root: root.to_path_buf(),
        header_read_timeout: Duration::from_secs(10),
        body_read_timeout: Duration::from_secs(10),
        ..Config::default()
    }
}

/// Rules in the `--fault` one-line syntax, numbered from 1.
pub fn rules(lines: &[&str]) -> Vec<Rule> {
    lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            parse_rule_line(line, "--fault", i + 1).unwrap_or_else(|e| panic!("{line}: {e}"))
        })
        .collect()
}

impl Fixture {
    pub fn addr(&self) -> SocketAddr {
        self.running.addr
    }

    /// The server's URL for a plain `/a/b` path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.running.url())
    }

    /// How often each rule fired, in rule order.
    pub fn fired(&self) -> Vec<u64> {
        self.running
            .server
            .fire_counts()
            .into_iter()
            .map(|(_, n)| n)
            .collect()
    }

    /// A fresh keep-alive connection.
    pub async fn connect(&self) -> Conn {
        Conn::open(self.addr()).await
    }

    /// Where a committed upload for `target` (a plain `/a/b` path) lands.
    pub fn stored_path(&self, target: &str) -> PathBuf {
        let mut path = self.root.clone();
        path.extend(target.split('/').filter(|s| !s.is_empty()));
        path
    }

    /// The committed file for `target`, or `None` if there is none.
    pub fn stored(&self, target: &str) -> Option<Vec<u8>> {
        std::fs::read(self.stored_path(target)).ok()
    }

    /// `<root>/BITS-Sessions/Requests/<uuid>.bin` for a session id as the Ack sent it.
    pub fn temp_path(&self, session: &str) -> PathBuf {
        let uuid = session
            .trim_start_matches('{')
            .trim_end_matches('}')
            .to_ascii_lowercase();
        self.root
            .join("BITS-Sessions")
            .join("Requests")
            .join(format!("{uuid}.bin"))
    }

    /// Names of the files in the temp-file directory.
    pub fn temp_files(&self) -> Vec<String> {
        list(&self.root.join("BITS-Sessions").join("Requests"))
    }

    /// A source file of `size` deterministic bytes in the private temp directory, and its bytes.
    pub fn source(&self, size: usize) -> (PathBuf, Vec<u8>) {
        source_in(self.dir.path(), size)
    }

    /// Sizes of the files in the temp-file directory; `[0]` when there are none.
    pub fn temp_sizes(&self) -> Vec<u64> {
        let dir = self.root.join("BITS-Sessions").join("Requests");
        let mut sizes: Vec<u64> = std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .collect()
            })
            .unwrap_or_default();
        if sizes.is_empty() {
            sizes.push(0);
        }
        sizes
    }

    /// Asserts the server still answers a Ping on a brand-new connection.
    pub async fn assert_alive(&self) {
        let mut conn = self.connect().await;
        let ack = conn
            .send(&Req::ping("/alive"))
            .await
            .expect("ping answered");
        assert_eq!(ack.status, 200, "server no longer answers Ping: {ack:?}");
        assert_eq!(ack.header("BITS-Packet-Type"), Some("Ack"));
    }

    pub async fn stop(self) {
        self.running.stop().await.expect("server stops cleanly");
    }
}

/// Writes `dir/source-SIZE.bin` with `size` deterministic bytes; returns its path and bytes.
pub fn source_in(dir: &Path, size: usize) -> (PathBuf, Vec<u8>) {
    let data: Vec<u8> = (0..size as u64)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8 ^ (i as u8))
        .collect();
    let path = dir.join(format!("source-{size}.bin"));
    std::fs::write(&path, &data).expect("write source");
    (path, data)
}

/// Sorted names of the entries of a directory (empty if it does not exist).
pub fn list(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Waits (briefly polling) until `cond` holds, or fails the test with `what`.
pub async fn eventually(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Test data
// ---------------------------------------------------------------------------------------

/// Deterministic pseudo-random bytes (splitmix64), different for each seed.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Compares two byte strings without dumping megabytes into the failure message.
#[track_caller]
pub fn assert_same(actual: &[u8], expected: &[u8], what: &str) {
    if actual == expected {
        return;
    }
    let first_diff = actual
        .iter()
        .zip(expected)
        .position(|(a, b)| a != b)
        .unwrap_or(actual.len().min(expected.len()));
    panic!(
        "{what}: {} bytes stored, {} expected, first difference at byte {first_diff}",
        actual.len(),
        expected.len()
    );
}

// ---------------------------------------------------------------------------------------
// Raw HTTP/1.1
// ---------------------------------------------------------------------------------------

/// A request as raw parts. Unless the test sets `Content-Length` itself (or calls
/// [`Req::without_length`]), the body's length is added automatically.
#[derive(Debug, Clone)]
pub struct Req {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    auto_length: bool,
}

impl Req {
    pub fn new(method: &str, target: &str) -> Req {
        Req {
            method: method.to_owned(),
            target: target.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
            auto_length: true,
        }
    }

    /// `BITS_POST target` with `BITS-Packet-Type: packet_type`.
    pub fn bits(target: &str, packet_type: &str) -> Req {
        Req::new("BITS_POST", target).header("BITS-Packet-Type", packet_type)
    }

    pub fn ping(target: &str) -> Req {
        Req::bits(target, "Ping")
    }

    pub fn create(target: &str) -> Req {
        Req::bits(target, "Create-Session").header("BITS-Supported-Protocols", PROTOCOL)
    }

    /// A fragment carrying `bytes` as the range `first..first+len` of a `total`-byte file.
    pub fn fragment(target: &str, session: &str, first: u64, total: u64, bytes: &[u8]) -> Req {
        assert!(!bytes.is_empty(), "a fragment cannot be empty");
        let last = first + bytes.len() as u64 - 1;
        Req::bits(target, "Fragment")
            .header("BITS-Session-Id", session)
            .header("Content-Range", &format!("bytes {first}-{last}/{total}"))
            .body(bytes.to_vec())
    }

    pub fn close(target: &str, session: &str) -> Req {
        Req::bits(target, "Close-Session").header("BITS-Session-Id", session)
    }

    pub fn cancel(target: &str, session: &str) -> Req {
        Req::bits(target, "Cancel-Session").header("BITS-Session-Id", session)
    }

    pub fn get(target: &str) -> Req {
        Req::new("GET", target)
    }

    /// The first value of a header this request sends (empty if none), e.g. to name a case.
    pub fn header_value(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or("", |(_, v)| v.as_str())
    }

    pub fn header(mut self, name: &str, value: &str) -> Req {
        if name.eq_ignore_ascii_case("Content-Length") {
            self.auto_length = false;
        }
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Replaces every header of that name (or adds it).
    pub fn set(mut self, name: &str, value: &str) -> Req {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.header(name, value)
    }

    pub fn body(mut self, body: Vec<u8>) -> Req {
        self.body = body;
        self
    }

    /// Sends no `Content-Length` at all.
    pub fn without_length(mut self) -> Req {
        self.auto_length = false;
        self.headers
            .retain(|(n, _)| !n.eq_ignore_ascii_case("Content-Length"));
        self
    }

    /// The request head (request line and headers, ending in the blank line). `Host` is the
    /// server's address unless the request names its own.
    pub fn head_bytes(&self, host: SocketAddr) -> Vec<u8> {
        let mut out = format!("{} {} HTTP/1.1\r\n", self.method, self.target);
        if !self
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("Host"))
        {
            out.push_str(&format!("Host: {host}\r\n"));
        }
        for (name, value) in &self.headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        if self.auto_length {
            out.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        out.push_str("\r\n");
        out.into_bytes()
    }
}

/// A parsed response. Header names keep their wire spelling; look-ups ignore case.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn session_id(&self) -> Option<&str> {
        self.header("BITS-Session-Id")
    }

    /// `BITS-Received-Content-Range` as a number.
    pub fn received(&self) -> Option<u64> {
        self.header("BITS-Received-Content-Range")
            .map(|v| v.parse().expect("BITS-Received-Content-Range is a number"))
    }
}

/// One kept-alive TCP connection.
pub struct Conn {
    pub addr: SocketAddr,
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Conn {
            addr,
            stream,
            buf: Vec::new(),
        }
    }

    /// Sends a request and reads its response.
    pub async fn send(&mut self, req: &Req) -> io::Result<Resp> {
        self.write(req).await?;
        self.read_response(req.method == "HEAD").await
    }

    /// Sends a request and expects a response; panics on transport errors.
    pub async fn ok(&mut self, req: &Req) -> Resp {
        match self.send(req).await {
            Ok(resp) => resp,
            Err(e) => panic!("{} {} got no response: {e}", req.method, req.target),
        }
    }

    /// Writes a whole request (head and body).
    pub async fn write(&mut self, req: &Req) -> io::Result<()> {
        let mut bytes = req.head_bytes(self.addr);
        bytes.extend_from_slice(&req.body);
        self.stream.write_all(&bytes).await
    }

    /// Half-closes the connection: the server sees end-of-stream, replies still arrive.
    pub async fn shutdown_write(&mut self) -> io::Result<()> {
        self.stream.shutdown().await
    }

    /// Writes raw bytes.
    pub async fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await
    }

    async fn fill(&mut self) -> io::Result<usize> {
        // Read straight into the heap buffer: a stack array would bloat every future
        // that awaits a response (debug-build test futures live on the test thread's stack).
        self.buf.reserve(64 * 1024);
        tokio::time::timeout(READ_TIMEOUT, self.stream.read_buf(&mut self.buf))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "response timed out"))?
    }

    /// Reads one response; the body is framed by `Content-Length` (none for HEAD).
    pub async fn read_response(&mut self, head_request: bool) -> io::Result<Resp> {
        let end = loop {
            if let Some(at) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            if self.fill().await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "connection closed before a full response head ({} bytes read)",
                        self.buf.len()
                    ),
                ));
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        if version != "HTTP/1.1" {
            return Err(invalid(format!("bad status line {status_line:?}")));
        }
        let status = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
        let mut headers = Vec::new();
        for line in lines {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| invalid(format!("bad header line {line:?}")))?;
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
        let mut resp = Resp {
            status,
            headers,
            body: Vec::new(),
        };
        if resp
            .header("Transfer-Encoding")
            .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"))
        {
            return Err(invalid(
                "chunked response; Acks must carry Content-Length".into(),
            ));
        }
        let len: usize = match resp.header("Content-Length") {
            Some(v) => v
                .parse()
                .map_err(|_| invalid(format!("bad Content-Length {v:?}")))?,
            None => 0,
        };
        if !head_request {
            while self.buf.len() < len {
                if self.fill().await? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed inside a response body",
                    ));
                }
            }
            resp.body = self.buf.drain(..len).collect();
        }
        Ok(resp)
    }

    /// Reads until the server closes the connection; returns everything it sent.
    pub async fn read_to_close(&mut self) -> Vec<u8> {
        loop {
            match self.fill().await {
                Ok(0) | Err(_) => return std::mem::take(&mut self.buf),
                Ok(_) => {}
            }
        }
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

// ---------------------------------------------------------------------------------------
// BITS conversations
// ---------------------------------------------------------------------------------------

impl Conn {
    /// Create-Session, asserting success; returns the session id.
    pub async fn create(&mut self, target: &str) -> String {
        let ack = self.ok(&Req::create(target)).await;
        assert_eq!(ack.status, 200, "Create-Session {target}: {ack:?}");
        ack.session_id()
            .expect("Create-Session Ack carries BITS-Session-Id")
            .to_owned()
    }

    /// Sends `data[first..first+len]` as one fragment of `data` and returns the Ack.
    pub async fn fragment(
        &mut self,
        target: &str,
        session: &str,
        data: &[u8],
        first: usize,
        len: usize,
    ) -> Resp {
        let end = (first + len).min(data.len());
        let req = Req::fragment(
            target,
            session,
            first as u64,
            data.len() as u64,
            &data[first..end],
        );
        self.ok(&req).await
    }

    /// Sends fragments of `size` bytes from `from`, following the server's
    /// `BITS-Received-Content-Range`, until it reports the whole file. Returns the final Ack.
    pub async fn send_from(
        &mut self,
        target: &str,
        session: &str,
        data: &[u8],
        from: usize,
        size: usize,
    ) -> Resp {
        let mut offset = from;
        loop {
            let ack = self.fragment(target, session, data, offset, size).await;
            assert_eq!(ack.status, 200, "fragment at {offset} of {target}: {ack:?}");
            let next = ack.received().expect("fragment Ack carries an offset") as usize;
            assert!(next > offset, "no progress at {offset} of {target}");
            if next == data.len() {
                return ack;
            }
            offset = next;
        }
    }

    /// Close-Session, asserting success.
    pub async fn close(&mut self, target: &str, session: &str) -> Resp {
        let ack = self.ok(&Req::close(target, session)).await;
        assert_eq!(ack.status, 200, "Close-Session {target}: {ack:?}");
        ack
    }

    /// A whole upload on this connection: Create-Session, fragments of `size` bytes,
    /// Close-Session. Returns the final fragment's Ack.
    pub async fn upload(&mut self, target: &str, data: &[u8], size: usize) -> Resp {
        let session = self.create(target).await;
        let last = self.send_from(target, &session, data, 0, size).await;
        self.close(target, &session).await;
        last
    }
}

// ---------------------------------------------------------------------------------------
// Ack assertions
// ---------------------------------------------------------------------------------------

/// Headers a BITS Ack may carry (Content-Length and BITS-Packet-Type are always checked).
const ACK_HEADERS: [&str; 10] = [
    "BITS-Protocol",
    "BITS-Session-Id",
    "Accept-Encoding",
    "BITS-Host-Id",
    "BITS-Host-Id-Fallback-Timeout",
    "BITS-Received-Content-Range",
    "BITS-Reply-URL",
    "BITS-Error-Code",
    "BITS-Error",
    "BITS-Error-Context",
];

/// Asserts an Ack's status and that exactly the listed optional headers are present, plus
/// `BITS-Packet-Type: Ack` and a single `Content-Length: 0` with an empty body.
#[track_caller]
pub fn assert_ack(ack: &Resp, status: u16, present: &[&str]) {
    assert_ack_in("", ack, status, present);
}

/// [`assert_ack`] for one case of a table: every message starts with the case's name.
#[track_caller]
pub fn assert_ack_in(case: &str, ack: &Resp, status: u16, present: &[&str]) {
    let case = if case.is_empty() {
        String::new()
    } else {
        format!("{case}: ")
    };
    assert_eq!(ack.status, status, "{case}status of {ack:?}");
    assert_eq!(
        ack.all("BITS-Packet-Type"),
        ["Ack"],
        "{case}packet type of {ack:?}"
    );
    assert_eq!(
        ack.all("Content-Length"),
        ["0"],
        "{case}Content-Length of {ack:?}"
    );
    assert!(ack.body.is_empty(), "{case}Ack body must be empty: {ack:?}");
    assert!(ack.header("Transfer-Encoding").is_none(), "{case}{ack:?}");
    for name in ACK_HEADERS {
        let wanted = present.iter().any(|p| p.eq_ignore_ascii_case(name));
        let count = ack.all(name).len();
        assert_eq!(
            count,
            usize::from(wanted),
            "{case}{name} should be {} on {ack:?}",
            if wanted { "present once" } else { "absent" }
        );
    }
    for (name, _) in &ack.headers {
        let lower = name.to_ascii_lowercase();
        if lower.starts_with("bits-") {
            assert!(
                lower == "bits-packet-type"
                    || ACK_HEADERS.iter().any(|h| h.eq_ignore_ascii_case(name)),
                "{case}unexpected header {name} on {ack:?}"
            );
        }
    }
}

/// Asserts a failure Ack: status, `BITS-Error-Code` and context `0x5`, plus exactly the
/// listed other headers.
#[track_caller]
pub fn assert_error(ack: &Resp, status: u16, code: &str, others: &[&str]) {
    assert_error_in("", ack, status, code, others);
}

/// [`assert_error`] for one case of a table: every message starts with the case's name.
#[track_caller]
pub fn assert_error_in(case: &str, ack: &Resp, status: u16, code: &str, others: &[&str]) {
    let mut present = vec!["BITS-Error-Code", "BITS-Error-Context"];
    present.extend_from_slice(others);
    assert_ack_in(case, ack, status, &present);
    assert_eq!(ack.header("BITS-Error-Code"), Some(code), "{case}: {ack:?}");
    assert_eq!(
        ack.header("BITS-Error-Context"),
        Some("0x5"),
        "{case}: {ack:?}"
    );
}

/// Asserts a braced GUID like `{6B1D0C52-2F7A-4E0B-9C1E-5A3D2B7F9E01}`.
#[track_caller]
pub fn assert_braced_guid(value: &str) {
    let bytes = value.as_bytes();
    let ok = bytes.len() == 38
        && bytes[0] == b'{'
        && bytes[37] == b'}'
        && value[1..37].char_indices().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        });
    assert!(ok, "not a braced GUID: {value:?}");
}
