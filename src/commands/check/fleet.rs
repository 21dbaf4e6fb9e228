//! `check --online`'s fleet steps (SPEC 14): a publisher's etcd is reached and its leader
//! and published set are read; a subscriber's set is read, validated by every rule of
//! SPEC 6 as a pass would, and becomes the source of the instances shown.

use std::sync::Arc;

use super::report::{Online, Step};
use super::{EXIT_FAILED, EXIT_OK, Printer};
use crate::config::{Config, Instance};
use crate::source::Source;
#[cfg(feature = "etcd")]
use crate::text::{Untrusted, error_chain};

/// What the fleet steps leave for the rest of the check.
pub(super) enum Checked {
    /// A subscriber: its instances come from the set (`source`).
    #[cfg_attr(not(feature = "etcd"), expect(dead_code))]
    Subscriber {
        /// Whether the etcd steps failed.
        code: u8,
        /// The subscriber's own source.
        source: Source,
        /// Its instances: `[[instance]]`, else those the set holds.
        instances: Vec<Instance>,
    },
    /// No subscriber: the cloud steps follow.
    Done(u8),
}

/// Runs the fleet steps `config` asks for, recording each in `report.fleet`.
pub(super) async fn check(
    out: &mut Printer,
    config: &Arc<Config>,
    shared: &Arc<crate::status::Shared>,
    report: &mut Online,
) -> Checked {
    #[cfg(feature = "etcd")]
    {
        let mut code = EXIT_OK;
        if let Some(publish) = &config.publish {
            code = code.max(check_publisher(out, &publish.etcd, report).await);
        }
        if let Some(etcd) = &config.subscribe {
            return check_subscriber(out, config, etcd, shared, report, code).await;
        }
        Checked::Done(code)
    }
    #[cfg(not(feature = "etcd"))]
    {
        let _ = shared;
        if config.publish.is_none() && config.subscribe.is_none() {
            return Checked::Done(EXIT_OK);
        }
        let detail = "the fleet roles ([publish], [source] kind = \"etcd\") need a certsync built with the etcd feature (the Debian package and the image have it)".to_string();
        outln!(out, "  etcd: {detail}");
        report.fleet.push(Step {
            name: "etcd".into(),
            ok: false,
            detail,
        });
        Checked::Done(EXIT_FAILED)
    }
}

/// A publisher's etcd: reachable, who leads, what is published (a set it cannot continue
/// from is replaced by the next publication, so it is said, not failed).
#[cfg(feature = "etcd")]
async fn check_publisher(out: &mut Printer, etcd: &crate::config::Etcd, report: &mut Online) -> u8 {
    let endpoints = etcd.endpoint_strings().join(",");
    let (ok, detail) = match crate::fleet::etcd::peek(etcd).await {
        Ok(peek) => {
            let leader = match &peek.leader {
                Some(id) => format!("{id} leads"),
                None => "nobody leads (the first publisher to start takes the lead)".into(),
            };
            let set = match &peek.bundle {
                None => "nothing is published yet".to_string(),
                Some(value) => match read_set(value) {
                    Ok(set) => set,
                    Err(e) => format!(
                        "the published set is not valid ({e}): the leader's next pass replaces it"
                    ),
                },
            };
            (true, format!("reachable; {leader}; {set}"))
        }
        Err(e) => (false, format!("failed: {}", error_chain(&e))),
    };
    outln!(out, "  etcd (publish, {endpoints}): {}", Untrusted(&detail));
    report.fleet.push(Step {
        name: "publish".into(),
        ok,
        detail,
    });
    if ok { EXIT_OK } else { EXIT_FAILED }
}

/// A subscriber's set: read once, validated as a pass validates it, and its instances.
#[cfg(feature = "etcd")]
async fn check_subscriber(
    out: &mut Printer,
    config: &Arc<Config>,
    etcd: &crate::config::Etcd,
    shared: &Arc<crate::status::Shared>,
    report: &mut Online,
    code: u8,
) -> Checked {
    let endpoints = etcd.endpoint_strings().join(",");
    let source = crate::source::etcd::EtcdSource::new(config, etcd, shared);
    let mut changes = source.changes();
    let read = tokio::time::timeout(
        crate::daemon::SUBSCRIBER_FIRST_READ,
        changes.wait_for(|s| s.first_read_done()),
    )
    .await
    .is_ok();
    let (ok, detail) = if !read {
        (
            false,
            format!(
                "failed: no answer within {:?}",
                crate::daemon::SUBSCRIBER_FIRST_READ
            ),
        )
    } else {
        match source.problem() {
            Some(problem) => (false, format!("failed: {problem}")),
            None => {
                let sub = changes.borrow().clone();
                let set = sub
                    .value
                    .as_deref()
                    .map(read_set)
                    .transpose()
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                (true, format!("reachable; {set}"))
            }
        }
    };
    outln!(out, "  etcd (source, {endpoints}): {}", Untrusted(&detail));
    report.fleet.push(Step {
        name: "source".into(),
        ok,
        detail,
    });
    let source = Source::Etcd(Box::new(source));
    let instances = if !ok {
        Vec::new()
    } else if config.instances.is_empty() {
        match source.discover(&config.discover).await {
            Ok(listings) => {
                let round = crate::plan::fold_discovery(&crate::plan::Discovered::new(), &listings);
                crate::plan::instances(&[], &round.discovered)
            }
            Err(_) => Vec::new(),
        }
    } else {
        config.instances.clone()
    };
    Checked::Subscriber {
        code: if ok { code } else { EXIT_FAILED },
        source,
        instances,
    }
}

/// "generation N by P: M instance(s), K CA(s)" for a value that reads as a set (every rule of
/// SPEC 6 applied), else why not.
#[cfg(feature = "etcd")]
fn read_set(value: &(Vec<u8>, i64)) -> Result<String, String> {
    let verified = crate::validate::VerifiedSignatures::default();
    let set = crate::fleet::etcd::validate(value, 0, &|_| Vec::new(), &verified)
        .map_err(|e| e.to_string())?;
    Ok(format!(
        "generation {} published by {}: {} instance(s), {} CA(s)",
        set.generation,
        Untrusted(&set.bundle.publisher),
        set.instances.len(),
        set.bundle.cas.len()
    ))
}
