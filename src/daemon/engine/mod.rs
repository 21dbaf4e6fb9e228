//! One pass, wired: plan -> source -> sinks -> hooks, and the sub-states it updates.
//!
//! Owns: the [`Engine`] (the config in use, the source, the sinks, health, the hook queue,
//! what discovery found) and the order of one pass. Every decision is a stage's: the plan
//! says which instances and which names, the source fetches and validates, the trust sink
//! writes, the hook queue runs hooks. It must not parse, fetch or write anything itself.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::SystemTime;

use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::{Config, Instance};
use crate::endpoint::Endpoint;
use crate::plan::{self, Discovered};
use crate::schedule::Backoff;
use crate::sink::{PassInput, StoreOptions};
use crate::sink::{Sinks, TrustSink};
use crate::source::{InstanceError, Outcomes, Source};
use crate::status::Shared;

mod discovery;
mod endpoints;
mod fleet;
mod report;

use super::DaemonError;
use super::health::Health;
use super::hook_queue::{HookQueue, hook_wants};
use super::state::DaemonState;
use super::status as status_doc;
use super::summary::PassSummary;
use super::verifier::{Targets, Verifications};
use tokio::sync::watch;

/// Everything built from one [`Config`]: the source, the sinks and the state across passes.
pub struct Engine {
    pub(super) config: Arc<Config>,
    source: Source,
    sinks: Sinks<DaemonState>,
    pub(super) health: Health,
    pub(super) hooks: HookQueue,
    discovered: Discovered,
    /// The instances of a pass: the configured ones, then the discovered ones.
    pub(super) active: Vec<Instance>,
    /// What the last pass could not do in the trust folder (SPEC 7): shown in `/readyz` and
    /// `/status` until a pass succeeds at it.
    store_errors: Vec<String>,
    shared: Arc<Shared>,
    passes: u64,
    /// Whether failed instances are retried (by `run`; `once` exits instead).
    pub(super) retries: bool,
    /// The node addresses ListInstances reported, by instance id (SPEC 13): the endpoints of
    /// instances without `endpoints` of their own.
    nodes: BTreeMap<String, Vec<Endpoint>>,
    /// The instances' endpoints, announced to the verifier after each pass.
    targets: watch::Sender<Arc<Targets>>,
    /// A verifier listens (`run`; `once` probes nothing, so it looks up no node addresses).
    pub(super) probing: bool,
    /// What the verifier last verified: the evidence that keeps a replaced CA past
    /// `rotation_overlap` (SPEC 13).
    pub(super) verified: watch::Receiver<Arc<Verifications>>,
    /// A publisher's election and publication (SPEC 14), with `[publish]`.
    publisher: fleet::PublisherHandle,
    /// A publisher's view of the set it publishes: while another publisher leads, this
    /// one's folder follows that set as a subscriber's does.
    follower: Option<Source>,
    /// Whether a pass publishes what the HTTP server shows, the `/status` snapshot and the
    /// per-instance metrics (`run`; `once` serves neither, and at 10,000 instances each is
    /// megabytes).
    pub(super) publishes: bool,
}

/// The store's options from the config.
pub fn store_options(config: &Config) -> StoreOptions {
    config.trust.store.clone()
}

fn backoff(config: &Config) -> Backoff {
    Backoff {
        initial: config.sync.retry_initial,
        max: config.sync.retry_max,
    }
}

impl Engine {
    /// Builds the source and opens the trust folder. `read_only` (for `--dry-run`) opens the
    /// folder without creating, locking or cleaning it. What an earlier run saved with the
    /// folder (owed hooks, discovered instances) is taken back.
    pub fn new(config: Config, read_only: bool) -> Result<Engine, DaemonError> {
        let config = Arc::new(config);
        let shared = Arc::new(Shared::default());
        let source = Source::from_config(&config, &shared)?;
        let trust = TrustSink::open(store_options(&config), read_only)?;
        let publisher = fleet::start_publisher(&config, &shared)?;
        let follower = fleet::follower(&config, &shared);
        let mut engine = Engine {
            publisher,
            follower,
            health: Health::new(backoff(&config)),
            hooks: HookQueue::new(backoff(&config)),
            config,
            source,
            sinks: Sinks { trust },
            discovered: Discovered::new(),
            active: Vec::new(),
            store_errors: Vec::new(),
            shared,
            passes: 0,
            retries: true,
            nodes: BTreeMap::new(),
            targets: watch::Sender::new(Arc::new(Targets::default())),
            probing: false,
            // Nothing verified until a verifier is given its sender (`run`).
            verified: watch::channel(Arc::default()).1,
            publishes: true,
        };
        engine.restore_state();
        engine.refresh_active();
        engine.publish_interval();
        Ok(engine)
    }

    /// Applies a new, already validated configuration. On error the old one stays in force.
    /// Health records of instances still configured, and hooks still configured that wait for
    /// a retry, carry over.
    pub fn reconfigure(&mut self, config: Config) -> Result<(), DaemonError> {
        let config = Arc::new(config);
        let source = Source::from_config(&config, &self.shared)?;
        self.sinks.trust.reconfigure(store_options(&config))?;
        self.hooks
            .reconfigure(&self.config.hooks, &config.hooks, backoff(&config));
        self.health.set_backoff(backoff(&config));
        self.reconfigure_publisher(&config)?;
        source.inherit(&self.source);
        let follower = fleet::follower(&config, &self.shared);
        if let (Some(new), Some(old)) = (&follower, &self.follower) {
            new.inherit(old);
        }
        self.follower = follower;
        self.source = source;
        // (A subscriber's instances are discovered from its set.)
        if config.discover.is_empty() && !self.source.lists_instances() {
            self.discovered.clear();
        }
        self.config = config;
        self.refresh_active();
        self.publish_interval();
        let ids = self.plan_ids();
        self.health.keep_only(&ids);
        Ok(())
    }

    /// The longest wait between full passes, for the alert on missing passes (SPEC 12).
    fn publish_interval(&self) {
        let sync = &self.config.sync;
        self.shared
            .metrics
            .pass_interval(sync.interval.saturating_add(sync.jitter));
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The metrics and the status snapshot, shared with the HTTP server.
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Health of each instance, by id.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// The trust folder.
    pub fn trust(&self) -> &TrustSink<DaemonState> {
        &self.sinks.trust
    }

    /// What the verifier listens to: the instances' endpoints, announced after each pass.
    pub fn probe_targets(&self) -> watch::Receiver<Arc<Targets>> {
        self.targets.subscribe()
    }

    /// Whether endpoints are probed (a verifier listens and `verify.enabled` is not false):
    /// then instances without `endpoints` take ListInstances' node addresses.
    fn verifying(&self) -> bool {
        self.probing && self.config.verify.enabled != Some(false)
    }

    fn refresh_active(&mut self) {
        self.active = plan::instances(&self.config.instances, &self.discovered);
        let ids: BTreeSet<&str> = self.active.iter().map(|i| i.id.as_str()).collect();
        self.health.stop_retries_outside(&ids);
    }

    fn plan_ids(&self) -> BTreeSet<String> {
        plan::ids(&self.config.instances, &self.discovered)
    }

    /// One pass over `only` (all instances when `None`): discover, fetch and validate, write,
    /// then hooks (unless `dry_run`). Failed instances keep their files.
    pub async fn pass(
        &mut self,
        only: Option<&BTreeSet<String>>,
        dry_run: bool,
        shutdown: &CancellationToken,
    ) -> PassSummary {
        self.passes += 1;
        let span = tracing::info_span!("pass", n = self.passes, dry_run);
        self.pass_inner(only, dry_run, shutdown)
            .instrument(span)
            .await
    }

    async fn pass_inner(
        &mut self,
        only: Option<&BTreeSet<String>>,
        dry_run: bool,
        shutdown: &CancellationToken,
    ) -> PassSummary {
        let started = std::time::Instant::now();
        // A publisher that does not lead polls nothing: its folder follows the set the
        // leader publishes (SPEC 14), once that has been read.
        let standby = !self.may_poll();
        if standby && !self.follower_ready() {
            tracing::debug!(
                "a standby publisher: another one leads, and the published set is not read yet"
            );
            return PassSummary::default();
        }
        tracing::info!(
            instances = only.map_or(self.active.len(), BTreeSet::len),
            full = only.is_none(),
            standby,
            "pass started"
        );
        // (A standby's replaced CAs are kept as the published set says.)
        let held = if standby {
            BTreeSet::new()
        } else {
            self.held_without_verifier()
        };
        let mut discovery_failed = false;
        if only.is_none() {
            tokio::select! {
                listed = self.discover(dry_run, standby) => {
                    discovery_failed = listed.is_none();
                    let listed = listed.unwrap_or_default();
                    // (A dry run looks the nodes up only to probe them as the real pass
                    // would.)
                    if !standby && ((self.verifying() && !dry_run) || !held.is_empty()) {
                        tokio::select! {
                            _ = self.look_up_nodes(&listed) => {}
                            _ = shutdown.cancelled() => return PassSummary::default(),
                        }
                    }
                }
                _ = shutdown.cancelled() => {
                    tracing::info!("shutdown during discovery: no file was written");
                    return PassSummary::default();
                }
            }
        }
        if !held.is_empty() {
            tokio::select! {
                _ = self.probe_held(&held) => {}
                _ = shutdown.cancelled() => return PassSummary::default(),
            }
        }
        let instances: Vec<Instance> = self
            .active
            .iter()
            .filter(|i| only.is_none_or(|set| set.contains(&i.id)))
            .cloned()
            .collect();
        let planned = instances.len();
        let fetch_started = std::time::Instant::now();
        let outcomes = tokio::select! {
            r = self.pass_source(standby).sync(instances, &self.shared) => r,
            _ = shutdown.cancelled() => {
                tracing::info!("shutdown during the pass: no file was written");
                return PassSummary::default();
            }
        };
        let fetch_ms = fetch_started.elapsed().as_millis() as u64;

        let full = only.is_none() && !discovery_failed;
        let (mut input, failures) = self.pass_input(outcomes, full, planned);
        // A leader publishes the validated set before its own folder takes the
        // certificates (SPEC 14).
        if !dry_run && !standby {
            self.publish(&mut input, &failures).await;
        }
        let store_started = std::time::Instant::now();
        let now = SystemTime::now();
        // The hooks this pass will owe a run, saved with the manifest before any file
        // changes: a crash or stop before they ran does not lose them.
        let owed = self.hooks.owed(&self.config.hooks);
        let hooks = self.config.hooks.clone();
        let discovered = self.discovered.clone();
        let (report, input) = self
            .sinks
            .trust
            .apply(input, now, dry_run, move |preview| {
                let mut owed = owed;
                for hook in &hooks {
                    if hook_wants(
                        hook,
                        &preview.changed_instances,
                        !preview.changed_files.is_empty(),
                    ) {
                        owed.entry(hook.name.clone())
                            .or_default()
                            .add(&preview.written_files, &preview.removed_files);
                    }
                }
                DaemonState {
                    owed_hooks: owed,
                    discovered,
                }
            })
            .await;
        self.shared.touch();
        let store_ms = store_started.elapsed().as_millis() as u64;

        let mut summary = PassSummary {
            dry_run,
            ..PassSummary::default()
        };
        let mut report = report;
        let (store_failed, store_errors) = self.summarise(&mut report, &mut summary);
        self.summarise_failures(&failures, &mut summary);
        summary.failed_instances = failures.len() + store_failed.len();
        summary.changed_files = report.changed_files.clone();

        if !dry_run {
            self.record_health(&input.synced, &store_failed, &failures, now);
            self.record_store_errors(store_errors);
            self.record_metrics(&failures, &store_failed, &report.changed_instances, now);
            self.warn_expiring(now);
            self.hooks.queue(&self.config.hooks, &report);
            summary.failed_hooks = self.run_due_hooks(shutdown).await;
            self.save_state().await;
            let result = if summary.ok() {
                "ok"
            } else if summary.failed_instances < input.synced.len() + failures.len() {
                "partial"
            } else {
                "failed"
            };
            self.shared.metrics.pass(result, started.elapsed());
            self.publish_status();
            if self.verifying() {
                self.announce_targets();
            }
        }
        tracing::info!(
            instances = input.synced.len() + failures.len(),
            failed = summary.failed_instances,
            changed_files = report.changed_files.len(),
            fetch_ms,
            store_ms,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "pass finished"
        );
        summary
    }

    /// The store's input from the source's outcomes, with the names protected for the
    /// instances that did not sync and whether this pass counts toward removals; and the
    /// failures.
    fn pass_input(
        &self,
        outcomes: Outcomes,
        full: bool,
        planned: usize,
    ) -> (PassInput, Vec<(Instance, InstanceError)>) {
        let mut input = PassInput {
            configured: self.plan_ids(),
            ..PassInput::default()
        };
        let mut failures = Vec::new();
        for (inst, result) in outcomes {
            match result {
                Ok(entries) => {
                    input.synced.insert(inst.id.clone());
                    input.updates.extend(entries);
                }
                Err(err) => failures.push((inst, err)),
            }
        }
        let current = self.sinks.trust.current();
        input.protected = plan::protected_names(
            &self.config.trust,
            &self.active,
            &input.synced,
            current.iter().map(|s| s.category.as_str()),
        );
        input.counts = plan::counts(full, input.synced.len(), planned);
        input.evidence = self.evidence();
        (input, failures)
    }

    fn record_health(
        &mut self,
        synced: &BTreeSet<String>,
        store_failed: &BTreeMap<String, String>,
        failures: &[(Instance, InstanceError)],
        now: SystemTime,
    ) {
        for id in synced.iter().filter(|id| !store_failed.contains_key(*id)) {
            self.health.succeeded(id, now);
        }
        let names: HashMap<&str, &str> = self
            .active
            .iter()
            .map(|i| (i.id.as_str(), i.display_name()))
            .collect();
        let failed = failures
            .iter()
            .map(|(i, e)| (i.id.clone(), e.to_string()))
            .chain(store_failed.iter().map(|(id, e)| (id.clone(), e.clone())));
        for (id, error) in failed {
            let name = names.get(id.as_str()).copied().unwrap_or(id.as_str());
            let (failures, delay) = self.health.failed(&id, error, fastrand::f64());
            if self.retries {
                tracing::info!(instance = name, retry_in = ?delay, failures, "instance will be retried");
            }
        }
        // Forget instances that left the plan.
        let ids = self.plan_ids();
        self.health.keep_only(&ids);
    }

    /// The trust folder's failures of this pass: counted by reason, and kept for `/readyz`
    /// and `/status` until a pass has none.
    fn record_store_errors(&mut self, errors: Vec<(&'static str, String)>) {
        for (reason, _) in &errors {
            self.shared.metrics.store_error(reason);
        }
        let mut texts: Vec<String> = errors.into_iter().map(|(_, text)| text).collect();
        texts.dedup();
        self.store_errors = texts;
    }

    /// Builds the `/status` document and readiness from the sub-states.
    pub fn status_snapshot(&self) -> crate::status::StatusSnapshot {
        let current = self.sinks.trust.current();
        let mut store_errors = Vec::new();
        if let Err(e) = self.sinks.trust.check_folder() {
            store_errors.push(e.to_string());
        }
        for e in &self.store_errors {
            if !store_errors.contains(e) {
                store_errors.push(e.clone());
            }
        }
        status_doc::snapshot(
            status_doc::Inputs {
                active: &self.active,
                health: &self.health,
                current: &current,
                store_errors,
                source_problem: self.pass_source(!self.may_poll()).problem(),
                failing_hooks: self.hooks.failing(&self.config.hooks),
                expiry_warning: self.config.sync.expiry_warning,
                fleet: self.fleet_status(),
            },
            OffsetDateTime::now_utc(),
        )
    }

    /// Publishes the `/status` snapshot.
    pub(super) fn publish_status(&self) {
        if !self.publishes {
            return;
        }
        self.shared.publish(self.status_snapshot());
    }

    /// Runs the hooks that are due; the names of those that failed.
    pub(super) async fn run_due_hooks(&mut self, shutdown: &CancellationToken) -> Vec<String> {
        self.hooks
            .run_due(
                &self.config.hooks,
                &self.config.trust.dir,
                &self.shared,
                shutdown,
            )
            .await
    }

    /// Saves the owed hooks and discovered instances with the folder, when they changed.
    pub(super) async fn save_state(&mut self) {
        let state = DaemonState {
            owed_hooks: self.hooks.owed(&self.config.hooks),
            discovered: self.discovered.clone(),
        };
        if let Err(e) = self.sinks.trust.save_state(state).await {
            tracing::error!(error = %e, "cannot save the daemon state with the trust folder");
        }
    }

    /// Takes back what an earlier run saved: hooks it still owed (they run after the first
    /// pass) and the instances it had discovered (so a restart does not forget them).
    /// (An unreadable state was logged and replaced by the empty one when the folder was
    /// read.)
    fn restore_state(&mut self) {
        let state = self.sinks.trust.saved_state().clone();
        self.hooks.restore(&self.config.hooks, state.owed_hooks);
        // A subscriber's instances are those of its set: restarted while etcd is down, it
        // still knows them, so its passes fail them (keeping their files) rather than find
        // nothing to produce.
        if !self.config.discover.is_empty() || self.source.lists_instances() {
            self.discovered = state.discovered;
        }
    }

    /// The next moments something is due: a failed instance's retry, a failed hook's retry,
    /// a replaced CA leaving its file.
    pub(super) fn next_due(
        &self,
    ) -> (
        Option<tokio::time::Instant>,
        Option<tokio::time::Instant>,
        Option<tokio::time::Instant>,
    ) {
        let deadline = self.sinks.trust.next_deadline().map(|t| {
            let wait = t.duration_since(SystemTime::now()).unwrap_or_default();
            super::later(wait)
        });
        (self.health.next_retry(), self.hooks.next_retry(), deadline)
    }

    /// The instances whose retry has come.
    pub(super) fn due_instances(&self, now: tokio::time::Instant) -> BTreeSet<String> {
        let active: BTreeSet<&str> = self.active.iter().map(|i| i.id.as_str()).collect();
        self.health.due(&active, now)
    }
}
