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
    assert_eq!(parsed.self_signature_ok(), Some(true));
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
    assert_eq!(parsed.self_signature_ok(), None);
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
    assert_eq!(parsed.self_signature_ok(), Some(false));
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

// ---------------------------------------------------------------------------------------------
// every time X.509 can express (SPEC 6): no date arithmetic may overflow or panic

/// RFC 5280 4.1.2.5: "no well-defined expiration date" is `99991231235959Z`.
fn no_expiry() -> OffsetDateTime {
    time::macros::datetime!(9999-12-31 23:59:59 UTC)
}

#[test]
fn ca_valid_until_9999_12_31_is_accepted_not_a_panic() {
    let forever = self_signed("Forever Root", true, now() - Duration::days(1), no_expiry());
    assert!(
        forever.der.windows(15).any(|w| w == b"99991231235959Z"),
        "rcgen wrote notAfter as GeneralizedTime 99991231235959Z"
    );
    let certs = accept(forever.pem.as_bytes());
    assert_eq!(certs[0].not_after, no_expiry());
    // Also in a chain, and at the very last second X.509 can name.
    let sub = issued_by(&forever, "Forever Intermediate", true);
    let body = format!("{}{}", sub.pem, forever.pem);
    assert_eq!(accept(body.as_bytes()).len(), 2);
    assert!(validate(forever.pem.as_bytes(), &policy_at(no_expiry())).is_ok());
}

#[test]
fn not_before_at_the_ends_of_x509_time_is_handled() {
    // Year 0 (GeneralizedTime 00000101000000Z) and 1950 (UTCTime 500101000000Z, the earliest
    // UTCTime) with the no-expiry notAfter: valid now.
    for (not_before, encoded) in [
        (
            time::macros::datetime!(0000-01-01 00:00:00 UTC),
            &b"00000101000000Z"[..],
        ),
        (
            time::macros::datetime!(1950-01-01 00:00:00 UTC),
            &b"500101000000Z"[..],
        ),
    ] {
        let old = self_signed("Ancient Root", true, not_before, no_expiry());
        assert!(
            old.der.windows(encoded.len()).any(|w| w == encoded),
            "{not_before}"
        );
        let certs = accept(old.pem.as_bytes());
        assert_eq!(certs[0].not_before, not_before);
        // And at the first second X.509 can name, 5 minutes of skew before year 0 included.
        assert!(validate(old.pem.as_bytes(), &policy_at(not_before)).is_ok());
    }
    // notBefore in 9999: not valid yet, and no panic on the way.
    let late = self_signed("Late Root", true, no_expiry(), no_expiry());
    let e = reject(late.pem.as_bytes(), &policy());
    match &e {
        ValidationError::NotYetValid { not_before, .. } => assert_eq!(*not_before, no_expiry()),
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("9999-12-31T23:59:59Z"), "{e}");
}

#[test]
fn a_clock_beyond_year_9999_is_not_a_panic() {
    // `OffsetDateTime::from(SystemTime)` panics past 9999: the policy's clock saturates.
    let far = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(20_000 * 366 * 86_400);
    let p = Policy {
        now: far,
        pins: &[],
    };
    let a = ca("Ordinary Root");
    assert!(matches!(
        reject(a.pem.as_bytes(), &p),
        ValidationError::Expired { .. }
    ));
    let forever = self_signed("Forever Root", true, now() - Duration::days(1), no_expiry());
    assert!(validate(forever.pem.as_bytes(), &p).is_ok());
}

// ---------------------------------------------------------------------------------------------
// weak keys and digests (SPEC 6): their own rules, checked before the signature. rcgen cannot
// make RSA-1024 or MD5 certificates, so these are made by the `openssl` CLI in a temp dir.

/// A self-signed CA made by `openssl req -x509` with `args` (key and digest options), as PEM.
fn openssl_ca(dir: &std::path::Path, name: &str, args: &[&str]) -> String {
    let key = dir.join(format!("{name}.key"));
    let out = dir.join(format!("{name}.pem"));
    let status = std::process::Command::new("openssl")
        .args(["req", "-x509", "-nodes", "-days", "30"])
        .arg("-subj")
        .arg(format!("/CN={name}"))
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&out)
        .args(args)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run openssl (needed by this test)");
    assert!(status.success(), "openssl req {args:?} failed");
    std::fs::read_to_string(&out).unwrap()
}

/// The signature algorithm as `openssl x509 -text` names it (the oracle for what was made).
fn openssl_signature_algorithm(pem: &str, dir: &std::path::Path) -> String {
    let path = dir.join("oracle.pem");
    std::fs::write(&path, pem).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Signature Algorithm: "))
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[test]
fn weak_keys_are_rejected_as_weak_key_not_bad_signature() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, args, shown) in [
        (
            "RSA1024",
            &["-newkey", "rsa:1024", "-sha256"][..],
            "RSA 1024 bits",
        ),
        // The key is checked before the digest.
        (
            "RSA1024MD5",
            &["-newkey", "rsa:1024", "-md5"][..],
            "RSA 1024 bits",
        ),
        (
            "K256",
            &[
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:secp256k1",
                "-sha256",
            ][..],
            "EC on secp256k1",
        ),
    ] {
        let pem = openssl_ca(tmp.path(), name, args);
        let e = reject(pem.as_bytes(), &policy());
        match &e {
            ValidationError::WeakKey { subject, key } => {
                assert!(subject.contains(name), "{subject}");
                assert_eq!(key, shown);
            }
            other => panic!("{name}: {other:?}"),
        }
        assert_eq!(e.rule(), "weak_key");
        assert!(e.to_string().contains(shown), "{e}");
    }
}

#[test]
fn weak_digests_are_rejected_as_weak_digest_not_bad_signature() {
    let tmp = tempfile::tempdir().unwrap();
    let rsa = tmp.path().join("rsa2048.key");
    assert!(
        std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out"
            ])
            .arg(&rsa)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
            .success()
    );
    let rsa = rsa.to_str().unwrap();
    for (name, args, algorithm, oracle) in [
        (
            "MD5",
            vec!["-key", rsa, "-md5"],
            "md5WithRSAEncryption",
            "md5WithRSAEncryption",
        ),
        (
            "SHA1",
            vec!["-key", rsa, "-sha1"],
            "sha1WithRSAEncryption",
            "sha1WithRSAEncryption",
        ),
        (
            "SHA224",
            vec!["-key", rsa, "-sha224"],
            "sha224WithRSAEncryption",
            "sha224WithRSAEncryption",
        ),
        (
            "PSS-SHA1",
            vec!["-key", rsa, "-sha1", "-sigopt", "rsa_padding_mode:pss"],
            "RSASSA-PSS with SHA-1",
            "rsassaPss",
        ),
        (
            "ECDSA-SHA1",
            vec![
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-sha1",
            ],
            "ecdsa-with-SHA1",
            "ecdsa-with-SHA1",
        ),
    ] {
        let pem = openssl_ca(tmp.path(), name, &args);
        assert_eq!(
            openssl_signature_algorithm(&pem, tmp.path()),
            oracle,
            "{name}"
        );
        let e = reject(pem.as_bytes(), &policy());
        match &e {
            ValidationError::WeakDigest {
                subject,
                algorithm: got,
            } => {
                assert!(subject.contains(name), "{subject}");
                assert_eq!(got, algorithm);
            }
            other => panic!("{name}: {other:?}"),
        }
        assert_eq!(e.rule(), "weak_digest");
    }

    // An intermediate signed with SHA-1 by a strong root: its signature is never verified
    // here (it is not self-issued), and the digest still rejects it.
    let root_pem = openssl_ca(tmp.path(), "Strong Root", &["-key", rsa, "-sha256"]);
    let dir = tmp.path();
    let run = |args: &[&str]| {
        let ok = std::process::Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok, "openssl {args:?}");
    };
    std::fs::write(dir.join("ext.cnf"), "basicConstraints=critical,CA:TRUE\n").unwrap();
    run(&[
        "req",
        "-new",
        "-nodes",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-keyout",
        "sub.key",
        "-out",
        "sub.csr",
        "-subj",
        "/CN=SHA1 Intermediate",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "sub.csr",
        "-CA",
        "Strong Root.pem",
        "-CAkey",
        rsa,
        "-set_serial",
        "2",
        "-days",
        "30",
        "-sha1",
        "-extfile",
        "ext.cnf",
        "-out",
        "sub.pem",
    ]);
    let sub_pem = std::fs::read_to_string(dir.join("sub.pem")).unwrap();
    assert!(validate(root_pem.as_bytes(), &policy()).is_ok());
    let body = format!("{sub_pem}{root_pem}");
    match reject(body.as_bytes(), &policy()) {
        ValidationError::WeakDigest { subject, algorithm } => {
            assert!(subject.contains("SHA1 Intermediate"), "{subject}");
            assert_eq!(algorithm, "sha1WithRSAEncryption");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn strong_openssl_made_cas_are_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, args) in [
        ("RSA2048", &["-newkey", "rsa:2048", "-sha256"][..]),
        // ring verifies PSS with the salt as long as the digest (as TLS 1.3 uses it).
        (
            "PSS-SHA256",
            &[
                "-newkey",
                "rsa:2048",
                "-sha256",
                "-sigopt",
                "rsa_padding_mode:pss",
                "-sigopt",
                "rsa_pss_saltlen:digest",
            ][..],
        ),
        (
            "P384",
            &[
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-384",
                "-sha384",
            ][..],
        ),
        ("Ed25519", &["-newkey", "ed25519"][..]),
    ] {
        let pem = openssl_ca(tmp.path(), name, args);
        if let Err(e) = validate(pem.as_bytes(), &policy()) {
            panic!("{name}: {e} ({e:?})");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// limits (SPEC 6)

#[test]
fn more_than_16_certificates_are_rejected_before_any_is_decoded() {
    let cas: Vec<Made> = (0..9).map(|i| ca(&format!("Many {i}"))).collect();
    // 16 blocks (duplicates count) are accepted.
    let sixteen: String = cas[..8]
        .iter()
        .chain(&cas[..8])
        .map(|c| c.pem.as_str())
        .collect();
    assert_eq!(accept(sixteen.as_bytes()).len(), 8);
    // 17 are not.
    let seventeen = format!("{sixteen}{}", cas[8].pem);
    let e = reject(seventeen.as_bytes(), &policy());
    match &e {
        ValidationError::TooManyCertificates { count, limit } => {
            assert_eq!((*count, *limit), (17, 16));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(e.rule(), "too_many_certificates");
    let msg = e.to_string();
    assert!(msg.contains("17") && msg.contains("16"), "{msg}");
    // Thousands of blocks whose content is not even a certificate: refused for their number,
    // so none of them was decoded first.
    let junk = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".repeat(5000);
    assert!(matches!(
        reject(junk.as_bytes(), &policy()),
        ValidationError::TooManyCertificates { count: 5000, .. }
    ));
}
