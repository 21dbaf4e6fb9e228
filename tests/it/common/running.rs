//! A `certsync` child process driven with real signals, whose progress arrives as events: the
//! systemd notify messages it sends (`READY=1`, `STATUS=` after each pass, `RELOADING=1`), on a
//! socket of its own, and its output lines (for the tests that are about what it logs).

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
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
    /// The notify socket it was given (none when the test set `NOTIFY_SOCKET` itself).
    notify: Option<NotifySocket>,
}

/// A systemd notify socket: the datagrams certsync sends to it, in order.
pub struct NotifySocket {
    socket: Arc<UnixDatagram>,
    /// Its path, for `NOTIFY_SOCKET`.
    pub path: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl NotifySocket {
    /// A socket at `dir/notify.sock`.
    pub fn new(dir: &Path) -> NotifySocket {
        NotifySocket::bind(dir.join("notify.sock"), None)
    }

    /// A socket in a fresh temporary folder.
    fn fresh() -> NotifySocket {
        let dir = tempfile::tempdir().unwrap();
        NotifySocket::bind(dir.path().join("notify.sock"), Some(dir))
    }

    fn bind(path: PathBuf, dir: Option<tempfile::TempDir>) -> NotifySocket {
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        NotifySocket {
            socket: Arc::new(socket),
            path,
            _dir: dir,
        }
    }

    /// The next message (up to 30 s, then fails).
    pub async fn next(&self) -> String {
        let socket = self.socket.clone();
        tokio::task::spawn_blocking(move || {
            let mut buf = [0u8; 4096];
            let n = socket
                .recv(&mut buf)
                .unwrap_or_else(|e| panic!("no notify message within 30 s: {e}"));
            String::from_utf8_lossy(&buf[..n]).into_owned()
        })
        .await
        .unwrap()
    }

    /// Reads messages until one contains `needle`; returns every message read.
    pub async fn until(&self, needle: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let msg = self.next().await;
            let done = msg.contains(needle);
            seen.push(msg);
            if done {
                return seen;
            }
        }
    }

    /// Waits for the end of the next pass (the `STATUS=` line certsync sends after each, with
    /// `READY=1` after the first); returns that status line. The `READY=1` that ends a reload
    /// is not a pass and is skipped.
    pub async fn pass(&self) -> String {
        let mut reloading = false;
        loop {
            let msg = self.next().await;
            if msg.contains("RELOADING=1") {
                reloading = true;
                continue;
            }
            if reloading && msg.contains("READY=1") {
                reloading = false;
                continue;
            }
            if let Some(status) = msg.lines().find_map(|l| l.strip_prefix("STATUS="))
                && status != "stopping"
            {
                return status.to_string();
            }
        }
    }

    /// Waits until a reload (SIGHUP, or a change of the config file) has been handled,
    /// applied or refused.
    pub async fn reload(&self) {
        self.until("RELOADING=1").await;
        self.until("READY=1").await;
    }
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
        let notify = if env.iter().any(|(k, _)| *k == "NOTIFY_SOCKET") {
            None
        } else {
            let notify = NotifySocket::fresh();
            cmd.env("NOTIFY_SOCKET", &notify.path);
            Some(notify)
        };
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut running = Running::spawn(cmd);
        running.notify = notify;
        running
    }

    fn notify(&self) -> &NotifySocket {
        self.notify
            .as_ref()
            .expect("started with a NOTIFY_SOCKET of the test's own")
    }

    /// Waits for the end of the next pass (a notify `STATUS=`); returns its status line.
    pub async fn passed(&mut self) -> String {
        self.notify().pass().await
    }

    /// Waits until a reload has been handled (applied or refused).
    pub async fn reloaded(&mut self) {
        self.notify().reload().await
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
        Running {
            child,
            lines,
            log,
            notify: None,
        }
    }

    /// Waits for a line containing `needle` (up to 30 s, then fails with the log so far): for
    /// tests that are about what certsync logs; progress is awaited with [`Running::passed`].
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

/// A free loopback port for `server.listen` (bound and released: the kernel hands ports out
/// in turn, so it is not given to another socket in the moment before certsync binds it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits (up to 30 s, then fails) until something accepts connections on the loopback `port`.
pub async fn wait_listening(port: u16) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nothing listens on port {port}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
