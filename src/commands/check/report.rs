//! What `check --json` prints (SPEC 2): the plan, the trust folder, and with `--online`
//! each step's result, recorded by the same steps that print the text.

/// What `check --json` prints: the plan, the folder, and (online) each step's result.
#[derive(Debug, Default, serde::Serialize)]
pub(super) struct Report {
    /// The config file.
    pub(super) config: String,
    /// Whether it is valid (else `problems`).
    pub(super) valid: bool,
    /// Every problem of an invalid config, with its key.
    pub(super) problems: Vec<Problem>,
    /// Each cloud account.
    pub(super) accounts: Vec<AccountPlan>,
    /// Each configured instance.
    pub(super) instances: Vec<InstancePlan>,
    /// The hooks, by name.
    pub(super) hooks: Vec<String>,
    /// The trust folder.
    pub(super) trust_dir: String,
    /// Its managed instance files now.
    pub(super) files: Vec<FileNow>,
    /// Managed files this config would no longer produce.
    pub(super) no_longer_produced: Vec<FileNow>,
    /// The folder could not be read.
    pub(super) folder_error: Option<String>,
    /// The config's warnings.
    pub(super) warnings: Vec<String>,
    /// `--online`: each step's result.
    pub(super) online: Option<Online>,
}

#[derive(Debug, serde::Serialize)]
pub(super) struct Problem {
    pub(super) key: String,
    pub(super) message: String,
}

#[derive(Debug, serde::Serialize)]
pub(super) struct AccountPlan {
    pub(super) name: String,
    pub(super) endpoint: String,
    pub(super) auth_method: &'static str,
    pub(super) max_requests_per_second: f64,
}

#[derive(Debug, serde::Serialize)]
pub(super) struct InstancePlan {
    pub(super) id: String,
    pub(super) name: Option<String>,
    pub(super) account: String,
    pub(super) categories: Option<Vec<String>>,
    pub(super) endpoints: Vec<String>,
}

#[derive(Debug, serde::Serialize)]
pub(super) struct FileNow {
    pub(super) path: String,
    pub(super) instance: String,
    pub(super) category: String,
    pub(super) not_after: Option<String>,
    pub(super) days_left: Option<i64>,
}

/// `--online`'s results.
#[derive(Debug, Default, serde::Serialize)]
pub(super) struct Online {
    pub(super) ok: bool,
    /// The fleet's etcd (SPEC 14): `publish` and `source` steps.
    pub(super) fleet: Vec<Step>,
    pub(super) accounts: Vec<Step>,
    pub(super) instances: Vec<InstanceCheck>,
    pub(super) discover: Vec<Step>,
}

#[derive(Debug, serde::Serialize)]
pub(super) struct Step {
    pub(super) name: String,
    pub(super) ok: bool,
    pub(super) detail: String,
}

#[derive(Debug, Default, serde::Serialize)]
pub(super) struct InstanceCheck {
    pub(super) id: String,
    pub(super) name: String,
    pub(super) ok: bool,
    pub(super) error: Option<String>,
    pub(super) entries: Vec<EntryCheck>,
    pub(super) endpoints: Vec<EndpointCheck>,
}

#[derive(Debug, serde::Serialize)]
pub(super) struct EntryCheck {
    pub(super) category: String,
    pub(super) file: String,
    pub(super) certs: Vec<CertCheck>,
}

#[derive(Debug, serde::Serialize)]
pub(super) struct CertCheck {
    pub(super) sha256: String,
    pub(super) not_after: String,
    pub(super) subject: String,
}

#[derive(Debug, serde::Serialize)]
pub(super) struct EndpointCheck {
    pub(super) endpoint: String,
    pub(super) verified: bool,
    pub(super) result: &'static str,
    pub(super) detail: String,
    pub(super) anchor: Option<String>,
    pub(super) leaf_not_after: Option<String>,
}
