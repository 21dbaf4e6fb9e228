//! The gateway's per-user throttling over real TLS: a burst over the limit gets 429 `APIG.0308`
//! until the bucket refills, `Retry-After` only when set, users throttled apart (and temporary
//! credentials counted against their owner), authentication before throttling, what is not
//! throttled, the count in `Stats`, and the control API's rate-limit endpoints.
// A test crate: its helpers are private to it, and `pub` only says which of them the test
// modules share, so the library's `unreachable_pub` rule does not apply here.
#![allow(unreachable_pub)]

mod common;

use std::time::{Duration, Instant};

use certsync_sim::{RateLimit, SimOptions, Simulator};
use common::{KeepAlive, KeepResp, Signed, api_url, curl, list_instances_url};

const AK: &str = "AKTHROTTLE0000000001";
const SK: &str = "SKthrottle";

async fn sim(limit: Option<RateLimit>) -> Simulator {
    Simulator::start(SimOptions {
        ak_sk: Some((AK.into(), SK.into())),
        rate_limit: limit,
        ..SimOptions::default()
    })
    .await
    .expect("simulator starts")
}

fn limit(per_second: u32, retry_after: Option<u32>) -> Option<RateLimit> {
    Some(RateLimit {
        per_second,
        retry_after,
    })
}

fn token(t: &str) -> Vec<(String, String)> {
    vec![("X-Auth-Token".to_owned(), t.to_owned())]
}

/// Asserts `resp` is the gateway's throttling answer for `limit` a second.
fn assert_throttled(resp: &KeepResp, limit: u32) {
    assert_eq!(resp.status, 429, "{}", resp.text());
    let body = resp.json();
    assert_eq!(body["error_code"], "APIG.0308");
    assert_eq!(
        body["error_msg"],
        format!(
            "The throttling threshold has been reached: policy user over ratelimit,limit:{limit},time:1 second"
        )
    );
    let id = resp.header("x-request-id").expect("X-Request-Id");
    assert_eq!(id.len(), 32);
    assert_eq!(body["request_id"], id);
    assert_eq!(
        resp.header("content-type"),
        Some("application/json;charset=UTF-8")
    );
}

/// Repeats a GET of `url` until it answers 200, asserting every other answer is a 429; fails
/// after a deadline far past any refill of a bucket of 1 a second or more. Returns the 429s seen.
async fn until_admitted(conn: &mut KeepAlive, url: &str, headers: &[(String, String)]) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut refused = 0;
    loop {
        let resp = conn.request("GET", url, headers, b"").await;
        if resp.status == 200 {
            return refused;
        }
        assert_eq!(resp.status, 429, "{}", resp.text());
        refused += 1;
        assert!(Instant::now() < deadline, "still throttled after 10 s");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_over_the_limit_gets_429_until_the_bucket_refills() {
    let sim = sim(limit(2, None)).await;
    assert_eq!(sim.rate_limit(), limit(2, None));
    let url = api_url(&sim, &sim.instance_ids()[0]);
    let fixed = token(&sim.token());
    let mut conn = KeepAlive::connect(&sim).await;

    // The bucket starts full: a burst of `per_second`, then 429.
    for _ in 0..2 {
        let ok = conn.request("GET", &url, &fixed, b"").await;
        assert_eq!(ok.status, 200, "{}", ok.text());
    }
    let refused = conn.request("GET", &url, &fixed, b"").await;
    assert_throttled(&refused, 2);
    assert!(refused.header("retry-after").is_none());
    let stats = sim.stats();
    assert_eq!((stats.throttled, stats.api_requests), (1, 3));

    // Refilled at 2 a second: admitted again without a restart or a change.
    let more = until_admitted(&mut conn, &url, &fixed).await;
    assert_eq!(sim.stats().throttled, 1 + more);

    // ListInstances draws on the same bucket.
    let list = list_instances_url(&sim, &[]);
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(conn.request("GET", &list, &fixed, b"").await.status);
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    assert_eq!(sim.stats().list_requests, 3);

    // No limit: no throttling.
    sim.set_rate_limit(None);
    for _ in 0..20 {
        assert_eq!(conn.request("GET", &url, &fixed, b"").await.status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_sent_only_when_set() {
    let sim = sim(limit(1, Some(7))).await;
    let url = api_url(&sim, &sim.instance_ids()[0]);
    let fixed = token(&sim.token());
    let mut conn = KeepAlive::connect(&sim).await;
    assert_eq!(conn.request("GET", &url, &fixed, b"").await.status, 200);
    let refused = conn.request("GET", &url, &fixed, b"").await;
    assert_throttled(&refused, 1);
    assert_eq!(refused.header("retry-after"), Some("7"));

    // A new limit starts every bucket full again.
    sim.set_rate_limit(limit(1, None));
    assert_eq!(conn.request("GET", &url, &fixed, b"").await.status, 200);
    let refused = conn.request("GET", &url, &fixed, b"").await;
    assert_throttled(&refused, 1);
    assert!(refused.header("retry-after").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_throttled_apart_and_temporary_keys_count_for_their_owner() {
    let sim = sim(limit(1, None)).await;
    sim.add_token("MIIextra-user");
    sim.add_ak_sk_user("AKEXTRA0000000000001", "SKextra");
    let url = api_url(&sim, &sim.instance_ids()[0]);
    let mut conn = KeepAlive::connect(&sim).await;

    let fixed = token(&sim.token());
    let extra = token("MIIextra-user");
    let signed = Signed::get(&url);
    // Each user's first request passes, its second does not, whatever the others did.
    assert_eq!(conn.request("GET", &url, &fixed, b"").await.status, 200);
    assert_eq!(conn.request("GET", &url, &fixed, b"").await.status, 429);
    assert_eq!(conn.request("GET", &url, &extra, b"").await.status, 200);
    assert_eq!(conn.signed(&signed, AK, SK).await.status, 200);
    let extra_signed = conn
        .signed(&signed, "AKEXTRA0000000000001", "SKextra")
        .await;
    assert_eq!(extra_signed.status, 200, "{}", extra_signed.text());
    assert_eq!(conn.request("GET", &url, &extra, b"").await.status, 429);
    assert_throttled(&conn.signed(&signed, AK, SK).await, 1);
    assert_eq!(
        conn.signed(&signed, "AKEXTRA0000000000001", "SKextra")
            .await
            .status,
        429
    );

    // Temporary credentials from the metadata service belong to the account: its bucket is
    // empty, so they are throttled too (the metadata service itself is not).
    let session = curl(
        &sim,
        &["-X", "PUT", "-H", "X-Metadata-Token-Ttl-Seconds: 60"],
        &format!("{}/meta-data/latest/api/token", sim.metadata_endpoint()),
    )
    .await;
    assert_eq!(session.status, 200);
    let key = curl(
        &sim,
        &["-H", &format!("X-Metadata-Token: {}", session.text())],
        &format!("{}/openstack/latest/securitykey", sim.metadata_endpoint()),
    )
    .await;
    assert_eq!(key.status, 200, "{}", key.text());
    let c = &key.json()["credential"];
    let temporary =
        Signed::get(&url).header("X-Security-Token", c["securitytoken"].as_str().unwrap());
    let resp = conn
        .signed(
            &temporary,
            c["access"].as_str().unwrap(),
            c["secret"].as_str().unwrap(),
        )
        .await;
    assert_throttled(&resp, 1);
    assert_eq!(sim.stats().throttled, 5);

    // Credentials are checked first: bad or missing ones get 401 even for an empty bucket,
    // and are not counted as throttled.
    assert_eq!(
        conn.request("GET", &url, &token("MIIwrong"), b"")
            .await
            .status,
        401
    );
    assert_eq!(conn.request("GET", &url, &[], b"").await.status, 401);
    assert_eq!(conn.signed(&signed, AK, "SKwrong").await.status, 401);
    let stats = sim.stats();
    assert_eq!((stats.throttled, stats.unauthorized), (5, 3));
}

fn password_body(password: &str) -> Vec<u8> {
    serde_json::json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "domain": {"name": "acme"}, "name": "alice", "password": password}}},
        "scope": {"project": {"name": "cn-north-4"}}}})
    .to_string()
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_requests_are_throttled_per_user_after_the_password_check() {
    let sim = sim(limit(1, Some(3))).await;
    sim.add_iam_user("alice", "acme", "pw");
    let tokens_url = format!("{}/v3/auth/tokens", sim.endpoint());
    let json = vec![("Content-Type".to_owned(), "application/json".to_owned())];
    let mut conn = KeepAlive::connect(&sim).await;

    let issued = conn
        .request("POST", &tokens_url, &json, &password_body("pw"))
        .await;
    assert_eq!(issued.status, 201, "{}", issued.text());
    let alice = issued.header("x-subject-token").unwrap().to_owned();
    // A wrong password is refused as such, not throttled: it is nobody's request.
    let wrong = conn
        .request("POST", &tokens_url, &json, &password_body("bad"))
        .await;
    assert_eq!(wrong.status, 401, "{}", wrong.text());
    let again = conn
        .request("POST", &tokens_url, &json, &password_body("pw"))
        .await;
    assert_throttled(&again, 1);
    assert_eq!(again.header("retry-after"), Some("3"));
    // The token IAM issued is alice's: same bucket.
    let url = api_url(&sim, &sim.instance_ids()[0]);
    assert_throttled(&conn.request("GET", &url, &token(&alice), b"").await, 1);
    let stats = sim.stats();
    assert_eq!(
        (
            stats.throttled,
            stats.iam_tokens_issued,
            stats.iam_token_failures
        ),
        (2, 1, 1)
    );

    // Project lookups count against their caller.
    let projects = format!("{}/v3/projects", sim.endpoint());
    let lookup = Signed::get(&projects);
    assert_eq!(conn.signed(&lookup, AK, SK).await.status, 200);
    assert_throttled(&conn.signed(&lookup, AK, SK).await, 1);
    assert_eq!(sim.stats().project_lookups, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_metadata_and_control_are_not_throttled() {
    let sim = sim(limit(1, None)).await;
    let id = sim.instance_ids()[0].clone();
    let mut conn = KeepAlive::connect(&sim).await;
    let links = conn
        .request("GET", &api_url(&sim, &id), &token(&sim.token()), b"")
        .await;
    assert_eq!(links.status, 200);
    let link = links.json()["certs"][0]["download_link"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..5 {
        let (status, body) = conn.get(&link, None).await;
        assert_eq!(status, 200);
        assert_eq!(body, sim.ca(&id, "international").pem.as_bytes());
        let (status, _) = conn
            .get(&format!("{}/_sim/state", sim.endpoint()), None)
            .await;
        assert_eq!(status, 200);
    }
    for _ in 0..3 {
        let session = curl(
            &sim,
            &["-X", "PUT", "-H", "X-Metadata-Token-Ttl-Seconds: 60"],
            &format!("{}/meta-data/latest/api/token", sim.metadata_endpoint()),
        )
        .await;
        assert_eq!(session.status, 200);
    }
    let stats = sim.stats();
    assert_eq!((stats.throttled, stats.downloads), (0, 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_api_sets_and_clears_the_rate_limit() {
    let sim = sim(None).await;
    let control = |path: &str| format!("{}/_sim/{path}", sim.endpoint());
    let state = curl(&sim, &[], &control("state")).await.json();
    assert!(state["rate_limit"].is_null());
    assert_eq!(state["stats"]["throttled"], 0);

    let set = curl(
        &sim,
        &[
            "-X",
            "PUT",
            "--data-binary",
            r#"{"per_second": 1, "retry_after": 2}"#,
        ],
        &control("rate-limit"),
    )
    .await;
    assert_eq!(set.status, 204, "{}", set.text());
    assert_eq!(sim.rate_limit(), limit(1, Some(2)));
    let state = curl(&sim, &[], &control("state")).await.json();
    assert_eq!(
        state["rate_limit"],
        serde_json::json!({"per_second": 1, "retry_after": 2})
    );

    let url = api_url(&sim, &sim.instance_ids()[0]);
    let mut conn = KeepAlive::connect(&sim).await;
    assert_eq!(conn.get(&url, Some(&sim.token())).await.0, 200);
    assert_eq!(conn.get(&url, Some(&sim.token())).await.0, 429);
    assert_eq!(
        curl(&sim, &[], &control("state")).await.json()["stats"]["throttled"],
        1
    );

    // retry_after may be left out.
    let without = curl(
        &sim,
        &["-X", "PUT", "--data-binary", r#"{"per_second": 5}"#],
        &control("rate-limit"),
    )
    .await;
    assert_eq!(without.status, 204, "{}", without.text());
    assert_eq!(sim.rate_limit(), limit(5, None));
    for bad in [r#"{"per_second": -1}"#, r#"{"retry_after": 1}"#, "[]"] {
        let resp = curl(
            &sim,
            &["-X", "PUT", "--data-binary", bad],
            &control("rate-limit"),
        )
        .await;
        assert_eq!(resp.status, 400, "{bad}: {}", resp.text());
    }
    assert_eq!(sim.rate_limit(), limit(5, None));

    let cleared = curl(&sim, &["-X", "DELETE"], &control("rate-limit")).await;
    assert_eq!(cleared.status, 204);
    assert_eq!(sim.rate_limit(), None);
    for _ in 0..10 {
        assert_eq!(conn.get(&url, Some(&sim.token())).await.0, 200);
    }
}
