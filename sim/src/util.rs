//! Small helpers the simulator's modules share: random identifiers, tokens and keys, and a lock
//! that survives a panic of its holder.
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

/// A random token shaped like an IAM token (they start with `MII`).
pub(crate) fn random_token() -> String {
    format!("MIIsim{}", random_hex(48))
}

/// `len` random characters of `A-Z0-9`, the alphabet of Huawei access keys.
pub(crate) fn random_upper(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..len)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect()
}

/// `len` random characters of `A-Za-z0-9`, the alphabet of Huawei secret keys.
pub(crate) fn random_alnum(len: usize) -> String {
    (0..len).map(|_| fastrand::alphanumeric()).collect()
}

/// A fresh permanent access key: 20 characters of `A-Z0-9`, like the console's.
pub(crate) fn random_ak() -> String {
    random_upper(20)
}

/// A fresh secret key: 40 characters of `A-Za-z0-9`, like the console's.
pub(crate) fn random_sk() -> String {
    random_alnum(40)
}

/// Locks `mutex`, taking a poisoned one as it is: every update of the simulator's shared state
/// is a single assignment or map operation, so a holder that panicked left consistent data, and
/// a test double must go on answering.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_the_consoles_shape() {
        let ak = random_ak();
        assert_eq!(ak.len(), 20);
        assert!(
            ak.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        );
        let sk = random_sk();
        assert_eq!(sk.len(), 40);
        assert!(sk.bytes().all(|b| b.is_ascii_alphanumeric()));
    }
}
