//! Validation of one downloaded CA body (SPEC 6).
//!
//! Owns: splitting a body into certificates (strict PEM, or one DER certificate, at most
//! [`MAX_CERTIFICATES`]), the CA, validity, key, digest, self-signature and pin rules,
//! deduplication, and the normalised PEM output that makes two downloads of the same CAs
//! byte-identical. Every time X.509 can express (up to `99991231235959Z`, RFC 5280's "no
//! well-defined expiration") is handled: the date arithmetic is checked, never panics.
//!
//! Must not: do I/O, know about instances, categories or URLs (callers add that context to a
//! rejection), or write anything anywhere. It is pure: the clock comes in through [`Policy`].

use std::time::{Duration, SystemTime};

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use time::{OffsetDateTime, PrimitiveDateTime};

use crate::cert::{Cert, Digest, EcCurve, KeyKind, ParseError, encode_pem};

/// How far the local clock may be off from the issuer's: a certificate is accepted from
/// `notBefore - CLOCK_SKEW` until `notAfter + CLOCK_SKEW`.
pub const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// [`CLOCK_SKEW`] for `time` arithmetic.
const SKEW: time::Duration = time::Duration::seconds(5 * 60);

/// The most certificates one download may hold (SPEC 6); PEM blocks are counted, duplicates
/// included, before any of them is decoded.
pub const MAX_CERTIFICATES: usize = 16;

/// What a download is checked against.
#[derive(Clone, Copy, Debug)]
pub struct Policy<'a> {
    /// The current time (passed in so that validation stays pure and testable).
    pub now: SystemTime,
    /// Accepted SHA-256 fingerprints (`pin_sha256`); empty means no pinning.
    pub pins: &'a [[u8; 32]],
}

/// Why a download was rejected. One rejection rejects the whole body: a partially good
/// download is never published.
#[derive(Debug, thiserror::Error)]
pub enum ValidationError {
    /// No bytes, or only whitespace.
    #[error("the download is empty")]
    Empty,
    /// Something other than whitespace outside the PEM blocks (an HTML error page, say).
    #[error("line {line}: text outside PEM blocks (not a certificate file)")]
    TextOutsideBlocks {
        /// 1-based line of the first such text.
        line: usize,
    },
    /// A PEM block whose label is not `CERTIFICATE`.
    #[error("PEM block '{label}' is not allowed{}", forbidden_hint(.label))]
    ForbiddenBlock {
        /// The label of the block, as written after `BEGIN`.
        label: String,
    },
    /// PEM structure that cannot be read (no END line, bad base64, ...).
    #[error("malformed PEM: {reason}")]
    MalformedPem {
        /// What is wrong, with its line.
        reason: String,
    },
    /// More `CERTIFICATE` blocks than [`MAX_CERTIFICATES`].
    #[error("the download holds {count} certificates, more than the limit of {limit}")]
    TooManyCertificates {
        /// How many `BEGIN CERTIFICATE` lines the body has.
        count: usize,
        /// [`MAX_CERTIFICATES`].
        limit: usize,
    },
    /// A block (or the DER body) that is not an X.509 certificate.
    #[error("certificate #{} of the download is not X.509", .index + 1)]
    NotCertificate {
        /// 0-based position of the certificate in the body.
        index: usize,
        /// What the parser said.
        #[source]
        source: ParseError,
    },
    /// Neither basicConstraints cA=TRUE nor a self-signed v1 root.
    #[error("certificate '{subject}' is not a CA (no basicConstraints cA=TRUE)")]
    NotCa {
        /// Subject (RFC 4514).
        subject: String,
    },
    /// notBefore is more than [`CLOCK_SKEW`] in the future.
    #[error("certificate '{subject}' is not valid before {}", rfc3339(.not_before))]
    NotYetValid {
        /// Subject (RFC 4514).
        subject: String,
        /// Its notBefore.
        not_before: OffsetDateTime,
    },
    /// notAfter is more than [`CLOCK_SKEW`] in the past.
    #[error("certificate '{subject}' expired at {}", rfc3339(.not_after))]
    Expired {
        /// Subject (RFC 4514).
        subject: String,
        /// Its notAfter.
        not_after: OffsetDateTime,
    },
    /// A key SPEC 6 does not accept: RSA under 2048 bits, EC on another curve than
    /// P-256/P-384/P-521 (or SM2), or another type than RSA, EC and Ed25519.
    #[error(
        "certificate '{subject}' has a weak or unsupported key: {key} (accepted: RSA of at least 2048 bits, EC on P-256, P-384 or P-521, Ed25519, SM2)"
    )]
    WeakKey {
        /// Subject (RFC 4514).
        subject: String,
        /// The key, in words (`RSA 1024 bits`, `EC on secp256k1`).
        key: String,
    },
    /// A signature whose digest is weaker than SHA-256 (MD5, SHA-1, SHA-224), or unknown.
    #[error(
        "certificate '{subject}' is signed with {algorithm}: a digest weaker than SHA-256 or unknown (accepted: SHA-256 or stronger, SM3 with SM2, EdDSA)"
    )]
    WeakDigest {
        /// Subject (RFC 4514).
        subject: String,
        /// The signature algorithm (`md5WithRSAEncryption`, `ecdsa-with-SHA1`).
        algorithm: String,
    },
    /// A self-issued certificate whose own signature does not verify.
    #[error("certificate '{subject}' is self-issued but its signature does not verify")]
    BadSignature {
        /// Subject (RFC 4514).
        subject: String,
    },
    /// Pinning is on and the fingerprint is not in the list.
    #[error("certificate '{subject}' (sha256 {sha256}) is not in pin_sha256")]
    NotPinned {
        /// Subject (RFC 4514).
        subject: String,
        /// Lower-case hex SHA-256 fingerprint.
        sha256: String,
    },
}

impl ValidationError {
    /// Short, stable name of the rule that failed, for metric labels and log fields.
    pub fn rule(&self) -> &'static str {
        match self {
            ValidationError::Empty => "empty",
            ValidationError::TextOutsideBlocks { .. } => "text_outside_pem",
            ValidationError::ForbiddenBlock { .. } => "forbidden_pem_block",
            ValidationError::MalformedPem { .. } => "malformed_pem",
            ValidationError::TooManyCertificates { .. } => "too_many_certificates",
            ValidationError::NotCertificate { .. } => "not_x509",
            ValidationError::NotCa { .. } => "not_ca",
            ValidationError::NotYetValid { .. } => "not_yet_valid",
            ValidationError::Expired { .. } => "expired",
            ValidationError::WeakKey { .. } => "weak_key",
            ValidationError::WeakDigest { .. } => "weak_digest",
            ValidationError::BadSignature { .. } => "bad_signature",
            ValidationError::NotPinned { .. } => "not_pinned",
        }
    }
}

fn forbidden_hint(label: &str) -> &'static str {
    if label.contains("PRIVATE KEY") {
        " (a private key must never be distributed)"
    } else {
        " (only CERTIFICATE blocks are accepted)"
    }
}

fn rfc3339(t: &OffsetDateTime) -> String {
    crate::cert::rfc3339(*t)
}

/// Validates one downloaded body by every rule of SPEC 6 and returns its certificates in
/// order of first appearance, duplicates (same SHA-256) removed.
pub fn validate(body: &[u8], policy: &Policy) -> Result<Vec<Cert>, ValidationError> {
    let ders = split_body(body)?;
    let mut certs: Vec<Cert> = Vec::with_capacity(ders.len());
    for (index, der) in ders.iter().enumerate() {
        let cert = Cert::from_der(der)
            .map_err(|source| ValidationError::NotCertificate { index, source })?;
        if !certs.iter().any(|c| c.sha256 == cert.sha256) {
            certs.push(cert);
        }
    }
    // However the body was split, a download that yields no certificate is never a CA file:
    // accepting it would replace the instance's CAs with nothing.
    if certs.is_empty() {
        return Err(ValidationError::Empty);
    }
    let now = saturating_datetime(policy.now);
    for cert in &certs {
        check(cert, now, policy.pins)?;
    }
    Ok(certs)
}

/// The normalised file content for a set of certificates: each one's PEM (64 columns, `\n`)
/// concatenated, in the given order.
pub fn to_pem(certs: &[Cert]) -> String {
    certs.iter().map(|c| encode_pem(&c.der)).collect()
}

/// A `SystemTime` as an `OffsetDateTime`, saturating at the ends of `time`'s range
/// (`OffsetDateTime::from(SystemTime)` panics beyond year 9999). Public so that every
/// conversion of a clock reading can use it.
pub fn saturating_datetime(now: SystemTime) -> OffsetDateTime {
    let (max, min) = (
        PrimitiveDateTime::MAX.assume_utc(),
        PrimitiveDateTime::MIN.assume_utc(),
    );
    match now.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => time::Duration::try_from(after)
            .ok()
            .and_then(|d| OffsetDateTime::UNIX_EPOCH.checked_add(d))
            .unwrap_or(max),
        Err(before) => time::Duration::try_from(before.duration())
            .ok()
            .and_then(|d| OffsetDateTime::UNIX_EPOCH.checked_sub(d))
            .unwrap_or(min),
    }
}

/// Whether SPEC 6 accepts this key.
fn key_accepted(key: &KeyKind) -> bool {
    match key {
        KeyKind::Rsa { bits } => *bits >= 2048,
        KeyKind::Ec { curve } => matches!(
            curve,
            EcCurve::P256 | EcCurve::P384 | EcCurve::P521 | EcCurve::Sm2
        ),
        KeyKind::Ed25519 => true,
        // Not in SPEC 6's list (and not verifiable here): Ed448, DSA, GOST, unknown.
        KeyKind::Ed448 | KeyKind::Other { .. } => false,
    }
}

/// Whether SPEC 6 accepts this digest: SHA-256 or stronger, SM3 (with SM2), EdDSA's own.
fn digest_accepted(digest: Digest) -> bool {
    match digest {
        Digest::Sha256
        | Digest::Sha384
        | Digest::Sha512
        | Digest::Sha512_256
        | Digest::Sha3_256
        | Digest::Sha3_384
        | Digest::Sha3_512
        | Digest::Sm3
        | Digest::Eddsa => true,
        Digest::Md2
        | Digest::Md4
        | Digest::Md5
        | Digest::Sha1
        | Digest::Sha224
        | Digest::Sha512_224
        | Digest::Sha3_224
        | Digest::Unknown => false,
    }
}

fn check(cert: &Cert, now: OffsetDateTime, pins: &[[u8; 32]]) -> Result<(), ValidationError> {
    if !cert.is_ca() {
        return Err(ValidationError::NotCa {
            subject: cert.subject.clone(),
        });
    }
    // Checked: notBefore - skew before year -9999 cannot lie in the future, and notAfter +
    // skew past `time`'s range (a CA valid until 9999-12-31T23:59:59Z) never expires.
    if cert
        .not_before
        .checked_sub(SKEW)
        .is_some_and(|earliest| now < earliest)
    {
        return Err(ValidationError::NotYetValid {
            subject: cert.subject.clone(),
            not_before: cert.not_before,
        });
    }
    if cert
        .not_after
        .checked_add(SKEW)
        .is_some_and(|latest| now > latest)
    {
        return Err(ValidationError::Expired {
            subject: cert.subject.clone(),
            not_after: cert.not_after,
        });
    }
    // Before the signature: a weak key or digest is its own rule, not a bad signature (ring
    // refuses to verify RSA-1024 or MD5, which would otherwise read as one).
    if !key_accepted(&cert.key) {
        return Err(ValidationError::WeakKey {
            subject: cert.subject.clone(),
            key: cert.key.to_string(),
        });
    }
    if !digest_accepted(cert.signature.digest) {
        return Err(ValidationError::WeakDigest {
            subject: cert.subject.clone(),
            algorithm: cert.signature.name.clone(),
        });
    }
    if cert.self_issued {
        // SM2 cannot be verified here: accepted unchecked (the daemon warns, with the
        // instance and category).
        if !cert.sm2 && cert.self_signature_ok != Some(true) {
            return Err(ValidationError::BadSignature {
                subject: cert.subject.clone(),
            });
        }
    }
    if !pins.is_empty() && !pins.contains(&cert.sha256) {
        return Err(ValidationError::NotPinned {
            subject: cert.subject.clone(),
            sha256: cert.fingerprint(),
        });
    }
    Ok(())
}

/// Splits a body into DER blobs: one DER certificate, or the blocks of a strict PEM file.
fn split_body(body: &[u8]) -> Result<Vec<Vec<u8>>, ValidationError> {
    // After the byte-order mark: a body of only a BOM and whitespace is empty too (found by
    // fuzzing: it passed as a download of no certificates).
    let text = body.strip_prefix(b"\xef\xbb\xbf").unwrap_or(body);
    if text.iter().all(|b| is_space(*b)) {
        return Err(ValidationError::Empty);
    }
    let is_text = looks_like_text(text);
    // A DER certificate is a SEQUENCE (first byte 0x30, which is also ASCII '0') and always
    // holds control bytes in its tags and lengths, so it never passes for text.
    if body[0] == 0x30 && !is_text {
        return Ok(vec![body.to_vec()]);
    }
    if !is_text {
        return Err(ValidationError::NotCertificate {
            index: 0,
            source: ParseError {
                reason: "the body is neither PEM nor DER".into(),
            },
        });
    }
    scan_pem(text)
}

/// Whitespace as PEM readers (and RFC 7468's "lax" parsing) treat it.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// Text has no control bytes other than whitespace; binary data almost always has some.
/// This decides between "text that is not PEM" (an error page) and "bytes that are not a
/// certificate".
fn looks_like_text(data: &[u8]) -> bool {
    data.iter()
        .all(|&b| (b >= 0x20 && b != 0x7f) || is_space(b))
}

fn trim(mut line: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = line {
        if !is_space(*first) {
            break;
        }
        line = rest;
    }
    while let [rest @ .., last] = line {
        if !is_space(*last) {
            break;
        }
        line = rest;
    }
    line
}

const BEGIN: &[u8] = b"-----BEGIN ";
const END: &[u8] = b"-----END ";

/// Reads a strict PEM file.
///
/// The structure is scanned by hand because rustls-pki-types' readers (`pem_slice_iter` and
/// friends) are lenient by design: they silently skip blocks of other types and any text
/// between blocks, and SPEC 6 requires both to reject the download. Only the block structure
/// is ours; each block's base64 is decoded by `CertificateDer::from_pem_slice`.
fn scan_pem(text: &[u8]) -> Result<Vec<Vec<u8>>, ValidationError> {
    let lines = || {
        text.split(|&b| b == b'\n')
            .enumerate()
            .map(|(i, l)| (i + 1, trim(l)))
    };

    // First look at every BEGIN line: a forbidden block (a private key above all) is the most
    // important thing to report, whatever else is wrong with the body.
    // The same scan counts the certificates, so that a body of thousands is refused before
    // one of them is decoded.
    let mut forbidden: Option<String> = None;
    let mut count: usize = 0;
    for (_, line) in lines() {
        if let Some(rest) = line.strip_prefix(BEGIN) {
            let label = String::from_utf8_lossy(trim(trim_dashes(rest))).into_owned();
            if label == "CERTIFICATE" {
                count = count.saturating_add(1);
                continue;
            }
            let is_key = label.contains("PRIVATE KEY");
            match &forbidden {
                Some(first) if !is_key || first.contains("PRIVATE KEY") => {}
                _ => forbidden = Some(label),
            }
        }
    }
    if let Some(label) = forbidden {
        return Err(ValidationError::ForbiddenBlock { label });
    }
    if count > MAX_CERTIFICATES {
        return Err(ValidationError::TooManyCertificates {
            count,
            limit: MAX_CERTIFICATES,
        });
    }

    let malformed = |reason: String| ValidationError::MalformedPem { reason };
    let mut ders = Vec::new();
    // (line of BEGIN, base64 collected so far) while inside a block
    let mut block: Option<(usize, Vec<u8>)> = None;
    for (n, line) in lines() {
        match &mut block {
            None => {
                if line.is_empty() {
                    continue;
                }
                if line.starts_with(BEGIN) {
                    if line != b"-----BEGIN CERTIFICATE-----" {
                        return Err(malformed(format!("line {n}: malformed BEGIN line")));
                    }
                    block = Some((n, Vec::new()));
                } else if line.starts_with(END) {
                    return Err(malformed(format!("line {n}: END line without BEGIN")));
                } else {
                    return Err(ValidationError::TextOutsideBlocks { line: n });
                }
            }
            Some((start, b64)) => {
                if line == b"-----END CERTIFICATE-----" {
                    let start = *start;
                    let mut canonical = b"-----BEGIN CERTIFICATE-----\n".to_vec();
                    canonical.extend_from_slice(b64);
                    canonical.extend_from_slice(b"\n-----END CERTIFICATE-----\n");
                    let der = CertificateDer::from_pem_slice(&canonical)
                        .map_err(|e| malformed(format!("block starting at line {start}: {e}")))?;
                    ders.push(der.as_ref().to_vec());
                    block = None;
                } else if line.starts_with(END) {
                    return Err(malformed(format!(
                        "line {n}: END line does not match the BEGIN CERTIFICATE of line {start}"
                    )));
                } else if line.starts_with(BEGIN) {
                    return Err(malformed(format!(
                        "line {n}: BEGIN line inside the block starting at line {start}"
                    )));
                } else if line.starts_with(b"-----") {
                    return Err(malformed(format!("line {n}: unexpected '-----' line")));
                } else {
                    b64.extend_from_slice(line);
                }
            }
        }
    }
    if let Some((start, _)) = block {
        return Err(malformed(format!(
            "the block starting at line {start} has no END line"
        )));
    }
    Ok(ders)
}

fn trim_dashes(mut s: &[u8]) -> &[u8] {
    s = trim(s);
    while let Some(rest) = s.strip_suffix(b"-") {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_names_are_distinct() {
        let errors = [
            ValidationError::Empty,
            ValidationError::TextOutsideBlocks { line: 1 },
            ValidationError::ForbiddenBlock { label: "X".into() },
            ValidationError::MalformedPem { reason: "x".into() },
            ValidationError::TooManyCertificates {
                count: 17,
                limit: MAX_CERTIFICATES,
            },
            ValidationError::NotCertificate {
                index: 0,
                source: ParseError { reason: "x".into() },
            },
            ValidationError::NotCa {
                subject: "x".into(),
            },
            ValidationError::NotYetValid {
                subject: "x".into(),
                not_before: OffsetDateTime::UNIX_EPOCH,
            },
            ValidationError::Expired {
                subject: "x".into(),
                not_after: OffsetDateTime::UNIX_EPOCH,
            },
            ValidationError::WeakKey {
                subject: "x".into(),
                key: "RSA 1024 bits".into(),
            },
            ValidationError::WeakDigest {
                subject: "x".into(),
                algorithm: "md5WithRSAEncryption".into(),
            },
            ValidationError::BadSignature {
                subject: "x".into(),
            },
            ValidationError::NotPinned {
                subject: "x".into(),
                sha256: "00".into(),
            },
        ];
        let mut rules: Vec<&str> = errors.iter().map(|e| e.rule()).collect();
        rules.sort();
        rules.dedup();
        assert_eq!(rules.len(), errors.len());
    }

    #[test]
    fn the_skew_constants_agree() {
        assert_eq!(time::Duration::try_from(CLOCK_SKEW).unwrap(), SKEW);
    }

    #[test]
    fn a_clock_outside_times_range_saturates_instead_of_panicking() {
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(400_000 * 365 * 86_400);
        assert_eq!(
            saturating_datetime(far),
            PrimitiveDateTime::MAX.assume_utc()
        );
        if let Some(early) =
            SystemTime::UNIX_EPOCH.checked_sub(Duration::from_secs(400_000 * 365 * 86_400))
        {
            assert_eq!(
                saturating_datetime(early),
                PrimitiveDateTime::MIN.assume_utc()
            );
        }
        assert_eq!(
            saturating_datetime(SystemTime::UNIX_EPOCH + Duration::from_secs(86_400)),
            OffsetDateTime::UNIX_EPOCH + time::Duration::days(1)
        );
    }

    #[test]
    fn structure_errors() {
        assert!(matches!(
            split_body(b" \r\n\t"),
            Err(ValidationError::Empty)
        ));
        assert!(matches!(split_body(b""), Err(ValidationError::Empty)));
        assert!(matches!(
            split_body(b"\n\n<html>"),
            Err(ValidationError::TextOutsideBlocks { line: 3 })
        ));
        assert!(matches!(
            split_body(b"-----BEGIN CERTIFICATE-----\nAAAA\n"),
            Err(ValidationError::MalformedPem { .. })
        ));
        assert!(matches!(
            split_body(b"-----END CERTIFICATE-----\n"),
            Err(ValidationError::MalformedPem { .. })
        ));
        assert!(matches!(
            split_body(b"-----BEGIN CERTIFICATE-----\nA*A\n-----END CERTIFICATE-----\n"),
            Err(ValidationError::MalformedPem { .. })
        ));
        assert!(matches!(
            split_body(b"0 results\n"),
            Err(ValidationError::TextOutsideBlocks { line: 1 })
        ));
        assert!(matches!(
            split_body(b"\x01\x02\x03"),
            Err(ValidationError::NotCertificate { index: 0, .. })
        ));
    }

    #[test]
    fn private_key_is_reported_before_other_forbidden_blocks() {
        let body = b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n\
                     -----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n";
        match split_body(body) {
            Err(ValidationError::ForbiddenBlock { label }) => assert_eq!(label, "EC PRIVATE KEY"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn forbidden_message_mentions_private_keys() {
        let e = ValidationError::ForbiddenBlock {
            label: "PRIVATE KEY".into(),
        };
        assert_eq!(
            e.to_string(),
            "PEM block 'PRIVATE KEY' is not allowed (a private key must never be distributed)"
        );
    }
}
