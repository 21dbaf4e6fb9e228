//! The `certsync` binary: parses the command line, sets up logging and signals, raises the
//! open-files limit for the daemon, calls into the library and maps outcomes to exit statuses
//! (SPEC 2). Nothing else lives here.
#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::Parser;

use certsync::cli::{Cli, Command};
use certsync::commands::{self, EXIT_FAILED};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = cli.log_format.map(Into::into);
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
            Command::Once { dry_run, json } => {
                commands::once(&cli.config, &logging, dry_run, json).await
            }
            Command::Status { json } => commands::status(&cli.config, &logging, json).await,
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
