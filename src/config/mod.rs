//! The configuration file (SPEC 3): reading the TOML, validating every rule, and the typed
//! runtime values the rest of certsync works from.
//!
//! Owns: the schema (which keys exist), defaults (the `DEFAULT_*` constants below), key-path
//! error reporting, resolution of relative paths against the config file's folder, and the
//! resolved plan that `certsync check` prints. Every problem of a file is collected and reported
//! at once, each naming its key path and the bad value.
//!
//! Must not: talk to the network, read credential files (`token_file`, `secret_key_file` and
//! `password_file` are only named here, never read), touch the trust folder (only `store`
//! writes there), or keep anything secret in a message: inline secrets and the SDK's
//! environment variables (SPEC 4) are held as [`Secret`].

mod accounts;
mod reader;
mod resolve;
mod warnings;

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::names::{MANIFEST_FILE_NAME, is_project_id};
pub use crate::secret::Secret;

/// `cloud.service` when left out.
pub const DEFAULT_SERVICE: &str = "gaussdb-nosql";
/// The services that serve the download-link API.
pub const SERVICES: &[&str] = &["gaussdb-nosql", "dds"];
/// The ECS metadata service, when `auth.metadata_endpoint` is left out.
pub const DEFAULT_METADATA_ENDPOINT: &str = "http://169.254.169.254";
/// Environment fallbacks of the `aksk` method, as Huawei's SDKs name them (SPEC 4).
pub const ENV_AK: &str = "HUAWEICLOUD_SDK_AK";
/// See [`ENV_AK`].
pub const ENV_SK: &str = "HUAWEICLOUD_SDK_SK";
/// See [`ENV_AK`].
pub const ENV_SECURITY_TOKEN: &str = "HUAWEICLOUD_SDK_SECURITY_TOKEN";
/// See [`ENV_AK`].
pub const ENV_PROJECT_ID: &str = "HUAWEICLOUD_SDK_PROJECT_ID";
/// `cloud.timeout` when left out: per HTTP request.
pub const DEFAULT_CLOUD_TIMEOUT: Duration = Duration::from_secs(30);
/// `sync.interval` when left out.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(3600);
/// The shortest `sync.interval` accepted, so a typo cannot hammer the API.
pub const MIN_INTERVAL: Duration = Duration::from_secs(10);
/// `sync.jitter` defaults to `interval / JITTER_DIVISOR`.
pub const JITTER_DIVISOR: u32 = 10;
/// `sync.concurrency` when left out.
pub const DEFAULT_CONCURRENCY: usize = 8;
/// The largest `sync.concurrency` accepted.
pub const MAX_CONCURRENCY: usize = 256;
/// `sync.retry_initial` when left out.
pub const DEFAULT_RETRY_INITIAL: Duration = Duration::from_secs(10);
/// `sync.retry_max` when left out.
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(600);
/// `sync.max_download_bytes` when left out (1 MiB: a CA bundle is a few KiB).
pub const DEFAULT_MAX_DOWNLOAD_BYTES: u64 = 1024 * 1024;
/// The largest `sync.max_download_bytes` accepted (64 MiB).
pub const MAX_MAX_DOWNLOAD_BYTES: u64 = 64 * 1024 * 1024;
/// `sync.allowed_download_hosts` when left out: Huawei's OBS hosts.
pub const DEFAULT_ALLOWED_DOWNLOAD_HOSTS: &[&str] = &["*.myhuaweicloud.com", "*.myhuaweicloud.eu"];
/// `sync.expiry_warning` when left out.
pub const DEFAULT_EXPIRY_WARNING: Duration = Duration::from_secs(30 * 86400);
/// `sync.watch_config` when left out.
pub const DEFAULT_WATCH_CONFIG: bool = true;
/// `sync.rotation_overlap` when left out.
pub const DEFAULT_ROTATION_OVERLAP: Duration = Duration::from_secs(86400);
/// `trust.file_name` when left out.
pub const DEFAULT_FILE_NAME: &str = "{name}-{category}.crt";
/// `trust.mode` when left out.
pub const DEFAULT_MODE: u32 = 0o644;
/// The largest `trust.mode` accepted: permission bits only, no setuid/setgid/sticky.
pub const MAX_MODE: u32 = 0o777;
/// `trust.capath` when left out.
pub const DEFAULT_CAPATH: bool = true;
/// `trust.prune` when left out.
pub const DEFAULT_PRUNE: bool = true;
/// `hook.timeout` when left out.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(30);
/// Folders that `trust.dir` may never be: the root (every file of the system would be in it).
pub const FORBIDDEN_TRUST_DIRS: &[&str] = &["/"];
/// Folders the system's CA tooling owns (`update-ca-certificates`, `update-ca-trust`, their
/// packages): `trust.dir` may be none of them and lie inside none (SPEC 3), so certsync never
/// writes, replaces or prunes a file that tooling manages.
pub const SYSTEM_CA_DIRS: &[&str] = &[
    "/etc/ssl/certs",
    "/etc/pki",
    "/usr/share/ca-certificates",
    "/usr/local/share/ca-certificates",
    "/etc/ca-certificates",
];
/// The category used to render the file name of an instance without a `categories` filter when
/// checking that no two instances share a file (the only category the API documents today).
pub const PROBE_CATEGORY: &str = "international";

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from (absolute).
    pub source: PathBuf,
    /// `[cloud]`.
    pub cloud: Cloud,
    /// `[auth]`.
    pub auth: Auth,
    /// `[sync]`.
    pub sync: SyncSettings,
    /// `[trust]`.
    pub trust: Trust,
    /// `[server]`.
    pub server: Server,
    /// `[[discover]]`: instances found through ListInstances join `instances` at each pass.
    pub discover: Vec<Discover>,
    /// `[[instance]]`, in file order; at least one.
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

/// `[cloud]`: where the API is and how to reach it.
#[derive(Debug, Clone)]
pub struct Cloud {
    /// `gaussdb-nosql` or `dds`.
    pub service: String,
    /// Region, e.g. `cn-north-4`.
    pub region: String,
    /// API endpoint: `cloud.endpoint`, else derived from service and region. https, no query.
    pub endpoint: url::Url,
    /// Project id that goes into the API path: `cloud.project_id` (with `aksk`, else
    /// `HUAWEICLOUD_SDK_PROJECT_ID`). `None` (never with `token`): `aksk` and `metadata` look
    /// it up in IAM, `password` scopes its token by the region's name and takes the id from it.
    pub project_id: Option<String>,
    /// IAM: `cloud.iam_endpoint`, else `https://iam.{region}.myhuaweicloud.com`
    /// (`.myhuaweicloud.eu` for eu-west-101). https, no query.
    pub iam_endpoint: url::Url,
    /// Extra roots trusted for the API and downloads (absolute; holds at least one certificate).
    pub ca_file: Option<PathBuf>,
    /// Per HTTP request.
    pub timeout: Duration,
}

/// `[auth]`: how requests are authenticated (SPEC 4).
#[derive(Debug, Clone)]
pub enum Auth {
    /// An IAM token read from a file (re-read when it changes), sent as `X-Auth-Token`.
    Token {
        /// Absolute path of the token file. Not read by the config: it may not exist yet.
        token_file: PathBuf,
    },
    /// Requests signed with an AK/SK pair (SDK-HMAC-SHA256).
    AkSk(AkSk),
    /// An IAM token obtained with a user's password, renewed before it expires.
    Password(Password),
    /// Temporary AK/SK and security token from the ECS metadata service.
    Metadata {
        /// `auth.metadata_endpoint`, else [`DEFAULT_METADATA_ENDPOINT`]; http or https.
        metadata_endpoint: url::Url,
    },
}

impl Auth {
    /// The method's name as the config spells it.
    pub fn method(&self) -> &'static str {
        match self {
            Auth::Token { .. } => "token",
            Auth::AkSk(_) => "aksk",
            Auth::Password(_) => "password",
            Auth::Metadata { .. } => "metadata",
        }
    }
}

/// `method = "aksk"`: each value from the file, else from the SDK's environment variable.
#[derive(Debug, Clone)]
pub struct AkSk {
    /// `access_key` or `HUAWEICLOUD_SDK_AK`.
    pub access_key: Secret,
    /// `secret_key`, `secret_key_file` or `HUAWEICLOUD_SDK_SK`.
    pub secret_key: SecretKey,
    /// `security_token` or `HUAWEICLOUD_SDK_SECURITY_TOKEN`: the AK/SK are temporary.
    pub security_token: Option<Secret>,
    /// The environment variables a value came from, for `check` (names only).
    pub from_env: Vec<&'static str>,
}

/// Where the secret key is.
#[derive(Debug, Clone)]
pub enum SecretKey {
    /// In the config file or the environment.
    Inline(Secret),
    /// In a file (absolute), read when needed and again when it changes.
    File(PathBuf),
}

/// `method = "password"`.
#[derive(Debug, Clone)]
pub struct Password {
    /// `user`: the IAM user's name.
    pub user: String,
    /// `domain`: the account (domain) name the user belongs to.
    pub domain: String,
    /// `password_file` (absolute): the password, read when needed; never inline.
    pub password_file: PathBuf,
}

/// `[sync]`: timing and limits of passes.
#[derive(Debug, Clone)]
pub struct SyncSettings {
    /// Between passes; at least [`MIN_INTERVAL`].
    pub interval: Duration,
    /// Random `0..jitter` added to every wait.
    pub jitter: Duration,
    /// Instances in flight at once, `1..=MAX_CONCURRENCY`.
    pub concurrency: usize,
    /// First retry delay of a failed instance (> 0).
    pub retry_initial: Duration,
    /// Largest retry delay (>= `retry_initial`).
    pub retry_max: Duration,
    /// Largest download accepted, `1..=MAX_MAX_DOWNLOAD_BYTES`.
    pub max_download_bytes: u64,
    /// Lower-case host names, `*.suffix` patterns, or bracketed IPv6 addresses.
    pub allowed_download_hosts: Vec<String>,
    /// Warn when a CA in use expires within this.
    pub expiry_warning: Duration,
    /// Keep a replaced CA in its instance's file this long (zero: replace at once).
    pub rotation_overlap: Duration,
    /// Reload when the config file changes (the folder is watched, so editors' rename-saves
    /// are seen).
    pub watch_config: bool,
}

/// `[trust]`: the folder certsync writes.
#[derive(Debug, Clone)]
pub struct Trust {
    /// Absolute, lexically normalised; never `/`, nor one of [`SYSTEM_CA_DIRS`] or inside one
    /// (lexically, or with its symlinks followed).
    pub dir: PathBuf,
    /// Template with `{name}`, `{id}`, `{category}`; see [`Trust::file_name_for`].
    pub file_name: String,
    /// File mode of written files (permission bits only).
    pub mode: u32,
    /// File name of the bundle of every CA, if wanted.
    pub bundle: Option<String>,
    /// Write `<subject_hash>.<n>` files.
    pub capath: bool,
    /// Remove managed files no longer produced.
    pub prune: bool,
    /// Owner given to every file written (needs the privilege to chown).
    pub owner: Option<Account>,
    /// Group given to every file written.
    pub group: Option<Account>,
    /// How an existing file is replaced.
    pub write_mode: WriteMode,
    /// How the files are laid out in the folder.
    pub layout: Layout,
    /// File name of the PKCS#12 truststore, if wanted.
    pub pkcs12: Option<String>,
    /// Absolute path of the file holding the truststore password; `None`: "changeit". Only
    /// named here, never read (it is a secret; the store reads it at each pass).
    pub pkcs12_password_file: Option<PathBuf>,
}

/// A user or group of `trust.owner` / `trust.group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The uid or gid.
    pub id: u32,
    /// The name it was given by in the file, if it was a name.
    pub name: Option<String>,
}

impl fmt::Display for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(name) => write!(f, "{name} ({})", self.id),
            None => write!(f, "{}", self.id),
        }
    }
}

/// `trust.write_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriteMode {
    /// `"rename"`: a temporary file renamed over the old one (atomic; a new inode).
    #[default]
    Rename,
    /// `"in-place"`: the existing inode rewritten (single-file bind mounts; not atomic).
    InPlace,
}

/// `trust.layout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// `"flat"`: every file a regular file in the folder.
    #[default]
    Flat,
    /// `"atomic-dir"`: Kubernetes-style `..data` swap of the whole set.
    AtomicDir,
}

/// One `[[instance]]`.
#[derive(Debug, Clone)]
pub struct Instance {
    /// Cloud id, `[A-Za-z0-9-]{1,64}`.
    pub id: String,
    /// Optional name, `[A-Za-z0-9._-]{1,64}`, unique.
    pub name: Option<String>,
    /// Only these categories are synced; `None`: every category the API lists.
    pub categories: Option<Vec<String>>,
    /// SHA-256 fingerprints accepted (empty: any).
    pub pins: Vec<[u8; 32]>,
}

/// One `[[hook]]`.
#[derive(Debug, Clone)]
pub struct Hook {
    /// For logs and metrics; unique. Default: the file name of `command[0]`, or for a signal
    /// hook `SIGNAL-<pid file name>`.
    pub name: String,
    /// What the hook does.
    pub action: HookAction,
    /// Killed (with its process group) after this.
    pub timeout: Duration,
    /// Run only when files of these instances (by id) changed; `None`: any change.
    pub instances: Option<Vec<String>>,
}

/// One `[[discover]]` query of ListInstances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discover {
    /// `datastore`: the API's `datastore_type` filter (`mongodb`, `cassandra`, ...).
    pub datastore: Option<String>,
    /// `name`: the API's name filter; a leading `*` is a fuzzy match.
    pub name: Option<String>,
    /// `ssl_only`: skip instances whose `ssl` is `"0"`.
    pub ssl_only: bool,
}

/// `discover.ssl_only` when left out.
pub const DEFAULT_SSL_ONLY: bool = true;

/// What a hook does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookAction {
    /// `command`: argv; `command[0]` is an absolute path. Run without a shell.
    Command(Vec<String>),
    /// `signal` + `pid_file`: send the signal to the pid read fresh from the file at each run.
    Signal {
        /// Canonical name, `SIGHUP`.
        signal: String,
        /// The pid file (absolute).
        pid_file: PathBuf,
    },
}

/// Signals a signal hook may send.
pub const HOOK_SIGNALS: &[&str] = &[
    "SIGHUP", "SIGINT", "SIGQUIT", "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGWINCH", "SIGCONT",
    "SIGALRM",
];

/// `[server]`.
#[derive(Debug, Clone, Default)]
pub struct Server {
    /// `listen`: where `/metrics`, `/healthz`, `/readyz` and `/status` are served; `None`: no
    /// server.
    pub listen: Option<std::net::SocketAddr>,
}

/// `[log]`.
#[derive(Debug, Clone)]
pub struct Log {
    /// Text or JSON lines.
    pub format: LogFormat,
    /// A tracing filter (`info`, `certsync=debug`); `None`: the program's default.
    pub level: Option<String>,
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
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

impl Instance {
    /// The name, else the id: what `{name}` renders to and what logs call the instance.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }

    /// True when this instance syncs `category` (always, without a `categories` filter).
    pub fn wants(&self, category: &str) -> bool {
        match &self.categories {
            None => true,
            Some(list) => list.iter().any(|c| c == category),
        }
    }
}

impl Trust {
    /// The file name of `inst`'s CAs of `category`. The template is expanded in one pass.
    ///
    /// Categories from the configuration are checked; a category that only the API names
    /// (an instance without a filter) is not, so check the result with
    /// [`Trust::file_name_problem`] before writing.
    pub fn file_name_for(&self, inst: &Instance, category: &str) -> String {
        crate::names::render_template(&self.file_name, inst.display_name(), &inst.id, category)
    }

    /// Why `name` may not be written into the trust folder as an instance file, if it may not:
    /// not a plain visible file name, or the manifest's, the bundle's or a hash file's name.
    pub fn file_name_problem(&self, name: &str) -> Option<String> {
        if self.pkcs12.as_deref() == Some(name) {
            return Some("is the truststore's name (trust.pkcs12)".into());
        }
        crate::names::file_name_problem(name, self.bundle.as_deref())
    }
}

impl Config {
    /// The resolved plan, for `certsync check`: endpoint, authentication, sync settings, the
    /// trust folder and its files per instance, hooks and logging. Holds no secret.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        let d = |d: Duration| humantime::format_duration(d).to_string();
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        let _ = writeln!(s, "config: {}", self.source.display());

        let c = &self.cloud;
        let _ = writeln!(s, "cloud:");
        let _ = writeln!(s, "  service: {} (region {})", c.service, c.region);
        let _ = writeln!(s, "  endpoint: {}", c.endpoint);
        match (&c.project_id, &self.auth) {
            (Some(id), _) => {
                let _ = writeln!(s, "  project_id: {id}");
            }
            (None, Auth::Password(_)) => {
                let _ = writeln!(
                    s,
                    "  project_id: from the IAM token (scoped to project {:?})",
                    c.region
                );
            }
            (None, _) => {
                let _ = writeln!(
                    s,
                    "  project_id: looked up in IAM (GET /v3/projects?name={})",
                    c.region
                );
            }
        }
        let _ = writeln!(s, "  iam_endpoint: {}", c.iam_endpoint);
        match &c.ca_file {
            Some(p) => {
                let _ = writeln!(
                    s,
                    "  extra roots: {} (system roots stay trusted)",
                    p.display()
                );
            }
            None => {
                let _ = writeln!(s, "  extra roots: none (system roots only)");
            }
        }
        let _ = writeln!(s, "  request timeout: {}", d(c.timeout));

        let _ = writeln!(s, "auth:");
        match &self.auth {
            Auth::Token { token_file } => {
                let _ = writeln!(s, "  method: token (X-Auth-Token)");
                let _ = writeln!(s, "  token_file: {}", token_file.display());
            }
            Auth::AkSk(a) => {
                let _ = writeln!(s, "  method: aksk (SDK-HMAC-SHA256 signatures)");
                let origin = |var: &str| {
                    if a.from_env.contains(&var) {
                        format!("from {var}")
                    } else {
                        "set in this file".to_string()
                    }
                };
                let _ = writeln!(s, "  access_key: {}", origin(ENV_AK));
                match &a.secret_key {
                    SecretKey::File(path) => {
                        let _ = writeln!(s, "  secret_key_file: {}", path.display());
                    }
                    SecretKey::Inline(_) => {
                        let _ = writeln!(s, "  secret_key: {}", origin(ENV_SK));
                    }
                }
                let token = match &a.security_token {
                    Some(_) => format!("{} (temporary AK/SK)", origin(ENV_SECURITY_TOKEN)),
                    None => "none (permanent AK/SK)".to_string(),
                };
                let _ = writeln!(s, "  security_token: {token}");
            }
            Auth::Password(pw) => {
                let _ = writeln!(
                    s,
                    "  method: password (IAM token, renewed before it expires)"
                );
                let _ = writeln!(s, "  user: {} (domain {})", pw.user, pw.domain);
                let _ = writeln!(s, "  password_file: {}", pw.password_file.display());
            }
            Auth::Metadata { metadata_endpoint } => {
                let _ = writeln!(
                    s,
                    "  method: metadata (temporary AK/SK from the ECS metadata service)"
                );
                let _ = writeln!(s, "  metadata_endpoint: {metadata_endpoint}");
            }
        }
        let y = &self.sync;
        let _ = writeln!(s, "sync:");
        let _ = writeln!(
            s,
            "  interval: {} plus 0..{} jitter",
            d(y.interval),
            d(y.jitter)
        );
        let _ = writeln!(s, "  concurrency: {}", y.concurrency);
        let _ = writeln!(
            s,
            "  retry: {} doubling up to {}",
            d(y.retry_initial),
            d(y.retry_max)
        );
        let _ = writeln!(s, "  max_download_bytes: {}", y.max_download_bytes);
        let _ = writeln!(
            s,
            "  allowed_download_hosts: {}",
            y.allowed_download_hosts.join(", ")
        );
        let _ = writeln!(s, "  expiry_warning: {}", d(y.expiry_warning));
        let _ = writeln!(s, "  rotation_overlap: {}", d(y.rotation_overlap));

        let t = &self.trust;
        let _ = writeln!(s, "trust:");
        let _ = writeln!(s, "  dir: {}", t.dir.display());
        let _ = writeln!(s, "  file_name: {}", t.file_name);
        let _ = writeln!(s, "  mode: {:04o}", t.mode);
        match &t.bundle {
            Some(b) => {
                let _ = writeln!(s, "  bundle: {}", t.dir.join(b).display());
            }
            None => {
                let _ = writeln!(s, "  bundle: none");
            }
        }
        let _ = writeln!(
            s,
            "  capath (<subject_hash>.<n> files): {}",
            yes_no(t.capath)
        );
        let _ = writeln!(s, "  prune: {}", yes_no(t.prune));
        let show_account = |a: &Option<Account>| match a {
            Some(a) => a.to_string(),
            None => "certsync's own".into(),
        };
        let _ = writeln!(s, "  owner: {}", show_account(&t.owner));
        let _ = writeln!(s, "  group: {}", show_account(&t.group));
        let _ = writeln!(
            s,
            "  write_mode: {}",
            match t.write_mode {
                WriteMode::Rename => "rename (atomic)",
                WriteMode::InPlace => "in-place (keeps the inode; readers may see a partial file)",
            }
        );
        let _ = writeln!(
            s,
            "  layout: {}",
            match t.layout {
                Layout::Flat => "flat",
                Layout::AtomicDir => "atomic-dir (..data swap)",
            }
        );
        match &t.pkcs12 {
            Some(p) => {
                let password = match &t.pkcs12_password_file {
                    Some(f) => format!("password from {}", f.display()),
                    None => "password \"changeit\"".into(),
                };
                let _ = writeln!(s, "  pkcs12: {} ({password})", t.dir.join(p).display());
            }
            None => {
                let _ = writeln!(s, "  pkcs12: none");
            }
        }

        let _ = writeln!(s, "instances ({}):", self.instances.len());
        for inst in &self.instances {
            let name = match &inst.name {
                Some(n) => format!("{n} ({})", inst.id),
                None => inst.id.clone(),
            };
            let _ = writeln!(s, "  {name}:");
            match &inst.categories {
                Some(cats) => {
                    for cat in cats {
                        let file = t.dir.join(t.file_name_for(inst, cat));
                        let _ = writeln!(s, "    {cat} -> {}", file.display());
                    }
                }
                None => {
                    let file = t.dir.join(t.file_name_for(inst, "{category}"));
                    let _ = writeln!(s, "    every category -> {}", file.display());
                }
            }
            if !inst.pins.is_empty() {
                let _ = writeln!(s, "    pinned to:");
                for pin in &inst.pins {
                    let _ = writeln!(s, "      {}", hex::encode(pin));
                }
            }
        }

        let _ = writeln!(s, "hooks ({}):", self.hooks.len());
        for hook in &self.hooks {
            let _ = writeln!(s, "  {}:", hook.name);
            match &hook.action {
                HookAction::Command(argv) => {
                    let _ = writeln!(s, "    command: {argv:?}");
                }
                HookAction::Signal { signal, pid_file } => {
                    let _ = writeln!(
                        s,
                        "    signal: {signal} to the pid in {}",
                        pid_file.display()
                    );
                }
            }
            let _ = writeln!(s, "    timeout: {}", d(hook.timeout));
            match &hook.instances {
                Some(ids) => {
                    let names: Vec<String> = ids
                        .iter()
                        .map(|id| match self.instances.iter().find(|i| &i.id == id) {
                            Some(Instance {
                                name: Some(name), ..
                            }) => format!("{name} ({id})"),
                            _ => id.clone(),
                        })
                        .collect();
                    let _ = writeln!(
                        s,
                        "    runs when these instances change: {}",
                        names.join(", ")
                    );
                }
                None => {
                    let _ = writeln!(s, "    runs on any change");
                }
            }
        }

        let _ = writeln!(s, "log:");
        let format = match self.log.format {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        };
        let _ = writeln!(s, "  format: {format}");
        let _ = writeln!(
            s,
            "  level: {}",
            self.log.level.as_deref().unwrap_or("(default)")
        );
        // Last, where a terminal leaves them in view.
        for w in &self.warnings {
            let _ = writeln!(s, "warning: {w}");
        }
        s
    }
}
