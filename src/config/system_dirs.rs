//! The folders `trust.dir` may never be (SPEC 3): the root and the system's CA folders, as
//! a lexical test of one path.
//!
//! Owns: the list of those folders and the message for a `trust.dir` among them. Must not:
//! read the file system. A leaf of the config: the `[trust]` section asks it of the path as
//! written, the fs pass again with its symlinks followed.

use std::path::{Path, PathBuf};

/// Folders that `trust.dir` may never be: the root (every file of the system would be in it).
pub const FORBIDDEN_TRUST_DIRS: &[&str] = &["/"];
/// Folders the system's CA tooling owns (`update-ca-certificates`, `update-ca-trust`, their
/// packages): `trust.dir` may be none of them and lie inside none (SPEC 3), so certsync never
/// writes, replaces or prunes a file that tooling manages.
pub const SYSTEM_CA_DIRS: &[&str] = &[
    "/etc/ssl/certs",
    "/etc/pki",
    "/usr/share/ca-certificates",
    "/usr/local/share/ca-certificates",
    "/etc/ca-certificates",
];
/// Why `trust.dir` may not be a folder.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Forbidden {
    /// It is the root.
    Root,
    /// It is, or lies inside, `owned`, one of [`SYSTEM_CA_DIRS`]; `resolved` is the path
    /// that showed it.
    SystemCa {
        resolved: PathBuf,
        owned: &'static str,
    },
}

/// Whether `dir` (absolute, lexically normalised) is, as written, the root, or one of
/// [`SYSTEM_CA_DIRS`] or a folder inside one. The fs pass asks again with its symlinks
/// followed.
pub(super) fn forbidden_dir(dir: &Path) -> Option<Forbidden> {
    if FORBIDDEN_TRUST_DIRS.iter().any(|f| dir == Path::new(f)) {
        return Some(Forbidden::Root);
    }
    // `starts_with` compares whole components: /etc/pkix is not inside /etc/pki.
    SYSTEM_CA_DIRS
        .iter()
        .find(|owned| dir.starts_with(owned))
        .map(|owned| Forbidden::SystemCa {
            resolved: dir.to_path_buf(),
            owned,
        })
}

/// The problem of a forbidden `trust.dir` written as `shown`.
pub(super) fn forbidden_message(shown: &str, forbidden: &Forbidden) -> String {
    match forbidden {
        Forbidden::Root => format!(
            "{shown} resolves to /, the root, which certsync must not manage; choose a folder \
             of its own"
        ),
        Forbidden::SystemCa { resolved, owned } => format!(
            "{shown} resolves to {}, which is or lies inside {owned}, a folder the system's CA \
             tooling owns (update-ca-certificates, update-ca-trust); certsync would overwrite \
             or prune what it manages there: choose a folder of its own",
            resolved.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_dirs_are_found_lexically() {
        assert_eq!(forbidden_dir(Path::new("/")), Some(Forbidden::Root));
        for (dir, owned) in [
            ("/etc/ssl/certs", "/etc/ssl/certs"),
            ("/etc/pki/tls/certs", "/etc/pki"),
            (
                "/usr/local/share/ca-certificates/x",
                "/usr/local/share/ca-certificates",
            ),
        ] {
            assert_eq!(
                forbidden_dir(Path::new(dir)),
                Some(Forbidden::SystemCa {
                    resolved: dir.into(),
                    owned
                })
            );
        }
        assert_eq!(forbidden_dir(Path::new("/var/lib/certsync/trust")), None);
        assert_eq!(forbidden_dir(Path::new("/etc/pkix")), None);
    }
}
