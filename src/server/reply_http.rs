//! The HTTP side of the built-in reply application (GET/HEAD of a session's reply URL), and
//! the conversion of a rendered Ack into an HTTP response.

use super::Server;
use super::accept::Conn;
use super::sessions::{Reply, ReplyBody, hex};
use crate::journal::{Request as Record, Sent, SessionRef, What};
use crate::notify::ReplyUrl;
use crate::proto::session::reply_path;
use crate::proto::{Destination, Rendered, SessionId};
use crate::reply::{self, Served};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use sha2::{Digest, Sha256};
use std::io;
use std::time::SystemTime;

impl Server {
    /// Answers GET/HEAD of a reply URL (docs/protocol.md §9.8), and records it.
    pub(super) async fn serve_reply(
        &self,
        req: &Request<Incoming>,
        mut record: Record,
        arrived: tokio::time::Instant,
    ) -> Response<Full<Bytes>> {
        let path = req.uri().path();
        let id = reply_id(path, self.config.notify.reply_url);
        let entry = id.and_then(|id| self.entry(&id));
        let reply = match entry {
            Some(e) => e.lock().await.reply.clone(),
            None => None,
        };
        let session = id.map(|id| SessionRef {
            id,
            ordinal: self.ordinal(&id),
        });
        record.session = session;
        let response = match reply {
            Some(reply) => match respond(req.method(), req.headers(), &reply).await {
                Ok(response) => response,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read a stored reply");
                    plain(StatusCode::INTERNAL_SERVER_ERROR)
                }
            },
            None => plain(StatusCode::NOT_FOUND),
        };
        let status = response.status().as_u16();
        let bytes = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if let (Some(session), true) = (session, response.status().is_success()) {
            self.emit(What::ReplyServed {
                session,
                status,
                bytes,
            });
        }
        record.status = Some(status);
        if status >= 400 {
            record.reason = Some("no reply at this URL".into());
        }
        record.sent = Sent::Status { status };
        record.latency_ms = arrived.elapsed().as_secs_f64() * 1000.0;
        self.emit(What::Request(Box::new(record)));
        response
    }

    /// The built-in server application: a JSON document about the upload. `digest` is the
    /// SHA-256 of the file when the writes kept it; otherwise the file is read.
    pub(super) async fn build_reply(
        &self,
        id: &SessionId,
        destination: &Destination,
        size: u64,
        digest: Option<String>,
    ) -> Reply {
        let digest = match digest {
            Some(digest) => digest,
            None => self.hash_file(self.store.temp_path(id)).await,
        };
        let name = destination.file_name().to_owned();
        Reply {
            body: ReplyBody::Memory(reply::document(&name, size, &digest)),
            sha256: Some(digest),
            last_modified: httpdate::fmt_http_date(SystemTime::now()),
        }
    }

    /// Lower-case hex SHA-256 of a file, on the blocking pool; empty if it cannot be read.
    pub(super) async fn hash_file(&self, path: std::path::PathBuf) -> String {
        tokio::task::spawn_blocking(move || sha256_file(&path))
            .await
            .ok()
            .and_then(Result::ok)
            .map(|d| hex(&d))
            .unwrap_or_default()
    }
}

/// The session id of a reply URL's path: the absolute form
/// (`/BITS-Sessions/Replies/<id>/responsefile.bin`, exactly as the server writes it), or with
/// relative reply URLs IIS's form as a client resolves it against the destination's folder
/// (`/<folder>/BITS-Sessions/Replies/%7B<ID>%7D/responsefile.bin`).
fn reply_id(path: &str, style: ReplyUrl) -> Option<SessionId> {
    if let Some(id) = path
        .strip_prefix("/BITS-Sessions/Replies/")
        .and_then(|rest| rest.strip_suffix("/responsefile.bin"))
        .and_then(SessionId::parse)
        .filter(|id| reply_path(id) == path)
    {
        return Some(id);
    }
    if style != ReplyUrl::Relative {
        return None;
    }
    let rest = path.strip_suffix("/responsefile.bin")?;
    let (before, id) = rest.rsplit_once('/')?;
    if !before.ends_with("/BITS-Sessions/Replies") && before != "/BITS-Sessions/Replies" {
        return None;
    }
    let id = id
        .strip_prefix("%7B")
        .or_else(|| id.strip_prefix("%7b"))
        .and_then(|i| i.strip_suffix("%7D").or_else(|| i.strip_suffix("%7d")))?;
    SessionId::parse(id)
}

/// Reads the part of a stored reply a GET asks for. A reply on disk is read range by range:
/// what is held in memory is one range, at most the reply's size limit.
async fn content(reply: &Reply, first: u64, len: u64) -> io::Result<Bytes> {
    match &reply.body {
        ReplyBody::Memory(body) => Ok(body.slice(first as usize..(first + len) as usize)),
        ReplyBody::File { path, .. } => {
            use tokio::io::{AsyncReadExt, AsyncSeekExt};
            let mut file = crate::store::Store::open_reply(path).await?;
            file.seek(io::SeekFrom::Start(first)).await?;
            let mut buf = vec![0; usize::try_from(len).map_err(io::Error::other)?];
            file.read_exact(&mut buf).await?;
            Ok(Bytes::from(buf))
        }
    }
}

async fn respond(
    method: &Method,
    headers: &http::HeaderMap,
    reply: &Reply,
) -> io::Result<Response<Full<Bytes>>> {
    let len = reply.len();
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, first, count, content_range) = match reply::select(range, len) {
        Served::Whole => (StatusCode::OK, 0, len, None),
        Served::Partial { first, last } => (
            StatusCode::PARTIAL_CONTENT,
            first,
            last - first + 1,
            Some(format!("bytes {first}-{last}/{len}")),
        ),
        Served::Unsatisfiable => (
            StatusCode::RANGE_NOT_SATISFIABLE,
            0,
            0,
            Some(format!("bytes */{len}")),
        ),
    };
    let content_length = count;
    let body = if method == Method::HEAD || count == 0 {
        Bytes::new()
    } else {
        content(reply, first, count).await?
    };
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    let content_type = match reply.body {
        ReplyBody::Memory(_) => "application/json",
        ReplyBody::File { .. } => "application/octet-stream",
    };
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(content_length));
    if let Ok(v) = HeaderValue::from_str(&reply.last_modified) {
        headers.insert(header::LAST_MODIFIED, v);
    }
    if let Some(v) = content_range.and_then(|r| HeaderValue::from_str(&r).ok()) {
        headers.insert(header::CONTENT_RANGE, v);
    }
    Ok(response)
}

/// Writes a rendered Ack as an HTTP response with an empty body.
pub fn to_response(rendered: &Rendered) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() =
        StatusCode::from_u16(rendered.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    // Room for the server's own headers too (`Server`, `Pragma`, `Allow`), so the map is
    // allocated once rather than grown as they are added.
    headers.reserve(rendered.headers.len() + 3);
    for (name, value) in &rendered.headers {
        if let Ok(value) = HeaderValue::from_str(value) {
            match known_name(name) {
                Some(known) => headers.append(known.clone(), value),
                None => headers.append(*name, value),
            };
        }
    }
    if rendered.status == 405 {
        headers.insert(
            header::ALLOW,
            HeaderValue::from_static("BITS_POST, GET, HEAD"),
        );
    }
    response
}

/// The names of an Ack's headers, made once: a name made from text is checked, lowered
/// and copied for every answer.
static ACK_NAMES: [(&str, HeaderName); 12] = [
    (
        "BITS-Packet-Type",
        HeaderName::from_static("bits-packet-type"),
    ),
    ("Content-Length", header::CONTENT_LENGTH),
    (
        "BITS-Session-Id",
        HeaderName::from_static("bits-session-id"),
    ),
    (
        "BITS-Received-Content-Range",
        HeaderName::from_static("bits-received-content-range"),
    ),
    ("BITS-Protocol", HeaderName::from_static("bits-protocol")),
    (
        "BITS-Error-Code",
        HeaderName::from_static("bits-error-code"),
    ),
    ("BITS-Error", HeaderName::from_static("bits-error")),
    (
        "BITS-Error-Context",
        HeaderName::from_static("bits-error-context"),
    ),
    ("BITS-Reply-URL", HeaderName::from_static("bits-reply-url")),
    ("BITS-Host-Id", HeaderName::from_static("bits-host-id")),
    (
        "BITS-Host-Id-Fallback-Timeout",
        HeaderName::from_static("bits-host-id-fallback-timeout"),
    ),
    ("Accept-Encoding", header::ACCEPT_ENCODING),
];

fn known_name(name: &str) -> Option<&'static HeaderName> {
    ACK_NAMES
        .iter()
        .find(|(spelled, _)| *spelled == name)
        .map(|(_, known)| known)
}

fn plain(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    response
}

/// `http[s]://host[:port]` as the client addressed us, for absolute reply URLs. A Host header
/// that is not a plain host name or address is ignored in favour of the local address.
pub(super) fn origin(headers: &http::HeaderMap, conn: &Conn) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        });
    let scheme = conn.scheme.as_str();
    match host {
        // Every request needs this, so no formatter for the usual case.
        Some(host) => [scheme, "://", host].concat(),
        None => format!("{scheme}://{}", conn.local),
    }
}

fn sha256_file(path: &std::path::Path) -> io::Result<Vec<u8>> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher)?;
    Ok(hasher.finalize().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_made_name_is_the_name_its_text_gives() {
        for (spelled, made) in &ACK_NAMES {
            assert_eq!(
                HeaderName::from_bytes(spelled.as_bytes()).ok().as_ref(),
                Some(made)
            );
            assert_eq!(known_name(spelled), Some(made));
        }
        assert_eq!(known_name("bits-packet-type"), None);
        assert_eq!(known_name("X-Other"), None);
    }

    #[test]
    fn a_response_carries_every_rendered_header_in_order() {
        let rendered = Rendered {
            status: 416,
            headers: vec![
                ("BITS-Packet-Type", "Ack".into()),
                ("BITS-Error-Code", "0x80070057".into()),
                ("X-Other", "kept".into()),
                ("BITS-Error-Context", "0x5".into()),
                ("Content-Length", "0".into()),
            ],
        };
        let response = to_response(&rendered);
        assert_eq!(response.status(), 416);
        let headers: Vec<(&str, &str)> = response
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
            .collect();
        assert_eq!(
            headers,
            [
                ("bits-packet-type", "Ack"),
                ("bits-error-code", "0x80070057"),
                ("x-other", "kept"),
                ("bits-error-context", "0x5"),
                ("content-length", "0"),
            ]
        );
    }
}
