//! The shapes of the trust folder beyond flat files (SPEC 7, issue 4): owner and group,
//! `write_mode = "in-place"`, `layout = "atomic-dir"` and switching layouts, the PKCS#12
//! truststore, and failures of one shape that leave the others and every old file intact.
//! These run as root (as CI does), so chown to another user is real.

mod store_support;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use certsync::store::truststore::{self, Opened};
use certsync::store::{Change, Layout, Store, StoreError, StoreOptions, WriteMode};
use store_support::*;

const HOUR: Duration = Duration::from_secs(3600);
const NOBODY: u32 = 65534;

fn p12_opts(dir: &Path) -> StoreOptions {
    StoreOptions {
        pkcs12: Some("truststore.p12".into()),
        ..opts(dir, HOUR)
    }
}

fn atomic(dir: &Path) -> StoreOptions {
    StoreOptions {
        layout: Layout::AtomicDir,
        ..p12_opts(dir)
    }
}

/// The fingerprints in a truststore opened with `password`, sorted; every entry trusted.
fn truststore_fps(path: &Path, password: &str) -> Vec<String> {
    let data = std::fs::read(path).unwrap();
    match truststore::open(&data, password) {
        Opened::Certs(certs) => {
            assert!(certs.iter().all(|(_, trusted)| *trusted), "{path:?}");
            let mut fps: Vec<String> = certs
                .iter()
                .map(|(der, _)| certsync::cert::Cert::from_der(der).unwrap().fingerprint())
                .collect();
            fps.sort();
            fps
        }
        other => panic!("{}: {other:?}", path.display()),
    }
}

fn sorted(fps: &[String]) -> Vec<String> {
    let mut v = fps.to_vec();
    v.sort();
    v
}

fn uid_gid(path: &Path) -> (u32, u32) {
    let m = std::fs::symlink_metadata(path).unwrap();
    (m.uid(), m.gid())
}

fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path)
        .map(|m| m.file_type().is_symlink())
        .unwrap_or(false)
}

/// Visible names (not hidden) of the folder.
fn visible(dir: &Path) -> Vec<String> {
    names(dir)
        .into_iter()
        .filter(|n| !n.starts_with('.'))
        .collect()
}

/// The `..<timestamp>` folders.
fn generations(dir: &Path) -> Vec<String> {
    names(dir)
        .into_iter()
        .filter(|n| n.starts_with("..") && n != "..data")
        .collect()
}

// ---- owner and group ----

#[test]
fn owner_and_group_are_given_to_every_file_and_a_change_rewrites() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    let (a, b) = (TestCa::new("A"), TestCa::new("B"));
    let mut o = p12_opts(&dir);
    o.owner = Some(NOBODY);
    o.group = Some(NOBODY);
    o.mode = 0o640;
    let mut store = Store::open(o.clone(), false).unwrap();
    let input = pass(
        vec![
            entry("a", "international", &[&a]),
            entry("b", "international", &[&b]),
        ],
        &[],
    );
    let report = store.apply(&input, t0(), false);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    for name in visible(&dir) {
        assert_eq!(uid_gid(&dir.join(&name)), (NOBODY, NOBODY), "{name}");
        assert_eq!(facts(dir.join(&name)).2, 0o640, "{name}");
    }
    // The manifest is certsync's own: not given away.
    assert_eq!(uid_gid(&dir.join(".certsync-manifest.json")), (0, 0));

    // Unchanged owner: nothing is rewritten.
    let before = snapshot(&dir);
    let report = store.apply(&input, t0(), false);
    assert!(!report.changed(), "{:?}", report.changed_files);
    assert_eq!(snapshot(&dir), before);
    drop(store);

    // Another group only: every file is rewritten (atomically) with it; the owner stays.
    o.group = Some(0);
    let mut store = Store::open(o, false).unwrap();
    let report = store.apply(&input, t0(), false);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(matches!(report.entries[0].result, Ok(Change::Updated)));
    for name in visible(&dir) {
        assert_eq!(uid_gid(&dir.join(&name)), (NOBODY, 0), "{name}");
    }
}

#[test]
fn owner_in_atomic_dir_layout_is_on_the_files_behind_the_links() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    let a = TestCa::new("A");
    let mut o = atomic(&dir);
    o.owner = Some(NOBODY);
    let mut store = Store::open(o, false).unwrap();
    let report = store.apply(
        &pass(vec![entry("a", "international", &[&a])], &[]),
        t0(),
        false,
    );
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    for name in visible(&dir) {
        let m = std::fs::metadata(dir.join(&name)).unwrap();
        assert_eq!(m.uid(), NOBODY, "{name}");
    }
}

// ---- write_mode = "in-place" ----

#[test]
fn in_place_keeps_the_inode_of_existing_files_and_creates_new_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    let (a1, a2) = (TestCa::new("A1"), TestCa::new("A2"));
    let mut o = opts(&dir, Duration::ZERO);
    o.write_mode = WriteMode::InPlace;
    let mut store = Store::open(o.clone(), false).unwrap();
    store.apply(
        &pass(vec![entry("a", "international", &[&a1])], &[]),
        t0(),
        false,
    );
    let file = dir.join("a-international.crt");
    let bundle = dir.join("ca-bundle.crt");
    let (inode, inode_bundle) = (facts(&file).0, facts(&bundle).0);

    let report = store.apply(
        &pass(vec![entry("a", "international", &[&a2])], &[]),
        t0(),
        false,
    );
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(matches!(report.entries[0].result, Ok(Change::Updated)));
    assert_eq!(read(&file), a2.pem());
    assert_eq!(facts(&file).0, inode, "the instance file keeps its inode");
    assert_eq!(read(&bundle), a2.pem());
    assert_eq!(facts(&bundle).0, inode_bundle, "the bundle keeps its inode");
    // The hash file of the new CA is a new name: created, and the old one removed.
    let hash = dir.join(format!("{}.0", a2.cert.subject_hash_hex()));
    assert_eq!(read(&hash), a2.pem());
    drop(store);

    // A new mode and owner are applied to the same inode too.
    o.mode = 0o600;
    o.owner = Some(NOBODY);
    let mut store = Store::open(o, false).unwrap();
    let report = store.apply(
        &pass(vec![entry("a", "international", &[&a2])], &[]),
        t0(),
        false,
    );
    assert!(matches!(report.entries[0].result, Ok(Change::Updated)));
    assert_eq!(facts(&file).0, inode);
    assert_eq!(facts(&file).2, 0o600);
    assert_eq!(uid_gid(&file).0, NOBODY);
    assert_eq!(read(&file), a2.pem());

    // The same rotation in rename mode gives a new inode: the test above can fail.
    let mut store_rename = {
        drop(store);
        Store::open(opts(&dir, Duration::ZERO), false).unwrap()
    };
    store_rename.apply(
        &pass(vec![entry("a", "international", &[&a1])], &[]),
        t0(),
        false,
    );
    assert_ne!(facts(&file).0, inode);
}

// ---- layout = "atomic-dir" ----

#[test]
fn atomic_dir_links_every_visible_name_through_data() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    let (a, b) = (TestCa::new("A"), TestCa::new("B"));
    let mut store = Store::open(atomic(&dir), false).unwrap();
    let report = store.apply(
        &pass(
            vec![
                entry("a", "international", &[&a]),
                entry("b", "international", &[&b]),
            ],
            &[],
        ),
        t0(),
        false,
    );
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(report.changed());

    let gens = generations(&dir);
    assert_eq!(gens.len(), 1, "{:?}", names(&dir));
    let generation = &gens[0];
    // ..YYYY_MM_DD_HH_MM_SS.NNNNNNNNN
    assert_eq!(generation.len(), 31, "{generation}");
    assert_eq!(
        std::fs::read_link(dir.join("..data")).unwrap(),
        PathBuf::from(generation)
    );
    let mut expected = vec![
        "a-international.crt".to_string(),
        "b-international.crt".into(),
        "ca-bundle.crt".into(),
        "truststore.p12".into(),
        format!("{}.0", a.cert.subject_hash_hex()),
        format!("{}.0", b.cert.subject_hash_hex()),
    ];
    expected.sort();
    assert_eq!(visible(&dir), expected);
    assert_eq!(names(&dir.join(generation)), expected);
    for name in &expected {
        let path = dir.join(name);
        assert!(is_symlink(&path), "{name}");
        assert_eq!(
            std::fs::read_link(&path).unwrap(),
            Path::new("..data").join(name)
        );
        assert!(
            std::fs::metadata(&path).unwrap().is_file(),
            "{name} resolves"
        );
    }
    assert_eq!(read(dir.join("a-international.crt")), a.pem());
    assert_eq!(
        truststore_fps(&dir.join("truststore.p12"), "changeit"),
        sorted(&[a.fp(), b.fp()])
    );
    // The manifest stays in the top folder, a regular file, and records the layout and the
    // visible names.
    assert!(!is_symlink(&dir.join(".certsync-manifest.json")));
    let m = manifest(&dir);
    assert_eq!(m["layout"], "atomic-dir");
    let managed: Vec<String> = m["files"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(managed, expected);
}

#[test]
fn atomic_dir_swaps_the_whole_set_removes_old_generations_and_idles_when_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    let (a1, a2, b) = (TestCa::new("A1"), TestCa::new("A2"), TestCa::new("B"));
    let mut store = Store::open(atomic(&dir), false).unwrap();
    let t = t0();
    let first = pass(
        vec![
            entry("a", "international", &[&a1]),
            entry("b", "international", &[&b]),
        ],
        &[],
    );
    store.apply(&first, t, false);
    let gen1 = generations(&dir);

    // Nothing changed: no new generation, no write at all.
    let before = snapshot_all(&dir);
    let report = store.apply(&first, t, false);
    assert!(!report.changed());
    assert_eq!(snapshot_all(&dir), before);

    // A rotation: one new generation holding the whole new set; the old one is gone.
    let report = store.apply(
        &pass(
            vec![
                entry("a", "international", &[&a2]),
                entry("b", "international", &[&b]),
            ],
            &[],
        ),
        t + mins(1),
        false,
    );
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(matches!(report.entries[0].result, Ok(Change::Updated)));
    assert!(matches!(report.entries[1].result, Ok(Change::Unchanged)));
    let gen2 = generations(&dir);
    assert_eq!(gen2.len(), 1);
    assert_ne!(gen2, gen1);
    assert_eq!(read(dir.join("a-international.crt")), a2.pem() + &a1.pem());
    assert_eq!(read(dir.join("b-international.crt")), b.pem());
    assert_eq!(
        truststore_fps(&dir.join("truststore.p12"), "changeit"),
        sorted(&[a1.fp(), a2.fp(), b.fp()])
    );

    // Pruning an instance (after UNPRODUCED_PASSES passes without it) removes its visible
    // name; the bundle follows in the same swap.
    for _ in 1..certsync::store::UNPRODUCED_PASSES {
        store.apply(
            &pass(vec![entry("a", "international", &[&a2])], &[]),
            t + HOUR + mins(2),
            false,
        );
        assert!(dir.join("b-international.crt").exists());
    }
    let report = store.apply(
        &pass(vec![entry("a", "international", &[&a2])], &[]),
        t + HOUR + mins(2),
        false,
    );
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(!dir.join("b-international.crt").exists());
    assert!(!is_symlink(&dir.join("b-international.crt")));
    assert_eq!(read(dir.join("ca-bundle.crt")), a2.pem());
    assert_eq!(generations(&dir).len(), 1);
    assert_eq!(
        truststore_fps(&dir.join("truststore.p12"), "changeit"),
        vec![a2.fp()]
    );
}

/// Names, link targets and contents of every entry, hidden ones and generations included.
fn snapshot_all(dir: &Path) -> Vec<(String, Facts, Option<PathBuf>)> {
    let mut out = Vec::new();
    for name in names(dir) {
        let p = dir.join(&name);
        out.push((name.clone(), facts(&p), std::fs::read_link(&p).ok()));
        if std::fs::symlink_metadata(&p).unwrap().is_dir() {
            for inner in names(&p) {
                out.push((format!("{name}/{inner}"), facts(p.join(&inner)), None));
            }
        }
    }
    out
}

#[test]
fn switching_layouts_both_ways_keeps_every_file_and_touches_no_unmanaged_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    let (a, b) = (TestCa::new("A"), TestCa::new("B"));
    let input = pass(
        vec![
            entry("a", "international", &[&a]),
            entry("b", "international", &[&b, &a]),
        ],
        &[],
    );
    let mut store = Store::open(p12_opts(&dir), false).unwrap();
    store.apply(&input, t0(), false);
    std::fs::write(dir.join("notes.txt"), "mine\n").unwrap();
    let notes = facts(dir.join("notes.txt"));
    let contents = |dir: &Path| -> Vec<(String, Vec<u8>)> {
        visible(dir)
            .into_iter()
            .filter(|n| n != "notes.txt")
            .map(|n| (n.clone(), std::fs::read(dir.join(&n)).unwrap()))
            .collect()
    };
    let flat = contents(&dir);
    drop(store);

    // flat -> atomic-dir: same bytes behind symlinks; not a change of any file.
    let mut store = Store::open(atomic(&dir), false).unwrap();
    let report = store.apply(&input, t0(), false);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(!report.changed(), "{:?}", report.changed_files);
    assert_eq!(contents(&dir), flat);
    for (name, _) in &flat {
        assert!(is_symlink(&dir.join(name)), "{name}");
    }
    assert_eq!(generations(&dir).len(), 1);
    assert_eq!(manifest(&dir)["layout"], "atomic-dir");
    assert_eq!(facts(dir.join("notes.txt")), notes);
    drop(store);

    // atomic-dir -> flat: regular files again, ..data and generations gone.
    let mut store = Store::open(p12_opts(&dir), false).unwrap();
    let report = store.apply(&input, t0(), false);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(!report.changed());
    assert_eq!(contents(&dir), flat);
    for (name, _) in &flat {
        assert!(
            std::fs::symlink_metadata(dir.join(name)).unwrap().is_file(),
            "{name}"
        );
    }
    assert!(generations(&dir).is_empty(), "{:?}", names(&dir));
    assert!(!dir.join("..data").exists() && !is_symlink(&dir.join("..data")));
    assert!(manifest(&dir).get("layout").is_none());
    assert_eq!(facts(dir.join("notes.txt")), notes);
    assert_eq!(read(dir.join("notes.txt")), "mine\n");

    // And a rotation while switching back and forth still lands.
    drop(store);
    let c = TestCa::new("C");
    let mut store = Store::open(atomic(&dir), false).unwrap();
    for _ in 0..certsync::store::UNPRODUCED_PASSES {
        let report = store.apply(
            &pass(vec![entry("a", "international", &[&c])], &[]),
            t0(),
            false,
        );
        assert!(report.errors.is_empty(), "{:?}", report.errors);
    }
    assert_eq!(read(dir.join("a-international.crt")), c.pem() + &a.pem());
    assert!(!dir.join("b-international.crt").exists());
}

#[test]
fn a_foreign_data_link_is_not_taken_over() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    std::fs::create_dir_all(dir.join("theirs")).unwrap();
    std::os::unix::fs::symlink("theirs", dir.join("..data")).unwrap();
    let a = TestCa::new("A");
    let mut store = Store::open(atomic(&dir), false).unwrap();
    let report = store.apply(
        &pass(vec![entry("a", "international", &[&a])], &[]),
        t0(),
        false,
    );
    assert!(!report.changed());
    assert!(
        report.errors.iter().any(|e| matches!(
            e,
            StoreError::Unmanaged { path } if path.ends_with("..data")
        )),
        "{:?}",
        report.errors
    );
    assert_eq!(
        std::fs::read_link(dir.join("..data")).unwrap(),
        PathBuf::from("theirs")
    );
    assert!(!dir.join("a-international.crt").exists());
}

#[test]
fn leftover_generations_of_a_crash_are_removed_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    let a = TestCa::new("A");
    let mut store = Store::open(atomic(&dir), false).unwrap();
    store.apply(
        &pass(vec![entry("a", "international", &[&a])], &[]),
        t0(),
        false,
    );
    drop(store);
    let current = generations(&dir);
    // What a kill before the swap leaves: a generation nobody points to, and ..data_tmp.
    let stray = dir.join("..2001_01_01_00_00_00.000000001");
    std::fs::create_dir(&stray).unwrap();
    std::fs::write(stray.join("a-international.crt"), "half").unwrap();
    std::os::unix::fs::symlink("..2001_01_01_00_00_00.000000001", dir.join("..data_tmp")).unwrap();
    // A hidden folder that is not a generation is not certsync's.
    std::fs::create_dir(dir.join("..keep")).unwrap();

    let _store = Store::open(atomic(&dir), false).unwrap();
    assert_eq!(
        generations(&dir),
        [current[0].clone(), "..keep".to_string()]
    );
    assert!(!is_symlink(&dir.join("..data_tmp")));
    assert_eq!(read(dir.join("a-international.crt")), a.pem());
}

// ---- the PKCS#12 truststore ----

#[test]
fn truststore_holds_every_ca_and_is_rewritten_only_when_the_set_or_password_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    let (a1, a2, b) = (TestCa::new("A1"), TestCa::new("A2"), TestCa::new("B"));
    let mut o = p12_opts(&dir);
    let mut store = Store::open(o.clone(), false).unwrap();
    let t = t0();
    let first = pass(
        vec![
            entry("a", "international", &[&a1]),
            entry("b", "international", &[&b]),
        ],
        &[],
    );
    let report = store.apply(&first, t, false);
    let p12 = dir.join("truststore.p12");
    assert!(report.other.contains(&(p12.clone(), Change::Created)));
    assert_eq!(truststore_fps(&p12, "changeit"), sorted(&[a1.fp(), b.fp()]));
    assert_eq!(
        manifest(&dir)["files"]["truststore.p12"]["cas"],
        serde_json::json!(sorted(&[a1.fp(), b.fp()]))
    );

    // Same CAs: the (randomised) file is left alone, bytes and inode.
    let before = (std::fs::read(&p12).unwrap(), facts(&p12));
    let report = store.apply(&first, t, false);
    assert!(!report.changed());
    assert_eq!((std::fs::read(&p12).unwrap(), facts(&p12)), before);
    drop(store);
    let mut store = Store::open(o.clone(), false).unwrap();
    assert!(
        !store.apply(&first, t, false).changed(),
        "also after reopen"
    );

    // Another CA set: rewritten with the overlap CA still in it.
    let second = pass(
        vec![
            entry("a", "international", &[&a2]),
            entry("b", "international", &[&b]),
        ],
        &[],
    );
    let report = store.apply(&second, t + mins(1), false);
    assert!(report.other.contains(&(p12.clone(), Change::Updated)));
    assert_eq!(
        truststore_fps(&p12, "changeit"),
        sorted(&[a1.fp(), a2.fp(), b.fp()])
    );
    // The overlap ends: the old CA leaves the truststore as it leaves the other files.
    let report = store.apply(&second, t + HOUR + mins(2), false);
    assert!(report.other.contains(&(p12.clone(), Change::Updated)));
    assert_eq!(truststore_fps(&p12, "changeit"), sorted(&[a2.fp(), b.fp()]));
    drop(store);

    // A password file (trimmed): the same CAs, rewritten under the new password.
    let pw = tmp.path().join("p12-password");
    std::fs::write(&pw, "s3cret-pass\n").unwrap();
    o.pkcs12_password_file = Some(pw.clone());
    let mut store = Store::open(o, false).unwrap();
    let report = store.apply(&second, t + HOUR + mins(3), false);
    assert!(report.other.contains(&(p12.clone(), Change::Updated)));
    assert_eq!(
        truststore_fps(&p12, "s3cret-pass"),
        sorted(&[a2.fp(), b.fp()])
    );
    let data = std::fs::read(&p12).unwrap();
    assert!(matches!(
        truststore::open(&data, "changeit"),
        Opened::WrongPassword
    ));
    assert!(!store.apply(&second, t + HOUR + mins(4), false).changed());
    // The password never reaches the manifest.
    assert!(!read(dir.join(".certsync-manifest.json")).contains("s3cret"));
}

#[test]
fn sm2_cas_are_left_out_of_the_truststore_only() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    let (a, n) = (TestCa::new("A"), TestCa::new("National"));
    // The flag is what the validator sets for an SM2-signed CA (see validate_rules).
    let mut sm2 = n.cert.clone();
    sm2.sm2 = true;
    let mut national = entry("a", "national", &[]);
    national.certs = vec![sm2];
    let mut store = Store::open(p12_opts(&dir), false).unwrap();
    let report = store.apply(
        &pass(vec![entry("a", "international", &[&a]), national], &[]),
        t0(),
        false,
    );
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(read(dir.join("a-national.crt")), n.pem());
    assert!(read(dir.join("ca-bundle.crt")).contains(&n.pem()));
    assert_eq!(
        truststore_fps(&dir.join("truststore.p12"), "changeit"),
        vec![a.fp()]
    );
}

#[test]
fn truststore_failure_keeps_the_old_truststore_and_the_other_shapes_go_ahead() {
    for layout in [Layout::Flat, Layout::AtomicDir] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = trust_dir(&tmp);
        let (a1, a2) = (TestCa::new("A1"), TestCa::new("A2"));
        let pw = tmp.path().join("p12-password");
        std::fs::write(&pw, "first\n").unwrap();
        let o = StoreOptions {
            layout,
            pkcs12_password_file: Some(pw.clone()),
            ..p12_opts(&dir)
        };
        let mut store = Store::open(o, false).unwrap();
        store.apply(
            &pass(vec![entry("a", "international", &[&a1])], &[]),
            t0(),
            false,
        );
        let p12 = dir.join("truststore.p12");
        let old_p12 = std::fs::read(&p12).unwrap();

        // The password file is gone: the truststore cannot be made; the rest rotates.
        std::fs::remove_file(&pw).unwrap();
        let report = store.apply(
            &pass(vec![entry("a", "international", &[&a2])], &[]),
            t0(),
            false,
        );
        match &report.errors[..] {
            [
                e @ StoreError::PasswordFile {
                    path,
                    password_file,
                    ..
                },
            ] => {
                assert_eq!(*path, p12);
                assert_eq!(*password_file, pw);
                let text = e.to_string();
                assert!(
                    text.contains("truststore.p12") && text.contains("p12-password"),
                    "{text}"
                );
                assert!(text.contains("No such file"), "{text}");
            }
            other => panic!("{layout:?}: {other:?}"),
        }
        assert!(matches!(report.entries[0].result, Ok(Change::Updated)));
        assert_eq!(read(dir.join("a-international.crt")), a2.pem() + &a1.pem());
        assert!(read(dir.join("ca-bundle.crt")).contains(&a2.pem()));
        assert_eq!(std::fs::read(&p12).unwrap(), old_p12, "{layout:?}");
        assert_eq!(truststore_fps(&p12, "first"), vec![a1.fp()]);

        // Back: the truststore catches up.
        std::fs::write(&pw, "second").unwrap();
        let report = store.apply(
            &pass(vec![entry("a", "international", &[&a2])], &[]),
            t0(),
            false,
        );
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert_eq!(truststore_fps(&p12, "second"), sorted(&[a1.fp(), a2.fp()]));
    }
}

#[test]
fn truststore_write_failure_in_flat_layout_is_its_own() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    let (a1, a2) = (TestCa::new("A1"), TestCa::new("A2"));
    let mut store = Store::open(p12_opts(&dir), false).unwrap();
    store.apply(
        &pass(vec![entry("a", "international", &[&a1])], &[]),
        t0(),
        false,
    );
    let p12 = dir.join("truststore.p12");
    let old_p12 = std::fs::read(&p12).unwrap();
    {
        // An immutable file cannot be renamed over.
        let _frozen = Immutable::new(&p12);
        let report = store.apply(
            &pass(vec![entry("a", "international", &[&a2])], &[]),
            t0(),
            false,
        );
        assert!(
            matches!(&report.errors[..], [StoreError::Io { path, .. }] if *path == p12),
            "{:?}",
            report.errors
        );
        assert!(matches!(report.entries[0].result, Ok(Change::Updated)));
        assert_eq!(read(dir.join("a-international.crt")), a2.pem() + &a1.pem());
        assert_eq!(std::fs::read(&p12).unwrap(), old_p12);
    }
    // The record was kept: the next pass retries it.
    let report = store.apply(
        &pass(vec![entry("a", "international", &[&a2])], &[]),
        t0(),
        false,
    );
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(
        truststore_fps(&p12, "changeit"),
        sorted(&[a1.fp(), a2.fp()])
    );
}

#[test]
fn atomic_dir_write_failure_keeps_the_whole_old_set() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    let (a1, a2) = (TestCa::new("A1"), TestCa::new("A2"));
    // No new name (no hash files), so no manifest must be written first: the failure is
    // the new generation's.
    let o = StoreOptions {
        capath: false,
        ..atomic(&dir)
    };
    let mut store = Store::open(o, false).unwrap();
    store.apply(
        &pass(vec![entry("a", "international", &[&a1])], &[]),
        t0(),
        false,
    );
    let before = snapshot_all(&dir);
    {
        let _frozen = Immutable::new(&dir);
        let report = store.apply(
            &pass(vec![entry("a", "international", &[&a2])], &[]),
            t0(),
            false,
        );
        assert!(!report.changed());
        match &report.entries[0].result {
            Err(StoreError::Io { path, op, .. }) => {
                assert_eq!(*path, dir.join("a-international.crt"));
                assert!(op.contains("generation"), "{op}");
            }
            other => panic!("{other:?}"),
        }
        assert!(!report.errors.is_empty());
    }
    assert_eq!(snapshot_all(&dir), before);
    assert_eq!(read(dir.join("a-international.crt")), a1.pem());
    let report = store.apply(
        &pass(vec![entry("a", "international", &[&a2])], &[]),
        t0(),
        false,
    );
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(read(dir.join("a-international.crt")), a2.pem() + &a1.pem());
}

#[test]
fn truststore_name_in_the_way_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("truststore.p12"), "someone else's").unwrap();
    let a = TestCa::new("A");
    let mut store = Store::open(p12_opts(&dir), false).unwrap();
    let report = store.apply(
        &pass(vec![entry("a", "international", &[&a])], &[]),
        t0(),
        false,
    );
    assert!(matches!(
        &report.errors[..],
        [StoreError::Unmanaged { path }] if path.ends_with("truststore.p12")
    ));
    assert_eq!(read(dir.join("truststore.p12")), "someone else's");
    assert_eq!(read(dir.join("a-international.crt")), a.pem());
}
