//! Helpers shared by the `store_*` tests: CAs generated with rcgen, store options, inputs and
//! file facts (content, mode, inode, mtime).
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use certsync::cert::Cert;
use certsync::store::{DesiredEntry, PassInput, StoreOptions};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
};
use time::OffsetDateTime;

/// A generated CA: the parsed certificate and what is needed to issue leaves with it.
pub struct TestCa {
    pub cert: Cert,
    pub params: CertificateParams,
    pub key: KeyPair,
}

impl TestCa {
    /// A CA valid from a day ago for a year.
    pub fn new(cn: &str) -> TestCa {
        TestCa::with_validity(cn, OffsetDateTime::now_utc() + time::Duration::days(365))
    }

    /// A CA valid from a day ago until `not_after`.
    pub fn with_validity(cn: &str, not_after: OffsetDateTime) -> TestCa {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        dn.push(DnType::OrganizationName, "certsync tests");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.not_before = OffsetDateTime::now_utc() - time::Duration::days(1);
        params.not_after = not_after;
        let key = KeyPair::generate().expect("key");
        let der = params.self_signed(&key).expect("self-sign").der().to_vec();
        TestCa {
            cert: Cert::from_der(&der).expect("parse"),
            params,
            key,
        }
    }

    /// A leaf for `localhost` issued by this CA, as PEM.
    pub fn issue_leaf_pem(&self) -> String {
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        params.not_before = OffsetDateTime::now_utc() - time::Duration::days(1);
        params.not_after = OffsetDateTime::now_utc() + time::Duration::days(30);
        let key = KeyPair::generate().expect("key");
        let issuer = Issuer::from_params(&self.params, &self.key);
        params.signed_by(&key, &issuer).expect("sign").pem()
    }

    pub fn pem(&self) -> String {
        self.cert.to_pem()
    }

    pub fn fp(&self) -> String {
        self.cert.fingerprint()
    }
}

/// Options with a bundle, hash files, prune and the given overlap.
pub fn opts(dir: &Path, overlap: Duration) -> StoreOptions {
    StoreOptions {
        bundle: Some("ca-bundle.crt".to_string()),
        rotation_overlap: overlap,
        ..StoreOptions::new(dir.to_path_buf())
    }
}

pub fn entry(id: &str, category: &str, certs: &[&TestCa]) -> DesiredEntry {
    DesiredEntry {
        instance_id: id.to_string(),
        category: category.to_string(),
        file_name: format!("{id}-{category}.crt"),
        certs: certs.iter().map(|c| c.cert.clone()).collect(),
    }
}

/// A pass in which every instance of `updates` synced and they are all the configured ones,
/// plus `extra_configured`.
pub fn pass(updates: Vec<DesiredEntry>, extra_configured: &[&str]) -> PassInput {
    let synced: BTreeSet<String> = updates.iter().map(|e| e.instance_id.clone()).collect();
    let mut configured = synced.clone();
    configured.extend(extra_configured.iter().map(|s| s.to_string()));
    PassInput {
        updates,
        synced,
        configured,
        counts: true,
        ..PassInput::default()
    }
}

pub fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path.as_ref())
        .unwrap_or_else(|e| panic!("read {}: {e}", path.as_ref().display()))
}

/// (inode, mtime in ns, mode bits) of a file.
pub type Facts = (u64, i128, u32);

/// [`Facts`] of a file, symlinks not followed.
pub fn facts(path: impl AsRef<Path>) -> Facts {
    let m = std::fs::symlink_metadata(path.as_ref()).expect("stat");
    (
        m.ino(),
        m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
        m.mode() & 0o7777,
    )
}

/// Every name in the folder, sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    out.sort();
    out
}

/// Facts of every file in the folder.
pub fn snapshot(dir: &Path) -> Vec<(String, Facts, Vec<u8>)> {
    names(dir)
        .into_iter()
        .map(|n| {
            let p = dir.join(&n);
            (n, facts(&p), std::fs::read(&p).unwrap())
        })
        .collect()
}

/// The manifest as JSON.
pub fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&read(dir.join(".certsync-manifest.json"))).expect("manifest JSON")
}

/// A fresh folder path (not created) inside a temp dir.
pub fn trust_dir(tmp: &tempfile::TempDir) -> PathBuf {
    tmp.path().join("trust")
}

pub fn t0() -> SystemTime {
    SystemTime::now()
}

pub fn mins(n: u64) -> Duration {
    Duration::from_secs(60 * n)
}

/// Makes a file or folder immutable (`chattr +i`: even root cannot change, rename or remove it,
/// or create in a folder) until dropped.
pub struct Immutable<'a>(&'a Path);

impl<'a> Immutable<'a> {
    pub fn new(path: &'a Path) -> Immutable<'a> {
        let ok = std::process::Command::new("chattr")
            .arg("+i")
            .arg(path)
            .status()
            .expect("run chattr")
            .success();
        assert!(ok, "chattr +i {}", path.display());
        Immutable(path)
    }
}

impl Drop for Immutable<'_> {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(self.0)
            .status();
    }
}
