//! `bitsmock exercise`: the reference client survives every survivable shipped profile, even
//! with tiny fragments and a 1-byte file; the independent Python client's real flaws are
//! reported; false successes, crashes and hangs of a command are caught; reports are written.

use bitsmock::client::Options;
use bitsmock::exercise::{self, Class, Exit, Plan};
use bitsmock::fault::{Expect, shipped};
use bitsmock::verdict;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

fn plan(profiles: &[&str], size: u64, dir: &Path) -> Plan {
    Plan {
        profiles: profiles.iter().map(|p| (*p).to_owned()).collect(),
        seeds: vec![1],
        size,
        // Quick retries keep the suite short; the floor is lowered to match.
        client: Options {
            fragment_size: 5 * 1024,
            backoff_base: Duration::from_millis(100),
            // At least the profiles' Retry-After (1 s), which a correct client honours.
            backoff_cap: Duration::from_secs(1),
            request_timeout: Duration::from_secs(3),
            ..Options::default()
        },
        timeout: Duration::from_secs(120),
        report_dir: Some(dir.to_path_buf()),
        command: Vec::new(),
        options: verdict::Options {
            backoff_floor: Duration::from_millis(20),
            ..verdict::Options::default()
        },
        jobs: 2,
        max_findings: None,
        crash_exit_codes: Vec::new(),
        suppress: Vec::new(),
    }
}

fn survivable() -> Vec<&'static str> {
    shipped::SHIPPED
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| {
            shipped::shipped(name)
                .and_then(Result::ok)
                .is_some_and(|p| p.expect == Expect::Survive)
        })
        .collect()
}

fn explain(outcome: &exercise::Outcome) -> String {
    let mut out = outcome.matrix();
    for c in outcome.cells.iter().filter(|c| !c.run.passed()) {
        out.push_str(&format!("\n{} ({}):\n", c.run.name, c.exit));
        for p in &c.run.problems {
            out.push_str(&format!("  {p}\n"));
        }
        out.push_str(&verdict::report::text(&c.run.verdict));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reference_client_survives_every_survivable_profile_with_a_one_byte_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outcome = exercise::run(&plan(&survivable(), 1, dir.path()), |_| {})
        .await
        .expect("exercise");
    assert!(outcome.passed(), "{}", explain(&outcome));
    assert_eq!(outcome.cells.len(), survivable().len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destructive_profiles_stay_survivable_with_hundreds_of_tiny_fragments() {
    // 2 MiB in 5 KiB fragments: 410 fragments. With a per-fragment loss rate alone, the
    // session-loss profile sent a correct client back to byte 0 until it gave up.
    let dir = tempfile::tempdir().expect("tempdir");
    let outcome = exercise::run(
        &plan(
            &["session-loss", "restart-storm", "lost-acks"],
            2 << 20,
            dir.path(),
        ),
        |_| {},
    )
    .await
    .expect("exercise");
    assert!(outcome.passed(), "{}", explain(&outcome));
    let restarts: usize = outcome
        .cells
        .iter()
        .filter_map(|c| c.run.verdict.outcome("recreates-after-session-loss"))
        .map(|o| o.judged)
        .sum();
    assert!(
        restarts >= 3,
        "sessions were lost and re-created: {restarts}"
    );
}

fn python() -> &'static str {
    ["python3", "python"]
        .into_iter()
        .find(|p| Command::new(p).arg("--version").output().is_ok())
        .expect("CI machines have python3")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_independent_python_client_is_judged_and_its_real_flaws_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/bits_upload.py");
    let mut plan = plan(
        &["clean", "session-loss", "lost-acks"],
        64 * 1024,
        dir.path(),
    );
    plan.command = vec![
        python().into(),
        script.into(),
        "{file}".into(),
        "{url}".into(),
        "8192".into(),
    ];
    let outcome = exercise::run(&plan, |_| {}).await.expect("exercise");
    let cell = |p: &str| outcome.cells.iter().find(|c| c.profile == p).expect("cell");
    assert!(cell("clean").run.passed(), "{}", explain(&outcome));
    // It never retries or re-creates a session: a lost session ends its upload.
    let lost = cell("session-loss");
    assert!(!lost.run.passed());
    assert_eq!(lost.exit, Exit::Code(1));
    assert_eq!(lost.class, Class::RuleBroken);
    assert!(
        lost.run.problems[0].contains("through a profile a correct client survives"),
        "{:?}",
        lost.run.problems
    );
    let finding = &lost
        .run
        .verdict
        .outcome("recreates-after-session-loss")
        .expect("check")
        .findings;
    assert!(
        finding
            .iter()
            .any(|f| f.message.contains("did not create a new session")),
        "{}",
        explain(&outcome)
    );
    // A lost Ack ends it too.
    let acks = cell("lost-acks");
    assert!(!acks.run.passed());
    assert_eq!(acks.exit, Exit::Code(1));
    assert_eq!(acks.class, Class::GaveUp);
    assert!(dir.path().join("runs/session-loss-1.stderr").exists());
}

fn bitsmock() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bitsmock"))
}

#[test]
fn the_cli_runs_a_command_client_and_writes_reports_ci_can_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = bitsmock()
        .args([
            "exercise",
            "--profiles",
            "clean,lost-acks",
            "--size",
            "20KiB",
        ])
        .args(["--backoff-floor", "100ms"])
        .arg("--report-dir")
        .arg(dir.path())
        .args([
            "--",
            env!("CARGO_BIN_EXE_bitsmock"),
            "upload",
            "{file}",
            "{url}",
        ])
        .args(["--fragment-size", "8KiB", "--retry-base", "300ms"])
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("clean"), "{stdout}");
    assert!(stdout.contains("seed 1: pass"), "{stdout}");
    assert!(
        stderr.contains("[2/2] lost-acks seed 1"),
        "progress: {stderr}"
    );
    let junit = std::fs::read_to_string(dir.path().join("junit.xml")).expect("junit");
    assert!(
        junit.contains("<testsuite name=\"lost-acks seed 1\""),
        "{junit}"
    );
    assert!(junit.contains("name=\"resumes-from-ack\""), "{junit}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("verdict.json")).expect("json"))
            .expect("valid JSON");
    assert_eq!(json["passed"], true);
    assert_eq!(json["runs"][1]["profile"], "lost-acks");
    let html = std::fs::read_to_string(dir.path().join("report.html")).expect("html");
    assert!(html.contains("<svg class=\"timeline\""));
    assert!(!html.contains("<script"), "self-contained, no scripts");
    assert!(dir.path().join("runs/lost-acks-1.ndjson").exists());
}

#[test]
fn a_false_success_a_hang_and_a_missing_command_fail_their_cells() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| {
        let out = bitsmock()
            .args([
                "exercise",
                "--profiles",
                "clean",
                "--size",
                "1KiB",
                "--timeout",
                "1s",
            ])
            .arg("--report-dir")
            .arg(dir.path())
            .arg("--")
            .args(args)
            .output()
            .expect("run");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, stdout) = run(&["sh", "-c", "exit 0"]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("false success"), "{stdout}");
    let (code, stdout) = run(&["sleep", "30"]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("no request and no exit within 1 s"),
        "{stdout}"
    );
    let (code, stdout) = run(&["sh", "-c", "kill -SEGV $$"]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("crashed: killed by signal 11"), "{stdout}");
    let (code, stdout) = run(&["/no/such/client"]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("could not start"), "{stdout}");
}

#[test]
fn bad_arguments_are_usage_errors() {
    for args in [
        &["exercise", "--seeds", "5..1"][..],
        &["exercise", "--profiles", "nope"][..],
        &["exercise", "--size", "lots"][..],
        &["exercise", "--all", "--profiles", "clean"][..],
        &["verdict", "/no/such/journal"][..],
        &["verdict", "x", "--format", "yaml"][..],
    ] {
        let out = bitsmock().args(args).output().expect("run");
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Seeds of `fuzz-everything` that once found a flaw in the reference client, replayed as
/// the campaign ran them (64 KiB in 16 KiB fragments, default backoff).
#[test]
fn campaign_findings_in_the_reference_client_stay_fixed() {
    // 358: a Create-Session Ack whose session id lost its braces made every later, truthful
    // Ack look as if it named another session; the client retried until it hung.
    let dir = tempfile::tempdir().expect("tempdir");
    let out = bitsmock()
        .args([
            "exercise",
            "--profiles",
            "fuzz-everything",
            "--replay",
            "358",
        ])
        .args([
            "--size",
            "64KiB",
            "--fragment-size",
            "16KiB",
            "--timeout",
            "20s",
        ])
        .arg("--report-dir")
        .arg(dir.path())
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("seed 358: pass"), "{stdout}");
}
