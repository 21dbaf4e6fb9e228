//! The files derived from the instance records of a plan: the bundle of every CA, the
//! `<subject_hash>.<n>` files for OpenSSL's `-CApath`, and the PKCS#12 truststore (SPEC 7).
//!
//! Owns: what each derived file holds and when it is written, kept or retired (another name,
//! an option switched off). Must not: plan instance files (the parent module does) or write
//! anything.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::{Content, Owner, Planner, Write, needed_change, pem_file, read_error, sha256_hex};
use crate::cert::Cert;
use crate::store::manifest::Record;
use crate::store::{Change, StoreError, truststore};

impl<'a> Planner<'a> {
    /// The bundle and hash files, derived from the instance records of `final_files`.
    /// Returns that set of CAs (by fingerprint) for the truststore.
    pub(super) fn plan_bundle_and_hashes(&mut self) -> BTreeMap<[u8; 32], &'a Cert> {
        // Every CA of every managed instance file, by fingerprint (the BTreeMap orders them:
        // the order of the digests' bytes is that of their lower-case hex).
        let mut set: BTreeMap<[u8; 32], &'a Cert> = BTreeMap::new();
        for record in self.final_files.values() {
            if let Record::Instance {
                current, replaced, ..
            } = record
            {
                for fp in current.iter().chain(replaced.iter().map(|r| &r.sha256)) {
                    if let Some(cert) = super::cert_of(&self.certs, fp) {
                        set.insert(cert.sha256, cert);
                    }
                }
            }
        }

        // An empty bundle is only written over a managed one (so that stale CAs leave it);
        // creating an empty file would be a change with nothing in it (and run hooks).
        let bundle = self.opts.bundle.as_ref().filter(|name| {
            !set.is_empty() || matches!(self.old.get(name.as_str()), Some(Record::Bundle { .. }))
        });
        if let Some(bundle) = bundle {
            let cas: Vec<&Cert> = set.values().copied().collect();
            self.plan_file(
                bundle,
                &cas,
                |sha256| Record::Bundle { sha256 },
                Owner::Bundle,
            );
        }
        self.retire(
            |r| matches!(r, Record::Bundle { .. }),
            self.opts.bundle.clone(),
            Owner::Bundle,
        );

        let mut hashes: BTreeMap<String, &Cert> = BTreeMap::new();
        if self.opts.capath {
            let mut counts: HashMap<u32, usize> = HashMap::new();
            // `set` iterates in fingerprint order, so `n` counts by fingerprint.
            for cert in set.values() {
                let n = counts.entry(cert.subject_hash).or_insert(0);
                hashes.insert(format!("{}.{}", cert.subject_hash_hex(), n), cert);
                *n += 1;
            }
        }
        for (name, cert) in &hashes {
            self.plan_file(name, &[cert], |sha256| Record::Hash { sha256 }, Owner::Hash);
        }
        // Hash files are derived: stale ones go whatever `prune` says.
        for (name, record) in self.old {
            if matches!(record, Record::Hash { .. })
                && !hashes.contains_key(name)
                && !self.final_files.contains_key(name)
            {
                self.remove(name, Owner::Hash);
            }
        }
        set
    }

    /// A managed bundle or truststore under another name than `current` (the option changed
    /// or was removed): removed with `prune`, else kept as it is.
    fn retire(&mut self, kind: impl Fn(&Record) -> bool, current: Option<String>, owner: Owner) {
        for (name, record) in self.old {
            if kind(record)
                && current.as_ref() != Some(name)
                && !self.final_files.contains_key(name)
            {
                if self.opts.prune {
                    self.remove(name, owner.clone());
                } else {
                    self.final_files.insert(name.clone(), record.clone());
                }
            }
        }
    }

    /// The PKCS#12 truststore: every CA of `set` but SM2 ones (Java cannot read them). It is
    /// rewritten only when its set of CAs, the password, its owner or mode changed, or it was
    /// changed behind certsync's back: the encoding is randomised, so bytes say nothing.
    /// Any failure (password file, encoding, a file in the way) is an error of the truststore
    /// alone: it keeps its old file and record, and the other files go ahead.
    pub(super) fn plan_truststore(&mut self, set: &BTreeMap<[u8; 32], &'a Cert>) {
        self.retire(
            |r| matches!(r, Record::Truststore { .. }),
            self.opts.pkcs12.clone(),
            Owner::Truststore,
        );
        let Some(name) = self.opts.pkcs12.clone() else {
            return;
        };
        let old = self.old.get(&name);
        let is_truststore = |r: &Record| matches!(r, Record::Truststore { .. });
        // Like the bundle: not created while it would be empty.
        if set.is_empty() && !old.is_some_and(is_truststore) {
            return;
        }
        let path = self.opts.dir.join(&name);
        let keep_old = |p: &mut Self| {
            if let Some(r) = old.filter(|r| is_truststore(r)) {
                p.final_files.insert(name.clone(), r.clone());
            }
        };
        if let Some(other) = self
            .final_files
            .get(&name)
            .or(old.filter(|r| !is_truststore(r)))
        {
            self.errors.push(StoreError::NameConflict {
                path,
                other: other.describe(),
            });
            return;
        }
        let existing = match self.read(&name) {
            Ok(existing) => existing,
            Err(e) => {
                self.errors.push(e);
                keep_old(self);
                return;
            }
        };
        if existing.is_some() && old.is_none() {
            self.errors.push(StoreError::Unmanaged { path });
            return;
        }
        let password_file = self.opts.pkcs12_password_file.as_deref();
        let password = match truststore::password(password_file) {
            Ok(p) => p,
            Err(source) => {
                self.errors.push(StoreError::PasswordFile {
                    path,
                    password_file: password_file.map(Path::to_path_buf).unwrap_or_default(),
                    source,
                });
                keep_old(self);
                return;
            }
        };
        let (included, left_out): (Vec<&Cert>, Vec<&Cert>) =
            set.values().copied().partition(|c| !c.sm2);
        let cas: Vec<String> = included.iter().map(|c| c.fingerprint()).collect();
        if let (
            Some(Record::Truststore {
                sha256,
                cas: old_cas,
            }),
            Some(e),
        ) = (old, &existing)
            && *old_cas == cas
            && sha256_hex(&e.content) == *sha256
            && e.has(&self.attrs)
            && truststore::opens_with(&e.content, &password)
        {
            self.final_files.insert(name, old.expect("matched").clone());
            return;
        }
        let content = match truststore::encode(&included, &password) {
            Ok(c) => c,
            Err(source) => {
                self.errors.push(StoreError::Truststore { path, source });
                keep_old(self);
                return;
            }
        };
        for cert in &left_out {
            tracing::warn!(
                path = %path.display(),
                subject = %cert.subject,
                fingerprint = %cert.fingerprint(),
                "SM2 certificate left out of the PKCS#12 truststore: Java cannot read it"
            );
        }
        let record = Record::Truststore {
            sha256: sha256_hex(&content),
            cas,
        };
        self.writes.push(Write {
            name: name.clone(),
            content: Content::Bytes(content),
            change: if existing.is_some() {
                Change::Updated
            } else {
                Change::Created
            },
            owner: Owner::Truststore,
        });
        self.final_files.insert(name, record);
    }

    /// Plans a bundle or hash file: the PEM of `cas`, recorded as `record` of its digest.
    fn plan_file(&mut self, name: &str, cas: &[&Cert], record: fn(String) -> Record, owner: Owner) {
        let path = self.opts.dir.join(name);
        let kind = std::mem::discriminant(&record(String::new()));
        let same_kind = |r: &Record| std::mem::discriminant(r) == kind;
        if let Some(other) = self.final_files.get(name) {
            self.errors.push(StoreError::NameConflict {
                path,
                other: other.describe(),
            });
            return;
        }
        let old = self.old.get(name);
        if let Some(other) = old.filter(|r| !same_kind(r)) {
            self.errors.push(StoreError::NameConflict {
                path,
                other: other.describe(),
            });
            return;
        }
        let keep_old = |p: &mut Self, e: StoreError| {
            p.errors.push(e);
            if let Some(r) = old {
                p.final_files.insert(name.to_string(), r.clone());
            }
        };
        let mut existing = match self.open(name) {
            Ok(existing) => existing,
            Err(e) => return keep_old(self, e),
        };
        if existing.is_some() && old.is_none() {
            self.errors.push(StoreError::Unmanaged { path });
            return;
        }
        let (sha256, same) = match pem_file(cas, existing.as_mut()) {
            Ok(done) => done,
            Err(e) => return keep_old(self, read_error(&path, e)),
        };
        if let Some(change) = needed_change(existing.as_ref(), same, &self.attrs) {
            let content = self.pem_content(cas);
            self.writes.push(Write {
                name: name.to_string(),
                content,
                change,
                owner,
            });
        }
        self.final_files.insert(name.to_string(), record(sha256));
    }
}
