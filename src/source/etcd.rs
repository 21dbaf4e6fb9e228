//! The fleet subscriber's source (SPEC 14, `[source] kind = "etcd"`): the set a publisher
//! wrote at `{prefix}/bundle`, watched, validated again by every rule of SPEC 6, and handed
//! to the pass like the cloud's answers. Its instances are "discovered" from the set (so a
//! restart with etcd down still knows them, from the state saved with the folder).
//!
//! Owns: the latest value's validation (once per revision), the generation applied (an
//! older one is refused), which of the set's instances this host takes (`[[instance]]`, when
//! given), and what it says while etcd is down or the value is refused. Must not: write
//! anything; a refused or missing value fails every instance of the pass, so their files stay.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::{DiscoveryError, DiscoveryFailure, InstanceError, Outcomes, Synced};
use crate::config::{Config, Etcd, Instance};
use crate::fleet::bundle::Published;
use crate::fleet::etcd::{self as fleet_etcd, Subscription};
use crate::plan::{Listed, Listing};
use crate::status::Shared;
use crate::store::{DesiredEntry, KeptCa};
use crate::validate::VerifiedSignatures;

/// A value's validation: its revision, and the set or why it is refused.
type Checked = (i64, Result<Arc<Published>, String>);

/// A subscription to a fleet's set.
pub struct EtcdSource {
    config: Arc<Config>,
    etcd: Etcd,
    subscription: watch::Receiver<Subscription>,
    /// The highest generation accepted: an older value is refused.
    applied: AtomicU64,
    /// The latest value's validation, by its revision.
    checked: Mutex<Option<Checked>>,
    verified: VerifiedSignatures,
    pins: HashMap<String, Vec<[u8; 32]>>,
    /// `[[instance]]`, when given: only these ids are taken from the set.
    only: Option<BTreeSet<String>>,
    /// A standby publisher's view: while etcd does not answer, the last set read is not
    /// applied (this publisher may have written newer files as the leader since).
    follower: bool,
    shared: Arc<Shared>,
    /// Stops the watch when the source is dropped (a reload builds a new one).
    _watch: DropGuard,
}

impl EtcdSource {
    /// Starts watching `etcd` for `config` (a subscriber: with `[[instance]]`, only those
    /// ids are taken from the set).
    pub fn new(config: &Arc<Config>, etcd: &Etcd, shared: &Arc<Shared>) -> EtcdSource {
        let only = (!config.instances.is_empty())
            .then(|| config.instances.iter().map(|i| i.id.clone()).collect());
        Self::watching(config, etcd, shared, only, false)
    }

    /// The set a standby publisher follows (SPEC 14): the one it would publish, at
    /// `[publish]`'s key. Its discovery takes every instance of the set, as the leader's own
    /// `[[discover]]` found them (a standby does not list the cloud).
    pub fn follower(config: &Arc<Config>, etcd: &Etcd, shared: &Arc<Shared>) -> EtcdSource {
        Self::watching(config, etcd, shared, None, true)
    }

    fn watching(
        config: &Arc<Config>,
        etcd: &Etcd,
        shared: &Arc<Shared>,
        only: Option<BTreeSet<String>>,
        follower: bool,
    ) -> EtcdSource {
        let cancel = CancellationToken::new();
        let subscription = fleet_etcd::subscribe(etcd.clone(), shared.clone(), cancel.clone());
        EtcdSource {
            config: config.clone(),
            etcd: etcd.clone(),
            subscription,
            applied: AtomicU64::new(0),
            checked: Mutex::new(None),
            verified: VerifiedSignatures::default(),
            pins: config
                .instances
                .iter()
                .map(|i| (i.id.clone(), i.pins.clone()))
                .collect(),
            only,
            follower,
            shared: shared.clone(),
            _watch: cancel.drop_guard(),
        }
    }

    /// Takes over what `old` (the source of the config before a reload) applied: a value
    /// older than the generation applied before the reload stays refused.
    pub fn inherit(&self, old: &EtcdSource) {
        if old.etcd.bundle_key() == self.etcd.bundle_key() {
            self.applied
                .fetch_max(old.applied.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }

    /// The fleet's prefix.
    pub fn prefix(&self) -> &str {
        &self.etcd.prefix
    }

    /// The highest generation applied (none yet: `None`).
    pub fn applied(&self) -> Option<u64> {
        Some(self.applied.load(Ordering::Relaxed)).filter(|g| *g > 0)
    }

    /// Tells each new value and each change of reachability.
    pub fn changes(&self) -> watch::Receiver<Subscription> {
        self.subscription.clone()
    }

    /// Whether a pass has something to follow or to report: a value was read, or etcd does
    /// not answer (its files then stay, and the pass says why). Not while etcd answers that
    /// nothing was published yet: the first value wakes the loop.
    pub fn has_news(&self) -> bool {
        let sub = self.subscription.borrow();
        sub.value.is_some() || (!sub.up && sub.error.is_some())
    }

    /// Why the source is not usable now (etcd unreachable, the value refused), for
    /// `/readyz` and `/status`.
    pub fn problem(&self) -> Option<String> {
        let sub = self.subscription.borrow().clone();
        if !sub.up {
            return Some(format!(
                "source etcd {}: {}",
                self.etcd.bundle_key(),
                sub.error.unwrap_or_else(|| "not reached yet".to_string())
            ));
        }
        match self.current() {
            Ok(_) => None,
            Err(e) => Some(format!("source etcd {}: {e}", self.etcd.bundle_key())),
        }
    }

    /// The set a pass may apply: the latest value, validated; for a follower, only while
    /// etcd answers.
    fn usable(&self) -> Result<Arc<Published>, String> {
        if self.follower && !self.subscription.borrow().up {
            return Err(self
                .problem()
                .unwrap_or_else(|| format!("etcd {} does not answer", self.etcd.bundle_key())));
        }
        self.current()
    }

    /// The latest value, validated (once per revision; a refusal is logged once).
    fn current(&self) -> Result<Arc<Published>, String> {
        let (value, up) = {
            let sub = self.subscription.borrow();
            (sub.value.clone(), sub.up)
        };
        let Some(value) = value else {
            return Err(if up {
                format!("nothing is published at {} yet", self.etcd.bundle_key())
            } else {
                format!("no set has been read from {} yet", self.etcd.bundle_key())
            });
        };
        let mut checked = self.checked.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((revision, result)) = checked.as_ref()
            && *revision == value.1
        {
            return result.clone();
        }
        let pins = |id: &str| self.pins.get(id).cloned().unwrap_or_default();
        let applied = self.applied.load(Ordering::Relaxed);
        let result = match fleet_etcd::validate(&value, applied, &pins, &self.verified) {
            Ok(published) => {
                self.applied
                    .fetch_max(published.generation, Ordering::Relaxed);
                self.shared.metrics.source_generation(published.generation);
                tracing::info!(
                    generation = published.generation,
                    instances = published.instances.len(),
                    "applied generation {}",
                    published.generation
                );
                Ok(Arc::new(published))
            }
            Err(e) => {
                tracing::error!(key = %self.etcd.bundle_key(), error = %e, "refusing the bundle at {}: {e}; the files stay as they are", self.etcd.bundle_key());
                Err(format!("the set at revision {} is refused: {e}", value.1))
            }
        };
        *checked = Some((value.1, result.clone()));
        result
    }

    /// The set's instances (those of `[[instance]]`, when given) as one listing.
    // The cloud source's error type, returned once per pass.
    #[allow(clippy::result_large_err)]
    pub fn discover(&self) -> Result<Vec<Listing>, DiscoveryError> {
        let published = self.usable().map_err(|e| DiscoveryError {
            query: 0,
            account: crate::config::DEFAULT_ACCOUNT.to_string(),
            source: DiscoveryFailure::Source(e),
        })?;
        let instances = published
            .instances
            .iter()
            .filter(|i| self.only.as_ref().is_none_or(|only| only.contains(&i.id)))
            .map(|i| Listed {
                id: i.id.clone(),
                name: i.name.clone().unwrap_or_else(|| i.id.clone()),
                ssl: true,
                endpoints: Vec::new(),
            })
            .collect();
        Ok(vec![Listing {
            query: 0,
            account: crate::config::DEFAULT_ACCOUNT.to_string(),
            ssl_only: false,
            instances,
            truncated: false,
        }])
    }

    /// Each instance's entries from the set; a refused or missing set (or an instance it
    /// does not hold) fails the instance, so its files stay.
    pub fn sync(&self, instances: Vec<Instance>) -> Outcomes {
        let current = self.usable();
        instances
            .into_iter()
            .map(|inst| {
                let result = match &current {
                    Err(e) => Err(InstanceError::Source {
                        instance: inst.display_name().to_string(),
                        message: e.clone(),
                    }),
                    Ok(published) => self.entries(&inst, published),
                };
                self.shared.touch();
                (inst, result)
            })
            .collect()
    }

    // The cloud source's error type, one per instance that fails.
    #[allow(clippy::result_large_err)]
    fn entries(&self, inst: &Instance, published: &Published) -> Result<Synced, InstanceError> {
        let name = inst.display_name().to_string();
        let Some(found) = published.instances.iter().find(|i| i.id == inst.id) else {
            return Err(InstanceError::Source {
                instance: name,
                message: format!(
                    "generation {} of the published set does not hold it",
                    published.generation
                ),
            });
        };
        let mut out = Vec::new();
        for e in found.entries.iter().filter(|e| inst.wants(&e.category)) {
            if e.expired {
                return Err(InstanceError::Source {
                    instance: name,
                    message: format!(
                        "generation {} of the published set: the current CA of category {} has expired",
                        published.generation,
                        crate::text::Untrusted(&e.category)
                    ),
                });
            }
            let file_name = super::file_name_of(&self.config, inst, &e.category)?;
            out.push(DesiredEntry {
                instance_id: inst.id.clone(),
                category: e.category.clone(),
                file_name,
                certs: e.current.clone(),
                kept: e
                    .kept
                    .iter()
                    .map(|k| KeptCa {
                        cert: k.cert.clone(),
                        replaced_at: k.replaced_at,
                    })
                    .collect(),
            });
        }
        if out.is_empty() {
            return Err(InstanceError::NoCertificates {
                instance: name,
                listed: found.entries.iter().map(|e| e.category.clone()).collect(),
            });
        }
        Ok(out)
    }
}
