//! `[trust]`: the folder certsync writes (SPEC 3, 7).
//!
//! Owns: the section's keys and rules, and the config-only part of the folder: the
//! `file_name` template and the names `owner` / `group` were given by. Everything else is the
//! store's own options type, [`StoreOptions`], built here from the file with the store's
//! defaults ([`StoreOptions::new`]): no value or default of the store is written twice. Also
//! the lexical half of the `trust.dir` rule (the half that follows symlinks is the fs pass's).
//! The rules that tie `file_name` to the instances are cross-checks, in `resolve`.
//! Must not: read a file, or look an account name up (the fs pass does both).

use std::fmt;
use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::super::accounts;
use super::super::fs::{AccountDb, FsCheck, FsChecks};
use super::super::keys::{SectionKind, SectionSchema};
use super::super::reader::{Problems, Section, expected, quote, show};
use super::super::system_dirs::{forbidden_dir, forbidden_message};
use super::instance::Instance;
use super::{choice, path_value, show_raw};
use crate::names;
use crate::store::{Layout, StoreOptions, WriteMode};

/// The keys of `[trust]`.
pub(in crate::config) const SCHEMA: SectionSchema = SectionSchema {
    name: "trust",
    kind: SectionKind::Table,
    keys: &[
        "dir",
        "file_name",
        "mode",
        "owner",
        "group",
        "bundle",
        "capath",
        "prune",
        "write_mode",
        "layout",
        "pkcs12",
        "pkcs12_password_file",
    ],
    variants: &[],
};

/// `trust.file_name` when left out.
pub const DEFAULT_FILE_NAME: &str = "{name}-{category}.crt";
/// The largest `trust.mode` accepted: permission bits only, no setuid/setgid/sticky.
pub const MAX_MODE: u32 = 0o777;
/// The category used to render the file name of an instance without a `categories` filter when
/// checking that no two instances share a file (the only category the API documents today).
pub const PROBE_CATEGORY: &str = "international";

/// `[trust]`: the store's options, and what only the config needs.
///
/// It dereferences to its [`StoreOptions`], so `config.trust.dir` and the other fields of the
/// folder read as they always did while the store's type holds the only copy of each value.
#[derive(Debug, Clone)]
pub struct Trust {
    /// The store's options: `dir` (absolute, lexically normalised; never `/`, nor one of
    /// [`SYSTEM_CA_DIRS`] or inside one, lexically or with its symlinks followed), `mode`,
    /// `bundle`, `capath`, `prune`, `owner`, `group`, `write_mode`, `layout`, `pkcs12`,
    /// `pkcs12_password_file` (only named, never read: it is a secret, read by the store at
    /// each pass), and `sync.rotation_overlap` and `sync.rotation_overlap_max`.
    pub store: StoreOptions,
    /// Template with `{name}`, `{id}`, `{category}`; see [`Trust::file_name_for`].
    pub file_name: String,
    /// The name `trust.owner` was given by, when it was a name (the uid is `store.owner`).
    pub owner_name: Option<String>,
    /// The name `trust.group` was given by, when it was a name (the gid is `store.group`).
    pub group_name: Option<String>,
}

impl std::ops::Deref for Trust {
    type Target = StoreOptions;

    fn deref(&self) -> &StoreOptions {
        &self.store
    }
}

/// A user or group of `trust.owner` / `trust.group`, for messages and `check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The uid or gid.
    pub id: u32,
    /// The name it was given by in the file, if it was a name.
    pub name: Option<String>,
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "{name} ({})", self.id),
            None => write!(f, "{}", self.id),
        }
    }
}

impl Trust {
    /// The file name of `inst`'s CAs of `category`. The template is expanded in one pass.
    ///
    /// Categories from the configuration are checked; a category that only the API names
    /// (an instance without a filter) is not, so check the result with
    /// [`Trust::file_name_problem`] before writing.
    pub fn file_name_for(&self, inst: &Instance, category: &str) -> String {
        names::render_template(&self.file_name, inst.display_name(), &inst.id, category)
    }

    /// Why `name` may not be written into the trust folder as an instance file, if it may not:
    /// not a plain visible file name, or the manifest's, the bundle's, the truststore's or a
    /// hash file's name.
    pub fn file_name_problem(&self, name: &str) -> Option<String> {
        if self.store.pkcs12.as_deref() == Some(name) {
            return Some("is the truststore's name (trust.pkcs12)".into());
        }
        names::file_name_problem(name, self.store.bundle.as_deref())
    }

    /// `trust.owner`: the uid and the name it was given by.
    pub fn owner_account(&self) -> Option<Account> {
        self.store.owner.map(|id| Account {
            id,
            name: self.owner_name.clone(),
        })
    }

    /// `trust.group`: the gid and the name it was given by.
    pub fn group_account(&self) -> Option<Account> {
        self.store.group.map(|id| Account {
            id,
            name: self.group_name.clone(),
        })
    }
}

/// Reads `[trust]`. The overlaps are `sync.rotation_overlap` and `sync.rotation_overlap_max`
/// when written (they are the store's options). The symlinks of `dir` and account names are left to the fs pass.
pub(in crate::config) fn read(
    p: &mut Problems,
    fs: &mut FsChecks,
    table: &Table,
    base: &Path,
    overlaps: super::sync::Overlaps,
) -> Trust {
    let sec = Section::open(p, SCHEMA.name, table, SCHEMA.keys);
    let mut dir = PathBuf::new();
    if sec.require_present(p, "dir", "")
        && let Some(path) = path_value(p, &sec, "dir", base)
    {
        let shown = show_raw(&sec, "dir");
        match forbidden_dir(&path) {
            Some(forbidden) => p.push(sec.key("dir"), forbidden_message(&shown, &forbidden)),
            None => {
                fs.defer(
                    p,
                    FsCheck::TrustDir {
                        key: sec.key("dir"),
                        shown,
                        path: path.clone(),
                    },
                );
                dir = path;
            }
        }
    }
    // The store's defaults, overridden key by key.
    let mut store = StoreOptions::new(dir);

    store.bundle = sec
        .string(p, "bundle")
        .and_then(|b| match names::file_name_problem(b, None) {
            Some(why) => {
                p.push(sec.key("bundle"), format!("{} {why}", quote(b)));
                None
            }
            None => Some(b.to_string()),
        });

    let file_name = match sec.string(p, "file_name") {
        None => DEFAULT_FILE_NAME.to_string(),
        Some(t) => {
            match names::parse_template(t) {
                Err(why) => p.push(sec.key("file_name"), format!("{}: {why}", quote(t))),
                Ok(_) => {
                    // Placeholders expand to [A-Za-z0-9._-] only; a sample rendering finds
                    // the problems of the fixed text ("a/{name}", "{name}/..").
                    let sample = names::render_template(t, "name", "id", "category");
                    if let Some(why) = names::file_name_problem(&sample, store.bundle.as_deref()) {
                        p.push(
                            sec.key("file_name"),
                            format!(
                                "{}: the rendered name (e.g. {}) {why}",
                                quote(t),
                                quote(&sample)
                            ),
                        );
                    }
                }
            }
            t.to_string()
        }
    };

    if let Some(mode) = mode(p, &sec) {
        store.mode = mode;
    }
    store.capath = sec.boolean(p, "capath").unwrap_or(store.capath);
    store.prune = sec.boolean(p, "prune").unwrap_or(store.prune);

    let (owner, owner_name) = account(p, fs, &sec, "owner", AccountDb::User);
    let (group, group_name) = account(p, fs, &sec, "group", AccountDb::Group);
    store.owner = owner;
    store.group = group;
    store.write_mode = choice(
        p,
        &sec,
        "write_mode",
        [
            ("rename", WriteMode::Rename),
            ("in-place", WriteMode::InPlace),
        ],
        store.write_mode,
    );
    store.layout = choice(
        p,
        &sec,
        "layout",
        [("flat", Layout::Flat), ("atomic-dir", Layout::AtomicDir)],
        store.layout,
    );
    if store.write_mode == WriteMode::InPlace && store.layout == Layout::AtomicDir {
        p.push(
            sec.key("write_mode"),
            "\"in-place\" cannot be combined with layout = \"atomic-dir\" (which replaces every \
             file with a new one in a new folder); use one or the other",
        );
    }

    store.pkcs12 = sec.string(p, "pkcs12").and_then(|name| {
        let problem = if store.bundle.as_deref() == Some(name) {
            Some("is the bundle's name (trust.bundle)".to_string())
        } else {
            names::file_name_problem(name, None)
        };
        match problem {
            Some(why) => {
                p.push(sec.key("pkcs12"), format!("{} {why}", quote(name)));
                None
            }
            None => Some(name.to_string()),
        }
    });
    store.pkcs12_password_file = path_value(p, &sec, "pkcs12_password_file", base);
    if store.pkcs12_password_file.is_some() && !sec.has("pkcs12") {
        p.push(
            sec.key("pkcs12_password_file"),
            "has no effect without trust.pkcs12 (the truststore it protects)",
        );
    }
    if let Some(overlap) = overlaps.overlap {
        store.rotation_overlap = overlap;
    }
    if let Some(max) = overlaps.max {
        store.rotation_overlap_max = max;
    }
    // A plain overlap written longer than the default longest one (with no longest written):
    // the longest is the plain one, never shorter.
    store.rotation_overlap_max = store.rotation_overlap_max.max(store.rotation_overlap);

    Trust {
        store,
        file_name,
        owner_name,
        group_name,
    }
}

/// `trust.mode`: an octal string, at most [`MAX_MODE`]. `None` when absent or bad.
fn mode(p: &mut Problems, sec: &Section<'_>) -> Option<u32> {
    match sec.raw("mode")? {
        Value::String(s) => {
            let digits = s.strip_prefix("0o").unwrap_or(s);
            match u32::from_str_radix(digits, 8) {
                Ok(m)
                    if !digits.is_empty()
                        && digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
                        && m <= MAX_MODE =>
                {
                    Some(m)
                }
                _ => {
                    p.push(
                        sec.key("mode"),
                        format!(
                            "{} is not an octal file mode from \"0000\" to \"0777\"",
                            quote(s)
                        ),
                    );
                    None
                }
            }
        }
        other => {
            // An integer is refused rather than guessed: `mode = 644` would be 0o1204.
            p.push(
                sec.key("mode"),
                expected("an octal string like \"0644\"", other),
            );
            None
        }
    }
}

/// `trust.owner` / `trust.group`: a number (TOML integer or digits) is the id; a name is
/// looked up by the fs pass. Gives the id when known now, and the name when it was one.
fn account(
    p: &mut Problems,
    fs: &mut FsChecks,
    sec: &Section<'_>,
    key: &str,
    db: AccountDb,
) -> (Option<u32>, Option<String>) {
    let what = match db {
        AccountDb::User => "user",
        AccountDb::Group => "group",
    };
    let Some(raw) = sec.raw(key) else {
        return (None, None);
    };
    let text = match raw {
        Value::Integer(n) => n.to_string(),
        Value::String(s) => s.clone(),
        other => {
            p.push(
                sec.key(key),
                expected(&format!("a {what} name or number"), other),
            );
            return (None, None);
        }
    };
    match accounts::parse_number(&text) {
        Some(Ok(id)) => (Some(id), None),
        Some(Err(why)) => {
            p.push(sec.key(key), format!("{} {why}", show(raw)));
            (None, None)
        }
        None => {
            fs.defer(
                p,
                FsCheck::Account {
                    key: sec.key(key),
                    shown: show(raw),
                    name: text.clone(),
                    db,
                },
            );
            (None, Some(text))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{keys, table, walk};
    use super::*;
    use crate::config::Problem;
    use std::time::Duration;

    fn read_trust(text: &str, overlap: Option<Duration>) -> (Trust, Vec<Problem>, FsChecks) {
        let t = table(text);
        let overlaps = super::super::sync::Overlaps { overlap, max: None };
        walk(|p, fs| read(p, fs, &t, Path::new("/srv/conf"), overlaps))
    }

    #[test]
    fn defaults_are_the_stores_and_spec_3s() {
        let (t, problems, fs) = read_trust("dir = \"trust\"", None);
        assert!(problems.is_empty(), "{problems:?}");
        let store = StoreOptions::new(PathBuf::from("/srv/conf/trust"));
        assert_eq!(t.dir, store.dir);
        assert_eq!(t.file_name, DEFAULT_FILE_NAME);
        // SPEC 3's defaults, which the store's own defaults must be.
        assert_eq!((t.mode, store.mode), (0o644, 0o644));
        assert_eq!((t.bundle.as_deref(), store.bundle.as_deref()), (None, None));
        assert!(t.capath && store.capath);
        assert!(t.prune && store.prune);
        assert_eq!((t.owner, t.group), (None, None));
        assert_eq!((store.owner, store.group), (None, None));
        assert_eq!(t.write_mode, WriteMode::Rename);
        assert_eq!(store.write_mode, WriteMode::Rename);
        assert_eq!(t.layout, Layout::Flat);
        assert_eq!(store.layout, Layout::Flat);
        assert_eq!(t.pkcs12, None);
        assert_eq!(t.pkcs12_password_file, None);
        let day = Duration::from_secs(86400);
        assert_eq!((t.rotation_overlap, store.rotation_overlap), (day, day));
        let month = Duration::from_secs(30 * 86400);
        assert_eq!(
            (t.rotation_overlap_max, store.rotation_overlap_max),
            (month, month)
        );
        // The folder's symlinks are the fs pass's to follow.
        assert_eq!(
            fs.0,
            [(
                0,
                FsCheck::TrustDir {
                    key: "trust.dir".into(),
                    shown: "\"trust\"".into(),
                    path: "/srv/conf/trust".into(),
                }
            )]
        );
    }

    #[test]
    fn every_key_goes_into_the_stores_options() {
        let (t, problems, fs) = read_trust(
            r#"dir = "/var/lib/certsync/trust/"
file_name = "{id}.{category}.pem"
mode = "0o600"
owner = 0
group = "users-certsync"
bundle = "all.pem"
capath = false
prune = false
write_mode = "in-place"
layout = "flat"
pkcs12 = "store.p12"
pkcs12_password_file = "p12""#,
            Some(Duration::ZERO),
        );
        assert!(problems.is_empty(), "{problems:?}");
        let s = &t.store;
        assert_eq!(s.dir, Path::new("/var/lib/certsync/trust"));
        assert_eq!(t.file_name, "{id}.{category}.pem");
        assert_eq!(s.mode, 0o600);
        assert_eq!(s.owner, Some(0));
        assert_eq!(t.owner_account().unwrap().to_string(), "0");
        assert_eq!(s.bundle.as_deref(), Some("all.pem"));
        assert!(!s.capath && !s.prune);
        assert_eq!((s.write_mode, s.layout), (WriteMode::InPlace, Layout::Flat));
        assert_eq!(s.pkcs12.as_deref(), Some("store.p12"));
        assert_eq!(
            s.pkcs12_password_file.as_deref(),
            Some(Path::new("/srv/conf/p12"))
        );
        assert_eq!(s.rotation_overlap, Duration::ZERO);
        assert_eq!(s.rotation_overlap_max, Duration::from_secs(30 * 86400));
        // A group by name: no id until the fs pass looks it up; nothing was read here.
        assert_eq!(s.group, None);
        assert_eq!(t.group_name.as_deref(), Some("users-certsync"));
        assert!(fs.0.contains(&(
            0,
            FsCheck::Account {
                key: "trust.group".into(),
                shown: "\"users-certsync\"".into(),
                name: "users-certsync".into(),
                db: AccountDb::Group,
            }
        )));
    }

    #[test]
    fn forbidden_dirs_are_refused_as_written() {
        // Refused as written, without asking the file system.
        let (_, problems, fs) = read_trust("dir = \"/etc/pki/../pki/x\"", None);
        assert_eq!(keys(&problems), ["trust.dir"]);
        assert!(fs.0.is_empty());
    }

    #[test]
    fn bad_values_fall_back_to_the_stores_defaults_and_are_reported() {
        let (t, problems, _) = read_trust(
            "dir = \"t\"\nmode = 644\nwrite_mode = \"copy\"\nlayout = \"tree\"\nowner = true",
            None,
        );
        assert_eq!(
            keys(&problems),
            [
                "trust.mode",
                "trust.owner",
                "trust.write_mode",
                "trust.layout"
            ]
        );
        assert_eq!(t.mode, 0o644);
        assert_eq!((t.write_mode, t.layout), (WriteMode::Rename, Layout::Flat));
    }
}
