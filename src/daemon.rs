//! The loop that wires the stages together: config -> plan -> list/fetch -> validate -> store
//! -> hooks.
//!
//! Owns: the per-instance health (failures, backoff, last error), the pass itself (bounded
//! concurrency over instances, all-or-nothing per instance), the hook queue (hooks that failed
//! are retried with backoff until they succeed), scheduling (interval + jitter, retries,
//! rotation-overlap deadlines, SIGUSR1) and shutdown. It is the only module that knows every
//! stage; the stages never call each other.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::cert::Cert;
use crate::cloud::api::{ApiClient, ApiError};
use crate::cloud::http::{ClientError, RedactedUrl};
use crate::config::{Config, HookAction, Instance};
use crate::fetch::{FetchError, Fetcher};
use crate::hooks::{ChangedFiles, HookError, HookSpec, run_command, send_signal};
use crate::names;
use crate::schedule::{Backoff, with_jitter};
use crate::server::{CategoryStatus, InstanceStatus, Shared, StatusSnapshot};
use crate::store::{Change, DesiredEntry, PassInput, Store, StoreError, StoreOptions, StoreReport};
use crate::systemd;
use crate::text::Untrusted;
use crate::validate::{Policy, ValidationError, validate};

/// Signals from outside the loop: stop, or start a pass now.
#[derive(Clone, Default)]
pub struct Controls {
    /// Cancelled on SIGTERM/SIGINT (or by a test).
    pub shutdown: CancellationToken,
    /// Notified on SIGUSR1.
    pub pass_now: Arc<Notify>,
    /// Notified on SIGHUP (or a change of the config file with `watch_config`).
    pub reload: Arc<Notify>,
}

/// Errors that stop the daemon before or between passes.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The HTTP client could not be built (bad `cloud.ca_file`, no roots).
    #[error("cloud: {0}")]
    Client(#[from] ClientError),
    /// The trust folder cannot be used.
    #[error("trust folder: {0}")]
    Store(#[from] StoreError),
    /// The HTTP server cannot listen.
    #[error(transparent)]
    Serve(#[from] crate::server::ServeError),
}

/// Why one instance failed in a pass. Names the instance, the category and the URL without
/// its query where they are known.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    /// Listing its certificates failed.
    #[error("instance {instance}: {source}")]
    Api {
        /// Display name.
        instance: String,
        /// The API failure.
        #[source]
        source: ApiError,
    },
    /// The API listed nothing this instance wants.
    #[error("instance {instance}: the API listed no certificate{}", wanted_text(.listed))]
    NoCertificates {
        /// Display name.
        instance: String,
        /// Categories the API did list.
        listed: Vec<String>,
    },
    /// A download failed.
    #[error("instance {instance}: category {category}: download {source}")]
    Fetch {
        /// Display name.
        instance: String,
        /// The category.
        category: String,
        /// The failure.
        #[source]
        source: FetchError,
    },
    /// A download was rejected by validation.
    #[error("instance {instance}: category {category}: {url}: rejected ({}): {source}", .source.rule())]
    Invalid {
        /// Display name.
        instance: String,
        /// The category.
        category: String,
        /// The URL without query.
        url: RedactedUrl,
        /// The rule that failed.
        #[source]
        source: ValidationError,
    },
    /// A category named by the API gives a file name that cannot be used.
    #[error(
        "instance {instance}: category {category:?} from the API gives file name {file_name:?}, which {problem}"
    )]
    BadCategory {
        /// Display name.
        instance: String,
        /// The category as the API spelled it.
        category: String,
        /// The rendered file name.
        file_name: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The instance took longer than its share of the pass.
    #[error("instance {instance}: not done after {}; retried later", humantime::format_duration(*.after))]
    Deadline {
        /// Display name.
        instance: String,
        /// The deadline.
        after: Duration,
    },
    /// Syncing it failed with an internal error (a bug): the other instances go on.
    #[error("instance {instance}: internal error: {detail}")]
    Internal {
        /// Display name.
        instance: String,
        /// What the panic said.
        detail: String,
    },
    /// Writing its file failed.
    #[error("instance {instance}: category {category}: {source}")]
    Store {
        /// Display name.
        instance: String,
        /// The category.
        category: String,
        /// The failure.
        #[source]
        source: StoreError,
    },
}

fn wanted_text(listed: &[String]) -> String {
    if listed.is_empty() {
        String::new()
    } else {
        format!(
            " in the configured categories (listed: {})",
            listed.join(", ")
        )
    }
}

impl InstanceError {
    /// A short stable reason (for metrics and the summary).
    pub fn reason(&self) -> &'static str {
        match self {
            InstanceError::Api { source, .. } => source.reason(),
            InstanceError::NoCertificates { .. } => "no_certificates",
            InstanceError::Fetch { source, .. } => source.reason(),
            InstanceError::Invalid { source, .. } => source.rule(),
            InstanceError::BadCategory { .. } => "bad_category",
            InstanceError::Deadline { .. } => "deadline",
            InstanceError::Internal { .. } => "internal",
            InstanceError::Store { .. } => "store",
        }
    }
}

/// Per-instance health kept across passes.
#[derive(Clone, Debug, Default)]
pub struct InstanceHealth {
    /// Consecutive failed passes.
    pub failures: u32,
    /// When a failed instance is retried.
    pub next_retry: Option<Instant>,
    /// The last failure, as text.
    pub last_error: Option<String>,
    /// The last time it synced.
    pub last_success: Option<SystemTime>,
}

/// A hook that must run: because files changed, or because it failed before.
#[derive(Clone, Debug, Default)]
struct PendingHook {
    files: OwedFiles,
    failures: u32,
    next_retry: Option<Instant>,
}

/// The files changed since a hook last ran, by what last happened to each.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct OwedFiles {
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    written: BTreeSet<PathBuf>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    removed: BTreeSet<PathBuf>,
}

impl OwedFiles {
    /// Adds a pass's changes: a path is in the list of the last thing that happened to it.
    fn add(&mut self, written: &[PathBuf], removed: &[PathBuf]) {
        for p in written {
            self.removed.remove(p);
            self.written.insert(p.clone());
        }
        for p in removed {
            self.written.remove(p);
            self.removed.insert(p.clone());
        }
    }

    fn to_changed(&self) -> ChangedFiles {
        ChangedFiles {
            written: self.written.iter().cloned().collect(),
            removed: self.removed.iter().cloned().collect(),
        }
    }
}

/// An owed hook as saved: `{written, removed}`, or (saved by an older certsync) one list of
/// changed files, taken as written.
#[derive(Debug, serde::Deserialize)]
#[serde(untagged)]
enum SavedOwed {
    Split(OwedFiles),
    Flat(BTreeSet<PathBuf>),
}

impl From<SavedOwed> for OwedFiles {
    fn from(saved: SavedOwed) -> OwedFiles {
        match saved {
            SavedOwed::Split(files) => files,
            SavedOwed::Flat(written) => OwedFiles {
                written,
                removed: BTreeSet::new(),
            },
        }
    }
}

/// What happened to one instance file in a pass, for `once` and the logs.
#[derive(Clone, Debug)]
pub struct SummaryLine {
    /// Instance display name.
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
    /// [`crate::store::UNPRODUCED_PASSES`] passes.
    Removed,
    /// Failed; its files kept as they were.
    Failed(String),
}

impl SummaryLine {
    /// The line `once` prints: `instance/category file status notAfter=...`, with every
    /// piece of outside text (categories, API messages, subjects in errors) escaped.
    /// `dry_run` words what would change as such.
    pub fn render(&self, dry_run: bool) -> String {
        let status = match (&self.status, dry_run) {
            (LineStatus::Unchanged, _) => "unchanged".to_string(),
            (LineStatus::Updated, false) => "updated".to_string(),
            (LineStatus::Updated, true) => "would update".to_string(),
            (LineStatus::Removed, false) => "removed".to_string(),
            (LineStatus::Removed, true) => "would remove".to_string(),
            (LineStatus::Failed(reason), _) => format!("failed: {}", Untrusted(reason)),
        };
        let not_after = match self.not_after {
            Some(t) => format!(" notAfter={}", fmt_time(Some(t))),
            None => String::new(),
        };
        let file = self.file.as_ref().map(|p| p.display().to_string());
        match (&self.category, file) {
            (Some(category), Some(file)) => format!(
                "{}/{} {} {status}{not_after}",
                self.instance,
                Untrusted(category),
                Untrusted(&file)
            ),
            (None, Some(file)) => format!("{} {status}{not_after}", Untrusted(&file)),
            // No file of it exists yet: say so rather than print placeholders.
            (_, None) => format!("{} (no file written yet) {status}", self.instance),
        }
    }
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

/// Everything built from one [`Config`]: the clients, the store and the state across passes.
pub struct Engine {
    config: Arc<Config>,
    api: ApiClient,
    fetcher: Fetcher,
    store: Option<Store>,
    health: BTreeMap<String, InstanceHealth>,
    hooks: BTreeMap<usize, PendingHook>,
    backoff: Backoff,
    passes: u64,
    shared: Arc<Shared>,
    /// Instances found by `[[discover]]` the last time it answered, by id.
    discovered: BTreeMap<String, Instance>,
    /// The instances of a pass: the configured ones, then the discovered ones present.
    active: Vec<Instance>,
    /// What the last pass could not do in the trust folder (SPEC 7): shown in `/readyz` and
    /// `/status` until a pass succeeds at it.
    store_errors: Vec<String>,
    /// Whether failed instances are retried (by `run`; `once` exits instead).
    retries: bool,
}

/// What the daemon keeps with the trust folder (in the store's manifest) across restarts.
#[derive(Debug, Default, serde::Serialize)]
struct DaemonState {
    /// Hooks owed a run, by name, with the files changed since they last ran.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    owed_hooks: BTreeMap<String, OwedFiles>,
    /// Instances found by discovery, by id.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    discovered: BTreeMap<String, DiscoveredState>,
}

/// [`DaemonState`] as read back (older shapes accepted).
#[derive(Debug, Default, serde::Deserialize)]
struct SavedState {
    #[serde(default)]
    owed_hooks: BTreeMap<String, SavedOwed>,
    #[serde(default)]
    discovered: BTreeMap<String, DiscoveredState>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct DiscoveredState {
    name: Option<String>,
}

impl DaemonState {
    /// `None` when there is nothing to keep, so a folder without discovery or owed hooks has
    /// no state in its manifest.
    fn to_json(&self) -> Option<serde_json::Value> {
        if self.owed_hooks.is_empty() && self.discovered.is_empty() {
            None
        } else {
            Some(serde_json::to_value(self).expect("the daemon state serialises"))
        }
    }
}

/// Whether `hook` runs for a change of `changed` instances (`any_change`: some file changed,
/// which is what a hook without an `instances` filter waits for).
fn hook_wants(hook: &crate::config::Hook, changed: &BTreeSet<String>, any_change: bool) -> bool {
    match &hook.instances {
        None => any_change,
        Some(ids) => ids.iter().any(|id| changed.contains(id)),
    }
}

/// The categories the API documents (SPEC 1): a failed instance may list any of them.
const KNOWN_CATEGORIES: [&str; 2] = ["international", "national"];

/// One instance's certificates, ready for the store.
pub type Synced = Vec<DesiredEntry>;

impl Engine {
    /// Builds the client and opens the trust folder. `read_only` (for `--dry-run`) opens the
    /// folder without creating, locking or cleaning it.
    pub fn new(config: Config, read_only: bool) -> Result<Engine, DaemonError> {
        let shared = Arc::new(Shared::default());
        let (api, fetcher) = clients(&config, &shared)?;
        let store = Store::open(store_options(&config), read_only)?;
        Ok((Engine {
            backoff: backoff(&config),
            config: Arc::new(config),
            api,
            fetcher,
            store: Some(store),
            health: BTreeMap::new(),
            hooks: BTreeMap::new(),
            passes: 0,
            shared,
            discovered: BTreeMap::new(),
            active: Vec::new(),
            store_errors: Vec::new(),
            retries: true,
        })
        .with_active())
    }

    /// Applies a new, already validated configuration. On error the old one stays in force.
    /// Health records of instances still configured, and hooks still configured that wait for
    /// a retry, carry over.
    pub fn reconfigure(&mut self, config: Config) -> Result<(), DaemonError> {
        let (api, fetcher) = clients(&config, &self.shared)?;
        // The store holds the folder's lock: release it before opening the (maybe same) folder.
        let old_options = store_options(&self.config);
        drop(self.store.take());
        match Store::open(store_options(&config), false) {
            Ok(store) => self.store = Some(store),
            Err(e) => {
                // Reopen the old folder; if even that fails, keep a read-only view so the
                // engine stays usable (passes then report the folder's error).
                self.store = Some(
                    Store::open(old_options.clone(), false)
                        .or_else(|_| Store::open(old_options, true))?,
                );
                return Err(e.into());
            }
        }
        let old_hooks = std::mem::take(&mut self.hooks);
        for (index, pending) in old_hooks {
            let name = &self.config.hooks[index].name;
            if let Some(new_index) = config.hooks.iter().position(|h| &h.name == name) {
                self.hooks.insert(new_index, pending);
            }
        }
        self.backoff = backoff(&config);
        self.api = api;
        self.fetcher = fetcher;
        if config.discover.is_empty() {
            self.discovered.clear();
        }
        self.config = Arc::new(config);
        self.refresh_active();
        let configured = self.configured_ids();
        self.health.retain(|id, _| configured.contains(id));
        Ok(())
    }

    fn with_active(mut self) -> Engine {
        self.restore_state();
        self.refresh_active();
        self
    }

    /// Recomputes the pass's instances: configured ones keep their explicit settings; a
    /// discovered one is named by its (sanitised) name, or by its id where names collide.
    fn refresh_active(&mut self) {
        let mut active = self.config.instances.clone();
        let explicit: BTreeSet<&str> = active.iter().map(|i| i.id.as_str()).collect();
        let present: Vec<&Instance> = self
            .discovered
            .values()
            .filter(|d| !explicit.contains(d.id.as_str()))
            .collect();
        let mut taken: BTreeMap<String, usize> = BTreeMap::new();
        for inst in &active {
            *taken.entry(inst.display_name().to_string()).or_default() += 2;
            *taken.entry(inst.id.clone()).or_default() += 2;
        }
        for d in &present {
            // What the instance will be shown as: its name, or its id when it has none.
            *taken.entry(d.display_name().to_string()).or_default() += 1;
        }
        for d in present {
            let mut inst = d.clone();
            if inst
                .name
                .as_ref()
                .is_some_and(|n| taken.get(n).copied().unwrap_or(0) > 1)
            {
                inst.name = None;
            }
            active.push(inst);
        }
        // An instance that left the plan is no longer retried on its own schedule.
        let ids: BTreeSet<&str> = active.iter().map(|i| i.id.as_str()).collect();
        for (id, health) in self.health.iter_mut() {
            if !ids.contains(id.as_str()) {
                health.next_retry = None;
            }
        }
        self.active = active;
    }

    /// The instance ids of the plan: configured, and discovered the last time discovery
    /// answered. Their files are theirs: kept while they fail, never taken by another.
    fn configured_ids(&self) -> BTreeSet<String> {
        self.config
            .instances
            .iter()
            .map(|i| i.id.clone())
            .chain(self.discovered.keys().cloned())
            .collect()
    }

    /// Runs every `[[discover]]` query. When one fails, the previous result stays (an outage
    /// of ListInstances must not look like every instance vanishing).
    async fn discover(&mut self) {
        if self.config.discover.is_empty() {
            return;
        }
        let mut found: BTreeMap<String, Instance> = BTreeMap::new();
        // A listing cut short proves nothing about the instances it did not reach.
        let mut complete = true;
        for (index, query) in self.config.discover.iter().enumerate() {
            let listed = match self
                .api
                .list_instances(query.datastore.as_deref(), query.name.as_deref())
                .await
            {
                Ok(listed) => listed,
                Err(e) => {
                    tracing::warn!(discover = index, error = %e, "discovery failed; keeping the instances found before");
                    return;
                }
            };
            if let Some(cut) = &listed.truncated {
                complete = false;
                tracing::warn!(
                    discover = index,
                    datastore = ?query.datastore,
                    name = ?query.name,
                    listed = listed.instances.len(),
                    reason = %cut,
                    "discovery listing incomplete: instances past this point are not synced, and those found before are kept"
                );
            }
            for item in listed.instances {
                if query.ssl_only && !item.ssl {
                    continue;
                }
                if !names::is_instance_id(&item.id) {
                    tracing::warn!(discover = index, id = ?item.id, "skipping an instance whose id is not [A-Za-z0-9-]{{1,64}}");
                    continue;
                }
                found.entry(item.id.clone()).or_insert_with(|| Instance {
                    name: names::sanitize_name(&item.name),
                    id: item.id,
                    categories: None,
                    pins: Vec::new(),
                });
            }
        }
        for (id, d) in &self.discovered {
            if !complete {
                found.entry(id.clone()).or_insert_with(|| d.clone());
            } else if !found.contains_key(id) {
                tracing::info!(
                    instance = d.display_name(),
                    id = %id,
                    "a discovered instance is no longer listed; its files are kept until nothing has produced them for {} passes",
                    crate::store::UNPRODUCED_PASSES
                );
            }
        }
        for (id, instance) in &found {
            if !self.discovered.contains_key(id) {
                tracing::info!(instance = %id, name = ?instance.name, "discovered an instance");
            }
        }
        self.discovered = found;
        self.refresh_active();
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
    pub fn health(&self) -> &BTreeMap<String, InstanceHealth> {
        &self.health
    }

    /// One pass over `only` (all instances when `None`): list, download, validate, store,
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
        if only.is_none() {
            // A dry run discovers too, but must not change what the daemon remembers.
            let saved = dry_run.then(|| self.discovered.clone());
            // Bounded: a ListInstances that never ends must not keep the configured
            // instances from their pass (SPEC 5.4). On the deadline the previous result stays.
            let deadline = instance_deadline(&self.config);
            tokio::select! {
                r = tokio::time::timeout(deadline, self.discover()) => {
                    if r.is_err() {
                        tracing::warn!(after = ?deadline, "discovery did not finish in time; keeping the instances found before");
                    }
                }
                _ = shutdown.cancelled() => {
                    tracing::info!("shutdown during discovery: no file was written");
                    return PassSummary::default();
                }
            }
            if let Some(saved) = saved {
                let active = self.active.clone();
                self.discovered = saved;
                self.active = active;
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
        let results = tokio::select! {
            r = self.sync_all(instances) => r,
            _ = shutdown.cancelled() => {
                tracing::info!("shutdown during the pass: no file was written");
                return PassSummary::default();
            }
        };

        let fetch_ms = fetch_started.elapsed().as_millis() as u64;
        let mut summary = PassSummary {
            dry_run,
            ..PassSummary::default()
        };
        let mut input = PassInput {
            configured: self.configured_ids(),
            ..PassInput::default()
        };
        let mut failures: Vec<(Instance, InstanceError)> = Vec::new();
        for (inst, result) in results {
            match result {
                Ok(entries) => {
                    input.synced.insert(inst.id.clone());
                    input.updates.extend(entries);
                }
                Err(err) => failures.push((inst, err)),
            }
        }
        input.protected = self.protected_names(&input.synced);
        // Only a full pass in which something synced is evidence of what the config no
        // longer produces (SPEC 5.3): a retry of a few instances, or a pass in which every
        // instance failed (a wrong key after an edit, an outage), must not count toward
        // removing anyone's files.
        input.counts = only.is_none() && (!input.synced.is_empty() || planned == 0);

        // The store does blocking file I/O (fsync): keep it off the async workers.
        let store_started = std::time::Instant::now();
        let mut store = self.store.take().expect("store present between passes");
        let now = SystemTime::now();
        // Moved into the blocking task and back (not cloned: it holds every certificate).
        let moved_input = std::mem::take(&mut input);
        // The hooks this pass will owe a run, saved with the manifest before any file
        // changes: a crash or stop before they ran does not lose them.
        let owed = self.owed_hooks();
        let hooks = self.config.hooks.clone();
        let discovered = self.discovered_state();
        let joined = tokio::task::spawn_blocking(move || {
            // A bug in the store must not take the daemon down with it: the pass fails, the
            // folder is reopened from disk below.
            let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                store.apply_with_state(&moved_input, now, dry_run, |preview| {
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
                    .to_json()
                })
            }));
            (store, applied, moved_input)
        })
        .await;
        let report = match joined {
            Ok((store, Ok(report), moved_input)) => {
                self.store = Some(store);
                input = moved_input;
                report
            }
            Ok((store, Err(panic), moved_input)) => {
                input = moved_input;
                let detail = panic_text(&*panic);
                tracing::error!(detail = %detail, "the trust folder's pass failed with an internal error; reopening the folder");
                drop(store);
                self.store = Some(self.reopen_store());
                store_panic_report(&input, &self.config.trust.dir, &detail)
            }
            Err(e) => {
                tracing::error!(error = %e, "the trust folder's task failed; reopening the folder");
                self.store = Some(self.reopen_store());
                StoreReport {
                    errors: vec![StoreError::Refused {
                        reason: format!("internal error: {e}"),
                    }],
                    ..StoreReport::default()
                }
            }
        };
        self.shared.touch();
        let store_ms = store_started.elapsed().as_millis() as u64;

        // Instances whose file could not be written count as failed too.
        let by_id: BTreeMap<&str, &Instance> =
            self.active.iter().map(|i| (i.id.as_str(), i)).collect();
        let mut store_failed: BTreeMap<String, String> = BTreeMap::new();
        let mut report = report;
        let mut store_errors: Vec<(&'static str, String)> = Vec::new();
        for entry in std::mem::take(&mut report.entries) {
            let name = by_id
                .get(entry.instance_id.as_str())
                .map(|i| i.display_name().to_string())
                .unwrap_or_else(|| entry.instance_id.clone());
            match entry.result {
                Ok(change) => {
                    let status = match change {
                        Change::Unchanged => LineStatus::Unchanged,
                        _ => LineStatus::Updated,
                    };
                    if status == LineStatus::Updated {
                        tracing::info!(
                            instance = name.as_str(),
                            category = %Untrusted(&entry.category),
                            path = %entry.path.display(),
                            fingerprint = entry.fingerprints.join(",").as_str(),
                            not_after = %fmt_time(entry.not_after),
                            dry_run,
                            "CA file updated"
                        );
                    }
                    summary.lines.push(SummaryLine {
                        instance: name,
                        category: Some(entry.category.clone()),
                        file: Some(entry.path.clone()),
                        status,
                        not_after: entry.not_after,
                    });
                }
                Err(err) => {
                    store_errors.push((err.reason(), err.to_string()));
                    let err = InstanceError::Store {
                        instance: name.clone(),
                        category: entry.category.clone(),
                        source: err,
                    };
                    store_failed
                        .entry(entry.instance_id.clone())
                        .or_insert_with(|| err.to_string());
                    tracing::warn!(instance = name.as_str(), error = %err, "instance failed; its files are kept as they were");
                    summary.lines.push(SummaryLine {
                        instance: name,
                        category: Some(entry.category.clone()),
                        file: Some(entry.path.clone()),
                        status: LineStatus::Failed(err.to_string()),
                        not_after: None,
                    });
                }
            }
        }
        for err in &report.errors {
            tracing::error!(error = %err, "trust folder");
            summary.store_errors.push(err.to_string());
            store_errors.push((err.reason(), err.to_string()));
        }
        for removed in &report.removed {
            if !dry_run {
                tracing::info!(path = %removed.path.display(), reason = %removed.reason, "removed a managed file");
            }
            summary.lines.push(SummaryLine {
                instance: "-".into(),
                category: None,
                file: Some(removed.path.clone()),
                status: LineStatus::Removed,
                not_after: None,
            });
        }
        for waiting in &report.unproduced {
            tracing::warn!(
                path = %waiting.path.display(),
                instance = %waiting.instance_id,
                category = %Untrusted(&waiting.category),
                passes = waiting.passes,
                "no configured or discovered instance produces this file any more; it is kept, and removed after {} passes without it (trust.prune)",
                crate::store::UNPRODUCED_PASSES
            );
        }

        // Failed instances: one line per file the store still has for them, else one line.
        let kept = self.store.as_ref().expect("store").current();
        for (inst, err) in &failures {
            tracing::warn!(instance = inst.display_name(), reason = err.reason(), error = %err, "instance failed; its files are kept as they were");
            let mut any = false;
            for state in kept.iter().filter(|s| s.instance_id == inst.id) {
                any = true;
                summary.lines.push(SummaryLine {
                    instance: inst.display_name().to_string(),
                    category: Some(state.category.clone()),
                    file: Some(state.path.clone()),
                    status: LineStatus::Failed(err.to_string()),
                    not_after: state.not_after,
                });
            }
            if !any {
                summary.lines.push(SummaryLine {
                    instance: inst.display_name().to_string(),
                    category: None,
                    file: None,
                    status: LineStatus::Failed(err.to_string()),
                    not_after: None,
                });
            }
        }
        summary.failed_instances = failures.len() + store_failed.len();
        summary.changed_files = report.changed_files.clone();

        if !dry_run {
            self.record_health(&input.synced, &store_failed, &failures, now);
            self.record_store_errors(store_errors);
            self.record_metrics(&summary, &failures, &report.changed_instances, now);
            self.warn_expiring(now);
            self.queue_hooks(&report);
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

    /// The file names that instances of the plan would produce but that did not sync in this
    /// pass (they failed, or were not part of it), with the instance's id: the store keeps
    /// those files and lets no other instance take their names (SPEC 5.3, 7). Since a
    /// failed instance's categories are unknown, every category it may list counts: its
    /// `categories` filter, else the categories the API documents and every category a file
    /// in the folder has.
    fn protected_names(&self, synced: &BTreeSet<String>) -> BTreeMap<String, String> {
        let store = self.store.as_ref().expect("store");
        let mut seen: BTreeSet<String> = KNOWN_CATEGORIES.iter().map(|c| c.to_string()).collect();
        seen.extend(store.current().into_iter().map(|s| s.category));
        let mut protected = BTreeMap::new();
        for inst in self.active.iter().filter(|i| !synced.contains(&i.id)) {
            let categories: Vec<&String> = match &inst.categories {
                Some(filter) => filter.iter().collect(),
                None => seen.iter().collect(),
            };
            for category in categories {
                let name = self.config.trust.file_name_for(inst, category);
                protected.entry(name).or_insert_with(|| inst.id.clone());
            }
        }
        protected
    }

    /// A fresh store on the configured folder after an internal failure; a read-only view if
    /// even that fails (passes then report the folder's error).
    fn reopen_store(&self) -> Store {
        let options = store_options(&self.config);
        Store::open(options.clone(), false)
            .or_else(|_| Store::open(options.clone(), true))
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "cannot reopen the trust folder");
                Store::unopened(options)
            })
    }

    /// Lists, downloads and validates every instance, `concurrency` at a time. One instance's
    /// failure, slowness or panic does not affect the others' results.
    async fn sync_all(
        &self,
        instances: Vec<Instance>,
    ) -> Vec<(Instance, Result<Synced, InstanceError>)> {
        // At most `concurrency` tasks exist at once: a task's future is allocated whole when it
        // is spawned, so spawning every instance up front would cost memory per instance.
        let limit = self.config.sync.concurrency.max(1);
        let total = instances.len();
        let mut pending = instances.into_iter().enumerate();
        let mut tasks = JoinSet::new();
        // What a task was for, so a task that panicked still fails its own instance.
        let mut running: HashMap<tokio::task::Id, (usize, Instance)> = HashMap::new();
        let mut out = Vec::with_capacity(total);
        loop {
            while tasks.len() < limit {
                let Some((index, inst)) = pending.next() else {
                    break;
                };
                let api = self.api.clone();
                let fetcher = self.fetcher.clone();
                let config = self.config.clone();
                let span =
                    tracing::info_span!("instance", instance = inst.display_name().to_string());
                let task_inst = inst.clone();
                let handle = tasks.spawn(
                    async move {
                        let inst = task_inst;
                        let deadline = instance_deadline(&config);
                        match tokio::time::timeout(
                            deadline,
                            sync_instance(&api, &fetcher, &config, &inst),
                        )
                        .await
                        {
                            Ok(result) => result,
                            Err(_) => Err(InstanceError::Deadline {
                                instance: inst.display_name().to_string(),
                                after: deadline,
                            }),
                        }
                    }
                    .instrument(span),
                );
                running.insert(handle.id(), (index, inst));
            }
            let Some(joined) = tasks.join_next_with_id().await else {
                break;
            };
            let (id, result) = match joined {
                Ok((id, result)) => (id, result),
                Err(e) => {
                    let id = e.id();
                    let name = running
                        .get(&id)
                        .map(|(_, i)| i.display_name().to_string())
                        .unwrap_or_default();
                    let detail = if e.is_panic() {
                        panic_text(&*e.into_panic())
                    } else {
                        e.to_string()
                    };
                    tracing::error!(instance = name.as_str(), detail = %detail, "internal error while syncing an instance; the others go on");
                    (
                        id,
                        Err(InstanceError::Internal {
                            instance: name,
                            detail,
                        }),
                    )
                }
            };
            if let Some((index, inst)) = running.remove(&id) {
                out.push((index, inst, result));
            }
            self.shared.touch();
        }
        // Config order, so logs, summaries and store input are stable.
        out.sort_by_key(|(index, _, _)| *index);
        out.into_iter().map(|(_, inst, r)| (inst, r)).collect()
    }

    fn record_health(
        &mut self,
        synced: &BTreeSet<String>,
        store_failed: &BTreeMap<String, String>,
        failures: &[(Instance, InstanceError)],
        now: SystemTime,
    ) {
        for id in synced.iter().filter(|id| !store_failed.contains_key(*id)) {
            let h = self.health.entry(id.clone()).or_default();
            *h = InstanceHealth {
                last_success: Some(now),
                ..InstanceHealth::default()
            };
        }
        let failed = failures
            .iter()
            .map(|(i, e)| (i.id.clone(), e.to_string()))
            .chain(store_failed.iter().map(|(id, e)| (id.clone(), e.clone())));
        let names: HashMap<&str, &str> = self
            .active
            .iter()
            .map(|i| (i.id.as_str(), i.display_name()))
            .collect();
        for (id, error) in failed {
            let name = names.get(id.as_str()).copied().unwrap_or(id.as_str());
            let h = self.health.entry(id.clone()).or_default();
            h.failures += 1;
            let delay = self.backoff.delay(h.failures, fastrand::f64());
            h.next_retry = Some(later(delay));
            h.last_error = Some(error);
            if self.retries {
                tracing::info!(instance = name, retry_in = ?delay, failures = h.failures, "instance will be retried");
            }
        }
        // Forget instances that left the plan.
        let configured = self.configured_ids();
        self.health.retain(|id, _| configured.contains(id));
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

    fn record_metrics(
        &self,
        summary: &PassSummary,
        failures: &[(Instance, InstanceError)],
        changed: &BTreeSet<String>,
        now: SystemTime,
    ) {
        let metrics = &self.shared.metrics;
        let names: BTreeMap<&str, &str> = self
            .active
            .iter()
            .map(|i| (i.id.as_str(), i.display_name()))
            .collect();
        for id in changed {
            if let Some(name) = names.get(id.as_str()) {
                metrics.cert_changed(name);
            }
        }
        for (inst, err) in failures {
            metrics.instance_error(inst.display_name(), err.reason());
        }
        for line in &summary.lines {
            if let LineStatus::Failed(_) = line.status {
                if failures
                    .iter()
                    .all(|(i, _)| i.display_name() != line.instance)
                {
                    metrics.instance_error(&line.instance, "store");
                }
            }
        }
        for (id, health) in &self.health {
            if let (Some(name), Some(at)) = (names.get(id.as_str()), health.last_success) {
                if at == now {
                    metrics.instance_synced(name, at);
                }
            }
        }
        let current = self.store.as_ref().expect("store").current();
        for state in &current {
            if let (Some(name), Some(not_after)) =
                (names.get(state.instance_id.as_str()), state.not_after)
            {
                metrics.not_after(name, &state.category, not_after.unix_timestamp());
            }
        }
        metrics.retain(&|instance, category| {
            current.iter().any(|s| {
                names.get(s.instance_id.as_str()) == Some(&instance)
                    && category.is_none_or(|c| c == s.category)
            }) || (category.is_none() && names.values().any(|n| *n == instance))
        });
    }

    /// Builds the `/status` document and readiness from the store and the health records.
    pub fn status_snapshot(&self) -> StatusSnapshot {
        let now = OffsetDateTime::now_utc();
        let horizon = expiry_horizon(now, self.config.sync.expiry_warning);
        let current = self.store.as_ref().expect("store").current();
        let mut snapshot = StatusSnapshot {
            last_pass: Some(fmt_time(Some(now))),
            ..StatusSnapshot::default()
        };
        for inst in &self.active {
            let health = self.health.get(&inst.id).cloned().unwrap_or_default();
            let categories: Vec<CategoryStatus> = current
                .iter()
                .filter(|s| s.instance_id == inst.id)
                .map(|s| CategoryStatus {
                    category: s.category.clone(),
                    file: s.path.display().to_string(),
                    fingerprints: s.fingerprints.clone(),
                    not_after: s.not_after.map(|t| fmt_time(Some(t))),
                    days_left: s.not_after.map(|t| (t - now).whole_days()),
                    expiring: s.not_after.is_some_and(|t| t <= horizon),
                })
                .collect();
            let valid = current
                .iter()
                .any(|s| s.instance_id == inst.id && s.not_after.is_some_and(|t| t > now));
            if !valid {
                snapshot.reasons.push(match &health.last_error {
                    Some(e) => {
                        format!("instance {}: no valid CA on disk: {e}", inst.display_name())
                    }
                    None => format!("instance {}: no valid CA on disk", inst.display_name()),
                });
            }
            snapshot.instances.push(InstanceStatus {
                id: inst.id.clone(),
                name: inst.display_name().to_string(),
                categories,
                last_success: health.last_success.map(|t| fmt_time(Some(t.into()))),
                last_error: health.last_error.clone(),
                failures: health.failures,
            });
        }
        if let Err(e) = self.store.as_ref().expect("store").check_folder() {
            let text = e.to_string();
            if !self.store_errors.contains(&text) {
                snapshot.store_errors.push(text);
            }
        }
        snapshot
            .store_errors
            .extend(self.store_errors.iter().cloned());
        for err in &snapshot.store_errors {
            snapshot.reasons.push(format!("trust folder: {err}"));
        }
        for (index, pending) in &self.hooks {
            if pending.failures > 0 {
                let name = self.config.hooks[*index].name.clone();
                snapshot.reasons.push(format!("hook {name} is failing"));
                snapshot.failing_hooks.push(name);
            }
        }
        snapshot.ready = snapshot.reasons.is_empty();
        snapshot
    }

    pub(crate) fn publish_status(&self) {
        self.shared.publish(self.status_snapshot());
    }

    fn warn_expiring(&self, now: SystemTime) {
        let now = crate::validate::saturating_datetime(now);
        let horizon = expiry_horizon(now, self.config.sync.expiry_warning);
        for state in self.store.as_ref().expect("store").current() {
            if let Some(not_after) = state.not_after {
                if not_after <= horizon {
                    tracing::warn!(
                        instance = %state.instance_id,
                        category = %state.category,
                        path = %state.path.display(),
                        not_after = %fmt_time(Some(not_after)),
                        days_left = (not_after - now).whole_days(),
                        "CA in use expires soon"
                    );
                }
            }
        }
    }

    fn queue_hooks(&mut self, report: &StoreReport) {
        if !report.changed() {
            return;
        }
        let (written, removed) = split_changes(report);
        for (index, hook) in self.config.hooks.iter().enumerate() {
            if hook_wants(hook, &report.changed_instances, true) {
                let pending = self.hooks.entry(index).or_default();
                pending.files.add(&written, &removed);
                // New changes run the hook now, even while it waits for a retry.
                pending.next_retry = None;
            }
        }
    }

    /// The hooks owed a run, by name, with their changed files.
    fn owed_hooks(&self) -> BTreeMap<String, OwedFiles> {
        self.hooks
            .iter()
            .map(|(index, p)| (self.config.hooks[*index].name.clone(), p.files.clone()))
            .collect()
    }

    fn discovered_state(&self) -> BTreeMap<String, DiscoveredState> {
        self.discovered
            .iter()
            .map(|(id, d)| {
                (
                    id.clone(),
                    DiscoveredState {
                        name: d.name.clone(),
                    },
                )
            })
            .collect()
    }

    /// Saves the owed hooks and discovered instances with the folder, when they changed.
    pub(crate) async fn save_state(&mut self) {
        let state = DaemonState {
            owed_hooks: self.owed_hooks(),
            discovered: self.discovered_state(),
        }
        .to_json();
        let Some(mut store) = self.store.take() else {
            return;
        };
        let (store, result) = tokio::task::spawn_blocking(move || {
            let result = store.save_state(state);
            (store, result)
        })
        .await
        .expect("store task does not panic");
        self.store = Some(store);
        if let Err(e) = result {
            tracing::error!(error = %e, "cannot save the daemon state with the trust folder");
        }
    }

    /// Takes back what an earlier run saved: hooks it still owed (they run after the first
    /// pass) and the instances it had discovered (so a restart does not prune them).
    fn restore_state(&mut self) {
        let Some(value) = self.store.as_ref().and_then(|s| s.state()).cloned() else {
            return;
        };
        let state: SavedState = match serde_json::from_value(value) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring unreadable daemon state in the manifest");
                return;
            }
        };
        for (name, files) in state.owed_hooks {
            match self.config.hooks.iter().position(|h| h.name == name) {
                Some(index) => {
                    tracing::info!(hook = %name, "a hook the last run owed will run after the first pass");
                    self.hooks.insert(
                        index,
                        PendingHook {
                            files: files.into(),
                            ..PendingHook::default()
                        },
                    );
                }
                None => {
                    tracing::info!(hook = %name, "a hook the last run owed is no longer configured")
                }
            }
        }
        if !self.config.discover.is_empty() {
            for (id, d) in state.discovered {
                self.discovered.insert(
                    id.clone(),
                    Instance {
                        id,
                        name: d.name,
                        categories: None,
                        pins: Vec::new(),
                    },
                );
            }
            self.refresh_active();
        }
    }

    /// Runs the queued hooks that are due, in config order, one at a time. Returns the names
    /// of those that failed. A hook queued by new changes has no retry time and is due at once;
    /// one that failed waits for its own backoff, whatever else happens.
    async fn run_due_hooks(&mut self, shutdown: &CancellationToken) -> Vec<String> {
        let now = Instant::now();
        let due: Vec<usize> = self
            .hooks
            .iter()
            .filter(|(_, p)| p.next_retry.is_none_or(|t| t <= now))
            .map(|(i, _)| *i)
            .collect();
        let mut failed = Vec::new();
        for index in due {
            if shutdown.is_cancelled() {
                break;
            }
            let hook = &self.config.hooks[index];
            let pending = self.hooks.get(&index).expect("queued").clone();
            let files = pending.files.to_changed();
            let started = std::time::Instant::now();
            let result = match &hook.action {
                HookAction::Command(command) => {
                    let spec = HookSpec {
                        name: hook.name.clone(),
                        command: command.clone(),
                        timeout: hook.timeout,
                    };
                    run_command(&spec, &self.config.trust.dir, &files, shutdown)
                        .instrument(tracing::info_span!("hook", hook = %hook.name))
                        .await
                        .map(|_| ())
                }
                HookAction::Signal { signal, pid_file } => {
                    send_signal(&hook.name, signal, pid_file).map(|_| ())
                }
            };
            self.shared.touch();
            match result {
                Ok(()) => {
                    self.shared.metrics.hook_run(&hook.name, "ok");
                    tracing::info!(hook = %hook.name, duration_ms = started.elapsed().as_millis() as u64, "hook succeeded");
                    self.hooks.remove(&index);
                }
                Err(err) => {
                    let p = self.hooks.get_mut(&index).expect("queued");
                    p.failures += 1;
                    let delay = self.backoff.delay(p.failures, fastrand::f64());
                    p.next_retry = Some(later(delay));
                    let stopped = matches!(err, HookError::Stopped { .. });
                    let result = match err {
                        HookError::Timeout { .. } => "timeout",
                        HookError::Stopped { .. } => "stopped",
                        _ => "failed",
                    };
                    self.shared.metrics.hook_run(&hook.name, result);
                    if !stopped {
                        tracing::error!(hook = %hook.name, error = %err, retry_in = ?delay, "hook failed; it will be retried");
                    }
                    failed.push(hook.name.clone());
                }
            }
        }
        failed
    }

    /// The next moment something is due: a failed instance's retry, a failed hook's retry, or
    /// a replaced CA leaving its file.
    fn next_due(&self) -> (Option<Instant>, Option<Instant>, Option<Instant>) {
        let retry = self.health.values().filter_map(|h| h.next_retry).min();
        let hook = self.hooks.values().filter_map(|p| p.next_retry).min();
        let deadline = self
            .store
            .as_ref()
            .and_then(|s| s.next_deadline())
            .map(|t| {
                let wait = t.duration_since(SystemTime::now()).unwrap_or_default();
                later(wait)
            });
        (retry, hook, deadline)
    }

    fn due_instances(&self, now: Instant) -> BTreeSet<String> {
        let active: BTreeSet<&str> = self.active.iter().map(|i| i.id.as_str()).collect();
        self.health
            .iter()
            .filter(|(id, h)| {
                active.contains(id.as_str()) && h.next_retry.is_some_and(|t| t <= now)
            })
            .map(|(id, _)| id.clone())
            .collect()
    }
}

/// Lists, downloads and validates one instance's certificates (every rule of SPEC 6, the
/// host allowlist included): what a pass hands to the store for it. `check --online` runs it
/// too, and writes nothing.
pub async fn sync_instance(
    api: &ApiClient,
    fetcher: &Fetcher,
    config: &Config,
    inst: &Instance,
) -> Result<Synced, InstanceError> {
    let name = inst.display_name().to_string();
    let listing = api
        .list_certs(&inst.id)
        .await
        .map_err(|source| InstanceError::Api {
            instance: name.clone(),
            source,
        })?;
    // Several entries of one category are merged (in order); categories keep API order.
    let mut by_category: Vec<(String, Vec<Cert>)> = Vec::new();
    let listed: Vec<String> = listing.certs.iter().map(|c| c.category.clone()).collect();
    for link in listing.certs.iter().filter(|l| inst.wants(&l.category)) {
        // A category only the API names is untrusted input that goes into a file name, the
        // hooks' one-path-per-line environment and the logs: hold it to the config's alphabet.
        let file_name = config.trust.file_name_for(inst, &link.category);
        let problem = if !names::is_name(&link.category) {
            Some("uses characters outside [A-Za-z0-9._-] (or is longer than 64)".to_string())
        } else {
            config.trust.file_name_problem(&file_name)
        };
        if let Some(problem) = problem {
            return Err(InstanceError::BadCategory {
                instance: name,
                category: link.category.clone(),
                file_name,
                problem,
            });
        }
        let download =
            fetcher
                .download(&link.url)
                .await
                .map_err(|source| InstanceError::Fetch {
                    instance: name.clone(),
                    category: link.category.clone(),
                    source,
                })?;
        let policy = Policy {
            now: SystemTime::now(),
            pins: &inst.pins,
        };
        let certs =
            validate(&download.bytes, &policy).map_err(|source| InstanceError::Invalid {
                instance: name.clone(),
                category: link.category.clone(),
                url: download.url.clone(),
                source,
            })?;
        for cert in certs.iter().filter(|c| c.sm2) {
            tracing::warn!(category = %link.category, subject = %cert.subject, "SM2 certificate accepted without checking its signature");
        }
        match by_category.iter_mut().find(|(c, _)| *c == link.category) {
            Some((_, existing)) => {
                for cert in certs {
                    if !existing.iter().any(|e| e.sha256 == cert.sha256) {
                        existing.push(cert);
                    }
                }
            }
            None => by_category.push((link.category.clone(), certs)),
        }
    }
    if by_category.is_empty() {
        return Err(InstanceError::NoCertificates {
            instance: name,
            listed,
        });
    }
    Ok(by_category
        .into_iter()
        .map(|(category, certs)| DesiredEntry {
            instance_id: inst.id.clone(),
            file_name: config.trust.file_name_for(inst, &category),
            category,
            certs,
        })
        .collect())
}

/// The files a pass wrote and those it removed (absolute paths).
fn split_changes(report: &StoreReport) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let removed: BTreeSet<&PathBuf> = report.removed.iter().map(|r| &r.path).collect();
    let written = report
        .changed_files
        .iter()
        .filter(|p| !removed.contains(p))
        .cloned()
        .collect();
    (written, removed.into_iter().cloned().collect())
}

/// The managed instance files of `store` that `config` would no longer produce (for
/// `check`): no configured instance, and no instance discovered before (as the folder's
/// saved state remembers), maps to the file's name for its category. With `trust.prune`
/// they are removed after [`crate::store::UNPRODUCED_PASSES`] passes without them.
pub fn no_longer_produced(config: &Config, store: &Store) -> Vec<crate::store::EntryState> {
    let mut plan: Vec<Instance> = config.instances.clone();
    if !config.discover.is_empty()
        && let Some(state) = store
            .state()
            .and_then(|v| serde_json::from_value::<SavedState>(v.clone()).ok())
    {
        let explicit: BTreeSet<String> = plan.iter().map(|i| i.id.clone()).collect();
        for (id, d) in state.discovered {
            if !explicit.contains(&id) {
                plan.push(Instance {
                    id,
                    name: d.name,
                    categories: None,
                    pins: Vec::new(),
                });
            }
        }
    }
    store
        .current()
        .into_iter()
        .filter(|entry| {
            let Some(name) = entry.path.file_name().and_then(|n| n.to_str()) else {
                return false;
            };
            !plan.iter().any(|inst| {
                inst.wants(&entry.category)
                    && config.trust.file_name_for(inst, &entry.category) == name
            })
        })
        .collect()
}

/// `now + d` on the scheduler's clock, saturating: a wait too long to represent (a replaced
/// CA valid until 9999 with a huge overlap, say) becomes one about a century away.
fn later(d: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(100 * 365 * 86400);
    let now = Instant::now();
    now.checked_add(d)
        .or_else(|| now.checked_add(FAR))
        .unwrap_or(now)
}

/// What a panic carried, as text (its `&str` or `String` payload).
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// The report of a store pass that panicked: every update failed, nothing is known to have
/// changed (the folder is reopened from disk).
fn store_panic_report(input: &PassInput, dir: &std::path::Path, detail: &str) -> StoreReport {
    let reason = format!("internal error in the trust folder's pass: {detail}");
    StoreReport {
        entries: input
            .updates
            .iter()
            .map(|u| crate::store::EntryOutcome {
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

/// The API client and the fetcher, over one new pooled HTTP client.
pub fn clients(config: &Config, shared: &Arc<Shared>) -> Result<(ApiClient, Fetcher), DaemonError> {
    let (http, api) = crate::cloud::connect(config)?;
    let counted = shared.clone();
    let api = api.with_observer(Arc::new(move |operation, status| {
        counted.metrics.api_request(operation, status)
    }));
    let fetcher = Fetcher::new(
        http,
        &config.sync.allowed_download_hosts,
        config.sync.max_download_bytes,
    );
    Ok((api, fetcher))
}

fn backoff(config: &Config) -> Backoff {
    Backoff {
        initial: config.sync.retry_initial,
        max: config.sync.retry_max,
    }
}

/// How long one instance may take in a pass: a listing and a download at `cloud.timeout`
/// each, plus one Retry-After wait. Past it the instance fails this pass (its files kept) so
/// that a slow instance never holds back the others' writes for long.
pub fn instance_deadline(config: &Config) -> Duration {
    2 * config.cloud.timeout + crate::schedule::MAX_RETRY_AFTER
}

/// The store's options from the config.
pub fn store_options(config: &Config) -> StoreOptions {
    StoreOptions {
        dir: config.trust.dir.clone(),
        mode: config.trust.mode,
        bundle: config.trust.bundle.clone(),
        capath: config.trust.capath,
        prune: config.trust.prune,
        rotation_overlap: config.sync.rotation_overlap,
        owner: config.trust.owner.as_ref().map(|a| a.id),
        group: config.trust.group.as_ref().map(|a| a.id),
        write_mode: match config.trust.write_mode {
            crate::config::WriteMode::Rename => crate::store::WriteMode::Rename,
            crate::config::WriteMode::InPlace => crate::store::WriteMode::InPlace,
        },
        layout: match config.trust.layout {
            crate::config::Layout::Flat => crate::store::Layout::Flat,
            crate::config::Layout::AtomicDir => crate::store::Layout::AtomicDir,
        },
        pkcs12: config.trust.pkcs12.clone(),
        pkcs12_password_file: config.trust.pkcs12_password_file.clone(),
    }
}

/// `now + warning`, saturating (config caps durations, but the arithmetic must not panic).
fn expiry_horizon(now: OffsetDateTime, warning: Duration) -> OffsetDateTime {
    time::Duration::try_from(warning)
        .ok()
        .and_then(|w| now.checked_add(w))
        .unwrap_or(time::PrimitiveDateTime::MAX.assume_utc())
}

fn fmt_time(t: Option<OffsetDateTime>) -> String {
    t.map(crate::cert::rfc3339).unwrap_or_else(|| "-".into())
}

/// `certsync once`: one pass, then hooks (unless `dry_run`).
pub async fn once(config: Config, dry_run: bool) -> Result<PassSummary, DaemonError> {
    let mut engine = Engine::new(config, dry_run)?;
    // `once` exits after its pass: nothing is retried, so the log must not promise it.
    engine.retries = false;
    let shutdown = CancellationToken::new();
    Ok(engine.pass(None, dry_run, &shutdown).await)
}

/// `certsync run`: passes on schedule until `controls.shutdown` is cancelled.
///
/// The first pass starts at once; later full passes every `interval` plus jitter, or when
/// `pass_now` is notified (SIGUSR1), or when a replaced CA's overlap ends. A failed instance
/// is retried on its own backoff; a failed hook on its own. `reload` (SIGHUP) re-reads the
/// config file: an invalid one is refused and the old one stays. Under systemd it sends
/// READY/STATUS/RELOADING/STOPPING and keeps the watchdog fed while the loop runs.
pub async fn run(config: Config, controls: Controls) -> Result<(), DaemonError> {
    let mut engine = Engine::new(config, false)?;
    let shared = engine.shared();
    let shutdown = controls.shutdown.clone();
    shared.touch();
    shared.alive.store(true, Ordering::Relaxed);
    let _alive = AliveGuard(shared.clone());
    if let Some(listen) = engine.config.server.listen {
        crate::server::start(listen, shared.clone(), shutdown.child_token()).await?;
    }
    if let Some(every) = systemd::watchdog_interval() {
        let shared = shared.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            // Fed only while the scheduler loop shows progress within the watchdog period:
            // a dead or stuck loop lets systemd restart us.
            loop {
                if shared.healthy(2 * every) {
                    systemd::watchdog();
                } else if !shared.alive.load(Ordering::Relaxed) {
                    break;
                } else {
                    tracing::error!(stuck_for = ?shared.heartbeat_age(), "the scheduler makes no progress; not feeding the watchdog");
                }
                if !sleep_or_cancel(every, &stop).await {
                    break;
                }
            }
        });
    }
    let mut heartbeat = tokio::time::interval(HEARTBEAT_EVERY);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Dropped at the end of `run`, which stops the watch.
    let _watcher = if engine.config.sync.watch_config {
        watch_config_file(&engine.config.source, controls.reload.clone())
    } else {
        None
    };
    let mut next_full = Instant::now();
    let mut first = true;
    loop {
        let (retry, hook, deadline) = engine.next_due();
        let wake = [Some(next_full), retry, hook, deadline]
            .into_iter()
            .flatten()
            .min()
            .expect("next_full is always set");
        shared.touch();
        let full = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            // While it waits, the loop still shows it is alive.
            _ = heartbeat.tick() => continue,
            _ = controls.pass_now.notified() => {
                tracing::info!("SIGUSR1: starting a pass now");
                true
            }
            _ = controls.reload.notified() => {
                systemd::reloading();
                let applied = reload(&mut engine);
                systemd::ready(&status_line(&engine));
                applied
            }
            _ = tokio::time::sleep_until(wake) => {
                let now = Instant::now();
                now >= next_full || deadline.is_some_and(|d| d <= now)
            }
        };
        let passed = if full {
            engine.pass(None, false, &shutdown).await;
            let sync = &engine.config.sync;
            next_full = later(with_jitter(sync.interval, sync.jitter, fastrand::f64()));
            true
        } else {
            let due = engine.due_instances(Instant::now());
            if !due.is_empty() {
                engine.pass(Some(&due), false, &shutdown).await;
                true
            } else {
                engine.run_due_hooks(&shutdown).await;
                engine.save_state().await;
                engine.publish_status();
                false
            }
        };
        if passed {
            let line = status_line(&engine);
            if first {
                systemd::ready(&line);
                first = false;
            } else {
                systemd::status(&line);
            }
        }
        if shutdown.is_cancelled() {
            break;
        }
    }
    systemd::stopping();
    tracing::info!("stopped");
    Ok(())
}

/// How long the config file must be quiet after a change before it is reloaded: editors write
/// in several steps (temp file, rename, chmod).
pub const CONFIG_DEBOUNCE: Duration = Duration::from_millis(300);

/// Watches the config file's folder (not the file: an editor's rename-save replaces the
/// inode) and notifies `reload` once the file has been quiet for [`CONFIG_DEBOUNCE`].
/// A watch that cannot be set up is logged; SIGHUP still works.
fn watch_config_file(
    path: &std::path::Path,
    reload: Arc<Notify>,
) -> Option<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    let folder = path.parent()?.to_path_buf();
    let name = path.file_name()?.to_owned();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let handler = move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            let ours = event
                .paths
                .iter()
                .any(|p| p.file_name() == Some(name.as_os_str()));
            if ours && !matches!(event.kind, notify::EventKind::Access(_)) {
                let _ = tx.send(());
            }
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the configuration file; SIGHUP still reloads");
            return None;
        }
    };
    if let Err(e) = watcher.watch(&folder, RecursiveMode::NonRecursive) {
        tracing::warn!(folder = %folder.display(), error = %e, "cannot watch the configuration folder; SIGHUP still reloads");
        return None;
    }
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Debounce: wait until no event came for CONFIG_DEBOUNCE.
            loop {
                match tokio::time::timeout(CONFIG_DEBOUNCE, rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            tracing::info!("the configuration file changed");
            reload.notify_one();
        }
    });
    Some(watcher)
}

/// How often the waiting scheduler shows it is alive.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);

/// Clears `alive` when the loop ends, however it ends.
struct AliveGuard(Arc<Shared>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.alive.store(false, Ordering::Relaxed);
    }
}

/// Re-reads the config file; returns true when a new config was applied.
fn reload(engine: &mut Engine) -> bool {
    let source = engine.config.source.clone();
    tracing::info!(config = %source.display(), "reloading the configuration");
    let metrics = &engine.shared.metrics;
    match crate::config::load(&source) {
        Err(e) => {
            metrics.config_reload("invalid");
            // One line: every problem, `key: message`, joined.
            let problems: Vec<String> = e.problems.iter().map(|p| p.to_string()).collect();
            tracing::error!(
                config = %source.display(),
                problems = %problems.join("; "),
                "the new configuration is invalid; the old one stays in force"
            );
            false
        }
        Ok(config) => {
            if config.server.listen != engine.config.server.listen {
                tracing::warn!("server.listen changed: it takes effect when certsync restarts");
            }
            if config.sync.watch_config != engine.config.sync.watch_config {
                tracing::warn!("sync.watch_config changed: it takes effect when certsync restarts");
            }
            match engine.reconfigure(config) {
                Ok(()) => {
                    engine.shared.metrics.config_reload("ok");
                    tracing::info!("configuration reloaded");
                    true
                }
                Err(e) => {
                    engine.shared.metrics.config_reload("failed");
                    tracing::error!(error = %e, "cannot apply the new configuration; the old one stays in force");
                    false
                }
            }
        }
    }
}

/// One line for systemd's STATUS: instances synced, failing, and files on disk.
fn status_line(engine: &Engine) -> String {
    let total = engine.active.len();
    let failing = engine
        .active
        .iter()
        .filter(|i| engine.health.get(&i.id).is_some_and(|h| h.failures > 0))
        .count();
    let hooks = engine.hooks.values().filter(|p| p.failures > 0).count();
    let mut line = format!("{} of {total} instances synced", total - failing);
    if failing > 0 {
        line.push_str(&format!(", {failing} failing"));
    }
    if hooks > 0 {
        line.push_str(&format!(", {hooks} hook(s) failing"));
    }
    line
}

/// Waits for `d`; false when `cancel` fired first.
pub async fn sleep_or_cancel(d: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = cancel.cancelled() => false,
    }
}
