//! What the benchmarks share: how many rounds, whether this is a smoke run, the median, and
//! a raw HTTP/1.1 client whose cost is the same for every contender.

#![allow(dead_code)]

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// A connection's byte stream: TCP, or TLS over TCP.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Stream for S {}

/// `BENCH_ROUNDS`, or `default`.
pub fn rounds(default: usize) -> Result<usize, String> {
    match std::env::var("BENCH_ROUNDS") {
        Ok(v) => v
            .parse::<usize>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("BENCH_ROUNDS must be a positive integer, got {v:?}")),
        Err(_) => Ok(default),
    }
}

/// `cargo bench` passes `--bench`; `cargo test --benches` (or `--all-targets`) runs a bench
/// unoptimized and without it: then one small round shows it still works, and no verdict.
pub fn smoke() -> bool {
    !std::env::args().any(|a| a == "--bench")
}

pub fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    if n % 2 == 1 {
        samples[n / 2]
    } else {
        (samples[n / 2 - 1] + samples[n / 2]) / 2.0
    }
}

/// A raw HTTP/1.1 client on one keep-alive connection: the same cost for every contender.
pub struct Client {
    stream: Box<dyn Stream>,
    host: String,
    /// Bytes read past the end of the previous response.
    pending: Vec<u8>,
}

pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> io::Result<Client> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream: Box::new(stream),
            host: addr.to_string(),
            pending: Vec::with_capacity(4096),
        })
    }

    /// The same over TLS (the handshake included), trusting only the CA in `ca_pem`.
    pub async fn connect_tls(
        addr: SocketAddr,
        tls: &tokio_rustls::TlsConnector,
    ) -> io::Result<Client> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let name = rustls::pki_types::ServerName::from(addr.ip());
        let stream = tls.connect(name, stream).await?;
        Ok(Client {
            stream: Box::new(stream),
            host: addr.to_string(),
            pending: Vec::with_capacity(4096),
        })
    }

    /// Sends one `BITS_POST` with `body` and reads the whole response.
    pub async fn send(
        &mut self,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Answer> {
        let mut head = format!(
            "BITS_POST {target} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n",
            self.host,
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        self.stream.write_all(head.as_bytes()).await?;
        self.stream.write_all(body).await?;
        // TLS keeps what the socket did not take yet in its own buffer until flushed.
        self.stream.flush().await?;
        self.read_answer().await
    }

    /// Sends one `BITS_POST` whose body is `chunk` repeated to `len` bytes (a body far larger
    /// than the client wants to hold), and reads the response.
    pub async fn send_repeated(
        &mut self,
        target: &str,
        headers: &[(&str, &str)],
        len: u64,
        chunk: &[u8],
    ) -> io::Result<Answer> {
        let mut head = format!(
            "BITS_POST {target} HTTP/1.1\r\nHost: {}\r\nContent-Length: {len}\r\n",
            self.host
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        self.stream.write_all(head.as_bytes()).await?;
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            self.stream.write_all(&chunk[..n]).await?;
            left -= n as u64;
        }
        self.read_answer().await
    }

    async fn read_answer(&mut self) -> io::Result<Answer> {
        let end = loop {
            if let Some(at) = self.pending.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before a response",
                ));
            }
            self.pending.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&self.pending[..end]).into_owned();
        self.pending.drain(..end);
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| io::Error::other(format!("bad status line in {head:?}")))?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let length = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(0);
        while self.pending.len() < length {
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed inside a response body",
                ));
            }
            self.pending.extend_from_slice(&chunk[..n]);
        }
        self.pending.drain(..length);
        Ok(Answer { status, headers })
    }
}

/// A TLS client trusting only the CA certificate(s) in the PEM file at `ca`.
pub fn tls_connector(ca: &std::path::Path) -> io::Result<tokio_rustls::TlsConnector> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca).map_err(io::Error::other)? {
        roots
            .add(cert.map_err(io::Error::other)?)
            .map_err(io::Error::other)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

impl Answer {
    pub fn expect_ok(self, what: &str) -> io::Result<Answer> {
        if self.status == 200 {
            Ok(self)
        } else {
            Err(io::Error::other(format!(
                "{what}: status {} with headers {:?}",
                self.status, self.headers
            )))
        }
    }

    pub fn header(&self, name: &str) -> io::Result<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .ok_or_else(|| io::Error::other(format!("response has no {name} header")))
    }
}

/// Clock ticks per second of `/proc/*/stat` times (`getconf CLK_TCK`, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU time (user + system) so far of this process' threads whose names start with one of
/// `prefixes` (the server runtime's workers and blocking pool are named `server…`, the log
/// writer `bitsmock-log`), so a bench can tell the server's CPU from its load generator's.
pub fn server_cpu_seconds(prefixes: &[&str]) -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    let mut ticks = 0u64;
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state …`: comm may hold spaces, so split after the last ')'.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let comm = head.split_once('(').map_or("", |(_, c)| c);
        if !prefixes.iter().any(|p| comm.starts_with(p)) {
            continue;
        }
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of stat; `rest` starts at field 3.
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
        ticks += field(14).unwrap_or(0) + field(15).unwrap_or(0);
    }
    ticks as f64 / TICKS_PER_SECOND
}
