//! The request counters of one simulator, updated without the state lock.
//!
//! Owns: the counters and their snapshot (the control API's and the Rust API's `stats`).
//! Must not: take the state lock (handlers bump them on every request).

use std::sync::atomic::{AtomicU64, Ordering};

use crate::model::Stats;

/// Request counters, updated without the state lock.
#[derive(Default)]
pub(crate) struct Counters {
    pub api_requests: AtomicU64,
    pub list_requests: AtomicU64,
    pub unauthorized: AtomicU64,
    pub downloads: AtomicU64,
    pub iam_tokens_issued: AtomicU64,
    pub iam_token_failures: AtomicU64,
    pub project_lookups: AtomicU64,
    pub metadata_session_tokens: AtomicU64,
    pub metadata_fetches: AtomicU64,
    pub throttled: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn snapshot(&self) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            api_requests: get(&self.api_requests),
            list_requests: get(&self.list_requests),
            unauthorized: get(&self.unauthorized),
            downloads: get(&self.downloads),
            iam_tokens_issued: get(&self.iam_tokens_issued),
            iam_token_failures: get(&self.iam_token_failures),
            project_lookups: get(&self.project_lookups),
            metadata_session_tokens: get(&self.metadata_session_tokens),
            metadata_fetches: get(&self.metadata_fetches),
            throttled: get(&self.throttled),
        }
    }
}
