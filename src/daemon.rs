//! The loop that wires the stages together: config -> plan -> list/fetch -> validate -> store
//! -> hooks.
//!
//! Owns: the per-instance health (failures, backoff, last error), the pass itself (bounded
//! concurrency over instances, all-or-nothing per instance), the hook queue (hooks that failed
//! are retried with backoff until they succeed), scheduling (interval + jitter, retries,
//! rotation-overlap deadlines, SIGUSR1) and shutdown. It is the only module that knows every
//! stage; the stages never call each other.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::cert::Cert;
use crate::cloud::api::{ApiClient, ApiError};
use crate::cloud::auth::{Credentials, TokenFile};
use crate::cloud::http::{ClientError, RedactedUrl, build_client};
use crate::config::{Auth, Config, Instance};
use crate::fetch::{FetchError, Fetcher};
use crate::hooks::{HookError, HookSpec, run_command};
use crate::schedule::{Backoff, with_jitter};
use crate::store::{Change, DesiredEntry, PassInput, Store, StoreError, StoreOptions, StoreReport};
use crate::validate::{Policy, ValidationError, validate};

/// Signals from outside the loop: stop, or start a pass now.
#[derive(Clone, Default)]
pub struct Controls {
    /// Cancelled on SIGTERM/SIGINT (or by a test).
    pub shutdown: CancellationToken,
    /// Notified on SIGUSR1.
    pub pass_now: Arc<Notify>,
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
#[derive(Clone, Debug)]
struct PendingHook {
    changed_files: BTreeSet<PathBuf>,
    failures: u32,
    next_retry: Option<Instant>,
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
    /// Failed; its files kept as they were.
    Failed(String),
}

impl fmt::Display for SummaryLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self
            .file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "-".into());
        let status = match &self.status {
            LineStatus::Unchanged => "unchanged".to_string(),
            LineStatus::Updated => "updated".to_string(),
            LineStatus::Failed(reason) => format!("failed: {reason}"),
        };
        let not_after = self
            .not_after
            .and_then(|t| t.format(&Rfc3339).ok())
            .unwrap_or_else(|| "-".into());
        write!(
            f,
            "{}/{} {} {} notAfter={}",
            self.instance,
            self.category.as_deref().unwrap_or("-"),
            file,
            status,
            not_after
        )
    }
}

/// The result of one pass.
#[derive(Debug, Default)]
pub struct PassSummary {
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
}

/// One instance's certificates, ready for the store.
type Synced = Vec<DesiredEntry>;

impl Engine {
    /// Builds the client and opens the trust folder. `read_only` (for `--dry-run`) opens the
    /// folder without creating, locking or cleaning it.
    pub fn new(config: Config, read_only: bool) -> Result<Engine, DaemonError> {
        let http = build_client(config.cloud.ca_file.as_deref(), config.cloud.timeout)?;
        let credentials = match &config.auth {
            Auth::Token { token_file } => Credentials::Token(TokenFile::new(token_file)),
        };
        let api = ApiClient::new(
            http.clone(),
            config.cloud.endpoint.clone(),
            config.cloud.project_id.clone(),
            Arc::new(credentials),
        );
        let fetcher = Fetcher::new(
            http,
            &config.sync.allowed_download_hosts,
            config.sync.max_download_bytes,
        );
        let store = Store::open(store_options(&config), read_only)?;
        let backoff = Backoff {
            initial: config.sync.retry_initial,
            max: config.sync.retry_max,
        };
        Ok(Engine {
            config: Arc::new(config),
            api,
            fetcher,
            store: Some(store),
            health: BTreeMap::new(),
            hooks: BTreeMap::new(),
            backoff,
            passes: 0,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.config
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
        let instances: Vec<Instance> = self
            .config
            .instances
            .iter()
            .filter(|i| only.is_none_or(|set| set.contains(&i.id)))
            .cloned()
            .collect();
        let results = tokio::select! {
            r = self.sync_all(instances) => r,
            _ = shutdown.cancelled() => {
                tracing::info!("shutdown during the pass: no file was written");
                return PassSummary::default();
            }
        };

        let mut summary = PassSummary::default();
        let mut input = PassInput {
            configured: self.config.instances.iter().map(|i| i.id.clone()).collect(),
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

        // The store does blocking file I/O (fsync): keep it off the async workers.
        let mut store = self.store.take().expect("store present between passes");
        let now = SystemTime::now();
        let (store, report) = {
            let input = input.clone();
            tokio::task::spawn_blocking(move || {
                let report = store.apply(&input, now, dry_run);
                (store, report)
            })
            .await
            .expect("store task does not panic")
        };
        self.store = Some(store);

        // Instances whose file could not be written count as failed too.
        let by_id: BTreeMap<&str, &Instance> = self
            .config
            .instances
            .iter()
            .map(|i| (i.id.as_str(), i))
            .collect();
        let mut store_failed: BTreeSet<String> = BTreeSet::new();
        let mut report = report;
        for entry in std::mem::take(&mut report.entries) {
            let inst = by_id[entry.instance_id.as_str()];
            match entry.result {
                Ok(change) => {
                    let status = match change {
                        Change::Unchanged => LineStatus::Unchanged,
                        _ => LineStatus::Updated,
                    };
                    if status == LineStatus::Updated {
                        tracing::info!(
                            instance = inst.display_name(),
                            category = %entry.category,
                            path = %entry.path.display(),
                            fingerprint = entry.fingerprints.join(",").as_str(),
                            not_after = %fmt_time(entry.not_after),
                            dry_run,
                            "CA file updated"
                        );
                    }
                    summary.lines.push(SummaryLine {
                        instance: inst.display_name().to_string(),
                        category: Some(entry.category.clone()),
                        file: Some(entry.path.clone()),
                        status,
                        not_after: entry.not_after,
                    });
                }
                Err(err) => {
                    let err = InstanceError::Store {
                        instance: inst.display_name().to_string(),
                        category: entry.category.clone(),
                        source: err,
                    };
                    store_failed.insert(inst.id.clone());
                    summary.lines.push(SummaryLine {
                        instance: inst.display_name().to_string(),
                        category: Some(entry.category.clone()),
                        file: Some(entry.path.clone()),
                        status: LineStatus::Failed(err.to_string()),
                        not_after: None,
                    });
                    tracing::warn!(instance = inst.display_name(), error = %err, "instance failed");
                }
            }
        }
        for err in &report.errors {
            tracing::error!(error = %err, "trust folder");
            summary.store_errors.push(err.to_string());
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
            self.warn_expiring(now);
            self.queue_hooks(&report);
            summary.failed_hooks = self.run_due_hooks(shutdown, true).await;
        }
        tracing::info!(
            instances = input.synced.len() + failures.len(),
            failed = summary.failed_instances,
            changed_files = report.changed_files.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "pass finished"
        );
        summary
    }

    /// Lists, downloads and validates every instance, `concurrency` at a time. One instance's
    /// failure or slowness does not affect the others' results.
    async fn sync_all(
        &self,
        instances: Vec<Instance>,
    ) -> Vec<(Instance, Result<Synced, InstanceError>)> {
        let limit = Arc::new(Semaphore::new(self.config.sync.concurrency));
        let mut tasks = JoinSet::new();
        for (index, inst) in instances.into_iter().enumerate() {
            let limit = limit.clone();
            let api = self.api.clone();
            let fetcher = self.fetcher.clone();
            let config = self.config.clone();
            let span = tracing::info_span!("instance", instance = inst.display_name().to_string());
            tasks.spawn(
                async move {
                    let _permit = limit.acquire_owned().await.expect("semaphore never closed");
                    let result = sync_instance(&api, &fetcher, &config, &inst).await;
                    (index, inst, result)
                }
                .instrument(span),
            );
        }
        let mut out = Vec::with_capacity(tasks.len());
        while let Some(joined) = tasks.join_next().await {
            out.push(joined.expect("instance task does not panic"));
        }
        // Config order, so logs, summaries and store input are stable.
        out.sort_by_key(|(index, _, _)| *index);
        out.into_iter().map(|(_, inst, r)| (inst, r)).collect()
    }

    fn record_health(
        &mut self,
        synced: &BTreeSet<String>,
        store_failed: &BTreeSet<String>,
        failures: &[(Instance, InstanceError)],
        now: SystemTime,
    ) {
        for id in synced.difference(store_failed) {
            let h = self.health.entry(id.clone()).or_default();
            *h = InstanceHealth {
                last_success: Some(now),
                ..InstanceHealth::default()
            };
        }
        let failed = failures
            .iter()
            .map(|(i, e)| (i.id.clone(), e.to_string()))
            .chain(
                store_failed
                    .iter()
                    .map(|id| (id.clone(), "writing its file failed".to_string())),
            );
        for (id, error) in failed {
            let h = self.health.entry(id).or_default();
            h.failures += 1;
            let delay = self.backoff.delay(h.failures, fastrand::f64());
            h.next_retry = Some(Instant::now() + delay);
            h.last_error = Some(error);
            tracing::info!(retry_in = ?delay, failures = h.failures, "instance will be retried");
        }
        // Forget instances that left the config.
        let configured: BTreeSet<&str> = self
            .config
            .instances
            .iter()
            .map(|i| i.id.as_str())
            .collect();
        self.health.retain(|id, _| configured.contains(id.as_str()));
    }

    fn warn_expiring(&self, now: SystemTime) {
        let now = OffsetDateTime::from(now);
        let horizon = now + self.config.sync.expiry_warning;
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
        for (index, hook) in self.config.hooks.iter().enumerate() {
            let wanted = match &hook.instances {
                None => true,
                Some(ids) => ids.iter().any(|id| report.changed_instances.contains(id)),
            };
            if wanted {
                let pending = self.hooks.entry(index).or_insert_with(|| PendingHook {
                    changed_files: BTreeSet::new(),
                    failures: 0,
                    next_retry: None,
                });
                pending
                    .changed_files
                    .extend(report.changed_files.iter().cloned());
                // New changes run the hook now, even while it waits for a retry.
                pending.next_retry = None;
            }
        }
    }

    /// Runs the queued hooks that are due, in config order, one at a time. Returns the names
    /// of those that failed. `all_due` ignores retry times (a pass just changed files).
    async fn run_due_hooks(&mut self, shutdown: &CancellationToken, all_due: bool) -> Vec<String> {
        let now = Instant::now();
        let due: Vec<usize> = self
            .hooks
            .iter()
            .filter(|(_, p)| all_due || p.next_retry.is_none_or(|t| t <= now))
            .map(|(i, _)| *i)
            .collect();
        let mut failed = Vec::new();
        for index in due {
            if shutdown.is_cancelled() {
                break;
            }
            let hook = &self.config.hooks[index];
            let pending = self.hooks.get(&index).expect("queued").clone();
            if pending.next_retry.is_some_and(|t| t > now) && !all_due {
                continue;
            }
            let spec = HookSpec {
                name: hook.name.clone(),
                command: hook.command.clone(),
                timeout: hook.timeout,
            };
            let files: Vec<PathBuf> = pending.changed_files.iter().cloned().collect();
            let result = run_command(&spec, &self.config.trust.dir, &files, shutdown)
                .instrument(tracing::info_span!("hook", hook = %hook.name))
                .await;
            match result {
                Ok(out) => {
                    tracing::info!(hook = %hook.name, duration_ms = out.duration.as_millis() as u64, "hook succeeded");
                    self.hooks.remove(&index);
                }
                Err(err) => {
                    let p = self.hooks.get_mut(&index).expect("queued");
                    p.failures += 1;
                    let delay = self.backoff.delay(p.failures, fastrand::f64());
                    p.next_retry = Some(Instant::now() + delay);
                    let stopped = matches!(err, HookError::Stopped { .. });
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
                Instant::now() + wait
            });
        (retry, hook, deadline)
    }

    fn due_instances(&self, now: Instant) -> BTreeSet<String> {
        self.health
            .iter()
            .filter(|(_, h)| h.next_retry.is_some_and(|t| t <= now))
            .map(|(id, _)| id.clone())
            .collect()
    }
}

async fn sync_instance(
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
        // A category only the API names is untrusted input that goes into a file name.
        let file_name = config.trust.file_name_for(inst, &link.category);
        if let Some(problem) = config.trust.file_name_problem(&file_name) {
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

fn fmt_time(t: Option<OffsetDateTime>) -> String {
    t.and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "-".into())
}

/// `certsync once`: one pass, then hooks (unless `dry_run`).
pub async fn once(config: Config, dry_run: bool) -> Result<PassSummary, DaemonError> {
    let mut engine = Engine::new(config, dry_run)?;
    let shutdown = CancellationToken::new();
    Ok(engine.pass(None, dry_run, &shutdown).await)
}

/// Called after every pass of [`run`] with the engine, for status reporting.
pub type PassObserver = Box<dyn FnMut(&Engine, &PassSummary) + Send>;

/// `certsync run`: passes on schedule until `controls.shutdown` is cancelled.
///
/// The first pass starts at once; later full passes every `interval` plus jitter, or when
/// `pass_now` is notified (SIGUSR1), or when a replaced CA's overlap ends. A failed instance
/// is retried on its own backoff; a failed hook on its own.
pub async fn run(
    config: Config,
    controls: Controls,
    mut observer: Option<PassObserver>,
) -> Result<(), DaemonError> {
    let mut engine = Engine::new(config, false)?;
    let shutdown = controls.shutdown.clone();
    let mut next_full = Instant::now();
    loop {
        let (retry, hook, deadline) = engine.next_due();
        let wake = [Some(next_full), retry, hook, deadline]
            .into_iter()
            .flatten()
            .min()
            .expect("next_full is always set");
        let full = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = controls.pass_now.notified() => {
                tracing::info!("SIGUSR1: starting a pass now");
                true
            }
            _ = tokio::time::sleep_until(wake) => {
                let now = Instant::now();
                now >= next_full || deadline.is_some_and(|d| d <= now)
            }
        };
        let summary = if full {
            let s = engine.pass(None, false, &shutdown).await;
            let sync = &engine.config.sync;
            next_full = Instant::now() + with_jitter(sync.interval, sync.jitter, fastrand::f64());
            Some(s)
        } else {
            let due = engine.due_instances(Instant::now());
            if !due.is_empty() {
                Some(engine.pass(Some(&due), false, &shutdown).await)
            } else {
                engine.run_due_hooks(&shutdown, false).await;
                None
            }
        };
        if let (Some(summary), Some(observe)) = (summary.as_ref(), observer.as_mut()) {
            observe(&engine, summary);
        }
        if shutdown.is_cancelled() {
            break;
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// Waits for `d`, or less if cancelled. Used by the demo.
pub async fn sleep_or_cancel(d: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = cancel.cancelled() => false,
    }
}
