//! `Cert::subject_hash_hex` against the real oracle, `openssl x509 -noout -subject_hash`: on
//! every certificate of the system store, and on generated certificates with the subjects
//! where canonicalisation matters (case, whitespace, string types, multi-valued RDNs).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use certsync::cert::{Cert, encode_pem, read_certs_lenient};
use rcgen::string::BmpString;
use rcgen::{CertificateParams, DistinguishedName, DnType, DnValue, KeyPair};

/// What `openssl x509 -noout -subject_hash` prints for one DER certificate.
fn openssl_hash(der: &[u8]) -> String {
    let mut child = Command::new("openssl")
        .args(["x509", "-noout", "-subject_hash"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the openssl CLI is needed as the oracle");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(encode_pem(der).as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "openssl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Compares ours with openssl's for each certificate, from four threads (openssl starts
/// slowly, about 17 ms a process); returns the mismatches.
fn mismatches(certs: &[Cert]) -> Vec<String> {
    let chunk = certs.len().div_ceil(4).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = certs
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .filter_map(|c| {
                            let theirs = openssl_hash(&c.der);
                            let ours = c.subject_hash_hex();
                            (ours != theirs)
                                .then(|| format!("{}: ours {ours}, openssl {theirs}", c.subject))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

#[test]
fn system_store_hashes_match_openssl() {
    let dir = Path::new("/etc/ssl/certs");
    let mut by_fingerprint: BTreeMap<[u8; 32], Cert> = BTreeMap::new();
    let mut hash_links: Vec<(String, [u8; 32])> = Vec::new();
    let mut files = 0;
    for entry in std::fs::read_dir(dir).expect("the system store /etc/ssl/certs is needed") {
        let path = entry.unwrap().path();
        // read follows the symlinks the store is made of; folders and dangling links fail
        let Ok(data) = std::fs::read(&path) else {
            continue;
        };
        let Ok(certs) = read_certs_lenient(&data) else {
            continue;
        };
        files += 1;
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if certs.len() == 1 && is_hash_link_name(&name) {
            hash_links.push((name, certs[0].sha256));
        }
        for c in certs {
            by_fingerprint.insert(c.sha256, c);
        }
    }
    let bundle = std::fs::read(dir.join("ca-certificates.crt")).expect("system bundle");
    for c in read_certs_lenient(&bundle).expect("system bundle parses") {
        by_fingerprint.insert(c.sha256, c);
    }
    let certs: Vec<Cert> = by_fingerprint.values().cloned().collect();
    assert!(
        files > 10 && certs.len() > 10,
        "only {files} files / {} certificates in the system store",
        certs.len()
    );

    let bad = mismatches(&certs);
    assert!(bad.is_empty(), "{} mismatches: {bad:#?}", bad.len());

    // A second oracle for free: `openssl rehash` named the store's <hash>.<n> links.
    for (name, fp) in &hash_links {
        let ours = by_fingerprint[fp].subject_hash_hex();
        assert_eq!(&name[..8], ours, "link {name}");
    }
}

fn is_hash_link_name(name: &str) -> bool {
    let Some((hash, n)) = name.split_once('.') else {
        return false;
    };
    hash.len() == 8
        && hash
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        && !n.is_empty()
        && n.bytes().all(|b| b.is_ascii_digit())
}

fn rcgen_cert(entries: Vec<(DnType, DnValue)>) -> Cert {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    for (ty, value) in entries {
        dn.push(ty, value);
    }
    params.distinguished_name = dn;
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Cert::from_der(cert.der()).unwrap()
}

const EMAIL: &[u64] = &[1, 2, 840, 113549, 1, 9, 1];
const DC: &[u64] = &[0, 9, 2342, 19200300, 100, 1, 25];
const SERIAL: &[u64] = &[2, 5, 4, 5];

#[test]
fn tricky_rcgen_subjects_match_openssl() {
    use DnType::*;
    let utf8 = |s: &str| DnValue::Utf8String(s.into());
    let printable = |s: &str| DnValue::PrintableString(s.try_into().unwrap());
    let subjects: Vec<Vec<(DnType, DnValue)>> = vec![
        vec![
            (CommonName, utf8("MiXeD CaSe Name")),
            (OrganizationName, printable("ACME Corp")),
        ],
        vec![(CommonName, utf8("extra   internal \t spaces"))],
        vec![
            (CommonName, printable("  leading and trailing  ")),
            (CountryName, printable("DE")),
        ],
        vec![(CommonName, utf8(" \t\n whitespace kinds \r\x0b\x0c end "))],
        vec![(CommonName, utf8("Ünïcödé ÄÖÜ Straße 中文 Grüße"))],
        vec![
            (OrganizationName, utf8("  ÉCOLE   Supérieure  ")),
            (CommonName, utf8("X")),
        ],
        vec![(
            CommonName,
            DnValue::BmpString(BmpString::try_from("BMP Ĉu ŝi  Mixed").unwrap()),
        )],
        vec![(
            CommonName,
            DnValue::TeletexString("T61 MiXed  Case".try_into().unwrap()),
        )],
        vec![(
            CommonName,
            DnValue::Ia5String("IA5 MiXed".try_into().unwrap()),
        )],
        vec![(
            CommonName,
            DnValue::UniversalString("Univ Ĉ MIX".try_into().unwrap()),
        )],
        vec![
            (
                CustomDnType(EMAIL.to_vec()),
                DnValue::Ia5String("Admin@Example.COM".try_into().unwrap()),
            ),
            (CommonName, utf8("with email")),
        ],
        vec![
            (
                CustomDnType(DC.to_vec()),
                DnValue::Ia5String("Example".try_into().unwrap()),
            ),
            (CustomDnType(SERIAL.to_vec()), printable("AB 12")),
        ],
        vec![(CommonName, utf8(""))],
        vec![],
    ];
    let certs: Vec<Cert> = subjects.into_iter().map(rcgen_cert).collect();
    // Sanity: canonicalisation is actually exercised (different raw names, same hash).
    let a = rcgen_cert(vec![(CommonName, utf8("Same  NAME"))]);
    let b = rcgen_cert(vec![(CommonName, printable(" same name "))]);
    assert_eq!(a.subject_hash, b.subject_hash);
    let bad = mismatches(&certs);
    assert!(bad.is_empty(), "{bad:#?}");
}

/// Subjects rcgen cannot write (multi-valued RDNs, repeated attribute types) are made with
/// `openssl req`.
#[test]
fn multi_valued_and_repeated_rdns_match_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let subjects = [
        "/CN=Multi+O=Valued RDN/C=DE",
        "/O=Zeta+CN=alpha/OU=x",
        "/CN=alpha+O=Zeta/OU=x",
        "/OU=First/OU=second  UNIT/CN=Repeat",
        "/C=CN/O=Huawei+OU=Cloud  BU+CN=GaussDB  NoSQL CA",
    ];
    let mut certs = Vec::new();
    for (i, subject) in subjects.iter().enumerate() {
        let out = dir.path().join(format!("{i}.pem"));
        let key = dir.path().join(format!("{i}.key"));
        let status = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args([
                "-nodes",
                "-days",
                "1",
                "-multivalue-rdn",
                "-utf8",
                "-subj",
                subject,
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("openssl req");
        assert!(status.success(), "openssl req for {subject}");
        let data = std::fs::read(&out).unwrap();
        certs.extend(read_certs_lenient(&data).unwrap());
    }
    assert!(
        certs[0].subject.contains('+'),
        "not multi-valued: {}",
        certs[0].subject
    );
    // The order inside a multi-valued RDN does not matter: DER sorts a SET OF.
    assert_eq!(certs[1].subject_hash, certs[2].subject_hash);
    let bad = mismatches(&certs);
    assert!(bad.is_empty(), "{bad:#?}");
}
