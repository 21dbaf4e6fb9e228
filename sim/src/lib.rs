//! certsync-sim: a stand-in for Huawei Cloud on loopback, over real TLS, for certsync's tests,
//! `certsync demo` and the benchmarks (SPEC section 11).
//!
//! It serves, on one HTTPS listener:
//! - the GaussDB NoSQL download-link API, `GET /v3/{project_id}/instances/{id}/ssl-cert/download-link`,
//!   and ListInstances, `GET /v3/{project_id}/instances` (paging, filters, node addresses), for
//!   one or several projects (regions) of one account, both behind the API gateway's
//!   authentication: `X-Auth-Token`, or an `SDK-HMAC-SHA256` AK/SK signature (verified with
//!   certsync-sign, as Huawei's SDKs sign) with permanent or temporary credentials, answering
//!   with the cloud's status codes, headers and error bodies;
//! - IAM: `POST /v3/auth/tokens` (password) and `GET /v3/projects`;
//! - the gateway's throttling of both, per user (a token bucket each; 429 `APIG.0308`), after
//!   authentication;
//! - OBS-style pre-signed download links (`/obs/...`), freshly minted on every API answer and
//!   checked (signature, expiry) when fetched;
//! - a control API under `/_sim/` to change instances, CAs and faults from another process;
//!
//! and, on a second, plain-HTTP listener, the ECS metadata service (session token, temporary
//! credentials).
//!
//! Module map: `model` (public value types), `simulator` (the [`Simulator`]'s Rust API besides
//! start-up, split into `accounts` and `instances`), `pki` (certificate generation), `link`
//! (link signing), `creds` (identities: token, AK/SK, extra users, IAM users and tokens,
//! temporary credentials, IAM's projects), `throttle` (per-user token buckets), `state` (the
//! served projects, instances with their nodes, faults, counters; hands out answer *plans*),
//! `router` (method and path dispatch), `auth` (the gateway's credential checks), `api`,
//! `instances`, `iam`, `metadata`, `obs`, `control` (handlers), `http` (bodies and error
//! documents), `server` (TLS, HTTP/1.1, connections).
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
mod simulator;
mod state;
mod throttle;
mod util;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

pub use model::{
    BadContent, CaInfo, Fault, InstanceMeta, ListFault, MetadataTokenMode, Node, Project,
    RateLimit, Stats,
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
    /// How many instances to create at start, in the simulator's own project (random ids
    /// shaped like real ones); default 1.
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
    /// The gateway's per-user rate limit; `None` (the default): no throttling.
    pub rate_limit: Option<RateLimit>,
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
            rate_limit: None,
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
            .field("rate_limit", &self.rate_limit)
            .finish()
    }
}

/// A running simulator. Cheap to clone; the server stops when [`Simulator::shutdown`] is called
/// or the last handle is dropped.
///
/// The Rust methods that name an instance, category or project panic when it does not exist (or
/// the id is not `[A-Za-z0-9-]{1,64}`): they are test set-up, where a typo must fail loudly. The
/// control API answers 404/400/409 instead. Besides the methods here, `simulator/accounts.rs`
/// (credentials, users, projects, the rate limit, the metadata service) and
/// `simulator/instances.rs` (instances, nodes, CAs, faults) hold the rest.
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
        let token = opts.token.clone().unwrap_or_else(util::random_token);
        let region = opts
            .region
            .clone()
            .unwrap_or_else(|| DEFAULT_REGION.to_owned());
        let (ak, sk) = opts
            .ak_sk
            .clone()
            .unwrap_or_else(|| (util::random_ak(), util::random_sk()));
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
            opts.rate_limit,
        ));
        for (id, cas) in instances {
            world
                .insert_instance(&world.project_id, &id, cas)
                .map_err(io_err)?;
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

    /// The simulator's own (first) project's id, which the API expects in its paths; see
    /// [`Simulator::add_project`] for more.
    pub fn project_id(&self) -> String {
        self.world().project_id.clone()
    }

    /// The region this simulator plays (also the name of its own project), e.g. `cn-north-4`.
    pub fn region(&self) -> String {
        self.world().region.clone()
    }

    /// The IAM base URL: the API's endpoint (IAM is served on the same listener).
    pub fn iam_endpoint(&self) -> String {
        self.endpoint()
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
