//! `certsync inspect`: what certificates a file or a trust folder holds (SPEC 2), and for a
//! trust folder what is stale or expiring.
//!
//! Owns: walking the given paths (a folder lists its visible entries, following the
//! atomic-dir layout's symlinks and skipping hidden names: the manifest, `..data`, the
//! generations, temporary files), parsing each file (PEM/DER, else PKCS#12 opened with the
//! conventional password `changeit`), the folder summary, and printing text or JSON.
//! Read-only: it never writes anything, and it reads the manifest as plain JSON rather than
//! through the store, so that it works on any folder (even one another certsync has locked).
//!
//! Choices where SPEC leaves room:
//! - `--json` prints exactly SPEC 2's array of certificate objects (a truststore's entries
//!   included, with the truststore as `path`); the folder summary is in the text form only.
//! - inspect has no password option: a truststore is opened with `changeit`. One that does not
//!   open (a `pkcs12_password_file` is in use) is a note of the folder summary, not a failure;
//!   named directly on the command line it is a failure (exit 1), as it cannot be read.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::cert::{Cert, read_certs_lenient, rfc3339};
use crate::store::MANIFEST_FILE_NAME;
use crate::store::truststore::{self, Opened};

/// A CA expiring within this many days is listed as expiring in a folder summary.
pub const EXPIRING_WITHIN_DAYS: i64 = 30;

/// One certificate as `inspect --json` prints it (SPEC 2).
#[derive(Debug, Serialize)]
pub struct CertReport {
    /// The file it was read from.
    pub path: String,
    /// Subject (RFC 4514).
    pub subject: String,
    /// Issuer (RFC 4514).
    pub issuer: String,
    /// Serial number, colon-separated hex.
    pub serial: String,
    /// notBefore, RFC 3339.
    pub not_before: String,
    /// notAfter, RFC 3339.
    pub not_after: String,
    /// SHA-256 fingerprint, lower-case hex.
    pub sha256: String,
    /// OpenSSL subject hash, 8 lower-case hex digits.
    pub subject_hash: String,
    /// A CA (basicConstraints cA=TRUE or a self-signed v1 root).
    pub is_ca: bool,
}

/// A file that holds no certificate (or cannot be read).
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct InspectError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub reason: String,
}

/// Everything `inspect` found. Serialises as SPEC 2's JSON array of certificates.
#[derive(Debug, Default)]
pub struct Inspection {
    /// Every certificate, file by file.
    pub certs: Vec<CertReport>,
    /// One per folder given.
    pub folders: Vec<FolderSummary>,
}

impl Serialize for Inspection {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.certs.serialize(s)
    }
}

/// What a folder holds, as a whole: its layout, the managed files by role, and what is stale.
#[derive(Debug, Default)]
pub struct FolderSummary {
    pub dir: PathBuf,
    /// `Some("flat" | "atomic-dir")` from the manifest; `None`: no certsync manifest.
    pub layout: Option<String>,
    /// Managed names by kind (`instance`, `bundle`, `hash`, `truststore`), from the manifest.
    pub managed: BTreeMap<String, Vec<String>>,
    /// Disagreements between the files (each a sentence naming the file).
    pub stale: Vec<String>,
    /// Visible names the manifest does not list.
    pub unmanaged: Vec<String>,
    /// Things that could not be checked.
    pub notes: Vec<String>,
    /// Every distinct CA found in the folder: fingerprint -> (subject, notAfter, files).
    pub cas: BTreeMap<String, (String, OffsetDateTime, BTreeSet<String>)>,
}

/// Reads every path (folders one level deep) and returns what was found and the files that
/// were not certificates.
pub fn inspect(paths: &[PathBuf]) -> (Inspection, Vec<InspectError>) {
    let mut found = Inspection::default();
    let mut errors = Vec::new();
    for path in paths {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => match inspect_folder(path, &mut found, &mut errors) {
                Ok(summary) => found.folders.push(summary),
                Err(e) => errors.push(InspectError {
                    path: path.clone(),
                    reason: e.to_string(),
                }),
            },
            Ok(_) => match read_file(path) {
                Ok(FileCerts::Certs(certs)) => {
                    found.certs.extend(certs.iter().map(|c| report(path, c)))
                }
                Ok(FileCerts::Locked) => errors.push(InspectError {
                    path: path.clone(),
                    reason: locked_reason(),
                }),
                Err(reason) => errors.push(InspectError {
                    path: path.clone(),
                    reason,
                }),
            },
            Err(e) => errors.push(InspectError {
                path: path.clone(),
                reason: e.to_string(),
            }),
        }
    }
    (found, errors)
}

fn locked_reason() -> String {
    format!(
        "a PKCS#12 file that does not open with the default password \"{}\" (inspect has no password option)",
        truststore::DEFAULT_PASSWORD
    )
}

/// What one file holds.
enum FileCerts {
    Certs(Vec<Cert>),
    /// A PKCS#12 file whose password is not `changeit`.
    Locked,
}

/// PEM or DER certificates, else a PKCS#12 file opened with `changeit`.
fn read_file(path: &Path) -> Result<FileCerts, String> {
    let data = std::fs::read(path).map_err(|e| e.to_string())?;
    let pem_error = match read_certs_lenient(&data) {
        Ok(certs) => return Ok(FileCerts::Certs(certs)),
        Err(e) => e.to_string(),
    };
    match truststore::open(&data, truststore::DEFAULT_PASSWORD) {
        Opened::Certs(ders) => ders
            .iter()
            .map(|(der, _)| Cert::from_der(der).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()
            .map(FileCerts::Certs),
        Opened::WrongPassword => Ok(FileCerts::Locked),
        // Neither: the PEM/DER reason is the one that helps.
        Opened::NotPkcs12(_) => Err(pem_error),
    }
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
fn inspect_folder(
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

    let mut contents: BTreeMap<String, Vec<Cert>> = BTreeMap::new();
    for name in folder_files(dir)? {
        let path = dir.join(&name);
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_file() => {}
            Ok(_) => continue,
            Err(e) => {
                // A dangling symlink, say.
                if kind_of(&name).is_some() {
                    summary.stale.push(format!(
                        "{name} is listed in the manifest but unreadable: {e}"
                    ));
                } else {
                    summary.unmanaged.push(name);
                }
                continue;
            }
        }
        if manifest.is_some() && kind_of(&name).is_none() {
            summary.unmanaged.push(name.clone());
        }
        match read_file(&path) {
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
                contents.insert(name, certs);
            }
            Ok(FileCerts::Locked) => summary.notes.push(format!(
                "{name} does not open with the default password \"{}\" (a pkcs12_password_file is in use?); its entries are not listed or checked",
                truststore::DEFAULT_PASSWORD
            )),
            Err(reason) => errors.push(InspectError { path, reason }),
        }
    }

    if let Some(manifest) = &manifest {
        check_folder(manifest, &contents, dir, &mut summary);
    } else {
        summary.notes.push(format!(
            "no certsync manifest ({MANIFEST_FILE_NAME}): the files are listed but not checked against each other"
        ));
    }
    Ok(summary)
}

/// name -> (kind, sha256) from the manifest, read as plain JSON.
type ManifestFiles = BTreeMap<String, (String, String)>;

fn read_manifest(dir: &Path, summary: &mut FolderSummary) -> Option<ManifestFiles> {
    let path = dir.join(MANIFEST_FILE_NAME);
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            summary.notes.push(format!("{MANIFEST_FILE_NAME}: {e}"));
            return None;
        }
    };
    let value: serde_json::Value = match serde_json::from_slice(&data) {
        Ok(v) => v,
        Err(e) => {
            summary
                .notes
                .push(format!("{MANIFEST_FILE_NAME} is not valid JSON: {e}"));
            return None;
        }
    };
    summary.layout = Some(value["layout"].as_str().unwrap_or("flat").to_string());
    let mut files = ManifestFiles::new();
    for (name, record) in value["files"].as_object().into_iter().flatten() {
        let kind = record["kind"].as_str().unwrap_or("?").to_string();
        let sha = record["sha256"].as_str().unwrap_or("").to_string();
        summary
            .managed
            .entry(kind.clone())
            .or_default()
            .push(name.clone());
        files.insert(name.clone(), (kind, sha));
    }
    Some(files)
}

/// The files of a managed folder against each other and against the manifest.
fn check_folder(
    manifest: &ManifestFiles,
    contents: &BTreeMap<String, Vec<Cert>>,
    dir: &Path,
    summary: &mut FolderSummary,
) {
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
        let path = dir.join(name);
        let exists = std::fs::metadata(&path).is_ok();
        if !exists {
            summary.stale.push(format!(
                "{name} ({kind}) is listed in the manifest but missing"
            ));
            continue;
        }
        if kind == "instance" {
            if let Ok(data) = std::fs::read(&path)
                && hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&data)) != *sha
            {
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
                if !extra.is_empty() {
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
                if !extra.is_empty() {
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

fn report(path: &Path, cert: &Cert) -> CertReport {
    CertReport {
        path: path.display().to_string(),
        subject: cert.subject.clone(),
        issuer: cert.issuer.clone(),
        serial: cert.serial.clone(),
        not_before: rfc3339(cert.not_before),
        not_after: rfc3339(cert.not_after),
        sha256: cert.fingerprint(),
        subject_hash: cert.subject_hash_hex(),
        is_ca: cert.is_ca(),
    }
}

/// The text form: one block per certificate, with days left, then a summary per folder.
pub fn render_text(found: &Inspection, now: OffsetDateTime) -> String {
    let mut out = String::new();
    for r in &found.certs {
        let days_left = OffsetDateTime::parse(&r.not_after, &Rfc3339)
            .map(|t| (t - now).whole_days())
            .ok();
        let left = match days_left {
            Some(d) if d < 0 => format!(" (expired {} days ago)", -d),
            Some(d) => format!(" ({d} days left)"),
            None => String::new(),
        };
        out.push_str(&format!(
            "{}\n  subject:      {}\n  issuer:       {}\n  serial:       {}\n  notBefore:    {}\n  notAfter:     {}{}\n  sha256:       {}\n  subject_hash: {}\n  CA:           {}\n",
            r.path,
            r.subject,
            r.issuer,
            r.serial,
            r.not_before,
            r.not_after,
            left,
            r.sha256,
            r.subject_hash,
            if r.is_ca { "yes" } else { "no" }
        ));
    }
    for folder in &found.folders {
        out.push_str(&render_summary(folder, now));
    }
    out
}

fn render_summary(f: &FolderSummary, now: OffsetDateTime) -> String {
    let mut out = format!("\ntrust folder {}\n", f.dir.display());
    match &f.layout {
        Some(layout) => {
            let count = |kind: &str| f.managed.get(kind).map_or(0, Vec::len);
            let names = |kind: &str| {
                f.managed
                    .get(kind)
                    .map(|v| v.join(", "))
                    .unwrap_or_else(|| "none".into())
            };
            out.push_str(&format!(
                "  layout {layout}; managed: {} instance file(s), bundle {}, {} hash file(s), truststore {}\n",
                count("instance"),
                names("bundle"),
                count("hash"),
                names("truststore"),
            ));
        }
        None => out.push_str("  not managed by certsync (no manifest)\n"),
    }
    for s in &f.stale {
        out.push_str(&format!("  stale: {s}\n"));
    }
    for name in &f.unmanaged {
        out.push_str(&format!("  not in the manifest: {name}\n"));
    }
    let mut expiring = 0;
    for (fp, (subject, not_after, files)) in &f.cas {
        let days = (*not_after - now).whole_days();
        let files: Vec<&str> = files.iter().map(String::as_str).collect();
        let when = rfc3339(*not_after);
        if *not_after <= now {
            expiring += 1;
            out.push_str(&format!(
                "  expired: {subject} (sha256 {}...) notAfter {when}, {} days ago; in {}\n",
                &fp[..16],
                -days,
                files.join(", ")
            ));
        } else if days < EXPIRING_WITHIN_DAYS {
            expiring += 1;
            out.push_str(&format!(
                "  expiring: {subject} (sha256 {}...) notAfter {when}, {days} days left; in {}\n",
                &fp[..16],
                files.join(", ")
            ));
        }
    }
    for note in &f.notes {
        out.push_str(&format!("  note: {note}\n"));
    }
    if f.stale.is_empty() && f.unmanaged.is_empty() && f.layout.is_some() {
        out.push_str(
            "  nothing stale: every file agrees with the instance files and the manifest\n",
        );
    }
    if expiring == 0 {
        out.push_str(&format!(
            "  nothing expires within {EXPIRING_WITHIN_DAYS} days ({} CA(s))\n",
            f.cas.len()
        ));
    }
    out
}
