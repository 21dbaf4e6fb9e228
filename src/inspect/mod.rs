//! `certsync inspect`: what certificates a file or a trust folder holds (SPEC 2), and for a
//! trust folder what is stale or expiring.
//!
//! Owns: walking the given paths (a folder lists its visible entries, following the
//! atomic-dir layout's symlinks and skipping hidden names: the manifest, `..data`, the
//! generations, temporary files), parsing each file (PEM/DER, else PKCS#12 opened with the
//! conventional password `changeit`), the folder summary, and printing text or JSON.
//! Read-only: it never writes anything, and it reads the manifest with the store's one parser
//! (`Manifest::parse`, pure) but not through the store, so that it works on any folder (even
//! one another certsync has locked).
//!
//! This file owns the results' types (SPEC 2's JSON objects, the folder summary) and the walk
//! over the paths given; the rest is split by concern: `read` (bounded reads of one file and
//! what it holds), `folder` (one folder's files, managed names as the store sees them),
//! `manifest` (the manifest through the store's reader, and the files checked against it and
//! each other) and `render` (the text form; the JSON form is the types' `Serialize`).
//!
//! Reads are bounded: a file is read only if it is a regular file (opened non-blocking, so a
//! FIFO never hangs it; `/dev/zero` is refused) of at most [`MAX_FILE_BYTES`]. A managed name
//! is examined as the store sees it, symlinks not followed (except the atomic-dir layout's own
//! `name -> ..data/name`): one that became a symlink, a folder, a FIFO or unreadable is a
//! problem of the folder summary, since certsync can no longer update it.
//!
//! Choices where SPEC leaves room:
//! - `--json` prints exactly SPEC 2's array of certificate objects (a truststore's entries
//!   included, with the truststore as `path`); the folder summary is in the text form only.
//! - inspect has no password option: a truststore is opened with `changeit`. One that does not
//!   open (a `pkcs12_password_file` is in use) is a note of the folder summary, not a failure;
//!   named directly on the command line it is a failure (exit 1), as it cannot be read.

mod folder;
mod manifest;
mod read;
mod render;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;
use time::OffsetDateTime;

use crate::cert::{Cert, rfc3339};
use crate::text::Untrusted;
use folder::inspect_folder;
use read::{FileCerts, locked_reason, read_file};

pub use render::render_text;

/// The most `inspect` reads of one file: 64 MiB, the largest download certsync can be
/// configured to accept (`max_download_bytes`), and room for a bundle or truststore of some
/// 40,000 CAs. Anything larger is refused unread, so `inspect` never grows without bound.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

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

/// A file that holds no certificate (or cannot be read). Shown escaped: a path or a reason
/// can carry text from outside.
#[derive(Debug, thiserror::Error)]
#[error("{}: {}", Untrusted(&path.display().to_string()), Untrusted(reason))]
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
    /// The folder as given.
    pub dir: PathBuf,
    /// `Some("flat" | "atomic-dir")` from the manifest; `None`: no certsync manifest (or one
    /// that cannot be read, see `problems`).
    pub layout: Option<String>,
    /// There is a manifest, but it cannot be read or parsed (the reason is in `problems`).
    pub manifest_unreadable: bool,
    /// Managed names by kind (`instance`, `bundle`, `hash`, `truststore`), from the manifest.
    pub managed: BTreeMap<String, Vec<String>>,
    /// Disagreements between the files (each a sentence naming the file).
    pub stale: Vec<String>,
    /// Managed names certsync can no longer update or read: replaced by a symlink, no longer
    /// a regular file, unreadable, too large; or a manifest that cannot be read.
    pub problems: Vec<String>,
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
