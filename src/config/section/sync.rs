//! `[sync]`: timing and limits of passes (SPEC 3).
//!
//! Owns: the section's keys, defaults and limits (interval, jitter, concurrency, retries,
//! download size and hosts, expiry warning, config watching). `rotation_overlap` and
//! `rotation_overlap_max` are read here but belong to the store (they decide how long a
//! replaced CA stays), so their values go into the store's options and their defaults are the
//! store's. Must not: read a file.

use std::time::Duration;

use toml::Table;

use super::super::keys::{SectionKind, SectionSchema};
use super::super::reader::{Problems, Section, quote};
use super::{positive_duration, show_raw};
use crate::names;

/// The keys of `[sync]`.
pub(in crate::config) const SCHEMA: SectionSchema = SectionSchema {
    name: "sync",
    kind: SectionKind::Table,
    keys: &[
        "interval",
        "jitter",
        "concurrency",
        "retry_initial",
        "retry_max",
        "max_download_bytes",
        "allowed_download_hosts",
        "expiry_warning",
        "rotation_overlap",
        "rotation_overlap_max",
        "watch_config",
    ],
    variants: &[],
};

/// `sync.interval` when left out.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(3600);
/// The shortest `sync.interval` accepted, so a typo cannot hammer the API.
pub const MIN_INTERVAL: Duration = Duration::from_secs(10);
/// `sync.jitter` defaults to `interval / JITTER_DIVISOR`.
pub const JITTER_DIVISOR: u32 = 10;
/// `sync.concurrency` when left out.
pub const DEFAULT_CONCURRENCY: usize = 8;
/// The largest `sync.concurrency` accepted.
pub const MAX_CONCURRENCY: usize = 256;
/// `sync.retry_initial` when left out.
pub const DEFAULT_RETRY_INITIAL: Duration = Duration::from_secs(10);
/// `sync.retry_max` when left out.
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(600);
/// `sync.max_download_bytes` when left out (1 MiB: a CA bundle is a few KiB).
pub const DEFAULT_MAX_DOWNLOAD_BYTES: u64 = 1024 * 1024;
/// The largest `sync.max_download_bytes` accepted (64 MiB).
pub const MAX_MAX_DOWNLOAD_BYTES: u64 = 64 * 1024 * 1024;
/// `sync.allowed_download_hosts` when left out: Huawei's OBS hosts.
pub const DEFAULT_ALLOWED_DOWNLOAD_HOSTS: &[&str] = &["*.myhuaweicloud.com", "*.myhuaweicloud.eu"];
/// `sync.expiry_warning` when left out.
pub const DEFAULT_EXPIRY_WARNING: Duration = Duration::from_secs(30 * 86400);
/// `sync.watch_config` when left out.
pub const DEFAULT_WATCH_CONFIG: bool = true;

/// `[sync]`: timing and limits of passes. (`sync.rotation_overlap` is the store's:
/// `Config::trust`'s `rotation_overlap`.)
#[derive(Debug, Clone)]
pub struct SyncSettings {
    /// Between passes; at least [`MIN_INTERVAL`].
    pub interval: Duration,
    /// Random `0..jitter` added to every wait.
    pub jitter: Duration,
    /// Instances in flight at once, `1..=MAX_CONCURRENCY`.
    pub concurrency: usize,
    /// First retry delay of a failed instance (> 0).
    pub retry_initial: Duration,
    /// Largest retry delay (>= `retry_initial`).
    pub retry_max: Duration,
    /// Largest download accepted, `1..=MAX_MAX_DOWNLOAD_BYTES`.
    pub max_download_bytes: u64,
    /// Lower-case host names, `*.suffix` patterns, or bracketed IPv6 addresses.
    pub allowed_download_hosts: Vec<String>,
    /// Warn when a CA in use expires within this.
    pub expiry_warning: Duration,
    /// Reload when the config file changes (the folder is watched, so editors' rename-saves
    /// are seen).
    pub watch_config: bool,
}

/// `sync.rotation_overlap` and `sync.rotation_overlap_max` as written (for the store's
/// options; `None`: left out).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Overlaps {
    /// `rotation_overlap`.
    pub(crate) overlap: Option<Duration>,
    /// `rotation_overlap_max` (SPEC 13).
    pub(crate) max: Option<Duration>,
}

/// Reads `[sync]`: its settings, and the overlaps when written (for the store's options).
pub(in crate::config) fn read(p: &mut Problems, table: &Table) -> (SyncSettings, Overlaps) {
    let sec = Section::open(p, SCHEMA.name, table, SCHEMA.keys);
    let interval = match sec.duration(p, "interval") {
        Some(d) if d < MIN_INTERVAL => {
            p.push(
                sec.key("interval"),
                format!(
                    "{} is shorter than the minimum \"{}\"",
                    show_raw(&sec, "interval"),
                    humantime::format_duration(MIN_INTERVAL)
                ),
            );
            DEFAULT_INTERVAL
        }
        Some(d) => d,
        None => DEFAULT_INTERVAL,
    };
    let jitter = sec
        .duration(p, "jitter")
        .unwrap_or(interval / JITTER_DIVISOR);

    let concurrency = match sec.integer(p, "concurrency") {
        None => DEFAULT_CONCURRENCY,
        Some(n) if (1..=MAX_CONCURRENCY as i64).contains(&n) => n as usize,
        Some(n) => {
            p.push(
                sec.key("concurrency"),
                format!("{n} is out of range (1..={MAX_CONCURRENCY})"),
            );
            DEFAULT_CONCURRENCY
        }
    };

    let retry_initial = positive_duration(p, &sec, "retry_initial");
    let retry_max = positive_duration(p, &sec, "retry_max");
    if let (Some(initial), Some(max)) = (
        retry_initial.or((!sec.has("retry_initial")).then_some(DEFAULT_RETRY_INITIAL)),
        retry_max.or((!sec.has("retry_max")).then_some(DEFAULT_RETRY_MAX)),
    ) && initial > max
    {
        let fmt = |key: &str, d: Duration| {
            if sec.has(key) {
                show_raw(&sec, key)
            } else {
                format!("\"{}\" (default)", humantime::format_duration(d))
            }
        };
        // Blame the key the user wrote; when both are written, the upper bound.
        let key = if sec.has("retry_max") {
            "retry_max"
        } else {
            "retry_initial"
        };
        p.push(
            sec.key(key),
            format!(
                "retry_initial {} must not exceed retry_max {}",
                fmt("retry_initial", initial),
                fmt("retry_max", max)
            ),
        );
    }

    let max_download_bytes = match sec.integer(p, "max_download_bytes") {
        None => DEFAULT_MAX_DOWNLOAD_BYTES,
        Some(n) if n >= 1 && (n as u64) <= MAX_MAX_DOWNLOAD_BYTES => n as u64,
        Some(n) => {
            p.push(
                sec.key("max_download_bytes"),
                format!("{n} is out of range (1..={MAX_MAX_DOWNLOAD_BYTES}, 64 MiB)"),
            );
            DEFAULT_MAX_DOWNLOAD_BYTES
        }
    };

    let allowed_download_hosts = match sec.strings(p, "allowed_download_hosts") {
        None => DEFAULT_ALLOWED_DOWNLOAD_HOSTS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        Some(items) => {
            if items.is_empty() {
                p.push(
                    sec.key("allowed_download_hosts"),
                    "must not be empty (got []): no download could ever succeed",
                );
            }
            let mut hosts = Vec::with_capacity(items.len());
            for (key, host) in items {
                let lower = host.to_ascii_lowercase();
                if names::is_host_pattern(&lower) {
                    if !hosts.contains(&lower) {
                        hosts.push(lower);
                    }
                } else {
                    p.push(
                        key,
                        format!(
                            "{} is not a host name or \"*.suffix\" pattern (no scheme, port or path)",
                            quote(host)
                        ),
                    );
                }
            }
            hosts
        }
    };

    let expiry_warning = sec
        .duration(p, "expiry_warning")
        .unwrap_or(DEFAULT_EXPIRY_WARNING);
    let overlaps = Overlaps {
        overlap: sec.duration(p, "rotation_overlap"),
        max: sec.duration(p, "rotation_overlap_max"),
    };
    if let Overlaps {
        overlap: Some(overlap),
        max: Some(max),
    } = overlaps
        && max < overlap
    {
        p.push(
            sec.key("rotation_overlap_max"),
            format!(
                "{} is shorter than sync.rotation_overlap ({}): the longest overlap cannot be shorter than the plain one",
                show_raw(&sec, "rotation_overlap_max"),
                show_raw(&sec, "rotation_overlap")
            ),
        );
    }

    let watch_config = sec
        .boolean(p, "watch_config")
        .unwrap_or(DEFAULT_WATCH_CONFIG);

    let settings = SyncSettings {
        interval,
        jitter,
        concurrency,
        retry_initial: retry_initial.unwrap_or(DEFAULT_RETRY_INITIAL),
        retry_max: retry_max.unwrap_or(DEFAULT_RETRY_MAX),
        max_download_bytes,
        allowed_download_hosts,
        expiry_warning,
        watch_config,
    };
    (settings, overlaps)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{keys, table, walk};
    use super::*;

    fn read_sync(text: &str) -> (SyncSettings, Overlaps, Vec<crate::config::Problem>) {
        let t = table(text);
        let ((settings, overlap), problems, fs) = walk(|p, _| read(p, &t));
        assert!(fs.0.is_empty());
        (settings, overlap, problems)
    }

    #[test]
    fn defaults_are_the_named_constants() {
        let (s, overlap, problems) = read_sync("");
        assert!(problems.is_empty());
        assert_eq!(s.interval, DEFAULT_INTERVAL);
        assert_eq!(s.jitter, DEFAULT_INTERVAL / JITTER_DIVISOR);
        assert_eq!(s.concurrency, DEFAULT_CONCURRENCY);
        assert_eq!(s.retry_initial, DEFAULT_RETRY_INITIAL);
        assert_eq!(s.retry_max, DEFAULT_RETRY_MAX);
        assert_eq!(s.max_download_bytes, DEFAULT_MAX_DOWNLOAD_BYTES);
        assert_eq!(s.allowed_download_hosts, DEFAULT_ALLOWED_DOWNLOAD_HOSTS);
        assert_eq!(s.expiry_warning, DEFAULT_EXPIRY_WARNING);
        assert_eq!(s.watch_config, DEFAULT_WATCH_CONFIG);
        // Left to the store's own defaults.
        assert_eq!(overlap, Overlaps::default());
    }

    #[test]
    fn every_key_is_read() {
        let (s, overlap, problems) = read_sync(
            r#"interval = "2h"
jitter = "1m"
concurrency = 3
retry_initial = "2s"
retry_max = "4s"
max_download_bytes = 10
allowed_download_hosts = ["A.example", "a.example"]
expiry_warning = "1d"
rotation_overlap = "0s"
rotation_overlap_max = "2d"
watch_config = false"#,
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(s.interval, Duration::from_secs(7200));
        assert_eq!(s.jitter, Duration::from_secs(60));
        assert_eq!(s.concurrency, 3);
        assert_eq!(
            (s.retry_initial, s.retry_max),
            (Duration::from_secs(2), Duration::from_secs(4))
        );
        assert_eq!(s.max_download_bytes, 10);
        assert_eq!(s.allowed_download_hosts, ["a.example"]);
        assert_eq!(s.expiry_warning, Duration::from_secs(86400));
        assert_eq!(
            overlap,
            Overlaps {
                overlap: Some(Duration::ZERO),
                max: Some(Duration::from_secs(2 * 86400)),
            }
        );
        assert!(!s.watch_config);
    }

    #[test]
    fn limits_are_enforced_with_the_key_that_was_written() {
        let (_, _, problems) = read_sync(
            "interval = \"9s\"\nconcurrency = 257\nretry_initial = \"20m\"\nmax_download_bytes = 0",
        );
        assert_eq!(
            keys(&problems),
            [
                "sync.interval",
                "sync.concurrency",
                "sync.retry_initial",
                "sync.max_download_bytes"
            ]
        );
        assert!(problems[2].message.contains("(default)"), "{problems:?}");
    }

    #[test]
    fn the_longest_overlap_is_not_shorter_than_the_plain_one() {
        let (_, _, problems) =
            read_sync("rotation_overlap = \"3d\"\nrotation_overlap_max = \"2d\"");
        assert_eq!(keys(&problems), ["sync.rotation_overlap_max"]);
        assert!(
            problems[0]
                .message
                .contains("\"2d\" is shorter than sync.rotation_overlap (\"3d\")"),
            "{problems:?}"
        );
        let (_, _, problems) =
            read_sync("rotation_overlap = \"3d\"\nrotation_overlap_max = \"3d\"");
        assert!(problems.is_empty(), "{problems:?}");
    }
}
