//! The ECS metadata service as the simulator serves it, on its own plain-HTTP listener on
//! loopback (the real one is `http://169.254.169.254`):
//! - `PUT /meta-data/latest/api/token` with `X-Metadata-Token-Ttl-Seconds` (1..=21600): a session
//!   token as text, or, in [`MetadataTokenMode::Unsupported`], the configured status;
//! - `GET /openstack/latest/securitykey`: fresh temporary credentials
//!   `{"credential": {"access", "secret", "securitytoken", "expires_at"}}`, which the gateway then
//!   accepts until they expire. With session tokens on, a missing or unknown `X-Metadata-Token`
//!   gets 401; without an agency, 401 "Please configure Cloud Service Agency first" (the text the
//!   SDK looks for).
//!
//! Owns these answers; it must not serve the cloud API. Its answers carry no `X-Request-Id`: the
//! metadata service is not behind the API gateway.

use std::time::Duration;

use hyper::header::HeaderMap;
use hyper::{Method, Response, StatusCode};
use serde_json::json;

use crate::auth::iso_micros;
use crate::creds::MAX_SESSION_TTL_SECS;
use crate::http::{self, SimBody};
use crate::model::MetadataTokenMode;
use crate::state::{Counters, World};

/// The session-token path.
pub(crate) const TOKEN_PATH: &str = "/meta-data/latest/api/token";
/// The temporary-credentials path.
pub(crate) const SECURITY_KEY_PATH: &str = "/openstack/latest/securitykey";

const TTL_HEADER: &str = "x-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "x-metadata-token";

/// The text the SDK recognises as "this ECS has no agency" (it does not retry then).
const NO_AGENCY: &str = "Please configure Cloud Service Agency first";

fn text(status: StatusCode, body: impl Into<String>) -> Response<SimBody> {
    http::response(status, "text/plain", SimBody::full(body.into()))
}

/// Serves one request to the metadata listener.
pub(crate) fn handle(
    world: &World,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Response<SimBody> {
    match path {
        TOKEN_PATH if method == Method::PUT => session_token(world, headers),
        SECURITY_KEY_PATH if method == Method::GET => security_key(world, headers),
        TOKEN_PATH | SECURITY_KEY_PATH => {
            text(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
        }
        _ => text(StatusCode::NOT_FOUND, "Not Found"),
    }
}

fn session_token(world: &World, headers: &HeaderMap) -> Response<SimBody> {
    if let MetadataTokenMode::Unsupported { status } = world.creds.metadata_mode() {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::NOT_FOUND);
        return text(status, status.canonical_reason().unwrap_or(""));
    }
    let ttl = headers
        .get(TTL_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|t| (1..=MAX_SESSION_TTL_SECS).contains(t));
    let Some(ttl) = ttl else {
        return text(
            StatusCode::BAD_REQUEST,
            "X-Metadata-Token-Ttl-Seconds must be 1 to 21600",
        );
    };
    Counters::bump(&world.counters.metadata_session_tokens);
    text(
        StatusCode::OK,
        world.creds.issue_session(Duration::from_secs(ttl)),
    )
}

fn security_key(world: &World, headers: &HeaderMap) -> Response<SimBody> {
    if world.creds.metadata_mode() == MetadataTokenMode::Required {
        let valid = headers
            .get(TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| world.creds.session_valid(t));
        if !valid {
            return text(StatusCode::UNAUTHORIZED, "Unauthorized");
        }
    }
    if !world.creds.agency() {
        return text(StatusCode::UNAUTHORIZED, NO_AGENCY);
    }
    let issued = world.creds.issue_temporary();
    Counters::bump(&world.counters.metadata_fetches);
    http::json(
        StatusCode::OK,
        &json!({
            "credential": {
                "access": issued.access,
                "secret": issued.secret,
                "securitytoken": issued.security_token,
                "expires_at": iso_micros(issued.expires_at),
            }
        }),
    )
}
