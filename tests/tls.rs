//! HTTPS: the generated CA, HTTP and HTTPS side by side, reply URLs in the request's scheme,
//! and the reference client's trust settings and certificate errors.

mod support;

use bitsmock::client::{CertProblem, Options, Trust, UploadError, Uploader};
use bitsmock::config::TlsSource;
use std::time::Duration;
use support::serve::{Serve, bitsmock, run, text};
use support::*;

fn options(trust: Trust) -> Options {
    Options {
        fragment_size: 256 * 1024,
        backoff_base: Duration::from_millis(2),
        backoff_cap: Duration::from_millis(20),
        max_retries: 3,
        request_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(5),
        trust,
        ..Options::default()
    }
}

/// A server with HTTP on `listen` and HTTPS (generated certificate) beside it.
async fn side_by_side() -> Fixture {
    start_with(|c| {
        c.tls = Some(TlsSource::Generated);
        c.tls_listen = Some(([127, 0, 0, 1], 0).into());
        c.vdir.reply_prefix = vec!["reply".into()];
    })
    .await
}

#[tokio::test]
async fn an_https_upload_with_the_generated_ca_is_byte_identical() {
    let f = side_by_side().await;
    let ca = f
        .running
        .server
        .ca_path()
        .expect("a generated CA")
        .to_owned();
    assert_eq!(
        ca,
        f.root
            .canonicalize()
            .unwrap()
            .join("BITS-Sessions/tls/ca.pem")
    );
    let (source, data) = f.source(3_000_000);
    let url = format!("{}/tls/three-mb.bin", f.running.tls_url().unwrap());
    let summary = Uploader::new(options(Trust::Ca(ca.clone())))
        .upload(&source, &url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(summary.bytes, data.len() as u64);
    assert_same(
        &f.stored("/tls/three-mb.bin").expect("committed"),
        &data,
        "stored file",
    );
    // The certificate names every loopback spelling.
    let url = format!(
        "https://localhost:{}/tls/again.bin",
        f.running.tls_addr.unwrap().port()
    );
    Uploader::new(options(Trust::Ca(ca)))
        .upload(&source, &url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_same(
        &f.stored("/tls/again.bin").expect("committed"),
        &data,
        "stored file",
    );
    f.stop().await;
}

#[tokio::test]
async fn reply_urls_use_the_scheme_the_request_came_in_on() {
    let f = side_by_side().await;
    let ca = f.running.server.ca_path().unwrap().to_owned();
    let (source, _) = f.source(1000);
    for (base, scheme) in [
        (f.running.url(), "http://"),
        (f.running.tls_url().unwrap(), "https://"),
    ] {
        let url = format!("{base}/reply/{}.bin", &scheme[..scheme.len() - 3]);
        let summary = Uploader::new(Options {
            expect_reply: true,
            ..options(Trust::Ca(ca.clone()))
        })
        .upload(&source, &url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let reply = summary.reply.expect("a reply");
        assert!(reply.url.starts_with(scheme), "{} for {url}", reply.url);
        assert!(reply.body.is_some_and(|b| !b.is_empty()));
    }
    f.stop().await;
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_ca_stops_at_once_naming_the_problem() {
    let f = side_by_side().await;
    let (source, _) = f.source(1000);
    let url = format!("{}/tls/a.bin", f.running.tls_url().unwrap());
    let started = std::time::Instant::now();
    let e = Uploader::new(options(Trust::System))
        .upload(&source, &url)
        .await
        .unwrap_err();
    match &e {
        UploadError::Certificate { problem, .. } => {
            assert_eq!(*problem, CertProblem::UnknownIssuer, "{e}")
        }
        other => panic!("expected a certificate error, got {other}"),
    }
    assert_eq!(e.hresult(), Some(0x8007_2F8F));
    assert!(e.to_string().contains("not issued by a trusted CA"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5), "it retried");
    // --insecure gets through anyway.
    Uploader::new(options(Trust::Insecure))
        .upload(&source, &url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(f.stored("/tls/a.bin").is_some());
    f.stop().await;
}

#[tokio::test]
async fn the_users_own_certificate_is_served_and_no_ca_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let f = start_with(|c| {
        c.tls = Some(TlsSource::Files {
            cert: cert_path.clone(),
            key: key_path,
        });
        c.listen_tls = true;
    })
    .await;
    assert!(f.running.server.ca_path().is_none());
    assert!(f.running.url().starts_with("https://"));
    let (source, data) = f.source(70_000);
    let url = format!("https://localhost:{}/own/a.bin", f.addr().port());
    Uploader::new(options(Trust::Ca(cert_path)))
        .upload(&source, &url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_same(&f.stored("/own/a.bin").unwrap(), &data, "stored file");
    f.stop().await;
}

/// The whole CLI story: `serve --tls` prints the CA, `upload --ca-cert` trusts it.
#[tokio::test]
async fn serve_tls_prints_its_ca_and_upload_ca_cert_trusts_it() {
    let serve = Serve::start_json(&["--listen", ":0", "--tls-listen", ":0"], |_| {});
    let ready: serde_json::Value = serde_json::from_str(&serve.banner).unwrap();
    let ca = ready["ca"]
        .as_str()
        .expect("ca in the ready JSON")
        .to_owned();
    let tls_url = ready["tls_url"].as_str().expect("tls_url").to_owned();
    assert!(tls_url.starts_with("https://127.0.0.1:"), "{tls_url}");
    assert!(std::path::Path::new(&ca).is_file(), "{ca}");
    let source = serve.dir.path().join("a.bin");
    std::fs::write(&source, data(200_000, 5)).unwrap();
    let url = format!("{tls_url}/cli/a.bin");
    let out = tokio::task::spawn_blocking({
        let (source, url, ca) = (source.clone(), url.clone(), ca.clone());
        move || {
            let mut c = bitsmock(&["upload", "--quiet"]);
            c.arg(&source).arg(&url).arg("--ca-cert").arg(&ca);
            run(c)
        }
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = tokio::task::spawn_blocking(move || {
        let mut c = bitsmock(&["upload", "--quiet", "--max-retries", "1"]);
        c.arg(&source).arg(format!("{url}.2"));
        run(c)
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("not issued by a trusted CA"), "{stderr}");
    assert_eq!(
        std::fs::read(serve.root().join("cli/a.bin")).unwrap(),
        data(200_000, 5)
    );
    serve.stop();
}

/// Fragments as big as Windows sends cross TLS intact (rustls buffers what the socket has
/// not taken yet; nothing of it may be lost or acknowledged early).
#[tokio::test]
async fn large_fragments_cross_tls_intact() {
    let f = side_by_side().await;
    let ca = f.running.server.ca_path().unwrap().to_owned();
    let (source, data) = f.source(20 * 1024 * 1024);
    let url = format!("{}/tls/big.bin", f.running.tls_url().unwrap());
    Uploader::new(Options {
        fragment_size: 8 * 1024 * 1024,
        ..options(Trust::Ca(ca))
    })
    .upload(&source, &url)
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_same(
        &f.stored("/tls/big.bin").expect("committed"),
        &data,
        "stored file",
    );
    f.stop().await;
}
