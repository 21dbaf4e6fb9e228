//! Downloads of the listed CA links (SPEC 5.2).
//!
//! Owns: the rules for a download — https only, hosts from `allowed_download_hosts` (checked
//! again on every redirect, at most three), the size cap, and OBS's error answers. Links are
//! fetched at once and never cached. A link's query string is a credential: it appears only
//! as [`RedactedUrl`]. Its errors say plainly what happened for the reader at 3am (a refused,
//! likely expired link; a body cut short, with how much arrived) in their own words, and keep
//! reqwest's error, without the URL, as their source for the chain printed at the top. This
//! module does not look at the bytes (that is `validate`).

use url::Url;

use crate::cloud::http::{self, ExchangeError, RedactedUrl, TransportError};

/// At most this many redirects are followed.
pub const MAX_REDIRECTS: usize = 3;

/// One allowed host: an exact name, or `*.suffix` for any name below `suffix`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPattern(String);

impl HostPattern {
    /// A pattern from the config (already validated and lower-cased by `config`).
    pub fn new(pattern: &str) -> HostPattern {
        HostPattern(normalize_host(pattern))
    }

    /// True when `host` is allowed by this pattern.
    pub fn matches(&self, host: &str) -> bool {
        let host = normalize_host(host);
        match self.0.strip_prefix("*.") {
            Some(suffix) => {
                host.len() > suffix.len() + 1
                    && host.ends_with(suffix)
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
            }
            None => host == self.0,
        }
    }
}

/// Lower-case, without a trailing dot, IPv6 without brackets and in canonical form, so that
/// `[::1]` in the config matches the host `url` gives for `https://[::1]/`.
fn normalize_host(host: &str) -> String {
    let bare = host
        .trim_end_matches('.')
        .trim_start_matches('[')
        .trim_end_matches(']');
    match bare.parse::<std::net::Ipv6Addr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => bare.to_ascii_lowercase(),
    }
}

/// A downloaded body and where it finally came from.
#[derive(Debug)]
pub struct Download {
    /// The body, at most `max_bytes`.
    pub bytes: Vec<u8>,
    /// The URL that answered (after redirects), redacted.
    pub url: RedactedUrl,
}

/// Why a download failed. Every variant names the URL without its query.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Not an https URL.
    #[error("{url}: refused: only https download links are allowed")]
    NotHttps {
        /// The link.
        url: RedactedUrl,
    },
    /// The host is not in `allowed_download_hosts`.
    #[error("{url}: refused: host {host:?} is not in sync.allowed_download_hosts")]
    HostNotAllowed {
        /// The link.
        url: RedactedUrl,
        /// Its host.
        host: String,
    },
    /// More than [`MAX_REDIRECTS`] redirects.
    #[error("{url}: more than {MAX_REDIRECTS} redirects")]
    TooManyRedirects {
        /// The last URL.
        url: RedactedUrl,
    },
    /// A redirect without a usable Location.
    #[error("{url}: redirect without a valid Location")]
    BadRedirect {
        /// The URL that redirected.
        url: RedactedUrl,
    },
    /// A non-2xx answer (OBS answers XML with a `<Code>`; an expired link gives 403 AccessDenied).
    #[error("{url}: HTTP {status}{}{}", code.as_ref().map(|c| format!(" {c}")).unwrap_or_default(), status_hint(*.status))]
    Status {
        /// The URL.
        url: RedactedUrl,
        /// HTTP status.
        status: u16,
        /// OBS's `<Code>` when the body has one.
        code: Option<String>,
    },
    /// The body is larger than `sync.max_download_bytes`.
    #[error("{url}: body larger than sync.max_download_bytes ({limit} bytes)")]
    TooLarge {
        /// The URL.
        url: RedactedUrl,
        /// The limit.
        limit: u64,
    },
    /// The connection closed before the whole body arrived.
    #[error("{url}: the connection closed before the whole body arrived ({})", match .expected {
        Some(total) => format!("{received} of {total} bytes"),
        None => format!("after {received} bytes"),
    })]
    Truncated {
        /// The URL.
        url: RedactedUrl,
        /// Bytes received.
        received: u64,
        /// `Content-Length`, when announced.
        expected: Option<u64>,
        /// What reqwest saw (without the URL).
        #[source]
        source: TransportError,
    },
    /// The request failed, or reading the body failed otherwise.
    #[error("{url}: {source}")]
    Transport {
        /// The URL.
        url: RedactedUrl,
        /// What failed (reqwest's error without the URL).
        #[source]
        source: TransportError,
    },
}

impl FetchError {
    /// A short stable reason for metrics and summaries.
    pub fn reason(&self) -> &'static str {
        match self {
            FetchError::NotHttps { .. } | FetchError::HostNotAllowed { .. } => "download_refused",
            FetchError::TooManyRedirects { .. } | FetchError::BadRedirect { .. } => {
                "download_redirect"
            }
            FetchError::Status { .. } => "download_status",
            FetchError::TooLarge { .. } => "download_too_large",
            FetchError::Truncated { .. } | FetchError::Transport { .. } => "download_failed",
        }
    }
}

/// Downloads CA links under the configured rules, over the shared client.
#[derive(Clone)]
pub struct Fetcher {
    http: reqwest::Client,
    allowed: Vec<HostPattern>,
    max_bytes: u64,
}

impl Fetcher {
    /// A fetcher with the allowlist and size cap of `[sync]`.
    pub fn new(http: reqwest::Client, allowed: &[String], max_bytes: u64) -> Fetcher {
        Fetcher {
            http,
            allowed: allowed.iter().map(|p| HostPattern::new(p)).collect(),
            max_bytes,
        }
    }

    fn check(&self, url: &Url) -> Result<(), FetchError> {
        if url.scheme() != "https" {
            return Err(FetchError::NotHttps {
                url: RedactedUrl::new(url),
            });
        }
        let host = url.host_str().unwrap_or("");
        if !self.allowed.iter().any(|p| p.matches(host)) {
            return Err(FetchError::HostNotAllowed {
                url: RedactedUrl::new(url),
                host: host.to_string(),
            });
        }
        Ok(())
    }

    /// Fetches `link`, following at most three redirects, each checked like the link itself.
    /// No credentials of the API are sent: the link carries its own.
    pub async fn download(&self, link: &Url) -> Result<Download, FetchError> {
        let mut url = link.clone();
        let mut redirects = 0;
        loop {
            self.check(&url)?;
            let shown = RedactedUrl::new(&url);
            let mut response =
                self.http
                    .get(url.clone())
                    .send()
                    .await
                    .map_err(|e| FetchError::Transport {
                        url: shown.clone(),
                        source: TransportError::new(e),
                    })?;
            let status = response.status();
            if status.is_redirection() {
                redirects += 1;
                if redirects > MAX_REDIRECTS {
                    return Err(FetchError::TooManyRedirects { url: shown });
                }
                let next = response
                    .headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|loc| url.join(loc).ok())
                    .ok_or_else(|| FetchError::BadRedirect { url: shown.clone() })?;
                tracing::debug!(from = %shown, to = %RedactedUrl::new(&next), "following redirect");
                url = next;
                continue;
            }
            if !status.is_success() {
                let body = read_capped(&mut response, 64 * 1024, &shown)
                    .await
                    .unwrap_or_default();
                return Err(FetchError::Status {
                    url: shown,
                    status: status.as_u16(),
                    code: xml_code(&body),
                });
            }
            if response
                .content_length()
                .is_some_and(|n| n > self.max_bytes)
            {
                return Err(FetchError::TooLarge {
                    url: shown,
                    limit: self.max_bytes,
                });
            }
            let bytes = read_capped(&mut response, self.max_bytes, &shown).await?;
            return Ok(Download { bytes, url: shown });
        }
    }
}

async fn read_capped(
    response: &mut reqwest::Response,
    limit: u64,
    shown: &RedactedUrl,
) -> Result<Vec<u8>, FetchError> {
    http::read_capped(response, limit)
        .await
        .map_err(|e| match e {
            ExchangeError::TooLarge { limit } => FetchError::TooLarge {
                url: shown.clone(),
                limit,
            },
            ExchangeError::Truncated {
                received,
                expected,
                source,
            } => FetchError::Truncated {
                url: shown.clone(),
                received,
                expected,
                source,
            },
            ExchangeError::Transport(source) => FetchError::Transport {
                url: shown.clone(),
                source,
            },
        })
}

/// What a status from the download host means for the on-call reader. 403 is how OBS refuses
/// a pre-signed link: above all one that expired (links live minutes), or whose time the
/// host judges against a clock that is off.
fn status_hint(status: u16) -> &'static str {
    match status {
        403 => {
            ": the download host refused the link; links are short-lived, so it may have expired before the download, or this host's clock is off"
        }
        _ => "",
    }
}

/// OBS's `<Code>...</Code>`, sanitised, when present.
fn xml_code(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find("<Code>")? + "<Code>".len();
    let end = start + text[start..].find("</Code>")?;
    let code: String = text[start..end]
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(64)
        .collect();
    (!code.is_empty()).then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::http::testing::{closed_port, reqwest_in_chain};
    use crate::text::error_chain;

    /// A fetcher for loopback links, trusting the certificates of `ca_file`.
    fn fetcher(ca_file: &std::path::Path) -> Fetcher {
        let roots = crate::config::read_ca_file(ca_file).unwrap();
        let client =
            http::build_client_trusting(&roots, std::time::Duration::from_secs(5)).unwrap();
        Fetcher::new(client, &["127.0.0.1".to_string()], 1 << 20)
    }

    #[tokio::test]
    async fn regression_a_refused_download_keeps_its_source_without_the_query() {
        let sim = certsync_sim::Simulator::start(certsync_sim::SimOptions::default())
            .await
            .unwrap();
        let port = closed_port();
        let link = Url::parse(&format!(
            "https://127.0.0.1:{port}/obs/ca.crt?AccessKeyId=AK&Signature=SECRETSIG"
        ))
        .unwrap();
        let err = fetcher(&sim.ca_file()).download(&link).await.unwrap_err();
        assert!(matches!(err, FetchError::Transport { .. }), "{err:?}");
        let cause = reqwest_in_chain(&err).unwrap_or_else(|| panic!("no source: {err:?}"));
        assert!(cause.is_connect() && cause.url().is_none(), "{cause:?}");
        let text = error_chain(&err);
        assert!(
            text.starts_with(&format!(
                "https://127.0.0.1:{port}/obs/ca.crt: connection failed: "
            )) && text.contains("Connection refused"),
            "{text}"
        );
        for secret in ["SECRETSIG", "AccessKeyId", "?"] {
            assert!(!text.contains(secret), "{secret} in {text}");
            assert!(!format!("{err:?}").contains(secret), "{secret} in {err:?}");
        }
        sim.shutdown();
    }

    #[tokio::test]
    async fn regression_a_truncated_download_keeps_its_source_and_says_it_plainly() {
        let dir = tempfile::tempdir().unwrap();
        let sim = crate::cloud::testing::simulator().await;
        let id = sim.instance_ids()[0].clone();
        sim.set_fault(&id, certsync_sim::Fault::TruncatedDownload);
        let config = crate::cloud::testing::config(
            &sim.endpoint(),
            &sim.project_id(),
            &sim.token(),
            &sim.ca_file(),
            dir.path(),
        );
        let (_, api) = crate::cloud::connect_default(&config).unwrap();
        let listing = api.list_certs(&id).await.unwrap();
        let link = &listing.certs[0].url;
        assert!(
            link.query().is_some(),
            "the simulator's links are pre-signed"
        );
        let err = fetcher(&sim.ca_file()).download(link).await.unwrap_err();
        assert!(matches!(err, FetchError::Truncated { .. }), "{err:?}");
        assert!(std::error::Error::source(&err).is_some(), "{err:?}");
        // The chain says what happened in our words, and never in rustls's paragraph (which
        // ends in a documentation URL) nor with the link's query.
        let text = error_chain(&err);
        assert!(
            text.contains("the connection closed before the whole body arrived (")
                && text.contains(
                    " bytes): reading the body failed: the peer closed the connection early"
                ),
            "{text}"
        );
        for noise in ["docs.rs", "rustls", "?", "Signature"] {
            assert!(!text.contains(noise), "{noise} in {text}");
        }
        sim.shutdown();
    }

    #[test]
    fn host_patterns() {
        let p = HostPattern::new("*.myhuaweicloud.com");
        assert!(p.matches("obs.cn-north-4.myhuaweicloud.com"));
        assert!(p.matches("OBS.myhuaweicloud.com."));
        assert!(!p.matches("myhuaweicloud.com"));
        assert!(!p.matches("evilmyhuaweicloud.com"));
        assert!(!p.matches("myhuaweicloud.com.evil.org"));
        let v6 = HostPattern::new("[::1]");
        let url = Url::parse("https://[0:0::1]:8443/ca.crt").unwrap();
        assert!(v6.matches(url.host_str().unwrap()));
        assert!(!v6.matches("::2"));
        let exact = HostPattern::new("127.0.0.1");
        assert!(exact.matches("127.0.0.1"));
        assert!(!exact.matches("localhost"));
    }

    #[test]
    fn obs_error_code_is_read() {
        let xml = b"<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>";
        assert_eq!(xml_code(xml).as_deref(), Some("AccessDenied"));
        assert_eq!(xml_code(b"nope"), None);
    }
}
