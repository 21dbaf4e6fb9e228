//! Talking to systemd (SPEC 9): readiness, status, reload and stop notices, and the watchdog.
//!
//! Owns: the `sd_notify` messages. Every function is a no-op when `NOTIFY_SOCKET` is unset, so
//! certsync behaves the same outside systemd. It decides nothing about when to send them; the
//! daemon loop does; the watchdog task only pings while the loop reports progress.

use std::time::Duration;

use sd_notify::NotifyState;

/// Sends `states`, logging (not failing) when the socket refuses them.
fn send(states: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
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
