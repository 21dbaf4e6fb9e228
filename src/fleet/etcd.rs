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
//! Just over 600 lines on purpose: the publisher's and the subscriber's halves share the
//! client, its errors and its backoff, and each half reads top to bottom against SPEC 14 here.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType, Identity, PutOptions,
    TlsOptions, Txn, TxnOp, WatchOptions,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::bundle::{self, BundleError, PassSet, Published};
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
            shared,
        })
    }

    /// Whether it leads now.
    pub fn is_leader(&self) -> bool {
        *self.leading.borrow()
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
            return Ok((PublishOutcome::Unchanged, kept));
        }
        let (stamped, bytes) = match bundle::stamp(next, prev_generation, &self.id, now) {
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
            .and_then(vec![TxnOp::put(etcd.bundle_key(), bytes, None)])
            // Refused: who holds the leader key, to tell a lost leadership from a set
            // written since the read.
            .or_else(vec![TxnOp::get(etcd.leader_key(), None)]);
        let resp = client.txn(txn).await.map_err(|e| etcd_error(etcd, e))?;
        if resp.succeeded() {
            tracing::info!(
                generation = stamped.generation,
                instances = stamped.instances.len(),
                cas = stamped.cas.len(),
                "published generation {}",
                stamped.generation
            );
            Ok((PublishOutcome::Published(stamped.generation), kept))
        } else {
            let holder = resp.op_responses().into_iter().find_map(|r| match r {
                etcd_client::TxnOpResponse::Get(get) => Some(
                    get.kvs()
                        .first()
                        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()),
                ),
                _ => None,
            });
            match holder {
                Some(holder) if holder.as_deref() != Some(self.id.as_str()) => {
                    tracing::warn!(key = %etcd.bundle_key(), leader = ?holder.as_deref().map(crate::text::Untrusted), "publish refused: the leader key is no longer this publisher's; nothing written, and it stops leading");
                    self.deposed.notify_one();
                }
                _ => {
                    tracing::warn!(key = %etcd.bundle_key(), "publish refused: a set was written since this publisher read it; nothing written");
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

/// The election's ends: what it says (`leading`) and what it is told (`deposed`).
struct Election {
    leading: watch::Sender<bool>,
    deposed: Arc<tokio::sync::Notify>,
}

/// The election: until `cancel`, hold a lease, take the leader key when it is free, keep the
/// lease alive while leading, and say each change on `leading` (and in `certsync_leader`).
async fn campaign(
    config: Publish,
    id: String,
    election: Election,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) {
    let leading = &election.leading;
    let mut backoff = Duration::from_secs(1);
    loop {
        let result = tokio::select! {
            _ = cancel.cancelled() => return,
            r = campaign_once(&config, &id, &election, &shared, &cancel) => r,
        };
        if *leading.borrow() {
            leading.send_replace(false);
            shared.metrics.leader(false);
            tracing::warn!("lost the leadership; polling stops until this publisher leads again");
        }
        match result {
            Ok(()) => backoff = Duration::from_secs(1),
            Err(e) => {
                tracing::warn!(error = %e, "etcd unreachable: {e}; campaigning again");
            }
        }
        if cancel.is_cancelled() {
            return;
        }
        let wait = crate::schedule::with_jitter(backoff, backoff / 4, fastrand::f64());
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One lease's life: campaign with it, lead while it lives. Returns when the lease is lost
/// (or on cancel, after revoking it so another publisher takes over at once).
async fn campaign_once(
    config: &Publish,
    id: &str,
    election: &Election,
    shared: &Shared,
    cancel: &CancellationToken,
) -> Result<(), FleetError> {
    let leading = &election.leading;
    let etcd = &config.etcd;
    let mut client = connect(etcd).await?;
    let ttl = i64::try_from(config.lease_ttl.as_secs()).unwrap_or(i64::MAX);
    let lease = client
        .lease_grant(ttl, None)
        .await
        .map_err(|e| etcd_error(etcd, e))?
        .id();
    let (mut keeper, mut answers) = client
        .lease_keep_alive(lease)
        .await
        .map_err(|e| etcd_error(etcd, e))?;
    let tick = config.lease_ttl / 3;
    let result = async {
        loop {
            // Try to take the key.
            let take = Txn::new()
                .when(vec![Compare::create_revision(
                    etcd.leader_key(),
                    CompareOp::Equal,
                    0,
                )])
                .and_then(vec![TxnOp::put(
                    etcd.leader_key(),
                    id,
                    Some(PutOptions::new().with_lease(lease)),
                )]);
            let resp = client.txn(take).await.map_err(|e| etcd_error(etcd, e))?;
            if resp.succeeded() {
                // (A refusal told before this leadership is not about it.)
                tokio::select! {
                    biased;
                    _ = election.deposed.notified() => {}
                    _ = std::future::ready(()) => {}
                }
                leading.send_replace(true);
                shared.metrics.leader(true);
                tracing::info!(id, lease_ttl = ?config.lease_ttl, "became the leader: this publisher polls the cloud for the fleet");
                // Lead while the lease lives and the leader key is this publisher's.
                loop {
                    tokio::select! {
                        r = async {
                            tokio::time::sleep(tick).await;
                            keep_alive(&mut keeper, &mut answers, etcd).await
                        } => r?,
                        _ = election.deposed.notified() => {
                            // Its lease no longer holds the key: let it go.
                            let _ = client.lease_revoke(lease).await;
                            return Ok(());
                        }
                    }
                }
            }
            // Someone leads: wait for its key to go, keeping our lease alive meanwhile.
            let revision = resp.header().map_or(0, |h| h.revision());
            let mut watch = client
                .watch(
                    etcd.leader_key(),
                    Some(WatchOptions::new().with_start_revision(revision + 1)),
                )
                .await
                .map_err(|e| etcd_error(etcd, e))?;
            loop {
                tokio::select! {
                    message = watch.message() => {
                        let message = message.map_err(|e| etcd_error(etcd, e))?;
                        let Some(message) = message else { break };
                        if message.events().iter().any(|e| e.event_type() == EventType::Delete) {
                            break;
                        }
                    }
                    _ = tokio::time::sleep(tick) => {
                        keep_alive(&mut keeper, &mut answers, etcd).await?;
                    }
                }
            }
        }
    };
    let outcome: Result<(), FleetError> = tokio::select! {
        r = result => r,
        _ = cancel.cancelled() => Ok(()),
    };
    if cancel.is_cancelled() {
        // Step down at once: the next leader need not wait for the lease to expire.
        let _ = tokio::time::timeout(Duration::from_secs(2), client.lease_revoke(lease)).await;
    }
    outcome
}

/// One keep-alive of the lease: an error, or a TTL of 0 (the lease expired), loses it.
async fn keep_alive(
    keeper: &mut etcd_client::LeaseKeeper,
    answers: &mut etcd_client::LeaseKeepAliveStream,
    etcd: &Etcd,
) -> Result<(), FleetError> {
    keeper.keep_alive().await.map_err(|e| etcd_error(etcd, e))?;
    match answers.message().await.map_err(|e| etcd_error(etcd, e))? {
        Some(answer) if answer.ttl() > 0 => Ok(()),
        _ => Err(FleetError::Etcd {
            endpoints: etcd.endpoint_strings().join(","),
            message: "the lease expired".into(),
        }),
    }
}

/// A subscriber's view of `{prefix}/bundle`: the latest value read, and whether etcd answers.
#[derive(Debug, Clone, Default)]
pub struct Subscription {
    /// The latest value and its revision (`None`: none read yet, or the key is absent).
    pub value: Option<Arc<(Vec<u8>, i64)>>,
    /// etcd answered the last attempt.
    pub up: bool,
    /// Why not, while it does not.
    pub error: Option<String>,
}

impl Subscription {
    /// Whether the first read is done: a value, or etcd's answer that there is none, or an
    /// error.
    pub fn first_read_done(&self) -> bool {
        self.value.is_some() || self.up || self.error.is_some()
    }
}

/// Watches `{prefix}/bundle` until `cancel`: each new value, and each change of
/// reachability, is sent on the returned channel (and `certsync_source_up`). While etcd is
/// unreachable it retries with backoff (1 s doubling to 30 s); the last value stays.
pub fn subscribe(
    etcd: Etcd,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) -> watch::Receiver<Subscription> {
    let (tx, rx) = watch::channel(Subscription::default());
    shared.metrics.source_up(false);
    tokio::spawn(async move {
        let mut backoff = Duration::from_secs(1);
        loop {
            let result = tokio::select! {
                _ = cancel.cancelled() => return,
                r = watch_once(&etcd, &tx, &shared, &mut backoff) => r,
            };
            if let Err(e) = result {
                let text = e.to_string();
                if tx.borrow().up || tx.borrow().error.as_deref() != Some(text.as_str()) {
                    tracing::warn!(error = %text, "etcd unreachable: {text}; the files stay as they are, retrying");
                }
                tx.send_modify(|s| {
                    s.up = false;
                    s.error = Some(text);
                });
                shared.metrics.source_up(false);
            }
            let wait = crate::schedule::with_jitter(backoff, backoff / 4, fastrand::f64());
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    });
    rx
}

/// One connection's watch: read the value, then follow its changes until an error.
async fn watch_once(
    etcd: &Etcd,
    tx: &watch::Sender<Subscription>,
    shared: &Shared,
    backoff: &mut Duration,
) -> Result<(), FleetError> {
    let mut client = connect(etcd).await?;
    let resp = client
        .get(etcd.bundle_key(), None)
        .await
        .map_err(|e| etcd_error(etcd, e))?;
    let revision = resp.header().map_or(0, |h| h.revision());
    let value = resp
        .kvs()
        .first()
        .map(|kv| Arc::new((kv.value().to_vec(), kv.mod_revision())));
    let was_down = !tx.borrow().up;
    tx.send_modify(|s| {
        if value.is_some() {
            s.value = value.clone();
        }
        s.up = true;
        s.error = None;
    });
    shared.metrics.source_up(true);
    if was_down {
        tracing::info!(key = %etcd.bundle_key(), "etcd reachable: watching the published set");
    }
    *backoff = Duration::from_secs(1);
    let mut watch = client
        .watch(
            etcd.bundle_key(),
            Some(WatchOptions::new().with_start_revision(revision + 1)),
        )
        .await
        .map_err(|e| etcd_error(etcd, e))?;
    loop {
        let message = watch
            .message()
            .await
            .map_err(|e| etcd_error(etcd, e))?
            .ok_or_else(|| FleetError::Etcd {
                endpoints: etcd.endpoint_strings().join(","),
                message: "the watch ended".into(),
            })?;
        if message.canceled() {
            return Err(FleetError::Etcd {
                endpoints: etcd.endpoint_strings().join(","),
                message: "the watch was cancelled".into(),
            });
        }
        for event in message.events() {
            match (event.event_type(), event.kv()) {
                (EventType::Put, Some(kv)) => {
                    let value = Arc::new((kv.value().to_vec(), kv.mod_revision()));
                    tx.send_modify(|s| s.value = Some(value));
                }
                (EventType::Delete, _) => {
                    tracing::warn!(key = %etcd.bundle_key(), "the published set was deleted; the files stay as they are");
                }
                _ => {}
            }
        }
    }
}

/// The latest value read by a subscription, validated: `Published`, or why it is refused.
pub fn validate(
    value: &(Vec<u8>, i64),
    applied: u64,
    pins: &dyn Fn(&str) -> Vec<[u8; 32]>,
    verified: &crate::validate::VerifiedSignatures,
) -> Result<Published, BundleError> {
    bundle::read(
        &value.0,
        std::time::SystemTime::now(),
        applied,
        pins,
        verified,
    )
}
