//! Talking to the cloud: the one pooled HTTPS client, credentials, and the API operations.
//!
//! Owns: [`http`] (client construction, TLS roots, redaction of URLs, capped body reads,
//! transport errors), [`auth`] (credentials and their refresh), [`api`] (the download-link
//! and ListInstances operations), [`instances`] (ListInstances' pages and bounded paging, as
//! pure data), [`fault`] (the services' error bodies, read as the SDK reads them) and
//! [`headers`] (which request headers carry credentials). `fault`, `headers`, `http` and
//! `instances` are leaves; `api` uses `auth`, never the other way round.
//! It never touches the trust folder and never downloads certificates (that is `fetch`).

pub mod api;
pub mod auth;
pub mod budget;
pub mod fault;
pub mod headers;
pub mod http;
pub mod instances;

use std::sync::Arc;

/// One account's pooled HTTP client and the API client over it, with the account's
/// credentials and request budget: what `run`, `once` and `check --online` all talk to the
/// cloud with. The budget is shared by the API client and the credentials (IAM requests draw
/// on it too).
pub fn connect(
    account: &crate::config::CloudAccount,
    budget: Arc<budget::Budget>,
) -> Result<(reqwest::Client, api::ApiClient), http::ClientError> {
    let cloud = &account.cloud;
    let client = http::build_client_trusting(&cloud.ca_certs, cloud.timeout)?;
    let credentials = auth::Credentials::for_account(account, client.clone(), budget.clone())?;
    let api = api::ApiClient::new(
        client.clone(),
        cloud.endpoint.clone(),
        Arc::new(credentials),
        budget,
    );
    Ok((client, api))
}

/// A fresh budget for `account`, of its `max_requests_per_second`.
pub fn budget_for(account: &crate::config::CloudAccount) -> Arc<budget::Budget> {
    Arc::new(budget::Budget::new(
        &account.name,
        account.cloud.max_requests_per_second,
    ))
}

/// [`connect`] for the default account of `config` with a budget of its own (the tests of
/// the network stages).
#[cfg(test)]
pub(crate) fn connect_default(
    config: &crate::config::Config,
) -> Result<(reqwest::Client, api::ApiClient), http::ClientError> {
    let account = config
        .account(crate::config::DEFAULT_ACCOUNT)
        .expect("a default account");
    connect(account, budget_for(account))
}

/// Helpers for the tests of the network stages: a configuration that talks to a simulator.
#[cfg(test)]
pub(crate) mod testing {
    use std::path::Path;

    /// A simulator with one instance, on loopback.
    pub(crate) async fn simulator() -> certsync_sim::Simulator {
        certsync_sim::Simulator::start(certsync_sim::SimOptions {
            instances: 1,
            ..certsync_sim::SimOptions::default()
        })
        .await
        .expect("start the simulator")
    }

    /// A token-authenticated configuration for `endpoint` (the simulator's, or one where nothing
    /// listens), trusting `ca_file`, its files in `dir`.
    pub(crate) fn config(
        endpoint: &str,
        project_id: &str,
        token: &str,
        ca_file: &Path,
        dir: &Path,
    ) -> crate::config::Config {
        std::fs::write(dir.join("token"), format!("{token}\n")).expect("write the token file");
        let text = format!(
            "[cloud]\nservice = \"gaussdb-nosql\"\nregion = \"cn-north-4\"\nendpoint = \"{endpoint}\"\n\
             project_id = \"{project_id}\"\nca_file = \"{}\"\ntimeout = \"5s\"\n\n\
             [auth]\nmethod = \"token\"\ntoken_file = \"token\"\n\n\
             [sync]\nallowed_download_hosts = [\"127.0.0.1\"]\n\n[trust]\ndir = \"trust\"\n\n\
             [[instance]]\nid = \"unused\"\n",
            ca_file.display()
        );
        crate::config::parse_with_env(&text, &dir.join("certsync.toml"), &|_| None)
            .expect("a valid configuration")
    }
}

#[cfg(test)]
mod tests {
    use super::http::testing::{closed_port, reqwest_in_chain};
    use crate::text::error_chain;

    /// `ca_file` is parsed once, when the configuration is loaded: the clients are built
    /// from those certificates, so the file may be gone by the time they are built, and a new
    /// load (a reload) reads it again.
    #[tokio::test]
    async fn regression_clients_trust_the_roots_parsed_at_load_and_never_reread_ca_file() {
        let dir = tempfile::tempdir().unwrap();
        let sim = super::testing::simulator().await;
        let roots = dir.path().join("roots.pem");
        std::fs::write(&roots, sim.ca_pem()).unwrap();
        let config = super::testing::config(
            &sim.endpoint(),
            &sim.project_id(),
            &sim.token(),
            &roots,
            dir.path(),
        );
        assert_eq!(config.accounts[0].cloud.ca_certs.len(), 1);
        std::fs::remove_file(&roots).unwrap();
        let (_, api) = super::connect_default(&config).unwrap();
        let id = sim.instance_ids()[0].clone();
        let listing = api.list_certs(&id).await.unwrap();
        assert!(!listing.certs.is_empty());

        // A new load reads the file as it is now.
        let other = rcgen::generate_simple_self_signed(vec!["other.test".to_string()]).unwrap();
        std::fs::write(&roots, other.cert.pem()).unwrap();
        let reloaded = super::testing::config(
            &sim.endpoint(),
            &sim.project_id(),
            &sim.token(),
            &roots,
            dir.path(),
        );
        assert_eq!(
            reloaded.accounts[0].cloud.ca_certs,
            [other.cert.der().clone()]
        );
        sim.shutdown();
    }

    #[tokio::test]
    async fn regression_an_unreachable_api_keeps_the_reqwest_error_as_source() {
        let dir = tempfile::tempdir().unwrap();
        let sim = certsync_sim::Simulator::start(certsync_sim::SimOptions::default())
            .await
            .unwrap();
        let port = closed_port();
        let config = super::testing::config(
            &format!("https://127.0.0.1:{port}"),
            &sim.project_id(),
            &sim.token(),
            &sim.ca_file(),
            dir.path(),
        );
        let (_, api) = super::connect_default(&config).unwrap();
        let err = api
            .list_instances(Some("mongodb"), Some("secret-name"))
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "api_unreachable", "{err:?}");
        let cause = reqwest_in_chain(&err).unwrap_or_else(|| panic!("no source: {err:?}"));
        assert!(cause.is_connect() && cause.url().is_none(), "{cause:?}");
        let text = error_chain(&err);
        assert!(
            text.starts_with(&format!("GET https://127.0.0.1:{port}/v3/"))
                && text.contains("/instances: connection failed: ")
                && text.contains("Connection refused"),
            "{text}"
        );
        assert!(
            !text.contains('?') && !text.contains("secret-name"),
            "{text}"
        );
        sim.shutdown();
    }
}
