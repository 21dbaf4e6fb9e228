//! The shapes of the trust folder beyond flat files (SPEC 7, issue 4): owner and group,
//! `write_mode = "in-place"`, `layout = "atomic-dir"` and switching layouts, the PKCS#12
//! truststore, and failures of one shape that leave the others and every old file intact.
//! These run as root (as CI does), so chown to another user is real.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::store_support::*;
use certsync::store::truststore::{self, Opened};
use certsync::store::{Change, Layout, StoreError, StoreOptions, UNPRODUCED_PASSES, WriteMode};

const HOUR: Duration = Duration::from_secs(3600);
const NOBODY: u32 = 65534;

/// With a truststore `truststore.p12`.
fn p12(o: &mut StoreOptions) {
    o.pkcs12 = Some("truststore.p12".into());
}

/// With a truststore, in the atomic-dir layout.
fn atomic(o: &mut StoreOptions) {
    p12(o);
    o.layout = Layout::AtomicDir;
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

/// The fingerprints in the scenario's truststore opened with `password`.
fn p12_fps(s: &Scenario, password: &str) -> Vec<String> {
    truststore_fps(&s.path("truststore.p12"), password)
}

// ---- owner and group ----

#[test]
fn owner_and_group_are_given_to_every_file_and_a_change_rewrites() {
    let mut s = Scenario::with(|o| {
        p12(o);
        o.owner = Some(NOBODY);
        o.group = Some(NOBODY);
        o.mode = 0o640;
    });
    let (a, b) = (TestCa::new("A"), TestCa::new("B"));
    let input = Pass::new().instance("a", &[&a]).instance("b", &[&b]);
    s.apply_ok(&input, t0());
    for name in visible(&s.dir) {
        assert_eq!(uid_gid(&s.path(&name)), (NOBODY, NOBODY), "{name}");
        assert_eq!(facts(s.path(&name)).2, 0o640, "{name}");
    }
    // The manifest is certsync's own: not given away.
    assert_eq!(uid_gid(&s.path(".certsync-manifest.json")), (0, 0));

    // Unchanged owner: nothing is rewritten.
    let before = snapshot(&s.dir);
    let report = s.apply(&input, t0());
    assert!(!report.changed(), "{:?}", report.changed_files);
    assert_eq!(snapshot(&s.dir), before);

    // Another group only: every file is rewritten (atomically) with it; the owner stays.
    s.opts.group = Some(0);
    s.reopen();
    let report = s.apply_ok(&input, t0());
    assert!(matches!(report.entries[0].result, Ok(Change::Updated)));
    for name in visible(&s.dir) {
        assert_eq!(uid_gid(&s.path(&name)), (NOBODY, 0), "{name}");
    }
}

#[test]
fn owner_in_atomic_dir_layout_is_on_the_files_behind_the_links() {
    let mut s = Scenario::with(|o| {
        atomic(o);
        o.owner = Some(NOBODY);
    });
    let a = TestCa::new("A");
    s.apply_ok(&Pass::new().instance("a", &[&a]), t0());
    for name in visible(&s.dir) {
        let m = std::fs::metadata(s.path(&name)).unwrap();
        assert_eq!(m.uid(), NOBODY, "{name}");
    }
}

// ---- write_mode = "in-place" ----

#[test]
fn in_place_keeps_the_inode_of_existing_files_and_creates_new_ones() {
    let mut s = Scenario::with(|o| {
        o.rotation_overlap = Duration::ZERO;
        o.write_mode = WriteMode::InPlace;
    });
    let (a1, a2) = (TestCa::new("A1"), TestCa::new("A2"));
    let (to_a1, to_a2) = (
        Pass::new().instance("a", &[&a1]),
        Pass::new().instance("a", &[&a2]),
    );
    s.apply(&to_a1, t0());
    let file = s.path("a-international.crt");
    let bundle = s.path("ca-bundle.crt");
    let (inode, inode_bundle) = (facts(&file).0, facts(&bundle).0);

    let report = s.apply_ok(&to_a2, t0());
    assert!(matches!(report.entries[0].result, Ok(Change::Updated)));
    assert_eq!(read(&file), a2.pem());
    assert_eq!(facts(&file).0, inode, "the instance file keeps its inode");
    assert_eq!(read(&bundle), a2.pem());
    assert_eq!(facts(&bundle).0, inode_bundle, "the bundle keeps its inode");
    // The hash file of the new CA is a new name: created, and the old one removed.
    assert_eq!(read(s.hash_file(&a2, 0)), a2.pem());

    // A new mode and owner are applied to the same inode too.
    s.opts.mode = 0o600;
    s.opts.owner = Some(NOBODY);
    s.reopen();
    let report = s.apply(&to_a2, t0());
    assert!(matches!(report.entries[0].result, Ok(Change::Updated)));
    assert_eq!(facts(&file).0, inode);
    assert_eq!(facts(&file).2, 0o600);
    assert_eq!(uid_gid(&file).0, NOBODY);
    assert_eq!(read(&file), a2.pem());

    // The same rotation in rename mode gives a new inode: the test above can fail.
    s.opts = opts(&s.dir, Duration::ZERO);
    s.reopen();
    s.apply(&to_a1, t0());
    assert_ne!(facts(&file).0, inode);
}

// ---- layout = "atomic-dir" ----

#[test]
fn atomic_dir_links_every_visible_name_through_data() {
    let mut s = Scenario::with(atomic);
    let (a, b) = (TestCa::new("A"), TestCa::new("B"));
    let report = s.apply_ok(&Pass::new().instance("a", &[&a]).instance("b", &[&b]), t0());
    assert!(report.changed());

    let gens = generations(&s.dir);
    assert_eq!(gens.len(), 1, "{:?}", s.names());
    let generation = &gens[0];
    // ..YYYY_MM_DD_HH_MM_SS.NNNNNNNNN
    assert_eq!(generation.len(), 31, "{generation}");
    assert_eq!(
        std::fs::read_link(s.path("..data")).unwrap(),
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
    assert_eq!(visible(&s.dir), expected);
    assert_eq!(names(&s.path(generation)), expected);
    for name in &expected {
        let path = s.path(name);
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
    assert_eq!(s.read("a-international.crt"), a.pem());
    assert_eq!(p12_fps(&s, "changeit"), sorted(&[a.fp(), b.fp()]));
    // The manifest stays in the top folder, a regular file, and records the layout and the
    // visible names.
    assert!(!is_symlink(&s.path(".certsync-manifest.json")));
    let m = s.manifest();
    assert_eq!(m["layout"], "atomic-dir");
    let managed: Vec<String> = m["files"].as_object().unwrap().keys().cloned().collect();
    assert_eq!(managed, expected);
}

#[test]
fn atomic_dir_swaps_the_whole_set_removes_old_generations_and_idles_when_unchanged() {
    let mut s = Scenario::with(atomic);
    let (a1, a2, b) = (TestCa::new("A1"), TestCa::new("A2"), TestCa::new("B"));
    let t = t0();
    let first = Pass::new().instance("a", &[&a1]).instance("b", &[&b]);
    s.apply(&first, t);
    let gen1 = generations(&s.dir);

    // Nothing changed: no new generation, no write at all.
    let before = snapshot_all(&s.dir);
    let report = s.apply(&first, t);
    assert!(!report.changed());
    assert_eq!(snapshot_all(&s.dir), before);

    // A rotation: one new generation holding the whole new set; the old one is gone.
    let report = s.apply_ok(
        &Pass::new().instance("a", &[&a2]).instance("b", &[&b]),
        t + mins(1),
    );
    assert!(matches!(report.entries[0].result, Ok(Change::Updated)));
    assert!(matches!(report.entries[1].result, Ok(Change::Unchanged)));
    let gen2 = generations(&s.dir);
    assert_eq!(gen2.len(), 1);
    assert_ne!(gen2, gen1);
    assert_eq!(s.read("a-international.crt"), a2.pem() + &a1.pem());
    assert_eq!(s.read("b-international.crt"), b.pem());
    assert_eq!(p12_fps(&s, "changeit"), sorted(&[a1.fp(), a2.fp(), b.fp()]));

    // Pruning an instance (after UNPRODUCED_PASSES passes without it) removes its visible
    // name; the bundle follows in the same swap.
    let only_a = Pass::new().instance("a", &[&a2]);
    for _ in 1..UNPRODUCED_PASSES {
        s.apply(&only_a, t + HOUR + mins(2));
        assert!(s.path("b-international.crt").exists());
    }
    s.apply_ok(&only_a, t + HOUR + mins(2));
    assert!(!s.path("b-international.crt").exists());
    assert!(!is_symlink(&s.path("b-international.crt")));
    assert_eq!(s.read("ca-bundle.crt"), a2.pem());
    assert_eq!(generations(&s.dir).len(), 1);
    assert_eq!(p12_fps(&s, "changeit"), vec![a2.fp()]);
}

#[test]
fn switching_layouts_both_ways_keeps_every_file_and_touches_no_unmanaged_one() {
    let mut s = Scenario::with(p12);
    let (a, b) = (TestCa::new("A"), TestCa::new("B"));
    let input = Pass::new().instance("a", &[&a]).instance("b", &[&b, &a]);
    s.apply(&input, t0());
    s.put("notes.txt", "mine\n");
    let notes = facts(s.path("notes.txt"));
    let contents = |dir: &Path| -> Vec<(String, Vec<u8>)> {
        visible(dir)
            .into_iter()
            .filter(|n| n != "notes.txt")
            .map(|n| (n.clone(), std::fs::read(dir.join(&n)).unwrap()))
            .collect()
    };
    let flat = contents(&s.dir);

    // flat -> atomic-dir: same bytes behind symlinks; not a change of any file.
    s.opts.layout = Layout::AtomicDir;
    s.reopen();
    let report = s.apply_ok(&input, t0());
    assert!(!report.changed(), "{:?}", report.changed_files);
    assert_eq!(contents(&s.dir), flat);
    for (name, _) in &flat {
        assert!(is_symlink(&s.path(name)), "{name}");
    }
    assert_eq!(generations(&s.dir).len(), 1);
    assert_eq!(s.manifest()["layout"], "atomic-dir");
    assert_eq!(facts(s.path("notes.txt")), notes);

    // atomic-dir -> flat: regular files again, ..data and generations gone.
    s.opts.layout = Layout::Flat;
    s.reopen();
    let report = s.apply_ok(&input, t0());
    assert!(!report.changed());
    assert_eq!(contents(&s.dir), flat);
    for (name, _) in &flat {
        assert!(
            std::fs::symlink_metadata(s.path(name)).unwrap().is_file(),
            "{name}"
        );
    }
    assert!(generations(&s.dir).is_empty(), "{:?}", s.names());
    assert!(!s.path("..data").exists() && !is_symlink(&s.path("..data")));
    assert!(s.manifest().get("layout").is_none());
    assert_eq!(facts(s.path("notes.txt")), notes);
    assert_eq!(s.read("notes.txt"), "mine\n");

    // And a rotation while switching back and forth still lands.
    let c = TestCa::new("C");
    s.opts.layout = Layout::AtomicDir;
    s.reopen();
    for _ in 0..UNPRODUCED_PASSES {
        s.apply_ok(&Pass::new().instance("a", &[&c]), t0());
    }
    assert_eq!(s.read("a-international.crt"), c.pem() + &a.pem());
    assert!(!s.path("b-international.crt").exists());
}

#[test]
fn a_foreign_data_link_is_not_taken_over() {
    let mut s = Scenario::with(atomic);
    std::fs::create_dir_all(s.path("theirs")).unwrap();
    std::os::unix::fs::symlink("theirs", s.path("..data")).unwrap();
    let a = TestCa::new("A");
    let report = s.apply(&Pass::new().instance("a", &[&a]), t0());
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
        std::fs::read_link(s.path("..data")).unwrap(),
        PathBuf::from("theirs")
    );
    assert!(!s.path("a-international.crt").exists());
}

#[test]
fn leftover_generations_of_a_crash_are_removed_at_open() {
    let a = TestCa::new("A");
    let mut s = Scenario::with(atomic).holding_a(&a);
    s.close();
    let current = generations(&s.dir);
    // What a kill before the swap leaves: a generation nobody points to, and ..data_tmp.
    let stray = s.path("..2001_01_01_00_00_00.000000001");
    std::fs::create_dir(&stray).unwrap();
    std::fs::write(stray.join("a-international.crt"), "half").unwrap();
    std::os::unix::fs::symlink("..2001_01_01_00_00_00.000000001", s.path("..data_tmp")).unwrap();
    // A hidden folder that is not a generation is not certsync's.
    std::fs::create_dir(s.path("..keep")).unwrap();

    s.store();
    assert_eq!(
        generations(&s.dir),
        [current[0].clone(), "..keep".to_string()]
    );
    assert!(!is_symlink(&s.path("..data_tmp")));
    assert_eq!(s.read("a-international.crt"), a.pem());
}

// ---- the PKCS#12 truststore ----

#[test]
fn truststore_holds_every_ca_and_is_rewritten_only_when_the_set_or_password_changes() {
    let mut s = Scenario::with(p12);
    let p12 = s.path("truststore.p12");
    let [a1, a2, b] = cas(["A1", "A2", "B"]);
    let t = t0();
    let first = Pass::new().instance("a", &[&a1]).instance("b", &[&b]);
    let report = s.apply(&first, t);
    assert!(report.other.contains(&(p12.clone(), Change::Created)));
    assert_eq!(p12_fps(&s, "changeit"), sorted(&[a1.fp(), b.fp()]));
    assert_eq!(
        s.manifest()["files"]["truststore.p12"]["cas"],
        serde_json::json!(sorted(&[a1.fp(), b.fp()]))
    );

    // Same CAs: the (randomised) file is left alone, bytes and inode.
    let before = (std::fs::read(&p12).unwrap(), facts(&p12));
    let report = s.apply(&first, t);
    assert!(!report.changed());
    assert_eq!((std::fs::read(&p12).unwrap(), facts(&p12)), before);
    s.reopen();
    assert!(!s.apply(&first, t).changed(), "also after reopen");

    // Another CA set: rewritten with the overlap CA still in it.
    let second = Pass::new().instance("a", &[&a2]).instance("b", &[&b]);
    let report = s.apply(&second, t + mins(1));
    assert!(report.other.contains(&(p12.clone(), Change::Updated)));
    assert_eq!(p12_fps(&s, "changeit"), sorted(&[a1.fp(), a2.fp(), b.fp()]));
    // The overlap ends: the old CA leaves the truststore as it leaves the other files.
    let report = s.apply(&second, t + HOUR + mins(2));
    assert!(report.other.contains(&(p12.clone(), Change::Updated)));
    assert_eq!(p12_fps(&s, "changeit"), sorted(&[a2.fp(), b.fp()]));

    // A password file (trimmed): the same CAs, rewritten under the new password.
    let pw = s.tmp.path().join("p12-password");
    std::fs::write(&pw, "s3cret-pass\n").unwrap();
    s.opts.pkcs12_password_file = Some(pw.clone());
    s.reopen();
    let report = s.apply(&second, t + HOUR + mins(3));
    assert!(report.other.contains(&(p12.clone(), Change::Updated)));
    assert_eq!(p12_fps(&s, "s3cret-pass"), sorted(&[a2.fp(), b.fp()]));
    let data = std::fs::read(&p12).unwrap();
    assert!(matches!(
        truststore::open(&data, "changeit"),
        Opened::WrongPassword
    ));
    assert!(!s.apply(&second, t + HOUR + mins(4)).changed());
    // The password never reaches the manifest.
    assert!(!s.read(".certsync-manifest.json").contains("s3cret"));
}

#[test]
fn sm2_cas_are_left_out_of_the_truststore_only() {
    let mut s = Scenario::with(p12);
    let (a, n) = (TestCa::new("A"), TestCa::new("National"));
    // The flag is what the validator sets for an SM2-signed CA (see validate_rules).
    let mut sm2 = n.cert.clone();
    sm2.sm2 = true;
    let mut national = entry("a", "national", &[]);
    national.certs = vec![sm2];
    s.apply_ok(&Pass::new().instance("a", &[&a]).entry(national), t0());
    assert_eq!(s.read("a-national.crt"), n.pem());
    assert!(s.read("ca-bundle.crt").contains(&n.pem()));
    assert_eq!(p12_fps(&s, "changeit"), vec![a.fp()]);
}

#[test]
fn truststore_failure_keeps_the_old_truststore_and_the_other_shapes_go_ahead() {
    for layout in [Layout::Flat, Layout::AtomicDir] {
        let mut s = Scenario::with(|o| {
            p12(o);
            o.layout = layout;
        });
        let (a1, a2) = (TestCa::new("A1"), TestCa::new("A2"));
        let pw = s.tmp.path().join("p12-password");
        std::fs::write(&pw, "first\n").unwrap();
        s.opts.pkcs12_password_file = Some(pw.clone());
        s.apply(&Pass::new().instance("a", &[&a1]), t0());
        let p12 = s.path("truststore.p12");
        let old_p12 = std::fs::read(&p12).unwrap();

        // The password file is gone: the truststore cannot be made; the rest rotates.
        std::fs::remove_file(&pw).unwrap();
        let rotated = Pass::new().instance("a", &[&a2]);
        let report = s.apply(&rotated, t0());
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
        assert_eq!(s.read("a-international.crt"), a2.pem() + &a1.pem());
        assert!(s.read("ca-bundle.crt").contains(&a2.pem()));
        assert_eq!(std::fs::read(&p12).unwrap(), old_p12, "{layout:?}");
        assert_eq!(p12_fps(&s, "first"), vec![a1.fp()]);

        // Back: the truststore catches up.
        std::fs::write(&pw, "second").unwrap();
        s.apply_ok(&rotated, t0());
        assert_eq!(p12_fps(&s, "second"), sorted(&[a1.fp(), a2.fp()]));
    }
}

#[test]
fn truststore_write_failure_in_flat_layout_is_its_own() {
    let mut s = Scenario::with(p12);
    let (a1, a2) = (TestCa::new("A1"), TestCa::new("A2"));
    let rotated = Pass::new().instance("a", &[&a2]);
    s.apply(&Pass::new().instance("a", &[&a1]), t0());
    let p12 = s.path("truststore.p12");
    let old_p12 = std::fs::read(&p12).unwrap();
    {
        // An immutable file cannot be renamed over.
        let _frozen = Immutable::new(&p12);
        let report = s.apply(&rotated, t0());
        assert!(
            matches!(&report.errors[..], [StoreError::Io { path, .. }] if *path == p12),
            "{:?}",
            report.errors
        );
        assert!(matches!(report.entries[0].result, Ok(Change::Updated)));
        assert_eq!(s.read("a-international.crt"), a2.pem() + &a1.pem());
        assert_eq!(std::fs::read(&p12).unwrap(), old_p12);
    }
    // The record was kept: the next pass retries it.
    s.apply_ok(&rotated, t0());
    assert_eq!(p12_fps(&s, "changeit"), sorted(&[a1.fp(), a2.fp()]));
}

#[test]
fn atomic_dir_write_failure_keeps_the_whole_old_set() {
    // No new name (no hash files), so no manifest must be written first: the failure is
    // the new generation's.
    let mut s = Scenario::with(|o| {
        atomic(o);
        o.capath = false;
    });
    let (a1, a2) = (TestCa::new("A1"), TestCa::new("A2"));
    let rotated = Pass::new().instance("a", &[&a2]);
    s.apply(&Pass::new().instance("a", &[&a1]), t0());
    let before = snapshot_all(&s.dir);
    {
        let _frozen = Immutable::new(&s.dir);
        let report = s.apply(&rotated, t0());
        assert!(!report.changed());
        match &report.entries[0].result {
            Err(StoreError::Io { path, op, .. }) => {
                assert_eq!(*path, s.path("a-international.crt"));
                assert!(op.contains("generation"), "{op}");
            }
            other => panic!("{other:?}"),
        }
        assert!(!report.errors.is_empty());
    }
    assert_eq!(snapshot_all(&s.dir), before);
    assert_eq!(s.read("a-international.crt"), a1.pem());
    s.apply_ok(&rotated, t0());
    assert_eq!(s.read("a-international.crt"), a2.pem() + &a1.pem());
}

#[test]
fn truststore_name_in_the_way_is_refused() {
    let mut s = Scenario::with(p12);
    s.put("truststore.p12", "someone else's");
    let a = TestCa::new("A");
    let report = s.apply(&Pass::new().instance("a", &[&a]), t0());
    assert!(matches!(
        &report.errors[..],
        [StoreError::Unmanaged { path }] if path.ends_with("truststore.p12")
    ));
    assert_eq!(s.read("truststore.p12"), "someone else's");
    assert_eq!(s.read("a-international.crt"), a.pem());
}
