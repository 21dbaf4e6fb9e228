//! The API operations certsync uses, with the retry rules of SPEC 5.1.
//!
//! Owns: building the download-link request (its query, when it has one, in the canonical form
//! that AK/SK signatures cover), the in-pass retries of 429/5xx (honouring Retry-After), the
//! single credential refresh after a 401, reading the API's error bodies the way Huawei's
//! SDK does, the limit of links per answer (SPEC 6), and ListInstances' bounded paging (SPEC
//! 5.4), which reports a listing it had to cut short instead of looping. It returns the listed
//! links; it never downloads them.

use std::sync::Arc;
use std::time::SystemTime;

use serde::Deserialize;
use url::Url;

use super::auth::{AuthError, Credentials};
use super::fault::{ApiFault, parse_fault, scrub};
use super::headers::{header_map, secrets_in};
use super::http::{ExchangeError, RedactedUrl, TransportError, USER_AGENT, read_api_body};
use crate::schedule::{PASS_TRIES, in_pass_retry_delay, parse_retry_after};

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

/// One instance of ListInstances, the fields discovery uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedInstance {
    /// `id`.
    pub id: String,
    /// `name`.
    pub name: String,
    /// `status` (`normal`, `abnormal`, `creating`, ...).
    pub status: String,
    /// `datastore.type`.
    pub datastore_type: String,
    /// `ssl` is not `"0"`.
    pub ssl: bool,
}

/// ListInstances' page size (the API's largest).
pub const LIST_PAGE: usize = 100;

/// At most this many pages are read per query (10,000 instances), whatever `total_count` says.
pub const MAX_LIST_PAGES: usize = 100;

/// What one ListInstances query found, and whether paging was cut short.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstanceList {
    /// Every instance listed, each id once, in the order first listed.
    pub instances: Vec<ListedInstance>,
    /// `Some` when paging stopped before the listing was complete: the instances past that
    /// point are missing from [`InstanceList::instances`].
    pub truncated: Option<Truncation>,
}

/// Why a ListInstances query stopped before its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Truncation {
    /// [`MAX_LIST_PAGES`] full pages were read and the API still claims more.
    PageLimit {
        /// Pages read.
        pages: usize,
        /// The `total_count` the API claimed, when it gave one.
        total_count: Option<usize>,
    },
    /// A full page held only ids listed before: the server ignores `offset`.
    OffsetIgnored {
        /// The offset of that page.
        offset: usize,
    },
}

impl std::fmt::Display for Truncation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Truncation::PageLimit { pages, total_count } => {
                write!(
                    f,
                    "stopped after {pages} pages ({} instances)",
                    pages.saturating_mul(LIST_PAGE)
                )?;
                if let Some(total) = total_count {
                    write!(f, " although total_count says {total}")?;
                }
                Ok(())
            }
            Truncation::OffsetIgnored { offset } => write!(
                f,
                "the page at offset {offset} lists only instances already listed: the API ignores offset"
            ),
        }
    }
}

/// The state of one paged ListInstances query: what was listed so far and where the next
/// page starts. Pure, so the stopping rules are unit-tested without a server.
#[derive(Default)]
struct Paging {
    seen: std::collections::HashSet<String>,
    out: Vec<ListedInstance>,
    /// `offset` of the next page: entries received so far (duplicates included, as the
    /// server counts them).
    offset: usize,
    pages: usize,
}

impl Paging {
    /// Takes one page; `Some` when the query is done.
    fn take(&mut self, page: InstancesPage) -> Option<InstanceList> {
        self.pages += 1;
        let got = page.instances.len();
        self.offset = self.offset.saturating_add(got);
        let mut fresh = 0;
        for inst in page.instances {
            if self.seen.insert(inst.id.clone()) {
                fresh += 1;
                self.out.push(inst);
            }
        }
        let truncated = if got >= LIST_PAGE && fresh == 0 {
            // Checked before total_count: a full page of repeats is never the real end, even
            // when the count of entries received reaches total_count.
            Some(Truncation::OffsetIgnored {
                offset: self.offset - got,
            })
        } else if got < LIST_PAGE || page.total_count.is_some_and(|t| self.offset >= t) {
            // A short or empty page is the last; total_count also guards against a server
            // that ignores `limit`.
            None
        } else if self.pages >= MAX_LIST_PAGES {
            Some(Truncation::PageLimit {
                pages: self.pages,
                total_count: page.total_count,
            })
        } else {
            return None;
        };
        Some(InstanceList {
            instances: std::mem::take(&mut self.out),
            truncated,
        })
    }
}

#[derive(Deserialize)]
struct InstancesBody {
    #[serde(default)]
    instances: Vec<InstanceBody>,
    total_count: Option<usize>,
}

#[derive(Deserialize)]
struct InstanceBody {
    id: String,
    #[serde(default)]
    name: String,
    status: Option<String>,
    datastore: Option<DatastoreBody>,
    ssl: Option<String>,
}

#[derive(Deserialize)]
struct DatastoreBody {
    #[serde(rename = "type", default)]
    kind: String,
}

impl ApiClient {
    /// A client for `endpoint` (scheme + host [+ port] [+ path prefix]); the project id comes
    /// from `credentials` (configured, or looked up once).
    pub fn new(http: reqwest::Client, endpoint: Url, credentials: Arc<Credentials>) -> ApiClient {
        ApiClient {
            http,
            endpoint,
            credentials,
            observer: None,
        }
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
                429 | 500..=599 if tries < PASS_TRIES => {
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

/// One page of ListInstances: its instances and its `total_count`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstancesPage {
    /// The instances of this page.
    pub instances: Vec<ListedInstance>,
    /// `total_count`, when the answer has it.
    pub total_count: Option<usize>,
}

/// Reads one ListInstances answer (`shown` is the request's URL, for errors).
pub(crate) fn parse_instances_page(
    body: &[u8],
    shown: &RedactedUrl,
) -> Result<InstancesPage, ApiError> {
    let page: InstancesBody = serde_json::from_slice(body).map_err(|e| ApiError::BadBody {
        url: shown.clone(),
        reason: format!(
            "not the documented ListInstances JSON ({:?} error at line {}, column {})",
            e.classify(),
            e.line(),
            e.column()
        ),
    })?;
    Ok(InstancesPage {
        instances: page
            .instances
            .into_iter()
            .map(|i| ListedInstance {
                id: i.id,
                name: i.name,
                status: i.status.unwrap_or_default(),
                datastore_type: i.datastore.map(|d| d.kind).unwrap_or_default(),
                ssl: i.ssl.as_deref() != Some("0"),
            })
            .collect(),
        total_count: page.total_count,
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

    fn listed(ids: impl IntoIterator<Item = usize>) -> Vec<ListedInstance> {
        ids.into_iter()
            .map(|n| ListedInstance {
                id: format!("id-{n}"),
                name: format!("inst-{n}"),
                status: "normal".into(),
                datastore_type: "mongodb".into(),
                ssl: true,
            })
            .collect()
    }

    fn page(ids: impl IntoIterator<Item = usize>, total_count: Option<usize>) -> InstancesPage {
        InstancesPage {
            instances: listed(ids),
            total_count,
        }
    }

    /// Feeds pages until the query is done (failing after 1,000 pages); gives the result and
    /// the offsets asked for.
    fn run(mut next: impl FnMut(usize) -> InstancesPage) -> (InstanceList, Vec<usize>) {
        let mut paging = Paging::default();
        let mut offsets = Vec::new();
        for _ in 0..1000 {
            offsets.push(paging.offset);
            if let Some(done) = paging.take(next(paging.offset)) {
                return (done, offsets);
            }
        }
        panic!("paging did not stop after 1000 pages");
    }

    #[test]
    fn paging_stops_at_a_short_page_an_empty_page_or_total_count() {
        let (done, offsets) = run(|o| page(o..(o + 100).min(250), Some(250)));
        assert_eq!((done.instances.len(), done.truncated), (250, None));
        assert_eq!(offsets, [0, 100, 200]);
        // Exactly two full pages without total_count: the empty third page ends it.
        let (done, offsets) = run(|o| page(o..(o + 100).min(200), None));
        assert_eq!((done.instances.len(), done.truncated), (200, None));
        assert_eq!(offsets, [0, 100, 200]);
        // total_count reached on a full page: no request for an empty page.
        let (done, offsets) = run(|o| page(o..o + 100, Some(200)));
        assert_eq!((done.instances.len(), offsets.len()), (200, 2));
    }

    #[test]
    fn regression_paging_stops_when_offset_is_ignored_even_with_a_huge_total() {
        let (done, offsets) = run(|_| page(0..100, Some(1_000_000_000_000)));
        assert_eq!(done.instances.len(), 100);
        assert_eq!(offsets, [0, 100]);
        assert_eq!(
            done.truncated,
            Some(Truncation::OffsetIgnored { offset: 100 })
        );
        // With a truthful total_count the old rule (entries received >= total) stopped here
        // too, but called a listing with a third of the instances missing complete.
        let (done, _) = run(|_| page(0..100, Some(150)));
        assert_eq!(
            done.truncated,
            Some(Truncation::OffsetIgnored { offset: 100 })
        );
        let text = done.truncated.unwrap().to_string();
        assert!(text.contains("ignores offset"), "{text}");
    }

    #[test]
    fn regression_paging_stops_after_100_pages_of_an_endless_listing() {
        let (done, offsets) = run(|o| page(o..o + 100, Some(1_000_000_000_000)));
        assert_eq!(offsets.len(), MAX_LIST_PAGES);
        assert_eq!(done.instances.len(), 10_000);
        assert_eq!(
            done.truncated,
            Some(Truncation::PageLimit {
                pages: 100,
                total_count: Some(1_000_000_000_000)
            })
        );
        let text = done.truncated.unwrap().to_string();
        assert!(text.contains("100 pages (10000 instances)"), "{text}");
        // Without total_count at all, too.
        let (done, offsets) = run(|o| page(o..o + 100, None));
        assert_eq!(offsets.len(), MAX_LIST_PAGES);
        assert!(matches!(done.truncated, Some(Truncation::PageLimit { .. })));
    }

    #[test]
    fn an_id_listed_on_two_pages_is_kept_once() {
        // An instance created while paging shifts the listing by one: the last id of a page
        // comes again first on the next.
        let (done, offsets) = run(|o| {
            let start = o.saturating_sub(usize::from(o > 0));
            page(start..(start + 100).min(230), Some(230))
        });
        assert_eq!(offsets, [0, 100, 200]);
        let ids: std::collections::HashSet<_> = done.instances.iter().map(|i| &i.id).collect();
        assert_eq!(ids.len(), done.instances.len());
        assert_eq!(done.instances.len(), 230);
        assert_eq!(done.truncated, None);
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
