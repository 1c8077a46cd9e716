//! Compatibility with what real clients were written against: IIS's header spelling and
//! `Server` header on the wire, lenient `Content-Length` framing, and remembering closed
//! sessions (docs/protocol.md §2.3, §10.23).

mod support;

use bitsmock::config::ServerHeader;
use bitsmock::journal::What;
use bitsmock::proto::ContentLength;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends `req` on a fresh connection and returns the response head exactly as it arrived.
async fn raw_head(f: &Fixture, req: &Req) -> String {
    let mut conn = f.connect().await;
    let mut bytes = req.head_bytes(f.addr());
    bytes.extend_from_slice(&req.body);
    conn.stream.write_all(&bytes).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(10), conn.stream.read(&mut byte))
            .await
            .expect("response in time")
            .unwrap();
        assert_eq!(
            n,
            1,
            "closed before the head ended: {:?}",
            head.escape_ascii()
        );
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// The header lines of a head, without the status line and the blank line.
fn lines(head: &str) -> Vec<&str> {
    head.trim_end().split("\r\n").skip(1).collect()
}

#[tokio::test]
async fn acks_spell_header_names_exactly_as_iis_does() {
    let f = start_with(|c| c.vdir.reply_prefix = vec!["reply".into()]).await;
    let created = raw_head(&f, &Req::create("/reply/a.bin")).await;
    let l = lines(&created);
    assert!(created.starts_with("HTTP/1.1 200 OK\r\n"), "{created}");
    assert!(l.contains(&"BITS-Packet-Type: Ack"), "{created}");
    assert!(
        l.contains(&"BITS-Protocol: {7df0354d-249b-430f-820d-3d2a9bef4931}"),
        "{created}"
    );
    assert!(l.contains(&"Accept-Encoding: identity"), "{created}");
    assert!(l.contains(&"Content-Length: 0"), "{created}");
    assert!(l.contains(&"Server: Microsoft-IIS/10.0"), "{created}");
    assert!(l.contains(&"Pragma: no-cache"), "{created}");
    let session = l
        .iter()
        .find_map(|line| line.strip_prefix("BITS-Session-Id: "))
        .unwrap_or_else(|| panic!("no BITS-Session-Id line in {created}"));
    let fragment = raw_head(&f, &Req::fragment("/reply/a.bin", session, 0, 3, b"abc")).await;
    let l = lines(&fragment);
    assert!(l.contains(&"BITS-Received-Content-Range: 3"), "{fragment}");
    assert!(
        l.iter().any(|h| h.starts_with("BITS-Reply-URL: http://")),
        "{fragment}"
    );
    assert!(
        l.contains(&format!("BITS-Session-Id: {session}").as_str()),
        "{fragment}"
    );
    let error = raw_head(
        &f,
        &Req::close("/reply/a.bin", "{00000000-0000-0000-0000-000000000001}"),
    )
    .await;
    let l = lines(&error);
    assert!(l.contains(&"BITS-Error-Code: 0x8020001F"), "{error}");
    assert!(l.contains(&"BITS-Error-Context: 0x5"), "{error}");
    // Every name is spelled as IIS does: no lower-case or title-case BITS names remain.
    for head in [&created, &fragment, &error] {
        for line in lines(head) {
            let name = line.split(':').next().unwrap();
            assert!(
                !name.to_ascii_lowercase().starts_with("bits-") || name.starts_with("BITS-"),
                "{name} in {head}"
            );
            assert!(
                name.chars().next().unwrap().is_ascii_uppercase(),
                "{name} in {head}"
            );
        }
    }
    f.stop().await;
}

#[tokio::test]
async fn iis_spelling_survives_a_trickled_response() {
    // Written a few bytes at a time, so names are cut across writes.
    let f = start_rules(&["fault=throttle write-rate=100"]).await;
    let head = raw_head(&f, &Req::ping("/a")).await;
    assert!(lines(&head).contains(&"BITS-Packet-Type: Ack"), "{head}");
    assert_eq!(f.fired(), [1]);
    f.stop().await;
}

#[tokio::test]
async fn the_server_header_is_iis_bitsmock_or_absent() {
    for (kind, expected) in [
        (ServerHeader::Iis, Some("Microsoft-IIS/10.0")),
        (
            ServerHeader::Bitsmock,
            Some(concat!("bitsmock/", env!("CARGO_PKG_VERSION"))),
        ),
        (ServerHeader::Omitted, None),
    ] {
        let f = start_with(|c| c.server_header = kind).await;
        let ack = f.connect().await.ok(&Req::ping("/a")).await;
        assert_eq!(ack.header("Server"), expected, "{kind:?}");
        assert_eq!(
            ack.header("Pragma"),
            (kind == ServerHeader::Iis).then_some("no-cache"),
            "{kind:?}"
        );
        f.stop().await;
    }
}

#[tokio::test]
async fn a_missing_content_length_is_411_by_default_and_an_empty_body_when_optional() {
    let f = start().await;
    let mut conn = f.connect().await;
    let ack = conn.ok(&Req::create("/a.bin").without_length()).await;
    assert_error(&ack, 411, INVALID_ARG, &[]);
    f.stop().await;

    let f = start_with(|c| c.vdir.content_length = ContentLength::Optional).await;
    let mut conn = f.connect().await;
    let ack = conn.ok(&Req::create("/a.bin").without_length()).await;
    assert_eq!(ack.status, 200, "{ack:?}");
    let session = ack.session_id().unwrap().to_owned();
    // Fragments still need it: their length is checked against Content-Range.
    let fragment = Req::fragment("/a.bin", &session, 0, 3, b"abc");
    let ack = conn
        .ok(&fragment.clone().without_length().body(Vec::new()))
        .await;
    assert_error(&ack, 411, INVALID_ARG, &["BITS-Session-Id"]);
    assert_eq!(conn.ok(&fragment).await.received(), Some(3));
    let ack = conn
        .ok(&Req::close("/a.bin", &session).without_length())
        .await;
    assert_eq!(ack.status, 200, "{ack:?}");
    assert_eq!(f.stored("/a.bin").as_deref(), Some(&b"abc"[..]));
    let missing: Vec<bool> = f
        .running
        .server
        .events()
        .into_iter()
        .filter_map(|e| match e.what {
            What::Request(r) => Some(r.content_length_missing),
            _ => None,
        })
        .collect();
    assert_eq!(missing, [true, true, false, true]);
    f.stop().await;
}

#[tokio::test]
async fn a_repeated_close_answers_200_while_remember_closed_holds_it() {
    for remember in [None, Some(Duration::from_secs(600))] {
        let f = start_with(|c| c.vdir.remember_closed = remember).await;
        let mut conn = f.connect().await;
        let session = conn.ok(&Req::create("/a.bin")).await;
        let session = session.session_id().unwrap().to_owned();
        conn.ok(&Req::fragment("/a.bin", &session, 0, 3, b"abc"))
            .await;
        assert_eq!(conn.ok(&Req::close("/a.bin", &session)).await.status, 200);
        // The first Close Ack was lost; the client sends Close-Session again.
        let again = conn.ok(&Req::close("/a.bin", &session)).await;
        match remember {
            None => assert_error(&again, 500, SESSION_NOT_FOUND, &["BITS-Session-Id"]),
            Some(_) => {
                assert_eq!(again.status, 200, "{again:?}");
                assert_eq!(again.session_id(), Some(session.as_str()));
            }
        }
        assert_eq!(f.stored("/a.bin").as_deref(), Some(&b"abc"[..]));
        f.stop().await;
    }
}
