//! One parsed X.509 certificate and the facts certsync needs about it.
//!
//! Owns: DER parsing into [`Cert`], the SHA-256 fingerprint, OpenSSL's subject hash and the
//! normalised PEM encoding, and the facts policy needs about the key and the signature
//! algorithm. It applies no policy (that is `validate`: which keys and digests are weak) and
//! does no I/O. Times are normalised to UTC and never leave what X.509 can express
//! (0000-01-01 to 9999-12-31T23:59:59Z), so no caller meets a time it cannot format.

use std::fmt;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use time::{OffsetDateTime, UtcOffset};
use x509_parser::asn1_rs;
use x509_parser::prelude::{FromDer, SubjectPublicKeyInfo, X509Certificate, X509Error};
use x509_parser::signature_algorithm::SignatureAlgorithm as ParsedSignatureAlgorithm;

/// OID of the SM2-with-SM3 signature algorithm (1.2.156.10197.1.501), used by China's
/// "national" certificates. The X.509 library cannot verify it.
pub const OID_SM2_SM3: &str = "1.2.156.10197.1.501";

/// A parsed certificate: its DER and the facts read from it.
#[derive(Clone, PartialEq, Eq)]
pub struct Cert {
    /// The certificate exactly as received (DER).
    pub der: Vec<u8>,
    /// SHA-256 of `der`.
    pub sha256: [u8; 32],
    /// Subject in RFC 4514 form.
    pub subject: String,
    /// Issuer in RFC 4514 form.
    pub issuer: String,
    /// Serial number as colon-separated lower-case hex.
    pub serial: String,
    /// Start of validity (UTC).
    pub not_before: OffsetDateTime,
    /// End of validity (UTC).
    pub not_after: OffsetDateTime,
    /// `X509_NAME_hash` of the subject, as `openssl x509 -subject_hash` prints it.
    pub subject_hash: u32,
    /// basicConstraints cA=TRUE.
    pub basic_ca: bool,
    /// X.509 version 1 (no extensions at all).
    pub is_v1: bool,
    /// Subject and issuer names are byte-identical.
    pub self_issued: bool,
    /// Signature algorithm is SM2 (cannot be verified here; Java cannot read it).
    pub sm2: bool,
    /// The self-signature verified (only meaningful when `self_issued`; `None` when it could not
    /// be checked, as for SM2).
    pub self_signature_ok: Option<bool>,
    /// The subject public key: its type and size or curve.
    pub key: KeyKind,
    /// The algorithm the certificate is signed with (the outer `signatureAlgorithm`, the one
    /// the signature value was made with).
    pub signature: SignatureKind,
}

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
    Md2,
    Md4,
    Md5,
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
    /// SHA-512/224.
    Sha512_224,
    /// SHA-512/256.
    Sha512_256,
    Sha3_224,
    Sha3_256,
    Sha3_384,
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

/// A DER blob that is not an X.509 certificate.
#[derive(Debug, thiserror::Error)]
#[error("not an X.509 certificate: {reason}")]
pub struct ParseError {
    /// What the parser said.
    pub reason: String,
}

impl Cert {
    /// Parses one DER certificate. Trailing bytes after the certificate are an error.
    pub fn from_der(der: &[u8]) -> Result<Cert, ParseError> {
        let (rest, x) = X509Certificate::from_der(der).map_err(|e| ParseError {
            reason: describe_parse_error(der, &e),
        })?;
        if !rest.is_empty() {
            return Err(ParseError {
                reason: format!("{} bytes after the certificate", rest.len()),
            });
        }
        let der = der[..der.len() - rest.len()].to_vec();
        let sha256 = sha256(&der);
        let subject_raw = x.subject().as_raw();
        let subject_hash = subject_hash(subject_raw).map_err(|reason| ParseError {
            reason: format!("subject name: {reason}"),
        })?;
        let basic_ca = match x.basic_constraints() {
            Ok(Some(bc)) => bc.value.ca,
            Ok(None) => false,
            Err(e) => {
                return Err(ParseError {
                    reason: format!("basicConstraints: {e}"),
                });
            }
        };
        let not_before = utc(x.validity().not_before.to_datetime(), "notBefore")?;
        let not_after = utc(x.validity().not_after.to_datetime(), "notAfter")?;
        let sm2 = x.signature_algorithm.algorithm.to_id_string() == OID_SM2_SM3;
        let self_issued = subject_raw == x.issuer().as_raw();
        let self_signature_ok = if self_issued && !sm2 {
            Some(x.verify_signature(None).is_ok())
        } else {
            None
        };
        Ok(Cert {
            sha256,
            subject: x.subject().to_string(),
            issuer: x.issuer().to_string(),
            serial: x.raw_serial_as_string(),
            not_before,
            not_after,
            subject_hash,
            basic_ca,
            is_v1: x.version().0 == 0,
            self_issued,
            sm2,
            self_signature_ok,
            key: key_kind(x.public_key()),
            signature: signature_kind(&x.signature_algorithm),
            der,
        })
    }

    /// Lower-case hex SHA-256 fingerprint.
    pub fn fingerprint(&self) -> String {
        hex::encode(self.sha256)
    }

    /// The subject hash as OpenSSL prints it: 8 lower-case hex digits.
    pub fn subject_hash_hex(&self) -> String {
        format!("{:08x}", self.subject_hash)
    }

    /// A CA by the rule of SPEC 6: basicConstraints cA=TRUE, or a self-signed v1 root.
    pub fn is_ca(&self) -> bool {
        self.basic_ca || (self.is_v1 && self.self_issued)
    }

    /// `-----BEGIN CERTIFICATE-----`, base64 of the DER in 64-column lines, `\n` endings.
    pub fn to_pem(&self) -> String {
        encode_pem(&self.der)
    }
}

impl fmt::Debug for Cert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cert")
            .field("subject", &self.subject)
            .field("sha256", &self.fingerprint())
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// RFC 3339 text of a time in UTC (`2034-05-01T00:00:00Z`). Years outside 0..=9999 cannot be
/// written so; a [`Cert`]'s times never are, but this falls back rather than fail.
pub fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.checked_to_offset(UtcOffset::UTC).unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// A validity time in UTC. X.509 writes times in UTC (`Z`), but the parser also accepts an
/// offset, which can move a time past 9999-12-31T23:59:59Z (or before year 0): such a time is
/// refused here, so every `Cert` time can be formatted, stored in the manifest and compared
/// without overflow.
fn utc(t: OffsetDateTime, field: &str) -> Result<OffsetDateTime, ParseError> {
    t.checked_to_offset(UtcOffset::UTC)
        .filter(|t| (0..=9999).contains(&t.year()))
        .ok_or_else(|| ParseError {
            reason: format!(
                "{field} {t} is outside what X.509 can express (0000-01-01 to 9999-12-31T23:59:59Z)"
            ),
        })
}

/// A plain sentence for why `der` did not parse as a certificate (the parser's own `Debug`
/// forms, `Der(UnexpectedTag { .. })`, mean nothing to an operator).
fn describe_parse_error(der: &[u8], e: &x509_parser::nom::Err<X509Error>) -> String {
    use asn1_rs::Error as Ber;
    if der.first() != Some(&0x30) {
        return "the data does not start with a DER SEQUENCE, as every certificate does".into();
    }
    let e = match e {
        x509_parser::nom::Err::Incomplete(_) => {
            return "the data ends before the certificate does (truncated?)".into();
        }
        x509_parser::nom::Err::Error(e) | x509_parser::nom::Err::Failure(e) => e,
    };
    match e {
        X509Error::Der(ber) => match ber {
            Ber::Incomplete(_) | Ber::NomError(x509_parser::nom::error::ErrorKind::Eof) => {
                "the data ends before the certificate does (truncated?)".into()
            }
            Ber::UnexpectedTag { actual, .. } => format!(
                "malformed DER: an element of the wrong type (ASN.1 tag {}) where the certificate structure needs another",
                actual.0
            ),
            Ber::InvalidLength => "malformed DER: a length that does not fit".into(),
            Ber::InvalidDateTime => "a validity time that is not a valid date".into(),
            Ber::DerConstraintFailed(_) => {
                "not DER: an encoding DER does not allow (BER, non-minimal lengths)".into()
            }
            other => format!("malformed DER: {other}"),
        },
        X509Error::NomError(_) => "malformed DER".into(),
        other => other.to_string(),
    }
}

/// The key kind of a SubjectPublicKeyInfo, by its algorithm OID and (for EC) named curve.
fn key_kind(spki: &SubjectPublicKeyInfo<'_>) -> KeyKind {
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
fn signature_kind(alg: &x509_parser::x509::AlgorithmIdentifier<'_>) -> SignatureKind {
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

/// SHA-256 of `data`, from ring (the digest TLS and request signing use too, so the binary
/// carries one SHA-256).
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0; 32];
    // ring's SHA-256 digest is always SHA256_OUTPUT_LEN (32) bytes: this copy cannot fail.
    out.copy_from_slice(digest.as_ref());
    out
}

/// Normalised PEM of one DER certificate: `-----BEGIN CERTIFICATE-----`, the base64 in
/// 64-column lines, `\n` endings (RFC 7468's strict form, as `openssl x509` writes it). This
/// layout is what makes identical CAs give byte-identical files, so it must never change.
/// `der` is a parsed certificate's, so never empty.
pub fn encode_pem(der: &[u8]) -> String {
    // The only failures are an invalid label (this one is valid) and a length overflowing
    // usize, which no allocated DER can reach (4/3 of isize::MAX fits): unreachable.
    pem_rfc7468::encode_string("CERTIFICATE", pem_rfc7468::LineEnding::LF, der)
        .expect("a valid label and a DER that fits in memory always encode")
}

/// Reads every certificate of a file that certsync wrote itself (normalised PEM), or any
/// PEM/DER file for `inspect`: PEM `CERTIFICATE` blocks when the data looks like PEM, else one
/// DER certificate. Other PEM blocks are skipped here; `validate` is the strict reader.
pub fn read_certs_lenient(data: &[u8]) -> Result<Vec<Cert>, ParseError> {
    if looks_like_pem(data) {
        let mut out = Vec::new();
        for (index, item) in CertificateDer::pem_slice_iter(data).enumerate() {
            let block = index + 1;
            let der = item.map_err(|e| ParseError {
                reason: format!("PEM: {}", describe_pem_error(&e)),
            })?;
            let cert = Cert::from_der(&der).map_err(|e| ParseError {
                reason: format!("CERTIFICATE block {block}: {}", e.reason),
            })?;
            out.push(cert);
        }
        if out.is_empty() {
            return Err(ParseError {
                reason: "no CERTIFICATE block".into(),
            });
        }
        Ok(out)
    } else {
        Ok(vec![Cert::from_der(data)?])
    }
}

/// A PEM reader's error in words (its `Display` shows the END marker as a byte array).
fn describe_pem_error(e: &rustls_pki_types::pem::Error) -> String {
    use rustls_pki_types::pem::Error;
    match e {
        Error::MissingSectionEnd { .. } => "a block has no END line".into(),
        Error::IllegalSectionStart { .. } => "a malformed BEGIN line".into(),
        Error::Base64Decode(_) => "a block that is not valid base64".into(),
        other => other.to_string(),
    }
}

/// True when the data contains a PEM begin line.
pub fn looks_like_pem(data: &[u8]) -> bool {
    data.windows(11).any(|w| w == b"-----BEGIN ")
}

/// OpenSSL's `X509_NAME_hash` (the hash behind `-subject_hash` and `-CApath` file names):
/// the first four bytes, little-endian, of SHA-1 over the name's canonical encoding.
///
/// The canonical encoding (OpenSSL `x509_name_canon`) is the concatenation of each RDN's SET,
/// without the outer SEQUENCE, where every string value of a "canonicalisable" type is converted
/// to UTF-8, stripped of leading/trailing whitespace, internal whitespace runs collapsed to one
/// space, ASCII lower-cased, and re-tagged as UTF8String. Written by hand (with a tiny DER walker)
/// because no maintained crate exposes it and we need the raw TLV bytes of each value.
pub fn subject_hash(name_der: &[u8]) -> Result<u32, String> {
    let canon = canonical_name(name_der)?;
    let digest = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &canon);
    let d = digest.as_ref();
    Ok(u32::from_le_bytes([d[0], d[1], d[2], d[3]]))
}

fn canonical_name(name_der: &[u8]) -> Result<Vec<u8>, String> {
    let (name, rest) = Tlv::read(name_der)?;
    if name.tag != 0x30 || !rest.is_empty() {
        return Err("Name is not one SEQUENCE".into());
    }
    let mut out = Vec::new();
    let mut rdns = name.content;
    while !rdns.is_empty() {
        let (set, next) = Tlv::read(rdns)?;
        rdns = next;
        if set.tag != 0x31 {
            return Err("RDN is not a SET".into());
        }
        let mut avas: Vec<Vec<u8>> = Vec::new();
        let mut items = set.content;
        while !items.is_empty() {
            let (ava, next) = Tlv::read(items)?;
            items = next;
            if ava.tag != 0x30 {
                return Err("AttributeTypeAndValue is not a SEQUENCE".into());
            }
            let (oid, after_oid) = Tlv::read(ava.content)?;
            let (value, after_value) = Tlv::read(after_oid)?;
            if oid.tag != 0x06 || !after_value.is_empty() {
                return Err("malformed AttributeTypeAndValue".into());
            }
            let mut body = oid.raw.to_vec();
            match canonical_string(value.tag, value.content) {
                Some(text) => push_tlv(&mut body, 0x0c, &text),
                None => body.extend_from_slice(value.raw),
            }
            let mut encoded = Vec::new();
            push_tlv(&mut encoded, 0x30, &body);
            avas.push(encoded);
        }
        // DER orders the members of a SET OF by their encodings.
        avas.sort();
        let joined: Vec<u8> = avas.concat();
        push_tlv(&mut out, 0x31, &joined);
    }
    Ok(out)
}

/// `asn1_string_canon`: `None` when the type is not one OpenSSL canonicalises (the value is
/// then copied as it is).
fn canonical_string(tag: u8, content: &[u8]) -> Option<Vec<u8>> {
    let utf8: Vec<u8> = match tag {
        // UTF8String, PrintableString, T61String (read as Latin-1 like OpenSSL), IA5String,
        // VisibleString
        0x0c => content.to_vec(),
        0x13 | 0x16 | 0x1a => content.to_vec(),
        0x14 => content
            .iter()
            .map(|&b| b as char)
            .collect::<String>()
            .into_bytes(),
        // BMPString (UCS-2 BE)
        0x1e => {
            let units: Vec<u16> = content
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
                .collect();
            String::from_utf16_lossy(&units).into_bytes()
        }
        // UniversalString (UCS-4 BE)
        0x1c => content
            .chunks(4)
            .filter_map(|c| {
                if c.len() == 4 {
                    char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                } else {
                    None
                }
            })
            .collect::<String>()
            .into_bytes(),
        _ => return None,
    };
    let is_space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r');
    let mut s = &utf8[..];
    while let [first, rest @ ..] = s {
        if is_space(*first) {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if is_space(*last) {
            s = rest;
        } else {
            break;
        }
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        if b >= 0x80 {
            out.push(b);
            i += 1;
        } else if is_space(b) {
            out.push(b' ');
            while i < s.len() && is_space(s[i]) {
                i += 1;
            }
        } else {
            out.push(b.to_ascii_lowercase());
            i += 1;
        }
    }
    Some(out)
}

struct Tlv<'a> {
    tag: u8,
    content: &'a [u8],
    raw: &'a [u8],
}

impl<'a> Tlv<'a> {
    fn read(data: &'a [u8]) -> Result<(Tlv<'a>, &'a [u8]), String> {
        let too_short = || "truncated DER".to_string();
        let tag = *data.first().ok_or_else(too_short)?;
        if tag & 0x1f == 0x1f {
            return Err("multi-byte DER tags are not supported in names".into());
        }
        let first = *data.get(1).ok_or_else(too_short)?;
        let (len, header) = if first < 0x80 {
            (first as usize, 2)
        } else {
            let n = (first & 0x7f) as usize;
            if n == 0 || n > 4 {
                return Err("unsupported DER length".into());
            }
            let bytes = data.get(2..2 + n).ok_or_else(too_short)?;
            (
                bytes.iter().fold(0usize, |acc, &b| (acc << 8) | b as usize),
                2 + n,
            )
        };
        let end = header.checked_add(len).ok_or_else(too_short)?;
        if data.len() < end {
            return Err(too_short());
        }
        Ok((
            Tlv {
                tag,
                content: &data[header..end],
                raw: &data[..end],
            },
            &data[end..],
        ))
    }
}

fn push_tlv(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_encoding_wraps_at_64_columns() {
        let der: Vec<u8> = (0..=255u8).collect();
        let pem = encode_pem(&der);
        let body: Vec<&str> = pem.lines().collect();
        assert_eq!(body[0], "-----BEGIN CERTIFICATE-----");
        assert!(body[1..body.len() - 1].iter().all(|l| l.len() <= 64));
        assert_eq!(body[1].len(), 64);
        let decoded = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        assert_eq!(decoded.as_ref(), &der[..]);
    }

    #[test]
    fn pem_encoding_is_exactly_the_normalised_layout() {
        // The trust folder's bytes depend on it: a full last line has no empty line after it,
        // padding is `=`, the alphabet is the standard one, lines end in `\n` only.
        let wrap =
            |body: &str| format!("-----BEGIN CERTIFICATE-----\n{body}-----END CERTIFICATE-----\n");
        let a64 = "A".repeat(64);
        assert_eq!(encode_pem(&[0; 48]), wrap(&format!("{a64}\n")));
        assert_eq!(encode_pem(&[0; 49]), wrap(&format!("{a64}\nAA==\n")));
        assert_eq!(encode_pem(&[0; 50]), wrap(&format!("{a64}\nAAA=\n")));
        assert_eq!(encode_pem(&[0; 96]), wrap(&format!("{a64}\n{a64}\n")));
        assert_eq!(encode_pem(&[0xff, 0xfe, 0xfb]), wrap("//77\n"));
        assert_eq!(encode_pem(&[0x3e]), wrap("Pg==\n"));
    }

    #[test]
    fn sha256_is_fips_180_sha256() {
        // FIPS 180-2's "abc" example.
        assert_eq!(
            hex::encode(sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

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

    #[test]
    fn times_are_utc_and_inside_what_x509_can_express() {
        use time::macros::datetime;
        let last = datetime!(9999-12-31 23:59:59 UTC);
        assert_eq!(utc(last, "notAfter").unwrap(), last);
        let first = datetime!(0000-01-01 00:00:00 UTC);
        assert_eq!(utc(first, "notBefore").unwrap(), first);
        // An offset (which DER does not allow, but the parser reads) is applied...
        assert_eq!(
            utc(datetime!(2030-01-01 02:00:00 +02:00), "notAfter").unwrap(),
            datetime!(2030-01-01 00:00:00 UTC)
        );
        // ... and may not carry a time past 9999 or before year 0.
        assert!(utc(datetime!(9999-12-31 23:59:59 -01:00), "notAfter").is_err());
        assert!(utc(datetime!(0000-01-01 00:00:00 +01:00), "notBefore").is_err());
        assert_eq!(rfc3339(last), "9999-12-31T23:59:59Z");
        assert_eq!(
            rfc3339(datetime!(2030-01-01 02:00:00 +02:00)),
            "2030-01-01T00:00:00Z"
        );
    }

    #[test]
    fn canonical_string_collapses_and_lowercases() {
        assert_eq!(
            canonical_string(0x13, b"  Foo \t  BAR  ").unwrap(),
            b"foo bar".to_vec()
        );
        assert_eq!(canonical_string(0x12, b"123"), None);
    }
}
