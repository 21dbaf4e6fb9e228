//! Inputs that the fuzz targets of `fuzz/` (run by ci/fuzz.sh) found to crash or misbehave, kept
//! as ordinary tests so that they hold on stable without the fuzzer. Each input is written out
//! here as bytes; nothing is read from outside the repository.

use std::time::{Duration, SystemTime};

use certsync::validate::{Policy, validate};

/// The clock of the `validate` fuzz target (2030-01-01T00:00:00Z).
fn policy() -> Policy<'static> {
    Policy {
        now: SystemTime::UNIX_EPOCH + Duration::from_secs(1_893_456_000),
        pins: &[],
    }
}

/// Found by the `validate` target (artifact `crash-57218c31...`: the three bytes `EF BB BF`):
/// a body that is a UTF-8 byte order mark, alone or followed by whitespace, was accepted as a
/// download holding no certificate at all. The emptiness check looked at the body before the
/// BOM was stripped, and the PEM scan of what remained found no block and no error. An
/// accepted empty download becomes an instance file with no current CA: its last good CA is
/// moved to the rotation overlap and then dropped (at once with `rotation_overlap = "0s"`).
/// SPEC 6: the body is PEM with one or more CERTIFICATE blocks, or one DER certificate.
#[test]
fn fuzz_validate_bom_only_body_is_rejected() {
    let bodies: [&[u8]; 4] = [
        b"\xef\xbb\xbf",
        b"\xef\xbb\xbf\n",
        b"\xef\xbb\xbf\r\n \t\r\n",
        // the fuzzer's second artifact (crash-f5b5cd16...): the BOM and 32 vertical tabs
        &[
            0xef, 0xbb, 0xbf, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b,
            0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b,
            0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b, 0x0b,
        ],
    ];
    for body in bodies {
        match validate(body, &policy()) {
            Ok(certs) => panic!(
                "{body:02x?}: accepted as a download of {} certificate(s)",
                certs.len()
            ),
            Err(e) => assert_eq!(e.rule(), "empty", "{body:02x?}: {e}"),
        }
    }
}
