//! The reply of an upload-reply job (docs/protocol.md §9.8): ranged GETs of `BITS-Reply-URL`,
//! made after the final Fragment Ack and before Close-Session (the reply is gone after it).
//!
//! The length and `Last-Modified` must stay the same from range to range: a new
//! `Last-Modified` starts the download over, a new length is an error. A server without range
//! support (`200` to a ranged GET) or without `Content-Length` is refused, as Windows does.

use super::wire::{self, Conn, Failure, ReqBody, Target};
use super::{ReplySummary, Run, UploadError, verdict};
use http::header;
use http_body_util::BodyExt;
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

/// Replies up to this size are kept in memory when no file was named.
const KEEP_IN_MEMORY: u64 = 1024 * 1024;
const STEP: super::Step = super::Step::Reply;

/// Where the reply goes.
enum Sink {
    File(tokio::fs::File, PathBuf),
    Memory(Option<Vec<u8>>),
}

impl Sink {
    async fn open(path: Option<&Path>) -> std::io::Result<Sink> {
        Ok(match path {
            Some(p) => Sink::File(tokio::fs::File::create(p).await?, p.to_path_buf()),
            None => Sink::Memory(Some(Vec::new())),
        })
    }

    async fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Sink::File(file, _) => file.write_all(data).await,
            Sink::Memory(kept) => {
                if let Some(buf) = kept {
                    if (buf.len() + data.len()) as u64 > KEEP_IN_MEMORY {
                        *kept = None;
                    } else {
                        buf.extend_from_slice(data);
                    }
                }
                Ok(())
            }
        }
    }

    /// Throws away what was written (the reply changed under us).
    async fn reset(&mut self) -> std::io::Result<()> {
        match self {
            Sink::File(file, _) => {
                file.set_len(0).await?;
                tokio::io::AsyncSeekExt::seek(file, std::io::SeekFrom::Start(0)).await?;
                Ok(())
            }
            Sink::Memory(kept) => {
                *kept = Some(Vec::new());
                Ok(())
            }
        }
    }
}

/// What a 206 says about itself.
struct Part {
    first: u64,
    last: u64,
    total: u64,
}

impl Run<'_> {
    pub(super) async fn fetch_reply(&mut self, url: &str) -> Result<(), UploadError> {
        let target = resolve(url, &self.origin).ok_or_else(|| UploadError::Reply {
            url: url.to_owned(),
            hresult: verdict::http_error(400),
            message: "BITS-Reply-URL is not a usable http URL".into(),
        })?;
        let shown = target.url();
        let fail = |hresult: u32, message: String| UploadError::Reply {
            url: shown.clone(),
            hresult,
            message,
        };
        let mut sink = Sink::open(self.opts.reply_out.as_deref())
            .await
            .map_err(|e| UploadError::Local {
                path: self.opts.reply_out.clone().unwrap_or_default(),
                error: e,
            })?;
        let mut conn: Option<Conn> = None;
        let mut pos = 0u64;
        let mut total: Option<u64> = None;
        let mut validator: Option<String> = None;
        let chunk = self.opts.reply_chunk.max(1);
        while total != Some(pos) {
            let mut last = pos.saturating_add(chunk - 1);
            if let Some(t) = total {
                last = last.min(t - 1);
            }
            let started = Instant::now();
            let deadline = started + self.timeout;
            let response = match self.get(&mut conn, &target, pos, last, deadline).await {
                Ok(r) => r,
                Err(f) => {
                    conn = None;
                    self.transient(STEP, f.to_string(), None).await?;
                    continue;
                }
            };
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            match status {
                206 => {}
                416 => {
                    // Only an empty reply (`bytes */0`) ends this way.
                    let size = headers
                        .get(header::CONTENT_RANGE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().strip_prefix("bytes */"))
                        .and_then(|n| n.trim().parse::<u64>().ok());
                    if size == Some(0) && pos == 0 {
                        total = Some(0);
                        break;
                    }
                    return Err(fail(
                        verdict::http_error(416),
                        format!("range {pos}-{last} refused"),
                    ));
                }
                200 => {
                    return Err(fail(
                        verdict::INSUFFICIENT_RANGE_SUPPORT,
                        "the server ignored the Range header (200 instead of 206)".into(),
                    ));
                }
                401 if self.opts.credentials.is_some() && !self.auth => {
                    self.auth = true;
                    self.counts.auth_challenges += 1;
                    continue;
                }
                404 => {
                    return Err(fail(
                        verdict::http_error(404),
                        "the reply is gone (404)".into(),
                    ));
                }
                408 | 429 | 500 | 502..=504 | 506..=599 => {
                    conn = None;
                    self.transient(STEP, verdict::describe_status(status), None)
                        .await?;
                    continue;
                }
                _ => {
                    return Err(fail(
                        verdict::http_error(status),
                        format!("{} to a ranged GET", verdict::describe_status(status)),
                    ));
                }
            }
            let part = headers
                .get(header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_content_range)
                .ok_or_else(|| {
                    fail(
                        verdict::INSUFFICIENT_RANGE_SUPPORT,
                        "a 206 without a usable Content-Range".into(),
                    )
                })?;
            if headers.get(header::CONTENT_LENGTH).is_none() {
                return Err(fail(
                    verdict::MISSING_FILE_SIZE,
                    "a 206 without Content-Length".into(),
                ));
            }
            let modified = headers
                .get(header::LAST_MODIFIED)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            if validator.is_some() && modified != validator {
                // The reply changed: start over (MC-BUP 3.6).
                tracing::debug!(url = %shown, "reply Last-Modified changed; restarting");
                conn = None;
                sink.reset().await.map_err(|e| fail(0, e.to_string()))?;
                pos = 0;
                total = None;
                validator = modified;
                continue;
            }
            validator = modified;
            if let Some(t) = total
                && t != part.total
            {
                return Err(fail(
                    verdict::http_error(206),
                    format!("the reply's length changed from {t} to {}", part.total),
                ));
            }
            if part.first != pos || part.last < part.first || part.last >= part.total {
                return Err(fail(
                    verdict::INSUFFICIENT_RANGE_SUPPORT,
                    format!(
                        "asked for bytes {pos}-{last}, got {}-{}/{}",
                        part.first, part.last, part.total
                    ),
                ));
            }
            total = Some(part.total);
            let want = part.last - part.first + 1;
            let mut body = response.into_body();
            let mut got = 0u64;
            let read = async {
                while let Some(frame) = body.frame().await {
                    let frame = frame.map_err(wire::transport)?;
                    if let Ok(data) = frame.into_data() {
                        let take = (want - got).min(data.len() as u64) as usize;
                        sink.write(&data[..take]).await.map_err(|e| {
                            Failure::Transport(format!("cannot store the reply: {e}"))
                        })?;
                        got += take as u64;
                    }
                }
                Ok::<(), Failure>(())
            };
            let read = match tokio::time::timeout_at(deadline, read).await {
                Ok(r) => r,
                Err(_) => Err(Failure::Timeout(self.timeout)),
            };
            self.latencies.record("GET reply", started.elapsed());
            pos += got;
            let short =
                (got < want).then(|| format!("the reply range ended after {got} of {want} bytes"));
            if let Some(why) = read.err().map(|f| f.to_string()).or(short) {
                conn = None;
                self.transient(STEP, why, None).await?;
                continue;
            }
            self.answered();
        }
        let (saved_to, body) = match sink {
            Sink::File(mut file, path) => {
                file.flush().await.map_err(|e| fail(0, e.to_string()))?;
                (Some(path), None)
            }
            Sink::Memory(kept) => (None, kept),
        };
        self.reply = Some(ReplySummary {
            url: shown.clone(),
            bytes: total.unwrap_or(0),
            saved_to,
            body,
        });
        Ok(())
    }

    async fn get(
        &mut self,
        conn: &mut Option<Conn>,
        target: &Target,
        first: u64,
        last: u64,
        deadline: Instant,
    ) -> Result<http::Response<hyper::body::Incoming>, Failure> {
        if !conn
            .as_ref()
            .is_some_and(|c| c.endpoint == target.endpoint && c.usable())
        {
            let tls = self.tls.as_ref();
            *conn = Some(Conn::open(&target.endpoint, self.opts.connect_timeout, tls).await?);
        }
        let mut request = http::Request::builder()
            .method(http::Method::GET)
            .uri(target.path.as_str())
            .header(header::HOST, target.endpoint.authority())
            .header(header::USER_AGENT, self.opts.user_agent.as_str())
            .header(header::ACCEPT_ENCODING, "identity")
            .header(header::RANGE, format!("bytes={first}-{last}"));
        if self.auth
            && let Some(credentials) = &self.opts.credentials
        {
            request = request.header(header::AUTHORIZATION, credentials.header());
        }
        let request = request
            .body(ReqBody::Empty)
            .map_err(|e| Failure::Transport(format!("cannot build the request: {e}")))?;
        let Some(conn) = conn.as_mut() else {
            return Err(Failure::Transport("no connection".into()));
        };
        self.counts.requests += 1;
        conn.send(request, deadline, self.timeout).await
    }
}

/// `bytes 0-511/612` → (0, 511, 612).
fn parse_content_range(value: &str) -> Option<Part> {
    let value = value.trim();
    let rest = value
        .get(..6)
        .filter(|u| u.eq_ignore_ascii_case("bytes "))
        .map(|_| &value[6..])?;
    let (range, total) = rest.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    Some(Part {
        first: first.trim().parse().ok()?,
        last: last.trim().parse().ok()?,
        total: total.trim().parse().ok()?,
    })
}

/// An absolute reply URL is used as is; a relative one (IIS sends
/// `BITS-Sessions\Replies\{id}\responsefile.bin`) gets forward slashes, percent-encoded
/// braces and the destination URL's directory on the origin host, as the Windows client did
/// in [MC-BUP]'s capture.
fn resolve(url: &str, origin: &Target) -> Option<Target> {
    let url = url.trim();
    if url.len() > 2200 {
        return None;
    }
    if url.contains("://") {
        return wire::parse_url(url).ok();
    }
    let mut path = String::new();
    for c in url.chars() {
        match c {
            '\\' => path.push('/'),
            '{' => path.push_str("%7B"),
            '}' => path.push_str("%7D"),
            ' ' => path.push_str("%20"),
            c => path.push(c),
        }
    }
    if !path.starts_with('/') {
        let base = origin.path.split(['?', '#']).next().unwrap_or("/");
        let dir = &base[..base.rfind('/').map_or(0, |i| i + 1)];
        path = format!("{}{path}", if dir.is_empty() { "/" } else { dir });
    }
    path.parse::<http::Uri>().ok()?;
    Some(Target {
        endpoint: origin.endpoint.clone(),
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ranges_parse() {
        let p = parse_content_range("bytes 0-511/612").unwrap();
        assert_eq!((p.first, p.last, p.total), (0, 511, 612));
        assert!(parse_content_range("bytes */612").is_none());
        assert!(parse_content_range("items 0-1/2").is_none());
    }

    #[test]
    fn relative_reply_urls_resolve_against_the_destination_directory() {
        let origin = wire::parse_url("http://farm.test:81/orders/in.xml?x=1").unwrap();
        let t = resolve(r"BITS-Sessions\Replies\{AB}\responsefile.bin", &origin).unwrap();
        assert_eq!(
            t.url(),
            "http://farm.test:81/orders/BITS-Sessions/Replies/%7BAB%7D/responsefile.bin"
        );
        let t = resolve("/r/x.bin", &origin).unwrap();
        assert_eq!(t.url(), "http://farm.test:81/r/x.bin");
        let t = resolve("http://node3.farm.test/r", &origin).unwrap();
        assert_eq!(t.endpoint.host, "node3.farm.test");
        assert!(resolve("ftp://x/y", &origin).is_none());
        let secure = resolve("https://x/y", &origin).unwrap();
        assert!(secure.endpoint.tls);
    }
}
