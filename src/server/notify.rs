//! The application leg (docs/protocol.md §8): an HTTP/1.1 POST to the notified server
//! application when an upload-reply job's last byte arrived, before its final Fragment Ack.
//!
//! By value the upload streams from the temp file as the request body and the response
//! body streams into the reply file, never whole in memory. By reference only paths travel
//! and the application writes the reply file itself. Either way the reply is served from
//! that file by the reply URL's ranged GETs (`reply_http`). The caller holds the session's
//! entry lock, so one session is never notified twice at once: a second request for it
//! waits for this one's outcome.

use super::sessions::{Entry, Follow, Reply, ReplyBody};
use super::{Server, lock};
use crate::fault::{Firing, NotifyFault};
use crate::journal::{SessionRef, What};
use crate::notify::{Answer, Application, Failure, Mode, interpret, request_headers};
use crate::proto::{Ack, Notified, SessionId};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::SystemTime;
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;

/// Bytes read from the temp file per body frame.
const CHUNK: usize = 256 * 1024;

/// What one notification is about.
pub(super) struct Job<'a> {
    pub id: SessionId,
    /// `BITS-Original-Request-URL`: the destination URL as the client addressed it.
    pub original_url: String,
    /// The destination URL's query string, appended to the application's URL.
    pub query: Option<&'a str>,
    /// `scheme://host:port` the client reached us at, for the reply URL.
    pub origin: &'a str,
}

/// What one POST came to.
struct Exchange {
    headers: Vec<(String, String)>,
    status: Option<u16>,
    result: Result<Answer, Failure>,
    reply_bytes: Option<u64>,
}

impl Server {
    /// Notifies the application of a complete upload-reply session and finishes the core's
    /// `NOTIFY` state; returns the final Fragment Ack.
    pub(super) async fn notify(&self, entry: &mut Entry, job: Job<'_>) -> Ack {
        let (destination, ordinal, size) = {
            let state = lock(&self.state);
            match state.table.get(&job.id) {
                Some(s) => (s.destination.clone(), s.ordinal, s.total.unwrap_or(0)),
                None => {
                    return Ack::error(crate::proto::BitsError::SessionNotFound)
                        .for_session(&job.id);
                }
            }
        };
        let Some(app) = self.config.notify.for_destination(&destination).cloned() else {
            // The core asks only for sessions under a configured prefix.
            return Ack::error(crate::proto::BitsError::Internal).for_session(&job.id);
        };
        if tokio::fs::symlink_metadata(self.store.temp_path(&job.id))
            .await
            .is_err()
        {
            // The upload was deleted behind the server's back (say while a failed
            // notification waited for its retry): its bytes are gone, so is the session, and
            // the client starts over rather than retry a notification that cannot succeed.
            tracing::warn!(session = %job.id, "the session's temp file was deleted; forgetting the session");
            self.with_table(Follow::default(), |t| t.lose_file(&job.id))
                .await;
            return Ack::error(crate::proto::BitsError::SessionNotFound).for_session(&job.id);
        }
        entry.notifications += 1;
        let path = destination.to_string();
        let decided = lock(&self.state).faults.notify(
            ordinal,
            entry.notifications,
            &path,
            self.started.elapsed(),
        );
        let (firing, fault) = match decided {
            Some((firing, fault)) => (Some(firing), Some(fault)),
            None => (None, None),
        };
        let session = SessionRef {
            id: job.id,
            ordinal: Some(ordinal),
        };
        let target = app.url.target(job.query);
        let url = format!("http://{}{target}", app.url.authority);
        if fault == Some(NotifyFault::Twice) {
            // A duplicate, as after a server crash: its answer is recorded, never relayed.
            let started = Instant::now();
            let first = self.exchange(&app, &target, &job, size, fault).await;
            let took = started.elapsed();
            self.record(session, &url, &app, first, took, None, None, firing.clone());
        }
        let started = Instant::now();
        let exchange = self.exchange(&app, &target, &job, size, fault).await;
        let took = started.elapsed();
        let notified = self.outcome(&exchange, &job);
        let reply_url = match &notified {
            Notified::Reply { reply_url, .. } => Some(reply_url.clone()),
            Notified::Failed(_) => None,
        };
        let ack = {
            let mut state = lock(&self.state);
            state.table.finish_notify(&job.id, notified, super::now())
        };
        // The core has the last word (an over-long reply URL fails there), and the session
        // may have expired meanwhile: only a 200 keeps a reply.
        let stored = matches!(
            exchange.result,
            Ok(Answer::Success {
                static_url: None,
                ..
            })
        );
        let reply_url = reply_url.filter(|_| ack.status == 200);
        if ack.status == 200 {
            entry.reply = stored.then(|| Reply {
                body: ReplyBody::File {
                    path: self.store.reply_path(&job.id),
                    len: exchange.reply_bytes.unwrap_or(0),
                },
                sha256: None,
                last_modified: httpdate::fmt_http_date(SystemTime::now()),
            });
        } else {
            entry.reply = None;
            self.store.discard_reply(&job.id).await;
        }
        let relayed = Some(ack.status);
        self.record(
            session, &url, &app, exchange, took, relayed, reply_url, firing,
        );
        ack
    }

    /// The core's view of an exchange.
    fn outcome(&self, exchange: &Exchange, job: &Job<'_>) -> Notified {
        match &exchange.result {
            Ok(Answer::Success { static_url, copy }) => Notified::Reply {
                reply_url: static_url.clone().unwrap_or_else(|| {
                    crate::notify::stored_reply_url(
                        self.config.notify.reply_url,
                        job.origin,
                        &job.id,
                    )
                }),
                copy: *copy,
            },
            Ok(Answer::Failed(ack)) => Notified::Failed(ack.clone()),
            Err(failure) => Notified::Failed(failure.ack()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        session: SessionRef,
        url: &str,
        app: &Application,
        exchange: Exchange,
        took: std::time::Duration,
        relayed: Option<u16>,
        reply_url: Option<String>,
        fault: Option<Firing>,
    ) {
        let error = exchange.result.as_ref().err().map(ToString::to_string);
        if let Some(e) = &error {
            tracing::warn!(session = %session.id, %url, error = %e, "notification failed");
        }
        self.emit(What::Notification {
            session,
            url: url.to_owned(),
            mode: match app.mode {
                Mode::Reference => "reference",
                Mode::Value => "value",
            },
            headers: exchange.headers,
            status: exchange.status,
            duration_ms: took.as_secs_f64() * 1000.0,
            reply_bytes: exchange.reply_bytes,
            reply_url,
            error,
            relayed,
            fault,
        });
    }

    /// One POST to the application, bounded by the notification timeout as a whole
    /// (connect, send, headers, reply body).
    async fn exchange(
        &self,
        app: &Application,
        target: &str,
        job: &Job<'_>,
        size: u64,
        fault: Option<NotifyFault>,
    ) -> Exchange {
        let request_file = self.store.temp_path(&job.id);
        let response_file = self.store.reply_path(&job.id);
        let mut headers: Vec<(String, String)> = vec![("Host".into(), app.url.authority.clone())];
        headers.extend(
            request_headers(app.mode, &job.original_url, &request_file, &response_file)
                .into_iter()
                .map(|(n, v)| (n.to_owned(), v)),
        );
        let length = match app.mode {
            Mode::Reference => 0,
            Mode::Value => size,
        };
        headers.push(("Content-Length".into(), length.to_string()));
        let mut exchange = Exchange {
            headers,
            status: None,
            result: Err(Failure::TimedOut),
            reply_bytes: None,
        };
        // A fault standing in for the application: nothing is sent.
        match fault {
            Some(NotifyFault::Refuse) => {
                exchange.result = Err(Failure::Unreachable("connection refused (fault)".into()));
                return exchange;
            }
            Some(NotifyFault::Garbage) => {
                exchange.result = Err(Failure::Garbage("not an HTTP status line (fault)".into()));
                return exchange;
            }
            Some(NotifyFault::Status(status)) => {
                exchange.status = Some(status);
                exchange.result = Ok(interpret(status, []));
                return exchange;
            }
            _ => {}
        }
        let delay = match fault {
            Some(NotifyFault::Delay(d)) => d,
            _ => std::time::Duration::ZERO,
        };
        let post = self.post(app, target, &exchange.headers, length, job.id, delay);
        match tokio::time::timeout(self.config.notify.timeout, post).await {
            Ok(Ok((status, answer, reply_bytes))) => {
                exchange.status = Some(status);
                exchange.reply_bytes = reply_bytes;
                exchange.result = Ok(answer);
            }
            Ok(Err((status, failure))) => {
                exchange.status = status;
                exchange.result = Err(failure);
            }
            Err(_) => exchange.result = Err(Failure::TimedOut),
        }
        exchange
    }

    /// Connects, sends, and reads the answer; by value the reply body goes to the reply
    /// file, by reference the application's reply file is checked. `delay` holds the
    /// answer back once it came (a `notify` fault's slow application).
    async fn post(
        &self,
        app: &Application,
        target: &str,
        headers: &[(String, String)],
        length: u64,
        id: SessionId,
        delay: std::time::Duration,
    ) -> Result<(u16, Answer, Option<u64>), (Option<u16>, Failure)> {
        let stream = tokio::net::TcpStream::connect((app.url.host.as_str(), app.url.port))
            .await
            .map_err(|e| (None, Failure::Unreachable(e.to_string())))?;
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| (None, Failure::Unreachable(e.to_string())))?;
        // The connection is driven until the exchange ends (or the timeout drops it).
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        let _abort = AbortOnDrop(driver);
        let body = match app.mode {
            Mode::Value => {
                let file = tokio::fs::File::open(self.store.temp_path(&id))
                    .await
                    .map_err(|e| (None, Failure::Storage(e.to_string())))?;
                Upload::new(Some(file), length)
            }
            Mode::Reference => Upload::new(None, 0),
        };
        // By reference the application writes the reply: into an existing reply area, and
        // no older reply may survive.
        if app.mode == Mode::Reference {
            self.store
                .clear_reply(&id)
                .await
                .map_err(|e| (None, Failure::Storage(e.to_string())))?;
        }
        let mut request = http::Request::builder()
            .method(http::Method::POST)
            .uri(target);
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let request = request
            .body(body)
            .map_err(|e| (None, Failure::Storage(e.to_string())))?;
        // Connected, then no HTTP answer (garbage, or closed without one): 502.
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| (None, Failure::Garbage(e.to_string())))?;
        tokio::time::sleep(delay).await;
        let status = response.status().as_u16();
        let answer = interpret(
            status,
            response
                .headers()
                .iter()
                .filter_map(|(n, v)| Some((n.as_str(), v.to_str().ok()?))),
        );
        let max = self.config.notify.max_reply;
        let fail = |failure| (Some(status), failure);
        let reply_bytes = match (&answer, app.mode) {
            (
                Answer::Success {
                    static_url: None, ..
                },
                Mode::Value,
            ) => {
                let mut file = self
                    .store
                    .fresh_reply(&id)
                    .await
                    .map_err(|e| fail(Failure::Storage(e.to_string())))?;
                let mut body = response.into_body();
                let mut written = 0u64;
                while let Some(frame) = body.frame().await {
                    let frame = frame.map_err(|e| fail(Failure::Garbage(e.to_string())))?;
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    written += data.len() as u64;
                    if written > max {
                        return Err(fail(Failure::ReplyTooLarge(max)));
                    }
                    file.write_all(&data)
                        .await
                        .map_err(|e| fail(Failure::Storage(e.to_string())))?;
                }
                file.flush()
                    .await
                    .map_err(|e| fail(Failure::Storage(e.to_string())))?;
                Some(written)
            }
            (
                Answer::Success {
                    static_url: None, ..
                },
                Mode::Reference,
            ) => {
                drain(response.into_body(), max).await;
                Some(self.reply_written(&id, max).await.map_err(fail)?)
            }
            (Answer::Success { .. }, _) => {
                drain(response.into_body(), max).await;
                Some(0)
            }
            (Answer::Failed(_), _) => {
                drain(response.into_body(), max).await;
                None
            }
        };
        Ok((status, answer, reply_bytes))
    }

    /// The size of the reply file an application wrote by reference; none written is the
    /// empty reply (docs/protocol.md §8.4). A link or anything but a plain file is refused,
    /// so a reply can never be read from outside the upload root.
    async fn reply_written(&self, id: &SessionId, max: u64) -> Result<u64, Failure> {
        let path: PathBuf = self.store.reply_path(id);
        match tokio::fs::symlink_metadata(&path).await {
            Ok(m) if m.is_file() && m.len() > max => Err(Failure::ReplyTooLarge(max)),
            Ok(m) if m.is_file() => Ok(m.len()),
            Ok(_) => Err(Failure::Storage(format!(
                "{} is not a plain file",
                path.display()
            ))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.store
                    .fresh_reply(id)
                    .await
                    .map_err(|e| Failure::Storage(e.to_string()))?;
                Ok(0)
            }
            Err(e) => Err(Failure::Storage(e.to_string())),
        }
    }
}

/// Reads and drops up to `limit` bytes of a body the server does not keep.
async fn drain(mut body: hyper::body::Incoming, limit: u64) {
    let mut read = 0u64;
    while read <= limit {
        match body.frame().await {
            Some(Ok(frame)) => {
                read += frame.data_ref().map_or(0, |d| d.len() as u64);
            }
            _ => break,
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The notification body: by value the temp file, `CHUNK` bytes at a time; by reference
/// nothing.
struct Upload {
    file: Option<tokio::fs::File>,
    remaining: u64,
    buf: Vec<u8>,
}

impl Upload {
    fn new(file: Option<tokio::fs::File>, len: u64) -> Upload {
        let len = if file.is_some() { len } else { 0 };
        Upload {
            file,
            remaining: len,
            buf: vec![0; if len > 0 { CHUNK } else { 0 }],
        }
    }
}

impl Body for Upload {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        let Some(file) = this.file.as_mut().filter(|_| this.remaining > 0) else {
            return Poll::Ready(None);
        };
        let want = this.buf.len().min(this.remaining as usize);
        let mut read = ReadBuf::new(&mut this.buf[..want]);
        match Pin::new(file).poll_read(cx, &mut read) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(())) if read.filled().is_empty() => {
                // Shorter than the upload's size: the file changed behind the server's back.
                Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the upload's temp file is shorter than the upload",
                ))))
            }
            Poll::Ready(Ok(())) => {
                let data = Bytes::copy_from_slice(read.filled());
                this.remaining -= data.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
