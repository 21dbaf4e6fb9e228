//! What the daemon keeps with the trust folder across restarts (SPEC 7: "an opaque `state`"):
//! the hooks still owed a run with their files, and the instances discovery found.
//!
//! Owns: the on-disk JSON shape of that state, reading older shapes back. It must not do I/O:
//! the trust sink saves and loads it with the manifest.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use crate::config::{DEFAULT_ACCOUNT, Instance};
use crate::hooks::ChangedFiles;
use crate::plan::Discovered;

/// The files changed since a hook last ran, by what last happened to each.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OwedFiles {
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    written: BTreeSet<PathBuf>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    removed: BTreeSet<PathBuf>,
}

impl OwedFiles {
    /// Adds a pass's changes: a path is in the list of the last thing that happened to it.
    pub fn add(&mut self, written: &[PathBuf], removed: &[PathBuf]) {
        for p in written {
            self.removed.remove(p);
            self.written.insert(p.clone());
        }
        for p in removed {
            self.written.remove(p);
            self.removed.insert(p.clone());
        }
    }

    /// What the hook is told.
    pub fn to_changed(&self) -> ChangedFiles {
        ChangedFiles {
            written: self.written.iter().cloned().collect(),
            removed: self.removed.iter().cloned().collect(),
        }
    }
}

/// An owed hook as saved: `{written, removed}`, or (saved by an older certsync) one list of
/// changed files, taken as written.
#[derive(Debug, serde::Deserialize)]
#[serde(untagged)]
enum SavedOwed {
    Split(OwedFiles),
    Flat(BTreeSet<PathBuf>),
}

impl From<SavedOwed> for OwedFiles {
    fn from(saved: SavedOwed) -> OwedFiles {
        match saved {
            SavedOwed::Split(files) => files,
            SavedOwed::Flat(written) => OwedFiles {
                written,
                removed: BTreeSet::new(),
            },
        }
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct DiscoveredState {
    name: Option<String>,
    /// The account whose discovery found it; left out for `default` (and so absent in the
    /// state of a version before accounts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    account: Option<String>,
}

/// The daemon's state as saved with the folder: the store's typed state
/// ([`StoreState`](crate::sink::StoreState)), written as `Written` and read as `Read` (which
/// takes older shapes too).
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(from = "Read")]
pub struct DaemonState {
    /// Hooks owed a run, by name, with the files changed since they last ran.
    pub owed_hooks: BTreeMap<String, OwedFiles>,
    /// Instances discovery found, by id.
    pub discovered: Discovered,
}

#[derive(serde::Serialize)]
struct Written<'a> {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    owed_hooks: &'a BTreeMap<String, OwedFiles>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    discovered: BTreeMap<&'a str, DiscoveredState>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct Read {
    #[serde(default)]
    owed_hooks: BTreeMap<String, SavedOwed>,
    #[serde(default)]
    discovered: BTreeMap<String, DiscoveredState>,
}

impl serde::Serialize for DaemonState {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Written {
            owed_hooks: &self.owed_hooks,
            discovered: self
                .discovered
                .iter()
                .map(|(id, i)| {
                    (
                        id.as_str(),
                        DiscoveredState {
                            name: i.name.clone(),
                            account: (i.account != DEFAULT_ACCOUNT).then(|| i.account.clone()),
                        },
                    )
                })
                .collect(),
        }
        .serialize(serializer)
    }
}

impl From<Read> for DaemonState {
    fn from(read: Read) -> DaemonState {
        DaemonState {
            owed_hooks: read
                .owed_hooks
                .into_iter()
                .map(|(k, v)| (k, v.into()))
                .collect(),
            discovered: read
                .discovered
                .into_iter()
                .map(|(id, d)| {
                    let account = d.account.unwrap_or_else(|| DEFAULT_ACCOUNT.to_string());
                    (
                        id.clone(),
                        Instance::discovered(id, d.name).in_account(account),
                    )
                })
                .collect(),
        }
    }
}

/// Equal when what is saved is equal (the store writes the manifest only on a change): the
/// owed hooks and, of each discovered instance, its id, name and account.
impl PartialEq for DaemonState {
    fn eq(&self, other: &DaemonState) -> bool {
        self.owed_hooks == other.owed_hooks
            && self.discovered.len() == other.discovered.len()
            && self
                .discovered
                .iter()
                .zip(&other.discovered)
                .all(|((a, x), (b, y))| a == b && x.name == y.name && x.account == y.account)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_state_is_not_saved_and_a_full_one_round_trips() {
        // "No state" is the default, which the manifest leaves out.
        assert_eq!(DaemonState::default(), DaemonState::from(Read::default()));
        let mut state = DaemonState::default();
        let mut files = OwedFiles::default();
        files.add(&["/t/a.crt".into()], &["/t/b.crt".into()]);
        state.owed_hooks.insert("reload".into(), files);
        state.discovered.insert(
            "id-1".into(),
            Instance::discovered("id-1", Some("orders".into())),
        );
        state.discovered.insert(
            "id-2".into(),
            Instance::discovered("id-2", None).in_account("eu"),
        );
        let json = serde_json::to_value(&state).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "owed_hooks": {"reload": {"written": ["/t/a.crt"], "removed": ["/t/b.crt"]}},
                // The account is written only when it is not "default".
                "discovered": {
                    "id-1": {"name": "orders"},
                    "id-2": {"name": null, "account": "eu"},
                },
            })
        );
        let mut other_account = state.clone();
        other_account.discovered.insert(
            "id-2".into(),
            Instance::discovered("id-2", None).in_account("us"),
        );
        assert_ne!(other_account, state);
        let back: DaemonState = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, state);
        assert_eq!(serde_json::to_value(&back).unwrap(), json);
    }

    #[test]
    fn older_shapes_are_read_back() {
        // Owed files as one list; discovered instances with their vanish counts.
        let old = serde_json::json!({
            "owed_hooks": {"reload": ["/t/a.crt"]},
            "discovered": {"id-1": {"name": null, "missing": 2}},
        });
        let state: DaemonState = serde_json::from_value(old).unwrap();
        assert_eq!(
            state.owed_hooks["reload"].to_changed().written,
            vec![PathBuf::from("/t/a.crt")]
        );
        assert!(state.discovered["id-1"].name.is_none());
        assert_eq!(
            state.discovered["id-1"].account,
            crate::config::DEFAULT_ACCOUNT
        );
    }

    #[test]
    fn a_file_is_in_the_list_of_what_last_happened_to_it() {
        let mut files = OwedFiles::default();
        files.add(&["/t/a".into()], &[]);
        files.add(&[], &["/t/a".into()]);
        assert_eq!(files.to_changed().removed, vec![PathBuf::from("/t/a")]);
        assert!(files.to_changed().written.is_empty());
        files.add(&["/t/a".into()], &[]);
        assert_eq!(files.to_changed().written, vec![PathBuf::from("/t/a")]);
        assert!(files.to_changed().removed.is_empty());
    }
}
