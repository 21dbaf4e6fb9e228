//! The manifest `.certsync-manifest.json`: which files of the trust folder certsync owns, their
//! SHA-256, and per instance file the current CAs and the replaced CAs still inside the overlap.
//!
//! Owns: the on-disk JSON shape, parsing it strictly (a manifest that names a path outside the
//! folder is corrupt, not obeyed) and serialising it deterministically, and the daemon's state
//! in it (`state`): read as opaque JSON by the one parser ([`Manifest::parse`], which `inspect`
//! and the fuzz target use too), then turned into the store's typed state
//! ([`Manifest::into_typed`]). It does no I/O; the store reads and writes the bytes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, Serializer};
use time::OffsetDateTime;

use super::OpaqueState;

mod out;
pub(crate) use out::{Merged, write_manifest};

/// File name of the manifest inside the trust folder.
pub(crate) const MANIFEST_NAME: &str = crate::names::MANIFEST_FILE_NAME;

/// The only manifest format this code reads and writes.
const MANIFEST_VERSION: u32 = 1;

/// The whole manifest: every managed file by its name inside the folder, and the daemon's
/// state `S` (opaque JSON as parsed, typed in the store).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
#[serde(bound(
    serialize = "S: Serialize + Default + PartialEq",
    deserialize = "S: Deserialize<'de> + Default"
))]
pub(crate) struct Manifest<S = OpaqueState> {
    version: u32,
    /// How the managed names are laid out on disk. Left out for `flat`, so a flat folder's
    /// manifest is the same as before layouts existed.
    #[serde(default, skip_serializing_if = "ManifestLayout::is_flat")]
    pub layout: ManifestLayout,
    /// Managed files by their visible name (a plain file name, no `/`). A BTreeMap keeps the
    /// serialisation sorted, so equal states give byte-identical manifests.
    pub files: BTreeMap<String, Record>,
    /// State the daemon keeps with the folder (hooks still owed a run, discovered instances),
    /// saved in the same atomic writes as the records it goes with. Left out while it is the
    /// default (nothing to keep); written through a JSON value, whose object keys are sorted,
    /// so a typed state gives the same bytes as the opaque JSON written before states were
    /// typed.
    #[serde(
        default,
        skip_serializing_if = "is_default",
        serialize_with = "state_as_json"
    )]
    pub state: S,
}

/// The layout the folder may be in. `AtomicDir` is recorded *before* the first `..<timestamp>`
/// folder is made and stays until the last one is gone, so that certsync only ever removes
/// `..data` and `..<timestamp>` folders while its manifest says it made them.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum ManifestLayout {
    /// Every managed name is a regular file.
    #[default]
    Flat,
    /// Managed names are symlinks `name -> ..data/name` (or, mid-switch, regular files), and
    /// `..data` and `..<timestamp>` folders may exist.
    AtomicDir,
}

impl ManifestLayout {
    fn is_flat(&self) -> bool {
        *self == ManifestLayout::Flat
    }
}

/// One managed file.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub(crate) enum Record {
    /// The file of one instance and category.
    Instance {
        /// SHA-256 (hex) of the content certsync last wrote.
        sha256: String,
        instance_id: String,
        category: String,
        /// Fingerprints of the current CAs, in file order.
        current: Vec<String>,
        /// CAs that left the current set and are kept for the overlap, most recent first.
        #[serde(default)]
        replaced: Vec<Replaced>,
        /// Consecutive counting passes in which no instance produced this file (SPEC 5.3);
        /// it is removed when this reaches `UNPRODUCED_PASSES`. Left out while 0.
        #[serde(default, skip_serializing_if = "is_zero")]
        unproduced: u32,
    },
    /// The bundle of every CA.
    Bundle { sha256: String },
    /// A `<subject_hash>.<n>` file.
    Hash { sha256: String },
    /// The PKCS#12 truststore. Its encoding is randomised (salts), so whether it must be
    /// rewritten is decided by the set of CAs it holds, not by its bytes.
    Truststore {
        /// SHA-256 (hex) of the bytes certsync last wrote (to notice a file changed behind it).
        sha256: String,
        /// Fingerprints of the CAs it holds, sorted.
        cas: Vec<String>,
    },
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

fn is_default<S: Default + PartialEq>(state: &S) -> bool {
    *state == S::default()
}

/// The state as a `serde_json::Value` (keys sorted), then as that value.
fn state_as_json<S: Serialize, Ser: Serializer>(
    state: &S,
    out: Ser,
) -> Result<Ser::Ok, Ser::Error> {
    serde_json::to_value(state)
        .map_err(serde::ser::Error::custom)?
        .serialize(out)
}

impl Record {
    /// Passes in which nothing produced this instance file (0 for other records).
    pub(crate) fn unproduced(&self) -> u32 {
        match self {
            Record::Instance { unproduced, .. } => *unproduced,
            _ => 0,
        }
    }

    /// The same record with another unproduced count.
    pub(crate) fn with_unproduced(&self, passes: u32) -> Record {
        let mut r = self.clone();
        if let Record::Instance { unproduced, .. } = &mut r {
            *unproduced = passes;
        }
        r
    }

    /// SHA-256 (hex) of the content the record describes.
    pub(crate) fn sha256(&self) -> &str {
        match self {
            Record::Instance { sha256, .. }
            | Record::Bundle { sha256 }
            | Record::Hash { sha256 }
            | Record::Truststore { sha256, .. } => sha256,
        }
    }

    /// `(instance_id, category)` of an instance file.
    pub(crate) fn owner(&self) -> Option<(&str, &str)> {
        match self {
            Record::Instance {
                instance_id,
                category,
                ..
            } => Some((instance_id, category)),
            _ => None,
        }
    }

    /// A short description for conflict messages.
    pub(crate) fn describe(&self) -> String {
        match self {
            Record::Instance {
                instance_id,
                category,
                ..
            } => format!("the file of instance {instance_id} category {category}"),
            Record::Bundle { .. } => "a bundle certsync manages".into(),
            Record::Hash { .. } => "a hash file certsync manages".into(),
            Record::Truststore { .. } => "the truststore certsync manages".into(),
        }
    }
}

/// A CA replaced in an instance file, kept until `replaced_at + rotation_overlap` or its
/// `not_after`, whichever comes first.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct Replaced {
    /// SHA-256 fingerprint (hex) of the CA.
    pub sha256: String,
    /// When the CA left the current set (RFC 3339).
    #[serde(with = "rfc3339")]
    pub replaced_at: OffsetDateTime,
    /// The CA's own notAfter (RFC 3339).
    #[serde(with = "rfc3339")]
    pub not_after: OffsetDateTime,
}

impl<S: Default> Default for Manifest<S> {
    fn default() -> Self {
        Manifest {
            version: MANIFEST_VERSION,
            layout: ManifestLayout::Flat,
            files: BTreeMap::new(),
            state: S::default(),
        }
    }
}

impl<S> Manifest<S> {
    /// A manifest of `files` (records) carrying the daemon's `state`.
    pub(crate) fn with_state(
        layout: ManifestLayout,
        files: BTreeMap<String, Record>,
        state: S,
    ) -> Self {
        Manifest {
            version: MANIFEST_VERSION,
            layout,
            files,
            state,
        }
    }
}

impl<S: Serialize + Default + PartialEq> Manifest<S> {
    /// Deterministic pretty JSON with a final newline.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        write_manifest(&mut out, self.layout, &self.files, &self.state)
            .expect("the manifest always serialises into memory");
        out
    }
}

impl Manifest {
    /// The same manifest with its state read as `S`. A state that is not an `S` (a
    /// hand-edited manifest, or one of another version) becomes the default, and the error
    /// says why: the records stay usable either way.
    pub(crate) fn into_typed<S: for<'de> Deserialize<'de> + Default>(
        self,
    ) -> (Manifest<S>, Option<serde_json::Error>) {
        let (state, error) = match self.state {
            None => (S::default(), None),
            Some(value) => match S::deserialize(value) {
                Ok(state) => (state, None),
                Err(e) => (S::default(), Some(e)),
            },
        };
        (Manifest::with_state(self.layout, self.files, state), error)
    }

    /// Parses and checks a manifest. The error says what is wrong; the caller adds the path
    /// and what the operator should do.
    pub(crate) fn parse(data: &[u8]) -> Result<Manifest, ManifestError> {
        let manifest: Manifest = serde_json::from_slice(data).map_err(ManifestError::Json)?;
        if manifest.version != MANIFEST_VERSION {
            return Err(ManifestError::Version {
                version: manifest.version,
            });
        }
        for (name, record) in &manifest.files {
            // A hand-edited or damaged manifest must not steer removals outside the folder.
            check_file_name(name).map_err(|reason| ManifestError::FileName {
                name: name.clone(),
                reason,
            })?;
            if !is_hex_digest(record.sha256()) {
                return Err(ManifestError::Sha256 { name: name.clone() });
            }
            let fingerprints: Vec<&String> = match record {
                Record::Instance {
                    current, replaced, ..
                } => current
                    .iter()
                    .chain(replaced.iter().map(|r| &r.sha256))
                    .collect(),
                Record::Truststore { cas, .. } => cas.iter().collect(),
                _ => Vec::new(),
            };
            if let Some(fp) = fingerprints.into_iter().find(|fp| !is_hex_digest(fp)) {
                return Err(ManifestError::Fingerprint {
                    name: name.clone(),
                    fingerprint: fp.clone(),
                });
            }
        }
        Ok(manifest)
    }
}

/// Why a manifest's bytes are not one certsync can use.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ManifestError {
    /// Not JSON, or not the manifest's shape: serde_json's error (with its line and column),
    /// kept as the source.
    #[error("{0}")]
    Json(#[source] serde_json::Error),
    /// A format version this code does not read.
    #[error("version {version} is not supported (expected {MANIFEST_VERSION})")]
    Version {
        /// The version the manifest declares.
        version: u32,
    },
    /// A file name certsync would never create (outside the folder, reserved).
    #[error("file name {name:?}: {reason}")]
    FileName {
        /// The name as the manifest has it.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A record whose own digest is not a SHA-256 in hex.
    #[error("file {name:?}: sha256 is not 64 lower-case hex digits")]
    Sha256 {
        /// The record's file name.
        name: String,
    },
    /// A CA fingerprint of a record that is not a SHA-256 in hex.
    #[error("file {name:?}: fingerprint {fingerprint:?} is not 64 lower-case hex digits")]
    Fingerprint {
        /// The record's file name.
        name: String,
        /// The fingerprint as written.
        fingerprint: String,
    },
}

/// Rules for a name certsync may create in the flat trust folder: one path component, not
/// hidden-reserved, no NUL.
pub(crate) fn check_file_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty");
    }
    if name == "." || name == ".." {
        return Err("not a file name");
    }
    if name.contains('/') || name.contains('\0') {
        return Err("must be a plain file name inside the trust folder (no '/' or NUL)");
    }
    if name.starts_with(".certsync") {
        return Err("names starting with .certsync are reserved for certsync's own files");
    }
    if name.starts_with("..") {
        return Err("names starting with .. are reserved for the atomic-dir layout (..data)");
    }
    Ok(())
}

fn is_hex_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// serde helpers for RFC 3339 timestamps (the workspace's `time` has no serde feature).
mod rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;

    pub(super) fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        let text = t.format(&Rfc3339).map_err(serde::ser::Error::custom)?;
        s.serialize_str(&text)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        let text = String::deserialize(d)?;
        OffsetDateTime::parse(&text, &Rfc3339).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "0000000000000000000000000000000000000000000000000000000000000000";

    fn sample() -> Manifest {
        let mut files = BTreeMap::new();
        files.insert(
            "a.crt".to_string(),
            Record::Instance {
                sha256: FP.into(),
                instance_id: "i1".into(),
                category: "international".into(),
                current: vec![FP.into()],
                replaced: vec![Replaced {
                    sha256: FP.into(),
                    replaced_at: time::macros::datetime!(2024-01-02 03:04:05.5 UTC),
                    not_after: time::macros::datetime!(2030-01-01 00:00 UTC),
                }],
                unproduced: 0,
            },
        );
        files.insert("b.crt".to_string(), Record::Bundle { sha256: FP.into() });
        files.insert("12345678.0".to_string(), Record::Hash { sha256: FP.into() });
        files.insert(
            "truststore.p12".to_string(),
            Record::Truststore {
                sha256: FP.into(),
                cas: vec![FP.into()],
            },
        );
        Manifest::with_state(ManifestLayout::Flat, files, None)
    }

    #[test]
    fn round_trips_and_is_deterministic() {
        let m = sample();
        let bytes = m.to_bytes();
        assert_eq!(Manifest::parse(&bytes).unwrap(), m);
        assert_eq!(Manifest::parse(&bytes).unwrap().to_bytes(), bytes);
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.contains("\"kind\": \"instance\""));
        assert!(text.contains("\"replaced_at\": \"2024-01-02T03:04:05.5Z\""));
        assert!(!text.contains("layout"), "flat is left out: {text}");
        let atomic = Manifest::with_state(ManifestLayout::AtomicDir, m.files.clone(), None);
        let text = String::from_utf8(atomic.to_bytes()).unwrap();
        assert!(text.contains("\"layout\": \"atomic-dir\""), "{text}");
        assert_eq!(Manifest::parse(text.as_bytes()).unwrap(), atomic);
    }

    /// A typed state whose fields are declared out of alphabetical order.
    #[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
    struct Typed {
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        zeta: Vec<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        alpha: Option<String>,
    }

    #[test]
    fn a_typed_state_is_written_as_the_opaque_json_was() {
        let typed = Typed {
            zeta: vec![1, 2],
            alpha: Some("a".into()),
        };
        let files = sample().files;
        let opaque = Manifest::with_state(
            ManifestLayout::Flat,
            files.clone(),
            Some(serde_json::to_value(&typed).unwrap()),
        );
        let bytes =
            Manifest::with_state(ManifestLayout::Flat, files.clone(), typed.clone()).to_bytes();
        // Keys sorted, as a `serde_json::Value` holds them: the same bytes as before.
        assert_eq!(bytes, opaque.to_bytes());
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(
            text.find("\"alpha\"").unwrap() < text.find("\"zeta\"").unwrap(),
            "{text}"
        );
        let (back, error) = Manifest::parse(&bytes).unwrap().into_typed::<Typed>();
        assert!(error.is_none(), "{error:?}");
        assert_eq!(back.state, typed);
        // The default is "no state": left out, as `None` was.
        let empty = Manifest::with_state(ManifestLayout::Flat, files, Typed::default());
        assert_eq!(empty.to_bytes(), sample().to_bytes());
    }

    #[test]
    fn a_state_of_another_shape_is_the_default_and_an_error() {
        let mut m = sample();
        m.state = Some(serde_json::json!({"zeta": "not a list"}));
        let (typed, error) = Manifest::parse(&m.to_bytes())
            .unwrap()
            .into_typed::<Typed>();
        assert!(error.unwrap().to_string().contains("invalid type"));
        assert_eq!(typed.state, Typed::default());
        assert_eq!(typed.files, m.files, "the records stay");
    }

    #[test]
    fn rejects_path_outside_folder() {
        let mut m = sample();
        let r = m.files.remove("b.crt").unwrap();
        m.files.insert("../etc/passwd".into(), r);
        let err = Manifest::parse(&m.to_bytes()).unwrap_err().to_string();
        assert!(err.contains("../etc/passwd"), "{err}");
    }

    #[test]
    fn rejects_other_version_and_bad_digest() {
        let text = String::from_utf8(sample().to_bytes()).unwrap();
        let err = Manifest::parse(text.replace("\"version\": 1", "\"version\": 9").as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("version 9"), "{err}");
        let err = Manifest::parse(text.replacen(FP, "xyz", 1).as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("hex"), "{err}");
    }

    #[test]
    fn file_name_rules() {
        assert!(check_file_name("orders-international.crt").is_ok());
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            ".certsync-manifest.json",
            "x\0",
            "..data",
            "..2026_01_01_00_00_00.000000000",
        ] {
            assert!(check_file_name(bad).is_err(), "{bad:?}");
        }
    }

    /// The store reported a manifest that is not JSON (or not a regular file) with the
    /// error's text only; the serde_json error (line, column, category) and the read error
    /// were dropped.
    #[test]
    fn an_unusable_manifest_keeps_the_error_behind_it() {
        use crate::store::{StoreError, StoreOptions, StoreView};
        use std::error::Error;
        let open = |dir: &std::path::Path| match StoreView::<OpaqueState>::open(StoreOptions::new(
            dir.to_path_buf(),
        )) {
            Err(e) => e,
            Ok(_) => panic!("the manifest is accepted"),
        };
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(MANIFEST_NAME), "{ not json").unwrap();
        let err = open(tmp.path());
        assert!(matches!(err, StoreError::Manifest { .. }), "{err:?}");
        let json = std::iter::successors(Some(&err as &(dyn Error + 'static)), |&e| e.source())
            .find_map(|e| e.downcast_ref::<serde_json::Error>())
            .unwrap_or_else(|| panic!("no serde_json error in {err:?}"));
        assert_eq!((json.line(), json.column()), (1, 3));
        // Its text is in the message once, and the chain adds nothing to the message.
        let text = crate::text::error_chain(&err);
        assert_eq!(text, err.to_string());
        assert_eq!(text.matches(&json.to_string()).count(), 1, "{text}");

        let tmp = tempfile::tempdir().unwrap();
        let elsewhere = tmp.path().join("m.json");
        std::fs::write(&elsewhere, r#"{"version":1,"files":{}}"#).unwrap();
        std::os::unix::fs::symlink(&elsewhere, tmp.path().join(MANIFEST_NAME)).unwrap();
        let err = open(tmp.path());
        let read = std::iter::successors(Some(&err as &(dyn Error + 'static)), |&e| e.source())
            .skip(1)
            .find_map(|e| e.downcast_ref::<StoreError>());
        assert!(
            matches!(read, Some(StoreError::NotRegularFile { .. })),
            "{err:?}"
        );
        assert_eq!(crate::text::error_chain(&err), err.to_string());
    }
}
