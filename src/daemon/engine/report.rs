//! What a pass reports: the summary lines and log lines made from the store's report and the
//! source's failures, the metrics of the pass, and the expiry warnings. A part of the engine
//! kept apart so the order of a pass stays readable in `engine`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::SystemTime;

use crate::config::Instance;
use crate::sink::{Change, StoreReport};
use crate::source::InstanceError;
use crate::text::Untrusted;

use super::super::status::{expiry_horizon, fmt_time};
use super::super::summary::{LineStatus, PassSummary, SummaryLine};
use super::Engine;

impl Engine {
    /// Turns the store's report into summary lines and log lines. Returns the instances whose
    /// files could not be written (with the error) and every trust-folder error of the pass
    /// (reason, text).
    pub(super) fn summarise(
        &self,
        report: &mut StoreReport,
        summary: &mut PassSummary,
    ) -> (BTreeMap<String, String>, Vec<(&'static str, String)>) {
        let dry_run = summary.dry_run;
        let entries = std::mem::take(&mut report.entries);
        let names: HashMap<&str, &str> = self
            .active
            .iter()
            .map(|i| (i.id.as_str(), i.display_name()))
            .collect();
        let mut store_failed: BTreeMap<String, String> = BTreeMap::new();
        let mut store_errors: Vec<(&'static str, String)> = Vec::new();
        for entry in entries {
            let name = names
                .get(entry.instance_id.as_str())
                .map(|n| n.to_string())
                .unwrap_or_else(|| entry.instance_id.clone());
            match entry.result {
                Ok(change) => {
                    let status = match change {
                        Change::Unchanged => LineStatus::Unchanged,
                        _ => LineStatus::Updated,
                    };
                    if status == LineStatus::Updated {
                        tracing::info!(
                            instance = name.as_str(),
                            category = %Untrusted(&entry.category),
                            path = %entry.path.display(),
                            fingerprint = entry.fingerprints.join(",").as_str(),
                            not_after = %fmt_time(entry.not_after),
                            dry_run,
                            "CA file updated"
                        );
                    }
                    summary.lines.push(SummaryLine {
                        instance: name,
                        category: Some(entry.category),
                        file: Some(entry.path),
                        status,
                        not_after: entry.not_after,
                    });
                }
                Err(err) => {
                    store_errors.push((err.reason(), err.to_string()));
                    let text = format!(
                        "instance {name}: category {}: {}",
                        entry.category,
                        crate::text::error_chain(&err)
                    );
                    store_failed
                        .entry(entry.instance_id.clone())
                        .or_insert_with(|| text.clone());
                    tracing::warn!(instance = name.as_str(), error = %Untrusted(&text), "instance failed; its files are kept as they were");
                    summary.lines.push(SummaryLine {
                        instance: name,
                        category: Some(entry.category),
                        file: Some(entry.path),
                        status: LineStatus::Failed(text),
                        not_after: None,
                    });
                }
            }
        }
        for err in &report.errors {
            tracing::error!(error = %err, "trust folder");
            summary.store_errors.push(err.to_string());
            store_errors.push((err.reason(), err.to_string()));
        }
        for removed in &report.removed {
            if !dry_run {
                tracing::info!(path = %removed.path.display(), reason = %removed.reason, "removed a managed file");
            }
            summary.lines.push(SummaryLine {
                instance: "-".into(),
                category: None,
                file: Some(removed.path.clone()),
                status: LineStatus::Removed,
                not_after: None,
            });
        }
        for waiting in &report.unproduced {
            tracing::warn!(
                path = %waiting.path.display(),
                instance = %waiting.instance_id,
                category = %Untrusted(&waiting.category),
                passes = waiting.passes,
                "no configured or discovered instance produces this file any more; it is kept, and removed after {} passes without it (trust.prune)",
                crate::sink::UNPRODUCED_PASSES
            );
        }
        (store_failed, store_errors)
    }

    /// Failed instances: one line per file the folder still has for them, else one line.
    pub(super) fn summarise_failures(
        &self,
        failures: &[(Instance, InstanceError)],
        summary: &mut PassSummary,
    ) {
        if failures.is_empty() {
            return;
        }
        let current = self.sinks.trust.current();
        let mut files: HashMap<&str, Vec<&crate::sink::EntryState>> = HashMap::new();
        for s in &current {
            files.entry(s.instance_id.as_str()).or_default().push(s);
        }
        for (inst, err) in failures {
            tracing::warn!(instance = inst.display_name(), reason = err.reason(), error = %err, "instance failed; its files are kept as they were");
            let own = files
                .get(inst.id.as_str())
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            for state in own {
                summary.lines.push(SummaryLine {
                    instance: inst.display_name().to_string(),
                    category: Some(state.category.clone()),
                    file: Some(state.path.clone()),
                    status: LineStatus::Failed(err.to_string()),
                    not_after: state.not_after,
                });
            }
            if own.is_empty() {
                summary.lines.push(SummaryLine {
                    instance: inst.display_name().to_string(),
                    category: None,
                    file: None,
                    status: LineStatus::Failed(err.to_string()),
                    not_after: None,
                });
            }
        }
    }

    pub(super) fn record_metrics(
        &self,
        failures: &[(Instance, InstanceError)],
        store_failed: &BTreeMap<String, String>,
        changed: &BTreeSet<String>,
        now: SystemTime,
    ) {
        if !self.publishes {
            return;
        }
        let metrics = &self.shared.metrics;
        let names: HashMap<&str, &str> = self
            .active
            .iter()
            .map(|i| (i.id.as_str(), i.display_name()))
            .collect();
        for id in changed {
            if let Some(name) = names.get(id.as_str()) {
                metrics.cert_changed(name);
            }
        }
        for (inst, err) in failures {
            metrics.instance_error(inst.display_name(), err.reason());
        }
        for id in store_failed.keys() {
            metrics.instance_error(names.get(id.as_str()).copied().unwrap_or(id), "store");
        }
        for (id, health) in self.health.records() {
            if let (Some(name), Some(at)) = (names.get(id.as_str()), health.last_success)
                && at == now
            {
                metrics.instance_synced(name, at);
            }
        }
        let current = self.sinks.trust.current();
        let mut files: HashSet<(&str, &str)> = HashSet::new();
        for state in &current {
            if let Some(name) = names.get(state.instance_id.as_str()) {
                files.insert((name, state.category.as_str()));
                if let Some(not_after) = state.not_after {
                    metrics.not_after(name, &state.category, not_after.unix_timestamp());
                }
            }
        }
        let instances: HashSet<&str> = names.values().copied().collect();
        metrics.retain(&|instance, category| match category {
            Some(c) => files.contains(&(instance, c)),
            None => instances.contains(instance),
        });
    }

    pub(super) fn warn_expiring(&self, now: SystemTime) {
        let now = crate::validate::saturating_datetime(now);
        let horizon = expiry_horizon(now, self.config.sync.expiry_warning);
        for state in self.sinks.trust.current() {
            if let Some(not_after) = state.not_after
                && not_after <= horizon
            {
                tracing::warn!(
                    instance = %state.instance_id,
                    category = %Untrusted(&state.category),
                    path = %state.path.display(),
                    not_after = %fmt_time(Some(not_after)),
                    days_left = (not_after - now).whole_days(),
                    "CA in use expires soon"
                );
            }
        }
    }
}
