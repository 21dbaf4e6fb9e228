//! The trust-folder sink: the store (`crate::store`, the only writer of the folder) driven
//! from the async daemon.
//!
//! Owns: running the store's blocking file I/O (fsyncs) on a blocking thread, containing a
//! panic in it (the pass fails, the folder is reopened from disk, the daemon goes on), and
//! swapping the folder on a reload (the lock released first, the old folder kept if the new
//! one cannot be opened). It must not decide what the files hold (the store's plan does).

use std::path::Path;
use std::time::SystemTime;

use crate::source::panic_text;
use crate::store::{
    EntryOutcome, EntryState, PassInput, Preview, Store, StoreError, StoreOptions, StoreReport,
};

/// The trust folder, open.
pub struct TrustSink {
    /// Taken while a pass runs on the blocking thread; always back between passes.
    store: Option<Store>,
    options: StoreOptions,
}

impl TrustSink {
    /// Opens the folder (`read_only`: a view for `--dry-run` that creates and locks nothing).
    pub fn open(options: StoreOptions, read_only: bool) -> Result<TrustSink, StoreError> {
        let store = Store::open(options.clone(), read_only)?;
        Ok(TrustSink {
            store: Some(store),
            options,
        })
    }

    fn store(&self) -> &Store {
        self.store
            .as_ref()
            .expect("the store is back between passes")
    }

    /// The folder's path.
    pub fn dir(&self) -> &Path {
        &self.options.dir
    }

    /// Applies a pass (or, `dry_run`, computes its report). `state` computes the daemon
    /// state saved with the manifest before any file changes, from what is about to change.
    /// Returns the report and gives the input back (it holds every certificate: moved, not
    /// cloned).
    pub async fn apply(
        &mut self,
        input: PassInput,
        now: SystemTime,
        dry_run: bool,
        state: impl FnOnce(&Preview) -> Option<serde_json::Value> + Send + 'static,
    ) -> (StoreReport, PassInput) {
        let mut store = self.store.take().expect("the store is back between passes");
        let joined = tokio::task::spawn_blocking(move || {
            // A bug in the store must not take the daemon down with it.
            let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                store.apply_with_state(&input, now, dry_run, state)
            }));
            (store, applied, input)
        })
        .await;
        match joined {
            Ok((store, Ok(report), input)) => {
                self.store = Some(store);
                (report, input)
            }
            Ok((store, Err(panic), input)) => {
                let detail = panic_text(&*panic);
                tracing::error!(detail = %detail, "the trust folder's pass failed with an internal error; reopening the folder");
                drop(store);
                self.store = Some(self.reopened());
                let report = refused_report(&input, &self.options.dir, &detail);
                (report, input)
            }
            Err(e) => {
                tracing::error!(error = %e, "the trust folder's task failed; reopening the folder");
                self.store = Some(self.reopened());
                let report = StoreReport {
                    errors: vec![StoreError::Refused {
                        reason: format!("internal error: {e}"),
                    }],
                    ..StoreReport::default()
                };
                (report, PassInput::default())
            }
        }
    }

    /// Saves a new daemon state with the folder (a no-op when unchanged).
    pub async fn save_state(&mut self, state: Option<serde_json::Value>) -> Result<(), StoreError> {
        let mut store = self.store.take().expect("the store is back between passes");
        let (store, result) = tokio::task::spawn_blocking(move || {
            let result = store.save_state(state);
            (store, result)
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        self.store = Some(store);
        result
    }

    /// Opens the folder of `options` instead (a reload). The old folder's lock is released
    /// first (it may be the same folder); if the new one cannot be opened, the old one is
    /// reopened (or at worst kept as a read-only view) and the error returned.
    pub fn reconfigure(&mut self, options: StoreOptions) -> Result<(), StoreError> {
        drop(self.store.take());
        match Store::open(options.clone(), false) {
            Ok(store) => {
                self.store = Some(store);
                self.options = options;
                Ok(())
            }
            Err(e) => {
                self.store = Some(self.reopened());
                Err(e)
            }
        }
    }

    /// A fresh store on the current folder after a failure; a read-only view if even that
    /// fails (passes then report the folder's error).
    fn reopened(&self) -> Store {
        let options = self.options.clone();
        Store::open(options.clone(), false)
            .or_else(|_| Store::open(options.clone(), true))
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "cannot reopen the trust folder");
                Store::unopened(options)
            })
    }

    /// The daemon state an earlier run saved with the folder.
    pub fn saved_state(&self) -> Option<&serde_json::Value> {
        self.store().state()
    }

    /// Every managed instance file.
    pub fn current(&self) -> Vec<EntryState> {
        self.store().current()
    }

    /// When a replaced CA next leaves a file.
    pub fn next_deadline(&self) -> Option<SystemTime> {
        self.store().next_deadline()
    }

    /// Whether `trust.dir` still names the folder opened (SPEC 7).
    pub fn check_folder(&self) -> Result<(), StoreError> {
        self.store().check_folder()
    }
}

/// The report of a pass the store could not carry out: every update failed, nothing is known
/// to have changed (the folder is reopened from disk).
fn refused_report(input: &PassInput, dir: &Path, detail: &str) -> StoreReport {
    let reason = format!("internal error in the trust folder's pass: {detail}");
    StoreReport {
        entries: input
            .updates
            .iter()
            .map(|u| EntryOutcome {
                instance_id: u.instance_id.clone(),
                category: u.category.clone(),
                path: dir.join(&u.file_name),
                result: Err(StoreError::Refused {
                    reason: reason.clone(),
                }),
                not_after: None,
                fingerprints: Vec::new(),
            })
            .collect(),
        errors: vec![StoreError::Refused { reason }],
        ..StoreReport::default()
    }
}
