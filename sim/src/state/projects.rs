//! The projects the simulated API serves (the simulator's own first, then those added, each
//! named after its region), and which instances are in each.
//!
//! Owns: adding projects (IAM lists them too), whether a path's project is served, and the
//! per-project lists of instance ids. Must not: create or change instances (`instances`) or
//! decide answers (`plans`).

use super::{SimError, World};
use crate::model::Project;
use crate::util::random_hex;

impl World {
    /// Adds a project for `region` with a fresh 32-hex id; IAM lists it and scopes tokens to it.
    pub(crate) fn add_project(&self, region: &str) -> Project {
        let project = Project {
            id: random_hex(16),
            name: region.to_owned(),
        };
        self.lock().projects.push(project.clone());
        self.creds.add_project(project.clone());
        project
    }

    /// The projects the API serves, the simulator's own first.
    pub(crate) fn served_projects(&self) -> Vec<Project> {
        self.lock().projects.clone()
    }

    /// The served project with this id.
    pub(crate) fn served_project(&self, project_id: &str) -> Option<Project> {
        self.lock()
            .projects
            .iter()
            .find(|p| p.id == project_id)
            .cloned()
    }

    /// Whether the API serves this project.
    pub(crate) fn serves_project(&self, project_id: &str) -> bool {
        self.lock().projects.iter().any(|p| p.id == project_id)
    }

    /// The ids of the simulator's own project's instances, in creation order.
    pub(crate) fn instance_ids(&self) -> Vec<String> {
        self.instance_ids_in(&self.project_id).unwrap_or_default()
    }

    /// The ids of a project's instances, in creation order.
    pub(crate) fn instance_ids_in(&self, project_id: &str) -> Result<Vec<String>, SimError> {
        let reg = self.lock();
        if !reg.projects.iter().any(|p| p.id == project_id) {
            return Err(SimError::UnknownProject {
                project_id: project_id.to_owned(),
            });
        }
        Ok(reg
            .order
            .iter()
            .filter(|id| {
                reg.instances
                    .get(*id)
                    .is_some_and(|i| i.project_id == project_id)
            })
            .cloned()
            .collect())
    }

    /// The project an instance is in.
    pub(crate) fn instance_project(&self, id: &str) -> Result<String, SimError> {
        self.lock()
            .instances
            .get(id)
            .map(|i| i.project_id.clone())
            .ok_or_else(|| SimError::UnknownInstance { id: id.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::world;
    use super::super::{ApiPlan, SimError};

    #[test]
    fn instances_belong_to_one_project_and_answer_only_there() {
        let w = world();
        let eu = w.add_project("eu-west-101");
        assert_eq!(eu.name, "eu-west-101");
        assert_eq!(eu.id.len(), 32);
        assert!(w.serves_project(&eu.id) && w.serves_project("p"));
        assert!(!w.serves_project("q"));
        assert_eq!(w.served_projects()[0].id, "p");
        assert!(w.creds.projects().contains(&eu));

        w.add_instance("a").unwrap();
        w.add_instance_in(&eu.id, "b").unwrap();
        assert_eq!(w.instance_ids(), ["a"]);
        assert_eq!(w.instance_ids_in(&eu.id).unwrap(), ["b"]);
        assert_eq!(w.instance_project("b").unwrap(), eu.id);
        assert!(matches!(
            w.instance_ids_in("q"),
            Err(SimError::UnknownProject { .. })
        ));
        assert!(matches!(
            w.add_instance_in("q", "c"),
            Err(SimError::UnknownProject { .. })
        ));
        // Ids are unique across projects; the same project again is no change.
        assert!(matches!(
            w.add_instance_in(&eu.id, "a"),
            Err(SimError::OtherProject { .. })
        ));
        assert!(!w.add_instance_in(&eu.id, "b").unwrap());

        assert!(matches!(w.api_plan("p", "b"), ApiPlan::UnknownInstance));
        assert!(matches!(w.api_plan(&eu.id, "b"), ApiPlan::Links { .. }));
        let listed: Vec<_> = w
            .listed_instances(&eu.id)
            .into_iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(listed, ["b"]);

        let more = w.add_instances_in(&eu.id, 2).unwrap();
        assert_eq!(more.len(), 2);
        assert_eq!(w.instance_ids_in(&eu.id).unwrap()[1..], more[..]);
    }
}
