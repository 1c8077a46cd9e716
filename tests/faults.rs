//! Every fault's effect on the wire, over real loopback sockets, and the server state that
//! must hold afterwards (docs/protocol.md §9.10). Rules are given in the `--fault` one-line syntax.

mod support;

use std::io::ErrorKind;
use std::time::{Duration, Instant};
use support::serve::{Serve, bitsmock, run, text};
use support::*;

const T: &str = "/drop/f.bin";

/// Sends a request and expects the connection to end without any response.
async fn expect_no_answer(conn: &mut Conn, req: &Req) -> std::io::Error {
    match conn.send(req).await {
        Ok(resp) => panic!("expected a lost answer, got {resp:?}"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn a_lost_ack_after_close_leaves_the_fragment_written_and_a_resend_is_acknowledged() {
    let f = start_rules(&["packet=fragment nth=1 fault=lose-ack how=close"]).await;
    let data = data(3000, 1);
    let mut conn = f.connect().await;
    let id = conn.create(T).await;
    let e = expect_no_answer(&mut conn, &Req::fragment(T, &id, 0, 3000, &data[..1000])).await;
    assert_ne!(e.kind(), ErrorKind::TimedOut, "{e}");
    // The client resumes on a new connection from where it believes it is (0).
    let mut conn = f.connect().await;
    let ack = conn
        .ok(&Req::fragment(T, &id, 0, 3000, &data[..1000]))
        .await;
    assert_eq!((ack.status, ack.received()), (200, Some(1000)));
    let ack = conn
        .ok(&Req::fragment(T, &id, 1000, 3000, &data[1000..]))
        .await;
    assert_eq!(ack.received(), Some(3000));
    assert_eq!(conn.ok(&Req::close(T, &id)).await.status, 200);
    assert_same(&f.stored(T).unwrap(), &data, "stored file");
    assert_eq!(f.fired(), vec![1]);
}

#[tokio::test]
async fn a_lost_ack_by_reset_is_a_tcp_reset_and_the_server_state_stays_right() {
    let f = start_rules(&["packet=fragment nth=2 fault=lose-ack how=reset"]).await;
    let data = data(2000, 2);
    let mut conn = f.connect().await;
    let id = conn.create(T).await;
    conn.ok(&Req::fragment(T, &id, 0, 2000, &data[..500])).await;
    let e = expect_no_answer(
        &mut conn,
        &Req::fragment(T, &id, 500, 2000, &data[500..1500]),
    )
    .await;
    assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}");
    let mut conn = f.connect().await;
    // Resending the lost range: the server already holds it and says so (policy A).
    let ack = conn
        .ok(&Req::fragment(T, &id, 500, 2000, &data[500..1500]))
        .await;
    assert_eq!((ack.status, ack.received()), (200, Some(1500)));
    conn.ok(&Req::fragment(T, &id, 1500, 2000, &data[1500..]))
        .await;
    conn.ok(&Req::close(T, &id)).await;
    assert_same(&f.stored(T).unwrap(), &data, "stored file");
}

#[tokio::test]
async fn a_hung_ack_says_nothing_for_the_hang_then_closes() {
    let f = start_rules(&["packet=fragment fault=lose-ack how=hang hang=300ms"]).await;
    let mut conn = f.connect().await;
    let id = conn.create(T).await;
    let started = Instant::now();
    expect_no_answer(&mut conn, &Req::fragment(T, &id, 0, 10, b"0123456789")).await;
    assert!(
        started.elapsed() >= Duration::from_millis(280),
        "{:?}",
        started.elapsed()
    );
    // The fragment was applied before the hang.
    let mut conn = f.connect().await;
    let ack = conn.ok(&Req::close(T, &id)).await;
    assert_eq!(ack.status, 200);
    assert_eq!(f.stored(T).unwrap(), b"0123456789");
}

#[tokio::test]
async fn a_lost_ack_as_503_still_applied_the_packet() {
    let f = start_rules(&["packet=fragment nth=1 fault=lose-ack how=status status=503"]).await;
    let mut conn = f.connect().await;
    let id = conn.create(T).await;
    let ack = conn.ok(&Req::fragment(T, &id, 0, 8, b"abcd")).await;
    assert_eq!(ack.status, 503);
    assert_eq!(ack.header("BITS-Packet-Type"), Some("Ack"));
    assert_eq!(ack.received(), None);
    let ack = conn.ok(&Req::fragment(T, &id, 4, 8, b"efgh")).await;
    assert_eq!((ack.status, ack.received()), (200, Some(8)));
}

#[tokio::test]
async fn a_lost_request_is_never_applied() {
    let f = start_rules(&["packet=fragment nth=1 fault=lose-request how=close"]).await;
    let mut conn = f.connect().await;
    let id = conn.create(T).await;
    expect_no_answer(&mut conn, &Req::fragment(T, &id, 0, 8, b"abcd")).await;
    let mut conn = f.connect().await;
    // Had it been applied, this gap would not be one.
    let ack = conn.ok(&Req::fragment(T, &id, 4, 8, b"efgh")).await;
    assert_eq!((ack.status, ack.received()), (416, Some(0)));
    assert_eq!(f.temp_sizes(), vec![0]);
}

#[tokio::test]
async fn a_lost_create_session_ack_still_created_the_session() {
    let f = start_rules(&["packet=create-session fault=lose-ack how=reset"]).await;
    let mut conn = f.connect().await;
    expect_no_answer(&mut conn, &Req::create(T)).await;
    assert_eq!(f.running.server.session_count(), 1);
}

#[tokio::test]
async fn a_mid_body_reset_acknowledges_later_the_bytes_it_kept_and_none_it_discarded() {
    // (rule, data seed, where the resend probes, bytes kept)
    for (rule, seed, probe, kept) in [
        (
            "packet=fragment nth=1 fault=reset-mid-body after-bytes=400 keep=true",
            3,
            600,
            400,
        ),
        (
            "packet=fragment nth=1 fault=reset-mid-body after-fraction=0.5 keep=false",
            4,
            500,
            0,
        ),
    ] {
        let f = start_rules(&[rule]).await;
        let data = data(1000, seed);
        let mut conn = f.connect().await;
        let id = conn.create(T).await;
        let e = expect_no_answer(&mut conn, &Req::fragment(T, &id, 0, 1000, &data)).await;
        assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{rule}: {e}");
        let mut conn = f.connect().await;
        let ack = conn
            .ok(&Req::fragment(T, &id, probe, 1000, &data[probe as usize..]))
            .await;
        assert_eq!((ack.status, ack.received()), (416, Some(kept)), "{rule}");
        let ack = conn
            .ok(&Req::fragment(T, &id, kept, 1000, &data[kept as usize..]))
            .await;
        assert_eq!(ack.received(), Some(1000), "{rule}");
        conn.ok(&Req::close(T, &id)).await;
        assert_same(&f.stored(T).unwrap(), &data, rule);
    }
}

#[tokio::test]
async fn a_forgotten_session_answers_its_packet_then_is_unknown_and_its_file_gone() {
    let f = start_rules(&["packet=fragment session=1 nth=1 fault=lose-session scope=this"]).await;
    let mut conn = f.connect().await;
    let id = conn.create(T).await;
    let ack = conn.ok(&Req::fragment(T, &id, 0, 8, b"abcd")).await;
    assert_eq!((ack.status, ack.received()), (200, Some(4)));
    let ack = conn.ok(&Req::fragment(T, &id, 4, 8, b"efgh")).await;
    assert_eq!(ack.status, 500);
    assert_eq!(ack.header("BITS-Error-Code"), Some(SESSION_NOT_FOUND));
    assert_eq!(ack.header("BITS-Error-Context"), Some("0x5"));
    assert!(!f.temp_path(&id).exists());
    // The client's recovery: a new session from byte 0.
    let id2 = conn.create(T).await;
    conn.ok(&Req::fragment(T, &id2, 0, 8, b"abcdefgh")).await;
    assert_eq!(conn.ok(&Req::close(T, &id2)).await.status, 200);
    assert_eq!(f.stored(T).unwrap(), b"abcdefgh");
}

#[tokio::test]
async fn a_forgotten_session_can_leave_its_temp_file_behind() {
    let f = start_rules(&["packet=fragment nth=1 fault=lose-session keep-file=true"]).await;
    let mut conn = f.connect().await;
    let id = conn.create(T).await;
    conn.ok(&Req::fragment(T, &id, 0, 8, b"abcd")).await;
    assert_eq!(conn.ok(&Req::close(T, &id)).await.status, 500);
    assert_eq!(std::fs::read(f.temp_path(&id)).unwrap(), b"abcd");
}

#[tokio::test]
async fn a_simulated_restart_forgets_every_session() {
    let f = start_rules(&["packet=fragment session=2 fault=lose-session scope=all"]).await;
    let mut conn = f.connect().await;
    let a = conn.create("/a.bin").await;
    let b = conn.create("/b.bin").await;
    conn.ok(&Req::fragment("/b.bin", &b, 0, 8, b"abcd")).await;
    for (t, id) in [("/a.bin", &a), ("/b.bin", &b)] {
        let ack = conn.ok(&Req::fragment(t, id, 0, 8, b"abcd")).await;
        assert_eq!(
            ack.header("BITS-Error-Code"),
            Some(SESSION_NOT_FOUND),
            "{t}"
        );
    }
    assert_eq!(f.running.server.session_count(), 0);
}

#[tokio::test]
async fn a_short_idle_timeout_expires_the_session_between_fragments() {
    let f =
        start_rules(&["packet=fragment nth=1 fault=lose-session scope=expire idle=100ms"]).await;
    let mut conn = f.connect().await;
    let id = conn.create(T).await;
    conn.ok(&Req::fragment(T, &id, 0, 8, b"abcd")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ack = conn.ok(&Req::fragment(T, &id, 4, 8, b"efgh")).await;
    assert_eq!(ack.header("BITS-Error-Code"), Some(SESSION_NOT_FOUND));
    assert!(!f.temp_path(&id).exists());
}

#[tokio::test]
async fn an_injected_status_carries_its_bits_error_and_applies_nothing() {
    let f = start_rules(&[
        "packet=fragment nth=1 fault=status status=500 code=0x80070112 context=0x5 retry-after=3",
    ])
    .await;
    let mut conn = f.connect().await;
    let id = conn.create(T).await;
    let ack = conn.ok(&Req::fragment(T, &id, 0, 8, b"abcd")).await;
    assert_eq!(ack.status, 500);
    assert_eq!(ack.header("BITS-Error-Code"), Some("0x80070112"));
    assert_eq!(ack.header("BITS-Error-Context"), Some("0x5"));
    assert_eq!(ack.header("Retry-After"), Some("3"));
    assert_eq!(ack.header("Content-Length"), Some("0"));
    // Same connection still usable, nothing was stored.
    let ack = conn.ok(&Req::fragment(T, &id, 4, 8, b"efgh")).await;
    assert_eq!((ack.status, ack.received()), (416, Some(0)));
}

#[tokio::test]
async fn lying_acks_say_what_they_were_told_to_and_the_truth_still_holds() {
    let f = start_rules(&[
        "packet=fragment nth=1 fault=lie lie=behind by=3",
        "packet=fragment nth=2 fault=lie lie=ahead by=2",
        "packet=fragment nth=3 fault=lie lie=beyond-total",
        "packet=fragment nth=4 fault=lie lie=malformed",
        "packet=fragment nth=5 fault=lie lie=missing",
        "packet=fragment nth=6 fault=lie lie=other-session",
        "packet=fragment nth=7 fault=lie lie=416 at=1",
    ])
    .await;
    let mut conn = f.connect().await;
    let id = conn.create(T).await;
    let body = b"abcdefghij";
    let send =
        |first: u64| Req::fragment(T, &id, first, 10, &body[first as usize..first as usize + 1]);
    let ack = conn.ok(&send(0)).await;
    assert_eq!(
        ack.header("BITS-Received-Content-Range"),
        Some("0"),
        "1 - 3 saturates"
    );
    let ack = conn.ok(&send(1)).await;
    assert_eq!(ack.received(), Some(4));
    let ack = conn.ok(&send(2)).await;
    assert_eq!(ack.received(), Some(11));
    let ack = conn.ok(&send(3)).await;
    assert!(
        ack.header("BITS-Received-Content-Range")
            .unwrap()
            .parse::<u64>()
            .is_err()
    );
    let ack = conn.ok(&send(4)).await;
    assert_eq!(ack.header("BITS-Received-Content-Range"), None);
    let ack = conn.ok(&send(5)).await;
    assert_ne!(ack.session_id(), Some(id.as_str()));
    assert!(ack.session_id().unwrap().starts_with('{'));
    let ack = conn.ok(&send(6)).await;
    assert_eq!((ack.status, ack.received()), (416, Some(1)));
    // Whatever the Acks said, the server stored exactly seven bytes.
    let ack = conn.ok(&send(7)).await;
    assert_eq!((ack.status, ack.received()), (200, Some(8)));
    assert_eq!(f.fired(), vec![1; 7]);
}

#[tokio::test]
async fn an_upload_reply_final_ack_can_lose_its_reply_url() {
    let f = start_rules(&["fault=lie lie=no-reply-url"]).await;
    let mut conn = f.connect().await;
    let id = conn.create("/reply/r.bin").await;
    let ack = conn
        .ok(&Req::fragment("/reply/r.bin", &id, 0, 3, b"xyz"))
        .await;
    assert_eq!((ack.status, ack.received()), (200, Some(3)));
    assert_eq!(ack.header("BITS-Reply-URL"), None);
}

#[tokio::test]
async fn broken_responses_are_unreadable_and_close_the_connection() {
    for (broken, expect) in [
        ("truncated-headers", "no full head"),
        ("wrong-length", "body cut short"),
        ("garbage", "not HTTP"),
    ] {
        let f = start_rules(&[&format!("packet=ping fault=broken broken={broken}")]).await;
        let mut conn = f.connect().await;
        conn.write(&Req::ping("/x")).await.unwrap();
        let raw = conn.read_to_close().await;
        match broken {
            "truncated-headers" => {
                assert!(raw.starts_with(b"HTTP/1.1 200"), "{expect}");
                assert!(!raw.windows(4).any(|w| w == b"\r\n\r\n"), "{expect}");
            }
            "wrong-length" => {
                let text = String::from_utf8_lossy(&raw);
                assert!(
                    text.contains("Content-Length: 64\r\n") && text.ends_with("\r\n\r\n"),
                    "{expect}: {text}"
                );
            }
            _ => {
                assert_eq!(raw.len(), 64, "{expect}");
                assert!(!raw.starts_with(b"HTTP/"), "{expect}");
            }
        }
        assert_alive_after_faults(&f).await;
    }
}

#[tokio::test]
async fn a_throttled_response_trickles_out() {
    let f = start_rules(&["packet=ping fault=throttle write-rate=400"]).await;
    let mut conn = f.connect().await;
    let started = Instant::now();
    let ack = conn.ok(&Req::ping("/x")).await;
    assert_eq!(ack.status, 200);
    // About 100 bytes of head at 400 B/s.
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_throttled_body_read_takes_its_time_and_stores_everything() {
    let f = start_rules(&["packet=fragment fault=throttle read-rate=40KiB"]).await;
    let data = data(20 * 1024, 5);
    let mut conn = f.connect().await;
    let id = conn.create(T).await;
    let started = Instant::now();
    let ack = conn
        .ok(&Req::fragment(T, &id, 0, data.len() as u64, &data))
        .await;
    assert_eq!(ack.received(), Some(data.len() as u64));
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    conn.ok(&Req::close(T, &id)).await;
    assert_same(&f.stored(T).unwrap(), &data, "stored file");
}

#[tokio::test]
async fn a_stall_waits_before_reading_the_body() {
    let f = start_rules(&["packet=fragment fault=stall delay=300ms"]).await;
    let mut conn = f.connect().await;
    let id = conn.create(T).await;
    let started = Instant::now();
    let ack = conn.ok(&Req::fragment(T, &id, 0, 4, b"abcd")).await;
    assert_eq!(ack.received(), Some(4));
    assert!(started.elapsed() >= Duration::from_millis(280));
}

#[tokio::test(start_paused = true)]
async fn a_long_delay_is_served_in_virtual_time() {
    let f = start_rules(&["packet=ping fault=delay distribution=uniform min=10s max=20s"]).await;
    let mut conn = f.connect().await;
    let (virtual_start, real_start) = (tokio::time::Instant::now(), Instant::now());
    let ack = conn.ok(&Req::ping("/x")).await;
    assert_eq!(ack.status, 200);
    let waited = virtual_start.elapsed();
    assert!(
        waited >= Duration::from_secs(10) && waited <= Duration::from_secs(21),
        "{waited:?}"
    );
    assert!(real_start.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn an_outage_refuses_connections_inside_its_window_only() {
    let f = start_rules(&["from=0s until=400ms fault=refuse"]).await;
    let mut conn = f.connect().await;
    assert!(
        conn.send(&Req::ping("/x")).await.is_err(),
        "refused during the outage"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut conn = f.connect().await;
    assert_eq!(conn.ok(&Req::ping("/x")).await.status, 200);
    assert!(f.fired()[0] >= 1);
}

#[tokio::test]
async fn basic_auth_challenges_until_the_right_credentials_come() {
    use base64::Engine;
    let f = start_rules(&["fault=auth scheme=basic user=alice password=s3cret"]).await;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut conn = f.connect().await;
    let ack = conn.ok(&Req::create(T)).await;
    assert_eq!(ack.status, 401);
    assert_eq!(
        ack.header("WWW-Authenticate"),
        Some("Basic realm=\"bitsmock\"")
    );
    assert_eq!(
        f.running.server.session_count(),
        0,
        "a challenged request is not applied"
    );
    let wrong = Req::create(T).header("Authorization", &format!("Basic {}", b64("alice:nope")));
    assert_eq!(conn.ok(&wrong).await.status, 401);
    let right = Req::create(T).header("Authorization", &format!("Basic {}", b64("alice:s3cret")));
    let ack = conn.ok(&right).await;
    assert_eq!(ack.status, 200);
    assert!(ack.session_id().is_some());
}

#[tokio::test]
async fn negotiate_authenticates_the_connection_after_its_legs_and_can_demand_it_again() {
    let f = start_rules(&["fault=auth scheme=negotiate legs=2 again-after=1"]).await;
    let mut conn = f.connect().await;
    let ack = conn.ok(&Req::ping("/x")).await;
    assert_eq!(
        (ack.status, ack.header("WWW-Authenticate")),
        (401, Some("Negotiate"))
    );
    let ack = conn
        .ok(&Req::ping("/x").header("Authorization", "Negotiate bGVnMQ=="))
        .await;
    assert_eq!(ack.status, 401);
    assert!(ack.header("WWW-Authenticate").unwrap().len() > "Negotiate ".len());
    let ack = conn
        .ok(&Req::ping("/x").header("Authorization", "Negotiate bGVnMg=="))
        .await;
    assert_eq!(ack.status, 200);
    // Connection-bound: later requests need no header...
    let id = conn.create(T).await;
    assert_eq!(
        conn.ok(&Req::fragment(T, &id, 0, 8, b"abcd")).await.status,
        200
    );
    // ...until the server demands it again after one fragment.
    assert_eq!(
        conn.ok(&Req::fragment(T, &id, 4, 8, b"efgh")).await.status,
        401
    );
    // A new connection starts unauthenticated.
    let mut other = f.connect().await;
    assert_eq!(other.ok(&Req::ping("/x")).await.status, 401);
}

/// Runs the same scripted client twice and returns the fault log.
async fn fault_log(seed: u64) -> Vec<(usize, u64, String, u64, String)> {
    let f = start_rules_with(
        &[
            "packet=fragment probability=0.3 fault=lose-ack how=close",
            "probability=0.2 fault=delay distribution=exponential mean=1ms",
            "packet=fragment probability=0.1 fault=lie lie=behind by=1",
        ],
        |c| c.seed = seed,
    )
    .await;
    let data = data(4000, 6);
    for s in 0..3 {
        let target = format!("/det/{s}.bin");
        let mut conn = f.connect().await;
        let id = conn.create(&target).await;
        let mut offset = 0u64;
        while offset < 4000 {
            let end = (offset + 400).min(4000);
            let req = Req::fragment(
                &target,
                &id,
                offset,
                4000,
                &data[offset as usize..end as usize],
            );
            match conn.send(&req).await {
                Ok(ack) => offset = ack.received().unwrap_or(offset),
                Err(_) => conn = f.connect().await,
            }
        }
        conn.ok(&Req::close(&target, &id)).await;
        assert_same(&f.stored(&target).unwrap(), &data, "stored file");
    }
    f.running
        .server
        .firings()
        .into_iter()
        .map(|x| {
            let packet = x.packet.map(|p| p.to_string()).unwrap_or_default();
            (x.rule, x.session, packet, x.index, x.effect.to_string())
        })
        .collect()
}

#[tokio::test]
async fn the_same_seed_and_client_give_the_same_faults_and_another_seed_others() {
    let a = fault_log(11).await;
    let b = fault_log(11).await;
    let c = fault_log(12).await;
    assert!(a.len() >= 3, "faults fired: {a:?}");
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[tokio::test]
async fn every_shipped_profile_passes_profile_check() {
    let mut check = bitsmock(&["profile", "check"]);
    check.args(
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/profiles"))
            .unwrap()
            .map(|e| e.unwrap().path()),
    );
    let out = run(check);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).lines().count(),
        bitsmock::fault::shipped::SHIPPED.len()
    );
}

#[tokio::test]
async fn a_bad_profile_is_reported_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "name = \"x\"\ndescription = \"y\"\n\n[[rule]]\nfault = \"lose-ack\"\nhow = \"sometimes\"\n").unwrap();
    let mut check = bitsmock(&["profile", "check"]);
    check.arg(&path);
    let out = run(check);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.starts_with(&format!("{}:6: ", path.display())),
        "{stderr}"
    );
}

#[tokio::test]
async fn serve_logs_faults_and_prints_fire_counts_on_shutdown() {
    let server = Serve::start(&[
        "--listen",
        "127.0.0.1:0",
        "--fault",
        "packet=ping nth=1 fault=delay delay=1ms name=tiny",
        "--fault",
        "packet=ping every=2 fault=status status=503",
    ]);
    let mut conn = Conn::open(server.addr).await;
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..4 {
            v.push(conn.ok(&Req::ping("/x")).await.status);
        }
        v
    };
    assert_eq!(statuses, vec![200, 503, 200, 503]);
    let (rest, log) = server.stop_with("INT");
    assert!(
        rest.iter().any(|l| l == "rule 1: tiny: fired 0 time(s)"),
        "{rest:?}"
    );
    assert!(
        rest.iter().any(|l| l == "rule 2: rule 2: fired 2 time(s)"),
        "{rest:?}"
    );
    assert!(
        log.contains("fault") && log.contains("answered 503"),
        "{log}"
    );
}

/// Only the first Ping is broken; a new connection gets a clean answer.
async fn assert_alive_after_faults(f: &Fixture) {
    let mut conn = f.connect().await;
    let _ = conn.send(&Req::ping("/again")).await;
}
