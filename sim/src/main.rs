//! `certsync-sim`: runs the simulator until SIGTERM or SIGINT, after printing one JSON line that
//! tells a parent process how to reach it (endpoint, CA file, project, instances, token, AK/SK,
//! metadata and IAM endpoints, region).
//!
//! Thin: parses arguments, sets up logging on stderr, and calls the library. Nothing but the
//! announcement line goes to stdout.
#![forbid(unsafe_code)]

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use certsync_sim::{SimOptions, Simulator};
use clap::Parser;
use serde::Serialize;
use tokio::signal::unix::{SignalKind, signal};

/// A Huawei Cloud GaussDB NoSQL SSL-cert API and OBS download-link simulator, over TLS on loopback.
#[derive(Parser, Debug)]
#[command(name = "certsync-sim", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Number of instances to create (random ids like real ones).
    #[arg(long, default_value_t = 1)]
    instances: usize,
    /// The IAM token the API accepts (random if absent).
    #[arg(long)]
    token: Option<String>,
    /// The project id (32 random hex digits if absent).
    #[arg(long)]
    project_id: Option<String>,
    /// Directory for ca.pem (a temporary directory if absent, removed on exit).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The access key the API accepts with --sk (a random pair if both are absent).
    #[arg(long, requires = "sk")]
    ak: Option<String>,
    /// The secret key of --ak.
    #[arg(long, requires = "ak")]
    sk: Option<String>,
    /// The region, also the name of the project (default cn-north-4).
    #[arg(long)]
    region: Option<String>,
}

/// The line printed once the simulator listens.
#[derive(Serialize)]
struct Announcement {
    endpoint: String,
    ca_file: PathBuf,
    project_id: String,
    instances: Vec<String>,
    token: String,
    ak: String,
    sk: String,
    region: String,
    iam_endpoint: String,
    metadata_endpoint: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "certsync-sim failed");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> std::io::Result<()> {
    // Install the handlers before announcing, so a parent that signals right after reading the
    // line is handled.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let sim = Simulator::start(SimOptions {
        listen: args.listen,
        instances: args.instances,
        token: args.token,
        project_id: args.project_id,
        dir: args.dir,
        ak_sk: args.ak.zip(args.sk),
        region: args.region,
        ..SimOptions::default()
    })
    .await?;
    let line = serde_json::to_string(&Announcement {
        endpoint: sim.endpoint(),
        ca_file: sim.ca_file(),
        project_id: sim.project_id(),
        instances: sim.instance_ids(),
        token: sim.token(),
        ak: sim.ak(),
        sk: sim.sk(),
        region: sim.region(),
        iam_endpoint: sim.iam_endpoint(),
        metadata_endpoint: sim.metadata_endpoint(),
    })
    .map_err(std::io::Error::other)?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")?;
    stdout.flush()?;
    drop(stdout);
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
    }
    sim.shutdown();
    Ok(())
}
