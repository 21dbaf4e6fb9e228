//! The slice of IAM the simulator serves, on the same TLS listener as the API (tests point
//! `iam_endpoint` at the simulator's endpoint):
//! - `POST /v3/auth/tokens` with a password identity scoped to a project (by id or name):
//!   201, the token in `X-Subject-Token`, the token document in the body (notes section f);
//!   Keystone-shaped error bodies (`{"error": {"code", "title", "message"}}`) otherwise;
//! - `GET /v3/projects[?name=REGION]`, authenticated like any gateway request (the SDK signs it
//!   with AK/SK to find the project id of a region).
//!
//! Both are throttled per user like the API (`throttle`), after authentication: a password
//! request counts against its IAM user once the password is right (a wrong one is answered 401
//! and costs no one a token), a projects lookup against the caller.
//!
//! Owns those answers; it must not decide who is who (that is `creds`) nor check signatures.

use hyper::header::HeaderValue;
use hyper::{Response, StatusCode};
use serde_json::{Value, json};

use crate::api;
use crate::auth::{self, GatewayRequest, iso_micros};
use crate::creds::{Issued, ProjectScope, TokenRefusal};
use crate::http::{self, SimBody};
use crate::state::{Counters, World};
use crate::throttle::UserKey;
use crate::util::random_hex;

/// The header IAM returns a new token in.
const SUBJECT_TOKEN_HEADER: &str = "x-subject-token";

/// A Keystone-style IAM error, which the SDK reads through its nested `code`/`message` search.
fn keystone_error(status: StatusCode, message: &str) -> Response<SimBody> {
    http::json(
        status,
        &json!({
            "error": {
                "code": status.as_u16(),
                "title": status.canonical_reason().unwrap_or(""),
                "message": message,
            }
        }),
    )
}

/// The identity and scope of a password token request.
struct PasswordRequest<'a> {
    user: &'a str,
    domain: &'a str,
    password: &'a str,
    scope: ProjectScope<'a>,
}

/// Reads a token request body; `Err` is the reason for a 400.
fn parse_password_request<'a>(body: &'a Value) -> Result<PasswordRequest<'a>, &'static str> {
    let auth = body
        .get("auth")
        .ok_or("Expecting to find auth in request body.")?;
    let identity = auth
        .get("identity")
        .ok_or("Expecting to find identity in auth.")?;
    let methods = identity
        .get("methods")
        .and_then(Value::as_array)
        .ok_or("Expecting to find methods in identity.")?;
    if !methods.iter().any(|m| m == "password") {
        return Err("Only the password method is supported here.");
    }
    let user = identity
        .pointer("/password/user")
        .ok_or("Expecting to find password.user in identity.")?;
    fn text<'v>(v: Option<&'v Value>, what: &'static str) -> Result<&'v str, &'static str> {
        v.and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(what)
    }
    let name = text(user.get("name"), "Expecting to find user.name.")?;
    let password = text(user.get("password"), "Expecting to find user.password.")?;
    let domain = text(
        user.pointer("/domain/name"),
        "Expecting to find user.domain.name.",
    )?;
    let project = auth
        .pointer("/scope/project")
        .ok_or("Expecting to find a project in scope.")?;
    let scope = if let Some(id) = project.get("id").and_then(Value::as_str) {
        ProjectScope::Id(id)
    } else {
        ProjectScope::Name(text(
            project.get("name"),
            "Expecting scope.project.id or name.",
        )?)
    };
    Ok(PasswordRequest {
        user: name,
        domain,
        password,
        scope,
    })
}

/// The catalog of a token: the simulator's endpoint for IAM and GaussDB NoSQL.
fn catalog(world: &World) -> Value {
    let entry = |name: &str, kind: &str| {
        json!({
            "endpoints": [{
                "id": random_hex(16),
                "interface": "public",
                "region": "*",
                "region_id": "*",
                "url": world.endpoint,
            }],
            "id": random_hex(16),
            "name": name,
            "type": kind,
        })
    };
    json!([entry("iam", "identity"), entry("gaussdb-nosql", "nosql")])
}

fn token_document(world: &World, issued: &Issued, with_catalog: bool) -> Value {
    let domain = json!({ "id": issued.domain_id, "name": issued.domain_name });
    let mut token = json!({
        "expires_at": iso_micros(issued.expires_at),
        "issued_at": iso_micros(issued.issued_at),
        "methods": ["password"],
        "project": {
            "id": issued.project.id,
            "name": issued.project.name,
            "domain": domain,
        },
        "roles": [{ "id": "0", "name": "op_fine_grained" }],
        "user": {
            "id": issued.user_id,
            "name": issued.user_name,
            "domain": domain,
            "password_expires_at": "",
        },
    });
    if with_catalog {
        token["catalog"] = catalog(world);
    }
    json!({ "token": token })
}

/// `POST /v3/auth/tokens`.
pub(crate) fn create_token(
    world: &World,
    query: &str,
    body: &[u8],
    request_id: &str,
) -> Response<SimBody> {
    let refused = |status, message: &str| {
        Counters::bump(&world.counters.iam_token_failures);
        keystone_error(status, message)
    };
    let Ok(doc) = serde_json::from_slice::<Value>(body) else {
        return refused(
            StatusCode::BAD_REQUEST,
            "The request body is not valid JSON.",
        );
    };
    let request = match parse_password_request(&doc) {
        Ok(r) => r,
        Err(reason) => return refused(StatusCode::BAD_REQUEST, reason),
    };
    // Only a right password makes the request its user's (and costs that user a token).
    if let Some(user_id) = world
        .creds
        .password_user(request.user, request.domain, request.password)
        && let Some(throttled) = api::throttle(world, &UserKey::Iam(user_id), request_id)
    {
        return throttled;
    }
    let issued = match world.creds.issue_token(
        request.user,
        request.domain,
        request.password,
        request.scope,
    ) {
        Ok(issued) => issued,
        Err(TokenRefusal::BadPassword) => {
            return refused(
                StatusCode::UNAUTHORIZED,
                "The username or password is wrong.",
            );
        }
        Err(TokenRefusal::UnknownProject) => {
            return refused(
                StatusCode::BAD_REQUEST,
                "The project in the scope is not found.",
            );
        }
    };
    Counters::bump(&world.counters.iam_tokens_issued);
    // Any non-empty `nocatalog` leaves the catalog out.
    let nocatalog = url::form_urlencoded::parse(query.as_bytes())
        .any(|(k, v)| k == "nocatalog" && !v.is_empty());
    let mut resp = http::json(
        StatusCode::CREATED,
        &token_document(world, &issued, !nocatalog),
    );
    if let Ok(v) = HeaderValue::from_str(&issued.token) {
        resp.headers_mut().insert(SUBJECT_TOKEN_HEADER, v);
    }
    resp
}

/// `GET /v3/projects`, optionally filtered by `name`.
pub(crate) fn list_projects(
    world: &World,
    req: &GatewayRequest<'_>,
    request_id: &str,
) -> Response<SimBody> {
    Counters::bump(&world.counters.project_lookups);
    let caller = match auth::authenticate(world, req) {
        Ok(caller) => caller,
        Err(denial) => return denial.respond(world, request_id),
    };
    if let Some(throttled) = api::throttle(world, caller.user(), request_id) {
        return throttled;
    }
    let name = url::form_urlencoded::parse(req.query.as_bytes())
        .find(|(k, _)| k == "name")
        .map(|(_, v)| v.into_owned());
    let domain_id = derived_domain_id(world);
    let projects: Vec<Value> = world
        .creds
        .projects()
        .into_iter()
        .filter(|p| name.as_deref().is_none_or(|n| n == p.name))
        .map(|p| {
            json!({
                "id": p.id,
                "name": p.name,
                "domain_id": domain_id,
                "parent_id": domain_id,
                "description": "",
                "enabled": true,
                "is_domain": false,
                "links": { "self": format!("{}/v3/projects/{}", world.endpoint, p.id) },
            })
        })
        .collect();
    http::json(
        StatusCode::OK,
        &json!({
            "projects": projects,
            "links": {
                "self": format!("{}/v3/projects", world.endpoint),
                "previous": null,
                "next": null,
            },
        }),
    )
}

/// The account (domain) id projects report: stable for one simulator.
fn derived_domain_id(world: &World) -> String {
    use sha2::{Digest as _, Sha256};
    hex::encode(&Sha256::digest(format!("{}/domain", world.project_id))[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_request_by_name_and_by_id() {
        let doc = json!({"auth": {"identity": {"methods": ["password"],
            "password": {"user": {"domain": {"name": "acme"}, "name": "alice", "password": "pw"}}},
            "scope": {"project": {"name": "cn-north-4"}}}});
        let r = parse_password_request(&doc).unwrap();
        assert_eq!((r.user, r.domain, r.password), ("alice", "acme", "pw"));
        assert!(matches!(r.scope, ProjectScope::Name("cn-north-4")));
        let doc = json!({"auth": {"identity": {"methods": ["password"],
            "password": {"user": {"domain": {"name": "acme"}, "name": "alice", "password": "pw"}}},
            "scope": {"project": {"id": "p1"}}}});
        assert!(matches!(
            parse_password_request(&doc).unwrap().scope,
            ProjectScope::Id("p1")
        ));
    }

    #[test]
    fn incomplete_password_requests_are_refused() {
        for doc in [
            json!({}),
            json!({"auth": {"identity": {"methods": ["token"]}}}),
            json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "a", "password": "p"}}},
                "scope": {"project": {"name": "x"}}}}),
            json!({"auth": {"identity": {"methods": ["password"],
                "password": {"user": {"domain": {"name": "d"}, "name": "a", "password": "p"}}}}}),
        ] {
            assert!(parse_password_request(&doc).is_err(), "{doc}");
        }
    }
}
