//! The flat layout (SPEC 7): every managed name a regular file, each written on its own
//! (`rename`: temp file renamed over it; `in-place`: the existing inode rewritten), and the
//! switch back from the atomic-dir layout (every name made a regular file again before
//! `..data` and the generations go).
//!
//! Owns: the writes and removals of one plan in this layout, and in which threads the writes
//! run. Must not: write the manifest or decide the order around it (the executor does).

use std::collections::HashSet;

use super::batch::{Batch, Results, remove_all};
use super::manifest::ManifestLayout;
use super::plan;
use super::write::{Attrs, Folder, GROUP_SYNC_MIN, Staged, Visible, io_error};
use super::{Change, StoreError, WriteMode};

/// The flat layout: each write on its own (rename, or in place), then the removals. When
/// the folder was in the atomic-dir layout, every managed name still a symlink through
/// `..data` is replaced by a regular file with the same bytes, and then `..data` and the
/// generations are removed. Returns whether that switch is complete (or was not needed).
pub(super) fn execute(batch: Batch<'_>, errors: &mut Vec<StoreError>) -> (Results, bool) {
    let (folder, opts, plan, old_layout) = (batch.folder, batch.opts, batch.plan, batch.old_layout);
    let writes = run_writes(
        folder,
        &opts.attrs(),
        opts.write_mode,
        &plan.writes,
        batch.certs,
    );
    let removals = remove_all(folder, &plan.removals);
    if old_layout == ManifestLayout::Flat {
        return ((writes, removals), true);
    }
    let written: HashSet<&str> = plan.writes.iter().map(|w| w.name.as_str()).collect();
    let mut complete = true;
    for name in plan.final_files.keys() {
        if written.contains(name.as_str()) {
            continue;
        }
        let converted = match folder.visible_kind(name) {
            Ok(Visible::DataLink) => match folder.read_managed(name) {
                Ok(Some(file)) => folder.write_atomic(name, &file.content, &{
                    // The bytes and mode stay; only the kind of entry changes.
                    let mut attrs = opts.attrs();
                    attrs.mode = file.mode;
                    attrs
                }),
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            },
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = converted {
            errors.push(e);
            complete = false;
        }
    }
    // A write that failed may have left its name a symlink through `..data`.
    if complete
        && writes.iter().any(Result::is_err)
        && plan
            .writes
            .iter()
            .any(|w| matches!(folder.visible_kind(&w.name), Ok(Visible::DataLink)))
    {
        complete = false;
    }
    if complete {
        let removed = folder.sync().and_then(|()| folder.remove_generations(None));
        if let Err(e) = removed {
            errors.push(e);
            complete = false;
        }
    }
    ((writes, removals), complete)
}

/// Writes every planned file of the flat layout. A few files each on their own (temp file,
/// fsync, rename); many in `rename` mode as one group commit ([`group_commit`]); many in
/// `in-place` mode on a few threads, since each waits on its own fsync. Results in input
/// order.
fn run_writes(
    folder: &Folder,
    attrs: &Attrs,
    mode: WriteMode,
    writes: &[plan::Write],
    certs: &plan::Certs<'_>,
) -> Vec<Result<(), StoreError>> {
    const THREADS: usize = 16;
    const MIN_PER_THREAD: usize = 8;
    let one = |w: &plan::Write| {
        let content = w.content.filled(certs);
        match (mode, w.change) {
            (WriteMode::InPlace, Change::Updated) => {
                match folder.write_in_place(&w.name, &content, attrs) {
                    Ok(true) => Ok(()),
                    // Not a regular file (a symlink through `..data`): created atomically.
                    Ok(false) => folder.write_atomic(&w.name, &content, attrs),
                    Err(e) => Err(e),
                }
            }
            _ => folder.write_atomic(&w.name, &content, attrs),
        }
    };
    if writes.len() < GROUP_SYNC_MIN {
        return writes.iter().map(one).collect();
    }
    if mode == WriteMode::Rename {
        return group_commit(folder, attrs, writes, certs);
    }
    let chunk = writes
        .len()
        .div_ceil(THREADS)
        .max(MIN_PER_THREAD)
        .min(writes.len());
    std::thread::scope(|s| {
        let handles: Vec<_> = writes
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(one).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// Many files in `rename` mode: every temporary file written first, then one sync of the file
/// system for all of them (one syncfs(2) instead of one fsync(2) per file), then the renames
/// in plan order. A name is renamed only once its content is durable, so a crash at any
/// point leaves each name old or new (SPEC 7). If the sync fails, no name changes and every
/// write fails with that error.
fn group_commit(
    folder: &Folder,
    attrs: &Attrs,
    writes: &[plan::Write],
    certs: &plan::Certs<'_>,
) -> Vec<Result<(), StoreError>> {
    let staged: Vec<Result<Staged, StoreError>> = writes
        .iter()
        .map(|w| folder.stage(&w.name, &w.content.filled(certs), attrs))
        .collect();
    if let Err(errno) = folder.sync_staged() {
        return staged
            .into_iter()
            .zip(writes)
            .map(|(s, w)| {
                if let Ok(s) = s {
                    folder.discard(s);
                }
                let path = folder.join(&w.name);
                Err(io_error(&path, "sync before renaming", errno.into()))
            })
            .collect();
    }
    staged
        .into_iter()
        .map(|s| s.and_then(|s| folder.publish(s)))
        .collect()
}
