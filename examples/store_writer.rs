//! The writer process of the store's crash tests (`tests/it/store_crash.rs`,
//! `tests/it/store_atomic_crash.rs`): `store_writer MODE DIR` opens the trust folder `DIR` for
//! writing and commits passes to it until the test SIGKILLs it. It is not a test: the tests
//! build and locate it (`store_support::spawn_writer`), so it never runs in an ordinary test
//! run, and the process they kill is a real separate one.
//!
//! Modes:
//! - `crash`: endless flat-layout passes that rotate CAs, add and drop instances and fail
//!   some, printing `pass N` after each;
//! - `atomic`: endless atomic-dir passes that rotate CAs and add and drop instances, printing
//!   `pass N` after each;
//! - `swap`: one atomic-dir pass, `ready`, then (after a line on stdin) a pass that brings a
//!   new instance with a new CA, so the new set has names the old one had not, then `done`.
// A test crate: its helpers are private to it, and `pub` only says which of them the test
// modules share, so the library's `unreachable_pub` rule does not apply here.
#![allow(unreachable_pub)]

// The writer uses the CAs, options and passes of the shared support; the scenario and file
// helpers are the tests' own.
#[allow(dead_code)]
#[path = "../tests/it/store_support/mod.rs"]
mod store_support;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use certsync::store::{DesiredEntry, PassInput, Store, StoreOptions};
use store_support::{Pass, TestCa, atomic_opts, commit, numbered_cas, opts};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [mode, dir] = &args[..] else {
        panic!("usage: store_writer crash|atomic|swap DIR, got {args:?}");
    };
    let dir = PathBuf::from(dir);
    match mode.as_str() {
        "crash" => crash(&dir),
        "atomic" => atomic(&dir),
        "swap" => swap(&dir),
        other => panic!("unknown mode {other:?}: crash, atomic or swap"),
    }
}

/// Opens `opts` for writing and commits, without end, pass `input(k)` for k = 0, 1, ... ten
/// minutes of the store's clock apart, asserting each meets no error and printing `pass k`
/// after it.
fn write_forever(opts: StoreOptions, mut input: impl FnMut(usize) -> PassInput) {
    let mut store = Store::open_locked(opts).expect("open in writer");
    let base = SystemTime::now();
    for k in 0usize.. {
        let at = base + Duration::from_secs(600 * k as u64);
        let report = commit(&mut store, &input(k), at);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        println!("pass {k}");
    }
}

/// The writer of `sigkill_at_random_moments_leaves_every_file_whole_and_managed`.
fn crash(dir: &Path) {
    const INSTANCES: usize = 40;
    let cas = numbered_cas("crash CA", 8);
    write_forever(opts(dir, Duration::from_secs(3600)), |k| {
        let mut input = PassInput::default();
        for i in 0..INSTANCES {
            let id = format!("inst{i:02}");
            if (i + k) % 7 == 0 {
                continue; // not configured this pass
            }
            input.configured.insert(id.clone());
            if (i * k) % 5 == 1 {
                continue; // failed this pass
            }
            input.synced.insert(id.clone());
            let mut certs = vec![cas[(i + k / 3) % cas.len()].cert.clone()];
            if i % 4 == 0 {
                certs.push(cas[(i + k / 2 + 3) % cas.len()].cert.clone());
                certs.dedup();
            }
            let category = if i % 3 == 0 && k % 2 == 0 {
                "national"
            } else {
                "international"
            };
            input.updates.push(DesiredEntry {
                instance_id: id.clone(),
                category: category.into(),
                file_name: format!("{id}-{category}.crt"),
                certs,
                kept: Vec::new(),
            });
        }
        input
    });
}

/// The writer of `a_reader_never_sees_a_partial_or_mixed_set_and_kills_leave_it_whole`.
fn atomic(dir: &Path) {
    const INSTANCES: usize = 12;
    let cas = numbered_cas("atomic CA", 6);
    write_forever(atomic_opts(dir), |k| {
        let mut input = PassInput::default();
        for i in 0..INSTANCES {
            let id = format!("inst{i:02}");
            if (i + k) % 5 == 0 {
                continue; // not configured this pass: pruned
            }
            input.configured.insert(id.clone());
            input.synced.insert(id.clone());
            input.updates.push(DesiredEntry {
                instance_id: id.clone(),
                category: "international".into(),
                file_name: format!("{id}-international.crt"),
                certs: vec![cas[(i + k) % cas.len()].cert.clone()],
                kept: Vec::new(),
            });
        }
        input
    });
}

/// The writer of `a_kill_right_after_the_swap_leaves_every_name_of_the_new_set_visible`.
fn swap(dir: &Path) {
    let (a, b) = (TestCa::new("swap CA a"), TestCa::new("swap CA b"));
    let mut store = Store::open_locked(atomic_opts(dir)).expect("open in writer");
    let first = Pass::new().instance("inst00", &[&a]);
    let report = commit(&mut store, &first, SystemTime::now());
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    println!("ready");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    let second = first.instance("inst01", &[&b]);
    commit(&mut store, &second, SystemTime::now());
    println!("done");
}
