//! Deprecated wrappers over the two-step API, kept so that the daemon and the commands compile
//! unchanged while they move to [`StoreView`], [`Store::open_locked`], [`StoreView::plan`] and
//! [`Store::commit`]. Each is a few lines over the new API; this file goes as a whole once
//! nothing calls them.
//!
//! Must not: hold behaviour of its own beyond what the old signatures need (a read-only
//! [`Store`], a state computed by a closure).

use std::time::SystemTime;

use super::view::StoreView;
use super::{OpaqueState, PassInput, Preview, Store, StoreError, StoreOptions, StoreReport};

/// Only for the opaque state the daemon passes today: being non-generic, `Store::open(..)`
/// needs no type annotation at its call sites.
impl Store<OpaqueState> {
    /// Deprecated: use [`Store::open_locked`] (`read_only = false`) or [`StoreView::open`]
    /// (`read_only = true`).
    ///
    /// With `read_only` (for `--dry-run` and `check`) nothing is created, locked or cleaned,
    /// a missing folder is empty, and every commit or state save fails with a permission
    /// error naming the folder.
    pub fn open(opts: StoreOptions, read_only: bool) -> Result<Store, StoreError> {
        if read_only {
            Ok(Store::new(StoreView::open(opts)?, false))
        } else {
            Store::open_locked(opts)
        }
    }

    /// Deprecated: keep a [`StoreView`] of the folder instead. A store that holds no folder
    /// and writes nothing (every commit reports it read-only): what the daemon keeps when the
    /// folder cannot even be opened for reading.
    pub fn unopened(opts: StoreOptions) -> Store {
        Store::new(StoreView::empty(opts), false)
    }

    /// Deprecated: [`Store::commit`] of [`StoreView::plan`] with the saved state, or, with
    /// `dry_run`, the plan's [report](super::StorePlan::report).
    pub fn apply(&mut self, input: &PassInput, now: SystemTime, dry_run: bool) -> StoreReport {
        let saved = self.saved_state().clone();
        self.apply_with_state(input, now, dry_run, move |_| saved)
    }

    /// Deprecated: [`StoreView::plan`], then [`Store::commit`] with the state `state` computes
    /// from the plan's [preview](super::StorePlan::preview); with `dry_run`, the plan's
    /// [report](super::StorePlan::report) and nothing written.
    pub fn apply_with_state(
        &mut self,
        input: &PassInput,
        now: SystemTime,
        dry_run: bool,
        state: impl FnOnce(&Preview) -> OpaqueState,
    ) -> StoreReport {
        let plan = self.plan(input, now);
        if dry_run {
            return plan.report();
        }
        let state = state(plan.preview());
        self.commit(plan, state)
    }

    /// Deprecated: use [`StoreView::saved_state`] (through the store's view) with a typed
    /// state. The daemon state saved with the folder, as opaque JSON.
    pub fn state(&self) -> Option<&serde_json::Value> {
        self.saved_state().as_ref()
    }
}
