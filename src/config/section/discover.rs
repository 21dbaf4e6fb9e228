//! `[[discover]]`: ListInstances queries whose instances join `[[instance]]` at each pass
//! (SPEC 3).
//!
//! Owns: the keys of a query, their syntax and the `ssl_only` default. Must not: call the API
//! (the daemon runs the queries).

use super::super::keys::{SectionKind, SectionSchema};
use super::super::reader::{Problems, Section, quote};

/// The keys of each `[[discover]]`.
pub(in crate::config) const SCHEMA: SectionSchema = SectionSchema {
    name: "discover",
    kind: SectionKind::ArrayOfTables,
    keys: &["account", "datastore", "name", "ssl_only"],
    variants: &[],
};

/// `discover.ssl_only` when left out.
pub const DEFAULT_SSL_ONLY: bool = true;

/// The longest `discover.name` filter accepted.
const MAX_NAME_FILTER: usize = 128;

/// One `[[discover]]` query of ListInstances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discover {
    /// `account`: whose instances it lists (SPEC 15); `default` when left out.
    pub account: String,
    /// `datastore`: the API's `datastore_type` filter (`mongodb`, `cassandra`, ...).
    pub datastore: Option<String>,
    /// `name`: the API's name filter; a leading `*` is a fuzzy match.
    pub name: Option<String>,
    /// `ssl_only`: skip instances whose `ssl` is `"0"`.
    pub ssl_only: bool,
}

/// Reads every `[[discover]]`; `accounts`: the names of the accounts, which `account` must be
/// one of.
pub(in crate::config) fn read(
    p: &mut Problems,
    top: &Section<'_>,
    accounts: &[&str],
) -> Vec<Discover> {
    let mut out = Vec::new();
    for (key, table) in top.tables(p, SCHEMA.name) {
        let sec = Section::open(p, key.clone(), table, SCHEMA.keys);
        let account = super::account_key(p, &sec, accounts).unwrap_or_default();
        let datastore = sec.string(p, "datastore").and_then(|d| {
            if !d.is_empty()
                && d.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                Some(d.to_ascii_lowercase())
            } else {
                p.push(
                    sec.key("datastore"),
                    format!(
                        "{} is not a datastore type like \"mongodb\", \"cassandra\", \"redis\" or \"influxdb\"",
                        quote(d)
                    ),
                );
                None
            }
        });
        let name = sec.string(p, "name").and_then(|n| {
            if n.is_empty() || n.len() > MAX_NAME_FILTER || n.chars().any(char::is_control) {
                p.push(
                    sec.key("name"),
                    format!("{} is not a usable name filter", quote(n)),
                );
                None
            } else {
                Some(n.to_string())
            }
        });
        let ssl_only = sec.boolean(p, "ssl_only").unwrap_or(DEFAULT_SSL_ONLY);
        out.push(Discover {
            account,
            datastore,
            name,
            ssl_only,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::testing::{keys, table, walk};
    use super::*;

    fn read_discover(text: &str) -> (Vec<Discover>, Vec<crate::config::Problem>) {
        let t = table(text);
        let (out, problems, _) = walk(|p, _| {
            let top = Section::open(p, "", &t, &["discover"]);
            read(p, &top, &["default"])
        });
        (out, problems)
    }

    #[test]
    fn every_key_is_read_and_ssl_only_defaults_on() {
        let (out, problems) = read_discover(
            "[[discover]]\n[[discover]]\ndatastore = \"MongoDB\"\nname = \"*prod\"\nssl_only = false\n",
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            out,
            [
                Discover {
                    account: "default".into(),
                    datastore: None,
                    name: None,
                    // SPEC 3's default.
                    ssl_only: true,
                },
                Discover {
                    account: "default".into(),
                    datastore: Some("mongodb".into()),
                    name: Some("*prod".into()),
                    ssl_only: false,
                }
            ]
        );
    }

    #[test]
    fn bad_filters_are_reported() {
        let (_, problems) = read_discover(&format!(
            "[[discover]]\ndatastore = \"mongo db\"\nname = \"{}\"\n",
            "x".repeat(MAX_NAME_FILTER + 1)
        ));
        assert_eq!(
            keys(&problems),
            ["discover[0].datastore", "discover[0].name"]
        );
    }
}
