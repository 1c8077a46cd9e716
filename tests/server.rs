//! Loopback integration tests: a real server on `127.0.0.1:0`, a raw HTTP/1.1 client, and
//! the filesystem as the witness. Each test owns its server and upload root.
//!
//! Sections follow docs/protocol.md: Ack shapes (§4.0), framing and negotiation (§2, §3),
//! byte-exact uploads, fragment rules (§7.5), connections and concurrency, the session life
//! cycle (§7.4, §7.6, §7.8, §7.10), path confinement, upload-reply (§7.7, §9.8), host id
//! (§7.9) and hostile input (§10).

mod support;

use bitsmock::proto::{ErrorHeader, Overlap};
use sha2::{Digest, Sha256};
use std::time::Duration;
use support::*;

const UNKNOWN_SESSION: &str = "{0BADF00D-0000-4000-8000-000000000000}";

// ---------------------------------------------------------------------------------------
// Ack shapes (§4.0)
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn ping_acks_carry_no_session_id_whatever_the_ping_sent() {
    let fx = start().await;
    let mut conn = fx.connect().await;
    // Before any session exists, without an id, with a stale one, and with garbage.
    for id in [None, Some(UNKNOWN_SESSION), Some("not-a-guid"), Some("")] {
        let mut req = Req::ping("/drop/a.bin");
        if let Some(id) = id {
            req = req.header("BITS-Session-Id", id);
        }
        let ack = conn.ok(&req).await;
        assert_ack(&ack, 200, &[]);
    }
    // A stale id from a session that really existed.
    let session = conn.create("/drop/a.bin").await;
    conn.ok(&Req::cancel("/drop/a.bin", &session)).await;
    let ack = conn
        .ok(&Req::ping("/").header("BITS-Session-Id", &session))
        .await;
    assert_ack(&ack, 200, &[]);
    fx.stop().await;
}

#[tokio::test]
async fn create_session_acks_carry_protocol_a_fresh_braced_guid_and_accept_encoding() {
    let fx = start().await;
    let mut conn = fx.connect().await;
    let mut seen = Vec::new();
    for (i, name) in ["a.bin", "b.bin", "c.bin"].iter().enumerate() {
        // A stray session id and unknown headers are ignored (§10 items 5 and 33).
        let ack = conn
            .ok(&Req::create(&format!("/drop/{name}"))
                .header("BITS-Session-Id", UNKNOWN_SESSION)
                .header("Content-Name", name)
                .header("X-Unknown-Extension", "whatever")
                .header("User-Agent", "Microsoft BITS/7.8"))
            .await;
        assert_ack(
            &ack,
            200,
            &["BITS-Protocol", "BITS-Session-Id", "Accept-Encoding"],
        );
        assert_eq!(ack.header("BITS-Protocol"), Some(PROTOCOL));
        assert_eq!(ack.header("Accept-Encoding"), Some("identity"));
        let id = ack.session_id().unwrap().to_owned();
        assert_braced_guid(&id);
        assert_ne!(id, UNKNOWN_SESSION, "create #{i} resumed the stray id");
        assert!(!seen.contains(&id), "session id {id} issued twice");
        seen.push(id);
    }
    fx.stop().await;
}

#[tokio::test]
async fn fragment_close_and_cancel_acks_echo_the_session_id() {
    let fx = start().await;
    let mut conn = fx.connect().await;
    let payload = data(10, 1);
    let session = conn.create("/drop/a.bin").await;

    let ack = conn.fragment("/drop/a.bin", &session, &payload, 0, 4).await;
    assert_ack(
        &ack,
        200,
        &["BITS-Session-Id", "BITS-Received-Content-Range"],
    );
    assert_eq!(ack.session_id(), Some(session.as_str()));
    assert_eq!(ack.received(), Some(4));

    let ack = conn.fragment("/drop/a.bin", &session, &payload, 4, 6).await;
    assert_ack(
        &ack,
        200,
        &["BITS-Session-Id", "BITS-Received-Content-Range"],
    );
    assert_eq!(ack.received(), Some(10));

    let ack = conn.close("/drop/a.bin", &session).await;
    assert_ack(&ack, 200, &["BITS-Session-Id"]);
    assert_eq!(ack.session_id(), Some(session.as_str()));

    let other = conn.create("/drop/b.bin").await;
    let ack = conn.ok(&Req::cancel("/drop/b.bin", &other)).await;
    assert_ack(&ack, 200, &["BITS-Session-Id"]);
    assert_eq!(ack.session_id(), Some(other.as_str()));

    // Session ids compare case-insensitively: a lower-case spelling names the same session.
    let third = conn.create("/drop/c.bin").await;
    let ack = conn
        .fragment("/drop/c.bin", &third.to_ascii_lowercase(), &payload, 0, 10)
        .await;
    assert_eq!(ack.status, 200, "{ack:?}");
    assert_eq!(ack.received(), Some(10));
    fx.stop().await;
}

#[tokio::test]
async fn error_headers_follow_the_configured_style() {
    for (style, names) in [
        (ErrorHeader::Code, &["BITS-Error-Code"][..]),
        (ErrorHeader::Spec, &["BITS-Error"][..]),
        (ErrorHeader::Both, &["BITS-Error-Code", "BITS-Error"][..]),
    ] {
        let fx = start_with(|c| c.vdir.error_header = style).await;
        let mut conn = fx.connect().await;
        let ack = conn.ok(&Req::close("/drop/a.bin", UNKNOWN_SESSION)).await;
        let mut present = vec!["BITS-Error-Context", "BITS-Session-Id"];
        present.extend_from_slice(names);
        assert_ack(&ack, 500, &present);
        for name in names {
            assert_eq!(ack.header(name), Some(SESSION_NOT_FOUND), "{style:?}");
        }
        assert_eq!(ack.header("BITS-Error-Context"), Some("0x5"));
        // Successes never carry them, in any style.
        let ack = conn.ok(&Req::ping("/")).await;
        assert_ack(&ack, 200, &[]);
        fx.stop().await;
    }
}

// ---------------------------------------------------------------------------------------
// Framing and negotiation (§2, §3, §10 items 1-7)
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn packet_types_are_matched_in_any_letter_case() {
    let fx = start().await;
    let mut conn = fx.connect().await;
    let payload = data(3000, 2);
    let target = "/drop/cases.bin";
    for ping in ["Ping", "PING", "ping", "pInG"] {
        assert_ack(&conn.ok(&Req::bits(target, ping)).await, 200, &[]);
    }
    let ack = conn
        .ok(&Req::bits(target, "CREATE-SESSION").header("BITS-Supported-Protocols", PROTOCOL))
        .await;
    assert_eq!(ack.status, 200, "{ack:?}");
    let session = ack.session_id().unwrap().to_owned();
    for (i, kind) in ["FRAGMENT", "fragment", "Fragment"].iter().enumerate() {
        let first = i * 1000;
        let req = Req::fragment(
            target,
            &session,
            first as u64,
            3000,
            &payload[first..first + 1000],
        )
        .set("BITS-Packet-Type", kind);
        let ack = conn.ok(&req).await;
        assert_eq!(ack.status, 200, "{kind}: {ack:?}");
        assert_eq!(ack.received(), Some(first as u64 + 1000));
    }
    let ack = conn
        .ok(&Req::close(target, &session).set("BITS-Packet-Type", "close-SESSION"))
        .await;
    assert_ack(&ack, 200, &["BITS-Session-Id"]);
    assert_same(&fx.stored(target).unwrap(), &payload, target);

    let other = conn.create("/drop/other.bin").await;
    let ack = conn
        .ok(&Req::cancel("/drop/other.bin", &other).set("BITS-Packet-Type", "CANCEL-session"))
        .await;
    assert_ack(&ack, 200, &["BITS-Session-Id"]);
    fx.stop().await;
}

#[tokio::test]
async fn create_session_picks_the_supported_guid_from_any_list_form() {
    let fx = start().await;
    let mut conn = fx.connect().await;
    let upper = PROTOCOL.to_ascii_uppercase();
    let bare = &PROTOCOL[1..PROTOCOL.len() - 1];
    let unknown1 = "{00000000-0000-0000-0000-000000000000}";
    let unknown2 = "{11111111-2222-3333-4444-555555555555}";
    let lists = [
        PROTOCOL.to_owned(),
        upper.clone(),
        format!("{unknown1} {PROTOCOL}"),
        format!("{unknown1},{unknown2},{upper}"),
        format!("{unknown1}, {PROTOCOL} ,{unknown2}"),
        format!("  {unknown2}   {unknown1}   {PROTOCOL}  "),
        format!("{PROTOCOL} {unknown1}"),
        format!("{{{}}}", "7Df0354D-249b-430F-820d-3D2A9BEF4931"),
        format!("{unknown1} {bare}"),
    ];
    for (i, list) in lists.iter().enumerate() {
        let ack = conn
            .ok(&Req::create(&format!("/neg/{i}.bin")).set("BITS-Supported-Protocols", list))
            .await;
        assert_ack(
            &ack,
            200,
            &["BITS-Protocol", "BITS-Session-Id", "Accept-Encoding"],
        );
        assert_eq!(
            ack.header("BITS-Protocol").map(str::to_ascii_lowercase),
            Some(PROTOCOL.to_owned()),
            "{list:?}"
        );
    }
    fx.stop().await;
}

#[tokio::test]
async fn create_session_without_a_common_protocol_is_400_invalid_arg() {
    let fx = start().await;
    let mut conn = fx.connect().await;
    let lists = [
        Some("{00000000-0000-0000-0000-000000000000}"),
        Some("{00000000-0000-0000-0000-000000000000}, {11111111-2222-3333-4444-555555555555}"),
        Some("7df0354d"),
        Some("{7df0354d-249b-430f-820d-3d2a9bef4932}"),
        Some(""),
        None,
    ];
    for list in lists {
        let mut req =
            Req::bits("/drop/a.bin", "Create-Session").header("BITS-Session-Id", UNKNOWN_SESSION);
        if let Some(list) = list {
            req = req.header("BITS-Supported-Protocols", list);
        }
        let ack = conn.ok(&req).await;
        assert_error_in(&format!("protocols {list:?}"), &ack, 400, INVALID_ARG, &[]);
    }
    assert_eq!(fx.running.server.session_count(), 0);
    fx.stop().await;
}

#[tokio::test]
async fn missing_content_length_is_411_invalid_arg_on_every_packet() {
    let fx = start().await;
    let mut conn = fx.connect().await;
    let session = conn.create("/drop/a.bin").await;
    let cases = [
        (Req::ping("/drop/a.bin"), &[][..]),
        (Req::create("/drop/b.bin"), &[][..]),
        (
            Req::bits("/drop/a.bin", "Fragment")
                .header("BITS-Session-Id", &session)
                .header("Content-Range", "bytes 0-9/10"),
            &["BITS-Session-Id"][..],
        ),
        (
            Req::close("/drop/a.bin", &session),
            &["BITS-Session-Id"][..],
        ),
        (
            Req::cancel("/drop/a.bin", &session),
            &["BITS-Session-Id"][..],
        ),
    ];
    for (req, others) in cases {
        let case = format!("{} {} without Content-Length", req.method, req.target);
        let ack = conn.ok(&req.without_length()).await;
        assert_error_in(&case, &ack, 411, INVALID_ARG, others);
    }
    // A chunked fragment has no Content-Length either; its body is drained and the
    // connection stays usable.
    let mut chunked = Req::bits("/drop/a.bin", "Fragment")
        .header("BITS-Session-Id", &session)
        .header("Content-Range", "bytes 0-4/5")
        .header("Transfer-Encoding", "chunked")
        .without_length();
    chunked.body = b"5\r\nhello\r\n0\r\n\r\n".to_vec();
    let ack = conn.ok(&chunked).await;
    assert_error(&ack, 411, INVALID_ARG, &["BITS-Session-Id"]);
    assert_ack(&conn.ok(&Req::ping("/")).await, 200, &[]);
    // Nothing was stored by any of them; the session is still alive at offset 0.
    let ack = conn.fragment("/drop/a.bin", &session, b"xyz", 0, 3).await;
    assert_eq!(ack.received(), Some(3), "{ack:?}");
    fx.stop().await;
}

#[tokio::test]
async fn a_body_on_ping_create_close_or_cancel_is_400_and_the_connection_survives() {
    let fx = start().await;
    let mut conn = fx.connect().await;
    let session = conn.create("/drop/a.bin").await;
    let cases = [
        (Req::ping("/drop/a.bin"), &[][..]),
        (Req::create("/drop/b.bin"), &[][..]),
        (
            Req::close("/drop/a.bin", &session),
            &["BITS-Session-Id"][..],
        ),
        (
            Req::cancel("/drop/a.bin", &session),
            &["BITS-Session-Id"][..],
        ),
    ];
    for (req, others) in cases {
        let case = format!("{} with a body", req.header_value("BITS-Packet-Type"));
        let ack = conn.ok(&req.body(b"hello".to_vec())).await;
        assert_error_in(&case, &ack, 400, INVALID_ARG, others);
        // Same keep-alive connection: the body was consumed, the next request parses.
        assert_ack_in(
            &format!("Ping after {case}"),
            &conn.ok(&Req::ping("/")).await,
            200,
            &[],
        );
    }
    // The rejected Close and Cancel left the session alone.
    let ack = conn.fragment("/drop/a.bin", &session, b"abc", 0, 3).await;
    assert_eq!(ack.status, 200, "{ack:?}");
    conn.close("/drop/a.bin", &session).await;
    assert_eq!(fx.stored("/drop/a.bin").unwrap(), b"abc");
    assert!(fx.stored("/drop/b.bin").is_none());
    fx.stop().await;
}

#[tokio::test]
async fn unknown_or_missing_packet_types_are_400_invalid_arg() {
    let fx = start().await;
    let mut conn = fx.connect().await;
    for kind in [
        "Upload",
        "Ack",
        "",
        "Fragment2",
        "Create Session",
        "BITS_POST",
    ] {
        let ack = conn.ok(&Req::bits("/drop/a.bin", kind)).await;
        assert_error_in(
            &format!("packet type {kind:?}"),
            &ack,
            400,
            INVALID_ARG,
            &[],
        );
    }
    let ack = conn.ok(&Req::new("BITS_POST", "/drop/a.bin")).await;
    assert_error(&ack, 400, INVALID_ARG, &[]);
    // With a session id, the error still echoes it.
    let ack = conn
        .ok(&Req::bits("/drop/a.bin", "Resume").header("BITS-Session-Id", UNKNOWN_SESSION))
        .await;
    assert_error(&ack, 400, INVALID_ARG, &["BITS-Session-Id"]);
    assert_eq!(ack.session_id(), Some(UNKNOWN_SESSION));
    fx.stop().await;
}

#[tokio::test]
async fn header_values_over_4_kb_are_400_invalid_arg() {
    let fx = start().await;
    let mut conn = fx.connect().await;
    let at_limit = "x".repeat(4096);
    let over = "x".repeat(4097);
    let ack = conn.ok(&Req::ping("/").header("X-Junk", &at_limit)).await;
    assert_ack(&ack, 200, &[]);
    let ack = conn.ok(&Req::ping("/").header("X-Junk", &over)).await;
    assert_error(&ack, 400, INVALID_ARG, &[]);
    let ack = conn
        .ok(&Req::create("/drop/a.bin").header("Content-Name", &over))
        .await;
    assert_error(&ack, 400, INVALID_ARG, &[]);
    let session = conn.create("/drop/a.bin").await;
    let ack = conn
        .ok(&Req::fragment("/drop/a.bin", &session, 0, 3, b"abc").header("Content-Name", &over))
        .await;
    assert_error(&ack, 400, INVALID_ARG, &["BITS-Session-Id"]);
    // Nothing from the rejected fragment was stored.
    let ack = conn.fragment("/drop/a.bin", &session, b"abc", 1, 2).await;
    assert_eq!(ack.status, 416, "{ack:?}");
    assert_eq!(ack.received(), Some(0));
    fx.stop().await;
}

#[tokio::test]
async fn unknown_sessions_are_500_session_not_found_with_context_5() {
    let fx = start().await;
    let mut conn = fx.connect().await;
    let reqs = [
        Req::fragment("/drop/a.bin", UNKNOWN_SESSION, 0, 3, b"abc"),
        Req::close("/drop/a.bin", UNKNOWN_SESSION),
        Req::cancel("/drop/a.bin", UNKNOWN_SESSION),
    ];
    for req in &reqs {
        let case = req.header_value("BITS-Packet-Type");
        let ack = conn.ok(req).await;
        assert_error_in(case, &ack, 500, SESSION_NOT_FOUND, &["BITS-Session-Id"]);
        assert_eq!(ack.session_id(), Some(UNKNOWN_SESSION), "{case}");
    }
    // Malformed ids are echoed when printable; missing ones are not invented.
    let ack = conn
        .ok(&Req::bits("/drop/a.bin", "Close-Session").header("BITS-Session-Id", "nope"))
        .await;
    assert_error(&ack, 500, SESSION_NOT_FOUND, &["BITS-Session-Id"]);
    assert_eq!(ack.session_id(), Some("nope"));
    let ack = conn.ok(&Req::bits("/drop/a.bin", "Close-Session")).await;
    assert_error(&ack, 500, SESSION_NOT_FOUND, &[]);
    let ack = conn
        .ok(&Req::bits("/drop/a.bin", "Fragment")
            .header("Content-Range", "bytes 0-2/3")
            .body(b"abc".to_vec()))
        .await;
    assert_error(&ack, 500, SESSION_NOT_FOUND, &[]);

    // Closed and cancelled sessions are unknown afterwards, for every packet.
    let closed = conn.create("/drop/closed.bin").await;
    conn.close("/drop/closed.bin", &closed).await;
    let cancelled = conn.create("/drop/cancelled.bin").await;
    conn.ok(&Req::cancel("/drop/cancelled.bin", &cancelled))
        .await;
    for (target, id) in [
        ("/drop/closed.bin", &closed),
        ("/drop/cancelled.bin", &cancelled),
    ] {
        for req in [
            Req::fragment(target, id, 0, 3, b"abc"),
            Req::close(target, id),
            Req::cancel(target, id),
        ] {
            let case = format!("{} to {target}", req.header_value("BITS-Packet-Type"));
            let ack = conn.ok(&req).await;
            assert_error_in(&case, &ack, 500, SESSION_NOT_FOUND, &["BITS-Session-Id"]);
        }
    }
    fx.stop().await;
}

// ---------------------------------------------------------------------------------------
// Byte-exact uploads
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn uploads_of_odd_sizes_in_odd_fragments_are_stored_byte_identical() {
    let fx = start().await;
    let mut conn = fx.connect().await;
    let cases: [(usize, usize); 6] = [
        (1, 7777),
        (16 * 1024 - 1, 7777),
        (16 * 1024 - 1, 1),
        (1 << 20, 7777),
        (1 << 20, 1_000_003),
        (1 << 20, 3_333_333),
    ];
    for (i, (size, fragment)) in cases.into_iter().enumerate() {
        let target = format!("/sizes/{i}-{size}-{fragment}.bin");
        let payload = data(size, i as u64);
        let last = conn.upload(&target, &payload, fragment).await;
        // Plain upload: the final Ack carries no reply URL.
        assert_ack(
            &last,
            200,
            &["BITS-Session-Id", "BITS-Received-Content-Range"],
        );
        assert_eq!(last.received(), Some(size as u64));
        assert_same(
            &fx.stored(&target).expect("file committed"),
            &payload,
            &target,
        );
    }
    assert!(fx.temp_files().is_empty(), "{:?}", fx.temp_files());
    fx.stop().await;
}

#[tokio::test]
async fn a_64_mib_upload_in_large_odd_fragments_is_stored_byte_identical() {
    let fx = start().await;
    let mut conn = fx.connect().await;
    let payload = data(64 << 20, 64);
    conn.upload("/big/64mib.bin", &payload, 9_999_991).await;
    assert_same(
        &fx.stored("/big/64mib.bin").expect("file committed"),
        &payload,
        "64 MiB upload",
    );
    fx.stop().await;
}

// ---------------------------------------------------------------------------------------
// Fragment rules (§7.5, §10 items 8-17)
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_gap_is_416_with_the_expected_offset_and_no_error_headers() {
    let fx = start().await;
    let mut conn = fx.connect().await;
    let payload = data(5000, 3);
    let session = conn.create("/drop/a.bin").await;
    // Even the very first fragment must start at 0.
    let ack = conn
        .fragment("/drop/a.bin", &session, &payload, 100, 100)
        .await;
    assert_ack(
        &ack,
        416,
        &["BITS-Session-Id", "BITS-Received-Content-Range"],
    );
    assert_eq!(ack.received(), Some(0));
    conn.fragment("/drop/a.bin", &session, &payload, 0, 1000)
        .await;
    let ack = conn
        .fragment("/drop/a.bin", &session, &payload, 2000, 1000)
        .await;
    assert_ack(
        &ack,
        416,
        &["BITS-Session-Id", "BITS-Received-Content-Range"],
    );
    assert_eq!(ack.received(), Some(1000));
    assert_eq!(ack.session_id(), Some(session.as_str()));
    // The gap fragment wrote nothing: the temp file holds exactly the acknowledged bytes.
    let temp = std::fs::read(fx.temp_path(&session)).unwrap();
    assert_same(&temp, &payload[..1000], "temp file after a gap");
    conn.send_from("/drop/a.bin", &session, &payload, 1000, 1500)
        .await;
    conn.close("/drop/a.bin", &session).await;
    assert_same(&fx.stored("/drop/a.bin").unwrap(), &payload, "after a gap");
    fx.stop().await;
}

#[tokio::test]
async fn an_overlapping_fragment_in_tail_mode_writes_only_the_new_tail() {
    let fx = start().await;
    let mut conn = fx.connect().await;
    let payload = data(4000, 4);
    let target = "/drop/overlap.bin";
    let session = conn.create(target).await;
    conn.fragment(target, &session, &payload, 0, 1000).await;
    // Bytes 500..1000 are already stored; send garbage for them to prove they are kept.
    let mut body = vec![0xEE; 500];
    body.extend_from_slice(&payload[1000..2000]);
    let ack = conn
        .ok(&Req::fragment(target, &session, 500, 4000, &body))
        .await;
    assert_ack(
        &ack,
        200,
        &["BITS-Session-Id", "BITS-Received-Content-Range"],
    );
    assert_eq!(ack.received(), Some(2000));
    conn.send_from(target, &session, &payload, 2000, 2000).await;
    conn.close(target, &session).await;
    assert_same(
        &fx.stored(target).unwrap(),
        &payload,
        "overlap in tail mode",
    );
    fx.stop().await;
}

#[tokio::test]
async fn resent_bytes_are_200_in_tail_mode_and_416_in_strict_mode_with_the_expected_offset() {
    // Tail mode (the default) acknowledges fragments entirely already stored; strict mode
    // refuses any fragment that does not start at the stored length, overlapping or old.
    struct Case {
        name: &'static str,
        overlap: Overlap,
        resent: &'static [(u64, usize)],
        status: u16,
        fill: u8,
        seed: u64,
        rest_in: usize,
    }
    let cases = [
        Case {
            name: "tail mode, entirely stored",
            overlap: Overlap::Tail,
            resent: &[(0, 1000), (200, 500), (999, 1), (0, 1)],
            status: 200,
            fill: 0xAB,
            seed: 5,
            rest_in: 1000,
        },
        Case {
            name: "strict mode, overlapping or old",
            overlap: Overlap::Strict,
            resent: &[(500, 1000), (0, 1000), (0, 3000), (999, 2)],
            status: 416,
            fill: 0xCD,
            seed: 6,
            rest_in: 700,
        },
    ];
    for case in cases {
        let name = case.name;
        let fx = start_with(|c| c.vdir.overlap = case.overlap).await;
        let mut conn = fx.connect().await;
        let payload = data(3000, case.seed);
        let target = "/drop/resent.bin";
        let session = conn.create(target).await;
        conn.fragment(target, &session, &payload, 0, 1000).await;
        for &(first, len) in case.resent {
            let ack = conn
                .ok(&Req::fragment(
                    target,
                    &session,
                    first,
                    3000,
                    &vec![case.fill; len],
                ))
                .await;
            assert_ack_in(
                &format!("{name}, {first}+{len}"),
                &ack,
                case.status,
                &["BITS-Session-Id", "BITS-Received-Content-Range"],
            );
            assert_eq!(ack.received(), Some(1000), "{name}, {first}+{len}");
        }
        conn.send_from(target, &session, &payload, 1000, case.rest_in)
            .await;
        conn.close(target, &session).await;
        assert_same(&fx.stored(target).unwrap(), &payload, name);
        fx.stop().await;
    }
}

#[tokio::test]
async fn a_changed_total_is_400_invalid_arg_and_changes_nothing() {
    let fx = start().await;
    let mut conn = fx.connect().await;
    let payload = data(2000, 7);
    let target = "/drop/total.bin";
    let session = conn.create(target).await;
    conn.fragment(target, &session, &payload, 0, 1000).await;
    for total in [1999u64, 2001, 1500] {
        let ack = conn
            .ok(&Req::fragment(
                target,
                &session,
                1000,
                total,
                &payload[1000..1499],
            ))
            .await;
        assert_error_in(
            &format!("total {total}"),
            &ack,
            400,
            INVALID_ARG,
            &["BITS-Session-Id"],
        );
    }
    conn.send_from(target, &session, &payload, 1000, 1000).await;
    conn.close(target, &session).await;
    assert_same(&fx.stored(target).unwrap(), &payload, "after total changes");
    fx.stop().await;
}

#[tokio::test]
async fn a_content_length_different_from_the_range_length_is_400_invalid_arg() {
    let fx = start().await;
    let mut conn = fx.connect().await;
    let payload = data(100, 8);
    let target = "/drop/len.bin";
    let session = conn.create(target).await;
    for len in [9usize, 11, 1, 50] {
        // The body matches Content-Length; only the range disagrees.
        let req = Req::bits(target, "Fragment")
            .header("BITS-Session-Id", &session)
            .header("Content-Range", "bytes 0-9/100")
            .body(payload[..len].to_vec());
        let ack = conn.ok(&req).await;
        assert_error_in(
            &format!("Content-Length {len}"),
            &ack,
            400,
            INVALID_ARG,
            &["BITS-Session-Id"],
        );
    }
    // The bodies were drained on the same connection and nothing was stored.
    let ack = conn.fragment(target, &session, &payload, 5, 5).await;
    assert_eq!((ack.status, ack.received()), (416, Some(0)), "{ack:?}");
    conn.send_from(target, &session, &payload, 0, 33).await;
    conn.close(target, &session).await;
    assert_same(
        &fx.stored(target).unwrap(),
        &payload,
        "after length mismatches",
    );
    fx.stop().await;
}

#[tokio::test]
async fn a_fragment_over_the_fragment_limit_is_413_and_accepted_when_smaller() {
    let fx = start_with(|c| c.vdir.max_fragment_size = 1000).await;
    let mut conn = fx.connect().await;
    let payload = data(5000, 9);
    let target = "/drop/limit.bin";
    let session = conn.create(target).await;
    let ack = conn.fragment(target, &session, &payload, 0, 1001).await;
    assert_ack(&ack, 413, &["BITS-Session-Id"]);
    let ack = conn.fragment(target, &session, &payload, 0, 5000).await;
    assert_eq!(ack.status, 413, "{ack:?}");
    // The client shrinks the fragment and goes on, on the same connection.
    let ack = conn.fragment(target, &session, &payload, 0, 1000).await;
    assert_eq!((ack.status, ack.received()), (200, Some(1000)), "{ack:?}");
    conn.send_from(target, &session, &payload, 1000, 999).await;
    conn.close(target, &session).await;
    assert_same(&fx.stored(target).unwrap(), &payload, "after 413");
    fx.stop().await;
}

#[tokio::test]
async fn a_13_mb_fragment_over_the_limit_gets_its_413_and_the_client_can_shrink() {
    // Windows clients send up to 13 MB per fragment and write the whole body before reading
    // the answer, so the 413 must survive a big body (§9.5).
    let fx = start_with(|c| c.vdir.max_fragment_size = 1 << 20).await;
    let mut conn = fx.connect().await;
    let payload = data(13_000_000, 16);
    let target = "/drop/shrink.bin";
    let session = conn.create(target).await;
    let ack = conn
        .fragment(target, &session, &payload, 0, payload.len())
        .await;
    assert_ack(&ack, 413, &["BITS-Session-Id"]);
    conn.send_from(target, &session, &payload, 0, 1 << 20).await;
    conn.close(target, &session).await;
    assert_same(&fx.stored(target).unwrap(), &payload, "after a big 413");
    fx.stop().await;
}

#[tokio::test]
async fn a_file_over_the_upload_limit_is_500_too_large() {
    let fx = start_with(|c| c.vdir.max_upload_size = Some(1000)).await;
    let mut conn = fx.connect().await;
    let session = conn.create("/drop/big.bin").await;
    let ack = conn
        .ok(&Req::fragment("/drop/big.bin", &session, 0, 1001, &[1; 10]))
        .await;
    assert_error(&ack, 500, TOO_LARGE, &["BITS-Session-Id"]);
    assert_eq!(ack.session_id(), Some(session.as_str()));
    assert!(!fx.temp_path(&session).exists());
    // A file of exactly the limit is fine.
    let payload = data(1000, 10);
    conn.upload("/drop/fits.bin", &payload, 300).await;
    assert_same(
        &fx.stored("/drop/fits.bin").unwrap(),
        &payload,
        "at the limit",
    );
    fx.stop().await;
}

#[tokio::test]
async fn a_content_encoding_other_than_identity_is_400_invalid_arg() {
    let fx = start().await;
    let mut conn = fx.connect().await;
    let payload = data(20, 11);
    let target = "/drop/enc.bin";
    let session = conn.create(target).await;
    for encoding in ["gzip", "deflate", "br", "identity, gzip"] {
        let ack = conn
            .ok(&Req::fragment(target, &session, 0, 20, &payload[..10])
                .header("Content-Encoding", encoding))
            .await;
        assert_error_in(
            &format!("Content-Encoding {encoding}"),
            &ack,
            400,
            INVALID_ARG,
            &["BITS-Session-Id"],
        );
    }
    for (encoding, first) in [("identity", 0usize), ("IDENTITY", 10)] {
        let ack = conn
            .ok(&Req::fragment(
                target,
                &session,
                first as u64,
                20,
                &payload[first..first + 10],
            )
            .header("Content-Encoding", encoding))
            .await;
        assert_eq!(ack.status, 200, "{encoding}: {ack:?}");
    }
    conn.close(target, &session).await;
    assert_same(&fx.stored(target).unwrap(), &payload, "identity encoding");
    fx.stop().await;
}

#[tokio::test]
async fn a_final_fragment_retried_after_completion_is_200_with_the_total() {
    let fx = start().await;
    let mut conn = fx.connect().await;
    let payload = data(3000, 12);
    let target = "/drop/retry.bin";
    let session = conn.create(target).await;
    conn.send_from(target, &session, &payload, 0, 1000).await;
    // The Ack got lost; the client resends the last fragment, or even an earlier one.
    for first in [2000usize, 0, 1500] {
        let ack = conn
            .fragment(target, &session, &payload, first, 3000 - first)
            .await;
        assert_ack(
            &ack,
            200,
            &["BITS-Session-Id", "BITS-Received-Content-Range"],
        );
        assert_eq!(ack.received(), Some(3000));
    }
    conn.close(target, &session).await;
    assert_same(&fx.stored(target).unwrap(), &payload, "after retries");
    fx.stop().await;
}

#[tokio::test]
async fn large_retransmitted_fragments_are_acked_and_keep_the_connection() {
    // A retransmission after a lost Ack carries a full body the server does not need. It must
    // still be read: closing with unread bytes resets the connection and loses the Ack.
    let fx = start().await;
    let mut conn = fx.connect().await;
    let payload = data(6_000_000, 17);
    let target = "/drop/resent.bin";
    let session = conn.create(target).await;
    conn.fragment(target, &session, &payload, 0, 3_000_000)
        .await;
    for _ in 0..2 {
        let ack = conn
            .fragment(target, &session, &payload, 0, 3_000_000)
            .await;
        assert_eq!(
            (ack.status, ack.received()),
            (200, Some(3_000_000)),
            "{ack:?}"
        );
    }
    conn.fragment(target, &session, &payload, 3_000_000, 3_000_000)
        .await;
    for first in [3_000_000, 0] {
        let ack = conn
            .fragment(target, &session, &payload, first, 3_000_000)
            .await;
        assert_eq!(
            (ack.status, ack.received()),
            (200, Some(6_000_000)),
            "{ack:?}"
        );
    }
    conn.close(target, &session).await;
    assert_same(
        &fx.stored(target).unwrap(),
        &payload,
        "after retransmissions",
    );
    fx.stop().await;
}

#[tokio::test]
async fn invalid_content_range_forms_are_400_invalid_arg_and_the_session_survives() {
    let fx = start().await;
    let mut conn = fx.connect().await;
    let target = "/drop/ranges.bin";
    let session = conn.create(target).await;
    let body = data(10, 13);
    let forms = [
        "bytes 0-9/*",
        "bytes */10",
        "bytes 9-0/10",
        "bytes 0-10/10",
        "bytes 0-9/9",
        "bytes -1-8/10",
        "bytes 0-9/-10",
        "bytes +0-9/10",
        "bytes 0x0-0x9/10",
        "bytes 0-9/10/10",
        "bytes 0-9",
        "bytes 0 - 9/10",
        "bytes=0-9/10",
        "bytes0-9/10",
        "items 0-9/10",
        "0-9/10",
        "bytes",
        "",
        "bytes 0-18446744073709551616/18446744073709551617",
        "bytes 18446744073709551606-18446744073709551615/18446744073709551615",
        "bytes 00000000000000000000000-9/10",
        "bytes 0-9/10, bytes 10-19/20",
    ];
    for form in forms {
        let req = Req::bits(target, "Fragment")
            .header("BITS-Session-Id", &session)
            .header("Content-Range", form)
            .body(body.clone());
        let ack = conn.ok(&req).await;
        assert_error(&ack, 400, INVALID_ARG, &["BITS-Session-Id"]);
    }
    let missing = Req::bits(target, "Fragment")
        .header("BITS-Session-Id", &session)
        .body(body.clone());
    assert_error(
        &conn.ok(&missing).await,
        400,
        INVALID_ARG,
        &["BITS-Session-Id"],
    );
    // The unit is case-insensitive and the session is still at offset 0.
    for (unit, first) in [("BYTES", 0), ("Bytes", 5)] {
        let req = Req::bits(target, "Fragment")
            .header("BITS-Session-Id", &session)
            .header("Content-Range", &format!("{unit} {first}-{}/10", first + 4))
            .body(body[first..first + 5].to_vec());
        let ack = conn.ok(&req).await;
        assert_eq!(
            (ack.status, ack.received()),
            (200, Some(first as u64 + 5)),
            "{ack:?}"
        );
    }
    conn.close(target, &session).await;
    assert_eq!(fx.stored(target).unwrap(), body);
    fx.assert_alive().await;
    fx.stop().await;
}

/// Sends the head of a fragment covering all of `payload` plus its first `sent` bytes, then
/// waits so the server reads them.
async fn start_fragment(
    fx: &Fixture,
    target: &str,
    session: &str,
    payload: &[u8],
    sent: usize,
) -> Conn {
    let mut conn = fx.connect().await;
    let req = Req::fragment(target, session, 0, payload.len() as u64, payload);
    conn.write_raw(&req.head_bytes(fx.addr())).await.unwrap();
    conn.write_raw(&payload[..sent]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    conn
}

/// Asks the server where the session stands without giving it new data, checks that the
/// acknowledged prefix is really in the temp file, and returns the offset.
async fn probe_offset(
    fx: &Fixture,
    target: &str,
    session: &str,
    payload: &[u8],
    sent: usize,
) -> usize {
    let mut conn = fx.connect().await;
    assert_ack(&conn.ok(&Req::ping(target)).await, 200, &[]);
    let ack = conn.fragment(target, session, payload, 0, 1).await;
    assert_eq!(ack.status, 200, "{ack:?}");
    let offset = ack.received().unwrap() as usize;
    assert!(
        offset <= sent,
        "acknowledged {offset} bytes but only {sent} were sent"
    );
    let temp = std::fs::read(fx.temp_path(session)).unwrap_or_default();
    assert!(
        temp.len() >= offset,
        "temp file shorter than the acknowledged offset"
    );
    assert_same(&temp[..offset], &payload[..offset], "acknowledged prefix");
    offset
}

#[tokio::test]
async fn a_body_cut_short_by_the_client_is_acknowledged_only_as_far_as_it_was_stored() {
    let fx = start().await;
    let payload = data(300_000, 14);
    let target = "/drop/cut.bin";
    let session = fx.connect().await.create(target).await;
    let sent = 120_000;
    let conn = start_fragment(&fx, target, &session, &payload, sent).await;
    drop(conn); // The client dies mid-body.
    let offset = probe_offset(&fx, target, &session, &payload, sent).await;
    // The resume path: continue from the offset the server reported.
    let mut conn = fx.connect().await;
    conn.send_from(target, &session, &payload, offset, 77_777)
        .await;
    conn.close(target, &session).await;
    assert_same(&fx.stored(target).unwrap(), &payload, "after a cut body");
    fx.stop().await;
}

#[tokio::test]
async fn a_stalled_body_is_dropped_after_the_body_timeout_and_only_stored_bytes_count() {
    let fx = start_with(|c| c.body_read_timeout = Duration::from_millis(300)).await;
    let payload = data(200_000, 15);
    let target = "/drop/stall.bin";
    let session = fx.connect().await.create(target).await;
    let sent = 50_000;
    let mut stalled = start_fragment(&fx, target, &session, &payload, sent).await;
    // The server gives up on the body and closes the connection without an Ack.
    let answer = tokio::time::timeout(Duration::from_secs(10), stalled.read_to_close())
        .await
        .expect("server drops a stalled body");
    let text = String::from_utf8_lossy(&answer);
    assert!(
        !text.starts_with("HTTP/1.1 200"),
        "a partial fragment was acked: {text}"
    );
    let offset = probe_offset(&fx, target, &session, &payload, sent).await;
    let mut conn = fx.connect().await;
    conn.send_from(target, &session, &payload, offset, 64_000)
        .await;
    conn.close(target, &session).await;
    assert_same(
        &fx.stored(target).unwrap(),
        &payload,
        "after a stalled body",
    );
    fx.stop().await;
}

// ---------------------------------------------------------------------------------------
// Connections and concurrency (§7.4, §10 items 19 and 32)
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn sessions_interleave_on_one_keep_alive_connection() {
    let fx = start().await;
    let mut conn = fx.connect().await;
    let files: Vec<(String, Vec<u8>)> = (0..3)
        .map(|i| {
            (
                format!("/mix/{i}.bin"),
                data(50_000 + i * 1234, 20 + i as u64),
            )
        })
        .collect();
    let mut sessions = Vec::new();
    for (target, _) in &files {
        sessions.push(conn.create(target).await);
    }
    let mut offsets = vec![0usize; files.len()];
    while offsets.iter().zip(&files).any(|(o, (_, d))| *o < d.len()) {
        for (i, (target, payload)) in files.iter().enumerate() {
            if offsets[i] < payload.len() {
                let ack = conn
                    .fragment(target, &sessions[i], payload, offsets[i], 7777)
                    .await;
                assert_eq!(ack.status, 200, "{ack:?}");
                assert_eq!(ack.session_id(), Some(sessions[i].as_str()));
                offsets[i] = ack.received().unwrap() as usize;
            }
        }
    }
    for (i, (target, payload)) in files.iter().enumerate() {
        conn.close(target, &sessions[i]).await;
        assert_same(&fx.stored(target).unwrap(), payload, target);
    }
    fx.stop().await;
}

#[tokio::test]
async fn a_session_continues_across_new_tcp_connections() {
    let fx = start().await;
    let payload = data(100_000, 21);
    let target = "/drop/hop.bin";
    let session = fx.connect().await.create(target).await;
    let mut offset = 0;
    while offset < payload.len() {
        // Like a resuming Windows client: new connection, Ping, then the next fragment.
        let mut conn = fx.connect().await;
        assert_ack(&conn.ok(&Req::ping(target)).await, 200, &[]);
        let ack = conn
            .fragment(target, &session, &payload, offset, 12_345)
            .await;
        assert_eq!(ack.status, 200, "{ack:?}");
        offset = ack.received().unwrap() as usize;
    }
    fx.connect().await.close(target, &session).await;
    assert_same(&fx.stored(target).unwrap(), &payload, "across connections");
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_concurrent_uploads_are_all_stored_byte_identical() {
    let fx = start().await;
    let addr = fx.addr();
    let tasks: Vec<_> = (0..16u64)
        .map(|i| {
            tokio::spawn(async move {
                let payload = data(150_000 + i as usize * 7919, 100 + i);
                let target = format!("/many/{i}.bin");
                let mut conn = Conn::open(addr).await;
                conn.upload(&target, &payload, 9_001 + i as usize * 1_000)
                    .await;
                (target, payload)
            })
        })
        .collect();
    for task in tasks {
        let (target, payload) = task.await.expect("upload task");
        assert_same(&fx.stored(&target).unwrap(), &payload, &target);
    }
    assert!(fx.temp_files().is_empty());
    assert_eq!(fx.running.server.session_count(), 0);
    fx.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_fragments_for_one_session_never_corrupt_the_file() {
    let fx = start().await;
    let addr = fx.addr();
    let payload = std::sync::Arc::new(data(2_000_000, 22));
    let target = "/drop/race.bin";
    let session = fx.connect().await.create(target).await;
    // Four "clients" (think: a timed-out request retried on a new connection) push the same
    // file into the same session at once, each with its own fragment size, each following
    // whatever offset the server reports.
    let tasks: Vec<_> = [50_001usize, 77_777, 131_071, 300_007]
        .into_iter()
        .map(|size| {
            let payload = std::sync::Arc::clone(&payload);
            let session = session.clone();
            tokio::spawn(async move {
                let mut conn = Conn::open(addr).await;
                conn.send_from(target, &session, &payload, 0, size).await
            })
        })
        .collect();
    for task in tasks {
        let last = task.await.expect("fragment task");
        assert_eq!(last.received(), Some(payload.len() as u64));
    }
    fx.connect().await.close(target, &session).await;
    assert_same(&fx.stored(target).unwrap(), &payload, "racing fragments");

    // Two connections sending overlapping fragments with their bodies half-written at the
    // same time: one waits for the other, neither tears the file.
    let payload = data(1_000_000, 23);
    let target = "/drop/race2.bin";
    let session = fx.connect().await.create(target).await;
    let a = Req::fragment(target, &session, 0, 1_000_000, &payload[..600_000]);
    let b = Req::fragment(target, &session, 0, 1_000_000, &payload[..800_000]);
    let mut ca = fx.connect().await;
    let mut cb = fx.connect().await;
    ca.write_raw(&a.head_bytes(addr)).await.unwrap();
    cb.write_raw(&b.head_bytes(addr)).await.unwrap();
    ca.write_raw(&a.body[..300_000]).await.unwrap();
    cb.write_raw(&b.body[..300_000]).await.unwrap();
    let (ra, rb) = tokio::join!(
        async {
            ca.write_raw(&a.body[300_000..]).await.unwrap();
            ca.read_response(false).await.unwrap()
        },
        async {
            cb.write_raw(&b.body[300_000..]).await.unwrap();
            cb.read_response(false).await.unwrap()
        }
    );
    assert_eq!((ra.status, rb.status), (200, 200), "{ra:?} {rb:?}");
    let mut offsets = [ra.received().unwrap(), rb.received().unwrap()];
    offsets.sort();
    // Whichever ran second saw the other's bytes.
    assert_eq!(offsets[1], 800_000, "{ra:?} {rb:?}");
    let mut conn = fx.connect().await;
    conn.send_from(target, &session, &payload, 800_000, 99_999)
        .await;
    conn.close(target, &session).await;
    assert_same(&fx.stored(target).unwrap(), &payload, "half-written race");
    fx.stop().await;
}

// ---------------------------------------------------------------------------------------
// Session life cycle (§7.4, §7.6, §7.8, §7.10)
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn close_before_all_bytes_discards_the_partial_file() {
    let fx = start().await;
    let mut conn = fx.connect().await;
    let payload = data(10_000, 30);
    let target = "/drop/partial.bin";
    let session = conn.create(target).await;
    conn.fragment(target, &session, &payload, 0, 4000).await;
    assert!(fx.temp_path(&session).exists());
    let ack = conn.close(target, &session).await;
    assert_ack(&ack, 200, &["BITS-Session-Id"]);
    assert!(
        fx.stored(target).is_none(),
        "a partial upload was committed"
    );
    assert!(
        !fx.temp_path(&session).exists(),
        "partial temp file left behind"
    );
    assert!(fx.temp_files().is_empty());
    let ack = conn.fragment(target, &session, &payload, 4000, 6000).await;
    assert_error(&ack, 500, SESSION_NOT_FOUND, &["BITS-Session-Id"]);
    // The destination is free again.
    conn.upload(target, &payload, 6000).await;
    assert_same(
        &fx.stored(target).unwrap(),
        &payload,
        "after a premature close",
    );
    fx.stop().await;
}

#[tokio::test]
async fn cancel_deletes_the_temp_file_and_forgets_the_session() {
    let fx = start().await;
    let mut conn = fx.connect().await;
    let payload = data(10_000, 31);
    let target = "/drop/cancel.bin";
    let session = conn.create(target).await;
    conn.fragment(target, &session, &payload, 0, 4000).await;
    assert!(fx.temp_path(&session).exists());
    let ack = conn.ok(&Req::cancel(target, &session)).await;
    assert_ack(&ack, 200, &["BITS-Session-Id"]);
    assert!(
        !fx.temp_path(&session).exists(),
        "temp file survived Cancel"
    );
    assert!(fx.temp_files().is_empty());
    assert!(fx.stored(target).is_none());
    assert_eq!(fx.running.server.session_count(), 0);
    let ack = conn.fragment(target, &session, &payload, 4000, 6000).await;
    assert_error(&ack, 500, SESSION_NOT_FOUND, &["BITS-Session-Id"]);
    // Cancelling a complete upload also leaves nothing behind.
    let session = conn.create(target).await;
    conn.send_from(target, &session, &payload, 0, 5000).await;
    conn.ok(&Req::cancel(target, &session)).await;
    assert!(fx.temp_files().is_empty());
    fx.stop().await;
}

#[tokio::test]
async fn create_then_close_without_fragments_stores_an_empty_file() {
    let fx = start().await;
    let mut conn = fx.connect().await;
    let session = conn.create("/drop/empty.bin").await;
    let ack = conn.close("/drop/empty.bin", &session).await;
    assert_ack(&ack, 200, &["BITS-Session-Id"]);
    assert_eq!(fx.stored("/drop/empty.bin"), Some(Vec::new()));
    assert!(fx.temp_files().is_empty());
    fx.stop().await;
}

#[tokio::test]
async fn an_existing_destination_is_409_at_create_session() {
    let fx = start().await;
    let mut conn = fx.connect().await;
    conn.upload("/drop/taken.bin", b"first", 100).await;
    let ack = conn.ok(&Req::create("/drop/taken.bin")).await;
    assert_ack(&ack, 409, &[]);
    assert_eq!(fx.stored("/drop/taken.bin").unwrap(), b"first");
    fx.stop().await;
}

#[tokio::test]
async fn allow_overwrites_replaces_an_existing_destination() {
    let fx = start_with(|c| c.vdir.allow_overwrites = true).await;
    let mut conn = fx.connect().await;
    conn.upload("/drop/taken.bin", &data(5000, 32), 1000).await;
    let second = data(3000, 33);
    conn.upload("/drop/taken.bin", &second, 1000).await;
    assert_same(
        &fx.stored("/drop/taken.bin").unwrap(),
        &second,
        "overwritten",
    );
    fx.stop().await;
}

#[tokio::test]
async fn a_second_session_for_the_same_destination_is_409() {
    let fx = start().await;
    let mut conn = fx.connect().await;
    let first = conn.create("/drop/same.bin").await;
    let ack = fx.connect().await.ok(&Req::create("/drop/same.bin")).await;
    assert_ack(&ack, 409, &[]);
    // Once the first session is gone the destination can be claimed again.
    conn.ok(&Req::cancel("/drop/same.bin", &first)).await;
    let payload = data(100, 34);
    conn.upload("/drop/same.bin", &payload, 100).await;
    assert_eq!(fx.stored("/drop/same.bin").unwrap(), payload);
    fx.stop().await;
}

#[tokio::test]
async fn a_destination_that_is_a_directory_is_400_invalid_arg() {
    let fx = start().await;
    std::fs::create_dir_all(fx.root.join("drop").join("dir.bin")).unwrap();
    let mut conn = fx.connect().await;
    for target in ["/drop/dir.bin", "/drop", "/drop/", "/"] {
        let ack = conn.ok(&Req::create(target)).await;
        assert_error_in(target, &ack, 400, INVALID_ARG, &[]);
    }
    assert!(fx.root.join("drop").join("dir.bin").is_dir());
    fx.stop().await;
}

#[tokio::test]
async fn traversal_targets_are_400_invalid_arg_and_create_nothing_outside_the_root() {
    let fx = start().await;
    let mut conn = fx.connect().await;
    let targets = [
        "/../x",
        "/../../x",
        "/a/../../x",
        "/%2e%2e/x",
        "/%2E%2E/x",
        "/.%2e/x",
        "/%2e/x",
        "/./x",
        "/a/./b",
        "/a%2fb",
        "/a%2F..%2Fx",
        "/a\\b",
        "/..\\x",
        "/a%5cb",
        "/a%00b",
        "/C:/x",
        "/c%3A/x",
        "//x/y",
        "/a//b",
        "/x/..",
        "/a%zzb",
        "/a%",
        "/BITS-Sessions/Requests/evil.bin",
        "/bits-sessions/Replies/x",
        "http://127.0.0.1/../x",
        "x",
    ];
    let mut accepted = Vec::new();
    for target in targets {
        let ack = conn.ok(&Req::create(target)).await;
        if ack.status == 200 {
            // Try to finish the attack so the filesystem check below sees any damage.
            let id = ack.session_id().unwrap_or_default().to_owned();
            conn.ok(&Req::fragment(target, &id, 0, 5, b"pwned")).await;
            conn.ok(&Req::close(target, &id)).await;
            accepted.push(target);
            continue;
        }
        assert_error_in(target, &ack, 400, INVALID_ARG, &[]);
        // A fragment with a made-up session to such a target is rejected just the same.
        let ack = conn
            .ok(&Req::fragment(target, UNKNOWN_SESSION, 0, 5, b"pwned"))
            .await;
        assert_eq!(ack.status, 400, "{target:?}: {ack:?}");
    }
    assert!(
        accepted.is_empty(),
        "traversal targets accepted: {accepted:?}"
    );
    assert_eq!(
        list(fx.dir.path()),
        ["root"],
        "something appeared beside the root"
    );
    assert_eq!(
        list(&fx.root),
        ["BITS-Sessions"],
        "something appeared in the root"
    );
    assert_eq!(list(&fx.root.join("BITS-Sessions")), ["Requests", "lock"]);
    assert!(fx.temp_files().is_empty());
    fx.stop().await;
}

#[tokio::test]
async fn an_expired_session_is_session_not_found_and_its_temp_file_is_gone() {
    let timeout = Duration::from_millis(300);
    let fx = start_with(|c| c.vdir.session_timeout = timeout).await;
    let mut conn = fx.connect().await;
    let payload = data(10_000, 40);
    let target = "/drop/expire.bin";
    let session = conn.create(target).await;
    // Progress keeps the session alive well past one timeout.
    for i in 0..6 {
        let ack = conn
            .fragment(target, &session, &payload, i * 1000, 1000)
            .await;
        assert_eq!(ack.status, 200, "fragment {i}: {ack:?}");
        tokio::time::sleep(timeout / 5).await;
    }
    assert!(fx.temp_path(&session).exists());
    // Idle: the server deletes the session and its file on its own.
    let temp = fx.temp_path(&session);
    eventually(
        "the expired temp file is deleted",
        Duration::from_secs(5),
        || !temp.exists(),
    )
    .await;
    assert_eq!(fx.running.server.session_count(), 0);
    let ack = conn.fragment(target, &session, &payload, 6000, 1000).await;
    assert_error(&ack, 500, SESSION_NOT_FOUND, &["BITS-Session-Id"]);
    let ack = conn.ok(&Req::close(target, &session)).await;
    assert_error(&ack, 500, SESSION_NOT_FOUND, &["BITS-Session-Id"]);
    assert!(fx.stored(target).is_none());
    // The client's recovery: a new session from byte 0.
    conn.upload(target, &payload, 4000).await;
    assert_same(&fx.stored(target).unwrap(), &payload, "after expiry");
    fx.stop().await;
}

// ---------------------------------------------------------------------------------------
// Upload-reply (§7.7, §9.8) and host id (§7.9)
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn upload_reply_final_ack_carries_a_reply_url_serving_the_json_digest() {
    let fx = start().await;
    let mut conn = fx.connect().await;
    let payload = data(100_000, 50);
    let target = "/reply/in.bin";
    let session = conn.create(target).await;
    let mut offset = 0;
    let final_ack = loop {
        let ack = conn
            .fragment(target, &session, &payload, offset, 30_000)
            .await;
        offset = ack.received().unwrap() as usize;
        if offset == payload.len() {
            break ack;
        }
        assert_ack(
            &ack,
            200,
            &["BITS-Session-Id", "BITS-Received-Content-Range"],
        );
    };
    assert_ack(
        &final_ack,
        200,
        &[
            "BITS-Session-Id",
            "BITS-Received-Content-Range",
            "BITS-Reply-URL",
        ],
    );
    let url = final_ack.header("BITS-Reply-URL").unwrap().to_owned();
    let uuid = session[1..37].to_ascii_lowercase();
    assert_eq!(
        url,
        format!(
            "{}/BITS-Sessions/Replies/{uuid}/responsefile.bin",
            fx.running.url()
        )
    );
    let path = url.strip_prefix(&fx.running.url()).unwrap().to_owned();

    // A retried final fragment gets the same URL.
    let retry = conn
        .fragment(target, &session, &payload, 90_000, 10_000)
        .await;
    assert_eq!(retry.status, 200);
    assert_eq!(retry.header("BITS-Reply-URL"), Some(url.as_str()));

    // GET the whole reply: JSON naming the upload, its size and digest.
    let whole = conn.ok(&Req::get(&path)).await;
    assert_eq!(whole.status, 200, "{whole:?}");
    assert_eq!(
        whole.header("Content-Length"),
        Some(whole.body.len().to_string().as_str())
    );
    assert_eq!(whole.header("Accept-Ranges"), Some("bytes"));
    let json: serde_json::Value = serde_json::from_slice(&whole.body).expect("reply is JSON");
    let digest: String = Sha256::digest(&payload)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(json["name"], "in.bin");
    assert_eq!(json["size"], payload.len() as u64);
    assert_eq!(json["sha256"], digest);
    let len = whole.body.len();
    let modified = whole.header("Last-Modified").map(str::to_owned);
    assert!(modified.is_some(), "reply has no Last-Modified");

    // Single byte ranges, as the BITS downloader asks for them.
    for (range, first, last) in [
        ("bytes=0-9", 0, 9),
        ("bytes=10-", 10, len - 1),
        ("bytes=-7", len - 7, len - 1),
        ("bytes=5-100000", 5, len - 1),
    ] {
        let part = conn.ok(&Req::get(&path).header("Range", range)).await;
        assert_eq!(part.status, 206, "{range}: {part:?}");
        assert_eq!(
            part.header("Content-Range"),
            Some(format!("bytes {first}-{last}/{len}").as_str())
        );
        assert_eq!(part.body, whole.body[first..=last], "{range}");
        assert_eq!(part.header("Last-Modified").map(str::to_owned), modified);
    }
    let head = conn.ok(&Req::new("HEAD", &path)).await;
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("Content-Length"),
        Some(len.to_string().as_str())
    );
    assert!(head.body.is_empty());
    let unsatisfiable = conn
        .ok(&Req::get(&path).header("Range", &format!("bytes={len}-")))
        .await;
    assert_eq!(unsatisfiable.status, 416);
    assert_eq!(
        unsatisfiable.header("Content-Range"),
        Some(format!("bytes */{len}").as_str())
    );

    // Close-Session frees the reply.
    conn.close(target, &session).await;
    let gone = conn.ok(&Req::get(&path)).await;
    assert_eq!(gone.status, 404, "{gone:?}");
    assert_eq!(fx.running.server.session_count(), 0);
    assert!(fx.temp_files().is_empty());
    fx.stop().await;
}

#[tokio::test]
async fn replies_are_404_for_unknown_sessions_and_after_cancel() {
    let fx = start().await;
    let mut conn = fx.connect().await;
    for path in [
        "/BITS-Sessions/Replies/0badf00d-0000-4000-8000-000000000000/responsefile.bin",
        "/BITS-Sessions/Replies/nope/responsefile.bin",
        "/BITS-Sessions/Replies/",
        "/reply/in.bin",
    ] {
        assert_eq!(conn.ok(&Req::get(path)).await.status, 404, "{path}");
    }
    let payload = data(1000, 51);
    let session = conn.create("/reply/c.bin").await;
    let last = conn
        .send_from("/reply/c.bin", &session, &payload, 0, 1000)
        .await;
    let url = last.header("BITS-Reply-URL").expect("reply URL").to_owned();
    let path = url.strip_prefix(&fx.running.url()).unwrap().to_owned();
    assert_eq!(conn.ok(&Req::get(&path)).await.status, 200);
    // An incomplete session has no reply yet; a plain one never has one.
    let pending = conn.create("/reply/d.bin").await;
    conn.fragment("/reply/d.bin", &pending, &payload, 0, 999)
        .await;
    let pending_path = format!(
        "/BITS-Sessions/Replies/{}/responsefile.bin",
        pending[1..37].to_ascii_lowercase()
    );
    assert_eq!(conn.ok(&Req::get(&pending_path)).await.status, 404);
    let plain = conn.create("/drop/p.bin").await;
    let ack = conn
        .send_from("/drop/p.bin", &plain, &payload, 0, 1000)
        .await;
    assert!(ack.header("BITS-Reply-URL").is_none());
    conn.ok(&Req::cancel("/reply/c.bin", &session)).await;
    assert_eq!(conn.ok(&Req::get(&path)).await.status, 404);
    fx.stop().await;
}

#[tokio::test]
async fn host_id_is_announced_on_create_session_only_when_configured() {
    let fx = start().await;
    let mut conn = fx.connect().await;
    let ack = conn.ok(&Req::create("/drop/a.bin")).await;
    assert_ack(
        &ack,
        200,
        &["BITS-Protocol", "BITS-Session-Id", "Accept-Encoding"],
    );
    fx.stop().await;

    let fx = start_with(|c| {
        c.vdir.host_id = Some("node3.farm.test".into());
        c.vdir.host_id_fallback_timeout = Some(600);
    })
    .await;
    let mut conn = fx.connect().await;
    let ack = conn.ok(&Req::create("/drop/a.bin")).await;
    assert_ack(
        &ack,
        200,
        &[
            "BITS-Protocol",
            "BITS-Session-Id",
            "Accept-Encoding",
            "BITS-Host-Id",
            "BITS-Host-Id-Fallback-Timeout",
        ],
    );
    assert_eq!(ack.header("BITS-Host-Id"), Some("node3.farm.test"));
    assert_eq!(ack.header("BITS-Host-Id-Fallback-Timeout"), Some("600"));
    // Only the Create-Session Ack carries it; the session works via the alternate name.
    let session = ack.session_id().unwrap().to_owned();
    let alternate = |req: Req| req.header("Host", "node3.farm.test");
    assert_ack(
        &conn.ok(&alternate(Req::ping("/drop/a.bin"))).await,
        200,
        &[],
    );
    let ack = conn
        .ok(&alternate(Req::fragment(
            "/drop/a.bin",
            &session,
            0,
            3,
            b"abc",
        )))
        .await;
    assert_ack(
        &ack,
        200,
        &["BITS-Session-Id", "BITS-Received-Content-Range"],
    );
    let ack = conn
        .ok(&alternate(Req::close("/drop/a.bin", &session)))
        .await;
    assert_ack(&ack, 200, &["BITS-Session-Id"]);
    // A failed Create-Session does not announce it either.
    let ack = conn.ok(&Req::create("/drop/a.bin")).await;
    assert_ack(&ack, 409, &[]);
    fx.stop().await;
}

// ---------------------------------------------------------------------------------------
// Hostile input (§10)
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn garbage_and_malformed_requests_leave_the_server_answering_ping() {
    let fx = start_with(|c| c.max_head_bytes = 16 * 1024).await;
    let huge = "x".repeat(100 * 1024);
    let many_headers: String = (0..300).map(|i| format!("X-H{i}: v\r\n")).collect();
    let inputs: Vec<Vec<u8>> = vec![
        b"\x00\x01\x02\x03garbage\xff\xfe\xfd\r\n\r\n".to_vec(),
        // A TLS ClientHello prefix.
        vec![0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03],
        b"HELLO\r\n\r\n".to_vec(),
        b"\r\n\r\n\r\n\r\n".to_vec(),
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
        b"BITS_POST /x HTTP/9.9\r\nContent-Length: 0\r\n\r\n".to_vec(),
        b"BITS_POST /x\r\n\r\n".to_vec(),
        b"BITS_POST /x HTTP/1.1\r\nBITS-Packet-Type Ping\r\n\r\n".to_vec(),
        b"BITS_POST /x HTTP/1.1\r\nBITS-Pa".to_vec(),
        b"BITS_POST /x HTTP/1.1\r\nBITS-Packet-Type: \xff\xfe\r\nContent-Length: 0\r\n\r\n".to_vec(),
        b"BITS_POST /x HTTP/1.1\r\nBITS-Packet-Type: Ping\x00\r\nContent-Length: 0\r\n\r\n".to_vec(),
        b"BITS_POST /x HTTP/1.1\r\nBITS-Packet-Type: Ping\r\nContent-Length: -1\r\n\r\n".to_vec(),
        b"BITS_POST /x HTTP/1.1\r\nBITS-Packet-Type: Ping\r\nContent-Length: abc\r\n\r\n".to_vec(),
        b"BITS_POST /x HTTP/1.1\r\nBITS-Packet-Type: Ping\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\nhello".to_vec(),
        b"BITS_POST /x HTTP/1.1\r\nBITS-Packet-Type: Ping\r\nContent-Length: 99999999999999999999999\r\n\r\n".to_vec(),
        b"BITS_POST /x HTTP/1.1\r\nBITS-Packet-Type: Ping\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nzz\r\n".to_vec(),
        b"BITS_POST /x HTTP/1.1\r\nBITS-Packet-Type: Ping\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
        format!("BITS_POST /x HTTP/1.1\r\nX-Big: {huge}\r\n\r\n").into_bytes(),
        format!("BITS_POST /{huge} HTTP/1.1\r\nContent-Length: 0\r\n\r\n").into_bytes(),
        format!("BITS_POST /x HTTP/1.1\r\n{many_headers}BITS-Packet-Type: Ping\r\nContent-Length: 0\r\n\r\n").into_bytes(),
        // A fragment for an unknown session whose body never fully arrives.
        format!("BITS_POST /x HTTP/1.1\r\nBITS-Packet-Type: Fragment\r\nBITS-Session-Id: {UNKNOWN_SESSION}\r\nContent-Range: bytes 0-999/1000\r\nContent-Length: 1000\r\n\r\nshort").into_bytes(),
        // Non-ASCII session id on a fragment.
        b"BITS_POST /x HTTP/1.1\r\nBITS-Packet-Type: Fragment\r\nBITS-Session-Id: {\xc3\xa9}\r\nContent-Range: bytes 0-0/1\r\nContent-Length: 1\r\n\r\nx".to_vec(),
        b"POST /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n".to_vec(),
        b"DELETE /BITS-Sessions/Requests HTTP/1.1\r\nContent-Length: 0\r\n\r\n".to_vec(),
        b"bits_post /x HTTP/1.1\r\nBITS-Packet-Type: Ping\r\nContent-Length: 0\r\n\r\n".to_vec(),
    ];
    let mut statuses = Vec::new();
    for input in &inputs {
        let mut conn = fx.connect().await;
        // The server may close before reading everything; a write error is fine.
        let _ = conn.write_raw(input).await;
        let _ = conn.shutdown_write().await;
        let answer = tokio::time::timeout(Duration::from_secs(15), conn.read_to_close())
            .await
            .expect("the server closes a connection the client half-closed");
        let status = String::from_utf8_lossy(answer.get(..12).unwrap_or(&answer)).into_owned();
        assert!(
            !status.starts_with("HTTP/1.1 2"),
            "{:?} was accepted: {status}",
            String::from_utf8_lossy(&input[..input.len().min(80)])
        );
        statuses.push(status);
        fx.assert_alive().await;
    }
    // A few answers are specific enough to check.
    assert!(
        statuses[9].starts_with("HTTP/1.1 400"),
        "non-UTF-8 packet type: {}",
        statuses[9]
    );
    assert!(
        statuses[17].starts_with("HTTP/1.1 4"),
        "huge header: {}",
        statuses[17]
    );
    assert!(
        statuses[22].starts_with("HTTP/1.1 405"),
        "POST: {}",
        statuses[22]
    );
    assert_eq!(fx.running.server.session_count(), 0);
    assert_eq!(list(&fx.root), ["BITS-Sessions"]);
    assert!(fx.temp_files().is_empty());
    fx.stop().await;
}

#[tokio::test]
async fn a_request_after_rejected_ones_on_the_same_connection_still_works() {
    let fx = start().await;
    let mut conn = fx.connect().await;
    let session = conn.create("/drop/a.bin").await;
    // A burst of bad packets, pipelined without waiting for answers.
    let bad = [
        Req::bits("/drop/a.bin", "Nonsense"),
        Req::ping("/drop/a.bin").body(b"body".to_vec()),
        Req::fragment("/drop/a.bin", &session, 0, 3, b"abc").set("Content-Range", "bytes 0-2/*"),
        Req::fragment("/drop/a.bin", &session, 2, 3, b"c"),
        Req::close("/drop/a.bin", UNKNOWN_SESSION),
    ];
    let mut bytes = Vec::new();
    for req in &bad {
        bytes.extend(req.head_bytes(fx.addr()));
        bytes.extend(&req.body);
    }
    conn.write_raw(&bytes).await.unwrap();
    let expected = [400, 400, 400, 416, 500];
    for (req, status) in bad.iter().zip(expected) {
        let ack = conn.read_response(false).await.unwrap();
        assert_eq!(ack.status, status, "{req:?}: {ack:?}");
        assert_eq!(ack.header("BITS-Packet-Type"), Some("Ack"));
    }
    let ack = conn.fragment("/drop/a.bin", &session, b"abc", 0, 3).await;
    assert_eq!((ack.status, ack.received()), (200, Some(3)));
    conn.close("/drop/a.bin", &session).await;
    assert_eq!(fx.stored("/drop/a.bin").unwrap(), b"abc");
    fx.stop().await;
}
