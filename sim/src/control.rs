//! The simulator's control API under `/_sim/` (no authentication, no throttling: loopback test
//! infrastructure): read the state, add projects and instances (in the simulator's own project
//! or another), remove instances, describe them (ListInstances' fields and nodes), rotate CAs
//! (optionally under a new common name), set and clear faults (per instance, and ListInstances'
//! own), replace IAM's projects, add users, set and clear the gateway's rate limit.
//!
//! Owns the translation of control requests into state changes and their JSON answers; it must
//! not answer cloud API or OBS requests. Key generation happens here (add, rotate, faults), never
//! in the cloud-facing handlers.

use hyper::{Method, Response, StatusCode};
use serde::{Deserialize, Serialize};

use crate::http::{self, SimBody};
use crate::model::{Fault, InstanceMeta, ListFault, Node, Project, RateLimit, Stats};
use crate::state::{DEFAULT_CATEGORY, InstanceView, SimError, World};

/// The most instances one `POST /_sim/projects/{project_id}/instances?count=N` adds.
const MAX_COUNT: usize = 10_000;

#[derive(Serialize)]
struct StateDoc<'a> {
    endpoint: &'a str,
    project_id: &'a str,
    region: &'a str,
    projects: Vec<Project>,
    served_projects: Vec<Project>,
    rate_limit: Option<RateLimit>,
    instances: Vec<InstanceView>,
    list_faults: Vec<ListFault>,
    stats: Stats,
}

/// The body of `POST /_sim/projects`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewProject {
    region: String,
}

/// The body of `POST /_sim/ak-sk-users`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAkSkUser {
    ak: String,
    sk: String,
}

/// The body of `POST /_sim/tokens`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    token: String,
}

/// The answer of `POST /_sim/projects/{project_id}/instances?count=N`.
#[derive(Serialize)]
struct AddedIds {
    ids: Vec<String>,
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
        SimError::UnknownInstance { .. }
        | SimError::UnknownCategory { .. }
        | SimError::UnknownProject { .. } => StatusCode::NOT_FOUND,
        SimError::OtherProject { .. } => StatusCode::CONFLICT,
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

/// Parses a JSON body; `Err` is the 400 text, naming `what`.
fn body_of<'a, T: Deserialize<'a>>(body: &'a [u8], what: &str) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("{what} body: {e}"))
}

/// Adds instance `id` to a project and answers its view: 201, or 200 if it was there already.
fn add_instance(world: &World, project_id: &str, id: &str) -> Response<SimBody> {
    match world.add_instance_in(project_id, id) {
        Ok(created) => {
            let status = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            match world.instances_view().into_iter().find(|i| i.id == id) {
                Some(view) => http::json(status, &view),
                // Removed again between the two calls.
                None => not_found_id(id),
            }
        }
        Err(e) => sim_error(e),
    }
}

/// `POST /_sim/projects/{project_id}/instances?count=N`.
fn add_instances(world: &World, project_id: &str, query: Option<&str>) -> Response<SimBody> {
    let count = match query_param(query, "count").map(|c| c.parse::<usize>()) {
        Some(Ok(n)) if (1..=MAX_COUNT).contains(&n) => n,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("count must be 1 to {MAX_COUNT}"),
            );
        }
    };
    match world.add_instances_in(project_id, count) {
        Ok(ids) => http::json(StatusCode::CREATED, &AddedIds { ids }),
        Err(e) => sim_error(e),
    }
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
                served_projects: world.served_projects(),
                rate_limit: world.throttle.limit(),
                instances: world.instances_view(),
                list_faults: world.list_faults(),
                stats: world.stats(),
            },
        ),
        (&Method::POST, ["instances", id]) => add_instance(world, &world.project_id, id),
        (&Method::POST, ["projects", project_id, "instances", id]) => {
            add_instance(world, project_id, id)
        }
        (&Method::POST, ["projects", project_id, "instances"]) => {
            add_instances(world, project_id, query)
        }
        (&Method::POST, ["projects"]) => match body_of::<NewProject>(body, "project") {
            Ok(NewProject { region }) if region.is_empty() => {
                error(StatusCode::BAD_REQUEST, "project body: region is empty")
            }
            Ok(NewProject { region }) => {
                http::json(StatusCode::CREATED, &world.add_project(&region))
            }
            Err(e) => error(StatusCode::BAD_REQUEST, e),
        },
        (&Method::PUT, ["instances", id, "nodes"]) => match body_of::<Vec<Node>>(body, "nodes") {
            Ok(nodes) => match world.set_nodes(id, &nodes) {
                Ok(()) => no_content(),
                Err(e) => sim_error(e),
            },
            Err(e) => error(StatusCode::BAD_REQUEST, e),
        },
        (&Method::PUT, ["rate-limit"]) => match body_of::<RateLimit>(body, "rate limit") {
            Ok(limit) => {
                world.throttle.set_limit(Some(limit));
                no_content()
            }
            Err(e) => error(StatusCode::BAD_REQUEST, e),
        },
        (&Method::DELETE, ["rate-limit"]) => {
            world.throttle.set_limit(None);
            no_content()
        }
        (&Method::POST, ["ak-sk-users"]) => match body_of::<NewAkSkUser>(body, "AK/SK user") {
            Ok(NewAkSkUser { ak, sk }) if ak.is_empty() || sk.is_empty() => error(
                StatusCode::BAD_REQUEST,
                "AK/SK user body: ak or sk is empty",
            ),
            Ok(NewAkSkUser { ak, sk }) => {
                world.creds.add_ak_sk_user(&ak, &sk);
                no_content()
            }
            Err(e) => error(StatusCode::BAD_REQUEST, e),
        },
        (&Method::POST, ["tokens"]) => match body_of::<NewToken>(body, "token") {
            Ok(NewToken { token }) if token.is_empty() => {
                error(StatusCode::BAD_REQUEST, "token body: token is empty")
            }
            Ok(NewToken { token }) => {
                world.creds.add_token(&token);
                no_content()
            }
            Err(e) => error(StatusCode::BAD_REQUEST, e),
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
