//! IAM: the `password` method's token, and reading IAM's answers.
//!
//! Owns: `POST {iam}/v3/auth/tokens` with a password identity scoped to the project (by id when
//! configured, else by the region's name, as the SDK's examples do), the token from
//! `X-Subject-Token` and `expires_at` from the body, renewal [`RENEW_BEFORE`] expiry and after
//! a 401, and parsing the answer of `GET /v3/projects?name=` for the project lookup. The
//! password is read from `password_file` only when a token is needed, and never shown.

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::{AuthError, Credentials, Generation, Project, RedactedUrl, Secret, SecretFile};
use crate::config::Password;

/// A token is renewed when less than this is left of it (SPEC 4).
pub(super) const RENEW_BEFORE: Duration = Duration::from_secs(3600);

const STEP_TOKEN: &str = "issue a token (password identity)";

/// An IAM token and what came with it.
#[derive(Clone, Debug)]
pub(super) struct IamToken {
    /// `X-Subject-Token`.
    pub token: Secret,
    /// `token.expires_at`.
    pub expires_at: SystemTime,
    /// `token.project.id`: the project the token is scoped to.
    pub project_id: String,
    /// Counts the tokens obtained, so a 401 renews only the token it was given for.
    pub generation: Generation,
}

/// The `password` method: one token at a time, renewed when due.
pub(super) struct PasswordTokens {
    user: String,
    domain: String,
    password: SecretFile,
    current: Mutex<Option<IamToken>>,
}

impl PasswordTokens {
    pub(super) fn new(config: &Password) -> PasswordTokens {
        PasswordTokens {
            user: config.user.clone(),
            domain: config.domain.clone(),
            password: SecretFile::new("password", "password_file", &config.password_file),
            current: Mutex::new(None),
        }
    }

    /// The current token: the cached one while more than [`RENEW_BEFORE`] is left and no 401
    /// answered it (`stale`), else a new one. Callers wait for one renewal together.
    pub(super) async fn token(
        &self,
        creds: &Credentials,
        stale: Option<Generation>,
    ) -> Result<IamToken, AuthError> {
        let mut current = self.current.lock().await;
        if let Some(t) = current.as_ref() {
            let due = SystemTime::now() + RENEW_BEFORE >= t.expires_at;
            if !due && stale != Some(t.generation) {
                return Ok(t.clone());
            }
            tracing::debug!(
                refused = stale == Some(t.generation),
                "auth method password: renewing the IAM token"
            );
        }
        let generation = current.as_ref().map_or(1, |t| t.generation + 1);
        let token = self.fetch(creds, stale.is_some(), generation).await?;
        *current = Some(token.clone());
        Ok(token)
    }

    async fn fetch(
        &self,
        creds: &Credentials,
        reread: bool,
        generation: Generation,
    ) -> Result<IamToken, AuthError> {
        let password = self.password.read(reread).await?;
        let scope = match &creds.project {
            Project::Configured(id) => json!({ "project": { "id": id } }),
            _ => json!({ "project": { "name": creds.region } }),
        };
        let body = json!({
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": { "user": {
                        "domain": { "name": self.domain },
                        "name": self.user,
                        "password": password.expose(),
                    } },
                },
                "scope": scope,
            }
        });
        let mut url = creds.iam.clone();
        url.path_segments_mut()
            .expect("https URL has a path")
            .pop_if_empty()
            .extend(["v3", "auth", "tokens"]);
        // The catalog (every endpoint of every service) is not needed and is most of the answer.
        url.set_query(Some("nocatalog=true"));
        let shown = RedactedUrl::new(&url);
        let headers = [(
            "Content-Type".to_string(),
            "application/json;charset=utf-8".to_string(),
        )];
        let body = serde_json::to_vec(&body).expect("a JSON value serialises");
        let reply = creds
            .iam_send(reqwest::Method::POST, &url, &headers, body)
            .await
            .map_err(|e| e.at_iam("password", STEP_TOKEN, &shown))?;
        if !(200..300).contains(&reply.status) {
            return Err(AuthError::IamRefused {
                method: "password",
                step: STEP_TOKEN,
                url: shown,
                fault: reply.fault(&[password.expose().to_string()]),
            });
        }
        let (token, expires_at, project_id) =
            parse_token(reply.header("x-subject-token"), &reply.body).map_err(|reason| {
                AuthError::IamBadAnswer {
                    method: "password",
                    step: STEP_TOKEN,
                    url: shown.clone(),
                    reason,
                }
            })?;
        tracing::info!(
            user = %self.user,
            expires_at = %time::OffsetDateTime::from(expires_at),
            "auth method password: obtained an IAM token"
        );
        Ok(IamToken {
            token,
            expires_at,
            project_id,
            generation,
        })
    }
}

/// An RFC 3339 time as IAM and the metadata service write it (`2020-01-04T09:05:22.701000Z`).
pub(super) fn parse_time(text: &str) -> Option<SystemTime> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(SystemTime::from)
}

/// The token (`X-Subject-Token`), `token.expires_at` and `token.project.id` of a token answer.
/// Reasons never quote the answer.
pub(super) fn parse_token(
    subject_token: Option<&str>,
    body: &[u8],
) -> Result<(Secret, SystemTime, String), String> {
    let token = subject_token
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or("no X-Subject-Token header")?;
    let body: Value = serde_json::from_slice(body).map_err(|_| "the body is not JSON")?;
    let expires_at = body
        .pointer("/token/expires_at")
        .and_then(Value::as_str)
        .ok_or("no token.expires_at")?;
    let expires_at = parse_time(expires_at)
        .ok_or_else(|| format!("token.expires_at {expires_at:?} is not an RFC 3339 time"))?;
    let project_id = body
        .pointer("/token/project/id")
        .and_then(Value::as_str)
        .filter(|id| crate::config::is_project_id(id))
        .ok_or("no usable token.project.id (is the token scoped to a project?)")?;
    Ok((Secret::new(token), expires_at, project_id.to_string()))
}

/// Why a projects answer gave no project id.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum ProjectsError {
    /// Not exactly one project.
    Count(usize),
    /// Not the documented shape.
    Bad(String),
}

/// The id of the one project in an answer of `GET /v3/projects?name=...`.
pub(super) fn parse_projects(body: &[u8]) -> Result<String, ProjectsError> {
    let bad = |r: &str| ProjectsError::Bad(r.to_string());
    let body: Value = serde_json::from_slice(body).map_err(|_| bad("the body is not JSON"))?;
    let projects = body
        .get("projects")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no projects list"))?;
    match projects.as_slice() {
        [one] => one
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| crate::config::is_project_id(id))
            .map(str::to_owned)
            .ok_or_else(|| bad("projects[0].id is not a project id")),
        many => Err(ProjectsError::Count(many.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape IAM documents for a project-scoped token (iam_30_0001), with `nocatalog`.
    const TOKEN_BODY: &str = r#"{
      "token": {
        "expires_at": "2020-01-04T09:05:22.701000Z",
        "methods": ["password"],
        "catalog": [],
        "domain": {"name": "IAMDomain", "id": "d78cbac186b744899480f25bd022f468"},
        "project": {
          "name": "cn-north-4",
          "id": "06061e2ea2bd0f2fc8d8c00d9b8b6c26",
          "domain": {"name": "IAMDomain", "id": "d78cbac186b744899480f25bd022f468"}
        },
        "roles": [{"name": "te_admin", "id": "0"}, {"name": "op_gated_OBS", "id": "0"}],
        "user": {
          "domain": {"name": "IAMDomain", "id": "d78cbac186b744899480f25bd022f468"},
          "name": "IAMUser",
          "password_expires_at": "",
          "id": "7116d09f88fa41908676fdd4b039e95b"
        },
        "issued_at": "2020-01-03T09:05:22.701000Z"
      }
    }"#;

    #[test]
    fn token_answer_gives_token_expiry_and_project() {
        let (token, expires, project) =
            parse_token(Some("MIIatoken"), TOKEN_BODY.as_bytes()).unwrap();
        assert_eq!(token.expose(), "MIIatoken");
        assert_eq!(
            time::OffsetDateTime::from(expires),
            time::macros::datetime!(2020-01-04 09:05:22.701 UTC)
        );
        assert_eq!(project, "06061e2ea2bd0f2fc8d8c00d9b8b6c26");
    }

    #[test]
    fn bad_token_answers_are_refused_without_quoting_them() {
        assert_eq!(
            parse_token(None, TOKEN_BODY.as_bytes()).unwrap_err(),
            "no X-Subject-Token header"
        );
        assert_eq!(
            parse_token(Some(" "), TOKEN_BODY.as_bytes()).unwrap_err(),
            "no X-Subject-Token header"
        );
        assert_eq!(
            parse_token(Some("t"), b"<html>").unwrap_err(),
            "the body is not JSON"
        );
        let no_project = TOKEN_BODY.replace("\"project\"", "\"other\"");
        assert!(
            parse_token(Some("t"), no_project.as_bytes())
                .unwrap_err()
                .contains("token.project.id")
        );
        let bad_time = TOKEN_BODY.replace("2020-01-04T09:05:22.701000Z", "tomorrow");
        assert!(
            parse_token(Some("t"), bad_time.as_bytes())
                .unwrap_err()
                .contains("\"tomorrow\"")
        );
    }

    /// IAM's documented answer of KeystoneListProjects (iam_06_0001), filtered by name.
    const PROJECTS_BODY: &str = r#"{
      "links": {"self": "https://iam.cn-north-4.myhuaweicloud.com/v3/projects?name=cn-north-4", "previous": null, "next": null},
      "projects": [{
        "is_domain": false,
        "description": "",
        "links": {"self": "https://iam.cn-north-4.myhuaweicloud.com/v3/projects/06061e2ea2bd0f2fc8d8c00d9b8b6c26"},
        "enabled": true,
        "id": "06061e2ea2bd0f2fc8d8c00d9b8b6c26",
        "parent_id": "d78cbac186b744899480f25bd022f468",
        "domain_id": "d78cbac186b744899480f25bd022f468",
        "name": "cn-north-4"
      }]
    }"#;

    #[test]
    fn projects_answer_needs_exactly_one_project() {
        assert_eq!(
            parse_projects(PROJECTS_BODY.as_bytes()).unwrap(),
            "06061e2ea2bd0f2fc8d8c00d9b8b6c26"
        );
        assert_eq!(
            parse_projects(br#"{"projects": [], "links": {}}"#),
            Err(ProjectsError::Count(0))
        );
        assert_eq!(
            parse_projects(br#"{"projects": [{"id": "a"}, {"id": "b"}]}"#),
            Err(ProjectsError::Count(2))
        );
        assert!(matches!(
            parse_projects(br#"{"projects": [{"id": "../x"}]}"#),
            Err(ProjectsError::Bad(_))
        ));
        assert!(matches!(parse_projects(b"{}"), Err(ProjectsError::Bad(_))));
    }
}
