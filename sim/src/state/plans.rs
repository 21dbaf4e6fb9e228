//! What a request to the simulated cloud should be answered: a *plan*, computed under one
//! short lock; the handlers do the I/O.
//!
//! Owns: the plans of the download-link API and of downloads, and counting down the faults
//! that clear themselves after a number of requests.
//! Must not: generate keys (a fault's bodies were prepared when it was set) or touch HTTP.

use std::time::Duration;

use bytes::Bytes;

use super::World;
use crate::model::{BadContent, Fault};

/// What the download-link API should answer for one instance.
#[derive(Debug)]
pub(crate) enum ApiPlan {
    /// No such instance in the project: 404 DBS.200002.
    UnknownInstance,
    /// An error status from [`Fault::ApiStatus`].
    Status(u16),
    /// 429 with this Retry-After, from [`Fault::RateLimited`].
    RateLimited { retry_after_secs: u64 },
    /// 200 with a body that is not JSON.
    GarbageJson,
    /// 200 with links to these categories (possibly none), after `delay`.
    Links {
        categories: Vec<String>,
        plain_http: bool,
        delay: Option<Duration>,
    },
}

/// What a (correctly signed) download should answer.
#[derive(Debug)]
pub(crate) enum DownloadPlan {
    /// The instance or category is gone: 404 NoSuchKey.
    NoSuchKey,
    /// 403 AccessDenied "Request has expired".
    Expired,
    /// 302 to the same link on another host name.
    RedirectOtherHost,
    /// 302 to a fresh link on the same host.
    RedirectLoop,
    /// 200 with this body after `delay`; `truncate` closes the connection half-way.
    Body {
        body: Bytes,
        content_type: &'static str,
        delay: Option<Duration>,
        truncate: bool,
    },
}

/// The content type OBS serves `.crt` objects with.
const CA_CONTENT_TYPE: &str = "application/x-x509-ca-cert";

impl World {
    /// Decides the answer of one authenticated download-link request for `id` in the path's
    /// project, counting down faults; an instance of another project is unknown there.
    pub(crate) fn api_plan(&self, project_id: &str, id: &str) -> ApiPlan {
        let mut reg = self.lock();
        let Some(inst) = reg
            .instances
            .get_mut(id)
            .filter(|i| i.project_id == project_id)
        else {
            return ApiPlan::UnknownInstance;
        };
        let categories: Vec<String> = inst.cas.iter().map(|(c, _)| c.clone()).collect();
        let links = |categories, plain_http, delay| ApiPlan::Links {
            categories,
            plain_http,
            delay,
        };
        let Some(active) = inst.fault.as_mut() else {
            return links(categories, false, None);
        };
        let plan = match &active.fault {
            Fault::ApiStatus { status, .. } => ApiPlan::Status(*status),
            Fault::RateLimited {
                retry_after_secs, ..
            } => ApiPlan::RateLimited {
                retry_after_secs: *retry_after_secs,
            },
            Fault::SlowApi { millis } => {
                return links(categories, false, Some(Duration::from_millis(*millis)));
            }
            Fault::PlainHttpLink => return links(categories, true, None),
            Fault::Content {
                content: BadContent::GarbageJson,
            } => return ApiPlan::GarbageJson,
            Fault::Content {
                content: BadContent::EmptyCerts,
            } => return links(Vec::new(), false, None),
            _ => return links(categories, false, None),
        };
        // Only the counted faults get here.
        if let Some(n) = active.remaining.as_mut() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                inst.fault = None;
            }
        }
        plan
    }

    /// Decides the answer of one correctly signed download.
    pub(crate) fn download_plan(&self, id: &str, category: &str) -> DownloadPlan {
        let reg = self.lock();
        let Some(inst) = reg.instances.get(id) else {
            return DownloadPlan::NoSuchKey;
        };
        let Some(ca) = inst.ca(category) else {
            return DownloadPlan::NoSuchKey;
        };
        let ca_body = |delay, truncate| DownloadPlan::Body {
            body: ca.pem_bytes.clone(),
            content_type: CA_CONTENT_TYPE,
            delay,
            truncate,
        };
        let Some(active) = inst.fault.as_ref() else {
            return ca_body(None, false);
        };
        let prepared = |content_type| DownloadPlan::Body {
            body: active
                .bodies
                .get(category)
                .cloned()
                .unwrap_or_else(|| ca.pem_bytes.clone()),
            content_type,
            delay: None,
            truncate: false,
        };
        match &active.fault {
            Fault::SlowDownload { millis } => ca_body(Some(Duration::from_millis(*millis)), false),
            Fault::TruncatedDownload => ca_body(None, true),
            Fault::OversizeDownload { .. } => prepared(CA_CONTENT_TYPE),
            Fault::Content {
                content: BadContent::Html,
            } => prepared("text/html; charset=utf-8"),
            Fault::Content {
                content: BadContent::CaWithPrivateKey | BadContent::NotCa | BadContent::Expired,
            } => prepared(CA_CONTENT_TYPE),
            Fault::RedirectOtherHost => DownloadPlan::RedirectOtherHost,
            Fault::RedirectLoop => DownloadPlan::RedirectLoop,
            Fault::ExpiredLink => DownloadPlan::Expired,
            Fault::ApiStatus { .. }
            | Fault::RateLimited { .. }
            | Fault::SlowApi { .. }
            | Fault::PlainHttpLink
            | Fault::Content {
                content: BadContent::GarbageJson | BadContent::EmptyCerts,
            } => ca_body(None, false),
        }
    }
}
