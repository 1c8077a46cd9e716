//! An independent client: `tests/interop/bits_upload.py`, written from docs/protocol.md with
//! Python's own HTTP stack, uploads through a real server and the stored file must match.

mod support;

use support::*;

#[tokio::test]
async fn an_independent_python_client_uploads_5_mb_byte_identically() {
    let python = ["python3", "python"]
        .into_iter()
        .find(|p| {
            std::process::Command::new(p)
                .arg("--version")
                .output()
                .is_ok()
        })
        .expect("CI machines have python3");
    let f = start().await;
    let data = data(5_000_000, 77);
    let source = f.dir.path().join("five-mb.bin");
    std::fs::write(&source, &data).unwrap();
    let url = format!("http://{}/interop/five-mb.bin", f.addr());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/bits_upload.py");
    // Odd fragment size, so the last fragment is short.
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(script)
            .arg(&source)
            .arg(&url)
            .arg("777777")
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(
        out.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_same(
        &f.stored("/interop/five-mb.bin").expect("file committed"),
        &data,
        "stored file",
    );
    f.stop().await;
}
