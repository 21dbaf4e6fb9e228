//! The `aksk` method, and AK/SK signing as the SDK's `BasicCredentials` does it.
//!
//! Owns: the permanent (or configured temporary) AK/SK with its secret key inline or in a file,
//! and [`Keys::sign`], which adds what `BasicCredentials.sign_request` adds (`X-Project-Id`,
//! `X-Security-Token`) before the `certsync-sign` signer adds `X-Sdk-Date`, `Host` and
//! `Authorization`. The `metadata` method signs through the same [`Keys`].

use std::time::SystemTime;

use url::Url;

use super::{AuthError, Secret, SecretFile};
use crate::config::{AkSk, SecretKey};

/// An AK/SK pair, temporary when it has a security token.
#[derive(Clone, Debug)]
pub(super) struct Keys {
    pub access_key: Secret,
    pub secret_key: Secret,
    pub security_token: Option<Secret>,
}

impl Keys {
    /// Signs a request to `url` whose other headers are `headers` (appending to them), with
    /// `X-Project-Id` when `project_id` is given (the SDK sets it whenever it knows the
    /// project) and `X-Security-Token` with temporary keys; both are signed, like every header
    /// already in `headers`.
    pub(super) fn sign(
        &self,
        project_id: Option<&str>,
        method: &str,
        url: &Url,
        headers: &mut Vec<(String, String)>,
        body: &[u8],
    ) {
        if let Some(id) = project_id {
            headers.push(("X-Project-Id".into(), id.to_string()));
        }
        if let Some(token) = &self.security_token {
            headers.push(("X-Security-Token".into(), token.expose().to_string()));
        }
        let host = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_string(),
        };
        let mut request = certsync_sign::SigningRequest {
            method,
            host: &host,
            path: url.path(),
            query: url.query().unwrap_or(""),
            headers: std::mem::take(headers),
            body,
        };
        let signer = certsync_sign::Signer::new(self.access_key.expose(), self.secret_key.expose());
        signer.sign(&mut request, SystemTime::now());
        *headers = request.headers;
    }
}

enum SecretKeySource {
    Inline(Secret),
    File(SecretFile),
}

/// The `aksk` method's keys, as configured.
pub(super) struct StaticKeys {
    access_key: Secret,
    secret_key: SecretKeySource,
    security_token: Option<Secret>,
}

impl StaticKeys {
    pub(super) fn new(config: &AkSk) -> StaticKeys {
        StaticKeys {
            access_key: config.access_key.clone(),
            secret_key: match &config.secret_key {
                SecretKey::Inline(s) => SecretKeySource::Inline(s.clone()),
                SecretKey::File(path) => {
                    SecretKeySource::File(SecretFile::new("aksk", "secret_key_file", path))
                }
            },
            security_token: config.security_token.clone(),
        }
    }

    /// The keys; `force` re-reads `secret_key_file` (after a 401: it may have been rotated).
    pub(super) async fn keys(&self, force: bool) -> Result<Keys, AuthError> {
        let secret_key = match &self.secret_key {
            SecretKeySource::Inline(s) => s.clone(),
            SecretKeySource::File(file) => file.read(force).await?,
        };
        Ok(Keys {
            access_key: self.access_key.clone(),
            secret_key,
            security_token: self.security_token.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_as_the_sdk_client_does() {
        let keys = Keys {
            access_key: Secret::new("AKTESTEXAMPLE0000001"),
            secret_key: Secret::new("SKtestexample0000000000000000000000000001"),
            security_token: Some(Secret::new("ST==")),
        };
        let url = Url::parse("https://127.0.0.1:8443/v3/p1/instances?limit=100&offset=0").unwrap();
        let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
        keys.sign(Some("p1"), "GET", &url, &mut headers, b"");
        let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "Content-Type",
                "X-Project-Id",
                "X-Security-Token",
                "X-Sdk-Date",
                "Host",
                "Authorization"
            ]
        );
        let get = |n: &str| headers.iter().find(|(k, _)| k == n).unwrap().1.clone();
        assert_eq!(get("Host"), "127.0.0.1:8443");
        assert!(
            get("Authorization").starts_with(
                "SDK-HMAC-SHA256 Access=AKTESTEXAMPLE0000001, SignedHeaders=content-type;host;x-project-id;x-sdk-date;x-security-token, Signature="
            ),
            "{}",
            get("Authorization")
        );
        // The verifier (the simulator's) accepts it.
        let pairs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let incoming = certsync_sign::Incoming {
            method: "GET",
            path: url.path(),
            query: url.query().unwrap(),
            headers: &pairs,
            body: b"",
        };
        certsync_sign::verify(&incoming, SystemTime::now(), |_| {
            Some("SKtestexample0000000000000000000000000001")
        })
        .unwrap();
    }
}
