//! The subscribers' watch of `{prefix}/bundle` (SPEC 14): the latest value and whether etcd
//! answers, with backoff while it does not; and the value's validation.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::WatchOptions;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{FleetError, back_off, connect, etcd_error};
use crate::config::Etcd;
use crate::fleet::bundle::{self, BundleError, Published};
use crate::status::Shared;

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
            if !back_off(&mut backoff, &cancel).await {
                return;
            }
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
        // (Not `event_type()`: etcd-client panics on a type it does not know, and etcd is a
        // trust boundary. A deletion's key-value has version 0; a put's is 1 or more.)
        for kv in message.events().iter().filter_map(|e| e.kv()) {
            if kv.version() > 0 {
                let value = Arc::new((kv.value().to_vec(), kv.mod_revision()));
                tx.send_modify(|s| s.value = Some(value));
            } else {
                tracing::warn!(key = %etcd.bundle_key(), "the published set was deleted; the files stay as they are");
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
