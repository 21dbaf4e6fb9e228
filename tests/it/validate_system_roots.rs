//! The real world: every root of the system store passes `validate`, unless it has expired or
//! is signed with a digest weaker than SHA-256 (SPEC 6's `weak_digest`: Mozilla still ships
//! roots self-signed with SHA-1; `openssl` is the oracle that they are). The whole bundle is
//! more than one download may hold (16 certificates), and is refused as such.

use std::time::SystemTime;

use certsync::cert::read_certs_lenient;
use certsync::validate::{MAX_CERTIFICATES, Policy, ValidationError, to_pem, validate};

/// The signature algorithm of a PEM certificate, as `openssl x509 -text` names it.
fn openssl_signature_algorithm(pem: &str, dir: &std::path::Path) -> String {
    let path = dir.join("root.pem");
    std::fs::write(&path, pem).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&path)
        .output()
        .expect("run openssl (needed by this test)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.trim().strip_prefix("Signature Algorithm: "))
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[test]
fn system_roots_are_accepted_unless_expired_or_weakly_signed() {
    let bundle = std::fs::read("/etc/ssl/certs/ca-certificates.crt")
        .expect("the system CA bundle /etc/ssl/certs/ca-certificates.crt is needed");
    let certs = read_certs_lenient(&bundle).expect("system bundle parses");
    assert!(certs.len() > 10, "only {} certificates", certs.len());
    let policy = Policy {
        now: SystemTime::now(),
        pins: &[],
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut accepted = Vec::new();
    let mut problems = Vec::new();
    for cert in &certs {
        match validate(&cert.der, &policy) {
            Ok(_) => accepted.push(cert.clone()),
            Err(ValidationError::Expired { .. }) => {}
            Err(ValidationError::WeakDigest { algorithm, .. }) => {
                let oracle = openssl_signature_algorithm(&cert.to_pem(), tmp.path());
                if !(oracle.starts_with("sha1") || oracle.starts_with("md5")) || algorithm != oracle
                {
                    problems.push(format!(
                        "{}: weak_digest {algorithm}, openssl says {oracle}",
                        cert.subject
                    ));
                }
            }
            Err(e) => problems.push(format!("{}: {e}", cert.subject)),
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(accepted.len() > 10);

    // The whole bundle at once is too many for one download, and says how many.
    match validate(&bundle, &policy) {
        Err(ValidationError::TooManyCertificates { count, limit }) => {
            assert_eq!((count, limit), (certs.len(), MAX_CERTIFICATES));
        }
        other => panic!("{other:?}"),
    }
    // The accepted roots, 16 at a time: the same certificates in the same order.
    for chunk in accepted.chunks(MAX_CERTIFICATES) {
        let body = to_pem(chunk);
        let got = validate(body.as_bytes(), &policy).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got, chunk);
    }
}
