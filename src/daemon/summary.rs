//! The result of one pass as data: one line per instance and category, what failed, what
//! changed. `once` prints it (the command layer owns the wording); `run` logs it.

use std::path::PathBuf;

use time::OffsetDateTime;

/// What happened to one instance file in a pass.
#[derive(Clone, Debug)]
pub struct SummaryLine {
    /// Instance display name (`-` for a removed file whose instance is gone).
    pub instance: String,
    /// Category, when known.
    pub category: Option<String>,
    /// The file, when known.
    pub file: Option<PathBuf>,
    /// Outcome.
    pub status: LineStatus,
    /// Earliest notAfter of the file's current CAs.
    pub not_after: Option<OffsetDateTime>,
}

/// Outcome of one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LineStatus {
    /// Content unchanged; nothing written.
    Unchanged,
    /// Written (or would be, in a dry run).
    Updated,
    /// Removed (or would be, in a dry run): nothing has produced it for
    /// [`crate::sink::UNPRODUCED_PASSES`] passes.
    Removed,
    /// Failed; its files kept as they were.
    Failed(String),
}

/// The result of one pass.
#[derive(Debug, Default)]
pub struct PassSummary {
    /// The pass was a dry run: nothing was written, no hook ran.
    pub dry_run: bool,
    /// One line per instance and category.
    pub lines: Vec<SummaryLine>,
    /// Instances that failed.
    pub failed_instances: usize,
    /// Hooks that failed.
    pub failed_hooks: Vec<String>,
    /// Files written or removed.
    pub changed_files: Vec<PathBuf>,
    /// Store-level errors (bundle, hash files, manifest).
    pub store_errors: Vec<String>,
}

impl PassSummary {
    /// True when every instance synced, every hook ran and the store reported no error.
    pub fn ok(&self) -> bool {
        self.failed_instances == 0 && self.failed_hooks.is_empty() && self.store_errors.is_empty()
    }
}
