//! `bitsmock journal`, the real binary, on journals a real server wrote: the view, its
//! filters, its errors and exit statuses, and `--follow` on a file still being written.

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;
use support::serve::{PATIENCE, bitsmock, run, text, wait};
use support::*;

/// Starts a server writing its journal to `path`, with a fault on Ping and a lost Ack on
/// the second fragment.
async fn journaled(path: &Path) -> Fixture {
    let path = path.to_path_buf();
    start_with(move |c| {
        c.journal = Some(path);
        c.seed = 7;
        c.sha256 = true;
        c.rules = rules(&[
            "packet=ping fault=status status=503 times=1",
            "packet=fragment nth=2 fault=lose-ack how=reset times=1",
        ]);
    })
    .await
}

/// A ping (answered 503 by the fault), `/a/b.bin` uploaded in three fragments of which the
/// second loses its Ack, and `/c.bin` created and cancelled.
async fn drive(fx: &Fixture) {
    let mut conn = fx.connect().await;
    assert_eq!(conn.ok(&Req::ping("/a/b.bin")).await.status, 503);
    let data = data(5000, 1);
    let id = conn.create("/a/b.bin").await;
    conn.fragment("/a/b.bin", &id, &data, 0, 2000).await;
    let lost = Req::fragment("/a/b.bin", &id, 2000, 5000, &data[2000..4000]);
    assert!(conn.send(&lost).await.is_err(), "the Ack was lost");
    let mut conn = fx.connect().await;
    conn.send_from("/a/b.bin", &id, &data, 4000, 2000).await;
    conn.close("/a/b.bin", &id).await;
    let other = conn.create("/c.bin").await;
    conn.ok(&Req::cancel("/c.bin", &other)).await;
}

/// A journal of one whole run, from `started` to `stopped`.
async fn recorded(dir: &Path) -> PathBuf {
    let path = dir.join("journal.ndjson");
    let fx = journaled(&path).await;
    drive(&fx).await;
    fx.stop().await;
    path
}

/// `bitsmock journal ARGS…` to the end: its status code, stdout lines and stderr.
fn journal(args: &[&str]) -> (Option<i32>, Vec<String>, String) {
    let mut all = vec!["journal"];
    all.extend_from_slice(args);
    let out = run(bitsmock(&all));
    let stdout = text(&out.stdout).lines().map(str::to_owned).collect();
    (out.status.code(), stdout, text(&out.stderr))
}

fn shown(path: &Path, flags: &[&str]) -> Vec<String> {
    let file = path.to_str().expect("a UTF-8 temp path");
    let mut args = vec![file];
    args.extend_from_slice(flags);
    let (code, lines, stderr) = journal(&args);
    assert_eq!(code, Some(0), "stderr: {stderr}");
    lines
}

/// The `n`th word of every row (the heading left out).
fn words(lines: &[String], n: usize) -> Vec<String> {
    lines
        .iter()
        .skip(1)
        .map(|l| l.split_whitespace().nth(n).unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn a_real_run_shows_as_a_heading_and_one_row_per_event() {
    let dir = tempfile::tempdir().unwrap();
    let path = recorded(dir.path()).await;
    let events = std::fs::read_to_string(&path).unwrap().lines().count();
    let lines = shown(&path, &[]);
    assert_eq!(lines.len(), events + 1, "{lines:#?}");
    assert!(lines[0].starts_with("seq  "), "{}", lines[0]);
    assert!(lines[0].ends_with("faults / reason"), "{}", lines[0]);
    assert!(lines[1].contains("started bitsmock"), "{}", lines[1]);
    assert!(lines[1].contains("seed 7"), "{}", lines[1]);
    assert!(lines[events].contains("stopped: 2 rules: rule 1 fired 1, rule 2 fired 1"));
    let ping = lines.iter().find(|l| l.contains(" Ping ")).unwrap();
    assert!(ping.contains("-→503"), "{ping}");
    assert!(ping.contains("rule 1: answered 503"), "{ping}");
    let lost = lines.iter().find(|l| l.contains("200→reset")).unwrap();
    assert!(lost.contains("2000-3999/5000"), "{lost}");
    assert!(lost.ends_with("rule 2: lost the Ack (reset)"), "{lost}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("committed a/b.bin 5000 bytes sha256 45148a6eb1c6… (session 1 ")),
        "{lines:#?}"
    );
    assert!(lines.iter().any(|l| l.contains("created /c.bin")));
    assert!(lines.iter().any(|l| l.ends_with("gone: cancelled")));
}

#[tokio::test]
async fn the_filters_pick_a_session_by_ordinal_or_id_the_faulted_requests_or_a_packet_type() {
    let dir = tempfile::tempdir().unwrap();
    let path = recorded(dir.path()).await;
    let second = shown(&path, &["--session", "2"]);
    let expected = [
        "created /c.bin",
        "Create-Session",
        "gone: cancelled",
        "Cancel-Session",
    ];
    assert_eq!(second.len(), expected.len() + 1, "{second:#?}");
    for (row, says) in second[1..].iter().zip(expected) {
        assert!(row.contains(says), "{row} should say {says}");
    }
    let id = second[1].split_whitespace().nth(4).unwrap().to_owned();
    // The short id in the rows is the start of the full id the journal holds.
    let text = std::fs::read_to_string(&path).unwrap();
    let full = text
        .split("\"id\":\"{")
        .map(|rest| &rest[..36])
        .find(|full| full.starts_with(&id))
        .unwrap()
        .to_ascii_lowercase();
    assert_eq!(shown(&path, &["--session", &full]), second);
    assert_eq!(shown(&path, &["--session", &format!("{{{full}}}")]), second);
    assert_eq!(words(&shown(&path, &["--faults"]), 3), ["Ping", "Fragment"]);
    let fragments = shown(&path, &["--packet", "fragment"]);
    assert_eq!(words(&fragments, 3), ["Fragment"; 3]);
    let both = shown(
        &path,
        &["--packet", "fragment", "--faults", "--session", "1"],
    );
    assert_eq!(both.len(), 2);
    assert!(both[1].contains("200→reset"), "{}", both[1]);
}

#[test]
fn a_damaged_journal_still_shows_every_good_line_and_names_the_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("damaged.ndjson");
    std::fs::write(
        &path,
        "{\"seq\":1,\"at_ms\":0.5,\"event\":\"reset\",\"uploads_cleared\":false}\n\
         {\"seq\":2,\"at_ms\":1\n\
         {\"seq\":3,\"at_ms\":2,\"event\":\"host-died\",\"host\":\"b\"}\n",
    )
    .unwrap();
    let lines = shown(&path, &["--faults"]);
    assert_eq!(
        lines.len(),
        2,
        "only the bad line passes --faults: {lines:#?}"
    );
    let lines = shown(&path, &[]);
    assert_eq!(lines.len(), 4);
    assert!(lines[1].ends_with("reset, uploads kept"), "{}", lines[1]);
    assert!(lines[2].starts_with("! line 2: not JSON"), "{}", lines[2]);
    assert!(lines[3].ends_with("host-died host=b"), "{}", lines[3]);
}

#[test]
fn a_missing_file_is_an_error_naming_it_with_exit_status_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nothing.ndjson");
    let file = path.to_str().unwrap();
    for follow in [false, true] {
        let args: &[&str] = if follow { &[file, "--follow"] } else { &[file] };
        let (code, stdout, stderr) = journal(args);
        assert_eq!(code, Some(1), "follow = {follow}");
        assert!(stdout.is_empty(), "{stdout:?}");
        assert!(stderr.starts_with(&format!("error: {file}: ")), "{stderr}");
    }
}

#[test]
fn a_bad_flag_or_flag_value_is_a_usage_error_with_exit_status_2() {
    for (args, says) in [
        (&["j.ndjson", "--packet", "frag"][..], "create-session"),
        (
            &["j.ndjson", "--session", "two"][..],
            "neither a session ordinal",
        ),
        (&["j.ndjson", "--bogus"][..], "--bogus"),
        (&[][..], "FILE"),
    ] {
        let (code, _, stderr) = journal(args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

/// `bitsmock journal --follow ARGS… FILE`, its stdout lines arriving on a channel.
fn follower(path: &Path, args: &[&str]) -> (std::process::Child, mpsc::Receiver<String>) {
    let mut all = vec!["journal", "--follow"];
    all.extend_from_slice(args);
    let mut child = bitsmock(&all)
        .arg(path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run bitsmock journal --follow");
    let (send, rows) = mpsc::channel();
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = send.send(line);
        }
    });
    (child, rows)
}

// Two workers: the test blocks a thread waiting for the follower while the server answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_shows_lines_appended_after_it_started_and_exits_at_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.ndjson");
    let fx = journaled(&path).await;
    let (mut early, rows) = follower(&path, &["--packet", "fragment"]);
    let next = || rows.recv_timeout(PATIENCE).expect("a row in time");
    assert!(next().ends_with("faults / reason"), "the heading first");
    // Only `started` is in the file yet, and the filter hides it: every row below comes
    // from lines written after the follower started reading.
    assert!(rows.recv_timeout(Duration::from_millis(300)).is_err());
    drive(&fx).await;
    let fragments: Vec<String> = (0..3).map(|_| next()).collect();
    assert!(
        fragments.iter().all(|r| r.contains("Fragment")),
        "{fragments:#?}"
    );
    assert!(fragments[1].contains("200→reset"), "{}", fragments[1]);
    // A follower started now reads what is there, then waits too.
    let (mut late, late_rows) = follower(&path, &["--faults"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        early.try_wait().unwrap().is_none(),
        "exited before `stopped`"
    );
    assert!(
        late.try_wait().unwrap().is_none(),
        "exited before `stopped`"
    );
    fx.stop().await;
    for child in [&mut early, &mut late] {
        let status = wait(child, PATIENCE).expect("exits at `stopped`");
        assert!(status.success(), "{status:?}");
    }
    assert!(
        rows.recv_timeout(PATIENCE).is_err(),
        "no row after the fragments"
    );
    let late: Vec<String> = late_rows.iter().collect();
    assert_eq!(late.len(), 3, "{late:#?}");
    assert!(late[1].contains(" Ping "), "{}", late[1]);
    assert!(late[2].contains("200→reset"), "{}", late[2]);
}
