//! One trust folder for `inspect`: its visible files, and the names the manifest lists
//! examined as the store sees them.
//!
//! Owns: listing a folder's visible entries (hidden names skipped: the manifest, `..data`,
//! the generations, temporary files), reading a managed name without following a symlink
//! (except the atomic-dir layout's own `name -> ..data/name`), and putting each file's
//! certificates into the results and the folder summary.
//! Must not: write anything, take the store's lock, or read the manifest by itself (it asks
//! `manifest`, which uses the store's one reader).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::manifest::{FolderFiles, check_folder, read_manifest};
use super::read::{FileCerts, ReadError, parse_file, read_capped};
use super::{FolderSummary, InspectError, Inspection, report};
use crate::store::MANIFEST_FILE_NAME;
use crate::store::truststore;

/// The atomic-dir layout's link to the current generation (the store's `DATA_LINK`).
const DATA_LINK: &str = "..data";

/// What a managed name holds, examined as the store sees it.
enum Managed {
    /// The content, read (through `..data` for an atomic-dir link).
    Data(Vec<u8>),
    /// Nothing there (or an atomic-dir link leading nowhere: the store writes it again).
    Missing,
    /// Something certsync can no longer update or read.
    Problem {
        /// The sentence's end, after the name and kind.
        what: String,
        /// Why the name could not be read as a file, when it could not (not for a foreign
        /// symlink, which is simply not followed): that file is then also "not a certificate"
        /// for the exit status.
        unreadable: Option<String>,
    },
}

/// Reads a managed name without following a symlink, except the atomic-dir layout's own
/// `name -> ..data/name` into the generation `..data` points to.
fn read_managed(dir: &Path, name: &str) -> Managed {
    let path = dir.join(name);
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Managed::Missing,
        Err(e) => {
            return Managed::Problem {
                what: format!("cannot be examined: {e}"),
                unreadable: Some(format!("cannot be examined: {e}")),
            };
        }
    };
    let read = |path: &Path| match read_capped(path, false) {
        Ok(data) => Managed::Data(data),
        Err(ReadError::Missing) => Managed::Missing,
        // Swapped for a symlink between the lstat and the open.
        Err(ReadError::Symlink) => Managed::Problem {
            what: "has been replaced by a symlink; certsync will not write through it".into(),
            unreadable: None,
        },
        Err(e @ ReadError::NotRegular(what)) => Managed::Problem {
            what: format!("is no longer a regular file (it is {what}); certsync cannot update it"),
            unreadable: Some(e.to_string()),
        },
        Err(e) => Managed::Problem {
            what: format!("is {e}"),
            unreadable: Some(e.to_string()),
        },
    };
    if meta.file_type().is_symlink() {
        let target = std::fs::read_link(&path).ok();
        if target.as_deref() == Some(Path::new(DATA_LINK).join(name).as_path()) {
            return match current_generation(dir) {
                Some(generation) => read(&dir.join(generation).join(name)),
                None => Managed::Missing,
            };
        }
        let to = target.map_or_else(
            || "an unreadable target".to_string(),
            |t| t.display().to_string(),
        );
        return Managed::Problem {
            what: format!(
                "has been replaced by a symlink (to {to}); certsync will not write through it, so it can no longer update this file"
            ),
            unreadable: None,
        };
    }
    read(&path)
}

/// The folder `..data` points to: a `..`-prefixed name in the folder that is a folder itself
/// (the store's stricter `..<timestamp>` check is private to it; this only finds the files).
fn current_generation(dir: &Path) -> Option<PathBuf> {
    let target = std::fs::read_link(dir.join(DATA_LINK)).ok()?;
    let name = target.to_str()?;
    if !name.starts_with("..") || name.contains('/') || name == ".." {
        return None;
    }
    std::fs::symlink_metadata(dir.join(name))
        .ok()
        .filter(|m| m.is_dir())
        .map(|_| PathBuf::from(name))
}

/// The visible entries of a folder (symlinks followed), sorted.
fn folder_files(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        // certsync's manifest, `..data`, generations and temporary files, and other hidden
        // files.
        if name.starts_with('.') {
            continue;
        }
        names.push(name);
    }
    names.sort();
    Ok(names)
}

/// One folder: every file's certificates into `found`, and the summary.
pub(super) fn inspect_folder(
    dir: &Path,
    found: &mut Inspection,
    errors: &mut Vec<InspectError>,
) -> std::io::Result<FolderSummary> {
    let mut summary = FolderSummary {
        dir: dir.to_path_buf(),
        ..FolderSummary::default()
    };
    let manifest = read_manifest(dir, &mut summary);
    let kind_of = |name: &str| -> Option<String> {
        manifest
            .as_ref()
            .and_then(|m| m.get(name))
            .map(|(kind, _)| kind.clone())
    };

    // Every visible entry and every managed name (a missing one is reported below), in order.
    let mut names: BTreeSet<String> = folder_files(dir)?.into_iter().collect();
    if let Some(m) = &manifest {
        names.extend(m.keys().cloned());
    }
    let mut folder = FolderFiles::default();
    for name in names {
        let path = dir.join(&name);
        let data = match kind_of(&name) {
            Some(kind) => match read_managed(dir, &name) {
                Managed::Data(data) => data,
                Managed::Missing => continue,
                Managed::Problem { what, unreadable } => {
                    summary.problems.push(format!("{name} ({kind}) {what}"));
                    if let Some(reason) = unreadable {
                        errors.push(InspectError {
                            path: path.clone(),
                            reason,
                        });
                    }
                    if kind == "instance" {
                        folder.unknown_instance_cas = true;
                    }
                    folder.problems.insert(name);
                    continue;
                }
            },
            None => {
                // Not certsync's: listed as it is, symlinks followed (but only regular files
                // are read, and at most MAX_FILE_BYTES of them).
                match std::fs::metadata(&path) {
                    Ok(meta) if meta.is_file() => {}
                    // A folder, a FIFO, a device: not a certificate file.
                    Ok(_) => continue,
                    // A dangling symlink, say.
                    Err(_) => {
                        if manifest.is_some() {
                            summary.unmanaged.push(name);
                        }
                        continue;
                    }
                }
                if manifest.is_some() {
                    summary.unmanaged.push(name.clone());
                }
                match read_capped(&path, true) {
                    Ok(data) => data,
                    Err(e) => {
                        errors.push(InspectError {
                            path,
                            reason: e.to_string(),
                        });
                        continue;
                    }
                }
            }
        };
        let digest = hex::encode(crate::cert::sha256(&data));
        match parse_file(&data) {
            Ok(FileCerts::Certs(certs)) => {
                found.certs.extend(certs.iter().map(|c| report(&path, c)));
                for cert in &certs {
                    summary
                        .cas
                        .entry(cert.fingerprint())
                        .or_insert_with(|| (cert.subject.clone(), cert.not_after, BTreeSet::new()))
                        .2
                        .insert(name.clone());
                }
                folder.contents.insert(name.clone(), certs);
            }
            Ok(FileCerts::Locked) => summary.notes.push(format!(
                "{name} does not open with the default password \"{}\" (a pkcs12_password_file is in use?); its entries are not listed or checked",
                truststore::DEFAULT_PASSWORD
            )),
            Err(reason) => errors.push(InspectError { path, reason }),
        }
        folder.present.insert(name, digest);
    }

    if let Some(manifest) = &manifest {
        check_folder(manifest, &folder, &mut summary);
    } else if !summary.manifest_unreadable {
        summary.notes.push(format!(
            "no certsync manifest ({MANIFEST_FILE_NAME}): the files are listed but not checked against each other"
        ));
    }
    Ok(summary)
}
