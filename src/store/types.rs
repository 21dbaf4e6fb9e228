//! The store's vocabulary: its options, what a pass hands it, what it reports back, the state
//! of a managed file, and its error enum.
//!
//! Owns: these types and their small helpers (defaults of SPEC 3, [`StoreError::reason`]).
//! Must not: do I/O or decide anything about the folder; `plan` and the executor do. Nothing
//! here depends on another module of the store, so every other one can use it.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;

use crate::cert::Cert;

/// `sync.rotation_overlap_max` when left out (SPEC 13).
pub const DEFAULT_ROTATION_OVERLAP_MAX: Duration = Duration::from_secs(30 * 86400);

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
    /// How long it may stay at most while the endpoint probes show it still in use
    /// (SPEC 13; never shorter than `rotation_overlap`).
    pub rotation_overlap_max: Duration,
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
    /// File holding the truststore's password; `None`:
    /// [`DEFAULT_PASSWORD`](super::truststore::DEFAULT_PASSWORD).
    pub pkcs12_password_file: Option<PathBuf>,
}

impl StoreOptions {
    /// Options with the defaults of SPEC 3 for `dir`: mode 0644, no bundle, hash files, prune,
    /// 24 h overlap (30 days at most on evidence), no owner or group, `rename`, `flat`, no truststore.
    pub fn new(dir: PathBuf) -> StoreOptions {
        StoreOptions {
            dir,
            mode: 0o644,
            bundle: None,
            capath: true,
            prune: true,
            rotation_overlap: Duration::from_secs(86400),
            rotation_overlap_max: DEFAULT_ROTATION_OVERLAP_MAX,
            owner: None,
            group: None,
            write_mode: WriteMode::Rename,
            layout: Layout::Flat,
            pkcs12: None,
            pkcs12_password_file: None,
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

/// The daemon's state kept with the folder (SPEC 7: hooks owed a run, discovered
/// instances): any serde type with a default, saved in the manifest's `state` key in the same
/// atomic writes as the records it goes with. The default value is "nothing to keep" and is
/// not written (the key is left out), so a folder without such state has none in its
/// manifest. Its serialisation must not fail (no map with keys that are not strings).
pub trait StoreState: Serialize + DeserializeOwned + Clone + PartialEq + Default {}

impl<T: Serialize + DeserializeOwned + Clone + PartialEq + Default> StoreState for T {}

/// The state as opaque JSON (`None`: no state), what the daemon handed the store before
/// states were typed. The default state type of [`Store`](super::Store) and
/// [`StoreView`](super::StoreView) (for readers that do not look at the state).
pub type OpaqueState = Option<serde_json::Value>;

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
    /// Replaced CAs the source says the file keeps, with when each was replaced: a fleet
    /// publisher's overlap (SPEC 14), so a host that never saw them current still holds them.
    /// Kept until their notAfter or until the source stops listing them (then the store's own
    /// `rotation_overlap` rule applies from `replaced_at`). Empty for the cloud source.
    pub kept: Vec<KeptCa>,
}

/// A replaced CA a source says to keep (see [`DesiredEntry::kept`]).
#[derive(Clone, Debug)]
pub struct KeptCa {
    /// The validated CA.
    pub cert: Cert,
    /// When it left the current set.
    pub replaced_at: OffsetDateTime,
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
    /// What the endpoint probes showed (SPEC 13), for the replaced CAs past
    /// `rotation_overlap`.
    pub evidence: Evidence,
}

/// What the endpoint probes (SPEC 13) showed, by instance id: one entry per endpoint the
/// instance has now, its last verification (`None`: never verified). A replaced CA whose
/// `rotation_overlap` has passed stays, up to `rotation_overlap_max`, while any endpoint of
/// its instance anchors at it or was not verified since it was replaced. An instance with no
/// entry (or none here: endpoints not probed) keeps a replaced CA for `rotation_overlap` only.
pub type Evidence = BTreeMap<String, Vec<Option<Verified>>>;

/// An endpoint's last successful verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// When the CAs it was verified against were read from the instance's files.
    pub at: OffsetDateTime,
    /// The SHA-256 fingerprint (hex) of the CA its chain anchored at.
    pub anchor: String,
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
    /// Cloud id of the instance.
    pub instance_id: String,
    /// The API's `category`.
    pub category: String,
    /// Absolute path of the instance file.
    pub path: PathBuf,
    /// What happened to the file, or why it was not written.
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
    /// Cloud id of the instance.
    pub instance_id: String,
    /// The API's `category`.
    pub category: String,
    /// Absolute path of the file.
    pub path: PathBuf,
    /// SHA-256 fingerprints (hex) of the current CAs, in file order.
    pub fingerprints: Vec<String>,
    /// Earliest notAfter among the current CAs (`None` if none is known).
    pub not_after: Option<OffsetDateTime>,
    /// The replaced CAs the file still holds (the overlap), most recently replaced first.
    pub overlap: Vec<OverlapState>,
}

/// A replaced CA still in its instance file, and when it leaves (SPEC 7, 13).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverlapState {
    /// SHA-256 fingerprint (hex).
    pub sha256: String,
    /// When it left the current set.
    pub replaced_at: OffsetDateTime,
    /// When it leaves unless the endpoints still use it: the end of `rotation_overlap`, or
    /// its notAfter if sooner.
    pub leaves_at: OffsetDateTime,
    /// When it leaves at the latest: the end of `rotation_overlap_max`, or its notAfter if
    /// sooner.
    pub leaves_by: OffsetDateTime,
}

/// A failure of the store. Every variant names the path it concerns.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The trust folder (or a missing parent) could not be created.
    #[error("cannot create trust folder {path}: {source}")]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A system call on a file of the folder failed.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// The file (or the folder).
        path: PathBuf,
        /// What was done, as a verb phrase: `fsync folder`, `rename temporary file over`.
        op: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A file with a name the pass wants exists but is not in the manifest.
    #[error(
        "{path} exists but certsync did not write it (not in its manifest); refusing to overwrite it - move it away or change the file name"
    )]
    Unmanaged {
        /// The file in the way.
        path: PathBuf,
    },
    /// A managed name is a symlink, folder, FIFO or device.
    #[error("{path} is a symlink or not a regular file; certsync does not follow or replace it")]
    NotRegularFile {
        /// The name.
        path: PathBuf,
    },
    /// The manifest cannot be read or makes no sense.
    #[error(
        "manifest {path} is unusable: {source}; move it aside to start over (certsync will then treat the files already in the folder as unmanaged and refuse to overwrite them)"
    )]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// Why: what is wrong with its content (`manifest::ManifestError`), or the error that
        /// reading the file gave (a [`StoreError`] itself). Its text is in the message.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Another process holds the folder's lock.
    #[error("trust folder {path} is locked by another certsync process")]
    Locked {
        /// The folder.
        path: PathBuf,
    },
    /// `trust.dir` is relative.
    #[error("trust folder {path} is not an absolute path")]
    RelativeDir {
        /// The path as given.
        path: PathBuf,
    },
    /// A file name the pass asked for breaks the rules of names in the folder.
    #[error("invalid file name {name:?}: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// Which rule.
        reason: &'static str,
    },
    /// Two entries of one pass (or an entry and a derived file) want the same name.
    #[error("{path} is already {other}")]
    NameConflict {
        /// The name both want.
        path: PathBuf,
        /// What already has it.
        other: String,
    },
    /// The file's owner or group could not be set.
    #[error(
        "cannot give {path} to {owner}: {source} (setting another owner, or a group certsync is not a member of, needs root or CAP_CHOWN)"
    )]
    Chown {
        /// The file.
        path: PathBuf,
        /// The owner asked for, e.g. `uid 65534 and gid 65534`.
        owner: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The truststore's password file cannot be read.
    #[error(
        "cannot write truststore {path}: cannot read its password from {password_file}: {source}; the old truststore is kept"
    )]
    PasswordFile {
        /// The truststore.
        path: PathBuf,
        /// `trust.pkcs12.password_file`.
        password_file: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The truststore cannot be built.
    #[error("cannot write truststore {path}: {source}; the old truststore is kept")]
    Truststore {
        /// The truststore.
        path: PathBuf,
        /// Why.
        #[source]
        source: super::truststore::EncodeError,
    },
    /// `trust.dir` no longer names the folder that was opened and locked.
    #[error(
        "trust folder {path} is now {now}, not the folder certsync opened and locked; nothing is written until certsync is reloaded (SIGHUP) or restarted"
    )]
    FolderMoved {
        /// `trust.dir`.
        path: PathBuf,
        /// What the path names now.
        now: String,
    },
    /// An `in-place` target has more than one hard link.
    #[error(
        "{path} has {links} hard links; rewriting it in place would change a file outside the trust folder, so certsync does not (remove the extra links)"
    )]
    HardLinked {
        /// The file.
        path: PathBuf,
        /// Its number of links.
        links: u64,
    },
    /// A managed file is larger than any file certsync writes.
    #[error("{path} is {size} bytes, more than the {limit} certsync ever writes; not read")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The most certsync reads.
        limit: u64,
    },
    /// The pass was refused as a whole before anything was written.
    #[error("not written: {reason}")]
    Refused {
        /// Why.
        reason: String,
    },
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
