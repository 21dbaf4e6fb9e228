//! The request headers that carry credentials, in one list: which ones reqwest must treat as
//! sensitive, and which values were sent (so that an answer echoing one can be cleaned).
//!
//! A leaf that both `api` (API requests) and `auth` (IAM and metadata requests) use; it builds
//! no request and holds no credential.

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

/// Headers whose value is a credential (lower case): a token, or the signature with its access
/// key. Marked sensitive, so that no `Debug` of a request shows them.
const CREDENTIAL_HEADERS: [&str; 4] = [
    "authorization",
    "x-auth-token",
    "x-security-token",
    "x-metadata-token",
];

/// Headers as reqwest takes them; credential headers are marked sensitive so that no `Debug`
/// of a request shows them. `Err` names the header (never its value).
pub fn header_map(headers: &[(String, String)]) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| name.clone())?;
        let mut value = HeaderValue::from_str(value).map_err(|_| name.clone())?;
        if CREDENTIAL_HEADERS.contains(&header.as_str()) {
            value.set_sensitive(true);
        }
        map.append(header, value);
    }
    Ok(map)
}

/// The credential values in `headers` as sent: tokens, and the access key inside
/// `Authorization`. See [`crate::cloud::fault::scrub`].
pub fn secrets_in(headers: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    for (name, value) in headers {
        let name = name.to_ascii_lowercase();
        if name == "authorization" {
            if let Some(rest) = value.split("Access=").nth(1) {
                out.push(
                    rest.split(',')
                        .next()
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                );
            }
        } else if CREDENTIAL_HEADERS.contains(&name.as_str()) {
            out.push(value.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::fault::{parse_fault, scrub};

    #[test]
    fn faults_lose_every_credential_that_was_sent() {
        let sent = [
            ("Content-Type".to_string(), "application/json".to_string()),
            ("X-Security-Token".to_string(), "gQpjbiTOKEN".to_string()),
            (
                "Authorization".to_string(),
                "SDK-HMAC-SHA256 Access=AKUNKNOWN01, SignedHeaders=host, Signature=00".to_string(),
            ),
        ];
        let secrets = secrets_in(&sent);
        assert_eq!(secrets, ["gQpjbiTOKEN", "AKUNKNOWN01"]);
        let fault = parse_fault(
            401,
            br#"{"error_code":"APIGW.0301","error_msg":"Incorrect IAM authentication information: ak AKUNKNOWN01 not exist"}"#,
            None,
        );
        let fault = scrub(fault, &secrets);
        assert_eq!(
            fault.message,
            "Incorrect IAM authentication information: ak <redacted> not exist"
        );
        assert_eq!(fault.code, "APIGW.0301");
    }

    #[test]
    fn credential_headers_are_sensitive() {
        let map = header_map(&[
            ("X-Auth-Token".into(), "VALUE1".into()),
            ("X-Security-Token".into(), "VALUE2".into()),
            ("Authorization".into(), "SDK-HMAC-SHA256 VALUE3".into()),
            ("Content-Type".into(), "application/json".into()),
        ])
        .unwrap();
        assert!(map["x-auth-token"].is_sensitive());
        assert!(map["x-security-token"].is_sensitive());
        assert!(map["authorization"].is_sensitive());
        assert!(!map["content-type"].is_sensitive());
        let shown = format!("{map:?}");
        assert!(!shown.contains("VALUE"), "{shown}");
        assert_eq!(
            header_map(&[("X-Auth-Token".into(), "a\nb".into())]),
            Err("X-Auth-Token".to_string())
        );
    }
}
