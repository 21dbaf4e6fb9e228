//! `certsync check [--online] [--json]`: the resolved plan, the files on disk and those this
//! config would no longer produce; online, the credentials proved with a real request, every
//! instance listed, downloaded and validated, and its endpoints probed (SPEC 13), writing
//! nothing. `--json` prints the same as one JSON object ([`Report`]): each step records its
//! result there as it prints its line.

use std::path::Path;
use std::sync::Arc;

mod fleet;
mod report;

use report::{
    AccountPlan, CertCheck, EndpointCheck, EntryCheck, FileNow, InstanceCheck, InstancePlan,
    Online, Problem, Report, Step,
};

use super::{EXIT_FAILED, EXIT_OK, Logging, Printer, load};
use crate::cloud::api::ApiError;
use crate::config::Config;
use crate::daemon;
use crate::source::{CloudSource, InstanceError, Source};
use crate::text::{Untrusted, error_chain};

/// `certsync check [--online] [--json]`.
pub async fn check(path: &Path, logging: &Logging, online: bool, json: bool) -> u8 {
    if json {
        return check_json(path, logging, online).await;
    }
    let config = match load(path, logging) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let mut out = Printer::stdout();
    let mut report = Report::default();
    outln!(out, "configuration {} is valid\n", path.display());
    outln!(out, "{}", config.describe());
    print_files_on_disk(&mut out, &config, &mut report);
    if !online {
        out.flush();
        return EXIT_OK;
    }
    outln!(out, "\nonline check:");
    let code = check_online(&mut out, &config, &mut report).await;
    out.flush();
    code
}

/// `check --json`: the text steps run with their output discarded, their results recorded,
/// then printed as one object. An invalid config is `valid: false` with its problems (exit 78).
async fn check_json(path: &Path, logging: &Logging, online: bool) -> u8 {
    let mut report = Report {
        config: path.display().to_string(),
        ..Report::default()
    };
    let mut out = Printer::stdout();
    let config = match crate::config::load(path) {
        Ok(c) => {
            super::init_logging(logging, Some(&c));
            c
        }
        Err(e) => {
            report.problems = e
                .problems
                .iter()
                .map(|p| Problem {
                    key: p.key.clone(),
                    message: p.message.clone(),
                })
                .collect();
            outln!(out, "{}", json_text(&report));
            out.flush();
            return super::EXIT_CONFIG;
        }
    };
    report.valid = true;
    report.accounts = config
        .accounts
        .iter()
        .map(|a| AccountPlan {
            name: a.name.clone(),
            endpoint: a.cloud.endpoint.to_string(),
            auth_method: a.auth.method(),
            max_requests_per_second: a.cloud.max_requests_per_second,
        })
        .collect();
    report.instances = config
        .instances
        .iter()
        .map(|i| InstancePlan {
            id: i.id.clone(),
            name: i.name.clone(),
            account: i.account.clone(),
            categories: i.categories.clone(),
            endpoints: i.endpoints.iter().map(ToString::to_string).collect(),
        })
        .collect();
    report.hooks = config.hooks.iter().map(|h| h.name.clone()).collect();
    report.trust_dir = config.trust.dir.display().to_string();
    report.warnings = config.warnings.iter().map(ToString::to_string).collect();
    let mut silent = Printer::discard();
    print_files_on_disk(&mut silent, &config, &mut report);
    let mut code = EXIT_OK;
    if online {
        code = check_online(&mut silent, &config, &mut report).await;
    }
    outln!(out, "{}", json_text(&report));
    out.flush();
    code
}

fn json_text(report: &Report) -> String {
    serde_json::to_string(report).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

/// `check --online`: proves the credentials with a real request, then runs each configured
/// instance's whole list, download and validation (the pass's own `sync_instance`, host
/// allowlist and every SPEC 6 rule included) and prints what it would write, writing nothing.
async fn check_online(out: &mut Printer, config: &Config, report: &mut Report) -> u8 {
    let online = report.online.insert(Online::default());
    let code = check_online_steps(out, config, online).await;
    online.ok = code == EXIT_OK;
    code
}

async fn check_online_steps(out: &mut Printer, config: &Config, report: &mut Online) -> u8 {
    let shared = Arc::new(crate::status::Shared::default());
    let config_arc = Arc::new(config.clone());
    // The fleet's etcd first (SPEC 14): a subscriber's source, a publisher's election.
    let fleet_code = match fleet::check(out, &config_arc, &shared, report).await {
        fleet::Checked::Subscriber {
            code,
            source,
            instances,
        } => {
            // A subscriber has no cloud credentials: what it would write is the set's.
            let outcomes = source.sync(instances, &shared).await;
            let verifying = config.verify.enabled != Some(false);
            let written = report_outcomes(
                out,
                config,
                outcomes,
                &std::collections::BTreeMap::new(),
                verifying,
                report,
            )
            .await;
            return code.max(written);
        }
        fleet::Checked::Done(code) => code,
    };
    let cloud = match CloudSource::new(&config_arc, &shared) {
        Ok(cloud) => cloud,
        Err(e) => {
            outln!(
                out,
                "  building the HTTP client failed: {}",
                Untrusted(&error_chain(&e))
            );
            report.accounts.push(Step {
                name: "http client".into(),
                ok: false,
                detail: error_chain(&e),
            });
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
        let (ok, detail) = match authenticated {
            Ok(project_id) => (
                true,
                format!("ok, project {project_id}: ListInstances accepted the credentials"),
            ),
            // 403 is the gateway's answer for credentials it authenticated but whose policy
            // does not allow ListInstances (a refused signature or token is 401): the
            // instances below then prove the credentials for the operation certsync needs.
            Err(ApiError::Status { fault, .. }) if fault.status == 403 => (
                true,
                format!(
                    "the credentials were accepted, but ListInstances is not allowed for them: {fault}"
                ),
            ),
            Err(e) => {
                refused = true;
                (false, format!("failed: {}", error_chain(&e)))
            }
        };
        outln!(out, "  authenticate ({who}): {}", Untrusted(&detail));
        report.accounts.push(Step {
            name: account.name.clone(),
            ok,
            detail,
        });
    }
    if refused {
        out.flush();
        return EXIT_FAILED;
    }
    out.flush();
    let mut code = fleet_code;
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
    if report_outcomes(out, config, outcomes, &nodes, verifying, report).await != EXIT_OK {
        code = EXIT_FAILED;
    }
    check_discovery(out, config, &cloud, report).await.max(code)
}

/// Prints (and records) what each instance would write, probing its endpoints when
/// `verifying` (its own, else `nodes`'); `EXIT_FAILED` when one failed.
async fn report_outcomes(
    out: &mut Printer,
    config: &Config,
    outcomes: crate::source::Outcomes,
    nodes: &std::collections::BTreeMap<String, Vec<crate::endpoint::Endpoint>>,
    verifying: bool,
    report: &mut Online,
) -> u8 {
    let mut code = EXIT_OK;
    for (inst, result) in outcomes {
        let name = Untrusted(inst.display_name());
        let mut checked = InstanceCheck {
            id: inst.id.clone(),
            name: inst.display_name().to_string(),
            ..InstanceCheck::default()
        };
        match result.map_err(|e| describe_instance_failure(&e)) {
            Ok(entries) => {
                outln!(out, "  instance {name}: ok");
                checked.ok = true;
                for entry in &entries {
                    let file = config.trust.dir.join(&entry.file_name);
                    outln!(
                        out,
                        "    {}: would write {}",
                        Untrusted(&entry.category),
                        file.display()
                    );
                    let mut certs = Vec::new();
                    for cert in &entry.certs {
                        outln!(
                            out,
                            "      sha256 {} notAfter {} subject {}",
                            cert.fingerprint(),
                            crate::cert::rfc3339(cert.not_after),
                            Untrusted(&cert.subject)
                        );
                        certs.push(CertCheck {
                            sha256: cert.fingerprint(),
                            not_after: crate::cert::rfc3339(cert.not_after),
                            subject: cert.subject.clone(),
                        });
                    }
                    checked.entries.push(EntryCheck {
                        category: entry.category.clone(),
                        file: file.display().to_string(),
                        certs,
                    });
                }
                if verifying {
                    let endpoints = if inst.endpoints.is_empty() {
                        nodes.get(&inst.id).cloned().unwrap_or_default()
                    } else {
                        inst.endpoints.clone()
                    };
                    if !probe_endpoints(out, config, &endpoints, &entries, &mut checked).await {
                        code = EXIT_FAILED;
                    }
                }
            }
            Err(failure) => {
                outln!(out, "  instance {name}: {}", Untrusted(&failure));
                checked.error = Some(failure);
                code = EXIT_FAILED;
            }
        }
        report.instances.push(checked);
        out.flush();
    }
    code
}

/// Runs each `[[discover]]` query once and says what it found.
async fn check_discovery(
    out: &mut Printer,
    config: &Config,
    cloud: &CloudSource,
    report: &mut Online,
) -> u8 {
    let mut code = EXIT_OK;
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
                let found_text = format!(
                    "ListInstances found {total} instance(s), {with_ssl} with SSL; {kept} would be synced"
                );
                outln!(out, "  discover[{index}]: {found_text}");
                // A listing cut short leaves instances out of every pass: a failure here, a
                // warning in the daemon.
                if let Some(cut) = &found.truncated {
                    outln!(
                        out,
                        "  discover[{index}]: failed: the listing is incomplete: {cut}"
                    );
                    code = EXIT_FAILED;
                }
                report.discover.push(Step {
                    name: format!("discover[{index}]"),
                    ok: found.truncated.is_none(),
                    detail: match &found.truncated {
                        Some(cut) => format!("the listing is incomplete: {cut}"),
                        None => found_text,
                    },
                });
            }
            Err(e) => {
                outln!(
                    out,
                    "  discover[{index}]: ListInstances failed: {}",
                    Untrusted(&error_chain(&e))
                );
                report.discover.push(Step {
                    name: format!("discover[{index}]"),
                    ok: false,
                    detail: format!("ListInstances failed: {}", error_chain(&e)),
                });
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
    checked: &mut InstanceCheck,
) -> bool {
    let anchors = crate::verify::anchors(entries.iter().flat_map(|e| e.certs.iter()));
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
        checked.endpoints.push(EndpointCheck {
            endpoint: endpoint.to_string(),
            verified: probed.outcome == crate::verify::Outcome::Verified,
            result: probed.outcome.reason(),
            detail: probed.outcome.to_string(),
            anchor: probed.anchor.clone(),
            leaf_not_after: probed.leaf_not_after.map(crate::cert::rfc3339),
        });
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
fn print_files_on_disk(out: &mut Printer, config: &Config, report: &mut Report) {
    let store = match crate::store::StoreView::open(daemon::store_options(config)) {
        Ok(store) => store,
        Err(e) => {
            report.folder_error = Some(error_chain(&e));
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
            report.no_longer_produced.push(FileNow {
                path: entry.path.display().to_string(),
                instance: entry.instance_id.clone(),
                category: entry.category.clone(),
                not_after: entry.not_after.map(crate::cert::rfc3339),
                days_left: None,
            });
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
        report.files.push(FileNow {
            path: entry.path.display().to_string(),
            instance: entry.instance_id.clone(),
            category: entry.category.clone(),
            not_after: entry.not_after.map(crate::cert::rfc3339),
            days_left: entry.not_after.map(|t| (t - now).whole_days()),
        });
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
