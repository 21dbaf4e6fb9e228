//! The engine's side of endpoint verification (SPEC 13): which endpoints each instance has
//! (its own, else its nodes' from ListInstances), what it announces to the verifier, and the
//! evidence a pass hands the store for the rotation overlap (from the verifier in `run`, from
//! probes just before the pass in `once`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::SystemTime;

use time::OffsetDateTime;
use tokio::sync::watch;

use super::Engine;
use crate::config::Instance;
use crate::daemon::verifier::{self, Target, Targets};
use crate::endpoint::Endpoint;
use crate::sink::Evidence;

impl Engine {
    /// An instance's endpoints: its own, else its nodes'.
    pub(super) fn endpoints_of<'a>(&'a self, inst: &'a Instance) -> &'a [Endpoint] {
        if inst.endpoints.is_empty() {
            self.nodes.get(&inst.id).map(Vec::as_slice).unwrap_or(&[])
        } else {
            &inst.endpoints
        }
    }

    /// What the verifier probes of `inst`: its endpoints, if it has any.
    fn target_of(&self, inst: &Instance) -> Option<Target> {
        let endpoints = self.endpoints_of(inst);
        (!endpoints.is_empty()).then(|| Target {
            id: inst.id.clone(),
            name: inst.display_name().to_string(),
            endpoints: endpoints.to_vec(),
        })
    }

    /// Announces every active instance's endpoints (its own, else its nodes') to the
    /// verifier, which probes them at once.
    pub(super) fn announce_targets(&self) {
        let list = self
            .active
            .iter()
            .filter_map(|inst| self.target_of(inst))
            .collect();
        self.targets.send_replace(Arc::new(Targets {
            verify: self.config.verify.clone(),
            list,
        }));
    }

    /// Without a verifier beside the passes (`once`): the instances whose replaced CA is past
    /// `rotation_overlap` and would leave without evidence, whose endpoints are therefore
    /// probed before the pass (unless `verify.enabled = false`).
    pub(super) fn held_without_verifier(&self) -> BTreeSet<String> {
        if self.probing || self.config.verify.enabled == Some(false) {
            return BTreeSet::new();
        }
        self.sinks
            .trust
            .released_by(&Evidence::new(), SystemTime::now())
    }

    /// One round of probes of `ids`' endpoints against their files on disk now, whose
    /// results are the evidence of this pass (`once`, which runs no verifier).
    pub(super) async fn probe_held(&mut self, ids: &BTreeSet<String>) {
        let list: Vec<Target> = self
            .active
            .iter()
            .filter(|inst| ids.contains(&inst.id))
            .filter_map(|inst| self.target_of(inst))
            .collect();
        if list.is_empty() {
            return;
        }
        tracing::info!(
            instances = list.len(),
            "probing the endpoints of the instances whose replaced CA is past rotation_overlap"
        );
        let mut files = verifier::Files::new();
        for entry in self.sinks.trust.current() {
            if ids.contains(&entry.instance_id) {
                files
                    .entry(entry.instance_id)
                    .or_default()
                    .push(entry.path.display().to_string());
            }
        }
        let targets = Targets {
            verify: self.config.verify.clone(),
            list,
        };
        let read_at = OffsetDateTime::now_utc();
        let mut last = BTreeMap::new();
        verifier::round_with(&targets, &files, read_at, &self.shared, &mut last).await;
        let (_, verified) = watch::channel(Arc::new(verifier::verifications(&last)));
        self.verified = verified;
    }

    /// The evidence of the endpoints (SPEC 13), each endpoint's last verification, from the
    /// verifier (`run`) or from the probes before this pass (`once`): for every instance
    /// with endpoints (a CA it replaces this pass stays until an endpoint verified against
    /// the new files, whatever `rotation_overlap` says). Nothing with
    /// `verify.enabled = false`.
    pub(super) fn evidence(&self) -> Evidence {
        if self.config.verify.enabled == Some(false) {
            return Evidence::new();
        }
        let replaced = self.sinks.trust.with_replaced();
        let verified = self.verified.borrow();
        self.active
            .iter()
            .filter_map(|inst| {
                let known = !inst.endpoints.is_empty() || self.nodes.contains_key(&inst.id);
                let seen: Vec<_> = if known {
                    self.endpoints_of(inst)
                        .iter()
                        .map(|e| verified.get(&(inst.id.clone(), e.clone())).cloned())
                        .collect()
                } else if replaced.contains(&inst.id) {
                    // Endpoints not known (its node addresses could not be listed, at a
                    // restart say) for a file that holds a replaced CA: one endpoint not
                    // verified since the rotation, so a ListInstances that fails does not
                    // cost a CA an endpoint may still use.
                    vec![None]
                } else {
                    Vec::new()
                };
                (!seen.is_empty()).then(|| (inst.id.clone(), seen))
            })
            .collect()
    }

    /// The instances whose replaced CA the endpoints no longer keep past `rotation_overlap`
    /// (they all anchor at a current CA now): a pass of them drops it (SPEC 13).
    pub(in crate::daemon) fn released_by_evidence(&self) -> BTreeSet<String> {
        self.sinks
            .trust
            .released_by(&self.evidence(), SystemTime::now())
    }

    /// The node addresses of the configured instances that have no `endpoints` and that
    /// discovery did not list this pass: one ListInstances per account they belong to
    /// (bounded like discovery). A failure keeps the addresses known before.
    pub(super) async fn look_up_nodes(&mut self, listed: &BTreeSet<String>) {
        let missing: BTreeSet<&str> = self
            .config
            .instances
            .iter()
            .filter(|i| i.endpoints.is_empty() && !listed.contains(&i.id))
            .map(|i| i.account.as_str())
            .collect();
        if missing.is_empty() {
            return;
        }
        let accounts: Vec<String> = missing.into_iter().map(str::to_string).collect();
        let deadline = crate::source::cloud::instance_deadline(&self.config);
        match tokio::time::timeout(deadline, self.source.node_addresses(&accounts)).await {
            Ok(Ok(found)) => self.nodes.extend(found),
            Ok(Err(e)) => {
                tracing::warn!(account = %e.account, error = %e.source, "could not list the instances' node addresses; endpoints are probed where they are known");
            }
            Err(_) => {
                tracing::warn!(after = ?deadline, "listing the instances' node addresses did not finish in time");
            }
        }
    }
}
