//! The published set (SPEC 14): what a leader writes at `{prefix}/bundle` and subscribers
//! read back. One JSON value: each distinct CA once, as normalised PEM keyed by its SHA-256;
//! per instance and category the fingerprints of its current CAs and of its overlap CAs with
//! when each was replaced; a generation number.
//!
//! Owns: the format, building the next set from the previous one and a pass (the overlap by
//! the store's own rule, `store::carry_over`), and reading a value back with every rule of
//! SPEC 6 applied again (etcd is another trust boundary: a value put there by hand is as
//! hostile as an API answer). Pure: no I/O, the clock comes in as an argument.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::cert::Cert;
use crate::store::{DesiredEntry, Evidence, KeptCa, StoreOptions};
use crate::validate::{Policy, ValidationError, VerifiedSignatures, validate_remembering};

/// The format's version, in the value.
pub const FORMAT: u32 = 1;

/// etcd's default request size limit (`--max-request-bytes`, 1.5 MiB): a larger set is
/// refused with its size rather than cut.
pub const MAX_BUNDLE_BYTES: usize = 1_572_864;

/// The value at `{prefix}/bundle`, as JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    /// [`FORMAT`].
    pub format: u32,
    /// One more than the set it replaced (1 for the first).
    pub generation: u64,
    /// When it was written, RFC 3339.
    pub published_at: String,
    /// The publisher that wrote it (`host/pid/random`).
    pub publisher: String,
    /// Every CA of the set once: SHA-256 (hex) -> normalised PEM.
    pub cas: BTreeMap<String, String>,
    /// Per instance, in the publisher's plan order.
    pub instances: Vec<BundleInstance>,
}

/// One instance of a [`Bundle`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleInstance {
    /// Its cloud id.
    pub id: String,
    /// Its name on the publisher (subscribers name files by it).
    pub name: Option<String>,
    /// One per category.
    pub entries: Vec<BundleEntry>,
}

/// One instance and category of a [`Bundle`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleEntry {
    /// The API's category.
    pub category: String,
    /// Fingerprints of its current CAs, in order.
    pub current: Vec<String>,
    /// Its replaced CAs still kept (the overlap), most recent first.
    pub overlap: Vec<BundleOverlap>,
}

/// A replaced CA still kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleOverlap {
    /// Its fingerprint.
    pub sha256: String,
    /// When it was replaced, RFC 3339.
    pub replaced_at: String,
}

/// A bundle read and validated: what a subscriber syncs.
#[derive(Clone, Debug)]
pub struct Published {
    /// Its generation.
    pub generation: u64,
    /// Per instance.
    pub instances: Vec<PublishedInstance>,
    /// The value as it was read, to build the next set from (publishers) and compare.
    pub bundle: Bundle,
}

/// One instance of a [`Published`] set.
#[derive(Clone, Debug)]
pub struct PublishedInstance {
    /// Its cloud id (checked: `[A-Za-z0-9-]{1,64}`).
    pub id: String,
    /// Its name on the publisher.
    pub name: Option<String>,
    /// Per category: the current CAs and the overlap CAs.
    pub entries: Vec<PublishedEntry>,
}

/// One instance and category, validated.
#[derive(Clone, Debug)]
pub struct PublishedEntry {
    /// The category.
    pub category: String,
    /// The current CAs.
    pub current: Vec<Cert>,
    /// The overlap CAs, with when each was replaced (an overlap CA past its notAfter is
    /// left out).
    pub kept: Vec<KeptCa>,
    /// A current CA has passed its notAfter since it was published: `current` is empty, and
    /// the instance fails (its files stay), as a download of an expired CA fails it.
    pub expired: bool,
}

/// Why a value at `{prefix}/bundle` is refused: any of it, and all of it is.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// Larger than etcd accepts.
    #[error("the set is {size} bytes, more than etcd's request limit of {MAX_BUNDLE_BYTES}")]
    TooLarge {
        /// Its size.
        size: usize,
    },
    /// Not the JSON of a bundle.
    #[error("not a certsync bundle: {0}")]
    Format(String),
    /// A CA that fails SPEC 6 (a private key, a non-CA, an expired one, garbage).
    #[error("CA {sha256}: {source}")]
    Invalid {
        /// Its key in `cas`.
        sha256: String,
        /// The rule that failed.
        #[source]
        source: crate::validate::ValidationError,
    },
    /// A CA whose PEM is not what its key says.
    #[error("CA {key}: its PEM's SHA-256 is {actual}")]
    Fingerprint {
        /// Its key in `cas`.
        key: String,
        /// What the PEM hashes to.
        actual: String,
    },
    /// An entry names a CA the set does not hold, or something else is inconsistent.
    #[error("{0}")]
    Inconsistent(String),
    /// Older than the set applied already.
    #[error("generation {got} is older than generation {applied}, applied already")]
    Older {
        /// The value's generation.
        got: u64,
        /// The generation applied.
        applied: u64,
    },
}

/// Reads a value and validates all of it: the format, every CA by SPEC 6 (one PEM
/// certificate, a CA, within its validity, its self-signature), each fingerprint against its
/// key, every reference, the ids; `min_generation` refuses an older set. `pins` gives the
/// pinned fingerprints of an instance id (a subscriber's configured instances).
pub fn read(
    bytes: &[u8],
    now: SystemTime,
    min_generation: u64,
    pins: &dyn Fn(&str) -> Vec<[u8; 32]>,
    verified: &VerifiedSignatures,
) -> Result<Published, BundleError> {
    if bytes.len() > MAX_BUNDLE_BYTES {
        return Err(BundleError::TooLarge { size: bytes.len() });
    }
    let bundle: Bundle =
        serde_json::from_slice(bytes).map_err(|e| BundleError::Format(e.to_string()))?;
    if bundle.format != FORMAT {
        return Err(BundleError::Format(format!(
            "format {} (this certsync reads format {FORMAT})",
            bundle.format
        )));
    }
    if bundle.generation < min_generation {
        return Err(BundleError::Older {
            got: bundle.generation,
            applied: min_generation,
        });
    }
    let policy = Policy { now, pins: &[] };
    let mut cas: BTreeMap<&str, Cert> = BTreeMap::new();
    // CAs valid when published that have expired since: a set holds them until its next
    // publication (an overlap CA until its notAfter, a failed instance's CA as it was), so
    // refusing the whole set for one would refuse every host's set, and a leader would
    // publish a fresh one without the overlap CAs and failed instances of the set before.
    let mut expired: BTreeSet<&str> = BTreeSet::new();
    for (key, pem) in &bundle.cas {
        let mut certs = match validate_remembering(pem.as_bytes(), &policy, verified) {
            Ok(certs) => certs,
            Err(ValidationError::Expired { .. }) => {
                expired.insert(key.as_str());
                continue;
            }
            Err(source) => {
                return Err(BundleError::Invalid {
                    sha256: crate::text::Untrusted(key).to_string(),
                    source,
                });
            }
        };
        if certs.len() != 1 {
            return Err(BundleError::Inconsistent(format!(
                "CA {}: holds {} certificates, not one",
                crate::text::Untrusted(key),
                certs.len()
            )));
        }
        let cert = certs.remove(0);
        if cert.fingerprint() != *key {
            return Err(BundleError::Fingerprint {
                key: crate::text::Untrusted(key).to_string(),
                actual: cert.fingerprint(),
            });
        }
        cas.insert(key, cert);
    }
    let lookup = |fp: &str, what: &str| {
        cas.get(fp).cloned().ok_or_else(|| {
            BundleError::Inconsistent(format!(
                "{what} names CA {}, which the set does not hold",
                crate::text::Untrusted(fp)
            ))
        })
    };
    let mut seen = BTreeSet::new();
    let mut instances = Vec::with_capacity(bundle.instances.len());
    for inst in &bundle.instances {
        if !crate::names::is_instance_id(&inst.id) || !seen.insert(inst.id.as_str()) {
            return Err(BundleError::Inconsistent(format!(
                "instance id {:?} is not [A-Za-z0-9-]{{1,64}} or comes twice",
                crate::text::Untrusted(&inst.id).to_string()
            )));
        }
        let pinned = pins(&inst.id);
        let mut categories = BTreeSet::new();
        let mut entries = Vec::with_capacity(inst.entries.len());
        for e in &inst.entries {
            let what = format!(
                "instance {} category {:?}",
                inst.id,
                crate::text::Untrusted(&e.category).to_string()
            );
            if !categories.insert(e.category.as_str()) || e.current.is_empty() {
                return Err(BundleError::Inconsistent(format!(
                    "{what} comes twice or has no current CA"
                )));
            }
            let is_expired = e.current.iter().any(|fp| expired.contains(fp.as_str()));
            let current = if is_expired {
                Vec::new()
            } else {
                e.current
                    .iter()
                    .map(|fp| lookup(fp, &what))
                    .collect::<Result<Vec<_>, _>>()?
            };
            if let Some(c) = current
                .iter()
                .find(|c| !pinned.is_empty() && !pinned.contains(&c.sha256))
            {
                return Err(BundleError::Inconsistent(format!(
                    "{what}: CA {} is not among the instance's pin_sha256",
                    c.fingerprint()
                )));
            }
            let kept = e
                .overlap
                .iter()
                .filter(|o| !expired.contains(o.sha256.as_str()))
                .map(|o| {
                    let replaced_at = parse_time(&o.replaced_at).ok_or_else(|| {
                        BundleError::Inconsistent(format!(
                            "{what}: replaced_at {:?} is not RFC 3339",
                            crate::text::Untrusted(&o.replaced_at).to_string()
                        ))
                    })?;
                    Ok(KeptCa {
                        cert: lookup(&o.sha256, &what)?,
                        replaced_at,
                    })
                })
                .collect::<Result<Vec<_>, BundleError>>()?;
            entries.push(PublishedEntry {
                category: e.category.clone(),
                current,
                kept,
                expired: is_expired,
            });
        }
        instances.push(PublishedInstance {
            id: inst.id.clone(),
            name: inst.name.clone(),
            entries,
        });
    }
    Ok(Published {
        generation: bundle.generation,
        instances,
        bundle,
    })
}

fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

/// What one pass gives a publisher: each synced instance's entries (its id, name and
/// categories), and the ids of the instances in the plan that did not sync (their previous
/// entries are kept as they were).
#[derive(Debug, Default)]
pub struct PassSet<'a> {
    /// The synced instances: id, name, and their entries.
    pub synced: Vec<(&'a str, Option<&'a str>, Vec<&'a DesiredEntry>)>,
    /// The instances of the plan that failed this pass.
    pub failed: BTreeSet<&'a str>,
}

/// The set after a pass: the synced instances' current CAs, their overlap carried over from
/// `prev` by the store's rule (`opts`, `evidence`), the failed instances as `prev` had them;
/// instances outside the plan leave. The generation and stamp are `prev`'s, to compare;
/// [`stamp`] sets them for a write.
pub fn next(
    prev: Option<&Published>,
    pass: &PassSet<'_>,
    now: OffsetDateTime,
    opts: &StoreOptions,
    evidence: &Evidence,
) -> Bundle {
    let prev_bundle = prev.map(|p| &p.bundle);
    // The notAfter of every CA the set may name: the previous set's and this pass's.
    let mut not_after: BTreeMap<String, OffsetDateTime> = BTreeMap::new();
    let mut pems: BTreeMap<String, String> = BTreeMap::new();
    if let Some(prev) = prev {
        for e in prev.instances.iter().flat_map(|i| &i.entries) {
            for c in e.current.iter().chain(e.kept.iter().map(|k| &k.cert)) {
                not_after.insert(c.fingerprint(), c.not_after);
            }
        }
    }
    let prev_of = |id: &str| prev_bundle.and_then(|b| b.instances.iter().find(|i| i.id == id));
    let mut instances = Vec::new();
    // Synced instances with their entries, then the failed ones (`None`: keep as they were).
    type Planned<'p> = (&'p str, Option<&'p str>, Option<&'p Vec<&'p DesiredEntry>>);
    let mut order: Vec<Planned<'_>> = pass
        .synced
        .iter()
        .map(|(id, name, e)| (*id, *name, Some(e)))
        .collect();
    for id in &pass.failed {
        order.push((id, None, None));
    }
    for (id, name, entries) in order {
        match entries {
            Some(entries) => {
                let prev_inst = prev_of(id);
                let mut out = Vec::with_capacity(entries.len());
                for entry in entries {
                    for c in &entry.certs {
                        not_after.insert(c.fingerprint(), c.not_after);
                        pems.entry(c.fingerprint()).or_insert_with(|| c.to_pem());
                    }
                    let current: Vec<String> = entry.certs.iter().map(Cert::fingerprint).collect();
                    let prev_entry = prev_inst
                        .and_then(|i| i.entries.iter().find(|e| e.category == entry.category));
                    let prev_replaced: Vec<crate::store::Replaced> = prev_entry
                        .map(|e| {
                            e.overlap
                                .iter()
                                .filter_map(|o| {
                                    Some(crate::store::Replaced {
                                        sha256: o.sha256.clone(),
                                        replaced_at: parse_time(&o.replaced_at)?,
                                        not_after: *not_after.get(&o.sha256)?,
                                    })
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    let prev_current: &[String] =
                        prev_entry.map(|e| e.current.as_slice()).unwrap_or(&[]);
                    let replaced = crate::store::carry_over(
                        crate::store::Previous {
                            current: prev_current,
                            replaced: &prev_replaced,
                        },
                        &current,
                        |fp| not_after.get(fp).copied(),
                        now,
                        opts,
                        evidence.get(id).map(Vec::as_slice),
                    );
                    let mut replaced = replaced;
                    replaced.sort_by(|a, b| {
                        b.replaced_at
                            .cmp(&a.replaced_at)
                            .then_with(|| a.sha256.cmp(&b.sha256))
                    });
                    out.push(BundleEntry {
                        category: entry.category.clone(),
                        current,
                        overlap: replaced
                            .iter()
                            .map(|r| BundleOverlap {
                                sha256: r.sha256.clone(),
                                replaced_at: crate::cert::rfc3339(r.replaced_at),
                            })
                            .collect(),
                    });
                }
                instances.push(BundleInstance {
                    id: id.to_string(),
                    name: name.map(str::to_string),
                    entries: out,
                });
            }
            None => {
                if let Some(kept) = prev_of(id) {
                    instances.push(kept.clone());
                }
            }
        }
    }
    // Every CA the set names, once: this pass's PEMs, else the previous set's.
    let mut cas = BTreeMap::new();
    for inst in &instances {
        for e in &inst.entries {
            for fp in e.current.iter().chain(e.overlap.iter().map(|o| &o.sha256)) {
                if let Some(pem) = pems
                    .get(fp)
                    .or_else(|| prev_bundle.and_then(|b| b.cas.get(fp)))
                {
                    cas.insert(fp.clone(), pem.clone());
                }
            }
        }
    }
    Bundle {
        format: FORMAT,
        generation: prev_bundle.map_or(0, |b| b.generation),
        published_at: prev_bundle.map_or_else(String::new, |b| b.published_at.clone()),
        publisher: prev_bundle.map_or_else(String::new, |b| b.publisher.clone()),
        cas,
        instances,
    }
}

/// The overlap CAs of `set` that a pass's own entries do not know of, by instance id and
/// category: what a publisher's own folder keeps so that it holds what it publishes (a new
/// leader continues from the published set, overlap included). Their certificates are the
/// previous set's (`prev`), where every overlap CA of `set` comes from.
pub fn kept_of(set: &Bundle, prev: Option<&Published>) -> BTreeMap<(String, String), Vec<KeptCa>> {
    let mut certs: BTreeMap<String, &Cert> = BTreeMap::new();
    if let Some(prev) = prev {
        for e in prev.instances.iter().flat_map(|i| &i.entries) {
            for c in e.current.iter().chain(e.kept.iter().map(|k| &k.cert)) {
                certs.entry(c.fingerprint()).or_insert(c);
            }
        }
    }
    let mut out = BTreeMap::new();
    for inst in &set.instances {
        for e in &inst.entries {
            let kept: Vec<KeptCa> = e
                .overlap
                .iter()
                .filter_map(|o| {
                    Some(KeptCa {
                        cert: (*certs.get(&o.sha256)?).clone(),
                        replaced_at: parse_time(&o.replaced_at)?,
                    })
                })
                .collect();
            if !kept.is_empty() {
                out.insert((inst.id.clone(), e.category.clone()), kept);
            }
        }
    }
    out
}

/// Whether two sets hold the same CAs for the same instances (generation and stamp aside).
pub fn same_set(a: &Bundle, b: &Bundle) -> bool {
    a.cas == b.cas && a.instances == b.instances
}

/// `bundle` as the next generation after `prev_generation`, written by `publisher` at `now`,
/// as bytes; refused when larger than etcd accepts.
pub fn stamp(
    mut bundle: Bundle,
    prev_generation: u64,
    publisher: &str,
    now: OffsetDateTime,
) -> Result<(Bundle, Vec<u8>), BundleError> {
    bundle.generation = prev_generation.saturating_add(1);
    bundle.published_at = crate::cert::rfc3339(now);
    bundle.publisher = publisher.to_string();
    let bytes = serde_json::to_vec(&bundle).map_err(|e| BundleError::Format(e.to_string()))?;
    if bytes.len() > MAX_BUNDLE_BYTES {
        return Err(BundleError::TooLarge { size: bytes.len() });
    }
    Ok((bundle, bytes))
}

#[cfg(test)]
mod tests;
