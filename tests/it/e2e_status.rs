//! End-to-end: `certsync status [--json]` (SPEC 2) against a running daemon: the table shows
//! each instance's file, CA fingerprint, notAfter and days left, the overlap CA with the time
//! it leaves, the endpoint's verification and the next pass; it exits 1 once an instance
//! fails, and when the daemon cannot be reached.

use rustix::process::Signal;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_prints_the_daemons_files_overlap_endpoints_and_next_pass_and_fails_with_it() {
    let h = Harness::new(1).await;
    let id = h.id(0);
    let (cert, key) = h.server_cert(0);
    let server = TlsServer::start(&cert, &key);
    let endpoint = format!("127.0.0.1:{}", server.port);
    h.with_endpoint(Some(&endpoint), "");
    let old = h.sim.ca(&id, "international").sha256_hex;
    let mut d = Running::start(&h.config, &["run"]);
    d.passed().await;
    d.wait_for("endpoint verified").await;
    let new = h.sim.rotate(&id, "international").sha256_hex;
    d.signal(Signal::USR1);
    d.passed().await;

    let out = h.certsync(&["status"]).await;
    let text = stdout(&out);
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert!(text.starts_with("ready: yes\n"), "{text}");
    assert!(text.contains("next pass: 20"), "{text}");
    let file = h.file(0).display().to_string();
    let row = text
        .lines()
        .find(|l| l.starts_with("inst0 ") && l.contains(&file))
        .unwrap_or_else(|| panic!("no row of inst0's file:\n{text}"));
    assert!(row.contains("international") && row.contains(&new), "{row}");
    // notAfter and whole days left (the simulator's CAs live for years).
    assert!(
        row.contains("Z  ")
            && row
                .split_whitespace()
                .any(|w| w.parse::<i64>().is_ok_and(|d| d > 300)),
        "{row}"
    );
    let overlap = text
        .lines()
        .find(|l| l.contains("overlap") && l.contains(&old))
        .unwrap_or_else(|| panic!("no overlap row of the old CA:\n{text}"));
    assert!(overlap.contains("leaves 20"), "{overlap}");
    let probe = text
        .lines()
        .find(|l| l.contains(&endpoint))
        .unwrap_or_else(|| panic!("no row of the endpoint:\n{text}"));
    assert!(probe.contains("verified"), "{probe}");

    let out = h.certsync(&["status", "--json"]).await;
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let category = &doc["instances"][0]["categories"][0];
    assert_eq!(category["fingerprints"][0], new.as_str(), "{doc}");
    assert_eq!(category["overlap"][0]["sha256"], old.as_str(), "{doc}");
    assert_eq!(category["overlap"][0]["kept_by_endpoints"], false, "{doc}");
    assert!(doc["next_pass"].as_str().is_some(), "{doc}");
    assert_eq!(doc["endpoints"][0]["endpoint"], endpoint.as_str(), "{doc}");

    // An instance that fails makes status fail, with the error in the table.
    h.sim.set_fault(
        &id,
        certsync_sim::Fault::ApiStatus {
            status: 500,
            times: None,
        },
    );
    d.signal(Signal::USR1);
    d.passed().await;
    let out = h.certsync(&["status"]).await;
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    assert!(stdout(&out).contains("500"), "{}", stdout(&out));

    // No daemon: exit 1, saying where it asked.
    d.stop().await;
    let out = h.certsync(&["status"]).await;
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    assert!(
        stderr(&out).contains("cannot read the daemon's status at http://127.0.0.1:"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_without_server_listen_says_so() {
    let h = Harness::new(1).await;
    let out = h.certsync(&["status"]).await;
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    assert!(
        stderr(&out).contains("server.listen is not set"),
        "{}",
        stderr(&out)
    );
}
