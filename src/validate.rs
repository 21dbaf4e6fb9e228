//! Validation of one downloaded CA body (SPEC 6).
//!
//! Owns: splitting a body into certificates (strict PEM, or one DER certificate, at most
//! [`MAX_CERTIFICATES`]), the CA, validity, key, digest, self-signature and pin rules,
//! deduplication, and the normalised PEM output that makes two downloads of the same CAs
//! byte-identical. Every time X.509 can express (up to `99991231235959Z`, RFC 5280's "no
//! well-defined expiration") is handled: the date arithmetic is checked, never panics.
//!
//! This module holds the entry point ([`validate`]), its inputs and its error; `body` splits
//! the body into DER certificates (the PEM scan and the count limit) and `rules` applies the
//! per-certificate rules. Their public items are re-exported here.
//!
//! Must not: do I/O, know about instances, categories or URLs (callers add that context to a
//! rejection), or write anything anywhere. It is pure: the clock comes in through [`Policy`].

mod body;
mod rules;

use std::time::{Duration, SystemTime};

use time::{OffsetDateTime, PrimitiveDateTime};

use crate::cert::{Cert, ParseError, encode_pem};

pub use body::MAX_CERTIFICATES;

/// How far the local clock may be off from the issuer's: a certificate is accepted from
/// `notBefore - CLOCK_SKEW` until `notAfter + CLOCK_SKEW`.
pub const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// [`CLOCK_SKEW`] for `time` arithmetic.
const SKEW: time::Duration = time::Duration::seconds(5 * 60);

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
        /// The PEM decoder's error, when it was the decoder that refused a block (its text is
        /// also in `reason`).
        #[source]
        source: Option<rustls_pki_types::pem::Error>,
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
    validate_remembering(body, policy, &VerifiedSignatures::default())
}

/// Self-signatures already verified, by the certificate's SHA-256: the same bytes verify the
/// same way, so a CA downloaded again at every pass while it is in use is verified once (a
/// signature check costs more than the rest of validation together; an unchanged pass over
/// 10,000 instances spent a fifth of its time on them). Only successes are remembered; at
/// most [`VerifiedSignatures::CAPACITY`] of them, then it starts again.
#[derive(Debug, Default)]
pub struct VerifiedSignatures(std::sync::Mutex<std::collections::HashSet<[u8; 32]>>);

impl VerifiedSignatures {
    /// The most fingerprints remembered (2 MiB).
    pub const CAPACITY: usize = 65_536;

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<[u8; 32]>> {
        // A set of fingerprints: a panic elsewhere cannot leave it half-written.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `cert`'s self-signature verifies, remembered by fingerprint once it did.
    pub(crate) fn self_signature_ok(&self, cert: &Cert) -> bool {
        if self.lock().contains(&cert.sha256) {
            return true;
        }
        let ok = cert.self_signature_ok() == Some(true);
        if ok {
            let mut known = self.lock();
            if known.len() >= Self::CAPACITY {
                known.clear();
            }
            known.insert(cert.sha256);
        }
        ok
    }

    /// How many are remembered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// [`validate`], remembering verified self-signatures in `verified` (the daemon keeps one
/// across passes).
pub fn validate_remembering(
    body: &[u8],
    policy: &Policy,
    verified: &VerifiedSignatures,
) -> Result<Vec<Cert>, ValidationError> {
    let ders = body::split_body(body)?;
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
        rules::check(cert, now, policy.pins, verified)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verified_self_signature_is_remembered_and_a_bad_one_never_is() {
        let policy = Policy {
            now: SystemTime::now(),
            pins: &[],
        };
        let verified = VerifiedSignatures::default();
        let good = crate::cert::testing::self_signed_ca_der("remembered CA");
        for _ in 0..2 {
            assert_eq!(
                validate_remembering(&good, &policy, &verified)
                    .unwrap()
                    .len(),
                1
            );
            assert_eq!(verified.len(), 1);
        }
        // The same certificate with one bit of its signature flipped: another fingerprint,
        // checked on its own, refused every time and never remembered.
        let mut bad = good.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        for _ in 0..2 {
            assert!(matches!(
                validate_remembering(&bad, &policy, &verified),
                Err(ValidationError::BadSignature { .. })
            ));
        }
        assert_eq!(verified.len(), 1);
    }

    #[test]
    fn rule_names_are_distinct() {
        let errors = [
            ValidationError::Empty,
            ValidationError::TextOutsideBlocks { line: 1 },
            ValidationError::ForbiddenBlock { label: "X".into() },
            ValidationError::MalformedPem {
                reason: "x".into(),
                source: None,
            },
            ValidationError::TooManyCertificates {
                count: 17,
                limit: MAX_CERTIFICATES,
            },
            ValidationError::NotCertificate {
                index: 0,
                source: ParseError::plain("x"),
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
