//! The error answers of Huawei Cloud's services (the API, IAM, the ECS metadata service), read
//! the way Huawei's SDK reads them, and cleaned of the credentials that were sent.
//!
//! Owns [`ApiFault`], [`parse_fault`] and [`scrub`]. A leaf: it knows nothing of requests,
//! credentials or retries, so that `api` and `auth` can both read faults without depending on
//! each other. Every text it keeps from a body is cut short and free of control characters.

/// An error answer of the API, read as the SDK reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiFault {
    /// HTTP status.
    pub status: u16,
    /// `error_code` (or its SDK fallbacks); the status as text when absent.
    pub code: String,
    /// `error_msg` (or its fallbacks); a short excerpt of the body when absent.
    pub message: String,
    /// `X-Request-Id`.
    pub request_id: Option<String>,
}

impl std::fmt::Display for ApiFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {} {}: {}", self.status, self.code, self.message)?;
        if let Some(id) = &self.request_id {
            write!(f, " (request id {id})")?;
        }
        Ok(())
    }
}

/// Reads an error body as Huawei's SDK does: `error_code`/`error_msg`, else
/// `errorCode`/`errorMsg`, else `code`/`message`, else the same inside nested objects (a later
/// match wins); a missing code becomes the status, a missing message a short excerpt.
pub fn parse_fault(status: u16, body: &[u8], request_id: Option<String>) -> ApiFault {
    const PAIRS: [(&str, &str); 3] = [
        ("error_code", "error_msg"),
        ("errorCode", "errorMsg"),
        ("code", "message"),
    ];
    fn pair(obj: &serde_json::Map<String, serde_json::Value>) -> Option<(String, String)> {
        let text = |v: &serde_json::Value| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        PAIRS
            .iter()
            .find_map(|(c, m)| match (obj.get(*c), obj.get(*m)) {
                (Some(code), Some(msg)) => Some((text(code), text(msg))),
                _ => None,
            })
    }
    let found = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(obj)) => pair(&obj).or_else(|| {
            obj.values()
                .filter_map(|v| v.as_object().and_then(pair))
                .next_back()
        }),
        _ => None,
    };
    let (code, message) = match found {
        Some((code, message)) => (code, message),
        None => (status.to_string(), excerpt(body)),
    };
    ApiFault {
        status,
        code: sanitize(&code),
        message: sanitize(&message),
        request_id: request_id.map(|r| sanitize(&r)),
    }
}

/// At most 200 printable characters of a body, for error messages.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    if text.chars().count() > 200 {
        out.push('…');
    }
    out.trim().to_string()
}

fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(500)
        .collect()
}

/// `fault` with every occurrence of `secrets` replaced by `<redacted>`: the API gateway echoes
/// an unknown access key in its message ("ak ... not exist"), and no error may show one.
/// `secrets` are the credential values that were sent (`headers::secrets_in`); values shorter
/// than four characters are not replaced, as they would match ordinary words.
pub fn scrub(mut fault: ApiFault, secrets: &[String]) -> ApiFault {
    for secret in secrets.iter().filter(|s| s.len() >= 4) {
        for text in [&mut fault.code, &mut fault.message] {
            if text.contains(secret.as_str()) {
                *text = text.replace(secret.as_str(), "<redacted>");
            }
        }
    }
    fault
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_is_read_the_sdk_way() {
        let f = parse_fault(
            401,
            br#"{"error_code":"APIGW.0301","error_msg":"bad","request_id":"x"}"#,
            Some("rid".into()),
        );
        assert_eq!((f.code.as_str(), f.message.as_str()), ("APIGW.0301", "bad"));
        let f = parse_fault(400, br#"{"errorCode":"E1","errorMsg":"m1"}"#, None);
        assert_eq!(f.code, "E1");
        let f = parse_fault(400, br#"{"code":"C","message":"M"}"#, None);
        assert_eq!((f.code.as_str(), f.message.as_str()), ("C", "M"));
        let f = parse_fault(403, br#"{"error":{"code":"N","message":"nested"}}"#, None);
        assert_eq!((f.code.as_str(), f.message.as_str()), ("N", "nested"));
        let f = parse_fault(502, b"<html>Bad gateway</html>", None);
        assert_eq!(
            (f.code.as_str(), f.message.as_str()),
            ("502", "<html>Bad gateway</html>")
        );
    }
}
