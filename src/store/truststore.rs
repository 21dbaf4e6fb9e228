//! The PKCS#12 truststore (`trust.pkcs12`): every CA as a trusted certificate entry, the way
//! Java's `keytool -importcert` makes them (`keytool -list` shows `trustedCertEntry`).
//!
//! Owns: encoding the truststore, reading its password (from `pkcs12_password_file`, else the
//! conventional `changeit`), and telling whether an existing truststore opens with a password.
//! It must not: write files (the store does), or put the password in any error or log.

use std::io;
use std::path::Path;

use p12_keystore::{Certificate, KeyStore, KeyStoreEntry, Pkcs12Archive};

use crate::cert::Cert;

/// The password Java tools assume for a truststore when none is configured.
pub const DEFAULT_PASSWORD: &str = "changeit";

/// The truststore password: the password file's content without surrounding whitespace (a
/// trailing newline is what editors and `echo` leave), else [`DEFAULT_PASSWORD`]. Read at each
/// pass, so a changed password file takes effect (the truststore is then rewritten).
pub(crate) fn password(file: Option<&Path>) -> io::Result<String> {
    let Some(file) = file else {
        return Ok(DEFAULT_PASSWORD.to_string());
    };
    let text = crate::files::read_capped_string(file, crate::files::MAX_VALUE_FILE)?;
    let password = text.trim();
    if password.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the file is empty (a truststore needs a password)",
        ));
    }
    Ok(password.to_string())
}

/// Why [`encode`] could not make a truststore. It keeps the PKCS#12 library's error as its
/// source; neither holds the password.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The library refused one certificate.
    #[error("certificate {subject}: {source}")]
    Certificate {
        /// The certificate's subject (RFC 4514).
        subject: String,
        /// What the library said.
        #[source]
        source: p12_keystore::error::Error,
    },
    /// Encoding (encryption, MAC) failed.
    #[error("PKCS#12 encoding failed: {source}")]
    Encode {
        /// What the library said.
        #[source]
        source: p12_keystore::error::Error,
    },
}

/// Encodes `certs` as a PKCS#12 truststore protected by `password` (PBES2 with AES-256 and an
/// HMAC-SHA-256 MAC, which Java reads since 8u301/11.0.12). Each entry's alias is the CA's
/// SHA-256 fingerprint: unique, stable, and what an operator greps for. The encoding is
/// randomised (salts), so two calls give different bytes for the same CAs.
pub(crate) fn encode(certs: &[&Cert], password: &str) -> Result<Vec<u8>, EncodeError> {
    let mut store = KeyStore::new();
    for cert in certs {
        let entry =
            Certificate::from_der(&cert.der).map_err(|source| EncodeError::Certificate {
                subject: cert.subject.clone(),
                source,
            })?;
        store.add_entry(&cert.fingerprint(), KeyStoreEntry::Certificate(entry));
    }
    store
        .writer(password)
        .write()
        .map_err(|source| EncodeError::Encode { source })
}

/// Whether `data` is a PKCS#12 file that opens (MAC and decryption) with `password`.
pub(crate) fn opens_with(data: &[u8], password: &str) -> bool {
    Pkcs12Archive::from_pkcs12(data, password).is_ok()
}

/// What reading a PKCS#12 file with a password gave.
#[derive(Debug)]
pub enum Opened {
    /// The certificates (DER) of its certificate bags, and whether each is marked trusted.
    Certs(Vec<(Vec<u8>, bool)>),
    /// A PKCS#12 file whose MAC does not verify with this password.
    WrongPassword,
    /// Not a PKCS#12 file (or one this library cannot read): the library's error.
    NotPkcs12(p12_keystore::error::Error),
}

/// Reads the certificates of a PKCS#12 file (for `inspect`).
pub fn open(data: &[u8], password: &str) -> Opened {
    match Pkcs12Archive::from_pkcs12(data, password) {
        Ok(archive) => Opened::Certs(
            archive
                .certs
                .into_iter()
                .map(|bag| (bag.cert.as_der().to_vec(), bag.trusted))
                .collect(),
        ),
        Err(p12_keystore::error::Error::MacError(_)) => Opened::WrongPassword,
        Err(e) => Opened::NotPkcs12(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca(cn: &str) -> Cert {
        crate::cert::testing::self_signed_ca(cn)
    }

    #[test]
    fn round_trip_holds_every_ca_as_trusted_and_checks_the_password() {
        let (a, b) = (ca("A"), ca("B"));
        let bytes = encode(&[&a, &b], "s3cret").unwrap();
        assert!(opens_with(&bytes, "s3cret"));
        assert!(!opens_with(&bytes, "changeit"));
        match open(&bytes, "s3cret") {
            Opened::Certs(mut certs) => {
                certs.sort();
                let mut want = vec![(a.der.clone(), true), (b.der.clone(), true)];
                want.sort();
                assert_eq!(certs, want);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(open(&bytes, "wrong"), Opened::WrongPassword));
        assert!(matches!(open(b"not der", "x"), Opened::NotPkcs12(_)));
        // Randomised: same CAs, different bytes.
        assert_ne!(encode(&[&a, &b], "s3cret").unwrap(), bytes);
    }

    #[test]
    fn password_is_trimmed_defaults_to_changeit_and_must_not_be_empty() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(password(None).unwrap(), "changeit");
        let file = tmp.path().join("pw");
        std::fs::write(&file, "  hunter2 \n").unwrap();
        assert_eq!(password(Some(&file)).unwrap(), "hunter2");
        std::fs::write(&file, "\n").unwrap();
        let err = password(Some(&file)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let err = password(Some(&tmp.path().join("missing"))).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    /// The PKCS#12 library's errors were flattened into strings, for encoding and reading.
    #[test]
    fn pkcs12_errors_are_kept() {
        let mut broken = ca("Broken");
        broken.der = b"not a certificate".to_vec();
        let err = encode(&[&ca("A"), &broken], "s3cret").unwrap_err();
        assert!(
            matches!(&err, EncodeError::Certificate { subject, .. } if subject == "CN=Broken"),
            "{err:?}"
        );
        let source = std::error::Error::source(&err)
            .and_then(|e| e.downcast_ref::<p12_keystore::error::Error>());
        assert!(source.is_some(), "{err:?}");
        assert!(!format!("{err:?}{err}").contains("s3cret"));
        match open(b"not der", "x") {
            Opened::NotPkcs12(e) => {
                let e: &dyn std::error::Error = &e;
                assert!(!e.to_string().is_empty());
            }
            other => panic!("{other:?}"),
        }
    }
}
