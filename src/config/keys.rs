//! The shape of a section's key list ([`SectionSchema`]): what each section file declares
//! and [`schema`](super::schema) puts together.
//!
//! Owns: the types only. A leaf of the config, so that the section files and the list of
//! them do not import each other.

/// How a section is written in TOML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionKind {
    /// One table: `[cloud]`.
    Table,
    /// An array of tables, each one item: `[[instance]]`.
    ArrayOfTables,
}

/// One section of the file and the keys it accepts.
#[derive(Debug, Clone, Copy)]
pub struct SectionSchema {
    /// The top-level key: `cloud`, `instance`.
    pub name: &'static str,
    /// `[name]` or `[[name]]`.
    pub kind: SectionKind,
    /// Keys every table of the section may hold.
    pub keys: &'static [&'static str],
    /// Keys that belong to one value of a selector key (`auth.method`): each value with the
    /// keys it uses. A key of another value is an error, not ignored.
    pub variants: &'static [(&'static str, &'static [&'static str])],
}

impl SectionSchema {
    /// Every key the section accepts: [`SectionSchema::keys`], then each variant's keys, in
    /// order and without repeats.
    pub fn all_keys(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = self.keys.to_vec();
        for key in self.variants.iter().flat_map(|(_, keys)| keys.iter()) {
            if !out.contains(key) {
                out.push(key);
            }
        }
        out
    }

    /// The section's header as the file writes it: `[cloud]`, `[[instance]]`.
    pub fn header(&self) -> String {
        match self.kind {
            SectionKind::Table => format!("[{}]", self.name),
            SectionKind::ArrayOfTables => format!("[[{}]]", self.name),
        }
    }
}
