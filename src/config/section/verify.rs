//! `[verify]`: live verification of the instances' endpoints (SPEC 13).
//!
//! Owns: the section's keys, defaults and limits. Must not: connect anywhere (`verify`
//! probes), or decide which endpoints an instance has (`instance.endpoints`, else
//! ListInstances).

use std::time::Duration;

use toml::Table;

use super::super::keys::{SectionKind, SectionSchema};
use super::super::reader::{Problems, Section};
use super::{positive_duration, show_raw};

/// The keys of `[verify]`.
pub(in crate::config) const SCHEMA: SectionSchema = SectionSchema {
    name: "verify",
    kind: SectionKind::Table,
    keys: &[
        "enabled",
        "interval",
        "timeout",
        "check_hostname",
        "required",
    ],
    variants: &[],
};

/// `verify.interval` when left out: between two probes of one endpoint.
pub const DEFAULT_VERIFY_INTERVAL: Duration = Duration::from_secs(15 * 60);
/// The shortest `verify.interval` accepted.
pub const MIN_VERIFY_INTERVAL: Duration = Duration::from_secs(1);
/// `verify.timeout` when left out: a whole probe (connect and handshake).
pub const DEFAULT_VERIFY_TIMEOUT: Duration = Duration::from_secs(5);

/// `[verify]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verify {
    /// `enabled`; `None` when left out: on when any instance has endpoints (configured or
    /// listed by ListInstances).
    pub enabled: Option<bool>,
    /// Between probes of one endpoint (plus jitter); also after every change.
    pub interval: Duration,
    /// A whole probe: connect and TLS handshake.
    pub timeout: Duration,
    /// Check the endpoint's name against the leaf too (off: Huawei's own client examples
    /// skip it, the servers' certificates name internal addresses).
    pub check_hostname: bool,
    /// An endpoint that fails verification makes `/readyz` answer 503.
    pub required: bool,
}

impl Default for Verify {
    fn default() -> Self {
        Verify {
            enabled: None,
            interval: DEFAULT_VERIFY_INTERVAL,
            timeout: DEFAULT_VERIFY_TIMEOUT,
            check_hostname: false,
            required: false,
        }
    }
}

/// Reads `[verify]` (absent: every default).
pub(in crate::config) fn read(p: &mut Problems, table: &Table) -> Verify {
    let sec = Section::open(p, SCHEMA.name, table, SCHEMA.keys);
    let defaults = Verify::default();
    let interval = match sec.duration(p, "interval") {
        Some(d) if d < MIN_VERIFY_INTERVAL => {
            p.push(
                sec.key("interval"),
                format!(
                    "{} is shorter than the minimum \"1s\"",
                    show_raw(&sec, "interval")
                ),
            );
            defaults.interval
        }
        Some(d) => d,
        None => defaults.interval,
    };
    Verify {
        enabled: sec.boolean(p, "enabled"),
        interval,
        timeout: positive_duration(p, &sec, "timeout").unwrap_or(defaults.timeout),
        check_hostname: sec
            .boolean(p, "check_hostname")
            .unwrap_or(defaults.check_hostname),
        required: sec.boolean(p, "required").unwrap_or(defaults.required),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{keys, table, walk};
    use super::*;

    #[test]
    fn defaults_and_every_key() {
        let t = table("");
        let (v, problems, _) = walk(|p, _| read(p, &t));
        assert!(problems.is_empty());
        assert_eq!(v, Verify::default());
        assert_eq!(v.interval, Duration::from_secs(900));
        assert_eq!(v.timeout, Duration::from_secs(5));

        let t = table(
            "enabled = false\ninterval = \"2m\"\ntimeout = \"1s\"\ncheck_hostname = true\nrequired = true",
        );
        let (v, problems, _) = walk(|p, _| read(p, &t));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            v,
            Verify {
                enabled: Some(false),
                interval: Duration::from_secs(120),
                timeout: Duration::from_secs(1),
                check_hostname: true,
                required: true,
            }
        );
    }

    #[test]
    fn bad_values_are_named() {
        let t = table("interval = \"500ms\"\ntimeout = \"0s\"\nrequired = \"yes\"\nenable = true");
        let (_, problems, _) = walk(|p, _| read(p, &t));
        assert_eq!(
            keys(&problems),
            [
                "verify.enable",
                "verify.interval",
                "verify.timeout",
                "verify.required"
            ]
        );
    }
}
