//! Reading one file for `inspect`: bounded, and never hanging on what is not a regular file.
//!
//! Owns: opening a path (non-blocking, a symlink followed or not as the caller says), the
//! checks on the open descriptor (regular file, at most [`MAX_FILE_BYTES`]), the reasons a
//! file was not read, and what a file's bytes hold (PEM or DER certificates, else a PKCS#12
//! truststore opened with `changeit`).
//! Must not: write anything, read more than [`MAX_FILE_BYTES`] of a file, or know about
//! folders or the manifest (`folder` and `manifest` do).

use std::fmt;
use std::fs::File;
use std::io::Read as _;
use std::path::Path;

use rustix::fs::{FileType, Mode, OFlags};

use super::MAX_FILE_BYTES;
use crate::cert::{Cert, looks_like_pem, read_certs_lenient};
use crate::store::truststore::{self, Opened};

pub(super) fn locked_reason() -> String {
    format!(
        "a PKCS#12 file that does not open with the default password \"{}\" (inspect has no password option)",
        truststore::DEFAULT_PASSWORD
    )
}

/// What one file holds.
pub(super) enum FileCerts {
    Certs(Vec<Cert>),
    /// A PKCS#12 file whose password is not `changeit`.
    Locked,
}

/// Why a file was not read.
#[derive(Debug)]
pub(super) enum ReadError {
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
pub(super) fn read_capped(path: &Path, follow: bool) -> Result<Vec<u8>, ReadError> {
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
pub(super) fn read_file(path: &Path) -> Result<FileCerts, String> {
    let data = read_capped(path, true).map_err(|e| e.to_string())?;
    parse_file(&data)
}

/// The certificates of a file's content.
pub(super) fn parse_file(data: &[u8]) -> Result<FileCerts, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_not_a_certificate_is_explained_in_words() {
        assert_eq!(plain_reason(b" \n\t", "x"), "the file is empty");
        assert_eq!(
            plain_reason(b"hello\n", "DER says no"),
            "text without a '-----BEGIN CERTIFICATE-----' block"
        );
        assert_eq!(
            plain_reason(&[0x30, 0x03, 0x00], "DER says no"),
            "DER says no"
        );
        let Err(reason) = parse_file(b"hello\n") else {
            panic!("text parsed as certificates");
        };
        assert_eq!(
            reason,
            "not a PEM or DER certificate: text without a '-----BEGIN CERTIFICATE-----' block"
        );
    }

    #[test]
    fn a_managed_name_is_read_without_following_a_symlink() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("ca.pem");
        std::fs::write(&file, b"data").unwrap();
        let link = tmp.path().join("link.pem");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(read_capped(&link, true).unwrap(), b"data");
        assert!(matches!(read_capped(&link, false), Err(ReadError::Symlink)));
        assert!(matches!(
            read_capped(&tmp.path().join("none"), true),
            Err(ReadError::Missing)
        ));
        let Err(e) = read_capped(tmp.path(), true) else {
            panic!("a folder was read as a file");
        };
        assert_eq!(
            e.to_string(),
            "not a regular file (a folder); inspect reads only regular files and folders"
        );
    }
}
