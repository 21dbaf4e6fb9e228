//! `certsync inspect` on trust folders the store wrote (SPEC 2): every shape's certificates
//! (truststore entries included), and the folder summary of what is stale or expiring. The
//! folders are made with the store API; inspect is the real binary.

mod store_support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use certsync::store::{Layout, Store, StoreOptions};
use store_support::*;

const BIN: &str = env!("CARGO_BIN_EXE_certsync");

fn inspect(args: &[&Path], json: bool) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("inspect");
    if json {
        cmd.arg("--json");
    }
    cmd.args(args).stdin(Stdio::null()).env_remove("RUST_LOG");
    cmd.output().expect("run certsync inspect")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn opts_with(dir: &Path, layout: Layout) -> StoreOptions {
    StoreOptions {
        pkcs12: Some("truststore.p12".into()),
        layout,
        ..opts(dir, Duration::from_secs(3600))
    }
}

#[test]
fn a_healthy_atomic_dir_folder_lists_every_shape_and_nothing_stale() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    let (a, b) = (TestCa::new("A"), TestCa::new("B"));
    let mut store = Store::open(opts_with(&dir, Layout::AtomicDir), false).unwrap();
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
    drop(store);

    let out = inspect(&[&dir], true);
    assert!(out.status.success(), "{}", text(&out));
    let items: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    // 2 instance files + bundle (2) + 2 hash files + truststore (2).
    assert_eq!(items.len(), 8, "{items:#?}");
    let from_p12: Vec<&str> = items
        .iter()
        .filter(|i| i["path"].as_str().unwrap().ends_with("truststore.p12"))
        .map(|i| i["sha256"].as_str().unwrap())
        .collect();
    let mut want = vec![a.fp(), b.fp()];
    want.sort();
    let mut got: Vec<String> = from_p12.iter().map(|s| s.to_string()).collect();
    got.sort();
    assert_eq!(got, want);
    for item in &items {
        let keys: Vec<&String> = item.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 9, "exactly SPEC 2's keys: {keys:?}");
    }

    let out = inspect(&[&dir], false);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains(&format!("trust folder {}", dir.display())),
        "{t}"
    );
    assert!(t.contains("layout atomic-dir; managed: 2 instance file(s), bundle ca-bundle.crt, 2 hash file(s), truststore truststore.p12"), "{t}");
    assert!(t.contains("nothing stale"), "{t}");
    assert!(
        t.contains("nothing expires within 30 days (2 CA(s))"),
        "{t}"
    );
    assert!(!t.contains("  stale: "), "{t}");
}

#[test]
fn stale_unmanaged_and_expiring_files_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    let soon = TestCa::with_validity(
        "Soon",
        time::OffsetDateTime::now_utc() + time::Duration::days(10),
    );
    let gone = TestCa::with_validity(
        "Gone",
        time::OffsetDateTime::now_utc() - time::Duration::hours(1),
    );
    let (b, stranger) = (TestCa::new("B"), TestCa::new("Stranger"));
    let mut store = Store::open(opts_with(&dir, Layout::Flat), false).unwrap();
    store.apply(
        &pass(
            vec![
                entry("a", "international", &[&soon]),
                entry("b", "international", &[&b, &gone]),
            ],
            &[],
        ),
        t0(),
        false,
    );
    drop(store);
    // Behind certsync's back: a CA slipped into the bundle, a hash file deleted, an instance
    // file edited, and a file of someone else's.
    let bundle = read(dir.join("ca-bundle.crt"));
    std::fs::write(dir.join("ca-bundle.crt"), bundle + &stranger.pem()).unwrap();
    std::fs::remove_file(dir.join(format!("{}.0", b.cert.subject_hash_hex()))).unwrap();
    // Same CAs, one more newline: the bytes are not what certsync wrote.
    std::fs::write(
        dir.join("b-international.crt"),
        b.pem() + &gone.pem() + "\n",
    )
    .unwrap();
    std::fs::write(dir.join("notes.pem"), stranger.pem()).unwrap();

    let out = inspect(&[&dir], false);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    for needle in [
        "stale: ca-bundle.crt (bundle) holds CA(s) no instance file holds: CN=Stranger",
        "stale: b-international.crt changed since certsync wrote it",
        &format!(
            "stale: {}.0 (hash) is listed in the manifest but missing",
            b.cert.subject_hash_hex()
        ),
        "stale: no <subject_hash>.<n> file for CA(s) the instance files hold: CN=B",
        "not in the manifest: notes.pem",
        "expiring: CN=Soon",
        &format!(
            "days left; in {}.0, a-international.crt, ca-bundle.crt, truststore.p12",
            soon.cert.subject_hash_hex()
        ),
        "expired: CN=Gone",
    ] {
        assert!(t.contains(needle), "missing {needle:?} in:\n{t}");
    }
    assert!(!t.contains("nothing stale"), "{t}");
}

#[test]
fn a_truststore_with_another_password_is_a_note_in_a_folder_and_an_error_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    let pw = tmp.path().join("pw");
    std::fs::write(&pw, "not-changeit").unwrap();
    let a = TestCa::new("A");
    let o = StoreOptions {
        pkcs12_password_file: Some(pw),
        ..opts_with(&dir, Layout::Flat)
    };
    let mut store = Store::open(o, false).unwrap();
    store.apply(
        &pass(vec![entry("a", "international", &[&a])], &[]),
        t0(),
        false,
    );
    drop(store);

    let out = inspect(&[&dir], false);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out)
            .contains("note: truststore.p12 does not open with the default password \"changeit\""),
        "{}",
        text(&out)
    );

    let p12 = dir.join("truststore.p12");
    let out = inspect(&[&p12], false);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(
            "does not open with the default password \"changeit\" (inspect has no password option)"
        ),
        "{}",
        text(&out)
    );
}

#[test]
fn a_truststore_named_alone_lists_its_certificates() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    let a = TestCa::new("A");
    let mut store = Store::open(opts_with(&dir, Layout::Flat), false).unwrap();
    store.apply(
        &pass(vec![entry("a", "international", &[&a])], &[]),
        t0(),
        false,
    );
    drop(store);
    let out = inspect(&[&dir.join("truststore.p12")], true);
    assert!(out.status.success(), "{}", text(&out));
    let items: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["sha256"], a.fp());
    assert_eq!(items[0]["subject_hash"], a.cert.subject_hash_hex());

    // A folder without a manifest: listed, with a note, nothing checked.
    let plain = tmp.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    std::fs::write(plain.join("x.pem"), a.pem()).unwrap();
    let out = inspect(&[&plain], false);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("not managed by certsync (no manifest)"),
        "{}",
        text(&out)
    );
}
