//! One commit's content step as a layout sees it: the [`Batch`] it carries out, the
//! [`Results`] it gives back, and the two steps every layout shares (a pass blocked before it
//! wrote anything, the planned removals).
//!
//! Owns: those types and steps. Must not: order the steps around the manifest (the
//! executor does) or know either layout's own moves (`flat`, `atomic_dir`). A leaf of the
//! store: the executor and both layouts import it, it imports neither.

use std::io;
use std::path::Path;

use super::manifest::ManifestLayout;
use super::plan::{Certs, Plan, RemovalResult};
use super::write::Folder;
use super::{StoreError, StoreOptions};

/// The content step of one commit, as a layout carries it out.
#[derive(Clone, Copy)]
pub(super) struct Batch<'a> {
    pub folder: &'a Folder,
    pub opts: &'a StoreOptions,
    pub plan: &'a Plan,
    /// The certificates the plan's contents name.
    pub certs: &'a Certs<'a>,
    /// The layout the manifest on disk recorded before this commit.
    pub old_layout: ManifestLayout,
}

/// How each planned write and removal went, in plan order.
pub(super) type Results = (Vec<Result<(), StoreError>>, Vec<RemovalResult>);

/// Every write failed with the same cause (and no removal was tried): the results of a pass
/// stopped before it wrote anything.
pub(super) fn blocked_results(
    dir: &Path,
    plan: &Plan,
    kind: io::ErrorKind,
    msg: &str,
    op: &'static str,
) -> Results {
    (
        plan.writes
            .iter()
            .map(|w| {
                Err(StoreError::Io {
                    path: dir.join(&w.name),
                    op,
                    source: io::Error::new(kind, msg.to_string()),
                })
            })
            .collect(),
        plan.removals
            .iter()
            .map(|_| RemovalResult::Skipped)
            .collect(),
    )
}

/// Removes every planned removal, in order.
pub(super) fn remove_all(folder: &Folder, removals: &[super::plan::Removal]) -> Vec<RemovalResult> {
    removals
        .iter()
        .map(|r| match folder.remove_file(&r.name) {
            Ok(true) => RemovalResult::Removed,
            Ok(false) => RemovalResult::Gone,
            Err(e) => RemovalResult::Failed(e),
        })
        .collect()
}
