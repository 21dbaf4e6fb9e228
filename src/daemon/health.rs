//! Per-instance health across passes: consecutive failures, the retry time (backoff), the
//! last error and the last success.
//!
//! Owns: that record and the questions the scheduler and the status ask of it (which
//! instances are due for a retry, when the next one is). It must not decide what a failure
//! is: the pass reports successes and failures to it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::schedule::Backoff;

/// One instance's record.
#[derive(Clone, Debug, Default)]
pub struct InstanceHealth {
    /// Consecutive failed passes.
    pub failures: u32,
    /// When a failed instance is retried.
    pub next_retry: Option<Instant>,
    /// The last failure, as text.
    pub last_error: Option<String>,
    /// The last time it synced.
    pub last_success: Option<SystemTime>,
}

/// Every instance's record, by id.
#[derive(Debug)]
pub struct Health {
    records: BTreeMap<String, InstanceHealth>,
    backoff: Backoff,
}

impl Health {
    /// No record yet; failures wait `backoff`.
    pub fn new(backoff: Backoff) -> Health {
        Health {
            records: BTreeMap::new(),
            backoff,
        }
    }

    /// A new backoff (a reload); records stay.
    pub fn set_backoff(&mut self, backoff: Backoff) {
        self.backoff = backoff;
    }

    /// Every record, by id.
    pub fn records(&self) -> &BTreeMap<String, InstanceHealth> {
        &self.records
    }

    /// One instance's record.
    pub fn get(&self, id: &str) -> Option<&InstanceHealth> {
        self.records.get(id)
    }

    /// It synced at `now`: failures and retry cleared.
    pub fn succeeded(&mut self, id: &str, now: SystemTime) {
        self.records.insert(
            id.to_string(),
            InstanceHealth {
                last_success: Some(now),
                ..InstanceHealth::default()
            },
        );
    }

    /// It failed with `error`: one more failure, retried after the backoff (with `jitter` in
    /// 0..1). Returns the failures so far and the delay.
    pub fn failed(&mut self, id: &str, error: String, jitter: f64) -> (u32, Duration) {
        let h = self.records.entry(id.to_string()).or_default();
        h.failures = h.failures.saturating_add(1);
        let delay = self.backoff.delay(h.failures, jitter);
        h.next_retry = Some(super::later(delay));
        h.last_error = Some(error);
        (h.failures, delay)
    }

    /// Forgets the instances that left the plan.
    pub fn keep_only(&mut self, ids: &BTreeSet<String>) {
        self.records.retain(|id, _| ids.contains(id));
    }

    /// An instance that left the plan is no longer retried on its own schedule.
    pub fn stop_retries_outside(&mut self, ids: &BTreeSet<&str>) {
        for (id, h) in self.records.iter_mut() {
            if !ids.contains(id.as_str()) {
                h.next_retry = None;
            }
        }
    }

    /// The instances of `plan` whose retry time has come.
    pub fn due(&self, plan: &BTreeSet<&str>, now: Instant) -> BTreeSet<String> {
        self.records
            .iter()
            .filter(|(id, h)| plan.contains(id.as_str()) && h.next_retry.is_some_and(|t| t <= now))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The earliest retry.
    pub fn next_retry(&self) -> Option<Instant> {
        self.records.values().filter_map(|h| h.next_retry).min()
    }

    /// Whether the instance's last sync failed.
    pub fn failing(&self, id: &str) -> bool {
        self.records.get(id).is_some_and(|h| h.failures > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health() -> Health {
        Health::new(Backoff {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(600),
        })
    }

    // Paused time: instants move only when the test says so.
    #[tokio::test(start_paused = true)]
    async fn a_failed_instance_is_due_after_its_backoff_and_doubles_until_it_succeeds() {
        let mut h = health();
        let plan = BTreeSet::from(["a", "b"]);
        let (failures, first) = h.failed("a", "boom".into(), 0.0);
        assert_eq!(failures, 1);
        assert!(h.due(&plan, Instant::now()).is_empty());
        assert_eq!(h.next_retry(), Some(Instant::now() + first));
        tokio::time::advance(first).await;
        assert_eq!(
            h.due(&plan, Instant::now()),
            BTreeSet::from(["a".to_string()])
        );
        let (failures, second) = h.failed("a", "boom".into(), 0.0);
        assert_eq!(failures, 2);
        assert!(second > first, "{second:?} after {first:?}");
        h.succeeded("a", SystemTime::now());
        assert!(!h.failing("a"));
        assert_eq!(h.next_retry(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn an_instance_that_left_the_plan_is_not_retried() {
        let mut h = health();
        h.failed("gone", "boom".into(), 0.0);
        h.stop_retries_outside(&BTreeSet::from(["kept"]));
        assert_eq!(h.next_retry(), None);
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert!(h.due(&BTreeSet::from(["kept"]), Instant::now()).is_empty());
        h.keep_only(&BTreeSet::from(["kept".to_string()]));
        assert!(h.get("gone").is_none());
    }
}
