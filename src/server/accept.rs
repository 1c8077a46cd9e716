//! Accepting connections: one loop for TCP, the same connection setup for any byte stream.

use super::socket::{Control, FaultIo};
use super::{Server, lock};
use crate::config::ServerHeader;
use crate::fault::ConnAuth;
use crate::journal::What;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// How long in-flight requests get to finish after shutdown is requested.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// One accepted connection, as its requests see it.
pub(super) struct Conn {
    /// 1, 2, … in accept order.
    pub id: u64,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub control: Arc<Control>,
    pub auth: Mutex<ConnAuth>,
}

impl Server {
    /// Accepts connections until `shutdown` resolves, then lets in-flight requests finish
    /// (for a few seconds at most).
    pub async fn run(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let sweeper = tokio::spawn(Arc::clone(&self).sweep());
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                (stream, peer) = accept(&listener, "upload") => {
                    let id = self.connections.fetch_add(1, Ordering::Relaxed) + 1;
                    let refused = lock(&self.state).faults.refuse(self.started.elapsed());
                    if let Some(fault) = refused {
                        self.emit(What::Refused { conn: id, peer, fault });
                        drop(stream);
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    let local = stream.local_addr().unwrap_or(peer);
                    let conn = Conn::new(id, peer, local);
                    let stream = FaultIo::new(stream, Arc::clone(&conn.control));
                    let served = graceful.watch(self.connection(stream, conn));
                    let server = Arc::clone(&self);
                    server.open_connections.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(async move {
                        if let Err(e) = served.await {
                            tracing::debug!(%peer, error = %e, "connection ended");
                        }
                        server.open_connections.fetch_sub(1, Ordering::Relaxed);
                    });
                }
                () = &mut shutdown => break,
                () = self.stopping.notified() => break,
            }
        }
        drop(listener);
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
        self.connection(io, Conn::new(id, nowhere, nowhere)).await
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
                let mut response = server.handle(req, conn).await?;
                server_headers(kind, response.headers_mut());
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

/// The next connection. An accept error (running out of file descriptors, say) must not end
/// a listener: it is logged, and accepting resumes after a short pause.
pub(crate) async fn accept(listener: &TcpListener, what: &str) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(pair) => return pair,
            Err(e) => {
                tracing::warn!(listener = what, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

impl Conn {
    fn new(id: u64, peer: SocketAddr, local: SocketAddr) -> Conn {
        Conn {
            id,
            peer,
            local,
            control: Arc::new(Control::default()),
            auth: Mutex::default(),
        }
    }
}
