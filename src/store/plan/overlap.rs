//! How long a replaced CA stays in its instance file (SPEC 7, 13): the plain
//! `rotation_overlap`, then, up to `rotation_overlap_max`, as long as the endpoint probes
//! show it may still be in use; never past its own notAfter. Pure: the plan and the daemon's
//! deadline ask it.

use std::time::Duration;

use time::OffsetDateTime;

use super::super::Verified;
use super::super::manifest::Replaced;
use super::StoreOptions;

/// Whether a replaced CA is still kept (SPEC 7, 13): never at or past its own notAfter;
/// inside `rotation_overlap`; after it, up to `rotation_overlap_max`, while `endpoints` (the
/// instance's, from the probes) show it may still be in use: one of them anchors at it, or
/// was not verified since it was replaced. No endpoints: the plain overlap only.
pub(in crate::store) fn still_kept(
    r: &Replaced,
    now: OffsetDateTime,
    opts: &StoreOptions,
    endpoints: Option<&[Option<Verified>]>,
) -> bool {
    if now >= r.not_after {
        return false;
    }
    if now < window_end(r.replaced_at, opts.rotation_overlap) {
        return true;
    }
    let Some(endpoints) = endpoints.filter(|e| !e.is_empty()) else {
        return false;
    };
    now < window_end(r.replaced_at, opts.rotation_overlap_max)
        && endpoints.iter().any(|e| match e {
            None => true,
            Some(v) => v.at < r.replaced_at || v.anchor == r.sha256,
        })
}

/// What a file (or a published set) held before a pass.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Previous<'a> {
    /// Its current CAs' fingerprints.
    pub current: &'a [String],
    /// Its replaced CAs.
    pub replaced: &'a [Replaced],
}

/// The replaced CAs after a pass whose current set is `current`: a CA that comes back is
/// current again, one that left is replaced as of `now`, and each is kept by [`still_kept`]
/// (a CA whose notAfter `not_after` cannot tell is dropped). The store's rule for its files,
/// and a fleet publisher's for its published set (SPEC 14).
pub(crate) fn carry_over(
    prev: Previous<'_>,
    current: &[String],
    not_after: impl Fn(&str) -> Option<OffsetDateTime>,
    now: OffsetDateTime,
    opts: &StoreOptions,
    endpoints: Option<&[Option<Verified>]>,
) -> Vec<Replaced> {
    let mut replaced: Vec<Replaced> = prev
        .replaced
        .iter()
        .filter(|r| !current.contains(&r.sha256))
        .cloned()
        .collect();
    for fp in prev.current {
        if current.contains(fp) || replaced.iter().any(|r| &r.sha256 == fp) {
            continue;
        }
        if let Some(not_after) = not_after(fp) {
            replaced.push(Replaced {
                sha256: fp.clone(),
                replaced_at: now,
                not_after,
            });
        }
    }
    replaced.retain(|r| still_kept(r, now, opts, endpoints) && not_after(&r.sha256).is_some());
    replaced
}

/// `from + d`; an overlap too long to represent never ends.
pub(in crate::store) fn window_end(from: OffsetDateTime, d: Duration) -> OffsetDateTime {
    time::Duration::try_from(d)
        .ok()
        .and_then(|d| from.checked_add(d))
        .unwrap_or(time::PrimitiveDateTime::MAX.assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use time::macros::datetime;

    const OLD: &str = "aa";
    const NEW: &str = "bb";
    const HOUR: Duration = Duration::from_secs(3600);

    fn replaced() -> Replaced {
        Replaced {
            sha256: OLD.into(),
            replaced_at: datetime!(2026-01-01 00:00 UTC),
            not_after: datetime!(2026-03-01 00:00 UTC),
        }
    }

    fn opts() -> StoreOptions {
        let mut o = StoreOptions::new(PathBuf::from("/t"));
        o.rotation_overlap = 24 * HOUR;
        o.rotation_overlap_max = 240 * HOUR;
        o
    }

    fn seen(at: OffsetDateTime, anchor: &str) -> Option<Verified> {
        Some(Verified {
            at,
            anchor: anchor.into(),
        })
    }

    #[test]
    fn inside_the_plain_overlap_it_stays_whatever_the_endpoints_show() {
        let at = datetime!(2026-01-01 23:59 UTC);
        let moved = [seen(at, NEW)];
        assert!(still_kept(&replaced(), at, &opts(), None));
        assert!(still_kept(&replaced(), at, &opts(), Some(&moved)));
        assert!(!still_kept(
            &replaced(),
            datetime!(2026-01-02 00:00 UTC),
            &opts(),
            None
        ));
    }

    #[test]
    fn after_it_the_endpoints_keep_it_while_one_may_still_use_it() {
        let now = datetime!(2026-01-03 00:00 UTC);
        let (before, after) = (
            datetime!(2025-12-31 00:00 UTC),
            datetime!(2026-01-02 00:00 UTC),
        );
        let r = replaced();
        let o = opts();
        // No endpoints: the plain overlap only.
        assert!(!still_kept(&r, now, &o, Some(&[])));
        // One anchors at it; one not verified since the rotation; one never verified.
        assert!(still_kept(
            &r,
            now,
            &o,
            Some(&[seen(after, NEW), seen(after, OLD)])
        ));
        assert!(still_kept(
            &r,
            now,
            &o,
            Some(&[seen(after, NEW), seen(before, NEW)])
        ));
        assert!(still_kept(&r, now, &o, Some(&[seen(after, NEW), None])));
        // Verified at the rotation's moment saw the new files.
        assert!(!still_kept(&r, now, &o, Some(&[seen(r.replaced_at, NEW)])));
        // Every endpoint anchors at a current CA now.
        assert!(!still_kept(
            &r,
            now,
            &o,
            Some(&[seen(after, NEW), seen(after, NEW)])
        ));
    }

    #[test]
    fn the_evidence_keeps_it_no_longer_than_the_maximum_nor_past_its_not_after() {
        let r = replaced();
        let mut o = opts();
        let still = [seen(datetime!(2026-01-02 00:00 UTC), OLD)];
        assert!(still_kept(
            &r,
            datetime!(2026-01-10 23:59 UTC),
            &o,
            Some(&still)
        ));
        assert!(!still_kept(
            &r,
            datetime!(2026-01-11 00:00 UTC),
            &o,
            Some(&still)
        ));
        o.rotation_overlap_max = Duration::MAX;
        o.rotation_overlap = Duration::MAX;
        assert!(still_kept(
            &r,
            datetime!(2026-02-28 23:59 UTC),
            &o,
            Some(&still)
        ));
        assert!(!still_kept(
            &r,
            datetime!(2026-03-01 00:00 UTC),
            &o,
            Some(&still)
        ));
        assert!(!still_kept(&r, datetime!(2026-03-01 00:00 UTC), &o, None));
    }

    #[test]
    fn an_overlap_too_long_to_represent_never_ends() {
        let end = window_end(datetime!(2026-01-01 00:00 UTC), Duration::MAX);
        assert!(end > datetime!(9999-12-31 23:59 UTC));
    }
}
