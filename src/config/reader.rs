//! A small reader over a parsed `toml::Table` that records every problem instead of stopping at
//! the first.
//!
//! Owns: key paths (`hook[1].timeout`), the unknown-key check, type errors and the rendering of
//! bad values into messages. It knows nothing about what the keys mean; `resolve` applies the
//! rules. It must not echo values of keys that may hold secrets (callers decide which those are;
//! unknown keys are never echoed because a misspelt secret key is still a secret).

/// No duration key may exceed ten years: longer values are typos, and date arithmetic with
/// them would overflow.
pub(super) const MAX_DURATION: Duration = Duration::from_secs(10 * 366 * 24 * 3600);

use std::time::Duration;

use toml::{Table, Value};

use super::Problem;

/// Longest rendering of a bad value in a message; longer values are cut with `...`.
const MAX_SHOWN_VALUE: usize = 120;

/// Every problem found so far, in the order the walk met them.
#[derive(Debug, Default)]
pub(super) struct Problems(pub(super) Vec<Problem>);

impl Problems {
    /// Records one problem at `key`.
    pub(super) fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }

    /// Number of problems recorded so far; lets a caller skip checks that would only repeat an
    /// earlier error.
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }
}

/// A TOML value rendered for a message: TOML syntax (strings quoted), cut when long.
pub(super) fn show(value: &Value) -> String {
    let text = match value {
        // Debug quoting escapes control characters, which TOML's own rendering may not.
        Value::String(s) => quote(s),
        other => other.to_string(),
    };
    cut(text)
}

/// A string quoted for a message.
pub(super) fn quote(s: &str) -> String {
    cut(format!("{s:?}"))
}

fn cut(mut text: String) -> String {
    if text.chars().count() > MAX_SHOWN_VALUE {
        text = text.chars().take(MAX_SHOWN_VALUE).collect();
        text.push_str("...");
    }
    text
}

/// The TOML type name of a value, for "expected X, got Y" messages.
fn type_name(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a datetime",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

/// "expected a string, got 5 (an integer)".
pub(super) fn expected(what: &str, value: &Value) -> String {
    format!(
        "expected {what}, got {} ({})",
        show(value),
        type_name(value)
    )
}

/// One table of the file with its key path.
pub(super) struct Section<'a> {
    path: String,
    table: &'a Table,
}

impl<'a> Section<'a> {
    /// Opens `table` at `path` ("" for the top level) and reports every key not in `known`.
    pub(super) fn open(
        problems: &mut Problems,
        path: impl Into<String>,
        table: &'a Table,
        known: &[&str],
    ) -> Section<'a> {
        let section = Section {
            path: path.into(),
            table,
        };
        for key in table.keys() {
            if !known.contains(&key.as_str()) {
                let place = if section.path.is_empty() {
                    "at the top level".to_string()
                } else {
                    format!("in {}", section.path)
                };
                problems.push(
                    section.key(key),
                    format!(
                        "unknown key {} {place} (known keys: {})",
                        quote(key),
                        known.join(", ")
                    ),
                );
            }
        }
        section
    }

    /// The full key path of `key` inside this section.
    pub(super) fn key(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The raw value of `key`, if present.
    pub(super) fn raw(&self, key: &str) -> Option<&'a Value> {
        self.table.get(key)
    }

    /// True when the key is present, whatever its type.
    pub(super) fn has(&self, key: &str) -> bool {
        self.table.contains_key(key)
    }

    /// Reports "missing (required...)" when `key` is absent. `why` may add the reason.
    pub(super) fn require_present(&self, problems: &mut Problems, key: &str, why: &str) -> bool {
        if self.has(key) {
            return true;
        }
        let message = if why.is_empty() {
            "missing (required)".to_string()
        } else {
            format!("missing (required {why})")
        };
        problems.push(self.key(key), message);
        false
    }

    /// A string value; a type error is recorded and gives `None`.
    pub(super) fn string(&self, problems: &mut Problems, key: &str) -> Option<&'a str> {
        match self.raw(key)? {
            Value::String(s) => Some(s),
            other => {
                problems.push(self.key(key), expected("a string", other));
                None
            }
        }
    }

    /// A string value that may be a secret: a type error names the type, never the value.
    pub(super) fn secret_string(&self, problems: &mut Problems, key: &str) -> Option<&'a str> {
        match self.raw(key)? {
            Value::String(s) => Some(s),
            other => {
                problems.push(
                    self.key(key),
                    format!(
                        "expected a string, got {} (value not shown)",
                        type_name(other)
                    ),
                );
                None
            }
        }
    }

    /// A boolean value.
    pub(super) fn boolean(&self, problems: &mut Problems, key: &str) -> Option<bool> {
        match self.raw(key)? {
            Value::Boolean(b) => Some(*b),
            other => {
                problems.push(self.key(key), expected("true or false", other));
                None
            }
        }
    }

    /// An integer value.
    pub(super) fn integer(&self, problems: &mut Problems, key: &str) -> Option<i64> {
        match self.raw(key)? {
            Value::Integer(i) => Some(*i),
            other => {
                problems.push(self.key(key), expected("an integer", other));
                None
            }
        }
    }

    /// A duration written as a humantime string (at most [`MAX_DURATION`]) (`"90s"`, `"15m"`, `"24h"`, `"7d"`).
    pub(super) fn duration(&self, problems: &mut Problems, key: &str) -> Option<Duration> {
        let text = match self.raw(key)? {
            Value::String(s) => s,
            other => {
                problems.push(
                    self.key(key),
                    expected(
                        "a duration string like \"90s\", \"15m\", \"24h\" or \"7d\"",
                        other,
                    ),
                );
                return None;
            }
        };
        match humantime::parse_duration(text.trim()) {
            Ok(d) if d > MAX_DURATION => {
                problems.push(
                    self.key(key),
                    format!(
                        "duration {} is longer than the limit of 10 years",
                        quote(text)
                    ),
                );
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                problems.push(
                    self.key(key),
                    format!(
                        "invalid duration {} ({e}); write e.g. \"90s\", \"15m\", \"24h\" or \"7d\"",
                        quote(text)
                    ),
                );
                None
            }
        }
    }

    /// An array of strings, each paired with its own key path (`hook[0].command[2]`), so that
    /// rules on single elements can name them. Any non-string element is reported and the
    /// whole list gives `None`.
    pub(super) fn strings(
        &self,
        problems: &mut Problems,
        key: &str,
    ) -> Option<Vec<(String, &'a str)>> {
        let items = match self.raw(key)? {
            Value::Array(items) => items,
            other => {
                problems.push(self.key(key), expected("an array of strings", other));
                return None;
            }
        };
        let mut out = Vec::with_capacity(items.len());
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let item_key = format!("{}[{i}]", self.key(key));
            match item {
                Value::String(s) => out.push((item_key, s.as_str())),
                other => {
                    problems.push(item_key, expected("a string", other));
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    /// A sub-table (`[sync]` at the top level). Absent gives an empty table so that the
    /// required keys inside it are reported one by one.
    pub(super) fn table(&self, problems: &mut Problems, key: &str) -> Option<&'a Table> {
        match self.raw(key) {
            None => Some(empty_table()),
            Some(Value::Table(t)) => Some(t),
            Some(other) => {
                problems.push(self.key(key), expected(&format!("a table [{key}]"), other));
                None
            }
        }
    }

    /// An array of tables (`[[instance]]`), each with its key path (`instance[3]`). Absent
    /// gives an empty list.
    pub(super) fn tables(&self, problems: &mut Problems, key: &str) -> Vec<(String, &'a Table)> {
        let items = match self.raw(key) {
            None => return Vec::new(),
            Some(Value::Array(items)) => items,
            Some(other) => {
                problems.push(
                    self.key(key),
                    expected(&format!("an array of tables [[{key}]]"), other),
                );
                return Vec::new();
            }
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let item_key = format!("{}[{i}]", self.key(key));
            match item {
                Value::Table(t) => out.push((item_key, t)),
                other => problems.push(item_key, expected("a table", other)),
            }
        }
        out
    }
}

fn empty_table() -> &'static Table {
    static EMPTY: std::sync::OnceLock<Table> = std::sync::OnceLock::new();
    EMPTY.get_or_init(Table::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> Table {
        text.parse().expect("test TOML parses")
    }

    #[test]
    fn unknown_keys_are_reported_with_path_and_known_keys() {
        let t = table("a = 1\nzz = 2\n");
        let mut p = Problems::default();
        Section::open(&mut p, "sync", &t, &["a"]);
        assert_eq!(p.0.len(), 1);
        assert_eq!(p.0[0].key, "sync.zz");
        assert!(p.0[0].message.contains("\"zz\""), "{}", p.0[0].message);
        assert!(p.0[0].message.contains("known keys: a"));
    }

    #[test]
    fn type_errors_show_the_value_and_its_type() {
        let t = table("s = 5\nb = \"yes\"\nd = \"5 parsecs\"\nl = [\"a\", 3]\n");
        let mut p = Problems::default();
        let s = Section::open(&mut p, "x", &t, &["s", "b", "d", "l"]);
        assert_eq!(s.string(&mut p, "s"), None);
        assert_eq!(s.boolean(&mut p, "b"), None);
        assert_eq!(s.duration(&mut p, "d"), None);
        assert!(s.strings(&mut p, "l").is_none());
        let keys: Vec<&str> = p.0.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["x.s", "x.b", "x.d", "x.l[1]"]);
        assert!(p.0[0].message.contains("got 5 (an integer)"));
        assert!(p.0[1].message.contains("\"yes\""));
        assert!(p.0[2].message.contains("\"5 parsecs\""));
        assert!(p.0[3].message.contains("got 3"));
    }

    #[test]
    fn long_values_are_cut() {
        let long = "x".repeat(500);
        let shown = quote(&long);
        assert!(shown.len() < 200);
        assert!(shown.ends_with("..."));
    }

    #[test]
    fn durations_parse_humantime() {
        let t = table("a = \"90s\"\nb = \"7d\"\n");
        let mut p = Problems::default();
        let s = Section::open(&mut p, "", &t, &["a", "b"]);
        assert_eq!(s.duration(&mut p, "a"), Some(Duration::from_secs(90)));
        assert_eq!(
            s.duration(&mut p, "b"),
            Some(Duration::from_secs(7 * 86400))
        );
        assert!(p.0.is_empty());
    }
}
