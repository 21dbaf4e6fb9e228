//! etcd for the fleet roles (SPEC 14): the client, the publishers' election, the leader's
//! publication, and the subscribers' watch.
//!
//! The election is etcd's own primitive, written out: each publisher holds a lease
//! (`lease_ttl`, kept alive every third of it) and puts `{prefix}/leader` bound to that lease
//! only if the key does not exist; the others watch the key and try again when it is
//! deleted (its leader's lease expired or was revoked), so a new leader takes over as soon
//! as etcd drops the old one's key. The bundle is written in a transaction that requires the
//! leader key to still hold this publisher's id (its lease is alive) and the bundle to be
//! the revision this publisher read: a deposed leader, or one that read an older set, writes
//! nothing. The bundle is never bound to a lease.
//!
//! Owns: connecting (TLS, client certificates, user and password read from its file: the
//! password is never logged or put in an error), the leadership state, reading and writing
//! `{prefix}/bundle`, and the subscriber's latest value. Must not: build or judge a set
//! (`bundle` does), or touch the trust folder.
//!
//! The election is in `election`, the subscribers' watch in `subscription`; both use the
//! client, its errors and its backoff from here.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, Identity, TlsOptions, Txn, TxnOp,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

mod election;
mod subscription;

use election::{Election, campaign};
pub use subscription::{Subscription, subscribe, validate};

use super::bundle::{self, BundleError, PassSet};
use crate::config::{Etcd, Publish};
use crate::status::Shared;
use crate::store::{Evidence, StoreOptions};

/// The longest wait between two attempts to reach etcd.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// The system's roots, for an https etcd without `ca_file`.
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";
/// Files named by the etcd keys are at most this large.
const MAX_FILE: u64 = 1 << 20;

/// What went wrong talking to etcd, or with what it holds.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// A file the config names could not be read (the path, never the content).
    #[error("{key} {path}: {source}")]
    File {
        /// The config key.
        key: &'static str,
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// etcd refused or did not answer.
    #[error("etcd {endpoints}: {message}")]
    Etcd {
        /// The endpoints (scheme, host and port).
        endpoints: String,
        /// etcd's client error.
        message: String,
    },
    /// The set could not be written as it is.
    #[error(transparent)]
    Bundle(#[from] BundleError),
}

/// A set's overlap CAs by instance id and category.
pub type Kept = std::collections::BTreeMap<(String, String), Vec<crate::store::KeptCa>>;

/// What a publication did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishOutcome {
    /// The set was written as this generation.
    Published(u64),
    /// The set is what etcd holds already: nothing written.
    Unchanged,
    /// The transaction was refused: this publisher no longer leads, or the set changed
    /// since it was read.
    Refused,
}

impl PublishOutcome {
    /// The `result` label of `certsync_publish_total`.
    pub fn label(&self) -> &'static str {
        match self {
            PublishOutcome::Published(_) => "ok",
            PublishOutcome::Unchanged => "unchanged",
            PublishOutcome::Refused => "refused",
        }
    }
}

/// Waits `backoff` (a quarter of it as jitter), then doubles it up to [`BACKOFF_MAX`]; false
/// when `cancel` came first.
async fn back_off(backoff: &mut Duration, cancel: &CancellationToken) -> bool {
    let wait = crate::schedule::with_jitter(*backoff, *backoff / 4, fastrand::f64());
    let waited = tokio::select! {
        _ = cancel.cancelled() => false,
        _ = tokio::time::sleep(wait) => true,
    };
    *backoff = (*backoff * 2).min(BACKOFF_MAX);
    waited
}

fn etcd_error(etcd: &Etcd, e: etcd_client::Error) -> FleetError {
    FleetError::Etcd {
        endpoints: etcd.endpoint_strings().join(","),
        message: e.to_string(),
    }
}

fn read_file(key: &'static str, path: &std::path::Path) -> Result<Vec<u8>, FleetError> {
    crate::files::read_capped(path, MAX_FILE).map_err(|source| FleetError::File {
        key,
        path: path.display().to_string(),
        source,
    })
}

/// Connects to etcd as the config says: TLS roots and a client certificate for https
/// endpoints, user and password (read from `password_file` now, each time).
pub async fn connect(etcd: &Etcd) -> Result<Client, FleetError> {
    let mut options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(10))
        .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
    if etcd.endpoints.iter().any(|u| u.scheme() == "https") {
        let mut tls = TlsOptions::new();
        // Without ca_file, the system's roots (Debian's bundle).
        let roots = match &etcd.ca_file {
            Some(ca) => read_file("ca_file", ca)?,
            None => read_file("ca_file", std::path::Path::new(SYSTEM_ROOTS))?,
        };
        tls = tls.ca_certificate(Certificate::from_pem(roots));
        if let Some((cert, key)) = &etcd.client_cert {
            tls = tls.identity(Identity::from_pem(
                read_file("cert_file", cert)?,
                read_file("key_file", key)?,
            ));
        }
        options = options.with_tls(tls);
    }
    if let Some((user, file)) = &etcd.auth {
        let bytes = read_file("password_file", file)?;
        let password = String::from_utf8_lossy(&bytes)
            .trim_end_matches(['\r', '\n'])
            .to_string();
        options = options.with_user(user.clone(), password);
    }
    Client::connect(etcd.endpoint_strings(), Some(options))
        .await
        .map_err(|e| etcd_error(etcd, e))
}

/// A publisher's id: `host/pid/random`, unique per process.
pub fn publisher_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".to_string());
    format!("{}/{}/{:08x}", host, std::process::id(), fastrand::u32(..))
}

/// The value at `{prefix}/bundle` and its revision (`None`: no set yet).
async fn read_raw(client: &mut Client, etcd: &Etcd) -> Result<Option<(Vec<u8>, i64)>, FleetError> {
    let resp = client
        .get(etcd.bundle_key(), None)
        .await
        .map_err(|e| etcd_error(etcd, e))?;
    Ok(resp
        .kvs()
        .first()
        .map(|kv| (kv.value().to_vec(), kv.mod_revision())))
}

/// What etcd holds for a fleet now, read once (`check --online`).
#[derive(Debug)]
pub struct Peek {
    /// The leader key's value: the leading publisher's id (`None`: nobody leads).
    pub leader: Option<String>,
    /// `{prefix}/bundle` and its revision (`None`: nothing published).
    pub bundle: Option<(Vec<u8>, i64)>,
}

/// Reads the leader key and the bundle once.
pub async fn peek(etcd: &Etcd) -> Result<Peek, FleetError> {
    let mut client = connect(etcd).await?;
    let leader = client
        .get(etcd.leader_key(), None)
        .await
        .map_err(|e| etcd_error(etcd, e))?
        .kvs()
        .first()
        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned());
    let bundle = read_raw(&mut client, etcd).await?;
    Ok(Peek { leader, bundle })
}

/// A publisher: its election task runs until `cancel`; the engine asks whether it leads and
/// hands it each pass's set.
pub struct Publisher {
    config: Publish,
    id: String,
    leading: watch::Receiver<bool>,
    /// Told when a publication finds the leader key holding another publisher's id: the
    /// election then lets go of the leadership this publisher still believed it had.
    deposed: Arc<tokio::sync::Notify>,
    client: tokio::sync::Mutex<Option<Client>>,
    /// The generation at the key after this publisher's last publication (its own, or the
    /// one it found unchanged); 0 before the first.
    generation: std::sync::atomic::AtomicU64,
    /// The published CAs whose self-signatures verified: each pass reads the set back, and
    /// a CA it held before is not verified again.
    verified: crate::validate::VerifiedSignatures,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("id", &self.id)
            .field("prefix", &self.config.etcd.prefix)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Starts campaigning.
    pub fn start(
        config: Publish,
        shared: Arc<Shared>,
        cancel: CancellationToken,
    ) -> Arc<Publisher> {
        let id = publisher_id();
        let (tx, leading) = watch::channel(false);
        let deposed = Arc::new(tokio::sync::Notify::new());
        shared.metrics.leader(false);
        tokio::spawn(campaign(
            config.clone(),
            id.clone(),
            Election {
                reached: std::sync::atomic::AtomicBool::new(false),
                leading: tx,
                deposed: deposed.clone(),
            },
            shared.clone(),
            cancel,
        ));
        Arc::new(Publisher {
            config,
            id,
            leading,
            deposed,
            client: tokio::sync::Mutex::new(None),
            verified: crate::validate::VerifiedSignatures::default(),
            generation: std::sync::atomic::AtomicU64::new(0),
            shared,
        })
    }

    /// Whether it leads now.
    pub fn is_leader(&self) -> bool {
        *self.leading.borrow()
    }

    /// The generation its last publication left at the key (none yet: `None`).
    pub fn generation(&self) -> Option<u64> {
        Some(self.generation.load(std::sync::atomic::Ordering::Relaxed)).filter(|g| *g > 0)
    }

    /// Tells each change of leadership.
    pub fn leadership(&self) -> watch::Receiver<bool> {
        self.leading.clone()
    }

    /// Writes the set after a pass: the previous set (read now, validated) carried over
    /// with this pass, as the next generation, when it changed; in a transaction that only
    /// succeeds while this publisher leads and nothing else was written since the read.
    /// Also gives the set's overlap CAs by instance and category ([`bundle::kept_of`]), for
    /// this publisher's own folder.
    pub async fn publish(
        &self,
        pass: &PassSet<'_>,
        opts: &StoreOptions,
        evidence: &Evidence,
    ) -> Result<(PublishOutcome, Kept), FleetError> {
        let etcd = &self.config.etcd;
        let mut guard = self.client.lock().await;
        if guard.is_none() {
            *guard = Some(connect(etcd).await?);
        }
        let Some(client) = guard.as_mut() else {
            unreachable!("connected just above");
        };
        let result = self.publish_with(client, pass, opts, evidence).await;
        if matches!(result, Err(FleetError::Etcd { .. })) {
            // Reconnect next time.
            *guard = None;
        }
        let label = match &result {
            Ok((outcome, _)) => outcome.label(),
            Err(FleetError::Bundle(BundleError::TooLarge { .. })) => "too_large",
            Err(_) => "failed",
        };
        self.shared.metrics.published(label);
        result
    }

    async fn publish_with(
        &self,
        client: &mut Client,
        pass: &PassSet<'_>,
        opts: &StoreOptions,
        evidence: &Evidence,
    ) -> Result<(PublishOutcome, Kept), FleetError> {
        let etcd = &self.config.etcd;
        let raw = read_raw(client, etcd).await?;
        let now = time::OffsetDateTime::now_utc();
        let (prev, prev_generation, revision) = match &raw {
            None => (None, 0, 0),
            Some((bytes, rev)) => {
                match bundle::read(
                    bytes,
                    std::time::SystemTime::now(),
                    0,
                    &|_| Vec::new(),
                    &self.verified,
                ) {
                    Ok(p) => {
                        let g = p.generation;
                        (Some(p), g, *rev)
                    }
                    Err(e) => {
                        // A value this publisher cannot continue from (put there by hand):
                        // the next set replaces it, one generation above what it claims.
                        tracing::warn!(key = %etcd.bundle_key(), error = %e, "the published set is not valid; publishing a fresh one over it");
                        (None, loose_generation(bytes), *rev)
                    }
                }
            }
        };
        let next = bundle::next(prev.as_ref(), pass, now, opts, evidence);
        let kept = bundle::kept_of(&next, prev.as_ref());
        if let Some(prev) = &prev
            && bundle::same_set(&next, &prev.bundle)
        {
            self.generation
                .store(prev_generation, std::sync::atomic::Ordering::Relaxed);
            return Ok((PublishOutcome::Unchanged, kept));
        }
        // (Above what this publisher last published too: a set deleted or replaced by hand
        // must not make the generation go back, which subscribers would refuse.)
        let floor = prev_generation.max(self.generation.load(std::sync::atomic::Ordering::Relaxed));
        let (stamped, bytes) = match bundle::stamp(next, floor, &self.id, now) {
            Ok(done) => done,
            Err(e) => {
                if let BundleError::TooLarge { size } = &e {
                    tracing::error!(
                        size,
                        limit = bundle::MAX_BUNDLE_BYTES,
                        "bundle too large: {size} bytes; nothing published"
                    );
                }
                return Err(e.into());
            }
        };
        let unchanged_since_read = if revision == 0 {
            Compare::create_revision(etcd.bundle_key(), CompareOp::Equal, 0)
        } else {
            Compare::mod_revision(etcd.bundle_key(), CompareOp::Equal, revision)
        };
        let txn = Txn::new()
            .when(vec![
                Compare::value(etcd.leader_key(), CompareOp::Equal, self.id.clone()),
                unchanged_since_read,
            ])
            .and_then(vec![TxnOp::put(etcd.bundle_key(), bytes, None)]);
        let resp = client.txn(txn).await.map_err(|e| etcd_error(etcd, e))?;
        if resp.succeeded() {
            self.generation
                .store(stamped.generation, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(
                generation = stamped.generation,
                instances = stamped.instances.len(),
                cas = stamped.cas.len(),
                "published generation {}",
                stamped.generation
            );
            Ok((PublishOutcome::Published(stamped.generation), kept))
        } else {
            // Who holds the leader key, to tell a lost leadership from a set written since
            // the read. Read on its own rather than in the transaction's `else`: the client's
            // `op_responses` panics on a response without its operation, and etcd is a trust
            // boundary too.
            let holder = client.get(etcd.leader_key(), None).await.map(|resp| {
                resp.kvs()
                    .first()
                    .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
            });
            match holder {
                Ok(holder) if holder.as_deref() != Some(self.id.as_str()) => {
                    tracing::warn!(key = %etcd.bundle_key(), leader = ?holder.as_deref().map(crate::text::Untrusted), "publish refused: the leader key is no longer this publisher's; nothing written, and it stops leading");
                    self.deposed.notify_one();
                }
                Ok(_) => {
                    tracing::warn!(key = %etcd.bundle_key(), "publish refused: a set was written since this publisher read it; nothing written");
                }
                Err(e) => {
                    let e = etcd_error(etcd, e);
                    tracing::warn!(key = %etcd.bundle_key(), error = %e, "publish refused, and who holds the leader key could not be read: {e}; nothing written");
                }
            }
            Ok((PublishOutcome::Refused, Kept::new()))
        }
    }
}

/// The `generation` a value claims, read loosely (for a value that is not valid otherwise).
fn loose_generation(bytes: &[u8]) -> u64 {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| v.get("generation")?.as_u64())
        .unwrap_or(0)
}
