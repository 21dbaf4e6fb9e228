//! Dispatch of every request the simulator receives to its handler, by method and path, and the
//! headers every answer carries (`X-Request-Id`, `Server`, and IAM's `X-IAM-Trace-Id`); also the
//! dispatch of the separate metadata listener.
//!
//! One match arm per route. It must not contain handler logic itself; authentication happens in
//! the handlers (through `auth`), which get the whole request body (signatures cover it).

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, SERVER};
use hyper::{Method, Request, Response, StatusCode};

use crate::auth::GatewayRequest;
use crate::http::{self, SimBody};
use crate::link::OBJECT_NAME;
use crate::state::World;
use crate::util::random_hex;
use crate::{api, control, iam, instances, metadata, obs};

/// The largest request body read (token requests and fault documents are tiny).
const MAX_BODY: usize = 64 * 1024;
/// Bodies up to this size are read whole even when refused (see `handle`).
const DRAIN_LIMIT: usize = 1024 * 1024;

/// The header every answer carries with a fresh 32-hex request id.
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// OBS's own request id header.
static X_OBS_REQUEST_ID: HeaderName = HeaderName::from_static("x-obs-request-id");

/// IAM's trace id header (the SDK reads it when it looks up a project).
static X_IAM_TRACE_ID: HeaderName = HeaderName::from_static("x-iam-trace-id");

/// Which server a route belongs to, for the headers that server sets.
#[derive(Clone, Copy)]
enum Surface {
    Gateway,
    Iam,
    Obs,
    Control,
}

/// The parts of a request the gateway authenticates.
fn gateway_request<'a>(
    parts: &'a hyper::http::request::Parts,
    body: &'a [u8],
) -> GatewayRequest<'a> {
    GatewayRequest {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers: &parts.headers,
        body,
    }
}

/// Serves one request.
pub(crate) async fn handle(
    world: Arc<World>,
    req: Request<Incoming>,
) -> Result<Response<SimBody>, Infallible> {
    let request_id = random_hex(16);
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    let query = parts.uri.query();
    let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    let method = &parts.method;
    // Read (up to a hard cap) before judging the size: answering 413 while the client is
    // still sending would reset the connection under it instead of giving it the answer.
    let body = Limited::new(body, DRAIN_LIMIT)
        .collect()
        .await
        .map(|collected| collected.to_bytes())
        .map_err(|e| format!("reading the body: {e}"))
        .and_then(|bytes| {
            if bytes.len() > MAX_BODY {
                Err(format!("body of {} bytes over the limit", bytes.len()))
            } else {
                Ok(bytes)
            }
        });
    let gateway = |body| gateway_request(&parts, body);

    let (surface, mut resp) = match (segments.as_slice(), &body) {
        // APIG's answer to a body over its limit (the simulator's limit is far lower).
        (_, Err(_)) if !matches!(segments.first(), Some(&"_sim")) => (
            Surface::Gateway,
            http::gateway_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "APIG.0201",
                "Request entity too large",
                &request_id,
            ),
        ),
        (
            [
                "v3",
                project_id,
                "instances",
                id,
                "ssl-cert",
                "download-link",
            ],
            Ok(body),
        ) if method == Method::GET => (
            Surface::Gateway,
            api::download_link(&world, &gateway(body), project_id, id, &request_id).await,
        ),
        (["v3", project_id, "instances"], Ok(body)) if method == Method::GET => (
            Surface::Gateway,
            instances::list(&world, &gateway(body), project_id, &request_id),
        ),
        (["v3", "auth", "tokens"], Ok(body)) if method == Method::POST => (
            Surface::Iam,
            iam::create_token(&world, query.unwrap_or(""), body, &request_id),
        ),
        (["v3", "projects"], Ok(body)) if method == Method::GET => (
            Surface::Iam,
            iam::list_projects(&world, &gateway(body), &request_id),
        ),
        (["obs", bucket, id, category, object], _)
            if method == Method::GET && *object == OBJECT_NAME =>
        {
            (
                Surface::Obs,
                obs::download(&world, bucket, id, category, query, &request_id).await,
            )
        }
        (["obs", ..], _) => (
            Surface::Obs,
            http::obs_error(
                StatusCode::NOT_FOUND,
                "NoSuchKey",
                "The specified key does not exist.",
                &request_id,
                &[],
            ),
        ),
        (["_sim", rest @ ..], body) => {
            let resp = match body {
                Ok(body) => control::handle(&world, method, rest, query, body),
                Err(e) => http::json(StatusCode::BAD_REQUEST, &serde_json::json!({ "error": e })),
            };
            (Surface::Control, resp)
        }
        _ => (
            Surface::Gateway,
            http::gateway_error(
                StatusCode::NOT_FOUND,
                "APIGW.0101",
                "The API does not exist or has not been published in the environment",
                &request_id,
            ),
        ),
    };

    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert(X_REQUEST_ID.clone(), v.clone());
        match surface {
            Surface::Gateway => {
                headers.insert(SERVER, HeaderValue::from_static("api-gateway"));
            }
            Surface::Iam => {
                headers.insert(SERVER, HeaderValue::from_static("api-gateway"));
                headers.insert(X_IAM_TRACE_ID.clone(), v);
            }
            Surface::Obs => {
                headers.insert(SERVER, HeaderValue::from_static("OBS"));
                headers.insert(X_OBS_REQUEST_ID.clone(), v);
            }
            Surface::Control => {
                headers.insert(SERVER, HeaderValue::from_static("certsync-sim"));
            }
        }
    }
    tracing::debug!(
        method = %method,
        // Only the path: a link's query is a credential.
        path,
        status = resp.status().as_u16(),
        request_id,
        "request"
    );
    Ok(resp)
}

/// Serves one request to the metadata listener.
pub(crate) async fn handle_metadata(
    world: Arc<World>,
    req: Request<Incoming>,
) -> Result<Response<SimBody>, Infallible> {
    let (parts, _body) = req.into_parts();
    let resp = metadata::handle(&world, &parts.method, parts.uri.path(), &parts.headers);
    tracing::debug!(
        method = %parts.method,
        path = parts.uri.path(),
        status = resp.status().as_u16(),
        "metadata request"
    );
    Ok(resp)
}
