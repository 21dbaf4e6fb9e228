//! GaussDB NoSQL ListInstances as the simulator serves it: `GET /v3/{project_id}/instances` with
//! `offset`/`limit` paging over that project's instances (most recently created first,
//! `total_count` after filtering) and the `id`, `name` (a leading `*` is a fuzzy match),
//! `datastore_type`, `mode`, `vpc_id` and `subnet_id` filters, behind the gateway's
//! authentication and throttling.
//!
//! Owns the query rules, the JSON shape of each instance (notes section h) and how the
//! [`ListFault`]s bend the answer (offset ignored, a huge `total_count`, pages that never end);
//! it must not change the state other than counting requests. The fields the simulator does not
//! model (network, node ids, backups) are derived from the project and instance ids, so they
//! are stable.
//!
//! Nodes (`groups[0].nodes[]`) are the instance's [`Node`]s, in order, the first with role
//! `Primary` and the others `Secondary`. Each carries `port` (a string, like the instance's
//! own): SPEC section 11 asks for it there, while the real API documents `port` only on the
//! instance, so a client should read the node's and fall back to the instance's.

use hyper::{Response, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::api::authorize_project;
use crate::auth::GatewayRequest;
use crate::http::{self, SimBody};
use crate::model::{InstanceMeta, ListFault, Node};
use crate::state::{Counters, ListedInstance, World};

/// The largest (and default) page.
const MAX_LIMIT: usize = 100;

/// The instance filters and page of one request.
#[derive(Debug, Default, PartialEq, Eq)]
struct Query {
    offset: usize,
    limit: usize,
    id: Option<String>,
    name: Option<String>,
    datastore_type: Option<String>,
    mode: Option<String>,
    vpc_id: Option<String>,
    subnet_id: Option<String>,
}

/// Parses the query; `Err` names the parameter that is invalid.
fn parse_query(raw: &str) -> Result<Query, &'static str> {
    let mut q = Query {
        limit: MAX_LIMIT,
        ..Query::default()
    };
    for (key, value) in url::form_urlencoded::parse(raw.as_bytes()) {
        let value = value.into_owned();
        match key.as_ref() {
            "offset" => q.offset = value.parse().map_err(|_| "offset")?,
            "limit" => {
                q.limit = value
                    .parse()
                    .ok()
                    .filter(|l| (1..=MAX_LIMIT).contains(l))
                    .ok_or("limit")?;
            }
            "id" => q.id = Some(value),
            "name" => q.name = Some(value),
            "datastore_type" => q.datastore_type = Some(value),
            "mode" => q.mode = Some(value),
            "vpc_id" => q.vpc_id = Some(value),
            "subnet_id" => q.subnet_id = Some(value),
            // Unknown parameters are ignored, as by the real API.
            _ => {}
        }
    }
    Ok(q)
}

/// Exact match, or with a leading `*` a match anywhere (the API's "fuzzy" search).
fn text_matches(pattern: &str, value: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some(part) => value.contains(part),
        None => value == pattern,
    }
}

/// The deployment mode the API reports for a datastore type.
fn mode_of(datastore_type: &str) -> &'static str {
    match datastore_type {
        "mongodb" => "ReplicaSet",
        _ => "Cluster",
    }
}

/// The port the API reports for a datastore type.
fn port_of(datastore_type: &str) -> &'static str {
    match datastore_type {
        "redis" => "6379",
        _ => "8635",
    }
}

/// A stable UUID-shaped id derived from `parts`.
fn derived_uuid(parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    let h = hex::encode(hasher.finalize());
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The network of a project's instances (one per project), and its region.
struct Network {
    vpc_id: String,
    subnet_id: String,
    security_group_id: String,
    region: String,
}

fn network(project_id: &str, region: String) -> Network {
    Network {
        vpc_id: derived_uuid(&[project_id, "vpc"]),
        subnet_id: derived_uuid(&[project_id, "subnet"]),
        security_group_id: derived_uuid(&[project_id, "security-group"]),
        region,
    }
}

/// One instance as ListInstances describes it.
fn instance_json(net: &Network, inst: &ListedInstance) -> Value {
    let meta = &inst.meta;
    let az = format!("{}a", net.region);
    let node_hex = |n: usize| {
        derived_uuid(&[&inst.id, &n.to_string()])
            .replace('-', "")
            .chars()
            .take(32)
            .collect::<String>()
    };
    let nodes: Vec<Value> = (1..)
        .zip(&inst.nodes)
        .map(|(n, node): (usize, &Node)| {
            json!({
                "id": format!("{}no06", node_hex(n)),
                "name": format!("{}_node_{n}", meta.name),
                "status": meta.status,
                "role": if n == 1 { "Primary" } else { "Secondary" },
                "subnet_id": net.subnet_id,
                "private_ip": node.private_ip,
                "port": node.port.to_string(),
                "public_ip": "",
                "spec_code": format!("geminidb.{}.large.4", meta.datastore_type),
                "availability_zone": az,
                "support_reduce": false,
            })
        })
        .collect();
    json!({
        "id": inst.id,
        "name": meta.name,
        "status": meta.status,
        "port": port_of(&meta.datastore_type),
        "region": net.region,
        "datastore": {
            "type": meta.datastore_type,
            "version": meta.datastore_version,
            "patch_available": false,
            "whole_version": format!("{}.0.0", meta.datastore_version),
        },
        "mode": mode_of(&meta.datastore_type),
        "product_type": "Standard",
        "engine": "rocksDB",
        "created": inst.created,
        "updated": inst.created,
        "db_user_name": "rwuser",
        "vpc_id": net.vpc_id,
        "subnet_id": net.subnet_id,
        "security_group_id": net.security_group_id,
        "backup_strategy": { "start_time": "16:00-17:00", "keep_days": 7 },
        "pay_mode": "0",
        "maintenance_window": "02:00-06:00",
        "groups": [{
            "id": derived_uuid(&[&inst.id, "group"]).replace('-', ""),
            "status": meta.status,
            "volume": { "size": "100", "used": "0.5" },
            "nodes": nodes,
        }],
        "enterprise_project_id": "0",
        "dedicated_resource_id": "",
        "time_zone": "",
        "actions": [],
        "disk_encryption_id": "",
        "lb_ip_address": "",
        "lb_port": "",
        "availability_zone": az,
        "dr_instance_id": "",
        "ssl": if meta.ssl { "1" } else { "0" },
    })
}

/// `GET /v3/{project_id}/instances`.
pub(crate) fn list(
    world: &World,
    req: &GatewayRequest<'_>,
    project_id: &str,
    request_id: &str,
) -> Response<SimBody> {
    Counters::bump(&world.counters.list_requests);
    if let Some(denied) = authorize_project(world, req, project_id, request_id) {
        return denied;
    }
    let q = match parse_query(req.query) {
        Ok(q) => q,
        Err(param) => {
            return http::service_error(
                StatusCode::BAD_REQUEST,
                "DBS.200001",
                &format!("Invalid parameter: {param}."),
            );
        }
    };
    // A project the API does not serve (an IAM token's scope may name one) lists nothing.
    let region = world
        .served_project(project_id)
        .map_or_else(|| world.region.clone(), |p| p.name);
    let net = network(project_id, region);
    let matching: Vec<ListedInstance> = world
        .listed_instances(project_id)
        .into_iter()
        .filter(|i| q.id.as_deref().is_none_or(|p| text_matches(p, &i.id)))
        .filter(|i| {
            q.name
                .as_deref()
                .is_none_or(|p| text_matches(p, &i.meta.name))
        })
        .filter(|i| {
            q.datastore_type
                .as_deref()
                .is_none_or(|t| t == i.meta.datastore_type)
        })
        // The API ignores `mode` without `datastore_type`.
        .filter(|i| {
            q.datastore_type.is_none()
                || q.mode
                    .as_deref()
                    .is_none_or(|m| m == mode_of(&i.meta.datastore_type))
        })
        .filter(|_| q.vpc_id.as_deref().is_none_or(|v| v == net.vpc_id))
        .filter(|_| q.subnet_id.as_deref().is_none_or(|s| s == net.subnet_id))
        .collect();
    let faults = world.list_faults();
    let offset = if faults.contains(&ListFault::IgnoresOffset) {
        0
    } else {
        q.offset
    };
    let mut page: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(q.limit)
        .map(|i| instance_json(&net, i))
        .collect();
    if faults.contains(&ListFault::EndlessPages) {
        // Positions past the real instances are made-up ones, so every page is full.
        let first = offset.saturating_add(page.len());
        let missing = q.limit - page.len();
        page.extend((first..first.saturating_add(missing)).map(|n| instance_json(&net, &ghost(n))));
    }
    let total_count = if faults.contains(&ListFault::HugeTotal) {
        HUGE_TOTAL
    } else {
        matching.len() as u64
    };
    http::json(
        StatusCode::OK,
        &json!({ "instances": page, "total_count": total_count }),
    )
}

/// The `total_count` of [`ListFault::HugeTotal`].
const HUGE_TOTAL: u64 = 1_000_000_000_000;

/// The made-up instance at listing position `n` for [`ListFault::EndlessPages`]: no SSL, no
/// certificates (its download-link answer is 404, as for any unknown id).
fn ghost(n: usize) -> ListedInstance {
    ListedInstance {
        id: format!("ghost-{n}"),
        meta: InstanceMeta {
            name: format!("ghost-{n}"),
            ssl: false,
            ..InstanceMeta::numbered(n)
        },
        nodes: vec![Node::default()],
        created: "2020-01-01T00:00:00".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_defaults_bounds_and_filters() {
        let q = parse_query("").unwrap();
        assert_eq!((q.offset, q.limit), (0, 100));
        let q = parse_query("offset=30&limit=7&name=%2Aprod&datastore_type=redis&x=1").unwrap();
        assert_eq!((q.offset, q.limit), (30, 7));
        assert_eq!(q.name.as_deref(), Some("*prod"));
        assert_eq!(q.datastore_type.as_deref(), Some("redis"));
        assert_eq!(parse_query("limit=0"), Err("limit"));
        assert_eq!(parse_query("limit=101"), Err("limit"));
        assert_eq!(parse_query("limit=x"), Err("limit"));
        assert_eq!(parse_query("offset=-1"), Err("offset"));
    }

    #[test]
    fn leading_star_is_a_fuzzy_match() {
        assert!(text_matches("orders", "orders"));
        assert!(!text_matches("orders", "orders-2"));
        assert!(text_matches("*ders", "orders-2"));
        assert!(text_matches("*", "anything"));
        assert!(!text_matches("*x", "orders"));
    }

    #[test]
    fn derived_ids_are_stable_uuids() {
        let a = derived_uuid(&["p", "vpc"]);
        assert_eq!(a, derived_uuid(&["p", "vpc"]));
        assert_ne!(a, derived_uuid(&["p", "subnet"]));
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
    }
}
