//! `[publish]` and `[source]`: the fleet roles over etcd (SPEC 14).
//!
//! Owns: both sections' keys, defaults and rules, and the etcd connection settings they
//! share. Must not: connect anywhere, or read the files they name (`password_file` is a
//! secret, read when the client connects; the TLS files are read then too).

use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Table;

use super::super::keys::{SectionKind, SectionSchema};
use super::super::reader::{Problems, Section, quote};
use super::{path_value, service_url, show_raw};

/// The keys of `[publish]`.
pub(in crate::config) const PUBLISH_SCHEMA: SectionSchema = SectionSchema {
    name: "publish",
    kind: SectionKind::Table,
    keys: &[
        "backend",
        "endpoints",
        "prefix",
        "lease_ttl",
        "ca_file",
        "cert_file",
        "key_file",
        "user",
        "password_file",
    ],
    variants: &[],
};

/// The keys of `[source]`.
pub(in crate::config) const SOURCE_SCHEMA: SectionSchema = SectionSchema {
    name: "source",
    kind: SectionKind::Table,
    keys: &["kind"],
    variants: &[(
        "etcd",
        &[
            "endpoints",
            "prefix",
            "ca_file",
            "cert_file",
            "key_file",
            "user",
            "password_file",
        ],
    )],
};

/// `publish.lease_ttl` when left out.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15);
/// The shortest `publish.lease_ttl` (etcd's leases are whole seconds, kept alive every third).
pub const MIN_LEASE_TTL: Duration = Duration::from_secs(2);
/// The longest `publish.lease_ttl`.
pub const MAX_LEASE_TTL: Duration = Duration::from_secs(3600);
/// At most this many etcd endpoints.
pub const MAX_ETCD_ENDPOINTS: usize = 16;

/// Where and how to reach etcd: `[publish]`'s and `[source] kind = "etcd"`'s shared keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Etcd {
    /// `endpoints`: `http://` or `https://` URLs, at least one.
    pub endpoints: Vec<url::Url>,
    /// `prefix`: the keys are `{prefix}/leader` and `{prefix}/bundle`.
    pub prefix: String,
    /// `ca_file`: the roots that etcd's server certificate must chain to (https).
    pub ca_file: Option<PathBuf>,
    /// `cert_file` and `key_file`: a TLS client certificate and its key (both or neither).
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// `user` and `password_file`: etcd's own authentication (both or neither).
    pub auth: Option<(String, PathBuf)>,
}

impl Etcd {
    /// `{prefix}/leader`: the leader's id, bound to its lease.
    pub fn leader_key(&self) -> String {
        format!("{}/leader", self.prefix)
    }

    /// `{prefix}/bundle`: the published set, never bound to a lease.
    pub fn bundle_key(&self) -> String {
        format!("{}/bundle", self.prefix)
    }

    /// The endpoints as `scheme://host:port` (what the client dials, and what logs show).
    pub fn endpoint_strings(&self) -> Vec<String> {
        self.endpoints
            .iter()
            .map(|u| {
                let host = u.host_str().unwrap_or("");
                let host = if host.contains(':') && !host.starts_with('[') {
                    format!("[{host}]")
                } else {
                    host.to_string()
                };
                format!(
                    "{}://{}:{}",
                    u.scheme(),
                    host,
                    u.port_or_known_default().unwrap_or(2379)
                )
            })
            .collect()
    }
}

/// `[publish]`: this certsync may fetch from the cloud for the fleet, when it leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// Where the leader key and the bundle live.
    pub etcd: Etcd,
    /// The leader's lease: another publisher takes over this long after the leader stops.
    pub lease_ttl: Duration,
}

/// Reads `[publish]` (`None` when there were problems).
pub(in crate::config) fn read_publish(
    p: &mut Problems,
    table: &Table,
    base: &Path,
) -> Option<Publish> {
    let sec = Section::open(p, PUBLISH_SCHEMA.name, table, PUBLISH_SCHEMA.keys);
    let before = p.len();
    match sec.string(p, "backend") {
        Some("etcd") => {}
        Some(other) => p.push(
            sec.key("backend"),
            format!(
                "unknown value {} (expected \"etcd\"; Kubernetes comes later)",
                quote(other)
            ),
        ),
        None if !sec.has("backend") => p.push(sec.key("backend"), "is required (\"etcd\")"),
        None => {}
    }
    let etcd = read_etcd(p, &sec, base);
    let lease_ttl = match sec.duration(p, "lease_ttl") {
        Some(d) if !(MIN_LEASE_TTL..=MAX_LEASE_TTL).contains(&d) || d.subsec_nanos() != 0 => {
            p.push(
                sec.key("lease_ttl"),
                format!(
                    "{} must be whole seconds from \"2s\" to \"1h\"",
                    show_raw(&sec, "lease_ttl")
                ),
            );
            DEFAULT_LEASE_TTL
        }
        Some(d) => d,
        None => DEFAULT_LEASE_TTL,
    };
    let etcd = etcd?;
    (p.len() == before).then_some(Publish { etcd, lease_ttl })
}

/// Reads `[source]`: `Some` for `kind = "etcd"` (a subscriber), `None` for the cloud (the
/// default) or when there were problems.
pub(in crate::config) fn read_source(p: &mut Problems, table: &Table, base: &Path) -> Option<Etcd> {
    let sec = Section::open(p, SOURCE_SCHEMA.name, table, &SOURCE_SCHEMA.all_keys());
    match sec.string(p, "kind") {
        None | Some("cloud") => {
            for key in SOURCE_SCHEMA.variants[0].1 {
                if sec.has(key) {
                    p.push(sec.key(key), "is only read with kind = \"etcd\"");
                }
            }
            None
        }
        Some("etcd") => read_etcd(p, &sec, base),
        Some(other) => {
            p.push(
                sec.key("kind"),
                format!(
                    "unknown value {} (expected \"cloud\" or \"etcd\")",
                    quote(other)
                ),
            );
            None
        }
    }
}

/// The keys shared by both sections.
fn read_etcd(p: &mut Problems, sec: &Section<'_>, base: &Path) -> Option<Etcd> {
    let before = p.len();
    let mut endpoints = Vec::new();
    match sec.strings(p, "endpoints") {
        None if !sec.has("endpoints") => p.push(
            sec.key("endpoints"),
            "is required: etcd's client URLs, like [\"https://10.0.0.11:2379\"]",
        ),
        None => {}
        Some(list) if list.is_empty() => {
            p.push(sec.key("endpoints"), "must name at least one etcd endpoint")
        }
        Some(list) if list.len() > MAX_ETCD_ENDPOINTS => p.push(
            sec.key("endpoints"),
            format!(
                "names {} endpoints; at most {MAX_ETCD_ENDPOINTS}",
                list.len()
            ),
        ),
        Some(list) => {
            for (key, s) in list {
                if let Some(url) = service_url(
                    p,
                    &key,
                    s,
                    &["http", "https"],
                    "must be http:// or https://",
                ) {
                    if url.path() != "/" && !url.path().is_empty() {
                        p.push(&key, format!("{} must not have a path", quote(s)));
                    }
                    endpoints.push(url);
                }
            }
        }
    }
    let prefix = match sec.string(p, "prefix") {
        None if !sec.has("prefix") => {
            p.push(sec.key("prefix"), "is required, like \"/certsync/prod\"");
            None
        }
        None => None,
        Some(s) if valid_prefix(s) => Some(s.to_string()),
        Some(s) => {
            p.push(
                sec.key("prefix"),
                format!(
                    "{} must start with \"/\", not end with one, and hold only letters, digits and /_.-",
                    quote(s)
                ),
            );
            None
        }
    };
    let ca_file = path_value(p, sec, "ca_file", base);
    let cert_file = path_value(p, sec, "cert_file", base);
    let key_file = path_value(p, sec, "key_file", base);
    let client_cert = match (cert_file, key_file) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        (Some(_), None) => {
            p.push(sec.key("key_file"), "is required with cert_file");
            None
        }
        (None, Some(_)) => {
            p.push(sec.key("cert_file"), "is required with key_file");
            None
        }
    };
    let user = sec.string(p, "user").map(str::to_string);
    if user.as_deref() == Some("") {
        p.push(sec.key("user"), "must not be empty (got \"\")");
    }
    let password_file = path_value(p, sec, "password_file", base);
    let auth = match (user, password_file) {
        (Some(u), Some(f)) => Some((u, f)),
        (None, None) => None,
        (Some(_), None) => {
            p.push(sec.key("password_file"), "is required with user");
            None
        }
        (None, Some(_)) => {
            p.push(sec.key("user"), "is required with password_file");
            None
        }
    };
    let https = endpoints.iter().any(|u| u.scheme() == "https");
    if (ca_file.is_some() || client_cert.is_some()) && !https {
        p.push(
            sec.key(if ca_file.is_some() {
                "ca_file"
            } else {
                "cert_file"
            }),
            "has no effect without an https:// endpoint",
        );
    }
    if https && endpoints.iter().any(|u| u.scheme() == "http") {
        p.push(
            sec.key("endpoints"),
            "mixes http:// and https://; etcd's client speaks one of them to every endpoint",
        );
    }
    let prefix = prefix?;
    (p.len() == before).then_some(Etcd {
        endpoints,
        prefix,
        ca_file,
        client_cert,
        auth,
    })
}

/// `prefix`: `/` then segments of letters, digits and `/_.-`, no trailing `/`, at most 256.
fn valid_prefix(s: &str) -> bool {
    s.len() <= 256
        && s.len() >= 2
        && s.starts_with('/')
        && !s.ends_with('/')
        && !s.contains("//")
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_.-".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{keys, table, walk};
    use super::*;

    fn publish(text: &str) -> (Option<Publish>, Vec<crate::config::Problem>) {
        let t = table(text);
        let (v, problems, _) = walk(|p, _| read_publish(p, &t, Path::new("/etc/certsync")));
        (v, problems)
    }

    fn source(text: &str) -> (Option<Etcd>, Vec<crate::config::Problem>) {
        let t = table(text);
        let (v, problems, _) = walk(|p, _| read_source(p, &t, Path::new("/etc/certsync")));
        (v, problems)
    }

    #[test]
    fn a_publisher_reads_every_key_with_its_defaults() {
        let (p, problems) = publish(
            r#"backend = "etcd"
endpoints = ["https://10.0.0.11:2379", "https://[::1]:2379"]
prefix = "/certsync/prod"
ca_file = "etcd-ca.pem"
cert_file = "client.pem"
key_file = "/keys/client.key"
user = "certsync"
password_file = "etcd-pw""#,
        );
        assert!(problems.is_empty(), "{problems:?}");
        let p = p.unwrap();
        assert_eq!(p.lease_ttl, DEFAULT_LEASE_TTL);
        assert_eq!(p.etcd.leader_key(), "/certsync/prod/leader");
        assert_eq!(p.etcd.bundle_key(), "/certsync/prod/bundle");
        assert_eq!(
            p.etcd.endpoint_strings(),
            ["https://10.0.0.11:2379", "https://[::1]:2379"]
        );
        assert_eq!(
            p.etcd.ca_file.as_deref(),
            Some(Path::new("/etc/certsync/etcd-ca.pem"))
        );
        assert_eq!(
            p.etcd.client_cert,
            Some((
                PathBuf::from("/etc/certsync/client.pem"),
                PathBuf::from("/keys/client.key")
            ))
        );
        assert_eq!(
            p.etcd.auth,
            Some((
                "certsync".to_string(),
                PathBuf::from("/etc/certsync/etcd-pw")
            ))
        );
    }

    #[test]
    fn every_bad_key_is_named() {
        let (p, problems) = publish(
            r#"backend = "consul"
endpoints = ["ftp://x", "http://a:1/path"]
prefix = "certsync/"
lease_ttl = "1s"
cert_file = "c.pem"
user = "u""#,
        );
        assert!(p.is_none());
        assert_eq!(
            keys(&problems),
            [
                "publish.backend",
                "publish.endpoints[0]",
                "publish.endpoints[1]",
                "publish.prefix",
                "publish.key_file",
                "publish.password_file",
                "publish.lease_ttl",
            ]
        );
        let (_, problems) = publish("");
        assert_eq!(
            keys(&problems),
            ["publish.backend", "publish.endpoints", "publish.prefix"]
        );
    }

    #[test]
    fn a_subscriber_is_source_kind_etcd_and_the_cloud_takes_no_etcd_keys() {
        let (s, problems) =
            source("kind = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\"]\nprefix = \"/c\"");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(s.unwrap().endpoint_strings(), ["http://127.0.0.1:2379"]);
        let (s, problems) = source("kind = \"cloud\"\nprefix = \"/c\"");
        assert!(s.is_none());
        assert_eq!(keys(&problems), ["source.prefix"]);
        let (_, problems) = source("kind = \"zookeeper\"");
        assert_eq!(keys(&problems), ["source.kind"]);
        let (_, problems) = source("");
        assert!(problems.is_empty());
    }

    #[test]
    fn prefixes_are_plain_paths() {
        for good in ["/c", "/certsync/prod", "/a-b_c.d/e"] {
            assert!(valid_prefix(good), "{good}");
        }
        for bad in ["", "/", "c", "/c/", "//c", "/c d", "/c\n", "/ü"] {
            assert!(!valid_prefix(bad), "{bad:?}");
        }
    }
}
