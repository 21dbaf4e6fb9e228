//! The schema of the configuration file, as data: which sections exist and which keys each
//! accepts.
//!
//! Owns: the one list of keys. The walker reports every key not in it (`reader::Section::open`),
//! and the example-config test iterates it to check that `config/certsync.toml` shows every
//! key. Each section's keys are written in that section's file (`section/*.rs`, next to the
//! rules and defaults of those keys); this module only puts them in file order.
//! Must not: hold rules or defaults (the section files do).

use super::keys::SectionSchema;
use super::section::{
    account, auth, cloud, discover, fleet, hook, instance, log, server, sync, trust, verify,
};

/// Every section, in the order the file is read (and unknown-key messages list them).
pub const SCHEMA: &[SectionSchema] = &[
    cloud::SCHEMA,
    auth::SCHEMA,
    account::SCHEMA,
    sync::SCHEMA,
    trust::SCHEMA,
    instance::SCHEMA,
    discover::SCHEMA,
    hook::SCHEMA,
    server::SCHEMA,
    verify::SCHEMA,
    fleet::PUBLISH_SCHEMA,
    fleet::SOURCE_SCHEMA,
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
