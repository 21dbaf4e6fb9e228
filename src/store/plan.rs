//! One pass of the store, computed before anything is written: the final manifest records,
//! the files to write (with their bytes) and the files to remove, plus the per-entry results.
//!
//! Owns: the rules of SPEC 7 about *what* the folder holds (rotation overlap, which files are
//! no longer produced, bundle, hash-file and truststore contents, name conflicts, unmanaged
//! files). It reads the folder (to compare bytes, in either layout) but never writes it;
//! the executor does. The plan is the same for both layouts and write modes. The files
//! derived from the instance records (bundle, hash files, truststore) are planned in
//! `plan/derived.rs`, file contents in `plan/content.rs`, how long a replaced CA stays in
//! `plan/overlap.rs`. About 660 lines on purpose: the
//! record rules of one pass (overlap, conflicts, removals) read top to bottom in one file.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use super::manifest::{Record, Replaced, check_file_name};
use super::write::{Attrs, Existing, Folder, Opened};
use super::{
    Change, EntryOutcome, PassInput, Preview, RemovedFile, StoreError, StoreOptions, StoreReport,
    UNPRODUCED_PASSES,
};

mod content;
mod derived;
mod overlap;
use crate::cert::Cert;
use content::pem_file;
pub(crate) use content::{Certs, Content, Filled};
pub(crate) use overlap::{Previous, carry_over};
pub(super) use overlap::{still_kept, window_end};

/// Who asked for a write or a removal (for the report).
#[derive(Clone, Debug)]
pub(crate) enum Owner {
    /// The entry at this index of [`Plan::entries`] (the updates of the pass, in input
    /// order, less those of excluded instances).
    Entry(usize),
    /// An instance file no longer produced (prune): its instance id and category.
    Instance(String, String),
    Bundle,
    Hash,
    Truststore,
}

impl Owner {
    /// Why a file of this owner is removed, for the log line each removal gets.
    fn removal_reason(&self) -> String {
        match self {
            Owner::Instance(id, category) => format!(
                "no configured or discovered instance has produced it for {UNPRODUCED_PASSES} passes (it was the file of instance {id} category {category})"
            ),
            Owner::Entry(_) => "its entry was replaced".into(),
            Owner::Bundle => "trust.bundle no longer names it".into(),
            Owner::Hash => "its CA is no longer in any instance file".into(),
            Owner::Truststore => "trust.pkcs12 no longer names it".into(),
        }
    }
}

/// A file to write: its bytes differ from the folder's (or it is missing).
pub(crate) struct Write {
    pub name: String,
    pub content: Content,
    /// `Created` or `Updated`.
    pub change: Change,
    pub owner: Owner,
}

/// A managed file to remove.
pub(crate) struct Removal {
    pub name: String,
    pub owner: Owner,
}

/// The change and the content when an entry's file must be written; `None`: leave it alone.
type EntryWrite = Option<(Change, Content)>;

/// What became of a planned removal.
pub(crate) enum RemovalResult {
    Removed,
    /// Already gone: the record is dropped, nothing changed.
    Gone,
    /// Not attempted (the pass was aborted): the record stays.
    Skipped,
    Failed(StoreError),
}

/// Everything a pass will do.
pub(crate) struct Plan {
    /// The result planned for each update, in input order (a write that then fails
    /// replaces its result).
    pub entries: Vec<EntryOutcome>,
    /// The manifest records if every write and removal succeeds.
    pub final_files: BTreeMap<String, Record>,
    pub writes: Vec<Write>,
    pub removals: Vec<Removal>,
    /// Bundle and hash-file problems found while planning.
    pub errors: Vec<StoreError>,
    /// The certificates the plan read from the folder (the CAs its records name that the
    /// pass did not supply): the contents may name them.
    pub read: Vec<Cert>,
}

/// Computes the pass. `old` is the manifest's records, `pool` the certificates of the managed
/// files that the records name and `input` does not supply (read for this plan). The instances in `excluded` count as not synced this pass: their updates are left
/// out (the second plan of a commit in which some instance files could not be written).
pub(crate) fn plan(
    opts: &StoreOptions,
    folder: Option<&Folder>,
    old: &BTreeMap<String, Record>,
    pool: &HashMap<String, Cert>,
    input: &PassInput,
    excluded: &BTreeSet<&str>,
    now: OffsetDateTime,
) -> Plan {
    // By SHA-256, not its hex: at 10,000 CAs the keys alone were megabytes.
    let mut certs: HashMap<[u8; 32], &Cert> = pool.values().map(|c| (c.sha256, c)).collect();
    for entry in &input.updates {
        for cert in entry.certs.iter().chain(entry.kept.iter().map(|k| &k.cert)) {
            certs.entry(cert.sha256).or_insert(cert);
        }
    }
    let mut p = Planner {
        opts,
        folder,
        attrs: opts.attrs(),
        old,
        certs,
        input,
        excluded,
        now,
        final_files: BTreeMap::new(),
        writes: Vec::new(),
        removals: Vec::new(),
        errors: Vec::new(),
    };
    let entries = p.plan_entries();
    let set = p.plan_bundle_and_hashes();
    p.plan_truststore(&set);
    Plan {
        entries,
        final_files: p.final_files,
        writes: p.writes,
        removals: p.removals,
        errors: p.errors,
        read: Vec::new(),
    }
}

struct Planner<'a> {
    opts: &'a StoreOptions,
    /// The folder to compare with; `None`: it does not exist (a read-only view).
    folder: Option<&'a Folder>,
    attrs: Attrs,
    old: &'a BTreeMap<String, Record>,
    certs: HashMap<[u8; 32], &'a Cert>,
    input: &'a PassInput,
    excluded: &'a BTreeSet<&'a str>,
    now: OffsetDateTime,
    final_files: BTreeMap<String, Record>,
    writes: Vec<Write>,
    removals: Vec<Removal>,
    errors: Vec<StoreError>,
}

impl<'a> Planner<'a> {
    /// The updates of the pass, less those of excluded instances, with their index in
    /// `PassInput::updates`.
    fn updates(&self) -> impl Iterator<Item = (usize, &'a super::DesiredEntry)> + use<'a> {
        let (input, excluded) = (self.input, self.excluded);
        input
            .updates
            .iter()
            .enumerate()
            .filter(move |(_, u)| !excluded.contains(u.instance_id.as_str()))
    }

    /// Whether the instance `id` synced this pass (and is not excluded).
    fn synced(&self, id: &str) -> bool {
        self.input.synced.contains(id) && !self.excluded.contains(id)
    }

    /// Instance files: the updates, then the managed files nobody produces any more.
    fn plan_entries(&mut self) -> Vec<EntryOutcome> {
        // Names that two or more entries of this pass map to: every one of them fails, and
        // the file keeps its content (SPEC 7). A category string from the API must not decide
        // which instance gets a file.
        let mut by_name: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, entry) in self.updates() {
            by_name.entry(entry.file_name.as_str()).or_default().push(i);
        }
        let mut failed_owners: HashSet<(&str, &str)> = HashSet::new();
        let mut entries = Vec::with_capacity(self.input.updates.len());
        for (i, entry) in self.updates() {
            let mut seen = HashSet::new();
            let current: Vec<&Cert> = entry
                .certs
                .iter()
                .filter(|c| seen.insert(c.sha256))
                .collect();
            let fingerprints: Vec<String> = current.iter().map(|c| c.fingerprint()).collect();
            let sharing = &by_name[entry.file_name.as_str()];
            let result = if sharing.len() > 1 {
                let others: Vec<String> = sharing
                    .iter()
                    .filter(|j| **j != i)
                    .map(|j| {
                        let o = &self.input.updates[*j];
                        format!("instance {} category {:?}", o.instance_id, o.category)
                    })
                    .collect();
                Err(StoreError::NameConflict {
                    path: self.opts.dir.join(&entry.file_name),
                    other: format!(
                        "the name of {} in this same pass; none of them is written",
                        others.join(" and ")
                    ),
                })
            } else {
                self.plan_entry(entry, &current, &fingerprints)
            };
            let result = match result {
                Ok((record, write)) => {
                    self.final_files.insert(entry.file_name.clone(), record);
                    match write {
                        Some((change, content)) => {
                            self.writes.push(Write {
                                name: entry.file_name.clone(),
                                content,
                                change,
                                owner: Owner::Entry(entries.len()),
                            });
                            Ok(change)
                        }
                        None => Ok(Change::Unchanged),
                    }
                }
                Err(e) => {
                    failed_owners.insert((&entry.instance_id, &entry.category));
                    // The file stays as it was, and so does its record.
                    if let Some(r) = self.old.get(&entry.file_name)
                        && !self.final_files.contains_key(&entry.file_name)
                    {
                        self.final_files.insert(entry.file_name.clone(), r.clone());
                    }
                    Err(e)
                }
            };
            entries.push(EntryOutcome {
                instance_id: entry.instance_id.clone(),
                category: entry.category.clone(),
                path: self.opts.dir.join(&entry.file_name),
                result,
                not_after: current.iter().map(|c| c.not_after).min(),
                fingerprints,
            });
        }

        for (name, record) in self.old {
            let Some((id, category)) = record.owner() else {
                continue;
            };
            if self.final_files.contains_key(name) {
                continue;
            }
            // Its instance failed (or was not part of this pass), one of its entries failed,
            // an instance that failed would produce this name, or pruning is off: it stays
            // as it is, and so does its count.
            let instance_failed = self.input.configured.contains(id) && !self.synced(id);
            if instance_failed
                || failed_owners.contains(&(id, category))
                || self.input.protected.contains_key(name)
                || !self.opts.prune
            {
                self.final_files.insert(name.clone(), record.clone());
                continue;
            }
            // Nothing produces it any more: it goes after UNPRODUCED_PASSES passes that count.
            let missing = record
                .unproduced()
                .saturating_add(u32::from(self.input.counts));
            if missing >= UNPRODUCED_PASSES {
                self.remove(name, Owner::Instance(id.to_string(), category.to_string()));
            } else {
                self.final_files
                    .insert(name.clone(), record.with_unproduced(missing));
            }
        }
        entries
    }

    /// Plans one update: its new record, and the change and bytes if the file must be written.
    fn plan_entry(
        &mut self,
        entry: &super::DesiredEntry,
        current: &[&Cert],
        fingerprints: &[String],
    ) -> Result<(Record, EntryWrite), StoreError> {
        let name = entry.file_name.as_str();
        // Never an instance file without a current CA: that would drop the last good one.
        if current.is_empty() {
            return Err(StoreError::Refused {
                reason: format!(
                    "{}: the pass supplied no certificate for it; its file is kept",
                    self.opts.dir.join(name).display()
                ),
            });
        }
        check_file_name(name).map_err(|reason| StoreError::InvalidName {
            name: name.to_string(),
            reason,
        })?;
        let path = self.opts.dir.join(name);
        if self.opts.bundle.as_deref() == Some(name) {
            return Err(StoreError::NameConflict {
                path,
                other: "the bundle".into(),
            });
        }
        if self.opts.pkcs12.as_deref() == Some(name) {
            return Err(StoreError::NameConflict {
                path,
                other: "the truststore".into(),
            });
        }
        if let Some(by) = self.input.protected.get(name)
            && *by != entry.instance_id
        {
            return Err(StoreError::NameConflict {
                path,
                other: format!(
                    "the file that instance {by} would write (it did not sync this pass, so its file is kept)"
                ),
            });
        }
        let owner = (entry.instance_id.as_str(), entry.category.as_str());
        let prev = match self.old.get(name) {
            None => None,
            Some(r) if r.owner() == Some(owner) => Some(r),
            // The file of an instance that is still configured or discovered stays its own,
            // whether or not that instance still lists it; only a file whose instance left
            // (a corrected id, say) may be taken over.
            Some(r @ Record::Instance { instance_id, .. }) => {
                if self.input.configured.contains(instance_id) {
                    return Err(StoreError::NameConflict {
                        path,
                        other: r.describe(),
                    });
                }
                None
            }
            Some(r) => {
                return Err(StoreError::NameConflict {
                    path,
                    other: r.describe(),
                });
            }
        };
        let mut existing = self.open(name)?;
        if existing.is_some() && !self.old.contains_key(name) {
            return Err(StoreError::Unmanaged { path });
        }

        let (prev_current, prev_replaced): (&[String], &[Replaced]) = match prev {
            Some(Record::Instance {
                current, replaced, ..
            }) => (current, replaced),
            _ => (&[], &[]),
        };
        let endpoints = self
            .input
            .evidence
            .get(&entry.instance_id)
            .map(Vec::as_slice);
        let certs = &self.certs;
        let mut replaced = carry_over(
            Previous {
                current: prev_current,
                replaced: prev_replaced,
            },
            fingerprints,
            |fp| cert_of(certs, fp).map(|c| c.not_after),
            self.now,
            self.opts,
            endpoints,
        );
        // What the source says to keep (a fleet publisher's overlap), as it says.
        for k in &entry.kept {
            let fp = k.cert.fingerprint();
            if fingerprints.contains(&fp) || k.cert.not_after <= self.now {
                continue;
            }
            match replaced.iter_mut().find(|r| r.sha256 == fp) {
                Some(r) => r.replaced_at = k.replaced_at,
                None => replaced.push(Replaced {
                    sha256: fp,
                    replaced_at: k.replaced_at,
                    not_after: k.cert.not_after,
                }),
            }
        }
        replaced.sort_by(|a, b| {
            b.replaced_at
                .cmp(&a.replaced_at)
                .then_with(|| a.sha256.cmp(&b.sha256))
        });

        let mut cas: Vec<&Cert> = Vec::with_capacity(current.len() + replaced.len());
        cas.extend(current);
        cas.extend(
            replaced
                .iter()
                .map(|r| cert_of(certs, &r.sha256).expect("carry_over keeps known CAs only")),
        );
        let (sha256, same) = pem_file(&cas, existing.as_mut()).map_err(|e| read_error(&path, e))?;
        let record = Record::Instance {
            sha256,
            instance_id: entry.instance_id.clone(),
            category: entry.category.clone(),
            current: fingerprints.to_vec(),
            replaced,
            unproduced: 0,
        };
        let change = needed_change(existing.as_ref(), same, &self.attrs);
        Ok((record, change.map(|c| (c, self.pem_content(&cas)))))
    }

    /// The content of a file of these CAs' PEM, to write.
    fn pem_content(&self, cas: &[&Cert]) -> Content {
        Content::Pem(cas.iter().map(|c| c.sha256).collect())
    }

    /// Reads what is at `name`: a managed name in either layout, any other name without
    /// following anything (so a symlink in the way is refused).
    fn read(&self, name: &str) -> Result<Option<Existing>, StoreError> {
        let Some(folder) = self.folder else {
            return Ok(None);
        };
        if self.old.contains_key(name) {
            folder.read_managed(name)
        } else {
            folder.read_file(name)
        }
    }

    /// [`Planner::read`], opened and not read: for a comparison that streams the file.
    fn open(&self, name: &str) -> Result<Option<Existing<Opened>>, StoreError> {
        let Some(folder) = self.folder else {
            return Ok(None);
        };
        if self.old.contains_key(name) {
            folder.open_managed(name)
        } else {
            folder.open_file(name)
        }
    }

    /// Plans removing a managed file; one already gone just loses its record.
    fn remove(&mut self, name: &str, owner: Owner) {
        match self.folder.map_or(Ok(false), |f| f.exists(name)) {
            Ok(false) => {}
            Ok(true) => self.removals.push(Removal {
                name: name.to_string(),
                owner,
            }),
            Err(e) => {
                self.errors.push(e);
                if let Some(r) = self.old.get(name) {
                    self.final_files.insert(name.to_string(), r.clone());
                }
            }
        }
    }
}

impl Plan {
    /// What this plan is about to change, before it changes anything.
    pub(super) fn preview(&self, dir: &Path) -> Preview {
        let written_files: Vec<PathBuf> = self.writes.iter().map(|w| dir.join(&w.name)).collect();
        let removed_files: Vec<PathBuf> = self.removals.iter().map(|r| dir.join(&r.name)).collect();
        Preview {
            changed_files: written_files
                .iter()
                .chain(&removed_files)
                .cloned()
                .collect(),
            written_files,
            removed_files,
            // As `finish` counts them when every write and removal succeeds: the owner of
            // every instance file written, and of every instance file pruned.
            changed_instances: self
                .writes
                .iter()
                .filter_map(|w| self.final_files.get(&w.name).and_then(Record::owner))
                .map(|(id, _)| id.to_string())
                .chain(self.removals.iter().filter_map(|r| match &r.owner {
                    Owner::Instance(id, _) => Some(id.clone()),
                    _ => None,
                }))
                .collect(),
        }
    }

    /// The certificates this plan's contents name: those of `input` (the pass it was
    /// planned from) and those it read.
    pub(super) fn certs<'a>(&'a self, input: &'a PassInput) -> Certs<'a> {
        // Only the writes need them (a pass that changes nothing builds no map).
        if self.writes.is_empty() {
            return Certs(HashMap::new());
        }
        let supplied = input
            .updates
            .iter()
            .flat_map(|u| u.certs.iter().chain(u.kept.iter().map(|k| &k.cert)));
        Certs(
            self.read
                .iter()
                .chain(supplied)
                .map(|c| (c.sha256, c))
                .collect(),
        )
    }

    /// Frees the bytes of every write (once they are written): what [`Plan::finish`] needs
    /// of a write is its name, change and owner.
    pub(super) fn release_contents(&mut self) {
        for w in &mut self.writes {
            w.content = Content::Bytes(Vec::new());
        }
    }

    /// The report of this plan given how its writes and removals went (in plan order), and
    /// the manifest records that describe the folder afterwards: a file that could not be
    /// written or removed keeps its old record (or none, if it was new).
    pub(super) fn finish(
        self,
        dir: &Path,
        old: &BTreeMap<String, Record>,
        write_results: Vec<Result<(), StoreError>>,
        removal_results: Vec<RemovalResult>,
    ) -> (StoreReport, BTreeMap<String, Record>) {
        let mut final_files = self.final_files;
        let mut report = StoreReport {
            errors: self.errors,
            ..StoreReport::default()
        };
        let mut entry_errors: HashMap<usize, StoreError> = HashMap::new();
        let restore = |final_files: &mut BTreeMap<String, Record>, name: &str| match old.get(name) {
            Some(r) => {
                final_files.insert(name.to_string(), r.clone());
            }
            None => {
                final_files.remove(name);
            }
        };
        for (w, result) in self.writes.iter().zip(write_results) {
            let path = dir.join(&w.name);
            match result {
                Ok(()) => {
                    match &w.owner {
                        Owner::Entry(_) | Owner::Instance(..) => {}
                        Owner::Bundle | Owner::Hash | Owner::Truststore => {
                            report.other.push((path.clone(), w.change))
                        }
                    }
                    if let Some((id, _)) = final_files.get(&w.name).and_then(Record::owner) {
                        report.changed_instances.insert(id.to_string());
                    }
                    report.changed_files.push(path);
                }
                Err(e) => {
                    restore(&mut final_files, &w.name);
                    match w.owner {
                        Owner::Entry(i) => {
                            entry_errors.insert(i, e);
                        }
                        _ => report.errors.push(e),
                    }
                }
            }
        }
        for (r, result) in self.removals.iter().zip(removal_results) {
            let path = dir.join(&r.name);
            match result {
                RemovalResult::Removed => {
                    if let Owner::Instance(id, _) = &r.owner {
                        report.changed_instances.insert(id.clone());
                    }
                    report.removed.push(RemovedFile {
                        path: path.clone(),
                        reason: r.owner.removal_reason(),
                    });
                    report.other.push((path.clone(), Change::Removed));
                    report.changed_files.push(path);
                }
                RemovalResult::Gone => {}
                RemovalResult::Skipped => restore(&mut final_files, &r.name),
                RemovalResult::Failed(e) => {
                    restore(&mut final_files, &r.name);
                    report.errors.push(e);
                }
            }
        }
        // In place: a second vector of every entry was megabytes at 10,000 instances.
        report.entries = self.entries;
        for (i, planned) in report.entries.iter_mut().enumerate() {
            if let Some(e) = entry_errors.remove(&i) {
                planned.result = Err(e);
            }
        }
        for (name, record) in &final_files {
            if let Record::Instance {
                instance_id,
                category,
                unproduced,
                ..
            } = record
                && *unproduced > 0
            {
                report.unproduced.push(super::Unproduced {
                    path: dir.join(name),
                    instance_id: instance_id.clone(),
                    category: category.clone(),
                    passes: *unproduced,
                });
            }
        }
        (report, final_files)
    }
}

/// `same`: the file holds the planned bytes. `None`: it also has the mode and owner, leave
/// it alone.
fn needed_change<C>(existing: Option<&Existing<C>>, same: bool, attrs: &Attrs) -> Option<Change> {
    match existing {
        None => Some(Change::Created),
        Some(e) if same && e.has(attrs) => None,
        Some(_) => Some(Change::Updated),
    }
}

/// The certificate of `certs` whose fingerprint (hex) is `fp`.
fn cert_of<'c>(certs: &HashMap<[u8; 32], &'c Cert>, fp: &str) -> Option<&'c Cert> {
    let mut digest = [0; 32];
    hex::decode_to_slice(fp, &mut digest).ok()?;
    certs.get(&digest).copied()
}

/// An error reading a file being compared, as [`Folder::read_file`] reports it.
fn read_error(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Io {
        path: path.to_path_buf(),
        op: "read",
        source,
    }
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(crate::cert::sha256(data))
}
