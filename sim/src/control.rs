//! The simulator's control API under `/_sim/` (no authentication: loopback test infrastructure):
//! read the state, add and remove instances, describe them (ListInstances' fields), rotate CAs
//! (optionally under a new common name), set and clear faults (per instance, and ListInstances'
//! own), replace IAM's projects.
//!
//! Owns the translation of control requests into state changes and their JSON answers; it must
//! not answer cloud API or OBS requests. Key generation happens here (add, rotate, faults), never
//! in the cloud-facing handlers.

use hyper::{Method, Response, StatusCode};
use serde::Serialize;

use crate::http::{self, SimBody};
use crate::model::{Fault, InstanceMeta, ListFault, Project, Stats};
use crate::state::{DEFAULT_CATEGORY, InstanceView, SimError, World};

#[derive(Serialize)]
struct StateDoc<'a> {
    endpoint: &'a str,
    project_id: &'a str,
    region: &'a str,
    projects: Vec<Project>,
    instances: Vec<InstanceView>,
    list_faults: Vec<ListFault>,
    stats: Stats,
}

#[derive(Serialize)]
struct ControlError {
    error: String,
}

fn error(status: StatusCode, err: impl std::fmt::Display) -> Response<SimBody> {
    http::json(
        status,
        &ControlError {
            error: err.to_string(),
        },
    )
}

fn sim_error(err: SimError) -> Response<SimBody> {
    let status = match &err {
        SimError::UnknownInstance { .. } | SimError::UnknownCategory { .. } => {
            StatusCode::NOT_FOUND
        }
        SimError::InvalidId { .. } | SimError::InvalidCategory { .. } => StatusCode::BAD_REQUEST,
        SimError::Pki { .. } => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, err)
}

fn no_content() -> Response<SimBody> {
    let mut resp = Response::new(SimBody::empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp
}

fn not_found_id(id: &str) -> Response<SimBody> {
    sim_error(SimError::UnknownInstance { id: id.to_owned() })
}

/// The query parameter `name`, decoded.
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The `category` query parameter, `international` when absent.
fn category_param(query: Option<&str>) -> String {
    query_param(query, "category").unwrap_or_else(|| DEFAULT_CATEGORY.to_owned())
}

/// Handles one request below `/_sim/`; `segments` are the path segments after `_sim`.
pub(crate) fn handle(
    world: &World,
    method: &Method,
    segments: &[&str],
    query: Option<&str>,
    body: &[u8],
) -> Response<SimBody> {
    match (method, segments) {
        (&Method::GET, ["state"]) => http::json(
            StatusCode::OK,
            &StateDoc {
                endpoint: &world.endpoint,
                project_id: &world.project_id,
                region: &world.region,
                projects: world.creds.projects(),
                instances: world.instances_view(),
                list_faults: world.list_faults(),
                stats: world.stats(),
            },
        ),
        (&Method::POST, ["instances", id]) => match world.add_instance(id) {
            Ok(created) => {
                let status = if created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                };
                match world.instances_view().into_iter().find(|i| i.id == *id) {
                    Some(view) => http::json(status, &view),
                    // Removed again between the two calls.
                    None => not_found_id(id),
                }
            }
            Err(e) => sim_error(e),
        },
        (&Method::DELETE, ["instances", id]) => {
            if world.remove_instance(id) {
                no_content()
            } else {
                not_found_id(id)
            }
        }
        (&Method::POST, ["instances", id, "rotate"]) => {
            let common_name = query_param(query, "common_name");
            match world.rotate(id, &category_param(query), common_name.as_deref(), None) {
                Ok((_, view)) => http::json(StatusCode::OK, &view),
                Err(e) => sim_error(e),
            }
        }
        (&Method::PUT, ["instances", id, "fault"]) => match serde_json::from_slice::<Fault>(body) {
            Ok(fault) => match world.set_fault(id, fault) {
                Ok(()) => no_content(),
                Err(e) => sim_error(e),
            },
            Err(e) => error(StatusCode::BAD_REQUEST, format!("fault body: {e}")),
        },
        (&Method::PUT, ["list-faults"]) => match serde_json::from_slice::<Vec<ListFault>>(body) {
            Ok(faults) => {
                world.set_list_faults(&faults);
                no_content()
            }
            Err(e) => error(StatusCode::BAD_REQUEST, format!("list faults body: {e}")),
        },
        (&Method::DELETE, ["list-faults"]) => {
            world.set_list_faults(&[]);
            no_content()
        }
        (&Method::PUT, ["projects"]) => match serde_json::from_slice::<Vec<Project>>(body) {
            Ok(projects) => {
                world.creds.set_projects(projects);
                no_content()
            }
            Err(e) => error(StatusCode::BAD_REQUEST, format!("projects body: {e}")),
        },
        (&Method::PUT, ["instances", id, "meta"]) => {
            match serde_json::from_slice::<InstanceMeta>(body) {
                Ok(meta) => match world.set_meta(id, meta) {
                    Ok(()) => no_content(),
                    Err(e) => sim_error(e),
                },
                Err(e) => error(StatusCode::BAD_REQUEST, format!("meta body: {e}")),
            }
        }
        (&Method::DELETE, ["instances", id, "fault"]) => {
            if world.clear_fault(id) {
                no_content()
            } else {
                not_found_id(id)
            }
        }
        _ => error(StatusCode::NOT_FOUND, "no such control endpoint"),
    }
}
