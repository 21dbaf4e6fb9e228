//! File-system primitives of the store, all relative to the trust folder's descriptor: reading
//! without following symlinks, atomic writes (temp file with the final owner and mode, fsync,
//! rename), in-place rewrites, removal, the `..data` generations of the atomic-dir layout, the
//! folder lock and fsync, and cleanup of leftover temp files and generations.
//!
//! Owns: every system call the store makes on the trust folder. The folder is opened once
//! ([`Folder::open`]) and every later call is an `*at` call on that descriptor with a plain
//! file name (never a path), never following a symlink (SPEC 7): swapping the folder's path
//! for a symlink, or a file in it for a symlink or a hard link, cannot make certsync write,
//! read or remove anything outside the folder it locked. [`Folder::check_path`] tells the
//! store whether the configured path still names that folder. It knows nothing of
//! certificates or the manifest and never decides *what* to write; `store` does.
//!
//! Hand-written rather than `tempfile`/`std::fs`: those work by path, and the point here is to
//! never resolve a path again after the folder was opened.
//!
//! About 1,040 lines on purpose: every system call on the trust folder stays in this one file, so
//! that the order that makes each write crash-safe, and the rule that nothing is followed or
//! resolved by path, can be checked in one place.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rustix::fs::{AtFlags, FileType, FlockOperation, Gid, Mode, OFlags, Uid};
use rustix::io::Errno;

use super::{StoreError, StoreOptions};

/// Prefix of the temporary files; anything with it in the folder is certsync's leftover.
pub(crate) const TEMP_PREFIX: &str = ".certsync-tmp-";

/// The symlink to the current generation (atomic-dir layout), as Kubernetes names it.
pub(crate) const DATA_LINK: &str = "..data";

/// The symlink made next to [`DATA_LINK`] and renamed over it.
const DATA_TMP: &str = "..data_tmp";

/// Mode of a folder certsync creates (SPEC 7).
const DIR_MODE: u32 = 0o755;
/// From this many files on, a batch is made durable by one syncfs(2) of the file system
/// rather than an fsync(2) per file (a flat group commit, a new generation).
pub(super) const GROUP_SYNC_MIN: usize = 16;

/// The largest file the store reads back. Its own largest file is a bundle or truststore of
/// every CA (about 1.7 KiB of PEM each: 10,000 distinct CAs are 17 MiB); anything larger at a
/// managed name was not written by certsync, and reading it whole would cost that much memory.
pub(crate) const MAX_READ_BYTES: u64 = 64 << 20;

/// Permission bits and, when configured, owner and group of every file written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Attrs {
    pub mode: u32,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

impl StoreOptions {
    /// The attributes every file written gets under these options.
    pub(crate) fn attrs(&self) -> Attrs {
        Attrs {
            mode: self.mode,
            uid: self.owner,
            gid: self.group,
        }
    }
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

/// A regular file found at a target name: its bytes (`C`), or the file opened to read them
/// as they are needed ([`Opened`]).
pub(crate) struct Existing<C = Vec<u8>> {
    pub content: C,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// A regular file opened for reading, not read yet (at most [`MAX_READ_BYTES`] when opened).
pub(crate) struct Opened {
    pub file: std::fs::File,
    /// Its size when it was opened.
    pub size: u64,
}

impl<C> Existing<C> {
    /// The file has these permission bits, and the owner and group asked for.
    pub(super) fn has(&self, attrs: &Attrs) -> bool {
        self.mode == attrs.mode
            && attrs.uid.is_none_or(|u| u == self.uid)
            && attrs.gid.is_none_or(|g| g == self.gid)
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

/// A file written under a temporary name by [`Folder::stage`], waiting to be synced and
/// published (or discarded).
#[derive(Debug)]
pub(crate) struct Staged {
    tmp: String,
    name: String,
}

/// An open folder: the trust folder, or one generation inside it. `path` is only for
/// messages; no call resolves it again.
#[derive(Debug)]
pub(crate) struct Folder {
    fd: OwnedFd,
    path: PathBuf,
    /// Device and inode when opened.
    id: (u64, u64),
}

impl Folder {
    /// Opens the configured trust folder (the path may go through symlinks the operator
    /// made; what it names now is the folder from here on).
    pub(super) fn open(path: &Path) -> Result<Folder, StoreError> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_error(path, "open folder", e.into()))?;
        Folder::from_fd(fd, path.to_path_buf())
    }

    /// Opens the trust folder if it exists (`None` if not): for read-only stores.
    pub(super) fn open_existing(path: &Path) -> Result<Option<Folder>, StoreError> {
        match Folder::open(path) {
            Ok(f) => Ok(Some(f)),
            Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn from_fd(fd: OwnedFd, path: PathBuf) -> Result<Folder, StoreError> {
        let stat = rustix::fs::fstat(&fd).map_err(|e| io_error(&path, "stat", e.into()))?;
        Ok(Folder {
            fd,
            path,
            id: (stat.st_dev, stat.st_ino),
        })
    }

    /// Opens the folder `name` inside this one, never through a symlink. `Ok(None)`: nothing
    /// (or no folder) by that name.
    fn open_sub(&self, name: &str) -> Result<Option<Folder>, StoreError> {
        let path = self.join(name);
        match rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => Folder::from_fd(fd, path).map(Some),
            Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP) => Ok(None),
            Err(e) => Err(io_error(&path, "open folder", e.into())),
        }
    }

    /// The folder's path as configured (for messages).
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// `path/name`, for messages.
    pub(super) fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Takes an exclusive, non-blocking flock on the folder, so a second certsync on the same
    /// folder fails with [`StoreError::Locked`]. Locking the folder itself (not a lock file)
    /// leaves no file behind that the manifest would have to explain.
    ///
    /// A lock that is busy is tried again for about an eighth of a second before it counts as
    /// held: a child process of ours between fork(2) and exec(2) (a hook, or a tool a test
    /// runs) holds a copy of the folder's descriptor, and with it the lock of a store just
    /// closed, for that moment. Another certsync holding the folder is still refused.
    pub(super) fn lock(&self) -> Result<(), StoreError> {
        let mut wait = std::time::Duration::from_millis(1);
        loop {
            match rustix::fs::flock(&self.fd, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Ok(()),
                Err(Errno::WOULDBLOCK) if wait <= std::time::Duration::from_millis(64) => {
                    std::thread::sleep(wait);
                    wait *= 2;
                }
                Err(Errno::WOULDBLOCK) => {
                    return Err(StoreError::Locked {
                        path: self.path.clone(),
                    });
                }
                Err(Errno::INTR) => {}
                Err(e) => return Err(io_error(&self.path, "lock", e.into())),
            }
        }
    }

    /// Whether the configured path still names this folder (same device and inode). Someone
    /// who can rename the folder or put a symlink in its place must not steer the writes.
    pub(super) fn check_path(&self) -> Result<(), StoreError> {
        let now = match rustix::fs::stat(&self.path) {
            Ok(st) => Some((st.st_dev, st.st_ino)),
            Err(Errno::NOENT) => None,
            Err(e) => return Err(io_error(&self.path, "stat", e.into())),
        };
        if now == Some(self.id) {
            return Ok(());
        }
        let is_link = rustix::fs::lstat(&self.path)
            .map(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink)
            .unwrap_or(false);
        Err(StoreError::FolderMoved {
            path: self.path.clone(),
            now: match now {
                None => "missing".into(),
                Some(_) if is_link => "a symlink to another folder".into(),
                Some(_) => "another folder".into(),
            },
        })
    }

    /// fsync of the folder: makes the renames and removals of a batch durable.
    pub(super) fn sync(&self) -> Result<(), StoreError> {
        rustix::fs::fsync(&self.fd).map_err(|e| io_error(&self.path, "fsync folder", e.into()))
    }

    /// Reads the regular file `name` without following a symlink. `Ok(None)`: nothing there.
    /// A symlink, folder, FIFO or device in the way is [`StoreError::NotRegularFile`]; a file
    /// larger than [`MAX_READ_BYTES`] is refused before it is read.
    pub(super) fn read_file(&self, name: &str) -> Result<Option<Existing>, StoreError> {
        let Some(opened) = self.open_file(name)? else {
            return Ok(None);
        };
        let path = self.join(name);
        let Opened { file, size } = opened.content;
        let mut content = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        // The cap also holds if the file grows while it is read.
        let mut file = io::Read::take(file, MAX_READ_BYTES + 1);
        io::Read::read_to_end(&mut file, &mut content).map_err(|e| io_error(&path, "read", e))?;
        if content.len() as u64 > MAX_READ_BYTES {
            return Err(StoreError::TooLarge {
                path,
                size: content.len() as u64,
                limit: MAX_READ_BYTES,
            });
        }
        Ok(Some(Existing {
            content,
            mode: opened.mode,
            uid: opened.uid,
            gid: opened.gid,
        }))
    }

    /// Opens the regular file `name` as [`Folder::read_file`] reads it (same checks, the
    /// same refusals), without reading it: for a comparison that streams it.
    pub(super) fn open_file(&self, name: &str) -> Result<Option<Existing<Opened>>, StoreError> {
        let path = self.join(name);
        // NONBLOCK so that a FIFO in the way cannot hang the pass.
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
        let fd = match rustix::fs::openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            // ELOOP is what O_NOFOLLOW answers for a symlink.
            Err(Errno::LOOP) => return Err(StoreError::NotRegularFile { path }),
            Err(e) => return Err(io_error(&path, "open", e.into())),
        };
        let stat = rustix::fs::fstat(&fd).map_err(|e| io_error(&path, "stat", e.into()))?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(StoreError::NotRegularFile { path });
        }
        let size = u64::try_from(stat.st_size).unwrap_or(0);
        if size > MAX_READ_BYTES {
            return Err(StoreError::TooLarge {
                path,
                size,
                limit: MAX_READ_BYTES,
            });
        }
        Ok(Some(Existing {
            content: Opened {
                file: std::fs::File::from(fd),
                size,
            },
            mode: stat.st_mode & 0o7777,
            uid: stat.st_uid,
            gid: stat.st_gid,
        }))
    }

    /// Whether something (of any type, symlinks not followed) exists at `name`.
    pub(super) fn exists(&self, name: &str) -> Result<bool, StoreError> {
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(_) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(io_error(&self.join(name), "stat", e.into())),
        }
    }

    fn read_link(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match rustix::fs::readlinkat(&self.fd, name, Vec::new()) {
            Ok(target) => Ok(Some(target.into_bytes())),
            // EINVAL: not a symlink.
            Err(Errno::NOENT | Errno::INVAL) => Ok(None),
            Err(e) => Err(io_error(&self.join(name), "read symlink", e.into())),
        }
    }

    /// What the visible `name` is.
    pub(super) fn visible_kind(&self, name: &str) -> Result<Visible, StoreError> {
        let stat = match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Ok(Visible::Missing),
            Err(e) => return Err(io_error(&self.join(name), "stat", e.into())),
        };
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::RegularFile => Ok(Visible::File),
            FileType::Symlink => match self.read_link(name)? {
                Some(target) if target == data_link_target(name).as_bytes() => {
                    Ok(Visible::DataLink)
                }
                // Gone between the two calls: missing now.
                None => Ok(Visible::Missing),
                Some(_) => Ok(Visible::Other),
            },
            _ => Ok(Visible::Other),
        }
    }

    /// Reads a *managed* name, in either layout: a regular file, or the atomic-dir symlink
    /// `name -> ..data/name`, read through `..data` into its generation, which must be one of
    /// certsync's `..<timestamp>` folders (each step resolved by hand, nothing followed). That
    /// symlink left dangling (a crash between the steps of a swap) reads as missing, so the
    /// file is written again. Any other symlink or non-file is [`StoreError::NotRegularFile`].
    pub(super) fn read_managed(&self, name: &str) -> Result<Option<Existing>, StoreError> {
        self.managed(name, Folder::read_file)
    }

    /// [`Folder::read_managed`] as [`Folder::open_file`]: opened, not read.
    pub(super) fn open_managed(&self, name: &str) -> Result<Option<Existing<Opened>>, StoreError> {
        self.managed(name, Folder::open_file)
    }

    /// `get` of the regular file a managed name is, in either layout.
    fn managed<T>(
        &self,
        name: &str,
        get: impl Fn(&Folder, &str) -> Result<Option<T>, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        match self.visible_kind(name)? {
            Visible::Missing => Ok(None),
            Visible::File => get(self, name),
            Visible::DataLink => match self.current_generation()? {
                Some(generation) => match self.open_sub(&generation)? {
                    Some(folder) => get(&folder, name),
                    None => Ok(None),
                },
                None => Ok(None),
            },
            Visible::Other => Err(StoreError::NotRegularFile {
                path: self.join(name),
            }),
        }
    }

    /// The generation `..data` points to, if `..data` is a symlink to one of certsync's
    /// `..<timestamp>` folders that exists.
    pub(super) fn current_generation(&self) -> Result<Option<String>, StoreError> {
        let Some(target) = self.read_link(DATA_LINK)? else {
            return Ok(None);
        };
        let Some(name) = std::str::from_utf8(&target)
            .ok()
            .filter(|n| is_generation_name(n))
        else {
            return Ok(None);
        };
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                Ok(Some(name.to_string()))
            }
            _ => Ok(None),
        }
    }

    /// A new generation name from the clock (UTC, nanoseconds), never one that exists.
    fn generation_name(&self) -> Result<String, StoreError> {
        let mut t = crate::validate::saturating_datetime(SystemTime::now());
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
            if !self.exists(&name)? {
                return Ok(name);
            }
            t = t.saturating_add(time::Duration::nanoseconds(1));
        }
    }

    /// Creates a new temporary file (mode 0600, never an existing name or a symlink's target).
    fn create_temp(&self, target: &Path) -> Result<(String, OwnedFd), StoreError> {
        loop {
            let name = format!("{TEMP_PREFIX}{:016x}", fastrand::u64(..));
            match rustix::fs::openat(
                &self.fd,
                name.as_str(),
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            ) {
                Ok(fd) => return Ok((name, fd)),
                Err(Errno::EXIST) => continue,
                Err(e) => return Err(io_error(target, "create temporary file for", e.into())),
            }
        }
    }

    /// Writes `content` to `name` atomically: a temp file in the folder, given its owner
    /// (fchown) and `mode` (fchmod, so the umask does not matter) before any content,
    /// fsynced, then renamed over the target. So no moment exists where the name holds the
    /// wrong owner, mode or a part of the content. rename(2) replaces the name itself, so a
    /// symlink or hard link at the target is never written through. The folder is not
    /// fsynced here: the caller does it once per batch.
    pub(super) fn write_atomic(
        &self,
        name: &str,
        content: Pieces<'_>,
        attrs: &Attrs,
    ) -> Result<(), StoreError> {
        self.write_atomic_with(name, attrs, |fd| write_pieces(fd, content))
    }

    /// [`Folder::write_atomic`] of what `fill` writes to the temporary file's descriptor
    /// (through a buffer, so a large file such as the manifest is streamed rather than built
    /// in memory first).
    pub(super) fn write_atomic_streamed(
        &self,
        name: &str,
        attrs: &Attrs,
        fill: impl FnOnce(&mut dyn io::Write) -> io::Result<()>,
    ) -> Result<(), StoreError> {
        self.write_atomic_with(name, attrs, |fd| {
            let mut out = io::BufWriter::with_capacity(WRITE_BUFFER, FdWriter(fd));
            fill(&mut out)?;
            io::Write::flush(&mut out)
        })
    }

    fn write_atomic_with(
        &self,
        name: &str,
        attrs: &Attrs,
        write: impl FnOnce(BorrowedFd<'_>) -> io::Result<()>,
    ) -> Result<(), StoreError> {
        let target = self.join(name);
        let (tmp, fd) = self.create_temp(&target)?;
        let written = (|| {
            set_attrs(&fd, &target, attrs)?;
            write(fd.as_fd()).map_err(|e| io_error(&target, "write temporary file for", e))?;
            rustix::fs::fsync(&fd)
                .map_err(|e| io_error(&target, "fsync temporary file for", e.into()))?;
            drop(fd);
            rustix::fs::renameat(&self.fd, tmp.as_str(), &self.fd, name)
                .map_err(|e| io_error(&target, "rename temporary file over", e.into()))
        })();
        if written.is_err() {
            let _ = rustix::fs::unlinkat(&self.fd, tmp.as_str(), AtFlags::empty());
        }
        written
    }

    /// The first half of a group commit (many files in one pass): `content` written to a new
    /// temporary file with its owner and mode, not synced and not visible. Then one
    /// [`Folder::sync_staged`] makes every staged file durable at once, and only then
    /// [`Folder::publish`] renames each over its name, so a crash still finds every name old
    /// or new (and the temporary files are removed at the next open).
    pub(super) fn stage(
        &self,
        name: &str,
        content: Pieces<'_>,
        attrs: &Attrs,
    ) -> Result<Staged, StoreError> {
        let target = self.join(name);
        let (tmp, fd) = self.create_temp(&target)?;
        let written = set_attrs(&fd, &target, attrs).and_then(|()| {
            write_pieces(fd.as_fd(), content)
                .map_err(|e| io_error(&target, "write temporary file for", e))
        });
        drop(fd);
        match written {
            Ok(()) => Ok(Staged {
                tmp,
                name: name.to_string(),
            }),
            Err(e) => {
                let _ = rustix::fs::unlinkat(&self.fd, tmp.as_str(), AtFlags::empty());
                Err(e)
            }
        }
    }

    /// Makes every staged file (or every file of a new generation) durable with one syncfs(2) of the file system holding the
    /// folder, instead of one fsync(2) per file: at 20,000 files the fsyncs dominated a pass.
    /// The error is the system's own (it is `Copy`), so that every write of the batch can
    /// fail with it, classified as any other (`no_space`, ...).
    pub(super) fn sync_staged(&self) -> Result<(), Errno> {
        rustix::fs::syncfs(&self.fd)
    }

    /// Renames a staged file over its name (after [`Folder::sync_staged`]).
    pub(super) fn publish(&self, staged: Staged) -> Result<(), StoreError> {
        let renamed = rustix::fs::renameat(
            &self.fd,
            staged.tmp.as_str(),
            &self.fd,
            staged.name.as_str(),
        );
        renamed.map_err(|e| {
            let _ = rustix::fs::unlinkat(&self.fd, staged.tmp.as_str(), AtFlags::empty());
            io_error(
                &self.join(&staged.name),
                "rename temporary file over",
                e.into(),
            )
        })
    }

    /// Removes a staged file that will not be published.
    pub(super) fn discard(&self, staged: Staged) {
        let _ = rustix::fs::unlinkat(&self.fd, staged.tmp.as_str(), AtFlags::empty());
    }

    /// `write_mode = "in-place"`: rewrites the regular file `name` in its own inode (owner
    /// and mode set first, then truncate, write, fsync), so a single-file bind mount of it
    /// sees the new content. A reader can see it empty or partial for that moment, and a
    /// crash can leave it partial (the next pass rewrites it): the trade-off the option
    /// documents. A file with more than one hard link is refused: writing it would change a
    /// file outside the folder (or another name in it). `Ok(false)`: no regular file is
    /// there (missing, or the atomic-dir symlink), so the caller creates it atomically.
    pub(super) fn write_in_place(
        &self,
        name: &str,
        content: Pieces<'_>,
        attrs: &Attrs,
    ) -> Result<bool, StoreError> {
        let target = self.join(name);
        let flags = OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
        let fd = match rustix::fs::openat(&self.fd, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT | Errno::LOOP) => return Ok(false),
            Err(e) => return Err(io_error(&target, "open for rewriting in place", e.into())),
        };
        let stat = rustix::fs::fstat(&fd).map_err(|e| io_error(&target, "stat", e.into()))?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(StoreError::NotRegularFile { path: target });
        }
        if stat.st_nlink > 1 {
            return Err(StoreError::HardLinked {
                path: target,
                links: stat.st_nlink,
            });
        }
        set_attrs(&fd, &target, attrs)?;
        rustix::fs::ftruncate(&fd, 0)
            .map_err(|e| io_error(&target, "truncate (in place)", e.into()))?;
        write_pieces(fd.as_fd(), content).map_err(|e| io_error(&target, "write (in place)", e))?;
        rustix::fs::fsync(&fd).map_err(|e| io_error(&target, "fsync (in place)", e.into()))?;
        Ok(true)
    }

    /// Creates `name` (which must not exist) with its owner and mode, writes it, and fsyncs it
    /// when `durable` (else the caller syncs the file system once for many): for the files
    /// of a generation that no reader can see yet.
    fn write_new(
        &self,
        name: &str,
        content: Pieces<'_>,
        attrs: &Attrs,
        durable: bool,
    ) -> Result<(), StoreError> {
        let path = self.join(name);
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| io_error(&path, "create", e.into()))?;
        set_attrs(&fd, &path, attrs)?;
        write_pieces(fd.as_fd(), content).map_err(|e| io_error(&path, "write", e))?;
        if !durable {
            return Ok(());
        }
        rustix::fs::fsync(&fd).map_err(|e| io_error(&path, "fsync", e.into()))
    }

    /// A new generation folder `..<timestamp>` holding `files` (name, content): created,
    /// filled, fsynced, but not yet visible. On failure it is removed again and the error
    /// names the file.
    pub(super) fn build_generation(
        &self,
        files: &[(&str, Pieces<'_>)],
        attrs: &Attrs,
    ) -> Result<String, StoreError> {
        let name = self.generation_name()?;
        let path = self.join(&name);
        rustix::fs::mkdirat(&self.fd, name.as_str(), Mode::from_raw_mode(DIR_MODE))
            .map_err(|e| io_error(&path, "create folder", e.into()))?;
        let filled = (|| {
            let folder = self.open_sub(&name)?.ok_or_else(|| {
                io_error(
                    &path,
                    "open folder",
                    io::Error::from(io::ErrorKind::NotFound),
                )
            })?;
            rustix::fs::fchmod(&folder.fd, Mode::from_raw_mode(DIR_MODE))
                .map_err(|e| io_error(&path, "set the mode of", e.into()))?;
            // Many files: written first, then one syncfs(2) makes them all durable. Measured
            // at 10,000 instances (20,000 files, ext4, 2 cores): the store's part of a cold
            // pass took 1.8-3.2 s with an fsync per file on 16 threads, 1.2-2.2 s so. A few:
            // an fsync each, which touches nothing else of the file system.
            if files.len() >= GROUP_SYNC_MIN {
                for (file, content) in files {
                    folder.write_new(file, *content, attrs, false)?;
                }
                folder
                    .sync_staged()
                    .map_err(|e| io_error(&path, "sync the new generation", e.into()))?;
            } else {
                run_parallel(files, |(file, content)| {
                    folder.write_new(file, *content, attrs, true)
                })?;
            }
            folder.sync()
        })();
        match filled {
            Ok(()) => Ok(name),
            Err(e) => {
                let _ = self.remove_generation(&name);
                Err(e)
            }
        }
    }

    /// Removes the generation folder `name` (certsync's own: regular files only, never
    /// following anything), if it exists.
    pub(super) fn remove_generation(&self, name: &str) -> Result<(), StoreError> {
        let Some(folder) = self.open_sub(name)? else {
            return Ok(());
        };
        for (entry, kind) in folder.entries()? {
            if kind == FileType::Directory {
                return Err(io_error(
                    &folder.join(&entry),
                    "remove old generation (it holds a folder certsync did not make)",
                    io::Error::from(io::ErrorKind::DirectoryNotEmpty),
                ));
            }
            match rustix::fs::unlinkat(&folder.fd, entry.as_str(), AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(e) => {
                    return Err(io_error(&folder.join(&entry), "remove", e.into()));
                }
            }
        }
        match rustix::fs::unlinkat(&self.fd, name, AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(io_error(
                &self.join(name),
                "remove old generation",
                e.into(),
            )),
        }
    }

    /// Points `..data` at `generation` in one step: a `..data_tmp` symlink renamed over it.
    pub(super) fn swap_data_link(&self, generation: &str) -> Result<(), StoreError> {
        match rustix::fs::unlinkat(&self.fd, DATA_TMP, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(io_error(&self.join(DATA_TMP), "remove stale", e.into())),
        }
        rustix::fs::symlinkat(generation, &self.fd, DATA_TMP)
            .map_err(|e| io_error(&self.join(DATA_TMP), "create symlink", e.into()))?;
        rustix::fs::renameat(&self.fd, DATA_TMP, &self.fd, DATA_LINK).map_err(|e| {
            let _ = rustix::fs::unlinkat(&self.fd, DATA_TMP, AtFlags::empty());
            io_error(&self.join(DATA_LINK), "rename ..data_tmp over", e.into())
        })
    }

    /// Makes the visible `name` the symlink `..data/name`, replacing what is there (a managed
    /// regular file when switching from the flat layout) in one rename.
    pub(super) fn link_visible(&self, name: &str) -> Result<(), StoreError> {
        let path = self.join(name);
        let target = data_link_target(name);
        loop {
            let tmp = format!("{TEMP_PREFIX}{:016x}", fastrand::u64(..));
            match rustix::fs::symlinkat(target.as_str(), &self.fd, tmp.as_str()) {
                Ok(()) => {
                    return rustix::fs::renameat(&self.fd, tmp.as_str(), &self.fd, name).map_err(
                        |e| {
                            let _ = rustix::fs::unlinkat(&self.fd, tmp.as_str(), AtFlags::empty());
                            io_error(&path, "rename a symlink over", e.into())
                        },
                    );
                }
                Err(Errno::EXIST) => continue,
                Err(e) => return Err(io_error(&path, "create a temporary symlink for", e.into())),
            }
        }
    }

    /// Removes `..data`, `..data_tmp` and every generation folder but `keep`. Only called
    /// while the manifest says the folder is in the atomic-dir layout.
    pub(super) fn remove_generations(&self, keep: Option<&str>) -> Result<(), StoreError> {
        if keep.is_none() {
            self.remove_if_symlink(DATA_LINK)?;
        }
        self.remove_if_symlink(DATA_TMP)?;
        for (name, kind) in self.entries()? {
            if kind == FileType::Directory
                && is_generation_name(&name)
                && Some(name.as_str()) != keep
            {
                self.remove_generation(&name)?;
            }
        }
        Ok(())
    }

    fn remove_if_symlink(&self, name: &str) -> Result<(), StoreError> {
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                match rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()) {
                    Ok(()) | Err(Errno::NOENT) => Ok(()),
                    Err(e) => Err(io_error(&self.join(name), "remove", e.into())),
                }
            }
            Ok(_) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(io_error(&self.join(name), "stat", e.into())),
        }
    }

    /// Removes a managed name: a regular file, or the atomic-dir symlink `..data/name` (only
    /// the link; the generation keeps its file until the generation goes). `Ok(false)` when
    /// it was already gone. Another symlink or a folder that has taken the name is refused:
    /// certsync did not put it there.
    pub(super) fn remove_file(&self, name: &str) -> Result<bool, StoreError> {
        match self.visible_kind(name)? {
            Visible::Missing => return Ok(false),
            Visible::File | Visible::DataLink => {}
            Visible::Other => {
                return Err(StoreError::NotRegularFile {
                    path: self.join(name),
                });
            }
        }
        match rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(e) => Err(io_error(&self.join(name), "remove", e.into())),
        }
    }

    /// Removes every `.certsync-tmp-*` entry left by a crash. Only called with the lock held,
    /// so no other certsync can be writing them.
    pub(super) fn remove_temp_files(&self) -> Result<(), StoreError> {
        for (name, kind) in self.entries()? {
            // unlink never follows a symlink; a folder with the prefix is not ours.
            if !name.starts_with(TEMP_PREFIX) || kind == FileType::Directory {
                continue;
            }
            match rustix::fs::unlinkat(&self.fd, name.as_str(), AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(e) => {
                    return Err(io_error(
                        &self.join(&name),
                        "remove leftover temporary file",
                        e.into(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The entries of the folder (not `.` and `..`), with their types (not followed). Names
    /// that are not UTF-8 are skipped: certsync never makes one.
    pub(super) fn entries(&self) -> Result<Vec<(String, FileType)>, StoreError> {
        let list_error = |e: Errno| io_error(&self.path, "list", e.into());
        let mut dir = rustix::fs::Dir::read_from(&self.fd).map_err(list_error)?;
        let mut out = Vec::new();
        while let Some(entry) = dir.read() {
            let entry = entry.map_err(list_error)?;
            let name: &CStr = entry.file_name();
            let Ok(name) = name.to_str() else { continue };
            if name == "." || name == ".." {
                continue;
            }
            let kind = match entry.file_type() {
                FileType::Unknown => {
                    match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                        Ok(st) => FileType::from_raw_mode(st.st_mode),
                        Err(Errno::NOENT) => continue,
                        Err(e) => return Err(io_error(&self.join(name), "stat", e.into())),
                    }
                }
                kind => kind,
            };
            out.push((name.to_string(), kind));
        }
        Ok(out)
    }
}

/// Where the visible symlink of `name` points: `..data/name`.
pub(crate) fn data_link_target(name: &str) -> String {
    format!("{DATA_LINK}/{name}")
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

/// Owner and group first (chown may clear mode bits), then the mode.
fn set_attrs(fd: impl AsFd, target: &Path, attrs: &Attrs) -> Result<(), StoreError> {
    if attrs.chowns() {
        rustix::fs::fchown(
            &fd,
            attrs.uid.map(Uid::from_raw),
            attrs.gid.map(Gid::from_raw),
        )
        .map_err(|e| StoreError::Chown {
            path: target.to_path_buf(),
            owner: attrs.describe_owner(),
            source: e.into(),
        })?;
    }
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(attrs.mode))
        .map_err(|e| io_error(target, "set the mode of", e.into()))
}

fn write_all(fd: impl AsFd, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match rustix::io::write(&fd, data) {
            Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
            Ok(n) => data = &data[n..],
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The bytes of a file to write, produced as they are written ([`Fill`]).
pub(crate) type Pieces<'a> = &'a dyn Fill;

/// What a file to write holds, written out a piece at a time: the bundle is every CA's PEM,
/// each rendered as it goes into the file (`store::plan`'s contents), never joined into one
/// buffer, nor all held at once.
pub(crate) trait Fill: Sync {
    /// About how many bytes it is (for the size of the write buffer).
    fn size_hint(&self) -> usize;
    /// The bytes, when they are one piece already in memory: written as they are.
    fn as_bytes(&self) -> Option<&[u8]> {
        None
    }
    /// Writes every byte to `out`, in order.
    fn fill(&self, out: &mut dyn io::Write) -> io::Result<()>;
}

/// Bytes read or made whole.
impl Fill for Vec<u8> {
    fn size_hint(&self) -> usize {
        self.len()
    }
    fn as_bytes(&self) -> Option<&[u8]> {
        Some(self)
    }
    fn fill(&self, out: &mut dyn io::Write) -> io::Result<()> {
        out.write_all(self)
    }
}

/// The buffer that gathers small pieces (and a streamed manifest) into large writes.
const WRITE_BUFFER: usize = 64 << 10;

/// Writes every piece, gathering small ones so that a file of many pieces costs few
/// write(2) calls.
fn write_pieces(fd: BorrowedFd<'_>, pieces: Pieces<'_>) -> io::Result<()> {
    if let Some(bytes) = pieces.as_bytes() {
        return write_all(fd, bytes);
    }
    let capacity = pieces.size_hint().clamp(1, WRITE_BUFFER);
    let mut out = io::BufWriter::with_capacity(capacity, FdWriter(fd));
    pieces.fill(&mut out)?;
    io::Write::flush(&mut out)
}

/// `io::Write` on a descriptor, retrying on EINTR (buffered by the callers).
struct FdWriter<'a>(BorrowedFd<'a>);

impl io::Write for FdWriter<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        loop {
            match rustix::io::write(self.0, data) {
                Err(Errno::INTR) => continue,
                other => return other.map_err(io::Error::from),
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
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

/// Creates `dir` and its missing parents with mode 0755 (umask-proof: each folder created here
/// is chmod-ed explicitly). Runs once, before the folder is opened.
pub(crate) fn create_dir(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let mut missing: Vec<PathBuf> = Vec::new();
    let mut cur = Some(dir);
    while let Some(p) = cur {
        match std::fs::symlink_metadata(p) {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(StoreError::CreateDir {
                    path: dir.to_path_buf(),
                    source: e,
                });
            }
        }
        missing.push(p.to_path_buf());
        cur = p.parent();
    }
    for p in missing.iter().rev() {
        match std::fs::DirBuilder::new().mode(DIR_MODE).create(p) {
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
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(DIR_MODE)).map_err(|e| {
            StoreError::CreateDir {
                path: p.clone(),
                source: e,
            }
        })?;
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
