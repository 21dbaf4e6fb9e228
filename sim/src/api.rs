//! The GaussDB NoSQL SSL-cert download-link operation as the simulator serves it
//! (`GET /v3/{project_id}/instances/{id}/ssl-cert/download-link`), behind the gateway's
//! authentication (`auth`) and per-user throttling (`throttle`), and the error answers the API
//! gives for faults.
//!
//! Owns the JSON answers of this operation and the gateway's 429 `APIG.0308` (for the other
//! gateway handlers too); it must not serve downloads (that is `obs`) nor change the state
//! other than counting requests, taking throttling tokens and consuming counted faults.
//!
//! The gateway's order, for every operation behind it: authenticate (401, counted against no
//! one), then the caller's rate limit (429), then the project in the path (401), then the
//! operation itself.

use std::time::{SystemTime, UNIX_EPOCH};

use hyper::header::{HeaderValue, RETRY_AFTER};
use hyper::{Response, StatusCode};
use serde::Serialize;

use crate::auth::{self, GatewayRequest};
use crate::http::{self, JSON_CONTENT_TYPE, SimBody};
use crate::link::{LINK_TTL_SECS, LinkSigner};
use crate::state::{ApiPlan, Counters, World};
use crate::throttle::UserKey;

/// A body that looks like JSON cut off by a broken proxy, for [`crate::BadContent::GarbageJson`].
const GARBAGE_JSON: &str = "{\"certs\": [{\"category\": \"international\", \"download_li";

#[derive(Serialize)]
struct CertInfo {
    category: String,
    download_link: String,
}

#[derive(Serialize)]
struct DownloadLinks {
    certs: Vec<CertInfo>,
}

/// Seconds since the epoch, now.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Takes a token of `user`'s bucket; `Some` is the 429 to answer (counted as throttled).
pub(crate) fn throttle(
    world: &World,
    user: &UserKey,
    request_id: &str,
) -> Option<Response<SimBody>> {
    let limit = world.throttle.admit(user).err()?;
    Counters::bump(&world.counters.throttled);
    Some(rate_limited(
        limit.per_second,
        limit.retry_after.map(u64::from),
        request_id,
    ))
}

/// Authenticates a request to an operation under `/v3/{project_id}/`, applies the caller's
/// rate limit and checks the caller may use that project; `Some` is the 401 or 429 to answer.
pub(crate) fn authorize_project(
    world: &World,
    req: &GatewayRequest<'_>,
    project_id: &str,
    request_id: &str,
) -> Option<Response<SimBody>> {
    let caller = match auth::authenticate(world, req) {
        Ok(caller) => caller,
        Err(denial) => return Some(denial.respond(world, request_id)),
    };
    if let Some(throttled) = throttle(world, caller.user(), request_id) {
        return Some(throttled);
    }
    if caller.may_use_project(world, project_id) {
        return None;
    }
    let detail = match caller {
        auth::Caller::Token { .. } => "token does not match project",
        // Not a documented APIG text: the simulator's wording for a project the keys do not own.
        auth::Caller::Signed { .. } => "project id does not match the credentials",
    };
    Some(auth::denied(world, detail, request_id))
}

/// The error body the API gives for a status set by [`crate::Fault::ApiStatus`].
///
/// The 400/403/404 codes are GaussDB NoSQL's documented ones; the gateway codes are APIG's.
/// `DBS.200500` for other 5xx is this simulator's invention: no generic code is documented.
pub(crate) fn status_error(status: u16, request_id: &str) -> Response<SimBody> {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match status {
        401 => http::gateway_error(
            code,
            "APIGW.0301",
            "Incorrect IAM authentication information: token expires",
            request_id,
        ),
        404 => http::service_error(
            code,
            "DBS.200002",
            "The instance does not exist or has been deleted.",
        ),
        403 => http::service_error(
            code,
            "DBS.200019",
            "Another operation is being performed on the instance or the instance is faulty.",
        ),
        429 => rate_limited(FAULT_LIMIT, Some(1), request_id),
        502 => http::gateway_error(code, "APIG.0201", "Backend unavailable", request_id),
        504 => http::gateway_error(code, "APIG.0202", "Backend timeout", request_id),
        500..=599 => http::service_error(
            code,
            "DBS.200500",
            "Internal server error. Try again later.",
        ),
        _ => http::service_error(code, "DBS.200001", "Invalid parameter."),
    }
}

/// The limit a fault's 429 names (no [`crate::RateLimit`] is involved).
const FAULT_LIMIT: u32 = 20;

/// APIG's throttling answer for a limit of `limit` a second, with `Retry-After` when given.
fn rate_limited(limit: u32, retry_after_secs: Option<u64>, request_id: &str) -> Response<SimBody> {
    let mut resp = http::gateway_error(
        StatusCode::TOO_MANY_REQUESTS,
        "APIG.0308",
        &format!(
            "The throttling threshold has been reached: policy user over ratelimit,limit:{limit},time:1 second"
        ),
        request_id,
    );
    if let Some(secs) = retry_after_secs {
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

/// `GET /v3/{project_id}/instances/{id}/ssl-cert/download-link`.
pub(crate) async fn download_link(
    world: &World,
    req: &GatewayRequest<'_>,
    project_id: &str,
    id: &str,
    request_id: &str,
) -> Response<SimBody> {
    Counters::bump(&world.counters.api_requests);
    if let Some(denied) = authorize_project(world, req, project_id, request_id) {
        return denied;
    }
    match world.api_plan(project_id, id) {
        ApiPlan::UnknownInstance => status_error(404, request_id),
        ApiPlan::Status(status) => {
            if status == 401 {
                Counters::bump(&world.counters.unauthorized);
            }
            status_error(status, request_id)
        }
        ApiPlan::RateLimited { retry_after_secs } => {
            rate_limited(FAULT_LIMIT, Some(retry_after_secs), request_id)
        }
        ApiPlan::GarbageJson => http::response(
            StatusCode::OK,
            JSON_CONTENT_TYPE,
            SimBody::full(GARBAGE_JSON),
        ),
        ApiPlan::Links {
            categories,
            plain_http,
            delay,
        } => {
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            // Links are minted at answer time, after any delay, like a real pre-signed URL.
            let expires = unix_now() + LINK_TTL_SECS;
            let base = if plain_http {
                world.endpoint.replacen("https://", "http://", 1)
            } else {
                world.endpoint.clone()
            };
            let certs = categories
                .into_iter()
                .map(|category| {
                    let path = LinkSigner::object_path(id, &category);
                    let query = world.links.query(&path, expires);
                    CertInfo {
                        download_link: format!("{base}/obs{path}?{query}"),
                        category,
                    }
                })
                .collect();
            http::json(StatusCode::OK, &DownloadLinks { certs })
        }
    }
}
