//! The published set: built from passes, read back, and every hostile value refused whole.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use super::*;
use crate::cert::testing::self_signed_ca;

fn opts(overlap: Duration) -> StoreOptions {
    let mut o = StoreOptions::new(PathBuf::from("/t"));
    o.rotation_overlap = overlap;
    o
}

fn entry(id: &str, certs: &[&Cert]) -> DesiredEntry {
    DesiredEntry {
        instance_id: id.into(),
        category: "international".into(),
        file_name: format!("{id}-international.crt"),
        certs: certs.iter().map(|c| (*c).clone()).collect(),
        kept: Vec::new(),
    }
}

fn no_pins(_: &str) -> Vec<[u8; 32]> {
    Vec::new()
}

fn read_back(bytes: &[u8]) -> Result<Published, BundleError> {
    read(
        bytes,
        SystemTime::now(),
        0,
        &no_pins,
        &VerifiedSignatures::default(),
    )
}

/// The set of one pass over `synced` after `prev`, written as the next generation.
fn publish(
    prev: Option<&Published>,
    synced: &[(&str, &DesiredEntry)],
    failed: &[&str],
    now: OffsetDateTime,
    overlap: Duration,
) -> Published {
    let pass = PassSet {
        synced: synced
            .iter()
            .map(|(id, e)| (*id, Some(*id), vec![*e]))
            .collect(),
        failed: failed.iter().copied().collect(),
    };
    let set = next(prev, &pass, now, &opts(overlap), &Evidence::new());
    let prev_gen = prev.map_or(0, |p| p.generation);
    let (_, bytes) = stamp(set, prev_gen, "host/1/x", now).unwrap();
    read_back(&bytes).unwrap()
}

#[test]
fn a_rotation_keeps_the_old_ca_in_the_overlap_with_its_time_and_a_failed_instance_keeps_its_entry()
{
    let (a, b, c) = (
        self_signed_ca("a"),
        self_signed_ca("b"),
        self_signed_ca("c"),
    );
    let t0 = OffsetDateTime::now_utc();
    let first = publish(
        None,
        &[("i1", &entry("i1", &[&a])), ("i2", &entry("i2", &[&c]))],
        &[],
        t0,
        Duration::from_secs(3600),
    );
    assert_eq!(first.generation, 1);
    assert_eq!(first.bundle.cas.len(), 2);

    // i1 rotates to b; i2 fails this pass: its entry stays as it was.
    let t1 = t0 + time::Duration::minutes(10);
    let second = publish(
        Some(&first),
        &[("i1", &entry("i1", &[&b]))],
        &["i2"],
        t1,
        Duration::from_secs(3600),
    );
    assert_eq!(second.generation, 2);
    let i1 = &second.instances[0];
    assert_eq!(i1.entries[0].current[0].sha256, b.sha256);
    assert_eq!(i1.entries[0].kept.len(), 1);
    assert_eq!(i1.entries[0].kept[0].cert.sha256, a.sha256);
    let at = i1.entries[0].kept[0].replaced_at;
    assert_eq!(at.unix_timestamp(), t1.unix_timestamp());
    assert_eq!(second.instances[1].id, "i2");
    assert_eq!(second.instances[1].entries[0].current[0].sha256, c.sha256);

    // The next leader continues from the set: the overlap keeps its time, and ends on time.
    let t2 = t1 + time::Duration::minutes(30);
    let third = publish(
        Some(&second),
        &[("i1", &entry("i1", &[&b]))],
        &["i2"],
        t2,
        Duration::from_secs(3600),
    );
    let kept = &third.instances[0].entries[0].kept;
    assert_eq!(kept[0].replaced_at.unix_timestamp(), t1.unix_timestamp());
    let t3 = t1 + time::Duration::minutes(61);
    let fourth = publish(
        Some(&third),
        &[("i1", &entry("i1", &[&b]))],
        &[],
        t3,
        Duration::from_secs(3600),
    );
    assert!(fourth.instances[0].entries[0].kept.is_empty());
    // i2 is out of the plan (neither synced nor failed): it leaves, and so does its CA.
    assert_eq!(fourth.instances.len(), 1);
    assert_eq!(fourth.bundle.cas.len(), 1);
}

#[test]
fn an_unchanged_pass_is_the_same_set() {
    let a = self_signed_ca("a");
    let t0 = OffsetDateTime::now_utc();
    let first = publish(
        None,
        &[("i1", &entry("i1", &[&a]))],
        &[],
        t0,
        Duration::ZERO,
    );
    let e = entry("i1", &[&a]);
    let pass = PassSet {
        synced: vec![("i1", Some("i1"), vec![&e])],
        failed: BTreeSet::new(),
    };
    let again = next(
        Some(&first),
        &pass,
        t0 + time::Duration::hours(1),
        &opts(Duration::ZERO),
        &Evidence::new(),
    );
    assert!(same_set(&again, &first.bundle));
}

fn one_ca_bundle(key: &str, pem: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "format": 1, "generation": 5, "published_at": "2026-01-01T00:00:00Z", "publisher": "x",
        "cas": {key: pem},
        "instances": [{"id": "i1", "name": "orders",
                       "entries": [{"category": "international", "current": [key], "overlap": []}]}]
    }))
    .unwrap()
}

#[test]
fn every_hostile_value_is_refused_whole() {
    let a = self_signed_ca("a");
    let good = one_ca_bundle(&a.fingerprint(), &a.to_pem());
    assert!(read_back(&good).is_ok());

    // A private key where a CA should be.
    let key = rcgen::KeyPair::generate().unwrap().serialize_pem();
    let e = read_back(&one_ca_bundle(&a.fingerprint(), &key)).unwrap_err();
    assert!(matches!(e, BundleError::Invalid { .. }), "{e}");
    assert!(e.to_string().contains("PRIVATE KEY"), "{e}");
    // A certificate that is not a CA.
    let leaf = rcgen::generate_simple_self_signed(vec!["x".into()]).unwrap();
    let leaf_cert = Cert::from_der(leaf.cert.der()).unwrap();
    let e = read_back(&one_ca_bundle(&leaf_cert.fingerprint(), &leaf.cert.pem())).unwrap_err();
    assert!(matches!(e, BundleError::Invalid { .. }), "{e}");
    // A fingerprint that is not its PEM's.
    let other = self_signed_ca("b");
    let e = read_back(&one_ca_bundle(&other.fingerprint(), &a.to_pem())).unwrap_err();
    assert!(matches!(e, BundleError::Fingerprint { .. }), "{e}");
    // Garbage, another format, unknown fields, a CA named but not held.
    for bad in [
        b"\x00\xffgarbage".to_vec(),
        br#"{"format": 2}"#.to_vec(),
        serde_json::to_vec(&serde_json::json!({"format": 1, "generation": 1,
            "published_at": "", "publisher": "", "cas": {}, "instances": [], "extra": 1}))
        .unwrap(),
        serde_json::to_vec(&serde_json::json!({"format": 1, "generation": 1,
            "published_at": "", "publisher": "", "cas": {},
            "instances": [{"id": "i1", "name": null,
                "entries": [{"category": "c", "current": ["00"], "overlap": []}]}]}))
        .unwrap(),
        serde_json::to_vec(&serde_json::json!({"format": 1, "generation": 1,
            "published_at": "", "publisher": "", "cas": {},
            "instances": [{"id": "../etc", "name": null, "entries": []}]}))
        .unwrap(),
    ] {
        assert!(
            read_back(&bad).is_err(),
            "{}",
            String::from_utf8_lossy(&bad)
        );
    }
    // An older generation than applied.
    let e = read(
        &good,
        SystemTime::now(),
        6,
        &no_pins,
        &VerifiedSignatures::default(),
    )
    .unwrap_err();
    assert!(
        matches!(e, BundleError::Older { got: 5, applied: 6 }),
        "{e}"
    );
    // A pin the current CA does not match.
    let pinned = |_: &str| vec![[7u8; 32]];
    let e = read(
        &good,
        SystemTime::now(),
        0,
        &pinned,
        &VerifiedSignatures::default(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("pin_sha256"), "{e}");
    // Too large for etcd.
    let huge = vec![b' '; MAX_BUNDLE_BYTES + 1];
    assert!(matches!(
        read_back(&huge),
        Err(BundleError::TooLarge { .. })
    ));
}

/// A self-signed CA named `cn` valid for `days` from now.
fn ca_for_days(cn: &str, days: i64) -> Cert {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.not_before = OffsetDateTime::now_utc() - time::Duration::days(1);
    params.not_after = OffsetDateTime::now_utc() + time::Duration::days(days);
    let key = rcgen::KeyPair::generate().unwrap();
    Cert::from_der(params.self_signed(&key).unwrap().der()).unwrap()
}

#[test]
fn a_ca_that_expired_after_publication_fails_only_its_entry() {
    let long = ca_for_days("long", 3650);
    let short = ca_for_days("short", 10);
    // i1: current `long`, overlap `short`; i2: current `short` (its instance failed since).
    let bytes = serde_json::to_vec(&serde_json::json!({
        "format": 1, "generation": 7, "published_at": "2026-01-01T00:00:00Z", "publisher": "x",
        "cas": {long.fingerprint(): long.to_pem(), short.fingerprint(): short.to_pem()},
        "instances": [
            {"id": "i1", "name": null, "entries": [{"category": "international",
                "current": [long.fingerprint()],
                "overlap": [{"sha256": short.fingerprint(), "replaced_at": "2026-01-01T00:00:00Z"}]}]},
            {"id": "i2", "name": null, "entries": [{"category": "international",
                "current": [short.fingerprint()], "overlap": []}]}
        ]
    }))
    .unwrap();
    let now = read_back(&bytes).unwrap();
    assert_eq!(now.instances[0].entries[0].kept.len(), 1);
    assert!(!now.instances[1].entries[0].expired);

    // A month later `short` has expired: the set still reads, without it.
    let later = SystemTime::now() + Duration::from_secs(30 * 86_400);
    let read_later = read(&bytes, later, 0, &no_pins, &VerifiedSignatures::default()).unwrap();
    let i1 = &read_later.instances[0].entries[0];
    assert_eq!(i1.current, vec![long.clone()]);
    assert!(i1.kept.is_empty(), "an expired overlap CA is left out");
    assert!(!i1.expired);
    let i2 = &read_later.instances[1].entries[0];
    assert!(i2.expired && i2.current.is_empty());

    // Anything else wrong with a CA still refuses the set whole.
    let leaf = rcgen::generate_simple_self_signed(vec!["x".into()]).unwrap();
    let mut hostile: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    hostile["cas"][short.fingerprint()] = leaf.cert.pem().into();
    let hostile = serde_json::to_vec(&hostile).unwrap();
    assert!(read(&hostile, later, 0, &no_pins, &VerifiedSignatures::default()).is_err());
}
