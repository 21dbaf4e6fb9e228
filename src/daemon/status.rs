//! Building what the daemon publishes after each pass: the `/status` document with its
//! readiness (SPEC 10) and systemd's one-line `STATUS=`.
//!
//! Owns: the rules of readiness (every instance has a valid CA on disk, no hook is failing,
//! the trust folder could be written and is still the folder certsync opened). It must not
//! change anything: it reads the sub-states.

use std::time::Duration;

use time::OffsetDateTime;

use crate::config::Instance;
use crate::sink::EntryState;
use crate::status::{CategoryStatus, InstanceStatus, OverlapStatus, StatusSnapshot};

use super::health::Health;

/// What a snapshot is made of.
pub struct Inputs<'a> {
    /// The instances of the plan.
    pub active: &'a [Instance],
    /// Their health.
    pub health: &'a Health,
    /// The managed instance files.
    pub current: &'a [EntryState],
    /// The trust folder's problems: the last pass's failures, and whether the path still
    /// names the folder.
    pub store_errors: Vec<String>,
    /// Why the source cannot be used now (a fleet subscriber's etcd is down, its set
    /// refused).
    pub source_problem: Option<String>,
    /// Hooks waiting for a retry after a failure.
    pub failing_hooks: Vec<String>,
    /// `sync.expiry_warning`.
    pub expiry_warning: Duration,
    /// The fleet role, if any.
    pub fleet: Option<crate::status::FleetStatus>,
}

/// The `/status` document and readiness at `now`.
pub fn snapshot(inputs: Inputs<'_>, now: OffsetDateTime) -> StatusSnapshot {
    let horizon = expiry_horizon(now, inputs.expiry_warning);
    let mut snapshot = StatusSnapshot {
        last_pass: Some(fmt_time(Some(now))),
        ..StatusSnapshot::default()
    };
    // The files by instance, in one walk (the plan may hold thousands of instances).
    let mut files: std::collections::HashMap<&str, Vec<&EntryState>> =
        std::collections::HashMap::new();
    for s in inputs.current {
        files.entry(s.instance_id.as_str()).or_default().push(s);
    }
    for inst in inputs.active {
        let health = inputs.health.get(&inst.id).cloned().unwrap_or_default();
        let own = files
            .get(inst.id.as_str())
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let categories: Vec<CategoryStatus> = own
            .iter()
            .map(|s| CategoryStatus {
                category: s.category.clone(),
                file: s.path.display().to_string(),
                fingerprints: s.fingerprints.clone(),
                not_after: s.not_after.map(|t| fmt_time(Some(t))),
                days_left: s.not_after.map(|t| (t - now).whole_days()),
                expiring: s.not_after.is_some_and(|t| t <= horizon),
                overlap: s
                    .overlap
                    .iter()
                    .map(|o| OverlapStatus {
                        sha256: o.sha256.clone(),
                        replaced_at: fmt_time(Some(o.replaced_at)),
                        leaves_at: fmt_time(Some(o.leaves_at)),
                        leaves_by: fmt_time(Some(o.leaves_by)),
                        kept_by_endpoints: now >= o.leaves_at && now < o.leaves_by,
                    })
                    .collect(),
            })
            .collect();
        let valid = own.iter().any(|s| s.not_after.is_some_and(|t| t > now));
        if !valid {
            snapshot.reasons.push(match &health.last_error {
                Some(e) => format!("instance {}: no valid CA on disk: {e}", inst.display_name()),
                None => format!("instance {}: no valid CA on disk", inst.display_name()),
            });
        }
        snapshot.instances.push(InstanceStatus {
            id: inst.id.clone(),
            name: inst.display_name().to_string(),
            categories,
            last_success: health
                .last_success
                .map(|t| fmt_time(Some(crate::validate::saturating_datetime(t)))),
            last_error: health.last_error.clone(),
            failures: health.failures,
        });
    }
    let mut store_errors = inputs.store_errors;
    store_errors.dedup();
    for err in &store_errors {
        snapshot.reasons.push(format!("trust folder: {err}"));
    }
    snapshot.store_errors = store_errors;
    if let Some(problem) = inputs.source_problem {
        snapshot.reasons.push(problem.clone());
        snapshot.source_errors.push(problem);
    }
    for name in inputs.failing_hooks {
        snapshot.reasons.push(format!("hook {name} is failing"));
        snapshot.failing_hooks.push(name);
    }
    snapshot.ready = snapshot.reasons.is_empty();
    snapshot.fleet = inputs.fleet;
    snapshot
}

/// One line for systemd's `STATUS=`: instances synced, failing, and failing hooks.
pub fn line(active: &[Instance], health: &Health, failing_hooks: usize) -> String {
    let total = active.len();
    let failing = active.iter().filter(|i| health.failing(&i.id)).count();
    let mut line = format!("{} of {total} instances synced", total - failing);
    if failing > 0 {
        line.push_str(&format!(", {failing} failing"));
    }
    if failing_hooks > 0 {
        line.push_str(&format!(", {failing_hooks} hook(s) failing"));
    }
    line
}

/// `now + warning`, saturating (config caps durations, but the arithmetic must not panic).
pub fn expiry_horizon(now: OffsetDateTime, warning: Duration) -> OffsetDateTime {
    time::Duration::try_from(warning)
        .ok()
        .and_then(|w| now.checked_add(w))
        .unwrap_or(time::PrimitiveDateTime::MAX.assume_utc())
}

/// RFC 3339, or `-`.
pub fn fmt_time(t: Option<OffsetDateTime>) -> String {
    t.map(crate::cert::rfc3339).unwrap_or_else(|| "-".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::Backoff;

    fn inst(id: &str) -> Instance {
        Instance::discovered(id, None)
    }

    fn file(id: &str, not_after: OffsetDateTime) -> EntryState {
        EntryState {
            instance_id: id.into(),
            category: "international".into(),
            path: format!("/t/{id}.crt").into(),
            fingerprints: vec!["ab".into()],
            not_after: Some(not_after),
            overlap: Vec::new(),
        }
    }

    #[test]
    fn ready_only_with_a_valid_ca_for_every_instance_no_failing_hook_and_a_writable_folder() {
        let now = time::macros::datetime!(2030-01-01 00:00 UTC);
        let health = Health::new(Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(2),
        });
        let active = [inst("a"), inst("b")];
        let good = [
            file("a", now + time::Duration::days(100)),
            file("b", now + time::Duration::days(10)),
        ];
        let ready = snapshot(
            Inputs {
                active: &active,
                health: &health,
                current: &good,
                store_errors: vec![],
                source_problem: None,
                fleet: None,
                failing_hooks: vec![],
                expiry_warning: Duration::from_secs(30 * 86400),
            },
            now,
        );
        assert!(ready.ready, "{:?}", ready.reasons);
        assert!(ready.instances[1].categories[0].expiring);
        assert!(!ready.instances[0].categories[0].expiring);
        assert_eq!(ready.instances[1].categories[0].days_left, Some(10));

        let not_ready = snapshot(
            Inputs {
                active: &active,
                health: &health,
                current: &good[..1],
                store_errors: vec!["/t/x: is a symlink".into(), "/t/x: is a symlink".into()],
                source_problem: None,
                fleet: None,
                failing_hooks: vec!["reload".into()],
                expiry_warning: Duration::from_secs(0),
            },
            now,
        );
        assert!(!not_ready.ready);
        assert_eq!(
            not_ready.reasons,
            [
                "instance b: no valid CA on disk",
                "trust folder: /t/x: is a symlink",
                "hook reload is failing"
            ]
        );
        assert_eq!(not_ready.store_errors.len(), 1);
    }

    #[test]
    fn a_ca_valid_until_9999_has_its_days_and_no_overflow() {
        let now = time::macros::datetime!(2026-12-01 00:00 UTC);
        let far = time::macros::datetime!(9999-12-31 23:59:59 UTC);
        let health = Health::new(Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(2),
        });
        let s = snapshot(
            Inputs {
                active: &[inst("a")],
                health: &health,
                current: &[file("a", far)],
                store_errors: vec![],
                source_problem: None,
                fleet: None,
                failing_hooks: vec![],
                expiry_warning: Duration::MAX,
            },
            now,
        );
        assert!(s.ready);
        assert!(
            s.instances[0].categories[0].expiring,
            "an unbounded warning covers it"
        );
        assert_eq!(
            s.instances[0].categories[0].not_after.as_deref(),
            Some("9999-12-31T23:59:59Z")
        );
    }
}
