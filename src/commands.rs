//! The commands of SPEC 2, as the binary runs them: each loads what it needs, prints its
//! output on stdout (logs go to stderr) and returns the exit status.
//!
//! Owns: logging set-up, signal handling for `run` (and `demo`, in [`crate::demo`]), and output
//! formats. The work itself is done by `daemon`, `config` and `inspect`.
//!
//! Output never panics: stdout goes through [`Printer`], which stops quietly once the reader
//! has gone (`certsync check | head -1`, SPEC 2), and text from outside (API messages,
//! categories, subjects) is printed through [`crate::text`]'s escaping, as are the text logs.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use tracing_subscriber::EnvFilter;

use crate::config::{self, Config, LogFormat};
use crate::daemon::{self, Controls, LineStatus, SummaryLine};
use crate::text::{EscapingWriter, Untrusted};

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
        LogFormat::Text => builder.fmt_fields(escaping_fields()).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
}

/// The text format's field formatter: like the default (`name=value`, the message without
/// its name, fields separated by a space, on a terminal the name italic and `=` dim), but
/// every value and the message written through [`EscapingWriter`], so a subject with a
/// newline or ESC can neither forge a log line nor drive the terminal (SPEC 2). The rest of
/// the formatter's colours (timestamp, level, span names) are written by the event formatter,
/// outside the fields, so they stay. JSON logs escape by themselves.
fn escaping_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static {
    use tracing_subscriber::field::MakeExt;
    // The default formatter's styles for a field name and its `=`, as SGR sequences written
    // directly (nu-ansi-term, which tracing-subscriber uses, is not a dependency of ours).
    const ITALIC: &str = "\x1b[3m";
    const DIM: &str = "\x1b[2m";
    const RESET: &str = "\x1b[0m";
    tracing_subscriber::fmt::format::debug_fn(|writer, field, value| {
        if field.name() == "message" {
            return write_log_value(&mut EscapingWriter(writer), value);
        }
        // Field names come from our code (never from outside); raw identifiers
        // (`r#type = ...`) print without their prefix, as by default.
        let name = field.name();
        let name = name.strip_prefix("r#").unwrap_or(name);
        if writer.has_ansi_escapes() {
            write!(writer, "{ITALIC}{name}{RESET}{DIM}={RESET}")?;
        } else {
            write!(writer, "{name}=")?;
        }
        write_log_value(&mut EscapingWriter(writer), value)
    })
    .delimited(" ")
}

fn write_log_value(out: &mut impl fmt::Write, value: &dyn fmt::Debug) -> fmt::Result {
    // `Debug` of a `%display` field or of the message is the plain text; of a `str` field, the
    // quoted and already escaped string. Escaping either again changes nothing that is safe.
    write!(out, "{value:?}")
}

/// A command's standard output. Once a write fails (the reader of a pipe is gone: EPIPE),
/// everything after is dropped quietly; the command goes on and its exit status is what it
/// would have been. Another write error (a full disk behind a redirect) is said once on stderr.
pub struct Printer {
    out: std::io::Stdout,
    closed: bool,
}

impl Printer {
    /// Printing to this process's stdout.
    pub fn stdout() -> Printer {
        Printer {
            out: std::io::stdout(),
            closed: false,
        }
    }

    /// Writes `args` (use [`outln!`]); nothing once stdout is closed.
    pub fn print(&mut self, args: fmt::Arguments<'_>) {
        if self.closed {
            return;
        }
        let result = self.out.write_fmt(args);
        self.check(result);
    }

    /// Pushes out what is buffered (before waiting on something slow).
    pub fn flush(&mut self) {
        if !self.closed {
            let result = self.out.flush();
            self.check(result);
        }
    }

    /// Whether output stopped because stdout is gone.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    fn check(&mut self, result: std::io::Result<()>) {
        if let Err(e) = result {
            self.closed = true;
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                errln(format_args!("certsync: cannot write to stdout: {e}"));
            }
        }
    }
}

/// `writeln!` for a [`Printer`].
macro_rules! outln {
    ($p:expr) => {
        $p.print(format_args!("\n"))
    };
    ($p:expr, $($arg:tt)*) => {
        $p.print(format_args!("{}\n", format_args!($($arg)*)))
    };
}
#[cfg(feature = "demo")]
pub(crate) use outln;

/// A line on stderr that never panics (stderr may be a closed pipe too).
pub(crate) fn errln(args: fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr(), "{args}");
}

mod check;
mod status;
pub use check::check;
pub use status::status;

fn load(path: &Path, logging: &Logging) -> Result<Config, u8> {
    match config::load(path) {
        Ok(config) => {
            init_logging(logging, Some(&config));
            Ok(config)
        }
        Err(err) => {
            errln(format_args!("certsync: {err}"));
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
        errln(format_args!(
            "certsync: cannot install signal handlers: {e}"
        ));
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
            errln(format_args!("certsync: {}", Untrusted(&error_chain(&e))));
            EXIT_FAILED
        }
    }
}

pub(crate) fn spawn_signal_handlers(controls: &Controls) -> std::io::Result<()> {
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

/// `certsync once [--dry-run] [--json]`.
pub async fn once(path: &Path, logging: &Logging, dry_run: bool, json: bool) -> u8 {
    let config = match load(path, logging) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let summary = match daemon::once(config, dry_run).await {
        Ok(s) => s,
        Err(e) => {
            errln(format_args!("certsync: {}", Untrusted(&error_chain(&e))));
            return EXIT_FAILED;
        }
    };
    let mut out = Printer::stdout();
    if json {
        for line in &summary.lines {
            outln!(out, "{}", json_line(line, summary.dry_run));
        }
        for err in &summary.store_errors {
            outln!(out, "{}", serde_json::json!({"trust_folder_error": err}));
        }
        for hook in &summary.failed_hooks {
            outln!(
                out,
                "{}",
                serde_json::json!({"hook": hook, "status": "failed"})
            );
        }
        out.flush();
        return if summary.ok() { EXIT_OK } else { EXIT_FAILED };
    }
    for line in &summary.lines {
        outln!(out, "{}", render_line(line, summary.dry_run));
    }
    if dry_run {
        outln!(
            out,
            "dry run: {} file(s) would change; nothing was written and no hook ran",
            summary.changed_files.len()
        );
        for file in &summary.changed_files {
            outln!(out, "  would write {}", file.display());
        }
    }
    for err in &summary.store_errors {
        outln!(out, "trust folder: failed: {}", Untrusted(err));
    }
    for hook in &summary.failed_hooks {
        outln!(out, "hook {hook}: failed");
    }
    out.flush();
    if summary.ok() { EXIT_OK } else { EXIT_FAILED }
}

/// `once --json`'s object for one instance file: `instance`, `category`, `file` (null when
/// none exists yet), `status` (`unchanged`, `updated`, `removed`, `failed`, or with
/// `--dry-run` `would_update`, `would_remove`), `error` (with `failed`), `not_after`
/// (RFC 3339 or null). Strings are JSON-escaped, so text from outside cannot break the line.
pub fn json_line(line: &SummaryLine, dry_run: bool) -> String {
    let (status, error) = match (&line.status, dry_run) {
        (LineStatus::Unchanged, _) => ("unchanged", None),
        (LineStatus::Updated, false) => ("updated", None),
        (LineStatus::Updated, true) => ("would_update", None),
        (LineStatus::Removed, false) => ("removed", None),
        (LineStatus::Removed, true) => ("would_remove", None),
        (LineStatus::Failed(reason), _) => ("failed", Some(reason.as_str())),
    };
    serde_json::json!({
        "instance": line.instance,
        "category": line.category,
        "file": line.file.as_ref().map(|p| p.display().to_string()),
        "status": status,
        "error": error,
        "not_after": line.not_after.map(crate::cert::rfc3339),
    })
    .to_string()
}

/// The line `once` prints for one instance file: `instance/category file status notAfter=...`,
/// with every piece of outside text (categories, API messages, subjects in errors) escaped.
/// `dry_run` words what would change as such.
pub fn render_line(line: &SummaryLine, dry_run: bool) -> String {
    let status = match (&line.status, dry_run) {
        (LineStatus::Unchanged, _) => "unchanged".to_string(),
        (LineStatus::Updated, false) => "updated".to_string(),
        (LineStatus::Updated, true) => "would update".to_string(),
        (LineStatus::Removed, false) => "removed".to_string(),
        (LineStatus::Removed, true) => "would remove".to_string(),
        (LineStatus::Failed(reason), _) => format!("failed: {}", Untrusted(reason)),
    };
    let not_after = match line.not_after {
        Some(t) => format!(" notAfter={}", crate::cert::rfc3339(t)),
        None => String::new(),
    };
    let file = line.file.as_ref().map(|p| p.display().to_string());
    match (&line.category, file) {
        (Some(category), Some(file)) => format!(
            "{}/{} {} {status}{not_after}",
            line.instance,
            Untrusted(category),
            Untrusted(&file)
        ),
        (None, Some(file)) => format!("{} {status}{not_after}", Untrusted(&file)),
        // No file of it exists yet: say so rather than print placeholders.
        (_, None) => format!("{} (no file written yet) {status}", line.instance),
    }
}

/// `certsync inspect [--json] PATH...`.
pub fn inspect(paths: &[PathBuf], json: bool) -> u8 {
    let (reports, errors) = crate::inspect::inspect(paths);
    let mut out = Printer::stdout();
    if json {
        match serde_json::to_string_pretty(&reports) {
            Ok(text) => outln!(out, "{text}"),
            Err(e) => {
                errln(format_args!("certsync: {e}"));
                return EXIT_FAILED;
            }
        }
    } else {
        out.print(format_args!(
            "{}",
            crate::inspect::render_text(&reports, time::OffsetDateTime::now_utc())
        ));
    }
    out.flush();
    for err in &errors {
        errln(format_args!("certsync: {}", Untrusted(&err.to_string())));
    }
    if errors.is_empty() {
        EXIT_OK
    } else {
        EXIT_FAILED
    }
}

pub use crate::text::error_chain;
