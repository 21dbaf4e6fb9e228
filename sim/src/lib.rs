//! certsync-sim: a stand-in for Huawei Cloud on loopback, over real TLS, for certsync's tests,
//! `certsync demo` and the benchmarks (SPEC section 11).
//!
//! It serves, on one HTTPS listener:
//! - the GaussDB NoSQL download-link API, `GET /v3/{project_id}/instances/{id}/ssl-cert/download-link`,
//!   and ListInstances, `GET /v3/{project_id}/instances` (paging, filters), both behind the API
//!   gateway's authentication: `X-Auth-Token`, or an `SDK-HMAC-SHA256` AK/SK signature (verified
//!   with certsync-sign, as Huawei's SDKs sign) with permanent or temporary credentials, answering
//!   with the cloud's status codes, headers and error bodies;
//! - IAM: `POST /v3/auth/tokens` (password) and `GET /v3/projects`;
//! - OBS-style pre-signed download links (`/obs/...`), freshly minted on every API answer and
//!   checked (signature, expiry) when fetched;
//! - a control API under `/_sim/` to change instances, CAs and faults from another process;
//!
//! and, on a second, plain-HTTP listener, the ECS metadata service (session token, temporary
//! credentials).
//!
//! Module map: `model` (public value types), `pki` (certificate generation), `link` (link
//! signing), `creds` (identities: token, AK/SK, IAM users and tokens, temporary credentials,
//! projects), `state` (instances, faults, counters; hands out answer *plans*), `router` (method and
//! path dispatch), `auth` (the gateway's credential checks), `api`, `instances`, `iam`,
//! `metadata`, `obs`, `control` (handlers), `http` (bodies and error documents), `server` (TLS,
//! HTTP/1.1, connections).
//!
//! Invariants: no key is generated on the request path (only in calls that change instances or
//! faults); a slow fault delays only the request it applies to; link queries, tokens, keys and
//! passwords are never logged.
#![forbid(unsafe_code)]

mod api;
mod auth;
mod control;
mod creds;
mod http;
mod iam;
mod instances;
mod link;
mod metadata;
mod model;
mod obs;
mod pki;
mod router;
mod server;
mod state;
mod util;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use model::{
    BadContent, CaInfo, Fault, InstanceMeta, ListFault, MetadataTokenMode, Project, Stats,
};
pub use state::SimError;

/// The file, in the simulator's directory, holding the root its TLS certificate chains to.
pub const CA_FILE_NAME: &str = "ca.pem";

/// The region a simulator plays unless told otherwise.
pub const DEFAULT_REGION: &str = "cn-north-4";

/// How to start a [`Simulator`].
#[derive(Clone)]
pub struct SimOptions {
    /// Where to listen; default `127.0.0.1:0` (a free port).
    pub listen: SocketAddr,
    /// How many instances to create at start (random ids shaped like real ones); default 1.
    pub instances: usize,
    /// The accepted IAM token; random when `None`.
    pub token: Option<String>,
    /// The project id; 32 random hex digits when `None`.
    pub project_id: Option<String>,
    /// Where `ca.pem` is written (created if missing); a temporary directory owned by the
    /// simulator (removed when the last handle is dropped) when `None`.
    pub dir: Option<PathBuf>,
    /// The permanent access key and secret key the gateway accepts; random (shaped like the
    /// console's: 20 and 40 characters) when `None`.
    pub ak_sk: Option<(String, String)>,
    /// The region, which is also the name of the project; [`DEFAULT_REGION`] when `None`.
    pub region: Option<String>,
    /// Where the plain-HTTP metadata service listens; default `127.0.0.1:0`.
    pub metadata_listen: SocketAddr,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            instances: 1,
            token: None,
            project_id: None,
            dir: None,
            ak_sk: None,
            region: None,
            metadata_listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
        }
    }
}

impl std::fmt::Debug for SimOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token and the keys stay out of Debug output.
        f.debug_struct("SimOptions")
            .field("listen", &self.listen)
            .field("instances", &self.instances)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("project_id", &self.project_id)
            .field("dir", &self.dir)
            .field("ak_sk", &self.ak_sk.as_ref().map(|_| "<redacted>"))
            .field("region", &self.region)
            .field("metadata_listen", &self.metadata_listen)
            .finish()
    }
}

/// A running simulator. Cheap to clone; the server stops when [`Simulator::shutdown`] is called
/// or the last handle is dropped.
///
/// The Rust methods that name an instance or category panic when it does not exist (or the id is
/// not `[A-Za-z0-9-]{1,64}`): they are test set-up, where a typo must fail loudly. The control API
/// answers 404/400 instead.
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

struct Inner {
    world: Arc<state::World>,
    addr: SocketAddr,
    metadata_addr: SocketAddr,
    ca_file: PathBuf,
    ca_pem: String,
    cancel: CancellationToken,
    /// Keeps the temporary directory (and ca.pem) alive while handles exist.
    _temp_dir: Option<tempfile::TempDir>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token stays out of Debug output.
        f.debug_struct("Simulator")
            .field("endpoint", &self.inner.world.endpoint)
            .field("ca_file", &self.inner.ca_file)
            .finish_non_exhaustive()
    }
}

/// The loopback address to put in URLs for a listener bound to `ip`.
fn url_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    }
}

fn io_err(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> std::io::Error {
    std::io::Error::other(e)
}

impl Simulator {
    /// Creates the CAs, binds the listener, writes `ca.pem` and starts serving.
    pub async fn start(opts: SimOptions) -> std::io::Result<Simulator> {
        let (dir, temp_dir) = match &opts.dir {
            Some(dir) => {
                tokio::fs::create_dir_all(dir).await?;
                (dir.clone(), None)
            }
            None => {
                let temp = tempfile::Builder::new().prefix("certsync-sim-").tempdir()?;
                (temp.path().to_path_buf(), Some(temp))
            }
        };
        let listener = tokio::net::TcpListener::bind(opts.listen).await?;
        let local = listener.local_addr()?;
        let addr = SocketAddr::new(url_ip(local.ip()), local.port());
        let endpoint = format!("https://{addr}");
        let metadata_listener = tokio::net::TcpListener::bind(opts.metadata_listen).await?;
        let local = metadata_listener.local_addr()?;
        let metadata_addr = SocketAddr::new(url_ip(local.ip()), local.port());

        let instance_count = opts.instances;
        let ip_san = addr.ip().to_string();
        // Thousands of CAs take a moment: keep them off the async workers.
        let (root, leaf, instances) = tokio::task::spawn_blocking(move || {
            let root = pki::make_ca("certsync-sim root CA").map_err(io_err)?;
            let mut sans = vec!["127.0.0.1", "::1", "localhost"];
            if !sans.contains(&ip_san.as_str()) {
                sans.push(&ip_san);
            }
            let leaf = root.issue_leaf(&sans).map_err(io_err)?;
            let instances = make_instances(instance_count)?;
            Ok::<_, std::io::Error>((root, leaf, instances))
        })
        .await
        .map_err(io_err)??;

        let ca_file = dir.join(CA_FILE_NAME);
        tokio::fs::write(&ca_file, root.info.pem.as_bytes()).await?;
        let tls = server::tls_config(&leaf)?;

        let project_id = opts
            .project_id
            .clone()
            .unwrap_or_else(|| util::random_hex(16));
        let token = opts.token.clone().unwrap_or_else(creds::random_token);
        let region = opts
            .region
            .clone()
            .unwrap_or_else(|| DEFAULT_REGION.to_owned());
        let (ak, sk) = opts
            .ak_sk
            .clone()
            .unwrap_or_else(|| (creds::random_ak(), creds::random_sk()));
        let project = Project {
            id: project_id.clone(),
            name: region.clone(),
        };
        let creds = creds::Creds::new(ak, sk, project);
        let world = Arc::new(state::World::new(
            endpoint,
            addr.port(),
            project_id,
            region,
            token,
            creds,
        ));
        for (id, cas) in instances {
            world.insert_instance(&id, cas);
        }
        let cancel = CancellationToken::new();
        server::spawn(listener, tls, world.clone(), cancel.clone());
        server::spawn_metadata(metadata_listener, world.clone(), cancel.clone());
        tracing::info!(
            endpoint = %world.endpoint,
            metadata = %metadata_addr,
            ca_file = %ca_file.display(),
            "simulator listening"
        );
        Ok(Simulator {
            inner: Arc::new(Inner {
                world,
                addr,
                metadata_addr,
                ca_file,
                ca_pem: root.info.pem.clone(),
                cancel,
                _temp_dir: temp_dir,
            }),
        })
    }

    fn world(&self) -> &state::World {
        &self.inner.world
    }

    /// The API base URL, `https://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        self.world().endpoint.clone()
    }

    /// The address the API is reached at (the loopback address when bound to an unspecified one).
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// `DIR/ca.pem`: the root the TLS server certificate chains to.
    pub fn ca_file(&self) -> PathBuf {
        self.inner.ca_file.clone()
    }

    /// The PEM of the root in [`Simulator::ca_file`].
    pub fn ca_pem(&self) -> String {
        self.inner.ca_pem.clone()
    }

    /// The project id the API expects in its paths.
    pub fn project_id(&self) -> String {
        self.world().project_id.clone()
    }

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
    pub fn set_ak_sk(&self, ak: &str, sk: &str) {
        self.world().creds.set_ak_sk(ak, sk);
    }

    /// The region this simulator plays (also the name of its project), e.g. `cn-north-4`.
    pub fn region(&self) -> String {
        self.world().region.clone()
    }

    /// The IAM base URL: the API's endpoint (IAM is served on the same listener).
    pub fn iam_endpoint(&self) -> String {
        self.endpoint()
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
    /// its region.
    pub fn projects(&self) -> Vec<Project> {
        self.world().creds.projects()
    }

    /// Replaces the projects `GET /v3/projects` (and token scopes) know, e.g. none or two with the
    /// region's name. The API itself keeps serving [`Simulator::project_id`] only.
    pub fn set_projects(&self, projects: &[Project]) {
        self.world().creds.set_projects(projects.to_vec());
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

    /// Instance ids in creation order.
    pub fn instance_ids(&self) -> Vec<String> {
        self.world().instance_ids()
    }

    /// Adds an instance with one category, `international`, and a fresh CA (no change if it exists).
    ///
    /// Panics if `id` is not `[A-Za-z0-9-]{1,64}`.
    pub fn add_instance(&self, id: &str) {
        if let Err(e) = self.world().add_instance(id) {
            panic!("certsync-sim: add_instance: {}", error_chain(&e));
        }
    }

    /// What ListInstances says about an instance. Panics if it does not exist.
    pub fn instance_meta(&self, id: &str) -> InstanceMeta {
        match self.world().meta(id) {
            Ok(meta) => meta,
            Err(e) => panic!("certsync-sim: instance_meta: {}", error_chain(&e)),
        }
    }

    /// Replaces what ListInstances says about an instance (name, datastore, status, SSL).
    /// Panics if it does not exist.
    pub fn set_instance_meta(&self, id: &str, meta: InstanceMeta) {
        if let Err(e) = self.world().set_meta(id, meta) {
            panic!("certsync-sim: set_instance_meta: {}", error_chain(&e));
        }
    }

    /// Removes an instance: the API answers 404 `DBS.200002` for it and its links 404 `NoSuchKey`.
    pub fn remove_instance(&self, id: &str) {
        self.world().remove_instance(id);
    }

    /// Sets the categories of an instance, in this order; each category has its own CA, created
    /// when the category is new. Panics if the instance does not exist.
    pub fn set_categories(&self, id: &str, categories: &[&str]) {
        if let Err(e) = self.world().set_categories(id, categories) {
            panic!("certsync-sim: set_categories: {}", error_chain(&e));
        }
    }

    /// Replaces a CA with a new key and serial under the same subject DN, and returns it.
    /// Panics if the instance or category does not exist.
    pub fn rotate(&self, id: &str, category: &str) -> CaInfo {
        match self.world().rotate(id, category, None, None) {
            Ok((info, _)) => (*info).clone(),
            Err(e) => panic!("certsync-sim: rotate: {}", error_chain(&e)),
        }
    }

    /// Replaces a CA with a new key and serial under the subject `CN={common_name},
    /// O=Huawei Cloud Simulator` (later rotations keep that name), and returns it. The name is
    /// used as given, control characters included (a newline, ESC), for tests of how outside
    /// text is printed. Panics if the instance or category does not exist.
    pub fn rotate_named(&self, id: &str, category: &str, common_name: &str) -> CaInfo {
        match self.world().rotate(id, category, Some(common_name), None) {
            Ok((info, _)) => (*info).clone(),
            Err(e) => panic!("certsync-sim: rotate_named: {}", error_chain(&e)),
        }
    }

    /// Rotates the CA of an instance's category to a new one valid until `not_after` (up to
    /// `9999-12-31T23:59:59Z`, RFC 5280's "no well-defined expiration"), and returns it.
    /// Panics if the instance or category does not exist.
    pub fn rotate_until(
        &self,
        id: &str,
        category: &str,
        not_after: time::OffsetDateTime,
    ) -> CaInfo {
        match self.world().rotate(id, category, None, Some(not_after)) {
            Ok((info, _)) => (*info).clone(),
            Err(e) => panic!("certsync-sim: rotate_until: {}", error_chain(&e)),
        }
    }

    /// The current CA of an instance's category. Panics if it does not exist.
    pub fn ca(&self, id: &str, category: &str) -> CaInfo {
        match self.world().ca(id, category) {
            Ok(info) => (*info).clone(),
            Err(e) => panic!("certsync-sim: ca: {}", error_chain(&e)),
        }
    }

    /// A TLS server certificate for `sans` (IP addresses or DNS names) signed by the current CA of
    /// an instance's category, as (certificate PEM, PKCS#8 key PEM). Panics if it does not exist.
    pub fn issue_server_cert(&self, id: &str, category: &str, sans: &[&str]) -> (String, String) {
        match self.world().issue_server_cert(id, category, sans) {
            Ok(leaf) => (leaf.cert_pem, leaf.key_pem),
            Err(e) => panic!("certsync-sim: issue_server_cert: {}", error_chain(&e)),
        }
    }

    /// Sets the fault of an instance, replacing any. Panics if the instance does not exist.
    pub fn set_fault(&self, id: &str, fault: Fault) {
        if let Err(e) = self.world().set_fault(id, fault) {
            panic!("certsync-sim: set_fault: {}", error_chain(&e));
        }
    }

    /// Clears the fault of an instance (no-op if it has none or does not exist).
    pub fn clear_fault(&self, id: &str) {
        self.world().clear_fault(id);
    }

    /// Replaces ListInstances' faults (for the whole project; an empty slice clears them).
    pub fn set_list_faults(&self, faults: &[ListFault]) {
        self.world().set_list_faults(faults);
    }

    /// ListInstances' faults in force.
    pub fn list_faults(&self) -> Vec<ListFault> {
        self.world().list_faults()
    }

    /// The request counters so far.
    pub fn stats(&self) -> Stats {
        self.world().stats()
    }

    /// Stops listening (promptly, on the server task) and closes idle connections; requests in
    /// flight are answered.
    pub fn shutdown(&self) {
        self.inner.cancel.cancel();
    }
}

/// `e` and its sources, joined by ": ".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Makes `count` instances with random ids and their `international` CAs.
fn make_instances(count: usize) -> std::io::Result<Vec<(String, state::CategoryCas)>> {
    (0..count)
        .map(|_| {
            let id = state::random_instance_id();
            let cas = state::new_instance_cas(&id, &[state::DEFAULT_CATEGORY]).map_err(io_err)?;
            Ok((id, cas))
        })
        .collect()
}
