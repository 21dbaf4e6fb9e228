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
use std::sync::Arc;

use tracing_subscriber::EnvFilter;

use crate::cloud::api::ApiError;
use crate::config::{self, Config, LogFormat};
use crate::daemon::{self, Controls, LineStatus, SummaryLine};
use crate::source::{CloudSource, InstanceError, Source};
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

/// `certsync once [--dry-run]`.
pub async fn once(path: &Path, logging: &Logging, dry_run: bool) -> u8 {
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

/// `certsync check [--online]`.
pub async fn check(path: &Path, logging: &Logging, online: bool) -> u8 {
    let config = match load(path, logging) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut out = Printer::stdout();
    outln!(out, "configuration {} is valid\n", path.display());
    outln!(out, "{}", config.describe());
    print_files_on_disk(&mut out, &config);
    if !online {
        out.flush();
        return EXIT_OK;
    }
    outln!(out, "\nonline check:");
    let code = check_online(&mut out, &config).await;
    out.flush();
    code
}

/// `check --online`: proves the credentials with a real request, then runs each configured
/// instance's whole list, download and validation (the pass's own `sync_instance`, host
/// allowlist and every SPEC 6 rule included) and prints what it would write, writing nothing.
async fn check_online(out: &mut Printer, config: &Config) -> u8 {
    let shared = Arc::new(crate::status::Shared::default());
    let config_arc = Arc::new(config.clone());
    let cloud = match CloudSource::new(&config_arc, &shared) {
        Ok(cloud) => cloud,
        Err(e) => {
            outln!(
                out,
                "  building the HTTP client failed: {}",
                Untrusted(&error_chain(&e))
            );
            return EXIT_FAILED;
        }
    };
    // Authentication first, account by account, so a failure says which step failed: this
    // one, or an instance. Reading a token file or an AK/SK proves nothing by itself (with
    // `project_id` set no request is made), so a real API request must accept the
    // credentials.
    let mut refused = false;
    for account in &config.accounts {
        let Some(api) = cloud.api(&account.name) else {
            continue;
        };
        let method = api.credentials().method();
        let who = if config.accounts.len() == 1 {
            format!("auth method {method}")
        } else {
            format!("account {}, auth method {method}", account.name)
        };
        let authenticated = match api.credentials().authenticate().await {
            Ok(project_id) => api.probe_credentials().await.map(|()| project_id),
            Err(e) => Err(ApiError::Auth(e)),
        };
        match authenticated {
            Ok(project_id) => outln!(
                out,
                "  authenticate ({who}): ok, project {project_id}: ListInstances accepted the credentials"
            ),
            // 403 is the gateway's answer for credentials it authenticated but whose policy
            // does not allow ListInstances (a refused signature or token is 401): the
            // instances below then prove the credentials for the operation certsync needs.
            Err(ApiError::Status { fault, .. }) if fault.status == 403 => outln!(
                out,
                "  authenticate ({who}): the credentials were accepted, but ListInstances is not allowed for them: {}",
                Untrusted(&fault.to_string())
            ),
            Err(e) => {
                outln!(
                    out,
                    "  authenticate ({who}): failed: {}",
                    Untrusted(&error_chain(&e))
                );
                refused = true;
            }
        }
    }
    if refused {
        out.flush();
        return EXIT_FAILED;
    }
    out.flush();
    let mut code = EXIT_OK;
    // The pass's own source: at most `sync.concurrency` at a time, each under its deadline.
    let source = Source::Cloud(cloud.clone());
    let outcomes = source.sync(config.instances.clone(), &shared).await;
    // The endpoints to probe (SPEC 13): each instance's own, else ListInstances' nodes.
    let verifying = config.verify.enabled != Some(false);
    let mut nodes = std::collections::BTreeMap::new();
    if verifying {
        let accounts: std::collections::BTreeSet<String> = config
            .instances
            .iter()
            .filter(|i| i.endpoints.is_empty())
            .map(|i| i.account.clone())
            .collect();
        if !accounts.is_empty() {
            let accounts: Vec<String> = accounts.into_iter().collect();
            match source.node_addresses(&accounts).await {
                Ok(found) => nodes = found,
                Err(e) => outln!(
                    out,
                    "  node addresses (ListInstances, account {}): failed: {}",
                    e.account,
                    Untrusted(&error_chain(&e.source))
                ),
            }
        }
    }
    for (inst, result) in outcomes {
        let name = Untrusted(inst.display_name());
        match result.map_err(|e| describe_instance_failure(&e)) {
            Ok(entries) => {
                outln!(out, "  instance {name}: ok");
                for entry in &entries {
                    outln!(
                        out,
                        "    {}: would write {}",
                        Untrusted(&entry.category),
                        config.trust.dir.join(&entry.file_name).display()
                    );
                    for cert in &entry.certs {
                        outln!(
                            out,
                            "      sha256 {} notAfter {} subject {}",
                            cert.fingerprint(),
                            crate::cert::rfc3339(cert.not_after),
                            Untrusted(&cert.subject)
                        );
                    }
                }
                if verifying {
                    let endpoints = if inst.endpoints.is_empty() {
                        nodes.get(&inst.id).cloned().unwrap_or_default()
                    } else {
                        inst.endpoints.clone()
                    };
                    if !probe_endpoints(out, config, &endpoints, &entries).await {
                        code = EXIT_FAILED;
                    }
                }
            }
            Err(failure) => {
                outln!(out, "  instance {name}: {}", Untrusted(&failure));
                code = EXIT_FAILED;
            }
        }
        out.flush();
    }
    for (index, query) in config.discover.iter().enumerate() {
        let Some(api) = cloud.api(&query.account) else {
            continue;
        };
        match api
            .list_instances(query.datastore.as_deref(), query.name.as_deref())
            .await
        {
            Ok(found) => {
                let total = found.instances.len();
                let with_ssl = found.instances.iter().filter(|i| i.ssl).count();
                let kept = if query.ssl_only { with_ssl } else { total };
                outln!(
                    out,
                    "  discover[{index}]: ListInstances found {total} instance(s), {with_ssl} with SSL; {kept} would be synced"
                );
                // A listing cut short leaves instances out of every pass: a failure here, a
                // warning in the daemon.
                if let Some(cut) = found.truncated {
                    outln!(
                        out,
                        "  discover[{index}]: failed: the listing is incomplete: {cut}"
                    );
                    code = EXIT_FAILED;
                }
            }
            Err(e) => {
                outln!(
                    out,
                    "  discover[{index}]: ListInstances failed: {}",
                    Untrusted(&error_chain(&e))
                );
                code = EXIT_FAILED;
            }
        }
    }
    code
}

/// Probes `endpoints` against the CAs just downloaded (what this configuration would write)
/// and prints each result. False when one fails verification and `verify.required` is set.
async fn probe_endpoints(
    out: &mut Printer,
    config: &Config,
    endpoints: &[crate::endpoint::Endpoint],
    entries: &[crate::store::DesiredEntry],
) -> bool {
    let mut anchors: Vec<crate::verify::Anchor> = Vec::new();
    for cert in entries.iter().flat_map(|e| e.certs.iter()) {
        let sha256 = cert.fingerprint();
        if !anchors.iter().any(|a| a.sha256 == sha256) {
            anchors.push(crate::verify::Anchor {
                der: rustls_pki_types::CertificateDer::from(cert.der.clone()),
                sha256,
            });
        }
    }
    let mut ok = true;
    for endpoint in endpoints {
        let probed = crate::verify::probe(
            endpoint,
            &anchors,
            config.verify.timeout,
            config.verify.check_hostname,
        )
        .await;
        let leaf = probed
            .leaf_not_after
            .map(|t| format!(", leaf notAfter {}", crate::cert::rfc3339(t)))
            .unwrap_or_default();
        match (&probed.outcome, &probed.anchor) {
            (crate::verify::Outcome::Verified, Some(anchor)) => outln!(
                out,
                "    endpoint {endpoint}: verified (anchors at sha256 {anchor}{leaf})"
            ),
            (outcome, _) => {
                outln!(
                    out,
                    "    endpoint {endpoint}: not verified ({}): {}{leaf}",
                    outcome.reason(),
                    Untrusted(&outcome.to_string())
                );
                ok &= !config.verify.required;
            }
        }
    }
    ok
}

/// An instance's failure for `check --online`, naming the step (the line already names the
/// instance).
fn describe_instance_failure(err: &InstanceError) -> String {
    match err {
        InstanceError::Api { source, .. } => format!("list failed: {}", error_chain(source)),
        InstanceError::Fetch {
            category, source, ..
        } => format!(
            "category {category}: download failed: {}",
            error_chain(source)
        ),
        InstanceError::Invalid {
            category,
            url,
            source,
            ..
        } => format!(
            "category {category}: {url}: rejected ({}): {}",
            source.rule(),
            error_chain(source)
        ),
        other => format!("failed: {}", error_chain(other)),
    }
}

/// What the trust folder holds now, with days left (read-only: nothing is created or locked).
fn print_files_on_disk(out: &mut Printer, config: &Config) {
    let store = match crate::store::StoreView::open(daemon::store_options(config)) {
        Ok(store) => store,
        Err(e) => {
            outln!(
                out,
                "\ntrust folder: cannot read it: {}",
                Untrusted(&error_chain(&e))
            );
            return;
        }
    };
    let current = store.current();
    if current.is_empty() {
        outln!(out, "\ntrust folder: no CA written yet");
        return;
    }
    let orphans = daemon::no_longer_produced(config, &store);
    if orphans.is_empty() {
        outln!(
            out,
            "\ntrust folder: this configuration still produces every managed file"
        );
    } else {
        let when = if config.trust.prune {
            format!(
                "removed after {} passes without them (trust.prune)",
                crate::store::UNPRODUCED_PASSES
            )
        } else {
            "kept: trust.prune is off".to_string()
        };
        outln!(
            out,
            "\ntrust folder: this configuration would no longer produce {} managed file(s), {when}:",
            orphans.len()
        );
        for entry in &orphans {
            outln!(
                out,
                "  {} (instance {}, category {})",
                entry.path.display(),
                Untrusted(&entry.instance_id),
                Untrusted(&entry.category)
            );
        }
    }
    let now = time::OffsetDateTime::now_utc();
    let warning =
        time::Duration::try_from(config.sync.expiry_warning).unwrap_or(time::Duration::MAX);
    outln!(out, "\ntrust folder now:");
    for entry in current {
        let (not_after, left) = match entry.not_after {
            Some(t) => {
                let left = t - now;
                let days = left.whole_days();
                let flag = if left <= warning {
                    " (inside expiry_warning)"
                } else {
                    ""
                };
                (crate::cert::rfc3339(t), format!("{days} days left{flag}"))
            }
            None => ("-".into(), "-".into()),
        };
        outln!(
            out,
            "  {} ({}/{}): notAfter {not_after}, {left}",
            entry.path.display(),
            Untrusted(&entry.instance_id),
            Untrusted(&entry.category)
        );
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
