//! The trust folder on a real file system: what the store writes, what it leaves alone, and
//! how it keeps replaced CAs for the rotation overlap (SPEC 7).

mod store_support;

use std::collections::BTreeSet;
use std::os::unix::fs::symlink;
use std::time::Duration;

use certsync::store::{Change, PassInput, Store, StoreError, StoreOptions, UNPRODUCED_PASSES};
use store_support::*;

const HOUR: Duration = Duration::from_secs(3600);

#[test]
fn first_write_creates_files_manifest_bundle_and_hashes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp).join("nested");
    let (a, b) = (TestCa::new("CA A"), TestCa::new("CA B"));
    let mut o = opts(&dir, HOUR);
    // Looser than the umask (022) allows: only an explicit chmod gives this mode.
    o.mode = 0o664;
    let mut store = Store::open(o, false).unwrap();
    assert_eq!(facts(&dir).2, 0o755);
    assert_eq!(facts(dir.parent().unwrap()).2, 0o755);

    let input = pass(
        vec![
            entry("i1", "international", &[&a]),
            entry("i2", "international", &[&b, &a]),
        ],
        &[],
    );
    let report = store.apply(&input, t0(), false);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(report.changed());
    let results: Vec<_> = report
        .entries
        .iter()
        .map(|e| e.result.as_ref().unwrap())
        .collect();
    assert_eq!(results, [&Change::Created, &Change::Created]);
    assert_eq!(report.entries[1].fingerprints, [b.fp(), a.fp()]);
    assert_eq!(
        report.entries[1].not_after,
        Some(a.cert.not_after.min(b.cert.not_after))
    );
    assert_eq!(report.entries[0].path, dir.join("i1-international.crt"));
    assert_eq!(
        report.changed_instances,
        BTreeSet::from(["i1".to_string(), "i2".to_string()])
    );

    assert_eq!(read(dir.join("i1-international.crt")), a.pem());
    assert_eq!(read(dir.join("i2-international.crt")), b.pem() + &a.pem());
    let mut sorted = [&a, &b];
    sorted.sort_by_key(|c| c.fp());
    assert_eq!(
        read(dir.join("ca-bundle.crt")),
        sorted[0].pem() + &sorted[1].pem()
    );
    let hash_a = format!("{}.0", a.cert.subject_hash_hex());
    let hash_b = format!("{}.0", b.cert.subject_hash_hex());
    assert_eq!(read(dir.join(&hash_a)), a.pem());
    assert_eq!(read(dir.join(&hash_b)), b.pem());

    let mut expected = vec![
        ".certsync-manifest.json".to_string(),
        "ca-bundle.crt".into(),
        "i1-international.crt".into(),
        "i2-international.crt".into(),
        hash_a.clone(),
        hash_b.clone(),
    ];
    expected.sort();
    assert_eq!(names(&dir), expected, "no temp files or others");
    for name in &expected {
        assert_eq!(facts(dir.join(name)).2, 0o664, "{name}");
    }

    let m = manifest(&dir);
    assert_eq!(m["version"], 1);
    let i2 = &m["files"]["i2-international.crt"];
    assert_eq!(i2["kind"], "instance");
    assert_eq!(i2["instance_id"], "i2");
    assert_eq!(i2["category"], "international");
    assert_eq!(i2["current"], serde_json::json!([b.fp(), a.fp()]));
    assert_eq!(i2["replaced"], serde_json::json!([]));
    let sha = hex::encode(sha2::Sha256::digest(
        std::fs::read(dir.join("i2-international.crt")).unwrap(),
    ));
    assert_eq!(i2["sha256"], sha);
    assert_eq!(m["files"]["ca-bundle.crt"]["kind"], "bundle");
    assert_eq!(m["files"][&hash_a]["kind"], "hash");
    assert_eq!(m["files"].as_object().unwrap().len(), 5);

    assert!(
        report
            .other
            .contains(&(dir.join("ca-bundle.crt"), Change::Created))
    );
    assert!(report.other.contains(&(dir.join(&hash_a), Change::Created)));
    assert_eq!(report.changed_files.len(), 5);
    assert!(report.changed_files.iter().all(|p| p.is_absolute()));

    let state = store.current();
    assert_eq!(state.len(), 2);
    assert_eq!(state[1].instance_id, "i2");
    assert_eq!(state[1].fingerprints, [b.fp(), a.fp()]);
    assert_eq!(store.next_deadline(), None);
}

use sha2::Digest as _;

#[test]
fn second_identical_apply_touches_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    let (a, b) = (TestCa::new("CA A"), TestCa::new("CA B"));
    let mut store = Store::open(opts(&dir, HOUR), false).unwrap();
    let input = pass(
        vec![
            entry("i1", "international", &[&a]),
            entry("i2", "national", &[&b]),
        ],
        &[],
    );
    let now = t0();
    assert!(store.apply(&input, now, false).changed());
    let before = snapshot(&dir);

    let report = store.apply(&input, now + mins(1), false);
    assert!(!report.changed());
    assert!(report.errors.is_empty());
    assert!(report.other.is_empty());
    assert!(report.changed_instances.is_empty());
    assert!(
        report
            .entries
            .iter()
            .all(|e| matches!(e.result, Ok(Change::Unchanged)))
    );
    assert_eq!(
        snapshot(&dir),
        before,
        "inode, mtime, mode and bytes unchanged"
    );

    // Also after a restart: the state is rebuilt from the folder, nothing is rewritten.
    drop(store);
    let mut store = Store::open(opts(&dir, HOUR), false).unwrap();
    assert!(!store.apply(&input, now + mins(2), false).changed());
    assert_eq!(snapshot(&dir), before);
}

#[test]
fn rotation_keeps_the_replaced_ca_until_the_overlap_ends() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    let (old, new) = (TestCa::new("CA old"), TestCa::new("CA new"));
    let mut store = Store::open(opts(&dir, HOUR), false).unwrap();
    let file = dir.join("i1-international.crt");
    let t = t0();
    store.apply(
        &pass(vec![entry("i1", "international", &[&old])], &[]),
        t,
        false,
    );

    let rotated = pass(vec![entry("i1", "international", &[&new])], &[]);
    let t1 = t + mins(10);
    let report = store.apply(&rotated, t1, false);
    assert!(matches!(report.entries[0].result, Ok(Change::Updated)));
    assert_eq!(report.entries[0].fingerprints, [new.fp()]);
    assert_eq!(read(&file), new.pem() + &old.pem(), "new first, old after");
    assert!(read(dir.join("ca-bundle.crt")).contains(&old.pem()));
    assert!(
        dir.join(format!("{}.0", old.cert.subject_hash_hex()))
            .exists()
    );
    assert_eq!(store.next_deadline(), Some(t1 + HOUR));
    let replaced = &manifest(&dir)["files"]["i1-international.crt"]["replaced"];
    assert_eq!(replaced[0]["sha256"], old.fp());
    assert_eq!(
        replaced[0]["replaced_at"],
        time::OffsetDateTime::from(t1)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    );

    let report = store.apply(&rotated, t1 + mins(59), false);
    assert!(!report.changed(), "still inside the window");
    assert_eq!(read(&file), new.pem() + &old.pem());

    let report = store.apply(&rotated, t1 + HOUR, false);
    assert!(matches!(report.entries[0].result, Ok(Change::Updated)));
    assert_eq!(read(&file), new.pem());
    assert_eq!(read(dir.join("ca-bundle.crt")), new.pem());
    assert!(
        !dir.join(format!("{}.0", old.cert.subject_hash_hex()))
            .exists()
    );
    assert!(report.other.contains(&(
        dir.join(format!("{}.0", old.cert.subject_hash_hex())),
        Change::Removed
    )));
    assert_eq!(store.next_deadline(), None);
}

#[test]
fn a_replaced_ca_leaves_at_its_not_after_when_that_is_sooner() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    let not_after = time::OffsetDateTime::now_utc() + time::Duration::minutes(30);
    let old = TestCa::with_validity("CA short", not_after);
    let new = TestCa::new("CA new");
    let mut store = Store::open(opts(&dir, 24 * HOUR), false).unwrap();
    let file = dir.join("i1-international.crt");
    let t = t0();
    store.apply(
        &pass(vec![entry("i1", "international", &[&old])], &[]),
        t,
        false,
    );
    let rotated = pass(vec![entry("i1", "international", &[&new])], &[]);
    store.apply(&rotated, t, false);
    assert_eq!(read(&file), new.pem() + &old.pem());
    assert_eq!(store.next_deadline(), Some(old.cert.not_after.into()));
    store.apply(&rotated, old.cert.not_after.into(), false);
    assert_eq!(read(&file), new.pem());
}

#[test]
fn overlap_zero_replaces_at_once_and_a_returning_ca_is_current_again() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    let (old, new) = (TestCa::new("CA old"), TestCa::new("CA new"));
    let mut store = Store::open(opts(&dir, Duration::ZERO), false).unwrap();
    let file = dir.join("i1-international.crt");
    let t = t0();
    store.apply(
        &pass(vec![entry("i1", "international", &[&old])], &[]),
        t,
        false,
    );
    store.apply(
        &pass(vec![entry("i1", "international", &[&new])], &[]),
        t,
        false,
    );
    assert_eq!(read(&file), new.pem());
    assert_eq!(read(dir.join("ca-bundle.crt")), new.pem());
    assert_eq!(store.next_deadline(), None);

    // With an overlap: rotate away and back inside the window.
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    let mut store = Store::open(opts(&dir, HOUR), false).unwrap();
    let file = dir.join("i1-international.crt");
    store.apply(
        &pass(vec![entry("i1", "international", &[&old])], &[]),
        t,
        false,
    );
    store.apply(
        &pass(vec![entry("i1", "international", &[&new])], &[]),
        t,
        false,
    );
    let back = pass(vec![entry("i1", "international", &[&old])], &[]);
    store.apply(&back, t + mins(5), false);
    assert_eq!(read(&file), old.pem() + &new.pem());
    let record = &manifest(&dir)["files"]["i1-international.crt"];
    assert_eq!(record["current"], serde_json::json!([old.fp()]));
    assert_eq!(record["replaced"].as_array().unwrap().len(), 1);
    assert_eq!(record["replaced"][0]["sha256"], new.fp());
    assert_eq!(store.next_deadline(), Some(t + mins(5) + HOUR));
}

#[test]
fn failed_instance_keeps_its_file_record_and_bundle_place() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    let (a1, a2, b1, b2) = (
        TestCa::new("A1"),
        TestCa::new("A2"),
        TestCa::new("B1"),
        TestCa::new("B2"),
    );
    let mut store = Store::open(opts(&dir, HOUR), false).unwrap();
    let t = t0();
    store.apply(
        &pass(
            vec![
                entry("a", "international", &[&a1]),
                entry("b", "international", &[&b1]),
            ],
            &[],
        ),
        t,
        false,
    );
    // b rotates: b1 is overlapping until t + 1h.
    store.apply(
        &pass(
            vec![
                entry("a", "international", &[&a1]),
                entry("b", "international", &[&b2]),
            ],
            &[],
        ),
        t,
        false,
    );
    let b_file = dir.join("b-international.crt");
    let b_before = (facts(&b_file), read(&b_file));
    let b_record = manifest(&dir)["files"]["b-international.crt"].clone();

    // Two hours later b fails (configured, not synced) while a rotates.
    let input = pass(vec![entry("a", "international", &[&a2])], &["b"]);
    let report = store.apply(&input, t + 2 * HOUR, false);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!((facts(&b_file), read(&b_file)), b_before, "b untouched");
    assert_eq!(b_record, manifest(&dir)["files"]["b-international.crt"]);
    assert_eq!(
        read(&b_file),
        b2.pem() + &b1.pem(),
        "no overlap expiry for b"
    );
    let bundle = read(dir.join("ca-bundle.crt"));
    for ca in [&a1, &a2, &b1, &b2] {
        assert!(bundle.contains(&ca.pem()), "{}", ca.cert.subject);
    }
    assert!(
        dir.join(format!("{}.0", b1.cert.subject_hash_hex()))
            .exists()
    );
    assert_eq!(report.changed_instances, BTreeSet::from(["a".to_string()]));
    // b's deadline lies before the last pass: not offered again (the daemon would spin).
    assert_eq!(store.next_deadline(), Some(t + 2 * HOUR + HOUR));
}

#[test]
fn prune_removes_gone_instances_and_vanished_categories() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    let (a, b, n) = (TestCa::new("A"), TestCa::new("B"), TestCa::new("N"));
    let mut store = Store::open(opts(&dir, HOUR), false).unwrap();
    let t = t0();
    store.apply(
        &pass(
            vec![
                entry("a", "international", &[&a]),
                entry("a", "national", &[&n]),
                entry("b", "international", &[&b]),
            ],
            &[],
        ),
        t,
        false,
    );
    // b left the config; a no longer lists "national". Nothing produces those files now:
    // they stay (and their CAs in the bundle) for UNPRODUCED_PASSES - 1 passes.
    let later = pass(vec![entry("a", "international", &[&a])], &[]);
    for n in 1..UNPRODUCED_PASSES {
        let report = store.apply(&later, t, false);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert!(report.removed.is_empty(), "pass {n}: {:?}", report.removed);
        assert!(!report.changed(), "pass {n}");
        for kept in ["a-national.crt", "b-international.crt"] {
            assert!(dir.join(kept).exists(), "pass {n}: {kept}");
            assert!(
                report
                    .unproduced
                    .iter()
                    .any(|u| u.path == dir.join(kept) && u.passes == n),
                "pass {n}: {:?}",
                report.unproduced
            );
        }
        assert!(read(dir.join("ca-bundle.crt")).contains(&b.pem()));
    }
    let report = store.apply(&later, t, false);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    for gone in ["a-national.crt", "b-international.crt"] {
        assert!(
            report
                .removed
                .iter()
                .any(|r| r.path == dir.join(gone) && r.reason.contains("3 passes")),
            "{:?}",
            report.removed
        );
        assert!(!dir.join(gone).exists(), "{gone}");
        assert!(report.other.contains(&(dir.join(gone), Change::Removed)));
        assert!(report.changed_files.contains(&dir.join(gone)));
        assert!(manifest(&dir)["files"].get(gone).is_none());
    }
    assert_eq!(
        report.changed_instances,
        BTreeSet::from(["a".to_string(), "b".to_string()])
    );
    assert_eq!(read(dir.join("ca-bundle.crt")), a.pem());
    assert!(
        !dir.join(format!("{}.0", b.cert.subject_hash_hex()))
            .exists()
    );
    assert_eq!(store.current().len(), 1);
}

#[test]
fn renamed_file_is_pruned_and_the_new_name_written() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    let a = TestCa::new("A");
    let mut store = Store::open(opts(&dir, HOUR), false).unwrap();
    store.apply(
        &pass(vec![entry("a", "international", &[&a])], &[]),
        t0(),
        false,
    );
    let mut renamed = entry("a", "international", &[&a]);
    renamed.file_name = "orders.crt".into();
    let report = store.apply(&pass(vec![renamed.clone()], &[]), t0(), false);
    assert!(matches!(report.entries[0].result, Ok(Change::Created)));
    assert_eq!(read(dir.join("orders.crt")), a.pem());
    // The old name is no longer produced: it goes after UNPRODUCED_PASSES passes.
    assert!(dir.join("a-international.crt").exists());
    for _ in 1..UNPRODUCED_PASSES {
        store.apply(&pass(vec![renamed.clone()], &[]), t0(), false);
    }
    assert!(!dir.join("a-international.crt").exists());
}

#[test]
fn prune_false_keeps_files_records_and_bundle_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    let (a, b) = (TestCa::new("A"), TestCa::new("B"));
    let mut o = opts(&dir, HOUR);
    o.prune = false;
    let mut store = Store::open(o, false).unwrap();
    store.apply(
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
    let b_file = dir.join("b-international.crt");
    let before = facts(&b_file);
    let report = store.apply(
        &pass(vec![entry("a", "international", &[&a])], &[]),
        t0(),
        false,
    );
    assert!(!report.changed());
    assert_eq!(facts(&b_file), before);
    assert_eq!(
        manifest(&dir)["files"]["b-international.crt"]["instance_id"],
        "b"
    );
    assert!(read(dir.join("ca-bundle.crt")).contains(&b.pem()));

    // Switching the bundle off without prune keeps the managed bundle as it is.
    let mut o = opts(&dir, HOUR);
    o.prune = false;
    o.bundle = None;
    drop(store);
    let mut store = Store::open(o, false).unwrap();
    let bundle_before = facts(dir.join("ca-bundle.crt"));
    assert!(
        !store
            .apply(
                &pass(vec![entry("a", "international", &[&a])], &[]),
                t0(),
                false
            )
            .changed()
    );
    assert_eq!(facts(dir.join("ca-bundle.crt")), bundle_before);
}

#[test]
fn bundle_off_with_prune_removes_it_and_capath_off_removes_hash_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    let a = TestCa::new("A");
    let input = pass(vec![entry("a", "international", &[&a])], &[]);
    let mut store = Store::open(opts(&dir, HOUR), false).unwrap();
    store.apply(&input, t0(), false);
    drop(store);
    let mut o = opts(&dir, HOUR);
    o.bundle = None;
    o.capath = false;
    o.prune = false; // hash files are derived: they go even without prune
    let mut store = Store::open(o.clone(), false).unwrap();
    let report = store.apply(&input, t0(), false);
    assert_eq!(
        names(&dir),
        [
            ".certsync-manifest.json",
            "a-international.crt",
            "ca-bundle.crt"
        ]
    );
    assert_eq!(
        report.other,
        [(
            dir.join(format!("{}.0", a.cert.subject_hash_hex())),
            Change::Removed
        )]
    );
    drop(store);
    o.prune = true;
    let mut store = Store::open(o, false).unwrap();
    store.apply(&input, t0(), false);
    assert_eq!(
        names(&dir),
        [".certsync-manifest.json", "a-international.crt"]
    );
}

#[test]
fn unmanaged_file_in_the_way_is_refused_and_others_proceed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a-international.crt"), "mine\n").unwrap();
    std::fs::write(dir.join("ca-bundle.crt"), "also mine\n").unwrap();
    let before = facts(dir.join("a-international.crt"));
    let (a, b) = (TestCa::new("A"), TestCa::new("B"));
    let mut store = Store::open(opts(&dir, HOUR), false).unwrap();
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
    assert!(matches!(
        &report.entries[0].result,
        Err(StoreError::Unmanaged { path }) if *path == dir.join("a-international.crt")
    ));
    assert!(matches!(report.entries[1].result, Ok(Change::Created)));
    assert_eq!(read(dir.join("a-international.crt")), "mine\n");
    assert_eq!(facts(dir.join("a-international.crt")), before);
    assert_eq!(read(dir.join("ca-bundle.crt")), "also mine\n");
    assert!(report.errors.iter().any(|e| matches!(
        e,
        StoreError::Unmanaged { path } if *path == dir.join("ca-bundle.crt")
    )));
    assert_eq!(read(dir.join("b-international.crt")), b.pem());
    assert!(manifest(&dir)["files"].get("a-international.crt").is_none());
    assert!(manifest(&dir)["files"].get("ca-bundle.crt").is_none());
    assert!(
        report.entries[0]
            .result
            .as_ref()
            .unwrap_err()
            .to_string()
            .contains("did not write")
    );

    // Removing the instance from the config never removes the unmanaged file.
    for _ in 0..UNPRODUCED_PASSES {
        let report = store.apply(&pass(vec![], &[]), t0(), false);
        assert!(
            report
                .errors
                .iter()
                .all(|e| matches!(e, StoreError::Unmanaged { .. }))
        );
    }
    assert_eq!(read(dir.join("a-international.crt")), "mine\n");
    assert!(!dir.join("b-international.crt").exists());
}

#[test]
fn symlink_in_the_way_is_not_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    std::fs::create_dir_all(&dir).unwrap();
    let target = tmp.path().join("precious.pem");
    std::fs::write(&target, "precious\n").unwrap();
    symlink(&target, dir.join("a-international.crt")).unwrap();
    let a = TestCa::new("A");
    let mut store = Store::open(opts(&dir, HOUR), false).unwrap();
    let report = store.apply(
        &pass(vec![entry("a", "international", &[&a])], &[]),
        t0(),
        false,
    );
    assert!(matches!(
        &report.entries[0].result,
        Err(StoreError::NotRegularFile { path }) if *path == dir.join("a-international.crt")
    ));
    assert_eq!(read(&target), "precious\n");
    assert!(
        std::fs::symlink_metadata(dir.join("a-international.crt"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

#[test]
fn managed_file_replaced_by_a_symlink_is_neither_followed_nor_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    let (a, a2) = (TestCa::new("A"), TestCa::new("A2"));
    let mut store = Store::open(opts(&dir, HOUR), false).unwrap();
    store.apply(
        &pass(vec![entry("a", "international", &[&a])], &[]),
        t0(),
        false,
    );
    let target = tmp.path().join("precious.pem");
    std::fs::write(&target, "precious\n").unwrap();
    let file = dir.join("a-international.crt");
    std::fs::remove_file(&file).unwrap();
    symlink(&target, &file).unwrap();

    let report = store.apply(
        &pass(vec![entry("a", "international", &[&a2])], &[]),
        t0(),
        false,
    );
    assert!(matches!(
        report.entries[0].result,
        Err(StoreError::NotRegularFile { .. })
    ));
    assert_eq!(read(&target), "precious\n");
    // The record stays as it was (the file did not change hands).
    assert_eq!(
        manifest(&dir)["files"]["a-international.crt"]["current"],
        serde_json::json!([a.fp()])
    );

    // Pruning it refuses as well.
    for _ in 1..UNPRODUCED_PASSES {
        store.apply(&pass(vec![], &[]), t0(), false);
    }
    let report = store.apply(&pass(vec![], &[]), t0(), false);
    assert!(report.errors.iter().any(|e| matches!(
        e,
        StoreError::NotRegularFile { path } if *path == file
    )));
    assert!(
        std::fs::symlink_metadata(&file)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(read(&target), "precious\n");
}

#[test]
fn manifest_listed_file_changed_or_missing_is_still_managed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    let (a, b) = (TestCa::new("A"), TestCa::new("B"));
    let input = pass(
        vec![
            entry("a", "international", &[&a]),
            entry("b", "international", &[&b]),
        ],
        &[],
    );
    let mut store = Store::open(opts(&dir, HOUR), false).unwrap();
    store.apply(&input, t0(), false);
    drop(store);
    std::fs::write(dir.join("a-international.crt"), "half a cert").unwrap();
    std::fs::remove_file(dir.join("b-international.crt")).unwrap();
    let mut store = Store::open(opts(&dir, HOUR), false).unwrap();
    let report = store.apply(&input, t0(), false);
    assert!(matches!(report.entries[0].result, Ok(Change::Updated)));
    assert!(matches!(report.entries[1].result, Ok(Change::Created)));
    assert_eq!(read(dir.join("a-international.crt")), a.pem());
    assert_eq!(read(dir.join("b-international.crt")), b.pem());
}

#[test]
fn changed_mode_rewrites_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    let a = TestCa::new("A");
    let input = pass(vec![entry("a", "international", &[&a])], &[]);
    let mut store = Store::open(opts(&dir, HOUR), false).unwrap();
    store.apply(&input, t0(), false);
    drop(store);
    let mut o = opts(&dir, HOUR);
    o.mode = 0o640;
    let mut store = Store::open(o, false).unwrap();
    let report = store.apply(&input, t0(), false);
    assert!(matches!(report.entries[0].result, Ok(Change::Updated)));
    assert_eq!(facts(dir.join("a-international.crt")).2, 0o640);
    assert_eq!(facts(dir.join("ca-bundle.crt")).2, 0o640);
}

#[test]
fn leftover_temp_files_are_removed_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(".certsync-tmp-abc123"), "partial").unwrap();
    std::fs::write(dir.join(".certsync-tmpx"), "not ours").unwrap();
    std::fs::write(dir.join("other.pem"), "not ours").unwrap();
    let store = Store::open(opts(&dir, HOUR), true).unwrap();
    assert!(
        dir.join(".certsync-tmp-abc123").exists(),
        "read-only touches nothing"
    );
    drop(store);
    let _store = Store::open(opts(&dir, HOUR), false).unwrap();
    assert_eq!(names(&dir), [".certsync-tmpx", "other.pem"]);
}

#[test]
fn second_open_on_the_same_folder_is_locked() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    let first = Store::open(opts(&dir, HOUR), false).unwrap();
    match Store::open(opts(&dir, HOUR), false) {
        Err(StoreError::Locked { path }) => assert_eq!(path, dir),
        other => panic!("expected Locked, got {:?}", other.err()),
    }
    // Read-only use (dry run, check) does not need the lock.
    Store::open(opts(&dir, HOUR), true).unwrap();
    drop(first);
    Store::open(opts(&dir, HOUR), false).unwrap();
}

#[test]
fn second_process_gets_locked() {
    // flock is per open file description, so also check across processes with flock(1).
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    let _store = Store::open(opts(&dir, HOUR), false).unwrap();
    let status = std::process::Command::new("flock")
        .args(["--nonblock", "--exclusive"])
        .arg(&dir)
        .arg("true")
        .status()
        .expect("run flock(1)");
    assert_eq!(
        status.code(),
        Some(1),
        "flock(1) must find the folder locked"
    );
}

#[test]
fn dry_run_writes_nothing_and_keeps_state() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    let a = TestCa::new("A");
    let input = pass(vec![entry("a", "international", &[&a])], &[]);

    // Read-only on a missing folder: it stays missing.
    let mut ro = Store::open(opts(&dir, HOUR), true).unwrap();
    let report = ro.apply(&input, t0(), true);
    assert!(matches!(report.entries[0].result, Ok(Change::Created)));
    assert!(report.changed());
    assert!(!dir.exists());

    let mut store = Store::open(opts(&dir, HOUR), false).unwrap();
    let report = store.apply(&input, t0(), true);
    assert!(report.changed());
    assert_eq!(report.changed_files.len(), 3, "{:?}", report.changed_files);
    assert!(names(&dir).is_empty());
    assert!(store.current().is_empty());
    let report = store.apply(&input, t0(), false);
    assert!(matches!(report.entries[0].result, Ok(Change::Created)));

    // A dry rotation changes nothing on disk nor in memory.
    let before = snapshot(&dir);
    let b = TestCa::new("B");
    let rotated = pass(vec![entry("a", "international", &[&b])], &[]);
    let report = store.apply(&rotated, t0(), true);
    assert!(matches!(report.entries[0].result, Ok(Change::Updated)));
    assert_eq!(snapshot(&dir), before);
    assert_eq!(store.current()[0].fingerprints, [a.fp()]);
    assert_eq!(store.next_deadline(), None);
    // The last pass before its removal, dry: it would go, and stays.
    for _ in 1..UNPRODUCED_PASSES {
        store.apply(&pass(vec![], &[]), t0(), false);
    }
    let report = store.apply(&pass(vec![], &[]), t0(), true);
    assert!(
        report
            .other
            .contains(&(dir.join("a-international.crt"), Change::Removed))
    );
    assert!(dir.join("a-international.crt").exists());
}

#[test]
fn manifest_survives_reopen_with_the_overlap() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    let (old, new) = (TestCa::new("old"), TestCa::new("new"));
    let t = t0();
    let rotated = pass(vec![entry("i1", "international", &[&new])], &[]);
    {
        let mut store = Store::open(opts(&dir, HOUR), false).unwrap();
        store.apply(
            &pass(vec![entry("i1", "international", &[&old])], &[]),
            t,
            false,
        );
        store.apply(&rotated, t, false);
    }
    let file = dir.join("i1-international.crt");
    let mut store = Store::open(opts(&dir, HOUR), false).unwrap();
    assert_eq!(store.next_deadline(), Some(t + HOUR));
    let state = store.current();
    assert_eq!(state[0].fingerprints, [new.fp()]);
    assert_eq!(state[0].not_after, Some(new.cert.not_after));
    assert_eq!(state[0].path, file);
    assert!(!store.apply(&rotated, t + mins(30), false).changed());
    assert_eq!(read(&file), new.pem() + &old.pem());
    drop(store);
    let mut store = Store::open(opts(&dir, HOUR), false).unwrap();
    assert!(store.apply(&rotated, t + HOUR, false).changed());
    assert_eq!(read(&file), new.pem());
}

#[test]
fn corrupt_manifest_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(".certsync-manifest.json"), "{ not json").unwrap();
    for read_only in [false, true] {
        match Store::open(opts(&dir, HOUR), read_only) {
            Err(e @ StoreError::Manifest { .. }) => {
                let text = e.to_string();
                assert!(text.contains(".certsync-manifest.json"), "{text}");
                assert!(text.contains("move it aside"), "{text}");
            }
            other => panic!("expected Manifest, got {:?}", other.err()),
        }
    }
    assert_eq!(read(dir.join(".certsync-manifest.json")), "{ not json");
}

#[test]
fn manifest_symlink_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(tmp.path().join("m.json"), r#"{"version":1,"files":{}}"#).unwrap();
    symlink(
        tmp.path().join("m.json"),
        dir.join(".certsync-manifest.json"),
    )
    .unwrap();
    assert!(matches!(
        Store::open(opts(&dir, HOUR), false),
        Err(StoreError::Manifest { .. })
    ));
}

#[test]
fn invalid_names_and_conflicts_are_per_entry_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    let a = TestCa::new("A");
    let mut store = Store::open(opts(&dir, HOUR), false).unwrap();
    let mut escape = entry("a", "international", &[&a]);
    escape.file_name = "../escape.crt".into();
    let mut reserved = entry("b", "international", &[&a]);
    reserved.file_name = ".certsync-manifest.json".into();
    let mut bundle = entry("c", "international", &[&a]);
    bundle.file_name = "ca-bundle.crt".into();
    let first = entry("d", "international", &[&a]);
    store.apply(&pass(vec![first.clone()], &[]), t0(), false);
    let d_before = facts(dir.join("d-international.crt"));
    let mut twin = entry("e", "international", &[&a]);
    twin.file_name = first.file_name.clone();
    let report = store.apply(
        &pass(vec![escape, reserved, bundle, first, twin], &[]),
        t0(),
        false,
    );
    assert!(matches!(
        report.entries[0].result,
        Err(StoreError::InvalidName { .. })
    ));
    assert!(matches!(
        report.entries[1].result,
        Err(StoreError::InvalidName { .. })
    ));
    assert!(matches!(
        report.entries[2].result,
        Err(StoreError::NameConflict { .. })
    ));
    // Two entries of one pass on one name: both fail, each naming the other, and the file
    // keeps its content (SPEC 7).
    for (i, other) in [(3, "instance e"), (4, "instance d")] {
        match &report.entries[i].result {
            Err(e @ StoreError::NameConflict { .. }) => {
                assert!(e.to_string().contains(other), "{e}")
            }
            other => panic!("entry {i}: {other:?}"),
        }
    }
    assert_eq!(facts(dir.join("d-international.crt")), d_before);
    assert!(!tmp.path().join("escape.crt").exists());

    // A configured instance that failed keeps its name against another instance.
    let mut taker = entry("f", "international", &[&a]);
    taker.file_name = "d-international.crt".into();
    let report = store.apply(&pass(vec![taker], &["d"]), t0(), false);
    assert!(matches!(
        report.entries[0].result,
        Err(StoreError::NameConflict { .. })
    ));
}

#[test]
fn relative_dir_and_bad_bundle_name_are_refused() {
    let mut o = opts(std::path::Path::new("trust"), HOUR);
    assert!(matches!(
        Store::open(o.clone(), true),
        Err(StoreError::RelativeDir { .. })
    ));
    let tmp = tempfile::tempdir().unwrap();
    o.dir = trust_dir(&tmp);
    o.bundle = Some("sub/bundle.crt".into());
    assert!(matches!(
        Store::open(o, false),
        Err(StoreError::InvalidName { .. })
    ));
}

#[test]
fn create_dir_failure_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("file"), "").unwrap();
    let o: StoreOptions = opts(&tmp.path().join("file").join("trust"), HOUR);
    assert!(matches!(
        Store::open(o, false),
        Err(StoreError::CreateDir { .. })
    ));
}

#[test]
fn empty_pass_input_on_empty_store_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    let mut store = Store::open(opts(&dir, HOUR), false).unwrap();
    let report = store.apply(&PassInput::default(), t0(), false);
    assert!(!report.changed(), "no empty bundle is created");
    assert!(names(&dir).is_empty());

    // A managed bundle is emptied when the last instance goes.
    let a = TestCa::new("A");
    store.apply(
        &pass(vec![entry("a", "international", &[&a])], &[]),
        t0(),
        false,
    );
    for _ in 1..UNPRODUCED_PASSES {
        store.apply(&pass(vec![], &[]), t0(), false);
    }
    let report = store.apply(&pass(vec![], &[]), t0(), false);
    assert!(
        report
            .other
            .contains(&(dir.join("ca-bundle.crt"), Change::Updated))
    );
    assert_eq!(read(dir.join("ca-bundle.crt")), "");
    assert_eq!(names(&dir), [".certsync-manifest.json", "ca-bundle.crt"]);
}

#[test]
fn write_failures_are_per_entry_and_keep_the_old_state() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    let (a1, a2, b, c) = (
        TestCa::new("A1"),
        TestCa::new("A2"),
        TestCa::new("B"),
        TestCa::new("C"),
    );
    let mut o = opts(&dir, HOUR);
    o.capath = false;
    let mut store = Store::open(o, false).unwrap();
    let t = t0();
    let b_entry = entry("b", "international", &[&b]);
    store.apply(
        &pass(
            vec![entry("a", "international", &[&a1]), b_entry.clone()],
            &[],
        ),
        t,
        false,
    );
    let before = snapshot(&dir);

    {
        let _frozen = Immutable::new(&dir);
        // A new name needs the manifest written first: that fails, so nothing is written.
        let report = store.apply(
            &pass(
                vec![
                    entry("a", "international", &[&a2]),
                    b_entry.clone(),
                    entry("c", "international", &[&c]),
                ],
                &[],
            ),
            t + mins(10),
            false,
        );
        assert!(!report.changed());
        // The manifest's own failure, then the bundle's write that it prevented.
        assert!(
            matches!(
                &report.errors[..],
                [StoreError::Io { path: m, .. }, StoreError::Io { path: b, .. }]
                    if m.ends_with(".certsync-manifest.json") && b.ends_with("ca-bundle.crt")
            ),
            "{:?}",
            report.errors
        );
        assert!(matches!(
            report.entries[0].result,
            Err(StoreError::Io { .. })
        ));
        assert!(matches!(report.entries[1].result, Ok(Change::Unchanged)));
        assert!(matches!(
            report.entries[2].result,
            Err(StoreError::Io { .. })
        ));

        // No new name: each write fails on its own.
        let report = store.apply(
            &pass(
                vec![entry("a", "international", &[&a2]), b_entry.clone()],
                &[],
            ),
            t + mins(10),
            false,
        );
        assert!(!report.changed());
        match &report.entries[0].result {
            Err(e @ StoreError::Io { path, .. }) => {
                assert_eq!(*path, dir.join("a-international.crt"));
                assert!(e.to_string().contains("temporary file"), "{e}");
            }
            other => panic!("expected Io, got {other:?}"),
        }
        assert!(report.errors.iter().any(|e| matches!(
            e,
            StoreError::Io { path, .. } if path.ends_with("ca-bundle.crt")
        )));
        assert_eq!(snapshot(&dir), before);
        assert_eq!(store.current()[0].fingerprints, [a1.fp()]);
        assert_eq!(store.next_deadline(), None);
    }

    // Writable again: the rotation happens now, with its overlap starting now.
    let report = store.apply(
        &pass(vec![entry("a", "international", &[&a2]), b_entry], &[]),
        t + mins(20),
        false,
    );
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(matches!(report.entries[0].result, Ok(Change::Updated)));
    assert_eq!(read(dir.join("a-international.crt")), a2.pem() + &a1.pem());
    assert_eq!(store.next_deadline(), Some(t + mins(20) + HOUR));
    assert!(names(&dir).iter().all(|n| !n.starts_with(".certsync-tmp-")));
}

#[test]
fn derived_files_follow_an_instance_file_that_could_not_be_written() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    let (a1, a2, b1, b2) = (
        TestCa::new("A1"),
        TestCa::new("A2"),
        TestCa::new("B1"),
        TestCa::new("B2"),
    );
    let mut store = Store::open(opts(&dir, Duration::ZERO), false).unwrap();
    let t = t0();
    store.apply(
        &pass(
            vec![
                entry("a", "international", &[&a1]),
                entry("b", "international", &[&b1]),
            ],
            &[],
        ),
        t,
        false,
    );
    // a's file cannot be replaced (immutable); b's can.
    let a_file = dir.join("a-international.crt");
    let _frozen = Immutable::new(&a_file);
    let report = store.apply(
        &pass(
            vec![
                entry("a", "international", &[&a2]),
                entry("b", "international", &[&b2]),
            ],
            &[],
        ),
        t + mins(10),
        false,
    );
    assert!(report.entries[0].result.is_err(), "{:?}", report.entries[0]);
    assert!(matches!(report.entries[1].result, Ok(Change::Updated)));
    assert_eq!(std::fs::read_to_string(&a_file).unwrap(), a1.pem());
    // The bundle agrees with the instance files: a's old CA (still in its file), b's new one.
    let bundle = std::fs::read_to_string(dir.join("ca-bundle.crt")).unwrap();
    assert!(
        bundle.contains(&a1.pem()),
        "a's CA left the bundle but not its file"
    );
    assert!(
        !bundle.contains(&a2.pem()),
        "the bundle is ahead of a's file"
    );
    assert!(bundle.contains(&b2.pem()) && !bundle.contains(&b1.pem()));
}

#[test]
fn an_entry_without_certificates_never_empties_its_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    let a = TestCa::new("A");
    let mut store = Store::open(opts(&dir, Duration::ZERO), false).unwrap();
    store.apply(
        &pass(vec![entry("a", "international", &[&a])], &[]),
        t0(),
        false,
    );
    let before = snapshot(&dir);
    let report = store.apply(
        &pass(vec![entry("a", "international", &[])], &[]),
        t0(),
        false,
    );
    assert!(matches!(
        report.entries[0].result,
        Err(StoreError::Refused { .. })
    ));
    assert_eq!(snapshot(&dir), before);
}
