//! Fuzzes the download validator (SPEC 6) with any body a download link could return: strict
//! PEM, one DER certificate, or neither (the validator tells them apart itself, so PEM and DER
//! share this target; the seeds hold both).
//!
//! Beyond "never panics", it checks what the store relies on: an accepted body's normalised
//! PEM validates again to the same certificates, and pinning to the first certificate accepts
//! exactly the bodies that hold no other one. Everything a log line or `once` prints of the
//! result is formatted too, as that is code the input reaches.
#![no_main]

use std::time::{Duration, SystemTime};

use certsync::validate::{Policy, to_pem, validate};
use libfuzzer_sys::fuzz_target;

/// A fixed clock, 2030-01-01T00:00:00Z, so that every run of an input takes the same path
/// (the seed certificates are valid then).
const NOW: Duration = Duration::from_secs(1_893_456_000);

fuzz_target!(|body: &[u8]| {
    let policy = Policy {
        now: SystemTime::UNIX_EPOCH + NOW,
        pins: &[],
    };
    let certs = match validate(body, &policy) {
        Ok(certs) => certs,
        Err(e) => {
            let _ = (e.to_string(), e.rule(), format!("{e:?}"));
            return;
        }
    };
    assert!(!certs.is_empty(), "an accepted body holds a certificate");
    for cert in &certs {
        let _ = format!(
            "{} {} {} {} {} {} {:?}",
            certsync::text::escape(&cert.subject),
            certsync::text::escape(&cert.issuer),
            cert.serial,
            cert.fingerprint(),
            cert.subject_hash_hex(),
            certsync::cert::rfc3339(cert.not_after),
            cert,
        );
        let _ = certsync::cert::rfc3339(cert.not_before);
    }

    let normalised = to_pem(&certs);
    let again = validate(normalised.as_bytes(), &policy)
        .unwrap_or_else(|e| panic!("the normalised PEM of an accepted body is rejected: {e}"));
    assert!(
        again == certs,
        "the normalised PEM reads back to other certificates"
    );
    assert_eq!(to_pem(&again), normalised, "normalising is not idempotent");

    let pins = [certs[0].sha256];
    let pinned = validate(
        body,
        &Policy {
            now: policy.now,
            pins: &pins,
        },
    );
    assert_eq!(
        pinned.is_ok(),
        certs.len() == 1,
        "pinning the first certificate: {pinned:?}"
    );
});
