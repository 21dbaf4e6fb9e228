//! The simulator's public value types: CA descriptions, instance descriptions and nodes,
//! projects, the gateway's rate limit, metadata-service modes, counters and faults.
//!
//! Owns only plain data (with its serde shape, which the control API and tests rely on);
//! it must not hold behaviour that touches the network or the shared state.

use serde::{Deserialize, Serialize};

/// A CA certificate the simulator holds, as the tests see it.
#[derive(Clone, Debug)]
pub struct CaInfo {
    /// The certificate as PEM (one `CERTIFICATE` block, `\n` line ends).
    pub pem: String,
    /// The certificate's DER bytes.
    pub der: Vec<u8>,
    /// Lower-case hex SHA-256 of `der` (the fingerprint certsync reports).
    pub sha256_hex: String,
    /// The CA's private key as PKCS#8 PEM (tests sign leaves with it, or serve it as bad content).
    pub key_pem: String,
}

/// Request counters of one simulator, since it started.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Stats {
    /// Requests to the download-link API path, whatever their answer.
    pub api_requests: u64,
    /// Requests to ListInstances (`GET /v3/{project_id}/instances`), whatever their answer.
    pub list_requests: u64,
    /// Gateway requests (download-link, ListInstances, IAM projects) answered 401 for their
    /// credentials (token, AK/SK signature, project).
    pub unauthorized: u64,
    /// Download-link GETs answered 200 with a body (including faulty bodies).
    pub downloads: u64,
    /// IAM tokens issued by `POST /v3/auth/tokens`.
    pub iam_tokens_issued: u64,
    /// `POST /v3/auth/tokens` requests refused (bad password, unknown user or scope).
    pub iam_token_failures: u64,
    /// `GET /v3/projects` requests, whatever their answer.
    pub project_lookups: u64,
    /// Session tokens handed out by the metadata service (`PUT /meta-data/latest/api/token`).
    pub metadata_session_tokens: u64,
    /// Temporary credentials handed out by the metadata service
    /// (`GET /openstack/latest/securitykey` answered 200).
    pub metadata_fetches: u64,
    /// Gateway requests (download-link, ListInstances, IAM tokens and projects) answered 429
    /// `APIG.0308` because their user was over the [`RateLimit`]. The 429s of a
    /// [`Fault::RateLimited`] or [`Fault::ApiStatus`] are not counted here. A throttled request
    /// still counts in `api_requests`, `list_requests` or `project_lookups`.
    pub throttled: u64,
}

/// The API gateway's per-user request rate (SPEC section 11), set with
/// `SimOptions::rate_limit`, `Simulator::set_rate_limit` or `PUT /_sim/rate-limit`.
///
/// Each user has a token bucket that refills at `per_second` tokens a second up to a burst of
/// `per_second`; a request that finds no token is answered 429 `APIG.0308` (and takes none).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    /// Requests a second per user, also the burst; 0 throttles every request.
    pub per_second: u32,
    /// The `Retry-After` seconds a 429 carries; `None`: no `Retry-After` header.
    #[serde(default)]
    pub retry_after: Option<u32>,
}

/// One node of an instance, as ListInstances lists it in `groups[].nodes[]`, set with
/// `Simulator::set_nodes` or `PUT /_sim/instances/{id}/nodes`. Tests point these at real TLS
/// servers (the endpoint verification of SPEC section 13).
///
/// A new instance has one node, [`Node::DEFAULT_IP`] port [`Node::DEFAULT_PORT`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// `private_ip`: the address the node serves on.
    pub private_ip: String,
    /// `port`, answered as a string like the instance's own `port`.
    pub port: u16,
}

impl Node {
    /// The address of a new instance's node: loopback, so a client that probes listed nodes
    /// gets a fast refusal rather than a timeout on an address nobody serves.
    pub const DEFAULT_IP: &'static str = "127.0.0.1";
    /// The port of a new instance's node: GeminiDB's default service port.
    pub const DEFAULT_PORT: u16 = 8635;

    /// A node at `private_ip`:`port`.
    pub fn new(private_ip: impl Into<String>, port: u16) -> Self {
        Self {
            private_ip: private_ip.into(),
            port,
        }
    }
}

impl Default for Node {
    /// The node a new instance has: `127.0.0.1` port 8635.
    fn default() -> Self {
        Self::new(Self::DEFAULT_IP, Self::DEFAULT_PORT)
    }
}

/// What ListInstances says about an instance besides its id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceMeta {
    /// The instance name; new instances are called `inst-N` (N counts from 1 in creation order).
    pub name: String,
    /// `datastore.type`: `cassandra`, `mongodb` (the default), `influxdb`, `redis`, ...
    pub datastore_type: String,
    /// `datastore.version`; `4.0` by default.
    pub datastore_version: String,
    /// `status`: `normal` (the default), `abnormal`, `creating`, `frozen`, ...
    pub status: String,
    /// `ssl`: answered as `"1"` (true, the default) or `"0"`.
    pub ssl: bool,
}

impl InstanceMeta {
    /// The description a new instance gets: `inst-{n}`, mongodb 4.0, normal, SSL on.
    pub fn numbered(n: usize) -> Self {
        Self {
            name: format!("inst-{n}"),
            datastore_type: "mongodb".to_owned(),
            datastore_version: "4.0".to_owned(),
            status: "normal".to_owned(),
            ssl: true,
        }
    }
}

/// An IAM project, as `GET /v3/projects` lists it (a project's name is its region, e.g. `cn-north-4`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    /// The project id (32 hex digits).
    pub id: String,
    /// Its name: the region.
    pub name: String,
}

/// How the ECS metadata service answers `PUT /meta-data/latest/api/token`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MetadataTokenMode {
    /// It hands out session tokens, and `GET /openstack/latest/securitykey` requires a valid one
    /// in `X-Metadata-Token` (401 otherwise).
    #[default]
    Required,
    /// It answers this status (the SDK goes on without a token on 404, 405 and 503), and the
    /// credentials are served without a session token (IMDSv1 style).
    Unsupported {
        /// The HTTP status of the token request.
        status: u16,
    },
}

/// A misbehaviour of one instance, set with `Simulator::set_fault` or `PUT /_sim/instances/{id}/fault`.
///
/// Only one fault is active per instance; setting another replaces it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// The API answers `status` with a realistic error body for the next `times` requests
    /// (`None`: until cleared).
    ApiStatus {
        /// The HTTP status.
        status: u16,
        /// How many requests (`None`: until cleared).
        times: Option<u32>,
    },
    /// The API answers 429 with `Retry-After` and an `APIG.0308` body for the next `times` requests.
    RateLimited {
        /// The `Retry-After` seconds.
        retry_after_secs: u64,
        /// How many requests (`None`: until cleared).
        times: Option<u32>,
    },
    /// The API waits this long before answering (other instances are not delayed).
    SlowApi {
        /// The delay.
        millis: u64,
    },
    /// The download waits this long before answering (other instances are not delayed).
    SlowDownload {
        /// The delay.
        millis: u64,
    },
    /// The download announces `Content-Length: N` and closes the connection after N/2 bytes.
    TruncatedDownload,
    /// The download body is this many bytes (the CA PEM repeated, then padding).
    OversizeDownload {
        /// The body's size.
        bytes: usize,
    },
    /// The download (or, for `GarbageJson` and `EmptyCerts`, the API answer) is wrong.
    Content {
        /// What is wrong with it.
        content: BadContent,
    },
    /// The download answers 302 to the same path and query on `https://localhost:PORT`.
    RedirectOtherHost,
    /// The download answers 302 to a fresh link on the same host, forever.
    RedirectLoop,
    /// The download answers OBS's 403 `AccessDenied` "Request has expired".
    ExpiredLink,
    /// The API returns `http://` download links.
    PlainHttpLink,
}

/// A misbehaviour of ListInstances (`GET /v3/{project_id}/instances`), for the whole project:
/// set with `Simulator::set_list_faults` or `PUT /_sim/list-faults`. Several may be in force at
/// once; they combine (ignoring offset with a huge total is a listing that never ends).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ListFault {
    /// Every page is the page at offset 0, whatever `offset` asks for (`limit` and the
    /// filters still apply).
    IgnoresOffset,
    /// `total_count` is 10^12 (a trillion); the pages themselves are the real ones.
    HugeTotal,
    /// Past the real instances, every page is filled up to `limit` with made-up instances
    /// (ids `ghost-N`, names `ghost-N`, `ssl` `"0"`, no certificates), so a client that trusts
    /// only full pages never reaches the end. `total_count` stays the real count unless
    /// `HugeTotal` is also set.
    EndlessPages,
}

/// Kinds of wrong content for [`Fault::Content`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BadContent {
    /// An HTML error page served with status 200.
    Html,
    /// The CA PEM followed by its `PRIVATE KEY` block.
    CaWithPrivateKey,
    /// A leaf (end-entity) certificate signed by the CA instead of the CA.
    NotCa,
    /// A CA certificate whose validity ended a year ago.
    Expired,
    /// The API answers 200 with a body that is not JSON.
    GarbageJson,
    /// The API answers `{"certs":[]}`.
    EmptyCerts,
}
