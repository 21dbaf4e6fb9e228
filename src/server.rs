//! The HTTP endpoints of SPEC 10: `/metrics`, `/healthz`, `/readyz`, `/status`.
//!
//! Owns: the listener, its accept loop, the bounds on what a client can hold ([`Limits`]) and
//! the handlers. Handlers only read what the daemon publishes in [`Shared`] (`crate::status`)
//! after each pass, so a scrape never waits for a pass and a pass never waits for a scrape. It
//! never touches the trust folder or the network beyond its own socket.
//!
//! The accept loop is our own rather than `axum::serve`, which has no header timeout and no
//! connection limit: a client that opens connections and never finishes a request would
//! otherwise hold a descriptor each, forever, until the sync itself cannot open files.

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

pub use crate::status::{STALL_LIMIT, Shared};

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

/// A request's headers must arrive within this (SPEC 10); a kept-alive connection waiting for
/// its next request is closed after this too.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// At most this many connections are served at once (SPEC 10); while they are open no further
/// connection is accepted, so more wait in the kernel's backlog (or are refused by it when
/// that is full).
pub const MAX_CONNECTIONS: usize = 64;

/// A connection is asked to close after this long, whatever it does: the header timeout does
/// not cover a client that sends a body slowly or pipelines requests without reading the
/// answers (hyper then waits on the write forever), so every connection's life is bounded.
/// Far longer than any scrape; a scraper that keeps its connection busy just reconnects.
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(60);

/// How long to wait after an `accept` failure that is not about one connection (out of file
/// descriptors, out of memory) before accepting again, so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// What one client can hold of the server. The daemon uses [`Limits::default`] (the
/// constants above); tests use shorter times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Request headers must arrive within this; an idle kept-alive connection is closed after
    /// it. Also the grace a connection gets to finish once it was asked to close (shutdown or
    /// [`Limits::max_connection_age`]) before it is dropped.
    pub header_read_timeout: Duration,
    /// Connections served at once (at least one is always allowed).
    pub max_connections: usize,
    /// A connection is asked to close after this long.
    pub max_connection_age: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: HEADER_READ_TIMEOUT,
            max_connections: MAX_CONNECTIONS,
            max_connection_age: MAX_CONNECTION_AGE,
        }
    }
}

/// Binds `addr` now (so a bad address fails at start) and serves until `shutdown`, with the
/// default [`Limits`].
pub async fn start(
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), ServeError> {
    start_with(addr, shared, shutdown, Limits::default()).await
}

/// [`start`] with the given limits. After `shutdown` no connection is accepted; requests in
/// flight are answered, idle connections closed, and the task ends once every connection
/// has (each within `limits.header_read_timeout`).
pub async fn start_with(
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    limits: Limits,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), ServeError> {
    let listener = TcpListener::bind(addr)
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
    let task = tokio::spawn(accept_loop(listener, app, shutdown, limits));
    tracing::info!(listen = %local, "serving /metrics /healthz /readyz /status");
    Ok((local, task))
}

/// Accepts while a connection slot is free, one task per connection; on `shutdown` stops
/// accepting (the listener is closed) and waits until every connection task has ended.
async fn accept_loop(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
    limits: Limits,
) {
    // Bounded for `acquire_many` (u32) and the semaphore (MAX_PERMITS) alike.
    let slots =
        u32::try_from(limits.max_connections.clamp(1, Semaphore::MAX_PERMITS)).unwrap_or(u32::MAX);
    let semaphore = Arc::new(Semaphore::new(slots as usize));
    // Set while accepting fails for want of resources: warned about once, not every second.
    let mut starved = false;
    loop {
        // A slot first, then accept: while every slot is taken the kernel keeps new
        // connections in its backlog and no descriptor is spent on them.
        let permit = tokio::select! {
            permit = semaphore.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // never closed; nothing left to serve with
            },
            () = shutdown.cancelled() => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                if std::mem::take(&mut starved) {
                    tracing::info!("HTTP server accepts connections again");
                }
                tokio::spawn(serve_connection(
                    stream,
                    peer,
                    app.clone(),
                    shutdown.clone(),
                    limits,
                    permit,
                ));
            }
            Err(e) if is_per_connection(&e) => {
                tracing::debug!(error = %e, "HTTP accept: connection lost before it was accepted");
            }
            Err(e) => {
                // Out of descriptors or memory: the sync needs them more than a scrape does.
                if !std::mem::replace(&mut starved, true) {
                    tracing::warn!(error = %e, "HTTP server cannot accept connections; retrying every second");
                }
                drop(permit);
                tokio::select! {
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    () = shutdown.cancelled() => break,
                }
            }
        }
    }
    drop(listener);
    // Every connection task holds a slot until it ends; all slots back means all ended.
    let _ = semaphore.acquire_many(slots).await;
    tracing::debug!("HTTP server stopped");
}

/// Accept errors that concern only the connection being accepted.
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset, Interrupted};
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset | Interrupted
    )
}

/// Serves one connection (HTTP/1.1, keep-alive) within `limits`, holding `_slot` until it
/// ends.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    shutdown: CancellationToken,
    limits: Limits,
    _slot: OwnedSemaphorePermit,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let mut conn =
        pin!(builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app)));
    let why = tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                // Client-caused (a header timeout, a reset, a malformed request): not worth
                // more than debug, or any client could fill the log.
                tracing::debug!(%peer, error = %e, "HTTP connection ended");
            }
            return;
        }
        () = shutdown.cancelled() => "shutdown",
        () = tokio::time::sleep(limits.max_connection_age) => "connection age limit",
    };
    // Answers the request in flight (if any), then closes; dropped if that takes too long.
    conn.as_mut().graceful_shutdown();
    match tokio::time::timeout(limits.header_read_timeout, conn).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(%peer, error = %e, reason = why, "HTTP connection ended"),
        Err(_) => {
            tracing::debug!(%peer, reason = why, "HTTP connection dropped: it did not finish in time")
        }
    }
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
