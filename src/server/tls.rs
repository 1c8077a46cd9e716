//! HTTPS: the server's certificate — generated at start under a local CA, or the user's own
//! — as a rustls configuration for the TLS listeners.
//!
//! The generated CA signs one certificate for `localhost`, `127.0.0.1` and `::1`; its PEM is
//! written to `DIR/BITS-Sessions/tls/ca.pem` so that a client trusting that file needs no
//! other set-up. Everything is generated in memory with rcgen (ECDSA P-256) and served with
//! rustls on ring: no OpenSSL.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use crate::config::TlsSource as Source;
use crate::fault::BadCert;

/// The names the generated certificate is valid for.
pub const HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// The server's TLS identity, ready to accept handshakes, and the bad certificates the
/// `tls` faults present instead.
pub struct Identity {
    pub config: Arc<ServerConfig>,
    /// The generated CA's certificate as PEM (`None` with the user's own certificate).
    pub ca_pem: Option<String>,
    /// One configuration per [`BadCert::ALL`] entry, in that order.
    bad: Vec<Arc<ServerConfig>>,
}

/// Why no TLS identity could be made; the message names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error("cannot generate the TLS certificates: {0}")]
    Generate(String),
    #[error("the TLS certificate and key do not go together: {0}")]
    Config(String),
}

impl Identity {
    /// The certificates are made here, at start: a handshake never waits for key generation.
    /// With the user's own certificate the bad ones still come from a generated CA, which
    /// the client does not trust either.
    pub fn load(source: &Source) -> Result<Identity, TlsError> {
        let ca = LocalCa::new()?;
        let bad = BadCert::ALL
            .into_iter()
            .map(|cert| {
                let (chain, key) = ca.issue_bad(cert)?;
                server_config(chain, key)
            })
            .collect::<Result<_, _>>()?;
        match source {
            Source::Generated => {
                let (chain, key) = ca.issue(server_params(&HOSTS)?)?;
                Ok(Identity {
                    config: server_config(chain, key)?,
                    ca_pem: Some(ca.pem),
                    bad,
                })
            }
            Source::Files { cert, key } => {
                let chain = read_chain(cert)?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::File {
                    path: key.clone(),
                    message: format!("no PEM private key: {e}"),
                })?;
                Ok(Identity {
                    config: server_config(chain, key)?,
                    ca_pem: None,
                    bad,
                })
            }
        }
    }

    /// The configuration presenting `cert`.
    pub fn bad(&self, cert: BadCert) -> Arc<ServerConfig> {
        let at = BadCert::ALL.iter().position(|c| *c == cert).unwrap_or(0);
        Arc::clone(&self.bad[at])
    }
}

/// A CA made for this run: its certificate (PEM) and what it takes to sign with it.
struct LocalCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl LocalCa {
    fn new() -> Result<LocalCa, TlsError> {
        let key = KeyPair::generate().map_err(generate)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name("bitsmock local CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).map_err(generate)?;
        Ok(LocalCa {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// A certificate with these parameters, signed by this CA, with its key.
    fn issue(&self, params: CertificateParams) -> Result<Chain, TlsError> {
        let key = KeyPair::generate().map_err(generate)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(generate)?;
        Ok((vec![cert.der().clone()], pkcs8(&key)))
    }

    /// The certificate a `tls` fault presents: each is wrong in exactly one way.
    fn issue_bad(&self, cert: BadCert) -> Result<Chain, TlsError> {
        let mut params = server_params(&HOSTS)?;
        match cert {
            BadCert::Expired => {
                params.not_before = rcgen::date_time_ymd(2000, 1, 1);
                params.not_after = rcgen::date_time_ymd(2001, 1, 1);
            }
            BadCert::NotYetValid => {
                params.not_before = rcgen::date_time_ymd(2090, 1, 1);
                params.not_after = rcgen::date_time_ymd(2091, 1, 1);
            }
            BadCert::WrongHost => params = server_params(&[WRONG_HOST])?,
            BadCert::SelfSigned => {
                let key = KeyPair::generate().map_err(generate)?;
                let cert = params.self_signed(&key).map_err(generate)?;
                return Ok((vec![cert.der().clone()], pkcs8(&key)));
            }
            BadCert::BadUsage => {
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            }
        }
        self.issue(params)
    }
}

/// The host name a `cert = "wrong-host"` certificate is for.
pub const WRONG_HOST: &str = "wrong-host.invalid";

/// A certificate chain (leaf first) and the leaf's key.
type Chain = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn pkcs8(key: &KeyPair) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()))
}

/// A TLS server certificate's parameters: the hosts as subject alternative names, usable
/// for server authentication.
fn server_params(hosts: &[&str]) -> Result<CertificateParams, TlsError> {
    let owned: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
    let mut params = CertificateParams::new(owned).map_err(generate)?;
    params.distinguished_name = name(hosts.first().copied().unwrap_or("localhost"));
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    Ok(params)
}

fn name(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}

fn generate(e: rcgen::Error) -> TlsError {
    TlsError::Generate(e.to_string())
}

fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsError> {
    // AES-128-GCM first, and the server's order decides: 10 AES rounds per block instead of
    // AES-256's 14, the cheapest AEAD per byte for the upload path (benches/README.md), and
    // as good a choice for a test server.
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites.sort_by_key(|suite| {
        !matches!(
            suite.suite(),
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
                | rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        )
    });
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.ignore_client_order = true;
    Ok(Arc::new(config))
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let fail = |message: String| TlsError::File {
        path: path.to_owned(),
        message,
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| fail(format!("cannot read: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(format!("bad PEM: {e}")))?;
    if chain.is_empty() {
        return Err(fail("no PEM certificate in it".into()));
    }
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_identity_comes_with_its_ca() {
        let identity = Identity::load(&Source::Generated).unwrap();
        let ca = identity.ca_pem.unwrap();
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
    }

    #[test]
    fn missing_or_empty_files_are_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        let source = Source::Files {
            cert: cert.clone(),
            key: key.clone(),
        };
        let e = Identity::load(&source).err().unwrap().to_string();
        assert!(e.starts_with(&cert.display().to_string()), "{e}");
        std::fs::write(&cert, "not pem").unwrap();
        let e = Identity::load(&source).err().unwrap().to_string();
        assert!(e.contains("no PEM certificate"), "{e}");
    }
}
