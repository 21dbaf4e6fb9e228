//! Entry points for the cargo-fuzz targets in `fuzz/`, and for nothing else.
//!
//! Owns: thin public wrappers around parsers that are crate-private (the API's JSON answers,
//! the store's manifest), so that the fuzz crate, which links certsync as an ordinary
//! dependency, can reach them. Public parsers (`validate::validate`, `config::parse`) are
//! fuzzed directly and have no wrapper here.
//!
//! Must not: hold logic of its own (each function only calls into the crate, so a crash found
//! through it is a crash of the real code path), or be used by certsync itself. Hidden from the
//! docs and not part of the crate's API: it may change with the parsers it exposes.
#![doc(hidden)]

use crate::cloud::api::{self, ApiError, InstancesPage, Listing};
use crate::cloud::http::RedactedUrl;
use crate::store::manifest::Manifest;

/// `cloud::api::parse_listing`: one ListSslCertDownloadAddresses answer body.
pub fn parse_listing(
    body: &[u8],
    request_id: Option<String>,
    shown: &RedactedUrl,
) -> Result<Listing, ApiError> {
    api::parse_listing(body, request_id, shown)
}

/// `cloud::api::parse_instances_page`: one ListInstances answer body.
pub fn parse_instances_page(body: &[u8], shown: &RedactedUrl) -> Result<InstancesPage, ApiError> {
    api::parse_instances_page(body, shown)
}

/// `store::manifest::Manifest::parse`, and for a manifest it accepts, the bytes the store
/// would write back for it (`Manifest::to_bytes`): the manifest type itself is crate-private.
pub fn parse_manifest(data: &[u8]) -> Result<Vec<u8>, String> {
    Manifest::parse(data)
        .map(|manifest| manifest.to_bytes())
        .map_err(|e| e.to_string())
}
