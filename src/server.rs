//! The HTTP endpoints of SPEC 10: `/metrics`, `/healthz`, `/readyz`, `/status`.
//!
//! Owns: the listener and the handlers. Handlers only read a snapshot the daemon publishes
//! after each pass ([`Shared`]), so a scrape never waits for a pass and a pass never waits for
//! a scrape. It never touches the trust folder or the network beyond its own socket.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// What `/status` shows for one instance file.
#[derive(Clone, Debug, Serialize)]
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
}

/// What `/status` shows for one instance.
#[derive(Clone, Debug, Serialize)]
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

/// The document behind `/status` and `/readyz`.
#[derive(Clone, Debug, Default, Serialize)]
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
    /// End of the last pass, RFC 3339.
    pub last_pass: Option<String>,
}

/// State shared between the daemon (writer) and the handlers (readers).
#[derive(Debug)]
pub struct Shared {
    /// The metrics registry.
    pub metrics: Metrics,
    /// The latest snapshot.
    pub status: RwLock<StatusSnapshot>,
    /// True while the scheduler loop runs.
    pub alive: AtomicBool,
    /// Milliseconds after `epoch` of the scheduler's last sign of progress.
    heartbeat_ms: AtomicU64,
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
            alive: AtomicBool::new(false),
            heartbeat_ms: AtomicU64::new(0),
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

    fn snapshot(&self) -> StatusSnapshot {
        self.status
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Failure to start the server.
#[derive(Debug, thiserror::Error)]
#[error("server.listen {addr}: cannot listen")]
pub struct ServeError {
    /// The address.
    pub addr: SocketAddr,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// Binds `addr` now (so a bad address fails at start) and serves until `shutdown`.
pub async fn start(
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), ServeError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| ServeError { addr, source })?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .with_state(shared);
    let task = tokio::spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "HTTP server stopped");
        }
    });
    tracing::info!(listen = %local, "serving /metrics /healthz /readyz /status");
    Ok((local, task))
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.encode(),
    )
        .into_response()
}

async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    if shared.healthy(STALL_LIMIT) {
        (StatusCode::OK, "ok\n").into_response()
    } else if shared.alive.load(Ordering::Relaxed) {
        let age = shared.heartbeat_age().as_secs();
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("scheduler stuck: no progress for {age} s\n"),
        )
            .into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "scheduler stopped\n").into_response()
    }
}

async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    let snapshot = shared.snapshot();
    if snapshot.ready {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        let mut body = String::from("not ready:\n");
        for reason in &snapshot.reasons {
            body.push_str("- ");
            body.push_str(reason);
            body.push('\n');
        }
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}

async fn status(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(shared.snapshot()).into_response()
}
