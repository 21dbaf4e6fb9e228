//! The executor: carries out one [`Plan`] in the crash-safe order of SPEC 7 (see the module
//! docs of `store`) and says what the folder and its manifest hold afterwards.
//!
//! Owns: the order of a commit: (1) a manifest listing the old and new managed files together
//! (with the new daemon state) before any new name exists, (2) the content and the removals
//! through the layout's own steps ([`flat`](super::flat), [`atomic_dir`](super::atomic_dir)),
//! one folder fsync, (3) the final manifest when it says something the one on disk does not.
//! Must not: decide what to write (`plan` did), or keep state across passes
//! ([`Store`](super::Store) does, from the [`Outcome`] returned here).

use std::io;

use super::batch::{Batch, blocked_results};
use serde::Serialize;

use super::manifest::{MANIFEST_NAME, Manifest, ManifestLayout, Merged, write_manifest};
use super::plan::{Plan, RemovalResult};
use super::write::{Attrs, Folder};
use super::{
    Layout, PassInput, StoreError, StoreOptions, StoreReport, StoreState, atomic_dir, flat,
};

/// What the store held before the commit.
pub(super) struct Before<'a, S> {
    /// The manifest as it is on disk (or, after a failed final write, as it should be).
    pub manifest: &'a Manifest<S>,
    /// The state on disk could not be read: it must be written even if unchanged.
    pub state_unreadable: bool,
    /// The last final manifest could not be written: write it now.
    pub manifest_dirty: bool,
}

/// What the store holds after the commit.
pub(super) struct Outcome<S> {
    pub report: StoreReport,
    /// The records (and layout and state) that describe the folder now.
    pub manifest: Manifest<S>,
    pub state_unreadable: bool,
    pub manifest_dirty: bool,
}

/// Carries out `plan`, planned from `input` (whose certificates its contents name), in the
/// crash-safe order, saving `state` with the first manifest.
pub(super) fn execute<S: StoreState>(
    folder: &Folder,
    opts: &StoreOptions,
    before: Before<'_, S>,
    mut plan: Plan,
    input: &PassInput,
    state: S,
) -> Outcome<S> {
    let state_changes = state != before.manifest.state || before.state_unreadable;
    let dir = opts.dir.as_path();
    let old = &before.manifest.files;
    let old_layout = before.manifest.layout;
    let target_layout = manifest_layout(opts.layout);
    // While either says atomic-dir, generations may exist: the manifest must say so.
    let union_layout =
        if old_layout == ManifestLayout::AtomicDir || target_layout == ManifestLayout::AtomicDir {
            ManifestLayout::AtomicDir
        } else {
            ManifestLayout::Flat
        };

    // 1. New names (and a first generation) must be in the manifest on disk before they
    //    exist.
    let creates_new = plan.writes.iter().any(|w| !old.contains_key(&w.name));
    let enters_atomic = union_layout != old_layout;
    let mut aborted: Option<(io::ErrorKind, String)> = None;
    if target_layout == ManifestLayout::AtomicDir
        && old_layout == ManifestLayout::Flat
        && let Err(e) = atomic_dir::check_no_foreign_data_link(folder)
    {
        aborted = Some((io::ErrorKind::AlreadyExists, e.to_string()));
        plan.errors.push(e);
    }
    if aborted.is_none() && (creates_new || enters_atomic || state_changes) {
        let union = Merged {
            first: &plan.final_files,
            then: old,
        };
        if let Err(e) = save_manifest(folder, union_layout, union, &state, opts.mode) {
            aborted = Some(match &e {
                StoreError::Io { source, .. } => (source.kind(), e.to_string()),
                _ => (io::ErrorKind::Other, e.to_string()),
            });
            plan.errors.push(e);
        }
    }

    // 2. The content, the removals, one folder fsync, and the layout's own steps.
    let mut layout_errors = Vec::new();
    let mut final_layout = union_layout;
    let (write_results, removal_results) = match &aborted {
        Some((kind, msg)) => blocked_results(
            dir,
            &plan,
            *kind,
            msg,
            "write (the manifest that must list it first was not saved)",
        ),
        None => {
            let certs = plan.certs(input);
            let batch = Batch {
                folder,
                opts,
                plan: &plan,
                certs: &certs,
                old_layout,
            };
            match opts.layout {
                Layout::Flat => {
                    let (results, converted) = flat::execute(batch, &mut layout_errors);
                    if converted {
                        final_layout = ManifestLayout::Flat;
                    }
                    results
                }
                Layout::AtomicDir => atomic_dir::execute(batch, &mut layout_errors),
            }
        }
    };
    let touched = write_results.iter().any(Result::is_ok)
        || removal_results
            .iter()
            .any(|r| matches!(r, RemovalResult::Removed));
    // The bytes written are not needed any more: freed before the report and the final
    // manifest are built (at 10,000 instances a cold pass's PEMs are 8 MB).
    plan.release_contents();
    let (mut report, final_files) = plan.finish(dir, old, write_results, removal_results);
    report.errors.append(&mut layout_errors);
    if touched && let Err(e) = folder.sync() {
        report.errors.push(e);
    }

    // 3. The final manifest, when it says something the one on disk does not.
    let on_disk_layout = if creates_new || enters_atomic || state_changes {
        union_layout
    } else {
        old_layout
    };
    let mut manifest_dirty = before.manifest_dirty;
    if aborted.is_none()
        && (final_files != *old
            || creates_new
            || before.manifest_dirty
            || final_layout != on_disk_layout)
    {
        match save_manifest(folder, final_layout, &final_files, &state, opts.mode) {
            Ok(()) => manifest_dirty = false,
            Err(e) => {
                manifest_dirty = true;
                report.errors.push(e);
            }
        }
    }

    // In memory: the new records; the old state while the new one could not be saved.
    let (layout, state, state_unreadable) = match aborted {
        Some(_) => (
            on_disk_layout,
            before.manifest.state.clone(),
            before.state_unreadable,
        ),
        None => (final_layout, state, false),
    };
    Outcome {
        report,
        manifest: Manifest::with_state(layout, final_files, state),
        state_unreadable,
        manifest_dirty,
    }
}

/// The manifest's word for the configured layout.
fn manifest_layout(layout: Layout) -> ManifestLayout {
    match layout {
        Layout::Flat => ManifestLayout::Flat,
        Layout::AtomicDir => ManifestLayout::AtomicDir,
    }
}

/// Writes the manifest of `files` (records by name, borrowed: see [`Merged`]) and `state`
/// atomically, streamed to its temporary file, and makes it durable (folder fsync).
pub(super) fn save_manifest<S: StoreState>(
    folder: &Folder,
    layout: ManifestLayout,
    files: impl Serialize,
    state: &S,
    mode: u32,
) -> Result<(), StoreError> {
    // certsync's own file: its mode, but no chown (consumers never read it).
    let attrs = Attrs {
        mode,
        uid: None,
        gid: None,
    };
    folder.write_atomic_streamed(MANIFEST_NAME, &attrs, |out| {
        write_manifest(out, layout, files, state)
    })?;
    folder.sync()
}
