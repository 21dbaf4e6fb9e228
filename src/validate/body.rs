//! Splitting a downloaded body into DER certificates: one DER certificate, or a strict PEM
//! file of `CERTIFICATE` blocks and nothing else, at most [`MAX_CERTIFICATES`] of them.
//!
//! Owns: telling DER from text, the strict PEM scan (forbidden blocks reported first, the
//! count limit checked before any block is decoded, text outside blocks refused) and its
//! line-numbered errors. Must not: parse the certificates (`cert` does) or apply any rule to
//! them (`rules`).

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::ValidationError;
use crate::cert::ParseError;

/// The most certificates one download may hold (SPEC 6); PEM blocks are counted, duplicates
/// included, before any of them is decoded.
pub const MAX_CERTIFICATES: usize = 16;

/// Splits a body into DER blobs: one DER certificate, or the blocks of a strict PEM file.
pub(super) fn split_body(body: &[u8]) -> Result<Vec<Vec<u8>>, ValidationError> {
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
            source: ParseError::plain("the body is neither PEM nor DER"),
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

    let malformed = |reason: String| ValidationError::MalformedPem {
        reason,
        source: None,
    };
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
                    let der = CertificateDer::from_pem_slice(&canonical).map_err(|e| {
                        ValidationError::MalformedPem {
                            reason: format!("block starting at line {start}: {e}"),
                            source: Some(e),
                        }
                    })?;
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

    /// Base64 the PEM decoder refused was reported as text only.
    #[test]
    fn malformed_base64_keeps_the_pem_decoders_error() {
        let err = split_body(b"-----BEGIN CERTIFICATE-----\nA*A\n-----END CERTIFICATE-----\n")
            .unwrap_err();
        assert!(
            matches!(&err, ValidationError::MalformedPem { .. }),
            "{err:?}"
        );
        let source = std::error::Error::source(&err)
            .and_then(|e| e.downcast_ref::<rustls_pki_types::pem::Error>());
        assert!(source.is_some(), "{err:?}");
        // The decoder's text is in the message already: the chain does not repeat it.
        assert_eq!(crate::text::error_chain(&err), err.to_string());
    }
}
