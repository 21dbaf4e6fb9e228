//! Hooks with real processes (SPEC 8): for commands, environment, argv without a shell,
//! stdin, exit statuses, output cap, timeout and shutdown killing the whole process group, and
//! a background grandchild that must not make the run hang; for signals, each typed signal
//! reaching a real process as the signal the shell knows by that name, and pid files that
//! name no process certsync may signal.
//!
//! `/bin/sh -c` appears here only as the hook *program* under test, to script its behaviour.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use certsync::hooks::{
    self, ChangedFiles, Hook, HookAction, HookError, HookOutput, HookRun, HookSignal, OUTPUT_LIMIT,
};
use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::process::{Pid, PidfdFlags, Signal, kill_process, pidfd_open};
use tokio_util::sync::CancellationToken;

fn spec(command: &[&str], timeout: Duration) -> Hook {
    Hook {
        name: "test-hook".into(),
        action: HookAction::Command(command.iter().map(|s| s.to_string()).collect()),
        timeout,
        instances: None,
    }
}

fn sh(script: &str, args: &[&Path]) -> Vec<String> {
    let mut v = vec![
        "/bin/sh".to_string(),
        "-c".into(),
        script.into(),
        "sh".into(),
    ];
    v.extend(args.iter().map(|p| p.to_string_lossy().into_owned()));
    v
}

fn sh_spec(script: &str, args: &[&Path], timeout: Duration) -> Hook {
    Hook {
        name: "sh-hook".into(),
        action: HookAction::Command(sh(script, args)),
        timeout,
        instances: None,
    }
}

const LONG: Duration = Duration::from_secs(60);

/// A command hook's output, from what [`hooks::run`] returned.
fn output(run: Result<HookRun, HookError>) -> Result<HookOutput, HookError> {
    match run? {
        HookRun::Command(out) => Ok(out),
        other => panic!("a command hook ran as {other:?}"),
    }
}

/// Runs a command hook with `trust_dir`, `changed` and `shutdown`.
async fn run_command(
    hook: &Hook,
    trust_dir: &Path,
    changed: &ChangedFiles,
    shutdown: &CancellationToken,
) -> Result<HookOutput, HookError> {
    output(hooks::run(hook, trust_dir, changed, shutdown).await)
}

async fn run(spec: &Hook) -> Result<HookOutput, HookError> {
    run_command(
        spec,
        Path::new("/tmp"),
        &ChangedFiles::default(),
        &CancellationToken::new(),
    )
    .await
}

/// Waits (on a pidfd, not by polling) until process `pid` has exited, or panics after 10 s.
async fn assert_process_ends(pid: i32) {
    let pid = Pid::from_raw(pid).unwrap();
    let fd = match pidfd_open(pid, PidfdFlags::empty()) {
        Ok(fd) => fd,
        // already gone and reaped
        Err(e) if e == rustix::io::Errno::SRCH => return,
        Err(e) => panic!("pidfd_open({pid:?}): {e}"),
    };
    // A pidfd turns readable when its process exits. poll(2) blocks, so off the runtime.
    let ready = tokio::task::spawn_blocking(move || {
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        let ten_seconds = Timespec {
            tv_sec: 10,
            tv_nsec: 0,
        };
        poll(&mut fds, Some(&ten_seconds))
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        ready, 1,
        "process {pid:?} still alive 10 s after the hook ended"
    );
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

/// Reads a FIFO to its end without blocking the runtime (opening blocks until a writer comes).
async fn read_fifo(path: &Path) -> String {
    let path = path.to_path_buf();
    let read = tokio::task::spawn_blocking(move || std::fs::read_to_string(path));
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("the hook never wrote to its FIFO")
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn environment_is_passed() {
    let dir = tempfile::tempdir().unwrap();
    let trust = dir.path().join("trust");
    let out = |name: &str| dir.path().join(name);
    let hook = sh_spec(
        r#"printf %s "$CERTSYNC_TRUST_DIR" > "$1"; printf %s "$CERTSYNC_CHANGED_FILES" > "$2"; printf %s "$PATH" > "$3"; printf %s "$CERTSYNC_WRITTEN_FILES" > "$4"; printf %s "$CERTSYNC_REMOVED_FILES" > "$5""#,
        &[
            &out("dir"),
            &out("files"),
            &out("path"),
            &out("written"),
            &out("removed"),
        ],
        LONG,
    );
    let changed = ChangedFiles {
        written: vec![
            trust.join("orders-international.crt"),
            PathBuf::from("relative.crt"),
        ],
        removed: vec![trust.join("gone-international.crt")],
    };
    let result = run_command(&hook, &trust, &changed, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(result.status_code, 0);
    let read = |name: &str| std::fs::read_to_string(out(name)).unwrap();
    assert_eq!(read("dir"), trust.to_str().unwrap());
    let written = format!(
        "{}\n{}",
        trust.join("orders-international.crt").display(),
        trust.join("relative.crt").display()
    );
    let removed = trust.join("gone-international.crt").display().to_string();
    assert_eq!(read("files"), format!("{written}\n{removed}"));
    assert_eq!(read("written"), written);
    assert_eq!(read("removed"), removed);
    // The rest of the environment is inherited.
    assert_eq!(read("path"), std::env::var("PATH").unwrap());
}

#[tokio::test]
async fn relative_trust_dir_is_made_absolute() {
    let hook = sh_spec(r#"printf %s "$CERTSYNC_TRUST_DIR""#, &[], LONG);
    let out = run_command(
        &hook,
        Path::new("some/trust"),
        &ChangedFiles::default(),
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    let expected = std::env::current_dir().unwrap().join("some/trust");
    assert_eq!(out.output, expected.to_str().unwrap());
}

#[tokio::test]
async fn argv_is_not_interpreted_by_a_shell() {
    let hook = spec(
        &[
            "/usr/bin/printf",
            "%s|",
            "$HOME;rm -rf x",
            "`id`",
            "*",
            "a  b",
            "'q'",
        ],
        LONG,
    );
    let out = run(&hook).await.unwrap();
    assert_eq!(out.output, "$HOME;rm -rf x|`id`|*|a  b|'q'|");
}

#[tokio::test]
async fn stdin_is_dev_null() {
    // `cat` would wait forever on an inherited terminal or pipe; /dev/null ends it at once.
    let hook = sh_spec("readlink /proc/self/fd/0; cat; echo end", &[], LONG);
    let out = run(&hook).await.unwrap();
    assert_eq!(out.output, "/dev/null\nend\n");
}

#[tokio::test]
async fn stdout_and_stderr_are_both_captured() {
    let hook = sh_spec("echo to-stdout; echo to-stderr >&2", &[], LONG);
    let out = run(&hook).await.unwrap();
    assert!(out.output.contains("to-stdout\n"), "{:?}", out.output);
    assert!(out.output.contains("to-stderr\n"), "{:?}", out.output);
    assert_eq!(out.output.len(), "to-stdout\nto-stderr\n".len());
}

#[tokio::test]
async fn non_zero_exit_is_a_failure() {
    let hook = sh_spec("echo cannot reload >&2; exit 3", &[], LONG);
    match run(&hook).await {
        Err(HookError::Failed {
            hook,
            status,
            output,
        }) => {
            assert_eq!(hook, "sh-hook");
            assert_eq!(status, "exit status 3");
            assert_eq!(output, "cannot reload\n");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn death_by_signal_is_a_failure() {
    let hook = sh_spec("kill -9 $$", &[], LONG);
    match run(&hook).await {
        Err(HookError::Failed { status, .. }) => assert_eq!(status, "killed by signal 9"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn missing_program_cannot_be_spawned() {
    let hook = spec(&["/nonexistent/certsync-test-hook", "arg"], LONG);
    match run(&hook).await {
        Err(HookError::Spawn {
            hook,
            program,
            source,
        }) => {
            assert_eq!(hook, "test-hook");
            assert_eq!(program, "/nonexistent/certsync-test-hook");
            assert_eq!(source.kind(), io::ErrorKind::NotFound);
        }
        other => panic!("{other:?}"),
    }
    match run(&spec(&[], LONG)).await {
        Err(HookError::Spawn { source, .. }) => {
            assert_eq!(source.kind(), io::ErrorKind::InvalidInput)
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn output_is_capped_and_the_rest_drained() {
    // 100 kB is more than a pipe holds: the hook would block forever if the rest were not read.
    let hook = sh_spec(
        r#"head -c 100000 /dev/zero | tr '\0' a; echo; echo after >&2"#,
        &[],
        LONG,
    );
    let out = run(&hook).await.unwrap();
    assert_eq!(out.output.len(), OUTPUT_LIMIT);
    assert!(out.output.bytes().take(4000).all(|b| b == b'a'));
}

#[tokio::test]
async fn timeout_kills_the_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("grandchild.pid");
    let timeout = Duration::from_secs(2);
    let hook = sh_spec(
        r#"sleep 1000 & echo $! > "$1"; wait"#,
        &[&pid_file],
        timeout,
    );
    let started = std::time::Instant::now();
    match run(&hook).await {
        Err(HookError::Timeout { hook, after }) => {
            assert_eq!(hook, "sh-hook");
            assert_eq!(after, timeout);
        }
        other => panic!("{other:?}"),
    }
    // Not before the timeout (the kill itself is proved by the grandchild's end below).
    assert!(started.elapsed() >= timeout, "{:?}", started.elapsed());
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("the hook wrote its grandchild's pid")
        .trim()
        .parse()
        .unwrap();
    assert_process_ends(pid).await;
}

#[tokio::test]
async fn background_grandchild_does_not_make_the_run_hang() {
    // The grandchild inherits stdout/stderr and keeps them open for 1000 s; the hook itself
    // exits at once and must be reported as soon as its pipes are drained.
    let hook = sh_spec("sleep 1000 & echo $!", &[], LONG);
    // A hang would last the grandchild's 1000 s; a minute tells the two apart on any machine.
    let out = tokio::time::timeout(Duration::from_secs(60), run(&hook))
        .await
        .expect("run_command waited for the grandchild's pipes")
        .unwrap();
    let pid: i32 = out.output.trim().parse().unwrap();
    // Not ours to kill after a normal exit (it may be a daemon the hook started); clean up.
    kill_process(Pid::from_raw(pid).unwrap(), Signal::KILL).unwrap();
    assert_process_ends(pid).await;
}

#[tokio::test]
async fn shutdown_stops_a_running_hook_after_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pid.fifo");
    mkfifo(&fifo);
    let hook = sh_spec(r#"sleep 1000 & echo $! > "$1"; wait"#, &[&fifo], LONG);
    let shutdown = CancellationToken::new();
    let grace = Duration::from_millis(300);
    let task = {
        let (hook, shutdown) = (hook.clone(), shutdown.clone());
        tokio::spawn(async move {
            output(
                hooks::run_with_grace(
                    &hook,
                    Path::new("/tmp"),
                    &ChangedFiles::default(),
                    &shutdown,
                    grace,
                )
                .await,
            )
        })
    };
    let pid: i32 = read_fifo(&fifo).await.trim().parse().unwrap();
    let cancelled_at = std::time::Instant::now();
    shutdown.cancel();
    match task.await.unwrap() {
        Err(HookError::Stopped { hook }) => assert_eq!(hook, "sh-hook"),
        other => panic!("{other:?}"),
    }
    assert!(cancelled_at.elapsed() >= grace);
    assert_process_ends(pid).await;
}

#[tokio::test]
async fn hook_finishing_within_the_grace_keeps_its_result() {
    let dir = tempfile::tempdir().unwrap();
    let (ready, release) = (dir.path().join("ready"), dir.path().join("release"));
    mkfifo(&ready);
    mkfifo(&release);
    let hook = sh_spec(
        r#"echo ready > "$1"; read line < "$2"; echo "got $line"; exit 4"#,
        &[&ready, &release],
        LONG,
    );
    let shutdown = CancellationToken::new();
    let task = {
        let (hook, shutdown) = (hook.clone(), shutdown.clone());
        tokio::spawn(async move {
            run_command(
                &hook,
                Path::new("/tmp"),
                &ChangedFiles::default(),
                &shutdown,
            )
            .await
        })
    };
    assert_eq!(read_fifo(&ready).await, "ready\n");
    shutdown.cancel();
    let release2 = release.clone();
    tokio::task::spawn_blocking(move || std::fs::write(release2, "go\n"))
        .await
        .unwrap()
        .unwrap();
    match task.await.unwrap() {
        Err(HookError::Failed { status, output, .. }) => {
            assert_eq!(status, "exit status 4");
            assert_eq!(output, "got go\n");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn no_hook_starts_after_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let hook = sh_spec(r#"touch "$1""#, &[&marker], LONG);
    let shutdown = CancellationToken::new();
    shutdown.cancel();
    let result = run_command(
        &hook,
        Path::new("/tmp"),
        &ChangedFiles::default(),
        &shutdown,
    )
    .await;
    assert!(
        matches!(result, Err(HookError::Stopped { .. })),
        "{result:?}"
    );
    assert!(!marker.exists());
}

#[tokio::test]
async fn success_reports_status_and_duration() {
    let out = run(&spec(&["/bin/true"], LONG)).await.unwrap();
    assert_eq!(out.status_code, 0);
    assert_eq!(out.output, "");
    assert!(out.duration > Duration::ZERO && out.duration < LONG);
}

#[tokio::test]
async fn huge_timeout_does_not_overflow_the_clock() {
    let out = run(&spec(&["/bin/true"], Duration::MAX)).await.unwrap();
    assert_eq!(out.status_code, 0);
}

fn signal_hook(signal: HookSignal, pid_file: &Path) -> Hook {
    Hook {
        name: "signal-hook".into(),
        action: HookAction::Signal {
            signal,
            pid_file: pid_file.to_path_buf(),
        },
        timeout: LONG,
        instances: None,
    }
}

async fn send(hook: &Hook) -> Result<HookRun, HookError> {
    hooks::run(
        hook,
        Path::new("/tmp"),
        &ChangedFiles::default(),
        &CancellationToken::new(),
    )
    .await
}

#[tokio::test]
async fn every_signal_reaches_the_process_as_the_signal_of_its_name() {
    use tokio::io::{AsyncBufReadExt as _, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("app.pid");
    // A Python process is the oracle: it handles each signal by its own name and prints that
    // name. (A shell's traps were used before, twice reporting nothing for 30 s on a loaded
    // CI machine: dash can lose a signal that arrives while it forks its next command.)
    // Python runs a handler in its main thread as soon as `signal.pause()` is interrupted.
    let names: Vec<&str> = HookSignal::ALL
        .iter()
        .map(|s| s.name().strip_prefix("SIG").unwrap())
        .collect();
    let script = format!(
        r#"import os, signal, sys
def report(num, frame):
    print(signal.Signals(num).name[3:], flush=True)
for name in {names:?}:
    signal.signal(getattr(signal, "SIG" + name), report)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
print("ready", flush=True)
while True:
    signal.pause()
"#
    );
    let mut app = tokio::process::Command::new("python3")
        .args(["-c", &script])
        .arg(&pid_file)
        .stdout(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let app_pid = app.id().unwrap() as i32;
    let mut lines = BufReader::new(app.stdout.take().unwrap()).lines();
    let mut next_line = async || {
        tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("the application reported nothing")
            .unwrap()
            .expect("the application ended")
    };
    assert_eq!(next_line().await, "ready");
    for (signal, name) in HookSignal::ALL.into_iter().zip(&names) {
        match send(&signal_hook(signal, &pid_file)).await {
            Ok(HookRun::Signal { pid }) => assert_eq!(pid, app_pid),
            other => panic!("{signal}: {other:?}"),
        }
        assert_eq!(&next_line().await, name, "sent {signal}");
    }
    let group = Pid::from_raw(app_pid).unwrap();
    rustix::process::kill_process_group(group, Signal::KILL).unwrap();
    app.wait().await.unwrap();
}

#[tokio::test]
async fn a_pid_file_naming_no_process_certsync_may_signal_is_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("app.pid");
    let hook = signal_hook(HookSignal::Term, &pid_file);
    match send(&hook).await {
        Err(HookError::PidFile { hook, path, .. }) => {
            assert_eq!((hook.as_str(), path.as_path()), ("signal-hook", &*pid_file))
        }
        other => panic!("{other:?}"),
    }
    for (content, why) in [
        ("not a pid\n", "holds no pid"),
        ("1\n", "not a process certsync may signal"),
        ("0", "not a process certsync may signal"),
    ] {
        std::fs::write(&pid_file, content).unwrap();
        match send(&hook).await {
            Err(e @ HookError::PidFile { .. }) => {
                assert!(e.to_string().contains(why), "{content:?}: {e}")
            }
            other => panic!("{content:?}: {other:?}"),
        }
    }
    // Above any pid_max: no such process.
    std::fs::write(&pid_file, i32::MAX.to_string()).unwrap();
    match send(&hook).await {
        Err(e @ HookError::Signal { .. }) => {
            let HookError::Signal { signal, pid, .. } = &e else {
                unreachable!()
            };
            assert_eq!((*signal, *pid), (HookSignal::Term, i32::MAX));
            assert!(e.to_string().contains("cannot send SIGTERM"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

/// A pid file holding a negative number (which kill(2) would take as a process group) made
/// rustix's `Pid::from_raw` panic before certsync could refuse it.
#[tokio::test]
async fn a_negative_pid_in_the_pid_file_is_refused_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("app.pid");
    for content in ["-5", "-1\n", &i32::MIN.to_string()] {
        std::fs::write(&pid_file, content).unwrap();
        match send(&signal_hook(HookSignal::Hup, &pid_file)).await {
            Err(e @ HookError::PidFile { .. }) => assert!(
                e.to_string()
                    .contains("is not a process certsync may signal"),
                "{content:?}: {e}"
            ),
            other => panic!("{content:?}: {other:?}"),
        }
    }
}
