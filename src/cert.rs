//! One parsed X.509 certificate and the facts certsync needs about it.
//!
//! Owns: DER parsing into [`Cert`] (and [`ParseError`], which keeps the parser's own error as
//! its source), the SHA-256 fingerprint and the validity times. Its submodules own the rest of
//! what is read from a certificate: `algorithms` (key and signature kinds), `pem` (the
//! normalised PEM encoding and the lenient file reader) and `name_hash` (OpenSSL's subject
//! hash); their public items are re-exported here, so `crate::cert::X` is the one path. It
//! applies no policy (that is `validate`: which keys and digests are weak) and does no I/O.
//! Times are normalised to UTC and never leave what X.509 can express (0000-01-01 to
//! 9999-12-31T23:59:59Z), so no caller meets a time it cannot format.

mod algorithms;
mod name_hash;
mod pem;

use std::fmt;

use time::{OffsetDateTime, UtcOffset};
use x509_parser::asn1_rs;
use x509_parser::prelude::{FromDer, X509Certificate, X509Error};

pub use algorithms::{Digest, EcCurve, KeyKind, SignatureKind};
pub use name_hash::subject_hash;
pub use pem::{encode_pem, looks_like_pem, read_certs_lenient};

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
    /// The subject public key: its type and size or curve.
    pub key: KeyKind,
    /// The algorithm the certificate is signed with (the outer `signatureAlgorithm`, the one
    /// the signature value was made with).
    pub signature: SignatureKind,
}

/// A DER blob that is not an X.509 certificate.
///
/// `reason` is a plain sentence (the parsers' own messages, `Unexpected Tag (expected:
/// Some(Tag(16)), ..)`, mean little to an operator), and the parser's error, when there is
/// one, is kept as the [`source`](std::error::Error::source) for whoever needs the detail.
#[derive(Debug, thiserror::Error)]
#[error("not an X.509 certificate: {reason}")]
pub struct ParseError {
    /// What is wrong, in words.
    pub reason: String,
    /// The error of the parser that refused the data, if a parser did.
    #[source]
    pub source: Option<ParseSource>,
}

impl ParseError {
    /// An error found by certsync itself (no parser error behind it).
    pub(crate) fn plain(reason: impl Into<String>) -> ParseError {
        ParseError {
            reason: reason.into(),
            source: None,
        }
    }
}

/// The parser error behind a [`ParseError`]. Its `Display` is the parser's own text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParseSource {
    /// x509-parser refused the DER (or an extension in it).
    #[error("{0}")]
    X509(#[source] X509Error),
    /// The PEM reader refused a block.
    #[error("{0}")]
    Pem(#[source] rustls_pki_types::pem::Error),
}

impl Cert {
    /// Whether the self-signature verifies: `None` when the certificate is not self-issued, or
    /// the signature cannot be checked here (SM2). Computed on demand from `der`, not when
    /// parsing: validation asks once per download, while the certificates read back from the
    /// trust folder at every pass (10,000 at a time) never need it, and a signature check
    /// costs more than the rest of parsing together.
    pub fn self_signature_ok(&self) -> Option<bool> {
        if !self.self_issued || self.sm2 {
            return None;
        }
        match X509Certificate::from_der(&self.der) {
            Ok((_, x)) => Some(x.verify_signature(None).is_ok()),
            // It parsed when this Cert was made from the same bytes.
            Err(_) => Some(false),
        }
    }

    /// Parses one DER certificate. Trailing bytes after the certificate are an error.
    pub fn from_der(der: &[u8]) -> Result<Cert, ParseError> {
        let (rest, x) = X509Certificate::from_der(der).map_err(|e| ParseError {
            reason: describe_parse_error(der, &e),
            source: Some(ParseSource::X509(e.into())),
        })?;
        if !rest.is_empty() {
            return Err(ParseError::plain(format!(
                "{} bytes after the certificate",
                rest.len()
            )));
        }
        let der = der[..der.len() - rest.len()].to_vec();
        let sha256 = sha256(&der);
        let subject_raw = x.subject().as_raw();
        let subject_hash = subject_hash(subject_raw)
            .map_err(|reason| ParseError::plain(format!("subject name: {reason}")))?;
        let basic_ca = match x.basic_constraints() {
            Ok(Some(bc)) => bc.value.ca,
            Ok(None) => false,
            Err(e) => {
                return Err(ParseError {
                    reason: format!("basicConstraints: {e}"),
                    source: Some(ParseSource::X509(e)),
                });
            }
        };
        let not_before = utc(x.validity().not_before.to_datetime(), "notBefore")?;
        let not_after = utc(x.validity().not_after.to_datetime(), "notAfter")?;
        let sm2 = x.signature_algorithm.algorithm.to_id_string() == OID_SM2_SM3;
        let self_issued = subject_raw == x.issuer().as_raw();
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
            key: algorithms::key_kind(x.public_key()),
            signature: algorithms::signature_kind(&x.signature_algorithm),
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
        .ok_or_else(|| {
            ParseError::plain(format!(
                "{field} {t} is outside what X.509 can express (0000-01-01 to 9999-12-31T23:59:59Z)"
            ))
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

/// SHA-256 of `data`, from ring (the digest TLS and request signing use too, so the binary
/// carries one SHA-256).
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, data);
    let mut out = [0; 32];
    // ring's SHA-256 digest is always SHA256_OUTPUT_LEN (32) bytes: this copy cannot fail.
    out.copy_from_slice(digest.as_ref());
    out
}

/// Certificates for the unit tests of the modules that handle them.
#[cfg(test)]
pub(crate) mod testing {
    use super::Cert;

    /// A fresh self-signed CA named `cn` (DER).
    pub(crate) fn self_signed_ca_der(cn: &str) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    /// The same, parsed.
    pub(crate) fn self_signed_ca(cn: &str) -> Cert {
        Cert::from_der(&self_signed_ca_der(cn)).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_is_fips_180_sha256() {
        // FIPS 180-2's "abc" example.
        assert_eq!(
            hex::encode(sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
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

    /// The parser's error was flattened into `reason`; a caller diagnosing a certificate the
    /// parser refused had only certsync's sentence.
    #[test]
    fn a_parse_error_keeps_the_x509_parsers_error_as_its_source() {
        // A SEQUENCE holding an INTEGER, where a certificate needs a SEQUENCE.
        let err = Cert::from_der(b"\x30\x03\x02\x01\x05").unwrap_err();
        let parser = std::iter::successors(Some(&err as &(dyn std::error::Error + 'static)), |e| {
            e.source()
        })
        .find_map(|e| e.downcast_ref::<X509Error>());
        assert!(parser.is_some(), "{err:?}");
        // The chain prints certsync's sentence, then the parser's text, each once.
        let text = crate::text::error_chain(&err);
        assert!(text.starts_with(&err.to_string()), "{text}");
        assert_eq!(
            text.matches("not an X.509 certificate").count(),
            1,
            "{text}"
        );
        assert_eq!(text.matches("Unexpected Tag").count(), 1, "{text}");
    }
}
