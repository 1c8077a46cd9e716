//! Request bodies: a fragment's bytes streamed into its session's temp file, and the
//! leftovers of bodies nobody needs drained so the connection can carry on.

use super::execute;
use super::sessions::Sink;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use sha2::Digest;
use std::io;
use std::time::Duration;

/// Body bytes read and thrown away so a rejected request can keep its connection alive.
pub(super) const DRAIN_LIMIT: u64 = 1 << 20;
/// The same for a fragment that was answered without streaming its body (413, 416, already
/// stored, ...). Clients write the whole body (up to 13 MB) before reading the Ack; closing
/// with unread bytes resets the connection and the Ack is lost with it.
pub(super) const FRAGMENT_DRAIN_LIMIT: u64 = 64 << 20;
/// Fragment bytes gathered before each file write. Body frames are at most the read buffer
/// (`max_head_bytes`, 64 KiB by default) and every file write is a blocking-pool round trip;
/// writing per frame cost a third of the throughput (benches/upload.rs). The frames are kept
/// as they came (no copy into one buffer) and written by one blocking task with a std file:
/// tokio's `File` would copy them once more into its own buffer (benches/client.rs).
const WRITE_CHUNK: usize = 1 << 20;

/// What to stream: skip `skip` body bytes (already stored), write the next `len` at `at`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Span {
    pub at: u64,
    pub skip: u64,
    pub len: u64,
}

/// How a fragment body is read.
#[derive(Debug, Clone, Copy)]
pub(super) struct Reading {
    /// Stop after this many body bytes (a planned mid-body reset).
    pub cut_after: Option<u64>,
    pub read_rate: Option<u64>,
    pub stall_timeout: Duration,
}

/// How streaming ended.
#[derive(Debug)]
pub(super) struct Streamed {
    /// Body bytes read from the socket.
    pub received: u64,
    /// Bytes now in the file (and only those may be acknowledged), even when a later batch
    /// failed.
    pub stored: u64,
    pub end: End,
}

#[derive(Debug)]
pub(super) enum End {
    /// Every planned byte was stored.
    Whole,
    /// The planned cut was reached.
    Cut,
    /// The body ended early or stalled.
    Body(String),
    /// The file could not be written.
    Disk(io::Error),
}

/// Streams a fragment body into the sink. The sink travels to the blocking pool and back; if
/// this future is dropped meanwhile, `slot` stays empty and the next fragment reopens the file.
pub(super) async fn stream(
    slot: &mut Option<Sink>,
    mut sink: Sink,
    body: &mut Incoming,
    span: Span,
    reading: Reading,
) -> Streamed {
    // Writes append at the received offset, so the digest grows in file order. It is kept
    // here, on the async side, so hashing a frame overlaps the blocking write of the last
    // batch instead of adding to it (SHA-256 is about as fast as the disk path).
    let mut digest = sink.digest.take().filter(|_| sink.hashed == span.at);
    let mut writer = Writer {
        sink: Some(sink),
        in_flight: None,
        landed: span.at,
    };
    let started = tokio::time::Instant::now();
    let limit = reading.cut_after.unwrap_or(u64::MAX);
    let mut consumed = 0u64;
    let mut skip = span.skip;
    let mut written = 0u64;
    let mut end = None;
    let mut pending: Vec<Bytes> = Vec::new();
    let mut pending_len = 0usize;
    while written < span.len {
        if consumed >= limit {
            end = Some(End::Cut);
            break;
        }
        let frame = match tokio::time::timeout(reading.stall_timeout, body.frame()).await {
            Err(_) => {
                end = Some(End::Body("the body stalled".to_owned()));
                break;
            }
            Ok(None) => {
                end = Some(End::Body("the body ended early".to_owned()));
                break;
            }
            Ok(Some(Err(e))) => {
                end = Some(End::Body(format!("the body failed: {e}")));
                break;
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(mut data) = frame.into_data() else {
            continue;
        };
        data.truncate(
            data.len()
                .min((limit - consumed).min(usize::MAX as u64) as usize),
        );
        consumed += data.len() as u64;
        execute::pace_read(started, consumed, reading.read_rate).await;
        let dropped = skip.min(data.len() as u64);
        skip -= dropped;
        let _ = data.split_to(dropped as usize);
        let take = (span.len - written).min(data.len() as u64) as usize;
        if take == 0 {
            continue;
        }
        data.truncate(take);
        if let Some(digest) = digest.as_mut() {
            digest.update(&data);
        }
        pending.push(data);
        pending_len += take;
        written += take as u64;
        if pending_len >= WRITE_CHUNK {
            let at = span.at + written - pending_len as u64;
            if let Err(e) = writer.submit(at, std::mem::take(&mut pending)).await {
                end = Some(End::Disk(e));
                pending_len = 0;
                break;
            }
            pending_len = 0;
        }
    }
    if end.is_none() && reading.cut_after.is_some() {
        // The whole body fitted before the cut: the reset still happens, after it.
        end = Some(End::Cut);
    }
    // Only bytes the file really holds may be acknowledged.
    let at = span.at + written - pending_len as u64;
    let flushed = match writer.submit(at, pending).await {
        Ok(()) => writer.settle().await,
        Err(e) => Err(e),
    };
    let stored = writer.landed.saturating_sub(span.at);
    if let Some(sink) = writer.sink.as_mut()
        && flushed.is_ok()
        && stored == written
    {
        sink.digest = digest;
        sink.hashed = writer.landed;
    }
    *slot = writer.sink;
    let end = match (flushed, end) {
        (_, Some(End::Disk(e))) | (Err(e), _) => End::Disk(e),
        (Ok(()), Some(end)) => end,
        (Ok(()), None) => End::Whole,
    };
    Streamed {
        received: consumed,
        stored,
        end,
    }
}

/// Writes a fragment's bytes to its temp file on the blocking pool, with one batch in flight
/// while the next is read from the socket (disk and network overlap, as with a buffered file).
struct Writer {
    sink: Option<Sink>,
    in_flight: Option<tokio::task::JoinHandle<(Sink, io::Result<u64>)>>,
    /// The end offset of the last batch known to be in the file.
    landed: u64,
}

impl Writer {
    /// Starts writing `chunks` at offset `at`, after the previous batch has landed.
    async fn submit(&mut self, at: u64, chunks: Vec<Bytes>) -> io::Result<()> {
        self.settle().await?;
        if self.landed < at {
            self.landed = at;
        }
        if chunks.is_empty() {
            return Ok(());
        }
        let mut sink = self
            .sink
            .take()
            .ok_or_else(|| io::Error::other("temp file not open"))?;
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            let result = write_at(&mut sink, at, &chunks);
            (sink, result)
        }));
        Ok(())
    }

    /// Waits for the batch in flight, if any; only then are its bytes in the file.
    async fn settle(&mut self) -> io::Result<()> {
        let Some(task) = self.in_flight.take() else {
            return Ok(());
        };
        let (sink, result) = task.await.map_err(io::Error::other)?;
        self.sink = Some(sink);
        self.landed = result?;
        Ok(())
    }
}

/// Writes the chunks at `at`; returns the end offset.
fn write_at(sink: &mut Sink, at: u64, chunks: &[Bytes]) -> io::Result<u64> {
    use std::io::{Seek, Write};
    let len: u64 = chunks.iter().map(|c| c.len() as u64).sum();
    sink.file
        .seek(io::SeekFrom::Start(at))
        .and_then(|_| chunks.iter().try_for_each(|c| sink.file.write_all(c)))
        .map(|()| at + len)
}

/// Reads and discards up to `limit` bytes of a leftover body so the connection can be reused.
pub(super) async fn drain(body: &mut Incoming, limit: u64) {
    let mut seen = 0u64;
    while seen <= limit {
        match tokio::time::timeout(Duration::from_secs(5), body.frame()).await {
            Ok(Some(Ok(frame))) => {
                seen += frame.data_ref().map_or(0, |d| d.len() as u64);
            }
            _ => return,
        }
    }
}
