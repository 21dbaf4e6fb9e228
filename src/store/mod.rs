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
//! validated [`Cert`](crate::cert::Cert)s) and runs no hooks.
//!
//! Crash safety: a pass first computes everything (a [`StorePlan`]), then, if it creates new names
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

//!
//! The API is two steps. [`StoreView::open`] reads the folder without creating or locking it
//! (for `check` and `--dry-run`); [`Store::open_locked`] opens it for writing, holding its
//! lock, and derefs to the same view. Either [plans](StoreView::plan) a pass into a
//! [`StorePlan`], a value that has written nothing: its [preview](StorePlan::preview) says
//! what would change, its [report](StorePlan::report) is a dry run's result, and only
//! [`Store::commit`] writes it, with the daemon's typed state ([`StoreState`]) saved before
//! any file changes.
//!
//! Module map: `types` (options, input, report, entry states, errors), `view` (reading, the
//! plan as a value), `locked` ([`Store`]: lock, commit, state), `executor` (the crash-safe
//! order of one commit), `batch` (what a layout gets and gives back), `flat` and
//! `atomic_dir` (the two layouts), `plan` (what a pass writes), `manifest` (the on-disk
//! JSON), `write` (every system call on the folder), `truststore` (PKCS#12).

mod atomic_dir;
mod batch;
mod executor;
mod flat;
mod locked;
pub(crate) mod manifest;
mod plan;
pub mod truststore;
mod types;
mod view;
mod write;

pub use locked::Store;
pub use types::{
    Change, DEFAULT_ROTATION_OVERLAP_MAX, DesiredEntry, EntryOutcome, EntryState, Evidence, KeptCa,
    Layout, OpaqueState, OverlapState, PassInput, Preview, RemovedFile, StoreError, StoreOptions,
    StoreReport, StoreState, UNPRODUCED_PASSES, Unproduced, Verified, WriteMode,
};
pub use view::{StorePlan, StoreView};

/// The overlap rule, for a set kept outside the folder (a fleet publication, SPEC 14).
pub(crate) use manifest::Replaced;
pub(crate) use plan::{Previous, carry_over};

/// Name of the manifest inside the trust folder (for tools that list the folder, such as
/// `inspect`, and must skip it).
pub use crate::names::MANIFEST_FILE_NAME;

/// Prefix of certsync's temporary files inside the trust folder.
pub const TEMP_FILE_PREFIX: &str = write::TEMP_PREFIX;
