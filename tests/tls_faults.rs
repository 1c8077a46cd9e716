//! `fault=tls` rules seen by real TLS clients: each bad certificate named by the reference
//! client (rustls), a stalled and a reset handshake, and a close without `close_notify` in
//! the middle of a fragment body.

mod support;

use bitsmock::client::{CertProblem, Options, Trust, UploadError, Uploader};
use bitsmock::config::TlsSource;
use bitsmock::journal::What;
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// HTTPS only, with the generated CA, and these rules.
async fn https(rules: &[&str]) -> Fixture {
    start_rules_with(rules, |c| {
        c.tls = Some(TlsSource::Generated);
        c.listen_tls = true;
    })
    .await
}

fn options(f: &Fixture) -> Options {
    Options {
        fragment_size: 64 * 1024,
        backoff_base: Duration::from_millis(2),
        backoff_cap: Duration::from_millis(20),
        max_retries: 4,
        request_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(5),
        trust: Trust::Ca(f.running.server.ca_path().unwrap().to_owned()),
        ..Options::default()
    }
}

/// A rustls client trusting the fixture's CA.
fn connector(f: &Fixture) -> tokio_rustls::TlsConnector {
    let pem = std::fs::read(f.running.server.ca_path().unwrap()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn handshake(
    f: &Fixture,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(f.addr()).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector(f).connect(name, tcp).await
}

#[tokio::test]
async fn every_bad_certificate_is_refused_by_the_client_under_its_own_name() {
    for (cert, problem) in [
        ("expired", CertProblem::Expired),
        ("not-yet-valid", CertProblem::NotYetValid),
        ("wrong-host", CertProblem::WrongHost),
        ("self-signed", CertProblem::UnknownIssuer),
        ("bad-usage", CertProblem::BadUsage),
    ] {
        let rule = format!("fault=tls cert={cert}");
        let f = https(&[&rule]).await;
        let (source, _) = f.source(1000);
        let e = Uploader::new(options(&f))
            .upload(&source, &f.url("/bad/a.bin"))
            .await
            .unwrap_err();
        match &e {
            UploadError::Certificate { problem: seen, .. } => assert_eq!(*seen, problem, "{cert}"),
            other => panic!("{cert}: expected a certificate error, got {other}"),
        }
        assert!(f.stored("/bad/a.bin").is_none());
        let faults: Vec<String> = f
            .running
            .server
            .events()
            .into_iter()
            .filter_map(|e| match e.what {
                What::TlsFault { fault, .. } => Some(fault.effect.to_string()),
                _ => None,
            })
            .collect();
        assert_eq!(
            faults,
            [format!("presented a bad TLS certificate ({cert})")],
            "{cert}"
        );
        f.stop().await;
    }
}

#[tokio::test]
async fn only_the_connections_a_tls_rule_picks_get_the_bad_certificate() {
    let f = https(&["connection=1 fault=tls cert=expired"]).await;
    let first = handshake(&f).await.unwrap_err();
    let inner = first
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>());
    assert!(
        matches!(inner, Some(rustls::Error::InvalidCertificate(_))),
        "{first}"
    );
    handshake(&f)
        .await
        .expect("connection 2 gets the good certificate");
    assert_eq!(f.fired(), [1]);
    f.stop().await;
}

#[tokio::test]
async fn a_stalled_handshake_runs_into_the_clients_timeout() {
    let f = https(&["connection=1 fault=tls handshake=stall hang=5s"]).await;
    let stalled = tokio::time::timeout(Duration::from_millis(500), handshake(&f)).await;
    assert!(stalled.is_err(), "the handshake completed: {stalled:?}");
    handshake(&f).await.expect("the next connection is served");
    f.stop().await;
}

#[tokio::test]
async fn a_reset_handshake_is_a_connection_reset() {
    let f = https(&["connection=1 fault=tls handshake=reset"]).await;
    let e = handshake(&f).await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    f.stop().await;
}

#[tokio::test]
async fn a_close_without_close_notify_mid_body_is_a_truncation_and_stores_nothing() {
    let f = https(&["connection=1 fault=tls close=no-notify"]).await;
    let mut tls = handshake(&f).await.unwrap();
    let create = Req::create("/trunc/a.bin").head_bytes(f.addr());
    tls.write_all(&create).await.unwrap();
    let mut head = vec![0u8; 4096];
    let n = tls.read(&mut head).await.unwrap();
    let head = String::from_utf8_lossy(&head[..n]).into_owned();
    let session = head
        .lines()
        .find_map(|l| l.strip_prefix("BITS-Session-Id: "))
        .expect("a session")
        .to_owned();
    let body = data(200_000, 9);
    let fragment = Req::fragment("/trunc/a.bin", &session, 0, body.len() as u64, &body);
    tls.write_all(&fragment.head_bytes(f.addr())).await.unwrap();
    // The server stops mid-body; writing the rest may or may not get through first.
    let _ = tls.write_all(&body).await;
    let mut rest = Vec::new();
    let e = tls.read_to_end(&mut rest).await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
    assert!(
        rest.is_empty(),
        "an answer came: {:?}",
        String::from_utf8_lossy(&rest)
    );
    assert_eq!(f.temp_sizes(), [0], "nothing of the cut fragment is stored");

    // The reference client takes it as a lost connection and resumes on a new one.
    let (source, data) = f.source(300_000);
    let summary = Uploader::new(options(&f))
        .upload(&source, &f.url("/trunc/b.bin"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(summary.bytes, data.len() as u64);
    assert_same(&f.stored("/trunc/b.bin").unwrap(), &data, "stored file");
    f.stop().await;
}

#[tokio::test]
async fn the_reference_client_survives_a_no_notify_close_on_its_own_connection() {
    let f = https(&["connection=1 fault=tls close=no-notify"]).await;
    let (source, data) = f.source(300_000);
    let summary = Uploader::new(options(&f))
        .upload(&source, &f.url("/trunc/c.bin"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(summary.counts.retries >= 1, "{:?}", summary.counts);
    assert_same(&f.stored("/trunc/c.bin").unwrap(), &data, "stored file");
    f.stop().await;
}

/// The server's cipher order decides, AES-128-GCM first (the cheapest AEAD per byte), even
/// for a client that prefers AES-256-GCM as rustls's and Schannel's defaults do.
#[tokio::test]
async fn the_server_picks_aes_128_gcm_whatever_the_clients_order() {
    let f = https(&[]).await;
    let tls = handshake(&f).await.unwrap();
    let suite = tls.get_ref().1.negotiated_cipher_suite().unwrap().suite();
    assert_eq!(suite, rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    f.stop().await;
}
