//! Shared harness for the end-to-end tests: a simulator over TLS on loopback, a config file in
//! a temp folder, and the real `certsync` binary as a child process.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use certsync_sim::{SimOptions, Simulator};
use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_certsync");

#[cfg(feature = "etcd")]
pub mod etcd;
pub mod running;
pub use running::{NotifySocket, Running, free_port, wait_for_file, wait_listening};

pub struct Harness {
    pub sim: Simulator,
    pub tmp: TempDir,
    pub trust: PathBuf,
    pub config: PathBuf,
    pub hook_log: PathBuf,
    pub token_file: PathBuf,
    pub names: Vec<String>,
}

/// Extra lines for the generated config.
#[derive(Default, Clone)]
pub struct Extra {
    /// `cloud.timeout` (default 5s).
    pub timeout: &'static str,
    pub cloud: &'static str,
    pub sync: &'static str,
    pub trust: &'static str,
    pub tail: String,
    pub no_hook: bool,
}

impl Harness {
    pub async fn new(instances: usize) -> Harness {
        Harness::with(instances, Extra::default()).await
    }

    pub async fn with(instances: usize, extra: Extra) -> Harness {
        let tmp = tempfile::tempdir().unwrap();
        let sim = Simulator::start(SimOptions {
            instances,
            dir: Some(tmp.path().join("sim")),
            ..SimOptions::default()
        })
        .await
        .unwrap();
        let token_file = tmp.path().join("token");
        std::fs::write(&token_file, format!("{}\n", sim.token())).unwrap();
        let h = Harness {
            trust: tmp.path().join("trust"),
            config: tmp.path().join("certsync.toml"),
            hook_log: tmp.path().join("hook.log"),
            names: (0..instances).map(|i| format!("inst{i}")).collect(),
            token_file,
            sim,
            tmp,
        };
        h.write_config(&extra);
        h
    }

    /// Writes the config with `[server] listen` on a free loopback port, and returns the port.
    pub fn with_server(&self, extra: &Extra) -> u16 {
        let port = free_port();
        let mut extra = extra.clone();
        extra
            .tail
            .push_str(&format!("\n[server]\nlisten = \"127.0.0.1:{port}\"\n"));
        self.write_config(&extra);
        port
    }

    pub fn write_config(&self, extra: &Extra) {
        std::fs::write(&self.config, self.config_text(extra)).unwrap();
    }

    /// The config [`Harness::write_config`] writes: the simulator's `[cloud]`, `[auth]` with
    /// the token file `token` and the trust folder `trust` (both beside the config file),
    /// `[sync]`, `[trust]`, every instance, the recording hook unless `no_hook`, then `tail`.
    pub fn config_text(&self, extra: &Extra) -> String {
        let mut text = format!(
            r#"[cloud]
service = "gaussdb-nosql"
region = "cn-north-4"
endpoint = "{endpoint}"
project_id = "{project}"
ca_file = "{ca}"
timeout = "{timeout}"
{cloud}

[auth]
method = "token"
token_file = "token"

[sync]
interval = "1h"
concurrency = 4
retry_initial = "1s"
retry_max = "2s"
allowed_download_hosts = ["127.0.0.1"]
{sync}

[trust]
dir = "trust"
bundle = "ca-bundle.crt"
{trust}
"#,
            endpoint = self.sim.endpoint(),
            project = self.sim.project_id(),
            ca = self.sim.ca_file().display(),
            timeout = if extra.timeout.is_empty() {
                "5s"
            } else {
                extra.timeout
            },
            cloud = extra.cloud,
            sync = extra.sync,
            trust = extra.trust,
        );
        for (id, name) in self.sim.instance_ids().iter().zip(&self.names) {
            text.push_str(&format!(
                "\n[[instance]]\nid = \"{id}\"\nname = \"{name}\"\n"
            ));
        }
        if !extra.no_hook {
            text.push_str(&format!(
                "\n[[hook]]\nname = \"record\"\ncommand = [\"/bin/sh\", \"-c\", \"printf '%s\\\\n--\\\\n' \\\"$CERTSYNC_CHANGED_FILES\\\" >> {}\"]\n",
                self.hook_log.display()
            ));
        }
        text.push_str(&extra.tail);
        text
    }

    pub fn id(&self, i: usize) -> String {
        self.sim.instance_ids()[i].clone()
    }

    pub fn file(&self, i: usize) -> PathBuf {
        self.trust
            .join(format!("{}-international.crt", self.names[i]))
    }

    pub async fn certsync(&self, args: &[&str]) -> Output {
        self.certsync_env(args, &[]).await
    }

    pub async fn certsync_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.arg("--config").arg(&self.config).args(args);
        cmd.env_remove("RUST_LOG");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null());
        cmd.output().await.unwrap()
    }

    pub async fn once(&self) -> Output {
        self.certsync(&["once"]).await
    }

    /// The hook runs recorded so far (each run's CERTSYNC_CHANGED_FILES).
    pub fn hook_runs(&self) -> Vec<String> {
        match std::fs::read_to_string(&self.hook_log) {
            Ok(text) => text
                .split("--\n")
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Writes the config with a server (its port returned), `tail` after it, and `endpoints`
    /// (one `host:port`) on instance 0 when given.
    pub fn with_endpoint(&self, endpoint: Option<&str>, tail: &str) -> u16 {
        self.with_endpoint_extra(
            endpoint,
            &Extra {
                tail: tail.to_string(),
                ..Extra::default()
            },
        )
    }

    /// [`Harness::with_endpoint`] with more of the config given.
    pub fn with_endpoint_extra(&self, endpoint: Option<&str>, extra: &Extra) -> u16 {
        let port = self.with_server(extra);
        if let Some(endpoint) = endpoint {
            let text = std::fs::read_to_string(&self.config).unwrap();
            let text = text.replacen(
                "name = \"inst0\"\n",
                &format!("name = \"inst0\"\nendpoints = [\"{endpoint}\"]\n"),
                1,
            );
            std::fs::write(&self.config, text).unwrap();
        }
        port
    }

    /// A server certificate for 127.0.0.1 from instance `i`'s current CA: (cert, key) PEM.
    pub fn server_cert(&self, i: usize) -> (String, String) {
        self.sim
            .issue_server_cert(&self.id(i), "international", &["127.0.0.1"])
    }

    /// Normalised PEM of the simulator's current CA for instance `i`.
    pub fn expected_pem(&self, i: usize) -> String {
        certsync::cert::encode_pem(&self.sim.ca(&self.id(i), "international").der)
    }
}

/// The value of the sample of `name` with exactly `labels` in an OpenMetrics text.
pub fn metric_sample(metrics: &str, name: &str, labels: &str) -> Option<String> {
    let prefix = format!("{name}{{{labels}}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().to_string())
}

/// The first entry of `/status`'s `endpoints`.
pub async fn first_endpoint_status(port: u16) -> serde_json::Value {
    let (_, body) = get(port, "/status").await;
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    doc["endpoints"][0].clone()
}

/// GET `http://127.0.0.1:port{path}`: status and body.
pub async fn get(port: u16, path: &str) -> (u16, String) {
    certsync::cloud::http::install_crypto_provider();
    let response = reqwest::get(format!("http://127.0.0.1:{port}{path}"))
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn all_output(o: &Output) -> String {
    format!("{}{}", stdout(o), stderr(o))
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// SHA-256 fingerprint as `openssl x509 -fingerprint -sha256` computes it (lower-case hex).
pub fn openssl_fingerprint(path: &Path) -> String {
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl x509 failed on {}",
        path.display()
    );
    let text = String::from_utf8(out.stdout).unwrap();
    text.trim()
        .split('=')
        .nth(1)
        .unwrap()
        .replace(':', "")
        .to_lowercase()
}

pub fn mtime(path: &Path) -> std::time::SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

// ---- real TLS clients (tests/clients_*.rs) ----

/// `openssl s_server` on a free loopback port with a certificate and key (PEM), answering
/// HTTP (`-www`). Killed on drop.
pub struct TlsServer {
    child: std::process::Child,
    pub port: u16,
    _dir: TempDir,
}

impl TlsServer {
    /// Starts it and waits until it listens: s_server prints `ACCEPT <addr>:<port>` once its
    /// socket is bound (port 0 asks the kernel for a free one).
    pub fn start(cert_pem: &str, key_pem: &str) -> TlsServer {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, cert_pem).unwrap();
        std::fs::write(&key, key_pem).unwrap();
        let mut child = std::process::Command::new("openssl")
            .args(["s_server", "-accept", "127.0.0.1:0", "-www", "-cert"])
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn openssl s_server");
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let port = loop {
            let line = lines
                .next()
                .expect("s_server exited before listening")
                .unwrap();
            if let Some(addr) = line.strip_prefix("ACCEPT ") {
                break addr.rsplit(':').next().unwrap().trim().parse().unwrap();
            }
        };
        // Keep draining its output, so a full pipe never blocks it.
        std::thread::spawn(move || for _ in lines {});
        TlsServer {
            child,
            port,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/", self.port)
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `curl --silent --show-error -o /dev/null` with the trust arguments, against `url`.
pub fn curl(trust: &[&std::ffi::OsStr], url: &str) -> Output {
    std::process::Command::new("curl")
        .args([
            "--silent",
            "--show-error",
            "--max-time",
            "20",
            "-o",
            "/dev/null",
        ])
        .args(trust)
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .expect("run curl")
}

/// `curl --cacert FILE`.
pub fn curl_cacert(file: &Path, url: &str) -> Output {
    curl(&["--cacert".as_ref(), file.as_os_str()], url)
}

/// `curl --capath DIR` (no CA file: only the folder is trusted).
pub fn curl_capath(dir: &Path, url: &str) -> Output {
    curl(&["--capath".as_ref(), dir.as_os_str()], url)
}

/// `openssl s_client -CApath DIR -verify_return_error` to 127.0.0.1:port, trusting nothing
/// but the folder and checking the IP address in the certificate.
pub fn s_client_capath(dir: &Path, port: u16) -> Output {
    std::process::Command::new("openssl")
        .args(["s_client", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .args([
            "-verify_return_error",
            "-no-CAfile",
            "-no-CAstore",
            "-verify_ip",
            "127.0.0.1",
        ])
        .arg("-CApath")
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl s_client")
}

/// `keytool -list` of a PKCS#12 truststore: (exit ok, entries shown as trustedCertEntry,
/// the "Your keystore contains N entries" count, whole output).
pub fn keytool_list(p12: &Path, password: &str) -> (bool, usize, Option<usize>, String) {
    let out = std::process::Command::new("keytool")
        .args(["-list", "-storetype", "PKCS12", "-keystore"])
        .arg(p12)
        .args(["-storepass", password])
        .stdin(Stdio::null())
        .output()
        .expect("run keytool");
    let text = all_output(&out);
    let trusted = text
        .lines()
        .filter(|l| l.contains("trustedCertEntry"))
        .count();
    let count = text.lines().find_map(|l| {
        l.strip_prefix("Your keystore contains ")
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    });
    (out.status.success(), trusted, count, text)
}

/// A Java TLS client (compiled once per test process with `javac`): loads the PKCS#12
/// truststore as Java applications do, trusts only it, and completes a handshake with
/// 127.0.0.1:port checking the host. Exit 0 and `HANDSHAKE OK` when Java trusts the server.
pub fn java_handshake(p12: &Path, password: &str, port: u16) -> Output {
    static CLASSES: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let classes = CLASSES.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let src = dir.join("TlsCheck.java");
        std::fs::write(&src, JAVA_TLS_CHECK).unwrap();
        let out = std::process::Command::new("javac")
            .arg("-d")
            .arg(&dir)
            .arg(&src)
            .output()
            .expect("run javac");
        assert!(out.status.success(), "javac: {}", all_output(&out));
        dir
    });
    std::process::Command::new("java")
        .arg("-cp")
        .arg(classes)
        .arg("TlsCheck")
        .arg(p12)
        .arg(password)
        .arg(port.to_string())
        .stdin(Stdio::null())
        .output()
        .expect("run java")
}

const JAVA_TLS_CHECK: &str = r#"
import java.io.FileInputStream;
import java.io.InputStream;
import java.security.KeyStore;
import javax.net.ssl.SSLContext;
import javax.net.ssl.SSLParameters;
import javax.net.ssl.SSLSocket;
import javax.net.ssl.TrustManagerFactory;

public class TlsCheck {
    public static void main(String[] args) throws Exception {
        KeyStore trust = KeyStore.getInstance("PKCS12");
        try (InputStream in = new FileInputStream(args[0])) {
            trust.load(in, args[1].toCharArray());
        }
        TrustManagerFactory tmf =
            TrustManagerFactory.getInstance(TrustManagerFactory.getDefaultAlgorithm());
        tmf.init(trust);
        SSLContext ctx = SSLContext.getInstance("TLS");
        ctx.init(null, tmf.getTrustManagers(), null);
        try (SSLSocket s = (SSLSocket) ctx.getSocketFactory()
                .createSocket("127.0.0.1", Integer.parseInt(args[2]))) {
            SSLParameters p = s.getSSLParameters();
            p.setEndpointIdentificationAlgorithm("HTTPS");
            s.setSSLParameters(p);
            s.startHandshake();
            System.out.println("HANDSHAKE OK " + s.getSession().getPeerPrincipal());
        }
    }
}
"#;

/// A client run that must have accepted the server.
pub fn accepted(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} should accept, got {:?}:\n{}",
        out.status,
        all_output(out)
    );
}

/// A client run that must have refused the server, for its certificate (not because the
/// server was gone or the client broken).
pub fn refused(what: &str, out: &Output) {
    assert!(
        !out.status.success(),
        "{what} should refuse:\n{}",
        all_output(out)
    );
    let text = all_output(out).to_lowercase();
    assert!(
        ["certificate", "verify", "pkix", "certification path"]
            .iter()
            .any(|w| text.contains(w)),
        "{what} failed, but not on the certificate:\n{}",
        all_output(out)
    );
}
