//! The shipped alerts and dashboard against real programs (issue 13, parts 3 and 4):
//! `promtool` checks `deploy/prometheus/certsync-rules.yaml` and runs its unit tests; a real
//! Prometheus (Debian's `prometheus`) scrapes a `certsync run` that syncs from the simulator,
//! with the rules loaded (a copy whose `for:` durations are cut to seconds, so the shipped
//! file stays realistic); every query of `deploy/grafana/certsync-dashboard.json` must return
//! data from it; and a fault injected through the simulator's control API makes
//! `CertsyncInstanceFailing` fire for that instance (and, for an endpoint nobody serves,
//! `CertsyncEndpointUnverified`).
//!
//! Not fired here: `CertsyncSourceDown` (no certsync exports `certsync_source_up` before the
//! subscribers of SPEC 14), `CertsyncNoSuccessfulPass` (two intervals of an hour),
//! `CertsyncHookFailing` and `CertsyncCAExpiringSoon`: promtool's unit tests cover them.
//!
//! Missing programs fail the test with what to install: CI installs them
//! (`ci/install-test-deps.sh`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::process::Signal;
use serde_json::{Value, json};

use crate::common::*;

const JOB: &str = "certsync-test";
/// What the test copy of the rules waits instead of each alert's `for:`.
const SHORT_FOR: &str = "2s";
/// `$__rate_interval` in the dashboard's queries: Prometheus scrapes every second here.
const RATE_INTERVAL: &str = "30s";
const DEADLINE: Duration = Duration::from_secs(60);

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path)
}

/// `name` on PATH, or a failure that says how to get it.
fn program(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed: this test drives a real Prometheus; install Debian's \
                 `prometheus` package (ci/install-test-deps.sh does)"
            )
        })
}

fn promtool(promtool: &Path, args: &[&std::ffi::OsStr]) -> String {
    let out = std::process::Command::new(promtool)
        .args(args)
        .output()
        .unwrap();
    let text = all_output(&out);
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

/// The rules with every `for:` cut to [`SHORT_FOR`]; fails unless each alert had one.
fn shortened(rules: &str) -> String {
    let alerts = rules
        .lines()
        .filter(|l| l.trim_start().starts_with("- alert:"))
        .count();
    let mut cut = 0;
    let mut out = String::new();
    for line in rules.lines() {
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("for: ")
            && !rest.contains(' ')
        {
            cut += 1;
            let indent = &line[..line.len() - trimmed.len()];
            out.push_str(&format!("{indent}for: {SHORT_FOR}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(alerts > 0 && cut == alerts, "{alerts} alerts, {cut} `for:`");
    out
}

/// The alert names of the rules file, in order.
fn alert_names(rules: &str) -> Vec<String> {
    rules
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("- alert:"))
        .map(|n| n.trim().to_string())
        .collect()
}

/// The simulator's control API over its TLS listener (README "Control API").
struct SimControl {
    client: reqwest::Client,
    endpoint: String,
}

impl SimControl {
    fn new(h: &Harness) -> SimControl {
        certsync::cloud::http::install_crypto_provider();
        let ca = reqwest::Certificate::from_pem(&std::fs::read(h.sim.ca_file()).unwrap()).unwrap();
        SimControl {
            client: reqwest::Client::builder()
                .tls_certs_merge([ca])
                .build()
                .unwrap(),
            endpoint: h.sim.endpoint().trim_end_matches('/').to_string(),
        }
    }

    /// `PUT /_sim/instances/{id}/fault`.
    async fn fault(&self, id: &str, fault: Value) {
        let response = self
            .client
            .put(format!("{}/_sim/instances/{id}/fault", self.endpoint))
            .header("content-type", "application/json")
            .body(fault.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 204, "fault {fault} refused");
    }
}

/// A Prometheus on loopback, its data in a temporary folder.
struct Prometheus {
    process: Running,
    port: u16,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Scrapes `target` every second as job [`JOB`], evaluating `rules` every second.
    async fn start(program: &Path, target: &str, rules: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let rules_file = dir.path().join("rules.yaml");
        std::fs::write(&rules_file, rules).unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {}\n\
                 scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets: [\"{target}\"]\n",
                rules_file.display()
            ),
        )
        .unwrap();
        let port = free_port();
        let mut cmd = tokio::process::Command::new(program);
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"));
        let prometheus = Prometheus {
            process: Running::spawn(cmd),
            port,
            client: reqwest::Client::new(),
            _dir: dir,
        };
        let client = &prometheus.client;
        prometheus
            .until("Prometheus to be ready", move || async move {
                let url = format!("http://127.0.0.1:{port}/-/ready");
                matches!(client.get(url).send().await, Ok(r) if r.status().is_success())
                    .then_some(())
            })
            .await;
        prometheus
    }

    /// GET an API path with `params`: its `data`, once the answer is `success`.
    async fn api(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let url =
            url::Url::parse_with_params(&format!("http://127.0.0.1:{}{path}", self.port), params)
                .unwrap();
        let text = self
            .client
            .get(url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let body: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"));
        assert_eq!(body["status"], "success", "{path} {params:?}: {body}");
        body["data"].clone()
    }

    /// An instant query's result vector.
    async fn query(&self, expr: &str) -> Vec<Value> {
        let data = self.api("/api/v1/query", &[("query", expr)]).await;
        assert_eq!(data["resultType"], "vector", "{expr}: {data}");
        data["result"].as_array().unwrap().clone()
    }

    /// The active alerts (pending or firing).
    async fn alerts(&self) -> Vec<Value> {
        self.api("/api/v1/alerts", &[]).await["alerts"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// Polls `probe` until it gives a value, failing after [`DEADLINE`] with `what` and the
    /// Prometheus log.
    async fn until<T, F, Fut>(&self, what: &str, mut probe: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            if let Some(value) = probe().await {
                return value;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {what} within {DEADLINE:?}; Prometheus log:\n{}",
                self.process.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Whether a sample's value (`[time, "value"]`) is a number, not NaN or infinite.
fn finite(sample: &Value) -> bool {
    sample["value"][1]
        .as_str()
        .and_then(|v| v.parse::<f64>().ok())
        .is_some_and(f64::is_finite)
}

/// Every query of the dashboard: (panel title, expression), rows' nested panels included.
fn panel_queries(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for panel in panels.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("").to_string();
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().unwrap_or_else(|| {
                    panic!("panel {title:?} has a target without an expr: {target}")
                });
                out.push((title.clone(), expr.to_string()));
            }
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// The dashboard's Grafana variables replaced by this test's values.
fn concrete(expr: &str, target: &str) -> String {
    let expr = expr
        .replace("$__rate_interval", RATE_INTERVAL)
        .replace("$job", JOB)
        .replace("$instance", target);
    assert!(!expr.contains('$'), "a Grafana variable is left in {expr}");
    expr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_certsync_every_dashboard_query_has_data_and_a_failing_instance_fires() {
    let prometheus = program("prometheus");
    let tool = program("promtool");

    // (a) The shipped files, as an operator checks them.
    let rules_path = deploy("prometheus/certsync-rules.yaml");
    let out = promtool(
        &tool,
        &["check".as_ref(), "rules".as_ref(), rules_path.as_os_str()],
    );
    let rules = std::fs::read_to_string(&rules_path).unwrap();
    let names = alert_names(&rules);
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", names.len())),
        "{out}"
    );
    let tests_path = deploy("prometheus/certsync-rules.test.yaml");
    let out = promtool(
        &tool,
        &["test".as_ref(), "rules".as_ref(), tests_path.as_os_str()],
    );
    assert!(out.contains("SUCCESS"), "{out}");
    let tests = std::fs::read_to_string(&tests_path).unwrap();
    // Each alert has a unit test where it does not fire and one where it does.
    for name in &names {
        let at = format!("alertname: {name}\n        exp_alerts:");
        assert!(
            tests.contains(&format!("{at} []\n")) && tests.contains(&format!("{at}\n          - ")),
            "{name} lacks a promtool unit test firing or not firing"
        );
    }
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(deploy("grafana/certsync-dashboard.json")).unwrap(),
    )
    .unwrap();

    // certsync: inst0 has an endpoint serving a chain from its CA, inst1 one nobody serves.
    let h = Harness::new(2).await;
    let (cert, key) = h.server_cert(0);
    let served = TlsServer::start(&cert, &key);
    let port = h.with_endpoint(Some(&format!("127.0.0.1:{}", served.port)), "");
    let unserved = format!("127.0.0.1:{}", free_port());
    let config = std::fs::read_to_string(&h.config).unwrap().replacen(
        "name = \"inst1\"\n",
        &format!("name = \"inst1\"\nendpoints = [\"{unserved}\"]\n"),
        1,
    );
    std::fs::write(&h.config, config).unwrap();
    let sim = SimControl::new(&h);
    // One 429 at the first request for inst0, so the throttling panel has a series.
    sim.fault(
        &h.id(0),
        json!({"kind": "rate_limited", "retry_after_secs": 1, "times": 1}),
    )
    .await;
    let mut d = Running::start(&h.config, &["run"]);
    let first = d.passed().await;
    assert_eq!(first, "2 of 2 instances synced", "{}", d.log());

    let target = format!("127.0.0.1:{port}");
    let test_rules = shortened(&rules);
    let prom = Prometheus::start(&prometheus, &target, &test_rules).await;
    let tmp_rules = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp_rules.path(), &test_rules).unwrap();
    promtool(
        &tool,
        &[
            "check".as_ref(),
            "rules".as_ref(),
            tmp_rules.path().as_os_str(),
        ],
    );

    // Every rule loaded and evaluates without error.
    let (p, want) = (&prom, &names);
    prom.until("every rule loaded and healthy", move || async move {
        let groups = p.api("/api/v1/rules", &[]).await;
        let loaded: Vec<(String, String)> = groups["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .map(|r| {
                (
                    r["name"].as_str().unwrap_or("").to_string(),
                    r["health"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        let loaded_names: Vec<&String> = loaded.iter().map(|(n, _)| n).collect();
        (loaded_names == want.iter().collect::<Vec<_>>() && loaded.iter().all(|(_, h)| h == "ok"))
            .then_some(())
    })
    .await;

    // (c) The cloud fails for inst1 from now on; SIGUSR1 starts the pass that meets it, and
    // the daemon retries inst1 every second or two.
    sim.fault(&h.id(1), json!({"kind": "api_status", "status": 500}))
        .await;
    d.signal(Signal::USR1);
    let firing = |alerts: &[Value], name: &str, instance: &str| {
        alerts.iter().any(|a| {
            a["labels"]["alertname"] == name
                && a["labels"]["exported_instance"] == instance
                && a["labels"]["job"] == JOB
                && a["labels"]["instance"] == target.as_str()
                && a["state"] == "firing"
        })
    };
    let firing = &firing;
    let alerts = prom
        .until(
            "firing CertsyncInstanceFailing for inst1",
            move || async move {
                let alerts = p.alerts().await;
                (firing(&alerts, "CertsyncInstanceFailing", "inst1")
                    && firing(&alerts, "CertsyncEndpointUnverified", "inst1"))
                .then_some(alerts)
            },
        )
        .await;
    let unverified = alerts
        .iter()
        .find(|a| a["labels"]["alertname"] == "CertsyncEndpointUnverified")
        .unwrap();
    assert_eq!(
        unverified["labels"]["endpoint"],
        unserved.as_str(),
        "{alerts:?}"
    );
    // Nothing else is wrong: inst0 syncs and verifies, passes succeed, the CAs are fresh.
    for alert in &alerts {
        let name = alert["labels"]["alertname"].as_str().unwrap();
        assert!(
            matches!(
                name,
                "CertsyncInstanceFailing" | "CertsyncEndpointUnverified"
            ) && alert["labels"]["exported_instance"] == "inst1",
            "unexpected alert {alert}"
        );
    }

    // (b) Every panel's query returns data (a finite value), and so do the variables' ones.
    let queries = panel_queries(&dashboard);
    assert!(queries.len() >= 10, "{queries:?}");
    for (title, expr) in &queries {
        let expr = concrete(expr, &target);
        let expr = &expr;
        prom.until(
            &format!("data for panel {title:?}: {expr}"),
            move || async move {
                let result = p.query(expr).await;
                result.iter().any(finite).then_some(())
            },
        )
        .await;
    }
    for var in dashboard["templating"]["list"].as_array().unwrap() {
        let Some(query) = var["definition"].as_str() else {
            continue;
        };
        let (inner, label) = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .and_then(|q| q.rsplit_once(", "))
            .unwrap_or_else(|| panic!("variable query {query}: not label_values(Q, label)"));
        let result = prom.query(&concrete(inner, &target)).await;
        assert!(
            result.iter().any(|s| s["metric"][label].is_string()),
            "variable {query}: {result:?}"
        );
    }

    assert_eq!(d.stop().await, Some(0));
    assert_eq!(prom.process.stop().await, Some(0));
}
