//! The faults of the simulated cloud: per instance (the download-link API and downloads) and
//! for ListInstances.
//!
//! Owns: setting and clearing faults, and making the download bodies a fault serves (keys
//! are generated here, when the fault is set or the CAs change, never on a request).
//! Must not: decide the answer of a request (`plans` reads the prepared bodies and counts
//! the faults down).

use std::collections::HashMap;

use bytes::Bytes;

use super::{SimError, World};
use crate::model::{BadContent, Fault, ListFault};
use crate::pki::{self, Ca, PkiError};

/// The HTML page served for [`BadContent::Html`] (a typical captive-portal or proxy error page).
const HTML_PAGE: &str = "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n\
<body><h1>502 Bad Gateway</h1><p>The proxy server received an invalid response.</p></body></html>\n";

/// A fault in force, with what it still has to do.
pub(super) struct ActiveFault {
    pub(super) fault: Fault,
    /// API requests left before the fault clears itself (`None`: until cleared).
    pub(super) remaining: Option<u32>,
    /// Download bodies made when the fault was set (or the CAs changed), per category.
    pub(super) bodies: HashMap<String, Bytes>,
}

impl World {
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
}

/// Makes the download bodies a fault serves, per category (key generation happens here, not
/// on the request path).
pub(super) fn prepare_bodies(
    fault: &Fault,
    cas: &[(String, Ca)],
) -> Result<HashMap<String, Bytes>, PkiError> {
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
    use super::super::ApiPlan;
    use super::super::testing::world;
    use super::*;

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
        assert!(matches!(w.api_plan("p", "a"), ApiPlan::Status(503)));
        assert!(matches!(w.api_plan("p", "a"), ApiPlan::Status(503)));
        assert!(matches!(w.api_plan("p", "a"), ApiPlan::Links { .. }));
        assert!(w.instances_view()[0].fault.is_none());
    }

    #[test]
    fn oversize_body_has_exact_size() {
        let pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert_eq!(oversize_body(pem, 1000).len(), 1000);
        assert_eq!(oversize_body(pem, 10).len(), 10);
        assert!(oversize_body(pem, 1000).starts_with(pem.as_bytes()));
    }
}
