//! The reference client (`bitsmock::client`) against scripted misbehaviour, over loopback.
//!
//! Lies it must reject (a received range ahead of what was sent or beyond the file, another
//! session id, a malformed or missing `BITS-Received-Content-Range`, an Ack without
//! `BITS-Packet-Type`, an unknown protocol) come from bitsmock's `--fault` rules or from a
//! tiny scripted TCP server in this file. The other tests cover Close-Session retries,
//! fragment shrinking, timeouts, upload-reply, `BITS-Host-Id`, bulk runs and the CLI.

mod support;

use bitsmock::Config;
use bitsmock::client::{Options, UploadError, Uploader};
use bitsmock::proto::PacketType;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use support::serve::{bitsmock, run, text};
use support::{Fixture, PROTOCOL, Req, source_in, start_rules_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

/// A bitsmock server with these `--fault` rules.
async fn bed(rules: &[&str], adjust: impl FnOnce(&mut Config)) -> Fixture {
    start_rules_with(rules, adjust).await
}

fn options() -> Options {
    Options {
        fragment_size: 64 * KIB,
        backoff_base: Duration::from_millis(2),
        backoff_cap: Duration::from_millis(20),
        max_retries: 6,
        request_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(5),
        ..Options::default()
    }
}

fn client() -> Uploader {
    Uploader::new(options())
}

// ---------------------------------------------------------------------------------------
// Lies the client must reject, then survive by retrying
// ---------------------------------------------------------------------------------------

/// One lying Fragment Ack: the client must call it a protocol error, resend, and still
/// deliver a byte-identical file.
async fn one_lie_is_rejected(rule: &str) {
    let bed = bed(&[rule], |_| {}).await;
    let (path, data) = bed.source(300_000);
    let summary = client()
        .upload(&path, &bed.url("/lie/a.bin"))
        .await
        .unwrap_or_else(|e| panic!("{rule}: {e}"));
    assert_eq!(bed.fired(), [1], "{rule}");
    assert_eq!(summary.counts.protocol_errors, 1, "{rule}: {summary}");
    assert_eq!(summary.counts.retries, 1, "{rule}: {summary}");
    assert_eq!(summary.counts.session_restarts, 0, "{rule}: {summary}");
    assert_eq!(
        bed.stored("/lie/a.bin").as_deref(),
        Some(&data[..]),
        "{rule}"
    );
}

#[tokio::test]
async fn a_received_range_ahead_of_what_was_sent_is_rejected() {
    one_lie_is_rejected("packet=fragment nth=2 fault=lie lie=ahead by=100").await;
}

#[tokio::test]
async fn a_received_range_beyond_the_file_is_rejected() {
    one_lie_is_rejected("packet=fragment nth=2 fault=lie lie=beyond-total").await;
}

#[tokio::test]
async fn an_ack_naming_another_session_is_rejected() {
    one_lie_is_rejected("packet=fragment nth=2 fault=lie lie=other-session").await;
}

#[tokio::test]
async fn a_malformed_received_range_is_rejected() {
    one_lie_is_rejected("packet=fragment nth=2 fault=lie lie=malformed").await;
}

#[tokio::test]
async fn a_missing_received_range_is_rejected() {
    one_lie_is_rejected("packet=fragment nth=2 fault=lie lie=missing").await;
}

#[tokio::test]
async fn a_416_without_a_received_range_is_rejected() {
    // The fault answers 416 without applying the fragment and without the header.
    one_lie_is_rejected("packet=fragment nth=2 fault=status status=416").await;
}

#[tokio::test]
async fn a_final_ack_ahead_by_nothing_is_believed() {
    // `ahead` is capped at the total, so on the final fragment it is the truth.
    let bed = bed(
        &["packet=fragment fragment=final fault=lie lie=ahead by=100"],
        |_| {},
    )
    .await;
    let (path, data) = bed.source(200_000);
    let s = client()
        .upload(&path, &bed.url("/lie/final.bin"))
        .await
        .unwrap();
    assert_eq!(s.counts.protocol_errors, 0, "{s}");
    assert_eq!(bed.stored("/lie/final.bin").as_deref(), Some(&data[..]));
}

#[tokio::test]
async fn a_server_that_keeps_lying_ends_the_upload_with_a_clear_message() {
    let bed = bed(&["packet=fragment fault=lie lie=ahead by=100"], |_| {}).await;
    let (path, _) = bed.source(300_000);
    let client = Uploader::new(Options {
        max_retries: 3,
        ..options()
    });
    let err = client
        .upload(&path, &bed.url("/lie/always.bin"))
        .await
        .expect_err("a server that always lies cannot be uploaded to");
    match &err {
        UploadError::GaveUp { step, attempts, .. } => {
            assert_eq!(*step, "Fragment");
            assert_eq!(*attempts, 4);
        }
        other => panic!("expected GaveUp, got {other:?}"),
    }
    let text = err.to_string();
    assert!(text.contains("protocol error"), "{text}");
    assert!(text.contains("ahead of the 65536 bytes sent"), "{text}");
    assert!(bed.stored("/lie/always.bin").is_none());
    // The abandoned session was cancelled: nothing is left on the server.
    assert_eq!(bed.running.server.session_count(), 0);
}

#[tokio::test]
async fn an_offset_behind_is_believed_and_the_bytes_resent() {
    let bed = bed(
        &["packet=fragment nth=3 fault=lie lie=behind by=10000"],
        |_| {},
    )
    .await;
    let (path, data) = bed.source(300_000);
    let s = client()
        .upload(&path, &bed.url("/lie/behind.bin"))
        .await
        .unwrap();
    assert_eq!(s.counts.protocol_errors, 0, "{s}");
    assert_eq!(s.counts.offset_corrections, 1, "{s}");
    assert_eq!(s.counts.bytes_sent, 300_000 + 10_000, "{s}");
    assert_eq!(bed.stored("/lie/behind.bin").as_deref(), Some(&data[..]));
}

#[tokio::test]
async fn a_416_is_followed_back_to_the_offset_it_names() {
    let bed = bed(&["packet=fragment nth=3 fault=lie lie=416 at=0"], |_| {}).await;
    let (path, data) = bed.source(300_000);
    let s = client()
        .upload(&path, &bed.url("/lie/416.bin"))
        .await
        .unwrap();
    assert_eq!(s.counts.offset_corrections, 2, "{s}");
    assert_eq!(bed.stored("/lie/416.bin").as_deref(), Some(&data[..]));
}

// ---------------------------------------------------------------------------------------
// A scripted server for answers bitsmock will not give
// ---------------------------------------------------------------------------------------

/// Answers every request with `answer(packet type, request head)`, a complete HTTP response.
async fn scripted(
    answer: impl Fn(&str, &str) -> String + Send + Sync + 'static,
) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let answer = Arc::new(answer);
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let answer = Arc::clone(&answer);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                        let mut chunk = [0u8; 8192];
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    buf.drain(..end);
                    let header = |name: &str| {
                        head.lines()
                            .filter_map(|l| l.split_once(':'))
                            .find(|(n, _)| n.trim().eq_ignore_ascii_case(name))
                            .map(|(_, v)| v.trim().to_owned())
                    };
                    let length: usize = header("Content-Length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    while buf.len() < length {
                        let mut chunk = [0u8; 65536];
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..length);
                    let packet = header("BITS-Packet-Type").unwrap_or_default();
                    let response = answer(&packet, &head);
                    if stream.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, task)
}

fn ack(status: &str, headers: &[(&str, &str)]) -> String {
    let mut text = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n");
    for (n, v) in headers {
        text.push_str(&format!("{n}: {v}\r\n"));
    }
    text.push_str("\r\n");
    text
}

/// `bytes F-L/T` of a request head → L + 1.
fn range_end(head: &str) -> String {
    head.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("Content-Range")
                .then(|| value.trim().strip_prefix("bytes "))
                .flatten()
        })
        .and_then(|r| r.split(['-', '/']).nth(1))
        .and_then(|l| l.trim().parse::<u64>().ok())
        .map_or("0".into(), |l| (l + 1).to_string())
}

#[tokio::test]
async fn an_unknown_protocol_guid_is_a_fatal_mismatch() {
    let (addr, _server) = scripted(|packet, _| match packet {
        "Create-Session" => ack(
            "200 OK",
            &[
                ("BITS-Packet-Type", "Ack"),
                ("BITS-Protocol", "{00000000-0000-0000-0000-000000000000}"),
                ("BITS-Session-Id", "{S1}"),
            ],
        ),
        _ => ack("200 OK", &[("BITS-Packet-Type", "Ack")]),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = source_in(dir.path(), 1000);
    let err = client()
        .upload(&path, &format!("http://{addr}/x.bin"))
        .await
        .expect_err("no common protocol");
    assert!(
        matches!(&err, UploadError::ProtocolMismatch { offered: Some(g) } if g.starts_with("{0000")),
        "{err:?}"
    );
    assert_eq!(err.hresult(), Some(0x8020_0022));
    assert!(err.to_string().contains(PROTOCOL), "{err}");
}

#[tokio::test]
async fn a_create_ack_without_a_protocol_is_a_fatal_mismatch() {
    let (addr, _server) = scripted(|_, _| {
        ack(
            "200 OK",
            &[("BITS-Packet-Type", "Ack"), ("BITS-Session-Id", "{S1}")],
        )
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = source_in(dir.path(), 1000);
    let err = client()
        .upload(&path, &format!("http://{addr}/x.bin"))
        .await
        .expect_err("no protocol");
    assert!(
        matches!(err, UploadError::ProtocolMismatch { offered: None }),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_ack_without_its_packet_type_is_a_protocol_error() {
    let (addr, _server) = scripted(|packet, head| match packet {
        "Create-Session" => ack(
            "200 OK",
            &[
                ("BITS-Packet-Type", "Ack"),
                ("BITS-Protocol", PROTOCOL),
                ("BITS-Session-Id", "{S1}"),
            ],
        ),
        "Fragment" => ack(
            "200 OK",
            &[("BITS-Received-Content-Range", &range_end(head))],
        ),
        _ => ack("200 OK", &[("BITS-Packet-Type", "Ack")]),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = source_in(dir.path(), 1000);
    let err = Uploader::new(Options {
        max_retries: 2,
        ..options()
    })
    .upload(&path, &format!("http://{addr}/x.bin"))
    .await
    .expect_err("never a proper Ack");
    let text = err.to_string();
    assert!(text.contains("without BITS-Packet-Type: Ack"), "{text}");
    assert!(
        matches!(
            err,
            UploadError::GaveUp {
                step: "Fragment",
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_unanswerable_challenge_names_the_scheme() {
    let (addr, _server) = scripted(|_, _| {
        ack(
            "401 Unauthorized",
            &[
                ("WWW-Authenticate", "Negotiate"),
                ("BITS-Packet-Type", "Ack"),
            ],
        )
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = source_in(dir.path(), 1000);
    let client = Uploader::new(Options {
        credentials: Some(bitsmock::client::Credentials {
            user: "u".into(),
            password: "p".into(),
        }),
        ..options()
    });
    let err = client
        .upload(&path, &format!("http://{addr}/x.bin"))
        .await
        .expect_err("Negotiate only");
    assert_eq!(err.status(), Some(401));
    assert!(err.to_string().contains("Negotiate"), "{err}");
}

#[tokio::test]
async fn a_reply_whose_last_modified_changes_is_downloaded_again() {
    // A reply server that changes its Last-Modified after the first range.
    let reply: Arc<Vec<u8>> = Arc::new((0..100u8).collect());
    let served = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let (addr, _server) = {
        let reply = Arc::clone(&reply);
        let served = Arc::clone(&served);
        scripted(move |packet, head| {
            if head.starts_with("GET ") {
                let n = served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let range = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("Range")
                            .then(|| value.trim().strip_prefix("bytes="))
                            .flatten()
                    })
                    .unwrap_or("0-");
                let (a, b) = range.split_once('-').unwrap();
                let a: usize = a.parse().unwrap();
                let b: usize = b.parse::<usize>().unwrap().min(reply.len() - 1);
                let body: String = reply[a..=b].iter().map(|&c| c as char).collect();
                let modified = if n == 0 {
                    "Mon, 01 Jan 2024 00:00:00 GMT"
                } else {
                    "Tue, 02 Jan 2024 00:00:00 GMT"
                };
                return format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {a}-{b}/{}\r\n\
                     Content-Length: {}\r\nLast-Modified: {modified}\r\n\r\n{body}",
                    reply.len(),
                    b - a + 1
                );
            }
            match packet {
                "Create-Session" => ack(
                    "200 OK",
                    &[
                        ("BITS-Packet-Type", "Ack"),
                        ("BITS-Protocol", PROTOCOL),
                        ("BITS-Session-Id", "{S1}"),
                    ],
                ),
                "Fragment" => ack(
                    "200 OK",
                    &[
                        ("BITS-Packet-Type", "Ack"),
                        ("BITS-Received-Content-Range", &range_end(head)),
                        ("BITS-Reply-URL", "/replies/r.bin"),
                    ],
                ),
                _ => ack("200 OK", &[("BITS-Packet-Type", "Ack")]),
            }
        })
        .await
    };
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = source_in(dir.path(), 1000);
    let client = Uploader::new(Options {
        reply_chunk: 30,
        ..options()
    });
    let s = client
        .upload(&path, &format!("http://{addr}/in/x.bin"))
        .await
        .unwrap();
    let reply_summary = s.reply.expect("a reply");
    assert_eq!(reply_summary.body.as_deref(), Some(&reply[..]));
    // Two ranges, the second with a new Last-Modified, then all four again from the start.
    assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 6);
}

// ---------------------------------------------------------------------------------------
// Close-Session, shrinking, timeouts, local changes
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn close_session_is_resent_after_a_503() {
    let bed = bed(
        &["packet=close-session nth=1 fault=status status=503"],
        |_| {},
    )
    .await;
    let (path, data) = bed.source(100_000);
    let s = client()
        .upload(&path, &bed.url("/close/503.bin"))
        .await
        .unwrap();
    assert_eq!(s.counts.retries, 1, "{s}");
    assert_eq!(s.counts.session_restarts, 0, "{s}");
    assert_eq!(bed.stored("/close/503.bin").as_deref(), Some(&data[..]));
}

#[tokio::test]
async fn session_not_found_on_close_restarts_from_byte_zero() {
    let bed = bed(
        // The server forgets the session right after the final Fragment Ack: Close-Session
        // gets 500 + 0x8020001F.
        &["packet=fragment fragment=final session=1 fault=lose-session scope=this"],
        |_| {},
    )
    .await;
    let (path, data) = bed.source(100_000);
    let s = client()
        .upload(&path, &bed.url("/close/gone.bin"))
        .await
        .unwrap();
    assert_eq!(s.counts.session_restarts, 1, "{s}");
    assert_eq!(s.counts.bytes_sent, 200_000, "{s}");
    assert_eq!(bed.stored("/close/gone.bin").as_deref(), Some(&data[..]));
}

#[tokio::test]
async fn a_lost_close_ack_is_reported_when_the_restart_meets_the_committed_file() {
    let bed = bed(
        &["packet=close-session session=1 fault=lose-ack how=close"],
        |_| {},
    )
    .await;
    let (path, data) = bed.source(100_000);
    let err = client()
        .upload(&path, &bed.url("/close/lost.bin"))
        .await
        .expect_err("the first Close committed the file; the restart gets 409");
    assert!(matches!(err, UploadError::CloseUnconfirmed), "{err:?}");
    assert!(err.to_string().contains("most likely committed"), "{err}");
    // ... and it did.
    assert_eq!(bed.stored("/close/lost.bin").as_deref(), Some(&data[..]));
}

#[tokio::test]
async fn a_lost_close_ack_is_survived_when_overwrites_are_allowed() {
    let bed = bed(
        &["packet=close-session session=1 fault=lose-ack how=close"],
        |c| c.vdir.allow_overwrites = true,
    )
    .await;
    let (path, data) = bed.source(100_000);
    let s = client()
        .upload(&path, &bed.url("/close/lost.bin"))
        .await
        .unwrap();
    assert_eq!(s.counts.session_restarts, 1, "{s}");
    assert_eq!(bed.stored("/close/lost.bin").as_deref(), Some(&data[..]));
}

#[tokio::test]
async fn fragments_shrink_on_413_until_they_fit() {
    let bed = bed(&[], |c| c.vdir.max_fragment_size = 100 * KIB).await;
    let (path, data) = bed.source(3 * MIB as usize + 5);
    let client = Uploader::new(Options {
        fragment_size: MIB,
        ..options()
    });
    let s = client
        .upload(&path, &bed.url("/shrink/a.bin"))
        .await
        .unwrap();
    // 1 MiB → 512 KiB → 256 KiB → 128 KiB → 64 KiB.
    assert_eq!(s.counts.fragment_shrinks, 4, "{s}");
    assert_eq!(s.fragment_size, 64 * KIB);
    assert_eq!(s.counts.retries, 0, "{s}");
    assert_eq!(bed.stored("/shrink/a.bin").as_deref(), Some(&data[..]));
}

#[tokio::test]
async fn a_hung_ack_times_out_and_the_upload_resumes() {
    let bed = bed(
        &["packet=fragment nth=2 fault=lose-ack how=hang hang=30s"],
        |_| {},
    )
    .await;
    let (path, data) = bed.source(300_000);
    let client = Uploader::new(Options {
        request_timeout: Duration::from_millis(400),
        ..options()
    });
    let started = std::time::Instant::now();
    let s = client.upload(&path, &bed.url("/hang/a.bin")).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(s.counts.retries, 1, "{s}");
    assert_eq!(s.counts.resumes, 1, "{s}");
    assert_eq!(bed.stored("/hang/a.bin").as_deref(), Some(&data[..]));
}

#[tokio::test]
async fn transient_statuses_are_retried() {
    let bed = bed(
        &[
            "packet=create-session nth=1 session=1 fault=status status=409",
            "packet=fragment nth=2 fault=status status=408",
            "packet=fragment nth=3 fault=status status=503 retry-after=0",
            "packet=fragment nth=4 fault=status status=500 code=0x80070112",
        ],
        |_| {},
    )
    .await;
    let (path, data) = bed.source(400_000);
    let s = client().upload(&path, &bed.url("/t/a.bin")).await.unwrap();
    assert_eq!(bed.fired(), [1, 1, 1, 1]);
    assert_eq!(s.counts.retries, 4, "{s}");
    assert_eq!(bed.stored("/t/a.bin").as_deref(), Some(&data[..]));
}

#[tokio::test]
async fn no_server_at_all_gives_up_with_the_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = source_in(dir.path(), 10);
    let err = Uploader::new(Options {
        max_retries: 2,
        ..options()
    })
    .upload(&path, &format!("http://{addr}/x.bin"))
    .await
    .expect_err("nobody listens");
    let text = err.to_string();
    assert!(text.contains("gave up after 3"), "{text}");
    assert!(text.contains("cannot connect"), "{text}");
}

#[tokio::test]
async fn a_source_file_changing_mid_upload_is_fatal() {
    let bed = bed(&["packet=fragment nth=1 fault=delay delay=300ms"], |_| {}).await;
    let (path, _) = bed.source(300_000);
    let grow = {
        let path = path.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap();
            std::io::Write::write_all(&mut f, b"more").unwrap();
        })
    };
    let err = client()
        .upload(&path, &bed.url("/changed/a.bin"))
        .await
        .expect_err("the file grew");
    grow.await.unwrap();
    assert!(
        matches!(err, UploadError::LocalFileChanged { .. }),
        "{err:?}"
    );
    assert_eq!(err.hresult(), Some(0x8020_001D));
    assert!(bed.stored("/changed/a.bin").is_none());
}

// ---------------------------------------------------------------------------------------
// Upload-reply, Host-Id, bulk
// ---------------------------------------------------------------------------------------

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn an_upload_reply_job_downloads_its_reply_in_ranges_before_closing() {
    let bed = bed(&[], |_| {}).await;
    let (path, data) = bed.source(150_001);
    let out = bed.dir.path().join("reply.json");
    let client = Uploader::new(Options {
        reply_out: Some(out.clone()),
        reply_chunk: 16,
        ..options()
    });
    let s = client
        .upload(&path, &bed.url("/reply/r.bin"))
        .await
        .unwrap();
    let reply = s.reply.as_ref().expect("reply");
    assert_eq!(reply.saved_to.as_deref(), Some(out.as_path()));
    let text = std::fs::read_to_string(&out).unwrap();
    assert_eq!(reply.bytes, text.len() as u64);
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["size"], 150_001);
    assert_eq!(doc["sha256"], sha256_hex(&data));
    // Ranged GETs of 16 bytes each.
    let gets = s.latency["GET reply"].count as u64;
    assert_eq!(gets, text.len().div_ceil(16) as u64);
    // The reply URL was fetched before Close-Session, which committed nothing (reply jobs
    // hand the file to the application) and freed the session.
    assert_eq!(bed.running.server.session_count(), 0);
}

#[tokio::test]
async fn a_final_ack_without_its_reply_url_is_retried_when_a_reply_is_expected() {
    let bed = bed(
        &["packet=fragment fragment=final nth=2 fault=lie lie=no-reply-url"],
        |_| {},
    )
    .await;
    let (path, data) = bed.source(100_000);
    let client = Uploader::new(Options {
        expect_reply: true,
        ..options()
    });
    let s = client
        .upload(&path, &bed.url("/reply/n.bin"))
        .await
        .unwrap();
    assert_eq!(bed.fired(), [1]);
    assert_eq!(s.counts.protocol_errors, 1, "{s}");
    let body = s.reply.and_then(|r| r.body).expect("reply in memory");
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["sha256"], sha256_hex(&data));
}

#[tokio::test]
async fn a_host_id_is_followed_on_the_same_port() {
    let bed = bed(&[], |c| {
        c.vdir.host_id = Some("localhost".into());
        c.vdir.host_id_fallback_timeout = Some(60);
    })
    .await;
    let (path, data) = bed.source(200_000);
    let s = client()
        .upload(&path, &bed.url("/farm/a.bin"))
        .await
        .unwrap();
    assert_eq!(s.host_id.as_deref(), Some("localhost"));
    assert_eq!(s.counts.host_fallbacks, 0, "{s}");
    // Create-Session, Ping (to the host id), 4 fragments, Close-Session.
    assert_eq!(s.counts.requests, 7, "{s}");
    assert_eq!(bed.stored("/farm/a.bin").as_deref(), Some(&data[..]));
}

#[tokio::test]
async fn an_unreachable_host_id_falls_back_to_the_origin_after_its_timeout() {
    // 127.0.0.2 is loopback, but the server listens on 127.0.0.1 only: refused.
    let bed = bed(&[], |c| {
        c.vdir.host_id = Some("127.0.0.2".into());
        c.vdir.host_id_fallback_timeout = Some(1);
    })
    .await;
    let (path, data) = bed.source(200_000);
    let client = Uploader::new(Options {
        backoff_cap: Duration::from_millis(100),
        max_retries: 100,
        ..options()
    });
    let started = std::time::Instant::now();
    let s = client.upload(&path, &bed.url("/farm/b.bin")).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(s.counts.host_fallbacks, 1, "{s}");
    assert!(s.counts.retries > 1, "{s}");
    assert_eq!(bed.stored("/farm/b.bin").as_deref(), Some(&data[..]));
}

#[tokio::test]
async fn exhausting_retries_on_a_host_id_falls_back_before_giving_up() {
    let bed = bed(&[], |c| {
        c.vdir.host_id = Some("127.0.0.2".into());
        c.vdir.host_id_fallback_timeout = Some(3600);
    })
    .await;
    let (path, data) = bed.source(10_000);
    let s = client()
        .upload(&path, &bed.url("/farm/c.bin"))
        .await
        .unwrap();
    assert_eq!(s.counts.host_fallbacks, 1, "{s}");
    assert_eq!(s.counts.retries, 7, "{s}");
    assert_eq!(bed.stored("/farm/c.bin").as_deref(), Some(&data[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_uploads_run_at_once_with_latency_percentiles() {
    let bed = bed(&[], |_| {}).await;
    let (path, data) = bed.source(500_003);
    let meter = Arc::new(bitsmock::client::Meter::default());
    let client = Uploader::new(Options {
        meter: Some(Arc::clone(&meter)),
        ..options()
    });
    let s = client
        .upload_many(&path, &bed.url("/bulk/a.bin?x=1"), 3, 5)
        .await
        .unwrap();
    assert_eq!((s.succeeded, s.failed), (5, 0), "{s}");
    assert_eq!(s.bytes, 5 * 500_003);
    for i in 1..=5 {
        let stored = bed.stored(&format!("/bulk/a.bin.{i}"));
        assert_eq!(stored.as_deref(), Some(&data[..]), "upload {i}");
    }
    let fragment = &s.latency["Fragment"];
    assert_eq!(fragment.count, 5 * 8);
    assert!(fragment.p50_ms <= fragment.p90_ms && fragment.p99_ms <= fragment.max_ms);
    assert_eq!(s.latency["Create-Session"].count, 5);
    assert_eq!(s.upload_latency.count, 5);
    let text = s.to_string();
    assert!(text.contains("5 of 5 uploads succeeded"), "{text}");
    assert!(text.contains("Fragment"), "{text}");
    let json = serde_json::to_value(&s).unwrap();
    assert!(json["latency"]["Fragment"]["p99_ms"].is_number(), "{json}");
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(meter.acked.load(Relaxed), 5 * 500_003);
    assert_eq!(meter.finished.load(Relaxed), 5);
}

// ---------------------------------------------------------------------------------------
// The CLI
// ---------------------------------------------------------------------------------------

async fn cli(args: &[&str]) -> (i32, String, String) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        let mut upload = bitsmock(&["upload"]);
        upload.args(&args);
        run(upload)
    })
    .await
    .expect("join");
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_uploads_and_prints_a_json_summary() {
    let bed = bed(&[], |_| {}).await;
    let (path, data) = bed.source(70_000);
    let (code, out, err) = cli(&[
        "--json",
        "--fragment-size",
        "16KiB",
        "--ping",
        path.to_str().unwrap(),
        &bed.url("/cli/a.bin"),
    ])
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let json: serde_json::Value = serde_json::from_str(out.trim()).expect(&out);
    assert_eq!(json["ok"], true, "{json}");
    assert_eq!(json["bytes"], 70_000);
    assert_eq!(json["requests"], 8);
    assert_eq!(json["retries"], 0);
    assert!(json["latency"]["Fragment"]["count"] == 5, "{json}");
    assert_eq!(bed.stored("/cli/a.bin").as_deref(), Some(&data[..]));

    // Text summary; not a terminal, so no progress line.
    let (code, out, err) = cli(&[path.to_str().unwrap(), &bed.url("/cli/b.bin")]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("uploaded 0.1 MiB (70000 bytes)"), "{out}");
    assert!(out.contains("0 retries"), "{out}");
    assert!(!err.contains('\r'), "{err}");

    // Bulk.
    let (code, out, err) = cli(&[
        "--concurrency",
        "2",
        "--count",
        "3",
        "--quiet",
        path.to_str().unwrap(),
        &bed.url("/cli/c.bin"),
    ])
    .await;
    assert_eq!((code, out.as_str()), (0, ""), "{err}");
    assert!(bed.stored("/cli/c.bin.3").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_reports_fatal_errors_and_bad_arguments() {
    let bed = bed(&["fault=auth scheme=basic user=u password=p"], |_| {}).await;
    let (path, _) = bed.source(1000);
    let (code, out, err) = cli(&[path.to_str().unwrap(), &bed.url("/cli/a.bin")]).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("401 Unauthorized"), "{err}");
    assert!(err.contains("0x80190191"), "{err}");

    let (code, out, _) = cli(&["--json", path.to_str().unwrap(), &bed.url("/cli/a.bin")]).await;
    assert_eq!(code, 1);
    let json: serde_json::Value = serde_json::from_str(out.trim()).expect(&out);
    assert_eq!(json["hresult"], "0x80190191");
    assert_eq!(json["status"], 401);

    let (code, _, err) = cli(&[
        "--user",
        "u",
        "--password",
        "p",
        path.to_str().unwrap(),
        &bed.url("/cli/a.bin"),
    ])
    .await;
    assert_eq!(code, 0, "{err}");

    let (code, _, err) = cli(&[path.to_str().unwrap(), "ftp://example.test/x"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("not an absolute http:// or https:// URL"),
        "{err}"
    );
    let (code, _, _) = cli(&["--fragment-size", "0", path.to_str().unwrap(), "http://h/x"]).await;
    assert_eq!(code, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_replies_go_to_one_file_per_upload() {
    let bed = bed(&[], |_| {}).await;
    let (path, _) = bed.source(20_000);
    let out = bed.dir.path().join("reply.json");
    let client = Uploader::new(Options {
        reply_out: Some(out.clone()),
        ..options()
    });
    let s = client
        .upload_many(&path, &bed.url("/reply/b.bin"), 2, 2)
        .await
        .unwrap();
    assert_eq!(s.succeeded, 2, "{s}");
    for i in 1..=2 {
        let text = std::fs::read_to_string(format!("{}.{i}", out.display())).unwrap();
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["name"], format!("b.bin.{i}"));
    }
}

/// `bitsmock upload ARGS…` with the log level left at its default, and fast retries.
async fn cli_default_log(args: &[&str]) -> (i32, String, String) {
    let args: Vec<String> = ["--retry-base", "1ms", "--retry-cap", "5ms"]
        .iter()
        .chain(args)
        .map(|a| a.to_string())
        .collect();
    let out = tokio::task::spawn_blocking(move || {
        let mut upload = bitsmock(&["upload"]);
        upload.args(&args).env_remove("RUST_LOG");
        run(upload)
    })
    .await
    .expect("join");
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

/// The second 16 KiB fragment (it covers byte 20000) is answered 500, every time.
const ALWAYS_500: &str = "packet=fragment offset=20000 fault=status status=500";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_upload_prints_ok_false_json_with_its_status_hresult_and_counts() {
    let bed = bed(&[ALWAYS_500], |_| {}).await;
    let (path, _) = bed.source(70_000);
    let (code, out, err) = cli_default_log(&[
        "--json",
        "--fragment-size",
        "16KiB",
        "--max-retries",
        "2",
        path.to_str().unwrap(),
        &bed.url("/fail/a.bin"),
    ])
    .await;
    assert_eq!(code, 1, "{out}{err}");
    let json: serde_json::Value = serde_json::from_str(out.trim()).expect(&out);
    assert_eq!(json["ok"], false, "{json}");
    assert_eq!(json["status"], 500, "{json}");
    assert_eq!(json["hresult"], "0x801901F4", "{json}");
    let error = json["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("gave up after 3 consecutive failures"),
        "{json}"
    );
    // Create, fragment 1, then 3 tries of fragment 2 with a resume Ping before each retry.
    assert_eq!(json["retries"], 3, "{json}");
    assert_eq!(json["resumes"], 2, "{json}");
    assert!(json["requests"].as_u64().unwrap_or(0) >= 7, "{json}");
    assert_eq!(json["bytes_acked"], 16_384, "{json}");
    assert_eq!(json["bytes"], 70_000, "{json}");
    assert_eq!(json["session_restarts"], 0, "{json}");
    assert_eq!(json["offset_corrections"], 0, "{json}");
    assert_eq!(json["protocol_errors"], 0, "{json}");
    assert!(err.contains("error: Fragment: gave up after 3"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_run_with_failures_prints_ok_false_with_each_failures_counts() {
    let bed = bed(&[ALWAYS_500], |_| {}).await;
    let (path, _) = bed.source(70_000);
    let (code, out, err) = cli_default_log(&[
        "--json",
        "--fragment-size",
        "16KiB",
        "--max-retries",
        "1",
        "--count",
        "2",
        path.to_str().unwrap(),
        &bed.url("/fail/b.bin"),
    ])
    .await;
    assert_eq!(code, 1, "{out}{err}");
    let json: serde_json::Value = serde_json::from_str(out.trim()).expect(&out);
    assert_eq!(json["ok"], false, "{json}");
    assert_eq!(
        (json["succeeded"].clone(), json["failed"].clone()),
        (0.into(), 2.into())
    );
    assert_eq!(
        json["retries"], 4,
        "the failed uploads' counts add up: {json}"
    );
    for failure in json["failures"].as_array().expect("failures") {
        assert_eq!(failure["status"], 500, "{json}");
        assert_eq!(failure["hresult"], "0x801901F4", "{json}");
        assert_eq!(failure["retries"], 2, "{json}");
        assert_eq!(failure["bytes_acked"], 16_384, "{json}");
    }

    let clean = support::start().await;
    let (code, out, err) = cli_default_log(&[
        "--json",
        "--count",
        "2",
        path.to_str().unwrap(),
        &clean.url("/ok/b.bin"),
    ])
    .await;
    assert_eq!(code, 0, "{out}{err}");
    let json: serde_json::Value = serde_json::from_str(out.trim()).expect(&out);
    assert_eq!(
        (json["ok"].clone(), json["succeeded"].clone()),
        (true.into(), 2.into())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_with_json_still_print_one_ok_false_object() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = source_in(dir.path(), 10);
    let (code, out, err) =
        cli_default_log(&["--json", path.to_str().unwrap(), "ftp://example.test/x"]).await;
    assert_eq!(code, 2, "{err}");
    let json: serde_json::Value = serde_json::from_str(out.trim()).expect(&out);
    assert_eq!(
        (json["ok"].clone(), json["requests"].clone()),
        (false.into(), 0.into())
    );
    assert!(
        json["error"]
            .as_str()
            .unwrap_or_default()
            .contains("ftp://"),
        "{json}"
    );
    let (code, out, _) = cli_default_log(&["--json", "--count", "0", "f", "http://h/x"]).await;
    assert_eq!(code, 2);
    let json: serde_json::Value = serde_json::from_str(out.trim()).expect(&out);
    assert_eq!(json["ok"], false, "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_says_why_it_retries_at_the_default_log_level() {
    let bed = bed(
        &[
            "fragment=first times=1 fault=lose-request how=reset",
            "packet=fragment session=1 nth=2 fault=status status=503",
            "packet=fragment session=1 nth=3 fault=lose-session",
        ],
        |_| {},
    )
    .await;
    let (path, data) = bed.source(70_000);
    let (code, out, err) = cli_default_log(&[
        "--fragment-size",
        "16KiB",
        path.to_str().unwrap(),
        &bed.url("/retry/a.bin"),
    ])
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(bed.fired(), [1, 1, 1]);
    let retries: Vec<&str> = err.lines().filter(|l| l.contains("retrying")).collect();
    assert_eq!(retries.len(), 3, "{err}");
    assert!(
        retries[0].contains("retrying Fragment 0-16383 in "),
        "{err}"
    );
    assert!(retries[0].contains(": connection lost"), "{err}");
    assert!(
        retries[1].contains("retrying Fragment 0-16383 in ")
            && retries[1].contains(": 503 Service Unavailable"),
        "{err}"
    );
    assert!(
        retries[2].contains("retrying Fragment 16384-32767 now: ")
            && retries[2].contains("0x8020001F (BG_E_SESSION_NOT_FOUND)")
            && retries[2].contains("session not found, creating a new session"),
        "{err}"
    );
    assert!(out.contains("2 retries"), "{out}");
    assert!(out.contains("1 session re-creations"), "{out}");
    assert_eq!(bed.stored("/retry/a.bin").as_deref(), Some(&data[..]));
}

#[tokio::test]
async fn a_failure_report_keeps_the_counts_and_the_last_status_of_the_upload() {
    let bed = bed(&[ALWAYS_500], |_| {}).await;
    let (path, _) = bed.source(70_000);
    let client = Uploader::new(Options {
        fragment_size: 16 * KIB,
        max_retries: 1,
        ..options()
    });
    let failed = client
        .upload_reporting(&path, &bed.url("/fail/c.bin"))
        .await
        .expect_err("the second fragment always gets 500");
    assert!(
        matches!(failed.error, UploadError::GaveUp { .. }),
        "{}",
        failed.error
    );
    assert_eq!(failed.status, Some(500));
    assert_eq!(failed.hresult, Some(0x8019_01F4));
    assert_eq!(failed.bytes_acked, 16 * KIB);
    assert_eq!((failed.counts.retries, failed.counts.resumes), (2, 1));
    // Create, fragment 1, fragment 2 twice, one resume Ping, then Cancel-Session.
    assert_eq!(failed.counts.requests, 6);
    assert_eq!(failed.json()["ok"], false);
}

#[tokio::test]
async fn a_destination_that_stays_taken_ends_the_upload_after_three_retries_of_409() {
    let f = bed(&[], |_| {}).await;
    // An orphan session holds the destination (its client vanished after Create-Session).
    let mut c = f.connect().await;
    c.ok(&Req::create("/drop/taken.bin")).await;
    let (path, _) = f.source(10_000);
    let err = client()
        .upload(&path, &f.url("/drop/taken.bin"))
        .await
        .expect_err("409 for good");
    assert_eq!(err.status(), Some(409), "{err}");
    let creates: Vec<_> = f
        .running
        .server
        .events()
        .into_iter()
        .filter_map(|e| e.request().cloned())
        .filter(|r| r.packet == Some(PacketType::CreateSession))
        .map(|r| r.status)
        .collect();
    assert_eq!(
        creates,
        [Some(200), Some(409), Some(409), Some(409), Some(409)]
    );
    let verdict = f.running.server.verdict(&bitsmock::verdict::Options {
        backoff_floor: Duration::from_millis(1),
        ..Default::default()
    });
    assert!(
        verdict
            .outcome("stops-on-fatal")
            .is_some_and(|o| o.passed()),
        "{}",
        bitsmock::verdict::report::text(&verdict)
    );
}
