//! The cloud source: for each instance, the download-link API's listing, every wanted link
//! downloaded at once (links are short-lived) and validated (SPEC 5.1-5.2, 6); discovery
//! through ListInstances (SPEC 5.4).
//!
//! Owns: what makes one instance's outcome (all-or-nothing: any failure keeps its files), the
//! API categories held to the name alphabet before they become file names, and the clients'
//! wiring (one pooled HTTP client, API requests counted). It must not decide schedules or
//! write files.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::cert::Cert;
use crate::cloud::api::ApiClient;
use crate::cloud::budget::Budget;
use crate::config::{Config, Discover, Instance};
use crate::endpoint::Endpoint;
use crate::fetch::Fetcher;
use crate::names;
use crate::plan::{Listed, Listing};
use crate::status::Shared;
use crate::store::DesiredEntry;
use crate::validate::{Policy, VerifiedSignatures, validate_remembering};

use super::{DiscoveryError, DiscoveryFailure, InstanceError, SourceError, Synced};

/// The cloud, as the configured accounts see it: per account, the API client and the
/// fetcher over the account's pooled client, and the account's request budget.
#[derive(Clone)]
pub struct CloudSource {
    accounts: Arc<HashMap<String, AccountClients>>,
    config: Arc<Config>,
    /// Self-signatures verified in earlier passes (a CA in use is downloaded at every pass).
    verified: Arc<VerifiedSignatures>,
}

/// One account's clients.
#[derive(Clone)]
struct AccountClients {
    api: ApiClient,
    fetcher: Fetcher,
}

impl CloudSource {
    /// The clients of every account of `config`, counting every API request and every 429
    /// in `shared`'s metrics. Logs the config's warnings (an inline secret in a file others
    /// can read).
    pub fn new(config: &Arc<Config>, shared: &Arc<Shared>) -> Result<CloudSource, SourceError> {
        for w in &config.warnings {
            tracing::warn!(file = %config.source.display(), key = %w.key, "{}", w.message);
        }
        let mut accounts = HashMap::new();
        for account in &config.accounts {
            let throttled = shared.clone();
            let budget = Budget::new(&account.name, account.cloud.max_requests_per_second)
                .with_observer(Arc::new(move |name: &str| {
                    throttled.metrics.api_throttled(name)
                }));
            let (http, api) = crate::cloud::connect(account, Arc::new(budget))?;
            let counted = shared.clone();
            let api = api.with_observer(Arc::new(move |operation, status| {
                counted.metrics.api_request(operation, status)
            }));
            let fetcher = Fetcher::new(
                http,
                &config.sync.allowed_download_hosts,
                config.sync.max_download_bytes,
            );
            accounts.insert(account.name.clone(), AccountClients { api, fetcher });
        }
        Ok(CloudSource {
            accounts: Arc::new(accounts),
            config: config.clone(),
            verified: Arc::new(VerifiedSignatures::default()),
        })
    }

    /// The API client of the account named `name` (for `check --online`'s credentials
    /// probe).
    pub fn api(&self, name: &str) -> Option<&ApiClient> {
        self.accounts.get(name).map(|a| &a.api)
    }

    /// The clients of `account`; every account an instance or query names exists (config
    /// checks it), so a miss is a bug, reported as the instance's failure.
    fn clients(&self, account: &str) -> Result<&AccountClients, String> {
        self.accounts
            .get(account)
            .ok_or_else(|| format!("account {account:?} is not configured (any more)"))
    }

    /// Instances in flight at once.
    pub fn concurrency(&self) -> usize {
        self.config.sync.concurrency
    }

    /// How long one instance may take in a pass.
    pub fn deadline(&self) -> Duration {
        instance_deadline(&self.config)
    }

    /// Runs every `[[discover]]` query (ListInstances, paged and bounded).
    pub async fn discover(&self, queries: &[Discover]) -> Result<Vec<Listing>, DiscoveryError> {
        let mut listings = Vec::with_capacity(queries.len());
        for (index, query) in queries.iter().enumerate() {
            let api = &self
                .clients(&query.account)
                .map_err(|detail| DiscoveryError {
                    query: index,
                    account: query.account.clone(),
                    source: DiscoveryFailure::Internal(detail),
                })?
                .api;
            let listed = api
                .list_instances(query.datastore.as_deref(), query.name.as_deref())
                .await
                .map_err(|source| DiscoveryError {
                    query: index,
                    account: query.account.clone(),
                    source: DiscoveryFailure::Api(source),
                })?;
            if let Some(cut) = &listed.truncated {
                tracing::warn!(
                    discover = index,
                    datastore = ?query.datastore,
                    name = ?query.name,
                    listed = listed.instances.len(),
                    reason = %cut,
                    "discovery listing incomplete: instances past this point are not synced, and those found before are kept"
                );
            }
            listings.push(Listing {
                query: index,
                account: query.account.clone(),
                ssl_only: query.ssl_only,
                truncated: listed.truncated.is_some(),
                instances: listed
                    .instances
                    .into_iter()
                    .map(|i| Listed {
                        id: i.id,
                        name: i.name,
                        ssl: i.ssl,
                        endpoints: i.endpoints,
                    })
                    .collect(),
            });
        }
        Ok(listings)
    }

    /// The node addresses of every instance of `accounts` (one unfiltered ListInstances
    /// each, paged and bounded), by id; instances listed without addresses are left out.
    pub async fn node_addresses(
        &self,
        accounts: &[String],
    ) -> Result<BTreeMap<String, Vec<Endpoint>>, DiscoveryError> {
        let mut out = BTreeMap::new();
        for account in accounts {
            let failed = |source| DiscoveryError {
                query: 0,
                account: account.clone(),
                source,
            };
            let api = &self
                .clients(account)
                .map_err(|d| failed(DiscoveryFailure::Internal(d)))?
                .api;
            let listed = api
                .list_instances(None, None)
                .await
                .map_err(|e| failed(DiscoveryFailure::Api(e)))?;
            for inst in listed.instances {
                // Also an instance listed with no nodes: its endpoints are known to be none.
                if names::is_instance_id(&inst.id) {
                    out.insert(inst.id, inst.endpoints);
                }
            }
        }
        Ok(out)
    }

    /// Lists, downloads and validates one instance's certificates (every rule of SPEC 6, the
    /// host allowlist included). Writes nothing.
    pub async fn sync_instance(&self, inst: &Instance) -> Result<Synced, InstanceError> {
        let config = &self.config;
        let name = inst.display_name().to_string();
        let clients = self
            .clients(&inst.account)
            .map_err(|detail| InstanceError::Internal {
                instance: name.clone(),
                detail,
            })?;
        let listing =
            clients
                .api
                .list_certs(&inst.id)
                .await
                .map_err(|source| InstanceError::Api {
                    instance: name.clone(),
                    account: inst.account.clone(),
                    source,
                })?;
        // Several entries of one category are merged (in order); categories keep API order.
        let mut by_category: Vec<(String, Vec<Cert>)> = Vec::new();
        let listed: Vec<String> = listing.certs.iter().map(|c| c.category.clone()).collect();
        for link in listing.certs.iter().filter(|l| inst.wants(&l.category)) {
            super::file_name_of(config, inst, &link.category)?;
            let download = clients
                .fetcher
                .download(&link.url)
                .await
                .map_err(|source| InstanceError::Fetch {
                    instance: name.clone(),
                    category: link.category.clone(),
                    source,
                })?;
            let policy = Policy {
                now: SystemTime::now(),
                pins: &inst.pins,
            };
            let certs = validate_remembering(&download.bytes, &policy, &self.verified).map_err(
                |source| InstanceError::Invalid {
                    instance: name.clone(),
                    category: link.category.clone(),
                    url: download.url.clone(),
                    source,
                },
            )?;
            for cert in certs.iter().filter(|c| c.sm2) {
                tracing::warn!(category = %link.category, subject = %crate::text::Untrusted(&cert.subject), "SM2 certificate accepted without checking its signature");
            }
            match by_category.iter_mut().find(|(c, _)| *c == link.category) {
                Some((_, existing)) => {
                    for cert in certs {
                        if !existing.iter().any(|e| e.sha256 == cert.sha256) {
                            existing.push(cert);
                        }
                    }
                }
                None => by_category.push((link.category.clone(), certs)),
            }
        }
        if by_category.is_empty() {
            return Err(InstanceError::NoCertificates {
                instance: name,
                listed,
            });
        }
        Ok(by_category
            .into_iter()
            .map(|(category, certs)| DesiredEntry {
                instance_id: inst.id.clone(),
                file_name: config.trust.file_name_for(inst, &category),
                category,
                certs,
                kept: Vec::new(),
            })
            .collect())
    }
}

/// How long one instance may take in a pass: a listing and a download at `cloud.timeout`
/// each (the longest of any account's), plus one Retry-After wait. Past it the instance fails
/// this pass (its files kept) so that a slow instance never holds back the others' writes for
/// long. Discovery gets the same bound for a whole round.
pub fn instance_deadline(config: &Config) -> Duration {
    config
        .longest_timeout()
        .saturating_mul(2)
        .saturating_add(crate::schedule::MAX_RETRY_AFTER)
}
