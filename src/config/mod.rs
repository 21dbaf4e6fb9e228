//! The configuration file (SPEC 3): reading the TOML, validating every rule, and the typed
//! runtime values the rest of certsync works from.
//!
//! Owns: the schema (`schema`: which keys exist, written once), the sections' keys, defaults
//! and rules (`section/`, one file each), key-path error reporting (`reader`), the two passes
//! (`resolve`: the pure pass over the text, then `fs`: the checks that read files, and the
//! warnings), resolution of relative paths against the config file's folder, and the resolved
//! plan that `certsync check` prints (`describe`). Every problem of a file is collected and
//! reported at once, each naming its key path and the bad value.
//!
//! Where a stage owns its options, config builds the stage's own type rather than a copy:
//! `[trust]` holds the store's [`StoreOptions`](crate::store::StoreOptions) (and its
//! defaults), `[[hook]]` is [`crate::hooks::Hook`].
//!
//! Must not: talk to the network, read credential files (`token_file`, `secret_key_file` and
//! `password_file` are only named here, never read), touch the trust folder (only `store`
//! writes there), or keep anything secret in a message: inline secrets and the SDK's
//! environment variables (SPEC 4) are held as [`Secret`].

mod accounts;
mod ca_file;
mod describe;
mod fs;
mod keys;
mod reader;
mod resolve;
mod schema;
mod section;
mod system_dirs;
mod warnings;

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

pub use crate::hooks::{Hook, HookAction, HookSignal};
pub use crate::names::{MANIFEST_FILE_NAME, is_project_id};
pub use crate::secret::Secret;
pub use ca_file::{CaFileError, read_ca_file};
pub use keys::{SectionKind, SectionSchema};
pub use schema::SCHEMA;
pub use section::account::{CloudAccount, DEFAULT_ACCOUNT};
pub use section::auth::{
    AkSk, Auth, DEFAULT_METADATA_ENDPOINT, ENV_AK, ENV_PROJECT_ID, ENV_SECURITY_TOKEN, ENV_SK,
    Password, SecretKey,
};
pub use section::cloud::{
    Cloud, DEFAULT_CLOUD_TIMEOUT, DEFAULT_MAX_REQUESTS_PER_SECOND, DEFAULT_SERVICE,
    MAX_MAX_REQUESTS_PER_SECOND, SERVICES,
};
pub use section::discover::{DEFAULT_SSL_ONLY, Discover};
pub use section::fleet::{
    DEFAULT_LEASE_TTL, Etcd, MAX_ETCD_ENDPOINTS, MAX_LEASE_TTL, MIN_LEASE_TTL, Publish,
};
pub use section::instance::Instance;
pub use section::log::{Log, LogFormat};
pub use section::server::Server;
pub use section::sync::{
    DEFAULT_ALLOWED_DOWNLOAD_HOSTS, DEFAULT_CONCURRENCY, DEFAULT_EXPIRY_WARNING, DEFAULT_INTERVAL,
    DEFAULT_MAX_DOWNLOAD_BYTES, DEFAULT_RETRY_INITIAL, DEFAULT_RETRY_MAX, DEFAULT_WATCH_CONFIG,
    JITTER_DIVISOR, MAX_CONCURRENCY, MAX_MAX_DOWNLOAD_BYTES, MIN_INTERVAL, SyncSettings,
};
pub use section::trust::{Account, DEFAULT_FILE_NAME, MAX_MODE, PROBE_CATEGORY, Trust};
pub use section::verify::{
    DEFAULT_VERIFY_INTERVAL, DEFAULT_VERIFY_TIMEOUT, MIN_VERIFY_INTERVAL, Verify,
};
pub use system_dirs::{FORBIDDEN_TRUST_DIRS, SYSTEM_CA_DIRS};

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from (absolute).
    pub source: PathBuf,
    /// The cloud accounts (SPEC 15), names unique: `default` (`[cloud]` + `[auth]`) first
    /// when written, then each `[[account]]` in file order; at least one unless this is a
    /// subscriber (`subscribe`).
    pub accounts: Vec<CloudAccount>,
    /// `[sync]`.
    pub sync: SyncSettings,
    /// `[trust]`, with `sync.rotation_overlap`: the store's options and the file name template.
    pub trust: Trust,
    /// `[server]`.
    pub server: Server,
    /// `[verify]`.
    pub verify: Verify,
    /// `[[discover]]`: instances found through ListInstances join `instances` at each pass.
    pub discover: Vec<Discover>,
    /// `[publish]`: this certsync publishes for the fleet when it leads (SPEC 14).
    pub publish: Option<Publish>,
    /// `[source] kind = "etcd"`: this certsync is a subscriber of a fleet's bundle (SPEC 14);
    /// `None`: it reads the cloud.
    pub subscribe: Option<Etcd>,
    /// `[[instance]]`, in file order; at least one unless `[[discover]]` or `subscribe` bring
    /// instances (a subscriber's list, when given, selects from the bundle).
    pub instances: Vec<Instance>,
    /// `[[hook]]`, in file order.
    pub hooks: Vec<Hook>,
    /// `[log]`.
    pub log: Log,
    /// Things that work but deserve attention (SPEC 3): a secret file, or the config file with
    /// an inline secret, readable by group or others; `trust.mode` writable by group or
    /// others; `server.listen` not on loopback; a `pid_file` another user can write. `check`
    /// prints them; the credentials log them when built. Never hold a secret.
    pub warnings: Vec<Problem>,
}

impl Config {
    /// The account named `name` (every instance's and query's account exists: config checks
    /// it).
    pub fn account(&self, name: &str) -> Option<&CloudAccount> {
        self.accounts.iter().find(|a| a.name == name)
    }

    /// The longest request timeout of any account (what bounds a pass's waits as a whole).
    pub fn longest_timeout(&self) -> std::time::Duration {
        self.accounts
            .iter()
            .map(|a| a.cloud.timeout)
            .max()
            .unwrap_or(DEFAULT_CLOUD_TIMEOUT)
    }
}

/// One thing wrong with a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Key path, e.g. `hook[1].timeout` (0-based indices). Empty when the problem concerns the
    /// whole file (it cannot be read, or is not valid TOML).
    pub key: String,
    /// What is wrong, including the bad value (quoted) unless it may be a secret.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// Every problem of one configuration file.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", render_error(.source_path, .problems))]
pub struct ConfigError {
    /// The file as it was named to [`load`] or [`parse`].
    pub source_path: PathBuf,
    /// At least one problem, in the order the file was checked.
    pub problems: Vec<Problem>,
}

fn render_error(path: &Path, problems: &[Problem]) -> String {
    let mut out = format!(
        "{}: {} configuration error(s):",
        path.display(),
        problems.len()
    );
    for problem in problems {
        let _ = write!(out, "\n  {problem}");
    }
    out
}

/// Reads and validates the configuration file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    match crate::files::read_capped_string(path, crate::files::MAX_CONFIG_FILE) {
        Ok(text) => parse(&text, path),
        Err(e) => Err(ConfigError {
            source_path: path.to_path_buf(),
            problems: vec![Problem {
                key: String::new(),
                message: format!("cannot read the configuration file: {e}"),
            }],
        }),
    }
}

/// Validates configuration text read from `source`; relative paths in it are resolved against
/// `source`'s folder (and the files they name are checked where the rules say so).
pub fn parse(text: &str, source: &Path) -> Result<Config, ConfigError> {
    parse_with_env(text, source, &|name| std::env::var(name).ok())
}

/// [`parse`] with the environment given as a lookup (the `aksk` fallbacks read
/// `HUAWEICLOUD_SDK_*`); an empty value counts as unset, as in the SDK.
pub fn parse_with_env(
    text: &str,
    source: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let env = |name: &str| env(name).filter(|v| !v.is_empty());
    resolve::resolve(text, source, &env).map_err(|problems| ConfigError {
        source_path: source.to_path_buf(),
        problems,
    })
}
