//! Talking to systemd (SPEC 9): readiness, status, reload and stop notices, and the watchdog.
//!
//! Owns: the `sd_notify` messages. Every function is a no-op when `NOTIFY_SOCKET` is unset, so
//! certsync behaves the same outside systemd. It decides nothing about when to send them; the
//! daemon loop does.

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
