//! The store's two-step API (issue 9): a plan is a value that writes nothing until a [`Store`]
//! commits it, and only a plan of the store's current records, into the folder it locked; the
//! daemon's state is typed, and the manifest on disk stays byte for byte what it was when the
//! state was opaque JSON (SPEC 7).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use crate::store_support::*;
use certsync::store::{OpaqueState, Store, StoreError, StoreView};
use serde::{Deserialize, Serialize};

/// A manifest as certsync wrote it while the state was opaque JSON (its bytes, through
/// `Manifest::to_bytes` of that code): records of every kind, and a state with owed hooks in
/// both saved shapes and discovered instances.
const WITH_STATE: &str = include_str!("store_support/manifest-with-state.json");
/// The same records in the atomic-dir layout, without a state.
const ATOMIC_DIR: &str = include_str!("store_support/manifest-atomic-dir.json");

/// A state shaped like the daemon's: hooks owed a run (`{written, removed}`, or one list as an
/// older certsync saved it) and discovered instances.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
struct DaemonLike {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    owed_hooks: BTreeMap<String, Owed>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    discovered: BTreeMap<String, Discovered>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(untagged)]
enum Owed {
    Split {
        #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
        written: BTreeSet<PathBuf>,
        #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
        removed: BTreeSet<PathBuf>,
    },
    Flat(BTreeSet<PathBuf>),
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Discovered {
    name: Option<String>,
}

fn paths(list: &[&str]) -> BTreeSet<PathBuf> {
    list.iter().map(PathBuf::from).collect()
}

/// The state [`WITH_STATE`] holds.
fn fixture_state() -> DaemonLike {
    DaemonLike {
        owed_hooks: BTreeMap::from([
            (
                "legacy".to_string(),
                Owed::Flat(paths(&["/etc/certsync/trust/b-national.crt"])),
            ),
            (
                "reload-nginx".to_string(),
                Owed::Split {
                    written: paths(&[
                        "/etc/certsync/trust/a-international.crt",
                        "/etc/certsync/trust/ca-bundle.crt",
                    ]),
                    removed: paths(&["/etc/certsync/trust/old.crt"]),
                },
            ),
        ]),
        discovered: BTreeMap::from([
            (
                "b".to_string(),
                Discovered {
                    name: Some("orders".into()),
                },
            ),
            ("c".to_string(), Discovered { name: None }),
        ]),
    }
}

/// A scenario whose folder holds `manifest` (and none of the files it lists).
fn folder_with_manifest(manifest: &str) -> Scenario {
    let s = Scenario::new();
    s.put(".certsync-manifest.json", manifest);
    s
}

#[test]
fn a_manifest_written_before_typed_states_still_loads_and_is_written_back_the_same() {
    let s = folder_with_manifest(WITH_STATE);
    let view = StoreView::<DaemonLike>::open(s.opts.clone()).unwrap();
    assert_eq!(*view.saved_state(), fixture_state());
    let current = view.current();
    let ids: Vec<&str> = current.iter().map(|e| e.instance_id.as_str()).collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(current[0].fingerprints, ["2".repeat(64)]);
    assert_eq!(current[0].path, s.path("a-international.crt"));
    let opaque = StoreView::<OpaqueState>::open(s.opts.clone()).unwrap();
    let json: serde_json::Value = serde_json::from_str(WITH_STATE).unwrap();
    assert_eq!(opaque.saved_state().as_ref(), Some(&json["state"]));

    // Saved again, typed: the same bytes.
    let mut store = Store::<DaemonLike>::open_locked(s.opts.clone()).unwrap();
    store.save_state(fixture_state()).unwrap();
    assert_eq!(
        s.read(".certsync-manifest.json"),
        WITH_STATE,
        "unchanged: not written"
    );
    store.save_state(DaemonLike::default()).unwrap();
    let without = s.read(".certsync-manifest.json");
    assert!(
        !without.contains("\"state\""),
        "the default is left out: {without}"
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&without).unwrap()["files"],
        json["files"]
    );
    store.save_state(fixture_state()).unwrap();
    assert_eq!(s.read(".certsync-manifest.json"), WITH_STATE);
    drop(store);

    // And as opaque JSON.
    let mut store = Store::<OpaqueState>::open_locked(s.opts.clone()).unwrap();
    store.save_state(None).unwrap();
    assert_eq!(s.read(".certsync-manifest.json"), without);
    store.save_state(Some(json["state"].clone())).unwrap();
    assert_eq!(s.read(".certsync-manifest.json"), WITH_STATE);
}

#[test]
fn an_atomic_dir_manifest_written_before_typed_states_still_loads() {
    let s = folder_with_manifest(ATOMIC_DIR);
    let mut store = Store::<DaemonLike>::open_locked(s.opts.clone()).unwrap();
    assert_eq!(*store.saved_state(), DaemonLike::default());
    assert_eq!(store.current().len(), 2);
    store.save_state(fixture_state()).unwrap();
    let with = s.read(".certsync-manifest.json");
    assert!(with.contains("\"layout\": \"atomic-dir\""), "{with}");
    store.save_state(DaemonLike::default()).unwrap();
    assert_eq!(s.read(".certsync-manifest.json"), ATOMIC_DIR);
}

#[test]
fn an_unreadable_state_is_the_default_and_the_next_write_replaces_it() {
    // A hand-edited state that is not the daemon's shape: the records still load.
    let edited = WITH_STATE.replacen(
        "\"owed_hooks\": {",
        "\"owed_hooks\": 5,\n    \"ignored\": {",
        1,
    );
    assert_ne!(edited, WITH_STATE);
    let s = folder_with_manifest(&edited);
    let view = StoreView::<DaemonLike>::open(s.opts.clone()).unwrap();
    assert_eq!(*view.saved_state(), DaemonLike::default());
    assert_eq!(view.current().len(), 2);
    // Saving the default (what the store holds) still replaces what is on disk.
    let mut store = Store::<DaemonLike>::open_locked(s.opts.clone()).unwrap();
    store.save_state(DaemonLike::default()).unwrap();
    let manifest = s.read(".certsync-manifest.json");
    assert!(!manifest.contains("\"state\""), "{manifest}");

    // Through a commit too, even one that changes no file.
    let s = Scenario::new();
    let a = TestCa::new("A");
    let input = Pass::new().instance("a", &[&a]);
    let mut store = Store::<DaemonLike>::open_locked(s.opts.clone()).unwrap();
    let plan = store.plan(&input, t0());
    let report = store.commit(plan, fixture_state());
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    drop(store);
    let mut m = s.manifest();
    m["state"]["discovered"] = serde_json::json!(["not", "a", "map"]);
    std::fs::write(s.path(".certsync-manifest.json"), m.to_string()).unwrap();
    let mut store = Store::<DaemonLike>::open_locked(s.opts.clone()).unwrap();
    assert_eq!(*store.saved_state(), DaemonLike::default());
    let before = snapshot(&s.dir);
    let plan = store.plan(&input, t0());
    assert!(plan.preview().changed_files.is_empty());
    let report = store.commit(plan, DaemonLike::default());
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(!report.changed());
    assert!(s.manifest().get("state").is_none(), "{}", s.manifest());
    let after = snapshot(&s.dir);
    let others = |snap: &[(String, Facts, Vec<u8>)]| -> Vec<(String, Facts, Vec<u8>)> {
        snap.iter()
            .filter(|(n, ..)| n != ".certsync-manifest.json")
            .cloned()
            .collect()
    };
    assert_eq!(others(&after), others(&before), "only the manifest changed");
}

#[test]
fn a_typed_state_committed_with_a_pass_is_there_after_reopen() {
    let s = Scenario::new();
    let a = TestCa::new("A");
    let mut store = Store::<DaemonLike>::open_locked(s.opts.clone()).unwrap();
    let plan = store.plan(&Pass::new().instance("a", &[&a]), t0());
    assert_eq!(
        plan.preview().written_files.len(),
        3,
        "{:?}",
        plan.preview()
    );
    let report = store.commit(plan, fixture_state());
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(*store.saved_state(), fixture_state());
    drop(store);
    let store = Store::<DaemonLike>::open_locked(s.opts.clone()).unwrap();
    assert_eq!(*store.saved_state(), fixture_state());
    let json: serde_json::Value = serde_json::from_str(WITH_STATE).unwrap();
    assert_eq!(s.manifest()["state"], json["state"]);
}

#[test]
fn a_plan_of_records_that_changed_since_is_refused() {
    let mut s = Scenario::new();
    let (a1, a2, a3) = (TestCa::new("A1"), TestCa::new("A2"), TestCa::new("A3"));
    s.apply_ok(&Pass::new().instance("a", &[&a1]), t0());
    let store = s.store();
    let stale = store.plan(&Pass::new().instance("a", &[&a2]), t0());
    let fresh = store.plan(&Pass::new().instance("a", &[&a3]), t0());
    let report = store.commit(fresh, None);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let before = snapshot(&s.dir);

    // Planned before that commit: it would write records computed from the old ones.
    let report = s.store().commit(stale, None);
    assert!(!report.changed());
    match &report.entries[0].result {
        Err(StoreError::Refused { reason }) => assert!(reason.contains("plan again"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(&report.errors[..], [StoreError::Refused { .. }]));
    assert_eq!(snapshot(&s.dir), before);

    // A plan of a view (even of the same folder) is not the store's either.
    let from_view = s.view().plan(&Pass::new().instance("a", &[&a2]), t0());
    let report = s.store().commit(from_view, None);
    assert!(matches!(
        report.entries[0].result,
        Err(StoreError::Refused { .. })
    ));
    assert_eq!(snapshot(&s.dir), before);
    // Planned again, it goes through.
    let report = s.apply_ok(&Pass::new().instance("a", &[&a2]), t0());
    assert!(report.changed());
    assert!(s.read("a-international.crt").starts_with(&a2.pem()));
}

#[test]
fn a_plan_is_not_committed_when_the_folder_moved_since_the_store_locked_it() {
    let mut s = Scenario::new();
    let (a1, a2) = (TestCa::new("A1"), TestCa::new("A2"));
    s.apply_ok(&Pass::new().instance("a", &[&a1]), t0());
    let plan = s.store().plan(&Pass::new().instance("a", &[&a2]), t0());
    assert!(!plan.preview().changed_files.is_empty());
    // The locked folder is moved away and another takes its path.
    let moved = s.tmp.path().join("moved");
    std::fs::rename(&s.dir, &moved).unwrap();
    std::fs::create_dir(&s.dir).unwrap();
    let before = snapshot(&moved);

    let report = s.store().commit(plan, None);
    assert!(!report.changed());
    assert!(
        matches!(&report.errors[..], [StoreError::FolderMoved { path, .. }] if *path == s.dir),
        "{:?}",
        report.errors
    );
    match &report.entries[0].result {
        Err(StoreError::Refused { reason }) => {
            assert!(
                reason.contains("not the folder certsync opened"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(snapshot(&moved), before, "the locked folder is untouched");
    assert!(s.names().is_empty(), "nothing written at the path either");
    // The state is not saved into the moved folder either.
    assert!(
        s.store()
            .save_state(Some(serde_json::json!({"x": 1})))
            .is_err()
    );
    assert_eq!(snapshot(&moved), before);
}

#[test]
fn a_view_reads_without_creating_locking_or_cleaning() {
    let mut s = Scenario::with(|o| o.layout = certsync::store::Layout::AtomicDir);
    let a = TestCa::new("A");
    s.apply_ok(&Pass::new().instance("a", &[&a]), t0());
    s.close();
    // What a crash leaves: a temp file and a generation nobody points to.
    std::fs::write(s.path(".certsync-tmp-xyz"), "partial").unwrap();
    std::fs::create_dir(s.path("..2001_01_01_00_00_00.000000001")).unwrap();
    let before = s.names();
    let view = s.view();
    assert_eq!(view.current()[0].fingerprints, [a.fp()]);
    let report = view.plan(&Pass::new().instance("a", &[&a]), t0()).report();
    assert!(!report.changed(), "{:?}", report.changed_files);
    assert_eq!(s.names(), before);
    // It holds no lock: the store opens beside it (and then cleans up).
    s.store();
    assert!(!s.path(".certsync-tmp-xyz").exists());
    assert!(!s.path("..2001_01_01_00_00_00.000000001").exists());
    drop(view);
}
