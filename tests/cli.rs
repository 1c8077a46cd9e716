//! The `bitsmock` binary: flags, the configuration merge as `serve` applies it, the start
//! banner, signals, `profile show` and `profile check` (errors and lint warnings). Every test runs the real binary and binds 127.0.0.1.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::serve::{PATIENCE, Serve, bitsmock, run, text};

/// Sends a Ping to /x and returns the status code of the answer.
fn ping(addr: SocketAddr) -> u16 {
    ping_at(addr, "/x")
}

fn ping_at(addr: SocketAddr, path: &str) -> u16 {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(PATIENCE))
        .expect("read timeout");
    send_ping_at(&mut stream, path);
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .expect("read status line");
    line.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {line:?}"))
}

fn send_ping_at(stream: &mut TcpStream, path: &str) {
    let head = format!(
        "BITS_POST {path} HTTP/1.1\r\nHost: t\r\nBITS-Packet-Type: Ping\r\nContent-Length: 0\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).expect("send Ping");
}

fn write_profile(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("mine.toml");
    std::fs::write(&path, text).expect("write profile");
    path
}

/// The `seed N` the banner announces.
fn banner_seed(banner: &str) -> u64 {
    banner
        .split("seed ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no seed in {banner:?}"))
}

// ---- The merge: every source goes through the same checks ----

#[test]
fn a_zero_max_fragment_size_in_a_profile_is_refused_like_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let profile = write_profile(
        dir.path(),
        "name = \"p\"\ndescription = \"d\"\n\n[server]\nmax-fragment-size = 0\n",
    );
    let shown = profile.display().to_string();

    let out = run(bitsmock(&["profile", "check", &shown]));
    assert!(!out.status.success(), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).starts_with(&format!(
            "{shown}:5: `max-fragment-size` must be at least 1 byte"
        )),
        "{}",
        text(&out.stderr)
    );

    let out = run(bitsmock(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--profile",
        &shown,
    ]));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains(&format!("{shown}:5: `max-fragment-size`")),
        "{}",
        text(&out.stderr)
    );

    let out = run(bitsmock(&["serve", "--max-fragment-size", "0"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("must be at least 1 byte"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn flags_override_the_profile_server_table_and_the_profile_seed() {
    let dir = tempfile::tempdir().unwrap();
    let profile = write_profile(
        dir.path(),
        "name = \"mine\"\ndescription = \"d\"\nseed = 77\n",
    );
    let shown = profile.display().to_string();
    let server = Serve::start(&["--listen", "127.0.0.1:0", "--profile", &shown]);
    assert_eq!(banner_seed(&server.banner), 77, "{}", server.banner);
    server.stop();
    let server = Serve::start(&[
        "--listen",
        "127.0.0.1:0",
        "--profile",
        &shown,
        "--seed",
        "5",
    ]);
    assert_eq!(banner_seed(&server.banner), 5, "{}", server.banner);
    server.stop();
}

// ---- Seed and banner ----

#[test]
fn without_a_seed_each_run_draws_its_own_and_prints_it() {
    let a = Serve::start(&["--listen", "127.0.0.1:0"]);
    let b = Serve::start(&["--listen", "127.0.0.1:0"]);
    let (sa, sb) = (banner_seed(&a.banner), banner_seed(&b.banner));
    a.stop();
    b.stop();
    assert_ne!(sa, sb, "two unseeded runs got the same seed");
    let c = Serve::start(&["--listen", "127.0.0.1:0", "--seed", "1234"]);
    assert_eq!(banner_seed(&c.banner), 1234, "{}", c.banner);
    c.stop();
}

#[test]
fn the_banner_names_url_root_profile_rules_seed_and_time_scale() {
    let server = Serve::start(&[
        "--listen",
        "127.0.0.1:0",
        "--profile",
        "flaky-wifi",
        "--seed",
        "1234",
        "--time-scale",
        "0.5",
    ]);
    let root = server
        .root()
        .canonicalize()
        .expect("the upload root exists");
    let wanted = format!(
        "bitsmock listening on http://{}/ (uploads go to {}; profile flaky-wifi, 4 rules, seed 1234, time scale 0.5)",
        server.addr,
        root.display()
    );
    assert_eq!(server.banner, wanted);
    server.stop();

    let server = Serve::start(&["--listen", "127.0.0.1:0", "--fault", "fault=refuse times=0"]);
    assert!(
        server.banner.contains("; profile none, 1 rule, seed "),
        "{}",
        server.banner
    );
    assert!(
        server.banner.ends_with(", time scale 1)"),
        "{}",
        server.banner
    );
    server.stop();
}

// ---- --listen ----

#[test]
fn listen_takes_a_port_alone_or_with_localhost() {
    for form in [":0", "0", "localhost:0", "127.0.0.1:0"] {
        let server = Serve::start(&["--listen", form]);
        assert_eq!(
            server.addr.ip(),
            std::net::IpAddr::from([127, 0, 0, 1]),
            "{form}"
        );
        assert_ne!(server.addr.port(), 0, "{form}");
        assert_eq!(ping(server.addr), 200, "{form}");
        server.stop();
    }
}

#[test]
fn a_bad_listen_value_is_a_usage_error_that_says_what_is_accepted() {
    for bad in ["nonsense", "example.com:80", ":70000", "::1:0"] {
        let out = run(bitsmock(&["serve", "--listen", bad]));
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("--listen") && stderr.contains(":PORT"),
            "{bad}: {stderr}"
        );
    }
}

// ---- Logs ----

#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    let server = Serve::start(&[
        "--listen",
        "127.0.0.1:0",
        "--fault",
        "packet=ping fault=status status=503",
    ]);
    assert_eq!(ping(server.addr), 503);
    let (_, stderr) = server.stop();
    assert!(stderr.contains("503"), "the fault was not logged: {stderr}");
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
}

// ---- Signals ----

#[test]
fn sigterm_shuts_down_gracefully_and_reports_fire_counts() {
    let server = Serve::start(&[
        "--listen",
        "127.0.0.1:0",
        "--fault",
        "packet=ping times=1 fault=status status=503 name=first",
    ]);
    assert_eq!(ping(server.addr), 503);
    assert_eq!(ping(server.addr), 200);
    let (rest, _) = server.stop();
    assert!(
        rest.iter().any(|l| l == "rule 1: first: fired 1 time(s)"),
        "{rest:?}"
    );
}

#[test]
fn a_second_signal_exits_at_once_with_130() {
    let server = Serve::start(&[
        "--listen",
        "127.0.0.1:0",
        "--fault",
        "packet=ping fault=delay delay=60s",
    ]);
    // A request held by the delay keeps the graceful shutdown waiting for it.
    let mut held = TcpStream::connect(server.addr).expect("connect");
    send_ping_at(&mut held, "/x");
    std::thread::sleep(Duration::from_millis(300));
    server.signal("TERM");
    std::thread::sleep(Duration::from_millis(300));
    let second = Instant::now();
    server.signal("INT");
    // Well under the server's own drain grace (5s), so only the second signal explains it.
    let (status, _, stderr) = server.finish(Duration::from_secs(3));
    let status = status.unwrap_or_else(|| panic!("still draining after a second signal; {stderr}"));
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(second.elapsed() < Duration::from_secs(3));
    drop(held);
}

// ---- --fault naming ----

#[test]
fn fault_flag_rules_never_take_a_profile_rule_name() {
    let dir = tempfile::tempdir().unwrap();
    let profile = write_profile(
        dir.path(),
        "name = \"mine\"\ndescription = \"d\"\n\n[[rule]]\npacket = \"ping\"\npath = \"/a\"\nfault = \"status\"\nstatus = 503\n",
    );
    let shown = profile.display().to_string();
    let server = Serve::start(&[
        "--listen",
        "127.0.0.1:0",
        "--profile",
        &shown,
        "--fault",
        "packet=ping path=/b fault=status status=502",
    ]);
    assert_eq!(ping_at(server.addr, "/a"), 503);
    assert_eq!(ping_at(server.addr, "/b"), 502);
    let (rest, _) = server.stop();
    let report: Vec<&String> = rest.iter().filter(|l| l.starts_with("rule ")).collect();
    assert_eq!(
        report,
        [
            "rule 1: rule 1: fired 1 time(s)",
            "rule 2: rule 2: fired 1 time(s)"
        ],
        "{rest:?}"
    );
}

// ---- profile show ----

#[test]
fn profile_show_prints_a_shipped_profile_as_shipped_and_it_loads_back() {
    let out = run(bitsmock(&["profile", "show", "flaky-wifi"]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shipped = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/profiles/flaky-wifi.toml"
    ))
    .unwrap();
    assert_eq!(text(&out.stdout), text(&shipped));

    let dir = tempfile::tempdir().unwrap();
    let mine = write_profile(dir.path(), &text(&out.stdout));
    let shown = mine.display().to_string();
    let out = run(bitsmock(&["profile", "check", &shown]));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let server = Serve::start(&["--listen", "127.0.0.1:0", "--profile", &shown]);
    assert!(
        server
            .banner
            .contains("profile flaky-wifi, 4 rules, seed 3"),
        "{}",
        server.banner
    );
    server.stop();
}

#[test]
fn profile_show_of_an_unknown_name_lists_the_shipped_ones() {
    let out = run(bitsmock(&["profile", "show", "no-such-profile"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("no-such-profile") && stderr.contains("flaky-wifi, outage"),
        "{stderr}"
    );
}

// ---- profile check: errors, then warnings ----

/// Two rules that can never decide anything: the one at line 4 is dead, and the one at line
/// 14 is shadowed by the one at line 9.
const WARNED: &str = "name = \"w\"\ndescription = \"d\"\n\n[[rule]]\nname = \"dead\"\nprobability = 0.0\nfault = \"lose-ack\"\n\n[[rule]]\nname = \"all fragments\"\npacket = \"fragment\"\nfault = \"lose-ack\"\n\n[[rule]]\nname = \"third fragment\"\npacket = \"fragment\"\nnth = 3\nfault = \"status\"\nstatus = 503\n";

#[test]
fn profile_check_prints_warnings_with_their_line_and_still_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let shown = write_profile(dir.path(), WARNED).display().to_string();
    let out = run(bitsmock(&["profile", "check", &shown]));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 2, "{stderr}");
    assert!(
        lines[0].starts_with(&format!(
            "{shown}:4: warning: `dead` can never fire: `probability = 0`"
        )),
        "{stderr}"
    );
    assert!(
        lines[1].starts_with(&format!(
            "{shown}:14: warning: `third fragment` is shadowed by `all fragments` (line 9)"
        )),
        "{stderr}"
    );
    assert_eq!(
        text(&out.stdout).trim(),
        format!("{shown}: ok (w, 3 rules, 2 warnings)")
    );
}

#[test]
fn deny_warnings_fails_a_check_that_has_warnings_and_only_then() {
    let dir = tempfile::tempdir().unwrap();
    let warned = write_profile(dir.path(), WARNED).display().to_string();
    let out = run(bitsmock(&["profile", "check", "--deny-warnings", &warned]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains(": warning: "));
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));

    let clean = dir.path().join("clean.toml");
    std::fs::write(
        &clean,
        "name = \"c\"\ndescription = \"d\"\n\n[[rule]]\nfrom = \"1s\"\nuntil = \"2s\"\nfault = \"refuse\"\n",
    )
    .unwrap();
    let clean = clean.display().to_string();
    let out = run(bitsmock(&["profile", "check", "--deny-warnings", &clean]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).trim(),
        format!("{clean}: ok (c, 1 rules)")
    );
}

#[test]
fn an_error_in_one_file_still_fails_the_check_when_another_only_warns() {
    let dir = tempfile::tempdir().unwrap();
    let warned = write_profile(dir.path(), WARNED).display().to_string();
    let broken = dir.path().join("broken.toml");
    std::fs::write(
        &broken,
        "name = \"b\"\ndescription = \"d\"\n[[rule]]\nfault = \"nope\"\n",
    )
    .unwrap();
    let broken = broken.display().to_string();
    let out = run(bitsmock(&["profile", "check", &warned, &broken]));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("{broken}:4: unknown fault `nope`")),
        "{stderr}"
    );
    assert!(
        !stderr.contains(&format!("{broken}:4: warning")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{warned}:4: warning: ")),
        "{stderr}"
    );
}

#[test]
fn every_shipped_profile_passes_the_check_with_warnings_denied() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .filter(|p| p.ends_with(".toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "{files:?}");
    let mut args = vec!["profile", "check", "--deny-warnings"];
    args.extend(files.iter().map(String::as_str));
    let out = run(bitsmock(&args));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
}

/// A Create-Session answered 200, its session id.
fn create_session(stream: &mut TcpStream, path: &str) -> String {
    let head = format!(
        "BITS_POST {path} HTTP/1.1\r\nHost: t\r\nBITS-Packet-Type: Create-Session\r\nBITS-Supported-Protocols: {{7df0354d-249b-430f-820d-3d2a9bef4931}}\r\nContent-Length: 0\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).expect("send");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut id = None;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("read");
        if line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("BITS-Session-Id")
        {
            id = Some(value.trim().to_owned());
        }
    }
    id.expect("a session id")
}

#[test]
fn serve_verdict_prints_the_verdict_at_shutdown_and_fails_on_a_broken_rule() {
    // A client that creates a session and sends every byte, then never closes it.
    let server = Serve::start(&["--listen", "127.0.0.1:0", "--verdict"]);
    let mut stream = TcpStream::connect(server.addr).expect("connect");
    let id = create_session(&mut stream, "/v/a.bin");
    let frag = format!(
        "BITS_POST /v/a.bin HTTP/1.1\r\nHost: t\r\nBITS-Packet-Type: Fragment\r\nBITS-Session-Id: {id}\r\nContent-Range: bytes 0-2/3\r\nContent-Length: 3\r\n\r\nabc"
    );
    stream.write_all(frag.as_bytes()).expect("send");
    let mut line = String::new();
    BufReader::new(stream.try_clone().expect("clone"))
        .read_line(&mut line)
        .expect("answer");
    assert!(line.contains(" 200 "), "{line}");
    server.signal("TERM");
    let (status, rest, stderr) = server.finish(PATIENCE);
    assert_eq!(status.and_then(|s| s.code()), Some(1), "{rest:?} {stderr}");
    let all = rest.join("\n");
    assert!(all.contains("verdict: FAIL: 1 error(s)"), "{all}");
    assert!(all.contains("FAIL  closes-complete-uploads"), "{all}");

    // A client that does nothing wrong: exit 0.
    let server = Serve::start(&["--listen", "127.0.0.1:0", "--verdict"]);
    assert_eq!(ping(server.addr), 200);
    let (rest, _) = server.stop();
    assert!(
        rest.iter().any(|l| l.starts_with("verdict: PASS")),
        "{rest:?}"
    );
}

#[test]
fn verdict_reads_a_journal_file_in_every_format_and_says_which_lines_it_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = dir.path().join("j.ndjson");
    let source = dir.path().join("src.bin");
    std::fs::write(&source, vec![7u8; 20_000]).expect("source");
    let server = Serve::start(&[
        "--listen",
        "127.0.0.1:0",
        "--journal",
        journal.to_str().expect("utf-8"),
    ]);
    let url = format!("http://{}/j/a.bin", server.addr);
    let up = run(bitsmock(&[
        "upload",
        source.to_str().expect("utf-8"),
        &url,
        "--fragment-size",
        "8KiB",
    ]));
    assert!(up.status.success(), "{}", text(&up.stderr));
    // The server's root goes with it: keep a copy of what it committed.
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("j")).expect("mkdir");
    std::fs::copy(server.root().join("j/a.bin"), root.join("j/a.bin")).expect("copy");
    server.stop();
    let mut bytes = std::fs::read(&journal).expect("journal");
    bytes.extend_from_slice(b"not json\n");
    std::fs::write(&journal, bytes).expect("append");

    let verdict = |args: &[&str]| {
        let mut all = vec!["verdict", journal.to_str().expect("utf-8")];
        all.extend_from_slice(args);
        run(bitsmock(&all))
    };
    let out = verdict(&[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.starts_with("verdict: PASS"), "{shown}");
    assert!(shown.contains("pass  resumes-from-ack"), "{shown}");
    assert!(
        !shown.contains("(the journal ends"),
        "it ran to the stop: {shown}"
    );
    assert!(
        text(&out.stderr).contains(": skipped: not JSON"),
        "{}",
        text(&out.stderr)
    );

    let json: serde_json::Value =
        serde_json::from_slice(&verdict(&["--format", "json"]).stdout).expect("json");
    assert_eq!(json["passed"], true);
    assert!(text(&verdict(&["--format", "junit"]).stdout).contains("<testsuites"));
    assert!(text(&verdict(&["--format", "html"]).stdout).contains("<svg class=\"timeline\""));

    // The source compared with the committed file read back from the root.
    let intact = text(
        &verdict(&[
            "--source",
            source.to_str().expect("utf-8"),
            "--dir",
            root.to_str().expect("utf-8"),
        ])
        .stdout,
    );
    assert!(
        intact.contains("pass  upload-intact  (1 judged)"),
        "{intact}"
    );
    let other = dir.path().join("other.bin");
    std::fs::write(&other, vec![8u8; 20_000]).expect("other");
    let out = verdict(&[
        "--source",
        other.to_str().expect("utf-8"),
        "--dir",
        root.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("differs from the source"));
    // --dir without --source is a usage error.
    assert_eq!(verdict(&["--dir", "x"]).status.code(), Some(2));
}
