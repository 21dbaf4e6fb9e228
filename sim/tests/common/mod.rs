//! Helpers for the simulator's integration tests: curl and openssl as independent oracles
//! (real TLS on loopback, trusting only the simulator's ca.pem), and a small keep-alive hyper
//! client for load.
#![allow(dead_code)]

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use certsync_sim::Simulator;
use rustls::pki_types::pem::PemObject as _;
use tokio::io::AsyncWriteExt as _;
use tokio::process::Command;

/// One HTTP answer as curl saw it.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    /// Headers of the last response, names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// curl's exit code (0 unless the transfer itself failed).
    pub curl_exit: i32,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    /// Asserts the `X-Request-Id` header is 32 lower-case hex digits and returns it.
    pub fn request_id(&self) -> String {
        let id = self.header("x-request-id").expect("X-Request-Id header");
        assert_eq!(id.len(), 32, "{id}");
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
            "{id}"
        );
        id.to_owned()
    }
}

/// Runs curl against the simulator, trusting only its ca.pem, with `extra` arguments.
pub async fn curl(sim: &Simulator, extra: &[&str], url: &str) -> Resp {
    curl_with_ca(&sim.ca_file(), extra, url).await
}

/// Runs curl trusting only `ca_file`.
pub async fn curl_with_ca(ca_file: &Path, extra: &[&str], url: &str) -> Resp {
    let dir = tempfile::tempdir().unwrap();
    let headers = dir.path().join("headers");
    let body = dir.path().join("body");
    let status = Command::new("curl")
        .arg("-sS")
        .arg("--cacert")
        .arg(ca_file)
        .args(["--max-time", "30"])
        .arg("-D")
        .arg(&headers)
        .arg("-o")
        .arg(&body)
        .args(extra)
        .arg(url)
        // A test that gives up on a request (dropping this future) must not leave curl behind.
        .kill_on_drop(true)
        .status()
        .await
        .expect("curl runs");
    let header_text = std::fs::read_to_string(&headers).unwrap_or_default();
    // With -L several responses are recorded; the last one counts.
    let last = header_text
        .split("\r\n\r\n")
        .filter(|block| block.starts_with("HTTP/"))
        .last()
        .unwrap_or("");
    let mut lines = last.lines();
    let status_code = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Resp {
        status: status_code,
        headers,
        body: std::fs::read(&body).unwrap_or_default(),
        curl_exit: status.code().unwrap_or(-1),
    }
}

/// The download-link API URL of an instance.
pub fn api_url(sim: &Simulator, id: &str) -> String {
    format!(
        "{}/v3/{}/instances/{}/ssl-cert/download-link",
        sim.endpoint(),
        sim.project_id(),
        id
    )
}

/// Calls the download-link API with the simulator's token.
pub async fn list(sim: &Simulator, id: &str) -> Resp {
    let token = format!("X-Auth-Token: {}", sim.token());
    curl(sim, &["-H", &token], &api_url(sim, id)).await
}

/// Calls the API and returns the link of `category` (asserting a 200).
pub async fn link_of(sim: &Simulator, id: &str, category: &str) -> String {
    let resp = list(sim, id).await;
    assert_eq!(resp.status, 200, "{}", resp.text());
    let json = resp.json();
    json["certs"]
        .as_array()
        .expect("certs array")
        .iter()
        .find(|c| c["category"] == category)
        .and_then(|c| c["download_link"].as_str())
        .unwrap_or_else(|| panic!("no {category} link in {json}"))
        .to_owned()
}

/// Runs `openssl ARGS` with `input` on stdin; returns (success, stdout).
pub async fn openssl(args: &[&str], input: &[u8]) -> (bool, String) {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl runs");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The subject of a PEM certificate, as openssl prints it.
pub async fn subject(pem: &[u8]) -> String {
    let (ok, out) = openssl(&["x509", "-noout", "-subject"], pem).await;
    assert!(
        ok,
        "openssl could not parse: {}",
        String::from_utf8_lossy(pem)
    );
    out.trim().to_owned()
}

/// The SHA-256 fingerprint of a PEM certificate as lower-case hex without colons, per openssl.
pub async fn fingerprint(pem: &[u8]) -> String {
    let (ok, out) = openssl(&["x509", "-noout", "-fingerprint", "-sha256"], pem).await;
    assert!(
        ok,
        "openssl could not parse: {}",
        String::from_utf8_lossy(pem)
    );
    out.trim()
        .rsplit('=')
        .next()
        .unwrap()
        .replace(':', "")
        .to_ascii_lowercase()
}

/// A keep-alive HTTPS client on one connection (tokio-rustls + hyper), trusting ca.pem only.
pub struct KeepAlive {
    send: hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
}

/// One answer a [`KeepAlive`] connection got.
#[derive(Debug)]
pub struct KeepResp {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: bytes::Bytes,
}

impl KeepResp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }
}

impl KeepAlive {
    pub async fn connect(sim: &Simulator) -> KeepAlive {
        let mut roots = rustls::RootCertStore::empty();
        let der =
            rustls::pki_types::CertificateDer::from_pem_slice(sim.ca_pem().as_bytes()).unwrap();
        roots.add(der).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
        let name = rustls::pki_types::ServerName::IpAddress(sim.addr().ip().into());
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .unwrap();
        let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        KeepAlive { send }
    }

    /// GETs a URL (path and query taken from it) on this connection; returns (status, body).
    pub async fn get(&mut self, url: &str, token: Option<&str>) -> (u16, bytes::Bytes) {
        let headers: Vec<(String, String)> = token
            .map(|t| ("X-Auth-Token".to_owned(), t.to_owned()))
            .into_iter()
            .collect();
        let resp = self.request("GET", url, &headers, b"").await;
        (resp.status, resp.body)
    }

    /// Sends a request for a URL (path and query taken from it) with these headers (a `Host`
    /// among them replaces the URL's authority) and body on this connection.
    pub async fn request(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> KeepResp {
        use http_body_util::BodyExt as _;
        let uri: hyper::Uri = url.parse().unwrap();
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(uri.path_and_query().unwrap().as_str());
        if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
            req = req.header("host", uri.authority().unwrap().as_str());
        }
        for (name, value) in headers {
            req = req.header(name.as_str(), value.as_str());
        }
        let body = http_body_util::Full::new(bytes::Bytes::copy_from_slice(body));
        self.send.ready().await.unwrap();
        let resp = self
            .send
            .send_request(req.body(body).unwrap())
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        KeepResp {
            status,
            headers,
            body,
        }
    }

    /// Sends a [`Signed`] request, signed with `ak`/`sk`, on this connection.
    pub async fn signed(&mut self, req: &Signed<'_>, ak: &str, sk: &str) -> KeepResp {
        let headers = req.sign(ak, sk);
        self.request(req.method, req.url, &headers, req.body).await
    }
}

/// A request signed with `SDK-HMAC-SHA256` by certsync-sign's signer, the way the SDK sends it.
pub struct Signed<'a> {
    pub method: &'a str,
    /// The full URL; its query must already be in canonical form (as the SDK sends it).
    pub url: &'a str,
    /// Headers sent and signed besides the signer's (`Content-Type: application/json` is added
    /// when no Content-Type is given, as the SDK does).
    pub headers: Vec<(String, String)>,
    pub body: &'a [u8],
    /// The signing time (`X-Sdk-Date`).
    pub at: std::time::SystemTime,
}

impl<'a> Signed<'a> {
    pub fn get(url: &'a str) -> Self {
        Signed {
            method: "GET",
            url,
            headers: Vec::new(),
            body: b"",
            at: std::time::SystemTime::now(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The headers to send after signing with `ak`/`sk`.
    pub fn sign(&self, ak: &str, sk: &str) -> Vec<(String, String)> {
        let uri: hyper::Uri = self.url.parse().unwrap();
        let mut headers = self.headers.clone();
        if !headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case("content-type"))
        {
            headers.push(("Content-Type".to_owned(), "application/json".to_owned()));
        }
        let mut req = certsync_sign::SigningRequest {
            method: self.method,
            host: uri.authority().unwrap().as_str(),
            path: uri.path(),
            query: uri.query().unwrap_or(""),
            headers,
            body: self.body,
        };
        certsync_sign::Signer::new(ak, sk).sign(&mut req, self.at);
        req.headers
    }

    /// Signs with `ak`/`sk` and sends with curl (trusting the simulator's CA only).
    pub async fn send(&self, sim: &Simulator, ak: &str, sk: &str) -> Resp {
        let headers = self.sign(ak, sk);
        send_with_headers(sim, self.method, self.url, &headers, self.body).await
    }
}

/// Sends a request with exactly these headers (besides curl's own unsigned ones) and body.
pub async fn send_with_headers(
    sim: &Simulator,
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Resp {
    let dir = tempfile::tempdir().unwrap();
    let body_file = dir.path().join("request-body");
    std::fs::write(&body_file, body).unwrap();
    let mut args: Vec<String> = vec!["-X".into(), method.into()];
    for (name, value) in headers {
        args.push("-H".into());
        args.push(format!("{name}: {value}"));
    }
    if !body.is_empty() {
        args.push("--data-binary".into());
        args.push(format!("@{}", body_file.display()));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    curl(sim, &args, url).await
}

/// The ListInstances URL with a canonical query built from `pairs`.
pub fn list_instances_url(sim: &Simulator, pairs: &[(&str, &str)]) -> String {
    let query = certsync_sign::canonical_query(pairs);
    let base = format!("{}/v3/{}/instances", sim.endpoint(), sim.project_id());
    if query.is_empty() {
        base
    } else {
        format!("{base}?{query}")
    }
}

/// Asserts the gateway's 401 body for bad credentials, with this message.
pub fn assert_denied(resp: &Resp, msg: &str) {
    assert_eq!(resp.status, 401, "{}", resp.text());
    let rid = resp.request_id();
    let body = resp.json();
    assert_eq!(
        body,
        serde_json::json!({
            "error_code": "APIGW.0301",
            "error_msg": format!("Incorrect IAM authentication information: {msg}"),
            "request_id": rid,
        })
    );
}

pub const SIGNATURE_FAIL: &str = "verify aksk signature fail";

/// Parses IAM's `2024-05-01T12:34:56.000000Z`.
pub fn iam_time(text: &str) -> std::time::SystemTime {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    time::PrimitiveDateTime::parse(text, &format)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
        .assume_utc()
        .into()
}
