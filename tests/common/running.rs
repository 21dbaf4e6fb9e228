//! A `certsync` child process whose output lines arrive as events, driven with real signals.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;

use super::BIN;

/// A running `certsync` (stderr and stdout lines, in arrival order).
pub struct Running {
    pub child: tokio::process::Child,
    lines: mpsc::UnboundedReceiver<String>,
    log: Arc<Mutex<String>>,
}

impl Running {
    /// `certsync --config CONFIG ARGS...`.
    pub fn start(config: &Path, args: &[&str]) -> Running {
        Running::start_env(config, args, &[])
    }

    /// The same with extra environment variables.
    pub fn start_env(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Running {
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.arg("--config").arg(config).args(args);
        cmd.env_remove("NOTIFY_SOCKET");
        for (k, v) in env {
            cmd.env(k, v);
        }
        Running::spawn(cmd)
    }

    /// Spawns `cmd` (RUST_LOG removed, stdin from /dev/null, output captured).
    pub fn spawn(mut cmd: tokio::process::Command) -> Running {
        cmd.env_remove("RUST_LOG");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().unwrap();
        let (tx, lines) = mpsc::unbounded_channel();
        let log = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stderr.take().unwrap()) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            Box::new(child.stdout.take().unwrap()),
        ] {
            let tx = tx.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    log.lock().unwrap().push_str(&format!("{line}\n"));
                    let _ = tx.send(line);
                }
            });
        }
        Running { child, lines, log }
    }

    /// Waits for a line containing `needle` (up to 30 s, then fails with the log so far).
    pub async fn wait_for(&mut self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) if line.contains(needle) => return line,
                Ok(Some(_)) => continue,
                _ => panic!(
                    "no line with {needle:?}; log:\n{}",
                    self.log.lock().unwrap()
                ),
            }
        }
    }

    /// Sends `sig` to the process.
    pub fn signal(&self, sig: Signal) {
        let pid = Pid::from_raw(self.child.id().unwrap() as i32).unwrap();
        kill_process(pid, sig).unwrap();
    }

    /// Waits (up to 30 s) for the exit and returns its status code.
    pub async fn exit_code(&mut self) -> Option<i32> {
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("certsync did not exit")
            .unwrap()
            .code()
    }

    /// SIGTERM, then the exit code.
    pub async fn stop(mut self) -> Option<i32> {
        self.signal(Signal::TERM);
        self.exit_code().await
    }

    /// Everything printed so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }
}

/// Waits (up to 30 s, then fails) until `path` exists: for files another process writes once
/// it reached a point the test waits for.
pub async fn wait_for_file(path: &Path) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} did not appear",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
