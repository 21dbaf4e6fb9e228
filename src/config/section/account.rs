//! `[[account]]`: more cloud accounts (SPEC 15), each with the keys of `[cloud]`, an `auth`
//! subtable with the keys of `[auth]`, and a name. `[cloud]` + `[auth]` stay valid as the
//! account named `default`.
//!
//! Owns: the account's name rules (the name alphabet, unique, `default` only when `[cloud]`
//! is absent) and the split of an account's table into its cloud keys and its auth table.
//! The rules of those keys are `cloud`'s and `auth`'s. Must not: read a file.

use std::path::Path;

use toml::Table;

use super::super::fs::FsChecks;
use super::super::keys::{SectionKind, SectionSchema};
use super::super::reader::{Problems, Section, quote};
use super::{auth, cloud};
use crate::names;

/// The name of the account that `[cloud]` + `[auth]` describe, and that instances and
/// `[[discover]]` without `account` belong to.
pub const DEFAULT_ACCOUNT: &str = "default";

/// The keys of each `[[account]]` besides those of `[cloud]`.
const OWN_KEYS: &[&str] = &["name", "auth"];

/// Every key of an `[[account]]`: its own, then `[cloud]`'s.
const ACCOUNT_KEYS: &[&str] = &[
    "name",
    "auth",
    "service",
    "region",
    "endpoint",
    "project_id",
    "iam_endpoint",
    "ca_file",
    "timeout",
    "max_requests_per_second",
];

/// The keys of each `[[account]]`.
pub(in crate::config) const SCHEMA: SectionSchema = SectionSchema {
    name: "account",
    kind: SectionKind::ArrayOfTables,
    keys: ACCOUNT_KEYS,
    variants: &[],
};

/// One cloud account: where its API is, how it signs in, and its request budget.
#[derive(Debug, Clone)]
pub struct CloudAccount {
    /// `default` for `[cloud]` + `[auth]`, else the `[[account]]`'s `name`.
    pub name: String,
    /// Where its keys are in the file: `cloud` (with `auth`), or `account[N]`.
    pub key: String,
    /// Its cloud keys.
    pub cloud: cloud::Cloud,
    /// Its credentials.
    pub auth: auth::Auth,
}

impl CloudAccount {
    /// The key path of its auth table: `auth`, or `account[N].auth`.
    pub fn auth_key(&self) -> String {
        if self.key == cloud::SCHEMA.name {
            auth::SCHEMA.name.to_string()
        } else {
            format!("{}.{}", self.key, auth::SCHEMA.name)
        }
    }
}

/// Reads every `[[account]]`. `taken` holds the names already in use (`default`, when
/// `[cloud]` is written); each account's name joins it.
pub(in crate::config) fn read(
    p: &mut Problems,
    fs: &mut FsChecks,
    top: &Section<'_>,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    taken: &mut Vec<String>,
) -> Vec<Option<CloudAccount>> {
    let mut out = Vec::new();
    for (key, table) in top.tables(p, SCHEMA.name) {
        let before = p.len();
        // Unknown keys are reported once, by `cloud` below (with every key an account knows).
        let present: Vec<&str> = table.keys().map(String::as_str).collect();
        let sec = Section::open(p, key.clone(), table, &present);
        let name = name(p, &sec, taken);
        // The cloud keys are read by `cloud` from the table without the account's own keys
        // (which it would call unknown); every other key is reported by it, with this path.
        let cloud_keys: Table = table
            .iter()
            .filter(|(k, _)| !OWN_KEYS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let auth_key = sec.key(auth::SCHEMA.name);
        let method = auth::peek_method(table);
        let cloud = cloud::read(
            p,
            fs,
            &key,
            ACCOUNT_KEYS,
            &cloud_keys,
            base,
            (method, &format!("{auth_key}.method")),
            env,
        );
        let auth = if sec.has(auth::SCHEMA.name) {
            sec.table(p, auth::SCHEMA.name)
                .and_then(|t| auth::read(p, &auth_key, t, base, env))
        } else {
            p.push(
                auth_key,
                "is required: each [[account]] has an [account.auth] table with the keys of [auth]",
            );
            None
        };
        out.push(match (name, auth) {
            (Some(name), Some(auth)) if p.len() == before => Some(CloudAccount {
                name,
                key,
                cloud,
                auth,
            }),
            _ => None,
        });
    }
    out
}

/// The account's `name`: required, in the name alphabet, not used twice.
fn name(p: &mut Problems, sec: &Section<'_>, taken: &mut Vec<String>) -> Option<String> {
    if !sec.require_present(p, "name", "") {
        return None;
    }
    let name = sec.string(p, "name")?;
    if !names::is_name(name) {
        p.push(
            sec.key("name"),
            format!(
                "{} is not a valid account name ([A-Za-z0-9._-]{{1,64}})",
                quote(name)
            ),
        );
        return None;
    }
    if taken.iter().any(|t| t == name) {
        let why = if name == DEFAULT_ACCOUNT {
            "[cloud] and [auth] already are the account \"default\""
        } else {
            "another [[account]] has it"
        };
        p.push(
            sec.key("name"),
            format!("{} is used twice: {why}", quote(name)),
        );
        return None;
    }
    taken.push(name.to_string());
    Some(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::super::testing::{keys, table, walk};
    use super::*;

    fn read_accounts(text: &str, taken: &[&str]) -> (Vec<Option<CloudAccount>>, Vec<String>) {
        let t = table(text);
        let mut taken: Vec<String> = taken.iter().map(|s| s.to_string()).collect();
        let (accounts, problems, _) = walk(|p, fs| {
            let top = Section::open(p, "", &t, &["account"]);
            read(
                p,
                fs,
                &top,
                Path::new("/etc/certsync"),
                &|_| None,
                &mut taken,
            )
        });
        (
            accounts,
            keys(&problems).into_iter().map(String::from).collect(),
        )
    }

    #[test]
    fn an_account_knows_its_own_keys_then_every_key_of_cloud() {
        assert_eq!(ACCOUNT_KEYS[..OWN_KEYS.len()], *OWN_KEYS);
        assert_eq!(ACCOUNT_KEYS[OWN_KEYS.len()..], *cloud::SCHEMA.keys);
    }

    #[test]
    fn an_account_has_the_keys_of_cloud_and_an_auth_table() {
        let (accounts, problems) = read_accounts(
            r#"[[account]]
name = "eu"
region = "eu-west-101"
max_requests_per_second = 2.5
[account.auth]
method = "token"
token_file = "eu.token"
"#,
            &[],
        );
        // project_id is required with token, and named at the account's key path.
        assert_eq!(problems, ["account[0].project_id"]);
        assert!(accounts[0].is_none());

        let (accounts, problems) = read_accounts(
            r#"[[account]]
name = "eu"
region = "eu-west-101"
project_id = "p-eu"
max_requests_per_second = 2.5
[account.auth]
method = "token"
token_file = "eu.token"
"#,
            &["default"],
        );
        assert!(problems.is_empty(), "{problems:?}");
        let eu = accounts[0].as_ref().unwrap();
        assert_eq!((eu.name.as_str(), eu.key.as_str()), ("eu", "account[0]"));
        assert_eq!(eu.auth_key(), "account[0].auth");
        assert_eq!(
            eu.cloud.endpoint.as_str(),
            "https://gaussdb-nosql.eu-west-101.myhuaweicloud.eu/"
        );
        assert_eq!(eu.cloud.max_requests_per_second, 2.5);
        let auth::Auth::Token { token_file } = &eu.auth else {
            panic!("{:?}", eu.auth)
        };
        assert_eq!(token_file, Path::new("/etc/certsync/eu.token"));
    }

    #[test]
    fn names_are_required_valid_and_unique_and_default_is_taken_by_cloud() {
        let account = |name: &str| {
            format!(
                "[[account]]\n{name}region = \"cn-north-4\"\n[account.auth]\nmethod = \"aksk\"\naccess_key = \"AK\"\nsecret_key_file = \"sk\"\n"
            )
        };
        let text = [
            account(""),
            account("name = \"bad name\"\n"),
            account("name = \"default\"\n"),
            account("name = \"us\"\n"),
            account("name = \"us\"\n"),
        ]
        .concat();
        let (accounts, problems) = read_accounts(&text, &["default"]);
        assert_eq!(
            problems,
            [
                "account[0].name",
                "account[1].name",
                "account[2].name",
                "account[4].name"
            ]
        );
        let valid: Vec<&str> = accounts.iter().flatten().map(|a| a.name.as_str()).collect();
        assert_eq!(valid, ["us"]);
        // Without [cloud], an account may be the default.
        let (accounts, problems) = read_accounts(&account("name = \"default\"\n"), &[]);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(accounts[0].as_ref().unwrap().name, DEFAULT_ACCOUNT);
    }

    #[test]
    fn the_auth_table_is_required_and_its_keys_and_unknown_keys_are_named_with_the_path() {
        let (_, problems) = read_accounts(
            "[[account]]\nname = \"a\"\nregion = \"cn-north-4\"\nregoin = \"x\"\n",
            &[],
        );
        assert_eq!(problems, ["account[0].regoin", "account[0].auth"]);
        let (_, problems) = read_accounts(
            "[[account]]\nname = \"a\"\nregion = \"cn-north-4\"\n[account.auth]\nmethod = \"aksk\"\ntoken_file = \"t\"\n",
            &[],
        );
        assert!(
            problems.contains(&"account[0].auth.token_file".to_string()),
            "{problems:?}"
        );
    }
}
