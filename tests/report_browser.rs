//! The exercise's HTML report in a real headless browser (Debian's `chromium`; `.ci/run`
//! installs it when missing): it loads without console errors, the failing check and its
//! highlighted evidence are in the rendered page, and a screenshot is written.

use std::path::Path;
use std::process::Command;

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

fn headless(browser: &str, page: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1200,1600",
        ])
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run the browser")
}

#[test]
fn the_report_renders_in_a_headless_browser_with_the_failing_check_highlighted() {
    let Some(browser) = chromium() else {
        eprintln!(
            "SKIPPED: no chromium on this machine (install it with `apt-get install -y chromium`; .ci/run does)"
        );
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/bits_upload.py");
    let out = Command::new(env!("CARGO_BIN_EXE_bitsmock"))
        .args([
            "exercise",
            "--profiles",
            "clean,session-loss",
            "--size",
            "64KiB",
        ])
        .arg("--report-dir")
        .arg(dir.path())
        .args(["--", "python3", script, "{file}", "{url}", "8192"])
        .output()
        .expect("exercise");
    assert_eq!(
        out.status.code(),
        Some(1),
        "the Python client fails session-loss"
    );
    let page = dir.path().join("report.html");

    let dom = headless(browser, &page, &["--dump-dom"]);
    let stderr = String::from_utf8_lossy(&dom.stderr);
    let html = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.status.success(), "{stderr}");
    for line in stderr.lines() {
        assert!(
            !(line.contains("CONSOLE") || line.contains("Uncaught")),
            "console message while loading the report: {line}"
        );
    }
    assert!(html.contains("1 of 2 run(s) passed"), "{html}");
    assert!(
        html.contains("<li class=\"check-fail\"><b>recreates-after-session-loss</b> fail"),
        "the failing check is shown: {html}"
    );
    assert!(html.contains("did not create a new session"));
    assert!(html.contains("class=\"hl\""), "its evidence is outlined");
    assert!(html.contains("<svg class=\"timeline\""));
    assert!(
        html.contains("class=\"end\""),
        "the lost session is marked where it ended"
    );

    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("exercise-report.png");
    let _ = std::fs::remove_file(&shot);
    let taken = headless(
        browser,
        &page,
        &[&format!("--screenshot={}", shot.display())],
    );
    assert!(
        taken.status.success(),
        "{}",
        String::from_utf8_lossy(&taken.stderr)
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    assert!(
        png.len() > 10_000,
        "a page with content, not a blank: {} bytes",
        png.len()
    );
    eprintln!("screenshot: {}", shot.display());
}
