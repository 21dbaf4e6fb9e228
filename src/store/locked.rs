//! [`Store`]: the trust folder opened for writing. It holds the folder's lock, commits plans
//! and saves the daemon's state.
//!
//! Owns: opening for writing (create the folder, take the lock, remove leftovers of a crash),
//! the checks before each commit (the plan is from this store and its current records; the
//! configured path still names the folder it locked), the second plan after an instance file
//! could not be written, and the store's memory across passes (last pass, a final manifest
//! still owed). Must not: decide what a pass writes (`plan`) or how (the executor and the
//! layouts).

use std::collections::BTreeSet;
use std::io;
use std::ops::Deref;
use std::time::SystemTime;

use super::executor::{self, Before};
use super::manifest::ManifestLayout;
use super::plan::{Plan, window_end};
use super::view::{StorePlan, StoreView, check_options, dry_run_report};
use super::write::{self, Folder};
use super::{OpaqueState, PassInput, Preview, StoreError, StoreOptions, StoreReport, StoreState};

/// The trust folder, open for writing: a [`StoreView`] that also holds the folder's lock. It
/// derefs to that view, so it plans the same way; only it can [commit](Store::commit) a plan
/// and [save](Store::save_state) the daemon's state.
pub struct Store<S = OpaqueState> {
    pub(super) view: StoreView<S>,
    /// The `now` of the last committed pass (for [`Store::next_deadline`]).
    last_pass: Option<SystemTime>,
    /// The last final manifest could not be written: write it at the next pass.
    manifest_dirty: bool,
}

impl<S> std::fmt::Debug for Store<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.view.opts.dir)
            .field("managed_files", &self.view.manifest.files.len())
            .finish_non_exhaustive()
    }
}

/// A store reads and plans exactly as a view of the same folder: it is one, plus the lock.
impl<S> Deref for Store<S> {
    type Target = StoreView<S>;

    fn deref(&self) -> &StoreView<S> {
        &self.view
    }
}

impl<S: StoreState> Store<S> {
    /// Opens the trust folder for writing: creates it (0755, parents too) if missing, takes
    /// an exclusive flock on it ([`StoreError::Locked`] if another certsync holds it), removes
    /// leftover temp files (and in the atomic-dir layout, generations a crash left behind),
    /// and loads the manifest and the managed files' certificates.
    pub fn open_locked(opts: StoreOptions) -> Result<Store<S>, StoreError> {
        check_options(&opts)?;
        write::create_dir(&opts.dir)?;
        let folder = Folder::open(&opts.dir)?;
        folder.lock()?;
        folder.remove_temp_files()?;
        let view = StoreView::read(opts, Some(folder))?;
        if let Some(folder) = &view.folder
            && view.manifest.layout == ManifestLayout::AtomicDir
        {
            // Generations a crash left behind (made before `..data` was swapped to them, or
            // whose removal after the swap did not happen).
            let current = folder.current_generation()?;
            folder.remove_generations(current.as_deref())?;
        }
        Ok(Store {
            view,
            last_pass: None,
            manifest_dirty: false,
        })
    }

    /// Writes `plan` in the crash-safe order (see the module docs of `store`), saving `state`
    /// with the manifest *before* any file changes, so a crash in between cannot lose it (the
    /// daemon records there the hooks it owes a run). Never fails as a whole: every problem is
    /// in the report, per entry or in `errors`.
    ///
    /// Refused whole (nothing written, every entry failing) when the plan is not from this
    /// store's current records (another commit came between, or it was planned by another
    /// view), or when the configured path no longer names the folder this store locked.
    pub fn commit(&mut self, plan: StorePlan, state: S) -> StoreReport {
        let folder = match self.writable_folder() {
            Ok(folder) => folder,
            Err(e) => {
                let mut report = plan.report();
                report.errors.push(e);
                return report;
            }
        };
        if plan.origin != self.view.origin {
            return plan.refused(StoreError::Refused {
                reason: format!(
                    "the plan for {} was made from another state of the folder (another pass was committed since, or it was planned elsewhere); plan again",
                    self.view.opts.dir.display()
                ),
            });
        }
        if let Err(e) = folder.check_path() {
            return plan.refused(e);
        }
        let StorePlan {
            plan: first,
            input,
            now,
            ..
        } = plan;
        let report = self.carry_out(first, &input, now, state);
        self.view
            .absorb(input.updates.iter().flat_map(|u| u.certs.iter()));
        report
    }

    /// Plans `input` at `now` and commits the plan at once, as [`StoreView::plan`] then
    /// [`Store::commit`] would, with the daemon state `state` computes from the plan's
    /// preview. The certificates of `input` are used up: the store keeps their notAfter, and
    /// `input.updates` keeps every entry but with no certificate (at 10,000 instances they
    /// were megabytes while the pass ended).
    pub fn apply(
        &mut self,
        input: &mut PassInput,
        now: SystemTime,
        state: impl FnOnce(&Preview) -> S,
    ) -> StoreReport {
        let first = self.view.compute(input, &BTreeSet::new(), now);
        let state = state(&first.preview(&self.view.opts.dir));
        // The checks of `commit`, with its answers.
        match self.writable_folder() {
            Err(e) => {
                let mut report = dry_run_report(first, &self.view.opts.dir);
                report.errors.push(e);
                return report;
            }
            Ok(folder) => {
                if let Err(e) = folder.check_path() {
                    return self.view.refuse(input, e);
                }
            }
        }
        let report = self.carry_out(first, input, now, state);
        self.view
            .absorb(input.updates.iter().flat_map(|u| u.certs.iter()));
        // The store keeps only their notAfter (see `StoreView::expiry`): the certificates
        // are freed here, before the rest of the pass.
        for u in &mut input.updates {
            u.certs = Vec::new();
        }
        report
    }

    /// Writes `first`, planned from `input` at `now`, and plans again where instance files
    /// could not be written.
    fn carry_out(
        &mut self,
        first: Plan,
        input: &PassInput,
        now: SystemTime,
        state: S,
    ) -> StoreReport {
        let mut report = self.execute(first, input, state.clone());
        // The bundle, hash files and truststore were planned from the new records. Where an
        // instance file could not be written its old record stays, so plan once more with that
        // instance treated as failed: the derived files then match the instance files again.
        let failed: BTreeSet<String> = report
            .entries
            .iter()
            .filter(|e| e.result.is_err())
            .map(|e| e.instance_id.clone())
            .collect();
        if !failed.is_empty() {
            let failed: BTreeSet<&str> = failed.iter().map(String::as_str).collect();
            let again = self.view.compute(input, &failed, now);
            if !again.writes.is_empty() || !again.removals.is_empty() {
                let second = self.execute(again, input, state);
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

    /// Carries out one plan through the executor and takes its outcome as the store's state:
    /// the new records (the notAfter of the certificates they name is kept after the commit).
    fn execute(&mut self, plan: Plan, input: &PassInput, state: S) -> StoreReport {
        let folder = self
            .view
            .folder
            .as_ref()
            .expect("a locked store holds its folder");
        let outcome = executor::execute(
            folder,
            &self.view.opts,
            Before {
                manifest: &self.view.manifest,
                state_unreadable: self.view.state_unreadable,
                manifest_dirty: self.manifest_dirty,
            },
            plan,
            input,
            state,
        );
        self.view.manifest = outcome.manifest;
        self.view.state_unreadable = outcome.state_unreadable;
        self.manifest_dirty = outcome.manifest_dirty;
        self.view.origin.bump();
        outcome.report
    }

    /// Saves a new daemon state (the records stay as they are). A no-op when it is unchanged.
    pub fn save_state(&mut self, state: S) -> Result<(), StoreError> {
        if state == self.view.manifest.state && !self.view.state_unreadable {
            return Ok(());
        }
        let folder = self.writable_folder()?;
        folder.check_path()?;
        executor::save_manifest(
            folder,
            self.view.manifest.layout,
            &self.view.manifest.files,
            &state,
            self.view.opts.mode,
        )?;
        self.view.manifest.state = state;
        self.view.state_unreadable = false;
        Ok(())
    }
}

impl<S> Store<S> {
    /// The folder this store locked (a locked store always has one: it creates it).
    fn writable_folder(&self) -> Result<&Folder, StoreError> {
        match &self.view.folder {
            Some(folder) => Ok(folder),
            None => Err(StoreError::Io {
                path: self.view.opts.dir.clone(),
                op: "write (the folder is not open)",
                source: io::Error::from(io::ErrorKind::PermissionDenied),
            }),
        }
    }

    /// Whether the configured path still names the folder this store opened and locked.
    pub fn check_folder(&self) -> Result<(), StoreError> {
        match &self.view.folder {
            Some(folder) => folder.check_path(),
            None => Ok(()),
        }
    }

    /// The earliest moment after the last pass at which a replaced CA may leave a file (the
    /// end of `rotation_overlap`, of `rotation_overlap_max`, or its notAfter), so the daemon
    /// can schedule a pass then. Moments not after the last pass are skipped: they belong to
    /// files the last pass kept as they were (failed instances, `prune = false`, or a CA the
    /// endpoints still use), and returning them would make the daemon spin.
    pub fn next_deadline(&self) -> Option<SystemTime> {
        let opts = &self.view.opts;
        self.view
            .replaced()
            .flat_map(|(_, r)| {
                [
                    window_end(r.replaced_at, opts.rotation_overlap),
                    window_end(r.replaced_at, opts.rotation_overlap_max),
                    r.not_after,
                ]
            })
            .map(SystemTime::from)
            .filter(|t| self.last_pass.is_none_or(|last| *t > last))
            .min()
    }
}
