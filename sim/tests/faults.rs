//! The per-instance faults over real TLS on loopback, checked with curl and openssl: error
//! statuses and throttling answers that count down, slow, truncated, oversize and wrong
//! contents, redirects and expired links.
// A test crate: its helpers are private to it, and `pub` only says which of them the test
// modules share, so the library's `unreachable_pub` rule does not apply here.
#![allow(unreachable_pub)]

mod common;

use certsync_sim::{BadContent, Fault, SimOptions, Simulator};
use common::{curl, link_of, list, openssl, subject};

async fn sim(instances: usize) -> Simulator {
    Simulator::start(SimOptions {
        instances,
        ..SimOptions::default()
    })
    .await
    .expect("simulator starts")
}

fn first(sim: &Simulator) -> String {
    sim.instance_ids()[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_status_fault_counts_down_then_clears() {
    let sim = sim(1).await;
    let id = first(&sim);
    sim.set_fault(
        &id,
        Fault::ApiStatus {
            status: 503,
            times: Some(2),
        },
    );
    for _ in 0..2 {
        let resp = list(&sim, &id).await;
        assert_eq!(resp.status, 503);
        resp.request_id();
        let body = resp.json();
        assert!(
            body["error_code"].as_str().unwrap().starts_with("DBS."),
            "{body}"
        );
        assert!(body["error_msg"].is_string());
    }
    assert_eq!(list(&sim, &id).await.status, 200);

    sim.set_fault(
        &id,
        Fault::ApiStatus {
            status: 403,
            times: None,
        },
    );
    for _ in 0..3 {
        let resp = list(&sim, &id).await;
        assert_eq!(resp.status, 403);
        assert_eq!(resp.json()["error_code"], "DBS.200019");
    }
    sim.clear_fault(&id);
    assert_eq!(list(&sim, &id).await.status, 200);

    sim.set_fault(
        &id,
        Fault::ApiStatus {
            status: 401,
            times: Some(1),
        },
    );
    let resp = list(&sim, &id).await;
    assert_eq!(resp.status, 401);
    assert_eq!(resp.json()["error_code"], "APIGW.0301");
    assert_eq!(sim.stats().unauthorized, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_fault_sends_retry_after() {
    let sim = sim(2).await;
    let ids = sim.instance_ids();
    sim.set_fault(
        &ids[0],
        Fault::RateLimited {
            retry_after_secs: 7,
            times: Some(1),
        },
    );
    let resp = list(&sim, &ids[0]).await;
    assert_eq!(resp.status, 429);
    assert_eq!(resp.header("retry-after"), Some("7"));
    let rid = resp.request_id();
    let body = resp.json();
    assert_eq!(body["error_code"], "APIG.0308");
    assert!(
        body["error_msg"]
            .as_str()
            .unwrap()
            .contains("throttling threshold")
    );
    assert_eq!(body["request_id"], rid.as_str());
    // Faults are per instance.
    assert_eq!(list(&sim, &ids[1]).await.status, 200);
    assert_eq!(list(&sim, &ids[0]).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_api_and_slow_download_delay_only_their_instance() {
    // Ordering, not wall time: the other instance's answer comes while the slow one is still
    // pending (the delay is long enough that a loaded machine cannot blur the two).
    let sim = sim(2).await;
    let ids = sim.instance_ids();
    sim.set_fault(&ids[0], Fault::SlowApi { millis: 4_000 });
    let slow = {
        let sim = sim.clone();
        let id = ids[0].clone();
        tokio::spawn(async move { list(&sim, &id).await })
    };
    assert_eq!(list(&sim, &ids[1]).await.status, 200);
    assert!(!slow.is_finished(), "the slow instance answered first");
    slow.abort();

    let link = link_of(&sim, &ids[0], "international").await;
    sim.set_fault(&ids[0], Fault::SlowDownload { millis: 4_000 });
    let other_link = link_of(&sim, &ids[1], "international").await;
    let slow = {
        let sim = sim.clone();
        tokio::spawn(async move { curl(&sim, &[], &link).await })
    };
    let fast = curl(&sim, &[], &other_link).await;
    assert_eq!(fast.body, sim.ca(&ids[1], "international").pem.as_bytes());
    assert!(!slow.is_finished(), "the slow download finished first");
    slow.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_download_closes_after_half_the_announced_length() {
    let sim = sim(1).await;
    let id = first(&sim);
    sim.set_fault(&id, Fault::TruncatedDownload);
    let link = link_of(&sim, &id, "international").await;
    let resp = curl(&sim, &[], &link).await;
    let full = sim.ca(&id, "international").pem.len();
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("content-length"),
        Some(full.to_string().as_str())
    );
    assert_ne!(resp.curl_exit, 0, "curl must notice the short body");
    assert_eq!(resp.body.len(), full / 2);
    assert_eq!(
        resp.body,
        &sim.ca(&id, "international").pem.as_bytes()[..full / 2]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_download_has_the_requested_size() {
    let sim = sim(1).await;
    let id = first(&sim);
    sim.set_fault(&id, Fault::OversizeDownload { bytes: 2_000_000 });
    let resp = curl(&sim, &[], &link_of(&sim, &id, "international").await).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body.len(), 2_000_000);
    assert!(
        resp.body
            .starts_with(sim.ca(&id, "international").pem.as_bytes())
    );
    assert_eq!(sim.stats().downloads, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_download_contents() {
    let sim = sim(1).await;
    let id = first(&sim);
    let ca = sim.ca(&id, "international");
    let fetch = |content| {
        let sim = sim.clone();
        let id = id.clone();
        async move {
            sim.set_fault(&id, Fault::Content { content });
            let resp = curl(&sim, &[], &link_of(&sim, &id, "international").await).await;
            assert_eq!(resp.status, 200);
            resp
        }
    };

    let html = fetch(BadContent::Html).await;
    assert!(
        html.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        html.text().starts_with("<!DOCTYPE html>"),
        "{}",
        html.text()
    );

    let with_key = fetch(BadContent::CaWithPrivateKey).await;
    assert!(with_key.body.starts_with(ca.pem.as_bytes()));
    assert!(with_key.text().ends_with(&ca.key_pem));
    assert!(with_key.text().contains("-----BEGIN PRIVATE KEY-----"));

    let leaf = fetch(BadContent::NotCa).await;
    let (ok, text) = openssl(&["x509", "-noout", "-text"], &leaf.body).await;
    assert!(ok);
    assert!(text.contains("CA:FALSE"), "{text}");
    let (_, issuer) = openssl(&["x509", "-noout", "-issuer"], &leaf.body).await;
    assert_eq!(
        issuer.trim(),
        subject(ca.pem.as_bytes())
            .await
            .replacen("subject=", "issuer=", 1)
    );

    let expired = fetch(BadContent::Expired).await;
    let (still_valid, _) = openssl(&["x509", "-noout", "-checkend", "0"], &expired.body).await;
    assert!(!still_valid, "the expired CA must fail -checkend 0");
    let (valid_now, _) = openssl(&["x509", "-noout", "-checkend", "0"], ca.pem.as_bytes()).await;
    assert!(valid_now);
    let (_, text) = openssl(&["x509", "-noout", "-text"], &expired.body).await;
    assert!(text.contains("CA:TRUE"));
    assert_eq!(
        subject(&expired.body).await,
        subject(ca.pem.as_bytes()).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_api_contents() {
    let sim = sim(1).await;
    let id = first(&sim);
    sim.set_fault(
        &id,
        Fault::Content {
            content: BadContent::GarbageJson,
        },
    );
    let garbage = list(&sim, &id).await;
    assert_eq!(garbage.status, 200);
    assert!(serde_json::from_slice::<serde_json::Value>(&garbage.body).is_err());

    sim.set_fault(
        &id,
        Fault::Content {
            content: BadContent::EmptyCerts,
        },
    );
    let empty = list(&sim, &id).await;
    assert_eq!(empty.status, 200);
    assert_eq!(empty.json(), serde_json::json!({"certs": []}));

    sim.set_fault(&id, Fault::PlainHttpLink);
    let json = list(&sim, &id).await.json();
    let link = json["certs"][0]["download_link"].as_str().unwrap();
    let port = sim.addr().port();
    assert!(
        link.starts_with(&format!("http://127.0.0.1:{port}/obs/")),
        "{link}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_faults() {
    let sim = sim(1).await;
    let id = first(&sim);
    let port = sim.addr().port();
    sim.set_fault(&id, Fault::RedirectOtherHost);
    let link = link_of(&sim, &id, "international").await;
    let resp = curl(&sim, &[], &link).await;
    assert_eq!(resp.status, 302);
    let location = resp.header("location").unwrap();
    let expected = link.replacen(
        &format!("127.0.0.1:{port}"),
        &format!("localhost:{port}"),
        1,
    );
    assert_eq!(location, expected);
    assert_eq!(sim.stats().downloads, 0);

    sim.set_fault(&id, Fault::RedirectLoop);
    let link = link_of(&sim, &id, "international").await;
    let resp = curl(&sim, &[], &link).await;
    assert_eq!(resp.status, 302);
    let location = resp.header("location").unwrap();
    assert!(
        location.starts_with(&format!(
            "https://127.0.0.1:{port}/obs/certsync-sim-bucket/{id}/international/ca.crt?"
        )),
        "{location}"
    );
    assert!(location.ends_with("&hop=1"), "{location}");
    // A client following redirects never reaches a body: curl gives up at its limit (exit 47).
    let followed = curl(&sim, &["-L", "--max-redirs", "3"], &link).await;
    assert_eq!(followed.curl_exit, 47);
    assert_eq!(followed.status, 302);
    assert!(followed.header("location").unwrap().ends_with("&hop=4"));
    assert_eq!(sim.stats().downloads, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_link_fault_answers_obs_access_denied() {
    let sim = sim(1).await;
    let id = first(&sim);
    sim.set_fault(&id, Fault::ExpiredLink);
    let resp = curl(&sim, &[], &link_of(&sim, &id, "international").await).await;
    assert_eq!(resp.status, 403);
    assert_eq!(resp.header("content-type"), Some("application/xml"));
    let text = resp.text();
    assert!(text.contains("<Code>AccessDenied</Code>"), "{text}");
    assert!(
        text.contains("<Message>Request has expired</Message>"),
        "{text}"
    );
    sim.clear_fault(&id);
    let resp = curl(&sim, &[], &link_of(&sim, &id, "international").await).await;
    assert_eq!(resp.status, 200);
}
