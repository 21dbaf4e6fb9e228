//! Reading the trust folder and planning a pass: [`StoreView`] (the folder's manifest, typed
//! state and the certificates of its managed files, read without creating or locking
//! anything) and [`StorePlan`] (everything a pass would do, computed before anything is
//! written).
//!
//! Owns: loading the manifest (one reader, [`Manifest::parse`]) and turning its state into
//! the typed one, what it knows of the CAs the managed files hold (their notAfter; the
//! certificates themselves are read from the files when a plan needs them), and the plan as a value:
//! its preview (what would change), its report when it is not committed (a dry run), and the
//! identity of the store state it was computed from.
//! Must not: write, create or lock anything; [`Store`](super::Store) does, and only it can
//! commit a plan.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use super::manifest::{self, MANIFEST_NAME, Manifest, Record, Replaced};
use super::plan::{self, Plan, RemovalResult, still_kept, window_end};
use super::write::Folder;
use super::{
    EntryOutcome, EntryState, Evidence, OpaqueState, OverlapState, PassInput, Preview, StoreError,
    StoreOptions, StoreReport, StoreState,
};
use crate::cert::Cert;

/// The trust folder as read: its manifest, the daemon state saved in it and the certificates
/// of its managed files. Opened without creating, locking or cleaning anything (for `check`
/// and `--dry-run`); it can [`plan`](StoreView::plan) a pass but never write one.
pub struct StoreView<S = OpaqueState> {
    pub(super) opts: StoreOptions,
    /// The folder, opened once; every read is relative to it. `None`: it does not exist (yet).
    pub(super) folder: Option<Folder>,
    pub(super) manifest: Manifest<S>,
    /// The state on disk could not be read as `S` (the default is used instead): the next
    /// write of the manifest replaces it even when the state did not change.
    pub(super) state_unreadable: bool,
    /// The notAfter of every CA the records name, by SHA-256 (for [`StoreView::current`]).
    /// Only this is kept of them between passes: a pass supplies the certificates of the
    /// instances it synced, and a plan reads the others (replaced CAs, the CAs of instances
    /// that did not sync) from the managed files, which hold them (see [`read_cas`]). Keeping
    /// every CA here instead was a second copy of every certificate of a pass (about 15 MB at
    /// 10,000 instances) while the pass's own copies were fetched and planned.
    pub(super) expiry: HashMap<[u8; 32], time::OffsetDateTime>,
    /// Which view and which state of it a plan was computed from (see [`StorePlan`]).
    pub(super) origin: Origin,
}

/// Identifies one view and one state of its records: a plan can only be committed to the
/// store it was planned from, with no commit in between.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Origin {
    view: u64,
    revision: u64,
}

impl Origin {
    fn new() -> Origin {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        Origin {
            view: NEXT.fetch_add(1, Ordering::Relaxed),
            revision: 0,
        }
    }

    /// After a change of the records (a commit).
    pub(super) fn bump(&mut self) {
        self.revision = self.revision.wrapping_add(1);
    }
}

impl<S> std::fmt::Debug for StoreView<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreView")
            .field("dir", &self.opts.dir)
            .field("exists", &self.folder.is_some())
            .field("managed_files", &self.manifest.files.len())
            .finish_non_exhaustive()
    }
}

impl<S: StoreState> StoreView<S> {
    /// Reads the trust folder: its manifest and the managed files' certificates. Creates,
    /// locks and cleans nothing; a missing folder is an empty one.
    pub fn open(opts: StoreOptions) -> Result<StoreView<S>, StoreError> {
        check_options(&opts)?;
        let folder = Folder::open_existing(&opts.dir)?;
        StoreView::read(opts, folder)
    }

    /// A view of the opened `folder` (`None`: missing): its manifest and certificates.
    pub(super) fn read(
        opts: StoreOptions,
        folder: Option<Folder>,
    ) -> Result<StoreView<S>, StoreError> {
        let (manifest, state_unreadable) = match &folder {
            Some(folder) => load_manifest(folder)?,
            None => (Manifest::default(), false),
        };
        let mut expiry = HashMap::new();
        if let Some(folder) = &folder {
            let needed = used_fingerprints(&manifest.files);
            read_cas(folder, &manifest.files, &needed, |cert| {
                expiry.insert(cert.sha256, cert.not_after);
            });
        }
        Ok(StoreView {
            opts,
            folder,
            manifest,
            state_unreadable,
            expiry,
            origin: Origin::new(),
        })
    }

    /// A view of no folder at all (nothing read): every pass plans as on an empty folder.
    pub fn empty(opts: StoreOptions) -> StoreView<S> {
        StoreView {
            opts,
            folder: None,
            manifest: Manifest::default(),
            state_unreadable: false,
            expiry: HashMap::new(),
            origin: Origin::new(),
        }
    }
}

impl<S> StoreView<S> {
    /// The instances whose files hold a replaced CA that the endpoints kept past
    /// `rotation_overlap` and that `evidence` no longer keeps (SPEC 13: it is dropped at
    /// the next pass of its instance), each once.
    pub fn released_by(&self, evidence: &Evidence, now: SystemTime) -> BTreeSet<String> {
        let now = time::OffsetDateTime::from(now);
        let opts = &self.opts;
        self.replaced()
            .filter(|(_, r)| now >= window_end(r.replaced_at, opts.rotation_overlap))
            .filter(|(id, r)| {
                let endpoints = evidence.get(*id).map(Vec::as_slice);
                !still_kept(r, now, opts, endpoints)
            })
            .map(|(id, _)| id.to_string())
            .collect()
    }

    /// The instances whose files hold a replaced CA.
    pub fn with_replaced(&self) -> BTreeSet<String> {
        self.replaced().map(|(id, _)| id.to_string()).collect()
    }

    /// Every replaced CA in the instance files, with its instance's id.
    pub(super) fn replaced(&self) -> impl Iterator<Item = (&str, &Replaced)> {
        self.manifest
            .files
            .values()
            .filter_map(|r| match r {
                Record::Instance {
                    instance_id,
                    replaced,
                    ..
                } => Some((instance_id.as_str(), replaced)),
                _ => None,
            })
            .flat_map(|(id, replaced)| replaced.iter().map(move |r| (id, r)))
    }

    /// Computes what a pass bringing the folder to the state `input` asks for at time `now`
    /// would do: the files to write (with their bytes) and to remove, the final records, the
    /// result of every entry. Reads the folder (to compare bytes) but changes nothing; the
    /// plan is [committed](super::Store::commit) or, in a dry run, only
    /// [reported](StorePlan::report).
    pub fn plan(&self, input: &PassInput, now: SystemTime) -> StorePlan {
        let plan = self.compute(input, &BTreeSet::new(), now);
        StorePlan {
            preview: plan.preview(&self.opts.dir),
            plan,
            input: input.clone(),
            now,
            dir: self.opts.dir.clone(),
            origin: self.origin,
        }
    }

    /// [`StorePlan::report`] of the plan of `input` at `now`, without the copy of the input
    /// a [`StorePlan`] holds (every certificate of the pass: at 10,000 instances, megabytes).
    pub fn dry_run(&self, input: &PassInput, now: SystemTime) -> StoreReport {
        dry_run_report(self.compute(input, &BTreeSet::new(), now), &self.opts.dir)
    }

    /// [`StorePlan::refused`] for `input`, planning nothing.
    pub fn refuse(&self, input: &PassInput, error: StoreError) -> StoreReport {
        refused_report(input, &self.opts.dir, error)
    }

    /// The plan of `input` at `now` from the current records, the instances in `excluded`
    /// counted as not synced.
    pub(super) fn compute(
        &self,
        input: &PassInput,
        excluded: &BTreeSet<&str>,
        now: SystemTime,
    ) -> Plan {
        // The CAs the records name that the pass does not supply, read from the files.
        let mut loaded = HashMap::new();
        if let Some(folder) = &self.folder {
            let supplied: HashSet<[u8; 32]> = input
                .updates
                .iter()
                .flat_map(|u| u.certs.iter().chain(u.kept.iter().map(|k| &k.cert)))
                .map(|c| c.sha256)
                .collect();
            let mut needed = used_fingerprints(&self.manifest.files);
            needed.retain(|fp| digest(fp).is_none_or(|d| !supplied.contains(&d)));
            if !needed.is_empty() {
                read_cas(folder, &self.manifest.files, &needed, |cert| {
                    loaded.insert(cert.fingerprint(), cert);
                });
            }
        }
        let mut plan = plan::plan(
            &self.opts,
            self.folder.as_ref(),
            &self.manifest.files,
            &loaded,
            input,
            excluded,
            crate::validate::saturating_datetime(now),
        );
        plan.read = loaded.into_values().collect();
        plan
    }

    /// The options the folder was opened with.
    pub fn options(&self) -> &StoreOptions {
        &self.opts
    }

    /// The daemon state saved with the folder (the default when there is none, or when the
    /// one on disk could not be read: that was logged as a warning at open).
    pub fn saved_state(&self) -> &S {
        &self.manifest.state
    }

    /// Every managed instance file, sorted by file name.
    pub fn current(&self) -> Vec<EntryState> {
        self.manifest
            .files
            .iter()
            .filter_map(|(name, record)| match record {
                Record::Instance {
                    instance_id,
                    category,
                    current,
                    replaced,
                    ..
                } => Some(EntryState {
                    instance_id: instance_id.clone(),
                    category: category.clone(),
                    path: self.opts.dir.join(name),
                    fingerprints: current.clone(),
                    not_after: current
                        .iter()
                        .filter_map(|fp| self.expiry.get(&digest(fp)?).copied())
                        .min(),
                    overlap: replaced
                        .iter()
                        .map(|r| OverlapState {
                            sha256: r.sha256.clone(),
                            replaced_at: r.replaced_at,
                            leaves_at: window_end(r.replaced_at, self.opts.rotation_overlap)
                                .min(r.not_after),
                            leaves_by: window_end(r.replaced_at, self.opts.rotation_overlap_max)
                                .min(r.not_after),
                        })
                        .collect(),
                }),
                _ => None,
            })
            .collect()
    }

    /// After a commit: the notAfter of the certificates `certs` supplied that the records
    /// name is kept, and only that of the CAs the records still name.
    pub(super) fn absorb<'c>(&mut self, certs: impl IntoIterator<Item = &'c Cert>) {
        let used = used_fingerprints(&self.manifest.files);
        for cert in certs {
            if used.contains(cert.fingerprint().as_str()) {
                self.expiry.insert(cert.sha256, cert.not_after);
            }
        }
        let used: HashSet<[u8; 32]> = used.into_iter().filter_map(digest).collect();
        self.expiry.retain(|d, _| used.contains(d));
    }
}

/// A pass computed and not yet written: made by [`StoreView::plan`] (or [`Store`]'s, through
/// the view it derefs to), then either committed by [`Store::commit`](super::Store::commit)
/// or, for a dry run, turned into its [report](StorePlan::report) as it is. It holds its own
/// copy of the pass's input, so it can be sent to another thread and back.
///
/// [`Store`]: super::Store
pub struct StorePlan {
    pub(super) plan: Plan,
    pub(super) input: PassInput,
    pub(super) now: SystemTime,
    pub(super) dir: PathBuf,
    pub(super) preview: Preview,
    pub(super) origin: Origin,
}

// The daemon moves stores and plans to a blocking thread and back.
const _: () = {
    const fn send<T: Send>() {}
    send::<StorePlan>();
    send::<StoreView>();
    send::<super::Store>();
};

impl std::fmt::Debug for StorePlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorePlan")
            .field("dir", &self.dir)
            .field("preview", &self.preview)
            .finish_non_exhaustive()
    }
}

impl StorePlan {
    /// What the plan would change, before anything changes: the files written and removed,
    /// and the instances whose files change. The daemon records from it the hooks the pass
    /// will owe, in the state it commits with the plan.
    pub fn preview(&self) -> &Preview {
        &self.preview
    }

    /// The pass the plan was made for (its own copy).
    pub fn input(&self) -> &PassInput {
        &self.input
    }

    /// The report of this plan as if every write and removal succeeded, without writing
    /// anything: a dry run. The same entries, changed files and removals a commit that meets
    /// no error produces.
    pub fn report(self) -> StoreReport {
        dry_run_report(self.plan, &self.dir)
    }

    /// The report of a pass refused as a whole before anything was written: every update
    /// fails with `error`'s message, and `error` is the pass's store error.
    pub fn refused(self, error: StoreError) -> StoreReport {
        refused_report(&self.input, &self.dir, error)
    }
}

/// The report of `plan` as if every write and removal succeeded.
pub(super) fn dry_run_report(plan: Plan, dir: &Path) -> StoreReport {
    let writes = plan.writes.iter().map(|_| Ok(())).collect();
    let removals = plan
        .removals
        .iter()
        .map(|_| RemovalResult::Removed)
        .collect();
    // Every result is a success, so no record is put back: the old records are not needed
    // to finish the plan.
    let (report, _) = plan.finish(dir, &BTreeMap::new(), writes, removals);
    report
}

/// The report of `input` refused whole with `error`.
pub(super) fn refused_report(input: &PassInput, dir: &Path, error: StoreError) -> StoreReport {
    let message = error.to_string();
    StoreReport {
        entries: input
            .updates
            .iter()
            .map(|u| EntryOutcome {
                instance_id: u.instance_id.clone(),
                category: u.category.clone(),
                path: dir.join(&u.file_name),
                result: Err(StoreError::Refused {
                    reason: message.clone(),
                }),
                not_after: u.certs.iter().map(|c| c.not_after).min(),
                fingerprints: u.certs.iter().map(Cert::fingerprint).collect(),
            })
            .collect(),
        errors: vec![error],
        ..StoreReport::default()
    }
}

/// The options every open checks before touching the folder.
pub(super) fn check_options(opts: &StoreOptions) -> Result<(), StoreError> {
    if !opts.dir.is_absolute() {
        return Err(StoreError::RelativeDir {
            path: opts.dir.clone(),
        });
    }
    if let Some(bundle) = &opts.bundle {
        manifest::check_file_name(bundle).map_err(|reason| StoreError::InvalidName {
            name: bundle.clone(),
            reason,
        })?;
    }
    Ok(())
}

/// Reads the manifest; a missing one is an empty folder state, an unreadable one an error.
/// A state that is not an `S` is a warning and the default (`true`: it was unreadable).
fn load_manifest<S: StoreState>(folder: &Folder) -> Result<(Manifest<S>, bool), StoreError> {
    let path = folder.join(MANIFEST_NAME);
    let existing = folder
        .read_file(MANIFEST_NAME)
        .map_err(|e| StoreError::Manifest {
            path: path.clone(),
            source: Box::new(e),
        })?;
    let Some(file) = existing else {
        return Ok((Manifest::default(), false));
    };
    let raw = Manifest::parse(&file.content).map_err(|e| StoreError::Manifest {
        path: path.clone(),
        source: Box::new(e),
    })?;
    let (manifest, error) = raw.into_typed();
    if let Some(e) = &error {
        tracing::warn!(
            manifest = %path.display(),
            error = %e,
            "ignoring unreadable daemon state in the manifest"
        );
    }
    Ok((manifest, error.is_some()))
}

/// Reads the CAs `needed` names (by fingerprint) from the managed files that hold them, and
/// hands each to `take` once. Instance files first (only those whose records name one); the
/// bundle and hash files only if some CA was not found there (an instance file lost or
/// changed behind certsync's back). Unreadable files are skipped: they are rewritten later.
/// One file's certificates at a time: what `take` does not keep is freed as it goes.
fn read_cas(
    folder: &Folder,
    files: &BTreeMap<String, Record>,
    needed: &HashSet<&str>,
    mut take: impl FnMut(Cert),
) {
    let mut found: HashSet<[u8; 32]> = HashSet::new();
    let mut read_into = |name: &str, found: &mut HashSet<[u8; 32]>| {
        if let Ok(Some(file)) = folder.read_managed(name)
            && let Ok(certs) = crate::cert::read_certs_lenient(&file.content)
        {
            for cert in certs {
                if needed.contains(cert.fingerprint().as_str()) && found.insert(cert.sha256) {
                    take(cert);
                }
            }
        }
    };
    for (name, record) in files {
        if let Record::Instance {
            current, replaced, ..
        } = record
            && current
                .iter()
                .chain(replaced.iter().map(|r| &r.sha256))
                .any(|fp| needed.contains(fp.as_str()))
        {
            read_into(name, &mut found);
        }
    }
    if found.len() < needed.len() {
        for (name, record) in files {
            if matches!(record, Record::Bundle { .. } | Record::Hash { .. }) {
                read_into(name, &mut found);
            }
        }
    }
}

/// The SHA-256 a manifest's fingerprint (64 hex digits) names.
fn digest(fp: &str) -> Option<[u8; 32]> {
    let mut out = [0; 32];
    hex::decode_to_slice(fp, &mut out).ok()?;
    Some(out)
}

/// Fingerprints of every CA an instance record names (current and replaced).
fn used_fingerprints(files: &BTreeMap<String, Record>) -> HashSet<&str> {
    files
        .values()
        .flat_map(|r| match r {
            Record::Instance {
                current, replaced, ..
            } => current
                .iter()
                .map(String::as_str)
                .chain(replaced.iter().map(|r| r.sha256.as_str()))
                .collect::<Vec<_>>(),
            Record::Bundle { .. } | Record::Hash { .. } | Record::Truststore { .. } => Vec::new(),
        })
        .collect()
}
