//! The simulator's cloud-facing behaviour over real TLS on loopback, checked with curl and openssl:
//! the download-link API, the OBS links, categories and CAs; the faults are `faults.rs`'s.
// A test crate: its helpers are private to it, and `pub` only says which of them the test
// modules share, so the library's `unreachable_pub` rule does not apply here.
#![allow(unreachable_pub)]

mod common;

use certsync_sim::{SimOptions, Simulator};
use common::{api_url, curl, fingerprint, link_of, list, openssl, subject};

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
async fn success_path_lists_a_fresh_link_that_downloads_the_ca() {
    let sim = sim(2).await;
    let ids = sim.instance_ids();
    assert_eq!(ids.len(), 2);
    for id in &ids {
        assert_eq!(id.len(), 36, "{id}");
        assert!(id.ends_with("in06"), "{id}");
        assert!(
            id[..32]
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{id}"
        );
    }
    assert!(sim.endpoint().starts_with("https://127.0.0.1:"));
    assert_eq!(sim.endpoint(), format!("https://{}", sim.addr()));
    assert_eq!(sim.project_id().len(), 32);

    let id = &ids[0];
    let resp = list(&sim, id).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        resp.header("content-type"),
        Some("application/json;charset=UTF-8")
    );
    resp.request_id();
    let json = resp.json();
    let certs = json["certs"].as_array().unwrap();
    assert_eq!(certs.len(), 1);
    assert_eq!(certs[0]["category"], "international");
    let link = certs[0]["download_link"].as_str().unwrap();
    let prefix = format!(
        "{}/obs/certsync-sim-bucket/{id}/international/ca.crt?AccessKeyId=SIMOBSAK&Expires=",
        sim.endpoint()
    );
    assert!(link.starts_with(&prefix), "{link}");
    assert!(link.contains("&Signature="), "{link}");

    let download = curl(&sim, &[], link).await;
    assert_eq!(download.status, 200);
    assert_eq!(
        download.header("content-type"),
        Some("application/x-x509-ca-cert")
    );
    download.request_id();
    let ca = sim.ca(id, "international");
    assert_eq!(download.body, ca.pem.as_bytes());
    assert_eq!(fingerprint(&download.body).await, ca.sha256_hex);
    assert_eq!(
        subject(&download.body).await,
        format!("subject=CN = GaussDB NoSQL CA {id} international, O = Huawei Cloud Simulator")
    );
    let (_, text) = openssl(&["x509", "-noout", "-text"], &download.body).await;
    assert!(text.contains("CA:TRUE"), "{text}");

    let stats = sim.stats();
    assert_eq!(
        (stats.api_requests, stats.unauthorized, stats.downloads),
        (1, 0, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_missing_or_rotated_token_gets_401() {
    let sim = sim(1).await;
    let id = first(&sim);
    let url = api_url(&sim, &id);

    let wrong = curl(&sim, &["-H", "X-Auth-Token: not-the-token"], &url).await;
    assert_eq!(wrong.status, 401);
    let rid = wrong.request_id();
    let body = wrong.json();
    assert_eq!(body["error_code"], "APIGW.0301");
    assert_eq!(
        body["error_msg"],
        "Incorrect IAM authentication information: decrypt token fail"
    );
    assert_eq!(body["request_id"], rid.as_str());

    let missing = curl(&sim, &[], &url).await;
    assert_eq!(missing.status, 401);
    assert_eq!(missing.json()["error_code"], "APIGW.0301");

    let old = sim.token();
    sim.set_token("MIInew-token");
    assert_eq!(sim.token(), "MIInew-token");
    let stale = curl(&sim, &["-H", &format!("X-Auth-Token: {old}")], &url).await;
    assert_eq!(stale.status, 401);
    assert_eq!(list(&sim, &id).await.status, 200);

    let stats = sim.stats();
    assert_eq!((stats.api_requests, stats.unauthorized), (4, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_for_another_project_gets_401() {
    let sim = Simulator::start(SimOptions {
        token: Some("MIIfixed".into()),
        project_id: Some("0123456789abcdef0123456789abcdef".into()),
        ..SimOptions::default()
    })
    .await
    .unwrap();
    assert_eq!(sim.token(), "MIIfixed");
    assert_eq!(sim.project_id(), "0123456789abcdef0123456789abcdef");
    let url = format!(
        "{}/v3/ffffffffffffffffffffffffffffffff/instances/{}/ssl-cert/download-link",
        sim.endpoint(),
        first(&sim)
    );
    let resp = curl(&sim, &["-H", "X-Auth-Token: MIIfixed"], &url).await;
    assert_eq!(resp.status, 401);
    let body = resp.json();
    assert_eq!(body["error_code"], "APIGW.0301");
    assert!(
        body["error_msg"]
            .as_str()
            .unwrap()
            .contains("token does not match project"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_or_removed_instance_and_unknown_path_get_404() {
    let sim = sim(1).await;
    let unknown = list(&sim, "0000000000000000000000000000000in06").await;
    assert_eq!(unknown.status, 404);
    unknown.request_id();
    let body = unknown.json();
    assert_eq!(body["error_code"], "DBS.200002");
    assert_eq!(
        body["error_msg"],
        "The instance does not exist or has been deleted."
    );

    let id = first(&sim);
    let link = link_of(&sim, &id, "international").await;
    sim.remove_instance(&id);
    assert!(sim.instance_ids().is_empty());
    assert_eq!(list(&sim, &id).await.json()["error_code"], "DBS.200002");
    let gone = curl(&sim, &[], &link).await;
    assert_eq!(gone.status, 404);
    assert!(
        gone.text().contains("<Code>NoSuchKey</Code>"),
        "{}",
        gone.text()
    );

    let token = format!("X-Auth-Token: {}", sim.token());
    let path = curl(
        &sim,
        &["-H", &token],
        &format!("{}/v3/{}/nothing", sim.endpoint(), sim.project_id()),
    )
    .await;
    assert_eq!(path.status, 404);
    assert_eq!(path.json()["error_code"], "APIGW.0101");
    let method = curl(&sim, &["-X", "DELETE", "-H", &token], &api_url(&sim, "x")).await;
    assert_eq!(method.status, 404);
    assert_eq!(method.json()["error_code"], "APIGW.0101");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_incomplete_or_foreign_links_get_403() {
    let sim = sim(2).await;
    let ids = sim.instance_ids();
    let link = link_of(&sim, &ids[0], "international").await;

    let (head, sig) = link.split_once("Signature=").unwrap();
    let flipped = if sig.starts_with('A') { 'B' } else { 'A' };
    let tampered = format!("{head}Signature={flipped}{}", &sig[1..]);
    let resp = curl(&sim, &[], &tampered).await;
    assert_eq!(resp.status, 403);
    assert_eq!(resp.header("content-type"), Some("application/xml"));
    assert!(
        resp.text().contains("<Code>SignatureDoesNotMatch</Code>"),
        "{}",
        resp.text()
    );

    // A valid query moved to another object does not open it.
    let other = link.replace(&ids[0], &ids[1]);
    let resp = curl(&sim, &[], &other).await;
    assert_eq!(resp.status, 403);
    assert!(resp.text().contains("SignatureDoesNotMatch"));

    let bare = link.split_once('?').unwrap().0;
    let resp = curl(&sim, &[], bare).await;
    assert_eq!(resp.status, 403);
    assert!(
        resp.text().contains("<Code>AccessDenied</Code>"),
        "{}",
        resp.text()
    );
    assert_eq!(sim.stats().downloads, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_category_has_its_own_ca() {
    let sim = sim(1).await;
    let id = first(&sim);
    sim.set_categories(&id, &["international", "national"]);
    let a = link_of(&sim, &id, "national").await;
    assert!(a.contains("/national/ca.crt?"), "{a}");
    let intl_link = link_of(&sim, &id, "international").await;
    let intl = curl(&sim, &[], &intl_link).await;
    let national = curl(&sim, &[], &a).await;
    assert_eq!(national.body, sim.ca(&id, "national").pem.as_bytes());
    assert_ne!(intl.body, national.body);
    assert_eq!(
        subject(&national.body).await,
        format!("subject=CN = GaussDB NoSQL CA {id} national, O = Huawei Cloud Simulator")
    );
    sim.set_categories(&id, &["national"]);
    let json = list(&sim, &id).await.json();
    assert_eq!(json["certs"].as_array().unwrap().len(), 1);
    assert_eq!(json["certs"][0]["category"], "national");
    // The link of a dropped category no longer resolves.
    let gone = curl(&sim, &[], &intl_link).await;
    assert_eq!(gone.status, 404);
    assert!(gone.text().contains("<Code>NoSuchKey</Code>"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotate_changes_key_and_fingerprint_but_keeps_subject() {
    let sim = sim(1).await;
    let id = first(&sim);
    let before = curl(&sim, &[], &link_of(&sim, &id, "international").await)
        .await
        .body;
    let rotated = sim.rotate(&id, "international");
    let after = curl(&sim, &[], &link_of(&sim, &id, "international").await)
        .await
        .body;
    assert_eq!(after, rotated.pem.as_bytes());
    assert_eq!(sim.ca(&id, "international").sha256_hex, rotated.sha256_hex);
    assert_ne!(fingerprint(&before).await, fingerprint(&after).await);
    assert_eq!(fingerprint(&after).await, rotated.sha256_hex);
    assert_eq!(subject(&before).await, subject(&after).await);
    let serial =
        |pem: Vec<u8>| async move { openssl(&["x509", "-noout", "-serial"], &pem).await.1 };
    assert_ne!(serial(before.clone()).await, serial(after.clone()).await);
    let pubkey =
        |pem: Vec<u8>| async move { openssl(&["x509", "-noout", "-pubkey"], &pem).await.1 };
    assert_ne!(pubkey(before).await, pubkey(after).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issued_server_cert_chains_to_the_instance_ca() {
    let sim = sim(1).await;
    let id = first(&sim);
    let (cert, key) = sim.issue_server_cert(&id, "international", &["127.0.0.1", "db.example"]);
    assert!(key.contains("PRIVATE KEY"));
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, sim.ca(&id, "international").pem).unwrap();
    let (ok, out) = openssl(
        &["verify", "-CAfile", ca_path.to_str().unwrap()],
        cert.as_bytes(),
    )
    .await;
    assert!(ok, "{out}");
    let (_, text) = openssl(
        &["x509", "-noout", "-ext", "subjectAltName"],
        cert.as_bytes(),
    )
    .await;
    assert!(
        text.contains("IP Address:127.0.0.1") && text.contains("DNS:db.example"),
        "{text}"
    );
    // The simulator's own TLS root does not vouch for it.
    let (ok, _) = openssl(
        &["verify", "-CAfile", sim.ca_file().to_str().unwrap()],
        cert.as_bytes(),
    )
    .await;
    assert!(!ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_can_get_any_common_name_and_rotation_keeps_it() {
    let sim = sim(1).await;
    let id = first(&sim);
    let name = "evil\nforged line \u{1b}[31mred";
    let named = sim.rotate_named(&id, "international", name);
    let contains = |der: &[u8], needle: &[u8]| der.windows(needle.len()).any(|w| w == needle);
    assert!(
        contains(&named.der, name.as_bytes()),
        "the name is used as given"
    );
    let served = curl(&sim, &[], &link_of(&sim, &id, "international").await)
        .await
        .body;
    assert_eq!(served, named.pem.as_bytes());
    assert!(subject(&served).await.contains("evil"));
    let rotated = sim.rotate(&id, "international");
    assert_ne!(rotated.sha256_hex, named.sha256_hex);
    assert!(
        contains(&rotated.der, name.as_bytes()),
        "rotation keeps the name"
    );

    // Through the control API: the name in the query, percent-encoded.
    let resp = curl(
        &sim,
        &["-X", "POST"],
        &format!(
            "{}/_sim/instances/{id}/rotate?category=international&common_name=tab%09here",
            sim.endpoint()
        ),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(
        resp.json()["subject"],
        "CN=tab\there, O=Huawei Cloud Simulator"
    );
    assert!(contains(&sim.ca(&id, "international").der, b"tab\there"));
}
