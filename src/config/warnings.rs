//! The warnings of SPEC 3: things a valid configuration allows but an operator should know
//! about. A secret file (or a config file holding a secret inline) readable by group or
//! others, a `trust.mode` that lets group or others write CA files, a `server.listen` on a
//! non-loopback address, and a hook's `pid_file` that a user other than certsync's own can
//! write (and so choose which process gets the signal).
//!
//! Owns: those checks, on a configuration that is already valid. Must not: fail a
//! configuration (a file that is missing is fine: another process may create it later, and a
//! file it cannot inspect is left to the step that uses it), read any file's content (only
//! its metadata), or put a secret in a message (paths, modes and uids only).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{Auth, Config, ENV_SECURITY_TOKEN, ENV_SK, Problem, SecretKey};
use crate::hooks::HookAction;

/// Permission bits that let group or others read.
const GROUP_OTHER_READ: u32 = 0o044;
/// Permission bits that let group or others write.
const GROUP_OTHER_WRITE: u32 = 0o022;
/// The sticky bit: in a folder, only a file's owner (or the folder's, or root) may remove or
/// rename it.
const STICKY: u32 = 0o1000;

/// Every warning of `config`, in file order (auth, trust, hooks, server). `euid` is the user
/// certsync runs as (the pid file checks compare owners with it).
pub(super) fn collect(config: &Config, euid: u32) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut warn = |key: String, message: String| out.push(Problem { key, message });

    // Secrets written into the config file itself, and files holding a secret, of every
    // account.
    let mut secret_files: Vec<(String, &Path)> = Vec::new();
    for account in &config.accounts {
        let at = account.auth_key();
        if let Auth::AkSk(a) = &account.auth {
            let inline_sk =
                matches!(a.secret_key, SecretKey::Inline(_)) && !a.from_env.contains(&ENV_SK);
            let inline_token =
                a.security_token.is_some() && !a.from_env.contains(&ENV_SECURITY_TOKEN);
            for (name, inline) in [("secret_key", inline_sk), ("security_token", inline_token)] {
                let key = format!("{at}.{name}");
                if inline && let Some(mode) = readable_by_group_or_others(&config.source) {
                    warn(
                        key.clone(),
                        format!(
                            "{} holds {key} inline and is readable by group or others (mode \
                             {mode:04o}); use secret_key_file or the environment, or chmod go-rwx \
                             the file",
                            config.source.display()
                        ),
                    );
                }
            }
        }
        match &account.auth {
            Auth::Token { token_file } => {
                secret_files.push((format!("{at}.token_file"), token_file))
            }
            Auth::AkSk(a) => {
                if let SecretKey::File(path) = &a.secret_key {
                    secret_files.push((format!("{at}.secret_key_file"), path));
                }
            }
            Auth::Password(p) => {
                secret_files.push((format!("{at}.password_file"), &p.password_file))
            }
            Auth::Metadata { .. } => {}
        }
    }
    if let Some(path) = &config.trust.pkcs12_password_file {
        secret_files.push(("trust.pkcs12_password_file".to_string(), path));
    }
    for (key, path) in secret_files {
        if let Some(mode) = readable_by_group_or_others(path) {
            warn(
                key,
                format!(
                    "{} holds a secret and is readable by group or others (mode {mode:04o}); \
                     chmod go-rwx it",
                    path.display()
                ),
            );
        }
    }

    let mode = config.trust.mode;
    if mode & GROUP_OTHER_WRITE != 0 {
        warn(
            "trust.mode".into(),
            format!(
                "\"{mode:04o}\" (in {}) lets group or others write the CA files in {}, and \
                 whoever can change a CA file decides whom its readers trust; use \"0644\"",
                config.source.display(),
                config.trust.dir.display()
            ),
        );
    }

    for (i, hook) in config.hooks.iter().enumerate() {
        if let HookAction::Signal { signal, pid_file } = &hook.action {
            let reasons = pid_file_writers(pid_file, euid);
            if !reasons.is_empty() {
                warn(
                    format!("hook[{i}].pid_file"),
                    format!(
                        "{}: {}; a user other than certsync's own (uid {euid}) could choose \
                         which process gets {signal}",
                        pid_file.display(),
                        reasons.join("; ")
                    ),
                );
            }
        }
    }

    if let Some(listen) = config.server.listen
        && !listen.ip().to_canonical().is_loopback()
    {
        warn(
            "server.listen".into(),
            format!(
                "{listen} (in {}) is not a loopback address: /metrics, /healthz, /readyz and \
                 /status (instance names, ids and errors) are open to every host that can \
                 reach it; use 127.0.0.1 or [::1] unless they must be reached from elsewhere",
                config.source.display()
            ),
        );
    }
    out
}

/// The permission bits of `path` when group or others may read it; `None` when they may not
/// or it cannot be inspected (missing: it may be created later).
fn readable_by_group_or_others(path: &Path) -> Option<u32> {
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o7777;
    (mode & GROUP_OTHER_READ != 0).then_some(mode)
}

/// Why users other than `euid` (and root) can write the pid file, or put another in its place:
/// the file writable by group or others or owned by another user, or its folder (the one it
/// is named in, and the real one if it is a symlink) owned by another user, or writable by
/// group or others without the sticky bit, or with it while the file does not exist yet.
fn pid_file_writers(path: &Path, euid: u32) -> Vec<String> {
    let foreign = |uid: u32| uid != euid && uid != 0;
    let mut reasons = Vec::new();
    let file = std::fs::metadata(path);
    let missing = matches!(&file, Err(e) if e.kind() == std::io::ErrorKind::NotFound);
    if let Ok(meta) = &file {
        let mode = meta.mode() & 0o7777;
        if mode & GROUP_OTHER_WRITE != 0 {
            reasons.push(format!(
                "it is writable by group or others (mode {mode:04o})"
            ));
        }
        if foreign(meta.uid()) {
            reasons.push(format!(
                "it is owned by uid {}, neither certsync's user nor root",
                meta.uid()
            ));
        }
    }

    let mut folders: Vec<PathBuf> = path.parent().map(Path::to_path_buf).into_iter().collect();
    if let Ok(real) = std::fs::canonicalize(path)
        && let Some(parent) = real.parent()
        && !folders.iter().any(|f| f == parent)
    {
        folders.push(parent.to_path_buf());
    }
    for folder in folders {
        let Ok(meta) = std::fs::metadata(&folder) else {
            continue;
        };
        let mode = meta.mode() & 0o7777;
        if foreign(meta.uid()) {
            reasons.push(format!(
                "its folder {} is owned by uid {}, who can replace it",
                folder.display(),
                meta.uid()
            ));
        } else if mode & GROUP_OTHER_WRITE != 0 && mode & STICKY == 0 {
            reasons.push(format!(
                "its folder {} is writable by group or others (mode {mode:04o}) without the \
                 sticky bit, so they can replace it",
                folder.display()
            ));
        } else if mode & GROUP_OTHER_WRITE != 0 && missing {
            reasons.push(format!(
                "it does not exist yet and its folder {} is writable by group or others (mode \
                 {mode:04o}), so they can create it first",
                folder.display()
            ));
        }
    }
    reasons
}
