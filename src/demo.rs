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
    // A TLS server per instance on loopback, standing in for its database: ListInstances
    // reports it as the instance's node, so the daemon's probes verify it (SPEC 13).
    for id in sim.instance_ids() {
        let (cert, key) = sim.issue_server_cert(&id, "international", &["127.0.0.1"]);
        let port = start_database_stand_in(&cert, &key, controls.shutdown.clone()).await?;
        sim.set_nodes(&id, &[certsync_sim::Node::new("127.0.0.1", port)]);
    }
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
    outln!(
        out,
        "  each instance has a TLS server on loopback standing in for its database; certsync\n  \
         verifies the chain each serves against the CAs it wrote (see /status or the log)"
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

/// A TLS server on a free loopback port serving `cert_pem` (signed by an instance's CA) with
/// `key_pem`: it completes handshakes and closes, until `shutdown`. Gives its port.
async fn start_database_stand_in(
    cert_pem: &str,
    key_pem: &str,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<u16, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("stand-in certificate: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| format!("stand-in key: {e}"))?;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("stand-in TLS: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("stand-in TLS: {e}"))?;
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("stand-in listener: {e}"))?;
    let port = listener
        .local_addr()
        .map_err(|e| format!("stand-in listener: {e}"))?
        .port();
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => return,
                a = listener.accept() => a,
            };
            if let Ok((tcp, _)) = accepted {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut tls) = acceptor.accept(tcp).await {
                        let _ = tokio::io::AsyncWriteExt::shutdown(&mut tls).await;
                    }
                });
            }
        }
    });
    Ok(port)
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
