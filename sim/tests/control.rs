//! The simulator as infrastructure: its control API, its binary (announcement line, signals),
//! connection reuse, shutdown, and throughput over keep-alive connections.
// A test crate: its helpers are private to it, and `pub` only says which of them the test
// modules share, so the library's `unreachable_pub` rule does not apply here.
#![allow(unreachable_pub)]

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use certsync_sim::{Fault, SimOptions, Simulator};
use common::{KeepAlive, curl, curl_with_ca, fingerprint, list, subject};
use tokio::io::AsyncBufReadExt as _;

async fn sim(instances: usize) -> Simulator {
    Simulator::start(SimOptions {
        instances,
        ..SimOptions::default()
    })
    .await
    .expect("simulator starts")
}

fn control(sim: &Simulator, path: &str) -> String {
    format!("{}/_sim/{path}", sim.endpoint())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_api_reads_and_changes_the_state() {
    let sim = sim(2).await;
    let ids = sim.instance_ids();

    let state = curl(&sim, &[], &control(&sim, "state")).await;
    assert_eq!(state.status, 200);
    let doc = state.json();
    assert_eq!(doc["endpoint"], sim.endpoint());
    assert_eq!(doc["project_id"], sim.project_id());
    let listed: Vec<&str> = doc["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ids);
    let cat = &doc["instances"][0]["categories"][0];
    assert_eq!(cat["category"], "international");
    assert_eq!(
        cat["sha256_hex"],
        sim.ca(&ids[0], "international").sha256_hex
    );
    assert!(cat.get("key_pem").is_none());
    assert!(!state.text().contains("PRIVATE KEY"));
    assert_eq!(doc["stats"]["api_requests"], 0);
    assert!(doc["instances"][0]["fault"].is_null());

    // Add, then use through the API.
    let added = curl(&sim, &["-X", "POST"], &control(&sim, "instances/orders-1")).await;
    assert_eq!(added.status, 201, "{}", added.text());
    assert_eq!(added.json()["id"], "orders-1");
    assert_eq!(sim.instance_ids().last().unwrap(), "orders-1");
    assert_eq!(list(&sim, "orders-1").await.status, 200);
    let again = curl(&sim, &["-X", "POST"], &control(&sim, "instances/orders-1")).await;
    assert_eq!(again.status, 200);
    let bad = curl(&sim, &["-X", "POST"], &control(&sim, "instances/bad_id")).await;
    assert_eq!(bad.status, 400);

    // Rotate through the control API.
    let before = sim.ca("orders-1", "international");
    let rotated = curl(
        &sim,
        &["-X", "POST"],
        &control(&sim, "instances/orders-1/rotate?category=international"),
    )
    .await;
    assert_eq!(rotated.status, 200, "{}", rotated.text());
    let body = rotated.json();
    let now = sim.ca("orders-1", "international");
    assert_ne!(now.sha256_hex, before.sha256_hex);
    assert_eq!(body["sha256_hex"], now.sha256_hex);
    assert_eq!(
        fingerprint(body["pem"].as_str().unwrap().as_bytes()).await,
        now.sha256_hex
    );
    assert_eq!(
        subject(before.pem.as_bytes()).await,
        subject(now.pem.as_bytes()).await
    );
    assert!(!rotated.text().contains("PRIVATE KEY"));
    let no_cat = curl(
        &sim,
        &["-X", "POST"],
        &control(&sim, "instances/orders-1/rotate?category=national"),
    )
    .await;
    assert_eq!(no_cat.status, 404);

    // Faults through the control API.
    let put = |body: &'static str| {
        let sim = sim.clone();
        async move {
            curl(
                &sim,
                &[
                    "-X",
                    "PUT",
                    "-H",
                    "Content-Type: application/json",
                    "--data",
                    body,
                ],
                &control(&sim, "instances/orders-1/fault"),
            )
            .await
        }
    };
    assert_eq!(
        put(r#"{"kind":"api_status","status":500,"times":1}"#)
            .await
            .status,
        204
    );
    let state = curl(&sim, &[], &control(&sim, "state")).await.json();
    assert_eq!(
        state["instances"][2]["fault"],
        serde_json::json!({"kind": "api_status", "status": 500, "times": 1})
    );
    assert_eq!(list(&sim, "orders-1").await.status, 500);
    assert_eq!(list(&sim, "orders-1").await.status, 200);
    assert_eq!(
        put(r#"{"kind":"rate_limited","retry_after_secs":3,"times":null}"#)
            .await
            .status,
        204
    );
    assert_eq!(
        list(&sim, "orders-1").await.header("retry-after"),
        Some("3")
    );
    let cleared = curl(
        &sim,
        &["-X", "DELETE"],
        &control(&sim, "instances/orders-1/fault"),
    )
    .await;
    assert_eq!(cleared.status, 204);
    assert_eq!(list(&sim, "orders-1").await.status, 200);
    assert_eq!(
        put(r#"{"kind":"content","content":"not_ca"}"#).await.status,
        204
    );
    assert_eq!(put(r#"{"kind":"no_such_fault"}"#).await.status, 400);
    assert_eq!(put("not json").await.status, 400);
    let unknown = curl(
        &sim,
        &["-X", "PUT", "--data", r#"{"kind":"expired_link"}"#],
        &control(&sim, "instances/nope/fault"),
    )
    .await;
    assert_eq!(unknown.status, 404);

    // Remove.
    let removed = curl(
        &sim,
        &["-X", "DELETE"],
        &control(&sim, "instances/orders-1"),
    )
    .await;
    assert_eq!(removed.status, 204);
    assert_eq!(
        list(&sim, "orders-1").await.json()["error_code"],
        "DBS.200002"
    );
    let twice = curl(
        &sim,
        &["-X", "DELETE"],
        &control(&sim, "instances/orders-1"),
    )
    .await;
    assert_eq!(twice.status, 404);
    assert_eq!(curl(&sim, &[], &control(&sim, "nothing")).await.status, 404);
}

#[test]
fn fault_json_shape_is_stable() {
    let cases = [
        (
            Fault::ApiStatus {
                status: 503,
                times: None,
            },
            r#"{"kind":"api_status","status":503,"times":null}"#,
        ),
        (
            Fault::RateLimited {
                retry_after_secs: 2,
                times: Some(1),
            },
            r#"{"kind":"rate_limited","retry_after_secs":2,"times":1}"#,
        ),
        (
            Fault::SlowApi { millis: 5 },
            r#"{"kind":"slow_api","millis":5}"#,
        ),
        (
            Fault::SlowDownload { millis: 5 },
            r#"{"kind":"slow_download","millis":5}"#,
        ),
        (Fault::TruncatedDownload, r#"{"kind":"truncated_download"}"#),
        (
            Fault::OversizeDownload { bytes: 9 },
            r#"{"kind":"oversize_download","bytes":9}"#,
        ),
        (
            Fault::Content {
                content: certsync_sim::BadContent::CaWithPrivateKey,
            },
            r#"{"kind":"content","content":"ca_with_private_key"}"#,
        ),
        (
            Fault::RedirectOtherHost,
            r#"{"kind":"redirect_other_host"}"#,
        ),
        (Fault::RedirectLoop, r#"{"kind":"redirect_loop"}"#),
        (Fault::ExpiredLink, r#"{"kind":"expired_link"}"#),
        (Fault::PlainHttpLink, r#"{"kind":"plain_http_link"}"#),
    ];
    for (fault, json) in cases {
        assert_eq!(serde_json::to_string(&fault).unwrap(), json);
        assert_eq!(serde_json::from_str::<Fault>(json).unwrap(), fault);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_kept_alive() {
    let sim = sim(1).await;
    let url = common::api_url(&sim, &sim.instance_ids()[0]);
    let token = format!("X-Auth-Token: {}", sim.token());
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "-w", "%{http_code} %{num_connects}\\n", "--cacert"])
        .arg(sim.ca_file())
        .args(["-H", &token])
        .args([
            "-o",
            "/dev/null",
            &url,
            "-o",
            "/dev/null",
            &url,
            "-o",
            "/dev/null",
            &url,
        ])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        text, "200 1\n200 0\n200 0\n",
        "later requests must reuse the connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temp_dir_holds_ca_pem_until_the_last_handle_drops() {
    let sim = sim(0).await;
    assert!(sim.instance_ids().is_empty());
    let ca_file = sim.ca_file();
    assert_eq!(ca_file.file_name().unwrap(), "ca.pem");
    assert_eq!(std::fs::read_to_string(&ca_file).unwrap(), sim.ca_pem());
    let (ok, text) = common::openssl(&["x509", "-noout", "-text"], sim.ca_pem().as_bytes()).await;
    assert!(ok && text.contains("CA:TRUE"), "{text}");
    let clone = sim.clone();
    drop(sim);
    assert!(ca_file.exists());
    drop(clone);
    assert!(!ca_file.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_dir_and_shutdown_stops_listening() {
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimOptions {
        dir: Some(dir.path().join("nested")),
        ..SimOptions::default()
    })
    .await
    .unwrap();
    assert_eq!(sim.ca_file(), dir.path().join("nested/ca.pem"));
    // The server certificate is valid for every loopback name.
    let port = sim.addr().port();
    for host in ["127.0.0.1", "localhost"] {
        let resp = curl(&sim, &[], &format!("https://{host}:{port}/_sim/state")).await;
        assert_eq!(resp.status, 200, "{host}");
    }
    // Another root is refused by curl (the TLS is real).
    let other = other_root(dir.path()).await;
    let refused = curl_with_ca(&other, &[], &format!("{}/_sim/state", sim.endpoint())).await;
    assert_eq!(refused.curl_exit, 60, "certificate verification must fail");

    sim.shutdown();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if tokio::net::TcpStream::connect(sim.addr()).await.is_err() {
            break;
        }
        assert!(Instant::now() < deadline, "still accepting after shutdown");
        tokio::task::yield_now().await;
    }
    assert!(sim.ca_file().exists(), "an explicit dir is left in place");
}

/// Writes the root of another simulator into `dir` and returns its path.
async fn other_root(dir: &std::path::Path) -> std::path::PathBuf {
    let other = sim(0).await;
    let path = dir.join("other.pem");
    std::fs::write(&path, other.ca_pem()).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_many_requests_over_concurrent_keep_alive_connections() {
    const INSTANCES: usize = 400;
    const CONNECTIONS: usize = 16;
    let sim = sim(INSTANCES).await;
    let ids = sim.instance_ids();
    let token = sim.token();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS {
        let sim = sim.clone();
        let token = token.clone();
        let mine: Vec<String> = ids.iter().skip(c).step_by(CONNECTIONS).cloned().collect();
        tasks.push(tokio::spawn(async move {
            let mut conn = KeepAlive::connect(&sim).await;
            for id in mine {
                let (status, body) = conn.get(&common::api_url(&sim, &id), Some(&token)).await;
                assert_eq!(status, 200);
                let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
                let link = json["certs"][0]["download_link"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                let (status, pem) = conn.get(&link, None).await;
                assert_eq!(status, 200);
                assert_eq!(pem, sim.ca(&id, "international").pem.as_bytes());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed();
    let stats = sim.stats();
    assert_eq!(stats.api_requests, INSTANCES as u64);
    assert_eq!(stats.downloads, INSTANCES as u64);
    // A figure, not an assertion: timing belongs in benchmarks (benches/sync.rs).
    println!(
        "{} requests over {CONNECTIONS} connections took {elapsed:?}",
        INSTANCES * 2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_announces_itself_serves_and_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_certsync-sim"))
        .args(["--instances", "3", "--token", "MIIbinary"])
        .args(["--ak", "AKBINARY000000000001", "--sk", "SKbinary", "--dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("announcement in time")
        .unwrap()
        .expect("one line");
    let doc: serde_json::Value = serde_json::from_str(&line).unwrap();
    let endpoint = doc["endpoint"].as_str().unwrap();
    assert!(endpoint.starts_with("https://127.0.0.1:"), "{endpoint}");
    let ca_file = std::path::PathBuf::from(doc["ca_file"].as_str().unwrap());
    assert_eq!(ca_file, dir.path().join("ca.pem"));
    assert_eq!(doc["token"], "MIIbinary");
    assert_eq!(doc["ak"], "AKBINARY000000000001");
    assert_eq!(doc["sk"], "SKbinary");
    assert_eq!(doc["region"], "cn-north-4");
    assert_eq!(doc["iam_endpoint"], endpoint);
    let metadata = doc["metadata_endpoint"].as_str().unwrap();
    assert!(metadata.starts_with("http://127.0.0.1:"), "{metadata}");
    let project = doc["project_id"].as_str().unwrap();
    assert_eq!(project.len(), 32);
    let instances = doc["instances"].as_array().unwrap();
    assert_eq!(instances.len(), 3);
    let id = instances[0].as_str().unwrap();

    let url = format!("{endpoint}/v3/{project}/instances/{id}/ssl-cert/download-link");
    let resp = curl_with_ca(&ca_file, &["-H", "X-Auth-Token: MIIbinary"], &url).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let link = resp.json()["certs"][0]["download_link"]
        .as_str()
        .unwrap()
        .to_owned();
    let pem = curl_with_ca(&ca_file, &[], &link).await.body;
    assert!(subject(&pem).await.contains(id));

    // The announced keys open the API.
    let headers = common::Signed::get(&url).sign("AKBINARY000000000001", "SKbinary");
    let mut args = Vec::new();
    for (name, value) in &headers {
        args.push("-H".to_owned());
        args.push(format!("{name}: {value}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let signed = curl_with_ca(&ca_file, &args, &url).await;
    assert_eq!(signed.status, 200, "{}", signed.text());

    let status = tokio::process::Command::new("kill")
        .args(["-TERM", &child.id().unwrap().to_string()])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    assert_eq!(
        lines.next_line().await.unwrap(),
        None,
        "exactly one line on stdout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_without_dir_uses_and_removes_a_temp_dir_on_sigint() {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_certsync-sim"))
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("announcement in time")
        .unwrap()
        .expect("one line");
    let doc: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(doc["instances"].as_array().unwrap().len(), 1);
    assert!(doc["token"].as_str().unwrap().len() >= 16);
    // Random keys shaped like the console's.
    let ak = doc["ak"].as_str().unwrap();
    assert_eq!(ak.len(), 20);
    assert!(
        ak.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()),
        "{ak}"
    );
    let sk = doc["sk"].as_str().unwrap();
    assert_eq!(sk.len(), 40);
    assert!(sk.bytes().all(|b| b.is_ascii_alphanumeric()));
    let ca_file = std::path::PathBuf::from(doc["ca_file"].as_str().unwrap());
    assert!(ca_file.exists());
    tokio::process::Command::new("kill")
        .args(["-INT", &child.id().unwrap().to_string()])
        .status()
        .await
        .unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("exits after SIGINT")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    assert!(
        !ca_file.exists(),
        "the temporary directory is removed on exit"
    );
}

#[tokio::test]
async fn works_on_a_current_thread_runtime() {
    let sim = sim(1).await;
    let id = sim.instance_ids()[0].clone();
    let mut conn = KeepAlive::connect(&sim).await;
    let (status, body) = conn
        .get(&common::api_url(&sim, &id), Some(&sim.token()))
        .await;
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let (status, pem) = conn
        .get(json["certs"][0]["download_link"].as_str().unwrap(), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(pem, sim.ca(&id, "international").pem.as_bytes());
    let (status, body) = conn.get(&common::api_url(&sim, &id), Some("wrong")).await;
    assert_eq!(status, 401);
    assert!(String::from_utf8_lossy(&body).contains("APIGW.0301"));
}

#[tokio::test]
async fn binary_wants_ak_and_sk_together() {
    for args in [["--ak", "AKONLY"], ["--sk", "SKONLY"]] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_certsync-sim"))
            .args(args)
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--ak") && err.contains("--sk"), "{err}");
        assert!(!err.contains("AKONLY") && !err.contains("SKONLY"), "{err}");
    }
}
