//! The real world: every root of the system store passes `validate`, unless it has expired.

use std::time::SystemTime;

use certsync::cert::read_certs_lenient;
use certsync::validate::{Policy, ValidationError, validate};

#[test]
fn system_roots_are_accepted_unless_expired() {
    let bundle = std::fs::read("/etc/ssl/certs/ca-certificates.crt")
        .expect("the system CA bundle /etc/ssl/certs/ca-certificates.crt is needed");
    let certs = read_certs_lenient(&bundle).expect("system bundle parses");
    assert!(certs.len() > 10, "only {} certificates", certs.len());
    let policy = Policy {
        now: SystemTime::now(),
        pins: &[],
    };
    let mut accepted = 0;
    let mut problems = Vec::new();
    for cert in &certs {
        match validate(&cert.der, &policy) {
            Ok(_) => accepted += 1,
            Err(ValidationError::Expired { .. }) => {}
            Err(e) => problems.push(format!("{}: {e}", cert.subject)),
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(accepted > 10);
    // The whole bundle at once, too: the same certificates in the same order.
    match validate(&bundle, &policy) {
        Ok(all) => assert_eq!(all.len(), accepted),
        Err(ValidationError::Expired { .. }) => {}
        Err(e) => panic!("{e}"),
    }
}
