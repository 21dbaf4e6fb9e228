//! Dispatch of every request the simulator receives to its handler, by method and path, and the
//! headers every answer carries (`X-Request-Id`, `Server`).
//!
//! This is where new surfaces are plugged in (ListInstances, IAM, ECS metadata, AK/SK checking):
//! one match arm per route. It must not contain handler logic itself.

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, SERVER};
use hyper::{Method, Request, Response, StatusCode};

use crate::http::{self, SimBody};
use crate::link::OBJECT_NAME;
use crate::state::{World, random_hex};
use crate::{api, control, obs};

/// The largest control request body read (fault documents are tiny).
const MAX_CONTROL_BODY: usize = 64 * 1024;

/// The header every answer carries with a fresh 32-hex request id.
static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// OBS's own request id header.
static X_OBS_REQUEST_ID: HeaderName = HeaderName::from_static("x-obs-request-id");

/// Which server a route belongs to, for the headers that server sets.
#[derive(Clone, Copy)]
enum Surface {
    Gateway,
    Obs,
    Control,
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

    let (surface, mut resp) = match segments.as_slice() {
        [
            "v3",
            project_id,
            "instances",
            id,
            "ssl-cert",
            "download-link",
        ] if method == Method::GET => (
            Surface::Gateway,
            api::download_link(&world, &parts.headers, project_id, id, &request_id).await,
        ),
        ["obs", bucket, id, category, object]
            if method == Method::GET && *object == OBJECT_NAME =>
        {
            (
                Surface::Obs,
                obs::download(&world, bucket, id, category, query, &request_id).await,
            )
        }
        ["obs", ..] => (
            Surface::Obs,
            http::obs_error(
                StatusCode::NOT_FOUND,
                "NoSuchKey",
                "The specified key does not exist.",
                &request_id,
                &[],
            ),
        ),
        ["_sim", rest @ ..] => {
            let resp = match Limited::new(body, MAX_CONTROL_BODY).collect().await {
                Ok(collected) => {
                    control::handle(&world, method, rest, query, &collected.to_bytes())
                }
                Err(e) => http::json(
                    StatusCode::BAD_REQUEST,
                    &serde_json::json!({ "error": format!("reading the body: {e}") }),
                ),
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
