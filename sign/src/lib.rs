//! certsync-sign: Huawei Cloud's `SDK-HMAC-SHA256` request signature, byte for byte as Huawei's
//! SDKs build it (huaweicloudsdkcore `signer.py`), for both ends of the wire.
//!
//! - [`Signer`] signs an outgoing request (certsync): it adds `X-Sdk-Content-Sha256` when the body
//!   is not JSON/BSON, `X-Sdk-Date` (unless one is set), `Host`, and `Authorization`.
//! - [`verify`] checks an incoming request (the simulator): it recomputes the signature over the
//!   headers the request says it signed, compares in constant time, and refuses a missing,
//!   malformed or stale (more than [`MAX_CLOCK_SKEW`] off) `X-Sdk-Date`.
//!
//! The canonical pieces ([`canonical_uri`], [`canonical_query`], [`canonical_request`],
//! [`string_to_sign`]) are public because the canonical query is also what goes on the wire, and
//! because the reference vectors pin each of them.
//!
//! This crate does no I/O, reads no clock (callers pass `now`), and never puts a key, a token or
//! a signature into an error or a `Debug` output.
#![forbid(unsafe_code)]

mod canonical;
mod signer;
mod verify;

#[cfg(test)]
mod vectors;

use std::time::{Duration, SystemTime};

pub use canonical::{
    canonical_query, canonical_query_from_raw, canonical_request, canonical_uri, hex_sha256,
    string_to_sign,
};
pub use signer::{Signature, Signer, SigningRequest};
pub use verify::{Incoming, Verified, VerifyError, verify};

/// The algorithm name, first word of `Authorization` and of the string to sign.
pub const ALGORITHM: &str = "SDK-HMAC-SHA256";
/// The header carrying the signing time, `YYYYMMDDTHHMMSSZ` in UTC.
pub const DATE_HEADER: &str = "X-Sdk-Date";
/// The header that replaces the body hash (the SDK sets it for non-JSON bodies).
pub const CONTENT_SHA256_HEADER: &str = "X-Sdk-Content-Sha256";
/// The value the SDK puts in [`CONTENT_SHA256_HEADER`].
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// How far `X-Sdk-Date` may be from the verifier's clock (APIG's documented 15 minutes).
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(15 * 60);

const DATE_FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");

/// `now` as `X-Sdk-Date` writes it: `20240501T123456Z` (UTC, whole seconds).
pub fn format_date(now: SystemTime) -> String {
    time::OffsetDateTime::from(now)
        .format(DATE_FORMAT)
        .expect("a UTC date always formats")
}

/// Parses an `X-Sdk-Date` value; `None` unless it is exactly `YYYYMMDDTHHMMSSZ`.
pub fn parse_date(value: &str) -> Option<SystemTime> {
    if value.len() != 16 {
        return None;
    }
    time::PrimitiveDateTime::parse(value, DATE_FORMAT)
        .ok()
        .map(|t| t.assume_utc().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_and_refuse_other_shapes() {
        let t = parse_date("20240501T123456Z").unwrap();
        assert_eq!(format_date(t), "20240501T123456Z");
        for bad in [
            "",
            "2024-05-01T12:34:56Z",
            "20240501T123456",
            "20240501T123456+0000",
            "20241301T123456Z",
            "20240501T126056Z",
            "x0240501T123456Z",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }
}
