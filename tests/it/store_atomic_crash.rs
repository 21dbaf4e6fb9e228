//! The atomic-dir layout under a running reader and under SIGKILL (SPEC 7): at every moment,
//! every visible name resolves to a whole file of either the old or the new set, and the files
//! read through one `..data` always agree with each other (the bundle is exactly the union of
//! the instance files); after a kill the store opens, removes stray generations and converges.
//!
//! The writer is a separate process, the `store_writer` example in modes `atomic` and `swap`
//! (`examples/store_writer.rs`).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use crate::store_support::*;
use certsync::cert::{encode_pem, read_certs_lenient};
use certsync::store::{Store, StoreOptions, UNPRODUCED_PASSES};

/// One consistent read of the set through `..data`: `None` when the generation went away
/// under the reader (it must then see the next one).
fn read_set(dir: &Path) -> Option<Vec<(String, Vec<u8>)>> {
    let generation = std::fs::read_link(dir.join("..data")).ok()?;
    let gen_dir = dir.join(generation);
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&gen_dir).ok()? {
        let name = entry.ok()?.file_name().into_string().unwrap();
        out.push((name.clone(), std::fs::read(gen_dir.join(&name)).ok()?));
    }
    out.sort();
    Some(out)
}

fn whole(name: &str, content: &[u8]) {
    let certs = read_certs_lenient(content).unwrap_or_else(|e| panic!("{name} is not whole: {e}"));
    let normalised: String = certs.iter().map(|c| encode_pem(&c.der)).collect();
    assert_eq!(normalised.as_bytes(), content, "{name} is partial");
}

/// The bundle of a set is exactly the union of its instance files.
fn consistent(set: &[(String, Vec<u8>)]) {
    let mut union = BTreeSet::new();
    let mut bundle = None;
    for (name, content) in set {
        whole(name, content);
        let fps: BTreeSet<String> = read_certs_lenient(content)
            .unwrap()
            .iter()
            .map(|c| c.fingerprint())
            .collect();
        if name == "ca-bundle.crt" {
            bundle = Some(fps);
        } else if name.ends_with(".crt") {
            union.extend(fps);
        }
    }
    if let Some(bundle) = bundle {
        assert_eq!(
            bundle, union,
            "the bundle disagrees with the instance files of its set"
        );
    }
}

#[test]
fn a_reader_never_sees_a_partial_or_mixed_set_and_kills_leave_it_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    let stop = AtomicBool::new(false);
    let reads = AtomicUsize::new(0);
    /// Stops the reader however the writer's side ends: a failed assertion there must fail
    /// the test, not leave the scope waiting for a reader that never stops.
    struct StopOnDrop<'a>(&'a AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    std::thread::scope(|s| {
        // The reader: through every visible name, and through one `..data` at a time.
        let reader = s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let Ok(entries) = std::fs::read_dir(&dir) else {
                    std::thread::yield_now();
                    continue;
                };
                for entry in entries.flatten() {
                    let name = entry.file_name().into_string().unwrap();
                    if name.starts_with('.') {
                        continue;
                    }
                    // A name removed by this swap may dangle for a moment (ENOENT): it is
                    // not in the new set. Whatever opens is whole.
                    if let Ok(content) = std::fs::read(dir.join(&name)) {
                        whole(&name, &content);
                        reads.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if let Some(set) = read_set(&dir) {
                    consistent(&set);
                }
            }
        });

        let _stop = StopOnDrop(&stop);
        for round in 0..20 {
            let child = spawn_writer("atomic", &dir, false);
            let passes_first = 2 + fastrand::usize(0..3);
            kill_after_passes(child, passes_first, Duration::from_millis(40), round);

            // After the kill: every visible name is managed and whole or (removed) dangling.
            let manifest = manifest(&dir);
            let files = manifest["files"].as_object().expect("files");
            for name in names(&dir) {
                if name.starts_with('.') {
                    continue;
                }
                assert!(files.contains_key(&name), "round {round}: {name} unmanaged");
            }
            let store: Store = Store::open_locked(atomic_opts(&dir))
                .unwrap_or_else(|e| panic!("round {round}: reopen: {e}"));
            let gens: Vec<String> = names(&dir)
                .into_iter()
                .filter(|n| n.starts_with("..") && n != "..data")
                .collect();
            assert_eq!(gens.len(), 1, "round {round}: stray generations {gens:?}");
            assert!(
                names(&dir).iter().all(|n| !n.starts_with(".certsync-tmp-")),
                "round {round}"
            );
            drop(store);
        }
        stop.store(true, Ordering::Relaxed);
        reader.join().expect("reader saw a partial or mixed set");
    });
    assert!(reads.load(Ordering::Relaxed) > 0, "the reader read nothing");

    // Converge with a real pass.
    let a = TestCa::new("final");
    let zero_overlap = StoreOptions {
        rotation_overlap: Duration::ZERO,
        ..atomic_opts(&dir)
    };
    let mut store = Store::open_locked(zero_overlap).unwrap();
    // Later than every pass of the writer (whose clock ran 10 minutes a pass), so that no
    // replaced CA is still inside its overlap.
    // Files nothing produces go after UNPRODUCED_PASSES passes (SPEC 5.3).
    let last = Pass::new().instance("inst00", &[&a]);
    for _ in 0..UNPRODUCED_PASSES {
        let later = SystemTime::now() + Duration::from_secs(30 * 86400);
        let report = commit(&mut store, &last, later);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
    }
    let visible: Vec<String> = names(&dir)
        .into_iter()
        .filter(|n| !n.starts_with('.'))
        .collect();
    let mut expected = vec![
        format!("{}.0", a.cert.subject_hash_hex()),
        "ca-bundle.crt".to_string(),
        "inst00-international.crt".into(),
    ];
    expected.sort();
    assert_eq!(visible, expected);
    assert_eq!(read(dir.join("inst00-international.crt")), a.pem());
}

/// Issue 8: a crash right after `..data` was swapped left the new CAs without their visible
/// names (the hash file and the new instance file) until the next start. Killed the moment
/// the swap is seen, every name of the set in use must already resolve.
#[test]
fn a_kill_right_after_the_swap_leaves_every_name_of_the_new_set_visible() {
    use notify::{EventKind, RecursiveMode, Watcher};
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    let mut child = spawn_writer("swap", &dir, true);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.expect("writer output") == "ready" {
            break;
        }
    }
    let before = read_set(&dir).expect("a first set");

    // Watch for `..data` being renamed into place; kill the writer at once.
    let (tx, rx) = std::sync::mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && matches!(event.kind, EventKind::Modify(_) | EventKind::Create(_))
            && event.paths.iter().any(|p| p.ends_with("..data"))
        {
            let _ = tx.send(());
        }
    })
    .unwrap();
    watcher.watch(&dir, RecursiveMode::NonRecursive).unwrap();
    use std::io::Write as _;
    writeln!(child.stdin.as_mut().unwrap()).unwrap();
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the writer never swapped ..data");
    child.kill().expect("SIGKILL");
    child.wait().expect("reap writer");
    drop(watcher);

    let after = read_set(&dir).expect("a set in use");
    assert_ne!(after, before, "the kill landed before the swap");
    for (name, content) in &after {
        let visible = dir.join(name);
        let target = std::fs::read_link(&visible)
            .unwrap_or_else(|e| panic!("{name} of the set in use has no visible name: {e}"));
        assert_eq!(target, Path::new("..data").join(name));
        assert_eq!(&std::fs::read(&visible).unwrap(), content, "{name}");
    }
}
