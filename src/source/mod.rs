//! The source seam: where a pass gets its validated CAs. The cloud today ([`cloud`]: the
//! download-link API, the downloads and validation); a fleet subscription next, as a variant
//! of [`Source`] in a module of its own.
//!
//! Owns: the per-instance outcome type ([`InstanceError`] names the instance, category and URL
//! without its query), running the instances of a pass `concurrency` at a time under a
//! deadline each (a slow or panicking instance fails alone), and discovery of instances where
//! the source can list them. It must not write anything: the sinks do, and it never sees them.

pub mod cloud;
#[cfg(feature = "etcd")]
pub mod etcd;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tracing::Instrument;

use crate::cloud::api::ApiError;
use crate::cloud::http::RedactedUrl;
use crate::config::{Config, Discover, Instance};
use crate::fetch::FetchError;
use crate::plan::Listing;
use crate::status::Shared;
use crate::store::DesiredEntry;
use crate::validate::ValidationError;

pub use cloud::CloudSource;

/// One instance's validated certificates, one entry per category, ready for the sinks.
pub type Synced = Vec<DesiredEntry>;

/// What a source answered for each instance of a pass, in plan order.
pub type Outcomes = Vec<(Instance, Result<Synced, InstanceError>)>;

/// Where the CAs come from.
pub enum Source {
    /// Huawei Cloud's API, with the account's credentials.
    Cloud(CloudSource),
    /// A fleet's set at `{prefix}/bundle` in etcd (a subscriber, SPEC 14).
    #[cfg(feature = "etcd")]
    Etcd(Box<etcd::EtcdSource>),
}

/// The source could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A bad `cloud.ca_file`, no roots.
    #[error("cloud: {0}")]
    Cloud(#[from] crate::cloud::http::ClientError),
    /// The config asks for a role this build does not have.
    #[error("{0}")]
    Unsupported(String),
}

/// A discovery query that failed: the previous result stays.
#[derive(Debug, thiserror::Error)]
#[error("discover[{query}]{}: {source}", of_account(.account))]
pub struct DiscoveryError {
    /// Index of the query.
    pub query: usize,
    /// The query's account.
    pub account: String,
    /// Why.
    #[source]
    pub source: DiscoveryFailure,
}

/// Why a discovery query failed.
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryFailure {
    /// ListInstances failed.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// A bug: the query's account has no clients.
    #[error("internal error: {0}")]
    Internal(String),
    /// A fleet subscriber's set is missing or refused.
    #[error("{0}")]
    Source(String),
}

/// ` (account NAME)` for an account other than `default` (messages of a one-account
/// configuration stay as they were), else nothing.
fn of_account(account: &str) -> String {
    if account == crate::config::DEFAULT_ACCOUNT {
        String::new()
    } else {
        format!(" (account {account})")
    }
}

impl Source {
    /// The source the config names (the cloud, or a fleet's set for a subscriber),
    /// counting its requests in `shared`.
    pub fn from_config(config: &Arc<Config>, shared: &Arc<Shared>) -> Result<Source, SourceError> {
        match &config.subscribe {
            None => Ok(Source::Cloud(CloudSource::new(config, shared)?)),
            #[cfg(feature = "etcd")]
            Some(etcd) => Ok(Source::Etcd(Box::new(etcd::EtcdSource::new(
                config, etcd, shared,
            )))),
            #[cfg(not(feature = "etcd"))]
            Some(_) => Err(SourceError::Unsupported(
                "[source] kind = \"etcd\" needs a certsync built with the etcd feature (the Debian package and the image have it)".into(),
            )),
        }
    }

    /// Runs every `[[discover]]` query (a subscriber: the set's instances). The first failure
    /// ends the round (an outage of ListInstances must not look like every instance
    /// vanishing).
    pub async fn discover(&self, queries: &[Discover]) -> Result<Vec<Listing>, DiscoveryError> {
        match self {
            Source::Cloud(cloud) => cloud.discover(queries).await,
            #[cfg(feature = "etcd")]
            Source::Etcd(etcd) => etcd.discover(),
        }
    }

    /// After a reload: takes over what the source before it learnt that must outlive it (a
    /// subscription's applied generation).
    pub fn inherit(&self, old: &Source) {
        #[cfg(feature = "etcd")]
        if let (Source::Etcd(new), Source::Etcd(old)) = (self, old) {
            new.inherit(old);
        }
        #[cfg(not(feature = "etcd"))]
        let _ = old;
    }

    /// Whether instances come from the source itself (a subscriber's set) rather than only
    /// from `[[discover]]` queries.
    pub fn lists_instances(&self) -> bool {
        match self {
            Source::Cloud(_) => false,
            #[cfg(feature = "etcd")]
            Source::Etcd(_) => true,
        }
    }

    /// Why the source cannot be used now (a subscriber's etcd is down, its set refused), for
    /// `/readyz` and `/status`.
    pub fn problem(&self) -> Option<String> {
        match self {
            Source::Cloud(_) => None,
            #[cfg(feature = "etcd")]
            Source::Etcd(etcd) => etcd.problem(),
        }
    }

    /// The node addresses ListInstances reports for every instance of `accounts`, by id
    /// (SPEC 13: the endpoints of instances without `endpoints` of their own).
    pub async fn node_addresses(
        &self,
        accounts: &[String],
    ) -> Result<std::collections::BTreeMap<String, Vec<crate::endpoint::Endpoint>>, DiscoveryError>
    {
        match self {
            Source::Cloud(cloud) => cloud.node_addresses(accounts).await,
            #[cfg(feature = "etcd")]
            Source::Etcd(_) => Ok(std::collections::BTreeMap::new()),
        }
    }

    /// Syncs `instances`: at most `concurrency` at a time, each under `deadline`. One
    /// instance's failure, slowness or panic does not affect the others' results. Results
    /// in input order; `progress` is touched as each instance ends.
    pub async fn sync(&self, instances: Vec<Instance>, progress: &Shared) -> Outcomes {
        match self {
            Source::Cloud(cloud) => {
                let deadline = cloud.deadline();
                let limit = cloud.concurrency();
                run_bounded(instances, limit, deadline, progress, |inst| {
                    let cloud = cloud.clone();
                    async move { cloud.sync_instance(&inst).await }
                })
                .await
            }
            #[cfg(feature = "etcd")]
            Source::Etcd(etcd) => etcd.sync(instances),
        }
    }
}

/// The file name of `inst`'s `category`: a category only the source names is untrusted input
/// that goes into a file name, the hooks' one-path-per-line environment and the logs, so it
/// is held to the config's alphabet.
// Boxed would be no smaller: one error per instance that fails.
#[allow(clippy::result_large_err)]
fn file_name_of(config: &Config, inst: &Instance, category: &str) -> Result<String, InstanceError> {
    let file_name = config.trust.file_name_for(inst, category);
    let problem = if !crate::names::is_name(category) {
        Some("uses characters outside [A-Za-z0-9._-] (or is longer than 64)".to_string())
    } else {
        config.trust.file_name_problem(&file_name)
    };
    match problem {
        None => Ok(file_name),
        Some(problem) => Err(InstanceError::BadCategory {
            instance: inst.display_name().to_string(),
            category: category.to_string(),
            file_name,
            problem,
        }),
    }
}

/// Runs `work` for every instance, `limit` at a time, each under `deadline`.
async fn run_bounded<F, Fut>(
    instances: Vec<Instance>,
    limit: usize,
    deadline: Duration,
    progress: &Shared,
    work: F,
) -> Outcomes
where
    F: Fn(Instance) -> Fut,
    Fut: Future<Output = Result<Synced, InstanceError>> + Send + 'static,
{
    // At most `limit` tasks exist at once: a task's future is allocated whole when it is
    // spawned, so spawning every instance up front would cost memory per instance.
    let limit = limit.max(1);
    let total = instances.len();
    let mut pending = instances.into_iter().enumerate();
    let mut tasks = JoinSet::new();
    // What a task was for, so a task that panicked still fails its own instance.
    let mut running: HashMap<tokio::task::Id, (usize, Instance)> = HashMap::new();
    let mut out = Vec::with_capacity(total);
    loop {
        while tasks.len() < limit {
            let Some((index, inst)) = pending.next() else {
                break;
            };
            let name = inst.display_name().to_string();
            let span = tracing::info_span!("instance", instance = name.as_str());
            let future = work(inst.clone());
            let handle = tasks.spawn(
                async move {
                    match tokio::time::timeout(deadline, future).await {
                        Ok(result) => result,
                        Err(_) => Err(InstanceError::Deadline {
                            instance: name,
                            after: deadline,
                        }),
                    }
                }
                .instrument(span),
            );
            running.insert(handle.id(), (index, inst));
        }
        let Some(joined) = tasks.join_next_with_id().await else {
            break;
        };
        let (id, result) = match joined {
            Ok((id, result)) => (id, result),
            Err(e) => {
                let id = e.id();
                let name = running
                    .get(&id)
                    .map(|(_, i)| i.display_name().to_string())
                    .unwrap_or_default();
                let detail = if e.is_panic() {
                    panic_text(&*e.into_panic())
                } else {
                    e.to_string()
                };
                tracing::error!(instance = name.as_str(), detail = %detail, "internal error while syncing an instance; the others go on");
                (
                    id,
                    Err(InstanceError::Internal {
                        instance: name,
                        detail,
                    }),
                )
            }
        };
        if let Some((index, inst)) = running.remove(&id) {
            out.push((index, inst, result));
        }
        progress.touch();
    }
    // Plan order, so logs, summaries and sink input are stable.
    out.sort_by_key(|(index, _, _)| *index);
    out.into_iter().map(|(_, inst, r)| (inst, r)).collect()
}

/// What a panic carried, as text (its `&str` or `String` payload).
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Why one instance failed in a pass. Names the instance, the category and the URL without
/// its query where they are known.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    /// Listing its certificates failed.
    #[error("instance {instance}{}: {source}", of_account(.account))]
    Api {
        /// Display name.
        instance: String,
        /// Its account.
        account: String,
        /// The API failure.
        #[source]
        source: ApiError,
    },
    /// The API listed nothing this instance wants.
    #[error("instance {instance}: the API listed no certificate{}", wanted_text(.listed))]
    NoCertificates {
        /// Display name.
        instance: String,
        /// Categories the API did list.
        listed: Vec<String>,
    },
    /// A download failed.
    #[error("instance {instance}: category {category}: download {source}")]
    Fetch {
        /// Display name.
        instance: String,
        /// The category.
        category: String,
        /// The failure.
        #[source]
        source: FetchError,
    },
    /// A download was rejected by validation.
    #[error("instance {instance}: category {category}: {url}: rejected ({}): {source}", .source.rule())]
    Invalid {
        /// Display name.
        instance: String,
        /// The category.
        category: String,
        /// The URL without query.
        url: RedactedUrl,
        /// The rule that failed.
        #[source]
        source: ValidationError,
    },
    /// A category named by the API gives a file name that cannot be used.
    #[error(
        "instance {instance}: category {category:?} from the API gives file name {file_name:?}, which {problem}"
    )]
    BadCategory {
        /// Display name.
        instance: String,
        /// The category as the API spelled it.
        category: String,
        /// The rendered file name.
        file_name: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The instance took longer than its share of the pass.
    #[error("instance {instance}: not done after {}; retried later", humantime::format_duration(*.after))]
    Deadline {
        /// Display name.
        instance: String,
        /// The deadline.
        after: Duration,
    },
    /// A fleet subscriber's set is missing, refused, or does not hold the instance.
    #[error("instance {instance}: {message}")]
    Source {
        /// Display name.
        instance: String,
        /// Why.
        message: String,
    },
    /// Syncing it failed with an internal error (a bug): the other instances go on.
    #[error("instance {instance}: internal error: {detail}")]
    Internal {
        /// Display name.
        instance: String,
        /// What the panic said.
        detail: String,
    },
}

fn wanted_text(listed: &[String]) -> String {
    if listed.is_empty() {
        String::new()
    } else {
        format!(
            " in the configured categories (listed: {})",
            listed.join(", ")
        )
    }
}

impl InstanceError {
    /// A short stable reason (for metrics and the summary).
    pub fn reason(&self) -> &'static str {
        match self {
            InstanceError::Api { source, .. } => source.reason(),
            InstanceError::NoCertificates { .. } => "no_certificates",
            InstanceError::Fetch { source, .. } => source.reason(),
            InstanceError::Invalid { source, .. } => source.rule(),
            InstanceError::BadCategory { .. } => "bad_category",
            InstanceError::Deadline { .. } => "deadline",
            InstanceError::Source { .. } => "source",
            InstanceError::Internal { .. } => "internal",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(id: &str) -> Instance {
        Instance::discovered(id, None)
    }

    // Paused time: the slow instance's deadline passes without a real wait.
    #[tokio::test(start_paused = true)]
    async fn a_panicking_or_slow_instance_fails_alone_and_results_keep_plan_order() {
        let shared = Shared::default();
        let instances = vec![inst("ok-1"), inst("boom"), inst("slow"), inst("ok-2")];
        let out = run_bounded(
            instances,
            2,
            Duration::from_millis(200),
            &shared,
            |i| async move {
                match i.id.as_str() {
                    "boom" => panic!("a bug for {}", i.id),
                    "slow" => {
                        std::future::pending::<()>().await;
                        unreachable!()
                    }
                    _ => Ok(Vec::new()),
                }
            },
        )
        .await;
        let ids: Vec<&str> = out.iter().map(|(i, _)| i.id.as_str()).collect();
        assert_eq!(ids, ["ok-1", "boom", "slow", "ok-2"]);
        assert!(out[0].1.is_ok() && out[3].1.is_ok());
        match &out[1].1 {
            Err(InstanceError::Internal { instance, detail }) => {
                assert_eq!(instance, "boom");
                assert_eq!(detail, "a bug for boom");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(out[2].1, Err(InstanceError::Deadline { .. })));
    }
}
