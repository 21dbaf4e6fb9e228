//! The simulated cloud's state: the projects the API serves, instances with their project, CAs
//! per category, descriptions, nodes and active faults, the accepted token, the identities
//! (`creds`), the gateway's buckets (`throttle`) and the request counters, shared by the Rust
//! API, the control API and the request handlers.
//!
//! Handlers ask it for a *plan* (what to answer) and do the I/O themselves; a plan is computed
//! under one short lock and never generates keys. Key generation happens only in the calls that
//! change instances (add, rotate, categories, faults). This module must not touch HTTP.
//!
//! This file owns [`World`] itself (its lock, the token, the counters' snapshot) and the
//! refusals ([`SimError`]); the rest is split by concern, each a set of `World` methods:
//! `projects` (the projects the API serves and which instances are in each), `instances`
//! (adding, removing, categories, nodes, rotation, issuing leaves), `listing` (what
//! ListInstances and the control API's state document show), `faults` (setting faults and
//! the bodies they serve) and `plans` (what a request should be answered, faults counted
//! down). `counters` holds the request counters, updated without the lock.

mod counters;
mod faults;
mod instances;
mod listing;
mod plans;
mod projects;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, RwLock};

use crate::creds::Creds;
use crate::link::LinkSigner;
use crate::model::{ListFault, Project, RateLimit, Stats};
use crate::pki::PkiError;
use crate::throttle::Throttle;
use crate::util;

pub(crate) use counters::Counters;
use instances::Instance;
pub(crate) use instances::{CategoryCas, DEFAULT_CATEGORY, new_instance_cas, random_instance_id};
pub(crate) use listing::{InstanceView, ListedInstance};
pub(crate) use plans::{ApiPlan, DownloadPlan};

/// A change to the simulated cloud was refused.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// No instance has this id.
    #[error("instance {id} does not exist")]
    UnknownInstance {
        /// The id asked for.
        id: String,
    },
    /// No project the API serves has this id.
    #[error("project {project_id} does not exist")]
    UnknownProject {
        /// The project id asked for.
        project_id: String,
    },
    /// The instance id is taken by an instance of another project (ids are unique in one
    /// simulator).
    #[error("instance {id} exists in another project, {project_id}")]
    OtherProject {
        /// The instance.
        id: String,
        /// The project it is in.
        project_id: String,
    },
    /// The instance has no CA for this category.
    #[error("instance {id} has no category {category}")]
    UnknownCategory {
        /// The instance.
        id: String,
        /// The category asked for.
        category: String,
    },
    /// An instance id outside `[A-Za-z0-9-]{1,64}` (ids go into URL paths).
    #[error("instance id {id:?} is not 1 to 64 characters of A-Z, a-z, 0-9 and '-'")]
    InvalidId {
        /// The id given.
        id: String,
    },
    /// A category outside `[A-Za-z0-9_-]{1,64}` (categories go into link paths).
    #[error("category {category:?} is not 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'")]
    InvalidCategory {
        /// The category given.
        category: String,
    },
    /// A certificate could not be generated.
    #[error("instance {id}")]
    Pki {
        /// The instance.
        id: String,
        /// Why.
        #[source]
        source: PkiError,
    },
}

#[derive(Default)]
struct Registry {
    /// The projects the API serves, the simulator's own first.
    projects: Vec<Project>,
    /// Instance ids in creation order (of every project).
    order: Vec<String>,
    instances: HashMap<String, Instance>,
    /// Instances created so far (names `inst-N` count on from it, also past removals).
    created: usize,
    /// ListInstances' faults in force, in the order set, each once.
    list_faults: Vec<ListFault>,
}

/// The shared state of one simulator.
pub(crate) struct World {
    /// `https://HOST:PORT`, the base of the API and of download links.
    pub endpoint: String,
    /// The port, for links on other host names.
    pub port: u16,
    /// The simulator's own (first) project.
    pub project_id: String,
    /// The region this simulator plays (the first project's name, e.g. `cn-north-4`).
    pub region: String,
    token: RwLock<String>,
    pub creds: Creds,
    pub links: LinkSigner,
    pub counters: Counters,
    pub throttle: Throttle,
    registry: Mutex<Registry>,
}

impl World {
    pub(crate) fn new(
        endpoint: String,
        port: u16,
        project_id: String,
        region: String,
        token: String,
        creds: Creds,
        rate_limit: Option<RateLimit>,
    ) -> Self {
        let registry = Registry {
            projects: vec![Project {
                id: project_id.clone(),
                name: region.clone(),
            }],
            ..Registry::default()
        };
        Self {
            endpoint,
            port,
            project_id,
            region,
            token: RwLock::new(token),
            creds,
            links: LinkSigner::new(),
            counters: Counters::default(),
            throttle: Throttle::new(rate_limit),
            registry: Mutex::new(registry),
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
}

/// The simulator the unit tests of the state work on.
#[cfg(test)]
mod testing {
    use super::*;

    pub(super) fn world() -> World {
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
            None,
        )
    }
}
