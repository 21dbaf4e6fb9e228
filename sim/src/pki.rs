//! Certificate generation for the simulator: its own TLS root and server certificate, the
//! per-instance CAs (created, rotated), and the certificates used as bad content.
//!
//! Everything here is ECDSA P-256 through rcgen and ring, because a benchmark creates thousands
//! of CAs at start-up. This module only makes certificates; it must not know about HTTP or the
//! shared state, and the request path never calls it.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use crate::model::CaInfo;

/// The organisation every simulated certificate names, so they are easy to tell apart.
const ORGANIZATION: &str = "Huawei Cloud Simulator";

/// How long generated certificates are valid.
const VALIDITY: Duration = Duration::days(3650);

/// How far in the past generated certificates start, so clock skew never makes them "not yet valid".
const BACKDATE: Duration = Duration::hours(1);

/// A certificate could not be generated.
#[derive(Debug, thiserror::Error)]
#[error("generating {what}")]
pub struct PkiError {
    what: String,
    #[source]
    source: rcgen::Error,
}

fn pki_err(what: impl Into<String>) -> impl FnOnce(rcgen::Error) -> PkiError {
    let what = what.into();
    move |source| PkiError { what, source }
}

/// A CA the simulator holds: its public description and the means to sign with it.
#[derive(Clone)]
pub(crate) struct Ca {
    /// The subject's common name (a rotation keeps it).
    pub common_name: String,
    /// The subject DN as `CN=..., O=...` (for the control API).
    pub subject: String,
    pub info: Arc<CaInfo>,
    /// The PEM as bytes, cloned cheaply into download bodies.
    pub pem_bytes: bytes::Bytes,
    issuer: Arc<Issuer<'static, KeyPair>>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of Debug output.
        f.debug_struct("Ca")
            .field("subject", &self.subject)
            .field("sha256", &self.info.sha256_hex)
            .finish_non_exhaustive()
    }
}

/// A leaf certificate and its key, both PEM.
pub(crate) struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: Vec<u8>,
    pub key_der: Vec<u8>,
}

/// A random positive serial number of 16 bytes.
fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    fastrand::fill(&mut bytes);
    // The top bit clear keeps the INTEGER positive; a non-zero first byte keeps it minimal.
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    SerialNumber::from_slice(&bytes)
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, ORGANIZATION);
    dn
}

/// The common name of an instance's CA for one category.
pub(crate) fn instance_ca_name(id: &str, category: &str) -> String {
    format!("GaussDB NoSQL CA {id} {category}")
}

/// A CA like [`make_ca`] whose validity ends at `not_after`.
pub(crate) fn make_ca_until(common_name: &str, not_after: OffsetDateTime) -> Result<Ca, PkiError> {
    make_ca_valid(common_name, OffsetDateTime::now_utc() - BACKDATE, not_after)
}

/// Builds a self-signed CA named `common_name` with a fresh key and serial, valid over the window.
/// The name is used as it is (a UTF8String), control characters included: tests of escaping
/// need subjects with a newline or ESC.
pub(crate) fn make_ca_valid(
    common_name: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<Ca, PkiError> {
    let key = KeyPair::generate().map_err(pki_err(format!("key for {common_name}")))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = not_before;
    params.not_after = not_after;
    params.serial_number = Some(random_serial());
    let cert = params
        .self_signed(&key)
        .map_err(pki_err(format!("certificate {common_name}")))?;
    let der = cert.der().to_vec();
    let pem = cert.pem();
    let info = CaInfo {
        sha256_hex: hex::encode(Sha256::digest(&der)),
        der,
        pem: pem.clone(),
        key_pem: key.serialize_pem(),
    };
    Ok(Ca {
        common_name: common_name.to_owned(),
        subject: format!("CN={common_name}, O={ORGANIZATION}"),
        pem_bytes: bytes::Bytes::from(pem),
        info: Arc::new(info),
        issuer: Arc::new(Issuer::new(params, key)),
    })
}

/// Builds a current CA (valid from an hour ago for ten years) with a fresh key and serial.
///
/// Rotation calls this again with the same name: the subject DN stays, key and serial change.
pub(crate) fn make_ca(common_name: &str) -> Result<Ca, PkiError> {
    let now = OffsetDateTime::now_utc();
    make_ca_valid(common_name, now - BACKDATE, now + VALIDITY)
}

/// Builds a CA with the same name whose validity ended a year ago.
pub(crate) fn make_expired_ca(common_name: &str) -> Result<Ca, PkiError> {
    let now = OffsetDateTime::now_utc();
    make_ca_valid(
        common_name,
        now - Duration::days(730),
        now - Duration::days(365),
    )
}

impl Ca {
    /// Issues a TLS server leaf for `sans` (IP addresses or DNS names), signed by this CA.
    pub(crate) fn issue_leaf(&self, sans: &[&str]) -> Result<Leaf, PkiError> {
        let names: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let first = names.first().cloned().unwrap_or_else(|| "leaf".to_owned());
        let mut params =
            CertificateParams::new(names).map_err(pki_err(format!("names {sans:?}")))?;
        params.distinguished_name = dn(&first);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let now = OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = now + VALIDITY;
        params.serial_number = Some(random_serial());
        if params.subject_alt_names.is_empty() {
            params.subject_alt_names.push(SanType::DnsName(
                "leaf".try_into().map_err(pki_err("leaf name"))?,
            ));
        }
        let key = KeyPair::generate().map_err(pki_err(format!("key for leaf {first}")))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(pki_err(format!("leaf {first}")))?;
        Ok(Leaf {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_name_changes_key_and_serial() {
        let a = make_ca(&instance_ca_name("abc", "international")).unwrap();
        let b = make_ca(&instance_ca_name("abc", "international")).unwrap();
        assert_eq!(a.subject, b.subject);
        assert_ne!(a.info.sha256_hex, b.info.sha256_hex);
        assert_ne!(a.info.key_pem, b.info.key_pem);
        assert!(a.info.pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(a.info.key_pem.contains("PRIVATE KEY"));
    }

    #[test]
    fn debug_hides_the_key() {
        let ca = make_ca("x").unwrap();
        let text = format!("{ca:?}");
        assert!(!text.contains("PRIVATE"), "{text}");
        assert!(text.contains(&ca.info.sha256_hex));
    }
}
