//! The ECS metadata service (plain HTTP): session tokens, the temporary credentials it hands
//! out (which the gateway accepts, over real TLS, until they expire or are revoked), its
//! IMDSv1-style mode, and an ECS without an agency.
// A test crate: its helpers are private to it, and `pub` only says which of them the test
// modules share, so the library's `unreachable_pub` rule does not apply here.
#![allow(unreachable_pub)]

mod common;

use std::time::{Duration, SystemTime};

use certsync_sim::{MetadataTokenMode, SimOptions, Simulator};
use common::{Resp, SIGNATURE_FAIL, Signed, api_url, assert_denied, curl, iam_time};

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

/// A plain-HTTP request to the metadata service.
async fn metadata(sim: &Simulator, method: &str, path: &str, headers: &[&str]) -> Resp {
    let mut args = vec!["-X", method];
    for h in headers {
        args.extend(["-H", h]);
    }
    let url = format!("{}{path}", sim.metadata_endpoint());
    curl(sim, &args, &url).await
}

const TOKEN_PATH: &str = "/meta-data/latest/api/token";
const KEY_PATH: &str = "/openstack/latest/securitykey";

/// Fetches a session token and temporary credentials: (access, secret, securitytoken, expires_at).
async fn temporary(sim: &Simulator) -> (String, String, String, String) {
    let session = metadata(
        sim,
        "PUT",
        TOKEN_PATH,
        &["X-Metadata-Token-Ttl-Seconds: 21600"],
    )
    .await;
    assert_eq!(session.status, 200, "{}", session.text());
    let token = session.text();
    let key = metadata(
        sim,
        "GET",
        KEY_PATH,
        &[&format!("X-Metadata-Token: {token}")],
    )
    .await;
    assert_eq!(key.status, 200, "{}", key.text());
    let c = &key.json()["credential"];
    let field = |name: &str| c[name].as_str().unwrap().to_owned();
    (
        field("access"),
        field("secret"),
        field("securitytoken"),
        field("expires_at"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_hands_out_temporary_credentials_the_api_accepts_until_they_expire() {
    let sim = sim().await;
    let md = sim.metadata_endpoint();
    assert!(md.starts_with("http://127.0.0.1:"), "{md}");
    let url = api_url(&sim, &sim.instance_ids()[0]);

    // Session tokens: a TTL is required; the credentials need a valid token.
    let no_ttl = metadata(&sim, "PUT", TOKEN_PATH, &[]).await;
    assert_eq!(no_ttl.status, 400);
    let too_long = metadata(
        &sim,
        "PUT",
        TOKEN_PATH,
        &["X-Metadata-Token-Ttl-Seconds: 21601"],
    )
    .await;
    assert_eq!(too_long.status, 400);
    assert_eq!(metadata(&sim, "GET", KEY_PATH, &[]).await.status, 401);
    assert_eq!(
        metadata(&sim, "GET", KEY_PATH, &["X-Metadata-Token: made-up"])
            .await
            .status,
        401
    );
    assert_eq!(metadata(&sim, "GET", TOKEN_PATH, &[]).await.status, 405);
    assert_eq!(
        metadata(&sim, "GET", "/openstack/latest/meta_data.json", &[])
            .await
            .status,
        404
    );
    assert_eq!(sim.metadata_fetches(), 0);

    let before = SystemTime::now();
    let (access, secret, security_token, expires_at) = temporary(&sim).await;
    assert_eq!(sim.metadata_fetches(), 1);
    assert_eq!(sim.stats().metadata_session_tokens, 1);
    assert_ne!(access, AK);
    assert!(security_token.len() > 100);
    // 24 hours by default, written with microseconds as the SDK's parser needs.
    let expires = iam_time(&expires_at);
    let left = expires.duration_since(before).unwrap();
    assert!(
        left <= Duration::from_secs(24 * 3600 + 5) && left >= Duration::from_secs(24 * 3600 - 60)
    );

    let signed = Signed::get(&url).header("X-Security-Token", &security_token);
    let ok = signed.send(&sim, &access, &secret).await;
    assert_eq!(ok.status, 200, "{}", ok.text());

    // The security token is required, and must be the one issued with the key.
    let missing = Signed::get(&url).send(&sim, &access, &secret).await;
    assert_denied(&missing, SIGNATURE_FAIL);
    let wrong = Signed::get(&url)
        .header("X-Security-Token", "not-the-token")
        .send(&sim, &access, &secret)
        .await;
    assert_denied(&wrong, SIGNATURE_FAIL);

    // Expired credentials.
    sim.set_metadata_credential_lifetime(Duration::ZERO);
    let (access2, secret2, token2, _) = temporary(&sim).await;
    let expired = Signed::get(&url)
        .header("X-Security-Token", &token2)
        .send(&sim, &access2, &secret2)
        .await;
    assert_denied(&expired, "calc ak sk signature fail:signature expired");
    // The first, long-lived credentials still work; after a revocation they do not.
    assert_eq!(signed.send(&sim, &access, &secret).await.status, 200);
    sim.revoke_metadata_credentials();
    assert_denied(
        &signed.send(&sim, &access, &secret).await,
        &format!("ak {access} not exist"),
    );
    assert_eq!(sim.metadata_fetches(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_without_session_tokens_serves_credentials_imdsv1_style() {
    let sim = sim().await;
    for status in [404u16, 405, 503] {
        sim.set_metadata_token_mode(MetadataTokenMode::Unsupported { status });
        let put = metadata(
            &sim,
            "PUT",
            TOKEN_PATH,
            &["X-Metadata-Token-Ttl-Seconds: 21600"],
        )
        .await;
        assert_eq!(put.status, status);
        let key = metadata(&sim, "GET", KEY_PATH, &[]).await;
        assert_eq!(key.status, 200, "{}", key.text());
        let c = &key.json()["credential"];
        let resp = Signed::get(&api_url(&sim, &sim.instance_ids()[0]))
            .header("X-Security-Token", c["securitytoken"].as_str().unwrap())
            .send(
                &sim,
                c["access"].as_str().unwrap(),
                c["secret"].as_str().unwrap(),
            )
            .await;
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    assert_eq!(sim.metadata_fetches(), 3);
    assert_eq!(sim.stats().metadata_session_tokens, 0);

    // Back to tokens required: a token-less GET is refused again.
    sim.set_metadata_token_mode(MetadataTokenMode::Required);
    assert_eq!(metadata(&sim, "GET", KEY_PATH, &[]).await.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_without_an_agency_says_so() {
    let sim = sim().await;
    sim.set_metadata_agency(false);
    let session = metadata(
        &sim,
        "PUT",
        TOKEN_PATH,
        &["X-Metadata-Token-Ttl-Seconds: 60"],
    )
    .await;
    assert_eq!(session.status, 200);
    let key = metadata(
        &sim,
        "GET",
        KEY_PATH,
        &[&format!("X-Metadata-Token: {}", session.text())],
    )
    .await;
    assert_eq!(key.status, 401);
    assert!(
        key.text()
            .contains("Please configure Cloud Service Agency first"),
        "{}",
        key.text()
    );
    assert_eq!(sim.metadata_fetches(), 0);
    sim.set_metadata_agency(true);
    temporary(&sim).await;
    assert_eq!(sim.metadata_fetches(), 1);
}
