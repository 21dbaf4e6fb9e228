//! The trust folder on a real file system: what the store writes, what it leaves alone, and
//! how it keeps replaced CAs for the rotation overlap (SPEC 7).
//!
//! Long (one test per rule of SPEC 7 about the flat folder, each short with the scenario
//! builder of `store_support`); the other shapes are in `store_shapes`, the API in `store_api`.

use std::collections::BTreeSet;
use std::os::unix::fs::symlink;
use std::time::Duration;

use crate::store_support::*;
use certsync::store::{
    Change, PassInput, Store, StoreError, StoreOptions, StorePlan, StoreView, UNPRODUCED_PASSES,
};

const HOUR: Duration = Duration::from_secs(3600);

#[test]
fn first_write_creates_files_manifest_bundle_and_hashes() {
    let mut s = Scenario::with(|o| {
        o.dir = o.dir.join("nested");
        // Looser than the umask (022) allows: only an explicit chmod gives this mode.
        o.mode = 0o664;
    });
    let (a, b) = (TestCa::new("CA A"), TestCa::new("CA B"));
    let dir = s.dir.clone();
    s.store();
    assert_eq!(facts(&dir).2, 0o755);
    assert_eq!(facts(dir.parent().unwrap()).2, 0o755);

    let input = Pass::new().instance("i1", &[&a]).instance("i2", &[&b, &a]);
    let report = s.apply_ok(&input, t0());
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

    assert_eq!(s.read("i1-international.crt"), a.pem());
    assert_eq!(s.read("i2-international.crt"), b.pem() + &a.pem());
    let mut sorted = [&a, &b];
    sorted.sort_by_key(|c| c.fp());
    assert_eq!(s.read("ca-bundle.crt"), sorted[0].pem() + &sorted[1].pem());
    let hash_a = format!("{}.0", a.cert.subject_hash_hex());
    let hash_b = format!("{}.0", b.cert.subject_hash_hex());
    assert_eq!(s.read(&hash_a), a.pem());
    assert_eq!(s.read(&hash_b), b.pem());

    let mut expected = vec![
        ".certsync-manifest.json".to_string(),
        "ca-bundle.crt".into(),
        "i1-international.crt".into(),
        "i2-international.crt".into(),
        hash_a.clone(),
        hash_b.clone(),
    ];
    expected.sort();
    assert_eq!(s.names(), expected, "no temp files or others");
    for name in &expected {
        assert_eq!(facts(dir.join(name)).2, 0o664, "{name}");
    }

    let m = s.manifest();
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

    let state = s.store().current();
    assert_eq!(state.len(), 2);
    assert_eq!(state[1].instance_id, "i2");
    assert_eq!(state[1].fingerprints, [b.fp(), a.fp()]);
    assert_eq!(s.store().next_deadline(), None);
}

use sha2::Digest as _;

#[test]
fn second_identical_apply_touches_nothing() {
    let mut s = Scenario::new();
    let (a, b) = (TestCa::new("CA A"), TestCa::new("CA B"));
    let input = Pass::new()
        .instance("i1", &[&a])
        .category("i2", "national", &[&b]);
    let now = t0();
    assert!(s.apply(&input, now).changed());
    let before = snapshot(&s.dir);

    let report = s.apply(&input, now + mins(1));
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
        snapshot(&s.dir),
        before,
        "inode, mtime, mode and bytes unchanged"
    );

    // Also after a restart: the state is rebuilt from the folder, nothing is rewritten.
    s.reopen();
    assert!(!s.apply(&input, now + mins(2)).changed());
    assert_eq!(snapshot(&s.dir), before);
}

#[test]
fn rotation_keeps_the_replaced_ca_until_the_overlap_ends() {
    let mut s = Scenario::new();
    let (old, new) = (TestCa::new("CA old"), TestCa::new("CA new"));
    let file = s.path("i1-international.crt");
    let t = t0();
    s.apply(&Pass::new().instance("i1", &[&old]), t);

    let rotated = Pass::new().instance("i1", &[&new]);
    let t1 = t + mins(10);
    let report = s.apply(&rotated, t1);
    assert!(matches!(report.entries[0].result, Ok(Change::Updated)));
    assert_eq!(report.entries[0].fingerprints, [new.fp()]);
    assert_eq!(read(&file), new.pem() + &old.pem(), "new first, old after");
    assert!(s.read("ca-bundle.crt").contains(&old.pem()));
    assert!(s.hash_file(&old, 0).exists());
    assert_eq!(s.store().next_deadline(), Some(t1 + HOUR));
    let replaced = &s.manifest()["files"]["i1-international.crt"]["replaced"];
    assert_eq!(replaced[0]["sha256"], old.fp());
    assert_eq!(
        replaced[0]["replaced_at"],
        time::OffsetDateTime::from(t1)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    );

    let report = s.apply(&rotated, t1 + mins(59));
    assert!(!report.changed(), "still inside the window");
    assert_eq!(read(&file), new.pem() + &old.pem());

    let report = s.apply(&rotated, t1 + HOUR);
    assert!(matches!(report.entries[0].result, Ok(Change::Updated)));
    assert_eq!(read(&file), new.pem());
    assert_eq!(s.read("ca-bundle.crt"), new.pem());
    assert!(!s.hash_file(&old, 0).exists());
    assert!(
        report
            .other
            .contains(&(s.hash_file(&old, 0), Change::Removed))
    );
    assert_eq!(s.store().next_deadline(), None);
}

#[test]
fn a_replaced_ca_leaves_at_its_not_after_when_that_is_sooner() {
    let mut s = Scenario::with(|o| o.rotation_overlap = 24 * HOUR);
    let not_after = time::OffsetDateTime::now_utc() + time::Duration::minutes(30);
    let old = TestCa::with_validity("CA short", not_after);
    let new = TestCa::new("CA new");
    let file = s.path("i1-international.crt");
    let t = t0();
    s.apply(&Pass::new().instance("i1", &[&old]), t);
    let rotated = Pass::new().instance("i1", &[&new]);
    s.apply(&rotated, t);
    assert_eq!(read(&file), new.pem() + &old.pem());
    assert_eq!(s.store().next_deadline(), Some(old.cert.not_after.into()));
    s.apply(&rotated, old.cert.not_after.into());
    assert_eq!(read(&file), new.pem());
}

#[test]
fn overlap_zero_replaces_at_once_and_a_returning_ca_is_current_again() {
    let (old, new) = (TestCa::new("CA old"), TestCa::new("CA new"));
    let (to_old, to_new) = (
        Pass::new().instance("i1", &[&old]),
        Pass::new().instance("i1", &[&new]),
    );
    let t = t0();
    let mut s = Scenario::with(|o| o.rotation_overlap = Duration::ZERO);
    s.apply(&to_old, t);
    s.apply(&to_new, t);
    assert_eq!(s.read("i1-international.crt"), new.pem());
    assert_eq!(s.read("ca-bundle.crt"), new.pem());
    assert_eq!(s.store().next_deadline(), None);

    // With an overlap: rotate away and back inside the window.
    let mut s = Scenario::new();
    s.apply(&to_old, t);
    s.apply(&to_new, t);
    s.apply(&to_old, t + mins(5));
    assert_eq!(s.read("i1-international.crt"), old.pem() + &new.pem());
    let record = &s.manifest()["files"]["i1-international.crt"];
    assert_eq!(record["current"], serde_json::json!([old.fp()]));
    assert_eq!(record["replaced"].as_array().unwrap().len(), 1);
    assert_eq!(record["replaced"][0]["sha256"], new.fp());
    assert_eq!(s.store().next_deadline(), Some(t + mins(5) + HOUR));
}

#[test]
fn failed_instance_keeps_its_file_record_and_bundle_place() {
    let mut s = Scenario::new();
    let [a1, a2, b1, b2] = cas(["A1", "A2", "B1", "B2"]);
    let t = t0();
    s.apply(&Pass::new().instance("a", &[&a1]).instance("b", &[&b1]), t);
    // b rotates: b1 is overlapping until t + 1h.
    s.apply(&Pass::new().instance("a", &[&a1]).instance("b", &[&b2]), t);
    let b_file = s.path("b-international.crt");
    let b_before = (facts(&b_file), read(&b_file));
    let b_record = s.manifest()["files"]["b-international.crt"].clone();

    // Two hours later b fails (configured, not synced) while a rotates.
    let input = Pass::new().instance("a", &[&a2]).failed("b");
    let report = s.apply_ok(&input, t + 2 * HOUR);
    assert_eq!((facts(&b_file), read(&b_file)), b_before, "b untouched");
    assert_eq!(b_record, s.manifest()["files"]["b-international.crt"]);
    assert_eq!(
        read(&b_file),
        b2.pem() + &b1.pem(),
        "no overlap expiry for b"
    );
    let bundle = s.read("ca-bundle.crt");
    for ca in [&a1, &a2, &b1, &b2] {
        assert!(bundle.contains(&ca.pem()), "{}", ca.cert.subject);
    }
    assert!(s.hash_file(&b1, 0).exists());
    assert_eq!(report.changed_instances, BTreeSet::from(["a".to_string()]));
    // b's deadline lies before the last pass: not offered again (the daemon would spin).
    assert_eq!(s.store().next_deadline(), Some(t + 2 * HOUR + HOUR));
}

#[test]
fn prune_removes_gone_instances_and_vanished_categories() {
    let mut s = Scenario::new();
    let (a, b, n) = (TestCa::new("A"), TestCa::new("B"), TestCa::new("N"));
    let t = t0();
    s.apply(
        &Pass::new()
            .instance("a", &[&a])
            .category("a", "national", &[&n])
            .instance("b", &[&b]),
        t,
    );
    // b left the config; a no longer lists "national". Nothing produces those files now:
    // they stay (and their CAs in the bundle) for UNPRODUCED_PASSES - 1 passes.
    let later = Pass::new().instance("a", &[&a]);
    for n in 1..UNPRODUCED_PASSES {
        let report = s.apply_ok(&later, t);
        assert!(report.removed.is_empty(), "pass {n}: {:?}", report.removed);
        assert!(!report.changed(), "pass {n}");
        for kept in ["a-national.crt", "b-international.crt"] {
            assert!(s.path(kept).exists(), "pass {n}: {kept}");
            assert!(
                report
                    .unproduced
                    .iter()
                    .any(|u| u.path == s.path(kept) && u.passes == n),
                "pass {n}: {:?}",
                report.unproduced
            );
        }
        assert!(s.read("ca-bundle.crt").contains(&b.pem()));
    }
    let report = s.apply_ok(&later, t);
    for gone in ["a-national.crt", "b-international.crt"] {
        assert!(
            report
                .removed
                .iter()
                .any(|r| r.path == s.path(gone) && r.reason.contains("3 passes")),
            "{:?}",
            report.removed
        );
        assert!(!s.path(gone).exists(), "{gone}");
        assert!(report.other.contains(&(s.path(gone), Change::Removed)));
        assert!(report.changed_files.contains(&s.path(gone)));
        assert!(s.manifest()["files"].get(gone).is_none());
    }
    assert_eq!(
        report.changed_instances,
        BTreeSet::from(["a".to_string(), "b".to_string()])
    );
    assert_eq!(s.read("ca-bundle.crt"), a.pem());
    assert!(!s.hash_file(&b, 0).exists());
    assert_eq!(s.store().current().len(), 1);
}

#[test]
fn renamed_file_is_pruned_and_the_new_name_written() {
    let a = TestCa::new("A");
    let mut s = Scenario::new().holding_a(&a);
    let mut renamed = entry("a", "international", &[&a]);
    renamed.file_name = "orders.crt".into();
    let renamed = Pass::new().entry(renamed);
    let report = s.apply(&renamed, t0());
    assert!(matches!(report.entries[0].result, Ok(Change::Created)));
    assert_eq!(s.read("orders.crt"), a.pem());
    // The old name is no longer produced: it goes after UNPRODUCED_PASSES passes.
    assert!(s.path("a-international.crt").exists());
    s.apply_times(UNPRODUCED_PASSES - 1, &renamed, t0());
    assert!(!s.path("a-international.crt").exists());
}

#[test]
fn prune_false_keeps_files_records_and_bundle_entries() {
    let mut s = Scenario::with(|o| o.prune = false);
    let (a, b) = (TestCa::new("A"), TestCa::new("B"));
    let only_a = Pass::new().instance("a", &[&a]);
    s.apply(&Pass::new().instance("a", &[&a]).instance("b", &[&b]), t0());
    let b_file = s.path("b-international.crt");
    let before = facts(&b_file);
    let report = s.apply(&only_a, t0());
    assert!(!report.changed());
    assert_eq!(facts(&b_file), before);
    assert_eq!(
        s.manifest()["files"]["b-international.crt"]["instance_id"],
        "b"
    );
    assert!(s.read("ca-bundle.crt").contains(&b.pem()));

    // Switching the bundle off without prune keeps the managed bundle as it is.
    s.opts.bundle = None;
    s.reopen();
    let bundle_before = facts(s.path("ca-bundle.crt"));
    assert!(!s.apply(&only_a, t0()).changed());
    assert_eq!(facts(s.path("ca-bundle.crt")), bundle_before);
}

#[test]
fn bundle_off_with_prune_removes_it_and_capath_off_removes_hash_files() {
    let a = TestCa::new("A");
    let mut s = Scenario::new().holding_a(&a);
    let input = Pass::new().instance("a", &[&a]);
    s.opts.bundle = None;
    s.opts.capath = false;
    s.opts.prune = false; // hash files are derived: they go even without prune
    s.reopen();
    let report = s.apply(&input, t0());
    assert_eq!(
        s.names(),
        [
            ".certsync-manifest.json",
            "a-international.crt",
            "ca-bundle.crt"
        ]
    );
    assert_eq!(report.other, [(s.hash_file(&a, 0), Change::Removed)]);
    s.opts.prune = true;
    s.reopen();
    s.apply(&input, t0());
    assert_eq!(
        s.names(),
        [".certsync-manifest.json", "a-international.crt"]
    );
}

#[test]
fn unmanaged_file_in_the_way_is_refused_and_others_proceed() {
    let mut s = Scenario::new();
    s.put("a-international.crt", "mine\n");
    s.put("ca-bundle.crt", "also mine\n");
    let before = facts(s.path("a-international.crt"));
    let (a, b) = (TestCa::new("A"), TestCa::new("B"));
    let report = s.apply(&Pass::new().instance("a", &[&a]).instance("b", &[&b]), t0());
    assert!(matches!(
        &report.entries[0].result,
        Err(StoreError::Unmanaged { path }) if *path == s.path("a-international.crt")
    ));
    assert!(matches!(report.entries[1].result, Ok(Change::Created)));
    assert_eq!(s.read("a-international.crt"), "mine\n");
    assert_eq!(facts(s.path("a-international.crt")), before);
    assert_eq!(s.read("ca-bundle.crt"), "also mine\n");
    assert!(report.errors.iter().any(|e| matches!(
        e,
        StoreError::Unmanaged { path } if *path == s.path("ca-bundle.crt")
    )));
    assert_eq!(s.read("b-international.crt"), b.pem());
    assert!(s.manifest()["files"].get("a-international.crt").is_none());
    assert!(s.manifest()["files"].get("ca-bundle.crt").is_none());
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
        let report = s.apply(&Pass::new(), t0());
        assert!(
            report
                .errors
                .iter()
                .all(|e| matches!(e, StoreError::Unmanaged { .. }))
        );
    }
    assert_eq!(s.read("a-international.crt"), "mine\n");
    assert!(!s.path("b-international.crt").exists());
}

fn is_symlink(path: &std::path::Path) -> bool {
    std::fs::symlink_metadata(path)
        .unwrap()
        .file_type()
        .is_symlink()
}

#[test]
fn symlink_in_the_way_is_not_followed() {
    let mut s = Scenario::new();
    s.create_dir();
    let target = s.tmp.path().join("precious.pem");
    std::fs::write(&target, "precious\n").unwrap();
    symlink(&target, s.path("a-international.crt")).unwrap();
    let a = TestCa::new("A");
    let report = s.apply(&Pass::new().instance("a", &[&a]), t0());
    assert!(matches!(
        &report.entries[0].result,
        Err(StoreError::NotRegularFile { path }) if *path == s.path("a-international.crt")
    ));
    assert_eq!(read(&target), "precious\n");
    assert!(is_symlink(&s.path("a-international.crt")));
}

#[test]
fn managed_file_replaced_by_a_symlink_is_neither_followed_nor_removed() {
    let mut s = Scenario::new();
    let (a, a2) = (TestCa::new("A"), TestCa::new("A2"));
    s.apply(&Pass::new().instance("a", &[&a]), t0());
    let target = s.tmp.path().join("precious.pem");
    std::fs::write(&target, "precious\n").unwrap();
    let file = s.path("a-international.crt");
    std::fs::remove_file(&file).unwrap();
    symlink(&target, &file).unwrap();

    let report = s.apply(&Pass::new().instance("a", &[&a2]), t0());
    assert!(matches!(
        report.entries[0].result,
        Err(StoreError::NotRegularFile { .. })
    ));
    assert_eq!(read(&target), "precious\n");
    // The record stays as it was (the file did not change hands).
    assert_eq!(
        s.manifest()["files"]["a-international.crt"]["current"],
        serde_json::json!([a.fp()])
    );

    // Pruning it refuses as well.
    s.apply_times(UNPRODUCED_PASSES - 1, &Pass::new(), t0());
    let report = s.apply(&Pass::new(), t0());
    assert!(report.errors.iter().any(|e| matches!(
        e,
        StoreError::NotRegularFile { path } if *path == file
    )));
    assert!(is_symlink(&file));
    assert_eq!(read(&target), "precious\n");
}

#[test]
fn manifest_listed_file_changed_or_missing_is_still_managed() {
    let mut s = Scenario::new();
    let (a, b) = (TestCa::new("A"), TestCa::new("B"));
    let input = Pass::new().instance("a", &[&a]).instance("b", &[&b]);
    s.apply(&input, t0());
    s.close();
    s.put("a-international.crt", "half a cert");
    std::fs::remove_file(s.path("b-international.crt")).unwrap();
    let report = s.apply(&input, t0());
    assert!(matches!(report.entries[0].result, Ok(Change::Updated)));
    assert!(matches!(report.entries[1].result, Ok(Change::Created)));
    assert_eq!(s.read("a-international.crt"), a.pem());
    assert_eq!(s.read("b-international.crt"), b.pem());
}

#[test]
fn changed_mode_rewrites_the_file() {
    let a = TestCa::new("A");
    let mut s = Scenario::new().holding_a(&a);
    let input = Pass::new().instance("a", &[&a]);
    s.opts.mode = 0o640;
    s.reopen();
    let report = s.apply(&input, t0());
    assert!(matches!(report.entries[0].result, Ok(Change::Updated)));
    assert_eq!(facts(s.path("a-international.crt")).2, 0o640);
    assert_eq!(facts(s.path("ca-bundle.crt")).2, 0o640);
}

#[test]
fn leftover_temp_files_are_removed_at_open() {
    let mut s = Scenario::new();
    s.put(".certsync-tmp-abc123", "partial");
    s.put(".certsync-tmpx", "not ours");
    s.put("other.pem", "not ours");
    drop(s.view());
    assert!(
        s.path(".certsync-tmp-abc123").exists(),
        "read-only touches nothing"
    );
    s.store();
    assert_eq!(s.names(), [".certsync-tmpx", "other.pem"]);
}

#[test]
fn second_open_on_the_same_folder_is_locked() {
    let mut s = Scenario::new();
    s.store();
    match Store::<OpaqueState>::open_locked(s.opts.clone()) {
        Err(StoreError::Locked { path }) => assert_eq!(path, s.dir),
        other => panic!("expected Locked, got {:?}", other.err()),
    }
    // Read-only use (dry run, check) does not need the lock.
    s.view();
    s.reopen();
}

use certsync::store::OpaqueState;

#[test]
fn second_process_gets_locked() {
    // flock is per open file description, so also check across processes with flock(1).
    let mut s = Scenario::new();
    s.store();
    let status = std::process::Command::new("flock")
        .args(["--nonblock", "--exclusive"])
        .arg(&s.dir)
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
    let mut s = Scenario::new();
    let a = TestCa::new("A");
    let input = Pass::new().instance("a", &[&a]);

    // A view of a missing folder: it stays missing.
    let report = s.view().plan(&input, t0()).report();
    assert!(matches!(report.entries[0].result, Ok(Change::Created)));
    assert!(report.changed());
    assert!(!s.dir.exists());

    let report = s.dry_run(&input, t0());
    assert!(report.changed());
    assert_eq!(report.changed_files.len(), 3, "{:?}", report.changed_files);
    assert!(s.names().is_empty());
    assert!(s.store().current().is_empty());
    let report = s.apply(&input, t0());
    assert!(matches!(report.entries[0].result, Ok(Change::Created)));

    // A dry rotation changes nothing on disk nor in memory.
    let before = snapshot(&s.dir);
    let b = TestCa::new("B");
    let report = s.dry_run(&Pass::new().instance("a", &[&b]), t0());
    assert!(matches!(report.entries[0].result, Ok(Change::Updated)));
    assert_eq!(snapshot(&s.dir), before);
    assert_eq!(s.store().current()[0].fingerprints, [a.fp()]);
    assert_eq!(s.store().next_deadline(), None);
    // The last pass before its removal, dry: it would go, and stays.
    s.apply_times(UNPRODUCED_PASSES - 1, &Pass::new(), t0());
    let report = s.dry_run(&Pass::new(), t0());
    assert!(
        report
            .other
            .contains(&(s.path("a-international.crt"), Change::Removed))
    );
    assert!(s.path("a-international.crt").exists());
}

/// A folder holding `a` and `b`, and the pass that rotates `a` (to `b`'s CA) and prunes `b`'s
/// file, planned.
fn about_to_prune_b() -> (Scenario, StorePlan) {
    let mut s = Scenario::new();
    let [a, b, c] = cas(["A", "B", "C"]);
    s.apply_ok(&Pass::new().instance("a", &[&a]).instance("b", &[&b]), t0());
    s.apply_times(
        UNPRODUCED_PASSES - 1,
        &Pass::new().instance("a", &[&c]),
        t0(),
    );
    let plan = s.store().plan(&Pass::new().instance("a", &[&b]), t0());
    (s, plan)
}

#[test]
fn a_dry_run_reports_what_the_commit_then_does() {
    let (mut s, plan) = about_to_prune_b();
    // The same entries, files and removals whether the pass is only planned or committed.
    let input = plan.input().clone();
    let preview = plan.preview().clone();
    let dry = plan.report();
    let before = snapshot(&s.dir);
    let done = s.apply_ok(&input, t0());
    assert_ne!(snapshot(&s.dir), before, "the commit wrote");
    let outcome = |r: &certsync::store::StoreReport| {
        (
            r.entries
                .iter()
                .map(|e| {
                    let change = *e.result.as_ref().unwrap();
                    (e.path.clone(), change, e.fingerprints.clone(), e.not_after)
                })
                .collect::<Vec<_>>(),
            r.changed_files.clone(),
            r.changed_instances.clone(),
            r.removed.clone(),
            r.other.clone(),
            r.unproduced.clone(),
        )
    };
    assert_eq!(outcome(&dry), outcome(&done));
    assert!(
        done.removed
            .iter()
            .any(|r| r.path == s.path("b-international.crt"))
    );
    assert_eq!(preview.changed_files, done.changed_files);
    assert_eq!(
        preview.removed_files,
        [s.path("b-international.crt")],
        "{preview:?}"
    );
    assert!(
        preview
            .written_files
            .contains(&s.path("a-international.crt"))
    );
    assert!(
        preview
            .written_files
            .iter()
            .chain(&preview.removed_files)
            .eq(preview.changed_files.iter())
    );
}

/// A hook filtered on an instance whose file a pass prunes is owed a run by that pass: the
/// daemon records it from the preview before the file goes, so the preview must name the
/// instance (it named only the instances of the pass's entries).
#[test]
fn the_preview_names_an_instance_whose_file_is_pruned() {
    let (mut s, plan) = about_to_prune_b();
    let preview = plan.preview().clone();
    let state = s.store().saved_state().clone();
    let done = s.store().commit(plan, state);
    assert_eq!(
        done.changed_instances,
        BTreeSet::from(["a".to_string(), "b".to_string()])
    );
    assert_eq!(preview.changed_instances, done.changed_instances);
}

#[test]
fn manifest_survives_reopen_with_the_overlap() {
    let mut s = Scenario::new();
    let (old, new) = (TestCa::new("old"), TestCa::new("new"));
    let t = t0();
    let rotated = Pass::new().instance("i1", &[&new]);
    s.apply(&Pass::new().instance("i1", &[&old]), t);
    s.apply(&rotated, t);
    let file = s.path("i1-international.crt");
    let store = s.reopen();
    assert_eq!(store.next_deadline(), Some(t + HOUR));
    let state = store.current();
    assert_eq!(state[0].fingerprints, [new.fp()]);
    assert_eq!(state[0].not_after, Some(new.cert.not_after));
    assert_eq!(state[0].path, file);
    assert!(!s.apply(&rotated, t + mins(30)).changed());
    assert_eq!(read(&file), new.pem() + &old.pem());
    s.reopen();
    assert!(s.apply(&rotated, t + HOUR).changed());
    assert_eq!(read(&file), new.pem());
}

#[test]
fn corrupt_manifest_is_a_clear_error() {
    let s = Scenario::new();
    s.put(".certsync-manifest.json", "{ not json");
    let opened = [
        Store::<OpaqueState>::open_locked(s.opts.clone()).map(drop),
        StoreView::<OpaqueState>::open(s.opts.clone()).map(drop),
    ];
    for result in opened {
        match result {
            Err(e @ StoreError::Manifest { .. }) => {
                let text = e.to_string();
                assert!(text.contains(".certsync-manifest.json"), "{text}");
                assert!(text.contains("move it aside"), "{text}");
            }
            other => panic!("expected Manifest, got {:?}", other.err()),
        }
    }
    assert_eq!(s.read(".certsync-manifest.json"), "{ not json");
}

#[test]
fn manifest_symlink_is_refused() {
    let s = Scenario::new();
    s.create_dir();
    let elsewhere = s.tmp.path().join("m.json");
    std::fs::write(&elsewhere, r#"{"version":1,"files":{}}"#).unwrap();
    symlink(&elsewhere, s.path(".certsync-manifest.json")).unwrap();
    assert!(matches!(
        Store::<OpaqueState>::open_locked(s.opts.clone()),
        Err(StoreError::Manifest { .. })
    ));
}

#[test]
fn invalid_names_and_conflicts_are_per_entry_errors() {
    let mut s = Scenario::new();
    let a = TestCa::new("A");
    let named = |id: &str, name: &str| {
        let mut e = entry(id, "international", &[&a]);
        e.file_name = name.into();
        e
    };
    let first = entry("d", "international", &[&a]);
    s.apply(&Pass::new().entry(first.clone()), t0());
    let d_before = facts(s.path("d-international.crt"));
    let report = s.apply(
        &Pass::new()
            .entry(named("a", "../escape.crt"))
            .entry(named("b", ".certsync-manifest.json"))
            .entry(named("c", "ca-bundle.crt"))
            .entry(first.clone())
            .entry(named("e", &first.file_name)),
        t0(),
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
    assert_eq!(facts(s.path("d-international.crt")), d_before);
    assert!(!s.tmp.path().join("escape.crt").exists());

    // A configured instance that failed keeps its name against another instance.
    let taker = Pass::new()
        .entry(named("f", "d-international.crt"))
        .failed("d");
    let report = s.apply(&taker, t0());
    assert!(matches!(
        report.entries[0].result,
        Err(StoreError::NameConflict { .. })
    ));
}

#[test]
fn relative_dir_and_bad_bundle_name_are_refused() {
    let mut o = opts(std::path::Path::new("trust"), HOUR);
    assert!(matches!(
        StoreView::<OpaqueState>::open(o.clone()),
        Err(StoreError::RelativeDir { .. })
    ));
    let tmp = tempfile::tempdir().unwrap();
    o.dir = trust_dir(&tmp);
    o.bundle = Some("sub/bundle.crt".into());
    assert!(matches!(
        Store::<OpaqueState>::open_locked(o),
        Err(StoreError::InvalidName { .. })
    ));
}

#[test]
fn create_dir_failure_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("file"), "").unwrap();
    let o: StoreOptions = opts(&tmp.path().join("file").join("trust"), HOUR);
    assert!(matches!(
        Store::<OpaqueState>::open_locked(o),
        Err(StoreError::CreateDir { .. })
    ));
}

#[test]
fn empty_pass_input_on_empty_store_changes_nothing() {
    let mut s = Scenario::new();
    let report = s.apply(&PassInput::default(), t0());
    assert!(!report.changed(), "no empty bundle is created");
    assert!(s.names().is_empty());

    // A managed bundle is emptied when the last instance goes.
    let a = TestCa::new("A");
    s.apply(&Pass::new().instance("a", &[&a]), t0());
    let report = s.apply_times(UNPRODUCED_PASSES, &Pass::new(), t0());
    assert!(
        report
            .other
            .contains(&(s.path("ca-bundle.crt"), Change::Updated))
    );
    assert_eq!(s.read("ca-bundle.crt"), "");
    assert_eq!(s.names(), [".certsync-manifest.json", "ca-bundle.crt"]);
}

#[test]
fn write_failures_are_per_entry_and_keep_the_old_state() {
    let mut s = Scenario::with(|o| o.capath = false);
    let [a1, a2, b, c] = cas(["A1", "A2", "B", "C"]);
    let t = t0();
    let rotated = Pass::new().instance("a", &[&a2]).instance("b", &[&b]);
    s.apply(&Pass::new().instance("a", &[&a1]).instance("b", &[&b]), t);
    let before = snapshot(&s.dir);

    {
        let _frozen = Immutable::new(&s.dir);
        // A new name needs the manifest written first: that fails, so nothing is written.
        let report = s.apply(&rotated.clone().instance("c", &[&c]), t + mins(10));
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
        let report = s.apply(&rotated, t + mins(10));
        assert!(!report.changed());
        match &report.entries[0].result {
            Err(e @ StoreError::Io { path, .. }) => {
                assert_eq!(*path, s.path("a-international.crt"));
                assert!(e.to_string().contains("temporary file"), "{e}");
            }
            other => panic!("expected Io, got {other:?}"),
        }
        assert!(report.errors.iter().any(|e| matches!(
            e,
            StoreError::Io { path, .. } if path.ends_with("ca-bundle.crt")
        )));
        assert_eq!(snapshot(&s.dir), before);
        assert_eq!(s.store().current()[0].fingerprints, [a1.fp()]);
        assert_eq!(s.store().next_deadline(), None);
    }

    // Writable again: the rotation happens now, with its overlap starting now.
    let report = s.apply_ok(&rotated, t + mins(20));
    assert!(matches!(report.entries[0].result, Ok(Change::Updated)));
    assert_eq!(s.read("a-international.crt"), a2.pem() + &a1.pem());
    assert_eq!(s.store().next_deadline(), Some(t + mins(20) + HOUR));
    assert!(s.names().iter().all(|n| !n.starts_with(".certsync-tmp-")));
}

#[test]
fn derived_files_follow_an_instance_file_that_could_not_be_written() {
    let mut s = Scenario::with(|o| o.rotation_overlap = Duration::ZERO);
    let [a1, a2, b1, b2] = cas(["A1", "A2", "B1", "B2"]);
    let t = t0();
    s.apply(&Pass::new().instance("a", &[&a1]).instance("b", &[&b1]), t);
    // a's file cannot be replaced (immutable); b's can.
    let a_file = s.path("a-international.crt");
    let _frozen = Immutable::new(&a_file);
    let report = s.apply(
        &Pass::new().instance("a", &[&a2]).instance("b", &[&b2]),
        t + mins(10),
    );
    assert!(report.entries[0].result.is_err(), "{:?}", report.entries[0]);
    assert!(matches!(report.entries[1].result, Ok(Change::Updated)));
    assert_eq!(read(&a_file), a1.pem());
    // The bundle agrees with the instance files: a's old CA (still in its file), b's new one.
    let bundle = s.read("ca-bundle.crt");
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
    let a = TestCa::new("A");
    let mut s = Scenario::with(|o| o.rotation_overlap = Duration::ZERO).holding_a(&a);
    let before = snapshot(&s.dir);
    let report = s.apply(&Pass::new().instance("a", &[]), t0());
    assert!(matches!(
        report.entries[0].result,
        Err(StoreError::Refused { .. })
    ));
    assert_eq!(snapshot(&s.dir), before);
}

/// Many files in one pass go through the group commit (every temp file written, one sync of
/// the file system, then the renames): each name ends up whole, with its mode, and no
/// temporary file is left; a second pass over them rewrites nothing.
#[test]
fn many_files_in_one_pass_are_written_whole_by_one_group_commit() {
    let mut s = Scenario::with(|o| o.mode = 0o640);
    let cas = numbered_cas("group CA", 40);
    let mut input = Pass::new();
    for (i, ca) in cas.iter().enumerate() {
        input = input.instance(&format!("g{i}"), &[ca]);
    }
    let report = s.apply_ok(&input, t0());
    assert_eq!(report.changed_instances.len(), 40);
    for (i, ca) in cas.iter().enumerate() {
        let path = s.dir.join(format!("g{i}-international.crt"));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            ca.pem(),
            "{}",
            path.display()
        );
        assert_eq!(facts(&path).2, 0o640, "{}", path.display());
    }
    let temps: Vec<_> = std::fs::read_dir(&s.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(certsync::store::TEMP_FILE_PREFIX))
        .collect();
    assert!(temps.is_empty(), "temporary files left: {temps:?}");
    let before = snapshot(&s.dir);
    assert!(!s.apply_ok(&input, t0() + mins(1)).changed());
    assert_eq!(snapshot(&s.dir), before);
}
