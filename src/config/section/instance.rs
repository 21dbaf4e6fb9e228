//! `[[instance]]`: the database instances whose CAs are synced (SPEC 3).
//!
//! Owns: the keys of an instance, the syntax of ids, names, categories and pins, and the rule
//! that ids and names share one namespace (hook filters and `{name}` accept either). At least
//! one instance is required unless `[[discover]]` finds them. Must not: read a file.

use std::collections::HashMap;

use toml::Value;

use crate::endpoint::Endpoint;

use super::super::keys::{SectionKind, SectionSchema};
use super::super::reader::{Problems, Section, quote};
use crate::names;

/// The keys of each `[[instance]]`.
pub(in crate::config) const SCHEMA: SectionSchema = SectionSchema {
    name: "instance",
    kind: SectionKind::ArrayOfTables,
    keys: &[
        "id",
        "name",
        "account",
        "categories",
        "pin_sha256",
        "endpoints",
    ],
    variants: &[],
};

/// One `[[instance]]`.
#[derive(Debug, Clone)]
pub struct Instance {
    /// Cloud id, `[A-Za-z0-9-]{1,64}`.
    pub id: String,
    /// Optional name, `[A-Za-z0-9._-]{1,64}`, unique.
    pub name: Option<String>,
    /// The account it belongs to (SPEC 15): `account`, else `default`.
    pub account: String,
    /// Only these categories are synced; `None`: every category the API lists.
    pub categories: Option<Vec<String>>,
    /// SHA-256 fingerprints accepted (empty: any).
    pub pins: Vec<[u8; 32]>,
    /// `endpoints`: where its database serves TLS (SPEC 13); empty: the node addresses
    /// ListInstances reports.
    pub endpoints: Vec<Endpoint>,
}

impl Instance {
    /// An instance known by its id and maybe a name, with no `categories` filter and no pins:
    /// what discovery lists and what the saved state remembers of a discovered instance.
    /// Its account is `default` until [`Instance::in_account`] says otherwise.
    pub fn discovered(id: impl Into<String>, name: Option<String>) -> Instance {
        Instance {
            id: id.into(),
            name,
            account: super::account::DEFAULT_ACCOUNT.to_string(),
            categories: None,
            pins: Vec::new(),
            endpoints: Vec::new(),
        }
    }

    /// The same instance, of `account`.
    pub fn in_account(mut self, account: impl Into<String>) -> Instance {
        self.account = account.into();
        self
    }

    /// The name, else the id: what `{name}` renders to and what logs call the instance.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }

    /// True when this instance syncs `category` (always, without a `categories` filter).
    pub fn wants(&self, category: &str) -> bool {
        match &self.categories {
            None => true,
            Some(list) => list.iter().any(|c| c == category),
        }
    }
}

/// One `[[instance]]` as read: its key path, what was written for its id and name (even when
/// invalid, so that hook filters naming it are not reported twice), and the instance when
/// every rule held.
pub(in crate::config) struct ReadInstance {
    pub(in crate::config) key: String,
    pub(in crate::config) id: Option<String>,
    pub(in crate::config) name: Option<String>,
    pub(in crate::config) valid: Option<Instance>,
}

/// Reads every `[[instance]]`; `discovering`: `[[discover]]` is configured, so none is needed.
/// `accounts`: the names of the accounts, which `account` must be one of.
pub(in crate::config) fn read(
    p: &mut Problems,
    top: &Section<'_>,
    discovering: bool,
    accounts: &[&str],
) -> Vec<ReadInstance> {
    let tables = top.tables(p, SCHEMA.name);
    if tables.is_empty()
        && !discovering
        && !matches!(top.raw(SCHEMA.name), Some(v) if !v.is_array())
    {
        p.push(
            SCHEMA.name,
            "at least one [[instance]] (or [[discover]]) is required (got none)",
        );
    }
    let mut out: Vec<ReadInstance> = Vec::with_capacity(tables.len());
    // The first instance with each id and each name (as written), by index into `out`.
    let mut first_id: HashMap<String, usize> = HashMap::new();
    let mut first_name: HashMap<String, usize> = HashMap::new();
    for (key, table) in tables {
        let before = p.len();
        let sec = Section::open(p, key.clone(), table, SCHEMA.keys);
        let raw_id = sec.raw("id").and_then(Value::as_str).map(str::to_string);
        let raw_name = sec.raw("name").and_then(Value::as_str).map(str::to_string);

        let mut id = String::new();
        if sec.require_present(p, "id", "") {
            match sec.string(p, "id") {
                Some(s) if names::is_instance_id(s) => id = s.to_string(),
                Some(s) => p.push(
                    sec.key("id"),
                    format!("{} is not an instance id ([A-Za-z0-9-]{{1,64}})", quote(s)),
                ),
                None => {}
            }
        }
        let name = sec.string(p, "name").and_then(|s| {
            if names::is_name(s) {
                Some(s.to_string())
            } else {
                p.push(
                    sec.key("name"),
                    format!("{} is not a valid name ([A-Za-z0-9._-]{{1,64}})", quote(s)),
                );
                None
            }
        });
        let account = super::account_key(p, &sec, accounts).unwrap_or_default();
        let categories = sec.strings(p, "categories").map(|items| {
            if items.is_empty() {
                p.push(
                    sec.key("categories"),
                    "must not be empty (got []); leave it out to sync every category",
                );
            }
            let mut cats: Vec<String> = Vec::with_capacity(items.len());
            for (item_key, c) in items {
                if !names::is_name(c) {
                    p.push(
                        item_key,
                        format!(
                            "{} is not a valid category ([A-Za-z0-9._-]{{1,64}})",
                            quote(c)
                        ),
                    );
                } else if cats.iter().any(|x| x == c) {
                    p.push(item_key, format!("{} is listed twice", quote(c)));
                } else {
                    cats.push(c.to_string());
                }
            }
            cats
        });
        let mut pins = Vec::new();
        if let Some(items) = sec.strings(p, "pin_sha256") {
            if items.is_empty() {
                p.push(
                    sec.key("pin_sha256"),
                    "must not be empty (got []); leave it out to accept any valid CA",
                );
            }
            for (item_key, s) in items {
                match parse_pin(s) {
                    Some(pin) => pins.push(pin),
                    None => p.push(
                        item_key,
                        format!(
                            "{} is not a SHA-256 fingerprint (64 hex digits, colons allowed)",
                            quote(s)
                        ),
                    ),
                }
            }
        }

        let mut endpoints: Vec<Endpoint> = Vec::new();
        if let Some(items) = sec.strings(p, "endpoints") {
            if items.is_empty() {
                p.push(
                    sec.key("endpoints"),
                    "must not be empty (got []); leave it out to use the addresses ListInstances reports",
                );
            }
            for (item_key, text) in items {
                match Endpoint::parse(text) {
                    Ok(e) if endpoints.contains(&e) => {
                        p.push(item_key, format!("{} is listed twice", quote(text)))
                    }
                    Ok(e) => endpoints.push(e),
                    Err(why) => {
                        p.push(item_key, format!("{} is not host:port: {why}", quote(text)))
                    }
                }
            }
        }

        // Ids and names share one namespace: hook filters and {name} accept either. Looked up
        // in maps of the first instance with each id and name, so that a file with 10,000
        // instances is not checked pair by pair.
        let earlier =
            |map: &HashMap<String, usize>, key: &str| map.get(key).map(|&i| out[i].key.clone());
        if !id.is_empty()
            && let Some(other) = earlier(&first_id, &id)
        {
            p.push(
                sec.key("id"),
                format!("{} is also the id of {other}", quote(&id)),
            );
        }
        if let Some(n) = &name {
            if let Some(other) = earlier(&first_name, n) {
                p.push(
                    sec.key("name"),
                    format!("{} is also the name of {other}", quote(n)),
                );
            } else if let Some(other) = earlier(&first_id, n) {
                p.push(
                    sec.key("name"),
                    format!(
                        "{} is the id of {other}; names and ids must not overlap",
                        quote(n)
                    ),
                );
            }
        }
        if !id.is_empty()
            && let Some(other) = earlier(&first_name, &id)
        {
            p.push(
                sec.key("id"),
                format!(
                    "{} is the name of {other}; names and ids must not overlap",
                    quote(&id)
                ),
            );
        }
        let index = out.len();
        if let Some(raw) = &raw_id {
            first_id.entry(raw.clone()).or_insert(index);
        }
        if let Some(raw) = &raw_name {
            first_name.entry(raw.clone()).or_insert(index);
        }

        let valid = (p.len() == before).then_some(Instance {
            id,
            name,
            account,
            categories,
            pins,
            endpoints,
        });
        out.push(ReadInstance {
            key,
            id: raw_id,
            name: raw_name,
            valid,
        });
    }
    out
}

/// A SHA-256 fingerprint: 64 hex digits in either case, colons allowed anywhere.
fn parse_pin(s: &str) -> Option<[u8; 32]> {
    let digits: String = s.chars().filter(|&c| c != ':').collect();
    if digits.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(digits, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{keys, table, walk};
    use super::*;

    fn read_instances(
        text: &str,
        discovering: bool,
    ) -> (Vec<ReadInstance>, Vec<crate::config::Problem>) {
        let t = table(text);
        let (out, problems, fs) = walk(|p, _| {
            let top = Section::open(p, "", &t, &["instance"]);
            read(p, &top, discovering, &["default"])
        });
        assert!(fs.0.is_empty());
        (out, problems)
    }

    #[test]
    fn pins_accept_colons_and_either_case() {
        let upper = ["AB"; 32].join(":");
        assert_eq!(parse_pin(&upper), Some([0xab; 32]));
        assert_eq!(parse_pin(&"0f".repeat(32)), Some([0x0f; 32]));
        assert_eq!(parse_pin(&"0f".repeat(31)), None);
        assert_eq!(parse_pin(&"0g".repeat(32)), None);
        assert_eq!(parse_pin(""), None);
    }

    #[test]
    fn every_key_is_read_and_defaults_mean_everything() {
        let (out, problems) = read_instances(
            "[[instance]]\nid = \"a\"\n[[instance]]\nid = \"b\"\nname = \"orders\"\n\
             categories = [\"national\"]\npin_sha256 = [\"{}\"]\n"
                .replace("{}", &"0f".repeat(32))
                .as_str(),
            false,
        );
        assert!(problems.is_empty(), "{problems:?}");
        let a = out[0].valid.as_ref().unwrap();
        assert_eq!((a.display_name(), a.categories.as_ref()), ("a", None));
        assert!(a.wants("anything") && a.pins.is_empty());
        let b = out[1].valid.as_ref().unwrap();
        assert_eq!(b.display_name(), "orders");
        assert!(b.wants("national") && !b.wants("international"));
        assert_eq!(b.pins, [[0x0f; 32]]);
    }

    #[test]
    fn ids_and_names_share_one_namespace() {
        let (out, problems) = read_instances(
            "[[instance]]\nid = \"a\"\nname = \"x\"\n[[instance]]\nid = \"x\"\nname = \"a\"\n",
            false,
        );
        assert_eq!(keys(&problems), ["instance[1].name", "instance[1].id"]);
        assert!(out[1].valid.is_none());
        // What was written is kept, so hook filters naming it are not reported again.
        assert_eq!(out[1].id.as_deref(), Some("x"));
    }

    #[test]
    fn one_instance_is_required_unless_discovering() {
        assert_eq!(keys(&read_instances("", false).1), ["instance"]);
        assert!(read_instances("", true).1.is_empty());
    }
}
