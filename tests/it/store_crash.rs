//! Crash safety (SPEC 7): a writer process is SIGKILLed at random moments of its passes; after
//! each kill every file in the folder must be complete (old or new, never partial) and named in
//! the manifest (or be a leftover temp file), and a restarted store must open and converge.
//!
//! The writer is a separate process, the `store_writer` example in mode `crash`
//! (`examples/store_writer.rs`).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::store_support::*;
use certsync::cert::{encode_pem, read_certs_lenient};
use certsync::store::{PassInput, Store, UNPRODUCED_PASSES};

#[test]
fn sigkill_at_random_moments_leaves_every_file_whole_and_managed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    let mut seen_temp_leftover = false;
    for round in 0..20 {
        let child = spawn_writer("crash", &dir, false);
        // The writer has completed at least one pass (it holds the lock and has generated its
        // CAs); the kill lands at a random point of a later pass.
        let passes_first = 1 + fastrand::usize(0..3);
        kill_after_passes(child, passes_first, Duration::from_millis(60), round);

        seen_temp_leftover |= check_folder(&dir, round);
        let store: Store = Store::open_locked(opts(&dir, Duration::from_secs(3600)))
            .unwrap_or_else(|e| panic!("round {round}: reopen: {e}"));
        assert!(
            names(&dir).iter().all(|n| !n.starts_with(".certsync-tmp-")),
            "round {round}: temp files left after open"
        );
        let report = store
            .plan(&PassInput::default(), SystemTime::now())
            .report();
        assert!(
            report.errors.is_empty(),
            "round {round}: {:?}",
            report.errors
        );
    }
    // Not asserted (timing decides), but shows whether kills landed inside writes.
    eprintln!("a kill left a temp file in at least one round: {seen_temp_leftover}");

    // Finally converge with a real pass: every file then matches its record.
    let a = TestCa::new("final");
    let mut store = Store::open_locked(opts(&dir, Duration::ZERO)).unwrap();
    // Files nothing produces go after UNPRODUCED_PASSES passes (SPEC 5.3). Later than every
    // pass of the writer (whose clock ran 10 minutes a pass), so that no replaced CA is still
    // inside its overlap.
    let last = Pass::new().instance("inst00", &[&a]);
    for _ in 0..UNPRODUCED_PASSES {
        let later = SystemTime::now() + Duration::from_secs(30 * 86400);
        let report = commit(&mut store, &last, later);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
    }
    assert_eq!(
        names(&dir),
        [
            ".certsync-manifest.json".to_string(),
            format!("{}.0", a.cert.subject_hash_hex()),
            "ca-bundle.crt".into(),
            "inst00-international.crt".into(),
        ]
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
    );
}

/// The invariants after a kill. Returns whether a temp file was left over.
fn check_folder(dir: &Path, round: usize) -> bool {
    let manifest = manifest(dir);
    let files = manifest["files"].as_object().expect("files object");
    let mut temp = false;
    for name in names(dir) {
        if name.starts_with(".certsync-tmp-") {
            temp = true;
            continue;
        }
        if name == ".certsync-manifest.json" {
            continue;
        }
        assert!(
            files.contains_key(&name),
            "round {round}: {name} exists but the manifest does not list it"
        );
        let content = std::fs::read(dir.join(&name)).unwrap();
        if content.is_empty() && files[&name]["kind"] == "bundle" {
            continue;
        }
        let certs = read_certs_lenient(&content)
            .unwrap_or_else(|e| panic!("round {round}: {name} is not whole: {e}"));
        let normalised: String = certs.iter().map(|c| encode_pem(&c.der)).collect();
        assert_eq!(
            normalised.as_bytes(),
            &content[..],
            "round {round}: {name} is partial or not normalised"
        );
    }
    temp
}
