//! One module per section of the file: its keys (the schema), its typed values, its defaults,
//! its rules and its unit tests. Each `read` is part of the pure pass: it looks at the parsed
//! TOML only, and hands every check that needs the file system to the [`FsChecks`] it is
//! given (run by `fs` afterwards).
//!
//! This module holds the value rules several sections share. Must not: read a file, look at
//! the environment other than through the lookup it is given, or echo a value that may be a
//! secret.

pub(super) mod account;
pub(super) mod auth;
pub(super) mod cloud;
pub(super) mod discover;
pub(super) mod fleet;
pub(super) mod hook;
pub(super) mod instance;
pub(super) mod log;
pub(super) mod server;
pub(super) mod sync;
pub(super) mod trust;
pub(super) mod verify;

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::reader::{Problems, Section, quote, show};
use crate::names;

/// A path relative to the config file's folder, made absolute and normalised (lexically: no
/// file is looked at).
pub(super) fn path_value(
    p: &mut Problems,
    sec: &Section<'_>,
    key: &str,
    base: &Path,
) -> Option<PathBuf> {
    let s = sec.string(p, key)?;
    if s.is_empty() {
        p.push(sec.key(key), "must not be empty (got \"\")");
        return None;
    }
    Some(names::normalize(&base.join(s)))
}

/// `account`: the name of an account that exists (`known`, in file order), else
/// [`account::DEFAULT_ACCOUNT`]. `None` (a problem recorded) when it names no account, or when
/// it is left out and there is no account `default`.
pub(super) fn account_key(p: &mut Problems, sec: &Section<'_>, known: &[&str]) -> Option<String> {
    let listed = || {
        if known.is_empty() {
            "none is configured".to_string()
        } else {
            let names: Vec<String> = known.iter().map(|n| quote(n)).collect();
            format!("the accounts are {}", names.join(", "))
        }
    };
    match sec.string(p, "account") {
        Some(name) if known.contains(&name) => Some(name.to_string()),
        Some(name) => {
            p.push(
                sec.key("account"),
                format!("{} names no account ({})", quote(name), listed()),
            );
            None
        }
        None if sec.has("account") => None,
        None if known.contains(&account::DEFAULT_ACCOUNT) => {
            Some(account::DEFAULT_ACCOUNT.to_string())
        }
        None => {
            p.push(
                sec.key("account"),
                format!(
                    "is required: there is no account \"default\" ([cloud] and [auth]) ({})",
                    listed()
                ),
            );
            None
        }
    }
}

/// A duration that must be above zero.
pub(super) fn positive_duration(
    p: &mut Problems,
    sec: &Section<'_>,
    key: &str,
) -> Option<Duration> {
    let d = sec.duration(p, key)?;
    if d.is_zero() {
        p.push(
            sec.key(key),
            format!("must be longer than zero, got {}", show_raw(sec, key)),
        );
        return None;
    }
    Some(d)
}

/// The value of `key` as written, for a message ("" when absent).
pub(super) fn show_raw(sec: &Section<'_>, key: &str) -> String {
    sec.raw(key).map(show).unwrap_or_default()
}

/// A string that must not be empty; echoed in messages (not a secret).
pub(super) fn non_empty(p: &mut Problems, sec: &Section<'_>, key: &str) -> Option<String> {
    match sec.string(p, key)? {
        "" => {
            p.push(sec.key(key), "must not be empty (got \"\")");
            None
        }
        s => Some(s.to_string()),
    }
}

/// A string key with a fixed set of values; `default` when absent or bad.
pub(super) fn choice<T: Copy, const N: usize>(
    p: &mut Problems,
    sec: &Section<'_>,
    key: &str,
    values: [(&str, T); N],
    default: T,
) -> T {
    match sec.string(p, key) {
        None => default,
        Some(v) => match values.iter().find(|(name, _)| *name == v) {
            Some((_, value)) => *value,
            None => {
                let names: Vec<String> = values.iter().map(|(n, _)| format!("\"{n}\"")).collect();
                p.push(
                    sec.key(key),
                    format!(
                        "unknown value {} (expected {})",
                        quote(v),
                        names.join(" or ")
                    ),
                );
                default
            }
        },
    }
}

/// Test helpers shared by the sections' unit tests: a table from TOML text, and a walk of
/// one section that returns its value, problems and deferred checks.
/// A service's URL (`cloud.endpoint`, `auth.metadata_endpoint`): one of `schemes` (else
/// `scheme_rule` is the problem), a host, no credentials (the value is then not echoed), no
/// query or fragment.
pub(super) fn service_url(
    p: &mut Problems,
    key: &str,
    s: &str,
    schemes: &[&str],
    scheme_rule: &str,
) -> Option<url::Url> {
    let url = match url::Url::parse(s) {
        Ok(u) => u,
        Err(e) => {
            p.push(key, format!("{} is not a URL: {e}", quote(s)));
            return None;
        }
    };
    let problem = if !schemes.contains(&url.scheme()) {
        Some(scheme_rule)
    } else if url.host_str().is_none_or(str::is_empty) {
        Some("has no host")
    } else if !url.username().is_empty() || url.password().is_some() {
        p.push(key, "must not hold credentials (value not shown)");
        return None;
    } else if url.query().is_some() {
        Some("must not have a query (?...)")
    } else if url.fragment().is_some() {
        Some("must not have a fragment (#...)")
    } else {
        None
    };
    match problem {
        Some(why) => {
            p.push(key, format!("{} {why}", quote(s)));
            None
        }
        None => Some(url),
    }
}

#[cfg(test)]
pub(super) mod testing {
    use toml::Table;

    use crate::config::Problem;
    use crate::config::fs::FsChecks;
    use crate::config::reader::Problems;

    /// `text` parsed as a TOML table (the section's body).
    pub(crate) fn table(text: &str) -> Table {
        text.parse().expect("test TOML parses")
    }

    /// Runs `read` with fresh problem and check lists.
    pub(crate) fn walk<T>(
        read: impl FnOnce(&mut Problems, &mut FsChecks) -> T,
    ) -> (T, Vec<Problem>, FsChecks) {
        let mut p = Problems::default();
        let mut fs = FsChecks::default();
        let value = read(&mut p, &mut fs);
        (value, p.0, fs)
    }

    /// The keys of `problems`, in order.
    pub(crate) fn keys(problems: &[Problem]) -> Vec<&str> {
        problems.iter().map(|p| p.key.as_str()).collect()
    }
}
