//! The daemon: one pass wired from the stages ([`Engine`]), and the loop that runs passes on
//! schedule until shutdown (`run`), or once (`once`).
//!
//! Owns: the order of things and nothing else. The plan stage (`crate::plan`) decides which
//! instances and names; the source (`crate::source`) fetches and validates; the sinks
//! (`crate::sink`) write; the sub-states here keep what lasts between passes: [`health`],
//! [`hook_queue`], [`state`] (what is saved with the folder), [`scheduler`] (when to wake up)
//! and [`status`] (what `/status` shows). It is the only module that knows every stage; the
//! stages never call each other.

mod engine;
pub mod health;
pub mod hook_queue;
pub mod scheduler;
pub mod state;
pub mod status;
mod summary;
pub mod verifier;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::sink::{EntryState, StoreError, StoreView};
use crate::status::Shared;
use crate::systemd;
use state::DaemonState;

pub use engine::{Engine, store_options};
pub use scheduler::{Due, Scheduler, Wake};
pub use summary::{LineStatus, PassSummary, SummaryLine};

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
    /// The source could not be built (bad `cloud.ca_file`, no roots).
    #[error(transparent)]
    Source(#[from] crate::source::SourceError),
    /// The trust folder cannot be used.
    #[error("trust folder: {0}")]
    Store(#[from] StoreError),
    /// The HTTP server cannot listen.
    #[error(transparent)]
    Serve(#[from] crate::server::ServeError),
    /// `once` as a publisher that did not get to lead: another publisher polls the cloud.
    #[error(
        "another publisher leads the fleet (after waiting {waited:?}), and has published nothing yet: this one polled nothing"
    )]
    Standby {
        /// How long it waited to lead.
        waited: Duration,
    },
}

/// `now + d` on the scheduler's clock, saturating: a wait too long to represent (a replaced
/// CA valid until 9999 with a huge overlap, say) becomes one about a century away.
pub(crate) fn later(d: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(100 * 365 * 86400);
    let now = Instant::now();
    now.checked_add(d)
        .or_else(|| now.checked_add(FAR))
        .unwrap_or(now)
}

/// The managed instance files of `store` that `config` would no longer produce (for
/// `check`): no configured instance, and no instance discovered before (as the folder's
/// saved state remembers), maps to the file's name for its category. With `trust.prune`
/// they are removed after [`crate::sink::UNPRODUCED_PASSES`] passes without them.
pub fn no_longer_produced(config: &Config, folder: &StoreView<DaemonState>) -> Vec<EntryState> {
    let discovered = if config.discover.is_empty() && config.subscribe.is_none() {
        crate::plan::Discovered::new()
    } else {
        folder.saved_state().discovered.clone()
    };
    let plan = crate::plan::instances(&config.instances, &discovered);
    crate::plan::no_longer_produced(&config.trust, &plan, folder.current())
}

/// `certsync once`: one pass, then hooks (unless `dry_run`).
pub async fn once(config: Config, dry_run: bool) -> Result<PassSummary, DaemonError> {
    let mut engine = Engine::new(config, dry_run)?;
    // `once` exits after its pass: nothing is retried, so the log must not promise it.
    engine.retries = false;
    engine.publishes = false;
    // A publisher polls only when it leads: wait for the election (at most two lease
    // periods: a leader that died lets go within one).
    if let Some(mut leading) = engine.fleet_watch().leadership {
        let waited = engine
            .config
            .publish
            .as_ref()
            .map_or(Duration::ZERO, |p| p.lease_ttl.saturating_mul(2));
        let won = tokio::time::timeout(waited, leading.wait_for(|leads| *leads)).await;
        if !matches!(won, Ok(Ok(_))) {
            // Another publisher leads: this one's folder follows the set it published, as
            // in `run`; with nothing published yet there is nothing to do.
            let mut answers = false;
            if let Some(mut set) = engine.fleet_watch().subscription {
                let _ = tokio::time::timeout(SUBSCRIBER_FIRST_READ, set.wait_for(first_read_done))
                    .await;
                answers = fleet_answers(&set.borrow());
            }
            if answers && !engine.follower_ready() {
                engine.step_down();
                return Err(DaemonError::Standby { waited });
            }
            if engine.leads() {
                tracing::info!("this publisher leads now: it polls the cloud");
            } else if answers {
                tracing::info!(
                    "another publisher leads the fleet: this pass follows the set it published"
                );
            } else {
                // The pass fails every instance with etcd's error; the files stay.
                tracing::warn!(
                    "etcd does not answer: this publisher can neither lead nor follow the set"
                );
            }
        }
    }
    // A subscriber reads the set first (or learns that etcd does not answer).
    let fleet = engine.fleet_watch();
    if let (None, Some(mut set)) = (fleet.leadership, fleet.subscription) {
        let _ = tokio::time::timeout(SUBSCRIBER_FIRST_READ, set.wait_for(first_read_done)).await;
    }
    let shutdown = CancellationToken::new();
    let summary = engine.pass(None, dry_run, &shutdown).await;
    engine.step_down();
    Ok(summary)
}

/// How long `once` as a subscriber waits for its first read of the set.
pub const SUBSCRIBER_FIRST_READ: Duration = Duration::from_secs(15);

/// A subscriber's first read is done: it has a value, or etcd did not answer.
#[cfg(feature = "etcd")]
fn first_read_done(s: &crate::fleet::etcd::Subscription) -> bool {
    s.first_read_done()
}
#[cfg(not(feature = "etcd"))]
fn first_read_done(_: &()) -> bool {
    true
}

/// Whether the fleet's etcd answered the last attempt.
#[cfg(feature = "etcd")]
fn fleet_answers(s: &crate::fleet::etcd::Subscription) -> bool {
    s.up
}
#[cfg(not(feature = "etcd"))]
fn fleet_answers(_: &()) -> bool {
    true
}

/// Waits for the next change on `rx`; never, once there is none (or it closed).
async fn next_change<T>(rx: &mut Option<tokio::sync::watch::Receiver<T>>) -> bool {
    match rx {
        Some(r) => r.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

/// How often the waiting scheduler shows it is alive.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);

/// What the loop wakes up to do.
enum Work {
    /// A pass over every instance.
    Full,
    /// The failed instances and hooks whose retry has come, if any.
    Due,
    /// A pass of these instances, whose replaced CA the endpoints no longer use.
    Released(BTreeSet<String>),
}

/// Clears `alive` when the loop ends, however it ends.
struct AliveGuard(Arc<Shared>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.alive.store(false, Ordering::Relaxed);
    }
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
        systemd::spawn_watchdog(every, shared.clone(), shutdown.clone());
    }
    // The endpoint probes (SPEC 13) run beside the passes, never in them.
    engine.probing = true;
    let (verified_tx, mut verified) = tokio::sync::watch::channel(Arc::default());
    engine.verified = verified.clone();
    tokio::spawn(verifier::run(
        engine.probe_targets(),
        verified_tx,
        shared.clone(),
        shutdown.child_token(),
    ));
    let mut verifier_alive = true;
    // The fleet roles (SPEC 14): a publisher that becomes the leader polls at once; a
    // subscriber passes whenever its set changes (or etcd comes and goes).
    let mut fleet = engine.fleet_watch();
    // A subscriber's first pass waits for its first read of the set (at most
    // SUBSCRIBER_FIRST_READ): before it, that pass could only fail every instance.
    if let (None, Some(set)) = (&fleet.leadership, &fleet.subscription) {
        let mut set = set.clone();
        tokio::select! {
            _ = tokio::time::timeout(SUBSCRIBER_FIRST_READ, set.wait_for(first_read_done)) => {}
            _ = shutdown.cancelled() => {}
        }
    }
    fleet.seen();
    let mut heartbeat = tokio::time::interval(HEARTBEAT_EVERY);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Dropped at the end of `run`, which stops the watch.
    let _watcher = if engine.config.sync.watch_config {
        crate::watch::watch_config_file(&engine.config.source, controls.reload.clone())
    } else {
        None
    };
    let mut scheduler = Scheduler::new(Instant::now());
    let mut first = true;
    loop {
        let (retry, hook, deadline) = engine.next_due();
        let due = Due {
            retry,
            hook,
            deadline,
        };
        shared.touch();
        // The next full pass (the interval's, or a replaced CA's overlap ending), for /status.
        let next_full = due
            .deadline
            .map_or(scheduler.next_full(), |d| d.min(scheduler.next_full()));
        shared.set_next_pass(
            std::time::SystemTime::now() + next_full.saturating_duration_since(Instant::now()),
        );
        let wake = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            // While it waits, the loop still shows it is alive.
            _ = heartbeat.tick() => continue,
            _ = controls.pass_now.notified() => {
                tracing::info!("SIGUSR1: starting a pass now");
                Some(Work::Full)
            }
            // A round of probes ended: a replaced CA that only the endpoints' evidence kept
            // past `rotation_overlap` leaves once they all anchor at a current CA (SPEC 13).
            changed = verified.changed(), if verifier_alive => {
                if changed.is_err() {
                    verifier_alive = false;
                    continue;
                }
                let released = engine.released_by_evidence();
                if released.is_empty() {
                    continue;
                }
                tracing::info!(
                    instances = released.len(),
                    "every endpoint now anchors at a current CA: a pass drops the replaced CA they no longer use"
                );
                Some(Work::Released(released))
            }
            alive = next_change(&mut fleet.leadership) => {
                if !alive {
                    tracing::error!("the fleet's election stopped: this publisher will not lead until certsync restarts");
                    fleet.leadership = None;
                    continue;
                }
                let leads = fleet.leadership.as_mut().is_some_and(|r| *r.borrow_and_update());
                if !leads {
                    // `/status` says so at once (a pass would only follow the set).
                    engine.publish_status();
                    continue;
                }
                tracing::info!("this publisher leads now: a pass at once");
                Some(Work::Full)
            }
            alive = next_change(&mut fleet.subscription) => {
                if !alive {
                    tracing::error!("the watch of the fleet's set stopped: the files stay as they are until certsync restarts");
                    fleet.subscription = None;
                    continue;
                }
                // (A leader's own publication comes back here: it passes on its schedule.)
                if engine.leads() {
                    continue;
                }
                Some(Work::Full)
            }
            _ = controls.reload.notified() => {
                systemd::reloading();
                let applied = reload(&mut engine);
                fleet = engine.fleet_watch();
                fleet.seen();
                systemd::ready(&status_line(&engine));
                applied.then_some(Work::Full)
            }
            _ = tokio::time::sleep_until(scheduler.wake_at(&due)) => {
                Some(match scheduler.woke(&due, Instant::now()) {
                    Wake::Full => Work::Full,
                    Wake::Retries => Work::Due,
                })
            }
        };
        let passed = match wake {
            Some(Work::Full) => {
                engine.pass(None, false, &shutdown).await;
                let sync = &engine.config.sync;
                scheduler.full_pass_done(
                    Instant::now(),
                    sync.interval,
                    sync.jitter,
                    fastrand::f64(),
                );
                true
            }
            Some(Work::Released(ids)) => {
                engine.pass(Some(&ids), false, &shutdown).await;
                true
            }
            _ => {
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
            // The wait until the next pass costs nearly nothing: the code the pass ran goes
            // back to the kernel (src/memory.rs).
            crate::memory::release_code_pages();
        }
        if shutdown.is_cancelled() {
            break;
        }
    }
    engine.step_down();
    systemd::stopping();
    tracing::info!("stopped");
    Ok(())
}

/// Re-reads the config file; returns true when a new config was applied.
fn reload(engine: &mut Engine) -> bool {
    let source = engine.config.source.clone();
    tracing::info!(config = %source.display(), "reloading the configuration");
    let shared = engine.shared();
    match crate::config::load(&source) {
        Err(e) => {
            shared.metrics.config_reload("invalid");
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
                    shared.metrics.config_reload("ok");
                    tracing::info!("configuration reloaded");
                    true
                }
                Err(e) => {
                    shared.metrics.config_reload("failed");
                    tracing::error!(error = %e, "cannot apply the new configuration; the old one stays in force");
                    false
                }
            }
        }
    }
}

/// One line for systemd's STATUS.
fn status_line(engine: &Engine) -> String {
    let failing_hooks = engine.hooks.failing(&engine.config.hooks).len();
    status::line(&engine.active, &engine.health, failing_hooks)
}

/// Waits for `d`; false when `cancel` fired first.
pub async fn sleep_or_cancel(d: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = cancel.cancelled() => false,
    }
}
