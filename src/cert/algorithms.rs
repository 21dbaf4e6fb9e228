//! What a certificate's key and signature algorithm are, in the terms policy needs.
//!
//! Owns: [`KeyKind`], [`EcCurve`], [`Digest`] and [`SignatureKind`], and reading them from a
//! SubjectPublicKeyInfo and an AlgorithmIdentifier by OID (RSA modulus size, EC named curve,
//! RSASSA-PSS hash). Must not: judge them (which keys and digests are weak is `validate`'s),
//! or parse the certificate around them (that is `cert`).

use std::fmt;

use x509_parser::prelude::{FromDer, SubjectPublicKeyInfo};
use x509_parser::signature_algorithm::SignatureAlgorithm as ParsedSignatureAlgorithm;

use super::OID_SM2_SM3;

/// What the subject public key is, as far as policy needs to know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// RSA (rsaEncryption or RSASSA-PSS keys) with a modulus of this many bits.
    Rsa {
        /// Bit length of the modulus (leading zero bits not counted).
        bits: u32,
    },
    /// An elliptic-curve key (id-ecPublicKey) on this curve.
    Ec {
        /// The named curve of the key's parameters.
        curve: EcCurve,
    },
    /// Ed25519.
    Ed25519,
    /// Ed448.
    Ed448,
    /// Anything else (DSA, GOST, an unknown algorithm): the algorithm's name or OID.
    Other {
        /// A readable name of the algorithm, or its dotted OID.
        algorithm: String,
    },
}

/// The named curve of an EC key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EcCurve {
    /// NIST P-256 (prime256v1).
    P256,
    /// NIST P-384 (secp384r1).
    P384,
    /// NIST P-521 (secp521r1).
    P521,
    /// The Chinese SM2 curve (1.2.156.10197.1.301).
    Sm2,
    /// Another curve (or explicit parameters): a readable name, or the dotted OID.
    Other(String),
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyKind::Rsa { bits } => write!(f, "RSA {bits} bits"),
            KeyKind::Ec { curve } => write!(f, "EC on {curve}"),
            KeyKind::Ed25519 => f.write_str("Ed25519"),
            KeyKind::Ed448 => f.write_str("Ed448"),
            KeyKind::Other { algorithm } => write!(f, "{algorithm}"),
        }
    }
}

impl fmt::Display for EcCurve {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EcCurve::P256 => f.write_str("P-256"),
            EcCurve::P384 => f.write_str("P-384"),
            EcCurve::P521 => f.write_str("P-521"),
            EcCurve::Sm2 => f.write_str("SM2"),
            EcCurve::Other(name) => f.write_str(name),
        }
    }
}

/// The digest a signature algorithm hashes the certificate with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Digest {
    /// MD2 (broken).
    Md2,
    /// MD4 (broken).
    Md4,
    /// MD5 (broken).
    Md5,
    /// SHA-1 (weak: SPEC 6).
    Sha1,
    /// SHA-224.
    Sha224,
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
    /// SHA-512/224.
    Sha512_224,
    /// SHA-512/256.
    Sha512_256,
    /// SHA3-224.
    Sha3_224,
    /// SHA3-256.
    Sha3_256,
    /// SHA3-384.
    Sha3_384,
    /// SHA3-512.
    Sha3_512,
    /// SM3 (256 bits), with SM2.
    Sm3,
    /// EdDSA (Ed25519, Ed448): the hash is part of the scheme (SHA-512, SHAKE256).
    Eddsa,
    /// A signature algorithm this code does not know.
    Unknown,
}

/// The signature algorithm of a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureKind {
    /// A readable name (`sha256WithRSAEncryption`, `ecdsa-with-SHA1`, `RSASSA-PSS with SHA-1`),
    /// or the dotted OID when unknown.
    pub name: String,
    /// The digest it signs.
    pub digest: Digest,
}

/// The key kind of a SubjectPublicKeyInfo, by its algorithm OID and (for EC) named curve.
pub(super) fn key_kind(spki: &SubjectPublicKeyInfo<'_>) -> KeyKind {
    let algorithm = spki.algorithm.algorithm.to_id_string();
    match algorithm.as_str() {
        // rsaEncryption, id-RSASSA-PSS: both hold an RSAPublicKey.
        "1.2.840.113549.1.1.1" | "1.2.840.113549.1.1.10" => {
            match x509_parser::public_key::RSAPublicKey::from_der(&spki.subject_public_key.data) {
                Ok((_, rsa)) => KeyKind::Rsa {
                    bits: bit_length(rsa.modulus),
                },
                Err(_) => KeyKind::Other {
                    algorithm: "RSA (unreadable key)".into(),
                },
            }
        }
        "1.2.840.10045.2.1" => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|oid| oid.to_id_string());
            KeyKind::Ec {
                curve: match curve.as_deref() {
                    Some("1.2.840.10045.3.1.7") => EcCurve::P256,
                    Some("1.3.132.0.34") => EcCurve::P384,
                    Some("1.3.132.0.35") => EcCurve::P521,
                    Some(OID_SM2_CURVE) => EcCurve::Sm2,
                    Some("1.3.132.0.10") => EcCurve::Other("secp256k1".into()),
                    Some("1.2.840.10045.3.1.1") => EcCurve::Other("P-192".into()),
                    Some("1.3.132.0.33") => EcCurve::Other("P-224".into()),
                    Some(other) => EcCurve::Other(format!("curve {other}")),
                    None => EcCurve::Other("explicit (unnamed) curve parameters".into()),
                },
            }
        }
        OID_SM2_CURVE => KeyKind::Ec {
            curve: EcCurve::Sm2,
        },
        "1.3.101.112" => KeyKind::Ed25519,
        "1.3.101.113" => KeyKind::Ed448,
        "1.2.840.10040.4.1" => KeyKind::Other {
            algorithm: "DSA".into(),
        },
        other => KeyKind::Other {
            algorithm: format!("key algorithm {other}"),
        },
    }
}

/// OID of the SM2 curve (also used as a key algorithm by some issuers).
const OID_SM2_CURVE: &str = "1.2.156.10197.1.301";

/// Bits of a big-endian unsigned integer, leading zeros not counted. Hand-written because
/// x509-parser's `key_size` counts bytes and gives 0 for a modulus without its sign byte.
fn bit_length(be: &[u8]) -> u32 {
    let start = be.iter().position(|&b| b != 0).unwrap_or(be.len());
    let digits = &be[start..];
    match digits.first() {
        None => 0,
        Some(&top) => {
            let len = u32::try_from(digits.len()).unwrap_or(u32::MAX / 8);
            len.saturating_sub(1)
                .saturating_mul(8)
                .saturating_add(8 - top.leading_zeros())
        }
    }
}

/// The signature algorithm by its OID (RSASSA-PSS: by the hash of its parameters).
pub(super) fn signature_kind(alg: &x509_parser::x509::AlgorithmIdentifier<'_>) -> SignatureKind {
    let oid = alg.algorithm.to_id_string();
    let known = |name: &str, digest: Digest| SignatureKind {
        name: name.to_string(),
        digest,
    };
    match oid.as_str() {
        "1.2.840.113549.1.1.2" => known("md2WithRSAEncryption", Digest::Md2),
        "1.2.840.113549.1.1.3" => known("md4WithRSAEncryption", Digest::Md4),
        "1.2.840.113549.1.1.4" => known("md5WithRSAEncryption", Digest::Md5),
        "1.3.14.3.2.25" => known("md5WithRSASignature", Digest::Md5),
        "1.2.840.113549.1.1.5" | "1.3.14.3.2.29" => known("sha1WithRSAEncryption", Digest::Sha1),
        "1.2.840.113549.1.1.14" => known("sha224WithRSAEncryption", Digest::Sha224),
        "1.2.840.113549.1.1.11" => known("sha256WithRSAEncryption", Digest::Sha256),
        "1.2.840.113549.1.1.12" => known("sha384WithRSAEncryption", Digest::Sha384),
        "1.2.840.113549.1.1.13" => known("sha512WithRSAEncryption", Digest::Sha512),
        "1.2.840.113549.1.1.15" => known("sha512-224WithRSAEncryption", Digest::Sha512_224),
        "1.2.840.113549.1.1.16" => known("sha512-256WithRSAEncryption", Digest::Sha512_256),
        "2.16.840.1.101.3.4.3.13" => known("RSA with SHA3-224", Digest::Sha3_224),
        "2.16.840.1.101.3.4.3.14" => known("RSA with SHA3-256", Digest::Sha3_256),
        "2.16.840.1.101.3.4.3.15" => known("RSA with SHA3-384", Digest::Sha3_384),
        "2.16.840.1.101.3.4.3.16" => known("RSA with SHA3-512", Digest::Sha3_512),
        "1.2.840.10045.4.1" => known("ecdsa-with-SHA1", Digest::Sha1),
        "1.2.840.10045.4.3.1" => known("ecdsa-with-SHA224", Digest::Sha224),
        "1.2.840.10045.4.3.2" => known("ecdsa-with-SHA256", Digest::Sha256),
        "1.2.840.10045.4.3.3" => known("ecdsa-with-SHA384", Digest::Sha384),
        "1.2.840.10045.4.3.4" => known("ecdsa-with-SHA512", Digest::Sha512),
        "2.16.840.1.101.3.4.3.9" => known("ecdsa-with-SHA3-224", Digest::Sha3_224),
        "2.16.840.1.101.3.4.3.10" => known("ecdsa-with-SHA3-256", Digest::Sha3_256),
        "2.16.840.1.101.3.4.3.11" => known("ecdsa-with-SHA3-384", Digest::Sha3_384),
        "2.16.840.1.101.3.4.3.12" => known("ecdsa-with-SHA3-512", Digest::Sha3_512),
        "1.2.840.10040.4.3" => known("dsa-with-SHA1", Digest::Sha1),
        "2.16.840.1.101.3.4.3.1" => known("dsa-with-SHA224", Digest::Sha224),
        "2.16.840.1.101.3.4.3.2" => known("dsa-with-SHA256", Digest::Sha256),
        "1.3.101.112" => known("Ed25519", Digest::Eddsa),
        "1.3.101.113" => known("Ed448", Digest::Eddsa),
        OID_SM2_SM3 => known("SM2-with-SM3", Digest::Sm3),
        "1.2.840.113549.1.1.10" => {
            // RSASSA-PSS names its hash in the parameters; absent means SHA-1 (RFC 4055).
            let hash = match ParsedSignatureAlgorithm::try_from(alg) {
                Ok(ParsedSignatureAlgorithm::RSASSA_PSS(params)) => {
                    Some(params.hash_algorithm_oid().to_id_string())
                }
                _ => None,
            };
            let (label, digest) = match hash.as_deref() {
                Some("1.3.14.3.2.26") => ("SHA-1", Digest::Sha1),
                Some("2.16.840.1.101.3.4.2.4") => ("SHA-224", Digest::Sha224),
                Some("2.16.840.1.101.3.4.2.1") => ("SHA-256", Digest::Sha256),
                Some("2.16.840.1.101.3.4.2.2") => ("SHA-384", Digest::Sha384),
                Some("2.16.840.1.101.3.4.2.3") => ("SHA-512", Digest::Sha512),
                Some("2.16.840.1.101.3.4.2.5") => ("SHA-512/224", Digest::Sha512_224),
                Some("2.16.840.1.101.3.4.2.6") => ("SHA-512/256", Digest::Sha512_256),
                Some("2.16.840.1.101.3.4.2.7") => ("SHA3-224", Digest::Sha3_224),
                Some("2.16.840.1.101.3.4.2.8") => ("SHA3-256", Digest::Sha3_256),
                Some("2.16.840.1.101.3.4.2.9") => ("SHA3-384", Digest::Sha3_384),
                Some("2.16.840.1.101.3.4.2.10") => ("SHA3-512", Digest::Sha3_512),
                Some("1.2.840.113549.2.5") => ("MD5", Digest::Md5),
                _ => ("an unknown hash", Digest::Unknown),
            };
            SignatureKind {
                name: format!("RSASSA-PSS with {label}"),
                digest,
            }
        }
        other => SignatureKind {
            name: format!("signature algorithm {other}"),
            digest: Digest::Unknown,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_length_ignores_leading_zeros() {
        assert_eq!(bit_length(&[]), 0);
        assert_eq!(bit_length(&[0, 0]), 0);
        assert_eq!(bit_length(&[0x01]), 1);
        // A 1024-bit modulus with and without its DER sign byte.
        let mut modulus = vec![0x80u8];
        modulus.extend([0u8; 127]);
        assert_eq!(bit_length(&modulus), 1024);
        modulus.insert(0, 0);
        assert_eq!(bit_length(&modulus), 1024);
        assert_eq!(bit_length(&[0x00, 0x7f, 0xff]), 15);
    }
}
