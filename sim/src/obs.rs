//! The OBS side: serving the objects behind pre-signed download links
//! (`GET /obs/{bucket}/{id}/{category}/ca.crt?AccessKeyId=..&Expires=..&Signature=..`).
//!
//! Owns link checking at download time and OBS's XML error answers; it must not answer the cloud
//! API nor change instances (it only counts downloads).

use hyper::header::{HeaderValue, LOCATION};
use hyper::{Response, StatusCode};

use crate::api::unix_now;
use crate::http::{self, SimBody};
use crate::link::{BUCKET, LINK_TTL_SECS, LinkError, LinkSigner};
use crate::state::{Counters, DownloadPlan, World};

/// The query parameter that numbers the hops of [`crate::Fault::RedirectLoop`].
const HOP_PARAM: &str = "hop";

/// Formats unix seconds as OBS's ISO-8601 timestamps.
fn iso8601(secs: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs as i64)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

fn expired(expires: u64, request_id: &str) -> Response<SimBody> {
    http::obs_error(
        StatusCode::FORBIDDEN,
        "AccessDenied",
        "Request has expired",
        request_id,
        &[
            ("Expires", iso8601(expires)),
            ("ServerTime", iso8601(unix_now())),
        ],
    )
}

fn no_such_key(object_path: &str, request_id: &str) -> Response<SimBody> {
    http::obs_error(
        StatusCode::NOT_FOUND,
        "NoSuchKey",
        "The specified key does not exist.",
        request_id,
        &[("Key", object_path.trim_start_matches('/').to_owned())],
    )
}

fn redirect(location: &str) -> Response<SimBody> {
    let mut resp = http::response(StatusCode::FOUND, "application/xml", SimBody::empty());
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(LOCATION, v);
    }
    resp
}

/// `GET /obs/{bucket}/{id}/{category}/ca.crt`.
pub(crate) async fn download(
    world: &World,
    bucket: &str,
    id: &str,
    category: &str,
    query: Option<&str>,
    request_id: &str,
) -> Response<SimBody> {
    if bucket != BUCKET {
        return http::obs_error(
            StatusCode::NOT_FOUND,
            "NoSuchBucket",
            "The specified bucket does not exist",
            request_id,
            &[("BucketName", bucket.to_owned())],
        );
    }
    let object_path = LinkSigner::object_path(id, category);
    match world.links.verify(&object_path, query, unix_now()) {
        Ok(()) => {}
        Err(LinkError::Expired { expires }) => return expired(expires, request_id),
        Err(LinkError::Incomplete) => {
            return http::obs_error(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                "Access Denied",
                request_id,
                &[],
            );
        }
        Err(LinkError::BadSignature) => {
            return http::obs_error(
                StatusCode::FORBIDDEN,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided. \
                 Check your key and signing method.",
                request_id,
                &[],
            );
        }
    }
    match world.download_plan(id, category) {
        DownloadPlan::NoSuchKey => no_such_key(&object_path, request_id),
        DownloadPlan::Expired => expired(unix_now().saturating_sub(1), request_id),
        DownloadPlan::RedirectOtherHost => {
            let query = query.unwrap_or("");
            redirect(&format!(
                "https://localhost:{}/obs{object_path}?{query}",
                world.port
            ))
        }
        DownloadPlan::RedirectLoop => {
            let hop = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .find(|(k, _)| k == HOP_PARAM)
                .and_then(|(_, v)| v.parse::<u64>().ok())
                .unwrap_or(0);
            let fresh = world.links.query(&object_path, unix_now() + LINK_TTL_SECS);
            redirect(&format!(
                "{}/obs{object_path}?{fresh}&{HOP_PARAM}={}",
                world.endpoint,
                hop + 1
            ))
        }
        DownloadPlan::Body {
            body,
            content_type,
            delay,
            truncate,
        } => {
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            Counters::bump(&world.counters.downloads);
            let body = if truncate {
                SimBody::truncated(body)
            } else {
                SimBody::full(body)
            };
            http::response(StatusCode::OK, content_type, body)
        }
    }
}
