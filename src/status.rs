//! What the daemon publishes for the HTTP server and `certsync status`: the `/status` and
//! `/readyz` document ([`StatusSnapshot`]), the metrics registry and the scheduler's heartbeat,
//! together in [`Shared`].
//!
//! Owns: those types and their locking. The daemon writes them (after each pass, and as the
//! scheduler makes progress); the server only reads. It must not compute anything: building
//! the snapshot is the daemon's (`daemon::status`).

use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::metrics::Metrics;

/// What `/status` shows for one instance file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CategoryStatus {
    /// The category.
    pub category: String,
    /// The file.
    pub file: String,
    /// SHA-256 of the current CA(s).
    pub fingerprints: Vec<String>,
    /// Earliest notAfter of the current CA(s), RFC 3339.
    pub not_after: Option<String>,
    /// Whole days until `not_after`.
    pub days_left: Option<i64>,
    /// Inside `sync.expiry_warning`.
    pub expiring: bool,
    /// Replaced CAs the file still holds (the rotation overlap), most recent first.
    pub overlap: Vec<OverlapStatus>,
}

/// What `/status` shows for one replaced CA still in its file (SPEC 7, 13).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct OverlapStatus {
    /// SHA-256 of the CA.
    pub sha256: String,
    /// When it was replaced, RFC 3339.
    pub replaced_at: String,
    /// When it leaves unless an endpoint still uses it (end of `rotation_overlap`, or its
    /// notAfter), RFC 3339.
    pub leaves_at: String,
    /// When it leaves at the latest (end of `rotation_overlap_max`, or its notAfter),
    /// RFC 3339.
    pub leaves_by: String,
    /// Past `leaves_at` and still kept: an endpoint anchors at it or was not verified since
    /// the rotation.
    pub kept_by_endpoints: bool,
}

/// What `/status` shows for one instance.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct InstanceStatus {
    /// Cloud id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Its files.
    pub categories: Vec<CategoryStatus>,
    /// Last successful sync, RFC 3339.
    pub last_success: Option<String>,
    /// Last failure, if the last sync failed.
    pub last_error: Option<String>,
    /// Consecutive failures.
    pub failures: u32,
}

/// What `/status` shows for one endpoint of an instance (SPEC 13).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct EndpointStatus {
    /// The instance's id.
    pub instance: String,
    /// The instance's display name.
    pub name: String,
    /// `host:port`.
    pub endpoint: String,
    /// The served chain anchors at a CA certsync wrote for the instance.
    pub verified: bool,
    /// `verified`, or why not: `unknown_issuer`, `expired`, `not_yet_valid`,
    /// `name_mismatch`, `invalid_chain`, `no_ca`, `connect_error`, `handshake_error`,
    /// `timeout`.
    pub result: String,
    /// The same in words.
    pub detail: String,
    /// SHA-256 of the CA the chain anchors at.
    pub anchor: Option<String>,
    /// The served leaf's notAfter, RFC 3339.
    pub leaf_not_after: Option<String>,
    /// When it was last probed, RFC 3339.
    pub probed_at: String,
}

/// The document behind `/status` and `/readyz`; `certsync status` reads it back (every field
/// defaulted, so a daemon of another version still reads).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StatusSnapshot {
    /// Every instance has a valid CA on disk and no hook is failing.
    pub ready: bool,
    /// Why not ready.
    pub reasons: Vec<String>,
    /// Per instance.
    pub instances: Vec<InstanceStatus>,
    /// Hooks waiting for a retry after a failure.
    pub failing_hooks: Vec<String>,
    /// What the last pass could not write in the trust folder (path and error), SPEC 7.
    pub store_errors: Vec<String>,
    /// Why the source cannot be used (a fleet subscriber's etcd unreachable, or its set
    /// refused), SPEC 14.
    pub source_errors: Vec<String>,
    /// End of the last pass, RFC 3339.
    pub last_pass: Option<String>,
    /// When the next full pass is due, RFC 3339 (`None` before the scheduler set it).
    pub next_pass: Option<String>,
    /// Each probed endpoint's last result (SPEC 13), kept by the verifier.
    pub endpoints: Vec<EndpointStatus>,
    /// This certsync's fleet role (SPEC 14), when it has one.
    pub fleet: Option<FleetStatus>,
}

/// A fleet role in `/status` (SPEC 14).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FleetStatus {
    /// `publisher` or `subscriber`.
    pub role: String,
    /// The etcd prefix of the fleet's keys.
    pub prefix: String,
    /// A publisher: whether it leads now.
    pub leading: Option<bool>,
    /// The latest generation of the set this certsync published or applied.
    pub generation: Option<u64>,
}

/// What the verifier publishes: every endpoint's last result, and whether a failing one makes
/// the daemon not ready (`verify.required`).
#[derive(Clone, Debug, Default)]
pub struct Endpoints {
    /// `verify.required`.
    pub required: bool,
    /// Per endpoint, in instance order.
    pub list: Vec<EndpointStatus>,
}

/// State shared between the daemon (writer) and the handlers (readers).
#[derive(Debug)]
pub struct Shared {
    /// The metrics registry.
    pub metrics: Metrics,
    /// The latest snapshot.
    pub status: RwLock<StatusSnapshot>,
    /// The endpoints' last results, published by the verifier on its own schedule.
    endpoints: RwLock<Endpoints>,
    /// True while the scheduler loop runs.
    pub alive: AtomicBool,
    /// Milliseconds after `epoch` of the scheduler's last sign of progress.
    heartbeat_ms: AtomicU64,
    /// Unix seconds of the next full pass; `i64::MIN`: not set.
    next_pass: AtomicI64,
    epoch: Instant,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            metrics: Metrics::default(),
            status: RwLock::new(StatusSnapshot {
                reasons: vec!["the first pass has not finished".into()],
                ..StatusSnapshot::default()
            }),
            endpoints: RwLock::new(Endpoints::default()),
            alive: AtomicBool::new(false),
            heartbeat_ms: AtomicU64::new(0),
            next_pass: AtomicI64::new(i64::MIN),
            epoch: Instant::now(),
        }
    }
}

/// The scheduler counts as stuck (`/healthz` 503) after this long without progress: longer
/// than any single step may take (an instance's deadline, a hook's timeout).
pub const STALL_LIMIT: Duration = Duration::from_secs(15 * 60);

impl Shared {
    /// The scheduler made progress (a loop turn, an instance done, a hook run).
    pub fn touch(&self) {
        let ms = self.epoch.elapsed().as_millis() as u64;
        self.heartbeat_ms.store(ms, Ordering::Relaxed);
    }

    /// How long since the last progress.
    pub fn heartbeat_age(&self) -> Duration {
        let now = self.epoch.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.heartbeat_ms.load(Ordering::Relaxed)))
    }

    /// Alive and not stuck for longer than `limit`.
    pub fn healthy(&self, limit: Duration) -> bool {
        self.alive.load(Ordering::Relaxed) && self.heartbeat_age() < limit
    }

    /// Publishes a new snapshot.
    pub fn publish(&self, snapshot: StatusSnapshot) {
        *self.status.write().unwrap_or_else(|p| p.into_inner()) = snapshot;
    }

    /// The scheduler's next full pass.
    pub fn set_next_pass(&self, at: std::time::SystemTime) {
        let secs = time::OffsetDateTime::from(at).unix_timestamp();
        self.next_pass.store(secs, Ordering::Relaxed);
    }

    /// Publishes the endpoints' results.
    pub fn publish_endpoints(&self, endpoints: Endpoints) {
        *self.endpoints.write().unwrap_or_else(|p| p.into_inner()) = endpoints;
    }

    /// The latest snapshot, with the endpoints' last results: with `verify.required`, a
    /// failing endpoint makes it not ready, naming the endpoint and why.
    pub fn snapshot(&self) -> StatusSnapshot {
        let mut snapshot = self
            .status
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let endpoints = self.endpoints.read().unwrap_or_else(|p| p.into_inner());
        if endpoints.required {
            for e in endpoints.list.iter().filter(|e| !e.verified) {
                snapshot.ready = false;
                snapshot.reasons.push(format!(
                    "endpoint {} of instance {}: {}",
                    e.endpoint, e.name, e.detail
                ));
            }
        }
        snapshot.endpoints = endpoints.list.clone();
        let next = self.next_pass.load(Ordering::Relaxed);
        snapshot.next_pass = (next != i64::MIN)
            .then(|| time::OffsetDateTime::from_unix_timestamp(next).ok())
            .flatten()
            .map(crate::cert::rfc3339);
        snapshot
    }
}
