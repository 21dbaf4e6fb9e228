//! Verifying an incoming signed request, as the API gateway does.
//!
//! Owns parsing `Authorization`, the date window, rebuilding the canonical request from what
//! arrived (the headers the request names as signed, the received query canonicalised) and the
//! constant-time comparison. It never echoes a key, a token or a signature in an error.

use std::fmt;
use std::time::{Duration, SystemTime};

use crate::canonical::{
    canonical_query_from_raw, canonical_request, canonical_uri, string_to_sign,
};
use crate::signer::body_hash;
use crate::{ALGORITHM, CONTENT_SHA256_HEADER, DATE_HEADER, MAX_CLOCK_SKEW, parse_date};

/// A request as it arrived.
#[derive(Clone, Copy)]
pub struct Incoming<'a> {
    /// The method.
    pub method: &'a str,
    /// The path as received (still percent-encoded).
    pub path: &'a str,
    /// The query as received, without `?` (empty for none).
    pub query: &'a str,
    /// Every received header, `(name, value)`; names in any case. The first of repeated names
    /// counts.
    pub headers: &'a [(&'a str, &'a str)],
    /// The body bytes.
    pub body: &'a [u8],
}

impl fmt::Debug for Incoming<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| *n).collect();
        f.debug_struct("Incoming")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("headers", &names)
            .finish_non_exhaustive()
    }
}

/// A request whose signature matched.
#[derive(Clone, PartialEq, Eq)]
pub struct Verified {
    /// The access key that signed it.
    pub access_key: String,
    /// The signed header names, lower-case, as `Authorization` listed them.
    pub signed_headers: Vec<String>,
    /// `X-Sdk-Date`.
    pub date: SystemTime,
}

impl fmt::Debug for Verified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verified")
            .field("access_key", &"<redacted>")
            .field("signed_headers", &self.signed_headers)
            .field("date", &self.date)
            .finish()
    }
}

/// Why a request's signature was refused. No variant carries a key, token or signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// No `Authorization` header.
    #[error("no Authorization header")]
    MissingAuthorization,
    /// `Authorization` names another algorithm.
    #[error("Authorization is not {ALGORITHM}")]
    UnsupportedAlgorithm,
    /// `Authorization` is not `SDK-HMAC-SHA256 Access=.., SignedHeaders=.., Signature=..`.
    #[error("malformed Authorization: {0}")]
    MalformedAuthorization(&'static str),
    /// No `X-Sdk-Date` header.
    #[error("no X-Sdk-Date header")]
    MissingDate,
    /// `X-Sdk-Date` is not `YYYYMMDDTHHMMSSZ`.
    #[error("X-Sdk-Date {0:?} is not YYYYMMDDTHHMMSSZ")]
    MalformedDate(String),
    /// `X-Sdk-Date` is more than [`MAX_CLOCK_SKEW`] from the verifier's clock.
    #[error("X-Sdk-Date {date} is {}s off the server's clock (at most {}s allowed)", skew.as_secs(), MAX_CLOCK_SKEW.as_secs())]
    DateOutOfRange {
        /// The header's value.
        date: String,
        /// How far off it is.
        skew: Duration,
    },
    /// The access key is not known.
    #[error("unknown access key")]
    UnknownAccessKey,
    /// A header listed in `SignedHeaders` did not arrive.
    #[error("signed header {0:?} is missing from the request")]
    MissingSignedHeader(String),
    /// The signature does not match.
    #[error("signature mismatch")]
    SignatureMismatch,
}

struct Authorization<'a> {
    access_key: &'a str,
    signed_headers: Vec<&'a str>,
    signature: Vec<u8>,
}

fn parse_authorization(value: &str) -> Result<Authorization<'_>, VerifyError> {
    use VerifyError::MalformedAuthorization as Bad;
    let value = value.trim();
    let (algorithm, rest) = value
        .split_once(' ')
        .ok_or(Bad("no space after the algorithm"))?;
    if algorithm != ALGORITHM {
        return Err(VerifyError::UnsupportedAlgorithm);
    }
    let (mut access, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (key, val) = part
            .trim()
            .split_once('=')
            .ok_or(Bad("a part has no '='"))?;
        let slot = match key {
            "Access" => &mut access,
            "SignedHeaders" => &mut signed,
            "Signature" => &mut signature,
            _ => return Err(Bad("unknown part")),
        };
        if slot.replace(val).is_some() {
            return Err(Bad("a part is repeated"));
        }
    }
    let access_key = access.filter(|a| !a.is_empty()).ok_or(Bad("no Access"))?;
    let signed = signed.ok_or(Bad("no SignedHeaders"))?;
    let signature = signature.ok_or(Bad("no Signature"))?;
    let signed_headers: Vec<&str> = signed.split(';').collect();
    if signed_headers
        .iter()
        .any(|h| h.is_empty() || h.bytes().any(|b| b.is_ascii_uppercase()))
    {
        return Err(Bad("SignedHeaders must be lower-case names"));
    }
    if signature.len() != 64 {
        return Err(Bad("Signature is not 64 hex digits"));
    }
    let signature = hex::decode(signature).map_err(|_| Bad("Signature is not hex"))?;
    Ok(Authorization {
        access_key,
        signed_headers,
        signature,
    })
}

fn header<'a>(incoming: &Incoming<'a>, name: &str) -> Option<&'a str> {
    incoming
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
}

/// Verifies `incoming`'s `SDK-HMAC-SHA256` signature at `now`. `secret_key` maps an access key
/// to its secret key (`None`: unknown). Checks, in order: `Authorization` shape, `X-Sdk-Date`
/// present, well-formed and within [`MAX_CLOCK_SKEW`] of `now`, the access key known, every
/// signed header present, then the HMAC (compared in constant time).
pub fn verify<K, F>(
    incoming: &Incoming<'_>,
    now: SystemTime,
    secret_key: F,
) -> Result<Verified, VerifyError>
where
    K: AsRef<[u8]>,
    F: FnOnce(&str) -> Option<K>,
{
    let auth = header(incoming, "Authorization").ok_or(VerifyError::MissingAuthorization)?;
    let auth = parse_authorization(auth)?;
    let date_text = header(incoming, DATE_HEADER).ok_or(VerifyError::MissingDate)?;
    let date =
        parse_date(date_text).ok_or_else(|| VerifyError::MalformedDate(date_text.to_string()))?;
    let skew = match now.duration_since(date) {
        Ok(d) => d,
        Err(e) => e.duration(),
    };
    if skew > MAX_CLOCK_SKEW {
        return Err(VerifyError::DateOutOfRange {
            date: date_text.to_string(),
            skew,
        });
    }
    let key = secret_key(auth.access_key).ok_or(VerifyError::UnknownAccessKey)?;
    let mut signed = Vec::with_capacity(auth.signed_headers.len());
    for name in &auth.signed_headers {
        let value = header(incoming, name)
            .ok_or_else(|| VerifyError::MissingSignedHeader((*name).to_string()))?;
        signed.push(((*name).to_string(), value));
    }
    let hash = body_hash(header(incoming, CONTENT_SHA256_HEADER), incoming.body);
    let canonical = canonical_request(
        incoming.method,
        &canonical_uri(incoming.path),
        &canonical_query_from_raw(incoming.query),
        &signed,
        &hash,
    );
    let to_sign = string_to_sign(date_text, &canonical);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.as_ref());
    ring::hmac::verify(&key, to_sign.as_bytes(), &auth.signature)
        .map_err(|_| VerifyError::SignatureMismatch)?;
    Ok(Verified {
        access_key: auth.access_key.to_string(),
        signed_headers: auth
            .signed_headers
            .iter()
            .map(|s| (*s).to_string())
            .collect(),
        date,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Signer, SigningRequest, parse_date};

    const SK: &str = "SKtestexample0000000000000000000000000001";

    fn signed(now: SystemTime) -> Vec<(String, String)> {
        let mut req = SigningRequest {
            method: "GET",
            host: "127.0.0.1:8443",
            path: "/v3/p/instances",
            query: "limit=10&offset=0",
            headers: vec![
                ("Content-Type".into(), "application/json".into()),
                ("X-Project-Id".into(), "p".into()),
            ],
            body: b"",
        };
        Signer::new("AK1", SK).sign(&mut req, now);
        req.headers
    }

    fn check(
        headers: &[(String, String)],
        query: &str,
        now: SystemTime,
    ) -> Result<Verified, VerifyError> {
        let h: Vec<(&str, &str)> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let incoming = Incoming {
            method: "GET",
            path: "/v3/p/instances",
            query,
            headers: &h,
            body: b"",
        };
        verify(&incoming, now, |ak| (ak == "AK1").then_some(SK))
    }

    fn set(headers: &mut [(String, String)], name: &str, value: &str) {
        let slot = headers
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .unwrap();
        slot.1 = value.to_string();
    }

    #[test]
    fn accepts_its_own_signature_with_the_query_in_any_order() {
        let now = parse_date("20240501T123456Z").unwrap();
        let h = signed(now);
        let ok = check(&h, "limit=10&offset=0", now).unwrap();
        assert_eq!(ok.access_key, "AK1");
        assert_eq!(
            ok.signed_headers,
            ["content-type", "host", "x-project-id", "x-sdk-date"]
        );
        check(&h, "offset=0&limit=10", now).unwrap();
        // Just inside the window, both ways.
        check(&h, "offset=0&limit=10", now + MAX_CLOCK_SKEW).unwrap();
        check(&h, "offset=0&limit=10", now - MAX_CLOCK_SKEW).unwrap();
    }

    #[test]
    fn refuses_each_kind_of_bad_request() {
        let now = parse_date("20240501T123456Z").unwrap();
        let good = signed(now);
        let q = "limit=10&offset=0";
        assert_eq!(
            check(&good, "limit=11&offset=0", now),
            Err(VerifyError::SignatureMismatch)
        );
        let late = now + MAX_CLOCK_SKEW + Duration::from_secs(1);
        assert!(matches!(
            check(&good, q, late),
            Err(VerifyError::DateOutOfRange { .. })
        ));
        let early = now - MAX_CLOCK_SKEW - Duration::from_secs(1);
        assert!(matches!(
            check(&good, q, early),
            Err(VerifyError::DateOutOfRange { .. })
        ));

        let mut h = good.clone();
        set(&mut h, "X-Project-Id", "other");
        assert_eq!(check(&h, q, now), Err(VerifyError::SignatureMismatch));

        let mut h = good.clone();
        set(&mut h, "X-Sdk-Date", "20240501T123457Z");
        assert_eq!(check(&h, q, now), Err(VerifyError::SignatureMismatch));

        let mut h = good.clone();
        set(&mut h, "X-Sdk-Date", "2024-05-01T12:34:56Z");
        assert!(matches!(
            check(&h, q, now),
            Err(VerifyError::MalformedDate(_))
        ));

        let h: Vec<_> = good
            .iter()
            .filter(|(n, _)| n != "X-Sdk-Date")
            .cloned()
            .collect();
        assert_eq!(check(&h, q, now), Err(VerifyError::MissingDate));

        let h: Vec<_> = good
            .iter()
            .filter(|(n, _)| n != "X-Project-Id")
            .cloned()
            .collect();
        assert_eq!(
            check(&h, q, now),
            Err(VerifyError::MissingSignedHeader("x-project-id".into()))
        );

        let h: Vec<_> = good
            .iter()
            .filter(|(n, _)| n != "Authorization")
            .cloned()
            .collect();
        assert_eq!(check(&h, q, now), Err(VerifyError::MissingAuthorization));

        let auth = good
            .iter()
            .find(|(n, _)| n == "Authorization")
            .unwrap()
            .1
            .clone();
        let mut h = good.clone();
        set(
            &mut h,
            "Authorization",
            &auth.replace("Access=AK1", "Access=AK2"),
        );
        assert_eq!(check(&h, q, now), Err(VerifyError::UnknownAccessKey));
        set(
            &mut h,
            "Authorization",
            &auth.replace("SDK-HMAC-SHA256", "SDK-HMAC-SM3"),
        );
        assert_eq!(check(&h, q, now), Err(VerifyError::UnsupportedAlgorithm));
        for bad in [
            auth.replace(", Signature=", ", Sig="),
            auth.replace("Signature=", "Signature=zz"),
            auth.replace("SignedHeaders=content-type", "SignedHeaders=Content-Type"),
            auth.replace(", SignedHeaders", ", Access=AK1, SignedHeaders"),
            "SDK-HMAC-SHA256".to_string(),
        ] {
            set(&mut h, "Authorization", &bad);
            assert!(
                matches!(
                    check(&h, q, now),
                    Err(VerifyError::MalformedAuthorization(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn errors_and_debug_never_show_keys_or_signatures() {
        let now = parse_date("20240501T123456Z").unwrap();
        let h = signed(now);
        let ok = check(&h, "limit=10&offset=0", now).unwrap();
        assert!(!format!("{ok:?}").contains("AK1"));
        let signer = Signer::new("AK1", SK);
        let shown = format!("{signer:?}");
        assert!(!shown.contains("AK1") && !shown.contains(SK), "{shown}");
        let e = check(&h, "limit=12", now).unwrap_err();
        let sig = &h.iter().find(|(n, _)| n == "Authorization").unwrap().1[80..];
        assert!(!e.to_string().contains(sig));
    }
}
