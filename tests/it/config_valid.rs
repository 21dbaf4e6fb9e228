//! Valid configurations: defaults, path resolution, endpoints, the shipped example, the typed
//! values and the plan `certsync check` prints.

use std::path::{Path, PathBuf};
use std::time::Duration;

use certsync::config::{self, Auth, Config, HookAction, HookSignal, LogFormat, SecretKey};
use certsync::store::{Layout, WriteMode};

const MINIMAL: &str = r#"
[cloud]
region = "cn-north-4"
project_id = "619d3e78f61b4be68bc5aa0b59edcf7b"

[auth]
method = "token"
token_file = "token"

[trust]
dir = "trust"

[[instance]]
id = "inst-1"
"#;

fn parse_at(text: &str, source: &str) -> Config {
    match config::parse(text, Path::new(source)) {
        Ok(c) => c,
        Err(e) => panic!("expected a valid config, got:\n{e}"),
    }
}

fn parse(text: &str) -> Config {
    parse_at(text, "/srv/conf/certsync.toml")
}

/// MINIMAL with extra lines appended to the named table (tables are at the top of MINIMAL,
/// so inserting right after the header keeps the keys inside that table).
fn with(table: &str, lines: &str) -> String {
    let header = format!("[{table}]\n");
    if MINIMAL.contains(&header) {
        MINIMAL.replacen(&header, &format!("{header}{lines}\n"), 1)
    } else {
        format!("{MINIMAL}\n{header}{lines}\n")
    }
}

#[test]
fn defaults_are_the_documented_constants() {
    let c = parse(MINIMAL);
    assert_eq!(c.source, Path::new("/srv/conf/certsync.toml"));
    assert_eq!(c.accounts[0].cloud.service, "gaussdb-nosql");
    assert_eq!(c.accounts[0].cloud.service, config::DEFAULT_SERVICE);
    assert_eq!(c.accounts[0].cloud.region, "cn-north-4");
    assert_eq!(
        c.accounts[0].cloud.endpoint.as_str(),
        "https://gaussdb-nosql.cn-north-4.myhuaweicloud.com/"
    );
    assert_eq!(
        c.accounts[0].cloud.project_id.as_deref(),
        Some("619d3e78f61b4be68bc5aa0b59edcf7b")
    );
    assert_eq!(c.accounts[0].cloud.ca_file, None);
    assert_eq!(c.accounts[0].cloud.timeout, Duration::from_secs(30));
    assert_eq!(c.accounts[0].cloud.timeout, config::DEFAULT_CLOUD_TIMEOUT);

    let s = &c.sync;
    assert_eq!(s.interval, Duration::from_secs(3600));
    assert_eq!(s.jitter, Duration::from_secs(360));
    assert_eq!(s.concurrency, 8);
    assert_eq!(s.retry_initial, Duration::from_secs(10));
    assert_eq!(s.retry_max, Duration::from_secs(600));
    assert_eq!(s.max_download_bytes, 1_048_576);
    assert_eq!(
        s.allowed_download_hosts,
        ["*.myhuaweicloud.com", "*.myhuaweicloud.eu"]
    );
    assert_eq!(s.expiry_warning, Duration::from_secs(30 * 86400));
    assert_eq!(c.trust.rotation_overlap, Duration::from_secs(86400));

    let t = &c.trust;
    assert_eq!(t.file_name, "{name}-{category}.crt");
    assert_eq!(t.mode, 0o644);
    assert_eq!(t.bundle, None);
    assert!(t.capath);
    assert!(t.prune);

    assert_eq!(c.instances.len(), 1);
    assert_eq!(c.instances[0].id, "inst-1");
    assert_eq!(c.instances[0].name, None);
    assert_eq!(c.instances[0].categories, None);
    assert!(c.instances[0].pins.is_empty());
    assert!(c.hooks.is_empty());
    assert_eq!(c.log.format, LogFormat::Text);
    assert_eq!(c.log.level, None);
}

#[test]
fn jitter_defaults_to_a_tenth_of_the_interval() {
    let c = parse(&with("sync", "interval = \"15m\""));
    assert_eq!(c.sync.interval, Duration::from_secs(900));
    assert_eq!(c.sync.jitter, Duration::from_secs(90));
    let c = parse(&with("sync", "interval = \"10s\"\njitter = \"0s\""));
    assert_eq!(c.sync.interval, Duration::from_secs(10));
    assert_eq!(c.sync.jitter, Duration::ZERO);
}

#[test]
fn every_sync_key_is_read() {
    let c = parse(&with(
        "sync",
        r#"interval = "2h"
jitter = "1m"
concurrency = 256
retry_initial = "1s"
retry_max = "1s"
max_download_bytes = 67108864
allowed_download_hosts = ["OBS.Example.COM", "*.Example.org", "127.0.0.1", "[::1]"]
expiry_warning = "7d"
rotation_overlap = "0s"
watch_config = false"#,
    ));
    let s = &c.sync;
    assert_eq!(s.interval, Duration::from_secs(7200));
    assert_eq!(s.jitter, Duration::from_secs(60));
    assert_eq!(s.concurrency, 256);
    assert_eq!(s.retry_initial, Duration::from_secs(1));
    assert_eq!(s.retry_max, Duration::from_secs(1));
    assert_eq!(s.max_download_bytes, 64 * 1024 * 1024);
    assert_eq!(
        s.allowed_download_hosts,
        ["obs.example.com", "*.example.org", "127.0.0.1", "[::1]"]
    );
    assert_eq!(s.expiry_warning, Duration::from_secs(7 * 86400));
    assert_eq!(c.trust.rotation_overlap, Duration::ZERO);
}

#[test]
fn every_trust_and_log_key_is_read() {
    let c = parse(&with(
        "trust",
        r#"file_name = "{id}.{category}.pem"
mode = "0600"
bundle = "all.pem"
capath = false
prune = false
write_mode = "rename"
layout = "flat""#,
    ));
    assert_eq!(c.trust.file_name, "{id}.{category}.pem");
    assert_eq!(c.trust.mode, 0o600);
    assert_eq!(c.trust.bundle.as_deref(), Some("all.pem"));
    assert!(!c.trust.capath);
    assert!(!c.trust.prune);

    let c = parse(&with("trust", "mode = \"0o640\""));
    assert_eq!(c.trust.mode, 0o640);

    let c = parse(&with(
        "log",
        "format = \"json\"\nlevel = \"certsync=debug,info\"",
    ));
    assert_eq!(c.log.format, LogFormat::Json);
    assert_eq!(c.log.level.as_deref(), Some("certsync=debug,info"));

    let c = parse(&with("server", ""));
    assert_eq!(c.instances.len(), 1);
}

#[test]
fn trust_shape_keys_resolve() {
    let c = parse(MINIMAL);
    assert_eq!(c.trust.owner_account(), None);
    assert_eq!(c.trust.group_account(), None);
    assert_eq!(c.trust.write_mode, WriteMode::Rename);
    assert_eq!(c.trust.layout, Layout::Flat);
    assert_eq!(c.trust.pkcs12, None);
    assert_eq!(c.trust.pkcs12_password_file, None);

    let c = parse(&with(
        "trust",
        r#"owner = "root"
group = 65534
write_mode = "in-place"
pkcs12 = "truststore.p12"
pkcs12_password_file = "secrets/p12-password""#,
    ));
    assert_eq!(
        c.trust.owner_account(),
        Some(config::Account {
            id: 0,
            name: Some("root".into())
        })
    );
    assert_eq!(
        c.trust.group_account(),
        Some(config::Account {
            id: 65534,
            name: None
        })
    );
    assert_eq!(c.trust.write_mode, WriteMode::InPlace);
    assert_eq!(c.trust.pkcs12.as_deref(), Some("truststore.p12"));
    assert_eq!(
        c.trust.pkcs12_password_file.as_deref(),
        Some(Path::new("/srv/conf/secrets/p12-password"))
    );
    let plan = c.describe();
    assert!(plan.contains("owner: root (0)"), "{plan}");
    assert!(plan.contains("group: 65534"), "{plan}");
    assert!(plan.contains("write_mode: in-place"), "{plan}");
    assert!(
        plan.contains(
            "pkcs12: /srv/conf/trust/truststore.p12 (password from /srv/conf/secrets/p12-password)"
        ),
        "{plan}"
    );

    let c = parse(&with("trust", "layout = \"atomic-dir\"\nowner = \"0\""));
    assert_eq!(c.trust.layout, Layout::AtomicDir);
    assert_eq!(c.trust.owner_account().map(|a| a.id), Some(0));
    assert!(c.describe().contains("pkcs12: none"));
}

#[test]
fn relative_paths_resolve_against_the_config_folder() {
    let c = parse_at(MINIMAL, "/srv/conf/certsync.toml");
    let Auth::Token { token_file } = &c.accounts[0].auth else {
        panic!("expected token auth, got {:?}", c.accounts[0].auth)
    };
    assert_eq!(token_file, Path::new("/srv/conf/token"));
    assert_eq!(c.trust.dir, Path::new("/srv/conf/trust"));

    let text = MINIMAL
        .replace(
            "token_file = \"token\"",
            "token_file = \"../secrets/./token\"",
        )
        .replace("dir = \"trust\"", "dir = \"/var/lib/certsync/trust/\"");
    let c = parse_at(&text, "/srv/conf/certsync.toml");
    let Auth::Token { token_file } = &c.accounts[0].auth else {
        panic!("expected token auth, got {:?}", c.accounts[0].auth)
    };
    assert_eq!(token_file, Path::new("/srv/secrets/token"));
    assert_eq!(c.trust.dir, Path::new("/var/lib/certsync/trust"));
}

#[test]
fn a_relative_config_path_resolves_against_the_working_directory() {
    let c = parse_at(MINIMAL, "conf/certsync.toml");
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(c.source, cwd.join("conf/certsync.toml"));
    assert_eq!(c.trust.dir, cwd.join("conf/trust"));
    assert!(c.trust.dir.is_absolute());
}

#[test]
fn ca_file_is_resolved_and_read() {
    let dir = tempfile::tempdir().unwrap();
    let ca = rcgen::generate_simple_self_signed(vec!["roots.test".to_string()]).unwrap();
    std::fs::create_dir(dir.path().join("pki")).unwrap();
    std::fs::write(dir.path().join("pki/roots.pem"), ca.cert.pem()).unwrap();
    let path = dir.path().join("certsync.toml");
    std::fs::write(&path, with("cloud", "ca_file = \"pki/roots.pem\"")).unwrap();
    let c = config::load(&path).unwrap();
    assert_eq!(
        c.accounts[0].cloud.ca_file,
        Some(dir.path().join("pki/roots.pem"))
    );
    assert_eq!(c.source, path);
}

#[test]
fn endpoints_follow_service_and_region() {
    let eu = MINIMAL.replace("cn-north-4", "eu-west-101");
    let c = parse(&eu);
    assert_eq!(
        c.accounts[0].cloud.endpoint.as_str(),
        "https://gaussdb-nosql.eu-west-101.myhuaweicloud.eu/"
    );

    let c = parse(&with("cloud", "service = \"dds\""));
    assert_eq!(
        c.accounts[0].cloud.endpoint.as_str(),
        "https://dds.cn-north-4.myhuaweicloud.com/"
    );

    for region in ["my-kualalumpur-1", "ae-ad-1", "cn-southwest-2"] {
        let c = parse(&MINIMAL.replace("cn-north-4", region));
        assert_eq!(
            c.accounts[0].cloud.endpoint.host_str(),
            Some(format!("gaussdb-nosql.{region}.myhuaweicloud.com").as_str())
        );
    }

    let c = parse(&with("cloud", "endpoint = \"https://127.0.0.1:8443\""));
    assert_eq!(
        c.accounts[0].cloud.endpoint.as_str(),
        "https://127.0.0.1:8443/"
    );
    assert_eq!(c.accounts[0].cloud.region, "cn-north-4");
}

#[test]
fn iam_endpoint_follows_the_region_unless_set() {
    let c = parse(MINIMAL);
    assert_eq!(
        c.accounts[0].cloud.iam_endpoint.as_str(),
        "https://iam.cn-north-4.myhuaweicloud.com/"
    );
    let c = parse(&MINIMAL.replace("cn-north-4", "eu-west-101"));
    assert_eq!(
        c.accounts[0].cloud.iam_endpoint.as_str(),
        "https://iam.eu-west-101.myhuaweicloud.eu/"
    );
    // A region the SDK's tables do not know yet works by its shape.
    let c = parse(&MINIMAL.replace("cn-north-4", "xx-newland-7"));
    assert_eq!(
        c.accounts[0].cloud.iam_endpoint.as_str(),
        "https://iam.xx-newland-7.myhuaweicloud.com/"
    );
    let c = parse(&with(
        "cloud",
        "iam_endpoint = \"https://127.0.0.1:9443/iam\"",
    ));
    assert_eq!(
        c.accounts[0].cloud.iam_endpoint.as_str(),
        "https://127.0.0.1:9443/iam"
    );
}

/// MINIMAL with `[auth]` replaced.
fn with_auth(auth: &str) -> String {
    MINIMAL.replace(
        "[auth]\nmethod = \"token\"\ntoken_file = \"token\"\n",
        &format!("[auth]\n{auth}\n"),
    )
}

fn parse_env(text: &str, env: &[(&str, &str)]) -> Config {
    let lookup = |name: &str| {
        env.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    };
    match config::parse_with_env(text, Path::new("/srv/conf/certsync.toml"), &lookup) {
        Ok(c) => c,
        Err(e) => panic!("expected a valid config, got:\n{e}"),
    }
}

#[test]
fn aksk_reads_the_file_then_the_sdk_environment() {
    let text = with_auth(
        "method = \"aksk\"\naccess_key = \"AKFILE\"\nsecret_key = \"SKFILE\"\nsecurity_token = \"STFILE\"",
    );
    let env = [
        ("HUAWEICLOUD_SDK_AK", "AKENV"),
        ("HUAWEICLOUD_SDK_SK", "SKENV"),
        ("HUAWEICLOUD_SDK_SECURITY_TOKEN", "STENV"),
        ("HUAWEICLOUD_SDK_PROJECT_ID", "envproject"),
    ];
    let c = parse_env(&text, &env);
    let Auth::AkSk(a) = &c.accounts[0].auth else {
        panic!("{:?}", c.accounts[0].auth)
    };
    assert_eq!(a.access_key.expose(), "AKFILE");
    assert!(matches!(&a.secret_key, SecretKey::Inline(s) if s.expose() == "SKFILE"));
    assert_eq!(a.security_token.as_ref().unwrap().expose(), "STFILE");
    assert!(a.from_env.is_empty());
    // The file's project id wins over the environment's.
    assert_eq!(
        c.accounts[0].cloud.project_id.as_deref(),
        Some("619d3e78f61b4be68bc5aa0b59edcf7b")
    );

    let bare = with_auth("method = \"aksk\"")
        .replace("project_id = \"619d3e78f61b4be68bc5aa0b59edcf7b\"\n", "");
    let c = parse_env(&bare, &env);
    let Auth::AkSk(a) = &c.accounts[0].auth else {
        panic!("{:?}", c.accounts[0].auth)
    };
    assert_eq!(a.access_key.expose(), "AKENV");
    assert!(matches!(&a.secret_key, SecretKey::Inline(s) if s.expose() == "SKENV"));
    assert_eq!(a.security_token.as_ref().unwrap().expose(), "STENV");
    assert_eq!(
        c.accounts[0].cloud.project_id.as_deref(),
        Some("envproject")
    );
    let plan = c.describe();
    for needle in [
        "method: aksk",
        "access_key: from HUAWEICLOUD_SDK_AK",
        "secret_key: from HUAWEICLOUD_SDK_SK",
        "security_token: from HUAWEICLOUD_SDK_SECURITY_TOKEN (temporary AK/SK)",
        "project_id: envproject",
    ] {
        assert!(plan.contains(needle), "plan lacks {needle:?}:\n{plan}");
    }
    // Nothing secret in the plan or in Debug.
    let debug = format!("{c:?}");
    for secret in ["AKENV", "SKENV", "STENV"] {
        assert!(
            !plan.contains(secret) && !debug.contains(secret),
            "{secret}"
        );
    }

    // No project id anywhere: looked up in IAM; a secret key file is only named.
    let c = parse_env(
        &bare.replace(
            "method = \"aksk\"",
            "method = \"aksk\"\nsecret_key_file = \"keys/sk\"",
        ),
        &[("HUAWEICLOUD_SDK_AK", "AKENV")],
    );
    let Auth::AkSk(a) = &c.accounts[0].auth else {
        panic!("{:?}", c.accounts[0].auth)
    };
    assert!(matches!(&a.secret_key, SecretKey::File(p) if p == Path::new("/srv/conf/keys/sk")));
    assert!(a.security_token.is_none());
    assert_eq!(c.accounts[0].cloud.project_id, None);
    let plan = c.describe();
    assert!(
        plan.contains("project_id: looked up in IAM (GET /v3/projects?name=cn-north-4)"),
        "{plan}"
    );
    assert!(
        plan.contains("secret_key_file: /srv/conf/keys/sk"),
        "{plan}"
    );
    assert!(plan.contains("security_token: none"), "{plan}");
}

#[test]
fn password_and_metadata_are_read() {
    let text = with_auth(
        "method = \"password\"\nuser = \"certsync\"\ndomain = \"acme\"\npassword_file = \"pw\"",
    )
    .replace("project_id = \"619d3e78f61b4be68bc5aa0b59edcf7b\"\n", "");
    let c = parse(&text);
    let Auth::Password(p) = &c.accounts[0].auth else {
        panic!("{:?}", c.accounts[0].auth)
    };
    assert_eq!((p.user.as_str(), p.domain.as_str()), ("certsync", "acme"));
    assert_eq!(p.password_file, Path::new("/srv/conf/pw"));
    assert_eq!(c.accounts[0].cloud.project_id, None);
    let plan = c.describe();
    assert!(plan.contains("method: password"), "{plan}");
    assert!(
        plan.contains("project_id: from the IAM token (scoped to project \"cn-north-4\")"),
        "{plan}"
    );

    let c = parse(&with_auth("method = \"metadata\""));
    let Auth::Metadata { metadata_endpoint } = &c.accounts[0].auth else {
        panic!("{:?}", c.accounts[0].auth)
    };
    assert_eq!(metadata_endpoint.as_str(), "http://169.254.169.254/");
    assert_eq!(
        metadata_endpoint.as_str(),
        format!("{}/", config::DEFAULT_METADATA_ENDPOINT)
    );
    let c = parse(&with_auth(
        "method = \"metadata\"\nmetadata_endpoint = \"https://127.0.0.1:8443\"",
    ));
    let Auth::Metadata { metadata_endpoint } = &c.accounts[0].auth else {
        panic!("{:?}", c.accounts[0].auth)
    };
    assert_eq!(metadata_endpoint.as_str(), "https://127.0.0.1:8443/");
    assert!(
        c.describe()
            .contains("metadata_endpoint: https://127.0.0.1:8443/")
    );
}

#[test]
fn an_inline_secret_key_in_a_readable_file_draws_a_warning() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("certsync.toml");
    let text = with_auth("method = \"aksk\"\naccess_key = \"AKX\"\nsecret_key = \"SeCrEtVaLuE\"");
    std::fs::write(&path, &text).unwrap();
    for (mode, warned) in [
        (0o644, true),
        (0o640, true),
        (0o604, true),
        (0o600, false),
        (0o400, false),
    ] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let c = config::load(&path).unwrap();
        assert_eq!(
            c.warnings.len(),
            usize::from(warned),
            "mode {mode:o}: {:?}",
            c.warnings
        );
        if warned {
            let w = &c.warnings[0];
            assert_eq!(w.key, "auth.secret_key");
            assert!(w.message.contains(&path.display().to_string()), "{w}");
            assert!(!w.message.contains("SeCrEtVaLuE"), "{w}");
            let plan = c.describe();
            assert!(plan.contains("warning: auth.secret_key:"), "{plan}");
            assert!(!plan.contains("SeCrEtVaLuE"), "{plan}");
        }
    }
    // A secret key in its own file draws none, whatever the config's mode.
    std::fs::write(
        &path,
        text.replace("secret_key = \"SeCrEtVaLuE\"", "secret_key_file = \"sk\""),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(config::load(&path).unwrap().warnings.is_empty());
}

#[test]
fn instances_hooks_and_helpers() {
    let text = format!(
        r#"{MINIMAL}
[[instance]]
id = "e73893ef73754465a8bd2e0857bbf13ein02"
name = "orders"
categories = ["international", "national"]
pin_sha256 = ["5F:0C:{colons}", "{lower}"]

[[hook]]
command = ["/usr/bin/systemctl", "reload", "app.service"]

[[hook]]
name = "tell"
command = ["/bin/echo", ""]
timeout = "90s"
instances = ["orders", "inst-1", "e73893ef73754465a8bd2e0857bbf13ein02"]
"#,
        colons = ["AB"; 30].join(":"),
        lower = "0f".repeat(32),
    );
    let c = parse(&text);
    assert_eq!(c.instances.len(), 2);
    let orders = &c.instances[1];
    assert_eq!(orders.display_name(), "orders");
    assert_eq!(c.instances[0].display_name(), "inst-1");
    assert!(orders.wants("national"));
    assert!(!orders.wants("other"));
    assert!(c.instances[0].wants("anything"));
    let mut first = [0xabu8; 32];
    first[0] = 0x5f;
    first[1] = 0x0c;
    assert_eq!(orders.pins, vec![first, [0x0f; 32]]);

    assert_eq!(
        c.trust.file_name_for(orders, "national"),
        "orders-national.crt"
    );
    assert_eq!(
        c.trust.file_name_for(&c.instances[0], "international"),
        "inst-1-international.crt"
    );
    // A category that only the API names is not expanded again, and is checkable.
    let odd = c.trust.file_name_for(orders, "../{id}");
    assert_eq!(odd, "orders-../{id}.crt");
    assert!(c.trust.file_name_problem(&odd).is_some());
    assert!(c.trust.file_name_problem("orders-x.crt").is_none());

    assert_eq!(c.hooks.len(), 2);
    assert_eq!(c.hooks[0].name, "systemctl");
    assert_eq!(
        c.hooks[0].action,
        HookAction::Command(vec![
            "/usr/bin/systemctl".into(),
            "reload".into(),
            "app.service".into()
        ])
    );
    assert_eq!(c.hooks[0].timeout, Duration::from_secs(30));
    assert_eq!(c.hooks[0].instances, None);
    assert_eq!(c.hooks[1].name, "tell");
    assert_eq!(
        c.hooks[1].action,
        HookAction::Command(vec!["/bin/echo".into(), "".into()])
    );
    assert_eq!(c.hooks[1].timeout, Duration::from_secs(90));
    // Names resolve to ids; an instance named twice is listed once.
    assert_eq!(
        c.hooks[1].instances.as_deref(),
        Some(
            &[
                "e73893ef73754465a8bd2e0857bbf13ein02".to_string(),
                "inst-1".to_string()
            ][..]
        )
    );
}

#[test]
fn file_name_without_category_works_with_one_category_each() {
    let text = format!(
        "{}\ncategories = [\"international\"]\n[[instance]]\nid = \"b\"\ncategories = [\"national\"]\n",
        with("trust", "file_name = \"{id}.pem\"")
    );
    let c = parse(&text);
    assert_eq!(c.trust.file_name_for(&c.instances[1], "national"), "b.pem");
}

#[test]
fn file_name_without_instance_works_with_one_instance() {
    let c = parse(&with("trust", "file_name = \"db-{category}.pem\""));
    assert_eq!(
        c.trust.file_name_for(&c.instances[0], "international"),
        "db-international.pem"
    );
}

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/certsync.toml")
}

#[test]
fn the_shipped_example_parses() {
    let c = config::load(&example_path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.accounts[0].cloud.region, "cn-north-4");
    assert_eq!(c.accounts[0].cloud.service, "gaussdb-nosql");
    let Auth::AkSk(a) = &c.accounts[0].auth else {
        panic!("expected aksk auth, got {:?}", c.accounts[0].auth)
    };
    assert_eq!(a.access_key.expose(), "QTWAOYTTINDUT2QVKYUC");
    assert!(
        matches!(&a.secret_key, SecretKey::File(p) if p == &Path::new(env!("CARGO_MANIFEST_DIR")).join("config/sk"))
    );
    assert_eq!(c.trust.dir, Path::new("/var/lib/certsync/trust"));
    assert_eq!(c.instances.len(), 2);
    assert_eq!(c.hooks.len(), 3);
    assert_eq!(c.hooks[0].name, "reload-app");
    assert_eq!(
        c.hooks[0].instances.as_deref(),
        Some(&["e73893ef73754465a8bd2e0857bbf13ein02".to_string()][..])
    );
    assert_eq!(c.hooks[1].name, "notify-dba");
    assert_eq!(c.hooks[2].name, "SIGHUP-app.pid");
    assert_eq!(c.server.listen, Some("127.0.0.1:9464".parse().unwrap()));
}

#[test]
fn the_shipped_example_shows_every_key() {
    let text = std::fs::read_to_string(example_path()).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .map(|l| l.trim_start_matches('#').trim_start())
        .collect();
    let shows = |key: &str| {
        lines.iter().any(|l| {
            l.strip_prefix(key)
                .is_some_and(|r| r.trim_start().starts_with('='))
        })
    };
    // Every key of SPEC 3, table by table: the schema the walker checks files against.
    let mut missing = Vec::new();
    for section in config::SCHEMA {
        let header = section.header();
        assert!(
            lines.iter().any(|l| l.starts_with(&header)),
            "example lacks {header}"
        );
        for key in section.all_keys() {
            if !shows(key) {
                missing.push(format!("{}.{key}", section.name));
            }
        }
    }
    assert!(missing.is_empty(), "example lacks keys: {missing:?}");
    // Every section of SPEC 3 (and SPEC 13's [verify], SPEC 14's [publish] and [source],
    // SPEC 15's [[account]]) is in the schema.
    let names: Vec<&str> = config::SCHEMA.iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        [
            "cloud", "auth", "account", "sync", "trust", "instance", "discover", "hook", "server",
            "verify", "publish", "source", "log"
        ]
    );
    // Every key of SPEC 3 works now: nothing is marked unsupported any more.
    assert_eq!(text.matches("not supported yet").count(), 0);
}

#[test]
fn describe_prints_the_resolved_plan() {
    let text = format!(
        r#"{}
[[instance]]
id = "b-2"
name = "orders"
categories = ["international", "national"]

[[hook]]
command = ["/usr/bin/systemctl", "reload", "app.service"]
instances = ["orders"]
"#,
        with("trust", "bundle = \"all.pem\"")
    );
    let c = parse(&text);
    let plan = c.describe();
    for needle in [
        "/srv/conf/certsync.toml",
        "https://gaussdb-nosql.cn-north-4.myhuaweicloud.com/",
        "method: token",
        "token_file: /srv/conf/token",
        "interval: 1h plus 0..6m jitter",
        "concurrency: 8",
        "dir: /srv/conf/trust",
        "mode: 0644",
        "bundle: /srv/conf/trust/all.pem",
        "inst-1:",
        "every category -> /srv/conf/trust/inst-1-{category}.crt",
        "orders (b-2):",
        "international -> /srv/conf/trust/orders-international.crt",
        "national -> /srv/conf/trust/orders-national.crt",
        "systemctl:",
        "[\"/usr/bin/systemctl\", \"reload\", \"app.service\"]",
        "timeout: 30s",
        "runs when these instances change: orders (b-2)",
        "format: text",
    ] {
        assert!(plan.contains(needle), "plan lacks {needle:?}:\n{plan}");
    }
}

#[test]
fn load_reads_a_real_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("certsync.toml");
    std::fs::write(&path, MINIMAL).unwrap();
    let c = config::load(&path).unwrap();
    assert_eq!(c.trust.dir, dir.path().join("trust"));
}

#[test]
fn signal_hooks_resolve_their_pid_file_and_default_name() {
    let text = format!("{MINIMAL}\n[[hook]]\nsignal = \"usr1\"\npid_file = \"run/app.pid\"\n");
    let c = parse(&text);
    assert_eq!(
        c.hooks[0].action,
        HookAction::Signal {
            signal: HookSignal::Usr1,
            pid_file: PathBuf::from("/srv/conf/run/app.pid"),
        }
    );
    assert_eq!(c.hooks[0].name, "SIGUSR1-app.pid");
}

#[test]
fn server_listen_is_an_address_and_port() {
    let c = parse(&format!(
        "{MINIMAL}\n[server]\nlisten = \"127.0.0.1:9464\"\n"
    ));
    assert_eq!(c.server.listen, Some("127.0.0.1:9464".parse().unwrap()));
    assert_eq!(parse(MINIMAL).server.listen, None);
}

/// Writes `text` as a private config file (0600, so no inline-secret warning) in `dir` and
/// loads it.
fn load_in(dir: &Path, text: &str) -> Config {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("certsync.toml");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    config::load(&path).unwrap_or_else(|e| panic!("expected a valid config, got:\n{e}"))
}

/// The one warning of `c`, which must be at `key` and hold every needle; or none at all.
fn assert_warning(c: &Config, key: Option<&str>, needles: &[&str], what: &str) {
    match key {
        None => assert!(c.warnings.is_empty(), "{what}: {:?}", c.warnings),
        Some(key) => {
            assert_eq!(c.warnings.len(), 1, "{what}: {:?}", c.warnings);
            let w = &c.warnings[0];
            assert_eq!(w.key, key, "{what}: {w}");
            for n in needles {
                assert!(w.message.contains(n), "{what}: no {n:?} in {w}");
            }
        }
    }
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn secret_files_readable_by_group_or_others_draw_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    let shown = secret.display().to_string();
    let cases = [
        (
            with_auth("method = \"token\"\ntoken_file = \"secret\""),
            "auth.token_file",
        ),
        (
            with_auth("method = \"aksk\"\naccess_key = \"AKX\"\nsecret_key_file = \"secret\""),
            "auth.secret_key_file",
        ),
        (
            with_auth(
                "method = \"password\"\nuser = \"u\"\ndomain = \"d\"\npassword_file = \"secret\"",
            ),
            "auth.password_file",
        ),
        (
            with(
                "trust",
                "pkcs12 = \"truststore.p12\"\npkcs12_password_file = \"secret\"",
            ),
            "trust.pkcs12_password_file",
        ),
    ];
    for (text, key) in &cases {
        std::fs::write(&secret, "S3CR3T-VALUE\n").unwrap();
        for (mode, warned) in [
            (0o644, true),
            (0o640, true),
            (0o604, true),
            (0o600, false),
            (0o400, false),
        ] {
            chmod(&secret, mode);
            let c = load_in(dir.path(), text);
            let what = format!("{key} mode {mode:04o}");
            if warned {
                let mode = format!("mode {mode:04o}");
                assert_warning(&c, Some(key), &[&shown, &mode, "group or others"], &what);
                assert!(!c.warnings[0].message.contains("S3CR3T"), "{what}");
                assert!(
                    c.describe().contains(&format!("warning: {key}: ")),
                    "{what}"
                );
            } else {
                assert_warning(&c, None, &[], &what);
            }
        }
        // Missing (another process writes it later): neither an error nor a warning.
        std::fs::remove_file(&secret).unwrap();
        assert_warning(&load_in(dir.path(), text), None, &[], key);
    }
}

#[test]
fn a_trust_mode_writable_by_group_or_others_draws_a_warning() {
    for (mode, warned) in [
        ("0664", true),
        ("0646", true),
        ("0666", true),
        ("0777", true),
        ("0644", false),
        ("0600", false),
        ("0444", false),
    ] {
        let c = parse(&with("trust", &format!("mode = \"{mode}\"")));
        let quoted = format!("\"{mode}\"");
        let key = warned.then_some("trust.mode");
        assert_warning(
            &c,
            key,
            &[&quoted, "/srv/conf/certsync.toml", "/srv/conf/trust"],
            mode,
        );
    }
}

#[test]
fn a_listen_address_off_loopback_draws_a_warning() {
    for (listen, warned) in [
        ("0.0.0.0:9464", true),
        ("10.1.2.3:9464", true),
        ("[::]:9464", true),
        ("[2001:db8::1]:9464", true),
        ("127.0.0.1:9464", false),
        ("127.0.0.2:9464", false),
        ("[::1]:9464", false),
        ("[::ffff:127.0.0.1]:9464", false),
    ] {
        let c = parse(&format!("{MINIMAL}\n[server]\nlisten = \"{listen}\"\n"));
        let shown = listen.parse::<std::net::SocketAddr>().unwrap().to_string();
        let key = warned.then_some("server.listen");
        assert_warning(
            &c,
            key,
            &[&shown, "not a loopback address", "/srv/conf/certsync.toml"],
            listen,
        );
    }
}

#[test]
fn a_pid_file_another_user_can_write_draws_a_warning() {
    use std::os::unix::fs::symlink;
    let root = rustix::process::geteuid().is_root();
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    let pid = run.join("app.pid");
    let text = format!(
        "{MINIMAL}\n[[hook]]\ncommand = [\"/bin/true\"]\n\n[[hook]]\nsignal = \"SIGHUP\"\npid_file = \"run/app.pid\"\n"
    );
    let key = "hook[1].pid_file";
    let shown = pid.display().to_string();
    let check = |what: &str, warned: Option<&str>| {
        let c = load_in(dir.path(), &text);
        match warned {
            Some(needle) => assert_warning(&c, Some(key), &[&shown, needle, "SIGHUP"], what),
            None => assert_warning(&c, None, &[], what),
        }
    };

    chmod(&run, 0o755);
    check("missing, private folder", None);
    std::fs::write(&pid, "4242\n").unwrap();
    chmod(&pid, 0o644);
    check("private file and folder", None);
    chmod(&pid, 0o664);
    check(
        "group-writable",
        Some("writable by group or others (mode 0664)"),
    );
    chmod(&pid, 0o646);
    check(
        "world-writable",
        Some("writable by group or others (mode 0646)"),
    );
    chmod(&pid, 0o644);

    chmod(&run, 0o777);
    check("folder without sticky bit", Some("without the sticky bit"));
    chmod(&run, 0o1777);
    check("sticky folder, file of our own", None);
    std::fs::remove_file(&pid).unwrap();
    check("sticky folder, no file yet", Some("does not exist yet"));
    chmod(&run, 0o755);

    // Named through a symlink: the real file's folder counts too.
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("app.pid"), "4242\n").unwrap();
    chmod(&other.join("app.pid"), 0o644);
    symlink("../other/app.pid", &pid).unwrap();
    chmod(&other, 0o777);
    let other_shown = format!("its folder {} is writable", other.display());
    check("symlink into an open folder", Some(&other_shown));
    chmod(&other, 0o755);
    check("symlink into a private folder", None);
    std::fs::remove_file(&pid).unwrap();

    if root {
        // Owned by another user (not root): they can write it, or replace it.
        std::fs::write(&pid, "4242\n").unwrap();
        chmod(&pid, 0o644);
        std::os::unix::fs::chown(&pid, Some(54321), None).unwrap();
        check("file of another user", Some("owned by uid 54321"));
        std::fs::remove_file(&pid).unwrap();
        std::os::unix::fs::chown(&run, Some(54321), None).unwrap();
        check(
            "folder of another user",
            Some("owned by uid 54321, who can replace it"),
        );
    } else {
        eprintln!("not root: the checks of files owned by another user are skipped");
    }

    // A folder that does not exist: nothing to say yet.
    let text = text.replace("run/app.pid", "nowhere/app.pid");
    let c = load_in(dir.path(), &text);
    assert_warning(&c, None, &[], "missing folder");
}

#[test]
fn a_subscriber_needs_no_cloud_and_no_instances_and_a_publisher_keeps_its_cloud() {
    let c = parse(
        r#"[source]
kind = "etcd"
endpoints = ["http://127.0.0.1:2379"]
prefix = "/certsync/prod"

[trust]
dir = "trust"
"#,
    );
    assert!(c.accounts.is_empty() && c.instances.is_empty());
    let etcd = c.subscribe.expect("a subscriber");
    assert_eq!(etcd.bundle_key(), "/certsync/prod/bundle");
    assert!(c.publish.is_none());

    let c = parse(&format!(
        "{MINIMAL}\n[publish]\nbackend = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\"]\nprefix = \"/c\"\nlease_ttl = \"5s\"\n"
    ));
    let publish = c.publish.expect("a publisher");
    assert_eq!(publish.lease_ttl, std::time::Duration::from_secs(5));
    assert_eq!(c.accounts.len(), 1);
    assert!(c.subscribe.is_none());
}

#[test]
fn a_subscriber_cannot_publish_nor_discover() {
    let text = format!(
        "{MINIMAL}\n[publish]\nbackend = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\"]\nprefix = \"/c\"\n\
         [source]\nkind = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\"]\nprefix = \"/c\"\n\
         [[discover]]\nname = \"*\"\n"
    );
    let e = config::parse(&text, Path::new("/srv/conf/certsync.toml")).unwrap_err();
    let keys: Vec<&str> = e.problems.iter().map(|p| p.key.as_str()).collect();
    assert!(keys.contains(&"source.kind"), "{e}");
    assert!(keys.contains(&"discover"), "{e}");
}
