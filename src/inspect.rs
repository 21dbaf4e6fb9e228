//! `certsync inspect`: what certificates a file or a trust folder holds (SPEC 2), and for a
//! trust folder what is stale or expiring.
//!
//! Owns: walking the given paths (a folder lists its visible entries, following the
//! atomic-dir layout's symlinks and skipping hidden names: the manifest, `..data`, the
//! generations, temporary files), parsing each file (PEM/DER, else PKCS#12 opened with the
//! conventional password `changeit`), the folder summary, and printing text or JSON.
//! Read-only: it never writes anything, and it reads the manifest with the store's parser
//! (`Manifest::parse`, pure) but not through the store, so that it works on any folder (even
//! one another certsync has locked).
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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::File;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::cert::{Cert, looks_like_pem, read_certs_lenient, rfc3339};
use crate::store::MANIFEST_FILE_NAME;
use crate::store::manifest::{Manifest, ManifestLayout, Record};
use crate::store::truststore::{self, Opened};
use crate::text::Untrusted;

/// The most `inspect` reads of one file: 64 MiB, the largest download certsync can be
/// configured to accept (`max_download_bytes`), and room for a bundle or truststore of some
/// 40,000 CAs. Anything larger is refused unread, so `inspect` never grows without bound.
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// The atomic-dir layout's link to the current generation (the store's `DATA_LINK`).
const DATA_LINK: &str = "..data";

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

/// Why a file was not read.
#[derive(Debug)]
enum ReadError {
    /// Nothing at the path.
    Missing,
    /// A symlink where none is followed.
    Symlink,
    /// A FIFO, device, socket or folder.
    NotRegular(&'static str),
    /// Larger than [`MAX_FILE_BYTES`] (its size in bytes).
    TooLarge(u64),
    /// open or read failed.
    Io(std::io::Error),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Missing => f.write_str("missing"),
            ReadError::Symlink => f.write_str("a symlink"),
            ReadError::NotRegular(what) => write!(
                f,
                "not a regular file ({what}); inspect reads only regular files and folders"
            ),
            ReadError::TooLarge(size) => write!(
                f,
                "larger than the {} MiB inspect reads of one file ({size} bytes)",
                MAX_FILE_BYTES / (1024 * 1024)
            ),
            ReadError::Io(e) => write!(f, "unreadable: {e}"),
        }
    }
}

fn type_name(t: FileType) -> &'static str {
    match t {
        FileType::RegularFile => "a regular file",
        FileType::Directory => "a folder",
        FileType::Symlink => "a symlink",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Unknown => "of an unknown type",
    }
}

/// Reads a regular file of at most [`MAX_FILE_BYTES`]. `follow`: whether a symlink at the
/// path itself is followed (yes for a path the user named, no for a managed name).
/// Opened non-blocking, so that a FIFO never waits for a writer; its type is then checked on
/// the open descriptor (no race with a rename), and the read is capped even if the file
/// grows meanwhile.
fn read_capped(path: &Path, follow: bool) -> Result<Vec<u8>, ReadError> {
    let mut flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NONBLOCK;
    if !follow {
        flags |= OFlags::NOFOLLOW;
    }
    let fd = match rustix::fs::open(path, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Err(ReadError::Missing),
        // What O_NOFOLLOW answers for a symlink.
        Err(rustix::io::Errno::LOOP) if !follow => return Err(ReadError::Symlink),
        Err(e) => return Err(ReadError::Io(e.into())),
    };
    let stat = rustix::fs::fstat(&fd).map_err(|e| ReadError::Io(e.into()))?;
    let kind = FileType::from_raw_mode(stat.st_mode);
    if kind != FileType::RegularFile {
        return Err(ReadError::NotRegular(type_name(kind)));
    }
    let size = u64::try_from(stat.st_size).unwrap_or(0);
    if size > MAX_FILE_BYTES {
        return Err(ReadError::TooLarge(size));
    }
    let mut data = Vec::new();
    File::from(fd)
        .take(MAX_FILE_BYTES.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(ReadError::Io)?;
    let read = u64::try_from(data.len()).unwrap_or(u64::MAX);
    if read > MAX_FILE_BYTES {
        return Err(ReadError::TooLarge(read));
    }
    Ok(data)
}

/// PEM or DER certificates, else a PKCS#12 file opened with `changeit`, from a file the user
/// named (symlinks followed).
fn read_file(path: &Path) -> Result<FileCerts, String> {
    let data = read_capped(path, true).map_err(|e| e.to_string())?;
    parse_file(&data)
}

/// The certificates of a file's content.
fn parse_file(data: &[u8]) -> Result<FileCerts, String> {
    let pem_error = match read_certs_lenient(data) {
        Ok(certs) => return Ok(FileCerts::Certs(certs)),
        Err(e) => e.reason,
    };
    match truststore::open(data, truststore::DEFAULT_PASSWORD) {
        Opened::Certs(ders) => ders
            .iter()
            .enumerate()
            .map(|(i, (der, _))| {
                Cert::from_der(der).map_err(|e| {
                    format!(
                        "a PKCS#12 truststore whose entry {} is not a certificate: {}",
                        i + 1,
                        e.reason
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(FileCerts::Certs),
        Opened::WrongPassword => Ok(FileCerts::Locked),
        // Neither: the PEM/DER reason is the one that helps.
        Opened::NotPkcs12(_) => Err(format!(
            "not a PEM or DER certificate: {}",
            plain_reason(data, &pem_error)
        )),
    }
}

/// Why data is neither PEM nor DER, in words: for text, that it holds no PEM block (the DER
/// parser's complaint about text means nothing).
fn plain_reason(data: &[u8], pem_or_der_error: &str) -> String {
    if data.iter().all(u8::is_ascii_whitespace) {
        return "the file is empty".into();
    }
    let text = data
        .iter()
        .all(|&b| b == b'\t' || b == b'\n' || b == b'\r' || (0x20..0x7f).contains(&b) || b >= 0x80);
    if text && !looks_like_pem(data) {
        return "text without a '-----BEGIN CERTIFICATE-----' block".into();
    }
    pem_or_der_error.to_string()
}

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

/// What was read of a folder's files.
#[derive(Default)]
struct FolderFiles {
    /// Certificates by name (files that parsed).
    contents: BTreeMap<String, Vec<Cert>>,
    /// Every name that was read, with the SHA-256 (hex) of its bytes.
    present: BTreeMap<String, String>,
    /// Managed names with a problem (already reported).
    problems: BTreeSet<String>,
    /// An instance file could not be read: what the instance files hold is not fully known,
    /// so "holds a CA no instance file holds" cannot be told (it would be a false alarm).
    unknown_instance_cas: bool,
}

/// name -> (kind, sha256) from the manifest.
type ManifestFiles = BTreeMap<String, (String, String)>;

/// The manifest, read as the store reads it: not through a symlink, and parsed by the store's
/// own strict parser. `None` when there is none, or when it cannot be used (a problem then).
fn read_manifest(dir: &Path, summary: &mut FolderSummary) -> Option<ManifestFiles> {
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
fn check_folder(manifest: &ManifestFiles, folder: &FolderFiles, summary: &mut FolderSummary) {
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
/// Subjects, issuers, paths and file names are printed escaped (SPEC 2).
pub fn render_text(found: &Inspection, now: OffsetDateTime) -> String {
    let mut out = String::new();
    for r in &found.certs {
        // Never overflows: both times lie within years -9999..=9999, whole seconds in an i64.
        let days_left = OffsetDateTime::parse(&r.not_after, &Rfc3339)
            .map(|t| (t - now).whole_days())
            .ok();
        let left = match days_left {
            Some(d) if d < 0 => format!(" (expired {} days ago)", d.saturating_neg()),
            Some(d) => format!(" ({d} days left)"),
            None => String::new(),
        };
        out.push_str(&format!(
            "{}\n  subject:      {}\n  issuer:       {}\n  serial:       {}\n  notBefore:    {}\n  notAfter:     {}{}\n  sha256:       {}\n  subject_hash: {}\n  CA:           {}\n",
            Untrusted(&r.path),
            Untrusted(&r.subject),
            Untrusted(&r.issuer),
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
    let mut out = format!(
        "\ntrust folder {}\n",
        Untrusted(&f.dir.display().to_string())
    );
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
                Untrusted(&names("bundle")),
                count("hash"),
                Untrusted(&names("truststore")),
            ));
        }
        None if f.manifest_unreadable => out.push_str(
            "  has a certsync manifest that cannot be used (see the problems below); the files are listed but not checked\n",
        ),
        None => out.push_str("  not managed by certsync (no manifest)\n"),
    }
    for s in &f.problems {
        out.push_str(&format!("  problem: {}\n", Untrusted(s)));
    }
    for s in &f.stale {
        out.push_str(&format!("  stale: {}\n", Untrusted(s)));
    }
    for name in &f.unmanaged {
        out.push_str(&format!("  not in the manifest: {}\n", Untrusted(name)));
    }
    let mut expiring = 0;
    for (fp, (subject, not_after, files)) in &f.cas {
        // Never overflows (see render_text).
        let days = (*not_after - now).whole_days();
        let files: Vec<&str> = files.iter().map(String::as_str).collect();
        let files = files.join(", ");
        let when = rfc3339(*not_after);
        let short = &fp[..16.min(fp.len())];
        if *not_after <= now {
            expiring += 1;
            out.push_str(&format!(
                "  expired: {} (sha256 {short}...) notAfter {when}, {} days ago; in {}\n",
                Untrusted(subject),
                days.saturating_neg(),
                Untrusted(&files)
            ));
        } else if days < EXPIRING_WITHIN_DAYS {
            expiring += 1;
            out.push_str(&format!(
                "  expiring: {} (sha256 {short}...) notAfter {when}, {days} days left; in {}\n",
                Untrusted(subject),
                Untrusted(&files)
            ));
        }
    }
    for note in &f.notes {
        out.push_str(&format!("  note: {}\n", Untrusted(note)));
    }
    if f.stale.is_empty() && f.unmanaged.is_empty() && f.problems.is_empty() && f.layout.is_some() {
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
