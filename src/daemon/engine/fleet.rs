//! The engine's side of the fleet roles (SPEC 14): a publisher polls the cloud only while it
//! leads and publishes each pass's set, and while another leads its folder follows that set;
//! a subscriber's source is the set (see `source::etcd`), and the loop passes whenever it
//! changes.

#[cfg(feature = "etcd")]
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tokio::sync::watch;

use super::Engine;
use crate::config::{Config, Instance};
use crate::sink::PassInput;
use crate::source::{InstanceError, Source};

/// What the loop listens to for the fleet roles.
#[derive(Default)]
pub(in crate::daemon) struct FleetWatch {
    /// A publisher's leadership (true while it leads).
    pub(in crate::daemon) leadership: Option<watch::Receiver<bool>>,
    /// A subscriber's set: each new value and each change of reachability.
    pub(in crate::daemon) subscription: Option<watch::Receiver<Subscription>>,
}

impl FleetWatch {
    /// Marks what the receivers hold now as seen: the pass that comes next sees it, and only
    /// a later change starts another (a publisher that won the election before the first
    /// pass polls once, not twice).
    pub(in crate::daemon) fn seen(&mut self) {
        if let Some(leadership) = self.leadership.as_mut() {
            leadership.borrow_and_update();
        }
        if let Some(subscription) = self.subscription.as_mut() {
            subscription.borrow_and_update();
        }
    }
}

/// What a subscriber's watch tells (nothing without the `etcd` feature).
#[cfg(feature = "etcd")]
pub(in crate::daemon) type Subscription = crate::fleet::etcd::Subscription;
/// What a subscriber's watch tells (nothing without the `etcd` feature).
#[cfg(not(feature = "etcd"))]
pub(in crate::daemon) type Subscription = ();

/// A publisher's handle, or nothing (the `etcd` feature is off, or no `[publish]`).
#[cfg(feature = "etcd")]
pub(super) type PublisherHandle = Option<(
    Arc<crate::fleet::etcd::Publisher>,
    tokio_util::sync::CancellationToken,
)>;
#[cfg(not(feature = "etcd"))]
pub(super) type PublisherHandle = NoPublisher;

/// No publisher: a build without the `etcd` feature.
#[cfg(not(feature = "etcd"))]
pub(super) struct NoPublisher;

/// Starts the publisher `config` asks for.
pub(super) fn start_publisher(
    config: &Config,
    shared: &Arc<crate::status::Shared>,
) -> Result<PublisherHandle, super::DaemonError> {
    #[cfg(feature = "etcd")]
    {
        Ok(config.publish.clone().map(|publish| {
            let cancel = tokio_util::sync::CancellationToken::new();
            let publisher =
                crate::fleet::etcd::Publisher::start(publish, shared.clone(), cancel.clone());
            (publisher, cancel)
        }))
    }
    #[cfg(not(feature = "etcd"))]
    {
        let _ = shared;
        match config.publish {
            None => Ok(NoPublisher),
            Some(_) => Err(crate::source::SourceError::Unsupported(
                "[publish] needs a certsync built with the etcd feature (the Debian package and the image have it)".into(),
            )
            .into()),
        }
    }
}

/// A publisher's view of the set it publishes (SPEC 14), which its folder follows while
/// another publisher leads; nothing without `[publish]` (or the `etcd` feature).
pub(super) fn follower(
    config: &Arc<Config>,
    shared: &Arc<crate::status::Shared>,
) -> Option<Source> {
    #[cfg(feature = "etcd")]
    {
        config.publish.as_ref().map(|publish| {
            Source::Etcd(Box::new(crate::source::etcd::EtcdSource::follower(
                config,
                &publish.etcd,
                shared,
            )))
        })
    }
    #[cfg(not(feature = "etcd"))]
    {
        let _ = (config, shared);
        None
    }
}

impl Engine {
    /// The source of a pass: the config's (the cloud, or a subscriber's set), or for a
    /// `standby` publisher the set it follows.
    pub(super) fn pass_source(&self, standby: bool) -> &Source {
        match &self.follower {
            Some(follower) if standby => follower,
            _ => &self.source,
        }
    }

    /// Whether a standby publisher's pass has a set to follow, or etcd's failure to report
    /// (before the leader's first publication it would only fail for want of a set).
    pub(in crate::daemon) fn follower_ready(&self) -> bool {
        match &self.follower {
            #[cfg(feature = "etcd")]
            Some(Source::Etcd(etcd)) => etcd.has_news(),
            _ => false,
        }
    }

    /// The fleet role for `/status`: a subscriber's applied generation; a publisher's
    /// leadership and the newest generation it published or, standing by, applied.
    pub(super) fn fleet_status(&self) -> Option<crate::status::FleetStatus> {
        #[cfg(feature = "etcd")]
        {
            if let Source::Etcd(etcd) = &self.source {
                return Some(crate::status::FleetStatus {
                    role: "subscriber".into(),
                    prefix: etcd.prefix().to_string(),
                    leading: None,
                    generation: etcd.applied(),
                });
            }
            let (publisher, _) = self.publisher.as_ref()?;
            let followed = match &self.follower {
                Some(Source::Etcd(etcd)) => etcd.applied(),
                _ => None,
            };
            Some(crate::status::FleetStatus {
                role: "publisher".into(),
                prefix: self.config.publish.as_ref()?.etcd.prefix.clone(),
                leading: Some(publisher.is_leader()),
                generation: publisher.generation().max(followed),
            })
        }
        #[cfg(not(feature = "etcd"))]
        None
    }

    /// Whether this certsync is a publisher that leads now.
    pub(in crate::daemon) fn leads(&self) -> bool {
        #[cfg(feature = "etcd")]
        if let Some((publisher, _)) = &self.publisher {
            return publisher.is_leader();
        }
        false
    }

    /// Whether this certsync may poll the cloud now: it is no publisher, or it leads.
    pub(super) fn may_poll(&self) -> bool {
        #[cfg(feature = "etcd")]
        if let Some((publisher, _)) = &self.publisher {
            return publisher.is_leader();
        }
        true
    }

    /// What the loop listens to.
    pub(in crate::daemon) fn fleet_watch(&self) -> FleetWatch {
        FleetWatch {
            #[cfg(feature = "etcd")]
            leadership: self.publisher.as_ref().map(|(p, _)| p.leadership()),
            #[cfg(not(feature = "etcd"))]
            leadership: None,
            // A subscriber's set, or the set a publisher follows while it stands by.
            #[cfg(feature = "etcd")]
            subscription: match (&self.source, &self.follower) {
                (Source::Etcd(etcd), _) | (_, Some(Source::Etcd(etcd))) => Some(etcd.changes()),
                _ => None,
            },
            #[cfg(not(feature = "etcd"))]
            subscription: None,
        }
    }

    /// A new config's publisher: the same one when `[publish]` did not change.
    pub(super) fn reconfigure_publisher(
        &mut self,
        config: &Config,
    ) -> Result<(), super::DaemonError> {
        if config.publish == self.config.publish {
            return Ok(());
        }
        let next = start_publisher(config, &self.shared)?;
        self.step_down();
        self.publisher = next;
        Ok(())
    }

    /// Stops campaigning (a leader revokes its lease, so another takes over at once).
    pub(in crate::daemon) fn step_down(&mut self) {
        #[cfg(feature = "etcd")]
        if let Some((_, cancel)) = self.publisher.take() {
            cancel.cancel();
        }
    }

    /// Before the pass's store (not a dry run), a leader publishes the set: this pass's
    /// synced instances, the previous set's entries of every other instance of the plan.
    /// The published set's overlap CAs then join the input's entries (`kept`), so that this
    /// publisher's own folder holds what it publishes: a new leader continues from the
    /// published set, overlap included.
    pub(super) async fn publish(
        &self,
        input: &mut PassInput,
        failures: &[(Instance, InstanceError)],
    ) {
        #[cfg(feature = "etcd")]
        {
            let Some((publisher, _)) = &self.publisher else {
                return;
            };
            let mut by_id: BTreeMap<&str, Vec<&crate::store::DesiredEntry>> = BTreeMap::new();
            for entry in &input.updates {
                by_id
                    .entry(entry.instance_id.as_str())
                    .or_default()
                    .push(entry);
            }
            let failed_ids: BTreeSet<&str> = failures.iter().map(|(i, _)| i.id.as_str()).collect();
            let mut pass = crate::fleet::bundle::PassSet::default();
            for inst in &self.active {
                match by_id.remove(inst.id.as_str()) {
                    Some(entries) if !failed_ids.contains(inst.id.as_str()) => {
                        pass.synced
                            .push((inst.id.as_str(), inst.name.as_deref(), entries));
                    }
                    _ => {
                        pass.failed.insert(inst.id.as_str());
                    }
                }
            }
            let evidence = self.evidence();
            let kept = match publisher
                .publish(&pass, &self.config.trust.store, &evidence)
                .await
            {
                Ok((_, kept)) => kept,
                Err(e) => {
                    tracing::warn!(error = %e, "publishing the set failed: {e}; subscribers keep the set before");
                    return;
                }
            };
            drop(pass);
            for entry in &mut input.updates {
                if let Some(k) = kept.get(&(entry.instance_id.clone(), entry.category.clone())) {
                    entry.kept = k.clone();
                }
            }
        }
        #[cfg(not(feature = "etcd"))]
        {
            let _ = (input, failures);
        }
    }
}
