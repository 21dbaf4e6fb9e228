//! Running a command hook: its argv without a shell, its environment, stdin from /dev/null,
//! the first [`OUTPUT_LIMIT`] bytes of its output captured and logged (the rest drained so it
//! never blocks on a full pipe), its timeout, and its whole process group killed on timeout
//! or at the end of the shutdown grace.
//!
//! Must not: decide whether or when the hook runs, or follow a shell's rules (no `PATH`
//! search, no word splitting).

use std::io;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process_group};
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::process::{Child, Command};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{ChangedFiles, Hook, HookError, HookOutput, OUTPUT_LIMIT};

/// Stands in for "never" where a deadline must be an `Instant`: about 30 years.
const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

/// After the hook's own process exited, how long to keep reading pipes that something else
/// (a background grandchild) still holds open. Whatever the hook itself wrote is already in
/// the pipe by then, so this only bounds the wait for a straggler.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(250);

/// Runs the command `argv` of `spec` (see [`super::run`]).
pub(super) async fn run(
    spec: &Hook,
    argv: &[String],
    trust_dir: &Path,
    changed: &ChangedFiles,
    shutdown: &CancellationToken,
    grace: Duration,
) -> Result<HookOutput, HookError> {
    let hook = spec.name.as_str();
    if shutdown.is_cancelled() {
        return Err(HookError::Stopped { hook: hook.into() });
    }
    let program = argv.first().map(String::as_str).unwrap_or("");
    let spawn_error = |source| HookError::Spawn {
        hook: hook.into(),
        program: program.into(),
        source,
    };
    if program.is_empty() {
        return Err(spawn_error(io::Error::new(
            io::ErrorKind::InvalidInput,
            "empty command",
        )));
    }
    let trust_dir = std::path::absolute(trust_dir).map_err(spawn_error)?;
    let lines = |files: &[PathBuf]| -> String {
        files
            .iter()
            .map(|p| trust_dir.join(p).to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("\n")
    };

    let mut command = Command::new(program);
    command
        .args(&argv[1..])
        .env("CERTSYNC_TRUST_DIR", &trust_dir)
        .env("CERTSYNC_CHANGED_FILES", lines(&changed.all()))
        .env("CERTSYNC_WRITTEN_FILES", lines(&changed.written))
        .env("CERTSYNC_REMOVED_FILES", lines(&changed.removed))
        // systemd's notify socket and watchdog are certsync's own: a hook must not speak for it.
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so that a timeout can kill everything it started.
        .process_group(0)
        // If this future is dropped, the hook must not live on unsupervised.
        .kill_on_drop(true);
    // The SDK's credential variables (AK, SK, security token) are certsync's secrets, not the
    // hook's.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("HUAWEICLOUD_") {
            command.env_remove(&key);
        }
    }
    let started = Instant::now();
    let mut child = command.spawn().map_err(spawn_error)?;
    tracing::debug!(hook, program, pid = child.id(), "hook started");

    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let mut capture = Capture::new(hook);
    let (mut out_buf, mut err_buf) = (vec![0u8; 8192], vec![0u8; 8192]);
    // A timeout too large for the clock means "no timeout" (and must not panic).
    let deadline = started
        .checked_add(spec.timeout)
        .unwrap_or_else(|| started + FAR_FUTURE);
    let mut stop_at: Option<Instant> = None;
    let mut exited: Option<ExitStatus> = None;
    let mut drain_until: Option<Instant> = None;

    loop {
        if exited.is_some() && stdout.is_none() && stderr.is_none() {
            break;
        }
        tokio::select! {
            read = read_some(&mut stdout, &mut out_buf) => match read {
                Some(n) => capture.push(Stream::Stdout, &out_buf[..n]),
                None => stdout = None,
            },
            read = read_some(&mut stderr, &mut err_buf) => match read {
                Some(n) => capture.push(Stream::Stderr, &err_buf[..n]),
                None => stderr = None,
            },
            status = child.wait(), if exited.is_none() => {
                // `wait` fails only if the child was already reaped, which nothing else
                // here does; report it as a failure rather than pretend success.
                let status = status.map_err(|source| HookError::Wait {
                    hook: hook.into(),
                    source,
                })?;
                exited = Some(status);
                drain_until = Some(Instant::now() + DRAIN_AFTER_EXIT);
            },
            _ = sleep_until_opt(drain_until) => break,
            _ = tokio::time::sleep_until(deadline), if exited.is_none() => {
                kill_group(&mut child, hook).await;
                capture.finish();
                tracing::warn!(hook, timeout = %humantime::format_duration(spec.timeout), "hook timed out; process group killed");
                return Err(HookError::Timeout { hook: hook.into(), after: spec.timeout });
            },
            _ = shutdown.cancelled(), if stop_at.is_none() && exited.is_none() => {
                tracing::info!(hook, grace = %humantime::format_duration(grace), "shutdown requested; waiting for the running hook");
                let now = Instant::now();
                stop_at = Some(now.checked_add(grace).unwrap_or_else(|| now + FAR_FUTURE));
            },
            _ = sleep_until_opt(stop_at), if exited.is_none() => {
                kill_group(&mut child, hook).await;
                capture.finish();
                tracing::warn!(hook, "hook still running at shutdown; process group killed");
                return Err(HookError::Stopped { hook: hook.into() });
            },
        }
    }
    // Dropping the pipes here: a grandchild still holding them gets EPIPE, not us a hang.
    drop((stdout, stderr));
    let duration = started.elapsed();
    let output = capture.finish();
    let status = exited.expect("the loop ends only after the child exited");
    match status.code() {
        Some(0) => {
            tracing::debug!(hook, duration = ?duration, "hook succeeded");
            Ok(HookOutput {
                status_code: 0,
                output,
                duration,
            })
        }
        _ => Err(HookError::Failed {
            hook: hook.into(),
            status: describe(status),
            output,
        }),
    }
}

/// `exit status 3` / `killed by signal 9`.
fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => status.to_string(),
    }
}

/// Reads once from an optional pipe: `Some(n)` bytes, or `None` at EOF or on a read error
/// (both mean "this stream is done"). A stream that is already done never completes.
async fn read_some<R: AsyncRead + Unpin>(pipe: &mut Option<R>, buf: &mut [u8]) -> Option<usize> {
    match pipe {
        Some(pipe) => match pipe.read(buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => Some(n),
        },
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// SIGKILL to the hook's whole process group, then reap the hook itself.
///
/// The group is signalled before the leader is reaped: while the leader is unreaped its pid,
/// which is the group id, cannot be reused, so the signal cannot hit a stranger.
async fn kill_group(child: &mut Child, hook: &str) {
    if let Some(pid) = child.id().and_then(|id| Pid::from_raw(id as i32))
        && let Err(e) = kill_process_group(pid, Signal::KILL)
    {
        // ESRCH: everything in the group is already gone.
        tracing::debug!(hook, error = %e, "killing the hook's process group");
    }
    // Should the group kill have failed, kill_on_drop's per-process kill is the fallback.
    let _ = child.start_kill();
    let _ = child.wait().await;
}

#[derive(Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

/// Keeps the first [`OUTPUT_LIMIT`] bytes of the combined output and logs them line by line.
struct Capture<'a> {
    hook: &'a str,
    kept: Vec<u8>,
    dropped: usize,
    /// Unfinished last line of each stream, so that interleaved streams log whole lines.
    partial: [Vec<u8>; 2],
}

impl<'a> Capture<'a> {
    fn new(hook: &'a str) -> Self {
        Capture {
            hook,
            kept: Vec::new(),
            dropped: 0,
            partial: [Vec::new(), Vec::new()],
        }
    }

    fn push(&mut self, stream: Stream, data: &[u8]) {
        let take = data.len().min(OUTPUT_LIMIT - self.kept.len());
        self.dropped += data.len() - take;
        let data = &data[..take];
        self.kept.extend_from_slice(data);
        let partial = &mut self.partial[stream as usize];
        for &b in data {
            if b == b'\n' {
                log_line(self.hook, stream, partial);
                partial.clear();
            } else {
                partial.push(b);
            }
        }
    }

    /// Logs what is left and returns the kept output.
    fn finish(&mut self) -> String {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let partial = std::mem::take(&mut self.partial[stream as usize]);
            if !partial.is_empty() {
                log_line(self.hook, stream, &partial);
            }
        }
        if self.dropped > 0 {
            tracing::info!(
                hook = self.hook,
                dropped_bytes = self.dropped,
                "hook output beyond {OUTPUT_LIMIT} bytes was not kept"
            );
            self.dropped = 0;
        }
        String::from_utf8_lossy(&self.kept).into_owned()
    }
}

fn log_line(hook: &str, stream: Stream, line: &[u8]) {
    let stream = match stream {
        Stream::Stdout => "stdout",
        Stream::Stderr => "stderr",
    };
    let line = String::from_utf8_lossy(line);
    let line = line.strip_suffix('\r').unwrap_or(&line);
    tracing::info!(hook, stream, "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_keeps_the_first_bytes_across_streams() {
        let mut c = Capture::new("t");
        c.push(Stream::Stdout, b"out\n");
        c.push(Stream::Stderr, b"err");
        c.push(Stream::Stdout, &[b'x'; OUTPUT_LIMIT]);
        let out = c.finish();
        assert_eq!(out.len(), OUTPUT_LIMIT);
        assert!(out.starts_with("out\nerrxxx"));
    }

    #[test]
    fn statuses_are_described() {
        assert_eq!(describe(ExitStatus::from_raw(3 << 8)), "exit status 3");
        assert_eq!(describe(ExitStatus::from_raw(9)), "killed by signal 9");
    }
}
