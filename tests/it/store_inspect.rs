//! `certsync inspect` on trust folders the store wrote (SPEC 2): every shape's certificates
//! (truststore entries included), and the folder summary of what is stale or expiring. The
//! folders are made with the store API; inspect is the real binary.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::store_support::*;
use certsync::store::{Layout, StoreOptions};
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::process::{Pid, PidfdFlags, pidfd_open};

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

/// `certsync inspect ARGS` that must end by itself (a FIFO must not block it): awaited on a
/// pidfd for up to 60 s (generous: it takes milliseconds), then killed and the test failed.
fn inspect_bounded(args: &[&Path]) -> Output {
    let out_dir = tempfile::tempdir().unwrap();
    let (out, err) = (out_dir.path().join("out"), out_dir.path().join("err"));
    let mut child = Command::new(BIN)
        .arg("inspect")
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("run certsync inspect");
    let pid = Pid::from_raw(child.id() as i32).unwrap();
    let fd = pidfd_open(pid, PidfdFlags::empty()).expect("pidfd_open");
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    let limit = Timespec {
        tv_sec: 60,
        tv_nsec: 0,
    };
    let ready = poll(&mut fds, Some(&limit)).expect("poll");
    if ready == 0 {
        let _ = child.kill();
        let _ = child.wait();
        panic!("certsync inspect {args:?} still runs after 60 s: it blocked");
    }
    let status = child.wait().unwrap();
    Output {
        status,
        stdout: std::fs::read(&out).unwrap(),
        stderr: std::fs::read(&err).unwrap(),
    }
}

fn mkfifo(path: &Path) {
    let ok = Command::new("mkfifo").arg(path).status().unwrap().success();
    assert!(ok, "mkfifo {}", path.display());
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `out` is inspect's exit 1 (a file that is not a certificate, or refused) saying `needle`;
/// its text.
fn failed_saying(out: &Output, needle: &str) -> String {
    let t = text(out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains(needle), "missing {needle:?} in:\n{t}");
    t
}

fn opts_with(dir: &Path, layout: Layout) -> StoreOptions {
    StoreOptions {
        pkcs12: Some("truststore.p12".into()),
        layout,
        ..opts(dir, Duration::from_secs(3600))
    }
}

/// A folder in `layout` holding instance `a` with CA `a` and instance `b` with CA `b`.
fn two_instances(dir: &Path, layout: Layout, a: &TestCa, b: &TestCa) {
    let input = Pass::new().instance("a", &[a]).instance("b", &[b]);
    commit_once(opts_with(dir, layout), &input, t0());
}

/// [`two_instances`] in a new temp dir: the dir, the folder and the CAs `A` and `B`.
fn two_instances_folder(layout: Layout) -> (tempfile::TempDir, std::path::PathBuf, [TestCa; 2]) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    let [a, b] = cas(["A", "B"]);
    two_instances(&dir, layout, &a, &b);
    (tmp, dir, [a, b])
}

/// A flat folder (with a truststore) holding instance `a` with CA `ca`.
fn one_instance(dir: &Path, ca: &TestCa) {
    commit_once(
        opts_with(dir, Layout::Flat),
        &Pass::new().instance("a", &[ca]),
        t0(),
    );
}

#[test]
fn a_healthy_atomic_dir_folder_lists_every_shape_and_nothing_stale() {
    let (_tmp, dir, [a, b]) = two_instances_folder(Layout::AtomicDir);

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
    let input = Pass::new()
        .instance("a", &[&soon])
        .instance("b", &[&b, &gone]);
    commit_once(opts_with(&dir, Layout::Flat), &input, t0());
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
    commit_once(o, &Pass::new().instance("a", &[&a]), t0());

    let out = inspect(&[&dir], false);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out)
            .contains("note: truststore.p12 does not open with the default password \"changeit\""),
        "{}",
        text(&out)
    );

    let p12 = dir.join("truststore.p12");
    failed_saying(
        &inspect(&[&p12], false),
        "does not open with the default password \"changeit\" (inspect has no password option)",
    );
}

#[test]
fn a_truststore_named_alone_lists_its_certificates() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = trust_dir(&tmp);
    let a = TestCa::new("A");
    one_instance(&dir, &a);
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

// ---------------------------------------------------------------------------------------------
// every time X.509 can express (SPEC 6)

#[test]
fn a_ca_valid_until_9999_12_31_is_inspected() {
    let tmp = tempfile::tempdir().unwrap();
    let forever =
        TestCa::with_validity("Forever", time::macros::datetime!(9999-12-31 23:59:59 UTC));
    // And one from the first second X.509 can name.
    let mut params = forever.params.clone();
    params.not_before = time::macros::datetime!(0000-01-01 00:00:00 UTC);
    let key = rcgen::KeyPair::generate().unwrap();
    let ancient = params.self_signed(&key).unwrap().pem();
    let (f1, f2) = (
        tmp.path().join("forever.pem"),
        tmp.path().join("ancient.pem"),
    );
    std::fs::write(&f1, forever.pem()).unwrap();
    std::fs::write(&f2, &ancient).unwrap();

    let out = inspect(&[&f1, &f2], true);
    assert!(out.status.success(), "{}", text(&out));
    let items: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["not_after"], "9999-12-31T23:59:59Z");
    assert_eq!(items[1]["not_before"], "0000-01-01T00:00:00Z");
    assert_eq!(items[1]["not_after"], "9999-12-31T23:59:59Z");

    let out = inspect(&[&f1], false);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("notAfter:     9999-12-31T23:59:59Z ("), "{t}");
    assert!(t.contains(" days left)"), "{t}");

    // In a trust folder the store wrote, too.
    let dir = trust_dir(&tmp);
    one_instance(&dir, &forever);
    let out = inspect(&[&dir], false);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("nothing stale"), "{t}");
    assert!(
        t.contains("nothing expires within 30 days (1 CA(s))"),
        "{t}"
    );
}

// ---------------------------------------------------------------------------------------------
// managed files certsync can no longer update (SPEC 7, 10): problems, not "all is well"

#[test]
fn a_managed_file_replaced_by_a_symlink_is_a_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (TestCa::new("A"), TestCa::new("B"));
    for layout in [Layout::Flat, Layout::AtomicDir] {
        let dir = tmp.path().join(format!("{layout:?}"));
        two_instances(&dir, layout, &a, &b);
        // The same bytes elsewhere, and the managed name made a symlink to them: everything
        // still agrees, but certsync will never update that name again.
        let name = match layout {
            Layout::Flat => format!("{}.0", b.cert.subject_hash_hex()),
            _ => "a-international.crt".to_string(),
        };
        let elsewhere = tmp.path().join(format!("copy-{layout:?}.pem"));
        std::fs::write(&elsewhere, read(dir.join(&name))).unwrap();
        std::fs::remove_file(dir.join(&name)).unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.join(&name)).unwrap();

        let out = inspect(&[&dir], false);
        let t = text(&out);
        let kind = if layout == Layout::Flat {
            "hash"
        } else {
            "instance"
        };
        let needle = format!(
            "problem: {name} ({kind}) has been replaced by a symlink (to {})",
            elsewhere.display()
        );
        assert!(
            t.contains(&needle),
            "{layout:?}: missing {needle:?} in:\n{t}"
        );
        assert!(!t.contains("nothing stale"), "{layout:?}:\n{t}");
        // Only that name: the atomic-dir layout's own links are not problems.
        assert_eq!(t.matches("problem: ").count(), 1, "{layout:?}:\n{t}");
    }
}

#[test]
fn a_managed_file_that_is_no_longer_a_regular_file_is_a_problem() {
    let (_tmp, dir, _cas) = two_instances_folder(Layout::Flat);
    // A FIFO where an instance file was (reading it would block for ever), a folder where the
    // bundle was.
    std::fs::remove_file(dir.join("a-international.crt")).unwrap();
    mkfifo(&dir.join("a-international.crt"));
    std::fs::remove_file(dir.join("ca-bundle.crt")).unwrap();
    std::fs::create_dir(dir.join("ca-bundle.crt")).unwrap();

    let out = inspect_bounded(&[&dir]);
    let t = text(&out);
    for needle in [
        "problem: a-international.crt (instance) is no longer a regular file (it is a FIFO)",
        "problem: ca-bundle.crt (bundle) is no longer a regular file (it is a folder)",
    ] {
        assert!(t.contains(needle), "missing {needle:?} in:\n{t}");
    }
    assert!(!t.contains("nothing stale"), "{t}");
    // The instance file's CAs are unknown: no false "holds a CA no instance file holds".
    assert!(!t.contains("no instance file holds"), "{t}");
    // Files that are not certificates (SPEC 2): exit 1.
    assert_eq!(out.status.code(), Some(1), "{t}");
}

#[test]
fn an_unreadable_managed_file_is_a_problem() {
    let tmp = tempfile::tempdir().unwrap();
    // Traversable by the unprivileged user inspect runs as.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = trust_dir(&tmp);
    let a = TestCa::new("A");
    one_instance(&dir, &a);
    let file = dir.join("a-international.crt");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();

    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            BIN,
            "inspect",
        ])
        .arg(&dir)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run setpriv (util-linux; needed by this test)");
    let t = text(&out);
    assert!(
        t.contains("problem: a-international.crt (instance) is unreadable: Permission denied"),
        "{t}"
    );
    assert!(!t.contains("nothing stale"), "{t}");
    assert!(!t.contains("no instance file holds"), "{t}");
}

// ---------------------------------------------------------------------------------------------
// bounded reads and plain errors (SPEC 2)

#[test]
fn inspect_reads_only_bounded_regular_files() {
    let tmp = tempfile::tempdir().unwrap();
    // /dev/zero never ends: refused unread. Under a 512 MiB address-space limit, so that a
    // regression fails here rather than eat the machine's memory.
    let out = Command::new("sh")
        .arg("-c")
        .arg("ulimit -v 524288; exec \"$0\" inspect /dev/zero")
        .arg(BIN)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    failed_saying(&out, "/dev/zero: not a regular file (a character device)");

    // A FIFO nobody writes to: refused, never waited on.
    let fifo = tmp.path().join("fifo.pem");
    mkfifo(&fifo);
    failed_saying(
        &inspect_bounded(&[&fifo]),
        &format!("{}: not a regular file (a FIFO)", fifo.display()),
    );

    // A (sparse) file one byte over the cap: refused unread, naming the path and the cap.
    let big = tmp.path().join("big.pem");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(certsync::inspect::MAX_FILE_BYTES + 1).unwrap();
    drop(f);
    failed_saying(
        &inspect(&[&big], false),
        &format!(
            "{}: larger than the 64 MiB inspect reads of one file",
            big.display()
        ),
    );
}

#[test]
fn a_file_that_is_not_a_certificate_gets_a_plain_message() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: [(&str, &[u8]); 4] = [
        ("notes.txt", b"hello, this is not a certificate\n"),
        ("octets.der", b"\x04\x03abc"),
        ("integer.der", b"\x30\x03\x02\x01\x05"),
        (
            "short.pem",
            b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        ),
    ];
    for (name, content) in cases {
        let path = tmp.path().join(name);
        std::fs::write(&path, content).unwrap();
        let needle = format!("{}: not a PEM or DER certificate: ", path.display());
        let t = failed_saying(&inspect(&[&path], false), &needle);
        for debug in [
            "Der(",
            "UnexpectedTag",
            "Parsing Error",
            "NomError",
            "Parsing requires",
        ] {
            assert!(!t.contains(debug), "{name}: {debug:?} in {t}");
        }
    }
}
