//! The HTTP control API (docs/admin-api.md): steering a running server and reading what
//! happened, from tests in any language, on a listener of its own.
//!
//! ```text
//!  socket ─▶ serve (hyper) ─▶ authorize ─▶ body (≤ 1 MiB) ─▶ routes::route (pure) ─▶ execute::run ─▶ Server
//!                                     └──────────── Reply (status, JSON or text) ◀──────────────────┘
//! ```
//!
//! - `routes`: method, path, query and body → a validated [`Command`], or an [`AdminError`]
//!   naming its 4xx. Pure, so the `admin` fuzz target drives it directly.
//! - `execute`: the one place a [`Command`] touches the [`Server`] (its control surface).
//! - `metrics`: the Prometheus text exposition.
//!
//! Its own listener keeps steering apart from the upload port: a fault that refuses, resets
//! or hangs upload connections never touches the control API, and the upload port serves
//! nothing but BITS.

mod execute;
pub mod metrics;
pub mod routes;

pub use routes::{AdminError, Command, Raw, Reply, authorize, route};

use crate::Server;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Longest wait for a request head, and for a body once its head is in.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long open control requests get to finish after shutdown (long-polls end at once).
const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// Serves the control API on `listener` until `shutdown` resolves. `token`: the bearer token
/// every request must carry; without one only loopback peers are served.
pub async fn serve(
    server: Arc<Server>,
    listener: TcpListener,
    token: Option<String>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let (closing, closed) = watch::channel(false);
    let token: Option<Arc<str>> = token.map(Arc::from);
    tokio::pin!(shutdown);
    let listeners = [&listener];
    loop {
        tokio::select! {
            (_, stream, peer) = crate::server::accept(&listeners, "admin") => {
                let _ = stream.set_nodelay(true);
                let server = Arc::clone(&server);
                let token = token.clone();
                let closed = closed.clone();
                let service = service_fn(move |req| {
                    let server = Arc::clone(&server);
                    let token = token.clone();
                    let mut closed = closed.clone();
                    async move {
                        let reply = answer(&server, req, peer, token.as_deref(), &mut closed)
                            .await
                            .unwrap_or_else(|e| Reply::error(&e));
                        Ok::<_, Infallible>(to_response(reply))
                    }
                });
                let connection = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(READ_TIMEOUT)
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service);
                let served = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(e) = served.await {
                        tracing::debug!(%peer, error = %e, "admin connection ended");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = closing.send(true);
    if tokio::time::timeout(DRAIN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("admin grace period over; dropping open connections");
    }
    Ok(())
}

/// One request: who asks, the body, the route, the command.
async fn answer(
    server: &Server,
    req: Request<hyper::body::Incoming>,
    peer: SocketAddr,
    token: Option<&str>,
    closed: &mut watch::Receiver<bool>,
) -> Result<Reply, AdminError> {
    let (parts, body) = req.into_parts();
    authorize(
        peer.ip(),
        token,
        parts
            .headers
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes()),
        parts.headers.contains_key(header::ORIGIN),
    )?;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > routes::MAX_BODY as u64) {
        return Err(AdminError::TooLarge);
    }
    let body = tokio::time::timeout(READ_TIMEOUT, Limited::new(body, routes::MAX_BODY).collect())
        .await
        .map_err(|_| AdminError::Timeout)?
        .map_err(|e| {
            if e.downcast_ref::<LengthLimitError>().is_some() {
                AdminError::TooLarge
            } else {
                AdminError::BadRequest {
                    message: format!("the body could not be read: {e}"),
                    line: None,
                }
            }
        })?
        .to_bytes();
    let raw = Raw {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        content_type: parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        body: &body,
    };
    let command = route(&raw)?;
    tracing::debug!(%peer, method = raw.method, path = raw.path, "admin request");
    execute::run(server, command, closed).await
}

fn to_response(reply: Reply) -> Response<Full<Bytes>> {
    let mut builder = Response::builder()
        .status(reply.status)
        .header(header::CONTENT_TYPE, reply.content_type)
        .header(header::CACHE_CONTROL, "no-store");
    for (name, value) in &reply.headers {
        builder = builder.header(*name, value.as_str());
    }
    builder
        .body(Full::new(Bytes::from(reply.body)))
        .unwrap_or_else(|e| {
            // Every status and header here is built by this module; this is a bug, said so.
            tracing::error!(error = %e, "admin reply could not be built");
            let mut response = Response::new(Full::new(Bytes::from_static(
                b"{\"error\": \"internal error\"}",
            )));
            *response.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
            response
        })
}
