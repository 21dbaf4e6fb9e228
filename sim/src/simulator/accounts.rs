//! The [`Simulator`]'s Rust API for who may call: the token and AK/SK, extra users, IAM users and
//! tokens, projects, the metadata service's credentials and modes, and the gateway's rate limit.
//!
//! Owns only the translation of these calls into the world's and creds' methods; it must not
//! hold state of its own.

use std::time::Duration;

use crate::{MetadataTokenMode, Project, RateLimit, Simulator};

impl Simulator {
    /// The IAM token the API currently accepts.
    pub fn token(&self) -> String {
        self.world().token()
    }

    /// Changes the accepted token; the old one gets 401 from now on.
    pub fn set_token(&self, token: &str) {
        self.world().set_token(token);
    }

    /// The permanent access key the gateway accepts.
    pub fn ak(&self) -> String {
        self.world().creds.ak_sk().0
    }

    /// The secret key of [`Simulator::ak`].
    pub fn sk(&self) -> String {
        self.world().creds.ak_sk().1
    }

    /// Replaces the permanent AK/SK; requests signed with the old pair get 401 from now on.
    /// (Still the same user for throttling.)
    pub fn set_ak_sk(&self, ak: &str, sk: &str) {
        self.world().creds.set_ak_sk(ak, sk);
    }

    /// Adds another user with its own permanent AK/SK (or replaces the secret of one added
    /// before), valid for every project of the simulator and throttled apart from the others.
    /// An `ak` equal to [`Simulator::ak`] is the account's own and stays its.
    pub fn add_ak_sk_user(&self, ak: &str, sk: &str) {
        self.world().creds.add_ak_sk_user(ak, sk);
    }

    /// Adds another user whose token is `token`, valid for every project of the simulator and
    /// throttled apart from the others (no change if it was added before).
    pub fn add_token(&self, token: &str) {
        self.world().creds.add_token(token);
    }

    /// Adds an IAM user who may get tokens with `POST /v3/auth/tokens`, or changes the password
    /// of an existing one (tokens issued before stay valid, as on the real IAM until it catches
    /// up; see [`Simulator::invalidate_iam_tokens`]).
    pub fn add_iam_user(&self, name: &str, domain: &str, password: &str) {
        self.world().creds.add_user(name, domain, password);
    }

    /// How long tokens issued from now on live (default 24 h). `Duration::ZERO` issues tokens
    /// that are expired at once.
    pub fn set_iam_token_lifetime(&self, lifetime: Duration) {
        self.world().creds.set_token_lifetime(lifetime);
    }

    /// Invalidates every token IAM issued so far: the API answers 401 for them from now on.
    pub fn invalidate_iam_tokens(&self) {
        self.world().creds.invalidate_tokens();
    }

    /// The projects `GET /v3/projects` knows; at start, one: the simulator's project named after
    /// its region; then those [`Simulator::add_project`] adds.
    pub fn projects(&self) -> Vec<Project> {
        self.world().creds.projects()
    }

    /// Replaces the projects `GET /v3/projects` (and token scopes) know, e.g. none or two with the
    /// region's name. The projects the API serves ([`Simulator::served_projects`]) stay as
    /// they are.
    pub fn set_projects(&self, projects: &[Project]) {
        self.world().creds.set_projects(projects.to_vec());
    }

    /// Adds a project of the same account for `region` (a fresh 32-hex id, named after the
    /// region): the API serves it (instances are added with [`Simulator::add_instance_in`]),
    /// IAM lists it and scopes password tokens to it, and the token and AK/SK (and every extra
    /// user's) are valid for it.
    pub fn add_project(&self, region: &str) -> Project {
        self.world().add_project(region)
    }

    /// The projects the API serves: [`Simulator::project_id`]'s first, then the added ones.
    pub fn served_projects(&self) -> Vec<Project> {
        self.world().served_projects()
    }

    /// The gateway's per-user rate limit in force (`None`: no throttling).
    pub fn rate_limit(&self) -> Option<RateLimit> {
        self.world().throttle.limit()
    }

    /// Sets the gateway's per-user rate limit (`None`: no throttling); every user starts again
    /// with a full bucket. It applies to the download-link API, ListInstances and IAM's
    /// `POST /v3/auth/tokens` and `GET /v3/projects`, after authentication; not to downloads,
    /// the metadata service or the control API.
    pub fn set_rate_limit(&self, limit: Option<RateLimit>) {
        self.world().throttle.set_limit(limit);
    }

    /// The metadata service's base URL, `http://127.0.0.1:PORT` (plain HTTP, like the real
    /// `http://169.254.169.254`).
    pub fn metadata_endpoint(&self) -> String {
        format!("http://{}", self.inner.metadata_addr)
    }

    /// How long temporary credentials handed out from now on live (default 24 h).
    /// `Duration::ZERO` hands out credentials that are expired at once.
    pub fn set_metadata_credential_lifetime(&self, lifetime: Duration) {
        self.world().creds.set_temporary_lifetime(lifetime);
    }

    /// Revokes every temporary credential handed out so far (the gateway answers 401 for them).
    pub fn revoke_metadata_credentials(&self) {
        self.world().creds.revoke_temporary();
    }

    /// Sets how the metadata service answers the session-token `PUT` (default: tokens required).
    pub fn set_metadata_token_mode(&self, mode: MetadataTokenMode) {
        self.world().creds.set_metadata_mode(mode);
    }

    /// Whether the ECS has an agency (default true); without one the metadata service answers
    /// 401 "Please configure Cloud Service Agency first".
    pub fn set_metadata_agency(&self, agency: bool) {
        self.world().creds.set_agency(agency);
    }

    /// How many temporary credentials the metadata service has handed out.
    pub fn metadata_fetches(&self) -> u64 {
        self.stats().metadata_fetches
    }
}
