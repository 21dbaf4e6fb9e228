//! The simulator's gateway authentication with AK/SK (requests signed by certsync-sign's signer,
//! sent by curl over real TLS) and IAM (`POST /v3/auth/tokens`, `GET /v3/projects`); the ECS
//! metadata service is `metadata.rs`'s.
// A test crate: its helpers are private to it, and `pub` only says which of them the test
// modules share, so the library's `unreachable_pub` rule does not apply here.
#![allow(unreachable_pub)]

mod common;

use std::time::{Duration, SystemTime};

use certsync_sim::{Project, SimOptions, Simulator};
use common::{
    Resp, SIGNATURE_FAIL, Signed, api_url, assert_denied, curl, iam_time, list_instances_url,
    send_with_headers,
};

const AK: &str = "AKSIMTEST00000000001";
const SK: &str = "SKsimtest000000000000000000000000000001";

async fn sim() -> Simulator {
    Simulator::start(SimOptions {
        instances: 2,
        ak_sk: Some((AK.to_owned(), SK.to_owned())),
        ..SimOptions::default()
    })
    .await
    .expect("simulator starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_signed_with_the_permanent_keys_are_accepted() {
    let sim = sim().await;
    assert_eq!((sim.ak(), sim.sk()), (AK.to_owned(), SK.to_owned()));
    let id = sim.instance_ids()[0].clone();
    let url = api_url(&sim, &id);

    let plain = Signed::get(&url).send(&sim, AK, SK).await;
    assert_eq!(plain.status, 200, "{}", plain.text());
    assert_eq!(plain.json()["certs"][0]["category"], "international");

    // As the SDK sends it: X-Project-Id and a User-Agent, both signed.
    let project = sim.project_id();
    let sdk_like = Signed::get(&url)
        .header("X-Project-Id", &project)
        .header("User-Agent", "huaweicloud-usdk-python/3.0")
        .send(&sim, AK, SK)
        .await;
    assert_eq!(sdk_like.status, 200, "{}", sdk_like.text());

    let list_url = list_instances_url(&sim, &[("offset", "0"), ("limit", "100")]);
    let list = Signed::get(&list_url).send(&sim, AK, SK).await;
    assert_eq!(list.status, 200, "{}", list.text());
    assert_eq!(list.json()["total_count"], 2);

    // Signed 14 minutes ago: still inside APIG's window.
    let recent = Signed {
        at: SystemTime::now() - Duration::from_secs(14 * 60),
        ..Signed::get(&url)
    }
    .send(&sim, AK, SK)
    .await;
    assert_eq!(recent.status, 200, "{}", recent.text());

    let stats = sim.stats();
    assert_eq!(
        (stats.api_requests, stats.list_requests, stats.unauthorized),
        (3, 1, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_signature_unknown_key_and_stale_date_get_401() {
    let sim = sim().await;
    let ids = sim.instance_ids();
    let url = api_url(&sim, &ids[0]);

    let wrong_sk = Signed::get(&url).send(&sim, AK, "SKwrong").await;
    assert_denied(&wrong_sk, SIGNATURE_FAIL);

    // APIG echoes the unknown key in its message.
    let unknown = Signed::get(&url)
        .send(&sim, "AKUNKNOWN00000000001", SK)
        .await;
    assert_denied(&unknown, "ak AKUNKNOWN00000000001 not exist");

    for skew in [16 * 60, 3600] {
        let past = Signed {
            at: SystemTime::now() - Duration::from_secs(skew),
            ..Signed::get(&url)
        }
        .send(&sim, AK, SK)
        .await;
        assert_denied(&past, SIGNATURE_FAIL);
        let future = Signed {
            at: SystemTime::now() + Duration::from_secs(skew),
            ..Signed::get(&url)
        }
        .send(&sim, AK, SK)
        .await;
        assert_denied(&future, SIGNATURE_FAIL);
    }

    // Signed for one instance, sent for another: the path is covered.
    let headers = Signed::get(&url).sign(AK, SK);
    let other = send_with_headers(&sim, "GET", &api_url(&sim, &ids[1]), &headers, b"").await;
    assert_denied(&other, SIGNATURE_FAIL);

    // A signed header changed after signing.
    let mut changed = Signed::get(&url)
        .header("X-Project-Id", &sim.project_id())
        .sign(AK, SK);
    for (name, value) in &mut changed {
        if name == "X-Project-Id" {
            *value = "0".repeat(32);
        }
    }
    assert_denied(
        &send_with_headers(&sim, "GET", &url, &changed, b"").await,
        SIGNATURE_FAIL,
    );

    // The query is covered: signed for limit=10, sent with limit=11.
    let signed_url = list_instances_url(&sim, &[("limit", "10")]);
    let headers = Signed::get(&signed_url).sign(AK, SK);
    let sent_url = list_instances_url(&sim, &[("limit", "11")]);
    assert_denied(
        &send_with_headers(&sim, "GET", &sent_url, &headers, b"").await,
        SIGNATURE_FAIL,
    );

    // The body is covered (hashed into the canonical request).
    let with_body = Signed {
        body: b"{\"a\": 1}",
        ..Signed::get(&url)
    };
    let headers = with_body.sign(AK, SK);
    let ok = send_with_headers(&sim, "GET", &url, &headers, b"{\"a\": 1}").await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    let tampered = send_with_headers(&sim, "GET", &url, &headers, b"{\"a\": 2}").await;
    assert_denied(&tampered, SIGNATURE_FAIL);

    // No X-Sdk-Date at all.
    let undated: Vec<_> = Signed::get(&url)
        .sign(AK, SK)
        .into_iter()
        .filter(|(n, _)| n != "X-Sdk-Date")
        .collect();
    assert_denied(
        &send_with_headers(&sim, "GET", &url, &undated, b"").await,
        SIGNATURE_FAIL,
    );

    // A malformed Authorization.
    let bad_auth = vec![(
        "Authorization".to_owned(),
        "SDK-HMAC-SHA256 Access=AK".to_owned(),
    )];
    assert_denied(
        &send_with_headers(&sim, "GET", &url, &bad_auth, b"").await,
        SIGNATURE_FAIL,
    );

    // Neither token nor signature.
    assert_denied(&curl(&sim, &[], &url).await, "x-auth-token not found");

    let stats = sim.stats();
    assert_eq!(stats.unauthorized, 13);
    assert_eq!(stats.api_requests, 13);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_can_be_rotated_and_must_own_the_project() {
    let sim = sim().await;
    let id = sim.instance_ids()[0].clone();
    let url = api_url(&sim, &id);

    sim.set_ak_sk("AKROTATED00000000001", "SKrotated");
    assert_eq!(sim.ak(), "AKROTATED00000000001");
    let old = Signed::get(&url).send(&sim, AK, SK).await;
    assert_denied(&old, &format!("ak {AK} not exist"));
    let new = Signed::get(&url)
        .send(&sim, "AKROTATED00000000001", "SKrotated")
        .await;
    assert_eq!(new.status, 200, "{}", new.text());

    // X-Project-Id naming another project than the path's.
    let other_header = Signed::get(&url)
        .header("X-Project-Id", &"0".repeat(32))
        .send(&sim, "AKROTATED00000000001", "SKrotated")
        .await;
    assert_denied(&other_header, "project id does not match the credentials");
    // A path in another project.
    let other_path = format!(
        "{}/v3/{}/instances/{id}/ssl-cert/download-link",
        sim.endpoint(),
        "0".repeat(32)
    );
    let resp = Signed::get(&other_path)
        .send(&sim, "AKROTATED00000000001", "SKrotated")
        .await;
    assert_denied(&resp, "project id does not match the credentials");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_preferred_over_a_signature() {
    let sim = sim().await;
    let url = api_url(&sim, &sim.instance_ids()[0]);
    let token = sim.token();
    let with_good_token = Signed::get(&url)
        .header("X-Auth-Token", &token)
        .send(&sim, AK, "SKwrong")
        .await;
    assert_eq!(with_good_token.status, 200, "{}", with_good_token.text());
    let with_bad_token = Signed::get(&url)
        .header("X-Auth-Token", "MIIbad")
        .send(&sim, AK, SK)
        .await;
    assert_denied(&with_bad_token, "decrypt token fail");
}

// ---- IAM ----

fn password_body(user: &str, domain: &str, password: &str, scope: serde_json::Value) -> String {
    serde_json::json!({
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"domain": {"name": domain}, "name": user, "password": password}}
            },
            "scope": {"project": scope}
        }
    })
    .to_string()
}

async fn post_token(sim: &Simulator, query: &str, body: &str) -> Resp {
    let url = format!("{}/v3/auth/tokens{query}", sim.endpoint());
    let headers = vec![(
        "Content-Type".to_owned(),
        "application/json;charset=utf-8".to_owned(),
    )];
    send_with_headers(sim, "POST", &url, &headers, body.as_bytes()).await
}

fn assert_keystone_error(resp: &Resp, status: u16, message: &str) {
    assert_eq!(resp.status, status, "{}", resp.text());
    let body = resp.json();
    assert_eq!(body["error"]["code"], status);
    assert_eq!(body["error"]["message"], message);
    assert!(body["error"]["title"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_issues_scoped_tokens_the_api_accepts_until_they_expire() {
    let sim = sim().await;
    sim.add_iam_user("alice", "acme", "pw-1");
    let region = sim.region();
    assert_eq!(region, "cn-north-4");
    assert_eq!(sim.iam_endpoint(), sim.endpoint());
    let by_name = serde_json::json!({ "name": region });

    let before = SystemTime::now();
    let ok = post_token(
        &sim,
        "",
        &password_body("alice", "acme", "pw-1", by_name.clone()),
    )
    .await;
    assert_eq!(ok.status, 201, "{}", ok.text());
    ok.request_id();
    assert!(ok.header("x-iam-trace-id").is_some());
    let token = ok
        .header("x-subject-token")
        .expect("X-Subject-Token")
        .to_owned();
    assert!(token.starts_with("MII"), "{token}");
    let doc = ok.json();
    let t = &doc["token"];
    assert_eq!(t["methods"], serde_json::json!(["password"]));
    assert_eq!(t["project"]["id"], sim.project_id());
    assert_eq!(t["project"]["name"], region);
    assert_eq!(t["project"]["domain"]["name"], "acme");
    assert_eq!(t["user"]["name"], "alice");
    assert_eq!(t["user"]["domain"]["name"], "acme");
    assert!(t["catalog"].is_array());
    let issued = iam_time(t["issued_at"].as_str().unwrap());
    let expires = iam_time(t["expires_at"].as_str().unwrap());
    assert!(issued + Duration::from_secs(1) >= before);
    assert_eq!(
        expires.duration_since(issued).unwrap(),
        Duration::from_secs(24 * 3600)
    );
    assert!(!doc.to_string().contains("pw-1"), "the password is echoed");

    let url = api_url(&sim, &sim.instance_ids()[0]);
    let with_token = curl(&sim, &["-H", &format!("X-Auth-Token: {token}")], &url).await;
    assert_eq!(with_token.status, 200, "{}", with_token.text());

    // Scope by project id; `nocatalog` leaves the catalog out.
    let by_id = serde_json::json!({ "id": sim.project_id() });
    let no_catalog = post_token(
        &sim,
        "?nocatalog=true",
        &password_body("alice", "acme", "pw-1", by_id),
    )
    .await;
    assert_eq!(no_catalog.status, 201, "{}", no_catalog.text());
    assert!(no_catalog.json()["token"].get("catalog").is_none());

    // A token for another project of the account does not open this project's API.
    sim.set_projects(&[
        Project {
            id: sim.project_id(),
            name: region.clone(),
        },
        Project {
            id: "e".repeat(32),
            name: "eu-west-101".to_owned(),
        },
    ]);
    let other = post_token(
        &sim,
        "",
        &password_body(
            "alice",
            "acme",
            "pw-1",
            serde_json::json!({"name": "eu-west-101"}),
        ),
    )
    .await;
    assert_eq!(other.status, 201, "{}", other.text());
    let other_token = other.header("x-subject-token").unwrap().to_owned();
    let resp = curl(&sim, &["-H", &format!("X-Auth-Token: {other_token}")], &url).await;
    assert_denied(&resp, "token does not match project");

    // Expired at once.
    sim.set_iam_token_lifetime(Duration::ZERO);
    let short = post_token(
        &sim,
        "",
        &password_body("alice", "acme", "pw-1", by_name.clone()),
    )
    .await;
    assert_eq!(short.status, 201);
    let short_token = short.header("x-subject-token").unwrap().to_owned();
    let expires_at = short.json()["token"]["expires_at"]
        .as_str()
        .unwrap()
        .to_owned();
    let expired = curl(&sim, &["-H", &format!("X-Auth-Token: {short_token}")], &url).await;
    assert_denied(
        &expired,
        &format!("token expires, expires_at: {expires_at}"),
    );

    // Invalidated: the earlier, still unexpired token is refused now.
    sim.invalidate_iam_tokens();
    let gone = curl(&sim, &["-H", &format!("X-Auth-Token: {token}")], &url).await;
    assert_denied(&gone, "decrypt token fail");
    // The simulator's fixed token is not an IAM token and keeps working.
    assert_eq!(common::list(&sim, &sim.instance_ids()[0]).await.status, 200);

    let stats = sim.stats();
    assert_eq!((stats.iam_tokens_issued, stats.iam_token_failures), (4, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_refuses_wrong_passwords_and_malformed_requests() {
    let sim = sim().await;
    sim.add_iam_user("alice", "acme", "pw-1");
    let scope = serde_json::json!({ "name": sim.region() });

    for (user, domain, password) in [
        ("alice", "acme", "wrong"),
        ("bob", "acme", "pw-1"),
        ("alice", "other", "pw-1"),
    ] {
        let resp = post_token(
            &sim,
            "",
            &password_body(user, domain, password, scope.clone()),
        )
        .await;
        assert_keystone_error(&resp, 401, "The username or password is wrong.");
        assert!(resp.header("x-subject-token").is_none());
    }

    // A changed password: the old one is refused, the new one accepted.
    sim.add_iam_user("alice", "acme", "pw-2");
    let old = post_token(
        &sim,
        "",
        &password_body("alice", "acme", "pw-1", scope.clone()),
    )
    .await;
    assert_eq!(old.status, 401);
    let new = post_token(
        &sim,
        "",
        &password_body("alice", "acme", "pw-2", scope.clone()),
    )
    .await;
    assert_eq!(new.status, 201, "{}", new.text());

    let unknown_project = post_token(
        &sim,
        "",
        &password_body(
            "alice",
            "acme",
            "pw-2",
            serde_json::json!({"name": "xx-nowhere-1"}),
        ),
    )
    .await;
    assert_keystone_error(
        &unknown_project,
        400,
        "The project in the scope is not found.",
    );

    let not_json = post_token(&sim, "", "{not json").await;
    assert_keystone_error(&not_json, 400, "The request body is not valid JSON.");
    let no_scope = post_token(
        &sim,
        "",
        &serde_json::json!({"auth": {"identity": {"methods": ["password"],
            "password": {"user": {"domain": {"name": "acme"}, "name": "alice", "password": "pw-2"}}}}})
        .to_string(),
    )
    .await;
    assert_keystone_error(&no_scope, 400, "Expecting to find a project in scope.");

    // A body over the gateway's limit is refused before IAM sees it.
    let huge = format!("{{\"pad\": \"{}\"}}", "x".repeat(100 * 1024));
    let too_large = post_token(&sim, "", &huge).await;
    assert_eq!(too_large.status, 413, "{}", too_large.text());
    assert_eq!(too_large.json()["error_code"], "APIG.0201");

    let stats = sim.stats();
    assert_eq!((stats.iam_tokens_issued, stats.iam_token_failures), (1, 7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projects_are_listed_by_name_for_signed_callers() {
    let sim = sim().await;
    let region = sim.region();
    let url = |name: &str| {
        format!(
            "{}/v3/projects?{}",
            sim.endpoint(),
            certsync_sign::canonical_query(&[("name", name)])
        )
    };
    let ids = |resp: &Resp| -> Vec<String> {
        assert_eq!(resp.status, 200, "{}", resp.text());
        resp.json()["projects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].as_str().unwrap().to_owned())
            .collect()
    };

    let one = Signed::get(&url(&region)).send(&sim, AK, SK).await;
    assert_eq!(ids(&one), [sim.project_id()]);
    assert!(one.header("x-iam-trace-id").is_some());
    let project = &one.json()["projects"][0];
    assert_eq!(project["name"], region);
    assert_eq!(project["enabled"], true);

    let none = Signed::get(&url("eu-west-101")).send(&sim, AK, SK).await;
    assert!(ids(&none).is_empty());

    sim.set_projects(&[]);
    assert!(sim.projects().is_empty());
    let empty = Signed::get(&url(&region)).send(&sim, AK, SK).await;
    assert!(ids(&empty).is_empty());

    let two = [
        Project {
            id: "a".repeat(32),
            name: region.clone(),
        },
        Project {
            id: "b".repeat(32),
            name: region.clone(),
        },
    ];
    sim.set_projects(&two);
    let both = Signed::get(&url(&region)).send(&sim, AK, SK).await;
    assert_eq!(ids(&both), ["a".repeat(32), "b".repeat(32)]);

    // A token works too; no credentials or a bad signature do not.
    let with_token = curl(
        &sim,
        &["-H", &format!("X-Auth-Token: {}", sim.token())],
        &url(&region),
    )
    .await;
    assert_eq!(ids(&with_token).len(), 2);
    assert_denied(
        &curl(&sim, &[], &url(&region)).await,
        "x-auth-token not found",
    );
    assert_denied(
        &Signed::get(&url(&region)).send(&sim, AK, "SKwrong").await,
        SIGNATURE_FAIL,
    );
    assert_eq!(sim.stats().project_lookups, 7);
}
