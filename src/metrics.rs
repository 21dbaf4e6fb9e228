//! The Prometheus metrics of SPEC 10.
//!
//! Owns: the registry and every metric family, with one method per event so callers never
//! spell a metric name. Label values are instance names, categories, hook names and short
//! stable reasons: never a URL, a path with a query, or a secret. Encoding happens only when
//! `/metrics` is scraped.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// Every metric certsync exports.
pub struct Metrics {
    registry: Registry,
    pass: Family<Labels, Counter>,
    pass_duration: Histogram,
    last_pass_success: Gauge,
    pass_interval: Gauge,
    fleet: Fleet,
    last_success: Family<Labels, Gauge>,
    not_after: Family<Labels, Gauge>,
    cert_changes: Family<Labels, Counter>,
    instance_errors: Family<Labels, Counter>,
    api_requests: Family<Labels, Counter>,
    api_throttled: Family<Labels, Counter>,
    endpoint_verified: Family<Labels, Gauge>,
    endpoint_anchor: Family<Labels, Gauge>,
    endpoint_not_after: Family<Labels, Gauge>,
    endpoint_probes: Family<Labels, Counter>,
    hook_runs: Family<Labels, Counter>,
    config_reload: Family<Labels, Counter>,
    store_errors: Family<Labels, Counter>,
    // Label sets of the per-instance gauges, so those of a removed instance can be dropped
    // (Family has no retain).
    // A set: every pass tracks each instance's gauges again, and a list searched per
    // instance made the pass's bookkeeping quadratic in the number of instances.
    gauges: Mutex<HashSet<Labels>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A registry with every family registered (counters get `_total` appended).
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let pass = Family::<Labels, Counter>::default();
        registry.register(
            "certsync_pass",
            "Passes, by result (ok, partial, failed)",
            pass.clone(),
        );
        let pass_duration = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        registry.register(
            "certsync_pass_duration_seconds",
            "Duration of a pass, from the first request to the last hook",
            pass_duration.clone(),
        );
        // The alert on "no successful pass for two intervals" needs a time to compare with: a
        // counter cannot tell how long ago it last moved. Until a pass succeeds it holds the
        // start, so a daemon whose every pass fails is noticed too.
        let last_pass_success = Gauge::default();
        last_pass_success.set(unix_seconds(SystemTime::now()));
        registry.register(
            "certsync_last_pass_success_timestamp_seconds",
            "Unix time at which the last pass that was not failed (ok or partial) ended; the start time until one has",
            last_pass_success.clone(),
        );
        // ... and the interval to compare against (with its jitter: the longest wait between
        // two full passes), so one rule serves every configuration.
        let pass_interval = Gauge::default();
        registry.register(
            "certsync_pass_interval_seconds",
            "The longest wait between two full passes: sync.interval plus sync.jitter",
            pass_interval.clone(),
        );
        let last_success = Family::<Labels, Gauge>::default();
        registry.register(
            "certsync_last_success_timestamp_seconds",
            "Unix time of the instance's last successful sync",
            last_success.clone(),
        );
        let not_after = Family::<Labels, Gauge>::default();
        registry.register(
            "certsync_cert_not_after_timestamp_seconds",
            "Unix time at which the earliest-expiring CA in use for the instance and category expires",
            not_after.clone(),
        );
        let cert_changes = Family::<Labels, Counter>::default();
        registry.register(
            "certsync_cert_changes",
            "Changes written to the instance's files",
            cert_changes.clone(),
        );
        let instance_errors = Family::<Labels, Counter>::default();
        registry.register(
            "certsync_instance_errors",
            "Failed syncs of the instance, by reason",
            instance_errors.clone(),
        );
        let api_requests = Family::<Labels, Counter>::default();
        registry.register(
            "certsync_api_requests",
            "Requests to the cloud, by operation and HTTP status (0: no answer)",
            api_requests.clone(),
        );
        let api_throttled = Family::<Labels, Counter>::default();
        registry.register(
            "certsync_api_throttled",
            "429 answers of the API gateway, by account (each pauses the whole account)",
            api_throttled.clone(),
        );
        let endpoint_verified = Family::<Labels, Gauge>::default();
        registry.register(
            "certsync_endpoint_verified",
            "1 when the endpoint's served chain anchors at a CA certsync wrote for the instance",
            endpoint_verified.clone(),
        );
        let endpoint_anchor = Family::<Labels, Gauge>::default();
        registry.register(
            "certsync_endpoint_anchor_info",
            "The CA (SHA-256) the endpoint's served chain anchors at",
            endpoint_anchor.clone(),
        );
        let endpoint_not_after = Family::<Labels, Gauge>::default();
        registry.register(
            "certsync_endpoint_cert_not_after_timestamp_seconds",
            "Unix time at which the endpoint's served leaf certificate expires",
            endpoint_not_after.clone(),
        );
        let endpoint_probes = Family::<Labels, Counter>::default();
        registry.register(
            "certsync_endpoint_probes",
            "Endpoint probes, by result (verified, unknown_issuer, expired, timeout, ...)",
            endpoint_probes.clone(),
        );
        let hook_runs = Family::<Labels, Counter>::default();
        registry.register(
            "certsync_hook_runs",
            "Hook runs, by result",
            hook_runs.clone(),
        );
        let config_reload = Family::<Labels, Counter>::default();
        registry.register(
            "certsync_config_reload",
            "Configuration reloads, by result (ok, invalid)",
            config_reload.clone(),
        );
        let store_errors = Family::<Labels, Counter>::default();
        registry.register(
            "certsync_store_errors",
            "Failures writing the trust folder, by reason (one per failing file and pass)",
            store_errors.clone(),
        );
        let build_info = Family::<Labels, Gauge>::default();
        build_info
            .get_or_create(&vec![("version", env!("CARGO_PKG_VERSION").to_string())])
            .set(1);
        registry.register(
            "certsync_build_info",
            "Always 1; the version of the running certsync in its label",
            build_info,
        );
        let fleet = Fleet::register(&mut registry);
        Metrics {
            registry,
            last_pass_success,
            pass_interval,
            fleet,
            store_errors,
            pass,
            pass_duration,
            last_success,
            not_after,
            cert_changes,
            instance_errors,
            api_requests,
            api_throttled,
            endpoint_verified,
            endpoint_anchor,
            endpoint_not_after,
            endpoint_probes,
            hook_runs,
            config_reload,
            gauges: Mutex::new(HashSet::new()),
        }
    }

    /// The text exposition for `/metrics`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// A pass ended (now).
    pub fn pass(&self, result: &'static str, duration: Duration) {
        self.pass_ended(result, duration, SystemTime::now());
    }

    /// A publisher leads, or not (SPEC 14).
    pub fn leader(&self, leading: bool) {
        self.fleet
            .leader
            .get_or_create(&Vec::new())
            .set(i64::from(leading));
    }

    /// A publication ended: `ok`, `unchanged`, `refused`, `too_large` or `failed`.
    pub fn published(&self, result: &'static str) {
        self.fleet
            .publish
            .get_or_create(&vec![("result", result.to_string())])
            .inc();
    }

    /// A subscriber's etcd answers, or not.
    pub fn source_up(&self, up: bool) {
        self.fleet
            .source_up
            .get_or_create(&Vec::new())
            .set(i64::from(up));
    }

    /// The generation a subscriber applied.
    pub fn source_generation(&self, generation: u64) {
        self.fleet
            .source_generation
            .get_or_create(&Vec::new())
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
    }

    /// The configuration's `sync.interval` plus `sync.jitter`.
    pub fn pass_interval(&self, longest_wait: Duration) {
        self.pass_interval
            .set(i64::try_from(longest_wait.as_secs()).unwrap_or(i64::MAX));
    }

    fn pass_ended(&self, result: &'static str, duration: Duration, now: SystemTime) {
        self.pass
            .get_or_create(&vec![("result", result.to_string())])
            .inc();
        self.pass_duration.observe(duration.as_secs_f64());
        if result != "failed" {
            self.last_pass_success.set(unix_seconds(now));
        }
    }

    /// An instance synced at `when`.
    pub fn instance_synced(&self, instance: &str, when: SystemTime) {
        let secs = unix_seconds(when);
        let labels = vec![("instance", instance.to_string())];
        self.last_success.get_or_create(&labels).set(secs);
        self.track(labels);
    }

    /// The CA in use for (instance, category) expires at `not_after` (Unix seconds).
    pub fn not_after(&self, instance: &str, category: &str, not_after: i64) {
        let labels = vec![
            ("instance", instance.to_string()),
            ("category", category.to_string()),
        ];
        self.not_after.get_or_create(&labels).set(not_after);
        self.track(labels);
    }

    /// An instance's file changed.
    pub fn cert_changed(&self, instance: &str) {
        self.cert_changes
            .get_or_create(&vec![("instance", instance.to_string())])
            .inc();
    }

    /// An instance failed for `reason`.
    pub fn instance_error(&self, instance: &str, reason: &str) {
        self.instance_errors
            .get_or_create(&vec![
                ("instance", instance.to_string()),
                ("reason", reason.to_string()),
            ])
            .inc();
    }

    /// A request to the cloud answered `status` (0 when it got no answer).
    pub fn api_request(&self, operation: &'static str, status: u16) {
        self.api_requests
            .get_or_create(&vec![
                ("operation", operation.to_string()),
                ("status", status.to_string()),
            ])
            .inc();
    }

    /// The gateway throttled `account` (a 429): the account pauses.
    pub fn api_throttled(&self, account: &str) {
        self.api_throttled
            .get_or_create(&vec![("account", account.to_string())])
            .inc();
    }

    /// An endpoint was probed: `result` is the probe's reason word; `anchor` the CA its chain
    /// anchors at, `was` the one it anchored at before (its info series is dropped);
    /// `not_after` the served leaf's expiry (Unix seconds).
    pub fn endpoint_probed(
        &self,
        instance: &str,
        endpoint: &str,
        result: &'static str,
        anchor: Option<&str>,
        was: Option<&str>,
        not_after: Option<i64>,
    ) {
        let labels = || {
            vec![
                ("instance", instance.to_string()),
                ("endpoint", endpoint.to_string()),
            ]
        };
        self.endpoint_probes
            .get_or_create(&vec![("result", result.to_string())])
            .inc();
        self.endpoint_verified
            .get_or_create(&labels())
            .set(i64::from(result == "verified"));
        if was != anchor
            && let Some(was) = was
        {
            let mut old = labels();
            old.push(("sha256", was.to_string()));
            self.endpoint_anchor.remove(&old);
        }
        if let Some(anchor) = anchor {
            let mut info = labels();
            info.push(("sha256", anchor.to_string()));
            self.endpoint_anchor.get_or_create(&info).set(1);
        }
        match not_after {
            Some(t) => {
                self.endpoint_not_after.get_or_create(&labels()).set(t);
            }
            None => {
                self.endpoint_not_after.remove(&labels());
            }
        }
    }

    /// An endpoint is no longer probed: its series go.
    pub fn endpoint_forget(&self, instance: &str, endpoint: &str, anchor: Option<&str>) {
        let labels = vec![
            ("instance", instance.to_string()),
            ("endpoint", endpoint.to_string()),
        ];
        self.endpoint_verified.remove(&labels);
        self.endpoint_not_after.remove(&labels);
        if let Some(anchor) = anchor {
            let mut info = labels;
            info.push(("sha256", anchor.to_string()));
            self.endpoint_anchor.remove(&info);
        }
    }

    /// A hook ran.
    pub fn hook_run(&self, hook: &str, result: &'static str) {
        self.hook_runs
            .get_or_create(&vec![
                ("hook", hook.to_string()),
                ("result", result.to_string()),
            ])
            .inc();
    }

    /// Writing the trust folder failed for `reason` (a short stable word).
    pub fn store_error(&self, reason: &'static str) {
        self.store_errors
            .get_or_create(&vec![("reason", reason.to_string())])
            .inc();
    }

    /// A configuration reload was tried.
    pub fn config_reload(&self, result: &'static str) {
        self.config_reload
            .get_or_create(&vec![("result", result.to_string())])
            .inc();
    }

    fn track(&self, labels: Labels) {
        let mut gauges = self.gauges.lock().unwrap_or_else(|p| p.into_inner());
        gauges.insert(labels);
    }

    /// Drops the per-instance gauges of instances that left the configuration (and of
    /// categories no longer in use), so a removed instance does not look stale forever.
    pub fn retain(&self, keep: &dyn Fn(&str, Option<&str>) -> bool) {
        let mut gauges = self.gauges.lock().unwrap_or_else(|p| p.into_inner());
        gauges.retain(|labels| {
            let get = |k: &str| {
                labels
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.as_str())
            };
            let kept = keep(get("instance").unwrap_or(""), get("category"));
            if !kept {
                if labels.len() == 1 {
                    self.last_success.remove(labels);
                } else {
                    self.not_after.remove(labels);
                }
            }
            kept
        });
    }
}

/// Whole seconds since the epoch, saturating (0 before it).
fn unix_seconds(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The fleet roles' metrics (SPEC 14). Families without labels, so that a series exists only
/// on a daemon in that role: a cloud-source daemon has no `certsync_source_up` (an alert on
/// it being 0 must not fire there), and only publishers have `certsync_leader`.
struct Fleet {
    leader: Family<Labels, Gauge>,
    publish: Family<Labels, Counter>,
    source_up: Family<Labels, Gauge>,
    source_generation: Family<Labels, Gauge>,
}

impl Fleet {
    fn register(registry: &mut Registry) -> Fleet {
        let fleet = Fleet {
            leader: Family::default(),
            publish: Family::default(),
            source_up: Family::default(),
            source_generation: Family::default(),
        };
        registry.register(
            "certsync_leader",
            "1 while this publisher leads the fleet and polls the cloud, else 0",
            fleet.leader.clone(),
        );
        registry.register(
            "certsync_publish",
            "Publications of the fleet's set, by result (ok, unchanged, refused, too_large, failed)",
            fleet.publish.clone(),
        );
        registry.register(
            "certsync_source_up",
            "1 while this subscriber's etcd answers, else 0",
            fleet.source_up.clone(),
        );
        registry.register(
            "certsync_source_generation",
            "The generation of the fleet's set this subscriber applied",
            fleet.source_generation.clone(),
        );
        fleet
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_those_of_the_spec() {
        let m = Metrics::new();
        m.pass("ok", Duration::from_millis(20));
        m.instance_synced("orders", SystemTime::now());
        m.not_after("orders", "international", 2_000_000_000);
        m.cert_changed("orders");
        m.instance_error("orders", "expired");
        m.api_request("list_ssl_cert_download_addresses", 200);
        m.hook_run("reload", "ok");
        m.config_reload("ok");
        let text = m.encode();
        for name in [
            "certsync_pass_total{result=\"ok\"} 1",
            "certsync_pass_duration_seconds_count 1",
            "certsync_last_success_timestamp_seconds{instance=\"orders\"}",
            "certsync_cert_not_after_timestamp_seconds{instance=\"orders\",category=\"international\"} 2000000000",
            "certsync_cert_changes_total{instance=\"orders\"} 1",
            "certsync_instance_errors_total{instance=\"orders\",reason=\"expired\"} 1",
            "certsync_api_requests_total{operation=\"list_ssl_cert_download_addresses\",status=\"200\"} 1",
            "certsync_hook_runs_total{hook=\"reload\",result=\"ok\"} 1",
            "certsync_config_reload_total{result=\"ok\"} 1",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
        m.retain(&|i, _| i != "orders");
        assert!(
            !m.encode()
                .contains("certsync_last_success_timestamp_seconds{")
        );
    }

    #[test]
    fn build_info_carries_the_crate_version() {
        let text = Metrics::new().encode();
        let line = format!(
            "certsync_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.contains(&line), "{line} missing from\n{text}");
        assert_eq!(text.matches("certsync_build_info{").count(), 1);
    }

    fn last_pass_success(m: &Metrics) -> i64 {
        let text = m.encode();
        text.lines()
            .find_map(|l| l.strip_prefix("certsync_last_pass_success_timestamp_seconds "))
            .unwrap_or_else(|| panic!("no last pass success in\n{text}"))
            .trim()
            .parse()
            .unwrap()
    }

    #[test]
    fn last_pass_success_starts_at_the_start_and_moves_only_with_a_pass_that_did_not_fail() {
        let before = unix_seconds(SystemTime::now());
        let m = Metrics::new();
        let after = unix_seconds(SystemTime::now());
        let start = last_pass_success(&m);
        assert!(
            (before..=after).contains(&start),
            "{start} not in {before}..={after}"
        );

        let at = |secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        let d = Duration::from_millis(5);
        m.pass_ended("failed", d, at(2_000_000_000));
        assert_eq!(last_pass_success(&m), start, "a failed pass is no success");
        m.pass_ended("partial", d, at(2_000_000_100));
        assert_eq!(last_pass_success(&m), 2_000_000_100);
        m.pass_ended("failed", d, at(2_000_000_200));
        assert_eq!(last_pass_success(&m), 2_000_000_100);
        m.pass_ended("ok", d, at(2_000_000_300));
        assert_eq!(last_pass_success(&m), 2_000_000_300);
        assert!(
            m.encode()
                .contains("certsync_pass_total{result=\"failed\"} 2")
        );
    }
}
