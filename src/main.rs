//! The `certsync` binary: parses the command line, sets up logging and signals, raises the
//! open-files limit for the daemon, calls into the library and maps outcomes to exit statuses
//! (SPEC 2). Nothing else lives here.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use certsync::commands::{self, EXIT_FAILED};
use certsync::config::LogFormat;

/// Keeps the CA certificates of Huawei Cloud GaussDB NoSQL instances current in a trust folder.
#[derive(Parser, Debug)]
#[command(name = "certsync", version, about)]
struct Cli {
    /// The configuration file.
    #[arg(
        long,
        global = true,
        env = "CERTSYNC_CONFIG",
        default_value = "/etc/certsync/certsync.toml"
    )]
    config: PathBuf,
    /// Log format (default: the config's [log] format, else text).
    #[arg(long, global = true, value_enum)]
    log_format: Option<CliLogFormat>,
    /// Log level, e.g. info or debug (RUST_LOG wins when set).
    #[arg(long, global = true)]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum CliLogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon: passes on schedule until SIGTERM/SIGINT.
    Run,
    /// One pass, then exit: one line per instance and category.
    Once {
        /// Do everything except writing files and running hooks; print what would change.
        #[arg(long)]
        dry_run: bool,
    },
    /// Validate the configuration and print the resolved plan.
    Check {
        /// Also authenticate and list each instance's certificates (writes nothing).
        #[arg(long)]
        online: bool,
    },
    /// Print the certificates in PEM/DER files or trust folders.
    Inspect {
        /// One JSON array instead of text.
        #[arg(long)]
        json: bool,
        /// Files or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Run the built-in cloud simulator and the daemon against it (no credentials, no network).
    // Only in builds with the `demo` feature (the default of a checkout, not of packages):
    // without it `certsync demo` is an unknown command and the simulator is not linked.
    #[cfg(feature = "demo")]
    Demo {
        /// The trust folder to write.
        #[arg(long, default_value = "./demo-trust")]
        dir: PathBuf,
    },
}

impl Command {
    /// Whether the command runs the daemon (which wants the raised open-files limit).
    fn runs_daemon(&self) -> bool {
        match self {
            Command::Run => true,
            #[cfg(feature = "demo")]
            Command::Demo { .. } => true,
            Command::Once { .. } | Command::Check { .. } | Command::Inspect { .. } => false,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = cli.log_format.map(|f| match f {
        CliLogFormat::Text => LogFormat::Text,
        CliLogFormat::Json => LogFormat::Json,
    });
    let logging = commands::Logging {
        format: log_format,
        level: cli.log_level.clone(),
    };
    if cli.command.runs_daemon() {
        // Before any thread or descriptor exists; logging is not set up yet, so only a
        // failure is reported (on stderr).
        if let Err(e) = raise_open_files_limit() {
            eprintln!("certsync: warning: cannot raise the open-files limit: {e}");
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("certsync: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let code = runtime.block_on(async {
        match cli.command {
            Command::Run => commands::run(&cli.config, &logging).await,
            Command::Once { dry_run } => commands::once(&cli.config, &logging, dry_run).await,
            Command::Check { online } => commands::check(&cli.config, &logging, online).await,
            Command::Inspect { json, paths } => commands::inspect(&paths, json),
            #[cfg(feature = "demo")]
            Command::Demo { dir } => certsync::demo::demo(&dir, &logging).await,
        }
    });
    // A pass may leave idle pooled connections; don't wait for them.
    runtime.shutdown_background();
    ExitCode::from(code)
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (SPEC 10: no HTTP client can starve the
/// sync of file descriptors). The default soft limit (often 1024) is a compatibility value for
/// `select(2)`, which certsync does not use; the hard limit is what the administrator allows.
/// With no hard limit the kernel's ceiling (`fs.nr_open`) is the most it accepts.
fn raise_open_files_limit() -> std::io::Result<()> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let target = match limit.maximum {
        Some(max) => max,
        None => match std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
        {
            Some(ceiling) => ceiling,
            None => return Ok(()),
        },
    };
    if limit.current.is_none_or(|current| current >= target) {
        return Ok(());
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(target),
            maximum: limit.maximum,
        },
    )?;
    Ok(())
}
