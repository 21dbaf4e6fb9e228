//! The atomic-dir layout (SPEC 7): the whole set of files in a hidden `..<timestamp>`
//! generation, `..data` pointing at it, and every visible name a symlink `name -> ..data/name`,
//! so that every name switches from the old set to the new one in the same rename.
//!
//! Owns: building a generation from one plan, the swap, the visible links (new names linked
//! before the swap, removed names unlinked after it), removing old generations, and refusing
//! a `..data` that certsync did not make. Must not: write the manifest or decide the order
//! around it (the executor does).

use std::collections::HashMap;
use std::io;

use super::StoreError;
use super::batch::{Batch, Results, blocked_results, remove_all};
use super::manifest::ManifestLayout;
use super::plan::Filled;
use super::write::{self, Folder, Pieces, Visible};

/// The atomic-dir layout: when anything changes (or the folder is not yet in this layout),
/// the whole final set goes into a new generation, `..data` is swapped to it, the visible
/// symlinks are made and the removed names unlinked, then old generations are removed.
/// A failure before the swap fails every write and leaves the old set as it was.
pub(super) fn execute(batch: Batch<'_>, errors: &mut Vec<StoreError>) -> Results {
    let (folder, opts, plan, old_layout) = (batch.folder, batch.opts, batch.plan, batch.old_layout);
    let dir = folder.path();
    let current = match folder.current_generation() {
        Ok(c) => c,
        Err(e) => {
            let (kind, msg) = (io::ErrorKind::Other, e.to_string());
            errors.push(e);
            return blocked_results(dir, plan, kind, &msg, "write (..data unreadable)");
        }
    };
    let in_shape = current.is_some()
        && old_layout == ManifestLayout::AtomicDir
        && plan.final_files.keys().all(|name| {
            matches!(
                folder.visible_kind(name),
                Ok(Visible::DataLink | Visible::Other)
            )
        });
    if plan.writes.is_empty() && plan.removals.is_empty() && in_shape {
        return (Vec::new(), Vec::new());
    }

    // The new set: planned bytes, else what the visible name holds now (a failed
    // instance's file, an unchanged one). A name that cannot be read (a foreign symlink
    // put in its place, say) is left out and its visible entry left alone.
    let planned: HashMap<&str, Filled<'_>> = plan
        .writes
        .iter()
        .map(|w| (w.name.as_str(), w.content.filled(batch.certs)))
        .collect();
    let mut kept: Vec<(String, Vec<u8>)> = Vec::new();
    for name in plan.final_files.keys() {
        if planned.contains_key(name.as_str()) {
            continue;
        }
        match folder.read_managed(name) {
            Ok(Some(file)) => kept.push((name.clone(), file.content)),
            Ok(None) => {}
            Err(e) => errors.push(e),
        }
    }
    let files: Vec<(&str, Pieces<'_>)> = planned
        .iter()
        .map(|(n, c)| (*n, c as Pieces<'_>))
        .chain(kept.iter().map(|(n, c)| (n.as_str(), c as Pieces<'_>)))
        .collect();

    // Names that do not exist yet get their symlink before the swap: it resolves in the
    // same instant as every other name of the new set, and a crash right after the swap
    // cannot leave a new CA without its visible name (a hash file, say) until a restart.
    // Until the swap it points at nothing, as the name did before.
    let mut link_errors: HashMap<&str, StoreError> = HashMap::new();
    let mut pre_linked: Vec<&str> = Vec::new();
    for (name, _) in &files {
        if matches!(folder.visible_kind(name), Ok(Visible::Missing)) {
            match folder.link_visible(name) {
                Ok(()) => pre_linked.push(name),
                Err(e) => {
                    link_errors.insert(name, e);
                }
            }
        }
    }
    let swapped = folder
        .build_generation(&files, &opts.attrs())
        .and_then(|generation| {
            match folder
                .swap_data_link(&generation)
                .and_then(|()| folder.sync())
            {
                Ok(()) => Ok(generation),
                Err(e) => {
                    // Not swapped (or not durably): the old set stays the one in use.
                    if folder.current_generation().ok().flatten().as_deref() != Some(&generation) {
                        let _ = folder.remove_generation(&generation);
                    }
                    Err(e)
                }
            }
        });
    let generation = match swapped {
        Ok(g) => g,
        Err(e) => {
            // The new names stay unborn: their links go with the generation.
            for name in pre_linked {
                let _ = folder.remove_file(name);
            }
            let (kind, msg) = match &e {
                StoreError::Io { source, .. } => (source.kind(), e.to_string()),
                _ => (io::ErrorKind::Other, e.to_string()),
            };
            errors.push(e);
            return blocked_results(
                dir,
                plan,
                kind,
                &msg,
                "write (the new generation could not be completed)",
            );
        }
    };

    // Visible names: every file of the set becomes (or stays) `name -> ..data/name`.
    for (name, _) in &files {
        if link_errors.contains_key(name) {
            continue;
        }
        let linked = match folder.visible_kind(name) {
            Ok(Visible::DataLink) => Ok(()),
            Ok(_) => folder.link_visible(name),
            Err(e) => Err(e),
        };
        if let Err(e) = linked {
            link_errors.insert(name, e);
        }
    }
    let writes = plan
        .writes
        .iter()
        .map(|w| match link_errors.remove(w.name.as_str()) {
            Some(e) => Err(e),
            None => Ok(()),
        })
        .collect();
    errors.extend(link_errors.into_values());
    let removals = remove_all(folder, &plan.removals);
    let cleaned = folder
        .sync()
        .and_then(|()| folder.remove_generations(Some(&generation)));
    if let Err(e) = cleaned {
        errors.push(e);
    }
    (writes, removals)
}

/// Refuses to enter the atomic-dir layout over a `..data` that certsync did not make.
pub(super) fn check_no_foreign_data_link(folder: &Folder) -> Result<(), StoreError> {
    if folder.exists(write::DATA_LINK)? {
        return Err(StoreError::Unmanaged {
            path: folder.join(write::DATA_LINK),
        });
    }
    Ok(())
}
