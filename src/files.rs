//! Reading the small files an operator names: the config file, `ca_file`, secret files, pid
//! files, `/etc/passwd`. Each read is capped and never blocks: a path that names a FIFO, a
//! device such as `/dev/zero`, or a file grown to gigabytes gets a clear error instead of a
//! hang or all the memory.
//!
//! Owns: only that rule. It must not interpret what it reads.

use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// The cap for configuration-like files (the config itself, `ca_file`, account databases).
pub const MAX_CONFIG_FILE: u64 = 16 << 20;

/// The cap for files that hold one value (a token, a key, a password, a pid).
pub const MAX_VALUE_FILE: u64 = 1 << 20;

/// Reads the regular file at `path`, at most `limit` bytes; a larger file, or anything that is
/// not a regular file (opened without blocking, so a FIFO is refused rather than waited on),
/// is an `InvalidData` error saying so.
pub fn read_capped(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)?;
    let meta = file.metadata()?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let what = if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else if kind.is_dir() {
            "a folder"
        } else {
            "not a regular file"
        };
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("it is {what}, not a regular file"),
        ));
    }
    let too_large = || {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("it is larger than {limit} bytes"),
        )
    };
    if meta.len() > limit {
        return Err(too_large());
    }
    let mut data = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    // The cap also holds if the file grows while it is read.
    file.take(limit.saturating_add(1)).read_to_end(&mut data)?;
    if data.len() as u64 > limit {
        return Err(too_large());
    }
    Ok(data)
}

/// [`read_capped`] as UTF-8 text.
pub fn read_capped_string(path: &Path, limit: u64) -> io::Result<String> {
    String::from_utf8(read_capped(path, limit)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "it is not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_fifos_folders_and_large_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for path in ["/dev/zero", "/dev/null"] {
            let e = read_capped(Path::new(path), 10).unwrap_err();
            assert!(e.to_string().contains("a device"), "{path}: {e}");
        }
        let fifo = dir.path().join("fifo");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        assert!(
            read_capped(&fifo, 10)
                .unwrap_err()
                .to_string()
                .contains("a FIFO")
        );
        assert!(
            read_capped(dir.path(), 10)
                .unwrap_err()
                .to_string()
                .contains("a folder")
        );
        let big = dir.path().join("big");
        std::fs::write(&big, [b'x'; 11]).unwrap();
        assert!(
            read_capped(&big, 10)
                .unwrap_err()
                .to_string()
                .contains("larger")
        );
        assert_eq!(read_capped(&big, 11).unwrap().len(), 11);
    }
}
