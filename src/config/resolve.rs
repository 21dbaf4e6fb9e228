//! Turns configuration text into a typed [`Config`], applying every rule of SPEC 3, in two
//! passes: a pure pass over the parsed TOML ([`pure`]: no file is touched, so every rule of
//! it is unit-testable without a file system), then the fs pass (`fs::pass`: `ca_file`,
//! account names, `trust.dir`'s symlinks, the warnings).
//!
//! The walk is written by hand over a `toml::Table` (`reader::Section`) rather than derived
//! with serde, on purpose: serde stops at the first error and quotes the bad value in its
//! message, while this walker collects every problem of the file, each with its key path, and
//! never echoes a value that may be a secret (inline keys, unknown keys, URLs with
//! credentials). Every section is read even after an error so that all problems of a file are
//! reported together; values that failed are replaced by placeholders that never escape,
//! because any problem makes the result an error.
//!
//! Owns: the order of the walk and the cross-checks between sections (project id against
//! auth method, file names against instances, hook filters against instances). Each
//! section's keys, defaults and rules are in `section/`; the key lists in `schema`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use toml::Table;

use super::fs::{FsChecks, Pure};
use super::reader::quote;
use super::reader::{Problems, Section};
use super::schema;
use super::section::account::{self, CloudAccount, DEFAULT_ACCOUNT};
use super::section::instance::{Instance, ReadInstance};
use super::section::trust::{PROBE_CATEGORY, Trust};
use super::section::{
    auth, cloud, discover, fleet, hook, instance, log, server, sync, trust, verify,
};
use super::{Config, Problem};
use crate::names::{self, Piece};

/// Parses and validates; `Err` holds every problem found. `env` looks up the SDK's
/// environment variables (empty values already filtered out).
pub(super) fn resolve(
    text: &str,
    source: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, Vec<Problem>> {
    let table: Table = match text.parse() {
        Ok(t) => t,
        Err(e) => return Err(vec![syntax_problem(text, &e)]),
    };
    let source_abs = names::normalize(
        &std::path::absolute(source).unwrap_or_else(|_| Path::new("/").join(source)),
    );
    super::fs::pass(
        pure(&table, source_abs, env),
        rustix::process::geteuid().as_raw(),
    )
}

/// The pure pass: every rule that needs only the text (and `env`). `source` is the config
/// file's absolute path; relative paths resolve against its folder, lexically.
pub(super) fn pure(table: &Table, source: PathBuf, env: &dyn Fn(&str) -> Option<String>) -> Pure {
    let base = source
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/"));
    let mut p = Problems::default();
    let mut fs = FsChecks::default();
    let top = Section::open(&mut p, "", table, &schema::top_keys());

    // The fleet roles (SPEC 14): a subscriber needs no cloud account, and its instances come
    // from the published bundle (like discovered ones).
    let publish = top
        .has(fleet::PUBLISH_SCHEMA.name)
        .then(|| top.table(&mut p, fleet::PUBLISH_SCHEMA.name))
        .flatten()
        .and_then(|t| fleet::read_publish(&mut p, t, &base));
    let subscribe = top
        .has(fleet::SOURCE_SCHEMA.name)
        .then(|| top.table(&mut p, fleet::SOURCE_SCHEMA.name))
        .flatten()
        .and_then(|t| fleet::read_source(&mut p, t, &base));
    if publish.is_some() && subscribe.is_some() {
        p.push(
            "source.kind",
            "\"etcd\" makes this certsync a subscriber, which cannot also publish ([publish]): a publisher reads the cloud",
        );
    }
    let subscribing = subscribe.is_some();

    // `names` holds every account's name, also of those with a problem (so that their
    // instances are not reported again).
    let (accounts, mut names) = accounts(&mut p, &mut fs, &top, table, &base, env, subscribing);
    if subscribing && names.is_empty() {
        // A subscriber's instances name no account: it reads no cloud.
        names.push(DEFAULT_ACCOUNT.to_string());
    }
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let sync = top
        .table(&mut p, sync::SCHEMA.name)
        .map(|t| sync::read(&mut p, t));
    let overlaps = sync.as_ref().map(|(_, o)| *o).unwrap_or_default();
    let trust = top
        .table(&mut p, trust::SCHEMA.name)
        .map(|t| trust::read(&mut p, &mut fs, t, &base, overlaps));
    let discover = discover::read(&mut p, &top, &names);
    if subscribing && !discover.is_empty() {
        p.push(
            "discover",
            "a subscriber ([source] kind = \"etcd\") takes its instances from the published bundle; [[discover]] is a publisher's",
        );
    }
    let from_elsewhere = !discover.is_empty() || subscribing;
    let instances = instance::read(&mut p, &top, from_elsewhere, &names);
    if let Some(trust) = &trust {
        check_files(&mut p, trust, &instances, from_elsewhere);
    }
    let hooks = hook::read(&mut p, &top, &instances, &base);
    let server = match top.table(&mut p, server::SCHEMA.name) {
        Some(t) => server::read(&mut p, t),
        None => server::Server::default(),
    };
    let verify = match top.table(&mut p, verify::SCHEMA.name) {
        Some(t) => verify::read(&mut p, t),
        None => verify::Verify::default(),
    };
    let log = top
        .table(&mut p, log::SCHEMA.name)
        .map(|t| log::read(&mut p, t));

    let config = match (sync, trust, log) {
        (Some((sync, _)), Some(trust), Some(log)) if p.0.is_empty() => Some(Config {
            source,
            accounts: accounts.into_iter().flatten().collect(),
            sync,
            trust,
            server,
            verify,
            discover,
            publish,
            subscribe,
            instances: instances.into_iter().filter_map(|i| i.valid).collect(),
            hooks,
            log,
            warnings: Vec::new(),
        }),
        _ => None,
    };
    Pure {
        config,
        problems: p.0,
        checks: fs,
    }
}

/// The accounts (SPEC 15): `default` from `[cloud]` + `[auth]` (required unless some
/// `[[account]]` is written), then each `[[account]]`. `None` marks one that failed. Also
/// gives every name in use.
fn accounts(
    p: &mut Problems,
    fs: &mut FsChecks,
    top: &Section<'_>,
    table: &Table,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    subscribing: bool,
) -> (Vec<Option<CloudAccount>>, Vec<String>) {
    let others = top.has(account::SCHEMA.name);
    let written = top.has(cloud::SCHEMA.name) || top.has(auth::SCHEMA.name);
    let mut out = Vec::new();
    let mut taken = Vec::new();
    if written || (!others && !subscribing) {
        let method = auth::peek_method(table);
        let cloud = top.table(p, cloud::SCHEMA.name).map(|t| {
            cloud::read(
                p,
                fs,
                cloud::SCHEMA.name,
                cloud::SCHEMA.keys,
                t,
                base,
                (method, "auth.method"),
                env,
            )
        });
        let auth = top
            .table(p, auth::SCHEMA.name)
            .and_then(|t| auth::read(p, auth::SCHEMA.name, t, base, env));
        taken.push(DEFAULT_ACCOUNT.to_string());
        out.push(match (cloud, auth) {
            (Some(cloud), Some(auth)) => Some(CloudAccount {
                name: DEFAULT_ACCOUNT.to_string(),
                key: cloud::SCHEMA.name.to_string(),
                cloud,
                auth,
            }),
            _ => None,
        });
    }
    out.extend(account::read(p, fs, top, base, env, &mut taken));
    (out, taken)
}

/// The rules that tie `trust.file_name` to the instances: every file a plain name of its own.
fn check_files(p: &mut Problems, trust: &Trust, instances: &[ReadInstance], discovering: bool) {
    let Ok(pieces) = names::parse_template(&trust.file_name) else {
        return;
    };
    let has = |piece: Piece<'_>| pieces.contains(&piece);
    let valid: Vec<(&str, &Instance)> = instances
        .iter()
        .filter_map(|r| r.valid.as_ref().map(|i| (r.key.as_str(), i)))
        .collect();
    let before = p.len();
    let template = quote(&trust.file_name);

    if !has(Piece::Category) {
        for (key, inst) in &valid {
            match &inst.categories {
                Some(c) if c.len() == 1 => {}
                other => p.push(
                    format!("{key}.categories"),
                    format!(
                        "trust.file_name {template} has no {{category}}, so every instance needs \
                         exactly one category in `categories`; got {}",
                        match other {
                            Some(c) => format!("{c:?}"),
                            None => "none (every category)".into(),
                        }
                    ),
                ),
            }
        }
    }
    if !has(Piece::Name) && !has(Piece::Id) && discovering {
        p.push(
            "trust.file_name",
            format!(
                "{template} has neither {{name}} nor {{id}}, so [[discover]] cannot add instances"
            ),
        );
    } else if !has(Piece::Name) && !has(Piece::Id) && instances.len() > 1 {
        p.push(
            "trust.file_name",
            format!(
                "{template} has neither {{name}} nor {{id}}, so only one instance is possible; {} are configured",
                instances.len()
            ),
        );
    }
    if p.len() > before {
        // The structural rules already explain every collision the rendering would find.
        return;
    }

    let mut owners: HashMap<String, (&str, &Instance)> = HashMap::new();
    for (key, inst) in &valid {
        let probe = [PROBE_CATEGORY.to_string()];
        let cats = inst.categories.as_deref().unwrap_or(&probe);
        for cat in cats {
            let file = trust.file_name_for(inst, cat);
            if let Some(why) = trust.file_name_problem(&file) {
                p.push(
                    key.to_string(),
                    format!(
                        "file name {} (trust.file_name {template}, category {}) {why}",
                        quote(&file),
                        quote(cat)
                    ),
                );
                continue;
            }
            match owners.get(&file) {
                Some((other_key, other)) if !std::ptr::eq(*other, *inst) => p.push(
                    key.to_string(),
                    format!(
                        "instances {} ({}) and {} ({other_key}) would both write file {} \
                         (trust.file_name {template})",
                        quote(inst.display_name()),
                        key,
                        quote(other.display_name()),
                        quote(&file)
                    ),
                ),
                Some(_) => {}
                None => {
                    owners.insert(file, (key, inst));
                }
            }
        }
    }
}

/// One problem for a TOML syntax error, with the line and column of its start.
fn syntax_problem(text: &str, e: &toml::de::Error) -> Problem {
    let message = match e.span() {
        Some(span) => {
            let start = span.start.min(text.len());
            let before = &text[..start];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
            format!(
                "TOML syntax error at line {line}, column {column}: {}",
                e.message().trim_end()
            )
        }
        None => format!("TOML syntax error: {}", e.message().trim_end()),
    };
    Problem {
        key: String::new(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::fs::{AccountDb, FsCheck};

    #[test]
    fn syntax_errors_count_columns_in_characters() {
        let text = "# ünï\nkey = \"ä\" x\n";
        let e = text.parse::<Table>().unwrap_err();
        let problem = syntax_problem(text, &e);
        assert_eq!(problem.key, "");
        assert!(
            problem
                .message
                .starts_with("TOML syntax error at line 2, column 11:"),
            "{}",
            problem.message
        );
    }

    /// Names files that do not exist and an account no system has: the pure pass finds no
    /// problem in them, because it looks at no file; it leaves each to the fs pass.
    const NAMES_FILES: &str = r#"
[cloud]
region = "cn-north-4"
project_id = "p"
ca_file = "/nonexistent/certsync/roots.pem"

[auth]
method = "token"
token_file = "/nonexistent/certsync/token"

[trust]
dir = "/nonexistent/certsync/trust"
owner = "no-such-user-certsync"
group = 7

[[instance]]
id = "inst-1"
"#;

    #[test]
    fn the_pure_pass_leaves_every_file_to_the_fs_pass() {
        let table: Table = NAMES_FILES.parse().unwrap();
        let pure = pure(&table, "/srv/conf/certsync.toml".into(), &|_| None);
        assert!(pure.problems.is_empty(), "{:?}", pure.problems);
        let config = pure.config.as_ref().expect("no problem in the text");
        assert_eq!(config.source, Path::new("/srv/conf/certsync.toml"));
        assert_eq!(config.trust.store.group, Some(7));
        assert_eq!(config.trust.store.owner, None);
        assert_eq!(
            config.trust.owner_name.as_deref(),
            Some("no-such-user-certsync")
        );
        assert!(config.warnings.is_empty());
        let checks: Vec<&FsCheck> = pure.checks.0.iter().map(|(_, c)| c).collect();
        assert_eq!(checks.len(), 3, "{checks:?}");
        assert!(
            matches!(checks[0], FsCheck::CaFile { path, .. } if path == Path::new("/nonexistent/certsync/roots.pem"))
        );
        assert!(
            matches!(checks[1], FsCheck::TrustDir { path, .. } if path == Path::new("/nonexistent/certsync/trust"))
        );
        assert!(matches!(
            checks[2],
            FsCheck::Account { name, db: AccountDb::User, .. } if name == "no-such-user-certsync"
        ));

        // The fs pass then finds the missing CA file and the unknown user, in file order.
        let problems = super::super::fs::pass(pure, 0).unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["cloud.ca_file", "trust.owner"]);
    }

    #[test]
    fn file_names_are_checked_against_every_instance() {
        let text = NAMES_FILES.replace("group = 7", "group = 7\nfile_name = \"{id}.crt\"")
            + "[[instance]]\nid = \"inst-2\"\ncategories = [\"national\"]\n";
        let table: Table = text.parse().unwrap();
        let found = pure(&table, "/srv/conf/certsync.toml".into(), &|_| None);
        let keys: Vec<&str> = found.problems.iter().map(|p| p.key.as_str()).collect();
        // Without {category} each instance needs exactly one: inst-1 has none.
        assert_eq!(keys, ["instance[0].categories"]);
        assert!(found.config.is_none());

        let text = NAMES_FILES.replace("group = 7", "group = 7\nfile_name = \"db-{category}.crt\"")
            + "[[instance]]\nid = \"inst-2\"\n";
        let table: Table = text.parse().unwrap();
        let found = pure(&table, "/srv/conf/certsync.toml".into(), &|_| None);
        let keys: Vec<&str> = found.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["trust.file_name"]);
        assert!(found.problems[0].message.contains("only one instance"));
    }

    #[test]
    fn fs_problems_keep_their_place_among_the_pure_ones() {
        let text = NAMES_FILES
            .replace("region = \"cn-north-4\"", "region = \"Mars\"")
            .replace("group = 7", "group = 7\nmode = \"9\"")
            .replace("id = \"inst-1\"", "id = \"a b\"");
        let table: Table = text.parse().unwrap();
        let problems =
            super::super::fs::pass(pure(&table, "/srv/conf/certsync.toml".into(), &|_| None), 0)
                .unwrap_err();
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "cloud.region",
                "cloud.ca_file",
                "trust.mode",
                "trust.owner",
                "instance[0].id"
            ]
        );
    }
}
