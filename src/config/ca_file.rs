//! `cloud.ca_file`: the one reader and parser of the extra roots file.
//!
//! Owns: reading the file (capped, refusing devices and FIFOs, through `crate::files`) and
//! parsing it into DER certificates, the form the HTTP clients are built from. The fs pass
//! calls it once per loaded configuration and keeps the result in
//! [`Cloud::ca_certs`](super::Cloud::ca_certs), so a reload reads the file again and nothing
//! else reads it.
//! Must not: build an HTTP client (that is `cloud::http`, which takes the parsed roots), or
//! accept a file that holds no certificate: an empty roots file is a configuration error.

use std::path::Path;

use rustls_pki_types::CertificateDer;

/// Why `cloud.ca_file` cannot be used. The messages are the configuration error's wording
/// (after the key and the value): `cannot read: ...`, `holds no PEM certificate`,
/// `not a PEM certificate file: ...`.
#[derive(Debug, thiserror::Error)]
pub enum CaFileError {
    /// The file could not be read (missing, a device, a FIFO, too large, ...).
    #[error("cannot read")]
    Read(#[source] std::io::Error),
    /// The file holds no PEM block at all.
    #[error("holds no PEM certificate")]
    NoPem,
    /// The file's PEM blocks are not certificates, or one of them does not parse.
    #[error("not a PEM certificate file")]
    Invalid(#[source] crate::cert::ParseError),
}

/// Reads `path` and returns its certificates (at least one), as DER.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, CaFileError> {
    let data = crate::files::read_capped(path, crate::files::MAX_CONFIG_FILE)
        .map_err(CaFileError::Read)?;
    parse_ca_pem(&data)
}

/// The certificates of a PEM roots file (at least one), as DER. Every CERTIFICATE block must
/// parse as X.509; other blocks (a private key) are skipped, and a file with PEM blocks but no
/// CERTIFICATE among them is refused.
fn parse_ca_pem(data: &[u8]) -> Result<Vec<CertificateDer<'static>>, CaFileError> {
    if !crate::cert::looks_like_pem(data) {
        return Err(CaFileError::NoPem);
    }
    let certs = crate::cert::read_certs_lenient(data).map_err(CaFileError::Invalid)?;
    Ok(certs
        .into_iter()
        .map(|cert| CertificateDer::from(cert.der))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::error_chain;

    #[test]
    fn every_certificate_of_the_file_is_kept_as_der() {
        let a = rcgen::generate_simple_self_signed(vec!["a.test".to_string()]).unwrap();
        let b = rcgen::generate_simple_self_signed(vec!["b.test".to_string()]).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let pem = format!(
            "comment\n{}{}{}",
            a.cert.pem(),
            key.serialize_pem(),
            b.cert.pem()
        );
        let certs = parse_ca_pem(pem.as_bytes()).unwrap();
        assert_eq!(certs.len(), 2);
        assert_eq!(certs[0].as_ref(), a.cert.der().as_ref());
        assert_eq!(certs[1].as_ref(), b.cert.der().as_ref());
    }

    #[test]
    fn a_file_without_certificates_is_refused_in_the_config_wording() {
        let no_pem = parse_ca_pem(b"just text\n").unwrap_err();
        assert_eq!(error_chain(&no_pem), "holds no PEM certificate");
        let key = rcgen::KeyPair::generate().unwrap();
        let only_key = parse_ca_pem(key.serialize_pem().as_bytes()).unwrap_err();
        assert!(
            error_chain(&only_key).starts_with("not a PEM certificate file: "),
            "{only_key:?}"
        );
        let der = rcgen::generate_simple_self_signed(vec!["x.test".to_string()]).unwrap();
        assert!(matches!(
            parse_ca_pem(der.cert.der()),
            Err(CaFileError::NoPem)
        ));
        let tmp = tempfile::tempdir().unwrap();
        let missing = read_ca_file(&tmp.path().join("none.pem")).unwrap_err();
        assert!(
            error_chain(&missing).starts_with("cannot read: "),
            "{missing:?}"
        );
    }
}
