//! Invalid configurations: every rule of SPEC 3 has a negative test asserting the key path of
//! the problem and that the bad value appears in its message.

use std::path::Path;

use certsync::config::{self, ConfigError, Problem};

/// A configuration built from the minimal valid one, key by key.
#[derive(Clone)]
struct Cfg {
    tables: Vec<(&'static str, Vec<(String, String)>)>,
    instances: String,
    tail: String,
}

impl Cfg {
    fn new() -> Cfg {
        let kv = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        Cfg {
            tables: vec![
                (
                    "cloud",
                    kv(&[
                        ("region", "\"cn-north-4\""),
                        ("project_id", "\"619d3e78f61b4be68bc5aa0b59edcf7b\""),
                    ]),
                ),
                (
                    "auth",
                    kv(&[("method", "\"token\""), ("token_file", "\"token\"")]),
                ),
                ("sync", Vec::new()),
                ("trust", kv(&[("dir", "\"trust\"")])),
                ("server", Vec::new()),
                ("log", Vec::new()),
            ],
            instances: "[[instance]]\nid = \"inst-1\"\n".into(),
            tail: String::new(),
        }
    }

    /// Sets `table.key = value` (value in TOML syntax), replacing an earlier value.
    fn set(mut self, table: &str, key: &str, value: &str) -> Cfg {
        let entries = &mut self
            .tables
            .iter_mut()
            .find(|(t, _)| *t == table)
            .expect("known table")
            .1;
        entries.retain(|(k, _)| k != key);
        entries.push((key.to_string(), value.to_string()));
        self
    }

    fn unset(mut self, table: &str, key: &str) -> Cfg {
        for (t, entries) in &mut self.tables {
            if *t == table {
                entries.retain(|(k, _)| k != key);
            }
        }
        self
    }

    /// Replaces the `[[instance]]` tables.
    fn instances(mut self, raw: &str) -> Cfg {
        self.instances = raw.to_string();
        self
    }

    /// Appends raw TOML at the end (hooks, discover, ...).
    fn tail(mut self, raw: &str) -> Cfg {
        self.tail.push_str(raw);
        self.tail.push('\n');
        self
    }

    fn text(&self) -> String {
        let mut out = String::new();
        for (table, entries) in &self.tables {
            out.push_str(&format!("[{table}]\n"));
            for (k, v) in entries {
                out.push_str(&format!("{k} = {v}\n"));
            }
            out.push('\n');
        }
        out.push_str(&self.instances);
        out.push('\n');
        out.push_str(&self.tail);
        out
    }
}

const SOURCE: &str = "/srv/conf/certsync.toml";

fn error_of_at(text: &str, source: &Path) -> ConfigError {
    match config::parse(text, source) {
        Ok(_) => panic!("expected an invalid config:\n{text}"),
        Err(e) => e,
    }
}

fn problems(cfg: &Cfg) -> Vec<Problem> {
    error_of_at(&cfg.text(), Path::new(SOURCE)).problems
}

/// Asserts a problem at exactly `key` whose message holds every needle.
fn assert_has(problems: &[Problem], key: &str, needles: &[&str]) {
    let found = problems
        .iter()
        .any(|p| p.key == key && needles.iter().all(|n| p.message.contains(n)));
    assert!(
        found,
        "no problem at {key} containing {needles:?}; got:\n{}",
        problems
            .iter()
            .map(|p| format!("  {p}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Asserts that `cfg` fails, with a problem at `key` whose message holds every needle.
fn expect(cfg: Cfg, key: &str, needles: &[&str]) {
    assert_has(&problems(&cfg), key, needles);
}

fn assert_valid(cfg: &Cfg) {
    if let Err(e) = config::parse(&cfg.text(), Path::new(SOURCE)) {
        panic!("expected valid:\n{}\n{e}", cfg.text());
    }
}

#[test]
fn the_base_configuration_is_valid() {
    assert_valid(&Cfg::new());
}

#[test]
fn syntax_error_is_one_problem_with_line_and_column() {
    let e = error_of_at("[cloud]\nregion = \"cn-north-4\nx = 1\n", Path::new(SOURCE));
    assert_eq!(e.problems.len(), 1);
    assert_eq!(e.problems[0].key, "");
    assert!(
        e.problems[0].message.contains("line 2, column"),
        "{}",
        e.problems[0].message
    );

    let e = error_of_at("[cloud]\n[cloud]\n", Path::new(SOURCE));
    assert_eq!(e.problems.len(), 1);
    assert!(
        e.problems[0]
            .message
            .contains("line 2, column 2: duplicate"),
        "{}",
        e.problems[0].message
    );
}

#[test]
fn unreadable_file_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.toml");
    let e = config::load(&path).unwrap_err();
    assert_eq!(e.source_path, path);
    assert_eq!(e.problems.len(), 1);
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!(
            "{}: 1 configuration error(s):\n  cannot read",
            path.display()
        )),
        "{shown}"
    );
}

#[test]
fn display_lists_every_problem_under_the_path() {
    let cfg = Cfg::new()
        .set("sync", "concurrency", "0")
        .set("log", "format", "\"xml\"");
    let e = error_of_at(&cfg.text(), Path::new(SOURCE));
    assert_eq!(
        e.to_string(),
        "/srv/conf/certsync.toml: 2 configuration error(s):\n  \
         sync.concurrency: 0 is out of range (1..=256)\n  \
         log.format: unknown format \"xml\" (expected \"text\" or \"json\")"
    );
}

#[test]
fn unknown_keys_at_every_level() {
    let cfg = Cfg::new()
        .set("cloud", "regoin", "\"x\"")
        .set("sync", "intervall", "\"1h\"")
        .set("server", "port", "9464")
        .instances("[[instance]]\nid = \"a\"\n[[instance]]\nid = \"b\"\ncategory = \"intl\"\n")
        .tail("[[hook]]\ncommand = [\"/bin/true\"]\nshell = true\n")
        .tail("[metrics]\nport = 1\n");
    let text = format!("colour = \"blue\"\n{}", cfg.text());
    let p = error_of_at(&text, Path::new(SOURCE)).problems;
    assert_has(&p, "colour", &["\"colour\"", "top level"]);
    assert_has(&p, "metrics", &["\"metrics\""]);
    assert_has(&p, "cloud.regoin", &["\"regoin\"", "region"]);
    assert_has(&p, "sync.intervall", &["\"intervall\""]);
    assert_has(&p, "server.port", &["\"port\""]);
    assert_has(&p, "instance[1].category", &["\"category\"", "categories"]);
    assert_has(&p, "hook[0].shell", &["\"shell\""]);
    assert_eq!(p.len(), 7, "{p:?}");
}

#[test]
fn unknown_keys_never_echo_their_value() {
    let p = problems(&Cfg::new().set("auth", "token", "\"s3cr3t-token\""));
    assert_has(&p, "auth.token", &["unknown key \"token\""]);
    assert!(p.iter().all(|p| !p.message.contains("s3cr3t")), "{p:?}");
}

#[test]
fn all_problems_of_a_file_are_reported_at_once() {
    let cfg = Cfg::new()
        .set("cloud", "region", "\"Mars\"")
        .set("cloud", "timeout", "\"soon\"")
        .set("auth", "method", "\"kerberos\"")
        .set("sync", "interval", "\"1s\"")
        .set("trust", "mode", "\"0999\"")
        .set("trust", "owner", "\"no-such-user-certsync\"")
        .set("trust", "colour", "\"red\"")
        .instances("[[instance]]\nid = \"a b\"\n[[instance]]\nid = \"ok\"\nname = \"-\"\ncategories = [\"\"]\n")
        .tail("[[hook]]\ncommand = [\"/bin/true\"]\n[[hook]]\ncommand = [\"true\"]\ntimeout = 5\n")
        .tail("[[discover]]\nname = \"*prod\"\n")
        .set("log", "level", "\"\"");
    let p = problems(&cfg);
    assert_has(&p, "cloud.region", &["\"Mars\""]);
    assert_has(&p, "cloud.timeout", &["\"soon\""]);
    assert_has(&p, "auth.method", &["\"kerberos\""]);
    assert_has(&p, "sync.interval", &["\"1s\""]);
    assert_has(&p, "trust.mode", &["\"0999\""]);
    assert_has(
        &p,
        "trust.owner",
        &["no user named", "\"no-such-user-certsync\""],
    );
    assert_has(&p, "trust.colour", &["\"colour\""]);
    assert_has(&p, "instance[0].id", &["\"a b\""]);
    assert_has(&p, "instance[1].categories[0]", &["\"\""]);
    assert_has(&p, "hook[1].command[0]", &["\"true\""]);
    assert_has(&p, "hook[1].timeout", &["5"]);
    assert_has(&p, "log.level", &["\"\""]);
    // The name "-" is valid; no other problem is invented.
    assert_eq!(p.len(), 12, "{p:#?}");
}

// ---- [cloud] ----

#[test]
fn cloud_service() {
    expect(
        Cfg::new().set("cloud", "service", "\"mysql\""),
        "cloud.service",
        &["\"mysql\"", "gaussdb-nosql", "dds"],
    );
    expect(
        Cfg::new().set("cloud", "service", "1"),
        "cloud.service",
        &["1", "string"],
    );
}

#[test]
fn cloud_region() {
    expect(
        Cfg::new().unset("cloud", "region"),
        "cloud.region",
        &["missing"],
    );
    for bad in [
        "CN-North-4",
        "cn_north_4",
        "cn-north",
        "cn-north-4.evil.example",
        "",
    ] {
        expect(
            Cfg::new().set("cloud", "region", &format!("{bad:?}")),
            "cloud.region",
            &[&format!("{bad:?}")],
        );
    }
}

#[test]
fn cloud_endpoint() {
    for (bad, why) in [
        ("http://gaussdb.example.com", "https"),
        ("https://gaussdb.example.com/?a=b", "query"),
        ("https://gaussdb.example.com/#frag", "fragment"),
        ("not a url", "not a URL"),
    ] {
        expect(
            Cfg::new().set("cloud", "endpoint", &format!("{bad:?}")),
            "cloud.endpoint",
            &[&format!("{bad:?}"), why],
        );
    }
    // Credentials in the URL are refused without being echoed.
    let p = problems(&Cfg::new().set("cloud", "endpoint", "\"https://u:hunter2@example.com\""));
    assert_has(&p, "cloud.endpoint", &["credentials"]);
    assert!(p.iter().all(|p| !p.message.contains("hunter2")));
}

#[test]
fn cloud_project_id() {
    expect(
        Cfg::new().unset("cloud", "project_id"),
        "cloud.project_id",
        &["missing", "token"],
    );
    for bad in ["619d3e78/../x", "", &"a".repeat(65)] {
        expect(
            Cfg::new().set("cloud", "project_id", &format!("{bad:?}")),
            "cloud.project_id",
            &[&format!("{bad:?}")],
        );
    }
}

#[test]
fn cloud_timeout() {
    expect(
        Cfg::new().set("cloud", "timeout", "\"0s\""),
        "cloud.timeout",
        &["\"0s\"", "zero"],
    );
    expect(
        Cfg::new().set("cloud", "timeout", "\"30 parsecs\""),
        "cloud.timeout",
        &["\"30 parsecs\""],
    );
    expect(
        Cfg::new().set("cloud", "timeout", "30"),
        "cloud.timeout",
        &["30", "duration"],
    );
}

#[test]
fn cloud_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("certsync.toml");
    let check = |file: &str, needles: &[&str]| {
        let cfg = Cfg::new().set("cloud", "ca_file", &format!("{file:?}"));
        let p = error_of_at(&cfg.text(), &source).problems;
        let quoted = format!("{file:?}");
        let mut all = vec![quoted.as_str()];
        all.extend_from_slice(needles);
        assert_has(&p, "cloud.ca_file", &all);
    };
    let missing = dir.path().join("missing.pem");
    check(
        "missing.pem",
        &[&missing.display().to_string(), "cannot read"],
    );

    std::fs::write(dir.path().join("text.pem"), "just text\n").unwrap();
    check("text.pem", &["no PEM certificate"]);

    // A device or a FIFO is refused at once: no read without end, no hang (issue 8).
    check("/dev/zero", &["cannot read", "a device"]);
    let fifo = dir.path().join("fifo.pem");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    check("fifo.pem", &["cannot read", "a FIFO"]);

    let key = rcgen::KeyPair::generate().unwrap();
    std::fs::write(dir.path().join("key.pem"), key.serialize_pem()).unwrap();
    check("key.pem", &["not a PEM certificate file"]);

    std::fs::write(
        dir.path().join("broken.pem"),
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    check(
        "broken.pem",
        &[&dir.path().join("broken.pem").display().to_string()],
    );

    let ca = rcgen::generate_simple_self_signed(vec!["x.test".to_string()]).unwrap();
    std::fs::write(dir.path().join("der.cer"), ca.cert.der()).unwrap();
    check("der.cer", &["no PEM certificate"]);

    check("", &["empty"]);
}

#[test]
fn cloud_iam_endpoint() {
    for (bad, needle) in [
        ("http://iam.cn-north-4.myhuaweicloud.com", "https"),
        ("iam.cn-north-4.myhuaweicloud.com", "not a URL"),
        ("https://iam.example.com/?x=1", "query"),
        ("https://iam.example.com/#f", "fragment"),
    ] {
        expect(
            Cfg::new().set("cloud", "iam_endpoint", &format!("{bad:?}")),
            "cloud.iam_endpoint",
            &[&format!("{bad:?}"), needle],
        );
    }
    let p = problems(&Cfg::new().set(
        "cloud",
        "iam_endpoint",
        "\"https://user:SeCrEtVaLuE@iam.example.com\"",
    ));
    assert_has(&p, "cloud.iam_endpoint", &["credentials", "not shown"]);
    assert!(
        p.iter().all(|p| !p.message.contains("SeCrEtVaLuE")),
        "{p:?}"
    );
}

// ---- [auth] ----

#[test]
fn auth_method() {
    expect(
        Cfg::new().unset("auth", "method"),
        "auth.method",
        &["missing"],
    );
    expect(
        Cfg::new().set("auth", "method", "\"kerberos\""),
        "auth.method",
        &["\"kerberos\"", "unknown"],
    );
    expect(
        Cfg::new().set("auth", "method", "7"),
        "auth.method",
        &["7", "string"],
    );
}

#[test]
fn auth_token_file() {
    expect(
        Cfg::new().unset("auth", "token_file"),
        "auth.token_file",
        &["missing"],
    );
    expect(
        Cfg::new().set("auth", "token_file", "\"\""),
        "auth.token_file",
        &["\"\""],
    );
    expect(
        Cfg::new().set("auth", "token_file", "7"),
        "auth.token_file",
        &["7"],
    );
}

/// A complete `[auth]` of each method, for the tests that add a foreign key.
fn method_cfg(method: &str) -> Cfg {
    let cfg = Cfg::new().unset("auth", "token_file");
    match method {
        "token" => Cfg::new(),
        "aksk" => cfg
            .set("auth", "method", "\"aksk\"")
            .set("auth", "access_key", "\"AK\"")
            .set("auth", "secret_key_file", "\"sk\""),
        "password" => cfg
            .set("auth", "method", "\"password\"")
            .set("auth", "user", "\"certsync\"")
            .set("auth", "domain", "\"acme\"")
            .set("auth", "password_file", "\"pw\""),
        "metadata" => cfg.set("auth", "method", "\"metadata\""),
        _ => unreachable!(),
    }
}

fn problems_env(cfg: &Cfg, env: &[(&str, &str)]) -> Vec<Problem> {
    let lookup = |name: &str| {
        env.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    };
    match config::parse_with_env(&cfg.text(), Path::new(SOURCE), &lookup) {
        Ok(_) => panic!("expected an invalid config:\n{}", cfg.text()),
        Err(e) => e.problems,
    }
}

#[test]
fn auth_keys_of_another_method_are_errors_and_not_echoed() {
    let keys = [
        ("token", "token_file"),
        ("aksk", "access_key"),
        ("aksk", "secret_key"),
        ("aksk", "secret_key_file"),
        ("aksk", "security_token"),
        ("password", "user"),
        ("password", "domain"),
        ("password", "password_file"),
        ("metadata", "metadata_endpoint"),
    ];
    for method in ["token", "aksk", "password", "metadata"] {
        for (owner, key) in keys.iter().filter(|(m, _)| *m != method) {
            let p = problems_env(&method_cfg(method).set("auth", key, "\"SeCrEtVaLuE\""), &[]);
            assert_has(
                &p,
                &format!("auth.{key}"),
                &[
                    &format!("key of method \"{owner}\""),
                    &format!("{method:?}"),
                ],
            );
            assert!(
                p.iter().all(|p| !p.message.contains("SeCrEtVaLuE")),
                "{p:?}"
            );
        }
    }
}

#[test]
fn aksk_needs_its_keys_from_the_file_or_the_environment() {
    let bare = Cfg::new()
        .unset("auth", "token_file")
        .set("auth", "method", "\"aksk\"");
    let p = problems_env(&bare, &[]);
    assert_has(&p, "auth.access_key", &["missing", "HUAWEICLOUD_SDK_AK"]);
    assert_has(
        &p,
        "auth.secret_key",
        &["missing", "secret_key_file", "HUAWEICLOUD_SDK_SK"],
    );
    assert_eq!(p.len(), 2, "{p:?}");
    // The environment fills in one, the file the other.
    let p = problems_env(
        &bare.clone().set("auth", "secret_key", "\"SK\""),
        &[("HUAWEICLOUD_SDK_SK", "SK2")],
    );
    assert_has(&p, "auth.access_key", &["HUAWEICLOUD_SDK_AK"]);
    assert_eq!(p.len(), 1, "{p:?}");
    // An empty variable counts as unset, as in the SDK.
    let p = problems_env(
        &bare.clone().set("auth", "secret_key", "\"SK\""),
        &[("HUAWEICLOUD_SDK_AK", "")],
    );
    assert_has(&p, "auth.access_key", &["missing"]);
}

#[test]
fn aksk_secret_key_rules_never_echo_values() {
    let cfg = method_cfg("aksk");
    expect(
        cfg.clone().set("auth", "secret_key", "\"SeCrEtVaLuE\""),
        "auth.secret_key_file",
        &["not both"],
    );
    for (key, value) in [
        ("secret_key", "12345"),
        ("access_key", "12345"),
        ("security_token", "[\"SeCrEtVaLuE\"]"),
    ] {
        let p = problems(
            &cfg.clone()
                .unset("auth", "secret_key_file")
                .set("auth", key, value),
        );
        assert_has(
            &p,
            &format!("auth.{key}"),
            &["expected a string", "not shown"],
        );
        assert!(
            p.iter()
                .all(|p| !p.message.contains("SeCrEtVaLuE") && !p.message.contains("12345")),
            "{p:?}"
        );
    }
    expect(
        cfg.clone().set("auth", "access_key", "\"\""),
        "auth.access_key",
        &["empty"],
    );
    expect(
        cfg.set("auth", "secret_key_file", "\"\""),
        "auth.secret_key_file",
        &["empty"],
    );
}

#[test]
fn project_id_may_be_left_out_except_with_token() {
    for method in ["aksk", "password", "metadata"] {
        let cfg = method_cfg(method).unset("cloud", "project_id");
        let lookup = |_: &str| None;
        if let Err(e) = config::parse_with_env(&cfg.text(), Path::new(SOURCE), &lookup) {
            panic!("{method} without project_id: {e}");
        }
    }
    expect(
        Cfg::new().unset("cloud", "project_id"),
        "cloud.project_id",
        &["missing", "token"],
    );
    // aksk takes HUAWEICLOUD_SDK_PROJECT_ID, checked like the key.
    let p = problems_env(
        &method_cfg("aksk").unset("cloud", "project_id"),
        &[("HUAWEICLOUD_SDK_PROJECT_ID", "../etc")],
    );
    assert_has(
        &p,
        "cloud.project_id",
        &[
            "HUAWEICLOUD_SDK_PROJECT_ID",
            "\"../etc\"",
            "not a project id",
        ],
    );
}

#[test]
fn password_needs_user_domain_and_password_file() {
    let cfg = method_cfg("password");
    for key in ["user", "domain", "password_file"] {
        expect(
            cfg.clone().unset("auth", key),
            &format!("auth.{key}"),
            &["missing", "password"],
        );
        expect(
            cfg.clone().set("auth", key, "\"\""),
            &format!("auth.{key}"),
            &["empty"],
        );
    }
    // The password itself is never inline.
    expect(
        cfg.set("auth", "password", "\"SeCrEtVaLuE\""),
        "auth.password",
        &["unknown key"],
    );
}

#[test]
fn metadata_endpoint_is_an_http_or_https_url() {
    let cfg = method_cfg("metadata");
    for (bad, needle) in [
        ("ftp://169.254.169.254", "http or https"),
        ("169.254.169.254", "not a URL"),
        ("http://169.254.169.254/?a=b", "query"),
        ("http://169.254.169.254/#x", "fragment"),
    ] {
        expect(
            cfg.clone()
                .set("auth", "metadata_endpoint", &format!("{bad:?}")),
            "auth.metadata_endpoint",
            &[&format!("{bad:?}"), needle],
        );
    }
    let p = problems(&cfg.set(
        "auth",
        "metadata_endpoint",
        "\"http://u:SeCrEtVaLuE@169.254.169.254\"",
    ));
    assert_has(&p, "auth.metadata_endpoint", &["credentials"]);
    assert!(
        p.iter().all(|p| !p.message.contains("SeCrEtVaLuE")),
        "{p:?}"
    );
}

// ---- [sync] ----

#[test]
fn sync_interval() {
    expect(
        Cfg::new().set("sync", "interval", "\"9s\""),
        "sync.interval",
        &["\"9s\"", "10s"],
    );
    expect(
        Cfg::new().set("sync", "interval", "\"hourly\""),
        "sync.interval",
        &["\"hourly\""],
    );
    assert_valid(&Cfg::new().set("sync", "interval", "\"10s\""));
}

#[test]
fn sync_jitter_and_durations() {
    for key in ["jitter", "expiry_warning", "rotation_overlap"] {
        expect(
            Cfg::new().set("sync", key, "\"a while\""),
            &format!("sync.{key}"),
            &["\"a while\""],
        );
    }
}

#[test]
fn sync_concurrency() {
    for bad in ["0", "257", "-1"] {
        expect(
            Cfg::new().set("sync", "concurrency", bad),
            "sync.concurrency",
            &[bad, "1..=256"],
        );
    }
    expect(
        Cfg::new().set("sync", "concurrency", "\"8\""),
        "sync.concurrency",
        &["\"8\""],
    );
    assert_valid(&Cfg::new().set("sync", "concurrency", "1"));
}

#[test]
fn sync_retry() {
    expect(
        Cfg::new().set("sync", "retry_initial", "\"0s\""),
        "sync.retry_initial",
        &["\"0s\""],
    );
    expect(
        Cfg::new().set("sync", "retry_max", "\"0s\""),
        "sync.retry_max",
        &["\"0s\""],
    );
    // Above the default retry_max of 10m.
    expect(
        Cfg::new().set("sync", "retry_initial", "\"20m\""),
        "sync.retry_initial",
        &["\"20m\"", "10m"],
    );
    expect(
        Cfg::new()
            .set("sync", "retry_initial", "\"5m\"")
            .set("sync", "retry_max", "\"1m\""),
        "sync.retry_max",
        &["\"5m\"", "\"1m\""],
    );
    // Below the default retry_initial of 10s.
    expect(
        Cfg::new().set("sync", "retry_max", "\"5s\""),
        "sync.retry_max",
        &["\"5s\"", "10s"],
    );
}

#[test]
fn sync_max_download_bytes() {
    for bad in ["0", "67108865", "-5"] {
        expect(
            Cfg::new().set("sync", "max_download_bytes", bad),
            "sync.max_download_bytes",
            &[bad],
        );
    }
    expect(
        Cfg::new().set("sync", "max_download_bytes", "1.5"),
        "sync.max_download_bytes",
        &["1.5"],
    );
    assert_valid(&Cfg::new().set("sync", "max_download_bytes", "1"));
}

#[test]
fn sync_allowed_download_hosts() {
    for bad in [
        "https://obs.example.com",
        "obs.example.com:443",
        "*",
        "a..b",
        "obs/x",
        "*.",
        "bad_host.com",
    ] {
        expect(
            Cfg::new().set(
                "sync",
                "allowed_download_hosts",
                &format!("[\"ok.example.com\", {bad:?}]"),
            ),
            "sync.allowed_download_hosts[1]",
            &[&format!("{bad:?}")],
        );
    }
    expect(
        Cfg::new().set("sync", "allowed_download_hosts", "[]"),
        "sync.allowed_download_hosts",
        &["[]"],
    );
    expect(
        Cfg::new().set("sync", "allowed_download_hosts", "\"*.example.com\""),
        "sync.allowed_download_hosts",
        &["\"*.example.com\""],
    );
}

#[test]
fn sync_watch_config() {
    assert_valid(&Cfg::new().set("sync", "watch_config", "true"));
    expect(
        Cfg::new().set("sync", "watch_config", "\"no\""),
        "sync.watch_config",
        &["\"no\""],
    );
    assert_valid(&Cfg::new().set("sync", "watch_config", "false"));
}

// ---- [trust] ----

#[test]
fn trust_dir() {
    expect(Cfg::new().unset("trust", "dir"), "trust.dir", &["missing"]);
    expect(
        Cfg::new().set("trust", "dir", "\"\""),
        "trust.dir",
        &["\"\""],
    );
    for bad in [
        "/",
        "/etc/ssl/certs",
        "/etc/ssl/certs/",
        "/etc/ssl/../ssl/certs",
        "/etc/./ssl/certs//",
        "../../../../../../../../..",
        "../../../../etc/ssl/certs",
    ] {
        expect(
            Cfg::new().set("trust", "dir", &format!("{bad:?}")),
            "trust.dir",
            &[&format!("{bad:?}")],
        );
    }
}

#[test]
fn trust_dir_through_a_symlink_to_the_root() {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("/", dir.path().join("root")).unwrap();
    let cfg = Cfg::new().set("trust", "dir", "\"root\"");
    let p = error_of_at(&cfg.text(), &dir.path().join("certsync.toml")).problems;
    assert_has(&p, "trust.dir", &["\"root\"", "resolves to /,"]);
}

#[test]
fn trust_dir_in_or_inside_a_system_ca_folder_is_refused() {
    for bad in [
        "/etc/ssl/certs/certsync",
        "/etc/pki",
        "/etc/pki/tls/certs",
        "/etc/pki/ca-trust/source/anchors/",
        "/usr/share/ca-certificates",
        "/usr/share/ca-certificates/extra",
        "/usr/local/share/ca-certificates",
        "/usr/local/share/ca-certificates/db",
        "/etc/ca-certificates",
        "/etc/ca-certificates/update.d",
        "/etc/pki/../pki/x",
        "/etc/./pki//x",
        "../../../../../../../../etc/pki/x",
    ] {
        expect(
            Cfg::new().set("trust", "dir", &format!("{bad:?}")),
            "trust.dir",
            &[&format!("{bad:?}"), "system's CA tooling"],
        );
    }
    // Neighbours and parents are not the tooling's.
    for fine in [
        "/etc/pkix",
        "/etc/ssl",
        "/usr/share/ca-certificates-extra",
        "/var/lib/certsync/etc/pki",
    ] {
        assert_valid(&Cfg::new().set("trust", "dir", &format!("{fine:?}")));
    }
}

#[test]
fn trust_dir_through_a_symlink_into_a_system_ca_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("certsync.toml");
    // Whether or not the target exists on this host: the store would follow the link.
    std::os::unix::fs::symlink("/etc/pki/tls", dir.path().join("pki")).unwrap();
    std::os::unix::fs::symlink("pki", dir.path().join("chain")).unwrap();
    std::os::unix::fs::symlink("/etc/ssl/certs", dir.path().join("certs")).unwrap();
    for (value, resolved) in [
        ("pki", "resolves to /etc/pki/tls,"),
        ("pki/new", "resolves to /etc/pki/tls/new,"),
        ("chain/new/deeper", "resolves to /etc/pki/tls/new/deeper,"),
    ] {
        let cfg = Cfg::new().set("trust", "dir", &format!("{value:?}"));
        let p = error_of_at(&cfg.text(), &source).problems;
        assert_has(
            &p,
            "trust.dir",
            &[&format!("{value:?}"), resolved, "lies inside /etc/pki,"],
        );
    }
    // A folder that does not exist yet inside a link to one that does (where /etc/ssl/certs
    // is itself a link, as on Fedora, it resolves into /etc/pki: refused all the same).
    let cfg = Cfg::new().set("trust", "dir", "\"certs/certsync\"");
    let p = error_of_at(&cfg.text(), &source).problems;
    assert_has(
        &p,
        "trust.dir",
        &[
            "\"certs/certsync\"",
            "/certsync, which is or lies inside",
            "system's CA tooling",
        ],
    );
}

#[test]
fn trust_file_name_template() {
    for (bad, why) in [
        ("{nme}.crt", "{nme}"),
        ("{name.crt", "unclosed"),
        ("name}.crt", "unmatched"),
        ("sub/{name}.crt", "plain file name"),
        (".{name}.crt", "starts with '.'"),
        ("", "empty"),
    ] {
        expect(
            Cfg::new().set("trust", "file_name", &format!("{bad:?}")),
            "trust.file_name",
            &[&format!("{bad:?}"), why],
        );
    }
}

#[test]
fn trust_mode() {
    for bad in ["0800", "1777", "rw-r--r--", "", "0o1000"] {
        expect(
            Cfg::new().set("trust", "mode", &format!("{bad:?}")),
            "trust.mode",
            &[&format!("{bad:?}")],
        );
    }
    // An integer is refused: `644` would silently mean 0o1204.
    expect(
        Cfg::new().set("trust", "mode", "644"),
        "trust.mode",
        &["644", "octal string"],
    );
    expect(
        Cfg::new().set("trust", "mode", "0o644"),
        "trust.mode",
        &["420"],
    );
}

#[test]
fn trust_bundle() {
    for bad in [
        "../bundle.pem",
        "sub/bundle.pem",
        ".certsync-manifest.json",
        ".hidden",
        "0123abcd.0",
        "",
    ] {
        expect(
            Cfg::new().set("trust", "bundle", &format!("{bad:?}")),
            "trust.bundle",
            &[&format!("{bad:?}")],
        );
    }
}

#[test]
fn trust_booleans() {
    for key in ["capath", "prune"] {
        expect(
            Cfg::new().set("trust", key, "\"yes\""),
            &format!("trust.{key}"),
            &["\"yes\""],
        );
    }
}

#[test]
fn trust_owner_and_group_need_a_known_name_or_a_number() {
    expect(
        Cfg::new().set("trust", "owner", "\"no-such-user-certsync\""),
        "trust.owner",
        &[
            "no user named \"no-such-user-certsync\" in /etc/passwd",
            "by number",
        ],
    );
    expect(
        Cfg::new().set("trust", "group", "\"no-such-group-certsync\""),
        "trust.group",
        &["no group named \"no-such-group-certsync\" in /etc/group"],
    );
    expect(
        Cfg::new().set("trust", "owner", "4294967295"),
        "trust.owner",
        &["4294967295", "is not an id"],
    );
    expect(
        Cfg::new().set("trust", "group", "\"99999999999\""),
        "trust.group",
        &["\"99999999999\"", "is not an id"],
    );
    expect(
        Cfg::new().set("trust", "owner", "true"),
        "trust.owner",
        &["a user name or number"],
    );
    expect(
        Cfg::new().set("trust", "owner", "-1"),
        "trust.owner",
        &["-1"],
    );
    // root (0) and its group exist on every system.
    assert_valid(
        &Cfg::new()
            .set("trust", "owner", "\"root\"")
            .set("trust", "group", "0"),
    );
}

#[test]
fn trust_write_mode_layout_and_pkcs12_rules() {
    expect(
        Cfg::new().set("trust", "write_mode", "\"copy\""),
        "trust.write_mode",
        &["\"copy\"", "\"rename\" or \"in-place\""],
    );
    expect(
        Cfg::new().set("trust", "layout", "\"tree\""),
        "trust.layout",
        &["\"tree\"", "\"flat\" or \"atomic-dir\""],
    );
    expect(
        Cfg::new().set("trust", "write_mode", "\"in-place\"").set(
            "trust",
            "layout",
            "\"atomic-dir\"",
        ),
        "trust.write_mode",
        &["cannot be combined with layout = \"atomic-dir\""],
    );
    expect(
        Cfg::new().set("trust", "pkcs12", "\"sub/truststore.p12\""),
        "trust.pkcs12",
        &["\"sub/truststore.p12\"", "plain file name"],
    );
    expect(
        Cfg::new()
            .set("trust", "bundle", "\"all.pem\"")
            .set("trust", "pkcs12", "\"all.pem\""),
        "trust.pkcs12",
        &["bundle's name"],
    );
    expect(
        Cfg::new().set("trust", "pkcs12", "\"..data\""),
        "trust.pkcs12",
        &["starts with '.'"],
    );
    expect(
        Cfg::new()
            .set("trust", "pkcs12", "\"inst-1-international.crt\"")
            .set("trust", "file_name", "\"{id}-{category}.crt\""),
        "instance[0]",
        &["truststore's name"],
    );
    expect(
        Cfg::new().set("trust", "pkcs12_password_file", "\"p12-password\""),
        "trust.pkcs12_password_file",
        &["has no effect without trust.pkcs12"],
    );
    for (key, value) in [
        ("write_mode", "\"rename\""),
        ("write_mode", "\"in-place\""),
        ("layout", "\"flat\""),
        ("layout", "\"atomic-dir\""),
    ] {
        assert_valid(&Cfg::new().set("trust", key, value));
    }
    assert_valid(
        &Cfg::new().set("trust", "pkcs12", "\"truststore.p12\"").set(
            "trust",
            "pkcs12_password_file",
            "\"p12-password\"",
        ),
    );
}

// ---- [[instance]] ----

#[test]
fn at_least_one_instance() {
    expect(Cfg::new().instances(""), "instance", &["at least one"]);
    expect(
        Cfg::new().instances("instance = []"),
        "instance",
        &["at least one"],
    );
    let p = problems(&Cfg::new().instances("[instance]\nid = \"a\"\n"));
    assert_has(&p, "instance", &["[[instance]]", "id = \"a\""]);
    assert_eq!(p.len(), 1, "{p:?}");
}

#[test]
fn instance_id() {
    expect(
        Cfg::new().instances("[[instance]]\nname = \"a\"\n"),
        "instance[0].id",
        &["missing"],
    );
    let long = "a".repeat(65);
    for bad in ["bad_id", "a/b", "", "a.b", long.as_str()] {
        expect(
            Cfg::new().instances(&format!("[[instance]]\nid = {bad:?}\n")),
            "instance[0].id",
            &[&format!("{bad:?}")],
        );
    }
    expect(
        Cfg::new().instances("[[instance]]\nid = \"a\"\n[[instance]]\nid = \"a\"\n"),
        "instance[1].id",
        &["\"a\"", "instance[0]"],
    );
}

#[test]
fn instance_name() {
    for bad in ["has space", "a/b", "", "ünïcode"] {
        expect(
            Cfg::new().instances(&format!("[[instance]]\nid = \"a\"\nname = {bad:?}\n")),
            "instance[0].name",
            &[&format!("{bad:?}")],
        );
    }
    expect(
        Cfg::new().instances(
            "[[instance]]\nid = \"a\"\nname = \"x\"\n[[instance]]\nid = \"b\"\nname = \"x\"\n",
        ),
        "instance[1].name",
        &["\"x\"", "instance[0]"],
    );
    // A name that is another instance's id would make filters and {name} ambiguous.
    expect(
        Cfg::new().instances("[[instance]]\nid = \"a\"\n[[instance]]\nid = \"b\"\nname = \"a\"\n"),
        "instance[1].name",
        &["\"a\"", "instance[0]"],
    );
    expect(
        Cfg::new().instances("[[instance]]\nid = \"a\"\nname = \"b\"\n[[instance]]\nid = \"b\"\n"),
        "instance[1].id",
        &["\"b\"", "instance[0]"],
    );
}

#[test]
fn instance_categories() {
    let inst = |cats: &str| format!("[[instance]]\nid = \"a\"\ncategories = {cats}\n");
    expect(
        Cfg::new().instances(&inst("[]")),
        "instance[0].categories",
        &["[]"],
    );
    expect(
        Cfg::new().instances(&inst("\"international\"")),
        "instance[0].categories",
        &["\"international\""],
    );
    expect(
        Cfg::new().instances(&inst("[\"international\", \"\"]")),
        "instance[0].categories[1]",
        &["\"\""],
    );
    expect(
        Cfg::new().instances(&inst("[\"a/b\"]")),
        "instance[0].categories[0]",
        &["\"a/b\""],
    );
    expect(
        Cfg::new().instances(&inst("[\"with space\"]")),
        "instance[0].categories[0]",
        &["\"with space\""],
    );
    expect(
        Cfg::new().instances(&inst("[3]")),
        "instance[0].categories[0]",
        &["3"],
    );
    expect(
        Cfg::new().instances(&inst("[\"intl\", \"intl\"]")),
        "instance[0].categories[1]",
        &["\"intl\"", "twice"],
    );
}

#[test]
fn instance_pins() {
    let inst = |pins: &str| format!("[[instance]]\nid = \"a\"\npin_sha256 = {pins}\n");
    let short = "ab".repeat(31);
    let not_hex = "zz".repeat(32);
    for bad in ["abc", short.as_str(), not_hex.as_str()] {
        expect(
            Cfg::new().instances(&inst(&format!("[\"{}\", {bad:?}]", "00".repeat(32)))),
            "instance[0].pin_sha256[1]",
            &[&format!("{bad:?}")],
        );
    }
    expect(
        Cfg::new().instances(&inst("[]")),
        "instance[0].pin_sha256",
        &["[]"],
    );
}

// ---- file names of instances ----

#[test]
fn template_without_category_needs_exactly_one_category_per_instance() {
    let cfg = Cfg::new().set("trust", "file_name", "\"{name}.crt\"");
    expect(
        cfg.clone(),
        "instance[0].categories",
        &["\"{name}.crt\"", "exactly one", "none"],
    );
    let p =
        problems(&cfg.instances(
            "[[instance]]\nid = \"a\"\ncategories = [\"international\", \"national\"]\n",
        ));
    assert_has(
        &p,
        "instance[0].categories",
        &["\"{name}.crt\"", "international", "national"],
    );
    // The collision of its two files is not reported a second time.
    assert_eq!(p.len(), 1, "{p:?}");
}

#[test]
fn template_without_name_or_id_allows_one_instance() {
    let p = problems(
        &Cfg::new()
            .set("trust", "file_name", "\"{category}.crt\"")
            .instances("[[instance]]\nid = \"a\"\n[[instance]]\nid = \"b\"\n"),
    );
    assert_has(
        &p,
        "trust.file_name",
        &["\"{category}.crt\"", "only one instance", "2"],
    );
    // The collision this implies is not reported a second time.
    assert_eq!(p.len(), 1, "{p:?}");
}

#[test]
fn two_instances_may_not_share_a_file() {
    // "a-b" + "c" and "a" + "b-c" both render to "a-b-c.crt".
    let p = problems(&Cfg::new().instances(
        "[[instance]]\nid = \"i1\"\nname = \"a-b\"\ncategories = [\"c\"]\n\
         [[instance]]\nid = \"i2\"\nname = \"a\"\ncategories = [\"b-c\"]\n",
    ));
    assert_has(
        &p,
        "instance[1]",
        &["\"a\"", "\"a-b\"", "instance[0]", "\"a-b-c.crt\""],
    );
    assert_eq!(p.len(), 1, "{p:?}");
}

#[test]
fn an_unfiltered_instance_collides_through_the_probe_category() {
    let p = problems(&Cfg::new().instances(
        "[[instance]]\nid = \"i1\"\nname = \"x-y\"\n\
         [[instance]]\nid = \"i2\"\nname = \"x\"\ncategories = [\"y-international\"]\n",
    ));
    assert_has(
        &p,
        "instance[1]",
        &["\"x\"", "\"x-y\"", "\"x-y-international.crt\""],
    );
}

#[test]
fn instance_file_names_must_be_plain_and_free() {
    // Rendered like a -CApath hash file.
    expect(
        Cfg::new()
            .set("trust", "file_name", "\"{name}.{category}\"")
            .instances("[[instance]]\nid = \"a\"\nname = \"deadbeef\"\ncategories = [\"0\"]\n"),
        "instance[0]",
        &["\"deadbeef.0\"", "hash"],
    );
    // Rendered as the bundle.
    expect(
        Cfg::new()
            .set("trust", "bundle", "\"orders-international.crt\"")
            .instances("[[instance]]\nid = \"a\"\nname = \"orders\"\n"),
        "instance[0]",
        &["\"orders-international.crt\"", "bundle"],
    );
    // Rendered hidden (a name may start with '.').
    expect(
        Cfg::new().instances("[[instance]]\nid = \"a\"\nname = \".orders\"\n"),
        "instance[0]",
        &["\".orders-international.crt\"", "'.'"],
    );
    // Rendered as the manifest.
    expect(
        Cfg::new()
            .set("trust", "file_name", "\"{name}\"")
            .instances("[[instance]]\nid = \"a\"\nname = \".certsync-manifest.json\"\ncategories = [\"x\"]\n"),
        "instance[0]",
        &["\".certsync-manifest.json\""],
    );
    // Rendered as "..".
    expect(
        Cfg::new()
            .set("trust", "file_name", "\"{category}\"")
            .instances("[[instance]]\nid = \"a\"\ncategories = [\"..\"]\n"),
        "instance[0]",
        &["\"..\""],
    );
}

// ---- [[hook]] ----

#[test]
fn hook_command() {
    expect(
        Cfg::new().tail("[[hook]]\nname = \"x\"\n"),
        "hook[0].command",
        &["missing"],
    );
    expect(
        Cfg::new().tail("[[hook]]\ncommand = []\n"),
        "hook[0].command",
        &["[]"],
    );
    expect(
        Cfg::new().tail("[[hook]]\ncommand = \"/bin/true\"\n"),
        "hook[0].command",
        &["\"/bin/true\""],
    );
    expect(
        Cfg::new().tail("[[hook]]\ncommand = [\"/bin/true\"]\n[[hook]]\ncommand = [\"systemctl\", \"reload\"]\n"),
        "hook[1].command[0]",
        &["\"systemctl\"", "absolute"],
    );
    expect(
        Cfg::new().tail("[[hook]]\ncommand = [\"\"]\n"),
        "hook[0].command[0]",
        &["\"\""],
    );
    expect(
        Cfg::new().tail("[[hook]]\ncommand = [\"/\"]\n"),
        "hook[0].command[0]",
        &["\"/\""],
    );
    expect(
        Cfg::new().tail("[[hook]]\ncommand = [\"/bin/echo\", 1]\n"),
        "hook[0].command[1]",
        &["1"],
    );
}

#[test]
fn hook_names_are_unique() {
    expect(
        Cfg::new().tail(
            "[[hook]]\ncommand = [\"/usr/bin/systemctl\", \"reload\", \"a\"]\n\
             [[hook]]\ncommand = [\"/bin/systemctl\", \"reload\", \"b\"]\n",
        ),
        "hook[1].name",
        &["\"systemctl\"", "hook[0]", "default"],
    );
    expect(
        Cfg::new().tail(
            "[[hook]]\nname = \"r\"\ncommand = [\"/bin/a\"]\n[[hook]]\nname = \"r\"\ncommand = [\"/bin/b\"]\n",
        ),
        "hook[1].name",
        &["\"r\"", "hook[0]"],
    );
    expect(
        Cfg::new().tail("[[hook]]\nname = \"\"\ncommand = [\"/bin/a\"]\n"),
        "hook[0].name",
        &["\"\""],
    );
}

#[test]
fn hook_timeout() {
    expect(
        Cfg::new().tail("[[hook]]\ncommand = [\"/bin/a\"]\n[[hook]]\ncommand = [\"/bin/b\"]\ntimeout = \"0s\"\n"),
        "hook[1].timeout",
        &["\"0s\""],
    );
    expect(
        Cfg::new().tail("[[hook]]\ncommand = [\"/bin/a\"]\ntimeout = \"never\"\n"),
        "hook[0].timeout",
        &["\"never\""],
    );
}

#[test]
fn hook_instances() {
    expect(
        Cfg::new().tail("[[hook]]\ncommand = [\"/bin/a\"]\ninstances = [\"inst-1\", \"nope\"]\n"),
        "hook[0].instances[1]",
        &["\"nope\"", "unknown instance"],
    );
    expect(
        Cfg::new().tail("[[hook]]\ncommand = [\"/bin/a\"]\ninstances = []\n"),
        "hook[0].instances",
        &["[]"],
    );
    // An instance with its own error is not reported again through the filter.
    let p = problems(
        &Cfg::new()
            .instances("[[instance]]\nid = \"a\"\n[[instance]]\nid = \"b_c\"\n")
            .tail("[[hook]]\ncommand = [\"/bin/a\"]\ninstances = [\"b_c\"]\n"),
    );
    assert_has(&p, "instance[1].id", &["\"b_c\""]);
    assert_eq!(p.len(), 1, "{p:?}");
}

#[test]
fn hook_signal_needs_a_known_signal_and_a_pid_file_and_no_command() {
    let p = problems(
        &Cfg::new().tail("[[hook]]\nsignal = \"SIGBOGUS\"\npid_file = \"/run/app.pid\"\n"),
    );
    assert_has(&p, "hook[0].signal", &["unknown signal", "\"SIGBOGUS\""]);
    assert_eq!(p.len(), 1, "{p:?}");
    let p = problems(&Cfg::new().tail("[[hook]]\nsignal = \"SIGHUP\"\n"));
    assert_has(&p, "hook[0].pid_file", &["missing"]);
    let p = problems(&Cfg::new().tail("[[hook]]\npid_file = \"/run/app.pid\"\n"));
    assert_has(&p, "hook[0].signal", &["missing"]);
    let p = problems(&Cfg::new().tail(
        "[[hook]]\nsignal = \"HUP\"\npid_file = \"/run/app.pid\"\ncommand = [\"/bin/true\"]\n",
    ));
    assert_has(
        &p,
        "hook[0].command",
        &["either command, or signal and pid_file"],
    );
}

// ---- [[discover]], [server], [log] ----

#[test]
fn discover_filters_are_checked() {
    expect(
        Cfg::new().tail("[[discover]]\ndatastore = \"mongo db\"\n"),
        "discover[0].datastore",
        &["\"mongo db\""],
    );
    expect(
        Cfg::new().tail("[[discover]]\nssl_only = \"yes\"\n"),
        "discover[0].ssl_only",
        &["\"yes\""],
    );
    expect(
        Cfg::new().tail("[[discover]]\nbogus = 1\n"),
        "discover[0].bogus",
        &["bogus"],
    );
}

#[test]
fn server_listen_must_be_an_address_and_port() {
    expect(
        Cfg::new().set("server", "listen", "\"localhost:http\""),
        "server.listen",
        &["not an IP address and port", "\"localhost:http\""],
    );
}

#[test]
fn log_settings() {
    expect(
        Cfg::new().set("log", "format", "\"xml\""),
        "log.format",
        &["\"xml\""],
    );
    expect(
        Cfg::new().set("log", "level", "\"certsync=loud\""),
        "log.level",
        &["\"certsync=loud\""],
    );
    expect(Cfg::new().set("log", "level", "3"), "log.level", &["3"]);
}

#[test]
fn tables_of_the_wrong_type() {
    let text = Cfg::new()
        .text()
        .replace("[sync]\n", "")
        .replace("[log]\n", "");
    let text = format!("sync = 5\nlog = \"debug\"\n{text}");
    let p = error_of_at(&text, Path::new(SOURCE)).problems;
    assert_has(&p, "sync", &["5", "[sync]"]);
    assert_has(&p, "log", &["\"debug\""]);
}
