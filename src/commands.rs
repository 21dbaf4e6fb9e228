//! The commands of SPEC 2, as the binary runs them: each loads what it needs, prints its
//! output on stdout (logs go to stderr) and returns the exit status.
//!
//! Owns: logging set-up, signal handling for `run`/`demo`, and output formats. The work itself
//! is done by `daemon`, `config`, `inspect` and the simulator crate.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing_subscriber::EnvFilter;

use crate::cloud::http::RedactedUrl;
use crate::config::{self, Config, LogFormat};
use crate::daemon::{self, Controls};

/// Exit status: success.
pub const EXIT_OK: u8 = 0;
/// Exit status: something failed (an instance, a hook, the trust folder).
pub const EXIT_FAILED: u8 = 1;
/// Exit status: the configuration is invalid (EX_CONFIG), so systemd does not restart-loop.
pub const EXIT_CONFIG: u8 = 78;

/// Logging options from the command line.
#[derive(Clone, Debug, Default)]
pub struct Logging {
    /// `--log-format`.
    pub format: Option<LogFormat>,
    /// `--log-level`.
    pub level: Option<String>,
}

/// Sets up tracing on stderr: RUST_LOG wins, then `--log-level`, then `[log] level`, then info.
pub fn init_logging(cli: &Logging, config: Option<&Config>) {
    let level = cli
        .level
        .clone()
        .or_else(|| config.and_then(|c| c.log.level.clone()))
        .unwrap_or_else(|| "info".to_string());
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::new(v),
        _ => EnvFilter::new(level),
    };
    let format = cli
        .format
        .or_else(|| config.map(|c| c.log.format))
        .unwrap_or_default();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    // try_init: a second call (tests running commands in-process) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
}

fn load(path: &Path, logging: &Logging) -> Result<Config, u8> {
    match config::load(path) {
        Ok(config) => {
            init_logging(logging, Some(&config));
            Ok(config)
        }
        Err(err) => {
            eprintln!("certsync: {err}");
            Err(EXIT_CONFIG)
        }
    }
}

/// `certsync run`.
pub async fn run(path: &Path, logging: &Logging) -> u8 {
    // Handlers first: a SIGUSR1 or SIGHUP during start-up must not kill the process (their
    // default action), and a SIGTERM then still stops it cleanly.
    let controls = Controls::default();
    if let Err(e) = spawn_signal_handlers(&controls) {
        eprintln!("certsync: cannot install signal handlers: {e}");
        return EXIT_FAILED;
    }
    let config = match load(path, logging) {
        Ok(c) => c,
        Err(code) => return code,
    };
    tracing::info!(config = %path.display(), instances = config.instances.len(), "certsync starting");
    match daemon::run(config, controls).await {
        Ok(()) => EXIT_OK,
        Err(e) => {
            tracing::error!(error = %error_chain(&e), "certsync stopped");
            eprintln!("certsync: {}", error_chain(&e));
            EXIT_FAILED
        }
    }
}

fn spawn_signal_handlers(controls: &Controls) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut hup = signal(SignalKind::hangup())?;
    let shutdown = controls.shutdown.clone();
    let pass_now = controls.pass_now.clone();
    let reload = controls.reload.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM: stopping"); shutdown.cancel(); }
                _ = int.recv() => { tracing::info!("SIGINT: stopping"); shutdown.cancel(); }
                _ = usr1.recv() => pass_now.notify_one(),
                _ = hup.recv() => reload.notify_one(),
            }
        }
    });
    Ok(())
}

/// `certsync once [--dry-run]`.
pub async fn once(path: &Path, logging: &Logging, dry_run: bool) -> u8 {
    let config = match load(path, logging) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let summary = match daemon::once(config, dry_run).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("certsync: {}", error_chain(&e));
            return EXIT_FAILED;
        }
    };
    let mut out = std::io::stdout().lock();
    for line in &summary.lines {
        let _ = writeln!(out, "{}", line.render(summary.dry_run));
    }
    if dry_run {
        let _ = writeln!(
            out,
            "dry run: {} file(s) would change; nothing was written and no hook ran",
            summary.changed_files.len()
        );
        for file in &summary.changed_files {
            let _ = writeln!(out, "  would write {}", file.display());
        }
    }
    for err in &summary.store_errors {
        let _ = writeln!(out, "trust folder: failed: {err}");
    }
    for hook in &summary.failed_hooks {
        let _ = writeln!(out, "hook {hook}: failed");
    }
    if summary.ok() { EXIT_OK } else { EXIT_FAILED }
}

/// `certsync check [--online]`.
pub async fn check(path: &Path, logging: &Logging, online: bool) -> u8 {
    let config = match load(path, logging) {
        Ok(c) => c,
        Err(code) => return code,
    };
    println!("configuration {} is valid\n", path.display());
    println!("{}", config.describe());
    print_files_on_disk(&config);
    if !online {
        return EXIT_OK;
    }
    println!("\nonline check:");
    let api = match crate::cloud::connect(&config) {
        Ok((_, api)) => api,
        Err(e) => {
            println!("  building the HTTP client failed: {}", error_chain(&e));
            return EXIT_FAILED;
        }
    };
    let credentials = api.credentials();
    // Authentication first, so a failure says which step failed: this one, or listing.
    match credentials.authenticate().await {
        Ok(project_id) => println!(
            "  authenticate (auth method {}): ok, project {project_id}",
            credentials.method()
        ),
        Err(e) => {
            println!(
                "  authenticate (auth method {}): failed: {}",
                credentials.method(),
                error_chain(&e)
            );
            return EXIT_FAILED;
        }
    }
    let mut code = EXIT_OK;
    for inst in &config.instances {
        match api.list_certs(&inst.id).await {
            Ok(listing) => {
                println!("  instance {}: ok", inst.display_name());
                for link in &listing.certs {
                    let wanted = if inst.wants(&link.category) {
                        ""
                    } else {
                        " (not in categories: ignored)"
                    };
                    println!(
                        "    {} {}{}",
                        link.category,
                        RedactedUrl::new(&link.url),
                        wanted
                    );
                }
                if listing.certs.is_empty() {
                    println!("    the API lists no certificate");
                    code = EXIT_FAILED;
                }
            }
            Err(e) => {
                println!(
                    "  instance {}: list failed: {}",
                    inst.display_name(),
                    error_chain(&e)
                );
                code = EXIT_FAILED;
            }
        }
    }
    for (index, query) in config.discover.iter().enumerate() {
        match api
            .list_instances(query.datastore.as_deref(), query.name.as_deref())
            .await
        {
            Ok(found) => {
                let with_ssl = found.iter().filter(|i| i.ssl).count();
                let kept = if query.ssl_only {
                    with_ssl
                } else {
                    found.len()
                };
                println!(
                    "  discover[{index}]: ListInstances found {} instance(s), {with_ssl} with SSL; {kept} would be synced",
                    found.len()
                );
            }
            Err(e) => {
                println!(
                    "  discover[{index}]: ListInstances failed: {}",
                    error_chain(&e)
                );
                code = EXIT_FAILED;
            }
        }
    }
    code
}

/// What the trust folder holds now, with days left (read-only: nothing is created or locked).
fn print_files_on_disk(config: &Config) {
    let store = match crate::store::Store::open(daemon::store_options(config), true) {
        Ok(store) => store,
        Err(e) => {
            println!("\ntrust folder: cannot read it: {}", error_chain(&e));
            return;
        }
    };
    let current = store.current();
    if current.is_empty() {
        println!("\ntrust folder: no CA written yet");
        return;
    }
    let now = time::OffsetDateTime::now_utc();
    let warning =
        time::Duration::try_from(config.sync.expiry_warning).unwrap_or(time::Duration::MAX);
    println!("\ntrust folder now:");
    for entry in current {
        let (not_after, left) = match entry.not_after {
            Some(t) => {
                let days = (t - now).whole_days();
                let flag = if t - now <= warning {
                    " (inside expiry_warning)"
                } else {
                    ""
                };
                (crate::cert::rfc3339(t), format!("{days} days left{flag}"))
            }
            None => ("-".into(), "-".into()),
        };
        println!(
            "  {} ({}/{}): notAfter {not_after}, {left}",
            entry.path.display(),
            entry.instance_id,
            entry.category
        );
    }
}

/// `certsync inspect [--json] PATH...`.
pub fn inspect(paths: &[PathBuf], json: bool) -> u8 {
    let (reports, errors) = crate::inspect::inspect(paths);
    if json {
        match serde_json::to_string_pretty(&reports) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("certsync: {e}");
                return EXIT_FAILED;
            }
        }
    } else {
        print!(
            "{}",
            crate::inspect::render_text(&reports, time::OffsetDateTime::now_utc())
        );
    }
    for err in &errors {
        eprintln!("certsync: not a certificate: {err}");
    }
    if errors.is_empty() {
        EXIT_OK
    } else {
        EXIT_FAILED
    }
}

/// An error and its sources, joined by ": ".
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

/// Seconds between the demo's CA rotations.
pub const DEMO_ROTATE_EVERY: Duration = Duration::from_secs(30);

/// `certsync demo [--dir DIR]`.
pub async fn demo(dir: &Path, logging: &Logging) -> u8 {
    init_logging(logging, None);
    match run_demo(dir).await {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("certsync demo: {e}");
            EXIT_FAILED
        }
    }
}

async fn run_demo(dir: &Path) -> Result<(), String> {
    use certsync_sim::{SimOptions, Simulator};
    let controls = Controls::default();
    spawn_signal_handlers(&controls).map_err(|e| format!("signal handlers: {e}"))?;
    let dir = std::path::absolute(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let work = tempfile::Builder::new()
        .prefix("certsync-demo-")
        .tempdir()
        .map_err(|e| format!("temporary folder: {e}"))?;
    let sim = Simulator::start(SimOptions {
        instances: 3,
        dir: Some(work.path().join("sim")),
        ..SimOptions::default()
    })
    .await
    .map_err(|e| format!("starting the simulator: {e}"))?;
    let config_path = write_demo_config(&sim, work.path(), &dir)?;
    let config = config::load(&config_path).map_err(|e| e.to_string())?;
    let ids = sim.instance_ids();
    println!("certsync demo");
    println!(
        "  simulator:   {} (project {})",
        sim.endpoint(),
        sim.project_id()
    );
    println!("  config:      {}", config_path.display());
    println!("  trust dir:   {}", dir.display());
    println!(
        "  every {} s the CA of instance 'orders' ({}) rotates; the hook prints what changed",
        DEMO_ROTATE_EVERY.as_secs(),
        ids[0]
    );
    println!("  Ctrl-C stops.\n");
    let _ = std::io::stdout().flush();

    let rotator = {
        let sim = sim.clone();
        let controls = controls.clone();
        let id = ids[0].clone();
        tokio::spawn(async move {
            while daemon::sleep_or_cancel(DEMO_ROTATE_EVERY, &controls.shutdown).await {
                let ca = sim.rotate(&id, "international");
                tracing::info!(instance = "orders", new_fingerprint = %ca.sha256_hex, "simulator: CA rotated");
                controls.pass_now.notify_one();
            }
        })
    };
    let result = daemon::run(config, controls.clone()).await;
    controls.shutdown.cancel();
    let _ = rotator.await;
    sim.shutdown();
    result.map_err(|e| error_chain(&e))
}

fn write_demo_config(
    sim: &certsync_sim::Simulator,
    work: &Path,
    trust_dir: &Path,
) -> Result<PathBuf, String> {
    let token_file = work.join("token");
    std::fs::write(&token_file, sim.token()).map_err(|e| format!("token file: {e}"))?;
    let names = ["orders", "sessions", "metrics"];
    // TOML strings built by the toml crate, so a quote or backslash in a path stays a path.
    let q = |s: String| toml::Value::String(s).to_string();
    let mut text = format!(
        r#"# Written by `certsync demo` for its simulator.
[cloud]
service = "gaussdb-nosql"
region = "cn-north-4"
endpoint = {endpoint}
project_id = {project}
ca_file = {ca_file}

[auth]
method = "token"
token_file = {token_file}

[sync]
interval = "10s"
jitter = "1s"
retry_initial = "2s"
retry_max = "10s"
rotation_overlap = "45s"
allowed_download_hosts = ["127.0.0.1"]

[trust]
dir = {trust_dir}
bundle = "ca-bundle.crt"

[[hook]]
name = "print-changes"
command = ["/bin/sh", "-c", "echo \"demo hook: changed files:\"; echo \"$CERTSYNC_CHANGED_FILES\""]
timeout = "10s"
"#,
        endpoint = q(sim.endpoint()),
        project = q(sim.project_id()),
        ca_file = q(sim.ca_file().display().to_string()),
        token_file = q(token_file.display().to_string()),
        trust_dir = q(trust_dir.display().to_string()),
    );
    for (id, name) in sim.instance_ids().iter().zip(names) {
        text.push_str(&format!(
            "\n[[instance]]\nid = \"{id}\"\nname = \"{name}\"\n"
        ));
    }
    let path = work.join("certsync.toml");
    std::fs::write(&path, text).map_err(|e| format!("demo config: {e}"))?;
    Ok(path)
}
