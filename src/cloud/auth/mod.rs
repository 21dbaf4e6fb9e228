//! Credentials for the API (SPEC 4), and their refresh.
//!
//! Owns: the four methods — `token` (a file re-read when it changes, submodule `file`), `aksk`
//! (SDK-HMAC-SHA256 signatures, submodule `aksk`), `password` (an IAM token renewed before it
//! expires, submodule `iam`) and `metadata` (temporary AK/SK from the ECS metadata service,
//! submodule `metadata`) — the project id
//! when the config leaves it out (looked up once in IAM, or read from the IAM token). Secrets
//! are [`Secret`]s (a leaf module of the crate), whose `Debug`/`Display` never show the value.
//!
//! It adds credentials to a request that is otherwise final (the signature covers the URL, the
//! headers and the body); it does not decide retries (that is `api`, which asks for fresh
//! credentials once after a 401). No secret reaches a log, an error or `Debug` output: every
//! error names the method and the step that failed, and the URL without a query.

mod aksk;
mod file;
mod iam;
mod metadata;

use std::fmt;
use std::path::PathBuf;

use reqwest::header::HeaderMap;
use url::Url;

use super::budget::Budget;
use super::fault::{ApiFault, parse_fault, scrub};
use super::headers::{header_map, secrets_in};
use super::http::{
    ClientError, ExchangeError, RedactedUrl, TransportError, build_metadata_client, read_api_body,
};
use crate::config::{Auth, CloudAccount};
use std::sync::Arc;

pub use crate::secret::Secret;
pub use file::SecretFile;

/// Why credentials could not be had. Every message starts `auth method M:` and names the step;
/// none holds a secret.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A credential file could not be read.
    #[error("auth method {method}: cannot read {key} {}", path.display())]
    ReadFile {
        /// The configured method.
        method: &'static str,
        /// The config key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A credential file is empty.
    #[error("auth method {method}: {key} {} is empty", path.display())]
    EmptyFile {
        /// The configured method.
        method: &'static str,
        /// The config key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// A credential holds bytes that cannot go into an HTTP header.
    #[error("auth method {method}: header {header} holds characters not allowed in HTTP")]
    BadHeaderValue {
        /// The configured method.
        method: &'static str,
        /// The header's name (never its value).
        header: String,
    },
    /// IAM could not be reached, or its answer could not be read.
    #[error("auth method {method}: reaching IAM to {step} ({url}) failed: {source}")]
    IamUnreachable {
        /// The configured method.
        method: &'static str,
        /// What certsync asked IAM for.
        step: &'static str,
        /// The IAM URL.
        url: RedactedUrl,
        /// The transport failure (reqwest's error without the URL).
        #[source]
        source: ExchangeError,
    },
    /// IAM answered with an error.
    #[error("auth method {method}: IAM refused to {step} ({url}): {fault}")]
    IamRefused {
        /// The configured method.
        method: &'static str,
        /// What certsync asked IAM for.
        step: &'static str,
        /// The IAM URL.
        url: RedactedUrl,
        /// IAM's answer, read as the SDK reads error bodies.
        fault: Box<ApiFault>,
    },
    /// IAM's success answer is not what the API documents.
    #[error("auth method {method}: IAM's answer to {step} ({url}) is unusable: {reason}")]
    IamBadAnswer {
        /// The configured method.
        method: &'static str,
        /// What certsync asked IAM for.
        step: &'static str,
        /// The IAM URL.
        url: RedactedUrl,
        /// What is wrong (never a secret).
        reason: String,
    },
    /// IAM does not list exactly one project named after the region.
    #[error(
        "auth method {method}: IAM lists {count} projects named {region:?} ({url}), expected exactly one; set cloud.project_id"
    )]
    ProjectNotFound {
        /// The configured method.
        method: &'static str,
        /// The region (the project's name).
        region: String,
        /// How many projects IAM listed.
        count: usize,
        /// The IAM URL.
        url: RedactedUrl,
    },
    /// The metadata service could not be reached, or its answer could not be read.
    #[error(
        "auth method metadata: reaching the ECS metadata service to {step} ({url}) failed: {source}"
    )]
    MetadataUnreachable {
        /// What certsync asked for.
        step: &'static str,
        /// The metadata URL.
        url: RedactedUrl,
        /// The transport failure (reqwest's error without the URL).
        #[source]
        source: ExchangeError,
    },
    /// The metadata service answered with an error.
    #[error("auth method metadata: the ECS metadata service refused to {step} ({url}): {fault}")]
    MetadataRefused {
        /// What certsync asked for.
        step: &'static str,
        /// The metadata URL.
        url: RedactedUrl,
        /// The answer, read as the SDK reads error bodies.
        fault: Box<ApiFault>,
    },
    /// The metadata service's success answer is unusable.
    #[error(
        "auth method metadata: the ECS metadata service's answer to {step} ({url}) is unusable: {reason}"
    )]
    MetadataBadAnswer {
        /// What certsync asked for.
        step: &'static str,
        /// The metadata URL.
        url: RedactedUrl,
        /// What is wrong (never a value from the answer).
        reason: String,
    },
}

/// Where the project id comes from.
enum Project {
    /// `cloud.project_id` (or `HUAWEICLOUD_SDK_PROJECT_ID`).
    Configured(String),
    /// Looked up once with `GET {iam}/v3/projects?name={region}` (aksk, metadata).
    Lookup(tokio::sync::OnceCell<String>),
    /// Read from the IAM token, which is scoped by the region's name (password).
    FromToken,
}

enum Kind {
    Token(SecretFile),
    AkSk(aksk::StaticKeys),
    Password(iam::PasswordTokens),
    Metadata(metadata::MetadataKeys),
}

/// The configured credentials, with what they need to refresh themselves.
pub struct Credentials {
    kind: Kind,
    project: Project,
    /// The account's name, for messages.
    account: String,
    region: String,
    iam: Url,
    http: reqwest::Client,
    budget: Arc<Budget>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("method", &self.method())
            .finish_non_exhaustive()
    }
}

/// Generation of the credentials that signed a request: after a 401, [`Credentials::authorize`]
/// is given it back and refreshes only if nobody has refreshed since (several instances in
/// flight get the same 401 and must not each fetch a token).
pub type Generation = u64;

impl Credentials {
    /// The credentials of `account`. `http` is the account's pooled client (IAM calls go
    /// through it, each taking a token from `budget`); the metadata service gets a client of
    /// its own (plain http, no proxy).
    pub fn for_account(
        account: &CloudAccount,
        http: reqwest::Client,
        budget: Arc<Budget>,
    ) -> Result<Credentials, ClientError> {
        let cloud = &account.cloud;
        let configured = cloud.project_id.clone();
        let (kind, project) = match &account.auth {
            Auth::Token { token_file } => (
                Kind::Token(SecretFile::new("token", "token_file", token_file)),
                // The config requires a project id with this method.
                Project::Configured(configured.unwrap_or_default()),
            ),
            Auth::AkSk(a) => (Kind::AkSk(aksk::StaticKeys::new(a)), lookup(configured)),
            Auth::Password(p) => (
                Kind::Password(iam::PasswordTokens::new(p)),
                configured.map_or(Project::FromToken, Project::Configured),
            ),
            Auth::Metadata { metadata_endpoint } => {
                let client = build_metadata_client(&cloud.ca_certs, cloud.timeout)?;
                (
                    Kind::Metadata(metadata::MetadataKeys::new(
                        metadata_endpoint.clone(),
                        client,
                    )),
                    lookup(configured),
                )
            }
        };
        Ok(Credentials {
            kind,
            project,
            account: account.name.clone(),
            region: cloud.region.clone(),
            iam: cloud.iam_endpoint.clone(),
            http,
            budget,
        })
    }

    /// The method's name as the config spells it, for error messages.
    pub fn method(&self) -> &'static str {
        match &self.kind {
            Kind::Token(_) => "token",
            Kind::AkSk(_) => "aksk",
            Kind::Password(_) => "password",
            Kind::Metadata(_) => "metadata",
        }
    }

    /// The project id for API paths: configured, else looked up once (aksk, metadata), else
    /// the IAM token's (password).
    pub async fn project_id(&self) -> Result<String, AuthError> {
        match &self.project {
            Project::Configured(id) => Ok(id.clone()),
            Project::Lookup(cell) => cell
                .get_or_try_init(|| self.lookup_project())
                .await
                .cloned(),
            Project::FromToken => match &self.kind {
                Kind::Password(p) => p.token(self, None).await.map(|t| t.project_id),
                _ => unreachable!("only password reads the project from its token"),
            },
        }
    }

    /// Gets credentials ready (reads the files, obtains a token or temporary keys) and the
    /// project id, so that `check --online` can report authentication apart from listing.
    pub async fn authenticate(&self) -> Result<String, AuthError> {
        match &self.kind {
            Kind::Token(file) => {
                file.read(false).await?;
            }
            Kind::AkSk(keys) => {
                keys.keys(false).await?;
            }
            Kind::Password(p) => {
                p.token(self, None).await?;
            }
            Kind::Metadata(m) => {
                m.keys(None).await?;
            }
        }
        self.project_id().await
    }

    /// Adds the credentials to a request that is final otherwise: `method`, `url` (its query
    /// exactly as it goes on the wire), `headers` (every header that will be sent; signing
    /// appends its own) and `body`. `stale` is the generation a 401 answered: credentials of
    /// that generation are refreshed first (files re-read, a new token, new temporary keys).
    pub async fn authorize(
        &self,
        method: &str,
        url: &Url,
        headers: &mut Vec<(String, String)>,
        body: &[u8],
        stale: Option<Generation>,
    ) -> Result<Generation, AuthError> {
        match &self.kind {
            Kind::Token(file) => {
                let token = file.read(stale.is_some()).await?;
                headers.push(("X-Auth-Token".into(), token.expose().to_string()));
                Ok(0)
            }
            Kind::Password(p) => {
                let token = p.token(self, stale).await?;
                headers.push(("X-Auth-Token".into(), token.token.expose().to_string()));
                Ok(token.generation)
            }
            Kind::AkSk(_) | Kind::Metadata(_) => {
                let project_id = self.project_id().await?;
                let (keys, generation) = self.keys(stale).await?;
                keys.sign(Some(&project_id), method, url, headers, body);
                Ok(generation)
            }
        }
    }

    /// The AK/SK (and security token) of the aksk and metadata methods.
    async fn keys(&self, stale: Option<Generation>) -> Result<(aksk::Keys, Generation), AuthError> {
        match &self.kind {
            Kind::AkSk(keys) => Ok((keys.keys(stale.is_some()).await?, 0)),
            Kind::Metadata(m) => m.keys(stale).await,
            _ => unreachable!("only aksk and metadata sign"),
        }
    }

    /// `GET {iam}/v3/projects?name={region}`, signed, as the SDK does when it has no project
    /// id; exactly one project must come back.
    async fn lookup_project(&self) -> Result<String, AuthError> {
        let method = self.method();
        let step = "look up the project id";
        let mut url = self.iam.clone();
        url.path_segments_mut()
            .expect("https URL has a path")
            .pop_if_empty()
            .extend(["v3", "projects"]);
        url.set_query(Some(&certsync_sign::canonical_query(&[(
            "name",
            self.region.as_str(),
        )])));
        let shown = RedactedUrl::new(&url);
        let (keys, _) = self.keys(None).await?;
        let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
        keys.sign(None, "GET", &url, &mut headers, b"");
        let reply = self
            .iam_send(reqwest::Method::GET, &url, &headers, Vec::new())
            .await
            .map_err(|e| e.at_iam(method, step, &shown))?;
        if !(200..300).contains(&reply.status) {
            return Err(AuthError::IamRefused {
                method,
                step,
                url: shown,
                fault: reply.fault(&secrets_in(&headers)),
            });
        }
        iam::parse_projects(&reply.body).map_err(|e| match e {
            iam::ProjectsError::Count(count) => AuthError::ProjectNotFound {
                method,
                region: self.region.clone(),
                count,
                url: shown.clone(),
            },
            iam::ProjectsError::Bad(reason) => AuthError::IamBadAnswer {
                method,
                step,
                url: shown.clone(),
                reason,
            },
        })
    }
}

impl Credentials {
    /// Sends an IAM request of the account: it takes a token from the account's budget
    /// first, and a 429 pauses the account (SPEC 15). IAM requests are not retried here.
    async fn iam_send(
        &self,
        method: reqwest::Method,
        url: &Url,
        headers: &[(String, String)],
        body: Vec<u8>,
    ) -> Result<Reply, SendError> {
        self.budget.take(url).await;
        let reply = send(&self.http, method, url, headers, body).await?;
        if reply.status == 429 {
            let retry_after = reply
                .header("retry-after")
                .and_then(|v| crate::schedule::parse_retry_after(v, std::time::SystemTime::now()));
            self.budget.throttled(retry_after, fastrand::f64());
        }
        Ok(reply)
    }

    /// The account these credentials belong to.
    pub fn account(&self) -> &str {
        &self.account
    }
}

fn lookup(configured: Option<String>) -> Project {
    match configured {
        Some(id) => Project::Configured(id),
        None => Project::Lookup(tokio::sync::OnceCell::new()),
    }
}

/// A small answer from IAM or the metadata service.
struct Reply {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The error answer, read as the SDK reads it, without any of `secrets`.
    fn fault(&self, secrets: &[String]) -> Box<ApiFault> {
        let request_id = self
            .header("x-request-id")
            .or_else(|| self.header("x-iam-trace-id"))
            .map(str::to_owned);
        let fault = parse_fault(self.status, &self.body, request_id);
        Box::new(scrub(fault, secrets))
    }
}

/// Why [`send`] failed, before it is given its step.
enum SendError {
    /// The header of this name holds characters HTTP does not allow.
    Header(String),
    /// The exchange failed.
    Transport(ExchangeError),
}

impl SendError {
    fn at_iam(self, method: &'static str, step: &'static str, url: &RedactedUrl) -> AuthError {
        match self {
            SendError::Header(header) => AuthError::BadHeaderValue { method, header },
            SendError::Transport(source) => AuthError::IamUnreachable {
                method,
                step,
                url: url.clone(),
                source,
            },
        }
    }

    fn at_metadata(self, step: &'static str, url: &RedactedUrl) -> AuthError {
        match self {
            SendError::Header(header) => AuthError::BadHeaderValue {
                method: "metadata",
                header,
            },
            SendError::Transport(source) => AuthError::MetadataUnreachable {
                step,
                url: url.clone(),
                source,
            },
        }
    }
}

async fn send(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &Url,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> Result<Reply, SendError> {
    let map = header_map(headers).map_err(SendError::Header)?;
    let response = http
        .request(method, url.clone())
        .headers(map)
        .header("Accept", "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| SendError::Transport(TransportError::new(e).into()))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = read_api_body(response)
        .await
        .map_err(SendError::Transport)?;
    Ok(Reply {
        status,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::http::testing::{closed_port, reqwest_in_chain};
    use crate::text::error_chain;

    #[tokio::test]
    async fn regression_unreachable_iam_and_metadata_keep_the_reqwest_error_as_source() {
        let http = build_metadata_client(&[], std::time::Duration::from_secs(5)).unwrap();
        let port = closed_port();
        let url = Url::parse(&format!(
            "http://127.0.0.1:{port}/v3/projects?name=secret-name"
        ))
        .unwrap();
        let shown = RedactedUrl::new(&url);
        let sent = [("X-Auth-Token".to_string(), "TOKENVALUE".to_string())];
        for at_iam in [true, false] {
            let err = match send(&http, reqwest::Method::GET, &url, &sent, Vec::new()).await {
                Ok(_) => panic!("nothing listens on port {port}"),
                Err(e) if at_iam => e.at_iam("aksk", "look up the project id", &shown),
                Err(e) => e.at_metadata("get temporary credentials", &shown),
            };
            let cause = reqwest_in_chain(&err).unwrap_or_else(|| panic!("no source: {err:?}"));
            assert!(cause.is_connect() && cause.url().is_none(), "{cause:?}");
            let text = error_chain(&err);
            let step = if at_iam {
                "auth method aksk: reaching IAM to look up the project id"
            } else {
                "auth method metadata: reaching the ECS metadata service to get temporary credentials"
            };
            assert!(
                text.starts_with(&format!(
                    "{step} (http://127.0.0.1:{port}/v3/projects) failed: connection failed: "
                )) && text.contains("Connection refused"),
                "{text}"
            );
            for secret in ["secret-name", "TOKENVALUE", "?"] {
                assert!(!text.contains(secret), "{secret} in {text}");
            }
        }
    }

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("MIIEhQYJKoZIhvcNAQcCoIIEdjCCBHICAQEx");
        assert_eq!(format!("{s:?} {s}"), "<redacted> <redacted>");
    }
}
