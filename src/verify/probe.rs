//! One probe (SPEC 13): a plain TLS handshake to an endpoint (TLS 1.2 and 1.3, no application
//! data), then the chain it served verified against an instance's CAs.
//!
//! Owns: the handshake and the chain check. The handshake accepts whatever chain the server
//! sends (a verifier that only records it, while still checking the handshake's own
//! signatures), so that a chain from an unknown CA is reported as such rather than as a
//! failed connection; the chain is then verified with webpki against each CA in turn, which
//! tells which one anchors it. Names are checked only when asked (the servers' certificates
//! name internal addresses). Must not: send application data, read files, or log.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;

use crate::endpoint::Endpoint;

/// One CA a chain may anchor at: its certificate and fingerprint.
#[derive(Debug, Clone)]
pub struct Anchor {
    /// The CA certificate (DER).
    pub der: CertificateDer<'static>,
    /// Its SHA-256, lower-case hex.
    pub sha256: String,
}

/// The anchors of `certs`, each CA once, in order.
pub fn anchors<'a>(certs: impl IntoIterator<Item = &'a crate::cert::Cert>) -> Vec<Anchor> {
    let mut out: Vec<Anchor> = Vec::new();
    for cert in certs {
        let sha256 = cert.fingerprint();
        if !out.iter().any(|a| a.sha256 == sha256) {
            out.push(Anchor {
                der: CertificateDer::from(cert.der.clone()),
                sha256,
            });
        }
    }
    out
}

/// What a probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probed {
    /// Verified, or why not.
    pub outcome: Outcome,
    /// The fingerprint of the CA the chain anchors at (when it anchors at one).
    pub anchor: Option<String>,
    /// The served leaf's notAfter, when a chain was served and could be read.
    pub leaf_not_after: Option<time::OffsetDateTime>,
}

/// Verified, or the reason it is not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The chain anchors at one of the CAs (and the name matched, when checked).
    Verified,
    /// The chain anchors at none of the CAs certsync wrote for the instance.
    UnknownIssuer,
    /// A certificate of the chain has expired.
    Expired,
    /// A certificate of the chain is not valid yet.
    NotYetValid,
    /// The leaf does not name the endpoint's host (`check_hostname`).
    NameMismatch,
    /// The chain is invalid otherwise (its detail).
    InvalidChain(String),
    /// No CA to verify against (the instance has no file on disk yet).
    NoCa,
    /// The TCP connection failed (its detail).
    Connect(String),
    /// The TLS handshake failed (its detail).
    Handshake(String),
    /// Connect and handshake did not finish within the timeout.
    Timeout,
}

impl Outcome {
    /// A short stable word: the `result` label of `certsync_endpoint_probes_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Outcome::Verified => "verified",
            Outcome::UnknownIssuer => "unknown_issuer",
            Outcome::Expired => "expired",
            Outcome::NotYetValid => "not_yet_valid",
            Outcome::NameMismatch => "name_mismatch",
            Outcome::InvalidChain(_) => "invalid_chain",
            Outcome::NoCa => "no_ca",
            Outcome::Connect(_) => "connect_error",
            Outcome::Handshake(_) => "handshake_error",
            Outcome::Timeout => "timeout",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Verified => f.write_str("verified"),
            Outcome::UnknownIssuer => {
                f.write_str("the served chain anchors at no CA certsync wrote for the instance")
            }
            Outcome::Expired => f.write_str("a certificate of the served chain has expired"),
            Outcome::NotYetValid => {
                f.write_str("a certificate of the served chain is not valid yet")
            }
            Outcome::NameMismatch => f.write_str("the served certificate does not name the host"),
            Outcome::InvalidChain(d) => write!(f, "the served chain is invalid: {d}"),
            Outcome::NoCa => f.write_str("no CA of the instance is on disk yet"),
            Outcome::Connect(d) => write!(f, "connection failed: {d}"),
            Outcome::Handshake(d) => write!(f, "TLS handshake failed: {d}"),
            Outcome::Timeout => f.write_str("no TLS handshake within the timeout"),
        }
    }
}

/// Connects to `endpoint`, shakes hands (TLS 1.2 or 1.3) within `timeout`, and verifies the
/// served chain against `anchors`; with `check_hostname` the leaf must name the host too.
pub async fn probe(
    endpoint: &Endpoint,
    anchors: &[Anchor],
    timeout: Duration,
    check_hostname: bool,
) -> Probed {
    let failed = |outcome| Probed {
        outcome,
        anchor: None,
        leaf_not_after: None,
    };
    let chain = match tokio::time::timeout(timeout, handshake(endpoint)).await {
        Err(_) => return failed(Outcome::Timeout),
        Ok(Err(outcome)) => return failed(outcome),
        Ok(Ok(chain)) => chain,
    };
    let Some((leaf, intermediates)) = chain.split_first() else {
        return failed(Outcome::Handshake("the server sent no certificate".into()));
    };
    let leaf_not_after = x509_parser::parse_x509_certificate(leaf)
        .ok()
        .map(|(_, c)| c.validity().not_after.to_datetime());
    let (outcome, anchor) = verify_chain(
        leaf,
        intermediates,
        anchors,
        SystemTime::now(),
        check_hostname.then_some(endpoint),
    );
    Probed {
        outcome,
        anchor,
        leaf_not_after,
    }
}

/// The chain the server at `endpoint` serves (leaf first), from a completed handshake.
async fn handshake(endpoint: &Endpoint) -> Result<Vec<CertificateDer<'static>>, Outcome> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let recorder = Arc::new(Recorder {
        chain: Mutex::new(Vec::new()),
        algorithms: provider.signature_verification_algorithms,
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| Outcome::Handshake(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let name = match endpoint.ip() {
        Some(ip) => ServerName::IpAddress(ip.into()),
        None => ServerName::try_from(endpoint.host.clone())
            .map_err(|e| Outcome::Connect(format!("{}: {e}", endpoint.host)))?,
    };
    let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(|e| Outcome::Connect(e.to_string()))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| Outcome::Handshake(e.to_string()))?;
    // A polite close; what the server does then does not matter.
    let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
    let chain = recorder
        .chain
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    Ok(chain)
}

/// Verifies `leaf` (with the served `intermediates`) against each anchor in turn: the first
/// that anchors it is named. With `host`, the leaf must name it.
pub fn verify_chain(
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    anchors: &[Anchor],
    now: SystemTime,
    host: Option<&Endpoint>,
) -> (Outcome, Option<String>) {
    if anchors.is_empty() {
        return (Outcome::NoCa, None);
    }
    let Ok(end_entity) = webpki::EndEntityCert::try_from(leaf) else {
        return (
            Outcome::InvalidChain("the leaf is not a certificate webpki can read".into()),
            None,
        );
    };
    let seconds = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let now = UnixTime::since_unix_epoch(seconds);
    // The most telling failure over all anchors: an expiry beats "unknown issuer".
    let mut failure = Outcome::UnknownIssuer;
    for anchor in anchors {
        let Ok(trust) = webpki::anchor_from_trusted_cert(&anchor.der) else {
            continue;
        };
        let trusted = [trust];
        let verified = end_entity.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &trusted,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
            None,
            None,
        );
        match verified {
            Ok(_) => {
                if let Some(endpoint) = host {
                    let name = match endpoint.ip() {
                        Some(ip) => ServerName::IpAddress(ip.into()),
                        None => match ServerName::try_from(endpoint.host.as_str()) {
                            Ok(n) => n,
                            Err(_) => return (Outcome::NameMismatch, Some(anchor.sha256.clone())),
                        },
                    };
                    if end_entity.verify_is_valid_for_subject_name(&name).is_err() {
                        return (Outcome::NameMismatch, Some(anchor.sha256.clone()));
                    }
                }
                return (Outcome::Verified, Some(anchor.sha256.clone()));
            }
            Err(e) => {
                let this = classify(&e);
                if rank(&this) > rank(&failure) {
                    failure = this;
                }
            }
        }
    }
    (failure, None)
}

fn classify(e: &webpki::Error) -> Outcome {
    match e {
        webpki::Error::UnknownIssuer => Outcome::UnknownIssuer,
        webpki::Error::CertExpired { .. } => Outcome::Expired,
        webpki::Error::CertNotValidYet { .. } => Outcome::NotYetValid,
        other => Outcome::InvalidChain(format!("{other:?}")),
    }
}

/// Which failure explains most: an unknown issuer is what any other CA says.
fn rank(o: &Outcome) -> u8 {
    match o {
        Outcome::UnknownIssuer => 0,
        Outcome::InvalidChain(_) => 1,
        _ => 2,
    }
}

/// A verifier that accepts any chain and keeps it, while checking the handshake's own
/// signatures (so the chain is really the server's: it proved it holds the leaf's key).
#[derive(Debug)]
struct Recorder {
    chain: Mutex<Vec<CertificateDer<'static>>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = vec![end_entity.clone().into_owned()];
        chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        *self.chain.lock().unwrap_or_else(|e| e.into_inner()) = chain;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
