//! End-to-end: live verification of endpoints (SPEC 13). The daemon against the simulator,
//! with `openssl s_server` standing in for the databases: a server whose chain comes from the
//! instance's CA verifies; one from another CA is a disagreement, logged, in `/status`, in the
//! metrics, and in `/readyz` with `verify.required`; node addresses come from ListInstances
//! when the instance names no endpoints.

use certsync_sim::Node;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_serving_the_instances_ca_verifies_and_one_from_another_ca_is_reported() {
    let h = Harness::new(1).await;
    let id = h.id(0);
    let (cert, key) = h.server_cert(0);
    let good = TlsServer::start(&cert, &key);
    let port = h.with_endpoint(Some(&format!("127.0.0.1:{}", good.port)), "");
    let mut d = Running::start(&h.config, &["run"]);
    d.passed().await;
    let line = d.wait_for("endpoint verified").await;
    let ca = h.sim.ca(&id, "international");
    assert!(line.contains(&ca.sha256_hex), "{line}");

    let (_, status) = get(port, "/status").await;
    let doc: serde_json::Value = serde_json::from_str(&status).unwrap();
    let endpoint = &doc["endpoints"][0];
    assert_eq!(endpoint["verified"], true, "{status}");
    assert_eq!(endpoint["anchor"], ca.sha256_hex.as_str(), "{status}");
    assert_eq!(endpoint["endpoint"], format!("127.0.0.1:{}", good.port));
    assert!(endpoint["leaf_not_after"].as_str().is_some(), "{status}");
    let (_, metrics) = get(port, "/metrics").await;
    let labels = format!("instance=\"inst0\",endpoint=\"127.0.0.1:{}\"", good.port);
    assert_eq!(
        metric_sample(&metrics, "certsync_endpoint_verified", &labels).as_deref(),
        Some("1"),
        "{metrics}"
    );
    assert_eq!(
        metric_sample(
            &metrics,
            "certsync_endpoint_anchor_info",
            &format!("{labels},sha256=\"{}\"", ca.sha256_hex)
        )
        .as_deref(),
        Some("1"),
        "{metrics}"
    );
    assert!(
        metric_sample(
            &metrics,
            "certsync_endpoint_probes_total",
            "result=\"verified\""
        )
        .is_some(),
        "{metrics}"
    );
    d.stop().await;

    // The database serves a chain from a CA the API never handed out: the daemon says so,
    // and with `required` it is not ready.
    let stranger = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let bad = TlsServer::start(&stranger.cert.pem(), &stranger.signing_key.serialize_pem());
    let port = h.with_endpoint(
        Some(&format!("127.0.0.1:{}", bad.port)),
        "\n[verify]\nrequired = true\n",
    );
    let mut d = Running::start(&h.config, &["run"]);
    d.passed().await;
    d.wait_for("endpoint disagrees with the trust folder").await;
    let (code, body) = get(port, "/readyz").await;
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains(&format!(
            "endpoint 127.0.0.1:{} of instance inst0",
            bad.port
        )) && body.contains("anchors at no CA certsync wrote"),
        "{body}"
    );
    let (_, metrics) = get(port, "/metrics").await;
    let labels = format!("instance=\"inst0\",endpoint=\"127.0.0.1:{}\"", bad.port);
    assert_eq!(
        metric_sample(&metrics, "certsync_endpoint_verified", &labels).as_deref(),
        Some("0"),
        "{metrics}"
    );
    // The instance's file is untouched by any of this.
    assert_eq!(
        std::fs::read_to_string(h.file(0)).unwrap(),
        h.expected_pem(0)
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_endpoints_the_node_addresses_of_list_instances_are_probed() {
    let h = Harness::new(1).await;
    let id = h.id(0);
    let (cert, key) = h.server_cert(0);
    let server = TlsServer::start(&cert, &key);
    h.sim.set_nodes(&id, &[Node::new("127.0.0.1", server.port)]);
    let port = h.with_endpoint(None, "");
    let mut d = Running::start(&h.config, &["run"]);
    d.passed().await;
    d.wait_for("endpoint verified").await;
    let (_, status) = get(port, "/status").await;
    let doc: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(
        doc["endpoints"][0]["endpoint"],
        format!("127.0.0.1:{}", server.port),
        "{status}"
    );
    assert_eq!(doc["endpoints"][0]["verified"], true, "{status}");
    // One ListInstances found the nodes (no [[discover]] is configured).
    assert_eq!(h.sim.stats().list_requests, 1);
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_endpoint_never_holds_back_a_pass_and_verify_can_be_turned_off() {
    let h = Harness::new(2).await;
    // Accepts TCP and never answers the handshake.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let port = h.with_endpoint(
        Some(&format!("127.0.0.1:{silent_port}")),
        "\n[verify]\ntimeout = \"30s\"\n",
    );
    let mut d = Running::start(&h.config, &["run"]);
    // The pass ends and writes every file although the probe hangs for 30 s.
    d.passed().await;
    for i in 0..2 {
        assert_eq!(
            std::fs::read_to_string(h.file(i)).unwrap(),
            h.expected_pem(i)
        );
    }
    let (code, _) = get(port, "/readyz").await;
    assert_eq!(code, 200);
    d.stop().await;

    // enabled = false: no probe, no ListInstances, no endpoint in /status.
    let port = h.with_endpoint(
        Some(&format!("127.0.0.1:{silent_port}")),
        "\n[verify]\nenabled = false\n",
    );
    let before = h.sim.stats().list_requests;
    let mut d = Running::start(&h.config, &["run"]);
    d.passed().await;
    let (_, status) = get(port, "/status").await;
    let doc: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(doc["endpoints"], serde_json::json!([]), "{status}");
    assert_eq!(h.sim.stats().list_requests, before);
    d.stop().await;
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_online_probes_each_endpoint_against_the_cas_it_would_write() {
    let h = Harness::new(1).await;
    let id = h.id(0);
    let (cert, key) = h.server_cert(0);
    let good = TlsServer::start(&cert, &key);
    h.with_endpoint(Some(&format!("127.0.0.1:{}", good.port)), "");
    let out = h.certsync(&["check", "--online"]).await;
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let text = stdout(&out);
    let ca = h.sim.ca(&id, "international");
    assert!(
        text.contains(&format!(
            "endpoint 127.0.0.1:{}: verified (anchors at sha256 {}",
            good.port, ca.sha256_hex
        )),
        "{text}"
    );
    // Nothing was written.
    assert!(!h.file(0).exists());

    let stranger = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let bad = TlsServer::start(&stranger.cert.pem(), &stranger.signing_key.serialize_pem());
    h.with_endpoint(
        Some(&format!("127.0.0.1:{}", bad.port)),
        "\n[verify]\nrequired = true\n",
    );
    let out = h.certsync(&["check", "--online"]).await;
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    assert!(
        stdout(&out).contains(&format!(
            "endpoint 127.0.0.1:{}: not verified (unknown_issuer)",
            bad.port
        )),
        "{}",
        stdout(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_never_verified_since_a_rotation_keeps_the_old_ca_until_rotation_overlap_max() {
    let h = Harness::new(1).await;
    let old = h.expected_pem(0);
    // Nothing listens there: the endpoint is never verified.
    let unreachable = free_port();
    h.with_endpoint_extra(
        Some(&format!("127.0.0.1:{unreachable}")),
        &Extra {
            sync: "rotation_overlap = \"1s\"\nrotation_overlap_max = \"3s\"",
            tail: "[verify]\ninterval = \"1s\"\n".to_string(),
            ..Extra::default()
        },
    );
    let mut d = Running::start(&h.config, &["run"]);
    d.passed().await;
    h.sim.rotate(&h.id(0), "international");
    let new = h.expected_pem(0);
    let rotated = std::time::Instant::now();
    d.signal(rustix::process::Signal::USR1);
    d.passed().await;
    let file = || std::fs::read_to_string(h.file(0)).unwrap();
    assert_eq!(file(), format!("{new}{old}"));
    // rotation_overlap ends: the endpoint was not verified since, so the old CA stays.
    d.passed().await;
    assert!(rotated.elapsed() >= std::time::Duration::from_secs(1));
    assert_eq!(file(), format!("{new}{old}"), "{}", d.log());
    // rotation_overlap_max ends: it goes, whatever the endpoints show.
    d.passed().await;
    assert!(rotated.elapsed() >= std::time::Duration::from_secs(3));
    assert_eq!(file(), new, "{}", d.log());
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_probes_before_dropping_a_replaced_ca_and_keeps_it_while_the_endpoint_serves_its_chain()
 {
    let h = Harness::new(1).await;
    let (cert, key) = h.server_cert(0);
    let old_server = TlsServer::start(&cert, &key);
    let extra = Extra {
        // No plain overlap at all: only the endpoint's evidence keeps the old CA.
        sync: "rotation_overlap = \"0s\"",
        ..Extra::default()
    };
    h.with_endpoint_extra(Some(&format!("127.0.0.1:{}", old_server.port)), &extra);
    let old = h.expected_pem(0);
    let once = h.once().await;
    assert_eq!(code(&once), 0, "{}", all_output(&once));
    h.sim.rotate(&h.id(0), "international");
    let new = h.expected_pem(0);
    let file = || std::fs::read_to_string(h.file(0)).unwrap();

    // The rotation's pass: the endpoint was not verified since, so the old CA stays.
    let once = h.once().await;
    assert_eq!(code(&once), 0, "{}", all_output(&once));
    assert_eq!(file(), format!("{new}{old}"));
    // The next: rotation_overlap has passed, so the endpoint is probed first; it still
    // serves the old chain.
    let once = h.once().await;
    assert!(
        stderr(&once).contains("probing the endpoints"),
        "{}",
        all_output(&once)
    );
    assert_eq!(file(), format!("{new}{old}"), "{}", all_output(&once));

    // The server moves to the new chain: the probe shows it, and the old CA goes.
    let (cert, key) = h.server_cert(0);
    let new_server = TlsServer::start(&cert, &key);
    h.with_endpoint_extra(Some(&format!("127.0.0.1:{}", new_server.port)), &extra);
    let once = h.once().await;
    assert_eq!(code(&once), 0, "{}", all_output(&once));
    assert_eq!(file(), new, "{}", all_output(&once));
}
