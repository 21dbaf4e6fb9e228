//! Authentication end to end (SPEC 4): every method against the simulator over real TLS — AK/SK
//! signatures (permanent and temporary), the project id looked up in IAM, IAM password tokens
//! renewed when due and after a 401, temporary keys from the ECS metadata service refreshed
//! before they expire — with the real binary or the library's API client, and the failures that
//! must name the method and the step without ever showing a secret.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use certsync::cloud::api::{ApiClient, ApiError};
use certsync::cloud::auth::{AuthError, Credentials};
use certsync::cloud::http::build_client_trusting;
use certsync_sim::{MetadataTokenMode, Project};
use common::{BIN, Harness, all_output, code, stdout};

/// The SDK's environment variables: removed from every child unless a test sets them, so that
/// a developer's own keys never leak into a test.
const SDK_ENV: &[&str] = &[
    "HUAWEICLOUD_SDK_AK",
    "HUAWEICLOUD_SDK_SK",
    "HUAWEICLOUD_SDK_SECURITY_TOKEN",
    "HUAWEICLOUD_SDK_PROJECT_ID",
];

/// Replaces the harness's token `[auth]` with `auth`, points IAM at the simulator, and drops
/// `project_id` unless `project`. The file is made private (0600): an inline secret key in a
/// readable file draws a warning, tested on its own.
fn configure(h: &Harness, auth: &str, project: bool) {
    let text = std::fs::read_to_string(&h.config).unwrap();
    let mut text = text.replace(
        "[auth]\nmethod = \"token\"\ntoken_file = \"token\"\n",
        &format!("[auth]\n{auth}\n"),
    );
    assert!(text.contains(auth), "the harness's [auth] changed shape");
    if !project {
        text = text.replace(&format!("project_id = \"{}\"\n", h.sim.project_id()), "");
    }
    text = text.replace(
        "[cloud]\n",
        &format!("[cloud]\niam_endpoint = \"{}\"\n", h.sim.iam_endpoint()),
    );
    std::fs::write(&h.config, text).unwrap();
    std::fs::set_permissions(&h.config, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn write_secret(h: &Harness, name: &str, value: &str) {
    std::fs::write(h.tmp.path().join(name), format!("{value}\n")).unwrap();
}

async fn certsync(h: &Harness, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.arg("--config").arg(&h.config).args(args);
    cmd.env_remove("RUST_LOG");
    for var in SDK_ENV {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null());
    cmd.output().await.unwrap()
}

/// The library's API client for the harness's config (no SDK environment).
fn client(h: &Harness) -> ApiClient {
    let text = std::fs::read_to_string(&h.config).unwrap();
    let config = certsync::config::parse_with_env(&text, &h.config, &|_| None).unwrap();
    let account = &config.accounts[0];
    let cloud = &account.cloud;
    let budget = certsync::cloud::budget_for(account);
    let http = build_client_trusting(&cloud.ca_certs, cloud.timeout).unwrap();
    let credentials = Credentials::for_account(account, http.clone(), budget.clone()).unwrap();
    ApiClient::new(http, cloud.endpoint.clone(), Arc::new(credentials), budget)
}

fn aksk_auth(h: &Harness) -> String {
    write_secret(h, "sk", &h.sim.sk());
    format!(
        "method = \"aksk\"\naccess_key = \"{}\"\nsecret_key_file = \"sk\"",
        h.sim.ak()
    )
}

/// Asserts that none of `secrets` appears in `text`.
fn assert_hidden(text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !text.contains(secret),
            "a secret ({} chars) reached the output:\n{text}",
            secret.len()
        );
    }
}

/// Temporary credentials straight from the simulator's metadata service, as an ECS would see
/// them: (access, secret, securitytoken).
async fn temporary_keys(h: &Harness) -> (String, String, String) {
    let http = reqwest::Client::new();
    let base = h.sim.metadata_endpoint();
    let session = http
        .put(format!("{base}/meta-data/latest/api/token"))
        .header("X-Metadata-Token-Ttl-Seconds", "21600")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let body = http
        .get(format!("{base}/openstack/latest/securitykey"))
        .header("X-Metadata-Token", session)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let c = &body["credential"];
    let get = |k: &str| c[k].as_str().unwrap().to_string();
    (get("access"), get("secret"), get("securitytoken"))
}

// ---- aksk ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aksk_signs_every_request_and_syncs() {
    let h = Harness::new(3).await;
    configure(&h, &aksk_auth(&h), true);
    let out = certsync(&h, &["once"], &[]).await;
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    for i in 0..3 {
        assert_eq!(
            std::fs::read_to_string(h.file(i)).unwrap(),
            h.expected_pem(i)
        );
    }
    let stats = h.sim.stats();
    assert_eq!(stats.api_requests, 3, "{stats:?}");
    assert_eq!(stats.unauthorized, 0, "{stats:?}");
    // The project was configured: IAM was never asked.
    assert_eq!(stats.project_lookups, 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aksk_from_the_sdk_environment_looks_the_project_up_once() {
    let h = Harness::new(3).await;
    configure(&h, "method = \"aksk\"", false);
    let (ak, sk) = (h.sim.ak(), h.sim.sk());
    let env = [
        ("HUAWEICLOUD_SDK_AK", ak.as_str()),
        ("HUAWEICLOUD_SDK_SK", sk.as_str()),
    ];
    let out = certsync(&h, &["check"], &env).await;
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let plan = stdout(&out);
    assert!(
        plan.contains("access_key: from HUAWEICLOUD_SDK_AK"),
        "{plan}"
    );
    assert!(plan.contains("looked up in IAM"), "{plan}");

    let out = certsync(&h, &["once"], &env).await;
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let stats = h.sim.stats();
    assert_eq!(stats.project_lookups, 1, "looked up once: {stats:?}");
    assert_eq!(stats.api_requests, 3, "{stats:?}");
    assert!(h.file(2).exists());

    // HUAWEICLOUD_SDK_PROJECT_ID spares the lookup.
    let project = h.sim.project_id();
    let mut env = env.to_vec();
    env.push(("HUAWEICLOUD_SDK_PROJECT_ID", project.as_str()));
    let out = certsync(&h, &["once"], &env).await;
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert_eq!(h.sim.stats().project_lookups, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_lookup_needs_exactly_one_project() {
    let h = Harness::new(1).await;
    configure(&h, &aksk_auth(&h), false);
    let region = h.sim.region();
    for (projects, count) in [
        (vec![], "0"),
        (
            vec![
                Project {
                    id: h.sim.project_id(),
                    name: region.clone(),
                },
                Project {
                    id: "0123456789abcdef0123456789abcdef".into(),
                    name: region.clone(),
                },
            ],
            "2",
        ),
    ] {
        h.sim.set_projects(&projects);
        let out = certsync(&h, &["once"], &[]).await;
        assert_eq!(code(&out), 1, "{}", all_output(&out));
        let all = all_output(&out);
        assert!(
            all.contains(&format!(
                "auth method aksk: IAM lists {count} projects named \"{region}\""
            )),
            "{all}"
        );
        assert!(all.contains("set cloud.project_id"), "{all}");
        assert!(!h.file(0).exists());
    }
    // Through the library: the typed error.
    h.sim.set_projects(&[]);
    let err = client(&h).list_certs(&h.id(0)).await.unwrap_err();
    assert!(
        matches!(
            err,
            ApiError::Auth(AuthError::ProjectNotFound { count: 0, .. })
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_key_fails_naming_aksk_and_apigw_0301_and_shows_no_key() {
    let h = Harness::new(2).await;
    let ak = h.sim.ak();
    let wrong = "WrongSecretKey0000000000000000000000000";
    write_secret(&h, "sk", wrong);
    configure(
        &h,
        &format!("method = \"aksk\"\naccess_key = \"{ak}\"\nsecret_key_file = \"sk\""),
        true,
    );
    let out = certsync(&h, &["once"], &[("RUST_LOG", "trace")]).await;
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    let all = all_output(&out);
    assert!(all.contains("auth method aksk"), "{all}");
    assert!(all.contains("APIGW.0301"), "{all}");
    assert!(all.contains("verify aksk signature fail"), "{all}");
    assert_hidden(&all, &[&ak, wrong, &h.sim.sk()]);
    assert!(!h.trust.exists() || !h.file(0).exists());
    // Refreshed once (the key file re-read) and retried once, per instance.
    assert_eq!(h.sim.stats().unauthorized, 4);

    let err = client(&h).list_certs(&h.id(0)).await.unwrap_err();
    match &err {
        ApiError::Unauthorized { method, fault, .. } => {
            assert_eq!(*method, "aksk");
            assert_eq!((fault.status, fault.code.as_str()), (401, "APIGW.0301"));
        }
        other => panic!("expected Unauthorized, got {other}"),
    }

    // An unknown access key: the gateway echoes it ("ak ... not exist"); certsync does not.
    write_secret(&h, "sk", &h.sim.sk());
    let unknown = "UNKNOWNACCESSKEY0001";
    let text = std::fs::read_to_string(&h.config)
        .unwrap()
        .replace(&ak, unknown);
    std::fs::write(&h.config, text).unwrap();
    let out = certsync(&h, &["once"], &[]).await;
    assert_eq!(code(&out), 1);
    let all = all_output(&out);
    assert!(all.contains("ak <redacted> not exist"), "{all}");
    assert_hidden(&all, &[unknown, &h.sim.sk()]);

    // Synced files stay byte for byte (and untouched) when the keys go bad later.
    let text = std::fs::read_to_string(&h.config)
        .unwrap()
        .replace(unknown, &ak);
    std::fs::write(&h.config, text).unwrap();
    let out = certsync(&h, &["once"], &[]).await;
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let before = std::fs::read(h.file(0)).unwrap();
    let mtime = common::mtime(&h.file(0));
    // The CA rotates, so a pass that got through would rewrite the file.
    h.sim.rotate(&h.id(0), "international");
    write_secret(&h, "sk", wrong);
    let out = certsync(&h, &["once"], &[]).await;
    assert_eq!(code(&out), 1);
    assert_eq!(std::fs::read(h.file(0)).unwrap(), before);
    assert_eq!(common::mtime(&h.file(0)), mtime);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_aksk_needs_its_security_token() {
    let h = Harness::new(1).await;
    let (ak, sk, token) = temporary_keys(&h).await;
    write_secret(&h, "sk", &sk);
    let auth = format!("method = \"aksk\"\naccess_key = \"{ak}\"\nsecret_key_file = \"sk\"");
    configure(&h, &format!("{auth}\nsecurity_token = \"{token}\""), true);
    let out = certsync(&h, &["once"], &[("RUST_LOG", "trace")]).await;
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert_hidden(&all_output(&out), &[&ak, &sk, &token]);
    assert!(h.file(0).exists());

    // The same keys from the environment work too; without the token they are refused.
    let h = Harness::new(1).await;
    configure(&h, "method = \"aksk\"", true);
    let env = [
        ("HUAWEICLOUD_SDK_AK", ak.as_str()),
        ("HUAWEICLOUD_SDK_SK", sk.as_str()),
        ("HUAWEICLOUD_SDK_SECURITY_TOKEN", token.as_str()),
    ];
    // Another simulator: these keys are unknown there, so fetch its own.
    let (ak2, sk2, token2) = temporary_keys(&h).await;
    let env2 = [
        ("HUAWEICLOUD_SDK_AK", ak2.as_str()),
        ("HUAWEICLOUD_SDK_SK", sk2.as_str()),
        ("HUAWEICLOUD_SDK_SECURITY_TOKEN", token2.as_str()),
    ];
    let out = certsync(&h, &["once"], &env2).await;
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let out = certsync(&h, &["once"], &env2[..2]).await;
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    let all = all_output(&out);
    assert!(
        all.contains("auth method aksk") && all.contains("APIGW.0301"),
        "{all}"
    );
    let out = certsync(&h, &["once"], &env).await;
    assert_eq!(code(&out), 1, "keys of another cloud were accepted");
}

// ---- password ----

fn password_auth(h: &Harness, password: &str) -> String {
    h.sim.add_iam_user("certsync", "acme", "Corr3ct-Horse");
    write_secret(h, "pw", password);
    "method = \"password\"\nuser = \"certsync\"\ndomain = \"acme\"\npassword_file = \"pw\"".into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_gets_one_token_scoped_by_region_and_reads_the_project_from_it() {
    let h = Harness::new(3).await;
    configure(&h, &password_auth(&h, "Corr3ct-Horse"), false);
    let out = certsync(&h, &["once"], &[("RUST_LOG", "trace")]).await;
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let stats = h.sim.stats();
    assert_eq!(stats.iam_tokens_issued, 1, "{stats:?}");
    assert_eq!(stats.api_requests, 3, "{stats:?}");
    assert_eq!(stats.unauthorized, 0, "{stats:?}");
    let all = all_output(&out);
    assert_hidden(&all, &["Corr3ct-Horse", "MIIsim"]);
    assert!(h.file(2).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn iam_requests_draw_on_the_accounts_budget_too() {
    // One request a second, burst one: the IAM token request and the one download-link
    // request (the simulator serves both on one endpoint, so one bucket) cannot both go at
    // once. Were IAM requests free, the pass would take a few milliseconds.
    let h = Harness::new(1).await;
    configure(&h, &password_auth(&h, "Corr3ct-Horse"), true);
    let text = std::fs::read_to_string(&h.config).unwrap();
    let text = text.replace("[cloud]\n", "[cloud]\nmax_requests_per_second = 1\n");
    std::fs::write(&h.config, text).unwrap();
    let started = std::time::Instant::now();
    let out = certsync(&h, &["once"], &[]).await;
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert_eq!(h.sim.stats().iam_tokens_issued, 1);
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_token_is_renewed_after_a_401_once_for_all_instances() {
    let h = Harness::new(3).await;
    configure(&h, &password_auth(&h, "Corr3ct-Horse"), true);
    let api = client(&h);
    for i in 0..3 {
        api.list_certs(&h.id(i)).await.unwrap();
    }
    assert_eq!(h.sim.stats().iam_tokens_issued, 1);
    // IAM revokes every token (a permission change): the API answers 401 and certsync renews.
    h.sim.invalidate_iam_tokens();
    let (a, b, c) = (h.id(0), h.id(1), h.id(2));
    // Three instances in flight at once, as in a pass: all get the 401.
    let (ra, rb, rc) = tokio::join!(api.list_certs(&a), api.list_certs(&b), api.list_certs(&c));
    ra.unwrap();
    rb.unwrap();
    rc.unwrap();
    let stats = h.sim.stats();
    assert_eq!(
        stats.iam_tokens_issued, 2,
        "one renewal for three 401s: {stats:?}"
    );
    // How many of the three were refused depends on how they interleave on a loaded machine
    // (a request sent after the renewal carries the new token); the renewal happens once.
    assert!((1..=3).contains(&stats.unauthorized), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_token_is_renewed_an_hour_before_it_expires() {
    let h = Harness::new(1).await;
    configure(&h, &password_auth(&h, "Corr3ct-Horse"), true);
    // Tokens with 2 h left are kept ...
    h.sim.set_iam_token_lifetime(Duration::from_secs(2 * 3600));
    let api = client(&h);
    api.list_certs(&h.id(0)).await.unwrap();
    api.list_certs(&h.id(0)).await.unwrap();
    assert_eq!(h.sim.stats().iam_tokens_issued, 1);
    // ... tokens with less than an hour left are renewed before use, without a 401.
    h.sim.set_iam_token_lifetime(Duration::from_secs(50 * 60));
    let api = client(&h);
    api.list_certs(&h.id(0)).await.unwrap();
    api.list_certs(&h.id(0)).await.unwrap();
    let stats = h.sim.stats();
    assert_eq!(stats.iam_tokens_issued, 3, "{stats:?}");
    assert_eq!(stats.unauthorized, 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_fails_at_iam_and_is_never_shown() {
    let h = Harness::new(1).await;
    configure(&h, &password_auth(&h, "Wr0ng-Horse"), false);
    let out = certsync(&h, &["once"], &[("RUST_LOG", "trace")]).await;
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    let all = all_output(&out);
    assert!(
        all.contains("auth method password: IAM refused to issue a token"),
        "{all}"
    );
    assert!(all.contains("HTTP 401"), "{all}");
    assert_hidden(&all, &["Wr0ng-Horse", "Corr3ct-Horse"]);
    assert!(h.sim.stats().iam_token_failures >= 1);

    // No password file: the step is reading it.
    std::fs::remove_file(h.tmp.path().join("pw")).unwrap();
    let err = client(&h).list_certs(&h.id(0)).await.unwrap_err();
    assert!(
        matches!(
            err,
            ApiError::Auth(AuthError::ReadFile {
                method: "password",
                key: "password_file",
                ..
            })
        ),
        "{err}"
    );
}

// ---- metadata ----

fn metadata_auth(h: &Harness) -> String {
    format!(
        "method = \"metadata\"\nmetadata_endpoint = \"{}\"",
        h.sim.metadata_endpoint()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_keys_sign_the_pass_and_the_project_lookup() {
    let h = Harness::new(3).await;
    configure(&h, &metadata_auth(&h), false);
    let out = certsync(&h, &["once"], &[("RUST_LOG", "trace")]).await;
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let stats = h.sim.stats();
    assert_eq!(stats.metadata_session_tokens, 1, "{stats:?}");
    assert_eq!(stats.metadata_fetches, 1, "{stats:?}");
    assert_eq!(stats.project_lookups, 1, "{stats:?}");
    assert_eq!(stats.api_requests, 3, "{stats:?}");
    assert_eq!(stats.unauthorized, 0, "{stats:?}");
    assert_hidden(&all_output(&out), &["gQpjbi1ub3J0aC00sim"]);
    assert!(h.file(2).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_keys_are_refreshed_40_minutes_before_expiry_and_after_a_401() {
    let h = Harness::new(1).await;
    configure(&h, &metadata_auth(&h), true);
    h.sim
        .set_metadata_credential_lifetime(Duration::from_secs(3600));
    let api = client(&h);
    api.list_certs(&h.id(0)).await.unwrap();
    api.list_certs(&h.id(0)).await.unwrap();
    assert_eq!(h.sim.metadata_fetches(), 1, "60 minutes left: kept");

    h.sim
        .set_metadata_credential_lifetime(Duration::from_secs(30 * 60));
    let api = client(&h);
    api.list_certs(&h.id(0)).await.unwrap();
    api.list_certs(&h.id(0)).await.unwrap();
    assert_eq!(
        h.sim.metadata_fetches(),
        3,
        "30 minutes left: fetched each time"
    );
    assert_eq!(h.sim.stats().unauthorized, 0);

    // Revoked keys: one 401, new keys, success.
    h.sim
        .set_metadata_credential_lifetime(Duration::from_secs(24 * 3600));
    let api = client(&h);
    api.list_certs(&h.id(0)).await.unwrap();
    let before = h.sim.metadata_fetches();
    h.sim.revoke_metadata_credentials();
    api.list_certs(&h.id(0)).await.unwrap();
    let stats = h.sim.stats();
    assert_eq!(stats.metadata_fetches, before + 1, "{stats:?}");
    assert_eq!(stats.unauthorized, 1, "{stats:?}");
    // The session token was reused throughout (one per client).
    assert_eq!(stats.metadata_session_tokens, 3, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_without_session_tokens_goes_on_without_one() {
    for status in [404, 405, 503] {
        let h = Harness::new(1).await;
        configure(&h, &metadata_auth(&h), true);
        h.sim
            .set_metadata_token_mode(MetadataTokenMode::Unsupported { status });
        client(&h).list_certs(&h.id(0)).await.unwrap();
        let stats = h.sim.stats();
        assert_eq!(stats.metadata_session_tokens, 0, "{status}: {stats:?}");
        assert_eq!(stats.metadata_fetches, 1, "{status}: {stats:?}");
    }
    // Any other status is an error of that step.
    let h = Harness::new(1).await;
    configure(&h, &metadata_auth(&h), true);
    h.sim
        .set_metadata_token_mode(MetadataTokenMode::Unsupported { status: 500 });
    let err = client(&h).list_certs(&h.id(0)).await.unwrap_err();
    assert!(
        matches!(
            err,
            ApiError::Auth(AuthError::MetadataRefused {
                step: "get a session token",
                ..
            })
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_failures_name_the_step() {
    let h = Harness::new(1).await;
    configure(&h, &metadata_auth(&h), true);
    h.sim.set_metadata_agency(false);
    let out = certsync(&h, &["once"], &[]).await;
    assert_eq!(code(&out), 1);
    let all = all_output(&out);
    assert!(
        all.contains(
            "auth method metadata: the ECS metadata service refused to get temporary credentials"
        ),
        "{all}"
    );
    assert!(
        all.contains("Please configure Cloud Service Agency first"),
        "{all}"
    );

    // Nothing listening: reaching the service fails.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let h = Harness::new(1).await;
    configure(
        &h,
        &format!("method = \"metadata\"\nmetadata_endpoint = \"http://127.0.0.1:{port}\""),
        true,
    );
    let out = certsync(&h, &["check", "--online"], &[]).await;
    assert_eq!(code(&out), 1);
    let text = stdout(&out);
    assert!(
        text.contains("authenticate (auth method metadata): failed: auth method metadata: reaching the ECS metadata service to get a session token"),
        "{text}"
    );
}

// ---- check --online, and secrets ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_online_says_whether_authentication_or_listing_failed() {
    let h = Harness::new(2).await;
    configure(&h, &aksk_auth(&h), false);
    let out = certsync(&h, &["check", "--online"], &[]).await;
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "authenticate (auth method aksk): ok, project {}",
            h.sim.project_id()
        )),
        "{text}"
    );
    assert!(text.contains("instance inst0: ok"), "{text}");

    h.sim.remove_instance(&h.id(1));
    let out = certsync(&h, &["check", "--online"], &[]).await;
    assert_eq!(code(&out), 1);
    let text = stdout(&out);
    assert!(
        text.contains("authenticate (auth method aksk): ok"),
        "{text}"
    );
    assert!(text.contains("instance inst1: list failed"), "{text}");
    assert!(text.contains("DBS.200002"), "{text}");

    h.sim.set_projects(&[]);
    let out = certsync(&h, &["check", "--online"], &[]).await;
    assert_eq!(code(&out), 1);
    let text = stdout(&out);
    assert!(
        text.contains(
            "authenticate (auth method aksk): failed: auth method aksk: IAM lists 0 projects"
        ),
        "{text}"
    );
    assert!(!text.contains("instance inst0"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inline_secret_key_in_a_readable_config_is_warned_about_by_name_only() {
    let h = Harness::new(1).await;
    let (ak, sk) = (h.sim.ak(), h.sim.sk());
    configure(
        &h,
        &format!("method = \"aksk\"\naccess_key = \"{ak}\"\nsecret_key = \"{sk}\""),
        true,
    );
    std::fs::set_permissions(&h.config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = certsync(&h, &["once"], &[]).await;
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let err = common::stderr(&out);
    assert!(err.contains("WARN"), "{err}");
    assert!(err.contains("auth.secret_key"), "{err}");
    assert!(err.contains(&h.config.display().to_string()), "{err}");
    assert_hidden(&all_output(&out), &[&ak, &sk]);

    std::fs::set_permissions(&h.config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = certsync(&h, &["once"], &[]).await;
    assert_eq!(code(&out), 0);
    assert!(!common::stderr(&out).contains("auth.secret_key"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credential_reaches_the_output_at_trace_level_with_any_method() {
    // aksk, inline, with the pass and a 401 (a rotated key) in the same run.
    let h = Harness::new(2).await;
    let (ak, sk) = (h.sim.ak(), h.sim.sk());
    configure(
        &h,
        &format!("method = \"aksk\"\naccess_key = \"{ak}\"\nsecret_key = \"{sk}\""),
        false,
    );
    let out = certsync(&h, &["once"], &[("RUST_LOG", "trace")]).await;
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let all = all_output(&out);
    assert!(all.lines().count() > 20, "trace logging did not happen");
    assert_hidden(&all, &[&ak, &sk]);
    let out = certsync(&h, &["check", "--online"], &[("RUST_LOG", "trace")]).await;
    assert_hidden(&all_output(&out), &[&ak, &sk]);

    // password: neither the password nor an IAM token (the simulator's start "MIIsim").
    let h = Harness::new(2).await;
    configure(&h, &password_auth(&h, "Corr3ct-Horse"), false);
    let out = certsync(&h, &["once"], &[("RUST_LOG", "trace")]).await;
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    assert_hidden(&all_output(&out), &["Corr3ct-Horse", "MIIsim"]);

    // metadata: no security token (the simulator's start "gQpjbi1ub3J0aC00sim"), no session
    // token; temporary keys are checked through a second fetch's shape in the unit tests.
    let h = Harness::new(2).await;
    configure(&h, &metadata_auth(&h), false);
    let out = certsync(&h, &["once"], &[("RUST_LOG", "trace")]).await;
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let all = all_output(&out);
    assert_hidden(
        &all,
        &["gQpjbi1ub3J0aC00sim", "X-Security-Token:", "\"secret\""],
    );
    for needle in ["Signature=", "AccessKeyId=", "Expires="] {
        assert!(!all.contains(needle), "{needle} in output");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_check_online_refuses_a_wrong_secret_key_when_project_id_is_set() {
    let h = Harness::new(1).await;
    configure(&h, &aksk_auth(&h), true);
    write_secret(&h, "sk", "0123456789abcdefghijABCDEFGHIJ0123456789");
    let out = certsync(&h, &["check", "--online"], &[]).await;
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    let text = stdout(&out);
    assert!(
        text.contains("authenticate (auth method aksk): failed: auth method aksk: the API refused the credentials"),
        "{text}"
    );
    assert!(text.contains("APIGW.0301"), "{text}");
    assert!(
        !text.contains("authenticate (auth method aksk): ok"),
        "{text}"
    );
    assert!(!text.contains("instance inst0"), "{text}");
    assert_hidden(
        &all_output(&out),
        &["0123456789abcdefghijABCDEFGHIJ0123456789"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_check_online_refuses_a_garbage_token() {
    let h = Harness::new(1).await;
    std::fs::write(&h.token_file, "garbage-token-0123456789\n").unwrap();
    let out = certsync(&h, &["check", "--online"], &[]).await;
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    let text = stdout(&out);
    assert!(
        text.contains("authenticate (auth method token): failed: auth method token: the API refused the credentials"),
        "{text}"
    );
    assert!(!text.contains(": ok"), "{text}");
    assert_hidden(&all_output(&out), &["garbage-token-0123456789"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_check_online_downloads_and_validates_and_refuses_a_host_not_allowed() {
    let h = Harness::new(2).await;
    // inst1's link redirects to https://localhost:PORT, a host the allowlist does not name.
    h.sim
        .set_fault(&h.id(1), certsync_sim::Fault::RedirectOtherHost);
    let out = certsync(&h, &["check", "--online"], &[]).await;
    assert_eq!(code(&out), 1, "{}", all_output(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "authenticate (auth method token): ok, project {}",
            h.sim.project_id()
        )),
        "{text}"
    );
    // The good instance: the file it would write, its CA's fingerprint and notAfter.
    let good = &h.sim.ca(&h.id(0), "international");
    assert!(text.contains("instance inst0: ok"), "{text}");
    assert!(
        text.contains(&format!(
            "international: would write {}",
            h.file(0).display()
        )),
        "{text}"
    );
    let cert_line = text
        .lines()
        .find(|l| l.contains(&format!("sha256 {}", good.sha256_hex)))
        .unwrap_or_else(|| panic!("no fingerprint line for inst0: {text}"));
    assert!(cert_line.contains("notAfter 20"), "{cert_line}");
    // The refused one fails, naming the host and the allowlist, without the link's query.
    let bad = text
        .lines()
        .find(|l| l.starts_with("  instance inst1: "))
        .unwrap_or_else(|| panic!("no line for inst1: {text}"));
    assert!(bad.contains("download failed"), "{bad}");
    assert!(
        bad.contains("\"localhost\" is not in sync.allowed_download_hosts"),
        "{bad}"
    );
    assert!(!text.contains("Signature="), "{text}");
    assert!(!h.trust.exists(), "check --online wrote the trust folder");

    // Every instance good: exit 0.
    h.sim.clear_fault(&h.id(1));
    let out = certsync(&h, &["check", "--online"], &[]).await;
    assert_eq!(code(&out), 0, "{}", all_output(&out));
    let text = stdout(&out);
    for i in 0..2 {
        let fp = h.sim.ca(&h.id(i), "international").sha256_hex;
        assert!(text.contains(&format!("sha256 {fp}")), "{text}");
    }
    assert!(!h.trust.exists());
}
