//! The verifier (SPEC 13): a task of its own that probes every endpoint of every instance and
//! checks the served chain against the instance's CAs as written on disk.
//!
//! Owns: when rounds run (right after each pass, which the engine announces with the
//! instances' endpoints, and every `verify.interval` plus jitter), their bounded concurrency,
//! the last result per endpoint, the log line on every change of an endpoint's state, and
//! what it publishes (metrics, `/status`, `/readyz` with `verify.required`). Must not: delay
//! or block a pass (it only reads the files the pass wrote), or write anything.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures_util::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::Verify;
use crate::endpoint::Endpoint;
use crate::sink::Verified;
use crate::status::{EndpointStatus, Endpoints, Shared};
use crate::verify::{Anchor, Outcome, Probed, probe};

/// Probes in flight at once.
pub const PROBE_CONCURRENCY: usize = 16;

/// One instance to verify: where its database serves TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Its id (its files are found by it in the published status).
    pub id: String,
    /// Its display name.
    pub name: String,
    /// Its endpoints: configured, else listed by ListInstances.
    pub endpoints: Vec<Endpoint>,
}

/// What the engine announces after each pass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Targets {
    /// `[verify]` of the config in use.
    pub verify: Verify,
    /// Every instance with endpoints.
    pub list: Vec<Target>,
}

impl Targets {
    /// Whether probes run: `verify.enabled`, else whether any instance has endpoints.
    pub fn enabled(&self) -> bool {
        self.verify
            .enabled
            .unwrap_or_else(|| self.list.iter().any(|t| !t.endpoints.is_empty()))
    }
}

/// One endpoint's last result, with the instance's name its metrics are labelled with, and
/// its last successful verification (which outlives failed probes after it).
#[derive(Clone, Debug)]
pub struct Last {
    probed: Probed,
    name: String,
    verified: Option<Verified>,
}

/// What the verifier publishes after each round for the rotation overlap (SPEC 13): each
/// endpoint's last successful verification, by instance id and endpoint. An endpoint
/// missing was never verified (or is no longer probed).
pub type Verifications = BTreeMap<(String, Endpoint), Verified>;

/// Runs rounds until `cancel`: one as soon as the engine announces targets (after each
/// pass), and one every `verify.interval` plus jitter. After each round it sends what was
/// verified on `verified`.
pub async fn run(
    mut targets: watch::Receiver<Arc<Targets>>,
    verified: watch::Sender<Arc<Verifications>>,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) {
    let mut last: BTreeMap<(String, Endpoint), Last> = BTreeMap::new();
    // Nothing is probed before the first pass announced its instances.
    let mut due: Option<tokio::time::Instant> = None;
    loop {
        let wait = async {
            match due {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            changed = targets.changed() => {
                if changed.is_err() {
                    // The engine is gone: the daemon is stopping.
                    return;
                }
            }
            _ = wait => {}
        }
        let current = targets.borrow_and_update().clone();
        if !current.enabled() {
            forget_all(&mut last, &shared);
            shared.publish_endpoints(Endpoints::default());
            verified.send_replace(Arc::default());
            due = None;
            continue;
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = round(&current, &shared, &mut last) => {}
        }
        verified.send_replace(Arc::new(verifications(&last)));
        let interval = crate::schedule::with_jitter(
            current.verify.interval,
            current.verify.interval / crate::config::JITTER_DIVISOR,
            fastrand::f64(),
        );
        due = Some(tokio::time::Instant::now() + interval);
    }
}

/// Probes every endpoint of `targets` once, `PROBE_CONCURRENCY` at a time, against the
/// instance files the daemon last published, and publishes.
pub async fn round(
    targets: &Targets,
    shared: &Shared,
    last: &mut BTreeMap<(String, Endpoint), Last>,
) {
    // Before the files are read: a verification at or after a rotation saw its files.
    let read_at = time::OffsetDateTime::now_utc();
    let snapshot = shared.snapshot();
    let files: Files = snapshot
        .instances
        .iter()
        .map(|i| {
            (
                i.id.clone(),
                i.categories.iter().map(|c| c.file.clone()).collect(),
            )
        })
        .collect();
    round_with(targets, &files, read_at, shared, last).await;
}

/// Each instance's files (paths), by id.
pub type Files = BTreeMap<String, Vec<String>>;

/// [`round`] against `files`, read at `read_at`.
pub async fn round_with(
    targets: &Targets,
    files: &Files,
    read_at: time::OffsetDateTime,
    shared: &Shared,
    last: &mut BTreeMap<(String, Endpoint), Last>,
) {
    let verify = &targets.verify;
    let (timeout, check_hostname) = (verify.timeout, verify.check_hostname);
    // Owned jobs: the round's future is spawned, and a stream of futures borrowing from it
    // would not be `Send` for every lifetime.
    let jobs: Vec<(Target, Endpoint, Arc<Vec<Anchor>>)> = targets
        .list
        .iter()
        .flat_map(|t| {
            let anchors = Arc::new(anchors_on_disk(
                files.get(t.id.as_str()).map(Vec::as_slice).unwrap_or(&[]),
            ));
            t.endpoints
                .iter()
                .map(move |e| (t.clone(), e.clone(), anchors.clone()))
        })
        .collect();
    let results: Vec<(Target, Endpoint, Probed)> = futures_util::stream::iter(jobs)
        .map(|(target, endpoint, anchors)| async move {
            let probed = probe(&endpoint, &anchors, timeout, check_hostname).await;
            (target, endpoint, probed)
        })
        .buffered(PROBE_CONCURRENCY)
        .collect()
        .await;

    let now = time::OffsetDateTime::now_utc();
    let mut seen: BTreeMap<(String, Endpoint), ()> = BTreeMap::new();
    let mut list = Vec::with_capacity(results.len());
    for (target, endpoint, probed) in results {
        let key = (target.id.clone(), endpoint.clone());
        let before = last.get(&key);
        log_change(&target, &endpoint, before.map(|l| &l.probed), &probed);
        shared.metrics.endpoint_probed(
            &target.name,
            &endpoint.to_string(),
            probed.outcome.reason(),
            probed.anchor.as_deref(),
            before.and_then(|l| l.probed.anchor.as_deref()),
            probed.leaf_not_after.map(|t| t.unix_timestamp()),
        );
        list.push(EndpointStatus {
            instance: target.id.clone(),
            name: target.name.clone(),
            endpoint: endpoint.to_string(),
            verified: probed.outcome == Outcome::Verified,
            result: probed.outcome.reason().to_string(),
            detail: probed.outcome.to_string(),
            anchor: probed.anchor.clone(),
            leaf_not_after: probed.leaf_not_after.map(crate::cert::rfc3339),
            probed_at: crate::cert::rfc3339(now),
        });
        seen.insert(key.clone(), ());
        let verified = match (&probed.outcome, &probed.anchor) {
            (Outcome::Verified, Some(anchor)) => Some(Verified {
                at: read_at,
                anchor: anchor.clone(),
            }),
            _ => before.and_then(|l| l.verified.clone()),
        };
        last.insert(
            key,
            Last {
                probed,
                name: target.name.clone(),
                verified,
            },
        );
    }
    // Endpoints no longer probed (the instance or its node went) lose their series.
    let gone: Vec<(String, Endpoint)> = last
        .keys()
        .filter(|k| !seen.contains_key(*k))
        .cloned()
        .collect();
    for key in gone {
        if let Some(old) = last.remove(&key) {
            forget(&key, &old, shared);
        }
    }
    shared.publish_endpoints(Endpoints {
        required: verify.required,
        list,
    });
}

/// Each endpoint's last successful verification.
pub fn verifications(last: &BTreeMap<(String, Endpoint), Last>) -> Verifications {
    last.iter()
        .filter_map(|(key, l)| Some((key.clone(), l.verified.clone()?)))
        .collect()
}

/// The CAs in the instance's files as they are on disk now (current and overlap), each once.
/// A file that cannot be read or parsed gives nothing (its instance then shows `no_ca` or
/// `unknown_issuer`, which is what a client reading it would get).
fn anchors_on_disk(files: &[String]) -> Vec<Anchor> {
    let certs: Vec<crate::cert::Cert> = files
        .iter()
        .filter_map(|file| {
            crate::files::read_capped(std::path::Path::new(file), crate::files::MAX_VALUE_FILE).ok()
        })
        .filter_map(|bytes| crate::cert::read_certs_lenient(&bytes).ok())
        .flatten()
        .collect();
    crate::verify::anchors(&certs)
}

/// Logs an endpoint's new state when it differs from the last: an endpoint anchored at no
/// CA certsync wrote (the API and the database disagree) is an error.
fn log_change(target: &Target, endpoint: &Endpoint, before: Option<&Probed>, now: &Probed) {
    let same = before.is_some_and(|b| b.outcome == now.outcome && b.anchor == now.anchor);
    if same {
        return;
    }
    let name = target.name.as_str();
    let endpoint = endpoint.to_string();
    match &now.outcome {
        Outcome::Verified => tracing::info!(
            instance = name,
            endpoint = %endpoint,
            anchor = now.anchor.as_deref().unwrap_or(""),
            "endpoint verified: its chain anchors at a CA certsync wrote"
        ),
        Outcome::UnknownIssuer => tracing::error!(
            instance = name,
            endpoint = %endpoint,
            "endpoint disagrees with the trust folder: {}; clients trusting the instance's file cannot connect",
            now.outcome
        ),
        other => tracing::warn!(
            instance = name,
            endpoint = %endpoint,
            result = other.reason(),
            "endpoint not verified: {other}"
        ),
    }
}

fn forget(key: &(String, Endpoint), old: &Last, shared: &Shared) {
    shared
        .metrics
        .endpoint_forget(&old.name, &key.1.to_string(), old.probed.anchor.as_deref());
}

fn forget_all(last: &mut BTreeMap<(String, Endpoint), Last>, shared: &Shared) {
    for (key, old) in std::mem::take(last) {
        forget(&key, &old, shared);
    }
}
