//! The rules SPEC 6 applies to each certificate of a download, once it is parsed.
//!
//! Owns: the CA rule, validity with [`CLOCK_SKEW`](super::CLOCK_SKEW), the accepted keys and
//! digests, the self-signature and the pins, in the order their rejections are reported (a
//! weak key or digest before a bad signature). Must not: split or parse the body (`body`
//! and `cert` do), or look at more than one certificate at a time.

use time::OffsetDateTime;

use super::{SKEW, ValidationError};
use crate::cert::{Cert, Digest, EcCurve, KeyKind};

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

pub(super) fn check(
    cert: &Cert,
    now: OffsetDateTime,
    pins: &[[u8; 32]],
    verified: &super::VerifiedSignatures,
) -> Result<(), ValidationError> {
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
        if !cert.sm2 && !verified.self_signature_ok(cert) {
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
