//! The endpoint probe (SPEC 13) against real TLS servers: `openssl s_server` with certificates
//! issued at test time (a chain with an intermediate, an expired leaf, a leaf from an unknown
//! CA, TLS 1.2 only and 1.3 only), a listener that never answers the handshake, and a port
//! where nothing listens.

use std::process::Stdio;
use std::time::Duration;

use certsync::endpoint::Endpoint;
use certsync::verify::{Anchor, Outcome, probe};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use crate::common::free_port;

/// A CA (or intermediate) that can issue.
struct Ca {
    params: CertificateParams,
    key: KeyPair,
    der: Vec<u8>,
    pem: String,
}

fn days(n: i64) -> time::Duration {
    time::Duration::days(n)
}

fn ca(cn: &str, parent: Option<&Ca>) -> Ca {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.not_before = OffsetDateTime::now_utc() - days(1);
    params.not_after = OffsetDateTime::now_utc() + days(365);
    let key = KeyPair::generate().unwrap();
    let cert = match parent {
        None => params.self_signed(&key).unwrap(),
        Some(p) => params
            .signed_by(&key, &Issuer::from_params(&p.params, &p.key))
            .unwrap(),
    };
    Ca {
        der: cert.der().to_vec(),
        pem: cert.pem(),
        params,
        key,
    }
}

fn anchor(ca: &Ca) -> Anchor {
    Anchor {
        der: CertificateDer::from(ca.der.clone()),
        sha256: certsync::cert::Cert::from_der(&ca.der)
            .unwrap()
            .fingerprint(),
    }
}

/// A leaf issued by `issuer` for `sans` (IP addresses or names), valid in `[from, until]`:
/// its PEM and its key's PEM.
fn leaf(
    issuer: &Ca,
    sans: &[&str],
    from: OffsetDateTime,
    until: OffsetDateTime,
) -> (String, String) {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "db node");
    params.subject_alt_names = sans
        .iter()
        .map(|s| match s.parse() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName((*s).try_into().unwrap()),
        })
        .collect();
    params.not_before = from;
    params.not_after = until;
    let key = KeyPair::generate().unwrap();
    let cert = params
        .signed_by(&key, &Issuer::from_params(&issuer.params, &issuer.key))
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

fn good_leaf(issuer: &Ca) -> (String, String) {
    leaf(
        issuer,
        &["127.0.0.1"],
        OffsetDateTime::now_utc() - days(1),
        OffsetDateTime::now_utc() + days(30),
    )
}

/// `openssl s_server` on a loopback port with `cert`/`key` (and `chain`, the intermediates
/// it sends after the leaf) and `extra` arguments. Killed on drop.
struct Server {
    child: std::process::Child,
    endpoint: Endpoint,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start(cert: &str, key: &str, chain: Option<&str>, extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cert.pem"), cert).unwrap();
        std::fs::write(dir.path().join("key.pem"), key).unwrap();
        let port = free_port();
        let mut cmd = std::process::Command::new("openssl");
        cmd.current_dir(dir.path())
            .args(["s_server", "-quiet", "-naccept", "100"])
            .args(["-accept", &format!("127.0.0.1:{port}")])
            .args(["-cert", "cert.pem", "-key", "key.pem"])
            .args(extra);
        if let Some(chain) = chain {
            std::fs::write(dir.path().join("chain.pem"), chain).unwrap();
            cmd.args(["-cert_chain", "chain.pem"]);
        }
        let child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn openssl s_server");
        crate::common::wait_listening(port).await;
        Server {
            child,
            endpoint: Endpoint::parse(&format!("127.0.0.1:{port}")).unwrap(),
            _dir: dir,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_from_an_instance_ca_verifies_and_names_its_anchor_with_tls_12_and_13() {
    let (a, b) = (ca("CA A", None), ca("CA B", None));
    let (cert, key) = good_leaf(&a);
    for versions in [&[][..], &["-tls1_3"], &["-tls1_2"]] {
        let server = Server::start(&cert, &key, None, versions).await;
        let probed = probe(&server.endpoint, &[anchor(&b), anchor(&a)], TIMEOUT, false).await;
        assert_eq!(probed.outcome, Outcome::Verified, "{versions:?}");
        assert_eq!(probed.anchor, Some(anchor(&a).sha256), "{versions:?}");
        let not_after = probed.leaf_not_after.expect("the leaf's notAfter");
        assert!(not_after > OffsetDateTime::now_utc() + days(29));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_from_another_ca_is_an_unknown_issuer_not_a_connection_failure() {
    let (a, b) = (ca("CA A", None), ca("CA B", None));
    let (cert, key) = good_leaf(&a);
    let server = Server::start(&cert, &key, None, &[]).await;
    let probed = probe(&server.endpoint, &[anchor(&b)], TIMEOUT, false).await;
    assert_eq!(probed.outcome, Outcome::UnknownIssuer);
    assert_eq!(probed.anchor, None);
    assert!(probed.leaf_not_after.is_some());
    assert_eq!(probed.outcome.reason(), "unknown_issuer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_through_an_intermediate_anchors_at_the_root() {
    let root = ca("Root", None);
    let intermediate = ca("Intermediate", Some(&root));
    let (cert, key) = good_leaf(&intermediate);
    let server = Server::start(&cert, &key, Some(&intermediate.pem), &[]).await;
    let probed = probe(&server.endpoint, &[anchor(&root)], TIMEOUT, false).await;
    assert_eq!(probed.outcome, Outcome::Verified);
    assert_eq!(probed.anchor, Some(anchor(&root).sha256));
    // Without the intermediate on the wire, the root alone cannot anchor the leaf.
    let bare = Server::start(&cert, &key, None, &[]).await;
    let probed = probe(&bare.endpoint, &[anchor(&root)], TIMEOUT, false).await;
    assert_eq!(probed.outcome, Outcome::UnknownIssuer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_leaf_is_reported_as_expired() {
    let a = ca("CA A", None);
    let (cert, key) = leaf(
        &a,
        &["127.0.0.1"],
        OffsetDateTime::now_utc() - days(30),
        OffsetDateTime::now_utc() - days(1),
    );
    let server = Server::start(&cert, &key, None, &[]).await;
    let probed = probe(&server.endpoint, &[anchor(&a)], TIMEOUT, false).await;
    assert_eq!(probed.outcome, Outcome::Expired);
    assert!(probed.leaf_not_after.unwrap() < OffsetDateTime::now_utc());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_are_checked_only_when_asked() {
    let a = ca("CA A", None);
    let (cert, key) = leaf(
        &a,
        &["db.internal"],
        OffsetDateTime::now_utc() - days(1),
        OffsetDateTime::now_utc() + days(30),
    );
    let server = Server::start(&cert, &key, None, &[]).await;
    let loose = probe(&server.endpoint, &[anchor(&a)], TIMEOUT, false).await;
    assert_eq!(loose.outcome, Outcome::Verified);
    let strict = probe(&server.endpoint, &[anchor(&a)], TIMEOUT, true).await;
    assert_eq!(strict.outcome, Outcome::NameMismatch);
    // A leaf naming the address passes the strict check.
    let (cert, key) = good_leaf(&a);
    let server = Server::start(&cert, &key, None, &[]).await;
    let strict = probe(&server.endpoint, &[anchor(&a)], TIMEOUT, true).await;
    assert_eq!(strict.outcome, Outcome::Verified);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_times_out_and_a_closed_port_fails_to_connect() {
    let a = ca("CA A", None);
    // Accepts the TCP connection (the kernel does, into the backlog) and never speaks TLS.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = Endpoint::parse(&silent.local_addr().unwrap().to_string()).unwrap();
    let started = std::time::Instant::now();
    let probed = probe(&endpoint, &[anchor(&a)], Duration::from_millis(300), false).await;
    assert_eq!(probed.outcome, Outcome::Timeout);
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(silent);

    let closed = Endpoint::parse(&format!("127.0.0.1:{}", free_port())).unwrap();
    let probed = probe(&closed, &[anchor(&a)], TIMEOUT, false).await;
    assert!(
        matches!(&probed.outcome, Outcome::Connect(d) if d.contains("refused")),
        "{probed:?}"
    );
}

#[test]
fn no_ca_on_disk_yet_is_its_own_outcome() {
    let a = ca("CA A", None);
    let (cert, _) = good_leaf(&a);
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(cert.as_bytes()).unwrap();
    let (outcome, anchor) =
        certsync::verify::verify_chain(&der, &[], &[], std::time::SystemTime::now(), None);
    assert_eq!((outcome, anchor), (Outcome::NoCa, None));
}
