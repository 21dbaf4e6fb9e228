//! The plan stage: which instances a pass syncs, under which names, and what the store may
//! and may not do with the files of the instances that did not sync.
//!
//! Owns: merging discovered instances into the configured ones (names sanitised, made unique,
//! an explicit id keeping its explicit settings), folding a round of discovery into what the
//! daemon remembers (an outage or a cut-short listing never looks like instances vanishing),
//! the names protected for instances that did not sync (SPEC 5.3, 7), whether a pass counts
//! toward removing files nothing produces, and which managed files a config would no longer
//! produce (`check`).
//!
//! Pure: no I/O, no clock, no logging; what the daemon must log comes back as data. It must not
//! know how instances are fetched or how files are written.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::{Instance, Trust};
use crate::endpoint::Endpoint;
use crate::names;

/// The categories the API documents (SPEC 1): an instance that failed may list any of them.
pub const KNOWN_CATEGORIES: [&str; 2] = ["international", "national"];

/// What the daemon remembers of discovery: the instances found the last time it answered
/// completely, by id.
pub type Discovered = BTreeMap<String, Instance>;

/// The instances of a pass: the configured ones, then the discovered ones that are not
/// configured explicitly. A discovered instance is named by its (sanitised) name, or by its id
/// where that name is already taken (by a configured instance's name or id, or by another
/// discovered instance).
pub fn instances(configured: &[Instance], discovered: &Discovered) -> Vec<Instance> {
    let mut active = configured.to_vec();
    let explicit: BTreeSet<&str> = configured.iter().map(|i| i.id.as_str()).collect();
    let present: Vec<&Instance> = discovered
        .values()
        .filter(|d| !explicit.contains(d.id.as_str()))
        .collect();
    // Configured names and ids count twice, so one discovered instance that shares them
    // already collides.
    let mut taken: BTreeMap<&str, usize> = BTreeMap::new();
    for inst in configured {
        *taken.entry(inst.display_name()).or_default() += 2;
        *taken.entry(inst.id.as_str()).or_default() += 2;
    }
    for d in &present {
        *taken.entry(d.display_name()).or_default() += 1;
    }
    for d in present {
        let mut inst = d.clone();
        if inst
            .name
            .as_deref()
            .is_some_and(|n| taken.get(n).copied().unwrap_or(0) > 1)
        {
            inst.name = None;
        }
        active.push(inst);
    }
    active
}

/// The ids of the plan: configured, and discovered the last time discovery answered. Their
/// files are theirs: kept while they fail, never taken by another instance.
pub fn ids(configured: &[Instance], discovered: &Discovered) -> BTreeSet<String> {
    configured
        .iter()
        .map(|i| i.id.clone())
        .chain(discovered.keys().cloned())
        .collect()
}

/// One `[[discover]]` query's answer, as the source listed it.
#[derive(Clone, Debug, Default)]
pub struct Listing {
    /// Index of the query in the config (for messages).
    pub query: usize,
    /// The query's account: the instances it lists belong to it.
    pub account: String,
    /// `ssl_only` of the query.
    pub ssl_only: bool,
    /// Every instance listed.
    pub instances: Vec<Listed>,
    /// The listing stopped before its end (SPEC 5.4's bounds): it proves nothing about the
    /// instances it did not reach.
    pub truncated: bool,
}

/// One instance of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// Its id, as listed (not yet checked).
    pub id: String,
    /// Its name, as listed.
    pub name: String,
    /// `ssl` is on.
    pub ssl: bool,
    /// Its node addresses (SPEC 13).
    pub endpoints: Vec<Endpoint>,
}

/// A round of discovery folded into what the daemon remembers.
#[derive(Clone, Debug, Default)]
pub struct DiscoveryRound {
    /// What to remember now.
    pub discovered: Discovered,
    /// Newly found instances, by id.
    pub found: Vec<String>,
    /// Instances no longer listed (by a complete round), by id: their files stay until
    /// nothing has produced them for [`crate::store::UNPRODUCED_PASSES`] passes.
    pub vanished: Vec<String>,
    /// Listed ids that are not usable instance ids: `(query, id)`.
    pub skipped: Vec<(usize, String)>,
    /// The node addresses of every instance listed with some (configured ones too), by id:
    /// the endpoints of an instance without `endpoints` of its own (SPEC 13).
    pub nodes: BTreeMap<String, Vec<Endpoint>>,
}

/// Folds the answers of every query into `previous`. When any listing was cut short, nothing
/// is forgotten (instances found before stay); otherwise the instances listed are the new set.
pub fn fold_discovery(previous: &Discovered, listings: &[Listing]) -> DiscoveryRound {
    let mut round = DiscoveryRound::default();
    for listing in listings {
        for Listed {
            id,
            name,
            ssl,
            endpoints,
        } in &listing.instances
        {
            if listing.ssl_only && !ssl {
                continue;
            }
            if !names::is_instance_id(id) {
                round.skipped.push((listing.query, id.clone()));
                continue;
            }
            // Also an instance listed with no nodes: its endpoints are known to be none.
            round.nodes.insert(id.clone(), endpoints.clone());
            round.discovered.entry(id.clone()).or_insert_with(|| {
                Instance::discovered(id.clone(), names::sanitize_name(name))
                    .in_account(listing.account.as_str())
            });
        }
    }
    let complete = listings.iter().all(|l| !l.truncated);
    for (id, inst) in previous {
        if round.discovered.contains_key(id) {
            continue;
        }
        if complete {
            round.vanished.push(id.clone());
        } else {
            round.discovered.insert(id.clone(), inst.clone());
        }
    }
    round.found = round
        .discovered
        .keys()
        .filter(|id| !previous.contains_key(*id))
        .cloned()
        .collect();
    round
}

/// The file names that instances of the plan would produce but that did not sync this pass
/// (they failed, or were not part of it), with the instance's id: the store keeps those files
/// and lets no other instance take their names (SPEC 5.3, 7). A failed instance's categories
/// are unknown, so every category it may list counts: its `categories` filter, else the
/// documented ones and every category a file in the folder has (`folder_categories`).
pub fn protected_names<'a>(
    trust: &Trust,
    active: &[Instance],
    synced: &BTreeSet<String>,
    folder_categories: impl IntoIterator<Item = &'a str>,
) -> BTreeMap<String, String> {
    let mut seen: BTreeSet<&str> = KNOWN_CATEGORIES.into_iter().collect();
    seen.extend(folder_categories);
    let mut protected = BTreeMap::new();
    for inst in active.iter().filter(|i| !synced.contains(&i.id)) {
        let categories: Vec<&str> = match &inst.categories {
            Some(filter) => filter.iter().map(String::as_str).collect(),
            None => seen.iter().copied().collect(),
        };
        for category in categories {
            protected
                .entry(trust.file_name_for(inst, category))
                .or_insert_with(|| inst.id.clone());
        }
    }
    protected
}

/// Whether a pass counts toward removing files that nothing produces any more (SPEC 5.3):
/// only a full pass in which something synced, or that had nothing to sync. A retry of a few
/// instances, or a pass in which every instance failed (a wrong key after an edit, an
/// outage), proves nothing about what the config produces.
pub fn counts(full: bool, synced: usize, planned: usize) -> bool {
    full && (synced > 0 || planned == 0)
}

/// A managed instance file: its name in the folder and its category.
pub trait ManagedFile {
    /// The file name inside the trust folder.
    fn file_name(&self) -> Option<&str>;
    /// The category it holds.
    fn category(&self) -> &str;
}

/// The managed files that no instance of `plan` maps to any more: no instance that wants the
/// file's category renders that file name for it (`check` lists these; with `prune` they go
/// after [`crate::store::UNPRODUCED_PASSES`] passes without them).
pub fn no_longer_produced<F: ManagedFile>(
    trust: &Trust,
    plan: &[Instance],
    files: Vec<F>,
) -> Vec<F> {
    // The names the plan produces for each category the folder holds: one walk of the plan
    // per category (a handful), not one per file.
    let categories: BTreeSet<String> = files.iter().map(|f| f.category().to_string()).collect();
    let mut produced: BTreeSet<(String, String)> = BTreeSet::new();
    for category in &categories {
        for inst in plan.iter().filter(|i| i.wants(category)) {
            produced.insert((category.clone(), trust.file_name_for(inst, category)));
        }
    }
    files
        .into_iter()
        .filter(|f| {
            let Some(name) = f.file_name() else {
                return false;
            };
            !produced.contains(&(f.category().to_string(), name.to_string()))
        })
        .collect()
}

impl ManagedFile for crate::store::EntryState {
    fn file_name(&self) -> Option<&str> {
        self.path.file_name().and_then(|n| n.to_str())
    }

    fn category(&self) -> &str {
        &self.category
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(id: &str, name: Option<&str>) -> Instance {
        Instance::discovered(id, name.map(Into::into))
    }

    fn trust() -> Trust {
        crate::config::parse(
            "[cloud]\nregion = \"cn-north-4\"\nproject_id = \"p1\"\n[auth]\nmethod = \"token\"\ntoken_file = \"/t\"\n[trust]\ndir = \"/var/lib/certsync/trust\"\n[[instance]]\nid = \"i1\"\n",
            std::path::Path::new("/etc/certsync/certsync.toml"),
        )
        .expect("a minimal config")
        .trust
    }

    fn discovered(list: &[(&str, Option<&str>)]) -> Discovered {
        list.iter()
            .map(|(id, name)| (id.to_string(), inst(id, *name)))
            .collect()
    }

    #[test]
    fn discovered_instances_join_the_configured_ones_and_yield_to_explicit_ids() {
        let configured = vec![inst("id-a", Some("orders"))];
        let found = discovered(&[("id-a", Some("other")), ("id-b", Some("carts"))]);
        let plan = instances(&configured, &found);
        assert_eq!(plan.len(), 2);
        assert_eq!(plan[0].display_name(), "orders");
        assert_eq!(plan[1].display_name(), "carts");
    }

    #[test]
    fn a_discovered_name_that_is_taken_falls_back_to_the_id() {
        let configured = vec![inst("id-a", Some("orders"))];
        let found = discovered(&[
            ("id-b", Some("orders")),
            ("id-c", Some("twin")),
            ("id-d", Some("twin")),
            ("id-e", Some("id-a")),
            ("id-f", Some("solo")),
        ]);
        let names: Vec<String> = instances(&configured, &found)
            .iter()
            .map(|i| i.display_name().to_string())
            .collect();
        assert_eq!(names, ["orders", "id-b", "id-c", "id-d", "id-e", "solo"]);
    }

    #[test]
    fn the_ids_of_the_plan_are_configured_and_discovered() {
        let ids = ids(&[inst("a", None)], &discovered(&[("b", None)]));
        assert_eq!(ids, BTreeSet::from(["a".to_string(), "b".to_string()]));
    }

    fn listing(query: usize, list: &[(&str, &str, bool)], truncated: bool) -> Listing {
        Listing {
            query,
            account: crate::config::DEFAULT_ACCOUNT.to_string(),
            ssl_only: true,
            instances: list
                .iter()
                .map(|(i, n, s)| Listed {
                    id: i.to_string(),
                    name: n.to_string(),
                    ssl: *s,
                    endpoints: Vec::new(),
                })
                .collect(),
            truncated,
        }
    }

    #[test]
    fn a_complete_round_replaces_what_was_remembered_and_says_what_vanished() {
        let before = discovered(&[("gone", Some("g")), ("kept", Some("k"))]);
        let round = fold_discovery(
            &before,
            &[listing(
                0,
                &[
                    ("kept", "k", true),
                    ("new", "n e/w", true),
                    ("nossl", "x", false),
                ],
                false,
            )],
        );
        assert_eq!(round.discovered.keys().collect::<Vec<_>>(), ["kept", "new"]);
        assert_eq!(round.discovered["new"].name.as_deref(), Some("n-e-w"));
        assert_eq!(round.found, ["new"]);
        assert_eq!(round.vanished, ["gone"]);
    }

    #[test]
    fn a_cut_short_listing_forgets_nothing() {
        let before = discovered(&[("past-the-cut", Some("p"))]);
        let round = fold_discovery(&before, &[listing(0, &[("seen", "s", true)], true)]);
        assert!(round.discovered.contains_key("past-the-cut"));
        assert!(round.discovered.contains_key("seen"));
        assert!(round.vanished.is_empty());
    }

    #[test]
    fn unusable_ids_are_skipped_and_reported() {
        let round = fold_discovery(
            &Discovered::new(),
            &[listing(
                2,
                &[("bad/id", "x", true), ("ok", "o", true)],
                false,
            )],
        );
        assert_eq!(round.skipped, [(2, "bad/id".to_string())]);
        assert_eq!(round.discovered.len(), 1);
    }

    #[test]
    fn instances_that_did_not_sync_protect_every_name_they_may_produce() {
        let trust = trust();
        let mut filtered = inst("id-c", Some("carts"));
        filtered.categories = Some(vec!["national".into()]);
        let active = vec![
            inst("id-a", Some("orders")),
            inst("id-b", Some("billing")),
            filtered,
        ];
        let synced = BTreeSet::from(["id-a".to_string()]);
        let protected = protected_names(&trust, &active, &synced, ["future-kind"]);
        assert_eq!(
            protected,
            BTreeMap::from([
                ("billing-future-kind.crt".to_string(), "id-b".to_string()),
                ("billing-international.crt".to_string(), "id-b".to_string()),
                ("billing-national.crt".to_string(), "id-b".to_string()),
                ("carts-national.crt".to_string(), "id-c".to_string()),
            ])
        );
    }

    #[test]
    fn only_a_full_pass_in_which_something_synced_counts() {
        assert!(counts(true, 1, 3));
        assert!(counts(true, 0, 0));
        assert!(!counts(true, 0, 3));
        assert!(!counts(false, 3, 3));
    }

    struct File(&'static str, &'static str);
    impl ManagedFile for File {
        fn file_name(&self) -> Option<&str> {
            Some(self.0)
        }
        fn category(&self) -> &str {
            self.1
        }
    }

    #[test]
    fn a_file_no_instance_maps_to_is_no_longer_produced() {
        let trust = trust();
        let mut filtered = inst("id-b", Some("billing"));
        filtered.categories = Some(vec!["international".into()]);
        let plan = vec![inst("id-a", Some("orders")), filtered];
        let files = vec![
            File("orders-international.crt", "international"),
            File("billing-international.crt", "international"),
            File("billing-national.crt", "national"),
            File("old-international.crt", "international"),
        ];
        let left: Vec<&str> = no_longer_produced(&trust, &plan, files)
            .iter()
            .map(|f| f.0)
            .collect();
        assert_eq!(left, ["billing-national.crt", "old-international.crt"]);
    }
}
