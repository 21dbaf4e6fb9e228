//! The hooks owed a run (SPEC 8): queued by a pass that changed files their filter matches,
//! run once per pass in config order, and, when one fails, retried on its own backoff until
//! it succeeds, even if nothing else changes. What is owed is saved with the folder (see
//! `state`), so a stop or a crash before a hook ran does not lose its run.
//!
//! Owns: the queue, its retry times and running the due hooks one at a time. It must not
//! decide what changed: the trust sink's report says so.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::Hook;
use crate::hooks::HookError;
use crate::schedule::Backoff;
use crate::sink::StoreReport;
use crate::status::Shared;

use super::state::OwedFiles;

/// A hook that must run: because files changed, or because it failed before.
#[derive(Clone, Debug, Default)]
struct PendingHook {
    files: OwedFiles,
    failures: u32,
    next_retry: Option<Instant>,
}

/// Whether `hook` runs for a change of `changed` instances (`any_change`: some file changed,
/// which is what a hook without an `instances` filter waits for).
pub fn hook_wants(hook: &Hook, changed: &BTreeSet<String>, any_change: bool) -> bool {
    match &hook.instances {
        None => any_change,
        Some(ids) => ids.iter().any(|id| changed.contains(id)),
    }
}

/// The files a pass wrote and those it removed (absolute paths).
pub fn split_changes(report: &StoreReport) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let removed: BTreeSet<&PathBuf> = report.removed.iter().map(|r| &r.path).collect();
    let written = report
        .changed_files
        .iter()
        .filter(|p| !removed.contains(p))
        .cloned()
        .collect();
    (written, removed.into_iter().cloned().collect())
}

/// The queue, by the hook's index in the config.
#[derive(Debug)]
pub struct HookQueue {
    pending: BTreeMap<usize, PendingHook>,
    backoff: Backoff,
}

impl HookQueue {
    /// Nothing owed; failed hooks wait `backoff`.
    pub fn new(backoff: Backoff) -> HookQueue {
        HookQueue {
            pending: BTreeMap::new(),
            backoff,
        }
    }

    /// Queues every hook that a pass's changes concern. New changes run a hook now, even while
    /// it waits for a retry.
    pub fn queue(&mut self, hooks: &[Hook], report: &StoreReport) {
        if !report.changed() {
            return;
        }
        let (written, removed) = split_changes(report);
        for (index, hook) in hooks.iter().enumerate() {
            if hook_wants(hook, &report.changed_instances, true) {
                let pending = self.pending.entry(index).or_default();
                pending.files.add(&written, &removed);
                pending.next_retry = None;
            }
        }
    }

    /// The hooks owed a run, by name, with their files.
    pub fn owed(&self, hooks: &[Hook]) -> BTreeMap<String, OwedFiles> {
        self.pending
            .iter()
            .map(|(index, p)| (hooks[*index].name.clone(), p.files.clone()))
            .collect()
    }

    /// Takes back what an earlier run owed (they run after the first pass).
    pub fn restore(&mut self, hooks: &[Hook], owed: BTreeMap<String, OwedFiles>) {
        for (name, files) in owed {
            match hooks.iter().position(|h| h.name == name) {
                Some(index) => {
                    tracing::info!(hook = %name, "a hook the last run owed will run after the first pass");
                    self.pending.insert(
                        index,
                        PendingHook {
                            files,
                            ..PendingHook::default()
                        },
                    );
                }
                None => {
                    tracing::info!(hook = %name, "a hook the last run owed is no longer configured")
                }
            }
        }
    }

    /// A reload: hooks still configured (by name) keep their place in the queue.
    pub fn reconfigure(&mut self, old: &[Hook], new: &[Hook], backoff: Backoff) {
        let pending = std::mem::take(&mut self.pending);
        for (index, p) in pending {
            let name = &old[index].name;
            if let Some(new_index) = new.iter().position(|h| &h.name == name) {
                self.pending.insert(new_index, p);
            }
        }
        self.backoff = backoff;
    }

    /// The earliest retry of a failed hook.
    pub fn next_retry(&self) -> Option<Instant> {
        self.pending.values().filter_map(|p| p.next_retry).min()
    }

    /// The names of the hooks waiting for a retry after a failure.
    pub fn failing(&self, hooks: &[Hook]) -> Vec<String> {
        self.pending
            .iter()
            .filter(|(_, p)| p.failures > 0)
            .map(|(index, _)| hooks[*index].name.clone())
            .collect()
    }

    /// Runs the queued hooks that are due, in config order, one at a time. Returns the names
    /// of those that failed. A hook queued by new changes has no retry time and is due at
    /// once; one that failed waits for its own backoff, whatever else happens.
    pub async fn run_due(
        &mut self,
        hooks: &[Hook],
        trust_dir: &Path,
        shared: &Shared,
        shutdown: &CancellationToken,
    ) -> Vec<String> {
        let now = Instant::now();
        let due: Vec<usize> = self
            .pending
            .iter()
            .filter(|(_, p)| p.next_retry.is_none_or(|t| t <= now))
            .map(|(i, _)| *i)
            .collect();
        let mut failed = Vec::new();
        for index in due {
            if shutdown.is_cancelled() {
                break;
            }
            let hook = &hooks[index];
            let files = self.pending[&index].files.to_changed();
            let started = std::time::Instant::now();
            let result = crate::hooks::run(hook, trust_dir, &files, shutdown)
                .await
                .map(|_| ());
            shared.touch();
            match result {
                Ok(()) => {
                    shared.metrics.hook_run(&hook.name, "ok");
                    tracing::info!(hook = %hook.name, duration_ms = started.elapsed().as_millis() as u64, "hook succeeded");
                    self.pending.remove(&index);
                }
                Err(err) => {
                    let p = self.pending.get_mut(&index).expect("queued");
                    p.failures = p.failures.saturating_add(1);
                    let delay = self.backoff.delay(p.failures, fastrand::f64());
                    p.next_retry = Some(super::later(delay));
                    let stopped = matches!(err, HookError::Stopped { .. });
                    let result = match err {
                        HookError::Timeout { .. } => "timeout",
                        HookError::Stopped { .. } => "stopped",
                        _ => "failed",
                    };
                    shared.metrics.hook_run(&hook.name, result);
                    if !stopped {
                        tracing::error!(hook = %hook.name, error = %crate::text::error_chain(&err), retry_in = ?delay, "hook failed; it will be retried");
                    }
                    failed.push(hook.name.clone());
                }
            }
        }
        failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HookAction;
    use std::time::Duration;

    fn hook(name: &str, instances: Option<&[&str]>, argv: &[&str]) -> Hook {
        Hook {
            name: name.into(),
            action: HookAction::Command(argv.iter().map(|s| s.to_string()).collect()),
            timeout: Duration::from_secs(10),
            instances: instances.map(|l| l.iter().map(|s| s.to_string()).collect()),
        }
    }

    fn changed(instances: &[&str]) -> StoreReport {
        StoreReport {
            changed_files: vec!["/t/a.crt".into()],
            changed_instances: instances.iter().map(|s| s.to_string()).collect(),
            ..StoreReport::default()
        }
    }

    fn backoff() -> Backoff {
        Backoff {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(60),
        }
    }

    #[test]
    fn only_hooks_whose_filter_matches_are_queued() {
        let hooks = vec![
            hook("all", None, &["/bin/true"]),
            hook("orders", Some(&["id-orders"]), &["/bin/true"]),
        ];
        let mut q = HookQueue::new(backoff());
        q.queue(&hooks, &StoreReport::default());
        assert!(q.owed(&hooks).is_empty(), "nothing changed: nothing owed");
        q.queue(&hooks, &changed(&["id-carts"]));
        assert_eq!(q.owed(&hooks).keys().collect::<Vec<_>>(), ["all"]);
        q.queue(&hooks, &changed(&["id-orders"]));
        assert_eq!(q.owed(&hooks).len(), 2);
    }

    // Paused time: the failed hook's retry comes when its backoff has passed, not before.
    #[tokio::test(start_paused = true)]
    async fn a_failed_hook_waits_for_its_backoff_and_new_changes_run_it_at_once() {
        let hooks = vec![hook("fails", None, &["/bin/false"])];
        let (shared, stop) = (Shared::default(), CancellationToken::new());
        let mut q = HookQueue::new(backoff());
        q.queue(&hooks, &changed(&["x"]));
        assert_eq!(
            q.run_due(&hooks, Path::new("/tmp"), &shared, &stop).await,
            ["fails"]
        );
        assert_eq!(q.failing(&hooks), ["fails"]);
        let retry = q.next_retry().expect("a retry time");
        assert!(retry > Instant::now());
        // Not due yet: nothing runs.
        assert!(
            q.run_due(&hooks, Path::new("/tmp"), &shared, &stop)
                .await
                .is_empty()
        );
        tokio::time::advance(retry - Instant::now()).await;
        assert_eq!(
            q.run_due(&hooks, Path::new("/tmp"), &shared, &stop).await,
            ["fails"]
        );
        // A new change clears the wait.
        q.queue(&hooks, &changed(&["x"]));
        assert_eq!(q.next_retry(), None);
        assert_eq!(q.owed(&hooks).len(), 1);
    }

    #[test]
    fn a_reload_keeps_owed_hooks_by_name() {
        let old = vec![
            hook("a", None, &["/bin/true"]),
            hook("b", None, &["/bin/true"]),
        ];
        let new = vec![hook("b", None, &["/bin/true"])];
        let mut q = HookQueue::new(backoff());
        q.queue(&old, &changed(&["x"]));
        q.reconfigure(&old, &new, backoff());
        assert_eq!(q.owed(&new).keys().collect::<Vec<_>>(), ["b"]);
    }
}
