//! The API operations certsync uses, with the retry rules of SPEC 5.1.
//!
//! Owns: building the download-link request (its query, when it has one, in the canonical form
//! that AK/SK signatures cover), the in-pass retries of 429/5xx (honouring Retry-After), the
//! single credential refresh after a 401, the limit of links per answer (SPEC 6), and the
//! requests of ListInstances, page by page (the pages and the rules that bound the paging,
//! SPEC 5.4, are `instances`; error bodies are read by `fault`). It returns the listed links;
//! it never downloads them.

use std::sync::Arc;
use std::time::SystemTime;

use serde::Deserialize;
use url::Url;

use super::auth::{AuthError, Credentials};
use super::budget::Budget;
use super::fault::{ApiFault, parse_fault, scrub};
use super::headers::{header_map, secrets_in};
use super::http::{ExchangeError, RedactedUrl, TransportError, USER_AGENT, read_api_body};
use super::instances::{self, Paging};
use crate::schedule::{PASS_TRIES, in_pass_retry_delay, parse_retry_after};

pub use super::instances::{
    InstanceList, InstancesPage, LIST_PAGE, ListedInstance, MAX_LIST_PAGES, Truncation,
};

/// At most this many links in one download-link answer (SPEC 6); more fail the instance.
pub const MAX_LINKS: usize = 64;

/// One entry of the `certs` list. Its `Debug` shows the link without its query.
#[derive(Clone, PartialEq, Eq)]
pub struct CertLink {
    /// `category` as the API gives it (`international`, `national`, or anything else).
    pub category: String,
    /// `download_link`. Its query is a credential: show it only as [`RedactedUrl`].
    pub url: Url,
}

impl std::fmt::Debug for CertLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertLink")
            .field("category", &self.category)
            .field("url", &RedactedUrl::new(&self.url))
            .finish()
    }
}

/// The answer of ListSslCertDownloadAddresses.
#[derive(Clone, Debug)]
pub struct Listing {
    /// The listed certificates.
    pub certs: Vec<CertLink>,
    /// `X-Request-Id` of the answer.
    pub request_id: Option<String>,
}

/// Why listing an instance's certificates failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Credentials could not be had.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The API refused the credentials twice (once more after refreshing them).
    #[error(
        "auth method {method}: the API refused the credentials (GET {url}), also after refreshing them: {fault}"
    )]
    Unauthorized {
        /// The API URL (it has no query).
        url: RedactedUrl,
        /// The configured auth method.
        method: &'static str,
        /// The API's answer.
        fault: ApiFault,
    },
    /// A non-2xx answer (after the in-pass retries for 429/5xx).
    #[error("GET {url}: {fault}")]
    Status {
        /// The API URL.
        url: RedactedUrl,
        /// The API's answer.
        fault: ApiFault,
    },
    /// The request did not complete, or its answer could not be read.
    #[error("GET {url}: {source}")]
    Transport {
        /// The API URL.
        url: RedactedUrl,
        /// What failed (reqwest's error without the URL).
        #[source]
        source: ExchangeError,
    },
    /// A header certsync built cannot be sent (a credential with bad characters).
    #[error(
        "GET {url}: auth method {method}: header {header} holds characters not allowed in HTTP"
    )]
    BadHeader {
        /// The API URL.
        url: RedactedUrl,
        /// The configured auth method.
        method: &'static str,
        /// The header's name (never its value).
        header: String,
    },
    /// The download-link answer lists more certificate links than an instance may have
    /// (SPEC 6).
    #[error(
        "GET {url}: the answer lists {count} certificate links, more than the limit of {MAX_LINKS} per instance"
    )]
    TooManyLinks {
        /// The API URL.
        url: RedactedUrl,
        /// How many links it listed.
        count: usize,
    },
    /// A 2xx answer that is not the documented JSON.
    #[error("GET {url}: unexpected answer: {reason}")]
    BadBody {
        /// The API URL.
        url: RedactedUrl,
        /// What was wrong.
        reason: String,
    },
}

impl ApiError {
    /// A short stable reason for metrics and summaries.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::Auth(_) | ApiError::Unauthorized { .. } | ApiError::BadHeader { .. } => {
                "auth"
            }
            ApiError::Status { fault, .. } if fault.status == 429 => "throttled",
            ApiError::Status { fault, .. } if fault.status >= 500 => "api_server_error",
            ApiError::Status { .. } => "api_error",
            ApiError::Transport { .. } => "api_unreachable",
            ApiError::BadBody { .. } => "api_bad_answer",
            ApiError::TooManyLinks { .. } => "too_many_links",
        }
    }
}

/// The API client: endpoint and credentials (which know the project) over the shared HTTP
/// client.
#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    endpoint: Url,
    credentials: Arc<Credentials>,
    /// The account's request budget (SPEC 15), shared with the credentials.
    budget: Arc<Budget>,
    observer: Option<RequestObserver>,
}

/// Told of every API request: the operation's name and the HTTP status (0: no answer). The
/// daemon counts them in `certsync_api_requests_total`.
pub type RequestObserver = Arc<dyn Fn(&'static str, u16) + Send + Sync>;

/// Operation names, as Huawei's SDK calls them.
pub const OP_LIST_CERTS: &str = "list_ssl_cert_download_addresses";
/// ListInstances.
pub const OP_LIST_INSTANCES: &str = "list_instances";

#[derive(Deserialize)]
struct ListingBody {
    #[serde(default)]
    certs: Option<Vec<CertInfoBody>>,
}

#[derive(Deserialize)]
struct CertInfoBody {
    category: String,
    download_link: String,
}

impl ApiClient {
    /// A client for `endpoint` (scheme + host [+ port] [+ path prefix]); the project id comes
    /// from `credentials` (configured, or looked up once); every request takes a token from
    /// `budget` first.
    pub fn new(
        http: reqwest::Client,
        endpoint: Url,
        credentials: Arc<Credentials>,
        budget: Arc<Budget>,
    ) -> ApiClient {
        ApiClient {
            http,
            endpoint,
            credentials,
            budget,
            observer: None,
        }
    }

    /// The account's request budget.
    pub fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }

    /// The same client, telling `observer` of every request.
    pub fn with_observer(mut self, observer: RequestObserver) -> ApiClient {
        self.observer = Some(observer);
        self
    }

    fn observe(&self, operation: &'static str, status: u16) {
        if let Some(observer) = &self.observer {
            observer(operation, status);
        }
    }

    /// The credentials in use.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// `{endpoint}/v3/{project_id}/{segments...}`, with `query` (pairs) in the canonical form
    /// that goes on the wire as it is signed.
    pub async fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Result<Url, ApiError> {
        let project_id = self.credentials.project_id().await?;
        let mut url = self.endpoint.clone();
        url.path_segments_mut()
            .expect("https endpoint has a path")
            .pop_if_empty()
            .extend(["v3", project_id.as_str()])
            .extend(segments);
        if !query.is_empty() {
            url.set_query(Some(&certsync_sign::canonical_query(query)));
        }
        Ok(url)
    }

    /// The URL of ListSslCertDownloadAddresses for `instance_id`.
    pub async fn download_link_url(&self, instance_id: &str) -> Result<Url, ApiError> {
        self.url(
            &["instances", instance_id, "ssl-cert", "download-link"],
            &[],
        )
        .await
    }

    /// `GET /v3/{project_id}/instances/{id}/ssl-cert/download-link`, with the retries of SPEC 5.1
    /// and 4 (429/5xx up to three tries honouring Retry-After; one credential refresh after 401).
    pub async fn list_certs(&self, instance_id: &str) -> Result<Listing, ApiError> {
        let url = self.download_link_url(instance_id).await?;
        let (body, request_id) = self.get(OP_LIST_CERTS, &url).await?;
        parse_listing(&body, request_id, &RedactedUrl::new(&url))
    }

    /// ListInstances (`GET /v3/{project_id}/instances`), page by page (`offset`/`limit` 100),
    /// with the `datastore_type` and `name` filters. Paging is bounded (SPEC 5.4): it stops at
    /// the first empty or short page, at `total_count`, after a page that holds only ids seen
    /// before (a server that ignores `offset`), or after [`MAX_LIST_PAGES`] pages; the last two
    /// are reported in [`InstanceList::truncated`]. An id listed on several pages is kept once.
    pub async fn list_instances(
        &self,
        datastore: Option<&str>,
        name: Option<&str>,
    ) -> Result<InstanceList, ApiError> {
        let mut paging = Paging::default();
        loop {
            let offset = paging.offset.to_string();
            let limit = LIST_PAGE.to_string();
            let mut query = vec![("offset", offset.as_str()), ("limit", limit.as_str())];
            if let Some(d) = datastore {
                query.push(("datastore_type", d));
            }
            if let Some(n) = name {
                query.push(("name", n));
            }
            let url = self.url(&["instances"], &query).await?;
            let (body, _) = self.get(OP_LIST_INSTANCES, &url).await?;
            let page = parse_instances_page(&body, &RedactedUrl::new(&url))?;
            if let Some(done) = paging.take(page) {
                return Ok(done);
            }
        }
    }

    /// Proves the credentials with one real request: ListInstances with `limit=1` for the
    /// project (the 401 refresh of [`ApiClient::get`] included). `Ok` only for a 2xx answer;
    /// for `check --online`, where reading the credentials alone proves nothing.
    pub async fn probe_credentials(&self) -> Result<(), ApiError> {
        let url = self
            .url(&["instances"], &[("offset", "0"), ("limit", "1")])
            .await?;
        let (body, _) = self.get(OP_LIST_INSTANCES, &url).await?;
        // A 2xx that is not ListInstances' JSON means something else answered.
        parse_instances_page(&body, &RedactedUrl::new(&url)).map(|_| ())
    }

    /// GET `url` (an API URL from [`ApiClient::url`]) with credentials: 429/5xx retried up to
    /// [`PASS_TRIES`] times honouring Retry-After, a 401 answered by refreshing the credentials
    /// once. Gives the 2xx body and its `X-Request-Id`.
    pub async fn get(
        &self,
        operation: &'static str,
        url: &Url,
    ) -> Result<(Vec<u8>, Option<String>), ApiError> {
        let shown = RedactedUrl::new(url);
        let mut tries = 0;
        // The generation of credentials a 401 refused; refreshed before the retry.
        let mut refused = None;
        let mut refreshed = false;
        loop {
            tries += 1;
            // What the SDK sends and signs; Accept is added after signing, as requests does.
            // User-Agent is set here (not only on the client) so that, like the SDK's, it is
            // among the signed headers.
            let mut headers = vec![
                ("Content-Type".to_string(), "application/json".to_string()),
                ("User-Agent".to_string(), USER_AGENT.to_string()),
            ];
            let generation = self
                .credentials
                .authorize("GET", url, &mut headers, b"", refused.take())
                .await?;
            let map = header_map(&headers).map_err(|header| ApiError::BadHeader {
                url: shown.clone(),
                method: self.credentials.method(),
                header,
            })?;
            // Signed before the wait: a wait is at most a minute, well inside the 15 minutes
            // the gateway accepts X-Sdk-Date for.
            self.budget.take(url).await;
            let response = self
                .http
                .get(url.clone())
                .headers(map)
                .header("Accept", "application/json")
                .send()
                .await
                .map_err(|e| {
                    self.observe(operation, 0);
                    ApiError::Transport {
                        url: shown.clone(),
                        source: TransportError::new(e).into(),
                    }
                })?;
            let status = response.status().as_u16();
            self.observe(operation, status);
            let request_id = header(&response, "x-request-id");
            let retry_after = header(&response, "retry-after")
                .and_then(|v| parse_retry_after(&v, SystemTime::now()));
            let body = read_api_body(response)
                .await
                .map_err(|source| ApiError::Transport {
                    url: shown.clone(),
                    source,
                })?;
            if status == 429 {
                // The gateway's throttling pauses the whole account: every instance, every
                // endpoint (SPEC 15).
                self.budget.throttled(retry_after, fastrand::f64());
            }
            match status {
                200..=299 => return Ok((body, request_id)),
                401 if !refreshed => {
                    tracing::info!(url = %shown, method = self.credentials.method(), "API answered 401; refreshing credentials and retrying once");
                    refreshed = true;
                    refused = Some(generation);
                    // The retry after a refresh does not use up one of the 429/5xx tries.
                    tries -= 1;
                }
                401 => {
                    return Err(ApiError::Unauthorized {
                        url: shown,
                        method: self.credentials.method(),
                        fault: scrub(
                            parse_fault(status, &body, request_id),
                            &secrets_in(&headers),
                        ),
                    });
                }
                // The retry waits in the budget for the account's pause to end.
                429 if tries < PASS_TRIES => {
                    tracing::debug!(url = %shown, "throttled; retrying after the account's pause");
                }
                500..=599 if tries < PASS_TRIES => {
                    let delay = in_pass_retry_delay(tries, retry_after);
                    tracing::debug!(url = %shown, status, ?delay, "retrying within the pass");
                    tokio::time::sleep(delay).await;
                }
                _ => {
                    return Err(ApiError::Status {
                        url: shown,
                        fault: scrub(
                            parse_fault(status, &body, request_id),
                            &secrets_in(&headers),
                        ),
                    });
                }
            }
        }
    }
}

fn header(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Reads one ListInstances answer (`shown` is the request's URL, for errors).
pub(crate) fn parse_instances_page(
    body: &[u8],
    shown: &RedactedUrl,
) -> Result<InstancesPage, ApiError> {
    instances::parse_page(body).map_err(|e| ApiError::BadBody {
        url: shown.clone(),
        reason: format!(
            "not the documented ListInstances JSON ({:?} error at line {}, column {})",
            e.classify(),
            e.line(),
            e.column()
        ),
    })
}

/// Reads a download-link answer (`shown` is the request's URL, for errors).
pub(crate) fn parse_listing(
    body: &[u8],
    request_id: Option<String>,
    shown: &RedactedUrl,
) -> Result<Listing, ApiError> {
    let bad = |reason: String| ApiError::BadBody {
        url: shown.clone(),
        reason,
    };
    // Only where the JSON went wrong, never its text: a 2xx body holds download links whose
    // query is a credential (and serde's messages quote the values they reject).
    let parsed: ListingBody = serde_json::from_slice(body).map_err(|e| {
        bad(format!(
            "not the documented JSON ({:?} error at line {}, column {}, in {} bytes)",
            e.classify(),
            e.line(),
            e.column(),
            body.len()
        ))
    })?;
    let listed = parsed.certs.unwrap_or_default();
    if listed.len() > MAX_LINKS {
        return Err(ApiError::TooManyLinks {
            url: shown.clone(),
            count: listed.len(),
        });
    }
    let mut certs = Vec::with_capacity(listed.len());
    for (i, info) in listed.into_iter().enumerate() {
        let url = Url::parse(&info.download_link)
            .map_err(|e| bad(format!("certs[{i}].download_link is not a URL ({e})")))?;
        certs.push(CertLink {
            category: info.category,
            url,
        });
    }
    Ok(Listing { certs, request_id })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_without_certs_is_empty() {
        let shown = RedactedUrl::new(&Url::parse("https://h/x").unwrap());
        assert!(parse_listing(b"{}", None, &shown).unwrap().certs.is_empty());
        assert!(matches!(
            parse_listing(b"<html>", None, &shown),
            Err(ApiError::BadBody { .. })
        ));
    }

    #[test]
    fn a_malformed_listing_never_shows_a_link_query() {
        let shown = RedactedUrl::new(&Url::parse("https://h/x").unwrap());
        let link =
            "https://obs.example.myhuaweicloud.com/b/ca.crt?AccessKeyId=AK&Signature=SECRETSIG";
        for body in [
            format!(
                r#"{{"certs":[{{"category":"international","download_link":"{link}"}},{{"category":null,"download_link":"x"}}]}}"#
            ),
            format!(r#"{{"certs":"{link}"}}"#),
            format!(r#"{{"certs":[{{"category":"international","download_link":"{link}"}}"#),
        ] {
            let err = parse_listing(body.as_bytes(), None, &shown)
                .unwrap_err()
                .to_string();
            assert!(err.contains("not the documented JSON"), "{err}");
            assert!(
                !err.contains("SECRETSIG") && !err.contains("AccessKeyId"),
                "{err}"
            );
        }
        let link = CertLink {
            category: "international".into(),
            url: Url::parse(link).unwrap(),
        };
        assert!(!format!("{link:?}").contains("SECRETSIG"));
    }

    #[test]
    fn regression_more_than_64_links_fail_the_listing() {
        let shown = RedactedUrl::new(&Url::parse("https://h/x").unwrap());
        let body = |n: usize| {
            let certs: Vec<String> = (0..n)
                .map(|i| {
                    format!(
                        r#"{{"category":"c{i}","download_link":"https://obs.example.com/{i}.crt?Signature=SECRETSIG"}}"#
                    )
                })
                .collect();
            format!(r#"{{"certs":[{}]}}"#, certs.join(","))
        };
        assert_eq!(
            parse_listing(body(64).as_bytes(), None, &shown)
                .unwrap()
                .certs
                .len(),
            64
        );
        let err = parse_listing(body(65).as_bytes(), None, &shown).unwrap_err();
        assert!(
            matches!(err, ApiError::TooManyLinks { count: 65, .. }),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains("65") && text.contains("limit of 64"),
            "{text}"
        );
        assert!(!text.contains("SECRETSIG"), "{text}");
        assert_eq!(err.reason(), "too_many_links");
    }
}
