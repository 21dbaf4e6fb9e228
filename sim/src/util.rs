//! Small helpers the simulator's modules share: random identifiers and a lock that survives a
//! panic of its holder.
//!
//! A leaf: it imports nothing of the simulator, so any module may use it without tying itself
//! to another (`creds` and `state` both did, to each other, before this module existed).

use std::sync::{Mutex, MutexGuard};

/// `bytes` random bytes as lower-case hex.
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    fastrand::fill(&mut buf);
    hex::encode(buf)
}

/// Locks `mutex`, taking a poisoned one as it is: every update of the simulator's shared state
/// is a single assignment or map operation, so a holder that panicked left consistent data, and
/// a test double must go on answering.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
