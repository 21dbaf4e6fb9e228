//! The process's one HTTP client and the helpers every network stage shares.
//!
//! One `reqwest::Client` (connection pool, rustls with the ring provider installed process-wide)
//! serves the API calls and the downloads of a whole pass. Its extra roots are the
//! certificates config parsed from `cloud.ca_file` when it was loaded; this module does not
//! parse roots files (only `config::read_ca_file` does). Redirects are never followed
//! automatically: `fetch` follows them itself so it can check each hop. This module also owns
//! [`RedactedUrl`], the only form in which a URL may reach a log line or an error, the capped
//! reading of bodies, and [`TransportError`], the only form in which a reqwest error is kept
//! (without its URL).

use std::fmt;
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use url::Url;

/// Installs ring as the process-wide rustls crypto provider (idempotent).
///
/// reqwest is built without a default provider so that exactly one provider (ring) is linked;
/// every TLS user in the process (reqwest, the simulator, tests) then agrees on it.
pub fn install_crypto_provider() {
    // Err means a provider is already installed: by us, earlier, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The User-Agent of every request (API requests also sign it, as the SDK does).
pub const USER_AGENT: &str = concat!("certsync/", env!("CARGO_PKG_VERSION"));

/// Failure to build the HTTP client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// reqwest refused the configuration (for example no system roots and a root it cannot
    /// use).
    #[error("cannot build the HTTP client")]
    Build(#[source] reqwest::Error),
}

/// Builds the pooled client: system roots plus the extra `roots` (a configuration's
/// `cloud.ca_certs`, parsed when it was loaded), per-request `timeout`, no automatic
/// redirects, https only (the metadata service has a client of its own),
/// HTTPS_PROXY/NO_PROXY honoured (reqwest reads them from the environment).
pub fn build_client_trusting(
    roots: &[CertificateDer<'static>],
    timeout: Duration,
) -> Result<reqwest::Client, ClientError> {
    builder(roots, timeout)?
        .https_only(true)
        .build()
        .map_err(ClientError::Build)
}

/// The client of the ECS metadata service: plain http allowed (it is link-local and has no
/// TLS), never through a proxy, a short connect timeout (3 s, as the SDK) and at most 10 s per
/// request. The extra `roots` (`cloud.ca_certs`) still count when `metadata_endpoint` is
/// https.
pub fn build_metadata_client(
    roots: &[CertificateDer<'static>],
    timeout: Duration,
) -> Result<reqwest::Client, ClientError> {
    builder(roots, timeout.min(Duration::from_secs(10)))?
        .connect_timeout(Duration::from_secs(3))
        .no_proxy()
        .build()
        .map_err(ClientError::Build)
}

/// A client for certsync's own HTTP server on this host (`certsync status`): plain http,
/// never through a proxy.
pub fn build_local_client(timeout: Duration) -> Result<reqwest::Client, ClientError> {
    builder(&[], timeout)?
        .no_proxy()
        .build()
        .map_err(ClientError::Build)
}

fn builder(
    roots: &[CertificateDer<'static>],
    timeout: Duration,
) -> Result<reqwest::ClientBuilder, ClientError> {
    install_crypto_provider();
    let builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .pool_idle_timeout(Duration::from_secs(50))
        .user_agent(USER_AGENT);
    if roots.is_empty() {
        return Ok(builder);
    }
    let certs = roots
        .iter()
        .map(|der| reqwest::Certificate::from_der(der.as_ref()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ClientError::Build)?;
    Ok(builder.tls_certs_merge(certs))
}

/// A URL as it may be shown: scheme, host, port and path, without user info, query or
/// fragment. The query of a download link is a credential (a pre-signed OBS URL).
#[derive(Clone, PartialEq, Eq)]
pub struct RedactedUrl(String);

impl RedactedUrl {
    /// Redacts `url`.
    pub fn new(url: &Url) -> RedactedUrl {
        let mut shown = format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
        if let Some(port) = url.port() {
            shown.push_str(&format!(":{port}"));
        }
        shown.push_str(url.path());
        RedactedUrl(shown)
    }

    /// The redacted text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RedactedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RedactedUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// API answers larger than this are refused (the API's, IAM's and the metadata service's
/// answers are a few hundred bytes to a few kilobytes).
pub const MAX_API_BODY: usize = 1 << 20;

/// A request that did not complete, or an answer whose reading failed: reqwest's error without
/// the URL it would print (a download link's query is a credential), said plainly.
///
/// `Display` is what happened ("timed out", "connection failed", ...); the library's error is
/// the [`source`](std::error::Error::source), so printing the chain shows the cause (a refused
/// connection, a TLS alert, an untrusted certificate).
#[derive(Debug)]
pub struct TransportError(reqwest::Error);

impl TransportError {
    /// Keeps `error` without its URL.
    pub fn new(error: reqwest::Error) -> TransportError {
        TransportError(error.without_url())
    }

    /// The library's error (its `url()` is `None`).
    pub fn reqwest(&self) -> &reqwest::Error {
        &self.0
    }

    /// Whether the cause is the peer closing the connection early.
    pub fn closed_early(&self) -> bool {
        closed_early(&self.0)
    }

    /// What failed, in a few words.
    fn what(&self) -> &'static str {
        let err = &self.0;
        if err.is_timeout() {
            "timed out"
        } else if err.is_connect() {
            "connection failed"
        } else if err.is_body() || err.is_decode() {
            "reading the body failed"
        } else if err.is_request() {
            "request failed"
        } else {
            "HTTP error"
        }
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.what())?;
        if self.closed_early() {
            f.write_str(": the peer closed the connection early")?;
        }
        Ok(())
    }
}

impl std::error::Error for TransportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // For a connection the peer closed early, the chain ends in rustls's text for it: a
        // paragraph ending in a documentation URL, which says no more than `Display` does. The
        // printed chain stops here for that one cause; `reqwest()` still has the error.
        if self.closed_early() {
            None
        } else {
            Some(&self.0)
        }
    }
}

/// Why an HTTP exchange failed: the request, or the reading of its answer.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// The request did not complete, or reading the answer failed (see [`TransportError`]).
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// More than the limit arrived.
    #[error("answer larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// The connection closed before the whole body arrived.
    #[error("the connection closed before the whole body arrived ({})", match .expected {
        Some(total) => format!("{received} of {total} bytes"),
        None => format!("after {received} bytes"),
    })]
    Truncated {
        /// Bytes received.
        received: u64,
        /// `Content-Length`, when the answer announced one.
        expected: Option<u64>,
        /// What reqwest saw.
        #[source]
        source: TransportError,
    },
}

/// Reads the whole body of `response`, refusing more than `limit` bytes as soon as they
/// arrive (never buffering past the limit).
pub async fn read_capped(
    response: &mut reqwest::Response,
    limit: u64,
) -> Result<Vec<u8>, ExchangeError> {
    let expected = response.content_length();
    let mut body = Vec::new();
    loop {
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => return Ok(body),
            Err(e) => {
                let received = body.len() as u64;
                let source = TransportError::new(e);
                // A body cut short is said plainly, with how much arrived.
                let short = expected.is_some_and(|total| received < total);
                if !source.reqwest().is_timeout() && (short || source.closed_early()) {
                    return Err(ExchangeError::Truncated {
                        received,
                        expected,
                        source,
                    });
                }
                return Err(source.into());
            }
        };
        if (body.len() + chunk.len()) as u64 > limit {
            return Err(ExchangeError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
}

/// The body of an answer of the API, IAM or the metadata service, refused beyond
/// [`MAX_API_BODY`].
pub async fn read_api_body(mut response: reqwest::Response) -> Result<Vec<u8>, ExchangeError> {
    read_capped(&mut response, MAX_API_BODY as u64).await
}

/// Whether the error's cause is the peer closing the connection early (an unexpected EOF,
/// which rustls reports when the peer closes without TLS close_notify).
fn closed_early(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(err);
    while let Some(s) = source {
        if s.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::UnexpectedEof)
        {
            return true;
        }
        source = s.source();
    }
    false
}

/// Helpers for the tests of the network stages.
#[cfg(test)]
pub(crate) mod testing {
    /// The first `reqwest::Error` among the sources of `err`.
    pub(crate) fn reqwest_in_chain<'a>(
        err: &'a (dyn std::error::Error + 'static),
    ) -> Option<&'a reqwest::Error> {
        let mut source = err.source();
        while let Some(s) = source {
            if let Some(found) = s.downcast_ref::<reqwest::Error>() {
                return Some(found);
            }
            source = s.source();
        }
        None
    }

    /// A loopback port that nothing listens on (bound, then closed).
    pub(crate) fn closed_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener.local_addr().expect("local address").port()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_drops_query_userinfo_fragment() {
        let url =
            Url::parse("https://user:pw@obs.example.com:8443/b/ca.crt?Signature=abc&Expires=1#x")
                .unwrap();
        assert_eq!(
            RedactedUrl::new(&url).as_str(),
            "https://obs.example.com:8443/b/ca.crt"
        );
    }
}
