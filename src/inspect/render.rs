//! The text form of `inspect`: one block per certificate with its days left, then a summary
//! per folder (layout, problems, stale files, expiring CAs).
//!
//! Owns: the wording and layout of the text output. The JSON form is SPEC 2's array, the
//! `Serialize` of [`Inspection`].
//! Must not: read files, or print text from outside unescaped (subjects, issuers, paths and
//! file names go through [`Untrusted`]).

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{EXPIRING_WITHIN_DAYS, FolderSummary, Inspection};
use crate::cert::rfc3339;
use crate::text::Untrusted;

/// The text form: one block per certificate, with days left, then a summary per folder.
/// Subjects, issuers, paths and file names are printed escaped (SPEC 2).
pub fn render_text(found: &Inspection, now: OffsetDateTime) -> String {
    let mut out = String::new();
    for r in &found.certs {
        // Never overflows: both times lie within years -9999..=9999, whole seconds in an i64.
        let days_left = OffsetDateTime::parse(&r.not_after, &Rfc3339)
            .map(|t| (t - now).whole_days())
            .ok();
        let left = match days_left {
            Some(d) if d < 0 => format!(" (expired {} days ago)", d.saturating_neg()),
            Some(d) => format!(" ({d} days left)"),
            None => String::new(),
        };
        out.push_str(&format!(
            "{}\n  subject:      {}\n  issuer:       {}\n  serial:       {}\n  notBefore:    {}\n  notAfter:     {}{}\n  sha256:       {}\n  subject_hash: {}\n  CA:           {}\n",
            Untrusted(&r.path),
            Untrusted(&r.subject),
            Untrusted(&r.issuer),
            r.serial,
            r.not_before,
            r.not_after,
            left,
            r.sha256,
            r.subject_hash,
            if r.is_ca { "yes" } else { "no" }
        ));
    }
    for folder in &found.folders {
        out.push_str(&render_summary(folder, now));
    }
    out
}

fn render_summary(f: &FolderSummary, now: OffsetDateTime) -> String {
    let mut out = format!(
        "\ntrust folder {}\n",
        Untrusted(&f.dir.display().to_string())
    );
    match &f.layout {
        Some(layout) => {
            let count = |kind: &str| f.managed.get(kind).map_or(0, Vec::len);
            let names = |kind: &str| {
                f.managed
                    .get(kind)
                    .map(|v| v.join(", "))
                    .unwrap_or_else(|| "none".into())
            };
            out.push_str(&format!(
                "  layout {layout}; managed: {} instance file(s), bundle {}, {} hash file(s), truststore {}\n",
                count("instance"),
                Untrusted(&names("bundle")),
                count("hash"),
                Untrusted(&names("truststore")),
            ));
        }
        None if f.manifest_unreadable => out.push_str(
            "  has a certsync manifest that cannot be used (see the problems below); the files are listed but not checked\n",
        ),
        None => out.push_str("  not managed by certsync (no manifest)\n"),
    }
    for s in &f.problems {
        out.push_str(&format!("  problem: {}\n", Untrusted(s)));
    }
    for s in &f.stale {
        out.push_str(&format!("  stale: {}\n", Untrusted(s)));
    }
    for name in &f.unmanaged {
        out.push_str(&format!("  not in the manifest: {}\n", Untrusted(name)));
    }
    let mut expiring = 0;
    for (fp, (subject, not_after, files)) in &f.cas {
        // Never overflows (see render_text).
        let days = (*not_after - now).whole_days();
        let files: Vec<&str> = files.iter().map(String::as_str).collect();
        let files = files.join(", ");
        let when = rfc3339(*not_after);
        let short = &fp[..16.min(fp.len())];
        if *not_after <= now {
            expiring += 1;
            out.push_str(&format!(
                "  expired: {} (sha256 {short}...) notAfter {when}, {} days ago; in {}\n",
                Untrusted(subject),
                days.saturating_neg(),
                Untrusted(&files)
            ));
        } else if days < EXPIRING_WITHIN_DAYS {
            expiring += 1;
            out.push_str(&format!(
                "  expiring: {} (sha256 {short}...) notAfter {when}, {days} days left; in {}\n",
                Untrusted(subject),
                Untrusted(&files)
            ));
        }
    }
    for note in &f.notes {
        out.push_str(&format!("  note: {}\n", Untrusted(note)));
    }
    if f.stale.is_empty() && f.unmanaged.is_empty() && f.problems.is_empty() && f.layout.is_some() {
        out.push_str(
            "  nothing stale: every file agrees with the instance files and the manifest\n",
        );
    }
    if expiring == 0 {
        out.push_str(&format!(
            "  nothing expires within {EXPIRING_WITHIN_DAYS} days ({} CA(s))\n",
            f.cas.len()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_without_a_manifest_is_listed_as_not_managed() {
        let found = Inspection {
            certs: Vec::new(),
            folders: vec![FolderSummary {
                dir: "/tmp/x\u{1b}y".into(),
                ..FolderSummary::default()
            }],
        };
        let text = render_text(&found, OffsetDateTime::UNIX_EPOCH);
        assert!(!text.contains('\u{1b}'), "{text:?}");
        assert!(
            text.contains("  not managed by certsync (no manifest)\n"),
            "{text}"
        );
        assert!(
            text.ends_with("  nothing expires within 30 days (0 CA(s))\n"),
            "{text}"
        );
        assert!(!text.contains("nothing stale"), "{text}");
    }
}
