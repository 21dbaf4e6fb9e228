//! Talking to systemd (SPEC 9): readiness, status, reload and stop notices, and the watchdog.
//!
//! Owns: the `sd_notify` messages. Every function is a no-op when `NOTIFY_SOCKET` is unset, so
//! certsync behaves the same outside systemd. It decides nothing about when to send them; the
//! daemon loop does; the watchdog task only pings while the loop reports progress.

use std::time::Duration;

use sd_notify::NotifyState;

/// Sends `states`, logging (not failing) when the socket refuses them.
///
/// Written here rather than with `sd_notify::notify`, which sends on a blocking socket: a
/// notify socket whose reader stalls (its queue holds about ten datagrams) would then freeze
/// the loop at its next status line, passes, signals and all. This send never blocks: a
/// message that does not fit now is dropped with a warning (the next status or watchdog ping
/// supersedes it). A change of state (`READY=1`, `RELOADING=1`, `STOPPING=1`), which nothing
/// supersedes and which systemd waits for, is tried for up to about a second first.
/// `NOTIFY_SOCKET` may name a path or, with a leading `@`, an abstract socket.
fn send(states: &[NotifyState]) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let mut message = String::new();
    for state in states {
        message.push_str(&state.to_string());
        message.push('\n');
    }
    let changes_state = states.iter().any(|s| {
        matches!(
            s,
            NotifyState::Ready | NotifyState::Reloading | NotifyState::Stopping
        )
    });
    let mut tries = if changes_state { STATE_TRIES } else { 1 };
    let mut sent = send_to(&path, message.as_bytes());
    while tries > 1
        && sent
            .as_ref()
            .is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock)
    {
        tries -= 1;
        std::thread::sleep(STATE_RETRY_EVERY);
        sent = send_to(&path, message.as_bytes());
    }
    if let Err(e) = sent {
        let error = if e.kind() == std::io::ErrorKind::WouldBlock {
            "its queue is full (is the service manager reading it?); the message is dropped"
                .to_string()
        } else {
            e.to_string()
        };
        tracing::warn!(error = %error, "cannot notify systemd: {error}");
    }
}

/// How often a change of state is tried while the socket's queue is full, and how long apart.
const STATE_TRIES: u32 = 50;
const STATE_RETRY_EVERY: Duration = Duration::from_millis(20);

fn send_to(path: &std::ffi::OsStr, message: &[u8]) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let socket = UnixDatagram::unbound()?;
    socket.set_nonblocking(true)?;
    let bytes = path.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(path)?,
    };
    let sent = socket.send_to_addr(message, &addr)?;
    if sent == message.len() {
        Ok(())
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            "incomplete write",
        ))
    }
}

/// `READY=1` with a status line.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// `STATUS=...`.
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// `RELOADING=1` (with `MONOTONIC_USEC`, which newer systemd versions require).
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// `STOPPING=1`.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// `WATCHDOG=1`.
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// Half the watchdog period systemd asked for (`WATCHDOG_USEC`, for this pid), if any.
pub fn watchdog_interval() -> Option<Duration> {
    std::env::var_os("NOTIFY_SOCKET")?;
    sd_notify::watchdog_enabled().map(|d| d / 2)
}

/// Feeds systemd's watchdog every `every` while the scheduler shows progress within two
/// periods (`shared`'s heartbeat): a dead or stuck loop stops the pings, so systemd restarts
/// certsync. Ends with `stop`, or once the scheduler is gone.
pub fn spawn_watchdog(
    every: Duration,
    shared: std::sync::Arc<crate::status::Shared>,
    stop: tokio_util::sync::CancellationToken,
) {
    use std::sync::atomic::Ordering;
    tokio::spawn(async move {
        loop {
            if shared.healthy(every.saturating_mul(2)) {
                watchdog();
            } else if !shared.alive.load(Ordering::Relaxed) {
                break;
            } else {
                tracing::error!(stuck_for = ?shared.heartbeat_age(), "the scheduler makes no progress; not feeding the watchdog");
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.cancelled() => break,
            }
        }
    });
}
