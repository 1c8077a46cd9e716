//! An independent client: `tests/interop/bits_upload.py`, written from docs/protocol.md with
//! Python's own HTTP stack, uploads through a real server and the stored file must match.

mod support;

use bitsmock::config::TlsSource;
use bitsmock::journal::What;
use bitsmock::proto::ContentLength;
use std::process::Output;
use support::*;

/// Runs the Python client with these arguments (before FILE URL FRAGMENT_SIZE).
async fn python_client(flags: &[&str], source: std::path::PathBuf, url: String) -> Output {
    let python = ["python3", "python"]
        .into_iter()
        .find(|p| {
            std::process::Command::new(p)
                .arg("--version")
                .output()
                .is_ok()
        })
        .expect("CI machines have python3");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/bits_upload.py");
    let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
    // Odd fragment size, so the last fragment is short.
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(script)
            .args(&flags)
            .arg(&source)
            .arg(&url)
            .arg("777777")
            .output()
    })
    .await
    .unwrap()
    .unwrap()
}

#[tokio::test]
async fn an_independent_python_client_uploads_5_mb_byte_identically() {
    let f = start().await;
    let data = data(5_000_000, 77);
    let source = f.dir.path().join("five-mb.bin");
    std::fs::write(&source, &data).unwrap();
    let url = format!("http://{}/interop/five-mb.bin", f.addr());
    let out = python_client(&[], source, url).await;
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

/// bits.py (the XenServer Transfer VM's client) sends bodyless packets without
/// Content-Length: IIS framing refuses it with 411, `--content-length optional` serves it,
/// and either way the journal says the length was missing.
#[tokio::test]
async fn the_bits_py_dialect_fails_with_required_content_length_and_uploads_with_optional() {
    let data = data(1_000_000, 78);
    for lengths in [ContentLength::Required, ContentLength::Optional] {
        let f = start_with(|c| c.vdir.content_length = lengths).await;
        let source = f.dir.path().join("bits-py.bin");
        std::fs::write(&source, &data).unwrap();
        let url = format!("http://{}/interop/bits-py.bin", f.addr());
        let out = python_client(&["--bits-py"], source, url).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let missing: Vec<bool> = f
            .running
            .server
            .events()
            .into_iter()
            .filter_map(|e| match e.what {
                What::Request(r) => Some(r.content_length_missing),
                _ => None,
            })
            .collect();
        match lengths {
            ContentLength::Required => {
                assert!(
                    !out.status.success(),
                    "bits.py's dialect got through IIS framing"
                );
                assert!(stderr.contains("Ping answered 411"), "{stderr}");
                assert!(f.stored("/interop/bits-py.bin").is_none());
                assert_eq!(missing, [true], "the refused Ping");
            }
            ContentLength::Optional => {
                assert!(out.status.success(), "client failed: {stderr}");
                assert_same(
                    &f.stored("/interop/bits-py.bin").expect("file committed"),
                    &data,
                    "stored file",
                );
                // Ping, Create-Session, two fragments, Close-Session.
                assert_eq!(missing, [true, true, false, false, true]);
            }
        }
        f.stop().await;
    }
}

/// Python's own TLS stack (the ssl module, OpenSSL underneath) trusts the generated CA and
/// uploads byte-identically, and refuses every bad certificate a `tls` fault presents, for
/// the reason OpenSSL gives.
#[tokio::test]
async fn pythons_ssl_module_uploads_over_https_and_refuses_each_bad_certificate() {
    let data = data(800_000, 79);
    for (rule, reason) in [
        (None, None),
        (Some("expired"), Some("certificate has expired")),
        (Some("not-yet-valid"), Some("certificate is not yet valid")),
        (Some("wrong-host"), Some("mismatch")),
        (Some("self-signed"), Some("self")),
        (Some("bad-usage"), Some("certificate purpose")),
    ] {
        let rules: Vec<String> = rule.iter().map(|c| format!("fault=tls cert={c}")).collect();
        let rules: Vec<&str> = rules.iter().map(String::as_str).collect();
        let f = start_rules_with(&rules, |c| {
            c.tls = Some(TlsSource::Generated);
            c.listen_tls = true;
        })
        .await;
        let source = f.dir.path().join("tls.bin");
        std::fs::write(&source, &data).unwrap();
        let url = format!("https://localhost:{}/interop/tls.bin", f.addr().port());
        let ca = f.running.server.ca_path().unwrap().display().to_string();
        let out = python_client(&["--ca", &ca], source, url).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        match reason {
            None => {
                assert!(out.status.success(), "client failed: {stderr}");
                assert_same(
                    &f.stored("/interop/tls.bin").expect("file committed"),
                    &data,
                    "stored file",
                );
            }
            Some(reason) => {
                assert!(!out.status.success(), "{rule:?} was accepted");
                assert!(stderr.contains("certificate refused"), "{rule:?}: {stderr}");
                assert!(stderr.contains(reason), "{rule:?}: {stderr}");
            }
        }
        f.stop().await;
    }
}
