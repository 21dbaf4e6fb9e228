//! A real etcd (Debian's `etcd-server` 3.4, `/usr/bin/etcd`) for the fleet tests (SPEC 14): one
//! member on free loopback ports with a data folder of its own, killed on drop. It can be
//! paused (SIGSTOP) and resumed, killed and started again on the same data and ports, served
//! over TLS with client certificates (`--client-cert-auth`, certificates issued at test time),
//! and run with etcd's auth on. Keys are read and written with `etcdctl` (ETCDCTL_API=3), with
//! the endpoint, TLS and user flags it needs.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SanType,
};
use rustix::process::{Pid, Signal, kill_process};
use tempfile::TempDir;
use time::OffsetDateTime;

use super::free_port;

/// How long etcd gets to answer after a (re)start.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// The etcd administrator `auth` creates (etcd requires a `root` user before auth is on).
const ROOT: &str = "root:root-pw-for-tests";

/// A CA that issues (the server's, or the client certificates').
struct TestCa {
    params: CertificateParams,
    key: KeyPair,
    pem: String,
}

impl TestCa {
    fn new(cn: &str) -> TestCa {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.not_before = OffsetDateTime::now_utc() - time::Duration::days(1);
        params.not_after = OffsetDateTime::now_utc() + time::Duration::days(30);
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        TestCa { params, key, pem }
    }

    /// A leaf (certificate PEM, key PEM) for `cn`, with `sans` (IP addresses) and `usages`.
    fn issue(
        &self,
        cn: &str,
        sans: &[&str],
        usages: Vec<ExtendedKeyUsagePurpose>,
    ) -> (String, String) {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.subject_alt_names = sans
            .iter()
            .map(|s| SanType::IpAddress(s.parse().unwrap()))
            .collect();
        params.extended_key_usages = usages;
        params.not_before = OffsetDateTime::now_utc() - time::Duration::days(1);
        params.not_after = OffsetDateTime::now_utc() + time::Duration::days(30);
        let key = KeyPair::generate().unwrap();
        let cert = params
            .signed_by(&key, &Issuer::from_params(&self.params, &self.key))
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// The TLS side of an etcd started with [`Etcd::start_tls`].
struct Tls {
    /// The CA of etcd's server certificate (what clients trust).
    server_ca: TestCa,
    /// The CA etcd trusts for client certificates.
    client_ca: TestCa,
    /// Files etcdctl uses: the server CA, a client certificate and its key.
    ca_file: PathBuf,
    cert_file: PathBuf,
    key_file: PathBuf,
}

/// Client files for certsync's `ca_file`, `cert_file`, `key_file` (see [`Etcd::client_files`]).
pub struct ClientFiles {
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// A running etcd member (or one stopped by the test: see [`Etcd::kill`]).
pub struct Etcd {
    child: Option<std::process::Child>,
    pub client_port: u16,
    peer_port: u16,
    dir: TempDir,
    tls: Option<Tls>,
    /// Whether auth is on (etcdctl then logs in as root).
    auth: bool,
}

impl Etcd {
    /// A plain-HTTP etcd on loopback.
    pub async fn start() -> Etcd {
        Etcd::launch(None).await
    }

    /// An etcd serving TLS with a server certificate for 127.0.0.1 (issued now by a CA of the
    /// test's own), refusing clients without a certificate from the client CA
    /// (`--client-cert-auth`).
    pub async fn start_tls() -> Etcd {
        let dir = tempfile::tempdir().unwrap();
        let server_ca = TestCa::new("certsync test etcd server CA");
        let client_ca = TestCa::new("certsync test etcd client CA");
        let (server_cert, server_key) = server_ca.issue(
            "etcd",
            &["127.0.0.1"],
            // etcd's own gateway connects to itself with the server certificate.
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        );
        std::fs::write(dir.path().join("server.pem"), server_cert).unwrap();
        std::fs::write(dir.path().join("server.key"), server_key).unwrap();
        std::fs::write(dir.path().join("client-ca.pem"), &client_ca.pem).unwrap();
        let tls = Tls {
            ca_file: dir.path().join("server-ca.pem"),
            cert_file: dir.path().join("etcdctl.pem"),
            key_file: dir.path().join("etcdctl.key"),
            server_ca,
            client_ca,
        };
        std::fs::write(&tls.ca_file, &tls.server_ca.pem).unwrap();
        let (cert, key) =
            tls.client_ca
                .issue("etcdctl", &[], vec![ExtendedKeyUsagePurpose::ClientAuth]);
        std::fs::write(&tls.cert_file, cert).unwrap();
        std::fs::write(&tls.key_file, key).unwrap();
        Etcd::launch(Some((dir, tls))).await
    }

    async fn launch(tls: Option<(TempDir, Tls)>) -> Etcd {
        let (dir, tls) = match tls {
            Some((dir, tls)) => (dir, Some(tls)),
            None => (tempfile::tempdir().unwrap(), None),
        };
        let mut etcd = Etcd {
            child: None,
            client_port: 0,
            peer_port: 0,
            dir,
            tls,
            auth: false,
        };
        // A port handed out by free_port can be taken by another test before etcd binds it:
        // then etcd exits at once, and it gets other ports.
        for _ in 0..3 {
            etcd.client_port = free_port();
            etcd.peer_port = free_port();
            if etcd.spawn_and_wait().await {
                return etcd;
            }
        }
        panic!("etcd did not start:\n{}", etcd.log());
    }

    /// `https://` or `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_file(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// What etcd printed (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_file()).unwrap_or_default()
    }

    /// Starts etcd on the ports chosen; true once it answers, false when it exited first.
    async fn spawn_and_wait(&mut self) -> bool {
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let client = self.endpoint();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_file())
            .unwrap();
        let mut cmd = std::process::Command::new("etcd");
        cmd.arg("--name")
            .arg("certsync-test")
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--listen-peer-urls")
            .arg(&peer)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer)
            .arg("--initial-cluster")
            .arg(format!("certsync-test={peer}"))
            .arg("--listen-client-urls")
            .arg(&client)
            .arg("--advertise-client-urls")
            .arg(&client)
            .args(["--logger", "zap", "--log-level", "warn"]);
        if self.tls.is_some() {
            let d = self.dir.path();
            cmd.arg("--cert-file")
                .arg(d.join("server.pem"))
                .arg("--key-file")
                .arg(d.join("server.key"))
                .arg("--client-cert-auth")
                .arg("--trusted-ca-file")
                .arg(d.join("client-ca.pem"));
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.child = Some(cmd.spawn().expect("spawn etcd (Debian's etcd-server)"));
        let deadline = tokio::time::Instant::now() + START_DEADLINE;
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                eprintln!("etcd exited at start ({status}):\n{}", self.log());
                self.child = None;
                return false;
            }
            if self.healthy().await {
                return true;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "etcd did not answer within {START_DEADLINE:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `etcdctl endpoint health` succeeded.
    pub async fn healthy(&self) -> bool {
        self.etcdctl(&["endpoint", "health", "--command-timeout=1s"], None)
            .await
            .status
            .success()
    }

    /// `etcdctl` with this member's endpoint, TLS files and (once auth is on) root's login.
    async fn etcdctl(&self, args: &[&str], stdin: Option<&[u8]>) -> std::process::Output {
        use tokio::io::AsyncWriteExt;
        let mut cmd = tokio::process::Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoint()))
            .args(["--dial-timeout=2s", "--command-timeout=5s"]);
        if let Some(tls) = &self.tls {
            cmd.arg("--cacert")
                .arg(&tls.ca_file)
                .arg("--cert")
                .arg(&tls.cert_file)
                .arg("--key")
                .arg(&tls.key_file);
        }
        if self.auth {
            cmd.arg(format!("--user={ROOT}"));
        }
        cmd.args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn etcdctl (Debian's etcd-client)");
        if let Some(bytes) = stdin {
            let mut pipe = child.stdin.take().unwrap();
            pipe.write_all(bytes).await.unwrap();
            drop(pipe);
        }
        child.wait_with_output().await.unwrap()
    }

    /// `etcdctl ARGS`, which must succeed; its stdout.
    async fn ctl_ok(&self, args: &[&str], stdin: Option<&[u8]>) -> String {
        let out = self.etcdctl(args, stdin).await;
        assert!(
            out.status.success(),
            "etcdctl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The value at `key` (None when the key is absent), as etcd holds it (bytes not valid
    /// UTF-8 replaced).
    pub async fn get(&self, key: &str) -> Option<String> {
        self.get_bytes(key)
            .await
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    /// The value at `key`, byte for byte (`--hex` prints the key, then the value, as `\xNN`).
    pub async fn get_bytes(&self, key: &str) -> Option<Vec<u8>> {
        let out = self.ctl_ok(&["get", "--hex", "--", key], None).await;
        let mut lines = out.lines();
        lines.next()?;
        let value = lines.next().unwrap_or("");
        Some(
            value
                .split("\\x")
                .filter(|s| !s.is_empty())
                .map(|h| u8::from_str_radix(h, 16).unwrap())
                .collect(),
        )
    }

    /// Puts `value` (any bytes, given on etcdctl's stdin) at `key`, as an operator would.
    pub async fn put(&self, key: &str, value: &[u8]) {
        self.ctl_ok(&["put", "--", key], Some(value)).await;
    }

    /// Deletes `key`, as an operator would.
    pub async fn delete(&self, key: &str) {
        self.ctl_ok(&["del", "--", key], None).await;
    }

    fn pid(&self) -> Pid {
        let child = self.child.as_ref().expect("etcd is not running");
        Pid::from_raw(child.id() as i32).unwrap()
    }

    /// SIGSTOP: etcd keeps its sockets but answers nothing.
    pub fn pause(&self) {
        kill_process(self.pid(), Signal::STOP).unwrap();
    }

    /// SIGCONT after [`Etcd::pause`].
    pub fn resume(&self) {
        kill_process(self.pid(), Signal::CONT).unwrap();
    }

    /// SIGKILL, and waits for the exit: every connection to it is reset.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again after [`Etcd::kill`], on the same data folder and ports, and waits
    /// until it answers.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "etcd is still running");
        assert!(
            self.spawn_and_wait().await,
            "etcd did not start again on its ports:\n{}",
            self.log()
        );
    }

    /// Turns etcd's auth on: a `root` user (etcdctl logs in as it from now on), and `user`
    /// with `password` holding a role that may read and write every key under `prefix`.
    pub async fn enable_auth(&mut self, prefix: &str, user: &str, password: &str) {
        self.ctl_ok(&["user", "add", ROOT], None).await;
        self.ctl_ok(&["user", "grant-role", "root", "root"], None)
            .await;
        let role = format!("{user}-role");
        self.ctl_ok(&["role", "add", &role], None).await;
        self.ctl_ok(
            &[
                "role",
                "grant-permission",
                &role,
                "--prefix=true",
                "readwrite",
                &format!("{prefix}/"),
            ],
            None,
        )
        .await;
        self.ctl_ok(&["user", "add", &format!("{user}:{password}")], None)
            .await;
        self.ctl_ok(&["user", "grant-role", user, &role], None)
            .await;
        self.ctl_ok(&["auth", "enable"], None).await;
        self.auth = true;
    }

    /// For a TLS etcd: writes into `dir` the server CA and a client certificate (common name
    /// `cn`, issued by the client CA) with its key, and returns their paths.
    pub fn client_files(&self, dir: &Path, cn: &str) -> ClientFiles {
        let tls = self.tls.as_ref().expect("a TLS etcd (Etcd::start_tls)");
        let (cert, key) = tls
            .client_ca
            .issue(cn, &[], vec![ExtendedKeyUsagePurpose::ClientAuth]);
        std::fs::create_dir_all(dir).unwrap();
        let files = ClientFiles {
            ca_file: dir.join("etcd-ca.pem"),
            cert_file: dir.join("etcd-client.pem"),
            key_file: dir.join("etcd-client.key"),
        };
        std::fs::write(&files.ca_file, &tls.server_ca.pem).unwrap();
        std::fs::write(&files.cert_file, cert).unwrap();
        std::fs::write(&files.key_file, key).unwrap();
        files
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // A paused etcd must run again to die of anything but SIGKILL; SIGKILL needs no
            // SIGCONT, but continue it anyway so nothing is left stopped.
            let pid = Pid::from_raw(child.id() as i32).unwrap();
            let _ = kill_process(pid, Signal::CONT);
        }
        self.kill();
    }
}
