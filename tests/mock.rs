//! `MockServer`, as a Rust test uses it: a profile and a seed, the reference client, then
//! assertions on the journal, sessions and uploads; arming rules; reset; drop stops it.

mod support;

use bitsmock::MockServer;
use bitsmock::client::{Options, Uploader};
use bitsmock::journal::{Sent, What};
use std::time::Duration;
use support::*;

fn quick_client() -> Uploader {
    Uploader::new(Options {
        fragment_size: 64 * 1024,
        backoff_base: Duration::from_millis(5),
        backoff_cap: Duration::from_millis(20),
        ..Options::default()
    })
}

#[tokio::test]
async fn a_client_survives_a_profile_and_the_journal_shows_what_it_went_through() {
    let server = MockServer::builder()
        .profile("lost-acks")
        .seed(7)
        .time_scale(0.01)
        .configure(|c| c.vdir.allow_overwrites = true)
        .start()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("a.bin");
    let bytes = data(1_000_000, 4);
    std::fs::write(&source, &bytes).unwrap();
    quick_client()
        .upload(&source, &format!("{}/drop/a.bin", server.url()))
        .await
        .unwrap();

    let committed = server
        .wait_for(
            |e| matches!(&e.what, What::Committed { path, .. } if path == "drop/a.bin"),
            Duration::from_secs(5),
        )
        .await;
    assert!(committed.is_some(), "no committed event");
    let uploads = server.uploads().await;
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0].size, 1_000_000);
    assert_same(
        &std::fs::read(server.root().join("drop/a.bin")).unwrap(),
        &bytes,
        "upload",
    );
    let lost: Vec<_> = server
        .journal()
        .into_iter()
        .filter_map(|e| e.request().cloned())
        .filter(|r| !r.faults.is_empty())
        .collect();
    assert!(!lost.is_empty(), "lost-acks fired nothing");
    assert!(lost.iter().all(|r| r.sent != Sent::Status { status: 200 }));
    // A lost Create-Session Ack leaves an orphan the client never heard of; nothing else.
    assert!(server.sessions().iter().all(|s| s.received == 0));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn arming_a_rule_shapes_the_next_request_and_a_reset_takes_it_back() {
    let server = MockServer::builder().start().await.unwrap();
    let id = server.arm("packet=ping fault=status status=503").unwrap();
    let mut conn = Conn::open(server.addr()).await;
    assert_eq!(conn.ok(&Req::ping("/x")).await.status, 503);
    assert_eq!(server.rules()[0].id, id);
    assert!(server.disarm(id));
    assert_eq!(conn.ok(&Req::ping("/x")).await.status, 200);

    server
        .set_rules(&["packet=create-session fault=status status=500"])
        .unwrap();
    assert_eq!(conn.ok(&Req::create("/y.bin")).await.status, 500);
    server.reset().await;
    assert!(
        server.rules().is_empty(),
        "back to the configured (no) rules"
    );
    assert_eq!(conn.ok(&Req::create("/y.bin")).await.status, 200);
    assert!(
        server.arm("packet=pong fault=delay").is_err(),
        "bad rules are errors"
    );
}

#[tokio::test]
async fn a_rule_armed_for_a_window_is_an_outage_on_demand() {
    let server = MockServer::builder().start().await.unwrap();
    server
        .arm_for("fault=refuse", Duration::from_millis(300))
        .unwrap();
    let mut conn = Conn::open(server.addr()).await;
    assert!(
        conn.send(&Req::ping("/o")).await.is_err(),
        "refused in the window"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut conn = Conn::open(server.addr()).await;
    assert_eq!(conn.ok(&Req::ping("/o")).await.status, 200);
}

#[tokio::test]
async fn waiting_for_an_event_that_never_comes_gives_up_at_the_timeout() {
    let server = MockServer::builder().start().await.unwrap();
    let started = std::time::Instant::now();
    let none = server
        .wait_for(|e| e.request().is_some(), Duration::from_millis(100))
        .await;
    assert!(none.is_none());
    assert!(started.elapsed() >= Duration::from_millis(100));
}

#[tokio::test]
async fn dropping_the_server_stops_it_and_removes_its_temp_directory() {
    let server = MockServer::builder().start().await.unwrap();
    let addr = server.addr();
    let root = server.root().to_path_buf();
    assert!(root.exists());
    drop(server);
    eventually("the server stops", Duration::from_secs(10), || {
        std::net::TcpStream::connect(addr).is_err() && !root.exists()
    })
    .await;
}

#[tokio::test]
async fn a_bad_profile_name_is_an_error_that_lists_the_shipped_ones() {
    let Err(e) = MockServer::builder().profile("no-such").start().await else {
        panic!("started with a bad profile");
    };
    assert!(e.to_string().contains("lost-acks"), "{e}");
}
