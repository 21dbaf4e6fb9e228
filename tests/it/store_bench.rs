//! Timing of the store on many instances (a cold pass of 200 and 2,000 new instance files,
//! each with its own CA, plus bundle and hash files), checked for correctness as it goes.
//! Figures are printed; for meaningful ones run
//! `cargo test --release --test it store_bench -- --nocapture`.

use std::time::{Duration, Instant};

use crate::store_support::*;
use certsync::store::{Change, Store};

fn run(n: usize, cas: &[TestCa]) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    let input = (0..n).fold(Pass::new(), |input, i| {
        input.instance(&format!("inst{i:05}"), &[&cas[i]])
    });

    let start = Instant::now();
    let mut store = Store::open_locked(opts(&dir, Duration::from_secs(3600))).unwrap();
    let open = start.elapsed();
    let start = Instant::now();
    let report = commit(&mut store, &input, t0());
    let cold = start.elapsed();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(
        report
            .entries
            .iter()
            .all(|e| matches!(e.result, Ok(Change::Created)))
    );
    // n instance files, n hash files, bundle, manifest.
    assert_eq!(names(&dir).len(), 2 * n + 2);
    assert_eq!(report.changed_files.len(), 2 * n + 1);

    let start = Instant::now();
    let report = commit(&mut store, &input, t0());
    let warm = start.elapsed();
    assert!(!report.changed());
    drop(store);

    let start = Instant::now();
    let mut store = Store::open_locked(opts(&dir, Duration::from_secs(3600))).unwrap();
    let reopen = start.elapsed();
    assert_eq!(store.current().len(), n);
    assert!(!commit(&mut store, &input, t0()).changed());

    eprintln!(
        "store bench n={n}: open empty {open:?}, cold apply {cold:?} ({} files written), \
         unchanged apply {warm:?}, reopen with {n} files {reopen:?}",
        2 * n + 1
    );
}

#[test]
fn apply_200_and_2000_new_entries() {
    let cas = numbered_cas("CA", 2000);
    run(200, &cas);
    run(2000, &cas);
}
