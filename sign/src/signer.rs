//! Signing an outgoing request, in the order `Signer.sign` does it.
//!
//! Owns the headers the signer adds (`X-Sdk-Content-Sha256`, `X-Sdk-Date`, `Host`,
//! `Authorization`) and the choice of signed headers. The caller adds what the SDK's credentials
//! add before signing (`X-Project-Id`, `X-Security-Token`) and sends every header afterwards,
//! with the query exactly as given.

use std::fmt;
use std::time::SystemTime;

use crate::canonical::{
    canonical_query_from_raw, canonical_request, canonical_uri, hex_sha256, signed_header_list,
    string_to_sign,
};
use crate::{ALGORITHM, CONTENT_SHA256_HEADER, DATE_HEADER, UNSIGNED_PAYLOAD, format_date};

/// An AK/SK pair ready to sign. `Debug` shows neither.
pub struct Signer {
    access_key: String,
    key: ring::hmac::Key,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Signer { access_key: <redacted>, secret_key: <redacted> }")
    }
}

/// A request about to be signed.
#[derive(Clone)]
pub struct SigningRequest<'a> {
    /// `GET`, `POST`, ... as sent.
    pub method: &'a str,
    /// The endpoint's host with its port when it has one (the SDK's `netloc`); becomes `Host`
    /// unless `headers` already hold one.
    pub host: &'a str,
    /// The resource path as sent.
    pub path: &'a str,
    /// The query as sent, without `?`. Send [`crate::canonical_query`]'s output: the SDK sends
    /// the canonical form, and a verifier canonicalises what it receives.
    pub query: &'a str,
    /// Every header that will be sent; [`Signer::sign`] appends the ones it adds. Names without
    /// `_` are signed.
    pub headers: Vec<(String, String)>,
    /// The exact body bytes (empty for none).
    pub body: &'a [u8],
}

impl fmt::Debug for SigningRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Header values may hold a security token; only the names are shown.
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("SigningRequest")
            .field("method", &self.method)
            .field("host", &self.host)
            .field("path", &self.path)
            .field("headers", &names)
            .finish_non_exhaustive()
    }
}

/// What signing produced, each piece as the reference vectors record it.
#[derive(Clone, PartialEq, Eq)]
pub struct Signature {
    /// The canonical request.
    pub canonical_request: String,
    /// The string to sign.
    pub string_to_sign: String,
    /// `h1;h2;...`.
    pub signed_headers: String,
    /// Lower-case hex HMAC-SHA256.
    pub signature: String,
    /// The `Authorization` value.
    pub authorization: String,
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The Authorization value replays for 15 minutes: not for logs.
        f.debug_struct("Signature")
            .field("signed_headers", &self.signed_headers)
            .finish_non_exhaustive()
    }
}

pub(crate) fn find<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The body hash: `X-Sdk-Content-Sha256`'s literal value when it is set and there is a body,
/// else the hex SHA-256 of the body.
pub(crate) fn body_hash(content_sha256: Option<&str>, body: &[u8]) -> String {
    match content_sha256 {
        Some(v) if !body.is_empty() => v.to_string(),
        _ => hex_sha256(body),
    }
}

impl Signer {
    /// A signer for access key `access_key` and secret key `secret_key` (used as the HMAC key
    /// as it is: the SDK derives nothing from it).
    pub fn new(access_key: impl Into<String>, secret_key: &str) -> Signer {
        Signer {
            access_key: access_key.into(),
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret_key.as_bytes()),
        }
    }

    /// The access key, for the wire.
    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    /// Signs `request` at `now`: appends `X-Sdk-Content-Sha256: UNSIGNED-PAYLOAD` when a
    /// `Content-Type` is set that is neither `application/json*` nor `application/bson*`,
    /// `X-Sdk-Date` (unless set: a set date is kept and signed), `Host` (unless set) and
    /// `Authorization` to `request.headers`.
    pub fn sign(&self, request: &mut SigningRequest<'_>, now: SystemTime) -> Signature {
        let headers = &mut request.headers;
        if let Some(ct) = find(headers, "Content-Type")
            && !ct.starts_with("application/json")
            && !ct.starts_with("application/bson")
            && find(headers, CONTENT_SHA256_HEADER).is_none()
        {
            headers.push((CONTENT_SHA256_HEADER.into(), UNSIGNED_PAYLOAD.into()));
        }
        if find(headers, DATE_HEADER).is_none() {
            headers.push((DATE_HEADER.into(), format_date(now)));
        }
        if find(headers, "Host").is_none() {
            headers.push(("Host".into(), request.host.to_string()));
        }
        let mut signed: Vec<(String, &str)> = headers
            .iter()
            .filter(|(n, _)| !n.contains('_'))
            .map(|(n, v)| (n.to_ascii_lowercase(), v.as_str()))
            .collect();
        signed.sort_by(|a, b| a.0.cmp(&b.0));
        let date = find(headers, DATE_HEADER).expect("added above");
        let hash = body_hash(find(headers, CONTENT_SHA256_HEADER), request.body);
        let canonical = canonical_request(
            request.method,
            &canonical_uri(request.path),
            &canonical_query_from_raw(request.query),
            &signed,
            &hash,
        );
        let to_sign = string_to_sign(date, &canonical);
        let signature = hex::encode(ring::hmac::sign(&self.key, to_sign.as_bytes()));
        let signed_headers = signed_header_list(&signed);
        let authorization = format!(
            "{ALGORITHM} Access={}, SignedHeaders={signed_headers}, Signature={signature}",
            self.access_key
        );
        headers.push(("Authorization".into(), authorization.clone()));
        Signature {
            canonical_request: canonical,
            string_to_sign: to_sign,
            signed_headers,
            signature,
            authorization,
        }
    }
}
