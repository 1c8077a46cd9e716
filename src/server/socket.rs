//! The server side of one TCP connection, able to misbehave below HTTP.
//!
//! hyper writes responses through [`FaultIo`]; a request handler steers it through the shared
//! [`Control`]: reset the connection (RST instead of FIN), trickle writes at a fixed rate, or
//! replace the next response with raw bytes (a broken response) and then fail the connection.
//! Every response goes out with IIS's spelling of header names (`server::casing`).

use super::casing::{Casing, Offer};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

/// Granularity of write throttling.
const TICK: Duration = Duration::from_millis(50);

/// What the handler wants the connection to do next.
#[derive(Debug, Default)]
pub struct Control {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    reset: bool,
    raw: Option<Vec<u8>>,
    write_rate: Option<u64>,
    /// A `close=no-notify` fault waits for this connection's first fragment.
    no_notify_armed: bool,
    /// End the TCP stream now (FIN), below TLS: no `close_notify` is ever sent.
    fin: bool,
    /// The body lengths of the answers handed to hyper and not yet written, oldest first.
    bodies: VecDeque<u64>,
}

impl Control {
    /// End with RST when the connection is dropped.
    pub fn reset(&self) {
        self.lock().reset = true;
    }

    /// Send these bytes instead of the next response, then fail the connection.
    pub fn replace_response(&self, raw: Vec<u8>) {
        self.lock().raw = Some(raw);
    }

    /// Arms a `close=no-notify` fault for the connection's first fragment.
    pub fn close_without_notify(&self) {
        self.lock().no_notify_armed = true;
    }

    /// Takes the armed `close=no-notify` fault, if there is one.
    pub fn take_close_without_notify(&self) -> bool {
        std::mem::take(&mut self.lock().no_notify_armed)
    }

    /// Sends FIN under the TLS layer at the next read or write: the peer sees the stream
    /// end without `close_notify`.
    pub fn fin_below_tls(&self) {
        self.lock().fin = true;
    }

    /// The answer just handed to hyper has a body of `len` bytes (0 for a HEAD): its head
    /// is re-spelled, its body is not (`server::casing`).
    pub fn expect_body(&self, len: u64) {
        self.lock().bodies.push_back(len);
    }

    /// Write at most this many bytes per second (`None`: full speed).
    pub fn throttle_writes(&self, rate: Option<u64>) {
        self.lock().write_rate = rate;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A connection's byte stream: TCP, or TLS over TCP. Either can end with RST.
pub trait Socket: AsyncRead + AsyncWrite + Unpin {
    fn tcp(&self) -> &TcpStream;
    fn tcp_mut(&mut self) -> &mut TcpStream;
}

impl Socket for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }

    fn tcp_mut(&mut self) -> &mut TcpStream {
        self
    }
}

/// TLS over TCP, with the socket's reads buffered below the decryption.
impl Socket for tokio_rustls::server::TlsStream<tokio::io::BufReader<TcpStream>> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref().0.get_ref()
    }

    fn tcp_mut(&mut self) -> &mut TcpStream {
        self.get_mut().0.get_mut()
    }
}

/// A connection's stream that obeys a [`Control`]. Under TLS it sits above the encryption:
/// a broken response is broken HTTP inside a sound TLS stream.
pub struct FaultIo<S: Socket> {
    stream: S,
    control: Arc<Control>,
    raw_sent: usize,
    pause: Option<Pin<Box<Sleep>>>,
    casing: Casing,
    /// A head as IIS spells it, kept between writes so re-spelling allocates nothing.
    spelled: Vec<u8>,
    /// FIN went out below TLS ([`Control::fin_below_tls`]); nothing more is written.
    fin_sent: bool,
}

impl<S: Socket> FaultIo<S> {
    pub fn new(stream: S, control: Arc<Control>) -> Self {
        FaultIo {
            stream,
            control,
            raw_sent: 0,
            pause: None,
            casing: Casing::default(),
            spelled: Vec::new(),
            fin_sent: false,
        }
    }
}

impl<S: Socket> Drop for FaultIo<S> {
    fn drop(&mut self) {
        if self.control.lock().reset {
            // SO_LINGER 0: closing sends RST and discards unsent data.
            let _ = self.stream.tcp().set_zero_linger();
        }
    }
}

impl<S: Socket> FaultIo<S> {
    /// Sends a FIN the handler asked for, straight on the TCP stream.
    fn poll_fin(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.fin_sent && self.control.lock().fin {
            ready!(Pin::new(self.stream.tcp_mut()).poll_shutdown(cx))?;
            self.fin_sent = true;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: Socket> AsyncRead for FaultIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // The handler reads on after asking for the FIN: the rest of the body must be
        // consumed, or closing with unread bytes would send RST instead.
        let _ = ready!(self.poll_fin(cx));
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<S: Socket> AsyncWrite for FaultIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        ready!(this.poll_fin(cx))?;
        if this.fin_sent {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "closed below TLS",
            )));
        }
        let (raw, rate) = {
            let state = this.control.lock();
            (state.raw.clone(), state.write_rate)
        };
        if let Some(raw) = raw {
            while this.raw_sent < raw.len() {
                let n = ready!(Pin::new(&mut this.stream).poll_write(cx, &raw[this.raw_sent..]))?;
                if n == 0 {
                    break;
                }
                this.raw_sent += n;
            }
            ready!(Pin::new(&mut this.stream).poll_flush(cx))?;
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "broken response sent",
            )));
        }
        let offered: &[u8] = match this.casing.offer(buf, &mut this.spelled) {
            Offer::Head(_) => &this.spelled,
            Offer::Body(n) => &buf[..n],
        };
        let control = &this.control;
        let next_body = || control.lock().bodies.pop_front().unwrap_or(0);
        let Some(rate) = rate else {
            let n = ready!(Pin::new(&mut this.stream).poll_write(cx, offered))?;
            this.casing.advance(buf, n, next_body);
            return Poll::Ready(Ok(n));
        };
        if let Some(pause) = this.pause.as_mut() {
            ready!(pause.as_mut().poll(cx));
            this.pause = None;
        }
        let quantum = (rate as f64 * TICK.as_secs_f64()).ceil().max(1.0) as usize;
        let n = ready!(
            Pin::new(&mut this.stream).poll_write(cx, &offered[..offered.len().min(quantum)])
        )?;
        this.casing.advance(buf, n, next_body);
        let wait = TICK.mul_f64(n as f64 / quantum as f64);
        this.pause = Some(Box::pin(tokio::time::sleep(wait)));
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.fin_sent {
            // Shutting TLS down now would send the close_notify the fault withholds.
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
