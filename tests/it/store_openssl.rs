//! The folder as OpenSSL sees it: `-CApath` lookups through the hash files, the hash names
//! against `openssl x509 -subject_hash`, and a deterministic bundle (SPEC 7).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::store_support::*;
use certsync::store::UNPRODUCED_PASSES;

/// `openssl verify` with only the folder as trust (no system CAs).
fn verify(dir: &Path, leaf: &Path) -> std::process::Output {
    Command::new("openssl")
        .args(["verify", "-no-CAfile", "-no-CAstore", "-CApath"])
        .arg(dir)
        .arg(leaf)
        .output()
        .expect("run openssl")
}

#[test]
fn capath_folder_verifies_leaves_of_stored_cas_only() {
    let mut s = Scenario::with(|o| o.bundle = None);
    let dir = s.dir.clone();
    let (known, other, unknown) = (
        TestCa::new("Known CA"),
        TestCa::new("Other CA"),
        TestCa::new("Unknown CA"),
    );
    s.apply_ok(
        &Pass::new()
            .instance("a", &[&known])
            .instance("b", &[&other]),
        t0(),
    );

    let good = s.tmp.path().join("good.pem");
    std::fs::write(&good, known.issue_leaf_pem()).unwrap();
    let out = verify(&dir, &good);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(": OK"));

    let bad = s.tmp.path().join("bad.pem");
    std::fs::write(&bad, unknown.issue_leaf_pem()).unwrap();
    let out = verify(&dir, &bad);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unable to get local issuer certificate"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // After the CA leaves (overlap 0 here by a fresh store) the leaf no longer verifies.
    s.opts.rotation_overlap = Duration::ZERO;
    s.reopen();
    for _ in 0..UNPRODUCED_PASSES {
        s.apply(&Pass::new().instance("b", &[&other]), t0());
    }
    assert!(!verify(&dir, &good).status.success());
}

#[test]
fn hash_file_names_match_openssl_and_same_subjects_count_by_fingerprint() {
    // No overlap, so that a CA leaves at once below.
    let mut s = Scenario::with(|o| o.rotation_overlap = Duration::ZERO);
    let dir = s.dir.clone();
    // Same subject, different keys: one hash, two files.
    let (x, y) = (TestCa::new("Twin CA"), TestCa::new("Twin CA"));
    let z = TestCa::new("Single CA");
    assert_eq!(x.cert.subject_hash, y.cert.subject_hash);
    s.apply(
        &Pass::new().instance("a", &[&x, &z]).instance("b", &[&y]),
        t0(),
    );
    let hash = x.cert.subject_hash_hex();
    let (first, second) = if x.fp() < y.fp() { (&x, &y) } else { (&y, &x) };
    assert_eq!(read(dir.join(format!("{hash}.0"))), first.pem());
    assert_eq!(read(dir.join(format!("{hash}.1"))), second.pem());
    assert!(!dir.join(format!("{hash}.2")).exists());

    let mut hash_files = 0;
    for name in names(&dir) {
        let Some((h, n)) = name.split_once('.') else {
            continue;
        };
        if h.len() != 8 || n.parse::<u32>().is_err() {
            continue;
        }
        hash_files += 1;
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-subject_hash", "-in"])
            .arg(dir.join(&name))
            .output()
            .expect("run openssl");
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), h, "{name}");
    }
    assert_eq!(hash_files, 3);

    // When the first twin goes, the second moves down to .0 and .1 is removed.
    s.apply(
        &Pass::new().instance("a", &[&z]).instance("b", &[second]),
        t0(),
    );
    assert_eq!(read(dir.join(format!("{hash}.0"))), second.pem());
    assert!(!dir.join(format!("{hash}.1")).exists());
}

#[test]
fn bundle_is_byte_identical_across_runs_and_input_orders() {
    let cas = numbered_cas("CA", 6);
    let run = |order: &[usize], reverse_certs: bool| -> (Vec<u8>, Vec<u8>) {
        let mut s = Scenario::new();
        let input = order.iter().fold(Pass::new(), |input, &i| {
            let mut certs = vec![&cas[i], &cas[(i + 1) % cas.len()]];
            if reverse_certs {
                certs.reverse();
            }
            input.instance(&format!("i{i}"), &certs)
        });
        s.apply_ok(&input, t0());
        (
            std::fs::read(s.path("ca-bundle.crt")).unwrap(),
            std::fs::read(s.path(".certsync-manifest.json")).unwrap(),
        )
    };
    let (bundle, manifest) = run(&[0, 1, 2, 3, 4, 5], false);
    let (bundle2, _) = run(&[5, 3, 1, 0, 2, 4], true);
    assert_eq!(bundle, bundle2);
    let (bundle3, manifest3) = run(&[0, 1, 2, 3, 4, 5], false);
    assert_eq!(bundle, bundle3);
    assert_eq!(manifest, manifest3);

    let mut sorted: Vec<&TestCa> = cas.iter().collect();
    sorted.sort_by_key(|c| c.fp());
    let expected: String = sorted.iter().map(|c| c.pem()).collect();
    assert_eq!(String::from_utf8(bundle).unwrap(), expected);

    // openssl reads the bundle as a CAfile: all six certificates.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("bundle.pem");
    std::fs::write(&path, &expected).unwrap();
    let out = Command::new("openssl")
        .args(["storeutl", "-noout", "-certs"])
        .arg(&path)
        .output()
        .expect("run openssl");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Total found: 6"));
}
