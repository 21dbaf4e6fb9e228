//! The `metadata` method: temporary AK/SK and security token from the ECS metadata service.
//!
//! Owns the SDK's `MetadataAccessor` flow: a session token from
//! `PUT /meta-data/latest/api/token` (going on without one on 404/405/503, as IMDSv1), then
//! `GET /openstack/latest/securitykey`; the keys are kept until [`REFRESH_BEFORE`] their
//! `expires_at`, or until a 401 answers them. This is the only plain-http endpoint certsync
//! ever calls, through a client of its own that never uses a proxy. The answer holds secrets:
//! no error quotes it.

use std::time::{Duration, Instant, SystemTime};

use serde_json::{Map, Value};
use tokio::sync::Mutex;
use url::Url;

use super::aksk::Keys;
use super::iam::parse_time;
use super::{AuthError, Generation, RedactedUrl, Reply, Secret, send};
use crate::cloud::headers::secrets_in;

/// Temporary keys are replaced when less than this is left of them (SPEC 4; the SDK's 2400 s).
pub(super) const REFRESH_BEFORE: Duration = Duration::from_secs(40 * 60);
/// The session token's lifetime asked for (`X-Metadata-Token-Ttl-Seconds`), as the SDK asks.
pub(super) const SESSION_TTL: Duration = Duration::from_secs(21600);
/// A session token is replaced this long before its TTL runs out.
const SESSION_MARGIN: Duration = Duration::from_secs(600);
/// After the service said it has no session tokens, it is asked again after this (the SDK's).
const SESSION_RETRY: Duration = Duration::from_secs(86400);

const STEP_SESSION: &str = "get a session token";
const STEP_KEYS: &str = "get temporary credentials";
/// The metadata service's answer when the ECS has no agency: a fresh session token won't help.
const NO_AGENCY: &str = "Please configure Cloud Service Agency first";

struct Temporary {
    keys: Keys,
    expires_at: SystemTime,
    generation: Generation,
}

#[derive(Default)]
struct State {
    /// The session token and when it was obtained.
    session: Option<(Secret, Instant)>,
    /// When the service last said it issues no session tokens.
    no_session_since: Option<Instant>,
    keys: Option<Temporary>,
}

/// Temporary keys from the metadata service, fetched when due.
pub(super) struct MetadataKeys {
    endpoint: Url,
    http: reqwest::Client,
    state: Mutex<State>,
}

impl MetadataKeys {
    pub(super) fn new(endpoint: Url, http: reqwest::Client) -> MetadataKeys {
        MetadataKeys {
            endpoint,
            http,
            state: Mutex::new(State::default()),
        }
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.endpoint.clone();
        url.path_segments_mut()
            .expect("http(s) URL has a path")
            .pop_if_empty()
            .extend(segments);
        url
    }

    /// The current temporary keys: the cached ones while more than [`REFRESH_BEFORE`] is left
    /// and no 401 answered them (`stale`), else new ones.
    pub(super) async fn keys(
        &self,
        stale: Option<Generation>,
    ) -> Result<(Keys, Generation), AuthError> {
        let mut state = self.state.lock().await;
        if let Some(t) = &state.keys {
            let due = SystemTime::now() + REFRESH_BEFORE >= t.expires_at;
            if !due && stale != Some(t.generation) {
                return Ok((t.keys.clone(), t.generation));
            }
        }
        let generation = state.keys.as_ref().map_or(1, |t| t.generation + 1);
        let (keys, expires_at) = self.fetch(&mut state).await?;
        tracing::info!(
            expires_at = %time::OffsetDateTime::from(expires_at),
            "auth method metadata: obtained temporary credentials"
        );
        state.keys = Some(Temporary {
            keys: keys.clone(),
            expires_at,
            generation,
        });
        Ok((keys, generation))
    }

    async fn fetch(&self, state: &mut State) -> Result<(Keys, SystemTime), AuthError> {
        let url = self.url(&["openstack", "latest", "securitykey"]);
        let shown = RedactedUrl::new(&url);
        let mut renewed_session = false;
        loop {
            let session = self.session(state, renewed_session).await?;
            let headers: Vec<(String, String)> = session
                .iter()
                .map(|t| ("X-Metadata-Token".to_string(), t.expose().to_string()))
                .collect();
            let reply = send(&self.http, reqwest::Method::GET, &url, &headers, Vec::new())
                .await
                .map_err(|e| e.at_metadata(STEP_KEYS, &shown))?;
            match reply.status {
                200..=299 => {
                    return parse_securitykey(&reply.body).map_err(|reason| {
                        AuthError::MetadataBadAnswer {
                            step: STEP_KEYS,
                            url: shown.clone(),
                            reason,
                        }
                    });
                }
                // The session token may have expired: one more try with a new one, as the SDK.
                401 if !renewed_session
                    && !String::from_utf8_lossy(&reply.body).contains(NO_AGENCY) =>
                {
                    state.session = None;
                    state.no_session_since = None;
                    renewed_session = true;
                }
                _ => return Err(refused(STEP_KEYS, &shown, &reply, &headers)),
            }
        }
    }

    /// The session token to send, if the service issues them. `renew` asks for a new one.
    async fn session(&self, state: &mut State, renew: bool) -> Result<Option<Secret>, AuthError> {
        if !renew {
            if let Some((token, at)) = &state.session
                && at.elapsed() + SESSION_MARGIN < SESSION_TTL
            {
                return Ok(Some(token.clone()));
            }
            if state
                .no_session_since
                .is_some_and(|at| at.elapsed() < SESSION_RETRY)
            {
                return Ok(None);
            }
        }
        let url = self.url(&["meta-data", "latest", "api", "token"]);
        let shown = RedactedUrl::new(&url);
        let headers = [(
            "X-Metadata-Token-Ttl-Seconds".to_string(),
            SESSION_TTL.as_secs().to_string(),
        )];
        let reply = send(&self.http, reqwest::Method::PUT, &url, &headers, Vec::new())
            .await
            .map_err(|e| e.at_metadata(STEP_SESSION, &shown))?;
        match reply.status {
            200..=299 => {
                let token = String::from_utf8(reply.body)
                    .ok()
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| AuthError::MetadataBadAnswer {
                        step: STEP_SESSION,
                        url: shown.clone(),
                        reason: "the session token is empty or not text".into(),
                    })?;
                let token = Secret::new(token);
                state.session = Some((token.clone(), Instant::now()));
                Ok(Some(token))
            }
            404 | 405 | 503 => {
                tracing::debug!(
                    status = reply.status,
                    "ECS metadata service issues no session token; going on without one"
                );
                state.session = None;
                state.no_session_since = Some(Instant::now());
                Ok(None)
            }
            _ => Err(refused(STEP_SESSION, &shown, &reply, &[])),
        }
    }
}

fn refused(
    step: &'static str,
    url: &RedactedUrl,
    reply: &Reply,
    sent: &[(String, String)],
) -> AuthError {
    AuthError::MetadataRefused {
        step,
        url: url.clone(),
        fault: reply.fault(&secrets_in(sent)),
    }
}

/// The keys and their expiry in a `securitykey` answer: `{"credential": {...}}`, or under
/// `credentials`, or flat; the SDK's alternative field names are accepted. Reasons name fields,
/// never values.
pub(super) fn parse_securitykey(body: &[u8]) -> Result<(Keys, SystemTime), String> {
    let body: Value = serde_json::from_slice(body).map_err(|_| "the body is not JSON")?;
    let top = body.as_object().ok_or("the body is not a JSON object")?;
    let obj = ["credential", "credentials"]
        .iter()
        .find_map(|k| top.get(*k).and_then(Value::as_object))
        .unwrap_or(top);
    let field = |names: &[&str]| -> Result<String, String> {
        find(obj, names)
            .map(str::to_owned)
            .ok_or_else(|| format!("no {} field", names[0]))
    };
    let access = field(&["access", "accessKeyId", "access_key_id"])?;
    let secret = field(&["secret", "secretAccessKey", "secret_access_key"])?;
    let token = field(&["securitytoken", "securityToken", "security_token"])?;
    let expires = field(&["expires_at", "expiration"])?;
    let expires_at = parse_time(&expires)
        .ok_or_else(|| format!("expires_at {expires:?} is not an RFC 3339 time"))?;
    Ok((
        Keys {
            access_key: Secret::new(access),
            secret_key: Secret::new(secret),
            security_token: Some(Secret::new(token)),
        },
        expires_at,
    ))
}

fn find<'a>(obj: &'a Map<String, Value>, names: &[&str]) -> Option<&'a str> {
    names
        .iter()
        .find_map(|n| obj.get(*n).and_then(Value::as_str))
        .filter(|v| !v.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The answer ECS documents for `/openstack/latest/securitykey` (ecs_03_0901), shortened.
    const ANSWER: &str = r#"{
      "credential": {
        "access": "LZ7HQB2KK9NRDCUQ4IFE",
        "secret": "jvkCNLmTqYmtrzMd7szc0Krzlmj5nJMBq3oK3Bhg",
        "securitytoken": "gQpjbi1ub3J0aC00jLuGSGgj9ozVjhTmtYaZIiqoylAHKXeqNIGPa4YYPVdK4Q",
        "expires_at": "2024-05-01T12:34:56.000000Z"
      }
    }"#;

    #[test]
    fn securitykey_answer_gives_temporary_keys() {
        let (keys, expires) = parse_securitykey(ANSWER.as_bytes()).unwrap();
        assert_eq!(keys.access_key.expose(), "LZ7HQB2KK9NRDCUQ4IFE");
        assert_eq!(
            keys.secret_key.expose(),
            "jvkCNLmTqYmtrzMd7szc0Krzlmj5nJMBq3oK3Bhg"
        );
        assert!(
            keys.security_token
                .unwrap()
                .expose()
                .starts_with("gQpjbi1u")
        );
        assert_eq!(
            time::OffsetDateTime::from(expires),
            time::macros::datetime!(2024-05-01 12:34:56 UTC)
        );
    }

    #[test]
    fn securitykey_alternatives_of_the_sdk_are_read() {
        let flat = r#"{"accessKeyId": "AK", "secretAccessKey": "SK", "securityToken": "ST",
                       "expiration": "2024-05-01T12:34:56Z"}"#;
        let (keys, _) = parse_securitykey(flat.as_bytes()).unwrap();
        assert_eq!(
            (keys.access_key.expose(), keys.secret_key.expose()),
            ("AK", "SK")
        );
        let snake = r#"{"credentials": {"access_key_id": "AK2", "secret_access_key": "SK2",
                        "security_token": "ST2", "expires_at": "2024-05-01T12:34:56.5Z"}}"#;
        let (keys, _) = parse_securitykey(snake.as_bytes()).unwrap();
        assert_eq!(keys.security_token.unwrap().expose(), "ST2");
    }

    #[test]
    fn bad_securitykey_answers_never_quote_a_secret() {
        let no_secret = ANSWER.replace("\"secret\"", "\"other\"");
        assert_eq!(
            parse_securitykey(no_secret.as_bytes()).unwrap_err(),
            "no secret field"
        );
        assert_eq!(
            parse_securitykey(b"LZ7HQB2KK9NRDCUQ4IFE").unwrap_err(),
            "the body is not JSON"
        );
        let wrong_type = ANSWER.replace(
            "\"jvkCNLmTqYmtrzMd7szc0Krzlmj5nJMBq3oK3Bhg\"",
            "[\"jvkCNLmTqYmtrzMd7szc0Krzlmj5nJMBq3oK3Bhg\"]",
        );
        let e = parse_securitykey(wrong_type.as_bytes()).unwrap_err();
        assert!(!e.contains("jvkC"), "{e}");
    }
}
