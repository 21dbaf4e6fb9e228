//! Writing a manifest: the one serialisation of [`Manifest`](super::Manifest), streamed to
//! any writer from borrowed parts.
//!
//! Owns: [`write_manifest`] and [`Merged`]. Must not: decide what the records say (the store
//! does) or do I/O itself (it writes to what it is given).

use std::collections::BTreeMap;
use std::io;

use serde::{Serialize, Serializer};

use super::{MANIFEST_VERSION, ManifestLayout, Record, is_default, state_as_json};

/// Writes the manifest of `files` (a map of file names to [`Record`]s, in name order) and
/// `state` to `out` as [`Manifest::to_bytes`] gives it, byte for byte, without building it
/// first: at 10,000 instances the manifest is megabytes, and the store writes it twice a
/// pass. The records are borrowed (see [`Merged`]), never copied to be written.
pub(crate) fn write_manifest<F: Serialize, S: Serialize + Default + PartialEq>(
    out: &mut (impl io::Write + ?Sized),
    layout: ManifestLayout,
    files: F,
    state: &S,
) -> io::Result<()> {
    let manifest = ManifestOut {
        version: MANIFEST_VERSION,
        layout,
        files,
        state,
    };
    serde_json::to_writer_pretty(&mut *out, &manifest)?;
    out.write_all(b"\n")
}

/// What [`Manifest`] serialises as, borrowing its parts: the same fields, in the same order,
/// under the same rules.
#[derive(Serialize)]
#[serde(bound(serialize = "F: Serialize, S: Serialize + Default + PartialEq"))]
struct ManifestOut<'a, F, S> {
    version: u32,
    #[serde(skip_serializing_if = "ManifestLayout::is_flat")]
    layout: ManifestLayout,
    files: F,
    #[serde(
        skip_serializing_if = "is_default_ref",
        serialize_with = "state_as_json"
    )]
    state: &'a S,
}

/// Two sets of records serialised as one map in name order, a name in both taken from
/// `first`: the manifest of a commit's first step (the new records and the old ones they
/// do not replace) written without merging them into a new map.
pub(crate) struct Merged<'a> {
    /// The records that win.
    pub first: &'a BTreeMap<String, Record>,
    /// The records kept where `first` has none.
    pub then: &'a BTreeMap<String, Record>,
}

impl Serialize for Merged<'_> {
    fn serialize<Ser: Serializer>(&self, out: Ser) -> Result<Ser::Ok, Ser::Error> {
        let mut first = self.first.iter().peekable();
        let mut then = self.then.iter().peekable();
        let merged = std::iter::from_fn(move || match (first.peek(), then.peek()) {
            (Some((a, _)), Some((b, _))) if a == b => {
                then.next();
                first.next()
            }
            (Some((a, _)), Some((b, _))) if b < a => then.next(),
            (Some(_), _) => first.next(),
            (None, _) => then.next(),
        });
        out.collect_map(merged)
    }
}

fn is_default_ref<S: Default + PartialEq>(state: &&S) -> bool {
    is_default(*state)
}

#[cfg(test)]
mod tests {
    use super::super::{Manifest, Replaced};
    use super::*;

    const FP: &str = "0000000000000000000000000000000000000000000000000000000000000000";
    const FP2: &str = "1111111111111111111111111111111111111111111111111111111111111111";

    fn instance(id: &str) -> Record {
        Record::Instance {
            sha256: FP.into(),
            instance_id: id.into(),
            category: "international".into(),
            current: vec![FP.into()],
            replaced: vec![Replaced {
                sha256: FP2.into(),
                replaced_at: time::macros::datetime!(2024-01-02 03:04:05.5 UTC),
                not_after: time::macros::datetime!(2030-01-01 00:00 UTC),
            }],
            unproduced: 2,
        }
    }

    /// The manifest used to be built whole with `serde_json::to_vec_pretty` (and the first
    /// one of a commit from a copy of every record): the streamed bytes are those, exactly.
    #[test]
    fn the_streamed_manifest_is_the_serde_form_byte_for_byte() {
        let mut files = BTreeMap::new();
        files.insert("a.crt".to_string(), instance("i1"));
        files.insert("b.crt".to_string(), Record::Bundle { sha256: FP.into() });
        for layout in [ManifestLayout::Flat, ManifestLayout::AtomicDir] {
            for state in [None, Some(serde_json::json!({"owed": ["x"]}))] {
                let m = Manifest::with_state(layout, files.clone(), state);
                let mut want = serde_json::to_vec_pretty(&m).unwrap();
                want.push(b'\n');
                assert_eq!(m.to_bytes(), want);
            }
        }
    }

    #[test]
    fn merged_records_are_the_union_in_name_order_the_first_winning() {
        let mut first = BTreeMap::new();
        first.insert("b.crt".to_string(), Record::Bundle { sha256: FP2.into() });
        first.insert("d.crt".to_string(), instance("new"));
        let mut then = BTreeMap::new();
        then.insert("a.crt".to_string(), instance("old-a"));
        then.insert("b.crt".to_string(), Record::Bundle { sha256: FP.into() });
        then.insert("c.crt".to_string(), Record::Hash { sha256: FP.into() });
        then.insert("e.crt".to_string(), instance("old-e"));
        let mut union = then.clone();
        union.extend(first.clone());
        let state: Option<serde_json::Value> = None;
        let mut merged = Vec::new();
        write_manifest(
            &mut merged,
            ManifestLayout::Flat,
            Merged {
                first: &first,
                then: &then,
            },
            &state,
        )
        .unwrap();
        let want = Manifest::with_state(ManifestLayout::Flat, union, state.clone()).to_bytes();
        assert_eq!(
            String::from_utf8(merged).unwrap(),
            String::from_utf8(want).unwrap()
        );
        // Either side empty.
        let empty = BTreeMap::new();
        for (a, b) in [(&first, &empty), (&empty, &first)] {
            let mut out = Vec::new();
            write_manifest(
                &mut out,
                ManifestLayout::Flat,
                Merged { first: a, then: b },
                &state,
            )
            .unwrap();
            let want =
                Manifest::with_state(ManifestLayout::Flat, first.clone(), state.clone()).to_bytes();
            assert_eq!(out, want);
        }
    }
}
