//! The trust-folder sink: the store (`crate::store`, the only writer of the folder) driven
//! from the async daemon.
//!
//! Owns: running the store's blocking file I/O (fsyncs) on a blocking thread, containing a
//! panic in it (the pass fails, the folder is reopened from disk, the daemon goes on), and
//! swapping the folder on a reload (the lock released first, the old folder kept if the new
//! one cannot be opened). It must not decide what the files hold (the store's plan does).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::SystemTime;

use crate::source::panic_text;
use crate::store::{
    EntryOutcome, EntryState, Evidence, PassInput, Preview, Store, StoreError, StoreOptions,
    StoreReport, StoreState, StoreView,
};

/// The trust folder, open, saving the daemon's state `S` with it (the store's typed state).
pub struct TrustSink<S> {
    /// Taken while a pass runs on the blocking thread; always back between passes.
    held: Option<Held<S>>,
    options: StoreOptions,
}

/// How the sink holds the folder.
enum Held<S> {
    /// Open for writing, locked.
    Locked(Store<S>),
    /// Only read: `--dry-run` (every pass is a plan reported, never committed), or, with a
    /// reason, a folder that could not be reopened for writing after a failure (every pass
    /// is refused with that reason until a reload opens it again).
    View(StoreView<S>, Option<String>),
}

impl<S> Held<S> {
    fn view(&self) -> &StoreView<S> {
        match self {
            Held::Locked(store) => store,
            Held::View(view, _) => view,
        }
    }
}

impl<S: StoreState + Send + 'static> TrustSink<S> {
    /// Opens the folder (`read_only`: a view for `--dry-run` that creates and locks nothing).
    pub fn open(options: StoreOptions, read_only: bool) -> Result<TrustSink<S>, StoreError> {
        let held = if read_only {
            Held::View(StoreView::open(options.clone())?, None)
        } else {
            Held::Locked(Store::open_locked(options.clone())?)
        };
        Ok(TrustSink {
            held: Some(held),
            options,
        })
    }

    fn held(&self) -> &Held<S> {
        self.held
            .as_ref()
            .expect("the store is back between passes")
    }

    /// The folder's path.
    pub fn dir(&self) -> &Path {
        &self.options.dir
    }

    /// Applies a pass (or, `dry_run`, computes its report). `state` computes the daemon
    /// state saved with the manifest before any file changes, from what is about to change.
    /// Returns the report and gives the input back, never copied; once committed, its
    /// certificates are used up ([`Store::apply`]), and its entries have none.
    pub async fn apply(
        &mut self,
        mut input: PassInput,
        now: SystemTime,
        dry_run: bool,
        state: impl FnOnce(&Preview) -> S + Send + 'static,
    ) -> (StoreReport, PassInput) {
        let mut held = self.held.take().expect("the store is back between passes");
        let joined = off_workers(move || {
            // A bug in the store must not take the daemon down with it. The input stays out
            // here (the store borrows it, and drops its certificates only once committed), so
            // a panic still leaves it for the report.
            let applied =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match &mut held {
                    Held::Locked(store) if !dry_run => store.apply(&mut input, now, state),
                    Held::View(view, Some(reason)) if !dry_run => view.refuse(
                        &input,
                        StoreError::Refused {
                            reason: reason.clone(),
                        },
                    ),
                    held => held.view().dry_run(&input, now),
                }));
            (held, applied, input)
        })
        .await;
        match joined {
            Ok((held, Ok(report), input)) => {
                self.held = Some(held);
                (report, input)
            }
            Ok((held, Err(panic), input)) => {
                let detail = panic_text(&*panic);
                tracing::error!(detail = %detail, "the trust folder's pass failed with an internal error; reopening the folder");
                drop(held);
                self.held = Some(self.reopened(dry_run));
                let report = refused_report(&input, &self.options.dir, &detail);
                (report, input)
            }
            Err(e) => {
                tracing::error!(error = %e, "the trust folder's task failed; reopening the folder");
                self.held = Some(self.reopened(dry_run));
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

    /// Saves a new daemon state with the folder (a no-op when unchanged, or when the folder
    /// is only read).
    pub async fn save_state(&mut self, state: S) -> Result<(), StoreError> {
        let held = self.held.take().expect("the store is back between passes");
        let (held, result) = off_workers(move || {
            let mut held = held;
            let result = match &mut held {
                Held::Locked(store) => store.save_state(state),
                Held::View(..) => Ok(()),
            };
            (held, result)
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        self.held = Some(held);
        result
    }

    /// Opens the folder of `options` instead (a reload). The old folder's lock is released
    /// first (it may be the same folder); if the new one cannot be opened, the old one is
    /// reopened (or at worst kept as a view that refuses every pass) and the error returned.
    pub fn reconfigure(&mut self, options: StoreOptions) -> Result<(), StoreError> {
        drop(self.held.take());
        match Store::open_locked(options.clone()) {
            Ok(store) => {
                self.held = Some(Held::Locked(store));
                self.options = options;
                Ok(())
            }
            Err(e) => {
                self.held = Some(self.reopened(false));
                Err(e)
            }
        }
    }

    /// A fresh store on the current folder after a failure (a view again for a dry run). If
    /// it cannot be locked, a view that refuses every pass with the reason (passes then
    /// report the folder's error), of the folder as read or, failing that, of nothing.
    fn reopened(&self, dry_run: bool) -> Held<S> {
        let options = self.options.clone();
        if dry_run {
            if let Ok(view) = StoreView::open(options.clone()) {
                return Held::View(view, None);
            }
        } else {
            match Store::open_locked(options.clone()) {
                Ok(store) => return Held::Locked(store),
                Err(e) => {
                    tracing::error!(error = %e, "cannot reopen the trust folder");
                    let reason = format!("the trust folder cannot be opened for writing: {e}");
                    let view = StoreView::open(options.clone())
                        .unwrap_or_else(|_| StoreView::empty(options));
                    return Held::View(view, Some(reason));
                }
            }
        }
        Held::View(
            StoreView::empty(options),
            Some("the trust folder cannot be read".to_string()),
        )
    }

    /// The daemon state an earlier run saved with the folder.
    pub fn saved_state(&self) -> &S {
        self.held().view().saved_state()
    }

    /// Every managed instance file.
    pub fn current(&self) -> Vec<EntryState> {
        self.held().view().current()
    }

    /// When a replaced CA next leaves a file (none while the folder is only read).
    pub fn next_deadline(&self) -> Option<SystemTime> {
        match self.held() {
            Held::Locked(store) => store.next_deadline(),
            Held::View(..) => None,
        }
    }

    /// The instances whose replaced CA the endpoints no longer keep (SPEC 13), for a pass
    /// of them now.
    pub fn released_by(&self, evidence: &Evidence, now: SystemTime) -> BTreeSet<String> {
        self.held().view().released_by(evidence, now)
    }

    /// The instances whose files hold a replaced CA: the only ones a pass needs the
    /// endpoints' evidence of.
    pub fn with_replaced(&self) -> BTreeSet<String> {
        self.held().view().with_replaced()
    }

    /// Whether `trust.dir` still names the folder opened (SPEC 7); a folder that could not
    /// be reopened is that error.
    pub fn check_folder(&self) -> Result<(), StoreError> {
        match self.held() {
            Held::Locked(store) => store.check_folder(),
            Held::View(_, None) => Ok(()),
            Held::View(_, Some(reason)) => Err(StoreError::Refused {
                reason: reason.clone(),
            }),
        }
    }
}

/// Runs `work` (the store's blocking file I/O) off the async workers. Under a multi-thread
/// runtime it runs on the calling thread, through `block_in_place` (a worker hands its tasks
/// to another thread first; the thread of `block_on`, where the daemon's loop runs, just
/// runs it): the pass's plan then lives in the same malloc arena as the rest of the pass,
/// which reuses it once the plan is freed. On a blocking thread of its own (glibc gives each
/// thread that allocates an arena of its own) it was a second heap of tens of MiB at 10,000
/// instances. Elsewhere (a current-thread runtime, as in tests) on a blocking thread.
async fn off_workers<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, tokio::task::JoinError> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::MultiThread) => Ok(tokio::task::block_in_place(work)),
        _ => tokio::task::spawn_blocking(work).await,
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
