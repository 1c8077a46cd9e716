//! Back-end notification (`serve --notify`, docs/protocol.md §8) over loopback, with an
//! in-test server application: both modes byte for byte, the static reply URL,
//! copy-to-destination, the §8.5 error paths (status relayed, context 0x7), the retry after
//! a failure, a duplicate request while a notification runs, the timeout, the unreachable
//! application, the over-long reply URL, and every `notify` fault.

mod support;

use bitsmock::client::{Options, Uploader};
use bitsmock::journal::What;
use bitsmock::notify::{AppUrl, Application, Mode, Notifications, ReplyUrl};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;

// ---------------------------------------------------------------------------------------
// The in-test server application
// ---------------------------------------------------------------------------------------

/// One notification as the application saw it.
#[derive(Debug, Clone)]
struct Seen {
    target: String,
    headers: Vec<(String, String)>,
    /// The request body's length and fingerprint; the bytes themselves up to 1 MiB.
    size: u64,
    print: u64,
    body: Option<Vec<u8>>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the application answers.
#[derive(Clone, Default)]
struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    /// By reference: write this to `BITS-Response-DataFile-Name`.
    reply_file: Option<Vec<u8>>,
    /// Wait this long before answering.
    delay: Duration,
}

impl Answer {
    fn ok() -> Answer {
        Answer {
            status: 200,
            ..Answer::default()
        }
    }

    fn status(status: u16) -> Answer {
        Answer {
            status,
            ..Answer::default()
        }
    }
}

type Decide = dyn Fn(&Seen, usize) -> Answer + Send + Sync;

struct App {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Notifications being answered now, and the most ever at once.
    busy: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl App {
    /// An application on 127.0.0.1 that answers the Nth notification (0-based) as `decide` says.
    async fn start(decide: impl Fn(&Seen, usize) -> Answer + Send + Sync + 'static) -> App {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let busy: Arc<AtomicUsize> = Arc::default();
        let most: Arc<AtomicUsize> = Arc::default();
        let decide: Arc<Decide> = Arc::new(decide);
        let (s, b, m) = (seen.clone(), busy.clone(), most.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (seen, busy, most, decide) = (s.clone(), b.clone(), m.clone(), decide.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let (seen, busy, most, decide) =
                            (seen.clone(), busy.clone(), most.clone(), decide.clone());
                        async move {
                            let now = busy.fetch_add(1, Ordering::SeqCst) + 1;
                            most.fetch_max(now, Ordering::SeqCst);
                            let answer = handle(req, &seen, &*decide).await;
                            busy.fetch_sub(1, Ordering::SeqCst);
                            Ok::<_, std::convert::Infallible>(answer)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        App {
            addr,
            seen,
            busy,
            most,
            task,
        }
    }

    /// An application that answers every notification 200 with `body` as the reply.
    async fn replying(body: Vec<u8>) -> App {
        App::start(move |_, _| Answer {
            body: body.clone(),
            ..Answer::ok()
        })
        .await
    }

    fn url(&self, path: &str) -> AppUrl {
        AppUrl::parse(&format!("http://{}{path}", self.addr)).unwrap()
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    req: http::Request<hyper::body::Incoming>,
    seen: &Mutex<Vec<Seen>>,
    decide: &Decide,
) -> http::Response<Full<Bytes>> {
    let target = req
        .uri()
        .path_and_query()
        .map_or("/".into(), |p| p.to_string());
    let mut headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("?").to_owned()))
        .collect();
    // hyper folds the request line's version away; the test wants to see HTTP/1.1.
    headers.push(("x-version".into(), format!("{:?}", req.version())));
    let mut body = req.into_body();
    let mut print = Fingerprint::default();
    let mut size = 0u64;
    let mut kept = Some(Vec::new());
    while let Some(Ok(frame)) = body.frame().await {
        if let Some(data) = frame.data_ref() {
            print.update(data);
            size += data.len() as u64;
            if let Some(k) = &mut kept {
                if k.len() + data.len() > 1 << 20 {
                    kept = None;
                } else {
                    k.extend_from_slice(data);
                }
            }
        }
    }
    let one = Seen {
        target,
        headers,
        size,
        print: print.finish(),
        body: kept,
    };
    let n = {
        let mut all = seen.lock().unwrap();
        all.push(one.clone());
        all.len() - 1
    };
    let answer = decide(&one, n);
    tokio::time::sleep(answer.delay).await;
    if let (Some(bytes), Some(path)) = (
        &answer.reply_file,
        one.header("BITS-Response-DataFile-Name"),
    ) {
        std::fs::write(path, bytes).unwrap();
    }
    let mut response = http::Response::new(Full::new(Bytes::from(answer.body)));
    *response.status_mut() = http::StatusCode::from_u16(answer.status).unwrap();
    for (name, value) in answer.headers {
        response
            .headers_mut()
            .insert(name, http::HeaderValue::from_str(&value).unwrap());
    }
    response
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A server whose `/reply/` jobs notify `url` in `mode`.
async fn server(url: AppUrl, mode: Mode, adjust: impl FnOnce(&mut bitsmock::Config)) -> Fixture {
    start_with(|c| {
        c.vdir.reply_prefix = vec!["reply".into()];
        c.notify = Notifications {
            applications: vec![Application {
                prefix: vec!["reply".into()],
                url,
                mode,
            }],
            ..Notifications::default()
        };
        c.vdir.notify_prefixes = c.notify.prefixes();
        adjust(c);
    })
    .await
}

fn options() -> Options {
    Options {
        fragment_size: 64 * 1024,
        backoff_base: Duration::from_millis(2),
        backoff_cap: Duration::from_millis(20),
        max_retries: 3,
        request_timeout: Duration::from_secs(20),
        connect_timeout: Duration::from_secs(5),
        reply_chunk: 1000,
        ..Options::default()
    }
}

fn sha(bytes: &[u8]) -> Vec<u8> {
    Sha256::digest(bytes).to_vec()
}

/// FNV-1a over 64-bit words (the tail zero-padded) and the length: order-sensitive, and
/// several times faster than SHA-256 in an unoptimised test build, which matters at 256 MiB.
#[derive(Default)]
struct Fingerprint {
    hash: u64,
    len: u64,
    tail: Vec<u8>,
}

impl Fingerprint {
    fn update(&mut self, mut bytes: &[u8]) {
        self.len += bytes.len() as u64;
        if !self.tail.is_empty() {
            let take = (8 - self.tail.len()).min(bytes.len());
            self.tail.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.tail.len() < 8 {
                return;
            }
            let word = u64::from_le_bytes(self.tail[..8].try_into().unwrap());
            self.mix(word);
            self.tail.clear();
        }
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            self.mix(u64::from_le_bytes(w.try_into().unwrap()));
        }
        self.tail.extend_from_slice(words.remainder());
    }

    fn mix(&mut self, word: u64) {
        self.hash = (self.hash ^ word).wrapping_mul(0x0000_0100_0000_01B3);
    }

    fn finish(mut self) -> u64 {
        if !self.tail.is_empty() {
            self.tail.resize(8, 0);
            let word = u64::from_le_bytes(self.tail[..8].try_into().unwrap());
            self.mix(word);
        }
        let len = self.len;
        self.mix(len);
        self.hash
    }
}

/// Creates a session and sends all but the last byte; returns the session id.
async fn nearly(conn: &mut Conn, target: &str, data: &[u8]) -> String {
    let created = conn.ok(&Req::create(target)).await;
    let id = created.session_id().unwrap().to_owned();
    let total = data.len() as u64;
    let ack = conn
        .ok(&Req::fragment(
            target,
            &id,
            0,
            total,
            &data[..data.len() - 1],
        ))
        .await;
    assert_eq!(ack.received(), Some(total - 1));
    id
}

/// The final fragment (the last byte) of `data`.
fn last(target: &str, id: &str, data: &[u8]) -> Req {
    let total = data.len() as u64;
    Req::fragment(target, id, total - 1, total, &data[data.len() - 1..])
}

/// The notification events, oldest first.
fn notifications(f: &Fixture) -> Vec<What> {
    f.running
        .server
        .events()
        .into_iter()
        .map(|e| e.what)
        .filter(|w| matches!(w, What::Notification { .. }))
        .collect()
}

#[track_caller]
fn assert_relayed(ack: &Resp, status: u16, code: &str) {
    assert_eq!(ack.status, status, "{ack:?}");
    assert_eq!(ack.header("BITS-Error-Context"), Some("0x7"), "{ack:?}");
    assert_eq!(ack.header("BITS-Error-Code"), Some(code), "{ack:?}");
    assert_eq!(ack.header("BITS-Reply-URL"), None, "{ack:?}");
}

// ---------------------------------------------------------------------------------------
// Both modes, byte for byte
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn by_value_the_application_gets_the_upload_and_the_client_downloads_its_reply() {
    let reply: Vec<u8> = data(70_000, 7);
    let app = App::replying(reply.clone()).await;
    let f = server(app.url("/handle?k=v"), Mode::Value, |_| {}).await;
    let (source, bytes) = f.source(300_000);
    let url = f.url("/reply/in.bin?order=42");
    let summary = Uploader::new(options())
        .upload(&source, &url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let seen = app.seen();
    assert_eq!(seen.len(), 1, "one notification");
    let n = &seen[0];
    assert_eq!(
        n.target, "/handle?k=v&order=42",
        "the destination's query appended"
    );
    assert_eq!(n.header("x-version"), Some("HTTP/1.1"));
    assert_eq!(n.header("user-agent"), Some("BITSExts 1.5"));
    assert_eq!(n.header("host"), Some(app.addr.to_string().as_str()));
    assert_eq!(n.header("bits-original-request-url"), Some(url.as_str()));
    assert_eq!(n.header("content-length"), Some("300000"));
    assert_eq!(n.header("bits-request-datafile-name"), None);
    assert_eq!(n.header("bits-response-datafile-name"), None);
    assert_eq!(n.size, 300_000);
    assert_eq!(n.body.as_deref(), Some(&bytes[..]), "exactly the upload");

    let got = summary.reply.expect("a reply");
    assert_same(got.body.as_deref().unwrap(), &reply, "reply downloaded");
    // In ranges: 70 GETs of 1000 bytes.
    let gets = f
        .running
        .server
        .events()
        .iter()
        .filter(|e| matches!(&e.what, What::ReplyServed { status: 206, .. }))
        .count();
    assert_eq!(gets, 70);
    // No BITS-Copy-File-To-Destination: the upload is not committed (docs/protocol.md §12.3).
    assert_eq!(f.stored("/reply/in.bin"), None);
    assert!(f.temp_files().is_empty(), "{:?}", f.temp_files());
    assert!(list(&f.root.join("BITS-Sessions/Replies")).is_empty());

    let events = notifications(&f);
    let [
        What::Notification {
            status,
            mode,
            headers,
            reply_bytes,
            relayed,
            error,
            ..
        },
    ] = events.as_slice()
    else {
        panic!("{events:?}")
    };
    assert_eq!(
        (*status, *mode, *reply_bytes, *relayed, error.as_deref()),
        (Some(200), "value", Some(70_000), Some(200), None)
    );
    assert!(headers.contains(&("User-Agent".into(), "BITSExts 1.5".into())));
    assert!(headers.contains(&("Content-Length".into(), "300000".into())));
    // The verdict reads the notification event and finds nothing wrong with the client.
    let verdict = f
        .running
        .server
        .verdict(&bitsmock::verdict::Options::default());
    assert!(verdict.passed(), "{}", verdict.summary());
    f.stop().await;
}

#[tokio::test]
async fn a_reply_that_reads_like_header_lines_is_downloaded_as_the_application_wrote_it() {
    // bitsmock re-spells header names in IIS's casing on the way out; that must stop at the
    // end of each head, or this reply would come back with `BITS-Packet-Type` lines.
    let line =
        b"\r\nBits-Packet-Type: Ack\r\nWww-Authenticate: Negotiate\r\nBits-Error-Code: 0x1\r\n";
    let reply: Vec<u8> = line.iter().copied().cycle().take(5_000).collect();
    let app = App::replying(reply.clone()).await;
    let f = server(app.url("/handle"), Mode::Value, |_| {}).await;
    let (source, _) = f.source(10_000);
    for chunk in [1000, 1 << 20] {
        let summary = Uploader::new(Options {
            reply_chunk: chunk,
            ..options()
        })
        .upload(&source, &f.url(&format!("/reply/lines-{chunk}.bin")))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let got = summary.reply.expect("a reply");
        assert_same(got.body.as_deref().unwrap(), &reply, "reply downloaded");
    }
    f.stop().await;
}

#[tokio::test]
async fn by_reference_the_application_reads_the_request_file_and_writes_the_reply_file() {
    let app = App::start(|seen, _| {
        // The application reads the upload where the server says it is.
        let path = seen.header("BITS-Request-DataFile-Name").unwrap();
        let upload = std::fs::read(path).unwrap();
        let mut reply = b"receipt:".to_vec();
        reply.extend_from_slice(&sha(&upload));
        Answer {
            reply_file: Some(reply),
            ..Answer::ok()
        }
    })
    .await;
    let f = server(app.url("/"), Mode::Reference, |_| {}).await;
    let (source, bytes) = f.source(200_000);
    let url = f.url("/reply/deep/in.bin");
    let summary = Uploader::new(options())
        .upload(&source, &url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let n = &app.seen()[0];
    assert_eq!(n.header("content-length"), Some("0"));
    assert_eq!(n.size, 0);
    let root = f.root.canonicalize().unwrap();
    let request_file = n.header("BITS-Request-DataFile-Name").unwrap();
    let response_file = n.header("BITS-Response-DataFile-Name").unwrap();
    assert!(request_file.starts_with(root.join("BITS-Sessions/Requests").to_str().unwrap()));
    assert!(response_file.starts_with(root.join("BITS-Sessions/Replies").to_str().unwrap()));
    let mut expected = b"receipt:".to_vec();
    expected.extend_from_slice(&sha(&bytes));
    let got = summary.reply.expect("a reply");
    assert_same(got.body.as_deref().unwrap(), &expected, "reply downloaded");
    // Close deleted the request and the reply file.
    assert!(!std::path::Path::new(request_file).exists());
    assert!(!std::path::Path::new(response_file).exists());
    f.stop().await;
}

#[tokio::test]
async fn by_reference_an_application_that_writes_nothing_gives_an_empty_reply() {
    let app = App::start(|_, _| Answer::ok()).await;
    let f = server(app.url("/"), Mode::Reference, |_| {}).await;
    let mut conn = f.connect().await;
    let bytes = data(10, 1);
    let id = nearly(&mut conn, "/reply/a.bin", &bytes).await;
    let ack = conn.ok(&last("/reply/a.bin", &id, &bytes)).await;
    let reply_url = ack.header("BITS-Reply-URL").unwrap().to_owned();
    let path = reply_url.strip_prefix(&f.running.url()).unwrap();
    let got = conn.ok(&Req::get(path)).await;
    assert_eq!(got.header("Content-Length"), Some("0"));
    f.stop().await;
}

// ---------------------------------------------------------------------------------------
// The application's answer
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_static_response_url_becomes_the_reply_url_as_given() {
    let fixed = "http://cdn.test/replies/standard.bin?x=1";
    let app = App::start(move |_, _| Answer {
        headers: vec![("BITS-Static-Response-URL", fixed.into())],
        ..Answer::ok()
    })
    .await;
    let f = server(app.url("/"), Mode::Value, |_| {}).await;
    let mut conn = f.connect().await;
    let bytes = data(1000, 2);
    let id = nearly(&mut conn, "/reply/s.bin", &bytes).await;
    let ack = conn.ok(&last("/reply/s.bin", &id, &bytes)).await;
    assert_eq!(ack.received(), Some(1000));
    assert_eq!(ack.header("BITS-Reply-URL"), Some(fixed));
    // A retry gets the same answer and does not notify again (docs/protocol.md §10.17).
    let again = conn.ok(&last("/reply/s.bin", &id, &bytes)).await;
    assert_eq!(again.header("BITS-Reply-URL"), Some(fixed));
    assert_eq!(app.seen().len(), 1);
    f.stop().await;
}

#[tokio::test]
async fn copy_to_destination_also_commits_the_upload_at_close() {
    let app = App::start(|_, _| Answer {
        headers: vec![("BITS-Copy-File-To-Destination", String::new())],
        body: b"ok".to_vec(),
        ..Answer::ok()
    })
    .await;
    let f = server(app.url("/"), Mode::Value, |_| {}).await;
    let (source, bytes) = f.source(100_000);
    Uploader::new(options())
        .upload(&source, &f.url("/reply/kept.bin"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_same(&f.stored("/reply/kept.bin").unwrap(), &bytes, "committed");
    f.stop().await;
}

#[tokio::test]
async fn a_reply_url_over_2200_characters_is_400_invalid_arg() {
    let long = format!("http://cdn.test/{}", "a".repeat(2200));
    let app = App::start(move |_, _| Answer {
        headers: vec![("BITS-Static-Response-URL", long.clone())],
        ..Answer::ok()
    })
    .await;
    let f = server(app.url("/"), Mode::Value, |_| {}).await;
    let mut conn = f.connect().await;
    let bytes = data(100, 3);
    let id = nearly(&mut conn, "/reply/l.bin", &bytes).await;
    let ack = conn.send(&last("/reply/l.bin", &id, &bytes)).await.unwrap();
    assert_eq!(ack.status, 400);
    assert_eq!(ack.header("BITS-Error-Code"), Some(INVALID_ARG));
    assert_eq!(ack.header("BITS-Reply-URL"), None);
    f.stop().await;
}

// ---------------------------------------------------------------------------------------
// Errors (docs/protocol.md §8.5)
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn every_non_200_is_relayed_with_context_7_and_the_file_is_kept() {
    // 3xx, 4xx and 5xx, transient and fatal to a Windows client alike.
    let statuses = [301, 307, 400, 403, 404, 408, 409, 500, 501, 503, 505];
    let app = App::start(move |_, n| Answer::status(statuses[n])).await;
    let f = server(app.url("/"), Mode::Value, |_| {}).await;
    let mut conn = f.connect().await;
    let bytes = data(500, 4);
    let id = nearly(&mut conn, "/reply/e.bin", &bytes).await;
    for status in statuses {
        let ack = conn.send(&last("/reply/e.bin", &id, &bytes)).await.unwrap();
        let code = format!("0x{:08X}", 0x8019_0000u32 + u32::from(status));
        assert_relayed(&ack, status, &code);
        // The session keeps its complete file for the retry.
        assert_eq!(std::fs::metadata(f.temp_path(&id)).unwrap().len(), 500);
    }
    assert_eq!(
        app.seen().len(),
        statuses.len(),
        "each retry notified again"
    );
    f.stop().await;
}

#[tokio::test]
async fn an_error_code_the_application_sends_is_relayed_as_its_own() {
    let app = App::start(|_, _| Answer {
        headers: vec![("BITS-Error-Code", "0x80070005".into())],
        ..Answer::status(403)
    })
    .await;
    let f = server(app.url("/"), Mode::Value, |_| {}).await;
    let mut conn = f.connect().await;
    let bytes = data(50, 5);
    let id = nearly(&mut conn, "/reply/d.bin", &bytes).await;
    let ack = conn.send(&last("/reply/d.bin", &id, &bytes)).await.unwrap();
    assert_relayed(&ack, 403, "0x80070005");
    f.stop().await;
}

#[tokio::test]
async fn a_retried_final_fragment_after_a_failure_notifies_again_and_then_never() {
    let app = App::start(|_, n| match n {
        0 => Answer::status(503),
        _ => Answer {
            body: b"second time lucky".to_vec(),
            ..Answer::ok()
        },
    })
    .await;
    let f = server(app.url("/"), Mode::Value, |_| {}).await;
    let mut conn = f.connect().await;
    let bytes = data(4000, 6);
    let id = nearly(&mut conn, "/reply/r.bin", &bytes).await;
    let failed = conn.send(&last("/reply/r.bin", &id, &bytes)).await.unwrap();
    assert_relayed(&failed, 503, "0x801901F7");
    // The client retries the whole final fragment (not just the last byte).
    let retry = Req::fragment("/reply/r.bin", &id, 0, 4000, &bytes);
    let ok = conn.ok(&retry).await;
    assert_eq!(ok.received(), Some(4000));
    let reply_url = ok.header("BITS-Reply-URL").expect("reply URL").to_owned();
    assert_eq!(app.seen().len(), 2);
    // Retried after success: the same URL, no third notification (§10.17).
    let again = conn.ok(&last("/reply/r.bin", &id, &bytes)).await;
    assert_eq!(again.header("BITS-Reply-URL"), Some(reply_url.as_str()));
    assert_eq!(app.seen().len(), 2);
    let path = reply_url.strip_prefix(&f.running.url()).unwrap();
    let got = conn.ok(&Req::get(path)).await;
    assert_eq!(got.body, b"second time lucky");
    // Both attempts saw the whole upload.
    assert!(
        app.seen()
            .iter()
            .all(|s| s.body.as_deref() == Some(&bytes[..]))
    );
    f.stop().await;
}

#[tokio::test]
async fn a_second_request_while_the_application_answers_waits_for_its_outcome() {
    let app = App::start(|_, _| Answer {
        body: b"once".to_vec(),
        delay: Duration::from_millis(800),
        ..Answer::ok()
    })
    .await;
    let f = server(app.url("/"), Mode::Value, |_| {}).await;
    let mut conn = f.connect().await;
    let bytes = data(2000, 8);
    let id = nearly(&mut conn, "/reply/w.bin", &bytes).await;
    // The client timed out on its first connection and retried on a second one.
    let (mut a, mut b) = (f.connect().await, f.connect().await);
    let first = last("/reply/w.bin", &id, &bytes);
    let second = first.clone();
    let one = tokio::spawn(async move { a.ok(&first).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let two = tokio::spawn(async move { b.ok(&second).await });
    let (one, two) = (one.await.unwrap(), two.await.unwrap());
    assert!(one.header("BITS-Reply-URL").is_some());
    assert_eq!(one.header("BITS-Reply-URL"), two.header("BITS-Reply-URL"));
    assert_eq!(
        app.seen().len(),
        1,
        "the second request got the first's result"
    );
    assert_eq!(app.most.load(Ordering::SeqCst), 1);
    assert_eq!(app.busy.load(Ordering::SeqCst), 0);
    f.stop().await;
}

#[tokio::test]
async fn duplicates_after_a_failure_are_serialized_never_concurrent() {
    // Each notification takes a while and fails, so every waiting request notifies again:
    // one after the other.
    let app = App::start(|_, _| Answer {
        delay: Duration::from_millis(300),
        ..Answer::status(500)
    })
    .await;
    let f = server(app.url("/"), Mode::Value, |_| {}).await;
    let mut conn = f.connect().await;
    let bytes = data(100, 9);
    let id = nearly(&mut conn, "/reply/c.bin", &bytes).await;
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let mut c = f.connect().await;
        let req = last("/reply/c.bin", &id, &bytes);
        tasks.push(tokio::spawn(async move { c.send(&req).await.unwrap() }));
    }
    for t in tasks {
        assert_relayed(&t.await.unwrap(), 500, "0x801901F4");
    }
    assert_eq!(app.seen().len(), 3);
    assert_eq!(app.most.load(Ordering::SeqCst), 1, "never two at once");
    f.stop().await;
}

#[tokio::test]
async fn an_application_slower_than_the_timeout_gets_408_with_context_7() {
    let app = App::start(|_, n| Answer {
        delay: if n == 0 {
            Duration::from_secs(3)
        } else {
            Duration::ZERO
        },
        body: b"in time".to_vec(),
        ..Answer::ok()
    })
    .await;
    let f = server(app.url("/"), Mode::Value, |c| {
        c.notify.timeout = Duration::from_millis(300);
    })
    .await;
    let mut conn = f.connect().await;
    let bytes = data(100, 10);
    let id = nearly(&mut conn, "/reply/t.bin", &bytes).await;
    let started = std::time::Instant::now();
    let ack = conn.send(&last("/reply/t.bin", &id, &bytes)).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_relayed(&ack, 408, "0x80190198");
    // The retry notifies again and gets through.
    let ok = conn.ok(&last("/reply/t.bin", &id, &bytes)).await;
    assert!(ok.header("BITS-Reply-URL").is_some());
    let events = notifications(&f);
    let What::Notification { error, status, .. } = &events[0] else {
        unreachable!()
    };
    assert_eq!(*status, None);
    assert!(error.as_deref().unwrap().contains("did not answer in time"));
    f.stop().await;
}

#[tokio::test]
async fn an_unreachable_application_is_a_transient_503_the_client_retries() {
    // A port nobody listens on: bind one, then close it.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = AppUrl::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
    let f = server(url, Mode::Value, |_| {}).await;
    let mut conn = f.connect().await;
    let bytes = data(100, 11);
    let id = nearly(&mut conn, "/reply/u.bin", &bytes).await;
    let ack = conn.send(&last("/reply/u.bin", &id, &bytes)).await.unwrap();
    assert_relayed(&ack, 503, "0x801901F7");
    // The reference client treats it as transient: it retries, then gives up.
    let (source, _) = f.source(100);
    let err = Uploader::new(Options {
        max_retries: 2,
        ..options()
    })
    .upload(&source, &f.url("/reply/u2.bin"))
    .await
    .expect_err("never succeeds");
    let retried = notifications(&f)
        .iter()
        .filter(|w| {
            matches!(
                w,
                What::Notification {
                    relayed: Some(503),
                    ..
                }
            )
        })
        .count();
    assert!(retried >= 3, "{retried} notifications; {err}");
    f.stop().await;
}

#[tokio::test]
async fn an_application_answering_garbage_is_a_502() {
    // Not HTTP at all.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(b"\x00\x01garbage\r\n\r\n").await;
        }
    });
    let url = AppUrl::parse(&format!("http://{addr}/")).unwrap();
    let f = server(url, Mode::Reference, |_| {}).await;
    let mut conn = f.connect().await;
    let bytes = data(100, 12);
    let id = nearly(&mut conn, "/reply/g.bin", &bytes).await;
    let ack = conn.send(&last("/reply/g.bin", &id, &bytes)).await.unwrap();
    assert_relayed(&ack, 502, "0x801901F6");
    task.abort();
    f.stop().await;
}

#[tokio::test]
async fn a_reply_larger_than_the_limit_is_refused() {
    let app = App::start(|_, _| Answer {
        body: vec![b'x'; 5000],
        ..Answer::ok()
    })
    .await;
    let f = server(app.url("/"), Mode::Value, |c| c.notify.max_reply = 4096).await;
    let mut conn = f.connect().await;
    let bytes = data(100, 13);
    let id = nearly(&mut conn, "/reply/big.bin", &bytes).await;
    let ack = conn
        .send(&last("/reply/big.bin", &id, &bytes))
        .await
        .unwrap();
    assert_eq!(ack.status, 500);
    assert_eq!(ack.header("BITS-Error-Code"), Some(TOO_LARGE));
    assert_eq!(ack.header("BITS-Error-Context"), Some("0x7"));
    assert!(
        list(&f.root.join("BITS-Sessions/Replies")).is_empty(),
        "partial reply deleted"
    );
    f.stop().await;
}

#[tokio::test]
async fn the_iis_relative_reply_url_is_an_option_the_client_resolves() {
    let app = App::start(|_, _| Answer {
        body: b"relative".to_vec(),
        ..Answer::ok()
    })
    .await;
    let f = server(app.url("/"), Mode::Value, |c| {
        c.notify.reply_url = ReplyUrl::Relative;
    })
    .await;
    let mut conn = f.connect().await;
    let bytes = data(100, 14);
    let id = nearly(&mut conn, "/reply/x/rel.bin", &bytes).await;
    let ack = conn.ok(&last("/reply/x/rel.bin", &id, &bytes)).await;
    assert_eq!(
        ack.header("BITS-Reply-URL"),
        Some(format!("BITS-Sessions\\Replies\\{id}\\responsefile.bin").as_str())
    );
    conn.ok(&Req::cancel("/reply/x/rel.bin", &id)).await;
    let (source, _) = f.source(5000);
    let summary = Uploader::new(options())
        .upload(&source, &f.url("/reply/x/rel2.bin"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        summary.reply.unwrap().body.as_deref(),
        Some(&b"relative"[..])
    );
    f.stop().await;
}

// ---------------------------------------------------------------------------------------
// Faults on the application leg
// ---------------------------------------------------------------------------------------

async fn faulted(rule: &str, app: &App, adjust: impl FnOnce(&mut bitsmock::Config)) -> Fixture {
    let rules = rules(&[rule]);
    server(app.url("/"), Mode::Value, move |c| {
        c.rules = rules;
        adjust(c);
    })
    .await
}

/// Uploads `data(100)` to `target` up to the final fragment and returns its Ack.
async fn final_ack(f: &Fixture, target: &str) -> (Conn, String, Resp) {
    let mut conn = f.connect().await;
    let bytes = data(100, 15);
    let id = nearly(&mut conn, target, &bytes).await;
    let ack = conn.send(&last(target, &id, &bytes)).await.unwrap();
    (conn, id, ack)
}

fn fault_of(w: &What) -> Option<String> {
    match w {
        What::Notification { fault, .. } => fault.as_ref().map(|f| f.effect.to_string()),
        _ => None,
    }
}

#[tokio::test]
async fn fault_notify_delay_makes_the_application_slow() {
    let app = App::start(|_, _| Answer::ok()).await;
    // Within the timeout: the answer is only later.
    let f = faulted("fault=notify how=delay delay=400ms", &app, |_| {}).await;
    let started = std::time::Instant::now();
    let (_, _, ack) = final_ack(&f, "/reply/d.bin").await;
    assert_eq!(ack.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(
        fault_of(&notifications(&f)[0]).as_deref(),
        Some("delayed the application's answer by 400ms")
    );
    f.stop().await;
    // Beyond it: 408.
    let f = faulted("fault=notify how=delay delay=5s", &app, |c| {
        c.notify.timeout = Duration::from_millis(200);
    })
    .await;
    let (_, _, ack) = final_ack(&f, "/reply/d.bin").await;
    assert_relayed(&ack, 408, "0x80190198");
    f.stop().await;
}

#[tokio::test]
async fn fault_notify_refuse_takes_the_application_down_for_its_matches() {
    let app = App::start(|_, _| Answer::ok()).await;
    let f = faulted("fault=notify how=refuse nth=1", &app, |_| {}).await;
    let (mut conn, id, ack) = final_ack(&f, "/reply/r.bin").await;
    assert_relayed(&ack, 503, "0x801901F7");
    assert!(app.seen().is_empty(), "nothing reached the application");
    // The second notification of the session is not the rule's `nth`: it gets through.
    let ack = conn.ok(&last("/reply/r.bin", &id, &data(100, 15))).await;
    assert!(ack.header("BITS-Reply-URL").is_some());
    assert_eq!(app.seen().len(), 1);
    assert_eq!(f.fired(), vec![1]);
    f.stop().await;
}

#[tokio::test]
async fn fault_notify_status_answers_the_chosen_status() {
    let app = App::start(|_, _| Answer::ok()).await;
    let f = faulted("fault=notify how=status status=409", &app, |_| {}).await;
    let (_, _, ack) = final_ack(&f, "/reply/s.bin").await;
    assert_relayed(&ack, 409, "0x80190199");
    assert!(app.seen().is_empty());
    f.stop().await;
}

#[tokio::test]
async fn fault_notify_garbage_answers_garbage() {
    let app = App::start(|_, _| Answer::ok()).await;
    let f = faulted("fault=notify how=garbage", &app, |_| {}).await;
    let (_, _, ack) = final_ack(&f, "/reply/g.bin").await;
    assert_relayed(&ack, 502, "0x801901F6");
    f.stop().await;
}

#[tokio::test]
async fn fault_notify_twice_sends_a_duplicate_the_application_must_absorb() {
    let app = App::start(|_, n| Answer {
        body: format!("answer {n}").into_bytes(),
        ..Answer::ok()
    })
    .await;
    let f = faulted("fault=notify how=twice", &app, |_| {}).await;
    let (mut conn, _, ack) = final_ack(&f, "/reply/t.bin").await;
    assert_eq!(ack.status, 200);
    let seen = app.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].body.as_deref(), Some(&data(100, 15)[..]));
    assert_eq!(seen[0].body, seen[1].body);
    let path = ack
        .header("BITS-Reply-URL")
        .unwrap()
        .strip_prefix(&f.running.url())
        .unwrap()
        .to_owned();
    assert_eq!(
        conn.ok(&Req::get(&path)).await.body,
        b"answer 1",
        "the second counts"
    );
    let relayed: Vec<Option<u16>> = notifications(&f)
        .iter()
        .map(|w| match w {
            What::Notification { relayed, .. } => *relayed,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(relayed, vec![None, Some(200)]);
    f.stop().await;
}

#[tokio::test]
async fn notify_fault_decisions_follow_the_seed() {
    let app = App::start(|_, _| Answer::ok()).await;
    let mut runs = Vec::new();
    for _ in 0..2 {
        let rules = rules(&["fault=notify how=status status=503 probability=0.5"]);
        let f = server(app.url("/"), Mode::Value, move |c| {
            c.rules = rules;
            c.seed = 77;
        })
        .await;
        let mut statuses = Vec::new();
        for i in 0..8 {
            let (_, _, ack) = final_ack(&f, &format!("/reply/p{i}.bin")).await;
            statuses.push(ack.status);
        }
        runs.push(statuses);
        f.stop().await;
    }
    assert_eq!(runs[0], runs[1]);
    assert!(
        runs[0].contains(&200) && runs[0].contains(&503),
        "{:?}",
        runs[0]
    );
}

// ---------------------------------------------------------------------------------------
// A large upload by value, with bounded server memory
// ---------------------------------------------------------------------------------------

/// A size field of /proc/PID/status (`VmHWM:`), in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

#[tokio::test]
async fn a_256_mib_upload_by_value_streams_both_ways_in_bounded_server_memory() {
    const SIZE: usize = 256 << 20;
    // The application answers with a reply as large as a fragment, so the reply leg streams
    // too; it hashes what it is sent.
    let reply: Vec<u8> = data(8 << 20, 16);
    let app = App::replying(reply.clone()).await;
    let notify = format!("http://{}/big", app.addr);
    let serve = support::serve::Serve::start_with(
        &[
            "--listen",
            "127.0.0.1:0",
            "--notify",
            &notify,
            "--notify-type",
            "value",
        ],
        |c| {
            c.env("RUST_LOG", "warn");
        },
    );
    let before = status_kib(serve.pid(), "VmHWM:");
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("big.bin");
    let mut expected = Fingerprint::default();
    {
        use std::io::Write;
        let mut file = std::io::BufWriter::new(std::fs::File::create(&source).unwrap());
        for i in 0..(SIZE / (1 << 20)) {
            let chunk = data(1 << 20, 1000 + i as u64);
            expected.update(&chunk);
            file.write_all(&chunk).unwrap();
        }
        file.flush().unwrap();
    }
    let expected = expected.finish();
    let reply_out = dir.path().join("reply.bin");
    let started = std::time::Instant::now();
    let summary = Uploader::new(Options {
        fragment_size: 8 << 20,
        reply_chunk: 1 << 20,
        reply_out: Some(reply_out.clone()),
        request_timeout: Duration::from_secs(120),
        ..options()
    })
    .upload(&source, &format!("http://{}/reply/big.bin", serve.addr))
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let took = started.elapsed();
    let peak = status_kib(serve.pid(), "VmHWM:");
    let seen = app.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].size, SIZE as u64);
    assert_eq!(
        seen[0].print, expected,
        "the application got exactly the upload"
    );
    assert_eq!(summary.bytes, SIZE as u64);
    assert_same(
        &std::fs::read(&reply_out).unwrap(),
        &reply,
        "reply downloaded",
    );
    eprintln!(
        "256 MiB by value: {:.1} s, server VmHWM {} KiB before, {} KiB after",
        took.as_secs_f64(),
        before,
        peak
    );
    // Fragments, the upload and the reply all stream: the server holds buffers and one
    // reply range, never the upload.
    assert!(peak < 64 * 1024, "server peak RSS {peak} KiB");
    serve.stop();
}

// ---------------------------------------------------------------------------------------
// The two-command try: bitsmock notify-echo + bitsmock serve --notify
// ---------------------------------------------------------------------------------------

/// `bitsmock notify-echo --listen 127.0.0.1:0` as a child; its address from the banner.
struct Echo(std::process::Child, SocketAddr);

impl Echo {
    fn start() -> Echo {
        use std::io::BufRead;
        let mut child = support::serve::bitsmock(&["notify-echo", "--listen", "127.0.0.1:0"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run bitsmock notify-echo");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("bitsmock notify-echo listening on http://")
            .and_then(|a| a.trim_end_matches('/').parse().ok())
            .unwrap_or_else(|| panic!("banner {line:?}"));
        Echo(child, addr)
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn notify_echo_answers_both_modes_with_the_uploads_digest() {
    let echo = Echo::start();
    for mode in ["reference", "value"] {
        let notify = format!("http://{}/", echo.1);
        let serve = support::serve::Serve::start(&[
            "--listen",
            "127.0.0.1:0",
            "--notify",
            &notify,
            "--notify-type",
            mode,
        ]);
        let dir = tempfile::tempdir().unwrap();
        let (source, bytes) = source_in(dir.path(), 1_000_000);
        let url = format!("http://{}/reply/in.bin", serve.addr);
        let summary = Uploader::new(options())
            .upload(&source, &url)
            .await
            .unwrap_or_else(|e| panic!("{mode}: {e}"));
        let receipt: serde_json::Value =
            serde_json::from_slice(summary.reply.unwrap().body.as_deref().unwrap()).unwrap();
        let digest: String = sha(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(receipt["mode"], mode);
        assert_eq!(receipt["size"], 1_000_000);
        assert_eq!(receipt["sha256"], digest.as_str());
        assert_eq!(receipt["url"], url.as_str());
        serve.stop();
    }
}

#[test]
fn a_bad_notify_flag_or_profile_is_a_clear_error() {
    use support::serve::{bitsmock, run, text};
    let out = run(bitsmock(&["serve", "--notify", "https://app.test/"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("plain http:// URL"),
        "{}",
        text(&out.stderr)
    );
    let out = run(bitsmock(&["serve", "--notify-type", "both"]));
    assert_eq!(out.status.code(), Some(2));
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("p.toml");
    std::fs::write(
        &profile,
        "name = \"p\"\ndescription = \"d\"\n[server]\nnotify = { \"/drop/\" = \"http://127.0.0.1:9/\" }\n",
    )
    .unwrap();
    let out = run(bitsmock(&[
        "serve",
        "--dir",
        dir.path().join("up").to_str().unwrap(),
        "--profile",
        profile.to_str().unwrap(),
    ]));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("outside the reply path"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn a_reply_file_that_is_a_link_is_never_followed() {
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.txt");
    std::fs::write(&secret, b"outside the upload root").unwrap();
    let link_to = secret.clone();
    // The first answer leaves a link as its reply; the second a plain file.
    let app = App::start(move |seen, n| {
        let path = std::path::Path::new(seen.header("BITS-Response-DataFile-Name").unwrap());
        match n {
            0 => std::os::unix::fs::symlink(&link_to, path).unwrap(),
            _ => std::fs::write(path, b"plain").unwrap(),
        }
        Answer::ok()
    })
    .await;
    let f = server(app.url("/"), Mode::Reference, |_| {}).await;
    let mut conn = f.connect().await;
    let bytes = data(100, 17);
    let id = nearly(&mut conn, "/reply/link.bin", &bytes).await;
    let ack = conn
        .send(&last("/reply/link.bin", &id, &bytes))
        .await
        .unwrap();
    assert_eq!(ack.status, 500, "{ack:?}");
    assert_eq!(ack.header("BITS-Reply-URL"), None);
    // Retried: a plain file this time; then a link swapped in behind the server's back.
    let ok = conn.ok(&last("/reply/link.bin", &id, &bytes)).await;
    let path = ok
        .header("BITS-Reply-URL")
        .unwrap()
        .strip_prefix(&f.running.url())
        .unwrap()
        .to_owned();
    assert_eq!(conn.ok(&Req::get(&path)).await.body, b"plain");
    let reply_file = app.seen()[1]
        .header("BITS-Response-DataFile-Name")
        .unwrap()
        .to_owned();
    std::fs::remove_file(&reply_file).unwrap();
    std::os::unix::fs::symlink(&secret, &reply_file).unwrap();
    let got = conn.send(&Req::get(&path)).await.unwrap();
    assert_eq!(got.status, 500);
    assert!(!got.body.windows(7).any(|w| w == b"outside"));
    assert_eq!(std::fs::read(&secret).unwrap(), b"outside the upload root");
    f.stop().await;
}

#[tokio::test]
async fn an_upload_deleted_while_waiting_for_the_retry_makes_the_client_start_over() {
    let app = App::start(|_, _| Answer::status(503)).await;
    let f = server(app.url("/"), Mode::Value, |_| {}).await;
    let mut conn = f.connect().await;
    let bytes = data(100, 18);
    let id = nearly(&mut conn, "/reply/v.bin", &bytes).await;
    let failed = conn.send(&last("/reply/v.bin", &id, &bytes)).await.unwrap();
    assert_relayed(&failed, 503, "0x801901F7");
    std::fs::remove_file(f.temp_path(&id)).unwrap();
    let gone = conn.send(&last("/reply/v.bin", &id, &bytes)).await.unwrap();
    assert_eq!(gone.status, 500);
    assert_eq!(gone.header("BITS-Error-Code"), Some(SESSION_NOT_FOUND));
    assert_eq!(app.seen().len(), 1, "no notification without the upload");
    assert!(f.running.server.sessions().is_empty());
    f.stop().await;
}

#[tokio::test]
async fn each_reply_directory_goes_to_its_own_application_and_the_rest_to_the_built_in_one() {
    let orders = App::start(|_, _| Answer {
        body: b"from orders".to_vec(),
        ..Answer::ok()
    })
    .await;
    let scans = App::start(|seen, _| Answer {
        reply_file: Some(format!("from scans, {} bytes", seen.size).into_bytes()),
        ..Answer::ok()
    })
    .await;
    let (o, sc) = (orders.url("/o"), scans.url("/s"));
    let f = start_with(move |c| {
        let app = |prefix: &str, url, mode| Application {
            prefix: bitsmock::proto::destination::prefix_segments(prefix),
            url,
            mode,
        };
        c.notify.applications = vec![
            app("/reply/orders/", o, Mode::Value),
            app("/reply/scans/", sc, Mode::Reference),
        ];
        c.vdir.notify_prefixes = c.notify.prefixes();
    })
    .await;
    let (source, _) = f.source(3000);
    let reply = |path: &'static str| {
        let (source, url) = (source.clone(), f.url(path));
        async move {
            let s = Uploader::new(options())
                .upload(&source, &url)
                .await
                .unwrap_or_else(|e| panic!("{path}: {e}"));
            s.reply.unwrap().body.unwrap()
        }
    };
    assert_eq!(reply("/reply/orders/a.bin").await, b"from orders");
    assert_eq!(
        reply("/reply/scans/deep/b.bin").await,
        b"from scans, 0 bytes"
    );
    let builtin: serde_json::Value =
        serde_json::from_slice(&reply("/reply/other/c.bin").await).unwrap();
    assert_eq!(builtin["name"], "c.bin");
    assert_eq!((orders.seen().len(), scans.seen().len()), (1, 1));
    // Only the built-in application commits its upload at Close.
    assert!(f.stored("/reply/other/c.bin").is_some());
    assert!(f.stored("/reply/orders/a.bin").is_none());
    f.stop().await;
}

#[tokio::test]
async fn a_retried_final_fragment_cut_mid_body_does_not_notify() {
    let app = App::start(|_, n| match n {
        0 => Answer::status(503),
        _ => Answer::ok(),
    })
    .await;
    let rules = rules(&["packet=fragment nth=3 fault=reset-mid-body after-fraction=0.5"]);
    let f = server(app.url("/"), Mode::Value, move |c| c.rules = rules).await;
    let mut conn = f.connect().await;
    let bytes = data(2000, 19);
    let id = nearly(&mut conn, "/reply/cut.bin", &bytes).await;
    let failed = conn
        .send(&last("/reply/cut.bin", &id, &bytes))
        .await
        .unwrap();
    assert_relayed(&failed, 503, "0x801901F7");
    let whole = Req::fragment("/reply/cut.bin", &id, 0, 2000, &bytes);
    assert!(
        conn.send(&whole).await.is_err(),
        "the third fragment is reset"
    );
    assert_eq!(app.seen().len(), 1, "no notification for a cut request");
    let mut conn = f.connect().await;
    let ok = conn.ok(&whole).await;
    assert!(ok.header("BITS-Reply-URL").is_some());
    assert_eq!(app.seen().len(), 2);
    f.stop().await;
}
