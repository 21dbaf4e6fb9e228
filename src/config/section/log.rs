//! `[log]`: the format and filter of certsync's own log lines.
//!
//! Owns: the section's keys, their defaults (text, the program's default filter) and the
//! check that `level` is a filter tracing accepts. Must not: install the subscriber (the
//! command layer does).

use toml::Table;

use super::super::keys::{SectionKind, SectionSchema};
use super::super::reader::{Problems, Section, quote};

/// The keys of `[log]`.
pub(in crate::config) const SCHEMA: SectionSchema = SectionSchema {
    name: "log",
    kind: SectionKind::Table,
    keys: &["format", "level"],
    variants: &[],
};

/// `[log]`.
#[derive(Debug, Clone)]
pub struct Log {
    /// Text or JSON lines.
    pub format: LogFormat,
    /// A tracing filter (`info`, `certsync=debug`); `None`: the program's default.
    pub level: Option<String>,
}

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Reads `[log]`.
pub(in crate::config) fn read(p: &mut Problems, table: &Table) -> Log {
    let sec = Section::open(p, SCHEMA.name, table, SCHEMA.keys);
    let format = match sec.string(p, "format") {
        None | Some("text") => LogFormat::Text,
        Some("json") => LogFormat::Json,
        Some(other) => {
            p.push(
                sec.key("format"),
                format!(
                    "unknown format {} (expected \"text\" or \"json\")",
                    quote(other)
                ),
            );
            LogFormat::default()
        }
    };
    let level = sec.string(p, "level").and_then(|l| {
        if l.trim().is_empty() {
            p.push(sec.key("level"), "must not be empty (got \"\")");
            return None;
        }
        match tracing_subscriber::EnvFilter::builder().parse(l) {
            Ok(_) => Some(l.to_string()),
            Err(e) => {
                p.push(
                    sec.key("level"),
                    format!("{} is not a log filter: {e}", quote(l)),
                );
                None
            }
        }
    });
    Log { format, level }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{keys, table, walk};
    use super::*;

    #[test]
    fn defaults_and_every_key() {
        let t = table("");
        let (log, problems, _) = walk(|p, _| read(p, &t));
        assert!(problems.is_empty());
        assert_eq!((log.format, log.level), (LogFormat::Text, None));

        let t = table("format = \"json\"\nlevel = \"certsync=debug,info\"");
        let (log, problems, _) = walk(|p, _| read(p, &t));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(log.format, LogFormat::Json);
        assert_eq!(log.level.as_deref(), Some("certsync=debug,info"));
    }

    #[test]
    fn bad_values_are_reported() {
        let t = table("format = \"xml\"\nlevel = \"certsync=loud\"");
        let (_, problems, _) = walk(|p, _| read(p, &t));
        assert_eq!(keys(&problems), ["log.format", "log.level"]);
        assert!(problems[0].message.contains("\"xml\""));
        assert!(problems[1].message.contains("\"certsync=loud\""));
    }
}
