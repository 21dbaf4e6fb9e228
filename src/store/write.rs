//! File-system primitives of the store: reading without following symlinks, atomic writes
//! (temp file with the final owner and mode, fsync, rename), in-place rewrites, removal, the
//! `..data` generations of the atomic-dir layout, the folder lock and fsync, and cleanup of
//! leftover temp files and generations.
//!
//! Owns: every system call the store makes on the trust folder. It knows nothing of
//! certificates or the manifest and never decides *what* to write; `store` does.

use std::fs::{self, File, Permissions};
use std::io::{self, Read, Write as _};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rustix::fs::{FileType, FlockOperation, Mode, OFlags};
use time::OffsetDateTime;

use super::StoreError;

/// Prefix of the temporary files; anything with it in the folder is certsync's leftover.
pub(crate) const TEMP_PREFIX: &str = ".certsync-tmp-";

/// The symlink to the current generation (atomic-dir layout), as Kubernetes names it.
pub(crate) const DATA_LINK: &str = "..data";

/// The symlink made next to [`DATA_LINK`] and renamed over it.
const DATA_TMP: &str = "..data_tmp";

/// Mode of a folder certsync creates (SPEC 7).
const DIR_MODE: u32 = 0o755;

/// Permission bits and, when configured, owner and group of every file written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Attrs {
    pub mode: u32,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

impl Attrs {
    /// For messages: `uid 65534 and gid 65534`, `uid 0`, `gid 10`.
    fn describe_owner(&self) -> String {
        match (self.uid, self.gid) {
            (Some(u), Some(g)) => format!("uid {u} and gid {g}"),
            (Some(u), None) => format!("uid {u}"),
            (None, Some(g)) => format!("gid {g}"),
            (None, None) => "its creator".into(),
        }
    }

    fn chowns(&self) -> bool {
        self.uid.is_some() || self.gid.is_some()
    }
}

/// A regular file found at a target name.
pub(crate) struct Existing {
    pub content: Vec<u8>,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl Existing {
    /// The file has these permission bits, and the owner and group asked for.
    pub fn has(&self, attrs: &Attrs) -> bool {
        self.mode == attrs.mode
            && attrs.uid.is_none_or(|u| u == self.uid)
            && attrs.gid.is_none_or(|g| g == self.gid)
    }
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
        uid: stat.st_uid,
        gid: stat.st_gid,
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

/// Reads a *managed* name, in either layout: a regular file, or the atomic-dir symlink
/// `name -> ..data/name` (read through `..data` into its generation, which must be one of
/// certsync's `..<timestamp>` folders; nothing else is followed). That symlink left dangling
/// (a crash between the steps of a swap) reads as missing, so the file is written again.
/// Any other symlink or non-file is [`StoreError::NotRegularFile`].
pub(crate) fn read_managed(dir: &Path, name: &str) -> Result<Option<Existing>, StoreError> {
    let path = dir.join(name);
    match visible_kind(dir, name)? {
        Visible::Missing => Ok(None),
        Visible::File => read_existing(&path),
        Visible::DataLink => match current_generation(dir)? {
            Some(generation) => read_existing(&dir.join(generation).join(name)),
            None => Ok(None),
        },
        Visible::Other => Err(StoreError::NotRegularFile { path }),
    }
}

/// What a visible name of the folder is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Visible {
    Missing,
    /// A regular file (flat layout).
    File,
    /// The symlink `name -> ..data/name` (atomic-dir layout).
    DataLink,
    /// Anything else: a foreign symlink, a folder, a device.
    Other,
}

pub(crate) fn visible_kind(dir: &Path, name: &str) -> Result<Visible, StoreError> {
    let path = dir.join(name);
    match fs::symlink_metadata(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Visible::Missing),
        Err(e) => Err(io_error(&path, "stat", e)),
        Ok(m) if m.file_type().is_file() => Ok(Visible::File),
        Ok(m) if m.file_type().is_symlink() => {
            let target = fs::read_link(&path).map_err(|e| io_error(&path, "read symlink", e))?;
            if target == data_link_target(name) {
                Ok(Visible::DataLink)
            } else {
                Ok(Visible::Other)
            }
        }
        Ok(_) => Ok(Visible::Other),
    }
}

/// Where the visible symlink of `name` points: `..data/name`.
pub(crate) fn data_link_target(name: &str) -> PathBuf {
    Path::new(DATA_LINK).join(name)
}

/// The generation `..data` points to, if `..data` is a symlink to one of certsync's
/// `..<timestamp>` folders that exists.
pub(crate) fn current_generation(dir: &Path) -> Result<Option<String>, StoreError> {
    let link = dir.join(DATA_LINK);
    let target = match fs::read_link(&link) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        // EINVAL: not a symlink.
        Err(e) if e.kind() == io::ErrorKind::InvalidInput => return Ok(None),
        Err(e) => return Err(io_error(&link, "read symlink", e)),
    };
    let Some(name) = target.to_str().filter(|n| is_generation_name(n)) else {
        return Ok(None);
    };
    match fs::symlink_metadata(dir.join(name)) {
        Ok(m) if m.file_type().is_dir() => Ok(Some(name.to_string())),
        _ => Ok(None),
    }
}

/// `..YYYY_MM_DD_HH_MM_SS.NNNNNNNNN`: the folders of the atomic-dir layout.
pub(crate) fn is_generation_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("..") else {
        return false;
    };
    let shape = b"dddd_dd_dd_dd_dd_dd.ddddddddd";
    rest.len() == shape.len()
        && rest.bytes().zip(shape.iter()).all(|(c, s)| match s {
            b'd' => c.is_ascii_digit(),
            other => c == *other,
        })
}

/// A new generation name from the clock (UTC, nanoseconds), never one that exists.
fn generation_name(dir: &Path) -> Result<String, StoreError> {
    let mut t = OffsetDateTime::from(SystemTime::now());
    loop {
        let name = format!(
            "..{:04}_{:02}_{:02}_{:02}_{:02}_{:02}.{:09}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            t.nanosecond()
        );
        if !exists_nofollow(&dir.join(&name))? {
            return Ok(name);
        }
        t += time::Duration::nanoseconds(1);
    }
}

/// Writes `content` to `dir/name` atomically: a temp file in `dir`, given its owner (fchown)
/// and `mode` (fchmod, so the umask does not matter) before any content, fsynced, then renamed
/// over the target. So no moment exists where the name holds the wrong owner, mode or a part
/// of the content. rename(2) replaces the name itself, so a symlink at the target is never
/// written through. The folder is not fsynced here: the caller does it once per batch.
pub(crate) fn write_atomic(
    dir: &Path,
    name: &str,
    content: &[u8],
    attrs: &Attrs,
) -> Result<(), StoreError> {
    let target = dir.join(name);
    let tmp = tempfile::Builder::new()
        .prefix(TEMP_PREFIX)
        .tempfile_in(dir)
        .map_err(|e| io_error(&target, "create temporary file for", e))?;
    let file = tmp.as_file();
    set_attrs(file, &target, attrs)?;
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

/// Owner and group first (chown may clear mode bits), then the mode.
fn set_attrs(file: &File, target: &Path, attrs: &Attrs) -> Result<(), StoreError> {
    if attrs.chowns() {
        std::os::unix::fs::fchown(file, attrs.uid, attrs.gid).map_err(|source| {
            StoreError::Chown {
                path: target.to_path_buf(),
                owner: attrs.describe_owner(),
                source,
            }
        })?;
    }
    file.set_permissions(Permissions::from_mode(attrs.mode))
        .map_err(|e| io_error(target, "set the mode of", e))
}

/// `write_mode = "in-place"`: rewrites the regular file at `dir/name` in its own inode
/// (owner and mode set first, then truncate, write, fsync), so a single-file bind mount of it
/// sees the new content. A reader can see it empty or partial for that moment, and a crash
/// can leave it partial (the next pass rewrites it): the trade-off the option documents.
/// `Ok(false)`: no regular file is there (missing, or the atomic-dir symlink), so the caller
/// creates it atomically instead.
pub(crate) fn write_in_place(
    dir: &Path,
    name: &str,
    content: &[u8],
    attrs: &Attrs,
) -> Result<bool, StoreError> {
    let target = dir.join(name);
    let flags = OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
    let fd = match rustix::fs::open(&target, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::LOOP) => return Ok(false),
        Err(e) => return Err(io_error(&target, "open for rewriting in place", e.into())),
    };
    let stat = rustix::fs::fstat(&fd).map_err(|e| io_error(&target, "stat", e.into()))?;
    if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
        return Err(StoreError::NotRegularFile { path: target });
    }
    let mut file = File::from(fd);
    set_attrs(&file, &target, attrs)?;
    file.set_len(0)
        .map_err(|e| io_error(&target, "truncate (in place)", e))?;
    file.write_all(content)
        .map_err(|e| io_error(&target, "write (in place)", e))?;
    file.sync_all()
        .map_err(|e| io_error(&target, "fsync (in place)", e))?;
    Ok(true)
}

/// Creates `dir/name` (which must not exist) with its owner and mode, writes and fsyncs it:
/// for the files of a generation that no reader can see yet.
fn write_new(dir: &Path, name: &str, content: &[u8], attrs: &Attrs) -> Result<(), StoreError> {
    let path = dir.join(name);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc_nofollow())
        .open(&path)
        .map_err(|e| io_error(&path, "create", e))?;
    set_attrs(&file, &path, attrs)?;
    file.write_all(content)
        .map_err(|e| io_error(&path, "write", e))?;
    file.sync_all().map_err(|e| io_error(&path, "fsync", e))
}

fn libc_nofollow() -> i32 {
    OFlags::NOFOLLOW.bits() as i32
}

/// A new generation folder `..<timestamp>` holding `files` (name, bytes): created, filled,
/// fsynced, but not yet visible. On failure it is removed again and the error names the file.
pub(crate) fn build_generation(
    dir: &Path,
    files: &[(&str, &[u8])],
    attrs: &Attrs,
) -> Result<String, StoreError> {
    let name = generation_name(dir)?;
    let path = dir.join(&name);
    fs::DirBuilder::new()
        .mode(DIR_MODE)
        .create(&path)
        .map_err(|e| io_error(&path, "create folder", e))?;
    let filled = (|| {
        fs::set_permissions(&path, Permissions::from_mode(DIR_MODE))
            .map_err(|e| io_error(&path, "set the mode of", e))?;
        run_parallel(files, |(file, content)| {
            write_new(&path, file, content, attrs)
        })?;
        sync_dir(open_dir(&path)?, &path)
    })();
    match filled {
        Ok(()) => Ok(name),
        Err(e) => {
            let _ = fs::remove_dir_all(&path);
            Err(e)
        }
    }
}

/// Runs `f` on every item, on a few threads when there are many (each waits on its own fsync);
/// the first error wins.
fn run_parallel<T: Sync>(
    items: &[T],
    f: impl Fn(&T) -> Result<(), StoreError> + Sync,
) -> Result<(), StoreError> {
    const THREADS: usize = 16;
    const MIN_PER_THREAD: usize = 8;
    if items.len() < 2 * MIN_PER_THREAD {
        return items.iter().try_for_each(&f);
    }
    let chunk = items.len().div_ceil(THREADS).max(MIN_PER_THREAD);
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| s.spawn(|| part.iter().try_for_each(&f)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect::<Result<Vec<()>, StoreError>>()
            .map(|_| ())
    })
}

/// Points `..data` at `generation` in one step: a `..data_tmp` symlink renamed over it.
pub(crate) fn swap_data_link(dir: &Path, generation: &str) -> Result<(), StoreError> {
    let tmp = dir.join(DATA_TMP);
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(&tmp, "remove stale", e)),
    }
    std::os::unix::fs::symlink(generation, &tmp)
        .map_err(|e| io_error(&tmp, "create symlink", e))?;
    fs::rename(&tmp, dir.join(DATA_LINK)).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_error(&dir.join(DATA_LINK), "rename ..data_tmp over", e)
    })
}

/// Makes the visible `dir/name` the symlink `..data/name`, replacing what is there (a managed
/// regular file when switching from the flat layout) in one rename.
pub(crate) fn link_visible(dir: &Path, name: &str) -> Result<(), StoreError> {
    let path = dir.join(name);
    let target = data_link_target(name);
    loop {
        let tmp = dir.join(format!("{TEMP_PREFIX}{:016x}", fastrand::u64(..)));
        match std::os::unix::fs::symlink(&target, &tmp) {
            Ok(()) => {
                return fs::rename(&tmp, &path).map_err(|e| {
                    let _ = fs::remove_file(&tmp);
                    io_error(&path, "rename a symlink over", e)
                });
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_error(&path, "create a temporary symlink for", e)),
        }
    }
}

/// Removes `..data`, `..data_tmp` and every generation folder but `keep`. Only called while the
/// manifest says the folder is in the atomic-dir layout.
pub(crate) fn remove_generations(dir: &Path, keep: Option<&str>) -> Result<(), StoreError> {
    if keep.is_none() {
        remove_if_symlink(&dir.join(DATA_LINK))?;
    }
    remove_if_symlink(&dir.join(DATA_TMP))?;
    let entries = fs::read_dir(dir).map_err(|e| io_error(dir, "list", e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_error(dir, "list", e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !is_generation_name(name) || Some(name) == keep {
            continue;
        }
        let path = entry.path();
        let is_dir = entry
            .file_type()
            .map_err(|e| io_error(&path, "stat", e))?
            .is_dir();
        if is_dir {
            // remove_dir_all does not follow symlinks inside the folder.
            fs::remove_dir_all(&path).map_err(|e| io_error(&path, "remove old generation", e))?;
        }
    }
    Ok(())
}

fn remove_if_symlink(path: &Path) -> Result<(), StoreError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            fs::remove_file(path).map_err(|e| io_error(path, "remove", e))
        }
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(path, "stat", e)),
    }
}

/// Removes a managed name: a regular file, or the atomic-dir symlink `..data/name` (only the
/// link; the generation keeps its file until the generation goes). `Ok(false)` when it was
/// already gone. Another symlink or a folder that has taken the name is refused: certsync did
/// not put it there.
pub(crate) fn remove_file(dir: &Path, name: &str) -> Result<bool, StoreError> {
    let path = &dir.join(name);
    match visible_kind(dir, name)? {
        Visible::Missing => return Ok(false),
        Visible::File | Visible::DataLink => {}
        Visible::Other => {
            return Err(StoreError::NotRegularFile {
                path: path.to_path_buf(),
            });
        }
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
