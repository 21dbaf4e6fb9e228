//! Authentication of gateway requests as Huawei's API gateway (APIG) does it: an IAM token in
//! `X-Auth-Token` (the fixed token of the simulator, an extra user's, or one IAM issued), or an
//! `SDK-HMAC-SHA256` signature (`Authorization`, `X-Sdk-Date`) checked with certsync-sign's
//! verifier against the permanent AK/SK, an extra user's, or temporary credentials from the
//! metadata service (which must come with their `X-Security-Token`).
//!
//! Owns the decision who is calling (and as which user, for throttling) and APIG's 401 answers
//! (`APIGW.0301` with its sub-messages); it must not verify signatures itself (that is
//! certsync-sign), throttle (`throttle`, asked by the handlers after this) nor look at
//! instances.
//!
//! The sub-messages are the ones APIG documents or has been seen sending: "verify aksk signature
//! fail" (wrong signature, X-Sdk-Date more than 15 minutes off, malformed Authorization), "ak
//! {AK} not exist" (unknown access key; APIG echoes the key, so clients must not print
//! `error_msg` unfiltered), "calc ak sk signature fail:signature expired" (expired temporary
//! credentials), "x-auth-token not found", "decrypt token fail", "token expires".

use std::time::SystemTime;

use certsync_sign::{Incoming, VerifyError};
use hyper::header::HeaderMap;
use hyper::{Response, StatusCode};

use crate::creds::{SecretLookup, TokenCheck};
use crate::http::{self, SimBody};
use crate::state::{Counters, World};
use crate::throttle::UserKey;

/// The header that carries an IAM token.
const AUTH_TOKEN_HEADER: &str = "x-auth-token";
/// The header that carries the security token of temporary credentials.
const SECURITY_TOKEN_HEADER: &str = "x-security-token";
/// The header in which AK/SK callers name their project.
const PROJECT_ID_HEADER: &str = "x-project-id";

/// The prefix of every APIG authentication error message.
const PREFIX: &str = "Incorrect IAM authentication information";
/// APIG's sub-message for a signature it cannot verify (also for a stale X-Sdk-Date).
const SIGNATURE_FAIL: &str = "verify aksk signature fail";

/// A request as the gateway authenticates it.
pub(crate) struct GatewayRequest<'a> {
    pub method: &'a str,
    /// The path as received (percent-encoded).
    pub path: &'a str,
    /// The query as received, without `?`.
    pub query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// Who is calling.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Caller {
    /// A valid token: scoped to this project (IAM's), or to every project the API serves
    /// (`None`: the fixed token and extra users' tokens).
    Token {
        project_id: Option<String>,
        user: UserKey,
    },
    /// A valid AK/SK signature; the project named in `X-Project-Id`, if any.
    Signed {
        project_id: Option<String>,
        user: UserKey,
    },
}

impl Caller {
    /// The user the request counts against.
    pub(crate) fn user(&self) -> &UserKey {
        match self {
            Caller::Token { user, .. } | Caller::Signed { user, .. } => user,
        }
    }

    /// Whether the caller may act in `project_id` (a path's project).
    pub(crate) fn may_use_project(&self, world: &World, project_id: &str) -> bool {
        match self {
            Caller::Token {
                project_id: Some(scope),
                ..
            } => scope == project_id,
            Caller::Token {
                project_id: None, ..
            } => world.serves_project(project_id),
            // The one account behind the keys owns every project the API serves; X-Project-Id,
            // when sent, must name the same project as the path.
            Caller::Signed {
                project_id: named, ..
            } => {
                world.serves_project(project_id) && named.as_deref().is_none_or(|n| n == project_id)
            }
        }
    }
}

/// Why the gateway refused the credentials: the sub-message after APIG's prefix.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Denial(String);

impl Denial {
    fn new(detail: impl Into<String>) -> Self {
        Denial(detail.into())
    }

    /// The 401 to answer, counted as unauthorized.
    pub(crate) fn respond(&self, world: &World, request_id: &str) -> Response<SimBody> {
        denied(world, &self.0, request_id)
    }
}

/// The 401 APIG answers for bad credentials, counted as unauthorized.
pub(crate) fn denied(world: &World, detail: &str, request_id: &str) -> Response<SimBody> {
    Counters::bump(&world.counters.unauthorized);
    http::gateway_error(
        StatusCode::UNAUTHORIZED,
        "APIGW.0301",
        &format!("{PREFIX}: {detail}"),
        request_id,
    )
}

/// Authenticates a gateway request; `Err` says why it must be refused (see [`Denial::respond`]).
pub(crate) fn authenticate(world: &World, req: &GatewayRequest<'_>) -> Result<Caller, Denial> {
    // The token is checked first when both are sent (APIG does not document its order).
    if let Some(token) = req.headers.get(AUTH_TOKEN_HEADER) {
        return match token.to_str() {
            Ok(token) => check_token(world, token),
            Err(_) => Err(Denial::new("decrypt token fail")),
        };
    }
    if req.headers.contains_key(hyper::header::AUTHORIZATION) {
        return check_signature(world, req);
    }
    Err(Denial::new("x-auth-token not found"))
}

fn check_token(world: &World, token: &str) -> Result<Caller, Denial> {
    if world.token_matches(token) {
        return Ok(Caller::Token {
            project_id: None,
            user: UserKey::FixedToken,
        });
    }
    match world.creds.check_token(token) {
        TokenCheck::Valid { project_id, user } => Ok(Caller::Token { project_id, user }),
        TokenCheck::Expired { expires_at } => Err(Denial::new(format!(
            "token expires, expires_at: {}",
            iso_micros(expires_at)
        ))),
        TokenCheck::Unknown => Err(Denial::new("decrypt token fail")),
    }
}

fn check_signature(world: &World, req: &GatewayRequest<'_>) -> Result<Caller, Denial> {
    let headers: Vec<(&str, &str)> = req
        .headers
        .iter()
        .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
        .collect();
    let incoming = Incoming {
        method: req.method,
        path: req.path,
        query: req.query,
        headers: &headers,
        body: req.body,
    };
    let mut looked_up: Option<(String, SecretLookup)> = None;
    let result = certsync_sign::verify(&incoming, SystemTime::now(), |ak| {
        let lookup = world.creds.secret_of(ak);
        let secret = match &lookup {
            SecretLookup::Permanent { secret, .. } | SecretLookup::Temporary { secret, .. } => {
                Some(secret.clone())
            }
            SecretLookup::Unknown => None,
        };
        looked_up = Some((ak.to_owned(), lookup));
        secret
    });
    match result {
        Ok(_) => {}
        Err(VerifyError::UnknownAccessKey) => {
            let ak = looked_up.map(|(ak, _)| ak).unwrap_or_default();
            return Err(Denial::new(format!("ak {ak} not exist")));
        }
        Err(e) => {
            tracing::debug!(error = %e, "AK/SK signature refused");
            return Err(Denial::new(SIGNATURE_FAIL));
        }
    }
    if let Some((
        _,
        SecretLookup::Temporary {
            security_token,
            expired,
            ..
        },
    )) = &looked_up
    {
        if *expired {
            return Err(Denial::new("calc ak sk signature fail:signature expired"));
        }
        let sent = req
            .headers
            .get(SECURITY_TOKEN_HEADER)
            .and_then(|v| v.to_str().ok());
        if sent != Some(security_token.as_str()) {
            tracing::debug!("temporary AK without its security token");
            return Err(Denial::new(SIGNATURE_FAIL));
        }
    }
    let project_id = req
        .headers
        .get(PROJECT_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let user = match looked_up {
        Some((_, SecretLookup::Permanent { owner, .. })) => owner,
        // Temporary credentials are the account's.
        _ => UserKey::Account,
    };
    Ok(Caller::Signed { project_id, user })
}

/// `t` as IAM writes times: `2024-05-01T12:34:56.000000Z`.
pub(crate) fn iso_micros(t: SystemTime) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    time::OffsetDateTime::from(t)
        .format(&format)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn iam_times_have_six_fraction_digits() {
        let t = UNIX_EPOCH + Duration::from_micros(1_714_566_896_000_001);
        assert_eq!(iso_micros(t), "2024-05-01T12:34:56.000001Z");
    }
}
