//! `certsync demo`: starts the built-in cloud simulator (`certsync-sim`) on loopback, writes a
//! config for it and runs the daemon against it, rotating one CA on a timer (README).
//!
//! Owns: the demo's config and its rotation timer. It must not be needed by anything else:
//! it is compiled only with the `demo` cargo feature (on by default, off for packages and the
//! container image), so the simulator never ships in a production binary. Output and signal
//! handling are `commands`'s.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::commands::{
    EXIT_FAILED, EXIT_OK, Logging, Printer, errln, error_chain, init_logging, outln,
    spawn_signal_handlers,
};
use crate::config;
use crate::daemon::{self, Controls};
use crate::text::Untrusted;

/// Seconds between the demo's CA rotations.
pub const DEMO_ROTATE_EVERY: Duration = Duration::from_secs(30);

/// `certsync demo [--dir DIR]`.
pub async fn demo(dir: &Path, logging: &Logging) -> u8 {
    init_logging(logging, None);
    match run_demo(dir).await {
        Ok(()) => EXIT_OK,
        Err(e) => {
            errln(format_args!("certsync demo: {}", Untrusted(&e)));
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
    let mut out = Printer::stdout();
    outln!(out, "certsync demo");
    outln!(
        out,
        "  simulator:   {} (project {})",
        sim.endpoint(),
        sim.project_id()
    );
    outln!(out, "  config:      {}", config_path.display());
    outln!(out, "  trust dir:   {}", dir.display());
    outln!(
        out,
        "  every {} s the CA of instance 'orders' ({}) rotates; the hook prints what changed",
        DEMO_ROTATE_EVERY.as_secs(),
        ids[0]
    );
    outln!(out, "  Ctrl-C stops.\n");
    out.flush();

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
