//! Shared harness for the end-to-end tests: a simulator over TLS on loopback, a config file in
//! a temp folder, and the real `certsync` binary as a child process.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use certsync_sim::{SimOptions, Simulator};
use tempfile::TempDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_certsync");

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

    pub fn write_config(&self, extra: &Extra) {
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
        std::fs::write(&self.config, text).unwrap();
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

    /// Normalised PEM of the simulator's current CA for instance `i`.
    pub fn expected_pem(&self, i: usize) -> String {
        certsync::cert::encode_pem(&self.sim.ca(&self.id(i), "international").der)
    }
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
