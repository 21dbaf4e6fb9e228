//! Every rule of SPEC 6, on certificates generated at test time with rcgen: each rule has a
//! negative test asserting its error variant, plus the accepted shapes (one CA, a chain, a v1
//! root, DER, CRLF, duplicates, any whitespace) and the byte-identical normalised output.

use std::time::SystemTime;

use certsync::cert::{Cert, encode_pem};
use certsync::validate::{CLOCK_SKEW, Policy, ValidationError, to_pem, validate};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    SigningKey as _,
};
use time::{Duration, OffsetDateTime};

// ---------------------------------------------------------------------------------------------
// certificate factory

/// Now, to the second (X.509 times have no fractions).
fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc().replace_nanosecond(0).unwrap()
}

fn params(
    cn: &str,
    ca: bool,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "certsync tests");
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = if ca {
        IsCa::Ca(BasicConstraints::Unconstrained)
    } else {
        IsCa::NoCa
    };
    p.not_before = not_before;
    p.not_after = not_after;
    p
}

/// A self-signed certificate with its key and params (to issue more from it).
struct Made {
    der: Vec<u8>,
    pem: String,
    key: KeyPair,
    params: CertificateParams,
}

fn self_signed(cn: &str, ca: bool, not_before: OffsetDateTime, not_after: OffsetDateTime) -> Made {
    let key = KeyPair::generate().unwrap();
    let params = params(cn, ca, not_before, not_after);
    let cert = params.self_signed(&key).unwrap();
    Made {
        der: cert.der().to_vec(),
        pem: cert.pem(),
        key,
        params,
    }
}

fn ca(cn: &str) -> Made {
    let t = now();
    self_signed(cn, true, t - Duration::days(1), t + Duration::days(365))
}

fn issued_by(issuer: &Made, cn: &str, ca: bool) -> Made {
    let t = now();
    let key = KeyPair::generate().unwrap();
    let params = params(cn, ca, t - Duration::days(1), t + Duration::days(90));
    let issuer_ref = Issuer::from_params(&issuer.params, &issuer.key);
    let cert = params.signed_by(&key, &issuer_ref).unwrap();
    Made {
        der: cert.der().to_vec(),
        pem: cert.pem(),
        key,
        params,
    }
}

fn policy_at(t: OffsetDateTime) -> Policy<'static> {
    Policy {
        now: SystemTime::from(t),
        pins: &[],
    }
}

fn policy() -> Policy<'static> {
    policy_at(now())
}

fn accept(body: &[u8]) -> Vec<Cert> {
    validate(body, &policy()).unwrap_or_else(|e| panic!("rejected: {e} ({e:?})"))
}

fn reject(body: &[u8], p: &Policy) -> ValidationError {
    match validate(body, p) {
        Ok(certs) => panic!("accepted {certs:?}"),
        Err(e) => e,
    }
}

// ---------------------------------------------------------------------------------------------
// a tiny DER toolkit, to build what rcgen cannot: v1 certificates and SM2-signed ones

fn tlv(data: &[u8]) -> (&[u8], &[u8], &[u8]) {
    // (whole element, content, rest)
    let len0 = data[1] as usize;
    let (len, header) = if len0 < 0x80 {
        (len0, 2)
    } else {
        let n = len0 & 0x7f;
        let len = data[2..2 + n]
            .iter()
            .fold(0usize, |a, &b| (a << 8) | b as usize);
        (len, 2 + n)
    };
    (
        &data[..header + len],
        &data[header..header + len],
        &data[header + len..],
    )
}

fn elements(mut content: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while !content.is_empty() {
        let (whole, _, rest) = tlv(content);
        out.push(whole.to_vec());
        content = rest;
    }
    out
}

fn wrap(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x100 {
        out.extend([0x81, len as u8]);
    } else {
        out.extend([0x82, (len >> 8) as u8, len as u8]);
    }
    out.extend_from_slice(content);
    out
}

/// Rebuilds `template` (an rcgen certificate) with a different shape and signs it with `key`:
/// `v1` drops the version and every extension; `sig_alg` replaces the AlgorithmIdentifier.
fn rebuild(template: &[u8], v1: bool, sig_alg: Option<&[u8]>, key: &KeyPair) -> Vec<u8> {
    let (_, cert, _) = tlv(template);
    let outer = elements(cert);
    let (_, tbs, _) = tlv(&outer[0]);
    let mut fields = elements(tbs);
    if v1 {
        // [0] version, [1]/[2] unique ids, [3] extensions
        fields.retain(|f| !matches!(f[0], 0xa0..=0xa3));
    }
    let alg = sig_alg
        .map(<[u8]>::to_vec)
        .unwrap_or_else(|| outer[1].clone());
    let alg_index = if v1 { 1 } else { 2 };
    fields[alg_index] = alg.clone();
    let tbs = wrap(0x30, &fields.concat());
    let mut signature = vec![0u8];
    signature.extend(key.sign(&tbs).unwrap());
    wrap(0x30, &[tbs, alg, wrap(0x03, &signature)].concat())
}

/// AlgorithmIdentifier of SM2-with-SM3 (1.2.156.10197.1.501).
const SM2_ALG: &[u8] = &[
    0x30, 0x0a, 0x06, 0x08, 0x2a, 0x81, 0x1c, 0xcf, 0x55, 0x01, 0x83, 0x75,
];

// ---------------------------------------------------------------------------------------------
// accepted shapes

#[test]
fn one_ca_is_accepted_and_normalised() {
    let a = ca("Root A");
    let certs = accept(a.pem.as_bytes());
    assert_eq!(certs.len(), 1);
    assert_eq!(certs[0].der, a.der);
    assert!(
        certs[0].subject.contains("CN=Root A"),
        "{}",
        certs[0].subject
    );
    let out = to_pem(&certs);
    assert_eq!(out, encode_pem(&a.der));
    assert!(!out.contains('\r'));
    assert!(out.lines().all(|l| l.len() <= 64));
    assert!(out.ends_with("-----END CERTIFICATE-----\n"));
}

#[test]
fn chain_of_two_cas_is_accepted_in_order() {
    let root = ca("Chain Root");
    let sub = issued_by(&root, "Chain Intermediate", true);
    let body = format!("{}{}", sub.pem, root.pem);
    let certs = accept(body.as_bytes());
    let ders: Vec<&[u8]> = certs.iter().map(|c| c.der.as_slice()).collect();
    assert_eq!(ders, vec![sub.der.as_slice(), root.der.as_slice()]);
    assert_eq!(
        to_pem(&certs),
        format!("{}{}", encode_pem(&sub.der), encode_pem(&root.der))
    );
}

#[test]
fn self_signed_v1_root_is_accepted() {
    // rcgen always writes v3, so the v1 root is rebuilt from an rcgen certificate: version
    // and extensions dropped, re-signed with the same key.
    let t = now();
    let template = self_signed(
        "V1 Root",
        false,
        t - Duration::days(1),
        t + Duration::days(30),
    );
    let v1 = rebuild(&template.der, true, None, &template.key);
    let parsed = Cert::from_der(&v1).unwrap();
    assert!(parsed.is_v1 && parsed.self_issued && !parsed.basic_ca);
    assert_eq!(parsed.self_signature_ok, Some(true));
    let certs = accept(encode_pem(&v1).as_bytes());
    assert_eq!(certs[0].der, v1);
}

#[test]
fn der_body_is_accepted() {
    let a = ca("DER Root");
    let certs = accept(&a.der);
    assert_eq!(certs.len(), 1);
    assert_eq!(to_pem(&certs), encode_pem(&a.der));
}

#[test]
fn crlf_pem_is_accepted() {
    let a = ca("CRLF Root");
    let b = ca("CRLF Root 2");
    let body = format!("{}{}", a.pem, b.pem)
        .replace("\r\n", "\n")
        .replace('\n', "\r\n");
    assert!(body.contains("\r\n"));
    let certs = accept(body.as_bytes());
    assert_eq!(certs.len(), 2);
    assert_eq!(
        to_pem(&certs),
        format!("{}{}", encode_pem(&a.der), encode_pem(&b.der))
    );
}

#[test]
fn duplicates_are_removed_keeping_first_appearance() {
    let a = ca("Dup A");
    let b = ca("Dup B");
    let body = format!("{}{}{}{}", b.pem, a.pem, b.pem, a.pem);
    let certs = accept(body.as_bytes());
    let ders: Vec<&[u8]> = certs.iter().map(|c| c.der.as_slice()).collect();
    assert_eq!(ders, vec![b.der.as_slice(), a.der.as_slice()]);
}

/// Re-wraps a PEM certificate's base64 at `width` columns with `eol` line ends.
fn rewrap(der: &[u8], width: usize, eol: &str, indent: &str) -> String {
    let pem = encode_pem(der);
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let mut out = format!("{indent}-----BEGIN CERTIFICATE-----  {eol}");
    for chunk in b64.as_bytes().chunks(width) {
        out.push_str(indent);
        out.push_str(std::str::from_utf8(chunk).unwrap());
        out.push_str(eol);
    }
    out.push_str(&format!("-----END CERTIFICATE-----\t{eol}"));
    out
}

#[test]
fn same_cas_with_different_layout_give_byte_identical_output() {
    let a = ca("Layout A");
    let b = ca("Layout B");
    let canonical = to_pem(&accept(format!("{}{}", a.pem, b.pem).as_bytes()));
    let variants = [
        format!(
            "\n\n{}\n\n\n{}\n\n",
            rewrap(&a.der, 76, "\n", ""),
            rewrap(&b.der, 76, "\n", "")
        ),
        format!(
            "{}{}",
            rewrap(&a.der, 10_000, "\r\n", ""),
            rewrap(&b.der, 16, "\r\n", "")
        ),
        format!(
            "  \t\r\n{}{}   ",
            rewrap(&a.der, 64, "\n", "   "),
            rewrap(&b.der, 40, "\r\n", "\t")
        ),
        format!("\u{feff}{}{}", a.pem, b.pem),
    ];
    for (i, body) in variants.iter().enumerate() {
        let out = to_pem(&accept(body.as_bytes()));
        assert_eq!(out, canonical, "variant {i}");
    }
}

#[test]
fn sm2_certificate_is_accepted_unchecked() {
    // The X.509 library cannot verify SM2; such a CA is accepted with a warning. The signature
    // here is not even an SM2 signature, which proves it is not checked.
    let template = ca("SM2 Root");
    let sm2 = rebuild(&template.der, false, Some(SM2_ALG), &template.key);
    let parsed = Cert::from_der(&sm2).unwrap();
    assert!(parsed.sm2 && parsed.self_issued && parsed.basic_ca);
    assert_eq!(parsed.self_signature_ok, None);
    let certs = accept(encode_pem(&sm2).as_bytes());
    assert_eq!(certs[0].der, sm2);
}

#[test]
fn pinned_cas_are_accepted() {
    let a = ca("Pinned A");
    let b = ca("Pinned B");
    let pins = [
        Cert::from_der(&b.der).unwrap().sha256,
        Cert::from_der(&a.der).unwrap().sha256,
    ];
    let p = Policy {
        now: SystemTime::now(),
        pins: &pins,
    };
    let body = format!("{}{}", a.pem, b.pem);
    assert_eq!(validate(body.as_bytes(), &p).unwrap().len(), 2);
}

// ---------------------------------------------------------------------------------------------
// rejections: one per rule, asserting the variant

#[test]
fn empty_body_is_rejected() {
    for body in [&b""[..], b"   \r\n\t\n"] {
        let e = reject(body, &policy());
        assert!(matches!(e, ValidationError::Empty), "{e:?}");
        assert_eq!(e.rule(), "empty");
    }
}

#[test]
fn html_page_is_rejected() {
    let body = b"<!DOCTYPE html>\n<html><body>\n<h1>403 Forbidden</h1>\n</body></html>\n";
    let e = reject(body, &policy());
    assert!(
        matches!(e, ValidationError::TextOutsideBlocks { line: 1 }),
        "{e:?}"
    );
    assert_eq!(e.rule(), "text_outside_pem");
}

#[test]
fn text_next_to_a_certificate_is_rejected() {
    let a = ca("Text Root");
    let body = format!("{}\nsubject=CN = Text Root\n", a.pem);
    let line = a.pem.lines().count() + 2;
    let e = reject(body.as_bytes(), &policy());
    match e {
        ValidationError::TextOutsideBlocks { line: l } => assert_eq!(l, line),
        other => panic!("{other:?}"),
    }
    // Also text before the block (as `openssl x509 -text` output would put it).
    let body = format!("Certificate:\n    Data: ...\n{}", a.pem);
    assert!(matches!(
        reject(body.as_bytes(), &policy()),
        ValidationError::TextOutsideBlocks { line: 1 }
    ));
}

#[test]
fn ca_with_its_private_key_is_rejected() {
    let a = ca("Leaky Root");
    let body = format!("{}{}", a.pem, a.key.serialize_pem());
    let e = reject(body.as_bytes(), &policy());
    match &e {
        ValidationError::ForbiddenBlock { label } => assert_eq!(label, "PRIVATE KEY"),
        other => panic!("{other:?}"),
    }
    assert_eq!(e.rule(), "forbidden_pem_block");
    assert!(
        e.to_string()
            .contains("private key must never be distributed"),
        "{e}"
    );
    // Even when the key comes first and the rest is garbage, the key is what is reported.
    let body = format!("{}junk\n{}", a.key.serialize_pem(), a.pem);
    assert!(matches!(
        reject(body.as_bytes(), &policy()),
        ValidationError::ForbiddenBlock { .. }
    ));
}

#[test]
fn other_pem_blocks_are_rejected() {
    let a = ca("Other Blocks Root");
    for label in [
        "PUBLIC KEY",
        "X509 CRL",
        "TRUSTED CERTIFICATE",
        "CERTIFICATE REQUEST",
    ] {
        let body = format!(
            "{}-----BEGIN {label}-----\nAAAA\n-----END {label}-----\n",
            a.pem
        );
        match reject(body.as_bytes(), &policy()) {
            ValidationError::ForbiddenBlock { label: got } => assert_eq!(got, label),
            other => panic!("{label}: {other:?}"),
        }
    }
}

#[test]
fn malformed_pem_is_rejected() {
    let a = ca("Malformed Root");
    let without_end = a.pem.replace("-----END CERTIFICATE-----", "");
    let bad_base64 = a.pem.replacen("MII", "M!I", 1);
    let mismatched_end = a.pem.replace("END CERTIFICATE", "END CERTIFICATES");
    let nested = format!("-----BEGIN CERTIFICATE-----\n{}", a.pem);
    for body in [without_end, bad_base64, mismatched_end, nested] {
        let e = reject(body.as_bytes(), &policy());
        assert!(
            matches!(e, ValidationError::MalformedPem { .. }),
            "{body}: {e:?}"
        );
        assert_eq!(e.rule(), "malformed_pem");
    }
}

#[test]
fn non_x509_content_is_rejected() {
    let a = ca("Not X509 Root");
    // A well-formed CERTIFICATE block holding something that is not a certificate, second.
    let junk = encode_pem(b"\x30\x03\x02\x01\x05");
    let body = format!("{}{}", a.pem, junk);
    let e = reject(body.as_bytes(), &policy());
    assert!(
        matches!(e, ValidationError::NotCertificate { index: 1, .. }),
        "{e:?}"
    );
    assert_eq!(e.rule(), "not_x509");
    assert!(std::error::Error::source(&e).is_some());
    // Binary that is neither PEM nor DER.
    let e = reject(&[0x00, 0xff, 0x13, 0x37, 0x02], &policy());
    assert!(
        matches!(e, ValidationError::NotCertificate { index: 0, .. }),
        "{e:?}"
    );
    // DER followed by junk is not "a single DER certificate".
    let mut der = a.der.clone();
    der.extend_from_slice(b"trailing");
    let e = reject(&der, &policy());
    assert!(
        matches!(e, ValidationError::NotCertificate { index: 0, .. }),
        "{e:?}"
    );
    // Two DER certificates back to back neither.
    let two = [a.der.clone(), ca("Second").der].concat();
    assert!(matches!(
        reject(&two, &policy()),
        ValidationError::NotCertificate { .. }
    ));
}

#[test]
fn leaf_is_rejected() {
    let root = ca("Leaf Issuer");
    let leaf = issued_by(&root, "server.example", false);
    let body = format!("{}{}", root.pem, leaf.pem);
    let e = reject(body.as_bytes(), &policy());
    match &e {
        ValidationError::NotCa { subject } => assert!(subject.contains("server.example")),
        other => panic!("{other:?}"),
    }
    assert_eq!(e.rule(), "not_ca");
    // A self-signed v3 certificate without cA=TRUE is not a CA either.
    let t = now();
    let selfie = self_signed(
        "Self Leaf",
        false,
        t - Duration::days(1),
        t + Duration::days(1),
    );
    assert!(matches!(
        reject(selfie.pem.as_bytes(), &policy()),
        ValidationError::NotCa { .. }
    ));
}

#[test]
fn v1_certificate_that_is_not_self_signed_is_rejected() {
    let root = ca("V1 Issuer");
    let leaf = issued_by(&root, "v1 leaf", false);
    let v1 = rebuild(&leaf.der, true, None, &root.key);
    let parsed = Cert::from_der(&v1).unwrap();
    assert!(parsed.is_v1 && !parsed.self_issued);
    assert!(matches!(
        reject(&v1, &policy()),
        ValidationError::NotCa { .. }
    ));
}

#[test]
fn expired_ca_is_rejected() {
    let t = now();
    let old = self_signed(
        "Old Root",
        true,
        t - Duration::days(400),
        t - Duration::days(35),
    );
    let e = reject(old.pem.as_bytes(), &policy());
    match &e {
        ValidationError::Expired { subject, not_after } => {
            assert!(subject.contains("Old Root"));
            assert_eq!(*not_after, t - Duration::days(35));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(e.rule(), "expired");
    let msg = e.to_string();
    assert!(
        msg.starts_with("certificate '") && msg.contains("expired at "),
        "{msg}"
    );
    assert!(msg.ends_with('Z'), "{msg}");
}

#[test]
fn not_yet_valid_ca_is_rejected() {
    let t = now();
    let future = self_signed(
        "Future Root",
        true,
        t + Duration::days(2),
        t + Duration::days(400),
    );
    let e = reject(future.pem.as_bytes(), &policy());
    match &e {
        ValidationError::NotYetValid { not_before, .. } => {
            assert_eq!(*not_before, t + Duration::days(2))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(e.rule(), "not_yet_valid");
}

#[test]
fn clock_skew_of_five_minutes_is_allowed_both_ways() {
    assert_eq!(CLOCK_SKEW, std::time::Duration::from_secs(300));
    let t = now();
    let (nb, na) = (t, t + Duration::days(1));
    let c = self_signed("Skew Root", true, nb, na);
    let body = c.pem.as_bytes();
    let skew = Duration::minutes(5);
    let second = Duration::seconds(1);
    // notBefore side
    assert!(validate(body, &policy_at(nb - skew)).is_ok());
    assert!(validate(body, &policy_at(nb - skew + second)).is_ok());
    assert!(matches!(
        reject(body, &policy_at(nb - skew - second)),
        ValidationError::NotYetValid { .. }
    ));
    // notAfter side
    assert!(validate(body, &policy_at(na + skew)).is_ok());
    assert!(validate(body, &policy_at(na + skew - second)).is_ok());
    assert!(matches!(
        reject(body, &policy_at(na + skew + second)),
        ValidationError::Expired { .. }
    ));
}

#[test]
fn tampered_self_signature_is_rejected() {
    let a = ca("Tampered Root");
    let mut der = a.der.clone();
    // The DER ends with the signature BIT STRING; its last byte is the end of ECDSA's `s`.
    *der.last_mut().unwrap() ^= 0x01;
    let parsed = Cert::from_der(&der).unwrap();
    assert_eq!(parsed.self_signature_ok, Some(false));
    let e = reject(encode_pem(&der).as_bytes(), &policy());
    match &e {
        ValidationError::BadSignature { subject } => assert!(subject.contains("Tampered Root")),
        other => panic!("{other:?}"),
    }
    assert_eq!(e.rule(), "bad_signature");
    // Same through the DER path.
    assert!(matches!(
        reject(&der, &policy()),
        ValidationError::BadSignature { .. }
    ));
}

#[test]
fn unpinned_ca_is_rejected() {
    let a = ca("Pinned");
    let b = ca("Not Pinned");
    let pins = [Cert::from_der(&a.der).unwrap().sha256];
    let p = Policy {
        now: SystemTime::now(),
        pins: &pins,
    };
    assert!(validate(a.pem.as_bytes(), &p).is_ok());
    let body = format!("{}{}", a.pem, b.pem);
    let e = reject(body.as_bytes(), &p);
    match &e {
        ValidationError::NotPinned { subject, sha256 } => {
            assert!(subject.contains("Not Pinned"));
            assert_eq!(*sha256, Cert::from_der(&b.der).unwrap().fingerprint());
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(e.rule(), "not_pinned");
}

#[test]
fn one_bad_certificate_rejects_the_whole_download() {
    let good = ca("Good Root");
    let t = now();
    let bad = self_signed(
        "Bad Root",
        true,
        t - Duration::days(10),
        t - Duration::days(1),
    );
    let body = format!("{}{}", good.pem, bad.pem);
    assert!(matches!(
        reject(body.as_bytes(), &policy()),
        ValidationError::Expired { .. }
    ));
}
