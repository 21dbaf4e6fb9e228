//! What the simulated cloud shows of its instances: ListInstances' view (per project) and the
//! control API's state document (every project).
//!
//! Owns: the listed and viewed shapes (a CA's PEM, subject and fingerprint, never its key)
//! and the `World` methods that take them under one lock.
//! Must not: change the state, or answer HTTP (the handlers serialise these views).

use serde::Serialize;

use super::World;
use crate::model::{Fault, InstanceMeta, Node};
use crate::pki::Ca;

/// One instance as ListInstances describes it.
#[derive(Clone, Debug)]
pub(crate) struct ListedInstance {
    pub id: String,
    pub meta: InstanceMeta,
    pub nodes: Vec<Node>,
    pub created: String,
}

/// One instance in the control API's state document.
#[derive(Serialize)]
pub(crate) struct InstanceView {
    pub id: String,
    pub project_id: String,
    #[serde(flatten)]
    pub meta: InstanceMeta,
    pub nodes: Vec<Node>,
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
    pub(super) fn new(category: &str, ca: &Ca) -> Self {
        Self {
            category: category.to_owned(),
            sha256_hex: ca.info.sha256_hex.clone(),
            subject: ca.subject.clone(),
            pem: ca.info.pem.clone(),
        }
    }
}

impl World {
    /// Every instance of a project as ListInstances sees it, most recently created first (the
    /// API's order); none for a project the API does not serve.
    pub(crate) fn listed_instances(&self, project_id: &str) -> Vec<ListedInstance> {
        let reg = self.lock();
        reg.order
            .iter()
            .rev()
            .filter_map(|id| {
                let inst = reg.instances.get(id)?;
                (inst.project_id == project_id).then(|| ListedInstance {
                    id: id.clone(),
                    meta: inst.meta.clone(),
                    nodes: inst.nodes.clone(),
                    created: inst.created.clone(),
                })
            })
            .collect()
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
                    project_id: inst.project_id.clone(),
                    meta: inst.meta.clone(),
                    nodes: inst.nodes.clone(),
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
}
