//! PEM in and out for certificates certsync wrote itself, or that an operator names.
//!
//! Owns: the normalised PEM encoding (the layout that makes identical CAs byte-identical
//! files), the lenient reader of PEM or DER certificate files, and telling PEM from DER. Must
//! not: be used to accept a download (`validate` is the strict reader SPEC 6 asks for).

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::{Cert, ParseError, ParseSource};

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
                source: Some(ParseSource::Pem(e)),
            })?;
            // The block's number goes into the reason; the parser's error stays the source.
            let cert = Cert::from_der(&der).map_err(|e| ParseError {
                reason: format!("CERTIFICATE block {block}: {}", e.reason),
                source: e.source,
            })?;
            out.push(cert);
        }
        if out.is_empty() {
            return Err(ParseError::plain("no CERTIFICATE block"));
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

    /// A PEM block that did not decode lost the reader's error, and a block that did not
    /// parse lost the X.509 parser's (only the reason's text was carried over).
    #[test]
    fn read_errors_keep_the_readers_and_the_parsers_error() {
        use std::error::Error;
        let chain = |e: &ParseError| -> Vec<String> {
            std::iter::successors(Some(e as &(dyn Error + 'static)), |&e| e.source())
                .map(|e| format!("{e:?}"))
                .collect()
        };
        let err = read_certs_lenient(b"-----BEGIN CERTIFICATE-----\nAAAA\n").unwrap_err();
        assert!(err.reason.starts_with("PEM: "), "{err}");
        let pem = std::iter::successors(Some(&err as &(dyn Error + 'static)), |&e| e.source())
            .find_map(|e| e.downcast_ref::<rustls_pki_types::pem::Error>());
        assert!(pem.is_some(), "{:?}", chain(&err));

        let junk = encode_pem(b"\x30\x03\x02\x01\x05");
        let err = read_certs_lenient(junk.as_bytes()).unwrap_err();
        assert!(err.reason.starts_with("CERTIFICATE block 1: "), "{err}");
        let x509 = std::iter::successors(Some(&err as &(dyn Error + 'static)), |&e| e.source())
            .find_map(|e| e.downcast_ref::<x509_parser::prelude::X509Error>());
        assert!(x509.is_some(), "{:?}", chain(&err));
    }
}
