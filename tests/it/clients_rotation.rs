//! A CA rotation as consumers see it (issue 4): while a client keeps connecting to a server
//! that still uses the old CA, certsync takes in the new CA; with `rotation_overlap` every
//! connection keeps succeeding until the window ends, and then the old CA leaves every output
//! (instance file, bundle, hash files, truststore) at once. Time is driven through the store's
//! `plan(.., now)`, so the hour-long window takes no wall-clock time.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, SystemTime};

use crate::common::*;
use certsync::cert::Cert;
use certsync::store::{DesiredEntry, Layout, PassInput, Store, StoreOptions, StoreReport};
use certsync_sim::{SimOptions, Simulator};

const OVERLAP: Duration = Duration::from_secs(3600);

fn input(id: &str, ca: &Cert) -> PassInput {
    PassInput {
        updates: vec![DesiredEntry {
            instance_id: id.into(),
            category: "international".into(),
            file_name: "orders-international.crt".into(),
            certs: vec![ca.clone()],
            kept: Vec::new(),
        }],
        synced: [id.to_string()].into(),
        configured: [id.to_string()].into(),
        counts: true,
        ..PassInput::default()
    }
}

/// One pass through the store's two steps: plan `input` at `at`, commit it.
fn apply(store: &mut Store, input: &PassInput, at: SystemTime) -> StoreReport {
    let plan = store.plan(input, at);
    store.commit(plan, None)
}

/// Connections made by the background client, and whether any failed.
#[derive(Default)]
struct Tally {
    ok: usize,
    failures: Vec<String>,
}

async fn rotation_with_overlap(layout: Layout) {
    let tmp = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimOptions {
        instances: 1,
        ..SimOptions::default()
    })
    .await
    .unwrap();
    let id = sim.instance_ids()[0].clone();
    let dir = tmp.path().join("trust");
    let opts = StoreOptions {
        bundle: Some("ca-bundle.crt".into()),
        pkcs12: Some("truststore.p12".into()),
        rotation_overlap: OVERLAP,
        layout,
        ..StoreOptions::new(dir.clone())
    };
    let file: PathBuf = dir.join("orders-international.crt");
    let bundle = dir.join("ca-bundle.crt");
    let p12 = dir.join("truststore.p12");

    let old_ca = Cert::from_der(&sim.ca(&id, "international").der).unwrap();
    let (cert, key) = sim.issue_server_cert(&id, "international", &["127.0.0.1"]);
    let old_server = TlsServer::start(&cert, &key);

    let mut store = Store::open_locked(opts).unwrap();
    let t0 = SystemTime::now();
    let report = apply(&mut store, &input(&id, &old_ca), t0);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    accepted(
        "curl --cacert (old CA)",
        &curl_cacert(&file, &old_server.url()),
    );

    let stop = AtomicBool::new(false);
    let tally = Mutex::new(Tally::default());
    let progressed = Condvar::new();
    // Waits until the client has completed `n` more connections than `since`.
    let wait_for_more = |since: usize, n: usize| {
        let mut t = tally.lock().unwrap();
        while t.ok < since + n && t.failures.is_empty() {
            t = progressed.wait(t).unwrap();
        }
        t.ok
    };

    std::thread::scope(|s| {
        // Whatever ends this closure, a failed assertion included, stops the consumer, so the
        // scope's join cannot hang the test.
        let _stop = StopOnDrop(&stop);
        // The consumer: connects again and again to the server that still uses the old CA,
        // through the folder (OpenSSL -CApath) and through the bundle (curl).
        s.spawn(|| {
            let mut round = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let out = if round.is_multiple_of(2) {
                    s_client_capath(&dir, old_server.port)
                } else {
                    curl_cacert(&bundle, &old_server.url())
                };
                round += 1;
                let mut t = tally.lock().unwrap();
                if out.status.success() {
                    t.ok += 1;
                } else {
                    t.failures.push(all_output(&out));
                }
                progressed.notify_all();
            }
        });

        let seen = wait_for_more(0, 2);

        // The rotation: the cloud has a new CA; its servers move to it one by one.
        let new_ca = Cert::from_der(&sim.rotate(&id, "international").der).unwrap();
        let (cert, key) = sim.issue_server_cert(&id, "international", &["127.0.0.1"]);
        let new_server = TlsServer::start(&cert, &key);
        refused(
            "curl --cacert before the new CA is synced",
            &curl_cacert(&file, &new_server.url()),
        );

        let report = apply(
            &mut store,
            &input(&id, &new_ca),
            t0 + Duration::from_secs(60),
        );
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        let seen = wait_for_more(seen, 2);
        // Inside the window both servers are trusted, by every shape.
        for (name, port, url) in [
            ("old", old_server.port, old_server.url()),
            ("new", new_server.port, new_server.url()),
        ] {
            accepted(&format!("curl file ({name})"), &curl_cacert(&file, &url));
            accepted(
                &format!("curl bundle ({name})"),
                &curl_cacert(&bundle, &url),
            );
            accepted(&format!("curl --capath ({name})"), &curl_capath(&dir, &url));
            accepted(&format!("s_client ({name})"), &s_client_capath(&dir, port));
            accepted(
                &format!("java ({name})"),
                &java_handshake(&p12, "changeit", port),
            );
        }
        assert_eq!(keytool_list(&p12, "changeit").1, 2);

        // Later in the window: still both (nothing rewritten).
        let report = apply(&mut store, &input(&id, &new_ca), t0 + OVERLAP / 2);
        assert!(!report.changed(), "{:?}", report.changed_files);
        wait_for_more(seen, 2);

        stop.store(true, Ordering::Relaxed);
        let t = tally.lock().unwrap();
        assert!(
            t.failures.is_empty(),
            "a connection to the old server failed inside the overlap:\n{}",
            t.failures.join("\n---\n")
        );
        assert!(t.ok >= 6, "the client connected only {} times", t.ok);
        drop(t);

        // The window ends: the old CA leaves every output in the same pass.
        let report = apply(
            &mut store,
            &input(&id, &new_ca),
            t0 + Duration::from_secs(60) + OVERLAP + Duration::from_secs(1),
        );
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), new_ca.to_pem());
        assert_eq!(std::fs::read_to_string(&bundle).unwrap(), new_ca.to_pem());
        let hash_files: Vec<String> = visible_names(&dir)
            .into_iter()
            .filter(|n| n.starts_with(&new_ca.subject_hash_hex()))
            .collect();
        assert_eq!(hash_files, [format!("{}.0", new_ca.subject_hash_hex())]);
        assert_eq!(
            std::fs::read_to_string(dir.join(&hash_files[0])).unwrap(),
            new_ca.to_pem()
        );
        let (listed, trusted, count, text) = keytool_list(&p12, "changeit");
        assert!(listed && trusted == 1 && count == Some(1), "{text}");
        assert!(
            text.contains(&new_ca.fingerprint()),
            "alias is the fingerprint:\n{text}"
        );

        refused("curl file (old)", &curl_cacert(&file, &old_server.url()));
        refused(
            "curl bundle (old)",
            &curl_cacert(&bundle, &old_server.url()),
        );
        refused("curl --capath (old)", &curl_capath(&dir, &old_server.url()));
        refused("s_client (old)", &s_client_capath(&dir, old_server.port));
        refused(
            "java (old)",
            &java_handshake(&p12, "changeit", old_server.port),
        );
        accepted("s_client (new)", &s_client_capath(&dir, new_server.port));
        accepted(
            "java (new)",
            &java_handshake(&p12, "changeit", new_server.port),
        );
    });
}

fn visible_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn rotation_seen_by_clients_flat() {
    rotation_with_overlap(Layout::Flat).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rotation_seen_by_clients_atomic_dir() {
    rotation_with_overlap(Layout::AtomicDir).await;
}

/// Sets its flag when dropped (on unwinding too).
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
