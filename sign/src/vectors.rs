//! The reference vectors `sign/tests/vectors/aksk-signing.json`, produced by Huawei's Python SDK
//! (huaweicloudsdkcore 3.1.219) with a frozen clock: every canonical request, string to sign and
//! Authorization must come out byte for byte, and the verifier must accept each final request
//! and refuse it tampered. They are test data kept in the repository, so a fresh clone tests
//! against them with nothing beside it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::{Incoming, Signer, SigningRequest, VerifyError, canonical_query, parse_date, verify};

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/vectors/aksk-signing.json"
);

fn load() -> Value {
    let text = std::fs::read_to_string(VECTORS)
        .unwrap_or_else(|e| panic!("cannot read the reference vectors {VECTORS}: {e}"));
    serde_json::from_str(&text).expect("vectors are JSON")
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("{v} is not a string"))
}

/// A query value as the SDK writes it: booleans lower-case, numbers in decimal.
fn query_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => panic!("no query values of shape {other}"),
    }
}

struct Case {
    name: String,
    method: String,
    host: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    ak: String,
    sk: String,
}

fn case(v: &Value) -> Case {
    let name = s(&v["name"]).to_string();
    let inputs = &v["inputs"];
    let outputs = &v["outputs"];
    let ak = s(&inputs["ak"]).to_string();
    let sk = s(&inputs["sk"]).to_string();
    if inputs.get("resource_path").is_some() {
        // Signer-level: the inputs, plus what BasicCredentials.sign_request adds.
        let mut headers: Vec<(String, String)> = inputs["headers_in"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), s(v).to_string()))
            .collect();
        if let Some(p) = inputs["project_id"].as_str() {
            headers.push(("X-Project-Id".into(), p.into()));
        }
        if let Some(t) = inputs["security_token"].as_str() {
            headers.push(("X-Security-Token".into(), t.into()));
        }
        let pairs: Vec<(String, String)> = inputs["query_params"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (s(&p[0]).to_string(), query_value(&p[1])))
            .collect();
        Case {
            name,
            method: s(&inputs["method"]).into(),
            host: s(&inputs["host"]).into(),
            path: s(&inputs["resource_path"]).into(),
            query: canonical_query(&pairs),
            headers,
            body: inputs["body"].as_str().unwrap_or("").as_bytes().to_vec(),
            ak,
            sk,
        }
    } else {
        // Full client: the recorded wire request, minus what the signer adds.
        let added = ["Authorization", "X-Sdk-Date", "Host"];
        let headers = outputs["headers_final"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| !added.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), s(v).to_string()))
            .collect();
        let uri = s(&outputs["request_uri"]);
        let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
        let endpoint = s(&inputs["endpoint"]);
        Case {
            name,
            method: s(&outputs["method"]).into(),
            host: endpoint.trim_start_matches("https://").into(),
            path: path.into(),
            query: query.into(),
            headers,
            body: outputs["body"].as_str().unwrap_or("").as_bytes().to_vec(),
            ak,
            sk,
        }
    }
}

fn as_map(headers: &[(String, String)]) -> BTreeMap<String, String> {
    headers.iter().cloned().collect()
}

#[test]
fn all_reference_vectors_are_reproduced_and_verified() {
    let doc = load();
    let vectors = doc["vectors"].as_array().unwrap();
    assert_eq!(vectors.len(), 12, "the reference file holds 12 vectors");
    for v in vectors {
        let c = case(v);
        let out = &v["outputs"];
        let now = parse_date(&s(&v["inputs"]["date"]).replace(['-', ':'], "")).unwrap();
        let mut request = SigningRequest {
            method: &c.method,
            host: &c.host,
            path: &c.path,
            query: &c.query,
            headers: c.headers.clone(),
            body: &c.body,
        };
        let sig = Signer::new(c.ak.clone(), &c.sk).sign(&mut request, now);
        let name = &c.name;
        assert_eq!(
            sig.canonical_request,
            s(&out["canonical_request"]),
            "{name}: canonical request"
        );
        assert_eq!(
            sig.string_to_sign,
            s(&out["string_to_sign"]),
            "{name}: string to sign"
        );
        assert_eq!(
            sig.authorization,
            s(&out["authorization"]),
            "{name}: Authorization"
        );
        assert_eq!(sig.signature, s(&out["signature"]), "{name}: signature");
        assert_eq!(
            sig.signed_headers,
            s(&out["signed_headers"]),
            "{name}: signed headers"
        );
        let final_headers: BTreeMap<String, String> = out["headers_final"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), s(v).to_string()))
            .collect();
        assert_eq!(
            as_map(&request.headers),
            final_headers,
            "{name}: final headers"
        );
        // The wire request line carries the canonical query as it is.
        let wire = if c.query.is_empty() {
            c.path.clone()
        } else {
            format!("{}?{}", c.path, c.query)
        };
        assert_eq!(wire, s(&out["request_uri"]), "{name}: request URI");

        // The verifier accepts the final request, a few minutes later ...
        let headers: Vec<(&str, &str)> = request
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let incoming = Incoming {
            method: &c.method,
            path: &c.path,
            query: &c.query,
            headers: &headers,
            body: &c.body,
        };
        let later = now + Duration::from_secs(300);
        let lookup = |ak: &str| (ak == c.ak).then_some(c.sk.as_str());
        let ok = verify(&incoming, later, lookup).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(ok.access_key, c.ak, "{name}");
        // ... and refuses it with another path, another date, another signed header value,
        // or another secret key.
        let path = format!("{}x", c.path);
        let tampered = Incoming {
            path: &path,
            ..incoming
        };
        assert_eq!(
            verify(&tampered, later, lookup),
            Err(VerifyError::SignatureMismatch),
            "{name}: path"
        );
        for header in ["X-Sdk-Date", "Content-Type"] {
            let changed: Vec<(&str, &str)> = headers
                .iter()
                .map(|&(n, v)| match n == header {
                    true if header == "X-Sdk-Date" => (n, "20240501T123457Z"),
                    true => (n, "application/json;charset=utf-8"),
                    false => (n, v),
                })
                .collect();
            let tampered = Incoming {
                headers: &changed,
                ..incoming
            };
            assert_eq!(
                verify(&tampered, later, lookup),
                Err(VerifyError::SignatureMismatch),
                "{name}: {header}"
            );
        }
        assert_eq!(
            verify(&incoming, later, |_| Some("SKwrong")),
            Err(VerifyError::SignatureMismatch),
            "{name}: secret key"
        );
        if !c.body.is_empty() && !sig.canonical_request.ends_with("UNSIGNED-PAYLOAD") {
            let body = [&c.body[..], b" "].concat();
            let tampered = Incoming {
                body: &body,
                ..incoming
            };
            assert_eq!(
                verify(&tampered, later, lookup),
                Err(VerifyError::SignatureMismatch),
                "{name}: body"
            );
        }
    }
}
