//! Hostile clients and a hostile filesystem: bounded descriptors and sessions, an accept loop
//! that outlives running out of descriptors, no commit outside the upload root through a
//! symbolic link, an error Ack instead of a reset when a write fails mid-fragment, a temp
//! file deleted behind the server's back never acknowledged, and stale temp files removed
//! at the next start (docs/protocol.md §7.5, §7.8, §7.10; README "Limits and guarantees").

mod support;

use std::time::Duration;
use support::serve::{Serve, bitsmock, run, text};
use support::*;

/// Open descriptors of a process, from /proc.
fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

#[tokio::test]
async fn sessions_holding_bytes_keep_no_file_open_so_a_low_descriptor_limit_never_fills() {
    // 64 descriptors; each of 150 sessions gets one fragment. Holding a temp file open per
    // session ran out after about 50 ("disk full" for every fragment after that).
    let server = Serve::start_limited(64, &["--listen", "127.0.0.1:0"]);
    let mut conn = Conn::open(server.addr).await;
    let data = data(2000, 14);
    let mut sessions = Vec::new();
    for i in 0..150 {
        let target = format!("/many/{i}.bin");
        let id = conn.create(&target).await;
        let ack = conn.fragment(&target, &id, &data, 0, 1000).await;
        assert_eq!(ack.status, 200, "session {i}: {ack:?}");
        sessions.push((target, id));
    }
    let held = open_descriptors(server.pid());
    assert!(held < 32, "{held} descriptors open with 150 live sessions");
    // A new connection is still served, and every session can finish.
    let mut other = Conn::open(server.addr).await;
    assert_eq!(other.ok(&Req::ping("/p")).await.status, 200);
    for (target, id) in &sessions {
        let ack = conn.fragment(target, id, &data, 1000, 1000).await;
        assert_eq!(ack.received(), Some(2000), "{target}: {ack:?}");
        conn.close(target, id).await;
    }
    let root = server.root();
    for (target, _) in &sessions {
        let stored = std::fs::read(root.join(target.trim_start_matches('/'))).unwrap();
        assert_same(&stored, &data, target);
    }
    server.stop();
}

#[tokio::test]
async fn a_create_beyond_max_sessions_answers_500_out_of_resources_until_a_session_ends() {
    let fx = start_with(|c| c.vdir.max_sessions = 3).await;
    let mut conn = fx.connect().await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(conn.create(&format!("/cap/{i}.bin")).await);
    }
    let refused = conn.ok(&Req::create("/cap/3.bin")).await;
    // Transient to clients (a 5xx that is not session-not-found): they retry later.
    assert_error(&refused, 500, "0x8007000E", &[]);
    assert_eq!(refused.header("BITS-Error-Context"), Some("0x5"));
    assert_eq!(fx.running.server.session_count(), 3);
    let cancelled = conn.ok(&Req::cancel("/cap/0.bin", &ids[0])).await;
    assert_eq!(cancelled.status, 200);
    conn.create("/cap/3.bin").await;
    fx.stop().await;
}

#[test]
fn max_sessions_is_a_flag_and_a_profile_key_and_zero_is_refused_naming_it() {
    let flag = run(bitsmock(&["serve", "--max-sessions", "0"]));
    assert_eq!(flag.status.code(), Some(2), "{}", text(&flag.stderr));
    assert!(
        text(&flag.stderr).contains("--max-sessions"),
        "{}",
        text(&flag.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("p.toml");
    std::fs::write(
        &profile,
        "name = \"p\"\ndescription = \"d\"\n[server]\nmax-sessions = 0\n",
    )
    .unwrap();
    let out = run(bitsmock(&["profile", "check", profile.to_str().unwrap()]));
    assert!(!out.status.success());
    let said = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        said.contains("p.toml:4") && said.contains("`max-sessions` must be at least 1"),
        "{said}"
    );
    std::fs::write(
        &profile,
        "name = \"p\"\ndescription = \"d\"\n[server]\nmax-sessions = 5\n",
    )
    .unwrap();
    let ok = run(bitsmock(&["profile", "check", profile.to_str().unwrap()]));
    assert!(ok.status.success(), "{}", text(&ok.stderr));
}

#[tokio::test]
async fn running_out_of_descriptors_pauses_accepting_and_the_server_recovers_fully() {
    let server = Serve::start_limited(48, &["--listen", "127.0.0.1:0"]);
    let mut first = Conn::open(server.addr).await;
    let id = first.create("/fd/a.bin").await;
    // Far more connections than descriptors: the server takes what it can, the rest wait
    // in the backlog while accept fails with EMFILE.
    let mut flood = Vec::new();
    for _ in 0..120 {
        flood.push(tokio::net::TcpStream::connect(server.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A fragment now cannot open its temp file: a transient 500, on a connection that lives.
    let ack = first
        .send(&Req::fragment("/fd/a.bin", &id, 0, 10, b"0123456789"))
        .await
        .expect("answered, not reset");
    match ack.status {
        200 => {}
        _ => assert_error(&ack, 500, "0x8007000E", &["BITS-Session-Id"]),
    }
    drop(flood);
    // Once the flood is gone, new connections are served again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut conn = Conn::open(server.addr).await;
        if let Ok(Ok(ack)) =
            tokio::time::timeout(Duration::from_secs(2), conn.send(&Req::ping("/p"))).await
            && ack.status == 200
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no Ping answered after the flood"
        );
    }
    let mut conn = Conn::open(server.addr).await;
    assert_eq!(conn.upload("/fd/b.bin", b"recovered", 4).await.status, 200);
    server.stop();
}

#[tokio::test]
async fn a_symlink_in_the_upload_root_cannot_carry_a_commit_outside_it() {
    let fx = start().await;
    let outside = fx.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, fx.root.join("evil")).unwrap();
    let mut conn = fx.connect().await;
    let id = conn.create("/evil/x.bin").await;
    conn.send_from("/evil/x.bin", &id, b"escaped?", 0, 8).await;
    let ack = conn.ok(&Req::close("/evil/x.bin", &id)).await;
    assert_error(&ack, 403, "0x80070005", &["BITS-Session-Id"]);
    assert!(list(&outside).is_empty(), "{:?}", list(&outside));
    // Deeper links are refused the same way; real folders still work.
    std::fs::create_dir(fx.root.join("real")).unwrap();
    std::os::unix::fs::symlink(&outside, fx.root.join("real").join("link")).unwrap();
    let id = conn.create("/real/link/deep/y.bin").await;
    conn.send_from("/real/link/deep/y.bin", &id, b"no", 0, 2)
        .await;
    let ack = conn.ok(&Req::close("/real/link/deep/y.bin", &id)).await;
    assert_error(&ack, 403, "0x80070005", &["BITS-Session-Id"]);
    assert!(list(&outside).is_empty(), "{:?}", list(&outside));
    assert_eq!(conn.upload("/real/new/z.bin", b"fine", 4).await.status, 200);
    assert_eq!(fx.stored("/real/new/z.bin").unwrap(), b"fine");
    fx.stop().await;
}

#[tokio::test]
async fn a_write_error_mid_fragment_answers_disk_full_and_the_connection_survives() {
    let fx = start().await;
    let mut conn = fx.connect().await;
    let id = conn.create("/full/a.bin").await;
    // The temp file is the full device: every write fails with ENOSPC, after the first
    // megabyte of a 4 MiB body was read.
    std::os::unix::fs::symlink("/dev/full", fx.temp_path(&id)).unwrap();
    let body = data(4 << 20, 1);
    let ack = conn
        .send(&Req::fragment(
            "/full/a.bin",
            &id,
            0,
            body.len() as u64,
            &body,
        ))
        .await
        .expect("an Ack, not a reset");
    assert_error(&ack, 500, "0x80070112", &["BITS-Session-Id"]);
    assert_eq!(
        conn.ok(&Req::ping("/p")).await.status,
        200,
        "same connection"
    );
    fx.stop().await;
}

#[tokio::test]
async fn a_temp_file_deleted_during_a_fragment_is_session_lost_not_acknowledged() {
    let fx = start().await;
    let mut conn = fx.connect().await;
    let id = conn.create("/gone/a.bin").await;
    let body = data(3 << 20, 2);
    let req = Req::fragment("/gone/a.bin", &id, 0, body.len() as u64, &body);
    // Headers and half the body; the first batch lands; then the file is deleted.
    let head = req.head_bytes(fx.addr());
    conn.write_raw(&head).await.unwrap();
    conn.write_raw(&body[..(3 << 19)]).await.unwrap();
    let temp = fx.temp_path(&id);
    eventually(
        "the first batch is in the temp file",
        Duration::from_secs(10),
        || std::fs::metadata(&temp).is_ok_and(|m| m.len() >= 1 << 20),
    )
    .await;
    std::fs::remove_file(&temp).unwrap();
    conn.write_raw(&body[(3 << 19)..]).await.unwrap();
    let ack = conn.read_response(false).await.unwrap();
    assert_error(&ack, 500, SESSION_NOT_FOUND, &["BITS-Session-Id"]);
    // The client starts over and succeeds.
    assert_eq!(conn.upload("/gone/a.bin", &body, 1 << 20).await.status, 200);
    assert_same(&fx.stored("/gone/a.bin").unwrap(), &body, "stored");
    fx.stop().await;
}

#[tokio::test]
async fn close_after_the_temp_file_vanished_answers_session_not_found_so_the_client_restarts() {
    let fx = start().await;
    let mut conn = fx.connect().await;
    let id = conn.create("/late/a.bin").await;
    conn.send_from("/late/a.bin", &id, b"0123456789", 0, 10)
        .await;
    std::fs::remove_file(fx.temp_path(&id)).unwrap();
    // A 404 here would be fatal to the client; session-not-found makes it start over.
    let ack = conn.ok(&Req::close("/late/a.bin", &id)).await;
    assert_error(&ack, 500, SESSION_NOT_FOUND, &["BITS-Session-Id"]);
    assert_eq!(fx.running.server.session_count(), 0);
    assert!(fx.stored("/late/a.bin").is_none());
    fx.stop().await;
}

#[tokio::test]
async fn after_an_unclean_stop_the_next_start_removes_our_temp_files_and_nothing_else() {
    let server = Serve::start(&["--listen", "127.0.0.1:0"]);
    let mut conn = Conn::open(server.addr).await;
    let id = conn.create("/crash/a.bin").await;
    let ack = conn
        .fragment("/crash/a.bin", &id, b"0123456789", 0, 5)
        .await;
    assert_eq!(ack.status, 200);
    let dir = server.kill_keeping_dir();
    let root = dir.path().join("uploads");
    let requests = root.join("BITS-Sessions").join("Requests");
    let uuid = id.trim_matches(['{', '}']).to_ascii_lowercase();
    assert_eq!(list(&requests), vec![format!("{uuid}.bin")]);
    // Not ours: other names, a directory with our kind of name, and a link named like ours
    // (removed, but what it points to is not touched).
    let kept_outside = dir.path().join("precious.bin");
    std::fs::write(&kept_outside, b"mine").unwrap();
    std::fs::write(requests.join("notes.bin"), b"x").unwrap();
    std::fs::write(requests.join("README"), b"x").unwrap();
    std::fs::create_dir(requests.join("0a0a0a0a-0a0a-0a0a-0a0a-0a0a0a0a0a0a.bin")).unwrap();
    std::os::unix::fs::symlink(
        &kept_outside,
        requests.join("0b0b0b0b-0b0b-0b0b-0b0b-0b0b0b0b0b0b.bin"),
    )
    .unwrap();
    let again = bitsmock::spawn(config_at(&root)).await.expect("restarts");
    assert_eq!(
        list(&requests),
        vec![
            "0a0a0a0a-0a0a-0a0a-0a0a-0a0a0a0a0a0a.bin".to_owned(),
            "README".to_owned(),
            "notes.bin".to_owned()
        ]
    );
    assert_eq!(std::fs::read(&kept_outside).unwrap(), b"mine");
    again.stop().await.unwrap();
}
