//! Accepting connections: one loop over every listener (HTTP and HTTPS), the TLS handshake,
//! and the same connection setup for any byte stream.

use super::socket::{Control, FaultIo};
use super::{Server, lock};
use crate::config::ServerHeader;
use crate::fault::{ConnAuth, Down, TlsFault};
use crate::journal::What;
use crate::proto::Place;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::Watcher;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// How long in-flight requests get to finish after shutdown is requested.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// One accepted connection, as its requests see it.
pub(super) struct Conn {
    /// 1, 2, … in accept order.
    pub id: u64,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// What the listener it came in on speaks: reply URLs use the same scheme.
    pub scheme: Scheme,
    /// The front URL or the farm member it came in on.
    pub place: Place,
    pub control: Arc<Control>,
    pub auth: Mutex<ConnAuth>,
}

/// What an accepted connection speaks, and for TLS, how a fault makes it misbehave.
enum Transport {
    Plain,
    Tls(Option<TlsFault>),
}

/// A bound listener, the scheme it speaks and whether it is the front URL or a farm member.
pub struct Listener {
    pub tcp: TcpListener,
    pub scheme: Scheme,
    pub place: Place,
}

/// What a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    /// TLS with the server's identity, then HTTP.
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

impl Listener {
    pub fn http(tcp: TcpListener) -> Listener {
        Listener {
            tcp,
            scheme: Scheme::Http,
            place: Place::Front,
        }
    }

    pub fn https(tcp: TcpListener) -> Listener {
        Listener {
            tcp,
            scheme: Scheme::Https,
            place: Place::Front,
        }
    }

    /// The same listener as farm member `member` (1-based).
    pub fn member(self, member: u32) -> Listener {
        Listener {
            place: Place::Member(member),
            ..self
        }
    }
}

impl Server {
    /// Accepts connections on one plain HTTP listener until `shutdown` resolves; see
    /// [`Server::serve`].
    pub async fn run(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        self.serve(vec![Listener::http(listener)], shutdown).await
    }

    /// Accepts connections on every listener until `shutdown` resolves, then lets in-flight
    /// requests finish (for a few seconds at most). An HTTPS listener needs the TLS identity
    /// that [`Config::tls`](crate::Config::tls) asks for.
    pub async fn serve(
        self: Arc<Self>,
        listeners: Vec<Listener>,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        if self.tls.is_none() && listeners.iter().any(|l| l.scheme == Scheme::Https) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an HTTPS listener needs a TLS certificate (Config::tls)",
            ));
        }
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let sweeper = tokio::spawn(Arc::clone(&self).sweep());
        let tcp: Vec<&TcpListener> = listeners.iter().map(|l| &l.tcp).collect();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                (index, stream, peer) = accept(&tcp, "upload") => {
                    let id = self.connections.fetch_add(1, Ordering::Relaxed) + 1;
                    let refused = lock(&self.state).faults.refuse(id, self.started.elapsed());
                    if let Some(fault) = refused {
                        self.emit(What::Refused { conn: id, peer, fault });
                        drop(stream);
                        continue;
                    }
                    let Listener { scheme, place, .. } = listeners[index];
                    if let Place::Member(member) = place
                        && let Some((fault, how)) = lock(&self.state).faults.member_down(member, id, self.started.elapsed())
                    {
                        self.emit(What::Refused { conn: id, peer, fault });
                        if how == Down::Blackhole {
                            // Accepted and never read: the client waits for an answer.
                            let hold = self.config.header_read_timeout;
                            tokio::spawn(async move {
                                tokio::time::sleep(hold).await;
                                drop(stream);
                            });
                        }
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    let local = stream.local_addr().unwrap_or(peer);
                    let conn = Conn::new(id, peer, local, scheme, place);
                    let transport = match scheme {
                        Scheme::Http => Transport::Plain,
                        Scheme::Https => Transport::Tls(self.tls_fault(id, peer)),
                    };
                    let watcher = graceful.watcher();
                    let server = Arc::clone(&self);
                    server.open_connections.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(async move {
                        server.open(stream, conn, transport, watcher).await;
                        server.open_connections.fetch_sub(1, Ordering::Relaxed);
                    });
                }
                () = &mut shutdown => break,
                () = self.stopping.notified() => break,
            }
        }
        drop(tcp);
        drop(listeners);
        sweeper.abort();
        // An aborted task drops its future later; wait, so nothing touches the root after this.
        let _ = sweeper.await;
        if tokio::time::timeout(DRAIN_GRACE, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("shutdown grace period over; dropping open connections");
        }
        self.stopped();
        // The root is free for the next server as soon as this one returns, not whenever the
        // last connection task happens to drop its handle on the server.
        self.store.release();
        Ok(())
    }

    /// How connection `conn`'s TLS misbehaves, if a `tls` rule fires; recorded at once.
    fn tls_fault(&self, conn: u64, peer: SocketAddr) -> Option<TlsFault> {
        let decided = lock(&self.state).faults.tls(conn, self.started.elapsed());
        decided.map(|(fault, tls)| {
            self.emit(What::TlsFault { conn, peer, fault });
            tls
        })
    }

    /// Serves one accepted connection: the TLS handshake first on an HTTPS listener (bounded
    /// by the header timeout, so a silent client cannot hold it open), then HTTP.
    async fn open(
        self: &Arc<Self>,
        stream: TcpStream,
        conn: Conn,
        transport: Transport,
        watcher: Watcher,
    ) {
        let peer = conn.peer;
        let control = Arc::clone(&conn.control);
        let fault = match transport {
            Transport::Plain => {
                let io = FaultIo::new(stream, control);
                if let Err(e) = watcher.watch(self.connection(io, conn)).await {
                    tracing::debug!(%peer, error = %e, "connection ended");
                }
                return;
            }
            Transport::Tls(fault) => fault,
        };
        let Some(identity) = &self.tls else {
            return;
        };
        let config = match fault {
            Some(TlsFault::HandshakeStall(hang)) => {
                // Accepted, then silence: the client's handshake timeout must fire.
                tokio::time::sleep(hang).await;
                return;
            }
            Some(TlsFault::HandshakeReset) => {
                // Wait for the ClientHello, then RST instead of a ServerHello.
                let hello = stream.readable();
                let _ = tokio::time::timeout(self.config.header_read_timeout, hello).await;
                let _ = stream.set_zero_linger();
                return;
            }
            Some(TlsFault::Cert(bad)) => identity.bad(bad),
            Some(TlsFault::CloseNoNotify) => {
                conn.control.close_without_notify();
                Arc::clone(&identity.config)
            }
            None => Arc::clone(&identity.config),
        };
        // rustls reads the socket 4 KiB at a time: below it, a buffer turns those into
        // reads of up to TLS_READ_BUFFER bytes, four times fewer system calls per record
        // of an upload (benches/upload.rs).
        let buffered = tokio::io::BufReader::with_capacity(TLS_READ_BUFFER, stream);
        let handshake = TlsAcceptor::from(config).accept(buffered);
        let stream = match tokio::time::timeout(self.config.header_read_timeout, handshake).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        };
        let io = FaultIo::new(stream, control);
        if let Err(e) = watcher.watch(self.connection(io, conn)).await {
            tracing::debug!(%peer, error = %e, "connection ended");
        }
    }

    /// Serves one already-open connection over any byte stream — an in-memory duplex in the
    /// `connection` fuzz target — with the same HTTP settings and request pipeline as
    /// [`Server::run`]. Refusals, resets, broken responses and write throttling act on the
    /// socket that `run` wraps, so here they do nothing; every other fault applies.
    pub async fn serve_io<I>(self: &Arc<Self>, io: I) -> Result<(), hyper::Error>
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let nowhere = SocketAddr::from(([127, 0, 0, 1], 0));
        let id = self.connections.fetch_add(1, Ordering::Relaxed) + 1;
        self.connection(
            io,
            Conn::new(id, nowhere, nowhere, Scheme::Http, Place::Front),
        )
        .await
    }

    /// One HTTP/1.1 connection with keep-alive, the server's limits and the pipeline.
    fn connection<I>(
        self: &Arc<Self>,
        io: I,
        conn: Conn,
    ) -> http1::Connection<
        TokioIo<I>,
        impl hyper::service::HttpService<
            hyper::body::Incoming,
            ResBody = http_body_util::Full<bytes::Bytes>,
            Error = super::execute::Dropped,
            Future: Send,
        > + use<I>,
    >
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let server = Arc::clone(self);
        let conn = Arc::new(conn);
        let service = service_fn(move |req| {
            let server = Arc::clone(&server);
            let conn = Arc::clone(&conn);
            async move {
                let kind = server.config.server_header;
                let head_only = req.method() == http::Method::HEAD;
                let mut response = server.handle(req, conn.clone()).await?;
                server_headers(kind, response.headers_mut());
                let body = hyper::body::Body::size_hint(response.body())
                    .exact()
                    .unwrap_or(0);
                conn.control.expect_body(if head_only { 0 } else { body });
                Ok::<_, super::execute::Dropped>(response)
            }
        });
        http1::Builder::new()
            // Title case, then IIS's spelling of the BITS names (`casing`, in `FaultIo`).
            .title_case_headers(true)
            .timer(TokioTimer::new())
            .header_read_timeout(self.config.header_read_timeout)
            .max_buf_size(self.config.max_head_bytes.max(8192))
            .keep_alive(true)
            .serve_connection(TokioIo::new(io), service)
    }
}

/// The socket reads under TLS (see [`Server::open`]): a few TLS records' worth.
const TLS_READ_BUFFER: usize = 64 * 1024;

/// The `Server` and `Pragma` headers of every answer (`--server-header`).
fn server_headers(kind: ServerHeader, headers: &mut http::HeaderMap) {
    use http::{HeaderValue, header};
    let server = match kind {
        ServerHeader::Iis => {
            headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            HeaderValue::from_static("Microsoft-IIS/10.0")
        }
        ServerHeader::Bitsmock => {
            HeaderValue::from_static(concat!("bitsmock/", env!("CARGO_PKG_VERSION")))
        }
        ServerHeader::Omitted => return,
    };
    headers.insert(header::SERVER, server);
}

/// The next connection on any of `listeners`, with the index of the one it came in on. An
/// accept error (running out of file descriptors, say) must not end a listener: it is
/// logged, and accepting resumes after a short pause.
pub(crate) async fn accept(
    listeners: &[&TcpListener],
    what: &str,
) -> (usize, TcpStream, SocketAddr) {
    loop {
        let (index, accepted) = std::future::poll_fn(|cx| {
            listeners
                .iter()
                .enumerate()
                .find_map(|(i, l)| match l.poll_accept(cx) {
                    std::task::Poll::Ready(r) => Some(std::task::Poll::Ready((i, r))),
                    std::task::Poll::Pending => None,
                })
                .unwrap_or(std::task::Poll::Pending)
        })
        .await;
        match accepted {
            Ok((stream, peer)) => return (index, stream, peer),
            Err(e) => {
                tracing::warn!(listener = what, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

impl Conn {
    fn new(id: u64, peer: SocketAddr, local: SocketAddr, scheme: Scheme, place: Place) -> Conn {
        Conn {
            id,
            peer,
            local,
            scheme,
            place,
            control: Arc::new(Control::default()),
            auth: Mutex::default(),
        }
    }
}
