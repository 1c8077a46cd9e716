//! The examples in another language run here, so they cannot rot: the Python harness drives
//! the real binary over the control API (it needs only Python's standard library).

mod support;

#[test]
fn the_python_harness_arms_a_fault_over_the_control_api_and_its_assertions_hold() {
    let python = ["python3", "python"].into_iter().find(|p| {
        std::process::Command::new(p)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let Some(python) = python else {
        eprintln!("skipped: no python3 on this machine");
        return;
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/python_harness.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_bitsmock"))
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the harness failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("ok: "), "{stdout}");
}
