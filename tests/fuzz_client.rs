//! Fuzzing the client: every mutation kind seen on the wire by a raw-socket client exactly as
//! the journal describes it, the same seed giving the same bytes, mutations bounded, and
//! short campaigns catching a deliberately fragile client, classified right, replayed and
//! minimised.

mod support;

use bitsmock::fault::mutate::MAX_GROWTH;
use bitsmock::journal::{Sent, What};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;
use support::{Fixture, Req, start_rules_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends one request on a new connection and reads everything until the server closes.
async fn raw(addr: SocketAddr, req: &Req) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(&req.head_bytes(addr)).await.expect("head");
    s.write_all(&req.body).await.expect("body");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    out
}

async fn mutating(seed: u64, rule: &str) -> (Fixture, String) {
    let fx = start_rules_with(&[rule], |c| c.seed = seed).await;
    let mut c = fx.connect().await;
    let id = c
        .ok(&Req::create("/f/a.bin"))
        .await
        .session_id()
        .expect("id")
        .to_owned();
    (fx, id)
}

fn fragment(id: &str) -> Req {
    Req::fragment("/f/a.bin", id, 0, 20, &[7; 10])
}

/// The mutations the journal recorded for the last request.
fn last_mutations(fx: &Fixture) -> Vec<serde_json::Value> {
    let events = fx.running.server.events();
    let r = events
        .iter()
        .rev()
        .find_map(|e| e.request())
        .expect("a request");
    assert!(matches!(r.sent, Sent::Mutated { .. }), "{:?}", r.sent);
    let effect = serde_json::to_value(&r.faults[0].effect).expect("json");
    effect["mutations"].as_array().cloned().unwrap_or_default()
}

fn lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .split("\r\n")
        .map(str::to_owned)
        .collect()
}

/// Checks raw answer bytes against one recorded mutation; returns its name.
fn check(bytes: &[u8], m: &serde_json::Value) -> String {
    let name = m["name"].as_str().expect("name").to_owned();
    let family = m["family"].as_str().expect("family");
    let target = m["target"].as_str().expect("target");
    let to = m["to"].as_str().expect("to");
    let text = String::from_utf8_lossy(bytes).into_owned();
    let head: Vec<String> = lines(bytes);
    let has_line = |line: &str| head.iter().any(|l| l.eq_ignore_ascii_case(line));
    let why = format!("{m} in {text:?}");
    match (family, name.as_str()) {
        ("header", "drop") => assert!(
            !head.iter().any(|l| l
                .to_ascii_lowercase()
                .starts_with(&format!("{}:", target.to_ascii_lowercase()))),
            "{why}"
        ),
        ("header", "name-case") => assert!(text.contains(&format!("\r\n{to}: ")), "{why}"),
        ("header", "duplicate") => assert!(
            head.iter()
                .filter(|l| l
                    .to_ascii_lowercase()
                    .starts_with(&format!("{}:", target.to_ascii_lowercase())))
                .count()
                >= 2,
            "{why}"
        ),
        ("header", "unknown") => assert!(has_line(&format!("{target}: {to}")), "{why}"),
        ("header", "folded") => assert!(text.contains("\r\n "), "{why}"),
        ("header", "overlong") => assert!(head.iter().any(|l| l.len() >= 4096), "{why}"),
        ("header", "reorder") => {
            let names: Vec<&str> = head[1..]
                .iter()
                .take_while(|l| !l.is_empty())
                .filter_map(|l| l.split_once(':').map(|(n, _)| n))
                .collect();
            assert_eq!(names.join(","), to, "{why}");
        }
        ("value", _) if to.contains("\\x") => {
            assert!(bytes.windows(2).any(|w| w == b"\xff\xfe"), "{why}")
        }
        ("value", _) if to.contains('…') => assert!(head.iter().any(|l| l.len() > 2000), "{why}"),
        ("value", _) => assert!(
            text.contains(&format!("{target}: {}\r\n", to.replace("\\t", "\t"))),
            "{why}"
        ),
        ("status", _) => assert!(text.starts_with(&format!("HTTP/1.1 {to}\r\n")), "{why}"),
        ("framing", "lf-only") => assert!(!text.contains('\r') && text.contains("\n\n"), "{why}"),
        ("framing", "http-1.0") => assert!(text.starts_with("HTTP/1.0 "), "{why}"),
        ("framing", "chunked") => assert!(
            text.contains("Transfer-Encoding: chunked\r\n")
                && text.ends_with("5\r\nhello\r\n0\r\n\r\n"),
            "{why}"
        ),
        ("framing", "unexpected-body") => {
            assert!(text.ends_with("\r\n\r\nunexpected body!"), "{why}")
        }
        ("framing", "wrong-length") => assert!(
            has_line("Content-Length: 17") && text.ends_with("\r\n\r\n"),
            "{why}"
        ),
        ("framing", "no-length") => assert!(
            !text.to_ascii_lowercase().contains("content-length"),
            "{why}"
        ),
        other => panic!("unknown mutation {other:?}"),
    }
    name
}

#[tokio::test]
async fn every_mutation_kind_is_seen_on_the_wire_as_the_journal_describes_it() {
    let (fx, id) = mutating(11, "packet=fragment fault=mutate").await;
    // An unmutated fragment Ack is under 200 bytes.
    let plain_len = 200;
    let wanted = [
        "drop",
        "duplicate",
        "reorder",
        "name-case",
        "unknown",
        "folded",
        "overlong",
        "off-by-one",
        "negative",
        "huge",
        "hex",
        "whitespace",
        "non-ascii",
        "invalid-utf8",
        "empty",
        "no-braces",
        "lower-case",
        "truncated",
        "another-session",
        "other-2xx",
        "other-4xx",
        "other-5xx",
        "unknown-code",
        "reason-phrase",
        "empty-reason",
        "non-ascii-reason",
        "wrong-length",
        "unexpected-body",
        "chunked",
        "http-1.0",
        "lf-only",
        "no-length",
    ];
    let mut seen = BTreeSet::new();
    for _ in 0..4000 {
        let bytes = raw(fx.addr(), &fragment(&id)).await;
        assert!(!bytes.is_empty(), "an answer came");
        assert!(
            bytes.len() <= plain_len + MAX_GROWTH,
            "bounded: {}",
            bytes.len()
        );
        for m in last_mutations(&fx) {
            seen.insert(check(&bytes, &m));
        }
        if wanted.iter().all(|w| seen.contains(*w)) {
            break;
        }
    }
    for name in wanted {
        assert!(seen.contains(name), "{name} not seen on the wire: {seen:?}");
    }
    // The server is fine after all of it.
    fx.assert_alive().await;
}

#[tokio::test]
async fn the_same_seed_gives_the_same_bytes_and_another_seed_other_bytes() {
    let run = |seed: u64| async move {
        // Every answer mutated: a plain one would carry a Date header, which is no decision.
        let (fx, id) = mutating(seed, "packet=fragment fault=mutate count=2").await;
        let mut all = Vec::new();
        for _ in 0..40 {
            let bytes = raw(fx.addr(), &fragment(&id)).await;
            // Session ids differ per server (never a decision): compare without them.
            let bare = id.trim_matches(|c| c == '{' || c == '}');
            all.push(
                String::from_utf8_lossy(&bytes)
                    .replace(bare, "ID")
                    .replace(&bare.to_ascii_lowercase(), "id")
                    .replace(&bare[..bare.len() / 2], "half-id"),
            );
        }
        all
    };
    let a = run(5).await;
    let b = run(5).await;
    let c = run(6).await;
    let differing = a.iter().zip(&b).filter(|(x, y)| x != y).count();
    assert_eq!(
        differing, 0,
        "{differing} of 40 answers differ for the same seed"
    );
    assert_ne!(a, c, "another seed, other mutations");
}

fn bitsmock() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bitsmock"))
}

fn fragile(mode: &str) -> Vec<String> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fuzz_client/fragile_client.py"
    );
    ["python3", script, mode, "{file}", "{url}"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}

/// `seeds` is `--seeds`' value, or `--replay`'s when `extra` has `--replay`.
fn campaign(
    profile: &str,
    seeds: &str,
    mode: &str,
    extra: &[&str],
) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut command = bitsmock();
    command.args(["exercise", "--profiles", profile, "--size", "64KiB"]);
    if !extra.contains(&"--replay") {
        command.args(["--seeds", seeds]);
    }
    let out = command
        .args(["--jobs", "2", "--timeout", "3s"])
        .arg("--report-dir")
        .arg(dir.path())
        .args(extra)
        .arg("--")
        .args(fragile(mode))
        .output()
        .expect("run");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_client_that_trusts_the_received_range_blindly_is_caught_as_a_false_success() {
    let (code, out, err) = campaign("fuzz-acks", "1..40", "trust", &["--max-findings", "2"]);
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(out.contains("false success"), "{out}");
    assert!(out.contains("last mutation"), "{out}");
    assert!(out.contains("BITS-Received-Content-Range"), "{out}");
    let replay = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("replay: "))
        .expect("a replay line")
        .to_owned();
    assert!(
        replay.starts_with("bitsmock exercise --profiles fuzz-acks --seeds "),
        "{replay}"
    );
    // --max-findings stops early: far fewer than 40 runs finished.
    let finished = err
        .lines()
        .filter(|l| l.contains(": ") && l.starts_with('['))
        .count();
    assert!(finished < 40, "{finished} runs: {err}");
}

#[test]
fn a_crash_and_a_hang_are_classified_and_a_finding_replays_and_minimises() {
    let (code, out, _) = campaign("fuzz-acks", "1..30", "crash", &["--max-findings", "1"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains(": crash (client: killed by signal 6)"),
        "{out}"
    );
    let seed: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("finding: fuzz-acks seed "))
        .and_then(|l| l.split(':').next())
        .and_then(|s| s.parse().ok())
        .expect("a finding's seed");

    // Replayed with the same seed: the same finding; minimised: the mutations it needs.
    let (code, out, err) = campaign(
        "fuzz-acks",
        "1",
        "crash",
        &["--replay", &seed.to_string(), "--minimise"],
    );
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(
        out.contains(&format!("finding: fuzz-acks seed {seed}: crash")),
        "{out}"
    );
    let line = out
        .lines()
        .find(|l| l.starts_with("minimised fuzz-acks seed"))
        .unwrap_or_else(|| panic!("{out}\n{err}"));
    let kept: usize = line
        .split(": ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("kept count");
    assert!(kept >= 1, "{line}");
    assert!(
        out.contains("BITS-Received-Content-Range"),
        "the crash needs a range mutation: {out}"
    );

    let (code, out, _) = campaign("fuzz-everything", "1..40", "hang", &["--max-findings", "1"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(": hang (client: timed out)"), "{out}");
    assert!(out.contains("no request and no exit within 3 s"), "{out}");
}

#[tokio::test]
async fn mutated_answers_are_events_with_what_changed() {
    let (fx, id) = mutating(3, "packet=fragment fault=mutate families=status").await;
    let bytes = raw(fx.addr(), &fragment(&id)).await;
    let events = fx.running.server.events();
    let r = events
        .iter()
        .rev()
        .find_map(|e| e.request())
        .expect("request");
    let Sent::Mutated { status } = r.sent else {
        panic!("{:?}", r.sent)
    };
    assert!(String::from_utf8_lossy(&bytes).starts_with(&format!("HTTP/1.1 {status}")));
    let m = &last_mutations(&fx)[0];
    assert_eq!(m["family"], "status");
    assert_eq!(m["from"], "200 OK");
    assert!(
        events
            .iter()
            .any(|e| matches!(e.what, What::Started { .. }))
    );
}
