//! Turns the parsed TOML into a typed [`Config`], applying every rule of SPEC 3.
//!
//! Owns: the schema (the key lists below), defaults, path resolution and the cross-checks
//! between sections (project id against auth method, file names against instances, hook
//! filters against instances). Every section is read even after an error so that all problems
//! of a file are reported together; values that failed are replaced by placeholders that never
//! escape, because any problem makes the result an error.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::{Table, Value};

use super::accounts;
use super::reader::{Problems, Section, expected, quote, show};
use super::*;
use crate::names::{self, Piece};

const TOP_KEYS: &[&str] = &[
    "cloud", "auth", "sync", "trust", "instance", "discover", "hook", "server", "log",
];
const CLOUD_KEYS: &[&str] = &[
    "service",
    "region",
    "endpoint",
    "project_id",
    "iam_endpoint",
    "ca_file",
    "timeout",
];
const AUTH_KEYS: &[&str] = &[
    "method",
    "token_file",
    "access_key",
    "secret_key",
    "secret_key_file",
    "security_token",
    "user",
    "domain",
    "password_file",
    "metadata_endpoint",
];
/// The keys each auth method uses; a key of another method is an error, never ignored.
const METHOD_KEYS: &[(&str, &[&str])] = &[
    ("token", &["token_file"]),
    (
        "aksk",
        &[
            "access_key",
            "secret_key",
            "secret_key_file",
            "security_token",
        ],
    ),
    ("password", &["user", "domain", "password_file"]),
    ("metadata", &["metadata_endpoint"]),
];
const SYNC_KEYS: &[&str] = &[
    "interval",
    "jitter",
    "concurrency",
    "retry_initial",
    "retry_max",
    "max_download_bytes",
    "allowed_download_hosts",
    "expiry_warning",
    "rotation_overlap",
    "watch_config",
];
const TRUST_KEYS: &[&str] = &[
    "dir",
    "file_name",
    "mode",
    "owner",
    "group",
    "bundle",
    "capath",
    "prune",
    "write_mode",
    "layout",
    "pkcs12",
    "pkcs12_password_file",
];
const INSTANCE_KEYS: &[&str] = &["id", "name", "categories", "pin_sha256"];
const HOOK_KEYS: &[&str] = &[
    "command",
    "name",
    "timeout",
    "instances",
    "signal",
    "pid_file",
];
const SERVER_KEYS: &[&str] = &["listen"];
const DISCOVER_KEYS: &[&str] = &["datastore", "name", "ssl_only"];
const LOG_KEYS: &[&str] = &["format", "level"];

/// Stands in for values that failed; never returned (any problem makes the result an error).
const PLACEHOLDER_URL: &str = "https://placeholder.invalid/";

/// Parses and validates; `Err` holds every problem found. `env` looks up the SDK's
/// environment variables (empty values already filtered out).
pub(super) fn resolve(
    text: &str,
    source: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, Vec<Problem>> {
    let table: Table = match text.parse() {
        Ok(t) => t,
        Err(e) => return Err(vec![syntax_problem(text, &e)]),
    };
    let source_abs = names::normalize(
        &std::path::absolute(source).unwrap_or_else(|_| Path::new("/").join(source)),
    );
    let base = source_abs
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));

    let mut p = Problems::default();
    let top = Section::open(&mut p, "", &table, TOP_KEYS);

    let method = peek_auth_method(&table);
    let cloud = top
        .table(&mut p, "cloud")
        .map(|t| cloud(&mut p, t, &base, method, env));
    let auth = top
        .table(&mut p, "auth")
        .map(|t| auth(&mut p, t, &base, env));
    let sync = top.table(&mut p, "sync").map(|t| sync(&mut p, t));
    let trust = top.table(&mut p, "trust").map(|t| trust(&mut p, t, &base));
    let discover = discover(&mut p, &top);
    let instances = instances(&mut p, &top, !discover.is_empty());
    if let Some(trust) = &trust {
        check_files(&mut p, trust, &instances, !discover.is_empty());
    }
    let hooks = hooks(&mut p, &top, &instances, &base);
    let server = match top.table(&mut p, "server") {
        Some(t) => server(&mut p, t),
        None => Server::default(),
    };
    let log = top.table(&mut p, "log").map(|t| log(&mut p, t));

    match (cloud, auth, sync, trust, log) {
        (Some(cloud), Some(Some(auth)), Some(sync), Some(trust), Some(log)) if p.0.is_empty() => {
            let mut config = Config {
                source: source_abs,
                cloud,
                auth,
                sync,
                trust,
                server,
                discover,
                instances: instances.into_iter().filter_map(|i| i.valid).collect(),
                hooks,
                log,
                warnings: Vec::new(),
            };
            config.warnings =
                super::warnings::collect(&config, rustix::process::geteuid().as_raw());
            Ok(config)
        }
        _ => {
            // Every path to a missing section recorded a problem; this guards the invariant.
            if p.0.is_empty() {
                p.push("", "configuration incomplete");
            }
            Err(p.0)
        }
    }
}

/// `[server]`: `listen` is an IP address and port (`127.0.0.1:9464`, `[::1]:9464`).
fn server(p: &mut Problems, t: &toml::Table) -> Server {
    let sec = Section::open(p, "server", t, SERVER_KEYS);
    let listen = sec.string(p, "listen").and_then(|text| match text.parse() {
        Ok(addr) => Some(addr),
        Err(_) => {
            p.push(
                sec.key("listen"),
                format!("{text:?} is not an IP address and port, like \"127.0.0.1:9464\""),
            );
            None
        }
    });
    Server { listen }
}

/// One problem for a TOML syntax error, with the line and column of its start.
fn syntax_problem(text: &str, e: &toml::de::Error) -> Problem {
    let message = match e.span() {
        Some(span) => {
            let start = span.start.min(text.len());
            let before = &text[..start];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
            format!(
                "TOML syntax error at line {line}, column {column}: {}",
                e.message().trim_end()
            )
        }
        None => format!("TOML syntax error: {}", e.message().trim_end()),
    };
    Problem {
        key: String::new(),
        message,
    }
}

/// `auth.method` as written, if it is a string; the cloud section needs it to know whether
/// `project_id` is required.
fn peek_auth_method(table: &Table) -> Option<&str> {
    table.get("auth")?.as_table()?.get("method")?.as_str()
}

/// A path relative to the config file's folder, made absolute and normalised.
fn path_value(p: &mut Problems, sec: &Section<'_>, key: &str, base: &Path) -> Option<PathBuf> {
    let s = sec.string(p, key)?;
    if s.is_empty() {
        p.push(sec.key(key), "must not be empty (got \"\")");
        return None;
    }
    Some(names::normalize(&base.join(s)))
}

/// A duration that must be above zero.
fn positive_duration(p: &mut Problems, sec: &Section<'_>, key: &str) -> Option<Duration> {
    let d = sec.duration(p, key)?;
    if d.is_zero() {
        p.push(
            sec.key(key),
            format!("must be longer than zero, got {}", show_raw(sec, key)),
        );
        return None;
    }
    Some(d)
}

fn show_raw(sec: &Section<'_>, key: &str) -> String {
    sec.raw(key).map(show).unwrap_or_default()
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

fn cloud(
    p: &mut Problems,
    table: &Table,
    base: &Path,
    method: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Cloud {
    let sec = Section::open(p, "cloud", table, CLOUD_KEYS);
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
    // the region's name, password scopes its token by that name and reads the id from it.
    let optional = matches!(method, Some("aksk" | "metadata" | "password"));
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
        || (!optional && sec.require_present(p, "project_id", "with auth.method = \"token\""))
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

    let ca_file = path_value(p, &sec, "ca_file", base).and_then(|path| {
        let raw = show_raw(&sec, "ca_file");
        let problem = match crate::files::read_capped(&path, crate::files::MAX_CONFIG_FILE) {
            Err(e) => Some(format!("{raw} ({}): cannot read: {e}", path.display())),
            Ok(data) if !crate::cert::looks_like_pem(&data) => Some(format!(
                "{raw} ({}): holds no PEM certificate",
                path.display()
            )),
            Ok(data) => crate::cert::read_certs_lenient(&data).err().map(|e| {
                format!(
                    "{raw} ({}): not a PEM certificate file: {e}",
                    path.display()
                )
            }),
        };
        match problem {
            Some(message) => {
                p.push(sec.key("ca_file"), message);
                None
            }
            None => Some(path),
        }
    });

    let timeout = positive_duration(p, &sec, "timeout").unwrap_or(DEFAULT_CLOUD_TIMEOUT);

    Cloud {
        service,
        region: region.unwrap_or_default(),
        endpoint: api_endpoint.unwrap_or_else(|| url::Url::parse(PLACEHOLDER_URL).expect("valid")),
        project_id,
        iam_endpoint: iam_endpoint
            .unwrap_or_else(|| url::Url::parse(PLACEHOLDER_URL).expect("valid")),
        ca_file,
        timeout,
    }
}

/// `cloud.endpoint`: an https URL with a host, no credentials, query or fragment.
fn endpoint(p: &mut Problems, key: &str, s: &str) -> Option<url::Url> {
    let url = match url::Url::parse(s) {
        Ok(u) => u,
        Err(e) => {
            p.push(key, format!("{} is not a URL: {e}", quote(s)));
            return None;
        }
    };
    let problem = if url.scheme() != "https" {
        Some("must use https")
    } else if url.host_str().is_none_or(str::is_empty) {
        Some("has no host")
    } else if !url.username().is_empty() || url.password().is_some() {
        Some("must not hold credentials")
    } else if url.query().is_some() {
        Some("must not have a query (?...)")
    } else if url.fragment().is_some() {
        Some("must not have a fragment (#...)")
    } else {
        None
    };
    match problem {
        // The value is not echoed when it holds credentials.
        Some(why) if why == "must not hold credentials" => {
            p.push(key, format!("{why} (value not shown)"));
            None
        }
        Some(why) => {
            p.push(key, format!("{} {why}", quote(s)));
            None
        }
        None => Some(url),
    }
}

/// `[auth]`. `None` when the method is missing or unknown, or a key it needs is bad.
fn auth(
    p: &mut Problems,
    table: &Table,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<Auth> {
    let sec = Section::open(p, "auth", table, AUTH_KEYS);
    if !sec.require_present(p, "method", "") {
        return None;
    }
    let method = sec.string(p, "method")?;
    let Some((method, keys)) = METHOD_KEYS.iter().find(|(m, _)| *m == method) else {
        p.push(
            sec.key("method"),
            format!(
                "unknown method {} (expected \"aksk\", \"token\", \"password\" or \"metadata\")",
                quote(method)
            ),
        );
        return None;
    };
    // A key of another method is a mistake (a half-edited file), not something to ignore.
    let before = p.len();
    for (other, other_keys) in METHOD_KEYS {
        for key in other_keys
            .iter()
            .filter(|k| !keys.contains(k) && sec.has(k))
        {
            p.push(
                sec.key(key),
                format!(
                    "is a key of method {} but auth.method = {} (value not shown)",
                    quote(other),
                    quote(method)
                ),
            );
        }
    }
    let auth = match *method {
        "token" => {
            if !sec.require_present(p, "token_file", "with method = \"token\"") {
                return None;
            }
            let token_file = path_value(p, &sec, "token_file", base)?;
            Some(Auth::Token { token_file })
        }
        "aksk" => aksk(p, &sec, base, env).map(Auth::AkSk),
        "password" => {
            let why = "with method = \"password\"";
            let user = sec
                .require_present(p, "user", why)
                .then(|| non_empty(p, &sec, "user"))
                .flatten();
            let domain = sec
                .require_present(p, "domain", why)
                .then(|| non_empty(p, &sec, "domain"))
                .flatten();
            let password_file = sec
                .require_present(p, "password_file", why)
                .then(|| path_value(p, &sec, "password_file", base))
                .flatten();
            Some(Auth::Password(Password {
                user: user?,
                domain: domain?,
                password_file: password_file?,
            }))
        }
        "metadata" => {
            let metadata_endpoint = match sec.string(p, "metadata_endpoint") {
                Some(s) => metadata_endpoint(p, &sec.key("metadata_endpoint"), s)?,
                None if sec.has("metadata_endpoint") => return None,
                None => url::Url::parse(DEFAULT_METADATA_ENDPOINT).expect("valid"),
            };
            Some(Auth::Metadata { metadata_endpoint })
        }
        _ => unreachable!("METHOD_KEYS lists every method"),
    };
    auth.filter(|_| p.len() == before)
}

/// A string that must not be empty; echoed in messages (not a secret).
fn non_empty(p: &mut Problems, sec: &Section<'_>, key: &str) -> Option<String> {
    match sec.string(p, key)? {
        "" => {
            p.push(sec.key(key), "must not be empty (got \"\")");
            None
        }
        s => Some(s.to_string()),
    }
}

/// A secret from the file (`key`), else from the environment variable `var`. `Ok(None)`:
/// neither is set. Values are never echoed.
fn secret(
    p: &mut Problems,
    sec: &Section<'_>,
    key: &str,
    var: &'static str,
    env: &dyn Fn(&str) -> Option<String>,
    from_env: &mut Vec<&'static str>,
) -> Result<Option<Secret>, ()> {
    if sec.has(key) {
        return match sec.secret_string(p, key) {
            Some("") => {
                p.push(sec.key(key), "must not be empty");
                Err(())
            }
            Some(s) => Ok(Some(Secret::new(s))),
            None => Err(()),
        };
    }
    Ok(env(var).map(|v| {
        from_env.push(var);
        Secret::new(v.trim())
    }))
}

/// `method = "aksk"`: every value from the file, else from the SDK's environment variables.
fn aksk(
    p: &mut Problems,
    sec: &Section<'_>,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<AkSk> {
    let mut from_env = Vec::new();
    let access_key = match secret(p, sec, "access_key", ENV_AK, env, &mut from_env) {
        Ok(Some(ak)) => Some(ak),
        Ok(None) => {
            p.push(
                sec.key("access_key"),
                format!("missing (required with method = \"aksk\"; or set {ENV_AK})"),
            );
            None
        }
        Err(()) => None,
    };
    let secret_key = match (sec.has("secret_key"), sec.has("secret_key_file")) {
        (true, true) => {
            p.push(
                sec.key("secret_key_file"),
                "give secret_key or secret_key_file, not both",
            );
            None
        }
        (false, true) => path_value(p, sec, "secret_key_file", base).map(SecretKey::File),
        _ => match secret(p, sec, "secret_key", ENV_SK, env, &mut from_env) {
            Ok(Some(sk)) => Some(SecretKey::Inline(sk)),
            Ok(None) => {
                p.push(
                    sec.key("secret_key"),
                    format!(
                        "missing (required with method = \"aksk\": secret_key or \
                         secret_key_file; or set {ENV_SK})"
                    ),
                );
                None
            }
            Err(()) => None,
        },
    };
    let security_token = secret(
        p,
        sec,
        "security_token",
        ENV_SECURITY_TOKEN,
        env,
        &mut from_env,
    )
    .ok()?;
    Some(AkSk {
        access_key: access_key?,
        secret_key: secret_key?,
        security_token,
        from_env,
    })
}

/// `auth.metadata_endpoint`: http (the link-local service has no TLS) or https, a host, no
/// credentials, query or fragment.
fn metadata_endpoint(p: &mut Problems, key: &str, s: &str) -> Option<url::Url> {
    let url = match url::Url::parse(s) {
        Ok(u) => u,
        Err(e) => {
            p.push(key, format!("{} is not a URL: {e}", quote(s)));
            return None;
        }
    };
    let problem = if !matches!(url.scheme(), "http" | "https") {
        Some("must use http or https")
    } else if url.host_str().is_none_or(str::is_empty) {
        Some("has no host")
    } else if !url.username().is_empty() || url.password().is_some() {
        p.push(key, "must not hold credentials (value not shown)");
        return None;
    } else if url.query().is_some() {
        Some("must not have a query (?...)")
    } else if url.fragment().is_some() {
        Some("must not have a fragment (#...)")
    } else {
        None
    };
    match problem {
        Some(why) => {
            p.push(key, format!("{} {why}", quote(s)));
            None
        }
        None => Some(url),
    }
}

fn sync(p: &mut Problems, table: &Table) -> SyncSettings {
    let sec = Section::open(p, "sync", table, SYNC_KEYS);
    let interval = match sec.duration(p, "interval") {
        Some(d) if d < MIN_INTERVAL => {
            p.push(
                sec.key("interval"),
                format!(
                    "{} is shorter than the minimum \"{}\"",
                    show_raw(&sec, "interval"),
                    humantime::format_duration(MIN_INTERVAL)
                ),
            );
            DEFAULT_INTERVAL
        }
        Some(d) => d,
        None => DEFAULT_INTERVAL,
    };
    let jitter = sec
        .duration(p, "jitter")
        .unwrap_or(interval / JITTER_DIVISOR);

    let concurrency = match sec.integer(p, "concurrency") {
        None => DEFAULT_CONCURRENCY,
        Some(n) if (1..=MAX_CONCURRENCY as i64).contains(&n) => n as usize,
        Some(n) => {
            p.push(
                sec.key("concurrency"),
                format!("{n} is out of range (1..={MAX_CONCURRENCY})"),
            );
            DEFAULT_CONCURRENCY
        }
    };

    let retry_initial = positive_duration(p, &sec, "retry_initial");
    let retry_max = positive_duration(p, &sec, "retry_max");
    if let (Some(initial), Some(max)) = (
        retry_initial.or((!sec.has("retry_initial")).then_some(DEFAULT_RETRY_INITIAL)),
        retry_max.or((!sec.has("retry_max")).then_some(DEFAULT_RETRY_MAX)),
    ) && initial > max
    {
        let fmt = |key: &str, d: Duration| {
            if sec.has(key) {
                show_raw(&sec, key)
            } else {
                format!("\"{}\" (default)", humantime::format_duration(d))
            }
        };
        // Blame the key the user wrote; when both are written, the upper bound.
        let key = if sec.has("retry_max") {
            "retry_max"
        } else {
            "retry_initial"
        };
        p.push(
            sec.key(key),
            format!(
                "retry_initial {} must not exceed retry_max {}",
                fmt("retry_initial", initial),
                fmt("retry_max", max)
            ),
        );
    }

    let max_download_bytes = match sec.integer(p, "max_download_bytes") {
        None => DEFAULT_MAX_DOWNLOAD_BYTES,
        Some(n) if n >= 1 && (n as u64) <= MAX_MAX_DOWNLOAD_BYTES => n as u64,
        Some(n) => {
            p.push(
                sec.key("max_download_bytes"),
                format!("{n} is out of range (1..={MAX_MAX_DOWNLOAD_BYTES}, 64 MiB)"),
            );
            DEFAULT_MAX_DOWNLOAD_BYTES
        }
    };

    let allowed_download_hosts = match sec.strings(p, "allowed_download_hosts") {
        None => DEFAULT_ALLOWED_DOWNLOAD_HOSTS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        Some(items) => {
            if items.is_empty() {
                p.push(
                    sec.key("allowed_download_hosts"),
                    "must not be empty (got []): no download could ever succeed",
                );
            }
            let mut hosts = Vec::with_capacity(items.len());
            for (key, host) in items {
                let lower = host.to_ascii_lowercase();
                if names::is_host_pattern(&lower) {
                    if !hosts.contains(&lower) {
                        hosts.push(lower);
                    }
                } else {
                    p.push(
                        key,
                        format!(
                            "{} is not a host name or \"*.suffix\" pattern (no scheme, port or path)",
                            quote(host)
                        ),
                    );
                }
            }
            hosts
        }
    };

    let expiry_warning = sec
        .duration(p, "expiry_warning")
        .unwrap_or(DEFAULT_EXPIRY_WARNING);
    let rotation_overlap = sec
        .duration(p, "rotation_overlap")
        .unwrap_or(DEFAULT_ROTATION_OVERLAP);

    let watch_config = sec
        .boolean(p, "watch_config")
        .unwrap_or(DEFAULT_WATCH_CONFIG);

    SyncSettings {
        interval,
        jitter,
        concurrency,
        retry_initial: retry_initial.unwrap_or(DEFAULT_RETRY_INITIAL),
        retry_max: retry_max.unwrap_or(DEFAULT_RETRY_MAX),
        max_download_bytes,
        allowed_download_hosts,
        expiry_warning,
        rotation_overlap,
        watch_config,
    }
}

fn trust(p: &mut Problems, table: &Table, base: &Path) -> Trust {
    let sec = Section::open(p, "trust", table, TRUST_KEYS);
    let mut dir = PathBuf::new();
    if sec.require_present(p, "dir", "") {
        if let Some(path) = path_value(p, &sec, "dir", base) {
            match forbidden_dir(&path) {
                Some(Forbidden::Root) => p.push(
                    sec.key("dir"),
                    format!(
                        "{} resolves to /, the root, which certsync must not manage; choose a \
                         folder of its own",
                        show_raw(&sec, "dir")
                    ),
                ),
                Some(Forbidden::SystemCa { resolved, owned }) => p.push(
                    sec.key("dir"),
                    format!(
                        "{} resolves to {}, which is or lies inside {owned}, a folder the \
                         system's CA tooling owns (update-ca-certificates, update-ca-trust); \
                         certsync would overwrite or prune what it manages there: choose a \
                         folder of its own",
                        show_raw(&sec, "dir"),
                        resolved.display()
                    ),
                ),
                None => dir = path,
            }
        }
    }

    let bundle = sec
        .string(p, "bundle")
        .and_then(|b| match names::file_name_problem(b, None) {
            Some(why) => {
                p.push(sec.key("bundle"), format!("{} {why}", quote(b)));
                None
            }
            None => Some(b.to_string()),
        });

    let file_name = match sec.string(p, "file_name") {
        None => DEFAULT_FILE_NAME.to_string(),
        Some(t) => {
            match names::parse_template(t) {
                Err(why) => p.push(sec.key("file_name"), format!("{}: {why}", quote(t))),
                Ok(_) => {
                    // Placeholders expand to [A-Za-z0-9._-] only; a sample rendering finds
                    // the problems of the fixed text ("a/{name}", "{name}/..").
                    let sample = names::render_template(t, "name", "id", "category");
                    if let Some(why) = names::file_name_problem(&sample, bundle.as_deref()) {
                        p.push(
                            sec.key("file_name"),
                            format!(
                                "{}: the rendered name (e.g. {}) {why}",
                                quote(t),
                                quote(&sample)
                            ),
                        );
                    }
                }
            }
            t.to_string()
        }
    };

    let mode = match sec.raw("mode") {
        None => DEFAULT_MODE,
        Some(Value::String(s)) => {
            let digits = s.strip_prefix("0o").unwrap_or(s);
            match u32::from_str_radix(digits, 8) {
                Ok(m)
                    if !digits.is_empty()
                        && digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
                        && m <= MAX_MODE =>
                {
                    m
                }
                _ => {
                    p.push(
                        sec.key("mode"),
                        format!(
                            "{} is not an octal file mode from \"0000\" to \"0777\"",
                            quote(s)
                        ),
                    );
                    DEFAULT_MODE
                }
            }
        }
        Some(other) => {
            // An integer is refused rather than guessed: `mode = 644` would be 0o1204.
            p.push(
                sec.key("mode"),
                expected("an octal string like \"0644\"", other),
            );
            DEFAULT_MODE
        }
    };

    let capath = sec.boolean(p, "capath").unwrap_or(DEFAULT_CAPATH);
    let prune = sec.boolean(p, "prune").unwrap_or(DEFAULT_PRUNE);

    let owner = account(p, &sec, "owner", accounts::PASSWD_FILE, "user");
    let group = account(p, &sec, "group", accounts::GROUP_FILE, "group");
    let write_mode = choice(
        p,
        &sec,
        "write_mode",
        [
            ("rename", WriteMode::Rename),
            ("in-place", WriteMode::InPlace),
        ],
    );
    let layout = choice(
        p,
        &sec,
        "layout",
        [("flat", Layout::Flat), ("atomic-dir", Layout::AtomicDir)],
    );
    if write_mode == WriteMode::InPlace && layout == Layout::AtomicDir {
        p.push(
            sec.key("write_mode"),
            "\"in-place\" cannot be combined with layout = \"atomic-dir\" (which replaces every \
             file with a new one in a new folder); use one or the other",
        );
    }

    let pkcs12 = sec.string(p, "pkcs12").and_then(|name| {
        let problem = if bundle.as_deref() == Some(name) {
            Some("is the bundle's name (trust.bundle)".to_string())
        } else {
            names::file_name_problem(name, None)
        };
        match problem {
            Some(why) => {
                p.push(sec.key("pkcs12"), format!("{} {why}", quote(name)));
                None
            }
            None => Some(name.to_string()),
        }
    });
    let pkcs12_password_file = path_value(p, &sec, "pkcs12_password_file", base);
    if pkcs12_password_file.is_some() && !sec.has("pkcs12") {
        p.push(
            sec.key("pkcs12_password_file"),
            "has no effect without trust.pkcs12 (the truststore it protects)",
        );
    }

    Trust {
        dir,
        file_name,
        mode,
        bundle,
        capath,
        prune,
        owner,
        group,
        write_mode,
        layout,
        pkcs12,
        pkcs12_password_file,
    }
}

/// `trust.owner` / `trust.group`: a number (TOML integer or digits), else a name looked up in
/// `file`.
fn account(
    p: &mut Problems,
    sec: &Section<'_>,
    key: &str,
    file: &str,
    what: &str,
) -> Option<Account> {
    let raw = sec.raw(key)?;
    let text = match raw {
        Value::Integer(n) => n.to_string(),
        Value::String(s) => s.clone(),
        other => {
            p.push(
                sec.key(key),
                expected(&format!("a {what} name or number"), other),
            );
            return None;
        }
    };
    if let Some(number) = accounts::parse_number(&text) {
        return match number {
            Ok(id) => Some(Account { id, name: None }),
            Err(why) => {
                p.push(sec.key(key), format!("{} {why}", show(raw)));
                None
            }
        };
    }
    match accounts::lookup(Path::new(file), &text) {
        Ok(Some(id)) => Some(Account {
            id,
            name: Some(text),
        }),
        Ok(None) => {
            p.push(
                sec.key(key),
                format!(
                    "no {what} named {} in {file} (a {what} known only to NSS, such as LDAP, must be given by number)",
                    show(raw)
                ),
            );
            None
        }
        Err(why) => {
            p.push(sec.key(key), format!("{}: {why}", show(raw)));
            None
        }
    }
}

/// A string key with a fixed set of values; the first is the default.
fn choice<T: Copy, const N: usize>(
    p: &mut Problems,
    sec: &Section<'_>,
    key: &str,
    values: [(&str, T); N],
) -> T {
    match sec.string(p, key) {
        None => values[0].1,
        Some(v) => match values.iter().find(|(name, _)| *name == v) {
            Some((_, value)) => *value,
            None => {
                let names: Vec<String> = values.iter().map(|(n, _)| format!("\"{n}\"")).collect();
                p.push(
                    sec.key(key),
                    format!(
                        "unknown value {} (expected {})",
                        quote(v),
                        names.join(" or ")
                    ),
                );
                values[0].1
            }
        },
    }
}

/// Why `trust.dir` may not be a folder.
#[derive(Debug, PartialEq, Eq)]
enum Forbidden {
    /// It is the root.
    Root,
    /// It is, or lies inside, `owned`, one of [`SYSTEM_CA_DIRS`]; `resolved` is the path
    /// that showed it.
    SystemCa {
        resolved: PathBuf,
        owned: &'static str,
    },
}

/// Whether `dir` (absolute, lexically normalised) is forbidden as it is written or once its
/// symlinks are followed: the root, or one of [`SYSTEM_CA_DIRS`] or a folder inside one.
fn forbidden_dir(dir: &Path) -> Option<Forbidden> {
    let check = |d: &Path| {
        if FORBIDDEN_TRUST_DIRS.iter().any(|f| d == Path::new(f)) {
            return Some(Forbidden::Root);
        }
        // `starts_with` compares whole components: /etc/pkix is not inside /etc/pki.
        SYSTEM_CA_DIRS
            .iter()
            .find(|owned| d.starts_with(owned))
            .map(|owned| Forbidden::SystemCa {
                resolved: d.to_path_buf(),
                owned,
            })
    };
    check(dir).or_else(|| follow_symlinks(dir).and_then(|real| check(&real)))
}

/// Most symlinks followed in one path before giving up (the kernel's limit, `ELOOP`).
const MAX_SYMLINKS: usize = 40;

/// `path` (absolute) with every symlink among its existing components followed, as the
/// kernel would follow them when the store opens or creates the folder; components that do
/// not exist are kept as written. `fs::canonicalize` is not enough: it fails for a folder
/// that does not exist yet, even when an existing parent is a symlink into a system folder.
/// `None` after [`MAX_SYMLINKS`] links (a loop).
fn follow_symlinks(path: &Path) -> Option<PathBuf> {
    use std::ffi::OsString;
    use std::path::Component;
    // Components still to walk, the next one last.
    let mut todo: Vec<OsString> = Vec::new();
    let push = |todo: &mut Vec<OsString>, p: &Path| {
        for c in p.components().rev() {
            match c {
                Component::Normal(name) => todo.push(name.to_os_string()),
                Component::ParentDir => todo.push("..".into()),
                Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            }
        }
    };
    push(&mut todo, path);
    let mut out = PathBuf::from("/");
    let mut links = 0;
    while let Some(name) = todo.pop() {
        if name == ".." {
            // `out` holds no symlink, so its parent is the real parent.
            out.pop();
            continue;
        }
        let next = out.join(&name);
        match std::fs::symlink_metadata(&next) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return None;
                }
                let target = std::fs::read_link(&next).ok()?;
                if target.is_absolute() {
                    out = PathBuf::from("/");
                }
                push(&mut todo, &target);
            }
            _ => out = next,
        }
    }
    Some(out)
}

/// One `[[instance]]` as read: its key path, what was written for its id and name (even when
/// invalid, so that hook filters naming it are not reported twice), and the instance when
/// every rule held.
struct ReadInstance {
    key: String,
    id: Option<String>,
    name: Option<String>,
    valid: Option<Instance>,
}

/// `[[discover]]`: each table a ListInstances query.
fn discover(p: &mut Problems, top: &Section<'_>) -> Vec<Discover> {
    let mut out = Vec::new();
    for (key, table) in top.tables(p, "discover") {
        let sec = Section::open(p, key.clone(), table, DISCOVER_KEYS);
        let datastore = sec.string(p, "datastore").and_then(|d| {
            if !d.is_empty() && d.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                Some(d.to_ascii_lowercase())
            } else {
                p.push(
                    sec.key("datastore"),
                    format!("{} is not a datastore type like \"mongodb\", \"cassandra\", \"redis\" or \"influxdb\"", quote(d)),
                );
                None
            }
        });
        let name = sec.string(p, "name").and_then(|n| {
            if n.is_empty() || n.len() > 128 || n.chars().any(char::is_control) {
                p.push(
                    sec.key("name"),
                    format!("{} is not a usable name filter", quote(n)),
                );
                None
            } else {
                Some(n.to_string())
            }
        });
        let ssl_only = sec.boolean(p, "ssl_only").unwrap_or(DEFAULT_SSL_ONLY);
        out.push(Discover {
            datastore,
            name,
            ssl_only,
        });
    }
    out
}

fn instances(p: &mut Problems, top: &Section<'_>, discovering: bool) -> Vec<ReadInstance> {
    let tables = top.tables(p, "instance");
    if tables.is_empty() && !discovering && !matches!(top.raw("instance"), Some(v) if !v.is_array())
    {
        p.push(
            "instance",
            "at least one [[instance]] (or [[discover]]) is required (got none)",
        );
    }
    let mut out: Vec<ReadInstance> = Vec::with_capacity(tables.len());
    for (key, table) in tables {
        let before = p.len();
        let sec = Section::open(p, key.clone(), table, INSTANCE_KEYS);
        let raw_id = sec.raw("id").and_then(Value::as_str).map(str::to_string);
        let raw_name = sec.raw("name").and_then(Value::as_str).map(str::to_string);

        let mut id = String::new();
        if sec.require_present(p, "id", "") {
            match sec.string(p, "id") {
                Some(s) if names::is_instance_id(s) => id = s.to_string(),
                Some(s) => p.push(
                    sec.key("id"),
                    format!("{} is not an instance id ([A-Za-z0-9-]{{1,64}})", quote(s)),
                ),
                None => {}
            }
        }
        let name = sec.string(p, "name").and_then(|s| {
            if names::is_name(s) {
                Some(s.to_string())
            } else {
                p.push(
                    sec.key("name"),
                    format!("{} is not a valid name ([A-Za-z0-9._-]{{1,64}})", quote(s)),
                );
                None
            }
        });
        let categories = sec.strings(p, "categories").map(|items| {
            if items.is_empty() {
                p.push(
                    sec.key("categories"),
                    "must not be empty (got []); leave it out to sync every category",
                );
            }
            let mut cats: Vec<String> = Vec::with_capacity(items.len());
            for (item_key, c) in items {
                if !names::is_name(c) {
                    p.push(
                        item_key,
                        format!(
                            "{} is not a valid category ([A-Za-z0-9._-]{{1,64}})",
                            quote(c)
                        ),
                    );
                } else if cats.iter().any(|x| x == c) {
                    p.push(item_key, format!("{} is listed twice", quote(c)));
                } else {
                    cats.push(c.to_string());
                }
            }
            cats
        });
        let mut pins = Vec::new();
        if let Some(items) = sec.strings(p, "pin_sha256") {
            if items.is_empty() {
                p.push(
                    sec.key("pin_sha256"),
                    "must not be empty (got []); leave it out to accept any valid CA",
                );
            }
            for (item_key, s) in items {
                match parse_pin(s) {
                    Some(pin) => pins.push(pin),
                    None => p.push(
                        item_key,
                        format!(
                            "{} is not a SHA-256 fingerprint (64 hex digits, colons allowed)",
                            quote(s)
                        ),
                    ),
                }
            }
        }

        // Ids and names share one namespace: hook filters and {name} accept either.
        for earlier in &out {
            if !id.is_empty() && earlier.id.as_deref() == Some(id.as_str()) {
                p.push(
                    sec.key("id"),
                    format!("{} is also the id of {}", quote(&id), earlier.key),
                );
            }
            if let Some(n) = &name {
                if earlier.name.as_deref() == Some(n.as_str()) {
                    p.push(
                        sec.key("name"),
                        format!("{} is also the name of {}", quote(n), earlier.key),
                    );
                } else if earlier.id.as_deref() == Some(n.as_str()) {
                    p.push(
                        sec.key("name"),
                        format!(
                            "{} is the id of {}; names and ids must not overlap",
                            quote(n),
                            earlier.key
                        ),
                    );
                }
            }
            if !id.is_empty() && earlier.name.as_deref() == Some(id.as_str()) {
                p.push(
                    sec.key("id"),
                    format!(
                        "{} is the name of {}; names and ids must not overlap",
                        quote(&id),
                        earlier.key
                    ),
                );
            }
        }

        let valid = (p.len() == before).then_some(Instance {
            id,
            name,
            categories,
            pins,
        });
        out.push(ReadInstance {
            key,
            id: raw_id,
            name: raw_name,
            valid,
        });
    }
    out
}

/// A SHA-256 fingerprint: 64 hex digits in either case, colons allowed anywhere.
fn parse_pin(s: &str) -> Option<[u8; 32]> {
    let digits: String = s.chars().filter(|&c| c != ':').collect();
    if digits.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(digits, &mut out).ok()?;
    Some(out)
}

/// The rules that tie `trust.file_name` to the instances: every file a plain name of its own.
fn check_files(p: &mut Problems, trust: &Trust, instances: &[ReadInstance], discovering: bool) {
    let Ok(pieces) = names::parse_template(&trust.file_name) else {
        return;
    };
    let has = |piece: Piece<'_>| pieces.contains(&piece);
    let valid: Vec<(&str, &Instance)> = instances
        .iter()
        .filter_map(|r| r.valid.as_ref().map(|i| (r.key.as_str(), i)))
        .collect();
    let before = p.len();
    let template = quote(&trust.file_name);

    if !has(Piece::Category) {
        for (key, inst) in &valid {
            match &inst.categories {
                Some(c) if c.len() == 1 => {}
                other => p.push(
                    format!("{key}.categories"),
                    format!(
                        "trust.file_name {template} has no {{category}}, so every instance needs \
                         exactly one category in `categories`; got {}",
                        match other {
                            Some(c) => format!("{c:?}"),
                            None => "none (every category)".into(),
                        }
                    ),
                ),
            }
        }
    }
    if !has(Piece::Name) && !has(Piece::Id) && discovering {
        p.push(
            "trust.file_name",
            format!(
                "{template} has neither {{name}} nor {{id}}, so [[discover]] cannot add instances"
            ),
        );
    } else if !has(Piece::Name) && !has(Piece::Id) && instances.len() > 1 {
        p.push(
            "trust.file_name",
            format!(
                "{template} has neither {{name}} nor {{id}}, so only one instance is possible; {} are configured",
                instances.len()
            ),
        );
    }
    if p.len() > before {
        // The structural rules already explain every collision the rendering would find.
        return;
    }

    let mut owners: HashMap<String, (&str, &Instance)> = HashMap::new();
    for (key, inst) in &valid {
        let probe = [PROBE_CATEGORY.to_string()];
        let cats = inst.categories.as_deref().unwrap_or(&probe);
        for cat in cats {
            let file = trust.file_name_for(inst, cat);
            if let Some(why) = trust.file_name_problem(&file) {
                p.push(
                    key.to_string(),
                    format!(
                        "file name {} (trust.file_name {template}, category {}) {why}",
                        quote(&file),
                        quote(cat)
                    ),
                );
                continue;
            }
            match owners.get(&file) {
                Some((other_key, other)) if !std::ptr::eq(*other, *inst) => p.push(
                    key.to_string(),
                    format!(
                        "instances {} ({}) and {} ({other_key}) would both write file {} \
                         (trust.file_name {template})",
                        quote(inst.display_name()),
                        key,
                        quote(other.display_name()),
                        quote(&file)
                    ),
                ),
                Some(_) => {}
                None => {
                    owners.insert(file, (key, inst));
                }
            }
        }
    }
}

fn hooks(
    p: &mut Problems,
    top: &Section<'_>,
    instances: &[ReadInstance],
    base: &Path,
) -> Vec<Hook> {
    let mut out: Vec<(String, Hook)> = Vec::new();
    for (key, table) in top.tables(p, "hook") {
        let sec = Section::open(p, key.clone(), table, HOOK_KEYS);
        let signal_style = sec.has("signal") || sec.has("pid_file");
        let mut signal_action = None;
        if signal_style {
            if sec.has("command") {
                p.push(
                    sec.key("command"),
                    "a hook has either command, or signal and pid_file, not both",
                );
            }
            let signal = sec.string(p, "signal").and_then(|raw| {
                let upper = raw.trim().to_ascii_uppercase();
                let canonical = if upper.starts_with("SIG") {
                    upper
                } else {
                    format!("SIG{upper}")
                };
                if HOOK_SIGNALS.contains(&canonical.as_str()) {
                    Some(canonical)
                } else {
                    p.push(
                        sec.key("signal"),
                        format!(
                            "unknown signal {} (one of {})",
                            quote(raw),
                            HOOK_SIGNALS.join(", ")
                        ),
                    );
                    None
                }
            });
            if !sec.has("signal") {
                p.push(
                    sec.key("signal"),
                    "missing: a hook with pid_file needs signal (e.g. \"SIGHUP\")",
                );
            }
            if !sec.has("pid_file") {
                p.push(
                    sec.key("pid_file"),
                    "missing: a signal hook needs pid_file (the pid is read from it at each run)",
                );
            }
            let pid_file = sec.string(p, "pid_file").and_then(|raw| {
                if raw.is_empty() {
                    p.push(sec.key("pid_file"), "must not be empty (got \"\")");
                    None
                } else {
                    Some(names::normalize(&base.join(raw)))
                }
            });
            if let (Some(signal), Some(pid_file)) = (signal, pid_file) {
                signal_action = Some(HookAction::Signal { signal, pid_file });
            }
        }

        let mut command = Vec::new();
        if !signal_style && sec.require_present(p, "command", "") {
            if let Some(items) = sec.strings(p, "command") {
                if items.is_empty() {
                    p.push(
                        sec.key("command"),
                        "must not be empty (got []): give the argv",
                    );
                } else if !Path::new(items[0].1).is_absolute() {
                    p.push(
                        items[0].0.clone(),
                        format!(
                            "{} is not an absolute path (commands run without a shell or PATH)",
                            quote(items[0].1)
                        ),
                    );
                } else if Path::new(items[0].1).file_name().is_none() {
                    p.push(
                        items[0].0.clone(),
                        format!("{} does not name a file", quote(items[0].1)),
                    );
                } else {
                    command = items.iter().map(|(_, s)| s.to_string()).collect();
                }
            }
        }

        let name = match sec.string(p, "name") {
            Some("") => {
                p.push(sec.key("name"), "must not be empty (got \"\")");
                String::new()
            }
            Some(n) => n.to_string(),
            None => match &signal_action {
                Some(HookAction::Signal { signal, pid_file }) => format!(
                    "{signal}-{}",
                    pid_file
                        .file_name()
                        .map(|f| f.to_string_lossy())
                        .unwrap_or_default()
                ),
                _ => command
                    .first()
                    .and_then(|c| Path::new(c).file_name())
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            },
        };
        if !name.is_empty()
            && let Some((other_key, _)) = out.iter().find(|(_, h)| h.name == name)
        {
            let hint = if sec.has("name") {
                ""
            } else {
                " (the default, from command[0]); set name to tell them apart"
            };
            p.push(
                sec.key("name"),
                format!("{} is also the name of {other_key}{hint}", quote(&name)),
            );
        }

        let timeout = positive_duration(p, &sec, "timeout").unwrap_or(DEFAULT_HOOK_TIMEOUT);

        let filter = sec.strings(p, "instances").map(|items| {
            if items.is_empty() {
                p.push(
                    sec.key("instances"),
                    "must not be empty (got []); leave it out to run on any change",
                );
            }
            let mut ids: Vec<String> = Vec::new();
            for (item_key, wanted) in items {
                let found = instances
                    .iter()
                    .find(|r| r.id.as_deref() == Some(wanted) || r.name.as_deref() == Some(wanted));
                match found {
                    Some(r) => {
                        // An instance with its own errors is already reported.
                        if let Some(inst) = &r.valid
                            && !ids.contains(&inst.id)
                        {
                            ids.push(inst.id.clone());
                        }
                    }
                    None => p.push(
                        item_key,
                        format!(
                            "unknown instance {} (not the id or name of any [[instance]])",
                            quote(wanted)
                        ),
                    ),
                }
            }
            ids
        });

        out.push((
            key,
            Hook {
                name,
                action: signal_action.unwrap_or(HookAction::Command(command)),
                timeout,
                instances: filter,
            },
        ));
    }
    out.into_iter().map(|(_, h)| h).collect()
}

fn log(p: &mut Problems, table: &Table) -> Log {
    let sec = Section::open(p, "log", table, LOG_KEYS);
    let format = match sec.string(p, "format") {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            p.push(
                sec.key("format"),
                format!(
                    "unknown format {} (expected \"text\" or \"json\")",
                    quote(other)
                ),
            );
            LogFormat::Text
        }
    };
    let level = sec.string(p, "level").and_then(|l| {
        if l.trim().is_empty() {
            p.push(sec.key("level"), "must not be empty (got \"\")");
            return None;
        }
        match tracing_subscriber::EnvFilter::builder().parse(l) {
            Ok(_) => Some(l.to_string()),
            Err(e) => {
                p.push(
                    sec.key("level"),
                    format!("{} is not a log filter: {e}", quote(l)),
                );
                None
            }
        }
    });
    Log { format, level }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_accept_colons_and_either_case() {
        let upper = ["AB"; 32].join(":");
        assert_eq!(parse_pin(&upper), Some([0xab; 32]));
        assert_eq!(parse_pin(&"0f".repeat(32)), Some([0x0f; 32]));
        assert_eq!(parse_pin(&"0f".repeat(31)), None);
        assert_eq!(parse_pin(&"0g".repeat(32)), None);
        assert_eq!(parse_pin(""), None);
    }

    #[test]
    fn syntax_errors_count_columns_in_characters() {
        let text = "# ünï\nkey = \"ä\" x\n";
        let e = text.parse::<Table>().unwrap_err();
        let problem = syntax_problem(text, &e);
        assert_eq!(problem.key, "");
        assert!(
            problem
                .message
                .starts_with("TOML syntax error at line 2, column 11:"),
            "{}",
            problem.message
        );
    }

    #[test]
    fn forbidden_dirs_are_found_lexically() {
        assert_eq!(forbidden_dir(Path::new("/")), Some(Forbidden::Root));
        for (dir, owned) in [
            ("/etc/ssl/certs", "/etc/ssl/certs"),
            ("/etc/pki/tls/certs", "/etc/pki"),
            (
                "/usr/local/share/ca-certificates/x",
                "/usr/local/share/ca-certificates",
            ),
        ] {
            assert_eq!(
                forbidden_dir(Path::new(dir)),
                Some(Forbidden::SystemCa {
                    resolved: dir.into(),
                    owned
                })
            );
        }
        assert_eq!(forbidden_dir(Path::new("/var/lib/certsync/trust")), None);
        assert_eq!(forbidden_dir(Path::new("/etc/pkix")), None);
    }

    #[test]
    fn symlinks_are_followed_into_folders_that_do_not_exist_yet() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().canonicalize().unwrap();
        std::fs::create_dir(real.join("a")).unwrap();
        std::os::unix::fs::symlink("a", real.join("rel")).unwrap();
        std::os::unix::fs::symlink("/nowhere/x", real.join("abs")).unwrap();
        std::os::unix::fs::symlink("loop", real.join("loop")).unwrap();
        assert_eq!(
            follow_symlinks(&real.join("rel/new/deeper")),
            Some(real.join("a/new/deeper"))
        );
        assert_eq!(
            follow_symlinks(&real.join("abs/y")),
            Some(PathBuf::from("/nowhere/x/y"))
        );
        assert_eq!(follow_symlinks(&real.join("loop/z")), None);
    }
}
