//! The request pipeline's promises that cross requests and restarts: one upload root per
//! server, session ids that never repeat, ordinals assigned with their fault decision,
//! storage that survives a cleared upload root, and one truthful record per request.

mod support;

use support::serve::Serve;
use support::*;

#[tokio::test]
async fn a_second_server_on_the_same_upload_root_refuses_to_start_and_names_the_root() {
    let fx = start().await;
    let second = bitsmock::spawn(config_at(&fx.root)).await;
    let Err(e) = second else {
        panic!("a second server started on {}", fx.root.display());
    };
    let message = e.to_string();
    let root = fx.root.canonicalize().unwrap();
    assert!(
        message.contains(&root.display().to_string()),
        "message does not name the root: {message}"
    );
    assert!(
        message.contains(&std::process::id().to_string()),
        "message does not name the other process: {message}"
    );
    // The first server is untouched and its root is free again once it stops.
    fx.assert_alive().await;
    let root_path = fx.root.clone();
    let dir = fx.dir;
    fx.running.stop().await.unwrap();
    let again = bitsmock::spawn(config_at(&root_path))
        .await
        .expect("root free");
    again.stop().await.unwrap();
    drop(dir);
}

#[tokio::test]
async fn a_root_lock_held_for_a_moment_is_waited_for() {
    // A child process between fork and exec shares its parent's open files, the root's lock
    // included: a server starting then must wait for it, not call its own root "in use".
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let first = bitsmock::spawn(config_at(&root)).await.unwrap();
    first.stop().await.unwrap();
    let lock = std::fs::File::open(root.join("BITS-Sessions").join("lock")).unwrap();
    lock.lock().unwrap();
    let holder = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(100));
        drop(lock);
    });
    let second = bitsmock::spawn(config_at(&root))
        .await
        .expect("a lock let go after 100 ms is taken");
    holder.join().unwrap();
    second.stop().await.unwrap();
}

#[tokio::test]
async fn a_second_server_does_not_delete_the_first_servers_temp_files() {
    let fx = start().await;
    let mut conn = fx.connect().await;
    let id = conn.create("/a.bin").await;
    frag(&mut conn, "/a.bin", &id, 0, 10, b"AAAAA").await;
    assert_eq!(fx.temp_files().len(), 1);
    assert!(bitsmock::spawn(config_at(&fx.root)).await.is_err());
    assert_eq!(
        fx.temp_files().len(),
        1,
        "the refused server touched the root"
    );
    let ack = frag(&mut conn, "/a.bin", &id, 5, 10, b"AAAAA").await;
    assert_eq!(ack.status, 200);
    assert_eq!(conn.close("/a.bin", &id).await.status, 200);
    assert_eq!(fx.stored("/a.bin").unwrap(), b"AAAAAAAAAA");
}

#[tokio::test]
async fn a_stale_session_id_after_a_restart_is_not_found_and_never_writes_into_a_new_session() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    // Client A creates a session and sends half its file; then the server restarts.
    let first = bitsmock::spawn(config_at(&root)).await.unwrap();
    let mut a = Conn::open(first.addr).await;
    let stale = a.create("/a.bin").await;
    frag(&mut a, "/a.bin", &stale, 0, 10, b"AAAAA").await;
    first.stop().await.unwrap();

    // Same root, same (default) seed: client B starts its upload on the new server.
    let second = bitsmock::spawn(config_at(&root)).await.unwrap();
    let mut b = Conn::open(second.addr).await;
    let fresh = b.create("/b.bin").await;
    assert_ne!(fresh, stale, "a restart handed out the same session id");
    frag(&mut b, "/b.bin", &fresh, 0, 10, b"BBBBB").await;

    // A resumes with its old id: the new server must not know it.
    let mut a = Conn::open(second.addr).await;
    let ack = a
        .send(&Req::fragment("/a.bin", &stale, 5, 10, b"AAAAA"))
        .await
        .unwrap();
    assert_error(&ack, 500, SESSION_NOT_FOUND, &["BITS-Session-Id"]);

    frag(&mut b, "/b.bin", &fresh, 5, 10, b"BBBBB").await;
    assert_eq!(b.close("/b.bin", &fresh).await.status, 200);
    let mut stored = root.clone();
    stored.push("b.bin");
    assert_eq!(std::fs::read(stored).unwrap(), b"BBBBBBBBBB");
    second.stop().await.unwrap();
}

#[tokio::test]
async fn two_servers_with_the_same_seed_hand_out_different_session_ids() {
    let a = start().await;
    let b = start().await;
    let ia = a.connect().await.create("/x.bin").await;
    let ib = b.connect().await.create("/x.bin").await;
    assert_ne!(ia, ib);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rule_on_session_5_fires_once_on_the_fifth_session_created_among_16_concurrent_clients() {
    for round in 0..3 {
        let fx = start_rules(&["session=5 packet=create-session fault=delay delay=1ms name=fifth"])
            .await;
        let addr = fx.addr();
        let clients: Vec<_> = (0..16)
            .map(|i| {
                tokio::spawn(async move {
                    let mut conn = Conn::open(addr).await;
                    conn.create(&format!("/c/{i}.bin")).await
                })
            })
            .collect();
        let mut ids = Vec::new();
        for c in clients {
            ids.push(c.await.unwrap());
        }
        let firings = fx.running.server.firings();
        assert_eq!(
            firings.len(),
            1,
            "round {round}: the rule fired {} times: {firings:?}",
            firings.len()
        );
        assert_eq!(firings[0].session, 5);
        // The session that got the fault is the one the table numbered 5.
        let fifth = fx
            .running
            .server
            .sessions()
            .into_iter()
            .find(|s| s.ordinal == 5)
            .expect("a fifth session");
        let faulted: Vec<_> = fx
            .running
            .server
            .events()
            .into_iter()
            .filter_map(|e| e.request().cloned())
            .filter(|r| !r.faults.is_empty())
            .collect();
        assert_eq!(faulted.len(), 1);
        assert_eq!(
            faulted[0].session.as_ref().map(|s| s.id),
            Some(fifth.id),
            "the fault fired on another session than the fifth"
        );
        assert!(ids.contains(&fifth.id.to_string()));
    }
}

/// Empties the upload root the way a test harness does between runs: `rm -rf root/*`.
fn clear_root(root: &std::path::Path) {
    for entry in std::fs::read_dir(root).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path).unwrap();
        } else {
            std::fs::remove_file(&path).unwrap();
        }
    }
}

#[tokio::test]
async fn uploads_work_again_after_the_upload_root_is_emptied_while_the_server_runs() {
    let fx = start().await;
    let data = data(5000, 3);
    let mut conn = fx.connect().await;
    assert_eq!(conn.upload("/one/a.bin", &data, 1000).await.status, 200);
    clear_root(&fx.root);
    assert_eq!(conn.upload("/one/a.bin", &data, 1000).await.status, 200);
    assert_same(&fx.stored("/one/a.bin").unwrap(), &data, "stored file");
}

#[tokio::test]
async fn a_session_whose_temp_file_was_deleted_is_lost_not_acknowledged() {
    let fx = start().await;
    let mut conn = fx.connect().await;
    let id = conn.create("/a.bin").await;
    frag(&mut conn, "/a.bin", &id, 0, 10, b"AAAAA").await;
    clear_root(&fx.root);
    // The first five bytes are gone with the temp file: the server must not acknowledge 10.
    let ack = conn
        .send(&Req::fragment("/a.bin", &id, 5, 10, b"AAAAA"))
        .await
        .unwrap();
    assert_error(&ack, 500, SESSION_NOT_FOUND, &["BITS-Session-Id"]);
    assert!(fx.stored("/a.bin").is_none());
    // The client starts over and succeeds.
    assert_eq!(conn.upload("/a.bin", b"AAAAAAAAAA", 5).await.status, 200);
    assert_eq!(fx.stored("/a.bin").unwrap(), b"AAAAAAAAAA");
}

#[cfg(unix)]
#[tokio::test]
async fn a_temp_directory_that_cannot_be_written_answers_access_denied_not_disk_full() {
    use std::os::unix::fs::PermissionsExt;
    if nix_is_root() {
        eprintln!("skipped: permissions do not bind root");
        return;
    }
    let fx = start().await;
    let requests = fx.root.join("BITS-Sessions").join("Requests");
    std::fs::set_permissions(&requests, std::fs::Permissions::from_mode(0o500)).unwrap();
    let mut conn = fx.connect().await;
    let id = conn.create("/a.bin").await;
    let ack = conn
        .send(&Req::fragment("/a.bin", &id, 0, 5, b"AAAAA"))
        .await
        .unwrap();
    std::fs::set_permissions(&requests, std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_error(&ack, 403, "0x80070005", &[]);
}

fn nix_is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(true)
}

#[tokio::test]
async fn the_request_log_has_one_truthful_line_per_request_whatever_a_fault_did() {
    let server = Serve::start_with(
        &[
            "--listen",
            "127.0.0.1:0",
            "--fault",
            "packet=ping every=2 fault=status status=503",
            "--fault",
            "packet=fragment nth=1 fault=lose-ack how=reset",
            "--fault",
            "packet=fragment nth=2 fault=lie lie=behind by=1",
            "--fault",
            "packet=close-session nth=1 fault=lose-request how=close",
        ],
        |command| {
            command.env("RUST_LOG", "info");
        },
    );
    let addr = server.addr;

    let mut conn = Conn::open(addr).await;
    assert_eq!(conn.ok(&Req::ping("/p")).await.status, 200);
    assert_eq!(conn.ok(&Req::ping("/p")).await.status, 503);
    let id = conn.create("/log/a.bin").await;
    let lost = conn
        .send(&Req::fragment("/log/a.bin", &id, 0, 10, b"01234"))
        .await;
    assert!(lost.is_err(), "the Ack was not lost: {lost:?}");
    let mut conn = Conn::open(addr).await;
    let lied = conn
        .ok(&Req::fragment("/log/a.bin", &id, 0, 10, b"01234"))
        .await;
    assert_eq!(lied.received(), Some(4));
    frag(&mut conn, "/log/a.bin", &id, 5, 10, b"56789").await;
    assert!(conn.send(&Req::close("/log/a.bin", &id)).await.is_err());
    let mut conn = Conn::open(addr).await;
    assert_eq!(conn.close("/log/a.bin", &id).await.status, 200);
    let _ = conn
        .send(&Req::new("BITS_POST", "/log/x").header("BITS-Packet-Type", "Bogus"))
        .await;

    let (_, log) = server.stop_with("INT");
    let requests: Vec<&str> = log.lines().filter(|l| l.contains(" request ")).collect();
    // 2 pings, create, 4 fragments (lost, lied, last), 2 closes, the bogus one.
    assert_eq!(requests.len(), 9, "one line per request:\n{log}");
    let find = |parts: &[&str]| {
        requests
            .iter()
            .find(|l| parts.iter().all(|p| l.contains(p)))
            .unwrap_or_else(|| panic!("no request line with {parts:?}:\n{log}"))
            .to_string()
    };
    find(&["packet=Ping", "sent=503", "reason="]);
    let reset = find(&["packet=Fragment", "status=200", "sent=reset"]);
    assert!(reset.contains(&format!("session={id}")), "{reset}");
    assert!(
        reset.contains("ordinal=1") && reset.contains("path=/log/a.bin"),
        "{reset}"
    );
    assert!(reset.contains("range=0-4/10"), "{reset}");
    find(&["packet=Close-Session", "sent=closed"]);
    find(&["packet=Fragment", "sent=200", "lie"]);
    find(&["sent=400", "reason="]);
    assert!(
        !log.contains("Behind(") && !log.contains("TruncatedHeaders"),
        "{log}"
    );
    assert!(
        !log.contains('\u{1b}'),
        "colour codes in a log that is not a terminal"
    );
}

/// One fragment of a `total`-byte file, answered.
async fn frag(
    conn: &mut Conn,
    target: &str,
    id: &str,
    first: u64,
    total: u64,
    bytes: &[u8],
) -> Resp {
    conn.ok(&Req::fragment(target, id, first, total, bytes))
        .await
}
