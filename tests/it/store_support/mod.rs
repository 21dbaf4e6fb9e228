//! Helpers shared by the `store_*` tests: CAs generated with rcgen, store options, a scenario
//! (a trust folder in a temp dir and the store on it) and the passes it applies, file facts
//! (content, mode, inode, mtime), and the writer processes the crash tests kill.
//!
//! `examples/store_writer.rs` (the writer process) includes this module too, with its own
//! `#[path]`: what both need (CAs, options, passes) lives here once.

use std::io::{BufRead, BufReader};
use std::ops::Deref;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use certsync::cert::Cert;
use certsync::store::{
    DesiredEntry, Layout, PassInput, Store, StoreOptions, StoreReport, StoreView,
};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
};
use time::OffsetDateTime;

/// A generated CA: the parsed certificate and what is needed to issue leaves with it.
pub struct TestCa {
    pub cert: Cert,
    pub params: CertificateParams,
    pub key: KeyPair,
}

impl TestCa {
    /// A CA valid from a day ago for a year.
    pub fn new(cn: &str) -> TestCa {
        TestCa::with_validity(cn, OffsetDateTime::now_utc() + time::Duration::days(365))
    }

    /// A CA valid from a day ago until `not_after`.
    pub fn with_validity(cn: &str, not_after: OffsetDateTime) -> TestCa {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        dn.push(DnType::OrganizationName, "certsync tests");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.not_before = OffsetDateTime::now_utc() - time::Duration::days(1);
        params.not_after = not_after;
        let key = KeyPair::generate().expect("key");
        let der = params.self_signed(&key).expect("self-sign").der().to_vec();
        TestCa {
            cert: Cert::from_der(&der).expect("parse"),
            params,
            key,
        }
    }

    /// A leaf for `localhost` issued by this CA, as PEM.
    pub fn issue_leaf_pem(&self) -> String {
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        params.not_before = OffsetDateTime::now_utc() - time::Duration::days(1);
        params.not_after = OffsetDateTime::now_utc() + time::Duration::days(30);
        let key = KeyPair::generate().expect("key");
        let issuer = Issuer::from_params(&self.params, &self.key);
        params.signed_by(&key, &issuer).expect("sign").pem()
    }

    pub fn pem(&self) -> String {
        self.cert.to_pem()
    }

    pub fn fp(&self) -> String {
        self.cert.fingerprint()
    }
}

/// One CA per common name: `let [a, b] = cas(["A", "B"]);`.
pub fn cas<const N: usize>(names: [&str; N]) -> [TestCa; N] {
    names.map(TestCa::new)
}

/// Options with a bundle, hash files, prune and the given overlap.
pub fn opts(dir: &Path, overlap: Duration) -> StoreOptions {
    StoreOptions {
        bundle: Some("ca-bundle.crt".to_string()),
        rotation_overlap: overlap,
        ..StoreOptions::new(dir.to_path_buf())
    }
}

pub fn entry(id: &str, category: &str, certs: &[&TestCa]) -> DesiredEntry {
    DesiredEntry {
        instance_id: id.to_string(),
        category: category.to_string(),
        file_name: format!("{id}-{category}.crt"),
        certs: certs.iter().map(|c| c.cert.clone()).collect(),
        kept: Vec::new(),
    }
}

/// A pass input, built up: `Pass::new().instance("a", &[&ca]).failed("b")`. Every instance
/// given an entry synced and is configured; the pass counts toward removing files nothing
/// produces. It derefs to the [`PassInput`] it builds.
#[derive(Clone, Debug)]
pub struct Pass(PassInput);

impl Pass {
    /// A full pass with nothing in it (every managed file is then no longer produced).
    pub fn new() -> Pass {
        Pass(PassInput {
            counts: true,
            ..PassInput::default()
        })
    }

    /// Instance `id` synced with `certs` in category `international` (`<id>-international.crt`).
    pub fn instance(self, id: &str, certs: &[&TestCa]) -> Pass {
        self.category(id, "international", certs)
    }

    /// Instance `id` synced with `certs` in `category` (`<id>-<category>.crt`).
    pub fn category(self, id: &str, category: &str, certs: &[&TestCa]) -> Pass {
        self.entry(entry(id, category, certs))
    }

    /// `entry` synced (for a file name or certificates of its own).
    pub fn entry(mut self, entry: DesiredEntry) -> Pass {
        self.0.synced.insert(entry.instance_id.clone());
        self.0.configured.insert(entry.instance_id.clone());
        self.0.updates.push(entry);
        self
    }

    /// Instance `id` is configured but did not sync this pass: its files stay as they are.
    pub fn failed(mut self, id: &str) -> Pass {
        self.0.configured.insert(id.to_string());
        self
    }
}

impl Deref for Pass {
    type Target = PassInput;

    fn deref(&self) -> &PassInput {
        &self.0
    }
}

/// Plans `input` at `at` on `store` and commits it with the state saved so far.
pub fn commit(store: &mut Store, input: &PassInput, at: SystemTime) -> StoreReport {
    let plan = store.plan(input, at);
    let state = store.saved_state().clone();
    store.commit(plan, state)
}

/// Opens the folder of `opts` for writing, commits `input` at `at` with the saved state, and
/// closes it again (its lock goes).
pub fn commit_once(opts: StoreOptions, input: &PassInput, at: SystemTime) -> StoreReport {
    let mut store = Store::open_locked(opts).expect("open the store");
    commit(&mut store, input, at)
}

/// A trust folder (not created until the store opens it) in a temp dir, its options, and the
/// store, opened for writing on first use. Passes go through the two-step API: plan, then
/// commit with the saved state (or, dry, the plan's report).
pub struct Scenario {
    pub tmp: tempfile::TempDir,
    pub dir: PathBuf,
    /// The options the store opens with (change them, then [`Scenario::reopen`]).
    pub opts: StoreOptions,
    store: Option<Store>,
}

impl Scenario {
    /// Options [`opts`] with a 1 h overlap.
    pub fn new() -> Scenario {
        Scenario::with(|_| {})
    }

    /// Options [`opts`] with a 1 h overlap, then changed by `change` (the folder is the
    /// options' `dir`).
    pub fn with(change: impl FnOnce(&mut StoreOptions)) -> Scenario {
        let tmp = tempfile::tempdir().unwrap();
        let mut opts = opts(&trust_dir(&tmp), Duration::from_secs(3600));
        change(&mut opts);
        let dir = opts.dir.clone();
        Scenario {
            tmp,
            dir,
            opts,
            store: None,
        }
    }

    /// After one pass at [`t0`] in which instance `a` synced with `ca` (`a-international.crt`).
    pub fn holding_a(mut self, ca: &TestCa) -> Scenario {
        self.apply(&Pass::new().instance("a", &[ca]), t0());
        self
    }

    /// The store, opened (locked) with [`Scenario::opts`] if it is not open.
    pub fn store(&mut self) -> &mut Store {
        if self.store.is_none() {
            let store = Store::open_locked(self.opts.clone())
                .unwrap_or_else(|e| panic!("open {}: {e}", self.dir.display()));
            self.store = Some(store);
        }
        self.store.as_mut().expect("opened")
    }

    /// Closes the store (its lock goes) and opens it again with [`Scenario::opts`].
    pub fn reopen(&mut self) -> &mut Store {
        self.close();
        self.store()
    }

    /// Closes the store: its lock goes.
    pub fn close(&mut self) {
        self.store = None;
    }

    /// Plans `input` at `at` and commits it with the state saved so far.
    pub fn apply(&mut self, input: &PassInput, at: SystemTime) -> StoreReport {
        commit(self.store(), input, at)
    }

    /// [`Scenario::apply`] `times` times (at least once); the last report.
    pub fn apply_times(&mut self, times: u32, input: &PassInput, at: SystemTime) -> StoreReport {
        let mut report = self.apply(input, at);
        for _ in 1..times {
            report = self.apply(input, at);
        }
        report
    }

    /// [`Scenario::apply`], asserting that the pass met no store error.
    pub fn apply_ok(&mut self, input: &PassInput, at: SystemTime) -> StoreReport {
        let report = self.apply(input, at);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        report
    }

    /// What `input` at `at` would do: the plan's report, nothing written.
    pub fn dry_run(&mut self, input: &PassInput, at: SystemTime) -> StoreReport {
        self.store().plan(input, at).report()
    }

    /// A read-only view of the folder with [`Scenario::opts`] (needs no lock).
    pub fn view(&self) -> StoreView {
        StoreView::open(self.opts.clone()).expect("open a view")
    }

    /// Absolute path of `name` in the folder.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The content of `name` in the folder.
    pub fn read(&self, name: &str) -> String {
        read(self.path(name))
    }

    /// The manifest as JSON.
    pub fn manifest(&self) -> serde_json::Value {
        manifest(&self.dir)
    }

    /// Every name in the folder, sorted.
    pub fn names(&self) -> Vec<String> {
        names(&self.dir)
    }

    /// Creates the folder (before the store does), for files put in it first.
    pub fn create_dir(&self) {
        std::fs::create_dir_all(&self.dir).unwrap();
    }

    /// Writes `content` at `name` in the folder (created first if need be): a file that is
    /// not certsync's, or one changed behind its back.
    pub fn put(&self, name: &str, content: impl AsRef<[u8]>) {
        self.create_dir();
        std::fs::write(self.path(name), content).unwrap();
    }

    /// `<subject hash>.<n>` of `ca` in the folder.
    pub fn hash_file(&self, ca: &TestCa, n: usize) -> PathBuf {
        self.path(&format!("{}.{n}", ca.cert.subject_hash_hex()))
    }
}

pub fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path.as_ref())
        .unwrap_or_else(|e| panic!("read {}: {e}", path.as_ref().display()))
}

/// (inode, mtime in ns, mode bits) of a file.
pub type Facts = (u64, i128, u32);

/// [`Facts`] of a file, symlinks not followed.
pub fn facts(path: impl AsRef<Path>) -> Facts {
    let m = std::fs::symlink_metadata(path.as_ref()).expect("stat");
    (
        m.ino(),
        m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
        m.mode() & 0o7777,
    )
}

/// Every name in the folder, sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    out.sort();
    out
}

/// Facts of every file in the folder.
pub fn snapshot(dir: &Path) -> Vec<(String, Facts, Vec<u8>)> {
    names(dir)
        .into_iter()
        .map(|n| {
            let p = dir.join(&n);
            (n, facts(&p), std::fs::read(&p).unwrap())
        })
        .collect()
}

/// The manifest as JSON.
pub fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&read(dir.join(".certsync-manifest.json"))).expect("manifest JSON")
}

/// A fresh folder path (not created) inside a temp dir.
pub fn trust_dir(tmp: &tempfile::TempDir) -> PathBuf {
    tmp.path().join("trust")
}

pub fn t0() -> SystemTime {
    SystemTime::now()
}

pub fn mins(n: u64) -> Duration {
    Duration::from_secs(60 * n)
}

/// Makes a file or folder immutable (`chattr +i`: even root cannot change, rename or remove it,
/// or create in a folder) until dropped.
pub struct Immutable(PathBuf);

impl Immutable {
    pub fn new(path: &Path) -> Immutable {
        let ok = std::process::Command::new("chattr")
            .arg("+i")
            .arg(path)
            .status()
            .expect("run chattr")
            .success();
        assert!(ok, "chattr +i {}", path.display());
        Immutable(path.to_path_buf())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .status();
    }
}

/// `n` CAs named `<prefix> 0`, `<prefix> 1`, ...
pub fn numbered_cas(prefix: &str, n: usize) -> Vec<TestCa> {
    (0..n)
        .map(|i| TestCa::new(&format!("{prefix} {i}")))
        .collect()
}

/// [`opts`] (1 h overlap) in the atomic-dir layout.
pub fn atomic_opts(dir: &Path) -> StoreOptions {
    StoreOptions {
        layout: Layout::AtomicDir,
        ..opts(dir, Duration::from_secs(3600))
    }
}

/// The `store_writer` example, built (once per process) with the profile and target dir of
/// this test binary: `cargo test` builds examples, `cargo test --test it` does not, and an
/// example left from an earlier build may be older than the code under test, so it is always
/// built through cargo (a no-op when it is fresh) and its path taken from cargo's own report.
/// Without a cargo to run (the test binary copied elsewhere), the example next to this binary.
fn writer_exe() -> &'static Path {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| {
        let me = std::env::current_exe().expect("the test binary's path");
        // <target dir>/[<triple>/]<profile dir>/deps/<test binary>
        let profile_dir = me
            .parent()
            .and_then(Path::parent)
            .expect("the test binary sits in <profile dir>/deps");
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev",
            Some(name) => name,
            None => panic!("no profile dir above {}", me.display()),
        };
        let mut cargo = Command::new(env!("CARGO"));
        cargo
            .args([
                "build",
                "--locked",
                "--example",
                "store_writer",
                "--profile",
                profile,
            ])
            .args([
                "--message-format",
                "json-render-diagnostics",
                "--manifest-path",
            ])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"));
        // Without the variables cargo sets for this test process (CARGO_MANIFEST_DIR,
        // CARGO_PKG_*, OUT_DIR, ...): build scripts (ring's) rerun when they change, so the
        // nested build would otherwise rebuild them, and the next `cargo test` rebuild them back.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            if name.starts_with("CARGO_PKG_")
                || name.starts_with("CARGO_BIN_EXE_")
                || [
                    "CARGO_MANIFEST_DIR",
                    "CARGO_MANIFEST_PATH",
                    "CARGO_CRATE_NAME",
                    "CARGO_BIN_NAME",
                    "CARGO_PRIMARY_PACKAGE",
                    "CARGO_TARGET_TMPDIR",
                    "OUT_DIR",
                ]
                .contains(&&*name)
            {
                cargo.env_remove(&*name);
            }
        }
        if let Some(target_dir) = profile_dir.parent()
            && target_dir.join("CACHEDIR.TAG").is_file()
        {
            cargo.arg("--target-dir").arg(target_dir);
        }
        let out = match cargo.stdin(Stdio::null()).output() {
            Ok(out) => out,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return profile_dir.join("examples").join("store_writer");
            }
            Err(e) => panic!("run cargo to build the store_writer example: {e}"),
        };
        assert!(
            out.status.success(),
            "cargo build --example store_writer: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "store_writer")
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .expect("cargo reported no store_writer executable")
    })
}

/// A writer process (`examples/store_writer.rs`) in `mode` on the folder `dir`: stdout piped,
/// stdin piped if `stdin`.
pub fn spawn_writer(mode: &str, dir: &Path, stdin: bool) -> Child {
    let exe = writer_exe();
    Command::new(exe)
        .arg(mode)
        .arg(dir)
        .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", exe.display()))
}
/// Waits until `child` printed `passes` lines `pass N` (it completed that many passes, so it
/// holds the lock and made its CAs), then SIGKILLs it at a random moment within `max_delay`
/// of a later pass, and reaps it.
pub fn kill_after_passes(mut child: Child, passes: usize, max_delay: Duration, round: usize) {
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = 0;
    for line in lines.by_ref() {
        if line.expect("writer output").starts_with("pass ") {
            seen += 1;
            if seen == passes {
                break;
            }
        }
    }
    assert_eq!(seen, passes, "round {round}: writer ended early");
    // The random kill moment (not a wait for an event).
    let max = u64::try_from(max_delay.as_micros()).unwrap();
    std::thread::sleep(Duration::from_micros(fastrand::u64(0..max)));
    child.kill().expect("SIGKILL");
    child.wait().expect("reap writer");
}
