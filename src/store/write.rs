//! File-system primitives of the store: reading without following symlinks, atomic writes
//! (temp file with the final mode, fsync, rename), removal, the folder lock and fsync, and
//! cleanup of leftover temp files.
//!
//! Owns: every system call the store makes on the trust folder. It knows nothing of
//! certificates or the manifest and never decides *what* to write; `store` does.

use std::fs::{self, File, Permissions};
use std::io::{self, Read, Write as _};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, FlockOperation, Mode, OFlags};

use super::StoreError;

/// Prefix of the temporary files; anything with it in the folder is certsync's leftover.
pub(crate) const TEMP_PREFIX: &str = ".certsync-tmp-";

/// Mode of a folder certsync creates (SPEC 7).
const DIR_MODE: u32 = 0o755;

/// A regular file found at a target name.
pub(crate) struct Existing {
    pub content: Vec<u8>,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
}

/// Reads a regular file without following a symlink at its name. `Ok(None)`: nothing there.
/// A symlink, folder, FIFO or device in the way is [`StoreError::NotRegularFile`].
pub(crate) fn read_existing(path: &Path) -> Result<Option<Existing>, StoreError> {
    // NONBLOCK so that a FIFO in the way cannot hang the pass.
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
    let fd = match rustix::fs::open(path, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        // ELOOP is what O_NOFOLLOW answers for a symlink.
        Err(rustix::io::Errno::LOOP) => {
            return Err(StoreError::NotRegularFile {
                path: path.to_path_buf(),
            });
        }
        Err(e) => return Err(io_error(path, "open", e.into())),
    };
    let stat = rustix::fs::fstat(&fd).map_err(|e| io_error(path, "stat", e.into()))?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Err(StoreError::NotRegularFile {
            path: path.to_path_buf(),
        });
    }
    let mut file = File::from(fd);
    let mut content = Vec::with_capacity(stat.st_size.max(0) as usize);
    file.read_to_end(&mut content)
        .map_err(|e| io_error(path, "read", e))?;
    Ok(Some(Existing {
        content,
        mode: stat.st_mode & 0o7777,
    }))
}

/// Whether something (of any type, symlinks not followed) exists at `path`.
pub(crate) fn exists_nofollow(path: &Path) -> Result<bool, StoreError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error(path, "stat", e)),
    }
}

/// Writes `content` to `dir/name` atomically: a temp file in `dir`, given `mode` before any
/// content (fchmod, so the umask does not matter), fsynced, then renamed over the target.
/// rename(2) replaces the name itself, so a symlink at the target is never written through.
/// The folder is not fsynced here: the caller does it once per batch.
pub(crate) fn write_atomic(
    dir: &Path,
    name: &str,
    content: &[u8],
    mode: u32,
) -> Result<(), StoreError> {
    let target = dir.join(name);
    let tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)
        .map_err(|e| io_error(&target, "create temporary file for", e))?;
    let file = tmp.as_file();
    file.set_permissions(Permissions::from_mode(mode))
        .map_err(|e| io_error(&target, "set the mode of the temporary file for", e))?;
    (&*file)
        .write_all(content)
        .map_err(|e| io_error(&target, "write temporary file for", e))?;
    file.sync_all()
        .map_err(|e| io_error(&target, "fsync temporary file for", e))?;
    // On failure the temp file is removed when `PersistError` drops it.
    tmp.persist(&target)
        .map_err(|e| io_error(&target, "rename temporary file over", e.error))?;
    Ok(())
}

/// Removes a managed file. `Ok(false)` when it was already gone. A symlink or folder that has
/// taken the name is refused: certsync did not put it there.
pub(crate) fn remove_file(path: &Path) -> Result<bool, StoreError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_file() => {}
        Ok(_) => {
            return Err(StoreError::NotRegularFile {
                path: path.to_path_buf(),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_error(path, "stat", e)),
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error(path, "remove", e)),
    }
}

/// Creates `dir` and its missing parents with mode 0755 (umask-proof: each folder created here
/// is chmod-ed explicitly).
pub(crate) fn create_dir(dir: &Path) -> Result<(), StoreError> {
    let mut missing: Vec<PathBuf> = Vec::new();
    let mut cur = Some(dir);
    while let Some(p) = cur {
        if exists_nofollow(p).map_err(|e| create_dir_error(dir, e))? {
            break;
        }
        missing.push(p.to_path_buf());
        cur = p.parent();
    }
    for p in missing.iter().rev() {
        match fs::DirBuilder::new().mode(DIR_MODE).create(p) {
            Ok(()) => {}
            // Another process made it meanwhile: not ours to chmod.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(StoreError::CreateDir {
                    path: p.clone(),
                    source: e,
                });
            }
        }
        fs::set_permissions(p, Permissions::from_mode(DIR_MODE)).map_err(|e| {
            StoreError::CreateDir {
                path: p.clone(),
                source: e,
            }
        })?;
    }
    Ok(())
}

fn create_dir_error(dir: &Path, e: StoreError) -> StoreError {
    match e {
        StoreError::Io { source, .. } => StoreError::CreateDir {
            path: dir.to_path_buf(),
            source,
        },
        other => other,
    }
}

/// Opens the folder (for fsync) and takes an exclusive, non-blocking flock on it, so a second
/// certsync on the same folder fails with [`StoreError::Locked`]. Locking the folder itself
/// (not a lock file) leaves no file behind that the manifest would have to explain.
pub(crate) fn open_and_lock_dir(dir: &Path) -> Result<OwnedFd, StoreError> {
    let fd = open_dir(dir)?;
    match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(fd),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(StoreError::Locked {
            path: dir.to_path_buf(),
        }),
        Err(e) => Err(io_error(dir, "lock", e.into())),
    }
}

fn open_dir(dir: &Path) -> Result<OwnedFd, StoreError> {
    rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_error(dir, "open folder", e.into()))
}

/// fsync of the folder: makes the renames and removals of a batch durable.
pub(crate) fn sync_dir(fd: impl AsFd, dir: &Path) -> Result<(), StoreError> {
    rustix::fs::fsync(fd).map_err(|e| io_error(dir, "fsync folder", e.into()))
}

/// Removes every `.certsync-tmp-*` entry left by a crash. Only called with the lock held, so
/// no other certsync can be writing them.
pub(crate) fn remove_temp_files(dir: &Path) -> Result<(), StoreError> {
    let entries = fs::read_dir(dir).map_err(|e| io_error(dir, "list", e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_error(dir, "list", e))?;
        let name = entry.file_name();
        if !name.as_encoded_bytes().starts_with(TEMP_PREFIX.as_bytes()) {
            continue;
        }
        let path = entry.path();
        let file_type = entry.file_type().map_err(|e| io_error(&path, "stat", e))?;
        // unlink never follows a symlink; a folder with the prefix is not ours.
        if file_type.is_dir() {
            continue;
        }
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&path, "remove leftover temporary file", e)),
        }
    }
    Ok(())
}

pub(crate) fn io_error(path: &Path, op: &'static str, source: io::Error) -> StoreError {
    StoreError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}
