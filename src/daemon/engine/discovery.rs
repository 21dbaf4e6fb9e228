//! The engine's discovery round (SPEC 5.4): `[[discover]]` queries through the pass's source
//! (a standby publisher's: the set it follows), folded into what the engine remembers.

use std::collections::BTreeSet;

use super::Engine;
use crate::plan;
use crate::text::Untrusted;

impl Engine {
    /// Runs discovery (bounded by the instance deadline: a ListInstances that never ends must
    /// not keep the configured instances from their pass, SPEC 5.4) and folds it into what the
    /// daemon remembers; a failed or cut-short round keeps what was found before. A dry run
    /// discovers too but changes nothing the daemon remembers.
    /// Gives the ids this round listed with node addresses, or `None` when it failed (the
    /// pass then proves nothing about what the config produces).
    /// A standby publisher (`standby`) discovers from the set it follows.
    pub(super) async fn discover(
        &mut self,
        dry_run: bool,
        standby: bool,
    ) -> Option<BTreeSet<String>> {
        let source = self.pass_source(standby);
        // (A standby with no `[[discover]]` follows its configured instances only.)
        if self.config.discover.is_empty() && (standby || !source.lists_instances()) {
            return Some(BTreeSet::new());
        }
        let deadline = crate::source::cloud::instance_deadline(&self.config);
        let listings = match tokio::time::timeout(deadline, source.discover(&self.config.discover))
            .await
        {
            Ok(Ok(listings)) => listings,
            Ok(Err(e)) => {
                tracing::warn!(discover = e.query, error = %e.source, "discovery failed; keeping the instances found before");
                return None;
            }
            Err(_) => {
                tracing::warn!(after = ?deadline, "discovery did not finish in time; keeping the instances found before");
                return None;
            }
        };
        let round = plan::fold_discovery(&self.discovered, &listings);
        for (query, id) in &round.skipped {
            tracing::warn!(discover = query, id = %Untrusted(id), "skipping an instance whose id is not [A-Za-z0-9-]{{1,64}}");
        }
        for id in &round.found {
            let name = round.discovered[id].name.as_deref();
            tracing::info!(instance = %id, name = ?name, "discovered an instance");
        }
        for id in &round.vanished {
            let name = self.discovered[id].display_name();
            tracing::info!(
                instance = name,
                id = %id,
                "a discovered instance is no longer listed; its files are kept until nothing has produced them for {} passes",
                crate::sink::UNPRODUCED_PASSES
            );
        }
        let listed: BTreeSet<String> = round.nodes.keys().cloned().collect();
        if dry_run {
            // This pass still syncs what discovery found now.
            let saved = std::mem::replace(&mut self.discovered, round.discovered);
            self.refresh_active();
            self.discovered = saved;
        } else {
            // (A set lists no node addresses: a standby keeps what it knew, so "none" is
            // never mistaken for "unknown" in the evidence.)
            if !standby {
                self.nodes.extend(round.nodes);
            }
            self.discovered = round.discovered;
            self.refresh_active();
        }
        Some(listed)
    }
}
