//! The schema of the configuration file, as data: which sections exist and which keys each
//! accepts.
//!
//! Owns: the one list of keys. The walker reports every key not in it (`reader::Section::open`),
//! and the example-config test iterates it to check that `config/certsync.toml` shows every
//! key. Each section's keys are written in that section's file (`section/*.rs`, next to the
//! rules and defaults of those keys); this module only puts them in file order.
//! Must not: hold rules or defaults (the section files do).

use super::section::{auth, cloud, discover, hook, instance, log, server, sync, trust};

/// How a section is written in TOML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionKind {
    /// One table: `[cloud]`.
    Table,
    /// An array of tables, each one item: `[[instance]]`.
    ArrayOfTables,
}

/// One section of the file and the keys it accepts.
#[derive(Debug, Clone, Copy)]
pub struct SectionSchema {
    /// The top-level key: `cloud`, `instance`.
    pub name: &'static str,
    /// `[name]` or `[[name]]`.
    pub kind: SectionKind,
    /// Keys every table of the section may hold.
    pub keys: &'static [&'static str],
    /// Keys that belong to one value of a selector key (`auth.method`): each value with the
    /// keys it uses. A key of another value is an error, not ignored.
    pub variants: &'static [(&'static str, &'static [&'static str])],
}

impl SectionSchema {
    /// Every key the section accepts: [`SectionSchema::keys`], then each variant's keys, in
    /// order and without repeats.
    pub fn all_keys(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = self.keys.to_vec();
        for key in self.variants.iter().flat_map(|(_, keys)| keys.iter()) {
            if !out.contains(key) {
                out.push(key);
            }
        }
        out
    }

    /// The section's header as the file writes it: `[cloud]`, `[[instance]]`.
    pub fn header(&self) -> String {
        match self.kind {
            SectionKind::Table => format!("[{}]", self.name),
            SectionKind::ArrayOfTables => format!("[[{}]]", self.name),
        }
    }
}

/// Every section, in the order the file is read (and unknown-key messages list them).
pub const SCHEMA: &[SectionSchema] = &[
    cloud::SCHEMA,
    auth::SCHEMA,
    sync::SCHEMA,
    trust::SCHEMA,
    instance::SCHEMA,
    discover::SCHEMA,
    hook::SCHEMA,
    server::SCHEMA,
    log::SCHEMA,
];

/// The keys allowed at the top level: the sections' names.
pub(super) fn top_keys() -> Vec<&'static str> {
    SCHEMA.iter().map(|s| s.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_keys_are_unique_within_their_section() {
        let top = top_keys();
        for (i, name) in top.iter().enumerate() {
            assert!(!top[..i].contains(name), "section {name} twice");
        }
        for section in SCHEMA {
            let mut seen: Vec<&str> = Vec::new();
            for key in section.keys {
                assert!(!seen.contains(key), "{}.{key} twice", section.name);
                seen.push(key);
            }
            for (value, keys) in section.variants {
                for key in *keys {
                    assert!(
                        !section.keys.contains(key),
                        "{}.{key} is both common and a key of {value}",
                        section.name
                    );
                }
            }
        }
    }

    #[test]
    fn headers_follow_the_kind() {
        assert_eq!(cloud::SCHEMA.header(), "[cloud]");
        assert_eq!(instance::SCHEMA.header(), "[[instance]]");
        assert_eq!(
            auth::SCHEMA.all_keys()[..3],
            ["method", "token_file", "access_key"]
        );
    }
}
