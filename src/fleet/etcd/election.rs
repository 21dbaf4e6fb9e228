//! The publishers' election (SPEC 14): each holds a lease and puts `{prefix}/leader` bound to
//! it only if the key does not exist; the others watch the key and try again when it is
//! deleted. A leader lets go when its lease cannot be kept alive, or when a publication
//! finds the key holding another id.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp, WatchOptions};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{FleetError, back_off, connect, etcd_error};
use crate::config::{Etcd, Publish};
use crate::status::Shared;

/// The election's ends: what it says (`leading`) and what it is told (`deposed`).
pub(super) struct Election {
    /// Told when a round got a lease (etcd answers), to reset the backoff.
    pub(super) reached: AtomicBool,
    pub(super) leading: watch::Sender<bool>,
    pub(super) deposed: Arc<tokio::sync::Notify>,
}

/// The election: until `cancel`, hold a lease, take the leader key when it is free, keep the
/// lease alive while leading, and say each change on `leading` (and in `certsync_leader`).
pub(super) async fn campaign(
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
        if election.reached.swap(false, Ordering::Relaxed) {
            backoff = Duration::from_secs(1);
        }
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
        if !back_off(&mut backoff, &cancel).await {
            return;
        }
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
    // etcd answers: after a later failure, campaign again without the backoff of the outage
    // before (a takeover must not wait 30 s on top of `lease_ttl`).
    election.reached.store(true, Ordering::Relaxed);
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
                            // Its lease no longer holds the key: stop leading at once, then
                            // let the lease go.
                            leading.send_replace(false);
                            shared.metrics.leader(false);
                            tracing::warn!("lost the leadership; polling stops until this publisher leads again");
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
                        // (Not `event_type()`, which panics on a type etcd-client does not
                        // know: a deletion's key-value has version 0.)
                        if message
                            .events()
                            .iter()
                            .any(|e| e.kv().is_none_or(|kv| kv.version() == 0))
                        {
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
