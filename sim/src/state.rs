//! The simulated cloud's state: instances with their CAs per category, descriptions and active
//! faults, the accepted token, the identities (`creds`) and the request counters, shared by the
//! Rust API, the control API and the request handlers.
//!
//! Handlers ask it for a *plan* (what to answer) and do the I/O themselves; a plan is computed
//! under one short lock and never generates keys. Key generation happens only in the calls that
//! change instances (add, rotate, categories, faults). This module must not touch HTTP.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;

use crate::creds::Creds;
use crate::link::LinkSigner;
use crate::model::{BadContent, CaInfo, Fault, InstanceMeta, ListFault, Stats};
use crate::pki::{self, Ca, Leaf, PkiError};
use crate::util::{self, random_hex};

/// The category a new instance gets.
pub(crate) const DEFAULT_CATEGORY: &str = "international";

/// The HTML page served for [`BadContent::Html`] (a typical captive-portal or proxy error page).
const HTML_PAGE: &str = "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n\
<body><h1>502 Bad Gateway</h1><p>The proxy server received an invalid response.</p></body></html>\n";

/// A change to the simulated cloud was refused.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// No instance has this id.
    #[error("instance {id} does not exist")]
    UnknownInstance { id: String },
    /// The instance has no CA for this category.
    #[error("instance {id} has no category {category}")]
    UnknownCategory { id: String, category: String },
    /// An instance id outside `[A-Za-z0-9-]{1,64}` (ids go into URL paths).
    #[error("instance id {id:?} is not 1 to 64 characters of A-Z, a-z, 0-9 and '-'")]
    InvalidId { id: String },
    /// A category outside `[A-Za-z0-9_-]{1,64}` (categories go into link paths).
    #[error("category {category:?} is not 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'")]
    InvalidCategory { category: String },
    /// A certificate could not be generated.
    #[error("instance {id}")]
    Pki {
        id: String,
        #[source]
        source: PkiError,
    },
}

/// Whether `id` is a valid instance id (`[A-Za-z0-9-]{1,64}`).
pub(crate) fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn valid_category(category: &str) -> bool {
    (1..=64).contains(&category.len())
        && category
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A fresh instance id shaped like a real one: 32 lower-case hex digits and `in06`.
pub(crate) fn random_instance_id() -> String {
    format!("{}in06", random_hex(16))
}

/// Request counters, updated without the state lock.
#[derive(Default)]
pub(crate) struct Counters {
    pub api_requests: AtomicU64,
    pub list_requests: AtomicU64,
    pub unauthorized: AtomicU64,
    pub downloads: AtomicU64,
    pub iam_tokens_issued: AtomicU64,
    pub iam_token_failures: AtomicU64,
    pub project_lookups: AtomicU64,
    pub metadata_session_tokens: AtomicU64,
    pub metadata_fetches: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            api_requests: get(&self.api_requests),
            list_requests: get(&self.list_requests),
            unauthorized: get(&self.unauthorized),
            downloads: get(&self.downloads),
            iam_tokens_issued: get(&self.iam_tokens_issued),
            iam_token_failures: get(&self.iam_token_failures),
            project_lookups: get(&self.project_lookups),
            metadata_session_tokens: get(&self.metadata_session_tokens),
            metadata_fetches: get(&self.metadata_fetches),
        }
    }
}

/// A fault in force, with what it still has to do.
struct ActiveFault {
    fault: Fault,
    /// API requests left before the fault clears itself (`None`: until cleared).
    remaining: Option<u32>,
    /// Download bodies made when the fault was set (or the CAs changed), per category.
    bodies: HashMap<String, Bytes>,
}

/// An instance's categories in the order the API lists them, each with its current CA.
pub(crate) type CategoryCas = Vec<(String, Ca)>;

/// One simulated instance.
struct Instance {
    cas: CategoryCas,
    fault: Option<ActiveFault>,
    meta: InstanceMeta,
    /// When it was created, for ListInstances' `created` field.
    created: String,
}

impl Instance {
    fn ca(&self, category: &str) -> Option<&Ca> {
        self.cas
            .iter()
            .find(|(c, _)| c == category)
            .map(|(_, ca)| ca)
    }

    /// Rebuilds the active fault's prepared bodies after the CAs changed.
    fn refresh_fault(&mut self) -> Result<(), PkiError> {
        if let Some(active) = self.fault.as_ref() {
            let bodies = prepare_bodies(&active.fault, &self.cas)?;
            if let Some(active) = self.fault.as_mut() {
                active.bodies = bodies;
            }
        }
        Ok(())
    }
}

#[derive(Default)]
struct Registry {
    /// Instance ids in creation order.
    order: Vec<String>,
    instances: HashMap<String, Instance>,
    /// Instances created so far (names `inst-N` count on from it, also past removals).
    created: usize,
    /// ListInstances' faults in force, in the order set, each once.
    list_faults: Vec<ListFault>,
}

/// One instance as ListInstances describes it.
#[derive(Clone, Debug)]
pub(crate) struct ListedInstance {
    pub id: String,
    pub meta: InstanceMeta,
    pub created: String,
}

/// What the download-link API should answer for one instance.
#[derive(Debug)]
pub(crate) enum ApiPlan {
    /// No such instance: 404 DBS.200002.
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

/// One instance in the control API's state document.
#[derive(Serialize)]
pub(crate) struct InstanceView {
    pub id: String,
    #[serde(flatten)]
    pub meta: InstanceMeta,
    pub categories: Vec<CategoryView>,
    pub fault: Option<Fault>,
}

/// One CA in the control API's documents (no key).
#[derive(Serialize)]
pub(crate) struct CategoryView {
    pub category: String,
    pub sha256_hex: String,
    pub subject: String,
    pub pem: String,
}

impl CategoryView {
    fn new(category: &str, ca: &Ca) -> Self {
        Self {
            category: category.to_owned(),
            sha256_hex: ca.info.sha256_hex.clone(),
            subject: ca.subject.clone(),
            pem: ca.info.pem.clone(),
        }
    }
}

/// The shared state of one simulator.
pub(crate) struct World {
    /// `https://HOST:PORT`, the base of the API and of download links.
    pub endpoint: String,
    /// The port, for links on other host names.
    pub port: u16,
    pub project_id: String,
    /// The region this simulator plays (the project's name, e.g. `cn-north-4`).
    pub region: String,
    token: RwLock<String>,
    pub creds: Creds,
    pub links: LinkSigner,
    pub counters: Counters,
    registry: Mutex<Registry>,
}

/// Makes the CAs of a new instance (outside any lock).
pub(crate) fn new_instance_cas(
    id: &str,
    categories: &[&str],
) -> Result<Vec<(String, Ca)>, SimError> {
    categories
        .iter()
        .map(|c| {
            pki::make_ca(&pki::instance_ca_name(id, c))
                .map(|ca| (c.to_string(), ca))
                .map_err(|source| SimError::Pki {
                    id: id.to_owned(),
                    source,
                })
        })
        .collect()
}

impl World {
    pub(crate) fn new(
        endpoint: String,
        port: u16,
        project_id: String,
        region: String,
        token: String,
        creds: Creds,
    ) -> Self {
        Self {
            endpoint,
            port,
            project_id,
            region,
            token: RwLock::new(token),
            creds,
            links: LinkSigner::new(),
            counters: Counters::default(),
            registry: Mutex::new(Registry::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // A panic while holding the lock cannot leave the registry half-updated in a way that
        // matters to a test double, so a poisoned lock is used as is.
        util::lock(&self.registry)
    }

    pub(crate) fn token(&self) -> String {
        self.token.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set_token(&self, token: &str) {
        *self.token.write().unwrap_or_else(|e| e.into_inner()) = token.to_owned();
    }

    pub(crate) fn token_matches(&self, given: &str) -> bool {
        // A loopback test double: timing side channels are not a concern here.
        *self.token.read().unwrap_or_else(|e| e.into_inner()) == given
    }

    pub(crate) fn stats(&self) -> Stats {
        self.counters.snapshot()
    }

    pub(crate) fn instance_ids(&self) -> Vec<String> {
        self.lock().order.clone()
    }

    /// Inserts an instance whose CAs were made already; an existing id is left as it is.
    pub(crate) fn insert_instance(&self, id: &str, cas: CategoryCas) -> bool {
        let mut reg = self.lock();
        if reg.instances.contains_key(id) {
            return false;
        }
        reg.created += 1;
        let meta = InstanceMeta::numbered(reg.created);
        reg.order.push(id.to_owned());
        reg.instances.insert(
            id.to_owned(),
            Instance {
                cas,
                fault: None,
                meta,
                created: now_iso_seconds(),
            },
        );
        true
    }

    /// The description of an instance.
    pub(crate) fn meta(&self, id: &str) -> Result<InstanceMeta, SimError> {
        self.lock()
            .instances
            .get(id)
            .map(|i| i.meta.clone())
            .ok_or_else(|| SimError::UnknownInstance { id: id.to_owned() })
    }

    /// Replaces the description of an instance.
    pub(crate) fn set_meta(&self, id: &str, meta: InstanceMeta) -> Result<(), SimError> {
        let mut reg = self.lock();
        let inst = reg
            .instances
            .get_mut(id)
            .ok_or_else(|| SimError::UnknownInstance { id: id.to_owned() })?;
        inst.meta = meta;
        Ok(())
    }

    /// Every instance as ListInstances sees it, most recently created first (the API's order).
    pub(crate) fn listed_instances(&self) -> Vec<ListedInstance> {
        let reg = self.lock();
        reg.order
            .iter()
            .rev()
            .filter_map(|id| {
                let inst = reg.instances.get(id)?;
                Some(ListedInstance {
                    id: id.clone(),
                    meta: inst.meta.clone(),
                    created: inst.created.clone(),
                })
            })
            .collect()
    }

    /// Adds an instance with one category, `international`, and a fresh CA.
    /// Returns false (and changes nothing) when the id exists already.
    pub(crate) fn add_instance(&self, id: &str) -> Result<bool, SimError> {
        if !valid_id(id) {
            return Err(SimError::InvalidId { id: id.to_owned() });
        }
        if self.lock().instances.contains_key(id) {
            return Ok(false);
        }
        let cas = new_instance_cas(id, &[DEFAULT_CATEGORY])?;
        Ok(self.insert_instance(id, cas))
    }

    /// Removes an instance; false when it did not exist.
    pub(crate) fn remove_instance(&self, id: &str) -> bool {
        let mut reg = self.lock();
        if reg.instances.remove(id).is_none() {
            return false;
        }
        reg.order.retain(|i| i != id);
        true
    }

    /// Sets the categories of an instance, in this order; kept categories keep their CA,
    /// new ones get a fresh CA.
    pub(crate) fn set_categories(&self, id: &str, categories: &[&str]) -> Result<(), SimError> {
        if let Some(bad) = categories.iter().find(|c| !valid_category(c)) {
            return Err(SimError::InvalidCategory {
                category: bad.to_string(),
            });
        }
        let mut reg = self.lock();
        let inst = reg
            .instances
            .get_mut(id)
            .ok_or_else(|| SimError::UnknownInstance { id: id.to_owned() })?;
        let mut next = Vec::with_capacity(categories.len());
        for category in categories {
            if next.iter().any(|(c, _): &(String, Ca)| c == category) {
                continue;
            }
            let ca = match inst.ca(category) {
                Some(ca) => ca.clone(),
                None => new_instance_cas(id, &[category])?.remove(0).1,
            };
            next.push((category.to_string(), ca));
        }
        inst.cas = next;
        inst.refresh_fault().map_err(|source| SimError::Pki {
            id: id.to_owned(),
            source,
        })
    }

    /// Replaces the CA of one category with a new key and serial, under the same subject or,
    /// with `common_name`, under that name from now on (later rotations keep it).
    pub(crate) fn rotate(
        &self,
        id: &str,
        category: &str,
        common_name: Option<&str>,
        not_after: Option<time::OffsetDateTime>,
    ) -> Result<(Arc<CaInfo>, CategoryView), SimError> {
        let mut reg = self.lock();
        let inst = reg
            .instances
            .get_mut(id)
            .ok_or_else(|| SimError::UnknownInstance { id: id.to_owned() })?;
        let slot = inst
            .cas
            .iter_mut()
            .find(|(c, _)| c == category)
            .ok_or_else(|| SimError::UnknownCategory {
                id: id.to_owned(),
                category: category.to_owned(),
            })?;
        let pki_err = |source| SimError::Pki {
            id: id.to_owned(),
            source,
        };
        let name = common_name.map_or_else(|| slot.1.common_name.clone(), str::to_owned);
        slot.1 = match not_after {
            None => pki::make_ca(&name),
            Some(end) => pki::make_ca_until(&name, end),
        }
        .map_err(pki_err)?;
        let out = (slot.1.info.clone(), CategoryView::new(category, &slot.1));
        inst.refresh_fault().map_err(pki_err)?;
        Ok(out)
    }

    fn ca_of(&self, id: &str, category: &str) -> Result<Ca, SimError> {
        let reg = self.lock();
        let inst = reg
            .instances
            .get(id)
            .ok_or_else(|| SimError::UnknownInstance { id: id.to_owned() })?;
        inst.ca(category)
            .cloned()
            .ok_or_else(|| SimError::UnknownCategory {
                id: id.to_owned(),
                category: category.to_owned(),
            })
    }

    /// The current CA of one category.
    pub(crate) fn ca(&self, id: &str, category: &str) -> Result<Arc<CaInfo>, SimError> {
        self.ca_of(id, category).map(|ca| ca.info)
    }

    /// Issues a server leaf signed by the current CA of one category.
    pub(crate) fn issue_server_cert(
        &self,
        id: &str,
        category: &str,
        sans: &[&str],
    ) -> Result<Leaf, SimError> {
        let ca = self.ca_of(id, category)?;
        ca.issue_leaf(sans).map_err(|source| SimError::Pki {
            id: id.to_owned(),
            source,
        })
    }

    /// Sets (replacing any) the fault of an instance.
    pub(crate) fn set_fault(&self, id: &str, fault: Fault) -> Result<(), SimError> {
        let mut reg = self.lock();
        let inst = reg
            .instances
            .get_mut(id)
            .ok_or_else(|| SimError::UnknownInstance { id: id.to_owned() })?;
        let remaining = match fault {
            Fault::ApiStatus { times, .. } | Fault::RateLimited { times, .. } => times,
            _ => None,
        };
        if remaining == Some(0) {
            // Zero requests to spoil: nothing is in force.
            inst.fault = None;
            return Ok(());
        }
        let bodies = prepare_bodies(&fault, &inst.cas).map_err(|source| SimError::Pki {
            id: id.to_owned(),
            source,
        })?;
        inst.fault = Some(ActiveFault {
            fault,
            remaining,
            bodies,
        });
        Ok(())
    }

    /// Clears the fault of an instance; false when the instance does not exist.
    pub(crate) fn clear_fault(&self, id: &str) -> bool {
        match self.lock().instances.get_mut(id) {
            Some(inst) => {
                inst.fault = None;
                true
            }
            None => false,
        }
    }

    /// Replaces ListInstances' faults (none: it answers correctly again); each kind counts once.
    pub(crate) fn set_list_faults(&self, faults: &[ListFault]) {
        let mut unique = Vec::with_capacity(faults.len());
        for fault in faults {
            if !unique.contains(fault) {
                unique.push(*fault);
            }
        }
        self.lock().list_faults = unique;
    }

    /// ListInstances' faults in force.
    pub(crate) fn list_faults(&self) -> Vec<ListFault> {
        self.lock().list_faults.clone()
    }

    /// The state document of the control API.
    pub(crate) fn instances_view(&self) -> Vec<InstanceView> {
        let reg = self.lock();
        reg.order
            .iter()
            .filter_map(|id| {
                let inst = reg.instances.get(id)?;
                Some(InstanceView {
                    id: id.clone(),
                    meta: inst.meta.clone(),
                    categories: inst
                        .cas
                        .iter()
                        .map(|(c, ca)| CategoryView::new(c, ca))
                        .collect(),
                    fault: inst.fault.as_ref().map(|f| f.fault.clone()),
                })
            })
            .collect()
    }

    /// Decides the answer of one authenticated download-link request, counting down faults.
    pub(crate) fn api_plan(&self, id: &str) -> ApiPlan {
        let mut reg = self.lock();
        let Some(inst) = reg.instances.get_mut(id) else {
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

/// Now as `YYYY-MM-DDTHH:MM:SS` (UTC), the API's timestamp shape for `created` and `updated`.
fn now_iso_seconds() -> String {
    let now = time::OffsetDateTime::now_utc();
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    now.format(&format).unwrap_or_default()
}

/// The content type OBS serves `.crt` objects with.
pub(crate) const CA_CONTENT_TYPE: &str = "application/x-x509-ca-cert";

/// Makes the download bodies a fault serves, per category (key generation happens here, not
/// on the request path).
fn prepare_bodies(fault: &Fault, cas: &[(String, Ca)]) -> Result<HashMap<String, Bytes>, PkiError> {
    let mut bodies = HashMap::new();
    for (category, ca) in cas {
        let body = match fault {
            Fault::OversizeDownload { bytes } => oversize_body(&ca.info.pem, *bytes),
            Fault::Content { content } => match content {
                BadContent::Html => Bytes::from_static(HTML_PAGE.as_bytes()),
                BadContent::CaWithPrivateKey => {
                    Bytes::from(format!("{}{}", ca.info.pem, ca.info.key_pem))
                }
                BadContent::NotCa => {
                    let leaf = ca.issue_leaf(&["gaussdb-nosql-node.sim.invalid"])?;
                    Bytes::from(leaf.cert_pem)
                }
                BadContent::Expired => {
                    let expired = pki::make_expired_ca(&ca.common_name)?;
                    expired.pem_bytes
                }
                BadContent::GarbageJson | BadContent::EmptyCerts => continue,
            },
            _ => continue,
        };
        bodies.insert(category.clone(), body);
    }
    Ok(bodies)
}

/// `size` bytes made of whole copies of the CA PEM, padded with newlines (text a PEM reader
/// accepts, so only the size is wrong).
fn oversize_body(pem: &str, size: usize) -> Bytes {
    let mut body = Vec::with_capacity(size);
    while body.len() + pem.len() <= size {
        body.extend_from_slice(pem.as_bytes());
    }
    if body.is_empty() {
        body.extend_from_slice(&pem.as_bytes()[..size.min(pem.len())]);
    }
    body.resize(size, b'\n');
    Bytes::from(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world() -> World {
        let project = crate::model::Project {
            id: "p".into(),
            name: "cn-north-4".into(),
        };
        World::new(
            "https://127.0.0.1:1".into(),
            1,
            "p".into(),
            "cn-north-4".into(),
            "t".into(),
            Creds::new("AK".into(), "SK".into(), project),
        )
    }

    #[test]
    fn counted_fault_clears_itself() {
        let w = world();
        w.add_instance("a").unwrap();
        w.set_fault(
            "a",
            Fault::ApiStatus {
                status: 503,
                times: Some(2),
            },
        )
        .unwrap();
        assert!(matches!(w.api_plan("a"), ApiPlan::Status(503)));
        assert!(matches!(w.api_plan("a"), ApiPlan::Status(503)));
        assert!(matches!(w.api_plan("a"), ApiPlan::Links { .. }));
        assert!(w.instances_view()[0].fault.is_none());
    }

    #[test]
    fn invalid_ids_and_unknown_instances_are_refused() {
        let w = world();
        assert!(matches!(
            w.add_instance("a/b"),
            Err(SimError::InvalidId { .. })
        ));
        assert!(matches!(
            w.add_instance(""),
            Err(SimError::InvalidId { .. })
        ));
        assert!(matches!(
            w.rotate("x", "international", None, None),
            Err(SimError::UnknownInstance { .. })
        ));
        w.add_instance("a").unwrap();
        assert!(matches!(
            w.rotate("a", "national", None, None),
            Err(SimError::UnknownCategory { .. })
        ));
        assert!(matches!(
            w.set_categories("a", &["bad/cat"]),
            Err(SimError::InvalidCategory { .. })
        ));
        assert!(matches!(w.api_plan("x"), ApiPlan::UnknownInstance));
        assert!(matches!(
            w.download_plan("a", "national"),
            DownloadPlan::NoSuchKey
        ));
    }

    #[test]
    fn set_categories_keeps_existing_cas() {
        let w = world();
        w.add_instance("a").unwrap();
        let before = w.ca("a", "international").unwrap();
        w.set_categories("a", &["national", "international"])
            .unwrap();
        assert_eq!(
            w.ca("a", "international").unwrap().sha256_hex,
            before.sha256_hex
        );
        let view = w.instances_view();
        let cats: Vec<_> = view[0]
            .categories
            .iter()
            .map(|c| c.category.as_str())
            .collect();
        assert_eq!(cats, ["national", "international"]);
    }

    #[test]
    fn oversize_body_has_exact_size() {
        let pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert_eq!(oversize_body(pem, 1000).len(), 1000);
        assert_eq!(oversize_body(pem, 10).len(), 10);
        assert!(oversize_body(pem, 1000).starts_with(pem.as_bytes()));
    }
}
