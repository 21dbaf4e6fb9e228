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
pub mod fault;
pub mod headers;
pub mod http;
pub mod instances;

use std::sync::Arc;

/// The pooled HTTP client and the API client over it, with the configured credentials: what
/// `run`, `once` and `check --online` all talk to the cloud with.
pub fn connect(
    config: &crate::config::Config,
) -> Result<(reqwest::Client, api::ApiClient), http::ClientError> {
    let client = http::build_client(config.cloud.ca_file.as_deref(), config.cloud.timeout)?;
    let credentials = auth::Credentials::from_config(config, client.clone())?;
    let api = api::ApiClient::new(
        client.clone(),
        config.cloud.endpoint.clone(),
        Arc::new(credentials),
    );
    Ok((client, api))
}
