//! Request bodies: a fragment's bytes streamed into its session's temp file, and the
//! leftovers of bodies nobody needs drained so the connection can carry on.

use super::execute;
use crate::proto::SessionId;
use crate::store::{Store, TempError};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use sha2::{Digest, Sha256};
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
    /// The file could not be opened or written.
    Disk(io::Error),
    /// The temp file was deleted behind the server's back: the session's bytes are gone.
    Vanished,
}

/// Streams a fragment body into the session's temp file. The file is opened by the first
/// batch's blocking task and closed by the last one, so a file is open only while a fragment
/// is being written: open descriptors are bounded by requests in flight, never by live
/// sessions. `hash` is the session's running digest; it comes back only if it still covers
/// every stored byte (if this future is dropped meanwhile, it is gone and the digest is
/// computed from the file when needed).
pub(super) async fn stream(
    hash: &mut Option<Hash>,
    temp: Temp,
    body: &mut Incoming,
    span: Span,
    reading: Reading,
) -> Streamed {
    // Writes append at the received offset, so the digest grows in file order. It is kept
    // here, on the async side, so hashing a frame overlaps the blocking write of the last
    // batch instead of adding to it (SHA-256 is about as fast as the disk path).
    let mut digest = match hash.take() {
        Some(h) if h.hashed == span.at => Some(h.digest),
        _ if temp.hash && span.at == 0 => Some(Sha256::new()),
        _ => None,
    };
    let mut writer = Writer {
        temp,
        file: None,
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
            pending_len = 0;
            if let Err(lost) = writer.submit(at, std::mem::take(&mut pending), false).await {
                end = Some(lost.into());
                break;
            }
        }
    }
    if end.is_none() && reading.cut_after.is_some() {
        // The whole body fitted before the cut: the reset still happens, after it.
        end = Some(End::Cut);
    }
    // Only bytes the file really holds may be acknowledged: the last batch also checks that
    // the file is still the session's (not deleted meanwhile) and closes it.
    let at = span.at + written - pending_len as u64;
    let flushed = match end {
        Some(End::Disk(_) | End::Vanished) => Ok(()),
        _ => match writer.submit(at, pending, true).await {
            Ok(()) => writer.settle().await,
            Err(lost) => Err(lost),
        },
    };
    let stored = writer.landed.saturating_sub(span.at);
    if let Some(digest) = digest
        && flushed.is_ok()
        && stored == written
    {
        *hash = Some(Hash {
            digest,
            hashed: writer.landed,
        });
    }
    let end = match (flushed, end) {
        (Err(lost), _) => lost.into(),
        (Ok(()), Some(end)) => end,
        (Ok(()), None) => End::Whole,
    };
    Streamed {
        received: consumed,
        stored,
        end,
    }
}

/// A session's running SHA-256, kept between fragments.
pub(super) struct Hash {
    /// Digest of bytes `0..hashed`.
    pub digest: Sha256,
    pub hashed: u64,
}

impl Hash {
    /// The digest of the first `size` bytes, if that is what it covers.
    pub fn of(hash: Option<&Hash>, size: u64) -> Option<String> {
        hash.filter(|h| h.hashed == size)
            .map(|h| super::sessions::hex(&h.digest.clone().finalize()))
    }
}

/// Which temp file a fragment goes to, and whether its bytes are hashed.
pub(super) struct Temp {
    pub store: Store,
    pub session: SessionId,
    pub hash: bool,
}

impl From<TempError> for End {
    fn from(e: TempError) -> End {
        match e {
            TempError::Vanished => End::Vanished,
            TempError::Io(e) => End::Disk(e),
        }
    }
}

/// Writes a fragment's bytes to its temp file on the blocking pool, with one batch in flight
/// while the next is read from the socket (disk and network overlap, as with a buffered file).
struct Writer {
    temp: Temp,
    /// Open between the first batch and the last.
    file: Option<std::fs::File>,
    in_flight: Option<Batch>,
    /// The end offset of the last batch known to be in the file.
    landed: u64,
}

type Batch = tokio::task::JoinHandle<(Option<std::fs::File>, Result<u64, TempError>)>;

impl Writer {
    /// Starts writing `chunks` at offset `at`, after the previous batch has landed. `last`:
    /// then check the file is still there and close it.
    async fn submit(&mut self, at: u64, chunks: Vec<Bytes>, last: bool) -> Result<(), TempError> {
        self.settle().await?;
        if self.landed < at {
            self.landed = at;
        }
        if chunks.is_empty() && (self.file.is_none() || !last) {
            // Nothing to write, and no open file to check and close.
            return Ok(());
        }
        let file = self.file.take();
        let store = self.temp.store.clone();
        let session = self.temp.session;
        self.in_flight = Some(tokio::task::spawn_blocking(move || {
            let mut file = match file {
                Some(file) => file,
                None => match store.open_temp(&session, at) {
                    Ok(file) => file,
                    Err(e) => return (None, Err(e)),
                },
            };
            let result = write_at(&mut file, at, &chunks).map_err(TempError::Io);
            match result {
                Ok(end) if last => {
                    // Bytes written into a deleted file are lost: never acknowledge them.
                    let kept = store.still_there(&session, &file);
                    (
                        None,
                        if kept {
                            Ok(end)
                        } else {
                            Err(TempError::Vanished)
                        },
                    )
                }
                result => (Some(file), result),
            }
        }));
        Ok(())
    }

    /// Waits for the batch in flight, if any; only then are its bytes in the file.
    async fn settle(&mut self) -> Result<(), TempError> {
        let Some(task) = self.in_flight.take() else {
            return Ok(());
        };
        let (file, result) = task
            .await
            .unwrap_or_else(|e| (None, Err(TempError::Io(io::Error::other(e)))));
        self.file = file;
        self.landed = result?;
        Ok(())
    }
}

/// Writes the chunks at `at` with as few system calls as the kernel allows (one `writev` for
/// the whole batch, usually); returns the end offset.
fn write_at(file: &mut std::fs::File, at: u64, chunks: &[Bytes]) -> io::Result<u64> {
    use std::io::{IoSlice, Seek, Write};
    let len: u64 = chunks.iter().map(|c| c.len() as u64).sum();
    file.seek(io::SeekFrom::Start(at))?;
    let mut slices: Vec<IoSlice<'_>> = chunks.iter().map(|c| IoSlice::new(c)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match file.write_vectored(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(at + len)
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
