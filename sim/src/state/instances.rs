//! The instances of the simulated cloud: their ids, projects, categories, CAs and nodes.
//!
//! Owns: adding (to a project) and removing instances, their descriptions and nodes, setting
//! categories (kept ones keep their CA), rotating a category's CA, issuing server leaves, and
//! the id and category rules (ids and categories go into URL paths; ids are unique across
//! projects). Keys are generated here, outside any request path.
//! Must not: decide what a request is answered (`plans`) or prepare a fault's bodies
//! (`faults`, which it asks to refresh them when the CAs change).

use std::sync::Arc;

use super::faults::{ActiveFault, prepare_bodies};
use super::listing::CategoryView;
use super::{SimError, World};
use crate::model::{CaInfo, InstanceMeta, Node};
use crate::pki::{self, Ca, Leaf, PkiError};
use crate::util::random_hex;

/// The category a new instance gets.
pub(crate) const DEFAULT_CATEGORY: &str = "international";

/// Whether `id` is a valid instance id (`[A-Za-z0-9-]{1,64}`).
fn valid_id(id: &str) -> bool {
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

/// An instance's categories in the order the API lists them, each with its current CA.
pub(crate) type CategoryCas = Vec<(String, Ca)>;

/// One simulated instance.
pub(super) struct Instance {
    /// The project it is in.
    pub(super) project_id: String,
    pub(super) cas: CategoryCas,
    /// What ListInstances lists in `groups[0].nodes`.
    pub(super) nodes: Vec<Node>,
    pub(super) fault: Option<ActiveFault>,
    pub(super) meta: InstanceMeta,
    /// When it was created, for ListInstances' `created` field.
    pub(super) created: String,
}

impl Instance {
    pub(super) fn ca(&self, category: &str) -> Option<&Ca> {
        self.cas
            .iter()
            .find(|(c, _)| c == category)
            .map(|(_, ca)| ca)
    }

    /// Rebuilds the active fault's prepared bodies after the CAs changed.
    pub(super) fn refresh_fault(&mut self) -> Result<(), PkiError> {
        if let Some(active) = self.fault.as_ref() {
            let bodies = prepare_bodies(&active.fault, &self.cas)?;
            if let Some(active) = self.fault.as_mut() {
                active.bodies = bodies;
            }
        }
        Ok(())
    }
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
    /// Inserts an instance whose CAs were made already into a project; an id that exists in
    /// that project is left as it is (false), one in another project is refused.
    pub(crate) fn insert_instance(
        &self,
        project_id: &str,
        id: &str,
        cas: CategoryCas,
    ) -> Result<bool, SimError> {
        let mut reg = self.lock();
        if let Some(existing) = reg.instances.get(id) {
            return existing_in(existing, project_id, id);
        }
        if !reg.projects.iter().any(|p| p.id == project_id) {
            return Err(SimError::UnknownProject {
                project_id: project_id.to_owned(),
            });
        }
        reg.created += 1;
        let meta = InstanceMeta::numbered(reg.created);
        reg.order.push(id.to_owned());
        reg.instances.insert(
            id.to_owned(),
            Instance {
                project_id: project_id.to_owned(),
                cas,
                nodes: vec![Node::default()],
                fault: None,
                meta,
                created: now_iso_seconds(),
            },
        );
        Ok(true)
    }

    /// The nodes of an instance.
    pub(crate) fn nodes(&self, id: &str) -> Result<Vec<Node>, SimError> {
        self.lock()
            .instances
            .get(id)
            .map(|i| i.nodes.clone())
            .ok_or_else(|| SimError::UnknownInstance { id: id.to_owned() })
    }

    /// Replaces the nodes of an instance (an empty list lists none).
    pub(crate) fn set_nodes(&self, id: &str, nodes: &[Node]) -> Result<(), SimError> {
        let mut reg = self.lock();
        let inst = reg
            .instances
            .get_mut(id)
            .ok_or_else(|| SimError::UnknownInstance { id: id.to_owned() })?;
        inst.nodes = nodes.to_vec();
        Ok(())
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

    /// Adds an instance to the simulator's own project (see [`World::add_instance_in`]).
    pub(crate) fn add_instance(&self, id: &str) -> Result<bool, SimError> {
        self.add_instance_in(&self.project_id.clone(), id)
    }

    /// Adds an instance to a project, with one category, `international`, and a fresh CA.
    /// Returns false (and changes nothing) when the id exists already in that project; an id
    /// of another project's instance is refused.
    pub(crate) fn add_instance_in(&self, project_id: &str, id: &str) -> Result<bool, SimError> {
        if !valid_id(id) {
            return Err(SimError::InvalidId { id: id.to_owned() });
        }
        {
            let reg = self.lock();
            if let Some(existing) = reg.instances.get(id) {
                return existing_in(existing, project_id, id);
            }
            if !reg.projects.iter().any(|p| p.id == project_id) {
                return Err(SimError::UnknownProject {
                    project_id: project_id.to_owned(),
                });
            }
        }
        let cas = new_instance_cas(id, &[DEFAULT_CATEGORY])?;
        self.insert_instance(project_id, id, cas)
    }

    /// Adds `count` instances with random ids to a project, as [`World::add_instance_in`]
    /// does, and returns their ids in creation order.
    pub(crate) fn add_instances_in(
        &self,
        project_id: &str,
        count: usize,
    ) -> Result<Vec<String>, SimError> {
        if !self.serves_project(project_id) {
            return Err(SimError::UnknownProject {
                project_id: project_id.to_owned(),
            });
        }
        let mut ids = Vec::with_capacity(count);
        for _ in 0..count {
            let id = random_instance_id();
            let cas = new_instance_cas(&id, &[DEFAULT_CATEGORY])?;
            self.insert_instance(project_id, &id, cas)?;
            ids.push(id);
        }
        Ok(ids)
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
}

/// What adding `id` to `project_id` means when `existing` has that id: no change in the same
/// project, a refusal in another.
fn existing_in(existing: &Instance, project_id: &str, id: &str) -> Result<bool, SimError> {
    if existing.project_id == project_id {
        Ok(false)
    } else {
        Err(SimError::OtherProject {
            id: id.to_owned(),
            project_id: existing.project_id.clone(),
        })
    }
}

/// Now as `YYYY-MM-DDTHH:MM:SS` (UTC), the API's timestamp shape for `created` and `updated`.
fn now_iso_seconds() -> String {
    let now = time::OffsetDateTime::now_utc();
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    now.format(&format).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::super::testing::world;
    use super::super::{ApiPlan, DownloadPlan};
    use super::*;

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
        assert!(matches!(w.api_plan("p", "x"), ApiPlan::UnknownInstance));
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
    fn nodes_default_to_loopback_and_can_be_replaced() {
        let w = world();
        w.add_instance("a").unwrap();
        assert_eq!(w.nodes("a").unwrap(), [Node::new("127.0.0.1", 8635)]);
        let two = [Node::new("10.0.0.1", 6379), Node::new("10.0.0.2", 6379)];
        w.set_nodes("a", &two).unwrap();
        assert_eq!(w.nodes("a").unwrap(), two);
        assert_eq!(w.listed_instances("p")[0].nodes, two);
        w.set_nodes("a", &[]).unwrap();
        assert!(w.nodes("a").unwrap().is_empty());
        assert!(matches!(
            w.set_nodes("x", &[]),
            Err(SimError::UnknownInstance { .. })
        ));
    }
}
