//! Steering a running server from a test: swapping and arming rules during an upload,
//! forgetting sessions, resetting, listing uploads, totals, shutdown, the journal file and
//! fault marks on the wire.

mod support;

use bitsmock::journal::What;
use sha2::{Digest, Sha256};
use std::time::Duration;
use support::*;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn rules_swapped_and_armed_during_an_upload_apply_to_its_next_packets_and_it_survives() {
    let fx = start().await;
    let server = &fx.running.server;
    let data = data(4000, 2);
    let mut conn = fx.connect().await;
    let id = conn.create("/swap.bin").await;
    conn.fragment("/swap.bin", &id, &data, 0, 1000).await;

    // Swap in a rule that answers every fragment 503: the live session survives the swap.
    server.set_rules(rules(&["packet=fragment fault=status status=503"]));
    let ack = conn.fragment("/swap.bin", &id, &data, 1000, 1000).await;
    assert_eq!(ack.status, 503);
    server.set_rules(Vec::new());
    assert_eq!(
        conn.fragment("/swap.bin", &id, &data, 1000, 1000)
            .await
            .status,
        200
    );

    // Arm "lose the next fragment's Ack" once; it fires, then is spent.
    let armed = server.arm(
        rules(&["packet=fragment fault=lose-ack how=close times=1"]).remove(0),
        None,
    );
    assert!(
        conn.send(&Req::fragment(
            "/swap.bin",
            &id,
            2000,
            4000,
            &data[2000..3000]
        ))
        .await
        .is_err()
    );
    let mut conn = fx.connect().await;
    let resumed = conn.fragment("/swap.bin", &id, &data, 2000, 1000).await;
    assert_eq!(
        resumed.received(),
        Some(3000),
        "the lost Ack's bytes were stored"
    );
    let rules = server.rules();
    assert_eq!(rules.len(), 1);
    assert_eq!((rules[0].id, rules[0].fired), (armed, 1));
    assert!(server.disarm(armed));
    assert!(!server.disarm(armed));
    conn.send_from("/swap.bin", &id, &data, 3000, 1000).await;
    conn.close("/swap.bin", &id).await;
    assert_same(&fx.stored("/swap.bin").unwrap(), &data, "stored file");
    let changes = server
        .events()
        .iter()
        .filter(|e| matches!(e.what, What::RulesChanged { .. }))
        .count();
    assert_eq!(changes, 4, "every swap, arm and disarm is an event");
}

#[tokio::test]
async fn a_rule_armed_for_a_window_applies_from_now_for_that_long_only() {
    let fx = start_with(|c| c.time_scale = 0.5).await;
    let server = &fx.running.server;
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.arm(
        rules(&["packet=ping fault=status status=503"]).remove(0),
        Some(Duration::from_millis(300)),
    );
    let mut conn = fx.connect().await;
    assert_eq!(conn.ok(&Req::ping("/w")).await.status, 503, "in the window");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        conn.ok(&Req::ping("/w")).await.status,
        200,
        "after the window"
    );
}

#[tokio::test]
async fn a_forgotten_session_is_not_found_and_its_temp_file_is_gone() {
    let fx = start().await;
    let mut conn = fx.connect().await;
    let id = conn.create("/gone.bin").await;
    conn.ok(&Req::fragment("/gone.bin", &id, 0, 10, b"01234"))
        .await;
    let session = fx.running.server.sessions()[0].id;
    assert!(fx.running.server.forget_session(&session).await);
    assert!(!fx.running.server.forget_session(&session).await);
    assert!(fx.temp_files().is_empty());
    let ack = conn
        .ok(&Req::fragment("/gone.bin", &id, 5, 10, b"56789"))
        .await;
    assert_error(&ack, 500, SESSION_NOT_FOUND, &["BITS-Session-Id"]);
}

#[tokio::test]
async fn a_reset_restores_the_rules_drops_sessions_and_numbers_sessions_from_one_again() {
    let fx = start_rules(&["session=1 packet=create-session fault=delay delay=1ms"]).await;
    let server = &fx.running.server;
    let mut conn = fx.connect().await;
    conn.upload("/kept.bin", b"0123456789", 5).await;
    let id = conn.create("/half.bin").await;
    conn.ok(&Req::fragment("/half.bin", &id, 0, 10, b"01234"))
        .await;
    server.arm(
        rules(&["packet=ping fault=status status=503"]).remove(0),
        None,
    );
    server.reset(false).await;

    assert_eq!(server.session_count(), 0);
    assert!(fx.temp_files().is_empty());
    assert_eq!(server.rules().len(), 1, "the configured rule only");
    assert_eq!(server.rules()[0].fired, 0);
    assert!(matches!(
        server.events()[0].what,
        What::Reset {
            uploads_cleared: false
        }
    ));
    assert!(
        fx.stored("/kept.bin").is_some(),
        "uploads stay unless asked"
    );
    assert_eq!(conn.ok(&Req::ping("/p")).await.status, 200);
    conn.create("/again.bin").await;
    assert_eq!(server.sessions()[0].ordinal, 1, "ordinals start over");
    assert_eq!(server.rules()[0].fired, 1, "so `session = 1` fires again");

    server.reset(true).await;
    assert!(fx.stored("/kept.bin").is_none());
    assert_eq!(list(&fx.root), ["BITS-Sessions"]);
}

#[tokio::test]
async fn uploads_list_every_committed_file_with_its_size_and_sha256() {
    let fx = start().await;
    let mut conn = fx.connect().await;
    let a = data(3000, 1);
    conn.upload("/u/a.bin", &a, 1000).await;
    conn.upload("/u/b.bin", b"bee", 3).await;
    let uploads = fx.running.server.uploads().await;
    let listed: Vec<_> = uploads
        .iter()
        .map(|u| (u.path.as_str(), u.size, u.sha256.clone(), u.ordinal))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("u/a.bin", 3000, Some(hex(&Sha256::digest(&a))), 1),
            ("u/b.bin", 3, Some(hex(&Sha256::digest(b"bee"))), 2),
        ]
    );
}

#[tokio::test]
async fn totals_and_gauges_follow_the_requests() {
    let fx = start().await;
    let mut conn = fx.connect().await;
    conn.ok(&Req::ping("/t")).await;
    conn.upload("/t.bin", b"0123456789", 4).await;
    let tally = fx.running.server.tally();
    assert_eq!(tally.requests_of("Ping", "200"), 1);
    assert_eq!(tally.requests_of("Fragment", "200"), 3);
    assert_eq!((tally.bytes_received, tally.bytes_stored), (10, 10));
    assert_eq!((tally.sessions_created, tally.committed), (1, 1));
    let gauges = fx.running.server.gauges();
    assert_eq!(gauges.live_sessions, 0);
    assert_eq!(gauges.connections, 1);
    assert_eq!(gauges.open_connections, 1);
}

#[tokio::test]
async fn shutdown_stops_the_server_like_ctrl_c() {
    let fx = start().await;
    fx.running.server.shutdown();
    tokio::time::timeout(Duration::from_secs(10), fx.running.stopped())
        .await
        .expect("the server stopped")
        .expect("cleanly");
}

#[tokio::test]
async fn the_journal_file_holds_every_event_as_a_json_line_from_started_to_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.ndjson");
    let fx = start_with({
        let path = path.clone();
        move |c| {
            c.journal = Some(path);
            c.seed = 42;
            c.rules = rules(&["packet=ping fault=status status=503"]);
        }
    })
    .await;
    let mut conn = fx.connect().await;
    conn.ok(&Req::ping("/j")).await;
    conn.upload("/j.bin", b"0123456789", 5).await;
    let in_memory = fx.running.server.events().len();
    fx.stop().await;
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect();
    assert_eq!(lines.len(), in_memory + 1, "every event, then `stopped`");
    assert_eq!(lines[0]["event"], "started");
    assert_eq!(lines[0]["seq"], 1);
    assert_eq!(lines[0]["schema"], 1);
    assert_eq!(lines[0]["seed"], 42);
    assert_eq!(lines[0]["rules"][0]["fault"], "status");
    assert_eq!(lines[0]["settings"]["max_fragment_size"], 32 * 1024 * 1024);
    let last = lines.last().unwrap();
    assert_eq!(last["event"], "stopped");
    assert_eq!(last["rules"][0]["fired"], 1);
    for (n, line) in lines.iter().enumerate() {
        assert_eq!(line["seq"], n as u64 + 1);
    }
}

#[tokio::test]
async fn marked_faults_name_their_rule_in_a_header_and_only_when_asked() {
    for mark in [false, true] {
        let fx = start_with(move |c| {
            c.mark_faults = mark;
            c.rules = rules(&["packet=ping fault=status status=503 name=outage"]);
        })
        .await;
        let mut conn = fx.connect().await;
        let ack = conn.ok(&Req::ping("/m")).await;
        assert_eq!(ack.status, 503);
        let expected = mark.then_some("rule 1 (outage)");
        assert_eq!(
            ack.header("X-Bitsmock-Fault"),
            expected,
            "mark_faults = {mark}"
        );
        let clean = conn.ok(&Req::create("/m.bin")).await;
        assert_eq!(clean.header("X-Bitsmock-Fault"), None);
    }
}
