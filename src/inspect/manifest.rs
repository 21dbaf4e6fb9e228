//! The manifest for `inspect`: read through the store's one reader, and the files of a managed
//! folder checked against it and against each other.
//!
//! Owns: reading `.certsync-manifest.json` as the store reads it (not through a symlink,
//! parsed by [`Manifest::parse`], the store's strict parser; never as raw JSON), the managed
//! names by kind for the summary, and the staleness checks (a changed or missing instance
//! file, a bundle or truststore that lacks or adds CAs, hash files that disagree).
//! Must not: write anything, or parse the manifest any other way than `Manifest::parse`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use time::OffsetDateTime;

use super::FolderSummary;
use super::read::{ReadError, read_capped};
use crate::cert::Cert;
use crate::store::MANIFEST_FILE_NAME;
use crate::store::manifest::{Manifest, ManifestLayout, Record};

/// What was read of a folder's files.
#[derive(Default)]
pub(super) struct FolderFiles {
    /// Certificates by name (files that parsed).
    pub(super) contents: BTreeMap<String, Vec<Cert>>,
    /// Every name that was read, with the SHA-256 (hex) of its bytes.
    pub(super) present: BTreeMap<String, String>,
    /// Managed names with a problem (already reported).
    pub(super) problems: BTreeSet<String>,
    /// An instance file could not be read: what the instance files hold is not fully known,
    /// so "holds a CA no instance file holds" cannot be told (it would be a false alarm).
    pub(super) unknown_instance_cas: bool,
}

/// name -> (kind, sha256) from the manifest.
pub(super) type ManifestFiles = BTreeMap<String, (String, String)>;

/// The manifest, read as the store reads it: not through a symlink, and parsed by the store's
/// own strict parser. `None` when there is none, or when it cannot be used (a problem then).
pub(super) fn read_manifest(dir: &Path, summary: &mut FolderSummary) -> Option<ManifestFiles> {
    let path = dir.join(MANIFEST_FILE_NAME);
    let data = match read_capped(&path, false) {
        Ok(d) => d,
        Err(ReadError::Missing) => return None,
        Err(e) => {
            summary.manifest_unreadable = true;
            summary
                .problems
                .push(format!("the manifest {MANIFEST_FILE_NAME} is {e}"));
            return None;
        }
    };
    let manifest = match Manifest::parse(&data) {
        Ok(m) => m,
        Err(reason) => {
            summary.manifest_unreadable = true;
            summary.problems.push(format!(
                "the manifest {MANIFEST_FILE_NAME} is not one certsync can use: {reason}"
            ));
            return None;
        }
    };
    summary.layout = Some(
        match manifest.layout {
            ManifestLayout::Flat => "flat",
            ManifestLayout::AtomicDir => "atomic-dir",
        }
        .to_string(),
    );
    let mut files = ManifestFiles::new();
    for (name, record) in &manifest.files {
        let kind = match record {
            Record::Instance { .. } => "instance",
            Record::Bundle { .. } => "bundle",
            Record::Hash { .. } => "hash",
            Record::Truststore { .. } => "truststore",
        }
        .to_string();
        summary
            .managed
            .entry(kind.clone())
            .or_default()
            .push(name.clone());
        files.insert(name.clone(), (kind, record.sha256().to_string()));
    }
    Some(files)
}

/// The files of a managed folder against each other and against the manifest.
pub(super) fn check_folder(
    manifest: &ManifestFiles,
    folder: &FolderFiles,
    summary: &mut FolderSummary,
) {
    let contents = &folder.contents;
    let short = |fp: &str| fp[..16.min(fp.len())].to_string();
    let describe =
        |fps: &BTreeSet<String>,
         cas: &BTreeMap<String, (String, OffsetDateTime, BTreeSet<String>)>| {
            fps.iter()
                .map(|fp| match cas.get(fp) {
                    Some((subject, _, _)) => format!("{subject} (sha256 {}...)", short(fp)),
                    None => format!("sha256 {}...", short(fp)),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
    let fps_of = |name: &str| -> Option<BTreeSet<String>> {
        contents
            .get(name)
            .map(|certs| certs.iter().map(Cert::fingerprint).collect())
    };

    let mut union: BTreeSet<String> = BTreeSet::new();
    let mut sm2: BTreeSet<String> = BTreeSet::new();
    for (name, (kind, sha)) in manifest {
        if folder.problems.contains(name) {
            continue;
        }
        let Some(digest) = folder.present.get(name) else {
            summary.stale.push(format!(
                "{name} ({kind}) is listed in the manifest but missing"
            ));
            continue;
        };
        if kind == "instance" {
            if digest != sha {
                summary.stale.push(format!(
                    "{name} changed since certsync wrote it (its SHA-256 is not the manifest's)"
                ));
            }
            if let Some(certs) = contents.get(name) {
                for cert in certs {
                    union.insert(cert.fingerprint());
                    if cert.sm2 {
                        sm2.insert(cert.fingerprint());
                    }
                }
            }
        }
    }

    for (name, (kind, _)) in manifest {
        let Some(fps) = fps_of(name) else { continue };
        match kind.as_str() {
            "bundle" | "truststore" => {
                let expected: BTreeSet<String> = if kind == "truststore" {
                    union.difference(&sm2).cloned().collect()
                } else {
                    union.clone()
                };
                let missing: BTreeSet<String> = expected.difference(&fps).cloned().collect();
                let extra: BTreeSet<String> = fps.difference(&expected).cloned().collect();
                if !missing.is_empty() {
                    summary.stale.push(format!(
                        "{name} ({kind}) lacks CA(s) the instance files hold: {}",
                        describe(&missing, &summary.cas)
                    ));
                }
                if !extra.is_empty() && !folder.unknown_instance_cas {
                    summary.stale.push(format!(
                        "{name} ({kind}) holds CA(s) no instance file holds: {}",
                        describe(&extra, &summary.cas)
                    ));
                }
            }
            "hash" => {
                let certs = &contents[name];
                let prefix = name.split('.').next().unwrap_or("");
                if certs.len() != 1 {
                    summary.stale.push(format!(
                        "{name} (hash file) holds {} certificates, not one",
                        certs.len()
                    ));
                }
                for cert in certs {
                    if cert.subject_hash_hex() != prefix {
                        summary.stale.push(format!(
                            "{name} (hash file) is named for another subject hash than its certificate's ({})",
                            cert.subject_hash_hex()
                        ));
                    }
                }
                let extra: BTreeSet<String> = fps.difference(&union).cloned().collect();
                if !extra.is_empty() && !folder.unknown_instance_cas {
                    summary.stale.push(format!(
                        "{name} (hash file) holds a CA no instance file holds: {}",
                        describe(&extra, &summary.cas)
                    ));
                }
            }
            _ => {}
        }
    }

    // With hash files in use, every CA of the instance files needs one.
    let hash_names: Vec<&String> = manifest
        .iter()
        .filter(|(_, (kind, _))| kind == "hash")
        .map(|(name, _)| name)
        .collect();
    if !hash_names.is_empty() {
        let hashed: BTreeSet<String> = hash_names
            .iter()
            .filter_map(|n| fps_of(n))
            .flatten()
            .collect();
        let missing: BTreeSet<String> = union.difference(&hashed).cloned().collect();
        if !missing.is_empty() {
            summary.stale.push(format!(
                "no <subject_hash>.<n> file for CA(s) the instance files hold: {}",
                describe(&missing, &summary.cas)
            ));
        }
    }
}
