//! `certsync inspect`: what certificates a file or a trust folder holds.
//!
//! Owns: walking the given paths (a folder lists its regular files, skipping certsync's own
//! manifest, lock and temporary files), parsing each with the lenient reader, and printing text
//! or JSON. Read-only: it never writes anything.

use std::path::{Path, PathBuf};

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::cert::{Cert, read_certs_lenient, rfc3339};

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

/// A file that holds no certificate.
#[derive(Debug, thiserror::Error)]
#[error("{}: {reason}", path.display())]
pub struct InspectError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    pub reason: String,
}

/// Reads every path (folders one level deep) and returns the certificates found and the files
/// that were not certificates.
pub fn inspect(paths: &[PathBuf]) -> (Vec<CertReport>, Vec<InspectError>) {
    let mut reports = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        let files = match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => match folder_files(path) {
                Ok(files) => files,
                Err(e) => {
                    errors.push(InspectError {
                        path: path.clone(),
                        reason: e.to_string(),
                    });
                    continue;
                }
            },
            Ok(_) => vec![path.clone()],
            Err(e) => {
                errors.push(InspectError {
                    path: path.clone(),
                    reason: e.to_string(),
                });
                continue;
            }
        };
        for file in files {
            match std::fs::read(&file)
                .map_err(|e| e.to_string())
                .and_then(|data| read_certs_lenient(&data).map_err(|e| e.to_string()))
            {
                Ok(certs) => reports.extend(certs.iter().map(|c| report(&file, c))),
                Err(reason) => errors.push(InspectError { path: file, reason }),
            }
        }
    }
    (reports, errors)
}

fn folder_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // certsync's manifest, lock and temporary files, and other hidden files.
        if name.starts_with('.') {
            continue;
        }
        if std::fs::metadata(entry.path())?.is_file() {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
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

/// The text form: one block per certificate, with days left.
pub fn render_text(reports: &[CertReport], now: OffsetDateTime) -> String {
    let mut out = String::new();
    for r in reports {
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
    out
}
