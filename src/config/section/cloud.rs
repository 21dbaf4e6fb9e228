//! `[cloud]`: where the API is and how to reach it (SPEC 3).
//!
//! Owns: the section's keys, its defaults (service, endpoints derived from service and
//! region, request timeout) and rules (region and project id syntax, https endpoints without
//! credentials, query or fragment; `project_id` required only with the token method). Must
//! not: read `ca_file` (the fs pass does), or echo an endpoint that holds credentials.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls_pki_types::CertificateDer;
use toml::Table;

use super::super::fs::{FsCheck, FsChecks};
use super::super::keys::{SectionKind, SectionSchema};
use super::super::reader::{Problems, Section, quote};
use super::auth::ENV_PROJECT_ID;
use super::{path_value, positive_duration, service_url, show_raw};
use crate::names;

/// The keys of `[cloud]`.
pub(in crate::config) const SCHEMA: SectionSchema = SectionSchema {
    name: "cloud",
    kind: SectionKind::Table,
    keys: &[
        "service",
        "region",
        "endpoint",
        "project_id",
        "iam_endpoint",
        "ca_file",
        "timeout",
        "max_requests_per_second",
    ],
    variants: &[],
};

/// `cloud.service` when left out.
pub const DEFAULT_SERVICE: &str = "gaussdb-nosql";
/// The services that serve the download-link API.
pub const SERVICES: &[&str] = &["gaussdb-nosql", "dds"];
/// `cloud.timeout` when left out: per HTTP request.
pub const DEFAULT_CLOUD_TIMEOUT: Duration = Duration::from_secs(30);

/// `cloud.max_requests_per_second` when left out (SPEC 15).
pub const DEFAULT_MAX_REQUESTS_PER_SECOND: f64 =
    crate::cloud::budget::DEFAULT_MAX_REQUESTS_PER_SECOND;
/// The largest `max_requests_per_second` accepted (the gateway's own default limit is 200 a
/// second per API; this bound only keeps the arithmetic sane).
pub const MAX_MAX_REQUESTS_PER_SECOND: f64 = 10_000.0;

/// Stands in for values that failed; never returned (any problem makes the result an error).
const PLACEHOLDER_URL: &str = "https://placeholder.invalid/";

/// `[cloud]`: where the API is and how to reach it.
#[derive(Debug, Clone)]
pub struct Cloud {
    /// `gaussdb-nosql` or `dds`.
    pub service: String,
    /// Region, e.g. `cn-north-4`.
    pub region: String,
    /// API endpoint: `cloud.endpoint`, else derived from service and region. https, no query.
    pub endpoint: url::Url,
    /// Project id that goes into the API path: `cloud.project_id` (with `aksk`, else
    /// `HUAWEICLOUD_SDK_PROJECT_ID`). `None` (never with `token`): `aksk` and `metadata` look
    /// it up in IAM, `password` scopes its token by the region's name and takes the id from it.
    pub project_id: Option<String>,
    /// IAM: `cloud.iam_endpoint`, else `https://iam.{region}.myhuaweicloud.com`
    /// (`.myhuaweicloud.eu` for eu-west-101). https, no query.
    pub iam_endpoint: url::Url,
    /// Extra roots trusted for the API and downloads (absolute; holds at least one certificate).
    /// Named for messages and `check`; its certificates are in `ca_certs`.
    pub ca_file: Option<PathBuf>,
    /// The certificates of `ca_file` (DER), read and parsed once by the fs pass when the
    /// configuration is loaded: the HTTP clients are built from them and never read the
    /// file. Empty without `ca_file`.
    pub ca_certs: Vec<CertificateDer<'static>>,
    /// Per HTTP request.
    pub timeout: Duration,
    /// The account's request budget per endpoint (SPEC 15): a token bucket of this rate, with
    /// a burst of as many. Positive, at most [`MAX_MAX_REQUESTS_PER_SECOND`].
    pub max_requests_per_second: f64,
}

/// The default host of `service` in `region`: `{service}.{region}.myhuaweicloud.com`, on
/// `.myhuaweicloud.eu` for eu-west-101 (the one region outside `.com`).
fn regional_url(service: &str, region: &str) -> Option<url::Url> {
    let domain = if region == "eu-west-101" {
        "myhuaweicloud.eu"
    } else {
        "myhuaweicloud.com"
    };
    url::Url::parse(&format!("https://{service}.{region}.{domain}")).ok()
}

/// Reads `[cloud]`, or the cloud keys of an `[[account]]`, at `path` (`cloud`, `account[1]`).
/// `method` is the account's `auth.method` as written (it decides whether `project_id` is
/// required) and `method_key` its key path, for messages; `env` looks up
/// `HUAWEICLOUD_SDK_PROJECT_ID` for `aksk`. `ca_file` is checked by the fs pass.
#[allow(clippy::too_many_arguments)] // each is one input of the walk; a struct would only rename them
pub(in crate::config) fn read(
    p: &mut Problems,
    fs: &mut FsChecks,
    path: &str,
    known: &[&str],
    table: &Table,
    base: &Path,
    (method, method_key): (Option<&str>, &str),
    env: &dyn Fn(&str) -> Option<String>,
) -> Cloud {
    let sec = Section::open(p, path, table, known);
    let mut service_ok = true;
    let service = match sec.string(p, "service") {
        None => {
            service_ok = !sec.has("service");
            DEFAULT_SERVICE.to_string()
        }
        Some(s) if SERVICES.contains(&s) => s.to_string(),
        Some(s) => {
            p.push(
                sec.key("service"),
                format!(
                    "unknown service {} (expected \"gaussdb-nosql\" or \"dds\")",
                    quote(s)
                ),
            );
            service_ok = false;
            DEFAULT_SERVICE.to_string()
        }
    };

    let mut region = None;
    if sec.require_present(p, "region", "") {
        match sec.string(p, "region") {
            Some(r) if names::is_region(r) => region = Some(r.to_string()),
            Some(r) => p.push(
                sec.key("region"),
                format!(
                    "{} is not a region name (lower case, like \"cn-north-4\" or \"eu-west-101\")",
                    quote(r)
                ),
            ),
            None => {}
        }
    }

    let api_endpoint = match sec.string(p, "endpoint") {
        Some(s) => endpoint(p, &sec.key("endpoint"), s),
        None if sec.has("endpoint") => None,
        None => match &region {
            Some(region) if service_ok => regional_url(&service, region),
            _ => None,
        },
    };
    let iam_endpoint = match sec.string(p, "iam_endpoint") {
        Some(s) => endpoint(p, &sec.key("iam_endpoint"), s),
        None if sec.has("iam_endpoint") => None,
        None => region.as_deref().and_then(|r| regional_url("iam", r)),
    };

    // Only the token method cannot learn the project: aksk and metadata look it up in IAM by
    // the region's name, password scopes its token by that name and reads the id from it. A
    // missing or unknown method is reported by auth and does not make it required here.
    let optional = method != Some("token");
    let mut project_id = None;
    let from_env = match method {
        Some("aksk") if !sec.has("project_id") => env(ENV_PROJECT_ID),
        _ => None,
    };
    if let Some(id) = from_env {
        if names::is_project_id(&id) {
            project_id = Some(id);
        } else {
            p.push(
                sec.key("project_id"),
                format!(
                    "{ENV_PROJECT_ID} {} is not a project id ([A-Za-z0-9-]{{1,64}})",
                    quote(&id)
                ),
            );
        }
    } else if sec.has("project_id")
        || (!optional
            && sec.require_present(p, "project_id", &format!("with {method_key} = \"token\"")))
    {
        match sec.string(p, "project_id") {
            Some(id) if names::is_project_id(id) => project_id = Some(id.to_string()),
            Some(id) => p.push(
                sec.key("project_id"),
                format!("{} is not a project id ([A-Za-z0-9-]{{1,64}})", quote(id)),
            ),
            None => {}
        }
    }

    let ca_file = path_value(p, &sec, "ca_file", base);
    if let Some(path) = &ca_file {
        fs.defer(
            p,
            FsCheck::CaFile {
                key: sec.key("ca_file"),
                shown: show_raw(&sec, "ca_file"),
                path: path.clone(),
            },
        );
    }

    let timeout = positive_duration(p, &sec, "timeout").unwrap_or(DEFAULT_CLOUD_TIMEOUT);
    let max_requests_per_second = requests_per_second(p, &sec);

    let placeholder = || url::Url::parse(PLACEHOLDER_URL).expect("valid");
    Cloud {
        service,
        region: region.unwrap_or_default(),
        endpoint: api_endpoint.unwrap_or_else(placeholder),
        project_id,
        iam_endpoint: iam_endpoint.unwrap_or_else(placeholder),
        ca_file,
        // Filled by the fs pass, which reads the file.
        ca_certs: Vec::new(),
        timeout,
        max_requests_per_second,
    }
}

/// `max_requests_per_second`: a positive number (an integer or not: 0.5 is one request every
/// two seconds), at most [`MAX_MAX_REQUESTS_PER_SECOND`].
fn requests_per_second(p: &mut Problems, sec: &Section<'_>) -> f64 {
    let key = "max_requests_per_second";
    let value = match sec.raw(key) {
        None => return DEFAULT_MAX_REQUESTS_PER_SECOND,
        Some(toml::Value::Integer(i)) => *i as f64,
        Some(toml::Value::Float(f)) => *f,
        Some(other) => {
            p.push(
                sec.key(key),
                super::super::reader::expected("a number of requests a second", other),
            );
            return DEFAULT_MAX_REQUESTS_PER_SECOND;
        }
    };
    if value.is_finite() && value > 0.0 && value <= MAX_MAX_REQUESTS_PER_SECOND {
        value
    } else {
        p.push(
            sec.key(key),
            format!("must be more than 0 and at most {MAX_MAX_REQUESTS_PER_SECOND} (got {value})"),
        );
        DEFAULT_MAX_REQUESTS_PER_SECOND
    }
}

/// `cloud.endpoint`: an https URL with a host, no credentials, query or fragment.
fn endpoint(p: &mut Problems, key: &str, s: &str) -> Option<url::Url> {
    service_url(p, key, s, &["https"], "must use https")
}

#[cfg(test)]
mod tests {
    use super::super::testing::{keys, table, walk};
    use super::*;

    fn read_cloud(text: &str, method: &str) -> (Cloud, Vec<crate::config::Problem>, FsChecks) {
        let t = table(text);
        walk(|p, fs| {
            read(
                p,
                fs,
                "cloud",
                SCHEMA.keys,
                &t,
                Path::new("/srv/conf"),
                (Some(method), "auth.method"),
                &|_| None,
            )
        })
    }

    #[test]
    fn defaults_follow_service_and_region() {
        let (c, problems, fs) = read_cloud("region = \"eu-west-101\"", "aksk");
        assert!(problems.is_empty(), "{problems:?}");
        assert!(fs.0.is_empty());
        assert_eq!(c.service, DEFAULT_SERVICE);
        assert_eq!(
            c.endpoint.as_str(),
            "https://gaussdb-nosql.eu-west-101.myhuaweicloud.eu/"
        );
        assert_eq!(
            c.iam_endpoint.as_str(),
            "https://iam.eu-west-101.myhuaweicloud.eu/"
        );
        assert_eq!(c.project_id, None);
        assert_eq!(c.ca_file, None);
        assert_eq!(c.timeout, DEFAULT_CLOUD_TIMEOUT);
        assert_eq!(DEFAULT_CLOUD_TIMEOUT, Duration::from_secs(30));
    }

    #[test]
    fn every_key_is_read_and_ca_file_is_left_to_the_fs_pass() {
        let (c, problems, fs) = read_cloud(
            r#"service = "dds"
region = "cn-north-4"
endpoint = "https://api.example.com:8443/base"
project_id = "p-1"
iam_endpoint = "https://iam.example.com"
ca_file = "pki/../roots.pem"
timeout = "5s""#,
            "token",
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(c.service, "dds");
        assert_eq!(c.endpoint.as_str(), "https://api.example.com:8443/base");
        assert_eq!(c.iam_endpoint.as_str(), "https://iam.example.com/");
        assert_eq!(c.project_id.as_deref(), Some("p-1"));
        assert_eq!(c.timeout, Duration::from_secs(5));
        // Named, resolved, not read: the file does not exist and no problem is found here.
        assert_eq!(c.ca_file.as_deref(), Some(Path::new("/srv/conf/roots.pem")));
        assert_eq!(
            fs.0,
            [(
                0,
                FsCheck::CaFile {
                    key: "cloud.ca_file".into(),
                    shown: "\"pki/../roots.pem\"".into(),
                    path: "/srv/conf/roots.pem".into(),
                }
            )]
        );
    }

    #[test]
    fn project_id_is_required_only_with_token() {
        let (_, problems, _) = read_cloud("region = \"cn-north-4\"", "token");
        assert_eq!(keys(&problems), ["cloud.project_id"]);
        for method in ["aksk", "password", "metadata"] {
            assert!(read_cloud("region = \"cn-north-4\"", method).1.is_empty());
        }
        let t = table("region = \"cn-north-4\"");
        let (c, problems, _) = walk(|p, fs| {
            read(
                p,
                fs,
                "cloud",
                SCHEMA.keys,
                &t,
                Path::new("/"),
                (Some("aksk"), "auth.method"),
                &|name| (name == ENV_PROJECT_ID).then(|| "from-env".to_string()),
            )
        });
        assert!(problems.is_empty());
        assert_eq!(c.project_id.as_deref(), Some("from-env"));
    }

    #[test]
    fn endpoints_with_credentials_are_not_echoed() {
        let (_, problems, _) = read_cloud(
            "region = \"cn-north-4\"\nproject_id = \"p\"\nendpoint = \"https://u:s3cret@h/\"",
            "token",
        );
        assert_eq!(keys(&problems), ["cloud.endpoint"]);
        assert!(!problems[0].message.contains("s3cret"), "{problems:?}");
        let (_, problems, _) = read_cloud(
            "region = \"cn-north-4\"\nproject_id = \"p\"\niam_endpoint = \"http://iam\"",
            "token",
        );
        assert_eq!(keys(&problems), ["cloud.iam_endpoint"]);
        assert!(problems[0].message.contains("https"));
    }
}
