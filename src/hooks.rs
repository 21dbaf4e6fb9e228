//! Hooks (SPEC 8): run one configured hook after files changed, a command or a signal.
//!
//! Owns: the hook's options type ([`Hook`], [`HookAction`], [`HookSignal`], the default
//! timeout; config builds them), the dispatch between the two kinds ([`run`]), and for a
//! command (`hooks/command.rs`): spawning its argv without a shell, its environment (`CERTSYNC_TRUST_DIR`,
//! `CERTSYNC_CHANGED_FILES`), stdin from /dev/null, capturing and logging the first
//! [`OUTPUT_LIMIT`] bytes of its output, its timeout, and killing its whole process group on
//! timeout or shutdown; for a signal: reading the pid fresh from the pid file and sending it.
//! Must not: decide *whether* a hook runs (the daemon does, from what the store changed and
//! the hook's `instances` filter), retry it (the daemon's backoff does), or touch the trust
//! directory.

mod command;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::process::{Pid, Signal};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

/// How much of a hook's combined stdout and stderr is kept and logged; the rest is read and
/// dropped so that the hook never blocks on a full pipe.
pub const OUTPUT_LIMIT: usize = 4096;

/// How long a running hook may go on after shutdown was requested before its process group
/// is killed (SPEC 9).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// `hook.timeout` when left out.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// One `[[hook]]`, as the config resolved it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    /// For logs and metrics; unique. Default: the file name of `command[0]`, or for a signal
    /// hook `SIGNAL-<pid file name>`.
    pub name: String,
    /// What the hook does.
    pub action: HookAction,
    /// A command is killed (with its process group) after this.
    pub timeout: Duration,
    /// Run only when files of these instances (by id) changed; `None`: any change. Read by
    /// whoever decides when hooks run (the daemon); running a hook does not look at it.
    pub instances: Option<Vec<String>>,
}

/// What a hook does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookAction {
    /// `command`: argv; `command[0]` is an absolute path. Run without a shell.
    Command(Vec<String>),
    /// `signal` + `pid_file`: send the signal to the pid read fresh from the file at each run.
    Signal {
        /// The signal sent.
        signal: HookSignal,
        /// The pid file (absolute).
        pid_file: PathBuf,
    },
}

/// The signals a signal hook may send: the ones applications take as "reload" or "re-read",
/// and none that cannot be caught.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HookSignal {
    /// `SIGHUP`.
    Hup,
    /// `SIGINT`.
    Int,
    /// `SIGQUIT`.
    Quit,
    /// `SIGTERM`.
    Term,
    /// `SIGUSR1`.
    Usr1,
    /// `SIGUSR2`.
    Usr2,
    /// `SIGWINCH`.
    Winch,
    /// `SIGCONT`.
    Cont,
    /// `SIGALRM`.
    Alrm,
}

impl HookSignal {
    /// Every signal a hook may send, in the order messages list them.
    pub const ALL: [HookSignal; 9] = [
        HookSignal::Hup,
        HookSignal::Int,
        HookSignal::Quit,
        HookSignal::Term,
        HookSignal::Usr1,
        HookSignal::Usr2,
        HookSignal::Winch,
        HookSignal::Cont,
        HookSignal::Alrm,
    ];

    /// The canonical name, `SIGHUP`: what messages, logs and default hook names show.
    pub fn name(self) -> &'static str {
        match self {
            HookSignal::Hup => "SIGHUP",
            HookSignal::Int => "SIGINT",
            HookSignal::Quit => "SIGQUIT",
            HookSignal::Term => "SIGTERM",
            HookSignal::Usr1 => "SIGUSR1",
            HookSignal::Usr2 => "SIGUSR2",
            HookSignal::Winch => "SIGWINCH",
            HookSignal::Cont => "SIGCONT",
            HookSignal::Alrm => "SIGALRM",
        }
    }

    /// The signal named `text`, in any case, with or without `SIG`, surrounding blanks
    /// ignored (`"hup"`, `"SIGHUP"`, `" SigHup "`).
    pub fn from_name(text: &str) -> Option<HookSignal> {
        let upper = text.trim().to_ascii_uppercase();
        let canonical = if upper.starts_with("SIG") {
            upper
        } else {
            format!("SIG{upper}")
        };
        HookSignal::ALL.into_iter().find(|s| s.name() == canonical)
    }

    /// The signal kill(2) sends.
    fn raw(self) -> Signal {
        match self {
            HookSignal::Hup => Signal::HUP,
            HookSignal::Int => Signal::INT,
            HookSignal::Quit => Signal::QUIT,
            HookSignal::Term => Signal::TERM,
            HookSignal::Usr1 => Signal::USR1,
            HookSignal::Usr2 => Signal::USR2,
            HookSignal::Winch => Signal::WINCH,
            HookSignal::Cont => Signal::CONT,
            HookSignal::Alrm => Signal::ALARM,
        }
    }
}

impl fmt::Display for HookSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A hook that succeeded.
#[derive(Debug)]
pub enum HookRun {
    /// A command that exited with status 0.
    Command(HookOutput),
    /// A signal that was delivered.
    Signal {
        /// The pid read from the pid file and signalled.
        pid: i32,
    },
}

/// A hook that ran and exited with status 0.
#[derive(Debug)]
pub struct HookOutput {
    /// The exit code (0, since any other status is a [`HookError::Failed`]).
    pub status_code: i32,
    /// The first [`OUTPUT_LIMIT`] bytes of stdout and stderr as they arrived, lossy UTF-8.
    pub output: String,
    /// Wall time from spawn to exit.
    pub duration: Duration,
}

/// Why a hook did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The program could not be started (missing, not executable, ...).
    #[error("hook '{hook}': cannot run {program}")]
    Spawn {
        /// Hook name.
        hook: String,
        /// `command[0]`.
        program: String,
        /// What `spawn` said.
        #[source]
        source: io::Error,
    },
    /// The hook exited non-zero or was killed by a signal it did not get from us.
    #[error("hook '{hook}' failed: {status}")]
    Failed {
        /// Hook name.
        hook: String,
        /// `exit status 3` or `killed by signal 9`.
        status: String,
        /// The first [`OUTPUT_LIMIT`] bytes of its output.
        output: String,
    },
    /// The hook outlived its timeout; its process group was killed.
    #[error("hook '{hook}' timed out after {}; its process group was killed", humantime::format_duration(*.after))]
    Timeout {
        /// Hook name.
        hook: String,
        /// The configured timeout.
        after: Duration,
    },
    /// The hook's process could not be waited for (it exited, but its status is unknown).
    #[error("hook '{hook}' failed: could not be waited for: {source}")]
    Wait {
        /// Hook name.
        hook: String,
        /// What `wait` said.
        #[source]
        source: io::Error,
    },
    /// A signal hook's pid file could not be read or holds no pid.
    #[error("hook '{hook}': pid file {}: {reason}", path.display())]
    PidFile {
        /// Hook name.
        hook: String,
        /// The pid file.
        path: PathBuf,
        /// Why (with the read error as its source, when reading failed).
        #[source]
        reason: PidFileError,
    },
    /// A signal hook's process does not exist (or may not be signalled).
    #[error("hook '{hook}': cannot send {signal} to pid {pid} (from {}): {source}", path.display())]
    Signal {
        /// Hook name.
        hook: String,
        /// The signal.
        signal: HookSignal,
        /// The pid read from the file.
        pid: i32,
        /// The pid file.
        path: PathBuf,
        /// What kill(2) said (`No such process`, `Operation not permitted`).
        #[source]
        source: io::Error,
    },
    /// certsync is shutting down and the hook outlived the grace period; its process group
    /// was killed.
    #[error("hook '{hook}' was stopped because certsync is shutting down")]
    Stopped {
        /// Hook name.
        hook: String,
    },
}

/// What is wrong with a signal hook's pid file.
#[derive(Debug, thiserror::Error)]
pub enum PidFileError {
    /// It could not be read (missing, unreadable, too large): the read error.
    #[error("{0}")]
    Read(#[source] io::Error),
    /// Its content is not a number; the first characters of it.
    #[error("holds no pid ({0:?})")]
    NoPid(String),
    /// A number that is not a single process certsync may signal (0, 1, negative).
    #[error("pid {0} is not a process certsync may signal")]
    NotSignallable(i32),
}

/// Sends `signal` to the pid read now from `pid_file`. A missing file, a file without a pid,
/// or a process that is gone is a failure. Returns the pid signalled.
fn send_signal(hook: &str, signal: HookSignal, pid_file: &Path) -> Result<i32, HookError> {
    use rustix::process::kill_process;
    let pid_error = |reason: PidFileError| HookError::PidFile {
        hook: hook.to_string(),
        path: pid_file.to_path_buf(),
        reason,
    };
    let text = crate::files::read_capped_string(pid_file, crate::files::MAX_VALUE_FILE)
        .map_err(|e| pid_error(PidFileError::Read(e)))?;
    let pid: i32 = text.trim().parse().map_err(|_| {
        pid_error(PidFileError::NoPid(
            text.trim().chars().take(20).collect::<String>(),
        ))
    })?;
    // Pid 0 and 1 and negative values would signal groups or init: never. Checked before
    // `Pid::from_raw`, which panics on a negative number.
    let target = (pid > 1)
        .then(|| Pid::from_raw(pid))
        .flatten()
        .ok_or_else(|| pid_error(PidFileError::NotSignallable(pid)))?;
    kill_process(target, signal.raw()).map_err(|e| HookError::Signal {
        hook: hook.to_string(),
        signal,
        pid,
        path: pid_file.to_path_buf(),
        source: io::Error::from(e),
    })?;
    tracing::info!(hook, signal = signal.name(), pid, "signal sent");
    Ok(pid)
}

/// The files a hook is told about: written (created or updated) and removed since it last
/// ran. A file is in one list only: the last thing that happened to it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangedFiles {
    /// Files created or rewritten.
    pub written: Vec<PathBuf>,
    /// Files removed.
    pub removed: Vec<PathBuf>,
}

impl ChangedFiles {
    /// Every file: the written ones, then the removed ones.
    pub fn all(&self) -> Vec<PathBuf> {
        self.written.iter().chain(&self.removed).cloned().collect()
    }

    /// Nothing changed.
    pub fn is_empty(&self) -> bool {
        self.written.is_empty() && self.removed.is_empty()
    }
}

/// Runs one hook to completion: its command, or its signal.
///
/// A command gets `trust_dir` as `CERTSYNC_TRUST_DIR`; every changed file as
/// `CERTSYNC_CHANGED_FILES` (one per line, SPEC 8), and the same split by what happened in
/// `CERTSYNC_WRITTEN_FILES` and `CERTSYNC_REMOVED_FILES`, so a hook need not stat each path
/// to learn whether it still exists. Paths are absolute (a relative changed file is taken
/// relative to `trust_dir`). When `shutdown` is cancelled a running command gets
/// [`SHUTDOWN_GRACE`] to finish; a command is not started at all once `shutdown` is cancelled.
/// A signal is sent at once (it cannot hang), to the pid read now from the pid file.
pub async fn run(
    hook: &Hook,
    trust_dir: &Path,
    changed: &ChangedFiles,
    shutdown: &CancellationToken,
) -> Result<HookRun, HookError> {
    run_with_grace(hook, trust_dir, changed, shutdown, SHUTDOWN_GRACE).await
}

/// [`run`] with a chosen shutdown grace period. Public only so that tests of the shutdown
/// path need not wait the real [`SHUTDOWN_GRACE`]; use [`run`].
#[doc(hidden)]
pub async fn run_with_grace(
    hook: &Hook,
    trust_dir: &Path,
    changed: &ChangedFiles,
    shutdown: &CancellationToken,
    grace: Duration,
) -> Result<HookRun, HookError> {
    match &hook.action {
        HookAction::Command(argv) => command::run(hook, argv, trust_dir, changed, shutdown, grace)
            .instrument(tracing::info_span!("hook", hook = %hook.name))
            .await
            .map(HookRun::Command),
        HookAction::Signal { signal, pid_file } => {
            send_signal(&hook.name, *signal, pid_file).map(|pid| HookRun::Signal { pid })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_in_any_spelling_and_show_their_canonical_name() {
        for (text, signal) in [
            ("SIGHUP", HookSignal::Hup),
            ("hup", HookSignal::Hup),
            (" SigUsr1 ", HookSignal::Usr1),
            ("usr2", HookSignal::Usr2),
            ("SIGALRM", HookSignal::Alrm),
        ] {
            assert_eq!(HookSignal::from_name(text), Some(signal), "{text:?}");
        }
        for bad in ["", "SIG", "KILL", "SIGKILL", "SIGSIGHUP", "9", "hup!"] {
            assert_eq!(HookSignal::from_name(bad), None, "{bad:?}");
        }
        for signal in HookSignal::ALL {
            assert_eq!(HookSignal::from_name(signal.name()), Some(signal));
            assert_eq!(signal.to_string(), signal.name());
        }
    }

    /// A pid file that could not be read, and a kill(2) that failed, were reported as text:
    /// the io::Error (its kind, its errno) was dropped.
    #[test]
    fn signal_hook_errors_keep_the_system_error() {
        use std::error::Error;
        let io_error = |e: &HookError| -> Option<(io::ErrorKind, Option<i32>)> {
            std::iter::successors(Some(e as &(dyn Error + 'static)), |&e| e.source())
                .find_map(|e| e.downcast_ref::<io::Error>())
                .map(|e| (e.kind(), e.raw_os_error()))
        };
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("app.pid");
        let err = send_signal("h", HookSignal::Term, &pid_file).unwrap_err();
        assert!(matches!(err, HookError::PidFile { .. }), "{err:?}");
        assert_eq!(
            io_error(&err).map(|(kind, _)| kind),
            Some(io::ErrorKind::NotFound)
        );
        assert_eq!(crate::text::error_chain(&err), err.to_string());
        // Above any pid_max: no such process.
        std::fs::write(&pid_file, i32::MAX.to_string()).unwrap();
        let err = send_signal("h", HookSignal::Term, &pid_file).unwrap_err();
        assert!(matches!(err, HookError::Signal { .. }), "{err:?}");
        assert_eq!(
            io_error(&err).and_then(|(_, errno)| errno),
            Some(rustix::io::Errno::SRCH.raw_os_error())
        );
        assert_eq!(crate::text::error_chain(&err), err.to_string());
    }
}
