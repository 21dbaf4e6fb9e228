//! The [`Simulator`]'s Rust API for what is served: instances (per project), their
//! descriptions, nodes, categories and CAs, and faults.
//!
//! Owns only the translation of these calls into the world's methods, panicking with the
//! refusal's text on a test set-up mistake; it must not hold state of its own.

use crate::{CaInfo, Fault, InstanceMeta, ListFault, Node, Simulator, error_chain};

impl Simulator {
    /// The ids of the instances of [`Simulator::project_id`], in creation order.
    pub fn instance_ids(&self) -> Vec<String> {
        self.world().instance_ids()
    }

    /// The ids of a project's instances, in creation order. Panics if the API does not serve
    /// the project.
    pub fn instance_ids_in(&self, project_id: &str) -> Vec<String> {
        match self.world().instance_ids_in(project_id) {
            Ok(ids) => ids,
            Err(e) => panic!("certsync-sim: instance_ids_in: {}", error_chain(&e)),
        }
    }

    /// The project an instance is in. Panics if it does not exist.
    pub fn instance_project(&self, id: &str) -> String {
        match self.world().instance_project(id) {
            Ok(project_id) => project_id,
            Err(e) => panic!("certsync-sim: instance_project: {}", error_chain(&e)),
        }
    }

    /// Adds an instance to [`Simulator::project_id`] with one category, `international`, and a
    /// fresh CA (no change if it exists).
    ///
    /// Panics if `id` is not `[A-Za-z0-9-]{1,64}` or is an instance of another project.
    pub fn add_instance(&self, id: &str) {
        if let Err(e) = self.world().add_instance(id) {
            panic!("certsync-sim: add_instance: {}", error_chain(&e));
        }
    }

    /// Adds an instance to a project (see [`Simulator::add_project`]) as
    /// [`Simulator::add_instance`] does; the API answers for it only under that project's path.
    ///
    /// Panics if the API does not serve the project, if `id` is not `[A-Za-z0-9-]{1,64}`, or if
    /// it is an instance of another project (ids are unique in one simulator).
    pub fn add_instance_in(&self, project_id: &str, id: &str) {
        if let Err(e) = self.world().add_instance_in(project_id, id) {
            panic!("certsync-sim: add_instance_in: {}", error_chain(&e));
        }
    }

    /// Adds `n` instances with random ids (shaped like real ones, as at start) to a project and
    /// returns their ids in creation order. Each gets a fresh CA: a few milliseconds apiece, on
    /// the calling thread. Panics if the API does not serve the project.
    pub fn add_instances_in(&self, project_id: &str, n: usize) -> Vec<String> {
        match self.world().add_instances_in(project_id, n) {
            Ok(ids) => ids,
            Err(e) => panic!("certsync-sim: add_instances_in: {}", error_chain(&e)),
        }
    }

    /// The nodes ListInstances lists for an instance (a new one has one,
    /// [`Node::default`]: `127.0.0.1` port 8635). Panics if it does not exist.
    pub fn nodes(&self, id: &str) -> Vec<Node> {
        match self.world().nodes(id) {
            Ok(nodes) => nodes,
            Err(e) => panic!("certsync-sim: nodes: {}", error_chain(&e)),
        }
    }

    /// Replaces the nodes ListInstances lists for an instance, in this order (the first is the
    /// `Primary`); an empty slice lists none. Panics if it does not exist.
    pub fn set_nodes(&self, id: &str, nodes: &[Node]) {
        if let Err(e) = self.world().set_nodes(id, nodes) {
            panic!("certsync-sim: set_nodes: {}", error_chain(&e));
        }
    }

    /// What ListInstances says about an instance. Panics if it does not exist.
    pub fn instance_meta(&self, id: &str) -> InstanceMeta {
        match self.world().meta(id) {
            Ok(meta) => meta,
            Err(e) => panic!("certsync-sim: instance_meta: {}", error_chain(&e)),
        }
    }

    /// Replaces what ListInstances says about an instance (name, datastore, status, SSL).
    /// Panics if it does not exist.
    pub fn set_instance_meta(&self, id: &str, meta: InstanceMeta) {
        if let Err(e) = self.world().set_meta(id, meta) {
            panic!("certsync-sim: set_instance_meta: {}", error_chain(&e));
        }
    }

    /// Removes an instance: the API answers 404 `DBS.200002` for it and its links 404 `NoSuchKey`.
    pub fn remove_instance(&self, id: &str) {
        self.world().remove_instance(id);
    }

    /// Sets the categories of an instance, in this order; each category has its own CA, created
    /// when the category is new. Panics if the instance does not exist.
    pub fn set_categories(&self, id: &str, categories: &[&str]) {
        if let Err(e) = self.world().set_categories(id, categories) {
            panic!("certsync-sim: set_categories: {}", error_chain(&e));
        }
    }

    /// Replaces a CA with a new key and serial under the same subject DN, and returns it.
    /// Panics if the instance or category does not exist.
    pub fn rotate(&self, id: &str, category: &str) -> CaInfo {
        match self.world().rotate(id, category, None, None) {
            Ok((info, _)) => (*info).clone(),
            Err(e) => panic!("certsync-sim: rotate: {}", error_chain(&e)),
        }
    }

    /// Replaces a CA with a new key and serial under the subject `CN={common_name},
    /// O=Huawei Cloud Simulator` (later rotations keep that name), and returns it. The name is
    /// used as given, control characters included (a newline, ESC), for tests of how outside
    /// text is printed. Panics if the instance or category does not exist.
    pub fn rotate_named(&self, id: &str, category: &str, common_name: &str) -> CaInfo {
        match self.world().rotate(id, category, Some(common_name), None) {
            Ok((info, _)) => (*info).clone(),
            Err(e) => panic!("certsync-sim: rotate_named: {}", error_chain(&e)),
        }
    }

    /// Rotates the CA of an instance's category to a new one valid until `not_after` (up to
    /// `9999-12-31T23:59:59Z`, RFC 5280's "no well-defined expiration"), and returns it.
    /// Panics if the instance or category does not exist.
    pub fn rotate_until(
        &self,
        id: &str,
        category: &str,
        not_after: time::OffsetDateTime,
    ) -> CaInfo {
        match self.world().rotate(id, category, None, Some(not_after)) {
            Ok((info, _)) => (*info).clone(),
            Err(e) => panic!("certsync-sim: rotate_until: {}", error_chain(&e)),
        }
    }

    /// The current CA of an instance's category. Panics if it does not exist.
    pub fn ca(&self, id: &str, category: &str) -> CaInfo {
        match self.world().ca(id, category) {
            Ok(info) => (*info).clone(),
            Err(e) => panic!("certsync-sim: ca: {}", error_chain(&e)),
        }
    }

    /// A TLS server certificate for `sans` (IP addresses or DNS names) signed by the current CA of
    /// an instance's category, as (certificate PEM, PKCS#8 key PEM). Panics if it does not exist.
    pub fn issue_server_cert(&self, id: &str, category: &str, sans: &[&str]) -> (String, String) {
        match self.world().issue_server_cert(id, category, sans) {
            Ok(leaf) => (leaf.cert_pem, leaf.key_pem),
            Err(e) => panic!("certsync-sim: issue_server_cert: {}", error_chain(&e)),
        }
    }

    /// Sets the fault of an instance, replacing any. Panics if the instance does not exist.
    pub fn set_fault(&self, id: &str, fault: Fault) {
        if let Err(e) = self.world().set_fault(id, fault) {
            panic!("certsync-sim: set_fault: {}", error_chain(&e));
        }
    }

    /// Clears the fault of an instance (no-op if it has none or does not exist).
    pub fn clear_fault(&self, id: &str) {
        self.world().clear_fault(id);
    }

    /// Replaces ListInstances' faults (for every project; an empty slice clears them).
    pub fn set_list_faults(&self, faults: &[ListFault]) {
        self.world().set_list_faults(faults);
    }

    /// ListInstances' faults in force.
    pub fn list_faults(&self) -> Vec<ListFault> {
        self.world().list_faults()
    }
}
