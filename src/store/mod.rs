//! The trust folder (SPEC 7): the only writer of it.
//!
//! Owns: the instance files (current CAs, then replaced CAs inside `rotation_overlap`), the
//! bundle, the `<subject_hash>.<n>` files, the PKCS#12 truststore, the manifest that says which
//! files are certsync's, the folder lock, owner and mode of the files, the two layouts (`flat`,
//! `atomic-dir`) and write modes (`rename`, `in-place`), and the crash-safe order of writes.
//!
//! It must not: touch a file that is not in its manifest, follow a symlink it did not make,
//! write a file whose bytes (mode, owner) are already right, or leave a partial file (except
//! what `in-place` documents). It does no network I/O, no validation of certificates (it gets
//! validated [`Cert`]s) and runs no hooks.
//!
//! Crash safety: a pass first computes everything (a [`plan`]), then, if it creates new names
//! (or enters the atomic-dir layout), writes a manifest listing old and new managed files
//! together, then puts the content in place, removes pruned files, fsyncs the folder and writes
//! the final manifest. A SIGKILL at any point leaves every file old or new, and every file
//! certsync created named in the manifest on disk.
//! - `flat` + `rename`: each file is a temp file (owner and mode set first) renamed over it.
//! - `flat` + `in-place`: an existing file is truncated and rewritten in its inode (for
//!   single-file bind mounts); a reader or a crash can see it partial for that moment.
//! - `atomic-dir`: the whole set is written into a new hidden `..<timestamp>` folder, then
//!   `..data` is pointed at it in one rename, and each visible name is a symlink
//!   `name -> ..data/name`; every visible name therefore switches from the old set to the new
//!   one in the same instant. New names get their symlink after the swap, removed names lose it
//!   after the swap; old generations are removed last (and at open, after a crash).
//! - Switching layouts replaces each managed name in one rename (regular file <-> symlink)
//!   with the same content; `..data` and the generations go only after every name is a
//!   regular file again. The manifest records the layout so that certsync only ever removes
//!   `..data` and generations it made.
//!
//! Choices where SPEC leaves room:
//! - With `prune = false`, an instance file that is no longer produced keeps its manifest
//!   record and stays in the bundle and hash files: the bundle then mirrors exactly the
//!   instance files present in the folder, which is what a consumer of both expects.
//! - The bundle and hash files mirror the instance files' records, including those of
//!   instances that failed this pass (their files are untouched, so their CAs stay trusted).
//! - A file whose content is right but whose mode differs from `mode` is rewritten (atomically),
//!   so a changed `mode` takes effect.
//! - The bundle is not created while it would be empty; a managed bundle is emptied when its
//!   last CA leaves.
//! - `StoreReport::other` lists only bundle/hash/truststore/pruned files that changed, not
//!   unchanged ones.
//! - The truststore holds the same CAs as the bundle (current and overlapping), less SM2 ones.
//! - In the atomic-dir layout the unit of writing is the whole set: a file that cannot be
//!   written into the new generation fails the pass's writes and keeps the old set whole.
//!   A shape that cannot be *computed* (the truststore's password file, say) keeps its old
//!   file in the new generation while the others change.
//! - Changing only the layout is not a change of any file (same bytes): hooks do not run.

pub(crate) mod manifest;
mod plan;
pub mod truststore;
mod write;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use time::OffsetDateTime;

use crate::cert::Cert;
use manifest::{MANIFEST_NAME, Manifest, ManifestLayout, Record};
use plan::{Plan, RemovalResult};
use write::{Attrs, Folder, Visible};

/// How the trust folder is kept (the `[trust]` table, resolved).
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// The trust folder (absolute).
    pub dir: PathBuf,
    /// Permission bits of every file written (e.g. `0o644`).
    pub mode: u32,
    /// File name of the bundle inside `dir`; `None`: no bundle.
    pub bundle: Option<String>,
    /// Keep `<subject_hash>.<n>` files for OpenSSL's `-CApath`.
    pub capath: bool,
    /// Remove managed instance files (and a managed bundle) no longer produced.
    pub prune: bool,
    /// How long a replaced CA stays in its instance file after the new one arrives.
    pub rotation_overlap: Duration,
    /// Owner (uid) given to every file written; `None`: certsync's own.
    pub owner: Option<u32>,
    /// Group (gid) given to every file written; `None`: certsync's own.
    pub group: Option<u32>,
    /// How an existing file is replaced.
    pub write_mode: WriteMode,
    /// How the set of files is laid out.
    pub layout: Layout,
    /// File name of the PKCS#12 truststore inside `dir`; `None`: no truststore.
    pub pkcs12: Option<String>,
    /// File holding the truststore's password; `None`: [`truststore::DEFAULT_PASSWORD`].
    pub pkcs12_password_file: Option<PathBuf>,
}

impl StoreOptions {
    /// Options with the defaults of SPEC 3 for `dir`: mode 0644, no bundle, hash files, prune,
    /// 24 h overlap, no owner or group, `rename`, `flat`, no truststore.
    pub fn new(dir: PathBuf) -> StoreOptions {
        StoreOptions {
            dir,
            mode: 0o644,
            bundle: None,
            capath: true,
            prune: true,
            rotation_overlap: Duration::from_secs(86400),
            owner: None,
            group: None,
            write_mode: WriteMode::Rename,
            layout: Layout::Flat,
            pkcs12: None,
            pkcs12_password_file: None,
        }
    }

    fn attrs(&self) -> Attrs {
        Attrs {
            mode: self.mode,
            uid: self.owner,
            gid: self.group,
        }
    }

    fn manifest_layout(&self) -> ManifestLayout {
        match self.layout {
            Layout::Flat => ManifestLayout::Flat,
            Layout::AtomicDir => ManifestLayout::AtomicDir,
        }
    }
}

/// `trust.write_mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WriteMode {
    /// Temp file, fsync, rename over the name: atomic, new inode.
    #[default]
    Rename,
    /// Truncate and rewrite the existing inode (single-file bind mounts); new files are still
    /// created atomically.
    InPlace,
}

/// `trust.layout`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Layout {
    /// Every file a regular file in the folder.
    #[default]
    Flat,
    /// Kubernetes-style: `..<timestamp>` folders, `..data` symlink, visible symlinks.
    AtomicDir,
}

/// The trust folder, open: its manifest and the certificates of its managed files.
pub struct Store {
    opts: StoreOptions,
    /// The folder, opened once; every access is relative to it. `None`: a read-only store
    /// of a folder that does not exist (yet).
    folder: Option<Folder>,
    /// The folder is locked and may be written (not a read-only view).
    writable: bool,
    manifest: Manifest,
    /// Certificates by fingerprint: every CA a managed file holds or a pass supplied. Replaced
    /// CAs are written back from here, so their DER need not be kept in the manifest.
    pool: HashMap<String, Cert>,
    /// The `now` of the last applied pass (for [`Store::next_deadline`]).
    last_pass: Option<SystemTime>,
    /// The last final manifest could not be written: write it at the next pass.
    manifest_dirty: bool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.opts.dir)
            .field("read_only", &!self.writable)
            .field("managed_files", &self.manifest.files.len())
            .finish_non_exhaustive()
    }
}

/// Name of the manifest inside the trust folder (for tools that list the folder, such as
/// `inspect`, and must skip it).
pub use crate::names::MANIFEST_FILE_NAME;

/// Prefix of certsync's temporary files inside the trust folder.
pub const TEMP_FILE_PREFIX: &str = write::TEMP_PREFIX;

/// What one instance and category should hold after this pass.
#[derive(Clone, Debug)]
pub struct DesiredEntry {
    /// Cloud id of the instance.
    pub instance_id: String,
    /// The API's `category`.
    pub category: String,
    /// File name inside the trust folder (from `file_name`).
    pub file_name: String,
    /// Validated, deduplicated, current CAs in API order.
    pub certs: Vec<Cert>,
}

/// Everything a pass hands to the store.
#[derive(Clone, Debug, Default)]
pub struct PassInput {
    /// Every (instance, category) that synced OK this pass.
    pub updates: Vec<DesiredEntry>,
    /// Instance ids that synced OK: their managed files not in `updates` are no longer produced.
    pub synced: BTreeSet<String>,
    /// Instance ids in the config (and discovered): managed files of other instances are no
    /// longer produced, and another instance's file is never taken over while it is here.
    pub configured: BTreeSet<String>,
    /// File names that an instance of the plan would produce but that did not sync this pass
    /// (it failed, or was not part of it), with that instance's id: such a file is never
    /// removed, and no other entry may take its name (SPEC 5.3, 7).
    pub protected: BTreeMap<String, String>,
    /// Whether this pass counts toward removing files that nothing produces any more: a
    /// full pass in which something synced (not a retry of a few instances, and not a pass
    /// in which every instance failed, which proves nothing about what the config produces).
    pub counts: bool,
}

/// What a pass is about to change, before it changes anything.
#[derive(Clone, Debug, Default)]
pub struct Preview {
    /// Files to be written or removed (absolute).
    pub changed_files: Vec<PathBuf>,
    /// Of those, the files to be written.
    pub written_files: Vec<PathBuf>,
    /// Of those, the files to be removed.
    pub removed_files: Vec<PathBuf>,
    /// Instances whose files change.
    pub changed_instances: BTreeSet<String>,
}

impl Preview {
    fn of(dir: &Path, plan: &Plan) -> Preview {
        let written_files: Vec<PathBuf> = plan.writes.iter().map(|w| dir.join(&w.name)).collect();
        let removed_files: Vec<PathBuf> = plan.removals.iter().map(|r| dir.join(&r.name)).collect();
        Preview {
            changed_files: written_files
                .iter()
                .chain(&removed_files)
                .cloned()
                .collect(),
            written_files,
            removed_files,
            changed_instances: plan
                .entries
                .iter()
                .filter(|e| {
                    matches!(
                        e.result,
                        Ok(Change::Created | Change::Updated | Change::Removed)
                    )
                })
                .map(|e| e.instance_id.clone())
                .collect(),
        }
    }
}

/// What happened to one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// The file did not exist and was written.
    Created,
    /// The file's content (or mode) changed.
    Updated,
    /// The file already held the right bytes; it was not touched.
    Unchanged,
    /// The file was removed.
    Removed,
}

/// The result for one [`DesiredEntry`].
#[derive(Debug)]
pub struct EntryOutcome {
    pub instance_id: String,
    pub category: String,
    /// Absolute path of the instance file.
    pub path: PathBuf,
    pub result: Result<Change, StoreError>,
    /// Earliest notAfter among the entry's current CAs.
    pub not_after: Option<OffsetDateTime>,
    /// SHA-256 fingerprints (hex) of the entry's current CAs.
    pub fingerprints: Vec<String>,
}

/// A managed file removed by a pass, and why (each removal is logged).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemovedFile {
    /// Absolute path.
    pub path: PathBuf,
    /// Why it went.
    pub reason: String,
}

/// A managed instance file that nothing produces any more: kept until it has been so for
/// [`UNPRODUCED_PASSES`] passes that count, then removed (with `prune`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unproduced {
    /// Absolute path.
    pub path: PathBuf,
    /// The instance that wrote it.
    pub instance_id: String,
    /// Its category.
    pub category: String,
    /// Passes that counted so far.
    pub passes: u32,
}

/// A managed instance file that no instance produces any more is removed after this many
/// passes without it (SPEC 5.3), each counting only when [`PassInput::counts`].
pub const UNPRODUCED_PASSES: u32 = 3;

/// What a pass did (or, in a dry run, would do).
#[derive(Debug, Default)]
pub struct StoreReport {
    /// Managed files removed, with the reason.
    pub removed: Vec<RemovedFile>,
    /// Instance files nothing produces, waiting for removal.
    pub unproduced: Vec<Unproduced>,
    /// One per update, in input order.
    pub entries: Vec<EntryOutcome>,
    /// Bundle, hash files and pruned files that changed (absolute paths).
    pub other: Vec<(PathBuf, Change)>,
    /// Bundle, hash, prune and manifest failures.
    pub errors: Vec<StoreError>,
    /// Absolute path of every file written or removed.
    pub changed_files: Vec<PathBuf>,
    /// Instances whose files were written or removed.
    pub changed_instances: BTreeSet<String>,
}

impl StoreReport {
    /// True when any file was written or removed.
    pub fn changed(&self) -> bool {
        !self.changed_files.is_empty()
    }
}

/// The state of one managed instance file, for status output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryState {
    pub instance_id: String,
    pub category: String,
    /// Absolute path of the file.
    pub path: PathBuf,
    /// SHA-256 fingerprints (hex) of the current CAs, in file order.
    pub fingerprints: Vec<String>,
    /// Earliest notAfter among the current CAs (`None` if none is known).
    pub not_after: Option<OffsetDateTime>,
}

/// A failure of the store. Every variant names the path it concerns.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create trust folder {path}: {source}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot {op} {path}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    #[error(
        "{path} exists but certsync did not write it (not in its manifest); refusing to overwrite it - move it away or change the file name"
    )]
    Unmanaged { path: PathBuf },
    #[error("{path} is a symlink or not a regular file; certsync does not follow or replace it")]
    NotRegularFile { path: PathBuf },
    #[error(
        "manifest {path} is unusable: {reason}; move it aside to start over (certsync will then treat the files already in the folder as unmanaged and refuse to overwrite them)"
    )]
    Manifest { path: PathBuf, reason: String },
    #[error("trust folder {path} is locked by another certsync process")]
    Locked { path: PathBuf },
    #[error("trust folder {path} is not an absolute path")]
    RelativeDir { path: PathBuf },
    #[error("invalid file name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("{path} is already {other}")]
    NameConflict { path: PathBuf, other: String },
    #[error(
        "cannot give {path} to {owner}: {source} (setting another owner, or a group certsync is not a member of, needs root or CAP_CHOWN)"
    )]
    Chown {
        path: PathBuf,
        /// The owner asked for, e.g. `uid 65534 and gid 65534`.
        owner: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "cannot write truststore {path}: cannot read its password from {password_file}: {source}; the old truststore is kept"
    )]
    PasswordFile {
        path: PathBuf,
        password_file: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot write truststore {path}: {reason}; the old truststore is kept")]
    Truststore { path: PathBuf, reason: String },
    #[error(
        "trust folder {path} is now {now}, not the folder certsync opened and locked; nothing is written until certsync is reloaded (SIGHUP) or restarted"
    )]
    FolderMoved { path: PathBuf, now: String },
    #[error(
        "{path} has {links} hard links; rewriting it in place would change a file outside the trust folder, so certsync does not (remove the extra links)"
    )]
    HardLinked { path: PathBuf, links: u64 },
    #[error("{path} is {size} bytes, more than the {limit} certsync ever writes; not read")]
    TooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error("not written: {reason}")]
    Refused { reason: String },
}

impl StoreError {
    /// A short stable reason, for `certsync_store_errors_total{reason}`.
    pub fn reason(&self) -> &'static str {
        match self {
            StoreError::CreateDir { .. } => "create_dir",
            StoreError::Io { source, .. } => {
                use rustix::io::Errno;
                match source.raw_os_error().map(Errno::from_raw_os_error) {
                    Some(Errno::NOSPC) => "no_space",
                    Some(Errno::DQUOT) => "quota",
                    Some(Errno::IO) => "eio",
                    Some(Errno::ACCESS | Errno::PERM) => "permission",
                    Some(Errno::ROFS) => "read_only_fs",
                    _ => "io",
                }
            }
            StoreError::Unmanaged { .. } => "unmanaged",
            StoreError::NotRegularFile { .. } => "not_regular_file",
            StoreError::Manifest { .. } => "manifest",
            StoreError::Locked { .. } => "locked",
            StoreError::RelativeDir { .. } => "relative_dir",
            StoreError::InvalidName { .. } => "invalid_name",
            StoreError::NameConflict { .. } => "name_conflict",
            StoreError::Chown { .. } => "chown",
            StoreError::PasswordFile { .. } => "password_file",
            StoreError::Truststore { .. } => "truststore",
            StoreError::FolderMoved { .. } => "folder_moved",
            StoreError::HardLinked { .. } => "hard_linked",
            StoreError::TooLarge { .. } => "too_large",
            StoreError::Refused { .. } => "refused",
        }
    }
}

impl Store {
    /// Opens the trust folder.
    ///
    /// Not `read_only`: creates the folder (0755, parents too) if missing, takes an exclusive
    /// flock on it ([`StoreError::Locked`] if another certsync holds it), removes leftover
    /// temp files, and loads the manifest and the managed files' certificates.
    /// `read_only` (for `--dry-run` and `check`): touches nothing; a missing folder is empty.
    pub fn open(opts: StoreOptions, read_only: bool) -> Result<Store, StoreError> {
        if !opts.dir.is_absolute() {
            return Err(StoreError::RelativeDir { path: opts.dir });
        }
        if let Some(bundle) = &opts.bundle {
            manifest::check_file_name(bundle).map_err(|reason| StoreError::InvalidName {
                name: bundle.clone(),
                reason,
            })?;
        }
        let folder = if read_only {
            Folder::open_existing(&opts.dir)?
        } else {
            write::create_dir(&opts.dir)?;
            let folder = Folder::open(&opts.dir)?;
            folder.lock()?;
            folder.remove_temp_files()?;
            Some(folder)
        };
        let manifest = match &folder {
            Some(folder) => load_manifest(folder)?,
            None => Manifest::default(),
        };
        if let Some(folder) = &folder
            && !read_only
            && manifest.layout == ManifestLayout::AtomicDir
        {
            // Generations a crash left behind (made before `..data` was swapped to them, or
            // whose removal after the swap did not happen).
            let current = folder.current_generation()?;
            folder.remove_generations(current.as_deref())?;
        }
        let pool = folder
            .as_ref()
            .map(|f| load_pool(f, &manifest))
            .unwrap_or_default();
        Ok(Store {
            opts,
            folder,
            writable: !read_only,
            manifest,
            pool,
            last_pass: None,
            manifest_dirty: false,
        })
    }

    /// A store that holds no folder and writes nothing (every pass reports it read-only):
    /// what the daemon keeps when the folder cannot even be opened for reading.
    pub fn unopened(opts: StoreOptions) -> Store {
        Store {
            opts,
            folder: None,
            writable: false,
            manifest: Manifest::default(),
            pool: HashMap::new(),
            last_pass: None,
            manifest_dirty: false,
        }
    }

    /// Brings the folder to the state `input` asks for at time `now`. Never fails as a whole:
    /// every problem is in the report, per entry or in `errors`. `dry_run` computes the same
    /// report but writes nothing and leaves the store's state unchanged.
    pub fn apply(&mut self, input: &PassInput, now: SystemTime, dry_run: bool) -> StoreReport {
        let saved = self.manifest.state.clone();
        self.apply_with_state(input, now, dry_run, move |_| saved)
    }

    /// [`Store::apply`], and `state` computes the daemon state to save with this pass from
    /// what the pass is about to change (`None`: no state). A new state is written
    /// in the manifest *before* any file changes, so a crash in between cannot lose it (the
    /// daemon records there the hooks it owes a run).
    pub fn apply_with_state(
        &mut self,
        input: &PassInput,
        now: SystemTime,
        dry_run: bool,
        state: impl FnOnce(&Preview) -> Option<serde_json::Value>,
    ) -> StoreReport {
        if self.writable
            && !dry_run
            && let Some(Err(e)) = self.folder.as_ref().map(Folder::check_path)
        {
            return self.refused(input, e);
        }
        let plan = plan::plan(
            &self.opts,
            self.folder.as_ref(),
            &self.manifest.files,
            &self.pool,
            input,
            crate::validate::saturating_datetime(now),
        );
        if dry_run || !self.writable {
            let writes = plan.writes.iter().map(|_| Ok(())).collect();
            let removals = plan
                .removals
                .iter()
                .map(|_| RemovalResult::Removed)
                .collect();
            let (mut report, _) =
                plan.finish(&self.opts.dir, &self.manifest.files, writes, removals);
            if !dry_run {
                report.errors.push(StoreError::Io {
                    path: self.opts.dir.clone(),
                    op: "write (the store was opened read-only)",
                    source: io::Error::from(io::ErrorKind::PermissionDenied),
                });
            }
            return report;
        }
        let preview = Preview::of(&self.opts.dir, &plan);
        let new_state = state(&preview);
        let mut report = self.execute(plan, new_state.clone());
        // The bundle, hash files and truststore were planned from the new records. Where an
        // instance file could not be written its old record stays, so plan once more with that
        // instance treated as failed: the derived files then match the instance files again.
        let failed: BTreeSet<&str> = report
            .entries
            .iter()
            .filter(|e| e.result.is_err())
            .map(|e| e.instance_id.as_str())
            .collect();
        if !failed.is_empty() {
            let mut again = input.clone();
            again
                .updates
                .retain(|u| !failed.contains(u.instance_id.as_str()));
            again.synced.retain(|id| !failed.contains(id.as_str()));
            let plan = plan::plan(
                &self.opts,
                self.folder.as_ref(),
                &self.manifest.files,
                &self.pool,
                &again,
                crate::validate::saturating_datetime(now),
            );
            if !plan.writes.is_empty() || !plan.removals.is_empty() {
                let second = self.execute(plan, new_state);
                report.other.extend(second.other);
                report.errors.extend(second.errors);
                for path in second.changed_files {
                    if !report.changed_files.contains(&path) {
                        report.changed_files.push(path);
                    }
                }
                report.changed_instances.extend(second.changed_instances);
            }
        }
        self.last_pass = Some(now);
        report
    }

    /// The folder, when this store may write it.
    fn writable_folder(&self) -> Result<&Folder, StoreError> {
        match &self.folder {
            Some(folder) if self.writable => Ok(folder),
            _ => Err(StoreError::Io {
                path: self.opts.dir.clone(),
                op: "write (the store was opened read-only)",
                source: io::Error::from(io::ErrorKind::PermissionDenied),
            }),
        }
    }

    /// Whether the configured path still names the folder this store opened and locked.
    pub fn check_folder(&self) -> Result<(), StoreError> {
        match &self.folder {
            Some(folder) => folder.check_path(),
            None => Ok(()),
        }
    }

    /// The report of a pass refused as a whole before anything was read or written: every
    /// update fails with `error`'s message, and `error` is the pass's store error.
    fn refused(&self, input: &PassInput, error: StoreError) -> StoreReport {
        let message = error.to_string();
        StoreReport {
            entries: input
                .updates
                .iter()
                .map(|u| EntryOutcome {
                    instance_id: u.instance_id.clone(),
                    category: u.category.clone(),
                    path: self.opts.dir.join(&u.file_name),
                    result: Err(StoreError::Refused {
                        reason: message.clone(),
                    }),
                    not_after: u.certs.iter().map(|c| c.not_after).min(),
                    fingerprints: u.certs.iter().map(Cert::fingerprint).collect(),
                })
                .collect(),
            errors: vec![error],
            ..StoreReport::default()
        }
    }

    /// The daemon state saved with the folder.
    pub fn state(&self) -> Option<&serde_json::Value> {
        self.manifest.state.as_ref()
    }

    /// Saves a new daemon state (the records stay as they are). A no-op when it is unchanged.
    pub fn save_state(&mut self, state: Option<serde_json::Value>) -> Result<(), StoreError> {
        if state == self.manifest.state {
            return Ok(());
        }
        let folder = self.writable_folder()?;
        folder.check_path()?;
        let manifest = Manifest::with_state(
            self.manifest.layout,
            self.manifest.files.clone(),
            state.clone(),
        );
        save_manifest(folder, &manifest, self.opts.mode)?;
        self.manifest.state = state;
        Ok(())
    }

    /// The earliest moment after the last pass at which a replaced CA leaves a file
    /// (`replaced_at + rotation_overlap`, or its notAfter if sooner), so the daemon can
    /// schedule a pass then. Moments not after the last pass are skipped: they belong to
    /// files the last pass kept as they were (failed instances, or `prune = false`), and
    /// returning them would make the daemon spin.
    pub fn next_deadline(&self) -> Option<SystemTime> {
        let overlap = time::Duration::try_from(self.opts.rotation_overlap).ok();
        self.manifest
            .files
            .values()
            .filter_map(|r| match r {
                Record::Instance { replaced, .. } => Some(replaced),
                _ => None,
            })
            .flatten()
            .map(|r| {
                let window_end = overlap.and_then(|o| r.replaced_at.checked_add(o));
                match window_end {
                    Some(end) if end < r.not_after => end,
                    _ => r.not_after,
                }
            })
            .map(SystemTime::from)
            .filter(|t| self.last_pass.is_none_or(|last| *t > last))
            .min()
    }

    /// Every managed instance file, sorted by file name.
    pub fn current(&self) -> Vec<EntryState> {
        self.manifest
            .files
            .iter()
            .filter_map(|(name, record)| match record {
                Record::Instance {
                    instance_id,
                    category,
                    current,
                    ..
                } => Some(EntryState {
                    instance_id: instance_id.clone(),
                    category: category.clone(),
                    path: self.opts.dir.join(name),
                    fingerprints: current.clone(),
                    not_after: current
                        .iter()
                        .filter_map(|fp| self.pool.get(fp).map(|c| c.not_after))
                        .min(),
                }),
                _ => None,
            })
            .collect()
    }

    /// Carries out a plan in the crash-safe order and updates the in-memory state.
    fn execute(&mut self, mut plan: Plan, state: Option<serde_json::Value>) -> StoreReport {
        let state_changes = state != self.manifest.state;
        let dir = self.opts.dir.clone();
        let folder = self
            .folder
            .as_ref()
            .filter(|_| self.writable)
            .expect("execute needs a writable store");
        let old = &self.manifest.files;
        let old_layout = self.manifest.layout;
        let target_layout = self.opts.manifest_layout();
        // While either says atomic-dir, generations may exist: the manifest must say so.
        let union_layout = if old_layout == ManifestLayout::AtomicDir
            || target_layout == ManifestLayout::AtomicDir
        {
            ManifestLayout::AtomicDir
        } else {
            ManifestLayout::Flat
        };

        // 1. New names (and a first generation) must be in the manifest on disk before they
        //    exist.
        let creates_new = plan.writes.iter().any(|w| !old.contains_key(&w.name));
        let enters_atomic = union_layout != old_layout;
        let mut aborted: Option<(io::ErrorKind, String)> = None;
        if target_layout == ManifestLayout::AtomicDir
            && old_layout == ManifestLayout::Flat
            && let Err(e) = check_no_foreign_data_link(folder)
        {
            aborted = Some((io::ErrorKind::AlreadyExists, e.to_string()));
            plan.errors.push(e);
        }
        if aborted.is_none() && (creates_new || enters_atomic || state_changes) {
            let mut union = plan.final_files.clone();
            for (name, record) in old {
                union.entry(name.clone()).or_insert_with(|| record.clone());
            }
            let union = Manifest::with_state(union_layout, union, state.clone());
            if let Err(e) = save_manifest(folder, &union, self.opts.mode) {
                aborted = Some(match &e {
                    StoreError::Io { source, .. } => (source.kind(), e.to_string()),
                    _ => (io::ErrorKind::Other, e.to_string()),
                });
                plan.errors.push(e);
            }
        }

        // 2. The content, the removals, one folder fsync, and the layout's own steps.
        let mut layout_errors = Vec::new();
        let mut final_layout = union_layout;
        let (write_results, removal_results) = match &aborted {
            Some((kind, msg)) => blocked_results(
                &dir,
                &plan,
                *kind,
                msg,
                "write (the manifest that must list it first was not saved)",
            ),
            None => match self.opts.layout {
                Layout::Flat => {
                    let (writes, removals, converted) =
                        self.execute_flat(&plan, old_layout, &mut layout_errors);
                    if converted {
                        final_layout = ManifestLayout::Flat;
                    }
                    (writes, removals)
                }
                Layout::AtomicDir => self.execute_atomic(&plan, &mut layout_errors),
            },
        };
        let touched = write_results.iter().any(Result::is_ok)
            || removal_results
                .iter()
                .any(|r| matches!(r, RemovalResult::Removed));
        let new_certs = std::mem::take(&mut plan.new_certs);
        let (mut report, final_files) = plan.finish(&dir, old, write_results, removal_results);
        report.errors.append(&mut layout_errors);
        if touched && let Err(e) = folder.sync() {
            report.errors.push(e);
        }

        // 3. The final manifest, when it says something the one on disk does not.
        let on_disk_layout = if creates_new || enters_atomic || state_changes {
            union_layout
        } else {
            old_layout
        };
        if aborted.is_none()
            && (final_files != *old
                || creates_new
                || self.manifest_dirty
                || final_layout != on_disk_layout)
        {
            let manifest = Manifest::with_state(final_layout, final_files.clone(), state.clone());
            match save_manifest(folder, &manifest, self.opts.mode) {
                Ok(()) => self.manifest_dirty = false,
                Err(e) => {
                    self.manifest_dirty = true;
                    report.errors.push(e);
                }
            }
        }

        // In-memory state: the new records, and certificates only as far as they are used.
        for cert in new_certs {
            self.pool.entry(cert.fingerprint()).or_insert(cert);
        }
        let used = used_fingerprints(&final_files);
        self.pool.retain(|fp, _| used.contains(fp.as_str()));
        let kept_state = if aborted.is_some() {
            self.manifest.state.clone()
        } else {
            state
        };
        self.manifest = Manifest::with_state(
            if aborted.is_some() {
                on_disk_layout
            } else {
                final_layout
            },
            final_files,
            kept_state,
        );
        report
    }

    /// The flat layout: each write on its own (rename, or in place), then the removals. When
    /// the folder was in the atomic-dir layout, every managed name still a symlink through
    /// `..data` is replaced by a regular file with the same bytes, and then `..data` and the
    /// generations are removed. Returns whether that switch is complete (or was not needed).
    fn execute_flat(
        &self,
        plan: &Plan,
        old_layout: ManifestLayout,
        errors: &mut Vec<StoreError>,
    ) -> (Vec<Result<(), StoreError>>, Vec<RemovalResult>, bool) {
        let folder = self.folder.as_ref().expect("writable");
        let writes = run_writes(
            folder,
            &self.opts.attrs(),
            self.opts.write_mode,
            &plan.writes,
        );
        let removals = remove_all(folder, &plan.removals);
        if old_layout == ManifestLayout::Flat {
            return (writes, removals, true);
        }
        let written: HashSet<&str> = plan.writes.iter().map(|w| w.name.as_str()).collect();
        let mut complete = true;
        for name in plan.final_files.keys() {
            if written.contains(name.as_str()) {
                continue;
            }
            let converted = match folder.visible_kind(name) {
                Ok(Visible::DataLink) => match folder.read_managed(name) {
                    Ok(Some(file)) => folder.write_atomic(name, &file.content, &{
                        // The bytes and mode stay; only the kind of entry changes.
                        let mut attrs = self.opts.attrs();
                        attrs.mode = file.mode;
                        attrs
                    }),
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                },
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            };
            if let Err(e) = converted {
                errors.push(e);
                complete = false;
            }
        }
        // A write that failed may have left its name a symlink through `..data`.
        if complete
            && writes.iter().any(Result::is_err)
            && plan
                .writes
                .iter()
                .any(|w| matches!(folder.visible_kind(&w.name), Ok(Visible::DataLink)))
        {
            complete = false;
        }
        if complete {
            let removed = folder.sync().and_then(|()| folder.remove_generations(None));
            if let Err(e) = removed {
                errors.push(e);
                complete = false;
            }
        }
        (writes, removals, complete)
    }

    /// The atomic-dir layout: when anything changes (or the folder is not yet in this layout),
    /// the whole final set goes into a new generation, `..data` is swapped to it, the visible
    /// symlinks are made and the removed names unlinked, then old generations are removed.
    /// A failure before the swap fails every write and leaves the old set as it was.
    fn execute_atomic(
        &self,
        plan: &Plan,
        errors: &mut Vec<StoreError>,
    ) -> (Vec<Result<(), StoreError>>, Vec<RemovalResult>) {
        let folder = self.folder.as_ref().expect("writable");
        let dir = folder.path();
        let current = match folder.current_generation() {
            Ok(c) => c,
            Err(e) => {
                let (kind, msg) = (io::ErrorKind::Other, e.to_string());
                errors.push(e);
                return blocked_results(dir, plan, kind, &msg, "write (..data unreadable)");
            }
        };
        let in_shape = current.is_some()
            && self.manifest.layout == ManifestLayout::AtomicDir
            && plan.final_files.keys().all(|name| {
                matches!(
                    folder.visible_kind(name),
                    Ok(Visible::DataLink | Visible::Other)
                )
            });
        if plan.writes.is_empty() && plan.removals.is_empty() && in_shape {
            return (Vec::new(), Vec::new());
        }

        // The new set: planned bytes, else what the visible name holds now (a failed
        // instance's file, an unchanged one). A name that cannot be read (a foreign symlink
        // put in its place, say) is left out and its visible entry left alone.
        let planned: HashMap<&str, &[u8]> = plan
            .writes
            .iter()
            .map(|w| (w.name.as_str(), w.content.as_slice()))
            .collect();
        let mut kept: Vec<(String, Vec<u8>)> = Vec::new();
        for name in plan.final_files.keys() {
            if planned.contains_key(name.as_str()) {
                continue;
            }
            match folder.read_managed(name) {
                Ok(Some(file)) => kept.push((name.clone(), file.content)),
                Ok(None) => {}
                Err(e) => errors.push(e),
            }
        }
        let files: Vec<(&str, &[u8])> = planned
            .iter()
            .map(|(n, c)| (*n, *c))
            .chain(kept.iter().map(|(n, c)| (n.as_str(), c.as_slice())))
            .collect();

        // Names that do not exist yet get their symlink before the swap: it resolves in the
        // same instant as every other name of the new set, and a crash right after the swap
        // cannot leave a new CA without its visible name (a hash file, say) until a restart.
        // Until the swap it points at nothing, as the name did before.
        let mut link_errors: HashMap<&str, StoreError> = HashMap::new();
        let mut pre_linked: Vec<&str> = Vec::new();
        for (name, _) in &files {
            if matches!(folder.visible_kind(name), Ok(Visible::Missing)) {
                match folder.link_visible(name) {
                    Ok(()) => pre_linked.push(name),
                    Err(e) => {
                        link_errors.insert(name, e);
                    }
                }
            }
        }
        let swapped = folder
            .build_generation(&files, &self.opts.attrs())
            .and_then(|generation| {
                match folder
                    .swap_data_link(&generation)
                    .and_then(|()| folder.sync())
                {
                    Ok(()) => Ok(generation),
                    Err(e) => {
                        // Not swapped (or not durably): the old set stays the one in use.
                        if folder.current_generation().ok().flatten().as_deref()
                            != Some(&generation)
                        {
                            let _ = folder.remove_generation(&generation);
                        }
                        Err(e)
                    }
                }
            });
        let generation = match swapped {
            Ok(g) => g,
            Err(e) => {
                // The new names stay unborn: their links go with the generation.
                for name in pre_linked {
                    let _ = folder.remove_file(name);
                }
                let (kind, msg) = match &e {
                    StoreError::Io { source, .. } => (source.kind(), e.to_string()),
                    _ => (io::ErrorKind::Other, e.to_string()),
                };
                errors.push(e);
                return blocked_results(
                    dir,
                    plan,
                    kind,
                    &msg,
                    "write (the new generation could not be completed)",
                );
            }
        };

        // Visible names: every file of the set becomes (or stays) `name -> ..data/name`.
        for (name, _) in &files {
            if link_errors.contains_key(name) {
                continue;
            }
            let linked = match folder.visible_kind(name) {
                Ok(Visible::DataLink) => Ok(()),
                Ok(_) => folder.link_visible(name),
                Err(e) => Err(e),
            };
            if let Err(e) = linked {
                link_errors.insert(name, e);
            }
        }
        let writes = plan
            .writes
            .iter()
            .map(|w| match link_errors.remove(w.name.as_str()) {
                Some(e) => Err(e),
                None => Ok(()),
            })
            .collect();
        errors.extend(link_errors.into_values());
        let removals = remove_all(folder, &plan.removals);
        let cleaned = folder
            .sync()
            .and_then(|()| folder.remove_generations(Some(&generation)));
        if let Err(e) = cleaned {
            errors.push(e);
        }
        (writes, removals)
    }
}

/// Removes every planned removal, in order.
fn remove_all(folder: &Folder, removals: &[plan::Removal]) -> Vec<RemovalResult> {
    removals
        .iter()
        .map(|r| match folder.remove_file(&r.name) {
            Ok(true) => RemovalResult::Removed,
            Ok(false) => RemovalResult::Gone,
            Err(e) => RemovalResult::Failed(e),
        })
        .collect()
}

/// Refuses to enter the atomic-dir layout over a `..data` that certsync did not make.
fn check_no_foreign_data_link(folder: &Folder) -> Result<(), StoreError> {
    if folder.exists(write::DATA_LINK)? {
        return Err(StoreError::Unmanaged {
            path: folder.join(write::DATA_LINK),
        });
    }
    Ok(())
}

/// Every write failed with the same cause (and no removal was tried): the results of a pass
/// stopped before it wrote anything.
fn blocked_results(
    dir: &Path,
    plan: &Plan,
    kind: io::ErrorKind,
    msg: &str,
    op: &'static str,
) -> (Vec<Result<(), StoreError>>, Vec<RemovalResult>) {
    (
        plan.writes
            .iter()
            .map(|w| {
                Err(StoreError::Io {
                    path: dir.join(&w.name),
                    op,
                    source: io::Error::new(kind, msg.to_string()),
                })
            })
            .collect(),
        plan.removals
            .iter()
            .map(|_| RemovalResult::Skipped)
            .collect(),
    )
}

/// Fingerprints of every CA an instance record names (current and replaced).
fn used_fingerprints(files: &BTreeMap<String, Record>) -> HashSet<&str> {
    files
        .values()
        .flat_map(|r| match r {
            Record::Instance {
                current, replaced, ..
            } => current
                .iter()
                .map(String::as_str)
                .chain(replaced.iter().map(|r| r.sha256.as_str()))
                .collect::<Vec<_>>(),
            Record::Bundle { .. } | Record::Hash { .. } | Record::Truststore { .. } => Vec::new(),
        })
        .collect()
}

/// Writes every planned file of the flat layout; for many files, on a few threads, since each
/// waits on its own fsync. Results in input order.
fn run_writes(
    folder: &Folder,
    attrs: &Attrs,
    mode: WriteMode,
    writes: &[plan::Write],
) -> Vec<Result<(), StoreError>> {
    const THREADS: usize = 16;
    const MIN_PER_THREAD: usize = 8;
    let one = |w: &plan::Write| match (mode, w.change) {
        (WriteMode::InPlace, Change::Updated) => {
            match folder.write_in_place(&w.name, &w.content, attrs) {
                Ok(true) => Ok(()),
                // Not a regular file (a symlink through `..data`): created atomically.
                Ok(false) => folder.write_atomic(&w.name, &w.content, attrs),
                Err(e) => Err(e),
            }
        }
        _ => folder.write_atomic(&w.name, &w.content, attrs),
    };
    if writes.len() < 2 * MIN_PER_THREAD {
        return writes.iter().map(one).collect();
    }
    let chunk = writes
        .len()
        .div_ceil(THREADS)
        .max(MIN_PER_THREAD)
        .min(writes.len());
    std::thread::scope(|s| {
        let handles: Vec<_> = writes
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(one).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// Writes the manifest atomically and makes it durable (folder fsync).
fn save_manifest(folder: &Folder, manifest: &Manifest, mode: u32) -> Result<(), StoreError> {
    // certsync's own file: its mode, but no chown (consumers never read it).
    let attrs = Attrs {
        mode,
        uid: None,
        gid: None,
    };
    folder.write_atomic(MANIFEST_NAME, &manifest.to_bytes(), &attrs)?;
    folder.sync()
}

/// Reads the manifest; a missing one is an empty folder state, an unreadable one an error.
fn load_manifest(folder: &Folder) -> Result<Manifest, StoreError> {
    let path = folder.join(MANIFEST_NAME);
    let existing = folder
        .read_file(MANIFEST_NAME)
        .map_err(|e| StoreError::Manifest {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    match existing {
        None => Ok(Manifest::default()),
        Some(file) => {
            Manifest::parse(&file.content).map_err(|reason| StoreError::Manifest { path, reason })
        }
    }
}

/// Certificates of the managed files, by fingerprint. Instance files first; the bundle and
/// hash files only if some recorded CA was not found there (an instance file lost or
/// changed behind certsync's back). Unreadable files are skipped: they are rewritten later.
fn load_pool(folder: &Folder, manifest: &Manifest) -> HashMap<String, Cert> {
    let mut pool = HashMap::new();
    let read_into = |name: &str, pool: &mut HashMap<String, Cert>| {
        if let Ok(Some(file)) = folder.read_managed(name)
            && let Ok(certs) = crate::cert::read_certs_lenient(&file.content)
        {
            for cert in certs {
                pool.entry(cert.fingerprint()).or_insert(cert);
            }
        }
    };
    for (name, record) in &manifest.files {
        if matches!(record, Record::Instance { .. }) {
            read_into(name, &mut pool);
        }
    }
    let needed = used_fingerprints(&manifest.files);
    if needed.iter().any(|fp| !pool.contains_key(*fp)) {
        for (name, record) in &manifest.files {
            if matches!(record, Record::Bundle { .. } | Record::Hash { .. }) {
                read_into(name, &mut pool);
            }
        }
    }
    pool.retain(|fp, _| needed.contains(fp.as_str()));
    pool
}
