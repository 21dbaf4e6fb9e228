//! The simulator's public value types: CA descriptions, counters and faults.
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
    /// API requests answered 401 (bad token or project).
    pub unauthorized: u64,
    /// Download-link GETs answered 200 with a body (including faulty bodies).
    pub downloads: u64,
}

/// A misbehaviour of one instance, set with `Simulator::set_fault` or `PUT /_sim/instances/{id}/fault`.
///
/// Only one fault is active per instance; setting another replaces it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// The API answers `status` with a realistic error body for the next `times` requests
    /// (`None`: until cleared).
    ApiStatus { status: u16, times: Option<u32> },
    /// The API answers 429 with `Retry-After` and an `APIG.0308` body for the next `times` requests.
    RateLimited {
        retry_after_secs: u64,
        times: Option<u32>,
    },
    /// The API waits this long before answering (other instances are not delayed).
    SlowApi { millis: u64 },
    /// The download waits this long before answering (other instances are not delayed).
    SlowDownload { millis: u64 },
    /// The download announces `Content-Length: N` and closes the connection after N/2 bytes.
    TruncatedDownload,
    /// The download body is this many bytes (the CA PEM repeated, then padding).
    OversizeDownload { bytes: usize },
    /// The download (or, for `GarbageJson` and `EmptyCerts`, the API answer) is wrong.
    Content { content: BadContent },
    /// The download answers 302 to the same path and query on `https://localhost:PORT`.
    RedirectOtherHost,
    /// The download answers 302 to a fresh link on the same host, forever.
    RedirectLoop,
    /// The download answers OBS's 403 `AccessDenied` "Request has expired".
    ExpiredLink,
    /// The API returns `http://` download links.
    PlainHttpLink,
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
