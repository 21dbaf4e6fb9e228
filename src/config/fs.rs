//! The file-system pass: the checks of SPEC 3 that must look at files, run after the pure
//! pass (`resolve::pure`, which touches no file) on what it found.
//!
//! Owns: reading `cloud.ca_file` once (through `ca_file`, its one parser) and keeping its
//! certificates in the configuration, looking `trust.owner` /
//! `trust.group` names up in `/etc/passwd` and `/etc/group` (through `accounts`), following
//! the symlinks of `trust.dir` to find whether it leads into `/` or a system CA folder, and,
//! on a configuration without problems, the warnings of `warnings.rs` (the config file's own
//! mode among them). Each problem found here is put where the pure pass would have met it,
//! so a file's problems keep the order of its sections.
//! Must not: read a credential file (`token_file`, `secret_key_file`, `password_file` and the
//! truststore's password are only named by the config), write anything, or put a secret in a
//! message.

use std::path::{Path, PathBuf};

use rustls_pki_types::CertificateDer;

use super::reader::Problems;
use super::system_dirs::{forbidden_dir, forbidden_message};
use super::{Config, Problem, accounts};

/// A check the pure pass could not make without the file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum FsCheck {
    /// `cloud.ca_file` must be readable and hold at least one PEM certificate; its
    /// certificates become `cloud.ca_certs`.
    CaFile {
        /// `cloud.ca_file`.
        key: String,
        /// The value as written, for messages.
        shown: String,
        /// The file (absolute).
        path: PathBuf,
    },
    /// `trust.dir`, once its symlinks are followed, must not be `/` nor in a system CA folder
    /// (the lexical rules were checked by the pure pass).
    TrustDir {
        /// `trust.dir`.
        key: String,
        /// The value as written, for messages.
        shown: String,
        /// The folder (absolute, lexically normalised).
        path: PathBuf,
    },
    /// `trust.owner` or `trust.group` given by name: its id comes from the account database.
    Account {
        /// `trust.owner` or `trust.group`.
        key: String,
        /// The value as written, for messages.
        shown: String,
        /// The name to look up.
        name: String,
        /// Which database, and so which of the store's ids it sets.
        db: AccountDb,
    },
}

/// The account databases `trust.owner` and `trust.group` are looked up in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AccountDb {
    /// `/etc/passwd`, for `trust.owner`.
    User,
    /// `/etc/group`, for `trust.group`.
    Group,
}

impl AccountDb {
    fn file(self) -> &'static str {
        match self {
            AccountDb::User => accounts::PASSWD_FILE,
            AccountDb::Group => accounts::GROUP_FILE,
        }
    }

    fn what(self) -> &'static str {
        match self {
            AccountDb::User => "user",
            AccountDb::Group => "group",
        }
    }
}

/// The checks the pure pass deferred, each with the number of problems it had found by then
/// (where a problem of the check goes in the file's list).
#[derive(Debug, Default)]
pub(super) struct FsChecks(pub(super) Vec<(usize, FsCheck)>);

impl FsChecks {
    /// Defers `check`, placed after the problems `p` holds now.
    pub(super) fn defer(&mut self, p: &Problems, check: FsCheck) {
        self.0.push((p.len(), check));
    }
}

/// What the pure pass produced: the configuration (only when it found no problem; its
/// accounts given by name have no id yet), its problems, and the checks left to this pass.
pub(super) struct Pure {
    pub(super) config: Option<Config>,
    pub(super) problems: Vec<Problem>,
    pub(super) checks: FsChecks,
}

/// Runs the deferred checks, then, when nothing is wrong, fills in the accounts' ids and
/// collects the warnings. `euid` is the user certsync runs as (the pid file warning compares
/// owners with it).
pub(super) fn pass(pure: Pure, euid: u32) -> Result<Config, Vec<Problem>> {
    let mut found = Vec::new();
    let (mut owner, mut group) = (None, None);
    // Each account's roots, by the key of its ca_file.
    let mut ca_certs = std::collections::HashMap::new();
    for (at, check) in pure.checks.0 {
        match run(&check) {
            Err(message) => {
                let key = match check {
                    FsCheck::CaFile { key, .. }
                    | FsCheck::TrustDir { key, .. }
                    | FsCheck::Account { key, .. } => key,
                };
                found.push((at, Problem { key, message }));
            }
            Ok(Found::Id(id)) => match check {
                FsCheck::Account {
                    db: AccountDb::User,
                    ..
                } => owner = Some(id),
                FsCheck::Account {
                    db: AccountDb::Group,
                    ..
                } => group = Some(id),
                FsCheck::CaFile { .. } | FsCheck::TrustDir { .. } => {}
            },
            Ok(Found::Roots(certs)) => {
                if let FsCheck::CaFile { key, .. } = check {
                    ca_certs.insert(key, certs);
                }
            }
            Ok(Found::Nothing) => {}
        }
    }
    let mut problems = merge(pure.problems, found);
    match pure.config {
        Some(mut config) if problems.is_empty() => {
            config.trust.store.owner = owner.or(config.trust.store.owner);
            config.trust.store.group = group.or(config.trust.store.group);
            for account in &mut config.accounts {
                let key = format!("{}.ca_file", account.key);
                account.cloud.ca_certs = ca_certs.remove(&key).unwrap_or_default();
            }
            config.warnings = super::warnings::collect(&config, euid);
            Ok(config)
        }
        _ => {
            // Every path to a missing section recorded a problem; this guards the invariant.
            if problems.is_empty() {
                problems.push(Problem {
                    key: String::new(),
                    message: "configuration incomplete".into(),
                });
            }
            Err(problems)
        }
    }
}

/// What a check that passed found.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    /// Nothing to keep (`trust.dir`).
    Nothing,
    /// An account's id.
    Id(u32),
    /// The certificates of `cloud.ca_file`.
    Roots(Vec<CertificateDer<'static>>),
}

/// One check: `Err` with the message of its problem, else what it found.
fn run(check: &FsCheck) -> Result<Found, String> {
    match check {
        FsCheck::CaFile { shown, path, .. } => match super::ca_file::read_ca_file(path) {
            Ok(certs) => Ok(Found::Roots(certs)),
            Err(e) => Err(format!(
                "{shown} ({}): {}",
                path.display(),
                crate::text::error_chain(&e)
            )),
        },
        FsCheck::TrustDir { shown, path, .. } => {
            // Past the symlink limit (a loop) the store could not open the folder either; the
            // lexical check already passed, so there is nothing more to refuse here.
            match follow_symlinks(path).as_deref().and_then(forbidden_dir) {
                Some(forbidden) => Err(forbidden_message(shown, &forbidden)),
                None => Ok(Found::Nothing),
            }
        }
        FsCheck::Account {
            shown, name, db, ..
        } => {
            let (file, what) = (db.file(), db.what());
            match accounts::lookup(Path::new(file), name) {
                Ok(Some(id)) => Ok(Found::Id(id)),
                Ok(None) => Err(format!(
                    "no {what} named {shown} in {file} (a {what} known only to NSS, such as \
                     LDAP, must be given by number)"
                )),
                Err(why) => Err(format!("{shown}: {why}")),
            }
        }
    }
}

/// The pure pass's problems with the file-system ones put back where each was deferred.
fn merge(pure: Vec<Problem>, found: Vec<(usize, Problem)>) -> Vec<Problem> {
    let mut out = Vec::with_capacity(pure.len() + found.len());
    let mut found = found.into_iter().peekable();
    for (i, problem) in pure.into_iter().enumerate() {
        while let Some((_, f)) = found.next_if(|(at, _)| *at <= i) {
            out.push(f);
        }
        out.push(problem);
    }
    out.extend(found.map(|(_, f)| f));
    out
}

/// Most symlinks followed in one path before giving up (the kernel's limit, `ELOOP`).
const MAX_SYMLINKS: usize = 40;

/// `path` (absolute) with every symlink among its existing components followed, as the
/// kernel would follow them when the store opens or creates the folder; components that do
/// not exist are kept as written. `fs::canonicalize` is not enough: it fails for a folder
/// that does not exist yet, even when an existing parent is a symlink into a system folder.
/// `None` after [`MAX_SYMLINKS`] links (a loop).
fn follow_symlinks(path: &Path) -> Option<PathBuf> {
    use std::ffi::OsString;
    use std::path::Component;
    // Components still to walk, the next one last.
    let mut todo: Vec<OsString> = Vec::new();
    let push = |todo: &mut Vec<OsString>, p: &Path| {
        for c in p.components().rev() {
            match c {
                Component::Normal(name) => todo.push(name.to_os_string()),
                Component::ParentDir => todo.push("..".into()),
                Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            }
        }
    };
    push(&mut todo, path);
    let mut out = PathBuf::from("/");
    let mut links = 0;
    while let Some(name) = todo.pop() {
        if name == ".." {
            // `out` holds no symlink, so its parent is the real parent.
            out.pop();
            continue;
        }
        let next = out.join(&name);
        match std::fs::symlink_metadata(&next) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return None;
                }
                let target = std::fs::read_link(&next).ok()?;
                if target.is_absolute() {
                    out = PathBuf::from("/");
                }
                push(&mut todo, &target);
            }
            _ => out = next,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(key: &str) -> Problem {
        Problem {
            key: key.into(),
            message: String::new(),
        }
    }

    #[test]
    fn found_problems_go_back_where_they_were_deferred() {
        let pure = vec![problem("a"), problem("b"), problem("c")];
        let found = vec![
            (0, problem("first")),
            (2, problem("x")),
            (2, problem("y")),
            (3, problem("last")),
        ];
        let keys: Vec<String> = merge(pure, found).into_iter().map(|p| p.key).collect();
        assert_eq!(keys, ["first", "a", "b", "x", "y", "c", "last"]);
        assert!(merge(Vec::new(), Vec::new()).is_empty());
    }

    #[test]
    fn symlinks_are_followed_into_folders_that_do_not_exist_yet() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().canonicalize().unwrap();
        std::fs::create_dir(real.join("a")).unwrap();
        std::os::unix::fs::symlink("a", real.join("rel")).unwrap();
        std::os::unix::fs::symlink("/nowhere/x", real.join("abs")).unwrap();
        std::os::unix::fs::symlink("loop", real.join("loop")).unwrap();
        assert_eq!(
            follow_symlinks(&real.join("rel/new/deeper")),
            Some(real.join("a/new/deeper"))
        );
        assert_eq!(
            follow_symlinks(&real.join("abs/y")),
            Some(PathBuf::from("/nowhere/x/y"))
        );
        assert_eq!(follow_symlinks(&real.join("loop/z")), None);
    }

    #[test]
    fn each_check_reads_what_it_names() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["roots.test".to_string()]).unwrap();
        let good = tmp.path().join("ca.pem");
        std::fs::write(&good, ca.cert.pem()).unwrap();
        let junk = tmp.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let ca_file = |path: &Path| FsCheck::CaFile {
            key: "cloud.ca_file".into(),
            shown: "\"ca.pem\"".into(),
            path: path.to_path_buf(),
        };
        assert_eq!(
            run(&ca_file(&good)),
            Ok(Found::Roots(vec![ca.cert.der().clone()]))
        );
        let no_pem = run(&ca_file(&junk)).unwrap_err();
        assert!(no_pem.contains("holds no PEM certificate"), "{no_pem}");
        let missing = run(&ca_file(&tmp.path().join("none"))).unwrap_err();
        assert!(missing.contains("cannot read"), "{missing}");

        let link = tmp.path().join("certs");
        std::os::unix::fs::symlink("/etc/ssl/certs", &link).unwrap();
        let refused = run(&FsCheck::TrustDir {
            key: "trust.dir".into(),
            shown: "\"certs/x\"".into(),
            path: link.join("x"),
        })
        .unwrap_err();
        assert!(refused.contains("system's CA tooling"), "{refused}");

        let root = FsCheck::Account {
            key: "trust.owner".into(),
            shown: "\"root\"".into(),
            name: "root".into(),
            db: AccountDb::User,
        };
        assert_eq!(run(&root), Ok(Found::Id(0)));
    }
}
