//! The command line's definition (SPEC 2), in the library so that the packaging tools can
//! generate the man page and shell completions from it (`certsync-gen-docs`); the binary
//! parses it and maps each command to [`crate::commands`].

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::LogFormat;

/// Keeps the CA certificates of Huawei Cloud GaussDB NoSQL instances current in a trust folder.
#[derive(Parser, Debug)]
#[command(name = "certsync", version, about)]
pub struct Cli {
    /// The configuration file.
    #[arg(
        long,
        global = true,
        env = "CERTSYNC_CONFIG",
        default_value = "/etc/certsync/certsync.toml"
    )]
    pub config: PathBuf,
    /// Log format (default: the config's [log] format, else text).
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<CliLogFormat>,
    /// Log level, e.g. info or debug (RUST_LOG wins when set).
    #[arg(long, global = true)]
    pub log_level: Option<String>,
    // (No doc comment: clap would print it as the commands' heading.)
    #[allow(missing_docs)]
    #[command(subcommand)]
    pub command: Command,
}

/// `--log-format`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum CliLogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl From<CliLogFormat> for LogFormat {
    fn from(f: CliLogFormat) -> LogFormat {
        match f {
            CliLogFormat::Text => LogFormat::Text,
            CliLogFormat::Json => LogFormat::Json,
        }
    }
}

/// The commands (SPEC 2).
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon: passes on schedule until SIGTERM/SIGINT.
    Run,
    /// One pass, then exit: one line per instance and category.
    Once {
        /// Do everything except writing files and running hooks; print what would change.
        #[arg(long)]
        dry_run: bool,
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Ask the running daemon (its server.listen) for its status and print it as a table.
    Status {
        /// The daemon's /status document (JSON) instead of the table.
        #[arg(long)]
        json: bool,
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
    pub fn runs_daemon(&self) -> bool {
        match self {
            Command::Run => true,
            #[cfg(feature = "demo")]
            Command::Demo { .. } => true,
            Command::Once { .. }
            | Command::Status { .. }
            | Command::Check { .. }
            | Command::Inspect { .. } => false,
        }
    }
}
