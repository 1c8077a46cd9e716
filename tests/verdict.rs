//! Every verdict check proven both ways on the wire: a scripted client that breaks the check's
//! rule fails it, and the reference client, under the same fault, passes it (and was judged).

mod support;

use bitsmock::client::{Options, Uploader};
use bitsmock::verdict::{self, Severity, Source, Verdict};
use std::time::Duration;
use support::{Conn, Fixture, Req, start_rules, start_with};

/// The reference client's backoff in these tests starts at 300 ms (jittered into 150–300 ms).
const FLOOR: Duration = Duration::from_millis(100);

fn judge(fx: &Fixture) -> Verdict {
    fx.running.server.verdict(&verdict::Options {
        backoff_floor: FLOOR,
        ..verdict::Options::default()
    })
}

fn judge_with_source(fx: &Fixture, data: &[u8]) -> Verdict {
    let sha256 = bitsmock::exercise::sha256_hex(data);
    let mut options = verdict::Options {
        backoff_floor: FLOOR,
        source: Some(Source {
            size: data.len() as u64,
            sha256,
        }),
        ..verdict::Options::default()
    };
    for entry in std::fs::read_dir(fx.root.join("up")).into_iter().flatten() {
        let entry = entry.expect("entry");
        let bytes = std::fs::read(entry.path()).expect("read");
        options.stored.insert(
            format!("up/{}", entry.file_name().to_string_lossy()),
            bitsmock::exercise::sha256_hex(&bytes),
        );
    }
    fx.running.server.verdict(&options)
}

/// The findings of one check, panicking with the whole report when it was not judged.
fn findings(v: &Verdict, check: &str) -> Vec<String> {
    let o = v
        .outcome(check)
        .unwrap_or_else(|| panic!("no check {check}"));
    assert!(
        o.judged > 0,
        "{check} was not exercised:\n{}",
        verdict::report::text(v)
    );
    o.findings.iter().map(|f| f.message.clone()).collect()
}

fn assert_fails(v: &Verdict, check: &str, needle: &str) {
    let found = findings(v, check);
    assert!(
        found.iter().any(|f| f.contains(needle)),
        "{check} should have found `{needle}`:\n{}",
        verdict::report::text(v)
    );
    let o = v.outcome(check).expect("outcome");
    assert!(o.findings.iter().all(|f| !f.evidence.is_empty()));
    if o.severity == Severity::Error {
        assert!(!v.passed());
    }
}

fn assert_passes(v: &Verdict, check: &str) {
    let found = findings(v, check);
    assert!(
        found.is_empty(),
        "{check} should pass:\n{}",
        verdict::report::text(v)
    );
}

fn reference() -> Uploader {
    Uploader::new(Options {
        fragment_size: 5 * 1024,
        backoff_base: Duration::from_millis(300),
        backoff_cap: Duration::from_secs(1),
        request_timeout: Duration::from_secs(5),
        ..Options::default()
    })
}

/// Uploads `size` bytes to `/up/NAME` with the reference client, which must succeed.
async fn upload(fx: &Fixture, name: &str, size: usize) -> Vec<u8> {
    upload_with(fx, name, size, reference()).await
}

async fn upload_with(fx: &Fixture, name: &str, size: usize, client: Uploader) -> Vec<u8> {
    let (path, data) = fx.source(size);
    client
        .upload(&path, &fx.url(&format!("/up/{name}")))
        .await
        .unwrap_or_else(|e| panic!("the reference client failed: {e}"));
    data
}

/// A scripted client's session: Create-Session, returning the id.
async fn create(c: &mut Conn, target: &str) -> String {
    let r = c.ok(&Req::create(target)).await;
    r.session_id().expect("session id").to_owned()
}

fn bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + 3) as u8).collect()
}

#[tokio::test]
async fn the_reference_client_passes_every_check_through_a_mix_of_faults() {
    let fx = start_rules(&[
        "packet=fragment nth=2 fault=lose-ack how=reset",
        "packet=fragment nth=4 fault=lie lie=behind by=1000",
        "packet=fragment session=1 nth=6 fault=lose-session",
        "packet=fragment nth=3 fault=status status=503 retry-after=1",
    ])
    .await;
    let data = upload(&fx, "mix.bin", 60_000).await;
    let v = judge_with_source(&fx, &data);
    assert!(v.passed(), "{}", verdict::report::text(&v));
    assert_eq!(v.warnings(), 0, "{}", verdict::report::text(&v));
    for check in [
        "resumes-from-ack",
        "recreates-after-session-loss",
        "closes-complete-uploads",
        "no-premature-close",
        "no-abandoned-sessions",
        "backs-off",
        "consistent-session",
        "framing",
        "upload-intact",
    ] {
        assert_passes(&v, check);
    }
}

#[tokio::test]
async fn resumes_from_ack_catches_resending_acknowledged_bytes_and_gaps() {
    let fx = start_rules(&[]).await;
    let mut c = fx.connect().await;
    let id = create(&mut c, "/up/a.bin").await;
    let data = bytes(3000);
    c.ok(&Req::fragment("/up/a.bin", &id, 0, 3000, &data[..1000]))
        .await;
    // Restart from zero although the Ack said 1000.
    c.ok(&Req::fragment("/up/a.bin", &id, 0, 3000, &data[..1000]))
        .await;
    // Then jump past the acknowledged offset: 416 says 1000.
    let r = c
        .send(&Req::fragment("/up/a.bin", &id, 2000, 3000, &data[2000..]))
        .await
        .expect("answer");
    assert_eq!(r.status, 416);
    let v = judge(&fx);
    assert_fails(&v, "resumes-from-ack", "re-sent 1000 bytes");
    assert_fails(&v, "resumes-from-ack", "gap of 1000 bytes");

    let fx = start_rules(&["packet=fragment nth=2 fault=lose-ack how=close"]).await;
    upload(&fx, "b.bin", 20_000).await;
    assert_passes(&judge(&fx), "resumes-from-ack");
}

#[tokio::test]
async fn recreates_after_session_loss_catches_the_dead_id_and_a_restart_not_from_zero() {
    let fx = start_rules(&["packet=fragment nth=1 session=1 fault=lose-session"]).await;
    let mut c = fx.connect().await;
    let id = create(&mut c, "/up/a.bin").await;
    let data = bytes(2000);
    c.ok(&Req::fragment("/up/a.bin", &id, 0, 2000, &data[..1000]))
        .await;
    for _ in 0..3 {
        let r = c
            .send(&Req::fragment("/up/a.bin", &id, 1000, 2000, &data[1000..]))
            .await
            .expect("answer");
        assert_eq!(r.header("BITS-Error-Code"), Some("0x8020001F"));
    }
    // A new session, but resumed at the old offset instead of byte 0.
    let fresh = create(&mut c, "/up/a.bin").await;
    let r = c
        .send(&Req::fragment(
            "/up/a.bin",
            &fresh,
            1000,
            2000,
            &data[1000..],
        ))
        .await
        .expect("answer");
    assert_eq!(r.status, 416);
    let v = judge(&fx);
    assert_fails(
        &v,
        "recreates-after-session-loss",
        "kept using the lost session's id 2 time(s)",
    );
    assert_fails(&v, "recreates-after-session-loss", "instead of 0");

    // Giving up instead of starting over.
    let fx = start_rules(&["packet=fragment nth=1 fault=lose-session"]).await;
    let mut c = fx.connect().await;
    let id = create(&mut c, "/up/a.bin").await;
    c.ok(&Req::fragment("/up/a.bin", &id, 0, 2000, &data[..1000]))
        .await;
    c.send(&Req::fragment("/up/a.bin", &id, 1000, 2000, &data[1000..]))
        .await
        .expect("answer");
    assert_fails(
        &judge(&fx),
        "recreates-after-session-loss",
        "did not create a new session",
    );

    let fx = start_rules(&["packet=fragment nth=2 session=1 fault=lose-session"]).await;
    upload(&fx, "b.bin", 20_000).await;
    assert_passes(&judge(&fx), "recreates-after-session-loss");
}

#[tokio::test]
async fn closes_complete_uploads_and_no_premature_close() {
    let fx = start_rules(&[]).await;
    let mut c = fx.connect().await;
    let data = bytes(2000);
    // All bytes, never closed.
    let never = create(&mut c, "/up/never.bin").await;
    c.ok(&Req::fragment("/up/never.bin", &never, 0, 2000, &data))
        .await;
    // Closed after half.
    let early = create(&mut c, "/up/early.bin").await;
    c.ok(&Req::fragment(
        "/up/early.bin",
        &early,
        0,
        2000,
        &data[..1000],
    ))
    .await;
    c.ok(&Req::close("/up/early.bin", &early)).await;
    let v = judge(&fx);
    assert_fails(&v, "closes-complete-uploads", "never sent Close-Session");
    assert_fails(&v, "no-premature-close", "acknowledged 1000 of 2000 bytes");

    let fx = start_rules(&["packet=fragment nth=2 fault=lose-ack how=close"]).await;
    upload(&fx, "ok.bin", 12_000).await;
    let v = judge(&fx);
    assert_passes(&v, "closes-complete-uploads");
    assert_passes(&v, "no-premature-close");
}

#[tokio::test]
async fn an_abandoned_session_is_a_warning_not_an_error() {
    let fx = start_rules(&[]).await;
    let mut c = fx.connect().await;
    let id = create(&mut c, "/up/a.bin").await;
    c.ok(&Req::fragment("/up/a.bin", &id, 0, 2000, &bytes(1000)))
        .await;
    drop(c);
    let v = judge(&fx);
    assert_fails(&v, "no-abandoned-sessions", "neither closed nor cancelled");
    assert!(v.passed(), "a warning must not fail the verdict");
    assert_eq!(v.warnings(), 1);

    let fx = start_rules(&[]).await;
    upload(&fx, "ok.bin", 6_000).await;
    assert_passes(&judge(&fx), "no-abandoned-sessions");
}

#[tokio::test]
async fn backs_off_catches_an_immediate_retry_a_flat_wait_and_an_ignored_retry_after() {
    // Every fragment answered 503 three times: retried at once, again and again.
    let fx = start_rules(&["packet=fragment times=3 fault=status status=503"]).await;
    let mut c = fx.connect().await;
    let id = create(&mut c, "/up/a.bin").await;
    let data = bytes(1000);
    for _ in 0..4 {
        c.send(&Req::fragment("/up/a.bin", &id, 0, 1000, &data))
            .await
            .expect("answer");
    }
    let v = judge(&fx);
    assert_fails(&v, "backs-off", "under the 100 ms floor");
    assert_fails(&v, "backs-off", "the wait did not grow");

    // Retry-After: 1 honoured only for 300 ms.
    let fx = start_rules(&["packet=fragment times=1 fault=status status=503 retry-after=1"]).await;
    let mut c = fx.connect().await;
    let id = create(&mut c, "/up/a.bin").await;
    c.send(&Req::fragment("/up/a.bin", &id, 0, 1000, &data))
        .await
        .expect("answer");
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.ok(&Req::fragment("/up/a.bin", &id, 0, 1000, &data)).await;
    assert_fails(&judge(&fx), "backs-off", "Retry-After 1 s");

    // A reset, then a retry on a new connection at once.
    let fx = start_rules(&["packet=fragment nth=1 fault=lose-ack how=reset"]).await;
    let mut c = fx.connect().await;
    let id = create(&mut c, "/up/a.bin").await;
    assert!(
        c.send(&Req::fragment("/up/a.bin", &id, 0, 1000, &data))
            .await
            .is_err()
    );
    let mut c = fx.connect().await;
    c.ok(&Req::fragment("/up/a.bin", &id, 0, 1000, &data)).await;
    assert_fails(&judge(&fx), "backs-off", "connection reset");

    let fx = start_rules(&[
        "packet=fragment nth=2 times=3 fault=status status=503",
        "packet=fragment nth=4 fault=status status=503 retry-after=1",
    ])
    .await;
    upload(&fx, "ok.bin", 30_000).await;
    assert_passes(&judge(&fx), "backs-off");
}

#[tokio::test]
async fn stops_on_fatal_catches_a_retry_after_400() {
    let fx = start_rules(&["packet=fragment fault=status status=400"]).await;
    let mut c = fx.connect().await;
    let id = create(&mut c, "/up/a.bin").await;
    let data = bytes(1000);
    for _ in 0..3 {
        let r = c
            .send(&Req::fragment("/up/a.bin", &id, 0, 1000, &data))
            .await
            .expect("answer");
        assert_eq!(r.status, 400);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_fails(
        &judge(&fx),
        "stops-on-fatal",
        "a fatal error, and the client sent it again 2 time(s)",
    );

    // The reference client stops at once (and cancels).
    let fx = start_rules(&["packet=fragment fault=status status=400"]).await;
    let (path, _) = fx.source(6000);
    let e = reference()
        .upload(&path, &fx.url("/up/b.bin"))
        .await
        .expect_err("400 is fatal");
    assert_eq!(e.status(), Some(400));
    assert_passes(&judge(&fx), "stops-on-fatal");
}

#[tokio::test]
async fn adapts_fragment_size_catches_the_same_size_after_413() {
    let small = |c: &mut bitsmock::Config| c.vdir.max_fragment_size = 8 * 1024;
    let fx = start_with(small).await;
    let mut c = fx.connect().await;
    let id = create(&mut c, "/up/a.bin").await;
    let data = bytes(40_000);
    for _ in 0..2 {
        let r = c
            .send(&Req::fragment("/up/a.bin", &id, 0, 40_000, &data[..16_384]))
            .await
            .expect("answer");
        assert_eq!(r.status, 413);
    }
    assert_fails(
        &judge(&fx),
        "adapts-fragment-size",
        "answered 413 (too large), and the next one was 16384 bytes",
    );

    let fx = start_with(small).await;
    let client = Uploader::new(Options {
        fragment_size: 32 * 1024,
        ..reference().options().clone()
    });
    upload_with(&fx, "ok.bin", 40_000, client).await;
    assert_passes(&judge(&fx), "adapts-fragment-size");
}

#[tokio::test]
async fn consistent_session_catches_a_changing_total_and_content_name() {
    let fx = start_rules(&[]).await;
    let mut c = fx.connect().await;
    let id = create(&mut c, "/up/a.bin").await;
    let data = bytes(1000);
    c.ok(&Req::fragment("/up/a.bin", &id, 0, 3000, &data).header("Content-Name", "a"))
        .await;
    let _ = c
        .send(&Req::fragment("/up/a.bin", &id, 1000, 4000, &data).header("Content-Name", "b"))
        .await;
    let _ = c
        .send(&Req::fragment("/up/other.bin", &id, 1000, 3000, &data).header("Content-Name", "a"))
        .await;
    let v = judge(&fx);
    assert_fails(&v, "consistent-session", "total length changed");
    assert_fails(&v, "consistent-session", "Content-Name changed");
    assert_fails(&v, "consistent-session", "went to /up/other.bin");

    let fx = start_rules(&[]).await;
    upload(&fx, "ok.bin", 20_000).await;
    assert_passes(&judge(&fx), "consistent-session");
}

#[tokio::test]
async fn framing_catches_a_missing_content_length_no_bits_15_and_an_unknown_packet() {
    let fx = start_rules(&[]).await;
    let mut c = fx.connect().await;
    let r = c
        .send(&Req::bits("/up/a.bin", "Create-Session").header(
            "BITS-Supported-Protocols",
            "{11111111-1111-1111-1111-111111111111}",
        ))
        .await
        .expect("answer");
    assert!(r.status >= 400);
    let id = create(&mut c, "/up/a.bin").await;
    let r = c
        .send(&Req::close("/up/a.bin", &id).without_length())
        .await
        .expect("answer");
    assert_eq!(r.status, 411);
    let mut c = fx.connect().await;
    let r = c
        .send(&Req::bits("/up/a.bin", "Bogus"))
        .await
        .expect("answer");
    assert_eq!(r.status, 400);
    let v = judge(&fx);
    assert_fails(&v, "framing", "without Content-Length 1 time(s)");
    assert_fails(&v, "framing", "did not offer the BITS 1.5 protocol");
    assert_fails(
        &v,
        "framing",
        "no known BITS-Packet-Type (first: \"Bogus\")",
    );

    let fx = start_rules(&[]).await;
    upload(&fx, "ok.bin", 6_000).await;
    assert_passes(&judge(&fx), "framing");
}

#[tokio::test]
async fn fetches_reply_before_close_catches_closing_an_upload_reply_job_unread() {
    let reply = |c: &mut bitsmock::Config| c.vdir.reply_prefix = vec!["reply".into()];
    let fx = start_with(reply).await;
    let mut c = fx.connect().await;
    let id = create(&mut c, "/reply/a.bin").await;
    let r = c
        .ok(&Req::fragment("/reply/a.bin", &id, 0, 1000, &bytes(1000)))
        .await;
    assert!(r.header("BITS-Reply-URL").is_some());
    c.ok(&Req::close("/reply/a.bin", &id)).await;
    assert_fails(
        &judge(&fx),
        "fetches-reply-before-close",
        "closed before its reply was downloaded",
    );

    let fx = start_with(reply).await;
    let (path, _) = fx.source(6000);
    let client = Uploader::new(Options {
        expect_reply: true,
        ..reference().options().clone()
    });
    client
        .upload(&path, &fx.url("/reply/ok.bin"))
        .await
        .expect("upload-reply");
    assert_passes(&judge(&fx), "fetches-reply-before-close");
}

#[tokio::test]
async fn distrusts_lies_catches_closing_after_an_ack_ahead_of_what_was_sent() {
    let fx = start_rules(&["packet=fragment nth=1 fault=lie lie=ahead by=1000000"]).await;
    let mut c = fx.connect().await;
    let id = create(&mut c, "/up/a.bin").await;
    let r = c
        .ok(&Req::fragment("/up/a.bin", &id, 0, 3000, &bytes(1000)))
        .await;
    assert_eq!(r.received(), Some(3000), "the lie claims everything");
    let _ = c.send(&Req::close("/up/a.bin", &id)).await;
    assert_fails(
        &judge(&fx),
        "distrusts-lies",
        "closed the session right after a lying Ack",
    );

    // Believing an offset beyond what was sent: skipping ahead.
    let fx = start_rules(&["packet=fragment nth=1 fault=lie lie=ahead by=1000"]).await;
    let mut c = fx.connect().await;
    let id = create(&mut c, "/up/a.bin").await;
    let data = bytes(4000);
    let r = c
        .ok(&Req::fragment("/up/a.bin", &id, 0, 4000, &data[..1000]))
        .await;
    assert_eq!(r.received(), Some(2000));
    let _ = c
        .send(&Req::fragment(
            "/up/a.bin",
            &id,
            2000,
            4000,
            &data[2000..3000],
        ))
        .await;
    assert_fails(&judge(&fx), "distrusts-lies", "skipped ahead to byte 2000");

    for lie in [
        "ahead by=1000",
        "beyond-total",
        "malformed",
        "other-session",
    ] {
        let fx = start_rules(&[&format!("packet=fragment nth=2 fault=lie lie={lie}")]).await;
        let data = upload(&fx, "ok.bin", 20_000).await;
        let v = judge_with_source(&fx, &data);
        assert_passes(&v, "distrusts-lies");
        assert!(v.passed(), "{lie}: {}", verdict::report::text(&v));
    }
}

#[tokio::test]
async fn upload_intact_compares_the_committed_file_with_the_source() {
    let fx = start_rules(&[]).await;
    let data = upload(&fx, "a.bin", 6_000).await;
    assert_passes(&judge_with_source(&fx, &data), "upload-intact");
    let mut other = data.clone();
    other[10] ^= 1;
    assert_fails(
        &judge_with_source(&fx, &other),
        "upload-intact",
        "differs from the source",
    );
}

#[tokio::test]
async fn the_control_api_serves_the_verdict_in_each_format() {
    let (fx, admin) = support::admin::start_admin(|_| {}).await;
    let mut c = fx.connect().await;
    let id = create(&mut c, "/up/a.bin").await;
    c.ok(&Req::fragment("/up/a.bin", &id, 0, 2000, &bytes(2000)))
        .await;
    let v = admin.value("/verdict").await;
    assert_eq!(v["passed"], false, "{v}");
    let check = v["checks"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["check"] == "closes-complete-uploads"))
        .cloned()
        .expect("check");
    assert_eq!(check["status"], "fail");
    assert!(
        check["findings"][0]["evidence"]
            .as_array()
            .is_some_and(|e| !e.is_empty())
    );
    let text = support::admin::body_text(&admin.get("/verdict?format=text").await);
    assert!(text.starts_with("verdict: FAIL"), "{text}");
    let junit = support::admin::body_text(&admin.get("/verdict?format=junit").await);
    assert!(junit.contains("<failure"), "{junit}");
    let bad = admin.get("/verdict?format=yaml").await;
    support::admin::assert_api_error(&bad, 400, "json, text or junit");
    let bad = admin.get("/verdict?backoff-floor=soon").await;
    assert_eq!(bad.status, 400);
}
