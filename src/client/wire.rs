//! The wire: HTTP/1.1 plumbing for the reference client: hyper 1's client connection over a tokio
//! `TcpStream` (or rustls over it, for `https://`), request bodies streamed from the source
//! file, and every wait bounded.
//!
//! Nothing here knows BITS beyond the method name; the uploader builds the headers and reads
//! the answers.

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::io::{self, Read, Seek};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// File bytes read per chunk of a fragment body.
const CHUNK: usize = 256 * 1024;
/// Chunks read ahead of the socket.
const READ_AHEAD: usize = 4;
/// Largest Ack body read (Acks should have none); more drops the connection.
const MAX_ACK_BODY: usize = 64 * 1024;

/// The `BITS_POST` method.
pub fn bits_post() -> Method {
    Method::from_bytes(b"BITS_POST").unwrap_or(Method::POST)
}

/// Where requests go: a host name or address, and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or IP literal, without IPv6 brackets.
    pub host: String,
    pub port: u16,
    /// `https`: TLS first, and the certificate must be valid for `host`.
    pub tls: bool,
}

impl Endpoint {
    /// The `Host` header value: `host[:port]`, IPv6 literals bracketed.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == self.default_port() {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    pub fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }

    fn default_port(&self) -> u16 {
        if self.tls { 443 } else { 80 }
    }
}

/// An `http://` URL split into where to connect and what to ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub endpoint: Endpoint,
    /// Path and query, the request-target of every request.
    pub path: String,
}

impl Target {
    pub fn url(&self) -> String {
        format!(
            "{}://{}{}",
            self.endpoint.scheme(),
            self.endpoint.authority(),
            self.path
        )
    }
}

/// Parses an absolute `http://` or `https://` URL.
pub fn parse_url(url: &str) -> Result<Target, String> {
    let uri: http::Uri = url
        .trim()
        .parse()
        .map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => {
            return Err(format!(
                "`{url}` is not an absolute http:// or https:// URL"
            ));
        }
    };
    let host = uri
        .host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("`{url}` has no host"))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let path = uri
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|p| p.starts_with('/'))
        .unwrap_or("/")
        .to_owned();
    Ok(Target {
        endpoint: Endpoint {
            host,
            port: uri.port_u16().unwrap_or(if tls { 443 } else { 80 }),
            tls,
        },
        path,
    })
}

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("cannot connect to {0}: {1}")]
    Connect(String, String),
    /// The TLS handshake failed on the server's certificate: no retry can fix that.
    #[error("TLS with {host}: the server's certificate is {problem}")]
    Certificate { host: String, problem: CertProblem },
    #[error("connection lost: {0}")]
    Transport(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// A request body: nothing, or a byte range of a file read from disk as it is sent.
pub enum ReqBody {
    Empty,
    File {
        chunks: mpsc::Receiver<io::Result<Bytes>>,
        left: u64,
    },
}

impl ReqBody {
    /// Streams `len` bytes of `path` from offset `at`: a blocking task reads chunks a few
    /// ahead of the socket, so the whole file (or fragment) is never in memory.
    pub fn file(path: PathBuf, at: u64, len: u64) -> ReqBody {
        let (tx, rx) = mpsc::channel(READ_AHEAD);
        tokio::task::spawn_blocking(move || {
            let read = |tx: &mpsc::Sender<io::Result<Bytes>>| -> io::Result<()> {
                let mut file = std::fs::File::open(&path)?;
                file.seek(io::SeekFrom::Start(at))?;
                let mut left = len;
                while left > 0 {
                    let n = left.min(CHUNK as u64) as usize;
                    // read_to_end fills spare capacity: no zeroing of a buffer about to be
                    // overwritten (it showed up in profiles at bench throughput).
                    let mut buf = Vec::with_capacity(n);
                    (&mut file).take(n as u64).read_to_end(&mut buf)?;
                    if buf.len() < n {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the source file ended early",
                        ));
                    }
                    left -= n as u64;
                    if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                        // The request was abandoned; stop reading.
                        return Ok(());
                    }
                }
                Ok(())
            };
            if let Err(e) = read(&tx) {
                let _ = tx.blocking_send(Err(e));
            }
        });
        ReqBody::File {
            chunks: rx,
            left: len,
        }
    }

    fn len(&self) -> u64 {
        match self {
            ReqBody::Empty => 0,
            ReqBody::File { left, .. } => *left,
        }
    }
}

impl Body for ReqBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            ReqBody::Empty => Poll::Ready(None),
            ReqBody::File { left: 0, .. } => Poll::Ready(None),
            ReqBody::File { chunks, left } => match chunks.poll_recv(cx) {
                Poll::Ready(Some(Ok(mut chunk))) => {
                    chunk.truncate(chunk.len().min(*left as usize));
                    *left -= chunk.len() as u64;
                    Poll::Ready(Some(Ok(Frame::data(chunk))))
                }
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
                Poll::Ready(None) => Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the source file ended early",
                )))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.len() == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len())
    }
}

/// An answered request: status and headers (Acks have no body worth keeping).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    /// From sending the request line to the end of the answer.
    pub latency: Duration,
}

impl Answer {
    /// The first value of a header, if it is visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The first value of a header as bytes.
    pub fn raw(&self, name: &str) -> Option<&[u8]> {
        self.headers.get(name).map(|v| v.as_bytes())
    }

    /// `BITS-Error-Code` (or the spec's `BITS-Error`), parsed.
    pub fn code(&self) -> Option<u32> {
        self.header("BITS-Error-Code")
            .or_else(|| self.header("BITS-Error"))
            .and_then(crate::proto::error::parse_code)
    }

    /// `BITS-Error-Context`, parsed.
    pub fn context(&self) -> Option<u32> {
        self.header("BITS-Error-Context")
            .and_then(crate::proto::error::parse_code)
    }
}

/// What is wrong with a server's certificate, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CertProblem {
    Expired,
    NotYetValid,
    /// Valid, but not for the host name the client asked for.
    WrongHost,
    /// Not issued by a CA the client trusts (self-signed, or an unknown CA).
    UnknownIssuer,
    /// Its key usage or extended key usage does not allow TLS server authentication.
    BadUsage,
    Revoked,
    /// Any other reason rustls gives (bad signature, bad encoding, …).
    Invalid,
}

impl CertProblem {
    pub fn as_str(self) -> &'static str {
        match self {
            CertProblem::Expired => "expired",
            CertProblem::NotYetValid => "not yet valid",
            CertProblem::WrongHost => "for another host name",
            CertProblem::UnknownIssuer => "not issued by a trusted CA (self-signed or unknown CA)",
            CertProblem::BadUsage => "not usable for TLS server authentication (key usage)",
            CertProblem::Revoked => "revoked",
            CertProblem::Invalid => "invalid",
        }
    }

    fn of(e: &rustls::CertificateError) -> CertProblem {
        use rustls::CertificateError as E;
        match e {
            E::Expired | E::ExpiredContext { .. } => CertProblem::Expired,
            E::NotValidYet | E::NotValidYetContext { .. } => CertProblem::NotYetValid,
            E::NotValidForName | E::NotValidForNameContext { .. } => CertProblem::WrongHost,
            E::UnknownIssuer => CertProblem::UnknownIssuer,
            E::InvalidPurpose | E::InvalidPurposeContext { .. } => CertProblem::BadUsage,
            E::Revoked => CertProblem::Revoked,
            _ => CertProblem::Invalid,
        }
    }
}

impl std::fmt::Display for CertProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whom the client trusts for `https://` (`--ca-cert`, `--insecure`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Trust {
    /// The operating system's trusted CAs.
    #[default]
    System,
    /// Only the CAs in this PEM file (e.g. the `ca.pem` that `bitsmock serve --tls` writes).
    Ca(PathBuf),
    /// Any certificate at all: for trying a server whose certificate is known to be bad.
    Insecure,
}

/// The rustls client configuration for a [`Trust`]. Errors name the file.
pub fn tls_config(trust: &Trust) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let mut roots = rustls::RootCertStore::empty();
    let builder = match trust {
        Trust::System => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            builder.with_root_certificates(roots)
        }
        Trust::Ca(path) => {
            use rustls::pki_types::pem::PemObject;
            let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("--ca-cert {}: {e}", path.display()))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!(
                    "--ca-cert {}: no certificate in it",
                    path.display()
                ));
            }
            builder.with_root_certificates(roots)
        }
        Trust::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider))),
    };
    let mut config = builder.with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// `--insecure`: accepts every certificate, but still checks the handshake's signatures.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// One kept-alive HTTP/1.1 connection.
pub struct Conn {
    sender: http1::SendRequest<ReqBody>,
    pub endpoint: Endpoint,
}

impl Conn {
    /// Connects (trying every address the host resolves to), does the TLS handshake for an
    /// `https` endpoint (with `tls`), and starts the HTTP/1.1 driver.
    pub async fn open(
        endpoint: &Endpoint,
        timeout: Duration,
        tls: Option<&Arc<rustls::ClientConfig>>,
    ) -> Result<Conn, Failure> {
        let connect = async {
            let stream =
                tokio::net::TcpStream::connect((endpoint.host.as_str(), endpoint.port)).await?;
            let _ = stream.set_nodelay(true);
            if !endpoint.tls {
                return handshake(stream).await;
            }
            let config = tls.ok_or_else(|| {
                io::Error::other("an https URL, but the upload was started for http")
            })?;
            let name = rustls::pki_types::ServerName::try_from(endpoint.host.clone())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let stream = tokio_rustls::TlsConnector::from(Arc::clone(config))
                .connect(name, stream)
                .await?;
            handshake(stream).await
        };
        let sender = match tokio::time::timeout(timeout, connect).await {
            Ok(Ok(sender)) => sender,
            Ok(Err(e)) => {
                return Err(match certificate_problem(&e) {
                    Some(problem) => Failure::Certificate {
                        host: endpoint.authority(),
                        problem,
                    },
                    None => Failure::Connect(endpoint.authority(), e.to_string()),
                });
            }
            Err(_) => {
                return Err(Failure::Connect(
                    endpoint.authority(),
                    format!("timed out after {timeout:?}"),
                ));
            }
        };
        Ok(Conn {
            sender,
            endpoint: endpoint.clone(),
        })
    }

    /// Whether the connection can carry another request.
    pub fn usable(&self) -> bool {
        !self.sender.is_closed()
    }

    /// Sends a request and waits for the response head, all before `deadline`.
    pub async fn send(
        &mut self,
        request: Request<ReqBody>,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Response<Incoming>, Failure> {
        let exchange = async {
            self.sender.ready().await.map_err(transport)?;
            self.sender.send_request(request).await.map_err(transport)
        };
        match tokio::time::timeout_at(deadline, exchange).await {
            Ok(result) => result,
            Err(_) => Err(Failure::Timeout(timeout)),
        }
    }
}

/// Starts hyper's HTTP/1.1 client on a connected stream; its driver runs in a task.
async fn handshake<S>(stream: S) -> io::Result<http1::SendRequest<ReqBody>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, driver) = http1::Builder::new()
        .handshake::<_, ReqBody>(TokioIo::new(stream))
        .await
        .map_err(io::Error::other)?;
    tokio::spawn(async move {
        if let Err(e) = driver.await {
            tracing::debug!(error = %e, "client connection ended");
        }
    });
    Ok(sender)
}

/// The certificate problem behind a failed TLS handshake, if that is what failed.
fn certificate_problem(e: &io::Error) -> Option<CertProblem> {
    match e.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::InvalidCertificate(c) => Some(CertProblem::of(c)),
        _ => None,
    }
}

/// Reads and discards an Ack's body (normally empty), before `deadline`.
pub async fn finish_ack(
    response: Response<Incoming>,
    deadline: Instant,
    timeout: Duration,
) -> Result<(u16, HeaderMap), Failure> {
    let (parts, mut body) = response.into_parts();
    let drain = async {
        let mut seen = 0usize;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(transport)?;
            seen += frame.data_ref().map_or(0, |d| d.len());
            if seen > MAX_ACK_BODY {
                return Err(Failure::Transport(format!(
                    "the Ack carries a body of more than {MAX_ACK_BODY} bytes"
                )));
            }
        }
        Ok(())
    };
    match tokio::time::timeout_at(deadline, drain).await {
        Ok(Ok(())) => Ok((parts.status.as_u16(), parts.headers)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(Failure::Timeout(timeout)),
    }
}

/// Describes a hyper error with its causes ("connection closed before message completed").
pub fn transport(e: impl std::error::Error) -> Failure {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    Failure::Transport(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_endpoint_and_target() {
        let t = parse_url("http://example.test:8080/drop/a.bin?x=1").unwrap();
        assert_eq!(t.endpoint.host, "example.test");
        assert_eq!(t.endpoint.port, 8080);
        assert_eq!(t.path, "/drop/a.bin?x=1");
        assert_eq!(t.url(), "http://example.test:8080/drop/a.bin?x=1");
        let t = parse_url("http://[::1]/a").unwrap();
        assert_eq!(t.endpoint.host, "::1");
        assert_eq!(t.endpoint.authority(), "[::1]");
        assert_eq!(parse_url("http://h").unwrap().path, "/");
        let t = parse_url("https://h/a").unwrap();
        assert!(t.endpoint.tls);
        assert_eq!(t.endpoint.port, 443);
        assert_eq!(t.url(), "https://h/a");
        assert_eq!(
            parse_url("https://h:8443/a").unwrap().url(),
            "https://h:8443/a"
        );
        assert!(parse_url("/relative").is_err());
        assert!(parse_url("ftp://h/a").is_err());
    }
}
