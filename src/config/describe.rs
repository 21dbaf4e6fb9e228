//! The resolved plan that `certsync check` prints: every setting after defaults and path
//! resolution, the files each instance produces, the hooks and the warnings.
//!
//! Owns: that text. Must not: print a secret (inline values are shown only by where they came
//! from), or read any file.

use std::fmt::Write as _;
use std::time::Duration;

use super::{
    Account, Auth, CloudAccount, Config, ENV_AK, ENV_SECURITY_TOKEN, ENV_SK, Instance, LogFormat,
    SecretKey,
};
use crate::hooks::HookAction;
use crate::store::{Layout, WriteMode};

impl Config {
    /// The resolved plan, for `certsync check`: endpoint, authentication, sync settings, the
    /// trust folder and its files per instance, hooks and logging. Holds no secret.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        let d = |d: Duration| humantime::format_duration(d).to_string();
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        let _ = writeln!(s, "config: {}", self.source.display());

        for account in &self.accounts {
            self.describe_account(&mut s, account);
        }
        let etcd_lines = |s: &mut String, e: &super::Etcd| {
            let _ = writeln!(s, "  endpoints: {}", e.endpoint_strings().join(", "));
            let _ = writeln!(s, "  keys: {} {}", e.leader_key(), e.bundle_key());
            if let Some(ca) = &e.ca_file {
                let _ = writeln!(s, "  ca_file: {}", ca.display());
            }
            if let Some((cert, _)) = &e.client_cert {
                let _ = writeln!(s, "  client certificate: {}", cert.display());
            }
            if let Some((user, file)) = &e.auth {
                let _ = writeln!(s, "  user: {user} (password from {})", file.display());
            }
        };
        if let Some(p) = &self.publish {
            let _ = writeln!(
                s,
                "publish: etcd, polls the cloud only while it leads (lease_ttl {})",
                d(p.lease_ttl)
            );
            etcd_lines(&mut s, &p.etcd);
        }
        if let Some(e) = &self.subscribe {
            let _ = writeln!(
                s,
                "source: etcd (a subscriber: the set at {}; no cloud polled)",
                e.bundle_key()
            );
            etcd_lines(&mut s, e);
        }
        let y = &self.sync;
        let _ = writeln!(s, "sync:");
        let _ = writeln!(
            s,
            "  interval: {} plus 0..{} jitter",
            d(y.interval),
            d(y.jitter)
        );
        let _ = writeln!(s, "  concurrency: {}", y.concurrency);
        let _ = writeln!(
            s,
            "  retry: {} doubling up to {}",
            d(y.retry_initial),
            d(y.retry_max)
        );
        let _ = writeln!(s, "  max_download_bytes: {}", y.max_download_bytes);
        let _ = writeln!(
            s,
            "  allowed_download_hosts: {}",
            y.allowed_download_hosts.join(", ")
        );
        let _ = writeln!(s, "  expiry_warning: {}", d(y.expiry_warning));
        let _ = writeln!(s, "  rotation_overlap: {}", d(self.trust.rotation_overlap));
        let _ = writeln!(
            s,
            "  rotation_overlap_max: {}",
            d(self.trust.rotation_overlap_max)
        );

        let t = &self.trust;
        let _ = writeln!(s, "trust:");
        let _ = writeln!(s, "  dir: {}", t.dir.display());
        let _ = writeln!(s, "  file_name: {}", t.file_name);
        let _ = writeln!(s, "  mode: {:04o}", t.mode);
        match &t.bundle {
            Some(b) => {
                let _ = writeln!(s, "  bundle: {}", t.dir.join(b).display());
            }
            None => {
                let _ = writeln!(s, "  bundle: none");
            }
        }
        let _ = writeln!(
            s,
            "  capath (<subject_hash>.<n> files): {}",
            yes_no(t.capath)
        );
        let _ = writeln!(s, "  prune: {}", yes_no(t.prune));
        let show_account = |a: &Option<Account>| match a {
            Some(a) => a.to_string(),
            None => "certsync's own".into(),
        };
        let _ = writeln!(s, "  owner: {}", show_account(&t.owner_account()));
        let _ = writeln!(s, "  group: {}", show_account(&t.group_account()));
        let _ = writeln!(
            s,
            "  write_mode: {}",
            match t.write_mode {
                WriteMode::Rename => "rename (atomic)",
                WriteMode::InPlace => "in-place (keeps the inode; readers may see a partial file)",
            }
        );
        let _ = writeln!(
            s,
            "  layout: {}",
            match t.layout {
                Layout::Flat => "flat",
                Layout::AtomicDir => "atomic-dir (..data swap)",
            }
        );
        match &t.pkcs12 {
            Some(p) => {
                let password = match &t.pkcs12_password_file {
                    Some(f) => format!("password from {}", f.display()),
                    None => "password \"changeit\"".into(),
                };
                let _ = writeln!(s, "  pkcs12: {} ({password})", t.dir.join(p).display());
            }
            None => {
                let _ = writeln!(s, "  pkcs12: none");
            }
        }

        let _ = writeln!(s, "instances ({}):", self.instances.len());
        for inst in &self.instances {
            let name = match &inst.name {
                Some(n) => format!("{n} ({})", inst.id),
                None => inst.id.clone(),
            };
            let _ = writeln!(s, "  {name}:");
            match &inst.categories {
                Some(cats) => {
                    for cat in cats {
                        let file = t.dir.join(t.file_name_for(inst, cat));
                        let _ = writeln!(s, "    {cat} -> {}", file.display());
                    }
                }
                None => {
                    let file = t.dir.join(t.file_name_for(inst, "{category}"));
                    let _ = writeln!(s, "    every category -> {}", file.display());
                }
            }
            if !inst.pins.is_empty() {
                let _ = writeln!(s, "    pinned to:");
                for pin in &inst.pins {
                    let _ = writeln!(s, "      {}", hex::encode(pin));
                }
            }
        }

        let _ = writeln!(s, "hooks ({}):", self.hooks.len());
        for hook in &self.hooks {
            let _ = writeln!(s, "  {}:", hook.name);
            match &hook.action {
                HookAction::Command(argv) => {
                    let _ = writeln!(s, "    command: {argv:?}");
                }
                HookAction::Signal { signal, pid_file } => {
                    let _ = writeln!(
                        s,
                        "    signal: {signal} to the pid in {}",
                        pid_file.display()
                    );
                }
            }
            let _ = writeln!(s, "    timeout: {}", d(hook.timeout));
            match &hook.instances {
                Some(ids) => {
                    let names: Vec<String> = ids
                        .iter()
                        .map(|id| match self.instances.iter().find(|i| &i.id == id) {
                            Some(Instance {
                                name: Some(name), ..
                            }) => format!("{name} ({id})"),
                            _ => id.clone(),
                        })
                        .collect();
                    let _ = writeln!(
                        s,
                        "    runs when these instances change: {}",
                        names.join(", ")
                    );
                }
                None => {
                    let _ = writeln!(s, "    runs on any change");
                }
            }
        }

        let _ = writeln!(s, "log:");
        let format = match self.log.format {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        };
        let _ = writeln!(s, "  format: {format}");
        let _ = writeln!(
            s,
            "  level: {}",
            self.log.level.as_deref().unwrap_or("(default)")
        );
        // Last, where a terminal leaves them in view.
        for w in &self.warnings {
            let _ = writeln!(s, "warning: {w}");
        }
        s
    }
}
impl Config {
    /// One account's lines: `cloud:` and `auth:` for `default` from `[cloud]` + `[auth]`,
    /// `account NAME (KEY):` and `account NAME auth:` for an `[[account]]`.
    fn describe_account(&self, s: &mut String, account: &CloudAccount) {
        let d = |d: Duration| humantime::format_duration(d).to_string();
        let (cloud_header, auth_header) = if account.key == "cloud" {
            ("cloud:".to_string(), "auth:".to_string())
        } else {
            (
                format!("account {} ({}):", account.name, account.key),
                format!("account {} auth ({}):", account.name, account.auth_key()),
            )
        };
        let c = &account.cloud;
        let _ = writeln!(s, "{cloud_header}");
        let _ = writeln!(s, "  service: {} (region {})", c.service, c.region);
        let _ = writeln!(s, "  endpoint: {}", c.endpoint);
        match (&c.project_id, &account.auth) {
            (Some(id), _) => {
                let _ = writeln!(s, "  project_id: {id}");
            }
            (None, Auth::Password(_)) => {
                let _ = writeln!(
                    s,
                    "  project_id: from the IAM token (scoped to project {:?})",
                    c.region
                );
            }
            (None, _) => {
                let _ = writeln!(
                    s,
                    "  project_id: looked up in IAM (GET /v3/projects?name={})",
                    c.region
                );
            }
        }
        let _ = writeln!(s, "  iam_endpoint: {}", c.iam_endpoint);
        match &c.ca_file {
            Some(p) => {
                let _ = writeln!(
                    s,
                    "  extra roots: {} (system roots stay trusted)",
                    p.display()
                );
            }
            None => {
                let _ = writeln!(s, "  extra roots: none (system roots only)");
            }
        }
        let _ = writeln!(s, "  request timeout: {}", d(c.timeout));

        let _ = writeln!(
            s,
            "  max_requests_per_second: {} (per endpoint, burst as many; a 429 pauses the account)",
            c.max_requests_per_second
        );
        let instances = self
            .instances
            .iter()
            .filter(|i| i.account == account.name)
            .count();
        let queries = self
            .discover
            .iter()
            .filter(|q| q.account == account.name)
            .count();
        let _ = writeln!(
            s,
            "  instances: {instances} configured, {queries} [[discover]] quer{}",
            if queries == 1 { "y" } else { "ies" }
        );
        let _ = writeln!(s, "{auth_header}");
        match &account.auth {
            Auth::Token { token_file } => {
                let _ = writeln!(s, "  method: token (X-Auth-Token)");
                let _ = writeln!(s, "  token_file: {}", token_file.display());
            }
            Auth::AkSk(a) => {
                let _ = writeln!(s, "  method: aksk (SDK-HMAC-SHA256 signatures)");
                let origin = |var: &str| {
                    if a.from_env.contains(&var) {
                        format!("from {var}")
                    } else {
                        "set in this file".to_string()
                    }
                };
                let _ = writeln!(s, "  access_key: {}", origin(ENV_AK));
                match &a.secret_key {
                    SecretKey::File(path) => {
                        let _ = writeln!(s, "  secret_key_file: {}", path.display());
                    }
                    SecretKey::Inline(_) => {
                        let _ = writeln!(s, "  secret_key: {}", origin(ENV_SK));
                    }
                }
                let token = match &a.security_token {
                    Some(_) => format!("{} (temporary AK/SK)", origin(ENV_SECURITY_TOKEN)),
                    None => "none (permanent AK/SK)".to_string(),
                };
                let _ = writeln!(s, "  security_token: {token}");
            }
            Auth::Password(pw) => {
                let _ = writeln!(
                    s,
                    "  method: password (IAM token, renewed before it expires)"
                );
                let _ = writeln!(s, "  user: {} (domain {})", pw.user, pw.domain);
                let _ = writeln!(s, "  password_file: {}", pw.password_file.display());
            }
            Auth::Metadata { metadata_endpoint } => {
                let _ = writeln!(
                    s,
                    "  method: metadata (temporary AK/SK from the ECS metadata service)"
                );
                let _ = writeln!(s, "  metadata_endpoint: {metadata_endpoint}");
            }
        }
    }
}
