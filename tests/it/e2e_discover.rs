//! End-to-end discovery (SPEC 5.4): instances found through ListInstances, paged, filtered,
//! named, merged with configured ones, and pruned only after they have been gone for three
//! passes.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use crate::common::*;
use certsync::cloud::api::{ApiClient, Truncation};
use certsync_sim::{InstanceMeta, ListFault, SimOptions, Simulator};
use rustix::process::{Pid, Signal, kill_process};
use tokio::io::{AsyncBufReadExt, BufReader};

async fn next_pass(lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStderr>>) -> String {
    loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("a pass in time")
            .unwrap()
            .expect("certsync still running");
        if line.contains("pass finished") {
            return line;
        }
    }
}

struct Setup {
    sim: Simulator,
    tmp: tempfile::TempDir,
    trust: std::path::PathBuf,
    config: std::path::PathBuf,
}

async fn setup(instances: usize) -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimOptions {
        instances,
        dir: Some(tmp.path().join("sim")),
        ..SimOptions::default()
    })
    .await
    .unwrap();
    std::fs::write(tmp.path().join("token"), sim.token()).unwrap();
    Setup {
        trust: tmp.path().join("trust"),
        config: tmp.path().join("certsync.toml"),
        sim,
        tmp,
    }
}

impl Setup {
    fn write_config(&self, tail: &str) {
        let text = format!(
            r#"[cloud]
region = "cn-north-4"
endpoint = "{}"
project_id = "{}"
ca_file = "{}"

[auth]
method = "token"
token_file = "token"

[sync]
concurrency = 16
allowed_download_hosts = ["127.0.0.1"]
watch_config = false

[trust]
dir = "trust"
{tail}"#,
            self.sim.endpoint(),
            self.sim.project_id(),
            self.sim.ca_file().display()
        );
        std::fs::write(&self.config, text).unwrap();
    }

    async fn once(&self) -> std::process::Output {
        tokio::process::Command::new(BIN)
            .arg("--config")
            .arg(&self.config)
            .arg("once")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap()
    }

    /// `once`, killed (and the test failed) if it has not ended after two minutes: against a
    /// listing that never ends, unbounded paging would otherwise hang the test.
    async fn once_bounded(&self) -> std::process::Output {
        self.bounded(&["once"]).await
    }

    async fn bounded(&self, args: &[&str]) -> std::process::Output {
        let child = tokio::process::Command::new(BIN)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
            .await
            .unwrap_or_else(|_| panic!("certsync {args:?} did not end: paging is unbounded"))
            .unwrap()
    }

    /// The library's API client for the config.
    fn client(&self) -> ApiClient {
        let text = std::fs::read_to_string(&self.config).unwrap();
        let config = certsync::config::parse_with_env(&text, &self.config, &|_| None).unwrap();
        let account = &config.accounts[0];
        certsync::cloud::connect(account, certsync::cloud::budget_for(account))
            .unwrap()
            .1
    }

    fn files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.trust)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".crt"))
            .collect();
        names.sort();
        names
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_pages_through_250_instances_and_skips_those_without_ssl() {
    let s = setup(250).await;
    let ids = s.sim.instance_ids();
    for (n, id) in ids.iter().enumerate().take(10) {
        let mut meta = InstanceMeta::numbered(n + 1);
        meta.ssl = false;
        s.sim.set_instance_meta(id, meta);
    }
    // Another engine: filtered out by datastore.
    let mut redis = InstanceMeta::numbered(11);
    redis.datastore_type = "redis".into();
    s.sim.set_instance_meta(&ids[10], redis);
    s.write_config("\n[[discover]]\ndatastore = \"mongodb\"\n");
    let out = s.once().await;
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let files = s.files();
    assert_eq!(files.len(), 239, "{files:?}");
    for id in &ids[11..] {
        let name = s.sim.instance_meta(id).name;
        assert!(
            files.contains(&format!("{name}-international.crt")),
            "{name}"
        );
    }
    assert!(
        !files.iter().any(|f| f == "inst-1-international.crt"),
        "ssl off must be skipped"
    );
    assert!(s.sim.stats().list_requests >= 3, "{:?}", s.sim.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_instances_keep_their_settings_and_names_are_sanitised_and_unique() {
    let s = setup(5).await;
    let ids = s.sim.instance_ids();
    let set_name = |id: &str, name: &str| {
        let mut meta = s.sim.instance_meta(id);
        meta.name = name.into();
        s.sim.set_instance_meta(id, meta);
    };
    set_name(&ids[1], "billing db/eu:1");
    set_name(&ids[2], "twin");
    set_name(&ids[3], "twin");
    set_name(&ids[4], "explicit");
    s.write_config(&format!(
        "\n[[instance]]\nid = \"{}\"\nname = \"explicit\"\ncategories = [\"international\"]\n\n[[discover]]\nname = \"*\"\n",
        ids[0]
    ));
    let out = s.once().await;
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let files = s.files();
    assert_eq!(
        files,
        [
            "billing-db-eu-1-international.crt".to_string(),
            "explicit-international.crt".into(),
            format!("{}-international.crt", ids[2]),
            format!("{}-international.crt", ids[3]),
            format!("{}-international.crt", ids[4]),
        ]
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>(),
        "{files:?}"
    );
    // The explicit instance's file holds its own CA.
    let pem = std::fs::read_to_string(s.trust.join("explicit-international.crt")).unwrap();
    assert_eq!(
        pem,
        certsync::cert::encode_pem(&s.sim.ca(&ids[0], "international").der)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanished_instance_keeps_its_files_for_three_passes() {
    let s = setup(3).await;
    let ids = s.sim.instance_ids();
    s.write_config("\n[[discover]]\n");
    let mut child = tokio::process::Command::new(BIN)
        .arg("--config")
        .arg(&s.config)
        .arg("run")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = Pid::from_raw(child.id().unwrap() as i32).unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    next_pass(&mut lines).await;
    let gone = s.trust.join(format!(
        "{}-international.crt",
        s.sim.instance_meta(&ids[1]).name
    ));
    assert!(gone.exists());
    s.sim.remove_instance(&ids[1]);
    for round in 1..=2 {
        kill_process(pid, Signal::USR1).unwrap();
        let line = next_pass(&mut lines).await;
        assert!(line.contains("failed=0"), "{line}");
        assert!(gone.exists(), "pruned after {round} pass(es) without it");
    }
    kill_process(pid, Signal::USR1).unwrap();
    next_pass(&mut lines).await;
    assert!(!gone.exists(), "still there after three passes without it");
    assert_eq!(s.files().len(), 2);
    kill_process(pid, Signal::TERM).unwrap();
    assert_eq!(child.wait().await.unwrap().code(), Some(0));
    let _ = Path::new(&s.tmp.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_list_keeps_the_discovered_instances() {
    let s = setup(2).await;
    s.write_config("\n[[discover]]\n");
    assert_eq!(code(&s.once().await), 0);
    let before = s.files();
    assert_eq!(before.len(), 2);
    // ListInstances now fails (a token the API refuses); download-link would too, so the
    // instances fail, but nothing is pruned and no file changes.
    std::fs::write(s.tmp.path().join("token"), "not-the-token").unwrap();
    let out = s.once().await;
    assert!(
        all_output(&out).contains("discovery failed"),
        "{}",
        all_output(&out)
    );
    assert_eq!(s.files(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_instances_are_counted_across_restarts() {
    let s = setup(2).await;
    let ids = s.sim.instance_ids();
    s.write_config("\n[[discover]]\n");
    assert_eq!(code(&s.once().await), 0);
    let gone = s.trust.join(format!(
        "{}-international.crt",
        s.sim.instance_meta(&ids[0]).name
    ));
    s.sim.remove_instance(&ids[0]);
    for round in 1..=2 {
        assert_eq!(code(&s.once().await), 0);
        assert!(gone.exists(), "pruned after {round} run(s) without it");
    }
    assert_eq!(code(&s.once().await), 0);
    assert!(!gone.exists(), "kept after three runs without it");
    assert_eq!(s.files().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_online_runs_the_discovery_queries() {
    let s = setup(3).await;
    s.write_config("\n[[discover]]\ndatastore = \"mongodb\"\n");
    let out = tokio::process::Command::new(BIN)
        .arg("--config")
        .arg(&s.config)
        .args(["check", "--online"])
        .output()
        .await
        .unwrap();
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert!(
        stdout(&out).contains("discover[0]: ListInstances found 3 instance(s)"),
        "{}",
        stdout(&out)
    );
}

/// 101 instances; only the oldest (not on the first page of ListInstances) is configured, the
/// others have SSL off, so discovery adds nothing to sync.
async fn one_configured_behind_a_full_page() -> (Setup, String) {
    let s = setup(101).await;
    let ids = s.sim.instance_ids();
    for (n, id) in ids.iter().enumerate().skip(1) {
        let mut meta = InstanceMeta::numbered(n + 1);
        meta.ssl = false;
        s.sim.set_instance_meta(id, meta);
    }
    s.write_config(&format!(
        "\n[[instance]]\nid = \"{}\"\nname = \"configured\"\n\n[[discover]]\n",
        ids[0]
    ));
    (s, ids[0].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_discovery_stops_when_the_listing_ignores_offset_and_claims_a_huge_total() {
    let (s, _) = one_configured_behind_a_full_page().await;
    s.sim
        .set_list_faults(&[ListFault::IgnoresOffset, ListFault::HugeTotal]);
    let out = s.once_bounded().await;
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert_eq!(s.files(), ["configured-international.crt"]);
    // The first page, then the same page again: stop.
    assert_eq!(s.sim.stats().list_requests, 2, "{:?}", s.sim.stats());

    // The library says why the listing is incomplete, and lists each id once.
    let before = s.sim.stats().list_requests;
    let found = s.client().list_instances(None, None).await.unwrap();
    assert_eq!(found.instances.len(), 100);
    let unique: std::collections::HashSet<_> = found.instances.iter().map(|i| &i.id).collect();
    assert_eq!(unique.len(), 100);
    assert_eq!(
        found.truncated,
        Some(Truncation::OffsetIgnored { offset: 100 })
    );
    assert_eq!(s.sim.stats().list_requests - before, 2);

    // check --online calls the incomplete listing a failure, naming the query.
    let out = s.bounded(&["check", "--online"]).await;
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    let text = stdout(&out);
    assert!(
        text.contains("discover[0]: failed: the listing is incomplete")
            && text.contains("ignores offset"),
        "{text}"
    );
    assert!(text.contains("instance configured: ok"), "{text}");

    // A huge total alone pages normally and ends at the short page, complete.
    s.sim.set_list_faults(&[ListFault::HugeTotal]);
    let found = s.client().list_instances(None, None).await.unwrap();
    assert_eq!((found.instances.len(), found.truncated), (101, None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_discovery_stops_after_100_pages_of_an_endless_listing() {
    let s = setup(1).await;
    let id = s.sim.instance_ids()[0].clone();
    s.write_config(&format!(
        "\n[[instance]]\nid = \"{id}\"\nname = \"configured\"\n\n[[discover]]\n"
    ));
    s.sim
        .set_list_faults(&[ListFault::EndlessPages, ListFault::HugeTotal]);
    let out = s.once_bounded().await;
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert_eq!(s.files(), ["configured-international.crt"]);
    assert_eq!(s.sim.stats().list_requests, 100, "{:?}", s.sim.stats());
    assert!(
        !all_output(&out).contains("ghost-"),
        "made-up instances have no SSL: skipped"
    );

    let found = s.client().list_instances(None, None).await.unwrap();
    assert_eq!(found.instances.len(), 10_000);
    assert_eq!(
        found.truncated,
        Some(Truncation::PageLimit {
            pages: 100,
            total_count: Some(1_000_000_000_000)
        })
    );
}
