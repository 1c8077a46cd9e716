//! The event stream over real sockets: one record per request, in order, with what was
//! stored and sent; one event per session happening; waiting for events.

mod support;

use bitsmock::journal::{Event, Sent, What};
use bitsmock::proto::{Gone, PacketType};
use sha2::{Digest, Sha256};
use std::time::Duration;
use support::*;

fn requests(events: &[Event]) -> Vec<&bitsmock::journal::Request> {
    events.iter().filter_map(Event::request).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn every_request_has_one_record_in_order_and_stored_bytes_add_up_to_the_committed_file() {
    let fx = start_with(|c| c.sha256 = true).await;
    let data = data(10_000, 9);
    let mut conn = fx.connect().await;
    assert_eq!(conn.ok(&Req::ping("/e/a.bin")).await.status, 200);
    let id = conn.create("/e/a.bin").await;
    // Three fragments, one overlapping the previous by 500 bytes, then the Close.
    conn.ok(&Req::fragment("/e/a.bin", &id, 0, 10_000, &data[..4000]))
        .await;
    conn.ok(&Req::fragment(
        "/e/a.bin",
        &id,
        3500,
        10_000,
        &data[3500..8000],
    ))
    .await;
    conn.ok(&Req::fragment("/e/a.bin", &id, 8000, 10_000, &data[8000..]))
        .await;
    conn.close("/e/a.bin", &id).await;
    let bogus = conn.ok(&Req::bits("/e/x", "Bogus")).await;
    assert_eq!(bogus.status, 400);
    assert_eq!(
        conn.ok(&Req::get("/BITS-Sessions/Replies/x/responsefile.bin"))
            .await
            .status,
        404
    );

    let events = fx.running.server.events();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=events.len() as u64).collect::<Vec<_>>(),
        "seq is 1, 2, 3, …"
    );
    let records = requests(&events);
    let packets: Vec<Option<PacketType>> = records.iter().map(|r| r.packet).collect();
    use PacketType::*;
    assert_eq!(
        packets,
        vec![
            Some(Ping),
            Some(CreateSession),
            Some(Fragment),
            Some(Fragment),
            Some(Fragment),
            Some(CloseSession),
            None,
            None
        ]
    );
    assert_eq!(records[6].packet_label.as_deref(), Some("Bogus"));
    assert!(records[6].reason.is_some(), "a 400 carries its reason");
    assert_eq!(records[7].method, "GET");
    assert_eq!(records[7].sent, Sent::Status { status: 404 });
    for r in &records[1..6] {
        let session = r.session.expect("session on every session packet");
        assert_eq!(session.id.to_string(), id);
        assert_eq!(session.ordinal, Some(1));
    }
    let fragments: Vec<_> = records
        .iter()
        .filter(|r| r.packet == Some(Fragment))
        .collect();
    assert_eq!(
        fragments
            .iter()
            .map(|r| (r.index, r.received, r.stored))
            .collect::<Vec<_>>(),
        vec![(1, 4000, 4000), (2, 4500, 4000), (3, 2000, 2000)]
    );
    let stored: u64 = fragments.iter().map(|r| r.stored).sum();

    let committed = events
        .iter()
        .find_map(|e| match &e.what {
            What::Committed {
                session,
                path,
                size,
                sha256,
            } => Some((session.ordinal, path.clone(), *size, sha256.clone())),
            _ => None,
        })
        .expect("a committed event");
    let file = fx.stored("/e/a.bin").unwrap();
    assert_eq!(committed.0, Some(1));
    assert_eq!(committed.1, "e/a.bin");
    assert_eq!(committed.2, file.len() as u64);
    assert_eq!(
        stored, committed.2,
        "bytes stored per fragment add up to the file"
    );
    assert_eq!(committed.3, Some(hex(&Sha256::digest(&file))));
    // The created event comes before the Create-Session's own record.
    let created = events
        .iter()
        .position(|e| matches!(e.what, What::SessionCreated { .. }))
        .unwrap();
    let create_record = events
        .iter()
        .position(|e| e.request().is_some_and(|r| r.packet == Some(CreateSession)))
        .unwrap();
    assert!(created < create_record);
}

#[tokio::test]
async fn a_faulted_request_records_what_the_core_answered_and_what_was_really_sent() {
    let fx = start_rules(&[
        "packet=fragment nth=1 fault=lose-ack how=reset",
        "packet=fragment nth=2 fault=lose-request how=close",
        "packet=fragment nth=3 fault=reset-mid-body after-bytes=2 keep=false",
        "packet=ping fault=status status=503",
    ])
    .await;
    let mut conn = fx.connect().await;
    let id = conn.create("/f.bin").await;
    assert!(
        conn.send(&Req::fragment("/f.bin", &id, 0, 10, b"01234"))
            .await
            .is_err()
    );
    let mut conn = fx.connect().await;
    assert!(
        conn.send(&Req::fragment("/f.bin", &id, 5, 10, b"56789"))
            .await
            .is_err()
    );
    let mut conn = fx.connect().await;
    assert!(
        conn.send(&Req::fragment("/f.bin", &id, 5, 10, b"56789"))
            .await
            .is_err()
    );
    let mut conn = fx.connect().await;
    assert_eq!(conn.ok(&Req::ping("/p")).await.status, 503);
    let events = fx.running.server.events();
    let records = requests(&events);
    let shape: Vec<_> = records
        .iter()
        .map(|r| (r.packet, r.status, r.sent, r.stored, r.faults.len()))
        .collect();
    use PacketType::*;
    assert_eq!(
        shape,
        vec![
            (
                Some(CreateSession),
                Some(200),
                Sent::Status { status: 200 },
                0,
                0
            ),
            (Some(Fragment), Some(200), Sent::Reset, 5, 1),
            (Some(Fragment), None, Sent::Closed, 0, 1),
            (Some(Fragment), None, Sent::Reset, 0, 1),
            (Some(Ping), None, Sent::Status { status: 503 }, 0, 1),
        ]
    );
    assert_eq!(records[3].received, 2, "the mid-body reset read 2 bytes");
    assert!(
        records[4]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("503"))
    );
    let json = serde_json::to_value(&events[events.len() - 1]).unwrap();
    assert_eq!(json["event"], "request");
    assert_eq!(json["sent"]["sent"], "status");
    assert_eq!(json["faults"][0]["effect"]["kind"], "status");
    assert_eq!(json["packet"], "Ping");
}

#[tokio::test]
async fn sessions_that_end_without_a_commit_say_why() {
    let fx = start_rules(&["packet=fragment session=3 fault=lose-session"]).await;
    let mut conn = fx.connect().await;
    // A premature close discards, a cancel cancels, a fault forgets.
    let a = conn.create("/a.bin").await;
    conn.ok(&Req::fragment("/a.bin", &a, 0, 10, b"01234")).await;
    conn.close("/a.bin", &a).await;
    let b = conn.create("/b.bin").await;
    assert_eq!(conn.ok(&Req::cancel("/b.bin", &b)).await.status, 200);
    let c = conn.create("/c.bin").await;
    conn.ok(&Req::fragment("/c.bin", &c, 0, 10, b"01234")).await;
    let gone: Vec<_> = fx
        .running
        .server
        .events()
        .into_iter()
        .filter_map(|e| match e.what {
            What::SessionGone {
                session,
                why,
                kept_file,
            } => Some((session.ordinal, why, kept_file)),
            _ => None,
        })
        .collect();
    assert_eq!(
        gone,
        vec![
            (Some(1), Gone::Discarded, false),
            (Some(2), Gone::Cancelled, false),
            (Some(3), Gone::Forgotten, false),
        ]
    );
    assert!(fx.temp_files().is_empty());
}

#[tokio::test]
async fn waiting_for_events_wakes_on_the_next_one_and_gives_up_after_the_timeout() {
    let fx = start().await;
    let server = std::sync::Arc::clone(&fx.running.server);
    // The first event of every server is `started`.
    let started = server.events();
    assert!(matches!(
        started[..],
        [Event {
            seq: 1,
            what: What::Started { .. },
            ..
        }]
    ));
    let none = server.wait_for_events(1, Duration::from_millis(50)).await;
    assert!(none.is_empty());
    let waiting = tokio::spawn({
        let server = std::sync::Arc::clone(&server);
        async move { server.wait_for_events(1, Duration::from_secs(10)).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    fx.connect().await.ok(&Req::ping("/w")).await;
    let woke = waiting.await.unwrap();
    assert_eq!(woke.len(), 1);
    assert_eq!(
        woke[0].request().and_then(|r| r.packet),
        Some(PacketType::Ping)
    );
    let last = woke[0].seq;
    assert!(
        server
            .wait_for_events(last, Duration::from_millis(20))
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn a_refused_connection_is_an_event() {
    let fx = start_rules(&["fault=refuse until=1h times=1"]).await;
    let mut conn = fx.connect().await;
    assert!(conn.send(&Req::ping("/r")).await.is_err());
    eventually("the refusal is recorded", Duration::from_secs(5), || {
        fx.running
            .server
            .events()
            .iter()
            .any(|e| matches!(e.what, What::Refused { .. }))
    })
    .await;
    fx.assert_alive().await;
}

#[tokio::test]
async fn uploads_are_hashed_only_when_asked_or_when_their_reply_names_the_digest() {
    let fx = start().await;
    let mut conn = fx.connect().await;
    conn.upload("/plain.bin", b"0123456789", 4).await;
    conn.upload("/reply/r.bin", b"0123456789", 4).await;
    let digests: Vec<_> = fx
        .running
        .server
        .events()
        .into_iter()
        .filter_map(|e| match e.what {
            What::Committed { path, sha256, .. } => Some((path, sha256)),
            _ => None,
        })
        .collect();
    assert_eq!(
        digests,
        vec![
            ("plain.bin".to_owned(), None),
            (
                "reply/r.bin".to_owned(),
                Some(hex(&Sha256::digest(b"0123456789")))
            ),
        ]
    );
}

/// A random conversation, request by request: what the client sent, in order.
#[tokio::test]
async fn over_random_conversations_the_journal_has_one_record_per_request_in_order_and_stored_bytes_add_up()
 {
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};
    let mut committed = 0;
    for seed in 0..12u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let fx = start_rules(&[
            "packet=fragment probability=0.2 fault=lose-ack how=close",
            "packet=fragment probability=0.1 fault=reset-mid-body after-fraction=0.5",
            "probability=0.1 fault=status status=503",
        ])
        .await;
        let mut sent: Vec<(Option<PacketType>, String)> = Vec::new();
        let mut conn = fx.connect().await;
        let total = rng.random_range(1..20_000u64);
        let bytes = data(total as usize, seed);
        let target = format!("/prop/{seed}.bin");
        let mut id: Option<String> = None;
        let mut offset = 0u64;
        for step in 0..60 {
            let roll: u32 = rng.random_range(0..10);
            let (packet, req) = match (id.as_deref(), roll) {
                (_, 0) => (PacketType::Ping, Req::ping(&format!("/ping/{step}"))),
                (None, _) => (PacketType::CreateSession, Req::create(&target)),
                (Some(s), 1) if offset == total => {
                    (PacketType::CloseSession, Req::close(&target, s))
                }
                (Some(s), _) => {
                    // Sometimes resend from an earlier offset, as a client unsure of an Ack.
                    let first = if rng.random_range(0..4) == 0 {
                        offset / 2
                    } else {
                        offset.min(total - 1)
                    };
                    let len = rng.random_range(1..=4096u64).min(total - first);
                    let body = &bytes[first as usize..(first + len) as usize];
                    (
                        PacketType::Fragment,
                        Req::fragment(&target, s, first, total, body),
                    )
                }
            };
            sent.push((Some(packet), req_path(&req)));
            match conn.send(&req).await {
                Ok(ack) => {
                    if packet == PacketType::CreateSession && ack.status == 200 {
                        id = ack.session_id().map(str::to_owned);
                    }
                    if packet == PacketType::CloseSession && ack.status == 200 {
                        break;
                    }
                    if let Some(received) = ack.received() {
                        offset = received;
                    }
                }
                Err(_) => conn = fx.connect().await,
            }
        }
        let events = fx.running.server.events();
        let records: Vec<_> = requests(&events)
            .into_iter()
            .map(|r| (r.packet, r.path.clone()))
            .collect();
        assert_eq!(
            records, sent,
            "seed {seed}: one record per request, in order"
        );
        // Per committed session, the stored bytes of its fragments add up to its file.
        for e in &events {
            if let What::Committed { session, size, .. } = &e.what {
                let stored: u64 = requests(&events)
                    .iter()
                    .filter(|r| r.session.map(|s| s.id) == Some(session.id))
                    .map(|r| r.stored)
                    .sum();
                assert_eq!(
                    stored, *size,
                    "seed {seed}: stored bytes vs the committed size"
                );
                assert_same(&fx.stored(&target).unwrap(), &bytes, "committed file");
                committed += 1;
            }
        }
    }
    assert!(
        committed >= 3,
        "only {committed} conversations reached a commit"
    );
}

/// The path a request targets, without its query.
fn req_path(req: &Req) -> String {
    let head =
        String::from_utf8_lossy(&req.head_bytes("127.0.0.1:1".parse().unwrap())).into_owned();
    let target = head.split(' ').nth(1).unwrap_or_default().to_owned();
    target.split('?').next().unwrap_or_default().to_owned()
}
