//! The GaussDB NoSQL SSL-cert download-link operation as the simulator serves it
//! (`GET /v3/{project_id}/instances/{id}/ssl-cert/download-link`), behind the gateway's
//! authentication (`auth`), and the error answers the API gives for faults.
//!
//! Owns the JSON answers of this operation; it must not serve downloads (that is `obs`) nor
//! change the state other than counting requests and consuming counted faults.

use std::time::{SystemTime, UNIX_EPOCH};

use hyper::header::{HeaderValue, RETRY_AFTER};
use hyper::{Response, StatusCode};
use serde::Serialize;

use crate::auth::{self, GatewayRequest};
use crate::http::{self, JSON_CONTENT_TYPE, SimBody};
use crate::link::{LINK_TTL_SECS, LinkSigner};
use crate::state::{ApiPlan, Counters, World};

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

/// Authenticates a request to an operation under `/v3/{project_id}/` and checks the caller may
/// use that project; `Some` is the 401 to answer.
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
        429 => rate_limited(1, request_id),
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

/// APIG's throttling answer.
fn rate_limited(retry_after_secs: u64, request_id: &str) -> Response<SimBody> {
    let mut resp = http::gateway_error(
        StatusCode::TOO_MANY_REQUESTS,
        "APIG.0308",
        "The throttling threshold has been reached: policy user over ratelimit,limit:20,time:1 second",
        request_id,
    );
    resp.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
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
    match world.api_plan(id) {
        ApiPlan::UnknownInstance => status_error(404, request_id),
        ApiPlan::Status(status) => {
            if status == 401 {
                Counters::bump(&world.counters.unauthorized);
            }
            status_error(status, request_id)
        }
        ApiPlan::RateLimited { retry_after_secs } => rate_limited(retry_after_secs, request_id),
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
